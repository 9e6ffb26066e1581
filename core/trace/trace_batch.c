/* trace_batch: finished spans and log records taken out of the tracer's buffers into
 * reference-counted batches, their numbers for crossing into a plugin state, and a batch as
 * bytes and back (see trace.h). A batch owns its records; they go back to the tracer's pool
 * when it goes. */
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

typedef struct tb {
  int refs;
  uint32_t id; /* 0 until published */
  int logs;
  size_t n;
  rec **r;
} tb;

struct bg_span_batch {
  tb b;
};
struct bg_log_batch {
  tb b;
};

/* ---- numbers: an open-addressing table per kind, as core/export/batch.c has it ------------- */

typedef struct idtab {
  tb **slots;
  size_t cap, used;
  uint32_t next;
} idtab;

static idtab span_ids = {NULL, 0, 0, 1}, log_ids = {NULL, 0, 0, 1};

static tb **id_find_slot(idtab *t, uint32_t id) {
  for (size_t i = (size_t)(id * 2654435761u) & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
    if (t->slots[i] == NULL || t->slots[i]->id == id) return &t->slots[i];
}

static int ids_grow(idtab *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  tb **old = t->slots;
  size_t oldcap = t->cap;
  tb **s = calloc(cap, sizeof *s);
  if (s == NULL) return BG_ENOMEM;
  t->slots = s;
  t->cap = cap;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i] != NULL) *id_find_slot(t, old[i]->id) = old[i];
  free(old);
  return 0;
}

static void id_remove(idtab *t, tb *b) {
  if (b->id == 0 || t->cap == 0) return;
  tb **slot = id_find_slot(t, b->id);
  if (*slot != b) return;
  *slot = NULL;
  t->used--;
  size_t i = (size_t)(slot - t->slots);
  for (size_t j = (i + 1) & (t->cap - 1); t->slots[j] != NULL; j = (j + 1) & (t->cap - 1)) {
    tb *e = t->slots[j];
    t->slots[j] = NULL;
    *id_find_slot(t, e->id) = e;
  }
  if (t->used == 0) { /* nothing published: give the table back */
    free(t->slots);
    t->slots = NULL;
    t->cap = 0;
  }
}

static uint32_t id_publish(idtab *t, tb *b) {
  if (b->id != 0) return b->id;
  if ((t->used + 1) * 2 > t->cap && ids_grow(t) != 0) return 0;
  b->id = t->next++;
  if (t->next == 0) t->next = 1;
  *id_find_slot(t, b->id) = b;
  t->used++;
  return b->id;
}

static tb *id_find(idtab *t, uint32_t id) {
  if (id == 0 || t->cap == 0) return NULL;
  return *id_find_slot(t, id);
}

/* ---- batches --------------------------------------------------------------------------------- */

/* A batch with room for n records (struct bg_span_batch and bg_log_batch are both a tb). */
static tb *tb_new(int logs, size_t n) {
  tb *b = malloc(sizeof(struct bg_span_batch) + (n ? n : 1) * sizeof(rec *));
  if (b == NULL) return NULL;
  b->refs = 1;
  b->id = 0;
  b->logs = logs;
  b->n = 0;
  b->r = (rec **)(void *)((struct bg_span_batch *)b + 1);
  return b;
}

static void tb_unref(tb *b) {
  if (b == NULL || --b->refs > 0) return;
  id_remove(b->logs ? &log_ids : &span_ids, b);
  for (size_t i = 0; i < b->n; i++)
    bg__rec_free(b->r[i]);
  free(b);
}

static tb *take(bg_tracer *t, int logs, size_t max) {
  ring *q = bg__tracer_ring(t, logs);
  size_t n = q->len < max ? q->len : max;
  if (n == 0) return NULL;
  tb *b = tb_new(logs, n);
  if (b == NULL) return NULL;
  for (size_t i = 0; i < n; i++)
    b->r[i] = q->a[(q->head + i) & (q->alloc - 1)];
  b->n = n;
  q->head = (q->head + n) & (q->alloc - 1);
  q->len -= n;
  bg__tracer_rearm(t, logs);
  return b;
}

bg_span_batch *bg_trace_take_spans(bg_tracer *t, size_t max) {
  return (bg_span_batch *)take(t, 0, max);
}

bg_log_batch *bg_trace_take_logs(bg_tracer *t, size_t max) {
  return (bg_log_batch *)take(t, 1, max);
}

size_t bg_span_batch_len(const bg_span_batch *b) {
  return b->b.n;
}

void bg_span_batch_view(const bg_span_batch *b, size_t i, bg_span_view *out) {
  const rec *r = b->b.r[i];
  memset(out, 0, sizeof *out);
  out->ctx = r->base.ctx; /* the tracestate borrowed, as every pointer here */
  memcpy(out->parent_span_id, r->parent_span_id, BG_SPAN_ID_LEN);
  out->kind = r->kind;
  out->status = r->status;
  out->name = r->name;
  out->name_len = r->name_len;
  out->status_msg = r->status_msg != NULL ? r->status_msg : "";
  out->status_len = r->status_len;
  out->scope = r->scope;
  out->scope_len = r->scope_len;
  out->start_ns = r->start_ns;
  out->end_ns = r->end_ns;
  out->attrs = r->attrs;
  out->nattrs = r->nattrs;
  out->dropped_attrs = r->dropped_attrs;
  out->events = r->events;
  out->nevents = r->nevents;
  out->dropped_events = r->dropped_events;
}

void bg_span_batch_ref(bg_span_batch *b) {
  b->b.refs++;
}

void bg_span_batch_unref(bg_span_batch *b) {
  if (b != NULL) tb_unref(&b->b);
}

uint32_t bg_span_batch_id(bg_span_batch *b) {
  return id_publish(&span_ids, &b->b);
}

bg_span_batch *bg_span_batch_find(uint32_t id) {
  return (bg_span_batch *)id_find(&span_ids, id);
}

size_t bg_log_batch_len(const bg_log_batch *b) {
  return b->b.n;
}

void bg_log_batch_view(const bg_log_batch *b, size_t i, bg_log_view *out) {
  const rec *r = b->b.r[i];
  memset(out, 0, sizeof *out);
  out->time_ns = r->start_ns;
  out->severity = r->severity;
  out->body = r->name;
  out->body_len = r->name_len;
  out->scope = r->scope;
  out->scope_len = r->scope_len;
  out->attrs = r->attrs;
  out->nattrs = r->nattrs;
  memcpy(out->trace_id, r->base.ctx.trace_id, BG_TRACE_ID_LEN);
  memcpy(out->span_id, r->base.ctx.span_id, BG_SPAN_ID_LEN);
  out->flags = r->base.ctx.flags;
}

void bg_log_batch_ref(bg_log_batch *b) {
  b->b.refs++;
}

void bg_log_batch_unref(bg_log_batch *b) {
  if (b != NULL) tb_unref(&b->b);
}

uint32_t bg_log_batch_id(bg_log_batch *b) {
  return id_publish(&log_ids, &b->b);
}

bg_log_batch *bg_log_batch_find(uint32_t id) {
  return (bg_log_batch *)id_find(&log_ids, id);
}

/* ---- a batch as bytes, for a buffer spilled to disk ------------------------------------------
 * "BGS1" (spans) or "BGL1" (logs), the count (u32), then per record:
 *   trace id, span id, parent span id (raw bytes), flags, kind, status, severity (u8 each),
 *   start, end (u64), dropped attributes, dropped events (u32), the name (a log's body), the
 *   status message, the scope, the tracestate (u32 length + bytes each), the attributes, then
 *   (spans) the events: u32 count, each name, time (u64), dropped (u32) and attributes.
 * Attributes: u32 count, each key, type (u8) and value: a string, a bool (u8), an int (i64),
 * a double, or an array: item type (u8), u32 count, the items' values.
 * Native byte order: the bytes are read back by the same machine. Everything read is checked
 * against the bytes left before anything is allocated for it, so that corrupt lengths fail
 * instead of allocating. */

#define SPAN_MAGIC "BGS1"
#define LOG_MAGIC "BGL1"

static int put(bg_buf *o, const void *p, size_t n) {
  return bg_buf_append(o, p, n);
}

static int put_u8(bg_buf *o, unsigned v) {
  uint8_t x = (uint8_t)v;
  return put(o, &x, 1);
}

static int put_u32(bg_buf *o, uint32_t v) {
  return put(o, &v, sizeof v);
}

static int put_s(bg_buf *o, const char *s, uint32_t n) {
  int rc = put_u32(o, n);
  return rc | (n > 0 ? put(o, s, n) : 0);
}

static int put_value(bg_buf *o, const bg_attr *a) {
  switch (a->type) {
  case BG_ATTR_STRING:
    return put_s(o, a->v.s, a->n);
  case BG_ATTR_BOOL:
    return put_u8(o, a->v.b != 0);
  case BG_ATTR_INT:
    return put(o, &a->v.i, sizeof a->v.i);
  case BG_ATTR_DOUBLE:
    return put(o, &a->v.d, sizeof a->v.d);
  default: { /* arrays: their items' type is the first item's (all one type) */
    uint8_t it = a->n > 0 ? a->v.a[0].type : BG_ATTR_STRING;
    int rc = put_u8(o, it) | put_u32(o, a->n);
    for (uint32_t i = 0; i < a->n && rc == 0; i++)
      rc |= put_value(o, &a->v.a[i]);
    return rc;
  }
  }
}

static int put_attrs(bg_buf *o, const bg_attr *a, uint32_t n) {
  int rc = put_u32(o, n);
  for (uint32_t i = 0; i < n && rc == 0; i++) {
    rc |= put_s(o, a[i].key, a[i].klen);
    rc |= put_u8(o, a[i].type);
    rc |= put_value(o, &a[i]);
  }
  return rc;
}

static int encode(const tb *b, bg_buf *out) {
  int rc = put(out, b->logs ? LOG_MAGIC : SPAN_MAGIC, 4);
  rc |= put_u32(out, (uint32_t)b->n);
  for (size_t i = 0; i < b->n && rc == 0; i++) {
    const rec *r = b->r[i];
    const bg_span_ctx *c = &r->base.ctx;
    rc |= put(out, c->trace_id, BG_TRACE_ID_LEN);
    rc |= put(out, c->span_id, BG_SPAN_ID_LEN);
    rc |= put(out, r->parent_span_id, BG_SPAN_ID_LEN);
    uint8_t head[4] = {c->flags, (uint8_t)r->kind, (uint8_t)r->status, (uint8_t)r->severity};
    rc |= put(out, head, sizeof head);
    rc |= put(out, &r->start_ns, sizeof r->start_ns);
    rc |= put(out, &r->end_ns, sizeof r->end_ns);
    rc |= put_u32(out, r->dropped_attrs);
    rc |= put_u32(out, r->dropped_events);
    rc |= put_s(out, r->name, r->name_len);
    rc |= put_s(out, r->status_msg, r->status_len);
    rc |= put_s(out, r->scope, r->scope_len);
    size_t tlen;
    const char *ts = bg_tracestate_str(c->state, &tlen);
    rc |= put_s(out, ts, (uint32_t)tlen);
    rc |= put_attrs(out, r->attrs, r->nattrs);
    if (!b->logs) {
      rc |= put_u32(out, r->nevents);
      for (uint32_t e = 0; e < r->nevents && rc == 0; e++) {
        const bg_span_event_view *ev = &r->events[e];
        rc |= put_s(out, ev->name, ev->name_len);
        rc |= put(out, &ev->time_ns, sizeof ev->time_ns);
        rc |= put_u32(out, ev->dropped_attrs);
        rc |= put_attrs(out, ev->attrs, ev->nattrs);
      }
    }
  }
  return rc == 0 ? 0 : BG_ENOMEM;
}

int bg_span_batch_encode(const bg_span_batch *b, bg_buf *out) {
  return encode(&b->b, out);
}

int bg_log_batch_encode(const bg_log_batch *b, bg_buf *out) {
  return encode(&b->b, out);
}

typedef struct reader {
  const char *p, *end;
  const char *why;
} reader;

static size_t left(const reader *r) {
  return (size_t)(r->end - r->p);
}

static int get(reader *r, void *dst, size_t n) {
  if (left(r) < n) {
    r->why = "truncated";
    return -1;
  }
  memcpy(dst, r->p, n);
  r->p += n;
  return 0;
}

static int get_u32(reader *r, uint32_t *v) {
  return get(r, v, sizeof *v);
}

/* A string into the record's arena (NUL-terminated). */
static int get_s(reader *r, rec *x, const char **s, uint32_t *n) {
  if (get_u32(r, n) != 0) return -1;
  if (left(r) < *n) {
    r->why = "truncated";
    return -1;
  }
  if ((*s = bg__rec_str(x, r->p, *n)) == NULL) {
    r->why = "out of memory";
    return -1;
  }
  r->p += *n;
  return 0;
}

/* A count of items that take at least min bytes each, checked against the bytes left. */
static int get_count(reader *r, uint32_t *n, size_t min) {
  if (get_u32(r, n) != 0) return -1;
  if ((size_t)*n > left(r) / min) {
    r->why = "a count past its bytes";
    return -1;
  }
  return 0;
}

static int get_value(reader *r, rec *x, bg_attr *a, int in_array) {
  switch (a->type) {
  case BG_ATTR_STRING:
    return get_s(r, x, &a->v.s, &a->n);
  case BG_ATTR_BOOL: {
    uint8_t v;
    if (get(r, &v, 1) != 0) return -1;
    if (v > 1) {
      r->why = "a bool out of range";
      return -1;
    }
    a->v.b = v;
    return 0;
  }
  case BG_ATTR_INT:
    return get(r, &a->v.i, sizeof a->v.i);
  case BG_ATTR_DOUBLE:
    return get(r, &a->v.d, sizeof a->v.d);
  case BG_ATTR_ARRAY: {
    uint8_t it;
    uint32_t n;
    if (in_array) break;
    if (get(r, &it, 1) != 0 || get_count(r, &n, 1) != 0) return -1;
    if (it < BG_ATTR_STRING || it > BG_ATTR_DOUBLE) break;
    bg_attr *items = bg__rec_alloc(x, (n ? n : 1) * sizeof *items);
    if (items == NULL) {
      r->why = "out of memory";
      return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
      memset(&items[i], 0, sizeof items[i]);
      items[i].type = it;
      if (get_value(r, x, &items[i], 1) != 0) return -1;
    }
    a->n = n;
    a->v.a = items;
    return 0;
  }
  default:
    break;
  }
  r->why = "an attribute type out of range";
  return -1;
}

static int get_attrs(reader *r, rec *x, bg_attr **out, uint32_t *count) {
  uint32_t n;
  if (get_count(r, &n, 6) != 0) return -1; /* key length, type, a byte of value at least */
  bg_attr *a = bg__rec_alloc(x, (n ? n : 1) * sizeof *a);
  if (a == NULL) {
    r->why = "out of memory";
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) {
    memset(&a[i], 0, sizeof a[i]);
    if (get_s(r, x, &a[i].key, &a[i].klen) != 0 || get(r, &a[i].type, 1) != 0 ||
        get_value(r, x, &a[i], 0) != 0)
      return -1;
  }
  *out = n > 0 ? a : NULL;
  *count = n;
  return 0;
}

static int get_rec(reader *r, rec *x, int logs) {
  bg_span_ctx *c = &x->base.ctx;
  uint8_t head[4];
  if (get(r, c->trace_id, BG_TRACE_ID_LEN) || get(r, c->span_id, BG_SPAN_ID_LEN) ||
      get(r, x->parent_span_id, BG_SPAN_ID_LEN) || get(r, head, sizeof head) ||
      get(r, &x->start_ns, sizeof x->start_ns) || get(r, &x->end_ns, sizeof x->end_ns) ||
      get_u32(r, &x->dropped_attrs) || get_u32(r, &x->dropped_events))
    return -1;
  c->flags = head[0];
  x->kind = head[1];
  x->status = head[2];
  x->severity = head[3];
  x->is_log = (uint8_t)logs;
  int ok = head[0] <= BG_TRACE_FLAG_SAMPLED;
  if (logs)
    ok = ok && head[1] == 0 && head[2] == 0 && head[3] >= 1 && head[3] <= 24;
  else
    ok = ok && head[1] >= BG_SPAN_INTERNAL && head[1] <= BG_SPAN_CLIENT &&
         head[2] <= BG_STATUS_ERROR && head[3] == 0 && bg_span_ctx_valid(c);
  if (!ok) {
    r->why = "a record out of range";
    return -1;
  }
  const char *ts;
  uint32_t tlen;
  if (get_s(r, x, &x->name, &x->name_len) || get_s(r, x, &x->status_msg, &x->status_len) ||
      get_s(r, x, &x->scope, &x->scope_len) || get_s(r, x, &ts, &tlen))
    return -1;
  if (tlen > 0 && (bg_tracestate_parse(c, ts, tlen) != 0 || c->state == NULL)) {
    r->why = "a tracestate out of range";
    return -1;
  }
  if (get_attrs(r, x, &x->attrs, &x->nattrs) != 0) return -1;
  x->attrs_cap = x->nattrs;
  if (logs) return 0;
  uint32_t ne;
  if (get_count(r, &ne, 20) != 0) return -1; /* name length, time, dropped, count */
  if (ne > 0 && (x->events = bg__rec_alloc(x, ne * sizeof *x->events)) == NULL) {
    r->why = "out of memory";
    return -1;
  }
  for (uint32_t e = 0; e < ne; e++) {
    bg_span_event_view *ev = &x->events[e];
    memset(ev, 0, sizeof *ev);
    bg_attr *ea;
    if (get_s(r, x, &ev->name, &ev->name_len) || get(r, &ev->time_ns, sizeof ev->time_ns) ||
        get_u32(r, &ev->dropped_attrs) || get_attrs(r, x, &ea, &ev->nattrs))
      return -1;
    ev->attrs = ea;
    x->nevents = e + 1;
  }
  x->events_cap = x->nevents;
  return 0;
}

static tb *decode(const char *p, size_t len, const char **why, int logs) {
  reader r = {p, p + len, NULL};
  char magic[4];
  uint32_t n;
  *why = NULL;
  if (get(&r, magic, 4) || memcmp(magic, logs ? LOG_MAGIC : SPAN_MAGIC, 4) != 0 ||
      get_u32(&r, &n)) {
    *why = logs ? "not a log batch" : "not a span batch";
    return NULL;
  }
  if ((size_t)n > left(&r) / 80) { /* every record takes more than 80 bytes */
    *why = "a count past its bytes";
    return NULL;
  }
  tb *b = tb_new(logs, n);
  if (b == NULL) {
    *why = "out of memory";
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    rec *x = bg__rec_new();
    if (x == NULL) {
      r.why = "out of memory";
      break;
    }
    b->r[b->n++] = x;
    if (get_rec(&r, x, logs) != 0) break;
  }
  if (r.why == NULL && r.p != r.end) r.why = "trailing bytes";
  if (r.why != NULL) {
    *why = r.why;
    tb_unref(b);
    return NULL;
  }
  return b;
}

bg_span_batch *bg_span_batch_decode(const char *p, size_t len, const char **why) {
  return (bg_span_batch *)decode(p, len, why, 0);
}

bg_log_batch *bg_log_batch_decode(const char *p, size_t len, const char **why) {
  return (bg_log_batch *)decode(p, len, why, 1);
}
