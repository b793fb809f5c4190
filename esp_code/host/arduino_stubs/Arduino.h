// Declarations-only stand-ins for the Arduino-ESP32 API the two sketches use, so the host
// build can type-check the sketches (g++ -fsyntax-only). Nothing here is ever linked or run;
// the real headers come with the esp32 Arduino core.
#ifndef ARDUINO_STUB_H
#define ARDUINO_STUB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>

#define ESP_ARDUINO_VERSION_MAJOR 2
#define IRAM_ATTR
#define HIGH 0x1
#define LOW 0x0
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
uint32_t esp_random();

class String {
 public:
  String(const char* s = "");
  String(long value);
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
};
String operator+(const char* a, const String& b);

class HardwareSerial {
 public:
  void begin(unsigned long baud);
  void setTimeout(unsigned long ms);
  int available();
  int read();
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
