// SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) in plain C++, so the host build needs no
// mbedtls. On the ESP32 the shell may use mbedtls instead; both give the same bytes.
#ifndef VC_SHA256_H
#define VC_SHA256_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

class Sha256 {
 public:
  Sha256();
  void update(const uint8_t* data, size_t len);
  void finish(uint8_t digest[32]);

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t bufLen_ = 0;
  uint64_t total_ = 0;
};

void hmacSha256(const uint8_t* key, size_t keyLen, const uint8_t* msg, size_t msgLen,
                uint8_t mac[32]);

// Lowercase hex of len bytes into out (2*len chars and a terminator).
void toHex(const uint8_t* data, size_t len, char* out);

// Compares two equal-length byte strings without an early exit (no timing hint).
bool constantTimeEqual(const uint8_t* a, const uint8_t* b, size_t len);

}  // namespace vending

#endif
