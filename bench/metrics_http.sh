#!/usr/bin/env bash
# Benchmark 5f: GET /metrics over HTTP with 100,000 series, beagle against node_exporter's
# textfile collector holding the same 100,000 series, in the same run, HTTP to HTTP.
#   - series: 1,000 families x 100 series, labels instance="host-NN.example", code="NNN",
#     counters and gauges alternating by family (the shape of the C render benchmark);
#   - node_exporter: --collector.disable-defaults --collector.textfile with a .prom file of
#     those series; its baseline is a second node_exporter with defaults disabled and no
#     textfile directory (its own go_/process_/promhttp_ series only);
#   - beagle: a drop-in check plugin creates the series through handles (beagle.counter /
#     beagle.gauge) in its run function (MONITORING_MAX_SERIES=200000, instruction budget
#     raised, timeout 120 s); its baseline is a second agent without that plugin. The
#     plugin then also times a counter add from plugin code inside the real agent (JIT off,
#     the agent's C count hook) as a cross-check of bench/metrics_ffi.lua's plugin mode.
# Servers on CPU 0, curl on CPU 1; plain GETs (no Accept-Encoding: uncompressed both ways);
# BENCH_HTTP_N timed GETs of each (default 15) after 2 warm-ups, alternating between the
# servers (0.5 s pause after each node_exporter GET, whose GC would otherwise land on the
# next request); median and min of curl's time_total. Per-series cost = (median - baseline median)
# / 100,000. Takes ~40 s.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init metrics_http
N=${BENCH_HTTP_N:-15}
SERIES_FAMILIES=1000
SERIES_PER=100
TOTAL=$((SERIES_FAMILIES * SERIES_PER))

# ---- the .prom file
mkdir -p "$TMP/textfile" "$TMP/empty" "$TMP/plugins/checks"
awk -v F=$SERIES_FAMILIES -v S=$SERIES_PER 'BEGIN {
  for (f = 0; f < F; f++) {
    name = sprintf("bench_family_%03d", f); type = "gauge"
    if (f % 2 == 0) { name = name "_total"; type = "counter" }
    printf "# HELP %s Bench series.\n# TYPE %s %s\n", name, name, type
    for (s = 0; s < S; s++) {
      v = (f % 2 == 0) ? f * 100 + s : (f * 100 + s) * 0.37
      printf "%s{code=\"%d\",instance=\"host-%02d.example\"} %.10g\n", name, 200 + int(s / 50) * 100 + f % 7, s % 50, v
    }
  }
}' >"$TMP/textfile/bench.prom.tmp" && mv "$TMP/textfile/bench.prom.tmp" "$TMP/textfile/bench.prom"

# ---- the plugin
cat >"$TMP/plugins/checks/bench_series.lua" <<EOF
-- Creates $TOTAL series through handles, then times a counter add from plugin code.
return beagle.check {
  name = "bench_series",
  interval = "1h",
  timeout = "120s",
  options = { families = { "integer", default = $SERIES_FAMILIES }, per = { "integer", default = $SERIES_PER } },
  run = function(opt, ctx)
    local t0 = ctx.now()
    local made = 0
    for f = 0, opt.families - 1 do
      local name = ("bench.family_%03d"):format(f)
      for s = 0, opt.per - 1 do
        local labels = { instance = ("host-%02d.example"):format(s % 50),
          code = tostring(200 + math.floor(s / 50) * 100 + f % 7) }
        if f % 2 == 0 then
          beagle.counter(name, labels):add(f * 100 + s)
        else
          beagle.gauge(name, labels):set((f * 100 + s) * 0.37)
        end
        made = made + 1
      end
    end
    local create = (ctx.now() - t0) / made * 1e9
    local function med(v) table.sort(v) return v[math.floor((#v + 1) / 2)] end
    local c = beagle.counter("bench.plugin_inc")
    local n, inc, reused, lit = 2000000, {}, {}, {}
    local tags = { endpoint = "/optimize", method = "POST" }
    for r = 1, 5 do
      local a = ctx.now()
      for _ = 1, n do c:inc() end
      inc[r] = (ctx.now() - a) / n * 1e9
      a = ctx.now()
      for _ = 1, n / 4 do beagle.increment_counter("bench.plugin_requests", 1, tags) end
      reused[r] = (ctx.now() - a) / (n / 4) * 1e9
      a = ctx.now()
      for _ = 1, n / 4 do
        beagle.increment_counter("bench.plugin_requests", 1, { endpoint = "/optimize", method = "POST" })
      end
      lit[r] = (ctx.now() - a) / (n / 4) * 1e9
    end
    return ctx.healthy(("made %d series, %.0f ns/series; c:inc() %.1f ns (min %.1f); increment_counter tags reused %.1f ns, literal %.1f ns")
      :format(made, create, med(inc), math.min(unpack(inc)), med(reused), med(lit)))
  end,
}
EOF

P_NE=$(free_port)
P_NE0=$(free_port)
P_BG=$(free_port)
P_BG0=$(free_port)
cd "$TMP" || exit 1
bench_spawn NE taskset -c 0 "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$P_NE" \
  --collector.disable-defaults --collector.textfile --collector.textfile.directory="$TMP/textfile" 2>"$TMP/ne.log"
bench_spawn NE0 taskset -c 0 "$NODE_EXPORTER" --web.listen-address="127.0.0.1:$P_NE0" \
  --collector.disable-defaults 2>"$TMP/ne0.log"
bench_spawn BG env MONITORING_MAX_SERIES=200000 MONITORING_PLUGIN_INSTRUCTION_BUDGET=1e11 \
  taskset -c 0 "$BEAGLE" run --listen "127.0.0.1:$P_BG" --data "$TMP/data" --statsd off \
  --plugins "$TMP/plugins" 2>"$TMP/agent.log"
bench_spawn BG0 taskset -c 0 "$BEAGLE" run --listen "127.0.0.1:$P_BG0" --data "$TMP/data0" \
  --statsd off 2>"$TMP/agent0.log"
for u in "$P_NE/" "$P_NE0/" "$P_BG/health/live" "$P_BG0/health/live"; do
  wait_http "http://127.0.0.1:$u" 15 || { tail "$TMP"/*.log >&2; exit 1; }
done

# wait for the plugin's run (it reports once the series exist and the add was timed; runs are
# sliced, so /health answers "not run yet" meanwhile)
msg=""
for _ in $(seq 600); do
  msg=$(curl -s "http://127.0.0.1:$P_BG/health/bench_series" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    sys.exit(0)
c = d.get("check", d)
m = c.get("message") or ""
if c.get("status") == "healthy" and m.startswith("made"): print(m)
elif c.get("status") in ("unhealthy", "unknown") and m and m != "not run yet": print("FAILED: " + m)
' 2>/dev/null)
  [ -n "$msg" ] && break
  sleep 0.2
done
echo "metrics_http: plugin says: $msg" >&2
case "$msg" in made*) ;; *)
  echo "metrics_http: the series plugin did not finish: ${msg:-no result}" >&2
  curl -s "http://127.0.0.1:$P_BG/health/bench_series" >&2; tail -20 "$TMP/agent.log" >&2; exit 1 ;;
esac

get() { taskset -c 1 curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' "$1"; }
series_in() { curl -s "$1" | grep -c '^bench_family_'; }
ne_series=$(series_in "http://127.0.0.1:$P_NE/metrics")
bg_series=$(series_in "http://127.0.0.1:$P_BG/metrics")
for s in NE NE0 BG BG0; do : >"$TMP/t.$s"; done
urls=(NE "http://127.0.0.1:$P_NE/metrics" NE0 "http://127.0.0.1:$P_NE0/metrics"
  BG "http://127.0.0.1:$P_BG/metrics" BG0 "http://127.0.0.1:$P_BG0/metrics")
for i in $(seq $((N + 2))); do
  for ((k = 0; k < ${#urls[@]}; k += 2)); do
    out=$(get "${urls[k + 1]}")
    [ "$i" -gt 2 ] && echo "$out" >>"$TMP/t.${urls[k]}"
    # node_exporter's garbage collection after a 100k-series scrape would land on the next
    # server's request (same CPU): let it settle
    [ "${urls[k]}" = NE ] && sleep 0.5
  done
done
# stats FILE -> "median_ms min_ms bytes bad"
stats() {
  sort -n "$1" | awk '{ t[NR] = $1 * 1000; b = $2; if ($3 != 200) bad++ }
    END { m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
          printf "%.3f %.3f %d %d", m, t[1], b, bad + 0 }'
}
read -r ne_med ne_min ne_bytes ne_bad < <(stats "$TMP/t.NE")
read -r ne0_med ne0_min ne0_bytes ne0_bad < <(stats "$TMP/t.NE0")
read -r bg_med bg_min bg_bytes bg_bad < <(stats "$TMP/t.BG")
read -r bg0_med bg0_min bg0_bytes bg0_bad < <(stats "$TMP/t.BG0")
ne_ns=$(fmt %.1f "$(calc "($ne_med - $ne0_med) * 1e6 / $TOTAL")")
bg_ns=$(fmt %.1f "$(calc "($bg_med - $bg0_med) * 1e6 / $TOTAL")")
ratio=$(awk -v a="$bg_ns" -v b="$ne_ns" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }')
# the target for the whole GET over HTTP is issue 13's (15 ms); the render alone (5d) has 10 ms
v=$(verdict "$bg_med <= 15")
ne_rss=$(rss_kb "$NE")
bg_rss=$(rss_kb "$BG")

md "### 5f. GET /metrics over HTTP with $TOTAL series: beagle against node_exporter's textfile collector"
md ""
md "$SERIES_FAMILIES families x $SERIES_PER series (counters and gauges alternating), labels instance and code, on both sides;"
md "beagle's created by a drop-in check plugin through handles (MONITORING_MAX_SERIES=200000), node_exporter's read from"
md "a .prom file ($(wc -c <"$TMP/textfile/bench.prom") bytes) by --collector.textfile with --collector.disable-defaults."
md "Baselines: node_exporter with defaults disabled and no textfile; an agent without the plugin."
md "Servers on CPU 0, curl on CPU 1, $N timed GETs each (after 2 warm-ups), alternating, 0.5 s pause after each node_exporter GET; uncompressed. Series counted in the bodies: beagle $bg_series, node_exporter $ne_series."
md ""
md "| server | GET /metrics median | min | body bytes | non-200 | VmRSS |"
md "|---|---|---|---|---|---|"
md "| beagle, $TOTAL series | $bg_med ms | $bg_min ms | $bg_bytes | $bg_bad | $(fmt %.1f "$(calc "$bg_rss / 1024")") MiB |"
md "| beagle baseline (no bench series) | $bg0_med ms | $bg0_min ms | $bg0_bytes | $bg0_bad | |"
md "| node_exporter textfile, $TOTAL series | $ne_med ms | $ne_min ms | $ne_bytes | $ne_bad | $(fmt %.1f "$(calc "$ne_rss / 1024")") MiB |"
md "| node_exporter baseline (defaults disabled, no textfile) | $ne0_med ms | $ne0_min ms | $ne0_bytes | $ne0_bad | |"
md ""
md "beagle GET times (ms): $(awk '{printf "%.1f ", $1 * 1000}' "$TMP/t.BG")"
md ""
md "| measure | beagle | node_exporter | ratio beagle/node_exporter | target | verdict |"
md "|---|---|---|---|---|---|"
md "| per series, (median - baseline median) / $TOTAL | $bg_ns ns | $ne_ns ns | $ratio | | |"
md "| whole GET /metrics, $TOTAL series (median) | $bg_med ms | $ne_med ms | $(awk -v a="$bg_med" -v b="$ne_med" 'BEGIN { printf "%.3f", a / b }') | <= 15 ms over HTTP (the render alone: 5d, <= 10 ms) | $v |"
md ""
md "Inside the agent, from the plugin's own run (JIT off for the chunk, the agent's C count hook; ctx.now() around 5 runs, median):"
md "\`$msg\`."
md ""

summary "5f. GET /metrics over HTTP, 100,000 series" "$bg_med ms ($bg_ns ns/series)" "<= 15 ms over HTTP" "node_exporter textfile: $ne_med ms ($ne_ns ns/series)" "$ratio per series" "$v"
