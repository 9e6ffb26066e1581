/* script_io_sync: the helpers a plugin calls without waiting: read_file and statvfs (for
 * /proc, /sys and small local files), SHA-256 and HMAC (webhook signatures) and json_encode. */
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "base/bg.h"
#include "base/jsonenc.h"
#include "base/sha256.h"
#include "script/script_io_int.h"

/* ---- files ------------------------------------------------------------------------------ */

/* read_file(path[, max]) -> data | nil, err. Synchronous: for /proc, /sys and small local
 * files, which the kernel answers from memory. At most max bytes (default 1 MiB). */
static int pl_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t max = (size_t)luaL_optnumber(L, 2, 1 << 20);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t total = 0;
  char chunk[4096];
  while (total < max) {
    size_t want = max - total < sizeof chunk ? max - total : sizeof chunk;
    size_t n = fread(chunk, 1, want, f);
    if (n == 0) break;
    luaL_addlstring(&b, chunk, n);
    total += n;
  }
  fclose(f);
  luaL_pushresult(&b);
  return 1;
}

/* statvfs(path) -> total_bytes, available_bytes | nil, err */
static int pl_statvfs(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct statvfs st;
  if (statvfs(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushnumber(L, (double)st.f_blocks * (double)st.f_frsize);
  lua_pushnumber(L, (double)st.f_bavail * (double)st.f_frsize);
  return 2;
}

/* ---- hashing -------------------------------------------------------------------------- */

/* sha256(msg) -> lower-case hex digest */
static int pl_sha256(lua_State *L) {
  size_t n;
  const char *msg = luaL_checklstring(L, 1, &n);
  uint8_t d[BG_SHA256_LEN];
  char hex[BG_SHA256_HEX_LEN];
  bg_sha256(msg, n, d);
  bg_hex(d, sizeof d, hex);
  lua_pushlstring(L, hex, 2 * BG_SHA256_LEN);
  return 1;
}

/* hmac_sha256(key, msg) -> lower-case hex HMAC-SHA256 */
static int pl_hmac_sha256(lua_State *L) {
  size_t kn, mn;
  const char *key = luaL_checklstring(L, 1, &kn);
  const char *msg = luaL_checklstring(L, 2, &mn);
  uint8_t d[BG_SHA256_LEN];
  char hex[BG_SHA256_HEX_LEN];
  bg_hmac_sha256(key, kn, msg, mn, d);
  bg_hex(d, sizeof d, hex);
  lua_pushlstring(L, hex, 2 * BG_SHA256_LEN);
  return 1;
}

/* ---- json ----------------------------------------------------------------------------- */

/* json_encode(v) -> string | nil, err: beagle.json's encode, byte for byte (jsonenc.h) */
static int pl_json_encode(lua_State *L) {
  lua_settop(L, 1);
  if (bg_json_encode_push(L, 1) == 0) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* Sets read_file, statvfs, sha256, hmac_sha256, json_encode in the __bg table on top of L. */
void bg__script_open_io_sync(lua_State *L) {
  static const luaL_Reg fns[] = {{"read_file", pl_read_file},     {"statvfs", pl_statvfs},
                                 {"sha256", pl_sha256},           {"hmac_sha256", pl_hmac_sha256},
                                 {"json_encode", pl_json_encode}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
