#!/usr/bin/env bash
# Benchmarks 1 and 2a: idle RSS and idle CPU of the agent with the built-in plugins at their
# default intervals, next to prometheus-node-exporter started at the same time on the same
# machine. Neither process is scraped during the window (both idle).
#   BENCH_IDLE_SECONDS  length of the window (default 300)
# Targets: RSS <= 8 MiB and below node_exporter's RSS; CPU <= 0.05% of one core.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init idle

WINDOW=${BENCH_IDLE_SECONDS:-300}
SETTLE=${BENCH_IDLE_SETTLE:-2}
APORT=$(free_port)
NPORT=$(free_port)

cd "$TMP" || exit 1 # no ./beagle.lua here, so the agent runs with the built-in plugins only
bench_spawn AGENT "$BEAGLE" run --listen "127.0.0.1:$APORT" --data "$TMP/data" 2>"$TMP/agent.log"
bench_spawn NE "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NPORT" 2>"$TMP/node_exporter.log"
wait_http "http://127.0.0.1:$APORT/health/live" || { tail "$TMP/agent.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$NPORT/" || { tail "$TMP/node_exporter.log" >&2; exit 1; }
CHECKS=$(curl -s "http://127.0.0.1:$APORT/health" | python3 -c 'import json,sys; print(", ".join(c["name"] for c in json.load(sys.stdin)["checks"]))')
sleep "$SETTLE"

echo "idle: measuring ${WINDOW}s (agent pid $AGENT on :$APORT, node_exporter pid $NE on :$NPORT)" >&2
t0=$(now_s)
a0=$(cpu_ticks "$AGENT")
n0=$(cpu_ticks "$NE")
a_max=0 n_max=0
end=$((SECONDS + WINDOW))
while [ $SECONDS -lt $end ]; do
  left=$((end - SECONDS))
  sleep $((left < 10 ? left : 10))
  kill -0 "$AGENT" 2>/dev/null || { echo "idle: the agent exited" >&2; tail "$TMP/agent.log" >&2; exit 1; }
  r=$(rss_kb "$AGENT"); [ "${r:-0}" -gt "$a_max" ] && a_max=$r
  r=$(rss_kb "$NE"); [ "${r:-0}" -gt "$n_max" ] && n_max=$r
done
t1=$(now_s)
a1=$(cpu_ticks "$AGENT")
n1=$(cpu_ticks "$NE")
a_rss=$(rss_kb "$AGENT")
n_rss=$(rss_kb "$NE")
a_hwm=$(hwm_kb "$AGENT")
rss_parts() { awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} /^RssShmem:/ {s = $2} END {printf "%.2f / %.2f / %.2f MiB", a / 1024, f / 1024, s / 1024}' "/proc/$1/status"; }
# the largest file-backed mappings of the agent (shared libraries), for the RSS breakdown
top_maps() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {name = $6} /^Rss:/ {if (name != "") rss[name] += $2} END {for (n in rss) printf "%d %s\n", rss[n], n}' "/proc/$1/smaps" 2>/dev/null |
    sort -rn | head -8 | awk '{printf "%s%s %d KiB", (NR > 1 ? ", " : ""), $2, $1}'
}
A_MAPS=$(top_maps "$AGENT" | sed "s#$REPO/##g") # no machine paths in RESULTS.md
pss() { awk '/^Pss:/ {printf "%.2f MiB", $2 / 1024}' "/proc/$1/smaps_rollup" 2>/dev/null; }
runs=$(curl -s "http://127.0.0.1:$APORT/metrics" | awk '/^beagle_check_runs_total/ {s += $2} END {print s + 0}')

wall=$(calc "$t1 - $t0")
a_cpu=$(calc "($a1 - $a0) / $CLK_TCK / $wall * 100")
n_cpu=$(calc "($n1 - $n0) / $CLK_TCK / $wall * 100")
a_mib=$(fmt %.2f "$(calc "$a_rss / 1024")")
n_mib=$(fmt %.2f "$(calc "$n_rss / 1024")")
rss_ratio=$(fmt %.2f "$(calc "$a_rss / $n_rss")")
cpu_ratio=$(awk -v a="$a_cpu" -v n="$n_cpu" 'BEGIN { if (n > 0) printf "%.2f", a / n; else print "n/a (peer used 0 ticks)" }')
v_rss=$(verdict "$a_rss <= 8192 && $a_rss < $n_rss")
v_cpu=$(verdict "$a_cpu <= 0.05")

md "### 1 + 2a. Idle RSS and idle CPU (built-in plugins, default intervals)"
md ""
md "Window ${wall%.*} s after ${SETTLE} s of settling; both processes started together and not scraped."
md "Agent checks running: ${CHECKS:-none}; check runs recorded at the end: $runs."
md ""
md "| measure | beagle | target | node_exporter | ratio beagle/peer | verdict |"
md "|---|---|---|---|---|---|"
md "| VmRSS at end | $a_mib MiB | <= 8 MiB and < peer | $n_mib MiB | $rss_ratio | $v_rss |"
md "| VmRSS max of 10 s samples | $(fmt %.2f "$(calc "$a_max / 1024")") MiB | | $(fmt %.2f "$(calc "$n_max / 1024")") MiB | | |"
md "| VmHWM (peak, incl. start-up) | $(fmt %.2f "$(calc "$a_hwm / 1024")") MiB | | $(fmt %.2f "$(calc "$(hwm_kb "$NE") / 1024")") MiB | | |"
md "| CPU (utime+stime)/wall | $(fmt %.4f "$a_cpu") % ($((a1 - a0)) ticks) | <= 0.05 % | $(fmt %.4f "$n_cpu") % ($((n1 - n0)) ticks) | $cpu_ratio | $v_cpu |"
md "| RssAnon / RssFile / RssShmem at end | $(rss_parts "$AGENT") | | $(rss_parts "$NE") | | |"
md "| Pss (proportional set size) at end | $(pss "$AGENT") | | $(pss "$NE") | | |"
md "| threads | $(awk '/^Threads:/ {print $2}' "/proc/$AGENT/status") | | $(awk '/^Threads:/ {print $2}' "/proc/$NE/status") | | |"
md ""
md "Largest mappings of the agent by Rss (shared libraries are mostly file-backed pages, shared with other processes): ${A_MAPS:-n/a}."
md ""
md "CPU resolution: 1 tick = $(calc "1000 / $CLK_TCK") ms, i.e. $(fmt %.4f "$(calc "100 / $CLK_TCK / $wall")") % over this window."
md ""

summary "1. idle RSS" "$a_mib MiB" "<= 8 MiB, < node_exporter" "node_exporter $n_mib MiB" "$rss_ratio" "$v_rss"
summary "2a. idle CPU" "$(fmt %.4f "$a_cpu") %" "<= 0.05 %" "node_exporter $(fmt %.4f "$n_cpu") %" "$cpu_ratio" "$v_cpu"
