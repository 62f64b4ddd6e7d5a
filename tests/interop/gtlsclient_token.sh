#!/usr/bin/env bash
# Interop: gtlsclient --token-file=F twice against uvquic-server --retry
# (plain --retry: a Retry for every connection that brings no valid token),
# through the relay, which sees the tokens of the client's Initials:
#  - run 1 follows a Retry (its packet log shows it, the relay counts it),
#    receives our NEW_TOKEN (its log shows the frame) and writes that token
#    to F (F as run 1 left it);
#  - run 2 reads F, its Initial carries that very token (the relay), and it
#    gets no Retry (neither its log nor the relay shows one); the server's
#    stats line counts 2 connections and only run 1's Retries (more than
#    one when run 1's first Initial is retransmitted before the Retry
#    arrives, as happens on a busy machine: one Retry per Initial);
#  - both downloads are byte-identical.
# gtlsclient runs without -q for its packet log. (ngtcp2 0.12.1's gtlsclient
# wrote F but could not read it back; 1.11's can.)
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www"
head -c 100000 /dev/urandom >"$www/small.bin"

start_server retry --root "$www" --retry
tokens=$tmp/token.pem
for run in 1 2; do
  mkdir -p "$tmp/dl$run"
  start_relay "relay$run" "$UPORT"
  if timeout 60 "$GTLSCLIENT" --initial-rtt=1ms --exit-on-all-streams-close \
    --token-file="$tokens" --download="$tmp/dl$run" \
    127.0.0.1 "$RPORT" "https://127.0.0.1:$RPORT/small.bin" >"$tmp/run$run.log" 2>&1 &&
    [ "$(sha "$tmp/dl$run/small.bin")" = "$(sha "$www/small.bin")" ]; then
    pass "run $run: 100 kB byte-identical"
  else
    fail "run $run: gtlsclient failed or the body differs: $(grep -v '^I[0-9]' "$tmp/run$run.log" | tail -n3)"
  fi
  # Run 2 overwrites F with the NEW_TOKEN it gets in turn.
  cp "$tokens" "$tmp/token$run.pem" 2>/dev/null || true
done
stop_server retry

# log_retries N: Retry packets gtlsclient received in run N.
log_retries() { grep -c 'pkt rx .* type=Retry ' "$tmp/run$1.log" || true; }
# The token of the NEW_TOKEN frame run 1 received (hex, as ngtcp2 logs it).
new_token=$(sed -n 's/.* frm rx .* NEW_TOKEN(0x07) token=0x\([0-9a-f]*\) .*/\1/p' "$tmp/run1.log" | tail -n1)
# F holds the token base64-encoded between PEM-style lines.
file_token=$(sed '1d;$d' "$tmp/token1.pem" 2>/dev/null | base64 -d 2>/dev/null | od -An -v -tx1 | tr -d ' \n' || true)

r1=$(log_retries 1)
w1=$(relay_count relay1 retries)
if [ "$r1" -ge 1 ] && [ "$w1" -ge 1 ]; then
  pass "run 1 (no token yet) followed a Retry (log: $r1, relay: $w1)"
else
  fail "run 1: no Retry (log: $r1, relay: $w1): is the server in --retry mode?"
fi
if [ -n "$new_token" ] && [ "$file_token" = "$new_token" ]; then
  pass "run 1 received NEW_TOKEN (${#new_token} hex digits) and wrote it to the token file"
else
  fail "run 1: NEW_TOKEN in the log: '${new_token:-none}', in the token file: '${file_token:-none}'"
fi

r2=$(log_retries 2)
w2=$(relay_count relay2 retries)
sent=$(relay_count relay2 last_token)
if grep -q 'Could not read token' "$tmp/run2.log"; then
  fail "run 2: $(grep -m1 'Could not read token' "$tmp/run2.log")"
fi
if [ -n "$new_token" ] && [ "$sent" = "$new_token" ]; then
  pass "run 2's Initial carried the NEW_TOKEN of run 1"
else
  fail "run 2's Initials carried token '${sent:-none}', not run 1's NEW_TOKEN '${new_token:-none}'"
fi
if [ "$r2" -eq 0 ] && [ "$w2" -eq 0 ]; then
  pass "run 2 (with the token) needed no Retry"
else
  fail "run 2 got a Retry although it had a token (log: $r2, relay: $w2)"
fi
stats=$(grep '^stats:' "$tmp/retry.out" || true)
if [[ "$stats" =~ \ connections=2\  ]] && [[ "$stats" =~ \ retries=$w1\  ]]; then
  pass "uvquic-server: 2 connections, $w1 Retry, all to run 1"
else
  fail "uvquic-server's counters: want connections=2 retries=$w1 (run 1's): ${stats:-no stats line}"
fi

interop_done
