# Sourced by scripts/deps.sh and scripts/fresh-debian.sh (not run on its own).
# Reads this machine's apt sources; never names a mirror of its own.

# debian_uri SUITE: the first URI of an enabled source (deb822 *.sources or
# one-line *.list) that serves SUITE, and its Signed-By if it has one, as
# one line "URI<TAB>KEYRING"; nothing if no source serves SUITE. Stops at
# the first hit (no "| head" needed, which under pipefail could fail the
# caller with SIGPIPE).
debian_uri() {
  local suite=$1 f hit
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    hit=$(awk -v suite="$suite" '
      function flush() {
        if (enabled && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "") {
          split(uri, u, " "); printf "%s\t%s\n", u[1], signed; found = 1; exit
        }
        types = suites = uri = signed = ""; enabled = 1
      }
      BEGIN { enabled = 1 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val) }
      key == "types" { types = val }
      key == "suites" { suites = val }
      key == "uris" { uri = val }
      key == "signed-by" { signed = val }
      key == "enabled" && tolower(val) == "no" { enabled = 0 }
      END { if (!found) flush() }
    ' "$f")
    if [ -n "$hit" ]; then
      printf '%s\n' "$hit"
      return 0
    fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    hit=$(awk -v suite="$suite" '
      $1 == "deb" {
        i = 2; signed = ""
        if ($2 ~ /^\[/) {
          for (; i <= NF; i++) {
            if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        if ($(i + 1) == suite) { printf "%s\t%s\n", $i, signed; exit }
      }
    ' "$f")
    if [ -n "$hit" ]; then
      printf '%s\n' "$hit"
      return 0
    fi
  done
}
