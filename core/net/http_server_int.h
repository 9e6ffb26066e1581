/* http_server_int: what the two halves of the HTTP server share: http_server.c (connections,
 * parsing, I/O, the server's life) and http_server_respond.c (response heads, the routes answered
 * in C, the hand-off to the handler). Not part of the API; loop thread only. */
#ifndef BG_HTTP_INT_H
#define BG_HTTP_INT_H

#include "net/http_server.h"

#include <llhttp.h>

#define READ_BUF_SIZE (64 * 1024)

typedef struct route {
  char *path;
  size_t path_len;
  char *resp; /* static: full GET response: headers, blank line, body; NULL for render */
  size_t resp_len;
  size_t head_len; /* bytes before the blank line, where a Connection header may go */
  int status;
  bg_http_render_cb render; /* render route: writes its body into the output buffer */
  void *render_ud;
  size_t head_hint; /* render: the last head's length, the gap left before the body */
} route;

/* S_WAITING: the request's handler deferred its answer (bg_http_answer); nothing more is read
 * into requests, the connection closes after the answer. */
enum { S_IDLE, S_READING, S_DRAINING, S_WAITING };

/* The queues a new connection takes room from at the limit, oldest first: Q_IDLE (no request
 * under way), then Q_HEAD (a request head still arriving). Q_NONE: neither (a body arriving,
 * or draining), never closed to make room. */
enum { Q_IDLE, Q_HEAD, Q_COUNT, Q_NONE = Q_COUNT };

typedef struct hdr_off {
  size_t name_off, name_len, value_off, value_len;
} hdr_off;

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  llhttp_t parser;
  bg_http_server *srv;
  struct conn *prev, *next;
  struct conn *qprev, *qnext; /* in srv->q[queue], when queue is not Q_NONE */
  int queue;                  /* Q_* */
  int handles;                /* open handles; the struct is freed when this drops to 0 */
  int state;                  /* S_* */
  uint64_t since;             /* loop time when state was entered */
  uint64_t due;               /* loop time the timer fires, 0 when not armed */
  unsigned closed : 1, writing : 1, close_after_write : 1, shut : 1, eof : 1, paused : 1,
      in_read : 1, in_field : 1, in_body : 1, served : 1 /* a request began on it */;
  int err_status; /* set by a parser callback that aborts with a limit error */
  char err_detail[96];
  /* request under construction: url, header names and values, body, each NUL-terminated */
  bg_buf rq;
  size_t url_off, url_len, body_off, body_len, hdr_bytes;
  hdr_off *hoff;
  bg_http_header *hdrs;
  size_t nhdr, hcap;
  bg_buf out;  /* responses not yet handed to the kernel */
  bg_buf wbuf; /* the buffer an in-flight uv_write points into */
  char peer[64];
  int peer_loopback;
  /* server spans of the responses in wbuf and out, oldest first: the first spans_inflight are
   * those of the bytes in flight in wbuf; each ends once its response is handed to the kernel */
  bg_span **spans;
  uint32_t nspans, spans_cap, spans_inflight;
  /* a deferred answer: the request's ticket (0: none), its server span until then, the
   * traceparent line its response carries, its route template, whether it was a HEAD */
  uint64_t pending;
  bg_span *pending_span;
  char pending_tp[80];
  char pending_route[192];
  unsigned pending_head : 1, pending_has_tp : 1;
} conn;

struct bg_http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  bg_http_limits lim;
  bg_http_handler_cb cb;
  void *ud;
  llhttp_settings_t settings;
  route *routes;
  size_t nroutes;
  conn *conns; /* list of live connections */
  int nlive;   /* connections not yet closing: what max_connections counts */
  struct {
    conn *head, *tail; /* oldest first */
  } q[Q_COUNT];
  int nhandles_pending; /* accepted-and-rejected sockets still closing */
  int listening, listener_closed, closing;
  void (*done)(void *ud);
  void *done_ud;
  bg_http_stats stats;
  bg_tracer *tracer; /* NULL: requests are not traced */
  int port;          /* the bound port for server.port, read on the first traced request */
  bg_buf head;       /* a render route's head, built once its body length is known */
  bg_buf spare;      /* the largest output buffer a closed connection left, for the next render */
  uint64_t next_ticket; /* the last request's ticket (bg_http_request.ticket) */
  int nwaiting; /* connections waiting for a deferred answer (at most max_connections / 4) */
  char rbuf[READ_BUF_SIZE]; /* shared: every read is parsed before the next alloc */
};

/* Answers the complete request in c: a static or render route for GET and HEAD, else the
 * handler; appends the response to c->out and counts it. ckind: 0 no Connection header,
 * 1 "close", 2 "keep-alive". Returns 0 or BG_ENOMEM. */
int bg__http_respond(conn *c, int ckind);

/* Writes the deferred answer res of c's pending request into c->out ("Connection: close") and
 * ends its wait; a NULL route in res keeps the one the handler named. 0 or BG_ENOMEM. */
int bg__http_answer_pending(conn *c, const bg_http_response *res);

/* Ends the wait of c's pending request without an answer (its connection is closing): its span
 * ends. Can't fail. */
void bg__http_pending_drop(conn *c);

/* Appends status line, Server, Content-Type and Content-Length (no blank line). 0 or BG_ENOMEM. */
int bg__http_put_head(bg_buf *b, int status, const char *ctype, size_t body_len);

/* Counts a response of this status in the server's stats. Can't fail. */
void bg__http_count_status(bg_http_server *srv, int status);

/* Keeps b's memory as the server's spare when it is a large buffer (from a render) larger than
 * the spare; b is then empty. A scrape per connection (curl, most probes) would otherwise fault
 * in and copy megabytes of fresh memory while its body grows. Can't fail. */
void bg__http_keep_spare(bg_http_server *srv, bg_buf *b);

/* Ends the first n of c's pending server spans (their responses are written, or the
 * connection is gone). Can't fail. */
void bg__http_spans_end(conn *c, uint32_t n);

/* Frees every route and the spare buffer (the server is going away). Can't fail. */
void bg__http_free_routes(bg_http_server *srv);

#endif
