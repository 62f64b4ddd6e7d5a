#include "uv/ifmtu.h"
#include "uv/udp.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Copies the address bytes of |sa| (AF_INET or AF_INET6) into |out|.
 * Returns its length (4 or 16), or 0 for another family or NULL. */
static size_t addr_bytes(const struct sockaddr *sa, uint8_t *out) {
  if (sa == NULL) {
    return 0;
  }
  if (sa->sa_family == AF_INET) {
    memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    return 4;
  }
  if (sa->sa_family == AF_INET6) {
    memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
           16);
    return 16;
  }
  return 0;
}

/* Fills |e| from getifaddrs and SIOCGIFMTU: every address of an interface
 * that is up. Returns the entries written. */
static size_t load_host(uvq_ifmtu_entry *e, size_t cap, void *arg) {
  struct ifaddrs *ifa, *it;
  size_t n = 0;
  int fd;
  (void)arg;
  if (getifaddrs(&ifa) != 0) {
    return 0;
  }
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (it = ifa; fd >= 0 && it != NULL && n < cap; it = it->ifa_next) {
    struct ifreq ifr;
    size_t len;
    if (!(it->ifa_flags & IFF_UP) || it->ifa_name == NULL ||
        strlen(it->ifa_name) >= sizeof(ifr.ifr_name)) {
      continue;
    }
    memset(&e[n], 0, sizeof(e[n]));
    len = addr_bytes(it->ifa_addr, e[n].addr);
    if (len == 0) {
      continue;
    }
    if (addr_bytes(it->ifa_netmask, e[n].mask) != len) {
      memset(e[n].mask, 0xff, len);
    }
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, it->ifa_name, strlen(it->ifa_name));
    if (ioctl(fd, SIOCGIFMTU, &ifr) != 0 || ifr.ifr_mtu <= 0) {
      continue;
    }
    e[n].family = it->ifa_addr->sa_family;
    e[n].mtu = (size_t)ifr.ifr_mtu;
    n++;
  }
  if (fd >= 0) {
    close(fd);
  }
  freeifaddrs(ifa);
  return n;
}

static void reload(uvq_ifmtu *t, uint64_t now_ms) {
  t->n = (t->load ? t->load : load_host)(t->e, UVQ_IFMTU_MAX, t->load_arg);
  t->loaded = now_ms;
  t->loads++;
}

/* Nonzero if |len| bytes of address |b| are on |e|'s subnet. */
static int on_subnet(const uvq_ifmtu_entry *e, const uint8_t *b, size_t len) {
  size_t k;
  for (k = 0; k < len; k++) {
    if ((e->addr[k] & e->mask[k]) != (b[k] & e->mask[k])) {
      return 0;
    }
  }
  return 1;
}

/* The entry holding |a| (|len| bytes of |family|): exact, else by subnet. */
static const uvq_ifmtu_entry *find(const uvq_ifmtu *t, int family,
                                   const uint8_t *a, size_t len) {
  const uvq_ifmtu_entry *subnet = NULL;
  size_t i;
  for (i = 0; i < t->n; i++) {
    const uvq_ifmtu_entry *e = &t->e[i];
    if (e->family != family) {
      continue;
    }
    if (memcmp(e->addr, a, len) == 0) {
      return e;
    }
    if (subnet == NULL && on_subnet(e, a, len)) {
      subnet = e;
    }
  }
  return subnet;
}

size_t uvq_ifmtu_get(uvq_ifmtu *t, const uvq_addr *local,
                     const uvq_addr *remote, uint64_t now_ms) {
  const uvq_ifmtu_entry *e;
  uint8_t a[16], r[16];
  size_t len = addr_bytes((const struct sockaddr *)&local->ss, a);
  int family = local->ss.ss_family;

  if (len == 0 || uvq_udp_is_wildcard((const struct sockaddr *)&local->ss)) {
    return 0; /* not an address, or the wildcard: no one interface */
  }
  if (t->loads == 0 || now_ms - t->loaded >= UVQ_IFMTU_TTL_MS) {
    reload(t, now_ms);
  }
  e = find(t, family, a, len);
  if (e == NULL && now_ms - t->loaded >= UVQ_IFMTU_RETRY_MS) {
    reload(t, now_ms);
    e = find(t, family, a, len);
  }
  if (e == NULL) {
    return 0;
  }
  if (e->mtu > 1500 &&
      (remote->ss.ss_family != family ||
       addr_bytes((const struct sockaddr *)&remote->ss, r) != len ||
       !on_subnet(e, r, len))) {
    return 1500; /* beyond a router: links this table cannot see */
  }
  return e->mtu;
}
