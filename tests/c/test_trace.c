/* Tests for core/trace/trace.c and trace_batch.c: ids, the trace-id-ratio sampler over many
 * traces and parent-based decisions, the current context across nesting, swaps and restores,
 * what a recording span keeps (attributes, arrays, events, exceptions, status) and its
 * limits, the bounded buffers and their dropped counts, the ready callback, batches (take,
 * references, numbers) and their bytes (a round trip, every truncation and corruption
 * refused), log records with the current ids, and a shutdown with spans still open.
 * `test_trace bench [n [recording]]` prints the cost of a span (no assertions: a Release build's
 * numbers; under callgrind with a small n, instructions per span). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "test_check.h"
#include "trace/trace.h"
#include "trace/trace_int.h"

#define S(x) x, sizeof(x) - 1

/* A fresh default tracer, recording spans and logs. */
static bg_tracer *fresh(void) {
  bg_tracer_shutdown();
  bg_tracer *t = bg_tracer_default();
  bg_tracer_set_recording(t, 1, 1);
  bg_tracer_set_ratio(t, 1);
  return t;
}

static int zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static void test_ids(void) {
  bg_tracer *t = fresh();
  uint8_t a[16], b[16], s[8];
  bg_trace_new_trace_id(t, a);
  bg_trace_new_trace_id(t, b);
  CHECK(!zero(a, 16) && !zero(b, 16) && memcmp(a, b, 16) != 0);
  /* the bits are spread: over many ids every bit is set about half the time */
  int ones[64] = {0};
  for (int i = 0; i < 4000; i++) {
    bg_trace_new_span_id(t, s);
    CHECK(!zero(s, 8));
    for (int k = 0; k < 64; k++)
      ones[k] += (s[k / 8] >> (k % 8)) & 1;
  }
  for (int k = 0; k < 64; k++)
    CHECK(ones[k] > 1700 && ones[k] < 2300);
}

/* Roots sampled out of n at ratio r. */
static int roots(bg_tracer *t, double r, int n) {
  bg_tracer_set_ratio(t, r);
  bg_tracer_set_recording(t, 0, 0);
  int sampled = 0;
  for (int i = 0; i < n; i++) {
    bg_span *s = bg_span_begin(t, NULL, S("root"), BG_SPAN_INTERNAL, NULL, 0);
    sampled += bg_span_ctx_sampled(bg_span_context(s));
    CHECK_INT(s->recording, 0);
    bg_span_end(t, s, 0);
  }
  return sampled;
}

static void test_sampling_ratio(void) {
  bg_tracer *t = fresh();
  const int n = 100000;
  CHECK_INT(roots(t, 0, n), 0);
  CHECK_INT(roots(t, 1, n), n);
  CHECK_INT(roots(t, -3, 1000), 0);
  CHECK_INT(roots(t, 7, 1000), 1000);
  CHECK_INT(roots(t, NAN, 1000), 0);
  double rs[] = {0.01, 0.25, 0.5, 0.9};
  for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) {
    int k = roots(t, rs[i], n);
    double mean = n * rs[i], sd = sqrt(n * rs[i] * (1 - rs[i]));
    if (fabs(k - mean) > 5 * sd) fprintf(stderr, "ratio %g: %d of %d\n", rs[i], k, n);
    CHECK(fabs(k - mean) <= 5 * sd); /* 5 sigma: fails by chance once in 3.5 million runs */
  }
}

/* The decision is the trace id's: the same id gives the same answer, as in OpenTelemetry's
 * TraceIdRatioBased (the last 8 bytes, big endian, >> 1, below ratio * 2^63). */
static void test_sampling_by_trace_id(void) {
  bg_tracer *t = fresh();
  bg_tracer_set_recording(t, 0, 0);
  for (int i = 0; i < 2000; i++) {
    bg_tracer_set_ratio(t, 0.3);
    bg_span *s = bg_span_begin(t, NULL, S("r"), BG_SPAN_INTERNAL, NULL, 0);
    const bg_span_ctx *c = bg_span_context(s);
    uint64_t x = 0;
    for (int k = 8; k < 16; k++)
      x = x << 8 | c->trace_id[k];
    int want = (double)(x >> 1) < 0.3 * 9223372036854775808.0;
    CHECK_INT(bg_span_ctx_sampled(c), want);
    bg_span_end(t, s, 0);
  }
}

static void test_parent_based(void) {
  bg_tracer *t = fresh();
  bg_span_ctx remote;
  /* a sampled remote parent is kept even at ratio 0, with its trace id and tracestate */
  bg_tracer_set_ratio(t, 0);
  CHECK_INT(
      bg_traceparent_parse(S("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), &remote),
      0);
  CHECK_INT(bg_tracestate_parse(&remote, S("vendor=x")), 0);
  bg_span *s = bg_span_begin(t, &remote, S("server"), BG_SPAN_SERVER, NULL, 0);
  const bg_span_ctx *c = bg_span_context(s);
  CHECK(bg_span_ctx_sampled(c));
  CHECK_INT(s->recording, 1);
  CHECK(memcmp(c->trace_id, remote.trace_id, 16) == 0);
  CHECK(memcmp(c->span_id, remote.span_id, 8) != 0);
  CHECK_INT(c->remote, 0);
  CHECK(c->state == remote.state);
  /* its child, from the current context, too */
  bg_span *k = bg_span_begin(t, NULL, S("child"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(bg_span_ctx_sampled(bg_span_context(k)));
  CHECK(memcmp(bg_span_context(k)->trace_id, remote.trace_id, 16) == 0);
  bg_span_end(t, k, 0);
  bg_span_end(t, s, 0);
  /* an unsampled remote parent is kept at ratio 1 */
  bg_tracer_set_ratio(t, 1);
  remote.flags = 0;
  s = bg_span_begin(t, &remote, S("server"), BG_SPAN_SERVER, NULL, 0);
  CHECK(!bg_span_ctx_sampled(bg_span_context(s)));
  CHECK_INT(s->recording, 0);
  k = bg_span_begin(t, NULL, S("child"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(!bg_span_ctx_sampled(bg_span_context(k)));
  CHECK(bg_span_context(k)->state == remote.state);
  bg_span_end(t, k, 0);
  bg_span_end(t, s, 0);
  /* a parent with a zero trace id is a new root */
  bg_span_ctx none = {0};
  s = bg_span_begin(t, &none, S("root"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(bg_span_ctx_sampled(bg_span_context(s)));
  CHECK(bg_span_context(s)->state == NULL);
  bg_span_end(t, s, 0);
  bg_tracer_stats st;
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 3);
  /* sampled but not recording: the flag is propagated, nothing kept */
  bg_tracer_set_recording(t, 0, 0);
  s = bg_span_begin(t, NULL, S("root"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(bg_span_ctx_sampled(bg_span_context(s)));
  CHECK_INT(s->recording, 0);
  bg_span_end(t, s, 0);
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.started, 6);
  CHECK_INT(st.sampled, 3);
  CHECK_INT(st.spans_buffered, 0);
  bg_span_ctx_clear(&remote);
}

static void test_current(void) {
  bg_tracer *t = fresh();
  CHECK(!bg_span_ctx_valid(bg_trace_current(t)));
  bg_span *a = bg_span_begin(t, NULL, S("a"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(memcmp(bg_trace_current(t), bg_span_context(a), 24) == 0);
  bg_span *b = bg_span_begin(t, NULL, S("b"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(memcmp(bg_trace_current(t)->span_id, bg_span_context(b)->span_id, 8) == 0);
  CHECK(memcmp(bg_span_context(b)->trace_id, bg_span_context(a)->trace_id, 16) == 0);
  bg_span_end(t, b, 0);
  CHECK(memcmp(bg_trace_current(t)->span_id, bg_span_context(a)->span_id, 8) == 0);
  /* swap: a run's slice with its own context, then the previous one back */
  bg_span_ctx mine = {0}, prev;
  bg_trace_new_trace_id(t, mine.trace_id);
  bg_trace_new_span_id(t, mine.span_id);
  bg_tracestate_set(&mine, S("k"), S("v"));
  bg_trace_swap(t, &mine, &prev);
  CHECK(memcmp(prev.span_id, bg_span_context(a)->span_id, 8) == 0);
  CHECK(memcmp(bg_trace_current(t)->span_id, mine.span_id, 8) == 0);
  CHECK(bg_trace_current(t)->state == mine.state);
  bg_span *c = bg_span_begin(t, NULL, S("c"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK(memcmp(bg_span_context(c)->trace_id, mine.trace_id, 16) == 0);
  CHECK(!bg_span_ctx_sampled(bg_span_context(c))); /* mine's flags were 0 */
  /* the slice ends with c open: its context is taken out, the previous one put back */
  bg_span_ctx saved;
  bg_trace_swap(t, NULL, &saved);
  CHECK(!bg_span_ctx_valid(bg_trace_current(t)));
  bg_trace_restore(t, &prev);
  CHECK(!bg_span_ctx_valid(&prev));
  CHECK(memcmp(bg_trace_current(t)->span_id, bg_span_context(a)->span_id, 8) == 0);
  /* ending c, not current now, leaves a current */
  bg_span_end(t, c, 0);
  CHECK(memcmp(bg_trace_current(t)->span_id, bg_span_context(a)->span_id, 8) == 0);
  bg_span_ctx_clear(&saved);
  /* swapping in the current context itself */
  bg_trace_swap(t, bg_trace_current(t), &prev);
  CHECK(memcmp(bg_trace_current(t)->span_id, prev.span_id, 8) == 0);
  bg_trace_restore(t, &prev);
  /* ends out of order: a ends while b2 is current; b2's end puts back what was before b2 */
  bg_span *b2 = bg_span_begin(t, NULL, S("b2"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_end(t, a, 0);
  CHECK(memcmp(bg_trace_current(t)->span_id, bg_span_context(b2)->span_id, 8) == 0);
  bg_span_end(t, b2, 0);
  /* b2's previous was a's context: restored as it was when b2 began */
  CHECK(bg_span_ctx_valid(bg_trace_current(t)));
  bg_span_ctx empty = {0};
  bg_trace_swap(t, &empty, &prev);
  bg_span_ctx_clear(&prev);
  CHECK(!bg_span_ctx_valid(bg_trace_current(t)));
  /* an explicit parent that is not current: the span is current, and its end restores */
  bg_span *d = bg_span_begin(t, &mine, S("d"), BG_SPAN_CLIENT, NULL, 0);
  CHECK(memcmp(bg_trace_current(t)->span_id, bg_span_context(d)->span_id, 8) == 0);
  bg_span_end(t, d, 0);
  CHECK(!bg_span_ctx_valid(bg_trace_current(t)));
  /* ending twice does nothing the second time */
  bg_span_ctx_clear(&mine);
}

static const bg_attr *attr(const bg_attr *a, uint32_t n, const char *k) {
  for (uint32_t i = 0; i < n; i++)
    if (a[i].klen == strlen(k) && memcmp(a[i].key, k, a[i].klen) == 0) return &a[i];
  return NULL;
}

static bg_span_batch *one_span(bg_tracer *t, bg_span_view *v) {
  bg_span_batch *b = bg_trace_take_spans(t, 100);
  CHECK(b != NULL);
  if (b == NULL) exit(1);
  CHECK_INT(bg_span_batch_len(b), 1);
  bg_span_batch_view(b, 0, v);
  return b;
}

static void test_recording(void) {
  bg_tracer *t = fresh();
  bg_span *p = bg_span_begin(t, NULL, S("parent"), BG_SPAN_SERVER, S("myplugin"));
  bg_span *s = bg_span_begin(t, NULL, S("work"), BG_SPAN_INTERNAL, S("myplugin"));
  CHECK_INT(s->recording, 1);
  bg_span_set_str(s, S("http.method"), S("GET"));
  bg_span_set_int(s, S("n"), -42);
  bg_span_set_double(s, S("ratio"), 0.25);
  bg_span_set_bool(s, S("ok"), 1);
  bg_span_set_str(s, S("n"), S("replaced")); /* a later value for a key replaces */
  bg_span_set_str(s, "", 0, S("empty key")); /* not an attribute */
  const char *vs[] = {"a", "bc"};
  size_t vl[] = {1, 2};
  bg_span_set_array(s, S("list"), BG_ATTR_STRING, 2, vs, vl, NULL, NULL);
  int64_t vi[] = {1, 2, 3};
  bg_span_set_array(s, S("ints"), BG_ATTR_INT, 3, NULL, NULL, vi, NULL);
  double vd[] = {1.5};
  bg_span_set_array(s, S("dbls"), BG_ATTR_DOUBLE, 1, NULL, NULL, NULL, vd);
  bg_span_set_array(s, S("empty"), BG_ATTR_BOOL, 0, NULL, NULL, NULL, NULL);
  bg_span_add_event(s, S("cache miss"), 1234);
  bg_span_event_set_str(s, S("key"), S("user:1"));
  bg_span_event_set_int(s, S("size"), 7);
  bg_span_event_set_double(s, S("took"), 0.5);
  bg_span_event_set_bool(s, S("hit"), 0);
  bg_span_record_exception(s, S("error"), S("boom"), S("stack traceback:\n\t[C]: in ?"));
  bg_span_set_status(s, BG_STATUS_ERROR, S("boom"));
  bg_span_set_kind(s, BG_SPAN_CLIENT);
  bg_span_set_kind(s, 99); /* ignored */
  bg_span_set_name(s, S("work renamed"));
  bg_span_end(t, s, 5000);
  bg_span_end(t, p, 0);
  bg_span_batch *b = bg_trace_take_spans(t, 100);
  CHECK(b != NULL && bg_span_batch_len(b) == 2);
  bg_span_view v, pv;
  bg_span_batch_view(b, 0, &v);
  bg_span_batch_view(b, 1, &pv);
  CHECK(v.name_len == 12 && memcmp(v.name, "work renamed", 12) == 0);
  CHECK(v.scope_len == 8 && memcmp(v.scope, "myplugin", 8) == 0);
  CHECK_INT(v.kind, BG_SPAN_CLIENT);
  CHECK_INT(pv.kind, BG_SPAN_SERVER);
  CHECK_INT(v.status, BG_STATUS_ERROR);
  CHECK(v.status_len == 4 && memcmp(v.status_msg, "boom", 4) == 0);
  CHECK(memcmp(v.parent_span_id, pv.ctx.span_id, 8) == 0);
  CHECK(zero(pv.parent_span_id, 8));
  CHECK(memcmp(v.ctx.trace_id, pv.ctx.trace_id, 16) == 0);
  CHECK_INT(v.end_ns, 5000);
  CHECK(pv.start_ns > 1600000000000000000ull && pv.end_ns >= pv.start_ns);
  CHECK(pv.start_ns <= v.start_ns);
  CHECK_INT(v.nattrs, 8);
  CHECK_INT(v.dropped_attrs, 0);
  const bg_attr *a = attr(v.attrs, v.nattrs, "http.method");
  CHECK(a != NULL && a->type == BG_ATTR_STRING && a->n == 3 && memcmp(a->v.s, "GET", 3) == 0);
  a = attr(v.attrs, v.nattrs, "n");
  CHECK(a != NULL && a->type == BG_ATTR_STRING && a->n == 8);
  a = attr(v.attrs, v.nattrs, "ratio");
  CHECK(a != NULL && a->type == BG_ATTR_DOUBLE && a->v.d == 0.25);
  a = attr(v.attrs, v.nattrs, "ok");
  CHECK(a != NULL && a->type == BG_ATTR_BOOL && a->v.b == 1);
  a = attr(v.attrs, v.nattrs, "list");
  CHECK(a != NULL && a->type == BG_ATTR_ARRAY && a->n == 2);
  if (a != NULL && a->n == 2)
    CHECK(a->v.a[1].type == BG_ATTR_STRING && a->v.a[1].n == 2 &&
          memcmp(a->v.a[1].v.s, "bc", 2) == 0 && a->v.a[0].key == NULL);
  a = attr(v.attrs, v.nattrs, "ints");
  CHECK(a != NULL && a->n == 3 && a->v.a[2].type == BG_ATTR_INT && a->v.a[2].v.i == 3);
  a = attr(v.attrs, v.nattrs, "dbls");
  CHECK(a != NULL && a->n == 1 && a->v.a[0].v.d == 1.5);
  a = attr(v.attrs, v.nattrs, "empty");
  CHECK(a != NULL && a->type == BG_ATTR_ARRAY && a->n == 0);
  CHECK_INT(v.nevents, 2);
  const bg_span_event_view *e = &v.events[0];
  CHECK(e->name_len == 10 && memcmp(e->name, "cache miss", 10) == 0 && e->time_ns == 1234);
  CHECK_INT(e->nattrs, 4);
  a = attr(e->attrs, e->nattrs, "size");
  CHECK(a != NULL && a->type == BG_ATTR_INT && a->v.i == 7);
  a = attr(e->attrs, e->nattrs, "hit");
  CHECK(a != NULL && a->type == BG_ATTR_BOOL && a->v.b == 0);
  e = &v.events[1];
  CHECK(e->name_len == 9 && memcmp(e->name, "exception", 9) == 0 && e->time_ns > 0);
  CHECK_INT(e->nattrs, 3);
  a = attr(e->attrs, e->nattrs, "exception.type");
  CHECK(a != NULL && a->n == 5);
  a = attr(e->attrs, e->nattrs, "exception.message");
  CHECK(a != NULL && a->n == 4 && memcmp(a->v.s, "boom", 4) == 0);
  a = attr(e->attrs, e->nattrs, "exception.stacktrace");
  CHECK(a != NULL && a->n == 27);
  bg_span_batch_unref(b);
}

static void test_status(void) {
  bg_tracer *t = fresh();
  bg_span_view v;
  bg_span *s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_set_status(s, BG_STATUS_UNSET, S("x"));
  bg_span_end(t, s, 0);
  bg_span_batch *b = one_span(t, &v);
  CHECK_INT(v.status, BG_STATUS_UNSET);
  CHECK_INT(v.status_len, 0);
  bg_span_batch_unref(b);
  /* ok is final, and carries no message */
  s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_set_status(s, BG_STATUS_OK, S("fine"));
  bg_span_set_status(s, BG_STATUS_ERROR, S("late"));
  bg_span_end(t, s, 0);
  b = one_span(t, &v);
  CHECK_INT(v.status, BG_STATUS_OK);
  CHECK_INT(v.status_len, 0);
  bg_span_batch_unref(b);
  /* error then ok: ok */
  s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_set_status(s, BG_STATUS_ERROR, S("first"));
  bg_span_set_status(s, BG_STATUS_ERROR, S("second"));
  bg_span_end(t, s, 0);
  b = one_span(t, &v);
  CHECK_INT(v.status, BG_STATUS_ERROR);
  CHECK(v.status_len == 6 && memcmp(v.status_msg, "second", 6) == 0);
  bg_span_batch_unref(b);
}

static void test_limits(void) {
  bg_tracer *t = fresh();
  bg_tracer_set_limits(t, 3, 2, 5);
  bg_span *s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_set_int(s, S("a"), 1);
  bg_span_set_int(s, S("b"), 2);
  bg_span_set_str(s, S("c"), S("0123456789"));
  bg_span_set_int(s, S("d"), 4);  /* dropped */
  bg_span_set_int(s, S("e"), 5);  /* dropped */
  bg_span_set_int(s, S("a"), 10); /* replacing is not adding */
  const char *vs[] = {"abcdefgh"};
  bg_span_set_array(s, S("f"), BG_ATTR_STRING, 1, vs, NULL, NULL, NULL); /* dropped */
  bg_span_add_event(s, S("e1"), 0);
  for (int i = 0; i < 5; i++) {
    char k[4] = {'k', (char)('0' + i), 0};
    bg_span_event_set_int(s, k, 2, i);
  }
  bg_span_add_event(s, S("e2"), 0);
  bg_span_event_set_str(s, S("u"), "h\xc3\xa9llo", 6); /* cut at 5 bytes: not inside é */
  bg_span_event_set_str(s, S("w"), "hell\xc3\xa9", 6);
  bg_span_add_event(s, S("e3"), 0); /* dropped, and its attributes go nowhere */
  bg_span_event_set_int(s, S("x"), 1);
  bg_span_record_exception(s, S("t"), S("m"), NULL, 0); /* dropped */
  bg_span_end(t, s, 0);
  bg_span_view v;
  bg_span_batch *b = one_span(t, &v);
  CHECK_INT(v.nattrs, 3);
  CHECK_INT(v.dropped_attrs, 3);
  const bg_attr *a = attr(v.attrs, v.nattrs, "a");
  CHECK(a != NULL && a->v.i == 10);
  a = attr(v.attrs, v.nattrs, "c");
  CHECK(a != NULL && a->n == 5 && memcmp(a->v.s, "01234", 5) == 0);
  CHECK_INT(v.nevents, 2);
  CHECK_INT(v.dropped_events, 2);
  CHECK_INT(v.events[0].nattrs, 3);
  CHECK_INT(v.events[0].dropped_attrs, 2);
  CHECK_INT(v.events[1].nattrs, 2);
  a = attr(v.events[1].attrs, v.events[1].nattrs, "u");
  CHECK(a != NULL && a->n == 5 && memcmp(a->v.s, "h\xc3\xa9ll", 5) == 0);
  a = attr(v.events[1].attrs, v.events[1].nattrs, "w");
  CHECK(a != NULL && a->n == 4 && memcmp(a->v.s, "hell", 4) == 0);
  bg_span_batch_unref(b);
  /* many attributes and long values: past the record's inline bytes into blocks */
  bg_tracer_set_limits(t, 128, 128, 4096);
  s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  char big[5000];
  memset(big, 'x', sizeof big);
  for (int i = 0; i < 200; i++) {
    char k[16];
    int n = snprintf(k, sizeof k, "key%d", i);
    bg_span_set_str(s, k, (size_t)n, big, (size_t)(i % 7 == 0 ? 5000 : i));
  }
  for (int i = 0; i < 130; i++)
    bg_span_add_event(s, S("ev"), 0);
  bg_span_end(t, s, 0);
  b = one_span(t, &v);
  CHECK_INT(v.nattrs, 128);
  CHECK_INT(v.dropped_attrs, 72);
  a = attr(v.attrs, v.nattrs, "key7");
  CHECK(a != NULL && a->n == 4096);
  a = attr(v.attrs, v.nattrs, "key127");
  CHECK(a != NULL && a->n == 127);
  CHECK_INT(v.nevents, 128);
  CHECK_INT(v.dropped_events, 2);
  bg_span_batch_unref(b);
}

/* A span's arena is bounded: a value set again and again under one key (each set copies, a
 * replaced value is not reclaimed) stops growing it at REC_ARENA_MAX, the sets past that counted
 * as dropped; and an ended span's public flag says it records nothing more. */
static void test_arena_bound(void) {
  bg_tracer *t = fresh();
  bg_tracer_set_limits(t, 128, 128, 4096);
  bg_span *s = bg_span_begin(t, NULL, S("loop"), BG_SPAN_INTERNAL, NULL, 0);
  char big[4000];
  memset(big, 'y', sizeof big);
  size_t before = bg__trace_arena_bytes;
  for (int i = 0; i < 1000; i++)
    bg_span_set_str(s, S("k"), big, sizeof big);
  CHECK(bg__trace_arena_bytes - before <= REC_ARENA_MAX);
  bg_span_end(t, s, 0);
  CHECK_INT(s->recording, 0); /* still in the buffer: readable */
  bg_span_view v;
  bg_span_batch *b = one_span(t, &v);
  CHECK_INT(v.nattrs, 1);
  CHECK(v.dropped_attrs > 0);
  const bg_attr *a = attr(v.attrs, v.nattrs, "k");
  CHECK(a != NULL && a->n == sizeof big && a->v.s[0] == 'y');
  bg_span_batch_unref(b);
  CHECK_INT(bg__trace_arena_bytes, before); /* the blocks went with the record */
}

static void test_not_recording_is_inert(void) {
  bg_tracer *t = fresh();
  bg_tracer_set_ratio(t, 0);
  bg_span *s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK_INT(s->recording, 0);
  bg_span_set_str(s, S("k"), S("v"));
  bg_span_set_int(s, S("k"), 1);
  bg_span_add_event(s, S("e"), 0);
  bg_span_event_set_str(s, S("k"), S("v"));
  bg_span_record_exception(s, S("t"), S("m"), S("s"));
  bg_span_set_status(s, BG_STATUS_ERROR, S("x"));
  bg_span_set_name(s, S("n"));
  bg_span_set_kind(s, BG_SPAN_CLIENT);
  CHECK(bg_span_ctx_valid(bg_span_context(s)));
  bg_span_end(t, s, 0);
  CHECK(bg_trace_take_spans(t, 10) == NULL);
  /* records are reused: many begin/end cycles leave nothing behind (LSan checks the rest) */
  for (int i = 0; i < 1000; i++) {
    bg_span *x = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
    bg_span *y = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
    bg_span_end(t, y, 0);
    bg_span_end(t, x, 0);
  }
  CHECK(!bg_span_ctx_valid(bg_trace_current(t)));
}

static int ready_calls;
static bg_tracer *ready_tracer;
static void on_ready(void *ud) {
  ready_calls++;
  CHECK(ud == &ready_calls);
  /* a callback that ends a span itself is not called again from inside */
  bg_span *s = bg_span_begin(ready_tracer, NULL, S("in cb"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_end(ready_tracer, s, 0);
}

static void test_buffer_and_ready(void) {
  bg_tracer *t = fresh();
  ready_tracer = t;
  bg_tracer_set_capacity(t, 10, 4);
  bg_tracer_set_ready_cb(t, 4, on_ready, &ready_calls);
  for (int i = 0; i < 3; i++)
    bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
  CHECK_INT(ready_calls, 0);
  CHECK(!bg_tracer_ready(t));
  bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
  CHECK_INT(ready_calls, 1); /* at 4 (and the span in the callback made 5) */
  CHECK(bg_tracer_ready(t));
  for (int i = 0; i < 10; i++)
    bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
  CHECK_INT(ready_calls, 1); /* once until a take */
  bg_tracer_stats st;
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 10);
  CHECK_INT(st.spans_dropped, 5);
  CHECK_INT(st.started, 15);
  CHECK_INT(st.sampled, 15);
  /* oldest first, in pieces */
  bg_span_batch *b1 = bg_trace_take_spans(t, 6);
  CHECK(b1 != NULL && bg_span_batch_len(b1) == 6);
  bg_span_view v;
  bg_span_batch_view(b1, 4, &v); /* after the span that filled the batch */
  CHECK(v.name_len == 5 && memcmp(v.name, "in cb", 5) == 0);
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 4);
  /* room again, and the callback armed again: 4 + 1 crosses 4 */
  bg_span_end(t, bg_span_begin(t, NULL, S("after"), BG_SPAN_INTERNAL, NULL, 0), 0);
  CHECK_INT(ready_calls, 2);
  bg_span_batch *b2 = bg_trace_take_spans(t, 100);
  CHECK(b2 != NULL && bg_span_batch_len(b2) == 6);
  bg_span_batch_view(b2, 4, &v);
  CHECK(v.name_len == 5 && memcmp(v.name, "after", 5) == 0);
  CHECK(bg_trace_take_spans(t, 100) == NULL);
  CHECK(bg_trace_take_spans(t, 0) == NULL);
  bg_span_batch_unref(b1);
  bg_span_batch_unref(b2);
  bg_tracer_set_ready_cb(t, 0, NULL, NULL);
  /* a smaller capacity applies to what comes next */
  for (int i = 0; i < 8; i++)
    bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_tracer_set_capacity(t, 2, 4);
  bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_tracer_stats_get(t, &st);
  CHECK(st.spans_buffered >= 8);
  b1 = bg_trace_take_spans(t, 1000);
  CHECK(b1 != NULL);
  bg_span_batch_unref(b1);
}

/* Recording off: the buffer of that signal is emptied, a span begun before ends into nothing,
 * and the other signal keeps its records. */
static void test_recording_off(void) {
  bg_tracer *t = fresh();
  bg_span_end(t, bg_span_begin(t, NULL, S("kept?"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_span *open = bg_span_begin(t, NULL, S("open"), BG_SPAN_INTERNAL, NULL, 0);
  CHECK_INT(open->recording, 1);
  bg_trace_log_record(t, BG_LOG_WARN, S("log"), NULL, NULL, 0, NULL, 0);
  bg_tracer_set_recording(t, 0, 1);
  bg_tracer_stats st;
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 0);
  CHECK_INT(st.logs_buffered, 1);
  bg_span_end(t, open, 0);
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 0);
  CHECK(bg_trace_take_spans(t, 10) == NULL);
  bg_log_batch *l = bg_trace_take_logs(t, 10);
  CHECK(l != NULL && bg_log_batch_len(l) == 1);
  bg_log_batch_unref(l);
  /* and on again: recorded again */
  bg_tracer_set_recording(t, 1, 1);
  bg_span_end(t, bg_span_begin(t, NULL, S("again"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 1);
  bg_tracer_set_recording(t, 0, 0);
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.spans_buffered, 0);
}

static void test_batch_refs_and_ids(void) {
  bg_tracer *t = fresh();
  for (int i = 0; i < 3; i++)
    bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_span_batch *b = bg_trace_take_spans(t, 2);
  bg_span_batch *c = bg_trace_take_spans(t, 2);
  CHECK(b != NULL && c != NULL);
  CHECK_INT(bg_span_batch_len(c), 1);
  uint32_t ib = bg_span_batch_id(b), ic = bg_span_batch_id(c);
  CHECK(ib != 0 && ic != 0 && ib != ic);
  CHECK_INT(bg_span_batch_id(b), ib); /* published once */
  CHECK(bg_span_batch_find(ib) == b);
  CHECK(bg_span_batch_find(ic) == c);
  CHECK(bg_span_batch_find(0) == NULL);
  CHECK(bg_span_batch_find(ic + 100) == NULL);
  bg_span_batch_ref(b);
  bg_span_batch_unref(b);
  CHECK(bg_span_batch_find(ib) == b);
  bg_span_batch_unref(b);
  CHECK(bg_span_batch_find(ib) == NULL); /* gone with its last reference */
  CHECK(bg_span_batch_find(ic) == c);
  /* many published at once: the table grows and keeps finding each */
  bg_span_batch *many[100];
  uint32_t mid[100];
  for (int i = 0; i < 100; i++) {
    bg_span_end(t, bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0), 0);
    many[i] = bg_trace_take_spans(t, 1);
    mid[i] = bg_span_batch_id(many[i]);
  }
  for (int i = 0; i < 100; i += 2)
    bg_span_batch_unref(many[i]);
  for (int i = 0; i < 100; i++)
    CHECK(bg_span_batch_find(mid[i]) == (i % 2 ? many[i] : NULL));
  for (int i = 1; i < 100; i += 2)
    bg_span_batch_unref(many[i]);
  /* a batch outlives the tracer */
  bg_span_batch_unref(c);
  bg_span_end(t, bg_span_begin(t, NULL, S("late"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_span_batch *d = bg_trace_take_spans(t, 9);
  bg_log_batch *l = NULL;
  bg_trace_log_record(t, BG_LOG_WARN, S("x"), NULL, NULL, 0, NULL, 0);
  l = bg_trace_take_logs(t, 9);
  uint32_t il = bg_log_batch_id(l);
  CHECK(bg_log_batch_find(il) == l);
  CHECK(bg_span_batch_find(il) != (bg_span_batch *)(void *)l); /* the two kinds apart */
  bg_tracer_shutdown();
  bg_span_view v;
  bg_span_batch_view(d, 0, &v);
  CHECK(v.name_len == 4 && memcmp(v.name, "late", 4) == 0);
  bg_span_batch_unref(d);
  bg_log_batch_unref(l);
  CHECK(bg_log_batch_find(il) == NULL);
}

static void test_logs(void) {
  bg_tracer *t = fresh();
  int old = bg_log_level();
  bg_log_set_level("info");
  const char *kv[] = {"user", "ann", "empty", NULL, "n", "3"};
  bg_trace_log_record(t, BG_LOG_INFO, S("outside"), kv, NULL, 3, NULL, 0);
  bg_trace_log_record(t, BG_LOG_DEBUG, S("below the level"), NULL, NULL, 0, NULL, 0);
  bg_span *s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  size_t kl[] = {4, 3, 5, 0, 1, 1};
  bg_trace_log_record(t, BG_LOG_ERROR, S("inside"), kv, kl, 3, S("myplugin"));
  bg_span_ctx in = *bg_span_context(s);
  bg_span_end(t, s, 0);
  bg_log_batch *b = bg_trace_take_logs(t, 10);
  CHECK(b != NULL && bg_log_batch_len(b) == 2);
  bg_log_view v;
  bg_log_batch_view(b, 0, &v);
  CHECK(v.body_len == 7 && memcmp(v.body, "outside", 7) == 0);
  CHECK_INT(v.severity, BG_SEV_INFO);
  CHECK(v.scope_len == 6 && memcmp(v.scope, "beagle", 6) == 0);
  CHECK(zero(v.trace_id, 16) && zero(v.span_id, 8));
  CHECK_INT(v.nattrs, 3);
  const bg_attr *a = attr(v.attrs, v.nattrs, "empty");
  CHECK(a != NULL && a->type == BG_ATTR_STRING && a->n == 0);
  CHECK(v.time_ns > 1600000000000000000ull);
  bg_log_batch_view(b, 1, &v);
  CHECK_INT(v.severity, BG_SEV_ERROR);
  CHECK(v.scope_len == 8 && memcmp(v.scope, "myplugin", 8) == 0);
  CHECK(memcmp(v.trace_id, in.trace_id, 16) == 0 && memcmp(v.span_id, in.span_id, 8) == 0);
  CHECK_INT(v.flags, 1);
  a = attr(v.attrs, v.nattrs, "user");
  CHECK(a != NULL && a->n == 3 && memcmp(a->v.s, "ann", 3) == 0);
  CHECK_INT(v.nattrs, 3);
  bg_log_batch_unref(b);
  /* full: dropped and counted; off: nothing */
  bg_tracer_set_capacity(t, 10, 2);
  for (int i = 0; i < 5; i++)
    bg_trace_log_record(t, BG_LOG_WARN, S("w"), NULL, NULL, 0, NULL, 0);
  bg_tracer_stats st;
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.logs_buffered, 2);
  bg_tracer_set_recording(t, 1, 0);
  bg_trace_log_record(t, BG_LOG_WARN, S("off"), NULL, NULL, 0, NULL, 0);
  bg_tracer_stats_get(t, &st);
  CHECK_INT(st.logs_recorded, 4);
  CHECK_INT(st.logs_dropped, 3);
  CHECK_INT(st.logs_buffered, 0);
  const char *lv[] = {"debug", "info", "warn", "error"};
  bg_log_set_level(lv[old]);
}

/* ---- bytes ---- */

static bg_span_batch *sample_spans(bg_tracer *t) {
  bg_span_ctx remote;
  bg_traceparent_parse(S("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), &remote);
  bg_tracestate_parse(&remote, S("a=1,b@c=x y"));
  bg_span *s = bg_span_begin(t, &remote, S("GET /x"), BG_SPAN_SERVER, S("plug"));
  bg_span_set_str(s, S("s"), S("str\0with nul"));
  bg_span_set_int(s, S("i"), INT64_MIN);
  bg_span_set_double(s, S("d"), -0.5);
  bg_span_set_bool(s, S("b"), 1);
  const char *vs[] = {"x", ""};
  bg_span_set_array(s, S("as"), BG_ATTR_STRING, 2, vs, NULL, NULL, NULL);
  int64_t vi[] = {0, 1};
  bg_span_set_array(s, S("ab"), BG_ATTR_BOOL, 2, NULL, NULL, vi, NULL);
  bg_span_add_event(s, S("ev"), 77);
  bg_span_event_set_double(s, S("x"), 2.5);
  bg_span_record_exception(s, S("E"), S("m"), S("tb"));
  bg_span_set_status(s, BG_STATUS_ERROR, S("bad"));
  bg_span *k = bg_span_begin(t, NULL, S("child"), BG_SPAN_CLIENT, NULL, 0);
  bg_span_end(t, k, 99);
  bg_span_end(t, s, 0);
  bg_span_ctx_clear(&remote);
  return bg_trace_take_spans(t, 10);
}

static void same_attrs(const bg_attr *a, const bg_attr *b, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    CHECK(a[i].klen == b[i].klen && memcmp(a[i].key, b[i].key, a[i].klen) == 0);
    CHECK_INT(a[i].type, b[i].type);
    CHECK_INT(a[i].n, b[i].n);
    if (a[i].type == BG_ATTR_STRING)
      CHECK(memcmp(a[i].v.s, b[i].v.s, a[i].n) == 0);
    else if (a[i].type == BG_ATTR_ARRAY)
      same_attrs(a[i].v.a, b[i].v.a, a[i].n);
    else if (a[i].type == BG_ATTR_DOUBLE)
      CHECK_DBL(a[i].v.d, b[i].v.d);
    else if (a[i].type == BG_ATTR_BOOL)
      CHECK_INT(a[i].v.b, b[i].v.b);
    else
      CHECK(a[i].v.i == b[i].v.i);
  }
}

static void same_spans(const bg_span_batch *x, const bg_span_batch *y) {
  CHECK_INT(bg_span_batch_len(x), bg_span_batch_len(y));
  for (size_t i = 0; i < bg_span_batch_len(x) && i < bg_span_batch_len(y); i++) {
    bg_span_view a, b;
    bg_span_batch_view(x, i, &a);
    bg_span_batch_view(y, i, &b);
    CHECK(memcmp(a.ctx.trace_id, b.ctx.trace_id, 16) == 0);
    CHECK(memcmp(a.ctx.span_id, b.ctx.span_id, 8) == 0);
    CHECK_INT(a.ctx.flags, b.ctx.flags);
    size_t la, lb;
    const char *sa = bg_tracestate_str(a.ctx.state, &la), *sb = bg_tracestate_str(b.ctx.state, &lb);
    CHECK(la == lb && (la == 0 || memcmp(sa, sb, la) == 0));
    CHECK(memcmp(a.parent_span_id, b.parent_span_id, 8) == 0);
    CHECK_INT(a.kind, b.kind);
    CHECK_INT(a.status, b.status);
    CHECK(a.name_len == b.name_len && memcmp(a.name, b.name, a.name_len) == 0);
    CHECK(a.status_len == b.status_len && memcmp(a.status_msg, b.status_msg, a.status_len) == 0);
    CHECK(a.scope_len == b.scope_len && memcmp(a.scope, b.scope, a.scope_len) == 0);
    CHECK(a.start_ns == b.start_ns && a.end_ns == b.end_ns);
    CHECK_INT(a.nattrs, b.nattrs);
    CHECK_INT(a.dropped_attrs, b.dropped_attrs);
    CHECK_INT(a.nevents, b.nevents);
    CHECK_INT(a.dropped_events, b.dropped_events);
    if (a.nattrs == b.nattrs) same_attrs(a.attrs, b.attrs, a.nattrs);
    for (uint32_t e = 0; e < a.nevents && a.nevents == b.nevents; e++) {
      CHECK(a.events[e].name_len == b.events[e].name_len &&
            memcmp(a.events[e].name, b.events[e].name, a.events[e].name_len) == 0);
      CHECK(a.events[e].time_ns == b.events[e].time_ns);
      CHECK_INT(a.events[e].nattrs, b.events[e].nattrs);
      CHECK_INT(a.events[e].dropped_attrs, b.events[e].dropped_attrs);
      if (a.events[e].nattrs == b.events[e].nattrs)
        same_attrs(a.events[e].attrs, b.events[e].attrs, a.events[e].nattrs);
    }
  }
}

static void test_span_bytes(void) {
  bg_tracer *t = fresh();
  bg_tracer_set_limits(t, 4, 1, 100);
  bg_span_batch *b = sample_spans(t);
  CHECK(b != NULL && bg_span_batch_len(b) == 2);
  bg_buf out = {0};
  CHECK_INT(bg_span_batch_encode(b, &out), 0);
  const char *why;
  bg_span_batch *d = bg_span_batch_decode(out.data, out.len, &why);
  CHECK(d != NULL && why == NULL);
  if (d != NULL) {
    same_spans(b, d);
    bg_span_view v;
    bg_span_batch_view(d, 1, &v);
    CHECK_INT(v.dropped_attrs, 2);
    CHECK_INT(v.dropped_events, 1);
    /* and again: the decoded batch encodes to the same bytes */
    bg_buf again = {0};
    CHECK_INT(bg_span_batch_encode(d, &again), 0);
    CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
    bg_buf_free(&again);
    bg_span_batch_unref(d);
  }
  /* every truncation refused */
  for (size_t n = 0; n < out.len; n++) {
    d = bg_span_batch_decode(out.data, n, &why);
    if (d != NULL) fprintf(stderr, "truncated at %zu accepted\n", n);
    CHECK(d == NULL && why != NULL);
    bg_span_batch_unref(d);
  }
  /* trailing bytes, a wrong magic, a log batch's magic */
  bg_buf_append(&out, "x", 1);
  CHECK(bg_span_batch_decode(out.data, out.len, &why) == NULL);
  CHECK_STR(why, "trailing bytes");
  out.len--;
  out.data[3] = '2';
  CHECK(bg_span_batch_decode(out.data, out.len, &why) == NULL);
  out.data[2] = 'L';
  out.data[3] = '1';
  CHECK(bg_span_batch_decode(out.data, out.len, &why) == NULL);
  CHECK(bg_log_batch_decode(out.data, out.len, &why) == NULL);
  out.data[2] = 'S';
  /* every single byte flipped: refused, or decoded into a batch that is whole (a flipped byte
   * inside a string or a number is not detectable, and must not crash nor leak) */
  int refused = 0;
  for (size_t i = 0; i < out.len; i++) {
    for (int bit = 0; bit < 8; bit += 3) {
      out.data[i] ^= (char)(1 << bit);
      d = bg_span_batch_decode(out.data, out.len, &why);
      if (d == NULL) {
        CHECK(why != NULL);
        refused++;
      } else {
        bg_buf re = {0};
        CHECK_INT(bg_span_batch_encode(d, &re), 0);
        CHECK(re.len == out.len);
        bg_buf_free(&re);
        bg_span_batch_unref(d);
      }
      out.data[i] ^= (char)(1 << bit);
    }
  }
  CHECK(refused > 0);
  /* a count far past the bytes */
  uint32_t big = 0x7fffffff;
  memcpy(out.data + 4, &big, 4);
  CHECK(bg_span_batch_decode(out.data, out.len, &why) == NULL);
  CHECK_STR(why, "a count past its bytes");
  /* an empty batch cannot be taken, but the bytes of none decode to none */
  bg_span_batch *e = bg_span_batch_decode("BGS1\0\0\0\0", 8, &why);
  CHECK(e != NULL && bg_span_batch_len(e) == 0);
  bg_span_batch_unref(e);
  bg_buf_free(&out);
  bg_span_batch_unref(b);
}

static void test_log_bytes(void) {
  bg_tracer *t = fresh();
  const char *kv[] = {"k", "v", "k2", "v2 longer"};
  bg_trace_log_record(t, BG_LOG_WARN, S("one"), kv, NULL, 2, NULL, 0);
  bg_span *s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  bg_trace_log_record(t, BG_LOG_ERROR, S("two"), NULL, NULL, 0, S("p"));
  bg_span_end(t, s, 0);
  bg_log_batch *b = bg_trace_take_logs(t, 10);
  bg_buf out = {0};
  CHECK_INT(bg_log_batch_encode(b, &out), 0);
  const char *why;
  bg_log_batch *d = bg_log_batch_decode(out.data, out.len, &why);
  CHECK(d != NULL && bg_log_batch_len(d) == 2);
  if (d != NULL && bg_log_batch_len(d) == 2) {
    for (size_t i = 0; i < 2; i++) {
      bg_log_view x, y;
      bg_log_batch_view(b, i, &x);
      bg_log_batch_view(d, i, &y);
      CHECK(x.time_ns == y.time_ns);
      CHECK_INT(x.severity, y.severity);
      CHECK(x.body_len == y.body_len && memcmp(x.body, y.body, x.body_len) == 0);
      CHECK(x.scope_len == y.scope_len && memcmp(x.scope, y.scope, x.scope_len) == 0);
      CHECK(memcmp(x.trace_id, y.trace_id, 16) == 0 && memcmp(x.span_id, y.span_id, 8) == 0);
      CHECK_INT(x.flags, y.flags);
      CHECK_INT(x.nattrs, y.nattrs);
      if (x.nattrs == y.nattrs) same_attrs(x.attrs, y.attrs, x.nattrs);
    }
  }
  bg_log_batch_unref(d);
  for (size_t n = 0; n < out.len; n++) {
    d = bg_log_batch_decode(out.data, n, &why);
    CHECK(d == NULL && why != NULL);
  }
  CHECK(bg_span_batch_decode(out.data, out.len, &why) == NULL);
  bg_buf_free(&out);
  bg_log_batch_unref(b);
}

static void test_shutdown_with_open_spans(void) {
  bg_tracer *t = fresh();
  bg_span_ctx remote;
  bg_traceparent_parse(S("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), &remote);
  bg_tracestate_parse(&remote, S("k=v"));
  bg_span_begin(t, &remote, S("open recording"), BG_SPAN_SERVER, NULL, 0);
  remote.flags = 0;
  bg_span_begin(t, &remote, S("open lite"), BG_SPAN_SERVER, NULL, 0);
  bg_span_end(t, bg_span_begin(t, NULL, S("buffered"), BG_SPAN_INTERNAL, NULL, 0), 0);
  bg_trace_log_record(t, BG_LOG_ERROR, S("buffered"), NULL, NULL, 0, NULL, 0);
  bg_span_ctx_clear(&remote);
  bg_tracer_shutdown(); /* LSan: nothing left */
  bg_tracer_shutdown(); /* twice is harmless */
}

static uint64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The tracer's clock (the TSC between readings of the real-time clock, on x86-64) stays on the
 * real-time clock across many of its windows, and a span never ends before it began. */
static void test_clock(void) {
  bg_tracer *t = fresh();
  uint64_t start = wall_ns(), worst = 0;
  long reads = 0;
  while (wall_ns() - start < 20000000u) { /* 20 ms: ~20 windows, rates measured and used */
    for (int i = 0; i < 1000; i++) {
      uint64_t before = wall_ns(), v = bg__trace_now(), after = wall_ns();
      uint64_t off = v < before ? before - v : v > after ? v - after : 0;
      if (off > worst) worst = off;
      reads++;
    }
  }
  CHECK(reads > 1000);
  if (worst > 20000) fprintf(stderr, "clock: %llu ns off\n", (unsigned long long)worst);
  CHECK(worst <= 20000); /* 20 us: a rate error of 2 % over a window */
  for (int i = 0; i < 5000; i++) {
    bg_span *s = bg_span_begin(t, NULL, "c", 1, BG_SPAN_INTERNAL, NULL, 0);
    bg_span_end(t, s, 0);
  }
  bg_span_batch *b = bg_trace_take_spans(t, 10000);
  CHECK(b != NULL && bg_span_batch_len(b) == 2048); /* the buffer's default capacity */
  bg_span_view v;
  int backwards = 0;
  for (size_t i = 0; b != NULL && i < bg_span_batch_len(b); i++) {
    bg_span_batch_view(b, i, &v);
    if (v.end_ns < v.start_ns) backwards++;
  }
  CHECK_INT(backwards, 0);
  bg_span_batch_unref(b);
}

/* Names, keys and values of every length around the copy's cases (0..3 bytes, 4..7, 8..16,
 * more) come back whole and NUL-terminated. */
static void test_copy_lengths(void) {
  bg_tracer *t = fresh();
  char src[41];
  for (int i = 0; i < 40; i++)
    src[i] = (char)('a' + i % 26);
  src[40] = 'X'; /* past every length used: a copy that reads it shows */
  for (size_t n = 0; n <= 40; n++) {
    bg_span *s = bg_span_begin(t, NULL, src, n, BG_SPAN_INTERNAL, src, n);
    bg_span_set_str(s, src, n > 0 ? n : 1, src, n);
    bg_span_end(t, s, 0);
    bg_span_batch *b = bg_trace_take_spans(t, 10);
    CHECK(b != NULL && bg_span_batch_len(b) == 1);
    if (b == NULL) return;
    bg_span_view v;
    bg_span_batch_view(b, 0, &v);
    CHECK(v.name_len == n && memcmp(v.name, src, n) == 0 && v.name[n] == '\0');
    CHECK(v.nattrs == 1 && v.attrs[0].n == n && memcmp(v.attrs[0].v.s, src, n) == 0);
    CHECK(v.attrs[0].v.s[n] == '\0');
    if (n > 0) /* an empty scope is copied too; its length says it all */
      CHECK(v.scope_len == n && memcmp(v.scope, src, n) == 0 && v.scope[n] == '\0');
    bg_span_batch_unref(b);
  }
}

/* A span's first attributes take the short path (room inline, under the limit), the rest the
 * general one: a key set on one side is replaced from the other, with any type, and a NULL
 * value is "" on both. */
static void test_attr_paths(void) {
  bg_tracer *t = fresh();
  bg_span *s = bg_span_begin(t, NULL, S("s"), BG_SPAN_INTERNAL, NULL, 0);
  bg_span_set_str(s, S("nul"), NULL, 3);
  for (int i = 0; i < 12; i++) { /* past the 8 inline slots */
    char k[8];
    int n = snprintf(k, sizeof k, "k%d", i);
    bg_span_set_int(s, k, (size_t)n, i);
  }
  bg_span_set_str(s, S("k1"), S("one"));  /* inline slot, set after the growth */
  bg_span_set_double(s, S("k10"), 2.5);   /* grown slot */
  bg_span_set_bool(s, S("k2"), 1);        /* inline slot */
  bg_span_set_str(s, S("nul"), NULL, 0);  /* still "" */
  bg_span_set_str(s, S(""), S("no key")); /* not an attribute */
  bg_span_end(t, s, 0);
  bg_span_view v;
  bg_span_batch *b = one_span(t, &v);
  CHECK_INT(v.nattrs, 13);
  CHECK_INT(v.dropped_attrs, 0);
  const bg_attr *a = attr(v.attrs, v.nattrs, "nul");
  CHECK(a != NULL && a->type == BG_ATTR_STRING && a->n == 0 && a->v.s[0] == '\0');
  a = attr(v.attrs, v.nattrs, "k1");
  CHECK(a != NULL && a->type == BG_ATTR_STRING && a->n == 3 && memcmp(a->v.s, "one", 3) == 0);
  a = attr(v.attrs, v.nattrs, "k10");
  CHECK(a != NULL && a->type == BG_ATTR_DOUBLE && a->v.d == 2.5);
  a = attr(v.attrs, v.nattrs, "k2");
  CHECK(a != NULL && a->type == BG_ATTR_BOOL && a->v.b == 1);
  a = attr(v.attrs, v.nattrs, "k11");
  CHECK(a != NULL && a->type == BG_ATTR_INT && a->v.i == 11);
  bg_span_batch_unref(b);
}

/* ---- bench ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench(int n, int only_recording) {
  bg_tracer *t = fresh();
  bg_tracer_set_ratio(t, 0);
  if (only_recording) goto recording;
  double best = 1e9;
  for (int round = 0; round < 5; round++) {
    double t0 = now_s();
    for (int i = 0; i < n; i++)
      bg_span_end(t, bg_span_begin(t, NULL, "check", 5, BG_SPAN_INTERNAL, NULL, 0), 0);
    double ns = (now_s() - t0) / n * 1e9;
    if (ns < best) best = ns;
  }
  printf("non-recording root span begin+end: %.1f ns\n", best);
  bg_span *root = bg_span_begin(t, NULL, "root", 4, BG_SPAN_INTERNAL, NULL, 0);
  best = 1e9;
  for (int round = 0; round < 5; round++) {
    double t0 = now_s();
    for (int i = 0; i < n; i++)
      bg_span_end(t, bg_span_begin(t, NULL, "check", 5, BG_SPAN_INTERNAL, NULL, 0), 0);
    double ns = (now_s() - t0) / n * 1e9;
    if (ns < best) best = ns;
  }
  bg_span_end(t, root, 0);
  printf("non-recording child span begin+end: %.1f ns\n", best);
  best = 1e9;
  for (int round = 0; round < 5; round++) {
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
      bg_span *s = bg_span_begin(t, NULL, "check", 5, BG_SPAN_INTERNAL, NULL, 0);
      bg_span_set_str(s, "k", 1, "v", 1);
      bg_span_end(t, s, 0);
    }
    double ns = (now_s() - t0) / n * 1e9;
    if (ns < best) best = ns;
  }
  printf("non-recording span begin+set+end: %.1f ns\n", best);
recording:
  bg_tracer_set_ratio(t, 1);
  bg_tracer_set_capacity(t, 4096, 4096);
  best = 1e9;
  for (int round = 0; round < 5; round++) {
    double total = 0;
    int done = 0;
    while (done < n / 5) {
      double t0 = now_s();
      for (int i = 0; i < 4096; i++) {
        bg_span *s = bg_span_begin(t, NULL, "check", 5, BG_SPAN_INTERNAL, NULL, 0);
        bg_span_set_str(s, "http.method", 11, "GET", 3);
        bg_span_set_int(s, "http.status_code", 16, 200);
        bg_span_end(t, s, 0);
      }
      total += now_s() - t0;
      done += 4096;
      bg_span_batch *b = bg_trace_take_spans(t, 4096); /* outside the timing */
      bg_span_batch_unref(b);
    }
    double ns = total / done * 1e9;
    if (ns < best) best = ns;
  }
  printf("recording span begin+2 attrs+end (into the buffer): %.1f ns\n", best);
  bg_tracer_shutdown();
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "bench") == 0) {
    bench(argc > 2 ? atoi(argv[2]) : 5000000, argc > 3 && strcmp(argv[3], "recording") == 0);
    return 0;
  }
  test_ids();
  test_sampling_ratio();
  test_sampling_by_trace_id();
  test_parent_based();
  test_current();
  test_recording();
  test_status();
  test_limits();
  test_arena_bound();
  test_not_recording_is_inert();
  test_buffer_and_ready();
  test_recording_off();
  test_batch_refs_and_ids();
  test_logs();
  test_span_bytes();
  test_log_bytes();
  test_shutdown_with_open_spans();
  test_clock();
  test_copy_lengths();
  test_attr_paths();
  bg_tracer_shutdown();
  if (failures) fprintf(stderr, "%d failures\n", failures);
  return failures != 0;
}
