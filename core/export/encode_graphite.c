/* encode_graphite: a batch as Graphite's plaintext protocol, one `path value seconds\n` line
 * per value (carbon's line receiver, default port 2003).
 *
 * The path is the prefix (its dot-separated nodes), then the metric's name as /metrics shows
 * it (a counter with "_total"), then, for a histogram, what the value is:
 *   counter, gauge   <prefix>.<name>
 *   histogram        <prefix>.<name>.count, .sum, and per bucket .bucket with its upper bound
 *                    (cumulative counts, as Prometheus's le buckets)
 * A path node keeps only [A-Za-z0-9_:-]: any other byte becomes "_", a UTF-8 character one "_".
 *
 * The labels (the series' own and the extra ones, opts->labels, the series' winning on the
 * same key) go one of two ways, by opts->flavor:
 *   "tags" (default)  Graphite 1.1 tags after the path: <path>;k1=v1;k2=v2, a bucket's bound as
 *                     the tag le (";le=0.25", ";le=+Inf"). Tag names lose ; ! ^ = and blanks,
 *                     tag values ; ~ and blanks (each becomes "_"; carbon refuses ; in a value
 *                     and ~ at its start, and splits a line at blanks); UTF-8 is kept. A label
 *                     called "name" is sent as "exported_name" (Graphite's "name" tag is the
 *                     path itself, Prometheus's renaming on a clash).
 *   "path"            folded into the path after the name, key then value, as the Prometheus
 *                     client's GraphiteBridge does: <prefix>.<name>.k1.v1.k2.v2, then for a
 *                     histogram .count, .sum, .bucket.le_<bound> with "." in the bound made
 *                     "_", "+" dropped and +Inf spelt "inf" (le_0_25, le_1e21, le_inf).
 * A label with an empty value is left out (Prometheus reads it as absent; carbon refuses an
 * empty tag value). Counted in opts->skipped: a value that is NaN or infinite (Graphite stores
 * neither; a histogram's sum alone is dropped then), an extra label with an empty name or
 * value, or named "le". The timestamp is the batch's time in whole seconds. */
#include "export/encode_text.h"

#include <math.h>
#include <stdio.h>

#define MAX_PREFIX 256

typedef struct graphite {
  int path;                    /* the "path" flavor */
  char prefix[MAX_PREFIX + 2]; /* sanitised nodes and a trailing ".", or "" */
  size_t plen;
  char ts[BG_NUMFMT_LEN + 4]; /* " <seconds>\n" */
  size_t tslen;
  bg__extra extra;
  const double *bounds; /* the family whose bounds are in le[] */
  char le[BG_METRICS_MAX_BUCKETS + 1][BG_NUMFMT_LEN + 8];
  unsigned char lelen[BG_METRICS_MAX_BUCKETS + 1];
} graphite;

/* What each byte becomes: NODE 0 when a path node keeps it; TAG_KEY and TAG_VALUE 0 when a
 * tag name or value keeps it, else 1 ("_"; NUL too: it ends a scan). */
/* Filled on first use (loop thread only, like every encoder). */
static unsigned char NODE[256], TAG_KEY[256], TAG_VALUE[256];

static void init_tables(void) {
  static int done;
  if (done) return;
  for (int c = 0; c < 256; c++) {
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    NODE[c] = !(alnum || c == '_' || c == ':' || c == '-');
    int blank = c <= ' ' || c == 0x7f;
    TAG_KEY[c] = blank || c == ';' || c == '!' || c == '^' || c == '=';
    TAG_VALUE[c] = blank || c == ';' || c == '~';
  }
  done = 1;
}

/* s[0..n) as one path node; at most n bytes. */
static char *put_node(char *p, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!NODE[c])
      *p++ = (char)c;
    else if ((c & 0xc0) != 0x80) /* a UTF-8 continuation byte joins its lead's "_" */
      *p++ = '_';
  }
  return p;
}

/* s as a tag name or value (tab: TAG_KEY or TAG_VALUE): what carbon refuses or splits on
 * becomes "_"; at most strlen(s) bytes. Runs it keeps are copied whole. */
static char *put_tag(char *p, const char *s, const unsigned char *tab) {
  for (;;) {
    const char *q = s;
    while (!tab[(unsigned char)*q])
      q++;
    p = bg__put(p, s, (size_t)(q - s));
    if (*q == '\0') return p;
    *p++ = '_';
    s = q + 1;
  }
}

static int accept_extra(const char *k, const char *v) {
  return k[0] != '\0' && v[0] != '\0';
}

static int set_prefix(graphite *g, const char *prefix, char *err, size_t errlen) {
  g->plen = 0;
  if (prefix == NULL) return 0;
  if (strlen(prefix) > MAX_PREFIX) return bg__encode_fail(err, errlen, "prefix: over 256 bytes");
  char *p = g->prefix;
  while (*prefix) {
    size_t n = strcspn(prefix, ".");
    char *start = p;
    p = put_node(p, prefix, n);
    if (p > start) *p++ = '.';
    prefix += n + (prefix[n] == '.');
  }
  g->plen = (size_t)(p - g->prefix);
  return 0;
}

/* The bucket bounds of s's family, once per family: "0.25" as a tag value, "le_0_25" as a
 * path node. */
static void set_bounds(graphite *g, const bg_sample *s) {
  if (g->bounds == s->bounds && s->bounds != NULL) return;
  g->bounds = s->bounds;
  for (int i = 0; i <= s->nbuckets; i++) {
    char num[BG_NUMFMT_LEN], *e = bg_fmt_put_double(num, i < s->nbuckets ? s->bounds[i] : INFINITY);
    char *p = g->le[i];
    if (!g->path) {
      p = bg__put(p, ";le=", 4);
      p = bg__put(p, num, (size_t)(e - num));
    } else if (i == s->nbuckets) {
      p = bg__put(p, ".bucket.le_inf", 14);
    } else {
      p = bg__put(p, ".bucket.le_", 11);
      for (const char *q = num; q < e; q++)
        if (*q != '+') *p++ = *q == '.' ? '_' : *q;
    }
    g->lelen[i] = (unsigned char)(p - g->le[i]);
  }
}

/* The labels, as path nodes or as tags. */
static char *put_labels(char *p, const bg_sample *s, const graphite *g) {
  bg__labels m;
  bg__labels_start(&m, s, &g->extra);
  const char *k, *v;
  while (bg__labels_next(&m, &k, &v)) {
    if (v[0] == '\0') continue;
    if (g->path) {
      *p++ = '.';
      p = put_node(p, k, strlen(k));
      *p++ = '.';
      p = put_node(p, v, strlen(v));
    } else {
      *p++ = ';';
      if (k[0] == 'n' && strcmp(k, "name") == 0) p = bg__put(p, "exported_", 9);
      p = put_tag(p, k, TAG_KEY);
      *p++ = '=';
      p = put_tag(p, v, TAG_VALUE);
    }
  }
  return p;
}

/* The end of one line: " <value> <seconds>\n". */
static char *put_value(char *p, const graphite *g, double v) {
  *p++ = ' ';
  p = bg_fmt_put_double(p, v);
  return bg__put(p, g->ts, g->tslen);
}

static char *put_count(char *p, const graphite *g, uint64_t v) {
  *p++ = ' ';
  p = bg_fmt_put_u64(p, v);
  return bg__put(p, g->ts, g->tslen);
}

/* One series. Its first line writes the head (prefix, name and, folded, the labels) and the
 * tags; a histogram's other lines copy them from out->data. */
static char *put_series(char *p, bg_buf *out, const bg_sample *s, graphite *g, size_t *skipped) {
  size_t h0 = (size_t)(p - out->data);
  p = bg__put(p, g->prefix, g->plen);
  p = put_node(p, s->name, strlen(s->name));
  if (s->type == BG_COUNTER) p = bg__put(p, "_total", 6);
  if (g->path) p = put_labels(p, s, g);
  size_t h1 = (size_t)(p - out->data);
  if (s->type != BG_HISTOGRAM) {
    if (!g->path) p = put_labels(p, s, g);
    return put_value(p, g, s->value);
  }
  set_bounds(g, s);
  p = bg__put(p, ".count", 6);
  size_t t0 = (size_t)(p - out->data);
  if (!g->path) p = put_labels(p, s, g);
  size_t t1 = (size_t)(p - out->data);
  p = put_count(p, g, s->count);
  if (isfinite(s->value)) {
    p = bg__put(p, out->data + h0, h1 - h0);
    p = bg__put(p, ".sum", 4);
    p = bg__put(p, out->data + t0, t1 - t0);
    p = put_value(p, g, s->value);
  } else {
    (*skipped)++;
  }
  uint64_t cum = 0;
  for (int i = 0; i <= s->nbuckets; i++) {
    cum += s->bucket_counts[i];
    p = bg__put(p, out->data + h0, h1 - h0);
    if (g->path) {
      p = bg__put(p, g->le[i], g->lelen[i]);
    } else {
      p = bg__put(p, ".bucket", 7);
      p = bg__put(p, out->data + t0, t1 - t0);
      p = bg__put(p, g->le[i], g->lelen[i]);
    }
    p = put_count(p, g, cum);
  }
  return p;
}

int bg_encode_graphite(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                       size_t errlen) {
  graphite g;
  init_tables();
  if (o->flavor == NULL || o->flavor[0] == '\0' || strcmp(o->flavor, "tags") == 0)
    g.path = 0;
  else if (strcmp(o->flavor, "path") == 0)
    g.path = 1;
  else
    return bg__encode_fail(err, errlen, "flavor: \"tags\" or \"path\"");
  int rc = set_prefix(&g, o->prefix, err, errlen);
  if (rc != 0) return rc;
  char *t = g.ts;
  *t++ = ' ';
  t = bg_fmt_put_u64(t, (uint64_t)(bg_batch_time_ms(b) / 1000));
  *t++ = '\n';
  g.tslen = (size_t)(t - g.ts);
  g.bounds = NULL;
  bg__extra_init(&g.extra, o, accept_extra);
  size_t n = bg_batch_len(b);
  for (size_t i = 0; i < n; i++) {
    const bg_sample *s = bg_batch_at(b, i);
    if (s->type != BG_HISTOGRAM && !isfinite(s->value)) {
      o->skipped++;
      continue;
    }
    /* no sanitising lengthens a string; "exported_" is 9 bytes */
    size_t labels = bg__labels_bytes(s, &g.extra) + 12 * (size_t)(s->nlabels + g.extra.n);
    size_t line = g.plen + strlen(s->name) + labels + 3 * BG_NUMFMT_LEN + g.tslen + 32;
    size_t bound =
        s->type == BG_HISTOGRAM ? (size_t)(s->nbuckets + 3) * (line + 2 * labels + 48) : line;
    if (bg_buf_reserve(out, bound) != 0) return BG_ENOMEM;
    char *p = put_series(out->data + out->len, out, s, &g, &o->skipped);
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
  }
  return 0;
}
