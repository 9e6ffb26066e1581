#!/bin/sh
# Installs the Debian packages beagle needs to build, run and test, if any are missing.
# As root it runs apt-get; otherwise it prints the one line to run and fails.
set -e
BUILD="cmake make gcc pkg-config libuv1-dev libluajit2-5.1-dev luajit2 lua-cjson libcurl4-openssl-dev node-llhttp libsqlite3-dev zlib1g-dev libprotobuf-c-dev protobuf-c-compiler libsnappy-dev"
TEST="lua-busted lua-check curl prometheus prometheus-alertmanager iproute2 gzip python3-prometheus-client prometheus-pushgateway influxdb monitoring-plugins-basic postgresql redis-server mariadb-server"
BENCH="wrk nginx-light prometheus-node-exporter valgrind collectd-core monit"
case "$1" in
  build) PKGS="$BUILD" ;;
  test) PKGS="$BUILD $TEST" ;;
  bench) PKGS="$BUILD $TEST $BENCH" ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
# node and npm (Debian's, or the machine's own): the OTLP backend's test reads bodies with
# OpenTelemetry's npm package, and the npm statsd daemon is a StatsD peer in bench/
if [ "$1" != build ] && ! command -v npm >/dev/null 2>&1; then missing="$missing npm"; fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "beagle needs these Debian packages; run:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
