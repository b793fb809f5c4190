// The crypto seam on mbedTLS (see vc_crypto.h). The calls used here are the same in
// mbedTLS 2.28 (arduino-esp32 2.x, Debian 12) and 3.x (arduino-esp32 3.x).
#ifndef VC_CRYPTO_PORTABLE

#include <mbedtls/ecdh.h>
#include <mbedtls/md.h>
#include <string.h>

#include "vc_crypto.h"

namespace vending {

namespace {

struct Rng {
  RandomFn fill;
};

int rngCallback(void* context, unsigned char* out, size_t len) {
  static_cast<Rng*>(context)->fill(out, len);
  return 0;
}

}  // namespace

void sha256(const uint8_t* data, size_t len, uint8_t digest[32]) {
  mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), data, len, digest);
}

void hmacSha256(const uint8_t* key, size_t keyLen, const uint8_t* msg, size_t msgLen,
                uint8_t mac[32]) {
  mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), key, keyLen, msg, msgLen, mac);
}

bool x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t u[32], RandomFn random) {
  // mbedTLS checks rather than clamps the private key, and RFC 7748 ignores u's top bit.
  uint8_t k[32], point[32];
  memcpy(k, scalar, 32);
  k[0] = static_cast<uint8_t>(k[0] & 248);
  k[31] = static_cast<uint8_t>((k[31] & 127) | 64);
  memcpy(point, u, 32);
  point[31] = static_cast<uint8_t>(point[31] & 127);
  mbedtls_ecp_group group;
  mbedtls_mpi d, z;
  mbedtls_ecp_point q;
  mbedtls_ecp_group_init(&group);
  mbedtls_mpi_init(&d);
  mbedtls_mpi_init(&z);
  mbedtls_ecp_point_init(&q);
  Rng rng = {random};
  bool ok = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_CURVE25519) == 0 &&
            mbedtls_mpi_read_binary_le(&d, k, sizeof(k)) == 0 &&
            mbedtls_ecp_point_read_binary(&group, &q, point, sizeof(point)) == 0 &&
            mbedtls_ecdh_compute_shared(&group, &z, &q, &d, rngCallback, &rng) == 0 &&
            mbedtls_mpi_write_binary_le(&z, out, 32) == 0;
  memset(k, 0, sizeof(k));
  mbedtls_ecp_point_free(&q);
  mbedtls_mpi_free(&z);
  mbedtls_mpi_free(&d);  // zeroizes the private key
  mbedtls_ecp_group_free(&group);
  return ok;
}

}  // namespace vending

#endif
