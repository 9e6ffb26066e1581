#!/usr/bin/env bash
# Remote write: beagle's remote_write backend against Prometheus 2.42's own remote write, both
# sending the same 100,000 series every second to a receiving Prometheus (with
# --web.enable-remote-write-receiver), measured the same way: the sender's CPU time over a
# window, minus the same process's baseline without remote write, per sample sent. Samples per
# CPU-second is what one core could send; what was delivered in the window is reported beside it
# (it is capped at 100,000/s by the collection interval).
#   - series: 1000 families x 100 series (counters and gauges alternating, labels instance and
#     code), created by a drop-in check plugin through handles, as in 5f;
#   - beagle: the agent as users run it, `backend "rw" { plugin = "remote_write", interval = "1s",
#     batch_size = B }` for each B in BENCH_RW_BATCHES ("2000 10000"), buffer_limit raised so a
#     collection fits; baseline: the same agent without the backend;
#   - Prometheus: Prometheus A scrapes a second agent holding the same series every 1 s (the way
#     Prometheus gets samples to send) and remote-writes them with max_samples_per_send 2000;
#     baseline: A scraping without remote_write (its scrape and TSDB cost);
#   - beagle at 1,250,000 samples/s: collections every BENCH_RW_FLAT_INTERVAL (0.08) s,
#     batch_size 10000, to nginx answering 204 (a receiver that costs next to nothing): whether
#     one core sends that many; buffer_limit 3,000,000 (not more offered, and that much buffer);
#   - the senders on CPU 0; the receiver and the scraped agent on CPU 1. Every sender runs
#     BENCH_RW_WARMUP (8) s (Prometheus BENCH_RW_PROM_WARMUP, 20 s: its remote write starts
#     reading the WAL ~10 s after it is ready), then is measured for BENCH_RW_SECONDS (15) s.
# A beagle sample is a registry series (beagle_backend_samples_total), a Prometheus sample one
# series' value (prometheus_remote_storage_samples_total); the bench series are counters and
# gauges, one of each either way (the agent's own few histograms count as one sample each).
# beagle sends up to backend_max_in_flight (4) batches of a collection at a time (a collection
# after the one before, for per-series order); Prometheus sends from parallel shards.
# Beside it, the encoder alone (tests/c/test_encode_remote_write.c's harness: encode + snappy of
# 100,000 registry series in batches of 2000, 10% histograms, 2 external labels; CPU 0) and its
# callgrind instruction count per sample. Takes ~3 min.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init remote_write
SECS=${BENCH_RW_SECONDS:-15}
WARM=${BENCH_RW_WARMUP:-8}
FLAT_INTERVAL=${BENCH_RW_FLAT_INTERVAL:-0.08}
PWARM=${BENCH_RW_PROM_WARMUP:-20} # Prometheus' remote write starts ~10 s after it is ready
BATCHES=${BENCH_RW_BATCHES:-2000 10000}
PROM=${PROMETHEUS:-/usr/bin/prometheus}
FAMILIES=1000
PER=100
TOTAL=$((FAMILIES * PER))
TARGET=1000000
HARNESS="$BUILD/test_encode_remote_write"

for tool in "$PROM" "$HARNESS"; do
  [ -x "$tool" ] || { echo "bench: $tool not found" >&2; exit 1; }
done

# ---- the encoder alone
enc=$(taskset -c 0 "$HARNESS" bench "$TOTAL" 2000 5) || { echo "bench: harness failed" >&2; exit 1; }
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
ENC_NS=$(kv ns_per_sample "$enc")
ENC_RATE=$(kv samples_per_s "$enc")
ENC_BYTES=$(kv bytes_per_sample "$enc")
ENC_RAW=$(kv raw_bytes_per_sample "$enc")
ENC_IR="n/a"
if command -v valgrind >/dev/null 2>&1; then
  cg=$(valgrind --tool=callgrind --toggle-collect=bg_encode_remote_write \
    --callgrind-out-file="$TMP/callgrind.out" "$HARNESS" bench 20000 2000 3 2>/dev/null)
  ir=$(awk '/^summary:/ {print $2}' "$TMP/callgrind.out" 2>/dev/null)
  sent=$(kv samples_sent "$cg")
  [ -n "$ir" ] && [ -n "$sent" ] && ENC_IR=$(fmt %.0f "$(calc "$ir / $sent")")
fi

# ---- the series plugin
mkdir -p "$TMP/plugins/checks"
cat >"$TMP/plugins/checks/bench_series.lua" <<EOF
-- Creates $TOTAL series through handles.
return beagle.check {
  name = "bench_series",
  interval = "1h",
  timeout = "120s",
  run = function(_, ctx)
    for f = 0, $FAMILIES - 1 do
      local name = ("bench.family_%03d"):format(f)
      for s = 0, $PER - 1 do
        local labels = { instance = ("host-%02d.example"):format(s % 50),
          code = tostring(200 + math.floor(s / 50) * 100 + f % 7) }
        if f % 2 == 0 then beagle.counter(name, labels):add(f * 100 + s)
        else beagle.gauge(name, labels):set((f * 100 + s) * 0.37) end
      end
    end
    return ctx.healthy("made $TOTAL series")
  end,
}
EOF

# agent NAME CPU CONFIG : starts an agent with the plugin; sets AG_PID AG_PORT once its series exist
agent() {
  local name=$1 cpu=$2 config=$3
  AG_PORT=$(free_port)
  mkdir -p "$TMP/$name"
  printf '%s\n' "$config" >"$TMP/$name/beagle.lua"
  bench_spawn AG_PID env MONITORING_MAX_SERIES=200000 MONITORING_PLUGIN_INSTRUCTION_BUDGET=1e11 \
    taskset -c "$cpu" "$BEAGLE" run -c "$TMP/$name/beagle.lua" --listen "127.0.0.1:$AG_PORT" \
    --data "$TMP/$name/data" --statsd off --plugins "$TMP/plugins" 2>"$TMP/$name.log"
  wait_http "http://127.0.0.1:$AG_PORT/health/live" 15 || { tail "$TMP/$name.log" >&2; return 1; }
  for _ in $(seq 600); do
    curl -s "http://127.0.0.1:$AG_PORT/health/bench_series" | grep -q "made $TOTAL series" && return 0
    sleep 0.2
  done
  echo "bench: $name: the series plugin did not finish" >&2
  tail "$TMP/$name.log" >&2
  return 1
}
SERIES_CHECK='check "bench_series" { plugin = "bench_series" }'

# metric URL REGEX : the sum of the values of the lines of /metrics matching REGEX
metric() { curl -s "$1" | awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%.0f", s}'; }

# window PID URL REGEX [WARMUP] : runs the window; sets W_CPU (CPU seconds) W_N (counter delta)
# W_S (wall)
window() {
  local pid=$1 url=$2 re=$3 c0 c1 n0 n1 t0 t1
  sleep "${4:-$WARM}"
  c0=$(cpu_ticks "$pid")
  n0=$(metric "$url" "$re")
  t0=$(now_s)
  sleep "$SECS"
  c1=$(cpu_ticks "$pid")
  n1=$(metric "$url" "$re")
  t1=$(now_s)
  W_S=$(calc "$t1 - $t0")
  W_CPU=$(calc "($c1 - $c0) / $CLK_TCK")
  W_N=$((n1 - n0))
}
# per_cpu N CPU BASE_CPU_SHARE WALL : samples per CPU-second above the baseline (0 when none)
per_cpu() {
  awk -v n="$1" -v c="$2" -v b="$3" -v w="$4" 'BEGIN { d = c - b * w; printf "%.0f", (n > 0 && d > 0) ? n / d : 0 }'
}
# us_per RATE : microseconds per sample of a samples-per-second figure
us_per() { awk -v r="$1" 'BEGIN { printf "%.2f", (r > 0 ? 1e6 / r : 0) }'; }

# ---- the receiver
P_R=$(free_port)
mkdir -p "$TMP/r"
printf 'global:\n  scrape_interval: 1h\n' >"$TMP/r/prometheus.yml"
bench_spawn R taskset -c 1 "$PROM" --config.file="$TMP/r/prometheus.yml" --storage.tsdb.path="$TMP/r/data" \
  --web.listen-address="127.0.0.1:$P_R" --web.enable-remote-write-receiver 2>"$TMP/r.log"
wait_http "http://127.0.0.1:$P_R/-/ready" 30 || { tail "$TMP/r.log" >&2; exit 1; }
RW_URL="http://127.0.0.1:$P_R/api/v1/write"

# ---- beagle: baseline, then each batch size
agent bg0 0 "$SERIES_CHECK" || exit 1
window "$AG_PID" "http://127.0.0.1:$AG_PORT/metrics" '^$'
BG0_CPU=$(calc "$W_CPU / $W_S")
bench_stop "$AG_PID"

declare -A BG_RATE BG_SENT BG_CPU BG_PER BG_FAIL BG_DROP BG_RSS BG_BUF
for b in $BATCHES; do
  agent "bg$b" 0 "$SERIES_CHECK
backend \"rw\" { plugin = \"remote_write\", url = \"$RW_URL\", interval = \"1s\", batch_size = $b,
  buffer_limit = 1000000, external_labels = { cluster = \"bench\" } }" || exit 1
  url="http://127.0.0.1:$AG_PORT/metrics"
  window "$AG_PID" "$url" '^beagle_backend_samples_total\\{backend="rw"\\}'
  BG_SENT[$b]=$W_N
  BG_RATE[$b]=$(calc "$W_N / $W_S")
  BG_CPU[$b]=$(calc "$W_CPU / $W_S")
  # CPU-seconds above the baseline per sample, as samples one core would send a second
  BG_PER[$b]=$(per_cpu "$W_N" "$W_CPU" "$BG0_CPU" "$W_S")
  BG_FAIL[$b]=$(metric "$url" '^beagle_backend_send_failures_total\\{backend="rw"\\}')
  BG_DROP[$b]=$(metric "$url" '^beagle_backend_dropped_samples_total\\{backend="rw"')
  BG_BUF[$b]=$(metric "$url" '^beagle_backend_buffered_samples\\{backend="rw"\\}')
  BG_RSS[$b]=$(fmt %.1f "$(calc "$(rss_kb "$AG_PID") / 1024")")
  bench_stop "$AG_PID"
done

# ---- beagle at 1,250,000 samples/s: a collection every FLAT_INTERVAL s to a receiver that takes
# and drops every body (nginx answering 204 on CPU 1), batches of 10000: whether one core sends it
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
agent bgsat 0 "$SERIES_CHECK
backend \"rw\" { plugin = \"remote_write\", url = \"http://127.0.0.1:$NPORT/api/v1/write\", interval = \"${FLAT_INTERVAL}s\",
  batch_size = 10000, buffer_limit = 3000000, external_labels = { cluster = \"bench\" } }" || exit 1
url="http://127.0.0.1:$AG_PORT/metrics"
window "$AG_PID" "$url" '^beagle_backend_samples_total\\{backend="rw"\\}'
SAT_RATE=$(calc "$W_N / $W_S")
SAT_CPU=$(calc "$W_CPU / $W_S")
SAT_DROP=$(metric "$url" '^beagle_backend_dropped_samples_total\\{backend="rw"')
SAT_FAIL=$(metric "$url" '^beagle_backend_send_failures_total\\{backend="rw"\\}')
bench_stop "$AG_PID"
bench_stop "$NGX"

# ---- Prometheus: a second agent holds the series, A scrapes it, with and without remote_write
agent src 1 "$SERIES_CHECK" || exit 1
SRC_PORT=$AG_PORT
# prom NAME WITH_RW : starts Prometheus A on CPU 0; sets A_PID A_PORT
prom() {
  A_PORT=$(free_port)
  mkdir -p "$TMP/$1"
  {
    printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n'
    printf 'scrape_configs:\n- job_name: src\n  static_configs:\n  - targets: ["127.0.0.1:%s"]\n' "$SRC_PORT"
    if [ "$2" = 1 ]; then
      printf 'remote_write:\n- url: %s\n  queue_config:\n    max_samples_per_send: 2000\n' "$RW_URL"
    fi
  } >"$TMP/$1/prometheus.yml"
  bench_spawn A_PID taskset -c 0 "$PROM" --config.file="$TMP/$1/prometheus.yml" \
    --storage.tsdb.path="$TMP/$1/data" --web.listen-address="127.0.0.1:$A_PORT" 2>"$TMP/$1.log"
  wait_http "http://127.0.0.1:$A_PORT/-/ready" 30 || { tail "$TMP/$1.log" >&2; return 1; }
}
prom a0 0 || exit 1
window "$A_PID" "http://127.0.0.1:$A_PORT/metrics" '^prometheus_tsdb_head_samples_appended_total' "$PWARM"
A0_CPU=$(calc "$W_CPU / $W_S")
A0_RATE=$(calc "$W_N / $W_S")
bench_stop "$A_PID"
prom a1 1 || exit 1
window "$A_PID" "http://127.0.0.1:$A_PORT/metrics" '^prometheus_remote_storage_samples_total' "$PWARM"
A_SENT=$W_N
A_RATE=$(calc "$W_N / $W_S")
A_CPU=$(calc "$W_CPU / $W_S")
A_PER=$(per_cpu "$W_N" "$W_CPU" "$A0_CPU" "$W_S")
A_FAIL=$(metric "http://127.0.0.1:$A_PORT/metrics" '^prometheus_remote_storage_samples_(failed|dropped)_total')
A_PENDING=$(metric "http://127.0.0.1:$A_PORT/metrics" '^prometheus_remote_storage_samples_pending')
A_RSS=$(fmt %.1f "$(calc "$(rss_kb "$A_PID") / 1024")")
bench_stop "$A_PID"
R_APPENDED=$(metric "http://127.0.0.1:$P_R/metrics" '^prometheus_tsdb_head_samples_appended_total')

# ---- the report
first=${BATCHES%% *}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
md "### Remote write: beagle's remote_write backend against Prometheus' own remote write"
md ""
md "$TOTAL series ($FAMILIES families x $PER, counters and gauges, labels instance and code) sent every second to a"
md "Prometheus $("$PROM" --version 2>&1 | awk 'NR==1 {print $3}') with --web.enable-remote-write-receiver (CPU 1). Senders on CPU 0, each measured"
md "for ${SECS} s after ${WARM} s: CPU time from /proc minus the same sender's baseline without remote write, per sample sent."
md "beagle: the agent with \`backend \"rw\" { plugin = \"remote_write\", interval = \"1s\", batch_size = B, buffer_limit = 1000000 }\`"
md "(one external label); baseline the agent holding the same series, no backend: $(fmt %.2f "$(calc "$BG0_CPU * 100")") % of a CPU."
md "Prometheus: A scrapes an agent holding the same series every 1 s and remote-writes them (max_samples_per_send 2000);"
md "baseline A scraping without remote_write: $(fmt %.1f "$(calc "$A0_CPU * 100")") % of a CPU, $(fmt %.0f "$A0_RATE") samples/s appended."
md ""
md "| sender | samples sent in the window | delivered samples/s | sender CPU | CPU above baseline per sample | samples per CPU-second (one core) | failed / dropped | waiting at the end | VmRSS |"
md "|---|---|---|---|---|---|---|---|---|"
for b in $BATCHES; do
  md "| beagle, batch_size $b | ${BG_SENT[$b]} | $(fmt %.0f "${BG_RATE[$b]}") | $(fmt %.1f "$(calc "${BG_CPU[$b]} * 100")") % | $(us_per "${BG_PER[$b]}") us | $(fmt %.0f "${BG_PER[$b]}") | ${BG_FAIL[$b]} / ${BG_DROP[$b]} | ${BG_BUF[$b]} | ${BG_RSS[$b]} MiB |"
done
md "| Prometheus remote write, 2000 per send | $A_SENT | $(fmt %.0f "$A_RATE") | $(fmt %.1f "$(calc "$A_CPU * 100")") % | $(us_per "$A_PER") us | $(fmt %.0f "$A_PER") | $A_FAIL | $A_PENDING | $A_RSS MiB |"
md ""
md "At 1.25M/s: the same agent collecting every $FLAT_INTERVAL s ($(fmt %.0f "$(calc "$TOTAL / $FLAT_INTERVAL")") samples/s offered) with batch_size 10000 and buffer_limit 3000000, to nginx answering"
md "204 to every POST (CPU 1): $(fmt %.0f "$SAT_RATE") samples/s sent at $(fmt %.1f "$(calc "$SAT_CPU * 100")") % of a CPU (failed sends $SAT_FAIL, dropped $SAT_DROP: past the"
md "buffer, what the agent could not send in time)."
md ""
md "The receiver appended $R_APPENDED samples in all. Encoder alone (C harness, encode + snappy, batches of 2000 of $TOTAL"
md "registry series, 10% histograms, CPU 0): $ENC_NS ns/sample ($(fmt %.0f "$ENC_RATE") samples/s), $ENC_BYTES bytes/sample on the wire"
md "($ENC_RAW before snappy); callgrind: $ENC_IR instructions/sample (20,000 series, 3 rounds, bg_encode_remote_write only)."
md "The machine is shared (2 CPUs); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
md ""

summary "Remote write, samples per CPU-second (batch $first)" "$(fmt %.0f "${BG_PER[$first]}") ($(fmt %.0f "${BG_RATE[$first]}")/s delivered)" \
  ">= $TARGET/s on one core" "Prometheus remote write: $(fmt %.0f "$A_PER") ($(fmt %.0f "$A_RATE")/s delivered)" \
  "$(ratio "${BG_PER[$first]}" "$A_PER")" "$(verdict "${BG_PER[$first]} >= $TARGET")"
summary "Remote write sent by one agent to a null receiver (batch 10000)" "$(fmt %.0f "$SAT_RATE") samples/s sent at $(fmt %.0f "$(calc "$SAT_CPU * 100")") % CPU" \
  ">= $TARGET/s on one core" "n/a" "n/a" "$(verdict "$SAT_RATE >= $TARGET")"
summary "Remote write encoder alone (encode + snappy)" "$ENC_NS ns/sample, $ENC_IR instructions/sample" \
  ">= $TARGET samples/s" "n/a" "n/a" "$(verdict "$ENC_RATE >= $TARGET")"
