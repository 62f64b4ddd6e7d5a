#!/usr/bin/env bash
# uvquic-client as a person uses it (issue 15): its output path (NAME.part
# renamed only when a 2xx response is complete; a failed response never
# creates or truncates the target; -o - for stdout; write errors), the
# messages a person can act on without -v, and one test per exit status:
#   0 ok, 2 usage, 6 cannot resolve, 7 refused, 22 HTTP >= 400 with --fail,
#   23 write error, 28 timeout, 35 TLS handshake failure, 56 connection
#   lost mid-transfer, 60 certificate not trusted, 130 SIGINT, 143 SIGTERM.
# Needs UVQ_BUILD_DIR (set by ctest). Servers listen on port 0.
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

# expect NAME CODE PATTERN CMD...: CMD exits CODE and its stderr matches
# PATTERN (grep -E; empty: anything).
expect() {
  local name=$1 code=$2 pat=$3 rc=0
  shift 3
  "$@" >"$tmp/expect.out" 2>"$tmp/expect.err" </dev/null || rc=$?
  if [ "$rc" -eq "$code" ] && { [ -z "$pat" ] || grep -Eq "$pat" "$tmp/expect.err"; }; then
    pass "$name: exit $rc: $(grep -v '^downloaded' "$tmp/expect.err" | head -n1)"
  else
    fail "$name: exit $rc (want $code), stderr: $(cat "$tmp/expect.err")"
  fi
}

root=$tmp/root
mkdir -p "$root" "$tmp/dir"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$root/big.bin"
echo "hello" >"$root/small.txt"
: >"$root/empty.txt"
start_bare_server main --root "$root" --write-cert "$tmp/cert.pem"
base=https://127.0.0.1:$PORT
SRV=$SERVER_PID

# ---- output files ---------------------------------------------------------
for alpn in h3 hq-interop; do
  rm -f "$tmp/out.bin"
  expect "$alpn -o FILE" 0 '' "$CLIENT" --alpn "$alpn" --ca "$tmp/cert.pem" \
    -o "$tmp/out.bin" "$base/big.bin"
  if [ "$(sha "$tmp/out.bin")" = "$(sha "$root/big.bin")" ] && [ ! -e "$tmp/out.bin.part" ]; then
    pass "$alpn -o FILE: byte-identical, no .part left"
  else
    fail "$alpn -o FILE: differs or .part left: $(ls "$tmp")"
  fi
  "$CLIENT" --alpn "$alpn" -k -q -o - "$base/big.bin" >"$tmp/stdout.bin"
  if [ "$(sha "$tmp/stdout.bin")" = "$(sha "$root/big.bin")" ]; then
    pass "$alpn -o -: the body on standard output"
  else
    fail "$alpn -o -: standard output differs"
  fi
  rm -f "$tmp/empty.out"
  expect "$alpn empty body" 0 '' "$CLIENT" --alpn "$alpn" -k -o "$tmp/empty.out" "$base/empty.txt"
  [ -f "$tmp/empty.out" ] && [ ! -s "$tmp/empty.out" ] &&
    pass "$alpn empty body: an empty file" || fail "$alpn empty body: $(ls -l "$tmp")"
  # A failed response never creates or truncates the target.
  echo "keep me" >"$tmp/keep.txt"
  expect "$alpn 404 without --fail" 0 'HTTP status 404|not found' \
    "$CLIENT" --alpn "$alpn" -k -o "$tmp/keep.txt" "$base/missing"
  expect "$alpn 404 with --fail" 22 'HTTP status 404|not found' \
    "$CLIENT" --alpn "$alpn" -k --fail -o "$tmp/keep.txt" "$base/missing"
  if [ "$(cat "$tmp/keep.txt")" = "keep me" ] && [ ! -e "$tmp/keep.txt.part" ]; then
    pass "$alpn 404: the existing target untouched, no .part"
  else
    fail "$alpn 404: target changed or .part left"
  fi
  expect "$alpn 404 into --output-dir" 22 '' "$CLIENT" --alpn "$alpn" -k -f \
    --output-dir "$tmp/dir" "$base/missing"
  if [ -z "$(ls -A "$tmp/dir")" ]; then
    pass "$alpn 404 into --output-dir: nothing created"
  else
    fail "$alpn 404 into --output-dir: $(ls -A "$tmp/dir")"
  fi
done

# ---- curl's header and request options ----------------------------------------
"$CLIENT" -k -s -I "$base/small.txt" >"$tmp/head.out"
if head -n1 "$tmp/head.out" | grep -q '^HTTP/3 200' && grep -qi '^content-length: 6' "$tmp/head.out" &&
  ! grep -q hello "$tmp/head.out" && grep -q ' h3 HEAD /small.txt 200 ' "$tmp/main.out"; then
  pass "-I: a HEAD request, the header section only"
else
  fail "-I: $(cat "$tmp/head.out")"
fi
"$CLIENT" -k -s -i -o - "$base/small.txt" >"$tmp/incl.out"
if head -n1 "$tmp/incl.out" | grep -q '^HTTP/3 200' && [ "$(tail -n1 "$tmp/incl.out")" = hello ] &&
  ! grep -q '^:status' "$tmp/incl.out"; then
  pass "-i: the header section, then the body"
else
  fail "-i: $(cat "$tmp/incl.out")"
fi
"$CLIENT" -k -s -D "$tmp/dump.txt" -o "$tmp/dumped.txt" "$base/small.txt"
if grep -q '^HTTP/3 200' "$tmp/dump.txt" && [ "$(cat "$tmp/dumped.txt")" = hello ]; then
  pass "-D FILE: the header section in FILE, the body in -o"
else
  fail "-D FILE: $(cat "$tmp/dump.txt")"
fi
printf 'a=1\nb=2\n' >"$tmp/form.txt"
expect "-X POST --data @file, -H" 22 'HTTP status 405' "$CLIENT" -k -f -X POST \
  --data "@$tmp/form.txt" -H 'X-Test: 1' "$base/small.txt"
expect "--data-binary makes a POST" 0 'HTTP status 405' "$CLIENT" -k --data-binary x "$base/small.txt"
if [ "$(grep -c ' h3 POST /small.txt 405 ' "$tmp/main.out")" -eq 2 ]; then
  pass "--data / --data-binary: the server saw two POSTs"
else
  fail "--data: the access log shows no POSTs: $(tail -n3 "$tmp/main.out")"
fi
expect "#fragment not sent" 0 '' "$CLIENT" -k -o "$tmp/frag.txt" "$base/small.txt#part"
grep -q ' h3 GET /small.txt 200 ' "$tmp/main.out" && ! grep -q '#part' "$tmp/main.out" &&
  pass "#fragment: not on the wire" || fail "#fragment: $(tail -n2 "$tmp/main.out")"
expect "-C needs -" 2 'C takes "-"' "$CLIENT" -k -C 5 -o "$tmp/x" "$base/small.txt"
expect "-X over hq" 2 'need HTTP/3' "$CLIENT" -k --alpn hq-interop -X POST "$base/small.txt"
# -C -: the .part's first MiB is kept and the rest asked for with a Range,
# answered 206 with the other 7 MiB.
head -c $((1024 * 1024)) "$root/big.bin" >"$tmp/res.bin.part"
expect "-C -" 0 '' "$CLIENT" -k -C - -o "$tmp/res.bin" "$base/big.bin"
if [ "$(sha "$tmp/res.bin")" = "$(sha "$root/big.bin")" ] && [ ! -e "$tmp/res.bin.part" ] &&
  grep -q " h3 GET /big.bin 206 $((7 * 1024 * 1024)) " "$tmp/main.out"; then
  pass "-C -: 206 for the last 7 MiB, the whole file, no .part left"
else
  fail "-C -: the file differs or no 206: $(tail -n2 "$tmp/main.out")"
fi
"$CLIENT" -V >"$tmp/version.out"
if grep -Eq '^uvquic-client [0-9]' "$tmp/version.out" &&
  grep -Eq '^ngtcp2 [0-9.]+, nghttp3 [0-9.]+, GnuTLS [0-9.]+' "$tmp/version.out"; then
  pass "--version: $(tr '\n' ' ' <"$tmp/version.out")"
else
  fail "--version: $(cat "$tmp/version.out")"
fi

# ---- 23: write errors ------------------------------------------------------
if [ -w /dev/full ]; then
  expect "ENOSPC on stdout" 23 'writing standard output failed: No space left on device' \
    sh -c "'$CLIENT' -k -o - '$base/big.bin' >/dev/full"
fi
{ "$CLIENT" -k -o - "$base/big.bin" 2>"$tmp/epipe.err" && echo 0 >"$tmp/epipe.rc" ||
  echo $? >"$tmp/epipe.rc"; } |
  head -c 1 >/dev/null
rc=$(cat "$tmp/epipe.rc")
if [ "$rc" -eq 23 ] && grep -q 'writing standard output failed: Broken pipe' "$tmp/epipe.err"; then
  pass "EPIPE on stdout: exit 23"
else
  fail "EPIPE on stdout: exit $rc: $(cat "$tmp/epipe.err")"
fi
expect "-o into a missing directory" 23 "writing $tmp/nodir/x failed: No such file or directory" \
  "$CLIENT" -k -o "$tmp/nodir/x" "$base/small.txt"

# ---- the other exit statuses -------------------------------------------------
expect "usage" 2 'unrecognized|unknown|bad' "$CLIENT" --frobnicate "$base/small.txt"
expect "cannot resolve" 6 'cannot resolve "no-such-host.invalid"' \
  "$CLIENT" -k https://no-such-host.invalid/x
dead=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect "refused" 7 "connection refused by 127.0.0.1:$dead" "$CLIENT" -k "https://127.0.0.1:$dead/x"
if python3 -c 'import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))' 2>/dev/null; then
  expect "refused (IPv6)" 7 "connection refused by \[::1\]:$dead" "$CLIENT" -k "https://[::1]:$dead/x"
fi
# 28: a socket that swallows everything.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
time.sleep(30)' >"$tmp/silent.port" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$tmp/silent.port" ] && break; sleep 0.05; done
silent=$(cat "$tmp/silent.port")
expect "handshake timeout" 28 "no response from 127.0.0.1:$silent within 1 s" \
  "$CLIENT" -k --connect-timeout 1 "https://127.0.0.1:$silent/x"
expect "HTTP 404 with -f" 22 'HTTP status 404' "$CLIENT" -k -f "$base/missing"
expect "certificate not trusted" 60 \
  'certificate of 127.0.0.1 is not trusted: .*--ca FILE.*--write-cert FILE.*-k' \
  "$CLIENT" "$base/small.txt"
expect "certificate with --ca" 0 '' "$CLIENT" --ca "$tmp/cert.pem" "$base/small.txt"
# 35: gtlsserver speaks h3 only: hq-interop ends in a TLS alert.
if [ -x /usr/sbin/gtlsserver ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/gkey.pem" -out "$tmp/gcert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
  gport=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  /usr/sbin/gtlsserver -q -d "$root" 127.0.0.1 "$gport" "$tmp/gkey.pem" "$tmp/gcert.pem" \
    >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.3
  expect "TLS handshake failure" 35 'TLS handshake with 127.0.0.1:[0-9]+ failed: .*alert' \
    "$CLIENT" -k --alpn hq-interop "https://127.0.0.1:$gport/small.txt"
else
  echo "skip: exit 35 (no /usr/sbin/gtlsserver)"
fi
# ---- --limit-rate: credit withheld, not received data slept on -------------
# 8 MiB at 4 MiB/s takes about 2 s; only a lower bound is checked (a busy
# machine can only make it slower).
t0=$(date +%s%N)
expect "--limit-rate 4M" 0 '' "$CLIENT" -k --limit-rate 4M -o "$tmp/rate.bin" "$base/big.bin"
ms=$((($(date +%s%N) - t0) / 1000000))
if [ "$ms" -ge 1500 ] && [ "$(sha "$tmp/rate.bin")" = "$(sha "$root/big.bin")" ]; then
  pass "--limit-rate 4M: 8 MiB byte-identical in $ms ms"
else
  fail "--limit-rate 4M: 8 MiB in $ms ms (want >= 1500), or the file differs"
fi
expect "bad --limit-rate" 2 'bad --limit-rate' "$CLIENT" -k --limit-rate 5x "$base/big.bin"

# ---- 130 / 143: SIGINT and SIGTERM mid-transfer ------------------------------
# Started in the background of this script, the client inherits SIGINT
# ignored: its handlers are installed anyway. It closes the connection
# (the server logs the request aborted at once, not after its 30 s idle
# timeout), keeps the .part, prints the summary and exits 128 + signal.
for sig in INT TERM; do
  want=130
  [ "$sig" = TERM ] && want=143
  rm -f "$tmp/sig.bin" "$tmp/sig.bin.part"
  before=$(grep -c 'aborted: connection closed' "$tmp/main.out" || true)
  "$CLIENT" -k --limit-rate 1M -o "$tmp/sig.bin" "$base/big.bin" 2>"$tmp/sig.err" &
  cpid=$!
  pids+=("$cpid")
  for _ in $(seq 1 200); do
    [ "$(stat -c %s "$tmp/sig.bin.part" 2>/dev/null || echo 0)" -gt 100000 ] && break
    sleep 0.05
  done
  kill -"$sig" "$cpid"
  rc=0
  wait "$cpid" || rc=$?
  size=$(stat -c %s "$tmp/sig.bin.part" 2>/dev/null || echo 0)
  if [ "$rc" -eq "$want" ] && [ "$size" -gt 0 ] && [ ! -e "$tmp/sig.bin" ] &&
    grep -q "kept $size bytes in $tmp/sig.bin.part" "$tmp/sig.err" &&
    grep -q '^downloaded 0 files' "$tmp/sig.err"; then
    pass "SIG$sig: exit $rc, $size bytes kept in the .part, summary printed"
  else
    fail "SIG$sig: exit $rc (want $want), .part $size bytes: $(cat "$tmp/sig.err")"
  fi
  seen=
  for _ in $(seq 1 40); do
    if [ "$(grep -c 'aborted: connection closed' "$tmp/main.out" || true)" -gt "$before" ]; then
      seen=1
      break
    fi
    sleep 0.05
  done
  [ -n "$seen" ] && pass "SIG$sig: the server saw the CONNECTION_CLOSE at once" ||
    fail "SIG$sig: the server did not see the close within 2 s: $(tail -n3 "$tmp/main.out")"
done

# The .part the last signal kept is resumed by -C -.
expect "-C - after SIGTERM" 0 '' "$CLIENT" -k -C - -o "$tmp/sig.bin" "$base/big.bin"
[ "$(sha "$tmp/sig.bin")" = "$(sha "$root/big.bin")" ] && [ ! -e "$tmp/sig.bin.part" ] &&
  pass "-C - after SIGTERM: the whole file" || fail "-C - after SIGTERM: the file differs"

# --data @FILE that cannot be read to its end (a directory: fopen works,
# fread fails) is an error, not an empty or truncated body.
expect "--data @DIR" 2 'cannot read .*: Is a directory' \
  "$CLIENT" -k --data "@$tmp/dir" -o "$tmp/kl.txt" "$base/small.txt"

# ---- SSLKEYLOGFILE: both tools append the NSS key log ----------------------
# (the library hands the lines to a callback; the file is the tools'.) The
# client's line for its traffic secret must be the server's too.
SSLKEYLOGFILE=$tmp/server-keys.log start_bare_server keylog --root "$root"
rc=0
SSLKEYLOGFILE=$tmp/client-keys.log "$CLIENT" -k -o "$tmp/kl.txt" \
  "https://127.0.0.1:$PORT/small.txt" 2>"$tmp/kl.err" </dev/null || rc=$?
UPID=$SERVER_PID stop_server keylog
kline=$(grep -s '^CLIENT_TRAFFIC_SECRET_0 [0-9a-f]\{64\} [0-9a-f]\+$' \
  "$tmp/client-keys.log" | head -n1 || true)
if [ "$rc" = 0 ] && [ -n "$kline" ] &&
  grep -qxF "$kline" "$tmp/server-keys.log" &&
  [ "$(stat -c %a "$tmp/client-keys.log")" = 600 ]; then
  pass "SSLKEYLOGFILE: client and server log the same secrets, mode 600"
else
  fail "SSLKEYLOGFILE: exit $rc, client log: $(cat "$tmp/client-keys.log" 2>&1)"
fi
SSLKEYLOGFILE=$tmp/no/such/dir/keys.log expect "SSLKEYLOGFILE cannot be opened" \
  2 'SSLKEYLOGFILE: cannot open' "$CLIENT" -k -o "$tmp/kl.txt" "$base/small.txt"

# 56: the server stops answering mid-transfer. The reader takes 1 MiB and
# then reads nothing more for a while, so the client withholds credit
# (back-pressure) and the transfer is still running when the server stops.
rc=0
{ "$CLIENT" -k --stall-timeout 1 -o - "$base/big.bin" 2>"$tmp/lost.err" &&
  echo 0 >"$tmp/lost.rc" || echo $? >"$tmp/lost.rc"; } |
  python3 -c '
import sys, time
sys.stdin.buffer.read(1 << 20)
open(sys.argv[1], "w").close()
time.sleep(3)' "$tmp/lost.mark" &
lost=$!
for _ in $(seq 1 200); do [ -e "$tmp/lost.mark" ] && break; sleep 0.05; done
kill -STOP "$SRV"
wait "$lost" || true
kill -CONT "$SRV"
rc=$(cat "$tmp/lost.rc" 2>/dev/null || echo none)
if [ "$rc" = 56 ] && grep -q 'nothing received for the stall timeout' "$tmp/lost.err"; then
  pass "connection lost mid-transfer: exit 56: $(head -n1 "$tmp/lost.err")"
else
  fail "connection lost mid-transfer: exit $rc: $(cat "$tmp/lost.err")"
fi

interop_done
