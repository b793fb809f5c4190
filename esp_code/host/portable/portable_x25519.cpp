// FOR TEST TARGETS ONLY: X25519 (RFC 7748) in plain C++ after TweetNaCl's public-domain
// crypto_scalarmult, for builds that have no mbedTLS (the rv32imc core tests under QEMU).
// The chip and the PC use mbedTLS through lib/vending_core/src/vc_crypto_mbedtls.cpp.
#ifndef VC_CRYPTO_PORTABLE
#error "portable crypto is for test targets: build them with -DVC_CRYPTO_PORTABLE"
#endif

#include <string.h>

#include "vc_crypto.h"

namespace vending {

namespace {

// A field element mod 2^255-19 as 16 limbs of 16 bits (held in 64 bits for the carries).
typedef int64_t Fe[16];

const Fe k121665 = {0xDB41, 1};

void carry(Fe o) {
  for (int i = 0; i < 16; ++i) {
    o[i] += 65536;
    int64_t c = o[i] >> 16;  // arithmetic shift on every compiler we target
    if (i < 15) {
      o[i + 1] += c - 1;
    } else {
      o[0] += 38 * (c - 1);  // 2^256 = 38 mod p
    }
    o[i] -= c * 65536;
  }
}

// Swap p and q when bit is 1, without a branch.
void cswap(Fe p, Fe q, int64_t bit) {
  int64_t mask = ~(bit - 1);
  for (int i = 0; i < 16; ++i) {
    int64_t t = mask & (p[i] ^ q[i]);
    p[i] ^= t;
    q[i] ^= t;
  }
}

void pack(uint8_t out[32], const Fe n) {
  Fe m, t;
  memcpy(t, n, sizeof(Fe));
  carry(t);
  carry(t);
  carry(t);
  for (int j = 0; j < 2; ++j) {
    m[0] = t[0] - 0xffed;
    for (int i = 1; i < 15; ++i) {
      m[i] = t[i] - 0xffff - ((m[i - 1] >> 16) & 1);
      m[i - 1] &= 0xffff;
    }
    m[15] = t[15] - 0x7fff - ((m[14] >> 16) & 1);
    int64_t borrow = (m[15] >> 16) & 1;
    m[14] &= 0xffff;
    cswap(t, m, 1 - borrow);
  }
  for (int i = 0; i < 16; ++i) {
    out[2 * i] = static_cast<uint8_t>(t[i] & 0xff);
    out[2 * i + 1] = static_cast<uint8_t>((t[i] >> 8) & 0xff);
  }
}

void unpack(Fe o, const uint8_t n[32]) {
  for (int i = 0; i < 16; ++i) o[i] = n[2 * i] + (static_cast<int64_t>(n[2 * i + 1]) << 8);
  o[15] &= 0x7fff;
}

void add(Fe o, const Fe a, const Fe b) {
  for (int i = 0; i < 16; ++i) o[i] = a[i] + b[i];
}

void sub(Fe o, const Fe a, const Fe b) {
  for (int i = 0; i < 16; ++i) o[i] = a[i] - b[i];
}

void mul(Fe o, const Fe a, const Fe b) {
  int64_t t[31] = {0};
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) t[i + j] += a[i] * b[j];
  }
  for (int i = 0; i < 15; ++i) t[i] += 38 * t[i + 16];
  for (int i = 0; i < 16; ++i) o[i] = t[i];
  carry(o);
  carry(o);
}

void square(Fe o, const Fe a) { mul(o, a, a); }

// a^(p-2) by Fermat: the inverse.
void invert(Fe o, const Fe in) {
  Fe c;
  memcpy(c, in, sizeof(Fe));
  for (int a = 253; a >= 0; --a) {
    square(c, c);
    if (a != 2 && a != 4) mul(c, c, in);
  }
  memcpy(o, c, sizeof(Fe));
}

}  // namespace

bool x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32], RandomFn) {
  uint8_t z[32];
  memcpy(z, scalar, 32);
  z[31] = static_cast<uint8_t>((z[31] & 127) | 64);
  z[0] &= 248;
  Fe x, a, b, c, d, e, f;
  unpack(x, u);
  for (int i = 0; i < 16; ++i) {
    b[i] = x[i];
    a[i] = c[i] = d[i] = 0;
  }
  a[0] = d[0] = 1;
  // The Montgomery ladder of RFC 7748 section 5, one constant-time step per scalar bit.
  for (int i = 254; i >= 0; --i) {
    int64_t bit = (z[i >> 3] >> (i & 7)) & 1;
    cswap(a, b, bit);
    cswap(c, d, bit);
    add(e, a, c);
    sub(a, a, c);
    add(c, b, d);
    sub(b, b, d);
    square(d, e);
    square(f, a);
    mul(a, c, a);
    mul(c, b, e);
    add(e, a, c);
    sub(a, a, c);
    square(b, a);
    sub(c, d, f);
    mul(a, c, k121665);
    add(a, a, d);
    mul(c, c, a);
    mul(a, d, f);
    mul(d, b, x);
    square(b, e);
    cswap(a, b, bit);
    cswap(c, d, bit);
  }
  invert(c, c);
  mul(a, a, c);
  pack(out, a);
  memset(z, 0, sizeof(z));
  return true;
}

}  // namespace vending
