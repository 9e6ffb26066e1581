#!/usr/bin/env bash
# Benchmark 7: notifications (issue 5). Two targets, both on loopback against bench/notify_sink.c
# (a single-threaded epoll HTTP/1.1 sink that logs "receive time, Idempotency-Key, starts_at" per
# request), the agent pinned to CPU $BENCH_NOTIFY_CPU (0), the sink and the senders to CPU
# $BENCH_NOTIFY_SINK_CPU (1). Every agent: --statsd on a free port, a webhook channel "sink",
# alert_cooldown_minutes 0, alert_max_notifications_per_hour 100000, max_series_per_metric
# 100000, metrics_collection_interval 0.1 s; rules route { group_by = { "alertname", "k" },
# group_wait 0s, group_interval 0.1s, repeat_interval 1h }, so every alert is its own group and
# its own notification.
#
# (a) latency: rule `lat.value > 10`, duration 0s, every 0.1s. BENCH_NOTIFY_LAT_N (400) gauges
#     lat.value{k=i} = 50 go in over UDP (DogStatsD tags), BENCH_NOTIFY_LAT_RATE (40) a second,
#     evenly spaced, so they fire in many evaluations. Latency = sink receive time - starts_at
#     of the body (the time of the evaluation that fired, ISO 8601 truncated to the ms: the
#     numbers read up to 1 ms high). Target: p99 <= 50 ms.
# (b) throughput: rule `tput.value > 10`, duration 0s, every 1s. BENCH_NOTIFY_N (20000) gauges
#     tput.value{k=i} = 50 in one write over StatsD TCP, so one evaluation fires them all and
#     commits BENCH_NOTIFY_N outbox rows. Throughput = notifications received / (last receipt -
#     earliest starts_at). Once per BENCH_NOTIFY_INFLIGHT value ("4 32": the default
#     notification_max_in_flight, then raised). notification_outbox_max is raised to 100000: at
#     its default (10,000) the outbox would drop half of them by design. Every Idempotency-Key
#     must arrive exactly once; the outbox rows are read back from state.db. The firing
#     evaluation (query + engine + the commit of the instance and outbox rows + enqueue) runs in
#     one turn of the agent's loop: a GET /health/live every 10 ms measures how long the loop is
#     blocked; beagle_rule_group_evaluation_seconds is read before and after.
#     Then one more pass (max_in_flight 4) under `perf record` (BENCH_NOTIFY_PROFILE=0 skips it):
#     the agent's samples per library in the firing evaluation and in the delivery.
# (c) reference: Prometheus Alertmanager (Debian's prometheus-alertmanager, one node, no
#     cluster, pinned like the agent) accepting the same BENCH_NOTIFY_N alerts POSTed to
#     /api/v2/alerts in batches of 100 by 4 keep-alive connections; until all are visible in
#     GET /api/v2/alerts. Not like for like (ingest only, no delivery); BENCH_NOTIFY_AM=0 skips it.
# BENCH_NOTIFY_NOTE: a remark printed with the build's provenance (e.g. which commit a snapshot is);
# BENCH_NOTIFY_KEEP=1 keeps the temporary directory (sink logs, agent logs, perf data).
# Takes ~2 min.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init notify
if [ -n "${BENCH_NOTIFY_KEEP:-}" ]; then
  _BENCH_TMP="" # bench_cleanup leaves it
  echo "notify: keeping $TMP" >&2
fi
LAT_N=${BENCH_NOTIFY_LAT_N:-400}
LAT_RATE=${BENCH_NOTIFY_LAT_RATE:-40}
N=${BENCH_NOTIFY_N:-20000}
INFLIGHT=${BENCH_NOTIFY_INFLIGHT:-4 32}
CPU=${BENCH_NOTIFY_CPU:-0}
SCPU=${BENCH_NOTIFY_SINK_CPU:-1}
ALERTMANAGER=${ALERTMANAGER:-/usr/bin/prometheus-alertmanager}
LAT_TARGET=50
TPUT_TARGET=5000

"${CC:-gcc}" -O2 -Wall -o "$TMP/notify_sink" "$BENCH_DIR/notify_sink.c" || exit 1

# start_sink NAME : the sink on CPU SCPU logging to $TMP/NAME.tsv; sets SINK (pid), SINK_PORT
start_sink() {
  : >"$TMP/$1.tsv"
  bench_spawn SINK taskset -c "$SCPU" "$TMP/notify_sink" "$TMP/$1.tsv" >"$TMP/$1.port" 2>"$TMP/$1.sink.err"
  SINK_PORT=""
  for _ in $(seq 100); do
    SINK_PORT=$(head -1 "$TMP/$1.port" 2>/dev/null)
    [ -n "$SINK_PORT" ] && return 0
    sleep 0.05
  done
  echo "notify: the sink did not start: $(cat "$TMP/$1.sink.err")" >&2
  return 1
}

# start_agent NAME RULE_LINES EXTRA_CONFIG : beagle on CPU CPU with the sink channel; sets AGENT,
# AGENT_URL, STATSD_PORT, AGENT_DIR
start_agent() {
  local name=$1
  AGENT_DIR="$TMP/$name"
  mkdir -p "$AGENT_DIR/rules"
  printf '%s\n' "$2" >"$AGENT_DIR/rules/$name.lua"
  cat >"$AGENT_DIR/beagle.lua" <<EOF
alert_cooldown_minutes = 0
alert_max_notifications_per_hour = 100000
max_series_per_metric = 100000
$3
channel "sink" { plugin = "webhook", url = "http://127.0.0.1:$SINK_PORT/hook" }
EOF
  local port
  port=$(free_port)
  STATSD_PORT=$(free_port)
  AGENT_URL="http://127.0.0.1:$port"
  bench_spawn AGENT env MONITORING_METRICS_COLLECTION_INTERVAL=0.1 taskset -c "$CPU" "$BEAGLE" run \
    -c "$AGENT_DIR/beagle.lua" --listen "127.0.0.1:$port" --data "$AGENT_DIR/data" \
    --statsd "127.0.0.1:$STATSD_PORT" --rules "$AGENT_DIR/rules" 2>"$AGENT_DIR/agent.log" >&2
  wait_http "$AGENT_URL/health/live" 30 || { tail "$AGENT_DIR/agent.log" >&2; return 1; }
}

# agent_metric REGEX : sum of the agent's /metrics samples whose line matches
agent_metric() {
  curl -s --max-time 10 "$AGENT_URL/metrics" | awk -v re="$1" '$0 ~ re && !/^#/ { s += $NF } END { printf "%.9g\n", s }'
}

# wait_received FILE WANT QUIET_S CAP_S : until FILE has WANT lines, or no new line for QUIET_S,
# or CAP_S seconds, or the agent is gone
wait_received() {
  local f=$1 want=$2 quiet=$3 cap=$4 n last=-1 still=$SECONDS end=$((SECONDS + $4))
  while [ $SECONDS -lt $end ]; do
    n=$(wc -l <"$f")
    [ "$n" -ge "$want" ] && return 0
    if [ "$n" != "$last" ]; then last=$n; still=$SECONDS; fi
    [ $((SECONDS - still)) -ge "$quiet" ] && break
    alive "$AGENT" || break
    sleep 0.2
  done
  echo "notify: $f has $(wc -l <"$f") of $want lines (quiet ${quiet}s, cap ${cap}s)" >&2
  return 1
}

# alive PID : running (not gone, not a zombie)
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" | grep -q '^Z'; }

# stop_agent : stops the agent; sets DIED to "" or to how it ended on its own (a crash)
stop_agent() {
  DIED=""
  if ! alive "$AGENT"; then
    wait "$AGENT" 2>/dev/null
    local rc=$?
    DIED="exit status $rc"
    [ "$rc" -gt 128 ] && DIED="killed by signal $((rc - 128))$([ "$rc" = 139 ] && echo " (SIGSEGV)")"
    echo "notify: THE AGENT DIED: $DIED; its log: $(tail -3 "$AGENT_DIR/agent.log")" >&2
  fi
  bench_stop "$AGENT"
}

# analyse FILE WANT : prints key=value lines (counts, exactly-once, latency percentiles, rates)
analyse() {
  python3 - "$1" "$2" <<'PY'
import sys, calendar, time
path, want = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(path):
    p = line.rstrip("\n").split("\t")
    if len(p) == 3:
        rows.append((float(p[0]), p[1], p[2]))
def iso(s):
    try:
        return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + s[19:].rstrip("Z"))
    except ValueError:
        return None
keys = {}
for r in rows:
    keys[r[1]] = keys.get(r[1], 0) + 1
starts = [iso(r[2]) for r in rows]
bad = sum(1 for s in starts if s is None)
lat = sorted((r[0] - s) * 1000 for r, s in zip(rows, starts) if s is not None)
def pct(q):
    if not lat: return float("nan")
    i = max(0, min(len(lat) - 1, int(-(-q * len(lat) // 1)) - 1))  # nearest rank
    return lat[i]
recv = sorted(r[0] for r in rows)
good = [s for s in starts if s is not None]
out = {
    "received": len(rows), "unique": len(keys), "dups": len(rows) - len(keys),
    "lost": max(0, want - len(keys)), "bad_starts": bad, "evaluations": len(set(r[2] for r in rows)),
    "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": lat[-1] if lat else float("nan"),
    "min": lat[0] if lat else float("nan"),
    "first_ms": float("nan"), "span_s": 0.0, "rate": 0.0, "drate": 0.0, "per_second": "none",
}
if rows and good:
    t0 = min(good)
    out["first_ms"] = (recv[0] - t0) * 1000
    out["span_s"] = recv[-1] - t0
    out["rate"] = len(keys) / (recv[-1] - t0) if recv[-1] > t0 else 0
    out["drate"] = len(keys) / (recv[-1] - recv[0]) if recv[-1] > recv[0] else 0
    # the busiest receiving second, and receipts per 1 s window after the first
    w = {}
    for t in recv: w[int(t - recv[0])] = w.get(int(t - recv[0]), 0) + 1
    out["per_second"] = " ".join(str(w.get(i, 0)) for i in range(max(w) + 1))
for k, v in out.items():
    print("%s=%s" % (k, ("%.3f" % v) if isinstance(v, float) else v))
PY
}
kv() { sed -n "s/^$1=//p" "$2"; }

# outbox_rows DIR : "state count" per state of the sink's outbox rows, and retried rows
outbox_rows() {
  sqlite3 "file:$1/data/state.db?mode=ro" \
    "SELECT state || ' ' || count(*) FROM notifications WHERE channel = 'sink' GROUP BY state;
     SELECT 'attempts>1 ' || count(*) FROM notifications WHERE channel = 'sink' AND attempts > 1;" 2>&1 |
    tr '\n' ',' | sed 's/,$//; s/,/, /g'
}

ROUTE='route { match = { alertname = "%s" }, channels = { "sink" }, group_by = { "alertname", "k" }, group_wait = "0s", group_interval = "0.1s", repeat_interval = "1h" }'

# ---- (a) latency
echo "notify: (a) latency, $LAT_N notifications at $LAT_RATE/s" >&2
start_sink lat || exit 1
# shellcheck disable=SC2059
start_agent lat "$(printf "$ROUTE" lat)
alert \"lat\" { metric = \"lat.value\", condition = \">\", threshold = 10, duration = \"0s\", every = \"0.1s\" }" "" || exit 1
sleep 1.2 # the rule's first evaluation is one interval after start
taskset -c "$SCPU" python3 - "$STATSD_PORT" "$LAT_N" "$LAT_RATE" <<'PY'
import socket, sys, time
port, n, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0 = time.monotonic()
for i in range(1, n + 1):
    d = t0 + (i - 1) / rate - time.monotonic()
    if d > 0: time.sleep(d)
    s.sendto(b"lat.value:50|g|#k:%d" % i, ("127.0.0.1", port))
PY
wait_received "$TMP/lat.tsv" "$LAT_N" 10 60
lat_hist=$(curl -s "$AGENT_URL/metrics" | awk '/^beagle_notification_delivery_seconds_(sum|count)\{channel="sink"/ { v[$1 ~ /_sum/ ? "s" : "c"] = $NF }
  END { if (v["c"] > 0) printf "%.1f ms mean over %d", v["s"] / v["c"] * 1000, v["c"] }')
lat_sent=$(agent_metric 'beagle_notifications_total\{channel="sink",result="sent"\}')
lat_agent_cpu=$(cpu_ticks "$AGENT")
: "${lat_agent_cpu:=0}"
stop_agent
LAT_DIED=$DIED
bench_stop "$SINK"
lat_rows=$(outbox_rows "$AGENT_DIR")
analyse "$TMP/lat.tsv" "$LAT_N" >"$TMP/lat.kv"
cat "$TMP/lat.kv" >&2

# ---- (b) throughput
# eval_hist : "sum count le_of_the_largest" of the tput rule file's evaluation histogram
eval_hist() {
  curl -s --max-time 30 "$AGENT_URL/metrics" | awk -v f="file=\"$1.lua\"" '
    index($0, "beagle_rule_group_evaluation_seconds_") == 1 && index($0, f) { print }'
}

# the prober of the loop's stalls: GET /health/live every 10 ms, "send_time wait_s" per request
cat >"$TMP/probe.py" <<'PY'
import http.client, signal, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
with open(out, "w", buffering=1) as f:
    while True:
        t0 = time.time()
        try:
            c.request("GET", "/health/live")
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            time.sleep(0.01)
            continue
        f.write("%.6f %.6f\n" % (t0, time.time() - t0))
        d = 0.01 - (time.time() - t0)
        if d > 0: time.sleep(d)
PY

# run_tput KEY INFLIGHT [profile] : one throughput pass; results in T[KEY,...]. With "profile",
# perf records the agent (realtime clock) and T[KEY,perf] names the file.
declare -A T
run_tput() {
  local key=$1 inf=$2 prof=${3:-} name="tput$1"
  echo "notify: (b) throughput, $N notifications, notification_max_in_flight $inf${prof:+, under perf}" >&2
  start_sink "$name" || exit 1
  # shellcheck disable=SC2059
  start_agent "$name" "$(printf "$ROUTE" tput)
alert \"tput\" { metric = \"tput.value\", condition = \">\", threshold = 10, duration = \"0s\", every = \"1s\" }" \
    "notification_max_in_flight = $inf
notification_outbox_max = 100000" || exit 1
  sleep 1.2
  eval_hist "$name" >"$TMP/$name.hist0"
  local probe perf=""
  bench_spawn probe taskset -c "$SCPU" python3 "$TMP/probe.py" "${AGENT_URL##*:}" "$TMP/$name.probe"
  if [ -n "$prof" ]; then
    bench_spawn perf perf record -k realtime -F 999 -o "$TMP/$name.perf" -p "$AGENT" 2>"$TMP/$name.perf.err" >&2
    sleep 0.3
  fi
  local c0 c1
  c0=$(cpu_ticks "$AGENT")
  T[$key,rss0]=$(rss_kb "$AGENT")
  taskset -c "$SCPU" python3 - "$STATSD_PORT" "$N" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"".join(b"tput.value:50|g|#k:%d\n" % i for i in range(1, n + 1)))
s.close()
PY
  wait_received "$TMP/$name.tsv" "$N" 20 180
  sleep 0.5 # what a retry or a duplicate would add
  c1=$(cpu_ticks "$AGENT")
  : "${c1:=$c0}"
  [ -n "$prof" ] && kill -INT "$perf" 2>/dev/null && wait "$perf" 2>/dev/null
  bench_stop "$probe"
  T[$key,results]=$(curl -s "$AGENT_URL/metrics" | awk '/^beagle_notifications_total\{channel="sink"/ {
    r = $1; sub(/.*result="/, "", r); sub(/".*/, "", r); printf "%s%s %s", sep, r, $NF; sep = ", " }')
  T[$key,failures]=$(agent_metric 'beagle_notification_attempt_failures_total\{channel="sink"\}')
  eval_hist "$name" >"$TMP/$name.hist1"
  T[$key,rss]=$(rss_kb "$AGENT")
  stop_agent
  T[$key,died]=$DIED
  bench_stop "$SINK"
  T[$key,rows]=$(outbox_rows "$AGENT_DIR")
  T[$key,cpu]=$(calc "($c1 - $c0) / $CLK_TCK")
  analyse "$TMP/$name.tsv" "$N" >"$TMP/$name.kv"
  cat "$TMP/$name.kv" >&2
  # evaluations in the phase, their time, and the bucket of the longest one
  T[$key,evals]=$(cat "$TMP/$name.hist0" - "$TMP/$name.hist1" <<<"--" | awk '
    $0 == "--" { second = 1; next }
    { v = $NF; k = $1; if (second) d[k] = v - a[k]; else a[k] = v; if (second) order[++n] = k }
    END {
      for (i = 1; i <= n; i++) {
        k = order[i]
        if (k ~ /_sum/) s = d[k]; else if (k ~ /_count/) c = d[k]
      }
      prev = "0"
      for (i = 1; i <= n; i++) {
        k = order[i]
        if (k ~ /_bucket/) {
          le = k; sub(/.*le="/, "", le); sub(/".*/, "", le)
          if (d[k] >= c && top == "") top = "(" prev ", " le "] s"
          prev = le
        }
      }
      printf "%d evaluations, %.3f s in all, the longest in %s", c, s, top }')
  # the loop's stalls relative to the earliest starts_at: the longest, and those after the first receipt
  T[$key,stall]=$(python3 - "$TMP/$name.probe" "$TMP/$name.tsv" <<'PY'
import calendar, sys, time
pr = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
def iso(s):
    try: return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + s[19:].rstrip("Z"))
    except ValueError: return None
st = [x for x in (iso(r[2]) for r in rows if len(r) == 3) if x is not None]
if not pr or not st:
    print("n/a; no receipts"); sys.exit()
t0, first = min(st), min(float(r[0]) for r in rows)
big = max(pr, key=lambda p: p[1])
after = [p[1] for p in pr if p[0] >= first and p[1] >= 0.05]
print("%.3f s; the longest from %+.3f s (relative to starts_at); after the first receipt %d stalls >= 50 ms, %.2f s in all, the longest %.3f s"
      % (big[1], big[0] - t0, len(after), sum(after), max(after) if after else 0))
PY
)
  [ -n "$prof" ] && T[$key,perf]="$TMP/$name.perf"
}

for inf in $INFLIGHT; do run_tput "$inf" "$inf"; done

# a separate pass under perf (not in the numbers above): where the agent's time goes, in the
# firing evaluation and in the delivery
PROFILE=""
if [ "${BENCH_NOTIFY_PROFILE:-1}" = 1 ] && perf record -o "$TMP/perf.try" -- true >/dev/null 2>&1; then
  run_tput prof 4 profile
  PROFILE=$(python3 - "${T[prof,perf]}" "$TMP/tputprof.tsv" <<'PY'
import calendar, subprocess, sys, time
perf, tsv = sys.argv[1], sys.argv[2]
rows = [l.rstrip("\n").split("\t") for l in open(tsv)]
def iso(s):
    try: return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + s[19:].rstrip("Z"))
    except ValueError: return None
st = [x for x in (iso(r[2]) for r in rows if len(r) == 3) if x is not None]
if not st:
    print("no receipts: no profile"); sys.exit()
recv = sorted(float(r[0]) for r in rows)
t0 = min(st)
NAMES = {"libluajit": "LuaJIT interpreter and C API", "[JIT]": "JIT-compiled Lua", "libsqlite3": "SQLite",
         "[kernel.kallsyms]": "kernel", "libc.so": "libc (malloc, memcpy, ...)", "libcurl": "libcurl",
         "beagle": "beagle's C core", "libuv": "libuv", "cjson": "cjson"}
def name(d):
    for k, v in NAMES.items():
        if d.startswith(k) or k in d: return v
    return d
def report(a, b, sort):
    out = subprocess.run(["perf", "report", "-i", perf, "--time", "%.6f,%.6f" % (a, b), "--no-children",
                          "--sort", sort, "-g", "none", "--stdio"], capture_output=True, text=True).stdout
    res = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#"): continue
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].endswith("%"): res.append((parts[0], parts[1]))
    return res
def window(label, a, b):
    dso = ", ".join("%s %s" % (name(d), pc) for pc, d in report(a, b, "dso")[:7])
    syms = [(pc, s.split("] ", 1)[-1]) for pc, s in report(a, b, "sym") if "0x0000" not in s][:8]
    return "%s (%.2f s): %s. Top named symbols: %s." % (label, b - a, dso, ", ".join("%s %s" % (s, pc) for pc, s in syms))
print(window("Firing evaluation, from starts_at - 50 ms to the first receipt", t0 - 0.05, recv[0]))
print(window("Delivery, first to last receipt", recv[0], recv[-1]))
PY
)
fi

# ---- (c) Alertmanager ingest, reference
AM_RES=""
if [ "${BENCH_NOTIFY_AM:-1}" = 1 ] && [ -x "$ALERTMANAGER" ]; then
  echo "notify: (c) Alertmanager ingest of $N alerts" >&2
  AM_VER=$("$ALERTMANAGER" --version 2>&1 | awk 'NR == 1 { print $3 }')
  AMP=$(free_port)
  mkdir -p "$TMP/am"
  printf 'route:\n  receiver: blackhole\nreceivers:\n- name: blackhole\n' >"$TMP/am/am.yml"
  bench_spawn AM taskset -c "$CPU" "$ALERTMANAGER" --config.file="$TMP/am/am.yml" --storage.path="$TMP/am/data" \
    --web.listen-address="127.0.0.1:$AMP" --cluster.listen-address= --log.level=warn 2>"$TMP/am/am.log"
  wait_http "http://127.0.0.1:$AMP/-/ready" 30 || { tail "$TMP/am/am.log" >&2; exit 1; }
  AM_RES=$(taskset -c "$SCPU" python3 - "$AMP" "$N" <<'PY'
import http.client, json, queue, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
now = time.time()
iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int(t % 1 * 1000)
alerts = [{"labels": {"alertname": "tput", "severity": "warning", "k": str(i)},
           "annotations": {"message": "tput %d is 50" % i}, "startsAt": iso(now), "endsAt": iso(now + 240)}
          for i in range(1, n + 1)]
bodies = [json.dumps(alerts[i:i + 100]).encode() for i in range(0, n, 100)]
q = queue.Queue()
for b in bodies: q.put(b)
bad = []
def worker():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        try: b = q.get_nowait()
        except queue.Empty: return
        c.request("POST", "/api/v2/alerts", b, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
t1 = time.monotonic()
seen = 0
while time.monotonic() - t1 < 30:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/api/v2/alerts?silenced=false&inhibited=false")
    seen = sum(1 for a in json.loads(c.getresponse().read()) if a["labels"].get("alertname") == "tput")
    if seen >= n: break
    time.sleep(0.1)
t2 = time.monotonic()
print("posts=%d bad=%d accept_s=%.3f visible=%d visible_s=%.3f" % (len(bodies), len(bad), t1 - t0, seen, t2 - t0))
PY
)
  AM_CPU=$(calc "$(cpu_ticks "$AM") / $CLK_TCK")
  bench_stop "$AM"
  echo "notify: alertmanager $AM_RES" >&2
fi

# ---- report
L="$TMP/lat.kv"
lat_v=$(verdict "$(kv p99 "$L") <= $LAT_TARGET && $(kv lost "$L") == 0")
crash() { [ -n "$1" ] && echo "; AGENT CRASHED ($1)"; }
md "### 7. Notifications: latency from the firing evaluation to the receiver, and outbox throughput"
md ""
src=$(awk -F= '/^CMAKE_HOME_DIRECTORY:/ { print $2 }' "$BUILD/CMakeCache.txt" 2>/dev/null)
md "beagle: $("$BEAGLE" version 2>/dev/null | head -1), ${BEAGLE#"$REPO"/}, built from $([ "${src:-?}" = "$REPO" ] && echo "this checkout" || echo "${src:-?}") (git $(git -C "${src:-/nonexistent}" rev-parse --short HEAD 2>/dev/null || echo "n/a: not a checkout"))${BENCH_NOTIFY_NOTE:+; $BENCH_NOTIFY_NOTE}."
md ""
md "Agent (webhook channel \"sink\") on CPU $CPU; bench/notify_sink.c (single-threaded epoll HTTP/1.1, keep-alive, logs"
md "receive time, Idempotency-Key and the body's starts_at per request) and the StatsD senders on CPU $SCPU; loopback."
md "Settings: alert_cooldown_minutes 0, alert_max_notifications_per_hour 100000, max_series_per_metric 100000,"
md "metrics_collection_interval 0.1 s. Route: group_by alertname + k, group_wait 0s, group_interval 0.1s, so each alert is"
md "its own group and its own notification. Latency = receive time - starts_at (the evaluation that fired; ISO 8601"
md "truncated to the millisecond, so up to 1 ms high)."
md ""
md "**(a) latency**: rule \`lat.value > 10\`, duration 0s, every 0.1s; $LAT_N gauges lat.value{k=i} = 50 over UDP StatsD"
md "(\`lat.value:50|g|#k:i\`), $LAT_RATE a second, evenly spaced; default notification_max_in_flight (4)."
md ""
md "| notifications | fired in evaluations | p50 | p90 | p99 | max | min | target p99 | verdict |"
md "|---|---|---|---|---|---|---|---|---|"
md "| $(kv unique "$L") of $LAT_N (duplicates $(kv dups "$L"), lost $(kv lost "$L")$(crash "$LAT_DIED")) | $(kv evaluations "$L") | $(kv p50 "$L") ms | $(kv p90 "$L") ms | $(kv p99 "$L") ms | $(kv max "$L") ms | $(kv min "$L") ms | <= $LAT_TARGET ms | $lat_v |"
md ""
md "Agent's own view, beagle_notification_delivery_seconds (decision to the receiver's 200): ${lat_hist:-n/a}; sent $lat_sent."
md "Outbox rows after the run: $lat_rows. Agent CPU over the phase: $(calc "$lat_agent_cpu / $CLK_TCK") s."
md ""
md "**(b) throughput**: rule \`tput.value > 10\`, duration 0s, every 1s; $N gauges tput.value{k=i} = 50 in one write over"
md "StatsD TCP, so one evaluation fires all of them and commits $N outbox rows (notification_outbox_max raised to"
md "100000: at its default, 10,000, the outbox would drop half of them by design). Throughput = notifications received /"
md "(last receipt - earliest starts_at); \"delivery only\" = / (last - first receipt). \"Loop blocked\" = the longest wait of"
md "a GET /health/live sent every 10 ms during the phase: the firing evaluation (query, engine, the commit of the $N"
md "instance and outbox rows, their enqueue) runs in one turn of the agent's loop, before anything is sent. Agent CPU ="
md "utime + stime from the burst to the last receipt + 0.5 s."
md ""
md "| notification_max_in_flight | received (unique / duplicates / lost) | fired in evaluations | loop blocked by the firing evaluation | evaluation to first receipt | notifications/s (target >= $TPUT_TARGET) | delivery only | verdict | agent CPU | agent results | outbox rows after |"
md "|---|---|---|---|---|---|---|---|---|---|---|"
for inf in $INFLIGHT; do
  K="$TMP/tput$inf.kv"
  T[$inf,verdict]=$(verdict "$(kv rate "$K") >= $TPUT_TARGET && $(kv lost "$K") == 0 && $(kv dups "$K") == 0")
  label="$inf"
  [ "$inf" = 4 ] && label="4 (default)"
  md "| $label | $(kv unique "$K") / $(kv dups "$K") / $(kv lost "$K")$(crash "${T[$inf,died]}") | $(kv evaluations "$K") | ${T[$inf,stall]%%;*} | $(fmt %.0f "$(kv first_ms "$K")") ms | $(fmt %.0f "$(kv rate "$K")") | $(fmt %.0f "$(kv drate "$K")")/s | ${T[$inf,verdict]} | $(fmt %.2f "${T[$inf,cpu]}") s | ${T[$inf,results]} (attempt failures ${T[$inf,failures]}) | ${T[$inf,rows]} |"
done
md ""
for inf in $INFLIGHT; do
  K="$TMP/tput$inf.kv"
  md "max_in_flight $inf: agent CPU per notification $(fmt %.3f "$(calc "${T[$inf,cpu]} * 1000 / $N")") ms. Receipts per second from the first one: $(kv per_second "$K"). Rule file: ${T[$inf,evals]}. Loop stalls (GET /health/live every 10 ms): ${T[$inf,stall]}. Agent VmRSS before the burst $(fmt %.1f "$(calc "${T[$inf,rss0]:-0} / 1024")") MiB, at the end $(fmt %.1f "$(calc "${T[$inf,rss]:-0} / 1024")") MiB."
  if [ "$(kv lost "$K")" != 0 ] || [ "$(kv dups "$K")" != 0 ]; then
    md ""
    md "**NOTIFICATIONS LOST OR DUPLICATED with max_in_flight $inf: $(kv lost "$K") of $N never arrived, $(kv dups "$K") arrived more than once$(crash "${T[$inf,died]}").**"
  fi
done
md ""
if [ -n "$AM_RES" ]; then
  am_s=$(sed -n 's/.*accept_s=\([0-9.]*\).*/\1/p' <<<"$AM_RES")
  am_vis=$(sed -n 's/.*visible=\([0-9]*\).*/\1/p' <<<"$AM_RES")
  am_vs=$(sed -n 's/.*visible_s=\([0-9.]*\).*/\1/p' <<<"$AM_RES")
  am_bad=$(sed -n 's/.*bad=\([0-9]*\).*/\1/p' <<<"$AM_RES")
  AM_RATE=$(calc "$N / $am_s")
  md "**(c) reference: Alertmanager ingest.** Alertmanager $AM_VER (one node, --cluster.listen-address=, a blackhole receiver) on CPU"
  md "$CPU: the same $N alerts (labels alertname, severity, k; a message annotation; endsAt now + 4 min, as beagle's"
  md "alertmanager channel sends them) POSTed to /api/v2/alerts in $((N / 100)) batches of 100 over 4 keep-alive connections"
  md "(python, CPU $SCPU): all answered in $(fmt %.3f "$am_s") s ($(fmt %.0f "$AM_RATE") alerts/s; non-200 answers: $am_bad); $am_vis visible in"
  md "GET /api/v2/alerts after $(fmt %.3f "$am_vs") s; Alertmanager CPU $(fmt %.2f "$AM_CPU") s in all. This is ingest into memory only: no"
  md "durable row, no delivery, 100 alerts per request; a reference point, not a like-for-like ratio."
  md ""
fi

if [ -n "$PROFILE" ]; then
  md "**Where the agent's time goes** (a separate throughput pass, max_in_flight 4, under \`perf record -F 999\`, not in"
  md "the numbers above: $(fmt %.0f "$(kv rate "$TMP/tputprof.kv")") notifications/s there). Share of the agent's samples per library; LuaJIT's"
  md "interpreter has no symbols here (plugin and rule code runs with the JIT off, see lua/agent/sandbox.lua)."
  md ""
  while IFS= read -r line; do md "- $line"; done <<<"$PROFILE"
  md ""
fi

FAILED=""
{ [ "$(kv lost "$L")" != 0 ] || [ -n "$LAT_DIED" ]; } && FAILED=1
summary "7a. notification latency, evaluation -> webhook receipt (p50 / p90 / p99 / max)" \
  "$(kv p50 "$L") / $(kv p90 "$L") / $(kv p99 "$L") / $(kv max "$L") ms ($(kv unique "$L")/$LAT_N received$(crash "$LAT_DIED"))" \
  "p99 <= $LAT_TARGET ms" "n/a" "n/a" "$lat_v"
for inf in $INFLIGHT; do
  K="$TMP/tput$inf.kv"
  label="notification_max_in_flight $inf"
  [ "$inf" = 4 ] && label="notification_max_in_flight 4 (default)"
  got="$(kv unique "$K")/$N received once each; loop blocked ${T[$inf,stall]%%;*} by the firing evaluation"
  if [ "$(kv lost "$K")" != 0 ] || [ "$(kv dups "$K")" != 0 ]; then
    got="$(kv unique "$K")/$N received; LOST $(kv lost "$K"), DUPLICATED $(kv dups "$K")$(crash "${T[$inf,died]}")"
    FAILED=1
  fi
  summary "7b. outbox throughput, $N notifications committed + delivered, $label" \
    "$(fmt %.0f "$(kv rate "$K")")/s ($got)" \
    ">= $TPUT_TARGET/s" "$([ -n "$AM_RES" ] && echo "reference: Alertmanager ingest $(fmt %.0f "$AM_RATE") alerts/s (batches of 100, memory only)" || echo n/a)" \
    "n/a (not like for like)" "${T[$inf,verdict]}"
done
# lost or duplicated notifications, or a crash, fail the step (run.sh marks it), besides the rows
if [ -n "$FAILED" ]; then
  echo "notify: NOTIFICATIONS WERE LOST OR DUPLICATED, OR THE AGENT CRASHED: see the rows above" >&2
  exit 1
fi
