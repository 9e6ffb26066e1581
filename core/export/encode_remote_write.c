/* encode_remote_write: a batch as a remote write 1.0 body (see encode_remote_write.h).
 *
 * protobuf-c packs everything; what this file adds is packing each piece once. Every label is
 * packed by protobuf-c as the TimeSeries.labels entry it is (remote_write.proto's LabelField):
 * a series' own labels once for its life (the label cache, keyed by series id), the external
 * labels, a family's __name__ values and a histogram family's le values once per encode (a
 * snapshot keeps a family's series together, sharing their name and bounds pointers). Each
 * TimeSeries then carries its labels and its sample (a SampleField, reused while the value
 * repeats, as buckets do) as protobuf-c unknown fields, bytes protobuf-c writes back verbatim,
 * in the canonical order; the WriteRequest around them is packed by protobuf-c into a scratch
 * buffer and compressed with snappy's block format into out. Against packing the nested
 * structs directly, 2,100 instructions a sample instead of 5,500 (callgrind, the bench's
 * registry), the same bytes. The series and pointer arrays are sized in a first pass, the
 * packed bytes of one encode go into an arena of blocks that never move.
 *
 * libsnappy is C++ (it pulls in libstdc++, ~2 MiB of RSS), so it is dlopen'ed on first use
 * like libcurl in net/fetch.c: an agent without a remote write backend never maps it. */
#include "export/encode_remote_write.h"

#include "remote_write.pb-c.h"

#include <dlfcn.h>
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- snappy ------------------------------------------------------------------------------- */

static struct {
  snappy_status (*compress)(const char *in, size_t n, char *out, size_t *outlen);
  snappy_status (*uncompress)(const char *in, size_t n, char *out, size_t *outlen);
  size_t (*max_compressed_length)(size_t n);
  snappy_status (*uncompressed_length)(const char *in, size_t n, size_t *len);
} sn;

/* Loads libsnappy once. Returns 0 or BG_EIO. */
static int snappy_load(void) {
  static int state; /* 0 not tried, 1 loaded, -1 failed */
  if (state != 0) return state > 0 ? 0 : BG_EIO;
  state = -1;
  void *h = dlopen("libsnappy.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return BG_EIO;
  *(void **)&sn.compress = dlsym(h, "snappy_compress");
  *(void **)&sn.uncompress = dlsym(h, "snappy_uncompress");
  *(void **)&sn.max_compressed_length = dlsym(h, "snappy_max_compressed_length");
  *(void **)&sn.uncompressed_length = dlsym(h, "snappy_uncompressed_length");
  if (!sn.compress || !sn.uncompress || !sn.max_compressed_length || !sn.uncompressed_length)
    return BG_EIO;
  state = 1;
  return 0;
}

int bg_snappy_compress(const void *in, size_t n, bg_buf *out) {
  if (snappy_load() != 0) return BG_EIO;
  size_t cap = sn.max_compressed_length(n);
  if (bg_buf_reserve(out, cap) != 0) return BG_ENOMEM;
  size_t len = cap;
  if (sn.compress(in, n, out->data + out->len, &len) != SNAPPY_OK) return BG_EIO;
  out->len += len;
  out->data[out->len] = '\0';
  return 0;
}

int bg_snappy_uncompress(const void *in, size_t n, bg_buf *out) {
  if (snappy_load() != 0) return BG_EIO;
  size_t len;
  if (sn.uncompressed_length(in, n, &len) != SNAPPY_OK) return BG_EINVAL;
  if (bg_buf_reserve(out, len) != 0) return BG_ENOMEM;
  if (sn.uncompress(in, n, out->data + out->len, &len) != SNAPPY_OK) return BG_EINVAL;
  out->len += len;
  out->data[out->len] = '\0';
  return 0;
}

/* ---- names and values --------------------------------------------------------------------- */

typedef Prometheus__Label Label;
typedef Prometheus__TimeSeries Series;
typedef Prometheus__Sample Sample;

static const Label LABEL_INIT = PROMETHEUS__LABEL__INIT;
static const Series SERIES_INIT = PROMETHEUS__TIME_SERIES__INIT;
static const Sample SAMPLE_INIT = PROMETHEUS__SAMPLE__INIT;

/* The longest le text: "-" 17 digits "." "e-308" and the NUL, rounded up. */
#define LE_MAX 32

/* Suffixes per type; the histogram's in the order its series are written. */
static const char *const SUFFIXES[3][3] = {
    [BG_COUNTER] = {"_total"}, [BG_GAUGE] = {""}, [BG_HISTOGRAM] = {"_bucket", "_sum", "_count"}};
static const int NSUFFIXES[3] = {[BG_COUNTER] = 1, [BG_GAUGE] = 1, [BG_HISTOGRAM] = 3};
#define SUFFIX_MAX sizeof "_bucket"

/* A bucket bound as Prometheus' Go clients write le: strconv.FormatFloat(v, 'g', -1, 64), the
 * fewest digits that read back as v, with an exponent below 1e-4 and from 1e+06 up ("0.005",
 * "1", "250000", "1e+06", "+Inf"). buf holds LE_MAX bytes. */
static void format_le(char *buf, double v) {
  if (isinf(v)) {
    strcpy(buf, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  if (isnan(v)) {
    strcpy(buf, "NaN");
    return;
  }
  int p = 1;
  for (; p < 17; p++) {
    snprintf(buf, LE_MAX, "%.*e", p - 1, v);
    if (strtod(buf, NULL) == v) break;
  }
  if (p == 17) snprintf(buf, LE_MAX, "%.16e", v);
  int x = atoi(strchr(buf, 'e') + 1);
  if (x < -4 || x >= 6) return; /* the %e text is Go's */
  snprintf(buf, LE_MAX, "%.*f", p - 1 - x > 0 ? p - 1 - x : 0, v);
}

/* Prometheus marks a series stale with one NaN (0x7ff0000000000002); no value we send may be
 * read as that, so every NaN goes out as Go's math.NaN(). */
static double wire_value(double v) {
  if (v == v) return v;
  uint64_t bits = 0x7ff8000000000001ULL;
  memcpy(&v, &bits, sizeof v);
  return v;
}

static int label_name_ok(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return 0;
  for (s++; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return 0;
  return 1;
}

static int prefix_ok(const char *s) {
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
          (p > s && *p >= '0' && *p <= '9')))
      return 0;
  return 1;
}

/* The external labels and the prefix, checked the way Prometheus checks its external_labels:
 * a label name it accepts and not reserved (__*), a UTF-8 value. 0 or BG_EINVAL with why. */
static int check_opts(const bg_encode_opts *o, char *err, size_t errlen) {
  for (int i = 0; i < o->nlabels; i++) {
    const char *k = o->labels[2 * i], *v = o->labels[2 * i + 1];
    if (!label_name_ok(k) || strncmp(k, "__", 2) == 0) {
      snprintf(err, errlen, "external label name \"%.64s\" is not a Prometheus label name%s", k,
               strncmp(k, "__", 2) == 0 ? " (names starting with __ are reserved)" : "");
      return BG_EINVAL;
    }
    if (!bg_utf8_valid(v)) {
      snprintf(err, errlen, "external label \"%s\": value is not valid UTF-8", k);
      return BG_EINVAL;
    }
  }
  if (o->prefix && !prefix_ok(o->prefix)) {
    snprintf(err, errlen, "prefix \"%.64s\" is not the start of a Prometheus metric name",
             o->prefix);
    return BG_EINVAL;
  }
  return 0;
}

/* ---- the request ---------------------------------------------------------------------------- */

/* Where the packed labels go: blocks that never move, freed together. */
typedef struct block {
  struct block *next;
  size_t used, cap;
  uint8_t data[];
} block;

#define BLOCK_MIN (64 * 1024)

static void *arena_alloc(block **head, size_t n) {
  n = (n + 7) & ~(size_t)7; /* 8-aligned, for the entries copied there */
  block *b = *head;
  if (b == NULL || b->cap - b->used < n) {
    size_t cap = n > BLOCK_MIN ? n : BLOCK_MIN;
    b = malloc(sizeof *b + cap);
    if (b == NULL) return NULL;
    b->cap = cap;
    b->used = 0;
    b->next = *head;
    *head = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

typedef ProtobufCMessageUnknownField Packed;

/* What one encode allocates: the series and the runs of their fields sized by plan(), the
 * packed labels and samples in the arena as build() makes them. */
typedef struct req {
  Series *ts;
  Series **tsp;
  Packed *labp;       /* every series' labels and sample, one run after another */
  Packed *base;       /* one sample's labels with the external ones merged in... */
  const char **bname; /* ...and their names */
  Packed *ext;        /* the external labels */
  Packed *les;        /* the current histogram family's le labels */
  size_t nts, nlabp, nbase, nles;
  size_t bound; /* at least the packed request's size (build() adds it up) */
  block *arena;
} req;

/* Upper bounds of what build() uses, in r's n* fields; 0 or BG_ENOMEM on overflow. */
static int plan(const bg_batch *b, const bg_encode_opts *o, req *r) {
  size_t n = bg_batch_len(b);
  for (size_t i = 0; i < n; i++) {
    const bg_sample *s = bg_batch_at(b, i);
    size_t nout = s->type == BG_HISTOGRAM ? (size_t)s->nbuckets + 3 : 1;
    size_t nb = (size_t)s->nlabels + (size_t)o->nlabels;
    if (s->type == BG_HISTOGRAM && (size_t)s->nbuckets + 1 > r->nles)
      r->nles = (size_t)s->nbuckets + 1;
    r->nts += nout;
    r->nlabp += nout * (nb + 3);
    if (nb > r->nbase) r->nbase = nb;
    if (r->nlabp > SIZE_MAX / sizeof(Packed) / 2 || r->nts > SIZE_MAX / sizeof(Series) / 2)
      return BG_ENOMEM;
  }
  return 0;
}

static void req_free(req *r) {
  free(r->ts);
  free(r->tsp);
  free(r->labp);
  free(r->base);
  free(r->bname);
  free(r->ext);
  free(r->les);
  while (r->arena) {
    block *next = r->arena->next;
    free(r->arena);
    r->arena = next;
  }
}

static int req_alloc(req *r, int next) {
  r->ts = malloc((r->nts + 1) * sizeof *r->ts);
  r->tsp = malloc((r->nts + 1) * sizeof *r->tsp);
  r->labp = malloc((r->nlabp + 1) * sizeof *r->labp);
  r->base = malloc((r->nbase + 1) * sizeof *r->base);
  r->bname = malloc((r->nbase + 1) * sizeof *r->bname);
  r->ext = malloc(((size_t)next + 1) * sizeof *r->ext);
  r->les = malloc((r->nles + 1) * sizeof *r->les);
  if (!r->ts || !r->tsp || !r->labp || !r->base || !r->bname || !r->ext || !r->les)
    return BG_ENOMEM;
  return 0;
}

/* A series carries its labels and its sample as ready bytes: each packed by protobuf-c as the
 * TimeSeries entry it is (a LabelField or SampleField: field number and length-delimited key,
 * length, the Label or Sample) and described as the unknown field protobuf-c writes back
 * verbatim after that key. So protobuf-c sizes and writes each label once per encode, not
 * three times (its pack sizes every nested message again at each level), labels many series
 * share (external, __name__, le) once per encode, and the series' bytes are in the canonical
 * order (labels, then samples). */
static int packed(req *r, const ProtobufCMessage *m, uint32_t tag, Packed *out) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = arena_alloc(&r->arena, n);
  if (p == NULL) return BG_ENOMEM;
  n = protobuf_c_message_pack(m, p);
  /* p[0] is the key (tag << 3 | length-delimited; one byte for tags 1 and 2), which protobuf-c
   * writes from tag and wire_type */
  out->tag = tag;
  out->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
  out->len = n - 1;
  out->data = p + 1;
  return 0;
}

static int pack_label(req *r, const char *name, const char *value, Packed *out) {
  Label l = LABEL_INIT;
  l.name = (char *)name;
  l.value = (char *)value;
  Prometheus__LabelField f = PROMETHEUS__LABEL_FIELD__INIT;
  f.label = &l;
  return packed(r, &f.base, 1, out);
}

static int pack_sample(req *r, double v, int64_t ms, Packed *out) {
  Sample sm = SAMPLE_INIT;
  sm.value = wire_value(v);
  sm.timestamp = ms;
  Prometheus__SampleField f = PROMETHEUS__SAMPLE_FIELD__INIT;
  f.sample = &sm;
  return packed(r, &f.base, 2, out);
}

/* ---- the label cache ------------------------------------------------------------------- */

/* A series' own labels packed (LabelFields, in the order of its kv without the empty values),
 * kept from one encode to the next by series id: a series' labels never change and its id is
 * never reused (export/batch.h), so after its first batch a series costs no label packing at
 * all. One cache for every instance (external labels, the prefix and __name__ are not in it).
 * An entry not used for CACHE_SWEEP seconds of batch time is freed at the next sweep, so the
 * series removed from the registry go, and a cache miss only costs the packing back.
 * ~80 bytes a series of two labels. Loop thread only, like every encoder; the table is
 * reachable from a static until the process ends. */
typedef struct centry {
  uint64_t hash; /* of its label strings: ids are per registry, so another registry's series
                    of the same id is told apart (it is then packed each time, uncached) */
  uint32_t id;
  uint32_t used;  /* the batch time, seconds, of its last use */
  uint16_t n;     /* labels */
  uint16_t len[]; /* each label's packed length; the bytes follow */
} centry;

#define CACHE_SWEEP 600

static struct {
  centry **slot; /* open addressing, linear probing; NULL is empty */
  size_t cap, count;
  uint32_t swept; /* batch time of the last sweep */
} cache;

static size_t slot_of(uint32_t id, size_t cap) {
  size_t i = (size_t)(id * 2654435761u) & (cap - 1);
  while (cache.slot[i] != NULL && cache.slot[i]->id != id)
    i = (i + 1) & (cap - 1);
  return i;
}

/* A table of cap slots with the entries of the current one used at or after `since` (all
 * when 0); the others are freed. 0 or BG_ENOMEM (the current table stays). */
static int cache_rebuild(size_t cap, uint32_t since) {
  centry **old = cache.slot;
  size_t oldcap = cache.cap;
  centry **slot = calloc(cap, sizeof *slot);
  if (slot == NULL) return BG_ENOMEM;
  cache.slot = slot;
  cache.cap = cap;
  cache.count = 0;
  for (size_t i = 0; old != NULL && i < oldcap; i++) {
    centry *e = old[i];
    if (e == NULL) continue;
    if (since && e->used < since) {
      free(e);
      continue;
    }
    slot[slot_of(e->id, cap)] = e;
    cache.count++;
  }
  free(old);
  return 0;
}

/* At most once per CACHE_SWEEP seconds of batch time: frees the entries not used since the
 * previous sweep. */
static void cache_sweep(uint32_t now) {
  if (cache.swept == 0 || now < cache.swept) cache.swept = now;
  if (now - cache.swept < CACHE_SWEEP || cache.slot == NULL) return;
  size_t cap = cache.cap;
  while (cap > 1024 && cache.count * 8 < cap)
    cap /= 2;
  if (cache_rebuild(cap, cache.swept) == 0) cache.swept = now;
}

size_t bg__encode_remote_write_cached(void) {
  return cache.count;
}

/* FNV-1a over a sample's label strings, the empty values left out. */
static uint64_t labels_hash(const bg_sample *s) {
  uint64_t h = 14695981039346656037ULL;
  for (int k = 0; k < 2 * s->nlabels; k += 2) {
    if (s->kv[k + 1][0] == '\0') continue;
    for (int i = 0; i < 2; i++)
      for (const unsigned char *c = (const unsigned char *)s->kv[k + i];; c++) {
        h = (h ^ *c) * 1099511628211ULL;
        if (*c == '\0') break;
      }
  }
  return h;
}

/* A new entry for s (its labels packed), not in the table; NULL when out of memory. */
static centry *entry_new(const bg_sample *s, uint64_t h, uint32_t now) {
  Label l[BG_METRICS_MAX_LABELS];
  Prometheus__LabelField f[BG_METRICS_MAX_LABELS];
  size_t sz[BG_METRICS_MAX_LABELS], total = 0;
  int n = 0;
  for (int k = 0; k < s->nlabels && n < BG_METRICS_MAX_LABELS; k++) {
    if (s->kv[2 * k + 1][0] == '\0') continue;
    l[n] = LABEL_INIT;
    l[n].name = (char *)s->kv[2 * k];
    l[n].value = (char *)s->kv[2 * k + 1];
    f[n] = (Prometheus__LabelField)PROMETHEUS__LABEL_FIELD__INIT;
    f[n].label = &l[n];
    sz[n] = prometheus__label_field__get_packed_size(&f[n]);
    if (sz[n] > UINT16_MAX) return NULL;
    total += sz[n++];
  }
  centry *e = malloc(sizeof *e + (size_t)n * sizeof e->len[0] + total);
  if (e == NULL) return NULL;
  e->hash = h;
  e->id = s->id;
  e->used = now;
  e->n = (uint16_t)n;
  uint8_t *p = (uint8_t *)(e->len + n);
  for (int k = 0; k < n; k++) {
    e->len[k] = (uint16_t)prometheus__label_field__pack(&f[k], p);
    p += e->len[k];
  }
  return e;
}

/* The packed labels of sample s, marked used at now: the cached entry, made on a miss; for a
 * series of another registry with the same id, a copy in r's arena. NULL when out of memory. */
static const centry *own_labels(req *r, const bg_sample *s, uint32_t now) {
  if (cache.slot == NULL || (cache.count + 1) * 2 > cache.cap) {
    if (cache_rebuild(cache.cap ? cache.cap * 2 : 1024, 0) != 0) return NULL;
  }
  uint64_t h = labels_hash(s);
  size_t i = slot_of(s->id, cache.cap);
  centry *e = cache.slot[i];
  if (e != NULL && e->hash == h) {
    e->used = now;
    return e;
  }
  centry *made = entry_new(s, h, now);
  if (made == NULL || e == NULL) {
    if (made != NULL) {
      cache.slot[i] = made;
      cache.count++;
    }
    return made;
  }
  /* the slot is another registry's series: this one goes in the arena, freed with the request */
  size_t size = sizeof *made + (size_t)made->n * sizeof made->len[0];
  for (int k = 0; k < made->n; k++)
    size += made->len[k];
  centry *copy = arena_alloc(&r->arena, size);
  if (copy != NULL) memcpy(copy, made, size);
  free(made);
  return copy;
}

/* Where a label named name goes among the sorted names[0..n): its index, and in *eq whether
 * names[i] is that name (the caller's label then replaces it). */
static size_t insert_at(const char *const *names, size_t n, const char *name, int *eq) {
  size_t i = 0;
  int c = 1;
  while (i < n && (c = strcmp(names[i], name)) < 0)
    i++;
  *eq = i < n && c == 0;
  return i;
}

/* The state of build() while it walks the batch. */
typedef struct walk {
  req *r;
  size_t its, ilabp;
  int64_t ms;
  uint32_t secs; /* the batch time, for the cache */
  Packed last;   /* the previous series' sample, reused for the same value (buckets repeat) */
  uint64_t last_bits;
  int have_last;
  size_t bound; /* at least the packed request's size */
} walk;

/* One series: base[0..nb) with name (at pn, replacing base[pn] when en) and le (at pl, likewise;
 * NULL for none) put in, and one sample of value v. 0 or BG_ENOMEM. */
static int put_series(walk *w, size_t nb, const Packed *name, size_t pn, int en, const Packed *le,
                      size_t pl, int el, double v) {
  req *r = w->r;
  const Packed *base = r->base;
  Packed *d = r->labp + w->ilabp, *d0 = d;
  memcpy(d, base, pn * sizeof *d);
  d += pn;
  *d++ = *name;
  if (le == NULL) {
    size_t rest = nb - pn - (size_t)en;
    memcpy(d, base + pn + en, rest * sizeof *d);
    d += rest;
  } else {
    size_t mid = pl - pn - (size_t)en; /* pl >= pn: "__name__" < "le" */
    memcpy(d, base + pn + en, mid * sizeof *d);
    d += mid;
    *d++ = *le;
    size_t rest = nb - pl - (size_t)el;
    memcpy(d, base + pl + el, rest * sizeof *d);
    d += rest;
  }
  double wv = wire_value(v);
  uint64_t bits;
  memcpy(&bits, &wv, sizeof bits);
  if (!w->have_last || bits != w->last_bits) {
    if (pack_sample(r, wv, w->ms, &w->last) != 0) return BG_ENOMEM;
    w->last_bits = bits;
    w->have_last = 1;
  }
  *d++ = w->last;
  /* what protobuf-c writes for it: each field's one-byte key (tags 1 and 2) and its bytes,
   * behind the series' own key and length (a varint of at most 5 bytes) */
  size_t size = 6;
  for (const Packed *f = d0; f < d; f++)
    size += 1 + f->len;
  w->bound += size;

  Series *t = &r->ts[w->its];
  *t = SERIES_INIT;
  t->base.unknown_fields = d0;
  t->base.n_unknown_fields = (unsigned)(d - d0);
  r->tsp[w->its++] = t;
  w->ilabp += (size_t)(d - d0);
  return 0;
}

/* The __name__ labels of a family (its suffixes) into names[]. */
static int pack_names(req *r, const bg_encode_opts *o, const char *name, int type,
                      Packed names[3]) {
  size_t plen = o->prefix ? strlen(o->prefix) : 0, nl = strlen(name);
  size_t need = plen + nl + SUFFIX_MAX;
  char buf[512];
  char *full = need <= sizeof buf ? buf : malloc(need);
  if (full == NULL) return BG_ENOMEM;
  int rc = 0;
  for (int k = 0; k < NSUFFIXES[type] && rc == 0; k++) {
    const char *suf = SUFFIXES[type][k];
    if (plen) memcpy(full, o->prefix, plen);
    memcpy(full + plen, name, nl);
    memcpy(full + plen + nl, suf, strlen(suf) + 1);
    rc = pack_label(r, "__name__", full, &names[k]);
  }
  if (full != buf) free(full);
  return rc;
}

/* Fills r (sized by plan) with the series of b. 0 or BG_ENOMEM. */
static int build(const bg_batch *b, const bg_encode_opts *o, req *r) {
  walk w = {.r = r, .ms = bg_batch_time_ms(b)};
  w.secs = w.ms > 0 && w.ms / 1000 < UINT32_MAX ? (uint32_t)(w.ms / 1000) : 1;
  cache_sweep(w.secs);
  size_t n = bg_batch_len(b);
  int rc = 0;
  for (int i = 0; i < o->nlabels && rc == 0; i++)
    rc = pack_label(r, o->labels[2 * i], o->labels[2 * i + 1], &r->ext[i]);
  const char *pname = NULL;
  const double *pbounds = NULL;
  Packed names[3];
  for (size_t i = 0; i < n && rc == 0; i++) {
    const bg_sample *s = bg_batch_at(b, i);
    int type = s->type == BG_COUNTER || s->type == BG_HISTOGRAM ? s->type : BG_GAUGE;
    if (s->name != pname) {
      pname = s->name;
      if ((rc = pack_names(r, o, s->name, type, names)) != 0) break;
    }
    if (type == BG_HISTOGRAM && s->bounds != pbounds) {
      pbounds = s->bounds;
      char le[LE_MAX];
      for (int k = 0; k < s->nbuckets && rc == 0; k++) {
        format_le(le, s->bounds[k]);
        rc = pack_label(r, "le", le, &r->les[k]);
      }
      if (rc == 0) rc = pack_label(r, "le", "+Inf", &r->les[s->nbuckets]);
      if (rc != 0) break;
    }

    /* the series' labels (packed once, cached) merged with the external ones it does not
     * have; both are sorted */
    const centry *e = own_labels(r, s, w.secs);
    if (e == NULL) {
      rc = BG_ENOMEM;
      break;
    }
    const uint8_t *packed_at = (const uint8_t *)(e->len + e->n);
    size_t nb = 0;
    int j = 0, m = 0;
    for (int k = 0; k < s->nlabels && m < e->n; k++) {
      const char *key = s->kv[2 * k];
      if (s->kv[2 * k + 1][0] == '\0') continue; /* Prometheus drops an empty label */
      int c = 1;
      while (j < o->nlabels && (c = strcmp(o->labels[2 * j], key)) < 0) {
        r->bname[nb] = o->labels[2 * j];
        r->base[nb++] = r->ext[j++];
      }
      if (j < o->nlabels && c == 0) j++;
      r->bname[nb] = key;
      r->base[nb++] = (Packed){.tag = 1,
                               .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                               .len = (size_t)e->len[m] - 1,
                               .data = (uint8_t *)packed_at + 1};
      packed_at += e->len[m++];
    }
    for (; j < o->nlabels; j++) {
      r->bname[nb] = o->labels[2 * j];
      r->base[nb++] = r->ext[j];
    }

    int en, el;
    size_t pn = insert_at(r->bname, nb, "__name__", &en);
    if (type != BG_HISTOGRAM) {
      rc = put_series(&w, nb, &names[0], pn, en, NULL, 0, 0, s->value);
      continue;
    }
    size_t pl = insert_at(r->bname, nb, "le", &el);
    uint64_t cum = 0;
    for (int k = 0; k <= s->nbuckets && rc == 0; k++) {
      cum += s->bucket_counts[k];
      rc = put_series(&w, nb, &names[0], pn, en, &r->les[k], pl, el, (double)cum);
    }
    if (rc == 0) rc = put_series(&w, nb, &names[1], pn, en, NULL, 0, 0, s->value);
    if (rc == 0) rc = put_series(&w, nb, &names[2], pn, en, NULL, 0, 0, (double)s->count);
  }
  r->nts = w.its;
  r->bound = w.bound;
  return rc;
}

int bg_encode_remote_write(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                           size_t errlen) {
  int rc = check_opts(o, err, errlen);
  if (rc != 0) return rc;
  if (snappy_load() != 0) {
    snprintf(err, errlen, "libsnappy.so.1 cannot be loaded (apt-get install libsnappy1v5)");
    return BG_EIO;
  }
  req r = {0};
  bg_buf pb = {0};
  /* an external label with an empty value is no label, as in Prometheus */
  bg_encode_opts eo = *o;
  const char **kv = NULL;
  for (int i = 0; i < o->nlabels && kv == NULL; i++)
    if (o->labels[2 * i + 1][0] == '\0') kv = malloc(2 * (size_t)o->nlabels * sizeof *kv);
  if (kv != NULL) {
    eo.labels = kv;
    eo.nlabels = 0;
    for (int i = 0; i < o->nlabels; i++)
      if (o->labels[2 * i + 1][0] != '\0') {
        kv[2 * eo.nlabels] = o->labels[2 * i];
        kv[2 * eo.nlabels++ + 1] = o->labels[2 * i + 1];
      }
  }
  rc = plan(b, &eo, &r);
  if (rc == 0) rc = req_alloc(&r, eo.nlabels);
  if (rc == 0) rc = build(b, &eo, &r);
  if (rc != 0) goto done;

  Prometheus__WriteRequest wr = PROMETHEUS__WRITE_REQUEST__INIT;
  wr.n_timeseries = r.nts;
  wr.timeseries = r.tsp;
  /* the bound instead of protobuf-c's get_packed_size, which would size every series and
   * field once more before pack sizes them again */
  rc = bg_buf_reserve(&pb, r.bound);
  if (rc != 0) goto done;
  pb.len = prometheus__write_request__pack(&wr, (uint8_t *)pb.data);
  rc = bg_snappy_compress(pb.data, pb.len, out);
done:
  req_free(&r);
  bg_buf_free(&pb);
  free(kv);
  return rc;
}
