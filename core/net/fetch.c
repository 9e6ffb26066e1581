/* fetch.c: curl multi driven by the libuv loop (the multi-socket API). curl tells us which
 * sockets to watch (on_socket: one uv_poll_t per socket, attached with curl_multi_assign)
 * and when to wake it (on_timer_set: one uv_timer_t); we hand readiness back with
 * curl_multi_socket_action and collect finished transfers with curl_multi_info_read.
 *
 * Re-entrancy: user callbacks run only from dispatch_done(), after curl_multi_socket_action
 * has returned, or from bg__mail_after, so they may start, cancel or even free the fetcher.
 * dispatch_done() detaches a transfer before calling back and re-reads curl's message queue
 * after every callback (curl_multi_remove_handle drops a canceled handle's pending message).
 *
 * Mail (smtp://, smtps://) runs on the threadpool instead: see fetch_mail.c.
 *
 * Plain http:// without proxies or userinfo goes to http_client.c instead (a GET or HEAD that
 * follows redirects too, until its answer is one: then curl asks again), the built-in
 * HTTP/1.1 client (a fraction of curl's cost per request, and curl is then never loaded): its
 * requests are bg_fetch wrappers in the same list, so that cancel, active and free treat both
 * alike, and h1 counts as one handle of the fetcher until it reports its handles closed. */
#include "net/fetch_int.h"

#include "base/bg.h"
#include "net/http_client.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bg__curl_fns bg__cu;

/* Loads libcurl once. Returns 0 or BG_EIO. */
static int curl_load(void) {
  static int state; /* 0 not tried, 1 loaded, -1 failed */
  if (state != 0) return state > 0 ? 0 : BG_EIO;
  state = -1;
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return BG_EIO;
#define X(ret, name, args)                                                                         \
  *(void **)(&bg__cu.name) = dlsym(h, "curl_" #name);                                              \
  if (bg__cu.name == NULL) return BG_EIO;
  CURL_FNS(X)
#undef X
  state = 1;
  return 0;
}

#define MAX_REDIRECTS 5
#define USER_AGENT BG_H1_USER_AGENT

/* ---- lists ---- */

static void req_link(bg_fetcher *f, bg_fetch *r) {
  r->prev = NULL;
  r->next = f->reqs;
  if (f->reqs) f->reqs->prev = r;
  f->reqs = r;
  f->nreqs++;
}

void bg__fetch_req_unlink(bg_fetcher *f, bg_fetch *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    f->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  f->nreqs--;
}

static void sock_unlink(bg_fetcher *f, sock_ctx *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    f->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
}

/* ---- handle lifetime ---- */

void bg__fetcher_maybe_free(bg_fetcher *f) {
  if (f->closing && f->nhandles == 0 && f->nwork == 0) free(f);
}

static void on_sock_close(uv_handle_t *h) {
  sock_ctx *s = h->data;
  bg_fetcher *f = s->f;
  free(s);
  f->nhandles--;
  bg__fetcher_maybe_free(f);
}

static void on_timer_close(uv_handle_t *h) {
  bg_fetcher *f = h->data;
  f->nhandles--;
  bg__fetcher_maybe_free(f);
}

/* Stops watching and closes; the memory goes in on_sock_close. curl may hand out the same fd
 * number for a new socket before that runs, which is fine: the new socket gets its own
 * sock_ctx, and uv_poll_stop has already taken the old one out of the loop's fd table. */
static void sock_close(bg_fetcher *f, sock_ctx *s) {
  sock_unlink(f, s);
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_sock_close);
}

void bg__fetch_req_free(bg_fetch *r) {
  bg_fetcher *f = r->f;
  if (r->easy != NULL) { /* a mail's is gone after bg__mail_work */
    if (!r->mail && !r->no_reuse && f != NULL && !f->closing && f->nidle < EASY_POOL) {
      bg__cu.easy_reset(r->easy);
      f->idle[f->nidle++] = r->easy;
    } else {
      bg__cu.easy_cleanup(r->easy);
    }
  }
  if (r->mail) uv_mutex_destroy(&r->lock);
  if (r->hdr_list != NULL) bg__cu.slist_free_all(r->hdr_list); /* cu is empty until curl loads */
  if (r->rcpt_list != NULL) bg__cu.slist_free_all(r->rcpt_list);
  if (r->connect_list != NULL) bg__cu.slist_free_all(r->connect_list);
  free(r->upload);
  free(r->again);
  bg_buf_free(&r->body);
  bg_buf_free(&r->hdrs);
  free(r);
}

/* ---- completion ---- */

/* curl's time of a phase in seconds (0 when curl has none). */
static double info_secs(CURL *e, CURLINFO what) {
  curl_off_t us = 0;
  if (bg__cu.easy_getinfo(e, what, &us) != CURLE_OK || us < 0) return 0;
  return (double)us / 1e6;
}

static double nonneg(double d) {
  return d > 0 ? d : 0;
}

/* Each phase on its own out of curl's cumulative times: the name lookup, the TCP connect, the
 * TLS handshake (0 for plain HTTP and on a reused connection), the wait for the first byte
 * after the request went out, and the whole transfer. */
static void get_timings(CURL *e, bg_fetch_result *res) {
  double dns = info_secs(e, CURLINFO_NAMELOOKUP_TIME_T);
  double conn = info_secs(e, CURLINFO_CONNECT_TIME_T);
  double app = info_secs(e, CURLINFO_APPCONNECT_TIME_T);
  double pre = info_secs(e, CURLINFO_PRETRANSFER_TIME_T);
  double start = info_secs(e, CURLINFO_STARTTRANSFER_TIME_T);
  res->has_timings = 1;
  res->timings.dns = dns;
  res->timings.connect = nonneg(conn - dns);
  res->timings.tls = app > 0 ? nonneg(app - conn) : 0;
  res->timings.first_byte = start > 0 ? nonneg(start - pre) : 0;
  res->timings.total = info_secs(e, CURLINFO_TOTAL_TIME_T);
}

/* "Dec  8 03:00:00 2026 GMT" (OpenSSL's ASN1_TIME_print) as seconds since the epoch; -1 when
 * it is something else. */
static double cert_time(const char *s) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  char mon[4];
  int d, H, M, S, Y;
  if (sscanf(s, "%3s %d %d:%d:%d %d", mon, &d, &H, &M, &S, &Y) != 6) return -1;
  const char *m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
  if (m == NULL || (m - months) % 3 != 0) return -1;
  struct tm tm = {.tm_year = Y - 1900,
                  .tm_mon = (int)(m - months) / 3,
                  .tm_mday = d,
                  .tm_hour = H,
                  .tm_min = M,
                  .tm_sec = S};
  return (double)timegm(&tm);
}

/* The leaf certificate of CURLINFO_CERTINFO into res (pointers into curl's list, valid until
 * the easy handle is reset). */
static void get_cert(CURL *e, bg_fetch_result *res) {
  struct curl_certinfo *ci = NULL;
  if (bg__cu.easy_getinfo(e, CURLINFO_CERTINFO, &ci) != CURLE_OK || ci == NULL ||
      ci->num_of_certs < 1)
    return;
  double nb = -1, na = -1;
  for (struct curl_slist *l = ci->certinfo[0]; l != NULL; l = l->next) {
    const char *v = l->data;
    if (strncmp(v, "Subject:", 8) == 0)
      res->cert.subject = v + 8;
    else if (strncmp(v, "Issuer:", 7) == 0)
      res->cert.issuer = v + 7;
    else if (strncmp(v, "Start date:", 11) == 0)
      nb = cert_time(v + 11);
    else if (strncmp(v, "Expire date:", 12) == 0)
      na = cert_time(v + 12);
  }
  if (na < 0 || nb < 0) return;
  res->has_cert = 1;
  res->cert.not_before = nb;
  res->cert.not_after = na;
  if (res->cert.subject == NULL) res->cert.subject = "";
  if (res->cert.issuer == NULL) res->cert.issuer = "";
}

void bg__fetch_finish(bg_fetch *r, CURLcode rc) {
  bg_fetch_result res;
  char msg[128];
  memset(&res, 0, sizeof res);
  res.errmsg = "";
  if (rc == CURLE_TOO_MANY_REDIRECTS) {
    snprintf(msg, sizeof msg, "more than %d redirects (the limit)", r->max_redirs);
    res.err = BG_EIO;
    res.errmsg = msg;
  } else if (r->fail == BG_ELIMIT || rc == CURLE_FILESIZE_EXCEEDED) {
    snprintf(msg, sizeof msg, "response body exceeds %zu bytes", r->max_body);
    res.err = BG_ELIMIT;
    res.errmsg = msg;
  } else if (r->fail != 0) {
    res.err = r->fail;
    res.errmsg = bg_strerror(r->fail);
  } else if (rc != CURLE_OK) {
    res.err = rc == CURLE_OPERATION_TIMEDOUT ? BG_ETIMEDOUT : BG_EIO;
    res.errmsg = r->errbuf[0] ? r->errbuf : bg__cu.easy_strerror(rc);
  }
  if (r->easy != NULL && !r->mail) {
    bg__cu.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
    bg__cu.easy_getinfo(r->easy, CURLINFO_REDIRECT_COUNT, &res.redirects);
    char *url = NULL;
    if (bg__cu.easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK) res.url = url;
    if (res.err == 0) get_timings(r->easy, &res);
    if (res.err == 0) get_cert(r->easy, &res); /* only there when CURLOPT_CERTINFO was set */
  } else if (r->easy != NULL) {
    bg__cu.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
  } else {
    res.status = r->status;
  }
  res.body = r->body.data ? r->body.data : "";
  res.body_len = r->body.len;
  res.headers = r->hdrs.data ? r->hdrs.data : "";
  res.headers_len = r->hdrs.len;
  res.total_time = (double)(uv_hrtime() - r->start_ns) / 1e9;
  r->in_cb = 1;
  r->cb(r->ud, &res);
  bg__fetch_req_free(r);
}

/* The only place user callbacks run. Each round re-reads the queue, because a callback may
 * have canceled (removed) a transfer whose message was waiting, or freed the whole fetcher. */
static void dispatch_done(bg_fetcher *f) {
  CURLMsg *m;
  int left;
  while (!f->closing && (m = bg__cu.multi_info_read(f->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *easy = m->easy_handle;
    CURLcode rc = m->data.result;
    char *priv = NULL;
    bg__cu.easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    bg_fetch *r = (bg_fetch *)priv;
    bg__cu.multi_remove_handle(f->multi, easy);
    bg__fetch_req_unlink(f, r);
    bg__fetch_finish(r, rc);
  }
}

/* ---- uv -> curl ---- */

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx *s = h->data;
  bg_fetcher *f = s->f; /* s may be closed by the socket_action below; f outlives it */
  int flags = 0;
  int running;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  bg__cu.multi_socket_action(f->multi, s->fd, flags, &running);
  dispatch_done(f);
}

static void on_timer(uv_timer_t *h) {
  bg_fetcher *f = h->data;
  int running;
  bg__cu.multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  dispatch_done(f);
}

/* ---- curl -> uv (called from inside curl: must not call curl_multi_* or user code) ---- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  bg_fetcher *f = userp;
  sock_ctx *s = socketp;
  (void)easy;
  if (f->closing) return 0; /* bg_fetcher_free closes whatever is left in f->socks */
  if (what == CURL_POLL_REMOVE) {
    /* curl forgets the socket (and its socketp) itself after this call */
    if (s != NULL) sock_close(f, s);
    return 0;
  }
  if (s == NULL) {
    s = calloc(1, sizeof *s);
    if (s == NULL) return -1;
    if (uv_poll_init_socket(f->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    s->f = f;
    s->fd = fd;
    s->next = f->socks;
    if (f->socks) f->socks->prev = s;
    f->socks = s;
    f->nhandles++;
    bg__cu.multi_assign(f->multi, fd, s);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  if (uv_poll_start(&s->poll, events, on_poll) != 0) return -1;
  return 0;
}

static int on_timer_set(CURLM *multi, long timeout_ms, void *userp) {
  bg_fetcher *f = userp;
  (void)multi;
  if (f->closing) return 0;
  /* 0 too goes through the loop: curl must not be re-entered from this callback, and it
   * keeps bg_fetch_start from ever completing a request synchronously */
  if (timeout_ms < 0) return uv_timer_stop(&f->timer) == 0 ? 0 : -1;
  return uv_timer_start(&f->timer, on_timer, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

/* ---- transfer callbacks ---- */

size_t bg__fetch_on_body(char *p, size_t size, size_t n, void *userp) {
  bg_fetch *r = userp;
  size_t len = size * n;
  if (len > r->max_body - r->body.len) {
    r->fail = BG_ELIMIT;
    return 0; /* curl aborts with CURLE_WRITE_ERROR; bg__fetch_finish() reports r->fail */
  }
  if (bg_buf_append(&r->body, p, len) != 0) {
    r->fail = BG_ENOMEM;
    return 0;
  }
  return len;
}

size_t bg__fetch_on_header(char *p, size_t size, size_t n, void *userp) {
  bg_fetch *r = userp;
  size_t len = size * n;
  /* A status line starts a new response (after a redirect or a 1xx): keep only the last. */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    bg_buf_reset(&r->hdrs);
    bg_buf_reset(&r->body);
  }
  if (bg_buf_append(&r->hdrs, p, len) != 0) {
    r->fail = BG_ENOMEM;
    return 0;
  }
  return len;
}

/* ---- public API ---- */

/* curl (and the TLS library under it) is initialised on the first request, not at start-up:
 * an agent that never makes an outbound request never touches those pages (about 4 MiB of
 * RSS), which matters for an idle agent's footprint. */
static int curl_ready(void) {
  static int ready;
  if (!ready) {
    if (curl_load() != 0 || bg__cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return BG_EIO;
    ready = 1;
  }
  return 0;
}

/* The multi handle, for HTTP only. */
static int fetcher_ready(bg_fetcher *f) {
  if (f->multi != NULL) return 0;
  int rc = curl_ready();
  if (rc != 0) return rc;
  f->multi = bg__cu.multi_init();
  if (f->multi == NULL) return BG_ENOMEM;
  bg__cu.multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  bg__cu.multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
  bg__cu.multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
  bg__cu.multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
  return 0;
}

static int env_set(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0';
}

/* h1 is used unless BEAGLE_HTTP_CLIENT=curl asks otherwise or a proxy is configured: curl
 * honours the proxy variables (and no_proxy), h1 knows nothing of proxies. */
static int h1_wanted(void) {
  const char *v = getenv("BEAGLE_HTTP_CLIENT");
  if (v != NULL && strcmp(v, "curl") == 0) return 0;
  return !env_set("http_proxy") && !env_set("HTTP_PROXY") && !env_set("all_proxy") &&
         !env_set("ALL_PROXY");
}

int bg_fetcher_new(uv_loop_t *loop, bg_fetcher **out) {
  if (loop == NULL || out == NULL) return BG_EINVAL;
  *out = NULL;
  bg_fetcher *f = calloc(1, sizeof *f);
  if (f == NULL) return BG_ENOMEM;
  f->loop = loop;
  int rc = h1_wanted() ? bg_h1_new(loop, &f->h1) : 0;
  if (rc == 0) rc = uv_timer_init(loop, &f->timer);
  if (rc != 0) {
    if (f->h1 != NULL)
      bg_h1_free(f->h1, free, f); /* frees f once its timer is closed */
    else
      free(f);
    return rc;
  }
  f->timer.data = f;
  f->nhandles = f->h1 != NULL ? 2 : 1; /* the timer, and h1 until it reports closed */
  *out = f;
  return 0;
}

static void on_h1_closed(void *ud) {
  bg_fetcher *f = ud;
  f->nhandles--;
  bg__fetcher_maybe_free(f);
}

static void req_abort(bg_fetcher *f, bg_fetch *r) {
  bg__fetch_req_unlink(f, r);
  if (r->h1 != NULL) {
    bg_h1_cancel(r->h1);
    bg__fetch_req_free(r);
    return;
  }
  if (r->mail) {
    bg__mail_abort(r);
    return;
  }
  bg__cu.multi_remove_handle(f->multi, r->easy);
  bg__fetch_req_free(r);
}

void bg_fetcher_free(bg_fetcher *f) {
  if (f == NULL || f->closing) return;
  f->closing = 1; /* from here on on_socket/on_timer_set ignore curl, dispatch_done stops */
  /* mails in flight are aborted; f stays allocated until their bg__mail_after has run */
  while (f->reqs != NULL)
    req_abort(f, f->reqs);
  /* close the polls before curl_multi_cleanup closes their (idle, cached) sockets */
  while (f->socks != NULL)
    sock_close(f, f->socks);
  while (f->nidle > 0)
    bg__cu.easy_cleanup(f->idle[--f->nidle]);
  if (f->multi != NULL) bg__cu.multi_cleanup(f->multi);
  f->multi = NULL;
  if (f->h1 != NULL) bg_h1_free(f->h1, on_h1_closed, f);
  f->h1 = NULL;
  uv_close((uv_handle_t *)&f->timer, on_timer_close); /* f is freed by the last close cb */
}

static int has_header(const char *const *headers, const char *name) {
  size_t n = strlen(name);
  for (; headers != NULL && *headers != NULL; headers++)
    if (strncasecmp(*headers, name, n) == 0 && (*headers)[n] == ':') return 1;
  return 0;
}

/* Translates opts into easy options. Returns 0 or BG_ENOMEM (BG_EINVAL for bad opts). */
static int setup_easy(bg_fetch *r, const bg_fetch_opts *o) {
  CURL *e = r->easy;
  const char *method = o->method ? o->method : (o->body ? "POST" : "GET");
  int ok = 1;
#define SET(opt, val) ok &= bg__cu.easy_setopt(e, opt, val) == CURLE_OK
  SET(CURLOPT_URL, o->url);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_PRIVATE, (void *)r);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_USERAGENT, USER_AGENT);
  SET(CURLOPT_ERRORBUFFER, r->errbuf);
  SET(CURLOPT_WRITEFUNCTION, bg__fetch_on_body);
  SET(CURLOPT_WRITEDATA, (void *)r);
  SET(CURLOPT_HEADERFUNCTION, bg__fetch_on_header);
  SET(CURLOPT_HEADERDATA, (void *)r);
  uint64_t t = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  SET(CURLOPT_TIMEOUT_MS, t > LONG_MAX ? LONG_MAX : (long)t);
  /* fails early from Content-Length; bg__fetch_on_body enforces it for chunked bodies */
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(r->max_body > INT64_MAX ? INT64_MAX : r->max_body));
  r->max_redirs = -1;
  if (o->follow_redirects) {
    r->max_redirs = o->max_redirects == BG_FETCH_NO_REDIRECTS ? 0
                    : o->max_redirects > 0                    ? o->max_redirects
                                                              : MAX_REDIRECTS;
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, (long)r->max_redirs);
  }
  if (o->insecure) {
    SET(CURLOPT_SSL_VERIFYPEER, 0L);
    SET(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (o->client_cert != NULL) SET(CURLOPT_SSLCERT, o->client_cert);
  if (o->client_key != NULL) SET(CURLOPT_SSLKEY, o->client_key);
  if (o->ca_file != NULL) SET(CURLOPT_CAINFO, o->ca_file);
  /* a certificate is only seen in a handshake, and a connect only measured on a connection of
   * its own: neither may take one from the cache, nor leave one there */
  if (o->cert_info || o->connect_only) {
    SET(CURLOPT_FRESH_CONNECT, 1L);
    SET(CURLOPT_FORBID_REUSE, 1L);
  }
  if (o->cert_info) SET(CURLOPT_CERTINFO, 1L);
  if (o->connect_only) {
    SET(CURLOPT_CONNECT_ONLY, 1L);
    r->no_reuse = 1;
  }
  if (o->body != NULL) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    SET(CURLOPT_COPYPOSTFIELDS, o->body); /* copies body_len bytes, set after the size */
    if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else {
    SET(CURLOPT_CUSTOMREQUEST, method);
  }
#undef SET
  if (!ok) return BG_ENOMEM;
  for (const char *const *h = o->headers; h != NULL && *h != NULL; h++) {
    struct curl_slist *l = bg__cu.slist_append(r->hdr_list, *h);
    if (l == NULL) return BG_ENOMEM;
    r->hdr_list = l;
  }
  /* no "Expect: 100-continue" round trip for large bodies unless asked for */
  if (o->body != NULL && !has_header(o->headers, "Expect")) {
    struct curl_slist *l = bg__cu.slist_append(r->hdr_list, "Expect:");
    if (l == NULL) return BG_ENOMEM;
    r->hdr_list = l;
  }
  if (r->hdr_list != NULL && bg__cu.easy_setopt(e, CURLOPT_HTTPHEADER, r->hdr_list) != CURLE_OK)
    return BG_ENOMEM;
  for (const char *const *c = o->connect_to; c != NULL && *c != NULL; c++) {
    struct curl_slist *l = bg__cu.slist_append(r->connect_list, *c);
    if (l == NULL) return BG_ENOMEM;
    r->connect_list = l;
  }
  if (r->connect_list != NULL &&
      bg__cu.easy_setopt(e, CURLOPT_CONNECT_TO, r->connect_list) != CURLE_OK)
    return BG_ENOMEM;
  return 0;
}

/* A copy of an HTTP request's opts (not the mail fields) in one block, or NULL. */
static bg_fetch_opts *opts_copy(const bg_fetch_opts *o) {
  const char *strs[] = {o->url, o->method, o->client_cert, o->client_key, o->ca_file};
  size_t nh = 0, size = sizeof *o + o->body_len + 1;
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    size += strs[i] ? strlen(strs[i]) + 1 : 0;
  for (; o->headers != NULL && o->headers[nh] != NULL; nh++)
    size += strlen(o->headers[nh]) + 1;
  size += (nh + 1) * sizeof(char *);
  bg_fetch_opts *c = malloc(size);
  if (c == NULL) return NULL;
  *c = *o;
  char **hdrs = (char **)(c + 1);
  char *p = (char *)(hdrs + nh + 1);
  const char **fields[] = {&c->url, &c->method, &c->client_cert, &c->client_key, &c->ca_file};
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
    if (*fields[i] == NULL) continue;
    size_t n = strlen(*fields[i]) + 1;
    *fields[i] = memcpy(p, *fields[i], n);
    p += n;
  }
  for (size_t i = 0; i < nh; i++) {
    size_t n = strlen(o->headers[i]) + 1;
    hdrs[i] = memcpy(p, o->headers[i], n);
    p += n;
  }
  hdrs[nh] = NULL;
  c->headers = o->headers != NULL ? (const char *const *)hdrs : NULL;
  if (o->body != NULL) {
    memcpy(p, o->body, o->body_len);
    p[o->body_len] = '\0';
    c->body = p;
  }
  c->mail_from = NULL;
  c->mail_rcpt = NULL;
  c->connect_to = NULL; /* never copied: a request with connect_to never starts in h1 */
  return c;
}

/* Hands r, whose h1 answer was a redirect, to curl: the same request from the start, with the
 * time it has left. Returns 0, or an error for r's callback. */
static int curl_takeover(bg_fetch *r) {
  bg_fetcher *f = r->f;
  bg_fetch_opts *o = r->again;
  uint64_t limit = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  uint64_t spent = (uv_hrtime() - r->start_ns) / 1000000;
  if (spent >= limit) return BG_ETIMEDOUT;
  o->timeout_ms = limit - spent;
  int rc = fetcher_ready(f);
  if (rc != 0) return rc;
  r->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
  r->easy = f->nidle > 0 ? f->idle[--f->nidle] : bg__cu.easy_init();
  if (r->easy == NULL) return BG_ENOMEM;
  if ((rc = setup_easy(r, o)) != 0) return rc;
  if (bg__cu.multi_add_handle(f->multi, r->easy) != CURLM_OK) return BG_ENOMEM;
  return 0;
}

static int is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* h1's completion callback: the request is already out of h1's hands. A redirect to follow
 * goes on in curl (r stays in the fetcher's list, now with an easy handle). */
static void h1_done(void *ud, const bg_fetch_result *res) {
  bg_fetch *r = ud;
  r->h1 = NULL;
  bg_fetch_result failed;
  if (r->again != NULL && res->err == 0 && is_redirect(res->status)) {
    int rc = curl_takeover(r);
    if (rc == 0) return;
    memset(&failed, 0, sizeof failed);
    failed.err = rc;
    failed.errmsg = bg_strerror(rc);
    failed.body = failed.headers = "";
    failed.total_time = (double)(uv_hrtime() - r->start_ns) / 1e9;
    res = &failed;
  }
  bg__fetch_req_unlink(r->f, r);
  r->in_cb = 1;
  r->cb(r->ud, res);
  bg__fetch_req_free(r);
}

/* Returns 0, BG_ENOMEM, or BG_H1_DECLINED for a request h1 leaves to curl. */
static int h1_start(bg_fetcher *f, const bg_fetch_opts *o, bg_fetch_cb cb, void *ud,
                    bg_fetch **out) {
  bg_fetch *r = calloc(1, sizeof *r);
  if (r == NULL) return BG_ENOMEM;
  r->f = f;
  r->cb = cb;
  r->ud = ud;
  r->start_ns = uv_hrtime();
  if (o->follow_redirects && (r->again = opts_copy(o)) == NULL) {
    free(r);
    return BG_ENOMEM;
  }
  int rc = bg_h1_start(f->h1, o, o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS,
                       o->max_body ? o->max_body : DEFAULT_MAX_BODY, h1_done, r, &r->h1);
  if (rc != 0) {
    free(r->again);
    free(r);
    return rc;
  }
  req_link(f, r);
  if (out != NULL) *out = r;
  return 0;
}

/* Whether the built-in client may take the request: plain http://, nothing only curl does,
 * and redirects to follow only for a GET or HEAD without a body (curl then asks again from the
 * start, which a request with a body must not be sent twice for). */
static int h1_may(const bg_fetcher *f, const bg_fetch_opts *o) {
  if (f->h1 == NULL || o->connect_only || o->timings || o->cert_info || o->connect_to != NULL ||
      strncasecmp(o->url, "http://", 7) != 0)
    return 0;
  if (!o->follow_redirects) return 1;
  const char *m = o->method ? o->method : o->body ? "POST" : "GET";
  return o->body == NULL && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0);
}

int bg_fetch_start(bg_fetcher *f, const bg_fetch_opts *opts, bg_fetch_cb cb, void *ud,
                   bg_fetch **out) {
  if (out != NULL) *out = NULL;
  if (f == NULL || f->closing || opts == NULL || opts->url == NULL || cb == NULL) return BG_EINVAL;
  int mail = bg__mail_is_url(opts->url);
  if (mail) {
    if (!bg__mail_valid(opts)) return BG_EINVAL;
  } else if (strncasecmp(opts->url, "http://", 7) != 0 &&
             strncasecmp(opts->url, "https://", 8) != 0) {
    return BG_EINVAL;
  }
  if (!mail && opts->method != NULL && opts->method[0] == '\0') return BG_EINVAL;
  if (!mail && h1_may(f, opts)) {
    int rc = h1_start(f, opts, cb, ud, out);
    if (rc != BG_H1_DECLINED) return rc;
  }
  /* a mail needs no multi handle, only curl loaded and initialised before any worker uses it */
  int ready = mail ? curl_ready() : fetcher_ready(f);
  if (ready != 0) return ready;
  bg_fetch *r = calloc(1, sizeof *r);
  if (r == NULL) return BG_ENOMEM;
  r->f = f;
  r->cb = cb;
  r->ud = ud;
  r->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
  int rc = 0;
  if (mail) {
    for (int i = 0; i < MAIL_SOCKS; i++)
      r->socks[i] = CURL_SOCKET_BAD;
    atomic_init(&r->canceled, 0);
    if ((rc = uv_mutex_init(&r->lock)) != 0) goto err;
    r->mail = 1;
  }
  r->easy = !mail && f->nidle > 0 ? f->idle[--f->nidle] : bg__cu.easy_init();
  rc = r->easy == NULL ? BG_ENOMEM : mail ? bg__mail_setup(r, opts) : setup_easy(r, opts);
  if (rc != 0) goto err;
  r->start_ns = uv_hrtime();
  if (mail) {
    /* the callback comes from bg__mail_after, on the loop: never from in here */
    r->work.data = r;
    if ((rc = uv_queue_work(f->loop, &r->work, bg__mail_work, bg__mail_after)) != 0) goto err;
    f->nwork++;
    req_link(f, r);
    if (out != NULL) *out = r;
    return 0;
  }
  /* add_handle only arms the timer (on_timer_set); nothing completes before the loop runs */
  if (bg__cu.multi_add_handle(f->multi, r->easy) != CURLM_OK) {
    rc = BG_ENOMEM;
    goto err;
  }
  req_link(f, r);
  if (out != NULL) *out = r;
  return 0;
err:
  bg__fetch_req_free(r);
  return rc;
}

void bg_fetch_cancel(bg_fetch *req) {
  /* in_cb: the request already completed and is being reported; it is freed after. A mail
   * is freed by bg__mail_after, as soon as its worker notices. */
  if (req == NULL || req->in_cb) return;
  req_abort(req->f, req);
}

int bg_fetcher_active(const bg_fetcher *f) {
  return f ? f->nreqs : 0;
}
