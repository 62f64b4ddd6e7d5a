/*
 * ifmtu: the MTU of the interface that holds a local address, for the
 * core's path_mtu callback (uvq_endpoint_config), which bounds path MTU
 * discovery: a connection whose local address is on loopback (MTU 65536)
 * or a jumbo-frame LAN (9000) may search for datagrams that large.
 *
 * A table of the host's addresses, netmasks and interface MTUs, read with
 * getifaddrs(3) and SIOCGIFMTU. It is read again when it is older than
 * UVQ_IFMTU_TTL_MS, or at most once a UVQ_IFMTU_RETRY_MS for an address it
 * does not hold (an interface that came up since). One per endpoint
 * thread; not thread-safe.
 */
#ifndef UVQ_UV_IFMTU_H
#define UVQ_UV_IFMTU_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

/* Addresses the table keeps; a host with more is served for the first
 * ones getifaddrs lists (the rest count as unknown: 1452-byte ceiling). */
#define UVQ_IFMTU_MAX 64
#define UVQ_IFMTU_TTL_MS 30000
#define UVQ_IFMTU_RETRY_MS 1000

typedef struct uvq_ifmtu_entry {
  int family;       /* AF_INET or AF_INET6 */
  uint8_t addr[16]; /* the interface's address */
  uint8_t mask[16]; /* its netmask (all ones if none is given) */
  size_t mtu;       /* the interface's MTU */
} uvq_ifmtu_entry;

typedef struct uvq_ifmtu {
  uvq_ifmtu_entry e[UVQ_IFMTU_MAX];
  size_t n;
  /* When the table was last read (ms, the caller's clock). */
  uint64_t loaded;
  /* Test hook: when set, used instead of getifaddrs + SIOCGIFMTU to fill
   * the table (returns the entries written, at most |cap|). */
  size_t (*load)(uvq_ifmtu_entry *e, size_t cap, void *arg);
  void *load_arg;
  uint64_t loads; /* how many times the table was read */
} uvq_ifmtu;

/* The MTU of the first link of a path from |local| to |remote|: the MTU of
 * the interface holding |local| (an exact address first, else the first
 * subnet holding it: 127.0.0.2 is on lo), or 0 if none does — a wildcard
 * address, or one the host does not have. Above 1500 only for a |remote|
 * on that interface's own subnet (loopback to loopback, a jumbo-frame LAN
 * to a host on it): a peer beyond a router is reached over links this
 * table knows nothing of (a cloud host's 9001-byte interface, the
 * internet's 1500), and a service address on lo answers peers elsewhere,
 * so it gets min(MTU, 1500). |now_ms| is any monotonic clock in
 * milliseconds. */
size_t uvq_ifmtu_get(uvq_ifmtu *t, const uvq_addr *local,
                     const uvq_addr *remote, uint64_t now_ms);

#endif
