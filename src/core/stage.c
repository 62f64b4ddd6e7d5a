/*
 * Connection stages: Handshake → Running → Closing/Draining → Closed.
 * Every way a connection ends goes through here and fills its close info;
 * on_closed fires from the next flush, exactly once.
 */
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/qlog_guard.h"
#include "core/sources.h"
#include "core/stage.h"
#include "core/tls.h"

static uvq_tstamp three_pto(uvq_conn *conn) {
  return 3 * ngtcp2_conn_get_pto(conn->ngconn);
}

static void note_closed(uvq_conn *conn) {
  if (conn->flags & UVQ_CONN_FLAG_COUNTED_IN_FLIGHT) {
    conn->flags &= ~UVQ_CONN_FLAG_COUNTED_IN_FLIGHT;
    conn->ep->stats.handshakes_in_flight--;
  }
  uvq_sources_handshake_done(conn);
  conn->ci.handshake_completed =
      ((conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) != 0);
  uvq_metrics_conn_closed(conn);
  /* Only connections the application knows of get on_closed. */
  if (conn->cb && !(conn->flags & UVQ_CONN_FLAG_CLOSED_FIRED)) {
    conn->flags |= UVQ_CONN_FLAG_CLOSED_PENDING;
  }
  uvq_ep_mark(conn->ep, conn);
}

void uvq_stage_finish(uvq_conn *conn, int error, uvq_close_origin origin) {
  if (conn->stage >= UVQ_STAGE_CLOSING) {
    conn->stage = UVQ_STAGE_CLOSED;
    return;
  }
  conn->ci.error = error;
  conn->ci.origin = origin;
  conn->stage = UVQ_STAGE_CLOSED;
  note_closed(conn);
}

/* Writes the CONNECTION_CLOSE for |ccerr| and enters the closing period.
 * If no packet can be built (no keys yet), the connection just ends. */
static void enter_closing(uvq_conn *conn, const ngtcp2_ccerr *ccerr,
                          uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_ssize n;
  size_t maxlen;
  uint8_t *buf;

  conn->stage = UVQ_STAGE_CLOSING;
  note_closed(conn);
  buf = uvq_malloc(ep->mem, UVQ_MAX_DATAGRAM);
  if (buf == NULL) {
    conn->stage = UVQ_STAGE_CLOSED;
    return;
  }
  ngtcp2_path_storage_zero(&ps);
  maxlen = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn->ngconn);
  n = ngtcp2_conn_write_connection_close(
      conn->ngconn, &ps.path, &pi, buf,
      maxlen < UVQ_MAX_DATAGRAM ? maxlen : UVQ_MAX_DATAGRAM, ccerr, now);
  if (n <= 0) {
    uvq_free(ep->mem, buf);
    conn->stage = UVQ_STAGE_CLOSED;
    return;
  }
  conn->close_pkt = buf;
  conn->close_pktlen = (size_t)n;
  conn->flags |= UVQ_CONN_FLAG_CLOSE_RESEND;
  conn->close_deadline = now + three_pto(conn);
}

static void set_reason(uvq_conn *conn, const uint8_t *reason, size_t len) {
  if (len > sizeof(conn->ci_reason)) {
    len = sizeof(conn->ci_reason);
  }
  if (len) {
    memcpy(conn->ci_reason, reason, len);
  }
  conn->ci.reason = conn->ci_reason;
  conn->ci.reasonlen = len;
}

/* Alerts we send because the peer's certificate is missing or does not
 * verify (RFC 8446 §6.2). ngtcp2_crypto_gnutls does not record the GnuTLS
 * error (1.11: ngtcp2_crypto_read_write_crypto_data sends the alert and
 * returns -1 without ngtcp2_conn_set_tls_error, so
 * ngtcp2_conn_get_tls_error stays 0), so the alert is what tells a
 * certificate failure from other handshake failures. */
static int is_cert_alert(uint8_t alert) {
  switch (alert) {
  case 42:  /* bad_certificate */
  case 43:  /* unsupported_certificate */
  case 44:  /* certificate_revoked */
  case 45:  /* certificate_expired */
  case 46:  /* certificate_unknown */
  case 48:  /* unknown_ca */
  case 116: /* certificate_required */
    return 1;
  default:
    return 0;
  }
}

void uvq_stage_fail(uvq_conn *conn, int liberr, uvq_tstamp now) {
  ngtcp2_ccerr ccerr;
  const char *reason = NULL;
  uint8_t alert;

  if (conn->stage >= UVQ_STAGE_CLOSING) {
    return;
  }
  ngtcp2_ccerr_default(&ccerr);
  conn->ci.origin = UVQ_CLOSE_LOCAL;
  conn->ci.type = UVQ_CLOSE_TYPE_TRANSPORT;
  alert = ngtcp2_conn_get_tls_alert(conn->ngconn);
  if (conn->flags & UVQ_CONN_FLAG_REFUSED) {
    ngtcp2_ccerr_set_transport_error(&ccerr, NGTCP2_CONNECTION_REFUSED, NULL,
                                     0);
    conn->ci.error = UVQ_ERR_REFUSED;
  } else if (conn->flags & UVQ_CONN_FLAG_NOMEM) {
    /* Our own callback could not allocate: say so, not "TLS failure". */
    ngtcp2_ccerr_set_transport_error(&ccerr, NGTCP2_INTERNAL_ERROR, NULL, 0);
    conn->ci.error = UVQ_ERR_NOMEM;
  } else if (conn->flags & UVQ_CONN_FLAG_TP_TOO_LARGE) {
    /* Our own parameters could not be sent: nothing the client did. */
    reason = "transport parameters too large";
    ngtcp2_ccerr_set_transport_error(&ccerr, NGTCP2_INTERNAL_ERROR,
                                     (const uint8_t *)reason, strlen(reason));
    conn->ci.error = UVQ_ERR_INTERNAL;
  } else if (conn->flags & UVQ_CONN_FLAG_CALLBACK_FAILED) {
    ngtcp2_ccerr_set_transport_error(&ccerr, NGTCP2_INTERNAL_ERROR, NULL, 0);
    conn->ci.error = UVQ_ERR_CALLBACK;
  } else if (liberr == NGTCP2_ERR_TRANSPORT_PARAM &&
             uvq_tls_session_tp_refused(conn->tls)) {
    /* The qlog guard refused the server's parameters (qlog_guard.h). */
    reason = UVQ_QLOG_TP_REASON;
    ngtcp2_ccerr_set_transport_error(&ccerr, NGTCP2_TRANSPORT_PARAMETER_ERROR,
                                     (const uint8_t *)reason, strlen(reason));
    conn->ci.error = UVQ_ERR_QLOG_UNSAFE;
  } else if (liberr == NGTCP2_ERR_VERSION_NEGOTIATION_FAILURE ||
             ngtcp2_conn_get_tls_error(conn->ngconn) ==
                 NGTCP2_ERR_VERSION_NEGOTIATION_FAILURE) {
    /* The server's version_information contradicts the Version
     * Negotiation we acted on (a forged one: a downgrade), or its choice
     * (RFC 9368 §4, §6): VERSION_NEGOTIATION_ERROR. */
    ngtcp2_ccerr_set_liberr(&ccerr, NGTCP2_ERR_VERSION_NEGOTIATION_FAILURE,
                            NULL, 0);
    conn->ci.error = UVQ_ERR_VERSION_NEGOTIATION;
  } else if ((liberr == NGTCP2_ERR_CRYPTO ||
              liberr == NGTCP2_ERR_CALLBACK_FAILURE) &&
             alert) {
    ngtcp2_ccerr_set_tls_alert(&ccerr, alert, NULL, 0);
    conn->ci.tls_alert = alert;
    conn->ci.error = ngtcp2_conn_get_tls_error(conn->ngconn) ==
                                 GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR ||
                             is_cert_alert(alert)
                         ? UVQ_ERR_CERT_VERIFY
                         : UVQ_ERR_TLS_ALERT;
  } else if (liberr == NGTCP2_ERR_NOMEM) {
    ngtcp2_ccerr_set_liberr(&ccerr, liberr, NULL, 0);
    conn->ci.error = UVQ_ERR_NOMEM;
  } else if (liberr == NGTCP2_ERR_CRYPTO ||
             liberr == NGTCP2_ERR_CALLBACK_FAILURE) {
    ngtcp2_ccerr_set_liberr(&ccerr, liberr, NULL, 0);
    conn->ci.error = UVQ_ERR_TLS;
  } else {
    ngtcp2_ccerr_set_liberr(&ccerr, liberr, NULL, 0);
    conn->ci.error = UVQ_ERR_PROTOCOL;
  }
  conn->ci.code = ccerr.error_code;
  set_reason(conn, (const uint8_t *)reason, reason ? strlen(reason) : 0);
  enter_closing(conn, &ccerr, now);
}

void uvq_stage_close_app(uvq_conn *conn, uvq_tstamp now) {
  ngtcp2_ccerr ccerr;

  if (conn->stage >= UVQ_STAGE_CLOSING) {
    return;
  }
  ngtcp2_ccerr_default(&ccerr);
  ngtcp2_ccerr_set_application_error(&ccerr, conn->close_app_error,
                                     conn->close_reason, conn->close_reasonlen);
  conn->ci.error = 0;
  conn->ci.origin = UVQ_CLOSE_LOCAL;
  conn->ci.type = UVQ_CLOSE_TYPE_APPLICATION;
  conn->ci.code = conn->close_app_error;
  set_reason(conn, conn->close_reason, conn->close_reasonlen);
  enter_closing(conn, &ccerr, now);
}

void uvq_stage_close_transport(uvq_conn *conn, int error, uint64_t code,
                               const char *reason, uvq_tstamp now) {
  ngtcp2_ccerr ccerr;
  size_t len = reason ? strlen(reason) : 0;

  if (conn->stage >= UVQ_STAGE_CLOSING) {
    return;
  }
  ngtcp2_ccerr_default(&ccerr);
  ngtcp2_ccerr_set_transport_error(&ccerr, code, (const uint8_t *)reason, len);
  conn->ci.error = error;
  conn->ci.origin = UVQ_CLOSE_LOCAL;
  conn->ci.type = UVQ_CLOSE_TYPE_TRANSPORT;
  conn->ci.code = code;
  set_reason(conn, (const uint8_t *)reason, len);
  enter_closing(conn, &ccerr, now);
}

void uvq_stage_drain(uvq_conn *conn, uvq_tstamp now) {
  const ngtcp2_ccerr *ccerr;

  if (conn->stage >= UVQ_STAGE_CLOSING) {
    return;
  }
  conn->stage = UVQ_STAGE_DRAINING;
  conn->close_deadline = now + three_pto(conn);
  conn->ci.origin = UVQ_CLOSE_PEER;
  if (conn->ci.error == UVQ_ERR_STATELESS_RESET) {
    conn->ci.type = UVQ_CLOSE_TYPE_NONE;
    set_reason(conn, NULL, 0);
    note_closed(conn);
    return;
  }
  ccerr = ngtcp2_conn_get_ccerr(conn->ngconn);
  conn->ci.code = ccerr->error_code;
  set_reason(conn, ccerr->reason, ccerr->reasonlen);
  if (ccerr->type == NGTCP2_CCERR_TYPE_APPLICATION) {
    conn->ci.type = UVQ_CLOSE_TYPE_APPLICATION;
    conn->ci.error = 0;
  } else {
    conn->ci.type = UVQ_CLOSE_TYPE_TRANSPORT;
    if (ccerr->error_code == NGTCP2_NO_ERROR) {
      conn->ci.error = 0;
    } else if (ccerr->error_code == NGTCP2_CONNECTION_REFUSED) {
      conn->ci.error = UVQ_ERR_PEER_REFUSED;
    } else if (ccerr->error_code == NGTCP2_INVALID_TOKEN) {
      conn->ci.error = UVQ_ERR_INVALID_TOKEN;
    } else if ((ccerr->error_code & ~(uint64_t)0xff) == NGTCP2_CRYPTO_ERROR) {
      conn->ci.error = UVQ_ERR_TLS_ALERT;
      conn->ci.tls_alert = (uint8_t)(ccerr->error_code & 0xff);
    } else {
      conn->ci.error = UVQ_ERR_PEER_TRANSPORT;
    }
  }
  note_closed(conn);
}

void uvq_stage_closing_recv(uvq_conn *conn) {
  /* Answer with the cached CONNECTION_CLOSE, exponentially less often
   * (1st, 2nd, 4th, 8th ... packet) so a flood cannot make us a reflector. */
  conn->closing_rx++;
  if ((conn->closing_rx & (conn->closing_rx - 1)) == 0) {
    conn->flags |= UVQ_CONN_FLAG_CLOSE_RESEND;
    uvq_ep_mark(conn->ep, conn);
  } else {
    uvq_ep_drop(conn->ep, UVQ_DROP_DRAINING);
  }
}
