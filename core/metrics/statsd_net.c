/* statsd_net: the sockets in front of the statsd sink. A libuv UDP handle reads with
 * recvmmsg into one buffer (datagrams are parsed in place), and a TCP listener's streams share
 * one read buffer and keep their own partial line (bg__statsd_feed). */
#define _GNU_SOURCE
#include "metrics/statsd.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#ifdef __linux__
#include <linux/sock_diag.h>
#endif

#define DGRAM_MAX 65536 /* libuv's recvmmsg chunk: one datagram each */
#define MMSG_CHUNKS 20  /* libuv 1.44 reads at most this many datagrams per call */
#define TCP_READ 65536

typedef struct conn {
  uv_tcp_t h;
  bg_statsd *sd;
  bg__statsd_stream st;
  struct conn *prev, *next;
} conn;

struct bg_statsd {
  uv_loop_t *loop;
  bg_statsd_sink *sink;
  uv_udp_t udp;
  uv_tcp_t tcp;
  int udp_on, tcp_on;
  conn *conns;
  uint64_t nconns;
  char *ubuf, *tbuf;
  size_t ubuf_len;
  size_t max_line;
  int max_clients;
  int open_handles;
  int closing;
  void (*done)(void *);
  void *done_ud;
};

/* "host:port", "[v6]:port" or "localhost:port" -> address. */
static int parse_addr(const char *s, struct sockaddr_storage *ss) {
  char host[64];
  const char *colon;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (rb == NULL || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host) return BG_EINVAL;
    memcpy(host, s + 1, (size_t)(rb - s - 1));
    host[rb - s - 1] = '\0';
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof host) return BG_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) return BG_EINVAL;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (host[0] == '\0') strcpy(host, "0.0.0.0");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return BG_EINVAL;
}

static int is_off(const char *a) {
  return a == NULL || a[0] == '\0' || strcmp(a, "off") == 0;
}

static void maybe_free(bg_statsd *sd) {
  if (!sd->closing || sd->open_handles > 0) return;
  void (*done)(void *) = sd->done;
  void *ud = sd->done_ud;
  bg_statsd_sink_free(sd->sink);
  free(sd->ubuf);
  free(sd->tbuf);
  free(sd);
  if (done) done(ud);
}

static void handle_closed(uv_handle_t *h) {
  bg_statsd *sd = h->data;
  sd->open_handles--;
  maybe_free(sd);
}

static void udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  bg_statsd *sd = h->data;
  (void)hint;
  *buf = uv_buf_init(sd->ubuf, (unsigned)sd->ubuf_len);
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags) {
  bg_statsd *sd = h->data;
  if (nread < 0) {
    bg__statsd_dropped(sd->sink, 1);
    return;
  }
  if (addr == NULL) return;     /* nothing more to read, or the end of a recvmmsg batch */
  if (flags & UV_UDP_PARTIAL) { /* truncated: its last line is cut, so drop it whole */
    bg__statsd_dropped(sd->sink, 1);
    return;
  }
  bg_statsd_ingest(sd->sink, buf->base, (size_t)nread);
}

static void tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  (void)hint;
  /* shared: libuv calls read_cb before it allocates again */
  *buf = uv_buf_init(c->sd->tbuf, TCP_READ);
}

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  bg_statsd *sd = c->sd;
  if (c->prev)
    c->prev->next = c->next;
  else
    sd->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  sd->nconns--;
  bg_buf_free(&c->st.partial);
  free(c);
  sd->open_handles--;
  maybe_free(sd);
}

static void conn_close(conn *c) {
  if (uv_is_closing((uv_handle_t *)&c->h)) return;
  uv_close((uv_handle_t *)&c->h, conn_closed);
}

static void tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  bg_statsd *sd = c->sd;
  if (nread > 0) {
    if (bg__statsd_feed(sd->sink, &c->st, buf->base, (size_t)nread, sd->max_line, 0) != 0) {
      bg__statsd_dropped(sd->sink, 1);
      conn_close(c);
    }
  } else if (nread < 0) {
    if (nread == UV_EOF)
      bg__statsd_feed(sd->sink, &c->st, "", 0, sd->max_line, 1);
    else
      bg__statsd_dropped(sd->sink, 1);
    conn_close(c);
  }
}

static void tcp_accept(uv_stream_t *srv, int status) {
  bg_statsd *sd = srv->data;
  if (status < 0 || sd->closing) return;
  conn *c = calloc(1, sizeof *c);
  if (c == NULL || uv_tcp_init(sd->loop, &c->h) != 0) {
    free(c);
    bg__statsd_dropped(sd->sink, 1);
    return;
  }
  c->h.data = c;
  c->sd = sd;
  c->next = sd->conns;
  if (sd->conns) sd->conns->prev = c;
  sd->conns = c;
  sd->nconns++;
  sd->open_handles++;
  if (uv_accept(srv, (uv_stream_t *)&c->h) != 0 || sd->nconns > (uint64_t)sd->max_clients ||
      uv_read_start((uv_stream_t *)&c->h, tcp_alloc, tcp_read) != 0) {
    bg__statsd_dropped(sd->sink, 1);
    conn_close(c);
  }
}

static void set_rcvbuf(bg_statsd *sd, int want) {
  uv_os_fd_t fd;
  if (want < 0 || uv_fileno((uv_handle_t *)&sd->udp, &fd) != 0) return;
#ifdef SO_RCVBUFFORCE
  /* past net.core.rmem_max when we may (CAP_NET_ADMIN), else as far as it allows */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) == 0) return;
#endif
  int v = want;
  uv_recv_buffer_size((uv_handle_t *)&sd->udp, &v);
}

static int start_udp(bg_statsd *sd, const char *addr, int rcvbuf) {
  struct sockaddr_storage ss;
  int rc = parse_addr(addr, &ss);
  if (rc != 0) return rc;
  sd->ubuf_len = (size_t)DGRAM_MAX * MMSG_CHUNKS;
  sd->ubuf = malloc(sd->ubuf_len);
  if (sd->ubuf == NULL) return BG_ENOMEM;
  rc = uv_udp_init_ex(sd->loop, &sd->udp, AF_UNSPEC | UV_UDP_RECVMMSG);
  if (rc != 0) return rc;
  sd->udp.data = sd;
  sd->udp_on = 1;
  sd->open_handles++;
  if ((rc = uv_udp_bind(&sd->udp, (struct sockaddr *)&ss, 0)) != 0) return rc;
  set_rcvbuf(sd, rcvbuf);
  return uv_udp_recv_start(&sd->udp, udp_alloc, udp_recv);
}

static int start_tcp(bg_statsd *sd, const char *addr) {
  struct sockaddr_storage ss;
  int rc = parse_addr(addr, &ss);
  if (rc != 0) return rc;
  sd->tbuf = malloc(TCP_READ);
  if (sd->tbuf == NULL) return BG_ENOMEM;
  if ((rc = uv_tcp_init(sd->loop, &sd->tcp)) != 0) return rc;
  sd->tcp.data = sd;
  sd->tcp_on = 1;
  sd->open_handles++;
  if ((rc = uv_tcp_bind(&sd->tcp, (struct sockaddr *)&ss, 0)) != 0) return rc;
  return uv_listen((uv_stream_t *)&sd->tcp, 511, tcp_accept);
}

static int start_once(uv_loop_t *loop, bg_registry *reg, const bg_statsd_opts *o, bg_statsd **out) {
  bg_statsd_opts def;
  bg_statsd_opts_default(&def);
  if (o == NULL) o = &def;
  *out = NULL;
  int udp = !is_off(o->udp);
  int tcp = o->tcp ? !is_off(o->tcp) : udp;
  if (loop == NULL || reg == NULL || (!udp && !tcp)) return BG_EINVAL;
  bg_statsd *sd = calloc(1, sizeof *sd);
  if (sd == NULL) return BG_ENOMEM;
  sd->loop = loop;
  sd->max_line = o->max_line ? o->max_line : def.max_line;
  sd->max_clients = o->max_clients > 0 ? o->max_clients : def.max_clients;
  int rc = bg_statsd_sink_new(reg, o, &sd->sink);
  if (rc != 0) {
    free(sd);
    return rc;
  }
  if (udp) rc = start_udp(sd, o->udp, o->rcvbuf ? o->rcvbuf : def.rcvbuf);
  if (rc == 0 && tcp) {
    char a[96];
    const char *ta = o->tcp;
    if (ta == NULL) { /* the UDP host with the port UDP got */
      const char *colon = strrchr(o->udp, ':');
      snprintf(a, sizeof a, "%.*s:%d", (int)(colon - o->udp), o->udp, bg_statsd_port(sd));
      ta = a;
    }
    rc = start_tcp(sd, ta);
  }
  if (rc != 0) {
    bg_statsd_stop(sd, NULL, NULL); /* frees itself once the loop has closed the handles */
    return rc;
  }
  *out = sd;
  return 0;
}

int bg_statsd_start(uv_loop_t *loop, bg_registry *reg, const bg_statsd_opts *o, bg_statsd **out) {
  int rc = start_once(loop, reg, o, out);
  /* With UDP on port 0 and TCP following it, the port the kernel picked for UDP may be taken
   * for TCP: pick again a few times rather than fail. */
  size_t n = o && o->udp ? strlen(o->udp) : 0;
  int follows = o != NULL && o->tcp == NULL && n > 2 && strcmp(o->udp + n - 2, ":0") == 0;
  for (int i = 0; rc == UV_EADDRINUSE && follows && i < 8; i++)
    rc = start_once(loop, reg, o, out);
  return rc;
}

void bg_statsd_stop(bg_statsd *sd, void (*done)(void *ud), void *ud) {
  if (sd->closing) return;
  sd->closing = 1;
  sd->done = done;
  sd->done_ud = ud;
  int any = sd->open_handles > 0;
  if (sd->udp_on) uv_close((uv_handle_t *)&sd->udp, handle_closed);
  if (sd->tcp_on) uv_close((uv_handle_t *)&sd->tcp, handle_closed);
  for (conn *c = sd->conns; c; c = c->next)
    conn_close(c);
  if (!any) maybe_free(sd); /* nothing was ever opened (a failed start) */
}

static int sock_port(const uv_handle_t *h, int udp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int rc = udp ? uv_udp_getsockname((const uv_udp_t *)h, (struct sockaddr *)&ss, &len)
               : uv_tcp_getsockname((const uv_tcp_t *)h, (struct sockaddr *)&ss, &len);
  if (rc != 0) return rc;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int bg_statsd_port(const bg_statsd *sd) {
  return sd->udp_on ? sock_port((const uv_handle_t *)&sd->udp, 1) : BG_ENOENT;
}

int bg_statsd_tcp_port(const bg_statsd *sd) {
  return sd->tcp_on ? sock_port((const uv_handle_t *)&sd->tcp, 0) : BG_ENOENT;
}

bg_statsd_sink *bg_statsd_get_sink(bg_statsd *sd) {
  return sd->sink;
}

void bg_statsd_get_stats(const bg_statsd *sd, bg_statsd_stats *out) {
  bg_statsd_sink_stats(sd->sink, out);
  out->tcp_clients = sd->nconns;
  uv_os_fd_t fd;
  if (!sd->udp_on || uv_fileno((const uv_handle_t *)&sd->udp, &fd) != 0) return;
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0) out->rcvbuf = (uint64_t)v;
#if defined(SO_MEMINFO) && defined(__linux__)
  uint32_t mi[SK_MEMINFO_VARS];
  len = sizeof mi;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) == 0 && len > SK_MEMINFO_DROPS * 4)
    out->kernel_drops = mi[SK_MEMINFO_DROPS];
#endif
}
