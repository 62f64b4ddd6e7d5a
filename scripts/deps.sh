#!/usr/bin/env bash
# Installs the Debian packages uvquic needs to build, test and benchmark.
# Safe to run repeatedly: it installs only what is missing or too old, and
# prints nothing unless it installs something or fails.
#
# uvquic needs ngtcp2 >= 1.11 and nghttp3 >= 1.8. Debian 13 (trixie) and
# later ship them. On Debian 12 (bookworm) they come from the official
# bookworm-backports suite: this script adds that suite with the URI of the
# machine's own Debian sources (it never names a mirror of its own) and
# installs those packages from it.
#   scripts/deps.sh            install what is missing
#   scripts/deps.sh --check    exit 1 (and say what) if anything is missing
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libgnutls28-dev libuv1-dev libcmocka-dev libjansson-dev
  gnutls-bin openssl coreutils procps python3 bsdutils clang-format
  # scripts/tidy.sh (clang-tidy 14 on Debian 12, 19 on Debian 13).
  clang-tidy
  # The API reference (scripts/docs.sh), the man pages (scdoc sources,
  # read with man -l) and the Debian packages (scripts/build-debs.sh).
  doxygen scdoc man-db debhelper dpkg-dev fakeroot lintian
  # File serving's media types, and the browser test's browser.
  media-types chromium
)
# Package -> minimum version; on bookworm these come from backports.
declare -A MIN=(
  [libngtcp2-dev]=1.11.0
  [libngtcp2-crypto-gnutls-dev]=1.11.0
  [libnghttp3-dev]=1.8.0
  [ngtcp2-server]=1.11.0
  [ngtcp2-client]=1.11.0
)
check_only=0
[ "${1:-}" = "--check" ] && check_only=1

installed_version() {
  # dpkg-query fails for a package it has never seen: that is "none", and
  # must not stop the script (set -e, pipefail).
  { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true; } |
    awk '$1 == "install" && $2 == "ok" && $3 == "installed" { print $4 }'
}

missing=()
for p in "${PKGS[@]}"; do
  [ -n "$(installed_version "$p")" ] || missing+=("$p")
done
stale=()
for p in "${!MIN[@]}"; do
  v=$(installed_version "$p")
  if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge "${MIN[$p]}"; then
    stale+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && [ ${#stale[@]} -eq 0 ] && exit 0
if [ $check_only -eq 1 ]; then
  echo "uvquic: missing or too old: ${missing[*]} ${stale[*]}" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/uvquic-deps.XXXXXX.log)
trap 'rm -f "$log"' EXIT
fail() {
  cat "$log" >&2
  echo "uvquic: $1 (log above)" >&2
  exit 1
}

# debian_uri SUITE (the URI of the machine's own source for SUITE).
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt-source.sh"

. /etc/os-release
target=()
if [ ${#stale[@]} -gt 0 ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  # An enabled source already serving bookworm-backports (commented-out,
  # deb-src-only and Enabled: no entries do not count).
  if [ -z "$(debian_uri bookworm-backports)" ]; then
    line=$(debian_uri bookworm)
    uri=${line%%$'\t'*}
    keyring=${line#*$'\t'}
    [ -n "$uri" ] || {
      echo "uvquic: no enabled apt source serves bookworm; cannot add bookworm-backports" >&2
      exit 1
    }
    {
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\n' "$uri"
      # if, not &&: a false test here would fail the pipeline (set -e)
      if [ -n "$keyring" ]; then printf 'Signed-By: %s\n' "$keyring"; fi
    } | $SUDO tee /etc/apt/sources.list.d/uvquic-bookworm-backports.sources >/dev/null
  fi
  target=(-t bookworm-backports)
fi

echo "uvquic: installing ${missing[*]} ${stale[*]}" >&2
$SUDO apt-get update -q >"$log" 2>&1 || fail "apt-get update failed"
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
    fail "package installation failed"
fi
if [ ${#stale[@]} -gt 0 ]; then
  $SUDO apt-get install -y -q --no-install-recommends "${target[@]}" "${stale[@]}" >>"$log" 2>&1 ||
    fail "installing ${stale[*]} failed"
  for p in "${stale[@]}"; do
    v=$(installed_version "$p")
    if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge "${MIN[$p]}"; then
      fail "$p ${v:-(none)} installed, uvquic needs >= ${MIN[$p]}"
    fi
  done
fi
