/* Tests for core/metrics/sketch: quantiles of known distributions against the exact quantiles of
 * the same data (the element of rank floor(q * (n - 1))), merging, negatives and zero, and the
 * bucket bound. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/sketch.h"
#include "test_support.h"

#define N 100000

static int failures;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static double uniform01(void) { /* splitmix64: deterministic, good enough */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return ((double)(z >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
}

static double normal(void) {
  return sqrt(-2 * log(uniform01())) * cos(2 * M_PI * uniform01());
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double exact(const double *sorted, size_t n, double q) {
  return sorted[(size_t)floor(q * (double)(n - 1))];
}

static const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999};

/* Every q in qs (and, when dense, 999 more) within alpha of the exact quantile. */
static void check_accuracy(const char *what, double *data, size_t n, int dense) {
  bg_sketch sk;
  bg_sketch_init(&sk, 0);
  for (size_t i = 0; i < n; i++)
    bg_sketch_add(&sk, data[i]);
  qsort(data, n, sizeof *data, cmp_double);
  double worst = 0;
  int nq = dense ? 1000 + 5 : 5;
  for (int k = 0; k < nq; k++) {
    double q = k < 5 ? qs[k] : (k - 5) / 999.0;
    double want = exact(data, n, q), got = bg_sketch_quantile(&sk, q);
    double rel = want == 0 ? fabs(got) : fabs(got - want) / fabs(want);
    if (rel > worst) worst = rel;
    if (!(rel <= BG_SKETCH_ALPHA * (1 + 1e-9))) {
      fprintf(stderr, "%s: q=%g got %.17g want %.17g (relative error %g)\n", what, q, got, want,
              rel);
      failures++;
    }
  }
  ASSERT_EQ_INT(bg_sketch_count(&sk), n);
  ASSERT(bg_sketch_min(&sk) == data[0]);
  ASSERT(bg_sketch_max(&sk) == data[n - 1]);
  ASSERT(bg_sketch_quantile(&sk, 0) == data[0]);
  ASSERT(bg_sketch_quantile(&sk, 1) == data[n - 1]);
  fprintf(stderr, "  %-28s worst relative error %.5f%%, %zu bytes of buckets\n", what, worst * 100,
          bg_sketch_memory(&sk));
  bg_sketch_reset(&sk);
}

static void test_multiplier(void) {
  double gamma = (1 + BG_SKETCH_ALPHA) / (1 - BG_SKETCH_ALPHA);
  /* r, the largest ratio of the true slope d log2(1 + s) / ds to the cubic's p'(s), found
   * numerically: it is 7 / (10 ln 2), reached at s = 0 and s = 2/3. */
  double r = 0, at = -1;
  for (int i = 0; i <= 300000; i++) {
    double s = i / 300000.0;
    double ratio = 1 / ((1 + s) * log(2) * ((18.0 / 35.0 * s - 6.0 / 5.0) * s + 10.0 / 7.0));
    if (ratio > r) r = ratio, at = s;
  }
  ASSERT(fabs(r - 7 / (10 * log(2))) < 1e-12);
  ASSERT(at == 0);
  ASSERT(
      fabs(1 / ((1 + 2.0 / 3) * log(2) * ((18.0 / 35.0 * 2 / 3 - 6.0 / 5.0) * 2 / 3 + 10.0 / 7.0)) -
           r) < 1e-12);
  ASSERT(BG__SKETCH_MULT >= r / log2(gamma));
  ASSERT(BG__SKETCH_MULT < r / log2(gamma) + 0.01); /* and no more buckets than needed */
  /* The scaled cubic is 35 p(s): 0 at s = 0, 35 at s = 1. */
  for (int i = 0; i <= 100; i++) {
    double s = i / 100.0, p = ((6.0 / 35.0 * s - 3.0 / 5.0) * s + 10.0 / 7.0) * s;
    ASSERT(fabs(((6.0 * s - 21.0) * s + 50.0) * s - BG__SKETCH_MULT * p) < 1e-12);
  }
  /* The index is monotonic across octave edges. */
  int32_t prev = bg__sketch_index(1e-10);
  for (double v = 1e-10; v < 1e10; v *= 1.0001) {
    int32_t i = bg__sketch_index(v);
    ASSERT(i >= prev);
    prev = i;
  }
}

/* The smallest positive double with an index of at least i (positive doubles order as their
 * bits do). */
static double first_of(int32_t i) {
  double lo = 1e-300, hi = 1e300;
  uint64_t a, b;
  memcpy(&a, &lo, sizeof a);
  memcpy(&b, &hi, sizeof b);
  while (a < b) {
    uint64_t mid = a + (b - a) / 2;
    double v;
    memcpy(&v, &mid, sizeof v);
    if (bg__sketch_index(v) >= i)
      b = mid;
    else
      a = mid + 1;
  }
  double v;
  memcpy(&v, &a, sizeof v);
  return v;
}

/* Index -> value round trips over 18 decades (and both octave edges of each): the bucket's
 * representative is within alpha of every value in it. */
static void test_round_trip(void) {
  double worst = 0;
  long n = 0;
  for (double v = 1e-9; v <= 1e9; v *= 1.00007) {
    double vs[3] = {v, ldexp(1, ilogb(v)), nextafter(ldexp(1, ilogb(v)), 0)};
    for (int j = 0; j < 3; j++) {
      double w = bg__sketch_value(bg__sketch_index(vs[j]));
      double rel = fabs(w - vs[j]) / vs[j];
      if (rel > worst) worst = rel;
      if (!(rel <= BG_SKETCH_ALPHA)) {
        fprintf(stderr, "round trip: %.17g -> bucket %d -> %.17g (relative error %g)\n", vs[j],
                (int)bg__sketch_index(vs[j]), w, rel);
        failures++;
        return;
      }
      n++;
    }
  }
  /* Each bucket spans at most a factor gamma, and its representative falls in it. */
  double gamma = (1 + BG_SKETCH_ALPHA) / (1 - BG_SKETCH_ALPHA);
  for (int32_t i = bg__sketch_index(1e-9); i <= bg__sketch_index(1e9); i++) {
    double lo = first_of(i), hi = first_of(i + 1);
    if (!(hi / lo <= gamma) || bg__sketch_index(bg__sketch_value(i)) != i) {
      fprintf(stderr, "bucket %d: [%.17g, %.17g) spans %.17g, representative %.17g\n", (int)i, lo,
              hi, hi / lo, bg__sketch_value(i));
      failures++;
      return;
    }
  }
  fprintf(stderr, "  %ld values, 1e-9..1e9: worst relative error %.5f%%\n", n, worst * 100);
  ASSERT(worst > 0.009); /* the bound is tight, not slack */
}

static void test_distributions(void) {
  double *d = malloc(N * sizeof *d);
  for (int i = 0; i < N; i++)
    d[i] = uniform01() * 1000;
  check_accuracy("uniform(0, 1000)", d, N, 1);
  for (int i = 0; i < N; i++)
    d[i] = -log(uniform01()) * 0.05; /* latencies around 50 ms */
  check_accuracy("exponential(mean 0.05)", d, N, 1);
  for (int i = 0; i < N; i++)
    d[i] = exp(normal() * 1.5 - 3);
  check_accuracy("lognormal(-3, 1.5)", d, N, 1);
  for (int i = 0; i < N; i++) /* 16 decades: ~1,860 buckets, just under the cap */
    d[i] = pow(10, uniform01() * 16 - 8);
  check_accuracy("log-uniform(1e-8, 1e8)", d, N, 1);
  for (int i = 0; i < N; i++)
    d[i] = 42.0;
  check_accuracy("constant", d, N, 1);
  free(d);
}

static void test_negatives_and_zero(void) {
  double *d = malloc(N * sizeof *d);
  for (int i = 0; i < N; i++)
    d[i] = i % 10 == 0 ? 0 : normal() * 100;
  check_accuracy("normal(0, 100) + 10% zeros", d, N, 1);
  for (int i = 0; i < N; i++)
    d[i] = -exp(normal());
  check_accuracy("negative lognormal", d, N, 1);
  free(d);

  bg_sketch sk;
  bg_sketch_init(&sk, 0);
  ASSERT(isnan(bg_sketch_quantile(&sk, 0.5)));
  ASSERT(isnan(bg_sketch_min(&sk)) && isnan(bg_sketch_max(&sk)));
  bg_sketch_add(&sk, 0);
  bg_sketch_add(&sk, 0);
  bg_sketch_add(&sk, 1e-320); /* subnormal: counts as zero */
  ASSERT(bg_sketch_quantile(&sk, 0.5) == 0);
  ASSERT_EQ_INT(bg_sketch_memory(&sk), 0);
  ASSERT(isnan(bg_sketch_quantile(&sk, -0.1)));
  ASSERT(isnan(bg_sketch_quantile(&sk, 1.1)));
  ASSERT(isnan(bg_sketch_quantile(&sk, NAN)));
  bg_sketch_reset(&sk);
}

static void test_merge(void) {
  double *d = malloc(N * sizeof *d);
  bg_sketch all, a, b;
  bg_sketch_init(&all, 0);
  bg_sketch_init(&a, 0);
  bg_sketch_init(&b, 0);
  for (int i = 0; i < N; i++) {
    /* Two different shapes, so the stores' ranges differ. */
    d[i] = i < N / 2 ? exp(normal() - 5) : -log(uniform01()) * 100 * (i % 3 == 0 ? -1 : 1);
    bg_sketch_add(&all, d[i]);
    bg_sketch_add(i < N / 2 ? &a : &b, d[i]);
  }
  bg_sketch *m = bg_sketch_new(0);
  ASSERT_EQ_INT(bg_sketch_merge(m, &a), 0);
  ASSERT_EQ_INT(bg_sketch_merge(m, &b), 0);
  bg_sketch empty;
  bg_sketch_init(&empty, 0);
  ASSERT_EQ_INT(bg_sketch_merge(m, &empty), 0); /* changes nothing */
  ASSERT_EQ_INT(bg_sketch_count(m), N);
  ASSERT(bg_sketch_min(m) == bg_sketch_min(&all));
  ASSERT(bg_sketch_max(m) == bg_sketch_max(&all));
  ASSERT(fabs(bg_sketch_sum(m) - bg_sketch_sum(&all)) <= 1e-9 * fabs(bg_sketch_sum(&all)));
  for (int k = 0; k <= 1000; k++) { /* the same buckets: the very same answers */
    double q = k / 1000.0;
    if (bg_sketch_quantile(m, q) != bg_sketch_quantile(&all, q)) {
      fprintf(stderr, "merge: q=%g %.17g != %.17g\n", q, bg_sketch_quantile(m, q),
              bg_sketch_quantile(&all, q));
      failures++;
    }
  }
  /* Merging into a non-empty sketch (b into a) matches too. */
  ASSERT_EQ_INT(bg_sketch_merge(&a, &b), 0);
  for (int k = 0; k < 5; k++)
    ASSERT(bg_sketch_quantile(&a, qs[k]) == bg_sketch_quantile(&all, qs[k]));
  qsort(d, N, sizeof *d, cmp_double);
  for (int k = 0; k < 5; k++) {
    double want = exact(d, N, qs[k]), got = bg_sketch_quantile(m, qs[k]);
    ASSERT(fabs(got - want) <= BG_SKETCH_ALPHA * fabs(want) * (1 + 1e-9));
  }
  bg_sketch_free(m);
  bg_sketch_free(NULL);
  bg_sketch_reset(&all);
  bg_sketch_reset(&a);
  bg_sketch_reset(&b);
  free(d);
}

static void test_memory_bound(void) {
  bg_sketch sk;
  bg_sketch_init(&sk, 0);
  double *d = malloc(2 * N * sizeof *d);
  for (int i = 0; i < N; i++) { /* 60 decades: ~7,000 buckets a store uncapped, 2,048 kept */
    d[2 * i] = pow(10, uniform01() * 60 - 30);
    d[2 * i + 1] = -d[2 * i];
    bg_sketch_add(&sk, d[2 * i]);
    bg_sketch_add(&sk, d[2 * i + 1]);
  }
  ASSERT(sk.pos.len <= BG_SKETCH_MAX_BUCKETS);
  ASSERT(sk.neg.len <= BG_SKETCH_MAX_BUCKETS);
  ASSERT(bg_sketch_memory(&sk) <= 2 * BG_SKETCH_MAX_BUCKETS * sizeof(uint64_t));
  ASSERT(sk.pos.collapsed);
  ASSERT_EQ_INT(bg_sketch_count(&sk), 2 * N);
  /* Collapsing folds the lowest magnitudes: the top 2,048 buckets (17.6 decades, the top 29%
   * of the positives, overall q >= 0.86) keep their bound. */
  qsort(d, 2 * N, sizeof *d, cmp_double);
  const double hq[] = {0.9, 0.95, 0.99, 0.999};
  for (int k = 0; k < 4; k++) {
    double want = exact(d, 2 * N, hq[k]), got = bg_sketch_quantile(&sk, hq[k]);
    ASSERT(fabs(got - want) <= BG_SKETCH_ALPHA * want * (1 + 1e-9));
  }
  /* ... and the lowest (the most negative values: the negative store collapses its smallest
   * magnitudes, not its largest). */
  double want = exact(d, 2 * N, 0.001), got = bg_sketch_quantile(&sk, 0.001);
  ASSERT(fabs(got - want) <= BG_SKETCH_ALPHA * fabs(want) * (1 + 1e-9));
  /* A small cap works the same way. */
  bg_sketch *small = bg_sketch_new(64);
  for (int i = 1; i <= 100000; i++)
    bg_sketch_add(small, i);
  ASSERT(small->pos.len <= 64);
  double p999 = bg_sketch_quantile(small, 0.999);
  ASSERT(fabs(p999 - 99900) <= 0.01 * 99900);
  bg_sketch_free(small);
  bg_sketch_reset(&sk);
  free(d);
}

int main(void) {
  RUN(test_multiplier);
  RUN(test_round_trip);
  RUN(test_distributions);
  RUN(test_negatives_and_zero);
  RUN(test_merge);
  RUN(test_memory_bound);
  if (failures) {
    fprintf(stderr, "test_sketch: %d failure(s)\n", failures);
    return 1;
  }
  puts("test_sketch: ok");
  return 0;
}
