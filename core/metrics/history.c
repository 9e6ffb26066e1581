/* history: series windows in memory, the flush of their rollups, and the query functions.
 *
 * A series is one allocation (struct + label blob "k\0v\0..."); it hangs in a hash table by
 * (metric, labels) for the sampling walk and in its metric's list for queries. Raw samples are
 * a list of sealed tsz chunks plus one open encoder; a chunk is dropped whole once its last
 * sample is older than raw_ms, so between raw_ms and raw_ms + one chunk span is kept.
 *
 * Rollup rows go through three places before SQLite: the accumulator of the minute being
 * filled (acc), `pending` (finished minutes), and `inflight` (handed to a flush). A query
 * reads all of them and the store, and where a minute appears twice the newest copy wins. */
#include "metrics/history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/history_int.h"

static bg_history *default_history;

bg_history *bg_history_default(void) {
  return default_history;
}

void bg_history_set_default(bg_history *h) {
  default_history = h;
}

int64_t bg_history_now(const bg_history *h) {
  return h ? h->now : 0;
}

int64_t bg__floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static uint32_t fnv(uint32_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

/* ---- metrics and series ---------------------------------------------------------------- */

hmetric *bg__metric_find(bg_history *h, const char *name, int create) {
  uint32_t hash = fnv(2166136261u, name, strlen(name));
  for (hmetric *m = h->mtab[hash & (h->mtabsz - 1)]; m; m = m->hnext)
    if (m->hash == hash && strcmp(m->name, name) == 0) return m;
  if (!create) return NULL;
  if (h->nmetrics >= h->mtabsz) {
    size_t nsz = h->mtabsz * 2;
    hmetric **t = calloc(nsz, sizeof *t);
    if (t == NULL) return NULL;
    for (size_t i = 0; i < h->mtabsz; i++)
      for (hmetric *m = h->mtab[i], *nx; m; m = nx) {
        nx = m->hnext;
        m->hnext = t[m->hash & (nsz - 1)];
        t[m->hash & (nsz - 1)] = m;
      }
    free(h->mtab);
    h->mtab = t;
    h->mtabsz = nsz;
  }
  size_t len = strlen(name);
  hmetric *m = calloc(1, sizeof *m + len + 1);
  if (m == NULL) return NULL;
  memcpy(m->name, name, len + 1);
  m->hash = hash;
  m->hnext = h->mtab[hash & (h->mtabsz - 1)];
  h->mtab[hash & (h->mtabsz - 1)] = m;
  h->nmetrics++;
  return m;
}

static uint32_t labels_hash(const hmetric *m, const char *const *kv, int n) {
  uint32_t hash = m->hash;
  for (int i = 0; i < 2 * n; i++)
    hash = fnv(hash, kv[i], strlen(kv[i]) + 1);
  return hash;
}

static int labels_equal(const hseries *s, const char *const *kv, int n) {
  if (s->nlabels != n) return 0;
  const char *p = s->labels;
  for (int i = 0; i < 2 * n; i++) {
    size_t len = strlen(kv[i]);
    if (memcmp(p, kv[i], len + 1) != 0) return 0;
    p += len + 1;
  }
  return 1;
}

static int stab_grow(bg_history *h) {
  size_t nsz = h->stabsz * 2;
  hseries **t = calloc(nsz, sizeof *t);
  if (t == NULL) return BG_ENOMEM;
  for (size_t i = 0; i < h->stabsz; i++)
    for (hseries *s = h->stab[i], *nx; s; s = nx) {
      nx = s->hnext;
      s->hnext = t[s->hash & (nsz - 1)];
      t[s->hash & (nsz - 1)] = s;
    }
  free(h->stab);
  h->stab = t;
  h->stabsz = nsz;
  return 0;
}

/* Finds or creates the series of m with labels kv (sorted by key). NULL when out of memory. */
static hseries *series_find(bg_history *h, hmetric *m, const char *const *kv, int n) {
  uint32_t hash = labels_hash(m, kv, n);
  for (hseries *s = h->stab[hash & (h->stabsz - 1)]; s; s = s->hnext)
    if (s->hash == hash && s->metric == m && labels_equal(s, kv, n)) return s;
  if (h->nseries >= h->stabsz && stab_grow(h) != 0) return NULL;
  size_t len = 0;
  for (int i = 0; i < 2 * n; i++)
    len += strlen(kv[i]) + 1;
  hseries *s = calloc(1, sizeof *s + len);
  if (s == NULL) return NULL;
  char *p = s->labels;
  for (int i = 0; i < 2 * n; i++) {
    size_t l = strlen(kv[i]) + 1;
    memcpy(p, kv[i], l);
    p += l;
  }
  s->labels_len = (uint32_t)len;
  s->nlabels = (uint16_t)n;
  s->id = ++h->next_id;
  s->metric = m;
  s->hash = hash;
  s->last = INT64_MIN;
  bg_tsz_init(&s->open);
  s->hnext = h->stab[hash & (h->stabsz - 1)];
  h->stab[hash & (h->stabsz - 1)] = s;
  if (m->tail)
    m->tail->next = s;
  else
    m->head = s;
  m->tail = s;
  h->nseries++;
  return s;
}

/* The label pairs of s as pointers into its blob. kv holds 2 * BG_METRICS_MAX_LABELS. */
int bg__series_kv(const hseries *s, const char **kv, int max) {
  const char *p = s->labels;
  int n = s->nlabels < max ? s->nlabels : max;
  for (int i = 0; i < 2 * n; i++) {
    kv[i] = p;
    p += strlen(p) + 1;
  }
  return n;
}

/* The text key, name{k="v",...}, into b. */
int bg__series_key(const hseries *s, bg_buf *b) {
  bg_buf_reset(b);
  int rc = bg_buf_puts(b, s->metric->name);
  const char *p = s->labels;
  for (int i = 0; i < s->nlabels && rc == 0; i++) {
    rc |= bg_buf_puts(b, i ? "," : "{");
    rc |= bg_buf_puts(b, p);
    rc |= bg_buf_puts(b, "=\"");
    p += strlen(p) + 1;
    for (; *p && rc == 0; p++) {
      if (*p == '\\' || *p == '"') rc |= bg_buf_append(b, "\\", 1);
      rc |= *p == '\n' ? bg_buf_append(b, "\\n", 2) : bg_buf_append(b, p, 1);
    }
    p++;
    rc |= bg_buf_puts(b, "\"");
  }
  if (s->nlabels && rc == 0) rc = bg_buf_puts(b, "}");
  if (rc == 0) rc = bg_buf_append(b, "", 1);
  return rc;
}

/* Parses a text key into name and label pairs (pointers into buf, which it rewrites). */
static int key_parse(char *buf, const char **name, const char **kv, int *n) {
  char *p = strchr(buf, '{');
  *name = buf;
  *n = 0;
  if (p == NULL) return buf[0] ? 0 : BG_EINVAL;
  *p++ = '\0';
  while (*p && *p != '}') {
    if (*n == BG_METRICS_MAX_LABELS) return BG_EINVAL;
    char *eq = strstr(p, "=\"");
    if (eq == NULL) return BG_EINVAL;
    *eq = '\0';
    kv[2 * *n] = p;
    char *r = eq + 2, *w = r;
    kv[2 * *n + 1] = w;
    for (; *r && *r != '"'; r++) {
      if (*r == '\\' && r[1]) {
        r++;
        *w++ = *r == 'n' ? '\n' : *r;
      } else {
        *w++ = *r;
      }
    }
    if (*r != '"') return BG_EINVAL;
    *w = '\0';
    p = r + 1;
    (*n)++;
    if (*p == ',') p++;
  }
  if (*p != '}' || p[1] != '\0') return BG_EINVAL;
  /* label pairs must be sorted for series identity */
  for (int i = 1; i < *n; i++)
    if (strcmp(kv[2 * (i - 1)], kv[2 * i]) >= 0) return BG_EINVAL;
  return 0;
}

/* ---- samples --------------------------------------------------------------------------- */

static int push_row(rowvec *rv, hseries *s, const acc *r, int snapshot) {
  if (rv->n == rv->cap) {
    size_t nc = rv->cap ? rv->cap * 2 : 256;
    prow *p = realloc(rv->v, nc * sizeof *p);
    if (p == NULL) return BG_ENOMEM;
    rv->v = p;
    rv->cap = nc;
  }
  rv->v[rv->n++] = (prow){s, *r, snapshot};
  s->nrows++;
  return 0;
}

static void close_acc(bg_history *h, hseries *s) {
  if (s->dirty && push_row(&h->pending, s, &s->acc, 0) != 0) h->flush_errors++;
  s->acc.count = 0;
  s->dirty = 0;
}

static int seal(hseries *s) {
  size_t bytes = bg_tsz_bytes(s->open.nbits);
  chunk *c = malloc(sizeof *c + bytes);
  if (c == NULL) return BG_ENOMEM;
  c->next = NULL;
  c->t0 = s->open.t0;
  c->t1 = s->open.t;
  c->n = s->open.n;
  c->nbits = s->open.nbits;
  memcpy(c->data, s->open.data, bytes);
  if (s->tail)
    s->tail->next = c;
  else
    s->head = c;
  s->tail = c;
  bg_tsz_free(&s->open);
  return 0;
}

static void drop_old(bg_history *h, hseries *s, int64_t now) {
  int64_t cutoff = now - h->raw_ms;
  while (s->head && s->head->t1 <= cutoff) {
    chunk *c = s->head;
    s->head = c->next;
    if (s->head == NULL) s->tail = NULL;
    free(c);
  }
  if (s->open.n && s->open.t <= cutoff) bg_tsz_free(&s->open);
}

static int add_sample(bg_history *h, hseries *s, int64_t ts, double v) {
  if (ts <= s->last) {
    h->dropped++;
    return 0;
  }
  if (bg_tsz_full(&s->open, ts, h->chunk_n, h->chunk_span) && seal(s) != 0) return BG_ENOMEM;
  if (bg_tsz_append(&s->open, ts, v) != 0) return BG_ENOMEM;
  int64_t minute = bg__floor_div(ts, MINUTE);
  if (s->acc.count && s->acc.minute != minute) close_acc(h, s);
  acc *a = &s->acc;
  if (a->count == 0) {
    *a = (acc){minute, v, v, v, v, 1};
  } else {
    a->min = fmin(a->min, v);
    a->max = fmax(a->max, v);
    a->sum += v;
    a->last = v;
    a->count++;
  }
  s->dirty = 1;
  s->last = ts;
  drop_old(h, s, ts);
  return 0;
}

static void idtab_clear(bg_history *h) {
  if (h->idtab != NULL) memset(h->idtab, 0, h->idcap * sizeof *h->idtab);
  h->nid = 0;
}

static size_t idtab_home(const bg_history *h, uint32_t key) {
  return (key * 2654435761u) & (h->idcap - 1);
}

static hseries *idtab_get(const bg_history *h, uint32_t key) {
  if (h->idtab == NULL) return NULL;
  for (size_t i = idtab_home(h, key);; i = (i + 1) & (h->idcap - 1)) {
    if (h->idtab[i].key == key) return h->idtab[i].s;
    if (h->idtab[i].key == 0) return NULL;
  }
}

/* Best effort: out of memory only means the next sample looks the series up the slow way. */
static void idtab_put(bg_history *h, uint32_t key, hseries *s) {
  if (2 * (h->nid + 1) > h->idcap) {
    size_t cap = h->idcap ? 2 * h->idcap : 256;
    hidslot *old = h->idtab, *t = calloc(cap, sizeof *t);
    if (t == NULL) return;
    size_t oldcap = h->idcap;
    h->idtab = t;
    h->idcap = cap;
    h->nid = 0;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i].key != 0) idtab_put(h, old[i].key, old[i].s);
    free(old);
  }
  size_t i = idtab_home(h, key);
  while (h->idtab[i].key != 0 && h->idtab[i].key != key)
    i = (i + 1) & (h->idcap - 1);
  if (h->idtab[i].key == 0) h->nid++;
  h->idtab[i] = (hidslot){key, s};
}

typedef struct walk_state {
  bg_history *h;
  hmetric *m[2];
  int nm;
  int64_t now;
  int rc;
} walk_state;

static void walk_family(void *ud, const bg_family_view *f) {
  walk_state *w = ud;
  char name[MAX_NAME];
  static const char *const suffix[3][2] = {{"_total", NULL}, {"", NULL}, {"_count", "_sum"}};
  w->nm = 0;
  if (f->type < BG_COUNTER || f->type > BG_HISTOGRAM) return;
  for (int i = 0; i < 2 && suffix[f->type][i]; i++) {
    snprintf(name, sizeof name, "%s%s", f->name, suffix[f->type][i]);
    hmetric *m = bg__metric_find(w->h, name, 1);
    if (m == NULL) {
      w->rc = BG_ENOMEM;
      w->nm = 0;
      return;
    }
    w->m[w->nm++] = m;
  }
}

static void walk_series(void *ud, const bg_family_view *f, const bg_series_view *sv) {
  walk_state *w = ud;
  for (int i = 0; i < w->nm; i++) {
    uint32_t key = sv->id <= UINT32_MAX / 2 - 1 ? 2 * sv->id + (uint32_t)i : 0;
    hseries *s = key ? idtab_get(w->h, key) : NULL;
    if (s == NULL || s->metric != w->m[i]) {
      s = series_find(w->h, w->m[i], sv->kv, sv->nlabels);
      if (s != NULL && key) idtab_put(w->h, key, s);
    }
    double v = f->type == BG_HISTOGRAM && i == 0 ? (double)sv->count : sv->value;
    if (s == NULL || add_sample(w->h, s, w->now, v) != 0) w->rc = BG_ENOMEM;
  }
}

static void free_series(hseries *s) {
  for (chunk *c = s->head, *nx; c; c = nx) {
    nx = c->next;
    free(c);
  }
  bg_tsz_free(&s->open);
  free(s);
}

/* Drops raw data of series that stopped being sampled, and forgets a series once it has
 * nothing in memory and its last sample is older than the retention. */
static void sweep(bg_history *h, int64_t now) {
  for (size_t i = 0; i < h->mtabsz; i++)
    for (hmetric *m = h->mtab[i]; m; m = m->hnext) {
      hseries *prev = NULL;
      for (hseries *s = m->head, *nx; s; s = nx) {
        nx = s->next;
        drop_old(h, s, now);
        if (s->head || s->open.n || s->nrows || s->dirty || s->last > now - h->retention_ms ||
            s->last == INT64_MIN) {
          prev = s;
          continue;
        }
        if (prev)
          prev->next = nx;
        else
          m->head = nx;
        if (m->tail == s) m->tail = prev;
        hseries **pp = &h->stab[s->hash & (h->stabsz - 1)];
        while (*pp != s)
          pp = &(*pp)->hnext;
        *pp = s->hnext;
        h->nseries--;
        free_series(s);
        idtab_clear(h); /* it may hold s */
      }
    }
}

int bg_history_sample(bg_history *h, bg_registry *r, int64_t now_ms) {
  walk_state w = {h, {NULL, NULL}, 0, now_ms, 0};
  h->walked_valid = 0;
  if (now_ms > h->now) h->now = now_ms;
  if (h->id_registry != r) {
    idtab_clear(h);
    h->id_registry = r;
  }
  bg_registry_walk(r, walk_family, walk_series, &w);
  if (now_ms - h->last_sweep >= SWEEP_MS) {
    sweep(h, now_ms);
    h->last_sweep = now_ms;
  }
  return w.rc;
}

int bg_history_append(bg_history *h, const char *key, int64_t ts_ms, double v) {
  size_t len = strlen(key);
  char buf[2048];
  if (len >= sizeof buf) return BG_EINVAL;
  memcpy(buf, key, len + 1);
  const char *name, *kv[2 * BG_METRICS_MAX_LABELS];
  int n;
  if (key_parse(buf, &name, kv, &n) != 0) return BG_EINVAL;
  h->walked_valid = 0;
  hmetric *m = bg__metric_find(h, name, 1);
  hseries *s = m ? series_find(h, m, kv, n) : NULL;
  if (s == NULL) return BG_ENOMEM;
  if (ts_ms > h->now) h->now = ts_ms;
  return add_sample(h, s, ts_ms, v);
}

/* ---- open, flush, close ---------------------------------------------------------------- */

static void load_row(void *ud, const bg__hrow *row) {
  bg_history *h = ud;
  size_t len = strlen(row->key);
  char buf[2048];
  if (len >= sizeof buf) return;
  memcpy(buf, row->key, len + 1);
  const char *name, *kv[2 * BG_METRICS_MAX_LABELS];
  int n;
  if (key_parse(buf, &name, kv, &n) != 0) return;
  hmetric *m = bg__metric_find(h, name, 1);
  hseries *s = m ? series_find(h, m, kv, n) : NULL;
  if (s == NULL) return;
  /* The minute being filled at shutdown goes on filling; the store already has it. */
  s->acc = (acc){row->minute, row->min, row->max, row->sum, row->last, row->count};
  s->dirty = 0;
  s->last = row->minute * MINUTE;
  if (s->last > h->now) h->now = s->last;
}

static void history_free(bg_history *h) {
  for (size_t i = 0; i < h->mtabsz; i++)
    for (hmetric *m = h->mtab[i], *nx; m; m = nx) {
      nx = m->hnext;
      for (hseries *s = m->head, *sn; s; s = sn) {
        sn = s->next;
        free_series(s);
      }
      free(m);
    }
  free(h->mtab);
  free(h->stab);
  free(h->idtab);
  free(h->pending.v);
  free(h->inflight.v);
  free(h->qts);
  free(h->qv);
  bg__hstore_close(h->store);
  if (default_history == h) default_history = NULL;
  free(h);
}

int bg_history_open(bg_history **out, const bg_history_opts *o, char *err, size_t errlen) {
  bg_history_opts d = {0};
  if (o == NULL) o = &d;
  *out = NULL;
  if (o->raw_ms < 0 || o->retention_days < 0 || o->chunk_span_ms < 0) {
    if (err && errlen) snprintf(err, errlen, "history: negative window");
    return BG_EINVAL;
  }
  bg_history *h = calloc(1, sizeof *h);
  if (h == NULL) return BG_ENOMEM;
  h->raw_ms = o->raw_ms ? o->raw_ms : HOUR;
  h->retention_ms = (int64_t)(o->retention_days ? o->retention_days : 30) * 24 * HOUR;
  h->chunk_n = o->chunk_samples ? o->chunk_samples : 120;
  h->chunk_span = o->chunk_span_ms ? o->chunk_span_ms : 30 * MINUTE;
  h->mtabsz = 64;
  h->stabsz = 1024;
  h->mtab = calloc(h->mtabsz, sizeof *h->mtab);
  h->stab = calloc(h->stabsz, sizeof *h->stab);
  if (h->mtab == NULL || h->stab == NULL) {
    history_free(h);
    return BG_ENOMEM;
  }
  int rc = bg__hstore_open(&h->store, o->data_dir, err, errlen);
  if (rc == 0) {
    rc = bg__hstore_load(h->store, load_row, h);
    if (rc != 0 && err && errlen) snprintf(err, errlen, "history: loading rollups failed");
  }
  if (rc != 0) {
    history_free(h);
    return rc;
  }
  *out = h;
  return 0;
}

/* Moves pending rows and snapshots of the filling minutes into inflight and returns their
 * copies with text keys for the store. */
static int batch_prepare(bg_history *h, bg__hrow **rows, size_t *n, int64_t *delete_before) {
  *rows = NULL;
  *n = 0;
  *delete_before = 0;
  for (size_t i = 0; i < h->mtabsz; i++)
    for (hmetric *m = h->mtab[i]; m; m = m->hnext)
      for (hseries *s = m->head; s; s = s->next)
        if (s->dirty && s->acc.count) {
          if (push_row(&h->pending, s, &s->acc, 1) != 0) return BG_ENOMEM;
          s->dirty = 0;
        }
  rowvec t = h->inflight;
  h->inflight = h->pending;
  h->pending = t;
  h->pending.n = 0;
  size_t cnt = h->inflight.n;
  if (cnt == 0) return 0;
  bg__hrow *r = calloc(cnt, sizeof *r);
  if (r == NULL) return BG_ENOMEM;
  bg_buf b = {0};
  for (size_t i = 0; i < cnt; i++) {
    const prow *p = &h->inflight.v[i];
    if (bg__series_key(p->s, &b) != 0 || (r[i].key = strdup(b.data)) == NULL) {
      for (size_t j = 0; j < i; j++)
        free(r[j].key);
      free(r);
      bg_buf_free(&b);
      return BG_ENOMEM;
    }
    r[i].minute = p->r.minute;
    r[i].min = p->r.min;
    r[i].max = p->r.max;
    r[i].sum = p->r.sum;
    r[i].last = p->r.last;
    r[i].count = p->r.count;
  }
  bg_buf_free(&b);
  *rows = r;
  *n = cnt;
  if (h->now - h->last_delete >= HOUR) {
    *delete_before = bg__floor_div(h->now - h->retention_ms, MINUTE);
    h->last_delete = h->now;
  }
  return 0;
}

/* After a write: on success the rows are gone from memory; on failure they go back in front
 * of pending (older first, so a newer copy of the same minute still wins), and a snapshot of
 * a minute still filling marks it dirty again. */
static void batch_finish(bg_history *h, int rc) {
  rowvec *in = &h->inflight;
  if (in->n > 0 || rc != 0) bg__hstore_report(h->store, rc);
  if (rc == 0) {
    for (size_t i = 0; i < in->n; i++)
      in->v[i].s->nrows--;
    h->flushed_rows += in->n;
    in->n = 0;
    return;
  }
  h->flush_errors++;
  for (size_t i = 0; i < in->n; i++) {
    hseries *s = in->v[i].s;
    if (in->v[i].snapshot && s->acc.count && s->acc.minute == in->v[i].r.minute) s->dirty = 1;
  }
  size_t need = in->n + h->pending.n;
  if (need > in->cap) {
    prow *p = realloc(in->v, need * sizeof *p);
    if (p == NULL) { /* cannot keep them: they are lost, and counted */
      for (size_t i = 0; i < in->n; i++)
        in->v[i].s->nrows--;
      in->n = 0;
      return;
    }
    in->v = p;
    in->cap = need;
  }
  memcpy(in->v + in->n, h->pending.v, h->pending.n * sizeof *in->v);
  in->n = need;
  rowvec t = h->pending;
  h->pending = *in;
  *in = t;
  in->n = 0;
}

static void free_rows(bg__hrow *rows, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(rows[i].key);
  free(rows);
}

int bg_history_flush(bg_history *h) {
  if (h->busy) return BG_EBUSY;
  uint64_t t0 = bg_now_ns();
  bg__hrow *rows;
  size_t n;
  int64_t del;
  int rc = batch_prepare(h, &rows, &n, &del);
  if (rc == 0 && (n > 0 || del > 0)) rc = bg__hstore_write(h->store, rows, n, del);
  batch_finish(h, rc);
  free_rows(rows, n);
  h->last_flush_ms = (double)(bg_now_ns() - t0) / 1e6;
  return rc;
}

static void flush_work(uv_work_t *req) {
  flushjob *j = req->data;
  j->rc = bg__hstore_write(j->store, j->rows, j->n, j->delete_before);
}

static void flush_done(uv_work_t *req, int status) {
  flushjob *j = req->data;
  bg_history *h = j->h;
  batch_finish(h, status == 0 ? j->rc : BG_ECANCELED);
  free_rows(j->rows, j->n);
  h->last_flush_ms = (double)(bg_now_ns() - j->t0) / 1e6;
  free(j);
  h->busy = 0;
  if (h->closing) bg_history_close(h);
}

int bg_history_flush_async(bg_history *h, uv_loop_t *loop) {
  if (h->busy) return BG_EBUSY;
  if (bg__hstore_is_memory(h->store)) return bg_history_flush(h);
  flushjob *j = calloc(1, sizeof *j);
  if (j == NULL) return BG_ENOMEM;
  j->t0 = bg_now_ns();
  int rc = batch_prepare(h, &j->rows, &j->n, &j->delete_before);
  if (rc != 0 || (j->n == 0 && j->delete_before == 0)) {
    batch_finish(h, rc);
    free(j);
    return rc;
  }
  j->h = h;
  j->store = h->store;
  j->req.data = j;
  rc = uv_queue_work(loop, &j->req, flush_work, flush_done);
  if (rc != 0) {
    batch_finish(h, rc);
    free_rows(j->rows, j->n);
    free(j);
    return rc;
  }
  h->busy = 1;
  return 0;
}

void bg_history_close(bg_history *h) {
  if (h == NULL) return;
  if (h->busy) {
    h->closing = 1;
    return;
  }
  bg_history_flush(h);
  history_free(h);
}

/* The part of the stats that walks every series and chunk. */
static void walk_stats(const bg_history *h, bg_history_stats *st) {
  size_t mem = 0;
  for (size_t i = 0; i < h->mtabsz; i++)
    for (const hmetric *m = h->mtab[i]; m; m = m->hnext) {
      mem += sizeof *m + strlen(m->name) + 1 + MALLOC_OVERHEAD;
      for (const hseries *s = m->head; s; s = s->next) {
        st->series++;
        mem += sizeof *s + s->labels_len + MALLOC_OVERHEAD;
        for (const chunk *c = s->head; c; c = c->next) {
          st->chunks++;
          st->raw_samples += c->n;
          st->raw_bytes += bg_tsz_bytes(c->nbits);
          mem += sizeof *c + bg_tsz_bytes(c->nbits) + MALLOC_OVERHEAD;
        }
        st->raw_samples += s->open.n;
        st->raw_bytes += bg_tsz_bytes(s->open.nbits);
        if (s->open.data) mem += s->open.cap + MALLOC_OVERHEAD;
      }
    }
  st->mem_bytes = mem;
}

void bg_history_stats_get(bg_history *h, bg_history_stats *st) {
  memset(st, 0, sizeof *st);
  if (h == NULL) return;
  if (!h->walked_valid) {
    memset(&h->walked, 0, sizeof h->walked);
    walk_stats(h, &h->walked);
    h->walked_valid = 1;
  }
  *st = h->walked;
  size_t mem = sizeof *h + MALLOC_OVERHEAD;
  mem += (h->mtabsz + h->stabsz) * sizeof(void *) + 2 * MALLOC_OVERHEAD;
  mem += h->idcap * sizeof *h->idtab + (h->idtab ? MALLOC_OVERHEAD : 0);
  mem += (h->pending.cap + h->inflight.cap) * sizeof(prow) + h->qcap * 16;
  st->mem_bytes += mem;
  st->pending_rows = h->pending.n + h->inflight.n;
  st->dropped = h->dropped;
  st->flushed_rows = h->flushed_rows;
  st->flush_errors = h->flush_errors;
  st->last_flush_ms = h->last_flush_ms;
}
