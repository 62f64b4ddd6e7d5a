#!/usr/bin/env bash
# Interop: uvquic-client (HTTP/3) downloading from ngtcp2's gtlsserver.
#  - a 100 MiB file, byte-identical (sha256);
#  - 100 sequential 1 KiB GETs: one URL with --connections 100, i.e. 100
#    connections one after another, one GET each (a relay in front of the
#    server counts the 100 connections on the wire);
#  - 20 concurrent GETs of different files on one connection (the relay
#    counts one connection);
#  - gtlsserver -V (address validation: a Retry for every new connection):
#    the relay sees the Retry and our next Initial carrying its token, and
#    the download completes.
# The client verifies the server's certificate (--ca) throughout.
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www" "$tmp/dl" "$tmp/many"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$www/big.bin"
head -c 1024 /dev/urandom >"$www/1k.bin"
for i in $(seq 1 20); do
  head -c $((i * 3001)) /dev/urandom >"$www/f$i.bin"
done

# ---- 100 MiB ----------------------------------------------------------------
start_gtlsserver gtls -d "$www"
if timeout 120 "$CLIENT" --ca "$tmp/cert.pem" -o "$tmp/dl/big.bin" \
  "https://127.0.0.1:$GPORT/big.bin" 2>"$tmp/big.err"; then
  if [ "$(sha "$tmp/dl/big.bin")" = "$(sha "$www/big.bin")" ]; then
    pass "100 MiB from gtlsserver, sha256 equal: $(tail -n1 "$tmp/big.err")"
  else
    fail "100 MiB from gtlsserver: sha256 differs"
  fi
else
  fail "100 MiB from gtlsserver: client failed: $(cat "$tmp/big.err")"
fi
rm -f "$tmp/dl/big.bin"

# ---- through a relay: 100 sequential GETs, 20 concurrent ---------------------
start_relay seq "$GPORT"
if timeout 120 "$CLIENT" --ca "$tmp/cert.pem" --connections 100 -o "$tmp/dl/1k.bin" \
  "https://127.0.0.1:$RPORT/1k.bin" 2>"$tmp/seq.err" &&
  grep -q '^downloaded 100 files, 102400 bytes' "$tmp/seq.err" &&
  cmp -s "$tmp/dl/1k.bin" "$www/1k.bin"; then
  conns=$(relay_count seq connections)
  if [ "$conns" -eq 100 ]; then
    pass "100 sequential 1 KiB GETs on 100 connections: $(tail -n1 "$tmp/seq.err")"
  else
    fail "100 sequential GETs: the relay saw $conns connections, not 100"
  fi
else
  fail "100 sequential GETs: $(tail -n3 "$tmp/seq.err")"
fi

start_relay conc "$GPORT"
urls=()
for i in $(seq 1 20); do
  urls+=("https://127.0.0.1:$RPORT/f$i.bin")
done
if timeout 60 "$CLIENT" --ca "$tmp/cert.pem" --output-dir "$tmp/many" "${urls[@]}" \
  2>"$tmp/conc.err" && grep -q '^downloaded 20 files' "$tmp/conc.err"; then
  bad=0
  for i in $(seq 1 20); do
    cmp -s "$www/f$i.bin" "$tmp/many/f$i.bin" || bad=$((bad + 1))
  done
  conns=$(relay_count conc connections)
  if [ "$bad" -eq 0 ] && [ "$conns" -eq 1 ]; then
    pass "20 concurrent GETs on one connection, all byte-identical"
  else
    fail "20 concurrent GETs: $bad files differ, $conns connections seen"
  fi
else
  fail "20 concurrent GETs: $(tail -n3 "$tmp/conc.err")"
fi
kill -TERM "$GPID"

# ---- Retry (gtlsserver -V) --------------------------------------------------
start_gtlsserver gtls-retry -V -d "$www"
start_relay retry "$GPORT"
if timeout 60 "$CLIENT" --ca "$tmp/cert.pem" -o "$tmp/dl/f20.bin" \
  "https://127.0.0.1:$RPORT/f20.bin" 2>"$tmp/retry.err" &&
  cmp -s "$tmp/dl/f20.bin" "$www/f20.bin"; then
  retries=$(relay_count retry retries)
  tokens=$(relay_count retry initials_with_token)
  if [ "$retries" -ge 1 ] && [ "$tokens" -ge 1 ]; then
    pass "gtlsserver -V: Retry followed ($retries Retry, $tokens Initials with its token)"
  else
    fail "gtlsserver -V: download worked but the relay saw retries=$retries tokens=$tokens"
  fi
else
  fail "gtlsserver -V: client failed: $(cat "$tmp/retry.err")"
fi

interop_done
