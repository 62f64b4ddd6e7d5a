#!/usr/bin/env bash
# Measurement (not a test): what saving a download costs. One 100 MiB h3
# file over loopback, unpinned (PIN is ignored: both processes are left to
# the scheduler, as users run them), RUNS runs per contender (default 5),
# the contenders alternating run by run:
#   uvquic-server -> uvquic-client            discarding (no -o)
#   uvquic-server -> uvquic-client -o /dev/null
#   uvquic-server -> uvquic-client -o FILE
#   gtlsserver    -> gtlsclient               discarding
#   gtlsserver    -> gtlsclient --download DIR
# then two that show how much of the difference is the datagram size
# (uvquic's path MTU discovery climbs to 16384-byte datagrams on
# loopback, the gtls pair stays at 1452 unless told):
#   uvquic-server --max-udp-payload 1452 -> uvquic-client   discarding
#   gtlsserver -> gtlsclient, both --max-udp-payload-size=8952, discarding
#     (jumbo frames' size: told 16384, the gtls 1.11 pair takes ~5 s for
#     20 MB on loopback)
# and, with BASE=DIR (another build, e.g. main's), that build's client
# -o FILE against the same uvquic-server. Prints the median wall time of
# each (the client process: start, handshake, transfer, close), its ratio
# to uvquic discarding and to gtlsclient --download, then the write(2)-
# family calls one run of each client makes (strace -c -f), if strace is
# installed.
#   bench/output.sh [BUILD_DIR]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
PIN=0
PIN_RECV=()
bench_init "${1:-}"
bench_start_servers
BASE_CLIENT=
if [ -n "${BASE:-}" ]; then
  BASE_CLIENT=$BASE/uvquic-client
  [ -x "$BASE_CLIENT" ] || { echo "missing $BASE_CLIENT" >&2; exit 1; }
fi
out=$tmp/out
mkdir -p "$out"

start_uvquic U1452 --max-udp-payload 1452
start_gtls G9K --max-udp-payload-size=8952

names=("uvquic discard" "uvquic -o /dev/null" "uvquic -o FILE"
  "gtlsclient discard" "gtlsclient --download"
  "uvquic 1452 discard" "gtls 8952 discard")
n=7
if [ -n "$BASE_CLIENT" ]; then
  names+=("BASE uvquic -o FILE")
  n=8
fi

# contender_cmd I: sets cmd to contender I's command line.
contender_cmd() {
  local u="https://127.0.0.1:$UPORT/big.bin" g="https://127.0.0.1:$GPORT/big.bin"
  case $1 in
  0) cmd=("$CLIENT" -q --ca "$tmp/cert.pem" --initial-rtt 1 "$u") ;;
  1) cmd=("$CLIENT" -q --ca "$tmp/cert.pem" --initial-rtt 1 -o /dev/null "$u") ;;
  2) cmd=("$CLIENT" -q --ca "$tmp/cert.pem" --initial-rtt 1 -o "$out/big.bin" "$u") ;;
  3) cmd=("$GTLSCLIENT" -q --initial-rtt=1ms --exit-on-all-streams-close
    127.0.0.1 "$GPORT" "$g") ;;
  4) cmd=("$GTLSCLIENT" -q --initial-rtt=1ms --exit-on-all-streams-close
    --download="$out" 127.0.0.1 "$GPORT" "$g") ;;
  5) cmd=("$CLIENT" -q --ca "$tmp/cert.pem" --initial-rtt 1
    "https://127.0.0.1:$U1452_PORT/big.bin") ;;
  6) cmd=("$GTLSCLIENT" -q --initial-rtt=1ms --exit-on-all-streams-close
    --max-udp-payload-size=8952 127.0.0.1 "$G9K_PORT"
    "https://127.0.0.1:$G9K_PORT/big.bin") ;;
  7) cmd=("$BASE_CLIENT" -q --ca "$tmp/cert.pem" --initial-rtt 1 -o "$out/big.bin" "$u") ;;
  esac
}

run_one() {
  local t0 t1
  contender_cmd "$1"
  rm -f "$out/big.bin"
  t0=$(date +%s.%N)
  if ! timeout 120 "${cmd[@]}" >/dev/null 2>"$tmp/run.err"; then
    echo "run of ${names[$1]} failed: $(tail -n3 "$tmp/run.err")" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  case $1 in
  2 | 4 | 7)
    cmp -s "$out/big.bin" "$tmp/www/big.bin" ||
      { echo "${names[$1]}: the saved file differs" >&2; return 1; } ;;
  esac
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

for ((i = 0; i < n; i++)); do : >"$tmp/times.$i"; done
for r in $(seq 1 "$RUNS"); do
  for ((k = 0; k < n; k++)); do
    i=$(((k + r - 1) % n))
    run_one "$i" >>"$tmp/times.$i"
  done
done

disc=$(median "$tmp/times.0")
gdl=$(median "$tmp/times.4")
printf '100 MiB over loopback, h3, unpinned, median of %d alternating runs (client wall time)\n' "$RUNS"
printf '%-24s %9s %11s %14s   %s\n' contender "median s" "/ discard" "/ gtls --dl" "runs (s)"
for ((i = 0; i < n; i++)); do
  m=$(median "$tmp/times.$i")
  printf '%-24s %9.3f %10sx %13sx   %s\n' "${names[$i]}" "$m" "$(ratio "$m" "$disc")" \
    "$(ratio "$m" "$gdl")" "$(runs_of "$tmp/times.$i")"
done

if command -v strace >/dev/null; then
  printf '\nwrite-family calls in one run (strace -c -f)\n'
  for i in 2 4 7; do
    [ "$i" -lt "$n" ] || continue
    contender_cmd "$i"
    rm -f "$out/big.bin"
    strace -c -f -o "$tmp/strace.$i" "${cmd[@]}" >/dev/null 2>&1 || true
    awk -v name="${names[$i]}" '$NF ~ /^(write|writev|pwrite64|pwritev|pwritev2)$/ {
        calls += $4 } END { printf "%-24s %9d\n", name, calls }' "$tmp/strace.$i"
  done
fi
