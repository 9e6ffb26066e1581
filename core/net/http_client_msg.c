/* http_client_msg.c: the HTTP/1.1 message of an h1 request (see http_client.c for the rest):
 * the URL parsed for what h1 takes (anything else goes to curl), the request head written as
 * curl would write it, and the response's header block and body gathered from llhttp's
 * callbacks the way curl's header and write callbacks deliver them. */
#include "net/http_client_int.h"

#include "base/bg.h"

#include <string.h>
#include <strings.h>

/* ---- the request head ---- */

/* One pass over the caller's headers. A header named with ':' or ';' after the name is
 * present (curl's checkheaders): we add none of our own then. An Expect or Transfer-Encoding
 * with a value is curl's business (H_CURL). *host: the first Host header. */
int bg__h1_scan_headers(const char *const *hs, const char **host) {
  static const struct {
    const char *name;
    size_t len;
    int bit;
  } known[] = {{"Host", 4, H_HOST},
               {"User-Agent", 10, H_UA},
               {"Accept", 6, H_ACCEPT},
               {"Content-Length", 14, H_CLEN},
               {"Content-Type", 12, H_CTYPE},
               {"Expect", 6, H_CURL},
               {"Transfer-Encoding", 17, H_CURL}};
  int flags = 0;
  for (; hs != NULL && *hs != NULL; hs++) {
    const char *h = *hs;
    size_t n = strcspn(h, ":;");
    for (size_t i = 0; h[n] != '\0' && i < sizeof known / sizeof known[0]; i++) {
      if (known[i].len != n || strncasecmp(h, known[i].name, n) != 0) continue;
      if (known[i].bit != H_CURL || (h[n] == ':' && h[n + 1 + strspn(h + n + 1, " \t")] != '\0'))
        flags |= known[i].bit;
      if (known[i].bit == H_HOST && *host == NULL) *host = h;
    }
  }
  return flags;
}

/* Parses what h1 handles; anything else (userinfo, odd hosts or paths) is left to curl. */
int bg__h1_parse_url(const char *s, rq *u) {
  if (strncasecmp(s, "http://", 7) != 0) return -1;
  s += 7;
  size_t alen = strcspn(s, "/?#");
  const char *end = s + alen, *hend;
  if (memchr(s, '@', alen) != NULL) return -1;
  if (*s == '[') {
    const char *rb = memchr(s, ']', alen);
    if (rb == NULL) return -1;
    u->host = s + 1;
    u->host_len = (size_t)(rb - s - 1);
    u->v6 = 1;
    hend = rb + 1; /* the address is checked by uv_ip6_addr: zone ids and the like go to curl */
  } else {
    hend = memchr(s, ':', alen);
    if (hend == NULL) hend = end;
    u->host = s;
    u->host_len = (size_t)(hend - s);
    u->v6 = 0;
    for (const char *q = s; q < hend; q++)
      if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
            *q == '-' || *q == '.' || *q == '_'))
        return -1;
  }
  if (u->host_len == 0 || u->host_len > 253) return -1;
  u->port = 80;
  if (hend < end) {
    if (*hend != ':' || hend + 1 == end) return -1;
    unsigned v = 0;
    for (const char *q = hend + 1; q < end; q++)
      if (*q < '0' || *q > '9' || (v = v * 10 + (unsigned)(*q - '0')) > 65535) return -1;
    if (v == 0) return -1;
    u->port = v;
  }
  u->path = end;
  u->path_len = strcspn(end, "#");
  for (size_t i = 0; i < u->path_len; i++)
    if ((unsigned char)end[i] <= 0x20 || (unsigned char)end[i] >= 0x7f) return -1;
  return 0;
}

static void w_put(wr *w, const char *s, size_t n) {
  if (w->p != NULL) memcpy(w->p + w->n, s, n);
  w->n += n;
}

#define W_LIT(w, s) w_put(w, s, sizeof s - 1)

/* The request head, in curl's order and with curl's defaults (Accept; the form Content-Type
 * for a body), but never "Expect: 100-continue", and Content-Length: 0 for a POST, PUT or
 * PATCH without a body, which some servers insist on. Of the caller's headers, "Name:" with
 * no value only suppresses ours and "Name;" is sent empty, as curl does. */
void bg__h1_write_head(wr *w, const bg_fetch_opts *o, const rq *q) {
  w_put(w, q->method, strlen(q->method));
  W_LIT(w, " ");
  if (q->path_len == 0 || q->path[0] != '/') W_LIT(w, "/");
  w_put(w, q->path, q->path_len);
  W_LIT(w, " HTTP/1.1\r\n");
  if (!(q->flags & H_HOST)) {
    W_LIT(w, "Host: ");
    w_put(w, q->hostport, q->hp_len);
    W_LIT(w, "\r\n");
  } else if (strcmp(q->host_hdr, "Host:") != 0) { /* the caller's goes here, as in curl */
    W_LIT(w, "Host:");
    w_put(w, q->host_hdr + 5, strlen(q->host_hdr + 5));
    W_LIT(w, "\r\n");
  }
  if (!(q->flags & H_UA)) W_LIT(w, "User-Agent: " BG_H1_USER_AGENT "\r\n");
  if (!(q->flags & H_ACCEPT)) W_LIT(w, "Accept: */*\r\n");
  for (const char *const *hs = o->headers; hs != NULL && *hs != NULL; hs++) {
    const char *h = *hs, *sep = strchr(h, ':');
    if ((q->flags & H_HOST) && strncasecmp(h, "Host", 4) == 0 && (h[4] == ':' || h[4] == ';'))
      continue;
    if (sep != NULL) {
      if (sep[1 + strspn(sep + 1, " \t")] == '\0') continue;
      w_put(w, h, strlen(h));
    } else {
      if ((sep = strchr(h, ';')) == NULL || sep[1 + strspn(sep + 1, " \t")] != '\0') continue;
      w_put(w, h, (size_t)(sep - h));
      W_LIT(w, ":");
    }
    W_LIT(w, "\r\n");
  }
  if (q->clen != NULL && !(q->flags & H_CLEN)) {
    W_LIT(w, "Content-Length: ");
    w_put(w, q->clen, q->clen_len);
    W_LIT(w, "\r\n");
  }
  if (o->body != NULL && !(q->flags & H_CTYPE))
    W_LIT(w, "Content-Type: application/x-www-form-urlencoded\r\n");
  W_LIT(w, "\r\n");
}

/* ---- the response: the header block as curl's header callback delivers it ---- */

static int put(bg_h1_req *r, const char *s, size_t n) {
  if (bg_buf_append(&r->hdrs, s, n) == 0) return 0;
  r->err = BG_ENOMEM;
  return -1;
}

static int line_start(bg_h1_req *r, llhttp_t *p, int space) {
  char s[32] = "HTTP/";
  size_t n = 5;
  n += bg__h1_fmt_u(s + n, p->http_major);
  s[n++] = '.';
  n += bg__h1_fmt_u(s + n, p->http_minor);
  s[n++] = ' ';
  n += bg__h1_fmt_u(s + n, (uint64_t)p->status_code);
  if (space) s[n++] = ' ';
  return put(r, s, n);
}

static int line_end(bg_h1_req *r, llhttp_t *p) {
  if (r->hstate >= 2) return 0;
  if (r->hstate == 0 && line_start(r, p, 0) != 0) return -1;
  r->hstate = 2;
  return put(r, "\r\n", 2);
}

static int on_message_begin(llhttp_t *p) {
  bg_h1_req *r = p->data;
  bg_buf_reset(&r->hdrs); /* a final response after 1xx ones replaces them */
  r->hstate = 0;
  return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n) {
  bg_h1_req *r = p->data;
  if (r->hstate == 0) {
    if (line_start(r, p, 1) != 0) return -1;
    r->hstate = 1;
  }
  return put(r, at, n);
}

static int on_status_complete(llhttp_t *p) {
  return line_end(p->data, p);
}

/* Header bytes, also on_header_value; trailers of a chunked body (hstate 3) are dropped. */
static int on_header(llhttp_t *p, const char *at, size_t n) {
  bg_h1_req *r = p->data;
  return r->hstate == 3 ? 0 : put(r, at, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  return line_end(p->data, p) != 0 ? -1 : on_header(p, at, n);
}

static int on_header_field_complete(llhttp_t *p) {
  return on_header(p, ": ", 2);
}

static int on_header_value_complete(llhttp_t *p) {
  return on_header(p, "\r\n", 2);
}

static int on_headers_complete(llhttp_t *p) {
  bg_h1_req *r = p->data;
  if (line_end(r, p) != 0 || put(r, "\r\n", 2) != 0) return -1;
  r->hstate = 3;
  if (p->status_code < 200) return 0; /* interim: llhttp knows it has no body */
  r->status = p->status_code;
  if (r->head) return 1;
  if (p->flags & F_CONTENT_LENGTH) {
    if (p->content_length > r->max_body) { /* fail early, as curl's CURLOPT_MAXFILESIZE */
      r->err = BG_ELIMIT;
      return -1;
    }
    if (bg_buf_reserve(&r->body, (size_t)p->content_length) != 0) {
      r->err = BG_ENOMEM;
      return -1;
    }
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  bg_h1_req *r = p->data;
  if (n > r->max_body - r->body.len) {
    r->err = BG_ELIMIT;
    return -1;
  }
  if (bg_buf_append(&r->body, at, n) == 0) return 0;
  r->err = BG_ENOMEM;
  return -1;
}

static int on_message_complete(llhttp_t *p) {
  bg_h1_req *r = p->data;
  if (p->status_code < 200) return 0; /* 100 Continue and friends: the real one follows */
  r->done = 1;
  return HPE_PAUSED; /* stop here: what follows would belong to no request */
}

void bg__h1_settings_init(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_message_begin = on_message_begin;
  s->on_status = on_status;
  s->on_status_complete = on_status_complete;
  s->on_header_field = on_header_field;
  s->on_header_field_complete = on_header_field_complete;
  s->on_header_value = on_header;
  s->on_header_value_complete = on_header_value_complete;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_message_complete = on_message_complete;
}
