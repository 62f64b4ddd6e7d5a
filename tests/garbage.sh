#!/usr/bin/env bash
# Robustness: 10,000 random datagrams (0..1500 random bytes) hit the server
# from another socket while it serves a large download. The download must
# complete byte-identical, the server must stay up and keep serving, and its
# exit statistics must count the garbage as dropped.
# Needs UVQ_BUILD_DIR (set by ctest) and python3. Every server uses port 0.
set -euo pipefail

B=${UVQ_BUILD_DIR:?UVQ_BUILD_DIR must point at the build directory}
SERVER=$B/uvquic-server
CLIENT=$B/uvquic-client
for bin in "$SERVER" "$CLIENT"; do
  [ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }
done
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

die() {
  echo "FAIL: $*" >&2
  exit 1
}

# Kernel UDP receive-buffer drops, system-wide: garbage the kernel threw
# away never reached the server and cannot be in its counters.
rcvbuf_errors() {
  awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) col[$i] = i; h = 1 }
                 else print $col["RcvbufErrors"] }' /proc/net/snmp
}

root=$tmp/root
mkdir -p "$root"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$root/big.bin"
echo small >"$root/small.txt"

"$SERVER" --listen 127.0.0.1:0 --root "$root" --write-cert "$tmp/cert.pem" \
  >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
pids+=("$server_pid")
for i in $(seq 1 300); do
  grep -q '^listening on ' "$tmp/server.out" && break
  kill -0 "$server_pid" 2>/dev/null || die "server died: $(cat "$tmp/server.err")"
  sleep 0.1
done
port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$tmp/server.out")
[ -n "$port" ] || die "no port in server output"

cat >"$tmp/garbage.py" <<'EOF'
import os, random, socket, sys, time
port, count, report = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rng = random.Random()
sent = empty = maybe_vn = 0
for i in range(count):
    n = rng.randint(0, 1500)
    d = os.urandom(n)
    # Paced (a few per 100 us) so the garbage spreads over the download
    # rather than overflowing the socket buffer in one burst.
    while True:
        try:
            s.sendto(d, ("127.0.0.1", port))
            break
        except BlockingIOError:
            time.sleep(0.001)
    sent += 1
    if n == 0:
        empty += 1
    elif d[0] & 0x80 and n >= 1200:
        # A long header of an unknown version in a datagram big enough for
        # Version Negotiation may be answered instead of dropped.
        maybe_vn += 1
    if i % 8 == 7:
        time.sleep(0.0002)
with open(report, "w") as f:
    f.write("%d %d %d\n" % (sent, empty, maybe_vn))
EOF

before=$(rcvbuf_errors)
# Three rounds of 64 MiB keep a download running while the garbage flows.
"$CLIENT" --ca "$tmp/cert.pem" --connections 3 -o "$tmp/big.out" \
  "https://127.0.0.1:$port/big.bin" 2>"$tmp/client.err" &
client_pid=$!
pids+=("$client_pid")
python3 "$tmp/garbage.py" "$port" 10000 "$tmp/garbage.txt" &
garbage_pid=$!
pids+=("$garbage_pid")

rc=0
wait "$garbage_pid" || rc=$?
[ "$rc" -eq 0 ] || die "garbage sender failed ($rc)"
garbage_done_first=0
kill -0 "$client_pid" 2>/dev/null && garbage_done_first=1
rc=0
wait "$client_pid" || rc=$?
[ "$rc" -eq 0 ] || die "download failed during garbage: $(cat "$tmp/client.err")"
[ "$(sha256sum <"$tmp/big.out")" = "$(sha256sum <"$root/big.bin")" ] ||
  die "download differs"
echo "ok: download byte-identical: $(tail -n1 "$tmp/client.err")"
if [ "$garbage_done_first" -eq 1 ]; then
  echo "ok: all garbage was sent while the download ran"
else
  echo "note: the download finished before the last garbage datagram"
fi

kill -0 "$server_pid" 2>/dev/null || die "server died under garbage"
"$CLIENT" --ca "$tmp/cert.pem" --quiet -o "$tmp/small.out" \
  "https://127.0.0.1:$port/small.txt" || die "server no longer serves"
cmp -s "$tmp/small.out" "$root/small.txt" || die "small download differs"
echo "ok: server still serves after the garbage"

rc=0
kill -TERM "$server_pid"
wait "$server_pid" || rc=$?
[ "$rc" -eq 0 ] || die "server exited $rc after SIGTERM: $(cat "$tmp/server.err")"
after=$(rcvbuf_errors)

stats=$(grep '^stats: ' "$tmp/server.out") || die "server printed no stats"
echo "server $stats"
dropped=$(sed -n 's/.* dropped=\([0-9]*\) .*/\1/p' <<<"$stats")
vn=$(sed -n 's/.* version_negotiations=\([0-9]*\).*/\1/p' <<<"$stats")
read -r sent empty maybe_vn <"$tmp/garbage.txt"
lost=$((after - before))
# Every non-empty datagram that cannot draw a Version Negotiation must be
# counted as dropped, less what the kernel dropped before the server read.
want=$((sent - empty - maybe_vn - lost))
echo "garbage: sent=$sent empty=$empty maybe_vn=$maybe_vn kernel_drops=$lost"
[ -n "$dropped" ] || die "no dropped= in stats"
[ "$dropped" -ge "$want" ] || die "dropped=$dropped < $want garbage datagrams"
# And together with VN replies, the big ones are accounted for as well.
[ $((dropped + vn)) -ge $((sent - empty - lost)) ] ||
  die "dropped+vn=$((dropped + vn)) < $((sent - empty - lost))"
echo "ok: garbage counted (dropped=$dropped >= $want, vn=$vn)"
