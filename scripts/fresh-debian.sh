#!/usr/bin/env bash
# Runs the README's commands on a fresh Debian: a minimal debootstrap chroot
# of SUITE (variant minbase: apt and the essential packages, nothing else;
# no build tools), into which the project's own scripts must install what
# they need. Runs as root inside (minbase has no sudo).
#   scripts/fresh-debian.sh [--fresh] [--reuse] SUITE [COMMAND...]
#     SUITE     bookworm (Debian 12) or trixie (Debian 13)
#     COMMAND   a shell command run in the project directory inside the
#               chroot; default: scripts/demo.sh && scripts/test.sh --quick
#               (e.g. "scripts/test.sh" for every pass)
#     --fresh   debootstrap the base again instead of using the cached one
#     --reuse   run in the previous run's chroot (the packages it
#               installed and its build*/ directories stay) instead of a
#               fresh copy of the base; for iterating, not for the check
# Examples:
#   scripts/fresh-debian.sh trixie
#   scripts/fresh-debian.sh bookworm scripts/test.sh
#
# What gets copied in: the files of the working tree that git tracks plus
# the untracked files .gitignore does not exclude (git ls-files --cached
# --others --exclude-standard), as they are on disk now, so uncommitted and
# not yet added edits are checked too; deleted files are left out. No .git
# directory is copied (a downloaded archive has none either).
#
# The mirror is the URI of this machine's own Debian apt source (see
# scripts/lib/apt-source.sh); no mirror is named here. The chroot's apt
# sources point at that URI for SUITE and SUITE-updates (no -security).
# The keyring is that source's Signed-By, else
# /usr/share/keyrings/debian-archive-keyring.gpg; bookworm's
# debian-archive-keyring (2023.3+deb12u2) already holds trixie's keys.
#
# Cache: ${UVQ_CHROOT_DIR:-/var/tmp/uvquic-chroot}/SUITE/ holds base/ (the
# pristine debootstrap result, made once), run/ (a copy of base/ remade for
# every run, the project in /root/uvquic) and archives/ (apt's downloaded
# .debs, bind-mounted so reruns do not download them again; what gets
# installed is still up to the project's scripts). UVQ_* variables other
# than UVQ_CHROOT_DIR are passed into the chroot (e.g. UVQ_FUZZ_SECONDS).
# /proc, /sys, /dev, /dev/pts and /dev/shm are bind-mounted while the command
# runs and always unmounted on exit. Quiet unless something fails, apart
# from the command's own output and the final PASSED/FAILED line.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib/apt-source.sh"

usage() {
  sed -n '/^#   scripts\/fresh-debian.sh/,/^#   scripts\/fresh-debian.sh bookworm/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
fresh=0
reuse=0
while [ $# -gt 0 ]; do
  case $1 in
    --fresh) fresh=1 ;;
    --reuse) reuse=1 ;;
    -h | --help) usage ;;
    -*) echo "fresh-debian: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || usage
suite=$1
shift
case $suite in
  bookworm | trixie) ;;
  *) echo "fresh-debian: SUITE must be bookworm or trixie, not '$suite'" >&2; exit 2 ;;
esac
if [ $# -gt 0 ]; then
  cmd="$*"
else
  cmd="scripts/demo.sh && scripts/test.sh --quick"
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

log=$(mktemp /tmp/uvquic-fresh.XXXXXX.log)
root=${UVQ_CHROOT_DIR:-/var/tmp/uvquic-chroot}/$suite
base=$root/base
run=$root/run
archives=$root/archives
fail() {
  cat "$log" >&2
  echo "fresh-debian: $suite: $1 (log above)" >&2
  exit 1
}

# Mount points under DIR, deepest first.
mounts_under() {
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
unmount_all() {
  local m
  for m in $(mounts_under "$run"); do
    $SUDO umount "$m" 2>/dev/null || $SUDO umount -l "$m" || true
  done
}
# Removes DIR, refusing while anything is mounted under it (a bind-mounted
# /dev must never be deleted through the chroot).
remove_tree() {
  if [ -n "$(mounts_under "$1")" ]; then
    echo "fresh-debian: still mounted under $1, not removing it:" >&2
    mounts_under "$1" >&2
    exit 1
  fi
  $SUDO rm -rf --one-file-system "$1"
}
# Kills what the command left running inside the chroot (by pid).
kill_leftovers() {
  local p
  for p in $($SUDO find /proc -mindepth 2 -maxdepth 2 -name root -lname "$run" 2>/dev/null |
    sed -n 's|^/proc/\([0-9][0-9]*\)/root$|\1|p'); do
    $SUDO kill -KILL "$p" 2>/dev/null || true
  done
}
# Set once this run holds the suite's lock: only then is $run ours to
# clean up (another run may be using it).
locked=0
cleanup() {
  if [ $locked -eq 1 ] && [ -d "$run" ]; then
    kill_leftovers
    unmount_all
  fi
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# debootstrap on the host, installed like scripts/deps.sh installs packages.
if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
  echo "fresh-debian: installing debootstrap" >&2
  $SUDO apt-get update -q >"$log" 2>&1 || fail "apt-get update failed"
  $SUDO apt-get install -y -q --no-install-recommends debootstrap >>"$log" 2>&1 ||
    fail "installing debootstrap failed"
fi
debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)

# The mirror: the URI of the source that serves this machine's own suite.
host_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
line=$(debian_uri "$host_suite")
uri=${line%%$'\t'*}
keyring=${line#*$'\t'}
if [ -z "$host_suite" ] || [ -z "$uri" ]; then
  echo "fresh-debian: no enabled Debian apt source serves this machine's suite (${host_suite:-unknown}); cannot pick a mirror" >&2
  exit 1
fi
[ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || { echo "fresh-debian: keyring $keyring is missing" >&2; exit 1; }

$SUDO mkdir -p "$root" "$archives"
# One run per suite at a time.
exec 9<"$root"
flock -n 9 || { echo "fresh-debian: another run uses $root" >&2; exit 1; }
locked=1

if [ $fresh -eq 1 ] || [ ! -e "$root/base.ok" ]; then
  remove_tree "$run"
  remove_tree "$base"
  $SUDO rm -f "$root/base.ok"
  echo "fresh-debian: debootstrap $suite from $uri (minbase)" >&2
  # An older debootstrap may not know trixie yet; trixie is built like sid.
  script=()
  [ -e "/usr/share/debootstrap/scripts/$suite" ] || script=(/usr/share/debootstrap/scripts/sid)
  $SUDO "$debootstrap" --variant=minbase --keyring="$keyring" "$suite" "$base" "$uri" "${script[@]}" \
    >"$log" 2>&1 || fail "debootstrap $suite failed"
  # apt sources as a fresh install has them: trixie in deb822 form, bookworm
  # in the one-line sources.list (the two forms scripts/deps.sh reads).
  if [ "$suite" = trixie ]; then
    $SUDO rm -f "$base/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$suite" "$suite" | $SUDO tee "$base/etc/apt/sources.list.d/debian.sources" >/dev/null
  else
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$uri" "$suite" "$uri" "$suite" |
      $SUDO tee "$base/etc/apt/sources.list" >/dev/null
  fi
  # A fresh install has a localhost entry.
  if ! grep -qs '^127\.0\.0\.1[[:space:]].*localhost' "$base/etc/hosts"; then
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' |
      $SUDO tee "$base/etc/hosts" >/dev/null
  fi
  $SUDO touch "$root/base.ok"
fi

if [ $reuse -eq 0 ] || [ ! -d "$run" ]; then
  remove_tree "$run"
  $SUDO cp -a --reflink=auto "$base" "$run"
fi
$SUDO cp /etc/resolv.conf "$run/etc/resolv.conf" 2>/dev/null || true

# The project tree (see the header), in /root/uvquic.
proj=$run/root/uvquic
if [ $reuse -eq 1 ] && [ -d "$proj" ]; then
  # Keep the previous run's build directories, replace everything else.
  $SUDO find "$proj" -mindepth 1 -maxdepth 1 ! -name 'build*' -exec rm -rf --one-file-system {} +
else
  remove_tree "$proj"
fi
$SUDO mkdir -p "$proj"
top=$(git -C "$here" rev-parse --show-toplevel)
(
  cd "$top"
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done |
    tar --null --no-recursion -T - -cf -
) | $SUDO tar -xf - -C "$proj" --no-same-owner

for d in proc sys dev dev/pts dev/shm var/cache/apt/archives; do
  $SUDO mkdir -p "$run/$d"
done
$SUDO mount -t proc proc "$run/proc"
$SUDO mount --bind /sys "$run/sys"
$SUDO mount --bind /dev "$run/dev"
$SUDO mount --bind /dev/pts "$run/dev/pts"
if mountpoint -q /dev/shm; then
  $SUDO mount --bind /dev/shm "$run/dev/shm"
fi
$SUDO mount --bind "$archives" "$run/var/cache/apt/archives"

envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
  LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive)
while IFS='=' read -r -d '' k v; do
  case $k in UVQ_CHROOT_DIR) ;; UVQ_*) envs+=("$k=$v") ;; esac
done < <(env -0)

echo "fresh-debian: $suite: running '$cmd' in a fresh chroot ($run)" >&2
start=$(date +%s)
rc=0
# In the background, so that INT/TERM end the run at once (the EXIT trap
# then kills what runs in the chroot and unmounts).
$SUDO chroot "$run" /usr/bin/env -i "${envs[@]}" /bin/bash -c "cd /root/uvquic && { $cmd; }" </dev/null &
wait $! || rc=$?
secs=$(($(date +%s) - start))
if [ $rc -eq 0 ]; then
  echo "fresh-debian: $suite: PASSED '$cmd' (${secs}s)"
else
  echo "fresh-debian: $suite: FAILED '$cmd' (exit $rc, ${secs}s)" >&2
fi
exit $rc
