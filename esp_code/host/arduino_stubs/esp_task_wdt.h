// Stand-in for the ESP-IDF task watchdog API of core 2.x (IDF 4.4) and 3.x (IDF 5.x):
// declarations only, with the signatures each version really has.
#ifndef ESP_TASK_WDT_STUB_H
#define ESP_TASK_WDT_STUB_H
#include <stdint.h>
#include "esp_err.h"
#if ESP_ARDUINO_VERSION_MAJOR >= 3
typedef struct {
  uint32_t timeout_ms;
  uint32_t idle_core_mask;
  bool trigger_panic;
} esp_task_wdt_config_t;
STUB_CHECK_RESULT esp_err_t esp_task_wdt_init(const esp_task_wdt_config_t* config);
STUB_CHECK_RESULT esp_err_t esp_task_wdt_reconfigure(const esp_task_wdt_config_t* config);
#else
STUB_CHECK_RESULT esp_err_t esp_task_wdt_init(uint32_t timeout_seconds, bool panic);
#endif
STUB_CHECK_RESULT esp_err_t esp_task_wdt_add(void* task);
STUB_CHECK_RESULT esp_err_t esp_task_wdt_reset();
#endif
