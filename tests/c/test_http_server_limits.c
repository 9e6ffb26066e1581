/* test_http_server_limits: what bounds a connection: parse errors and size limits (400, 413,
 * 431), the read, head and first-byte deadlines, the keep-alive idle timeout, and the connection
 * limit, which makes room for a new client by closing the oldest idle or slow one (slowloris)
 * and refuses one only when every connection is receiving a body. Short timeouts, real sockets:
 * the server's loop in the main thread, blocking clients in a thread. */
#include "test_http_server.h"

/* ---- loop side -------------------------------------------------------------------------- */

static uv_loop_t loop;
static bg_http_server *srv_a, *srv_t, *srv_b;
static int port_a, port_t, port_b;

/* /sleep holds the loop for 300 ms; /echo and everything else: 200 with the body's length */
static void handler(void *ud, const bg_http_request *req, bg_http_response *res) {
  static char body[64];
  (void)ud;
  if (strcmp(req->path, "/sleep") == 0) usleep(300 * 1000);
  snprintf(body, sizeof body, "path=%s blen=%zu", req->path, req->body_len);
  res->content_type = "text/plain";
  res->body = body;
  res->body_len = strlen(body);
}

static int servers_closed;
static void closed_cb(void *ud) {
  (*(int *)ud)++;
}

static int check_stats(void) {
  bg_http_stats a, t, b;
  bg_http_get_stats(srv_a, &a);
  bg_http_get_stats(srv_t, &t);
  bg_http_get_stats(srv_b, &b);
  ASSERT_INT_GE(a.errors_4xx, 6); /* 400, 413 x2, 431 x2, 408 */
  ASSERT_INT_EQ(a.connections_rejected, 0);
  ASSERT_INT_EQ(b.connections_rejected, 1); /* only when every connection had a body arriving */
  ASSERT_INT_GE(b.connections_evicted, 3);
  /* many_idle: most made room by closing older ones; a few that came in one burst may have
   * been refused instead, when every candidate had input waiting */
  ASSERT_INT_GE(t.connections_evicted, 50);
  ASSERT_INT_GE(t.connections_evicted + t.connections_rejected, 150);
  ASSERT_INT_GE(t.connections_timed_out, 2); /* the first-byte and the head deadline */
  return 0;
}

static void client_done_cb(uv_async_t *h) {
  if (check_stats() != 0) failures++;
  bg_http_server_close(srv_a, closed_cb, &servers_closed);
  bg_http_server_close(srv_t, closed_cb, &servers_closed);
  bg_http_server_close(srv_b, closed_cb, &servers_closed);
  uv_close((uv_handle_t *)h, NULL);
}

/* ---- client side ------------------------------------------------------------------------ */

static resp R;

static int expect_error(const char *req, int status, const char *error, const char *detail) {
  client *c = cl_open(port_a);
  ASSERT_INT_EQ(c != NULL, 1);
  cl_sends(c, req); /* may fail part-way once the server gives up on us */
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, status);
  ASSERT_CONTAINS(R.head, "Content-Type: application/json\r\n");
  ASSERT_CONTAINS(R.head, "Connection: close\r\n");
  ASSERT_CONTAINS(R.body, error);
  ASSERT_CONTAINS(R.body, detail);
  ASSERT_INT_EQ(cl_closed(c, 3000), 1);
  cl_close(c);
  return 0;
}

static int test_errors(void) {
  if (expect_error("BL\x01H / HTTP/1.1\r\n\r\n", 400, "{\"error\":\"bad request\",\"status\":400",
                   "HPE_"))
    return 1;
  if (expect_error("POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413,
                   "{\"error\":\"payload too large\",\"status\":413",
                   "\"detail\":\"body exceeds 65536 bytes\"}"))
    return 1;
  /* chunked: only the running total can tell */
  static char big[90000];
  char *p = big;
  p += sprintf(p, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 5; i++) {
    p += sprintf(p, "4000\r\n");
    memset(p, 'x', 0x4000);
    p += 0x4000;
    p += sprintf(p, "\r\n");
  }
  p += sprintf(p, "0\r\n\r\n");
  if (expect_error(big, 413, "payload too large", "body exceeds 65536 bytes")) return 1;
  p = big;
  p += sprintf(p, "GET /echo HTTP/1.1\r\nX-Big: ");
  memset(p, 'a', 5000);
  p += 5000;
  sprintf(p, "\r\n\r\n");
  if (expect_error(big, 431, "\"error\":\"request header fields too large\"",
                   "headers exceed 4096 bytes"))
    return 1;
  p = big;
  p += sprintf(p, "GET /echo HTTP/1.1\r\n");
  for (int i = 0; i < 25; i++)
    p += sprintf(p, "X-H%d: v\r\n", i);
  sprintf(p, "\r\n");
  if (expect_error(big, 431, "request header fields too large", "more than 20 headers")) return 1;
  return 0;
}

static int test_read_timeout(void) {
  client *c = cl_open(port_a);
  double t0 = now_ms();
  ASSERT_INT_EQ(cl_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  double dt = now_ms() - t0;
  ASSERT_INT_EQ(R.status, 408);
  ASSERT_CONTAINS(R.body, "\"error\":\"request timeout\"");
  ASSERT_INT_GE(dt, 150);
  ASSERT_INT_GE(1200, dt); /* well before the 1500 ms idle timeout */
  ASSERT_INT_EQ(cl_closed(c, 3000), 1);
  cl_close(c);
  /* an idle keep-alive connection is closed without a response */
  c = cl_open(port_a);
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  t0 = now_ms();
  ASSERT_INT_EQ(cl_closed(c, 5000), 1);
  ASSERT_INT_GE(now_ms() - t0, 1000);
  cl_close(c);
  return 0;
}

/* A connection that never sends a byte is closed at the first-byte timeout (300 ms), not held
 * for the idle timeout (3 s): 1,024 of them used to lock every client out for 75 s. */
static int test_first_byte_timeout(void) {
  client *c = cl_open(port_t);
  ASSERT_INT_EQ(c != NULL, 1);
  double t0 = now_ms();
  ASSERT_INT_EQ(cl_closed(c, 5000), 1);
  double dt = now_ms() - t0;
  ASSERT_INT_GE(dt, 250);
  ASSERT_INT_GE(1500, dt);
  cl_close(c);
  return 0;
}

/* 1 when fd has something to read (or EOF) within ms. */
static int readable(int fd, int ms) {
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(fd, &rs);
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  return select(fd + 1, &rs, NULL, NULL, &tv) > 0;
}

/* The head must be in within 400 ms of its first byte however it trickles in: a byte every
 * 50 ms does not push the deadline back, and the read timeout (3 s) is not what ends it. */
static int test_head_deadline(void) {
  client *c = cl_open(port_t);
  ASSERT_INT_EQ(c != NULL, 1);
  const char *head = "GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  double t0 = now_ms();
  int sent = 0;
  for (const char *p = head; *p && !readable(c->fd, 50); p++, sent++)
    ASSERT_INT_EQ(cl_send(c, p, 1), 0);
  while (!readable(c->fd, 50) && now_ms() - t0 < 5000) {
    if (cl_send(c, "a", 1) != 0) break;
    sent++;
  }
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  double dt = now_ms() - t0;
  ASSERT_INT_EQ(R.status, 408);
  ASSERT_CONTAINS(R.body, "request head not complete within 400 ms");
  ASSERT_INT_GE(dt, 350);
  ASSERT_INT_GE(1500, dt);
  ASSERT_INT_GE(sent, 5); /* it did trickle */
  ASSERT_INT_EQ(cl_closed(c, 3000), 1);
  cl_close(c);
  return 0;
}

/* The head deadline is the head's: a body may take longer, up to the read timeout. */
static int test_slow_body(void) {
  client *c = cl_open(port_t);
  ASSERT_INT_EQ(cl_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: 8\r\n\r\n"), 0);
  for (int i = 0; i < 8; i++) {
    usleep(100 * 1000);
    ASSERT_INT_EQ(cl_send(c, "b", 1), 0);
  }
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_STR_EQ(R.body, "path=/echo blen=8");
  cl_close(c);
  return 0;
}

/* After a response, a keep-alive connection waits for the idle timeout, not the first-byte one. */
static int test_keepalive_idle(void) {
  client *c = cl_open(port_t);
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  usleep(700 * 1000);
  ASSERT_INT_EQ(cl_sends(c, "GET /health HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  cl_close(c);
  return 0;
}

static int get_health(client *c) {
  if (cl_sends(c, "GET /health HTTP/1.1\r\n\r\n") != 0 || cl_read(c, &R, 0) != 0) return -1;
  return R.status;
}

/* At the limit (2), a new client closes the oldest idle keep-alive connection instead of being
 * turned away; the younger one keeps working. */
static int test_limit_evicts_idle(void) {
  usleep(100 * 1000); /* the server has seen earlier tests' clients go */
  client *c1 = cl_open(port_b), *c2 = cl_open(port_b);
  ASSERT_INT_EQ(c1 && c2, 1);
  /* a response on each makes sure both are accepted before the third arrives */
  ASSERT_INT_EQ(get_health(c1), 200);
  ASSERT_INT_EQ(get_health(c2), 200);
  client *c3 = cl_open(port_b);
  ASSERT_INT_EQ(c3 != NULL, 1);
  ASSERT_INT_EQ(get_health(c3), 200);
  ASSERT_INT_EQ(cl_closed(c1, 3000), 1);
  ASSERT_INT_EQ(get_health(c2), 200);
  cl_close(c1);
  cl_close(c2);
  cl_close(c3);
  return 0;
}

/* Connections that never sent a byte make room the same way, oldest first. */
static int test_limit_evicts_silent(void) {
  usleep(100 * 1000);
  client *c1 = cl_open(port_b);
  usleep(50 * 1000);
  client *c2 = cl_open(port_b);
  ASSERT_INT_EQ(c1 && c2, 1);
  usleep(100 * 1000); /* both accepted */
  client *c3 = cl_open(port_b);
  ASSERT_INT_EQ(c3 != NULL, 1);
  ASSERT_INT_EQ(get_health(c3), 200);
  ASSERT_INT_EQ(cl_closed(c1, 3000), 1);
  ASSERT_INT_EQ(get_health(c2), 200);
  cl_close(c1);
  cl_close(c2);
  cl_close(c3);
  return 0;
}

/* With no idle connection, the oldest one still sending its head makes room. */
static int test_limit_evicts_slow_head(void) {
  usleep(100 * 1000);
  client *c1 = cl_open(port_b), *c2 = cl_open(port_b);
  ASSERT_INT_EQ(c1 && c2, 1);
  ASSERT_INT_EQ(cl_sends(c1, "GET /health HTTP/1.1\r\nX-A: "), 0);
  usleep(50 * 1000);
  ASSERT_INT_EQ(cl_sends(c2, "GET /health HTTP/1.1\r\nX-A: "), 0);
  usleep(100 * 1000);
  client *c3 = cl_open(port_b);
  ASSERT_INT_EQ(c3 != NULL, 1);
  ASSERT_INT_EQ(get_health(c3), 200);
  ASSERT_INT_EQ(cl_closed(c1, 3000), 1);
  ASSERT_INT_EQ(cl_sends(c2, "1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c2, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  cl_close(c1);
  cl_close(c2);
  cl_close(c3);
  return 0;
}

/* Connections whose head is in and whose body is arriving are never closed to make room: the
 * new client is turned away, and the two requests complete. */
static int test_limit_refuses_when_busy(void) {
  usleep(100 * 1000);
  client *c1 = cl_open(port_b), *c2 = cl_open(port_b);
  ASSERT_INT_EQ(c1 && c2, 1);
  const char *part = "POST /echo HTTP/1.1\r\nContent-Length: 4\r\n\r\nab";
  ASSERT_INT_EQ(cl_sends(c1, part), 0);
  ASSERT_INT_EQ(cl_sends(c2, part), 0);
  usleep(100 * 1000);
  client *c3 = cl_open(port_b);
  ASSERT_INT_EQ(c3 != NULL, 1);
  ASSERT_INT_EQ(cl_closed(c3, 3000), 1);
  cl_close(c3);
  ASSERT_INT_EQ(cl_sends(c1, "cd"), 0);
  ASSERT_INT_EQ(cl_read(c1, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "path=/echo blen=4");
  ASSERT_INT_EQ(cl_sends(c2, "cd"), 0);
  ASSERT_INT_EQ(cl_read(c2, &R, 0), 0);
  ASSERT_STR_EQ(R.body, "path=/echo blen=4");
  cl_close(c1);
  cl_close(c2);
  return 0;
}

/* A burst of connects beyond the limit does not close a connection whose request is waiting
 * unread: the loop is held in a handler while a probe connects and sends, then four more
 * connect, so the loop accepts them all in one turn before it reads the probe. */
static int test_limit_spares_unread(void) {
  usleep(100 * 1000);
  client *c0 = cl_open(port_b);
  ASSERT_INT_EQ(c0 != NULL, 1);
  ASSERT_INT_EQ(cl_sends(c0, "GET /sleep HTTP/1.1\r\n\r\n"), 0);
  usleep(100 * 1000); /* the loop is in the handler now */
  client *probe = cl_open(port_b);
  ASSERT_INT_EQ(probe != NULL, 1);
  ASSERT_INT_EQ(cl_sends(probe, "GET /health HTTP/1.1\r\n\r\n"), 0);
  client *more[4];
  for (int i = 0; i < 4; i++) {
    more[i] = cl_open(port_b);
    ASSERT_INT_EQ(more[i] != NULL, 1);
  }
  ASSERT_INT_EQ(cl_read(c0, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  ASSERT_INT_EQ(cl_read(probe, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  cl_close(c0);
  cl_close(probe);
  for (int i = 0; i < 4; i++)
    cl_close(more[i]);
  return 0;
}

/* Slowloris at small scale: 100 silent and 100 slow-head connections against a limit of 32,
 * then every one of 20 health probes is answered. */
#define MANY 100
static int test_many_idle(void) {
  static client *cs[2 * MANY];
  int ok = 0;
  for (int i = 0; i < 2 * MANY; i++) {
    cs[i] = cl_open(port_t);
    ASSERT_INT_EQ(cs[i] != NULL, 1);
    if (i % 2) cl_sends(cs[i], "GET /health HTTP/1.1\r\nX-A: "); /* may meet an eviction */
  }
  for (int i = 0; i < 20; i++) {
    client *c = cl_open(port_t);
    ASSERT_INT_EQ(c != NULL, 1);
    if (get_health(c) == 200) ok++;
    cl_close(c);
  }
  for (int i = 0; i < 2 * MANY; i++)
    cl_close(cs[i]);
  ASSERT_INT_EQ(ok, 20);
  return 0;
}

static const test_case tests[] = {
    {"errors", test_errors},
    {"read_timeout", test_read_timeout},
    {"first_byte_timeout", test_first_byte_timeout},
    {"head_deadline", test_head_deadline},
    {"slow_body", test_slow_body},
    {"keepalive_idle", test_keepalive_idle},
    {"limit_evicts_idle", test_limit_evicts_idle},
    {"limit_evicts_silent", test_limit_evicts_silent},
    {"limit_evicts_slow_head", test_limit_evicts_slow_head},
    {"limit_refuses_when_busy", test_limit_refuses_when_busy},
    {"limit_spares_unread", test_limit_spares_unread},
    {"many_idle", test_many_idle},
};

/* ---- main ------------------------------------------------------------------------------- */

static const char health[] = "{\"status\":\"ok\"}";

static int start(bg_http_limits *lim, bg_http_server **srv, int *port) {
  if (bg_http_server_new(&loop, lim, handler, NULL, srv) != 0) return -1;
  if (bg_http_set_static(*srv, "/health", 200, NULL, health, strlen(health)) != 0) return -1;
  if (bg_http_listen(*srv, "127.0.0.1", 0) != 0) return -1;
  *port = bg_http_port(*srv);
  return *port > 0 ? 0 : -1;
}

int main(void) {
  uv_loop_init(&loop);
  bg_http_limits lim;
  bg_http_limits_default(&lim);
  lim.max_header_bytes = 4096;
  lim.max_headers = 20;
  lim.max_body_bytes = 65536;
  lim.read_timeout_ms = 200;
  lim.idle_timeout_ms = 1500;
  lim.max_connections = 64;
  if (start(&lim, &srv_a, &port_a) != 0) return 1;
  bg_http_limits_default(&lim);
  lim.read_timeout_ms = 3000;
  lim.header_timeout_ms = 400;
  lim.first_byte_timeout_ms = 300;
  lim.idle_timeout_ms = 3000;
  lim.max_connections = 32;
  if (start(&lim, &srv_t, &port_t) != 0) return 1;
  bg_http_limits_default(&lim);
  lim.max_connections = 2;
  if (start(&lim, &srv_b, &port_b) != 0) return 1;
  int rc = run_all(&loop, tests, sizeof tests / sizeof tests[0], client_done_cb);
  if (servers_closed != 3) {
    fprintf(stderr, "servers_closed == 3 failed: %d != 3\n", servers_closed);
    return 1;
  }
  return rc;
}
