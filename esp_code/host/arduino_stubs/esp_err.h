// Stand-in for ESP-IDF's esp_err.h: declarations only.
#ifndef ESP_ERR_STUB_H
#define ESP_ERR_STUB_H
typedef int esp_err_t;
#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_STATE 0x103
// The stand-ins mark every call that returns an esp_err_t so that ignoring one fails the
// build (-Werror): the sketches must look at what the chip answered.
#define STUB_CHECK_RESULT __attribute__((warn_unused_result))
#endif
