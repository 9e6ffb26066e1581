#!/usr/bin/env bash
# Runs every benchmark against ${BUILD:-build}/beagle and real peers on 127.0.0.1, then writes
# bench/RESULTS.md (machine, summary table, one block per benchmark). `make bench` builds a
# Release binary first and calls this.
#
# Benchmarks (each one is also runnable on its own):
#   idle.sh        1 + 2a  idle RSS and CPU, next to prometheus-node-exporter   (~BENCH_IDLE_SECONDS)
#   checks50.sh    2b      CPU with 50 checks a second (http, then tcp)         (~2 x BENCH_CHECKS_SECONDS)
#   checks.sh              1,000 HTTP checks every 10 s against nginx: CPU, RSS and start
#                          drift (nginx access log), beagle then Monit (same checks, same
#                          nginx)                                       (~2 x (warm-up + window))
#   health_rps.sh  3       GET /health req/s and p99 against nginx, wrk          (~1 min)
#   reload.sh      4       plugin reload latency with traffic (paced, then full) (~30 s)
#   metrics.sh     5a-e    metrics hot paths: bench/metrics_c_bench.c (plain C add, observe,
#                          render of 100k series, memory per series) next to
#                          bench/metrics_ffi.lua (FFI handles, JIT and plugin mode,
#                          increment_counter by name)                            (~45 s)
#   metrics_http.sh 5f     GET /metrics with 100k series, beagle vs node_exporter's
#                          textfile collector, HTTP to HTTP                      (~40 s)
#   rules_bench.sh 6       10,000 alert rules over 100,000 series, one round: the engine alone
#                          and with beagle.query (bench/rules_bench.lua, luajit), s:call per
#                          rule in a running agent, next to Prometheus 2.42 evaluating the
#                          equivalent rules on the same series                   (~2.5 min)
#   notify_bench.sh 7      notifications: latency from the firing evaluation to a webhook
#                          sink (bench/notify_sink.c), outbox throughput for 20,000 at once
#                          (max_in_flight 4 and 32), a perf pass; Alertmanager's ingest of
#                          the same alerts as a reference                         (~2 min)
#   remote_write.sh        remote write of 100,000 series a second to a Prometheus receiver:
#                          beagle's remote_write backend (batch 2000 and 10000) against
#                          Prometheus' own remote write, CPU per sample above each sender's
#                          baseline; the encoder alone (C harness, callgrind)     (~3 min)
#   encoders.sh            every backend encoder alone, ns and bytes per sample, and the
#                          snapshot a backend takes per collection (bench/encode.sh) (~20 s)
#   trace_export.sh        spans made by check plugins exported by otlp_traces to nginx: spans per
#                          CPU-second of the agent, nothing dropped; the encoder alone (~1 min)
#   span.sh                a span from Lua, start + end with two attributes, sampled and not, from
#                          compiled code and from a plugin's chunk (bench/span.lua)  (~30 s)
#   liveness.sh    8       GET /health/live latency (wrk -c1) and beagle_loop_lag_seconds,
#                          quiet and with hostile plugins (one endless check and 20 checks
#                          looping 5M times a run, all every second); nginx under the same
#                          wrk as the machine's floor; alternating rounds          (~3.5 min)
# Knobs: BENCH_IDLE_SECONDS (300), BENCH_CHECKS_SECONDS (60), BENCH_CHECKS_PLUGINS ("http tcp"),
# BENCH_CHECKS1K_N (1000), BENCH_CHECKS1K_WARMUP (30), BENCH_CHECKS1K_SECONDS (120),
# BENCH_RPS_SECONDS (10), BENCH_RPS_ROUNDS (3), BENCH_RELOAD_N (100),
# BENCH_RELOAD_LOADS ("paced full"), BENCH_METRICS_REPS (5), BENCH_HTTP_N (15), BENCH_RULES_N
# (10000), BENCH_RULES_REPS (5), BENCH_PROM_EVALS (5), BENCH_NOTIFY_* (see notify_bench.sh),
# BENCH_LIVENESS_SECONDS (20), BENCH_LIVENESS_WARMUP (5), BENCH_LIVENESS_ROUNDS (2),
# BENCH_RW_* (see remote_write.sh), BENCH_ONLY (space-separated subset: idle checks50 checks health_rps
# reload metrics metrics_http statsd rules notify liveness remote_write encoders span trace_export), BENCH_RESULTS (output
# file, default bench/RESULTS.md).
# A BENCH_ONLY run merges into an existing results file: the summary rows, the detail blocks and
# the run lines of the steps it ran replace theirs (step_keys below says which are whose), the
# rest stays, and a header row says when the partial run was. BENCH_MERGE=0 rewrites the file.
set -u
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
export BUILD=${BUILD:-build}
case "$BUILD" in /*) BUILD_ABS=$BUILD ;; *) BUILD_ABS="$REPO/$BUILD" ;; esac
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}
ONLY=${BENCH_ONLY:-idle checks50 checks health_rps reload metrics metrics_http statsd rules notify liveness remote_write encoders span trace_export}
export BENCH_IDLE_SECONDS=${BENCH_IDLE_SECONDS:-300}
export BENCH_CHECKS_SECONDS=${BENCH_CHECKS_SECONDS:-60}

if [ ! -x "$BUILD_ABS/beagle" ]; then
  echo "bench: $BUILD_ABS/beagle not found; run 'make bench' (or build into \$BUILD first)" >&2
  exit 1
fi
for tool in wrk curl python3 taskset luajit "${NGINX:-/usr/sbin/nginx}" "${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is missing (scripts/deps.sh bench installs the peers)" >&2; exit 1; }
done

export BENCH_OUT
BENCH_OUT=$(mktemp -d /tmp/beagle-bench-out.XXXXXX)
CHILD=""
cleanup() {
  [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  rm -rf "$BENCH_OUT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STAT0=$(head -1 /proc/stat)
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
T0=$SECONDS
STATUS=()

# step NAME LIMIT_SECONDS script [env assignments...]
step() {
  local name=$1 limit=$2 script=$3
  shift 3
  echo "== bench: $name (limit ${limit}s)" >&2
  env "$@" timeout --signal=TERM --kill-after=30 "$limit" "$BENCH_DIR/$script" &
  CHILD=$!
  wait "$CHILD"
  local rc=$?
  CHILD=""
  STATUS+=("$name: exit $rc")
  if [ "$rc" != 0 ]; then
    echo "bench: $name failed (exit $rc)" >&2
    printf '### %s\n\nFAILED: exit status %s%s; see the console output.\n\n' "$name" "$rc" \
      "$([ "$rc" = 124 ] && echo " (time limit ${limit}s)")" >"$BENCH_OUT/zz-failed-$name.md"
    printf '%s|FAILED (exit %s)||||FAIL\n' "$name" "$rc" >"$BENCH_OUT/zz-failed-$name.summary"
  fi
}

want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

want idle && step idle $((BENCH_IDLE_SECONDS + 120)) idle.sh
if want checks50; then
  for p in ${BENCH_CHECKS_PLUGINS:-http tcp}; do
    step "checks50-$p" $((BENCH_CHECKS_SECONDS + 90)) checks50.sh BENCH_CHECKS_PLUGIN="$p"
  done
fi
want checks && step checks $(( 2 * (${BENCH_CHECKS1K_WARMUP:-30} + ${BENCH_CHECKS1K_SECONDS:-120}) + 120 )) checks.sh
want health_rps && step health_rps 300 health_rps.sh
if want reload; then
  for l in ${BENCH_RELOAD_LOADS:-paced full}; do
    step "reload-$l" $(( ${BENCH_RELOAD_N:-100} * 3 + 120 )) reload.sh BENCH_RELOAD_LOAD="$l"
  done
fi
want metrics && step metrics 420 metrics.sh
want metrics_http && step metrics_http 300 metrics_http.sh
want statsd && step statsd 600 statsd_bench.sh
want rules && step rules 420 rules_bench.sh
want notify && step notify 420 notify_bench.sh
want remote_write && step remote_write 420 remote_write.sh
want encoders && step encoders 300 encoders.sh
want span && step span 300 span.sh
want trace_export && step trace_export 300 trace_export.sh
# a round: three windows (nginx, quiet, hostile), two warm-ups, start-ups and the endless
# check's first report (up to 30 s)
want liveness && step liveness $(( ${BENCH_LIVENESS_ROUNDS:-2} * (3 * ${BENCH_LIVENESS_SECONDS:-20} + 2 * ${BENCH_LIVENESS_WARMUP:-5} + 90) + 60 )) liveness.sh

ELAPSED=$((SECONDS - T0))
# whole-machine CPU over the run: busy share and steal (time the hypervisor gave to others)
STAT1=$(head -1 /proc/stat)
MACHINE_CPU=$(printf '%s\n%s\n' "$STAT0" "$STAT1" | awk '{
  for (i = 2; i <= NF; i++) v[NR, i] = $i; n = NF }
  END { t = 0; for (i = 2; i <= n; i++) t += v[2, i] - v[1, i]
        idle = (v[2, 5] - v[1, 5]) + (v[2, 6] - v[1, 6]); st = v[2, 9] - v[1, 9]
        if (t > 0) printf "busy %.1f %%, steal %.2f %% of all CPUs", (t - idle) / t * 100, st / t * 100 }')

# ---- RESULTS.md
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$cpu_model" ] || cpu_model=$(awk -F': *' '/^(Hardware|cpu model|Processor)/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)")
build_type=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD_ABS/CMakeCache.txt" 2>/dev/null)
# a build of another source tree (e.g. a snapshot of an older commit) is not this checkout's rev
src_dir=$(awk -F= '/^CMAKE_HOME_DIRECTORY:/ {print $2}' "$BUILD_ABS/CMakeCache.txt" 2>/dev/null)
if [ -n "$src_dir" ] && [ "$(cd "$src_dir" 2>/dev/null && pwd -P)" != "$(cd "$REPO" && pwd -P)" ]; then
  rev="n/a (built from $src_dir, not this checkout)"
  dirty=""
fi

order() { # the .md / .summary files in run order
  local ext=$1
  for n in idle checks50-http checks50-tcp checks health_rps reload-paced reload-full metrics metrics_http statsd rules notify liveness remote_write encoders; do
    [ -f "$BENCH_OUT/$n.$ext" ] && echo "$BENCH_OUT/$n.$ext"
  done
  for f in "$BENCH_OUT"/*."$ext"; do
    [ -f "$f" ] || continue
    case " idle checks50-http checks50-tcp checks health_rps reload-paced reload-full metrics metrics_http statsd rules notify liveness remote_write encoders " in
      *" $(basename "$f" ".$ext") "*) ;;
      *) echo "$f" ;;
    esac
  done
}

{
  echo "# beagle benchmarks"
  echo
  echo "Generated by \`make bench\` (bench/run.sh). Do not edit by hand; rerun to refresh."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u) (started $STARTED, took ${ELAPSED}s) |"
  echo "| machine | $(nproc) CPUs, $cpu_model, $mem_total RAM |"
  echo "| kernel | $(uname -srm) |"
  echo "| beagle | $("$BUILD_ABS/beagle" version 2>/dev/null | head -1), git $rev$dirty, ${build_type:-default} build in $BUILD |"
  echo "| peers | $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'); $("${NGINX:-/usr/sbin/nginx}" -v 2>&1 | sed 's/^nginx version: //'); node_exporter $("${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}" --version 2>&1 | awk 'NR==1 {print $3}'); prometheus $("${PROMETHEUS:-/usr/bin/prometheus}" --version 2>&1 | awk 'NR==1 {print $3}'); alertmanager $("${ALERTMANAGER:-/usr/bin/prometheus-alertmanager}" --version 2>&1 | awk 'NR==1 {print $3}'); monit $("${MONIT:-/usr/bin/monit}" -V 2>&1 | awk 'NR==1 {print $5}') |"
  echo "| machine CPU during the run | ${MACHINE_CPU:-n/a} |"
  echo "| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| windows | idle ${BENCH_IDLE_SECONDS}s, checks ${BENCH_CHECKS_SECONDS}s, wrk ${BENCH_RPS_SECONDS:-10}s x ${BENCH_RPS_ROUNDS:-3} rounds, ${BENCH_RELOAD_N:-100} reloads, liveness ${BENCH_LIVENESS_SECONDS:-20}s x ${BENCH_LIVENESS_ROUNDS:-2} rounds |"
  echo
  echo "The machine is shared and noisy; numbers from one run. Every target is reported as measured:"
  echo "\"MISS\" means the target was not met in this run."
  echo
  echo "## Summary"
  echo
  echo "| benchmark | beagle | target | peer (same run) | ratio beagle/peer | verdict |"
  echo "|---|---|---|---|---|---|"
  for f in $(order summary); do
    awk -F'|' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; print "" }' "$f"
  done
  echo
  echo "## Details"
  echo
  for f in $(order md); do
    cat "$f"
  done
  echo "## Runs"
  echo
  for s in "${STATUS[@]}"; do echo "- $s"; done
} >"$RESULTS.tmp"

# step_keys STEP : "summary-row regex<TAB>detail-heading regex" of what a step writes
step_keys() {
  case "$1" in
    idle) printf '%s\t%s' '^(1|2a)\.' '^### 1 \+ 2a\.' ;;
    checks50-*) printf '%s\t%s' "^2b\\..*${1#checks50-}" "^### 2b\\..*${1#checks50-}" ;;
    checks) printf '%s\t%s' '^Checks, ' '^### Checks\.' ;;
    health_rps) printf '%s\t%s' '^3\.' '^### 3\.' ;;
    reload-*) printf '%s\t%s' "^4\\..*${1#reload-}" "^### 4\\..*${1#reload-}" ;;
    metrics) printf '%s\t%s' '^5[a-eg]\.' '^### 5\.' ;;
    metrics_http) printf '%s\t%s' '^5f\.' '^### 5f\.' ;;
    statsd) printf '%s\t%s' '^StatsD' '^### StatsD' ;;
    rules) printf '%s\t%s' '^6[a-z]?\.' '^### 6\.' ;;
    notify) printf '%s\t%s' '^7[a-z]?\.' '^### 7\.' ;;
    liveness) printf '%s\t%s' '^8[a-z]?\. liveness' '^### 8\. Liveness' ;;
    remote_write) printf '%s\t%s' '^Remote write' '^### Remote write' ;;
    encoders) printf '%s\t%s' '^Backend encoders' '^### Backend encoders' ;;
    span) printf '%s\t%s' '^Span from Lua' '^### Span start' ;;
    trace_export) printf '%s\t%s' '^Trace export' '^### Trace export' ;;
  esac
}

if [ -n "${BENCH_ONLY:-}" ] && [ "${BENCH_MERGE:-1}" = 1 ] && [ -f "$RESULTS" ] && grep -q '^## Summary' "$RESULTS"; then
  keys="$BENCH_OUT/keys.tsv"
  : >"$keys"
  for s in "${STATUS[@]}"; do
    n=${s%%:*}
    printf '%s\t%s\n' "$n" "$(step_keys "$n")" >>"$keys"
  done
  note="$(date -u) (started $STARTED, took ${ELAPSED}s), git $rev$dirty, ${build_type:-default} build in $BUILD; machine CPU ${MACHINE_CPU:-n/a}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$RESULTS" "$RESULTS.tmp" "$keys" "$ONLY" "$note" >"$RESULTS.merged" <<'PY' || { echo "bench: merge failed; the full file of this run is $RESULTS.tmp" >&2; exit 1; }
import re, sys
old_path, new_path, keys_path, only, note = sys.argv[1:6]
keys = []
for line in open(keys_path):
    p = line.rstrip("\n").split("\t")
    keys.append((p[0], re.compile(p[1]) if len(p) > 1 and p[1] else None, re.compile(p[2]) if len(p) > 2 and p[2] else None))

def parse(text):
    lines = text.split("\n")
    i_sum, i_det, i_runs = lines.index("## Summary"), lines.index("## Details"), lines.index("## Runs")
    head, summ = lines[:i_sum], lines[i_sum:i_det]
    sep = next(i for i, l in enumerate(summ) if l.startswith("|---"))
    rows = [l for l in summ[sep + 1:] if l.startswith("|")]
    sections, cur = [], None
    for l in lines[i_det + 1:i_runs]:
        if l.startswith("### "):
            cur = [l]
            sections.append(cur)
        elif cur is not None:
            cur.append(l)
    runs = [l for l in lines[i_runs + 1:] if l.startswith("- ")]
    return head, summ[:sep + 1], rows, sections, runs

def cell(row):
    return row.split("|")[1].strip()

def owner(text, idx):  # the step that wrote a row (idx 1) or a section heading (idx 2)
    for k in keys:
        rx = k[idx]
        if (rx and rx.search(text)) or text == k[0] or text == "### " + k[0]:
            return k[0]
    return None

def splice(old, new, key):  # replaces old items of the steps run by the new ones, in place
    out, placed = [], set()
    groups = {}
    for item in new:
        groups.setdefault(key(item) or "?", []).append(item)
    for item in old:
        o = key(item)
        if o in groups or (o is not None and any(o == k[0] for k in keys)):
            if o in groups and o not in placed:
                out.extend(groups[o])
                placed.add(o)
            continue
        out.append(item)
    for o, items in groups.items():
        if o not in placed:
            out.extend(items)
    return out

ohead, osumh, orows, osecs, oruns = parse(open(old_path).read())
nhead, _, nrows, nsecs, nruns = parse(open(new_path).read())
rows = splice(orows, nrows, lambda r: owner(cell(r), 1))
secs = splice(osecs, nsecs, lambda s: owner(s[0], 2))
when = note.split(" (started")[0]
nruns = [r + " (partial run, %s)" % when for r in nruns]
runs = splice(oruns, nruns, lambda r: r[2:].split(":")[0])
# the header table gets (or updates) a row for this partial run
label = "partial run: %s" % only
hrow = "| %s | %s |" % (label, note)
head = [l for l in ohead if not (l.startswith("|") and cell(l) == label)]
last = max(i for i, l in enumerate(head) if l.startswith("|"))
head.insert(last + 1, hrow)
out = head + osumh + rows + ["", "## Details", ""]
for s in secs:
    while s and s[-1] == "":
        s = s[:-1]
    out.extend(s + [""])
out += ["## Runs", ""] + runs
print("\n".join(out))
PY
  mv "$RESULTS.merged" "$RESULTS"
  rm -f "$RESULTS.tmp"
  echo "bench: merged the steps of this run ($ONLY) into $RESULTS (${ELAPSED}s)" >&2
else
  mv "$RESULTS.tmp" "$RESULTS"
  echo "bench: wrote $RESULTS (${ELAPSED}s)" >&2
fi
