/* delta: previous cumulative values per series, for delta formats (see delta.h). */
#include "export/delta.h"

#include <stdlib.h>
#include <string.h>

/* One series' last two points. Open addressing by id (0 = empty slot). */
typedef struct entry {
  uint32_t id;
  uint32_t seen;  /* the collection it was last asked about */
  int nb;         /* histogram: nbuckets + 1; 0 for a counter */
  int has_prev;   /* 0: first sight of a series older than the delta (nothing to send yet) */
  double created; /* the series' creation time: with the id, which series this is */
  double t_prev, t_cur;
  double v_prev, v_cur;   /* counter value, histogram sum */
  uint64_t c_prev, c_cur; /* histogram count */
  uint64_t *b;            /* histogram: 2 * nb counts, the previous point's then the current's */
} entry;

struct bg_delta {
  double start; /* wall time the watch began */
  double now;   /* the newest batch time asked about */
  uint32_t gen; /* collections seen (distinct batch times, in increasing order) */
  entry *tab;
  size_t cap, used;
  uint64_t out[BG_METRICS_MAX_BUCKETS + 1]; /* the buckets answered */
};

bg_delta *bg_delta_new(double start) {
  bg_delta *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->start = start;
  return d;
}

void bg_delta_free(bg_delta *d) {
  if (d == NULL) return;
  for (size_t i = 0; i < d->cap; i++)
    free(d->tab[i].b);
  free(d->tab);
  free(d);
}

size_t bg_delta_size(const bg_delta *d) {
  return d->used;
}

static entry *slot(entry *tab, size_t cap, uint32_t id) {
  for (size_t i = (size_t)(id * 2654435761u) & (cap - 1);; i = (i + 1) & (cap - 1))
    if (tab[i].id == 0 || tab[i].id == id) return &tab[i];
}

/* Moves the entries into a table of cap slots, dropping those not seen for BG_DELTA_FORGET
 * collections when forget is set. */
static int rehash(bg_delta *d, size_t cap, int forget) {
  entry *tab = calloc(cap, sizeof *tab);
  if (tab == NULL) return BG_ENOMEM;
  size_t used = 0;
  for (size_t i = 0; i < d->cap; i++) {
    entry *e = &d->tab[i];
    if (e->id == 0) continue;
    if (forget && d->gen - e->seen >= BG_DELTA_FORGET) {
      free(e->b);
      continue;
    }
    *slot(tab, cap, e->id) = *e;
    used++;
  }
  free(d->tab);
  d->tab = tab;
  d->cap = cap;
  d->used = used;
  return 0;
}

/* A new collection began: every BG_DELTA_FORGET of them, forget the series not seen for as
 * many (the table shrinks when they were most of it). */
static void advance(bg_delta *d, double t) {
  d->now = t;
  d->gen++;
  if (d->gen % BG_DELTA_FORGET != 0 || d->used == 0) return;
  size_t live = 0;
  for (size_t i = 0; i < d->cap; i++)
    if (d->tab[i].id != 0 && d->gen - d->tab[i].seen < BG_DELTA_FORGET) live++;
  if (live == d->used) return;
  size_t cap = 16;
  while (cap < 2 * (live + 1))
    cap *= 2;
  if (cap > d->cap) cap = d->cap;
  rehash(d, cap, 1); /* out of memory: kept for the next time */
}

static void set_cur(entry *e, const bg_sample *s, double t) {
  e->t_cur = t;
  e->v_cur = s->value;
  e->c_cur = s->count;
  if (e->nb) memcpy(e->b + e->nb, s->bucket_counts, (size_t)e->nb * sizeof *e->b);
}

/* Sets e up for the first sight of s. 0 or BG_ENOMEM. */
static int first_sight(bg_delta *d, entry *e, const bg_sample *s, double t) {
  int nb = s->type == BG_HISTOGRAM ? s->nbuckets + 1 : 0;
  uint64_t *b = e->b;
  if (nb != e->nb) {
    b = nb ? calloc(2 * (size_t)nb, sizeof *b) : NULL;
    if (nb && b == NULL) return BG_ENOMEM;
    free(e->b);
  } else if (nb) {
    memset(b, 0, 2 * (size_t)nb * sizeof *b);
  }
  *e = (entry){.id = s->id, .nb = nb, .b = b, .created = s->created};
  /* born while we watched: all of it is news, counted from zero at its creation */
  e->has_prev = s->created >= d->start;
  e->t_prev = s->created;
  set_cur(e, s, t);
  return 0;
}

/* The entry of s, set up at first sight (*fresh); NULL when out of memory. An entry of the same
 * id made by another series (a batch kept on disk from before a restart numbered its series
 * from 1 too) is the first sight of this one. */
static entry *find_or_add(bg_delta *d, const bg_sample *s, double t, int *fresh) {
  *fresh = 1;
  if (d->cap) {
    entry *e = slot(d->tab, d->cap, s->id);
    if (e->id != 0) {
      int nb = s->type == BG_HISTOGRAM ? s->nbuckets + 1 : 0;
      if (e->created == s->created && e->nb == nb) {
        *fresh = 0;
        return e;
      }
      return first_sight(d, e, s, t) == 0 ? e : NULL;
    }
  }
  if ((d->used + 1) * 2 > d->cap && rehash(d, d->cap ? d->cap * 2 : 64, 0) != 0) return NULL;
  entry *e = slot(d->tab, d->cap, s->id);
  *e = (entry){0};
  if (first_sight(d, e, s, t) != 0) {
    e->id = 0;
    return NULL;
  }
  d->used++;
  return e;
}

int bg_delta_diff(bg_delta *d, const bg_sample *s, double t, bg_delta_val *out) {
  if (s->type != BG_COUNTER && s->type != BG_HISTOGRAM) return BG_EINVAL;
  if (s->type == BG_HISTOGRAM && (s->nbuckets < 0 || s->nbuckets > BG_METRICS_MAX_BUCKETS))
    return BG_EINVAL;
  if (t > d->now) advance(d, t);
  int fresh;
  entry *e = find_or_add(d, s, t, &fresh);
  if (e == NULL) return BG_ENOMEM;
  e->seen = d->gen;
  int nb = s->type == BG_HISTOGRAM ? s->nbuckets + 1 : 0;
  if (!fresh) {
    if (t < e->t_cur) return 0; /* an older batch than one already answered */
    if (t > e->t_cur) {
      e->has_prev = 1;
      e->t_prev = e->t_cur;
      e->v_prev = e->v_cur;
      e->c_prev = e->c_cur;
      if (nb) memcpy(e->b, e->b + nb, (size_t)nb * sizeof *e->b);
      set_cur(e, s, t);
    } /* t == t_cur: the same batch again, the same answer */
  }
  if (!e->has_prev) return 0;
  double elapsed = e->t_cur - e->t_prev;
  out->elapsed = elapsed > 1e-3 ? elapsed : 1e-3;
  out->buckets = NULL;
  out->count = 0;
  if (nb == 0) {
    out->value = e->v_cur >= e->v_prev ? e->v_cur - e->v_prev : e->v_cur;
    return 1;
  }
  const uint64_t *prev = e->b, *cur = e->b + nb;
  int reset = e->c_cur < e->c_prev;
  for (int i = 0; i < nb && !reset; i++)
    reset = cur[i] < prev[i];
  for (int i = 0; i < nb; i++)
    d->out[i] = reset ? cur[i] : cur[i] - prev[i];
  out->buckets = d->out;
  out->count = reset ? e->c_cur : e->c_cur - e->c_prev;
  out->value = reset ? e->v_cur : e->v_cur - e->v_prev;
  return 1;
}
