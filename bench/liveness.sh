#!/usr/bin/env bash
# Benchmark 8: liveness with hostile plugins (issue 13, section 2). Does a plugin run hold the
# loop? The agent runs as users run it (`beagle run --listen --data --plugins DIR -c config`),
# pinned to CPU 0, in two scenarios:
#   quiet    no plugins beyond the built-in ones
#   hostile  one check whose run is `while true do end` (default budget and timeout) and 20
#            checks (one file each) that loop 5 million times per run, all at interval 1s
# After BENCH_LIVENESS_WARMUP seconds, over a window of BENCH_LIVENESS_SECONDS:
#   - GET /health/live under `wrk -t1 -c1 --latency` pinned to CPU 1: p50, p99, max;
#   - beagle_loop_lag_seconds (the time each loop turn spent in callbacks) from two /metrics
#     scrapes, at the window's start and end: the p99 of the window's turns (interpolated in
#     its bucket, and the bucket's upper edge; the verdict takes the edge) and the longest turn;
#   - hostile: the endless check's status and message in GET /health/endless and when it was
#     first reported, and the runs each 5M-iteration check completed in the window.
# The floor of this machine for the same exchange: nginx (one worker, pinned the same way)
# answering GET /health/live with the agent's body, under the same wrk. The three alternate
# (nginx, quiet, hostile), BENCH_LIVENESS_ROUNDS times each; every round is reported and a
# verdict passes only when every round meets the target.
#   BENCH_LIVENESS_SECONDS (default 20), BENCH_LIVENESS_WARMUP (5), BENCH_LIVENESS_ROUNDS (2)
# Targets: hostile /health/live p99 <= 10 ms and loop lag p99 <= 10 ms, quiet both <= 2 ms; the
# endless check unhealthy with "instruction budget exceeded" (or "timeout") within its interval.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init liveness

DUR=${BENCH_LIVENESS_SECONDS:-20}
WARM=${BENCH_LIVENESS_WARMUP:-5}
ROUNDS=${BENCH_LIVENESS_ROUNDS:-2}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
N_BURN=20
ITER=5e6
INTERVAL=1 # seconds, every hostile check
STATS=(python3 "$BENCH_DIR/liveness_stats.py")

if [ "$(nproc)" -lt 2 ]; then
  echo "liveness: needs 2 CPUs to pin agent and wrk apart" >&2
fi

# ---- the two scenarios: a plugin directory and a config each
mkdir -p "$TMP/quiet/plugins" "$TMP/hostile/plugins"
echo "-- bench/liveness.sh, quiet: the built-in checks only" >"$TMP/quiet/beagle.lua"
cat >"$TMP/hostile/plugins/endless.lua" <<'EOF'
-- bench/liveness.sh: a run that never returns
return beagle.check {
  name = "endless",
  description = "loops forever",
  options = {},
  run = function(opt, ctx)
    while true do end
  end,
}
EOF
burn_plugin() { # name
  cat <<EOF
-- bench/liveness.sh: $ITER loop iterations a run
return beagle.check {
  name = "$1",
  description = "burns $ITER iterations",
  options = {},
  run = function(opt, ctx)
    local x = 0
    for i = 1, $ITER do x = x + i end
    return ctx.healthy(("sum %.0f"):format(x))
  end,
}
EOF
}
{
  echo "-- bench/liveness.sh, hostile: one endless check and $N_BURN burning ones"
  echo "check \"endless\" { interval = \"${INTERVAL}s\" }"
  for i in $(seq -w 1 "$N_BURN"); do
    burn_plugin "burn_$i" >"$TMP/hostile/plugins/burn_$i.lua"
    echo "check \"burn_$i\" { interval = \"${INTERVAL}s\" }"
  done
} >"$TMP/hostile/beagle.lua"

# nginx: one worker in the foreground (the PID held is the worker), a static 200 with the
# agent's /health/live body; every path it writes under $TMP/nginx
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
NGX_PORT=$(free_port)
{
  echo "daemon off; master_process off; worker_processes 1; pid $TMP/nginx/nginx.pid;"
  echo "error_log $TMP/nginx/logs/error.log warn; events { worker_connections 64; }"
  echo "http { access_log off; keepalive_requests 100000000;"
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $TMP/nginx/tmp/$t;"; done
  echo "  server { listen 127.0.0.1:$NGX_PORT;"
  echo "    location = /health/live { default_type application/json; return 200 '{\"status\":\"alive\"}'; } } }"
} >"$TMP/nginx/nginx.conf"

declare -A R # R[scenario,round,field]

# wrk_window KEY PORT : the measured window on GET /health/live; sets R[KEY,p50|p99|max|rps|errs]
wrk_window() {
  local key=$1 out="$TMP/${1/,/.}.wrk" c0 c1 TIMEFORMAT='%U %S'
  c0=$(cpu_stat "$CLIENT_CPU")
  { time taskset -c "$CLIENT_CPU" timeout $((DUR + 30)) wrk -t1 -c1 -d"${DUR}s" --latency \
    "http://127.0.0.1:$2/health/live" >"$out" 2>&1; } 2>"$out.time"
  c1=$(cpu_stat "$CLIENT_CPU")
  # wrk's own ticks, from its user + system seconds
  others "$key,client" "$c0" "$c1" "$(awk -v t="$CLK_TCK" '{ printf "%d", ($1 + $2) * t }' "$out.time")"
  parse_wrk "$out"
  R[$key,p50]=$WRK_P50
  R[$key,p99]=$WRK_P99
  R[$key,max]=$(to_ms "$(awk '$1 == "Latency" {print $4; exit}' "$out")")
  R[$key,rps]=$(fmt %.0f "$WRK_RPS")
  R[$key,errs]="$WRK_NON2XX / $WRK_SOCKERR"
}

# others KEY S0 S1 TICKS : the share of a window that a CPU (cpu_stat at its start and end)
# spent on anything but TICKS of ours: others' builds and benchmarks, interrupts. Noise.
others() {
  R[$1,others]=$(awk -v s0="$2" -v s1="$3" -v a="$4" 'BEGIN {
    split(s0, x, " "); split(s1, y, " "); t = y[1] - x[1]; b = y[2] - x[2]
    o = b - a; if (o < 0) o = 0
    if (t > 0) printf "%.0f %% (steal %.1f %%)", o / t * 100, (y[3] - x[3]) / t * 100; else print "n/a" }')
}

nginx_round() { # round
  local r=$1 s0 s1 a0 a1
  bench_spawn NGX taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
    -e "$TMP/nginx/logs/error.log" 2>"$TMP/nginx/stderr"
  wait_http "http://127.0.0.1:$NGX_PORT/health/live" || { cat "$TMP/nginx/stderr" >&2; exit 1; }
  a0=$(cpu_ticks "$NGX")
  s0=$(cpu_stat "$SERVER_CPU")
  wrk_window "nginx,$r" "$NGX_PORT"
  s1=$(cpu_stat "$SERVER_CPU")
  a1=$(cpu_ticks "$NGX")
  others "nginx,$r" "$s0" "$s1" "$((a1 - a0))"
  bench_stop "$NGX"
  echo "liveness: nginx round $r: /health/live p50 ${R[nginx,$r,p50]} p99 ${R[nginx,$r,p99]} max ${R[nginx,$r,max]} ms" >&2
}

# ---- one round: start the agent, warm up, measure the window, stop it

scrape() { curl -s --max-time 10 -o "$2" "http://127.0.0.1:$PORT$1"; }

# cpu_stat N : "total busy steal" clock ticks of CPU N so far (/proc/stat: user nice system
# idle iowait irq softirq steal)
cpu_stat() {
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i
    print t, t - $5 - $6, $9 }' /proc/stat
}

run_round() { # scenario round
  local sc=$1 r=$2 base="$TMP/$1.$2"
  PORT=$(free_port)
  bench_spawn AGENT taskset -c "$SERVER_CPU" "$BEAGLE" run --listen "127.0.0.1:$PORT" \
    --data "$TMP/data.$sc.$r" --plugins "$TMP/$sc/plugins" -c "$TMP/$sc/beagle.lua" 2>"$base.log"
  wait_http "http://127.0.0.1:$PORT/health/live" 20 || { tail "$base.log" >&2; exit 1; }
  local t_ready
  t_ready=$(now_s)
  if [ "$sc" = hostile ]; then
    # the endless check's first report: poll until it has recorded a run
    local first="n/a" limit=$((SECONDS + 30))
    while [ $SECONDS -lt $limit ]; do
      if scrape /health/endless "$base.endless0" && ! grep -q '"runs":0[,}]' "$base.endless0" &&
        grep -q '"runs":' "$base.endless0"; then
        first=$(fmt %.2f "$(calc "$(now_s) - $t_ready")")
        break
      fi
      sleep 0.05
    done
    R[$sc,$r,first]=$first
    IFS=$'\t' read -r "R[$sc,$r,first_status]" "R[$sc,$r,first_attempts]" _ "R[$sc,$r,first_rt]" \
      "R[$sc,$r,first_msg]" <<<"$("${STATS[@]}" check "$base.endless0" 2>/dev/null)"
  fi
  local left
  left=$(calc "$t_ready + $WARM - $(now_s)")
  awk -v l="$left" 'BEGIN { exit !(l > 0) }' && sleep "$left"

  # /health/detailed outside the loop-lag window (its body is the largest the agent renders)
  local a0 t0 a1 t1 s0 s1 td0 td1
  scrape /health/detailed "$base.d0"
  td0=$(now_s)
  scrape /metrics "$base.m0"
  a0=$(cpu_ticks "$AGENT")
  s0=$(cpu_stat "$SERVER_CPU")
  t0=$(now_s)
  wrk_window "$sc,$r" "$PORT"
  t1=$(now_s)
  s1=$(cpu_stat "$SERVER_CPU")
  a1=$(cpu_ticks "$AGENT")
  scrape /metrics "$base.m1"
  scrape /health/detailed "$base.d1"
  td1=$(now_s)
  [ "$sc" = hostile ] && scrape /health/endless "$base.endless1"
  kill -0 "$AGENT" 2>/dev/null || { echo "liveness: the agent exited" >&2; tail "$base.log" >&2; exit 1; }
  bench_stop "$AGENT"

  local wall
  wall=$(calc "$t1 - $t0")
  R[$sc,$r,wall]=$wall
  R[$sc,$r,cpu]=$(fmt %.1f "$(calc "($a1 - $a0) / $CLK_TCK / $wall * 100")")
  R[$sc,$r,dwall]=$(calc "$td1 - $td0")
  others "$sc,$r" "$s0" "$s1" "$((a1 - a0))"
  local lag
  lag=$("${STATS[@]}" lag "$base.m0" "$base.m1")
  if [ "$lag" = absent ] || [ -z "$lag" ]; then
    R[$sc,$r,lag]=absent
  else
    R[$sc,$r,lag]=present
    IFS=$'\t' read -r "R[$sc,$r,turns]" "R[$sc,$r,lag99]" "R[$sc,$r,lag99b]" "R[$sc,$r,lagmaxlo]" \
      "R[$sc,$r,lagmaxhi]" "R[$sc,$r,gauge0]" "R[$sc,$r,gauge1]" "R[$sc,$r,over10]" \
      "R[$sc,$r,over20]" <<<"$lag"
  fi
  if [ "$sc" = hostile ]; then
    IFS=$'\t' read -r "R[$sc,$r,end_status]" "R[$sc,$r,end_attempts]" _ "R[$sc,$r,end_rt]" \
      "R[$sc,$r,end_msg]" <<<"$("${STATS[@]}" check "$base.endless1")"
    IFS=$'\t' read -r _ "R[$sc,$r,endless_runs]" _ _ _ _ <<<"$("${STATS[@]}" runs "$base.d0" "$base.d1" endless)"
    IFS=$'\t' read -r "R[$sc,$r,burn_n]" "R[$sc,$r,burn_runs]" "R[$sc,$r,burn_min]" "R[$sc,$r,burn_max]" \
      "R[$sc,$r,burn_healthy]" "R[$sc,$r,burn_other]" <<<"$("${STATS[@]}" runs "$base.d0" "$base.d1" burn_)"
    R[$sc,$r,skipped]=$(awk '/^beagle_check_skipped_total\{check="burn_/ {s += $2} END {print s + 0}' "$base.m1")
    R[$sc,$r,skipped0]=$(awk '/^beagle_check_skipped_total\{check="burn_/ {s += $2} END {print s + 0}' "$base.m0")
  fi
  echo "liveness: $sc round $r: /health/live p50 ${R[$sc,$r,p50]} p99 ${R[$sc,$r,p99]} max ${R[$sc,$r,max]} ms;" \
    "loop lag p99 ${R[$sc,$r,lag99]:-absent} (<= ${R[$sc,$r,lag99b]:-?}) ms; agent CPU ${R[$sc,$r,cpu]} %" >&2
}

for r in $(seq "$ROUNDS"); do
  nginx_round "$r"
  run_round quiet "$r"
  run_round hostile "$r"
done

# ---- verdicts: every round must meet the target
all() { # scenario field limit -> pass | MISS (a missing or non-numeric value misses)
  local r
  for r in $(seq "$ROUNDS"); do
    awk -v v="${R[$1,$r,$2]:-}" -v lim="$3" \
      'BEGIN { exit !(v ~ /^[0-9]+(\.[0-9]*)?$/ && v + 0 <= lim + 0) }' || { echo MISS; return; }
  done
  echo pass
}
each() { # scenario field [suffix] -> "v1 / v2 / ..."
  local r out=""
  for r in $(seq "$ROUNDS"); do out+="${out:+ / }${R[$1,$r,$2]:-n/a}"; done
  echo "$out${3:-}"
}
lag_present=1
for sc in quiet hostile; do
  for r in $(seq "$ROUNDS"); do [ "${R[$sc,$r,lag]}" = present ] || lag_present=0; done
done

v_q_live=$(all quiet p99 2)
v_h_live=$(all hostile p99 10)
if [ "$lag_present" = 1 ]; then
  v_q_lag=$(all quiet lag99b 2)
  v_h_lag=$(all hostile lag99b 10)
else
  v_q_lag="n/a (beagle_loop_lag_seconds histogram not exported)"
  v_h_lag=$v_q_lag
fi
v_msg=pass
v_first=$(all hostile first "$INTERVAL")
for r in $(seq "$ROUNDS"); do
  for w in first end; do
    [ "${R[hostile,$r,${w}_status]:-}" = unhealthy ] || v_msg=MISS
    case "${R[hostile,$r,${w}_msg]:-}" in
      *"instruction budget exceeded"* | *timeout*) ;;
      *) v_msg=MISS ;;
    esac
  done
done
burn_rate() { # round -> runs per second per burning check
  fmt %.2f "$(calc "${R[hostile,$1,burn_runs]:-0} / ${R[hostile,$1,burn_n]:-1} / ${R[hostile,$1,dwall]}")"
}
rates=""
for r in $(seq "$ROUNDS"); do rates+="${rates:+ / }$(burn_rate "$r")"; done
per_s() { # scenario round field -> that count of the window per second
  awk -v n="${R[$1,$2,$3]:-nan}" -v w="${R[$1,$2,wall]}" \
    'BEGIN { if (n ~ /^[0-9]+$/ && w > 0) printf "%.1f", n / w; else print "n/a" }'
}
lag_cell() { # scenario -> "p99 a / b ms (<= c / d); max ..."
  local sc=$1 r p="" b="" m=""
  for r in $(seq "$ROUNDS"); do
    p+="${p:+ / }${R[$sc,$r,lag99]:-n/a}"
    b+="${b:+ / }${R[$sc,$r,lag99b]:-n/a}"
    m+="${m:+ / }$(lag_max "$sc" "$r")"
  done
  echo "p99 $p ms (bucket edge $b ms); max $m ms"
}
lag_max() { # scenario round -> the window's longest turn, as well as two scrapes tell it
  local sc=$1 r=$2
  [ "${R[$sc,$r,lag]}" = present ] || { echo n/a; return; }
  local g0=${R[$sc,$r,gauge0]} g1=${R[$sc,$r,gauge1]} lo=${R[$sc,$r,lagmaxlo]} hi=${R[$sc,$r,lagmaxhi]}
  if awk -v a="$g0" -v b="$g1" 'BEGIN { exit !(b > a) }'; then
    echo "$g1" # the gauge grew in the window: its end value is a turn of the window
  else
    echo "$lo-$(awk -v h="$hi" -v g="$g1" 'BEGIN { print (g != "nan" && (h == "inf" || g + 0 < h + 0)) ? g : h }')"
  fi
}
ratio_of() { # scenario peer field -> scenario/peer of their worst rounds
  local a b
  a=$(for r in $(seq "$ROUNDS"); do echo "${R[$1,$r,$3]:-0}"; done | sort -g | tail -1)
  b=$(for r in $(seq "$ROUNDS"); do echo "${R[$2,$r,$3]:-0}"; done | sort -g | tail -1)
  awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'
}

SCEN="1 endless + $N_BURN x 5M-iteration checks/s"
md "### 8. Liveness: GET /health/live and loop lag with hostile plugins (agent on CPU $SERVER_CPU, wrk -t1 -c1 -d${DUR}s on CPU $CLIENT_CPU)"
md ""
md "The agent as users run it: \`beagle run --listen ... --data ... --plugins DIR -c config\`."
md "**quiet**: no plugins beyond the built-in ones. **hostile**: a check \`endless\` whose run is"
md "\`while true do end\` (default budget and timeout) and $N_BURN checks \`burn_01\`..\`burn_$N_BURN\`, one file"
md "each, whose run loops $ITER times (\`local x = 0 for i = 1, $ITER do x = x + i end\`), all at"
md "interval ${INTERVAL}s (sources below). Each round starts a fresh agent, waits ${WARM} s, then measures a"
md "${DUR} s window: \`wrk -t1 -c1 --latency\` on GET /health/live, and two /metrics scrapes at the"
md "window's start and end. Loop lag: \`beagle_loop_lag_seconds\` (time each loop turn spent in"
md "callbacks), p99 of the window's turns interpolated linearly inside its bucket, and that bucket's"
md "upper edge (the verdict uses the edge); max: the window's longest turn, exact when"
md "\`beagle_loop_lag_max_seconds\` grew during the window, else a range: it lies in the highest"
md "bucket that grew, and below the gauge (which covers the last one to two minutes)."
md "The floor of this machine for the same exchange: nginx (one worker, pinned like the agent) answering"
md "GET /health/live with the agent's body under the same wrk. nginx, quiet and hostile alternate,"
md "$ROUNDS rounds each; a verdict passes only if every round meets the target."
md ""
md "| scenario | round | /health/live p50 / p99 / max ms | req/s | non-2xx / socket errors | loop lag p99 ms (bucket edge) | longest turn in window ms | turns (> 10 ms / > 20 ms a second) | agent CPU | others on CPU $SERVER_CPU (server) / $CLIENT_CPU (wrk) |"
md "|---|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  md "| nginx (floor) | $r | ${R[nginx,$r,p50]} / ${R[nginx,$r,p99]} / ${R[nginx,$r,max]} | ${R[nginx,$r,rps]} | ${R[nginx,$r,errs]} | | | | | ${R[nginx,$r,others]} / ${R[nginx,$r,client,others]} |"
  for sc in quiet hostile; do
    md "| $sc | $r | ${R[$sc,$r,p50]} / ${R[$sc,$r,p99]} / ${R[$sc,$r,max]} | ${R[$sc,$r,rps]} | ${R[$sc,$r,errs]} | ${R[$sc,$r,lag99]:-n/a} (<= ${R[$sc,$r,lag99b]:-n/a}) | $(lag_max "$sc" "$r") | ${R[$sc,$r,turns]:-n/a} ($(per_s "$sc" "$r" over10) / $(per_s "$sc" "$r" over20)) | ${R[$sc,$r,cpu]} % | ${R[$sc,$r,others]} / ${R[$sc,$r,client,others]} |"
  done
done
md ""
md "\"others\": the share of the window each CPU spent on anything but the server (resp. wrk): other"
md "processes and interrupts. The machine is shared; a turn that waits for the CPU counts as lag, and a"
md "request that waits for either CPU as latency."
md ""
md "Hostile scenario, the checks themselves (runs counted from \`/health/detailed\` just before and after the window):"
md ""
md "| round | endless: first report after (s) | status, message (attempts) | at the window's end | endless reports in window | burn_*: runs in window (per check min-max) | runs/s per check | burn_* healthy at end | burn_* runs skipped in window (previous still running) |"
md "|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  md "| $r | ${R[hostile,$r,first]} | ${R[hostile,$r,first_status]:-?}, \"${R[hostile,$r,first_msg]:-?}\" (${R[hostile,$r,first_attempts]:-?}; last attempt ${R[hostile,$r,first_rt]:-?} s) | ${R[hostile,$r,end_status]:-?}, \"${R[hostile,$r,end_msg]:-?}\" (${R[hostile,$r,end_attempts]:-?}; last attempt ${R[hostile,$r,end_rt]:-?} s) | ${R[hostile,$r,endless_runs]:-?} | ${R[hostile,$r,burn_runs]:-?} (${R[hostile,$r,burn_min]:-?}-${R[hostile,$r,burn_max]:-?}) | $(burn_rate "$r") | ${R[hostile,$r,burn_healthy]:-?}/${R[hostile,$r,burn_n]:-?}$([ "${R[hostile,$r,burn_other]:--}" != - ] && echo " (${R[hostile,$r,burn_other]})") | $((${R[hostile,$r,skipped]:-0} - ${R[hostile,$r,skipped0]:-0})) |"
done
md ""
md "\"First report\" is measured from the agent's first answer on /health/live; the endless check's"
md "first result is recorded after its retries (attempts column), so it includes their delays."
md ""
md '<details><summary>wrk output of each round, and the hostile plugins</summary>'
md ""
md '```'
for r in $(seq "$ROUNDS"); do
  for sc in nginx quiet hostile; do
    md "# $sc round $r"
    tee -a "$OUT_MD" <"$TMP/$sc.$r.wrk"
  done
done
md "# endless.lua"
tee -a "$OUT_MD" <"$TMP/hostile/plugins/endless.lua"
md "# burn_01.lua (burn_02 .. burn_$N_BURN differ only in the name)"
tee -a "$OUT_MD" <"$TMP/hostile/plugins/burn_01.lua"
md "# config (hostile)"
head -3 "$TMP/hostile/beagle.lua" | tee -a "$OUT_MD"
md "... (one line per burn_NN)"
md '```'
md '</details>'
md ""

live_cell() { echo "p99 $(each "$1" p99) ms; p50 $(each "$1" p50); max $(each "$1" max) ms"; }
firsts=$(each hostile first " s")
summary "8a. liveness, quiet: GET /health/live (wrk -c1), rounds" "$(live_cell quiet)" "p99 <= 2 ms" "nginx p99 $(each nginx p99) ms (same pins and wrk: the machine's floor)" "$(ratio_of quiet nginx p99) (worst p99s)" "$v_q_live"
summary "8a. liveness, quiet: beagle_loop_lag_seconds, rounds" "$(lag_cell quiet)" "p99 <= 2 ms" "n/a" "n/a" "$v_q_lag"
summary "8b. liveness, hostile ($SCEN): GET /health/live (wrk -c1), rounds" "$(live_cell hostile)" "p99 <= 10 ms" "quiet p99 $(each quiet p99) ms" "$(ratio_of hostile quiet p99) (worst p99s)" "$v_h_live"
summary "8b. liveness, hostile ($SCEN): beagle_loop_lag_seconds, rounds" "$(lag_cell hostile)" "p99 <= 10 ms" "quiet p99 $(each quiet lag99) ms" "$(ratio_of hostile quiet lag99) (worst p99s)" "$v_h_lag"
summary "8b. liveness, hostile: the endless check's report, rounds" "$(each hostile first_status), \"${R[hostile,1,first_msg]:-?}\" first after $firsts ($(each hostile first_attempts) attempts)" "unhealthy, budget or timeout, within its ${INTERVAL} s interval" "n/a" "n/a" "$v_msg / $v_first (within ${INTERVAL} s)"
summary "8b. liveness, hostile: runs of the 5M-iteration checks in the window, rounds" "$rates runs/s per check; healthy at the end: $(each hostile burn_healthy " of $N_BURN")" "none (1/s at most, interval ${INTERVAL} s)" "n/a" "n/a" "n/a (work done)"
