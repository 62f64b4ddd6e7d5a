#!/usr/bin/env bash
# Installs the Debian (bookworm) packages uvquic needs to build, test and
# benchmark. Safe to run repeatedly: it installs only what is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
  libuv1-dev libnghttp3-dev libcmocka-dev libjansson-dev
  ngtcp2-server ngtcp2-client
  gnutls-bin openssl coreutils procps python3 bsdutils clang-format
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "uvquic: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/uvquic-deps.XXXXXX.log)
if ! { $SUDO apt-get update -q && \
       $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
     >"$log" 2>&1; then
  cat "$log" >&2
  echo "uvquic: package installation failed (log above)" >&2
  exit 1
fi
rm -f "$log"
