#include "base/bg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

const char *bg_strerror(int err) {
  switch (err) {
#define XX(name, val, msg)                                                                         \
  case BG_##name:                                                                                  \
    return msg;
    BG_ERRNO_MAP(XX)
#undef XX
  default:
    return err < 0 ? uv_strerror(err) : "success";
  }
}

const char *bg_errname(int err) {
  switch (err) {
#define XX(name, val, msg)                                                                         \
  case BG_##name:                                                                                  \
    return #name;
    BG_ERRNO_MAP(XX)
#undef XX
  default:
    return err < 0 ? uv_err_name(err) : "OK";
  }
}

int bg_buf_reserve(bg_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) return BG_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int bg_buf_append(bg_buf *b, const void *p, size_t n) {
  if (bg_buf_reserve(b, n) != 0) return BG_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int bg_buf_puts(bg_buf *b, const char *s) {
  return bg_buf_append(b, s, strlen(s));
}

int bg_buf_printf(bg_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return BG_EINVAL;
  if ((size_t)n < sizeof tmp) return bg_buf_append(b, tmp, (size_t)n);
  if (bg_buf_reserve(b, (size_t)n) != 0) return BG_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

int bg_buf_json_str(bg_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (bg_buf_reserve(b, n + 8) != 0) return BG_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    switch (c) {
    case '"':
      esc = "\\\"";
      break;
    case '\\':
      esc = "\\\\";
      break;
    case '\n':
      esc = "\\n";
      break;
    case '\r':
      esc = "\\r";
      break;
    case '\t':
      esc = "\\t";
      break;
    default:
      if (c < 0x20) {
        u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hex[c >> 4], u[5] = hex[c & 15];
        u[6] = 0;
        esc = u;
      }
    }
    int rc = esc ? bg_buf_puts(b, esc) : bg_buf_append(b, &s[i], 1);
    if (rc != 0) return rc;
  }
  return 0;
}

void bg_buf_reset(bg_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void bg_buf_free(bg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

uint64_t bg_now_ns(void) {
  return uv_hrtime();
}

double bg_wall_time(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void bg_fnv1a64_hex(const char *s, size_t n, char *out) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 0x100000001b3ULL;
  }
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) {
    out[i] = hex[h & 15];
    h >>= 4;
  }
}

int bg_utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    int n;
    unsigned cp, min;
    if (c < 0x80) {
      p++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    for (int i = 1; i <= n; i++) {
      if ((p[i] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    p += n + 1;
  }
  return 1;
}
