/* http_server_respond.c: what the server answers (see http_server_int.h): response heads, the
 * routes answered in C (static responses and render callbacks) and the hand-off to the handler. */
#include "net/http_server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPARE_MIN (1024 * 1024) /* smaller output buffers are not worth keeping */

/* ---- heads ------------------------------------------------------------------------------ */

static const struct {
  int code;
  const char *text;
} reasons[] = {
    {100, "Continue"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {413, "Payload Too Large"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Entity"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

static const char *reason(int status) {
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (reasons[i].code == status) return reasons[i].text;
  return "Unknown";
}

static int body_allowed(int status) {
  return status >= 200 && status != 204 && status != 304;
}

void bg__http_count_status(bg_http_server *srv, int status) {
  srv->stats.requests++;
  if (status >= 400 && status < 500)
    srv->stats.errors_4xx++;
  else if (status >= 500)
    srv->stats.errors_5xx++;
}

/* Appends status line, Server, Content-Type and Content-Length (no blank line). */
int bg__http_put_head(bg_buf *b, int status, const char *ctype, size_t body_len) {
  int rc = bg_buf_printf(b, "HTTP/1.1 %d %s\r\nServer: beagle\r\n", status, reason(status));
  if (rc == 0 && ctype && *ctype) rc = bg_buf_printf(b, "Content-Type: %s\r\n", ctype);
  if (rc == 0 && status >= 200 && status != 204)
    rc = bg_buf_printf(b, "Content-Length: %zu\r\n", body_len);
  return rc;
}

static int put_conn_header(bg_buf *b, int kind) {
  if (kind == 1) return bg_buf_puts(b, "Connection: close\r\n");
  if (kind == 2) return bg_buf_puts(b, "Connection: keep-alive\r\n");
  return 0;
}

/* "traceparent: 00-<trace>-<span>-<flags>\r\n": the header a traced response carries. */
#define TP_PREFIX "traceparent: "
#define TP_LINE_LEN (sizeof TP_PREFIX - 1 + 55 + 2)
_Static_assert(TP_LINE_LEN <= sizeof(((conn *)0)->pending_tp), "conn.pending_tp holds a line");

/* Appends status line, the usual headers, the Connection header, the traceparent line (tp:
 * TP_LINE_LEN bytes, or NULL), res's headers and the blank line to b; the Content-Length is
 * blen. */
static int put_response_head(bg_buf *b, int status, const bg_http_response *res, size_t blen,
                             int ckind, const char *tp) {
  const char *ctype = res->content_type ? res->content_type : "application/json";
  int rc = bg__http_put_head(b, status, ctype, blen);
  if (rc == 0) rc = put_conn_header(b, ckind);
  if (rc == 0 && tp) rc = bg_buf_append(b, tp, TP_LINE_LEN);
  if (rc == 0 && res->headers) rc = bg_buf_puts(b, res->headers);
  if (rc == 0) rc = bg_buf_append(b, "\r\n", 2);
  return rc;
}

static int valid_status(int status) {
  return status < 200 || status > 999 ? 500 : status; /* 1xx would need a second response */
}

/* ---- dispatch --------------------------------------------------------------------------- */

static route *find_route(bg_http_server *srv, const char *path, size_t len) {
  for (size_t i = 0; i < srv->nroutes; i++) {
    route *r = &srv->routes[i];
    if (r->path_len == len && memcmp(r->path, path, len) == 0) return r;
  }
  return NULL;
}

/* Copies a static response into c->out: usually one memcpy, two when a Connection header or a
 * traceparent line (tp, or NULL) has to go in. Safe against later bg_http_set_static because
 * nothing keeps r->resp. */
static int serve_static(conn *c, route *r, int head, int ckind, const char *tp) {
  size_t n = head ? r->head_len + 2 : r->resp_len;
  if (ckind == 0 && tp == NULL) return bg_buf_append(&c->out, r->resp, n);
  if (ckind == 0) { /* the usual traced hit: three copies into memory reserved once */
    if (bg_buf_reserve(&c->out, n + TP_LINE_LEN) != 0) return BG_ENOMEM;
    char *p = c->out.data + c->out.len;
    memcpy(p, r->resp, r->head_len);
    memcpy(p + r->head_len, tp, TP_LINE_LEN);
    memcpy(p + r->head_len + TP_LINE_LEN, r->resp + r->head_len, n - r->head_len);
    c->out.len += n + TP_LINE_LEN;
    c->out.data[c->out.len] = '\0';
    return 0;
  }
  int rc = bg_buf_append(&c->out, r->resp, r->head_len);
  if (rc == 0) rc = put_conn_header(&c->out, ckind);
  if (rc == 0 && tp) rc = bg_buf_append(&c->out, tp, TP_LINE_LEN);
  if (rc == 0) rc = bg_buf_append(&c->out, r->resp + r->head_len, n - r->head_len);
  return rc;
}

/* Points req into c->rq (cutting the target at '?'). */
static void build_request(conn *c, bg_http_request *req) {
  char *base = c->rq.data;
  char *url = base + c->url_off;
  char *q = memchr(url, '?', c->url_len);
  req->method = llhttp_method_name((llhttp_method_t)c->parser.method);
  req->path = url;
  req->path_len = q ? (size_t)(q - url) : c->url_len;
  if (q) {
    *q = '\0';
    req->query = q + 1;
    req->query_len = c->url_len - req->path_len - 1;
  } else {
    req->query = "";
    req->query_len = 0;
  }
  for (size_t i = 0; i < c->nhdr; i++) {
    c->hdrs[i].name = base + c->hoff[i].name_off;
    c->hdrs[i].name_len = c->hoff[i].name_len;
    c->hdrs[i].value = base + c->hoff[i].value_off;
    c->hdrs[i].value_len = c->hoff[i].value_len;
  }
  req->headers = c->hdrs;
  req->nheaders = c->nhdr;
  req->body = base + c->body_off;
  req->body_len = c->body_len;
  req->peer = c->peer;
  req->peer_loopback = c->peer_loopback;
  req->span = NULL;
  req->ticket = ++c->srv->next_ticket;
}

/* What a route answered, for its span. */
typedef struct answer {
  int status;
  const char *route; /* borrowed, NULL when unknown */
} answer;

static int serve_handler(conn *c, int head, int ckind, bg_span *span, const char *tp, answer *a) {
  bg_http_server *srv = c->srv;
  bg_http_request req;
  build_request(c, &req);
  req.span = span;
  bg_http_response res = {200, NULL, NULL, 0, NULL, NULL, 0};
  srv->cb(srv->ud, &req, &res);
  if (res.defer && srv->nwaiting >= (srv->lim.max_connections + 3) / 4) {
    /* waiting connections are never evicted: they may hold a quarter of the slots at most */
    static const char busy[] = "{\"error\":\"too many requests waiting\",\"status\":503,"
                               "\"detail\":\"too many answers are awaited already; retry later\"}";
    res = (bg_http_response){503, "application/json", busy, sizeof busy - 1, NULL, res.route, 0};
  } else if (res.defer) { /* answered later by bg_http_answer: its span waits with it */
    srv->nwaiting++;
    c->pending = req.ticket;
    c->pending_head = (unsigned)head;
    c->pending_has_tp = tp != NULL;
    if (tp) memcpy(c->pending_tp, tp, TP_LINE_LEN);
    c->pending_route[0] = '\0';
    if (res.route && strlen(res.route) < sizeof c->pending_route)
      strcpy(c->pending_route, res.route);
    a->status = 0;
    return 0;
  }

  int status = valid_status(res.status);
  size_t blen = res.body && body_allowed(status) ? res.body_len : 0;
  bg__http_count_status(srv, status);
  a->status = status;
  a->route = res.route;
  int rc = put_response_head(&c->out, status, &res, blen, ckind, tp);
  if (rc == 0 && !head && blen) rc = bg_buf_append(&c->out, res.body, blen);
  return rc;
}

/* A render route writes its body into c->out behind a gap as long as the route's last head;
 * the head, known once the body is, goes into the gap. When its length differs (the first
 * response, a Content-Length with another digit count, another Connection header), the body
 * moves once; otherwise the body is never copied between the renderer and the socket. */
static int serve_render(conn *c, route *r, int head, int ckind, bg_span *span, const char *tp,
                        answer *a) {
  static const char oom[] = "{\"error\":\"out of memory\",\"status\":500}";
  bg_http_server *srv = c->srv;
  bg_buf *out = &c->out;
  /* cb may replace the route table (it must not, but stay safe): copy what is needed */
  bg_http_render_cb cb = r->render;
  void *ud = r->render_ud;
  size_t gap = r->head_hint, start = out->len;
  bg_http_request req;
  build_request(c, &req);
  req.span = span;
  if (start == 0 && srv->spare.cap > out->cap) { /* the spare is empty memory, already mapped */
    bg_buf t = *out;
    *out = srv->spare;
    srv->spare = t;
  }
  if (bg_buf_reserve(out, gap) != 0) return BG_ENOMEM;
  out->len = start + gap;
  size_t body_at = out->len;
  bg_http_response res = {200, NULL, NULL, 0, NULL, NULL, 0};
  int rc = cb(ud, &req, &res, out);
  if (rc == 0 && res.body && res.body_len) rc = bg_buf_append(out, res.body, res.body_len);
  if (rc != 0) {
    out->len = body_at;
    res = (bg_http_response){500, "application/json", NULL, 0, NULL, NULL, 0};
    rc = bg_buf_append(out, oom, sizeof oom - 1);
    if (rc != 0) return rc;
  }
  int status = valid_status(res.status);
  size_t blen = body_allowed(status) ? out->len - body_at : 0;
  bg__http_count_status(srv, status);
  a->status = status;
  bg_buf_reset(&srv->head);
  rc = put_response_head(&srv->head, status, &res, blen, ckind, tp);
  if (rc == 0 && srv->head.len > gap) rc = bg_buf_reserve(out, srv->head.len - gap);
  if (rc != 0) {
    out->len = start;
    return rc;
  }
  size_t hl = srv->head.len;
  if (hl != gap) memmove(out->data + start + hl, out->data + body_at, blen);
  memcpy(out->data + start, srv->head.data, hl);
  out->len = start + hl + (head ? 0 : blen);
  out->data[out->len] = '\0';
  route *now = find_route(srv, req.path, req.path_len);
  if (now && now->render == cb) now->head_hint = hl;
  return 0;
}

/* ---- the request's server span ----------------------------------------------------------- */

static int name_is(const char *a, size_t n, const char *lower, size_t ln) {
  if (n != ln) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] + 32) : a[i];
    if (ch != lower[i]) return 0;
  }
  return 1;
}

/* Header i's value without the optional whitespace around it. */
static const char *header_value(conn *c, size_t i, size_t *len) {
  const char *v = c->rq.data + c->hoff[i].value_off;
  size_t n = c->hoff[i].value_len;
  while (n && (*v == ' ' || *v == '\t'))
    v++, n--;
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  *len = n;
  return v;
}

/* The caller's context from its traceparent and tracestate headers into *out (zero when there is
 * no valid one: two traceparent headers are no valid one either). Tracestate lines are joined
 * with ',' as one header (W3C Trace Context 3.3.1.1). */
static void remote_parent(conn *c, bg_span_ctx *out) {
  size_t tp = 0, ntp = 0, nts = 0, ts = 0;
  for (size_t i = 0; i < c->nhdr; i++) {
    const char *name = c->rq.data + c->hoff[i].name_off;
    size_t n = c->hoff[i].name_len;
    if (n == 11 && name_is(name, n, "traceparent", 11)) {
      tp = i;
      ntp++;
    } else if (n == 10 && name_is(name, n, "tracestate", 10)) {
      if (nts++ == 0) ts = i;
    }
  }
  memset(out, 0, sizeof *out);
  if (ntp != 1) return;
  size_t len;
  const char *v = header_value(c, tp, &len);
  if (bg_traceparent_parse(v, len, out) != 0 || nts == 0) return;
  if (nts == 1) {
    v = header_value(c, ts, &len);
    bg_tracestate_parse(out, v, len);
    return;
  }
  bg_buf all = {0};
  int rc = 0;
  for (size_t i = ts; i < c->nhdr && rc == 0; i++) {
    const char *name = c->rq.data + c->hoff[i].name_off;
    if (!name_is(name, c->hoff[i].name_len, "tracestate", 10)) continue;
    v = header_value(c, i, &len);
    if (all.len) rc = bg_buf_append(&all, ",", 1);
    if (rc == 0) rc = bg_buf_append(&all, v, len);
  }
  if (rc == 0) bg_tracestate_parse(out, all.data, all.len);
  bg_buf_free(&all);
}

/* Begins the request's span as a child of the caller's context and current; *prev is what was
 * current before. */
static bg_span *span_begin(conn *c, const char *method, bg_span_ctx *prev) {
  bg_tracer *t = c->srv->tracer;
  bg_span_ctx parent;
  remote_parent(c, &parent);
  bg_trace_swap(t, NULL, prev);
  bg_span *s = bg_span_begin(t, &parent, method, strlen(method), BG_SPAN_SERVER, NULL, 0);
  bg_span_ctx_clear(&parent);
  return s;
}

/* 4 bytes as 8 lower-case hex digits, all at once in a 64-bit word (each nibble spread to a
 * byte, then '0' or 'a' - 10 added): the traceparent goes out with every response, and this
 * writes it in a quarter of bg_traceparent_format's instructions (the same bytes). */
static inline __attribute__((always_inline)) void hex4(const uint8_t *in, char *out) {
  uint64_t x = (uint64_t)in[0] << 24 | (uint64_t)in[1] << 16 | (uint64_t)in[2] << 8 | in[3];
  x = (x | (x << 16)) & 0x0000FFFF0000FFFFull;
  x = (x | (x << 8)) & 0x00FF00FF00FF00FFull;
  x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0Full;
  uint64_t letter = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
  x += 0x3030303030303030ull + letter * ('a' - '0' - 10);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  x = __builtin_bswap64(x); /* the first digit is the word's high byte */
#endif
  memcpy(out, &x, 8);
}

static inline __attribute__((always_inline)) void put_hex(const uint8_t *id, size_t n, char *out) {
  for (size_t i = 0; i < n; i += 4)
    hex4(id + i, out + 2 * i);
}

/* The traceparent line of span s into out[TP_LINE_LEN]. */
static void tp_line(const bg_span *s, char *out) {
  const bg_span_ctx *c = bg_span_context(s);
  memcpy(out, TP_PREFIX "00-", sizeof TP_PREFIX - 1 + 3);
  char *p = out + sizeof TP_PREFIX - 1;
  put_hex(c->trace_id, BG_TRACE_ID_LEN, p + 3);
  p[35] = '-';
  put_hex(c->span_id, BG_SPAN_ID_LEN, p + 36);
  p[52] = '-';
  p[53] = '0';
  p[54] = bg_span_ctx_sampled(c) ? '1' : '0';
  memcpy(p + 55, "\r\n", 2);
}

#define SET_STR(s, k, v, n) bg_span_set_str(s, k, sizeof k - 1, v, n)
#define SET_INT(s, k, v) bg_span_set_int(s, k, sizeof k - 1, v)

/* The attributes of OpenTelemetry's HTTP server semantic conventions, and the name
 * "{method} {route}" when the route is known. Only for a recording span. */
static void span_describe(conn *c, bg_span *s, const char *method, const char *path, size_t plen,
                          const answer *a) {
  bg_http_server *srv = c->srv;
  size_t mlen = strlen(method);
  if (a->route) {
    size_t rlen = strlen(a->route);
    char name[256];
    if (mlen + 1 + rlen <= sizeof name) {
      memcpy(name, method, mlen);
      name[mlen] = ' ';
      memcpy(name + mlen + 1, a->route, rlen);
      bg_span_set_name(s, name, mlen + 1 + rlen);
    }
    SET_STR(s, "http.route", a->route, rlen);
  }
  SET_STR(s, "http.request.method", method, mlen);
  SET_STR(s, "url.path", path, plen);
  SET_STR(s, "url.scheme", "http", 4);
  SET_INT(s, "http.response.status_code", a->status);
  SET_STR(s, "network.protocol.version", c->parser.http_minor == 0 ? "1.0" : "1.1", 3);
  SET_STR(s, "network.peer.address", c->peer, strlen(c->peer));
  SET_STR(s, "client.address", c->peer, strlen(c->peer));
  if (srv->port <= 0) srv->port = bg_http_port(srv);
  if (srv->port > 0) SET_INT(s, "server.port", srv->port);
  for (size_t i = 0; i < c->nhdr; i++) {
    const char *name = c->rq.data + c->hoff[i].name_off;
    size_t n = c->hoff[i].name_len, len;
    if (name_is(name, n, "user-agent", 10)) {
      const char *v = header_value(c, i, &len);
      SET_STR(s, "user_agent.original", v, len);
    } else if (name_is(name, n, "host", 4)) {
      /* the name the client asked for, without its port ("[::1]:80" -> "::1") */
      const char *v = header_value(c, i, &len);
      const char *e = v + len;
      if (len && *v == '[') {
        const char *rb = memchr(v, ']', len);
        if (rb) v++, e = rb;
      } else {
        const char *colon = memchr(v, ':', len);
        if (colon) e = colon;
      }
      if (e > v) SET_STR(s, "server.address", v, (size_t)(e - v));
    }
  }
  if (a->status >= 500) {
    char code[8];
    int n = snprintf(code, sizeof code, "%d", a->status);
    SET_STR(s, "error.type", code, (size_t)n);
    bg_span_set_status(s, BG_STATUS_ERROR, NULL, 0);
  }
}

/* Recording spans a connection keeps until their responses are written: past this, a span ends
 * when its response is queued (a client pipelining requests without reading the answers must
 * not make the server hold spans without bound; the output limit alone lets ~5,000 queue). */
#define SPANS_PENDING_MAX 64

/* Keeps s until its response is written; ends it now when there is no room to keep it. */
static void span_keep(conn *c, bg_span *s) {
  /* a closed connection (the handler closed the server) writes nothing more */
  if (c->closed || c->nspans >= SPANS_PENDING_MAX) {
    bg_span_end(c->srv->tracer, s, 0);
    return;
  }
  if (c->nspans == c->spans_cap) {
    uint32_t cap = c->spans_cap ? c->spans_cap * 2 : 4;
    bg_span **n = realloc(c->spans, cap * sizeof *n);
    if (n == NULL) {
      bg_span_end(c->srv->tracer, s, 0);
      return;
    }
    c->spans = n;
    c->spans_cap = cap;
  }
  c->spans[c->nspans++] = s;
}

void bg__http_spans_end(conn *c, uint32_t n) {
  if (n > c->nspans) n = c->nspans;
  if (n == 0) return;
  for (uint32_t i = 0; i < n; i++)
    bg_span_end(c->srv->tracer, c->spans[i], 0);
  memmove(c->spans, c->spans + n, (c->nspans - n) * sizeof *c->spans);
  c->nspans -= n;
  c->spans_inflight = c->spans_inflight > n ? c->spans_inflight - n : 0;
}

void bg_http_set_tracer(bg_http_server *srv, bg_tracer *t) {
  srv->tracer = t;
}

/* ---- dispatch, continued ----------------------------------------------------------------- */

static int serve(conn *c, route *r, int head, int ckind, bg_span *span, const char *tp, answer *a) {
  bg_http_server *srv = c->srv;
  if (r && r->render) return serve_render(c, r, head, ckind, span, tp, a);
  if (r) {
    srv->stats.static_hits++;
    bg__http_count_status(srv, r->status);
    a->status = r->status;
    return serve_static(c, r, head, ckind, tp);
  }
  return serve_handler(c, head, ckind, span, tp, a);
}

int bg__http_respond(conn *c, int ckind) {
  bg_http_server *srv = c->srv;
  int method = c->parser.method;
  int head = method == HTTP_HEAD;
  const char *url = c->rq.data + c->url_off;
  const char *q = memchr(url, '?', c->url_len);
  size_t plen = q ? (size_t)(q - url) : c->url_len;
  route *r = NULL;
  if (method == HTTP_GET || head) r = find_route(srv, url, plen);
  answer a = {500, NULL};
  if (srv->tracer == NULL) return serve(c, r, head, ckind, NULL, NULL, &a);

  const char *mname = llhttp_method_name((llhttp_method_t)method);
  bg_span_ctx prev;
  bg_span *s = span_begin(c, mname, &prev);
  char tp[TP_LINE_LEN];
  tp_line(s, tp);
  int rc = serve(c, r, head, ckind, s, tp, &a);
  bg_trace_restore(srv->tracer, &prev);
  if (rc == 0 && c->pending && a.status == 0) { /* deferred: described and kept at its answer */
    if (s->recording)
      c->pending_span = s;
    else
      bg_span_end(srv->tracer, s, 0);
    return 0;
  }
  if (s->recording) {
    char rp[256];
    if (r != NULL) { /* a C route is its own template (r itself may be gone: not read) */
      a.route = NULL;
      if (plen < sizeof rp) {
        memcpy(rp, url, plen);
        rp[plen] = '\0';
        a.route = rp;
      }
    }
    span_describe(c, s, mname, url, plen, &a);
  }
  /* a span that records nothing has no end time to get right: it goes now */
  if (rc != 0 || !s->recording)
    bg_span_end(srv->tracer, s, 0);
  else
    span_keep(c, s);
  return rc;
}

/* ---- deferred answers ------------------------------------------------------------------- */

int bg__http_answer_pending(conn *c, const bg_http_response *res) {
  bg_http_server *srv = c->srv;
  int status = valid_status(res->status);
  size_t blen = res->body && body_allowed(status) ? res->body_len : 0;
  bg__http_count_status(srv, status);
  int rc =
      put_response_head(&c->out, status, res, blen, 1, c->pending_has_tp ? c->pending_tp : NULL);
  if (rc == 0 && !c->pending_head && blen) rc = bg_buf_append(&c->out, res->body, blen);
  bg_span *s = c->pending_span;
  c->pending = 0;
  c->pending_span = NULL;
  srv->nwaiting--;
  if (s) {
    answer a = {status, res->route ? res->route : c->pending_route[0] ? c->pending_route : NULL};
    const char *url = c->rq.data + c->url_off;
    size_t plen = strnlen(url, c->url_len); /* build_request cut the target at '?' */
    span_describe(c, s, llhttp_method_name((llhttp_method_t)c->parser.method), url, plen, &a);
    if (rc != 0)
      bg_span_end(srv->tracer, s, 0);
    else
      span_keep(c, s);
  }
  return rc;
}

void bg__http_pending_drop(conn *c) {
  if (c->pending == 0) return;
  if (c->pending_span) bg_span_end(c->srv->tracer, c->pending_span, 0);
  c->pending_span = NULL;
  c->pending = 0;
  c->srv->nwaiting--;
}

/* ---- the route table -------------------------------------------------------------------- */

static void free_route(route *r) {
  free(r->path);
  free(r->resp);
}

/* The route for path, added empty when there is none yet. NULL when out of memory. */
static route *route_for(bg_http_server *srv, const char *path, size_t plen) {
  route *r = find_route(srv, path, plen);
  if (r) return r;
  char *p = malloc(plen + 1);
  route *rs = p ? realloc(srv->routes, (srv->nroutes + 1) * sizeof *rs) : NULL;
  if (rs == NULL) {
    free(p);
    return NULL;
  }
  srv->routes = rs;
  r = &rs[srv->nroutes++];
  memset(r, 0, sizeof *r);
  memcpy(p, path, plen + 1);
  r->path = p;
  r->path_len = plen;
  return r;
}

static void remove_route(bg_http_server *srv, const char *path) {
  route *r = find_route(srv, path, strlen(path));
  if (r == NULL) return;
  free_route(r);
  *r = srv->routes[--srv->nroutes];
}

int bg_http_set_static(bg_http_server *srv, const char *path, int status, const char *content_type,
                       const char *body, size_t body_len) {
  if (path == NULL) return BG_EINVAL;
  if (body == NULL) {
    remove_route(srv, path);
    return 0;
  }
  if (status < 200 || status > 999) return BG_EINVAL;
  bg_buf b = {0};
  if (!body_allowed(status)) body_len = 0;
  int rc =
      bg__http_put_head(&b, status, content_type ? content_type : "application/json", body_len);
  size_t head_len = b.len;
  if (rc == 0) rc = bg_buf_append(&b, "\r\n", 2);
  if (rc == 0) rc = bg_buf_append(&b, body, body_len);
  route *r = rc == 0 ? route_for(srv, path, strlen(path)) : NULL;
  if (r == NULL) {
    bg_buf_free(&b);
    return BG_ENOMEM;
  }
  free(r->resp);
  r->resp = b.data;
  r->resp_len = b.len;
  r->head_len = head_len;
  r->status = status;
  r->render = NULL;
  r->render_ud = NULL;
  return 0;
}

int bg_http_set_render(bg_http_server *srv, const char *path, bg_http_render_cb cb, void *ud) {
  if (path == NULL) return BG_EINVAL;
  if (cb == NULL) {
    remove_route(srv, path);
    return 0;
  }
  route *r = route_for(srv, path, strlen(path));
  if (r == NULL) return BG_ENOMEM;
  if (r->render == NULL) r->head_hint = 160; /* about a /metrics head, the first guess */
  free(r->resp);
  r->resp = NULL;
  r->resp_len = r->head_len = 0;
  r->render = cb;
  r->render_ud = ud;
  return 0;
}

void bg__http_keep_spare(bg_http_server *srv, bg_buf *b) {
  if (b->cap < SPARE_MIN || b->cap <= srv->spare.cap) return;
  bg_buf_free(&srv->spare);
  srv->spare = *b;
  bg_buf_reset(&srv->spare);
  *b = (bg_buf){0};
}

void bg__http_free_routes(bg_http_server *srv) {
  for (size_t i = 0; i < srv->nroutes; i++)
    free_route(&srv->routes[i]);
  free(srv->routes);
  srv->routes = NULL;
  srv->nroutes = 0;
  bg_buf_free(&srv->head);
  bg_buf_free(&srv->spare);
}
