/* numfmt: numbers as text, the one implementation every renderer and encoder uses (expo's
 * /metrics, the backends' text and JSON formats): integers with two digits per division, and
 * doubles as the shortest decimal that reads back as the same double (integers below 2^53
 * without exponent or fraction, -0 as "0"; what people record, 1e-5 <= |v| < 2^53, without
 * printf by an exact test in 128-bit integers; the rest by printf). The fast paths are inline:
 * /metrics formats 100,000 values a scrape. Each writes backwards, ending at `end` (or at
 * buf + len), and returns where the text starts. */
#ifndef BG_NUMFMT_H
#define BG_NUMFMT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BG_NUMFMT_LEN 32 /* a buffer every number fits in, with its NUL */

extern const char bg__digit_pairs[201];

/* Decimal digits of u ending at end (no NUL); returns the start. 32-bit divisions once u fits. */
static inline char *bg_fmt_digits(char *end, uint64_t u) {
  while (u > UINT32_MAX) {
    uint64_t q = u / 100;
    end -= 2;
    memcpy(end, bg__digit_pairs + 2 * (u - q * 100), 2);
    u = q;
  }
  uint32_t w = (uint32_t)u;
  while (w >= 100) {
    uint32_t q = w / 100;
    end -= 2;
    memcpy(end, bg__digit_pairs + 2 * (w - q * 100), 2);
    w = q;
  }
  if (w >= 10) {
    end -= 2;
    memcpy(end, bg__digit_pairs + 2 * w, 2);
  } else {
    *--end = (char)('0' + w);
  }
  return end;
}

/* Decimal digits of u into the end of buf (NUL-terminated); returns the start. */
static inline char *bg_fmt_u64(char *end, uint64_t u) {
  *--end = '\0';
  return bg_fmt_digits(end, u);
}

/* m / 10^k as decimal text ending at end (k fraction digits, NUL-terminated). */
static inline char *bg_fmt_fixed(char *end, uint64_t m, int k, int neg) {
  char *p = end;
  *--p = '\0';
  for (; k >= 2; k -= 2) {
    uint64_t q = m / 100;
    p -= 2;
    memcpy(p, bg__digit_pairs + 2 * (m - q * 100), 2);
    m = q;
  }
  if (k == 1) {
    *--p = (char)('0' + m % 10);
    m /= 10;
  }
  if (p != end - 1) *--p = '.';
  p = bg_fmt_digits(p, m);
  if (neg) *--p = '-';
  return p;
}

#ifdef __SIZEOF_INT128__
/* The out-of-line parts (numfmt.c): the 128-bit steps of bg__fmt_short, and NaN, the
 * infinities and what the fast paths leave to printf. */
char *bg__fmt_short_wide(char *end, uint64_t m, int s, int k0, unsigned __int128 pow, int neg);

/* The fewest decimals that read back as a, for 1e-5 <= a < 2^53 not an integer, or NULL.
 * a = m / 2^s exactly (m < 2^53, 1 <= s <= 69), so a * 10^k = m 10^k / 2^s is a ratio of
 * 128-bit integers (m 10^k < 2^127 for k <= 22) and the test is exact: the k-decimal number
 * d nearest to a reads back as a when it is within half a unit in the last place of a, on
 * the even side of a tie, and within a quarter below a power of two (whose lower neighbour
 * is nearer). The first k that passes gives the shortest text; 17 significant digits always
 * pass, so k stops by 21. The first three k, where m 10^k < 2^63, are done in 64 bits when
 * s <= 62 (then n + 2^(s-1) and 4 diff <= 2^63 fit too): the same test, a quarter of the
 * work, and what most recorded values (67.5, 0.045, 12.34) need. */
static inline char *bg__fmt_short(char *end, double a, int neg) {
  uint64_t bits;
  memcpy(&bits, &a, sizeof bits);
  uint64_t m = (bits & 0xfffffffffffffULL) | (1ULL << 52);
  int s = 1075 - (int)(bits >> 52);
  if (s > 62) return bg__fmt_short_wide(end, m, s, 1, 1, neg);
  uint64_t p = 1, half = 1ULL << (s - 1);
  for (int k = 1; k <= 3; k++) {
    p *= 10;
    uint64_t n = m * p;
    uint64_t d = (n + half) >> s;
    uint64_t back = d << s;
    int below = back < n;
    uint64_t diff = below ? n - back : back - n;
    int ok = below && m == 1ULL << 52 ? 4 * diff <= p : 2 * diff < p || (2 * diff == p && !(m & 1));
    if (ok) return bg_fmt_fixed(end, d, k, neg);
  }
  return bg__fmt_short_wide(end, m, s, 4, p, neg);
}
#endif

/* NaN, the infinities and what the fast paths leave to printf (numfmt.c). */
const char *bg__fmt_value_slow(char *buf, size_t len, double v, size_t *n);

/* Shortest text that reads back as v: integers without exponent, Prometheus' spellings of
 * the infinities and NaN. buf holds at least 32 bytes. Returns the text (NUL-terminated) and
 * its length in *n. */
static inline const char *bg_fmt_value_n(char *buf, size_t len, double v, size_t *n) {
  double a = fabs(v);
  if (a < 9007199254740992.0) { /* false for NaN and the infinities */
    int64_t i = (int64_t)a;
    char *p = NULL;
    if ((double)i == a) { /* -0 too, as "0" */
      p = bg_fmt_u64(buf + len, (uint64_t)i);
      if (v < 0) *--p = '-';
    }
#ifdef __SIZEOF_INT128__
    /* What people record (67.5, 0.045, sums of short decimals, ratios) without printf. */
    else if (a >= 1e-5) {
      p = bg__fmt_short(buf + len, a, v < 0);
    }
#endif
    if (p) {
      *n = (size_t)(buf + len - 1 - p);
      return p;
    }
  }
  return bg__fmt_value_slow(buf, len, v, n);
}

/* The shortest text of v at p (room for BG_NUMFMT_LEN bytes, not NUL-terminated: NaN, +Inf
 * and -Inf spelled as Prometheus does); returns the end. */
static inline char *bg_fmt_put_double(char *p, double v) {
  char buf[BG_NUMFMT_LEN];
  size_t n;
  const char *s = bg_fmt_value_n(buf, sizeof buf, v, &n);
  memcpy(p, s, n);
  return p + n;
}

/* u in decimal at p (room for 20 bytes, not NUL-terminated); returns the end. */
static inline char *bg_fmt_put_u64(char *p, uint64_t u) {
  char buf[24];
  char *s = bg_fmt_digits(buf + sizeof buf, u);
  size_t n = (size_t)(buf + sizeof buf - s);
  memcpy(p, s, n);
  return p + n;
}

#endif
