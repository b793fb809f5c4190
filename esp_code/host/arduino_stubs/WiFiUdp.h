// Host stand-in for the ESP32 WiFiUDP API: declarations only, for type checks.
#ifndef WIFIUDP_STUB_H
#define WIFIUDP_STUB_H
#include "WiFi.h"
class WiFiUDP {
 public:
  uint8_t begin(uint16_t port);
  int beginPacket(IPAddress ip, uint16_t port);
  size_t write(const uint8_t* data, size_t len);
  int endPacket();
  int parsePacket();
  int read(char* buf, size_t len);
  void stop();
};
#endif
