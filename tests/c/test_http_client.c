/* test_http_client: the built-in HTTP/1.1 client (core/net/http_client.c) behind bg_fetch_start,
 * against the in-process keep-alive server of http_client_fixture.h: requests, response shapes,
 * keep-alive and a server that closes. Failures, cancels, frees, idle expiry and what still goes
 * through curl are in test_http_client_faults.c.
 *
 *   test_http_client               run the tests
 *   test_http_client serve         run only the server, print its port, serve until killed
 *   test_http_client bench PORT N  N sequential 700-byte POSTs to a "serve" process (for callgrind;
 *                                  BEAGLE_HTTP_CLIENT=curl measures curl the same way) */

#define _GNU_SOURCE /* strcasestr */
#include "http_client_fixture.h"

/* ---- tests ---- */

static void test_get(void) {
  result r = {0};
  char want[512], want_h[128];
  const char *hdrs[] = {"X-Custom: abc", "Accept:", "X-Empty;", "X-Dropped:  ", NULL};
  bg_fetch_opts o = {.headers = hdrs};
  CHECK_INT(fetch1("/echo?q=1&b=%20#frag", &o, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 200);
  snprintf(want, sizeof want,
           "GET /echo?q=1&b=%%20 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: beagle/0.1\r\n"
           "X-Custom: abc\r\nX-Empty:\r\n\r\n",
           server_port);
  CHECK_STR(body_of(&r), want);
  CHECK(!curl_loaded()); /* h1 never loads libcurl */
  snprintf(want_h, sizeof want_h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", strlen(want));
  CHECK_STR(headers_of(&r), want_h);
  result_free(&r);
}

static void test_ok(void) {
  result r = {0};
  CHECK_INT(fetch1("/ok", NULL, &r), 0);
  CHECK_INT(r.called, 1);
  CHECK_INT(r.err, 0);
  CHECK_STR(r.errmsg, "");
  CHECK_INT(r.status, 200);
  CHECK_STR(body_of(&r), "hello");
  CHECK_STR(headers_of(&r), "HTTP/1.1 200 OK\r\nX-Test: 1\r\nContent-Length: 5\r\n\r\n");
  CHECK(r.total_time > 0 && r.total_time < 5);
  CHECK_INT(bg_fetcher_active(fetcher), 0);
  result_free(&r);
}

static void test_post(void) {
  result r = {0};
  char body[701], want[1024];
  for (int i = 0; i < 700; i++)
    body[i] = (char)('a' + i % 26);
  body[700] = '\0';
  const char *hdrs[] = {"Content-Type: application/json", "X-Custom: abc", NULL};
  bg_fetch_opts o = {.body = body, .body_len = 700, .headers = hdrs};
  CHECK_INT(fetch1("/echo", &o, &r), 0);
  CHECK_INT(r.err, 0);
  snprintf(want, sizeof want,
           "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: beagle/0.1\r\nAccept: */*\r\n"
           "Content-Type: application/json\r\nX-Custom: abc\r\nContent-Length: 700\r\n\r\n%s",
           server_port, body);
  CHECK_STR(body_of(&r), want);
  CHECK(strcasestr(body_of(&r), "Expect") == NULL);

  /* PUT without a body says so; a caller's User-Agent replaces ours; no Content-Type is made
   * up without a body; a body with no Content-Type gets curl's default */
  const char *ua[] = {"User-Agent: mine/2", "host: virtual.example", NULL};
  bg_fetch_opts put = {.method = "PUT", .headers = ua};
  CHECK_INT(fetch1("/echo", &put, &r), 0);
  CHECK_STR(body_of(&r), "PUT /echo HTTP/1.1\r\nHost: virtual.example\r\nAccept: */*\r\n"
                         "User-Agent: mine/2\r\nContent-Length: 0\r\n\r\n");
  bg_fetch_opts form = {.body = "a=1", .body_len = 3, .method = "PATCH"};
  CHECK_INT(fetch1("/echo", &form, &r), 0);
  snprintf(want, sizeof want,
           "PATCH /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: beagle/0.1\r\nAccept: */*\r\n"
           "Content-Length: 3\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\na=1",
           server_port);
  CHECK_STR(body_of(&r), want);
  bg_fetch_opts del = {.method = "DELETE"};
  CHECK_INT(fetch1("/echo", &del, &r), 0);
  CHECK(strncmp(body_of(&r), "DELETE /echo HTTP/1.1\r\n", 23) == 0);
  CHECK(strcasestr(body_of(&r), "Content-Length") == NULL);
  result_free(&r);
}

static void test_response_shapes(void) {
  result r = {0};
  CHECK_INT(fetch1("/chunked", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_STR(body_of(&r), "hello world!");
  CHECK_STR(headers_of(&r), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");

  CHECK_INT(fetch1("/split", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 202);
  CHECK_STR(body_of(&r), "abc");
  CHECK_STR(headers_of(&r), "HTTP/1.1 202 Accepted\r\nX-A: bc\r\nContent-Length: 3\r\n\r\n");

  fresh_fetcher();
  int before = naccepts;
  CHECK_INT(fetch1("/eof", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(body_of(&r), "until the end");
  CHECK_STR(headers_of(&r), "HTTP/1.1 200 OK\r\nX-Eof: 1\r\n\r\n");
  CHECK_INT(fetch1("/ok", NULL, &r), 0); /* a new connection: that one is gone */
  CHECK_INT(naccepts, before + 2);

  /* interim responses are skipped entirely */
  CHECK_INT(fetch1("/continue", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 201);
  CHECK_STR(body_of(&r), "ok");
  CHECK_STR(headers_of(&r), "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n");

  CHECK_INT(fetch1("/noreason", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 204);
  CHECK_STR(body_of(&r), "");
  CHECK_STR(headers_of(&r), "HTTP/1.1 204\r\nX-E: \r\n\r\n");

  CHECK_INT(fetch1("/nothere", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 404);
  CHECK_STR(body_of(&r), "nope");

  /* HEAD: no body is read although the headers announce one, and the connection is reused */
  bg_fetch_opts head = {.method = "HEAD"};
  before = naccepts;
  CHECK_INT(fetch1("/ok", &head, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(body_of(&r), "");
  CHECK(strstr(headers_of(&r), "Content-Length: 5\r\n") != NULL);
  CHECK_INT(fetch1("/ok", NULL, &r), 0);
  CHECK_STR(body_of(&r), "hello");
  CHECK_INT(naccepts, before);
  result_free(&r);
}

static void test_keepalive(void) {
  result r[3];
  memset(r, 0, sizeof r);
  int before = naccepts;
  CHECK_INT(fetch1("/ok", NULL, &r[0]), 0);
  CHECK_INT(fetch1("/ok", NULL, &r[1]), 0);
  CHECK_INT(fetch1("/echo", NULL, &r[2]), 0);
  CHECK_INT(r[0].err + r[1].err + r[2].err, 0);
  CHECK_INT(naccepts - before, 0); /* earlier tests left one pooled */

  /* three at once need three connections; then all three are pooled and reused */
  before = naccepts;
  ndone = 0;
  for (int i = 0; i < 3; i++)
    CHECK_INT(start(fetcher, "/ok", NULL, &r[i]), 0);
  CHECK_INT(run_until(3, 5000), 0);
  CHECK_INT(naccepts - before, 2);
  ndone = 0;
  for (int i = 0; i < 3; i++)
    CHECK_INT(start(fetcher, "/ok", NULL, &r[i]), 0);
  CHECK_INT(run_until(3, 5000), 0);
  CHECK_INT(naccepts - before, 2);
  for (int i = 0; i < 3; i++)
    CHECK_STR(body_of(&r[i]), "hello");

  /* bytes after a response make the connection unusable */
  before = naccepts;
  CHECK_INT(fetch1("/extra", NULL, &r[0]), 0);
  CHECK_STR(body_of(&r[0]), "ok");
  CHECK_INT(fetch1("/ok", NULL, &r[0]), 0);
  CHECK_INT(fetch1("/ok", NULL, &r[0]), 0);
  CHECK_INT(r[0].err, 0);
  CHECK_STR(body_of(&r[0]), "hello");
  CHECK_INT(naccepts - before, 0); /* the pool had two more: /extra's went, theirs stay */
  for (int i = 0; i < 3; i++)
    result_free(&r[i]);

  /* at most BG_H1_MAX_IDLE idle connections per host:port: N at once, then N again need
   * N - BG_H1_MAX_IDLE new ones */
  enum { N = BG_H1_MAX_IDLE + 4 };
  result many[N];
  memset(many, 0, sizeof many);
  fresh_fetcher();
  for (int round = 0; round < 2; round++) {
    before = naccepts;
    ndone = 0;
    for (int i = 0; i < N; i++)
      CHECK_INT(start(fetcher, "/ok", NULL, &many[i]), 0);
    CHECK_INT(bg_fetcher_active(fetcher), N);
    CHECK_INT(run_until(N, 5000), 0);
    for (int i = 0; i < N; i++)
      CHECK_STR(body_of(&many[i]), "hello");
    CHECK_INT(naccepts - before, round == 0 ? N : N - BG_H1_MAX_IDLE);
  }
  for (int i = 0; i < N; i++)
    result_free(&many[i]);
}

/* A callback that starts the next request right away, on the connection just pooled. */
static result chained;
static void on_then_ok(void *ud, const bg_fetch_result *res) {
  on_done(ud, res);
  start(fetcher, "/ok", NULL, &chained);
}

static void test_server_closes(void) {
  result r = {0};
  /* noticed while idle (or else retried) */
  fresh_fetcher();
  int before = naccepts;
  CHECK_INT(fetch1("/close", NULL, &r), 0);
  CHECK_STR(body_of(&r), "ok");
  run_for(50);
  CHECK_INT(fetch1("/ok", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_STR(body_of(&r), "hello");
  CHECK_INT(naccepts - before, 2);

  /* closed under a request sent on the reused connection: retried once, transparently; the
   * server takes the second request on that connection and closes it unanswered */
  fresh_fetcher();
  before = naccepts;
  CHECK_INT(fetch1("/dropnext", NULL, &r), 0);
  CHECK_STR(body_of(&r), "armed");
  CHECK_INT(fetch1("/ok", NULL, &r), 0);
  CHECK_INT(r.err, 0);
  CHECK_STR(r.errmsg, "");
  CHECK_STR(body_of(&r), "hello");
  CHECK_INT(naccepts - before, 2); /* the retry's connection */

  /* the same, sent from the callback right after the response, while the server closes */
  fresh_fetcher();
  before = naccepts;
  ndone = 0;
  bg_fetch_opts o = {.url = url("/close")};
  CHECK_INT(bg_fetch_start(fetcher, &o, on_then_ok, &r, NULL), 0);
  CHECK_INT(run_until(2, 5000), 0);
  CHECK_INT(r.err, 0);
  CHECK_STR(body_of(&r), "ok");
  CHECK_INT(chained.err, 0);
  CHECK_STR(chained.errmsg, "");
  CHECK_STR(body_of(&chained), "hello");
  CHECK_INT(naccepts - before, 2);

  /* a fresh connection closed without an answer is not retried */
  char want[128];
  before = naccepts;
  CHECK_INT(fetch1("/drop", NULL, &r), 0);
  CHECK_INT(r.err, BG_EIO);
  snprintf(want, sizeof want, "connection closed by 127.0.0.1:%d before any response", server_port);
  CHECK_STR(r.errmsg, want);
  CHECK_INT(r.status, 0);
  result_free(&r);
  result_free(&chained);
}

/* ---- bench: sequential POSTs to a "serve" process, for instruction counts ---- */

static int bench_left;
static bg_fetch_opts bench_opts;
static void on_bench(void *ud, const bg_fetch_result *res) {
  (void)ud;
  if (res->err != 0 || res->status != 200) {
    fprintf(stderr, "bench: %s (status %ld)\n", res->errmsg, res->status);
    exit(1);
  }
  if (--bench_left > 0) bg_fetch_start(fetcher, &bench_opts, on_bench, NULL, NULL);
}

static int bench(int port, int n) {
  static char body[700], u[64];
  memset(body, 'x', sizeof body);
  snprintf(u, sizeof u, "http://127.0.0.1:%d/ok", port);
  static const char *hdrs[] = {"Content-Type: application/json", NULL};
  bench_opts = (bg_fetch_opts){.url = u, .body = body, .body_len = sizeof body, .headers = hdrs};
  if (bg_fetcher_new(loop, &fetcher) != 0) return 1;
  bench_left = n;
  if (n > 0 && bg_fetch_start(fetcher, &bench_opts, on_bench, NULL, NULL) != 0) return 1;
  while (bench_left > 0)
    uv_run(loop, UV_RUN_ONCE);
  bg_fetcher_free(fetcher);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}

int main(int argc, char **argv) {
  static const test_case tests[] = {
      {"ok", test_ok},
      {"get", test_get},
      {"post", test_post},
      {"response_shapes", test_response_shapes},
      {"keepalive", test_keepalive},
      {"server_closes", test_server_closes},
  };
  if (argc == 4 && strcmp(argv[1], "bench") == 0) {
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    return bench(atoi(argv[2]), atoi(argv[3]));
  }
  int serve = argc == 2 && strcmp(argv[1], "serve") == 0;
  return fixture_main(tests, sizeof tests / sizeof tests[0], serve);
}
