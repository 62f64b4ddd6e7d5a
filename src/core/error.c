#include <stdarg.h>
#include <stdio.h>

#include "core/error.h"
#include "uvquic/uvquic.h"

const char *uvq_strerror(int err) {
  switch (err) {
  case UVQ_OK:
    return "success";
  case UVQ_ERR_INVALID_ARGUMENT:
    return "invalid argument";
  case UVQ_ERR_NOMEM:
    return "out of memory";
  case UVQ_ERR_INVALID_STATE:
    return "invalid state";
  case UVQ_ERR_CLOSED:
    return "connection closed";
  case UVQ_ERR_CID_IN_USE:
    return "connection ID already in use";
  case UVQ_ERR_STREAM_LIMIT:
    return "stream limit reached";
  case UVQ_ERR_STREAM_NOT_FOUND:
    return "stream not found";
  case UVQ_ERR_STREAM_SHUT:
    return "stream send side already shut";
  case UVQ_ERR_TLS_CONFIG:
    return "TLS configuration error";
  case UVQ_ERR_CERT_FILE:
    return "cannot load certificate file";
  case UVQ_ERR_KEY_FILE:
    return "cannot load private key file";
  case UVQ_ERR_CA_FILE:
    return "cannot load CA file";
  case UVQ_ERR_TLS:
    return "TLS handshake failure";
  case UVQ_ERR_HANDSHAKE_TIMEOUT:
    return "handshake timed out";
  case UVQ_ERR_IDLE_TIMEOUT:
    return "idle timeout";
  case UVQ_ERR_TLS_ALERT:
    return "TLS alert";
  case UVQ_ERR_PEER_REFUSED:
    return "connection refused by peer";
  case UVQ_ERR_REFUSED:
    return "connection refused";
  case UVQ_ERR_VERSION_NEGOTIATION:
    return "version negotiation failed";
  case UVQ_ERR_INVALID_TOKEN:
    return "invalid address validation token";
  case UVQ_ERR_PEER_TRANSPORT:
    return "peer closed with a transport error";
  case UVQ_ERR_PROTOCOL:
    return "protocol violation";
  case UVQ_ERR_STATELESS_RESET:
    return "stateless reset received";
  case UVQ_ERR_CALLBACK:
    return "application callback failed";
  case UVQ_ERR_SHUTDOWN:
    return "endpoint shutting down";
  case UVQ_ERR_IO:
    return "I/O error";
  case UVQ_ERR_ADDRESS:
    return "bad address";
  case UVQ_ERR_INTERNAL:
    return "internal error";
  case UVQ_ERR_CONNECTION_LIMIT:
    return "connection limit reached";
  case UVQ_ERR_CERT_VERIFY:
    return "peer certificate verification failed";
  case UVQ_ERR_QUEUE_FULL:
    return "queue full";
  case UVQ_ERR_PATH_STALLED:
    return "no viable path (the peer's new path could not be validated)";
  case UVQ_ERR_STALLED:
    return "nothing received for the stall timeout";
  case UVQ_ERR_QLOG_UNSAFE:
    return "server transport parameters refused: too large for ngtcp2's qlog "
           "(CVE-2026-40170)";
  case UVQ_ERR_EVICTED:
    return "idle connection closed under memory pressure";
  case UVQ_ERR_PORT_UNREACHABLE:
    return "connection refused (ICMP port unreachable)";
  case UVQ_ERR_HOST_UNREACHABLE:
    return "host unreachable (ICMP)";
  default:
    return "unknown error";
  }
}

int uvq_err_is_fatal(int err) {
  switch (err) {
  case UVQ_OK:
  case UVQ_ERR_INVALID_ARGUMENT:
  case UVQ_ERR_INVALID_STATE:
  case UVQ_ERR_STREAM_LIMIT:
  case UVQ_ERR_STREAM_NOT_FOUND:
  case UVQ_ERR_STREAM_SHUT:
  case UVQ_ERR_CID_IN_USE:
  case UVQ_ERR_CONNECTION_LIMIT:
  case UVQ_ERR_QUEUE_FULL:
    return 0;
  default:
    return 1;
  }
}

const char *uvq_drop_reason_name(uvq_drop_reason r) {
  static const char *const names[UVQ_DROP_REASON_COUNT] = {
      "truncated",
      "malformed",
      "unknown_cid",
      "unsupported_version",
      "initial_too_small",
      "unexpected_long",
      "0rtt_unknown",
      "client_unknown",
      "conn_rejected",
      "draining",
      "stateless_queue_full",
      "send_error",
      "accept_failed",
  };
  if ((unsigned)r >= UVQ_DROP_REASON_COUNT) {
    return "unknown";
  }
  return names[r];
}

void uvq_set_errbuf(char *errbuf, size_t errbuflen, const char *fmt, ...) {
  va_list ap;

  if (errbuf == NULL || errbuflen == 0) {
    return;
  }
  va_start(ap, fmt);
  vsnprintf(errbuf, errbuflen, fmt, ap);
  va_end(ap);
}
