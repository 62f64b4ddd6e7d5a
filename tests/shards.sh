#!/usr/bin/env bash
# uvquic-server --threads 2: eight clients (eight ports, so the kernel's
# hash spreads them), half of them moving to a new socket mid-download
# (--migrate-after, one as a NAT rebinding), all get byte-identical files;
# the exit counters have one line per shard whose connections add up to
# the summed line; --metrics-file labels every sample with its shard; a
# SIGHUP reload parks both shards and comes back; --threads outside 1..32
# is refused.
# Needs UVQ_BUILD_DIR and UVQ_SOURCE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init

root=$tmp/root
mkdir -p "$root"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$root/f.bin"

start_bare_server shards --root "$root" --threads 2 --metrics-file "$tmp/metrics.prom"
cpids=()
for i in 1 2 3 4 5 6 7 8; do
  extra=()
  [ "$i" -le 4 ] && extra=(--migrate-after 20)
  [ "$i" -eq 4 ] && extra+=(--nat-rebinding)
  "$CLIENT" -k --quiet "${extra[@]}" -o "$tmp/out$i.bin" \
    "https://127.0.0.1:$PORT/f.bin" 2>"$tmp/client$i.err" &
  cpids+=($!)
  pids+=($!)
done
bad=0
for i in 1 2 3 4 5 6 7 8; do
  rc=0
  wait "${cpids[$((i - 1))]}" || rc=$?
  if [ "$rc" -ne 0 ] || ! cmp -s "$tmp/out$i.bin" "$root/f.bin"; then
    bad=$((bad + 1))
    echo "client $i: exit $rc: $(cat "$tmp/client$i.err")" >&2
  fi
done
if [ "$bad" -eq 0 ]; then
  pass "8 clients (4 migrating) over 2 shards: every file identical"
else
  fail "$bad of 8 clients failed"
fi

# SIGHUP with nothing to reload says so; with shards it must not hang.
kill -HUP "$SERVER_PID"
sleep 0.3
kill -0 "$SERVER_PID" || fail "the server died on SIGHUP"

# Wait for a metrics file that has both shards.
for _ in $(seq 1 50); do
  if [ -f "$tmp/metrics.prom" ] && grep -q 'shard="1"' "$tmp/metrics.prom"; then
    break
  fi
  sleep 0.1
done
kill -TERM "$SERVER_PID"
src=0
wait "$SERVER_PID" || src=$?
out=$tmp/shards.out
total=$(sed -n 's/^stats: .* connections=\([0-9]*\) .*/\1/p' "$out")
s0=$(sed -n 's/^shard 0: connections=\([0-9]*\) .*/\1/p' "$out")
s1=$(sed -n 's/^shard 1: connections=\([0-9]*\) .*/\1/p' "$out")
if [ "$src" -eq 0 ] && [ "${total:-x}" = 8 ] && [ -n "$s0" ] && [ -n "$s1" ] &&
  [ $((s0 + s1)) -eq 8 ]; then
  pass "exit counters: 8 connections = shard 0 ($s0) + shard 1 ($s1)"
else
  fail "exit $src, counters: $(cat "$out")"
fi
if grep -q '^uvquic_connections_total{shard="0"} ' "$tmp/metrics.prom" &&
  grep -q '^uvquic_connections_total{shard="1"} ' "$tmp/metrics.prom" &&
  grep -q '^uvquic_forward_overflows_total{shard="1"} ' "$tmp/metrics.prom" &&
  [ "$(grep -c '^# TYPE uvquic_connections_total ' "$tmp/metrics.prom")" -eq 1 ]; then
  pass "--metrics-file: each sample labelled with its shard (forwarding counters too), one TYPE per family"
else
  fail "metrics: $(head -c 2000 "$tmp/metrics.prom")"
fi

for n in 0 33; do
  rc=0
  "$SERVER" --threads "$n" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/bad.err" || rc=$?
  if [ "$rc" -eq 2 ] && grep -q -- '--threads' "$tmp/bad.err"; then
    pass "--threads $n refused (exit 2)"
  else
    fail "--threads $n: exit $rc: $(cat "$tmp/bad.err")"
  fi
done

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all shard checks passed"
