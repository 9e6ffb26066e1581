/* test_http_server_trace: the server span of every request (bg_http_set_tracer): the caller's
 * traceparent and tracestate continued, malformed ones ignored, the sampled flag kept, the
 * response's traceparent on every kind of route, the span's name, attributes and status, the
 * span current while the handler runs and the previous context back after. The client thread
 * reads the finished spans through GET /spans, which the handler answers on the loop thread
 * (the tracer is the loop's). */
#include "test_http_server.h"

#include <ctype.h>

/* ---- loop side -------------------------------------------------------------------------- */

static uv_loop_t loop;
static bg_http_server *srv;
static bg_tracer *tracer;
static int port;
static bg_span_ctx sentinel;  /* current outside requests: must be current again after them */
static int span_not_current;  /* handler calls that found something else than their span current */
static int closed_by_handler; /* GET /close closed the server from inside its handler */
static void closed_cb(void *ud);

static void hex(const uint8_t *id, size_t n, char *out) {
  bg_trace_hex(id, n, out);
  out[2 * n] = '\0';
}

/* Whether the current context is the sentinel's. */
static int sentinel_current(void) {
  const bg_span_ctx *c = bg_trace_current(tracer);
  return memcmp(c->trace_id, sentinel.trace_id, BG_TRACE_ID_LEN) == 0 &&
         memcmp(c->span_id, sentinel.span_id, BG_SPAN_ID_LEN) == 0;
}

/* One line per finished span: name, kind, status, ids, flags, tracestate, then k=v attributes. */
static void render_spans(bg_buf *out) {
  bg_span_batch *b = bg_trace_take_spans(tracer, 1000);
  size_t n = b ? bg_span_batch_len(b) : 0;
  for (size_t i = 0; i < n; i++) {
    bg_span_view v;
    bg_span_batch_view(b, i, &v);
    char t[33], s[17], p[17];
    hex(v.ctx.trace_id, 16, t);
    hex(v.ctx.span_id, 8, s);
    hex(v.parent_span_id, 8, p);
    size_t tslen = 0;
    const char *ts = v.ctx.state ? bg_tracestate_str(v.ctx.state, &tslen) : NULL;
    bg_buf_printf(out, "name=%.*s| kind=%d status=%d trace=%s span=%s parent=%s flags=%d ts=%.*s|",
                  (int)v.name_len, v.name, v.kind, v.status, t, s, p, v.ctx.flags, (int)tslen,
                  ts ? ts : "");
    for (uint32_t j = 0; j < v.nattrs; j++) {
      const bg_attr *a = &v.attrs[j];
      if (a->type == BG_ATTR_STRING)
        bg_buf_printf(out, " %.*s=%.*s|", (int)a->klen, a->key, (int)a->n, a->v.s);
      else if (a->type == BG_ATTR_INT)
        bg_buf_printf(out, " %.*s=%lld|", (int)a->klen, a->key, (long long)a->v.i);
    }
    bg_buf_puts(out, "\n");
  }
  if (b) bg_span_batch_unref(b);
}

static void handler(void *ud, const bg_http_request *req, bg_http_response *res) {
  static bg_buf body;
  (void)ud;
  bg_buf_reset(&body);
  if (req->span == NULL ||
      memcmp(bg_trace_current(tracer)->span_id, bg_span_context(req->span)->span_id, 8) != 0)
    span_not_current++;
  if (strcmp(req->path, "/spans") == 0) {
    render_spans(&body);
  } else if (strncmp(req->path, "/items/", 7) == 0) {
    /* the route template a router knows, and the current context while the handler runs */
    const bg_span_ctx *c = bg_trace_current(tracer);
    char t[33], s[17];
    hex(c->trace_id, 16, t);
    hex(c->span_id, 8, s);
    bg_buf_printf(&body, "current=%s-%s span=%d", t, s, req->span != NULL);
    res->route = "/items/{id}";
  } else if (strcmp(req->path, "/close") == 0) {
    /* the agent's shutdown can come from a handler: the request's connection is closed under
     * it, and its span must still end (not be dropped with the connection's list) */
    closed_by_handler = 1;
    res->route = "/close";
    bg_http_server_close(srv, closed_cb, NULL);
    bg_buf_puts(&body, "closing");
  } else if (strcmp(req->path, "/fail") == 0) {
    res->status = 503;
    bg_buf_puts(&body, "{\"error\":\"down\"}");
  } else {
    res->status = 404;
    bg_buf_puts(&body, "{\"error\":\"not found\"}");
  }
  res->body = body.data;
  res->body_len = body.len;
}

/* /render: "rendered"; /render?n=N: N bytes (large ones take more than one write) */
static int render(void *ud, const bg_http_request *req, bg_http_response *res, bg_buf *out) {
  (void)ud;
  res->content_type = "text/plain";
  if (strncmp(req->query, "n=", 2) != 0) return bg_buf_puts(out, "rendered");
  size_t n = strtoul(req->query + 2, NULL, 10);
  if (bg_buf_reserve(out, n) != 0) return BG_ENOMEM;
  memset(out->data + out->len, 'x', n);
  out->len += n;
  out->data[out->len] = '\0';
  return 0;
}

/* ---- client side ------------------------------------------------------------------------ */

static resp R;
static char spans[65536];

/* The response's traceparent value into tp[56], or -1 when it has none. */
static int traceparent_of(const resp *r, char *tp) {
  const char *p = strstr(r->head, "\r\ntraceparent: ");
  if (p == NULL) return -1;
  memcpy(tp, p + 15, 55);
  tp[55] = '\0';
  if (p[15 + 55] != '\r') return -1;
  return 0;
}

/* 1 when s is 00-<32 lower hex>-<16 lower hex>-<2 hex> with non-zero ids. */
static int well_formed(const char *s) {
  if (strlen(s) != 55 || strncmp(s, "00-", 3) != 0 || s[35] != '-' || s[52] != '-') return 0;
  int tz = 1, sz = 1;
  for (int i = 3; i < 55; i++) {
    if (i == 35 || i == 52) continue;
    if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return 0;
    if (i < 35 && s[i] != '0') tz = 0;
    if (i > 35 && i < 52 && s[i] != '0') sz = 0;
  }
  return !tz && !sz;
}

/* The finished spans since the last call (the GET /spans of the call before included). */
static int fetch_spans(void) {
  if (roundtrip(port, "GET /spans HTTP/1.1\r\n\r\n", &R, 0) != 0) return -1;
  snprintf(spans, sizeof spans, "%s", R.body);
  return 0;
}

/* The line of the span whose span id is the one in traceparent tp, or NULL. */
static const char *span_line(const char *tp, char *line, size_t cap) {
  char key[32];
  snprintf(key, sizeof key, "span=%.16s", tp + 36);
  const char *p = strstr(spans, key);
  if (p == NULL) return NULL;
  while (p > spans && p[-1] != '\n')
    p--;
  const char *e = strchr(p, '\n');
  size_t n = e ? (size_t)(e - p) : strlen(p);
  if (n >= cap) n = cap - 1;
  memcpy(line, p, n);
  line[n] = '\0';
  return line;
}

static int test_static_root(void) {
  char tp[56], line[2048];
  ASSERT_INT_EQ(
      roundtrip(port, "GET /health HTTP/1.1\r\nUser-Agent: probe/1\r\nHost: agent.local:9\r\n\r\n",
                &R, 0),
      0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_STR_EQ(R.body, "{\"status\":\"ok\"}");
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(well_formed(tp), 1);
  ASSERT_STR_EQ(tp + 53, "01"); /* ratio 1: a new root is sampled */
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
  ASSERT_CONTAINS(line, "name=GET /health| kind=2 status=0 ");
  ASSERT_CONTAINS(line, " parent=0000000000000000 ");
  ASSERT_CONTAINS(line, " http.request.method=GET|");
  ASSERT_CONTAINS(line, " http.route=/health|");
  ASSERT_CONTAINS(line, " url.path=/health|");
  ASSERT_CONTAINS(line, " url.scheme=http|");
  ASSERT_CONTAINS(line, " http.response.status_code=200|");
  ASSERT_CONTAINS(line, " network.peer.address=127.0.0.1|");
  ASSERT_CONTAINS(line, " client.address=127.0.0.1|");
  ASSERT_CONTAINS(line, " user_agent.original=probe/1|");
  ASSERT_CONTAINS(line, " server.address=agent.local|");
  char want[32];
  snprintf(want, sizeof want, " server.port=%d|", port);
  ASSERT_CONTAINS(line, want);
  /* HEAD too, with the header in the head and no body */
  ASSERT_INT_EQ(roundtrip(port, "HEAD /health HTTP/1.1\r\n\r\n", &R, 1), 0);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(well_formed(tp), 1);
  return 0;
}

static int test_continued(void) {
  char tp[56], line[2048];
  const char *caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  ASSERT_INT_EQ(roundtrip(port,
                          "GET /health HTTP/1.1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c"
                          "-b7ad6b7169203331-01\r\ntracestate: congo=t61rcWkgMzE\r\n"
                          "TraceState: rojo=00f067aa0ba902b7\r\n\r\n",
                          &R, 0),
                0);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(strncmp(tp, caller, 36), 0);                /* same version and trace id */
  ASSERT_INT_EQ(strncmp(tp + 36, caller + 36, 16) != 0, 1); /* a span id of its own */
  ASSERT_STR_EQ(tp + 53, "01");
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
  ASSERT_CONTAINS(line, " trace=0af7651916cd43dd8448eb211c80319c ");
  ASSERT_CONTAINS(line, " parent=b7ad6b7169203331 ");
  ASSERT_CONTAINS(line, " ts=congo=t61rcWkgMzE,rojo=00f067aa0ba902b7|");
  /* whitespace around the value is not part of it */
  ASSERT_INT_EQ(roundtrip(port,
                          "GET /render HTTP/1.1\r\ntraceparent:   00-0af7651916cd43dd8448eb211c8031"
                          "9c-b7ad6b7169203331-01  \r\nHost: [::1]:8080\r\n\r\n",
                          &R, 0),
                0);
  ASSERT_STR_EQ(R.body, "rendered");
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(strncmp(tp, caller, 36), 0);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
  ASSERT_CONTAINS(line, "name=GET /render| kind=2 ");
  ASSERT_CONTAINS(line, " parent=b7ad6b7169203331 ");
  ASSERT_CONTAINS(line, " server.address=::1|");
  return 0;
}

static int test_unsampled(void) {
  char tp[56];
  /* the caller did not sample: neither does the server (parent-based), and records nothing */
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(
      roundtrip(port,
                "GET /items/7 HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736"
                "-00f067aa0ba902b7-00\r\n\r\n",
                &R, 0),
      0);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(strncmp(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36), 0);
  ASSERT_STR_EQ(tp + 53, "00");
  static char body[sizeof R.body];
  snprintf(body, sizeof body, "%s", R.body);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_NOT_CONTAINS(spans, "4bf92f3577b34da6a3ce929d0e0e4736");
  /* the current context in the handler is the span's all the same */
  char cur[96];
  snprintf(cur, sizeof cur, "current=%.32s-%.16s span=1", tp + 3, tp + 36);
  ASSERT_STR_EQ(body, cur);
  return 0;
}

static int test_malformed(void) {
  static const char *bad[] = {
      "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",   /* upper-case hex */
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   /* version ff */
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",   /* zero trace id */
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",   /* zero span id */
      "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",    /* short trace id */
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",    /* short span id */
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",    /* short flags */
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", /* version 00 with more */
      "garbage",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char req[512], tp[56], line[2048];
    snprintf(req, sizeof req, "GET /health HTTP/1.1\r\ntraceparent: %s\r\ntracestate: a=b\r\n\r\n",
             bad[i]);
    ASSERT_INT_EQ(roundtrip(port, req, &R, 0), 0);
    ASSERT_INT_EQ(R.status, 200);
    ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
    ASSERT_INT_EQ(well_formed(tp), 1);
    if (strncasecmp(tp + 3, "0af7651916cd43dd8448eb211c80319c", 32) == 0) {
      fprintf(stderr, "malformed %s was continued: %s\n", bad[i], tp);
      return 1;
    }
    ASSERT_INT_EQ(fetch_spans(), 0);
    ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
    ASSERT_CONTAINS(line, " parent=0000000000000000 ");
    ASSERT_CONTAINS(line, " ts=|"); /* no tracestate without a valid traceparent */
  }
  /* two traceparent headers: which one to trust? neither */
  char tp[56];
  ASSERT_INT_EQ(roundtrip(port,
                          "GET /health HTTP/1.1\r\n"
                          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                          "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                          "\r\n",
                          &R, 0),
                0);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(strncmp(tp + 3, "0af7651916cd43dd8448eb211c80319c", 32) != 0, 1);
  return 0;
}

static int test_handler_route(void) {
  char tp[56], line[2048];
  ASSERT_INT_EQ(roundtrip(port, "POST /items/42?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &R, 0),
                0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  /* the span is current while the handler runs */
  char cur[96];
  snprintf(cur, sizeof cur, "current=%.32s-%.16s span=1", tp + 3, tp + 36);
  ASSERT_STR_EQ(R.body, cur);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
  ASSERT_CONTAINS(line, "name=POST /items/{id}| kind=2 status=0 ");
  ASSERT_NOT_CONTAINS(line, "server.address"); /* no Host header */
  ASSERT_CONTAINS(line, " http.route=/items/{id}|");
  ASSERT_CONTAINS(line, " url.path=/items/42|");
  ASSERT_CONTAINS(line, " http.request.method=POST|");
  /* no route known: the method alone; a 404 is not an error of the server */
  ASSERT_INT_EQ(roundtrip(port, "DELETE /nowhere HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 404);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
  ASSERT_CONTAINS(line, "name=DELETE| kind=2 status=0 ");
  ASSERT_NOT_CONTAINS(line, "http.route");
  ASSERT_CONTAINS(line, " http.response.status_code=404|");
  /* a 5xx is: status error, error.type */
  ASSERT_INT_EQ(roundtrip(port, "GET /fail HTTP/1.0\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 503);
  ASSERT_INT_EQ(traceparent_of(&R, tp), 0);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(span_line(tp, line, sizeof line) != NULL, 1);
  ASSERT_CONTAINS(line, " status=2 ");
  ASSERT_CONTAINS(line, " error.type=503|");
  ASSERT_CONTAINS(line, " network.protocol.version=1.0|");
  return 0;
}

static int test_pipelined(void) {
  /* three responses in one write: three spans, each with its own traceparent */
  char tp[3][56], line[2048];
  client *c = cl_open(port);
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.1\r\n\r\nGET /items/1 HTTP/1.1\r\n\r\n"
                            "GET /render HTTP/1.1\r\n\r\n"),
                0);
  for (int i = 0; i < 3; i++) {
    ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
    ASSERT_INT_EQ(traceparent_of(&R, tp[i]), 0);
  }
  cl_close(c);
  ASSERT_INT_EQ(strcmp(tp[0], tp[1]) != 0 && strcmp(tp[1], tp[2]) != 0, 1);
  ASSERT_INT_EQ(fetch_spans(), 0);
  for (int i = 0; i < 3; i++)
    ASSERT_INT_EQ(span_line(tp[i], line, sizeof line) != NULL, 1);
  return 0;
}

/* How many spans of `name` (as "name=...|") the finished spans since the last fetch hold. */
static int count_spans(const char *name) {
  int n = 0;
  for (const char *p = spans; (p = strstr(p, name)) != NULL; p++)
    n++;
  return n;
}

static int test_large_and_dead(void) {
  /* a response too large for one write: its span ends once the last byte is handed over */
  ASSERT_INT_EQ(fetch_spans(), 0);
  client *c = cl_open(port);
  ASSERT_INT_EQ(cl_sends(c, "GET /render?n=8000000 HTTP/1.1\r\n\r\n"), 0);
  usleep(100000); /* the kernel's buffers are full, the rest waits in a uv_write */
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(count_spans("name=GET /render|"), 0); /* not written yet: not ended */
  size_t got = 0;
  while (got < 8000000) {
    char b[65536];
    ssize_t n = recv(c->fd, b, sizeof b, 0);
    ASSERT_INT_EQ(n > 0, 1);
    got += (size_t)n;
  }
  cl_close(c);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(count_spans("name=GET /render|"), 1);
  /* a client that leaves without reading: the span ends with the connection */
  c = cl_open(port);
  ASSERT_INT_EQ(cl_sends(c, "GET /render?n=8000000 HTTP/1.1\r\n\r\n"), 0);
  usleep(100000);
  ASSERT_INT_EQ(fetch_spans(), 0);
  ASSERT_INT_EQ(count_spans("name=GET /render|"), 0);
  struct linger lg = {1, 0}; /* a reset: the server's next write fails */
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  cl_close(c);
  int seen = 0;
  for (int i = 0; i < 50 && !seen; i++) {
    usleep(20000);
    ASSERT_INT_EQ(fetch_spans(), 0);
    seen = count_spans("name=GET /render|");
  }
  ASSERT_INT_EQ(seen, 1);
  return 0;
}

/* last: the server is gone after it (main checks the span) */
static int test_closed_by_handler(void) {
  client *c = cl_open(port);
  ASSERT_INT_EQ(cl_sends(c, "GET /close HTTP/1.1\r\n\r\n"), 0);
  char b[4096];
  while (recv(c->fd, b, sizeof b, 0) > 0) {
  }
  cl_close(c);
  return 0;
}

static const test_case tests[] = {
    {"static_root", test_static_root},       {"continued", test_continued},
    {"unsampled", test_unsampled},           {"malformed", test_malformed},
    {"handler_route", test_handler_route},   {"pipelined", test_pipelined},
    {"large_and_dead", test_large_and_dead}, {"closed_by_handler", test_closed_by_handler},
};

/* ---- main ------------------------------------------------------------------------------- */

static void closed_cb(void *ud) {
  (void)ud;
}

static void client_done_cb(uv_async_t *h) {
  if (span_not_current) {
    fprintf(stderr, "%d handler call(s) ran without their span current\n", span_not_current);
    failures++;
  }
  if (!sentinel_current()) {
    fprintf(stderr, "the context current before the requests is not current after them\n");
    failures++;
  }
  if (!closed_by_handler) bg_http_server_close(srv, closed_cb, NULL);
  uv_close((uv_handle_t *)h, NULL);
}

int main(void) {
  static const char health[] = "{\"status\":\"ok\"}";
  uv_loop_init(&loop);
  tracer = bg_tracer_default();
  bg_tracer_set_ratio(tracer, 1.0);
  bg_tracer_set_recording(tracer, 1, 0);
  /* something current outside the requests (an unsampled one), which they must not disturb */
  bg_trace_new_trace_id(tracer, sentinel.trace_id);
  bg_trace_new_span_id(tracer, sentinel.span_id);
  {
    bg_span_ctx s = sentinel, prev;
    bg_trace_swap(tracer, &s, &prev);
    bg_span_ctx_clear(&prev);
  }
  if (bg_http_server_new(&loop, NULL, handler, NULL, &srv) != 0) return 1;
  bg_http_set_tracer(srv, tracer);
  if (bg_http_set_static(srv, "/health", 200, NULL, health, strlen(health)) != 0) return 1;
  if (bg_http_set_render(srv, "/render", render, NULL) != 0) return 1;
  if (bg_http_listen(srv, "127.0.0.1", 0) != 0) return 1;
  port = bg_http_port(srv);
  int rc = run_all(&loop, tests, sizeof tests / sizeof tests[0], client_done_cb);
  /* the span of the request whose handler closed the server ended and was buffered */
  bg_buf out = {0};
  render_spans(&out);
  if (!closed_by_handler || out.data == NULL || strstr(out.data, "name=GET /close|") == NULL) {
    fprintf(stderr, "the span of GET /close, whose handler closed the server, did not end\n");
    rc = 1;
  }
  bg_buf_free(&out);
  bg_tracer_shutdown();
  return rc;
}
