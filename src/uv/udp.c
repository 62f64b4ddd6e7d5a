#include "uv/udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

static void set_bufsize(int fd, int opt, int size) {
  /* Best effort: the kernel caps the value at net.core.[rw]mem_max; a
   * failure leaves the default, which only costs throughput. */
  (void)setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
}

int uvq_udp_open(const struct sockaddr *addr, socklen_t addrlen, int bufsize,
                 uvq_addr *bound) {
  int fd, on = 1, saved;
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof(ss);

  if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
              IPPROTO_UDP);
  if (fd < 0) {
    return -1;
  }
  if (addr->sa_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
    goto fail;
  }
  if (bufsize > 0) {
    set_bufsize(fd, SO_RCVBUF, bufsize);
    set_bufsize(fd, SO_SNDBUF, bufsize);
  }
  /* QUIC path MTU discovery needs DF set: a probe too large for the path
   * must be lost (or refused with EMSGSIZE), never fragmented. */
  if (addr->sa_family == AF_INET) {
    int v = IP_PMTUDISC_DO;
    (void)setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
  } else {
    int v = IPV6_PMTUDISC_DO;
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v, sizeof(v));
  }
  if (bind(fd, addr, addrlen) != 0) {
    goto fail;
  }
  if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
    goto fail;
  }
  if (uvq_addr_set(bound, (const struct sockaddr *)&ss, sslen) != 0) {
    errno = EAFNOSUPPORT;
    goto fail;
  }
  return fd;

fail:
  saved = errno;
  close(fd);
  errno = saved;
  return -1;
}

int uvq_udp_recv(int fd, uvq_udp_rx *rx) {
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
    rx->msgs[i].msg_len = 0;
  }
  for (;;) {
    n = recvmmsg(fd, rx->msgs, UVQ_UDP_RECV_BATCH, MSG_DONTWAIT, NULL);
    if (n >= 0) {
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

ssize_t uvq_udp_send(int fd, uvq_udp_tx *tx, const uvq_send_batch *b) {
  size_t seg = b->segment_size ? b->segment_size : b->datalen;
  size_t count = b->count, sent = 0;

  if (seg == 0) {
    /* An empty batch: nothing to put on the wire. */
    return (ssize_t)count;
  }
  while (sent < count) {
    size_t i, n = count - sent;
    int rv;

    if (n > UVQ_UDP_SEND_BATCH) {
      n = UVQ_UDP_SEND_BATCH;
    }
    for (i = 0; i < n; ++i) {
      size_t off = (sent + i) * seg;
      size_t len = b->datalen - off < seg ? b->datalen - off : seg;
      struct msghdr *h = &tx->msgs[i].msg_hdr;
      tx->iov[i].iov_base = (void *)(uintptr_t)(b->data + off);
      tx->iov[i].iov_len = len;
      memset(h, 0, sizeof(*h));
      h->msg_name = (void *)(uintptr_t)&b->path->remote.ss;
      h->msg_namelen = b->path->remote.len;
      h->msg_iov = &tx->iov[i];
      h->msg_iovlen = 1;
    }
    rv = sendmmsg(fd, tx->msgs, (unsigned int)n, MSG_DONTWAIT);
    if (rv < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
        return (ssize_t)sent;
      }
      /* The datagram at |sent| failed. Report what went before; the core
       * offers the rest again and then learns of the error. */
      return sent > 0 ? (ssize_t)sent : UVQ_ERR_IO;
    }
    sent += (size_t)rv;
  }
  return (ssize_t)sent;
}
