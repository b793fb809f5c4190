// Host stand-in for ESP-IDF 4.x esp_system.h: declarations only, for type checks.
#ifndef ESP_SYSTEM_STUB_H
#define ESP_SYSTEM_STUB_H
#include <stddef.h>
#include <stdint.h>
uint32_t esp_random();
void esp_fill_random(void* buf, size_t len);
#endif
