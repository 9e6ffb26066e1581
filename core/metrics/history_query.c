/* history_query: the query functions over core/metrics/history: label matchers, gathering raw
 * samples and minute rollups of a series, and PromQL's rate/increase/<fn>_over_time. */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/history_int.h"

/* ---- queries --------------------------------------------------------------------------- */

enum { M_EQ, M_NE, M_RE, M_NRE };

typedef struct matcher {
  const char *key, *val;
  int op, compiled;
  regex_t re;
} matcher;

static void matchers_free(matcher *ms, int n) {
  for (int i = 0; i < n; i++)
    if (ms[i].compiled) regfree(&ms[i].re);
}

static int matchers_compile(matcher *ms, const char *const *m, int nm, char *err, size_t errlen) {
  for (int i = 0; i < nm; i++) {
    matcher *x = &ms[i];
    const char *spec = m[2 * i + 1];
    x->key = m[2 * i];
    x->compiled = 0;
    if (x->key == NULL || spec == NULL) {
      if (err && errlen)
        snprintf(err, errlen, "matcher %d: label and value must be strings", i + 1);
      matchers_free(ms, i);
      return BG_EINVAL;
    }
    int neg = spec[0] == '!';
    if (neg) spec++;
    if (spec[0] == '~') {
      x->op = neg ? M_NRE : M_RE;
      x->val = spec + 1;
      size_t len = strlen(x->val);
      char *anchored = malloc(len + 5);
      if (anchored == NULL) {
        matchers_free(ms, i);
        return BG_ENOMEM;
      }
      snprintf(anchored, len + 5, "^(%s)$", x->val);
      int rc = regcomp(&x->re, anchored, REG_EXTENDED | REG_NOSUB);
      free(anchored);
      if (rc != 0) {
        char msg[128];
        regerror(rc, NULL, msg, sizeof msg);
        if (err && errlen)
          snprintf(err, errlen, "matcher %s: bad regex \"%s\": %s", x->key, x->val, msg);
        matchers_free(ms, i);
        return BG_EINVAL;
      }
      x->compiled = 1;
    } else {
      x->op = neg ? M_NE : M_EQ;
      x->val = spec[0] == '=' ? spec + 1 : spec;
    }
  }
  return 0;
}

static int series_matches(const hseries *s, const matcher *ms, int nm) {
  if (nm == 0) return 1;
  const char *kv[2 * BG_METRICS_MAX_LABELS];
  int n = bg__series_kv(s, kv, BG_METRICS_MAX_LABELS);
  for (int i = 0; i < nm; i++) {
    const char *v = "";
    for (int j = 0; j < n; j++)
      if (strcmp(kv[2 * j], ms[i].key) == 0) {
        v = kv[2 * j + 1];
        break;
      }
    int ok;
    switch (ms[i].op) {
    case M_EQ:
      ok = strcmp(v, ms[i].val) == 0;
      break;
    case M_NE:
      ok = strcmp(v, ms[i].val) != 0;
      break;
    case M_RE:
      ok = regexec(&ms[i].re, v, 0, NULL, 0) == 0;
      break;
    default:
      ok = regexec(&ms[i].re, v, 0, NULL, 0) != 0;
      break;
    }
    if (!ok) return 0;
  }
  return 1;
}

static int scratch_push(bg_history *h, size_t *n, int64_t ts, double v) {
  if (*n == h->qcap) {
    size_t nc = h->qcap ? h->qcap * 2 : 512;
    int64_t *t = realloc(h->qts, nc * sizeof *t);
    if (t == NULL) return BG_ENOMEM;
    h->qts = t;
    double *d = realloc(h->qv, nc * sizeof *d);
    if (d == NULL) return BG_ENOMEM;
    h->qv = d;
    h->qcap = nc;
  }
  h->qts[*n] = ts;
  h->qv[*n] = v;
  (*n)++;
  return 0;
}

static int iter_into(bg_history *h, bg_tsz_iter *it, int64_t start, int64_t end, size_t *n) {
  int64_t t;
  double v;
  int rc;
  while ((rc = bg_tsz_iter_next(it, &t, &v)) == 1) {
    if (t > end) break;
    if (t > start && scratch_push(h, n, t, v) != 0) return BG_ENOMEM;
  }
  return rc < 0 ? rc : 0;
}

/* The raw samples of s in (start, end] into the scratch arrays. */
static int gather_raw(bg_history *h, const hseries *s, int64_t start, int64_t end, size_t *n) {
  bg_tsz_iter it;
  *n = 0;
  for (const chunk *c = s->head; c; c = c->next) {
    if (c->t1 <= start) continue;
    if (c->t0 > end) return 0;
    bg_tsz_iter_init(&it, c->data, c->nbits, c->n);
    int rc = iter_into(h, &it, start, end, n);
    if (rc != 0) return rc;
  }
  if (s->open.n && s->open.t > start && s->open.t0 <= end) {
    bg_tsz_iter_init(&it, s->open.data, s->open.nbits, s->open.n);
    return iter_into(h, &it, start, end, n);
  }
  return 0;
}

/* Puts r into the minute-sorted rows, replacing a row of the same minute. */
static int rows_put(bg__hrow **rows, size_t *n, size_t *cap, const acc *r) {
  size_t lo = 0, hi = *n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if ((*rows)[mid].minute < r->minute)
      lo = mid + 1;
    else
      hi = mid;
  }
  bg__hrow row = {NULL, r->minute, r->min, r->max, r->sum, r->last, r->count};
  if (lo < *n && (*rows)[lo].minute == r->minute) {
    (*rows)[lo] = row;
    return 0;
  }
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    bg__hrow *p = realloc(*rows, nc * sizeof *p);
    if (p == NULL) return BG_ENOMEM;
    *rows = p;
    *cap = nc;
  }
  memmove(*rows + lo + 1, *rows + lo, (*n - lo) * sizeof **rows);
  (*rows)[lo] = row;
  (*n)++;
  return 0;
}

/* The rollups of s for minutes [from, to]: the store's, then newer copies from memory. */
static int gather_rollups(bg_history *h, const hseries *s, int64_t from, int64_t to,
                          bg__hrow **rows, size_t *n, size_t *cap) {
  bg_buf key = {0};
  *n = 0;
  int rc = bg__series_key(s, &key);
  if (rc == 0) rc = bg__hstore_read(h->store, key.data, from, to, rows, n, cap);
  bg_buf_free(&key);
  const rowvec *vecs[2] = {&h->inflight, &h->pending};
  for (int k = 0; k < 2 && rc == 0; k++)
    for (size_t i = 0; i < vecs[k]->n && rc == 0; i++) {
      const prow *p = &vecs[k]->v[i];
      if (p->s == s && p->r.minute >= from && p->r.minute <= to) rc = rows_put(rows, n, cap, &p->r);
    }
  if (rc == 0 && s->acc.count && s->acc.minute >= from && s->acc.minute <= to)
    rc = rows_put(rows, n, cap, &s->acc);
  return rc;
}

/* Prometheus' extrapolatedRate for a counter: resets add the value before them; the result
 * is extrapolated to the range's edges unless the first sample is far from the start (then
 * half an interval), and never below zero at the start. */
static double extrapolated(const int64_t *ts, const double *v, size_t n, int64_t start, int64_t end,
                           int is_rate) {
  double result = v[n - 1] - v[0], lastv = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < lastv) result += lastv;
    lastv = v[i];
  }
  double to_start = (double)(ts[0] - start) / 1000, to_end = (double)(end - ts[n - 1]) / 1000;
  double sampled = (double)(ts[n - 1] - ts[0]) / 1000, avg = sampled / (double)(n - 1);
  if (result > 0 && v[0] >= 0) {
    double to_zero = sampled * (v[0] / result);
    if (to_zero < to_start) to_start = to_zero;
  }
  double threshold = avg * 1.1, interval = sampled;
  interval += to_start < threshold ? to_start : avg / 2;
  interval += to_end < threshold ? to_end : avg / 2;
  result *= interval / sampled;
  return is_rate ? result / ((double)(end - start) / 1000) : result;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  if (isnan(x) || isnan(y)) return isnan(x) - isnan(y);
  return x < y ? -1 : x > y;
}

/* PromQL's quantile: linear interpolation between the closest ranks. Sorts v. */
static double quantile(double q, double *v, size_t n) {
  if (isnan(q)) return NAN;
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  qsort(v, n, sizeof *v, cmp_double);
  double rank = q * (double)(n - 1);
  size_t lo = (size_t)rank, hi = lo + 1 < n ? lo + 1 : lo;
  double w = rank - floor(rank);
  return v[lo] * (1 - w) + v[hi] * w;
}

static double mean_of(const double *v, size_t n) {
  double a = 0;
  for (size_t i = 0; i < n; i++)
    a += v[i];
  return a / (double)n;
}

static double stddev_of(const double *v, size_t n) {
  double m = mean_of(v, n), a = 0;
  for (size_t i = 0; i < n; i++)
    a += (v[i] - m) * (v[i] - m);
  return sqrt(a / (double)n);
}

/* The anomaly score of v[n-1] against v[0..n-1). Sorts the earlier samples for MAD. */
static int score(int fn, double min_n, double *v, size_t n, double *out) {
  size_t need = min_n > 3 ? (size_t)min_n : 3;
  if (n < need + 1) return 0;
  double last = v[n - 1];
  size_t m = n - 1;
  if (fn == BG_HQ_ZSCORE) {
    double sd = stddev_of(v, m);
    *out = sd > 0 ? (last - mean_of(v, m)) / sd : (last == mean_of(v, m) ? 0 : INFINITY);
  } else if (fn == BG_HQ_MADSCORE) {
    double med = quantile(0.5, v, m); /* sorts v[0..m) only */
    for (size_t i = 0; i < m; i++)
      v[i] = fabs(v[i] - med);
    double mad = quantile(0.5, v, m) * 1.4826;
    *out = mad > 0 ? (last - med) / mad : (last == med ? 0 : INFINITY);
  } else {
    const double alpha = 0.3;
    double ew = v[0], var = 0;
    for (size_t i = 1; i < m; i++) {
      double d = v[i] - ew;
      ew += alpha * d;
      var = (1 - alpha) * (var + alpha * d * d);
    }
    double sd = sqrt(var);
    *out = sd > 0 ? (last - ew) / sd : (last == ew ? 0 : INFINITY);
  }
  if (*out == INFINITY && last < v[0]) *out = -INFINITY;
  return 1;
}

/* fn over n samples; 1 and *out when there is a value. */
static int eval_samples(int fn, double arg, const int64_t *ts, double *v, size_t n, int64_t start,
                        int64_t end, double *out) {
  if (n == 0) return 0;
  double acc0 = 0;
  switch (fn) {
  case BG_HQ_RATE:
  case BG_HQ_INCREASE:
    if (n < 2) return 0;
    *out = extrapolated(ts, v, n, start, end, fn == BG_HQ_RATE);
    return 1;
  case BG_HQ_AVG:
  case BG_HQ_SUM:
    for (size_t i = 0; i < n; i++)
      acc0 += v[i];
    *out = fn == BG_HQ_AVG ? acc0 / (double)n : acc0;
    return 1;
  case BG_HQ_MIN:
  case BG_HQ_MAX:
    acc0 = v[0];
    for (size_t i = 1; i < n; i++)
      if (isnan(acc0) || (fn == BG_HQ_MIN ? v[i] < acc0 : v[i] > acc0)) acc0 = v[i];
    *out = acc0;
    return 1;
  case BG_HQ_COUNT:
    *out = (double)n;
    return 1;
  case BG_HQ_QUANTILE:
    *out = quantile(arg, v, n);
    return 1;
  case BG_HQ_STDDEV:
    *out = stddev_of(v, n);
    return 1;
  case BG_HQ_ZSCORE:
  case BG_HQ_MADSCORE:
  case BG_HQ_EWMASCORE:
    return score(fn, arg, v, n, out);
  default:
    *out = v[n - 1];
    return 1;
  }
}

/* fn over minute rollups. Rate reads each minute's last value (and, around a reset inside a
 * minute, its max and min) as samples; quantile works on the per-minute means. */
static int eval_rollups(bg_history *h, int fn, double arg, const bg__hrow *r, size_t n,
                        int64_t start, int64_t end, double *out) {
  if (n == 0) return 0;
  double sum = 0, x;
  uint64_t count = 0;
  size_t m = 0;
  switch (fn) {
  case BG_HQ_COUNT:
  case BG_HQ_SUM:
  case BG_HQ_AVG:
    for (size_t i = 0; i < n; i++) {
      sum += r[i].sum;
      count += r[i].count;
    }
    if (count == 0) return 0;
    *out = fn == BG_HQ_COUNT ? (double)count : fn == BG_HQ_SUM ? sum : sum / (double)count;
    return 1;
  case BG_HQ_MIN:
  case BG_HQ_MAX:
    x = fn == BG_HQ_MIN ? r[0].min : r[0].max;
    for (size_t i = 1; i < n; i++) {
      double y = fn == BG_HQ_MIN ? r[i].min : r[i].max;
      if (isnan(x) || (fn == BG_HQ_MIN ? y < x : y > x)) x = y;
    }
    *out = x;
    return 1;
  case BG_HQ_LAST:
    *out = r[n - 1].last;
    return 1;
  case BG_HQ_QUANTILE:
  case BG_HQ_STDDEV:
  case BG_HQ_ZSCORE:
  case BG_HQ_MADSCORE:
  case BG_HQ_EWMASCORE:
    for (size_t i = 0; i < n; i++)
      if (r[i].count && scratch_push(h, &m, r[i].minute * MINUTE, r[i].sum / (double)r[i].count))
        return BG_ENOMEM;
    return eval_samples(fn, arg, h->qts, h->qv, m, start, end, out);
  default:
    for (size_t i = 0; i < n; i++) {
      int64_t t = r[i].minute * MINUTE;
      int rc = 0;
      if (i == 0 && r[i].count > 1) rc |= scratch_push(h, &m, t, r[i].min);
      if (i > 0 && r[i].min < r[i - 1].last) {
        if (r[i].max > r[i].last) rc |= scratch_push(h, &m, t + 1, r[i].max);
        rc |= scratch_push(h, &m, t + 2, r[i].min);
      }
      rc |= scratch_push(h, &m, t + MINUTE - 1, r[i].last);
      if (rc) return BG_ENOMEM;
    }
    return eval_samples(fn, arg, h->qts, h->qv, m, start, end, out);
  }
}

/* The latest raw sample of s when it lies in (start, end]: the minute accumulator holds it as
 * `last` while that minute fills (add_sample keeps it), and the open chunk ends with it. */
static int latest_in(const hseries *s, int64_t start, int64_t end, double *v) {
  if (s->open.n == 0 || s->open.t != s->last || s->acc.count == 0) return 0;
  if (s->acc.minute != bg__floor_div(s->last, MINUTE)) return 0;
  if (s->last <= start || s->last > end) return 0;
  *v = s->acc.last;
  return 1;
}

typedef struct qitem {
  const hseries *s;
  double v;
} qitem;

static int cmp_item(const void *a, const void *b) {
  const hseries *x = ((const qitem *)a)->s, *y = ((const qitem *)b)->s;
  size_t n = x->labels_len < y->labels_len ? x->labels_len : y->labels_len;
  int c = memcmp(x->labels, y->labels, n);
  return c ? c : (x->labels_len > y->labels_len) - (x->labels_len < y->labels_len);
}

static bg_hq_result *result_build(const hmetric *m, qitem *items, int n) {
  if (n > 1) qsort(items, (size_t)n, sizeof *items, cmp_item);
  size_t nptr = 0, nstr = m ? strlen(m->name) + 1 : 1;
  for (int i = 0; i < n; i++) {
    nptr += 2u * items[i].s->nlabels;
    nstr += items[i].s->labels_len;
  }
  size_t size = sizeof(bg_hq_result) + (size_t)n * sizeof(bg_hq_item) + nptr * sizeof(char *);
  bg_hq_result *r = malloc(size + nstr);
  if (r == NULL) return NULL;
  r->n = n;
  r->items = (bg_hq_item *)(r + 1);
  const char **ptrs = (const char **)(r->items + n);
  char *str = (char *)r + size;
  const char *name = str;
  strcpy(str, m ? m->name : "");
  str += strlen(str) + 1;
  for (int i = 0; i < n; i++) {
    const hseries *s = items[i].s;
    memcpy(str, s->labels, s->labels_len);
    const char *p = str;
    for (int j = 0; j < 2 * s->nlabels; j++) {
      ptrs[j] = p;
      p += strlen(p) + 1;
    }
    r->items[i] = (bg_hq_item){name, ptrs, s->nlabels, s->id, items[i].v};
    ptrs += 2 * s->nlabels;
    str += s->labels_len;
  }
  return r;
}

void bg_hq_result_free(bg_hq_result *r) {
  free(r);
}

static hmetric *metric_resolve(bg_history *h, const char *name) {
  char buf[MAX_NAME];
  size_t len = strlen(name);
  if (len + sizeof "_total" > sizeof buf) return NULL;
  for (size_t i = 0; i <= len; i++)
    buf[i] = name[i] == '.' || name[i] == '-' ? '_' : name[i];
  hmetric *m = bg__metric_find(h, buf, 0);
  if (m != NULL) return m;
  strcpy(buf + len, "_total");
  return bg__metric_find(h, buf, 0);
}

/* What one query does with each series that has a value. */
typedef int (*emit_fn)(void *ctx, const hseries *s, double v);

static int check_args(int fn, const char *name, int64_t range_ms, const char *const *m, int nm,
                      char *err, size_t errlen) {
  if (name == NULL || fn < BG_HQ_RATE || fn > BG_HQ_EWMASCORE) {
    if (err && errlen) snprintf(err, errlen, "history query: bad function or name");
    return BG_EINVAL;
  }
  if (range_ms <= 0) {
    if (err && errlen) snprintf(err, errlen, "history query: range must be positive");
    return BG_EINVAL;
  }
  if (nm < 0 || nm > BG_METRICS_MAX_LABELS || (nm > 0 && m == NULL)) {
    if (err && errlen)
      snprintf(err, errlen, "history query: at most %d matchers", BG_METRICS_MAX_LABELS);
    return BG_EINVAL;
  }
  return 0;
}

/* Evaluates fn for every series of met matching ms, in creation order, calling emit with each
 * value. Returns 0 or an error code. */
static int query_each(bg_history *h, int fn, double arg, const hmetric *met, const matcher *ms,
                      int nm, int64_t end_ms, int64_t range_ms, emit_fn emit, void *ctx) {
  bg__hrow *rows = NULL;
  size_t nrows = 0, rcap = 0;
  int64_t start = end_ms - range_ms;
  int rc = 0;
  for (const hseries *s = met ? met->head : NULL; s && rc == 0; s = s->next) {
    if (!series_matches(s, ms, nm)) continue;
    double v;
    int got;
    if (fn == BG_HQ_LAST && latest_in(s, start, end_ms, &v)) {
      got = 1; /* alert rules ask this of every series each round: no decoding */
    } else if (range_ms <= h->raw_ms) {
      size_t n;
      rc = gather_raw(h, s, start, end_ms, &n);
      got = rc == 0 && eval_samples(fn, arg, h->qts, h->qv, n, start, end_ms, &v);
    } else {
      rc = gather_rollups(h, s, bg__floor_div(start, MINUTE) + 1, bg__floor_div(end_ms, MINUTE),
                          &rows, &nrows, &rcap);
      got = rc == 0 ? eval_rollups(h, fn, arg, rows, nrows, start, end_ms, &v) : 0;
      if (got < 0) rc = got;
    }
    if (rc != 0 || got <= 0) continue;
    rc = emit(ctx, s, v);
  }
  free(rows);
  return rc;
}

typedef struct item_list {
  qitem *items;
  int n, cap;
} item_list;

static int emit_item(void *ctx, const hseries *s, double v) {
  item_list *l = ctx;
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 16;
    qitem *p = realloc(l->items, (size_t)cap * sizeof *p);
    if (p == NULL) return BG_ENOMEM;
    l->items = p;
    l->cap = cap;
  }
  l->items[l->n++] = (qitem){s, v};
  return 0;
}

int bg_history_query(bg_history *h, int fn, double arg, const char *name, const char *const *m,
                     int nm, int64_t end_ms, int64_t range_ms, bg_hq_result **out, char *err,
                     size_t errlen) {
  *out = NULL;
  int rc = h == NULL ? BG_EINVAL : check_args(fn, name, range_ms, m, nm, err, errlen);
  if (rc != 0) return rc;
  matcher ms[BG_METRICS_MAX_LABELS];
  rc = matchers_compile(ms, m, nm, err, errlen);
  if (rc != 0) return rc;
  hmetric *met = metric_resolve(h, name);
  item_list l = {0};
  rc = query_each(h, fn, arg, met, ms, nm, end_ms, range_ms, emit_item, &l);
  matchers_free(ms, nm);
  if (rc == 0 && (*out = result_build(met, l.items, l.n)) == NULL) rc = BG_ENOMEM;
  if (rc != 0 && err && errlen) snprintf(err, errlen, "history query: %s", bg_strerror(rc));
  free(l.items);
  return rc;
}

typedef struct id_list {
  uint32_t *ids;
  double *vals;
  const void **refs;
  int n, cap;
} id_list;

static int emit_id(void *ctx, const hseries *s, double v) {
  id_list *l = ctx;
  if (l->n < l->cap) {
    l->ids[l->n] = s->id;
    l->vals[l->n] = v;
    l->refs[l->n] = s;
  }
  l->n++;
  return 0;
}

int bg_history_query_ids(bg_history *h, int fn, double arg, const char *name, const char *const *m,
                         int nm, int64_t end_ms, int64_t range_ms, uint32_t *ids, double *vals,
                         const void **refs, int cap, char *err, size_t errlen) {
  int rc = h == NULL || cap < 0 ? BG_EINVAL : check_args(fn, name, range_ms, m, nm, err, errlen);
  if (rc != 0) return rc;
  matcher ms[BG_METRICS_MAX_LABELS];
  rc = matchers_compile(ms, m, nm, err, errlen);
  if (rc != 0) return rc;
  id_list l = {ids, vals, refs, 0, cap};
  rc = query_each(h, fn, arg, metric_resolve(h, name), ms, nm, end_ms, range_ms, emit_id, &l);
  matchers_free(ms, nm);
  if (rc != 0) {
    if (err && errlen) snprintf(err, errlen, "history query: %s", bg_strerror(rc));
    return rc;
  }
  return l.n;
}

int bg_history_series_labels(const void *ref, const char **kv, int max) {
  return bg__series_kv(ref, kv, max);
}
