/* encode_text: numbers and label sets as the text encoders write them (see encode_text.h). */
#include "export/encode_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

char *bg__put_u64(char *p, uint64_t u) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  while (n > 0)
    *p++ = tmp[--n];
  return p;
}

/* d / 10^k in decimal at p (k fraction digits, at least one integer digit). */
static char *put_fixed(char *p, uint64_t d, int k) {
  char tmp[48];
  int n = 0;
  for (int i = 0; i < k; i++) {
    tmp[n++] = (char)('0' + d % 10);
    d /= 10;
  }
  if (k > 0) tmp[n++] = '.';
  do {
    tmp[n++] = (char)('0' + d % 10);
    d /= 10;
  } while (d);
  while (n > 0)
    *p++ = tmp[--n];
  return p;
}

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

#define E19 10000000000000000000ULL
static const u128 P10[23] = {1,
                             10,
                             100,
                             1000,
                             10000,
                             100000,
                             1000000,
                             10000000,
                             100000000,
                             1000000000,
                             10000000000ULL,
                             100000000000ULL,
                             1000000000000ULL,
                             10000000000000ULL,
                             100000000000000ULL,
                             1000000000000000ULL,
                             10000000000000000ULL,
                             100000000000000000ULL,
                             1000000000000000000ULL,
                             E19,
                             (u128)E19 * 10,
                             (u128)E19 * 100,
                             (u128)E19 * 1000};

/* Whether the k-digit decimal nearest to a = m / 2^s reads back as a; that decimal times 10^k
 * into *d. a * 10^k is the ratio m 10^k / 2^s of 128-bit integers (m 10^k < 2^127 for k <= 22),
 * so the test is exact: d must be within half the gap to a's neighbours (a quarter of it when
 * a's significand is a power of two and d is below, where the lower neighbour is nearer), a tie
 * going to the even significand. */
static int reads_back(uint64_t m, int s, int k, u128 *d) {
  u128 pow = P10[k], n = (u128)m * pow;
  *d = (n + ((u128)1 << (s - 1))) >> s;
  u128 back = *d << s;
  int below = back < n;
  u128 diff = below ? n - back : back - n;
  return below && m == 1ULL << 52 ? 4 * diff <= pow
                                  : 2 * diff < pow || (2 * diff == pow && !(m & 1));
}

/* The fewest fraction digits that read back as a, for 1e-5 <= a < 2^53 and a not an integer
 * (a = m / 2^s exactly, m < 2^53, 1 <= s <= 69). A decimal that reads back still does with one
 * more digit, so the shortest is found by bisection over 1..22 digits (22 always pass: 17
 * significant digits do, and a >= 1e-5 has at most 5 zeros after the point); it has at most 17
 * significant digits, so it fits in 64 bits. */
static char *put_short(char *p, double a) {
  uint64_t bits;
  memcpy(&bits, &a, sizeof bits);
  uint64_t m = (bits & 0xfffffffffffffULL) | (1ULL << 52);
  int s = 1075 - (int)(bits >> 52);
  int lo = 1, hi = 22;
  u128 d, best;
  reads_back(m, s, hi, &best);
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (reads_back(m, s, mid, &d)) {
      hi = mid;
      best = d;
    } else {
      lo = mid + 1;
    }
  }
  return put_fixed(p, (uint64_t)best, hi);
}
#endif

char *bg__put_double(char *p, double v) {
  if (isnan(v)) return bg__put(p, "NaN", 3);
  if (isinf(v)) return bg__put(p, v > 0 ? "+Inf" : "-Inf", 4);
  if (v == 0) {
    *p++ = '0';
    return p;
  }
  double a = fabs(v);
  if (v < 0) *p++ = '-';
  if (a < 9007199254740992.0 && (double)(uint64_t)a == a) return bg__put_u64(p, (uint64_t)a);
#ifdef __SIZEOF_INT128__
  /* what gauges and sums usually hold (67.5, 0.045, 1/3), without printf */
  if (a >= 1e-5 && a < 9007199254740992.0) return put_short(p, a);
#endif
  /* the rest (below 1e-5, at least 2^53): printf's shortest, by bisection over 1..17 digits */
  char buf[BG__NUM_MAX], best[BG__NUM_MAX];
  int lo = 1, hi = 17, n = snprintf(best, sizeof best, "%.17g", a);
  while (lo < hi) {
    int mid = (lo + hi) / 2, k = snprintf(buf, sizeof buf, "%.*g", mid, a);
    if (strtod(buf, NULL) == a) {
      hi = mid;
      n = k;
      memcpy(best, buf, (size_t)k + 1);
    } else {
      lo = mid + 1;
    }
  }
  return bg__put(p, best, (size_t)n);
}

void bg__extra_init(bg__extra *e, bg_encode_opts *o, int (*accept)(const char *k, const char *v)) {
  e->n = 0;
  e->bytes = 0;
  int n = o->nlabels < 64 ? o->nlabels : 64;
  for (int i = 0; i < n; i++) {
    const char *k = o->labels[2 * i], *v = o->labels[2 * i + 1];
    if (k == NULL || v == NULL || strcmp(k, "le") == 0 || !accept(k, v)) {
      o->skipped++;
      continue;
    }
    e->kv[2 * e->n] = k;
    e->kv[2 * e->n + 1] = v;
    e->n++;
    e->bytes += strlen(k) + strlen(v);
  }
  o->skipped += (size_t)(o->nlabels - n);
}

int bg__encode_fail(char *err, size_t errlen, const char *src) {
  if (errlen > 0) snprintf(err, errlen, "%s", src);
  return BG_EINVAL;
}
