#!/usr/bin/env bash
# Benchmark 3: GET /health throughput and latency, beagle against nginx.
# Server pinned to CPU 0, wrk pinned to CPU 1: `wrk -t1 -c50 -d10s --latency`. nginx runs one
# worker (pinned to CPU 0 too) returning a static 200 with a body of the agent's /health size,
# from a config in a temp dir with its own pid/log/temp paths. The servers run one at a time,
# alternating, BENCH_RPS_ROUNDS times each; the best round of each is compared (the machine is
# shared and noisy; every round is listed).
#   BENCH_RPS_SECONDS (default 10), BENCH_RPS_CONNS (default 50), BENCH_RPS_ROUNDS (default 3)
# Targets: >= 100,000 req/s, >= 0.9 x nginx, p99 <= 1 ms.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_init health_rps

DUR=${BENCH_RPS_SECONDS:-10}
CONNS=${BENCH_RPS_CONNS:-50}
ROUNDS=${BENCH_RPS_ROUNDS:-3}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}

if [ "$(nproc)" -lt 2 ]; then
  echo "health_rps: needs 2 CPUs to pin server and client apart" >&2
fi

cd "$TMP" || exit 1
APORT=$(free_port)
bench_spawn AGENT taskset -c "$SERVER_CPU" "$BEAGLE" run --listen "127.0.0.1:$APORT" --data "$TMP/data" 2>"$TMP/agent.log"
wait_http "http://127.0.0.1:$APORT/health/live" || { tail "$TMP/agent.log" >&2; exit 1; }
sleep 1 # the system check's first run (250 ms CPU sample) is done
curl -s -D "$TMP/agent.hdr" -o "$TMP/agent.body" "http://127.0.0.1:$APORT/health"
BODY_LEN=$(wc -c <"$TMP/agent.body")
HDR_LEN=$(wc -c <"$TMP/agent.hdr")

# nginx: same body bytes (the agent's JSON has no single quotes or backslashes to escape)
NPORT=$(free_port)
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
BODY=$(tr -d "'\\\\" <"$TMP/agent.body")
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/tmp/client;
  proxy_temp_path $TMP/nginx/tmp/proxy;
  fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
  uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
  scgi_temp_path $TMP/nginx/tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location = /health {
      default_type application/json;
      return 200 '$BODY';
    }
  }
}
EOF

run_wrk() { # label port round
  taskset -c "$CLIENT_CPU" timeout $((DUR + 20)) wrk -t1 -c"$CONNS" -d"${DUR}s" --latency \
    "http://127.0.0.1:$2/health" >"$TMP/wrk.$1.$3" 2>&1
  parse_wrk "$TMP/wrk.$1.$3"
  echo "$WRK_RPS $WRK_P50 $WRK_P99 $WRK_NON2XX $WRK_SOCKERR" >"$TMP/res.$1.$3"
  echo "health_rps: $1 round $3: $WRK_RPS req/s, p50 $WRK_P50 ms, p99 $WRK_P99 ms, non-2xx $WRK_NON2XX, socket errors $WRK_SOCKERR" >&2
}

start_nginx() {
  # master_process off + daemon off: the PID we hold is the (single) worker itself
  bench_spawn NGX taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" 2>"$TMP/nginx/stderr"
  wait_http "http://127.0.0.1:$NPORT/health" || { cat "$TMP/nginx/stderr" "$TMP/nginx/logs/error.log" >&2; exit 1; }
}

bench_stop "$AGENT"

for r in $(seq "$ROUNDS"); do
  bench_spawn AGENT taskset -c "$SERVER_CPU" "$BEAGLE" run --listen "127.0.0.1:$APORT" --data "$TMP/data" 2>>"$TMP/agent.log"
  wait_http "http://127.0.0.1:$APORT/health/live" || { tail "$TMP/agent.log" >&2; exit 1; }
  sleep 1
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$APORT/health" >/dev/null 2>&1 # warm-up
  run_wrk beagle "$APORT" "$r"
  A_RSS_LOAD=$(rss_kb "$AGENT")
  bench_stop "$AGENT"

  start_nginx
  [ "$r" = 1 ] && curl -s -D "$TMP/nginx.hdr" -o "$TMP/nginx.body" "http://127.0.0.1:$NPORT/health"
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$NPORT/health" >/dev/null 2>&1
  run_wrk nginx "$NPORT" "$r"
  bench_stop "$NGX"
done

best() { # label -> line of the round with the highest req/s
  for r in $(seq "$ROUNDS"); do cat "$TMP/res.$1.$r"; done | sort -k1,1 -g -r | head -1
}
read -r A_RPS A_P50 A_P99 A_N2 A_SE <<<"$(best beagle)"
read -r N_RPS N_P50 N_P99 N_N2 N_SE <<<"$(best nginx)"
ratio=$(fmt %.2f "$(calc "$A_RPS / $N_RPS")")
v_abs=$(verdict "$A_RPS >= 100000")
v_rel=$(verdict "$A_RPS >= 0.9 * $N_RPS")
v_p99=$(verdict "$A_P99 <= 1")
N_BODY_LEN=$(wc -c <"$TMP/nginx.body")
N_HDR_LEN=$(wc -c <"$TMP/nginx.hdr")

md "### 3. GET /health throughput (server on CPU $SERVER_CPU, wrk -t1 -c$CONNS -d${DUR}s on CPU $CLIENT_CPU)"
md ""
md "Response sizes: beagle $BODY_LEN B body + $HDR_LEN B headers; nginx $N_BODY_LEN B body + $N_HDR_LEN B headers."
md "Best of $ROUNDS alternating rounds each (all rounds below)."
md ""
md "| measure | beagle | target | nginx (1 worker) | ratio beagle/nginx | verdict |"
md "|---|---|---|---|---|---|"
md "| requests/s | $(fmt %.0f "$A_RPS") | >= 100000 | $(fmt %.0f "$N_RPS") | $ratio | $v_abs (abs), $v_rel (>= 0.9 x nginx) |"
md "| p50 latency | $A_P50 ms | | $N_P50 ms | | |"
md "| p99 latency | $A_P99 ms | <= 1 ms | $N_P99 ms | $(fmt %.2f "$(calc "$A_P99 / $N_P99")") | $v_p99 |"
md "| non-2xx / socket errors | $A_N2 / $A_SE | 0 | $N_N2 / $N_SE | | |"
md "| agent VmRSS under load | $(fmt %.2f "$(calc "${A_RSS_LOAD:-0} / 1024")") MiB | | | | |"
md ""
md "| round | server | req/s | p50 ms | p99 ms | non-2xx | socket errors |"
md "|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for s in beagle nginx; do
    read -r x50 x99 xn xs <<<"$(cut -d' ' -f2- "$TMP/res.$s.$r")"
    md "| $r | $s | $(fmt %.0f "$(cut -d' ' -f1 "$TMP/res.$s.$r")") | $x50 | $x99 | $xn | $xs |"
  done
done
md ""
md '<details><summary>wrk output, best rounds</summary>'
md ""
md '```'
for s in beagle nginx; do
  for r in $(seq "$ROUNDS"); do
    if [ "$(cut -d' ' -f1 "$TMP/res.$s.$r")" = "$(best $s | cut -d' ' -f1)" ]; then
      md "# $s round $r"
      tee -a "$OUT_MD" <"$TMP/wrk.$s.$r"
      break
    fi
  done
done
md '```'
md '</details>'
md ""

summary "3. /health req/s" "$(fmt %.0f "$A_RPS")" ">= 100000 and >= 0.9 x nginx" "$(fmt %.0f "$N_RPS") (nginx)" "$ratio" "$v_abs / $v_rel"
summary "3. /health p99" "$A_P99 ms" "<= 1 ms" "$N_P99 ms (nginx)" "$(fmt %.2f "$(calc "$A_P99 / $N_P99")")" "$v_p99"
