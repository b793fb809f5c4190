// X25519 (RFC 7748) and the key-agreement interface pairing uses.
// The chip's shell implements KeyAgreement with mbedtls; the host uses X25519KeyAgreement,
// built on the portable x25519() below (tested against the RFC 7748 vectors).
#ifndef VC_X25519_H
#define VC_X25519_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

// out = X25519(scalar, u): the scalar is clamped as RFC 7748 says, the top bit of u ignored.
// All three are 32 bytes, little-endian. Runs in constant time (no secret-dependent branch
// or index), after TweetNaCl's public-domain crypto_scalarmult.
void x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32]);

// The public key of a private scalar: X25519(scalar, 9).
void x25519Base(uint8_t out[32], const uint8_t scalar[32]);

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

// KeyAgreement on x25519(); the shell supplies 32 random bytes for each new key.
class X25519KeyAgreement : public KeyAgreement {
 public:
  typedef void (*RandomFn)(uint8_t* out, size_t len);
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
