#!/usr/bin/env bash
# Runs every uvquic test: a normal build (-Werror), then the same suite under
# AddressSanitizer + UndefinedBehaviorSanitizer. Installs what is missing.
#   scripts/test.sh            both passes
#   scripts/test.sh --quick    the normal pass only
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

jobs=$(nproc)
status=0

echo "== uvquic tests: normal build (-Werror) =="
"$here/scripts/build.sh" "$here/build"
(cd "$here/build" && ctest --output-on-failure -j"$jobs") || status=1

if [ $quick -eq 0 ]; then
  echo "== uvquic tests: ASan + UBSan build =="
  "$here/scripts/build.sh" "$here/build-asan" -DUVQ_ASAN=ON -DUVQ_UBSAN=ON \
    -DCMAKE_BUILD_TYPE=Debug
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export UVQ_SANITIZED=1
  (cd "$here/build-asan" && ctest --output-on-failure -j"$jobs") || status=1
fi
exit $status
