// Stand-in for the ESP32 WiFi API: declarations only.
#ifndef WIFI_STUB_H
#define WIFI_STUB_H
#include "Arduino.h"
#define WL_CONNECTED 3
#define WIFI_STA 1
class IPAddress {
 public:
  IPAddress();
  IPAddress(uint32_t address);
  operator uint32_t() const;
  String toString() const;

 private:
  uint32_t address_;
};
class WiFiClass {
 public:
  int status();
  bool mode(int mode);
  int begin(const char* ssid, const char* password);
  bool disconnect();
  IPAddress localIP();
  IPAddress subnetMask();
};
extern WiFiClass WiFi;
#if ESP_ARDUINO_VERSION_MAJOR >= 3
class NetworkClient : public Stream {
 public:
  int available() override;
  int read() override;
};
#else
class WiFiClient : public Stream {
 public:
  int available() override;
  int read() override;
};
#endif
#endif
