#!/usr/bin/env bash
# Soak (issue 14, "Done when"): the agent as users run it (`beagle run --listen --data -c
# config`, pinned to CPU 0) under hostile input and broken storage, one fresh agent per
# scenario, while a health probe (bench/soak_load.py probe: GET /health on a fresh connection
# every 50 ms, 1 s timeout) measures what a load balancer would see. Prints one table and
# writes it to bench/RESULTS.md (section "14. Soak"):
#   slowloris   2,000 connections that send nothing + 2,000 that send a head one byte a second,
#               each reopened when the server closes it (at most SOAK_RATE connects/s), with
#               the default connection limit, again with room for all 4,000 at once, and at
#               the default limit against an attacker reopening up to SOAK_FAST_RATE/s (20,000);
#               target: /health success >= 99 % and p99 <= 50 ms
#   set bomb    10 s of StatsD |s lines over UDP, 1,000 distinct values per set name;
#               target: RSS <= 256 MiB
#   name flood  150,000 distinct StatsD counter names; the beagle_* self families in /metrics
#               before and after (target: all remain)
#   full disk   the data directory on a tmpfs filled to the last byte (needs root to mount;
#               otherwise reported as not measured), 5 alerts firing every second into a
#               webhook sink: notifications delivered vs rows committed (target: delivered <=
#               committed)
#   corrupt     state.db and history.db replaced by 64 KiB of random bytes before start: does
#               the agent start, what /health/ready and /health/detailed say
# Knobs: BUILD (the build dir, default build), SOAK_SECONDS (probe window under slowloris, 30),
# SOAK_RATE (attacker connects/s, 1000), SOAK_FAST_RATE (20000), SOAK_FULLDISK_CONTROL (1: the
# full-disk scenario again without filling the disk, to show what the harness counts when the
# store works), SOAK_COMPARE (another build dir: its slowloris row is added, e.g. a build of
# the commit before a fix), SOAK_NOTE (a paragraph above the table), SOAK_ONLY (subset:
# slowloris setbomb nameflood fulldisk corrupt), SOAK_RESULTS (default bench/RESULTS.md; "-"
# writes none).
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init soak

WIN=${SOAK_SECONDS:-30}
RATE=${SOAK_RATE:-1000}
ONLY=${SOAK_ONLY:-slowloris setbomb nameflood fulldisk corrupt}
RESULTS=${SOAK_RESULTS:-$BENCH_DIR/RESULTS.md}
LOAD=(python3 "$BENCH_DIR/soak_load.py")
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
ROWS="$TMP/rows.tsv"
# The built-in system check is off in every scenario: it reports the machine's CPU (unhealthy
# at 95 %, so /health answers 503), which the load generators themselves drive on 2 CPUs.
NOSYS='check "system" { enabled = false }'
: >"$ROWS"

# rev_of BUILD_DIR : the commit a build was made from (its source tree's git HEAD, or the
# REVISION file of an exported tree), "+dirty" when the tree has uncommitted changes
rev_of() {
  local src
  src=$(awk -F= '/^CMAKE_HOME_DIRECTORY:/ {print $2}' "$1/CMakeCache.txt" 2>/dev/null)
  if [ -n "$src" ] && git -C "$src" rev-parse --short HEAD >/dev/null 2>&1; then
    printf '%s' "$(git -C "$src" rev-parse --short HEAD)"
    git -C "$src" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && printf '+dirty'
  elif [ -n "$src" ] && [ -f "$src/REVISION" ]; then
    printf '%s' "$(cat "$src/REVISION")"
  else
    printf unknown
  fi
}

jget() { # FILE EXPR : a value from a JSON file, EXPR in Python over `d`
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null || echo "?"
}
mib() { awk -v k="${1:-0}" 'BEGIN { if (k == "") print "?"; else printf "%.1f", k / 1024 }'; }
# row SCENARIO LOAD FAILURES RSS P99 RESULT COMMIT ; this run's temp dir (in what the agent
# says about its data files) is written as <tmp>: no machine paths in the table
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" | sed "s#$TMP#<tmp>#g" >>"$ROWS"; }

# agent_start NAME CONFIG DATA [args...] : sets PORT and AGENT (pid); waits for /health
agent_start() {
  local name=$1 cfg=$2 data=$3
  shift 3
  PORT=$(free_port)
  bench_spawn AGENT taskset -c "$SERVER_CPU" "$AGENT_BIN" run --listen "127.0.0.1:$PORT" \
    --data "$data" -c "$cfg" "$@" 2>"$TMP/$name.log"
  wait_http "http://127.0.0.1:$PORT/health" 15
}
alive() { kill -0 "$1" 2>/dev/null && echo yes || echo "no (exited)"; }

# probe_start SECONDS OUT : the health probe in the background (PROBE pid)
probe_start() {
  bench_spawn PROBE taskset -c "$CLIENT_CPU" "${LOAD[@]}" probe "$PORT" --seconds "$1" >"$2"
}
probe_cols() { # OUT : sets P_FAIL and P_P99 for the table
  local f=$1
  P_FAIL="$(jget "$f" 'd["count"] - d["ok"]') of $(jget "$f" 'd["count"]') ($(jget "$f" 'd["success_pct"]') % ok$(jget "$f" '"; " + ", ".join("%s %d" % kv for kv in d["errors"].items()) if d["errors"] else ""'))"
  P_P99="$(jget "$f" 'd["p99_ms"]') ms"
}

# ---- slowloris ------------------------------------------------------------------------------
slowloris() { # LABEL BUILD_DIR [SETTING_LINE [RATE]]
  local label=$1 bin="$2/beagle" rev r0 r1 hwm verdict rate=${4:-$RATE}
  rev=$(rev_of "$2")
  AGENT_BIN=$bin
  { echo "-- soak: the defaults"; echo "$NOSYS"; echo "statsd_address = \"off\""; } >"$TMP/sl.lua"
  [ -n "${3:-}" ] && echo "$3" >>"$TMP/sl.lua"
  rm -rf "$TMP/data-sl"
  agent_start "slowloris-$rev" "$TMP/sl.lua" "$TMP/data-sl" || {
    row "$label" "2,000 idle + 2,000 slow-head conns" "agent did not start" "" "" "" "$rev"
    return
  }
  sleep 2
  r0=$(rss_kb "$AGENT")
  local ramp=8
  bench_spawn ATT taskset -c "$CLIENT_CPU" "${LOAD[@]}" slowloris "$PORT" --idle 2000 --slow 2000 \
    --seconds $((ramp + WIN + 2)) --rate "$rate" --settle "$ramp" >"$TMP/sl-$rev.json"
  sleep "$ramp"
  "${LOAD[@]}" probe "$PORT" --seconds "$WIN" >"$TMP/sl-probe-$rev.json"
  wait "$ATT" 2>/dev/null
  r1=$(rss_kb "$AGENT")
  hwm=$(hwm_kb "$AGENT")
  local after
  after=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/health")
  probe_cols "$TMP/sl-probe-$rev.json"
  local f="$TMP/sl-$rev.json" ok p99
  ok=$(jget "$TMP/sl-probe-$rev.json" 'd["success_pct"]')
  p99=$(jget "$TMP/sl-probe-$rev.json" 'd["p99_ms"]')
  verdict=$(verdict "$ok >= 99 && $p99 <= 50")
  row "$label" "2,000 idle + 2,000 slow-head conns, reopened at <= $rate/s; probe ${WIN}s" \
    "$P_FAIL" "$(mib "$r0") / $(mib "$r1") (peak $(mib "$hwm"))" "$P_P99" \
    "$verdict (>= 99 %, <= 50 ms). After the ${ramp} s ramp the attacker held on average $(jget "$f" 'd["idle_open_mean"]') idle + $(jget "$f" 'd["slow_open_mean"]') slow-head conns (min $(jget "$f" 'd["idle_open_min"]') + $(jget "$f" 'd["slow_open_min"]')), $(jget "$f" 'd["connects"]') connects, $(jget "$f" 'd["closed_by_server"]') closed by the server ($(jget "$f" 'd["reconnects_per_s"]') reopened/s); agent alive: $(alive "$AGENT"), /health after: $after" \
    "$rev"
  bench_stop "$AGENT"
}

# ---- StatsD set bomb --------------------------------------------------------------------------
setbomb() {
  local rev r0 r1 hwm sport l0 l1
  rev=$(rev_of "$BUILD")
  AGENT_BIN=$BEAGLE
  sport=$(free_port)
  printf '%s\nstatsd_address = "127.0.0.1:%s"\n' "$NOSYS" "$sport" >"$TMP/statsd.lua"
  agent_start setbomb "$TMP/statsd.lua" "$TMP/data-sb" || return
  sleep 2
  r0=$(rss_kb "$AGENT")
  l0=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^beagle_statsd_lines_total/ {print $2}')
  probe_start 16 "$TMP/sb-probe.json"
  "${LOAD[@]}" setbomb "$sport" --seconds 10 --values 1000 >"$TMP/sb.json"
  sleep 5
  wait "$PROBE" 2>/dev/null
  r1=$(rss_kb "$AGENT")
  hwm=$(hwm_kb "$AGENT")
  l1=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk '/^beagle_statsd_lines_total/ {print $2}')
  probe_cols "$TMP/sb-probe.json"
  row "StatsD set bomb" "10 s of UDP |s lines, 1,000 distinct values per set ($(jget "$TMP/sb.json" 'd["lines"]') lines sent, $(jget "$TMP/sb.json" 'd["sets"]') sets)" \
    "$P_FAIL" "$(mib "$r0") / $(mib "$r1") (peak $(mib "$hwm"))" "$P_P99" \
    "$(verdict "${hwm:-99999999} / 1024 <= 256") (peak RSS <= 256 MiB); lines the agent counted: $(awk -v a="${l0:-0}" -v b="${l1:-0}" 'BEGIN { printf "%.0f", b - a }'); agent alive: $(alive "$AGENT")" \
    "$rev"
  bench_stop "$AGENT"
}

# ---- StatsD name flood ------------------------------------------------------------------------
nameflood() {
  local rev r0 r1 hwm sport
  rev=$(rev_of "$BUILD")
  AGENT_BIN=$BEAGLE
  sport=$(free_port)
  {
    echo "$NOSYS"
    echo "statsd_address = \"127.0.0.1:$sport\""
    echo "metrics_collection_interval = \"1s\""
  } >"$TMP/flood.lua"
  agent_start nameflood "$TMP/flood.lua" "$TMP/data-nf" || return
  sleep 4 # the agent's own gauges are set on its first collections
  r0=$(rss_kb "$AGENT")
  "${LOAD[@]}" selfseries "http://127.0.0.1:$PORT/metrics" >"$TMP/nf-before.json"
  probe_start 20 "$TMP/nf-probe.json"
  "${LOAD[@]}" nameflood "$sport" --names 150000 >"$TMP/nf.json"
  sleep 4
  "${LOAD[@]}" selfseries "http://127.0.0.1:$PORT/metrics" >"$TMP/nf-after.json"
  wait "$PROBE" 2>/dev/null
  r1=$(rss_kb "$AGENT")
  hwm=$(hwm_kb "$AGENT")
  probe_cols "$TMP/nf-probe.json"
  local b a missing
  b=$(jget "$TMP/nf-before.json" 'd["nfamilies"]')
  a=$(python3 -c 'import json, sys
b = set(json.load(open(sys.argv[1]))["families"]); a = set(json.load(open(sys.argv[2])).get("families", []))
print(len(b & a))' "$TMP/nf-before.json" "$TMP/nf-after.json" 2>/dev/null || echo "?")
  missing=$(python3 -c 'import json, sys
b = set(json.load(open(sys.argv[1]))["families"]); a = set(json.load(open(sys.argv[2])).get("families", []))
m = sorted(b - a); print(", ".join(m[:6]) + (" ..." if len(m) > 6 else "") if m else "none")' "$TMP/nf-before.json" "$TMP/nf-after.json" 2>/dev/null || echo "?")
  row "StatsD name flood" "150,000 distinct counter names over UDP" \
    "$P_FAIL" "$(mib "$r0") / $(mib "$r1") (peak $(mib "$hwm"))" "$P_P99" \
    "$(verdict "\"$a\" == \"$b\"") ($a of $b beagle_* families remain; beagle_* series $(jget "$TMP/nf-before.json" 'd["series"]') before, $(jget "$TMP/nf-after.json" 'd.get("series")') after; missing: $missing); all series in /metrics after: $(jget "$TMP/nf-after.json" 'd.get("all_series")'); StatsD lines the agent counted: $(jget "$TMP/nf-after.json" 'd.get("statsd_lines")'); agent alive: $(alive "$AGENT")" \
    "$rev"
  bench_stop "$AGENT"
}

# ---- full disk --------------------------------------------------------------------------------
fulldisk() { # [FILL: 1 fills the disk (default), 0 is the control: the same with room]
  local fill=${1:-1} label="full disk" rev r0 r1 hwm sport sink_port disk="$TMP/disk"
  [ "$fill" = 1 ] || label="full disk, control (not filled)"
  rev=$(rev_of "$BUILD")
  AGENT_BIN=$BEAGLE
  mkdir -p "$disk"
  if ! mount -t tmpfs -o size=8m tmpfs "$disk" 2>"$TMP/mount.err"; then
    row "$label" "-" "-" "-" "-" "not measured: cannot mount a small tmpfs ($(head -c 80 "$TMP/mount.err"); needs root)" "$rev"
    return
  fi
  MOUNTED=$disk
  sport=$(free_port)
  sink_port=$(free_port)
  : >"$TMP/sink.txt"
  bench_spawn SINK "${LOAD[@]}" sink "$sink_port" "$TMP/sink.txt"
  mkdir -p "$TMP/rules"
  cat >"$TMP/rules/soak.lua" <<'EOF'
-- bench/soak.sh: one alert per host while soak.disk > 1, re-sent every second
alert "soak_disk" { metric = "soak.disk", condition = ">", threshold = 1, duration = "0s", every = "1s", severity = "error" }
route { channels = { "sink" }, group_by = { "alertname", "host" }, group_wait = "0s", group_interval = "1s", repeat_interval = "1s" }
EOF
  {
    echo "$NOSYS"
    echo "statsd_address = \"127.0.0.1:$sport\""
    echo "metrics_collection_interval = \"1s\""
    echo "alert_evaluation_interval = \"1s\""
    echo "alert_cooldown_minutes = 0"
    echo "alert_max_notifications_per_hour = 100000"
    echo "channel \"sink\" { plugin = \"webhook\", url = \"http://127.0.0.1:$sink_port/hook\" }"
  } >"$TMP/disk.lua"
  agent_start fulldisk "$TMP/disk.lua" "$disk/data" --rules "$TMP/rules" || {
    row "$label" "-" "agent did not start" "" "" "$(tail -c 200 "$TMP/fulldisk.log")" "$rev"
    return
  }
  sleep 2
  r0=$(rss_kb "$AGENT")
  # fill the filesystem to the last block
  [ "$fill" = 1 ] && dd if=/dev/zero of="$disk/fill" bs=4k 2>/dev/null
  local free
  free=$(df -k --output=avail "$disk" | tail -1 | tr -d ' ')
  probe_start 30 "$TMP/fd-probe.json"
  local ready=""
  for i in $(seq 1 30); do
    for h in 1 2 3 4 5; do echo "soak.disk:5|g|#host:h$h" >"/dev/udp/127.0.0.1/$sport"; done
    [ "$i" = 15 ] && ready=$(curl -s -w ' %{http_code}' --max-time 2 "http://127.0.0.1:$PORT/health/ready")
    sleep 1
  done
  wait "$PROBE" 2>/dev/null
  r1=$(rss_kb "$AGENT")
  hwm=$(hwm_kb "$AGENT")
  probe_cols "$TMP/fd-probe.json"
  bench_stop "$AGENT"
  bench_stop "$SINK"
  rm -f "$disk/fill"
  "${LOAD[@]}" committed "$disk/data/state.db" >"$TMP/fd-committed.json"
  local delivered keys logged
  delivered=$(wc -l <"$TMP/sink.txt")
  keys=$(sort -u "$TMP/sink.txt" | wc -l)
  logged=$(grep -ciE 'disk|full|SQLITE_FULL|store' "$TMP/fulldisk.log")
  row "$label" "data dir on an 8 MiB tmpfs ($free KiB free), 5 alerts firing, 30 s" \
    "$P_FAIL" "$(mib "$r0") / $(mib "$r1") (peak $(mib "$hwm"))" "$P_P99" \
    "$(verdict "$delivered <= $(jget "$TMP/fd-committed.json" 'd.get("total", 0)')") (delivered <= committed): delivered $delivered ($keys dedup keys), committed $(jget "$TMP/fd-committed.json" 'd.get("total", d.get("error"))') rows ($(jget "$TMP/fd-committed.json" 'd.get("dedup_keys", "?")') keys); /health/ready at 15 s: ${ready:-?}; log lines about the store/disk: $logged" \
    "$rev"
  umount "$disk" && MOUNTED=""
  rm -f "$TMP/sink.txt"
}

# ---- corrupt data files -----------------------------------------------------------------------
corrupt() {
  local rev r0 data="$TMP/data-corrupt"
  rev=$(rev_of "$BUILD")
  AGENT_BIN=$BEAGLE
  mkdir -p "$data"
  head -c 65536 /dev/urandom >"$data/state.db"
  head -c 65536 /dev/urandom >"$data/history.db"
  printf '%s\nstatsd_address = "off"\n' "$NOSYS" >"$TMP/corrupt.lua"
  local started=yes
  agent_start corrupt "$TMP/corrupt.lua" "$data" || started="no"
  sleep 3
  local health ready detailed files
  health=$(curl -s -w ' %{http_code}' --max-time 2 "http://127.0.0.1:$PORT/health" | python3 -c 'import json, sys
t = sys.stdin.read(); body, code = t.rsplit(" ", 1)
try: print(json.loads(body).get("status"), code)
except ValueError: print("?", code)')
  ready=$(curl -s -w ' (%{http_code})' --max-time 2 "http://127.0.0.1:$PORT/health/ready" | head -c 300)
  detailed=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/health/detailed" | python3 -c 'import json, sys
try: d = json.load(sys.stdin)
except ValueError: print("not JSON"); sys.exit()
out = []
def walk(o, path):
    if isinstance(o, dict):
        for k, v in o.items():
            p = path + "." + k if path else k
            if any(w in k.lower() for w in ("store", "durab", "db", "degraded")):
                if isinstance(v, list):  # one entry per store: what it is and what is wrong
                    keep = ("db", "up", "durable", "ok", "status", "error", "reason")
                    v = [{kk: e[kk] for kk in keep if kk in e} if isinstance(e, dict) else e for e in v]
                out.append("%s=%s" % (p, json.dumps(v, sort_keys=True)[:400]))
            else:
                walk(v, p)
    elif isinstance(o, list):
        for i, v in enumerate(o[:20]):
            walk(v, path + "[%d]" % i)
walk(d, "")
print("; ".join(out) if out else "nothing about the store (status %s)" % d.get("status"))')
  r0=$(rss_kb "$AGENT")
  files=$(cd "$data" && ls -1 | tr '\n' ' ')
  row "corrupt data files" "state.db and history.db = 64 KiB random bytes at start" \
    "-" "$(mib "$r0") (after start)" "-" \
    "starts: $started, alive after 3 s: $(alive "$AGENT"); /health: $health; /health/ready: $ready; /health/detailed: $detailed; data dir now: $files; log: $(grep -E 'level=(error|warn)' "$TMP/corrupt.log" | head -3 | grep -oE '(msg|error)="[^"]*"' | tr '\n' ' ')" \
    "$rev"
  bench_stop "$AGENT"
}

MOUNTED=""
trap '[ -n "$MOUNTED" ] && umount "$MOUNTED" 2>/dev/null; bench_cleanup' EXIT
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
for s in $ONLY; do
  echo "soak: $s ..." >&2
  case $s in
    slowloris)
      slowloris "slowloris (defaults: 1,024 connections)" "$BUILD"
      # room for all 4,000 at once: the first-byte and head deadlines alone keep /health up
      slowloris "slowloris (http_max_connections = 8192)" "$BUILD" "http_max_connections = 8192"
      # the same at the default limit against an attacker reopening as fast as it can
      slowloris "slowloris (defaults), fast reconnects" "$BUILD" "" "${SOAK_FAST_RATE:-20000}"
      if [ -n "${SOAK_COMPARE:-}" ]; then
        case "$SOAK_COMPARE" in /*) ;; *) SOAK_COMPARE="$REPO/$SOAK_COMPARE" ;; esac
        slowloris "slowloris (defaults), baseline build" "$SOAK_COMPARE"
      fi
      ;;
    fulldisk)
      fulldisk 1
      # the same with room on the disk: what the harness counts when the store works
      [ "${SOAK_FULLDISK_CONTROL:-1}" = 1 ] && fulldisk 0
      ;;
    setbomb | nameflood | corrupt) "$s" ;;
    *) echo "soak: unknown scenario $s" >&2 ;;
  esac
done

# ---- the table -----------------------------------------------------------------------------------
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo | sed 's/ [0-9]*-Core Processor//')
mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
{
  echo "### 14. Soak: hostile input and broken storage (issue 14, \`make soak\`)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') (started $STARTED); machine: $(nproc) CPUs ($cpu_model), $mem_total RAM, shared with other builds (load average at the end $(cut -d' ' -f1-3 /proc/loadavg)); $(build_type=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD/CMakeCache.txt" 2>/dev/null); echo "${build_type:-default}") build. The agent runs \`beagle run\` with a config per scenario, pinned to CPU $SERVER_CPU; load and probe on CPU $CLIENT_CPU. /health is probed on a fresh connection every 50 ms with a 1 s timeout during each scenario (a failure: no answer in time, a reset, or a status other than 200; the built-in system check is off, since it reports the CPU the load itself uses); RSS is the agent's before the load / after it (peak = VmHWM). Scenarios: bench/soak.sh."
  echo
  [ -n "${SOAK_NOTE:-}" ] && { echo "$SOAK_NOTE"; echo; }
  echo "| scenario | load | /health failures | RSS MiB before / after | /health p99 | result | commit |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '{ gsub(/\|/, "\\|", $2); gsub(/\|/, "\\|", $6); printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$ROWS"
  echo
} | tee "$OUT_MD"

if [ "$RESULTS" != "-" ] && [ -f "$RESULTS" ]; then
  python3 - "$RESULTS" "$OUT_MD" <<'PY'
import sys
path, new = sys.argv[1], open(sys.argv[2]).read().rstrip("\n").split("\n")
lines = open(path).read().rstrip("\n").split("\n")
head = "### 14. Soak"
try:
    i = next(k for k, l in enumerate(lines) if l.startswith(head))
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("### ") or lines[k].startswith("## ")), len(lines))
    lines[i:j] = new + [""]
except StopIteration:
    at = next((k for k, l in enumerate(lines) if l == "## Runs"), len(lines))
    lines[at:at] = new + [""]
open(path, "w").write("\n".join(lines) + "\n")
PY
  echo "soak: wrote the table into $RESULTS" >&2
fi
