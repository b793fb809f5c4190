// CRC-16/CCITT-FALSE, the checksum of protocol v2 machine lines.
#ifndef VC_CRC16_H
#define VC_CRC16_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

// poly 0x1021, init 0xFFFF, no reflection, xorout 0; "123456789" -> 0x29B1.
uint16_t crc16(const uint8_t* data, size_t len);

// Writes the 4 uppercase hex digits of crc to out (no terminator).
void crc16Hex(uint16_t crc, char out[4]);

}  // namespace vending

#endif
