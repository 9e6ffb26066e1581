/* fuzz_statsd: libFuzzer target for the StatsD sink. The first byte picks packet or stream
 * mode (and the stream's chunk size); every input goes in twice, so the second pass runs the
 * cache-hit path, with a set flush in between. Small limits make the cache clear and the sets
 * fill. Invariants: bad lines never exceed lines, and the registry counters mirror the
 * sink's own. Build: cmake -DBEAGLE_FUZZ=ON -DCMAKE_C_COMPILER=clang; run:
 * build/tests/fuzz/fuzz_statsd -max_len=4096 corpus/ */
#include <stdint.h>
#include <stdlib.h>

#include "metrics/metrics.h"
#include "metrics/statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void pass(bg_statsd_sink *k, const char *p, size_t n, int mode) {
  if ((mode & 1) == 0) {
    bg_statsd_ingest(k, p, n);
    return;
  }
  bg__statsd_stream st = {{0}, 0};
  size_t chunk = (size_t)(mode >> 1) % 17 + 1;
  for (size_t i = 0; i < n; i += chunk)
    bg__statsd_feed(k, &st, p + i, n - i < chunk ? n - i : chunk, 64, 0);
  bg__statsd_feed(k, &st, "", 0, 64, 1);
  bg_buf_free(&st.partial);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  bg_registry *r = bg_registry_new();
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.max_line = 64;
  o.max_cache = 4;
  o.max_set_bytes = 4096;
  bg_statsd_sink *k;
  if (r == NULL || bg_statsd_sink_new(r, &o, &k) != 0) abort();
  const char *p = (const char *)data + 1;
  pass(k, p, size - 1, data[0]);
  bg_statsd_flush_sets(k);
  pass(k, p, size - 1, data[0]);
  bg_statsd_stats st;
  bg_statsd_sink_stats(k, &st);
  char e[8];
  bg_series *bad = bg_series_get(r, BG_COUNTER, "beagle_statsd_bad_lines_total", NULL, NULL, 0,
                                 NULL, 0, e, sizeof e);
  bg_series *lines = bg_series_get(r, BG_COUNTER, "beagle_statsd_lines_total", NULL, NULL, 0, NULL,
                                   0, e, sizeof e);
  if (st.bad_lines > st.lines || st.cache_entries > 4) abort();
  /* a line may itself add to these counters by name, so they can only be ahead */
  if (bad == NULL || lines == NULL || bg_series_value(bad) < (double)st.bad_lines ||
      bg_series_value(lines) < (double)st.lines)
    abort();
  bg_statsd_sink_free(k);
  bg_registry_free(r);
  return 0;
}
