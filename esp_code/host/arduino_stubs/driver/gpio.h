// Stand-in for ESP-IDF's driver/gpio.h (both cores): declarations only.
#ifndef GPIO_STUB_H
#define GPIO_STUB_H
#include <stdint.h>
#include "../esp_err.h"
typedef enum { GPIO_NUM_NC = -1, GPIO_NUM_0 = 0, GPIO_NUM_MAX = 49 } gpio_num_t;
esp_err_t gpio_set_level(gpio_num_t gpio_num, uint32_t level);
#endif
