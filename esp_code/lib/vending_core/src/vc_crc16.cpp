#include "vc_crc16.h"

namespace vending {

uint16_t crc16(const uint8_t* data, size_t len) {
  // Bitwise rather than a 512-byte table: lines are short and RAM on the chip is not free.
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < len; ++i) {
    crc ^= static_cast<uint16_t>(data[i]) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

void crc16Hex(uint16_t crc, char out[4]) {
  static const char kHex[] = "0123456789ABCDEF";
  out[0] = kHex[(crc >> 12) & 0xF];
  out[1] = kHex[(crc >> 8) & 0xF];
  out[2] = kHex[(crc >> 4) & 0xF];
  out[3] = kHex[crc & 0xF];
}

}  // namespace vending
