#!/usr/bin/env bash
# SIGHUP in uvquic-server: the certificate, key and keys file are read
# again for new handshakes while a download in flight goes on; a file that
# does not load is reported and the old ones kept.
# Needs UVQ_BUILD_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init

# Two self-signed certificates for 127.0.0.1.
for n in 1 2; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/k$n.pem" -out "$tmp/c$n.pem" -subj /CN=localhost -days 2 \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null
done
cp "$tmp/c1.pem" "$tmp/cert.pem"
cp "$tmp/k1.pem" "$tmp/key.pem"
"$SERVER" --gen-keys "$tmp/keys"
root=$tmp/root
mkdir -p "$root"
echo hello >"$root/ok.txt"
head -c $((400 * 1024 * 1024)) /dev/zero >"$root/big.bin"

start_bare_server server --root "$root" --cert "$tmp/cert.pem" \
  --key "$tmp/key.pem" --keys-file "$tmp/keys"
spid=$SERVER_PID
port=$PORT
url=https://127.0.0.1:$port

# fetch CA: 0 if the file came with the server verified by CA.
fetch() { "$CLIENT" --ca "$1" --quiet -o "$tmp/ok.out" "$url/ok.txt" 2>"$tmp/fetch.err"; }
# reloaded N: waits for the Nth "reloaded" line or SIGHUP complaint.
hup() {
  local before
  before=$(cat "$tmp/server.out" "$tmp/server.err" | grep -c 'reloaded\|SIGHUP' || true)
  kill -HUP "$spid"
  for i in $(seq 1 100); do
    [ "$(cat "$tmp/server.out" "$tmp/server.err" | grep -c 'reloaded\|SIGHUP' || true)" -gt "$before" ] && return 0
    sleep 0.05
  done
}

if fetch "$tmp/c1.pem"; then pass "served with the first certificate"; else fail "first: $(cat "$tmp/fetch.err")"; fi

# A download in flight while the files change and SIGHUP comes.
"$CLIENT" --ca "$tmp/c1.pem" --quiet -o "$tmp/big.out" "$url/big.bin" 2>"$tmp/big.err" &
cpid=$!
pids+=("$cpid")
wait_bytes "$tmp/big.out.part" 1 || true
cp "$tmp/c2.pem" "$tmp/cert.pem"
cp "$tmp/k2.pem" "$tmp/key.pem"
"$SERVER" --gen-keys "$tmp/keys.new"
mv "$tmp/keys.new" "$tmp/keys"
hup
rc=0
wait "$cpid" || rc=$?
if [ "$rc" -eq 0 ] && cmp -s "$tmp/big.out" "$root/big.bin"; then
  pass "the download in flight across SIGHUP completed"
else
  fail "download across SIGHUP: exit $rc: $(cat "$tmp/big.err")"
fi
if grep -q "^reloaded: certificate $tmp/cert.pem keys $tmp/keys$" "$tmp/server.out"; then
  pass "SIGHUP reported: $(grep '^reloaded' "$tmp/server.out" | tail -n1)"
else
  fail "no reload line: $(cat "$tmp/server.out" "$tmp/server.err")"
fi
if ! fetch "$tmp/c1.pem" && fetch "$tmp/c2.pem"; then
  pass "new handshakes use the new certificate"
else
  fail "after SIGHUP the old certificate is still served"
fi

# A bad certificate file: reported, the one in use kept.
echo "not a certificate" >"$tmp/cert.pem"
hup
if grep -q "SIGHUP: certificate file .*cert.pem.*keeping the certificate and keys in use" \
  "$tmp/server.err" && fetch "$tmp/c2.pem"; then
  pass "a bad certificate file is reported and the old one kept"
else
  fail "bad certificate: $(cat "$tmp/server.err")"
fi
# A keys file anyone may read: refused, reported, nothing changed.
cp "$tmp/c2.pem" "$tmp/cert.pem"
chmod 0644 "$tmp/keys"
hup
if grep -q "SIGHUP: .*keys.*keeping" "$tmp/server.err" && fetch "$tmp/c2.pem"; then
  pass "a keys file with bad permissions is reported, nothing changed"
else
  fail "bad keys file: $(cat "$tmp/server.err")"
fi

kill -TERM "$spid"
rc=0
wait "$spid" || rc=$?
[ "$rc" -eq 0 ] && pass "server exit 0" || fail "server exit $rc"

interop_done
