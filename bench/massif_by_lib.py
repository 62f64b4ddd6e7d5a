#!/usr/bin/env python3
"""Heap at a massif snapshot, grouped by who called the allocator.

  valgrind --tool=massif --depth=12 --massif-out-file=M uvquic-server ...
  bench/massif_by_lib.py M [N_CONNECTIONS] [--sites K]

Takes the peak snapshot (or the last detailed one) and attributes each
allocation to the library of its nearest caller that is not libc: ngtcp2
(libngtcp2*), GnuTLS (libgnutls and its nettle/hogweed/gmp/tasn1), nghttp3,
libuv, or uvquic (the server binary: the library is linked statically).
Prints bytes, share, and bytes per connection if N is given; with --sites
K, each library's K biggest allocation sites (the attributed caller).
"""
import re
import sys


def lib_of(line):
    m = re.search(r"\(in ([^)]*)\)", line)
    where = m.group(1) if m else ""
    fn = line
    if "libngtcp2" in where:
        return "ngtcp2"
    if any(k in where for k in ("gnutls", "nettle", "hogweed", "gmp", "tasn1", "p11-kit", "idn2", "unistring")):
        return "GnuTLS"
    if "nghttp3" in where:
        return "nghttp3"
    if "libuv" in where:
        return "libuv"
    if "libc.so" in where or "ld-linux" in where:
        return None  # look further out
    if re.search(r"\((\w+\.c):\d+\)", fn) or "uvquic" in where:
        return "uvquic"
    return "other"


def main():
    args = sys.argv[1:]
    nsites = 0
    if "--sites" in args:
        k = args.index("--sites")
        nsites = int(args[k + 1])
        del args[k:k + 2]
    path = args[0]
    nconn = int(args[1]) if len(args) > 1 else 0
    text = open(path).read().split("\n")
    # Snapshots: "snapshot=N", "mem_heap_B=", "heap_tree=peak|detailed|empty".
    snaps, cur = [], None
    for i, l in enumerate(text):
        if l.startswith("snapshot="):
            cur = {"start": i}
            snaps.append(cur)
        elif l.startswith("heap_tree=") and cur is not None:
            cur["tree"] = l.split("=", 1)[1]
    pick = [s for s in snaps if s.get("tree") == "peak"] or \
        [s for s in snaps if s.get("tree") == "detailed"][-1:]
    s = pick[0]
    i = s["start"]
    while not text[i].startswith("heap_tree="):
        i += 1
    i += 1
    # Tree lines: leading spaces = depth, "nN: BYTES 0xADDR: fn (file)".
    nodes = []
    while i < len(text) and text[i].strip() and not text[i].startswith("#"):
        l = text[i]
        depth = len(l) - len(l.lstrip(" "))
        m = re.match(r"\s*n(\d+): (\d+) (.*)", l)
        if m:
            nodes.append((depth, int(m.group(1)), int(m.group(2)), m.group(3)))
        i += 1
    total = nodes[0][2]
    sums = {}
    sites = {}

    def walk(k):
        """Attribute the subtree at nodes[k]; returns the index after it."""
        depth, nchild, size, desc = nodes[k]
        lib = lib_of(desc) if k > 0 else None
        j = k + 1
        if lib is not None or nchild == 0:
            sums[lib or "other"] = sums.get(lib or "other", 0) + size
            site(k, lib or "other")
            # skip the subtree
            for _ in range(nchild):
                j = skip(j)
            return j
        for _ in range(nchild):
            j = walk(j)
        return j

    def site(k, lib):
        """Counts nodes[k] at its first named frame outwards (stripped
        libraries show their internal functions as ???)."""
        depth, nchild, size, desc = nodes[k]
        m = re.match(r"0x[0-9A-Fa-f]+: (\S+)", desc)
        fn = m.group(1) if m else desc[:60]
        if fn == "???" and nchild > 0:
            j, inner = k + 1, 0
            for _ in range(nchild):
                inner += nodes[j][2]
                site(j, lib)
                j = skip(j)
            if size > inner:
                sites[(lib, fn)] = sites.get((lib, fn), 0) + size - inner
            return
        sites[(lib, fn)] = sites.get((lib, fn), 0) + size

    def skip(k):
        j = k + 1
        for _ in range(nodes[k][1]):
            j = skip(j)
        return j

    walk(0)
    print(f"heap at the {s.get('tree')} snapshot: {total} B"
          + (f", {total / nconn / 1000:.1f} KB per connection" if nconn else ""))
    for lib, b in sorted(sums.items(), key=lambda x: -x[1]):
        extra = f"  {b / nconn / 1000:8.1f} KB/conn" if nconn else ""
        print(f"  {lib:8s} {b:12d} B {100 * b / total:5.1f}%{extra}")
        top = sorted(((v, k[1]) for k, v in sites.items() if k[0] == lib),
                     reverse=True)[:nsites]
        for v, fn in top:
            per = f"  {v / nconn / 1000:8.1f} KB/conn" if nconn else ""
            print(f"      {fn[:44]:44s} {v:12d} B{per}")


main()
