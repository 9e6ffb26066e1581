/* statsd_int: what statsd.c (the sink) and statsd_set.c (the sets' distinct counts) share.
 * Not for other modules; loop thread only. */
#ifndef BG_STATSD_INT_H
#define BG_STATSD_INT_H

#include <stdint.h>
#include <string.h>

#include "metrics/hll.h"
#include "metrics/statsd.h"

#define K1 0x9e3779b97f4a7c15ULL
#define K2 0xff51afd7ed558ccdULL

/* Keys are short (a metric name, some tags): 8 bytes a step, and a tail read without a
 * variable-length memcpy (the wyhash trick of two overlapping loads). */
static inline uint64_t hash_bytes(uint64_t h, const char *p, size_t n) {
  uint64_t w;
  size_t len = n;
  while (n >= 8) {
    memcpy(&w, p, 8);
    h = (h ^ w) * K1;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + n - 4, 4);
    w = (uint64_t)a << 32 | b;
  } else if (n > 0) {
    w = (uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n >> 1] << 8 |
        (unsigned char)p[n - 1];
  } else {
    w = 0;
  }
  h = (h ^ w ^ ((uint64_t)len << 56)) * K2;
  return h ^ (h >> 32);
}

static inline uint64_t hash_ptr(const void *p) {
  uint64_t h = (uint64_t)(uintptr_t)p * K1;
  return h ^ (h >> 31);
}

/* ---- sets: the distinct values of each `|s` series over one interval ---- */

/* One set: its values' hashes exactly while they are few (BG__STATSD_SET_EXACT), then a
 * HyperLogLog (hll.h, 1.6 % standard error). Owned by the sink's bg__statsd_sets. */
typedef struct bg__statsd_set {
  bg_series *s;
  uint64_t *tab; /* exact: value hashes, 0 = empty; NULL when none yet or when hll is set */
  bg_hll *hll;
  uint32_t cap, n;
} bg__statsd_set;

#define BG__STATSD_SET_EXACT 128

typedef struct bg__statsd_sets {
  bg__statsd_set **tab; /* keyed by series address */
  size_t cap, n;
  size_t bytes, max_bytes; /* value memory (exact tables and sketches) held now, and its cap */
  uint64_t *dropped;       /* the sink's count of lost data */
} bg__statsd_sets;

/* The set of series s, made on first use (its struct is not counted in bytes: there is one
 * per set series, which the registry's limits bound). NULL when out of memory. */
bg__statsd_set *bg__statsd_set_get(bg__statsd_sets *ss, bg_series *s);
/* Adds value bytes v[0..n) and sets the series' gauge to the distinct count. A value that
 * needs memory past max_bytes is dropped and counted. Can't fail. */
void bg__statsd_set_add(bg__statsd_sets *ss, bg__statsd_set *st, const char *v, size_t n);
/* Zeroes every set's gauge and gives its value memory back. */
void bg__statsd_sets_flush(bg__statsd_sets *ss);
/* Frees every set (the series stay). ss stays usable. */
void bg__statsd_sets_free(bg__statsd_sets *ss);

#endif
