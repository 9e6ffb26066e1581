/* bg.h: what every module shares. Error codes (0 or a negative BG_E* value, libuv
 * style), the one table of their messages, the export marker for symbols the LuaJIT FFI
 * reaches through ffi.C, and a growable byte buffer. Nothing here allocates except bg_buf. */
#ifndef BG_H
#define BG_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define BG_EXPORT __attribute__((visibility("default")))

/* All error codes and their messages, in one place (like LuaJIT's lj_errmsg.h). Codes that
 * have an errno keep its value so that libuv results pass through unchanged. */
#define BG_ERRNO_MAP(XX)                                                                           \
  XX(EINVAL, -EINVAL, "invalid argument")                                                          \
  XX(ENOMEM, -ENOMEM, "out of memory")                                                             \
  XX(ENOENT, -ENOENT, "no such file or directory")                                                 \
  XX(EEXIST, -EEXIST, "already exists")                                                            \
  XX(EIO, -EIO, "i/o error")                                                                       \
  XX(ETIMEDOUT, -ETIMEDOUT, "timeout")                                                             \
  XX(ECANCELED, -ECANCELED, "canceled")                                                            \
  XX(ERANGE, -ERANGE, "value out of range")                                                        \
  XX(EBUSY, -EBUSY, "busy")                                                                        \
  XX(ELIMIT, -4001, "limit reached")                                                               \
  XX(ESYNTAX, -4002, "syntax error")                                                               \
  XX(EMEMLIMIT, -4003, "memory limit")                                                             \
  XX(EBUDGET, -4004, "instruction budget exceeded")

enum {
#define XX(name, val, msg) BG_##name = (val),
  BG_ERRNO_MAP(XX)
#undef XX
};

/* Message for a BG_E* code or a libuv error code; never NULL, never freed. */
const char *bg_strerror(int err);
/* Short name ("EINVAL") of a code; never NULL. */
const char *bg_errname(int err);

/* Growable byte buffer. Zero-initialise ({0}) to use; bg_buf_free releases it.
 * Appends return 0 or BG_ENOMEM and leave the buffer valid either way. */
typedef struct bg_buf {
  char *data;
  size_t len;
  size_t cap;
} bg_buf;

int bg_buf_reserve(bg_buf *b, size_t extra);
int bg_buf_append(bg_buf *b, const void *p, size_t n);
int bg_buf_puts(bg_buf *b, const char *s);
int bg_buf_printf(bg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a JSON string (no quotes). */
int bg_buf_json_str(bg_buf *b, const char *s, size_t n);
void bg_buf_reset(bg_buf *b);
void bg_buf_free(bg_buf *b);

/* 1 when s (NUL-terminated) is valid UTF-8: no overlong forms, no surrogates, nothing past
 * U+10FFFF; else 0. */
int bg_utf8_valid(const char *s);

/* FNV-1a 64 of n bytes as 16 lower-case hex digits into out (not NUL-terminated): the alert
 * engine's fingerprints and dedup keys (lua/agent/rules/engine.lua has the same in Lua). */
BG_EXPORT void bg_fnv1a64_hex(const char *s, size_t n, char *out);

/* Monotonic clock in nanoseconds (uv_hrtime) and wall clock in seconds. */
BG_EXPORT uint64_t bg_now_ns(void);
double bg_wall_time(void);

#endif
