/* trace: span context, sampling, and the bounded buffers of finished spans and log records
 * that the exporters drain. One tracer per process, used from the loop's thread only.
 *
 * The part sits right under core/base/: it uses base only, and net/ (server spans, traceparent
 * on outgoing requests), script/ (the current span follows a run across its waits) and app/
 * use it.
 *
 * Three kinds of object:
 *   bg_span_ctx   a span's identity as W3C Trace Context carries it: trace id, span id, flags,
 *                 and the tracestate it inherited. A plain value: copy it with
 *                 bg_span_ctx_copy (the tracestate is reference counted), drop it with
 *                 bg_span_ctx_clear.
 *   bg_span       a started span. Every span has one, sampled or not, so that beginning and
 *                 ending are the same two calls either way; only a recording span (sampled,
 *                 and the tracer recording) keeps its name, attributes and events, and on end
 *                 moves to the span buffer. Its first field is public so that Lua can test it
 *                 with one FFI load.
 *   batches       what an exporter sends: finished spans (bg_span_batch) or log records
 *                 (bg_log_batch) taken from the buffers at one instant, immutable, reference
 *                 counted, shared by every exporter that collects then, and numbered so they
 *                 can cross into a plugin state by id (as core/export/batch.h does for metrics).
 *
 * The current span. The tracer keeps the context of the span code is running in now
 * (bg_trace_current). bg_span_begin makes the new span current and bg_span_end puts its parent
 * back, when it is still the current one. A plugin run saves and restores the current context
 * around each of its slices (core/script/script.c), so the current span follows the run's
 * coroutine across waits and two runs never see each other's.
 *
 * Errors are libuv style (0 or a negative BG_E*); nothing here exits the process. Times are
 * nanoseconds since the Unix epoch (CLOCK_REALTIME). Strings are (pointer, length) and need not
 * be NUL-terminated; everything passed in is copied. */
#ifndef BG_TRACE_H
#define BG_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "base/bg.h"

#define BG_TRACE_ID_LEN 16
#define BG_SPAN_ID_LEN 8
#define BG_TRACE_FLAG_SAMPLED 0x01

/* OTLP's enum values, so that encoders write them as they are. */
enum { BG_SPAN_INTERNAL = 1, BG_SPAN_SERVER = 2, BG_SPAN_CLIENT = 3 };
enum { BG_STATUS_UNSET = 0, BG_STATUS_OK = 1, BG_STATUS_ERROR = 2 };
/* OTLP severity numbers of the four levels of core/base/log.h (DEBUG, INFO, WARN, ERROR). */
enum { BG_SEV_DEBUG = 5, BG_SEV_INFO = 9, BG_SEV_WARN = 13, BG_SEV_ERROR = 17 };

/* An immutable, reference-counted tracestate header value, already validated and in the order
 * it is to be sent (at most 32 members). */
typedef struct bg_tracestate bg_tracestate;

typedef struct bg_span_ctx {
  uint8_t trace_id[BG_TRACE_ID_LEN]; /* all zero: no context */
  uint8_t span_id[BG_SPAN_ID_LEN];
  uint8_t flags;        /* W3C trace-flags: BG_TRACE_FLAG_SAMPLED */
  uint8_t remote;       /* parsed from a traceparent header */
  bg_tracestate *state; /* NULL: empty */
} bg_span_ctx;

typedef struct bg_span bg_span;
typedef struct bg_tracer bg_tracer;
typedef struct bg_span_batch bg_span_batch;
typedef struct bg_log_batch bg_log_batch;

/* ---- context values and W3C Trace Context (core/trace/w3c.c) ---- */

static inline int bg_span_ctx_valid(const bg_span_ctx *c) {
  uint64_t t = 0, s = 0;
  for (int i = 0; i < BG_TRACE_ID_LEN; i++)
    t |= c->trace_id[i];
  for (int i = 0; i < BG_SPAN_ID_LEN; i++)
    s |= c->span_id[i];
  return t != 0 && s != 0;
}
static inline int bg_span_ctx_sampled(const bg_span_ctx *c) {
  return (c->flags & BG_TRACE_FLAG_SAMPLED) != 0;
}
/* dst = src, taking a reference to src's tracestate; dst is overwritten, not cleared. */
void bg_span_ctx_copy(bg_span_ctx *dst, const bg_span_ctx *src);
/* Drops the tracestate reference and zeroes c. */
void bg_span_ctx_clear(bg_span_ctx *c);

/* Parses a traceparent header value (version 00, or a later version read as 00 per the spec:
 * its first 55 characters, then '-' or the end). Strict: lower-case hex only, exact lengths,
 * all-zero trace or span id refused, version ff refused. On success fills out (remote = 1,
 * state = NULL) and returns 0; otherwise BG_EINVAL and out is zeroed. */
int bg_traceparent_parse(const char *s, size_t len, bg_span_ctx *out);
/* Writes "00-<trace>-<span>-<flags>" (55 bytes, no NUL) into buf[55]. */
void bg_traceparent_format(const bg_span_ctx *c, char buf[55]);
/* Parses a tracestate header value (the members of every header line joined with ',') and
 * sets c->state (replacing a previous one). Members are validated per the spec (keys
 * lcalpha/digit with optional "tenant@system", values of printable ASCII without ',' or '=');
 * a header with an invalid member, a duplicate key or more than 32 members is ignored
 * entirely (c->state stays NULL) and BG_EINVAL returned; empty members are skipped. */
int bg_tracestate_parse(bg_span_ctx *c, const char *s, size_t len);
/* c->state with key=value put first (an existing member with that key removed, the last
 * member dropped past 32). BG_EINVAL for an invalid key or value. */
int bg_tracestate_set(bg_span_ctx *c, const char *key, size_t klen, const char *val, size_t vlen);
/* The header value of a tracestate, or NULL with *len 0 when empty. Borrowed. */
const char *bg_tracestate_str(const bg_tracestate *ts, size_t *len);
/* Lower-case hex of an id into buf (2 * n bytes, no NUL). */
void bg_trace_hex(const uint8_t *id, size_t n, char *buf);

/* ---- the tracer (core/trace/trace.c) ---- */

/* The process's tracer; created on first use with the defaults below. */
BG_EXPORT bg_tracer *bg_tracer_default(void);
/* Trace-id-ratio sampling of root spans, 0..1 (trace_sampling_rate; default 0.01). A child
 * keeps its parent's decision (parent-based), a remote parent's too. */
BG_EXPORT void bg_tracer_set_ratio(bg_tracer *t, double ratio);
/* Whether sampled spans and log records are kept for export at all (an exporter is
 * configured). Off (the default), sampling still decides the flags that are propagated, but
 * nothing is recorded and a span costs what an unsampled one costs. */
BG_EXPORT void bg_tracer_set_recording(bg_tracer *t, int spans, int logs);
/* (H1) Turning spans (logs) off frees what that buffer holds, and a recording span that ends
 * after it is freed too: with no exporter of the signal left, nothing would take them. */
/* Capacities of the finished-span and log-record buffers (default 2048 each); applies to what
 * is added from now on. */
BG_EXPORT void bg_tracer_set_capacity(bg_tracer *t, size_t spans, size_t logs);
/* Limits per span (defaults from the OpenTelemetry SDK: 128 attributes, 128 events, attribute
 * values cut at 4096 bytes). What does not fit is counted in the span's dropped counts. */
BG_EXPORT void bg_tracer_set_limits(bg_tracer *t, uint32_t max_attrs, uint32_t max_events,
                                    uint32_t max_value_len);
/* Called when a buffer reaches `batch` items, so the exporters can drain early as
 * OpenTelemetry's batch processor does: once, then again only after a take from that buffer
 * (0 or a NULL cb: never). (H1: the tracer has no loop, so it is called from inside
 * bg_span_end / bg_trace_log_record, after the record is in the buffer, never re-entrantly.
 * It must only schedule the drain, e.g. start a 0 ms uv timer or uv_async_send: those callers
 * may be Lua code in the middle of an FFI call, so cb must not enter any lua_State nor take
 * from the buffers itself.) */
BG_EXPORT void bg_tracer_set_ready_cb(bg_tracer *t, size_t batch, void (*cb)(void *ud), void *ud);
/* (H1, added) Whether a buffer holds `batch` items or more: the same question polled, for a
 * caller that would rather check on its own timer than be called. */
BG_EXPORT int bg_tracer_ready(const bg_tracer *t);

/* Counters for the agent's self-metrics. */
typedef struct bg_tracer_stats {
  uint64_t started, sampled; /* spans begun; of those, recording */
  uint64_t spans_dropped;    /* finished recording spans refused by a full buffer */
  uint64_t logs_recorded, logs_dropped;
  size_t spans_buffered, logs_buffered;
} bg_tracer_stats;
BG_EXPORT void bg_tracer_stats_get(const bg_tracer *t, bg_tracer_stats *out);

/* The current context (borrowed; trace id all zero when there is none). (H2, added) The
 * pointer is the same for the tracer's life: agent.trace reads it from Lua without a call. */
BG_EXPORT const bg_span_ctx *bg_trace_current(const bg_tracer *t);
/* (H1, added) The current context itself, for hot paths outside trace that test it with one
 * load (bg_histogram_observe keeps an exemplar when it is sampled). Read only; zero when no
 * tracer exists. The pointer bg_trace_current returns is &bg__trace_cur. */
extern __attribute__((visibility("hidden"))) bg_span_ctx bg__trace_cur; /* hidden: one load */
/* Replaces the current context with a copy of c (NULL: none) and returns the previous one in
 * *prev (owned by the caller: bg_span_ctx_clear it, or give it back with bg_trace_restore). */
BG_EXPORT void bg_trace_swap(bg_tracer *t, const bg_span_ctx *c, bg_span_ctx *prev);
/* Makes c current, taking over its reference (c is zeroed). */
BG_EXPORT void bg_trace_restore(bg_tracer *t, bg_span_ctx *c);

/* Fresh random ids (never all zero) from a fast generator seeded once from getrandom(). */
BG_EXPORT void bg_trace_new_trace_id(bg_tracer *t, uint8_t out[BG_TRACE_ID_LEN]);
BG_EXPORT void bg_trace_new_span_id(bg_tracer *t, uint8_t out[BG_SPAN_ID_LEN]);

struct bg_span {
  uint32_t recording; /* public: nonzero when attributes and events are kept */
  /* the rest is private to trace.c */
};

/* Starts a span named name as a child of parent (NULL: the current context; a parent with a
 * zero trace id: a new root, sampled by the ratio) and makes it current. scope names who made
 * it (the OTLP instrumentation scope: "beagle", or the plugin's name); NULL is "beagle".
 * Never fails: out of memory gives a non-recording span. */
BG_EXPORT bg_span *bg_span_begin(bg_tracer *t, const bg_span_ctx *parent, const char *name,
                                 size_t name_len, int kind, const char *scope, size_t scope_len);
/* The span's context (borrowed, valid until bg_span_end). */
BG_EXPORT const bg_span_ctx *bg_span_context(const bg_span *s);
/* Attributes: a later value for a key replaces the earlier one. No-ops on a non-recording
 * span. Values are copied; strings cut at the value limit. */
BG_EXPORT void bg_span_set_str(bg_span *s, const char *k, size_t klen, const char *v, size_t vlen);
BG_EXPORT void bg_span_set_int(bg_span *s, const char *k, size_t klen, int64_t v);
BG_EXPORT void bg_span_set_double(bg_span *s, const char *k, size_t klen, double v);
BG_EXPORT void bg_span_set_bool(bg_span *s, const char *k, size_t klen, int v);
/* An array attribute: n values of one type (BG_ATTR_STRING: vs/vlens, BG_ATTR_INT: vi,
 * BG_ATTR_DOUBLE: vd, BG_ATTR_BOOL: vi as 0/1). */
BG_EXPORT void bg_span_set_array(bg_span *s, const char *k, size_t klen, int type, size_t n,
                                 const char *const *vs, const size_t *vlens, const int64_t *vi,
                                 const double *vd);
/* An event at time_ns (0: now); its attributes are added with the bg_span_event_* calls that
 * follow, up to the next event or the end. */
BG_EXPORT void bg_span_add_event(bg_span *s, const char *name, size_t name_len, uint64_t time_ns);
BG_EXPORT void bg_span_event_set_str(bg_span *s, const char *k, size_t klen, const char *v,
                                     size_t vlen);
BG_EXPORT void bg_span_event_set_int(bg_span *s, const char *k, size_t klen, int64_t v);
BG_EXPORT void bg_span_event_set_double(bg_span *s, const char *k, size_t klen, double v);
BG_EXPORT void bg_span_event_set_bool(bg_span *s, const char *k, size_t klen, int v);
/* An "exception" event with exception.type, exception.message and exception.stacktrace (each
 * may be NULL), per the OpenTelemetry semantic conventions. It does not set the status. */
BG_EXPORT void bg_span_record_exception(bg_span *s, const char *type, size_t tlen, const char *msg,
                                        size_t mlen, const char *stack, size_t slen);
BG_EXPORT void bg_span_set_status(bg_span *s, int code, const char *msg, size_t mlen);
BG_EXPORT void bg_span_set_kind(bg_span *s, int kind);
BG_EXPORT void bg_span_set_name(bg_span *s, const char *name, size_t name_len);
/* Ends the span at end_ns (0: now): a recording one moves to the span buffer (or is dropped
 * and counted when it is full), and the parent becomes current again if the span still is.
 * s is invalid afterwards. */
BG_EXPORT void bg_span_end(bg_tracer *t, bg_span *s, uint64_t end_ns);

/* ---- log records ---- */

/* Records one structured log line for export, with the current context's ids: level is a
 * BG_LOG_* of core/base/log.h, kv as bg_log_kv's (string values). Nothing when log recording
 * is off or level is below the log level. Called by the logging entry points, which also write
 * the console line with trace_id and span_id fields when a span is current. (H1: nkv counts
 * pairs, kv[2i] and kv[2i+1]; kvlen NULL means strlen; a NULL value is empty. Attributes
 * follow the span limits: max_attrs of them, values cut at max_value_len.) */
BG_EXPORT void bg_trace_log_record(bg_tracer *t, int level, const char *msg, size_t msg_len,
                                   const char *const *kv, const size_t *kvlen, size_t nkv,
                                   const char *scope, size_t scope_len);

/* ---- what the exporters read ---- */

enum {
  BG_ATTR_STRING = 1,
  BG_ATTR_BOOL = 2,
  BG_ATTR_INT = 3,
  BG_ATTR_DOUBLE = 4,
  BG_ATTR_ARRAY = 5
};

/* An attribute as stored: for BG_ATTR_ARRAY, v.a holds n items (their key NULL, one type). */
typedef struct bg_attr {
  const char *key;
  uint32_t klen;
  uint8_t type;
  uint32_t n; /* string length, or array items */
  union {
    const char *s;
    int64_t i;
    double d;
    int b;
    const struct bg_attr *a;
  } v;
} bg_attr;

typedef struct bg_span_event_view {
  const char *name;
  uint32_t name_len;
  uint64_t time_ns;
  const bg_attr *attrs;
  uint32_t nattrs, dropped_attrs;
} bg_span_event_view;

typedef struct bg_span_view {
  bg_span_ctx ctx;                        /* trace id, span id, flags, tracestate */
  uint8_t parent_span_id[BG_SPAN_ID_LEN]; /* all zero for a root */
  int kind, status;
  const char *name, *status_msg, *scope;
  uint32_t name_len, status_len, scope_len;
  uint64_t start_ns, end_ns;
  const bg_attr *attrs;
  uint32_t nattrs, dropped_attrs;
  const bg_span_event_view *events;
  uint32_t nevents, dropped_events;
} bg_span_view;

typedef struct bg_log_view {
  uint64_t time_ns;
  int severity; /* BG_SEV_* */
  const char *body, *scope;
  uint32_t body_len, scope_len;
  const bg_attr *attrs; /* string values */
  uint32_t nattrs;
  uint8_t trace_id[BG_TRACE_ID_LEN], span_id[BG_SPAN_ID_LEN]; /* zero outside a span */
  uint8_t flags;
} bg_log_view;

/* Takes up to max finished spans (log records), oldest first, out of the buffer into a new
 * batch with one reference; NULL when the buffer is empty or on ENOMEM (nothing lost then). */
BG_EXPORT bg_span_batch *bg_trace_take_spans(bg_tracer *t, size_t max);
BG_EXPORT bg_log_batch *bg_trace_take_logs(bg_tracer *t, size_t max);

BG_EXPORT size_t bg_span_batch_len(const bg_span_batch *b);
/* Fills out with span i (< len); the pointers stay valid while the batch is referenced. */
BG_EXPORT void bg_span_batch_view(const bg_span_batch *b, size_t i, bg_span_view *out);
BG_EXPORT void bg_span_batch_ref(bg_span_batch *b);
BG_EXPORT void bg_span_batch_unref(bg_span_batch *b);
/* Numbers to cross into a plugin state, as bg_batch_id/bg_batch_find (core/export/batch.h):
 * id publishes b and returns its number (never 0; 0 only on ENOMEM); find returns the live
 * batch of a number or NULL. */
BG_EXPORT uint32_t bg_span_batch_id(bg_span_batch *b);
BG_EXPORT bg_span_batch *bg_span_batch_find(uint32_t id);
/* A batch as bytes and back, for a buffer on disk: encode appends to out (0 or BG_ENOMEM);
 * decode returns a new batch (refcount 1) or NULL with *why for bytes it cannot trust, never a
 * partial batch. */
BG_EXPORT int bg_span_batch_encode(const bg_span_batch *b, bg_buf *out);
BG_EXPORT bg_span_batch *bg_span_batch_decode(const char *p, size_t len, const char **why);

BG_EXPORT size_t bg_log_batch_len(const bg_log_batch *b);
BG_EXPORT void bg_log_batch_view(const bg_log_batch *b, size_t i, bg_log_view *out);
BG_EXPORT void bg_log_batch_ref(bg_log_batch *b);
BG_EXPORT void bg_log_batch_unref(bg_log_batch *b);
BG_EXPORT uint32_t bg_log_batch_id(bg_log_batch *b);
BG_EXPORT bg_log_batch *bg_log_batch_find(uint32_t id);
BG_EXPORT int bg_log_batch_encode(const bg_log_batch *b, bg_buf *out);
BG_EXPORT bg_log_batch *bg_log_batch_decode(const char *p, size_t len, const char **why);

/* Frees the default tracer and everything it holds (at exit, for leak checks). Batches still
 * referenced stay valid until their last unref. */
void bg_tracer_shutdown(void);

#endif
