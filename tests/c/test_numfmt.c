/* Tests for core/base/numfmt: every number /metrics and the backends' encoders write reads back as
 * the same double and is the shortest that does (compared with printf's %.<p>g for p = 1..17), over
 * chosen and pseudo-random values of every magnitude; integers without exponent. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/numfmt.h"
#include "test_check.h"

static char *fmt(char *buf, double v) {
  char *e = bg_fmt_put_double(buf, v);
  *e = '\0';
  return buf;
}

/* Significant digits of a decimal text (no sign, point, exponent or leading zeros). */
static int digits(const char *s) {
  int n = 0, lead = 1;
  for (; *s && *s != 'e' && *s != 'E'; s++) {
    if (*s < '0' || *s > '9') continue;
    if (lead && *s == '0') continue;
    lead = 0;
    n++;
  }
  return n;
}

static void check_one(double v) {
  char buf[BG_NUMFMT_LEN + 8], ref[64];
  fmt(buf, v);
  CHECK(strlen(buf) < BG_NUMFMT_LEN);
  char *end;
  double back = strtod(buf, &end);
  if (*end != '\0' || back != v) {
    fprintf(stderr, "%.17g written %s reads back as %.17g\n", v, buf, back);
    failures++;
    return;
  }
  int p = 1;
  for (; p < 17; p++) {
    snprintf(ref, sizeof ref, "%.*g", p, v);
    if (strtod(ref, NULL) == v) break;
  }
  /* trailing zeros of an integer are not significant in %g's count */
  if (v != floor(v) || fabs(v) >= 9007199254740992.0) {
    if (digits(buf) > p) {
      fprintf(stderr, "%.17g written %s: %d digits, %d suffice\n", v, buf, digits(buf), p);
      failures++;
    }
  }
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int main(void) {
  char buf[64];
  CHECK_STR(fmt(buf, 0), "0");
  CHECK_STR(fmt(buf, -0.0), "0");
  CHECK_STR(fmt(buf, 67.5), "67.5");
  CHECK_STR(fmt(buf, 0.1), "0.1");
  CHECK_STR(fmt(buf, 1.0 / 3), "0.3333333333333333");
  CHECK_STR(fmt(buf, 2.65), "2.65");
  CHECK_STR(fmt(buf, 123456789012), "123456789012");
  CHECK_STR(fmt(buf, -7), "-7");
  CHECK_STR(fmt(buf, 1e21), "1e+21");
  CHECK_STR(fmt(buf, 1.25e-7), "1.25e-07");
  CHECK_STR(fmt(buf, 9007199254740993.0), "9007199254740992");
  CHECK_STR(fmt(buf, NAN), "NaN");
  CHECK_STR(fmt(buf, INFINITY), "+Inf");
  CHECK_STR(fmt(buf, -INFINITY), "-Inf");
  *bg_fmt_put_u64(buf, 18446744073709551615ULL) = '\0';
  CHECK_STR(buf, "18446744073709551615");
  const double chosen[] = {1e-5,
                           1.0000000000000001e-5,
                           0.30000000000000004,
                           5e-324,
                           DBL_MIN,
                           1.7976931348623157e308,
                           0.5,
                           4503599627370495.5,
                           1e15 + 0.3,
                           9007199254740991.0,
                           1e23,
                           8.41e21,
                           0.001,
                           2.2250738585072014e-308,
                           1e22,
                           123.456};
  for (size_t i = 0; i < sizeof chosen / sizeof chosen[0]; i++) {
    check_one(chosen[i]);
    check_one(-chosen[i]);
  }
  /* random bit patterns (every magnitude), and decimals of a few digits (what gauges hold) */
  for (int i = 0; i < 100000; i++) {
    uint64_t bits = next();
    double v;
    memcpy(&v, &bits, sizeof v);
    if (isfinite(v)) check_one(v);
    check_one((double)(int64_t)(next() % 2000000 - 1000000) / 1000.0);
    check_one((double)(next() % 1000000) * pow(10, (int)(next() % 30) - 15));
  }
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  return 0;
}
