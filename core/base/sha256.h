/* sha256: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for signing webhooks and deriving
 * stable keys without an OpenSSL dependency. Pure functions on caller-owned memory: nothing
 * here allocates or fails, and every function is safe from any thread on distinct contexts. */
#ifndef BG_SHA256_H
#define BG_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "base/bg.h"

#define BG_SHA256_LEN 32     /* digest bytes */
#define BG_SHA256_BLOCK 64   /* block bytes (also the HMAC key block) */
#define BG_SHA256_HEX_LEN 65 /* lower-case hex digest plus its NUL */

/* Incremental state; caller-allocated, no cleanup needed (final wipes it). */
typedef struct bg_sha256_ctx {
  uint32_t h[8];
  uint64_t total; /* bytes hashed so far */
  uint8_t block[BG_SHA256_BLOCK];
  size_t fill; /* bytes waiting in block */
} bg_sha256_ctx;

/* Starts a digest. Can't fail. */
void bg_sha256_init(bg_sha256_ctx *c);
/* Hashes len more bytes (data may be NULL when len is 0). Can't fail. */
void bg_sha256_update(bg_sha256_ctx *c, const void *data, size_t len);
/* Writes the digest and wipes c; init it again to reuse it. */
void bg_sha256_final(bg_sha256_ctx *c, uint8_t out[BG_SHA256_LEN]);

/* One-shot digest of data[0..len). Can't fail. */
BG_EXPORT void bg_sha256(const void *data, size_t len, uint8_t out[BG_SHA256_LEN]);

/* HMAC-SHA256 of msg under key (any length; keys over 64 bytes are hashed first, as RFC 2104
 * says). Can't fail. */
BG_EXPORT void bg_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
                              uint8_t out[BG_SHA256_LEN]);

/* Writes len bytes as 2*len lower-case hex digits plus a NUL into out (2*len+1 bytes). */
BG_EXPORT void bg_hex(const void *data, size_t len, char *out);

#endif
