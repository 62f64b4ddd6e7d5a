/* UDP socket helpers for the libuv adapter: socket setup and batched
 * receive / send with recvmmsg / sendmmsg. No libuv and no core state here,
 * so the batching can be reasoned about (and later extended with GSO, GRO,
 * ECN and PKTINFO) on its own. */
#ifndef UVQ_UV_UDP_H
#define UVQ_UV_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "uvquic/uvquic.h"

/* Datagrams read per recvmmsg call, and the size of each buffer. 2 KiB holds
 * any datagram we accept (max_udp_payload_size is at most 1500 on the wire
 * paths we use); a larger one is truncated by the kernel (MSG_TRUNC) and
 * dropped by us. */
#define UVQ_UDP_RECV_BATCH 64
#define UVQ_UDP_RECV_BUFLEN 2048
/* Datagrams handed to one sendmmsg call. */
#define UVQ_UDP_SEND_BATCH 64

/* Buffers reused by every receive; allocated once per socket. */
typedef struct uvq_udp_rx {
  struct mmsghdr msgs[UVQ_UDP_RECV_BATCH];
  struct iovec iov[UVQ_UDP_RECV_BATCH];
  struct sockaddr_storage names[UVQ_UDP_RECV_BATCH];
  uint8_t bufs[UVQ_UDP_RECV_BATCH][UVQ_UDP_RECV_BUFLEN];
} uvq_udp_rx;

/* Headers reused by every send. */
typedef struct uvq_udp_tx {
  struct mmsghdr msgs[UVQ_UDP_SEND_BATCH];
  struct iovec iov[UVQ_UDP_SEND_BATCH];
} uvq_udp_tx;

/*
 * uvq_udp_open creates a non-blocking UDP socket bound to |addr| (IPv6 with
 * IPV6_V6ONLY), with its buffers raised to |bufsize| where the system allows
 * (best effort), and writes the bound address (the real port when 0 was
 * asked) to |bound|. Returns the fd, or -1 with errno set.
 */
int uvq_udp_open(const struct sockaddr *addr, socklen_t addrlen, int bufsize,
                 uvq_addr *bound);

/*
 * uvq_udp_recv reads up to UVQ_UDP_RECV_BATCH datagrams into |rx|. Returns
 * how many (0 when none is waiting), or -1 with errno set for another error.
 * Datagram i is rx->bufs[i], rx->msgs[i].msg_len bytes, from rx->names[i]
 * (rx->msgs[i].msg_hdr.msg_namelen bytes); a datagram truncated by the
 * kernel has MSG_TRUNC in rx->msgs[i].msg_hdr.msg_flags.
 */
int uvq_udp_recv(int fd, uvq_udp_rx *rx);

/*
 * uvq_udp_send sends the datagrams of |b| with sendmmsg, one message per
 * datagram. Returns how many the kernel took (0 when the socket is full), or
 * a negative UVQ_ERR_IO when the first datagram fails with an error other
 * than EAGAIN (errno is left set).
 */
ssize_t uvq_udp_send(int fd, uvq_udp_tx *tx, const uvq_send_batch *b);

#endif
