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
# git's list of C sources; without git or a .git (an unpacked archive, a
# fresh machine) the same files found by name, build directories left out.
list_sources() {
  if command -v git >/dev/null && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -- '*.c' '*.h'
  else
    find . \( -path ./.git -o -path './build*' -o -path ./out -o -path ./Testing \) -prune -o \
      -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | sort
  fi
}
mapfile -t files < <(list_sources | grep -v -E '^bench/(udpbench|ngtcp2_ceiling)\.c$')
if [ ${#files[@]} -eq 0 ]; then
  echo "format: no C sources found in $here" >&2
  exit 1
fi
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
