/* http_server.c: the inbound HTTP/1.1 server's connections (see http_server.h; what it answers is
 * in http_server_respond.c). A connection copies what llhttp hands it into one reusable
 * per-connection buffer (spans may straddle reads), dispatches each complete request synchronously,
 * and appends responses to an output buffer that is flushed once per read with uv_try_write,
 * falling back to uv_write. One timer per connection covers the first-byte, head, read, idle and
 * drain deadlines; it is re-armed lazily so the hot path rarely touches the heap. Connections
 * with nothing under way, then those still sending a head, sit in queues by age, so that a new
 * connection at the limit closes the oldest of them rather than being refused (slowloris). */
#include "net/http_server_int.h"

#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define OUT_HIGH_WATER (1024 * 1024) /* stop reading while this much output is queued */
#define DRAIN_MAX_MS 2000            /* bound on flushing + lingering before a hard close */
#define EVICT_SCAN 16 /* queued connections looked at for one that is not writing a response */

static void conn_close(conn *c);
static void flush(conn *c);
static void maybe_free(bg_http_server *srv);

/* ---- small helpers ---------------------------------------------------------------------- */

/* 0: nothing; 1: "Connection: close"; 2: "Connection: keep-alive" (HTTP/1.0 clients). */
static int conn_header_kind(conn *c, int keep_alive) {
  if (!keep_alive) return 1;
  if (c->parser.http_major == 1 && c->parser.http_minor == 0) return 2;
  return 0;
}

/* Queues a JSON error response and marks the connection to close once it is written. */
static void send_error(conn *c, int status, const char *error, const char *detail) {
  bg_buf body = {0};
  int rc = bg_buf_printf(&body, "{\"error\":\"%s\",\"status\":%d,\"detail\":\"", error, status);
  if (rc == 0) rc = bg_buf_json_str(&body, detail, strlen(detail));
  if (rc == 0) rc = bg_buf_puts(&body, "\"}");
  if (rc == 0) rc = bg__http_put_head(&c->out, status, "application/json", body.len);
  if (rc == 0) rc = bg_buf_puts(&c->out, "Connection: close\r\n\r\n");
  if (rc == 0) rc = bg_buf_append(&c->out, body.data, body.len);
  bg_buf_free(&body);
  bg__http_count_status(c->srv, status);
  c->close_after_write = 1;
  (void)rc; /* out of memory: the connection still closes, just without the error body */
}

/* ---- the queues a new connection takes room from ----------------------------------------- */

/* Moves c to the tail (the newest end) of queue q, or out of every queue for Q_NONE. */
static void queue_set(conn *c, int q) {
  bg_http_server *srv = c->srv;
  if (c->queue == q) return;
  if (c->queue != Q_NONE) {
    if (c->qprev)
      c->qprev->qnext = c->qnext;
    else
      srv->q[c->queue].head = c->qnext;
    if (c->qnext)
      c->qnext->qprev = c->qprev;
    else
      srv->q[c->queue].tail = c->qprev;
    c->qprev = c->qnext = NULL;
  }
  c->queue = q;
  if (q == Q_NONE) return;
  c->qprev = srv->q[q].tail;
  if (c->qprev)
    c->qprev->qnext = c;
  else
    srv->q[q].head = c;
  srv->q[q].tail = c;
}

/* 1 when bytes wait unread on c's socket: a request the loop has not read yet (0 at EOF). */
static int input_waiting(conn *c) {
  uv_os_fd_t fd;
  char b;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 0;
  return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* Closes the oldest connection with nothing under way, else the oldest still sending its head,
 * passing over (a bounded few) that have a response to write, and idle ones with input waiting
 * unread: a burst of connects larger than the limit must not close a probe whose request the
 * loop has not yet read. Only when nothing else is found does the oldest of those go: a new
 * connection is not refused while an idle one could make room. 1 if one was closed. */
static int evict_one(bg_http_server *srv) {
  conn *victim = NULL, *unread = NULL;
  for (int q = 0; q < Q_COUNT && !victim; q++) {
    int n = 0;
    for (conn *c = srv->q[q].head; c && n < EVICT_SCAN; c = c->qnext, n++) {
      if (c->writing || c->out.len) continue;
      /* a head under way with more bytes waiting is still a slow head: no exception there */
      if (q == Q_IDLE && !c->shut && input_waiting(c)) {
        if (!unread) unread = c;
        continue;
      }
      victim = c;
      break;
    }
  }
  if (!victim) victim = unread;
  if (!victim) return 0;
  conn_close(victim);
  srv->stats.connections_evicted++;
  return 1;
}

/* ---- timers ----------------------------------------------------------------------------- */

static uint64_t state_timeout(conn *c) {
  const bg_http_limits *l = &c->srv->lim;
  if (c->state == S_IDLE) return c->served ? l->idle_timeout_ms : l->first_byte_timeout_ms;
  if (c->state == S_READING) {
    /* while we hold off reading (the client is not reading our replies), the client is not the
     * one being slow with its request: give it the idle allowance instead */
    if (c->paused) return l->idle_timeout_ms;
    if (!c->in_body && l->header_timeout_ms < l->read_timeout_ms) return l->header_timeout_ms;
    return l->read_timeout_ms;
  }
  if (c->state == S_WAITING) return l->defer_timeout_ms;
  return l->read_timeout_ms < DRAIN_MAX_MS ? l->read_timeout_ms : DRAIN_MAX_MS;
}

static void timer_cb(uv_timer_t *t);

static void arm(conn *c, uint64_t in_ms) {
  c->due = uv_now(c->srv->loop) + in_ms;
  uv_timer_start(&c->timer, timer_cb, in_ms, 0);
}

/* Enters a state; the timer is only moved earlier, never later (timer_cb catches up). */
static void set_state(conn *c, int state) {
  c->state = state;
  queue_set(c, state == S_IDLE ? Q_IDLE : state == S_READING ? Q_HEAD : Q_NONE);
  c->since = uv_now(c->srv->loop);
  uint64_t to = state_timeout(c);
  if (c->due == 0 || c->due > c->since + to) arm(c, to);
}

static void timer_cb(uv_timer_t *t) {
  conn *c = t->data;
  uint64_t now = uv_now(c->srv->loop), deadline = c->since + state_timeout(c);
  c->due = 0;
  if (now < deadline) {
    arm(c, deadline - now);
    return;
  }
  if (c->state == S_READING && !c->close_after_write) {
    char d[64];
    snprintf(d, sizeof d, "request %snot complete within %llu ms", c->in_body ? "" : "head ",
             (unsigned long long)state_timeout(c));
    c->srv->stats.connections_timed_out++;
    send_error(c, 408, "request timeout", d);
    set_state(c, S_DRAINING);
    flush(c);
    return;
  }
  if (c->state == S_WAITING && c->pending) {
    static const char body[] = "{\"error\":\"gateway timeout\",\"status\":504,\"detail\":"
                               "\"the answer did not come in time\"}";
    bg_http_response res = {504, "application/json", body, sizeof body - 1, NULL, NULL, 0};
    c->srv->stats.connections_timed_out++;
    if (bg__http_answer_pending(c, &res) != 0) bg__http_pending_drop(c);
    set_state(c, S_DRAINING);
    flush(c);
    return;
  }
  if (c->state == S_IDLE && !c->served) c->srv->stats.connections_timed_out++;
  conn_close(c);
}

/* ---- llhttp callbacks ------------------------------------------------------------------- */

/* Records why a parser callback aborts; read_cb turns it into the error response. */
__attribute__((format(printf, 3, 4))) static int limit_error(conn *c, int status, const char *fmt,
                                                             ...) {
  va_list ap;
  va_start(ap, fmt);
  c->err_status = status;
  vsnprintf(c->err_detail, sizeof c->err_detail, fmt, ap);
  va_end(ap);
  return -1;
}

static int check_hdr_bytes(conn *c, size_t n) {
  c->hdr_bytes += n;
  if (c->hdr_bytes > c->srv->lim.max_header_bytes)
    return limit_error(c, 431, "headers exceed %zu bytes", c->srv->lim.max_header_bytes);
  return 0;
}

static int rq_put(conn *c, const char *at, size_t n) {
  if (bg_buf_append(&c->rq, at, n) != 0) return limit_error(c, 500, "out of memory (%zu)", n);
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  conn *c = p->data;
  bg_buf_reset(&c->rq);
  c->url_off = c->url_len = c->body_off = c->body_len = c->nhdr = 0;
  c->hdr_bytes = 16; /* method, version and line ends of the request line, roughly */
  c->in_field = c->in_body = 0;
  c->served = 1;
  set_state(c, S_READING);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  c->url_len += n;
  return check_hdr_bytes(c, n) ? -1 : rq_put(c, at, n);
}

static int on_url_complete(llhttp_t *p) {
  return rq_put(p->data, "", 1);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->in_body) return 0; /* chunked trailers: dropped, they would split the body */
  if (!c->in_field) {
    if (c->nhdr >= c->srv->lim.max_headers)
      return limit_error(c, 431, "more than %zu headers", c->srv->lim.max_headers);
    if (c->nhdr == c->hcap) {
      size_t cap = c->hcap ? c->hcap * 2 : 16;
      hdr_off *ho = realloc(c->hoff, cap * sizeof *ho);
      if (ho) c->hoff = ho;
      bg_http_header *hh = ho ? realloc(c->hdrs, cap * sizeof *hh) : NULL;
      if (!hh) return limit_error(c, 500, "out of memory (%zu)", cap);
      c->hdrs = hh;
      c->hcap = cap;
    }
    c->hoff[c->nhdr] = (hdr_off){c->rq.len, 0, 0, 0};
    c->in_field = 1;
    if (check_hdr_bytes(c, 4)) return -1; /* ": " and CRLF */
  }
  c->hoff[c->nhdr].name_len += n;
  return check_hdr_bytes(c, n) ? -1 : rq_put(c, at, n);
}

static int on_header_field_complete(llhttp_t *p) {
  conn *c = p->data;
  if (!c->in_field) return 0;
  if (rq_put(c, "", 1)) return -1;
  c->hoff[c->nhdr].value_off = c->rq.len;
  c->hoff[c->nhdr].value_len = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (!c->in_field) return 0;
  c->hoff[c->nhdr].value_len += n;
  return check_hdr_bytes(c, n) ? -1 : rq_put(c, at, n);
}

static int on_header_value_complete(llhttp_t *p) {
  conn *c = p->data;
  if (!c->in_field) return 0;
  if (rq_put(c, "", 1)) return -1;
  c->in_field = 0;
  c->nhdr++;
  return 0;
}

static int lower_eq(const char *a, size_t n, const char *lower) {
  if (strlen(lower) != n) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] + 32) : a[i];
    if (ch != lower[i]) return 0;
  }
  return 1;
}

static int header_is(conn *c, size_t i, const char *name, const char *value) {
  hdr_off *h = &c->hoff[i];
  return lower_eq(c->rq.data + h->name_off, h->name_len, name) &&
         lower_eq(c->rq.data + h->value_off, h->value_len, value);
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = p->data;
  size_t max = c->srv->lim.max_body_bytes;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > max)
    return limit_error(c, 413, "body exceeds %zu bytes", max);
  c->body_off = c->rq.len;
  c->in_body = 1;
  queue_set(c, Q_NONE); /* the head is in: no longer a slowloris suspect */
  /* curl and friends wait for this before sending a larger body */
  if ((p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) && p->http_minor >= 1) {
    for (size_t i = 0; i < c->nhdr; i++)
      if (header_is(c, i, "expect", "100-continue")) {
        bg_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        flush(c);
        break;
      }
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  c->body_len += n;
  if (c->body_len > c->srv->lim.max_body_bytes)
    return limit_error(c, 413, "body exceeds %zu bytes", c->srv->lim.max_body_bytes);
  return rq_put(c, at, n);
}

static int on_message_complete(llhttp_t *p) {
  conn *c = p->data;
  bg_http_server *srv = c->srv;
  if (rq_put(c, "", 1)) return -1;
  int keep = llhttp_should_keep_alive(p) && !srv->closing && !c->close_after_write;
  int ckind = conn_header_kind(c, keep);
  int rc = bg__http_respond(c, ckind);
  if (rc != 0) return limit_error(c, 500, "out of memory (%zu)", (size_t)0);
  if (c->pending) { /* deferred: nothing more is parsed; the connection closes after it */
    c->close_after_write = 1;
    set_state(c, S_WAITING);
    return HPE_PAUSED;
  }
  set_state(c, S_IDLE);
  /* the handler may have closed the server, which marks this connection */
  if (!keep || c->close_after_write || c->closed) {
    c->close_after_write = 1;
    return HPE_PAUSED;
  }
  return 0;
}

/* ---- connection I/O --------------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->handles > 0) return;
  bg_http_server *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  srv->stats.connections_open--;
  bg_buf_free(&c->rq);
  bg__http_keep_spare(srv, &c->out);
  bg__http_keep_spare(srv, &c->wbuf);
  bg_buf_free(&c->out);
  bg_buf_free(&c->wbuf);
  free(c->hoff);
  free(c->hdrs);
  bg__http_spans_end(c, c->nspans); /* kept after conn_close (a handler closed the server) */
  free(c->spans);
  free(c);
  if (srv->closing) maybe_free(srv);
}

static void conn_close(conn *c) {
  if (c->closed) return;
  c->closed = 1;
  c->srv->nlive--;
  bg__http_spans_end(c, c->nspans); /* their responses will never be written */
  bg__http_pending_drop(c);
  queue_set(c, Q_NONE);
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  conn *c = req->data;
  /* wait for the peer's EOF (or the drain deadline) so unread input does not turn into a
   * RST that destroys the response we just sent; on server shutdown, don't wait */
  if (status < 0 || c->eof || c->srv->closing) conn_close(c);
}

/* Closes the connection once everything queued has gone out. */
static void maybe_finish(conn *c) {
  if (c->closed || !c->close_after_write || c->writing || c->out.len || c->shut || c->pending)
    return;
  if (c->state != S_DRAINING) set_state(c, S_DRAINING);
  if (c->eof) {
    conn_close(c);
    return;
  }
  c->shut = 1;
  queue_set(c, Q_IDLE); /* all written, only lingering for the peer's EOF: may make room */
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) conn_close(c);
}

static void write_cb(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  c->wbuf.len = 0;
  if (c->closed) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  bg__http_spans_end(c, c->spans_inflight);
  flush(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  (void)hint;
  buf->base = c->srv->rbuf;
  buf->len = sizeof c->srv->rbuf;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void resume_reading(conn *c) {
  if (!c->paused || c->closed) return;
  c->paused = 0;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) conn_close(c);
}

/* Hands c->out to the kernel: uv_try_write first, the remainder via one uv_write. */
static void flush(conn *c) {
  if (c->closed) return;
  if (c->in_read) return; /* read_cb flushes once at the end, batching pipelined replies */
  if (!c->writing && c->out.len) {
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
      conn_close(c);
      return;
    }
    if ((size_t)n == c->out.len) {
      c->out.len = 0;
      bg__http_spans_end(c, c->nspans);
    } else {
      bg_buf t = c->wbuf; /* swap, so new responses can queue while this one is in flight */
      c->wbuf = c->out;
      c->out = t;
      c->out.len = 0;
      b = uv_buf_init(c->wbuf.data + n, (unsigned)(c->wbuf.len - (size_t)n));
      c->wreq.data = c;
      if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
        conn_close(c);
        return;
      }
      c->writing = 1;
      c->spans_inflight = c->nspans;
    }
  }
  if (c->writing && c->out.len > OUT_HIGH_WATER && !c->paused) {
    uv_read_stop((uv_stream_t *)&c->tcp); /* a client pipelining without reading */
    c->paused = 1;
  } else if (!c->writing || c->out.len <= OUT_HIGH_WATER) {
    resume_reading(c);
  }
  maybe_finish(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (c->closed) return;
  if (nread < 0) {
    c->eof = 1;
    uv_read_stop(s);
    /* a client that closes while its answer is awaited has given up on it (as nginx takes
     * it): the connection goes, and the answer is refused when it comes */
    if (nread != UV_EOF || c->shut || c->pending || (!c->writing && !c->out.len)) {
      conn_close(c);
      return;
    }
    c->close_after_write = 1; /* half-closed client: still owed its responses */
    maybe_finish(c);
    return;
  }
  if (nread == 0 || c->close_after_write) return; /* draining: discard input */
  c->in_read = 1;
  llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
  c->in_read = 0;
  if (c->closed) return;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    c->close_after_write = 1;
  } else if (err != HPE_OK) {
    if (c->err_status == 413) {
      send_error(c, 413, "payload too large", c->err_detail);
    } else if (c->err_status == 431) {
      send_error(c, 431, "request header fields too large", c->err_detail);
    } else if (c->err_status) {
      send_error(c, 500, "internal server error", c->err_detail);
    } else {
      char d[160];
      const char *why = llhttp_get_error_reason(&c->parser);
      snprintf(d, sizeof d, "%s: %s", llhttp_errno_name(err), why ? why : "parse error");
      send_error(c, 400, "bad request", d);
    }
  }
  if (c->close_after_write && !c->pending) set_state(c, S_DRAINING);
  flush(c);
}

static void on_connection(uv_stream_t *ls, int status);

/* ---- server ----------------------------------------------------------------------------- */

void bg_http_limits_default(bg_http_limits *lim) {
  lim->max_header_bytes = 16 * 1024;
  lim->max_headers = 100;
  lim->max_body_bytes = 1024 * 1024;
  lim->read_timeout_ms = 10000;
  lim->header_timeout_ms = 5000;
  lim->first_byte_timeout_ms = 5000;
  lim->idle_timeout_ms = 75000;
  lim->max_connections = 1024;
  lim->defer_timeout_ms = 120000;
}

int bg_http_server_new(uv_loop_t *loop, const bg_http_limits *lim, bg_http_handler_cb cb, void *ud,
                       bg_http_server **out) {
  if (loop == NULL || cb == NULL || out == NULL) return BG_EINVAL;
  bg_http_server *srv = calloc(1, sizeof *srv);
  if (srv == NULL) return BG_ENOMEM;
  srv->loop = loop;
  if (lim)
    srv->lim = *lim;
  else
    bg_http_limits_default(&srv->lim);
  if (srv->lim.read_timeout_ms == 0 || srv->lim.idle_timeout_ms == 0 ||
      srv->lim.header_timeout_ms == 0 || srv->lim.first_byte_timeout_ms == 0 ||
      srv->lim.defer_timeout_ms == 0 || srv->lim.max_connections < 1) {
    free(srv);
    return BG_EINVAL;
  }
  srv->cb = cb;
  srv->ud = ud;
  llhttp_settings_init(&srv->settings);
  srv->settings.on_message_begin = on_message_begin;
  srv->settings.on_url = on_url;
  srv->settings.on_url_complete = on_url_complete;
  srv->settings.on_header_field = on_header_field;
  srv->settings.on_header_field_complete = on_header_field_complete;
  srv->settings.on_header_value = on_header_value;
  srv->settings.on_header_value_complete = on_header_value_complete;
  srv->settings.on_headers_complete = on_headers_complete;
  srv->settings.on_body = on_body;
  srv->settings.on_message_complete = on_message_complete;
  int rc = uv_tcp_init(loop, &srv->listener);
  if (rc != 0) {
    free(srv);
    return rc;
  }
  srv->listener.data = srv;
  *out = srv;
  return 0;
}

int bg_http_listen(bg_http_server *srv, const char *host, int port) {
  struct sockaddr_storage ss;
  if (host == NULL || srv->listening || srv->closing || port < 0 || port > 65535) return BG_EINVAL;
  int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  if (rc != 0) return rc;
  rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
  /* the kernel caps this at net.core.somaxconn; a deep queue absorbs a connect flood's bursts
   * (Go asks for somaxconn too) */
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, 4096, on_connection);
  if (rc == 0) srv->listening = 1;
  return rc;
}

int bg_http_port(const bg_http_server *srv) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (!srv->listening) return BG_EINVAL;
  int rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
  if (rc != 0) return rc;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void reject_closed(uv_handle_t *h) {
  bg_http_server *srv = h->data;
  free(h);
  srv->nhandles_pending--;
  if (srv->closing) maybe_free(srv);
}

static void set_peer(conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  strcpy(c->peer, "unknown");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, c->peer, sizeof c->peer);
    c->peer_loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    const uint8_t *b = a->sin6_addr.s6_addr;
    uv_ip6_name(a, c->peer, sizeof c->peer);
    c->peer_loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                       (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && b[12] == 127);
  }
}

static void on_connection(uv_stream_t *ls, int status) {
  bg_http_server *srv = ls->data;
  /* out of descriptors: libuv dropped the pending connection; make room for the next ones */
  if (status == UV_EMFILE || status == UV_ENFILE) {
    int n = 0;
    while (n < EVICT_SCAN && evict_one(srv))
      n++;
  }
  if (status < 0 || srv->closing) return;
  if (srv->nlive >= srv->lim.max_connections && !evict_one(srv)) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL || uv_tcp_init(srv->loop, t) != 0) {
      free(t);
      return;
    }
    t->data = srv;
    srv->nhandles_pending++;
    srv->stats.connections_rejected++;
    uv_accept(ls, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, reject_closed);
    return;
  }
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  c->srv = srv;
  c->queue = Q_NONE;
  if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  uv_timer_init(srv->loop, &c->timer); /* can't fail */
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  c->next = srv->conns;
  if (c->next) c->next->prev = c;
  srv->conns = c;
  srv->stats.connections_open++;
  srv->nlive++;
  srv->stats.connections_accepted++;
  llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
  c->parser.data = c;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  set_peer(c);
  set_state(c, S_IDLE);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) conn_close(c);
}

void bg_http_get_stats(const bg_http_server *srv, bg_http_stats *out) {
  *out = srv->stats;
}

int bg_http_answer(bg_http_server *srv, uint64_t ticket, const bg_http_response *res) {
  if (srv == NULL || res == NULL || ticket == 0) return BG_EINVAL;
  conn *c = srv->conns;
  while (c && (c->pending != ticket || c->closed))
    c = c->next;
  if (c == NULL) return BG_ENOENT;
  int rc = bg__http_answer_pending(c, res);
  if (rc != 0) bg__http_pending_drop(c);
  set_state(c, S_DRAINING);
  flush(c);
  return rc;
}

static void maybe_free(bg_http_server *srv) {
  if (!srv->closing || !srv->listener_closed || srv->conns || srv->nhandles_pending) return;
  void (*done)(void *) = srv->done;
  void *ud = srv->done_ud;
  bg__http_free_routes(srv);
  free(srv);
  if (done) done(ud);
}

static void listener_closed(uv_handle_t *h) {
  bg_http_server *srv = h->data;
  srv->listener_closed = 1;
  maybe_free(srv);
}

void bg_http_server_close(bg_http_server *srv, void (*done)(void *ud), void *ud) {
  if (srv->closing) return;
  srv->closing = 1;
  srv->done = done;
  srv->done_ud = ud;
  uv_close((uv_handle_t *)&srv->listener, listener_closed);
  for (conn *c = srv->conns; c; c = c->next) {
    if (c->closed) continue;
    if (!c->in_read && !c->writing && c->out.len == 0) {
      conn_close(c);
      continue;
    }
    /* queued responses go out first; the drain timer bounds how long that may take */
    c->close_after_write = 1;
    set_state(c, S_DRAINING);
    if (!c->in_read) maybe_finish(c);
  }
}
