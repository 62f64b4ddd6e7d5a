# shellcheck shell=bash
# Shared by bench/transfer.sh and bench/run.sh (sourced, not run): the
# build directory, the peers, a scratch directory with a certificate and
# the files served, the servers, medians, and the throughput contenders.
# Measurements, not tests: nothing here asserts on time.
#
# After bench_init BUILD_DIR: $B, $tmp (removed on exit), $SERVER, $CLIENT,
# $GTLSSERVER, $GTLSCLIENT, $UDPBENCH, $CEILING, $SIZE; bench_start_servers
# sets $UPORT / $UPID (uvquic-server) and $GPORT / $GPID (gtlsserver).

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE=$((100 * 1024 * 1024))
RUNS=${RUNS:-5}
# uvquic-server's shards (--threads): 1 unless set, so the figures compare
# one thread with the peers' one; the harness prints it (bench/shards.sh
# compares 1 and 2).
UVQ_THREADS=${UVQ_THREADS:-1}
bench_pids=()
# Throughput runs pin the sending side to CPU 0 and the receiving side to
# CPU 1 (every contender alike) unless PIN=0: left to the scheduler, the
# two processes of a pair often share one CPU for part of a run (wake-up
# affinity), which scatters every contender's figures. Needs 2 CPUs.
PIN=${PIN:-1}
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_SEND=(taskset -c 0)
  PIN_RECV=(taskset -c 1)
else
  PIN=0
  PIN_SEND=()
  PIN_RECV=()
fi
# pin_servers on|off PID...: moves running servers (all their threads) to
# CPU 0, or back to all.
pin_servers() {
  local mode=$1 cpus=0 p
  shift
  [ "$PIN" = 1 ] || return 0
  [ "$mode" = off ] && cpus=0-$(($(nproc) - 1))
  for p in "$@"; do
    taskset -a -p -c "$cpus" "$p" >/dev/null
  done
}

bench_cleanup() {
  local p
  for p in "${bench_pids[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  [ -n "${tmp:-}" ] && rm -rf "$tmp"
}

# bench_init BUILD_DIR: finds the programs, makes the certificate and files.
bench_init() {
  B=${1:-${UVQ_BUILD_DIR:-$bench_here/build}}
  SERVER=$B/uvquic-server
  CLIENT=$B/uvquic-client
  UDPBENCH=$B/udpbench
  CEILING=$B/ngtcp2_ceiling
  UDPLAT=$B/udplat
  GTLSSERVER=/usr/sbin/gtlsserver
  GTLSCLIENT=$(command -v gtlsclient || true)
  if [ ! -x "$GTLSSERVER" ] || [ -z "$GTLSCLIENT" ]; then
    "$bench_here/scripts/deps.sh"
    GTLSCLIENT=$(command -v gtlsclient)
  fi
  local bin
  for bin in "$SERVER" "$CLIENT" "$GTLSSERVER" "$GTLSCLIENT"; do
    [ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }
  done
  tmp=$(mktemp -d)
  trap bench_cleanup EXIT
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1
  mkdir -p "$tmp/www"
  head -c "$SIZE" /dev/urandom >"$tmp/www/big.bin"
  head -c 1024 /dev/urandom >"$tmp/www/1k.bin"
}

# free_udp_port: a port nobody holds right now (it may be taken before use:
# callers retry).
free_udp_port() {
  python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

udp_bound() {
  awk -v p=":$(printf '%04X' "$1")" \
    'NR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/udp
}

# start_uvquic NAME [server flags...]: starts uvquic-server on port 0 and
# sets ${NAME}_PORT and ${NAME}_PID. Quiet unless UVQ_QUIET is set (to
# nothing: counters at exit, and the access log, in $tmp/NAME.out).
start_uvquic() {
  local name=$1 port pid
  shift
  "$SERVER" --listen 127.0.0.1:0 --root "$tmp/www" --cert "$tmp/cert.pem" \
    --key "$tmp/key.pem" ${UVQ_QUIET---quiet} --initial-rtt 1 --threads "$UVQ_THREADS" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  bench_pids+=("$pid")
  for _ in $(seq 1 200); do
    grep -qs '^listening on ' "$tmp/$name.out" && break
    sleep 0.05
  done
  port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$tmp/$name.out")
  [ -n "$port" ] || { echo "uvquic-server did not start: $(cat "$tmp/$name.err")" >&2; exit 1; }
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
}

# start_gtls NAME [gtlsserver flags...]: starts gtlsserver on a free port
# (retried if the bind fails) and sets ${NAME}_PORT and ${NAME}_PID.
start_gtls() {
  local name=$1 port gpid found=
  shift
  for _ in 1 2 3 4 5; do
    port=$(free_udp_port)
    "$GTLSSERVER" -q --initial-rtt=1ms "$@" -d "$tmp/www" 127.0.0.1 "$port" \
      "$tmp/key.pem" "$tmp/cert.pem" >/dev/null 2>"$tmp/$name.err" &
    gpid=$!
    bench_pids+=("$gpid")
    for _ in $(seq 1 100); do
      kill -0 "$gpid" 2>/dev/null || break
      if udp_bound "$port"; then
        found=1
        break
      fi
      sleep 0.05
    done
    [ -n "$found" ] && break
    kill -KILL "$gpid" 2>/dev/null || true
  done
  [ -n "$found" ] || { echo "gtlsserver did not start: $(cat "$tmp/$name.err")" >&2; exit 1; }
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$gpid"
}

# bench_start_servers: one uvquic-server and one gtlsserver, both with a
# 1 ms initial RTT: $UPORT/$UPID, $GPORT/$GPID.
bench_start_servers() {
  start_uvquic U
  UPORT=$U_PORT
  UPID=$U_PID
  start_gtls G
  GPORT=$G_PORT
  GPID=$G_PID
}

median() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col_median FILE FIELD: the median of one space-separated column of FILE.
col_median() { cut -d' ' -f"$2" "$1" >"$tmp/col"; median "$tmp/col"; }
# runs_of FILE: the values of FILE on one line, 3 decimals.
runs_of() { awk '{ printf("%s%.3f", (NR > 1) ? " " : "", $1) }' "$1"; }
# ratio A B: A / B, 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "nan" }'; }

# cpu_ns PID: CPU time PID's threads have run, in ns (schedstat: finer
# than the 10 ms ticks of /proc/PID/stat).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# cpu_ticks PID: utime + stime of PID in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------
# Throughput contenders. transfer_pair I prints the seconds one 100 MiB
# download took (client process wall time: start, handshake, transfer,
# close), or fails. Bodies are discarded by every client. It also leaves
# the CPU milliseconds the server and the client process spent on it in
# $tmp/cpu.s ("server client"): on a shared VM, cost per byte scatters far
# less than time.
TRANSFER_PAIRS=("uvquic-server -> uvquic-client h3"
  "gtlsserver -> gtlsclient"
  "gtlsserver -> uvquic-client h3"
  "uvquic-server -> gtlsclient"
  "uvquic-server -> uvquic-client hq")

transfer_pair() {
  local port spid cmd t0 t1 s0 s1 ccpu
  case $1 in
  0 | 3 | 4) port=$UPORT spid=$UPID ;;
  *) port=$GPORT spid=$GPID ;;
  esac
  case $1 in
  0 | 2 | 4)
    cmd=("$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1)
    [ "$1" = 4 ] && cmd+=(--alpn hq-interop)
    cmd+=("https://127.0.0.1:$port/big.bin")
    ;;
  *)
    cmd=("$GTLSCLIENT" -q --initial-rtt=1ms --exit-on-all-streams-close
      127.0.0.1 "$port" "https://127.0.0.1:$port/big.bin")
    ;;
  esac
  s0=$(cpu_ns "$spid")
  t0=$(date +%s.%N)
  if ! ccpu=$( { TIMEFORMAT='%3U %3S'
    time timeout 120 "${PIN_RECV[@]}" "${cmd[@]}" >"$tmp/run.out" 2>"$tmp/run.err"; } 2>&1); then
    echo "run of ${TRANSFER_PAIRS[$1]} failed: $(tail -n3 "$tmp/run.err")" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  s1=$(cpu_ns "$spid")
  awk -v a="$s0" -v b="$s1" -v c="$ccpu" \
    'BEGIN { split(c, u, " "); printf "%.1f %.1f\n", (b - a) / 1e6, (u[1] + u[2]) * 1e3 }' >"$tmp/cpu.s"
  # uvquic-client's own timing (first packet to the connection's close),
  # without process start-up and the closing period it waits at exit.
  : >"$tmp/inner.s"
  case $1 in
  0 | 2 | 4)
    grep -q "^downloaded 1 files, $SIZE bytes" "$tmp/run.err" || {
      echo "run of ${TRANSFER_PAIRS[$1]} incomplete: $(cat "$tmp/run.err")" >&2
      return 1
    }
    sed -n 's/^downloaded .* bytes in \([0-9.]*\) s .*/\1/p' "$tmp/run.err" >"$tmp/inner.s"
    ;;
  esac
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}

# udpbench_run: the raw-UDP limit (GSO sends, recvmmsg + GRO receives,
# 1200-byte payloads, 1 s): prints the receiver's payload Gbit/s.
udpbench_run() {
  local port rpid out
  for _ in 1 2 3 4 5; do
    port=$(free_udp_port)
    "${PIN_RECV[@]}" "$UDPBENCH" recv "$port" gro >"$tmp/udp.out" 2>&1 &
    rpid=$!
    for _ in $(seq 1 100); do
      udp_bound "$port" && break
      sleep 0.02
    done
    if udp_bound "$port"; then
      "${PIN_SEND[@]}" "$UDPBENCH" send "$port" gso 1 >/dev/null 2>&1 || true
      wait "$rpid" || true
      out=$(sed -n 's/.* = \([0-9.]*\) Gbit\/s.*/\1/p' "$tmp/udp.out")
      [ -n "$out" ] && { echo "$out"; return 0; }
    else
      kill -KILL "$rpid" 2>/dev/null || true
      wait "$rpid" 2>/dev/null || true
    fi
  done
  echo "udpbench failed: $(cat "$tmp/udp.out")" >&2
  return 1
}

# ceiling_run: ngtcp2 1.x + GnuTLS in one process and thread, packets
# handed over in memory, the client ACKing once per 45-datagram burst
# (CLI_BATCH=45), 1 GiB (the program's default, as in the reference
# notes): prints goodput Gbit/s.
ceiling_run() {
  local out
  out=$(CERTDIR=$tmp CLI_BATCH=45 BULK_MB=${CEIL_MB:-1024} "${PIN_SEND[@]}" "$CEILING" 2>&1) || {
    echo "ngtcp2_ceiling failed: $out" >&2
    return 1
  }
  sed -n 's/.*goodput=\([0-9.]*\)Gbit\/s.*/\1/p' <<<"$out"
}
