/* test_http_server_defer: a handler that answers later (res->defer, bg_http_answer): the answer
 * reaches the client with "Connection: close" after what was pipelined before it, nothing
 * pipelined behind it is served, an answer for a client that went away is refused with
 * BG_ENOENT, and a wait past defer_timeout_ms is a 504. */
#include "test_http_server.h"

#include "trace/trace.h"

#include <stdatomic.h>

static uv_loop_t loop;
static bg_http_server *srv;
static bg_tracer *tracer;
static int port;
static atomic_int answered_rc = 1; /* the last bg_http_answer's result (1: none yet) */
static atomic_int handler_calls;

typedef struct later {
  uv_timer_t t;
  uint64_t ticket;
  int status;
} later;

static void later_closed(uv_handle_t *h) {
  free(h->data);
}

static void later_cb(uv_timer_t *t) {
  later *l = t->data;
  static const char body[] = "{\"later\":true}";
  bg_http_response res = {
      l->status, "application/json", body, sizeof body - 1, "X-Later: 1\r\n", NULL, 0};
  atomic_store(&answered_rc, bg_http_answer(srv, l->ticket, &res));
  uv_close((uv_handle_t *)t, later_closed);
}

/* /fast: at once; /later?ms=N: deferred, answered N ms later (status from &status=, 200);
 * /never: deferred and never answered. */
static void handler(void *ud, const bg_http_request *req, bg_http_response *res) {
  (void)ud;
  atomic_fetch_add(&handler_calls, 1);
  if (req->path_len == 5 && memcmp(req->path, "/fast", 5) == 0) {
    res->body = "fast";
    res->body_len = 4;
    res->content_type = "text/plain";
    return;
  }
  res->defer = 1;
  res->route = "/deferred";
  if (req->path_len == 6 && memcmp(req->path, "/never", 6) == 0) return;
  later *l = calloc(1, sizeof *l);
  int ms = 50, status = 200;
  const char *m = strstr(req->query, "ms=");
  if (m) ms = atoi(m + 3);
  const char *s = strstr(req->query, "status=");
  if (s) status = atoi(s + 7);
  l->ticket = req->ticket;
  l->status = status;
  uv_timer_init(&loop, &l->t);
  l->t.data = l;
  uv_timer_start(&l->t, later_cb, (uint64_t)ms, 0);
}

static resp R;

static int test_answer_later(void) {
  client *c = cl_open(port);
  double t0 = now_ms();
  ASSERT_INT_EQ(cl_sends(c, "GET /later?ms=150&status=201 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_GE(now_ms() - t0, 140);
  ASSERT_INT_EQ(R.status, 201);
  ASSERT_CONTAINS(R.head, "Connection: close");
  ASSERT_CONTAINS(R.head, "X-Later: 1");
  ASSERT_CONTAINS(R.head, "traceparent: 00-");
  ASSERT_STR_EQ(R.body, "{\"later\":true}");
  /* stored by the loop thread after bg_http_answer returned, maybe after we read the answer */
  for (int i = 0; i < 100 && atomic_load(&answered_rc) == 1; i++)
    usleep(10 * 1000);
  ASSERT_INT_EQ(atomic_load(&answered_rc), 0);
  ASSERT_INT_EQ(cl_closed(c, 2000), 1);
  cl_close(c);
  return 0;
}

static int test_pipelined(void) {
  client *c = cl_open(port);
  int before = atomic_load(&handler_calls);
  ASSERT_INT_EQ(cl_sends(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /later?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"),
                0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "fast");
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "{\"later\":true}");
  ASSERT_INT_EQ(cl_closed(c, 2000), 1); /* the third is not served */
  ASSERT_INT_EQ(atomic_load(&handler_calls) - before, 2);
  cl_close(c);
  return 0;
}

static int test_client_gone(void) {
  atomic_store(&answered_rc, 1);
  client *c = cl_open(port);
  ASSERT_INT_EQ(cl_sends(c, "GET /later?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  usleep(50 * 1000);
  struct linger lg = {1, 0}; /* close with a reset: the client is gone, not half-closed */
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  cl_close(c);
  for (int i = 0; i < 100 && atomic_load(&answered_rc) == 1; i++)
    usleep(20 * 1000);
  ASSERT_INT_EQ(atomic_load(&answered_rc), BG_ENOENT);
  /* the server still serves */
  ASSERT_INT_EQ(roundtrip(port, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", &R, 0), 0);
  ASSERT_STR_EQ(R.body, "fast");
  return 0;
}

static int test_closing_client(void) {
  /* a client that closes its side while its answer is awaited has given up: the connection
   * goes at once (its slot is free), and the answer is refused */
  atomic_store(&answered_rc, 1);
  client *c = cl_open(port);
  ASSERT_INT_EQ(cl_sends(c, "GET /later?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  usleep(50 * 1000);
  shutdown(c->fd, SHUT_WR);
  ASSERT_INT_EQ(cl_closed(c, 200), 1);
  cl_close(c);
  for (int i = 0; i < 100 && atomic_load(&answered_rc) == 1; i++)
    usleep(20 * 1000);
  ASSERT_INT_EQ(atomic_load(&answered_rc), BG_ENOENT);
  return 0;
}

static int test_waiting_cap(void) {
  /* max_connections 16: at most 4 wait for an answer; the fifth is told to come back */
  client *w[4];
  for (int i = 0; i < 4; i++) {
    w[i] = cl_open(port);
    ASSERT_INT_EQ(cl_sends(w[i], "GET /never HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  }
  usleep(100 * 1000);
  ASSERT_INT_EQ(roundtrip(port, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 503);
  ASSERT_CONTAINS(R.body, "too many requests waiting");
  /* the server still serves the rest */
  ASSERT_INT_EQ(roundtrip(port, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n", &R, 0), 0);
  ASSERT_STR_EQ(R.body, "fast");
  for (int i = 0; i < 4; i++)
    cl_close(w[i]); /* they go at their EOF, making room again */
  usleep(100 * 1000);
  ASSERT_INT_EQ(roundtrip(port, "GET /later?ms=10 HTTP/1.1\r\nHost: x\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  return 0;
}

static int test_timeout(void) {
  client *c = cl_open(port);
  double t0 = now_ms();
  ASSERT_INT_EQ(cl_sends(c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_GE(now_ms() - t0, 250);
  ASSERT_INT_EQ(R.status, 504);
  ASSERT_CONTAINS(R.body, "gateway timeout");
  ASSERT_INT_EQ(cl_closed(c, 2000), 1);
  cl_close(c);
  return 0;
}

static const test_case tests[] = {
    {"answer_later", test_answer_later}, {"pipelined", test_pipelined},
    {"client_gone", test_client_gone},   {"closing_client", test_closing_client},
    {"waiting_cap", test_waiting_cap},   {"timeout", test_timeout},
};

static void closed_cb(void *ud) {
  (void)ud;
}

static void client_done_cb(uv_async_t *h) {
  bg_http_server_close(srv, closed_cb, NULL);
  uv_close((uv_handle_t *)h, NULL);
}

int main(void) {
  uv_loop_init(&loop);
  tracer = bg_tracer_default();
  bg_tracer_set_ratio(tracer, 1.0);
  bg_tracer_set_recording(tracer, 1, 0);
  bg_http_limits lim;
  bg_http_limits_default(&lim);
  lim.defer_timeout_ms = 1000;
  lim.max_connections = 16;
  if (bg_http_server_new(&loop, &lim, handler, NULL, &srv) != 0) return 1;
  bg_http_set_tracer(srv, tracer);
  if (bg_http_listen(srv, "127.0.0.1", 0) != 0) return 1;
  port = bg_http_port(srv);
  int rc = run_all(&loop, tests, sizeof tests / sizeof tests[0], client_done_cb);
  /* the spans of answered deferred requests ended at their answers, named after the route the
   * handler gave, with the answer's status; the one whose client left ended too */
  bg_span_batch *b = bg_trace_take_spans(tracer, 1000);
  size_t n = b ? bg_span_batch_len(b) : 0, named = 0, s201 = 0, s504 = 0;
  for (size_t i = 0; i < n; i++) {
    bg_span_view v;
    bg_span_batch_view(b, i, &v);
    if (v.name_len != 13 || memcmp(v.name, "GET /deferred", 13) != 0) continue;
    named++;
    for (uint32_t j = 0; j < v.nattrs; j++) {
      const bg_attr *a = &v.attrs[j];
      if (a->type == BG_ATTR_INT && a->klen == 25 &&
          memcmp(a->key, "http.response.status_code", 25) == 0) {
        if (a->v.i == 201) s201++;
        if (a->v.i == 504) s504++;
      }
    }
  }
  if (b) bg_span_batch_unref(b);
  if (named < 4 || s201 != 1 || s504 != 1) {
    fprintf(stderr, "deferred spans: %zu named, %zu with 201, %zu with 504 (of %zu)\n", named, s201,
            s504, n);
    rc = 1;
  }
  bg_tracer_shutdown();
  return rc;
}
