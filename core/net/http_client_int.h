/* http_client_int: what http_client.c (connections, the pool, the timer, the request's life)
 * and http_client_msg.c (the request head out, the response in through llhttp) share. Not for
 * other modules. */
#ifndef BG_HTTP_CLIENT_INT_H
#define BG_HTTP_CLIENT_INT_H

#include "net/http_client.h"

#include "base/bg.h"

#include <llhttp.h>
#include <netdb.h>
#include <stddef.h>
#include <stdint.h>

typedef struct conn conn;
typedef struct gai gai;

struct bg_h1_req {
  bg_h1 *h;
  conn *c;
  gai *gai;
  struct addrinfo *ai, *next_ai; /* resolved addresses; the next one to try */
  struct sockaddr_storage lit;   /* a literal host's address */
  int literal, lit_tried;        /* literal: 1 yes, 2 maybe (digits and dots), 0 a name */
  bg_fetch_cb cb;
  void *ud;
  bg_h1_req *prev, *next;
  uint64_t seq, start_ns, deadline, timeout_ms; /* deadline: ms, uv_hrtime based */
  /* uv_hrtime when the name was resolved, the connection made, the request handed to the
   * socket and the first byte of the answer read (0: not yet), for the phase timings */
  uint64_t dns_ns, conn_ns, sent_ns, first_ns;
  size_t max_body;
  bg_buf hdrs, body;
  long status;
  int head, retried, got_bytes, done, pending, err;
  int hstate; /* header block: 0 nothing yet, 1 in the reason, 2 in headers, 3 past them */
  unsigned port;
  char *host, *key, *out; /* in data: "name" or "::1", "host:port", head + body */
  size_t out_len;
  char errmsg[256];
  char data[];
};

/* Writes n in decimal at p (no NUL); returns the length. snprintf costs ~1k instructions. */
static inline size_t bg__h1_fmt_u(char *p, uint64_t n) {
  char t[20];
  size_t k = 0;
  do
    t[k++] = (char)('0' + n % 10);
  while ((n /= 10) != 0);
  for (size_t i = 0; i < k; i++)
    p[i] = t[k - 1 - i];
  return k;
}

/* ---- the request head (http_client_msg.c) ---- */

enum { H_HOST = 1, H_UA = 2, H_ACCEPT = 4, H_CLEN = 8, H_CTYPE = 16, H_CURL = 32 };

typedef struct rq {
  const char *host; /* without brackets */
  size_t host_len;
  int v6;
  unsigned port;
  const char *path; /* from the first '/' or '?' up to any '#'; may be empty */
  size_t path_len;
  const char *method, *hostport, *clen; /* clen: NULL for no Content-Length */
  const char *host_hdr;                 /* the caller's Host header, or NULL */
  size_t hp_len, clen_len;
  int flags; /* H_* */
} rq;

/* Fills what h1 handles of the URL s into u (host, port, path); -1: leave it to curl. */
int bg__h1_parse_url(const char *s, rq *u);
/* One pass over the caller's headers: the H_* flags of those present; *host: the first Host
 * header (left alone when there is none). */
int bg__h1_scan_headers(const char *const *hs, const char **host);

typedef struct wr {
  char *p; /* NULL: only count */
  size_t n;
} wr;

/* Writes the request head of o and q at w->p, or only counts its bytes when w->p is NULL. */
void bg__h1_write_head(wr *w, const bg_fetch_opts *o, const rq *q);

/* ---- the response (http_client_msg.c) ---- */

/* llhttp's callbacks for a response: the parser's data is its bg_h1_req, whose hdrs, body,
 * status, hstate, done and err they fill. */
void bg__h1_settings_init(llhttp_settings_t *s);

#endif
