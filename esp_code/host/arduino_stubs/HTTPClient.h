// Stand-in for the ESP32 HTTPClient API (2.x: WiFiClient, 3.x: NetworkClient): declarations only.
#ifndef HTTPCLIENT_STUB_H
#define HTTPCLIENT_STUB_H
#include "Arduino.h"
#include "WiFi.h"
class HTTPClient {
 public:
  bool begin(String url);
  void setConnectTimeout(int32_t ms);
  void setTimeout(uint16_t ms);
  void collectHeaders(const char* headerKeys[], const size_t headerKeysCount);
  void addHeader(const String& name, const String& value, bool first = false, bool replace = true);
  int sendRequest(const char* type, uint8_t* payload = nullptr, size_t size = 0);
  String header(const char* name);
  int getSize();
  bool connected();
#if ESP_ARDUINO_VERSION_MAJOR >= 3
  NetworkClient* getStreamPtr();
#else
  WiFiClient* getStreamPtr();
#endif
  void end();
};
#endif
