/* test_http_server: the HTTP server on a real loop in the main thread, driven by a client thread
 * with plain blocking sockets. `test_http_server --serve PORT` instead serves a static /health
 * until SIGINT, for wrk. */
#define _GNU_SOURCE
#include "base/bg.h"
#include "net/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ASSERT_INT_EQ(a, b)                                                                        \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: assertion %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a,  \
              #b, a_, b_);                                                                         \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

#define ASSERT_INT_GE(a, b)                                                                        \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ < b_) {                                                                                 \
      fprintf(stderr, "%s:%d: assertion %s >= %s failed: %lld < %lld\n", __FILE__, __LINE__, #a,   \
              #b, a_, b_);                                                                         \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                                               \
  do {                                                                                             \
    const char *h_ = (hay), *n_ = (needle);                                                        \
    if (strstr(h_, n_) == NULL) {                                                                  \
      fprintf(stderr, "%s:%d: expected %s to contain \"%s\", got \"%s\"\n", __FILE__, __LINE__,    \
              #hay, n_, h_);                                                                       \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

#define ASSERT_NOT_CONTAINS(hay, needle)                                                           \
  do {                                                                                             \
    const char *h_ = (hay), *n_ = (needle);                                                        \
    if (strstr(h_, n_) != NULL) {                                                                  \
      fprintf(stderr, "%s:%d: expected %s not to contain \"%s\", got \"%s\"\n", __FILE__,          \
              __LINE__, #hay, n_, h_);                                                             \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (strcmp(a_, b_) != 0) {                                                                     \
      fprintf(stderr, "%s:%d: assertion %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,  \
              #a, #b, a_, b_);                                                                     \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

/* ---- loop side -------------------------------------------------------------------------- */

static uv_loop_t loop;
static bg_http_server *srv_a, *srv_b;
static int port_a, port_b;
static uv_async_t client_done;
static int failures;
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
  bg_http_stats a, b;
  bg_http_get_stats(srv_a, &a);
  bg_http_get_stats(srv_b, &b);
  ASSERT_INT_EQ(b.connections_rejected, 1);
  ASSERT_INT_GE(b.connections_accepted, 2);
  ASSERT_INT_EQ(a.connections_rejected, 0);
  ASSERT_INT_GE(a.static_hits, 10);
  ASSERT_INT_GE(a.requests, a.static_hits + 10);
  ASSERT_INT_GE(a.errors_4xx, 7); /* 400, 413 x2, 431 x2, 408, 404 */
  ASSERT_INT_EQ(a.errors_5xx, 1); /* the failed render */
  ASSERT_INT_GE(a.connections_accepted, 15);
  return 0;
}

static void client_done_cb(uv_async_t *h) {
  if (check_stats() != 0) failures++;
  bg_http_server_close(srv_a, closed_cb, &servers_closed);
  bg_http_server_close(srv_b, closed_cb, &servers_closed);
  uv_close((uv_handle_t *)h, NULL);
}

/* ---- client side ------------------------------------------------------------------------ */

typedef struct client {
  int fd;
  size_t len;
  char buf[256 * 1024];
} client;

typedef struct resp {
  int status;
  char head[16384];
  char body[65536];
  size_t body_len;
} resp;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void set_rcvtimeo(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static client *cl_open(int port) {
  client *c = calloc(1, sizeof *c);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    perror("connect");
    close(c->fd);
    free(c);
    return NULL;
  }
  set_rcvtimeo(c->fd, 5000);
  return c;
}

static void cl_close(client *c) {
  if (c == NULL) return;
  close(c->fd);
  free(c);
}

static int cl_send(client *c, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int cl_sends(client *c, const char *s) {
  return cl_send(c, s, strlen(s));
}

static int cl_fill(client *c) {
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1, 0);
  if (n <= 0) return -1;
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  return 0;
}

/* Reads one response (skipping 100 Continue); head_only for answers to HEAD. 0 or -1. */
static int cl_read(client *c, resp *r, int head_only) {
  char *e;
  while ((e = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
    if (cl_fill(c) != 0) return -1;
  size_t hl = (size_t)(e + 4 - c->buf);
  if (hl >= sizeof r->head) return -1;
  memcpy(r->head, c->buf, hl);
  r->head[hl] = '\0';
  r->status = atoi(r->head + 9);
  size_t clen = 0;
  char *cl = strcasestr(r->head, "\r\ncontent-length:");
  if (cl) clen = strtoul(cl + 17, NULL, 10);
  if (head_only || r->status < 200 || r->status == 204 || r->status == 304) clen = 0;
  if (clen >= sizeof r->body) return -1;
  while (c->len < hl + clen)
    if (cl_fill(c) != 0) return -1;
  memcpy(r->body, c->buf + hl, clen);
  r->body[clen] = '\0';
  r->body_len = clen;
  memmove(c->buf, c->buf + hl + clen, c->len - hl - clen);
  c->len -= hl + clen;
  if (r->status == 100) return cl_read(c, r, head_only);
  return 0;
}

/* 1 when the server closes the connection within ms with no further bytes. */
static int cl_closed(client *c, int ms) {
  if (c->len) return 0;
  set_rcvtimeo(c->fd, ms);
  char b[256];
  ssize_t n = recv(c->fd, b, sizeof b, 0);
  set_rcvtimeo(c->fd, 5000);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One request on a fresh connection. */
static int roundtrip(int port, const char *req, resp *r, int head_only) {
  client *c = cl_open(port);
  if (c == NULL) return -1;
  int rc = cl_sends(c, req) == 0 ? cl_read(c, r, head_only) : -1;
  cl_close(c);
  return rc;
}

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
  t0 = now_ms();
  ASSERT_INT_EQ(cl_closed(c, 5000), 1);
  ASSERT_INT_GE(now_ms() - t0, 1000);
  cl_close(c);
  return 0;
}

static int test_max_connections(void) {
  client *c1 = cl_open(port_b), *c2 = cl_open(port_b);
  ASSERT_INT_EQ(c1 && c2, 1);
  /* a response on each makes sure both are accepted before the third arrives */
  ASSERT_INT_EQ(cl_sends(c1, "GET /health HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c1, &R, 0), 0);
  ASSERT_INT_EQ(cl_sends(c2, "GET /health HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c2, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  client *c3 = cl_open(port_b);
  ASSERT_INT_EQ(c3 != NULL, 1);
  ASSERT_INT_EQ(cl_closed(c3, 3000), 1);
  cl_close(c3);
  /* the existing ones still work */
  ASSERT_INT_EQ(cl_sends(c1, "GET /health HTTP/1.1\r\n\r\n"), 0);
  ASSERT_INT_EQ(cl_read(c1, &R, 0), 0);
  ASSERT_INT_EQ(R.status, 200);
  cl_close(c1);
  cl_close(c2);
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

static const struct {
  const char *name;
  int (*fn)(void);
} tests[] = {
    {"static_get", test_static_get},
    {"static_head", test_static_head},
    {"handler", test_handler},
    {"keepalive", test_keepalive},
    {"fragmented", test_fragmented},
    {"pipelined", test_pipelined},
    {"connection_close", test_connection_close},
    {"errors", test_errors},
    {"read_timeout", test_read_timeout},
    {"max_connections", test_max_connections},
    {"set_static", test_set_static},
    {"render", test_render},
};

static void *client_main(void *arg) {
  (void)arg;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    int rc = tests[i].fn();
    printf("%s %zu - %s\n", rc ? "not ok" : "ok", i + 1, tests[i].name);
    if (rc) failures++;
  }
  uv_async_send(&client_done);
  return NULL;
}

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
  lim.max_header_bytes = 4096;
  lim.max_headers = 20;
  lim.max_body_bytes = 65536;
  lim.read_timeout_ms = 200;
  lim.idle_timeout_ms = 1500;
  lim.max_connections = 64;
  if (bg_http_server_new(&loop, &lim, handler, &srv_a, &srv_a) != 0) return 1;
  bg_http_limits_default(&lim);
  lim.max_connections = 2;
  if (bg_http_server_new(&loop, &lim, handler, &srv_b, &srv_b) != 0) return 1;
  if (bg_http_set_static(srv_a, "/health", 200, NULL, health, strlen(health)) != 0) return 1;
  if (bg_http_set_static(srv_b, "/health", 200, NULL, health, strlen(health)) != 0) return 1;
  if (bg_http_set_render(srv_a, "/render", render, NULL) != 0) return 1;
  if (bg_http_port(srv_a) >= 0) return 1; /* not listening yet */
  if (bg_http_listen(srv_a, "127.0.0.1", 0) != 0 || bg_http_listen(srv_b, "127.0.0.1", 0) != 0)
    return 1;
  port_a = bg_http_port(srv_a);
  port_b = bg_http_port(srv_b);
  if (port_a <= 0 || port_b <= 0 || port_a == port_b) return 1;
  uv_async_init(&loop, &client_done, client_done_cb);

  pthread_t th;
  pthread_create(&th, NULL, client_main, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  if (servers_closed != 2) {
    fprintf(stderr, "servers_closed == 2 failed: %d != 2\n", servers_closed);
    failures++;
  }
  int rc = uv_loop_close(&loop);
  if (rc != 0) {
    fprintf(stderr, "uv_loop_close failed: %s\n", bg_strerror(rc));
    failures++;
  }
  printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures != 0;
}
