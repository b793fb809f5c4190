// A behavioural stand-in for the Arduino-ESP32 core, to run a sketch's setup() and a few
// loop()s on a PC with every pin recorded. Pins follow the chosen core's rules
// (ESP_ARDUINO_VERSION_MAJOR): at reset a pin is an input and drives nothing; pinMode(OUTPUT)
// drives the level in its output latch (0 after reset); gpio_set_level() writes the latch;
// digitalWrite() writes it on core 2.x but is ignored on core 3.x until pinMode(OUTPUT) has
// attached the pin. Each change of what a pin drives is printed as
//   DRIVE pin=<n> level=<0|1> in=<setup|loop>
// and the sketch's serial output as SERIAL lines; tests/test_firmware_boot_pins.py reads them.
#include <stdarg.h>
#include <stdlib.h>

#include <map>
#include <string>

#include <Arduino.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <WiFi.h>
#include <WiFiUdp.h>
#include <driver/gpio.h>
#include <esp_task_wdt.h>

void setup();
void loop();

namespace {

struct Pin {
  bool output = false;
  int latch = 0;
  int driven = -1;  // -1: not driving
};

std::map<int, Pin> g_pins;
unsigned long g_now = 0;
const char* g_phase = "setup";
bool g_watched = false;

void update(int pin) {
  Pin& p = g_pins[pin];
  int now = p.output ? p.latch : -1;
  if (now != p.driven) {
    p.driven = now;
    if (now >= 0) printf("DRIVE pin=%d level=%d in=%s\n", pin, now, g_phase);
  }
}

}  // namespace

void pinMode(uint8_t pin, uint8_t mode) {
  g_pins[pin].output = mode == OUTPUT;
  update(pin);
}

void digitalWrite(uint8_t pin, uint8_t value) {
  Pin& p = g_pins[pin];
#if ESP_ARDUINO_VERSION_MAJOR >= 3
  if (!p.output) {
    printf("IGNORED digitalWrite pin=%d (not attached as an output yet)\n", pin);
    return;
  }
#endif
  p.latch = value ? 1 : 0;
  update(pin);
}

esp_err_t gpio_set_level(gpio_num_t pin, uint32_t level) {
  g_pins[pin].latch = level ? 1 : 0;
  update(pin);
  return ESP_OK;
}

int digitalRead(uint8_t pin) { return g_pins[pin].latch; }
int digitalPinToInterrupt(int pin) { return pin; }
void attachInterrupt(int, void (*)(), int) {}
unsigned long millis() { return g_now; }
void delay(uint32_t ms) { g_now += ms; }
uint32_t esp_random() { return 0x5E1F0A3Cu; }
void esp_fill_random(void* buf, size_t len) { memset(buf, 0x42, len); }

#if ESP_ARDUINO_VERSION_MAJOR >= 3
esp_err_t esp_task_wdt_init(const esp_task_wdt_config_t*) { return ESP_OK; }
esp_err_t esp_task_wdt_reconfigure(const esp_task_wdt_config_t*) { return ESP_OK; }
#else
esp_err_t esp_task_wdt_init(uint32_t, bool) { return ESP_OK; }
#endif
esp_err_t esp_task_wdt_add(void*) {
  g_watched = true;
  return ESP_OK;
}
esp_err_t esp_task_wdt_reset() { return g_watched ? ESP_OK : ESP_ERR_INVALID_STATE; }

// ---- String, Stream, Serial

static char* dup(const char* s) {
  size_t n = strlen(s);
  char* out = static_cast<char*>(malloc(n + 1));
  memcpy(out, s, n + 1);
  return out;
}
String::String(const char* s) : text_(dup(s)) {}
String::String(long value) : text_(nullptr) {
  char buf[24];
  snprintf(buf, sizeof(buf), "%ld", value);
  text_ = dup(buf);
}
String::String(const String& other) : text_(dup(other.text_)) {}
String& String::operator=(const String& other) {
  if (this != &other) {
    free(text_);
    text_ = dup(other.text_);
  }
  return *this;
}
String::~String() { free(text_); }
const char* String::c_str() const { return text_; }
unsigned String::length() const { return static_cast<unsigned>(strlen(text_)); }
void String::trim() {
  std::string s(text_);
  size_t a = s.find_first_not_of(" \r\n\t"), b = s.find_last_not_of(" \r\n\t");
  *this = String(a == std::string::npos ? "" : s.substr(a, b - a + 1).c_str());
}
void String::toUpperCase() {
  for (char* p = text_; *p; ++p) *p = static_cast<char>(toupper(*p));
}
bool String::startsWith(const char* prefix) const { return strncmp(text_, prefix, strlen(prefix)) == 0; }
String String::substring(unsigned from) const { return String(from < length() ? text_ + from : ""); }
long String::toInt() const { return atol(text_); }
bool String::operator==(const char* other) const { return strcmp(text_, other) == 0; }
String String::operator+(const char* other) const { return String((std::string(text_) + other).c_str()); }
String String::operator+(const String& other) const { return *this + other.c_str(); }
String operator+(const char* a, const String& b) { return String(a) + b; }

size_t Stream::readBytes(uint8_t* buffer, size_t length) {
  size_t n = 0;
  while (n < length && available() > 0) buffer[n++] = static_cast<uint8_t>(read());
  return n;
}

HardwareSerial Serial;
void HardwareSerial::begin(unsigned long) {}
void HardwareSerial::setTimeout(unsigned long) {}
int HardwareSerial::available() { return 0; }
int HardwareSerial::read() { return -1; }
size_t HardwareSerial::write(const uint8_t* data, size_t len) {
  printf("SERIAL %.*s", static_cast<int>(len), reinterpret_cast<const char*>(data));
  return len;
}
size_t HardwareSerial::printf(const char* format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(text, sizeof(text), format, args);
  va_end(args);
  ::printf("SERIAL %s", text);
  return n < 0 ? 0 : static_cast<size_t>(n);
}
size_t HardwareSerial::println(const char* text) {
  ::printf("SERIAL %s\n", text);
  return strlen(text) + 1;
}
size_t HardwareSerial::println(const String& text) { return println(text.c_str()); }
String HardwareSerial::readStringUntil(char) { return String(""); }

EspClass ESP;
uint64_t EspClass::getEfuseMac() { return 0x3CE04F40C86Cull; }

// ---- NVS in memory

static std::map<std::string, std::string> g_nvs;
bool Preferences::begin(const char*, bool) { return true; }
size_t Preferences::getBytesLength(const char* key) { return g_nvs.count(key) ? g_nvs[key].size() : 0; }
size_t Preferences::getBytes(const char* key, void* buf, size_t len) {
  std::string& v = g_nvs[key];
  size_t n = v.size() < len ? v.size() : len;
  memcpy(buf, v.data(), n);
  return n;
}
size_t Preferences::putBytes(const char* key, const void* value, size_t len) {
  g_nvs[key] = std::string(static_cast<const char*>(value), len);
  return len;
}
String Preferences::getString(const char* key, const String& fallback) {
  return g_nvs.count(key) ? String(g_nvs[key].c_str()) : fallback;
}
size_t Preferences::putString(const char* key, const String& value) {
  g_nvs[key] = value.c_str();
  return value.length();
}
uint32_t Preferences::getUInt(const char* key, uint32_t fallback) {
  uint32_t v = fallback;
  if (g_nvs.count(key) && g_nvs[key].size() == sizeof(v)) memcpy(&v, g_nvs[key].data(), sizeof(v));
  return v;
}
size_t Preferences::putUInt(const char* key, uint32_t value) { return putBytes(key, &value, sizeof(value)); }
bool Preferences::remove(const char* key) { return g_nvs.erase(key) > 0; }

// ---- a radio that never joins: the WiFi sketch boots and waits

WiFiClass WiFi;
IPAddress::IPAddress() : address_(0) {}
IPAddress::IPAddress(uint32_t address) : address_(address) {}
IPAddress::operator uint32_t() const { return address_; }
String IPAddress::toString() const { return String("0.0.0.0"); }
int WiFiClass::status() { return 0; }
bool WiFiClass::mode(int) { return true; }
int WiFiClass::begin(const char*, const char*) { return 0; }
bool WiFiClass::disconnect() { return true; }
IPAddress WiFiClass::localIP() { return IPAddress(); }
IPAddress WiFiClass::subnetMask() { return IPAddress(); }
uint8_t WiFiUDP::begin(uint16_t) { return 0; }
int WiFiUDP::beginPacket(IPAddress, uint16_t) { return 0; }
size_t WiFiUDP::write(const uint8_t*, size_t) { return 0; }
int WiFiUDP::endPacket() { return 0; }
int WiFiUDP::parsePacket() { return 0; }
int WiFiUDP::read(char*, size_t) { return -1; }
void WiFiUDP::stop() {}
#if ESP_ARDUINO_VERSION_MAJOR >= 3
typedef NetworkClient SimClient;
#else
typedef WiFiClient SimClient;
#endif
int SimClient::available() { return -1; }
int SimClient::read() { return -1; }
bool HTTPClient::begin(String) { return false; }
void HTTPClient::setConnectTimeout(int32_t) {}
void HTTPClient::setTimeout(uint16_t) {}
void HTTPClient::collectHeaders(const char*[], const size_t) {}
void HTTPClient::addHeader(const String&, const String&, bool, bool) {}
int HTTPClient::sendRequest(const char*, uint8_t*, size_t) { return -1; }
String HTTPClient::header(const char*) { return String(""); }
int HTTPClient::getSize() { return -1; }
bool HTTPClient::connected() { return false; }
SimClient* HTTPClient::getStreamPtr() { return nullptr; }
void HTTPClient::end() {}

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  setup();
  g_phase = "loop";
  for (int i = 0; i < 50; ++i) {
    loop();
    g_now += 10;
  }
  printf("BOOTED core=%d.x\n", ESP_ARDUINO_VERSION_MAJOR);
  return 0;
}
