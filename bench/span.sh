#!/usr/bin/env bash
# A span from Lua (issue 16): start + end with two attributes, sampled into the buffer (target
# <= 150 ns) and in a trace that is not sampled (target <= 20 ns), measured by bench/span.lua
# against $BUILD/libbeagle_core.so, pinned to one CPU (BENCH_SPAN_CPU, default 1): from
# compiled code (the JIT: a library calling beagle.span) and from a plugin's chunk as the agent
# runs it (interpreted, with the count hook), each against the target. BENCH_SPAN_N (2e6),
# BENCH_SPAN_REPS (5: the median is kept). Takes ~30 s.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init span

LIB="$BUILD/libbeagle_core.so"
N=${BENCH_SPAN_N:-2e6}
REPS=${BENCH_SPAN_REPS:-5}
# each measurement in a process of its own: the JIT's state (traces, functions it gave up on)
# left by one would change the next
KEYS="sampled_jit sampled_noarg_jit sampled_literal_jit sampled_setattr_jit instrument_jit agent_start_jit
  sampled_norec_jit unsampled_jit unsampled_setattr_jit loop_plugin sampled_plugin sampled_noarg_plugin
  sampled_literal_plugin sampled_setattr_plugin unsampled_plugin floor_plugin unsampled_literal_plugin
  unsampled_setattr_plugin"
: >"$TMP/span.out"
for k in $KEYS; do
  (cd "$REPO" && BEAGLE_LIB="$LIB" LUA_PATH="$REPO/lua/?.lua;$REPO/lua/?/init.lua;;" \
    timeout 60 taskset -c "${BENCH_SPAN_CPU:-1}" luajit "$BENCH_DIR/span.lua" "$N" "$REPS" "^$k\$") \
    >>"$TMP/span.out" 2>"$TMP/span.err" || { cat "$TMP/span.err" >&2; exit 1; }
done

val() { awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$TMP/span.out"; }

md "### Span start+end from Lua (bench/span.lua)"
md ""
md "beagle.span(name, attrs, fn) with two attributes, from agent.trace's plugin API; \"sampled\": sampling rate 1 and"
md "an exporter configured, every span recorded into the buffer, drained every 1024 spans (included); \"unsampled\":"
md "inside a trace whose flags say not sampled, where beagle.span hands fn the shared no-op span. \"JIT\": the calling"
md "loop is compiled (a library); \"plugin\": the loop is a chunk with the JIT off under a count hook, as plugin code"
md "runs. Each measurement in a luajit of its own; median of $REPS runs, ns per span, CPU ${BENCH_SPAN_CPU:-1}."
md ""
md "| measurement | ns | description |"
md "|---|---|---|"
while IFS=$'\t' read -r key med _min _unit desc; do
  case "$key" in "#"*|"") continue ;; esac
  md "| $key | $med | $desc |"
done <"$TMP/span.out"
md ""
md "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
md ""
SJ=$(val sampled_jit) UJ=$(val unsampled_jit) SP=$(val sampled_plugin) UP=$(val unsampled_plugin)
summary "Span from Lua, 2 attributes, from compiled code (bench/span.lua)" \
  "sampled $SJ ns, unsampled $UJ ns" "<= 150 ns sampled, <= 20 ns unsampled" "n/a" "n/a" \
  "$(verdict "$SJ <= 150 && $UJ <= 20")"
summary "Span from Lua, 2 attributes, from a plugin's chunk (bench/span.lua)" \
  "sampled $SP ns, unsampled $UP ns" "<= 150 ns sampled, <= 20 ns unsampled" "n/a" "n/a" \
  "$(verdict "$SP <= 150 && $UP <= 20")"
