/* metrics_walk: reading a registry out in a stable order, families sorted by exposition name
 * and series in creation order (bg_registry_walk, for expo and history), and which families
 * hit a limit (bg_registry_limits_hit, for /health/detailed). */
#include "metrics/metrics_int.h"

#include <stdlib.h>
#include <string.h>

int bg_registry_limits_hit(bg_registry *r, bg_limit_hit *out, int max) {
  if (r == NULL) return 0;
  bg__metrics_sort(r);
  int n = 0;
  for (size_t i = 0; i < r->nfam && !r->sorted_dirty; i++) {
    const family *f = r->sorted[i];
    if (f->dropped == 0) continue;
    if (n < max) out[n] = (bg_limit_hit){f->name, f->dropped, f->nseries, f->drop_reason};
    n++;
  }
  if (r->dropped_new) {
    if (n < max) out[n] = (bg_limit_hit){NULL, r->dropped_new, 0, BG_DROP_MAX_SERIES};
    n++;
  }
  return n;
}

static int cmp_family(const void *a, const void *b) {
  return strcmp((*(family *const *)a)->name, (*(family *const *)b)->name);
}

void bg__metrics_sort(bg_registry *r) {
  if (!r->sorted_dirty && r->sorted != NULL) return;
  family **sorted = realloc(r->sorted, (r->nfam ? r->nfam : 1) * sizeof *sorted);
  if (sorted == NULL) return; /* out of memory: the old order (or none) stays */
  size_t n = 0;
  for (size_t i = 0; i < r->tabsz; i++)
    for (family *f = r->tab[i]; f; f = f->hnext)
      sorted[n++] = f;
  qsort(sorted, n, sizeof *sorted, cmp_family);
  r->sorted = sorted;
  r->sorted_dirty = 0;
}

/* Both walks; with_kv 0 leaves the view's kv NULL (a constant once inlined: the text
 * renderers skip the pointer array, about a tenth of a /metrics render). */
static inline __attribute__((always_inline)) void walk(bg_registry *r, bg_family_cb fam,
                                                       bg_series_cb ser, void *ud, int with_kv) {
  if (r == NULL) return;
  bg__metrics_sort(r);
  if (r->sorted_dirty) return; /* out of memory: nothing to walk with */
  for (size_t i = 0; i < r->nfam; i++) {
    const family *f = r->sorted[i];
    bg_family_view fv = {f->name, f->help, f->type, f->bounds, f->nb};
    if (fam) fam(ud, &fv);
    if (ser == NULL) continue;
    for (size_t j = 0; j < f->nseries; j++) {
      const bg_series *s = f->order[j];
      if (j + 4 < f->nseries) { /* its struct and label text, a few series ahead */
        __builtin_prefetch(f->order[j + 4]);
        __builtin_prefetch((const char *)f->order[j + 4] + 64);
      }
      const char *kv[2 * BG_METRICS_MAX_LABELS];
      const uint16_t *len = label_lens(s);
      const char *p = (const char *)(len + 2 * s->nlabels);
      bg_series_view sv = {with_kv ? kv : NULL, s->nlabels, p, s->lablen, s->value, 0, NULL,
                           s->created,          s->id,      s, NULL,      NULL};
      if (with_kv) {
        p += s->lablen;
        for (int k = 0; k < 2 * s->nlabels; k++) {
          kv[k] = p;
          p += len[k] + 1;
        }
      }
      if (s->type == BG_HISTOGRAM) {
        const hist *hs = hist_of(s);
        sv.value = bg_sketch_sum(&hs->sk);
        sv.count = bg_sketch_count(&hs->sk);
        sv.bucket_counts = hs->buckets;
        sv.sketch = &hs->sk;
        sv.exemplars = hs->ex;
      }
      ser(ud, &fv, &sv);
    }
  }
}

void bg_registry_walk(bg_registry *r, bg_family_cb fam, bg_series_cb ser, void *ud) {
  walk(r, fam, ser, ud, 1);
}

void bg_registry_walk_text(bg_registry *r, bg_family_cb fam, bg_series_cb ser, void *ud) {
  walk(r, fam, ser, ud, 0);
}
