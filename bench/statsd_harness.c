/* statsd_harness: core/metrics/statsd alone on a libuv loop, for bench/statsd_bench.sh. Listens for
 * UDP on 127.0.0.1:PORT (TCP off), prints "ready port=N" once bound, and on SIGUSR1 (or at
 * SIGTERM/SIGINT, before it stops) prints one line of counters: lines, packets, bad lines,
 * kernel drops, the socket buffer, and the milliseconds between the first and the last time
 * the line count moved (sampled every millisecond), for a rate that excludes idle time.
 * Build: gcc -O2 -Icore -o statsd_harness bench/statsd_harness.c -Lbuild -lbeagle_core -luv */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "metrics/metrics.h"
#include "metrics/statsd.h"

static bg_statsd *sd;
static uv_signal_t sig_usr1, sig_term, sig_int;
static uv_timer_t tick;
static uint64_t last_lines, first_ns, last_ns;

static void report(void) {
  bg_statsd_stats st;
  bg_statsd_get_stats(sd, &st);
  printf("lines=%llu packets=%llu bad=%llu dropped=%llu kernel_drops=%llu rcvbuf=%llu "
         "active_ms=%.1f\n",
         (unsigned long long)st.lines, (unsigned long long)st.packets,
         (unsigned long long)st.bad_lines, (unsigned long long)st.dropped,
         (unsigned long long)st.kernel_drops, (unsigned long long)st.rcvbuf,
         (double)(last_ns - first_ns) / 1e6);
  fflush(stdout);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  bg_statsd_stats st;
  bg_statsd_sink_stats(bg_statsd_get_sink(sd), &st);
  if (st.lines != last_lines) {
    uint64_t now = uv_hrtime();
    if (last_lines == 0) first_ns = now;
    last_ns = now;
    last_lines = st.lines;
  }
}

static void on_usr1(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  report();
}

static void on_stop(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  report();
  bg_statsd_stop(sd, NULL, NULL);
  uv_close((uv_handle_t *)&sig_usr1, NULL);
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
}

int main(int argc, char **argv) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%s", argc > 1 ? argv[1] : "0");
  uv_loop_t *loop = uv_default_loop();
  bg_registry *reg = bg_registry_new();
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.udp = addr;
  o.tcp = "off";
  if (argc > 2) o.rcvbuf = atoi(argv[2]);
  int rc = bg_statsd_start(loop, reg, &o, &sd);
  if (rc != 0) {
    fprintf(stderr, "statsd_harness: %s: %s\n", addr, bg_strerror(rc));
    return 1;
  }
  uv_signal_init(loop, &sig_usr1);
  uv_signal_start(&sig_usr1, on_usr1, SIGUSR1);
  uv_signal_init(loop, &sig_term);
  uv_signal_start(&sig_term, on_stop, SIGTERM);
  uv_signal_init(loop, &sig_int);
  uv_signal_start(&sig_int, on_stop, SIGINT);
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 1, 1);
  printf("ready port=%d\n", bg_statsd_port(sd));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  bg_registry_free(reg);
  return 0;
}
