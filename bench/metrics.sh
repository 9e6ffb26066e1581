#!/usr/bin/env bash
# Benchmark 5: the metrics FFI microbenchmarks (bench/metrics_ffi.lua, maintained separately),
# run against this build's libbeagle_core.so. The DESIGN.md reference figures (measured when
# the design was written) are 2.3 ns per FFI counter add from JIT-compiled code and 59 ns
# from the interpreter.
#   BENCH_METRICS_N  iterations passed to metrics_ffi.lua (default: its own, 2e7)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init metrics

SCRIPT="$BENCH_DIR/metrics_ffi.lua"
md "### 5. Metrics FFI microbenchmarks (bench/metrics_ffi.lua)"
md ""
if [ ! -f "$SCRIPT" ]; then
  md "bench/metrics_ffi.lua is not present; skipped."
  summary "5. metrics FFI" "skipped (no bench/metrics_ffi.lua)" "" "" "" ""
  exit 0
fi
LIB="$BUILD/libbeagle_core.so"
(cd "$REPO" && BEAGLE_LIB="$LIB" LUA_PATH="$REPO/lua/?.lua;$REPO/lua/?/init.lua;;" \
  timeout 300 taskset -c "${BENCH_METRICS_CPU:-1}" luajit "$SCRIPT" ${BENCH_METRICS_N:+"$BENCH_METRICS_N"}) >"$TMP/out" 2>&1
rc=$?
md "luajit $(luajit -v 2>&1 | awk '{print $2}'), pinned to CPU ${BENCH_METRICS_CPU:-1}; exit status $rc."
md ""
md '```'
tee -a "$OUT_MD" <"$TMP/out"
md '```'
md ""
inc=$(awk '/^handle c:inc\(\) \(JIT\)/ {print $(NF-1)}' "$TMP/out")
interp=$(awk '/^handle c:inc\(\) \(jit.off/ {print $(NF-1)}' "$TMP/out")
if [ "$rc" = 0 ] && [ -n "$inc" ]; then
  summary "5. FFI counter add, JIT" "$inc ns" "(design: 2.3 ns)" "Lua table field add: $(awk '/^Lua table field/ {print $(NF-1)}' "$TMP/out") ns" "$(fmt %.2f "$(calc "$inc / 2.3")") x design" "info"
  summary "5. FFI counter add, interpreter + hook" "$interp ns" "(design: 59 ns)" "" "$(fmt %.2f "$(calc "$interp / 59")") x design" "info"
else
  summary "5. metrics FFI" "failed (exit $rc)" "" "" "" "FAIL"
fi
