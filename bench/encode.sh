#!/usr/bin/env bash
# Builds bench/encode_bench.c against a build's libbeagle_core.so and runs it pinned to one core:
# each metric backend's encoder alone, per sample, on the same batches (a harness figure; the
# agent's own throughput is bench/remote_write.sh's).
#   BUILD        build directory holding libbeagle_core.so (default: build)
#   BENCH_CPU    CPU to pin to (default 1)
#   $1 series (20000), $2 batch size (2000), $3 runs (7)
# Output: tab-separated lines  format  ns_per_sample  bytes_per_sample  samples_per_second
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$REPO/build}"
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
LIB="$BUILD/libbeagle_core.so"
if [ ! -f "$LIB" ]; then
  echo "encode: $LIB not found (build first)" >&2
  exit 1
fi
BIN="$BUILD/encode_bench"
cc -std=c11 -D_GNU_SOURCE -O2 -I"$REPO/core" "$REPO/bench/encode_bench.c" -o "$BIN" \
  -L"$BUILD" -lbeagle_core -Wl,-rpath,"$BUILD" -lm
exec taskset -c "${BENCH_CPU:-1}" "$BIN" "$@"
