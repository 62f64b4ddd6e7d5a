#!/usr/bin/env bash
# Builds the Debian packages (libuvquic0, libuvquic-dev, uvquic-tools) with
# dpkg-buildpackage -us -uc -b and checks them with lintian (errors fail).
# Builds from a copy of the source tree (the files git tracks, as they are
# on disk now), so the tree stays clean; the .debs land in OUT_DIR.
#   scripts/build-debs.sh [OUT_DIR]     (default out/debs)
# DEB_BUILD_OPTIONS passes through (e.g. nocheck, parallel=2).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$here/out/debs}")
"$here/scripts/deps.sh"

version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version)
work=$(mktemp -d /tmp/uvquic-debs.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/uvquic-$version
mkdir -p "$src"
# The files git tracks (and untracked ones it does not ignore), as on disk;
# without git (an unpacked archive), everything but build output.
sources() {
  if command -v git >/dev/null && git -C "$here" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$here" ls-files -z --cached --others --exclude-standard |
      (cd "$here" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh)
  else
    (cd "$here" && find . \( -path ./.git -o -path './build*' -o -path ./out \
      -o -path ./Testing \) -prune -o -type f -print0)
  fi
}
sources | (cd "$here" && tar --null -T - -cf -) | tar -xf - -C "$src"

export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-parallel=$(nproc)}
if ! (cd "$src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
  mkdir -p "$out" && cp "$work/build.log" "$out/build.log"
  tail -n 60 "$work/build.log"
  echo "build-debs: dpkg-buildpackage failed" >&2
  exit 1
fi
mkdir -p "$out"
cp "$work/build.log" "$out/build.log"
changes=$(ls "$work"/uvquic_"$version"_*.changes)
cp "$work"/*.deb "$work"/*.buildinfo "$changes" "$out/"
echo "build-debs: $(cd "$out" && ls ./*.deb | tr '\n' ' ')in $out"
lintian --fail-on error "$out/$(basename "$changes")" || {
  echo "build-debs: lintian reports errors" >&2
  exit 1
}
echo "build-debs: lintian: no errors"
