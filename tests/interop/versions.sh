#!/usr/bin/env bash
# Interop: QUIC v2 (RFC 9369) and version negotiation (RFC 9368) with
# ngtcp2 1.11's gtlsserver / gtlsclient, both ways.
#  - gtlsclient -v v2 against uvquic-server: every long header v2, the
#    server counts a v2 handshake;
#  - gtlsclient -v v1 --available-versions v1,v2 against uvquic-server
#    --quic-versions v2,v1: the first Initial is v1, the handshake finishes
#    in v2 (gtlsclient's packet log: version=0x6b3343cf type=Handshake), the
#    server counts a compatible upgrade;
#  - gtlsclient -v v1 --preferred-versions v1,v2 against a v2-only
#    uvquic-server: Version Negotiation, then v2;
#  - uvquic-client --quic-version v2 against gtlsserver: -v and
#    --stats-json say v2;
#  - the default uvquic-client against gtlsserver --preferred-versions
#    v2,v1: upgraded to v2 ("started in v1");
#  - the default uvquic-client against a v2-only uvquic-server: Version
#    Negotiation, then v2.
# Every download is checked byte for byte. gtlsclient runs with
# --no-quic-dump --no-http-dump where its packet log is read.
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

www=$tmp/www
mkdir -p "$www"
head -c 300000 /dev/urandom >"$www/f.bin"

# gtls_log NAME PORT ARGS...: gtlsclient downloads /f.bin from PORT with
# ARGS and its packet log (no body dumps) in $tmp/NAME.log.
gtls_log() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$tmp/$name"
  timeout 60 "$GTLSCLIENT" --initial-rtt=1ms --no-quic-dump --no-http-dump \
    --exit-on-all-streams-close "$@" --download="$tmp/$name" 127.0.0.1 \
    "$port" "https://127.0.0.1:$port/f.bin" >"$tmp/$name.log" 2>&1
}

# versions_seen NAME: "VERSION TYPE" pairs of gtlsclient's long headers.
versions_seen() {
  grep -o 'version=0x[0-9a-f]* type=[A-Za-z0-9]*' "$tmp/$1.log" | sort -u |
    tr '\n' ' '
}

stat_field() { sed -n "s/^stats: .* $2=\([0-9]*\).*/\1/p" "$tmp/$1.out"; }

got_file() { cmp -s "$www/f.bin" "$1"; }

# ---- gtlsclient -v v2 → uvquic-server ---------------------------------------
start_server v2 --root "$www"
if gtls_log gv2 "$UPORT" -v v2 && got_file "$tmp/gv2/f.bin"; then
  seen=$(versions_seen gv2)
  if grep -q 'version=0x6b3343cf type=Handshake' "$tmp/gv2.log" &&
    ! grep -q 'version=0x00000001' "$tmp/gv2.log"; then
    pass "gtlsclient -v v2: all v2 ($seen)"
  else
    fail "gtlsclient -v v2: long headers seen: $seen"
  fi
else
  fail "gtlsclient -v v2: download failed: $(tail -n3 "$tmp/gv2.log")"
fi
stop_server v2
[ "$(stat_field v2 v2)" = 1 ] && pass "uvquic-server counted 1 v2 handshake" ||
  fail "uvquic-server v2 count: $(grep '^stats:' "$tmp/v2.out")"

# ---- compatible upgrade: gtlsclient v1 offering v2, server prefers v2 -------
start_server up --root "$www" --quic-versions v2,v1
if gtls_log gup "$UPORT" -v v1 --available-versions v1,v2 &&
  got_file "$tmp/gup/f.bin"; then
  seen=$(versions_seen gup)
  first=$(grep -o 'version=0x[0-9a-f]* type=Initial' "$tmp/gup.log" | head -n1)
  if [ "$first" = "version=0x00000001 type=Initial" ] &&
    grep -q 'version=0x6b3343cf type=Handshake' "$tmp/gup.log"; then
    pass "gtlsclient v1 → uvquic-server v2,v1: upgraded ($seen)"
  else
    fail "gtlsclient v1 → uvquic-server v2,v1: first '$first', seen: $seen"
  fi
else
  fail "compatible upgrade: gtlsclient failed: $(tail -n3 "$tmp/gup.log")"
fi
stop_server up
[ "$(stat_field up compatible_upgrades)" = 1 ] &&
  pass "uvquic-server counted the compatible upgrade" ||
  fail "no compatible upgrade counted: $(grep '^stats:' "$tmp/up.out")"

# ---- incompatible: gtlsclient v1 against a v2-only uvquic-server ------------
start_server only2 --root "$www" --quic-versions v2
if gtls_log gvn "$UPORT" -v v1 --preferred-versions v1,v2 &&
  got_file "$tmp/gvn/f.bin"; then
  if grep -q 'type=VN' "$tmp/gvn.log" &&
    grep -q 'version=0x6b3343cf type=Handshake' "$tmp/gvn.log"; then
    pass "gtlsclient v1 → v2-only uvquic-server: VN, then v2"
  else
    fail "gtlsclient v1 → v2-only: $(versions_seen gvn)"
  fi
else
  fail "gtlsclient v1 → v2-only uvquic-server: $(tail -n3 "$tmp/gvn.log")"
fi

# ---- the default uvquic-client against the v2-only uvquic-server ------------
if timeout 30 "$CLIENT" --ca "$tmp/cert.pem" -v -o "$tmp/uvn.bin" \
  "https://127.0.0.1:$UPORT/f.bin" 2>"$tmp/uvn.err" && got_file "$tmp/uvn.bin" &&
  grep -q 'QUIC version v2 (started in v1)' "$tmp/uvn.err"; then
  pass "uvquic-client → v2-only uvquic-server: $(grep 'QUIC version' "$tmp/uvn.err")"
else
  fail "uvquic-client → v2-only uvquic-server: $(tail -n5 "$tmp/uvn.err")"
fi
stop_server only2
# At least one per client (a client's first flight may span datagrams).
vn=$(stat_field only2 version_negotiations)
[ -n "$vn" ] && [ "$vn" -ge 2 ] && [ "$(stat_field only2 v2)" = 2 ] &&
  pass "the v2-only server sent $vn Version Negotiation packets, 2 v2 handshakes" ||
  fail "VN count: $(grep '^stats:' "$tmp/only2.out")"

# ---- uvquic-client --quic-version v2 → gtlsserver ---------------------------
start_gtlsserver g2 -d "$www"
if timeout 30 "$CLIENT" --ca "$tmp/cert.pem" -v --quic-version v2 \
  --stats-json "$tmp/c2.json" -o "$tmp/c2.bin" "https://127.0.0.1:$GPORT/f.bin" \
  2>"$tmp/c2.err" && got_file "$tmp/c2.bin"; then
  if grep -q 'QUIC version v2$' "$tmp/c2.err" &&
    grep -Eq '"version": *"0x6b3343cf"' "$tmp/c2.json"; then
    pass "uvquic-client --quic-version v2 → gtlsserver: v2 (-v and --stats-json)"
  else
    fail "uvquic-client --quic-version v2: $(grep 'QUIC version' "$tmp/c2.err");" \
      "$(grep -o '"version": *"[^"]*"' "$tmp/c2.json")"
  fi
else
  fail "uvquic-client --quic-version v2 → gtlsserver: $(tail -n5 "$tmp/c2.err")"
fi

# ---- default uvquic-client → gtlsserver --preferred-versions v2,v1 ----------
start_gtlsserver gup -d "$www" --preferred-versions v2,v1
if timeout 30 "$CLIENT" --ca "$tmp/cert.pem" -v --stats-json "$tmp/cu.json" \
  -o "$tmp/cu.bin" "https://127.0.0.1:$GPORT/f.bin" 2>"$tmp/cu.err" &&
  got_file "$tmp/cu.bin"; then
  if grep -q 'QUIC version v2 (started in v1)' "$tmp/cu.err" &&
    grep -Eq '"version": *"0x6b3343cf"' "$tmp/cu.json"; then
    pass "uvquic-client → gtlsserver v2,v1: upgraded to v2"
  else
    fail "uvquic-client → gtlsserver v2,v1: $(grep 'QUIC version' "$tmp/cu.err")"
  fi
else
  fail "uvquic-client → gtlsserver v2,v1: $(tail -n5 "$tmp/cu.err")"
fi

interop_done
