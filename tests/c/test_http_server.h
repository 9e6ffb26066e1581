/* test_http_server.h: what the HTTP server tests share (each tests/c/test_http_server*.c is its
 * own executable and includes this once): assertions that print both values and leave the test,
 * a blocking-socket client for the client thread, and the runner that drives a table of tests
 * from that thread while the server's loop runs in the main thread. */
#ifndef TEST_HTTP_SERVER_H
#define TEST_HTTP_SERVER_H

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

/* ---- client side (the client thread) ---------------------------------------------------- */

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

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static inline void set_rcvtimeo(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static inline client *cl_open(int port) {
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

static inline void cl_close(client *c) {
  if (c == NULL) return;
  close(c->fd);
  free(c);
}

static inline int cl_send(client *c, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static inline int cl_sends(client *c, const char *s) {
  return cl_send(c, s, strlen(s));
}

static inline int cl_fill(client *c) {
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1, 0);
  if (n <= 0) return -1;
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  return 0;
}

/* Reads one response (skipping 100 Continue); head_only for answers to HEAD. 0 or -1. */
static inline int cl_read(client *c, resp *r, int head_only) {
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
static inline int cl_closed(client *c, int ms) {
  if (c->len) return 0;
  set_rcvtimeo(c->fd, ms);
  char b[256];
  ssize_t n = recv(c->fd, b, sizeof b, 0);
  set_rcvtimeo(c->fd, 5000);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* One request on a fresh connection. */
static inline int roundtrip(int port, const char *req, resp *r, int head_only) {
  client *c = cl_open(port);
  if (c == NULL) return -1;
  int rc = cl_sends(c, req) == 0 ? cl_read(c, r, head_only) : -1;
  cl_close(c);
  return rc;
}

/* ---- the runner ------------------------------------------------------------------------- */

typedef struct test_case {
  const char *name;
  int (*fn)(void);
} test_case;

static int failures;
static uv_async_t client_done;
static const test_case *run_tests;
static size_t run_ntests;

static inline void *client_main(void *arg) {
  (void)arg;
  for (size_t i = 0; i < run_ntests; i++) {
    int rc = run_tests[i].fn();
    printf("%s %zu - %s\n", rc ? "not ok" : "ok", i + 1, run_tests[i].name);
    if (rc) failures++;
  }
  uv_async_send(&client_done);
  return NULL;
}

/* Runs tests in a client thread while loop runs here; done_cb (on the loop) must close every
 * handle, client_done included, so the loop ends. Returns the exit status for main. */
static inline int run_all(uv_loop_t *loop, const test_case *tests, size_t n, uv_async_cb done_cb) {
  pthread_t th;
  run_tests = tests;
  run_ntests = n;
  uv_async_init(loop, &client_done, done_cb);
  pthread_create(&th, NULL, client_main, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  int rc = uv_loop_close(loop);
  if (rc != 0) {
    fprintf(stderr, "uv_loop_close failed: %s\n", bg_strerror(rc));
    failures++;
  }
  printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures != 0;
}

#endif
