/*
 * Internal definitions shared by the sans-I/O core: the endpoint, its
 * connections and streams. Nothing here is public API.
 */
#ifndef UVQ_CORE_CORE_H
#define UVQ_CORE_CORE_H

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/cid.h"
#include "core/cid_map.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "core/ticket_scan.h"
#include "core/token.h"
#include "uvquic/uvquic.h"

/* Largest datagram we ever build or keep (max_udp_payload_size bound). */
#define UVQ_MAX_DATAGRAM 1500
/* Smallest datagram that may carry a client Initial (RFC 9000 §14.1). */
#define UVQ_MIN_INITIAL_DATAGRAM 1200
/* active_connection_id_limit we advertise (a 0-RTT limit: endpoint.c
 * hashes it into the ticket key). */
#define UVQ_ACTIVE_CID_LIMIT 8
/* Stateless-reset tokens of the peer's CIDs a connection keeps registered
 * in the endpoint's token table (the CIDs in use: current and bound). */
#define UVQ_CONN_MAX_RESET_TOKENS 8
/* Length of a token's keyed transform in the table (reset.c). */
#define UVQ_RESET_MACLEN 16

typedef struct uvq_stream uvq_stream;

/* sources.c: per-source admission (server). */
typedef struct uvq_source uvq_source;
typedef struct uvq_sources {
  uvq_source **buckets;
  size_t nbuckets, count;
  uint64_t k0, k1;
  const uvq_mem *mem;
} uvq_sources;

/* A batch of datagrams ngtcp2 wrote that the driver did not take yet:
 * equal-size datagrams (the last may be shorter) for one path and ECN
 * mark; |off| bytes of it already left. */
typedef struct uvq_pending {
  struct uvq_pending *next;
  uvq_path path;
  uint8_t ecn;
  size_t len, off, seg;
  uint8_t data[];
} uvq_pending;

/* A chunk of stream send data, owned by the stream until acknowledged.
 * Every chunk is a buffer of the endpoint's pool (class |cls|), given back
 * when freed. A copied chunk holds its bytes in |data| (base == data, cap
 * the room its class leaves); a reference chunk (uvq_stream_write_ref)
 * points at the caller's memory, has cap == len (nothing is appended to
 * it) and calls free_cb once, when freed. */
typedef struct uvq_chunk {
  struct uvq_chunk *next;
  const uint8_t *base;
  size_t len;
  size_t cap;
  void (*free_cb)(void *ptr, void *ud); /* reference chunks only */
  void *free_ud;
  int cls;
  uint8_t data[];
} uvq_chunk;

struct uvq_stream {
  int64_t id;
  void *user_data;
  uvq_conn *conn;

  /* Send buffer: chunks from the first unacknowledged byte on. */
  uvq_chunk *head, *tail;
  uint64_t head_offset;       /* stream offset of head->data[0] */
  uint64_t acked;             /* every byte below is acknowledged */
  uint64_t sent;              /* every byte below was handed to ngtcp2 */
  uint64_t written;           /* bytes the application wrote */
  uvq_chunk *send_chunk;      /* chunk holding offset |sent| (NULL: none) */
  uint64_t send_chunk_offset; /* stream offset of send_chunk->data[0] */

  unsigned fin_requested : 1; /* app asked for FIN after |written| */
  unsigned fin_sent : 1;
  unsigned shut_wr : 1;       /* reset by us, or peer sent STOP_SENDING */
  unsigned stop_reading : 1;  /* we sent STOP_SENDING: discard input */
  unsigned want_writable : 1; /* a short write happened */
  unsigned in_ready : 1;      /* on conn->ready list */
  unsigned data_blocked : 1;  /* flow control blocked in ngtcp2 */
  unsigned writable_pending : 1;
  unsigned stop_pending : 1; /* peer STOP_SENDING to report */
  unsigned early : 1;        /* some data arrived in 0-RTT packets */
  unsigned fin_alone : 1;    /* our FIN went in a STREAM frame with no data */
  unsigned fin_acked : 1;    /* the peer acknowledged a frame with our FIN */

  uvq_stream *ready_prev, *ready_next;
  uvq_stream *pending_next; /* conn->writable_pending list */
  uvq_stream *stop_next;    /* conn->stop_pending list */
  uint64_t loss_seen; /* ngtcp2's loss count at the last ack (metrics.c) */
  /* Stream credit withheld while the connection's reads pause (budget.c). */
  uint64_t credit_owed;
};

/* A queued outgoing DATAGRAM. */
typedef struct uvq_dgram {
  struct uvq_dgram *next;
  uint64_t id;
  size_t len;
  uint8_t data[];
} uvq_dgram;

/* Stream table: open addressing by stream id. */
typedef struct uvq_stream_table {
  uvq_stream **slots;
  size_t cap; /* power of two, or 0 */
  size_t len;
} uvq_stream_table;

/* Wake hub: shared by the endpoint and every waker; outlives both. */
typedef struct uvq_wake_hub {
  pthread_mutex_t lock;
  atomic_size_t refcnt;
  uvq_endpoint *ep; /* NULL once the endpoint is gone */
  uvq_waker *queue; /* woken wakers, each holding a reference */
  const uvq_mem *mem;
} uvq_wake_hub;

struct uvq_waker {
  atomic_size_t refcnt;
  uvq_wake_hub *hub;
  uvq_conn *conn; /* guarded by hub->lock; NULL after the conn is gone */
  int queued;     /* guarded by hub->lock */
  uvq_waker *next;
};

struct uvq_conn {
  /* Must be first: the GnuTLS session pointer points here. */
  ngtcp2_crypto_conn_ref ref;
  uvq_endpoint *ep;
  ngtcp2_conn *q;
  gnutls_session_t tls;
  const uvq_app_callbacks *cb;
  void *user_data;
  uvq_stage stage;
  int is_server;
  uvq_path path;

  /* Endpoint bookkeeping. */
  uvq_conn *prev, *next; /* ep->conns */
  uvq_conn *dirty_next;  /* ep->dirty list */
  int dirty;
  size_t heap_idx; /* index in ep->heap, or SIZE_MAX */
  /* Packets were read since the timer was last set (the connection is
   * marked): uvq_ep_refresh_timers sets it before expiries are used. */
  int timer_stale;
  uvq_tstamp expiry;

  /* Handshake-time CID map entries (server). */
  ngtcp2_cid odcid;       /* client's first DCID (both sides) */
  ngtcp2_cid client_dcid; /* DCID of the Initial we accepted on */
  int client_dcid_mapped;
  int odcid_mapped;
  /* The CID the last get_new_connection_id call mapped: ngtcp2 may fail
   * (NOMEM) after the callback and never record it (1.11:
   * conn_enqueue_new_connection_id allocates the scid after the call), so
   * uvq_conn_del unmaps it itself. */
  ngtcp2_cid last_new_cid;
  int nomem; /* one of our ngtcp2 callbacks failed to allocate */
  int address_validated;
  int via_retry; /* server: accepted on a Retry token */
  /* The version of the client's first Initial (after Version Negotiation,
   * of the new attempt's): what tickets and tokens are bound to. */
  uint32_t first_version;
  /* Client: the version a Version Negotiation packet ngtcp2 passed on
   * leads to (cb_recv_version_negotiation; 0: none in common), acted on
   * when ngtcp2 returns. */
  uint32_t vn_version;
  int accepted; /* on_accept ran and accepted */
  int refused;  /* on_accept refused */
  int handshake_completed;
  int handshake_confirmed; /* client: HANDSHAKE_DONE arrived */
  /* Client, after a NAT-rebinding-style uvq_conn_migrate: packets that
   * still arrive on the old local address are read as if on the new one
   * (and answered from it), until one arrives on the new one. */
  int rebind_pending;
  uvq_addr rebind_old_local;
  int established_pending; /* on_established to fire after read */
  int streams_available_pending;
  int callback_failed; /* an app callback returned an error */
  /* Server: its transport parameters do not fit what ngtcp2_crypto_gnutls
   * encodes them into (cb_recv_tx_key). */
  int tp_too_large;
  int counted_in_flight; /* counted in stats.handshakes_in_flight */
  /* Server: its source's entry (sources.c), and whether it still counts
   * there as a handshake. */
  uvq_source *source;
  int source_in_handshake;
  size_t open_bidi; /* bidirectional streams open (stream.c) */
  int rx_auth;      /* a packet of the datagram being read decrypted */

  /* Streams. */
  uvq_stream_table streams;
  uvq_stream *ready_head, *ready_tail;
  uvq_stream *writable_pending;
  uvq_stream *stop_pending;
  size_t nblocked; /* streams with data_blocked set */
  /* Bytes all streams hold in their send buffers (every chunk not yet
   * wholly acknowledged: a chunk is memory until its last byte is), and
   * whether a write came back short for the send budget (stream.c). */
  uint64_t send_buffered;
  int budget_waiters;
  size_t budget_scan; /* where the next budget release starts looking */
  /* Waiting for the endpoint's send budget (ep->send_waiters list), and
   * the endpoint budget set aside for it when its turn came (in
   * ep->send_reserved until its writers have had it: uvq_conn_write). */
  int ep_send_waiting;
  uvq_conn *send_wait_next;
  uint64_t ep_grant;
  /* Received bytes the application holds (uvq_conn_recv_hold), and the
   * connection credit withheld while its reads pause; a connection with
   * credit owed for the endpoint's budget is on ep->recv_waiters. */
  uint64_t recv_held;
  uint64_t credit_owed;
  int ep_recv_waiting;
  uvq_conn *recv_wait_next;
  /* Server, established, no bidirectional stream open: on ep's idle list
   * (oldest first) since |idle_since|, an eviction candidate. */
  int in_idle;
  uvq_conn *idle_prev, *idle_next;
  uvq_tstamp idle_since;
  uvq_tstamp app_deadline; /* uvq_conn_set_app_timer */

  /* Outgoing DATAGRAMs. */
  uvq_dgram *dgram_head, *dgram_tail;
  size_t dgram_count;
  uint64_t dgram_next_id;

  /* Datagrams written but not yet taken by the send callback, oldest
   * batch first (conn_io.c). */
  uvq_pending *pending_head, *pending_tail;

  /* Closing. */
  int close_requested;
  uint64_t close_app_error;
  uint8_t *close_reason;
  size_t close_reasonlen;
  uint8_t *close_pkt; /* cached CONNECTION_CLOSE for the closing period */
  size_t close_pktlen;
  /* Where it goes: close_to if set (the path the peer's last datagram
   * came from, for a path we could not validate), else the current one. */
  int close_to_set;
  uvq_path close_to;
  int close_resend;
  uint64_t closing_rx; /* packets received while closing */
  uvq_tstamp close_deadline;
  uvq_close_info ci;
  uint8_t ci_reason[128];
  int closed_pending; /* on_closed due at the next flush */
  int closed_fired;

  char sni[256];
  uvq_waker *waker;

  /* Liveness (liveness.c): the path watchdog and the stall timeout. */
  struct {
    uvq_tstamp last_rx;    /* the last datagram from the peer */
    uvq_addr good_remote;  /* the peer's address we last know works */
    int have_good;         /* good_remote is set */
    uvq_tstamp path_due;   /* path watchdog deadline; MAX = disarmed */
    int path_stalled;      /* past it: closing with the next datagram */
    uvq_tstamp drop_due;   /* then, without one, ended silently */
    int busy;              /* a bidi stream is open: stream_keep_alive on */
    uvq_tstamp busy_since; /* when the first of them opened */
  } live;

  /* Resumption and 0-RTT (RFC 9001 §4.6). */
  uvq_early_data early_data;
  int resumed;                /* server: from on_accept on */
  int ticket_pending;         /* client: a NewSessionTicket arrived */
  uvq_ticket_scan tickets;    /* client: what the tickets allow */
  int early_rejected_pending; /* client: on_early_data_rejected due */

  uvq_conn_metrics m; /* counters and bandwidth estimator (metrics.c) */

  /* The peer's stateless-reset tokens this connection registered in
   * ep->reset_tokens, as keyed transforms (reset.c). */
  uint8_t reset_macs[UVQ_CONN_MAX_RESET_TOKENS][UVQ_RESET_MACLEN];
  size_t nreset_macs;
};

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
  uvq_conn *dirty_head, *dirty_tail;

  uvq_conn **heap;
  size_t heaplen, heapcap;

  uvq_stateless_pkt *sq; /* ring of stateless replies */
  size_t sq_head, sq_len, sq_cap;

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
  /* Client TLS session options (UVQ_TLS_SESSION_*) of the connection
   * uvq_endpoint_connect is creating; 0 otherwise. */
  unsigned int connect_tls_opts;
  uvq_ep_metrics m; /* logging state (metrics.c) */

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
void uvq_ep_conn_link(uvq_endpoint *ep, uvq_conn *conn);

/* router.c */
typedef struct uvq_pkt_view {
  int is_long;
  uint32_t version;
  /* Long packet type, in v1's numbering whatever the version (RFC 9369
   * §3.2 renumbers them): 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry. */
  uint8_t long_type;
  const uint8_t *dcid;
  size_t dcidlen;
  const uint8_t *scid;
  size_t scidlen;
} uvq_pkt_view;

/* Whether |version| is in |st|->quic_versions. */
int uvq_version_ok(const uvq_settings *st, uint32_t version);

/* uvq_pkt_parse reads the routing fields of the first packet in |data|.
 * Returns 0, or a uvq_drop_reason + 1 saying why it cannot be routed. */
int uvq_pkt_parse(uvq_pkt_view *v, const uint8_t *data, size_t len,
                  size_t short_dcidlen);
void uvq_router_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                     const uint8_t *data, size_t len, uvq_tstamp now);

/* reset.c */
int uvq_reset_init(uvq_endpoint *ep);
void uvq_reset_free(uvq_endpoint *ep);
/* Registers / forgets the peer's reset token |token| for |conn|. Adding
 * fails only for lack of memory or room, which costs recognising a reset
 * on that CID, nothing else. */
int uvq_reset_token_add(uvq_conn *conn, const uint8_t *token);
void uvq_reset_token_remove(uvq_conn *conn, const uint8_t *token);
/* Forgets every token of |conn| (it is going away). */
void uvq_reset_conn_forget(uvq_conn *conn);
/* The connection whose peer token ends the datagram, or NULL. */
uvq_conn *uvq_reset_match(uvq_endpoint *ep, const uint8_t *data, size_t len);
/* Server: answers a short-header packet of |len| bytes for unknown DCID
 * |v->dcid| with a stateless reset, if RFC 9000 §10.3 and the rate limit
 * allow. */
void uvq_reset_send(uvq_endpoint *ep, const uvq_path *path,
                    const uvq_pkt_view *v, size_t len, uvq_tstamp now);

/* acceptor.c */
void uvq_acceptor_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                       const uvq_pkt_view *v, const uint8_t *data, size_t len,
                       uvq_tstamp now);
void uvq_acceptor_send_version_negotiation(uvq_endpoint *ep,
                                           const uvq_path *path,
                                           const uvq_pkt_view *v);

/* conn.c */
int uvq_conn_new(uvq_conn **pconn, uvq_endpoint *ep, int is_server,
                 const ngtcp2_cid *dcid, const ngtcp2_cid *scid,
                 const uvq_path *path, uint32_t version,
                 const ngtcp2_cid *odcid, const ngtcp2_cid *retry_scid,
                 const uint8_t *token, size_t tokenlen, const char *server_name,
                 uvq_tstamp now);
void uvq_conn_del(uvq_conn *conn);
void uvq_conn_recv(uvq_conn *conn, const uvq_path *path, uint8_t ecn,
                   const uint8_t *data, size_t len, uvq_tstamp now);
void uvq_conn_handle_expiry(uvq_conn *conn, uvq_tstamp now);
uvq_tstamp uvq_conn_expiry(uvq_conn *conn);
void uvq_conn_to_ngtcp2_path(ngtcp2_path *np, const uvq_path *p);
/* Whether |p| holds the addresses of |np|. */
int uvq_path_eq_ngtcp2(const uvq_path *p, const ngtcp2_path *np);
/* Copies |np| into |p|; UVQ_ERR_INVALID_ARGUMENT if an address is too long
 * (|p| untouched). */
int uvq_path_from_ngtcp2(uvq_path *p, const ngtcp2_path *np);
void uvq_conn_unmap_handshake_cids(uvq_conn *conn);
void uvq_conn_run_deferred(uvq_conn *conn);
/* Copies ngtcp2's current path (it follows migrations) into conn->path. */
void uvq_conn_sync_path(uvq_conn *conn);
/* The session-ticket key for a connection started in |version|. */
const gnutls_datum_t *uvq_ep_ticket_key(uvq_endpoint *ep, uint32_t version);

/* resume.c */
/* Client: builds the resumption blob (TLS session data and the server's
 * 0-RTT transport parameters) into *pblob, freed with uvq_free. */
int uvq_resume_encode(uvq_conn *conn, uint8_t **pblob, size_t *plen);
/* Client, before the handshake starts: resumes from |blob|, and with
 * |early_data|, if the blob's ticket grants early data, prepares 0-RTT
 * (conn->early_data becomes UVQ_EARLY_DATA_ATTEMPTED). Returns 0 or
 * UVQ_ERR_INVALID_ARGUMENT. */
int uvq_resume_apply(uvq_conn *conn, const uint8_t *blob, size_t len,
                     int early_data);
/* The QUIC version the connection that produced |blob| started in, or 0
 * if |blob| does not parse that far. */
uint32_t uvq_resume_version(const uint8_t *blob, size_t len);
/* Nonzero if |blob| parses far enough to say that its ticket grants early
 * data, and it does: the client's TLS session must offer early data only
 * then (it is created before uvq_resume_apply). */
int uvq_resume_grants_early_data(const uint8_t *blob, size_t len);

/* sources.c: uvq_sources_init keys the table's hash with |key| (secret,
 * random); uvq_sources_admit says whether |remote|'s source may start
 * another handshake (0, or UVQ_ERR_CONNECTION_LIMIT, counted by reason);
 * uvq_sources_add counts a new server connection under its source;
 * handshake_done and remove uncount it (idempotent). */
void uvq_sources_init(uvq_sources *t, const uvq_mem *mem,
                      const uint64_t key[2]);
void uvq_sources_free(uvq_sources *t);
int uvq_sources_admit(uvq_endpoint *ep, const uvq_addr *remote);
int uvq_sources_add(uvq_endpoint *ep, uvq_conn *conn);
void uvq_sources_handshake_done(uvq_conn *conn);
void uvq_sources_remove(uvq_conn *conn);

/* endpoint.c: |len| random bytes from the endpoint's source
 * (uvq_endpoint_config.rand, or GnuTLS); |key| nonzero for secret key
 * material. Returns 0 or UVQ_ERR_INTERNAL. */
int uvq_ep_rand(uvq_endpoint *ep, void *dest, size_t len, int key);
/* A random CID of |len| bytes from uvq_ep_rand; 0 or UVQ_ERR_INTERNAL. */
int uvq_ep_random_cid(uvq_endpoint *ep, ngtcp2_cid *cid, size_t len);
/* uvq_cid_map_init_seeded with a key from uvq_ep_rand. */
int uvq_ep_cid_map_init(uvq_endpoint *ep, uvq_cid_map *map);

/* settings.c: copies the application's |src| into |dst| by its version:
 * a version-1 struct (an older header) gives its fields and defaults for
 * the ones added since. Returns 0 or UVQ_ERR_INVALID_ARGUMENT (a version
 * this library does not know). */
int uvq_settings_copy(uvq_settings *dst, const uvq_settings *src);
/* Nonzero if |cb| is a table of a version this library reads. */
int uvq_app_callbacks_ok(const uvq_app_callbacks *cb);

/* budget.c: the credit for |n| bytes |conn| delivered on |stream_id|
 * (|s| may be NULL), returned now or owed while its reads pause; the idle
 * list kept up to date (after open_bidi, stage or close_requested change);
 * admission under memory pressure (0: admit, having closed the
 * longest-idle connection if pressed; UVQ_ERR_CONNECTION_LIMIT: refuse,
 * counted); and a connection leaving its lists and its receive hold
 * (uvq_conn_del, after its streams are freed: uvq_stream_table_free takes
 * its send buffers off the endpoint's total). */
void uvq_budget_recv_credit(uvq_conn *conn, uvq_stream *s, int64_t stream_id,
                            size_t n);
void uvq_budget_idle_update(uvq_conn *conn);
int uvq_budget_admit(uvq_endpoint *ep, uvq_tstamp now);
/* Nonzero under memory pressure: an endpoint budget at 90 % or more. */
int uvq_budget_pressed(const uvq_endpoint *ep);
void uvq_budget_conn_gone(uvq_conn *conn);

/* conn.c: nonzero if |a| and |b| are the same address and port. */
int uvq_addr_eq(const uvq_addr *a, const uvq_addr *b);

/* liveness.c: after each datagram read (|path| it came on), at each
 * write pass, the earliest deadline it adds to the connection's expiry,
 * what is due at |now|, and ngtcp2's path-validation result. */
void uvq_live_init(uvq_conn *conn, uvq_tstamp now);
void uvq_live_on_recv(uvq_conn *conn, const uvq_path *path, uvq_tstamp now);
void uvq_live_on_write(uvq_conn *conn, uvq_tstamp now);
uvq_tstamp uvq_live_deadline(const uvq_conn *conn);
void uvq_live_expiry(uvq_conn *conn, uvq_tstamp now);
void uvq_live_path_validated(uvq_conn *conn, const uvq_addr *remote);

/* stage.c */
/* Ends the connection because of ngtcp2 error |liberr| (local). */
void uvq_stage_fail(uvq_conn *conn, int liberr, uvq_tstamp now);
/* Starts a local close with the connection's requested app error. */
void uvq_stage_close_app(uvq_conn *conn, uvq_tstamp now);
/* The peer closed (ngtcp2 returned DRAINING). */
void uvq_stage_drain(uvq_conn *conn, uvq_tstamp now);
/* Ends the connection at once, without a closing period. */
void uvq_stage_finish(uvq_conn *conn, int error, uvq_close_origin origin);
void uvq_stage_closing_recv(uvq_conn *conn);
/* Closes with transport error |code| (CONNECTION_CLOSE written now) and
 * reports |error| in on_closed; |reason| may be NULL. */
void uvq_stage_close_transport(uvq_conn *conn, int error, uint64_t code,
                               const char *reason, uvq_tstamp now);

/* conn_io.c */
/* Writes what the connection has to send. Returns 0 or UVQ_FLUSH_BLOCKED. */
int uvq_conn_write(uvq_conn *conn, uvq_tstamp now);

/* stream.c */
int uvq_stream_table_init(uvq_stream_table *t);
void uvq_stream_table_free(uvq_conn *conn);
uvq_stream *uvq_stream_find(uvq_conn *conn, int64_t id);
int uvq_stream_create(uvq_conn *conn, int64_t id, void *user_data,
                      uvq_stream **pstrm);
void uvq_stream_destroy(uvq_conn *conn, uvq_stream *s);
void uvq_stream_ready(uvq_conn *conn, uvq_stream *s);
void uvq_stream_unready(uvq_conn *conn, uvq_stream *s);
/* Fills |iov| with unsent data of |s| from offset s->sent, up to the chunk
 * that reaches |maxbytes| (what one packet can carry); *ptotal gets the
 * bytes offered (less than what is unsent when |iovcnt| or |maxbytes| ends
 * the walk). */
size_t uvq_stream_unsent_iov(uvq_stream *s, ngtcp2_vec *iov, size_t iovcnt,
                             size_t maxbytes, uint64_t *ptotal);
/* ngtcp2 took |n| bytes (and FIN if |flags| has it and nothing is left). */
void uvq_stream_consumed(uvq_conn *conn, uvq_stream *s, size_t n,
                         uint32_t flags);
void uvq_stream_ack(uvq_conn *conn, uvq_stream *s, uint64_t offset,
                    uint64_t len);
size_t uvq_stream_buffered(const uvq_stream *s);
/* The peer raised |s|'s flow-control credit: a writer waiting for room
 * hears of it. */
void uvq_stream_credit(uvq_conn *conn, uvq_stream *s);
/* |conn|'s writers have had the endpoint budget set aside for them: what
 * they left goes back to the endpoint (and to the next waiters). */
void uvq_stream_grant_end(uvq_conn *conn);

/* waker.c */
int uvq_wake_hub_new(uvq_wake_hub **phub, uvq_endpoint *ep, const uvq_mem *mem);
void uvq_wake_hub_detach(uvq_wake_hub *hub);
void uvq_waker_detach_conn(uvq_conn *conn);

#endif
