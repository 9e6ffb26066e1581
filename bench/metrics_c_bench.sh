#!/usr/bin/env bash
# Builds bench/metrics_c_bench.c against a build's libbeagle_core.so and runs it: the plain-C
# counter add (the denominator of the FFI ratios in bench/metrics_ffi.lua), histogram observe
# with the sketch, and the /metrics render of 100,000 series in each format.
#   BUILD        build directory holding libbeagle_core.so (default: build)
#   BENCH_CPU    CPU to pin to (default 1)
#   $1           iterations for the add loop (default 2e8)
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
