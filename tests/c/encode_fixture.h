/* The registry the text encoder tests encode (tests/c/test_encode_{influx,graphite,prometheus}.c)
 * and what it holds in the Prometheus data model, worked out from the definitions below and not
 * from any encoder: a test parses its format back into that model with a parser of its own and
 * compares every sample (name, every label, value).
 *
 * The definitions cover counters, gauges and histograms; label values with spaces, commas,
 * equals signs, quotes, backslashes (one at the end), newlines, tabs, ; and ~, UTF-8; an empty
 * value; 16 labels; a label called "name"; NaN and both infinities; a histogram whose sum is
 * +Inf and one with no observations; numbers that need an exponent. */
#ifndef ENCODE_FIXTURE_H
#define ENCODE_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/batch.h"
#include "export/encode.h"
#include "metrics/metrics.h"
#include "test_check.h"

typedef struct fx_def {
  int type;
  const char *name; /* as recorded */
  const char *expo; /* its exposition base name */
  const char *help;
  int nl;
  const char *kv[34];
  double value; /* counter add, gauge set */
  int nobs;
  double obs[6];
  int nb;
  double bounds[4];
} fx_def;

static const fx_def FX[] = {
    {BG_COUNTER,
     "api.requests",
     "api_requests",
     "Requests served.",
     2,
     {"method", "POST", "path", "/a b,c=d.html"},
     3,
     0,
     {0},
     0,
     {0}},
    {BG_COUNTER,
     "api.requests",
     "api_requests",
     NULL,
     2,
     {"method", "GET", "path", ""},
     1.5,
     0,
     {0},
     0,
     {0}},
    {BG_GAUGE,
     "temp_celsius",
     "temp_celsius",
     "Temperature \\ \"now\"\nsecond line",
     2,
     {"note", "line1\nline2\ttab\r\f", "room", "quote\"back\\slash"},
     67.5,
     0,
     {0},
     0,
     {0}},
    {BG_GAUGE,
     "temp_celsius",
     "temp_celsius",
     NULL,
     2,
     {"note", "a=b;c~d e,f", "room", "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5"},
     -2.5,
     0,
     {0},
     0,
     {0}},
    {BG_GAUGE, "ratio", "ratio", NULL, 0, {0}, 1.0 / 3, 0, {0}, 0, {0}},
    {BG_GAUGE, "big", "big", NULL, 0, {0}, 1e21, 0, {0}, 0, {0}},
    {BG_GAUGE, "tiny", "tiny", NULL, 0, {0}, -1.25e-7, 0, {0}, 0, {0}},
    {BG_GAUGE, "nan_value", "nan_value", NULL, 0, {0}, NAN, 0, {0}, 0, {0}},
    {BG_GAUGE, "inf_value", "inf_value", NULL, 1, {"sign", "+"}, INFINITY, 0, {0}, 0, {0}},
    {BG_GAUGE, "inf_value", "inf_value", NULL, 1, {"sign", "-"}, -INFINITY, 0, {0}, 0, {0}},
    {BG_HISTOGRAM,
     "latency_seconds",
     "latency_seconds",
     "Latency.\nIn s\\.",
     1,
     {"endpoint", "/x y"},
     0,
     4,
     {0.05, 0.3, 0.3, 2},
     3,
     {0.1, 0.5, 1}},
    {BG_HISTOGRAM,
     "latency_seconds",
     "latency_seconds",
     NULL,
     1,
     {"endpoint", "/z"},
     0,
     0,
     {0},
     3,
     {0.1, 0.5, 1}},
    {BG_HISTOGRAM, "inf_hist", "inf_hist", NULL, 0, {0}, 0, 2, {0.5, INFINITY}, 1, {1}},
    {BG_GAUGE,
     "wide",
     "wide",
     NULL,
     16,
     {"l00", "v0",  "l01", "v1",  "l02", "v2",  "l03", "v3",  "l04", "v4",  "l05",
      "v5",  "l06", "v6",  "l07", "v7",  "l08", "v8",  "l09", "v9",  "l10", "v10",
      "l11", "v11", "l12", "v12", "l13", "v13", "l14", "v14", "l15", "v15"},
     7,
     0,
     {0},
     0,
     {0}},
    {BG_GAUGE,
     "trailing",
     "trailing",
     NULL,
     2,
     {"dir", "C:\\temp\\", "name", "x"},
     1,
     0,
     {0},
     0,
     {0}},
};
#define FX_N ((int)(sizeof FX / sizeof FX[0]))

/* ---- the registry and a batch of all of it ------------------------------------------------- */

static bg_registry *fx_registry(void) {
  bg_registry *r = bg_registry_new();
  char err[256];
  for (int i = 0; i < FX_N; i++) {
    const fx_def *d = &FX[i];
    bg_series *s = bg_series_get(r, d->type, d->name, d->help, d->kv, d->nl,
                                 d->nb ? d->bounds : NULL, d->nb, err, sizeof err);
    if (s == NULL) {
      fprintf(stderr, "fixture %s: %s\n", d->name, err);
      exit(1);
    }
    if (d->type == BG_COUNTER) bg_counter_add(s, d->value);
    if (d->type == BG_GAUGE) bg_gauge_set(s, d->value);
    for (int k = 0; k < d->nobs; k++)
      bg_histogram_observe(s, d->obs[k]);
  }
  return r;
}

#define FX_TIME 1764300000.25 /* the snapshot's time: ms 1764300000250 */

/* ---- the Prometheus data model --------------------------------------------------------------- */

typedef struct fx_sample {
  char name[160];
  int nl;
  char k[40][64];
  char v[40][320];
  double value;
  int used;
} fx_sample;

typedef struct fx_set {
  fx_sample *s;
  int n, cap;
} fx_set;

static fx_sample *fx_add(fx_set *set, const char *name, double value) {
  if (set->n == set->cap) {
    set->cap = set->cap ? 2 * set->cap : 64;
    set->s = realloc(set->s, (size_t)set->cap * sizeof *set->s);
  }
  fx_sample *s = &set->s[set->n++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->value = value;
  return s;
}

static void fx_label(fx_sample *s, const char *k, const char *v) {
  if (s->nl == 40) {
    fprintf(stderr, "fx_label: too many labels\n");
    exit(1);
  }
  /* cut to the fixture's sizes (a memcpy: snprintf's truncation warning is an error in CI) */
  size_t kn = strlen(k), vn = strlen(v);
  if (kn >= sizeof s->k[0]) kn = sizeof s->k[0] - 1;
  if (vn >= sizeof s->v[0]) vn = sizeof s->v[0] - 1;
  memcpy(s->k[s->nl], k, kn);
  s->k[s->nl][kn] = '\0';
  memcpy(s->v[s->nl], v, vn);
  s->v[s->nl][vn] = '\0';
  s->nl++;
}

static void fx_free(fx_set *set) {
  free(set->s);
  set->s = NULL;
  set->n = set->cap = 0;
}

/* How a format carries a label: writes the key and value it arrives as into k and v and
 * returns 1, or returns 0 when the format leaves the label out. NULL: as it is. */
typedef int (*fx_label_fn)(const char *k, const char *v, char *ko, char *vo);

typedef struct fx_want {
  const char *prefix;    /* before every name */
  const char *const *kv; /* extra labels, sorted by key */
  int nkv;
  fx_label_fn label;
  int finite_only; /* leave out non-finite values (whole counters and gauges, a sum) */
} fx_want;

static void fx_labels(fx_sample *s, const fx_def *d, const fx_want *w) {
  char ko[320], vo[640];
  for (int i = 0; i < d->nl; i++) {
    if (w->label == NULL || w->label(d->kv[2 * i], d->kv[2 * i + 1], ko, vo))
      fx_label(s, w->label ? ko : d->kv[2 * i], w->label ? vo : d->kv[2 * i + 1]);
  }
  for (int j = 0; j < w->nkv; j++) {
    int own = 0;
    for (int i = 0; i < d->nl; i++)
      own |= strcmp(d->kv[2 * i], w->kv[2 * j]) == 0;
    if (own) continue;
    if (w->label == NULL || w->label(w->kv[2 * j], w->kv[2 * j + 1], ko, vo))
      fx_label(s, w->label ? ko : w->kv[2 * j], w->label ? vo : w->kv[2 * j + 1]);
  }
}

static void fx_bound(char *buf, size_t n, double b) {
  if (isinf(b))
    snprintf(buf, n, "+Inf");
  else
    snprintf(buf, n, "%.17g", b);
}

/* Every sample of FX as the Prometheus data model names it, with w's prefix, extra labels and
 * label mapping. A bucket's le is "%.17g" of its bound ("+Inf"), compared as a number. */
static void fx_expected(fx_set *out, const fx_want *w) {
  char name[200];
  const char *prefix = w->prefix ? w->prefix : "";
  for (int i = 0; i < FX_N; i++) {
    const fx_def *d = &FX[i];
    if (d->type != BG_HISTOGRAM) {
      if (w->finite_only && !isfinite(d->value)) continue;
      snprintf(name, sizeof name, "%s%s%s", prefix, d->expo, d->type == BG_COUNTER ? "_total" : "");
      fx_labels(fx_add(out, name, d->value), d, w);
      continue;
    }
    double sum = 0;
    for (int k = 0; k < d->nobs; k++)
      sum += d->obs[k];
    for (int b = 0; b <= d->nb; b++) {
      double bound = b < d->nb ? d->bounds[b] : INFINITY;
      int cum = 0;
      for (int k = 0; k < d->nobs; k++)
        cum += d->obs[k] <= bound;
      snprintf(name, sizeof name, "%s%s_bucket", prefix, d->expo);
      fx_sample *s = fx_add(out, name, cum);
      fx_labels(s, d, w);
      char le[40];
      fx_bound(le, sizeof le, bound);
      fx_label(s, "le", le);
    }
    if (!w->finite_only || isfinite(sum)) {
      snprintf(name, sizeof name, "%s%s_sum", prefix, d->expo);
      fx_labels(fx_add(out, name, sum), d, w);
    }
    snprintf(name, sizeof name, "%s%s_count", prefix, d->expo);
    fx_labels(fx_add(out, name, d->nobs), d, w);
  }
}

/* ---- comparing ----------------------------------------------------------------------------- */

static int same_value(double a, double b) {
  return a == b || (isnan(a) && isnan(b));
}

/* Label values equal; le compared as numbers (formats spell bounds their own way). */
static int same_label(const char *k, const char *a, const char *b) {
  if (strcmp(a, b) == 0) return 1;
  if (strcmp(k, "le") != 0) return 0;
  char *ea, *eb;
  double x = strtod(a, &ea), y = strtod(b, &eb);
  return *ea == '\0' && *eb == '\0' && x == y;
}

static int same_sample(const fx_sample *g, const fx_sample *w) {
  if (strcmp(g->name, w->name) != 0 || g->nl != w->nl) return 0;
  for (int i = 0; i < w->nl; i++) {
    int found = 0;
    for (int j = 0; j < g->nl && !found; j++)
      found = strcmp(g->k[j], w->k[i]) == 0 && same_label(w->k[i], g->v[j], w->v[i]);
    if (!found) return 0;
  }
  return 1;
}

static void fx_print(const char *what, const fx_sample *s) {
  fprintf(stderr, "  %s %s{", what, s->name);
  for (int i = 0; i < s->nl; i++)
    fprintf(stderr, "%s%s=\"%s\"", i ? "," : "", s->k[i], s->v[i]);
  fprintf(stderr, "} %.17g\n", s->value);
}

/* Every sample wanted is there once with its value, and nothing else is. */
#define FX_CHECK_SAME(got, want) fx_check_same(got, want, __FILE__, __LINE__)
static void fx_check_same(fx_set *got, fx_set *want, const char *file, int line) {
  int bad = 0;
  for (int i = 0; i < got->n; i++)
    got->s[i].used = 0;
  for (int i = 0; i < want->n; i++) {
    fx_sample *w = &want->s[i], *match = NULL;
    for (int j = 0; j < got->n && !match; j++)
      if (!got->s[j].used && same_sample(&got->s[j], w)) match = &got->s[j];
    if (match == NULL) {
      fx_print("missing", w);
      bad++;
      continue;
    }
    match->used = 1;
    if (!same_value(match->value, w->value)) {
      fx_print("got", match);
      fx_print("want", w);
      bad++;
    }
  }
  for (int j = 0; j < got->n; j++)
    if (!got->s[j].used) {
      fx_print("unexpected", &got->s[j]);
      bad++;
    }
  if (bad) {
    fprintf(stderr, "%s:%d: %d samples differ (%d got, %d wanted)\n", file, line, bad, got->n,
            want->n);
    failures++;
  }
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* The registry's snapshot at FX_TIME, as one batch. */
static bg_batch *fx_batch(bg_registry *r) {
  bg_snapshot *snap = bg_snapshot_take(r, FX_TIME);
  bg_batch *b = bg_batch_new(snap, 0, bg_snapshot_size(snap));
  bg_snapshot_unref(snap);
  return b;
}

/* fn's text of b with o; NULL (and a failed check) on an error. The caller frees it. */
static char *fx_encode(bg_encoder fn, const bg_batch *b, bg_encode_opts *o) {
  bg_buf out = {0};
  char err[256] = "";
  int rc = fn(b, o, &out, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "encode failed: %d %s\n", rc, err);
    failures++;
    bg_buf_free(&out);
    return NULL;
  }
  return out.data ? out.data : calloc(1, 1);
}

#endif
