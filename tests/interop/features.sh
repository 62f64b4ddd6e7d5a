#!/usr/bin/env bash
# Interop: connection features through the tools.
#  - gtlsclient --change-local-addr=100ms (migration with path validation)
#    during a 50 MiB download, --key-update=100ms during 100 MiB: identical;
#  - uvquic-client --migrate-after 20 --nat-rebinding during 50 MiB from
#    uvquic-server: identical (gtlsclient's --nat-rebinding:
#    gtlsclient_nat_rebinding.sh). 20 ms: with ngtcp2 1.11 the 50 MiB take
#    only ~90-120 ms, so a rebinding due at 100 ms often came too late;
#  - uvquic-client --token-file twice against uvquic-server --retry: the
#    first connection went through a Retry, the second did not (--stats-json;
#    gtlsclient's --token-file: gtlsclient_token.sh);
#  - uvquic-client --session-file twice against gtlsserver: the second
#    resumes and its early data is accepted (--stats-json).
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$www/huge.bin"
head -c $((50 * 1024 * 1024)) "$www/huge.bin" >"$www/big.bin"
head -c 1000 /dev/urandom >"$www/small.bin"

start_server feat --root "$www"

# ---- gtlsclient migration and key update ----------------------------------
mkdir -p "$tmp/m" "$tmp/k"
if GTLS_OPTS=--change-local-addr=100ms gtls_get "$tmp/m" "$UPORT" /big.bin 2>"$tmp/m.err" &&
  [ "$(sha "$tmp/m/big.bin")" = "$(sha "$www/big.bin")" ]; then
  pass "gtlsclient --change-local-addr=100ms during 50 MiB: identical"
else
  fail "gtlsclient --change-local-addr: $(tail -n3 "$tmp/m.err")"
fi
if GTLS_OPTS=--key-update=100ms gtls_get "$tmp/k" "$UPORT" /huge.bin 2>"$tmp/k.err" &&
  [ "$(sha "$tmp/k/huge.bin")" = "$(sha "$www/huge.bin")" ]; then
  pass "gtlsclient --key-update=100ms during 100 MiB: identical"
else
  fail "gtlsclient --key-update: $(tail -n3 "$tmp/k.err")"
fi

# ---- uvquic-client NAT rebinding -------------------------------------------
if timeout 60 "$CLIENT" --quiet --ca "$tmp/cert.pem" --initial-rtt 1 -v \
  --migrate-after 20 --nat-rebinding --stats-json "$tmp/nat.json" \
  -o "$tmp/nat.bin" "https://127.0.0.1:$UPORT/big.bin" 2>"$tmp/nat.err" &&
  [ "$(sha "$tmp/nat.bin")" = "$(sha "$www/big.bin")" ] &&
  [ "$(jget "$tmp/nat.json" 'd["migrated"]')" = true ]; then
  pass "uvquic-client NAT rebinding during 50 MiB: identical ($(grep -m1 -o 'rebound to [^ ]*' "$tmp/nat.err"))"
else
  fail "uvquic-client NAT rebinding: $(tail -n3 "$tmp/nat.err")"
fi
stop_server feat

# ---- NEW_TOKEN saves the Retry ---------------------------------------------
start_server retry --root "$www" --retry
for run in 1 2; do
  timeout 30 "$CLIENT" --quiet --ca "$tmp/cert.pem" --initial-rtt 1 \
    --token-file "$tmp/tokens" --stats-json "$tmp/t$run.json" \
    "https://127.0.0.1:$UPORT/small.bin" 2>"$tmp/t$run.err" ||
    fail "token run $run failed: $(tail -n3 "$tmp/t$run.err")"
done
r1=$(jget "$tmp/t1.json" 'd["retry"]' 2>/dev/null || echo error)
r2=$(jget "$tmp/t2.json" 'd["retry"]' 2>/dev/null || echo error)
if [ "$r1" = true ] && [ "$r2" = false ]; then
  pass "--token-file: first connection had a Retry, the second none"
else
  fail "--token-file: retry first=$r1 second=$r2"
fi
stop_server retry

# ---- uvquic-client resumption + 0-RTT against gtlsserver -------------------
GTLS_VERBOSE=1 start_gtlsserver gs -d "$www"
for run in 1 2; do
  timeout 30 "$CLIENT" --quiet --ca "$tmp/cert.pem" --initial-rtt 1 -v \
    --session-file "$tmp/sessions" --stats-json "$tmp/s$run.json" \
    "https://127.0.0.1:$GPORT/small.bin" 2>"$tmp/s$run.err" ||
    fail "session run $run failed: $(tail -n3 "$tmp/s$run.err")"
done
res=$(jget "$tmp/s2.json" '(d["resumed"], d["early_data_attempted"], d["early_data_accepted"])' 2>/dev/null || echo error)
# The server's own log must show the request arriving as 0-RTT STREAM data.
early_frames=$(cat "$tmp/gs.out" "$tmp/gs.err" | grep -c "0RTT.*STREAM" || true)
if [ "$res" = "(true, true, true)" ] && grep -q "early data accepted" "$tmp/s2.err" &&
  [ "$early_frames" -gt 0 ]; then
  pass "uvquic-client resumed against gtlsserver, request sent as 0-RTT ($early_frames 0-RTT STREAM frames)"
else
  fail "uvquic-client resumption: resumed/attempted/accepted=$res, 0-RTT STREAM frames=$early_frames: $(tail -n3 "$tmp/s2.err")"
fi

interop_done
