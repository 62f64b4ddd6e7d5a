/*
 * The endpoint (endpoint.c): its connections, the marked list, the timer
 * heap, the stateless queue, the clock clamp and randomness.
 */
#ifndef UVQ_CORE_ENDPOINT_H
#define UVQ_CORE_ENDPOINT_H

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>

#include "core/cid.h"
#include "core/cid_map.h"
#include "core/core.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "core/sources.h"
#include "core/token.h"

typedef struct uvq_stateless_pkt {
  uvq_path path;
  size_t len;
  uint8_t data[UVQ_MAX_DATAGRAM];
} uvq_stateless_pkt;

struct uvq_endpoint {
  const uvq_mem *mem;
  ngtcp2_mem nmem;
  uvq_endpoint_config cfg;
  uvq_settings settings;
  int is_server;

  uvq_cid_map cids;
  uvq_sources sources; /* server: handshakes and connections per source */
  uvq_cid_gen cidgen;
  struct uvq_lb *quic_lb; /* server with QUIC-LB: cidgen issues its CIDs */
  uvq_token_keys tokens;
  uint8_t static_secret[UVQ_STATIC_SECRETLEN];
  uvq_endpoint_stats stats;

  uvq_conn *conns;
  size_t nconns;
  uvq_conn *marked_head, *marked_tail;

  uvq_conn **heap;
  size_t heaplen, heapcap;

  /* Stateless replies waiting for the next flush: a ring of |stateless_cap|
   * packets, |stateless_len| of them from |stateless_head| on. */
  uvq_stateless_pkt *stateless;
  size_t stateless_head, stateless_len, stateless_cap;

  uint8_t *txbuf;
  size_t txbufcap;
  /* Send buffers: core chunks and h3 provider chunks (pool.c). */
  uvq_pool *pool;
  /* Budgets (budget.c): connections waiting for the endpoint's send
   * budget and with credit owed for its receive budget, and idle
   * connections, oldest first (eviction under memory pressure). The
   * gauges are stats.send_buffered_bytes and stats.recv_held_bytes. */
  uvq_conn *send_waiters, *recv_waiters;
  uvq_conn *idle_head, *idle_tail;
  /* Of the endpoint's send budget, what is set aside for connections
   * whose turn on send_waiters came (the sum of their ep_grant). */
  uint64_t send_reserved;

  uvq_wake_hub *hub;
  /* Raw mode: edits ngtcp2's settings and params of new connections. */
  int (*conn_hook)(struct ngtcp2_settings *settings,
                   struct ngtcp2_transport_params *params, void *user_data);
  void *conn_hook_ud;
  int closing_all;
  int busy; /* inside recv/flush/expiry/wakes: no re-entry (uvq_ep_enter) */
  uvq_tstamp last_now;
  uvq_ep_metrics metrics; /* logging state (metrics.c) */

  /* Server: the ticket key derived from the TLS context's master key and
   * the 0-RTT limits of these settings (uvq_tls_ctx_derive_ticket_key). */
  uint8_t ticket_key[UVQ_TICKET_KEYLEN];
  gnutls_datum_t ticket_key_d;
  /* ... and for connections started in QUIC v2: tickets are per version
   * (RFC 9369 §5), so one issued on a v1 connection does not decrypt on a
   * v2 one and the handshake goes on in full. */
  uint8_t ticket_key_v2[UVQ_TICKET_KEYLEN];
  gnutls_datum_t ticket_key_v2_d;

  /* Stateless resets (reset.c): the peer tokens of our connections, keyed
   * by their HMAC under reset_mac_key (RFC 9000 §10.3.1: compare
   * transformed tokens, leaking nothing about the tokens themselves), and
   * the token bucket that limits the resets we send. */
  uvq_cid_map reset_tokens;
  uint8_t reset_mac_key[32];
  /* Our own CIDs' reset tokens: HMAC-SHA256 keyed once with a key derived
   * from static_secret (uvq_reset_token_of). */
  gnutls_hmac_hd_t reset_token_hmac;
  uint64_t reset_bucket;
  uvq_tstamp reset_refill_at;
};

/* endpoint.c */
/* Marks the endpoint busy for one top-level call; UVQ_ERR_INVALID_STATE if
 * it already is (a call from inside a callback). Clear ep->busy after. */
int uvq_ep_enter(uvq_endpoint *ep);
void uvq_ep_mark(uvq_endpoint *ep, uvq_conn *conn);
void uvq_ep_timer_update(uvq_endpoint *ep, uvq_conn *conn);
/* Sets the timers of the marked connections that read packets since. */
void uvq_ep_refresh_timers(uvq_endpoint *ep);
void uvq_ep_timer_remove(uvq_endpoint *ep, uvq_conn *conn);
void uvq_ep_drop(uvq_endpoint *ep, uvq_drop_reason r);
/* Queues a stateless reply and counts it in |*sent| (a stats field); a
 * full queue drops it instead, counted as stateless_queue_full. */
void uvq_ep_queue_stateless(uvq_endpoint *ep, const uvq_path *path,
                            const uint8_t *data, size_t len, uint64_t *sent);
uint64_t uvq_ep_wall_time(uvq_endpoint *ep);
/* Every |now| an API call takes passes through one of these before it
 * reaches ngtcp2, which asserts that its timestamps never go backwards.
 * uvq_ep_enter_now, for recv / flush / expiry once the endpoint is
 * entered: a time older than the last one seen becomes that one (counted
 * in stats.clock_backwards); otherwise it becomes the last one seen.
 * uvq_ep_now, for calls that may come from inside one of those (connect,
 * migrate, key update from a callback): while the endpoint is busy, the
 * time of the call in progress; otherwise as uvq_ep_enter_now. */
uvq_tstamp uvq_ep_enter_now(uvq_endpoint *ep, uvq_tstamp now);
uvq_tstamp uvq_ep_now(uvq_endpoint *ep, uvq_tstamp now);
/* Sends one batch of equal-size datagrams through the send callback.
 * Returns the datagrams taken (0..count); refused datagrams are dropped,
 * counted and skipped. */
size_t uvq_ep_send(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                   const uint8_t *data, size_t len, size_t seg);
/* uvq_conn_new links a new connection into |ep|'s list, after making room
 * in the timer heap for it with uvq_ep_reserve_conn; uvq_conn_del unlinks
 * it (and takes it off the marked list and the heap). */
int uvq_ep_reserve_conn(uvq_endpoint *ep);
void uvq_ep_conn_link(uvq_endpoint *ep, uvq_conn *conn);
void uvq_ep_conn_unlink(uvq_endpoint *ep, uvq_conn *conn);
/* The session-ticket key for a connection started in |version|. */
const gnutls_datum_t *uvq_ep_ticket_key(uvq_endpoint *ep, uint32_t version);
/* |len| random bytes from the endpoint's source
 * (uvq_endpoint_config.rand, or GnuTLS); |key| nonzero for secret key
 * material. Returns 0 or UVQ_ERR_INTERNAL. */
int uvq_ep_rand(uvq_endpoint *ep, void *dest, size_t len, int key);
/* uvq_ep_rand (not key material) as a plain callback: |ep| as void *,
 * for the token keys' and QUIC-LB's nonce sources. */
int uvq_ep_rand_cb(void *ep, uint8_t *dest, size_t len);
/* The largest UDP payload any connection of |ep| may send: the setting,
 * or in auto (0) UVQ_UDP_PAYLOAD_AUTO_MAX with a path_mtu callback and
 * UVQ_DEFAULT_UDP_PAYLOAD without. */
size_t uvq_ep_max_payload(const uvq_endpoint *ep);
/* The ceiling of path MTU discovery for a connection starting on |path|:
 * uvq_ep_max_payload, lowered to the first link's MTU less the IP and UDP
 * headers when the driver's path_mtu callback knows it (see
 * uvq_settings.max_udp_payload_size). */
size_t uvq_ep_path_payload(uvq_endpoint *ep, const uvq_path *path);
/* A random CID of |len| bytes from uvq_ep_rand; 0 or UVQ_ERR_INTERNAL. */
int uvq_ep_random_cid(uvq_endpoint *ep, ngtcp2_cid *cid, size_t len);
/* uvq_cid_map_init_seeded with a key from uvq_ep_rand. */
int uvq_ep_cid_map_init(uvq_endpoint *ep, uvq_cid_map *map);

#endif
