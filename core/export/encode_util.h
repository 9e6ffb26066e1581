/* encode_util: what the text encoders of the delta and JSON formats share (encode_statsd.c,
 * encode_datadog.c, encode_otlp.c): numbers as the shortest text that reads back as the same
 * double, and a series' labels merged with the backend's extra labels. Internal (bg__). */
#ifndef BG_ENCODE_UTIL_H
#define BG_ENCODE_UTIL_H

#include "export/encode.h"

#include <string.h>

#define BG__NUMLEN 32 /* bytes a number's text needs, with its NUL */

/* The shortest decimal text of finite v that strtod reads back as v (integers below 2^53
 * without exponent or fraction, -0 as "0"), NUL-terminated in buf (BG__NUMLEN bytes); its
 * length. v must be finite. */
int bg__num(char *buf, double v);
/* u in decimal into buf (BG__NUMLEN bytes); its length. */
int bg__u64(char *buf, uint64_t u);

/* s's label pairs merged with o's extra labels (both sorted by key; a series' own label wins
 * over an extra one of the same name) into kv (room for 2 * (s->nlabels + o->nlabels)
 * pointers, borrowed from s and o); the number of pairs. */
int bg__merge_labels(const bg_sample *s, const bg_encode_opts *o, const char **kv);

/* bg_buf_append with the common case (room enough) inline: the JSON encoders append many short
 * pieces. Keeps the buffer NUL-terminated like bg_buf_append. */
static inline int bg__buf_put(bg_buf *b, const void *p, size_t n) {
  if (b->len + n < b->cap) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
  }
  return bg_buf_append(b, p, n);
}

/* s as the inside of a JSON string: bg_buf_json_str, with the common case (nothing to
 * escape) appended in one piece. */
int bg__json_str(bg_buf *out, const char *s);

#endif
