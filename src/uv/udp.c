#include "uv/udp.h"

#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

/* Asks for |size| bytes of buffer: SO_*BUFFORCE first (root or
 * CAP_NET_ADMIN may exceed net.core.[rw]mem_max), then the capped option.
 * Returns what the kernel reports back (twice what it granted). */
static int set_bufsize(int fd, int force_opt, int opt, int size) {
  int got = 0;
  socklen_t len = sizeof(got);

  if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof(size)) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
  }
  if (getsockopt(fd, SOL_SOCKET, opt, &got, &len) != 0) {
    return 0;
  }
  return got;
}

static void warn(const uvq_udp_opts *opts, const char *line) {
  if (opts->log) {
    opts->log(opts->log_user_data, line);
  } else {
    fprintf(stderr, "uvquic: %s\n", line);
  }
}

static void setup_buffers(uvq_udp *u, const uvq_udp_opts *opts) {
  char line[320]; /* the longest line with four 11-digit ints fits */

  if (opts->bufsize <= 0) {
    socklen_t len = sizeof(int);
    (void)getsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &u->stats.rcvbuf, &len);
    len = sizeof(int);
    (void)getsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &u->stats.sndbuf, &len);
    return;
  }
  u->stats.rcvbuf =
      set_bufsize(u->fd, SO_RCVBUFFORCE, SO_RCVBUF, opts->bufsize);
  u->stats.sndbuf =
      set_bufsize(u->fd, SO_SNDBUFFORCE, SO_SNDBUF, opts->bufsize);
  /* Linux doubles the value it grants (bookkeeping overhead) and reports
   * the doubled figure: less than twice the request means it was capped by
   * net.core.[rw]mem_max (every unprivileged process on a stock kernel).
   * Below min_bufsize one connection's bursts are dropped: say so once for
   * this socket. Above it only many fast connections suffer: say so only
   * to whoever asked for the details. */
  if (u->stats.rcvbuf / 2 < opts->min_bufsize ||
      u->stats.sndbuf / 2 < opts->min_bufsize) {
    snprintf(line, sizeof(line),
             "UDP socket buffers clamped: asked %d bytes, got receive %d and "
             "send %d, below the %d one connection needs (a batch of 64 "
             "full-size datagrams); raise net.core.rmem_max / wmem_max",
             opts->bufsize, u->stats.rcvbuf / 2, u->stats.sndbuf / 2,
             opts->min_bufsize);
    warn(opts, line);
  } else if ((u->stats.rcvbuf / 2 < opts->bufsize ||
              u->stats.sndbuf / 2 < opts->bufsize) &&
             opts->info != NULL) {
    snprintf(line, sizeof(line),
             "UDP socket buffers clamped: asked %d bytes, got receive %d and "
             "send %d (enough for one connection, %d; for many fast ones "
             "raise net.core.rmem_max / wmem_max)",
             opts->bufsize, u->stats.rcvbuf / 2, u->stats.sndbuf / 2,
             opts->min_bufsize);
    opts->info(opts->info_user_data, line);
  }
}

int uvq_udp_is_wildcard(const struct sockaddr *addr) {
  if (addr->sa_family == AF_INET) {
    return ((const struct sockaddr_in *)(const void *)addr)->sin_addr.s_addr ==
           htonl(INADDR_ANY);
  }
  return IN6_IS_ADDR_UNSPECIFIED(
      &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr);
}

/* Optional features: each failure only turns the feature off. */
static void setup_features(uvq_udp *u, const uvq_udp_opts *opts) {
  int on = 1, v = 0;
  socklen_t len = sizeof(v);

  /* GSO probe: a kernel without UDP_SEGMENT answers ENOPROTOOPT. */
  u->gso_capable = getsockopt(u->fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
  u->gso = u->gso_capable && !opts->no_gso;
  u->gro = !opts->no_gro &&
           setsockopt(u->fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  /* ECN marks of received datagrams. */
  if (u->family == AF_INET) {
    (void)setsockopt(u->fd, IPPROTO_IP, IP_RECVTOS, &on, sizeof(on));
  } else {
    (void)setsockopt(u->fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &on, sizeof(on));
  }
  /* ICMP errors (port / host unreachable) on the error queue, with the
   * datagram's destination: uvq_udp_read_errors. A dual-stack socket gets
   * those of IPv4 peers through IP_RECVERR. */
  (void)setsockopt(u->fd, IPPROTO_IP, IP_RECVERR, &on, sizeof(on));
  if (u->family == AF_INET6) {
    (void)setsockopt(u->fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof(on));
  }
}

static void setup_pktinfo(uvq_udp *u, const struct sockaddr *addr) {
  int on = 1;

  if (!uvq_udp_is_wildcard(addr)) {
    /* Every datagram is to and from the bound address. */
    return;
  }
  if (u->family == AF_INET) {
    u->pktinfo =
        setsockopt(u->fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) == 0;
  } else {
    u->pktinfo =
        setsockopt(u->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) == 0;
  }
}

int uvq_udp_open(uvq_udp *u, const struct sockaddr *addr, socklen_t addrlen,
                 const uvq_udp_opts *opts) {
  int on = 1, saved;
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof(ss);

  memset(u, 0, sizeof(*u));
  u->fd = -1;
  if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  u->family = addr->sa_family;
  u->fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 IPPROTO_UDP);
  if (u->fd < 0) {
    return -1;
  }
  if (addr->sa_family == AF_INET6 &&
      setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
    goto fail;
  }
  /* QUIC path MTU discovery needs DF set: a probe too large for the path
   * must be lost (or refused with EMSGSIZE), never fragmented. PROBE, not
   * DO: DF, but the kernel's own path MTU, learnt from ICMP "fragmentation
   * needed" / "packet too big" (which anyone on the path can forge, down
   * to 552 bytes), never refuses our datagrams; QUIC's discovery alone
   * decides their size (RFC 9000 §14.2.1: an endpoint must ignore an ICMP
   * claim below 1200 bytes; the kernel would apply it). The interface's
   * own MTU still refuses larger datagrams with EMSGSIZE. */
  if (addr->sa_family == AF_INET) {
    int v = IP_PMTUDISC_PROBE;
    (void)setsockopt(u->fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
  } else {
    int v = IPV6_PMTUDISC_PROBE;
    (void)setsockopt(u->fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof(v));
  }
  /* Shards: every socket of the group binds the same address, and the
   * kernel spreads datagrams among them (and a BPF program steers them). */
  if (opts->reuseport &&
      setsockopt(u->fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
    goto fail;
  }
  if (bind(u->fd, addr, addrlen) != 0) {
    goto fail;
  }
  if (getsockname(u->fd, (struct sockaddr *)&ss, &sslen) != 0) {
    goto fail;
  }
  if (uvq_addr_set(&u->bound, (const struct sockaddr *)&ss, sslen) != 0) {
    errno = EAFNOSUPPORT;
    goto fail;
  }
  setup_buffers(u, opts);
  setup_features(u, opts);
  setup_pktinfo(u, addr);
  u->stats.gso = u->gso;
  u->stats.gro = u->gro;
  u->stats.pktinfo = u->pktinfo;
  return 0;

fail:
  saved = errno;
  close(u->fd);
  u->fd = -1;
  errno = saved;
  return -1;
}

void uvq_udp_close(uvq_udp *u) {
  if (u->fd >= 0 && uvq_udp_pending(u)) {
    /* A last try; what the socket still cannot take is lost, and counted. */
    (void)uvq_udp_flush(u);
    if (uvq_udp_pending(u)) {
      uvq_udp_txq *q = u->txq;
      size_t nd = 0;
      for (size_t i = q->head; i < q->n; ++i) {
        nd += q->ent[i].b.count;
      }
      u->stats.send_errors += nd - q->head_done;
      q->head = q->n = q->head_done = q->used = 0;
    }
  }
  if (u->fd >= 0) {
    close(u->fd);
    u->fd = -1;
  }
}

/* ------------------------------------------------------------------------ */
/* Receive                                                                  */
/* ------------------------------------------------------------------------ */

int uvq_udp_recv(uvq_udp *u, uvq_udp_rx *rx) {
  int i, n;

  for (i = 0; i < UVQ_UDP_RECV_BATCH; ++i) {
    struct msghdr *h = &rx->msgs[i].msg_hdr;
    rx->iov[i].iov_base = rx->bufs[i];
    rx->iov[i].iov_len = UVQ_UDP_RECV_BUFLEN;
    memset(h, 0, sizeof(*h));
    h->msg_name = &rx->names[i];
    h->msg_namelen = sizeof(rx->names[i]);
    h->msg_iov = &rx->iov[i];
    h->msg_iovlen = 1;
    h->msg_control = rx->ctrl[i];
    h->msg_controllen = sizeof(rx->ctrl[i]);
    rx->msgs[i].msg_len = 0;
  }
  for (;;) {
    n = recvmmsg(u->fd, rx->msgs, UVQ_UDP_RECV_BATCH, MSG_DONTWAIT, NULL);
    if (n >= 0) {
      u->stats.recv_calls++;
      return n;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return 0;
    }
    return -1;
  }
}

int uvq_udp_read_errors(uvq_udp *u, uvq_udp_icmp_cb cb, void *arg) {
  int n = 0;

  for (;;) {
    struct sockaddr_storage dst;
    uint64_t ctrl[64];
    uint8_t payload[64];
    struct iovec iov = {payload, sizeof(payload)};
    struct msghdr h;
    struct cmsghdr *c;

    memset(&h, 0, sizeof(h));
    h.msg_name = &dst;
    h.msg_namelen = sizeof(dst);
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = ctrl;
    h.msg_controllen = sizeof(ctrl);
    if (recvmsg(u->fd, &h, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return n; /* EAGAIN: the queue is empty */
    }
    ++n;
    u->stats.errqueue_reads++;
    for (c = CMSG_FIRSTHDR(&h); c != NULL; c = CMSG_NXTHDR(&h, c)) {
      struct sock_extended_err ee;
      int kind = 0;

      if (!((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
            (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR)) ||
          c->cmsg_len < CMSG_LEN(sizeof(ee))) {
        continue;
      }
      memcpy(&ee, CMSG_DATA(c), sizeof(ee));
      if (ee.ee_origin == SO_EE_ORIGIN_ICMP && ee.ee_type == 3) {
        /* Destination unreachable: 3 port; 0, 1 net / host; 9, 10, 13
         * prohibited. */
        kind = ee.ee_code == 3 ? UVQ_ICMP_PORT_UNREACHABLE
               : ee.ee_code <= 1 || ee.ee_code == 9 || ee.ee_code == 10 ||
                       ee.ee_code == 13
                   ? UVQ_ICMP_HOST_UNREACHABLE
                   : 0;
      } else if (ee.ee_origin == SO_EE_ORIGIN_ICMP6 && ee.ee_type == 1) {
        /* 4 port; 0 no route, 1 prohibited, 3 address unreachable. */
        kind = ee.ee_code == 4                      ? UVQ_ICMP_PORT_UNREACHABLE
               : ee.ee_code <= 1 || ee.ee_code == 3 ? UVQ_ICMP_HOST_UNREACHABLE
                                                    : 0;
      }
      if (kind != 0 && h.msg_namelen > 0) {
        u->stats.icmp_unreachable++;
        cb(arg, (const struct sockaddr *)&dst, (uvq_icmp_kind)kind);
      }
    }
  }
}

static void meta_local4(uvq_udp *u, uvq_udp_meta *m, const struct cmsghdr *c) {
  struct in_pktinfo pi;
  struct sockaddr_in sin;

  memcpy(&pi, CMSG_DATA(c), sizeof(pi));
  memcpy(&sin, &u->bound.ss, sizeof(sin));
  /* The header's destination: the address the peer wrote to. */
  sin.sin_addr = pi.ipi_addr;
  m->has_local =
      uvq_addr_set(&m->local, (struct sockaddr *)&sin, sizeof(sin)) == 0;
}

static void meta_local6(uvq_udp *u, uvq_udp_meta *m, const struct cmsghdr *c) {
  struct in6_pktinfo pi;
  struct sockaddr_in6 sin6;

  memcpy(&pi, CMSG_DATA(c), sizeof(pi));
  memcpy(&sin6, &u->bound.ss, sizeof(sin6));
  sin6.sin6_addr = pi.ipi6_addr;
  /* A link-local address means nothing without its interface; keep it in
   * the scope id so the reply leaves through the same one. */
  sin6.sin6_scope_id =
      IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr) ? (uint32_t)pi.ipi6_ifindex : 0;
  m->has_local =
      uvq_addr_set(&m->local, (struct sockaddr *)&sin6, sizeof(sin6)) == 0;
}

void uvq_udp_meta_get(uvq_udp *u, uvq_udp_rx *rx, int i, uvq_udp_meta *m) {
  struct msghdr *h = &rx->msgs[i].msg_hdr;
  size_t len = rx->msgs[i].msg_len, ndgrams;
  struct cmsghdr *c;

  m->ecn = UVQ_ECN_NOT_ECT;
  m->segment_size = 0;
  m->has_local = 0;
  for (c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS &&
        c->cmsg_len >= CMSG_LEN(1)) {
      /* IP_RECVTOS delivers the TOS byte itself. */
      m->ecn = (uint8_t)(*(const uint8_t *)CMSG_DATA(c) & 0x3);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS &&
               c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int tc;
      memcpy(&tc, CMSG_DATA(c), sizeof(tc));
      m->ecn = (uint8_t)(tc & 0x3);
    } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
               c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int seg;
      memcpy(&seg, CMSG_DATA(c), sizeof(seg));
      m->segment_size = seg > 0 ? (size_t)seg : 0;
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      meta_local4(u, m, c);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      meta_local6(u, m, c);
    }
  }
  if (m->segment_size >= len) {
    /* One segment: an ordinary datagram. */
    m->segment_size = 0;
  }
  ndgrams = m->segment_size ? (len + m->segment_size - 1) / m->segment_size : 1;
  u->stats.recv_buffers++;
  u->stats.datagrams_received += ndgrams;
  u->stats.ecn_received[m->ecn] += ndgrams;
  if (m->segment_size) {
    u->stats.gro_buffers++;
  }
}

/* ------------------------------------------------------------------------ */
/* Send                                                                     */
/* ------------------------------------------------------------------------ */

static size_t put_cmsg(uint8_t *ctrl, size_t off, int level, int type,
                       const void *data, size_t len) {
  struct cmsghdr *c = (struct cmsghdr *)(void *)(ctrl + off);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(len);
  memcpy(CMSG_DATA(c), data, len);
  return off + CMSG_SPACE(len);
}

/* Fills |ctrl| with the control messages every message of |b| shares:
 * ECN and source address first, so that the UDP_SEGMENT that GSO messages
 * append can be left off (*plain is the length without it). Returns the
 * length with it. */
static size_t build_ctrl(const uvq_udp *u, const uvq_send_batch *b,
                         uint8_t *ctrl, uint16_t seg, size_t *plain) {
  size_t off = 0;
  int tos = b->ecn & 0x3;

  memset(ctrl, 0, UVQ_UDP_CMSG_SPACE);
  if (tos) {
    off =
        u->family == AF_INET
            ? put_cmsg(ctrl, off, IPPROTO_IP, IP_TOS, &tos, sizeof(tos))
            : put_cmsg(ctrl, off, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
  }
  if (u->pktinfo && b->path->local.ss.ss_family == u->family &&
      !uvq_udp_is_wildcard((const struct sockaddr *)&b->path->local.ss)) {
    if (u->family == AF_INET) {
      struct in_pktinfo pi;
      memset(&pi, 0, sizeof(pi));
      pi.ipi_spec_dst =
          ((const struct sockaddr_in *)(const void *)&b->path->local.ss)
              ->sin_addr;
      off = put_cmsg(ctrl, off, IPPROTO_IP, IP_PKTINFO, &pi, sizeof(pi));
    } else {
      const struct sockaddr_in6 *l =
          (const struct sockaddr_in6 *)(const void *)&b->path->local.ss;
      struct in6_pktinfo pi;
      memset(&pi, 0, sizeof(pi));
      pi.ipi6_addr = l->sin6_addr;
      pi.ipi6_ifindex = l->sin6_scope_id;
      off = put_cmsg(ctrl, off, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof(pi));
    }
  }
  *plain = off;
  return put_cmsg(ctrl, off, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg));
}

/* Datagrams per message for a batch of |count| datagrams of |seg| bytes:
 * a GSO message takes as many as fit, without GSO one each. */
static size_t per_msg_of(const uvq_udp *u, size_t count, size_t seg) {
  size_t per_msg = 1;
  if (u->gso && count > 1 && seg <= UINT16_MAX) {
    per_msg = UVQ_UDP_GSO_MAX_BYTES / seg;
    if (per_msg > UVQ_UDP_GSO_MAX_SEGMENTS) {
      per_msg = UVQ_UDP_GSO_MAX_SEGMENTS;
    }
    if (per_msg < 1) {
      per_msg = 1;
    }
  }
  return per_msg;
}

/* Fills message |n| with |nd| datagrams of |b| from datagram |idx| on,
 * sharing |ctrl| (|withseg| bytes with UDP_SEGMENT, |plain| without). */
static void fill_msg(uvq_udp *u, size_t n, const uvq_send_batch *b, size_t idx,
                     size_t nd, uint8_t *ctrl, size_t withseg, size_t plain) {
  size_t seg = b->segment_size ? b->segment_size : b->datalen;
  size_t off = idx * seg, len = nd * seg;
  struct msghdr *h = &u->msgs[n].msg_hdr;

  if (len > b->datalen - off) {
    len = b->datalen - off;
  }
  u->iov[n].iov_base = (void *)(uintptr_t)(b->data + off);
  u->iov[n].iov_len = len;
  memset(h, 0, sizeof(*h));
  h->msg_name = (void *)(uintptr_t)&b->path->remote.ss;
  h->msg_namelen = b->path->remote.len;
  h->msg_iov = &u->iov[n];
  h->msg_iovlen = 1;
  /* A lone datagram goes without UDP_SEGMENT: a PMTUD probe larger than
   * the path must fail with EMSGSIZE, not be refused as GSO. */
  h->msg_controllen = nd > 1 ? withseg : plain;
  h->msg_control = h->msg_controllen ? ctrl : NULL;
}

/* Hands messages [0, n) to the kernel. Returns how many it took, or -1
 * with errno set (for the first one). |gso| says message 0 uses GSO (for
 * the test hook). */
static int send_msgs(uvq_udp *u, size_t n, int gso) {
  int rv;
  if (u->inject_send_errno) {
    errno = u->inject_send_errno;
    u->inject_send_errno = 0;
    return -1;
  }
  if (u->inject_eagain) {
    u->inject_eagain--;
    errno = EAGAIN;
    return -1;
  }
  if (gso && u->inject_gso_errno) {
    errno = u->inject_gso_errno;
    u->inject_gso_errno = 0;
    return -1;
  }
  if (n == 1) {
    ssize_t w = sendmsg(u->fd, &u->msgs[0].msg_hdr, MSG_DONTWAIT);
    rv = w < 0 ? -1 : 1;
  } else {
    rv = sendmmsg(u->fd, u->msgs, (unsigned int)n, MSG_DONTWAIT);
  }
  u->stats.send_calls++;
  return rv;
}

/* Counts one message of |nd| datagrams of |b| as sent. */
static void count_msg(uvq_udp *u, const uvq_send_batch *b, size_t nd) {
  u->stats.send_msgs++;
  u->stats.datagrams_sent += nd;
  u->stats.ecn_sent[b->ecn & 0x3] += nd;
  if (nd > 1) {
    u->stats.gso_msgs++;
  }
}

/* The kernel refused GSO (no checksum offload, a segment over the device
 * MTU, an old kernel): one message per datagram from now on, for this
 * socket. */
static void gso_refused(uvq_udp *u) {
  u->gso = 0;
  u->stats.gso = 0;
  u->stats.gso_fallbacks++;
}

static int is_full(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS;
}

/* With IP_RECVERR an ICMP error also sets the socket's pending error, which
 * the next send reports once, whichever datagram it concerned: a send that
 * fails with one of these is made once more. EMSGSIZE is how an ICMP
 * "fragmentation needed" / ICMPv6 "packet too big" is reported, an answer
 * to a path MTU probe beyond a hop's MTU (routine once probes climb past
 * 1500): any connection's next send gets it. A datagram really too large
 * for the route fails the second time too. */
static int is_async_error(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH ||
         err == EHOSTDOWN || err == EPROTO || err == EMSGSIZE;
}

/* Sends |b| now, from the caller's memory. */
static ssize_t send_now(uvq_udp *u, const uvq_send_batch *b) {
  uint64_t ctrl[UVQ_UDP_CMSG_SPACE / 8];
  size_t seg = b->segment_size ? b->segment_size : b->datalen;
  size_t count = b->count, sent = 0, per_msg, plain, withseg;
  int again = 1;

  per_msg = per_msg_of(u, count, seg);
  withseg = build_ctrl(u, b, (uint8_t *)ctrl, (uint16_t)seg, &plain);
  while (sent < count) {
    size_t i, n = 0, idx = sent;
    int rv;

    /* One message per |per_msg| datagrams. */
    while (idx < count && n < UVQ_UDP_SEND_BATCH) {
      size_t nd = count - idx < per_msg ? count - idx : per_msg;
      fill_msg(u, n, b, idx, nd, (uint8_t *)ctrl, withseg, plain);
      idx += nd;
      n++;
    }
    rv = send_msgs(u, n, per_msg > 1);
    if (rv < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (is_full(errno)) {
        return (ssize_t)sent;
      }
      if (again && is_async_error(errno)) {
        again = 0;
        u->stats.send_async_errors++;
        continue;
      }
      if (per_msg > 1 && (errno == EIO || errno == EINVAL)) {
        /* Nothing was sent: again, one message per datagram. */
        gso_refused(u);
        per_msg = 1;
        continue;
      }
      /* The datagram at |sent| failed. Report what went before; the core
       * offers the rest again and then learns of the error. */
      return sent > 0 ? (ssize_t)sent : UVQ_ERR_IO;
    }
    for (i = 0; i < (size_t)rv; ++i) {
      size_t nd = (u->iov[i].iov_len + seg - 1) / seg;
      sent += nd;
      count_msg(u, b, nd);
    }
  }
  return (ssize_t)sent;
}

int uvq_udp_pending(const uvq_udp *u) {
  return u->txq != NULL && u->txq->head < u->txq->n;
}

/* Moves the queue's head past |nd| datagrams that left (or were dropped). */
static void txq_advance(uvq_udp_txq *q, size_t nd) {
  q->head_done += nd;
  while (q->head < q->n && q->head_done >= q->ent[q->head].b.count) {
    q->head_done -= q->ent[q->head].b.count;
    q->head++;
  }
  if (q->head == q->n) {
    q->head = q->n = q->head_done = q->used = 0;
  }
}

int uvq_udp_flush(uvq_udp *u) {
  uvq_udp_txq *q = u->txq;
  int again = 1;

  while (uvq_udp_pending(u)) {
    size_t i, n = 0, e = q->head, idx = q->head_done;
    int rv;

    /* One sendmmsg over as many queued batches as fit. */
    while (e < q->n && n < UVQ_UDP_SEND_BATCH) {
      uvq_udp_qent *qe = &q->ent[e];
      size_t seg = qe->b.segment_size ? qe->b.segment_size : qe->b.datalen;
      size_t per_msg = per_msg_of(u, qe->b.count, seg);
      size_t nd = qe->b.count - idx < per_msg ? qe->b.count - idx : per_msg;
      fill_msg(u, n, &qe->b, idx, nd, (uint8_t *)qe->ctrl, qe->withseg,
               qe->plain);
      q->msg_ent[n] = (uint16_t)e;
      q->msg_nd[n] = (uint16_t)nd;
      n++;
      idx += nd;
      if (idx == qe->b.count) {
        e++;
        idx = 0;
      }
    }
    rv = send_msgs(u, n, q->msg_nd[0] > 1);
    if (rv < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (is_full(errno)) {
        return 1;
      }
      if (again && is_async_error(errno)) {
        again = 0;
        u->stats.send_async_errors++;
        continue;
      }
      if (q->msg_nd[0] > 1 && (errno == EIO || errno == EINVAL)) {
        gso_refused(u);
        continue;
      }
      /* The first message's datagram(s) cannot be sent at all; the core
       * already counted them as sent, so they are counted here. */
      u->stats.send_errors += q->msg_nd[0];
      txq_advance(q, q->msg_nd[0]);
      continue;
    }
    for (i = 0; i < (size_t)rv; ++i) {
      count_msg(u, &q->ent[q->msg_ent[i]].b, q->msg_nd[i]);
      txq_advance(q, q->msg_nd[i]);
    }
  }
  return 0;
}

/* Copies |b| into the queue if there is room. */
static int txq_put(uvq_udp *u, const uvq_send_batch *b) {
  uvq_udp_txq *q = u->txq;
  uvq_udp_qent *qe;
  size_t seg = b->segment_size ? b->segment_size : b->datalen;

  if (q->n == UVQ_UDP_TXQ_ENTRIES || q->used + b->datalen > UVQ_UDP_TXQ_BYTES) {
    return 0;
  }
  qe = &q->ent[q->n++];
  memcpy(q->buf + q->used, b->data, b->datalen);
  qe->b = *b;
  qe->b.data = q->buf + q->used;
  qe->path = *b->path;
  qe->b.path = &qe->path;
  qe->withseg =
      build_ctrl(u, &qe->b, (uint8_t *)qe->ctrl, (uint16_t)seg, &qe->plain);
  q->used += b->datalen;
  u->stats.queued_batches++;
  return 1;
}

ssize_t uvq_udp_send(uvq_udp *u, const uvq_send_batch *b) {
  size_t seg = b->segment_size ? b->segment_size : b->datalen;

  if (seg == 0 || b->count == 0) {
    /* An empty batch: nothing to put on the wire. */
    return (ssize_t)b->count;
  }
  if (u->txq == NULL) {
    return send_now(u, b);
  }
  if (b->datalen <= UVQ_UDP_TXQ_SMALL) {
    if (txq_put(u, b)) {
      return (ssize_t)b->count;
    }
    /* Full: make room. */
    if (uvq_udp_flush(u) != 0) {
      return 0;
    }
    if (txq_put(u, b)) {
      return (ssize_t)b->count;
    }
    return send_now(u, b);
  }
  /* A large batch leaves at once, after what was queued before it. */
  if (uvq_udp_flush(u) != 0) {
    return 0;
  }
  return send_now(u, b);
}
