#!/usr/bin/env bash
# uvquic-server --quic-lb end to end: bad configurations are refused with
# their reason (exit 2), a key file others may read is refused, and a
# server with a plaintext and with a keyed (@FILE) configuration serves a
# download whose connection's SCID (the -v log) a load balancer holding
# the configuration (tests/tools/uvq_lb_decode) routes to the server's ID.
# Needs UVQ_BUILD_DIR (set by ctest). Every server listens on port 0.
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init
DECODE=$B/tests/uvq_lb_decode
[ -x "$DECODE" ] || die "missing $DECODE (build first)"

root=$tmp/root
mkdir -p "$root"
head -c 300000 /dev/urandom >"$root/file.bin"

# ---- refused configurations ------------------------------------------------
refused() { # REASON-FRAGMENT CONFIG
  local rc=0
  timeout 10 "$SERVER" --listen 127.0.0.1:0 --quic-lb "$2" >/dev/null 2>"$tmp/refused.err" || rc=$?
  if [ "$rc" -eq 2 ] && grep -qF -- "$1" "$tmp/refused.err"; then
    pass "--quic-lb $2 refused: $(cat "$tmp/refused.err")"
  else
    fail "--quic-lb $2: exit $rc, stderr: $(cat "$tmp/refused.err")"
  fi
}
refused "0..6" "cr=7,sid=01"
refused "server ID is required" "nonce=8"
refused "hex" "sid=0x01"
refused "at least 4" "sid=01,nonce=3"
refused "at most 19" "sid=0011223344556677,nonce=12"
refused "32 digits" "sid=01,key=00"
refused "unknown field" "sid=01,colour=blue"
refused "7 octets or more" "sid=01,nonce=5"
refused "cannot open" "@$tmp/no-such-file"
printf 'sid=01\n' >"$tmp/open.conf"
chmod 644 "$tmp/open.conf"
refused "read by others" "@$tmp/open.conf"
# A FIFO must not block the server (it would wait for a writer for ever).
mkfifo -m 600 "$tmp/fifo.conf"
refused "not a regular file" "@$tmp/fifo.conf"
# A file longer than the buffer is refused, not cut short.
{ printf 'sid=01,nonce=8'; head -c 600 /dev/zero | tr '\0' ' '; } >"$tmp/long.conf"
chmod 600 "$tmp/long.conf"
refused "longer than" "@$tmp/long.conf"

# serve NAME CONFIG BALANCER-CONFIG SID: a download from a server with
# --quic-lb CONFIG; its SCID must decode to SID under BALANCER-CONFIG.
serve() {
  local name=$1 conf=$2 balancer=$3 sid=$4 scid got
  start_bare_server "$name" --root "$root" --write-cert "$tmp/$name.pem" \
    -v --quic-lb "$conf"
  rm -f "$tmp/$name.bin"
  if ! "$CLIENT" --ca "$tmp/$name.pem" -o "$tmp/$name.bin" \
    "https://127.0.0.1:$PORT/file.bin" 2>"$tmp/$name-client.err"; then
    fail "$name: download failed: $(cat "$tmp/$name-client.err")"
  elif ! cmp -s "$tmp/$name.bin" "$root/file.bin"; then
    fail "$name: download differs"
  else
    pass "$name: download byte-identical"
  fi
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || fail "$name: server exited $? after SIGTERM"
  # "uvquic-server: [info] SCID: accepted: ..."
  scid=$(sed -n 's/^uvquic-server: \[info\] \([0-9a-f]*\): accepted:.*/\1/p' \
    "$tmp/$name.err" | head -n1)
  if [ -z "$scid" ]; then
    fail "$name: no accepted line in the server log: $(cat "$tmp/$name.err")"
    return
  fi
  got=$("$DECODE" "$balancer" "$scid")
  if [ "$got" = "$sid" ]; then
    pass "$name: SCID $scid routes to server $sid"
  else
    fail "$name: SCID $scid decodes to \"$got\", not $sid"
  fi
  # A balancer with another key cannot route it to this server.
  if [ "$name" = keyed ]; then
    got=$("$DECODE" "${balancer%key=*}key=000102030405060708090a0b0c0d0e0f" "$scid")
    if [ "$got" != "$sid" ]; then
      pass "$name: under another key the SCID decodes to $got"
    else
      fail "$name: the server ID is readable without the key"
    fi
  fi
}

serve plain "cr=1,sid=c0ffee,nonce=5" "cr=1,sid-len=3,nonce=5" c0ffee
key=8f95f09245765f80256934e50c66207f
printf 'cr=3,sid=0a0b0c0d,nonce=7,key=%s\n' "$key" >"$tmp/keyed.conf"
chmod 600 "$tmp/keyed.conf"
serve keyed "@$tmp/keyed.conf" "cr=3,sid-len=4,nonce=7,key=$key" 0a0b0c0d
# The key never reaches the process list.
if grep -qF "$key" "$tmp/keyed.err" "$tmp/keyed.out"; then
  fail "keyed: the key appears in the server's output"
fi

interop_done
