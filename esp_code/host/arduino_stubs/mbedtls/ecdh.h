// Host stand-in for the mbedtls ECDH/ECP API (as in ESP-IDF 4.4 and 5.x): declarations only,
// for type checks of the WiFi sketch. The host build pairs with the core's own X25519.
#ifndef MBEDTLS_ECDH_STUB_H
#define MBEDTLS_ECDH_STUB_H
#include <stddef.h>
#include <stdint.h>
typedef struct mbedtls_mpi { int s; size_t n; uint32_t* p; } mbedtls_mpi;
typedef struct mbedtls_ecp_point { mbedtls_mpi X, Y, Z; } mbedtls_ecp_point;
typedef struct mbedtls_ecp_group { int id; unsigned char opaque[256]; } mbedtls_ecp_group;
typedef enum { MBEDTLS_ECP_DP_NONE = 0, MBEDTLS_ECP_DP_CURVE25519 = 9 } mbedtls_ecp_group_id;
#define MBEDTLS_ECP_PF_UNCOMPRESSED 0
void mbedtls_mpi_init(mbedtls_mpi* x);
void mbedtls_mpi_free(mbedtls_mpi* x);
int mbedtls_mpi_write_binary_le(const mbedtls_mpi* x, unsigned char* buf, size_t buflen);
void mbedtls_ecp_group_init(mbedtls_ecp_group* grp);
void mbedtls_ecp_group_free(mbedtls_ecp_group* grp);
int mbedtls_ecp_group_load(mbedtls_ecp_group* grp, mbedtls_ecp_group_id id);
void mbedtls_ecp_point_init(mbedtls_ecp_point* pt);
void mbedtls_ecp_point_free(mbedtls_ecp_point* pt);
int mbedtls_ecp_point_write_binary(const mbedtls_ecp_group* grp, const mbedtls_ecp_point* p, int format,
                                   size_t* olen, unsigned char* buf, size_t buflen);
int mbedtls_ecp_point_read_binary(const mbedtls_ecp_group* grp, mbedtls_ecp_point* p, const unsigned char* buf,
                                  size_t ilen);
int mbedtls_ecdh_gen_public(mbedtls_ecp_group* grp, mbedtls_mpi* d, mbedtls_ecp_point* q,
                            int (*f_rng)(void*, unsigned char*, size_t), void* p_rng);
int mbedtls_ecdh_compute_shared(mbedtls_ecp_group* grp, mbedtls_mpi* z, const mbedtls_ecp_point* q,
                                const mbedtls_mpi* d, int (*f_rng)(void*, unsigned char*, size_t), void* p_rng);
#endif
