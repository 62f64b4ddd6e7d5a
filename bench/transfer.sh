#!/usr/bin/env bash
# Measurement (not a test): the time to download one 100 MiB file over
# loopback for four server -> client pairs, HTTP/3 throughout:
#   uvquic-server -> uvquic-client
#   gtlsserver    -> gtlsclient      (ngtcp2 0.12.1's examples; the baseline)
#   gtlsserver    -> uvquic-client
#   uvquic-server -> gtlsclient
# RUNS runs per pair (default 5), the pairs alternating run by run so drift
# on the machine hits them all alike. Each run is one client process: its
# start, the handshake, the transfer and the close, timed from outside.
# Bodies are discarded by every client. Every peer gets a 1 ms initial RTT
# (gtls*: --initial-rtt=1ms, which their known ACK-timer stall needs; ours:
# --initial-rtt 1, the same setting). Prints the median per pair and its
# ratio to gtlsserver -> gtlsclient (time; > 1 is slower).
#   bench/transfer.sh [BUILD_DIR]      (default: build/, run scripts/build.sh first)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-${UVQ_BUILD_DIR:-$here/build}}
RUNS=${RUNS:-5}
SIZE=$((100 * 1024 * 1024))
SERVER=$B/uvquic-server
CLIENT=$B/uvquic-client
GTLSSERVER=/usr/sbin/gtlsserver
GTLSCLIENT=$(command -v gtlsclient || true)
if [ ! -x "$GTLSSERVER" ] || [ -z "$GTLSCLIENT" ]; then
  "$here/scripts/deps.sh"
  GTLSCLIENT=$(command -v gtlsclient)
fi
for bin in "$SERVER" "$CLIENT" "$GTLSSERVER" "$GTLSCLIENT"; do
  [ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1
mkdir -p "$tmp/www"
head -c "$SIZE" /dev/urandom >"$tmp/www/big.bin"

# uvquic-server on port 0.
"$SERVER" --listen 127.0.0.1:0 --root "$tmp/www" --cert "$tmp/cert.pem" \
  --key "$tmp/key.pem" --quiet --initial-rtt 1 >"$tmp/u.out" 2>"$tmp/u.err" &
pids+=("$!")
for _ in $(seq 1 200); do
  grep -qs '^listening on ' "$tmp/u.out" && break
  sleep 0.05
done
UPORT=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$tmp/u.out")
[ -n "$UPORT" ] || { echo "uvquic-server did not start: $(cat "$tmp/u.err")" >&2; exit 1; }

# gtlsserver needs an explicit port: a free one, retried if the bind fails.
udp_bound() {
  awk -v p=":$(printf '%04X' "$1")" \
    'NR > 1 && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/udp
}
GPORT=
for _ in 1 2 3 4 5; do
  port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$GTLSSERVER" -q --initial-rtt=1ms -d "$tmp/www" 127.0.0.1 "$port" \
    "$tmp/key.pem" "$tmp/cert.pem" >/dev/null 2>"$tmp/g.err" &
  gpid=$!
  pids+=("$gpid")
  for _ in $(seq 1 100); do
    kill -0 "$gpid" 2>/dev/null || break
    if udp_bound "$port"; then
      GPORT=$port
      break
    fi
    sleep 0.05
  done
  [ -n "$GPORT" ] && break
  kill -KILL "$gpid" 2>/dev/null || true
done
[ -n "$GPORT" ] || { echo "gtlsserver did not start: $(cat "$tmp/g.err")" >&2; exit 1; }

pairs=("uvquic-server -> uvquic-client" "gtlsserver -> gtlsclient"
  "gtlsserver -> uvquic-client" "uvquic-server -> gtlsclient")

# run_pair I: one timed download for pair I; prints seconds, or fails.
run_pair() {
  local port cmd t0 t1
  case $1 in
  0 | 3) port=$UPORT ;;
  *) port=$GPORT ;;
  esac
  case $1 in
  0 | 2)
    cmd=("$CLIENT" --ca "$tmp/cert.pem" --initial-rtt 1
      "https://127.0.0.1:$port/big.bin")
    ;;
  *)
    cmd=("$GTLSCLIENT" -q --initial-rtt=1ms --exit-on-all-streams-close
      127.0.0.1 "$port" "https://127.0.0.1:$port/big.bin")
    ;;
  esac
  t0=$(date +%s.%N)
  if ! timeout 120 "${cmd[@]}" >"$tmp/run.out" 2>"$tmp/run.err"; then
    echo "run of ${pairs[$1]} failed: $(tail -n3 "$tmp/run.err")" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  case $1 in
  0 | 2)
    grep -q "^downloaded 1 files, $SIZE bytes" "$tmp/run.err" || {
      echo "run of ${pairs[$1]} incomplete: $(cat "$tmp/run.err")" >&2
      return 1
    }
    ;;
  esac
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}

for i in 0 1 2 3; do : >"$tmp/times.$i"; done
for r in $(seq 1 "$RUNS"); do
  # Alternate: each run starts with a different pair.
  for k in 0 1 2 3; do
    i=$(((k + r - 1) % 4))
    run_pair "$i" >>"$tmp/times.$i"
  done
done

median() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
base=$(median "$tmp/times.1")
printf '100 MiB over loopback, HTTP/3, median of %d runs (client process wall time)\n' "$RUNS"
printf '%-32s %10s %12s %14s   %s\n' "server -> client" "median s" "Mbit/s" "vs gtls->gtls" "runs (s)"
for i in 0 1 2 3; do
  m=$(median "$tmp/times.$i")
  awk -v name="${pairs[$i]}" -v m="$m" -v base="$base" -v size="$SIZE" \
    -v runs="$(awk '{ printf("%s%.3f", (NR > 1) ? " " : "", $1) }' "$tmp/times.$i")" \
    'BEGIN { printf "%-32s %10.3f %12.0f %13.2fx   %s\n", name, m,
             size * 8 / m / 1e6, m / base, runs }'
done
