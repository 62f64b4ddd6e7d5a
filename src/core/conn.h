/*
 * One connection (conn.c): an ngtcp2_conn and its GnuTLS session, its
 * state, and the calls the endpoint and the other modules make on it; its
 * write half is conn_io.c.
 */
#ifndef UVQ_CORE_CONN_H
#define UVQ_CORE_CONN_H

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "core/core.h"
#include "core/metrics.h"
#include "core/reset.h"
#include "core/stream.h"
#include "core/ticket_scan.h"

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

/* A queued outgoing DATAGRAM. */
typedef struct uvq_dgram {
  struct uvq_dgram *next;
  uint64_t id;
  size_t len;
  uint8_t data[];
} uvq_dgram;

/* uvq_conn.flags: what happened to a connection and what is due, beside
 * its stage. Test with conn->flags & F, set with |=, clear with &= ~F. */
/* On the endpoint's marked list (uvq_ep_mark). */
#define UVQ_CONN_FLAG_MARKED (1u << 0)
/* Packets were read since the timer was last set (the connection
 * is marked): uvq_ep_refresh_timers sets it before expiries are used. */
#define UVQ_CONN_FLAG_TIMER_STALE (1u << 1)
/* Server: client_dcid is in the endpoint's CID map. */
#define UVQ_CONN_FLAG_CLIENT_DCID_MAPPED (1u << 2)
/* Server: odcid is in the endpoint's CID map. */
#define UVQ_CONN_FLAG_ODCID_MAPPED (1u << 3)
/* One of our ngtcp2 callbacks failed to allocate. */
#define UVQ_CONN_FLAG_NOMEM (1u << 4)
/* Server: the client's address is validated (a token). */
#define UVQ_CONN_FLAG_ADDRESS_VALIDATED (1u << 5)
/* Server: accepted on a Retry token. */
#define UVQ_CONN_FLAG_VIA_RETRY (1u << 6)
/* On_accept ran and accepted. */
#define UVQ_CONN_FLAG_ACCEPTED (1u << 7)
/* On_accept refused. */
#define UVQ_CONN_FLAG_REFUSED (1u << 8)
/* The handshake completed. */
#define UVQ_CONN_FLAG_HANDSHAKE_COMPLETED (1u << 9)
/* Client: HANDSHAKE_DONE arrived. */
#define UVQ_CONN_FLAG_HANDSHAKE_CONFIRMED (1u << 10)
/* Client, after a NAT-rebinding-style uvq_conn_migrate: packets
 * that still arrive on the old local address (rebind_old_local) are read
 * as if on the new one (and answered from it), until one arrives on the
 * new one. */
#define UVQ_CONN_FLAG_REBIND_PENDING (1u << 11)
/* On_established to fire after read. */
#define UVQ_CONN_FLAG_ESTABLISHED_PENDING (1u << 12)
/* On_streams_available to fire after read. */
#define UVQ_CONN_FLAG_STREAMS_AVAILABLE_PENDING (1u << 13)
/* An app callback returned an error. */
#define UVQ_CONN_FLAG_CALLBACK_FAILED (1u << 14)
/* Server: its transport parameters do not fit what
 * ngtcp2_crypto_gnutls encodes them into (cb_recv_tx_key). */
#define UVQ_CONN_FLAG_TP_TOO_LARGE (1u << 15)
/* Counted in stats.handshakes_in_flight. */
#define UVQ_CONN_FLAG_COUNTED_IN_FLIGHT (1u << 16)
/* Server: still counted as a handshake by its source
 * (sources.c). */
#define UVQ_CONN_FLAG_SOURCE_IN_HANDSHAKE (1u << 17)
/* A packet of the datagram being read decrypted. */
#define UVQ_CONN_FLAG_RX_AUTH (1u << 18)
/* A stream write came back short for the connection's send
 * budget (stream.c). */
#define UVQ_CONN_FLAG_BUDGET_WAITERS (1u << 19)
/* On ep->send_waiters, waiting for the endpoint's send budget. */
#define UVQ_CONN_FLAG_EP_SEND_WAITING (1u << 20)
/* On ep->recv_waiters: credit owed for the endpoint's receive
 * budget. */
#define UVQ_CONN_FLAG_EP_RECV_WAITING (1u << 21)
/* Server, established, no bidirectional stream open: on ep's
 * idle list since idle_since, an eviction candidate (budget.c). */
#define UVQ_CONN_FLAG_IN_IDLE (1u << 22)
/* The application asked to close (close_app_error). */
#define UVQ_CONN_FLAG_CLOSE_REQUESTED (1u << 23)
/* The close packet goes to close_to (the path the peer's last
 * datagram came from, for a path we could not validate), not the
 * current one. */
#define UVQ_CONN_FLAG_CLOSE_TO_SET (1u << 24)
/* Closing: send the cached close packet at the next write. */
#define UVQ_CONN_FLAG_CLOSE_RESEND (1u << 25)
/* On_closed due at the next flush. */
#define UVQ_CONN_FLAG_CLOSED_PENDING (1u << 26)
/* On_closed has fired. */
#define UVQ_CONN_FLAG_CLOSED_FIRED (1u << 27)
/* Server: the session resumed (from on_accept on). */
#define UVQ_CONN_FLAG_RESUMED (1u << 28)
/* Client: a NewSessionTicket arrived. */
#define UVQ_CONN_FLAG_TICKET_PENDING (1u << 29)
/* Client: on_early_data_rejected due. */
#define UVQ_CONN_FLAG_EARLY_REJECTED_PENDING (1u << 30)

struct uvq_conn {
  /* Must be first: the GnuTLS session pointer points here. */
  ngtcp2_crypto_conn_ref ref;
  uvq_endpoint *ep;
  ngtcp2_conn *ngconn;
  gnutls_session_t tls;
  const uvq_app_callbacks *cb;
  void *user_data;
  /* A connection's state: its stage and the UVQ_CONN_FLAG_* bits. */
  uvq_stage stage;
  uint32_t flags;
  int is_server;
  uvq_path path;

  /* The peer's bidirectional streams (stream_credit in conn.c): how many
   * it may open in all (MAX_STREAMS), how many it has opened (from the
   * highest stream ID seen), and closed ones not yet given back. */
  uint64_t peer_bidi_max, peer_bidi_opened, peer_bidi_closed;

  /* Endpoint bookkeeping. */
  uvq_conn *prev, *next; /* ep->conns */
  uvq_conn *marked_next; /* ep->marked list */
  size_t heap_idx;       /* index in ep->heap, or SIZE_MAX */
  uvq_tstamp expiry;

  /* Handshake-time CID map entries (server). */
  ngtcp2_cid odcid;       /* client's first DCID (both sides) */
  ngtcp2_cid client_dcid; /* DCID of the Initial we accepted on */
  /* The CID the last get_new_connection_id call mapped: ngtcp2 may fail
   * (NOMEM) after the callback and never record it (1.11:
   * conn_enqueue_new_connection_id allocates the scid after the call), so
   * uvq_conn_del unmaps it itself. */
  ngtcp2_cid last_new_cid;
  /* The version of the client's first Initial (after Version Negotiation,
   * of the new attempt's): what tickets and tokens are bound to. */
  uint32_t first_version;
  /* Client: the version a Version Negotiation packet ngtcp2 passed on
   * leads to (cb_recv_version_negotiation; 0: none in common), acted on
   * when ngtcp2 returns. */
  uint32_t vn_version;
  uvq_addr rebind_old_local; /* UVQ_CONN_FLAG_REBIND_PENDING */
  uvq_source *source;        /* server: its source's entry (sources.c) */
  size_t open_bidi;          /* bidirectional streams open (stream.c) */

  /* Streams. */
  uvq_stream_table streams;
  uvq_stream *ready_head, *ready_tail;
  uvq_stream *writable_pending;
  uvq_stream *stop_pending;
  size_t nblocked; /* streams with data_blocked set */
  /* Bytes all streams hold in their send buffers (every chunk not yet
   * wholly acknowledged: a chunk is memory until its last byte is;
   * stream.c). */
  uint64_t send_buffered;
  size_t budget_scan; /* where the next budget release starts looking */
  /* On ep->send_waiters (UVQ_CONN_FLAG_EP_SEND_WAITING), and the endpoint
   * budget set aside for it when its turn came (in ep->send_reserved until
   * its writers have had it: uvq_conn_write). */
  uvq_conn *send_wait_next;
  uint64_t ep_grant;
  /* Received bytes the application holds (uvq_conn_recv_hold), and the
   * connection credit withheld while its reads pause; a connection with
   * credit owed for the endpoint's budget is on ep->recv_waiters. */
  uint64_t recv_held;
  uint64_t credit_owed;
  uvq_conn *recv_wait_next;
  /* On ep's idle list (UVQ_CONN_FLAG_IN_IDLE), oldest first. */
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
  uint64_t close_app_error;
  uint8_t *close_reason;
  size_t close_reasonlen;
  uint8_t *close_pkt; /* cached CONNECTION_CLOSE for the closing period */
  size_t close_pktlen;
  /* Where it goes: close_to if set (the path the peer's last datagram
   * came from, for a path we could not validate), else the current one. */
  uvq_path close_to;
  uint64_t closing_rx; /* packets received while closing */
  uvq_tstamp close_deadline;
  uvq_close_info ci;
  uint8_t ci_reason[128];

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
  uvq_ticket_scan tickets; /* client: what the tickets allow */

  uvq_conn_metrics metrics; /* counters and bandwidth estimator (metrics.c) */

  /* The peer's stateless-reset tokens this connection registered in
   * ep->reset_tokens, as keyed transforms (reset.c). */
  uint8_t reset_macs[UVQ_CONN_MAX_RESET_TOKENS][UVQ_RESET_MACLEN];
  size_t nreset_macs;
};

/* Sets |flag| of |conn| if |on|, clears it otherwise. */
static inline void uvq_conn_flag_put(uvq_conn *conn, uint32_t flag, int on) {
  if (on) {
    conn->flags |= flag;
  } else {
    conn->flags &= ~flag;
  }
}

/* conn.c */
/* Length of the random first DCID a client sends (and picks again when it
 * starts over after Version Negotiation): RFC 9000 §7.2 wants it
 * unpredictable and at least 8 bytes; 18 leaves room below the 20-byte
 * maximum. */
#define UVQ_CLIENT_FIRST_DCIDLEN 18

/* What a new connection is made of. A server fills odcid (the client's
 * first DCID) and, for an Initial that came with a Retry token,
 * retry_scid; a client fills server_name and tls_opts. */
typedef struct uvq_conn_params {
  int is_server;
  const ngtcp2_cid *dcid; /* the peer's CID: where we send */
  const ngtcp2_cid *scid; /* ours */
  const uvq_path *path;
  uint32_t version;
  const ngtcp2_cid *odcid;      /* server; NULL for a client */
  const ngtcp2_cid *retry_scid; /* server: the Retry's SCID, or NULL */
  /* Server: the token that validated the address; client: a NEW_TOKEN
   * token to send. NULL / 0: none. */
  const uint8_t *token;
  size_t tokenlen;
  const char *server_name; /* client: SNI, or NULL */
  unsigned int tls_opts;   /* client: UVQ_TLS_SESSION_* options */
} uvq_conn_params;

/* Creates a connection from |params| (copied where kept), maps its SCID
 * and links it into |ep|. Returns 0, UVQ_ERR_NOMEM, or the error that
 * stopped ngtcp2, GnuTLS or the hooks. */
int uvq_conn_new(uvq_conn **pconn, uvq_endpoint *ep,
                 const uvq_conn_params *params, uvq_tstamp now);
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
/* Nonzero if |a| and |b| are the same address and port. */
int uvq_addr_eq(const uvq_addr *a, const uvq_addr *b);

/* conn_io.c */
/* Writes what the connection has to send. Returns 0 or UVQ_FLUSH_BLOCKED. */
int uvq_conn_write(uvq_conn *conn, uvq_tstamp now);

#endif
