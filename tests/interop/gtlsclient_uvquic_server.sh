#!/usr/bin/env bash
# Interop: ngtcp2's gtlsclient (HTTP/3) downloading from uvquic-server.
#  - a 100 MiB file, byte-identical (sha256), and the server's access log
#    line for it;
#  - several requests on one connection: files, a missing one (404, the
#    body gtlsclient saves is our error text) and the access log's statuses;
#  - HEAD (gtlsclient -m HEAD): 200 and no body bytes in the log;
#  - uvquic-server --retry: the download completes and the server counted
#    the Retry it sent;
#  - gtlsclient offering TLS_CHACHA20_POLY1305_SHA256 only (a 4 MiB file:
#    enough to show the suite works). gtlsclient's
#    --ciphers takes a GnuTLS priority string, not a suite name
#    ("--ciphers=TLS_CHACHA20_POLY1305_SHA256" fails with "The request is
#    invalid"); with only CHACHA20-POLY1305 enabled a completed handshake
#    means that suite was negotiated.
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$www/big.bin"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$www/chacha.bin"
head -c 1000 /dev/urandom >"$www/small.bin"
: >"$www/empty.bin"
for i in 1 2 3; do
  head -c $((i * 70000)) /dev/urandom >"$www/m$i.bin"
done

# ---- 100 MiB -------------------------------------------------------------
start_server plain --root "$www"
mkdir -p "$tmp/dl-big"
if gtls_get "$tmp/dl-big" "$UPORT" /big.bin 2>"$tmp/big.err"; then
  if [ "$(sha "$tmp/dl-big/big.bin")" = "$(sha "$www/big.bin")" ]; then
    pass "100 MiB to gtlsclient, sha256 equal"
  else
    fail "100 MiB to gtlsclient: sha256 differs"
  fi
else
  fail "100 MiB to gtlsclient: gtlsclient failed: $(tail -n3 "$tmp/big.err")"
fi
rm -rf "$tmp/dl-big"

# ---- several requests on one connection, with a 404 ------------------------------
mkdir -p "$tmp/dl-many"
GTLS_OPTS= gtls_get "$tmp/dl-many" "$UPORT" /m1.bin /m2.bin /m3.bin /empty.bin \
  /small.bin /missing.bin 2>"$tmp/many.err" || true
bad=0
for f in m1 m2 m3 empty small; do
  cmp -s "$www/$f.bin" "$tmp/dl-many/$f.bin" || bad=$((bad + 1))
done
if [ "$bad" -eq 0 ] && [ "$(cat "$tmp/dl-many/missing.bin" 2>/dev/null)" = "not found" ]; then
  pass "5 files and a 404 on one connection, byte-identical"
else
  fail "5 files and a 404: $bad differ; missing.bin: $(cat "$tmp/dl-many/missing.bin" 2>&1)"
fi

# ---- HEAD ----------------------------------------------------------------------
mkdir -p "$tmp/dl-head"
GTLS_OPTS=-mHEAD gtls_get "$tmp/dl-head" "$UPORT" /m2.bin 2>"$tmp/head.err" || true
stop_server plain
log=$tmp/plain.out
check_log() {
  local what=$1 re=$2
  if grep -Eq "$re" "$log"; then
    pass "access log: $what: $(grep -E "$re" "$log" | head -n1)"
  else
    fail "access log: no line for $what (/$re/) in: $(cat "$log")"
  fi
}
# BYTES is what the client acknowledged. gtlsclient closes the connection
# as soon as it has the last response, often before acknowledging our last
# packets: the server cannot tell that from a cut-short download, and logs
# it "aborted: connection closed" with the bytes acknowledged (fewer).
closed='( aborted: connection closed)?'
check_log "100 MiB GET" "^127\.0\.0\.1:[0-9]+ h3 GET /big\.bin 200 (104857600 [0-9.]+s|[0-9]+ [0-9.]+s aborted: connection closed)$"
big_acked=$(grep -E ' h3 GET /big\.bin 200 ' "$log" | head -n1 | cut -d' ' -f6)
[ "${big_acked:-0}" -gt 0 ] && [ "${big_acked:-0}" -le 104857600 ] &&
  pass "access log: 100 MiB GET: $big_acked bytes acknowledged" ||
  fail "access log: 100 MiB GET: ${big_acked:-no} bytes acknowledged"
check_log "404" "^127\.0\.0\.1:[0-9]+ h3 GET /missing\.bin 404 [0-9]+ [0-9.]+s$closed$"
check_log "empty file" "^127\.0\.0\.1:[0-9]+ h3 GET /empty\.bin 200 0 [0-9.]+s$closed$"
check_log "HEAD" "^127\.0\.0\.1:[0-9]+ h3 HEAD /m2\.bin 200 0 [0-9.]+s$closed$"
# One connection for the six requests: one peer address on their lines.
peers=$(grep -E ' h3 GET /(m[123]|empty|small|missing)\.bin ' "$log" | cut -d' ' -f1 | sort -u | wc -l)
[ "$peers" -eq 1 ] && pass "the six requests came from one client address" ||
  fail "the six requests came from $peers client addresses"
if [ ! -s "$tmp/dl-head/m2.bin" ]; then
  pass "HEAD: no body"
else
  fail "HEAD: gtlsclient received $(stat -c %s "$tmp/dl-head/m2.bin") body bytes"
fi

# ---- our server with --retry -----------------------------------------------------
start_server retry --root "$www" --retry
mkdir -p "$tmp/dl-retry"
if gtls_get "$tmp/dl-retry" "$UPORT" /m3.bin 2>"$tmp/retry.err" &&
  cmp -s "$www/m3.bin" "$tmp/dl-retry/m3.bin"; then
  stop_server retry
  retries=$(sed -n 's/^stats: .* retries=\([0-9]*\) .*/\1/p' "$tmp/retry.out")
  if [ -n "$retries" ] && [ "$retries" -ge 1 ]; then
    pass "uvquic-server --retry: gtlsclient followed $retries Retry"
  else
    fail "uvquic-server --retry: no Retry counted: $(grep '^stats:' "$tmp/retry.out")"
  fi
else
  fail "uvquic-server --retry: gtlsclient failed: $(tail -n3 "$tmp/retry.err")"
  stop_server retry
fi

# ---- ChaCha20-Poly1305 -------------------------------------------------------------
start_server chacha --root "$www"
mkdir -p "$tmp/dl-chacha"
chacha=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305
if GTLS_OPTS=--ciphers=$chacha gtls_get "$tmp/dl-chacha" \
  "$UPORT" /chacha.bin 2>"$tmp/chacha.err" &&
  [ "$(sha "$tmp/dl-chacha/chacha.bin")" = "$(sha "$www/chacha.bin")" ]; then
  pass "TLS_CHACHA20_POLY1305_SHA256: 4 MiB byte-identical"
else
  fail "TLS_CHACHA20_POLY1305_SHA256: $(tail -n3 "$tmp/chacha.err")"
fi
stop_server chacha

interop_done
