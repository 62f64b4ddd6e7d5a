#!/usr/bin/env bash
# uvquic-server's graceful shutdown, over HTTP/3 and hq-interop: the first
# SIGINT/SIGTERM lets a download in flight finish (GOAWAY on h3) and the
# server exits 0 once it is over; a second signal closes at once, and the
# client learns it from a CONNECTION_CLOSE (within a second, not from its
# idle timeout); --shutdown-timeout bounds the wait. Also the socket-buffer
# clamp warning (only with -v above what one connection needs), the
# UVQ_UV_NO_GSO / UVQ_UV_NO_GRO overrides, --version and that --help names
# every long option the server accepts.
# Needs UVQ_BUILD_DIR and UVQ_SOURCE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init
S=${UVQ_SOURCE_DIR:?UVQ_SOURCE_DIR must point at the source directory}

now() { date +%s%N; }

root=$tmp/root
mkdir -p "$root"
# Large enough that a download is still running when the signal comes.
head -c $((400 * 1024 * 1024)) /dev/zero >"$root/big.bin"

for alpn in h3 hq-interop; do
  # ---- first signal: the download in flight finishes ----------------------
  start_bare_server "graceful-$alpn" --root "$root"
  rm -f "$tmp/big.out" "$tmp/big.out.part"
  "$CLIENT" --alpn "$alpn" -k --quiet -o "$tmp/big.out" \
    "https://127.0.0.1:$PORT/big.bin" 2>"$tmp/client.err" &
  cpid=$!
  pids+=("$cpid")
  wait_bytes "$tmp/big.out.part" 1 || true
  kill -INT "$SERVER_PID"
  crc=0
  wait "$cpid" || crc=$?
  src=0
  wait "$SERVER_PID" || src=$?
  if [ "$crc" -eq 0 ] && cmp -s "$tmp/big.out" "$root/big.bin" &&
    [ "$src" -eq 0 ] && grep -q '^shutting down: 1 connection' "$tmp/graceful-$alpn.out"; then
    pass "$alpn: SIGINT let the download in flight finish, server exit 0"
  else
    fail "$alpn: graceful: client $crc, server $src: $(cat "$tmp/client.err" "$tmp/graceful-$alpn.out")"
  fi

  # ---- second signal: closed at once, the client told so ------------------
  start_bare_server "twice-$alpn" --root "$root"
  rm -f "$tmp/big.out" "$tmp/big.out.part"
  t0=$(now)
  "$CLIENT" --alpn "$alpn" -k --quiet -o "$tmp/big.out" \
    "https://127.0.0.1:$PORT/big.bin" 2>"$tmp/client.err" &
  cpid=$!
  pids+=("$cpid")
  wait_bytes "$tmp/big.out.part" 1 || true
  kill -INT "$SERVER_PID"
  kill -TERM "$SERVER_PID"
  crc=0
  wait "$cpid" || crc=$?
  ms=$((($(now) - t0) / 1000000))
  src=0
  wait "$SERVER_PID" || src=$?
  if [ "$crc" -ne 0 ] && grep -q 'connection closed' "$tmp/client.err" &&
    [ "$ms" -lt 3000 ] && [ "$src" -eq 0 ]; then
    pass "$alpn: a second signal closed at once; the client saw CONNECTION_CLOSE after ${ms} ms"
  else
    fail "$alpn: second signal: client $crc after ${ms} ms, server $src: $(cat "$tmp/client.err")"
  fi

  # ---- the deadline --------------------------------------------------------
  # Four copies of the file on one connection outlast 0.2 s.
  start_bare_server "deadline-$alpn" --root "$root" --shutdown-timeout 0.2
  mkdir -p "$tmp/dl"
  rm -f "$tmp/dl"/*
  t0=$(now)
  "$CLIENT" --alpn "$alpn" -k --quiet --output-dir "$tmp/dl" \
    "https://127.0.0.1:$PORT/big.bin" "https://127.0.0.1:$PORT/big.bin?1" \
    "https://127.0.0.1:$PORT/big.bin?2" "https://127.0.0.1:$PORT/big.bin?3" \
    2>"$tmp/client.err" &
  cpid=$!
  pids+=("$cpid")
  sleep 0.2
  kill -TERM "$SERVER_PID"
  src=0
  wait "$SERVER_PID" || src=$?
  crc=0
  wait "$cpid" || crc=$?
  ms=$((($(now) - t0) / 1000000))
  if [ "$src" -eq 0 ] && [ "$crc" -ne 0 ] && grep -q 'connection closed' "$tmp/client.err" &&
    [ "$ms" -lt 5000 ]; then
    pass "$alpn: --shutdown-timeout 0.2 closed the connection (${ms} ms in all)"
  else
    fail "$alpn: deadline: server $src, client $crc after ${ms} ms: $(cat "$tmp/client.err")"
  fi
done

# ---- an idle connection does not hold the shutdown up -----------------------
start_bare_server idle --root "$root"
"$CLIENT" -k --quiet --connections 1 --concurrency 1 --hold 30 \
  "https://127.0.0.1:$PORT/nothing" >"$tmp/hold.out" 2>&1 &
cpid=$!
pids+=("$cpid")
for i in $(seq 1 100); do
  grep -q ' h3 GET /nothing 404 ' "$tmp/idle.out" && break
  sleep 0.05
done
t0=$(now)
kill -TERM "$SERVER_PID"
src=0
wait "$SERVER_PID" || src=$?
ms=$((($(now) - t0) / 1000000))
kill -TERM "$cpid" 2>/dev/null || true
wait "$cpid" 2>/dev/null || true
if [ "$src" -eq 0 ] && [ "$ms" -lt 3000 ] &&
  grep -q '^shutting down: 1 connection' "$tmp/idle.out"; then
  pass "an idle h3 connection closed at once on SIGTERM (${ms} ms)"
else
  fail "idle: server $src after ${ms} ms: $(cat "$tmp/idle.out")"
fi

# ---- the socket-buffer clamp warning -----------------------------------------
# Unprivileged, the 8 MiB buffers are clamped to net.core.[rw]mem_max: above
# the 96000 bytes one connection needs that is said only with -v.
rmem=$(cat /proc/sys/net/core/rmem_max)
wmem=$(cat /proc/sys/net/core/wmem_max)
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  command -v setpriv >/dev/null && as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
if [ "$(id -u)" -eq 0 ] && [ ${#as_user[@]} -eq 0 ]; then
  echo "note: root without setpriv: the clamp checks are left out"
elif [ "$rmem" -ge $((8 << 20)) ] && [ "$wmem" -ge $((8 << 20)) ]; then
  echo "note: net.core.[rw]mem_max >= 8 MiB: nothing is clamped, checks left out"
elif [ "$rmem" -lt 96000 ] || [ "$wmem" -lt 96000 ]; then
  echo "note: net.core.[rw]mem_max below 96000: the warning is due, checks left out"
else
  for v in "" -v; do
    timeout -s INT 1 "${as_user[@]}" "$SERVER" --listen 127.0.0.1:0 --root / $v \
      >/dev/null 2>"$tmp/clamp$v.err" || true
  done
  if ! grep -q clamped "$tmp/clamp.err" &&
    grep -q '\[info\] UDP socket buffers clamped: .*enough for one connection, 96000' "$tmp/clamp-v.err"; then
    pass "clamp to ${rmem}/${wmem}: silent without -v, an info line with -v"
  else
    fail "clamp: without -v: $(cat "$tmp/clamp.err"); with -v: $(cat "$tmp/clamp-v.err")"
  fi
fi

# ---- UVQ_UV_NO_GSO / UVQ_UV_NO_GRO: the tools' overrides of uvq_uv_config ---
# The server's exit line "datapath: ... gso_messages=N ... gro_buffers=N"
# after a 4 MiB download, with and without the variables.
head -c $((4 << 20)) /dev/zero >"$root/four.bin"
datapath_field() { sed -n "s/^datapath: .* $2=\([0-9]*\).*/\1/p" "$tmp/$1.out"; }
for run in gso-on gso-off; do
  if [ "$run" = gso-off ]; then
    export UVQ_UV_NO_GSO=1 UVQ_UV_NO_GRO=1
  fi
  start_bare_server "$run" --root "$root"
  UPID=$SERVER_PID
  "$CLIENT" -k --quiet -o "$tmp/four.out" "https://127.0.0.1:$PORT/four.bin" ||
    fail "$run: download failed"
  stop_server "$run"
  unset UVQ_UV_NO_GSO UVQ_UV_NO_GRO
done
on=$(datapath_field gso-on gso_messages)
off=$(datapath_field gso-off gso_messages)
gro_off=$(datapath_field gso-off gro_buffers)
if [ -z "$on" ] || [ -z "$off" ] || [ -z "$gro_off" ]; then
  fail "no datapath line: $(cat "$tmp/gso-on.out" "$tmp/gso-off.out")"
elif [ "$off" -ne 0 ] || [ "$gro_off" -ne 0 ]; then
  fail "UVQ_UV_NO_GSO=1 UVQ_UV_NO_GRO=1: gso_messages=$off gro_buffers=$gro_off"
elif [ "$on" -eq 0 ]; then
  echo "note: no GSO message without UVQ_UV_NO_GSO either (a kernel without GSO?)"
else
  pass "UVQ_UV_NO_GSO=1 UVQ_UV_NO_GRO=1: gso_messages $on -> 0, gro_buffers 0"
fi

# ---- --version, --help --------------------------------------------------------
if "$SERVER" --version | grep -Eq '^uvquic-server [0-9.]+ \(ngtcp2 [0-9.]+, nghttp3 [0-9.]+, GnuTLS [0-9.]+\)$'; then
  pass "--version: $("$SERVER" --version)"
else
  fail "--version: $("$SERVER" --version 2>&1)"
fi
"$SERVER" --help >"$tmp/help.txt"
# Every long option of the server's table and of cli.h's common ones.
missing=()
for opt in $(sed -n 's/^ *{"\([a-z0-9-]*\)", *\(no\|required\|optional\)_argument.*/\1/p' \
  "$S/apps/uvquic-server.c" "$S/apps/cli.h" | sort -u); do
  grep -q -- "--$opt\b" "$tmp/help.txt" || missing+=("$opt")
done
nopts=$(sed -n 's/^ *{"\([a-z0-9-]*\)", *\(no\|required\|optional\)_argument.*/\1/p' \
  "$S/apps/uvquic-server.c" | wc -l)
if [ ${#missing[@]} -eq 0 ] && [ "$nopts" -gt 20 ]; then
  pass "--help names all $nopts server options and the common ones"
else
  fail "--help does not mention: ${missing[*]} ($nopts options found)"
fi

interop_done
