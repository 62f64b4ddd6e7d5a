#!/usr/bin/env python3
"""A UDP relay that watches QUIC v1 long headers, for interop tests.

    udp_relay.py SERVER_PORT REPORT_FILE

Binds 127.0.0.1:0, prints "relay on PORT", and forwards datagrams from any
client to 127.0.0.1:SERVER_PORT and the replies back to the client they
belong to (one upstream socket per client address). It counts what the
tests need to see on the wire and rewrites REPORT_FILE after each event:

  retries=N                 Retry packets from the server
  initials_with_token=N     client Initial packets carrying a token
  connections=N             distinct client source CIDs in Initials
                            (one per connection: a client keeps its SCID
                            across a Retry)
  last_token=HEX            the token of the latest client Initial that
                            carried one (hex; empty until one did)
"""
import os
import select
import socket
import sys


def varint(buf, off):
    first = buf[off]
    n = 1 << (first >> 6)
    v = first & 0x3F
    for i in range(1, n):
        v = (v << 8) | buf[off + i]
    return v, off + n


def long_header(d):
    """(type, dcid, scid, token or None) of a v1 long header, or None."""
    if len(d) < 7 or not d[0] & 0x80:
        return None
    if int.from_bytes(d[1:5], "big") != 1:
        return None
    ptype = (d[0] >> 4) & 3
    off = 5
    dl = d[off]
    dcid = bytes(d[off + 1 : off + 1 + dl])
    off += 1 + dl
    sl = d[off]
    scid = bytes(d[off + 1 : off + 1 + sl])
    off += 1 + sl
    tok = None
    if ptype == 0:
        tlen, off = varint(d, off)
        tok = bytes(d[off : off + tlen])
    return ptype, dcid, scid, tok


def main():
    server = ("127.0.0.1", int(sys.argv[1]))
    report = sys.argv[2]
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    for s in (front,):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    upstream = {}  # client addr -> socket
    owner = {}  # socket -> client addr
    stats = {"retries": 0, "initials_with_token": 0, "connections": 0}
    scids = set()
    last_token = ""

    def write_report():
        with open(report + ".tmp", "w") as f:
            for k, v in stats.items():
                f.write("%s=%d\n" % (k, v))
            f.write("last_token=%s\n" % last_token)
        os.replace(report + ".tmp", report)

    write_report()
    print("relay on %d" % front.getsockname()[1], flush=True)
    while True:
        r, _, _ = select.select([front] + list(owner), [], [])
        for s in r:
            if s is front:
                d, addr = front.recvfrom(65536)
                up = upstream.get(addr)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                    up.connect(server)
                    upstream[addr] = up
                    owner[up] = addr
                h = long_header(d)
                if h and h[0] == 0:
                    changed = False
                    if h[2] not in scids:
                        scids.add(h[2])
                        stats["connections"] = len(scids)
                        changed = True
                    if h[3]:
                        stats["initials_with_token"] += 1
                        last_token = h[3].hex()
                        changed = True
                    if changed:
                        write_report()
                try:
                    up.send(d)
                except OSError:
                    pass
            else:
                try:
                    d = s.recv(65536)
                except OSError:
                    continue
                h = long_header(d)
                if h and h[0] == 3:
                    stats["retries"] += 1
                    write_report()
                try:
                    front.sendto(d, owner[s])
                except OSError:
                    pass


if __name__ == "__main__":
    main()
