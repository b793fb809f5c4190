// Host stand-in for the ESP32 HTTPClient API: declarations only, for type checks.
#ifndef HTTPCLIENT_STUB_H
#define HTTPCLIENT_STUB_H
#include "Arduino.h"
class HTTPClient {
 public:
  bool begin(const char* url);
  void setTimeout(uint16_t ms);
  void addHeader(const char* name, const char* value);
  int GET();
  int POST(const String& body);
  String getString();
  void end();
};
#endif
