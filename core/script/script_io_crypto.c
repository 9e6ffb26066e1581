/* script_io_crypto: ctx.crypto's C side. Hashing, random bytes and base64 answer at once;
 * PBKDF2 (up to 10^6 iterations, about a second of CPU) runs on the libuv threadpool while the
 * run waits, so that a plugin deriving a SCRAM key never holds the loop. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "base/crypto.h"
#include "base/sha256.h"
#include "script/script_io_int.h"

#define RANDOM_MAX 1024

static const char NO_LIBCRYPTO[] = "crypto: libcrypto.so.3 (OpenSSL 3) cannot be loaded";

/* md5_hex(s) -> 32 lower-case hex digits | nil, err */
static int pl_md5_hex(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint8_t d[BG_MD5_LEN];
  char hex[2 * BG_MD5_LEN + 1];
  if (bg_md5(s, n, d) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, NO_LIBCRYPTO);
    return 2;
  }
  bg_hex(d, sizeof d, hex);
  lua_pushlstring(L, hex, 2 * BG_MD5_LEN);
  return 1;
}

/* sha256_raw(s) -> 32 bytes */
static int pl_sha256_raw(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint8_t d[BG_SHA256_LEN];
  bg_sha256(s, n, d);
  lua_pushlstring(L, (const char *)d, sizeof d);
  return 1;
}

/* hmac_sha256_raw(key, s) -> 32 bytes */
static int pl_hmac_sha256_raw(lua_State *L) {
  size_t kn, n;
  const char *k = luaL_checklstring(L, 1, &kn);
  const char *s = luaL_checklstring(L, 2, &n);
  uint8_t d[BG_SHA256_LEN];
  bg_hmac_sha256(k, kn, s, n, d);
  lua_pushlstring(L, (const char *)d, sizeof d);
  return 1;
}

/* random(n) -> n random bytes (0..1024) | nil, err */
static int pl_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0 || n > RANDOM_MAX) return luaL_argerror(L, 1, "0..1024 bytes");
  uint8_t buf[RANDOM_MAX];
  if (bg_random_bytes(buf, (size_t)n) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, "crypto.random: the kernel's random source failed");
    return 2;
  }
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

/* base64_encode(s) -> standard base64 with padding */
static int pl_base64_encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  /* in pieces of 3 * 256 bytes: luaL_Buffer's pieces are LUAL_BUFFERSIZE */
  char out[1024];
  for (size_t i = 0; i < n; i += 768) {
    size_t k = n - i < 768 ? n - i : 768;
    bg_base64_encode(s + i, k, out);
    luaL_addlstring(&b, out, bg_base64_encoded_len(k));
  }
  luaL_pushresult(&b);
  return 1;
}

/* base64_decode(s) -> bytes | nil, err */
static int pl_base64_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  uint8_t small[768];
  size_t cap = n / 4 * 3 + 3;
  /* a large result is decoded into a userdata of the state: when the string made of it raises
   * (the plugin's memory limit), the collector frees it, nothing leaks */
  uint8_t *out = cap <= sizeof small ? small : lua_newuserdata(L, cap);
  size_t len;
  if (bg_base64_decode(s, n, out, &len) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "base64_decode: not base64 (at byte %d)", (int)len + 1);
    return 2;
  }
  lua_pushlstring(L, (const char *)out, len);
  return 1;
}

/* ---- pbkdf2 on the threadpool --------------------------------------------------------- */

typedef struct kdf_op {
  bg__op op;
  uv_work_t work;
  unsigned iter;
  size_t pwlen, saltlen, outlen;
  int rc;
  uint8_t *out; /* outlen bytes, then the password and the salt */
} kdf_op;

static void kdf_free(kdf_op *k) {
  /* the password and what was derived from it do not stay in freed memory */
  memset(k->out, 0, k->outlen + k->pwlen + k->saltlen);
  free(k->out);
  free(k);
}

static void kdf_cancel(bg__op *op) {
  kdf_op *k = (kdf_op *)op;
  uv_cancel((uv_req_t *)&k->work); /* kdf_after frees it, now or when the worker is done */
}

static void kdf_run(uv_work_t *w) {
  kdf_op *k = w->data;
  const uint8_t *pw = k->out + k->outlen;
  k->rc = bg_pbkdf2_sha256(pw, k->pwlen, pw + k->pwlen, k->saltlen, k->iter, k->out, k->outlen);
}

static void kdf_after(uv_work_t *w, int status) {
  kdf_op *k = w->data;
  bg__run *r = k->op.run;
  if (r != NULL) {
    if (status != 0 || k->rc != 0) {
      lua_pushnil(r->co);
      lua_pushstring(r->co, k->rc == BG_EIO ? NO_LIBCRYPTO : bg_strerror(status ? status : k->rc));
    } else {
      lua_pushlstring(r->co, (const char *)k->out, k->outlen);
      lua_pushnil(r->co);
    }
  }
  kdf_free(k);
  if (r != NULL) bg__run_resume(r, 2);
}

/* pbkdf2_sha256(password, salt, iterations, length) -> length bytes | nil, err */
static int pl_pbkdf2_sha256(lua_State *L) {
  size_t pwlen, saltlen;
  const char *pw = luaL_checklstring(L, 1, &pwlen);
  const char *salt = luaL_checklstring(L, 2, &saltlen);
  lua_Integer iter = luaL_checkinteger(L, 3);
  lua_Integer len = luaL_checkinteger(L, 4);
  if (iter < 1 || iter > BG_PBKDF2_MAX_ITER) return luaL_argerror(L, 3, "1..1000000 iterations");
  if (len < 1 || len > BG_PBKDF2_MAX_LEN) return luaL_argerror(L, 4, "1..1024 bytes");
  if (bg_crypto_load() != 0) { /* here, not in a worker: the answer comes at once */
    lua_pushnil(L);
    lua_pushstring(L, NO_LIBCRYPTO);
    return 2;
  }
  bg__run *r = bg__run_current(L);
  kdf_op *k = calloc(1, sizeof *k);
  uint8_t *buf = k ? malloc((size_t)len + pwlen + saltlen) : NULL;
  if (buf == NULL) {
    free(k);
    return luaL_error(L, "out of memory");
  }
  k->out = buf;
  k->outlen = (size_t)len;
  k->pwlen = pwlen;
  k->saltlen = saltlen;
  k->iter = (unsigned)iter;
  memcpy(buf + len, pw, pwlen);
  memcpy(buf + len + pwlen, salt, saltlen);
  k->op.run = r;
  k->op.cancel = kdf_cancel;
  k->work.data = k;
  int rc = uv_queue_work(bg__io_runtime(L)->loop, &k->work, kdf_run, kdf_after);
  if (rc != 0) {
    kdf_free(k);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &k->op);
}

/* Sets the crypto_* functions in the __bg table on top of L. */
void bg__script_open_io_crypto(lua_State *L) {
  static const luaL_Reg fns[] = {{"crypto_md5_hex", pl_md5_hex},
                                 {"crypto_sha256", pl_sha256_raw},
                                 {"crypto_hmac_sha256", pl_hmac_sha256_raw},
                                 {"crypto_pbkdf2_sha256", pl_pbkdf2_sha256},
                                 {"crypto_random", pl_random},
                                 {"crypto_base64_encode", pl_base64_encode},
                                 {"crypto_base64_decode", pl_base64_decode},
                                 {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
