#!/usr/bin/env bash
# Runs clang-tidy (.clang-tidy at the root says which checks, and why some
# are off) over the library and the tools (src/*/*.c, apps/*.c,
# apps/client/*.c) with BUILD_DIR/compile_commands.json, which every CMake
# configure of this tree writes. One clang-tidy per file, in parallel.
# With clang-tidy 14 (Debian 12: what CI runs) any finding fails (exit 1);
# with another version the findings are printed and the exit status is 0:
# newer versions bring checks this tree was not vetted against (Debian 13
# has 19), and they must not break scripts/test.sh there.
#   scripts/tidy.sh [BUILD_DIR]      (default build/)
# UVQ_TIDY_JOBS: parallel jobs (default: nproc). About 2 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
db=$build/compile_commands.json
if [ ! -f "$db" ]; then
  echo "tidy: no $db (configure first: scripts/build.sh $build)" >&2
  exit 1
fi
tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
if [ -z "$tidy" ]; then
  "$here/scripts/deps.sh"
  tidy=$(command -v clang-tidy)
fi
major=$("$tidy" --version | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p')
gate=0
[ "$major" = 14 ] && gate=1

# Files whose findings are shown but do not fail the run, each with why
# (none now: keep the mechanism for a file under rework elsewhere).
report_only=()

out=$(mktemp -d /tmp/uvquic-tidy.XXXXXX)
trap 'rm -rf "$out"' EXIT
cd "$here"
files=(src/*/*.c apps/*.c apps/client/*.c)
start=$(date +%s)
# One log per file (src/core/conn.c -> src_core_conn.c.log); a file
# clang-tidy fails on (a compile error) is listed in $out/failed.
printf '%s\n' "${files[@]}" |
  xargs -P "${UVQ_TIDY_JOBS:-$(nproc)}" -I{} sh -c '
    log="$1/$(echo "$2" | tr / _).log"
    "$3" --quiet -p "$4" "$2" >"$log" 2>&1 || echo "$2" >>"$1/failed"
  ' sh "$out" {} "$tidy" "$build"
secs=$(($(date +%s) - start))

is_report_only() {
  local f
  for f in "${report_only[@]}"; do
    [ "$1" = "$f" ] && return 0
  done
  return 1
}
# Print each file's findings with their explanations; count the findings
# (a header's once, however many sources include it) that gate.
: >"$out/gating"
for f in "${files[@]}"; do
  log="$out/$(echo "$f" | tr / _).log"
  grep -qE ': (warning|error): ' "$log" || continue
  grep -vE '^[0-9]+ (warning|error)s? generated\.$|^Error while processing|^Suppressed ' "$log"
  if ! is_report_only "$f"; then
    grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$log" >>"$out/gating" || true
  fi
done
n=$(sort -u "$out/gating" | grep -c . || true)
failed=()
if [ -s "$out/failed" ]; then
  while read -r f; do
    is_report_only "$f" || failed+=("$f")
  done <"$out/failed"
fi
summary="clang-tidy $major, ${#files[@]} files, ${secs}s: $n finding(s)"
[ ${#report_only[@]} -gt 0 ] && summary+=" (not counting ${report_only[*]})"
if [ "$gate" -eq 0 ]; then
  echo "tidy: $summary; report only (gating is with clang-tidy 14)"
elif [ "$n" -gt 0 ] || [ ${#failed[@]} -gt 0 ]; then
  [ ${#failed[@]} -gt 0 ] && echo "tidy: clang-tidy failed on: ${failed[*]}" >&2
  echo "tidy: $summary: FAILED" >&2
  exit 1
else
  echo "tidy: $summary"
fi
