/**
 * @file uvquic_uv.h
 * uvquic libuv adapter: drives a uvq_endpoint on a non-blocking UDP socket
 * in a libuv loop (the counterparts of tokio-quiche's start_listener and
 * connect). Everything here runs on the loop's thread, except wakers, and
 * except a server with shards (uvq_uv_listen, uvq_uv_config.shards), whose
 * callbacks run on the shards' own threads.
 *
 * Clock: the adapter gives its endpoints uv_hrtime() (CLOCK_MONOTONIC, in
 * nanoseconds) as |now|. Where a function of the core or of HTTP/3 asks
 * for |now| on an adapter endpoint's connection (uvq_conn_update_key,
 * uvq_h3_server_accept, ...), pass uv_hrtime(), or uvq_conn_get_now() inside
 * a callback; deadlines (uvq_conn_set_app_timer) are on that clock too.
 * Not uv_now(): the loop's cached millisecond time lags.
 *
 * Errors and ownership follow the core: negative UVQ_ERR_* (a call that
 * fails fires none of its callbacks); the adapter owns the endpoints it
 * creates until their close callback fires, and borrows the TLS context and
 * the callbacks it is given, which must outlive it.
 */
#ifndef UVQUIC_UV_H
#define UVQUIC_UV_H

#include <uv.h>

#include "uvquic/uvquic.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A libuv-driven uvq_endpoint: its UDP sockets, a timer and an async
 * handle. A server (uvq_uv_listen) or a client endpoint
 * (uvq_uv_client_new).
 */
typedef struct uvq_uv_endpoint uvq_uv_endpoint;

/** Called once an endpoint (server or client) has freed everything. */
typedef void (*uvq_uv_close_cb)(uvq_uv_endpoint *uep, void *user_data);

/**
 * The server's accept hook, as in uvq_endpoint_config.on_accept: set
 * *pcallbacks and *pconn_user_data and return 0, or return a negative value
 * to refuse the connection with CONNECTION_REFUSED.
 */
typedef int (*uvq_uv_accept_cb)(uvq_uv_endpoint *uep, uvq_conn *conn,
                                const uvq_accept_info *info,
                                const uvq_app_callbacks **pcallbacks,
                                void **pconn_user_data, void *user_data);

/**
 * The current version of uvq_uv_config; new fields go at the end. Version 2
 * added shards and forward_queue_len; a version-1 config is still read
 * (those fields take their defaults). Other versions are refused.
 */
#define UVQ_UV_CONFIG_VERSION 2

/** The most shards a server can have: the five low bits of the first
 * octet of its connection IDs name the shard (UVQ_MAX_CID_SHARDS). */
#define UVQ_UV_MAX_SHARDS 32

/** uvq_uv_config.forward_queue_len's default: datagrams waiting to be
 * handed from one shard to another. */
#define UVQ_UV_FORWARD_QUEUE_DEFAULT 1024

/**
 * The socket buffer size uvq_uv_config_default asks for: 8 MiB, enough
 * for many fast connections. Unprivileged processes get at most
 * net.core.rmem_max / wmem_max (see uvq_uv_stats.rcvbuf).
 */
#define UVQ_UV_SOCKBUF_DEFAULT (8 * 1024 * 1024)

/**
 * uvq_uv_config holds what the adapter itself does with an endpoint, as
 * opposed to the QUIC endpoint's uvq_settings. Start from
 * uvq_uv_config_default() and change what you need; a NULL config is the
 * defaults. It is copied: it need not outlive the call it is given to
 * (the allocator must).
 *
 * The tools (uvquic-server, uvquic-client) set no_gso and no_gro from the
 * environment variables UVQ_UV_NO_GSO=1 and UVQ_UV_NO_GRO=1; the library
 * reads no environment variable.
 */
typedef struct uvq_uv_config {
  int version; /**< UVQ_UV_CONFIG_VERSION (set by uvq_uv_config_default). */
  /**
   * The allocator of the adapter and of the core endpoint it creates
   * (uvq_endpoint_config.mem). NULL (default): libc. Must outlive the
   * endpoint.
   */
  const uvq_mem *mem;
  /**
   * Nonzero: never send with UDP GSO (UDP_SEGMENT), even where the kernel
   * supports it; one message per datagram. Default 0 (GSO where the
   * kernel has it). uvq_uv_endpoint_set_gso switches it later.
   */
  int no_gso;
  /** Nonzero: do not enable UDP GRO on receive. Default 0 (GRO on). */
  int no_gro;
  /**
   * SO_RCVBUF and SO_SNDBUF to ask for on each socket, in bytes; 0 or less
   * leaves the kernel's defaults. Default UVQ_UV_SOCKBUF_DEFAULT.
   */
  int sockbuf;
  /**
   * (version >= 2) Server: how many shards uvq_uv_listen starts, 1..32
   * (UVQ_UV_MAX_SHARDS). 0 or 1 (default): one endpoint on the caller's
   * loop. More: see "Shards" at uvq_uv_listen.
   */
  unsigned shards;
  /**
   * (version >= 2) Shards: datagrams each shard's forward queue holds (a
   * datagram that reached another shard's socket waits there for its
   * owner). A full queue drops and counts (uvq_uv_stats.forward_overflows).
   * 0: UVQ_UV_FORWARD_QUEUE_DEFAULT (the default).
   */
  unsigned forward_queue_len;
} uvq_uv_config;

/** uvq_uv_config_default zeroes |cfg|, sets its version and defaults. */
UVQ_EXTERN void uvq_uv_config_default(uvq_uv_config *cfg);

/**
 * uvq_uv_listen binds a UDP socket to |addr| (IPv4 or IPv6; port 0 picks
 * one) on |loop| and starts accepting QUIC connections. |cfg| and
 * |settings| may be NULL (defaults); |tls| must be a server context
 * outliving the endpoint. Free it with uvq_uv_endpoint_close.
 *
 * Returns 0 and sets *puep, or UVQ_ERR_INVALID_ARGUMENT (NULL arguments,
 * another family, a |cfg| or |settings| of an unknown version), UVQ_ERR_IO
 * (socket or bind failed; errno is left set to the OS error), or
 * UVQ_ERR_NOMEM.
 *
 * Shards (cfg->shards > 1): uvq_uv_listen starts that many shards, each a
 * thread running its own libuv loop with its own core endpoint and its own
 * UDP socket, all bound to |addr| with SO_REUSEPORT (the first socket picks
 * the port when |addr| has port 0). *puep is then the group: it lives on
 * |loop| and stands for every shard. What holds for a group:
 *
 * - Threads. |on_accept| and every callback of the connections it accepts
 *   run on the thread of the shard that owns the connection, several at
 *   once: their first argument is that shard (uvq_uv_endpoint_get_shard_index
 *   says which), |user_data| is the group's. Whatever they share must be
 *   thread-safe or kept per shard. A connection stays on its shard for its
 *   whole life; call the core's functions on it only from that thread
 *   (from its callbacks, or through uvq_uv_endpoint_each_shard or a waker).
 * - Steering. The shard's index is in the low five bits of the first octet
 *   of every connection ID its endpoint issues (uvq_endpoint_config
 *   cid_shard). A classic BPF program (SO_ATTACH_REUSEPORT_CBPF) sends each
 *   short-header packet to the socket of that index; long-header packets
 *   (Initial, 0-RTT, Handshake, Retry'd Initials) take the kernel's 4-tuple
 *   hash, which keeps one client's handshake on one shard. Where the
 *   program cannot be attached the settings' log_cb (at UVQ_LOG_WARN; else
 *   their log, else stderr) says so once and every packet takes the hash.
 *   A packet that still reaches another shard (the client's address
 *   changed: migration, NAT rebinding) is handed to its owner through that
 *   shard's forward queue (uvq_uv_stats.forwarded, forward_overflows).
 * - Sharing. Every shard uses |tls| (its session-ticket key and 0-RTT
 *   anti-replay table are thread-safe; uvq_tls_ctx_reload is not: park the
 *   shards first) and cfg->mem (called from every shard's thread: it must
 *   be thread-safe), and a copy of |settings| (which must be of the
 *   current version) in which
 *   the stateless-reset secret and the token key, when |settings| sets
 *   none, are drawn once for all shards, and endpoint_send_budget,
 *   endpoint_recv_budget, max_connections and max_handshakes are divided
 *   among the shards (rounded up; 0 stays "no limit"). Per-source limits
 *   hold per shard.
 * - The group itself: uvq_uv_endpoint_close / _close_now stop every shard
 *   and fire their callback on |loop| once all threads have ended;
 *   uvq_uv_endpoint_get_stats and uvq_uv_endpoint_get_endpoint_stats sum
 *   the shards' counters (complete once the shards have stopped: inside
 *   the close callback); uvq_uv_endpoint_get_endpoint returns NULL;
 *   uvq_uv_endpoint_get_local_addr, _get_user_data, _conn_count,
 *   _get_shard and _each_shard work from |loop|'s thread.
 *
 * The socket index of each shard is the order its socket joined the
 * kernel's reuseport group; the shards' sockets are opened one after the
 * other, shard 0 first, and stay open until the group closes, so index
 * and shard agree. If another owner's SO_REUSEPORT socket already holds
 * the port, the shards join behind it and the order is not theirs: the
 * group then attaches no program (and says so), and only the hash and
 * forwarding place packets. Do not bind the address elsewhere meanwhile.
 *
 * Returns as above, and UVQ_ERR_INVALID_ARGUMENT for more than 32 shards,
 * |settings| of an older version, or a QUIC-LB configuration that encodes
 * the CID length (settings->quic_lb: those bits hold the shard index),
 * UVQ_ERR_IO when a thread or loop cannot be started.
 */
UVQ_EXTERN int uvq_uv_listen(uvq_uv_endpoint **puep, uv_loop_t *loop,
                             const struct sockaddr *addr,
                             const uvq_uv_config *cfg,
                             const uvq_settings *settings, uvq_tls_ctx *tls,
                             uvq_uv_accept_cb on_accept, void *user_data);

/**
 * uvq_uv_client_new creates a client endpoint: one UDP socket bound to
 * |local| (NULL = the wildcard address of |family|, ephemeral port) that
 * carries any number of connections made with uvq_uv_connect. |cfg| and
 * |settings| may be NULL (defaults); |tls| must be a client context
 * outliving the endpoint. Free it with uvq_uv_endpoint_close.
 *
 * Returns 0 and sets *puep, or UVQ_ERR_INVALID_ARGUMENT (NULL arguments, a
 * family other than AF_INET / AF_INET6, |local| of another family, a |cfg|
 * or |settings| of an unknown version), UVQ_ERR_IO (socket or bind failed;
 * errno is left set) or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_uv_client_new(uvq_uv_endpoint **puep, uv_loop_t *loop,
                                 int family, const struct sockaddr *local,
                                 const uvq_uv_config *cfg,
                                 const uvq_settings *settings, uvq_tls_ctx *tls,
                                 void *user_data);

/**
 * uvq_uv_connect starts a connection from client endpoint |uep| to
 * |remote|. |server_name| is sent as SNI and verified (NULL: none). The
 * callbacks must stay valid for the connection's life; on_established or
 * on_closed reports the outcome.
 *
 * Returns 0 and sets *pconn (may be NULL), or a UVQ_ERR_* from
 * uvq_endpoint_connect.
 */
UVQ_EXTERN int uvq_uv_connect(uvq_uv_endpoint *uep,
                              const struct sockaddr *remote,
                              const char *server_name,
                              const uvq_app_callbacks *callbacks,
                              void *conn_user_data, uvq_conn **pconn);

/**
 * uvq_uv_connect_with is uvq_uv_connect with every per-connection
 * parameter of the core (address-validation token, resumption data, early
 * data...): |params| as for uvq_endpoint_connect, except that params->path
 * is ignored — the adapter builds the path to |remote| from its socket (on
 * a wildcard socket, with the source address the kernel will pick). Same
 * returns as uvq_uv_connect.
 */
UVQ_EXTERN int uvq_uv_connect_with(uvq_uv_endpoint *uep,
                                   const struct sockaddr *remote,
                                   const uvq_connect_params *params,
                                   uvq_conn **pconn);

/**
 * uvq_uv_endpoint_close closes every connection with NO_ERROR, waits for
 * their closing periods, then closes the sockets and handles and frees
 * everything; |cb| fires once at the end. For a server and a client
 * endpoint alike; from inside a callback too (the close packets leave
 * once the library call that ran the callback returns). Calling it twice
 * is a no-op.
 */
UVQ_EXTERN void uvq_uv_endpoint_close(uvq_uv_endpoint *uep, uvq_uv_close_cb cb);

/**
 * uvq_uv_endpoint_close_now is uvq_uv_endpoint_close for a process that is
 * going away: every connection is closed with NO_ERROR and the
 * CONNECTION_CLOSEs that are due are sent (if a socket pushes back, once
 * it takes them), then the sockets and handles are closed and everything is
 * freed at once, without waiting out closing or draining periods (RFC 9000
 * §10.2 lets an endpoint that is going away discard its state early).
 * Pending on_closed callbacks fire first; the free_cb of every
 * uvq_stream_write_ref reference still held fires while the connections
 * are freed; |cb| fires once at the end, as for uvq_uv_endpoint_close.
 *
 * The trade-off: the closing period is what answers a peer whose copy of
 * the CONNECTION_CLOSE was lost; after close_now such a peer learns of the
 * close only from its idle timeout. Use it when all work is done and the
 * process exits; graceful close stays the default.
 *
 * Called after uvq_uv_endpoint_close it cuts that close short (|cb|
 * replaces the earlier callback); calling it twice is a no-op.
 */
UVQ_EXTERN void uvq_uv_endpoint_close_now(uvq_uv_endpoint *uep,
                                          uvq_uv_close_cb cb);

/** The core endpoint (for stats, settings, key rotation); NULL for a
 * group of shards (see uvq_uv_listen). */
UVQ_EXTERN uvq_endpoint *uvq_uv_endpoint_get_endpoint(uvq_uv_endpoint *uep);

/**
 * uvq_uv_endpoint_get_local_addr copies the first socket's bound address
 * into |addr| (e.g. to learn the port picked for port 0). Returns 0, or
 * UVQ_ERR_INVALID_ARGUMENT for NULL arguments.
 */
UVQ_EXTERN int uvq_uv_endpoint_get_local_addr(uvq_uv_endpoint *uep,
                                              uvq_addr *addr);

/**
 * The endpoint's user data (as given to uvq_uv_listen or
 * uvq_uv_client_new).
 */
UVQ_EXTERN void *uvq_uv_endpoint_get_user_data(uvq_uv_endpoint *uep);

/** Datapath facts and counters of one adapter socket
 * (uvq_uv_endpoint_get_stats). */
typedef struct uvq_uv_stats {
  /** Nonzero while sends use UDP GSO (UDP_SEGMENT). */
  int gso;
  /** Nonzero if UDP_GRO is on for receives. */
  int gro;
  /** Nonzero if the socket is wildcard-bound and uses IP(V6)_PKTINFO. */
  int pktinfo;
  /** SO_RCVBUF / SO_SNDBUF as read back from the kernel (bytes; Linux
   * reports twice what was granted). */
  int rcvbuf;
  int sndbuf; /**< See rcvbuf. */
  /** sendmsg / sendmmsg system calls, and the messages they took. */
  uint64_t send_calls;
  uint64_t send_msgs; /**< See send_calls. */
  /** Messages that carried several datagrams with UDP_SEGMENT. */
  uint64_t gso_msgs;
  /** Times the kernel refused GSO and the socket fell back to one message
   * per datagram (0 or 1: the fallback is for the socket's life). */
  uint64_t gso_fallbacks;
  /** Datagrams sent, by the ECN codepoint they carried (UVQ_ECN_*). */
  uint64_t datagrams_sent;
  uint64_t ecn_sent[4]; /**< Index: UVQ_ECN_*. */
  /** recvmmsg calls; buffers read; buffers that were GRO super-buffers
   * (handed to the core with segment_size > 0); datagrams in all buffers. */
  uint64_t recv_calls;
  uint64_t recv_buffers;       /**< See recv_calls. */
  uint64_t gro_buffers;        /**< See recv_calls. */
  uint64_t datagrams_received; /**< See recv_calls. */
  /** Received datagrams by ECN codepoint. */
  uint64_t ecn_received[4];
  /** Received buffers dropped because the kernel truncated them. */
  uint64_t truncated;
  /** Expiry timer (timerfd) firings, and deadlines run without the timer
   * because they were already due when it would have been armed. */
  uint64_t timer_fires;
  uint64_t expiry_immediate; /**< See timer_fires. */
  /** Small batches (handshake flights, ACKs, burst tails) copied into the
   * send queue, to leave with other connections' in one sendmmsg. */
  uint64_t queued_batches;
  /** Datagrams the kernel refused outright (not EAGAIN: e.g. EMSGSIZE,
   * ENETUNREACH) after the send queue had taken them, or still queued when
   * the socket closed: dropped and counted here and in the core's
   * dropped[UVQ_DROP_SEND_ERROR] (loss recovery resends what they
   * carried). */
  uint64_t send_errors;
  /** Wake-ups because a socket that had pushed back (EAGAIN) became
   * writable again. */
  uint64_t writable_wakeups;
  /** Entries read from the sockets' error queues (IP_RECVERR /
   * IPV6_RECVERR). */
  uint64_t errqueue_reads;
  /** Those that were ICMP unreachables, handed to the core
   * (uvq_endpoint_recv_icmp). */
  uint64_t icmp_unreachable;
  /** Sends that failed with an error an earlier ICMP left pending on the
   * socket (ECONNREFUSED, EMSGSIZE and the like: it concerns another
   * datagram) and were made again. */
  uint64_t send_async_errors;
  /** Shards: datagrams this shard read that another shard owns (their
   * DCID names it) and handed to that shard's forward queue. */
  uint64_t forwarded;
  /** Shards: datagrams dropped because the owner's forward queue was full
   * (or the owner had stopped). */
  uint64_t forward_overflows;
  /** Shards: datagrams taken from this shard's forward queue (read by
   * another shard) and given to its endpoint. */
  uint64_t forward_received;
} uvq_uv_stats;

/**
 * uvq_uv_endpoint_get_stats copies the adapter's datapath counters into
 * |st|: summed over all its sockets (uvq_uv_endpoint_add_local), and for a
 * group over the shards that have stopped; the facts (gso, gro, pktinfo,
 * buffer sizes) are those of the first.
 * Returns 0, or UVQ_ERR_INVALID_ARGUMENT.
 */
UVQ_EXTERN int uvq_uv_endpoint_get_stats(uvq_uv_endpoint *uep,
                                         uvq_uv_stats *st);

/**
 * uvq_uv_endpoint_set_gso turns UDP GSO off (|enable| 0) or back on (only
 * where the kernel supports it) for sends from now on: for tests and
 * troubleshooting, on every socket of |uep|; uvq_uv_config.no_gso does the
 * same from creation. Returns the new state of the first socket (1 on, 0
 * off), or UVQ_ERR_INVALID_ARGUMENT.
 */
UVQ_EXTERN int uvq_uv_endpoint_set_gso(uvq_uv_endpoint *uep, int enable);

/**
 * uvq_uv_endpoint_add_local opens another UDP socket for client endpoint
 * |uep|, bound to |local| (same family as the first; port 0 picks one),
 * and writes the bound address to *pbound (may be NULL). The endpoint
 * receives on it like on the first, and sends every datagram whose path's
 * local address is this socket's through it. It stays open until the
 * endpoint closes. Use it with uvq_conn_migrate, or call
 * uvq_uv_conn_migrate, which does both.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (NULL, a server endpoint, another
 * family), UVQ_ERR_SHUTDOWN (closing), UVQ_ERR_IO (socket or bind failed; errno
 * is left set) or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_uv_endpoint_add_local(uvq_uv_endpoint *uep,
                                         const struct sockaddr *local,
                                         uvq_addr *pbound);

/**
 * uvq_uv_conn_migrate moves client connection |conn| of |uep| to a new
 * socket bound to |local| (port 0 picks one): uvq_uv_endpoint_add_local,
 * then uvq_conn_migrate with |nat_rebinding_style| (see there). The
 * connection's new local address goes to *pbound (may be NULL). The old
 * socket stays open (other connections may use it; late packets still
 * arrive on it).
 *
 * Returns 0, or the errors of uvq_uv_endpoint_add_local and
 * uvq_conn_migrate; after a uvq_conn_migrate error the new socket stays
 * open, unused, until the endpoint closes.
 */
UVQ_EXTERN int uvq_uv_conn_migrate(uvq_uv_endpoint *uep, uvq_conn *conn,
                                   const struct sockaddr *local,
                                   int nat_rebinding_style, uvq_addr *pbound);

/**
 * uvq_uv_endpoint_get_shard_count returns how many shards the group |uep|
 * has (uvq_uv_listen with uvq_uv_config.shards > 1), or for a shard the
 * count of its group; 1 for an endpoint without shards.
 */
UVQ_EXTERN unsigned uvq_uv_endpoint_get_shard_count(uvq_uv_endpoint *uep);

/**
 * uvq_uv_endpoint_get_shard_index returns the index (0..count-1) of shard
 * |uep| — the |uep| given to on_accept, say: handy to index an
 * application's per-shard state. 0 for a group or an endpoint without
 * shards.
 */
UVQ_EXTERN unsigned uvq_uv_endpoint_get_shard_index(uvq_uv_endpoint *uep);

/**
 * uvq_uv_endpoint_get_shard returns shard |i| of group |uep| (NULL past the
 * last, or once that shard has stopped); for an endpoint without shards,
 * |uep| itself for |i| 0. Only its own thread may use a shard, except for
 * the calls that say otherwise, and only while it runs.
 */
UVQ_EXTERN uvq_uv_endpoint *uvq_uv_endpoint_get_shard(uvq_uv_endpoint *uep,
                                                      unsigned i);

/** The loop |uep| runs on (a shard's own loop, for a shard). */
UVQ_EXTERN uv_loop_t *uvq_uv_endpoint_get_loop(uvq_uv_endpoint *uep);

/** A function run on a shard's thread (uvq_uv_endpoint_each_shard). */
typedef void (*uvq_uv_shard_cb)(uvq_uv_endpoint *shard, void *arg);

/**
 * uvq_uv_endpoint_each_shard runs |cb|(shard, |arg|) on the thread of
 * every shard of group |uep|, soon (from that shard's loop, like a
 * callback: the adapter flushes after it), in no particular order between
 * shards; |arg| must stay valid until the last has run. The way to reach a
 * shard's core endpoint from outside it: stop accepting, read its stats,
 * reload its keys. A shard that has stopped is skipped. For an endpoint
 * without shards |cb| runs at once, on the caller's thread. Call it from
 * the group's loop thread.
 *
 * Returns how many shards |cb| will run on, UVQ_ERR_INVALID_ARGUMENT, or
 * UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_uv_endpoint_each_shard(uvq_uv_endpoint *uep,
                                          uvq_uv_shard_cb cb, void *arg);

/**
 * uvq_uv_endpoint_conn_count returns the connections |uep| holds: for a
 * group, the sum the shards last published (each after every pass of its
 * loop), readable from any thread; otherwise uvq_endpoint_conn_count.
 */
UVQ_EXTERN size_t uvq_uv_endpoint_conn_count(uvq_uv_endpoint *uep);

/**
 * uvq_uv_endpoint_get_endpoint_stats copies the core counters of |uep|
 * (uvq_endpoint_get_stats) into |st|; for a group, the sum over the shards
 * that have stopped (all of them inside the group's close callback).
 * Returns 0, or UVQ_ERR_INVALID_ARGUMENT.
 */
UVQ_EXTERN int uvq_uv_endpoint_get_endpoint_stats(uvq_uv_endpoint *uep,
                                                  uvq_endpoint_stats *st);

/**
 * uvq_uv_endpoint_get_shard_stats copies the final counters of shard |i|
 * of group |uep| into |st| (datapath) and |est| (core), either may be
 * NULL: each shard's share of the connections, bytes and forwarded
 * packets. Available once the shard has stopped (all of them inside the
 * group's close callback). Returns 0, UVQ_ERR_INVALID_ARGUMENT (not a
 * group, |i| out of range) or UVQ_ERR_INVALID_STATE (still running).
 */
UVQ_EXTERN int uvq_uv_endpoint_get_shard_stats(uvq_uv_endpoint *uep, unsigned i,
                                               uvq_uv_stats *st,
                                               uvq_endpoint_stats *est);

#ifdef __cplusplus
}
#endif

#endif /* UVQUIC_UV_H */
