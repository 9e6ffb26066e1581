/* crypto: what database authentication needs beside SHA-256 (sha256.h): MD5 (PostgreSQL's
 * md5 password exchange), PBKDF2-HMAC-SHA256 (SCRAM-SHA-256's salted password), random bytes
 * (nonces) and base64. MD5 and PBKDF2 come from libcrypto (OpenSSL 3), loaded with dlopen on
 * first use like libcurl in fetch.c: an agent that never authenticates to a database never
 * maps it. Every function is safe from any thread; none keeps the memory it is given. */
#ifndef BG_CRYPTO_H
#define BG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "base/bg.h"

#define BG_MD5_LEN 16
#define BG_PBKDF2_MAX_ITER 1000000 /* more holds a threadpool thread for seconds */
#define BG_PBKDF2_MAX_LEN 1024     /* bytes of derived key at most */

/* Loads libcrypto.so.3 once (later calls answer at once). Returns 0, or BG_EIO when it is
 * missing or lacks a function (then the two below fail the same way). */
int bg_crypto_load(void);

/* MD5 of data[0..len) into out. Returns 0 or BG_EIO (no libcrypto). */
BG_EXPORT int bg_md5(const void *data, size_t len, uint8_t out[BG_MD5_LEN]);

/* PBKDF2 (RFC 8018) with HMAC-SHA256: outlen bytes (1..BG_PBKDF2_MAX_LEN) derived from the
 * password and salt with iter iterations (1..BG_PBKDF2_MAX_ITER). Returns 0, BG_EINVAL for
 * an argument out of range, or BG_EIO (no libcrypto). CPU-bound: keep it off the loop. */
BG_EXPORT int bg_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen,
                               unsigned iter, uint8_t *out, size_t outlen);

/* n bytes from the kernel's random source (getrandom). Returns 0 or BG_EIO. */
BG_EXPORT int bg_random_bytes(void *out, size_t n);

/* Standard base64 (RFC 4648, "+/" and "=" padding) of in[0..n): writes
 * bg_base64_encoded_len(n) bytes to out (no NUL). */
static inline size_t bg_base64_encoded_len(size_t n) {
  return (n + 2) / 3 * 4;
}
BG_EXPORT void bg_base64_encode(const void *in, size_t n, char *out);

/* Decodes standard base64 into out (at least n / 4 * 3 + 3 bytes) and sets *outlen. Padding
 * may be left out; whitespace or any other byte is BG_EINVAL, *outlen then the offset of the
 * first bad byte. Returns 0 or BG_EINVAL. */
BG_EXPORT int bg_base64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);

#endif
