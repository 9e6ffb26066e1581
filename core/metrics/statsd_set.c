/* statsd_set: the distinct count of each `|s` series over one collection interval. A set keeps
 * its values' hashes exactly while there are at most BG__STATSD_SET_EXACT of them (2 KiB),
 * then a HyperLogLog (4.2 KiB, 1.6 % standard error, hll.h), so a set costs at most 4.2 KiB
 * whatever is sent; and all sets together hold at most max_set_bytes (bg_statsd_opts): past
 * it, a value that would need more memory is dropped and counted. Every interval's flush gives
 * the memory back. (Sets used to keep up to 100,000 hashes each: a bomb of many names with
 * 1,000 values a line took the agent to 2 GB.) */
#include "metrics/statsd_int.h"

#include <math.h>
#include <stdlib.h>

/* The hash of a value for the sets: statsd's hash_bytes, then murmur3's fmix64 finaliser, as
 * the sketch reads every bit (its register from the top ones, its rank from the rest). */
static uint64_t value_hash(const char *v, size_t n) {
  uint64_t h = hash_bytes(K2, v, n);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h ? h : 1;
}

bg__statsd_set *bg__statsd_set_get(bg__statsd_sets *ss, bg_series *s) {
  if (ss->cap) {
    for (size_t i = hash_ptr(s) & (ss->cap - 1); ss->tab[i]; i = (i + 1) & (ss->cap - 1))
      if (ss->tab[i]->s == s) return ss->tab[i];
  }
  if ((ss->n + 1) * 2 > ss->cap) {
    size_t ncap = ss->cap ? ss->cap * 2 : 16;
    bg__statsd_set **nt = calloc(ncap, sizeof *nt);
    if (nt == NULL) return NULL;
    for (size_t i = 0; i < ss->cap; i++) {
      if (ss->tab[i] == NULL) continue;
      size_t j = hash_ptr(ss->tab[i]->s) & (ncap - 1);
      while (nt[j])
        j = (j + 1) & (ncap - 1);
      nt[j] = ss->tab[i];
    }
    free(ss->tab);
    ss->tab = nt;
    ss->cap = ncap;
  }
  bg__statsd_set *st = calloc(1, sizeof *st);
  if (st == NULL) return NULL;
  st->s = s;
  size_t j = hash_ptr(s) & (ss->cap - 1);
  while (ss->tab[j])
    j = (j + 1) & (ss->cap - 1);
  ss->tab[j] = st;
  ss->n++;
  return st;
}

/* Makes room for one more exact hash (the table at most half full). 0, or -1 when the memory
 * is not there (over max_bytes or out of it). */
static int exact_grow(bg__statsd_sets *ss, bg__statsd_set *st) {
  uint32_t ncap = st->cap ? st->cap * 2 : 8;
  size_t more = (size_t)(ncap - st->cap) * sizeof *st->tab;
  if (ss->bytes + more > ss->max_bytes) return -1;
  uint64_t *nt = calloc(ncap, sizeof *nt);
  if (nt == NULL) return -1;
  for (uint32_t i = 0; i < st->cap; i++) {
    if (st->tab[i] == 0) continue;
    uint32_t j = (uint32_t)st->tab[i] & (ncap - 1);
    while (nt[j])
      j = (j + 1) & (ncap - 1);
    nt[j] = st->tab[i];
  }
  free(st->tab);
  st->tab = nt;
  st->cap = ncap;
  ss->bytes += more;
  return 0;
}

/* Moves a full exact set into a sketch. 0, or -1 when the memory is not there. */
static int to_sketch(bg__statsd_sets *ss, bg__statsd_set *st) {
  size_t freed = (size_t)st->cap * sizeof *st->tab;
  if (ss->bytes - freed + sizeof(bg_hll) > ss->max_bytes) return -1;
  bg_hll *h = malloc(sizeof *h);
  if (h == NULL) return -1;
  bg_hll_init(h);
  for (uint32_t i = 0; i < st->cap; i++)
    if (st->tab[i]) bg_hll_add(h, st->tab[i]);
  free(st->tab);
  st->tab = NULL;
  st->cap = 0;
  st->hll = h;
  ss->bytes = ss->bytes - freed + sizeof *h;
  return 0;
}

void bg__statsd_set_add(bg__statsd_sets *ss, bg__statsd_set *st, const char *v, size_t n) {
  uint64_t h = value_hash(v, n);
  if (st->hll) {
    if (bg_hll_add(st->hll, h)) bg_gauge_set(st->s, round(bg_hll_estimate(st->hll)));
    return;
  }
  uint32_t i = 0;
  if (st->cap) {
    for (i = (uint32_t)h & (st->cap - 1); st->tab[i]; i = (i + 1) & (st->cap - 1))
      if (st->tab[i] == h) return; /* seen this interval */
  }
  if (st->n >= BG__STATSD_SET_EXACT) {
    if (to_sketch(ss, st) != 0) {
      (*ss->dropped)++;
      return;
    }
    bg_hll_add(st->hll, h);
    bg_gauge_set(st->s, round(bg_hll_estimate(st->hll)));
    return;
  }
  if ((st->n + 1) * 2 > st->cap) {
    if (exact_grow(ss, st) != 0) {
      (*ss->dropped)++;
      return;
    }
    for (i = (uint32_t)h & (st->cap - 1); st->tab[i]; i = (i + 1) & (st->cap - 1))
      ;
  }
  st->tab[i] = h;
  st->n++;
  bg_gauge_set(st->s, (double)st->n);
}

/* Gives back a set's value memory; it counts from 0 again. */
static void set_clear(bg__statsd_sets *ss, bg__statsd_set *st) {
  ss->bytes -= (size_t)st->cap * sizeof *st->tab + (st->hll ? sizeof *st->hll : 0);
  free(st->tab);
  free(st->hll);
  st->tab = NULL;
  st->hll = NULL;
  st->cap = st->n = 0;
}

void bg__statsd_sets_flush(bg__statsd_sets *ss) {
  for (size_t i = 0; i < ss->cap; i++) {
    bg__statsd_set *st = ss->tab[i];
    if (st == NULL) continue;
    set_clear(ss, st);
    bg_gauge_set(st->s, 0);
  }
}

void bg__statsd_sets_free(bg__statsd_sets *ss) {
  for (size_t i = 0; i < ss->cap; i++) {
    if (ss->tab[i] == NULL) continue;
    set_clear(ss, ss->tab[i]);
    free(ss->tab[i]);
  }
  free(ss->tab);
  ss->tab = NULL;
  ss->cap = ss->n = 0;
}
