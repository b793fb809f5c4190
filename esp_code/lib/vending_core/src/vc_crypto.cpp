#include "vc_crypto.h"

#include <string.h>

namespace vending {

bool x25519Base(uint8_t out[32], const uint8_t scalar[32], RandomFn random) {
  const uint8_t nine[32] = {9};
  return x25519(out, scalar, nine, random);
}

void toHex(const uint8_t* data, size_t len, char* out) {
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = kHex[data[i] >> 4];
    out[2 * i + 1] = kHex[data[i] & 0xF];
  }
  out[2 * len] = '\0';
}

bool constantTimeEqual(const uint8_t* a, const uint8_t* b, size_t len) {
  uint8_t diff = 0;
  for (size_t i = 0; i < len; ++i) diff = static_cast<uint8_t>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

bool X25519KeyAgreement::generate(uint8_t publicKey[32]) {
  random_(private_, sizeof(private_));
  have_ = x25519Base(publicKey, private_, random_);
  if (!have_) forget();
  return have_;
}

bool X25519KeyAgreement::agree(const uint8_t peerPublic[32], uint8_t shared[32]) {
  if (!have_ || !x25519(shared, private_, peerPublic, random_)) return false;
  // An all-zero result means a low-order peer key: refuse it (RFC 7748 section 6.1).
  uint8_t any = 0;
  for (int i = 0; i < 32; ++i) any = static_cast<uint8_t>(any | shared[i]);
  return any != 0;
}

void X25519KeyAgreement::forget() {
  memset(private_, 0, sizeof(private_));
  have_ = false;
}

}  // namespace vending
