#!/usr/bin/env bash
# The metric backends' encoders alone (bench/encode.sh, bench/encode_bench.c): what a sample
# costs in each wire format, on the same batches, pinned to one CPU (BENCH_ENC_CPU, default 1);
# and the snapshot every backend takes once per collection. A harness figure beside the agent's
# own (the remote_write step sends through the agent to a real Prometheus).
#   BENCH_ENC_SERIES (20000), BENCH_ENC_BATCH (2000), BENCH_ENC_RUNS (7: the best run is kept)
# Takes ~20 s.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init encoders

SERIES=${BENCH_ENC_SERIES:-20000}
BATCH=${BENCH_ENC_BATCH:-2000}
RUNS=${BENCH_ENC_RUNS:-7}
BUILD="$BUILD" BENCH_CPU="${BENCH_ENC_CPU:-1}" timeout 300 "$BENCH_DIR/encode.sh" "$SERIES" "$BATCH" "$RUNS" \
  >"$TMP/enc.out" 2>"$TMP/enc.err" || { cat "$TMP/enc.err" >&2; exit 1; }
# one per sample: 1,000,000 samples/s a core is the issue's bar for remote write
TARGET_NS=1000

md "### Backend encoders: each wire format alone (bench/encode.sh)"
md ""
md "$SERIES registry series in a service's shape (60 % counters, 30 % gauges, 10 % histograms of 11 buckets;"
md "four labels each, two extra labels), one snapshot cut into batches of $BATCH, every batch encoded $RUNS times,"
md "the best run kept; the formats that send differences (statsd, datadog) timed in their steady state. A sample"
md "is a registry series (a histogram is one, whatever a format expands it into). One CPU, Release build."
md ""
md "| format | ns per sample | bytes per sample | samples per second (one core) | target |"
md "|---|---|---|---|---|"
worst=""
while IFS=$'\t' read -r name ns bytes rate; do
  [ -n "$name" ] || continue
  if [ "$name" = snapshot ]; then
    md "| the snapshot (every backend, once a collection) | $ns | $bytes (held) | $rate | |"
    SNAP=$ns
    continue
  fi
  md "| $name | $ns | $bytes | $rate | <= $TARGET_NS ns |"
  LIST="${LIST:+$LIST, }$name $ns"
  worst=$(awk -v a="$ns" -v b="${worst:-0}" 'BEGIN { print (a > b ? a : b) }')
done <"$TMP/enc.out"
md ""
md "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
md ""
summary "Backend encoders alone, ns per sample (bench/encode.sh)" "$LIST; snapshot $SNAP" \
  "<= $TARGET_NS ns/sample each" "n/a" "n/a" "$(verdict "$worst <= $TARGET_NS")"
