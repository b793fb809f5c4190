#include "vending_glue.h"

#include <driver/gpio.h>
#include <esp_task_wdt.h>
#if ESP_ARDUINO_VERSION_MAJOR >= 3
#include <esp_random.h>
#else
#include <esp_system.h>
#endif

namespace vending_glue {

void PinMotor::allOff() {
  for (uint16_t i = 0; i < count_; ++i) {
    // The level goes into the output latch first (gpio_set_level works on a pin that is
    // not an output yet, on both cores), so pinMode() starts driving it at "off".
    gpio_set_level(static_cast<gpio_num_t>(pins_[i]), off_);
    pinMode(pins_[i], OUTPUT);
    digitalWrite(pins_[i], off_);  // and through the core, which now owns the pin
  }
}

void PinMotor::start(uint16_t slot) {
  if (slot >= 1 && slot <= count_) digitalWrite(pins_[slot - 1], on_);
}

void PinMotor::stop(uint16_t slot) {
  if (slot >= 1 && slot <= count_) digitalWrite(pins_[slot - 1], off_);
}

static volatile bool g_beamBroken = false;
static void IRAM_ATTR onBeam() { g_beamBroken = true; }

void BeamSensor::begin(int pin, int brokenLevel) {
  if (pin < 0) return;
  pinMode(pin, INPUT_PULLUP);
  attachInterrupt(digitalPinToInterrupt(pin), onBeam, brokenLevel == LOW ? FALLING : RISING);
}

void BeamSensor::arm(uint16_t) { g_beamBroken = false; }

bool BeamSensor::itemSeen() { return g_beamBroken; }

size_t NvsStorage::load(char* buf, size_t cap) {
  size_t n = prefs_.getBytesLength("memory");
  return n > 0 && n <= cap ? prefs_.getBytes("memory", buf, n) : 0;
}

bool NvsStorage::save(const char* data, size_t len) { return prefs_.putBytes("memory", data, len) == len; }

bool startWatchdog(uint32_t seconds) {
#if ESP_ARDUINO_VERSION_MAJOR >= 3
  // Core 3.x has started the watchdog already (idle tasks only): reconfigure it.
  esp_task_wdt_config_t config = {};
  config.timeout_ms = seconds * 1000;
  config.idle_core_mask = 0;
  config.trigger_panic = true;
  esp_err_t err = esp_task_wdt_reconfigure(&config);
  if (err == ESP_ERR_INVALID_STATE) err = esp_task_wdt_init(&config);  // not started by the core
#else
  esp_err_t err = esp_task_wdt_init(seconds, true);
#endif
  if (err == ESP_OK) err = esp_task_wdt_add(nullptr);
  if (err != ESP_OK) {
    Serial.printf("ERROR: watchdog not started (esp_err %d): a stalled loop will not restart the board\n",
                  static_cast<int>(err));
    return false;
  }
  return true;
}

bool feedWatchdog() {
  static bool told = false;
  if (esp_task_wdt_reset() == ESP_OK) return true;
  if (!told) Serial.println("ERROR: watchdog feed refused: this task is not watched");
  told = true;
  return false;
}

uint32_t randomWord() { return esp_random(); }

void fillRandom(uint8_t* out, size_t len) { esp_fill_random(out, len); }

void deviceId(char out[20]) {
  uint64_t mac = ESP.getEfuseMac();  // first MAC byte is the lowest byte
  snprintf(out, 20, "ESP32_%02X%02X%02X%02X%02X%02X", static_cast<unsigned>(mac & 0xFF),
           static_cast<unsigned>((mac >> 8) & 0xFF), static_cast<unsigned>((mac >> 16) & 0xFF),
           static_cast<unsigned>((mac >> 24) & 0xFF), static_cast<unsigned>((mac >> 32) & 0xFF),
           static_cast<unsigned>((mac >> 40) & 0xFF));
}

}  // namespace vending_glue
