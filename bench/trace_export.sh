#!/usr/bin/env bash
# Trace export: spans made inside the agent as users make them, exported by the otlp_traces
# backend (OTLP/HTTP JSON) to a receiver that costs next to nothing (nginx answering 204 on CPU
# 1), measured as the agent runs (CPU 0): spans exported per CPU-second of the agent, and nothing
# dropped.
#   - spans: BENCH_TE_CHECKS (3) instances of a drop-in check plugin each run every
#     BENCH_TE_INTERVAL (0.1) s and make BENCH_TE_SPANS (10000) spans with beagle.span(name,
#     { two attributes }, fn), children of the check run's span; trace_sampling_rate = 1,
#     trace_buffer_size 200000 (a run's spans wait for the drain between its slices),
#     trace_batch_size BENCH_TE_BATCH (512, the default; a buffer that full is drained at once);
#   - beagle: `backend "t" { plugin = "otlp_traces", url = nginx, buffer_limit = 1000000 }`;
#     baseline: the same agent and plugin without the backend (the spans then begin and end but
#     are not recorded: what a span costs when nothing exports);
#   - each agent runs BENCH_TE_WARMUP (5) s, then is measured for BENCH_TE_SECONDS (15) s: its
#     CPU time from /proc, the spans sent (beagle_backend_samples_total{backend="t"}), and what
#     was dropped (beagle_trace_spans_dropped_total, beagle_backend_dropped_samples_total).
# Reported: spans exported per CPU-second of the whole agent (making the spans included), and
# per CPU-second above the baseline (what exporting adds: recording, draining, the buffer, the
# plugin's send, encoding, HTTP). Beside it, the encoder alone: tests/c/test_encode_otlp_json.c's
# harness (20,000 spans of 6 attributes, one event in ten, batches of 512, best of 7), ns per
# span. Takes ~1 min.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init trace_export
SECS=${BENCH_TE_SECONDS:-15}
WARM=${BENCH_TE_WARMUP:-5}
PER_RUN=${BENCH_TE_SPANS:-10000}
INTERVAL=${BENCH_TE_INTERVAL:-0.1}
CHECKS=${BENCH_TE_CHECKS:-3}
BATCH=${BENCH_TE_BATCH:-512}
TARGET=150000
HARNESS="$BUILD/test_encode_otlp_json"

for tool in "$NGINX" "$HARNESS"; do
  [ -x "$tool" ] || { echo "bench: $tool not found" >&2; exit 1; }
done

# ---- the encoder alone
enc=$(taskset -c 0 "$HARNESS" bench 20000 512 7) || { echo "bench: harness failed" >&2; exit 1; }
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
ENC_NS=$(kv ns_per_span "$enc")
ENC_BYTES=$(kv bytes_per_span "$enc")

# ---- the span plugin
mkdir -p "$TMP/plugins/checks"
cat >"$TMP/plugins/checks/bench_spans.lua" <<EOF
-- Makes opts.n spans a run, each with two attributes.
return beagle.check {
  name = "bench_spans",
  interval = "${INTERVAL}s",
  timeout = "60s",
  options = { n = { "integer", description = "spans a run" } },
  run = function(opts, ctx)
    local span, work = beagle.span, function() end
    for i = 1, opts.n do span("bench op", { i = i, op = "bench" }, work) end
    return ctx.healthy("made spans")
  end,
}
EOF

# ---- the receiver
NPORT=$(free_port)
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/tmp/client;
  proxy_temp_path $TMP/nginx/tmp/proxy;
  fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
  uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
  scgi_temp_path $TMP/nginx/tmp/scgi;
  keepalive_requests 1000000;
  client_max_body_size 64m;
  server {
    listen 127.0.0.1:$NPORT;
    location / { return 204; }
  }
}
EOF
bench_spawn NGX taskset -c 1 "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" 2>"$TMP/nginx/stderr"
wait_http "http://127.0.0.1:$NPORT/" || { cat "$TMP/nginx/stderr" >&2; exit 1; }

SETTINGS="settings { trace_sampling_rate = 1, trace_buffer_size = 200000, trace_batch_size = $BATCH }"
for i in $(seq "$CHECKS"); do
  SETTINGS="$SETTINGS
check \"spans$i\" { plugin = \"bench_spans\", n = $PER_RUN }"
done

# agent NAME CONFIG : starts an agent on CPU 0; sets AG_PID AG_PORT once its spans are made
agent() {
  local name=$1 config=$2
  AG_PORT=$(free_port)
  mkdir -p "$TMP/$name"
  printf '%s\n' "$config" >"$TMP/$name/beagle.lua"
  bench_spawn AG_PID env MONITORING_PLUGIN_INSTRUCTION_BUDGET=1e11 \
    taskset -c 0 "$BEAGLE" run -c "$TMP/$name/beagle.lua" --listen "127.0.0.1:$AG_PORT" \
    --data "$TMP/$name/data" --statsd off --plugins "$TMP/plugins" 2>"$TMP/$name.log"
  wait_http "http://127.0.0.1:$AG_PORT/health/live" 15 || { tail "$TMP/$name.log" >&2; return 1; }
  for _ in $(seq 100); do
    curl -s "http://127.0.0.1:$AG_PORT/health/spans1" | grep -q "made spans" && return 0
    sleep 0.2
  done
  echo "bench: $name: the span plugin did not run" >&2
  tail "$TMP/$name.log" >&2
  return 1
}

# metric URL REGEX : the sum of the values of the lines of /metrics matching REGEX
metric() { curl -s "$1" | awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%.0f", s}'; }

# window PID URL : sets W_CPU (CPU seconds) W_S (wall) W_SENT W_STARTED W_DROP (deltas)
window() {
  local pid=$1 url=$2 c0 c1 t0 t1 s0 s1 b0 b1 d0 d1
  sleep "$WARM"
  c0=$(cpu_ticks "$pid")
  s0=$(metric "$url" '^beagle_backend_samples_total\\{backend="t"\\}')
  b0=$(metric "$url" '^beagle_trace_spans_started_total')
  d0=$(metric "$url" '^beagle_trace_spans_dropped_total|^beagle_backend_dropped_samples_total')
  t0=$(now_s)
  sleep "$SECS"
  c1=$(cpu_ticks "$pid")
  s1=$(metric "$url" '^beagle_backend_samples_total\\{backend="t"\\}')
  b1=$(metric "$url" '^beagle_trace_spans_started_total')
  d1=$(metric "$url" '^beagle_trace_spans_dropped_total|^beagle_backend_dropped_samples_total')
  t1=$(now_s)
  W_S=$(calc "$t1 - $t0")
  W_CPU=$(calc "($c1 - $c0) / $CLK_TCK")
  W_SENT=$((s1 - s0))
  W_STARTED=$((b1 - b0))
  W_DROP=$((d1 - d0))
}

# ---- baseline: the spans made, nothing exporting
agent base "$SETTINGS" || exit 1
window "$AG_PID" "http://127.0.0.1:$AG_PORT/metrics"
B_CPU=$(calc "$W_CPU / $W_S")
B_RATE=$(calc "$W_STARTED / $W_S")
bench_stop "$AG_PID"

# ---- otlp_traces to nginx
agent export "$SETTINGS
backend \"t\" { plugin = \"otlp_traces\", url = \"http://127.0.0.1:$NPORT/v1/traces\", buffer_limit = 1000000 }" || exit 1
url="http://127.0.0.1:$AG_PORT/metrics"
window "$AG_PID" "$url"
E_CPU=$(calc "$W_CPU / $W_S")
E_RATE=$(calc "$W_SENT / $W_S")
E_MADE=$(calc "$W_STARTED / $W_S")
E_DROP=$W_DROP
E_FAIL=$(metric "$url" '^beagle_backend_send_failures_total\\{backend="t"\\}')
E_BUF=$(metric "$url" '^beagle_backend_buffered_samples\\{backend="t"\\}')
E_RSS=$(awk -v k="$(rss_kb "$AG_PID")" 'BEGIN { printf "%.1f", k / 1024 }')
bench_stop "$AG_PID"

PER_ALL=$(awk -v n="$E_RATE" -v c="$E_CPU" 'BEGIN { printf "%.0f", (c > 0 ? n / c : 0) }')
# above the baseline, at the baseline's CPU per span made scaled to the spans made here
PER_EXPORT=$(awk -v n="$E_RATE" -v c="$E_CPU" -v b="$B_CPU" -v br="$B_RATE" -v er="$E_MADE" \
  'BEGIN { base = br > 0 ? b * er / br : b; d = c - base; printf "%.0f", (n > 0 && d > 0) ? n / d : 0 }')
V=$(verdict "$PER_ALL >= $TARGET && $E_DROP == 0")

md "### Trace export: otlp_traces, spans made in the agent to a null receiver"
md ""
md "$CHECKS instances of a check plugin each make $PER_RUN spans every $INTERVAL s with \`beagle.span(name, { two attributes }, fn)\` ($(fmt %.0f "$(calc "$CHECKS * $PER_RUN / $INTERVAL")") offered a second),"
md "trace_sampling_rate 1; \`backend \"t\" { plugin = \"otlp_traces\" }\` posts them (batches of trace_batch_size $BATCH) to nginx answering 204 (CPU 1)."
md "The agent on CPU 0, measured for $SECS s after $WARM s: CPU time from /proc; spans sent = beagle_backend_samples_total{backend=\"t\"}."
md "Baseline: the same agent and plugin without the backend (spans begin and end, nothing is recorded): $(fmt %.1f "$(calc "$B_CPU * 100")") % of a CPU for $(fmt %.0f "$B_RATE") spans/s made."
md ""
md "| spans made/s | spans exported/s | agent CPU | spans exported per CPU-second (everything) | per CPU-second above the baseline (the export alone) | dropped | failed sends | waiting at the end | VmRSS |"
md "|---|---|---|---|---|---|---|---|---|"
md "| $(fmt %.0f "$E_MADE") | $(fmt %.0f "$E_RATE") | $(fmt %.1f "$(calc "$E_CPU * 100")") % | $PER_ALL | $PER_EXPORT | $E_DROP | $E_FAIL | $E_BUF | $E_RSS MiB |"
md ""
md "Encoder alone (tests/c/test_encode_otlp_json.c bench: 20,000 spans of 6 attributes, one event in ten, batches of 512, best of 7): $ENC_NS ns a span, $ENC_BYTES bytes of JSON a span."
summary "Trace export, otlp_traces to a null receiver (spans/CPU-s)" "$PER_ALL" ">= $TARGET" "n/a" "n/a" "$V"
summary "Trace export above the non-exporting agent (spans/CPU-s)" "$PER_EXPORT" "n/a" "n/a" "n/a" "info"
summary "Trace export: the OTLP JSON encoder alone (ns/span)" "$ENC_NS" "n/a" "n/a" "n/a" "info"
