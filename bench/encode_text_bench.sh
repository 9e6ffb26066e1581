#!/usr/bin/env bash
# Builds bench/encode_text_bench.c against a build's libbeagle_core.so and runs it pinned to one
# core: the encoding cost per sample of the influx, graphite and prometheus (Pushgateway) text
# encoders over 10,000 series, scalar and histogram.
#   BUILD        build directory holding libbeagle_core.so (default: build)
#   BENCH_CPU    CPU to pin to (default 1)
#   $1           runs of each measurement (default 5; median and min reported)
# Output: tab-separated lines  key  median  min  unit  description.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$REPO/build}"
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
LIB="$BUILD/libbeagle_core.so"
if [ ! -f "$LIB" ]; then
  echo "encode_text_bench: $LIB not found (build first)" >&2
  exit 1
fi
BIN="$BUILD/encode_text_bench"
cc -std=gnu11 -O2 -I"$REPO/core" "$REPO/bench/encode_text_bench.c" -o "$BIN" \
  -L"$BUILD" -lbeagle_core -Wl,-rpath,"$BUILD" -lm
exec taskset -c "${BENCH_CPU:-1}" "$BIN" "$@"
