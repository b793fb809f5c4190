// Stand-in for ESP-IDF 4.x esp_system.h (core 2.x): declarations only.
#ifndef ESP_SYSTEM_STUB_H
#define ESP_SYSTEM_STUB_H
#include <stddef.h>
#include <stdint.h>
uint32_t esp_random();
void esp_fill_random(void* buf, size_t len);
#endif
