/* test_http_client_faults: the built-in HTTP/1.1 client when things go wrong (refused and
 * failed connections, cancels, a fetcher freed with requests in flight, idle connections
 * expiring), and what it leaves to curl, against the server of http_client_fixture.h. */

#define _GNU_SOURCE /* strcasestr */
#include "http_client_fixture.h"

static int closed_port(void) {
  struct sockaddr_in addr = {.sin_family = AF_INET};
  socklen_t len = sizeof addr;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&addr, sizeof addr);
  getsockname(fd, (struct sockaddr *)&addr, &len);
  close(fd);
  return ntohs(addr.sin_port);
}

static void test_errors(void) {
  result r = {0};
  char u[128], want[160];
  int port = closed_port();
  snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", port);
  bg_fetch_opts o = {.url = u};
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(r.called, 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.err, BG_EIO);
  snprintf(want, sizeof want, "connect to 127.0.0.1:%d: connection refused", port);
  CHECK_STR(r.errmsg, want);
  CHECK_INT(r.status, 0);

  /* a name resolves, and the error names both */
  snprintf(u, sizeof u, "http://localhost:%d/ok", port);
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.err, BG_EIO);
  CHECK(strncmp(r.errmsg, "connect to localhost (", 22) == 0);
  CHECK(strstr(r.errmsg, "connection refused") != NULL);
  snprintf(u, sizeof u, "http://localhost:%d/ok", server_port);
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.err, 0);
  CHECK_STR(body_of(&r), "hello");

  /* an IPv6 literal (nothing listens there) */
  snprintf(u, sizeof u, "http://[::1]:%d/ok", port);
  o.url = u;
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_INT(r.err, BG_EIO);
  snprintf(want, sizeof want, "connect to [::1]:%d: ", port);
  CHECK(strncmp(r.errmsg, want, strlen(want)) == 0);

  /* where DNS is unreachable the resolution times out instead */
  o.url = "http://nonexistent.invalid/";
  o.timeout_ms = 3000;
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK(r.err == BG_EIO || r.err == BG_ETIMEDOUT);
  CHECK(strstr(r.errmsg, r.err == BG_EIO ? "resolve nonexistent.invalid: "
                                         : "resolving nonexistent.invalid") != NULL);

  /* timeout: the whole request; the connection is not kept */
  bg_fetch_opts t = {.timeout_ms = 200};
  uint64_t t0 = uv_hrtime();
  CHECK_INT(fetch1("/never", &t, &r), 0);
  CHECK_INT(r.err, BG_ETIMEDOUT);
  snprintf(want, sizeof want, "timed out after 200 ms waiting for the response from 127.0.0.1:%d",
           server_port);
  CHECK_STR(r.errmsg, want);
  CHECK_INT(r.status, 0);
  double secs = (double)(r.at_ns - t0) / 1e9;
  if (secs >= 1.5 || secs < 0.19) {
    fprintf(stderr, "timeout took %.3f s\n", secs);
    FAIL_AT();
  }

  /* max_body, from Content-Length up front and while reading a chunked body */
  bg_fetch_opts small = {.max_body = 1000};
  CHECK_INT(fetch1("/big", &small, &r), 0);
  CHECK_INT(r.err, BG_ELIMIT);
  CHECK_STR(r.errmsg, "response body exceeds 1000 bytes");
  CHECK_INT(r.status, 200);
  CHECK_INT(fetch1("/bigchunked", &small, &r), 0);
  CHECK_INT(r.err, BG_ELIMIT);
  CHECK_STR(r.errmsg, "response body exceeds 1000 bytes");
  CHECK(r.body.len <= 1000);
  CHECK_INT(fetch1("/bigchunked", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.body.len, 1u << 20);
  CHECK_INT(fetch1("/big", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.body.len, 1u << 20);
  bg_fetch_opts exact = {.max_body = 5};
  CHECK_INT(fetch1("/ok", &exact, &r), 0);
  CHECK_INT(r.err, 0);
  result_free(&r);
}

static void test_cancel(void) {
  result r = {0};
  fresh_fetcher();
  bg_fetch *req = NULL;
  /* before anything happened, while resolving, and once the request was sent */
  const char *urls[] = {url("/slow"), NULL, url("/slow")};
  char lh[128];
  snprintf(lh, sizeof lh, "http://localhost:%d/slow", server_port);
  urls[1] = lh;
  for (int i = 0; i < 3; i++) {
    bg_fetch_opts o = {.url = urls[i], .body = "x", .body_len = 1};
    ndone = 0;
    int before = naccepts;
    CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, &req), 0);
    CHECK(req != NULL);
    if (i == 2) run_for(100);
    bg_fetch_cancel(req);
    CHECK_INT(bg_fetcher_active(fetcher), 0);
    run_for(400); /* past /slow's answer */
    CHECK_INT(r.called, 0);
    /* a canceled request's connection is closed, not pooled: the next one connects */
    if (i == 2) {
      CHECK_INT(fetch1("/ok", NULL, &r), 0);
      CHECK_STR(body_of(&r), "hello");
      CHECK_INT(naccepts - before, 2);
      r.called = 0;
    }
  }
  result_free(&r);
}

/* free with requests in every state and connections pooled; then free from a callback */
static bg_fetcher *free_me;
static void on_free_fetcher(void *ud, const bg_fetch_result *res) {
  on_done(ud, res);
  bg_fetcher_free(free_me);
  free_me = NULL;
}

static void test_free(void) {
  bg_fetcher *f = NULL;
  result r[5];
  memset(r, 0, sizeof r);
  char lh[128];
  snprintf(lh, sizeof lh, "http://localhost:%d/slow", server_port);
  CHECK_INT(bg_fetcher_new(loop, &f), 0);
  CHECK_INT(start(f, "/ok", NULL, &r[0]), 0);
  ndone = 0;
  CHECK_INT(run_until(1, 5000), 0); /* one pooled connection */
  CHECK_INT(start(f, "/slow", NULL, &r[1]), 0);
  run_for(50);
  CHECK_INT(start(f, "/slow", NULL, &r[2]), 0);
  bg_fetch_opts o = {.url = lh};
  CHECK_INT(bg_fetch_start(f, &o, on_done, &r[3], NULL), 0);
  CHECK_INT(bg_fetcher_active(f), 3);
  ndone = 0;
  bg_fetcher_free(f);
  run_for(400);
  CHECK_INT(ndone, 0);

  result a = {0};
  CHECK_INT(bg_fetcher_new(loop, &free_me), 0);
  for (int i = 1; i < 4; i++)
    CHECK_INT(start(free_me, "/slow", NULL, &r[i]), 0);
  bg_fetch_opts ok = {.url = url("/ok")};
  ndone = 0;
  CHECK_INT(bg_fetch_start(free_me, &ok, on_free_fetcher, &a, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  run_for(400);
  CHECK_INT(a.called, 1);
  CHECK_INT(ndone, 1);
  CHECK(free_me == NULL);
  result_free(&a);
  for (int i = 0; i < 5; i++)
    result_free(&r[i]);
}

/* Idle connections are closed after the idle time (30 s, shortened here), and the client
 * reports closed once its handles are. Through the h1 API, which can shorten it. */
static void on_h1_closed(void *ud) {
  (*(int *)ud)++;
}

static void test_idle_expiry(void) {
  bg_h1 *h = NULL;
  result r = {0};
  int closed = 0;
  CHECK_INT(bg_h1_new(loop, &h), 0);
  bg_h1_set_idle_ms(h, 100);
  bg_fetch_opts o = {.url = url("/ok")};
  int open_before = nopen;
  ndone = 0;
  CHECK_INT(bg_h1_start(h, &o, 5000, 100, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_STR(body_of(&r), "hello");
  run_for(30);
  CHECK_INT(nopen, open_before + 1); /* pooled */
  run_for(300);
  CHECK_INT(nopen, open_before); /* closed by the client, seen by the server */
  o.url = "https://127.0.0.1/";  /* not h1's */
  CHECK_INT(bg_h1_start(h, &o, 5000, 100, on_done, &r, NULL), BG_H1_DECLINED);
  o.url = "http://u@127.0.0.1/";
  CHECK_INT(bg_h1_start(h, &o, 5000, 100, on_done, &r, NULL), BG_H1_DECLINED);
  const char *te[] = {"Transfer-Encoding: chunked", NULL};
  bg_fetch_opts chunked = {.url = url("/ok"), .headers = te};
  CHECK_INT(bg_h1_start(h, &chunked, 5000, 100, on_done, &r, NULL), BG_H1_DECLINED);
  bg_h1_free(h, on_h1_closed, &closed);
  CHECK_INT(closed, 0); /* never synchronously */
  run_for(50);
  CHECK_INT(closed, 1);
  result_free(&r);
}

/* What h1 leaves to curl still works through curl. */
static void test_curl_paths(void) {
  result r = {0};
  bg_fetch_opts follow = {.follow_redirects = 1};
  CHECK_INT(fetch1("/redirect", &follow, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(body_of(&r), "hello");
  CHECK(curl_loaded());
  CHECK_INT(fetch1("/redirect", NULL, &r), 0); /* h1: not followed */
  CHECK_INT(r.status, 302);
  CHECK_STR(body_of(&r), "moved");

  /* userinfo: curl sends it as Basic auth */
  char u[128];
  snprintf(u, sizeof u, "http://user:pw@127.0.0.1:%d/echo", server_port);
  bg_fetch_opts o = {.url = u};
  ndone = 0;
  CHECK_INT(bg_fetch_start(fetcher, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK(strstr(body_of(&r), "\r\nAuthorization: Basic dXNlcjpwdw==\r\n") != NULL);

  /* BEAGLE_HTTP_CLIENT=curl: the same requests go out byte for byte as with h1, except that
   * curl sends no Content-Length for a body-less POST and h1 does */
  bg_fetcher *f = NULL;
  setenv("BEAGLE_HTTP_CLIENT", "curl", 1);
  CHECK_INT(bg_fetcher_new(loop, &f), 0);
  unsetenv("BEAGLE_HTTP_CLIENT");
  const char *hs[] = {"X-Custom: abc",
                      "Accept:",
                      "X-Empty;",
                      "X-Dropped:  ",
                      "User-Agent: u/1",
                      "Content-Type: application/json",
                      NULL};
  const char *hs2[] = {"Host: other.example", "Content-Length: 3", NULL};
  const bg_fetch_opts same[] = {
      {.method = "GET", .headers = hs},
      {.body = "{\"a\":1}", .body_len = 7, .headers = hs},
      {.body = "a=1&b=2", .body_len = 7},
      {.method = "PUT", .body = "", .body_len = 0},
      {.method = "HEAD"},
      {.method = "DELETE", .headers = hs2, .body = "x=1", .body_len = 3},
  };
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    result a = {0}, b = {0};
    CHECK_INT(fetch1("/echo?x=1", &same[i], &a), 0);
    ndone = 0;
    CHECK_INT(start(f, "/echo?x=1", &same[i], &b), 0);
    CHECK_INT(run_until(1, 5000), 0);
    CHECK_STR(body_of(&a), body_of(&b));
    CHECK_INT(a.status, b.status);
    CHECK_STR(headers_of(&a), headers_of(&b));
    result_free(&a);
    result_free(&b);
  }
  bg_fetcher_free(f);

  bg_fetch_opts post = {.method = "POST"};
  CHECK_INT(fetch1("/echo", &post, &r), 0);
  CHECK(strstr(body_of(&r), "\r\nContent-Length: 0\r\n") != NULL);
  setenv("BEAGLE_HTTP_CLIENT", "curl", 1);
  CHECK_INT(bg_fetcher_new(loop, &f), 0);
  unsetenv("BEAGLE_HTTP_CLIENT");
  ndone = 0;
  CHECK_INT(start(f, "/echo", &post, &r), 0);
  CHECK_INT(run_until(1, 5000), 0);
  CHECK_STR(r.errmsg, "");
  CHECK(strncmp(body_of(&r), "POST /echo HTTP/1.1\r\n", 21) == 0);
  CHECK(strstr(body_of(&r), "Content-Length") == NULL);
  bg_fetcher_free(f);

  /* a proxy in the environment: curl, which asks the proxy for the absolute URL */
  char proxy[64];
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", server_port);
  setenv("http_proxy", proxy, 1); /* read by h1 at bg_fetcher_new, by curl per transfer */
  CHECK_INT(bg_fetcher_new(loop, &f), 0);
  o.url = "http://proxied.invalid/echo";
  ndone = 0;
  CHECK_INT(bg_fetch_start(f, &o, on_done, &r, NULL), 0);
  CHECK_INT(run_until(1, 5000), 0);
  unsetenv("http_proxy");
  CHECK_INT(r.err, 0);
  CHECK(strncmp(body_of(&r), "GET http://proxied.invalid/echo HTTP/1.1\r\n", 42) == 0);
  bg_fetcher_free(f);
  run_for(50);
  result_free(&r);
}

int main(void) {
  static const test_case tests[] = {
      {"errors", test_errors},           {"cancel", test_cancel},         {"free", test_free},
      {"idle_expiry", test_idle_expiry}, {"curl_paths", test_curl_paths}, /* last: it loads libcurl
                                                                           */
  };
  return fixture_main(tests, sizeof tests / sizeof tests[0], 0);
}
