/* notify_sink: the receiving end of bench/notify_bench.sh. A single-threaded epoll HTTP/1.1
 * server on 127.0.0.1 (port 0: the kernel picks; the port is printed on stdout) that answers
 * every request "200 ok" on a keep-alive connection and appends one line per request to FILE:
 *
 *   <receive time, unix seconds with ns>\t<Idempotency-Key header>\t<"starts_at" of the JSON body>
 *
 * The receive time is taken right after the read that completed the request. Lines are
 * buffered and flushed every 100 ms and on SIGTERM/SIGINT (then the process exits 0 and prints
 * "requests=N" on stderr). Only what the benchmark needs of HTTP: a request line, headers up to
 * CRLFCRLF, a Content-Length body (no chunked bodies: such a request is answered 411 and
 * counted), "Expect: 100-continue" answered at once, pipelined requests in order.
 *
 *   notify_sink FILE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (16 * 1024 * 1024)

static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char NOLEN[] =
    "HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

typedef struct conn {
  int fd;
  char *in;
  size_t in_len, in_cap;
  char *out;
  size_t out_len, out_off, out_cap;
  int continued; /* 100 Continue sent for the request at the head of `in` */
  int closing;   /* close once `out` is written */
  int want_out;  /* EPOLLOUT is armed */
} conn;

static FILE *log_file;
static unsigned long long n_requests, n_rejected;

static double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void out_append(conn *c, const char *p, size_t n) {
  if (c->out_len + n > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + n)
      cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out) die("realloc");
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
}

/* Writes what is pending; 0 when all of it went, 1 when the socket is full, -1 on error. */
static int out_flush(conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      return -1;
    }
    c->out_off += (size_t)w;
  }
  c->out_off = c->out_len = 0;
  return 0;
}

/* The value of header `name` in head[0..len), trimmed; NULL when absent. */
static const char *header(const char *head, size_t len, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  const char *p = memchr(head, '\n', len); /* skip the request line */
  const char *end = head + len;
  while (p && p + 1 < end) {
    const char *line = p + 1;
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol) eol = end;
    if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
      const char *v = line + nl + 1, *e = eol;
      while (v < e && (*v == ' ' || *v == '\t'))
        v++;
      while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
      *vlen = (size_t)(e - v);
      return v;
    }
    p = eol < end ? eol : NULL;
  }
  return NULL;
}

/* The string value of the first "starts_at" key of the body, or "-". */
static void starts_at(const char *body, size_t len, const char **v, size_t *vlen) {
  static const char key[] = "\"starts_at\"";
  const char *p = memmem(body, len, key, sizeof key - 1), *end = body + len;
  *v = "-";
  *vlen = 1;
  if (!p) return;
  p += sizeof key - 1;
  while (p < end && isspace((unsigned char)*p))
    p++;
  if (p >= end || *p != ':') return;
  p++;
  while (p < end && isspace((unsigned char)*p))
    p++;
  if (p >= end || *p != '"') return;
  const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
  if (!q) return;
  *v = p + 1;
  *vlen = (size_t)(q - p - 1);
}

/* Handles every complete request at the head of c->in. Returns -1 to drop the connection. */
static int serve(conn *c, const struct timespec *at) {
  size_t off = 0;
  for (;;) {
    char *head = c->in + off;
    size_t avail = c->in_len - off;
    char *eoh = memmem(head, avail, "\r\n\r\n", 4);
    if (!eoh) {
      if (avail > MAX_HEAD) return -1;
      break;
    }
    size_t hlen = (size_t)(eoh - head) + 4, vl = 0;
    const char *v = header(head, hlen, "Content-Length", &vl);
    size_t te_len = 0;
    if (!v && header(head, hlen, "Transfer-Encoding", &te_len)) {
      n_rejected++;
      out_append(c, NOLEN, sizeof NOLEN - 1);
      c->closing = 1;
      off = c->in_len;
      break;
    }
    size_t blen = v ? strtoull(v, NULL, 10) : 0;
    if (blen > MAX_BODY) return -1;
    if (avail < hlen + blen) {
      size_t el = 0;
      const char *ex = header(head, hlen, "Expect", &el);
      if (ex && !c->continued && el == 12 && strncasecmp(ex, "100-continue", 12) == 0) {
        out_append(c, CONTINUE, sizeof CONTINUE - 1);
        c->continued = 1;
      }
      break;
    }
    size_t kl = 0, sl = 0;
    const char *key = header(head, hlen, "Idempotency-Key", &kl), *sa;
    if (!key) key = "-", kl = 1;
    starts_at(head + hlen, blen, &sa, &sl);
    fprintf(log_file, "%lld.%09ld\t%.*s\t%.*s\n", (long long)at->tv_sec, at->tv_nsec, (int)kl, key,
            (int)sl, sa);
    n_requests++;
    out_append(c, OK, sizeof OK - 1);
    c->continued = 0;
    off += hlen + blen;
  }
  if (off > 0) {
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
  }
  return 0;
}

static void conn_close(int ep, conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->in);
  free(c->out);
  free(c);
}

/* Reads what is there and serves it. Returns -1 when the peer is gone (after serving what it
 * sent) or on error. */
static int on_readable(conn *c) {
  struct timespec at = {0, 0};
  int got = 0, eof = 0;
  for (;;) {
    if (c->in_cap - c->in_len < 16384) {
      size_t cap = c->in_cap ? c->in_cap * 2 : 65536;
      c->in = realloc(c->in, cap);
      if (!c->in) die("realloc");
      c->in_cap = cap;
    }
    size_t room = c->in_cap - c->in_len;
    ssize_t r = read(c->fd, c->in + c->in_len, room);
    if (r > 0) {
      clock_gettime(CLOCK_REALTIME, &at);
      c->in_len += (size_t)r;
      got = 1;
      if ((size_t)r < room) break; /* a short read: the socket is drained */
      continue;
    }
    if (r == 0) {
      eof = 1;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return -1;
  }
  if (got && serve(c, &at) < 0) return -1;
  if (eof) {
    out_flush(c);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: notify_sink FILE\n");
    return 2;
  }
  log_file = fopen(argv[1], "a");
  if (!log_file) die(argv[1]);
  setvbuf(log_file, NULL, _IOFBF, 1 << 20);

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(ls, 1024) < 0) die("listen");
  socklen_t sl = sizeof sa;
  getsockname(ls, (struct sockaddr *)&sa, &sl);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN};
  /* the listener and the signalfd are told apart from connections by these markers */
  static int listen_marker, signal_marker;
  ev.data.ptr = &listen_marker;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) die("epoll_ctl");
  ev.data.ptr = &signal_marker;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl");

  printf("%d\n", ntohs(sa.sin_port));
  fflush(stdout);

  struct epoll_event evs[64];
  double last_flush = now_mono();
  for (;;) {
    int n = epoll_wait(ep, evs, 64, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &signal_marker) {
        fflush(log_file);
        fprintf(stderr, "notify_sink: requests=%llu rejected=%llu\n", n_requests, n_rejected);
        return 0;
      }
      if (p == &listen_marker) {
        for (;;) {
          int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *c = calloc(1, sizeof *c);
          if (!c) die("calloc");
          c->fd = fd;
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) die("epoll_ctl");
        }
        continue;
      }
      conn *c = p;
      int dead = 0;
      if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) dead = on_readable(c) < 0;
      if (!dead) {
        int w = out_flush(c);
        if (w < 0 || (w == 0 && c->closing))
          dead = 1;
        else if (w != c->want_out) {
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | (w ? EPOLLOUT : 0),
                                    .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
          c->want_out = w;
        }
      }
      if (dead) conn_close(ep, c);
    }
    double t = now_mono();
    if (t - last_flush >= 0.1) {
      fflush(log_file);
      last_flush = t;
    }
  }
}
