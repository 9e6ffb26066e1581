#!/usr/bin/env bash
# Instructions per notification, the A/B figure of issue 5 (seconds drift on this shared VM,
# instruction counts do not): the agent under callgrind, instrumented only from a StatsD burst of
# N gauges (tput.value{k=i} = 50, one rule > 10, each alert its own group and notification) to
# the N-th receipt at bench/notify_sink.c. Prints total/N, the history flush's part of it (a
# flush every 15 s may land in the window), and the rest.
#   bench/notify_instructions.sh [BUILD (build-bench)] [N (3000)]
# NOTIFY_CG_OUT=FILE keeps the callgrind profile there (for callgrind_annotate).
# Takes ~1.5 min for 3,000. Not part of `make bench`.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build-bench}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
N=${2:-3000}
TMP=$(mktemp -d)
trap 'kill $SINK 2>/dev/null; [ -n "${NOTIFY_CG_OUT:-}" ] && cp "$TMP/cg.out" "$NOTIFY_CG_OUT"; rm -rf "$TMP"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
gcc -O2 -o "$TMP/sink" "$REPO/bench/notify_sink.c" || exit 1
"$TMP/sink" "$TMP/sink.tsv" >"$TMP/sink.port" 2>/dev/null &
SINK=$!
for _ in $(seq 50); do [ -s "$TMP/sink.port" ] && break; sleep 0.1; done
mkdir -p "$TMP/rules"
cat >"$TMP/rules/t.lua" <<R
route { match = { alertname = "tput" }, channels = { "sink" }, group_by = { "alertname", "k" }, group_wait = "0s", group_interval = "0.1s", repeat_interval = "1h" }
alert "tput" { metric = "tput.value", condition = ">", threshold = 10, duration = "0s", every = "1s" }
R
cat >"$TMP/beagle.lua" <<R
alert_cooldown_minutes = 0
alert_max_notifications_per_hour = 100000
max_series_per_metric = 100000
notification_outbox_max = 100000
channel "sink" { plugin = "webhook", url = "http://127.0.0.1:$(head -1 "$TMP/sink.port")/hook" }
R
port=$(free_port)
sport=$(free_port)
MONITORING_METRICS_COLLECTION_INTERVAL=5 valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
  --instr-atstart=no "$BUILD/beagle" run -c "$TMP/beagle.lua" --listen "127.0.0.1:$port" --data "$TMP/data" \
  --statsd "127.0.0.1:$sport" --rules "$TMP/rules" 2>"$TMP/agent.log" &
AG=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.2; done
callgrind_control -i on $AG >/dev/null 2>&1
python3 - "$sport" "$N" <<'PY'
import socket, sys
p, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", p))
s.sendall(b"".join(b"tput.value:50|g|#k:%d\n" % i for i in range(n)))
s.close()
PY
for _ in $(seq 1200); do [ "$(wc -l <"$TMP/sink.tsv")" -ge "$N" ] && break; sleep 0.5; done
callgrind_control -i off $AG >/dev/null 2>&1
got=$(wc -l <"$TMP/sink.tsv")
kill -TERM $AG
wait $AG
[ "$got" -ge "$N" ] || { echo "only $got of $N notifications arrived" >&2; exit 1; }
callgrind_annotate --inclusive=yes "$TMP/cg.out" 2>/dev/null | python3 -c '
import re, sys
n = int(sys.argv[1]); tot = hist = 0
for l in sys.stdin:
    m = re.match(r"\s*([\d,]+) .*?(PROGRAM TOTALS|\?\?\?:l_history_flush \[|\?\?\?:flush_work \[)", l)
    if not m: continue
    v = int(m.group(1).replace(",", ""))
    if m.group(2) == "PROGRAM TOTALS": tot = v
    else: hist += v
print("notifications %d: %.1fk instructions each (history flush %.1fk, the rest %.1fk)" % (n, tot / n / 1e3, hist / n / 1e3, (tot - hist) / n / 1e3))
' "$N"
