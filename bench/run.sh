#!/usr/bin/env bash
# The benchmark harness of issue 4 (a measurement, not a test: it prints
# figures and ratios and asserts nothing about time). In one invocation,
# the contenders of each part alternating run by run, RUNS runs each
# (default 5), medians reported:
#   1. Throughput: 100 MiB over loopback, one connection: uvquic h3 and
#      hq-interop, gtlsserver -> gtlsclient and the mixed pairs, the raw-UDP
#      limit (udpbench: GSO + recvmmsg/GRO) and the stack's in-memory
#      protocol ceiling (ngtcp2_ceiling, CLI_BATCH=45). Goodput and ratios.
#   2. Handshake rate: uvquic-client --connections HS_N --concurrency HS_C
#      (one GET of 1 KiB each) against uvquic-server and gtlsserver;
#      connections/s and server CPU time (utime + stime) per connection.
#   3. Memory: MEM_N idle established connections to a fresh uvquic-server
#      with a MEM_IDLE s idle timeout, kept open past it by 2 s keep-alive
#      PINGs; (VmRSS with - VmRSS before) / MEM_N; gtlsserver likewise.
#   4. Latency: 1 KiB GETs at LAT_RATE/s on LAT_CONNS connections for
#      LAT_DUR s, timed from when each request was due (no coordinated
#      omission); p50 / p99 / p999, against uvquic-server and gtlsserver.
# Every peer has a 1 ms initial RTT (gtls*: --initial-rtt=1ms, which their
# ACK-timer stall needs). The machines are noisy: compare ratios within one
# run, not absolute numbers across runs.
#   bench/run.sh [BUILD_DIR]     (default: build/; builds with UVQ_BENCH=ON)
# Knobs (environment): RUNS, HS_N, HS_C, MEM_N, MEM_C, MEM_IDLE, LAT_RATE,
# LAT_DUR, LAT_CONNS, CEIL_MB, MEM_GTLS (0: skip gtlsserver's memory run),
# SKIP (any of "tput hs mem lat").
set -euo pipefail
. "$(dirname "$0")/lib.sh"

HS_N=${HS_N:-2000}
HS_C=${HS_C:-50}
MEM_N=${MEM_N:-10000}
MEM_C=${MEM_C:-200}
MEM_IDLE=${MEM_IDLE:-5}
LAT_RATE=${LAT_RATE:-5000}
LAT_DUR=${LAT_DUR:-3}
LAT_CONNS=${LAT_CONNS:-4}
SKIP=${SKIP:-}

bench_init "${1:-}"
for bin in "$UDPBENCH" "$CEILING"; do
  [ -x "$bin" ] || { echo "missing $bin (configure with -DUVQ_BENCH=ON)" >&2; exit 1; }
done
bench_start_servers
skip() { [[ " $SKIP " == *" $1 "* ]]; }

printf 'uvquic bench/run.sh: %s, %s CPUs, RUNS=%d\n' "$(uname -r)" "$(nproc)" "$RUNS"

# ---------------------------------------------------------------------------
# 1. Throughput
if ! skip tput; then
  names=("${TRANSFER_PAIRS[@]}" "udpbench (raw UDP, GSO+GRO)"
    "ngtcp2_ceiling (in-memory, CLI_BATCH=45)")
  n=${#names[@]}
  for ((i = 0; i < n; i++)); do : >"$tmp/gbps.$i"; : >"$tmp/inner.$i"; done
  for r in $(seq 1 "$RUNS"); do
    for ((k = 0; k < n; k++)); do
      i=$(((k + r - 1) % n))
      case $i in
      5) udpbench_run >>"$tmp/gbps.$i" ;;
      6) ceiling_run >>"$tmp/gbps.$i" ;;
      *)
        s=$(transfer_pair "$i")
        awk -v s="$s" -v size="$SIZE" 'BEGIN { printf "%.6f\n", size * 8 / s / 1e9 }' \
          >>"$tmp/gbps.$i"
        if [ -s "$tmp/inner.s" ]; then
          awk -v s="$(cat "$tmp/inner.s")" -v size="$SIZE" \
            'BEGIN { if (s > 0) printf "%.6f\n", size * 8 / s / 1e9 }' >>"$tmp/inner.$i"
        fi
        ;;
      esac
    done
  done
  gtls=$(median "$tmp/gbps.1")
  udp=$(median "$tmp/gbps.5")
  ceil=$(median "$tmp/gbps.6")
  echo
  printf '1. Throughput: 100 MiB over loopback, one connection; goodput Gbit/s, median of %d\n' "$RUNS"
  printf '   (QUIC pairs: 100 MiB / client process wall time; udpbench: receiver, first to last\n'
  printf '   datagram; ceiling: %s MiB bulk phase, both sides on one core, no syscalls)\n' "${CEIL_MB:-1024}"
  printf '%-42s %7s %8s %9s %9s %8s   %s\n' "contender" "Gbit/s" "vs gtls" "vs udp" "vs ceil" "inner*" "runs (Gbit/s)"
  for ((i = 0; i < n; i++)); do
    m=$(median "$tmp/gbps.$i")
    inner=-
    [ -s "$tmp/inner.$i" ] && inner=$(printf '%.2f' "$(median "$tmp/inner.$i")")
    printf '%-42s %7.2f %7sx %8sx %8sx %8s   %s\n' "${names[$i]}" "$m" "$(ratio "$m" "$gtls")" \
      "$(ratio "$m" "$udp")" "$(ratio "$m" "$ceil")" "$inner" "$(runs_of "$tmp/gbps.$i")"
  done
  printf '   * inner: uvquic-client'"'"'s own timing (connect to close, without process start-up and\n'
  printf '     the closing period its endpoint waits out before exit); not comparable with gtlsclient\n'
  ih3=$(median "$tmp/inner.0")
  ihq=$(median "$tmp/inner.4")
  tput_h3=$(median "$tmp/gbps.0")
  tput_hq=$(median "$tmp/gbps.4")
fi

# ---------------------------------------------------------------------------
# 2. Handshake rate
if ! skip hs; then
  hs_names=("uvquic-server" "gtlsserver")
  for i in 0 1; do : >"$tmp/cps.$i"; : >"$tmp/cpu.$i"; done
  for r in $(seq 1 "$RUNS"); do
    for k in 0 1; do
      i=$(((k + r - 1) % 2))
      if [ "$i" = 0 ]; then port=$UPORT pid=$UPID; else port=$GPORT pid=$GPID; fi
      c0=$(cpu_ticks "$pid")
      if ! timeout 300 "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections "$HS_N" \
        --concurrency "$HS_C" "https://127.0.0.1:$port/1k.bin" >"$tmp/hs.out" 2>"$tmp/hs.err"; then
        echo "handshake run against ${hs_names[$i]} failed: $(cat "$tmp/hs.out") $(head -n5 "$tmp/hs.err")" >&2
        exit 1
      fi
      c1=$(cpu_ticks "$pid")
      sed -n 's/.*: \([0-9.]*\) connections\/s$/\1/p' "$tmp/hs.out" >>"$tmp/cps.$i"
      awk -v d="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$HS_N" \
        'BEGIN { printf "%.1f\n", d * 1e6 / hz / n }' >>"$tmp/cpu.$i"
    done
  done
  echo
  printf '2. Handshake rate: %d connections, %d at a time, one GET of 1 KiB each (uvquic-client\n' "$HS_N" "$HS_C"
  printf '   load generator, one client socket), median of %d; server CPU = utime+stime delta / N\n' "$RUNS"
  printf '%-16s %12s %10s %18s %10s   %s\n' "server" "conn/s" "vs gtls" "server CPU us/conn" "vs gtls" "runs (conn/s | us/conn)"
  g_cps=$(median "$tmp/cps.1")
  g_cpu=$(median "$tmp/cpu.1")
  for i in 0 1; do
    m=$(median "$tmp/cps.$i")
    u=$(median "$tmp/cpu.$i")
    printf '%-16s %12.1f %9sx %18.1f %9sx   %s | %s\n' "${hs_names[$i]}" "$m" "$(ratio "$m" "$g_cps")" \
      "$u" "$(ratio "$u" "$g_cpu")" "$(awk '{ printf("%s%.0f", NR > 1 ? " " : "", $1) }' "$tmp/cps.$i")" \
      "$(awk '{ printf("%s%.0f", NR > 1 ? " " : "", $1) }' "$tmp/cpu.$i")"
  done
  hs_ratio=$(ratio "$(median "$tmp/cps.0")" "$g_cps")
  hs_cpu_ratio=$(ratio "$g_cpu" "$(median "$tmp/cpu.0")")
fi

# ---------------------------------------------------------------------------
# 3. Memory per idle connection (one run each: it takes a while to set up)
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# mem_run LABEL PID PORT: holds MEM_N connections to the server PID and
# prints its report; sets mem_per (KB per connection).
mem_run() {
  local label=$1 pid=$2 port=$3 before with mpid mem_ok=0 held setup early hold
  # Warm up: GnuTLS, the file cache, malloc arenas.
  "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections 50 --concurrency 10 \
    "https://127.0.0.1:$port/1k.bin" >/dev/null
  sleep 0.5
  before=$(rss "$pid")
  hold=$((MEM_IDLE + 4))
  "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections "$MEM_N" --concurrency "$MEM_C" \
    --hold "$hold" --keep-alive 2000 --idle-timeout 60 "https://127.0.0.1:$port/1k.bin" \
    >"$tmp/mem.out" 2>"$tmp/mem.err" &
  mpid=$!
  bench_pids+=("$mpid")
  for _ in $(seq 1 12000); do
    grep -qs '^hold: .* established' "$tmp/mem.out" && break
    kill -0 "$mpid" 2>/dev/null || break
    sleep 0.05
  done
  grep -qs '^hold: .* established' "$tmp/mem.out" || {
    echo "memory run ($label): connections never all up: $(cat "$tmp/mem.out") $(head -n5 "$tmp/mem.err")" >&2
    exit 1
  }
  # Past the server's idle timeout: only the keep-alive PINGs keep them.
  sleep "$(awk -v i="$MEM_IDLE" 'BEGIN { print i + 1.5 }')"
  with=$(rss "$pid")
  wait "$mpid" && mem_ok=1
  held=$(sed -n 's/^hold: \([0-9]*\) connections established.*/\1/p' "$tmp/mem.out")
  setup=$(sed -n 's/.* after \([0-9.]*\) s; holding.*/\1/p' "$tmp/mem.out")
  early=$(sed -n 's/^hold: released .*(\([0-9]*\) had closed early)/\1/p' "$tmp/mem.out")
  # Done with it: no graceful close competing with the next part.
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  mem_per=$(awk -v a="$before" -v b="$with" -v n="${held:-0}" \
    'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1.024 / n; else print "nan" }')
  printf '%-14s set up in %7s s; held %5s; closed early %s; client exit %s; VmRSS %7d -> %8d kB: %6s KB/conn\n' \
    "$label" "$setup" "$held" "${early:-?}" "$([ $mem_ok = 1 ] && echo 0 || echo '!=0')" \
    "$before" "$with" "$mem_per"
}

if ! skip mem; then
  echo
  printf '3. Memory: %d idle established connections (one GET of 1 KiB each, then idle; %d set up\n' "$MEM_N" "$MEM_C"
  printf '   at a time; uvquic-server --idle-timeout %d, client keep-alive 2 s; RSS read %.1f s after\n' \
    "$MEM_IDLE" "$(awk -v i="$MEM_IDLE" 'BEGIN { print i + 1.5 }')"
  printf '   the last was up); KB = 1000 B; (VmRSS with - before) / held. gtlsserver: the same\n'
  printf '   stack (ngtcp2 + GnuTLS + nghttp3) in its own example server, for scale\n'
  start_uvquic M --idle-timeout "$MEM_IDLE"
  mem_run uvquic-server "$M_PID" "$M_PORT"
  mem_uvq=$mem_per
  if [ "${MEM_GTLS:-1}" = 1 ]; then
    start_gtls MG
    mem_run gtlsserver "$MG_PID" "$MG_PORT"
    mem_gtls=$mem_per
  fi
fi

# ---------------------------------------------------------------------------
# 4. Latency at a fixed rate
if ! skip lat; then
  lat_names=("uvquic-server" "gtlsserver")
  for i in 0 1; do : >"$tmp/lat.$i"; done
  for r in $(seq 1 "$RUNS"); do
    for k in 0 1; do
      i=$(((k + r - 1) % 2))
      if [ "$i" = 0 ]; then port=$UPORT; else port=$GPORT; fi
      if ! timeout 120 "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections "$LAT_CONNS" \
        --rate "$LAT_RATE" --duration "$LAT_DUR" "https://127.0.0.1:$port/1k.bin" \
        >"$tmp/lat.out" 2>"$tmp/lat.err"; then
        echo "latency run against ${lat_names[$i]} failed: $(cat "$tmp/lat.out") $(head -n5 "$tmp/lat.err")" >&2
        exit 1
      fi
      sed -n 's/.* p50 \([0-9]*\) p90 [0-9]* p99 \([0-9]*\) p999 \([0-9]*\) max \([0-9]*\); max send lag \([0-9]*\) us$/\1 \2 \3 \4 \5/p' \
        "$tmp/lat.out" >>"$tmp/lat.$i"
    done
  done
  echo
  printf '4. Latency: 1 KiB GETs at %d/s on %d connections for %s s, from when each was due\n' \
    "$LAT_RATE" "$LAT_CONNS" "$LAT_DUR"
  printf '   to response complete (coordinated-omission safe); microseconds, median over %d runs\n' "$RUNS"
  printf '%-16s %8s %8s %8s %8s %14s   %s\n' "server" "p50" "p99" "p999" "max" "max send lag" "runs (p99)"
  for i in 0 1; do
    col() { cut -d' ' -f"$1" "$tmp/lat.$i" >"$tmp/col"; median "$tmp/col"; }
    printf '%-16s %8.0f %8.0f %8.0f %8.0f %14.0f   %s\n' "${lat_names[$i]}" "$(col 1)" "$(col 2)" \
      "$(col 3)" "$(col 4)" "$(col 5)" "$(cut -d' ' -f2 "$tmp/lat.$i" | tr '\n' ' ')"
    [ "$i" = 0 ] && lat_p99=$(col 2)
  done
fi

# ---------------------------------------------------------------------------
echo
echo "Targets (issue 4), this run:"
if ! skip tput; then
  printf '  throughput h3 %.2f / hq %.2f Gbit/s: vs gtls %sx / %sx (>= 2.0), vs udpbench %sx / %sx (>= 0.45), vs ceiling %sx / %sx (>= 0.5)\n' \
    "$tput_h3" "$tput_hq" "$(ratio "$tput_h3" "$gtls")" "$(ratio "$tput_hq" "$gtls")" \
    "$(ratio "$tput_h3" "$udp")" "$(ratio "$tput_hq" "$udp")" \
    "$(ratio "$tput_h3" "$ceil")" "$(ratio "$tput_hq" "$ceil")"
  printf '  (inner timing h3 %.2f / hq %.2f Gbit/s: vs ceiling %sx / %sx)\n' "$ih3" "$ihq" \
    "$(ratio "$ih3" "$ceil")" "$(ratio "$ihq" "$ceil")"
fi
if ! skip hs; then
  printf '  handshake rate vs gtlsserver: %sx (>= 1.5); server CPU per connection: gtls / uvquic = %sx\n' \
    "$hs_ratio" "$hs_cpu_ratio"
fi
if ! skip mem; then
  printf '  RSS per idle connection: %s KB (<= ~90); gtlsserver: %s KB\n' "$mem_uvq" "${mem_gtls:--}"
fi
if ! skip lat; then
  printf '  p99 at %d req/s: %.0f us (<= 1000)\n' "$LAT_RATE" "$lat_p99"
fi
