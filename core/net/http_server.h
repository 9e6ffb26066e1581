/* http: the inbound HTTP/1.1 server. Owns the listening socket, its connections, request
 * parsing (llhttp from Debian's node-llhttp), limits, keep-alive and timeouts. Routing is
 * two-level: exact-path GET/HEAD routes are answered in C without leaving the loop callback,
 * either a stored response (bg_http_set_static: the hot /health path) or a C function that
 * writes its body in place (bg_http_set_render: /metrics); every other request goes to the one
 * handler given at creation (the agent's Lua router). Single-threaded: every
 * function runs on the loop thread. */
#ifndef BG_HTTP_H
#define BG_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/bg.h"
#include "trace/trace.h"

typedef struct bg_http_server bg_http_server;

typedef struct bg_http_header {
  const char *name; /* as received; compare case-insensitively */
  size_t name_len;
  const char *value;
  size_t value_len;
} bg_http_header;

/* A parsed request. Every pointer is borrowed and valid only during the handler call.
 * Strings are NUL-terminated as well as length-counted. */
typedef struct bg_http_request {
  const char *method; /* "GET", "POST", ... */
  const char *path;   /* the target up to '?', not percent-decoded */
  size_t path_len;
  const char *query; /* after '?', "" when none */
  size_t query_len;
  const bg_http_header *headers;
  size_t nheaders;
  const char *body; /* "" when none */
  size_t body_len;
  const char *peer;  /* client address, "127.0.0.1" or "::1" */
  int peer_loopback; /* 1 when the client connected from a loopback address */
  bg_span *span;     /* the request's server span (current during the call); NULL untraced */
  uint64_t ticket;   /* this request's number on the server, for a deferred answer */
} bg_http_request;

/* Filled by the handler. The server copies body and headers before the handler returns. */
typedef struct bg_http_response {
  int status;               /* default 200 */
  const char *content_type; /* default "application/json" */
  const char *body;         /* may be NULL for an empty body */
  size_t body_len;
  const char *headers; /* extra raw header lines, each ending "\r\n"; may be NULL */
  const char *route;   /* the matched route's template ("/health/{name}") for the span's name
                          and http.route; NULL when unknown; valid as long as content_type */
  int defer; /* set to 1 by the handler to answer later with bg_http_answer(req->ticket): the
                rest of the response is ignored; the connection closes after that answer */
} bg_http_response;

/* Called for every request that no static route answers; must fill res before returning. */
typedef void (*bg_http_handler_cb)(void *ud, const bg_http_request *req, bg_http_response *res);

/* Answers the request whose handler deferred (res->defer) with this ticket: res as a handler
 * fills it, copied before the call returns; the response carries "Connection: close". Later
 * requests pipelined behind a deferred one are not served (the client sends them again on a new
 * connection). Returns 0, BG_ENOENT when that request is no longer waiting (its client went
 * away, or defer_timeout_ms passed and it was answered 504), or BG_ENOMEM. */
int bg_http_answer(bg_http_server *srv, uint64_t ticket, const bg_http_response *res);

/* Connections are never a fixed pool that idle clients can fill (slowloris): a new connection
 * must send its first byte within first_byte_timeout_ms and its whole request head within
 * header_timeout_ms of that byte (a deadline, not reset by each byte, like Go's
 * ReadHeaderTimeout); at max_connections a new connection closes the oldest idle one (no request
 * under way: never sent a byte, keep-alive between requests, or answered and lingering), else
 * the oldest one still sending its head, like nginx reusing its keep-alive connections; an idle
 * one with input waiting unread (a probe accepted in a burst of connects has its request there)
 * only when there is no other. The new one is refused only when every connection is receiving a
 * body or writing a response. */
typedef struct bg_http_limits {
  size_t max_header_bytes;        /* request line + headers; over it: 431 JSON error (16 KiB) */
  size_t max_headers;             /* default 100 */
  size_t max_body_bytes;          /* over it: 413 JSON error (default 1 MiB) */
  uint64_t read_timeout_ms;       /* a started request must arrive whole within this (10 s) */
  uint64_t header_timeout_ms;     /* its head within this of its first byte: 408 (default 5 s) */
  uint64_t first_byte_timeout_ms; /* a new connection's first byte within this (default 5 s) */
  uint64_t idle_timeout_ms;       /* keep-alive idle limit between requests (default 75 s) */
  int max_connections;            /* open at once; see above for who makes room (default 1024) */
  uint64_t defer_timeout_ms;      /* a deferred answer not given by then is a 504 (120 s) */
} bg_http_limits;

/* Fills lim with the defaults above. Can't fail. */
void bg_http_limits_default(bg_http_limits *lim);

/* Creates a server on loop (not yet listening). lim NULL means defaults; it is copied.
 * Returns 0 and *out, or BG_ENOMEM/BG_EINVAL. The server owns itself until
 * bg_http_server_close's done callback. */
int bg_http_server_new(uv_loop_t *loop, const bg_http_limits *lim, bg_http_handler_cb cb, void *ud,
                       bg_http_server **out);

/* Binds and listens on host:port (IPv4 or IPv6 literal; port 0 picks a free port).
 * Returns 0 or a negative libuv error (UV_EADDRINUSE, ...). */
int bg_http_listen(bg_http_server *srv, const char *host, int port);

/* The bound port, or a negative error when not listening. */
int bg_http_port(const bg_http_server *srv);

/* Answers GET and HEAD on exactly this path with this response, in C. The body is copied;
 * a later call for the same path replaces it; body NULL removes the route.
 * Returns 0 or BG_ENOMEM. */
int bg_http_set_static(bg_http_server *srv, const char *path, int status, const char *content_type,
                       const char *body, size_t body_len);

/* A route whose body is written by C straight into the connection's output buffer (no copy):
 * cb sets res's status, content_type and headers, appends the body to out (and may also set
 * res->body, which is appended after it), and returns 0; a non-zero BG_E* return discards
 * what it appended and answers a JSON 500. For HEAD the body is rendered, counted in
 * Content-Length, then dropped. cb runs on the loop thread, never after bg_http_server_close;
 * it must not add or remove routes. */
typedef int (*bg_http_render_cb)(void *ud, const bg_http_request *req, bg_http_response *res,
                                 bg_buf *out);

/* Answers GET and HEAD on exactly this path with cb(ud, ...); replaces any static or render
 * route on the path; cb NULL removes the route. ud is borrowed. Returns 0 or BG_ENOMEM. */
int bg_http_set_render(bg_http_server *srv, const char *path, bg_http_render_cb cb, void *ud);

/* Traces every request from now on with t (NULL: none, the default): a SERVER span per request
 * continuing the caller's traceparent and tracestate when they parse (else a new root), named
 * "GET /route" after OpenTelemetry's HTTP conventions, with their attributes when it records,
 * status error for a 5xx, ended once the response is handed to the kernel (or the connection
 * closes first). While a route answers, the span is current; the previous context is back
 * after. Every response to a traced request carries a traceparent header of its span, sampled
 * or not. Loop thread only. Can't fail. */
void bg_http_set_tracer(bg_http_server *srv, bg_tracer *t);

/* Counters for self-monitoring. Can't fail. */
typedef struct bg_http_stats {
  uint64_t requests, static_hits, errors_4xx, errors_5xx, connections_accepted,
      connections_rejected,  /* refused at the limit with nothing to close instead */
      connections_evicted,   /* idle or slow ones closed to make room for a new one */
      connections_timed_out; /* closed or answered 408 at a first-byte, head or read deadline */
  int connections_open;
} bg_http_stats;
void bg_http_get_stats(const bg_http_server *srv, bg_http_stats *out);

/* Stops accepting, closes every connection (responses already queued are flushed first,
 * within a bounded time), and frees the server; done(ud) runs once every handle is
 * closed. done may be NULL. */
void bg_http_server_close(bg_http_server *srv, void (*done)(void *ud), void *ud);

#endif
