/* encode_util: numbers and merged labels for the text encoders (see encode_util.h). */
#include "export/encode_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bg__u64(char *buf, uint64_t u) {
  char tmp[BG__NUMLEN], *p = tmp + sizeof tmp;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  int n = (int)(tmp + sizeof tmp - p);
  memcpy(buf, p, (size_t)n);
  buf[n] = '\0';
  return n;
}

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

/* m / 10^k with k fraction digits into buf; its length. */
static int fixed(char *buf, uint64_t m, int k, int neg) {
  char tmp[BG__NUMLEN], *p = tmp + sizeof tmp;
  for (int i = 0; i < k; i++) {
    *--p = (char)('0' + m % 10);
    m /= 10;
  }
  if (k > 0) *--p = '.';
  do {
    *--p = (char)('0' + m % 10);
    m /= 10;
  } while (m);
  if (neg) *--p = '-';
  int n = (int)(tmp + sizeof tmp - p);
  memcpy(buf, p, (size_t)n);
  buf[n] = '\0';
  return n;
}

/* The fewest decimals that read back as a, for 1e-5 <= a < 2^53 not an integer, or -1: the
 * exact test of core/metrics/expo.c's fmt_short (a = m / 2^s, so a * 10^k is a ratio of
 * 128-bit integers), which spares printf for what people record. */
static int shortest(char *buf, double a, int neg) {
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
    if (ok) return fixed(buf, (uint64_t)d, k, neg);
  }
  return -1;
}
#endif

int bg__num(char *buf, double v) {
  double a = fabs(v);
  if (a < 9007199254740992.0 && (double)(uint64_t)a == a) {
    int n = bg__u64(buf + (v < 0 && a != 0), (uint64_t)a);
    if (v < 0 && a != 0) {
      buf[0] = '-';
      n++;
    }
    return n;
  }
#ifdef __SIZEOF_INT128__
  if (a >= 1e-5 && a < 9007199254740992.0) {
    int n = shortest(buf, a, v < 0);
    if (n > 0) return n;
  }
#endif
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, BG__NUMLEN, "%.*g", prec, v);
    if (prec == 17 || strtod(buf, NULL) == v) break;
  }
  return n;
}

int bg__merge_labels(const bg_sample *s, const bg_encode_opts *o, const char **kv) {
  int i = 0, j = 0, n = 0;
  while (i < s->nlabels || j < o->nlabels) {
    int c = i == s->nlabels ? 1 : j == o->nlabels ? -1 : strcmp(s->kv[2 * i], o->labels[2 * j]);
    if (c <= 0) {
      kv[2 * n] = s->kv[2 * i];
      kv[2 * n + 1] = s->kv[2 * i + 1];
      i++;
      if (c == 0) j++; /* the series' own wins */
    } else {
      kv[2 * n] = o->labels[2 * j];
      kv[2 * n + 1] = o->labels[2 * j + 1];
      j++;
    }
    n++;
  }
  return n;
}

int bg__json_str(bg_buf *out, const char *s) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
    if (*p < 0x20 || *p == '"' || *p == '\\') return bg_buf_json_str(out, s, strlen(s));
  return bg__buf_put(out, s, n);
}
