#!/usr/bin/env bash
# uvquic-client --retry on a path that dies: a 100 MiB h3 download from
# uvquic-server (--initial-rtt 1, so validating a new path gives up within
# milliseconds) through tests/tools/uvq_impair, which moves the client to a
# new source port once a third of the file has passed (--rebind-after-bytes)
# and then drops every server->client datagram for a while
# (--blackout-after-rebind). The server cannot validate the new path and
# drops the connection (its path watchdog; the client then hears a
# stateless reset), or the client hears nothing at all for its stall
# timeout; either way the first connection is lost mid-transfer.
#   - control: --retry 0 fails (exit 56, connection lost mid-transfer, a
#     transient error named) well
#     inside the idle timeout: the impairment really breaks the download;
#   - --retry 3 (1 s blackout): the download completes byte-identical
#     (sha256) on a new connection, well inside the idle timeout, and the
#     summary says "retries: K (REASON K)" with 1 <= K <= 3;
#   - --retry 3 (6.5 s blackout): the stateless reset is lost too, so the
#     client's own stall timeout (5 s, the tool's default, with 1 s
#     keep-alive PINGs) must end the first connection: "retries: 1
#     (stalled 1)", then the download completes byte-identical.
# uvquic-server does not send accept-ranges yet, so each retry starts the
# file over (the output is truncated). Times are printed; each case also
# asserts its bound (half the 30 s idle timeout; the stall case 20 s).
#
# Environment: UVQ_RETRY_MIB (file size, default 100: ~1 s per clean
# transfer on loopback; 32 under the sanitizers, UVQ_SANITIZED=1, which
# make each transfer several times slower). ctest runs it alone
# (RUN_SERIAL): its bounds are wall-clock.
set -euo pipefail
. "$(dirname "$0")/interop/lib/interop.bash"
interop_init

RELAY=$B/tests/uvq_impair
[ -x "$RELAY" ] || die "missing $RELAY (build first)"

if [ "${UVQ_SANITIZED:-0}" = 1 ]; then
  mib=${UVQ_RETRY_MIB:-32}
else
  mib=${UVQ_RETRY_MIB:-100}
fi
size=$((mib * 1024 * 1024))
idle=30

www=$tmp/www
mkdir -p "$www"
head -c "$size" /dev/urandom >"$www/file.bin"
want=$(sha "$www/file.bin")

start_server srv --root "$www" --initial-rtt 1

ms_now() { echo $(($(date +%s%N) / 1000000)); }

# run NAME RETRY BLACKOUT_MS: one download through a fresh relay (the
# blackout follows its first rebinding only); sets RC and SECS.
run() {
  local name=$1 retry=$2 blackout=$3 t0 t1
  start_impair_relay "$name" --rebind-after-bytes $((size / 3)) \
    --blackout-after-rebind "$blackout"
  mkdir -p "$tmp/$name.dl"
  RC=0
  t0=$(ms_now)
  # Default --stream-keep-alive 1000 and --stall-timeout 5.
  timeout 120 "$CLIENT" --ca "$tmp/cert.pem" --idle-timeout "$idle" \
    --retry "$retry" -o "$tmp/$name.dl/file.bin" \
    "https://127.0.0.1:$IPORT/file.bin" 2>"$tmp/$name.cerr" || RC=$?
  t1=$(ms_now)
  stop_impair_relay "$name"
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
  echo "--- $name (exit $RC, $SECS s):"
  cat "$tmp/$name.cerr"
  local n=$(stat_of "$name" rebinds) dropped=$(stat_of "$name" blackout_dropped)
  if [ "${n:-0}" -ne 1 ] || [ "${dropped:-0}" -le 0 ]; then
    fail "$name: expected one rebinding and a blackout: rebinds=$n blackout_dropped=$dropped"
  fi
}

# within NAME LIMIT: SECS < LIMIT.
within() {
  awk -v s="$SECS" -v l="$2" 'BEGIN { exit !(s < l) }' ||
    fail "$1: took $SECS s, not under $2 s (idle timeout $idle s)"
}

# identical NAME: the download matches the file.
identical() {
  local f=$tmp/$1.dl/file.bin
  if [ -f "$f" ] && [ "$(sha "$f")" = "$want" ]; then
    pass "$1: $mib MiB byte-identical in $SECS s"
  else
    fail "$1: download differs ($(stat -c %s "$f" 2>/dev/null || echo no) bytes of $size)"
  fi
}

transient='stateless reset received|nothing received for the stall timeout|no viable path|peer closed with a transport error'

# Control: without --retry the dead path fails the download, quickly.
run control 0 1000
if [ "$RC" -eq 56 ] && grep -Eq "file.bin: ($transient)" "$tmp/control.cerr" &&
  ! grep -q 'retries:' "$tmp/control.cerr"; then
  pass "control: --retry 0 fails with a transient error in $SECS s"
else
  fail "control: expected exit 56 with a transient error, got exit $RC"
fi
within control $((idle / 2))

# --retry 3 through a 1 s blackout.
run retry 3 1000
summary=$(grep '^downloaded ' "$tmp/retry.cerr" || true)
k=$(sed -n 's/.*, retries: \([0-9][0-9]*\).*/\1/p' <<<"$summary")
if [ "$RC" -eq 0 ] && [ -n "$k" ] && [ "$k" -ge 1 ] && [ "$k" -le 3 ] &&
  grep -Eq "retries: $k \(((stateless-reset|no-viable-path|path-stalled|stalled) [0-9]+(, )?)+\)$" <<<"$summary"; then
  pass "retry: exit 0, summary: retries${summary#*, retries}"
else
  fail "retry: expected exit 0 and 1..3 transient retries, got exit $RC: $summary"
fi
identical retry
within retry $((idle / 2))

# --retry 3 through a 6.5 s blackout: only the client's stall timeout ends
# the first connection.
run stall 3 6500
summary=$(grep '^downloaded ' "$tmp/stall.cerr" || true)
if [ "$RC" -eq 0 ] && grep -q ', retries: 1 (stalled 1)$' <<<"$summary" &&
  grep -q 'nothing received for the stall timeout' "$tmp/stall.cerr"; then
  pass "stall: the stall timeout ended the first connection; retried once"
else
  fail "stall: expected exit 0 and \"retries: 1 (stalled 1)\", got exit $RC: $summary"
fi
identical stall
within stall 20

stop_server srv
# Every retry is a new GET on the server: the broken ones aborted, the
# last of each case complete. The client resumes with a Range request,
# which the server honours: that last one is a 206 of the rest (a whole
# 200 where the first connection delivered nothing).
grep -E '^127\.0\.0\.1:' "$tmp/srv.out" || true
complete=$(grep -Ec " GET /file.bin (200 $size|206 [0-9]+) [0-9.]*s$" "$tmp/srv.out" || true)
[ "$complete" -eq 2 ] ||
  fail "server: expected 2 complete GETs (retry, stall), saw $complete"
interop_done
