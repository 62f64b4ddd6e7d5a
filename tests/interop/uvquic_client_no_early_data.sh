#!/usr/bin/env bash
# Interop: session tickets that grant no early data (issue 19). A server
# that does not allow 0-RTT issues tickets without the early_data
# extension, and a client must then not offer early data (RFC 8446
# §4.2.10; quic-go's server answers such an offer with alert 110).
# gtlsserver 1.11 has no switch for it (it always grants early data), so
# the server here is uvquic-server --no-early-data, a GnuTLS server whose
# sessions lack GNUTLS_ENABLE_EARLY_DATA:
#  - uvquic-client --session-file twice: the second connection resumes
#    without attempting 0-RTT (--stats-json early_data_attempted false, the
#    -v line says why), and the body is identical;
#  - gtlsclient --session-file twice: GnuTLS's client offers early data on
#    any ticket; our server refuses it, and the connection still completes
#    ("Early data was rejected", the body identical).
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www"
head -c 5000 /dev/urandom >"$www/small.bin"

start_server noearly --root "$www" --no-early-data

# ---- uvquic-client ---------------------------------------------------------
for run in 1 2; do
  timeout 30 "$CLIENT" --quiet --ca "$tmp/cert.pem" --initial-rtt 1 -v \
    --session-file "$tmp/sessions" --stats-json "$tmp/s$run.json" \
    -o "$tmp/s$run.bin" "https://127.0.0.1:$UPORT/small.bin" 2>"$tmp/s$run.err" ||
    fail "uvquic-client run $run failed: $(tail -n3 "$tmp/s$run.err")"
done
res=$(jget "$tmp/s2.json" '(d["resumed"], d["early_data_attempted"], d["early_data_accepted"], d["close"]["error"])' 2>/dev/null || echo error)
if [ "$res" = "(true, false, false, 'none')" ] &&
  grep -q "without 0-RTT (its ticket does not allow it)" "$tmp/s2.err" &&
  [ "$(sha "$tmp/s2.bin")" = "$(sha "$www/small.bin")" ]; then
  pass "uvquic-client resumed without 0-RTT on a ticket that grants none"
else
  fail "uvquic-client: resumed/attempted/accepted/error=$res: $(grep -m1 'resuming' "$tmp/s2.err" || tail -n3 "$tmp/s2.err")"
fi

# ---- gtlsclient ------------------------------------------------------------
mkdir -p "$tmp/g"
for run in 1 2; do
  rm -f "$tmp/g/small.bin"
  timeout 60 "$GTLSCLIENT" --initial-rtt=1ms --exit-on-all-streams-close \
    --session-file="$tmp/gs.sess" --tp-file="$tmp/gs.tp" --download="$tmp/g" \
    127.0.0.1 "$UPORT" "https://127.0.0.1:$UPORT/small.bin" \
    >"$tmp/g$run.out" 2>&1 || fail "gtlsclient run $run failed: $(tail -n3 "$tmp/g$run.out")"
done
if grep -q "Early data was rejected" "$tmp/g2.out" &&
  [ "$(sha "$tmp/g/small.bin")" = "$(sha "$www/small.bin")" ]; then
  pass "gtlsclient offered 0-RTT anyway; our server refused it and the download completed"
else
  fail "gtlsclient: $(grep -m1 'Early data' "$tmp/g2.out" || echo 'no rejection line'); $(tail -n2 "$tmp/g2.out")"
fi

stop_server noearly
interop_done
