/* http_client_fixture.h: what the two HTTP client tests share: an in-process keep-alive
 * server on the same loop that records every request's bytes and counts the connections it
 * accepts, the client helpers, and main's set-up. Each test still builds from one .c: what is
 * here is static, like test_net.h. */
#ifndef BG_HTTP_CLIENT_FIXTURE_H
#define BG_HTTP_CLIENT_FIXTURE_H
#include "base/bg.h"
#include "net/fetch.h"
#include "net/http_client.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "test_net.h"

/* ---- the in-process server: keep-alive, one response per request, in order ---- */

typedef struct conn {
  tconn base;          /* its timer: delayed and dripped responses */
  const char *drip[8]; /* pieces still to send, one per timer tick */
  int ndrip, drip_close;
  int busy;      /* a response is delayed or dripping: requests behind it wait */
  int drop_next; /* close, unanswered, when the next request arrives */
} conn;

static bg_buf last_req; /* the raw bytes of the last complete request */
static int head_req;    /* it is a HEAD: respond() sends no body */

static inline void send_raw(conn *c, const char *data, size_t len, int close_after) {
  tconn_send(&c->base, data, len, close_after);
}

static inline void send_str(conn *c, const char *s, int close_after) {
  send_raw(c, s, strlen(s), close_after);
}

static inline void respond(conn *c, const char *extra, const char *body, size_t len) {
  bg_buf out = {0};
  bg_buf_printf(&out, "HTTP/1.1 200 OK\r\n%sContent-Length: %zu\r\n\r\n", extra, len);
  if (!head_req) bg_buf_append(&out, body, len);
  send_raw(c, out.data, out.len, 0);
  bg_buf_free(&out);
}

static inline void serve_pending(conn *c);

static inline void on_tick(uv_timer_t *t) {
  conn *c = t->data;
  if (c->ndrip > 0) {
    send_str(c, c->drip[0], c->ndrip == 1 && c->drip_close);
    memmove(c->drip, c->drip + 1, sizeof c->drip[0] * (size_t)--c->ndrip);
    if (c->ndrip > 0) {
      uv_timer_start(&c->base.timer, on_tick, 15, 0);
      return;
    }
  } else { /* /slow */
    respond(c, "", "slow", 4);
  }
  c->busy = 0;
  serve_pending(c);
}

static inline void drip(conn *c, const char *const *pieces, int n, int close_after) {
  memcpy(c->drip, pieces, sizeof pieces[0] * (size_t)n);
  c->ndrip = n;
  c->drip_close = close_after;
  c->busy = 1;
  uv_timer_start(&c->base.timer, on_tick, 15, 0);
}

static inline void big(conn *c, int chunked) {
  size_t n = 1u << 20;
  bg_buf out = {0};
  if (chunked) {
    bg_buf_puts(&out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < n / 65536; i++) {
      bg_buf_printf(&out, "10000\r\n");
      bg_buf_reserve(&out, 65536);
      memset(out.data + out.len, 'x', 65536);
      out.len += 65536;
      bg_buf_puts(&out, "\r\n");
    }
    bg_buf_puts(&out, "0\r\n\r\n");
  } else {
    bg_buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
    bg_buf_reserve(&out, n);
    memset(out.data + out.len, 'x', n);
    out.len += n;
  }
  send_raw(c, out.data, out.len, 0);
  bg_buf_free(&out);
}

static inline void handle(conn *c, const char *path, const char *req, size_t len) {
  if (strcmp(path, "/ok") == 0) {
    respond(c, "X-Test: 1\r\n", "hello", 5);
  } else if (strcmp(path, "/echo") == 0 || strncmp(path, "/echo?", 6) == 0 ||
             strncmp(path, "http://", 7) == 0) {
    respond(c, "", req, len); /* the request's bytes as they arrived (a proxy gets a URL) */
  } else if (strcmp(path, "/chunked") == 0) {
    static const char *const p[] = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                    "5\r\nhello\r\n", "7\r\n world!\r\n", "0\r\n\r\n"};
    drip(c, p, 4, 0);
  } else if (strcmp(path, "/split") == 0) { /* every part of the head split across reads */
    static const char *const p[] = {
        "HTT", "P/1.1 202 Acc", "epted\r\nX-A", ": b", "c\r\nContent-Le", "ngth: 3\r\n\r\nab", "c"};
    drip(c, p, 7, 0);
  } else if (strcmp(path, "/eof") == 0) { /* no length: the body ends with the connection */
    static const char *const p[] = {"HTTP/1.1 200 OK\r\nX-Eof: 1\r\n\r\nuntil ", "the end"};
    drip(c, p, 2, 1);
  } else if (strcmp(path, "/continue") == 0) {
    send_str(c, "HTTP/1.1 100 Continue\r\n\r\n", 0);
    send_str(c, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 0);
  } else if (strcmp(path, "/noreason") == 0) {
    send_str(c, "HTTP/1.1 204\r\nX-E:\r\n\r\n", 0);
  } else if (strcmp(path, "/close") == 0) { /* keep-alive by the headers, then closed */
    send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1);
  } else if (strcmp(path, "/dropnext") == 0) { /* answers; the next request finds it closed */
    respond(c, "", "armed", 5);
    c->drop_next = 1;
  } else if (strcmp(path, "/drop") == 0) {
    tconn_close(&c->base);
  } else if (strcmp(path, "/extra") == 0) { /* bytes after the response: not reusable */
    send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", 0);
  } else if (strcmp(path, "/slow") == 0) {
    c->busy = 1;
    uv_timer_start(&c->base.timer, on_tick, 300, 0);
  } else if (strcmp(path, "/never") == 0) {
    c->busy = 1;
  } else if (strcmp(path, "/big") == 0 || strcmp(path, "/bigchunked") == 0) {
    big(c, strcmp(path, "/bigchunked") == 0);
  } else if (strcmp(path, "/redirect") == 0) {
    send_str(c, "HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 5\r\n\r\nmoved", 0);
  } else {
    send_str(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope", 0);
  }
}

/* Serves every complete request in c->base.in, in order, unless a response is still under way. */
static inline void serve_pending(conn *c) {
  while (!c->busy && !c->base.closing && c->base.in.len > 0) {
    size_t hdr_len, clen;
    if (!request_ready(&c->base.in, &hdr_len, &clen)) return;
    if (c->drop_next) {
      tconn_close(&c->base);
      return;
    }
    char method[16] = "", path[256] = "";
    sscanf(c->base.in.data, "%15s %255s", method, path);
    head_req = strcmp(method, "HEAD") == 0;
    bg_buf_reset(&last_req);
    bg_buf_append(&last_req, c->base.in.data, hdr_len + clen);
    handle(c, path, last_req.data, last_req.len);
    memmove(c->base.in.data, c->base.in.data + hdr_len + clen, c->base.in.len - hdr_len - clen);
    c->base.in.len -= hdr_len + clen;
    c->base.in.data[c->base.in.len] = '\0';
  }
}

static inline void on_data(tconn *c) {
  serve_pending((conn *)c);
}

/* ---- client helpers ---- */

typedef struct result {
  int called;
  int err;
  long status;
  char errmsg[256];
  bg_buf body, headers;
  double total_time;
  uint64_t at_ns;
} result;

static inline void on_done(void *ud, const bg_fetch_result *res) {
  result *r = ud;
  r->called++;
  r->err = res->err;
  r->status = res->status;
  snprintf(r->errmsg, sizeof r->errmsg, "%s", res->errmsg);
  if (res->body[res->body_len] != '\0') r->err = 12345; /* must be NUL-terminated */
  bg_buf_reset(&r->body);
  bg_buf_append(&r->body, res->body, res->body_len);
  bg_buf_reset(&r->headers);
  bg_buf_append(&r->headers, res->headers, res->headers_len);
  r->total_time = res->total_time;
  r->at_ns = uv_hrtime();
  ndone++;
}

static inline void result_free(result *r) {
  bg_buf_free(&r->body);
  bg_buf_free(&r->headers);
}

static inline const char *body_of(const result *r) {
  return r->body.data ? r->body.data : "";
}

static inline const char *headers_of(const result *r) {
  return r->headers.data ? r->headers.data : "";
}

static inline int start(bg_fetcher *f, const char *path, const bg_fetch_opts *base, result *r) {
  bg_fetch_opts o = base ? *base : (bg_fetch_opts){0};
  o.url = url(path);
  return bg_fetch_start(f, &o, on_done, r, NULL);
}

/* Fetches one URL path and waits for it. */
static inline int fetch1(const char *path, const bg_fetch_opts *base, result *r) {
  ndone = 0;
  if (start(fetcher, path, base, r) != 0) return -1;
  return run_until(1, 5000);
}

/* A new fetcher, with an empty pool, so that accept counts are exact. */
static inline void fresh_fetcher(void) {
  bg_fetcher_free(fetcher);
  bg_fetcher_new(loop, &fetcher);
}

static inline int curl_loaded(void) {
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_NOLOAD);
  if (h != NULL) dlclose(h);
  return h != NULL;
}

/* main's set-up and tear-down around the tests; serve is the "serve" mode. */
static inline int fixture_main(const test_case *tests, size_t n, int serve) {
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  unsetenv("BEAGLE_HTTP_CLIENT");
  unset_proxies();
  tconn_size = sizeof(conn);
  tconn_on_data = on_data;
  if (server_listen(tconn_accept) != 0) {
    fprintf(stderr, "server_listen failed\n");
    return 1;
  }
  if (serve) {
    printf("%d\n", server_port);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
  }
  uv_timer_init(loop, &deadline);
  if (bg_fetcher_new(loop, &fetcher) != 0) {
    fprintf(stderr, "bg_fetcher_new failed\n");
    return 1;
  }
  run_tests(tests, n, NULL);
  if (failures > 0) return 1; /* state may be inconsistent: skip the shutdown check */

  /* everything closes: uv_run returns once the fetcher, server and connections are gone */
  int rc = shut_down(tconn_close_all);
  bg_buf_free(&last_req);
  return rc;
}

#endif
