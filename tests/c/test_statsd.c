/* test_statsd: the sink line by line (every type, rates, packed values, tags, sets, bad lines
 * kept apart from good ones, registry rejections), the TCP framing, then the server end to
 * end on 127.0.0.1 port 0: the loop runs in the main thread and a pthread sends with plain
 * blocking sockets. Each test uses its own bg_registry_new(). */
#define _GNU_SOURCE
#include "metrics/metrics.h"
#include "metrics/statsd.h"
#include "test_support.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define ASSERT_EQ_DBL(a, b) ASSERT_NEAR(a, b)

static char err[256];

static bg_series *get(bg_registry *r, int type, const char *name, const char *const *kv, int n) {
  bg_series *s = bg_series_get(r, type, name, NULL, kv, n, NULL, 0, err, sizeof err);
  if (s == NULL) {
    fprintf(stderr, "bg_series_get(%s): %s\n", name, err);
    exit(1);
  }
  return s;
}
static double counter(bg_registry *r, const char *name) {
  return bg_series_value(get(r, BG_COUNTER, name, NULL, 0));
}
static double gauge(bg_registry *r, const char *name) {
  return bg_series_value(get(r, BG_GAUGE, name, NULL, 0));
}
static bg_series *hist(bg_registry *r, const char *name) {
  return get(r, BG_HISTOGRAM, name, NULL, 0);
}

typedef struct fixture {
  bg_registry *reg;
  bg_statsd_sink *sink;
} fixture;

static fixture setup(const bg_statsd_opts *o) {
  fixture f;
  f.reg = bg_registry_new();
  ASSERT(f.reg != NULL);
  ASSERT_EQ_INT(bg_statsd_sink_new(f.reg, o, &f.sink), 0);
  return f;
}
static void teardown(fixture *f) {
  bg_statsd_sink_free(f->sink);
  bg_registry_free(f->reg);
}
static int feed(fixture *f, const char *s) {
  return bg_statsd_ingest(f->sink, s, strlen(s));
}

static void test_counter(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "api.requests:1|c\napi.requests:2|c"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "api.requests"), 3);
  ASSERT_EQ_INT(feed(&f, "api.requests:0.5|c\n"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "api.requests"), 3.5);
  /* the exposition name is the same series */
  ASSERT_EQ_DBL(counter(f.reg, "api_requests_total"), 3.5);
  ASSERT_EQ_INT(feed(&f, "big:123456789012345678|c\nexp:1.5e3|c\n"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "big"), 123456789012345678.0);
  ASSERT_EQ_DBL(counter(f.reg, "exp"), 1500);
  teardown(&f);
}

static void test_sample_rate(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "r:1|c|@0.1\nr:2|c|@0.5"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "r"), 14);
  ASSERT_EQ_INT(feed(&f, "r:1|c|@0\nr:1|c|@1.5\nr:1|c|@-1\nr:1|c|@x\nr:1|c|@"), 5);
  ASSERT_EQ_DBL(counter(f.reg, "r"), 14);
  ASSERT_EQ_INT(feed(&f, "r:1|c|@1"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "r"), 15);
  /* timers observe once whatever the rate; gauges ignore it */
  ASSERT_EQ_INT(feed(&f, "t:100|ms|@0.25\ng:4|g|@0.5"), 0);
  ASSERT_EQ_INT(bg_series_count(hist(f.reg, "t_seconds")), 1);
  ASSERT_EQ_DBL(gauge(f.reg, "g"), 4);
  teardown(&f);
}

static void test_gauge(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "temp:5|g\ntemp:+3|g"), 0);
  ASSERT_EQ_DBL(gauge(f.reg, "temp"), 8);
  ASSERT_EQ_INT(feed(&f, "temp:-10|g"), 0);
  ASSERT_EQ_DBL(gauge(f.reg, "temp"), -2);
  ASSERT_EQ_INT(feed(&f, "temp:7.25|g"), 0);
  ASSERT_EQ_DBL(gauge(f.reg, "temp"), 7.25);
  ASSERT_EQ_INT(feed(&f, "temp:1:+1:+1|g"), 0); /* packed: in order */
  ASSERT_EQ_DBL(gauge(f.reg, "temp"), 3);
  teardown(&f);
}

static void test_timer_histogram_distribution(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "api.response_time:250|ms\napi.response_time:750|ms"), 0);
  bg_series *t = hist(f.reg, "api.response_time_seconds");
  ASSERT_EQ_INT(bg_series_count(t), 2);
  ASSERT_EQ_DBL(bg_series_value(t), 1.0);
  ASSERT_EQ_INT(feed(&f, "db.query_seconds:20|ms"), 0); /* already says seconds */
  ASSERT_EQ_DBL(bg_series_value(hist(f.reg, "db.query_seconds")), 0.02);
  ASSERT_EQ_INT(feed(&f, "size:3|h\nsize:4|h\nlatency:1:2:3|d"), 0);
  ASSERT_EQ_INT(bg_series_count(hist(f.reg, "size")), 2);
  ASSERT_EQ_DBL(bg_series_value(hist(f.reg, "size")), 7);
  ASSERT_EQ_INT(bg_series_count(hist(f.reg, "latency")), 3);
  ASSERT_EQ_DBL(bg_series_value(hist(f.reg, "latency")), 6);
  ASSERT_EQ_INT(feed(&f, "packed:10:20:30|ms"), 0);
  ASSERT_EQ_INT(bg_series_count(hist(f.reg, "packed_seconds")), 3);
  ASSERT_EQ_DBL(bg_series_value(hist(f.reg, "packed_seconds")), 0.06);
  teardown(&f);
}

static void test_packed_all_or_nothing(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "p:1:2:3|c"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "p"), 6);
  ASSERT_EQ_INT(feed(&f, "p:1:x:3|c\np:1::3|c\np:1:-2|c\np:1:|c"), 4);
  ASSERT_EQ_DBL(counter(f.reg, "p"), 6);
  ASSERT_EQ_INT(feed(&f, "p:1:2|c|@0.5"), 0);
  ASSERT_EQ_DBL(counter(f.reg, "p"), 12);
  teardown(&f);
}

static void test_tags(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#env:prod,region:eu\ntg:2|c|#region:eu,env:prod"), 0);
  const char *kv[] = {"env", "prod", "region", "eu"};
  ASSERT_EQ_DBL(bg_series_value(get(f.reg, BG_COUNTER, "tg", kv, 2)), 3);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#canary,dc.zone-id:a:b,"), 0);
  const char *kv2[] = {"canary", "true", "dc_zone_id", "a:b"};
  ASSERT_EQ_DBL(bg_series_value(get(f.reg, BG_COUNTER, "tg", kv2, 2)), 1);
  ASSERT_EQ_INT(feed(&f, "tg:5|g|#env:prod"), 1); /* type clash with the counter */
  ASSERT(strstr(bg_statsd_last_error(f.sink), "counter") != NULL);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#1bad:x"), 1);
  ASSERT(strstr(bg_statsd_last_error(f.sink), "label name") != NULL);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#a b:x"), 1);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#__x:y"), 1);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#a:1,a:2"), 1); /* duplicate label */
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#a:1|#b:2"), 1);
  ASSERT_EQ_INT(feed(&f, "tg:1|c|#t1,t2,t3,t4,t5,t6,t7,t8,t9,t10,t11,t12,t13,t14,t15,t16,t17"), 1);
  ASSERT(strstr(bg_statsd_last_error(f.sink), "tags") != NULL);
  /* DogStatsD extras and unknown fields are ignored */
  ASSERT_EQ_INT(feed(&f, "dd:1|c|#a:b|c:3f2a9|T1700000000|zfuture\ndd:1|c|@1|#a:b|"), 0);
  const char *kv3[] = {"a", "b"};
  ASSERT_EQ_DBL(bg_series_value(get(f.reg, BG_COUNTER, "dd", kv3, 1)), 2);
  teardown(&f);
}

static void test_sets(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "users:alice|s\nusers:bob|s\nusers:alice|s\nusers:carol:dave|s"), 0);
  ASSERT_EQ_DBL(gauge(f.reg, "users"), 4);
  ASSERT_EQ_INT(feed(&f, "users:x|s|#shard:1\nusers:y|s|#shard:1"), 0);
  const char *kv[] = {"shard", "1"};
  ASSERT_EQ_DBL(bg_series_value(get(f.reg, BG_GAUGE, "users", kv, 1)), 2);
  bg_statsd_flush_sets(f.sink);
  ASSERT_EQ_DBL(gauge(f.reg, "users"), 0);
  ASSERT_EQ_DBL(bg_series_value(get(f.reg, BG_GAUGE, "users", kv, 1)), 0);
  ASSERT_EQ_INT(feed(&f, "users:alice|s"), 0);
  ASSERT_EQ_DBL(gauge(f.reg, "users"), 1);
  /* exact up to 128 distinct values, repeats not counted */
  char line[64];
  for (int i = 0; i < 128; i++) {
    snprintf(line, sizeof line, "many:%d|s\nmany:%d|s", i, i / 2);
    feed(&f, line);
  }
  ASSERT_EQ_DBL(gauge(f.reg, "many"), 128);
  bg_statsd_stats st;
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT_EQ_INT(st.dropped, 0);
  ASSERT(st.set_bytes > 0);
  bg_statsd_flush_sets(f.sink); /* the memory goes back */
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT_EQ_INT(st.set_bytes, 0);
  for (int i = 0; i < 10; i++) {
    snprintf(line, sizeof line, "many:%d|s", i);
    feed(&f, line);
  }
  ASSERT_EQ_DBL(gauge(f.reg, "many"), 10);
  bg_statsd_sink_forget(f.sink); /* sets start over, series stay */
  feed(&f, "many:1|s");
  ASSERT_EQ_DBL(gauge(f.reg, "many"), 1);
  teardown(&f);
}

/* Past 128 values a set is a HyperLogLog: within 5 % (3 standard errors of 1.6 %) at every
 * size, a million included (sets used to stop counting at 100,000). */
static void test_set_estimate(void) {
  fixture f = setup(NULL);
  static const int checkpoints[] = {129, 200, 1000, 3000, 10000, 50000, 200000, 1000000};
  char line[64];
  int next = 0;
  for (int i = 1; i <= 1000000; i++) {
    snprintf(line, sizeof line, "big:user-%d|s", i);
    feed(&f, line);
    if (i == checkpoints[next]) {
      double g = gauge(f.reg, "big");
      if (fabs(g - i) > 0.05 * i) {
        fprintf(stderr, "set of %d distinct values estimated at %.0f\n", i, g);
        exit(1);
      }
      next++;
    }
  }
  ASSERT_EQ_INT(next, 8);
  feed(&f, "big:user-5|s"); /* seen: the estimate does not move */
  double g = gauge(f.reg, "big");
  feed(&f, "big:user-77|s");
  ASSERT_EQ_DBL(gauge(f.reg, "big"), g);
  bg_statsd_stats st;
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT(st.set_bytes <= 5000); /* one sketch */
  ASSERT_EQ_INT(st.dropped, 0);
  teardown(&f);
}

/* The set bomb of issue 14: many set names, 1,000 values a line. Each set holds at most one
 * sketch and all of them at most max_set_bytes; the heap grows by that and the series, not
 * by the values (it grew by 16 bytes a value: 2 GB). */
static void test_set_bomb(void) {
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.max_set_bytes = 1 << 20;
  fixture f = setup(&o);
#ifdef __GLIBC__
  size_t heap0 = mallinfo2().uordblks;
#endif
  static char line[16384];
  for (int name = 0; name < 2000; name++) {
    for (int rep = 0; rep < 3; rep++) {
      int len = snprintf(line, sizeof line, "bomb%d", name);
      for (int v = 0; v < 1000; v++)
        len += snprintf(line + len, sizeof line - (size_t)len, ":%d", rep * 1000 + v);
      snprintf(line + len, sizeof line - (size_t)len, "|s");
      ASSERT_EQ_INT(feed(&f, line), 0);
    }
  }
  bg_statsd_stats st;
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT(st.set_bytes <= o.max_set_bytes);
  ASSERT(st.dropped > 0); /* the cap was reached, and said so */
  /* the first sets were counted in full before the cap */
  ASSERT(fabs(gauge(f.reg, "bomb0") - 3000) < 150);
#ifdef __GLIBC__
  size_t grown = mallinfo2().uordblks - heap0;
  if (grown > (size_t)8 << 20) { /* 2,000 series and cache entries, 1 MiB of sets */
    fprintf(stderr, "the heap grew by %zu bytes\n", grown);
    exit(1);
  }
#endif
  bg_statsd_flush_sets(f.sink);
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT_EQ_INT(st.set_bytes, 0);
  ASSERT_EQ_INT(feed(&f, "bomb1999:a:b:c|s"), 0); /* room again after the flush */
  ASSERT_EQ_DBL(gauge(f.reg, "bomb1999"), 3);
  teardown(&f);
}

static void test_bad_lines_kept_apart(void) {
  fixture f = setup(NULL);
  const char *pkt = "good:1|c\n"
                    "nocolon\n"
                    "x:1|zz\n"
                    "x:|c\n"
                    ":1|c\n"
                    "y:1\n"
                    "z:nan|g\n"
                    "z:inf|g\n"
                    "z:1e999|g\n"
                    "z:0x10|g\n"
                    "z:1.2.3|g\n"
                    "cnt:-1|c\n"
                    "9abc:1|c\n"
                    "a b:1|c\n"
                    "\n"
                    "\r\n"
                    "good:1|c\r\n"
                    "_e{5,4}:title|text\n"
                    "_sc|db|0|#env:prod\n"
                    "good:1|c";
  ASSERT_EQ_INT(feed(&f, pkt), 13);
  ASSERT_EQ_DBL(counter(f.reg, "good"), 3);
  bg_statsd_stats st;
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT_EQ_INT(st.packets, 1);
  ASSERT_EQ_INT(st.lines, 18); /* empty lines are not lines */
  ASSERT_EQ_INT(st.bad_lines, 13);
  ASSERT_EQ_INT(st.ignored, 2);
  ASSERT_EQ_DBL(counter(f.reg, "beagle_statsd_bad_lines_total"), 13);
  ASSERT_EQ_DBL(counter(f.reg, "beagle_statsd_lines_total"), 18);
  ASSERT_EQ_DBL(counter(f.reg, "beagle_statsd_packets_total"), 1);
  /* no series for the bad lines: counter "cnt" and gauge "z" were never created */
  size_t n = bg_registry_series_count(f.reg);
  ASSERT_EQ_INT(n, 4); /* good + the three beagle_statsd counters */
  /* the name rejection says why */
  feed(&f, "bad$name:1|c");
  ASSERT(strstr(bg_statsd_last_error(f.sink), "invalid character") != NULL);
  /* a NUL inside a name is refused, not cut */
  ASSERT_EQ_INT(bg_statsd_ingest(f.sink, "ab\0c:1|c", 8), 1);
  teardown(&f);
}

static void test_type_clash(void) {
  fixture f = setup(NULL);
  ASSERT_EQ_INT(feed(&f, "clash:1|c\nclash:2|g\nclash:3|h\nclash:1|c"), 2);
  ASSERT_EQ_DBL(counter(f.reg, "clash"), 2);
  /* ms and h under one name live in different families (clash_seconds, clash2) */
  ASSERT_EQ_INT(feed(&f, "clash2:1|ms\nclash2:1|h"), 0);
  /* a gauge named like the counter's exposition name is refused by the registry */
  ASSERT_EQ_INT(feed(&f, "clash_total:1|g"), 1);
  teardown(&f);
}

static void test_cache(void) {
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.max_cache = 8;
  fixture f = setup(&o);
  char line[64];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 20; i++) {
      snprintf(line, sizeof line, "m%d:1|c|#k:v", i);
      ASSERT_EQ_INT(feed(&f, line), 0);
    }
  }
  bg_statsd_stats st;
  bg_statsd_sink_stats(f.sink, &st);
  ASSERT(st.cache_entries <= 8);
  for (int i = 0; i < 20; i++) {
    snprintf(line, sizeof line, "m%d", i);
    const char *kv[] = {"k", "v"};
    ASSERT_EQ_DBL(bg_series_value(get(f.reg, BG_COUNTER, line, kv, 1)), 3);
  }
  teardown(&f);
}

/* TCP framing: lines split anywhere, overlong lines skipped up to their newline. */
static void test_stream_framing(void) {
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.max_line = 32;
  fixture f = setup(&o);
  bg__statsd_stream st = {{0}, 0};
  const char *s =
      "a:1|c\nb:2|c\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1|c\na:1|c\nb:1|c";
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i += 3) /* three bytes at a time */
    ASSERT_EQ_INT(bg__statsd_feed(f.sink, &st, s + i, n - i < 3 ? n - i : 3, 32, 0), 0);
  ASSERT_EQ_DBL(counter(f.reg, "a"), 2);
  ASSERT_EQ_DBL(counter(f.reg, "b"), 2); /* "b:1|c" waits for its newline */
  ASSERT_EQ_INT(bg__statsd_feed(f.sink, &st, "", 0, 32, 1), 0);
  ASSERT_EQ_DBL(counter(f.reg, "b"), 3);
  bg_statsd_stats ss;
  bg_statsd_sink_stats(f.sink, &ss);
  ASSERT_EQ_INT(ss.bad_lines, 1);
  ASSERT_EQ_INT(ss.lines, 5);
  /* an overlong line inside one chunk, and one spanning chunks with its tail */
  char big[200];
  memset(big, 'x', sizeof big);
  memcpy(big + 150, "\nc:1|c\n", 7);
  ASSERT_EQ_INT(bg__statsd_feed(f.sink, &st, big, 157, 32, 0), 0);
  ASSERT_EQ_INT(bg__statsd_feed(f.sink, &st, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", 30, 32, 0), 0);
  ASSERT_EQ_INT(bg__statsd_feed(f.sink, &st, "yyyyyyyyyyyyyyyyyyyy\nc:1|c\n", 27, 32, 0), 0);
  ASSERT_EQ_DBL(counter(f.reg, "c"), 2);
  bg_statsd_sink_stats(f.sink, &ss);
  ASSERT_EQ_INT(ss.bad_lines, 3);
  bg_buf_free(&st.partial);
  teardown(&f);
}

/* ---------------------------------------------------------------- end to end */

#define E2E_CLIENTS 4
#define E2E_UDP_PACKETS 2000
#define E2E_TCP_LINES 5000

typedef struct e2e {
  uv_loop_t loop;
  uv_timer_t timer;
  bg_registry *reg;
  bg_statsd *sd;
  int udp_port, tcp_port;
  uint64_t want_lines;
  int stopped, timed_out;
  uint64_t ticks;
} e2e;

static void *udp_sender(void *arg) {
  e2e *e = arg;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->udp_port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  char pkt[256];
  for (int i = 0; i < E2E_UDP_PACKETS; i++) {
    int n = snprintf(pkt, sizeof pkt,
                     "udp.hits:1|c|#proto:udp\nudp.lat:%d|ms\nudp.bad:1|q\nudp.g:%d|g", i % 100, i);
    sendto(fd, pkt, (size_t)n, 0, (struct sockaddr *)&a, sizeof a);
    if (i % 200 == 199) usleep(2000); /* stay under the socket buffer without relying on it */
  }
  close(fd);
  return NULL;
}

static void *tcp_sender(void *arg) {
  e2e *e = arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->tcp_port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    exit(1);
  }
  static const char line[] = "tcp.hits:1|c|#proto:tcp\n";
  char buf[8192];
  size_t len = 0;
  for (int i = 0; i < E2E_TCP_LINES; i++) {
    memcpy(buf + len, line, sizeof line - 1);
    len += sizeof line - 1;
    if (len > sizeof buf - sizeof line || i == E2E_TCP_LINES - 1) {
      /* odd-sized writes so that lines straddle reads */
      for (size_t off = 0; off < len;) {
        size_t chunk = len - off < 777 ? len - off : 777;
        ssize_t w = write(fd, buf + off, chunk);
        if (w <= 0) exit(1);
        off += (size_t)w;
      }
      len = 0;
    }
  }
  static const char tail[] = "tcp.last:1|c"; /* no newline: ingested at EOF */
  if (write(fd, tail, sizeof tail - 1) < 0) exit(1);
  close(fd);
  return NULL;
}

static void stopped_cb(void *ud) {
  ((e2e *)ud)->stopped = 1;
}

static void poll_cb(uv_timer_t *t) {
  e2e *e = t->data;
  bg_statsd_stats st;
  bg_statsd_get_stats(e->sd, &st);
  if (st.lines >= e->want_lines || ++e->ticks > 1000) {
    e->timed_out = st.lines < e->want_lines;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    bg_statsd_stop(e->sd, stopped_cb, e);
  }
}

static void test_end_to_end(void) {
  e2e e;
  memset(&e, 0, sizeof e);
  ASSERT_EQ_INT(uv_loop_init(&e.loop), 0);
  e.reg = bg_registry_new();
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.udp = "127.0.0.1:0";
  o.tcp = "127.0.0.1:0";
  ASSERT_EQ_INT(bg_statsd_start(&e.loop, e.reg, &o, &e.sd), 0);
  e.udp_port = bg_statsd_port(e.sd);
  e.tcp_port = bg_statsd_tcp_port(e.sd);
  ASSERT(e.udp_port > 0 && e.tcp_port > 0);
  e.want_lines = (uint64_t)E2E_UDP_PACKETS * 4 + (uint64_t)E2E_CLIENTS * (E2E_TCP_LINES + 1);
  uv_timer_init(&e.loop, &e.timer);
  e.timer.data = &e;
  uv_timer_start(&e.timer, poll_cb, 10, 10);
  pthread_t th[E2E_CLIENTS + 1];
  pthread_create(&th[0], NULL, udp_sender, &e);
  for (int i = 1; i <= E2E_CLIENTS; i++)
    pthread_create(&th[i], NULL, tcp_sender, &e);

  /* read the results from inside the loop before stop frees the server */
  ASSERT_EQ_INT(uv_run(&e.loop, UV_RUN_DEFAULT), 0);
  for (int i = 0; i <= E2E_CLIENTS; i++)
    pthread_join(th[i], NULL);
  ASSERT_EQ_INT(e.stopped, 1);
  ASSERT_EQ_INT(e.timed_out, 0);
  const char *u[] = {"proto", "udp"}, *t[] = {"proto", "tcp"};
  ASSERT_EQ_DBL(bg_series_value(get(e.reg, BG_COUNTER, "udp.hits", u, 1)), E2E_UDP_PACKETS);
  ASSERT_EQ_INT(bg_series_count(hist(e.reg, "udp.lat_seconds")), E2E_UDP_PACKETS);
  ASSERT_EQ_DBL(gauge(e.reg, "udp.g"), E2E_UDP_PACKETS - 1);
  ASSERT_EQ_DBL(bg_series_value(get(e.reg, BG_COUNTER, "tcp.hits", t, 1)),
                E2E_CLIENTS * E2E_TCP_LINES);
  ASSERT_EQ_DBL(counter(e.reg, "tcp.last"), E2E_CLIENTS);
  ASSERT_EQ_DBL(counter(e.reg, "beagle_statsd_bad_lines_total"), E2E_UDP_PACKETS);
  ASSERT_EQ_DBL(counter(e.reg, "beagle_statsd_lines_total"), (double)e.want_lines);
  ASSERT_EQ_INT(uv_loop_close(&e.loop), 0);
  bg_registry_free(e.reg);
}

/* Options that fail, the follow-the-UDP-port default for TCP, and max_clients. */
static void done_count(void *ud) {
  (*(int *)ud)++;
}

static void *two_clients(void *arg) {
  int port = *(int *)arg;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int fd1 = socket(AF_INET, SOCK_STREAM, 0), fd2 = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd1, (struct sockaddr *)&a, sizeof a) != 0) exit(1);
  usleep(50000);
  if (connect(fd2, (struct sockaddr *)&a, sizeof a) != 0) exit(1);
  char c;
  ssize_t r = read(fd2, &c, 1); /* the server closes the second one */
  if (r != 0) {
    fprintf(stderr, "second client read %zd, want EOF\n", r);
    exit(1);
  }
  if (write(fd1, "one:1|c\n", 8) != 8) exit(1);
  close(fd1);
  close(fd2);
  return NULL;
}

static void test_start_options(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  bg_registry *reg = bg_registry_new();
  bg_statsd *sd;
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  const char *bad_addrs[] = {
      "nohost", "127.0.0.1:99999", "127.0.0.1:", "example.com:8125", "[::1:8125", "1.2.3.4:12x"};
  for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
    o.udp = bad_addrs[i];
    ASSERT_EQ_INT(bg_statsd_start(&loop, reg, &o, &sd), BG_EINVAL);
    ASSERT(sd == NULL);
  }
  o.udp = "off";
  o.tcp = NULL;
  ASSERT_EQ_INT(bg_statsd_start(&loop, reg, &o, &sd), BG_EINVAL);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* tcp NULL follows the UDP port; a second server on it fails and cleans up */
  o.udp = "127.0.0.1:0";
  ASSERT_EQ_INT(bg_statsd_start(&loop, reg, &o, &sd), 0);
  int port = bg_statsd_port(sd);
  ASSERT_EQ_INT(bg_statsd_tcp_port(sd), port);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  bg_statsd *sd2;
  o.udp = addr;
  ASSERT_EQ_INT(bg_statsd_start(&loop, reg, &o, &sd2), UV_EADDRINUSE);
  int done = 0;
  bg_statsd_stop(sd, done_count, &done);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ_INT(done, 1);

  /* IPv6 literal, when the host has it */
  o.udp = "[::1]:0";
  o.tcp = "off";
  if (bg_statsd_start(&loop, reg, &o, &sd) == 0) {
    ASSERT(bg_statsd_port(sd) > 0);
    ASSERT_EQ_INT(bg_statsd_tcp_port(sd), BG_ENOENT);
    bg_statsd_stop(sd, NULL, NULL);
  }
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);

  /* TCP only, max_clients 1: the second client is closed at accept */
  o.udp = "off";
  o.tcp = "localhost:0";
  o.max_clients = 1;
  ASSERT_EQ_INT(bg_statsd_start(&loop, reg, &o, &sd), 0);
  ASSERT_EQ_INT(bg_statsd_port(sd), BG_ENOENT);
  port = bg_statsd_tcp_port(sd);
  pthread_t th;
  pthread_create(&th, NULL, two_clients, &port);
  bg_statsd_stats st;
  for (int i = 0; i < 2000; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    bg_statsd_get_stats(sd, &st);
    if (st.lines == 1 && st.tcp_clients == 0) break;
    usleep(1000);
  }
  pthread_join(th, NULL);
  ASSERT_EQ_INT(st.lines, 1);
  ASSERT_EQ_INT(st.dropped, 1);
  ASSERT_EQ_DBL(counter(reg, "one"), 1);
  done = 0;
  bg_statsd_stop(sd, done_count, &done);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ_INT(done, 1);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
  bg_registry_free(reg);
}

int main(void) {
  RUN(test_counter);
  RUN(test_sample_rate);
  RUN(test_gauge);
  RUN(test_timer_histogram_distribution);
  RUN(test_packed_all_or_nothing);
  RUN(test_tags);
  RUN(test_sets);
  RUN(test_set_estimate);
  RUN(test_set_bomb);
  RUN(test_bad_lines_kept_apart);
  RUN(test_type_clash);
  RUN(test_cache);
  RUN(test_stream_framing);
  RUN(test_end_to_end);
  RUN(test_start_options);
  fprintf(stderr, "ok\n");
  return 0;
}
