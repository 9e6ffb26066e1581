/* numfmt: the out-of-line parts of the number formatting (see numfmt.h). */
#include "base/numfmt.h"

#include <stdio.h>
#include <stdlib.h>

/* "00" to "99": the digit pairs, so a number takes one division per two digits. */
const char bg__digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

/* k from k0 on, for bg__fmt_short: in 128 bits, pow = 10^(k0-1). */
__attribute__((noinline)) char *bg__fmt_short_wide(char *end, uint64_t m, int s, int k0,
                                                   unsigned __int128 pow, int neg) {
  for (int k = k0; k <= 22; k++) {
    pow *= 10;
    u128 n = (u128)m * pow;
    u128 d = (n + ((u128)1 << (s - 1))) >> s;
    u128 back = d << s;
    int below = back < n;
    u128 diff = below ? n - back : back - n;
    int ok = below && m == 1ULL << 52 ? 4 * diff <= pow
                                      : 2 * diff < pow || (2 * diff == pow && !(m & 1));
    if (ok) return bg_fmt_fixed(end, (uint64_t)d, k, neg);
  }
  return NULL;
}

#endif

/* bg_fmt_value_n's rare cases: NaN, the infinities, and what the fast paths leave to printf. */
const char *bg__fmt_value_slow(char *buf, size_t len, double v, size_t *n) {
  const char *r = buf;
  if (isnan(v)) {
    r = "NaN";
  } else if (isinf(v)) {
    r = v > 0 ? "+Inf" : "-Inf";
  } else {
    /* the fewest significant digits that read back: a bisection over 1..17 (one that reads
     * back still does with more digits) */
    char tmp[BG_NUMFMT_LEN];
    int lo = 1, hi = 17;
    snprintf(buf, len, "%.17g", v);
    while (lo < hi) {
      int mid = (lo + hi) / 2;
      snprintf(tmp, sizeof tmp, "%.*g", mid, v);
      if (strtod(tmp, NULL) == v) {
        hi = mid;
        snprintf(buf, len, "%s", tmp);
      } else {
        lo = mid + 1;
      }
    }
  }
  *n = strlen(r);
  return r;
}
