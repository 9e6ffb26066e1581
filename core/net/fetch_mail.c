/* fetch_mail.c: mail, the part of fetch.c that is not HTTP.
 *
 * An smtp:// or smtps:// URL makes the request an SMTP send (curl uploads the message
 * through on_upload and does the dot-stuffing). It does not go through the multi handle:
 * libcurl (7.88) waits synchronously inside the multi interface for the reply to the end of the
 * message and for the reply to QUIT, which would stall the loop, and every other request, for as
 * long as a server cares to take. Each mail instead runs one blocking curl_easy_perform on its
 * own easy handle on the libuv threadpool (bg__mail_work) and is reported from bg__mail_after, on
 * the loop thread, through the same bg__fetch_finish(). A running worker can't be stopped, so
 * cancelling a mail marks it, shuts its sockets down so that curl gives up at once, and leaves the
 * freeing to bg__mail_after; the fetcher, likewise, is not freed while mails are on the threadpool
 * (nwork). libcurl is loaded and curl_global_init'ed on the loop thread before the first mail is
 * queued: neither is thread-safe. */
#include "net/fetch_int.h"

#include "base/bg.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t on_upload(char *p, size_t size, size_t n, void *userp) {
  bg_fetch *r = userp;
  size_t len = r->upload_len - r->upload_pos;
  if (len > size * n) len = size * n;
  memcpy(p, r->upload + r->upload_pos, len);
  r->upload_pos += len;
  return len; /* 0 ends the message; curl adds the final "." line */
}

/* Called by curl in the worker now and then: nonzero aborts the transfer with
 * CURLE_ABORTED_BY_CALLBACK. A backstop for bg__mail_abort's shutdown, which misses a socket
 * curl has yet to open (or is still connecting). */
static int mail_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow) {
  bg_fetch *r = userp;
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  return atomic_load(&r->canceled);
}

/* curl's own socket opening, plus a record of the socket for bg__mail_abort. */
static curl_socket_t mail_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a) {
  bg_fetch *r = userp;
  curl_socket_t fd = CURL_SOCKET_BAD;
  (void)purpose;
  uv_mutex_lock(&r->lock);
  for (int i = 0; i < MAIL_SOCKS; i++) {
    if (r->socks[i] != CURL_SOCKET_BAD) continue;
    if (!atomic_load(&r->canceled)) fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    r->socks[i] = fd;
    break;
  }
  uv_mutex_unlock(&r->lock);
  return fd;
}

/* The record goes before the close, so that bg__mail_abort never shuts down a reused fd number. */
static int mail_close_socket(void *userp, curl_socket_t fd) {
  bg_fetch *r = userp;
  uv_mutex_lock(&r->lock);
  for (int i = 0; i < MAIL_SOCKS; i++)
    if (r->socks[i] == fd) r->socks[i] = CURL_SOCKET_BAD;
  uv_mutex_unlock(&r->lock);
  return close(fd);
}

/* Runs in a threadpool thread; blocking is fine here, bounded by the request's timeout. The
 * easy handle is cleaned up here too, in case closing a connection waits on the server. */
void bg__mail_work(uv_work_t *w) {
  bg_fetch *r = w->data;
  r->rc = bg__cu.easy_perform(r->easy);
  bg__cu.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
  bg__cu.easy_cleanup(r->easy);
  r->easy = NULL;
}

/* Back on the loop thread, once per queued mail, whether it ran or uv_cancel dequeued it. */
void bg__mail_after(uv_work_t *w, int status) {
  bg_fetch *r = w->data;
  bg_fetcher *f = r->f;
  f->nwork--;
  if (status == UV_ECANCELED || atomic_load(&r->canceled)) {
    bg__fetch_req_free(r); /* bg__mail_abort already unlinked it */
  } else {
    bg__fetch_req_unlink(f, r);
    bg__fetch_finish(r, r->rc);
  }
  bg__fetcher_maybe_free(f); /* f may be closing; the user callback can't have freed it yet */
}

/* Loop thread. The request stays allocated until bg__mail_after. */
void bg__mail_abort(bg_fetch *r) {
  atomic_store(&r->canceled, 1);
  uv_mutex_lock(&r->lock);
  for (int i = 0; i < MAIL_SOCKS; i++)
    if (r->socks[i] != CURL_SOCKET_BAD) shutdown(r->socks[i], SHUT_RDWR); /* wakes curl */
  uv_mutex_unlock(&r->lock);
  uv_cancel((uv_req_t *)&r->work); /* fails harmlessly once the work has started */
}

int bg__mail_is_url(const char *url) {
  return strncasecmp(url, "smtp://", 7) == 0 || strncasecmp(url, "smtps://", 8) == 0;
}

/* An address goes into an SMTP command line as is: no line breaks. */
static int valid_address(const char *a, int may_be_empty) {
  return a != NULL && (may_be_empty || a[0] != '\0') && strpbrk(a, "\r\n") == NULL;
}

int bg__mail_valid(const bg_fetch_opts *o) {
  if (!valid_address(o->mail_from, 1)) return 0;
  if (o->mail_rcpt == NULL || o->mail_rcpt[0] == NULL) return 0;
  for (const char *const *a = o->mail_rcpt; *a != NULL; a++)
    if (!valid_address(*a, 0)) return 0;
  if (o->use_ssl < BG_FETCH_TLS_NONE || o->use_ssl > BG_FETCH_TLS_REQUIRED) return 0;
  return 1;
}

/* Copies the message with every bare LF made CRLF: SMTP lines end in CRLF, and curl only
 * dot-stuffs lines that follow a CRLF. Returns 0 or BG_ENOMEM. */
static int copy_message(bg_fetch *r, const char *msg, size_t len) {
  size_t extra = 0;
  for (size_t i = 0; i < len; i++)
    if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')) extra++;
  r->upload = malloc(len + extra + 1);
  if (r->upload == NULL) return BG_ENOMEM;
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')) r->upload[j++] = '\r';
    r->upload[j++] = msg[i];
  }
  r->upload_len = j;
  return 0;
}

/* The mail counterpart of setup_easy. Returns 0 or BG_ENOMEM. */
int bg__mail_setup(bg_fetch *r, const bg_fetch_opts *o) {
  CURL *e = r->easy;
  static const long tls[] = {CURLUSESSL_NONE, CURLUSESSL_TRY, CURLUSESSL_ALL};
  int ok = 1;
  if (copy_message(r, o->body ? o->body : "", o->body ? o->body_len : 0) != 0) return BG_ENOMEM;
  for (const char *const *a = o->mail_rcpt; *a != NULL; a++) {
    struct curl_slist *l = bg__cu.slist_append(r->rcpt_list, *a);
    if (l == NULL) return BG_ENOMEM;
    r->rcpt_list = l;
  }
  uint64_t t = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  long t_secs = t / 1000 + 1 > LONG_MAX ? LONG_MAX : (long)(t / 1000 + 1);
#define SET(opt, val) ok &= bg__cu.easy_setopt(e, opt, val) == CURLE_OK
  SET(CURLOPT_URL, o->url);
  SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  SET(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for timeouts: we are not the main thread */
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_WRITEFUNCTION, bg__fetch_on_body);
  SET(CURLOPT_WRITEDATA, (void *)r);
  SET(CURLOPT_HEADERFUNCTION, bg__fetch_on_header); /* curl passes the server's replies here */
  SET(CURLOPT_HEADERDATA, (void *)r);
  SET(CURLOPT_TIMEOUT_MS, t > LONG_MAX ? LONG_MAX : (long)t);
  /* closes the connection (QUIT) inside curl_easy_perform, and bounds the wait for the QUIT
   * reply, which CURLOPT_TIMEOUT_MS does not cover */
  SET(CURLOPT_FORBID_REUSE, 1L);
  SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, t_secs);
  SET(CURLOPT_NOPROGRESS, 0L);
  SET(CURLOPT_XFERINFOFUNCTION, mail_progress);
  SET(CURLOPT_XFERINFODATA, (void *)r);
  SET(CURLOPT_OPENSOCKETFUNCTION, mail_open_socket);
  SET(CURLOPT_OPENSOCKETDATA, (void *)r);
  SET(CURLOPT_CLOSESOCKETFUNCTION, mail_close_socket);
  SET(CURLOPT_CLOSESOCKETDATA, (void *)r);
  SET(CURLOPT_MAIL_FROM, o->mail_from);
  SET(CURLOPT_MAIL_RCPT, r->rcpt_list);
  SET(CURLOPT_UPLOAD, 1L);
  SET(CURLOPT_READFUNCTION, on_upload);
  SET(CURLOPT_READDATA, (void *)r);
  SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->upload_len);
  SET(CURLOPT_USE_SSL, tls[o->use_ssl]);
  if (o->username != NULL) SET(CURLOPT_USERNAME, o->username);
  if (o->password != NULL) SET(CURLOPT_PASSWORD, o->password);
  if (o->insecure) {
    SET(CURLOPT_SSL_VERIFYPEER, 0L);
    SET(CURLOPT_SSL_VERIFYHOST, 0L);
  }
#undef SET
  return ok ? 0 : BG_ENOMEM;
}
