/* encode_text: the three text formats a backend sends without a client library, and what they
 * share. Each encoder has the bg_encoder shape (export/encode.h) and is listed by format name
 * in core/script/script_io_encode.c:
 *   graphite    Graphite plaintext, `path value seconds\n`    (encode_graphite.c)
 *   influx      InfluxDB line protocol                         (encode_influx.c)
 *   prometheus  Prometheus text 0.0.4 without timestamps, for a Pushgateway (encode_prometheus.c)
 * Each one's mapping is described above its function in its file and in
 * docs/plugins/<plugin>.md.
 *
 * The bg__ helpers below write into memory the caller reserved: they never allocate, so an
 * encoder reserves a bound for a whole line once and writes without a check per byte. */
#ifndef BG_ENCODE_TEXT_H
#define BG_ENCODE_TEXT_H

#include "export/encode.h"

#include <string.h>

int bg_encode_graphite(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);
int bg_encode_influx(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);
int bg_encode_prometheus(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                         size_t errlen);

/* Bytes bg__put_double and bg__put_u64 may write. */
#define BG__NUM_MAX 32

/* The shortest decimal text that reads back (strtod) as v, at p; returns the end. Integers
 * below 2^53 have no exponent or point; NaN, +Inf and -Inf are spelt so (Prometheus). */
char *bg__put_double(char *p, double v);
/* u in decimal at p; returns the end. */
char *bg__put_u64(char *p, uint64_t u);

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

#endif
