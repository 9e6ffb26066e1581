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

/* The fewest fraction digits that read back as a, for 1e-5 <= a < 2^53 and a not an integer;
 * NULL when none up to 22 do. a is m / 2^s exactly (m < 2^53, 1 <= s <= 69), so a * 10^k is
 * the ratio m 10^k / 2^s of 128-bit integers, and whether the nearest k-digit decimal d reads
 * back as a is exact integer arithmetic: d must be within half the gap to a's neighbours (a
 * quarter of the gap above when a's significand is a power of two and d is below, where the
 * lower neighbour is nearer), a tie going to the even significand. The first k that passes is
 * the shortest text, and 17 significant digits always pass, so d fits in 64 bits. */
static char *put_short(char *p, double a) {
  uint64_t bits;
  memcpy(&bits, &a, sizeof bits);
  uint64_t m = (bits & 0xfffffffffffffULL) | (1ULL << 52);
  int s = 1075 - (int)(bits >> 52);
  u128 pow = 1;
  for (int k = 1; k <= 22; k++) {
    pow *= 10;
    u128 n = (u128)m * pow;
    u128 d = (n + ((u128)1 << (s - 1))) >> s;
    u128 back = d << s;
    int below = back < n;
    u128 diff = below ? n - back : back - n;
    int ok = below && m == 1ULL << 52 ? 4 * diff <= pow
                                      : 2 * diff < pow || (2 * diff == pow && !(m & 1));
    if (ok) return put_fixed(p, (uint64_t)d, k);
  }
  return NULL;
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
  if (a >= 1e-5 && a < 9007199254740992.0) {
    char *q = put_short(p, a);
    if (q != NULL) return q;
  }
#endif
  char buf[BG__NUM_MAX];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, sizeof buf, "%.*g", prec, a);
    if (prec == 17 || strtod(buf, NULL) == a) break;
  }
  return bg__put(p, buf, (size_t)n);
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
