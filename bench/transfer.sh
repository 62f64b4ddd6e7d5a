#!/usr/bin/env bash
# Measurement (not a test): the time to download one 100 MiB file over
# loopback for four server -> client pairs, HTTP/3 throughout:
#   uvquic-server -> uvquic-client
#   gtlsserver    -> gtlsclient      (ngtcp2 1.11's examples; the baseline)
#   gtlsserver    -> uvquic-client
#   uvquic-server -> gtlsclient
# RUNS runs per pair (default 5), the pairs alternating run by run so drift
# on the machine hits them all alike. Each run is one client process: its
# start, the handshake, the transfer and the close, timed from outside.
# Bodies are discarded by every client. Every peer gets a 1 ms initial RTT
# (gtls*: --initial-rtt=1ms; ours: --initial-rtt 1, the same setting). Prints the median per pair and its
# ratio to gtlsserver -> gtlsclient (time; > 1 is slower).
#   bench/transfer.sh [BUILD_DIR]      (default: build/, run scripts/build.sh first)
# The setup and the contenders live in bench/lib.sh, shared with
# bench/run.sh (which adds hq-interop, the raw-UDP limit and the protocol
# ceiling, and prints goodput ratios).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init "${1:-}"
bench_start_servers
pin_servers on "$UPID" "$GPID" # PIN=0: leave them to the scheduler (lib.sh)

for i in 0 1 2 3; do : >"$tmp/times.$i"; done
for r in $(seq 1 "$RUNS"); do
  # Alternate: each run starts with a different pair.
  for k in 0 1 2 3; do
    i=$(((k + r - 1) % 4))
    transfer_pair "$i" >>"$tmp/times.$i"
  done
done

base=$(median "$tmp/times.1")
printf '100 MiB over loopback, HTTP/3, median of %d runs (client process wall time)\n' "$RUNS"
printf '%-32s %10s %12s %14s   %s\n' "server -> client" "median s" "Mbit/s" "vs gtls->gtls" "runs (s)"
for i in 0 1 2 3; do
  m=$(median "$tmp/times.$i")
  awk -v name="${TRANSFER_PAIRS[$i]% h3}" -v m="$m" -v base="$base" -v size="$SIZE" \
    -v runs="$(runs_of "$tmp/times.$i")" \
    'BEGIN { printf "%-32s %10.3f %12.0f %13.2fx   %s\n", name, m,
             size * 8 / m / 1e6, m / base, runs }'
done
