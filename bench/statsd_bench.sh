#!/usr/bin/env bash
# StatsD ingest on one core from a loopback sender, side by side with collectd's statsd plugin
# (Debian collectd-core) and the reference statsd daemon (npm statsd), fed the same stream.
#
# Each daemon runs pinned to CPU $BENCH_STATSD_CPU (0), the sender (bench/statsd_send.c,
# sendmmsg) to CPU $BENCH_STATSD_SENDER_CPU (1). The stream: ~1400-byte datagrams of
# newline-separated classic lines (counters, sampled counters, timers, gauges over 1000
# names; no DogStatsD tags so that every daemon parses all of it). Two runs per daemon:
#   flat out  BENCH_STATSD_LINES (20M) lines as fast as the sender goes: the ingest rate;
#   paced     BENCH_STATSD_RATE (1.5M) lines/s for BENCH_STATSD_SECONDS (5): the loss.
# How lines are counted, the same way for all three ("kernel view"): datagrams the kernel
# delivered to the daemon's socket = sent - the socket's drops (/proc/net/udp), times lines per
# datagram, over the time from the sender's start until the socket's queue is empty again.
# Cross-checks from the daemons' own counters where they have one: beagle's
# beagle_statsd_lines_total (bench/statsd_harness.c, core/metrics/statsd on a bare loop) and npm
# statsd's statsd.metrics_received (management port, flushInterval set to 1 h so it is never
# reset). collectd's statsd plugin keeps no such counter; only the kernel view for it.
# Socket buffers differ and are reported: beagle asks for 8 MiB (SO_RCVBUFFORCE), the peers
# keep the system default; a bigger buffer absorbs bursts but cannot raise a sustained rate.
. "$(dirname "$0")/lib.sh"
bench_init statsd

LINES=${BENCH_STATSD_LINES:-20000000}
RATE=${BENCH_STATSD_RATE:-1500000}
SECS=${BENCH_STATSD_SECONDS:-5}
CPU=${BENCH_STATSD_CPU:-0}
SCPU=${BENCH_STATSD_SENDER_CPU:-1}
TARGET=1500000
NPM_DIR=${BENCH_STATSD_NPM_DIR:-/tmp/beagle-bench-npm-statsd}
SWEEP=${BENCH_STATSD_SWEEP:-50000 100000 250000 500000 1000000 1500000 2000000 2500000 3000000 4000000 5000000}

cc=${CC:-gcc}
"$cc" -O2 -o "$TMP/statsd_send" "$BENCH_DIR/statsd_send.c" || exit 1
if [ ! -f "$BUILD/libbeagle_core.so" ]; then
  echo "bench: $BUILD/libbeagle_core.so not found" >&2
  exit 1
fi
"$cc" -O2 -I"$REPO/core" -o "$TMP/statsd_harness" "$BENCH_DIR/statsd_harness.c" \
  -L"$BUILD" -lbeagle_core -luv -Wl,-rpath,"$BUILD" || exit 1

udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# udp_sock PORT : "rx_queue_bytes drops" of the 127.0.0.1:PORT socket, empty when not bound
udp_sock() {
  local r
  r=$(awk -v p="$(printf '%04X' "$1")" '$2 == "0100007F:" p { split($5, q, ":"); print q[2], $NF; exit }' /proc/net/udp)
  [ -n "$r" ] && set -- $r && echo "$((16#$1)) $2"
}
wait_bound() {
  for _ in $(seq 200); do [ -n "$(udp_sock "$1")" ] && return 0; sleep 0.05; done
  echo "bench: nothing bound to udp 127.0.0.1:$1" >&2
  return 1
}
# wait_drained PORT : until the socket's receive queue is empty three polls in a row
wait_drained() {
  local ok=0
  for _ in $(seq 3000); do
    set -- "$1" $(udp_sock "$1")
    if [ "${2:-0}" = 0 ]; then ok=$((ok + 1)); [ $ok -ge 3 ] && return 0; else ok=0; fi
    sleep 0.01
  done
}
rcvbuf_of() { ss -u -a -n -m "sport = :$1" 2>/dev/null | sed -n 's/.*rb\([0-9]*\).*/\1/p' | head -1; }

# send PORT ARGS... : runs the sender pinned; sets SENT_LINES SENT_PKTS LPP DRAIN_S DROPS
send() {
  local port=$1
  shift
  local d0 t0 out
  d0=$(udp_sock "$port" | awk '{print $2}')
  t0=$(now_s)
  out=$(taskset -c "$SCPU" "$TMP/statsd_send" -p "$port" "$@")
  wait_drained "$port"
  DRAIN_S=$(calc "$(now_s) - $t0")
  SENT_LINES=$(sed -n 's/.*sent_lines=\([0-9]*\).*/\1/p' <<<"$out")
  SENT_PKTS=$(sed -n 's/.*sent_packets=\([0-9]*\).*/\1/p' <<<"$out")
  LPP=$(sed -n 's/.*lines_per_packet=\([0-9.]*\).*/\1/p' <<<"$out")
  DROPS=$(( $(udp_sock "$port" | awk '{print $2}') - d0 ))
}

# measure KEY LABEL PORT COUNTER_FN : flat-out and paced runs; one table row. COUNTER_FN prints
# the daemon's own line count, or nothing when it has none.
declare -A FLAT PACED_LOSS LOSSLESS
measure() {
  local key=$1 label=$2 port=$3 counter=$4
  local i0 i1 i2 flat_k loss_k loss_paced flat_i="n/a" paced_i="n/a"
  i0=$($counter)
  send "$port" -n "$LINES"
  i1=$($counter)
  flat_k=$(calc "($SENT_PKTS - $DROPS) * $LPP / $DRAIN_S")
  loss_k=$(calc "100 * $DROPS / $SENT_PKTS")
  [ -n "$i1" ] && flat_i="$(fmt %.0f "$(calc "($i1 - $i0) / $DRAIN_S")") lines/s ($(fmt %.2f "$(calc "100 * (1 - ($i1 - $i0) / $SENT_LINES)")") % of sent not counted)"
  FLAT[$key]=$flat_k
  send "$port" -n "$((RATE * SECS))" -r "$RATE"
  i2=$($counter)
  loss_paced=$(calc "100 * $DROPS / $SENT_PKTS")
  [ -n "$i2" ] && paced_i="$(fmt %.3f "$(calc "100 * (1 - ($i2 - $i1) / $SENT_LINES)")") %"
  PACED_LOSS[$key]=$loss_paced
  # sweep: the highest paced rate (2 s each) with no datagram dropped, stopping at the first loss
  local r best=0
  for r in $SWEEP; do
    send "$port" -n "$((r * 2))" -r "$r"
    [ "$DROPS" -gt 0 ] && break
    best=$r
  done
  LOSSLESS[$key]=$best
  md "| $label | $(fmt %.0f "$flat_k") | $(fmt %.1f "$loss_k") % | $flat_i | $(fmt %.3f "$loss_paced") % | $paced_i | $best | $(rcvbuf_of "$port") |"
}

md "### StatsD ingest, one core (bench/statsd_bench.sh)"
md ""
md "Daemon on CPU $CPU, sender (sendmmsg, ~1400-byte datagrams) on CPU $SCPU, loopback UDP."
md "Flat out: $LINES lines as fast as the sender goes. Paced: $RATE lines/s for ${SECS}s."
md "\"kernel view\" = datagrams delivered to the socket (sent - socket drops) x lines per datagram,"
md "over sender start .. socket queue empty; \"own counter\" = the daemon's count of lines it parsed."
md ""
md "Sweep: paced runs of 2 s at $SWEEP lines/s, up to the first that loses a datagram."
md ""
md "| daemon | flat out: lines/s (kernel view) | flat out: dropped by kernel | flat out: own counter | paced: dropped by kernel | paced: not counted by daemon | highest lossless paced rate | SO_RCVBUF |"
md "|---|---|---|---|---|---|---|---|"

# ---- 1. beagle: core/metrics/statsd on a bare libuv loop
P=$(udp_port)
bench_spawn HPID taskset -c "$CPU" "$TMP/statsd_harness" "$P" >"$TMP/harness.out"
wait_bound "$P" || exit 1
beagle_lines() { # SIGUSR1 makes the harness print its counters
  local n
  n=$(wc -l <"$TMP/harness.out")
  kill -USR1 "$HPID"
  for _ in $(seq 100); do [ "$(wc -l <"$TMP/harness.out")" -gt "$n" ] && break; sleep 0.01; done
  tail -1 "$TMP/harness.out" | sed -n 's/^lines=\([0-9]*\).*/\1/p'
}
measure beagle "beagle (core/statsd)" "$P" beagle_lines
# the same flat-out stream with DogStatsD tags on every line (beagle only: the peers lack tags)
t0=$(beagle_lines)
send "$P" -n "$LINES" -t
TAGGED=$(calc "($SENT_PKTS - $DROPS) * $LPP / $DRAIN_S")
TAGGED_I=$(calc "($(beagle_lines) - $t0) / $DRAIN_S")
bench_stop "$HPID"

# ---- 2. collectd's statsd plugin
COLLECTD=$(command -v collectd || echo /usr/sbin/collectd)
if [ -x "$COLLECTD" ] && [ -f /usr/lib/collectd/statsd.so ]; then
  P=$(udp_port)
  mkdir -p "$TMP/collectd"
  cat >"$TMP/collectd.conf" <<EOF
Hostname "bench"
FQDNLookup false
BaseDir "$TMP/collectd"
PIDFile "$TMP/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 10
LoadPlugin statsd
<Plugin statsd>
  Host "127.0.0.1"
  Port "$P"
  TimerCount true
</Plugin>
EOF
  bench_spawn CPID taskset -c "$CPU" "$COLLECTD" -f -C "$TMP/collectd.conf" >"$TMP/collectd.log" 2>&1
  if wait_bound "$P"; then
    no_counter() { :; }
    CVER=$(dpkg-query -W -f '${Version}' collectd-core 2>/dev/null || echo '?')
    measure collectd "collectd $CVER statsd plugin" "$P" no_counter
  else
    md "| collectd | did not start: $(tail -1 "$TMP/collectd.log") | | | | | | |"
  fi
  bench_stop "$CPID"
else
  md "| collectd | not installed (apt-get install collectd-core) | | | | | | |"
fi

# ---- 3. npm statsd (the reference daemon), no backends
if [ ! -f "$NPM_DIR/node_modules/statsd/stats.js" ] && command -v npm >/dev/null; then
  mkdir -p "$NPM_DIR" && (cd "$NPM_DIR" && npm install --no-audit --no-fund statsd >/dev/null 2>&1)
fi
if [ -f "$NPM_DIR/node_modules/statsd/stats.js" ] && command -v node >/dev/null; then
  P=$(udp_port)
  MP=$(free_port)
  cat >"$TMP/statsd-config.js" <<EOF
{ port: $P, address: "127.0.0.1", mgmt_port: $MP, mgmt_address: "127.0.0.1",
  backends: [], flushInterval: 3600000, dumpMessages: false, deleteIdleStats: false }
EOF
  bench_spawn NPID taskset -c "$CPU" node "$NPM_DIR/node_modules/statsd/stats.js" "$TMP/statsd-config.js" >"$TMP/npm.log" 2>&1
  npm_lines() {
    python3 - "$MP" <<'PY'
import re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"counters\n")
buf = b""
while b"END" not in buf:
    d = s.recv(65536)
    if not d: break
    buf += d
m = re.search(rb"'statsd\.metrics_received':\s*(\d+)", buf)
print(m.group(1).decode() if m else "")
PY
  }
  if wait_bound "$P"; then
    NPM_VER=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$NPM_DIR/node_modules/statsd/package.json" | head -1)
    measure npm "npm statsd $NPM_VER (node $(node -v))" "$P" npm_lines
  else
    md "| npm statsd | did not start: $(tail -1 "$TMP/npm.log") | | | | | | |"
  fi
  bench_stop "$NPID"
else
  md "| npm statsd | not available (npm install statsd) | | | | | | |"
fi

md ""
md "beagle with DogStatsD tags on every line (\`|#env:prod,host:web-1\`), flat out: $(fmt %.0f "$TAGGED") lines/s kernel view, $(fmt %.0f "$TAGGED_I") lines/s by its own counter."
ratio() { [ -n "${FLAT[$1]:-}" ] && fmt %.1f "$(calc "${FLAT[beagle]} / ${FLAT[$1]}")" || echo "n/a"; }
md "Ratios (flat-out kernel view, beagle / peer): collectd $(ratio collectd) x, npm statsd $(ratio npm) x."
md "The sweep's top rate caps its result. A flat-out sender contends with the daemon for the socket's"
md "queue lock, so flat-out numbers swing from run to run on a shared machine; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
md ""

summary "StatsD ingest, one core (flat out)" "$(fmt %.0f "${FLAT[beagle]}") lines/s" ">= $TARGET lines/s" \
  "collectd $(fmt %.0f "${FLAT[collectd]:-0}"), npm statsd $(fmt %.0f "${FLAT[npm]:-0}")" \
  "$(ratio collectd) x collectd, $(ratio npm) x npm" "$(verdict "${FLAT[beagle]} >= $TARGET")"
summary "StatsD highest lossless rate (paced sweep)" "${LOSSLESS[beagle]} lines/s" ">= $TARGET lines/s" \
  "collectd ${LOSSLESS[collectd]:-n/a}, npm statsd ${LOSSLESS[npm]:-n/a}" "" "$(verdict "${LOSSLESS[beagle]} >= $TARGET")"
summary "StatsD loss at $RATE lines/s" "$(fmt %.3f "${PACED_LOSS[beagle]}") %" "0 %" \
  "collectd $(fmt %.1f "${PACED_LOSS[collectd]:-100}") %, npm statsd $(fmt %.1f "${PACED_LOSS[npm]:-100}") %" "" \
  "$(verdict "${PACED_LOSS[beagle]} == 0")"
