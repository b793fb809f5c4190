// Stand-in for ESP-IDF 5.x esp_random.h (core 3.x): declarations only.
#ifndef ESP_RANDOM_STUB_H
#define ESP_RANDOM_STUB_H
#include <stddef.h>
#include <stdint.h>
uint32_t esp_random();
void esp_fill_random(void* buf, size_t len);
#endif
