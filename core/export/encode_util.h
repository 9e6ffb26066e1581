/* encode_util: what the encoders share (encode_*.c): numbers (base/numfmt.h) at a pointer or
 * into a buffer, and a series' labels merged with the backend's extra labels (a series' own
 * label wins), as an iterator or into an array. The bg__put* helpers write into memory the
 * caller reserved: they never allocate, so an encoder reserves a bound for a whole line once
 * and writes without a check per byte. Internal (bg__). */
#ifndef BG_ENCODE_UTIL_H
#define BG_ENCODE_UTIL_H

#include "base/numfmt.h"
#include "export/encode.h"

#include <string.h>

#define BG__NUMLEN BG_NUMFMT_LEN /* bytes a number's text needs, with its NUL */

/* The shortest decimal text of finite v that strtod reads back as v (integers below 2^53
 * without exponent or fraction, -0 as "0"), NUL-terminated in buf (BG__NUMLEN bytes); its
 * length. v must be finite. */
int bg__num(char *buf, double v);
/* u in decimal into buf (BG__NUMLEN bytes); its length. */
int bg__u64(char *buf, uint64_t u);

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

static inline char *bg__put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

/* The extra labels of an encode (opts->labels) that a format can carry, in the order given
 * (sorted by key): the ones accept() refuses are left out and counted once per encode call in
 * o->skipped. "le" is always refused: it names a histogram's bucket in every format here, and
 * the registry reserves it. At most 64 pairs (the plugin side's limit). */
typedef struct bg__extra {
  const char *kv[128];
  int n;
  size_t bytes; /* the sum of strlen over kv */
} bg__extra;
void bg__extra_init(bg__extra *e, bg_encode_opts *o, int (*accept)(const char *k, const char *v));

/* A series' labels merged with the extra ones, by key; on the same key the series' wins. */
typedef struct bg__labels {
  const char *const *a, *const *b;
  int na, nb, i, j;
} bg__labels;

static inline void bg__labels_start(bg__labels *m, const bg_sample *s, const bg__extra *e) {
  m->a = s->kv;
  m->na = s->nlabels;
  m->b = e->kv;
  m->nb = e->n;
  m->i = m->j = 0;
}

/* The next pair in key order into *k and *v; 0 when there are no more. */
static inline int bg__labels_next(bg__labels *m, const char **k, const char **v) {
  int from_a;
  if (m->i < m->na && m->j < m->nb) {
    int c = strcmp(m->a[2 * m->i], m->b[2 * m->j]);
    if (c == 0) m->j++; /* the series' own label wins */
    from_a = c <= 0;
  } else if (m->i < m->na) {
    from_a = 1;
  } else if (m->j < m->nb) {
    from_a = 0;
  } else {
    return 0;
  }
  const char *const *kv = from_a ? m->a + 2 * m->i++ : m->b + 2 * m->j++;
  *k = kv[0];
  *v = kv[1];
  return 1;
}

/* The sum of strlen over the pairs bg__labels would give (an upper bound: pairs of the same
 * key are counted twice). */
static inline size_t bg__labels_bytes(const bg_sample *s, const bg__extra *e) {
  size_t n = e->bytes;
  for (int k = 0; k < 2 * s->nlabels; k++)
    n += strlen(s->kv[k]);
  return n;
}

/* Copies src to err (errlen bytes), cut and NUL-terminated; returns BG_EINVAL. */
int bg__encode_fail(char *err, size_t errlen, const char *src);

/* s's label pairs merged with o's extra labels (both sorted by key; a series' own label wins
 * over an extra one of the same name) into kv (room for 2 * (s->nlabels + o->nlabels)
 * pointers, borrowed from s and o); the number of pairs. */
static inline int bg__merge_labels(const bg_sample *s, const bg_encode_opts *o, const char **kv) {
  bg__labels m = {s->kv, o->labels, s->nlabels, o->nlabels, 0, 0};
  int n = 0;
  const char *k, *v;
  while (bg__labels_next(&m, &k, &v)) {
    kv[2 * n] = k;
    kv[2 * n + 1] = v;
    n++;
  }
  return n;
}

#endif
