/* The harness shared by the fetcher tests that run an HTTP server in-process (test_fetch,
 * test_http_client): CHECK macros that count a failure and leave the test, rather than exit, so
 * that one run reports every test; the loop, the listening socket, the server's connections and the
 * run-until-done helpers. Each test still builds from one .c: what is here is static and
 * belongs to that file. What the servers answer stays in each test, where they differ (one
 * response per connection or keep-alive). Include after bg.h and fetch.h. */
#ifndef TEST_NET_H
#define TEST_NET_H

#include "net/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static int failures;

#define FAIL_AT()                                                                                  \
  do {                                                                                             \
    failures++;                                                                                    \
    return;                                                                                        \
  } while (0)
#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c);                        \
      FAIL_AT();                                                                                   \
    }                                                                                              \
  } while (0)
#define CHECK_INT(a, b)                                                                            \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_,    \
              b_);                                                                                 \
      FAIL_AT();                                                                                   \
    }                                                                                              \
  } while (0)
/* one string a line: the strings compared are often whole requests or header blocks */
#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (strcmp(a_, b_) != 0) {                                                                     \
      fprintf(stderr, "%s:%d: %s == %s failed:\n  \"%s\"\n  \"%s\"\n", __FILE__, __LINE__, #a, #b, \
              a_, b_);                                                                             \
      FAIL_AT();                                                                                   \
    }                                                                                              \
  } while (0)

static uv_loop_t *loop;
static bg_fetcher *fetcher;

/* ---- the server's socket ---- */

static uv_tcp_t server;
static int server_port;

/* Listens on 127.0.0.1 at a port the kernel picks, kept in server_port; 0 on success. */
static inline int server_listen(uv_connection_cb on_connection) {
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int namelen = sizeof name;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_init(loop, &server) != 0) return -1;
  if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0) return -1;
  if (uv_listen((uv_stream_t *)&server, 128, on_connection) != 0) return -1;
  if (uv_tcp_getsockname(&server, (struct sockaddr *)&name, &namelen) != 0) return -1;
  server_port = ntohs(((struct sockaddr_in *)&name)->sin_port);
  return 0;
}

static inline void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(hint);
  buf->len = buf->base ? hint : 0;
}

/* ---- the server's connections ---- */

/* A connection the server accepted. A test's own connection struct starts with one (set
 * tconn_size to its size); tconn_on_data, when set, runs after every read appended to in. */
typedef struct tconn {
  uv_tcp_t tcp;
  uv_timer_t timer; /* for the test's delayed answers */
  bg_buf in;        /* received, not yet consumed */
  int closing, nclosed;
  struct tconn *prev, *next;
} tconn;

typedef struct twrite {
  uv_write_t req;
  char *data;
  int close_after;
} twrite;

static tconn *tconns;
static int naccepts, nopen; /* connections accepted; still open on the server's side */
static size_t tconn_size = sizeof(tconn);
static void (*tconn_on_data)(tconn *c);

static inline void tconn_handle_closed(uv_handle_t *h) {
  tconn *c = h->data;
  if (++c->nclosed < 2) return;
  bg_buf_free(&c->in);
  free(c);
}

static inline void tconn_close(tconn *c) {
  if (c->closing) return;
  c->closing = 1;
  nopen--;
  if (c->prev)
    c->prev->next = c->next;
  else
    tconns = c->next;
  if (c->next) c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->tcp, tconn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, tconn_handle_closed);
}

static inline void tconn_close_all(void) {
  while (tconns != NULL)
    tconn_close(tconns);
}

static inline void tconn_written(uv_write_t *req, int status) {
  twrite *w = (twrite *)req;
  tconn *c = req->handle->data;
  free(w->data);
  if (status != 0 || w->close_after) tconn_close(c);
  free(w);
}

/* Writes a copy of data; close_after: the connection is closed once it is written. */
static inline void tconn_send(tconn *c, const char *data, size_t len, int close_after) {
  if (c->closing) return;
  twrite *w = calloc(1, sizeof *w);
  w->data = malloc(len ? len : 1);
  memcpy(w->data, data, len);
  w->close_after = close_after;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tconn_written) != 0) {
    free(w->data);
    free(w);
    tconn_close(c);
  }
}

static inline void tconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tconn *c = s->data;
  if (nread < 0) {
    free(buf->base);
    tconn_close(c);
    return;
  }
  bg_buf_append(&c->in, buf->base, (size_t)nread);
  free(buf->base);
  if (tconn_on_data != NULL) tconn_on_data(c);
}

/* The server's uv_connection_cb (server_listen(tconn_accept)). */
static inline void tconn_accept(uv_stream_t *srv, int status) {
  if (status != 0) return;
  tconn *c = calloc(1, tconn_size);
  uv_tcp_init(srv->loop, &c->tcp);
  uv_timer_init(srv->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->next = tconns;
  if (tconns) tconns->prev = c;
  tconns = c;
  nopen++;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    tconn_close(c);
    return;
  }
  naccepts++;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, tconn_read);
}

/* Whether in holds a whole request: its head through the blank line (*hdr_len bytes) and
 * the body its Content-Length announces (*clen bytes). Needs _GNU_SOURCE, for strcasestr. */
static inline int request_ready(const bg_buf *in, size_t *hdr_len, size_t *clen) {
  const char *end = in->data ? strstr(in->data, "\r\n\r\n") : NULL;
  if (end == NULL) return 0;
  *hdr_len = (size_t)(end - in->data) + 4;
  *clen = 0;
  const char *cl = strcasestr(in->data, "\r\ncontent-length:");
  if (cl != NULL && cl < end) *clen = strtoul(cl + 17, NULL, 10);
  return in->len >= *hdr_len + *clen;
}

/* The server's URL for path; eight rotating buffers, so a test may hold several at once. */
static inline const char *url(const char *path) {
  static char buf[8][160];
  static int i;
  char *u = buf[i++ % 8];
  snprintf(u, sizeof buf[0], "http://127.0.0.1:%d%s", server_port, path);
  return u;
}

/* ---- running the loop ---- */

static int ndone; /* completions so far: each test's on_done counts them */
static uv_timer_t deadline;

static inline void on_deadline(uv_timer_t *t) {
  *(int *)t->data = 1;
}

/* Runs the loop until ndone reaches target or ms pass; returns 0 when the target was met. */
static inline int run_until(int target, uint64_t ms) {
  int hit = 0;
  deadline.data = &hit;
  uv_timer_start(&deadline, on_deadline, ms, 0);
  while (ndone < target && !hit)
    uv_run(loop, UV_RUN_ONCE);
  uv_timer_stop(&deadline);
  return ndone >= target ? 0 : -1;
}

static inline void run_for(uint64_t ms) {
  run_until(1 << 30, ms);
}

/* ---- main's parts ---- */

typedef struct test_case {
  const char *name;
  void (*fn)(void);
} test_case;

/* Runs each test and prints a line for it; client, unless NULL, names the pass. */
static inline void run_tests(const test_case *tests, size_t n, const char *client) {
  for (size_t i = 0; i < n; i++) {
    int before = failures;
    tests[i].fn();
    printf("%s %s", failures == before ? "ok  " : "FAIL", tests[i].name);
    if (client != NULL) printf(" (%s)", client);
    printf("\n");
  }
}

/* Any of these would send every request to curl instead of the client under test. */
static inline void unset_proxies(void) {
  unsetenv("http_proxy");
  unsetenv("HTTP_PROXY");
  unsetenv("all_proxy");
  unsetenv("ALL_PROXY");
}

static inline void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(h->type));
}

/* Closes the fetcher, the timer and the server, then close_conns() the server's connections;
 * uv_run returns once all are gone. A handle still open then is a leak in the code under
 * test, so it is named and the test fails. Returns main's exit status. */
static inline int shut_down(void (*close_conns)(void)) {
  bg_fetcher_free(fetcher);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_close((uv_handle_t *)&server, NULL);
  close_conns();
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop);
  if (rc != 0) {
    uv_walk(loop, close_walk, NULL);
    fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return 1;
  }
  printf("all passed\n");
  return 0;
}

#endif
