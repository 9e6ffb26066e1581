#include "metrics/window.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/expo.h"
#include "metrics/sketch.h"

typedef struct snap {
  double minute; /* wall time the snapshot was taken (at most one per minute); 0: empty */
  bg_sketch sk;
} snap;

typedef struct entry {
  uint32_t id;   /* bg_series_id; 0: free */
  uint32_t seen; /* tick generation that last saw the series */
  snap slots[BG_WINDOW_SLOTS];
} entry;

struct bg_window {
  entry *tab; /* open addressing by id */
  size_t cap, used;
  uint32_t gen;
};

static bg_window *g_default;

bg_window *bg_window_new(void) {
  return calloc(1, sizeof(bg_window));
}

bg_window *bg_window_default(void) {
  if (g_default == NULL) g_default = bg_window_new();
  return g_default;
}

static void entry_clear(entry *e) {
  for (int i = 0; i < BG_WINDOW_SLOTS; i++)
    bg_sketch_reset(&e->slots[i].sk);
  memset(e, 0, sizeof *e);
}

void bg_window_free(bg_window *w) {
  if (w == NULL) return;
  for (size_t i = 0; i < w->cap; i++)
    if (w->tab[i].id) entry_clear(&w->tab[i]);
  free(w->tab);
  if (w == g_default) g_default = NULL;
  free(w);
}

static entry *lookup(bg_window *w, uint32_t id, int create) {
  if (w->cap == 0 || (create && (w->used + 1) * 2 > w->cap)) {
    if (!create) return NULL;
    size_t ncap = w->cap ? w->cap * 2 : 64;
    entry *nt = calloc(ncap, sizeof *nt);
    if (nt == NULL) return NULL;
    for (size_t i = 0; i < w->cap; i++) {
      if (w->tab[i].id == 0) continue;
      size_t j = w->tab[i].id & (ncap - 1);
      while (nt[j].id)
        j = (j + 1) & (ncap - 1);
      nt[j] = w->tab[i];
    }
    free(w->tab);
    w->tab = nt;
    w->cap = ncap;
  }
  size_t j = id & (w->cap - 1);
  while (w->tab[j].id) {
    if (w->tab[j].id == id) return &w->tab[j];
    j = (j + 1) & (w->cap - 1);
  }
  if (!create) return NULL;
  entry *e = &w->tab[j];
  memset(e, 0, sizeof *e);
  e->id = id;
  for (int i = 0; i < BG_WINDOW_SLOTS; i++)
    bg_sketch_init(&e->slots[i].sk, 0);
  w->used++;
  return e;
}

/* Removes entries whose series were not seen this tick (rehashing the table). */
static void sweep(bg_window *w) {
  size_t live = 0;
  for (size_t i = 0; i < w->cap; i++)
    if (w->tab[i].id && w->tab[i].seen == w->gen) live++;
  if (live == w->used) return;
  entry *old = w->tab;
  size_t cap = w->cap;
  w->tab = NULL;
  w->cap = w->used = 0;
  for (size_t i = 0; i < cap; i++) {
    if (old[i].id == 0) continue;
    if (old[i].seen != w->gen) {
      entry_clear(&old[i]);
      continue;
    }
    entry *e = lookup(w, old[i].id, 1);
    if (e != NULL)
      *e = old[i];
    else
      entry_clear(&old[i]);
  }
  free(old);
}

typedef struct tick_ctx {
  bg_window *w;
  double minute;
  int rc;
} tick_ctx;

static void tick_series(void *ud, const bg_family_view *f, const bg_series_view *s) {
  tick_ctx *t = ud;
  if (f->type != BG_HISTOGRAM || s->sketch == NULL) return;
  entry *e = lookup(t->w, s->id, 1);
  if (e == NULL) {
    t->rc = BG_ENOMEM;
    return;
  }
  e->seen = t->w->gen;
  int newest = -1;
  for (int i = 0; i < BG_WINDOW_SLOTS; i++)
    if (e->slots[i].minute > 0 && (newest < 0 || e->slots[i].minute > e->slots[newest].minute))
      newest = i;
  if (newest >= 0 && floor(e->slots[newest].minute / 60.0) >= floor(t->minute / 60.0)) return;
  int slot = newest < 0 ? 0 : (newest + 1) % BG_WINDOW_SLOTS;
  snap *sn = &e->slots[slot];
  bg_sketch_reset(&sn->sk);
  if (bg_sketch_merge(&sn->sk, s->sketch) != 0) t->rc = BG_ENOMEM;
  sn->minute = t->minute;
}

int bg_window_tick(bg_window *w, bg_registry *r, double now) {
  tick_ctx t = {w, now, 0};
  w->gen++;
  bg_registry_walk(r, NULL, tick_series, &t);
  sweep(w);
  return t.rc;
}

/* dst -= src, bucket by bucket (src is an earlier state of the same cumulative sketch). */
static void store_sub(bg_sketch_store *dst, const bg_sketch_store *src) {
  for (int32_t k = 0; k < src->len; k++) {
    uint64_t n = src->counts[k];
    if (n == 0) continue;
    int32_t j = src->offset + k - dst->offset;
    if (j < 0) j = 0; /* folded into the lowest bucket by a collapse */
    if (j >= dst->len) continue;
    dst->counts[j] = dst->counts[j] >= n ? dst->counts[j] - n : 0;
  }
}

int bg_window_stats_of(bg_window *w, const bg_series_view *s, double seconds, double now,
                       bg_window_stats *out) {
  if (s->sketch == NULL) return BG_EINVAL;
  double nan = NAN;
  *out = (bg_window_stats){0, 0, nan, nan, nan, nan, nan, nan, nan, 0};
  /* the newest snapshot at or before the window's start */
  const snap *base = NULL, *oldest = NULL;
  entry *e = lookup(w, s->id, 0);
  for (int i = 0; e != NULL && i < BG_WINDOW_SLOTS; i++) {
    const snap *sn = &e->slots[i];
    if (sn->minute <= 0) continue;
    if (oldest == NULL || sn->minute < oldest->minute) oldest = sn;
    if (sn->minute <= now - seconds && (base == NULL || sn->minute > base->minute)) base = sn;
  }
  bg_sketch d;
  bg_sketch_init(&d, 0);
  if (bg_sketch_merge(&d, s->sketch) != 0) {
    bg_sketch_reset(&d);
    return BG_ENOMEM;
  }
  /* no snapshot old enough: everything since the series was created falls in the window when
   * it was created inside it; otherwise the oldest snapshot is the best start we have */
  if (base == NULL && oldest != NULL && s->created < now - seconds) base = oldest;
  double start = base ? base->minute : s->created;
  if (base != NULL) {
    store_sub(&d.pos, &base->sk.pos);
    store_sub(&d.neg, &base->sk.neg);
    d.zero = d.zero >= base->sk.zero ? d.zero - base->sk.zero : 0;
    d.count = d.count >= base->sk.count ? d.count - base->sk.count : 0;
    d.sum -= base->sk.sum;
  }
  out->seconds = now - start;
  out->count = d.count;
  out->sum = d.sum;
  if (d.count > 0) {
    d.min = -INFINITY;
    d.max = INFINITY;
    double lo = bg_sketch_quantile(&d, 1e-300), hi = bg_sketch_quantile(&d, 1.0 - 1e-16);
    /* the bucket values are within 1%; the true extremes bound them */
    double gmin = bg_sketch_min(s->sketch), gmax = bg_sketch_max(s->sketch);
    d.min = lo < gmin ? gmin : lo;
    d.max = hi > gmax ? gmax : hi;
    if (base == NULL) d.min = gmin, d.max = gmax;
    out->min = d.min;
    out->max = d.max;
    out->mean = d.sum / (double)d.count;
    out->p50 = bg_sketch_quantile(&d, 0.50);
    out->p90 = bg_sketch_quantile(&d, 0.90);
    out->p95 = bg_sketch_quantile(&d, 0.95);
    out->p99 = bg_sketch_quantile(&d, 0.99);
  }
  bg_sketch_reset(&d);
  return 0;
}

static int json_num(bg_buf *b, const char *key, double v) {
  if (!isfinite(v)) return bg_buf_printf(b, "\"%s\":null", key);
  return bg_buf_printf(b, "\"%s\":%.17g", key, v);
}

typedef struct render_ctx {
  bg_window *w;
  double now;
} render_ctx;

static int window_extra(void *ud, const bg_family_view *f, const bg_series_view *s, bg_buf *out) {
  render_ctx *rc = ud;
  if (f->type != BG_HISTOGRAM || s->sketch == NULL) return 0;
  static const struct {
    const char *name;
    double seconds;
  } spans[] = {{"1m", 60}, {"5m", 300}, {"15m", 900}};
  int err = bg_buf_puts(out, ",\"windows\":{");
  for (int i = 0; err == 0 && i < 3; i++) {
    bg_window_stats st;
    if (bg_window_stats_of(rc->w, s, spans[i].seconds, rc->now, &st) != 0) return BG_ENOMEM;
    err = bg_buf_printf(out, "%s\"%s\":{\"count\":%llu,", i ? "," : "", spans[i].name,
                        (unsigned long long)st.count);
    if (err == 0) err = json_num(out, "sum", st.sum);
    const char *keys[] = {"min", "max", "mean", "p50", "p90", "p95", "p99", "seconds"};
    double vals[] = {st.min, st.max, st.mean, st.p50, st.p90, st.p95, st.p99, st.seconds};
    for (int k = 0; err == 0 && k < 8; k++) {
      err = bg_buf_puts(out, ",");
      if (err == 0) err = json_num(out, keys[k], vals[k]);
    }
    if (err == 0) err = bg_buf_puts(out, "}");
  }
  if (err == 0) err = bg_buf_puts(out, "}");
  return err;
}

int bg_window_render_json(bg_window *w, bg_registry *r, double now, bg_buf *out) {
  render_ctx rc = {w, now};
  return bg_expo_json(r, out, window_extra, &rc);
}

char *bg_window_render_json_string(bg_window *w, bg_registry *r, double now, size_t *len) {
  bg_buf b = {0};
  if (bg_window_render_json(w, r, now, &b) != 0 || bg_buf_reserve(&b, 0) != 0) {
    bg_buf_free(&b);
    return NULL;
  }
  if (len) *len = b.len;
  return b.data;
}
