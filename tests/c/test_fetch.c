/* test_fetch: the outbound HTTP client against a tiny HTTP/1.1 server running in-process on
 * the same uv loop (one request per connection, "Connection: close"). Every test runs twice:
 * with the built-in client (http_client.c) for plain http://, then with BEAGLE_HTTP_CLIENT=curl, so
 * that both keep the same contract. test_http_client.c covers what is particular to h1. */
#define _GNU_SOURCE /* strcasestr */
#include "base/bg.h"
#include "net/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "test_net.h"

/* ---- the in-process server ---- */

typedef struct conn {
  tconn base; /* its timer: /slow answers from there */
  int responded;
} conn;

/* with_length 0: the body is delimited by closing the connection */
static void respond(conn *c, int status, const char *extra, const char *body, size_t len,
                    int with_length) {
  bg_buf out = {0};
  bg_buf_printf(&out, "HTTP/1.1 %d X\r\nConnection: close\r\n%s", status, extra);
  if (with_length) bg_buf_printf(&out, "Content-Length: %zu\r\n", len);
  bg_buf_puts(&out, "\r\n");
  bg_buf_append(&out, body, len);
  c->responded = 1;
  tconn_send(&c->base, out.data, out.len, 1);
  bg_buf_free(&out);
}

static void on_slow(uv_timer_t *t) {
  respond(t->data, 200, "", "slow", 4, 1);
}

static void handle_request(conn *c, const char *method, const char *path, const char *hdrs,
                           const char *body, size_t body_len) {
  if (strcmp(path, "/ok") == 0) {
    respond(c, 200, "X-Test: 1\r\n", "hello", 5, 1);
  } else if (strcmp(path, "/slow") == 0) {
    uv_timer_start(&c->base.timer, on_slow, 2000, 0);
  } else if (strcmp(path, "/big") == 0 || strcmp(path, "/bigstream") == 0) {
    size_t n = 1u << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    respond(c, 200, "", big, n, strcmp(path, "/big") == 0);
    free(big);
  } else if (strcmp(path, "/echo") == 0) {
    bg_buf out = {0}, extra = {0};
    bg_buf_printf(&out, "%s ", method);
    bg_buf_append(&out, body, body_len);
    const char *h = strcasestr(hdrs, "\r\nX-Custom: ");
    if (h != NULL) {
      h += 12;
      bg_buf_printf(&extra, "X-Custom-Seen: %.*s\r\n", (int)strcspn(h, "\r"), h);
    }
    respond(c, 200, extra.data ? extra.data : "", out.data, out.len, 1);
    bg_buf_free(&out);
    bg_buf_free(&extra);
  } else if (strcmp(path, "/redirect") == 0) {
    respond(c, 302, "Location: /ok\r\n", "moved", 5, 1);
  } else {
    respond(c, 404, "", "nope", 4, 1);
  }
}

static void on_data(tconn *tc) {
  conn *c = (conn *)tc;
  size_t hdr_len, clen;
  if (c->responded || !request_ready(&tc->in, &hdr_len, &clen)) return;
  char method[16] = "", path[256] = "";
  if (sscanf(tc->in.data, "%15s %255s", method, path) != 2) {
    tconn_close(tc);
    return;
  }
  tc->in.data[hdr_len - 2] = '\0'; /* header block keeps its last CRLF, for "\r\nName: " searches */
  handle_request(c, method, path, tc->in.data, tc->in.data + hdr_len, clen);
  c->responded = 1;
}

/* ---- client helpers ---- */

typedef struct result {
  int called;
  int err;
  long status;
  char errmsg[256];
  char body[256];
  size_t body_len;
  char headers[1024];
  double total_time;
  uint64_t at_ns;
} result;

static void on_done(void *ud, const bg_fetch_result *res) {
  result *r = ud;
  r->called++;
  r->err = res->err;
  r->status = res->status;
  snprintf(r->errmsg, sizeof r->errmsg, "%s", res->errmsg);
  snprintf(r->body, sizeof r->body, "%s", res->body);
  r->body_len = res->body_len;
  snprintf(r->headers, sizeof r->headers, "%.*s", (int)res->headers_len, res->headers);
  r->total_time = res->total_time;
  r->at_ns = uv_hrtime();
  ndone++;
}

static int get(const char *path, const bg_fetch_opts *base, result *r) {
  bg_fetch_opts o = base ? *base : (bg_fetch_opts){0};
  o.url = url(path);
  return bg_fetch_start(fetcher, &o, on_done, r, NULL);
}

/* ---- tests ---- */

static void test_get_ok(void) {
  result r = {0};
  ndone = 0;
  CHECK_INT(get("/ok", NULL, &r), 0);
  CHECK_INT(r.called, 0); /* never synchronous */
  CHECK_INT(bg_fetcher_active(fetcher), 1);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.called, 1);
  CHECK_INT(r.err, 0);
  CHECK_STR(r.errmsg, "");
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "hello");
  CHECK_INT(r.body_len, 5);
  CHECK(strstr(r.headers, "HTTP/1.1 200") == r.headers);
  CHECK(strstr(r.headers, "X-Test: 1\r\n") != NULL);
  CHECK(r.total_time > 0);
  CHECK_INT(bg_fetcher_active(fetcher), 0);

  result h = {0};
  bg_fetch_opts o = {.method = "HEAD"};
  ndone = 0;
  CHECK_INT(get("/ok", &o, &h), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(h.err, 0);
  CHECK_INT(h.status, 200);
  CHECK_INT(h.body_len, 0);
  CHECK_STR(h.body, "");
}

static void test_methods(void) {
  const char *hdrs[] = {"X-Custom: abc", "Content-Type: text/plain", NULL};
  bg_fetch_opts post = {.body = "ping=1&x", .body_len = 6, .headers = hdrs};
  bg_fetch_opts put = {.method = "PUT", .body = "data", .body_len = 4};
  bg_fetch_opts del = {.method = "DELETE"};
  result a = {0}, b = {0}, c = {0};
  ndone = 0;
  CHECK_INT(get("/echo", &post, &a), 0);
  CHECK_INT(get("/echo", &put, &b), 0);
  CHECK_INT(get("/echo", &del, &c), 0);
  CHECK_INT(run_until(3, 5000), 0);
  CHECK_INT(a.err, 0);
  CHECK_INT(a.status, 200);
  CHECK_STR(a.body, "POST ping=1");
  CHECK(strstr(a.headers, "X-Custom-Seen: abc\r\n") != NULL);
  CHECK_STR(b.body, "PUT data");
  CHECK_STR(c.body, "DELETE ");
}

static void test_timeout(void) {
  result r = {0};
  bg_fetch_opts o = {.timeout_ms = 200};
  uint64_t t0 = uv_hrtime();
  ndone = 0;
  CHECK_INT(get("/slow", &o, &r), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.err, BG_ETIMEDOUT);
  CHECK(r.errmsg[0] != '\0');
  CHECK_INT(r.status, 0);
  double secs = (double)(r.at_ns - t0) / 1e9;
  if (secs >= 1.5 || secs < 0.15) {
    fprintf(stderr, "timeout took %.3f s\n", secs);
    FAIL_AT();
  }
}

static void test_limit(void) {
  result a = {0}, b = {0}, c = {0};
  bg_fetch_opts small = {.max_body = 1000};
  ndone = 0;
  CHECK_INT(get("/big", &small, &a), 0);       /* Content-Length: rejected up front */
  CHECK_INT(get("/bigstream", &small, &b), 0); /* no length: the write callback stops it */
  CHECK_INT(get("/big", NULL, &c), 0);
  CHECK_INT(run_until(3, 5000), 0);
  CHECK_INT(a.err, BG_ELIMIT);
  CHECK(a.errmsg[0] != '\0');
  CHECK_INT(b.err, BG_ELIMIT);
  CHECK(b.body_len <= 1000);
  CHECK_INT(c.err, 0);
  CHECK_INT(c.body_len, 1u << 20);
}

static void test_redirect(void) {
  result a = {0}, b = {0};
  bg_fetch_opts follow = {.follow_redirects = 1};
  ndone = 0;
  CHECK_INT(get("/redirect", &follow, &a), 0);
  CHECK_INT(get("/redirect", NULL, &b), 0);
  CHECK_INT(run_until(2, 5000), 0);
  CHECK_INT(a.err, 0);
  CHECK_INT(a.status, 200);
  CHECK_STR(a.body, "hello");
  CHECK(strstr(a.headers, "X-Test: 1") != NULL);
  CHECK(strstr(a.headers, "302") == NULL); /* only the final response's headers */
  CHECK(strstr(a.headers, "Location") == NULL);
  CHECK_INT(b.err, 0);
  CHECK_INT(b.status, 302);
  CHECK_STR(b.body, "moved");
}

static void test_refused(void) {
  struct sockaddr_in addr = {.sin_family = AF_INET};
  socklen_t len = sizeof addr;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_INT(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
  CHECK_INT(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
  close(fd);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", ntohs(addr.sin_port));
  result r = {0};
  bg_fetch_opts o = {.url = u};
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.err, BG_EIO);
  CHECK(r.errmsg[0] != '\0');
  CHECK_INT(r.status, 0);
}

static void test_bad_args(void) {
  result r = {0};
  bg_fetch *req = (bg_fetch *)&r;
  bg_fetch_opts o = {0};
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, &req), BG_EINVAL);
  CHECK(req == NULL);
  o.url = "ftp://127.0.0.1/x";
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), BG_EINVAL);
  o.url = url("/ok");
  CHECK_INT(bg_fetch_start(fetcher, &o, NULL, &r, NULL), BG_EINVAL);
  CHECK_INT(bg_fetch_start(NULL, &o, on_done, &r, NULL), BG_EINVAL);
  CHECK_INT(bg_fetch_start(fetcher, NULL, on_done, &r, NULL), BG_EINVAL);
  ndone = 0;
  run_for(50);
  CHECK_INT(r.called, 0);
  CHECK_INT(bg_fetcher_active(fetcher), 0);
}

/* A callback that cancels a sibling request and/or starts a new one. */
typedef struct chain {
  result r;
  bg_fetch *cancel; /* canceled from this callback, unless it already ran */
  struct chain *peer;
  int start_another;
  result next;
} chain;

static void on_chain(void *ud, const bg_fetch_result *res) {
  chain *c = ud;
  on_done(&c->r, res);
  if (c->peer != NULL && !c->peer->r.called) bg_fetch_cancel(c->cancel);
  if (c->start_another) get("/ok", NULL, &c->next);
}

static void test_cancel(void) {
  result r = {0};
  bg_fetch *req = NULL;
  bg_fetch_opts o = {.url = url("/slow")};
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, &req), 0);
  CHECK(req != NULL);
  bg_fetch_cancel(req);
  CHECK_INT(bg_fetcher_active(fetcher), 0);
  run_for(300);
  CHECK_INT(r.called, 0);

  /* started, connected and waiting, then canceled from another request's callback, which
   * also starts a new request */
  chain a = {.start_another = 1}, b = {0};
  bg_fetch_opts ok = {.url = url("/ok")};
  CHECK_INT(bg_fetch_start(fetcher, &o, on_chain, &b, &a.cancel), 0);
  run_for(100);
  a.peer = &b;
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &ok, on_chain, &a, NULL), 0);
  CHECK_INT(run_until(2, 5000), 0); /* a, then a.next */
  CHECK_INT(a.r.called, 1);
  CHECK_INT(a.r.status, 200);
  CHECK_INT(a.next.called, 1);
  CHECK_STR(a.next.body, "hello");
  CHECK_INT(b.r.called, 0);
  CHECK_INT(bg_fetcher_active(fetcher), 0);

  /* two quick requests that may complete in the same round: whichever reports first
   * cancels the other, possibly while curl still queues its completion message */
  for (int i = 0; i < 5; i++) {
    chain x = {0}, y = {0};
    x.peer = &y;
    y.peer = &x;
    ndone = 0;
    CHECK_INT(bg_fetch_start(fetcher, &ok, on_chain, &x, &y.cancel), 0);
    CHECK_INT(bg_fetch_start(fetcher, &ok, on_chain, &y, &x.cancel), 0);
    CHECK_INT(run_until(1, 5000), 0);
    run_for(50);
    CHECK_INT(x.r.called + y.r.called, 1);
    CHECK_INT(bg_fetcher_active(fetcher), 0);
  }
}

static void test_concurrent(void) {
  enum { N = 20 };
  result r[N];
  char bodies[N][16];
  memset(r, 0, sizeof r);
  ndone = 0;
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "req-%d", i);
    bg_fetch_opts o = {.body = bodies[i], .body_len = strlen(bodies[i])};
    CHECK_INT(get("/echo", &o, &r[i]), 0);
  }
  CHECK_INT(bg_fetcher_active(fetcher), N);
  CHECK_INT(run_until(N, 10000), 0);
  for (int i = 0; i < N; i++) {
    CHECK_INT(r[i].called, 1);
    CHECK_INT(r[i].err, 0);
    CHECK(strncmp(r[i].body, "POST ", 5) == 0);
    CHECK_STR(r[i].body + 5, bodies[i]);
  }
  CHECK_INT(bg_fetcher_active(fetcher), 0);
}

static void test_free_inflight(void) {
  bg_fetcher *f = NULL;
  result r[5];
  memset(r, 0, sizeof r);
  CHECK_INT(bg_fetcher_new(loop, &f), 0);
  bg_fetch_opts slow = {.url = url("/slow")}, ok = {.url = url("/ok")};
  for (int i = 0; i < 3; i++)
    CHECK_INT(bg_fetch_start(f, &slow, on_done, &r[i], NULL), 0);
  run_for(100); /* connected: poll handles exist */
  CHECK_INT(bg_fetch_start(f, &ok, on_done, &r[3], NULL), 0);
  CHECK_INT(bg_fetch_start(f, &ok, on_done, &r[4], NULL), 0);
  CHECK_INT(bg_fetcher_active(f), 5);
  ndone = 0;
  bg_fetcher_free(f);
  run_for(300);
  CHECK_INT(ndone, 0);
}

static bg_fetcher *free_me;
static void on_free_fetcher(void *ud, const bg_fetch_result *res) {
  on_done(ud, res);
  bg_fetcher_free(free_me);
  free_me = NULL;
}

static void test_free_in_callback(void) {
  result a = {0}, b[3];
  memset(b, 0, sizeof b);
  CHECK_INT(bg_fetcher_new(loop, &free_me), 0);
  bg_fetch_opts slow = {.url = url("/slow")}, ok = {.url = url("/ok")};
  for (int i = 0; i < 3; i++)
    CHECK_INT(bg_fetch_start(free_me, &slow, on_done, &b[i], NULL), 0);
  ndone = 0;
  CHECK_INT(bg_fetch_start(free_me, &ok, on_free_fetcher, &a, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  run_for(300);
  CHECK_INT(a.called, 1);
  CHECK_INT(ndone, 1);
  CHECK(free_me == NULL);
}

int main(void) {
  static const test_case tests[] = {
      {"get_ok", test_get_ok},
      {"methods", test_methods},
      {"timeout", test_timeout},
      {"limit", test_limit},
      {"redirect", test_redirect},
      {"refused", test_refused},
      {"bad_args", test_bad_args},
      {"cancel", test_cancel},
      {"concurrent", test_concurrent},
      {"free_inflight", test_free_inflight},
      {"free_in_callback", test_free_in_callback},
  };
  signal(SIGPIPE, SIG_IGN); /* the server writes into connections the client dropped */
  loop = uv_default_loop();
  tconn_size = sizeof(conn);
  tconn_on_data = on_data;
  if (server_listen(tconn_accept) != 0) {
    fprintf(stderr, "server_listen failed\n");
    return 1;
  }
  uv_timer_init(loop, &deadline);
  unset_proxies();
  for (int pass = 0; pass < 2; pass++) {
    const char *client = pass == 0 ? "h1" : "curl";
    if (pass == 0)
      unsetenv("BEAGLE_HTTP_CLIENT");
    else
      setenv("BEAGLE_HTTP_CLIENT", "curl", 1); /* read at bg_fetcher_new, in the tests too */
    if (pass > 0) bg_fetcher_free(fetcher);
    if (bg_fetcher_new(loop, &fetcher) != 0) {
      fprintf(stderr, "bg_fetcher_new failed\n");
      return 1;
    }
    run_tests(tests, sizeof tests / sizeof tests[0], client);
    if (failures > 0) return 1; /* state may be inconsistent: skip the shutdown check */
  }

  /* everything closes: uv_run returns once the fetcher, server and connections are gone */
  return shut_down(tconn_close_all);
}
