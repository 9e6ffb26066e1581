#!/usr/bin/env bash
# Benchmark 4: hot-reload latency of a drop-in check plugin, with traffic on /health and
# /metrics running the whole time.
# The agent runs with --plugins DIR holding checks/bench_reload.lua, a check whose options all
# have defaults (an automatic check of its own name, interval 1h) returning
# ctx.healthy("v<N>"). bench/reload_driver.py rewrites it BENCH_RELOAD_N times (temp + rename)
# and times write -> GET /health/bench_reload showing "v<N>" (polled every 2 ms on one
# keep-alive connection). Meanwhile two wrk processes (on CPU 1, the agent on CPU 0) load
# /health and /metrics; their non-2xx responses and socket errors are counted.
#   BENCH_RELOAD_N        versions written (default 100)
#   BENCH_RELOAD_TIMEOUT  seconds to wait for one version before counting it as missed (1)
#   BENCH_RELOAD_LOAD     paced (default: each wrk connection waits 1 ms between requests,
#                         a steady background load) or full (wrk as fast as it can: the agent
#                         saturated while reloading)
# Target: <= 100 ms write-to-visible (debounce of 50 ms included); zero failed requests.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${BENCH_RELOAD_N:-100}
TIMEOUT=${BENCH_RELOAD_TIMEOUT:-1}
LOAD=${BENCH_RELOAD_LOAD:-paced}
bench_init "reload-$LOAD"
NAME=bench_reload
APORT=$(free_port)

mkdir -p "$TMP/plugins/checks"
PLUGIN="$TMP/plugins/checks/$NAME.lua"
cat >"$PLUGIN" <<EOF
return beagle.check {
  name = "$NAME",
  interval = "1h",
  options = { note = { "string", default = "v0" } },
  run = function(opt, ctx) return ctx.healthy("v0") end,
}
EOF

cd "$TMP" || exit 1
bench_spawn AGENT taskset -c 0 "$BEAGLE" run --listen "127.0.0.1:$APORT" --data "$TMP/data" --plugins "$TMP/plugins" 2>"$TMP/agent.log"
wait_http "http://127.0.0.1:$APORT/health/live" || { tail "$TMP/agent.log" >&2; exit 1; }
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:$APORT/health/$NAME" | grep -q '"message":"v0"' && break
  sleep 0.05
done
curl -s "http://127.0.0.1:$APORT/health/$NAME" | grep -q '"message":"v0"' || {
  echo "reload: the automatic check $NAME never reported v0" >&2; tail "$TMP/agent.log" >&2; exit 1; }

if [ "$LOAD" = full ]; then
  WRKARGS=(-t1 -c4)
  LOADDESC="wrk -t1 -c4 at full speed on each of /health and /metrics"
else
  echo 'function delay() return 1 end' >"$TMP/paced.lua"
  WRKARGS=(-t1 -c2 -s "$TMP/paced.lua")
  LOADDESC="wrk -t1 -c2, 1 ms pause between a connection's requests, on each of /health and /metrics"
fi
# long -d; stopped with SIGINT (wrk then prints its totals) once the reloads are done
bench_spawn W1 taskset -c 1 wrk "${WRKARGS[@]}" -d600s --latency "http://127.0.0.1:$APORT/health" >"$TMP/wrk.health" 2>&1
bench_spawn W2 taskset -c 1 wrk "${WRKARGS[@]}" -d600s --latency "http://127.0.0.1:$APORT/metrics" >"$TMP/wrk.metrics" 2>&1
sleep 1

echo "reload: $N versions of $NAME under load ($LOAD), agent pid $AGENT" >&2
timeout $((N * (TIMEOUT + 1) + 60)) python3 "$BENCH_DIR/reload_driver.py" --port "$APORT" --file "$PLUGIN" \
  --name "$NAME" -n "$N" --timeout "$TIMEOUT" >"$TMP/driver.json" || {
  echo "reload: driver failed" >&2; tail "$TMP/agent.log" >&2; exit 1; }
sleep 0.5
kill -INT "$W1" "$W2" 2>/dev/null
wait "$W1" "$W2" 2>/dev/null
kill -0 "$AGENT" 2>/dev/null || { echo "reload: the agent exited" >&2; tail "$TMP/agent.log" >&2; exit 1; }
A_RSS=$(rss_kb "$AGENT")
RELOADED=$(grep -c 'msg="plugin reloaded"' "$TMP/agent.log")
LOADFAIL=$(grep -c 'msg="plugin failed to load"' "$TMP/agent.log")

parse_wrk "$TMP/wrk.health"
H_REQS=$WRK_REQS H_RPS=$WRK_RPS H_N2=$WRK_NON2XX H_SE=$WRK_SOCKERR H_P99=$WRK_P99
parse_wrk "$TMP/wrk.metrics"
M_REQS=$WRK_REQS M_RPS=$WRK_RPS M_N2=$WRK_NON2XX M_SE=$WRK_SOCKERR M_P99=$WRK_P99
FAILED=$((H_N2 + H_SE + M_N2 + M_SE))

eval "$(python3 - "$TMP/driver.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def stats(prefix, xs):
    xs = sorted(x * 1000 for x in xs)
    if not xs:
        print(f"{prefix}_N=0 {prefix}_MED=n/a {prefix}_P95=n/a {prefix}_MAX=n/a {prefix}_MIN=n/a")
        return
    def q(p):
        return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
    print(f"{prefix}_N={len(xs)} {prefix}_MED={q(0.5):.1f} {prefix}_P95={q(0.95):.1f} "
          f"{prefix}_MAX={xs[-1]:.1f} {prefix}_MIN={xs[0]:.1f}")
stats("VIS", d["visible"])
stats("SWP", d["swapped"])
print(f"TIMEOUTS={d['timeouts']} POLL_REQS={d['poll_requests']} POLL_FAIL={d['poll_failures']}")
EOF
)"

if [ "$VIS_N" -gt 0 ]; then
  v_lat=$(verdict "$VIS_N == $N && $VIS_MAX <= 100")
else
  v_lat=MISS
fi
v_err=$(verdict "$FAILED == 0 && $POLL_FAIL == 0")

md "### 4. Plugin reload latency under $LOAD load ($N rewrites, temp file + rename)"
md ""
md "Agent pinned to CPU 0, reload_debounce at its default (50 ms). Background load: $LOADDESC."
md "Latency = just before the write -> GET /health/$NAME returns the new message (polled every 2 ms, keep-alive)."
md "Agent log: $RELOADED \"plugin reloaded\", $LOADFAIL \"plugin failed to load\"."
md ""
md "| measure | beagle | target | verdict |"
md "|---|---|---|---|"
md "| write -> new message visible on /health/$NAME: median / p95 / max | $VIS_MED / $VIS_P95 / $VIS_MAX ms (min $VIS_MIN) | <= 100 ms | $v_lat |"
md "| versions that became visible within ${TIMEOUT}s | $VIS_N of $N ($TIMEOUTS missed) | $N of $N | |"
md "| write -> new plugin version loaded (/health/detailed): median / p95 / max | $SWP_MED / $SWP_P95 / $SWP_MAX ms over $SWP_N | (diagnostic) | |"
md "| failed requests during the reloads (non-2xx + socket errors) | $FAILED | 0 | $v_err |"
md "| /health under reloads | $H_REQS requests, $(fmt %.0f "$H_RPS") req/s, p99 $H_P99 ms, non-2xx $H_N2, socket errors $H_SE | | |"
md "| /metrics under reloads | $M_REQS requests, $(fmt %.0f "$M_RPS") req/s, p99 $M_P99 ms, non-2xx $M_N2, socket errors $M_SE | | |"
md "| poller requests / failures | $POLL_REQS / $POLL_FAIL | 0 failures | |"
md "| agent VmRSS after the reloads | $(fmt %.2f "$(calc "$A_RSS / 1024")") MiB | | |"
md ""
md "No peer: nginx -s reload and node_exporter have no comparable plugin hot-reload."
md ""

summary "4. reload latency, $LOAD load (median/p95/max)" "$VIS_MED / $VIS_P95 / $VIS_MAX ms; $VIS_N/$N visible" "<= 100 ms" "n/a" "n/a" "$v_lat"
summary "4. failed requests during reloads, $LOAD load" "$FAILED (of $((H_REQS + M_REQS)))" "0" "n/a" "n/a" "$v_err"
