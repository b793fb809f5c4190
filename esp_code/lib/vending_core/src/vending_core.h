// The vending board's plain C++ core: include this one header from a sketch.
// Nothing here includes Arduino.h; see esp_code/README.md for the layout.
#ifndef VENDING_CORE_H
#define VENDING_CORE_H

#include "vc_crc16.h"
#include "vc_codec.h"
#include "vc_memory.h"
#include "vc_engine.h"
#include "vc_serial_board.h"
#include "vc_wifi.h"
#include "vc_json.h"
#include "vc_crypto.h"
#include "vc_wifi_board.h"

#endif
