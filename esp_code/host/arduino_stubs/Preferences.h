// Host stand-in for the ESP32 Preferences (NVS) API: declarations only, for type checks.
#ifndef PREFERENCES_STUB_H
#define PREFERENCES_STUB_H
#include "Arduino.h"
class Preferences {
 public:
  bool begin(const char* name, bool readOnly);
  size_t getBytesLength(const char* key);
  size_t getBytes(const char* key, void* buf, size_t len);
  size_t putBytes(const char* key, const void* value, size_t len);
  String getString(const char* key, const String& fallback);
  size_t putString(const char* key, const String& value);
  uint32_t getUInt(const char* key, uint32_t fallback);
  size_t putUInt(const char* key, uint32_t value);
  bool remove(const char* key);
};
#endif
