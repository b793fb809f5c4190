// Host stand-in for the ESP-IDF task watchdog API: declarations only, for type checks.
#ifndef ESP_TASK_WDT_STUB_H
#define ESP_TASK_WDT_STUB_H
typedef int esp_err_t;
esp_err_t esp_task_wdt_init(uint32_t timeoutSeconds, bool panic);
esp_err_t esp_task_wdt_add(void* task);
esp_err_t esp_task_wdt_reset();
#endif
