#!/usr/bin/env bash
# Impairment soak (not in CI): tests/impair.sh with a 100 MiB file, every
# case (h3, hq-interop, gtlsclient, NAT rebinding) through the impairment
# relay at 5% loss, 2% reordering, 1% duplication, 0.1% corruption and
# 10 ms one-way delay, repeated N times, then a table of the times.
#
#   scripts/soak.sh [-n RUNS] [-m MIB] [-c "h3 hq gtls rebind"] [BUILD_DIR]
#
# BUILD_DIR defaults to ./build; it must hold uvquic-server, uvquic-client
# and tests/uvq_impair. Logs of failed cases are kept in ./soak-logs.
# Exit status: that of tests/impair.sh (non-zero if any case failed).
set -euo pipefail

runs=1
mib=100
cases="h3 hq gtls rebind"
while getopts n:m:c: opt; do
  case $opt in
  n) runs=$OPTARG ;;
  m) mib=$OPTARG ;;
  c) cases=$OPTARG ;;
  *) echo "usage: $0 [-n RUNS] [-m MIB] [-c CASES] [BUILD_DIR]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
echo "soak: $runs run(s) of [$cases] with $mib MiB each; build $build"
UVQ_BUILD_DIR=$build UVQ_SOURCE_DIR=$src UVQ_IMPAIR_MIB=$mib \
  UVQ_IMPAIR_RUNS=$runs UVQ_IMPAIR_CASES=$cases \
  UVQ_IMPAIR_KEEP=$PWD/soak-logs bash "$src/tests/impair.sh" 2>&1 |
  tee "$log" || rc=$?

echo
echo "case    runs  min s    median s  max s    mean Mbit/s"
for c in $cases; do
  sed -n "s/^time: $c $mib MiB \([0-9.]*\) s$/\1/p" "$log" | sort -n |
    awk -v c="$c" -v mib="$mib" '
      { t[NR] = $1; sum += $1 }
      END {
        if (NR == 0) { printf "%-7s %4d  (no successful run)\n", c, 0; exit }
        med = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
        printf "%-7s %4d  %-8.2f %-9.2f %-8.2f %.1f\n", c, NR, t[1], med,
          t[NR], mib * 8 * 1.048576 * NR / sum
      }'
done
exit "$rc"
