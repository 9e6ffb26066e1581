/* Tests for core/metrics/tsz: bit-exact round trips over awkward values and timestamps, chunk
 * limits, corrupt streams, and the bytes per sample on realistic series (printed for the record).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/tsz.h"
#include "test_support.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double uniform(void) {
  return (double)(next_u64() >> 11) / 9007199254740992.0;
}

static double normal(void) {
  double u = uniform() + 1e-12, v = uniform();
  return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static uint64_t bits_of(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

/* Encodes n samples, decodes them, and checks every timestamp and value bit. Returns the
 * stream's size in bytes. */
static size_t round_trip(const int64_t *ts, const double *vs, int n) {
  bg_tsz e;
  bg_tsz_init(&e);
  for (int i = 0; i < n; i++)
    ASSERT_EQ_INT(bg_tsz_append(&e, ts[i], vs[i]), 0);
  ASSERT_EQ_INT(e.n, n);
  bg_tsz_iter it;
  bg_tsz_iter_init(&it, e.data, e.nbits, e.n);
  int64_t t;
  double v;
  for (int i = 0; i < n; i++) {
    ASSERT_EQ_INT(bg_tsz_iter_next(&it, &t, &v), 1);
    ASSERT_EQ_INT(t, ts[i]);
    if (bits_of(v) != bits_of(vs[i])) {
      fprintf(stderr, "sample %d: got %.17g (%016llx), want %.17g (%016llx)\n", i, v,
              (unsigned long long)bits_of(v), vs[i], (unsigned long long)bits_of(vs[i]));
      exit(1);
    }
  }
  ASSERT_EQ_INT(bg_tsz_iter_next(&it, &t, &v), 0);
  size_t bytes = bg_tsz_bytes(e.nbits);
  bg_tsz_free(&e);
  return bytes;
}

#define N 2000
static int64_t ts[N];
static double vs[N];

static void regular_ts(int n, int64_t step) {
  for (int i = 0; i < n; i++)
    ts[i] = 1700000000000LL + i * step;
}

static void test_random_bits(void) {
  regular_ts(N, 15000);
  for (int i = 0; i < N; i++) {
    uint64_t u = next_u64();
    memcpy(&vs[i], &u, sizeof u); /* every pattern: NaN payloads, subnormals, ... */
  }
  round_trip(ts, vs, N);
  for (int i = 0; i < N; i++)
    vs[i] = normal() * 1e6;
  round_trip(ts, vs, N);
}

static void test_constant(void) {
  regular_ts(N, 15000);
  for (int i = 0; i < N; i++)
    vs[i] = 42.5;
  size_t b = round_trip(ts, vs, N);
  /* 1 bit timestamp + 1 bit value per sample after the first two */
  ASSERT(b < 16 + 8 + N / 4 + 8);
}

static void test_counter(void) {
  regular_ts(N, 15000);
  double c = 0;
  for (int i = 0; i < N; i++) {
    c += (double)(next_u64() % 50);
    vs[i] = c;
  }
  round_trip(ts, vs, N);
  for (int i = 0; i < N; i++) /* big counters near 2^53 fall back to XOR */
    vs[i] = 9007199254740000.0 + i * 7;
  round_trip(ts, vs, N);
}

static void test_special_values(void) {
  const double sp[] = {NAN,       -NAN,    INFINITY,
                       -INFINITY, 0.0,     -0.0,
                       1e-310,    -1e-310, 1.7976931348623157e308,
                       1.5,       1.5,     NAN,
                       0.1,       0.2,     0.30000000000000004,
                       1e15,      -7,      123456.789};
  int n = (int)(sizeof sp / sizeof sp[0]);
  regular_ts(n, 1000);
  memcpy(vs, sp, sizeof sp);
  round_trip(ts, vs, n);
  /* a NaN with a payload keeps it */
  uint64_t payload = 0x7ff0000000000123ull;
  memcpy(&vs[3], &payload, sizeof payload);
  round_trip(ts, vs, n);
}

static void test_irregular_timestamps(void) {
  int64_t t = -5000;
  for (int i = 0; i < N; i++) {
    switch (next_u64() % 5) {
    case 0:
      t += 15000;
      break;
    case 1:
      t += (int64_t)(next_u64() % 100);
      break;
    case 2:
      t -= (int64_t)(next_u64() % 100000);
      break; /* clock steps back */
    case 3:
      t += (int64_t)(next_u64() % 10000000000ULL);
      break;
    default:
      t = (int64_t)next_u64();
      break; /* anything at all */
    }
    ts[i] = t;
    vs[i] = (double)(i % 7);
  }
  round_trip(ts, vs, N);
  ts[0] = INT64_MIN;
  ts[1] = INT64_MAX;
  ts[2] = INT64_MIN;
  round_trip(ts, vs, 3);
  round_trip(ts, vs, 1);
  round_trip(ts, vs, 0);
}

static void test_full(void) {
  bg_tsz e;
  bg_tsz_init(&e);
  ASSERT(!bg_tsz_full(&e, 0, 2, 1000));
  ASSERT_EQ_INT(bg_tsz_append(&e, 0, 1), 0);
  ASSERT(!bg_tsz_full(&e, 999, 2, 1000));
  ASSERT(bg_tsz_full(&e, 1000, 2, 1000));
  ASSERT_EQ_INT(bg_tsz_append(&e, 500, 1), 0);
  ASSERT(bg_tsz_full(&e, 600, 2, 0));
  ASSERT(!bg_tsz_full(&e, 600, 0, 0));
  bg_tsz_free(&e);
  bg_tsz_free(NULL);
}

static void test_truncated(void) {
  regular_ts(100, 15000);
  bg_tsz e;
  bg_tsz_init(&e);
  for (int i = 0; i < 100; i++)
    bg_tsz_append(&e, ts[i], normal());
  bg_tsz_iter it;
  bg_tsz_iter_init(&it, e.data, e.nbits / 2, e.n);
  int64_t t;
  double v;
  int rc, got = 0;
  while ((rc = bg_tsz_iter_next(&it, &t, &v)) == 1)
    got++;
  ASSERT_EQ_INT(rc, BG_EIO);
  ASSERT(got < 100);
  ASSERT_EQ_INT(bg_tsz_iter_next(&it, &t, &v), 0);
  bg_tsz_free(&e);
}

/* Bytes per sample over chunks of 120 samples (30 minutes at 15 s), headers included. */
static double per_sample(const char *what, int jitter_ms) {
  const int chunk = 120, nchunks = N / chunk;
  size_t bytes = 0;
  for (int c = 0; c < nchunks; c++)
    bytes += round_trip(ts + c * chunk, vs + c * chunk, chunk);
  double bps = (double)bytes / (nchunks * chunk);
  fprintf(stderr, "  %-58s %5.2f bytes/sample%s\n", what, bps,
          jitter_ms ? " (timestamps jittered)" : "");
  return bps;
}

static void jitter(int ms) {
  for (int i = 0; i < N; i++)
    ts[i] = 1700000000000LL + i * 15000LL + (int64_t)(next_u64() % (uint64_t)(2 * ms + 1)) - ms;
}

static void test_bytes_per_sample(void) {
  double b;
  regular_ts(N, 15000);
  double g = 43.0, c = 1e6;
  for (int i = 0; i < N; i++)
    vs[i] = 3;
  b = per_sample("constant gauge", 0);
  ASSERT(b < 0.5);
  for (int i = 0; i < N; i++) {
    c += 1;
    vs[i] = c;
  }
  b = per_sample("counter +1 per sample", 0);
  ASSERT(b < 1.0);
  c = 1e6;
  for (int i = 0; i < N; i++) {
    c += 100 + (double)(next_u64() % 41) - 20; /* ~100 requests per 15 s */
    vs[i] = c;
  }
  b = per_sample("counter +80..120 per sample", 0);
  ASSERT(b <= 2.0);
  c = 1e9;
  for (int i = 0; i < N; i++) {
    c += (double)(next_u64() % 5000000); /* bytes sent: a wide increment */
    vs[i] = c;
  }
  per_sample("counter +0..5e6 per sample (bytes)", 0);
  g = 43.0;
  for (int i = 0; i < N; i++) {
    g += normal() * 0.3;
    vs[i] = round(g * 100) / 100; /* a percentage with two decimals */
  }
  b = per_sample("gauge random walk, 2 decimals (cpu %)", 0);
  ASSERT(b <= 2.0);
  double mem = 512e6;
  for (int i = 0; i < N; i++) {
    if (next_u64() % 4 == 0) mem += (double)((int64_t)(next_u64() % 8192) - 4096) * 4096;
    vs[i] = mem; /* resident bytes in pages, moving now and then */
  }
  b = per_sample("gauge, bytes in 4 KiB pages, changes 1 in 4", 0);
  ASSERT(b <= 2.0);
  g = 43.0;
  for (int i = 0; i < N; i++) {
    g += normal() * 0.01;
    vs[i] = g; /* full-precision float: the mantissa is noise */
  }
  per_sample("gauge random walk, full double precision", 0);
  c = 1e6;
  for (int i = 0; i < N; i++) {
    c += 1;
    vs[i] = c;
  }
  jitter(2);
  per_sample("counter +1 per sample", 2);
}

int main(void) {
  RUN(test_random_bits);
  RUN(test_constant);
  RUN(test_counter);
  RUN(test_special_values);
  RUN(test_irregular_timestamps);
  RUN(test_full);
  RUN(test_truncated);
  RUN(test_bytes_per_sample);
  fprintf(stderr, "ok\n");
  return 0;
}
