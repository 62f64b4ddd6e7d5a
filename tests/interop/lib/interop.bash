# Helpers for tests/interop/*.sh and the tests/*.sh that run uvquic-server
# (sourced; not a test itself: ctest only runs tests/interop/*.sh and
# tests/*.sh). A test calls interop_init first (tools_init where it needs no
# peers), then starts peers with the start_* functions; everything it
# started is killed on exit.
#
# Peers: ngtcp2 >= 1.11's gtlsserver (/usr/sbin, not on a user's PATH) and
# gtlsclient (Debian ngtcp2-server / ngtcp2-client; find_peers checks the
# version). Both always get -q and --initial-rtt=1ms: 0.12.1's needed it
# to avoid a ~15 ms ACK-timer stall per handshake; 1.11's do not (a 1 KiB
# GET takes 2-3 ms of gtlsclient's log time with or without it, against
# gtlsserver or uvquic-server), but it keeps timings comparable.

# tools_init: checks the build (B, S, SERVER, CLIENT), makes $tmp, pids,
# failures and the trap; no peers, no certificate. Enough for the tests of
# uvquic-server and uvquic-client alone (tests/*.sh), with start_bare_server.
tools_init() {
  B=${UVQ_BUILD_DIR:?UVQ_BUILD_DIR must point at the build directory}
  S=${UVQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
  SERVER=$B/uvquic-server
  CLIENT=$B/uvquic-client
  local bin
  for bin in "$SERVER" "$CLIENT"; do
    [ -x "$bin" ] || { echo "missing $bin (build first)" >&2; exit 1; }
  done
  tmp=$(mktemp -d)
  pids=()
  failures=0
  trap interop_cleanup EXIT
}

# interop_init: tools_init, then finds (or installs) the peers and makes a
# certificate for 127.0.0.1 ($tmp/cert.pem, $tmp/key.pem).
interop_init() {
  tools_init
  find_peers
  make_cert "$tmp"
}

# interop_cleanup: kills everything in pids (a stopped one is continued
# first) and removes $tmp.
interop_cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }
die() {
  echo "FAIL: $*" >&2
  exit 1
}
# interop_done: the exit status of the test.
interop_done() {
  if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
}

# The oldest peers the tests are written for: ngtcp2 1.11's (0.12.1's
# gtlsclient could not read back its --token-file and stalled after
# --nat-rebinding).
GTLS_MIN_VERSION=1.11.0

# peer_version BIN: the version of the Debian package that installed BIN
# (the examples print none themselves); empty if no package owns it.
peer_version() {
  local pkg
  pkg=$(dpkg-query -S "$(readlink -f "$1")" 2>/dev/null | head -n1 | cut -d: -f1 || true)
  [ -n "$pkg" ] || return 0
  dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true
}
# peer_recent BIN: BIN comes from a package >= GTLS_MIN_VERSION.
peer_recent() {
  local v
  v=$(peer_version "$1")
  [ -n "$v" ] && dpkg --compare-versions "$v" ge "$GTLS_MIN_VERSION"
}

# find_peers sets GTLSSERVER and GTLSCLIENT, installing the Debian packages
# with scripts/deps.sh if one is missing or older than GTLS_MIN_VERSION; a
# peer that is still missing or too old fails the test (never a silent skip).
find_peers() {
  local bin v
  GTLSSERVER=/usr/sbin/gtlsserver
  GTLSCLIENT=$(command -v gtlsclient || true)
  if [ ! -x "$GTLSSERVER" ] || [ -z "$GTLSCLIENT" ] ||
    ! peer_recent "$GTLSSERVER" || ! peer_recent "$GTLSCLIENT" ||
    ! command -v openssl >/dev/null || ! command -v python3 >/dev/null; then
    echo "interop: peers (ngtcp2 >= $GTLS_MIN_VERSION) or tools missing; running scripts/deps.sh" >&2
    "$S/scripts/deps.sh" || die "scripts/deps.sh failed"
    GTLSCLIENT=$(command -v gtlsclient || true)
  fi
  [ -x "$GTLSSERVER" ] || die "gtlsserver not found in /usr/sbin (package ngtcp2-server)"
  [ -n "$GTLSCLIENT" ] || die "gtlsclient not found on PATH (package ngtcp2-client)"
  for bin in "$GTLSSERVER" "$GTLSCLIENT"; do
    v=$(peer_version "$bin")
    [ -n "$v" ] || die "$bin belongs to no Debian package, so its ngtcp2 version is unknown" \
      "(the interop tests need ngtcp2-server/ngtcp2-client >= $GTLS_MIN_VERSION)"
    dpkg --compare-versions "$v" ge "$GTLS_MIN_VERSION" ||
      die "$bin is ngtcp2 $v; the interop tests need >= $GTLS_MIN_VERSION" \
        "(scripts/deps.sh installs it; on Debian 12 from bookworm-backports)"
  done
  command -v openssl >/dev/null || die "openssl not found"
  command -v python3 >/dev/null || die "python3 not found"
}

# make_cert DIR: a self-signed P-256 certificate valid for 127.0.0.1 and
# localhost, so uvquic-client can verify it with --ca (no -k).
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1/key.pem" -out "$1/cert.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1 ||
    die "openssl could not make a certificate"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# wait_bytes FILE BYTES: waits (2 s at most) until FILE holds at least BYTES
# (uvquic-client -o writes FILE.part until the download is complete).
wait_bytes() {
  local file=$1 bytes=$2 i
  for i in $(seq 1 200); do
    [ -f "$file" ] && [ "$(stat -c %s "$file")" -ge "$bytes" ] && return 0
    sleep 0.01
  done
  return 1
}

# jget FILE EXPR: a field of the first connection in a --stats-json file.
jget() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))[0]; print(str(eval(sys.argv[2], {}, {"d": d})).lower())' "$1" "$2"
}

# free_udp_port prints a UDP port that was free a moment ago.
free_udp_port() {
  python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# udp_bound PORT: is a UDP socket bound to PORT (IPv4)?
udp_bound() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { f = 1 }
                    END { exit !f }' /proc/net/udp
}

# start_gtlsserver NAME ARGS...: gtlsserver on 127.0.0.1 and a random free
# (quiet unless GTLS_VERBOSE=1; its log lands in $tmp/NAME.out / .err)
# port (it cannot take port 0), serving with our certificate; retried on
# another port if the bind fails. Sets GPORT and GPID once the port is bound.
start_gtlsserver() {
  local name=$1 attempt i
  shift
  for attempt in 1 2 3 4 5; do
    GPORT=$(free_udp_port)
    # GTLS_VERBOSE=1 drops -q: every packet and frame is logged (to check
    # what a peer really sent, e.g. 0-RTT STREAM frames).
    "$GTLSSERVER" $([ "${GTLS_VERBOSE:-0}" = 1 ] || echo -q) --initial-rtt=1ms "$@" 127.0.0.1 "$GPORT" \
      "$tmp/key.pem" "$tmp/cert.pem" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    GPID=$!
    pids+=("$GPID")
    for i in $(seq 1 200); do
      if ! kill -0 "$GPID" 2>/dev/null; then
        break
      fi
      if udp_bound "$GPORT"; then
        return 0
      fi
      sleep 0.05
    done
    kill -KILL "$GPID" 2>/dev/null || true
    wait "$GPID" 2>/dev/null || true
    echo "gtlsserver $name did not bind port $GPORT (attempt $attempt):" \
      "$(tail -n3 "$tmp/$name.err")" >&2
  done
  die "gtlsserver $name would not start"
}

# await_port WHAT PID OUT ERR PREFIX TRIES: waits (TRIES x 50 ms at most)
# until OUT has a line starting with PREFIX, the program's "I listen" line,
# and dies if PID exits first; sets AWAITED_PORT to the port that line ends
# with (":PORT" or " PORT").
await_port() {
  local what=$1 pid=$2 out=$3 err=$4 prefix=$5 tries=$6 i
  for i in $(seq 1 "$tries"); do
    grep -qs "^$prefix" "$out" && break
    kill -0 "$pid" 2>/dev/null || die "$what died: $(cat "$err")"
    sleep 0.05
  done
  AWAITED_PORT=$(sed -n "s/^$prefix.*[: ]\([0-9][0-9]*\)\$/\1/p" "$out")
  [ -n "$AWAITED_PORT" ] || die "$what printed no port"
}

# start_bare_server NAME ARGS...: uvquic-server on 127.0.0.1:0 with ARGS
# alone (no certificate of its own: --cert/--key, --write-cert or none);
# its output in $tmp/NAME.out and .err. Sets SERVER_PID and PORT once it
# printed "listening on"; dies if it exits first or prints no port.
start_bare_server() {
  local name=$1
  shift
  "$SERVER" --listen 127.0.0.1:0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  await_port "uvquic-server $name" "$SERVER_PID" "$tmp/$name.out" \
    "$tmp/$name.err" "listening on" 600
  PORT=$AWAITED_PORT
  [ "$PORT" != 0 ] || die "uvquic-server $name printed port 0"
}

# start_server NAME ARGS...: start_bare_server with our certificate; sets
# UPORT and UPID.
start_server() {
  local name=$1
  shift
  start_bare_server "$name" --cert "$tmp/cert.pem" --key "$tmp/key.pem" "$@"
  UPID=$SERVER_PID
  UPORT=$PORT
}

# stop_server NAME: SIGTERM; uvquic-server must exit 0 (it then has printed
# its "stats:" line to $tmp/NAME.out).
stop_server() {
  local rc=0
  kill -TERM "$UPID"
  wait "$UPID" || rc=$?
  [ "$rc" -eq 0 ] || fail "uvquic-server $1 exited $rc after SIGTERM: $(cat "$tmp/$1.err")"
}

# gtls_get DIR PORT PATH...: gtlsclient downloads PATHs from 127.0.0.1:PORT
# into DIR (each file lands as DIR/basename) over one connection, with any
# extra options in GTLS_OPTS. Returns gtlsclient's exit status.
gtls_get() {
  local dir=$1 port=$2 p urls=()
  shift 2
  for p in "$@"; do
    urls+=("https://127.0.0.1:$port$p")
  done
  timeout 120 "$GTLSCLIENT" -q --initial-rtt=1ms --exit-on-all-streams-close \
    ${GTLS_OPTS:-} --download="$dir" 127.0.0.1 "$port" "${urls[@]}"
}

# start_relay NAME SERVER_PORT: the QUIC-watching UDP relay in front of
# 127.0.0.1:SERVER_PORT; sets RPORT once it listens. Its counters are in
# $tmp/NAME.report (see udp_relay.py); relay_count NAME KEY reads one.
start_relay() {
  local name=$1
  python3 "$(dirname "${BASH_SOURCE[0]}")/udp_relay.py" "$2" "$tmp/$name.report" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=("$!")
  await_port "relay $name" "$!" "$tmp/$name.out" "$tmp/$name.err" "relay on" 200
  RPORT=$AWAITED_PORT
}
relay_count() {
  sed -n "s/^$2=//p" "$tmp/$1.report"
}

# start_impair_relay NAME ARGS...: $RELAY (tests/tools/uvq_impair) in front of the
# server on $UPORT (impair.sh, retry.sh); sets IPORT and IPID once it
# listens. Its counters land in $tmp/NAME.stats (stat_of NAME KEY).
start_impair_relay() {
  local name=$1
  shift
  "$RELAY" --upstream "127.0.0.1:$UPORT" --stats-file "$tmp/$name.stats" "$@" \
    >"$tmp/$name.rout" 2>"$tmp/$name.rerr" &
  IPID=$!
  pids+=("$IPID")
  await_port "relay $name" "$IPID" "$tmp/$name.rout" "$tmp/$name.rerr" \
    "listening on" 200
  IPORT=$AWAITED_PORT
}

# stop_impair_relay NAME: SIGTERM; the relay writes its counters and exits 0.
stop_impair_relay() {
  local rc=0
  kill -TERM "$IPID"
  wait "$IPID" || rc=$?
  [ "$rc" -eq 0 ] || fail "relay $1 exited $rc: $(cat "$tmp/$1.rerr")"
  [ -s "$tmp/$1.stats" ] || fail "relay $1 wrote no counters"
}

stat_of() { sed -n "s/^$2=//p" "$tmp/$1.stats"; }
