/* statsd_send: a loopback StatsD load generator for bench/statsd_bench.sh. Builds a pool of
 * datagrams from a fixed mix of lines (counters, sampled counters, timers, gauges over
 * --keys names), then sends them with sendmmsg, flat out or paced to --rate lines/s, until
 * --lines lines are out. Prints one line: sent_lines=... sent_packets=... seconds=...
 * Build: gcc -O2 -o statsd_send bench/statsd_send.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL 1024
#define BATCH 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int make_line(char *out, size_t cap, uint64_t i, int keys, int tags) {
  int k = (int)((i * 2654435761u) % (uint64_t)keys);
  const char *t = tags ? "|#env:prod,host:web-1" : "";
  switch (i % 4) {
  case 0:
    return snprintf(out, cap, "bench.requests.%d:1|c%s", k, t);
  case 1:
    return snprintf(out, cap, "bench.sampled.%d:1|c|@0.5%s", k, t);
  case 2:
    return snprintf(out, cap, "bench.latency.%d:%d|ms%s", k, (int)(i % 1000), t);
  default:
    return snprintf(out, cap, "bench.queue.%d:%d|g%s", k, (int)(i % 500), t);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 8125, keys = 1000, tags = 0, size = 1400, c;
  double rate = 0;
  uint64_t want = 10000000;
  while ((c = getopt(argc, argv, "h:p:n:r:s:k:t")) != -1) {
    switch (c) {
    case 'h':
      host = optarg;
      break;
    case 'p':
      port = atoi(optarg);
      break;
    case 'n':
      want = strtoull(optarg, NULL, 10);
      break;
    case 'r':
      rate = atof(optarg);
      break;
    case 's':
      size = atoi(optarg);
      break; /* datagram payload bytes; 0: one line each */
    case 'k':
      keys = atoi(optarg);
      break;
    case 't':
      tags = 1;
      break;
    default:
      fprintf(stderr,
              "usage: %s [-h host] -p port [-n lines] [-r lines/s] [-s bytes|0] "
              "[-k keys] [-t]\n",
              argv[0]);
      return 2;
    }
  }
  if (keys < 1) keys = 1;
  static char pool[POOL][1500];
  static size_t plen[POOL];
  static int plines[POOL];
  uint64_t li = 0;
  for (int p = 0; p < POOL; p++) {
    char line[256];
    size_t len = 0;
    int n = 0;
    for (;;) {
      int l = make_line(line, sizeof line, li, keys, tags);
      if (n > 0 && (size == 0 || len + 1 + (size_t)l > (size_t)size)) break;
      if (n > 0) pool[p][len++] = '\n';
      memcpy(pool[p] + len, line, (size_t)l);
      len += (size_t)l;
      n++;
      li++;
    }
    plen[p] = len;
    plines[p] = n;
  }

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
      connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    return 1;
  }
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  memset(msgs, 0, sizeof msgs);
  uint64_t sent_lines = 0, sent_packets = 0, errors = 0;
  int p = 0;
  double t0 = now();
  while (sent_lines < want) {
    if (rate > 0) { /* pace: never ahead of the schedule by more than one batch */
      for (;;) {
        double due = (now() - t0) * rate;
        if ((double)sent_lines <= due) break;
        double ahead = ((double)sent_lines - due) / rate;
        if (ahead > 200e-6) usleep((useconds_t)(ahead * 1e6 / 2));
      }
    }
    int n = 0;
    uint64_t batch_lines = 0;
    while (n < BATCH && sent_lines + batch_lines < want) {
      iov[n].iov_base = pool[p];
      iov[n].iov_len = plen[p];
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      batch_lines += (uint64_t)plines[p];
      p = (p + 1) % POOL;
      n++;
    }
    int off = 0;
    while (off < n) {
      int r = sendmmsg(fd, msgs + off, (unsigned)(n - off), 0);
      if (r < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) {
          errors++;
          continue;
        }
        if (errno == ECONNREFUSED) { /* nobody listening yet or any more: count and go on */
          errors++;
          off++;
          continue;
        }
        perror("sendmmsg");
        return 1;
      }
      off += r;
    }
    sent_lines += batch_lines;
    sent_packets += (uint64_t)n;
  }
  double dt = now() - t0;
  printf("sent_lines=%llu sent_packets=%llu seconds=%.4f lines_per_packet=%.2f errors=%llu\n",
         (unsigned long long)sent_lines, (unsigned long long)sent_packets, dt,
         (double)sent_lines / (double)sent_packets, (unsigned long long)errors);
  close(fd);
  return 0;
}
