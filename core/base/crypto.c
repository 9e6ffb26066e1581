/* crypto.c: MD5 and PBKDF2 through libcrypto (dlopen, once, under pthread_once so that a
 * threadpool thread may be the first caller), getrandom, base64. */
#include "base/crypto.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/random.h>

/* libcrypto's functions we call, by their OpenSSL 3 signatures (no headers needed). */
typedef struct evp_md evp_md;
static struct {
  const evp_md *(*md5)(void);
  const evp_md *(*sha256)(void);
  int (*digest)(const void *data, size_t count, unsigned char *md, unsigned int *size,
                const evp_md *type, void *engine);
  int (*pbkdf2)(const char *pass, int passlen, const unsigned char *salt, int saltlen, int iter,
                const evp_md *digest, int keylen, unsigned char *out);
} lc;
static int loaded; /* 1 loaded, -1 failed; written once under load_once */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void) {
  loaded = -1;
  void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return;
  *(void **)&lc.md5 = dlsym(h, "EVP_md5");
  *(void **)&lc.sha256 = dlsym(h, "EVP_sha256");
  *(void **)&lc.digest = dlsym(h, "EVP_Digest");
  *(void **)&lc.pbkdf2 = dlsym(h, "PKCS5_PBKDF2_HMAC");
  if (lc.md5 && lc.sha256 && lc.digest && lc.pbkdf2) loaded = 1;
}

int bg_crypto_load(void) {
  pthread_once(&load_once, load);
  return loaded > 0 ? 0 : BG_EIO;
}

int bg_md5(const void *data, size_t len, uint8_t out[BG_MD5_LEN]) {
  if (bg_crypto_load() != 0) return BG_EIO;
  const evp_md *md = lc.md5();
  unsigned int n = 0;
  if (md == NULL || lc.digest(data, len, out, &n, md, NULL) != 1 || n != BG_MD5_LEN) return BG_EIO;
  return 0;
}

int bg_pbkdf2_sha256(const void *pw, size_t pwlen, const void *salt, size_t saltlen, unsigned iter,
                     uint8_t *out, size_t outlen) {
  if (iter < 1 || iter > BG_PBKDF2_MAX_ITER || outlen < 1 || outlen > BG_PBKDF2_MAX_LEN ||
      pwlen > INT_MAX || saltlen > INT_MAX)
    return BG_EINVAL;
  if (bg_crypto_load() != 0) return BG_EIO;
  const evp_md *md = lc.sha256();
  if (md == NULL || lc.pbkdf2(pwlen ? pw : "", (int)pwlen, saltlen ? salt : (const void *)"",
                              (int)saltlen, (int)iter, md, (int)outlen, out) != 1)
    return BG_EIO;
  return 0;
}

int bg_random_bytes(void *out, size_t n) {
  uint8_t *p = out;
  while (n > 0) {
    ssize_t got = getrandom(p, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return BG_EIO;
    p += got;
    n -= (size_t)got;
  }
  return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void bg_base64_encode(const void *in, size_t n, char *out) {
  const uint8_t *p = in;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *out++ = B64[v >> 18];
    *out++ = B64[(v >> 12) & 63];
    *out++ = B64[(v >> 6) & 63];
    *out++ = B64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
    *out++ = B64[v >> 18];
    *out++ = B64[(v >> 12) & 63];
    *out++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    *out++ = '=';
  }
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int bg_base64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen) {
  size_t end = n, o = 0;
  /* at most two '=' at the end, and only where they complete a group of four */
  if (end > 0 && in[end - 1] == '=') end--;
  if (end > 0 && in[end - 1] == '=') end--;
  if (end < n && n % 4 != 0) {
    *outlen = end;
    return BG_EINVAL;
  }
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < end; i++) {
    int v = b64_value((unsigned char)in[i]);
    if (v < 0) {
      *outlen = i;
      return BG_EINVAL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  /* a lone sextet (length 4k+1) cannot stand for any byte; leftover bits must be zero */
  if (end % 4 == 1 || (acc & ((1u << bits) - 1)) != 0) {
    *outlen = end;
    return BG_EINVAL;
  }
  *outlen = o;
  return 0;
}
