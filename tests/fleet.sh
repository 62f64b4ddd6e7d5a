#!/usr/bin/env bash
# A fleet behind a QUIC-LB load balancer, all on loopback: three
# uvquic-server processes, each with its own QUIC-LB server ID (one keyed
# configuration) and one shared keys file, behind tests/tools/uvq_lb_relay,
# which routes by the server ID it decodes from each DCID (and a client's
# Initials and 0-RTT, whose DCIDs are the client's own, by turns:
# --initial-rr). Checks:
# - six downloads are spread two per server, byte-identical, and every
#   packet after a client's Initials was routed by its CID;
# - a client that migrates mid-transfer (and one that is NAT-rebound)
#   stays on its server and finishes byte-identical;
# - a Retry token minted by one server is accepted by another, the relay
#   moving the client's Initial with the token (--move-retried; and it is
#   not without the shared keys file);
# - a session resumed on another server than the one that issued the
#   ticket gets its 0-RTT accepted (and is not resumed without the file).
# Needs UVQ_BUILD_DIR (set by ctest). Everything listens on port 0.
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init
make_cert "$tmp"
RELAY=$B/tests/uvq_lb_relay
[ -x "$RELAY" ] || die "missing $RELAY (build first)"

root=$tmp/root
mkdir -p "$root"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$root/small.bin"
head -c $((24 * 1024 * 1024)) /dev/urandom >"$root/big.bin"
key=00112233445566778899aabbccddeeff
"$SERVER" --gen-keys "$tmp/keys"
"$SERVER" --gen-keys "$tmp/keys-other"

# fleet NAME KEYS2 RELAY-ARG ARGS...: servers NAME-1..3 (sid 01..03;
# server 2 loads KEYS2, the others $tmp/keys) with ARGS, behind a relay
# given RELAY-ARG ("" for none) besides --initial-rr; sets RPORT.
fleet() {
  local name=$1 keys2=$2 rarg=$3 i keys spec=()
  shift 3
  [ -n "$rarg" ] && spec+=("$rarg")
  for i in 1 2 3; do
    keys=$tmp/keys
    [ "$i" = 2 ] && keys=$keys2
    start_server "$name-$i" --root "$root" --keys-file "$keys" -v \
      --quic-lb "cr=1,sid=0$i,nonce=8,key=$key" "$@"
    spec+=(--server "0$i=127.0.0.1:$UPORT")
    eval "SPID_$i=$UPID"
  done
  "$RELAY" --quic-lb "cr=1,sid-len=1,nonce=8,key=$key" --initial-rr \
    "${spec[@]}" >"$tmp/$name-relay.out" 2>"$tmp/$name-relay.err" &
  RELAY_PID=$!
  pids+=("$RELAY_PID")
  await_port "relay $name" "$RELAY_PID" "$tmp/$name-relay.out" \
    "$tmp/$name-relay.err" "listening on" 600
  RPORT=$AWAITED_PORT
}

# unfleet NAME: stops the relay and the servers (each must exit 0).
unfleet() {
  local name=$1 i pid
  kill -TERM "$RELAY_PID"
  wait "$RELAY_PID" || fail "relay $name exited $?"
  for i in 1 2 3; do
    eval "pid=\$SPID_$i"
    kill -TERM "$pid"
    wait "$pid" || fail "server $name-$i exited $? after SIGTERM"
  done
}

# get NAME FILE ARGS...: one download through the relay, byte-compared.
get() {
  local name=$1 file=$2
  shift 2
  rm -f "$tmp/$name.get"
  if ! "$CLIENT" --ca "$tmp/cert.pem" -o "$tmp/$name.get" "$@" \
    "https://127.0.0.1:$RPORT/$file" 2>"$tmp/$name.client.err"; then
    fail "$name: download failed: $(tail -n3 "$tmp/$name.client.err")"
    return 1
  fi
  if ! cmp -s "$tmp/$name.get" "$root/$file"; then
    fail "$name: download differs"
    return 1
  fi
  pass "$name: $file byte-identical"
}

# served NAME I: requests in server NAME-I's access log.
served() { grep -c " GET /" "$tmp/$1-$2.out" || true; }

# relay_stat NAME KEY: KEY=N from the relay's closing summary.
relay_stat() { sed -n "s/.*\b$2=\([0-9]*\).*/\1/p" "$tmp/$1-relay.out" | tail -n1; }

# ---- spread: six connections, two per server --------------------------------
fleet spread "$tmp/keys" ""
for i in 1 2 3 4 5 6; do
  get "spread-$i" small.bin || true
done
unfleet spread
for i in 1 2 3; do
  n=$(served spread "$i")
  if [ "$n" = 2 ]; then
    pass "spread: server 0$i served $n downloads"
  else
    fail "spread: server 0$i served $n downloads, not 2"
  fi
done
if [ "$(relay_stat spread unroutable)" = 0 ] && [ "$(relay_stat spread spanning)" = 0 ]; then
  pass "spread: every packet after the Initials routed by its CID ($(tail -n1 "$tmp/spread-relay.out"))"
else
  fail "spread: $(tail -n1 "$tmp/spread-relay.out")"
fi

# ---- migration and NAT rebinding mid-transfer ---------------------------------
for how in migrate rebind; do
  extra=(--migrate-after 30)
  [ "$how" = rebind ] && extra+=(--nat-rebinding)
  fleet "$how" "$tmp/keys" ""
  get "$how" big.bin --max-data 4194304 "${extra[@]}" || true
  unfleet "$how"
  clients=$(relay_stat "$how" clients)
  total=0
  for i in 1 2 3; do
    total=$((total + $(served "$how" "$i")))
  done
  if [ "$clients" -ge 2 ] && [ "$(relay_stat "$how" spanning)" = 0 ] &&
    [ "$(relay_stat "$how" unroutable)" = 0 ] && [ "$total" = 1 ]; then
    pass "$how: the client moved ($clients addresses) and every packet stayed on its server"
  else
    fail "$how: clients=$clients total requests=$total: $(tail -n1 "$tmp/$how-relay.out")"
  fi
done

# ---- Retry on one server, the handshake on another ----------------------------
for keys in shared other; do
  keys2=$tmp/keys
  [ "$keys" = other ] && keys2=$tmp/keys-other
  fleet "retry-$keys" "$keys2" --move-retried --retry
  # The first Initial reaches server 01 (by turns), which sends Retry; the
  # relay moves the Initial with its token to server 02.
  if [ "$keys" = shared ]; then
    get "retry-$keys" small.bin || true
  elif "$CLIENT" --ca "$tmp/cert.pem" -o "$tmp/retry-other.get" --idle-timeout 3 \
    "https://127.0.0.1:$RPORT/small.bin" 2>"$tmp/retry-other.client.err"; then
    fail "retry-other: a token of another key file was accepted"
  else
    pass "retry-other: without the shared keys file the token is refused"
  fi
  unfleet "retry-$keys"
  retries=$(sed -n 's/^stats:.* retries=\([0-9]*\).*/\1/p' "$tmp/retry-$keys-1.out")
  if [ "$keys" = shared ]; then
    if [ "${retries:-0}" -ge 1 ] && [ "$(served "retry-$keys" 1)" = 0 ] &&
      [ "$(served "retry-$keys" 2)" = 1 ]; then
      pass "retry-shared: server 01 sent $retries Retry, server 02 accepted its token and served"
    else
      fail "retry-shared: retries=$retries served: $(served "retry-$keys" 1) $(served "retry-$keys" 2) $(served "retry-$keys" 3)"
    fi
  fi
done

# ---- 0-RTT resumption on another server ---------------------------------------
for keys in shared other; do
  keys2=$tmp/keys
  [ "$keys" = other ] && keys2=$tmp/keys-other
  fleet "zrtt-$keys" "$keys2" ""
  rm -f "$tmp/session-$keys"
  # The first connection reaches server 01, the second server 02.
  get "zrtt-$keys-1" small.bin --session-file "$tmp/session-$keys" || true
  get "zrtt-$keys-2" small.bin -v --session-file "$tmp/session-$keys" || true
  unfleet "zrtt-$keys"
  if [ "$(served "zrtt-$keys" 1)" != 1 ] || [ "$(served "zrtt-$keys" 2)" != 1 ]; then
    fail "zrtt-$keys: the two connections did not reach servers 01 and 02"
  elif [ "$keys" = shared ]; then
    if grep -q "early data accepted" "$tmp/zrtt-$keys-2.client.err"; then
      pass "zrtt-shared: a ticket of server 01 resumed on server 02 with 0-RTT accepted"
    else
      fail "zrtt-shared: no 0-RTT on server 02: $(cat "$tmp/zrtt-$keys-2.client.err")"
    fi
  elif grep -q "session resumed" "$tmp/zrtt-$keys-2.client.err"; then
    fail "zrtt-other: resumed without the shared ticket key"
  else
    pass "zrtt-other: without the shared keys file the session is not resumed"
  fi
done

interop_done
