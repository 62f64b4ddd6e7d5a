#!/usr/bin/env bash
# uvquic-server --threads 2: eight clients (eight ports, so the kernel's
# hash spreads them), half of them moving to a new socket mid-download
# (--migrate-after, one as a NAT rebinding), all get byte-identical files;
# six 0-RTT resumptions from new ports (either shard) get their early
# data accepted; with --retry, one Retry for six clients (the NEW_TOKEN
# works on either shard); the exit counters have one line per shard whose
# connections add up to the summed line; --metrics-file labels every sample with its shard; a
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

# 0-RTT across shards: one ticket, then resumptions from new processes
# (new ports, so either shard): the shards share the ticket key and the
# anti-replay table (the TLS context), so each gets its early data in.
head -c 1000 /dev/urandom >"$root/small.bin"
zbad=0
for i in 0 1 2 3 4 5 6; do
  if ! "$CLIENT" -k -v --session-file "$tmp/session" -o "$tmp/z$i.bin" \
    "https://127.0.0.1:$PORT/small.bin" 2>"$tmp/z$i.err" ||
    ! cmp -s "$tmp/z$i.bin" "$root/small.bin"; then
    zbad=$((zbad + 1))
  elif [ "$i" -gt 0 ] && ! grep -q "early data accepted" "$tmp/z$i.err"; then
    zbad=$((zbad + 1))
  fi
done
if [ "$zbad" -eq 0 ]; then
  pass "six 0-RTT resumptions from new ports, early data accepted every time"
else
  fail "0-RTT across shards: $zbad of 7 failed: $(tail -n3 "$tmp/z1.err")"
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
if [ "$src" -eq 0 ] && [ "${total:-x}" = 15 ] && [ -n "$s0" ] && [ -n "$s1" ] &&
  [ $((s0 + s1)) -eq 15 ]; then
  pass "exit counters: 15 connections = shard 0 ($s0) + shard 1 ($s1)"
else
  fail "exit $src, counters: $(cat "$out")"
fi
if grep -q '^uvquic_connections_total{shard="0"} ' "$tmp/metrics.prom" &&
  grep -q '^uvquic_connections_total{shard="1"} ' "$tmp/metrics.prom" &&
  grep -q '^uvquic_forward_overflows_total{shard="1"} ' "$tmp/metrics.prom" &&
  grep -q '^uvquic_file_cache_expirations_total{shard="1"} ' "$tmp/metrics.prom" &&
  [ "$(grep -c '^# TYPE uvquic_connections_total ' "$tmp/metrics.prom")" -eq 1 ] &&
  [ "$(grep -c '^# TYPE uvquic_file_cache_hits_total ' "$tmp/metrics.prom")" -eq 1 ]; then
  pass "--metrics-file: each sample labelled with its shard (forwarding and file-cache counters too), one TYPE per family"
else
  fail "metrics: $(head -c 2000 "$tmp/metrics.prom")"
fi

# Tokens across shards (--retry: every new client address is validated):
# the first client is sent a Retry and then a NEW_TOKEN; the next ones,
# from new ports (either shard), present that token and are let in
# without a Retry, because the shards share the token key.
start_bare_server retry --root "$root" --threads 2 --retry
tbad=0
for i in 0 1 2 3 4 5; do
  "$CLIENT" -k --token-file "$tmp/token" -o "$tmp/t$i.bin" \
    "https://127.0.0.1:$PORT/small.bin" 2>"$tmp/t$i.err" || tbad=$((tbad + 1))
done
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || true
retries=$(sed -n 's/^stats: .* retries=\([0-9]*\) .*/\1/p' "$tmp/retry.out")
if [ "$tbad" -eq 0 ] && [ "${retries:-x}" = 1 ]; then
  pass "--retry over 2 shards: one Retry for six clients (the NEW_TOKEN served on either shard)"
else
  fail "tokens across shards: $tbad failed, retries=$retries: $(grep -E '^(stats|shard)' "$tmp/retry.out")"
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

interop_done
