#!/usr/bin/env bash
# The uvquic demo: builds everything (scripts/build.sh), serves a 20 MiB
# random file with uvquic-server on 127.0.0.1 (port picked by the kernel),
# downloads it with uvquic-client over QUIC — HTTP/3, then hq-interop from
# the same server — verifying the server's ephemeral certificate, checks the
# SHA-256 of both, shows the server's access log, and shuts the server down
# with SIGTERM. Exits non-zero if any step fails.
#   scripts/demo.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}

echo "== building uvquic into $build"
"$here/scripts/build.sh" "$build"
server_bin=$build/uvquic-server
client_bin=$build/uvquic-client

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/www" "$work/download"

size=$((20 * 1024 * 1024))
head -c "$size" /dev/urandom >"$work/www/demo.bin"

"$server_bin" --listen 127.0.0.1:0 --root "$work/www" \
  --write-cert "$work/cert.pem" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 300); do
  grep -q '^listening on ' "$work/server.out" && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "demo: the server did not start:" >&2
    cat "$work/server.err" >&2
    exit 1
  fi
  sleep 0.1
done
port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/server.out")
if [ -z "$port" ]; then
  echo "demo: no port in the server's output" >&2
  exit 1
fi
echo "== $(head -n1 "$work/server.out")"

url="https://127.0.0.1:$port/demo.bin"
want=$(sha256sum <"$work/www/demo.bin" | cut -d' ' -f1)
for alpn in h3 hq-interop; do
  echo "== downloading $url over $alpn"
  rm -f "$work/download/demo.bin"
  if ! "$client_bin" --alpn "$alpn" --ca "$work/cert.pem" \
    --output-dir "$work/download" "$url" 2>"$work/client.err"; then
    echo "demo: download failed:" >&2
    cat "$work/client.err" >&2
    exit 1
  fi
  got=$(sha256sum <"$work/download/demo.bin" | cut -d' ' -f1)
  got_size=$(stat -c %s "$work/download/demo.bin")
  echo "size:    $got_size bytes (expected $size)"
  echo "sha256:  $got"
  if [ "$want" = "$got" ] && [ "$got_size" -eq "$size" ]; then
    echo "match:   yes"
  else
    echo "match:   NO (expected $want)" >&2
    exit 1
  fi
  echo "client:  $(tail -n1 "$work/client.err")"
done

kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=
if [ "$rc" -ne 0 ]; then
  echo "demo: the server exited $rc after SIGTERM" >&2
  cat "$work/server.err" >&2
  exit 1
fi
echo "== server access log"
grep -E ' (h3|hq) ' "$work/server.out" || true
stats=$(grep '^stats: ' "$work/server.out" || true)
echo "server:  stopped cleanly${stats:+; $stats}"
echo "== demo OK"
