/* fetch: the outbound HTTP client, which also sends mail (SMTP). Plain http:// without
 * proxies or userinfo goes to http_client.c, the built-in HTTP/1.1 client on pooled keep-alive
 * connections (BEAGLE_HTTP_CLIENT=curl turns it off); a GET or HEAD that follows redirects too,
 * handed to curl from the start when its answer is a redirect. Everything else (https://,
 * redirects, a proxy) runs on one curl multi handle driven by the libuv loop (curl's
 * multi-socket API: CURLMOPT_SOCKETFUNCTION + CURLMOPT_TIMERFUNCTION with uv_poll_t and
 * uv_timer_t); each mail runs as one blocking curl transfer on the libuv threadpool
 * (uv_queue_work), because libcurl's SMTP waits for some replies synchronously. Every request is
 * asynchronous and nothing here blocks the loop. Call everything from the loop's thread;
 * callbacks run there too. */
#ifndef BG_FETCH_H
#define BG_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bg_fetcher bg_fetcher; /* one per loop */
typedef struct bg_fetch bg_fetch;     /* one request in flight */

/* TLS for smtp:// (smtps:// is TLS from the start whatever this says) */
enum {
  BG_FETCH_TLS_NONE = 0, /* plain text */
  BG_FETCH_TLS_TRY,      /* STARTTLS when the server offers it, else plain text */
  BG_FETCH_TLS_REQUIRED  /* STARTTLS or fail */
};

#define BG_FETCH_NO_REDIRECTS (-1) /* max_redirects: follow none, a redirect is an error */
#define BG_FETCH_MAX_REDIRECTS 50  /* the most max_redirects may ask for */

typedef struct bg_fetch_opts {
  const char *method;         /* NULL: "GET" (or "POST" when body is set) */
  const char *url;            /* required; http://, https://, or smtp://, smtps:// (mail) */
  const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
  const char *body;           /* may be NULL; mail: the RFC 5322 message (bare LF -> CRLF) */
  size_t body_len;
  uint64_t timeout_ms;  /* whole request; 0 means 10 s */
  size_t max_body;      /* response bodies beyond this fail with BG_ELIMIT; 0: 16 MiB */
  int follow_redirects; /* 0 or 1 (at most max_redirects hops) */
  int max_redirects;    /* with follow_redirects: 1..50 hops, BG_FETCH_NO_REDIRECTS, or 0: 5 */
  int insecure;         /* 1 skips TLS verification */
  /* HTTP through curl only (any of them set sends a plain http:// request to curl too). PEM
   * files are read by the TLS library when it connects. */
  const char *client_cert; /* PEM client certificate (mutual TLS); NULL: none */
  const char *client_key;  /* its key, when not in client_cert's file */
  const char *ca_file;     /* PEM CA certificates to verify with, instead of the system's */
  int cert_info;           /* 1: the peer's leaf certificate in the result (a fresh connection) */
  int connect_only;        /* 1: connect (and TLS handshake) only, on a fresh connection */
  int timings;             /* 1: send a plain http:// request to curl, which measures phases */
  /* "host:port:connect_host:connect_port" entries as curl's CURLOPT_CONNECT_TO takes them
   * (connect there for host:port, the URL's name still asked for by SNI and verified),
   * NULL-terminated; NULL: none. Only curl connects elsewhere: such a request never goes to
   * the built-in client. */
  const char *const *connect_to;
  /* Mail only (smtp:// and smtps:// URLs; method, headers, max_body and follow_redirects are
   * ignored there). Addresses are "a@b" or "<a@b>" and may not hold CR or LF. */
  const char *mail_from;        /* required for mail ("" is the null sender) */
  const char *const *mail_rcpt; /* NULL-terminated, at least one */
  const char *username;         /* AUTH (PLAIN, LOGIN, ...) when the server offers it */
  const char *password;
  int use_ssl; /* BG_FETCH_TLS_*: for smtp:// */
} bg_fetch_opts;

/* Passed to the completion callback; every pointer is valid only during the callback. */
typedef struct bg_fetch_result {
  int err;            /* 0, or BG_ETIMEDOUT, BG_ELIMIT, BG_EIO (connect/DNS/TLS/...) */
  const char *errmsg; /* curl's message when err != 0, else "" */
  long status;        /* HTTP status, or the last SMTP reply code (250 when sent); 0: none */
  const char *body;   /* NUL-terminated; "" when empty */
  size_t body_len;
  const char *headers; /* the raw header block of the final response (mail: the replies) */
  size_t headers_len;
  double total_time; /* seconds from start to completion */
  /* HTTP through curl (0 and NULL otherwise): */
  long redirects;  /* redirects followed */
  const char *url; /* the URL the final response came from; NULL: the request's */
  int has_timings; /* the phases below are measured (curl, or the built-in client's own) */
  struct {
    double dns, connect, tls, first_byte, total; /* seconds, each phase on its own */
  } timings;
  int has_cert; /* cert_info was asked and the peer sent a certificate */
  struct {
    double not_before, not_after; /* seconds since the epoch */
    const char *subject, *issuer; /* OpenSSL's one-line forms ("CN = example.org") */
  } cert;
} bg_fetch_result;

typedef void (*bg_fetch_cb)(void *ud, const bg_fetch_result *res);

/* Creates the client for loop. Returns 0 and *out, or BG_ENOMEM/BG_EIO. */
int bg_fetcher_new(uv_loop_t *loop, bg_fetcher **out);

/* Cancels every request in flight (their callbacks are not called) and frees the client
 * once its handles are closed and its mails are off the threadpool: keep running the loop. */
void bg_fetcher_free(bg_fetcher *f);

/* Starts a request (an HTTP request, or a mail for smtp:// and smtps:// URLs). opts and
 * everything it points to are copied. On 0, cb(ud, res) is called exactly once later from the
 * loop, unless bg_fetch_cancel is called first; on error (BG_EINVAL, BG_ENOMEM, BG_EIO when
 * libcurl can't be loaded) cb is never called. *out may be NULL. A mail succeeds with err 0
 * and status 250; an SMTP error reply gives BG_EIO and curl's message. */
int bg_fetch_start(bg_fetcher *f, const bg_fetch_opts *opts, bg_fetch_cb cb, void *ud,
                   bg_fetch **out);

/* Aborts a request whose callback has not run yet; its callback is never called. */
void bg_fetch_cancel(bg_fetch *req);

/* Number of requests in flight. */
int bg_fetcher_active(const bg_fetcher *f);

#endif
