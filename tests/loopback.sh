#!/usr/bin/env bash
# End-to-end tests of uvquic-server / uvquic-client over loopback, over HTTP/3
# (the client's default) and hq-interop (one server serves both): a 50 MiB
# download with and without Retry, 64 files on one connection, 150 files
# past the stream limit, 200 connections one after another, 20 connections
# held open by the load generator (--hold), the path jail
# (with openat2 and with the fallback resolver; h3 answers 403/404, hq
# resets the stream), the server's access log, the client's progress bars
# on a terminal (and their absence otherwise), and argument errors (exit 2).
# Needs UVQ_BUILD_DIR (set by ctest). Every server listens on port 0.
set -euo pipefail

. "$(dirname "$0")/interop/lib/interop.bash"
tools_init

# stop_server NAME: SIGTERM, and the server must exit 0.
stop_server() {
  local rc=0
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || rc=$?
  if [ "$rc" -ne 0 ]; then
    fail "server $1 exited $rc after SIGTERM"
    cat "$tmp/$1.err" >&2
  else
    pass "server $1 shut down cleanly"
  fi
}

root=$tmp/root
mkdir -p "$root" "$tmp/outside"
head -c $((50 * 1024 * 1024)) /dev/urandom >"$root/big.bin"
for i in $(seq 1 64); do
  head -c $((1000 + i * 997)) /dev/urandom >"$root/small$i.bin"
done
echo "hello" >"$root/ok.txt"
mkdir -p "$root/sub"
echo "nested" >"$root/sub/inner.txt"
echo "secret" >"$tmp/outside/secret.txt"
ln -s "$tmp/outside/secret.txt" "$root/escape"
ln -s /etc "$root/etcdir"

# ---- 50 MiB, without and with Retry, both ALPNs ----------------------------
for mode in plain retry; do
  extra=()
  [ "$mode" = retry ] && extra=(--retry)
  start_bare_server "big-$mode" --root "$root" --write-cert "$tmp/cert-$mode.pem" \
    "${extra[@]}"
  for alpn in h3 hq-interop; do
    rm -f "$tmp/big.out"
    if "$CLIENT" --alpn "$alpn" --ca "$tmp/cert-$mode.pem" -o "$tmp/big.out" \
      "https://127.0.0.1:$PORT/big.bin" 2>"$tmp/client-big-$mode.err"; then
      if [ "$(sha "$tmp/big.out")" = "$(sha "$root/big.bin")" ]; then
        pass "50 MiB download ($alpn, $mode): $(tail -n1 "$tmp/client-big-$mode.err")"
      else
        fail "50 MiB download ($alpn, $mode): sha256 differs"
      fi
    else
      fail "50 MiB download ($alpn, $mode): client failed: $(cat "$tmp/client-big-$mode.err")"
    fi
  done
  stop_server "big-$mode"
  dead_port=$PORT
done
# The access log: one line per request, with the protocol, status and the
# bytes acknowledged. h3's client shuts down gracefully, so every byte is
# acknowledged; hq-interop's closes once it has the last byte, maybe before
# acknowledging it, which the server honestly logs as aborted.
big_size=$(stat -c %s "$root/big.bin")
for alpn in h3 hq; do
  re="^127\.0\.0\.1:[0-9]+ $alpn GET /big\.bin 200 $big_size [0-9.]+s\$"
  [ "$alpn" = hq ] &&
    re="^127\.0\.0\.1:[0-9]+ hq GET /big\.bin 200 ($big_size [0-9.]+s|[0-9]+ [0-9.]+s aborted: connection closed)\$"
  if grep -Eq "$re" "$tmp/big-plain.out"; then
    pass "access log ($alpn): $(grep " $alpn GET /big.bin" "$tmp/big-plain.out")"
  else
    fail "access log ($alpn): no line for /big.bin in: $(cat "$tmp/big-plain.out")"
  fi
done

start_bare_server many --root "$root" --write-cert "$tmp/cert-many.pem"
for alpn in h3 hq-interop; do
  # ---- 64 URLs on one connection -------------------------------------------
  rm -rf "$tmp/many"
  mkdir -p "$tmp/many"
  log_before=$(wc -l <"$tmp/many.out")
  urls=()
  for i in $(seq 1 64); do
    urls+=("https://127.0.0.1:$PORT/small$i.bin")
  done
  if "$CLIENT" --alpn "$alpn" --ca "$tmp/cert-many.pem" --output-dir "$tmp/many" \
    "${urls[@]}" 2>"$tmp/client-many.err"; then
    bad=0
    for i in $(seq 1 64); do
      if ! cmp -s "$root/small$i.bin" "$tmp/many/small$i.bin"; then
        bad=$((bad + 1))
      fi
    done
    # The server logs a request when its exchange ends, which may be just
    # after the client exited: wait for the 64 lines.
    for _ in $(seq 1 100); do
      [ "$(tail -n +$((log_before + 1)) "$tmp/many.out" | grep -c ' GET /small')" -ge 64 ] && break
      sleep 0.05
    done
    peers=$(tail -n +$((log_before + 1)) "$tmp/many.out" | grep ' GET /small' |
      cut -d' ' -f1 | sort -u | wc -l)
    if [ "$bad" -eq 0 ] && grep -q '^downloaded 64 files' "$tmp/client-many.err" &&
      [ "$peers" -eq 1 ]; then
      pass "64 files on one connection ($alpn; one client address in the access log)"
    else
      fail "64 files on one connection ($alpn): $bad differ, $peers client addresses; $(cat "$tmp/client-many.err")"
    fi
  else
    fail "64 files on one connection ($alpn): client failed: $(cat "$tmp/client-many.err")"
  fi

  # ---- 150 URLs: more than the server's 100-stream limit --------------------
  # The client must queue what the limit refuses and continue when the
  # server grants more streams; bodies are discarded.
  urls=()
  for i in $(seq 1 150); do
    urls+=("https://127.0.0.1:$PORT/small$(((i - 1) % 64 + 1)).bin")
  done
  if "$CLIENT" --alpn "$alpn" -k "${urls[@]}" 2>"$tmp/client-150.err" &&
    grep -q '^downloaded 150 files' "$tmp/client-150.err"; then
    pass "150 files on one connection, stream limit 100 ($alpn)"
  else
    fail "150 files on one connection ($alpn): $(tail -n3 "$tmp/client-150.err")"
  fi

  # ---- 200 connections one after another -----------------------------------
  rm -f "$tmp/seq.out"
  if "$CLIENT" --alpn "$alpn" -k --connections 200 -o "$tmp/seq.out" \
    "https://127.0.0.1:$PORT/small7.bin" 2>"$tmp/client-seq.err" &&
    cmp -s "$tmp/seq.out" "$root/small7.bin" &&
    grep -q '^downloaded 200 files' "$tmp/client-seq.err"; then
    pass "200 sequential connections ($alpn)"
  else
    fail "200 sequential connections ($alpn): $(tail -n3 "$tmp/client-seq.err")"
  fi

  # ---- load generator: connections held open after their GETs --------------
  if "$CLIENT" --alpn "$alpn" -k --connections 20 --concurrency 5 --hold 1 \
    --keep-alive 300 "https://127.0.0.1:$PORT/small3.bin" >"$tmp/hold.out" \
    2>"$tmp/hold.err" &&
    grep -q '^hold: 20 connections established and idle (0 failed)' "$tmp/hold.out" &&
    grep -q '^hold: released 20 connections (0 had closed early)' "$tmp/hold.out" &&
    grep -q '20 ok, 0 failed' "$tmp/hold.out"; then
    pass "--hold: 20 connections held and released ($alpn)"
  else
    fail "--hold ($alpn): $(cat "$tmp/hold.out") $(head -n3 "$tmp/hold.err")"
  fi
done

# ---- progress bars: on a terminal only, never with --quiet -------------------
# script(1) gives the client a pseudo-terminal as stderr. The bars are drawn
# every 100 ms, and loopback moves 50 MiB in ~50 ms with 16384-byte
# datagrams: three rounds at 100 MB/s (--limit-rate) take over 1 s, time for
# several.
if command -v script >/dev/null; then
  script -qec "'$CLIENT' -k --connections 3 --limit-rate 100M https://127.0.0.1:$PORT/big.bin" \
    /dev/null >"$tmp/tty.out" 2>&1 </dev/null || true
  if grep -q 'big\.bin .*/ 50\.0 MiB .*/s ETA ' "$tmp/tty.out" &&
    grep -q $'\033\\[J' "$tmp/tty.out" && grep -q 'downloaded 3 files' "$tmp/tty.out"; then
    pass "progress bars on a terminal: $(grep -ao 'big\.bin [^\r]*' "$tmp/tty.out" | tail -n1)"
  else
    fail "progress bars on a terminal: $(cat -v "$tmp/tty.out" | tail -n5)"
  fi
  script -qec "'$CLIENT' -k --quiet https://127.0.0.1:$PORT/big.bin" \
    /dev/null >"$tmp/tty-quiet.out" 2>&1 </dev/null || true
  if [ ! -s "$tmp/tty-quiet.out" ]; then
    pass "--quiet on a terminal prints nothing"
  else
    fail "--quiet on a terminal printed: $(cat -v "$tmp/tty-quiet.out")"
  fi
else
  fail "script(1) (bsdutils) is missing: cannot test the progress bars"
fi
"$CLIENT" -k https://127.0.0.1:$PORT/big.bin 2>"$tmp/notty.err" || true
if [ "$(wc -l <"$tmp/notty.err")" -eq 1 ] && grep -q '^downloaded 1 files' "$tmp/notty.err"; then
  pass "no progress bars when stderr is a file"
else
  fail "stderr to a file: $(cat -v "$tmp/notty.err")"
fi
stop_server many

# ---- IPv6 ------------------------------------------------------------------
"$SERVER" --listen '[::1]:0' --root "$root" >"$tmp/v6.out" 2>&1 &
v6pid=$!
pids+=("$v6pid")
for i in $(seq 1 300); do
  grep -q '^listening on ' "$tmp/v6.out" && break
  kill -0 "$v6pid" 2>/dev/null || break
  sleep 0.1
done
if grep -q '^listening on \[::1\]:' "$tmp/v6.out"; then
  v6port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$tmp/v6.out")
  if "$CLIENT" -k --quiet -o "$tmp/v6.bin" "https://[::1]:$v6port/small3.bin" \
    2>"$tmp/client-v6.err" && cmp -s "$tmp/v6.bin" "$root/small3.bin"; then
    pass "IPv6 download from [::1]"
  else
    fail "IPv6 download: $(cat "$tmp/client-v6.err")"
  fi
elif grep -q 'cannot listen' "$tmp/v6.out"; then
  echo "skip: no IPv6 loopback here: $(cat "$tmp/v6.out")"
else
  fail "IPv6 server did not start: $(cat "$tmp/v6.out")"
fi
kill -TERM "$v6pid" 2>/dev/null || true
rc=0
wait "$v6pid" || rc=$?
# 0: clean shutdown; 2: it could not listen (no IPv6 here, reported above).
[ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || fail "IPv6 server exited $rc"

# ---- nobody listening: refused at once (ICMP port unreachable), exit 7 --------
rc=0
"$CLIENT" -k --quiet "https://127.0.0.1:$dead_port/x" 2>"$tmp/dead.err" || rc=$?
if [ "$rc" -eq 7 ] && grep -q "https://127.0.0.1:$dead_port/x: connection refused by 127.0.0.1:$dead_port" "$tmp/dead.err"; then
  pass "no server: exit 7: $(head -n1 "$tmp/dead.err")"
else
  fail "no server: exit $rc: $(cat "$tmp/dead.err")"
fi

# ---- path jail -------------------------------------------------------------
# hq-interop refuses with a stream reset; HTTP/3 with 403 (outside the root,
# a symlink) or 404 (missing, a directory without index.html).
jail_refusal() {
  case "$1" in
  hq-interop) echo "refused by the server" ;;
  *) echo "HTTP status 40[34]" ;;
  esac
}
for resolver in openat2 fallback; do
  if [ "$resolver" = fallback ]; then
    export UVQUIC_HQ_NO_OPENAT2=1
  fi
  start_bare_server "jail-$resolver" --root "$root"
  unset UVQUIC_HQ_NO_OPENAT2
  base="https://127.0.0.1:$PORT"
  for alpn in h3 hq-interop; do
    for path in /ok.txt /sub/inner.txt; do
      if "$CLIENT" --alpn "$alpn" -k --quiet -o "$tmp/jail.out" "$base$path" \
        2>"$tmp/jail.err" && cmp -s "$tmp/jail.out" "$root$path"; then
        pass "jail ($resolver, $alpn): $path served"
      else
        fail "jail ($resolver, $alpn): $path not served: $(cat "$tmp/jail.err")"
      fi
    done
    for path in /../outside/secret.txt /sub/../../outside/secret.txt \
      //etc/passwd /escape /etcdir/passwd / /sub/ /missing.txt; do
      rc=0
      "$CLIENT" --alpn "$alpn" -k --quiet --fail "$base$path" 2>"$tmp/jail.err" || rc=$?
      if [ "$rc" -eq 22 ] && grep -q "$(jail_refusal "$alpn")" "$tmp/jail.err"; then
        pass "jail ($resolver, $alpn): $path refused: $(head -n1 "$tmp/jail.err" | sed 's/.*[0-9]\/[^:]*: //')"
      else
        fail "jail ($resolver, $alpn): $path gave exit $rc: $(cat "$tmp/jail.err")"
      fi
    done
  done
  # A directory named without its slash: 308 to the slash form on h3 (not
  # followed, reported, exit 0 as curl without -L).
  rc=0
  "$CLIENT" -k --quiet --fail "$base/sub" 2>"$tmp/jail.err" || rc=$?
  if [ "$rc" -eq 0 ] && grep -q "HTTP status 308" "$tmp/jail.err"; then
    pass "jail ($resolver, h3): /sub redirected (308)"
  else
    fail "jail ($resolver, h3): /sub gave exit $rc: $(cat "$tmp/jail.err")"
  fi
  stop_server "jail-$resolver"
  # The access log agrees: the two files served, 16 refusals, nothing else.
  served=$(grep -Ec ' (h3|hq) GET [^ ]+ 200 ' "$tmp/jail-$resolver.out" || true)
  refused=$(grep -Ec ' (h3|hq) GET [^ ]+ 40[34] ' "$tmp/jail-$resolver.out" || true)
  if [ "$served" -eq 4 ] && [ "$refused" -eq 16 ]; then
    pass "jail ($resolver): access log shows 4 served, 16 refused"
  else
    fail "jail ($resolver): access log shows $served served, $refused refused: $(cat "$tmp/jail-$resolver.out")"
  fi
done

# ---- bad input: exit 2 with a message ---------------------------------------
expect_usage() {
  local what=$1 rc=0
  shift
  "$@" >/dev/null 2>"$tmp/usage.err" </dev/null || rc=$?
  if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/usage.err")" -ge 1 ]; then
    pass "bad input ($what): $(head -n1 "$tmp/usage.err")"
  else
    fail "bad input ($what): exit $rc, stderr: $(cat "$tmp/usage.err")"
  fi
}
expect_usage "server bad address" "$SERVER" --listen nonsense
expect_usage "server bad port" "$SERVER" --listen 127.0.0.1:99999
expect_usage "server bad v6" "$SERVER" --listen '[::1:4433'
expect_usage "server missing root" "$SERVER" --listen 127.0.0.1:0 --root "$tmp/nope"
expect_usage "server missing cert" "$SERVER" --listen 127.0.0.1:0 --root "$root" \
  --cert "$tmp/nope.pem" --key "$tmp/nope.key"
expect_usage "server cert without key" "$SERVER" --cert "$tmp/cert-many.pem"
expect_usage "server unknown option" "$SERVER" --frobnicate
expect_usage "client no URL" "$CLIENT"
expect_usage "client bad scheme" "$CLIENT" ftp://127.0.0.1:1/x
expect_usage "client bad URL" "$CLIENT" 'https://[::1/x'
expect_usage "client bad port" "$CLIENT" https://127.0.0.1:70000/x
expect_usage "client -o with two URLs" "$CLIENT" -o "$tmp/x" \
  https://127.0.0.1:1/a https://127.0.0.1:1/b
expect_usage "client missing CA" "$CLIENT" --ca "$tmp/nope.pem" https://127.0.0.1:1/a
expect_usage "client bad --connections" "$CLIENT" --connections 0 https://127.0.0.1:1/a
expect_usage "client unknown option" "$CLIENT" --frobnicate https://127.0.0.1:1/a
expect_usage "client bad --alpn" "$CLIENT" --alpn h2 https://127.0.0.1:1/a
expect_usage "client --rate over hq" "$CLIENT" --alpn hq-interop --rate 10 \
  --duration 1 https://127.0.0.1:1/a

interop_done
