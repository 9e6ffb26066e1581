/* fetch_int: what fetch.c (the fetcher, curl multi on the loop, h1) and fetch_mail.c (SMTP on
 * the threadpool) share. Not for other modules. */
#ifndef BG_FETCH_INT_H
#define BG_FETCH_INT_H

#include "net/fetch.h"

#include "base/bg.h"
#include "net/http_client.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <uv.h>

/* libcurl is loaded with dlopen on the first request, not linked: curl pulls in OpenSSL,
 * GnuTLS, Kerberos, LDAP and more, whose relocations and constructors cost about 5 MiB of
 * resident memory at start-up even when the agent never makes an outbound request. */
#define CURL_FNS(X)                                                                                \
  X(CURLcode, global_init, (long))                                                                 \
  X(CURL *, easy_init, (void))                                                                     \
  X(CURLcode, easy_setopt, (CURL *, CURLoption, ...))                                              \
  X(CURLcode, easy_getinfo, (CURL *, CURLINFO, ...))                                               \
  X(CURLcode, easy_perform, (CURL *))                                                              \
  X(void, easy_cleanup, (CURL *))                                                                  \
  X(void, easy_reset, (CURL *))                                                                    \
  X(const char *, easy_strerror, (CURLcode))                                                       \
  X(CURLM *, multi_init, (void))                                                                   \
  X(CURLMcode, multi_setopt, (CURLM *, CURLMoption, ...))                                          \
  X(CURLMcode, multi_add_handle, (CURLM *, CURL *))                                                \
  X(CURLMcode, multi_remove_handle, (CURLM *, CURL *))                                             \
  X(CURLMcode, multi_assign, (CURLM *, curl_socket_t, void *))                                     \
  X(CURLMcode, multi_cleanup, (CURLM *))                                                           \
  X(CURLMsg *, multi_info_read, (CURLM *, int *))                                                  \
  X(CURLMcode, multi_socket_action, (CURLM *, curl_socket_t, int, int *))                          \
  X(struct curl_slist *, slist_append, (struct curl_slist *, const char *))                        \
  X(void, slist_free_all, (struct curl_slist *))

typedef struct bg__curl_fns {
#define X(ret, name, args) ret(*name) args;
  CURL_FNS(X)
#undef X
} bg__curl_fns;

/* libcurl's functions, filled by fetch.c on the first request that needs curl. */
extern bg__curl_fns bg__cu;

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_BODY (16u << 20)
#define MAIL_SOCKS 4 /* sockets one mail may hold at once (happy eyeballs needs 2) */
#define EASY_POOL 16 /* finished easy handles kept for the next requests */

typedef struct sock_ctx sock_ctx;

struct bg_fetcher {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  bg_fetch *reqs;  /* requests in flight (added to multi), doubly linked */
  sock_ctx *socks; /* poll handles curl currently uses */
  int nreqs;
  int nhandles; /* uv handles not yet through their close callback */
  int nwork;    /* mails queued on the threadpool, not yet through mail_after */
  int closing;  /* bg_fetcher_free was called */
  bg_h1 *h1;    /* the built-in client for plain http://; NULL: curl does everything */
  /* Easy handles of finished requests, reset and ready: a new one costs an allocation of
   * several KB and its initialisation, per request (the connections live in the multi's cache
   * either way). */
  CURL *idle[EASY_POOL];
  int nidle;
};

struct sock_ctx {
  uv_poll_t poll;
  bg_fetcher *f;
  curl_socket_t fd;
  sock_ctx *prev, *next;
};

struct bg_fetch {
  bg_fetcher *f;
  bg_h1_req *h1; /* an h1 request: no easy handle, nothing of curl's */
  CURL *easy;
  struct curl_slist *hdr_list;
  struct curl_slist *rcpt_list;    /* mail */
  struct curl_slist *connect_list; /* CURLOPT_CONNECT_TO */
  char *upload;                    /* mail: the message, CRLF line ends */
  size_t upload_len, upload_pos;
  bg_buf body;
  bg_buf hdrs;
  size_t max_body;
  int max_redirs; /* the redirect limit curl was given (for its error), -1: not following */
  int no_reuse;   /* connect_only: the easy handle holds the connection, never pool it */
  /* An h1 request that follows redirects: a copy of its opts, for curl to take it over from
   * the start should the answer be a redirect (most answers are not, and then curl is never
   * needed). NULL otherwise. */
  bg_fetch_opts *again;
  int fail;  /* BG_ELIMIT or BG_ENOMEM when a curl callback aborted the transfer */
  int in_cb; /* the user callback is running: the request is no longer in flight */
  uint64_t start_ns;
  bg_fetch_cb cb;
  void *ud;
  bg_fetch *prev, *next;
  char errbuf[CURL_ERROR_SIZE];
  /* Mail. Between uv_queue_work and mail_after the worker owns everything above except
   * prev/next (the loop's list) and in_cb; the loop thread only sets canceled and shuts the
   * sockets down, under lock. */
  int mail; /* 1 once lock is initialised */
  uv_work_t work;
  CURLcode rc; /* mail_work's results */
  long status;
  atomic_int canceled;
  uv_mutex_t lock;                 /* guards socks */
  curl_socket_t socks[MAIL_SOCKS]; /* open sockets, CURL_SOCKET_BAD in free slots */
};

/* ---- fetch.c ---- */

void bg__fetch_req_unlink(bg_fetcher *f, bg_fetch *r);
/* Frees r (its easy handle back to the fetcher's pool, when it can take it). */
void bg__fetch_req_free(bg_fetch *r);
/* Reports r to its callback with curl's result rc, then frees it. */
void bg__fetch_finish(bg_fetch *r, CURLcode rc);
/* Frees f once it is closing and its last handle and mail are through. */
void bg__fetcher_maybe_free(bg_fetcher *f);
/* curl's write and header callbacks: userp is the bg_fetch. */
size_t bg__fetch_on_body(char *p, size_t size, size_t n, void *userp);
size_t bg__fetch_on_header(char *p, size_t size, size_t n, void *userp);

/* ---- fetch_mail.c ---- */

/* Whether url is smtp:// or smtps://. */
int bg__mail_is_url(const char *url);
/* Whether o's sender, recipients and TLS mode can go into an SMTP send. */
int bg__mail_valid(const bg_fetch_opts *o);
/* The mail counterpart of setup_easy: o into r's easy handle. Returns 0 or BG_ENOMEM. */
int bg__mail_setup(bg_fetch *r, const bg_fetch_opts *o);
/* uv_queue_work's two halves for a mail: the send in a threadpool thread, the report on the
 * loop thread. */
void bg__mail_work(uv_work_t *w);
void bg__mail_after(uv_work_t *w, int status);
/* Cancels a queued or running mail; it is freed in bg__mail_after. Loop thread. */
void bg__mail_abort(bg_fetch *r);

#endif
