#!/usr/bin/env bash
# Builds the Debian packages, installs them, and builds and runs examples
# against the installed packages (pkg-config and CMake), then checks the
# tools and their man pages. Meant for a fresh machine; run it in a fresh
# debootstrap chroot with
#   scripts/fresh-debian.sh trixie scripts/deb-install-check.sh
#   scripts/fresh-debian.sh bookworm scripts/deb-install-check.sh
# (minutes: not part of every CI run). Needs root (apt-get install).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/out/debs
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

"$here/scripts/build-debs.sh" "$out"
version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
arch=$(dpkg --print-architecture)
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  "$out/libuvquic0_${version}_$arch.deb" "$out/libuvquic-dev_${version}_$arch.deb" \
  "$out/uvquic-tools_${version}_$arch.deb" >/dev/null

tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
ex=/usr/share/doc/libuvquic-dev/examples

echo "pkg-config --libs uvquic: $(pkg-config --libs uvquic)"
cc -o "$tmp/hq_echo_server" "$ex/hq_echo_server.c" $(pkg-config --cflags --libs uvquic_uv)
cc -o "$tmp/hq_echo_client" "$ex/hq_echo_client.c" $(pkg-config --cflags --libs uvquic_uv)
cc -o "$tmp/epoll_server" "$ex/epoll_server.c" $(pkg-config --cflags --libs uvquic)
cmake -S "$ex" -B "$tmp/cm" >/dev/null
cmake --build "$tmp/cm" >/dev/null
echo "examples built with pkg-config and find_package(uvquic)"

if ldd "$tmp/epoll_server" | grep -Eq 'libuv\.so|nghttp3'; then
  echo "FAIL: epoll_server links libuv or nghttp3" >&2
  exit 1
fi

"$tmp/hq_echo_server" >"$tmp/srv.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$tmp/srv.log" && break; sleep 0.1; done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/srv.log")
got=$(timeout 20 "$tmp/hq_echo_client" 127.0.0.1 "$port" /installed 2>/dev/null)
[ "$got" = "/installed" ] || { echo "FAIL: hq echo printed '$got'" >&2; exit 1; }
echo "hq echo against the installed libraries: ok"

mkdir -p "$tmp/www" && echo hello >"$tmp/www/f"
uvquic-server --listen 127.0.0.1:0 --root "$tmp/www" --quiet >"$tmp/tools.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$tmp/tools.log" && break; sleep 0.1; done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/tools.log")
"$tmp/cm/h3_client" "https://127.0.0.1:$port/f" >"$tmp/f" 2>/dev/null
uvquic-client -k --quiet -o "$tmp/g" "https://127.0.0.1:$port/f"
cmp "$tmp/www/f" "$tmp/f" && cmp "$tmp/www/f" "$tmp/g"
echo "uvquic-server and uvquic-client from uvquic-tools: ok"

for page in uvquic-server uvquic-client; do
  man -l "/usr/share/man/man1/$page.1.gz" | grep -q "EXIT STATUS"
done
echo "man pages render: ok"
echo "deb-install-check: PASSED ($(. /etc/os-release && echo "$PRETTY_NAME"))"
