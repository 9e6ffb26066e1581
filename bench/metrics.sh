#!/usr/bin/env bash
# Benchmark 5: the metrics hot paths of issue 3, each next to its peer in the same run:
#   bench/metrics_c_bench.c  plain C (direct and indirect bg_counter_add, observe, the bucket
#                            part alone, the sketch alone, the render of 100,000 series,
#                            memory per idle series), built against this build's
#                            libbeagle_core.so;
#   bench/metrics_ffi.lua    the same from LuaJIT through the FFI handles, JIT-compiled and
#                            as plugins run (jit.off(chunk, true) + a count hook every 1000
#                            instructions), next to a Lua table field add; increment_counter by
#                            name with two tags (same table reused, and a fresh literal).
# Both pinned to the same CPU (BENCH_METRICS_CPU, default 1); every number is the median (and
# min) of BENCH_METRICS_REPS runs (default 5).
#   BENCH_METRICS_N     iterations of the Lua loops (default 2e7)
#   BENCH_METRICS_C_N   iterations of the C add loop (default 1e8)
# Takes ~45 s.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init metrics

CPU=${BENCH_METRICS_CPU:-1}
REPS=${BENCH_METRICS_REPS:-5}
LIB="$BUILD/libbeagle_core.so"

BUILD="$BUILD" BENCH_CPU="$CPU" timeout 200 "$BENCH_DIR/metrics_c_bench.sh" \
  "${BENCH_METRICS_C_N:-100000000}" "$REPS" >"$TMP/c.out" 2>"$TMP/c.err"
crc=$?
(cd "$REPO" && BEAGLE_LIB="$LIB" LUA_PATH="$REPO/lua/?.lua;$REPO/lua/?/init.lua;;" \
  timeout 200 taskset -c "$CPU" luajit "$BENCH_DIR/metrics_ffi.lua" "${BENCH_METRICS_N:-2e7}" "$REPS") \
  >"$TMP/lua.out" 2>"$TMP/lua.err"
lrc=$?
cat "$TMP/c.out" "$TMP/lua.out" >"$TMP/all"

# med KEY / mn KEY : median / min of a measurement ("" when missing)
med() { awk -F'\t' -v k="$1" '$1 == k {print $2; exit}' "$TMP/all"; }
mn() { awk -F'\t' -v k="$1" '$1 == k {print $3; exit}' "$TMP/all"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
ver() { # ver VALUE OP TARGET
  [ -n "$1" ] || { echo "FAIL"; return; }
  verdict "$1 $2 $3"
}
row() { # row KEY TARGET VERDICT : one table row from a measurement
  local d
  d=$(awk -F'\t' -v k="$1" '$1 == k {print $5; exit}' "$TMP/all")
  md "| $d | $(med "$1") | $(mn "$1") | $2 | $3 |"
}

md "### 5. Metrics hot paths: FFI handles, by-name calls, histogram observe, render, memory per series"
md ""
md "luajit $(luajit -v 2>&1 | awk '{print $2}') and the C bench (cc -O2 against libbeagle_core.so), both pinned to CPU $CPU;"
md "each number is the median and the min of $REPS runs (ns per operation unless stated). Exit status: C bench $crc, Lua bench $lrc."
md ""
md "| measure | median | min | target | verdict |"
md "|---|---|---|---|---|"

# 1. counter add
inc=$(med lua_inc_jit)
c_dir=$(med c_add_direct)
c_ind=$(med c_add_indirect)
tbl=$(med lua_table_jit)
v_inc=$(ver "$inc" "<=" 3)
row lua_inc_jit "<= 3 ns" "$v_inc"
row c_add_direct "(peer)" ""
row c_add_indirect "(peer)" ""
row c_add_floor "(reference)" ""
row lua_table_jit "(peer)" ""
md "| ratio FFI c:inc() (JIT) / plain C direct call | $(ratio "$inc" "$c_dir") | | | |"
md "| ratio FFI c:inc() (JIT) / plain C indirect call | $(ratio "$inc" "$c_ind") | | | |"
md "| ratio FFI c:inc() (JIT) / Lua table field add | $(ratio "$inc" "$tbl") | | | |"
pinc=$(med lua_inc_plugin)
v_pinc=$(ver "$pinc" "<=" 80)
row lua_inc_plugin "<= 80 ns" "$v_pinc"
row lua_table_plugin "(peer)" ""
md "| ratio c:inc() / Lua table field add, plugin mode | $(ratio "$pinc" "$(med lua_table_plugin)") | | | |"
row lua_gauge_set_jit "" ""

# 2. increment_counter by name
lit=$(med lua_incname_literal_jit)
reu=$(med lua_incname_reused_jit)
v_lit=$(ver "$lit" "<=" 60)
v_reu=$(ver "$reu" "<=" 60)
row lua_incname_literal_jit "<= 60 ns (the idiomatic call)" "$v_lit"
row lua_literal_only_jit "(part of the line above)" ""
row lua_incname_reused_jit "<= 60 ns" "$v_reu"
row lua_incname_notags_jit "" ""
row lua_incname_literal_plugin "" ""
row lua_incname_reused_plugin "" ""
row lua_record_jit "" ""
row lua_timer_jit "" ""

# 3. histogram observe. Every histogram carries the sketch, so the 12 ns target of the bucket
# part (<= 16 buckets) is judged on the C measurement of observe's own bucket search without
# the sketch (no FFI), and the 20 ns target on the full observe through the FFI.
o11=$(med lua_observe11_jit)
o16=$(med lua_observe16_jit)
co16=$(med c_observe16_seq)
b16=$(med c_bucket16_seq)
v_o12=$(ver "$b16" "<=" 12)
v_o20=$(ver "$o16" "<=" 20)
row lua_observe11_jit "<= 20 ns (with sketch)" "$(ver "$o11" "<=" 20)"
row lua_observe16_jit "<= 20 ns (with sketch)" "$v_o20"
row lua_observe40_jit "" ""
row lua_observe16_plugin "" ""
row c_observe11_seq "(peer: plain C)" ""
row c_observe16_seq "(peer: plain C)" ""
row c_observe16_mix "(peer: plain C)" ""
row c_bucket11_seq "<= 12 ns (bucket part, <= 16 buckets; C)" "$(ver "$(med c_bucket11_seq)" "<=" 12)"
row c_bucket16_seq "<= 12 ns (bucket part, <= 16 buckets; C)" "$v_o12"
row c_bucket16_mix "<= 12 ns (bucket part, <= 16 buckets; C)" "$(ver "$(med c_bucket16_mix)" "<=" 12)"
row c_sketch_seq "(sketch-only cost)" ""
row c_sketch_mix "(sketch-only cost)" ""
md "| ratio FFI h:observe / plain C observe, 16 buckets | $(ratio "$o16" "$co16") | | | |"
row lua_quantile "" ""

# 4. render
rp=$(med render_prom)
v_r=$(ver "$rp" "<=" 10)
row c_create "" ""
row render_prom "<= 10 ms" "$v_r"
row render_prom_per_series "" ""
row render_om "" ""
row render_json "" ""
row gzip1 "" ""
row gzip6 "" ""
md ""

# 5. memory
md "Memory per idle series: mallinfo2() in-use bytes (uordblks + hblkhd) and RSS before and after creating"
md "100,000 series (1,000 families x 100, labels instance=\"host-NN.example\" and code=\"NNN\") in a fresh registry,"
md "divided by 100,000. Includes the series block, its label copies, the per-family hash tables and malloc's chunk overhead; no history."
md ""
md "| series type | malloc bytes/series | RSS bytes/series | target | verdict |"
md "|---|---|---|---|---|"
mg=$(med mem_gauge)
v_m=$(ver "$mg" "<=" 200)
for k in mem_gauge mem_counter mem_histogram mem_histogram_used; do
  d=$(awk -F'\t' -v k="$k" '$1 == k {print $5; exit}' "$TMP/all")
  case $k in mem_gauge | mem_counter) t="<= 200 B (+ history)"; v=$(ver "$(med $k)" "<=" 200) ;; *) t="(no target; reported separately)"; v="" ;; esac
  md "| $d | $(med $k) | $(mn $k) | $t | $v |"
done
md ""
# history: an hour of raw samples (240 at 15 s) of HIST_SERIES series, half counters (+80..120
# a step) and half gauges (a random walk of 0.01 steps), through the agent's own sampling and
# flushes (tests/c/test_history.c's test_memory, which also checks every sample is there)
HIST_SERIES=${BENCH_HISTORY_SERIES:-20000}
HISTORY_BENCH_SERIES=$HIST_SERIES taskset -c "$CPU" "$BUILD/test_history" >"$TMP/hist.out" 2>&1
hrc=$?
hist_line=$(grep "series x 240 samples" "$TMP/hist.out")
h_stream=$(echo "$hist_line" | sed -n 's/.*streams \([0-9.]*\) bytes\/sample.*/\1/p')
h_all=$(echo "$hist_line" | sed -n 's/.*(\([0-9.]*\) bytes\/series, \([0-9.]*\) bytes\/sample).*/\2/p')
h_series=$(echo "$hist_line" | sed -n 's/.*(\([0-9.]*\) bytes\/series,.*/\1/p')
h_100k=$(awk -v b="$h_series" 'BEGIN { printf "%.0f", b * 100000 / 1048576 }')
v_h=$(verdict "${h_stream:-99} <= 2")
md "**History** (raw window of an hour): $HIST_SERIES series x 240 samples (15 s), half counters, half gauges on a random walk,"
md "sampled from a registry and flushed as the agent does (tests/c/test_history.c test_memory, exit $hrc):"
md ""
md "| measure | beagle | target | reference |"
md "|---|---|---|---|"
md "| compressed sample streams (delta-of-delta timestamps, XOR floats) | ${h_stream} bytes/sample | <= 2 bytes/sample | Prometheus TSDB: about 1.3 (its own published figure, not measured here) |"
md "| all history memory (streams, chunk and series headers, minute accumulators, labels) | ${h_all} bytes/sample, ${h_series} bytes/series | | |"
md "| the same for 100,000 series (linear) | ${h_100k} MiB | tens of MiB | |"
md ""
md "<details><summary>raw output</summary>"
md ""
md '```'
tee -a "$OUT_MD" <"$TMP/all"
cat "$TMP/c.err" "$TMP/lua.err" | tee -a "$OUT_MD"
md '```'
md "</details>"
md ""

if [ "$crc" != 0 ] || [ "$lrc" != 0 ]; then
  summary "5. metrics microbenchmarks" "failed (C $crc, Lua $lrc)" "" "" "" "FAIL"
  exit 1
fi
summary "5a. counter add, FFI handle, JIT" "$inc ns" "<= 3 ns" "plain C: direct $c_dir ns, indirect $c_ind ns; Lua table field $tbl ns" "$(ratio "$inc" "$c_dir") x C direct, $(ratio "$inc" "$c_ind") x C indirect, $(ratio "$inc" "$tbl") x table" "$v_inc"
summary "5a. counter add, plugin mode (JIT off + hook)" "$pinc ns" "<= 80 ns" "Lua table field, plugin mode: $(med lua_table_plugin) ns" "$(ratio "$pinc" "$(med lua_table_plugin)")" "$v_pinc"
summary "5b. increment_counter(name, 1, {2 tags literal})" "$lit ns" "<= 60 ns" "same tags table reused: $reu ns ($v_reu); literal alone $(med lua_literal_only_jit) ns" "n/a" "$v_lit"
summary "5c. histogram observe, 16 buckets: bucket part (C) / with sketch (FFI, JIT)" "$b16 ns / $o16 ns" "<= 12 ns (buckets); <= 20 ns (sketch)" "plain C observe $co16 ns; sketch alone $(med c_sketch_seq) ns" "$(ratio "$o16" "$co16") x C" "$v_o12 / $v_o20"
summary "5d. render /metrics, 100,000 series (C, 0.0.4)" "$rp ms" "<= 10 ms" "HTTP comparison with node_exporter: see 5f" "n/a" "$v_r"
summary "5g. history: bytes per raw sample (streams / all history memory)" "$h_stream / $h_all B ($h_series B/series; 100k series: $h_100k MiB)" "<= 2 B/sample" "Prometheus TSDB ~1.3 (published, not measured)" "n/a" "$v_h (streams)"
summary "5e. memory per idle gauge series (2 labels)" "$mg B" "<= 200 B + history" "counter $(med mem_counter) B; histogram $(med mem_histogram) B idle, $(med mem_histogram_used) B after one observation" "n/a" "$v_m"
