// USB serial vending board, protocol v2 (docs/protocol.md).
// A thin shell: pins, NVS, watchdog and Serial here; every rule lives in the plain C++
// core (esp_code/lib/vending_core), which is unit-tested on a PC.
#include <Arduino.h>
#include <Preferences.h>
#include <vending_core.h>
#include <vending_glue.h>

#include "config.h"

static const uint8_t kMotorPins[] = MOTOR_PINS;
static const uint32_t kRunMs[] = SLOT_RUN_MS;
static const uint16_t kSlots = sizeof(kMotorPins) / sizeof(kMotorPins[0]);

class SerialOutput : public vending::LineOutput {
 public:
  void write(const char* data, size_t len) override { Serial.write(reinterpret_cast<const uint8_t*>(data), len); }
};

static vending_glue::PinMotor g_motor(kMotorPins, kSlots, MOTOR_ACTIVE_HIGH);
static vending_glue::BeamSensor g_sensor;
static Preferences g_prefs;  // NVS namespace "vending": the exactly-once memory
static vending_glue::NvsStorage g_storage(g_prefs);
static SerialOutput g_out;
static char g_dev[20];
static char g_boot[9];
static vending::VendEngine* g_engine = nullptr;
static vending::SerialBoard* g_board = nullptr;

static vending::EngineConfig engineConfig() {
  vending::EngineConfig c;
  c.slots = kSlots;
  for (uint16_t i = 0; i < kSlots && i < vending::kMaxSlots; ++i) c.slotRunMs[i] = kRunMs[i];
  c.useSensor = SENSOR_PIN >= 0;
  c.jamMs = JAM_MS;
  c.maxRunMs = MAX_RUN_MS;
  return c;
}

static void updateLed(uint32_t now) {
  if (STATUS_LED_PIN < 0) return;
  // On while a motor turns; fast blink when flash writes fail; slow blink when ready.
  bool on = g_engine->busy() || (g_engine->storageFailed() ? (now / 100) % 2 : (now / 1000) % 2);
  digitalWrite(STATUS_LED_PIN, on ? HIGH : LOW);
}

void setup() {
  g_motor.allOff();  // failsafe: before anything else, every motor off
  if (STATUS_LED_PIN >= 0) pinMode(STATUS_LED_PIN, OUTPUT);
  Serial.begin(115200);
  vending_glue::startWatchdog(WATCHDOG_SECONDS);  // a refusal is printed; the board still serves
  if (!g_prefs.begin("vending", false)) Serial.println("ERROR: NVS did not open: vends will be refused");
  g_sensor.begin(SENSOR_PIN, SENSOR_BROKEN_LEVEL);
  vending_glue::deviceId(g_dev);
  snprintf(g_boot, sizeof(g_boot), "%08lX", static_cast<unsigned long>(vending_glue::randomWord()));
  static vending::VendEngine engine(engineConfig(), g_motor, &g_sensor, g_storage);
  static vending::SerialBoard board(engine, g_out, vending::BoardIdentity{g_dev, FIRMWARE_VERSION, g_boot});
  g_engine = &engine;
  g_board = &board;
  // Whatever arrived while booting was meant for the board before its reset: drop it.
  while (Serial.available() > 0) Serial.read();
  g_board->begin(millis());  // restores NVS, prints the banner, sends ID; then ready
}

void loop() {
  vending_glue::feedWatchdog();
  uint8_t buf[64];
  size_t n = 0;
  while (n < sizeof(buf) && Serial.available() > 0) buf[n++] = static_cast<uint8_t>(Serial.read());
  uint32_t now = millis();
  if (n > 0) g_board->feed(buf, n, now);
  g_board->poll(now);
  updateLed(now);
}
