/* trace: the tracer, its ids and sampler, the current context, spans and log records (see
 * trace.h; the records' layout is in trace_int.h, batches in trace_batch.c). */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/log.h"
#include "trace/trace_int.h"

#define SLAB_ITEMS 64

typedef struct slab {
  struct slab *next;
  lite items[SLAB_ITEMS];
} slab;

/* The current context lives outside the tracer (there is one per process) so that a hot path
 * elsewhere can test it with one load: bg_histogram_observe's exemplars (trace.h). */
bg_span_ctx bg__trace_cur;

struct bg_tracer {
  uint64_t rng[4];
  uint64_t bound; /* sampled when the trace id's low 63 bits are below it */
  int rec_spans, rec_logs;
  size_t cap_spans, cap_logs;
  uint32_t max_attrs, max_events, max_value_len;
  size_t batch;
  void (*cb)(void *ud);
  void *ud;
  int in_cb;
  int armed[2]; /* per ring: the callback fires once it holds a batch, then after a take */
  lite *free_lite;
  slab *slabs;
  lite *live; /* recording spans begun and not ended (freed at shutdown) */
  rec *pool;
  size_t npool;
  ring rings[2]; /* spans, logs */
  bg_tracer_stats st;
};

static bg_tracer *g_tracer;
static lite dummy; /* what bg_span_begin gives when even a free-list record cannot be had */
static const char default_scope[] = "beagle";

/* ---- ids: xoshiro256** (Blackman and Vigna), seeded once ------------------------------------ */

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t next(uint64_t *s) {
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

static void seed(uint64_t *s) {
  if (getrandom(s, 4 * sizeof *s, 0) != (ssize_t)(4 * sizeof *s)) {
    /* no entropy source: ids need only be unlikely to collide, not secret */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)s;
    for (int i = 0; i < 4; i++) { /* splitmix64 */
      uint64_t z = (x += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      s[i] = z ^ (z >> 31);
    }
  }
  if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1; /* the one state xoshiro cannot leave */
}

/* The ids, inline for bg_span_begin (the exported functions are called through the PLT from
 * inside the library too). */
static inline void new_trace_id(bg_tracer *t, uint8_t out[BG_TRACE_ID_LEN]) {
  uint64_t a, b;
  do {
    a = next(t->rng);
    b = next(t->rng);
  } while ((a | b) == 0);
  memcpy(out, &a, 8);
  memcpy(out + 8, &b, 8);
}

static inline void new_span_id(bg_tracer *t, uint8_t out[BG_SPAN_ID_LEN]) {
  uint64_t a;
  do
    a = next(t->rng);
  while (a == 0);
  memcpy(out, &a, 8);
}

void bg_trace_new_trace_id(bg_tracer *t, uint8_t out[BG_TRACE_ID_LEN]) {
  new_trace_id(t, out);
}

void bg_trace_new_span_id(bg_tracer *t, uint8_t out[BG_SPAN_ID_LEN]) {
  new_span_id(t, out);
}

/* ---- the tracer ------------------------------------------------------------------------------ */

bg_tracer *bg_tracer_default(void) {
  if (g_tracer != NULL) return g_tracer;
  static bg_tracer storage; /* static: making the tracer cannot fail */
  bg_tracer *t = &storage;
  memset(t, 0, sizeof *t);
  seed(t->rng);
  t->cap_spans = t->cap_logs = 2048;
  t->max_attrs = t->max_events = 128;
  t->max_value_len = 4096;
  t->armed[0] = t->armed[1] = 1;
  g_tracer = t;
  bg_tracer_set_ratio(t, 0.01);
  return t;
}

void bg_tracer_set_ratio(bg_tracer *t, double ratio) {
  /* OpenTelemetry's TraceIdRatioBased as the Go SDK has it: the trace id's last 8 bytes, big
   * endian, shifted right once, against ratio * 2^63; the same trace id always gets the same
   * answer at the same ratio, in every SDK that does this */
  if (!(ratio > 0))
    t->bound = 0;
  else if (ratio >= 1)
    t->bound = UINT64_MAX;
  else
    t->bound = (uint64_t)(ratio * 9223372036854775808.0);
}

static void pool_free(bg_tracer *t) {
  for (rec *r = t->pool, *n; r != NULL; r = n) {
    n = (rec *)r->base.next;
    free(r);
  }
  t->pool = NULL;
  t->npool = 0;
}

void bg_tracer_set_recording(bg_tracer *t, int spans, int logs) {
  t->rec_spans = spans != 0;
  t->rec_logs = logs != 0;
  /* no exporter of that signal left: what its buffer holds has nowhere to go */
  if (!t->rec_spans) bg__ring_free(&t->rings[0]);
  if (!t->rec_logs) bg__ring_free(&t->rings[1]);
  if (!t->rec_spans && !t->rec_logs) pool_free(t); /* give the memory back */
}

void bg_tracer_set_capacity(bg_tracer *t, size_t spans, size_t logs) {
  t->cap_spans = spans;
  t->cap_logs = logs;
}

void bg_tracer_set_limits(bg_tracer *t, uint32_t max_attrs, uint32_t max_events,
                          uint32_t max_value_len) {
  t->max_attrs = max_attrs;
  t->max_events = max_events;
  t->max_value_len = max_value_len;
}

void bg_tracer_set_ready_cb(bg_tracer *t, size_t batch, void (*cb)(void *ud), void *ud) {
  t->batch = batch;
  t->cb = cb;
  t->ud = ud;
}

int bg_tracer_ready(const bg_tracer *t) {
  if (t->batch == 0) return 0;
  return t->rings[0].len >= t->batch || t->rings[1].len >= t->batch;
}

void bg_tracer_stats_get(const bg_tracer *t, bg_tracer_stats *out) {
  *out = t->st;
  out->spans_buffered = t->rings[0].len;
  out->logs_buffered = t->rings[1].len;
}

ring *bg__tracer_ring(bg_tracer *t, int logs) {
  return &t->rings[logs != 0];
}

void bg__tracer_rearm(bg_tracer *t, int logs) {
  t->armed[logs != 0] = 1;
}

/* ---- the current context --------------------------------------------------------------------- */

const bg_span_ctx *bg_trace_current(const bg_tracer *t) {
  (void)t;
  return &bg__trace_cur;
}

void bg_trace_swap(bg_tracer *t, const bg_span_ctx *c, bg_span_ctx *prev) {
  (void)t; /* one per process: the current context is bg__trace_cur */
  bg_span_ctx next_ctx = {0};
  if (c != NULL) bg_span_ctx_copy(&next_ctx, c); /* before prev: c may be &bg__trace_cur */
  *prev = bg__trace_cur;
  bg__trace_cur = next_ctx;
}

void bg_trace_restore(bg_tracer *t, bg_span_ctx *c) {
  (void)t;
  bg__tracestate_unref(bg__trace_cur.state);
  bg__trace_cur = *c;
  memset(c, 0, sizeof *c);
}

/* ---- records and their arena ----------------------------------------------------------------- */

static void rec_reset(rec *r) {
  for (arena_blk *b = r->blocks, *n; b != NULL; b = n) {
    n = b->next;
    bg__trace_arena_bytes -= b->cap;
    free(b);
  }
  memset(r, 0, offsetof(rec, attrs_inline));
  r->attrs = r->attrs_inline;
  r->attrs_cap = REC_ATTRS;
  r->ap = (char *)r->inline_mem;
  r->aend = r->ap + sizeof r->inline_mem;
}

static inline rec *rec_new(void) {
  bg_tracer *t = g_tracer;
  rec *r;
  if (t != NULL && t->pool != NULL) {
    r = t->pool;
    t->pool = (rec *)r->base.next;
    t->npool--;
  } else {
    r = malloc(sizeof *r);
    if (r == NULL) return NULL;
    r->blocks = NULL;
  }
  rec_reset(r);
  return r;
}

rec *bg__rec_new(void) {
  return rec_new();
}

static void rec_destroy(rec *r) {
  bg__tracestate_unref(r->base.ctx.state);
  r->base.ctx.state = NULL;
  for (arena_blk *b = r->blocks, *n; b != NULL; b = n) {
    n = b->next;
    bg__trace_arena_bytes -= b->cap;
    free(b);
  }
  r->blocks = NULL;
  r->grown = 0;
}

void bg__rec_free(rec *r) {
  if (r == NULL) return;
  rec_destroy(r);
  bg_tracer *t = g_tracer;
  /* kept up to what the buffers may hold anyway: a steady flow of spans then allocates
   * nothing, and the memory is never more than full buffers take (freed when recording
   * stops) */
  if (t != NULL && t->npool < t->cap_spans + t->cap_logs) {
    r->base.next = (lite *)t->pool;
    t->pool = r;
    t->npool++;
    return;
  }
  free(r);
}

size_t bg__trace_arena_bytes;

void *bg__rec_grow(rec *r, size_t n) {
  size_t cap = n > 2048 ? n : 2048;
  if (r->grown + cap > REC_ARENA_MAX || bg__trace_arena_bytes + cap > TRACE_ARENA_MAX) {
    if (r->grown + n > REC_ARENA_MAX || bg__trace_arena_bytes + n > TRACE_ARENA_MAX) {
      r->dropped_attrs++;
      return NULL;
    }
    cap = n;
  }
  arena_blk *b = malloc(sizeof *b + cap);
  if (b == NULL) return NULL;
  r->grown += cap;
  bg__trace_arena_bytes += cap;
  b->cap = cap;
  b->next = r->blocks;
  r->blocks = b;
  r->ap = (char *)b->data + n;
  r->aend = (char *)b->data + cap;
  return b->data;
}

static inline int ring_push(ring *q, rec *r, size_t cap) {
  if (q->len >= cap) return -1;
  if (q->len == q->alloc) {
    size_t alloc = q->alloc ? q->alloc * 2 : 64;
    rec **a = malloc(alloc * sizeof *a);
    if (a == NULL) return -1;
    for (size_t i = 0; i < q->len; i++)
      a[i] = q->a[(q->head + i) & (q->alloc - 1)];
    free(q->a);
    q->a = a;
    q->alloc = alloc;
    q->head = 0;
  }
  q->a[(q->head + q->len) & (q->alloc - 1)] = r;
  q->len++;
  return 0;
}

int bg__ring_push(ring *q, rec *r, size_t cap) {
  return ring_push(q, r, cap);
}

void bg__ring_free(ring *q) {
  for (size_t i = 0; i < q->len; i++)
    bg__rec_free(q->a[(q->head + i) & (q->alloc - 1)]);
  free(q->a);
  memset(q, 0, sizeof *q);
}

static uint64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* A span's times from the TSC: clock_gettime costs ~26 ns in a KVM guest (kvm-clock), a quarter
 * of a recorded span, and rdtsc ~11. The TSC is extrapolated from the last clock_gettime (the
 * anchor) for at most CLK_WINDOW ticks (~1 ms at 2 GHz) at the rate measured between anchors
 * at least CLK_CAL_NS apart; past the window, or when the TSC went back (a migrated or restored
 * VM), it is read again. So a time is never more than a window's rate error (~1e-4 of 1 ms:
 * ~0.1 us) off the real-time clock, and spans further apart than a window (the usual case
 * outside a burst) each read it as before. Loop thread only, as the tracer. */
#include <x86intrin.h>
#define CLK_WINDOW (1u << 21)
#define CLK_CAL_NS 1000000u
static struct {
  uint64_t tsc, ns;         /* the anchor */
  uint64_t mult;            /* ns per tick in 32.32 fixed point; 0 until measured */
  uint64_t cal_tsc, cal_ns; /* where the rate is measured from */
} clk;

static uint64_t clk_anchor(uint64_t tsc) {
  uint64_t ns = realtime_ns();
  uint64_t after = __rdtsc();
  tsc += (after - tsc) / 2; /* the tick the clock was read at, as near as can be told */
  if (clk.cal_ns != 0 && ns > clk.cal_ns + CLK_CAL_NS && tsc > clk.cal_tsc) {
    double rate = (double)(ns - clk.cal_ns) / (double)(tsc - clk.cal_tsc);
    /* a rate no CPU has (0.05 to 20 GHz) means a jump between the two: measured again */
    clk.mult = rate > 0.05 && rate < 20 ? (uint64_t)(rate * 4294967296.0) : 0;
    clk.cal_ns = 0;
  }
  if (clk.cal_ns == 0 || ns < clk.cal_ns || tsc < clk.cal_tsc ||
      ns - clk.cal_ns > 1000000000u) { /* a new measure from here (none, a jump, or stale) */
    clk.cal_ns = ns;
    clk.cal_tsc = tsc;
  }
  clk.tsc = tsc;
  clk.ns = ns;
  return ns;
}

static inline uint64_t now_ns(void) {
  uint64_t tsc = __rdtsc(), d = tsc - clk.tsc;
  if (clk.mult != 0 && d < CLK_WINDOW) return clk.ns + ((d * clk.mult) >> 32);
  return clk_anchor(tsc);
}
#else
static inline uint64_t now_ns(void) {
  return realtime_ns();
}
#endif

uint64_t bg__trace_now(void) {
  return now_ns();
}

/* After a record went into ring i: tell the exporters once it holds a batch. Not re-entrant:
 * a callback that ends spans itself does not call itself again. */
static void maybe_ready(bg_tracer *t, int i) {
  if (t->cb == NULL || t->batch == 0 || !t->armed[i] || t->rings[i].len < t->batch || t->in_cb)
    return;
  t->armed[i] = 0;
  t->in_cb = 1;
  t->cb(t->ud);
  t->in_cb = 0;
}

/* ---- spans ----------------------------------------------------------------------------------- */

static lite *lite_get(bg_tracer *t) {
  lite *s = t->free_lite;
  if (s == NULL) {
    slab *sl = calloc(1, sizeof *sl); /* live = 0: shutdown tells live ones by it */
    if (sl == NULL) return NULL;
    sl->next = t->slabs;
    t->slabs = sl;
    for (int i = SLAB_ITEMS - 1; i >= 0; i--) {
      sl->items[i].next = s;
      s = &sl->items[i];
    }
  }
  t->free_lite = s->next;
  return s;
}

static inline int has_trace(const bg_span_ctx *c) {
  uint64_t a, b;
  memcpy(&a, c->trace_id, 8);
  memcpy(&b, c->trace_id + 8, 8);
  return (a | b) != 0;
}

static inline int sample_root(const bg_tracer *t, const uint8_t tid[BG_TRACE_ID_LEN]) {
  uint64_t x;
  memcpy(&x, tid + 8, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  x = __builtin_bswap64(x); /* the id's bytes read big endian, as the SDKs do */
#endif
  return (x >> 1) < t->bound;
}

static int valid_kind(int kind) {
  return kind == BG_SPAN_INTERNAL || kind == BG_SPAN_SERVER || kind == BG_SPAN_CLIENT;
}

bg_span *bg_span_begin(bg_tracer *t, const bg_span_ctx *parent, const char *name, size_t name_len,
                       int kind, const char *scope, size_t scope_len) {
  const bg_span_ctx *p = parent != NULL ? parent : &bg__trace_cur;
  bg_span_ctx c;
  int child = has_trace(p);
  if (child) {
    memcpy(c.trace_id, p->trace_id, BG_TRACE_ID_LEN);
    c.flags = p->flags & BG_TRACE_FLAG_SAMPLED;
    c.state = p->state;
  } else {
    new_trace_id(t, c.trace_id);
    c.flags = sample_root(t, c.trace_id) ? BG_TRACE_FLAG_SAMPLED : 0;
    c.state = NULL;
  }
  new_span_id(t, c.span_id);
  c.remote = 0;
  t->st.started++;
  lite *s = NULL;
  rec *r = NULL;
  if (c.flags && t->rec_spans && (r = rec_new()) != NULL) {
    s = &r->base;
    s->pub.recording = 1;
    s->is_rec = 1;
    t->st.sampled++;
    if (child) memcpy(r->parent_span_id, p->span_id, BG_SPAN_ID_LEN);
    r->kind = valid_kind(kind) ? kind : BG_SPAN_INTERNAL;
    r->name = bg__rec_str(r, name != NULL ? name : "", name != NULL ? name_len : 0);
    r->name_len = r->name != NULL ? (uint32_t)name_len : 0;
    if (r->name == NULL) r->name = "";
    if (scope == NULL || (scope_len == 6 && memcmp(scope, default_scope, 6) == 0)) {
      r->scope = default_scope;
      r->scope_len = 6;
    } else if ((r->scope = bg__rec_str(r, scope, scope_len)) != NULL) {
      r->scope_len = (uint32_t)scope_len;
    } else {
      r->scope = default_scope;
      r->scope_len = 6;
    }
    r->start_ns = now_ns();
    s->next = t->live;
    s->prev_live = NULL;
    if (t->live != NULL) t->live->prev_live = s;
    t->live = s;
  } else {
    s = lite_get(t);
    if (s == NULL) return &dummy.pub;
    s->pub.recording = 0;
    s->is_rec = 0;
  }
  s->live = 1;
  bg__tracestate_ref(c.state); /* the span's own */
  s->ctx = c;
  s->prev = bg__trace_cur;     /* moved: the span holds what was current */
  bg__tracestate_ref(c.state); /* the current context's */
  bg__trace_cur = c;
  return &s->pub;
}

const bg_span_ctx *bg_span_context(const bg_span *s) {
  return &((const lite *)s)->ctx;
}

static inline int same_span(const bg_span_ctx *a, const bg_span_ctx *b) {
  return memcmp(a->span_id, b->span_id, BG_SPAN_ID_LEN) == 0 &&
         memcmp(a->trace_id, b->trace_id, BG_TRACE_ID_LEN) == 0;
}

void bg_span_end(bg_tracer *t, bg_span *sp, uint64_t end_ns) {
  lite *s = (lite *)sp;
  if (s == &dummy || !s->live) return;
  s->live = 0;
  s->pub.recording = 0; /* a stale pointer's setters do nothing (REC), whatever holds it */
  if (same_span(&bg__trace_cur, &s->ctx)) {
    bg__tracestate_unref(bg__trace_cur.state);
    bg__trace_cur = s->prev;
  } else {
    bg__tracestate_unref(s->prev.state);
  }
  if (!s->is_rec) {
    bg__tracestate_unref(s->ctx.state);
    s->next = t->free_lite;
    t->free_lite = s;
    return;
  }
  rec *r = (rec *)s;
  if (s->prev_live != NULL)
    s->prev_live->next = s->next;
  else
    t->live = s->next;
  if (s->next != NULL) s->next->prev_live = s->prev_live;
  r->end_ns = end_ns != 0 ? end_ns : now_ns();
  if (end_ns == 0 && r->end_ns < r->start_ns) r->end_ns = r->start_ns; /* a new anchor between */
  if (!t->rec_spans) { /* begun while recording, ended after the last exporter went */
    bg__rec_free(r);
    return;
  }
  if (ring_push(&t->rings[0], r, t->cap_spans) != 0) {
    t->st.spans_dropped++;
    bg__rec_free(r);
    return;
  }
  maybe_ready(t, 0);
}

/* ---- attributes ------------------------------------------------------------------------------ */

static size_t cut(const char *v, size_t n, size_t max) {
  if (n <= max) return n;
  /* not inside a UTF-8 sequence: back to the start of the character that does not fit */
  while (max > 0 && ((unsigned char)v[max] & 0xc0) == 0x80)
    max--;
  return max;
}

typedef struct attrs {
  bg_attr **a;
  uint32_t *n, *cap, *dropped;
} attrs;

/* The slot of key k in the set (the existing one, or a new one); NULL when the set is full
 * (counted) or on ENOMEM. */
static bg_attr *attr_slot(rec *r, attrs set, const char *k, size_t klen, uint32_t max) {
  if (k == NULL || klen == 0) return NULL; /* an empty key is not an attribute */
  bg_attr *a = *set.a;
  for (uint32_t i = 0; i < *set.n; i++)
    if (a[i].klen == klen && memcmp(a[i].key, k, klen) == 0) return &a[i];
  if (*set.n >= max) {
    (*set.dropped)++;
    return NULL;
  }
  if (*set.n == *set.cap) {
    uint32_t cap = *set.cap ? *set.cap * 2 : 4;
    bg_attr *na = bg__rec_alloc(r, cap * sizeof *na);
    if (na == NULL) return NULL;
    if (*set.n > 0) memcpy(na, a, *set.n * sizeof *na);
    *set.a = a = na;
    *set.cap = cap;
  }
  const char *key = bg__rec_str(r, k, klen);
  if (key == NULL) return NULL;
  bg_attr *x = &a[(*set.n)++];
  memset(x, 0, sizeof *x);
  x->key = key;
  x->klen = (uint32_t)klen;
  x->type = BG_ATTR_BOOL; /* until a value is set: never seen with no type */
  return x;
}

static attrs span_set(rec *r) {
  return (attrs){&r->attrs, &r->nattrs, &r->attrs_cap, &r->dropped_attrs};
}

static int event_set(rec *r, attrs *out) {
  if (!r->ev_open) return 0;
  bg_span_event_view *e = &r->events[r->nevents - 1];
  *out = (attrs){(bg_attr **)&e->attrs, &e->nattrs, &r->ev_attrs_cap, &e->dropped_attrs};
  return 1;
}

static uint32_t max_attrs(void) {
  return g_tracer != NULL ? g_tracer->max_attrs : 128;
}

static uint32_t max_len(void) {
  return g_tracer != NULL ? g_tracer->max_value_len : 4096;
}

static void put_str(rec *r, attrs set, const char *k, size_t klen, const char *v, size_t vlen) {
  size_t n = cut(v != NULL ? v : "", v != NULL ? vlen : 0, max_len());
  const char *copy = bg__rec_str(r, v != NULL ? v : "", n);
  if (copy == NULL) return;
  bg_attr *a = attr_slot(r, set, k, klen, max_attrs());
  if (a == NULL) return;
  a->type = BG_ATTR_STRING;
  a->n = (uint32_t)n;
  a->v.s = copy;
}

static void put_num(rec *r, attrs set, const char *k, size_t klen, int type, int64_t i, double d) {
  bg_attr *a = attr_slot(r, set, k, klen, max_attrs());
  if (a == NULL) return;
  a->type = (uint8_t)type;
  a->n = 0;
  if (type == BG_ATTR_DOUBLE)
    a->v.d = d;
  else if (type == BG_ATTR_BOOL)
    a->v.b = i != 0;
  else
    a->v.i = i;
}

#define REC(s) ((s) != NULL && (s)->recording ? (rec *)(s) : NULL)

/* A span attribute's slot as attr_slot gives it, without its generality where a span's first
 * attributes go: the inline array has room and the limit is not reached (the common case: a
 * span's attribute cost half of what Lua pays for a span with two). NULL: use attr_slot. */
static inline bg_attr *span_slot(rec *r, const char *k, size_t klen) {
  uint32_t n = r->nattrs;
  bg_tracer *t = g_tracer;
  if (k == NULL || klen == 0 || n >= r->attrs_cap || t == NULL || n >= t->max_attrs) return NULL;
  bg_attr *a = r->attrs;
  for (uint32_t i = 0; i < n; i++)
    if (a[i].klen == klen && memcmp(a[i].key, k, klen) == 0) return &a[i];
  const char *key = bg__rec_str(r, k, klen);
  if (key == NULL) return NULL;
  bg_attr *x = &a[n];
  r->nattrs = n + 1;
  x->key = key;
  x->klen = (uint32_t)klen;
  x->n = 0;
  x->v.i = 0;
  return x;
}

void bg_span_set_str(bg_span *s, const char *k, size_t klen, const char *v, size_t vlen) {
  rec *r = REC(s);
  if (r == NULL) return;
  size_t max = g_tracer != NULL ? g_tracer->max_value_len : 4096;
  if (v == NULL || vlen > max) { /* the general path: "" for NULL, a value cut */
    put_str(r, span_set(r), k, klen, v, vlen);
    return;
  }
  uint32_t before = r->nattrs;
  bg_attr *a = span_slot(r, k, klen);
  if (a == NULL) {
    put_str(r, span_set(r), k, klen, v, vlen);
    return;
  }
  const char *copy = bg__rec_str(r, v, vlen);
  if (copy == NULL) { /* ENOMEM: as put_str, no new attribute and an old one unchanged */
    r->nattrs = before;
    return;
  }
  a->type = BG_ATTR_STRING;
  a->n = (uint32_t)vlen;
  a->v.s = copy;
}

static void span_put_num(rec *r, const char *k, size_t klen, int type, int64_t i, double d) {
  bg_attr *a = span_slot(r, k, klen);
  if (a == NULL) {
    put_num(r, span_set(r), k, klen, type, i, d);
    return;
  }
  a->type = (uint8_t)type;
  a->n = 0;
  if (type == BG_ATTR_DOUBLE)
    a->v.d = d;
  else if (type == BG_ATTR_BOOL)
    a->v.b = i != 0;
  else
    a->v.i = i;
}

void bg_span_set_int(bg_span *s, const char *k, size_t klen, int64_t v) {
  rec *r = REC(s);
  if (r != NULL) span_put_num(r, k, klen, BG_ATTR_INT, v, 0);
}

void bg_span_set_double(bg_span *s, const char *k, size_t klen, double v) {
  rec *r = REC(s);
  if (r != NULL) span_put_num(r, k, klen, BG_ATTR_DOUBLE, 0, v);
}

void bg_span_set_bool(bg_span *s, const char *k, size_t klen, int v) {
  rec *r = REC(s);
  if (r != NULL) span_put_num(r, k, klen, BG_ATTR_BOOL, v != 0, 0);
}

void bg_span_set_array(bg_span *s, const char *k, size_t klen, int type, size_t n,
                       const char *const *vs, const size_t *vlens, const int64_t *vi,
                       const double *vd) {
  rec *r = REC(s);
  if (r == NULL || type < BG_ATTR_STRING || type > BG_ATTR_DOUBLE) return;
  if ((type == BG_ATTR_STRING && n > 0 && vs == NULL) ||
      ((type == BG_ATTR_INT || type == BG_ATTR_BOOL) && n > 0 && vi == NULL) ||
      (type == BG_ATTR_DOUBLE && n > 0 && vd == NULL) || n > UINT32_MAX)
    return;
  bg_attr *items = bg__rec_alloc(r, (n ? n : 1) * sizeof *items);
  if (items == NULL) return;
  size_t limit = max_len();
  for (size_t i = 0; i < n; i++) {
    bg_attr *x = &items[i];
    memset(x, 0, sizeof *x);
    x->type = (uint8_t)type;
    if (type == BG_ATTR_STRING) {
      const char *v = vs[i] != NULL ? vs[i] : "";
      size_t len = vs[i] != NULL ? (vlens != NULL ? vlens[i] : strlen(v)) : 0;
      len = cut(v, len, limit);
      if ((x->v.s = bg__rec_str(r, v, len)) == NULL) return;
      x->n = (uint32_t)len;
    } else if (type == BG_ATTR_INT) {
      x->v.i = vi[i];
    } else if (type == BG_ATTR_BOOL) {
      x->v.b = vi[i] != 0;
    } else {
      x->v.d = vd[i];
    }
  }
  bg_attr *a = attr_slot(r, span_set(r), k, klen, max_attrs());
  if (a == NULL) return;
  a->type = BG_ATTR_ARRAY;
  a->n = (uint32_t)n;
  a->v.a = items;
}

void bg_span_add_event(bg_span *s, const char *name, size_t name_len, uint64_t time_ns) {
  rec *r = REC(s);
  if (r == NULL) return;
  r->ev_open = 0;
  uint32_t max = g_tracer != NULL ? g_tracer->max_events : 128;
  if (r->nevents >= max) {
    r->dropped_events++;
    return;
  }
  if (r->nevents == r->events_cap) {
    uint32_t cap = r->events_cap ? r->events_cap * 2 : 2;
    bg_span_event_view *e = bg__rec_alloc(r, cap * sizeof *e);
    if (e == NULL) return;
    if (r->nevents > 0) memcpy(e, r->events, r->nevents * sizeof *e);
    r->events = e;
    r->events_cap = cap;
  }
  const char *nm = bg__rec_str(r, name != NULL ? name : "", name != NULL ? name_len : 0);
  if (nm == NULL) return;
  bg_span_event_view *e = &r->events[r->nevents++];
  memset(e, 0, sizeof *e);
  e->name = nm;
  e->name_len = name != NULL ? (uint32_t)name_len : 0;
  e->time_ns = time_ns != 0 ? time_ns : now_ns();
  r->ev_attrs_cap = 0;
  r->ev_open = 1;
}

void bg_span_event_set_str(bg_span *s, const char *k, size_t klen, const char *v, size_t vlen) {
  rec *r = REC(s);
  attrs set;
  if (r != NULL && event_set(r, &set)) put_str(r, set, k, klen, v, vlen);
}

void bg_span_event_set_int(bg_span *s, const char *k, size_t klen, int64_t v) {
  rec *r = REC(s);
  attrs set;
  if (r != NULL && event_set(r, &set)) put_num(r, set, k, klen, BG_ATTR_INT, v, 0);
}

void bg_span_event_set_double(bg_span *s, const char *k, size_t klen, double v) {
  rec *r = REC(s);
  attrs set;
  if (r != NULL && event_set(r, &set)) put_num(r, set, k, klen, BG_ATTR_DOUBLE, 0, v);
}

void bg_span_event_set_bool(bg_span *s, const char *k, size_t klen, int v) {
  rec *r = REC(s);
  attrs set;
  if (r != NULL && event_set(r, &set)) put_num(r, set, k, klen, BG_ATTR_BOOL, v != 0, 0);
}

void bg_span_record_exception(bg_span *s, const char *type, size_t tlen, const char *msg,
                              size_t mlen, const char *stack, size_t slen) {
  if (REC(s) == NULL) return;
  bg_span_add_event(s, "exception", 9, 0);
  if (type != NULL) bg_span_event_set_str(s, "exception.type", 14, type, tlen);
  if (msg != NULL) bg_span_event_set_str(s, "exception.message", 17, msg, mlen);
  if (stack != NULL) bg_span_event_set_str(s, "exception.stacktrace", 20, stack, slen);
}

void bg_span_set_status(bg_span *s, int code, const char *msg, size_t mlen) {
  rec *r = REC(s);
  /* as the OpenTelemetry API has it: Unset is not a change, Ok is final, and only an error
   * carries a description */
  if (r == NULL || r->status == BG_STATUS_OK) return;
  if (code == BG_STATUS_OK) {
    r->status = BG_STATUS_OK;
    r->status_msg = NULL;
    r->status_len = 0;
  } else if (code == BG_STATUS_ERROR) {
    r->status = BG_STATUS_ERROR;
    r->status_msg = NULL;
    r->status_len = 0;
    if (msg != NULL && mlen > 0) {
      size_t n = cut(msg, mlen, max_len());
      if ((r->status_msg = bg__rec_str(r, msg, n)) != NULL) r->status_len = (uint32_t)n;
    }
  }
}

void bg_span_set_kind(bg_span *s, int kind) {
  rec *r = REC(s);
  if (r != NULL && valid_kind(kind)) r->kind = kind;
}

void bg_span_set_name(bg_span *s, const char *name, size_t name_len) {
  rec *r = REC(s);
  if (r == NULL || name == NULL) return;
  const char *nm = bg__rec_str(r, name, name_len);
  if (nm == NULL) return;
  r->name = nm;
  r->name_len = (uint32_t)name_len;
}

/* ---- log records ----------------------------------------------------------------------------- */

void bg_trace_log_record(bg_tracer *t, int level, const char *msg, size_t msg_len,
                         const char *const *kv, const size_t *kvlen, size_t nkv, const char *scope,
                         size_t scope_len) {
  static const int sev[] = {BG_SEV_DEBUG, BG_SEV_INFO, BG_SEV_WARN, BG_SEV_ERROR};
  if (!t->rec_logs || level < bg_log_level() || level < BG_LOG_DEBUG || level > BG_LOG_ERROR)
    return;
  if (t->rings[1].len >= t->cap_logs) { /* dropped before anything is copied */
    t->st.logs_dropped++;
    return;
  }
  rec *r = rec_new();
  if (r == NULL) {
    t->st.logs_dropped++;
    return;
  }
  r->is_log = 1;
  r->severity = sev[level];
  r->start_ns = now_ns();
  if ((r->name = bg__rec_str(r, msg != NULL ? msg : "", msg != NULL ? msg_len : 0)) != NULL)
    r->name_len = msg != NULL ? (uint32_t)msg_len : 0;
  else
    r->name = "";
  if (scope == NULL || (r->scope = bg__rec_str(r, scope, scope_len)) == NULL) {
    r->scope = default_scope;
    r->scope_len = 6;
  } else {
    r->scope_len = (uint32_t)scope_len;
  }
  if (has_trace(&bg__trace_cur)) {
    memcpy(r->base.ctx.trace_id, bg__trace_cur.trace_id, BG_TRACE_ID_LEN);
    memcpy(r->base.ctx.span_id, bg__trace_cur.span_id, BG_SPAN_ID_LEN);
    r->base.ctx.flags = bg__trace_cur.flags;
  }
  attrs set = span_set(r);
  for (size_t i = 0; i < nkv; i++) {
    const char *k = kv[2 * i], *v = kv[2 * i + 1];
    if (k == NULL) continue;
    size_t kl = kvlen != NULL ? kvlen[2 * i] : strlen(k);
    size_t vl = v == NULL ? 0 : kvlen != NULL ? kvlen[2 * i + 1] : strlen(v);
    put_str(r, set, k, kl, v, vl);
  }
  if (ring_push(&t->rings[1], r, t->cap_logs) != 0) {
    t->st.logs_dropped++;
    bg__rec_free(r);
    return;
  }
  t->st.logs_recorded++;
  maybe_ready(t, 1);
}

/* ---- shutdown -------------------------------------------------------------------------------- */

void bg_tracer_shutdown(void) {
  bg_tracer *t = g_tracer;
  if (t == NULL) return;
  bg__tracestate_unref(bg__trace_cur.state);
  memset(&bg__trace_cur, 0, sizeof bg__trace_cur);
  for (slab *sl = t->slabs; sl != NULL; sl = sl->next)
    for (int i = 0; i < SLAB_ITEMS; i++)
      if (sl->items[i].live) {
        bg__tracestate_unref(sl->items[i].ctx.state);
        bg__tracestate_unref(sl->items[i].prev.state);
      }
  for (lite *s = t->live, *n; s != NULL; s = n) {
    n = s->next;
    bg__tracestate_unref(s->prev.state);
    rec_destroy((rec *)s);
    free(s);
  }
  bg__ring_free(&t->rings[0]);
  bg__ring_free(&t->rings[1]);
  g_tracer = NULL; /* from here records are freed, not pooled */
  pool_free(t);
  for (slab *sl = t->slabs, *n; sl != NULL; sl = n) {
    n = sl->next;
    free(sl);
  }
}
