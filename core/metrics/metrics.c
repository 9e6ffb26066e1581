/* metrics: families in a chained hash keyed by exposition base name, series in a per-family
 * chained hash keyed by the sorted label set plus a creation-ordered list for stable walks.
 * A series is one allocation, so its address is the handle Lua keeps and the hot paths touch
 * only that block: the struct (what every type needs), then for a histogram its part (bucket
 * counts and sketch), then the label strings' lengths, the labels escaped for the text
 * formats (so a render copies them instead of escaping them again) and the label strings.
 * Counters and gauges carry nothing of a histogram's: the idle series is what costs memory. */
#include "metrics/metrics_int.h"
#include "trace/trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The registry's own series, exempt from the limits like every series made by
 * bg_series_get_own. */
#define DROPPED_NAME "beagle_series_dropped"
#define DROPPED_HELP "Series not created because a cardinality limit was reached."
#define TRUNCATED_NAME "beagle_label_values_truncated"
#define TRUNCATED_HELP "Label values cut to " BG__STR(BG_METRICS_MAX_LABEL_VALUE) " bytes."
#define BG__STR(x) BG__STR2(x)
#define BG__STR2(x) #x

enum { MODE_GET, MODE_FIND, MODE_OWN, MODE_PROBE };

static const double default_bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
#define DEFAULT_NB ((int)(sizeof default_bounds / sizeof default_bounds[0]))

static const char *const type_names[] = {"counter", "gauge", "histogram"};

static bg_registry *default_registry;

static uint64_t fnv(uint64_t h, const char *s) {
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return (h ^ 0xff) * 0x100000001b3ULL; /* terminator, so ("ab","c") != ("a","bc") */
}

#define FNV_SEED 0xcbf29ce484222325ULL

bg_registry *bg_registry_new(void) {
  bg_registry *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->tabsz = 64;
  r->max_series = BG_DEFAULT_MAX_SERIES;
  r->max_per_metric = BG_DEFAULT_MAX_SERIES_PER_METRIC;
  r->tab = calloc(r->tabsz, sizeof *r->tab);
  if (r->tab == NULL) {
    free(r);
    return NULL;
  }
  return r;
}

bg_registry *bg_registry_default(void) {
  if (default_registry == NULL) default_registry = bg_registry_new();
  return default_registry;
}

static void series_free(bg_series *s) {
  if (s->type == BG_HISTOGRAM) {
    bg_sketch_reset(&hist_of(s)->sk);
    free(hist_of(s)->ex);
  }
  free(s);
}

static void family_free(family *f) {
  for (size_t i = 0; i < f->nseries; i++)
    series_free(f->order[i]);
  free(f->order);
  free(f->tab);
  free(f->name);
  free(f->help);
  free(f->bounds);
  free(f);
}

void bg_registry_free(bg_registry *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->tabsz; i++) {
    family *f = r->tab[i];
    while (f) {
      family *next = f->hnext;
      family_free(f);
      f = next;
    }
  }
  free(r->tab);
  free(r->sorted);
  if (r == default_registry) default_registry = NULL;
  free(r);
}

static family *family_find(const bg_registry *r, const char *base, uint64_t h) {
  for (family *f = r->tab[h & (r->tabsz - 1)]; f; f = f->hnext) {
    if (f->hash == h && strcmp(f->name, base) == 0) return f;
  }
  return NULL;
}

/* The family whose samples would use the exposition name n, if any. */
static family *name_owner(const bg_registry *r, const char *n) {
  family *f = family_find(r, n, fnv(FNV_SEED, n));
  if (f) return f;
  static const struct {
    const char *suffix;
    int type;
  } sfx[] = {{"_total", BG_COUNTER},
             {"_bucket", BG_HISTOGRAM},
             {"_sum", BG_HISTOGRAM},
             {"_count", BG_HISTOGRAM}};
  size_t len = strlen(n);
  char stem[MAX_NAME + 16];
  for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
    size_t sl = strlen(sfx[i].suffix);
    if (len <= sl || len - sl >= sizeof stem || strcmp(n + len - sl, sfx[i].suffix) != 0) continue;
    memcpy(stem, n, len - sl);
    stem[len - sl] = '\0';
    f = family_find(r, stem, fnv(FNV_SEED, stem));
    if (f && f->type == sfx[i].type) return f;
  }
  return NULL;
}

/* Refuses a new family whose sample names another family already writes. */
static int check_clash(const bg_registry *r, const char *metric, const char *base, int type,
                       char *err, size_t errlen) {
  static const char *const claims[3][4] = {
      {"", "_total", NULL, NULL}, {"", NULL, NULL, NULL}, {"", "_bucket", "_sum", "_count"}};
  char n[MAX_NAME + 16];
  for (int i = 0; i < 4 && claims[type][i]; i++) {
    snprintf(n, sizeof n, "%s%s", base, claims[type][i]);
    family *f = name_owner(r, n);
    if (f) {
      bg__metrics_seterr(err, errlen,
                         "metric \"%.64s\" would expose %s, which %s %s%s already writes", metric,
                         n, type_names[f->type], f->name, f->type == BG_COUNTER ? "_total" : "");
      return BG_EEXIST;
    }
  }
  return 0;
}

static int grow_families(bg_registry *r) {
  size_t nsz = r->tabsz * 2;
  family **nt = calloc(nsz, sizeof *nt);
  if (nt == NULL) return BG_ENOMEM;
  for (size_t i = 0; i < r->tabsz; i++) {
    family *f = r->tab[i];
    while (f) {
      family *next = f->hnext;
      f->hnext = nt[f->hash & (nsz - 1)];
      nt[f->hash & (nsz - 1)] = f;
      f = next;
    }
  }
  free(r->tab);
  r->tab = nt;
  r->tabsz = nsz;
  return 0;
}

static family *family_new(bg_registry *r, const char *base, uint64_t h, int type, const char *help,
                          const double *bounds, int nb) {
  if (r->nfam >= r->tabsz && grow_families(r) != 0) return NULL;
  family *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->name = strdup(base);
  f->help = help ? strdup(help) : NULL;
  f->type = type;
  f->reg = r;
  f->hash = h;
  f->tabsz = 8;
  f->tab = calloc(f->tabsz, sizeof *f->tab);
  if (type == BG_HISTOGRAM) {
    if (bounds == NULL || nb == 0) bounds = default_bounds, nb = DEFAULT_NB;
    f->nb = nb;
    size_t cap = nb > BG__BOUNDS_PAD ? (size_t)nb : BG__BOUNDS_PAD;
    f->bounds = malloc(cap * sizeof *f->bounds);
    if (f->bounds) {
      memcpy(f->bounds, bounds, (size_t)nb * sizeof *bounds);
      for (size_t i = (size_t)nb; i < cap; i++)
        f->bounds[i] = INFINITY;
    }
  }
  if (f->name == NULL || (help && f->help == NULL) || f->tab == NULL ||
      (type == BG_HISTOGRAM && f->bounds == NULL)) {
    family_free(f);
    return NULL;
  }
  f->hnext = r->tab[h & (r->tabsz - 1)];
  r->tab[h & (r->tabsz - 1)] = f;
  r->nfam++;
  r->sorted_dirty = 1;
  return f;
}

static int grow_series(family *f) {
  size_t nsz = f->tabsz * 2;
  bg_series **nt = calloc(nsz, sizeof *nt);
  if (nt == NULL) return BG_ENOMEM;
  for (size_t i = 0; i < f->tabsz; i++) {
    bg_series *s = f->tab[i];
    while (s) {
      bg_series *next = s->hnext;
      s->hnext = nt[s->hash & (nsz - 1)];
      nt[s->hash & (nsz - 1)] = s;
      s = next;
    }
  }
  free(f->tab);
  f->tab = nt;
  f->tabsz = nsz;
  return 0;
}

static bg_series *series_find(const family *f, uint32_t h, const char *const *kv, const int *order,
                              int nlabels) {
  for (bg_series *s = f->tab[h & (f->tabsz - 1)]; s; s = s->hnext) {
    if (s->hash != h || s->nlabels != nlabels) continue;
    const uint16_t *len = label_lens(s);
    const char *p = label_strings(s);
    int i = 0;
    for (; i < 2 * nlabels; i++) {
      if (strcmp(p, kv[2 * order[i / 2] + i % 2]) != 0) break;
      p += len[i] + 1;
    }
    if (i == 2 * nlabels) return s;
  }
  return NULL;
}

static bg_series *series_new(family *f, uint32_t h, const char *const *kv, const int *order,
                             int nlabels) {
  if (f->nseries >= f->tabsz && grow_series(f) != 0) return NULL;
  if (f->nseries >= f->ordcap) {
    size_t cap = f->ordcap ? 2 * f->ordcap : 8;
    bg_series **o = realloc(f->order, cap * sizeof *o);
    if (o == NULL) return NULL;
    f->order = o;
    f->ordcap = cap;
  }
  size_t hsz = f->type == BG_HISTOGRAM ? hist_size(f->nb) : 0;
  size_t strs = 0, text = 0;
  for (int i = 0; i < nlabels; i++) {
    const char *k = kv[2 * order[i]], *v = kv[2 * order[i] + 1];
    strs += strlen(k) + strlen(v) + 2;
    text += (i ? 1 : 0) + strlen(k) + 2 + bg__metric_escaped_len(v) + 1; /* [,]k="v" */
  }
  /* Each string is at most MAX_NAME or BG_METRICS_MAX_LABEL_VALUE bytes, so the lengths
   * (and the text, at most 16 * 717 bytes) fit in 16 bits. */
  bg_series *s = calloc(1, sizeof(bg_series) + hsz + 4 * (size_t)nlabels + text + strs);
  if (s == NULL) return NULL;
  s->type = (uint8_t)f->type;
  s->nlabels = (uint8_t)nlabels;
  s->lablen = (uint16_t)text;
  if (hsz) {
    hist *hs = hist_of(s);
    hs->bounds = f->bounds;
    hs->nb = f->nb;
    bg_sketch_init(&hs->sk, 0);
  }
  uint16_t *len = (uint16_t *)(uintptr_t)label_lens(s);
  char *t = (char *)(uintptr_t)label_text(s), *p = t + text;
  for (int i = 0; i < nlabels; i++) {
    const char *k = kv[2 * order[i]], *v = kv[2 * order[i] + 1];
    size_t kl = strlen(k), vl = strlen(v);
    len[2 * i] = (uint16_t)kl;
    len[2 * i + 1] = (uint16_t)vl;
    memcpy(p, k, kl + 1);
    p += kl + 1;
    memcpy(p, v, vl + 1);
    p += vl + 1;
    if (i) *t++ = ',';
    memcpy(t, k, kl);
    t += kl;
    *t++ = '=';
    *t++ = '"';
    t = bg__metric_escape(t, v);
    *t++ = '"';
  }
  s->fam = f;
  s->hash = h;
  s->id = ++f->reg->next_id;
  s->created = bg_wall_time();
  s->hnext = f->tab[h & (f->tabsz - 1)];
  f->tab[h & (f->tabsz - 1)] = s;
  f->order[f->nseries++] = s;
  f->reg->nseries++;
  return s;
}

static bg_series *lookup(bg_registry *r, int type, const char *name, const char *help,
                         const char *const *kv, int nlabels, const double *buckets, int nbuckets,
                         char *err, size_t errlen, int mode, bg_series_probe_t *pr);

/* Adds one to a registry counter of its own (dropped{reason} or truncated). */
static void note(bg_registry *r, bg_series **slot, const char *name, const char *help,
                 const char *reason, int n) {
  if (*slot == NULL) {
    const char *kv[2] = {"reason", reason};
    *slot = lookup(r, BG_COUNTER, name, help, kv, reason ? 1 : 0, NULL, 0, NULL, 0, MODE_OWN, NULL);
    if (*slot == NULL) return; /* out of memory, or the name is taken by another type */
  }
  (*slot)->value += n;
}

static const char *const drop_reasons[2] = {"max_series", "max_series_per_metric"};

/* Series users may still create before max_series. */
static size_t room(const bg_registry *r) {
  size_t user = r->nseries - r->nown;
  return user < r->max_series ? r->max_series - user : 0;
}

static void drop(bg_registry *r, family *f, int reason) {
  r->dropped[reason]++;
  if (f) {
    f->dropped++;
    f->drop_reason = reason;
  } else {
    r->dropped_new++;
  }
  note(r, &r->dropped_s[reason], DROPPED_NAME, DROPPED_HELP, drop_reasons[reason], 1);
}

static bg_series *lookup(bg_registry *r, int type, const char *name, const char *help,
                         const char *const *kv, int nlabels, const double *buckets, int nbuckets,
                         char *err, size_t errlen, int mode, bg_series_probe_t *pr) {
  if (err && errlen) err[0] = '\0';
  if (r == NULL) {
    bg__metrics_seterr(err, errlen, "no registry");
    return NULL;
  }
  if (type < BG_COUNTER || type > BG_HISTOGRAM) {
    bg__metrics_seterr(err, errlen, "unknown metric type %d", type);
    return NULL;
  }
  char base[MAX_NAME + 1];
  if (bg__metric_map_base(name, type, base, sizeof base, err, errlen) != 0) return NULL;
  if (help && !bg_utf8_valid(help)) {
    bg__metrics_seterr(err, errlen, "metric \"%.64s\": help text is not valid UTF-8", name);
    return NULL;
  }
  int order[BG_METRICS_MAX_LABELS];
  if (bg__metric_check_labels(name, type, kv, nlabels, order, err, errlen) != 0) return NULL;
  if (buckets == NULL || nbuckets < 0) nbuckets = 0;
  if (nbuckets > 0) {
    if (type != BG_HISTOGRAM) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\": buckets apply only to histograms", name);
      return NULL;
    }
    if (bg__metric_check_buckets(name, buckets, &nbuckets, err, errlen) != 0) return NULL;
  }
  /* Long label values are cut (on a UTF-8 boundary) into copies on the stack. */
  const char *cut_kv[2 * BG_METRICS_MAX_LABELS];
  char cut[BG_METRICS_MAX_LABELS][BG_METRICS_MAX_LABEL_VALUE + 1];
  int ncut = 0;
  for (int i = 0; i < nlabels; i++) {
    const char *v = kv[2 * i + 1];
    cut_kv[2 * i] = kv[2 * i];
    cut_kv[2 * i + 1] = v;
    if (strnlen(v, BG_METRICS_MAX_LABEL_VALUE + 1) <= BG_METRICS_MAX_LABEL_VALUE) continue;
    size_t n = bg__metric_utf8_cut(v, BG_METRICS_MAX_LABEL_VALUE);
    memcpy(cut[i], v, n);
    cut[i][n] = '\0';
    cut_kv[2 * i + 1] = cut[i];
    ncut++;
  }
  if (ncut) kv = cut_kv;

  uint64_t fh = fnv(FNV_SEED, base);
  family *f = family_find(r, base, fh);
  if (f) {
    if (f->type != type) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\" is a %s, not a %s", name,
                         type_names[f->type], type_names[type]);
      return NULL;
    }
    if (nbuckets > 0 && (nbuckets != f->nb ||
                         memcmp(buckets, f->bounds, (size_t)nbuckets * sizeof *buckets) != 0)) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\" already exists with different buckets",
                         name);
      return NULL;
    }
    if (mode != MODE_FIND && help && help[0] && f->help == NULL)
      f->help = strdup(help); /* best effort */
  } else if (mode == MODE_FIND) {
    return NULL;
  } else {
    if (check_clash(r, name, base, type, err, errlen) != 0) return NULL;
    if (mode == MODE_PROBE) {
      *pr = (bg_series_probe_t){0, r->max_per_metric, room(r)};
      return NULL;
    }
    if (mode == MODE_GET && r->nseries - r->nown >= r->max_series) {
      bg__metrics_seterr(err, errlen, "total series limit reached (%zu)", r->max_series);
      drop(r, NULL, BG_DROP_MAX_SERIES);
      return NULL;
    }
    f = family_new(r, base, fh, type, help && help[0] ? help : NULL, buckets, nbuckets);
    if (f == NULL) {
      bg__metrics_seterr(err, errlen, "out of memory");
      return NULL;
    }
  }

  uint64_t h64 = FNV_SEED;
  for (int i = 0; i < nlabels; i++) {
    h64 = fnv(h64, kv[2 * order[i]]);
    h64 = fnv(h64, kv[2 * order[i] + 1]);
  }
  uint32_t h = (uint32_t)(h64 ^ (h64 >> 32));
  bg_series *s = series_find(f, h, kv, order, nlabels);
  if (mode == MODE_PROBE) {
    size_t fr = f->nseries < r->max_per_metric ? r->max_per_metric - f->nseries : 0;
    *pr = (bg_series_probe_t){s ? 1 : 0, fr, room(r)};
    return s;
  }
  if (s || mode == MODE_FIND) return s;
  if (mode == MODE_GET) {
    if (f->nseries >= r->max_per_metric) {
      bg__metrics_seterr(err, errlen, "series limit reached for metric \"%.64s\" (%zu series)",
                         name, r->max_per_metric);
      drop(r, f, BG_DROP_MAX_SERIES_PER_METRIC);
      return NULL;
    }
    if (r->nseries - r->nown >= r->max_series) {
      bg__metrics_seterr(err, errlen, "total series limit reached (%zu)", r->max_series);
      drop(r, f, BG_DROP_MAX_SERIES);
      return NULL;
    }
  }
  s = series_new(f, h, kv, order, nlabels);
  if (s == NULL) {
    bg__metrics_seterr(err, errlen, "out of memory");
    return NULL;
  }
  if (mode == MODE_OWN) {
    s->own = 1;
    r->nown++;
  }
  /* a cut value is counted once, when its series is made, not on every later lookup */
  if (ncut && mode == MODE_GET) {
    r->truncated += (uint64_t)ncut;
    note(r, &r->truncated_s, TRUNCATED_NAME, TRUNCATED_HELP, NULL, ncut);
  }
  return s;
}

bg_series *bg_series_get(bg_registry *r, int type, const char *name, const char *help,
                         const char *const *kv, int nlabels, const double *buckets, int nbuckets,
                         char *err, size_t errlen) {
  return lookup(r, type, name, help, kv, nlabels, buckets, nbuckets, err, errlen, MODE_GET, NULL);
}

bg_series *bg_series_get_own(bg_registry *r, int type, const char *name, const char *help,
                             const char *const *kv, int nlabels, const double *buckets,
                             int nbuckets, char *err, size_t errlen) {
  return lookup(r, type, name, help, kv, nlabels, buckets, nbuckets, err, errlen, MODE_OWN, NULL);
}

int bg_series_probe(bg_registry *r, int type, const char *name, const char *const *kv, int nlabels,
                    bg_series_probe_t *out, char *err, size_t errlen) {
  bg_series_probe_t pr = {-1, 0, 0};
  lookup(r, type, name, NULL, kv, nlabels, NULL, 0, err, errlen, MODE_PROBE, &pr);
  *out = pr;
  return pr.exists;
}

bg_series *bg_series_find(bg_registry *r, int type, const char *name, const char *const *kv,
                          int nlabels) {
  return lookup(r, type, name, NULL, kv, nlabels, NULL, 0, NULL, 0, MODE_FIND, NULL);
}

void bg_counter_add(bg_series *s, double v) {
  if (!(v >= 0)) { /* negative or NaN: a counter only goes up */
    s->fam->reg->misuse++;
    return;
  }
  s->value += v;
}

void bg_gauge_set(bg_series *s, double v) {
  s->value = v;
}

void bg_gauge_add(bg_series *s, double v) {
  s->value += v;
}

/* The bucket's exemplar becomes this observation, with the current trace's ids. */
__attribute__((noinline, cold)) static void exemplar(hist *hs, int b, double v) {
  if (!bg_span_ctx_valid(&bg__trace_cur)) return;
  if (hs->ex == NULL && (hs->ex = calloc((size_t)hs->nb + 1, sizeof *hs->ex)) == NULL) return;
  bg_exemplar *e = &hs->ex[b];
  memcpy(e->trace_id, bg__trace_cur.trace_id, sizeof e->trace_id);
  memcpy(e->span_id, bg__trace_cur.span_id, sizeof e->span_id);
  e->value = v;
  e->time = bg_wall_time();
}

void bg_histogram_observe(bg_series *s, double v) {
  if (v != v) { /* NaN would poison the sum forever */
    s->fam->reg->misuse++;
    return;
  }
  hist *hs = hist_of(s);
  int b = bg__histogram_bucket(hs->bounds, hs->nb, v);
  hs->buckets[b]++;
  bg_sketch_add(&hs->sk, v);
  /* one load when nothing is sampled, which is nearly always */
  if (__builtin_expect(bg__trace_cur.flags & BG_TRACE_FLAG_SAMPLED, 0)) exemplar(hs, b, v);
}

const bg_sketch *bg_histogram_sketch(const bg_series *s) {
  return s->type == BG_HISTOGRAM ? &hist_of(s)->sk : NULL;
}

double bg_histogram_quantile(const bg_series *s, double q) {
  const bg_sketch *sk = bg_histogram_sketch(s);
  return sk ? bg_sketch_quantile(sk, q) : NAN;
}

double bg_histogram_min(const bg_series *s) {
  const bg_sketch *sk = bg_histogram_sketch(s);
  return sk ? bg_sketch_min(sk) : NAN;
}

double bg_histogram_max(const bg_series *s) {
  const bg_sketch *sk = bg_histogram_sketch(s);
  return sk ? bg_sketch_max(sk) : NAN;
}

uint32_t bg_series_id(const bg_series *s) {
  return s->id;
}

double bg_series_value(const bg_series *s) {
  return s->type == BG_HISTOGRAM ? bg_sketch_sum(&hist_of(s)->sk) : s->value;
}

uint64_t bg_series_count(const bg_series *s) {
  return s->type == BG_HISTOGRAM ? bg_sketch_count(&hist_of(s)->sk) : 0;
}

void bg_series_remove(bg_registry *r, bg_series *s) {
  if (r == NULL || s == NULL || s->fam->reg != r) return;
  family *f = s->fam;
  bg_series **pp = &f->tab[s->hash & (f->tabsz - 1)];
  while (*pp && *pp != s)
    pp = &(*pp)->hnext;
  if (*pp == NULL) return; /* not ours */
  *pp = s->hnext;
  size_t at = 0; /* removal is rare: no index kept in every series for it */
  while (f->order[at] != s)
    at++;
  memmove(&f->order[at], &f->order[at + 1], (f->nseries - at - 1) * sizeof *f->order);
  f->nseries--;
  r->nseries--;
  bg_series **own[3] = {&r->dropped_s[0], &r->dropped_s[1], &r->truncated_s};
  for (int i = 0; i < 3; i++)
    if (*own[i] == s) *own[i] = NULL;
  if (s->own) r->nown--;
  series_free(s);
}

size_t bg_registry_series_count(const bg_registry *r) {
  return r ? r->nseries : 0;
}

uint64_t bg_registry_misuse_count(const bg_registry *r) {
  return r ? r->misuse : 0;
}

void bg_registry_set_limits(bg_registry *r, size_t max_series, size_t max_per_metric) {
  if (r == NULL) return;
  r->max_series = max_series ? max_series : BG_DEFAULT_MAX_SERIES;
  r->max_per_metric = max_per_metric ? max_per_metric : BG_DEFAULT_MAX_SERIES_PER_METRIC;
}

uint64_t bg_registry_dropped(const bg_registry *r, int reason) {
  if (r == NULL || reason < 0 || reason > 1) return 0;
  return r->dropped[reason];
}

uint64_t bg_registry_truncated(const bg_registry *r) {
  return r ? r->truncated : 0;
}
