/* expo: Prometheus text format 0.0.4 over bg_registry_walk. A family's HELP/TYPE lines are
 * written when its first series is, so a family whose series were all removed vanishes. */
#include "expo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* promtool wants HELP on every family; this is what a family created without one says. */
#define DEFAULT_HELP "Metric recorded by beagle."

typedef struct expo_state {
  bg_buf *out;
  int rc;
  int pending; /* family header not written yet */
  bg_family_view fam;
} expo_state;

/* Shortest text that reads back as v: integers without exponent, Prometheus' spellings of
 * the infinities and NaN. buf holds at least 32 bytes. */
static const char *fmt_value(char *buf, size_t len, double v) {
  if (isnan(v)) return "NaN";
  if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";
  if (fabs(v) < 9007199254740992.0 && v == floor(v)) {
    snprintf(buf, len, "%.0f", v);
    return buf;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (prec == 17 || strtod(buf, NULL) == v) break;
  }
  return buf;
}

static void put(expo_state *st, const char *s, size_t n) {
  if (st->rc == 0) st->rc = bg_buf_append(st->out, s, n);
}

static void puts_(expo_state *st, const char *s) {
  put(st, s, strlen(s));
}

/* Escapes backslash and newline (HELP) and, for label values, the double quote. */
static void put_escaped(expo_state *st, const char *s, int quote) {
  const char *run = s;
  for (; *s; s++) {
    const char *esc = NULL;
    if (*s == '\\')
      esc = "\\\\";
    else if (*s == '\n')
      esc = "\\n";
    else if (*s == '"' && quote)
      esc = "\\\"";
    if (esc == NULL) continue;
    put(st, run, (size_t)(s - run));
    puts_(st, esc);
    run = s + 1;
  }
  put(st, run, (size_t)(s - run));
}

static void put_name(expo_state *st, const bg_family_view *f, const char *suffix) {
  puts_(st, f->name);
  puts_(st, suffix);
}

/* {k="v",...} plus an optional le label; nothing when there are no labels at all. */
static void put_labels(expo_state *st, const bg_series_view *s, const char *le) {
  if (s->nlabels == 0 && le == NULL) return;
  puts_(st, "{");
  for (int i = 0; i < s->nlabels; i++) {
    if (i) puts_(st, ",");
    puts_(st, s->kv[2 * i]);
    puts_(st, "=\"");
    put_escaped(st, s->kv[2 * i + 1], 1);
    puts_(st, "\"");
  }
  if (le) {
    if (s->nlabels) puts_(st, ",");
    puts_(st, "le=\"");
    puts_(st, le);
    puts_(st, "\"");
  }
  puts_(st, "}");
}

static void put_sample(expo_state *st, const bg_family_view *f, const char *suffix,
                       const bg_series_view *s, const char *le, const char *value) {
  put_name(st, f, suffix);
  put_labels(st, s, le);
  puts_(st, " ");
  puts_(st, value);
  puts_(st, "\n");
}

static void on_family(void *ud, const bg_family_view *f) {
  expo_state *st = ud;
  st->fam = *f;
  st->pending = 1;
}

static void on_series(void *ud, const bg_family_view *f, const bg_series_view *s) {
  expo_state *st = ud;
  static const char *const types[] = {"counter", "gauge", "histogram"};
  /* In 0.0.4 the family is named as its samples are: a counter's with _total. */
  const char *fsuffix = f->type == BG_COUNTER ? "_total" : "";
  char num[64], le[64];
  if (st->pending) {
    st->pending = 0;
    puts_(st, "# HELP ");
    put_name(st, f, fsuffix);
    puts_(st, " ");
    put_escaped(st, f->help && f->help[0] ? f->help : DEFAULT_HELP, 0);
    puts_(st, "\n# TYPE ");
    put_name(st, f, fsuffix);
    puts_(st, " ");
    puts_(st, types[f->type]);
    puts_(st, "\n");
  }
  if (f->type != BG_HISTOGRAM) {
    put_sample(st, f, fsuffix, s, NULL, fmt_value(num, sizeof num, s->value));
    return;
  }
  uint64_t cum = 0;
  for (int i = 0; i < f->nbuckets; i++) {
    cum += s->bucket_counts[i];
    snprintf(num, sizeof num, "%llu", (unsigned long long)cum);
    put_sample(st, f, "_bucket", s, fmt_value(le, sizeof le, f->buckets[i]), num);
  }
  snprintf(num, sizeof num, "%llu", (unsigned long long)s->count);
  put_sample(st, f, "_bucket", s, "+Inf", num);
  put_sample(st, f, "_sum", s, NULL, fmt_value(le, sizeof le, s->value));
  put_sample(st, f, "_count", s, NULL, num);
}

int bg_expo_prometheus(bg_registry *r, bg_buf *out) {
  expo_state st = {.out = out};
  /* An empty registry still yields a valid (empty) string. */
  st.rc = bg_buf_reserve(out, 0);
  if (st.rc == 0) out->data[out->len] = '\0';
  bg_registry_walk(r, on_family, on_series, &st);
  return st.rc;
}

char *bg_expo_prometheus_string(bg_registry *r, size_t *len) {
  bg_buf b = {0};
  if (r == NULL) r = bg_registry_default();
  if (bg_expo_prometheus(r, &b) != 0) {
    bg_buf_free(&b);
    return NULL;
  }
  if (len) *len = b.len;
  return b.data;
}

void bg_expo_free(void *p) {
  free(p);
}
