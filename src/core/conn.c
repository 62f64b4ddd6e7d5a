/*
 * A connection: an ngtcp2_conn and its GnuTLS session, the ngtcp2
 * callbacks that feed the application, and the receive and timer paths.
 * Writing lives in conn_io.c, stage changes in stage.c, streams in stream.c.
 */
#include <gnutls/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/budget.h"
#include "core/cid.h"
#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/liveness.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/reset.h"
#include "core/resume.h"
#include "core/settings.h"
#include "core/sources.h"
#include "core/stage.h"
#include "core/stream.h"
#include "core/ticket_scan.h"
#include "core/tls.h"
#include "core/token.h"
#include "core/waker.h"

static uvq_conn *conn_of(void *user_data) { return (uvq_conn *)user_data; }

void uvq_conn_to_ngtcp2_path(ngtcp2_path *np, const uvq_path *p) {
  np->local.addr = (ngtcp2_sockaddr *)(uintptr_t)&p->local.ss;
  np->local.addrlen = p->local.len;
  np->remote.addr = (ngtcp2_sockaddr *)(uintptr_t)&p->remote.ss;
  np->remote.addrlen = p->remote.len;
  np->user_data = NULL;
}

int uvq_path_eq_ngtcp2(const uvq_path *p, const ngtcp2_path *np) {
  return (socklen_t)np->remote.addrlen == p->remote.len &&
         (socklen_t)np->local.addrlen == p->local.len &&
         memcmp(np->remote.addr, &p->remote.ss, np->remote.addrlen) == 0 &&
         memcmp(np->local.addr, &p->local.ss, np->local.addrlen) == 0;
}

int uvq_path_from_ngtcp2(uvq_path *p, const ngtcp2_path *np) {
  if (np->local.addrlen > sizeof(p->local.ss) ||
      np->remote.addrlen > sizeof(p->remote.ss)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  memset(p, 0, sizeof(*p));
  memcpy(&p->local.ss, np->local.addr, np->local.addrlen);
  p->local.len = (socklen_t)np->local.addrlen;
  memcpy(&p->remote.ss, np->remote.addr, np->remote.addrlen);
  p->remote.len = (socklen_t)np->remote.addrlen;
  return 0;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  return ((uvq_conn *)ref)->ngconn;
}

/* ---- ngtcp2 callbacks -------------------------------------------------- */

/* ngtcp2's randomness (PATH_CHALLENGE data, ...): the endpoint's, whose
 * address conn_start puts in the rand context. */
static void cb_rand(uint8_t *dest, size_t destlen,
                    const ngtcp2_rand_ctx *rand_ctx) {
  (void)uvq_ep_rand(rand_ctx->native_handle, dest, destlen, 0);
}

static int cb_get_new_connection_id(ngtcp2_conn *q, ngtcp2_cid *cid,
                                    uint8_t *token, size_t cidlen,
                                    void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_endpoint *ep = conn->ep;
  int rv = UVQ_ERR_CID_IN_USE;

  (void)q;
  (void)cidlen; /* ngtcp2 asks for the length we gave it: cidgen's. */
  /* A random collision is astronomically unlikely but cheap to retry. */
  for (int i = 0; i < 4 && rv == UVQ_ERR_CID_IN_USE; i++) {
    if (uvq_cid_gen_generate(&ep->cidgen, cid) != 0) {
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    rv = uvq_cid_map_insert_cid(&ep->cids, cid, conn);
  }
  if (rv != 0) {
    uvq_conn_flag_put(conn, UVQ_CONN_FLAG_NOMEM, rv == UVQ_ERR_NOMEM);
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  conn->last_new_cid = *cid;
  if (uvq_reset_token_of(ep, cid, token) != 0) {
    uvq_cid_map_erase_cid(&ep->cids, cid);
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int cb_remove_connection_id(ngtcp2_conn *q, const ngtcp2_cid *cid,
                                   void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  if (uvq_cid_map_erase_cid(&conn->ep->cids, cid) != conn) {
    /* The map disagrees with ngtcp2 about who owns this CID: a bug. */
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

/* Server: the first key installed after the ClientHello is processed is
 * where on_accept runs — ALPN and SNI are known, no stream data delivered. */
static int run_on_accept(uvq_conn *conn) {
  uvq_endpoint *ep = conn->ep;
  uvq_accept_info info;
  const uvq_app_callbacks *cb = NULL;
  void *ud = NULL;
  int rv;

  if ((conn->flags & UVQ_CONN_FLAG_ACCEPTED) ||
      (conn->flags & UVQ_CONN_FLAG_REFUSED) || !conn->is_server) {
    return 0;
  }
  memset(&info, 0, sizeof(info));
  if (uvq_tls_session_get_alpn(conn->tls, &info.alpn, &info.alpnlen) != 0) {
    info.alpn = NULL;
    info.alpnlen = 0;
  }
  if (uvq_tls_session_get_sni(conn->tls, conn->sni, sizeof(conn->sni)) == 0) {
    info.server_name = conn->sni;
  }
  /* Negotiated by now: the client's transport parameters came with the
   * ClientHello. */
  info.version = ngtcp2_conn_get_negotiated_version(conn->ngconn);
  info.path = &conn->path;
  info.address_validated =
      ((conn->flags & UVQ_CONN_FLAG_ADDRESS_VALIDATED) != 0);
  /* The ClientHello is processed: whether its PSK and its early data were
   * accepted is settled (the anti-replay check included). */
  uvq_conn_flag_put(conn, UVQ_CONN_FLAG_RESUMED,
                    gnutls_session_is_resumed(conn->tls) != 0);
  if (gnutls_session_get_flags(conn->tls) & GNUTLS_SFLAGS_EARLY_DATA) {
    conn->early_data = UVQ_EARLY_DATA_ACCEPTED;
  }
  info.resumed = ((conn->flags & UVQ_CONN_FLAG_RESUMED) != 0);
  info.early_data = conn->early_data == UVQ_EARLY_DATA_ACCEPTED;
  rv = ep->cfg.on_accept(ep, conn, &info, &cb, &ud, ep->cfg.user_data);
  if (rv != 0 || !uvq_app_callbacks_ok(cb)) {
    conn->flags |= UVQ_CONN_FLAG_REFUSED;
    ep->stats.initials_refused++;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  conn->cb = cb;
  conn->user_data = ud;
  conn->flags |= UVQ_CONN_FLAG_ACCEPTED;
  uvq_metrics_conn_accepted(conn, &info);
  return 0;
}

static int cb_recv_rx_key(ngtcp2_conn *q, ngtcp2_encryption_level level,
                          void *user_data) {
  (void)q;
  (void)level;
  return run_on_accept(conn_of(user_data));
}

/* ngtcp2_crypto_gnutls 1.11 encodes a server's transport parameters into
 * a 256-byte buffer twice: in tp_send_func for EncryptedExtensions, and in
 * ngtcp2_crypto_derive_and_install_tx_key right after it installed the
 * Handshake tx key. If the second encoding fails, that function frees the
 * AEAD and header-protection contexts ngtcp2 now holds (fixed upstream in
 * 1.18, "Fix potential double free"): the CONNECTION_CLOSE we then write
 * at the Handshake level, and ngtcp2_conn_del, use freed GnuTLS handles.
 * This callback runs between the install and that encoding, with the very
 * parameters it will encode; failing here makes ngtcp2 take the key back
 * before the contexts are freed, and the connection closes in Initial. */
#define SERVER_TP_MAXLEN 256

static int cb_recv_tx_key(ngtcp2_conn *q, ngtcp2_encryption_level level,
                          void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  uint8_t buf[SERVER_TP_MAXLEN];

  if (conn->is_server && level == NGTCP2_ENCRYPTION_LEVEL_HANDSHAKE &&
      ngtcp2_conn_encode_local_transport_params(q, buf, sizeof(buf)) < 0) {
    conn->flags |= UVQ_CONN_FLAG_TP_TOO_LARGE;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return run_on_accept(conn);
}

/* Client, at handshake completion: GnuTLS knows whether the server took
 * our 0-RTT. If not, ngtcp2 must be told with
 * ngtcp2_conn_tls_early_data_rejected (1.11's ngtcp2_crypto_gnutls, unlike
 * its BoringSSL and picotls helpers, never calls it): it forgets the
 * streams opened early, so ours go too, and the application hears of it
 * before on_established. */
static void drop_early_streams(uvq_conn *conn);

static int settle_early_data(uvq_conn *conn) {

  if (gnutls_session_get_flags(conn->tls) & GNUTLS_SFLAGS_EARLY_DATA) {
    conn->early_data = UVQ_EARLY_DATA_ACCEPTED;
    return 0;
  }
  if (ngtcp2_conn_tls_early_data_rejected(conn->ngconn) != 0) {
    return -1;
  }
  drop_early_streams(conn);
  return 0;
}

static int cb_handshake_completed(ngtcp2_conn *q, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  const uint8_t *alpn;
  size_t alpnlen;

  if (!conn->is_server &&
      uvq_tls_session_get_alpn(conn->tls, &alpn, &alpnlen) != 0) {
    /* GnuTLS 3.7 clients complete without ALPN if the server picked none;
     * RFC 9001 §8.1 requires no_application_protocol (120). */
    ngtcp2_conn_set_tls_alert(q, 120);
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  conn->flags |= UVQ_CONN_FLAG_HANDSHAKE_COMPLETED;
  conn->stage = UVQ_STAGE_RUNNING;
  uvq_budget_idle_update(conn);
  if (!conn->is_server && conn->early_data == UVQ_EARLY_DATA_ATTEMPTED &&
      settle_early_data(conn) != 0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  if (conn->is_server && conn->ep->settings.send_new_token) {
    /* RFC 9000 §8.1.3: a token for the client's next connection, bound to
     * its IP address. Failing to send one only costs the client a Retry. */
    uint8_t token[UVQ_TOKEN_MAXLEN];
    ssize_t n = uvq_token_seal_new(
        &conn->ep->tokens, token, sizeof(token), conn->first_version,
        (const struct sockaddr *)&conn->path.remote.ss, conn->path.remote.len,
        uvq_ep_wall_time(conn->ep));
    if (n > 0 && ngtcp2_conn_submit_new_token(q, token, (size_t)n) == 0) {
      conn->ep->stats.new_tokens_sent++;
    }
  }
  /* A server keeps the client's Initial DCIDs mapped until the connection
   * ends: a late or duplicated copy of the client's first Initial then
   * reaches this connection (whose Initial keys are gone, so ngtcp2 drops
   * it) instead of creating a second, ghost connection in the acceptor. */
  conn->flags |= UVQ_CONN_FLAG_ESTABLISHED_PENDING;
  if (conn->flags & UVQ_CONN_FLAG_COUNTED_IN_FLIGHT) {
    conn->flags &= ~UVQ_CONN_FLAG_COUNTED_IN_FLIGHT;
    conn->ep->stats.handshakes_in_flight--;
  }
  uvq_sources_handshake_done(conn);
  return 0;
}

static int cb_handshake_confirmed(ngtcp2_conn *q, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  conn->flags |= UVQ_CONN_FLAG_HANDSHAKE_CONFIRMED;
  /* The client no longer sends Initials: forget their DCIDs. */
  uvq_conn_unmap_handshake_cids(conn);
  return 0;
}

static int app_failed(uvq_conn *conn, int rv) {
  if (rv != 0) {
    conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int cb_stream_open(ngtcp2_conn *q, int64_t stream_id, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_stream *s;
  int rv;

  rv = uvq_stream_create(conn, stream_id, NULL, &s);
  if (rv != 0) {
    uvq_conn_flag_put(conn, UVQ_CONN_FLAG_NOMEM, rv == UVQ_ERR_NOMEM);
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  ngtcp2_conn_set_stream_user_data(q, stream_id, s);
  if (!ngtcp2_conn_is_local_stream(q, stream_id) &&
      ngtcp2_is_bidi_stream(stream_id) &&
      (uint64_t)(stream_id >> 2) + 1 > conn->peer_bidi_opened) {
    /* Opening stream N opens every lower one too (RFC 9000 §3.2). */
    conn->peer_bidi_opened = (uint64_t)(stream_id >> 2) + 1;
  }
  if (conn->cb && conn->cb->on_stream_open) {
    return app_failed(
        conn, conn->cb->on_stream_open(conn, stream_id, conn->user_data));
  }
  return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *q, uint32_t flags,
                               int64_t stream_id, uint64_t offset,
                               const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_stream *s = stream_user_data;
  int fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
  int rv = 0;

  (void)q;
  if (s && (flags & NGTCP2_STREAM_DATA_FLAG_0RTT)) {
    s->early = 1;
  }

  (void)offset;
  if (s && !s->stop_reading && conn->cb && conn->cb->on_stream_data &&
      conn->stage < UVQ_STAGE_CLOSING &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED)) {
    rv = conn->cb->on_stream_data(conn, stream_id, data, datalen, fin,
                                  conn->user_data, s->user_data);
  }
  /* Credit goes back once the application has had the data (unless a
   * receive budget pauses the connection's reads). */
  conn->metrics.stream_bytes_received += datalen;
  uvq_budget_recv_credit(conn, s, stream_id, datalen);
  return app_failed(conn, rv);
}

static int cb_acked_stream_data_offset(ngtcp2_conn *q, int64_t stream_id,
                                       uint64_t offset, uint64_t datalen,
                                       void *user_data,
                                       void *stream_user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_stream *s = stream_user_data;
  int rv = 0;

  (void)q;
  if (s == NULL) {
    return 0;
  }
  uvq_stream_ack(conn, s, offset, datalen);
  if (conn->cb && conn->cb->on_stream_acked) {
    rv = conn->cb->on_stream_acked(conn, stream_id, offset, datalen,
                                   conn->user_data, s->user_data);
  }
  return app_failed(conn, rv);
}

/* A peer's bidirectional stream closed: its credit goes back, but only
 * once fewer than half of settings.max_streams_bidi remain for the peer
 * to open, all closed ones at once. Giving each back as it closed made
 * every request cost a MAX_STREAMS packet of its own (and the peer's ACK
 * of it): 5 datagrams per GET on loopback, against 3. The peer is never
 * held up: it always has at least half its streams to open, and once it
 * has fewer, any close returns credit at once. */
static void stream_credit(uvq_conn *conn) {
  uint64_t window = conn->ep->settings.max_streams_bidi;
  conn->peer_bidi_closed++;
  if (conn->peer_bidi_opened + window / 2 >= conn->peer_bidi_max) {
    ngtcp2_conn_extend_max_streams_bidi(conn->ngconn,
                                        (size_t)conn->peer_bidi_closed);
    conn->peer_bidi_max += conn->peer_bidi_closed;
    conn->peer_bidi_closed = 0;
  }
}

static int cb_stream_close(ngtcp2_conn *q, uint32_t flags, int64_t stream_id,
                           uint64_t app_error_code, void *user_data,
                           void *stream_user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_stream *s = stream_user_data;

  if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)) {
    app_error_code = 0;
  }
  if (!ngtcp2_conn_is_local_stream(q, stream_id)) {
    /* Let the peer open another in its place. */
    if (ngtcp2_is_bidi_stream(stream_id)) {
      stream_credit(conn);
    } else {
      ngtcp2_conn_extend_max_streams_uni(q, 1);
    }
  }
  if (s == NULL) {
    return 0;
  }
  if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)) {
    s->fin_acked = 1; /* closed without a reset: all data and FIN acked */
  }
  if (conn->cb && conn->cb->on_stream_closed &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSED_FIRED)) {
    conn->cb->on_stream_closed(conn, stream_id, app_error_code, conn->user_data,
                               s->user_data);
  }
  uvq_stream_destroy(conn, s);
  return 0;
}

static int cb_stream_reset(ngtcp2_conn *q, int64_t stream_id,
                           uint64_t final_size, uint64_t app_error_code,
                           void *user_data, void *stream_user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_stream *s = stream_user_data;
  (void)q;
  (void)final_size;
  if (s && conn->cb && conn->cb->on_stream_reset) {
    conn->cb->on_stream_reset(conn, stream_id, app_error_code, conn->user_data,
                              s->user_data);
  }
  return 0;
}

static int cb_stream_stop_sending(ngtcp2_conn *q, int64_t stream_id,
                                  uint64_t app_error_code, void *user_data,
                                  void *stream_user_data) {
  /* ngtcp2 calls this when *we* stop reading, as our STOP_SENDING goes out
   * (1.11: ngtcp2_conn_write_pkt's frame loop); it reports no callback for
   * the peer's (conn_recv_stop_sending), which is found in the write path
   * instead. */
  (void)q;
  (void)stream_id;
  (void)app_error_code;
  (void)user_data;
  (void)stream_user_data;
  return 0;
}

static int cb_extend_max_local_streams(ngtcp2_conn *q, uint64_t max_streams,
                                       void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  (void)max_streams;
  conn->flags |= UVQ_CONN_FLAG_STREAMS_AVAILABLE_PENDING;
  return 0;
}

static int cb_extend_max_stream_data(ngtcp2_conn *q, int64_t stream_id,
                                     uint64_t max_data, void *user_data,
                                     void *stream_user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_stream *s = stream_user_data;
  (void)q;
  (void)stream_id;
  (void)max_data;
  if (s && s->data_blocked) {
    s->data_blocked = 0;
    conn->nblocked--;
    uvq_stream_ready(conn, s);
  }
  if (s) {
    uvq_stream_credit(conn, s);
  }
  return 0;
}

static int cb_recv_stateless_reset(ngtcp2_conn *q,
                                   const ngtcp2_pkt_stateless_reset *sr,
                                   void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  (void)sr;
  conn->ci.error = UVQ_ERR_STATELESS_RESET;
  return 0;
}

/* The peer CIDs we use and their reset tokens: the router matches
 * unroutable datagrams against these (reset.c). */
static int cb_dcid_status(ngtcp2_conn *q, ngtcp2_connection_id_status_type type,
                          uint64_t seq, const ngtcp2_cid *cid,
                          const uint8_t *token, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  (void)seq;
  (void)cid;
  if (token == NULL) {
    return 0;
  }
  if (type == NGTCP2_CONNECTION_ID_STATUS_TYPE_ACTIVATE) {
    /* A token left out only costs recognising a reset on that CID. */
    (void)uvq_reset_token_add(conn, token);
  } else {
    uvq_reset_token_remove(conn, token);
  }
  return 0;
}

/* Client: ngtcp2 has checked the packet (our SCID and DCID, not listing
 * the version we chose); acted on when ngtcp2_conn_read_pkt returns
 * NGTCP2_ERR_RECV_VERSION_NEGOTIATION (after_ngtcp2). */
static int cb_recv_version_negotiation(ngtcp2_conn *q, const ngtcp2_pkt_hd *hd,
                                       const uint32_t *sv, size_t nsv,
                                       void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  const uvq_settings *st = &conn->ep->settings;
  (void)q;
  (void)hd;
  conn->ep->stats.version_negotiations_received++;
  /* The first of ours the server lists (RFC 9368 §4): what ngtcp2's
   * downgrade check, with our quic_versions as preferred_versions, will
   * expect of the server's version_information. A greased or unknown
   * entry is never one of ours. */
  conn->vn_version = 0;
  for (size_t i = 0; i < st->quic_versionslen && conn->vn_version == 0; i++) {
    for (size_t j = 0; j < nsv; j++) {
      if (sv[j] == st->quic_versions[i]) {
        conn->vn_version = sv[j];
        break;
      }
    }
  }
  return 0;
}

static int cb_recv_new_token(ngtcp2_conn *q, const uint8_t *token,
                             size_t tokenlen, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  if (conn->cb && conn->cb->on_new_token) {
    return app_failed(
        conn, conn->cb->on_new_token(conn, token, tokenlen, conn->user_data));
  }
  return 0;
}

/* ngtcp2 validated (or failed to validate) a path: a validated one is
 * where the peer is now, for the path watchdog. */
static int cb_path_validation(ngtcp2_conn *q, uint32_t flags,
                              const ngtcp2_path *path,
                              const ngtcp2_path *old_path,
                              ngtcp2_path_validation_result res,
                              void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  uvq_addr remote;

  (void)q;
  (void)flags;
  (void)old_path;
  if (res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS &&
      uvq_addr_set(&remote, (const struct sockaddr *)path->remote.addr,
                   (socklen_t)path->remote.addrlen) == 0) {
    uvq_live_path_validated(conn, &remote);
  }
  return 0;
}

static int cb_recv_datagram(ngtcp2_conn *q, uint32_t flags, const uint8_t *data,
                            size_t datalen, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  (void)flags;
  conn->ep->stats.datagrams_app_received++;
  if (conn->cb && conn->cb->on_datagram &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED)) {
    return app_failed(
        conn, conn->cb->on_datagram(conn, data, datalen, conn->user_data));
  }
  return 0;
}

static int cb_ack_datagram(ngtcp2_conn *q, uint64_t dgram_id, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  if (conn->cb && conn->cb->on_datagram_acked &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED)) {
    return app_failed(
        conn, conn->cb->on_datagram_acked(conn, dgram_id, conn->user_data));
  }
  return 0;
}

static int cb_lost_datagram(ngtcp2_conn *q, uint64_t dgram_id,
                            void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  (void)q;
  if (conn->cb && conn->cb->on_datagram_lost &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED)) {
    return app_failed(
        conn, conn->cb->on_datagram_lost(conn, dgram_id, conn->user_data));
  }
  return 0;
}

/* ngtcp2's trace (ngtcp2_printf: its format strings are its own). */
__attribute__((format(printf, 2, 3))) static void cb_log(void *user_data,
                                                         const char *fmt, ...) {
  uvq_conn *conn = conn_of(user_data);
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  uvq_metrics_ngtcp2_log(conn, line);
}

static void cb_qlog(void *user_data, uint32_t flags, const void *data,
                    size_t datalen) {
  uvq_conn *conn = conn_of(user_data);
  const uvq_settings *st = &conn->ep->settings;
  st->qlog(st->qlog_user_data, conn, data, datalen,
           (flags & NGTCP2_QLOG_WRITE_FLAG_FIN) != 0);
}

/* Client: after the handshake, CRYPTO data at the 1-RTT level can only be
 * NewSessionTicket (QUIC forbids KeyUpdate and post-handshake auth, RFC
 * 9001 §4.1.3); once GnuTLS has a whole ticket, on_session_ticket is due.
 * The same bytes tell whether the ticket grants early data, which GnuTLS
 * does not say (ticket_scan.h). No GnuTLS hook function is used, so
 * uvq_tls_hook keeps them all. */
static int cb_recv_crypto_data(ngtcp2_conn *q,
                               ngtcp2_encryption_level crypto_level,
                               uint64_t offset, const uint8_t *data,
                               size_t datalen, void *user_data) {
  uvq_conn *conn = conn_of(user_data);
  int rv;

  if (!conn->is_server && crypto_level == NGTCP2_ENCRYPTION_LEVEL_1RTT) {
    uvq_ticket_scan_feed(&conn->tickets, data, datalen);
  }
  rv = ngtcp2_crypto_recv_crypto_data_cb(q, crypto_level, offset, data, datalen,
                                         user_data);
  if (rv == 0 && !conn->is_server &&
      crypto_level == NGTCP2_ENCRYPTION_LEVEL_1RTT &&
      (gnutls_session_get_flags(conn->tls) & GNUTLS_SFLAGS_SESSION_TICKET)) {
    conn->flags |= UVQ_CONN_FLAG_TICKET_PENDING;
  }
  return rv;
}

/* The connection whose datagram ngtcp2 is reading on this thread (the
 * decrypt callback has no user data). */
static _Thread_local uvq_conn *tl_reading;

/* A packet that decrypts is authenticated (AEAD): only such a datagram
 * says anything about where the peer is (liveness.c). ngtcp2 returns 0
 * from ngtcp2_conn_read_pkt for packets it dropped undecrypted too. */
static int cb_decrypt(uint8_t *dest, const ngtcp2_crypto_aead *aead,
                      const ngtcp2_crypto_aead_ctx *aead_ctx,
                      const uint8_t *ciphertext, size_t ciphertextlen,
                      const uint8_t *nonce, size_t noncelen, const uint8_t *aad,
                      size_t aadlen) {
  int rv =
      ngtcp2_crypto_decrypt_cb(dest, aead, aead_ctx, ciphertext, ciphertextlen,
                               nonce, noncelen, aad, aadlen);
  if (rv == 0 && tl_reading) {
    tl_reading->flags |= UVQ_CONN_FLAG_RX_AUTH;
  }
  return rv;
}

static void set_callbacks(ngtcp2_callbacks *cb, int is_server) {
  memset(cb, 0, sizeof(*cb));
  if (is_server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb->recv_version_negotiation = cb_recv_version_negotiation;
  }
  cb->recv_crypto_data = cb_recv_crypto_data;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = cb_decrypt;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb->rand = cb_rand;
  cb->get_new_connection_id = cb_get_new_connection_id;
  cb->remove_connection_id = cb_remove_connection_id;
  cb->handshake_completed = cb_handshake_completed;
  cb->handshake_confirmed = cb_handshake_confirmed;
  cb->recv_rx_key = cb_recv_rx_key;
  cb->recv_tx_key = cb_recv_tx_key;
  cb->stream_open = cb_stream_open;
  cb->recv_stream_data = cb_recv_stream_data;
  cb->acked_stream_data_offset = cb_acked_stream_data_offset;
  cb->stream_close = cb_stream_close;
  cb->stream_reset = cb_stream_reset;
  cb->stream_stop_sending = cb_stream_stop_sending;
  cb->extend_max_local_streams_bidi = cb_extend_max_local_streams;
  cb->extend_max_local_streams_uni = cb_extend_max_local_streams;
  cb->extend_max_stream_data = cb_extend_max_stream_data;
  cb->recv_stateless_reset = cb_recv_stateless_reset;
  cb->dcid_status = cb_dcid_status;
  cb->recv_new_token = cb_recv_new_token;
  cb->path_validation = cb_path_validation;
  cb->recv_datagram = cb_recv_datagram;
  cb->ack_datagram = cb_ack_datagram;
  cb->lost_datagram = cb_lost_datagram;
}

/* ---- creation ---------------------------------------------------------- */

/* Sizes path MTU discovery climbs through, smallest first: ngtcp2 probes
 * them in order, moves on to the next larger one after a success, and
 * after three lost probes of a size skips it and every larger one (RFC
 * 8899's search). Each is a link MTU less 48 bytes of IPv6 and UDP
 * headers. Climbing keeps a path that fails a large size at the largest
 * one it passed, one round trip per step. */
static const uint16_t pmtud_sizes[] = {
    1390 - 48, /* tunnels */
    1454 - 48, /* a Japanese fibre service (ngtcp2's first default) */
    1492 - 48, /* PPPoE */
    1500 - 48, /* Ethernet */
    9000 - 48, /* jumbo Ethernet */
};
#define UVQ_PMTUD_PROBES_MAX (1 + sizeof(pmtud_sizes) / sizeof(pmtud_sizes[0]))

/* Fills |probes| for ceiling |max| and returns how many. Up to Ethernet's
 * size (1500 less the headers: every path beyond a router, where a tunnel
 * or PPPoE hop is common): the sizes below |max|, smallest first, then
 * |max|. Above it the driver has said the peer is on the first link
 * (uvq_settings.max_udp_payload_size), whose MTU is the path's: |max|
 * first, so one probe settles it (a short connection on loopback sent six,
 * 31 KB, climbing to 16384), then the climb in case a hop disagrees. */
static size_t pmtud_probes(uint16_t *probes, size_t max) {
  size_t i, n = 0;
  int first = max > 1500 - 28;
  if (first) {
    probes[n++] = (uint16_t)max;
  }
  for (i = 0; i < sizeof(pmtud_sizes) / sizeof(pmtud_sizes[0]); i++) {
    if (pmtud_sizes[i] < max) {
      probes[n++] = pmtud_sizes[i];
    }
  }
  if (!first && max > UVQ_MIN_INITIAL_DATAGRAM) {
    probes[n++] = (uint16_t)max;
  }
  return n;
}

/* Builds the connection's ngtcp2_conn and GnuTLS session for a first
 * Initial of |version| (a client after Version Negotiation: the version it
 * starts over in, |original_version| the one it first tried; 0 otherwise).
 * On failure nothing of either is left. */
static int conn_start(uvq_conn *conn, const uvq_conn_params *p,
                      uint32_t original_version, uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;
  const ngtcp2_cid *dcid = p->dcid, *scid = p->scid;
  const ngtcp2_cid *odcid = p->odcid, *retry_scid = p->retry_scid;
  uint32_t version = p->version;
  const uvq_settings *st = &ep->settings;
  int is_server = conn->is_server;
  ngtcp2_callbacks callbacks;
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_path npath;
  uint16_t probes[UVQ_PMTUD_PROBES_MAX]; /* ngtcp2 copies them */
  int rv;

  /* A fresh TLS session reads its tickets from the start (after Version
   * Negotiation too). */
  uvq_ticket_scan_init(&conn->tickets);
  set_callbacks(&callbacks, is_server);
  ngtcp2_settings_default(&settings);
  settings.rand_ctx.native_handle = ep;
  settings.initial_ts = now;
  settings.initial_rtt = st->initial_rtt;
  settings.cc_algo = st->cc_algo == UVQ_CC_RENO  ? NGTCP2_CC_ALGO_RENO
                     : st->cc_algo == UVQ_CC_BBR ? NGTCP2_CC_ALGO_BBR
                                                 : NGTCP2_CC_ALGO_CUBIC;
  settings.max_tx_udp_payload_size = uvq_ep_path_payload(ep, p->path);
  settings.no_pmtud = !st->pmtud;
  settings.pmtud_probeslen =
      pmtud_probes(probes, settings.max_tx_udp_payload_size);
  settings.pmtud_probes = settings.pmtud_probeslen ? probes : NULL;
  settings.handshake_timeout = st->handshake_timeout;
  settings.max_window = st->max_window;
  settings.max_stream_window = st->max_stream_window;
  settings.ack_thresh = st->ack_thresh;
  /* RFC 9368. A server: the versions it upgrades a client to, in its
   * order (and, unset, the available_versions of its transport
   * parameter). A client: the versions it offers, and its preference for
   * ngtcp2's downgrade check after Version Negotiation. The endpoint's
   * settings outlive the connection, as ngtcp2 wants (it copies them
   * anyway). */
  settings.preferred_versions = st->quic_versions;
  settings.preferred_versionslen = st->quic_versionslen;
  if (!is_server) {
    settings.available_versions = st->quic_versions;
    settings.available_versionslen = st->quic_versionslen;
    settings.original_version = original_version;
  }
  if (uvq_metrics_want_ngtcp2_log(ep)) {
    settings.log_printf = cb_log;
  }
  if (p->token && p->tokenlen) {
    settings.token = p->token;
    settings.tokenlen = p->tokenlen;
    /* A server says which kind of token validated the address; a client's
     * token is always one a NEW_TOKEN frame gave it. */
    settings.token_type = is_server && retry_scid ? NGTCP2_TOKEN_TYPE_RETRY
                                                  : NGTCP2_TOKEN_TYPE_NEW_TOKEN;
  }
  if (st->qlog) {
    settings.qlog_write = cb_qlog;
  }

  ngtcp2_transport_params_default(&params);
  params.initial_max_data = st->initial_max_data;
  params.initial_max_stream_data_bidi_local = st->initial_max_stream_data;
  params.initial_max_stream_data_bidi_remote = st->initial_max_stream_data;
  params.initial_max_stream_data_uni = st->initial_max_stream_data;
  params.initial_max_streams_bidi = st->max_streams_bidi;
  conn->peer_bidi_max = st->max_streams_bidi;
  conn->peer_bidi_opened = conn->peer_bidi_closed = 0;
  params.initial_max_streams_uni = st->max_streams_uni;
  params.max_idle_timeout = st->idle_timeout;
  params.active_connection_id_limit = UVQ_ACTIVE_CID_LIMIT;
  params.disable_active_migration =
      (uint8_t)(st->disable_active_migration != 0);
  params.max_datagram_frame_size = st->max_datagram_frame_size;
  if (is_server && st->max_udp_payload_size == 0) {
    /* A server in auto mode invites nothing above Ethernet's size from its
     * clients: ngtcp2 keeps a decrypt buffer the size of the largest
     * datagram a connection received for the connection's life, and a
     * client's 16384-byte probes on loopback cost 14.5 KB per idle
     * connection (bench/run.sh part 3). Downloads still get the server's
     * own ceiling; large uploads need an explicit setting. */
    params.max_udp_payload_size = UVQ_DEFAULT_UDP_PAYLOAD;
  }

  uvq_conn_to_ngtcp2_path(&npath, &conn->path);
  if (ep->conn_hook &&
      ep->conn_hook(&settings, &params, ep->conn_hook_ud) != 0) {
    return UVQ_ERR_CALLBACK;
  }
  /* The endpoint's clock, not the hook's: ngtcp2 aborts on a later call
   * with an earlier time. */
  settings.initial_ts = now;
  if (is_server) {
    /* Servers always pass the client's DCID; only clients pass NULL. */
    /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    params.original_dcid = *odcid;
    params.original_dcid_present = 1;
    if (retry_scid) {
      params.retry_scid = *retry_scid;
      params.retry_scid_present = 1;
    }
    if (uvq_reset_token_of(ep, scid, params.stateless_reset_token) != 0) {
      return UVQ_ERR_INTERNAL;
    }
    params.stateless_reset_token_present = 1;
    rv =
        ngtcp2_conn_server_new(&conn->ngconn, dcid, scid, &npath, version,
                               &callbacks, &settings, &params, &ep->nmem, conn);
  } else {
    rv =
        ngtcp2_conn_client_new(&conn->ngconn, dcid, scid, &npath, version,
                               &callbacks, &settings, &params, &ep->nmem, conn);
  }
  if (rv != 0) {
    conn->ngconn = NULL;
    return rv == NGTCP2_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INTERNAL;
  }
  conn->first_version = version;
  if (st->keep_alive) {
    ngtcp2_conn_set_keep_alive_timeout(conn->ngconn, st->keep_alive);
  }

  /* A client with qlog takes the qlog guard (CVE-2026-40170; tls.h), also
   * when only a raw-mode hook turned ngtcp2's qlog on. A server's tickets
   * are per version (RFC 9369 §5): the key of the version this connection
   * started in decrypts the client's and encrypts ours. */
  rv = uvq_tls_session_new_ex(
      ep->cfg.tls, &conn->tls, p->server_name,
      is_server ? (st->early_data ? UVQ_TLS_SESSION_EARLY_DATA : 0u) |
                      (st->anti_replay ? UVQ_TLS_SESSION_ANTI_REPLAY : 0u)
                : p->tls_opts |
                      (settings.qlog_write ? UVQ_TLS_SESSION_QLOG_GUARD : 0u),
      is_server ? uvq_ep_ticket_key(ep, version) : NULL);
  if (rv != 0) {
    goto fail_tls;
  }
  gnutls_session_set_ptr(conn->tls, &conn->ref);
  ngtcp2_conn_set_tls_native_handle(conn->ngconn, conn->tls);
  if (ep->cfg.tls->hook &&
      ep->cfg.tls->hook(conn, conn->tls, ep->cfg.tls->hook_user_data) != 0) {
    rv = UVQ_ERR_TLS;
    goto fail_hook;
  }
  return 0;

fail_hook:
  uvq_tls_session_del(conn->tls);
  conn->tls = NULL;
fail_tls:
  ngtcp2_conn_del(conn->ngconn);
  conn->ngconn = NULL;
  return rv;
}

int uvq_conn_new(uvq_conn **pconn, uvq_endpoint *ep,
                 const uvq_conn_params *params, uvq_tstamp now) {
  uvq_conn *conn;
  int rv;

  rv = uvq_ep_reserve_conn(ep);
  if (rv != 0) {
    return rv;
  }
  conn = uvq_calloc(ep->mem, 1, sizeof(*conn));
  if (conn == NULL) {
    return UVQ_ERR_NOMEM;
  }
  conn->ep = ep;
  conn->is_server = params->is_server;
  conn->path = *params->path;
  conn->heap_idx = SIZE_MAX;
  conn->expiry = UVQ_TSTAMP_MAX;
  conn->app_deadline = UVQ_TSTAMP_MAX;
  conn->stage = UVQ_STAGE_HANDSHAKE;
  conn->ref.get_conn = get_conn;
  conn->ref.user_data = conn;
  rv = uvq_stream_table_init(&conn->streams);
  if (rv != 0) {
    goto fail_streams;
  }

  /* Before ngtcp2 exists: it may log while being created. */
  uvq_metrics_conn_init(conn, params->scid, now);
  uvq_live_init(conn, now);
  /* The connection's name in logs: the client's first DCID. */
  conn->odcid = params->is_server ? *params->odcid : *params->dcid;
  rv = conn_start(conn, params, 0, now);
  if (rv != 0) {
    goto fail_start;
  }
  if (params->server_name) {
    snprintf(conn->sni, sizeof(conn->sni), "%s", params->server_name);
  }

  rv = uvq_cid_map_insert_cid(&ep->cids, params->scid, conn);
  if (rv != 0) {
    goto fail_map;
  }
  uvq_ep_conn_link(ep, conn);
  *pconn = conn;
  return 0;

fail_map:
  uvq_tls_session_del(conn->tls);
  ngtcp2_conn_del(conn->ngconn);
fail_start:
  uvq_stream_table_free(conn);
fail_streams:
  uvq_free(ep->mem, conn);
  return rv;
}

/* Client: drops the streams of early data that will never be sent — 0-RTT
 * the server refused, or a connection starting over after Version
 * Negotiation — so the application hears on_stream_closed for each, and
 * on_early_data_rejected before on_established. */
static void drop_early_streams(uvq_conn *conn) {
  uvq_stream_table *t = &conn->streams;

  conn->early_data = UVQ_EARLY_DATA_REJECTED;
  conn->flags |= UVQ_CONN_FLAG_EARLY_REJECTED_PENDING;
  while (t->len > 0) {
    uvq_stream *s = NULL;
    for (size_t i = 0; i < t->cap && s == NULL; i++) {
      s = t->slots[i];
    }
    /* len > 0: a slot holds a stream (the table's count of them). */
    /* NOLINTBEGIN(clang-analyzer-core.NullDereference) */
    if (conn->cb && conn->cb->on_stream_closed) {
      conn->cb->on_stream_closed(conn, s->id, 0, conn->user_data, s->user_data);
    }
    /* NOLINTEND(clang-analyzer-core.NullDereference) */
    uvq_stream_destroy(conn, s);
  }
}

/* Client, after ngtcp2 passed on a Version Negotiation packet: starts
 * over in conn->vn_version, the first of our versions the server lists
 * (incompatible version negotiation, RFC 9368 §4) — a new ngtcp2
 * connection and TLS session in the same uvq_conn, a new first DCID, the
 * same SCID, and ngtcp2's original_version set so it refuses a downgrade
 * once it sees the server's transport parameters. Without a resumption
 * (its ticket is for the first version) and without the token (likewise).
 * Returns 0, or UVQ_ERR_VERSION_NEGOTIATION if there is no version in
 * common, or the error that stopped the restart. */
static int conn_restart_version(uvq_conn *conn, uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;
  uint32_t version = conn->vn_version, original;
  ngtcp2_conn *old_ngconn = conn->ngconn;
  gnutls_session_t old_tls = conn->tls;
  ngtcp2_cid dcid, scid;
  uvq_conn_params params = {0};
  int rv;

  conn->vn_version = 0;
  if (version == 0) {
    return UVQ_ERR_VERSION_NEGOTIATION;
  }
  /* Before the handshake a client has exactly one SCID: keep it (the map
   * already routes it here). */
  if (ngtcp2_conn_get_scid(old_ngconn, NULL) != 1 ||
      uvq_ep_random_cid(conn->ep, &dcid, UVQ_CLIENT_FIRST_DCIDLEN) != 0) {
    return UVQ_ERR_INTERNAL;
  }
  ngtcp2_conn_get_scid(old_ngconn, &scid);
  original = ngtcp2_conn_get_client_chosen_version(old_ngconn);
  params.is_server = 0;
  params.dcid = &dcid;
  params.scid = &scid;
  params.path = &conn->path;
  params.version = version;
  params.server_name = conn->sni[0] ? conn->sni : NULL;
  conn->ngconn = NULL;
  conn->tls = NULL;
  rv = conn_start(conn, &params, original, now);
  if (rv != 0) {
    conn->ngconn = old_ngconn;
    conn->tls = old_tls;
    return rv;
  }
  uvq_tls_session_del(old_tls);
  ngtcp2_conn_del(old_ngconn);
  conn->odcid = dcid;
  /* What the old connection wrote and the driver did not take yet is for
   * a connection that no longer exists. */
  while (conn->pending_head) {
    uvq_pending *pb = conn->pending_head;
    conn->pending_head = pb->next;
    uvq_free(ep->mem, pb);
  }
  conn->pending_tail = NULL;
  if (conn->early_data == UVQ_EARLY_DATA_ATTEMPTED) {
    drop_early_streams(conn);
  }
  return 0;
}

void uvq_conn_unmap_handshake_cids(uvq_conn *conn) {
  uvq_endpoint *ep = conn->ep;
  if (conn->flags & UVQ_CONN_FLAG_CLIENT_DCID_MAPPED) {
    uvq_cid_map_erase_cid(&ep->cids, &conn->client_dcid);
    conn->flags &= ~UVQ_CONN_FLAG_CLIENT_DCID_MAPPED;
  }
  if (conn->flags & UVQ_CONN_FLAG_ODCID_MAPPED) {
    uvq_cid_map_erase_cid(&ep->cids, &conn->odcid);
    conn->flags &= ~UVQ_CONN_FLAG_ODCID_MAPPED;
  }
}

void uvq_conn_del(uvq_conn *conn) {
  uvq_endpoint *ep = conn->ep;
  ngtcp2_cid scids[16];
  ngtcp2_cid *all = scids;
  size_t n;

  if ((conn->flags & UVQ_CONN_FLAG_CLOSED_PENDING) &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSED_FIRED) && conn->cb &&
      conn->cb->on_closed) {
    conn->flags |= UVQ_CONN_FLAG_CLOSED_FIRED;
    conn->cb->on_closed(conn, &conn->ci, conn->user_data);
  }
  if (conn->flags & UVQ_CONN_FLAG_COUNTED_IN_FLIGHT) {
    ep->stats.handshakes_in_flight--;
  }
  uvq_sources_remove(conn);
  uvq_conn_unmap_handshake_cids(conn);
  n = ngtcp2_conn_get_scid(conn->ngconn, NULL);
  if (n > 16) {
    all = uvq_calloc(ep->mem, n, sizeof(*all));
  }
  if (all) {
    n = ngtcp2_conn_get_scid(conn->ngconn, all);
    for (size_t i = 0; i < n; i++) {
      if (uvq_cid_map_find_cid(&ep->cids, &all[i]) == conn) {
        uvq_cid_map_erase_cid(&ep->cids, &all[i]);
      }
    }
    if (all != scids) {
      uvq_free(ep->mem, all);
    }
  } else {
    /* No memory for the list: find this connection's entries in the map
     * itself, so none is left pointing at freed memory. Erasing shifts
     * entries, so rescan until none is found (rare path: NOMEM only). */
    for (int found = 1; found;) {
      found = 0;
      for (size_t i = 0; i <= ep->cids.mask; i++) {
        uvq_cid_map_slot *sl = &ep->cids.slots[i];
        if (sl->value == conn) {
          uint8_t key[UVQ_MAX_CIDLEN];
          size_t keylen = sl->keylen;
          memcpy(key, sl->key, keylen);
          uvq_cid_map_erase(&ep->cids, key, keylen);
          found = 1;
          break;
        }
      }
    }
  }
  if (conn->last_new_cid.datalen &&
      uvq_cid_map_find_cid(&ep->cids, &conn->last_new_cid) == conn) {
    uvq_cid_map_erase_cid(&ep->cids, &conn->last_new_cid);
  }
  uvq_reset_conn_forget(conn);
  uvq_waker_detach_conn(conn);
  uvq_ep_conn_unlink(ep, conn);
  uvq_stream_table_free(conn);
  uvq_budget_conn_gone(conn);
  ngtcp2_conn_del(conn->ngconn);
  uvq_tls_session_del(conn->tls);
  while (conn->dgram_head) {
    uvq_dgram *d = conn->dgram_head;
    conn->dgram_head = d->next;
    uvq_free(ep->mem, d);
  }
  while (conn->pending_head) {
    uvq_pending *pb = conn->pending_head;
    conn->pending_head = pb->next;
    uvq_free(ep->mem, pb);
  }
  uvq_free(ep->mem, conn->close_pkt);
  uvq_free(ep->mem, conn->close_reason);
  uvq_free(ep->mem, conn);
}

/* ---- receive and timers ------------------------------------------------ */

/* Runs the application events ngtcp2 callbacks deferred: they fire after
 * ngtcp2 returns, so the application may call back into the library. */
void uvq_conn_run_deferred(uvq_conn *conn) {
  int rv;
  if (conn->stage >= UVQ_STAGE_CLOSING ||
      (conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) || conn->cb == NULL) {
    return;
  }
  if (conn->flags & UVQ_CONN_FLAG_EARLY_REJECTED_PENDING) {
    conn->flags &= ~UVQ_CONN_FLAG_EARLY_REJECTED_PENDING;
    if (conn->cb->on_early_data_rejected) {
      rv = conn->cb->on_early_data_rejected(conn, conn->user_data);
      if (rv != 0) {
        conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
        return;
      }
    }
  }
  if (conn->flags & UVQ_CONN_FLAG_ESTABLISHED_PENDING) {
    conn->flags &= ~UVQ_CONN_FLAG_ESTABLISHED_PENDING;
    if (conn->cb->on_established) {
      rv = conn->cb->on_established(conn, conn->user_data);
      if (rv != 0) {
        conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
        return;
      }
    }
  }
  if ((conn->flags & UVQ_CONN_FLAG_TICKET_PENDING) &&
      (conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED)) {
    uint8_t *blob;
    size_t bloblen;
    conn->flags &= ~UVQ_CONN_FLAG_TICKET_PENDING;
    /* A ticket that cannot be packed costs the next connection its
     * resumption, not this connection. */
    if (conn->cb->on_session_ticket &&
        uvq_resume_encode(conn, &blob, &bloblen) == 0) {
      rv = conn->cb->on_session_ticket(conn, blob, bloblen, conn->user_data);
      gnutls_memset(blob, 0, bloblen);
      uvq_free(conn->ep->mem, blob);
      if (rv != 0) {
        conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
        return;
      }
    }
  }
  if ((conn->flags & UVQ_CONN_FLAG_STREAMS_AVAILABLE_PENDING) &&
      (conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED)) {
    conn->flags &= ~UVQ_CONN_FLAG_STREAMS_AVAILABLE_PENDING;
    if (conn->cb->on_streams_available) {
      rv = conn->cb->on_streams_available(conn, conn->user_data);
      if (rv != 0) {
        conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
        return;
      }
    }
  }
  while (conn->stop_pending) {
    uvq_stream *s = conn->stop_pending;
    conn->stop_pending = s->stop_next;
    s->stop_next = NULL;
    s->stop_pending = 0;
    if (conn->cb->on_stop_sending) {
      conn->cb->on_stop_sending(conn, s->id, 0, conn->user_data, s->user_data);
    }
  }
  while (conn->writable_pending) {
    uvq_stream *s = conn->writable_pending;
    conn->writable_pending = s->pending_next;
    s->pending_next = NULL;
    s->writable_pending = 0;
    if (conn->cb->on_stream_writable) {
      rv = conn->cb->on_stream_writable(conn, s->id, conn->user_data,
                                        s->user_data);
      if (rv != 0) {
        conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
        return;
      }
    }
  }
}

int uvq_addr_eq(const uvq_addr *a, const uvq_addr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

void uvq_conn_sync_path(uvq_conn *conn) {
  const ngtcp2_path *p = ngtcp2_conn_get_path(conn->ngconn);
  uvq_path np;

  /* The path rarely changes, so look first. */
  if (!uvq_path_eq_ngtcp2(&conn->path, p) &&
      uvq_path_from_ngtcp2(&np, p) == 0) {
    conn->path = np;
  }
}

/* What follows a call into ngtcp2. |batched|: a received packet, one of a
 * receive batch; what only matters before the connection writes (its
 * path; its timer, unless the packet ended the connection's life) is left
 * to uvq_conn_write, which the mark makes run in the next flush (the timer
 * is refreshed before any expiry is used: uvq_ep_refresh_timers). */
static void after_ngtcp2(uvq_conn *conn, int rv, uvq_tstamp now, int batched) {
  /* A packet may have moved the connection to a new path (the peer
   * migrated or was rebound by a NAT, or our path validation finished). */
  if (!batched) {
    uvq_conn_sync_path(conn);
  }
  if (rv == 0) {
    uvq_conn_run_deferred(conn);
    if ((conn->flags & UVQ_CONN_FLAG_CALLBACK_FAILED) &&
        conn->stage < UVQ_STAGE_CLOSING) {
      uvq_stage_fail(conn, NGTCP2_ERR_CALLBACK_FAILURE, now);
    }
  } else {
    switch (rv) {
    case NGTCP2_ERR_DRAINING:
      uvq_stage_drain(conn, now);
      break;
    case NGTCP2_ERR_RECV_VERSION_NEGOTIATION: {
      int err = conn_restart_version(conn, now);
      if (err != 0) {
        conn->ci.type = UVQ_CLOSE_TYPE_NONE;
        uvq_stage_finish(conn, err,
                         err == UVQ_ERR_VERSION_NEGOTIATION ? UVQ_CLOSE_PEER
                                                            : UVQ_CLOSE_LOCAL);
      }
      break;
    }
    case NGTCP2_ERR_DROP_CONN:
      uvq_stage_finish(conn, UVQ_ERR_PROTOCOL, UVQ_CLOSE_LOCAL);
      break;
    case NGTCP2_ERR_IDLE_CLOSE:
      conn->ep->stats.idle_timeouts++;
      uvq_stage_finish(conn, UVQ_ERR_IDLE_TIMEOUT, UVQ_CLOSE_TIMEOUT);
      break;
    case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
      conn->ep->stats.handshake_timeouts++;
      uvq_stage_finish(conn, UVQ_ERR_HANDSHAKE_TIMEOUT, UVQ_CLOSE_TIMEOUT);
      break;
    default:
      uvq_stage_fail(conn, rv, now);
      break;
    }
  }
  uvq_ep_mark(conn->ep, conn);
  if (batched && rv == 0 && conn->stage < UVQ_STAGE_CLOSING) {
    conn->flags |= UVQ_CONN_FLAG_TIMER_STALE;
  } else {
    uvq_ep_timer_update(conn->ep, conn);
  }
}

/* ngtcp2 reveals a peer's STOP_SENDING only to a write on the stream
 * (1.11: conn_recv_stop_sending calls no callback; ngtcp2_conn_writev_stream
 * answers STREAM_SHUT_WR; conn_io.c), and a stream blocked by flow control
 * is not written again until the peer grants credit — which a peer that
 * stopped reading may never do. So blocked streams get another try after
 * each packet: ngtcp2 answers DATA_BLOCKED again, or STREAM_SHUT_WR. */
static void retry_blocked_streams(uvq_conn *conn) {
  uvq_stream_table *t = &conn->streams;
  /* The common case — nothing blocked — costs one comparison per packet. */
  for (size_t i = 0; i < t->cap && conn->nblocked > 0; i++) {
    uvq_stream *s = t->slots[i];
    if (s && s->data_blocked) {
      s->data_blocked = 0;
      conn->nblocked--;
      uvq_stream_ready(conn, s);
    }
  }
}

void uvq_conn_recv(uvq_conn *conn, const uvq_path *path, uint8_t ecn,
                   const uint8_t *data, size_t len, uvq_tstamp now) {
  uvq_path rebound;
  ngtcp2_path npath;
  ngtcp2_pkt_info pi;
  int rv, used;

  conn->metrics.datagrams_received++;
  conn->metrics.bytes_received += len;
  switch (conn->stage) {
  case UVQ_STAGE_CLOSING:
    uvq_stage_closing_recv(conn);
    return;
  case UVQ_STAGE_DRAINING:
  case UVQ_STAGE_CLOSED:
    uvq_ep_drop(conn->ep, UVQ_DROP_DRAINING);
    return;
  default:
    break;
  }
  if (conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) {
    /* The close goes out at the next flush; nothing more is read. */
    uvq_ep_drop(conn->ep, UVQ_DROP_DRAINING);
    return;
  }
  if (conn->flags & UVQ_CONN_FLAG_REBIND_PENDING) {
    if (uvq_addr_eq(&path->local, &conn->rebind_old_local)) {
      rebound.local = conn->path.local;
      rebound.remote = path->remote;
      path = &rebound;
    } else if (uvq_addr_eq(&path->local, &conn->path.local)) {
      conn->flags &= ~UVQ_CONN_FLAG_REBIND_PENDING;
    }
  }
  uvq_conn_to_ngtcp2_path(&npath, path);
  memset(&pi, 0, sizeof(pi));
  pi.ecn = ecn;
  conn->flags &= ~UVQ_CONN_FLAG_RX_AUTH;
  tl_reading = conn;
  rv = ngtcp2_conn_read_pkt(conn->ngconn, &npath, &pi, data, len, now);
  tl_reading = NULL;
  uvq_metrics_conn_read(conn, now);
  used = rv == 0 && (conn->flags & UVQ_CONN_FLAG_RX_AUTH);
  if (rv == 0) {
    retry_blocked_streams(conn);
  }
  if (rv == NGTCP2_ERR_DISCARD_PKT) {
    uvq_ep_drop(conn->ep, UVQ_DROP_CONN_REJECTED);
    rv = 0;
  } else if (rv == NGTCP2_ERR_DROP_CONN) {
    /* The packet was not used and ends the connection (e.g. a server's
     * first Initial that does not decrypt): count it, never drop
     * silently. */
    uvq_ep_drop(conn->ep, UVQ_DROP_CONN_REJECTED);
  }
  after_ngtcp2(conn, rv, now, 1);
  if (used) {
    /* Only a datagram with a packet that decrypted (cb_decrypt) says
     * where the peer is. */
    uvq_live_on_recv(conn, path, now);
  }
}

uvq_tstamp uvq_conn_expiry(uvq_conn *conn) {
  switch (conn->stage) {
  case UVQ_STAGE_HANDSHAKE:
  case UVQ_STAGE_RUNNING: {
    uvq_tstamp e = ngtcp2_conn_get_expiry(conn->ngconn);
    uvq_tstamp l = uvq_live_deadline(conn);
    if (conn->app_deadline < e) {
      e = conn->app_deadline;
    }
    return l < e ? l : e;
  }
  case UVQ_STAGE_CLOSING:
  case UVQ_STAGE_DRAINING:
    return conn->close_deadline;
  default:
    return UVQ_TSTAMP_MAX;
  }
}

void uvq_conn_handle_expiry(uvq_conn *conn, uvq_tstamp now) {
  int rv;
  switch (conn->stage) {
  case UVQ_STAGE_CLOSING:
  case UVQ_STAGE_DRAINING:
    if (now >= conn->close_deadline) {
      conn->stage = UVQ_STAGE_CLOSED;
      uvq_ep_mark(conn->ep, conn);
    } else {
      uvq_ep_timer_update(conn->ep, conn);
    }
    return;
  case UVQ_STAGE_CLOSED:
    return;
  default:
    break;
  }
  uvq_live_expiry(conn, now);
  if (conn->stage >= UVQ_STAGE_CLOSING) {
    return; /* marked: the next flush writes the close and re-arms */
  }
  if (conn->app_deadline <= now) {
    conn->app_deadline = UVQ_TSTAMP_MAX;
    if (conn->cb && conn->cb->on_timer &&
        !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) &&
        conn->cb->on_timer(conn, conn->user_data) != 0) {
      conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
    }
  }
  rv = 0;
  if (ngtcp2_conn_get_expiry(conn->ngconn) <= now) {
    rv = ngtcp2_conn_handle_expiry(conn->ngconn, now);
  }
  after_ngtcp2(conn, rv, now, 0);
}

uvq_tstamp uvq_conn_get_now(uvq_conn *conn) { return conn->ep->last_now; }

void uvq_conn_set_app_timer(uvq_conn *conn, uvq_tstamp deadline) {
  conn->app_deadline = deadline;
  uvq_ep_timer_update(conn->ep, conn);
}

/* ---- public connection API -------------------------------------------- */

void uvq_conn_get_info(uvq_conn *conn, uvq_conn_info *info) {
  ngtcp2_conn_info cs;
  memset(info, 0, sizeof(*info));
  if (uvq_tls_session_get_alpn(conn->tls, &info->alpn, &info->alpnlen) != 0) {
    info->alpn = NULL;
    info->alpnlen = 0;
  }
  info->server_name = conn->sni[0] ? conn->sni : NULL;
  info->version = ngtcp2_conn_get_negotiated_version(conn->ngconn);
  uvq_conn_sync_path(conn); /* not yet done for this receive batch */
  info->path = &conn->path;
  info->address_validated =
      ((conn->flags & UVQ_CONN_FLAG_ADDRESS_VALIDATED) != 0);
  info->stage = conn->stage;
  info->resumed = conn->is_server ? ((conn->flags & UVQ_CONN_FLAG_RESUMED) != 0)
                                  : gnutls_session_is_resumed(conn->tls) != 0;
  info->early_data = conn->early_data;
  ngtcp2_conn_get_conn_info(conn->ngconn, &cs);
  info->smoothed_rtt = cs.smoothed_rtt;
  info->rttvar = cs.rttvar;
  info->cwnd = cs.cwnd;
  info->bytes_in_flight = cs.bytes_in_flight;
  info->odcid = conn->odcid.data;
  info->odcidlen = conn->odcid.datalen;
  info->retry = conn->is_server ? ((conn->flags & UVQ_CONN_FLAG_VIA_RETRY) != 0)
                                : ngtcp2_conn_after_retry(conn->ngconn) != 0;
  if (conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) {
    info->cipher = gnutls_cipher_get_name(gnutls_cipher_get(conn->tls));
  }
}

void *uvq_conn_get_user_data(uvq_conn *conn) { return conn->user_data; }

void uvq_conn_set_user_data(uvq_conn *conn, void *user_data) {
  conn->user_data = user_data;
}

uvq_endpoint *uvq_conn_get_endpoint(uvq_conn *conn) { return conn->ep; }

uvq_stage uvq_conn_get_stage(uvq_conn *conn) { return conn->stage; }

int uvq_conn_is_server(uvq_conn *conn) { return conn->is_server; }

int uvq_conn_close(uvq_conn *conn, uint64_t app_error, const char *reason) {
  if (conn == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if ((conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return 0;
  }
  if (reason && reason[0]) {
    size_t len = strlen(reason);
    if (len > 1024) {
      len = 1024;
    }
    conn->close_reason = uvq_memdup(conn->ep->mem, reason, len);
    if (conn->close_reason == NULL) {
      return UVQ_ERR_NOMEM;
    }
    conn->close_reasonlen = len;
  }
  conn->flags |= UVQ_CONN_FLAG_CLOSE_REQUESTED;
  conn->close_app_error = app_error;
  uvq_ep_mark(conn->ep, conn);
  return 0;
}

/* DATAGRAM payloads we take always fit a 1200-byte packet: short header
 * with a 20-byte DCID, a 4-byte packet number, the AEAD tag, and the frame's
 * type and length varints. */
#define DGRAM_MAX_PAYLOAD (UVQ_MIN_INITIAL_DATAGRAM - 1 - 20 - 4 - 16 - 1 - 2)

size_t uvq_conn_get_max_datagram_size(uvq_conn *conn) {
  const ngtcp2_transport_params *rp;
  uint64_t frame_max;
  if (conn == NULL || !(conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return 0;
  }
  rp = ngtcp2_conn_get_remote_transport_params(conn->ngconn);
  if (rp == NULL || rp->max_datagram_frame_size <= 3) {
    return 0;
  }
  /* The frame's type byte and length varint count against the peer's
   * limit (RFC 9221 §3). */
  frame_max = rp->max_datagram_frame_size - 3;
  return frame_max < DGRAM_MAX_PAYLOAD ? (size_t)frame_max : DGRAM_MAX_PAYLOAD;
}

int uvq_conn_send_datagram(uvq_conn *conn, const uint8_t *data, size_t len,
                           uint64_t *pid) {
  uvq_dgram *d;
  size_t max;
  if (conn == NULL || (data == NULL && len > 0)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if ((conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return UVQ_ERR_CLOSED;
  }
  max = uvq_conn_get_max_datagram_size(conn);
  if (max == 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (len > max) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (conn->dgram_count >= conn->ep->settings.datagram_queue_len) {
    return UVQ_ERR_QUEUE_FULL;
  }
  d = uvq_malloc(conn->ep->mem, sizeof(*d) + len);
  if (d == NULL) {
    return UVQ_ERR_NOMEM;
  }
  d->next = NULL;
  d->id = conn->dgram_next_id++;
  d->len = len;
  if (len) {
    memcpy(d->data, data, len);
  }
  if (pid) {
    *pid = d->id;
  }
  if (conn->dgram_tail) {
    conn->dgram_tail->next = d;
  } else {
    conn->dgram_head = d;
  }
  conn->dgram_tail = d;
  conn->dgram_count++;
  uvq_ep_mark(conn->ep, conn);
  return 0;
}

int uvq_conn_migrate(uvq_conn *conn, const uvq_addr *new_local,
                     int nat_rebinding_style, uvq_tstamp now) {
  uvq_path np;
  ngtcp2_path npath;
  int rv;

  if (conn == NULL || new_local == NULL || conn->is_server ||
      new_local->len == 0 || new_local->len > sizeof(new_local->ss)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if ((conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return UVQ_ERR_CLOSED;
  }
  uvq_conn_sync_path(conn);
  if (new_local->ss.ss_family != conn->path.local.ss.ss_family ||
      uvq_addr_eq(new_local, &conn->path.local)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  now = uvq_ep_now(conn->ep, now);
  np.local = *new_local;
  np.remote = conn->path.remote;
  uvq_conn_to_ngtcp2_path(&npath, &np);
  if (nat_rebinding_style) {
    /* What a NAT rebinding looks like from the server: same CID, a new
     * address. The server validates the path; we just move. */
    if (!(conn->flags & UVQ_CONN_FLAG_HANDSHAKE_CONFIRMED)) {
      return UVQ_ERR_INVALID_STATE;
    }
    ngtcp2_conn_set_local_addr(conn->ngconn, &npath.local);
    /* The server learns the new address only from a packet of ours, and
     * in a download we may have nothing to send while its packets still
     * reach the old address: take those as received on the new one, so
     * our ACKs leave from it (uvq_conn_recv). */
    conn->rebind_old_local = conn->path.local;
    conn->flags |= UVQ_CONN_FLAG_REBIND_PENDING;
  } else {
    /* ngtcp2 copies the path; the old one stays current until the peer
     * answers the PATH_CHALLENGE. */
    rv = ngtcp2_conn_initiate_migration(conn->ngconn, &npath, now);
    switch (rv) {
    case 0:
      break;
    case NGTCP2_ERR_INVALID_STATE:
    case NGTCP2_ERR_CONN_ID_BLOCKED:
      return UVQ_ERR_INVALID_STATE;
    case NGTCP2_ERR_INVALID_ARGUMENT:
      return UVQ_ERR_INVALID_ARGUMENT;
    case NGTCP2_ERR_NOMEM:
      return UVQ_ERR_NOMEM;
    default:
      return UVQ_ERR_INTERNAL;
    }
  }
  uvq_conn_sync_path(conn);
  uvq_ep_mark(conn->ep, conn);
  uvq_ep_timer_update(conn->ep, conn);
  return 0;
}

int uvq_conn_update_key(uvq_conn *conn, uvq_tstamp now) {
  int rv;
  if (conn == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if ((conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return UVQ_ERR_CLOSED;
  }
  rv = ngtcp2_conn_initiate_key_update(conn->ngconn, uvq_ep_now(conn->ep, now));
  if (rv != 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  uvq_ep_mark(conn->ep, conn);
  return 0;
}

int uvq_conn_open_stream(uvq_conn *conn, int bidi, int64_t *pstream_id,
                         void *stream_user_data) {
  uvq_stream *s;
  int64_t id;
  int rv;

  if (conn == NULL || pstream_id == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if ((conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return UVQ_ERR_CLOSED;
  }
  /* Before the handshake completes: a client only for 0-RTT (ngtcp2 has
   * the server's remembered limits, uvq_resume_apply); a server once the
   * ClientHello is processed (it knows the client's limits), so it can
   * answer 0-RTT requests in 0.5-RTT data — an HTTP/3 server needs its
   * control and QPACK streams for that. */
  if (!(conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) &&
      !(conn->is_server ? ((conn->flags & UVQ_CONN_FLAG_ACCEPTED) != 0)
                        : conn->early_data == UVQ_EARLY_DATA_ATTEMPTED)) {
    return UVQ_ERR_INVALID_STATE;
  }
  rv = bidi ? ngtcp2_conn_open_bidi_stream(conn->ngconn, &id, NULL)
            : ngtcp2_conn_open_uni_stream(conn->ngconn, &id, NULL);
  if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
    return UVQ_ERR_STREAM_LIMIT;
  }
  if (rv != 0) {
    return rv == NGTCP2_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INTERNAL;
  }
  rv = uvq_stream_create(conn, id, stream_user_data, &s);
  if (rv != 0) {
    ngtcp2_conn_shutdown_stream(conn->ngconn, 0, id, 0);
    return rv;
  }
  ngtcp2_conn_set_stream_user_data(conn->ngconn, id, s);
  *pstream_id = id;
  return 0;
}
