// USB serial vending board, protocol v2 (docs/protocol.md).
// A thin shell: pins, NVS, watchdog and Serial here; every rule lives in the plain C++
// core (esp_code/lib/vending_core), which is unit-tested on a PC.
#include <Arduino.h>
#include <Preferences.h>
#include <esp_task_wdt.h>
#include <vending_core.h>

#include "config.h"

static const uint8_t kMotorPins[] = MOTOR_PINS;
static const uint32_t kRunMs[] = SLOT_RUN_MS;
static const uint16_t kSlots = sizeof(kMotorPins) / sizeof(kMotorPins[0]);
static const uint8_t kMotorOn = MOTOR_ACTIVE_HIGH ? HIGH : LOW;
static const uint8_t kMotorOff = MOTOR_ACTIVE_HIGH ? LOW : HIGH;

class PinMotor : public vending::Motor {
 public:
  void allOff() override {
    for (uint16_t i = 0; i < kSlots; ++i) {
      digitalWrite(kMotorPins[i], kMotorOff);  // level first, so the pin never glitches on
      pinMode(kMotorPins[i], OUTPUT);
    }
  }
  void start(uint16_t slot) override { digitalWrite(kMotorPins[slot - 1], kMotorOn); }
  void stop(uint16_t slot) override { digitalWrite(kMotorPins[slot - 1], kMotorOff); }
};

// The beam may be broken for a few ms only: an interrupt latches it for the core to poll.
static volatile bool g_beamBroken = false;
static void IRAM_ATTR onBeam() { g_beamBroken = true; }

class BeamSensor : public vending::Sensor {
 public:
  void arm(uint16_t) override { g_beamBroken = false; }
  bool itemSeen() override { return g_beamBroken; }
};

class NvsStorage : public vending::Storage {
 public:
  void begin() { prefs_.begin("vending", false); }
  size_t load(char* buf, size_t cap) override {
    size_t n = prefs_.getBytesLength("memory");
    return n > 0 && n <= cap ? prefs_.getBytes("memory", buf, n) : 0;
  }
  bool save(const char* data, size_t len) override { return prefs_.putBytes("memory", data, len) == len; }

 private:
  Preferences prefs_;
};

class SerialOutput : public vending::LineOutput {
 public:
  void write(const char* data, size_t len) override { Serial.write(reinterpret_cast<const uint8_t*>(data), len); }
};

static PinMotor g_motor;
static BeamSensor g_sensor;
static NvsStorage g_storage;
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

static void startWatchdog() {
#if ESP_ARDUINO_VERSION_MAJOR >= 3
  esp_task_wdt_config_t wdt = {WATCHDOG_SECONDS * 1000, 0, true};
  esp_task_wdt_reconfigure(&wdt);
#else
  esp_task_wdt_init(WATCHDOG_SECONDS, true);
#endif
  esp_task_wdt_add(nullptr);
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
  startWatchdog();
  g_storage.begin();
  if (SENSOR_PIN >= 0) {
    pinMode(SENSOR_PIN, INPUT_PULLUP);
    attachInterrupt(digitalPinToInterrupt(SENSOR_PIN), onBeam, SENSOR_BROKEN_LEVEL == LOW ? FALLING : RISING);
  }
  uint64_t mac = ESP.getEfuseMac();  // first MAC byte is the lowest byte
  snprintf(g_dev, sizeof(g_dev), "ESP32_%02X%02X%02X%02X%02X%02X", (uint8_t)mac, (uint8_t)(mac >> 8),
           (uint8_t)(mac >> 16), (uint8_t)(mac >> 24), (uint8_t)(mac >> 32), (uint8_t)(mac >> 40));
  snprintf(g_boot, sizeof(g_boot), "%08lX", (unsigned long)esp_random());
  static vending::VendEngine engine(engineConfig(), g_motor, &g_sensor, g_storage);
  static vending::SerialBoard board(engine, g_out, vending::BoardIdentity{g_dev, FIRMWARE_VERSION, g_boot});
  g_engine = &engine;
  g_board = &board;
  // Whatever arrived while booting was meant for the board before its reset: drop it.
  while (Serial.available() > 0) Serial.read();
  g_board->begin(millis());  // restores NVS, prints the banner, sends ID; then ready
}

void loop() {
  esp_task_wdt_reset();
  uint8_t buf[64];
  size_t n = 0;
  while (n < sizeof(buf) && Serial.available() > 0) buf[n++] = static_cast<uint8_t>(Serial.read());
  uint32_t now = millis();
  if (n > 0) g_board->feed(buf, n, now);
  g_board->poll(now);
  updateLed(now);
}
