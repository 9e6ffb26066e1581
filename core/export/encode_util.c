/* encode_util: what the encoders share (see encode_util.h). */
#include "export/encode_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bg__u64(char *buf, uint64_t u) {
  char *e = bg_fmt_put_u64(buf, u);
  *e = '\0';
  return (int)(e - buf);
}

int bg__num(char *buf, double v) {
  char *e = bg_fmt_put_double(buf, v);
  *e = '\0';
  return (int)(e - buf);
}

int bg__json_str(bg_buf *out, const char *s) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
    if (*p < 0x20 || *p == '"' || *p == '\\') return bg_buf_json_str(out, s, strlen(s));
  return bg__buf_put(out, s, n);
}

void bg__extra_init(bg__extra *e, bg_encode_opts *o, int (*accept)(const char *k, const char *v)) {
  e->n = 0;
  e->bytes = 0;
  int n = o->nlabels < 64 ? o->nlabels : 64;
  for (int i = 0; i < n; i++) {
    const char *k = o->labels[2 * i], *v = o->labels[2 * i + 1];
    if (k == NULL || v == NULL || strcmp(k, "le") == 0 || !accept(k, v)) {
      o->skipped++;
      continue;
    }
    e->kv[2 * e->n] = k;
    e->kv[2 * e->n + 1] = v;
    e->n++;
    e->bytes += strlen(k) + strlen(v);
  }
  o->skipped += (size_t)(o->nlabels - n);
}

int bg__encode_fail(char *err, size_t errlen, const char *src) {
  if (errlen > 0) snprintf(err, errlen, "%s", src);
  return BG_EINVAL;
}
