#!/usr/bin/env bash
# Runs every uvquic test: a normal build (-Werror), clang-tidy over the
# library and tools (scripts/tidy.sh: gating with clang-tidy 14, report-only
# with other versions), then the same suite under AddressSanitizer +
# UndefinedBehaviorSanitizer, then the threaded tests under ThreadSanitizer,
# then each libFuzzer harness for a short bounded time (UVQ_FUZZ_SECONDS,
# default 10; scripts/fuzz.sh runs them long).
# Installs what is missing.
#   scripts/test.sh            every pass
#   scripts/test.sh --quick    the normal pass only
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

jobs=$(nproc)
status=0

echo "== uvquic format check (.clang-format) =="
"$here/scripts/format.sh" || status=1

echo "== uvquic tests: normal build (-Werror) =="
"$here/scripts/build.sh" "$here/build"
(cd "$here/build" && ctest --output-on-failure -j"$jobs") || status=1

echo "== uvquic API reference (Doxygen, no warnings allowed) =="
"$here/scripts/docs.sh" "$here/build" || status=1

if [ $quick -eq 0 ]; then
  # The normal build's compile_commands.json gives each file its flags.
  echo "== uvquic clang-tidy (.clang-tidy; fails only with clang-tidy 14) =="
  "$here/scripts/tidy.sh" "$here/build" || status=1

  echo "== uvquic tests: ASan + UBSan build =="
  "$here/scripts/build.sh" "$here/build-asan" -DUVQ_ASAN=ON -DUVQ_UBSAN=ON \
    -DCMAKE_BUILD_TYPE=Debug
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export UVQ_SANITIZED=1
  (cd "$here/build-asan" && ctest --output-on-failure -j"$jobs") || status=1
  unset UVQ_SANITIZED

  # Every test that runs threads, under TSan: wakers signalled from other
  # threads (test_conn), the adapter's async handles (test_uv), its shards
  # (test_shard: threads, forward queues, the group's async), and
  # uvquic-client's output writer on libuv's threadpool (test_writer, and
  # the tool itself in client.sh; uvquic-server --threads in shards.sh).
  echo "== uvquic tests: ThreadSanitizer (threaded tests) =="
  "$here/scripts/build.sh" "$here/build-tsan" -DUVQ_TSAN=ON -DUVQ_BENCH=OFF
  (cd "$here/build-tsan" && TSAN_OPTIONS=halt_on_error=1 \
    ctest --output-on-failure \
      -R '^(test_conn|test_uv|test_shard|test_writer|client|shards)$') || status=1

  # The .debs, as dpkg-buildpackage builds them (their unit tests run
  # inside), and lintian; installing them on a fresh Debian is
  # scripts/deb-install-check.sh in scripts/fresh-debian.sh (not here: it
  # takes minutes).
  echo "== uvquic Debian packages (dpkg-buildpackage, lintian) =="
  "$here/scripts/build-debs.sh" "$here/out/debs" || status=1

  echo "== uvquic fuzzing: each harness for ${UVQ_FUZZ_SECONDS:-10} s =="
  if "$here/scripts/fuzz.sh" "${UVQ_FUZZ_SECONDS:-10}" >"$here/build-fuzz.log" 2>&1; then
    grep -E "^== |DONE" "$here/build-fuzz.log" || true
    echo "fuzz: every harness ran clean"
  else
    tail -n 40 "$here/build-fuzz.log"
    echo "fuzz: FAILED (full log: build-fuzz.log)"
    status=1
  fi
fi
exit $status
