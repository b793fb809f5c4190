// Host stand-in for ESP-IDF 5.x esp_random.h: declarations only, for type checks.
#ifndef ESP_RANDOM_STUB_H
#define ESP_RANDOM_STUB_H
#include "esp_system.h"
#endif
