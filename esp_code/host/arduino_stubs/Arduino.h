// Stand-ins for the Arduino-ESP32 API the sketches and vending_glue use, for core 2.x and
// 3.x: ESP_ARDUINO_VERSION_MAJOR comes from the build (-D, or the stand-in board of
// host/arduino_standin). Declarations only: `make check-sketches` and arduino-builder
// type-check against them, and host/pinsim defines them to run setup() with recorded pins.
// The real headers come with the esp32 Arduino core.
#ifndef ARDUINO_STUB_H
#define ARDUINO_STUB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef ESP_ARDUINO_VERSION_MAJOR
#error "Build against a stand-in core: -DESP_ARDUINO_VERSION_MAJOR=2 or 3"
#endif

#include "esp_err.h"
#if ESP_ARDUINO_VERSION_MAJOR >= 3
#include "esp_random.h"
#else
#include "esp_system.h"
#endif

#define IRAM_ATTR
#define HIGH 0x1
#define LOW 0x0
#define INPUT 0x01
#define OUTPUT 0x03
#define INPUT_PULLUP 0x05
#define RISING 0x01
#define FALLING 0x02

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
int digitalRead(uint8_t pin);
int digitalPinToInterrupt(int pin);
void attachInterrupt(int interrupt, void (*isr)(), int mode);
unsigned long millis();
void delay(uint32_t ms);

class String {
 public:
  String(const char* s = "");
  String(long value);
  String(const String& other);
  String& operator=(const String& other);
  ~String();
  const char* c_str() const;
  unsigned length() const;
  void trim();
  void toUpperCase();
  bool startsWith(const char* prefix) const;
  String substring(unsigned from) const;
  long toInt() const;
  bool operator==(const char* other) const;
  String operator+(const char* other) const;
  String operator+(const String& other) const;

 private:
  char* text_;
};
String operator+(const char* a, const String& b);

class Stream {
 public:
  virtual ~Stream() {}
  virtual int available() = 0;
  virtual int read() = 0;
  size_t readBytes(uint8_t* buffer, size_t length);
};

class HardwareSerial : public Stream {
 public:
  void begin(unsigned long baud);
  void setTimeout(unsigned long ms);
  int available() override;
  int read() override;
  size_t write(const uint8_t* data, size_t len);
  size_t printf(const char* format, ...) __attribute__((format(printf, 2, 3)));
  size_t println(const char* text);
  size_t println(const String& text);
  String readStringUntil(char terminator);
};
extern HardwareSerial Serial;

class EspClass {
 public:
  uint64_t getEfuseMac();
};
extern EspClass ESP;

#endif
