// The hardware glue both sketches share (pins, motor driver, beam sensor, NVS, watchdog,
// device id), for arduino-esp32 2.x and 3.x. Every rule is in vending_core; this library
// only touches the chip, and esp_code/host/pinsim runs it on a PC with recorded pins.
#ifndef VENDING_GLUE_H
#define VENDING_GLUE_H

#include <Arduino.h>
#include <Preferences.h>
#include <vending_core.h>

namespace vending_glue {

// One output pin per slot (slot 1 first). allOff() latches the off level before the pin
// drives: on core 3.x a digitalWrite() before pinMode(OUTPUT) is ignored, so an active-LOW
// relay would be switched on by pinMode() alone.
class PinMotor : public vending::Motor {
 public:
  PinMotor(const uint8_t* pins, uint16_t count, bool activeHigh)
      : pins_(pins), count_(count), on_(activeHigh ? HIGH : LOW), off_(activeHigh ? LOW : HIGH) {}
  void allOff() override;
  void start(uint16_t slot) override;
  void stop(uint16_t slot) override;
  uint16_t slots() const { return count_; }

 private:
  const uint8_t* pins_;
  uint16_t count_;
  uint8_t on_;
  uint8_t off_;
};

// An IR break-beam: an interrupt latches a short break for the engine to poll.
class BeamSensor : public vending::Sensor {
 public:
  // pin < 0: no sensor (begin does nothing). brokenLevel: what the pin reads while broken.
  void begin(int pin, int brokenLevel);
  void arm(uint16_t slot) override;
  bool itemSeen() override;
};

// The engine's exactly-once memory as one NVS blob ("memory" in the prefs' namespace).
class NvsStorage : public vending::Storage {
 public:
  explicit NvsStorage(Preferences& prefs) : prefs_(prefs) {}
  size_t load(char* buf, size_t cap) override;
  bool save(const char* data, size_t len) override;

 private:
  Preferences& prefs_;
};

// Every motor pin off, then the task watchdog (restart when loop() stalls this long) for
// the loop task. False, with the reason printed on Serial, when the chip refused it.
bool startWatchdog(uint32_t seconds);
// Feeds the watchdog; false (and one line on Serial) if the loop task is not watched.
bool feedWatchdog();

// The hardware random number generator (true random once the radio runs).
uint32_t randomWord();
void fillRandom(uint8_t* out, size_t len);

// "ESP32_" + the factory MAC in upper-case hex, first byte first (out: 20 bytes).
void deviceId(char out[20]);

}  // namespace vending_glue

#endif
