/* http_client.c: a small HTTP/1.1 client on the libuv loop, for plain http:// (see http_client.h;
 * the request head and the response parsing are in http_client_msg.c).
 *
 * A request copies everything it sends into one allocation at start (the request head with
 * the body right behind it, so one uv_write of one buffer sends it), takes the most recently
 * used idle connection for its "host:port" from the pool or connects (uv_getaddrinfo for a
 * name, each address in turn), writes, and parses the response with llhttp as it arrives.
 * After a complete response the connection goes back to the pool when llhttp says it may be
 * kept alive; idle connections keep reading, so a server's close is noticed and the
 * connection dropped, and they are unref'd so they never keep the loop alive on their own.
 * A request whose reused connection turns out closed before any byte of the response (the
 * server dropped it while we were sending) is retried once on a new connection, as curl does.
 *
 * One timer serves every deadline (request timeouts, idle expiry, and failures that must be
 * reported from the loop rather than from bg_h1_start). It is re-armed lazily: a new request
 * whose deadline is later than the armed one leaves it alone, and on_timer finds what is due
 * by scanning, so the hot path never touches the timer heap.
 *
 * Re-entrancy: the user callback runs from report() as the last thing a loop callback does,
 * with the request already unlinked and its connection pooled or closing, so the callback may
 * start, cancel, or free everything. The only loop that calls back more than once (on_timer)
 * rescans after each call and stops once bg_h1_free was called. h itself is freed from a close
 * callback, never while one of its callbacks is on the stack. */
#include "net/http_client_int.h"

#include "base/bg.h"

#include <llhttp.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IDLE_MS 30000 /* an idle connection is closed after this (bg_h1_set_idle_ms) */
#define MAX_TIMEOUT_MS (UINT64_C(1) << 40)
#define READ_BUF_SIZE (64 * 1024)

typedef struct pool pool;

struct pool {
  pool *next;
  conn *idle; /* most recently used first */
  int nidle;
  char key[]; /* "host:port" */
};

struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  llhttp_t parser;
  bg_h1 *h;
  bg_h1_req *req;      /* the request it serves; NULL while idle or closing */
  pool *pool;          /* while idle */
  conn *prev, *next;   /* in pool->idle */
  uint64_t idle_since; /* ms */
  int connected, writing, served, closing;
  char peer[96]; /* "1.2.3.4:80", or "name (1.2.3.4:80)", for messages */
};

struct gai {
  uv_getaddrinfo_t g;
  bg_h1_req *r; /* NULL once the request is gone: the callback then only frees */
};

struct bg_h1 {
  uv_loop_t *loop;
  uv_timer_t timer;
  uint64_t due;     /* ms the timer fires at, when armed */
  uint64_t idle_ms; /* IDLE_MS */
  int armed;
  bg_h1_req *reqs; /* in flight, doubly linked */
  int nreqs;
  pool *pools;
  int nhandles; /* the timer and connections not yet through their close callback */
  int closing, in_start;
  uint64_t seq; /* requests started so far: on_timer leaves later ones to its next run */
  void (*closed)(void *);
  void *closed_ud;
  llhttp_settings_t settings;
  char rbuf[READ_BUF_SIZE]; /* shared: each read is parsed before the next alloc */
};

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000;
}

/* ---- handles and the pool ---- */

static void maybe_done(bg_h1 *h) {
  if (!h->closing || h->nhandles > 0) return;
  h->closed(h->closed_ud);
  free(h);
}

static void on_conn_closed(uv_handle_t *hd) {
  conn *c = hd->data;
  bg_h1 *h = c->h;
  free(c);
  h->nhandles--;
  maybe_done(h);
}

static void pool_unlink(conn *c) {
  pool *p = c->pool;
  if (p == NULL) return;
  if (c->prev)
    c->prev->next = c->next;
  else
    p->idle = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->pool = NULL;
  p->nidle--;
}

/* Pending connect and write callbacks run with UV_ECANCELED and find c->req NULL. */
static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  c->req = NULL;
  pool_unlink(c);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static conn *conn_new(bg_h1 *h) {
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  if (uv_tcp_init(h->loop, &c->tcp) != 0) {
    free(c);
    return NULL;
  }
  c->tcp.data = c->creq.data = c->wreq.data = c;
  c->h = h;
  h->nhandles++;
  return c;
}

static void on_timer(uv_timer_t *t);

/* Makes the timer fire by when (ms); only ever moves it earlier. */
static void arm(bg_h1 *h, uint64_t when, uint64_t now) {
  if (h->closing || (h->armed && h->due <= when)) return;
  h->armed = 1;
  h->due = when;
  uv_timer_start(&h->timer, on_timer, when > now ? when - now : 0, 0);
}

static pool *pool_find(bg_h1 *h, const char *key) {
  pool *p = h->pools;
  while (p != NULL && strcmp(p->key, key) != 0)
    p = p->next;
  return p;
}

static void pool_put(bg_h1 *h, conn *c, const char *key) {
  pool *p = pool_find(h, key);
  if (p == NULL) {
    size_t n = strlen(key) + 1;
    if ((p = malloc(sizeof *p + n)) == NULL) {
      conn_close(c);
      return;
    }
    memcpy(p->key, key, n);
    p->idle = NULL;
    p->nidle = 0;
    p->next = h->pools;
    h->pools = p;
  }
  if (p->nidle >= BG_H1_MAX_IDLE) { /* the least recently used one goes */
    conn *lru = p->idle;
    while (lru->next != NULL)
      lru = lru->next;
    conn_close(lru);
  }
  c->prev = NULL;
  c->next = p->idle;
  if (p->idle) p->idle->prev = c;
  p->idle = c;
  p->nidle++;
  c->pool = p;
  c->idle_since = now_ms();
  uv_unref((uv_handle_t *)&c->tcp);
  arm(h, c->idle_since + h->idle_ms, c->idle_since);
}

static conn *pool_take(bg_h1 *h, const char *key) {
  pool *p = pool_find(h, key);
  conn *c = p ? p->idle : NULL;
  if (c == NULL) return NULL;
  pool_unlink(c);
  uv_ref((uv_handle_t *)&c->tcp);
  return c;
}

/* ---- requests ---- */

static void req_link(bg_h1 *h, bg_h1_req *r) {
  r->prev = NULL;
  r->next = h->reqs;
  if (h->reqs) h->reqs->prev = r;
  h->reqs = r;
  if (h->nreqs++ == 0) uv_ref((uv_handle_t *)&h->timer); /* a pending failure needs the loop */
}

static void req_unlink(bg_h1 *h, bg_h1_req *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    h->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  if (--h->nreqs == 0 && !h->closing) uv_unref((uv_handle_t *)&h->timer);
}

/* Lets go of the connection (closed) and of any resolution in flight. */
static void detach(bg_h1_req *r) {
  if (r->c != NULL) {
    conn_close(r->c);
    r->c = NULL;
  }
  if (r->gai != NULL) {
    r->gai->r = NULL;
    uv_cancel((uv_req_t *)&r->gai->g); /* fails harmlessly once resolution is under way */
    r->gai = NULL;
  }
  if (r->ai != NULL) uv_freeaddrinfo(r->ai);
  r->ai = r->next_ai = NULL;
}

static void req_free(bg_h1_req *r) {
  bg_buf_free(&r->hdrs);
  bg_buf_free(&r->body);
  free(r);
}

/* Calls back and frees r. The caller returns right after: the callback may change anything. */
static void report(bg_h1_req *r) {
  bg_fetch_result res = {.err = r->err,
                         .errmsg = r->err ? r->errmsg : "",
                         .status = r->status,
                         .body = r->body.data ? r->body.data : "",
                         .body_len = r->body.len,
                         .headers = r->hdrs.data ? r->hdrs.data : "",
                         .headers_len = r->hdrs.len,
                         .total_time = (double)(uv_hrtime() - r->start_ns) / 1e9};
  /* the phases as curl reports them: each alone, a reused connection's dns and connect 0 */
  if (r->err == 0 && r->dns_ns && r->conn_ns && r->sent_ns && r->first_ns) {
    res.has_timings = 1;
    res.timings.dns = (double)(r->dns_ns - r->start_ns) / 1e9;
    res.timings.connect = (double)(r->conn_ns - r->dns_ns) / 1e9;
    res.timings.tls = 0;
    res.timings.first_byte = (double)(r->first_ns - r->sent_ns) / 1e9;
    res.timings.total = res.total_time;
  }
  req_unlink(r->h, r);
  r->cb(r->ud, &res);
  req_free(r);
}

/* Fails r with the message already in r->errmsg. From inside bg_h1_start the report waits
 * for the timer: the callback never runs from bg_h1_start. */
static void fail_now(bg_h1_req *r, int err) {
  r->err = err;
  detach(r);
  if (r->h->in_start) {
    r->pending = 1;
    arm(r->h, 0, 0);
    return;
  }
  report(r);
}

__attribute__((format(printf, 3, 4))) static void fail(bg_h1_req *r, int err, const char *fmt,
                                                       ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
  fail_now(r, err);
}

/* ---- connecting ---- */

static void send_request(bg_h1_req *r, conn *c);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *buf) {
  conn *c = hd->data;
  (void)hint;
  *buf = uv_buf_init(c->h->rbuf, READ_BUF_SIZE);
}

static void on_connect(uv_connect_t *req, int status);

static void peer_name(conn *c, const bg_h1_req *r, const struct sockaddr *sa) {
  char ip[64];
  if (sa->sa_family == AF_INET6) {
    ip[0] = '[';
    uv_ip6_name((const struct sockaddr_in6 *)sa, ip + 1, sizeof ip - 2);
    strcat(ip, "]");
  } else {
    uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
  }
  if (r->literal)
    snprintf(c->peer, sizeof c->peer, "%s:%u", ip, r->port);
  else
    snprintf(c->peer, sizeof c->peer, "%.40s (%s:%u)", r->host, ip, r->port);
}

/* Connects to the next address; once none is left, fails with the last attempt's error. */
static void connect_next(bg_h1_req *r) {
  for (;;) {
    const struct sockaddr *sa = NULL;
    if (r->literal) {
      if (!r->lit_tried++) sa = (const struct sockaddr *)&r->lit;
    } else if (r->next_ai != NULL) {
      sa = r->next_ai->ai_addr;
      r->next_ai = r->next_ai->ai_next;
    }
    if (sa == NULL) {
      if (r->errmsg[0] == '\0') snprintf(r->errmsg, sizeof r->errmsg, "no address for %s", r->key);
      fail_now(r, BG_EIO);
      return;
    }
    conn *c = conn_new(r->h);
    if (c == NULL) {
      fail(r, BG_ENOMEM, "connect to %s: out of memory", r->key);
      return;
    }
    peer_name(c, r, sa);
    int rc = uv_tcp_connect(&c->creq, &c->tcp, sa, on_connect);
    if (rc == 0) {
      c->req = r;
      r->c = c;
      return;
    }
    snprintf(r->errmsg, sizeof r->errmsg, "connect to %s: %s", c->peer, uv_strerror(rc));
    conn_close(c);
  }
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  gai *q = g->data;
  bg_h1_req *r = q->r;
  free(q);
  if (r == NULL) { /* canceled */
    if (res != NULL) uv_freeaddrinfo(res);
    return;
  }
  r->gai = NULL;
  if (status != 0) {
    fail(r, BG_EIO, "resolve %s: %s", r->host, uv_strerror(status));
    return;
  }
  r->dns_ns = uv_hrtime();
  r->ai = r->next_ai = res;
  connect_next(r);
}

/* A new connection: the URL's literal address, or the name resolved afresh. */
static void connect_fresh(bg_h1_req *r) {
  if (r->literal == 2)
    r->literal = uv_ip4_addr(r->host, (int)r->port, (struct sockaddr_in *)&r->lit) == 0;
  if (r->literal) {
    r->lit_tried = 0;
    r->dns_ns = uv_hrtime(); /* nothing to resolve */
    connect_next(r);
    return;
  }
  gai *q = malloc(sizeof *q);
  if (q == NULL) {
    fail(r, BG_ENOMEM, "resolve %s: out of memory", r->host);
    return;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  char port[8];
  port[bg__h1_fmt_u(port, r->port)] = '\0';
  q->r = r;
  q->g.data = q;
  int rc = uv_getaddrinfo(r->h->loop, &q->g, on_resolved, r->host, port, &hints);
  if (rc != 0) {
    free(q);
    fail(r, BG_EIO, "resolve %s: %s", r->host, uv_strerror(rc));
    return;
  }
  r->gai = q;
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  bg_h1_req *r = c->req;
  if (r == NULL) return; /* canceled or timed out: c is closing */
  if (status != 0) {
    snprintf(r->errmsg, sizeof r->errmsg, "connect to %s: %s", c->peer, uv_strerror(status));
    r->c = NULL;
    conn_close(c);
    connect_next(r);
    return;
  }
  if (r->ai != NULL) uv_freeaddrinfo(r->ai);
  r->ai = r->next_ai = NULL;
  c->connected = 1;
  r->conn_ns = uv_hrtime();
  uv_tcp_nodelay(&c->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0) {
    fail(r, BG_EIO, "read from %s: %s", c->peer, uv_strerror(rc));
    return;
  }
  send_request(r, c);
}

/* A connection failed under r. A reused connection that the server closed before answering
 * (it timed out its idle end while we were sending) gets one retry on a new connection. */
static void conn_error(bg_h1_req *r, int status, const char *what) {
  conn *c = r->c;
  if (c->served > 0 && !r->got_bytes && !r->retried &&
      (status == UV_EOF || status == UV_ECONNRESET || status == UV_EPIPE)) {
    r->retried = 1;
    r->c = NULL;
    conn_close(c);
    connect_fresh(r);
    return;
  }
  if (status == UV_EOF)
    fail(r, BG_EIO, "connection closed by %s before %s", c->peer,
         r->got_bytes ? "the end of the response" : "any response");
  else
    fail(r, BG_EIO, "%s %s: %s", what, c->peer, uv_strerror(status));
}

/* ---- sending and receiving ---- */

static void on_written(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (status != 0 && c->req != NULL) conn_error(c->req, status, "send to");
}

static void send_request(bg_h1_req *r, conn *c) {
  llhttp_init(&c->parser, HTTP_RESPONSE, &r->h->settings);
  c->parser.data = r;
  r->hstate = 0;
  r->sent_ns = uv_hrtime();
  uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc != 0) {
    conn_error(r, rc, "send to");
    return;
  }
  c->writing = 1;
}

/* The response is complete: the connection is pooled or closed, then r is reported. */
static void complete(bg_h1_req *r, int keep) {
  conn *c = r->c;
  r->c = NULL;
  c->req = NULL;
  c->served++;
  if (keep && !c->writing) /* a server that answers before reading everything: close */
    pool_put(r->h, c, r->key);
  else
    conn_close(c);
  report(r);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  bg_h1_req *r = c->req;
  llhttp_errno_t e;
  if (c->closing || n == 0) return;
  if (r == NULL) { /* idle: the server closed it, or sent what nobody asked for */
    conn_close(c);
    return;
  }
  if (n < 0) {
    if (n != UV_EOF || !r->got_bytes) {
      conn_error(r, (int)n, "read from");
      return;
    }
    e = llhttp_finish(&c->parser); /* a body delimited by the close completes here */
  } else {
    if (!r->got_bytes) r->first_ns = uv_hrtime();
    r->got_bytes = 1;
    e = llhttp_execute(&c->parser, buf->base, (size_t)n);
  }
  if (r->done) { /* pool only when nothing follows the response */
    complete(r, n > 0 && llhttp_should_keep_alive(&c->parser) &&
                    llhttp_get_error_pos(&c->parser) == buf->base + n);
  } else if (r->err == BG_ELIMIT) {
    fail(r, BG_ELIMIT, "response body exceeds %zu bytes", r->max_body);
  } else if (r->err != 0) {
    fail(r, r->err, "read from %s: %s", c->peer, bg_strerror(r->err));
  } else if (n < 0) {
    conn_error(r, UV_EOF, "read from");
  } else if (e != HPE_OK) {
    const char *why = llhttp_get_error_reason(&c->parser);
    fail(r, BG_EIO, "bad response from %s: %s", c->peer, why ? why : llhttp_errno_name(e));
  }
}

/* ---- the timer ---- */

static void expire(bg_h1_req *r) {
  conn *c = r->c;
  unsigned long long ms = (unsigned long long)r->timeout_ms;
  if (r->gai != NULL)
    fail(r, BG_ETIMEDOUT, "timed out after %llu ms resolving %s", ms, r->host);
  else if (c != NULL && !c->connected)
    fail(r, BG_ETIMEDOUT, "timed out after %llu ms connecting to %s", ms, c->peer);
  else if (c != NULL)
    fail(r, BG_ETIMEDOUT, "timed out after %llu ms %s %s", ms,
         c->writing ? "sending to" : "waiting for the response from", c->peer);
  else
    fail(r, BG_ETIMEDOUT, "timed out after %llu ms (%s)", ms, r->key);
}

static void on_timer(uv_timer_t *t) {
  bg_h1 *h = t->data;
  uint64_t now = now_ms(), next = UINT64_MAX, seq = h->seq;
  h->armed = 0;
  for (pool **pp = &h->pools; *pp != NULL;) {
    pool *p = *pp;
    for (conn *c = p->idle, *nx; c != NULL; c = nx) {
      nx = c->next;
      if (now >= c->idle_since + h->idle_ms) conn_close(c);
    }
    if (p->nidle == 0) {
      *pp = p->next;
      free(p);
    } else {
      pp = &p->next;
    }
  }
  /* Each report may change the list, or close h: rescan after it. A request that a callback
   * starts and that fails at once waits for the next run: a callback that retries at once
   * can't keep this loop from returning to the loop. */
  for (;;) {
    bg_h1_req *r = h->reqs;
    while (r != NULL && (r->seq > seq || (!r->pending && r->deadline > now)))
      r = r->next;
    if (r == NULL) break;
    if (r->pending)
      report(r);
    else
      expire(r);
    if (h->closing) return;
  }
  for (bg_h1_req *r = h->reqs; r != NULL; r = r->next)
    if (r->deadline < next) next = r->deadline;
  for (pool *p = h->pools; p != NULL; p = p->next)
    for (conn *c = p->idle; c != NULL; c = c->next)
      if (c->idle_since + h->idle_ms < next) next = c->idle_since + h->idle_ms;
  if (next != UINT64_MAX) arm(h, next, now);
}

/* ---- public API ---- */

int bg_h1_new(uv_loop_t *loop, bg_h1 **out) {
  bg_h1 *h = calloc(1, sizeof *h);
  if (h == NULL) return BG_ENOMEM;
  int rc = uv_timer_init(loop, &h->timer);
  if (rc != 0) {
    free(h);
    return rc;
  }
  uv_unref((uv_handle_t *)&h->timer);
  h->timer.data = h;
  h->loop = loop;
  h->nhandles = 1;
  h->idle_ms = IDLE_MS;
  bg__h1_settings_init(&h->settings);
  *out = h;
  return 0;
}

void bg_h1_set_idle_ms(bg_h1 *h, uint64_t ms) {
  h->idle_ms = ms;
}

static void on_timer_closed(uv_handle_t *hd) {
  bg_h1 *h = hd->data;
  h->nhandles--;
  maybe_done(h);
}

void bg_h1_free(bg_h1 *h, void (*closed)(void *ud), void *ud) {
  if (h == NULL || h->closing) return;
  h->closing = 1;
  h->closed = closed;
  h->closed_ud = ud;
  while (h->reqs != NULL)
    bg_h1_cancel(h->reqs);
  while (h->pools != NULL) {
    pool *p = h->pools;
    while (p->idle != NULL)
      conn_close(p->idle);
    h->pools = p->next;
    free(p);
  }
  uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

int bg_h1_start(bg_h1 *h, const bg_fetch_opts *o, uint64_t timeout_ms, size_t max_body,
                bg_fetch_cb cb, void *ud, bg_h1_req **out) {
  rq q;
  q.host_hdr = NULL;
  if (h->closing || bg__h1_parse_url(o->url, &q) != 0 ||
      ((q.flags = bg__h1_scan_headers(o->headers, &q.host_hdr)) & H_CURL))
    return BG_H1_DECLINED;
  q.method = o->method ? o->method : o->body ? "POST" : "GET";
  size_t blen = o->body ? o->body_len : 0, k = 0;
  /* the pool key "host:port" ("[::1]:port"); Host: is the same without a default port */
  char key[272], clen[24];
  if (q.v6) key[k++] = '[';
  memcpy(key + k, q.host, q.host_len);
  k += q.host_len;
  if (q.v6) key[k++] = ']';
  q.hp_len = k;
  key[k++] = ':';
  k += bg__h1_fmt_u(key + k, q.port);
  key[k] = '\0';
  q.hostport = key;
  if (q.port != 80) q.hp_len = k;
  q.clen = NULL;
  if (o->body != NULL || !strcmp(q.method, "POST") || !strcmp(q.method, "PUT") ||
      !strcmp(q.method, "PATCH")) {
    q.clen = clen;
    q.clen_len = bg__h1_fmt_u(clen, blen);
  }
  wr w = {NULL, 0};
  bg__h1_write_head(&w, o, &q);
  bg_h1_req *r = calloc(1, sizeof *r + w.n + blen + q.host_len + 1 + k + 1);
  if (r == NULL) return BG_ENOMEM;
  r->out = r->data; /* the head, the body right behind it, the host, the key */
  w.p = r->out;
  w.n = 0;
  bg__h1_write_head(&w, o, &q);
  if (blen) memcpy(r->out + w.n, o->body, blen);
  r->out_len = w.n + blen;
  r->host = r->out + r->out_len;
  memcpy(r->host, q.host, q.host_len);
  r->key = r->host + q.host_len + 1;
  memcpy(r->key, key, k + 1);
  r->port = q.port;
  if (q.v6 && uv_ip6_addr(r->host, (int)q.port, (struct sockaddr_in6 *)&r->lit) != 0) {
    free(r);
    return BG_H1_DECLINED;
  }
  /* an IPv4 literal is parsed when first needed: most requests find a pooled connection */
  r->literal = q.v6 ? 1 : strspn(r->host, "0123456789.") == q.host_len ? 2 : 0;
  r->h = h;
  r->cb = cb;
  r->ud = ud;
  r->head = strcmp(q.method, "HEAD") == 0;
  r->max_body = max_body;
  r->timeout_ms = timeout_ms > MAX_TIMEOUT_MS ? MAX_TIMEOUT_MS : timeout_ms;
  r->seq = ++h->seq;
  r->start_ns = uv_hrtime();
  uint64_t now = r->start_ns / 1000000;
  r->deadline = now + r->timeout_ms;
  req_link(h, r);
  h->in_start = 1;
  conn *c = pool_take(h, r->key);
  if (c != NULL) {
    c->req = r;
    r->c = c;
    r->dns_ns = r->conn_ns = r->start_ns; /* a pooled connection: nothing resolved, no connect */
    send_request(r, c);
  } else {
    connect_fresh(r);
  }
  h->in_start = 0;
  arm(h, r->deadline, now);
  if (out != NULL) *out = r;
  return 0;
}

void bg_h1_cancel(bg_h1_req *r) {
  if (r == NULL) return;
  req_unlink(r->h, r);
  detach(r);
  req_free(r);
}
