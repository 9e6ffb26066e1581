#!/usr/bin/env bash
# Benchmark 6: alert rules. 10,000 threshold rules over 100,000 series evaluated in one round
# (issue 4: >= 2,000,000 series-evaluations/s on one core), reported against Prometheus 2.42
# evaluating the equivalent alerting rules on the same series in the same run.
#
# Series: bench.m<i>{instance="h<j>"} (Prometheus: bench_m<i>), i = 1..10000, j = 0..9, value
# (i * 10 + j) % 100. Rule i: bench.m<i> > T with
#   quiet  T = 1e9   (nothing fires)
#   1%     T = 98.5  (the series of value 99: 1,000 of 100,000 fire, one in each of 1,000 rules)
#
# (a) + (b) bench/rules_bench.lua under luajit, pinned to CPU 1 (nothing else of this benchmark
#     runs yet): the engine alone on pre-built samples, and q.last_all from a history of the
#     100,000 series + the engine; median of BENCH_RULES_REPS rounds (5).
# (agent) agent B: beagle with a drop-in plugin that sets the 100,000 gauges and a rules dir
#     of 10 files x 1,000 rules, alert_evaluation_interval 10 s, on CPU 0. The round as the agent
#     runs it (declarative rules queried in the agent itself + the engine + the state store), from
#     its own beagle_rule_group_evaluation_seconds histograms (sum of _sum over a round); and the
#     agent's CPU time per round.
# (c) Prometheus 2.42 on CPU 1 (GOMAXPROCS=1) scraping agent A (the same plugin, no rules; on
#     CPU 0) every 15 s, keeping only bench_m*, with the 10,000 equivalent alerting rules in one
#     group evaluated every 5 s; prometheus_rule_group_last_duration_seconds of BENCH_PROM_EVALS
#     (5) evaluations once all 100,000 series are in its head; median. Quiet group first, then
#     the 1% group (same file rewritten, POST /-/reload). Takes ~2.5 min.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init rules
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
RULES=${BENCH_RULES_N:-10000}
PER=10
SERIES=$((RULES * PER))
REPS=${BENCH_RULES_REPS:-5}
PEVALS=${BENCH_PROM_EVALS:-5}
FILES=10
TARGET=2000000
command -v "$PROMETHEUS" >/dev/null || { echo "rules: $PROMETHEUS is missing (apt-get install prometheus)" >&2; exit 1; }

# ---- (a) + (b): luajit, alone on CPU 1
echo "rules: (a)+(b) luajit bench/rules_bench.lua $RULES $PER $REPS" >&2
(cd "$REPO" && BEAGLE_LIB="$BUILD/libbeagle_core.so" LUA_PATH="$REPO/lua/?.lua;;" \
  taskset -c 1 luajit bench/rules_bench.lua "$RULES" "$PER" "$REPS") >"$TMP/lua.tsv" 2>"$TMP/lua.err" || {
  cat "$TMP/lua.err" >&2; exit 1; }
cat "$TMP/lua.tsv" >&2
col() { awk -F'\t' -v k="$1" -v c="$2" '$1 == k { print $c }' "$TMP/lua.tsv"; }

# ---- plugin: the 100,000 gauges
mkdir -p "$TMP/plugins/checks" "$TMP/rules" "$TMP/norules" "$TMP/prom"
cat >"$TMP/plugins/checks/bench_rule_series.lua" <<EOF
return beagle.check {
  name = "bench_rule_series",
  interval = "1h",
  timeout = "120s",
  run = function(opt, ctx)
    local made = 0
    for i = 1, $RULES do
      local name = "bench.m" .. i
      for j = 0, $PER - 1 do
        beagle.gauge(name, { instance = "h" .. j }):set((i * $PER + j) % 100)
        made = made + 1
      end
    end
    return ctx.healthy(("made %d series"):format(made))
  end,
}
EOF

# rules for agent B: FILES files of RULES/FILES rules
beagle_rules() { # threshold
  local per_file=$((RULES / FILES))
  for f in $(seq 0 $((FILES - 1))); do
    awk -v a=$((f * per_file + 1)) -v b=$(((f + 1) * per_file)) -v t="$1" 'BEGIN {
      for (i = a; i <= b; i++)
        printf "alert \"bench_r%d\" { metric = \"bench.m%d\", condition = \">\", threshold = %s, message = \"bench.m%d on {{ labels.instance }} is {{ value }}\" }\n", i, i, t, i
    }' >"$TMP/rules.tmp" && mv "$TMP/rules.tmp" "$TMP/rules/bench_$f.lua"
  done
}
prom_rules() { # group threshold
  awk -v n="$RULES" -v g="$1" -v t="$2" 'BEGIN {
    printf "groups:\n- name: %s\n  interval: 5s\n  rules:\n", g
    for (i = 1; i <= n; i++)
      printf "  - alert: bench_r%d\n    expr: bench_m%d > %s\n    annotations:\n      message: \"bench.m%d on {{ $labels.instance }} is {{ $value }}\"\n", i, i, t, i
  }' >"$TMP/prom/rules.yml.tmp" && mv "$TMP/prom/rules.yml.tmp" "$TMP/prom/rules.yml"
}
beagle_rules 1e9
prom_rules bench_quiet 1e9

P_A=$(free_port)
P_B=$(free_port)
P_P=$(free_port)
AGENT_ENV=(MONITORING_MAX_SERIES=300000 MONITORING_MAX_SERIES_PER_METRIC=20000
  MONITORING_PLUGIN_INSTRUCTION_BUDGET=1e11 MONITORING_METRICS_COLLECTION_INTERVAL=5
  MONITORING_ALERT_EVALUATION_INTERVAL=10)
cd "$TMP" || exit 1
bench_spawn A env "${AGENT_ENV[@]}" taskset -c 0 "$BEAGLE" run --listen "127.0.0.1:$P_A" --data "$TMP/data_a" \
  --statsd off --plugins "$TMP/plugins" --rules "$TMP/norules" 2>"$TMP/agent_a.log"
# BENCH_RULES_PROFILE=FILE: agent B's own Lua sampled by jit.p into FILE (perturbs the numbers)
bench_spawn B env "${AGENT_ENV[@]}" ${BENCH_RULES_PROFILE:+BEAGLE_PROFILE=$BENCH_RULES_PROFILE} taskset -c 0 "$BEAGLE" run --listen "127.0.0.1:$P_B" --data "$TMP/data_b" \
  --statsd off --plugins "$TMP/plugins" --rules "$TMP/rules" 2>"$TMP/agent_b.log"
for p in $P_A $P_B; do wait_http "http://127.0.0.1:$p/health/live" 60 || { tail "$TMP"/agent_*.log >&2; exit 1; }; done
plugin_done() {
  curl -s "http://127.0.0.1:$1/health/bench_rule_series" | python3 -c '
import json, sys
try: d = json.load(sys.stdin)
except Exception: sys.exit(1)
c = d.get("check", d)
sys.exit(0 if c.get("status") == "healthy" and (c.get("message") or "").startswith("made") else 1)'
}
for p in $P_A $P_B; do
  for _ in $(seq 600); do plugin_done "$p" && break; sleep 0.2; done
  plugin_done "$p" || { echo "rules: series plugin on :$p did not finish" >&2; tail -20 "$TMP"/agent_*.log >&2; exit 1; }
done
loaded=$(curl -s "http://127.0.0.1:$P_B/alerts/rules" | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("rules", d) if isinstance(d, dict) else d; print(sum(1 for r in d if str(r.get("name","")).startswith("bench_r")))')
echo "rules: agent B holds $loaded bench rules" >&2

# ---- Prometheus
cat >"$TMP/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
  scrape_timeout: 10s
  evaluation_interval: 5s
rule_files: [ "$TMP/prom/rules.yml" ]
scrape_configs:
  - job_name: beagle
    honor_labels: true
    static_configs: [ { targets: [ "127.0.0.1:$P_A" ] } ]
    metric_relabel_configs:
      - { source_labels: [ __name__ ], regex: "bench_m[0-9]+", action: keep }
EOF
t_prom=$SECONDS
bench_spawn PROM env GOMAXPROCS=1 taskset -c 1 "$PROMETHEUS" --config.file="$TMP/prom/prometheus.yml" \
  --storage.tsdb.path="$TMP/prom/data" --web.listen-address="127.0.0.1:$P_P" --web.enable-lifecycle \
  --log.level=warn 2>"$TMP/prom.log"
wait_http "http://127.0.0.1:$P_P/-/ready" 60 || { tail "$TMP/prom.log" >&2; exit 1; }
for _ in $(seq 120); do
  curl -s "http://127.0.0.1:$P_P/-/ready" | grep -qi 'ready' && break
  sleep 0.5
done
prom_start=$((SECONDS - t_prom))

pq() { # instant query -> first value
  curl -s --get "http://127.0.0.1:$P_P/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)["data"]["result"]
    print(r[0]["value"][1] if r else 0)
except Exception:
    print(0)'
}
pmetric() { # name group -> value from Prometheus' own /metrics
  curl -s "http://127.0.0.1:$P_P/metrics" | awk -v n="$1" -v g="$2" '
    index($0, n "{") == 1 && index($0, "rule_group=\"" g "\"") { print $NF; exit }'
}
# prom_evals GROUP : waits for all series, then records PEVALS evaluations' durations
prom_evals() {
  local g="$TMP/prom/rules.yml;$1" deadline=$((SECONDS + 90)) n
  while [ $SECONDS -lt $deadline ]; do
    n=$(pq "count({__name__=~\"bench_m[0-9]+\"})")
    [ "${n:-0}" -ge "$SERIES" ] && break
    sleep 1
  done
  [ "${n:-0}" -ge "$SERIES" ] || { echo "rules: Prometheus has $n series, want $SERIES" >&2; return 1; }
  echo "rules: Prometheus holds $n series ($1)" >&2
  local it0 it last
  it0=$(pmetric prometheus_rule_group_iterations_total "$g")
  last=${it0:-0}
  # skip the evaluation in flight, then record PEVALS
  local got=-1
  : >"$TMP/prom_$1.txt"
  while [ $SECONDS -lt $((deadline + PEVALS * 10)) ] && [ "$got" -lt "$PEVALS" ]; do
    sleep 0.3
    it=$(pmetric prometheus_rule_group_iterations_total "$g")
    if [ -n "$it" ] && [ "$(calc "($it > $last)")" = 1 ]; then
      last=$it
      got=$((got + 1))
      [ "$got" -ge 1 ] && pmetric prometheus_rule_group_last_duration_seconds "$g" >>"$TMP/prom_$1.txt"
    fi
  done
  [ "$got" -ge "$PEVALS" ] || { echo "rules: group $g: iterations $it0 -> ${it:-none}, recorded $got" >&2; return 1; }
}
med_file() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) { print 0; exit } m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.6f", m }'; }
min_file() { sort -g "$1" | head -1; }

# agent B's histogram of the time each file's due rules take in their state (one s:call per
# batch of rules): "sum count" over the bench files; a round is FILES evaluations
bsnap() {
  curl -s "http://127.0.0.1:$P_B/metrics" | awk '
    /^beagle_rule_group_evaluation_seconds_sum\{/ && /file="bench_/ { s += $NF }
    /^beagle_rule_group_evaluation_seconds_count\{/ && /file="bench_/ { c += $NF }
    /^beagle_rule_group_evaluation_cpu_seconds_sum\{/ && /file="bench_/ { u += $NF }
    END { printf "%.9f %d %.9f\n", s, c, u }'
}

# round_cpu OUT : runs until killed; each time agent B completes a round (FILES more evaluations
# since the last one seen whole) appends that round's loop CPU (s) to OUT. The machine's speed
# drifts (other guests on the host), so the phases report the median of their rounds as well as
# the mean over the window.
# A scrape of agent B renders its 100,000 series on B's CPU: the sampler scrapes once per round,
# half an interval after it (polling 2 s apart only until it has found the rounds' phase).
round_cpu() {
  # a background subshell keeps the script's traps: killed, it would run bench_cleanup (stop
  # the agents, remove $TMP) as if the whole benchmark ended
  trap - EXIT INT TERM
  local c_last="" u_last="" s c u
  read -r s c_last u_last < <(bsnap)
  while true; do
    read -r s c u < <(bsnap)
    [ "$c" -gt "$c_last" ] && break
    sleep 2
  done
  sleep 5 # mid-interval: the files' evaluations of the round are long done
  read -r s c_last u_last < <(bsnap)
  while true; do
    sleep 10
    read -r s c u < <(bsnap)
    while [ $(((c - c_last) % FILES)) != 0 ]; do # a round under way: wait for its end
      sleep 0.5
      read -r s c u < <(bsnap)
    done
    if [ "$c" -gt "$c_last" ]; then
      # one whole round (or more, if one was missed: then their mean)
      awk -v u0="$u_last" -v u1="$u" -v r=$(((c - c_last) / FILES)) 'BEGIN { printf "%.6f\n", (u1 - u0) / r }' >>"$1"
      c_last=$c u_last=$u
    fi
  done
}
# wait_rounds FILE N : until FILE holds N rounds
wait_rounds() { while [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -lt "$2" ]; do sleep 1; done; }
MIN_ROUNDS=${BENCH_RULES_ROUNDS:-5}

# quiet phase: B has had its series in history for a sample interval by now
sleep 6
: >"$TMP/rounds_quiet.txt"
round_cpu "$TMP/rounds_quiet.txt" &
RC=$!
read -r qs0 qc0 qu0 < <(bsnap); qt0=$(cpu_ticks "$B"); qa0=$(cpu_ticks "$A"); qw0=$(now_s)
prom_evals bench_quiet || { echo "rules: Prometheus quiet evaluations not seen" >&2; tail "$TMP/prom.log" >&2; exit 1; }
# at least two rounds of B in the window, and MIN_ROUNDS whole ones
while [ "$(bsnap | awk -v c="$qc0" -v n="$FILES" '{ print ($2 - c >= 2 * n) }')" != 1 ]; do sleep 1; done
wait_rounds "$TMP/rounds_quiet.txt" "$MIN_ROUNDS"
kill "$RC" 2>/dev/null; wait "$RC" 2>/dev/null
read -r qs1 qc1 qu1 < <(bsnap); qt1=$(cpu_ticks "$B"); qa1=$(cpu_ticks "$A"); qw1=$(now_s)
q_alerts_b=$(curl -s "http://127.0.0.1:$P_B/alerts" | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("alerts", d) if isinstance(d, dict) else d; print(sum(1 for a in d if str(a.get("name","")).startswith("bench_r")))')

# 1% phase
beagle_rules 98.5
prom_rules bench_fire 98.5
t_reload=$SECONDS
curl -s -X POST "http://127.0.0.1:$P_P/-/reload" >/dev/null
prom_reload=$((SECONDS - t_reload))
sleep 12 # B reloads its files (state kept), then its first round after one interval
: >"$TMP/rounds_fire.txt"
round_cpu "$TMP/rounds_fire.txt" &
RC=$!
read -r fs0 fc0 fu0 < <(bsnap); ft0=$(cpu_ticks "$B"); fa0=$(cpu_ticks "$A"); fw0=$(now_s)
prom_evals bench_fire || { echo "rules: Prometheus 1% evaluations not seen" >&2; tail "$TMP/prom.log" >&2; exit 1; }
while [ "$(bsnap | awk -v c="$fc0" -v n="$FILES" '{ print ($2 - c >= 2 * n) }')" != 1 ]; do sleep 1; done
wait_rounds "$TMP/rounds_fire.txt" "$MIN_ROUNDS"
kill "$RC" 2>/dev/null; wait "$RC" 2>/dev/null
read -r fs1 fc1 fu1 < <(bsnap); ft1=$(cpu_ticks "$B"); fa1=$(cpu_ticks "$A"); fw1=$(now_s)
p_firing=$(pq 'count(ALERTS{alertstate="firing",alertname=~"bench_r.*"})')
b_firing=$(curl -s "http://127.0.0.1:$P_B/alerts" | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("alerts", d) if isinstance(d, dict) else d; print(sum(1 for a in d if str(a.get("name","")).startswith("bench_r") and a.get("state") == "firing"))')
b_rss=$(rss_kb "$B")
p_rss=$(rss_kb "$PROM")

# ---- numbers
pq_med=$(med_file "$TMP/prom_bench_quiet.txt"); pq_min=$(min_file "$TMP/prom_bench_quiet.txt")
pf_med=$(med_file "$TMP/prom_bench_fire.txt"); pf_min=$(min_file "$TMP/prom_bench_fire.txt")
rate() { awk -v s="$SERIES" -v d="$1" 'BEGIN { if (d > 0) printf "%.0f", s / d; else print 0 }'; }
human() { awk -v v="$1" 'BEGIN { printf "%.2fM", v / 1e6 }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.1f", v * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
pq_rate=$(rate "$pq_med"); pf_rate=$(rate "$pf_med")
aq=$(col a_quiet 2); aq_rate=$(col a_quiet 4)
afs=$(col a_fire_steady 2); afs_rate=$(col a_fire_steady 4)
aff=$(col a_fire_first 2); aff_rate=$(col a_fire_first 4)
ao=$(col a_rule_overhead 2)
bqy=$(col b_query 2); bqy_rate=$(col b_query 4)
bq=$(col b_quiet 2); bq_rate=$(col b_quiet 4)
bf=$(col b_fire_steady 2); bf_rate=$(col b_fire_steady 4)
bs=$(col b_sandbox_like_quiet 2); bs_rate=$(col b_sandbox_like_quiet 4)
bsy=$(col b_shared_query 2); bsy_rate=$(col b_shared_query 4)
bsq=$(col b_shared_quiet 2); bsq_rate=$(col b_shared_quiet 4)
bsf=$(col b_shared_fire 2); bsf_rate=$(col b_shared_fire 4)
# agent B: s:call per evaluation and per round; CPU per round
rounds_q=$(awk -v c0="$qc0" -v c1="$qc1" -v n="$FILES" 'BEGIN { printf "%.2f", (c1 - c0) / n }')
rounds_f=$(awk -v c0="$fc0" -v c1="$fc1" -v n="$FILES" 'BEGIN { printf "%.2f", (c1 - c0) / n }')
# per rule: the state crossings of a round divided by the rules in it
call_q=$(awk -v s0="$qs0" -v s1="$qs1" -v r="$rounds_q" -v n="$RULES" 'BEGIN { printf "%.3f", (s1 - s0) / r / n * 1e6 }')
call_f=$(awk -v s0="$fs0" -v s1="$fs1" -v r="$rounds_f" -v n="$RULES" 'BEGIN { printf "%.3f", (s1 - s0) / r / n * 1e6 }')
cpu_round() { awk -v t0="$1" -v t1="$2" -v r="$3" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (t1 - t0) / hz / r }'; }
bcpu_q=$(cpu_round "$qt0" "$qt1" "$rounds_q"); acpu_q=$(cpu_round "$qa0" "$qa1" "$rounds_q")
bcpu_f=$(cpu_round "$ft0" "$ft1" "$rounds_f"); acpu_f=$(cpu_round "$fa0" "$fa1" "$rounds_f")
callround_q=$(awk -v c="$call_q" -v n="$RULES" 'BEGIN { printf "%.3f", c * n / 1e6 }')
callround_f=$(awk -v c="$call_f" -v n="$RULES" 'BEGIN { printf "%.3f", c * n / 1e6 }')
# end to end in the agent, measured: the histograms cover query + engine + store for each file;
# the round's CPU (the loop thread's) is the figure: agent B shares CPU 0 with agent A, whose
# turns (serving Prometheus 100,000 series) land inside B's wall-clock rounds
wall_q=$callround_q
wall_f=$callround_f
e2e_q=$(awk -v u0="$qu0" -v u1="$qu1" -v r="$rounds_q" 'BEGIN { printf "%.6f", (u1 - u0) / r }')
e2e_f=$(awk -v u0="$fu0" -v u1="$fu1" -v r="$rounds_f" 'BEGIN { printf "%.6f", (u1 - u0) / r }')
e2e_q_rate=$(rate "$e2e_q"); e2e_f_rate=$(rate "$e2e_f")
# per round (median over the phase's whole rounds): the figure judged, as Prometheus' median is
rq_med=$(med_file "$TMP/rounds_quiet.txt"); rf_med=$(med_file "$TMP/rounds_fire.txt")
rq_rate=$(rate "$rq_med"); rf_rate=$(rate "$rf_med")
rounds_all() { awk '{ printf "%s%.1f", sep, $1 * 1000; sep = " " }' "$1"; }
v_aq=$(verdict "$aq_rate >= $TARGET"); v_afs=$(verdict "$afs_rate >= $TARGET"); v_aff=$(verdict "$aff_rate >= $TARGET")
v_bq=$(verdict "$bsq_rate >= $TARGET"); v_bf=$(verdict "$bsf_rate >= $TARGET")
v_eq=$(verdict "$rq_rate >= $TARGET"); v_ef=$(verdict "$rf_rate >= $TARGET")

md "### 6. Alert rules: $RULES threshold rules over $SERIES series, one round, against Prometheus $("$PROMETHEUS" --version 2>&1 | awk 'NR == 1 {print $3}')"
md ""
md "Series bench.m<i>{instance=\"h<j>\"} (Prometheus: bench_m<i>), i = 1..$RULES, j = 0..$((PER - 1)), value (i x $PER + j) mod 100; rule i is"
md "\`bench.m<i> > T\` with a message template on the instance label: quiet T = 1e9 (none fire), 1% T = 98.5 (the value-99 series: 1,000 of"
md "$SERIES fire, one in each of 1,000 rules). Series-evaluations/s = $SERIES / (time of one round). Target: >= 2,000,000/s on one core."
md ""
md "**(a) engine alone** and **(b) query + engine**: bench/rules_bench.lua under luajit (JIT on, as the agent's library code runs), CPU 1,"
md "CPU time (os.clock), full GC before each round, one warm-up then median of $REPS rounds. Rules loaded by beagle.rules.dsl from"
md "generated source; engine with the manager's template renderer, no store. (a) passes pre-built sample lists (label tables"
md "reused, so the fingerprint cache hits); (b) gets them from \`q.last_all(metric)\` over a beagle.query history holding the"
md "$SERIES series (4 samples each)."
md ""
md "| measure | round (median) | min | series-evaluations/s | target | verdict |"
md "|---|---|---|---|---|---|"
md "| (a) engine alone, quiet | $(ms "$aq") ms | $(ms "$(col a_quiet 3)") ms | $(human "$aq_rate") | >= 2M | $v_aq |"
md "| (a) engine alone, 1% above, steady (already firing) | $(ms "$afs") ms | $(ms "$(col a_fire_steady 3)") ms | $(human "$afs_rate") | >= 2M | $v_afs |"
md "| (a) engine alone, 1% above, first round (1,000 go inactive -> firing, fresh engine) | $(ms "$aff") ms | $(ms "$(col a_fire_first 3)") ms | $(human "$aff_rate") | >= 2M | $v_aff |"
md "| (a) engine, empty sample lists (per-rule floor: $(awk -v t="$ao" -v n="$RULES" 'BEGIN { printf "%.2f", t / n * 1e6 }') us/rule) | $(ms "$ao") ms | $(ms "$(col a_rule_overhead 3)") ms | | | |"
md "| (b) q.last_all alone (history -> Lua lists) | $(ms "$bqy") ms | $(ms "$(col b_query 3)") ms | $(human "$bqy_rate") | | |"
md "| (b) q.last_all + engine, quiet | $(ms "$bq") ms | $(ms "$(col b_quiet 3)") ms | $(human "$bq_rate") | >= 2M | $v_bq |"
md "| (b) q.last_all + engine, 1% above, steady | $(ms "$bf") ms | $(ms "$(col b_fire_steady 3)") ms | $(human "$bf_rate") | >= 2M | $v_bf |"
md "| (b) q.last_columns alone (history -> value array + shared label tables: the agent's query for declarative rules) | $(ms "$bsy") ms | $(ms "$(col b_shared_query 3)") ms | $(human "$bsy_rate") | | |"
md "| (b) q.last_columns + Engine:evaluate_columns, quiet (the agent's path) | $(ms "$bsq") ms | $(ms "$(col b_shared_quiet 3)") ms | $(human "$bsq_rate") | >= 2M | $v_bq |"
md "| (b) q.last_columns + Engine:evaluate_columns, 1% above, steady (the agent's path) | $(ms "$bsf") ms | $(ms "$(col b_shared_fire 3)") ms | $(human "$bsf_rate") | >= 2M | $v_bf |"
md "| (b) as __eval_rule does it (query.new() per call, rule found by scanning the file's list of $RULES) + engine, quiet, no s:call | $(ms "$bs") ms | $(ms "$(col b_sandbox_like_quiet 3)") ms | $(human "$bs_rate") | | |"
md ""
md "dsl.load of $RULES generated rules: $(col load 2) s. History fill: $(col fill 2) s for $SERIES series x 4 samples."
md ""
md "**In the agent** (agent B on CPU 0: the same series from a drop-in plugin through beagle.gauge handles, sampled into history"
md "every 5 s; $FILES rule files x $((RULES / FILES)) rules in --rules, alert_evaluation_interval 10 s, one timer per file, SQLite state"
md "store; $loaded bench rules loaded). The declarative rules are queried in the agent itself (only \`expr\` rules cross into their"
md "file's state). Round = sum over the bench files per round of two histograms (query + engine + state"
md "store), between two snapshots: beagle_rule_group_evaluation_cpu_seconds (the loop thread's CPU time, the figure"
md "judged) and beagle_rule_group_evaluation_seconds (wall time, which on this shared CPU includes agent A's turns)."
md "Process CPU per round of agent B next to agent A (same series and history, no rules; serves Prometheus' scrapes)."
md ""
md "| phase | round, loop CPU (median of whole rounds) | series-evaluations/s (CPU, median round) | verdict | every round, loop CPU (ms) | rounds in window | round, loop CPU (window mean) | series-evaluations/s (window mean) | round, wall (per rule) | agent B process CPU / 10 s | agent A process CPU / same time |"
md "|---|---|---|---|---|---|---|---|---|---|---|"
md "| quiet | $(ms "$rq_med") ms | $(human "$rq_rate") | $v_eq | $(rounds_all "$TMP/rounds_quiet.txt") | $rounds_q | $(ms "$e2e_q") ms | $(human "$e2e_q_rate") | $(ms "$wall_q") ms ($call_q us) | $(ms "$bcpu_q") ms | $(ms "$acpu_q") ms |"
md "| 1% above | $(ms "$rf_med") ms | $(human "$rf_rate") | $v_ef | $(rounds_all "$TMP/rounds_fire.txt") | $rounds_f | $(ms "$e2e_f") ms | $(human "$e2e_f_rate") | $(ms "$wall_f") ms ($call_f us) | $(ms "$bcpu_f") ms | $(ms "$acpu_f") ms |"
md ""
md "The loop CPU of a round varies by more than the rules do: this VM's speed drifts with the other guests on its host"
md "(identical runs minutes apart differ by up to 25 %). The verdict is the median whole round of the phase (at least"
md "$MIN_ROUNDS), as Prometheus' figure is the median of its evaluations; the window mean is shown next to it."
md ""
md "Firing after the 1% phase: agent B $b_firing bench alerts (quiet phase: $q_alerts_b), Prometheus $p_firing. Agent B VmRSS $(fmt %.1f "$(calc "$b_rss / 1024")") MiB."
md ""
md "**(c) Prometheus** $("$PROMETHEUS" --version 2>&1 | awk 'NR == 1 {print $3}') on CPU 1 with GOMAXPROCS=1, scraping agent A every 15 s (honor_labels, only bench_m* kept), the $RULES"
md "equivalent alerting rules (\`bench_m<i> > T\`, same annotation template) in one group, interval 5 s; once its head holds all"
md "$SERIES series, prometheus_rule_group_last_duration_seconds of $PEVALS consecutive evaluations (one skipped), median. Startup with"
md "the rules: ${prom_start} s to ready; reload to the 1% group: ${prom_reload} s. Prometheus VmRSS $(fmt %.1f "$(calc "$p_rss / 1024")") MiB."
md ""
md "| phase | Prometheus round (median) | min | all | series-evaluations/s | beagle (a) engine | ratio (a)/Prometheus | beagle (b) query + engine | ratio (b)/Prometheus | beagle in agent | ratio agent/Prometheus |"
md "|---|---|---|---|---|---|---|---|---|---|---|"
md "| quiet | $(ms "$pq_med") ms | $(ms "$pq_min") ms | $(awk '{printf "%.1f ", $1 * 1000}' "$TMP/prom_bench_quiet.txt") | $(human "$pq_rate") | $(human "$aq_rate") | $(ratio "$aq_rate" "$pq_rate") | $(human "$bsq_rate") | $(ratio "$bsq_rate" "$pq_rate") | $(human "$rq_rate") | $(ratio "$rq_rate" "$pq_rate") |"
md "| 1% above | $(ms "$pf_med") ms | $(ms "$pf_min") ms | $(awk '{printf "%.1f ", $1 * 1000}' "$TMP/prom_bench_fire.txt") | $(human "$pf_rate") | $(human "$afs_rate") | $(ratio "$afs_rate" "$pf_rate") | $(human "$bsf_rate") | $(ratio "$bsf_rate" "$pf_rate") | $(human "$rf_rate") | $(ratio "$rf_rate" "$pf_rate") |"
md ""
md "Caveats: Prometheus' group duration is wall time on its one P, which it shares with ingesting a 100k-series scrape every"
md "15 s, so its rounds vary (see \"all\"; the min is the cleaner figure); beagle's (a)/(b) are CPU time of a single luajit process;"
md "the in-agent round is the loop thread's CPU time from the agent's own histogram (median whole round)."
md ""
md "<details><summary>raw rules_bench.lua output (key, median s, min s, series-evaluations/s, what)</summary>"
md ""
md '```'
while IFS= read -r line; do md "$line"; done <"$TMP/lua.tsv"
md '```'
md "</details>"
md ""

summary "6a. rule engine alone, $RULES rules / $SERIES series, quiet round" "$(human "$aq_rate") series-evals/s" ">= 2M/s" "Prometheus: $(human "$pq_rate")/s" "$(ratio "$aq_rate" "$pq_rate")" "$v_aq"
summary "6a. rule engine alone, 1% above (steady / first round)" "$(human "$afs_rate") / $(human "$aff_rate") series-evals/s" ">= 2M/s" "Prometheus 1%: $(human "$pf_rate")/s" "$(ratio "$afs_rate" "$pf_rate")" "$v_afs / $v_aff"
summary "6b. q.last_columns + engine (the agent's path), quiet / 1% above" "$(human "$bsq_rate") / $(human "$bsf_rate") series-evals/s" ">= 2M/s" "Prometheus: $(human "$pq_rate") / $(human "$pf_rate")" "$(ratio "$bsq_rate" "$pq_rate") / $(ratio "$bsf_rate" "$pf_rate")" "$v_bq / $v_bf"
summary "6b. in the agent (median round, loop CPU), quiet / 1%" "$(human "$rq_rate") / $(human "$rf_rate") series-evals/s (wall: $(ms "$wall_q") / $(ms "$wall_f") ms a round)" ">= 2M/s" "Prometheus: $(human "$pq_rate") / $(human "$pf_rate")" "$(ratio "$rq_rate" "$pq_rate") / $(ratio "$rf_rate" "$pf_rate")" "$v_eq / $v_ef"
