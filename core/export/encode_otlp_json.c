/* encode_otlp_json: spans and log records as OTLP/HTTP JSON bodies, in the protobuf JSON
 * mapping OTLP specifies (opentelemetry-proto's docs/specification.md, "JSON Protobuf
 * Encoding"): lowerCamelCase field names; trace and span ids as lower-case hex (OTLP's one
 * exception to the mapping's base64); 64-bit integers (times in Unix nanoseconds, intValue) as
 * decimal strings; enums (kind, status code, severityNumber) as integers; a double that is NaN
 * or infinite as the strings "NaN", "Infinity", "-Infinity". Fields at their default (an empty
 * list, a zero count, an unset status) are left out, as protobuf's own JSON writers do.
 *
 *   {"resourceSpans":[{"resource":{"attributes":[...]},"scopeSpans":[
 *     {"scope":{"name":"beagle","version":V},"spans":[
 *       {"traceId":hex32,"spanId":hex16,"traceState":s,"parentSpanId":hex16,"flags":n,
 *        "name":s,"kind":n,"startTimeUnixNano":"ns","endTimeUnixNano":"ns",
 *        "attributes":[{"key":k,"value":AnyValue}],"droppedAttributesCount":n,
 *        "events":[{"timeUnixNano":"ns","name":s,"attributes":[...],"droppedAttributesCount":n}],
 *        "droppedEventsCount":n,"status":{"message":s,"code":n}}]}]}]}
 *
 *   {"resourceLogs":[{"resource":{...},"scopeLogs":[{"scope":{...},"logRecords":[
 *     {"timeUnixNano":"ns","observedTimeUnixNano":"ns","severityNumber":n,"severityText":s,
 *      "body":{"stringValue":s},"attributes":[...],"flags":n,"traceId":hex32,"spanId":hex16}]}]}]}
 *
 * AnyValue is {"stringValue":s}, {"boolValue":b}, {"intValue":"n"}, {"doubleValue":x} or
 * {"arrayValue":{"values":[AnyValue...]}}. Items are grouped by their instrumentation scope (one
 * scopeSpans or scopeLogs per scope name, in the order the scopes first appear, the items in
 * batch order); the scope "beagle" carries beagle's version. Resource attributes are the
 * caller's, with service.name "beagle" unless given. Strings that are not valid UTF-8 (a plugin
 * may set any bytes) have each bad byte replaced by U+FFFD, so the body is always valid JSON
 * text that a protobuf parser takes. */
#include "export/encode_otlp_json.h"
#include "export/encode_util.h"
#include "metrics/expo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct st {
  bg_buf *out;
  int rc;
} st;

static void put(st *s, const void *p, size_t n) {
  if (s->rc == 0) s->rc = bg__buf_put(s->out, p, n);
}
#define PUTL(s, lit) put(s, lit, sizeof lit - 1)

/* The length of the valid UTF-8 sequence at p (1-4; n > 0 bytes left), or 0 when it is not
 * one (overlong, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0], cp, min;
  size_t k;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0)
    k = 1, cp = c & 0x1f, min = 0x80;
  else if ((c & 0xf0) == 0xe0)
    k = 2, cp = c & 0x0f, min = 0x800;
  else if ((c & 0xf8) == 0xf0)
    k = 3, cp = c & 0x07, min = 0x10000;
  else
    return 0;
  if (k >= n) return 0;
  for (size_t i = 1; i <= k; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return k + 1;
}

/* p[0..n) as a quoted JSON string. The common case (printable ASCII, nothing to escape) is one
 * copy; otherwise bad UTF-8 is repaired first and base's bg_buf_json_str escapes. */
static void put_str(st *s, const char *p, size_t n) {
  const unsigned char *u = (const unsigned char *)p;
  size_t i = 0;
  while (i < n && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\')
    i++;
  if (s->rc != 0) return;
  if (i == n) {
    if ((s->rc = bg_buf_reserve(s->out, n + 2)) != 0) return;
    char *w = s->out->data + s->out->len;
    w[0] = '"';
    memcpy(w + 1, p, n);
    w[n + 1] = '"';
    s->out->len += n + 2;
    s->out->data[s->out->len] = '\0';
    return;
  }
  size_t bad = 0;
  for (size_t j = i; j < n;) {
    size_t k = utf8_seq(u + j, n - j);
    if (k == 0) {
      bad++;
      k = 1;
    }
    j += k;
  }
  put(s, "\"", 1);
  if (bad == 0) {
    if (s->rc == 0) s->rc = bg_buf_json_str(s->out, p, n);
  } else {
    char *fixed = malloc(n + 2 * bad);
    if (fixed == NULL) {
      s->rc = BG_ENOMEM;
      return;
    }
    size_t w = 0;
    for (size_t j = 0; j < n;) {
      size_t k = utf8_seq(u + j, n - j);
      if (k == 0) {
        memcpy(fixed + w, "\xef\xbf\xbd", 3);
        w += 3;
        j++;
      } else {
        memcpy(fixed + w, p + j, k);
        w += k;
        j += k;
      }
    }
    if (s->rc == 0) s->rc = bg_buf_json_str(s->out, fixed, w);
    free(fixed);
  }
  put(s, "\"", 1);
}

/* A 64-bit unsigned integer as a quoted decimal. */
static void put_u64q(st *s, uint64_t v) {
  char num[BG__NUMLEN + 2];
  num[0] = '"';
  int n = 1 + bg__u64(num + 1, v);
  num[n++] = '"';
  put(s, num, (size_t)n);
}

static void put_u32(st *s, uint32_t v) {
  char num[BG__NUMLEN];
  put(s, num, (size_t)bg__u64(num, v));
}

static void put_hex(st *s, const uint8_t *id, size_t n) {
  char hex[2 * BG_TRACE_ID_LEN + 2];
  hex[0] = '"';
  bg_trace_hex(id, n, hex + 1);
  hex[2 * n + 1] = '"';
  put(s, hex, 2 * n + 2);
}

static int all_zero(const uint8_t *id, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (id[i]) return 0;
  return 1;
}

static void put_any(st *s, const bg_attr *a, int depth) {
  char num[BG__NUMLEN + 1];
  switch (a->type) {
  case BG_ATTR_STRING:
    PUTL(s, "{\"stringValue\":");
    put_str(s, a->v.s, a->n);
    put(s, "}", 1);
    break;
  case BG_ATTR_BOOL:
    if (a->v.b)
      PUTL(s, "{\"boolValue\":true}");
    else
      PUTL(s, "{\"boolValue\":false}");
    break;
  case BG_ATTR_INT: {
    PUTL(s, "{\"intValue\":\"");
    int64_t i = a->v.i;
    if (i < 0) put(s, "-", 1);
    put(s, num, (size_t)bg__u64(num, i < 0 ? 0 - (uint64_t)i : (uint64_t)i));
    PUTL(s, "\"}");
    break;
  }
  case BG_ATTR_DOUBLE:
    PUTL(s, "{\"doubleValue\":");
    if (isnan(a->v.d))
      PUTL(s, "\"NaN\"");
    else if (isinf(a->v.d))
      put(s, a->v.d > 0 ? "\"Infinity\"" : "\"-Infinity\"", a->v.d > 0 ? 10 : 11);
    else
      put(s, num, (size_t)bg__num(num, a->v.d));
    put(s, "}", 1);
    break;
  case BG_ATTR_ARRAY:
    PUTL(s, "{\"arrayValue\":{\"values\":[");
    for (uint32_t k = 0; k < a->n && depth < 4; k++) {
      if (k) put(s, ",", 1);
      put_any(s, &a->v.a[k], depth + 1);
    }
    PUTL(s, "]}}");
    break;
  default: /* a type this encoder does not know: an empty AnyValue, which OTLP allows */
    PUTL(s, "{}");
  }
}

/* ,"attributes":[...] when there are any */
static void put_attrs(st *s, const bg_attr *attrs, uint32_t n) {
  if (n == 0) return;
  PUTL(s, ",\"attributes\":[");
  for (uint32_t k = 0; k < n; k++) {
    if (k) put(s, ",", 1);
    PUTL(s, "{\"key\":");
    put_str(s, attrs[k].key, attrs[k].klen);
    PUTL(s, ",\"value\":");
    put_any(s, &attrs[k], 0);
    put(s, "}", 1);
  }
  put(s, "]", 1);
}

static void put_dropped(st *s, const char *field_lit, size_t flen, uint32_t n) {
  if (n == 0) return;
  put(s, field_lit, flen);
  put_u32(s, n);
}
#define PUT_DROPPED(s, lit, n) put_dropped(s, lit, sizeof lit - 1, n)

static void put_resource(st *s, const bg_otlp_json_opts *o) {
  PUTL(s, "{\"resource\":{\"attributes\":[");
  int named = 0, n = o ? o->nresource : 0;
  for (int k = 0; k < n; k++)
    if (strcmp(o->resource[2 * k], "service.name") == 0) named = 1;
  if (!named) PUTL(s, "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"beagle\"}}");
  for (int k = 0; k < n; k++) {
    if (k > 0 || !named) put(s, ",", 1);
    PUTL(s, "{\"key\":");
    put_str(s, o->resource[2 * k], strlen(o->resource[2 * k]));
    PUTL(s, ",\"value\":{\"stringValue\":");
    put_str(s, o->resource[2 * k + 1], strlen(o->resource[2 * k + 1]));
    PUTL(s, "}}");
  }
  PUTL(s, "]}");
}

static void put_scope(st *s, const char *name, size_t len) {
  PUTL(s, "{\"scope\":{\"name\":");
  if (len == 0 || (len == 6 && memcmp(name, "beagle", 6) == 0)) {
    PUTL(s, "\"beagle\",\"version\":\"" BG_VERSION "\"}");
    return;
  }
  put_str(s, name, len);
  put(s, "}", 1);
}

/* ---- grouping by scope --------------------------------------------------------------------- */

typedef struct scope_ent {
  const char *p;
  uint32_t n;
  size_t first, last; /* indexes of the first and last item of the scope */
} scope_ent;

typedef struct groups {
  scope_ent *ents;
  size_t nents, cap;
  size_t *next; /* next[i]: the next item of i's scope, or (size_t)-1 */
} groups;

static int same_scope(const scope_ent *e, const char *p, uint32_t n) {
  return e->n == n && (e->p == p || memcmp(e->p, p, n) == 0);
}

/* Adds item i of scope (p, n); BG_ENOMEM when out of memory. */
static int group_add(groups *g, size_t i, const char *p, uint32_t n, size_t *hint) {
  size_t k = *hint;
  if (k >= g->nents || !same_scope(&g->ents[k], p, n)) {
    for (k = 0; k < g->nents && !same_scope(&g->ents[k], p, n); k++) {
    }
    if (k == g->nents) {
      if (g->nents == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 8;
        scope_ent *e = realloc(g->ents, cap * sizeof *e);
        if (e == NULL) return BG_ENOMEM;
        g->ents = e;
        g->cap = cap;
      }
      g->ents[k] = (scope_ent){p, n, i, i};
      g->nents++;
    } else {
      g->next[g->ents[k].last] = i;
      g->ents[k].last = i;
    }
    *hint = k;
  } else {
    g->next[g->ents[k].last] = i;
    g->ents[k].last = i;
  }
  g->next[i] = (size_t)-1;
  return 0;
}

static void groups_free(groups *g) {
  free(g->ents);
  free(g->next);
}

/* ---- spans --------------------------------------------------------------------------------- */

static void put_span(st *s, const bg_span_view *v) {
  PUTL(s, "{\"traceId\":");
  put_hex(s, v->ctx.trace_id, BG_TRACE_ID_LEN);
  PUTL(s, ",\"spanId\":");
  put_hex(s, v->ctx.span_id, BG_SPAN_ID_LEN);
  size_t tslen = 0;
  const char *ts = v->ctx.state ? bg_tracestate_str(v->ctx.state, &tslen) : NULL;
  if (ts && tslen) {
    PUTL(s, ",\"traceState\":");
    put_str(s, ts, tslen);
  }
  if (!all_zero(v->parent_span_id, BG_SPAN_ID_LEN)) {
    PUTL(s, ",\"parentSpanId\":");
    put_hex(s, v->parent_span_id, BG_SPAN_ID_LEN);
  }
  PUT_DROPPED(s, ",\"flags\":", v->ctx.flags);
  PUTL(s, ",\"name\":");
  put_str(s, v->name, v->name_len);
  PUT_DROPPED(s, ",\"kind\":", (uint32_t)(v->kind > 0 ? v->kind : 0));
  PUTL(s, ",\"startTimeUnixNano\":");
  put_u64q(s, v->start_ns);
  PUTL(s, ",\"endTimeUnixNano\":");
  put_u64q(s, v->end_ns);
  put_attrs(s, v->attrs, v->nattrs);
  PUT_DROPPED(s, ",\"droppedAttributesCount\":", v->dropped_attrs);
  if (v->nevents > 0) {
    PUTL(s, ",\"events\":[");
    for (uint32_t k = 0; k < v->nevents; k++) {
      const bg_span_event_view *e = &v->events[k];
      if (k) put(s, ",", 1);
      PUTL(s, "{\"timeUnixNano\":");
      put_u64q(s, e->time_ns);
      PUTL(s, ",\"name\":");
      put_str(s, e->name, e->name_len);
      put_attrs(s, e->attrs, e->nattrs);
      PUT_DROPPED(s, ",\"droppedAttributesCount\":", e->dropped_attrs);
      put(s, "}", 1);
    }
    put(s, "]", 1);
  }
  PUT_DROPPED(s, ",\"droppedEventsCount\":", v->dropped_events);
  if (v->status != BG_STATUS_UNSET || v->status_len > 0) {
    PUTL(s, ",\"status\":{");
    if (v->status_len > 0) {
      PUTL(s, "\"message\":");
      put_str(s, v->status_msg, v->status_len);
      if (v->status != BG_STATUS_UNSET) put(s, ",", 1);
    }
    PUT_DROPPED(s, "\"code\":", (uint32_t)(v->status > 0 ? v->status : 0));
    put(s, "}", 1);
  }
  put(s, "}", 1);
}

static int gzip_into(int (*fn)(const void *, const bg_otlp_json_opts *, bg_buf *), const void *b,
                     const bg_otlp_json_opts *o, bg_buf *out) {
  bg_buf text = {0};
  int rc = fn(b, o, &text);
  if (rc == 0 && text.len > 0) rc = bg_gzip(text.data, text.len, 0, out);
  bg_buf_free(&text);
  return rc;
}

static int traces(const void *vb, const bg_otlp_json_opts *o, bg_buf *out) {
  const bg_span_batch *b = vb;
  size_t n = bg_span_batch_len(b);
  if (n == 0) return 0;
  groups g = {0};
  if ((g.next = malloc(n * sizeof *g.next)) == NULL) return BG_ENOMEM;
  bg_span_view v;
  size_t hint = 0;
  for (size_t i = 0; i < n; i++) {
    bg_span_batch_view(b, i, &v);
    if (group_add(&g, i, v.scope, v.scope_len, &hint) != 0) {
      groups_free(&g);
      return BG_ENOMEM;
    }
  }
  st s = {.out = out};
  size_t start = out->len;
  /* a guess of the size, so the common spans are written without growing */
  s.rc = bg_buf_reserve(out, 400 * n + 256);
  PUTL(&s, "{\"resourceSpans\":[");
  put_resource(&s, o);
  PUTL(&s, ",\"scopeSpans\":[");
  for (size_t k = 0; k < g.nents && s.rc == 0; k++) {
    if (k) put(&s, ",", 1);
    put_scope(&s, g.ents[k].p, g.ents[k].n);
    PUTL(&s, ",\"spans\":[");
    for (size_t i = g.ents[k].first; i != (size_t)-1 && s.rc == 0; i = g.next[i]) {
      if (i != g.ents[k].first) put(&s, ",", 1);
      bg_span_batch_view(b, i, &v);
      put_span(&s, &v);
    }
    PUTL(&s, "]}");
  }
  PUTL(&s, "]}]}");
  groups_free(&g);
  if (s.rc != 0) out->len = start;
  return s.rc;
}

int bg_encode_otlp_traces(const bg_span_batch *b, const bg_otlp_json_opts *o, bg_buf *out) {
  if (o && o->gzip) return gzip_into(traces, b, o, out);
  return traces(b, o, out);
}

/* ---- logs ---------------------------------------------------------------------------------- */

static const char *severity_text(int sev, size_t *len) {
  static const char *const names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};
  static const size_t lens[] = {5, 5, 4, 4, 5, 5};
  if (sev < 1 || sev > 24) return *len = 0, NULL;
  int k = (sev - 1) / 4;
  *len = lens[k];
  return names[k];
}

static void put_log(st *s, const bg_log_view *v) {
  PUTL(s, "{\"timeUnixNano\":");
  put_u64q(s, v->time_ns);
  PUTL(s, ",\"observedTimeUnixNano\":");
  put_u64q(s, v->time_ns);
  if (v->severity > 0) {
    PUTL(s, ",\"severityNumber\":");
    put_u32(s, (uint32_t)v->severity);
  }
  size_t tlen;
  const char *text = severity_text(v->severity, &tlen);
  if (text) {
    PUTL(s, ",\"severityText\":\"");
    put(s, text, tlen);
    put(s, "\"", 1);
  }
  PUTL(s, ",\"body\":{\"stringValue\":");
  put_str(s, v->body, v->body_len);
  put(s, "}", 1);
  put_attrs(s, v->attrs, v->nattrs);
  PUT_DROPPED(s, ",\"flags\":", v->flags);
  if (!all_zero(v->trace_id, BG_TRACE_ID_LEN)) {
    PUTL(s, ",\"traceId\":");
    put_hex(s, v->trace_id, BG_TRACE_ID_LEN);
  }
  if (!all_zero(v->span_id, BG_SPAN_ID_LEN)) {
    PUTL(s, ",\"spanId\":");
    put_hex(s, v->span_id, BG_SPAN_ID_LEN);
  }
  put(s, "}", 1);
}

static int logs(const void *vb, const bg_otlp_json_opts *o, bg_buf *out) {
  const bg_log_batch *b = vb;
  size_t n = bg_log_batch_len(b);
  if (n == 0) return 0;
  groups g = {0};
  if ((g.next = malloc(n * sizeof *g.next)) == NULL) return BG_ENOMEM;
  bg_log_view v;
  size_t hint = 0;
  for (size_t i = 0; i < n; i++) {
    bg_log_batch_view(b, i, &v);
    if (group_add(&g, i, v.scope, v.scope_len, &hint) != 0) {
      groups_free(&g);
      return BG_ENOMEM;
    }
  }
  st s = {.out = out};
  size_t start = out->len;
  s.rc = bg_buf_reserve(out, 300 * n + 256);
  PUTL(&s, "{\"resourceLogs\":[");
  put_resource(&s, o);
  PUTL(&s, ",\"scopeLogs\":[");
  for (size_t k = 0; k < g.nents && s.rc == 0; k++) {
    if (k) put(&s, ",", 1);
    put_scope(&s, g.ents[k].p, g.ents[k].n);
    PUTL(&s, ",\"logRecords\":[");
    for (size_t i = g.ents[k].first; i != (size_t)-1 && s.rc == 0; i = g.next[i]) {
      if (i != g.ents[k].first) put(&s, ",", 1);
      bg_log_batch_view(b, i, &v);
      put_log(&s, &v);
    }
    PUTL(&s, "]}");
  }
  PUTL(&s, "]}]}");
  groups_free(&g);
  if (s.rc != 0) out->len = start;
  return s.rc;
}

int bg_encode_otlp_logs(const bg_log_batch *b, const bg_otlp_json_opts *o, bg_buf *out) {
  if (o && o->gzip) return gzip_into(logs, b, o, out);
  return logs(b, o, out);
}
