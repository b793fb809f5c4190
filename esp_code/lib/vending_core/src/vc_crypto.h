// The crypto seam: SHA-256, HMAC-SHA256 and X25519 come from the platform's library, never
// from code of ours. vc_crypto_mbedtls.cpp backs them with mbedTLS: on the ESP32 the copy
// every arduino-esp32 core links (hardware SHA), on a PC Debian's libmbedtls-dev (the same
// API). Only test targets that have no mbedTLS (the rv32imc build run under QEMU) define
// VC_CRYPTO_PORTABLE and link esp_code/host/portable/ instead.
#ifndef VC_CRYPTO_H
#define VC_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

// Fills out with len random bytes (esp_fill_random on the chip, /dev/urandom on a PC).
typedef void (*RandomFn)(uint8_t* out, size_t len);

void sha256(const uint8_t* data, size_t len, uint8_t digest[32]);
void hmacSha256(const uint8_t* key, size_t keyLen, const uint8_t* msg, size_t msgLen,
                uint8_t mac[32]);
// out = X25519(scalar, u) of RFC 7748 (the scalar clamped, the top bit of u ignored); all
// little-endian. random feeds the library's side-channel blinding. False when the library
// refuses (e.g. a low-order u).
bool x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32], RandomFn random);

// The public key of a private scalar: X25519(scalar, 9).
bool x25519Base(uint8_t out[32], const uint8_t scalar[32], RandomFn random);

// Lowercase hex of len bytes into out (2*len chars and a terminator).
void toHex(const uint8_t* data, size_t len, char* out);

// Compares two equal-length byte strings without an early exit (no timing hint).
bool constantTimeEqual(const uint8_t* a, const uint8_t* b, size_t len);

// One pairing's key pair: make it, hand out the public half, agree, forget it.
class KeyAgreement {
 public:
  virtual ~KeyAgreement() {}
  // A fresh key pair; writes its public key (32 bytes, little-endian). False on failure.
  virtual bool generate(uint8_t publicKey[32]) = 0;
  // The shared value with the other side's public key. False on failure (e.g. all zero).
  virtual bool agree(const uint8_t peerPublic[32], uint8_t shared[32]) = 0;
  // Wipe the private key.
  virtual void forget() = 0;
};

// KeyAgreement on x25519(); `random` supplies each new private key and the blinding.
class X25519KeyAgreement : public KeyAgreement {
 public:
  explicit X25519KeyAgreement(RandomFn random) : random_(random) {}
  bool generate(uint8_t publicKey[32]) override;
  bool agree(const uint8_t peerPublic[32], uint8_t shared[32]) override;
  void forget() override;

 private:
  RandomFn random_;
  uint8_t private_[32] = {0};
  bool have_ = false;
};

}  // namespace vending

#endif
