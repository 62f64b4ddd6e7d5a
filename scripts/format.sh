#!/usr/bin/env bash
# Checks (default) or applies (--fix) the repository's .clang-format on
# every C source of the project. The two benchmark programs copied from the
# reference notes (bench/udpbench.c, bench/ngtcp2_ceiling.c) stay byte-
# identical to the programs the notes were measured with, so they are left
# out. Installs clang-format if it is missing.
#   scripts/format.sh          exit 1 and list the files that differ
#   scripts/format.sh --fix    rewrite them
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/deps.sh"
cd "$here"
mapfile -t files < <(git ls-files -- '*.c' '*.h' | grep -v -E '^bench/(udpbench|ngtcp2_ceiling)\.c$')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf 'format: %d file(s) differ from .clang-format (scripts/format.sh --fix):\n' "${#bad[@]}"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "format: ${#files[@]} files match .clang-format"
