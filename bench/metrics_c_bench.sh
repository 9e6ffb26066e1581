#!/usr/bin/env bash
# Builds bench/metrics_c_bench.c against a build's libbeagle_core.so and runs it pinned to one
# core: the plain-C counter add (direct and indirect call; the denominator of the FFI ratios
# in bench/metrics_ffi.lua), histogram observe (full, bucket part alone, sketch alone), the
# /metrics render of 100,000 series in each format, and memory per idle series.
#   BUILD        build directory holding libbeagle_core.so (default: build)
#   BENCH_CPU    CPU to pin to (default 1)
#   $1           iterations of the add loop per run (default 1e8; observe loops use 1/4)
#   $2           runs of each measurement (default 5; median and min reported)
# Output: tab-separated lines  key  median  min  unit  description.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$REPO/build}"
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
LIB="$BUILD/libbeagle_core.so"
if [ ! -f "$LIB" ]; then
  echo "metrics_c_bench: $LIB not found (build first)" >&2
  exit 1
fi
BIN="$BUILD/metrics_c_bench"
cc -std=c11 -D_GNU_SOURCE -O2 -I"$REPO/core" "$REPO/bench/metrics_c_bench.c" -o "$BIN" \
  -L"$BUILD" -lbeagle_core -Wl,-rpath,"$BUILD" -lm
exec taskset -c "${BENCH_CPU:-1}" "$BIN" "$@"
