/* script_io_sync: the helpers a plugin calls without waiting: read_file (for /proc, /sys and
 * small local files), SHA-256 and HMAC (webhook signatures) and json_encode. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/bg.h"
#include "base/jsonenc.h"
#include "base/sha256.h"
#include "script/script_io_int.h"

/* ---- files ------------------------------------------------------------------------------ */

#define READ_DEFAULT_MAX (1u << 20)
#define READ_HARD_MAX (64u << 20)

typedef struct file_read {
  int fd;
  size_t max;
  int err; /* errno of a failed read, 0 when none */
} file_read;

/* Reads fr->fd to its end or fr->max bytes into a string pushed on L. Raises only when out of
 * memory (the plugin's limit): the caller runs it under lua_pcall and closes the fd after. */
static int read_body(lua_State *L) {
  file_read *fr = lua_touserdata(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t total = 0;
  while (total < fr->max) {
    char *p = luaL_prepbuffer(&b);
    size_t want = fr->max - total < LUAL_BUFFERSIZE ? fr->max - total : LUAL_BUFFERSIZE;
    ssize_t n = read(fr->fd, p, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      fr->err = errno;
      break;
    }
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
    total += (size_t)n;
  }
  luaL_pushresult(&b);
  return 1;
}

/* read_file(path[, max]) -> data | nil, err. For /proc, /sys and small local files: regular
 * files only (a FIFO, a device or a socket could block the loop or never end; /proc and /sys
 * files are regular), opened non-blocking so that a pseudo-file that would wait (/proc/kmsg)
 * answers EAGAIN instead. At most max bytes (default 1 MiB, at most 64 MiB). The descriptor
 * is closed on every path, also when the plugin runs out of memory mid-read (that error is
 * raised again once it is closed). */
int bg_lua_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Number m = luaL_optnumber(L, 2, READ_DEFAULT_MAX);
  if (!(m >= 1)) return luaL_argerror(L, 2, "max must be a number of bytes >= 1");
  file_read fr = {-1, m > READ_HARD_MAX ? READ_HARD_MAX : (size_t)m, 0};
  fr.fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fr.fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  struct stat st;
  const char *why = fstat(fr.fd, &st) != 0 ? strerror(errno)
                    : !S_ISREG(st.st_mode) ? "not a regular file"
                                           : NULL;
  if (why != NULL) {
    close(fr.fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, why);
    return 2;
  }
  lua_pushcfunction(L, read_body);
  lua_pushlightuserdata(L, &fr);
  int rc = lua_pcall(L, 1, 1, 0);
  close(fr.fd);
  if (rc != 0) return lua_error(L);
  if (fr.err != 0) {
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, fr.err == EAGAIN ? "would block" : strerror(fr.err));
    return 2;
  }
  return 1;
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

/* Sets read_file, sha256, hmac_sha256, json_encode in the __bg table on top of L. */
void bg__script_open_io_sync(lua_State *L) {
  static const luaL_Reg fns[] = {{"read_file", bg_lua_read_file},
                                 {"sha256", pl_sha256},
                                 {"hmac_sha256", pl_hmac_sha256},
                                 {"json_encode", pl_json_encode},
                                 {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
