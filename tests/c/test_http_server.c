/* test_http_server: what the HTTP server answers (static and render routes, the handler,
 * keep-alive, pipelining, fragments) on a real loop in the main thread, driven by a client thread
 * with plain blocking sockets; limits, timeouts and the connection limit are in
 * test_http_server_limits.c. `test_http_server --serve PORT` instead serves a static /health
 * until SIGINT, for wrk. */
#include "test_http_server.h"

/* ---- loop side -------------------------------------------------------------------------- */

static uv_loop_t loop;
static bg_http_server *srv_a;
static int port_a;
static int count_calls;

static void handler(void *ud, const bg_http_request *req, bg_http_response *res) {
  static char body[4096];
  bg_http_server *srv = *(bg_http_server **)ud;
  if (strcmp(req->path, "/echo") == 0) {
    const char *xtest = "";
    for (size_t i = 0; i < req->nheaders; i++)
      if (strcasecmp(req->headers[i].name, "x-test") == 0) xtest = req->headers[i].value;
    snprintf(body, sizeof body,
             "method=%s path=%s plen=%zu query=%s qlen=%zu body=%s blen=%zu xtest=%s peer=%s "
             "loop=%d",
             req->method, req->path, req->path_len, req->query, req->query_len, req->body,
             req->body_len, xtest, req->peer, req->peer_loopback);
    res->body = body;
    res->body_len = strlen(body);
  } else if (strcmp(req->path, "/count") == 0) {
    snprintf(body, sizeof body, "{\"count\":%d}", ++count_calls);
    res->body = body;
    res->body_len = strlen(body);
  } else if (strcmp(req->path, "/set-static") == 0) {
    int rc = bg_http_set_static(srv, "/dyn", 200, "text/plain", req->body_len ? req->body : NULL,
                                req->body_len);
    res->status = rc == 0 ? 204 : 500;
  } else if (strcmp(req->path, "/created") == 0) {
    res->status = 201;
    res->content_type = "text/plain";
    res->headers = "X-Extra: 1\r\n";
    res->body = "made";
    res->body_len = 4;
  } else {
    res->status = 404;
    res->body = "{\"error\":\"not found\"}";
    res->body_len = strlen(res->body);
  }
}

/* /render?n=N: N letters written in place; "&tail" adds res->body; ?fail fails part-way */
static int render(void *ud, const bg_http_request *req, bg_http_response *res, bg_buf *out) {
  (void)ud;
  if (strcmp(req->query, "fail") == 0) {
    bg_buf_puts(out, "partial");
    return BG_ENOMEM;
  }
  res->content_type = "text/plain";
  res->headers = "X-Render: 1\r\n";
  int n = atoi(req->query + 2);
  for (int i = 0; i < n; i++)
    if (bg_buf_append(out, &"abcdefghijklmnopqrstuvwxyz"[i % 26], 1) != 0) return BG_ENOMEM;
  if (strstr(req->query, "&tail")) {
    res->body = "!";
    res->body_len = 1;
  }
  return 0;
}

static void closed_cb(void *ud) {
  (*(int *)ud)++;
}
static int servers_closed;

static int check_stats(void) {
  bg_http_stats a;
  bg_http_get_stats(srv_a, &a);
  ASSERT_INT_EQ(a.connections_rejected, 0);
  ASSERT_INT_GE(a.static_hits, 10);
  ASSERT_INT_GE(a.requests, a.static_hits + 10);
  ASSERT_INT_GE(a.errors_4xx, 1); /* 404 */
  ASSERT_INT_EQ(a.errors_5xx, 1); /* the failed render */
  ASSERT_INT_GE(a.connections_accepted, 10);
  return 0;
}

static void client_done_cb(uv_async_t *h) {
  if (check_stats() != 0) failures++;
  bg_http_server_close(srv_a, closed_cb, &servers_closed);
  uv_close((uv_handle_t *)h, NULL);
}

/* ---- client side ------------------------------------------------------------------------ */

static resp R, R2, R3;

static int test_static_get(void) {
  ASSERT_INT_EQ(roundtrip(port_a, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.head, "HTTP/1.1 200 OK\r\n");
  ASSERT_CONTAINS(R.head, "Server: beagle\r\n");
  ASSERT_CONTAINS(R.head, "Content-Type: application/json\r\n");
  ASSERT_CONTAINS(R.head, "Content-Length: 15\r\n");
  ASSERT_STR_EQ(R.body, "{\"status\":\"ok\"}");
  /* the query string is not part of the route */
  ASSERT_INT_EQ(roundtrip(port_a, "GET /health?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_STR_EQ(R.body, "{\"status\":\"ok\"}");
  /* POST on a static path goes to the handler */
  ASSERT_INT_EQ(roundtrip(port_a, "POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 404);
  return 0;
}

static int test_static_head(void) {
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(c != NULL, 1);
  /* a body after the HEAD headers would be read as the next status line */
  ASSERT_INT_EQ(cl_sends(c, "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
                0);
  ASSERT_INT_EQ(cl_read(c, &R, 1), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.head, "Content-Length: 15\r\n");
  ASSERT_INT_EQ(cl_read(c, &R2, 0), 0);
  ASSERT_INT_EQ(R2.status, 200);
  ASSERT_STR_EQ(R2.body, "{\"status\":\"ok\"}");
  ASSERT_INT_EQ(c->len, 0);
  cl_close(c);
  /* HEAD through the handler: headers with the GET length, no body */
  c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "HEAD /created HTTP/1.1\r\n\r\nGET /count HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 1), 0);
  ASSERT_INT_EQ(R.status, 201);
  ASSERT_CONTAINS(R.head, "Content-Length: 4\r\n");
  ASSERT_INT_EQ(cl_read(c, &R2, 0), 0);
  ASSERT_INT_EQ(R2.status, 200);
  ASSERT_CONTAINS(R2.body, "\"count\":");
  cl_close(c);
  return 0;
}

static int test_handler(void) {
  ASSERT_INT_EQ(roundtrip(port_a,
                          "POST /echo?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n"
                          "Content-Length: 11\r\n\r\nhello=world",
                          &R, 0),
                0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.head, "Content-Type: application/json\r\n");
  ASSERT_CONTAINS(R.body, "method=POST ");
  ASSERT_CONTAINS(R.body, "path=/echo plen=5 ");
  ASSERT_CONTAINS(R.body, "query=a=1&b=2 qlen=7 ");
  ASSERT_CONTAINS(R.body, "body=hello=world blen=11 ");
  ASSERT_CONTAINS(R.body, "xtest=yes ");
  ASSERT_CONTAINS(R.body, "peer=127.0.0.1 ");
  ASSERT_CONTAINS(R.body, "loop=1");
  /* no query, no body */
  ASSERT_INT_EQ(roundtrip(port_a, "GET /echo HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_CONTAINS(R.body, "method=GET path=/echo plen=5 query= qlen=0 body= blen=0 xtest= ");
  /* chunked body, with Expect: 100-continue answered first */
  ASSERT_INT_EQ(roundtrip(port_a,
                          "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                          "Expect: 100-continue\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n"
                          "X-Trailer: t\r\n\r\n",
                          &R, 0),
                0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.body, "method=PUT ");
  ASSERT_CONTAINS(R.body, "body=hello world blen=11 ");
  /* status, content type and extra headers from the handler */
  ASSERT_INT_EQ(roundtrip(port_a, "GET /created HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 201);
  ASSERT_CONTAINS(R.head, "HTTP/1.1 201 Created\r\n");
  ASSERT_CONTAINS(R.head, "Content-Type: text/plain\r\n");
  ASSERT_CONTAINS(R.head, "\r\nX-Extra: 1\r\n");
  ASSERT_STR_EQ(R.body, "made");
  return 0;
}

static int test_keepalive(void) {
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(c != NULL, 1);
  ASSERT_INT_EQ(cl_sends(c, "GET /count HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_NOT_CONTAINS(R.head, "Connection:");
  int n = atoi(R.body + 9);
  ASSERT_INT_EQ(cl_sends(c, "GET /count HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(atoi(R.body + 9), n + 1);
  cl_close(c);
  /* HTTP/1.0 keep-alive is opt-in */
  c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_CONTAINS(R.head, "Connection: keep-alive\r\n");
  ASSERT_STR_EQ(R.body, "{\"status\":\"ok\"}");
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.0\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.head, "Connection: close\r\n");
  ASSERT_INT_EQ(cl_closed(c, 1000), 1);
  cl_close(c);
  return 0;
}

static int test_fragmented(void) {
  /* one byte per send: every span llhttp reports may straddle reads */
  const char *req = "POST /echo?k=v HTTP/1.1\r\nX-Test: split\r\nContent-Length: 5\r\n\r\nabcde";
  client *c = cl_open(port_a);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (const char *p = req; *p; p++) {
    ASSERT_INT_EQ(cl_send(c, p, 1), 0);
    if ((p - req) % 8 == 0) usleep(1000);
  }
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.body, "path=/echo plen=5 query=k=v qlen=3 body=abcde blen=5 xtest=split ");
  cl_close(c);
  return 0;
}

static int test_pipelined(void) {
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "GET /count HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n"
                            "GET /count HTTP/1.1\r\n\r\n"),
                0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(cl_read(c, &R2, 0), 0);
  ASSERT_INT_EQ(cl_read(c, &R3, 0), 0);
  ASSERT_CONTAINS(R.body, "\"count\":");
  ASSERT_STR_EQ(R2.body, "{\"status\":\"ok\"}");
  ASSERT_INT_EQ(atoi(R3.body + 9), atoi(R.body + 9) + 1);
  cl_close(c);
  return 0;
}

static int test_connection_close(void) {
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"
                            "GET /count HTTP/1.1\r\n\r\n"),
                0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.head, "Connection: close\r\n");
  /* the pipelined request after the close is not answered; closed well before idle (1.5 s) */
  ASSERT_INT_EQ(cl_closed(c, 1000), 1);
  cl_close(c);
  return 0;
}

static int test_set_static(void) {
  ASSERT_INT_EQ(roundtrip(port_a, "GET /dyn HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 404);
  ASSERT_INT_EQ(
      roundtrip(port_a, "POST /set-static HTTP/1.1\r\nContent-Length: 2\r\n\r\nv1", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 204);
  ASSERT_INT_EQ(roundtrip(port_a, "GET /dyn HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_CONTAINS(R.head, "Content-Type: text/plain\r\n");
  ASSERT_STR_EQ(R.body, "v1");
  /* replaced between two pipelined hits on the same connection, within one read */
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "GET /dyn HTTP/1.1\r\n\r\n"
                            "POST /set-static HTTP/1.1\r\nContent-Length: 9\r\n\r\nversion 2"
                            "GET /dyn HTTP/1.1\r\n\r\nHEAD /dyn HTTP/1.1\r\n\r\n"),
                0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "v1");
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 204);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "version 2");
  ASSERT_INT_EQ(cl_read(c, &R, 1), 0);
  ASSERT_CONTAINS(R.head, "Content-Length: 9\r\n");
  cl_close(c);
  /* an empty body removes the route */
  ASSERT_INT_EQ(roundtrip(port_a, "POST /set-static HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &R, 0),
                0);
  ASSERT_INT_EQ(roundtrip(port_a, "GET /dyn HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 404);
  return 0;
}

static int test_render(void) {
  ASSERT_INT_EQ(roundtrip(port_a, "GET /render?n=9 HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_STR_EQ(R.head, "HTTP/1.1 200 OK\r\nServer: beagle\r\nContent-Type: text/plain\r\n"
                        "Content-Length: 9\r\nX-Render: 1\r\n\r\n");
  ASSERT_STR_EQ(R.body, "abcdefghi");
  /* a head as long as the last one: the body is written where it stays */
  ASSERT_INT_EQ(roundtrip(port_a, "GET /render?n=8 HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_CONTAINS(R.head, "Content-Length: 8\r\n");
  ASSERT_STR_EQ(R.body, "abcdefgh");
  /* behind another response, with heads of other lengths (the body moves), HEAD, a tail */
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "GET /count HTTP/1.1\r\n\r\nGET /render?n=30 HTTP/1.1\r\n\r\n"
                            "HEAD /render?n=1200 HTTP/1.1\r\n\r\n"
                            "GET /render?n=3&tail HTTP/1.1\r\n\r\n"),
                0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_CONTAINS(R.body, "\"count\":");
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "abcdefghijklmnopqrstuvwxyzabcd");
  ASSERT_INT_EQ(cl_read(c, &R, 1), 0);
  ASSERT_CONTAINS(R.head, "Content-Length: 1200\r\nX-Render: 1\r\n\r\n");
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "abc!");
  ASSERT_INT_EQ(c->len, 0);
  cl_close(c);
  ASSERT_INT_EQ(roundtrip(port_a, "GET /render?n=2 HTTP/1.0\r\n\r\n", &R, 0), 0);
  ASSERT_CONTAINS(R.head, "Content-Length: 2\r\nConnection: close\r\nX-Render: 1\r\n\r\n");
  ASSERT_STR_EQ(R.body, "ab");
  /* a large render leaves its buffer to the server when its connection closes; the next
   * connection renders into that memory */
  c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "HEAD /render?n=2000000 HTTP/1.1\r\nConnection: close\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 1), 0);
  ASSERT_CONTAINS(R.head, "Content-Length: 2000000\r\n");
  ASSERT_INT_EQ(cl_closed(c, 3000), 1);
  cl_close(c);
  usleep(20000);
  ASSERT_INT_EQ(roundtrip(port_a, "GET /render?n=5 HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_STR_EQ(R.body, "abcde");
  /* a failed render: what it wrote is dropped, a JSON 500 goes out */
  ASSERT_INT_EQ(roundtrip(port_a, "GET /render?fail HTTP/1.1\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 500);
  ASSERT_CONTAINS(R.head, "Content-Type: application/json\r\n");
  ASSERT_STR_EQ(R.body, "{\"error\":\"out of memory\",\"status\":500}");
  /* other methods go to the handler */
  ASSERT_INT_EQ(roundtrip(port_a, "POST /render HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &R, 0), 0);
  ASSERT_INT_EQ(R.status, 404);
  return 0;
}

static const test_case tests[] = {
    {"static_get", test_static_get},
    {"static_head", test_static_head},
    {"handler", test_handler},
    {"keepalive", test_keepalive},
    {"fragmented", test_fragmented},
    {"pipelined", test_pipelined},
    {"connection_close", test_connection_close},
    {"set_static", test_set_static},
    {"render", test_render},
};

/* ---- main ------------------------------------------------------------------------------- */

static const char health[] = "{\"status\":\"ok\"}";

static void on_signal(uv_signal_t *s, int signum) {
  (void)signum;
  bg_http_server_close(srv_a, NULL, NULL);
  uv_close((uv_handle_t *)s, NULL);
}

static int serve(int port) {
  uv_signal_t sig;
  if (bg_http_server_new(&loop, NULL, handler, &srv_a, &srv_a) != 0) return 1;
  bg_http_set_static(srv_a, "/health", 200, NULL, health, strlen(health));
  int rc = bg_http_listen(srv_a, "127.0.0.1", port);
  if (rc != 0) {
    fprintf(stderr, "listen: %s\n", bg_strerror(rc));
    return 1;
  }
  printf("serving on 127.0.0.1:%d\n", bg_http_port(srv_a));
  fflush(stdout);
  uv_signal_init(&loop, &sig);
  uv_signal_start(&sig, on_signal, SIGINT);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) != 0;
}

int main(int argc, char **argv) {
  uv_loop_init(&loop);
  if (argc == 3 && strcmp(argv[1], "--serve") == 0) return serve(atoi(argv[2]));

  bg_http_limits lim;
  bg_http_limits_default(&lim);
  lim.max_connections = 64;
  if (bg_http_server_new(&loop, &lim, handler, &srv_a, &srv_a) != 0) return 1;
  if (bg_http_set_static(srv_a, "/health", 200, NULL, health, strlen(health)) != 0) return 1;
  if (bg_http_set_render(srv_a, "/render", render, NULL) != 0) return 1;
  if (bg_http_port(srv_a) >= 0) return 1; /* not listening yet */
  if (bg_http_listen(srv_a, "127.0.0.1", 0) != 0) return 1;
  port_a = bg_http_port(srv_a);
  if (port_a <= 0) return 1;
  int rc = run_all(&loop, tests, sizeof tests / sizeof tests[0], client_done_cb);
  if (servers_closed != 1) {
    fprintf(stderr, "servers_closed == 1 failed: %d != 1\n", servers_closed);
    return 1;
  }
  return rc;
}
