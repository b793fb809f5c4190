// Host stand-in for the ESP32 HTTPClient API: declarations only, for type checks.
#ifndef HTTPCLIENT_STUB_H
#define HTTPCLIENT_STUB_H
#include "Arduino.h"
class HTTPClient {
 public:
  bool begin(String url);
  void setConnectTimeout(int32_t ms);
  void setTimeout(uint16_t ms);
  void collectHeaders(const char* headerKeys[], const size_t headerKeysCount);
  void addHeader(const String& name, const String& value, bool first = false, bool replace = true);
  int sendRequest(const char* type, uint8_t* payload = nullptr, size_t size = 0);
  String header(const char* name);
  String getString();
  void end();
};
#endif
