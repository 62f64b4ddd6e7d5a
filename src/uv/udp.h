/* UDP socket datapath for the libuv adapter: socket setup, receive with
 * recvmmsg + UDP_GRO, send with UDP_SEGMENT (GSO) and sendmmsg, ECN marks
 * both ways (IP_TOS / IPV6_TCLASS), and the local address of each datagram
 * on wildcard-bound sockets (IP_PKTINFO / IPV6_PKTINFO). No libuv calls and
 * no core state here, so the batching can be reasoned about on its own. See
 * docs/internals/uv-adapter.md. */
#ifndef UVQ_UV_UDP_H
#define UVQ_UV_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

/* Buffers per recvmmsg call and the size of each: 64 KiB holds a whole GRO
 * super-buffer (the kernel never coalesces past 64 KiB), or one datagram of
 * any size when GRO is off. A larger one is truncated (MSG_TRUNC) and
 * dropped. Allocated once per socket and reused: 2 MiB. */
#define UVQ_UDP_RECV_BATCH 32
#define UVQ_UDP_RECV_BUFLEN 65536
/* Segments per GSO message: the kernel's UDP_MAX_SEGMENTS is 64 on older
 * kernels (128 since 5.x); 64 is safe everywhere. */
#define UVQ_UDP_GSO_MAX_SEGMENTS 64
/* Bytes per GSO message: the largest IPv4 UDP payload (65535 - 20 - 8). */
#define UVQ_UDP_GSO_MAX_BYTES 65507
/* Messages handed to one sendmmsg call (GSO messages or, without GSO, one
 * per datagram). */
#define UVQ_UDP_SEND_BATCH 64
/* Control buffer of one message: UDP_SEGMENT / UDP_GRO, TOS / TCLASS, and
 * PKTINFO (in6_pktinfo is the largest), each CMSG_SPACE-aligned. */
#define UVQ_UDP_CMSG_SPACE 128

/* Small batches (up to UVQ_UDP_TXQ_SMALL bytes: handshake flights, ACKs,
 * the tail of a burst) are not sent one system call each: they are copied
 * into the socket's send queue and leave together, several connections'
 * batches in one sendmmsg, when the queue fills, before a large batch (so
 * the order is kept) and after every call into the core (driver.c). */
#define UVQ_UDP_TXQ_SMALL 16384
#define UVQ_UDP_TXQ_BYTES 65536
#define UVQ_UDP_TXQ_ENTRIES UVQ_UDP_SEND_BATCH

/* One queued batch: its datagrams (in the queue's buffer), its path and the
 * control messages its sendmsg headers share. */
typedef struct uvq_udp_qent {
  uvq_send_batch b; /* b.data points into buf, b.path at path */
  uvq_path path;
  uint64_t ctrl[UVQ_UDP_CMSG_SPACE / 8];
  size_t withseg, plain;
} uvq_udp_qent;

/* msg_ent / msg_nd below are uint16_t. */
_Static_assert(UVQ_UDP_TXQ_ENTRIES <= UINT16_MAX &&
                   UVQ_UDP_GSO_MAX_SEGMENTS <= UINT16_MAX,
               "send queue indices must fit uint16_t");

typedef struct uvq_udp_txq {
  uvq_udp_qent ent[UVQ_UDP_TXQ_ENTRIES];
  /* Entries [head, n) wait; the first |head_done| datagrams of ent[head]
   * already left (a flush the socket cut short). */
  size_t head, n, head_done;
  /* Bytes of |buf| in use. */
  size_t used;
  /* For each message of the sendmmsg being built: its entry and datagrams. */
  uint16_t msg_ent[UVQ_UDP_SEND_BATCH];
  uint16_t msg_nd[UVQ_UDP_SEND_BATCH];
  uint8_t buf[UVQ_UDP_TXQ_BYTES];
} uvq_udp_txq;

/* Buffers reused by every receive; allocated once per socket. */
typedef struct uvq_udp_rx {
  struct mmsghdr msgs[UVQ_UDP_RECV_BATCH];
  struct iovec iov[UVQ_UDP_RECV_BATCH];
  struct sockaddr_storage names[UVQ_UDP_RECV_BATCH];
  /* Control buffers; uint64_t for cmsghdr alignment. */
  uint64_t ctrl[UVQ_UDP_RECV_BATCH][UVQ_UDP_CMSG_SPACE / 8];
  uint8_t bufs[UVQ_UDP_RECV_BATCH][UVQ_UDP_RECV_BUFLEN];
} uvq_udp_rx;

/* What one received buffer carries, decoded from its control messages. */
typedef struct uvq_udp_meta {
  /* ECN codepoint of the IP header (UVQ_ECN_*). */
  uint8_t ecn;
  /* GRO segment size, or 0 for a single datagram. */
  size_t segment_size;
  /* Nonzero when |local| holds the datagram's destination address (port
   * included): PKTINFO on a wildcard-bound socket. */
  int has_local;
  uvq_addr local;
} uvq_udp_meta;

/* One socket and what the kernel lets us do with it. */
typedef struct uvq_udp {
  int fd;
  int family;
  /* Send with UDP_SEGMENT; cleared for good by a refusal (fallback). */
  int gso;
  /* The startup probe found UDP_SEGMENT supported. */
  int gso_capable;
  /* UDP_GRO is on: receives may carry a UDP_GRO cmsg. */
  int gro;
  /* Bound to the wildcard address: PKTINFO on receive and send. */
  int pktinfo;
  /* Test hook: the next GSO send fails with this errno without reaching
   * the kernel (0 = off). */
  int inject_gso_errno;
  /* Test hook: the next this many send calls fail with EAGAIN without
   * reaching the kernel. */
  unsigned inject_eagain;
  /* Test hook: the next send call fails with this errno (0 = off). */
  int inject_send_errno;
  /* stats.gso_fallbacks and stats.send_errors already reported to the
   * core. */
  uint64_t gso_fallbacks_reported;
  uint64_t send_errors_reported;
  /* Send queue of small batches (NULL: every batch is sent at once). The
   * owner allocates it and frees it after uvq_udp_close. */
  uvq_udp_txq *txq;
  /* The bound address (the real port when 0 was asked). */
  uvq_addr bound;
  uvq_uv_stats stats;
  struct mmsghdr msgs[UVQ_UDP_SEND_BATCH];
  struct iovec iov[UVQ_UDP_SEND_BATCH];
} uvq_udp;

/* Options for uvq_udp_open. */
typedef struct uvq_udp_opts {
  /* SO_RCVBUF / SO_SNDBUF to ask for (0 = the system default). */
  int bufsize;
  /* Nonzero: do not use GSO even if the kernel supports it. */
  int no_gso;
  /* Nonzero: do not enable GRO. */
  int no_gro;
  /* Where to warn once when the buffers are clamped below |min_bufsize|
   * (NULL: stderr). */
  void (*log)(void *user_data, const char *line);
  void *log_user_data;
  /* Buffers clamped below |bufsize| but not below this are still enough
   * for one connection: said only through |info| (NULL: not at all). */
  int min_bufsize;
  void (*info)(void *user_data, const char *line);
  void *info_user_data;
  /* Nonzero: SO_REUSEPORT before bind (a shard's socket). */
  int reuseport;
} uvq_udp_opts;

/*
 * uvq_udp_open creates a non-blocking UDP socket bound to |addr| (IPv6 with
 * IPV6_V6ONLY), sets its buffers (warning once through opts->log when the
 * kernel clamps them), probes GSO (getsockopt UDP_SEGMENT) and enables GRO,
 * ECN reception and — on a wildcard address — PKTINFO. Fills |u|. Returns
 * 0, or -1 with errno set (socket or bind failed).
 */
int uvq_udp_open(uvq_udp *u, const struct sockaddr *addr, socklen_t addrlen,
                 const uvq_udp_opts *opts);

/* uvq_udp_close closes the socket. */
void uvq_udp_close(uvq_udp *u);

/*
 * uvq_udp_recv reads up to UVQ_UDP_RECV_BATCH buffers into |rx|. Returns how
 * many (0 when none is waiting), or -1 with errno set for another error.
 * Buffer i is rx->bufs[i], rx->msgs[i].msg_len bytes, from rx->names[i]
 * (rx->msgs[i].msg_hdr.msg_namelen bytes); uvq_udp_meta_get decodes its
 * control messages. A buffer truncated by the kernel has MSG_TRUNC in
 * rx->msgs[i].msg_hdr.msg_flags.
 */
int uvq_udp_recv(uvq_udp *u, uvq_udp_rx *rx);

/* Called for each ICMP / ICMPv6 unreachable read from the error queue, with
 * the destination of the datagram it answered. */
typedef void (*uvq_udp_icmp_cb)(void *arg, const struct sockaddr *dst,
                                uvq_icmp_kind kind);

/*
 * uvq_udp_read_errors empties the socket's error queue (IP_RECVERR /
 * IPV6_RECVERR are set on every socket), calling |cb| for each ICMP
 * unreachable in it; other entries (local errors, PMTU) are only counted.
 * Returns how many entries it read.
 */
int uvq_udp_read_errors(uvq_udp *u, uvq_udp_icmp_cb cb, void *arg);

/* uvq_udp_meta_get decodes buffer |i| of the last uvq_udp_recv and counts
 * it in u->stats. */
void uvq_udp_meta_get(uvq_udp *u, uvq_udp_rx *rx, int i, uvq_udp_meta *m);

/*
 * uvq_udp_send sends the datagrams of |b| — GSO messages of up to
 * UVQ_UDP_GSO_MAX_SEGMENTS datagrams when the socket can, one message per
 * datagram otherwise — with sendmsg / sendmmsg, ECN from b->ecn and, on a
 * wildcard socket, the source address from b->path->local. Returns how many
 * datagrams the kernel took (0 when the socket is full), or UVQ_ERR_IO when
 * the first datagram fails with an error other than EAGAIN (errno is left
 * set). A GSO refusal (EIO, EINVAL) turns GSO off for this socket, counts
 * it in stats.gso_fallbacks and sends per datagram instead.
 */
ssize_t uvq_udp_send(uvq_udp *u, const uvq_send_batch *b);

/*
 * With a send queue (u->txq), uvq_udp_send takes a small batch by copying
 * it into the queue (it counts as taken: the kernel gets it at the next
 * uvq_udp_flush) and sends the queue first before a large batch or when
 * it is full; a batch it cannot queue or send because the socket is full
 * is not taken (0), as without a queue. uvq_udp_flush sends what is queued
 * with as few sendmmsg calls as it takes. Returns 0 when the queue is
 * empty, 1 when the socket filled up first (the rest waits for the next
 * flush: watch for writability). A datagram the kernel refuses outright
 * (not EAGAIN) is dropped and counted in stats.send_errors.
 */
int uvq_udp_flush(uvq_udp *u);

/* uvq_udp_pending returns nonzero if queued datagrams wait. */
int uvq_udp_pending(const uvq_udp *u);

/* Nonzero if |addr| (AF_INET or AF_INET6) is the family's wildcard
 * address (0.0.0.0 or ::). */
int uvq_udp_is_wildcard(const struct sockaddr *addr);

/*
 * Test hook (not exported): the next GSO send of |uep| fails with |err| as
 * if the kernel had refused it, without reaching the kernel.
 */
void uvq_uv_endpoint_inject_gso_errno(uvq_uv_endpoint *uep, int err);

/*
 * Test hook (not exported): the next |n| send calls of |uep|'s first socket
 * fail with EAGAIN as if the socket buffer were full.
 */
void uvq_uv_endpoint_inject_eagain(uvq_uv_endpoint *uep, unsigned n);

/*
 * Test hook (not exported): the next send call of |uep|'s first socket
 * fails with |err| as if the kernel had refused its first message.
 */
void uvq_uv_endpoint_inject_send_errno(uvq_uv_endpoint *uep, int err);

#endif
