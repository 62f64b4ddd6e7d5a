#!/usr/bin/env bash
# Impairment: a download through tests/tools/uvq_impair (a UDP relay that
# drops, reorders, duplicates, corrupts and delays datagrams, and can move
# the client to a new source port mid-connection) between real processes on
# loopback, at 5% loss, 2% reordering, 1% duplication, 0.1% corruption and
# 10 ms one-way delay in each direction:
#   - uvquic-client <- uvquic-server, h3
#   - uvquic-client <- uvquic-server, hq-interop
#   - gtlsclient    <- uvquic-server, h3
#   - uvquic-client <- uvquic-server, h3, with a NAT rebinding once the
#     relay has forwarded a third of the file (the server must follow the
#     client to its new port: the relay counts server datagrams to it)
# Each download must be byte-identical (sha256), and the relay's counters
# must show every impairment happened. One summary line per case, with the
# time taken (reported, never asserted; the timeout is only a hang guard).
#
# Environment (scripts/soak.sh sets these): UVQ_IMPAIR_MIB (file size,
# default 10), UVQ_IMPAIR_RUNS (repeat every case, default 1),
# UVQ_IMPAIR_SEED (first relay seed, default 1; each run and case gets its
# own), UVQ_IMPAIR_CASES (space-separated subset of: h3 hq gtls rebind),
# UVQ_IMPAIR_KEEP (a directory: keep the logs of failed cases there).
set -euo pipefail
. "$(dirname "$0")/interop/lib/interop.bash"
interop_init

RELAY=$B/tests/uvq_impair
[ -x "$RELAY" ] || die "missing $RELAY (build first)"

mib=${UVQ_IMPAIR_MIB:-10}
runs=${UVQ_IMPAIR_RUNS:-1}
seed=${UVQ_IMPAIR_SEED:-1}
cases=${UVQ_IMPAIR_CASES:-h3 hq gtls rebind}
size=$((mib * 1024 * 1024))
# A hang guard only: ~1 s/MiB is the expected pace at these settings.
limit=$((mib * 12 > 120 ? mib * 12 : 120))
impair=(--loss 5 --reorder 2 --dup 1 --corrupt 0.1 --delay 10)

www=$tmp/www
mkdir -p "$www"
head -c "$size" /dev/urandom >"$www/file.bin"
want=$(sha "$www/file.bin")

start_server srv --root "$www"


# keep_logs NAME: on failure, show the evidence (and keep it if asked).
keep_logs() {
  local name=$1 f
  for f in "$tmp/$name".{cerr,stats,rerr} "$tmp/srv.err"; do
    [ -s "$f" ] || continue
    echo "--- $(basename "$f") (last 20 lines)" >&2
    tail -n 20 "$f" >&2
  done
  if [ -n "${UVQ_IMPAIR_KEEP:-}" ]; then
    mkdir -p "$UVQ_IMPAIR_KEEP"
    cp "$tmp/$name".* "$tmp/srv.out" "$tmp/srv.err" "$UVQ_IMPAIR_KEEP/" 2>/dev/null || true
  fi
}

ms_now() { echo $(($(date +%s%N) / 1000000)); }

# run_case KIND RUN SEED: one download through a fresh relay.
run_case() {
  local kind=$1 run=$2 s=$3 name="$1-r$2" out rc=0 t0 t1 secs k v bad=0
  local extra=()
  [ "$kind" = rebind ] && extra=(--rebind-after-bytes $((size / 3)))
  start_impair_relay "$name" "${impair[@]}" --seed "$s" "${extra[@]}"
  out=$tmp/$name.dl
  mkdir -p "$out"
  t0=$(ms_now)
  case $kind in
  h3 | rebind)
    timeout "$limit" "$CLIENT" --alpn h3 --ca "$tmp/cert.pem" --quiet \
      -o "$out/file.bin" "https://127.0.0.1:$IPORT/file.bin" \
      2>"$tmp/$name.cerr" || rc=$?
    ;;
  hq)
    timeout "$limit" "$CLIENT" --alpn hq-interop --ca "$tmp/cert.pem" --quiet \
      -o "$out/file.bin" "https://127.0.0.1:$IPORT/file.bin" \
      2>"$tmp/$name.cerr" || rc=$?
    ;;
  gtls)
    timeout "$limit" "$GTLSCLIENT" -q --initial-rtt=1ms \
      --exit-on-all-streams-close --download="$out" 127.0.0.1 "$IPORT" \
      "https://127.0.0.1:$IPORT/file.bin" >"$tmp/$name.cerr" 2>&1 || rc=$?
    ;;
  esac
  t1=$(ms_now)
  stop_impair_relay "$name"
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1000 }')

  if [ "$rc" -eq 124 ]; then
    fail "$name: no complete download within the ${limit} s hang guard"
    bad=1
  elif [ "$rc" -ne 0 ]; then
    fail "$name: client exited $rc"
    bad=1
  elif [ ! -f "$out/file.bin" ] || [ "$(sha "$out/file.bin")" != "$want" ]; then
    fail "$name: download differs ($(stat -c %s "$out/file.bin" 2>/dev/null || echo no) bytes of $size)"
    bad=1
  fi
  for k in dropped reordered duplicated corrupted; do
    v=$(stat_of "$name" "$k")
    if [ "${v:-0}" -le 0 ]; then
      fail "$name: relay counted no $k datagrams"
      bad=1
    fi
  done
  if [ "$kind" = rebind ]; then
    local n at after
    n=$(stat_of "$name" rebinds)
    at=$(stat_of "$name" rebind_s2c_bytes)
    after=$(stat_of "$name" s2c_after_rebind)
    if [ "${n:-0}" -ne 1 ] || [ "${at:-0}" -le 0 ] || [ "${at:-0}" -ge "$size" ]; then
      fail "$name: expected one rebinding mid-transfer: rebinds=$n at $at bytes"
      bad=1
    elif [ "${after:-0}" -le 0 ]; then
      fail "$name: the server sent nothing to the client's new port"
      bad=1
    fi
  fi

  local summary
  summary="$kind run $run seed $s: $mib MiB in $secs s;"
  summary+=" relay dropped=$(stat_of "$name" dropped)"
  summary+=" reordered=$(stat_of "$name" reordered)"
  summary+=" duplicated=$(stat_of "$name" duplicated)"
  summary+=" corrupted=$(stat_of "$name" corrupted)"
  summary+=" forwarded=$(stat_of "$name" forwarded)"
  summary+=" kernel_drops=$(($(stat_of "$name" c2s_kernel_drops) + $(stat_of "$name" s2c_kernel_drops)))"
  [ "$kind" = rebind ] && summary+=" rebinds=$(stat_of "$name" rebinds) at $(stat_of "$name" rebind_s2c_bytes) B, server then sent $(stat_of "$name" s2c_after_rebind) datagrams to the new port"
  if [ "$bad" -eq 0 ]; then
    pass "$summary"
    echo "time: $kind $mib MiB $secs s"
  else
    echo "failed case: $summary" >&2
    keep_logs "$name"
  fi
  rm -rf "$out"
}

for run in $(seq 1 "$runs"); do
  i=0
  for kind in $cases; do
    run_case "$kind" "$run" $((seed + (run - 1) * 16 + i))
    i=$((i + 1))
  done
done

stop_server srv
# The server's access log and counters (one connection per case expected;
# more means Initials that did not belong to a known connection, e.g. with
# a corrupted DCID).
grep -E '^(stats: |127\.0\.0\.1:)' "$tmp/srv.out" || true
interop_done
