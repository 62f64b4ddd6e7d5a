#!/usr/bin/env bash
# Builds the API reference from the public headers with Doxygen into
# BUILD_DIR/docs/html (default build/docs/html) and fails if Doxygen warns:
# an undocumented public function, type, member or macro, or a broken
# comment. scripts/test.sh runs it.
#   scripts/docs.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/build}/docs
command -v doxygen >/dev/null || "$here/scripts/deps.sh"
mkdir -p "$out"
version=$(sed -n 's/^#define UVQ_VERSION "\(.*\)"$/\1/p' "$here/include/uvquic/uvquic.h")
cd "$here"
{
  cat docs/Doxyfile
  echo "OUTPUT_DIRECTORY = $out"
  echo "PROJECT_NUMBER = $version"
  echo "WARN_LOGFILE = $out/warnings.log"
} | doxygen - >/dev/null
n=$(grep -c . "$out/warnings.log" || true)
if [ "$n" -ne 0 ]; then
  sed "s|$here/||" "$out/warnings.log" | head -n 60
  echo "docs: $n Doxygen warning(s) (list: $out/warnings.log)" >&2
  exit 1
fi
echo "docs: API reference in $out/html/index.html, no warnings"
