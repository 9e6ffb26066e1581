/* sketch: the stores grow in whichever direction values arrive, with some slack so a drifting
 * distribution does not reallocate on every new bucket, and collapse from the bottom once a
 * store would span more than max_buckets. */
#include "metrics/sketch.h"

#include <math.h>
#include <stdlib.h>

#define INITIAL_BELOW 8
#define INITIAL_ABOVE 23
#define MIN_SLACK 16

void bg_sketch_init(bg_sketch *sk, int max_buckets) {
  memset(sk, 0, sizeof *sk);
  sk->min = INFINITY;
  sk->max = -INFINITY;
  sk->max_buckets = max_buckets > 0 ? max_buckets : BG_SKETCH_MAX_BUCKETS;
}

void bg_sketch_reset(bg_sketch *sk) {
  free(sk->pos.counts);
  free(sk->neg.counts);
  bg_sketch_init(sk, sk->max_buckets);
}

bg_sketch *bg_sketch_new(int max_buckets) {
  bg_sketch *sk = malloc(sizeof *sk);
  if (sk) bg_sketch_init(sk, max_buckets);
  return sk;
}

void bg_sketch_free(bg_sketch *sk) {
  if (sk == NULL) return;
  free(sk->pos.counts);
  free(sk->neg.counts);
  free(sk);
}

double bg_sketch_min(const bg_sketch *sk) {
  return sk->count ? sk->min : NAN;
}

double bg_sketch_max(const bg_sketch *sk) {
  return sk->count ? sk->max : NAN;
}

size_t bg_sketch_memory(const bg_sketch *sk) {
  return ((size_t)sk->pos.len + (size_t)sk->neg.len) * sizeof(uint64_t);
}

int bg__sketch_store_add(bg_sketch_store *st, int32_t i, int max_buckets, uint64_t n) {
  int32_t lo, hi;
  if (st->counts == NULL) {
    lo = i - INITIAL_BELOW;
    hi = i + INITIAL_ABOVE;
    if (hi - lo + 1 > max_buckets) lo = hi - max_buckets + 1;
    if (i < lo) lo = i;
  } else {
    int32_t top = st->offset + st->len - 1;
    if (i >= st->offset && i <= top) {
      st->counts[i - st->offset] += n;
      return 0;
    }
    if (i < st->offset && st->collapsed) {
      st->counts[0] += n;
      return 0;
    }
    lo = i < st->offset ? i : st->offset;
    hi = i > top ? i : top;
    int64_t span = (int64_t)hi - lo + 1;
    if (span <= max_buckets) {
      int64_t slack = span / 2 > MIN_SLACK ? span / 2 : MIN_SLACK;
      if (slack > max_buckets - span) slack = max_buckets - span;
      if (i > top)
        hi += (int32_t)slack;
      else
        lo -= (int32_t)slack;
    }
  }
  int collapse = (int64_t)hi - lo + 1 > max_buckets;
  if (collapse) lo = hi - max_buckets + 1;
  int32_t len = hi - lo + 1;
  uint64_t *c = calloc((size_t)len, sizeof *c);
  if (c == NULL) { /* keep the count in the nearest bucket we have */
    if (st->counts) st->counts[i < st->offset ? 0 : st->len - 1] += n;
    return BG_ENOMEM;
  }
  for (int32_t k = 0; k < st->len; k++) {
    int32_t idx = st->offset + k;
    c[idx < lo ? 0 : idx - lo] += st->counts[k];
  }
  c[i < lo ? 0 : i - lo] += n;
  free(st->counts);
  st->counts = c;
  st->offset = lo;
  st->len = len;
  st->collapsed |= collapse;
  return 0;
}

static int merge_store(bg_sketch_store *dst, const bg_sketch_store *src, int max_buckets) {
  int32_t first = -1, last = -1;
  int rc = 0;
  for (int32_t k = 0; k < src->len; k++) {
    if (src->counts[k] == 0) continue;
    if (first < 0) first = k;
    last = k;
  }
  if (first < 0) return 0;
  /* The two ends first, so the store grows once for the whole range. */
  rc |= bg__sketch_store_add(dst, src->offset + last, max_buckets, src->counts[last]);
  if (first != last)
    rc |= bg__sketch_store_add(dst, src->offset + first, max_buckets, src->counts[first]);
  for (int32_t k = first + 1; k < last; k++) {
    if (src->counts[k])
      rc |= bg__sketch_store_add(dst, src->offset + k, max_buckets, src->counts[k]);
  }
  return rc ? BG_ENOMEM : 0;
}

int bg_sketch_merge(bg_sketch *dst, const bg_sketch *src) {
  if (src->count == 0) return 0;
  int rc = merge_store(&dst->pos, &src->pos, dst->max_buckets);
  if (merge_store(&dst->neg, &src->neg, dst->max_buckets) != 0) rc = BG_ENOMEM;
  dst->zero += src->zero;
  dst->count += src->count;
  dst->sum += src->sum;
  if (src->min < dst->min) dst->min = src->min;
  if (src->max > dst->max) dst->max = src->max;
  return rc;
}

/* The lower bound of bucket i: the v with index-space position i - 1, i.e. 2^e (1 + s) with
 * 35 e + j = i - 1, j in [0, 35) and 6 s^3 - 21 s^2 + 50 s = j. The cubic is increasing on
 * [0, 1] (its slope is at least 26/35 there), so Newton's method from the log2 guess
 * converges in a few steps; it runs at query time only. */
static double bound(int32_t i) {
  int32_t k = i - 1;
  int32_t e = k >= 0 ? k / BG__SKETCH_MULT : -((-k + BG__SKETCH_MULT - 1) / BG__SKETCH_MULT);
  double j = (double)(k - e * BG__SKETCH_MULT);
  double s = exp2(j / BG__SKETCH_MULT) - 1.0;
  for (int it = 0; it < 8; it++) {
    double f = ((6.0 * s - 21.0) * s + 50.0) * s - j;
    double ns = s - f / ((18.0 * s - 42.0) * s + 50.0);
    ns = ns < 0 ? 0 : ns > 1 ? 1 : ns;
    int done = fabs(ns - s) < 1e-15;
    s = ns;
    if (done) break;
  }
  return ldexp(1.0 + s, (int)e);
}

double bg__sketch_value(int32_t i) {
  double lo = bound(i), hi = bound(i + 1);
  return 2.0 * lo * hi / (lo + hi);
}

double bg_sketch_quantile(const bg_sketch *sk, double q) {
  if (sk->count == 0 || !(q >= 0 && q <= 1)) return NAN;
  if (q == 0) return sk->min;
  if (q == 1) return sk->max;
  double rank = q * (double)(sk->count - 1);
  double cum = 0, v = sk->max;
  int found = 0;
  for (int32_t k = sk->neg.len - 1; k >= 0 && !found; k--) { /* most negative first */
    cum += (double)sk->neg.counts[k];
    if (cum > rank) v = -bg__sketch_value(sk->neg.offset + k), found = 1;
  }
  if (!found) {
    cum += (double)sk->zero;
    if (cum > rank) v = 0, found = 1;
  }
  for (int32_t k = 0; k < sk->pos.len && !found; k++) {
    cum += (double)sk->pos.counts[k];
    if (cum > rank) v = bg__sketch_value(sk->pos.offset + k), found = 1;
  }
  if (v < sk->min) v = sk->min;
  if (v > sk->max) v = sk->max;
  return v;
}
