# shellcheck shell=bash disable=SC2034
# Shared helpers for the benchmark scripts (sourced, not run).
#
# Every script: sources this file, calls bench_init <name>, starts its processes with
# bench_spawn (so the EXIT/INT/TERM trap stops exactly those PIDs), and writes
#   $BENCH_OUT/<name>.md       the result block (markdown), also printed to stdout
#   $BENCH_OUT/<name>.summary  one row per measured number:
#                              benchmark|result|target|peer|ratio|verdict
# BENCH_OUT defaults to a temp dir when a script is run on its own.

set -u

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$REPO/$BUILD" ;; esac
BEAGLE="$BUILD/beagle"
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
NGINX=${NGINX:-/usr/sbin/nginx}
CLK_TCK=$(getconf CLK_TCK)

_BENCH_PIDS=()
_BENCH_TMP=""

bench_cleanup() {
  local pid
  for pid in "${_BENCH_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  # give them a moment, then insist
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for pid in "${_BENCH_PIDS[@]:-}"; do
      [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in "${_BENCH_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  [ -n "$_BENCH_TMP" ] && [ -d "$_BENCH_TMP" ] && rm -rf "$_BENCH_TMP"
}

bench_init() {
  BENCH_NAME=$1
  _BENCH_TMP=$(mktemp -d "/tmp/beagle-bench-$BENCH_NAME.XXXXXX")
  TMP=$_BENCH_TMP
  if [ -z "${BENCH_OUT:-}" ]; then
    BENCH_OUT=$(mktemp -d /tmp/beagle-bench-out.XXXXXX)
  fi
  mkdir -p "$BENCH_OUT"
  OUT_MD="$BENCH_OUT/$BENCH_NAME.md"
  OUT_SUM="$BENCH_OUT/$BENCH_NAME.summary"
  : >"$OUT_MD"
  : >"$OUT_SUM"
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ ! -x "$BEAGLE" ]; then
    echo "bench: $BEAGLE not found; build first (make bench builds it)" >&2
    exit 1
  fi
}

# bench_spawn VAR cmd... : runs cmd in the background, records its PID in VAR and for cleanup.
bench_spawn() {
  local var=$1
  shift
  "$@" &
  local pid=$!
  _BENCH_PIDS+=("$pid")
  printf -v "$var" '%s' "$pid"
}

# bench_stop PID : SIGTERM, wait up to 5 s, then SIGKILL. Only for PIDs we started.
bench_stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL [seconds] : until URL answers (any status), or fail.
wait_http() {
  local url=$1 limit=${2:-10}
  local deadline=$((SECONDS + limit))
  while [ $SECONDS -lt $deadline ]; do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.05
  done
  echo "bench: $url did not answer within ${limit}s" >&2
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# cpu_ticks PID : utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat; the comm
# field may contain spaces, so count from the closing parenthesis).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'
}

now_s() { date +%s.%N; }

# calc EXPR : floating point via awk
calc() { awk "BEGIN { printf \"%s\", $1 }" 2>/dev/null; }
fmt() { awk -v v="$2" "BEGIN { printf \"$1\", v }"; }

# verdict OK_EXPR : "pass" when the awk expression is true, else "MISS"
verdict() { awk "BEGIN { exit !($1) }" && echo pass || echo MISS; }

md() { printf '%s\n' "$*" | tee -a "$OUT_MD"; }
summary() { printf '%s|%s|%s|%s|%s|%s\n' "$@" >>"$OUT_SUM"; }

# parse_wrk FILE : sets WRK_RPS WRK_P50 WRK_P99 (ms) WRK_REQS WRK_NON2XX WRK_SOCKERR
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n = n / 1000; else if (u == "s") n = n * 1000; else if (u == "m") n = n * 60000
    printf "%.3f", n }'
}
parse_wrk() {
  local f=$1
  WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$f")
  WRK_P50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
  WRK_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
  WRK_REQS=$(awk '/requests in/ {print $1}' "$f")
  WRK_NON2XX=$(awk -F': *' '/Non-2xx or 3xx responses/ {print $2}' "$f")
  WRK_NON2XX=${WRK_NON2XX:-0}
  # "Socket errors: connect 0, read 0, write 0, timeout 0"
  WRK_SOCKERR=$(awk '/Socket errors:/ { s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s }' "$f")
  WRK_SOCKERR=${WRK_SOCKERR:-0}
  : "${WRK_RPS:=0}" "${WRK_REQS:=0}"
}
