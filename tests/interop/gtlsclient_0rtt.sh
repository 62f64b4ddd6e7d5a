#!/usr/bin/env bash
# Interop: gtlsclient --session-file/--tp-file twice against uvquic-server:
# the second connection sends its request as 0-RTT; our server must accept
# it (no "Early data was rejected") and answer it (the body identical).
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www"
head -c 1000 /dev/urandom >"$www/small.bin"
start_server feat --root "$www"

# ---- gtlsclient 0-RTT ----------------------------------------------------
mkdir -p "$tmp/z"
for run in 1 2; do
  timeout 60 "$GTLSCLIENT" --initial-rtt=1ms --exit-on-all-streams-close \
    --session-file="$tmp/gs.sess" --tp-file="$tmp/gs.tp" --download="$tmp/z" \
    127.0.0.1 "$UPORT" "https://127.0.0.1:$UPORT/small.bin" \
    >"$tmp/z$run.out" 2>&1 || fail "gtlsclient 0-RTT run $run failed: $(tail -n3 "$tmp/z$run.out")"
done
if grep -q "0RTT STREAM" "$tmp/z2.out" && ! grep -q "Early data was rejected" "$tmp/z2.out" &&
  [ "$(sha "$tmp/z/small.bin")" = "$(sha "$www/small.bin")" ]; then
  pass "gtlsclient resumed with 0-RTT, our server accepted it"
else
  fail "gtlsclient 0-RTT: $(grep -c 0RTT "$tmp/z2.out") 0RTT lines; $(grep -m1 'Early data' "$tmp/z2.out" || echo 'no rejection line')"
fi

stop_server feat
interop_done
