// Host stand-in for the ESP32 WiFi API: declarations only, for type checks.
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
#endif
