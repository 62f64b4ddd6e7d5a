#!/usr/bin/env bash
# Shards (issue 17): uvquic-server --threads 2 against --threads 1, in one
# invocation, alternating run by run (RUNS runs each, default 3, medians).
# A measurement, not a test: it prints figures and asserts nothing. On a
# 2-CPU machine the load generators share the cores with the server.
#   1. Handshakes: SH_P client processes (each its own port, so the
#      kernel's hash spreads them over the shards; one process's
#      connections all come from one port and so reach one shard), each
#      uvquic-client --connections SH_N --concurrency SH_C, one GET of
#      1 KiB: connections/s (all of them over the wall time), the server's
#      CPU time (every thread, schedstat) per connection.
#   2. Downloads: 8 client processes at once, each one 100 MiB download:
#      aggregate goodput (800 MiB over the wall time until the last ends).
# For both: each shard's share of connections and of bytes sent, and the
# packets forwarded from one shard to another per 1,000 datagrams
# received, from the server's exit lines ("shard i: ...").
#   bench/shards.sh [BUILD_DIR]
# Knobs: RUNS, SH_P (default 8), SH_N (default 250), SH_C (default 25).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
SH_P=${SH_P:-8}
SH_N=${SH_N:-250}
SH_C=${SH_C:-25}
PIN=0
bench_init "${1:-}"

echo "uvquic-server --threads 1 vs --threads 2 on $(nproc) CPUs (affinity: $(taskset -pc $$ | sed 's/.*: //')); runs: $RUNS"
echo "handshakes: $SH_P processes x $SH_N connections (concurrency $SH_C each), 1 KiB GET"
echo "downloads: 8 processes x 100 MiB at once"

# start NAME THREADS: a server with its counters at exit (not quiet) and
# no per-source limits (every client is 127.0.0.1); SPID, SPORT.
start() {
  UVQ_QUIET= UVQ_THREADS=$2 start_uvquic srv --max-handshakes-per-source 0 \
    --max-connections-per-source 0
  SPID=$srv_PID
  SPORT=$srv_PORT
  SNAME=$1
}

stop() {
  kill -TERM "$SPID"
  wait "$SPID" || true
  mv "$tmp/srv.out" "$tmp/$SNAME.out"
}

# shares NAME THREADS: "c=a/b% bytes=a/b% fwd/1k=x" from the exit lines.
shares() {
  local out=$tmp/$1.out
  if [ "$2" = 1 ]; then
    echo "c=100% bytes=100% fwd/1k=0"
    return
  fi
  awk '/^shard [0-9]+:/ {
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$2, kv[1]] = kv[2] }
      n++; c += v[$2, "connections"]; b += v[$2, "bytes_sent"];
      r += v[$2, "received"]; f += v[$2, "forwarded"]
    }
    END {
      cs = ""; bs = "";
      for (k = 0; k < n; k++) {
        cs = cs (k ? "/" : "") sprintf("%.0f", c ? 100 * v[k ":", "connections"] / c : 0);
        bs = bs (k ? "/" : "") sprintf("%.0f", b ? 100 * v[k ":", "bytes_sent"] / b : 0);
      }
      printf "c=%s%% bytes=%s%% fwd/1k=%.2f", cs, bs, r ? 1000 * f / (r + f) : 0
    }' SUBSEP=" " "$out"
}

hs_run() {
  local t=$1 run=$2 c0 c1 t0 t1 pids=() i
  start "hs$t-$run" "$t"
  c0=$(cpu_ns "$SPID")
  t0=$(date +%s%N)
  for i in $(seq 1 "$SH_P"); do
    "$CLIENT" --ca "$tmp/cert.pem" -s --connections "$SH_N" --concurrency "$SH_C" \
      "https://127.0.0.1:$SPORT/1k.bin" >/dev/null 2>>"$tmp/hs-client.err" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || { echo "a client failed:" >&2; tail -n2 "$tmp/hs-client.err" >&2; }; done
  t1=$(date +%s%N)
  c1=$(cpu_ns "$SPID")
  stop
  awk -v n=$((SH_P * SH_N)) -v t=$((t1 - t0)) 'BEGIN { printf "%.1f\n", n / (t / 1e9) }' >>"$tmp/hs-rate-$t"
  awk -v n=$((SH_P * SH_N)) -v c=$((c1 - c0)) 'BEGIN { printf "%.1f\n", c / n / 1000 }' >>"$tmp/hs-cpu-$t"
  echo "  threads $t run $run: $(tail -n1 "$tmp/hs-rate-$t") conn/s, $(tail -n1 "$tmp/hs-cpu-$t") us CPU/conn, $(shares "hs$t-$run" "$t")"
}

dl_run() {
  local t=$1 run=$2 t0 t1 pids=() i
  start "dl$t-$run" "$t"
  t0=$(date +%s%N)
  for i in 1 2 3 4 5 6 7 8; do
    "$CLIENT" --ca "$tmp/cert.pem" -s -o "$tmp/dl$i.out" \
      "https://127.0.0.1:$SPORT/big.bin" 2>>"$tmp/dl-client.err" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || echo "a client failed (see $tmp/dl-client.err)" >&2; done
  t1=$(date +%s%N)
  stop
  for i in 1 2 3 4 5 6 7 8; do
    cmp -s "$tmp/dl$i.out" "$tmp/www/big.bin" || echo "download $i differs" >&2
  done
  awk -v t=$((t1 - t0)) -v s=$((8 * SIZE)) 'BEGIN { printf "%.0f\n", s * 8 / (t / 1e9) / 1e6 }' >>"$tmp/dl-$t"
  echo "  threads $t run $run: $(tail -n1 "$tmp/dl-$t") Mbit/s aggregate, $(shares "dl$t-$run" "$t")"
}

echo "== 1. handshakes"
for run in $(seq 1 "$RUNS"); do
  for t in 1 2; do hs_run "$t" "$run"; done
done
echo "== 2. 8 parallel 100 MiB downloads"
for run in $(seq 1 "$RUNS"); do
  for t in 1 2; do dl_run "$t" "$run"; done
done
echo "== medians"
for t in 1 2; do
  echo "threads $t: $(median "$tmp/hs-rate-$t") conn/s, $(median "$tmp/hs-cpu-$t") us server CPU/conn, $(median "$tmp/dl-$t") Mbit/s (8 x 100 MiB)"
done
echo "conn/s ratio 2/1: $(ratio "$(median "$tmp/hs-rate-2")" "$(median "$tmp/hs-rate-1")"), CPU/conn ratio 2/1: $(ratio "$(median "$tmp/hs-cpu-2")" "$(median "$tmp/hs-cpu-1")"), throughput ratio 2/1: $(ratio "$(median "$tmp/dl-2")" "$(median "$tmp/dl-1")")"
