/*
 * The connector: client connections. Every connection of a client endpoint
 * is routed by its own SCIDs, so one socket carries any number of them.
 */
#include "core/cid.h"
#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/resume.h"
#include "core/router.h"
#include "core/settings.h"
#include "core/tls.h"

int uvq_endpoint_connect(uvq_endpoint *ep, const uvq_connect_params *params,
                         uvq_tstamp now, uvq_conn **pconn) {
  ngtcp2_cid dcid, scid;
  const uint8_t *resumption;
  uint32_t version;
  uvq_conn *conn;
  uvq_conn_params cp = {0};
  int early_data;
  int rv;

  if (ep == NULL || params == NULL || params->version < 1 ||
      params->version > UVQ_CONNECT_PARAMS_VERSION || params->path == NULL ||
      !uvq_app_callbacks_ok(params->callbacks) || ep->is_server) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (ep->closing_all) {
    return UVQ_ERR_SHUTDOWN;
  }
  now = uvq_ep_now(ep, now);
  if (ep->settings.max_connections &&
      ep->nconns >= ep->settings.max_connections) {
    return UVQ_ERR_CONNECTION_LIMIT;
  }
  rv = uvq_ep_random_cid(ep, &dcid, UVQ_CLIENT_FIRST_DCIDLEN);
  if (rv != 0) {
    return UVQ_ERR_INTERNAL;
  }
  rv = UVQ_ERR_CID_IN_USE;
  for (int i = 0; i < 4 && rv == UVQ_ERR_CID_IN_USE; i++) {
    rv = uvq_cid_gen_generate(&ep->cidgen, &scid);
    if (rv != 0) {
      return rv;
    }
    rv = uvq_cid_map_find_cid(&ep->cids, &scid) ? UVQ_ERR_CID_IN_USE : 0;
  }
  if (rv != 0) {
    return rv;
  }
  /* Tickets are per version (RFC 9369 §5): start in the version of the
   * resumption blob's connection if we speak it, or leave the blob out. */
  version = ep->settings.client_chosen_version;
  resumption = params->resumption;
  if (resumption != NULL) {
    uint32_t rv_version = uvq_resume_version(resumption, params->resumptionlen);
    if (rv_version == 0) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    if (uvq_version_ok(&ep->settings, rv_version)) {
      version = rv_version;
    } else {
      ep->stats.resumption_version_mismatch++;
      resumption = NULL;
    }
  }
  /* GnuTLS offers early data on any ticket once the session allows it:
   * allow it only for a ticket that grants it (RFC 8446 §4.2.10). */
  early_data = resumption && params->early_data &&
               uvq_resume_grants_early_data(resumption, params->resumptionlen);
  cp.is_server = 0;
  cp.dcid = &dcid;
  cp.scid = &scid;
  cp.path = params->path;
  cp.version = version;
  cp.token = params->token;
  cp.tokenlen = params->tokenlen;
  cp.server_name = params->server_name;
  cp.tls_opts = early_data ? UVQ_TLS_SESSION_EARLY_DATA : 0u;
  rv = uvq_conn_new(&conn, ep, &cp, now);
  if (rv != 0) {
    return rv;
  }
  if (resumption != NULL) {
    /* Before the first flush: the ClientHello is built then. */
    rv = uvq_resume_apply(conn, resumption, params->resumptionlen, early_data);
    if (rv != 0) {
      uvq_conn_del(conn);
      return rv;
    }
  }
  conn->cb = params->callbacks;
  conn->user_data = params->user_data;
  ep->stats.handshakes_in_flight++;
  conn->flags |= UVQ_CONN_FLAG_COUNTED_IN_FLIGHT;
  uvq_ep_mark(ep, conn);
  uvq_ep_timer_update(ep, conn);
  if (pconn) {
    *pconn = conn;
  }
  return 0;
}
