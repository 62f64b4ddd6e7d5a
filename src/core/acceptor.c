/*
 * The acceptor: turns valid client Initials into server connections, and
 * answers statelessly where it must — Version Negotiation, Retry, and
 * CONNECTION_CLOSE for refused connections and invalid Retry tokens.
 */
#include <gnutls/crypto.h>
#include <string.h>

#include "core/acceptor.h"
#include "core/budget.h"
#include "core/cid.h"
#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/router.h"
#include "core/sources.h"
#include "core/token.h"

void uvq_acceptor_send_version_negotiation(uvq_endpoint *ep,
                                           const uvq_path *path,
                                           const uvq_pkt_view *v) {
  uint8_t buf[UVQ_MAX_DATAGRAM];
  uint8_t unused;
  /* Every version we accept, in our order of preference, plus a greased
   * one (RFC 9000 §6.3) so clients do not ossify on the list. */
  uint32_t sv[UVQ_MAX_VERSIONS + 1];
  size_t nsv = ep->settings.quic_versionslen;
  ngtcp2_ssize n;

  if (uvq_ep_rand(ep, &unused, 1, 0) != 0) {
    unused = 0;
  }
  memcpy(sv, ep->settings.quic_versions, nsv * sizeof(sv[0]));
  sv[nsv++] = 0x0a0a0a0au | ((uint32_t)(unused & 0xf0) << 24) |
              ((uint32_t)(unused & 0xf0) << 8);
  n = ngtcp2_pkt_write_version_negotiation(buf, sizeof(buf), unused, v->scid,
                                           v->scidlen, v->dcid, v->dcidlen, sv,
                                           nsv);
  if (n < 0) {
    uvq_ep_drop(ep, UVQ_DROP_MALFORMED);
    return;
  }
  uvq_ep_queue_stateless(ep, path, buf, (size_t)n,
                         &ep->stats.version_negotiations_sent);
}

/* Closes a client's attempt without creating state. */
static void send_stateless_close(uvq_endpoint *ep, const uvq_path *path,
                                 const ngtcp2_pkt_hd *hd, uint64_t code) {
  uint8_t buf[UVQ_MAX_DATAGRAM];
  ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(
      buf, sizeof(buf), hd->version, &hd->scid, &hd->dcid, code, NULL, 0);
  if (n < 0) {
    uvq_ep_drop(ep, UVQ_DROP_MALFORMED);
    return;
  }
  uvq_ep_queue_stateless(ep, path, buf, (size_t)n,
                         &ep->stats.stateless_closes_sent);
}

static void send_retry(uvq_endpoint *ep, const uvq_path *path,
                       const ngtcp2_pkt_hd *hd) {
  uint8_t token[UVQ_TOKEN_MAXLEN];
  uint8_t buf[UVQ_MAX_DATAGRAM];
  ngtcp2_cid rscid;
  ssize_t toklen;
  ngtcp2_ssize n;

  if (uvq_cid_gen_generate(&ep->cidgen, &rscid) != 0) {
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  toklen = uvq_token_seal_retry(&ep->tokens, token, sizeof(token), hd->version,
                                (const struct sockaddr *)&path->remote.ss,
                                path->remote.len, &hd->dcid, &rscid,
                                uvq_ep_wall_time(ep));
  if (toklen < 0) {
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  n = ngtcp2_crypto_write_retry(buf, sizeof(buf), hd->version, &hd->scid,
                                &rscid, &hd->dcid, token, (size_t)toklen);
  if (n < 0) {
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  uvq_ep_queue_stateless(ep, path, buf, (size_t)n, &ep->stats.retries_sent);
}

static int want_retry(uvq_endpoint *ep) {
  switch (ep->settings.retry) {
  case UVQ_RETRY_ALWAYS:
    return 1;
  case UVQ_RETRY_AUTO:
    /* Under memory pressure a new connection closes an idle one
     * (uvq_budget_admit): only once its address is proven, so spoofed
     * Initials cannot close established connections. */
    return ep->stats.handshakes_in_flight >=
               ep->settings.retry_auto_threshold ||
           uvq_budget_pressed(ep);
  default:
    return 0;
  }
}

void uvq_acceptor_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                       const uvq_pkt_view *v, const uint8_t *data, size_t len,
                       uvq_tstamp now) {
  ngtcp2_pkt_hd hd;
  ngtcp2_cid odcid, scid, *retry_scid = NULL;
  const uint8_t *token = NULL;
  size_t tokenlen = 0;
  int validated = 0;
  uvq_conn_params cp = {0};
  uvq_conn *conn;
  int rv;

  (void)v;
  memset(&hd, 0, sizeof(hd));
  rv = ngtcp2_accept(&hd, data, len);
  if (rv != 0 && hd.type == NGTCP2_PKT_0RTT) {
    /* 0-RTT ahead of its Initial (ngtcp2 refuses it with
     * INVALID_ARGUMENT): never answer 0-RTT with Retry (the client could
     * not match it to an Initial); count it apart from garbage. */
    uvq_ep_drop(ep, UVQ_DROP_0RTT_UNKNOWN);
    return;
  }
  if (rv != 0 || hd.type != NGTCP2_PKT_INITIAL) {
    uvq_ep_drop(ep, UVQ_DROP_MALFORMED);
    return;
  }
  if (ep->closing_all || (ep->settings.max_connections &&
                          ep->nconns >= ep->settings.max_connections)) {
    ep->stats.initials_refused++;
    send_stateless_close(ep, path, &hd, NGTCP2_CONNECTION_REFUSED);
    return;
  }

  odcid = hd.dcid;
  if (hd.tokenlen > 0) {
    uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_MALFORMED;
    switch (uvq_token_type(hd.token, hd.tokenlen)) {
    case UVQ_TOKEN_TYPE_RETRY:
      rv = uvq_token_open_retry(
          &ep->tokens, hd.token, hd.tokenlen, hd.version,
          (const struct sockaddr *)&path->remote.ss, path->remote.len, &hd.dcid,
          uvq_ep_wall_time(ep), ep->settings.retry_token_lifetime, &odcid,
          &reason);
      if (rv != 0) {
        /* RFC 9000 §8.1.2: a bad Retry token closes with INVALID_TOKEN. */
        ep->stats.tokens_rejected[reason]++;
        ep->stats.initials_refused++;
        send_stateless_close(ep, path, &hd, NGTCP2_INVALID_TOKEN);
        return;
      }
      validated = 1;
      retry_scid = &hd.dcid;
      break;
    case UVQ_TOKEN_TYPE_NEW:
      rv = uvq_token_open_new(&ep->tokens, hd.token, hd.tokenlen, hd.version,
                              (const struct sockaddr *)&path->remote.ss,
                              path->remote.len, uvq_ep_wall_time(ep),
                              ep->settings.new_token_lifetime, &reason);
      if (rv != 0) {
        /* RFC 9000 §8.1.3: a bad NEW_TOKEN token is treated as absent;
         * so is one issued on another QUIC version (RFC 9369 §5). */
        ep->stats.tokens_rejected[reason]++;
      } else {
        validated = 1;
      }
      break;
    default:
      ep->stats.tokens_rejected[UVQ_TOKEN_REJECT_MALFORMED]++;
      break;
    }
    if (validated) {
      token = hd.token;
      tokenlen = hd.tokenlen;
    }
  }

  if (ep->settings.max_handshakes &&
      ep->stats.handshakes_in_flight >= ep->settings.max_handshakes) {
    /* Full: an unproven address may prove itself with a Retry (stateless,
     * so it costs nothing); nothing else gets in. */
    if (!validated && ep->settings.retry != UVQ_RETRY_OFF) {
      send_retry(ep, path, &hd);
    } else {
      ep->stats.refused_handshakes++;
      ep->stats.initials_refused++;
      send_stateless_close(ep, path, &hd, NGTCP2_CONNECTION_REFUSED);
    }
    return;
  }
  if (!validated && want_retry(ep)) {
    send_retry(ep, path, &hd);
    return;
  }
  if (uvq_sources_admit(ep, &path->remote) != 0 ||
      uvq_budget_admit(ep, now) != 0) {
    ep->stats.initials_refused++;
    send_stateless_close(ep, path, &hd, NGTCP2_CONNECTION_REFUSED);
    return;
  }

  if (uvq_cid_gen_generate(&ep->cidgen, &scid) != 0) {
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  cp.is_server = 1;
  cp.dcid = &hd.scid;
  cp.scid = &scid;
  cp.path = path;
  cp.version = hd.version;
  cp.odcid = &odcid;
  cp.retry_scid = retry_scid;
  cp.token = token;
  cp.tokenlen = tokenlen;
  rv = uvq_conn_new(&conn, ep, &cp, now);
  if (rv != 0) {
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  uvq_conn_flag_put(conn, UVQ_CONN_FLAG_ADDRESS_VALIDATED, validated);
  uvq_conn_flag_put(conn, UVQ_CONN_FLAG_VIA_RETRY, retry_scid != NULL);
  /* The map holds, while the handshake runs, the DCID this Initial used
   * (the Retry SCID after a Retry) and the client's original DCID, so
   * retransmitted Initials reach this connection. */
  conn->client_dcid = hd.dcid;
  if (uvq_cid_map_insert_cid(&ep->cids, &hd.dcid, conn) == 0) {
    conn->flags |= UVQ_CONN_FLAG_CLIENT_DCID_MAPPED;
  }
  if (retry_scid && uvq_cid_map_insert_cid(&ep->cids, &odcid, conn) == 0) {
    conn->flags |= UVQ_CONN_FLAG_ODCID_MAPPED;
  }
  if (!(conn->flags & UVQ_CONN_FLAG_CLIENT_DCID_MAPPED)) {
    /* Another connection owns that DCID already: a collision we cannot
     * route around. Refuse rather than misroute. */
    uvq_conn_del(conn);
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  if (uvq_sources_add(ep, conn) != 0) {
    uvq_conn_del(conn);
    uvq_ep_drop(ep, UVQ_DROP_ACCEPT_FAILED);
    return;
  }
  ep->stats.initials_accepted++;
  ep->stats.handshakes_in_flight++;
  conn->flags |= UVQ_CONN_FLAG_COUNTED_IN_FLIGHT;
  uvq_conn_recv(conn, path, ecn, data, len, now);
}
