#!/usr/bin/env bash
# Installs the build into a temporary prefix (cmake --install) and builds
# examples/ against that installation twice, through pkg-config and through
# find_package(uvquic), then runs each pair: the hq echo server and client,
# the HTTP/3 server and client, the epoll server (core only: ldd must show
# neither libuv nor nghttp3) with the hq client. Also checks that the README
# quotes examples/hq_echo_server.c verbatim, that `pkg-config --libs uvquic`
# is the core alone, and that uvq_version() is the installed version.
# Needs UVQ_BUILD_DIR and UVQ_SOURCE_DIR (set by ctest); UVQ_EXAMPLE_FLAGS
# carries the build's sanitizer flags.
set -euo pipefail
B=${UVQ_BUILD_DIR:?UVQ_BUILD_DIR must point at the build directory}
S=${UVQ_SOURCE_DIR:?UVQ_SOURCE_DIR must point at the source directory}
flags=${UVQ_EXAMPLE_FLAGS:-}

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

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

P=$tmp/prefix
cmake --install "$B" --prefix "$P" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; exit 1; }
libdir=$(dirname "$(find "$P" -name libuvquic.so.0 | head -n 1)")
export PKG_CONFIG_PATH=$libdir/pkgconfig
export LD_LIBRARY_PATH=$libdir

# The README's library example is hq_echo_server.c, quoted whole.
awk '/^<!-- example: examples\/hq_echo_server.c -->/ { on = 1; next }
     on && /^```c$/ { inblock = 1; next }
     inblock && /^```$/ { exit }
     inblock { print }' "$S/README.md" >"$tmp/readme.c"
if cmp -s "$tmp/readme.c" "$S/examples/hq_echo_server.c"; then
  pass "README quotes examples/hq_echo_server.c verbatim"
else
  fail "README's example differs from examples/hq_echo_server.c"
  diff "$S/examples/hq_echo_server.c" "$tmp/readme.c" | head -n 20 || true
fi

ver=$(pkg-config --modversion uvquic)
core_libs=$(pkg-config --libs uvquic)
if [[ " $core_libs " =~ \ -luvquic\  ]] &&
  ! [[ " $core_libs " =~ \ -l(uv|nghttp3|uvquic_uv|uvquic_h3)\  ]]; then
  pass "pkg-config --libs uvquic is the core alone: $core_libs"
else
  fail "pkg-config --libs uvquic: $core_libs"
fi

# Build 1: pkg-config.
mkdir -p "$tmp/pc"
cc_ex() { # NAME MODULES...
  local name=$1
  shift
  # shellcheck disable=SC2046,SC2086
  cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $flags \
    -o "$tmp/pc/$name" "$S/examples/$name.c" $(pkg-config --cflags --libs "$@")
}
if cc_ex hq_echo_server uvquic_uv && cc_ex hq_echo_client uvquic_uv &&
  cc_ex h3_server uvquic_h3 uvquic_uv && cc_ex h3_client uvquic_h3 uvquic_uv &&
  cc_ex epoll_server uvquic; then
  pass "examples build with pkg-config"
else
  fail "examples do not build with pkg-config"
fi

# Build 2: CMake package.
if cmake -S "$S/examples" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$P" \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror $flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$tmp/cm.log" 2>&1 &&
  cmake --build "$tmp/cm" >>"$tmp/cm.log" 2>&1; then
  pass "examples build with find_package(uvquic)"
else
  cat "$tmp/cm.log"
  fail "examples do not build with find_package(uvquic)"
fi

# start NAME ARGS...: starts a server, sets PORT once it printed its port.
start() {
  local log=$tmp/server.$RANDOM
  : >"$log" # exists before the loop reads it (the child opens it later)
  "$@" >"$log" 2>&1 &
  pids+=($!)
  SPID=$!
  PORT=
  for _ in $(seq 1 100); do
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  SLOG=$log
  [ -n "$PORT" ] || { cat "$log"; fail "$* did not start"; }
}
stop() { kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; }

mkdir -p "$tmp/www"
head -c 300000 /dev/urandom >"$tmp/www/blob"

for how in pc cm; do
  d=$tmp/$how
  [ -x "$d/epoll_server" ] || continue
  # ldd's output whole first: with pipefail, grep -q leaving early could
  # fail the pipeline on ldd's SIGPIPE.
  deps=$(ldd "$d/hq_echo_server")
  if grep -q "$libdir/libuvquic_uv.so.0" <<<"$deps"; then
    pass "$how: examples use the installed libraries"
  else
    fail "$how: hq_echo_server does not load $libdir/libuvquic_uv.so.0"
  fi

  start "$d/hq_echo_server"
  out=$(timeout 20 "$d/hq_echo_client" 127.0.0.1 "$PORT" /hello /a/b 2>"$tmp/err") || true
  if [ "$out" = $'/hello\n/a/b' ] || [ "$out" = $'/a/b\n/hello' ]; then
    pass "$how: hq echo"
  else
    cat "$tmp/err" "$SLOG"
    fail "$how: hq echo printed '$out'"
  fi
  stop

  start "$d/h3_server"
  out=$(timeout 20 "$d/h3_client" "https://127.0.0.1:$PORT/" 2>"$tmp/err") || true
  if [ "$out" = "hello from uvquic over HTTP/3" ]; then
    pass "$how: h3 GET /"
  else
    cat "$tmp/err" "$SLOG"
    fail "$how: h3 GET / printed '$out'"
  fi
  if ! timeout 20 "$d/h3_client" "https://127.0.0.1:$PORT/nope" >/dev/null 2>"$tmp/err" &&
    grep -q "status 404" "$tmp/err"; then
    pass "$how: h3 GET /nope is a 404"
  else
    cat "$tmp/err"
    fail "$how: h3 GET /nope"
  fi
  stop

  deps=$(ldd "$d/epoll_server")
  if grep -Eq 'libuv\.so|libnghttp3|libuvquic_(uv|h3)' <<<"$deps"; then
    fail "$how: epoll_server links more than the core: $(tr '\n' ' ' <<<"$deps")"
  else
    pass "$how: epoll_server links neither libuv nor nghttp3"
  fi
  start "$d/epoll_server" "$tmp/www"
  if grep -q "^uvquic $ver listening" "$SLOG"; then
    pass "$how: uvq_version() is $ver"
  else
    fail "$how: uvq_version() is not $ver: $(cat "$SLOG")"
  fi
  timeout 20 "$d/hq_echo_client" 127.0.0.1 "$PORT" /blob >"$tmp/got" 2>"$tmp/err" || true
  if cmp -s "$tmp/got" "$tmp/www/blob"; then
    pass "$how: epoll_server served a 300 kB file"
  else
    cat "$tmp/err" "$SLOG"
    fail "$how: epoll_server's file differs"
  fi
  stop
done

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "examples: all passed"
