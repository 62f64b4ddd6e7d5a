/*
 * In-process protocol test harness: a fake clock and an in-memory "wire"
 * joining uvquic endpoints, which can drop, reorder, duplicate, delay and
 * corrupt datagrams (quicly's transmit / exchange-until-idle pattern).
 */
#ifndef UVQ_QTEST_H
#define UVQ_QTEST_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

#define QT_MAX_NODES 8

typedef struct qt_world qt_world;

typedef struct qt_pkt {
  struct qt_pkt *next;
  int dst;       /* node index */
  uvq_path path; /* as the receiver sees it */
  uvq_tstamp deliver_at;
  uint64_t seq;
  size_t len;
  uint8_t data[]; /* |len| bytes */
} qt_pkt;

typedef struct qt_node {
  qt_world *w;
  int idx;
  uvq_endpoint *ep;
  uvq_addr addr;
  int send_blocked; /* the send callback takes nothing while set */
  uint64_t sent;    /* datagrams handed to the wire */
  uint64_t bytes_sent;
  uvq_tstamp link_free; /* rate limiter: when this sender's link is idle */
  void *user_data;      /* qt_add_server's or qt_add_client's */
  uint64_t rand_state;  /* its randomness, when the world seeds it */
} qt_node;

/* Returns nonzero to drop |p|; may edit it. */
typedef int (*qt_filter_fn)(qt_world *w, int from, qt_pkt *p, void *ud);

struct qt_world {
  uvq_tstamp now;
  uint64_t wall; /* seconds */
  qt_node nodes[QT_MAX_NODES];
  int nnodes;
  qt_pkt *queue; /* sorted by deliver_at, then seq */
  uint64_t seq;
  uint64_t rng;

  /* Impairments, in percent (0..100), and one-way delay. */
  double drop_pct, dup_pct, reorder_pct, corrupt_pct;
  uvq_tstamp delay;
  qt_filter_fn filter;
  void *filter_ud;

  uint64_t delivered, dropped, duplicated, reordered, corrupted;
  uvq_tls_ctx *server_tls, *client_tls;

  /* Extra addresses nodes answer on (qt_add_alias). */
  uvq_addr alias[QT_MAX_NODES];
  int alias_node[QT_MAX_NODES];
  int naliases;

  /* Allocator of the endpoints added from now on; NULL = libc. */
  const uvq_mem *mem;

  /* Optional bottleneck, per sending node (so per direction between two
   * nodes): datagrams leave back to back at |rate_bps| bits per second
   * and arrive |delay| after their last bit. 0 = no limit (default).
   * |rate_queue_max| bounds the queueing delay (tail drop, counted in
   * |dropped| and |rate_dropped|); 0 = an unbounded queue. */
  uint64_t rate_bps;
  uvq_tstamp rate_queue_max;
  uint64_t rate_dropped;

  /* The error of the last failed qt_add_server / qt_add_client. */
  int last_add_error;

  /* Nonzero: endpoints added from now on draw their randomness
   * (uvq_endpoint_config.rand) from a generator seeded with the world's
   * seed and their index, so a world replays itself but for the TLS
   * stack's own randomness. 0 (default): GnuTLS's. */
  int seeded_rand;
  uint64_t seed;

  /* uvq_endpoint_flush calls qt_run made (each node's counts one). */
  uint64_t flushes;

  /* The links' MTU (IP bytes): the endpoints' path_mtu callback reports
   * |link_mtu| (0: no callback, as a driver that cannot tell), and the
   * wire drops a datagram whose UDP payload exceeds |path_max_payload|
   * (0: none does), counted in |too_big|: a smaller hop further on. */
  size_t link_mtu;
  size_t path_max_payload;
  uint64_t too_big;
  /* Datagrams whose UDP payload lies in [count_min, count_max] (both 0:
   * none counted), dropped ones included. */
  size_t count_min, count_max;
  uint64_t counted;
  /* The largest UDP payload a node sent (the wire may have dropped it). */
  size_t max_payload_seen;
  /* The largest segment size of a batch of more than one datagram (a GSO
   * message, for the libuv adapter). */
  size_t max_batch_segment;
};

/* Sets up a world with a fixed RNG seed, ALPN "test", an ephemeral server
 * certificate and an insecure client context. */
void qt_world_init(qt_world *w, uint64_t seed);
/* Like qt_world_init, with the ALPN list both TLS contexts offer. */
void qt_world_init_alpn(qt_world *w, uint64_t seed, const char *const *alpn,
                        size_t nalpn);
void qt_world_free(qt_world *w);
uint64_t qt_rand(qt_world *w);

/* qt_hash hashes |len| bytes of |data| to 64 bits (FNV-1a, then mixed):
 * a seed taken from an input. */
uint64_t qt_hash(const uint8_t *data, size_t len);

/* qt_fill_rand fills |dest| with |len| bytes of the splitmix64 stream in
 * *|state| (advancing it): the generator of a seeded world's nodes. */
void qt_fill_rand(uint64_t *state, uint8_t *dest, size_t len);

/* qt_world_reseed seeds what the world draws from now on from |data|: its
 * impairment generator and, for nodes added with seeded_rand, their
 * randomness. A fuzz harness calls it with each input, so that a crash
 * file replays the same draws in a fresh process (the TLS stack's own
 * randomness aside, which GnuTLS lets nobody replace). */
void qt_world_reseed(qt_world *w, const uint8_t *data, size_t len);

/* Adds a server endpoint on 127.0.0.1:4433 + n, or a client on
 * 127.0.0.1:50000 + n. |settings| may be NULL; |user_data| is kept in the
 * node, which on_accept gets as its user_data. Returns the node index. */
int qt_add_server(qt_world *w, const uvq_settings *settings,
                  int (*on_accept)(uvq_endpoint *, uvq_conn *,
                                   const uvq_accept_info *,
                                   const uvq_app_callbacks **, void **, void *),
                  void *user_data);
int qt_add_client(qt_world *w, const uvq_settings *settings, void *user_data);

/* Connects client node |c| to server node |s|. */
int qt_connect(qt_world *w, int c, int s, const uvq_app_callbacks *cb,
               void *user_data, uvq_conn **pconn);

/* Connects client node |c| to server node |s| with |params| (callbacks,
 * user data, token, resumption, early data...): a NULL path becomes the
 * path between the two nodes, a NULL server name "localhost". */
int qt_connect_params(qt_world *w, int c, int s,
                      const uvq_connect_params *params, uvq_conn **pconn);

/* Runs the world until |done(ud)| returns nonzero, nothing is left to do,
 * or the fake clock passes |limit| ns from now. Returns 1 if |done|. */
int qt_run(qt_world *w, int (*done)(void *ud), void *ud, uvq_tstamp limit);

/* Delivers a raw datagram to node |dst| from address |from|. */
void qt_inject(qt_world *w, int dst, const uvq_addr *from, const uint8_t *data,
               size_t len);

/* Makes 127.0.0.1:|port| in |a|. */
void qt_addr_v4(uvq_addr *a, uint16_t port);

/* Makes datagrams sent to |addr| reach node |node| too (a second local
 * address, e.g. to migrate a client to). Returns 0, or -1 if full. */
int qt_add_alias(qt_world *w, int node, const uvq_addr *addr);

/* Deterministic test payloads: byte |off| of the stream named |seed|,
 * a run of them, and the SHA-256 of its first |len| bytes (aborts if
 * GnuTLS cannot hash). Every protocol test checks transfers against these. */
uint8_t qt_pattern_byte(uint32_t seed, uint64_t off);
void qt_pattern_fill(uint32_t seed, uint64_t off, uint8_t *buf, size_t len);
void qt_pattern_sha256(uint32_t seed, uint64_t len, uint8_t out[32]);

/* Sha-256 helper: hex into out[65]. */
void qt_sha256_hex(const uint8_t *digest32, char out[65]);

#endif
