#!/usr/bin/env bash
# The attacks of issue 13 against uvquic-server, on loopback: for each, the
# server's RSS at start and at its peak, and the peaks of its send-buffer
# pool (uvquic_send_buffer_pool_outstanding_bytes), handshakes in flight and
# connections, from its --metrics-file (rewritten every second, so a peak
# shorter than a second may be missed there; RSS is sampled every 0.1 s).
#
#   bench/attacks.sh BUILD_DIR [BUILD_DIR...]
#
# Each BUILD_DIR holds a uvquic-server; a column per directory (e.g. a
# build from before issue 13 and one after). The attackers come from the
# LAST directory (or $TOOLS): its bench/attacker (bench/attacker.c, on the
# uvquic library) and uvquic-client, plus the system's gtlsclient (ngtcp2's,
# run with --initial-rtt=1ms). Every server gets the same options:
# --initial-rtt 1 --quiet, a fresh start per attack, nothing else, so each
# runs on its own defaults (limits, timeouts). Attacks:
#   zero-credit   4 x gtlsclient -n 100 --max-stream-data-bidi-local=1 for a
#                 64 MiB file (reads ahead of flow-control credit)
#   initials      3,000 Initials from 50 addresses on 127.0.1.0/24
#   retry-always  2,000 connections from one socket answering every Retry
#                 (server --retry=always), nothing after it
#   retry-auto    the same against --retry=auto
#   idle          2,000 connections from one socket (uvquic-client's load
#                 generator: one small hq GET each, 60 handshakes at a time,
#                 then held with PINGs)
#   hq-lines      20 hq connections x 100 streams of "GET /" (no line end)
#   h3-half       10 h3 connections x 100 streams of half a 65 KB field
# Takes about 45 s per build directory.
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: bench/attacks.sh BUILD_DIR [BUILD_DIR...]" >&2
  exit 2
fi
builds=("$@")
tools=${TOOLS:-${builds[$((${#builds[@]} - 1))]}}
attacker=$tools/attacker
client=$tools/uvquic-client
gtls=$(command -v gtlsclient || true)
for b in "${builds[@]}"; do
  [ -x "$b/uvquic-server" ] || { echo "attacks.sh: no $b/uvquic-server" >&2; exit 2; }
done

tmp=$(mktemp -d)
spid=
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null
  jobs -p | xargs -r kill 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
mkdir "$tmp/www"
head -c $((64 * 1024 * 1024)) /dev/zero >"$tmp/www/big.bin"
head -c 1000 /dev/zero >"$tmp/www/small.bin"

rss_of() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
metric() { awk -v m="$1" '$1 == m { print $2 }' "$tmp/metrics" 2>/dev/null; }

# start_server BUILD [server options...]: the server on a free port; sets
# spid and port.
start_server() {
  local b=$1
  shift
  : >"$tmp/srv.out"
  rm -f "$tmp/metrics"
  "$b/uvquic-server" --listen 127.0.0.1:0 --root "$tmp/www" --cert "$tmp/cert.pem" \
    --key "$tmp/key.pem" --quiet --initial-rtt 1 --metrics-file "$tmp/metrics" "$@" \
    >"$tmp/srv.out" 2>&1 &
  spid=$!
  for _ in $(seq 1 50); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/srv.out")
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "attacks.sh: $b/uvquic-server did not start: $(cat "$tmp/srv.out")" >&2
  return 1
}

# watch SECONDS: samples the server for SECONDS; sets peak_rss, pool_peak,
# hs_peak, conn_peak.
watch() {
  local end=$((SECONDS + $1)) r p
  peak_rss=0 pool_peak=0 hs_peak=0 conn_peak=0
  while [ $SECONDS -lt $end ] && kill -0 "$spid" 2>/dev/null; do
    r=$(rss_of "$spid")
    [ "${r:-0}" -gt "$peak_rss" ] && peak_rss=$r
    p=$(metric uvquic_send_buffer_pool_outstanding_bytes)
    [ "${p:-0}" -gt "$pool_peak" ] && pool_peak=$p
    p=$(metric uvquic_handshakes_in_flight)
    [ "${p:-0}" -gt "$hs_peak" ] && hs_peak=$p
    p=$(metric uvquic_connections)
    [ "${p:-0}" -gt "$conn_peak" ] && conn_peak=$p
    sleep 0.1
  done
}

# One attack against one build: prints its cell "start->peak (+delta) MiB,
# pool P MB, hs H, conns C", or why it could not run.
attack() {
  local b=$1 name=$2 r0 opts=() dur
  case $name in
  retry-always) opts=(--retry=always) ;;
  retry-auto) opts=(--retry=auto) ;;
  esac
  case $name in
  zero-credit) [ -n "$gtls" ] || { echo "not run: no gtlsclient"; return; } ;;
  idle) [ -x "$client" ] || { echo "not run: no $client"; return; } ;;
  *) [ -x "$attacker" ] || { echo "not run: no $attacker (build bench/)"; return; } ;;
  esac
  start_server "$b" "${opts[@]}" || { echo "server failed"; return; }
  sleep 0.3
  r0=$(rss_of "$spid")
  dur=5
  case $name in
  zero-credit)
    for _ in 1 2 3 4; do
      timeout 6 "$gtls" -q --initial-rtt=1ms -n 100 --max-stream-data-bidi-local=1 \
        127.0.0.1 "$port" "https://127.0.0.1:$port/big.bin" >/dev/null 2>&1 &
    done
    dur=6
    ;;
  initials)
    "$attacker" --mode initials --server "127.0.0.1:$port" --n 3000 --sources 50 \
      --hold 4 >"$tmp/att.out" 2>&1 &
    ;;
  retry-always | retry-auto)
    "$attacker" --mode retry --server "127.0.0.1:$port" --n 2000 --hold 4 \
      >"$tmp/att.out" 2>&1 &
    ;;
  idle)
    timeout 12 "$client" -k --quiet --alpn hq-interop --initial-rtt 1 --connections 2000 \
      --concurrency 60 --hold 3 --keep-alive 1000 "https://127.0.0.1:$port/small.bin" \
      >"$tmp/att.out" 2>&1 &
    dur=8
    ;;
  hq-lines)
    "$attacker" --mode hq-lines --server "127.0.0.1:$port" --n 20 --hold 3 \
      >"$tmp/att.out" 2>&1 &
    dur=4
    ;;
  h3-half)
    "$attacker" --mode h3-half --server "127.0.0.1:$port" --n 10 --hold 3 \
      >"$tmp/att.out" 2>&1 &
    dur=4
    ;;
  esac
  watch "$dur"
  jobs -p | grep -v "^$spid\$" | xargs -r kill 2>/dev/null
  kill "$spid" 2>/dev/null
  wait 2>/dev/null
  spid=
  printf '%d->%d MiB (+%d), pool %d MB, hs %d, conns %d' $((r0 / 1024)) $((peak_rss / 1024)) \
    $(((peak_rss - r0) / 1024)) $((pool_peak / 1000000)) "$hs_peak" "$conn_peak"
}

attacks=(zero-credit initials retry-always retry-auto idle hq-lines h3-half)
declare -A cell
for b in "${builds[@]}"; do
  for a in "${attacks[@]}"; do
    cell[$b,$a]=$(attack "$b" "$a")
  done
done

echo "uvquic-server under attack (loopback; RSS start->peak MiB (+growth), peaks of pool"
echo "outstanding, handshakes in flight and connections from --metrics-file)"
printf '%-13s' attack
for b in "${builds[@]}"; do printf ' | %-52s' "$b"; done
echo
for a in "${attacks[@]}"; do
  printf '%-13s' "$a"
  for b in "${builds[@]}"; do printf ' | %-52s' "${cell[$b,$a]}"; done
  echo
done
