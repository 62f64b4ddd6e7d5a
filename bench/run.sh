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
#      connections/s, server and client CPU time (utime + stime) per
#      connection; the stack's floor per handshake (hs_floor --h3: ngtcp2 +
#      GnuTLS + nghttp3 in memory, server and client CPU apart) and the best rate
#      ratio this client allows a server that costs exactly that floor.
#      HS_PERF=1 adds perf profiles of both servers and hs_floor, by DSO.
#   3. Memory: MEM_N idle established connections to a fresh uvquic-server
#      with a MEM_IDLE s idle timeout, kept open past it by 2 s keep-alive
#      PINGs; (VmRSS with - VmRSS before) / MEM_N; over h3 and over
#      hq-interop (a second fresh server); gtlsserver likewise (h3); and
#      the stack's own floor (hs_floor --hold MEM_N [--h3]: ngtcp2 +
#      GnuTLS [+ nghttp3] alone, in memory, the same parameters).
#   4. Latency: 1 KiB GETs at LAT_RATE/s on LAT_CONNS connections for
#      LAT_DUR s, timed from when each request was due (no coordinated
#      omission); p50 / p99 / p999, against uvquic-server and gtlsserver,
#      and the machine's own floor (udplat: the same schedule over plain
#      UDP); the load generator's split of its latency into send lag and
#      service time.
#   5. As users run it (bench/output.sh): 100 MiB, unpinned whole
#      processes, discarding and saving (-o FILE vs gtlsclient --download).
# Then the targets of issue 18, each as a ratio against its peer.
# Every peer has a 1 ms initial RTT (gtls*: --initial-rtt=1ms; ours:
# --initial-rtt 1), as on a LAN. The machines are noisy: compare ratios within one
# run, not absolute numbers across runs.
#   bench/run.sh [BUILD_DIR]     (default: build/; builds with UVQ_BENCH=ON)
# Knobs (environment): RUNS, UVQ_THREADS (uvquic-server --threads, default 1), HS_N, HS_C, HS_GEN (load-generator processes, 1), HS_PERF, MEM_N, MEM_C, MEM_IDLE, LAT_RATE,
# LAT_DUR, LAT_CONNS, LAT_RT (1: part 4 at SCHED_FIFO, as root), CEIL_MB, MEM_GTLS (0: skip gtlsserver's memory run),
# SKIP (any of "tput hs mem lat out"), PIN (1: part 1 pins senders to CPU 0 and
# receivers to CPU 1, every contender alike; 0: the scheduler decides).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

HS_N=${HS_N:-2000}
HS_C=${HS_C:-50}
HS_GEN=${HS_GEN:-1}
MEM_N=${MEM_N:-10000}
MEM_C=${MEM_C:-200}
MEM_IDLE=${MEM_IDLE:-5}
LAT_RATE=${LAT_RATE:-5000}
LAT_DUR=${LAT_DUR:-3}
LAT_CONNS=${LAT_CONNS:-4}
LAT_RT=${LAT_RT:-0}
SKIP=${SKIP:-}

bench_init "${1:-}"
for bin in "$UDPBENCH" "$CEILING" "$UDPLAT"; do
  [ -x "$bin" ] || { echo "missing $bin (configure with -DUVQ_BENCH=ON)" >&2; exit 1; }
done
bench_start_servers
skip() { [[ " $SKIP " == *" $1 "* ]]; }

printf 'uvquic bench/run.sh: %s, %s CPUs, RUNS=%d, uvquic-server --threads %s\n' \
  "$(uname -r)" "$(nproc)" "$RUNS" "$UVQ_THREADS"

# ---------------------------------------------------------------------------
# 1. Throughput
if ! skip tput; then
  pin_servers on "$UPID" "$GPID"
  names=("${TRANSFER_PAIRS[@]}" "udpbench (raw UDP, GSO+GRO)"
    "ngtcp2_ceiling (in-memory, CLI_BATCH=45)")
  n=${#names[@]}
  for ((i = 0; i < n; i++)); do : >"$tmp/gbps.$i"; : >"$tmp/inner.$i"; : >"$tmp/cpu.$i"; done
  for r in $(seq 1 "$RUNS"); do
    for ((k = 0; k < n; k++)); do
      i=$(((k + r - 1) % n))
      case $i in
      5) udpbench_run >>"$tmp/gbps.$i" ;;
      6) ceiling_run >>"$tmp/gbps.$i" ;;
      *)
        s=$(transfer_pair "$i")
        cat "$tmp/cpu.s" >>"$tmp/cpu.$i"
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
  if [ "$PIN" = 1 ]; then
    printf '   pinned: senders (servers, udpbench send, ceiling) on CPU 0, receivers on CPU 1 (PIN=0: not)\n'
  else
    printf '   not pinned: the scheduler places every process\n'
  fi
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
  # CPU per 100 MiB: the server's (schedstat) and the client process's
  # (rusage), medians; what a pair costs scatters far less than its time.
  for ((i = 0; i < 5; i++)); do
    awk '{ print $1 + $2 }' "$tmp/cpu.$i" >"$tmp/cpu.both.$i"
  done
  gboth=$(median "$tmp/cpu.both.1")
  printf '\n   CPU per 100 MiB, ms (medians): server process, client process, both; "both vs gtls":\n'
  printf '   gtlsserver -> gtlsclient'"'"'s both over this pair'"'"'s (> 1: this pair costs less)\n'
  printf '%-42s %7s %7s %7s %8s   %s\n' "contender" "server" "client" "both" "vs gtls" "runs (both)"
  for ((i = 0; i < 5; i++)); do
    b=$(median "$tmp/cpu.both.$i")
    printf '%-42s %7.1f %7.1f %7.1f %7sx   %s\n' "${names[$i]}" "$(col_median "$tmp/cpu.$i" 1)" \
      "$(col_median "$tmp/cpu.$i" 2)" "$b" "$(ratio "$gboth" "$b")" \
      "$(awk '{ printf("%s%.0f", (NR > 1) ? " " : "", $1) }' "$tmp/cpu.both.$i")"
  done
  cpu_h3=$(ratio "$gboth" "$(median "$tmp/cpu.both.0")")
  cpu_hq=$(ratio "$gboth" "$(median "$tmp/cpu.both.4")")
  ih3=$(median "$tmp/inner.0")
  ihq=$(median "$tmp/inner.4")
  tput_h3=$(median "$tmp/gbps.0")
  tput_hq=$(median "$tmp/gbps.4")
  pin_servers off "$UPID" "$GPID"
fi

# ---------------------------------------------------------------------------
# 2. Handshake rate
if ! skip hs; then
  HSFLOOR=$B/hs_floor
  [ -x "$HSFLOOR" ] || { echo "missing $HSFLOOR (configure with -DUVQ_BENCH=ON)" >&2; exit 1; }
  # hs_floor_run: HS_N handshakes of ngtcp2 + GnuTLS in memory, one thread
  # (bench/hs_floor.c), each with an HTTP/3 GET of 1k.bin as the clients
  # here make (nghttp3, --h3): prints "server client total rate" (us, us,
  # us, 1/s).
  hs_floor_run() {
    local out
    out=$("$HSFLOOR" --cert "$tmp/cert.pem" --key "$tmp/key.pem" --handshakes "$HS_N" --h3 2>&1) || {
      echo "hs_floor failed: $out" >&2
      return 1
    }
    sed -n 's/.*; server \([0-9.]*\) us, client \([0-9.]*\) us, total \([0-9.]*\) us per handshake.*; loop \([0-9.]*\) handshakes\/s.*/\1 \2 \3 \4/p' <<<"$out"
  }
  hs_names=("uvquic-server" "gtlsserver")
  for i in 0 1; do : >"$tmp/cps.$i"; : >"$tmp/cpu.$i"; : >"$tmp/ccpu.$i"; done
  : >"$tmp/floor"
  # Three contenders alternate: the two servers (one client run each) and
  # the in-memory floor.
  for r in $(seq 1 "$RUNS"); do
    for k in 0 1 2; do
      i=$(((k + r - 1) % 3))
      if [ "$i" = 2 ]; then
        hs_floor_run >>"$tmp/floor"
        continue
      fi
      if [ "$i" = 0 ]; then port=$UPORT pid=$UPID; else port=$GPORT pid=$GPID; fi
      c0=$(cpu_ticks "$pid")
      # HS_GEN load-generator processes at once, HS_N / HS_GEN connections
      # and HS_C / HS_GEN at a time each; the rate is HS_N over the wall
      # time from the first start to the last exit. The clients' own CPU:
      # bash's time (wait4 rusage of the children, 1 ms), summed.
      t0=$(date +%s.%N)
      if ! { TIMEFORMAT='%3U %3S'; time {
        for ((gi = 0; gi < HS_GEN; gi++)); do
          timeout 300 "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 \
            --connections "$((HS_N / HS_GEN))" --concurrency "$(((HS_C + HS_GEN - 1) / HS_GEN))" \
            "https://127.0.0.1:$port/1k.bin" >"$tmp/hs.out.$gi" 2>"$tmp/hs.err.$gi" &
        done
        hs_ok=1
        for ((gi = 0; gi < HS_GEN; gi++)); do wait -n || hs_ok=0; done
        [ "$hs_ok" = 1 ]
      }; } 2>"$tmp/hs.time"; then
        echo "handshake run against ${hs_names[$i]} failed: $(cat "$tmp/hs.out."*) $(head -qn5 "$tmp/hs.err."*)" >&2
        exit 1
      fi
      t1=$(date +%s.%N)
      c1=$(cpu_ticks "$pid")
      if [ "$HS_GEN" = 1 ]; then
        sed -n 's/.*: \([0-9.]*\) connections\/s$/\1/p' "$tmp/hs.out.0" >>"$tmp/cps.$i"
      else
        awk -v a="$t0" -v b="$t1" -v n="$((HS_N / HS_GEN * HS_GEN))" \
          'BEGIN { printf "%.1f\n", n / (b - a) }' >>"$tmp/cps.$i"
      fi
      awk -v d="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$HS_N" \
        'BEGIN { printf "%.1f\n", d * 1e6 / hz / n }' >>"$tmp/cpu.$i"
      awk -v n="$HS_N" 'NF == 2 { printf "%.1f\n", ($1 + $2) * 1e6 / n }' "$tmp/hs.time" >>"$tmp/ccpu.$i"
    done
  done
  echo
  printf '2. Handshake rate: %d connections, %d at a time, one GET of 1 KiB each (%d uvquic-client\n' "$HS_N" "$HS_C" "$HS_GEN"
  printf '   load generator process(es), one client socket each), median of %d; server CPU = utime+stime delta / N\n' "$RUNS"
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
  # Where the rate comes from: the client's CPU per connection (process
  # utime+stime / N) and how many cores each process kept busy while the
  # connections were set up (conn/s x CPU/conn).
  printf '   client CPU = uvquic-client utime+stime / N; cores busy = conn/s x CPU/conn (of %s)\n' "$(nproc)"
  printf '%-16s %18s %14s %14s %12s   %s\n' "against" "client CPU us/conn" "client cores" "server cores" "both" "runs (client us/conn)"
  for i in 0 1; do
    m=$(median "$tmp/cps.$i")
    u=$(median "$tmp/cpu.$i")
    cc=$(median "$tmp/ccpu.$i")
    printf '%-16s %18.1f %14.2f %14.2f %12.2f   %s\n' "${hs_names[$i]}" "$cc" \
      "$(awk -v r="$m" -v c="$cc" 'BEGIN { print r * c / 1e6 }')" \
      "$(awk -v r="$m" -v c="$u" 'BEGIN { print r * c / 1e6 }')" \
      "$(awk -v r="$m" -v c="$cc" -v s="$u" 'BEGIN { print r * (c + s) / 1e6 }')" \
      "$(awk '{ printf("%s%.0f", NR > 1 ? " " : "", $1) }' "$tmp/ccpu.$i")"
  done
  hs_fs=$(col_median "$tmp/floor" 1)
  hs_fc=$(col_median "$tmp/floor" 2)
  hs_ft=$(col_median "$tmp/floor" 3)
  hs_fr=$(col_median "$tmp/floor" 4)
  printf '%-16s server %.1f us, client %.1f us, total %.1f us per handshake (thread CPU); %.0f handshakes/s\n' \
    "hs_floor" "$hs_fs" "$hs_fc" "$hs_ft" "$hs_fr"
  printf '%-16s (ngtcp2 + GnuTLS + nghttp3 in memory, both sides on one thread, no syscalls; runs server us: %s)\n' "" \
    "$(awk '{ printf("%s%.0f", NR > 1 ? " " : "", $1) }' "$tmp/floor")"
  # The best uvquic-server can do against gtlsserver with this client, if
  # the rate is bound by the two processes' CPU on the shared cores: it
  # costs exactly the floor, and the client costs what it cost against
  # uvquic-server. And the server cost 1.5x would need (same model).
  hs_cu=$(median "$tmp/ccpu.0")
  hs_cg=$(median "$tmp/ccpu.1")
  hs_best=$(awk -v cu="$hs_cu" -v cg="$hs_cg" -v g="$g_cpu" -v f="$hs_fs" \
    'BEGIN { printf "%.2f", (cg + g) / (cu + f) }')
  hs_zero=$(awk -v cu="$hs_cu" -v cg="$hs_cg" -v g="$g_cpu" 'BEGIN { printf "%.2f", (cg + g) / cu }')
  hs_need=$(awk -v cu="$hs_cu" -v cg="$hs_cg" -v g="$g_cpu" 'BEGIN { printf "%.0f", (cg + g) / 1.5 - cu }')
  hs_model=$(awk -v cu="$hs_cu" -v cg="$hs_cg" -v g="$g_cpu" -v u="$(median "$tmp/cpu.0")" \
    'BEGIN { printf "%.2f", (cg + g) / (cu + u) }')
  printf '   rate ratio if bound by client + server CPU: (client + gtlsserver) / (client + uvquic-server)\n'
  printf '   = (%.0f + %.0f) / (%.0f + %.0f) = %sx predicted (measured %sx); with uvquic-server at the floor\n' \
    "$hs_cg" "$g_cpu" "$hs_cu" "$(median "$tmp/cpu.0")" "$hs_model" "$hs_ratio"
  printf '   (%.0f us): %sx; at zero cost: %sx; 1.5x needs a server at <= %s us/conn\n' \
    "$hs_fs" "$hs_best" "$hs_zero" "$hs_need"
  # (c + g) / (c + f) >= 1.5 <=> c <= 2g - 3f: the client cost under which
  # a server at the floor could reach 1.5x at all.
  printf '   a server at the floor reaches 1.5x only with a client at <= 2 x gtls - 3 x floor = %s us/conn\n' \
    "$(awk -v g="$g_cpu" -v f="$hs_fs" 'BEGIN { printf "%.0f", 2 * g - 3 * f }')"
  printf '   (the client side of hs_floor, the same stack and HTTP/3 with no kernel: %.0f us)\n' "$hs_fc"
  # Each uvquic-client is one thread: HS_GEN of them cannot set up
  # connections faster than HS_GEN x 1e6 / their CPU per connection (and
  # no faster than the cores allow), whatever the server costs.
  hs_cap=$(awk -v c="$hs_cu" -v g="$HS_GEN" 'BEGIN { printf "%.0f", g * 1e6 / c }')
  hs_cap_ratio=$(ratio "$hs_cap" "$g_cps")
  printf '   the clients are %d thread(s): %d x 1e6 / client CPU caps the rate at %s conn/s against uvquic-server\n' \
    "$HS_GEN" "$HS_GEN" "$hs_cap"
  printf '   (reached %s%%; gtlsserver reached %s%% of its own cap): %sx gtlsserver'"'"'s rate at most\n' \
    "$(awk -v r="$(median "$tmp/cps.0")" -v c="$hs_cu" -v g="$HS_GEN" 'BEGIN { printf "%.0f", r * c / 1e4 / g }')" \
    "$(awk -v r="$g_cps" -v c="$hs_cg" -v g="$HS_GEN" 'BEGIN { printf "%.0f", r * c / 1e4 / g }')" "$hs_cap_ratio"
  # HS_PERF=1: where the CPU goes, by DSO (perf -e cpu-clock -g): one more
  # client run against each server with perf attached to the server, after
  # the timed runs so that they are not disturbed; then hs_floor (its
  # server and client sides together).
  if [ "${HS_PERF:-0}" = 1 ] && ! command -v perf >/dev/null; then
    echo "   HS_PERF=1: no perf on this machine (Debian: linux-perf)"
  elif [ "${HS_PERF:-0}" = 1 ]; then
    hs_perf_report() {
      perf report -i "$1" --no-children --sort dso -g none --stdio 2>/dev/null |
        awk '!/^#/ && NF && n++ < 14 { printf "     %s\n", $0 }'
    }
    echo "   perf record -e cpu-clock -g, perf report --no-children --sort dso (HS_PERF=1):"
    for i in 0 1; do
      if [ "$i" = 0 ]; then port=$UPORT pid=$UPID; else port=$GPORT pid=$GPID; fi
      perf record -q -e cpu-clock -g -p "$pid" -o "$tmp/perf.$i" >/dev/null 2>"$tmp/perf.err" &
      hs_ppid=$!
      bench_pids+=("$hs_ppid")
      sleep 0.5
      timeout 300 "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections "$HS_N" \
        --concurrency "$HS_C" "https://127.0.0.1:$port/1k.bin" >"$tmp/hs.out" 2>&1 || true
      kill -INT "$hs_ppid" 2>/dev/null || true
      wait "$hs_ppid" 2>/dev/null || true
      echo "   ${hs_names[$i]} during one client run ($(sed -n 's/.*: \([0-9.]*\) connections\/s$/\1/p' "$tmp/hs.out") conn/s):"
      hs_perf_report "$tmp/perf.$i"
    done
    perf record -q -e cpu-clock -g -o "$tmp/perf.f" -- "$HSFLOOR" --cert "$tmp/cert.pem" \
      --key "$tmp/key.pem" --handshakes "$HS_N" --h3 >/dev/null 2>"$tmp/perf.err" || true
    echo "   hs_floor (both sides):"
    hs_perf_report "$tmp/perf.f"
  fi
fi

# ---------------------------------------------------------------------------
# 3. Memory per idle connection (one run each: it takes a while to set up)
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# mem_run LABEL PID PORT [ALPN]: holds MEM_N connections (h3, or ALPN) to
# the server PID and prints its report; sets mem_per (KB per connection).
mem_run() {
  local label=$1 pid=$2 port=$3 alpn=${4:-h3} before with mpid mem_ok=0 held setup early hold
  # Warm up: GnuTLS, the file cache, malloc arenas.
  "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --alpn "$alpn" --connections 50 --concurrency 10 \
    "https://127.0.0.1:$port/1k.bin" >/dev/null
  sleep 0.5
  before=$(rss "$pid")
  hold=$((MEM_IDLE + 4))
  "$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --alpn "$alpn" --connections "$MEM_N" --concurrency "$MEM_C" \
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
  printf '   the last was up); KB = 1000 B; (VmRSS with - before) / held. uvquic hq: hq-interop\n'
  printf '   (no nghttp3). gtlsserver: the same stack (ngtcp2 + GnuTLS + nghttp3) in its own\n'
  printf '   example server, for scale\n'
  # Room for MEM_N held connections beyond the default limit (10000).
  # Room for MEM_N held connections from one address, MEM_C set up at a
  # time, beyond the default limits (10000, 1024 per source, 64 handshakes
  # per source).
  lim=(--max-connections $((MEM_N + 1000)) --max-connections-per-source 0
    --max-handshakes-per-source 0)
  start_uvquic M --idle-timeout "$MEM_IDLE" "${lim[@]}"
  mem_run uvquic-server "$M_PID" "$M_PORT"
  mem_uvq=$mem_per
  # hq-interop: the same server and stack without nghttp3.
  start_uvquic MQ --idle-timeout "$MEM_IDLE" "${lim[@]}"
  mem_run "uvquic hq" "$MQ_PID" "$MQ_PORT" hq-interop
  mem_hq=$mem_per
  if [ "${MEM_GTLS:-1}" = 1 ]; then
    start_gtls MG
    mem_run gtlsserver "$MG_PID" "$MG_PORT"
    mem_gtls=$mem_per
  fi
  # The floor: the same connections held by ngtcp2 + GnuTLS (+ nghttp3)
  # with nothing else (bench/hs_floor.c --hold).
  # floor_run LABEL WHAT [--h3]: prints the floor's line, sets floor_per.
  floor_run() {
    local label=$1 what=$2 out fb fa
    shift 2
    out=$("$B/hs_floor" --cert "$tmp/cert.pem" --key "$tmp/key.pem" --hold "$MEM_N" "$@" 2>&1) || {
      echo "hs_floor --hold failed: $out" >&2
      exit 1
    }
    read -r fb fa floor_per < <(sed -n \
      's/.*VmRSS \([0-9]*\) -> \([0-9]*\) kB: \([0-9.]*\) KB\/conn.*/\1 \2 \3/p' <<<"$out") || true
    [ -n "${floor_per:-}" ] || { echo "hs_floor --hold: no figure in: $out" >&2; exit 1; }
    printf '%-14s in memory; held %5d; VmRSS %7d -> %8d kB: %6s KB/conn (%s)\n' \
      "$label" "$MEM_N" "$fb" "$fa" "$floor_per" "$what"
  }
  floor_run "floor h3" "ngtcp2 + GnuTLS + nghttp3" --h3
  floor_h3=$floor_per
  floor_run "floor stream" "ngtcp2 + GnuTLS"
  floor_hq=$floor_per
fi

# ---------------------------------------------------------------------------
# 4. Latency at a fixed rate
if ! skip lat; then
  "$UDPLAT" --server >"$tmp/udplat.port" 2>/dev/null &
  ulpid=$!
  bench_pids+=("$ulpid")
  for _ in $(seq 1 100); do [ -s "$tmp/udplat.port" ] && break; sleep 0.05; done
  ulport=$(awk '{ print $2 }' "$tmp/udplat.port")
  # LAT_RT=1: the three servers (every thread) and each generator run
  # SCHED_FIFO, so the scheduler's delays (other work's time slices, wake-up
  # latency) leave the figures and what remains is the servers' own.
  lat_pre=()
  lat_mode=""
  if [ "$LAT_RT" = 1 ]; then
    chrt -a -f -p 50 "$UPID" && chrt -a -f -p 50 "$GPID" && chrt -a -f -p 50 "$ulpid" ||
      { echo "LAT_RT=1 needs chrt and root" >&2; exit 1; }
    lat_pre=(chrt -f 50)
    lat_mode=" (LAT_RT=1: servers and generator SCHED_FIFO)"
  fi
  lat_names=("uvquic-server" "gtlsserver" "udplat (UDP floor)")
  for i in 0 1 2; do : >"$tmp/lat.$i"; : >"$tmp/split.$i"; done
  for r in $(seq 1 "$RUNS"); do
    for k in 0 1 2; do
      i=$(((k + r - 1) % 3))
      case $i in
      0) cmd=("$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections "$LAT_CONNS"
        --rate "$LAT_RATE" --duration "$LAT_DUR" "https://127.0.0.1:$UPORT/1k.bin") ;;
      1) cmd=("$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1 --connections "$LAT_CONNS"
        --rate "$LAT_RATE" --duration "$LAT_DUR" "https://127.0.0.1:$GPORT/1k.bin") ;;
      2) cmd=("$UDPLAT" --port "$ulport" --rate "$LAT_RATE" --duration "$LAT_DUR") ;;
      esac
      if ! timeout 120 "${lat_pre[@]}" "${cmd[@]}" >"$tmp/lat.out" 2>"$tmp/lat.err"; then
        echo "latency run against ${lat_names[$i]} failed: $(cat "$tmp/lat.out") $(head -n5 "$tmp/lat.err")" >&2
        exit 1
      fi
      sed -n 's/.* p50 \([0-9]*\) p90 [0-9]* p99 \([0-9]*\) p999 \([0-9]*\) max \([0-9]*\); max send lag \([0-9]*\) us$/\1 \2 \3 \4 \5/p' \
        "$tmp/lat.out" >>"$tmp/lat.$i"
      # The load generator's split: send lag p99 p999, service p50 p99 p999.
      sed -n 's/^rate: split us: send lag p50 [0-9]* p99 \([0-9]*\) p999 \([0-9]*\) max [0-9]*; service p50 \([0-9]*\) p99 \([0-9]*\) p999 \([0-9]*\) max [0-9]*$/\1 \2 \3 \4 \5/p' \
        "$tmp/lat.out" >>"$tmp/split.$i"
    done
  done
  if [ "$LAT_RT" = 1 ]; then
    chrt -a -o -p 0 "$UPID"
    chrt -a -o -p 0 "$GPID"
  fi
  echo
  printf '4. Latency%s: 1 KiB GETs at %d/s on %d connections for %s s, from when each was due\n' \
    "$lat_mode" "$LAT_RATE" "$LAT_CONNS" "$LAT_DUR"
  printf '   to response complete (coordinated-omission safe); microseconds, median over %d runs;\n' "$RUNS"
  printf '   udplat: the same schedule over plain UDP (40-byte request, 1064-byte answer), the\n'
  printf '   tail this machine (kernel + scheduler) puts under any server\n'
  printf '%-20s %8s %8s %8s %8s %14s %9s   %s\n' "server" "p50" "p99" "p999" "max" "max send lag" \
    "p999/udp" "runs (p999)"
  lat_udp999=$(col_median "$tmp/lat.2" 3)
  for i in 0 1 2; do
    col() { col_median "$tmp/lat.$i" "$1"; }
    printf '%-20s %8.0f %8.0f %8.0f %8.0f %14.0f %8sx   %s\n' "${lat_names[$i]}" "$(col 1)" "$(col 2)" \
      "$(col 3)" "$(col 4)" "$(col 5)" "$(ratio "$(col 3)" "$lat_udp999")" \
      "$(cut -d' ' -f3 "$tmp/lat.$i" | tr '\n' ' ')"
    case $i in
    0) lat_p99=$(col 2); lat_p999=$(col 3) ;;
    1) lat_g99=$(col 2); lat_g999=$(col 3) ;;
    esac
  done
  printf '   split (uvquic-client): send lag = how late the generator itself issued a request\n'
  printf '   (its timer wake-up and its own loop); service = from issue to response complete\n'
  printf '%-20s %14s %14s %12s %12s %12s\n' "server" "lag p99" "lag p999" "service p50" "service p99" \
    "service p999"
  for i in 0 1; do
    scol() { col_median "$tmp/split.$i" "$1"; }
    printf '%-20s %14.0f %14.0f %12.0f %12.0f %12.0f\n' "${lat_names[$i]}" "$(scol 1)" "$(scol 2)" \
      "$(scol 3)" "$(scol 4)" "$(scol 5)"
  done
fi

# ---------------------------------------------------------------------------
echo
# ---------------------------------------------------------------------------
# 5. As users run it: unpinned whole processes, discarding and saving
# (bench/output.sh, its own servers, the same RUNS, alternating)
if ! skip out; then
  echo
  printf '5. As users run it: '
  RUNS=$RUNS "$(dirname "$0")/output.sh" "$B" | tee "$tmp/output.txt"
  # out_med NAME: the median seconds of output.sh's row NAME.
  out_med() { grep -F "$1 " "$tmp/output.txt" | head -n1 | cut -c26- | awk '{ print $1 }'; }
  o_disc=$(out_med "uvquic discard")
  o_null=$(out_med "uvquic -o /dev/null")
  o_file=$(out_med "uvquic -o FILE")
  g_disc=$(out_med "gtlsclient discard")
  g_dl=$(out_med "gtlsclient --download")
  o_1452=$(out_med "uvquic 1452 discard")
  g_9k=$(out_med "gtls 8952 discard")
fi

echo
echo "Targets of issue 18, this run (each a ratio against a peer measured in this invocation):"
if ! skip out; then
  printf '  unpinned 100 MiB, whole processes: gtls pair time / uvquic pair time = %sx discarding, %sx with -o /dev/null,\n' \
    "$(ratio "$g_disc" "$o_disc")" "$(ratio "$g_disc" "$o_null")"
  printf '    %sx saving (-o FILE vs gtlsclient --download) (each >= 2.0); -o FILE / discarding = %sx (<= 1.15)\n' \
    "$(ratio "$g_dl" "$o_file")" "$(ratio "$o_file" "$o_disc")"
  printf '    (datagram size: gtls pair / uvquic pair both at 1452 bytes = %sx; gtls told 8952 / uvquic = %sx)\n' \
    "$(ratio "$g_disc" "$o_1452")" "$(ratio "$g_9k" "$o_disc")"
fi
if ! skip tput; then
  printf '  pinned 100 MiB h3 / hq: %sx / %sx the gtls pair, %sx / %sx the in-memory ceiling (no regression)\n' \
    "$(ratio "$tput_h3" "$gtls")" "$(ratio "$tput_hq" "$gtls")" \
    "$(ratio "$tput_h3" "$ceil")" "$(ratio "$tput_hq" "$ceil")"
fi
if ! skip hs; then
  printf '  server CPU per handshake / hs_floor server side: %sx (<= 1.3); handshake rate vs gtlsserver: %sx with %d generator(s) (>= 1.5)\n' \
    "$(ratio "$(median "$tmp/cpu.0")" "$hs_fs")" "$hs_ratio" "$HS_GEN"
fi
if ! skip lat; then
  printf '  latency at %d req/s%s: p99 %.0f us (<= 200), p999 %.0f us (<= 1000); p999 / UDP floor p999 = %sx (gtlsserver %sx)\n' \
    "$LAT_RATE" "$lat_mode" "$lat_p99" "$lat_p999" "$(ratio "$lat_p999" "$lat_udp999")" "$(ratio "$lat_g999" "$lat_udp999")"
fi
if ! skip mem; then
  printf '  idle RSS per connection h3 / hq: %s / %s KB (no regression)\n' "$mem_uvq" "$mem_hq"
fi

echo
echo "Targets, this run (throughput and handshakes: issue 4; memory: issue 10):"
if ! skip tput; then
  printf '  throughput h3 %.2f / hq %.2f Gbit/s: vs gtls %sx / %sx (>= 2.0), vs udpbench %sx / %sx (>= 0.45), vs ceiling %sx / %sx (>= 0.5)\n' \
    "$tput_h3" "$tput_hq" "$(ratio "$tput_h3" "$gtls")" "$(ratio "$tput_hq" "$gtls")" \
    "$(ratio "$tput_h3" "$udp")" "$(ratio "$tput_hq" "$udp")" \
    "$(ratio "$tput_h3" "$ceil")" "$(ratio "$tput_hq" "$ceil")"
  printf '  (inner timing h3 %.2f / hq %.2f Gbit/s: vs ceiling %sx / %sx)\n' "$ih3" "$ihq" \
    "$(ratio "$ih3" "$ceil")" "$(ratio "$ihq" "$ceil")"
  printf '  (CPU per 100 MiB, server + client: gtls pair / uvquic pair = %sx h3, %sx hq)\n' \
    "$cpu_h3" "$cpu_hq"
fi
if ! skip hs; then
  printf '  handshake rate vs gtlsserver: %sx (>= 1.5); server CPU per connection: gtls / uvquic = %sx\n' \
    "$hs_ratio" "$hs_cpu_ratio"
  printf '  handshake floor (hs_floor, in memory): server %.0f us/handshake; uvquic-server %.0f, gtlsserver %.0f, client %.0f us/conn;\n' \
    "$hs_fs" "$(median "$tmp/cpu.0")" "$g_cpu" "$hs_cu"
  printf '    best ratio with this client at the floor (client + gtls) / (client + floor) = %sx (>= 1.5 needs a server <= %s us/conn);\n' \
    "$hs_best" "$hs_need"
  printf '    the client thread(s) cap any server at HS_GEN x 1e6 / client CPU = %s conn/s = %sx gtlsserver'"'"'s rate\n' \
    "$hs_cap" "$hs_cap_ratio"
fi
if ! skip mem; then
  printf '  RSS per idle connection: h3 %s / hq %s KB (<= 70 / <= 55); gtlsserver (h3): %s KB\n' \
    "$mem_uvq" "$mem_hq" "${mem_gtls:--}"
  printf '    over the stack floor: h3 %s - %s = %s KB, hq %s - %s = %s KB (each <= 8 KiB = 8.2 KB)\n' \
    "$mem_uvq" "$floor_h3" "$(awk -v a="$mem_uvq" -v b="$floor_h3" 'BEGIN { printf "%.1f", a - b }')" \
    "$mem_hq" "$floor_hq" "$(awk -v a="$mem_hq" -v b="$floor_hq" 'BEGIN { printf "%.1f", a - b }')"
fi
if ! skip lat; then
  printf '  latency at %d req/s: p99 %.0f us (<= 200), p999 %.0f us (<= 1000); gtlsserver p99 %.0f, p999 %.0f; UDP floor p999 %.0f\n' \
    "$LAT_RATE" "$lat_p99" "$lat_p999" "$lat_g99" "$lat_g999" "$lat_udp999"
fi
