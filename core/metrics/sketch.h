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

#include "base/bg.h"

#define BG_SKETCH_ALPHA 0.01
#define BG_SKETCH_MAX_BUCKETS 2048
/* Smaller magnitudes (subnormals) count as zero. */
#define BG_SKETCH_MIN_VALUE 2.2250738585072014e-308

/* The index: v = 2^e (1 + s), s in [0, 1), has the approximate log2 l(v) = e + p(s) with
 * p(s) = 6/35 s^3 - 3/5 s^2 + 10/7 s (p(0) = 0, p(1) = 1, so l is continuous and increasing
 * across octaves), and bucket i holds the l in [(i - 1) / M, i / M). A bucket spans at most a
 * factor gamma = (1 + alpha) / (1 - alpha) in v when M >= r / log2(gamma), r the largest ratio
 * of the true slope d log2(1 + s) / ds = 1 / ((1 + s) ln 2) to p'(s) = 18/35 s^2 - 6/5 s +
 * 10/7. (1 + s) p'(s) has the derivative (54 s^2 - 48 s + 8) / 35, zero at s = 2/9 (a maximum)
 * and s = 2/3 (a minimum); its value at s = 0 and at s = 2/3 is 10/7, so r = 7 / (10 ln 2) =
 * 1.00989 and M >= 34.9988 for alpha = 1%. M = 35 (0.003% more buckets) makes the scaled
 * cubic 35 p(s) = 6 s^3 - 21 s^2 + 50 s exact in doubles and each octave 35 whole buckets:
 * index = 35 e + floor(35 p(s)) + 1, no division, no libm, one rounding. The representative
 * of bucket i (bg__sketch_value) is the harmonic mean of its bounds, within alpha of both.
 * tests/c/test_sketch.c recomputes r and sweeps v over 1e-9..1e9 through index and value. */
#define BG__SKETCH_MULT 35

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

/* The bucket index of a positive normal value v (see BG__SKETCH_MULT). */
static inline int32_t bg__sketch_index(double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  int32_t e = (int32_t)((bits >> 52) & 0x7ff) - 1023;
  uint64_t mb = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
  double s;
  memcpy(&s, &mb, sizeof s);
  s -= 1.0;                                     /* mantissa - 1, in [0, 1): exact */
  double q = ((6.0 * s - 21.0) * s + 50.0) * s; /* 35 p(s), in [0, 35): truncation is floor */
  return e * BG__SKETCH_MULT + (int32_t)q + 1;
}

/* The representative value of bucket i: within alpha of every value whose index is i. */
double bg__sketch_value(int32_t i);

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
