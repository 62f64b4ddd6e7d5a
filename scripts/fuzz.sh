#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang, ASan and UBSan, writes
# the seed corpora and runs each harness for N seconds (default 60).
#   scripts/fuzz.sh [seconds] [harness...]
# Harnesses: router token cid_map h3_request http_path http_cond
# mime_types quic_lb. Findings (crash-*, leak-*,
# timeout-*) land in build-fuzz/findings/<harness>/; copy a fixed one into
# fuzz/corpus/<harness>/ so tests/test_fuzz_corpus.c replays it in CI.
# Replay one: build-fuzz/fuzz/fuzz_<harness> FILE. The harnesses take the
# library's randomness from the input (endpoints: qt_world_reseed; tokens'
# nonces; the CID map's hash key) and run on a fake clock, so a finding
# replays the same draws in a fresh process. Only GnuTLS's own randomness
# (TLS keys, the client random) still differs run to run: injected bytes
# fail decryption under any key, but a finding that needs the live
# connection's exact ciphertext may not replay.
# For a long run: scripts/fuzz.sh 3600 router (or -jobs via FUZZ_ARGS).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
all=(router token cid_map h3_request http_path http_cond mime_types quic_lb)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")

"$here/scripts/deps.sh"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
apt_install() {
  echo "uvquic fuzz: installing $*" >&2
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
    --no-install-recommends "$@" >/dev/null
}
# clang, then the libFuzzer/ASan runtime of that clang's version
# (libclang-rt-14-dev on bookworm, libclang-rt-19-dev on trixie).
command -v clang >/dev/null || apt_install clang
fuzz_links() {
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
    clang -x c -fsanitize=fuzzer,address - -o /dev/null >/dev/null 2>&1
}
fuzz_links || apt_install "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"

build="$here/build-fuzz"
CC=clang cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DUVQ_FUZZ=ON -DUVQ_ASAN=ON -DUVQ_UBSAN=ON -DUVQ_TESTS=OFF \
  -DUVQ_BENCH=OFF -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${all[@]/#/fuzz_}" \
  fuzz_gen_seeds >/dev/null

"$build/fuzz/fuzz_gen_seeds" "$build/seeds"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for h in "${harnesses[@]}"; do
  corpus="$build/corpus/$h"
  findings="$build/findings/$h"
  mkdir -p "$corpus" "$findings"
  cp -n "$build/seeds/$h"/* "$corpus/" 2>/dev/null || true
  [ -d "$here/fuzz/corpus/$h" ] && cp -n "$here/fuzz/corpus/$h"/* "$corpus/" 2>/dev/null || true
  echo "== fuzz_$h for ${secs}s =="
  log="$build/fuzz_$h.log"
  if ! "$build/fuzz/fuzz_$h" -max_total_time="$secs" -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="$findings/" ${FUZZ_ARGS:-} \
      "$corpus" >"$log" 2>&1; then
    echo "fuzz_$h: FOUND something, see $log and $findings" >&2
    status=1
  fi
  grep -E "^#[0-9]+.*(DONE|pulse)" "$log" | tail -1 || true
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "$log" || true
done
exit $status
