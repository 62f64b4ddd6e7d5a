#!/usr/bin/env bash
# The shared libraries export exactly the functions their public headers
# declare with UVQ_EXTERN: nothing internal leaks (hidden visibility), and
# nothing declared is missing. Prints the difference when they disagree.
set -euo pipefail
src=${UVQ_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${UVQ_BUILD_DIR:-$src/build}
inc=$src/include/uvquic
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# declared HEADER...: the names of the functions declared UVQ_EXTERN.
declared() {
  cat "$@" | perl -0777 -ne '
    s{/\*.*?\*/}{}gs; s{//[^\n]*}{}g; s{^[ \t]*#[^\n]*}{}mg;
    while (/\bUVQ_EXTERN\b([^;{]*?)\b([A-Za-z_]\w*)\s*\(/gs) { print "$2\n" }' |
    sort -u
}

# exported LIB: the functions and data the library exports (not the
# sanitizer runtimes' hooks, present only in sanitizer builds).
exported() {
  nm -D --defined-only "$1" | awk '$2 ~ /^[TDBRVWi]$/ { print $3 }' |
    grep -Ev '^(__(asan|ubsan|sanitizer|lsan|tsan)|_init$|_fini$)' | sort -u
}

fail=0
check() {
  local lib=$1
  shift
  local so=$build/$lib.so
  if [ ! -e "$so" ]; then
    echo "FAIL: $so missing"
    fail=1
    return
  fi
  declared "$@" >"$tmp/declared"
  exported "$so" >"$tmp/exported"
  if [ ! -s "$tmp/declared" ]; then
    echo "FAIL: no UVQ_EXTERN declaration found in $*"
    fail=1
    return
  fi
  if ! diff -u --label "declared in headers" --label "exported by $lib.so" \
    "$tmp/declared" "$tmp/exported"; then
    echo "FAIL: $lib.so exports differ from its headers (- declared only, + exported only)"
    fail=1
  else
    echo "ok: $lib.so exports the $(wc -l <"$tmp/exported") functions its headers declare"
  fi
}

check libuvquic "$inc/uvquic.h" "$inc/uvquic_hq.h" "$inc/uvquic_lb.h"
check libuvquic_uv "$inc/uvquic_uv.h"
check libuvquic_h3 "$inc/uvquic_h3.h"
exit $fail
