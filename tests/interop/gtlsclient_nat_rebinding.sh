#!/usr/bin/env bash
# Interop: gtlsclient --change-local-addr=100ms --nat-rebinding during a
# 32 MiB download from uvquic-server. The client moves to a new local port
# without validating the path itself (a NAT rebinding): the server must
# notice the new address, validate it and carry on sending there.
#  - the download completes, byte-identical (sha256); the server logged the
#    complete GET and the connection closed without error;
#  - gtlsclient's packet log (without -q, filtered as it is written) shows
#    the rebinding ("Local address is now ..."), the server's PATH_CHALLENGE
#    after it answered with PATH_RESPONSE, and the response's STREAM data
#    both before the rebinding and past everything received before it (so
#    the rebinding happened mid-transfer and the transfer went on).
# (ngtcp2 0.12.1's gtlsclient stalled after every --nat-rebinding, against
# any server; 1.11's completes, but for the client-side stall below.) The
# run's duration is printed, never asserted.
#
# One way this can stall is the client's, not the server's: gtlsclient
# ignores what still arrives on its old port, and if nothing ack-eliciting
# of its own is in flight when it rebinds, no timer makes it send from the
# new port, so the server never learns it (it probes the old address until
# the idle timeout). The same happens against gtlsserver; ~1 run in 20-30
# at 100 ms, more with earlier rebindings. It grows with the server's
# datagram size: at the 16384 bytes path MTU discovery reaches on loopback
# the client sends a quarter as many ACKs, and so fewer of the PINGs ngtcp2
# adds to a run of them, and ~6 runs in 14 stalled (0 in 15 at 1452). So
# the server here is held to 1452-byte datagrams (--max-udp-payload), the
# size this check was built for; what it checks, the server following the
# rebinding, does not depend on the size. Such a run is recognised by its log
# (no datagram sent from the new port), reported, and run again, at most
# 3 times; any other failure fails at once. gtlsclient gets a 3 s idle
# timeout so a stalled run ends soon.
set -euo pipefail
. "$(dirname "$0")/lib/interop.bash"
interop_init

size=$((32 * 1024 * 1024))
www=$tmp/www
mkdir -p "$www"
head -c "$size" /dev/urandom >"$www/big.bin"
want=$(sha "$www/big.bin")

# The packet log is ~10 bytes per byte downloaded: keep only what the
# checks read.
keep='Local address is now|Sent packet: local=|PATH_CHALLENGE|PATH_RESPONSE|frm rx [0-9]+ 1RTT STREAM\(0x0[89a-f]\) id=0x0 |ignore packet from unknown path'

# rebind_run N: one download with a server of its own (named natN); sets
# rc (gtlsclient's exit status), ms, ok (1: byte-identical) and, from the
# filtered log $tmp/natN.log, rebound (the rebinding's line number, 0:
# none), sent_new (datagrams sent from the new port), challenges,
# responses (after the rebinding), before/after (the furthest stream
# offset received before/after it), fin (FIN after it) and ignored.
rebind_run() {
  local n=$1 t0 port
  mkdir -p "$tmp/dl$n"
  start_server "nat$n" --root "$www" -v --max-udp-payload 1452
  rc=0
  t0=$(date +%s%N)
  timeout 120 "$GTLSCLIENT" --initial-rtt=1ms --timeout=3s --exit-on-all-streams-close \
    --change-local-addr=100ms --nat-rebinding --download="$tmp/dl$n" \
    127.0.0.1 "$UPORT" "https://127.0.0.1:$UPORT/big.bin" 2>&1 |
    grep -E "$keep" >"$tmp/nat$n.log" || rc=${PIPESTATUS[0]}
  ms=$((($(date +%s%N) - t0) / 1000000))
  stop_server "nat$n"
  ok=0
  [ "$rc" -eq 0 ] && [ "$(sha "$tmp/dl$n/big.bin" 2>/dev/null)" = "$want" ] && ok=1
  port=$(sed -n 's/^Local address is now .*:\([0-9][0-9]*\)$/\1/p' "$tmp/nat$n.log" | head -n1)
  read -r rebound sent_new challenges responses before after fin ignored < <(awk -v port="${port:-none}" '
    /Local address is now/ { if (!reb) reb = NR; next }
    /ignore packet from unknown path/ { ign++; next }
    /^Sent packet: local=/ { if (reb && index($0, "]:" port " ")) sent++; next }
    /frm rx .* PATH_CHALLENGE/ { if (reb) ch++; next }
    /frm tx .* PATH_RESPONSE/ { if (reb) re++; next }
    / STREAM\(/ {
      off = $0; sub(/.* offset=/, "", off); sub(/ .*/, "", off)
      len = $0; sub(/.* len=/, "", len); sub(/ .*/, "", len)
      end = off + len
      if (!reb) { if (end > before) before = end }
      else {
        if (end > after) after = end
        if ($0 ~ / fin=1 /) fin = 1
      }
    }
    END { printf "%d %d %d %d %d %d %d %d\n", reb, sent, ch, re, before, after, fin, ign }
  ' "$tmp/nat$n.log")
}

for n in 1 2 3; do
  rebind_run "$n"
  if [ "$ok" -eq 0 ] && [ "$rebound" -gt 0 ] && [ "$sent_new" -eq 0 ] && [ "$n" -lt 3 ]; then
    echo "run $n inconclusive (${ms} ms): gtlsclient sent nothing from its new port after" \
      "rebinding at offset $before, so the server could not follow (the client's stall" \
      "described above; $ignored server packets ignored on the old port); running again"
    continue
  fi
  break
done

if [ "$ok" -eq 1 ]; then
  pass "32 MiB with a NAT rebinding: byte-identical (run $n, ${ms} ms)"
else
  fail "32 MiB with a NAT rebinding (run $n): gtlsclient exited $rc after ${ms} ms," \
    "$(stat -c %s "$tmp/dl$n/big.bin" 2>/dev/null || echo 0) bytes saved," \
    "$sent_new datagrams sent from the new port"
fi
# gtlsclient may close before acknowledging our last packets: the log then
# honestly reads aborted, with the bytes it did acknowledge.
if grep -Eq "^127\.0\.0\.1:[0-9]+ h3 GET /big\.bin 200 ($size [0-9.]+s|[0-9]+ [0-9.]+s aborted: connection closed)$" "$tmp/nat$n.out" &&
  grep -q ': closed: error=success ' "$tmp/nat$n.err"; then
  pass "uvquic-server: the GET complete, closed without error"
else
  fail "uvquic-server: $(grep ' GET ' "$tmp/nat$n.out" || echo 'no access log line');" \
    "$(grep -m1 ': closed: ' "$tmp/nat$n.err" || echo 'no close line')"
fi
if [ "$rebound" -gt 0 ]; then
  pass "gtlsclient rebound: $(grep -m1 'Local address is now' "$tmp/nat$n.log")" \
    "($sent_new datagrams sent from there, $ignored server packets ignored on the old port)"
else
  fail "gtlsclient's log shows no rebinding"
fi
if [ "$challenges" -ge 1 ] && [ "$responses" -ge 1 ]; then
  pass "uvquic-server validated the new path ($challenges PATH_CHALLENGE, $responses PATH_RESPONSE)"
else
  fail "after the rebinding: $challenges PATH_CHALLENGE received, $responses PATH_RESPONSE sent"
fi
if [ "$rebound" -gt 0 ] && [ "$before" -gt 0 ] && [ "$after" -gt "$before" ] && [ "$fin" -eq 1 ]; then
  pass "mid-transfer: stream data to offset $before before the rebinding, to $after (FIN) after"
else
  fail "not mid-transfer: stream data to offset $before before the rebinding, to $after after, FIN after: $fin"
fi

interop_done
