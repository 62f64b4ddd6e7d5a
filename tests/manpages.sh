#!/usr/bin/env bash
# The man pages of uvquic-server and uvquic-client: built (scdoc), rendered
# by man -l without a groff warning, and covering every option the tool's
# --help lists (so a new option without documentation fails here).
set -euo pipefail
B=${UVQ_BUILD_DIR:?UVQ_BUILD_DIR must point at the build directory}
S=${UVQ_SOURCE_DIR:?UVQ_SOURCE_DIR must point at the source directory}
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
for tool in uvquic-server uvquic-client; do
  page=$B/man/$tool.1
  src=$S/man/$tool.1.scd
  [ -s "$page" ] || { fail "$page was not built"; continue; }
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null || true)
  [ -z "$warnings" ] || fail "$tool.1: $warnings"
  text=$(MANWIDTH=80 man -l "$page" 2>/dev/null)
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS ENVIRONMENT FILES "EXIT STATUS"; do
    grep -q "^$section" <<<"$text" || fail "$tool.1 has no $section section"
  done
  missing=0
  for opt in $("$B/$tool" --help 2>&1 | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u); do
    if ! grep -q -- "\*$opt\*" "$src"; then
      fail "$tool.1 does not document $opt"
      missing=1
    fi
  done
  [ $missing -eq 1 ] || echo "ok: $tool.1 renders and documents every option of --help"
done
[ "$failures" -eq 0 ] || exit 1
