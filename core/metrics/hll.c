/* hll: registers, their histogram, and Ertl's improved estimator (hll.h has the papers). */
#include "metrics/hll.h"

#include <math.h>
#include <string.h>

void bg_hll_init(bg_hll *h) {
  memset(h, 0, sizeof *h);
  h->hist[0] = BG_HLL_M;
}

int bg_hll_add(bg_hll *h, uint64_t hash) {
  uint32_t i = (uint32_t)(hash >> BG_HLL_Q);
  uint64_t w = hash << BG_HLL_P; /* the Q rank bits, at the top */
  uint8_t r = w ? (uint8_t)(__builtin_clzll(w) + 1) : BG_HLL_Q + 1;
  if (r > BG_HLL_Q + 1) r = BG_HLL_Q + 1;
  if (r <= h->reg[i]) return 0;
  h->hist[h->reg[i]]--;
  h->hist[r]++;
  h->reg[i] = r;
  return 1;
}

/* Ertl's sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), for the registers still at 0. */
static double sigma(double x) {
  if (x == 1) return INFINITY;
  double y = 1, z = x, prev;
  do {
    x *= x;
    prev = z;
    z += x * y;
    y += y;
  } while (z != prev);
  return z;
}

/* Ertl's tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3, for the saturated ones. */
static double tau(double x) {
  if (x == 0 || x == 1) return 0;
  double y = 1, z = 1 - x, prev;
  do {
    x = sqrt(x);
    prev = z;
    y *= 0.5;
    z -= (1 - x) * (1 - x) * y;
  } while (z != prev);
  return z / 3;
}

double bg_hll_estimate(const bg_hll *h) {
  const double m = BG_HLL_M;
  if (h->hist[0] == BG_HLL_M) return 0;
  double z = m * tau(1 - h->hist[BG_HLL_Q + 1] / m);
  for (int k = BG_HLL_Q; k >= 1; k--)
    z = 0.5 * (z + h->hist[k]);
  z += m * sigma(h->hist[0] / m);
  return m * m / (2 * log(2)) / z; /* alpha_inf = 1 / (2 ln 2) */
}
