/* sketch: a DDSketch-style quantile sketch (Masson, Rim, Lee, VLDB 2019). Values are counted
 * in logarithmically sized buckets, so any quantile it returns is within a relative error of
 * BG_SKETCH_ALPHA (1%) of the exact quantile of the data (the element of rank
 * floor(q * (count - 1))), whatever the distribution. Positive and negative values have a
 * store each, zero (|v| < BG_SKETCH_MIN_VALUE) a count. A store holds at most max_buckets
 * buckets; beyond that the lowest buckets are collapsed into one, which only degrades the
 * lowest quantiles. The bucket index is an approximate log2 (exponent bits plus a cubic of
 * the mantissa, as in DDSketch's CubicallyInterpolatedMapping) with a multiplier chosen so
 * the 1% bound still holds: no libm call on the add path.
 *
 * The struct is public because a histogram series embeds one and bg_sketch_add is inline on
 * the observe hot path; treat its fields as private. Single-threaded. */
#ifndef BG_SKETCH_H
#define BG_SKETCH_H

#include <stdint.h>
#include <string.h>

#include "bg.h"

#define BG_SKETCH_ALPHA 0.01
#define BG_SKETCH_MAX_BUCKETS 2048
/* Smaller magnitudes (subnormals) count as zero. */
#define BG_SKETCH_MIN_VALUE 2.2250738585072014e-308

/* Index multiplier, at least 1 / (ln(gamma) * 10/7) = 34.9988, gamma = (1 + alpha) /
 * (1 - alpha): 10/7 is the smallest slope of the cubic log2 against ln(x) (at mantissa 1), so
 * a bucket never spans more than a factor gamma. tests/c/test_sketch.c checks the bound. */
#define BG__SKETCH_MULT 35.0

typedef struct bg_sketch_store {
  uint64_t *counts; /* counts[i] is bucket offset + i; NULL until the first value */
  int32_t offset;
  int32_t len;       /* allocated buckets */
  int32_t collapsed; /* lowest buckets were folded into counts[0] */
} bg_sketch_store;

typedef struct bg_sketch {
  bg_sketch_store pos, neg;
  uint64_t zero;
  uint64_t count;
  double sum, min, max;
  int32_t max_buckets; /* per store */
} bg_sketch;

/* Initialises a sketch in caller memory (max_buckets <= 0: BG_SKETCH_MAX_BUCKETS). It
 * allocates nothing until the first value; bg_sketch_reset releases what it grew. */
void bg_sketch_init(bg_sketch *sk, int max_buckets);
void bg_sketch_reset(bg_sketch *sk); /* empties it and frees its stores; stays usable */

/* Heap sketches (e.g. for merging windows); bg_sketch_free(NULL) is a no-op. */
bg_sketch *bg_sketch_new(int max_buckets);
void bg_sketch_free(bg_sketch *sk);

/* Adds src's values into dst. Returns 0 or BG_ENOMEM (dst then lacks some of src's
 * buckets but its count, sum, min and max include them). */
int bg_sketch_merge(bg_sketch *dst, const bg_sketch *src);

/* The q-quantile (0 <= q <= 1) within BG_SKETCH_ALPHA relative error; NaN when empty or q is
 * out of range. q = 0 and q = 1 give the exact min and max. */
double bg_sketch_quantile(const bg_sketch *sk, double q);

static inline uint64_t bg_sketch_count(const bg_sketch *sk) {
  return sk->count;
}
static inline double bg_sketch_sum(const bg_sketch *sk) {
  return sk->sum;
}
/* NaN when empty. */
double bg_sketch_min(const bg_sketch *sk);
double bg_sketch_max(const bg_sketch *sk);
/* Bytes held outside the struct (bucket arrays). */
size_t bg_sketch_memory(const bg_sketch *sk);

/* The bucket index of a positive normal value v: ceil(mult * approx_log2(v)). */
static inline int32_t bg__sketch_index(double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  double e = (double)((int64_t)((bits >> 52) & 0x7ff) - 1023);
  uint64_t mb = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  double s;
  memcpy(&s, &mb, sizeof s);
  s -= 1.0; /* mantissa - 1, in [0, 1) */
  double l = ((6.0 / 35.0 * s - 3.0 / 5.0) * s + 10.0 / 7.0) * s + e;
  double x = l * BG__SKETCH_MULT;
  int32_t i = (int32_t)x; /* truncation toward zero, then ceil */
  return i + (x > (double)i);
}

/* Out of line: grows or collapses a store so that index i has a bucket, and adds n there.
 * Returns 0, or BG_ENOMEM when it could not grow (n then went to the nearest bucket). */
int bg__sketch_store_add(bg_sketch_store *st, int32_t i, int max_buckets, uint64_t n);

static inline void bg__sketch_store_inc(bg_sketch_store *st, int32_t i, int max_buckets) {
  uint32_t k = (uint32_t)(i - st->offset);
  if (k < (uint32_t)st->len)
    st->counts[k]++;
  else
    (void)bg__sketch_store_add(st, i, max_buckets, 1);
}

/* Adds one value; NaN must be filtered by the caller (it is counted as zero). Can't fail:
 * when a store cannot grow, the value lands in its nearest bucket. */
static inline void bg_sketch_add(bg_sketch *sk, double v) {
  if (v > BG_SKETCH_MIN_VALUE)
    bg__sketch_store_inc(&sk->pos, bg__sketch_index(v), sk->max_buckets);
  else if (v < -BG_SKETCH_MIN_VALUE)
    bg__sketch_store_inc(&sk->neg, bg__sketch_index(-v), sk->max_buckets);
  else
    sk->zero++;
  sk->count++;
  sk->sum += v;
  if (v < sk->min) sk->min = v;
  if (v > sk->max) sk->max = v;
}

#endif
