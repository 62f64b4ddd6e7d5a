#!/usr/bin/env bash
# A real browser against uvquic-server: headless Chromium (Debian's
# chromium, installed by scripts/deps.sh), forced onto QUIC for the
# server's origin (--origin-to-force-quic-on) and told to trust the
# server's ephemeral certificate by its SPKI hash
# (--ignore-certificate-errors-spki-list), loads tests/browser/index.html
# (served for "/") with a stylesheet, a script and an image. The script
# (tests/browser/app.js) checks the computed style, that the image decoded,
# that the page came over h3, downloads a 4 MB file and a byte range of it
# and compares their SHA-256 (WebCrypto) with the expected ones, and checks
# the headers and statuses of the file server (ETag, Last-Modified, 206,
# 304, 416, If-Range, HEAD, 308, percent-decoding, 400, 404, 405; with
# --mime-types and --autoindex on the IPv6 run). It writes
# one PASS/FAIL line per check into the DOM, which --dump-dom prints.
# Runs over IPv4 and IPv6 loopback. Nothing listens on TCP: a page that
# loads at all came over QUIC.
# Exit 77 (skipped) only where Chromium cannot start at all.
# Needs UVQ_BUILD_DIR and UVQ_SOURCE_DIR (set by ctest).
set -euo pipefail

: "${UVQ_SOURCE_DIR:?UVQ_SOURCE_DIR must point at the source directory}"
. "$(dirname "$0")/interop/lib/interop.bash"
tools_init
# The number of PASS lines app.js writes when everything holds.
CHECKS=30

chrome=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chrome" ]; then
  echo "SKIP: no chromium on PATH (scripts/deps.sh installs Debian's chromium)"
  exit 77
fi
flags=(--headless --disable-gpu --no-first-run --no-default-browser-check
  --disable-extensions --disable-background-networking --mute-audio
  --user-data-dir="$tmp/profile")
# Chromium's sandbox refuses to run as root.
[ "$(id -u)" -eq 0 ] && flags+=(--no-sandbox)
if ! timeout 60 "$chrome" "${flags[@]}" --dump-dom 'data:text/html,<p>up</p>' \
  >"$tmp/probe.out" 2>"$tmp/probe.err" || ! grep -q '<p>up</p>' "$tmp/probe.out"; then
  echo "SKIP: chromium ($chrome) cannot start here:"
  tail -n 5 "$tmp/probe.err"
  exit 77
fi
echo "using $("$chrome" --version 2>/dev/null | head -n1)"

# ---- the site ----------------------------------------------------------------
root=$tmp/root
mkdir -p "$root/sub"
cp "$S/tests/browser/index.html" "$S/tests/browser/style.css" \
  "$S/tests/browser/app.js" "$root/"
python3 - "$root/img.png" <<'PY'
import struct, sys, zlib
w, h = 7, 5
raw = b''.join(b'\x00' + bytes([255, 0, 0]) * w for _ in range(h))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
open(sys.argv[1], 'wb').write(b'\x89PNG\r\n\x1a\n' +
    chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
    chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
PY
size=$((4 * 1000 * 1000 + 7))
head -c "$size" /dev/urandom >"$root/big.bin"
from=1000000
to=2345677
big=$(sha256sum "$root/big.bin" | cut -d' ' -f1)
range=$(dd if="$root/big.bin" bs=1 skip="$from" count=$((to - from + 1)) \
  iflag=skip_bytes,count_bytes status=none | sha256sum | cut -d' ' -f1)
printf 'sub index\n' >"$root/sub/index.html"
printf 'space\n' >"$root/sp ace.txt"
mkdir -p "$root/list"
printf 'x\n' >"$root/list/a&<b>.txt"
printf 'custom\n' >"$root/t.uvqt"
printf 'application/x-uvq-test uvqt\n' >"$tmp/mime.types"

for family in 4 6; do
  if [ "$family" = 4 ]; then
    listen=127.0.0.1:0
  else
    if ! ip -6 addr show lo 2>/dev/null | grep -q '::1'; then
      echo "note: no IPv6 loopback here; the IPv6 run is left out"
      continue
    fi
    listen='[::1]:0'
  fi
  # IPv4: the system's media types; IPv6: --mime-types (only a custom
  # type: css, js and png then come from the built-in list) and
  # --autoindex.
  extra=()
  custom=false
  if [ "$family" = 6 ]; then
    extra=(--mime-types "$tmp/mime.types" --autoindex)
    custom=true
  fi
  printf 'window.EXPECT = {size: %d, big: "%s", from: %d, to: %d, range: "%s", custom: %s};\n' \
    "$size" "$big" "$from" "$to" "$range" "$custom" >"$root/expect.js"
  out=$tmp/server$family.out
  "$SERVER" --listen "$listen" --root "$root" --write-cert "$tmp/cert.pem" \
    --cache-control max-age=60 "${extra[@]}" >"$out" 2>"$tmp/server$family.err" &
  spid=$!
  pids+=("$spid")
  await_port "uvquic-server (IPv$family)" "$spid" "$out" "$tmp/server$family.err" \
    'listening on ' 600
  hostport=$(sed -n 's/^listening on //p' "$out")
  spki=$(openssl x509 -in "$tmp/cert.pem" -pubkey -noout |
    openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
  # Chromium 156 does not match a bracketed IPv6 literal in
  # --origin-to-force-quic-on ("[::1]:PORT" falls back to TCP, refused):
  # for IPv6 every origin is forced, which for this one page is the same.
  force=$hostport
  [ "$family" = 6 ] && force='*'
  rm -rf "$tmp/profile"
  rc=0
  timeout 120 "$chrome" "${flags[@]}" --enable-quic \
    --origin-to-force-quic-on="$force" \
    --ignore-certificate-errors-spki-list="$spki" \
    --virtual-time-budget=30000 --dump-dom "https://$hostport/" \
    >"$tmp/dom$family.html" 2>"$tmp/chrome$family.err" || rc=$?
  kill -TERM "$spid"
  wait "$spid" || true
  # One check a line; the first follows the <pre> tag.
  sed -i 's/<pre id="result">/\n/' "$tmp/dom$family.html"
  npass=$(grep -c '^PASS ' "$tmp/dom$family.html" || true)
  if [ "$rc" -eq 0 ] && grep -q '^DONE' "$tmp/dom$family.html" &&
    ! grep -q '^FAIL ' "$tmp/dom$family.html" && [ "$npass" -eq "$CHECKS" ]; then
    pass "IPv$family ($hostport): all $npass checks passed in Chromium"
  else
    fail "IPv$family ($hostport): chromium exit $rc, $npass of $CHECKS passed:"
    grep -E '^(PASS|FAIL|DONE|RUNNING)' "$tmp/dom$family.html" >&2 || head -c 2000 "$tmp/dom$family.html" >&2
    tail -n 20 "$tmp/chrome$family.err" >&2
  fi
  # The server saw the page, its parts and the range over HTTP/3.
  for want in ' h3 GET / 200 ' ' h3 GET /style.css 200 ' ' h3 GET /img.png 200 ' \
    ' h3 GET /app.js 200 ' ' h3 GET /big.bin 206 ' ' h3 GET /big.bin 304 ' \
    ' h3 GET /sp%20ace.txt?x=1 200 ' ' h3 GET /sub 308 ' ' h3 HEAD /big.bin 200 0 '; do
    if grep -q -- "$want" "$out"; then
      pass "IPv$family: access log has$want"
    else
      fail "IPv$family: access log lacks$want: $(grep ' h3 ' "$out")"
    fi
  done
done

interop_done
