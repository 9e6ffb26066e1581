/* tsz: Gorilla-style chunk codec. See tsz.h for the format; the codes are:
 *
 * timestamp, delta-of-delta d (zigzag):   0 | 10+7 bits | 110+12 | 1110+20 | 1111+64
 * value:  0                  same bits as the previous value
 *         10 + d             delta-of-delta of the value scaled to an integer at the current
 *                            decimal scale: 0 | 10+8 | 110+14 | 1110+24 | 1111+64
 *         110 + bits         XOR inside the previous window (64 - lead - trail bits)
 *         111 + 6 + 6 + bits XOR with a new window: leading zeros, length - 1, the bits
 *
 * The decimal code comes first because counters and rounded gauges are most of what an agent
 * keeps: a counter growing at a steady rate costs 4 bits a sample, timestamp included.
 *
 * After every sample both sides update the decimal state from the decoded value alone, so
 * the scale travels in no bit of the stream. */
#include "metrics/tsz.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NO_WINDOW 0xff
#define MAX_SAMPLE_BITS 168 /* 4 + 64 timestamp, 3 + 6 + 6 + 64 value: round up */

static const double p10[BG_TSZ_MAX_SCALE + 1] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};

typedef struct bucket {
  int prefix_len;
  uint64_t prefix;
  int bits;
} bucket;

static const bucket ts_buckets[] = {
    {1, 0x0, 0}, {2, 0x2, 7}, {3, 0x6, 12}, {4, 0xe, 20}, {4, 0xf, 64}};
static const bucket dec_buckets[] = {
    {1, 0x0, 0}, {2, 0x2, 8}, {3, 0x6, 14}, {4, 0xe, 24}, {4, 0xf, 64}};
#define NBUCKETS 5

static uint64_t zigzag(uint64_t d) {
  return (d << 1) ^ (uint64_t)((int64_t)d >> 63);
}

static uint64_t unzigzag(uint64_t z) {
  return (z >> 1) ^ (0 - (z & 1));
}

static uint64_t dbits(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

static double bitsd(uint64_t u) {
  double v;
  memcpy(&v, &u, sizeof v);
  return v;
}

/* Whether v is exactly m / 10^s for an integer m below 2^53. */
static int decimal_at(double v, int s, int64_t *m) {
  double x = v * p10[s];
  if (!(fabs(x) < 9007199254740992.0)) return 0; /* also NaN and the infinities */
  double r = nearbyint(x);
  int64_t mi = (int64_t)r;
  if (dbits((double)mi / p10[s]) != dbits(v)) return 0; /* catches -0.0 too */
  *m = mi;
  return 1;
}

/* The decimal state after value v: the same scale when v fits it (so that a series keeps one
 * scale), else the smallest scale v fits, else none. */
static void decimal_update(int8_t *scale, int64_t *m, int64_t *dm, double v) {
  int64_t mm;
  if (*scale >= 0 && decimal_at(v, *scale, &mm)) {
    *dm = (int64_t)((uint64_t)mm - (uint64_t)*m);
    *m = mm;
    return;
  }
  for (int s = 0; s <= BG_TSZ_MAX_SCALE; s++) {
    if (decimal_at(v, s, &mm)) {
      *scale = (int8_t)s;
      *m = mm;
      *dm = 0;
      return;
    }
  }
  *scale = -1;
  *m = *dm = 0;
}

static const bucket *bucket_for(const bucket *b, uint64_t z) {
  for (int i = 0; i < NBUCKETS - 1; i++)
    if (b[i].bits == 0 ? z == 0 : z < ((uint64_t)1 << b[i].bits)) return &b[i];
  return &b[NBUCKETS - 1];
}

static void put(bg_tsz *e, uint64_t val, int n) {
  while (n > 0) {
    uint32_t idx = e->nbits >> 3;
    int off = (int)(e->nbits & 7), room = 8 - off;
    int k = n < room ? n : room;
    uint64_t chunk = (val >> (n - k)) & (((uint64_t)1 << k) - 1);
    e->data[idx] |= (uint8_t)(chunk << (room - k));
    e->nbits += (uint32_t)k;
    n -= k;
  }
}

static void put_bucketed(bg_tsz *e, const bucket *table, uint64_t d) {
  uint64_t z = zigzag(d);
  const bucket *b = bucket_for(table, z);
  put(e, b->prefix, b->prefix_len);
  if (b->bits) put(e, b->bits == 64 ? d : z, b->bits);
}

void bg_tsz_init(bg_tsz *e) {
  memset(e, 0, sizeof *e);
  e->lead = NO_WINDOW;
  e->scale = -1;
}

void bg_tsz_free(bg_tsz *e) {
  if (e == NULL) return;
  free(e->data);
  bg_tsz_init(e);
}

static int reserve(bg_tsz *e) {
  uint32_t need = (e->nbits + MAX_SAMPLE_BITS + 7) / 8;
  if (need <= e->cap) return 0;
  uint32_t cap = e->cap ? e->cap + e->cap / 2 : 32;
  if (cap < need) cap = need;
  uint8_t *p = realloc(e->data, cap);
  if (p == NULL) return BG_ENOMEM;
  memset(p + e->cap, 0, cap - e->cap);
  e->data = p;
  e->cap = cap;
  return 0;
}

int bg_tsz_full(const bg_tsz *e, int64_t ts, uint32_t max_n, int64_t max_span_ms) {
  if (e->n == 0) return 0;
  if (max_n && e->n >= max_n) return 1;
  return max_span_ms > 0 && ts - e->t0 >= max_span_ms;
}

int bg_tsz_append(bg_tsz *e, int64_t ts, double value) {
  if (reserve(e) != 0) return BG_ENOMEM;
  uint64_t v = dbits(value);
  if (e->n == 0) {
    put(e, (uint64_t)ts, 64);
    put(e, v, 64);
    e->t0 = e->t = ts;
    e->dt = 0;
    e->v = v;
    decimal_update(&e->scale, &e->m, &e->dm, value);
    e->n = 1;
    return 0;
  }
  uint64_t dt = (uint64_t)ts - (uint64_t)e->t;
  put_bucketed(e, ts_buckets, dt - (uint64_t)e->dt);
  e->dt = (int64_t)dt;
  e->t = ts;

  uint64_t x = v ^ e->v;
  if (x == 0) {
    put(e, 0, 1);
  } else {
    int lz = __builtin_clzll(x), tz = __builtin_ctzll(x);
    int reuse = e->lead != NO_WINDOW && lz >= e->lead && tz >= e->trail;
    int cost_xor = reuse ? 3 + (64 - e->lead - e->trail) : 3 + 12 + (64 - lz - tz);
    if (reuse && 3 + 12 + (64 - lz - tz) < cost_xor) {
      reuse = 0;
      cost_xor = 3 + 12 + (64 - lz - tz);
    }
    int64_t mm;
    int cost_dec = 1 << 30;
    uint64_t dod = 0;
    if (e->scale >= 0 && decimal_at(value, e->scale, &mm)) {
      dod = ((uint64_t)mm - (uint64_t)e->m) - (uint64_t)e->dm;
      const bucket *b = bucket_for(dec_buckets, zigzag(dod));
      cost_dec = 2 + b->prefix_len + b->bits;
    }
    if (cost_dec <= cost_xor) {
      put(e, 0x2, 2);
      put_bucketed(e, dec_buckets, dod);
    } else if (reuse) {
      put(e, 0x6, 3);
      put(e, x >> e->trail, 64 - e->lead - e->trail);
    } else {
      int len = 64 - lz - tz;
      put(e, 0x7, 3);
      put(e, (uint64_t)lz, 6);
      put(e, (uint64_t)(len - 1), 6);
      put(e, x >> tz, len);
      e->lead = (uint8_t)lz;
      e->trail = (uint8_t)tz;
    }
  }
  e->v = v;
  decimal_update(&e->scale, &e->m, &e->dm, value);
  e->n++;
  return 0;
}

void bg_tsz_iter_init(bg_tsz_iter *it, const uint8_t *data, uint32_t nbits, uint32_t n) {
  memset(it, 0, sizeof *it);
  it->data = data;
  it->nbits = nbits;
  it->n = n;
  it->lead = NO_WINDOW;
  it->scale = -1;
}

static int get(bg_tsz_iter *it, int n, uint64_t *out) {
  if (it->nbits - it->pos < (uint32_t)n) return -1;
  uint64_t v = 0;
  while (n > 0) {
    uint32_t idx = it->pos >> 3;
    int off = (int)(it->pos & 7), room = 8 - off;
    int k = n < room ? n : room;
    uint64_t chunk = ((uint64_t)it->data[idx] >> (room - k)) & (((uint64_t)1 << k) - 1);
    v = (v << k) | chunk;
    it->pos += (uint32_t)k;
    n -= k;
  }
  *out = v;
  return 0;
}

/* Reads a bucketed delta-of-delta: up to four prefix ones, then the payload. */
static int get_bucketed(bg_tsz_iter *it, const bucket *table, uint64_t *d) {
  int ones = 0;
  uint64_t bit;
  while (ones < 4) {
    if (get(it, 1, &bit) != 0) return -1;
    if (bit == 0) break;
    ones++;
  }
  const bucket *b = &table[ones];
  if (b->bits == 0) {
    *d = 0;
    return 0;
  }
  uint64_t z;
  if (get(it, b->bits, &z) != 0) return -1;
  *d = b->bits == 64 ? z : unzigzag(z);
  return 0;
}

static int fail(bg_tsz_iter *it) {
  it->i = it->n;
  return BG_EIO;
}

int bg_tsz_iter_next(bg_tsz_iter *it, int64_t *ts, double *out) {
  if (it->i >= it->n) return 0;
  uint64_t u;
  if (it->i == 0) {
    if (get(it, 64, &u) != 0) return fail(it);
    it->t = (int64_t)u;
    if (get(it, 64, &it->v) != 0) return fail(it);
  } else {
    uint64_t dod;
    if (get_bucketed(it, ts_buckets, &dod) != 0) return fail(it);
    it->dt = (int64_t)((uint64_t)it->dt + dod);
    it->t = (int64_t)((uint64_t)it->t + (uint64_t)it->dt);
    uint64_t bit;
    if (get(it, 1, &bit) != 0) return fail(it);
    if (bit) {
      if (get(it, 1, &bit) != 0) return fail(it);
      if (bit == 0) { /* 10: decimal delta-of-delta */
        if (it->scale < 0) return fail(it);
        if (get_bucketed(it, dec_buckets, &dod) != 0) return fail(it);
        uint64_t dm = (uint64_t)it->dm + dod;
        int64_t m = (int64_t)((uint64_t)it->m + dm);
        it->v = dbits((double)m / p10[it->scale]);
      } else {
        if (get(it, 1, &bit) != 0) return fail(it);
        if (bit == 0) { /* 110: XOR in the previous window */
          if (it->lead == NO_WINDOW) return fail(it);
          int len = 64 - it->lead - it->trail;
          if (get(it, len, &u) != 0) return fail(it);
          it->v ^= u << it->trail;
        } else { /* 111: XOR with a new window */
          uint64_t lz, len;
          if (get(it, 6, &lz) != 0 || get(it, 6, &len) != 0) return fail(it);
          len += 1;
          if (lz + len > 64) return fail(it);
          if (get(it, (int)len, &u) != 0) return fail(it);
          it->lead = (uint8_t)lz;
          it->trail = (uint8_t)(64 - lz - len);
          it->v ^= u << it->trail;
        }
      }
    }
  }
  double v = bitsd(it->v);
  decimal_update(&it->scale, &it->m, &it->dm, v);
  *ts = it->t;
  *out = v;
  it->i++;
  return 1;
}
