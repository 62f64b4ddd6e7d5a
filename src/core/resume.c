/*
 * Session resumption and 0-RTT for clients (RFC 9001 §4.6): the opaque
 * blob on_session_ticket hands out and uvq_connect_params.resumption takes
 * back. It holds the GnuTLS session data (the ticket and its secrets) and
 * the server transport parameters that bound 0-RTT (RFC 9000 §7.4.1), as
 * ngtcp2_conn_encode_0rtt_transport_params encodes them.
 *
 * Layout, integers big-endian:
 *   "uvqr" | version (3) | flags (1) | u16 t | t bytes of transport
 *   parameters | u32 n | n bytes of gnutls_session_get_data2 output
 * flags: BLOB_EARLY_DATA if the server's NewSessionTicket granted early
 * data (ticket_scan.h); other bits are written 0 and ignored when read.
 * Version 2 is the same without the flags byte: it is still read, as a
 * ticket that grants no early data (it did not say, and offering early
 * data on a ticket without it is what RFC 8446 §4.2.10 forbids). Version
 * 1 held 8 x u64 parameters of our own; it is not read.
 */
#include <string.h>

#include "core/core.h"

#define BLOB_MAGIC "uvqr"
#define BLOB_VERSION 3
#define BLOB_EARLY_DATA 0x01u
/* Room for the encoded 0-RTT parameters: 8 varint parameters of at most
 * 2 + 1 + 8 bytes each take 88; 0-RTT never needs more. */
#define BLOB_MAX_PARAMS 128

int uvq_resume_encode(uvq_conn *conn, uint8_t **pblob, size_t *plen) {
  gnutls_datum_t sd = {NULL, 0};
  uint8_t tp[BLOB_MAX_PARAMS];
  ngtcp2_ssize tplen;
  uint8_t *blob, *p;
  size_t len;

  if (ngtcp2_conn_get_remote_transport_params(conn->q) == NULL) {
    return UVQ_ERR_INVALID_STATE;
  }
  tplen = ngtcp2_conn_encode_0rtt_transport_params(conn->q, tp, sizeof(tp));
  if (tplen < 0) {
    return UVQ_ERR_INTERNAL;
  }
  if (gnutls_session_get_data2(conn->tls, &sd) != 0) {
    return UVQ_ERR_TLS;
  }
  len = 4 + 1 + 1 + 2 + (size_t)tplen + 4 + sd.size;
  blob = uvq_malloc(conn->ep->mem, len);
  if (blob == NULL) {
    gnutls_free(sd.data);
    return UVQ_ERR_NOMEM;
  }
  p = blob;
  memcpy(p, BLOB_MAGIC, 4);
  p += 4;
  *p++ = BLOB_VERSION;
  *p++ = conn->tickets.granted ? BLOB_EARLY_DATA : 0;
  *p++ = (uint8_t)(tplen >> 8);
  *p++ = (uint8_t)tplen;
  memcpy(p, tp, (size_t)tplen);
  p += tplen;
  *p++ = (uint8_t)(sd.size >> 24);
  *p++ = (uint8_t)(sd.size >> 16);
  *p++ = (uint8_t)(sd.size >> 8);
  *p++ = (uint8_t)sd.size;
  memcpy(p, sd.data, sd.size);
  gnutls_memset(sd.data, 0, sd.size);
  gnutls_free(sd.data);
  *pblob = blob;
  *plen = len;
  return 0;
}

/* The blob's header length (magic, version, flags) and its flags, or 0
 * for a blob of no version we read. */
static size_t blob_header(const uint8_t *blob, size_t len, unsigned *pflags) {
  if (blob == NULL || len < 4 + 1 || memcmp(blob, BLOB_MAGIC, 4) != 0) {
    return 0;
  }
  if (blob[4] == 2) {
    *pflags = 0;
    return 5;
  }
  if (blob[4] == BLOB_VERSION && len >= 6) {
    *pflags = blob[5];
    return 6;
  }
  return 0;
}

int uvq_resume_grants_early_data(const uint8_t *blob, size_t len) {
  unsigned flags;

  return blob_header(blob, len, &flags) != 0 && (flags & BLOB_EARLY_DATA);
}

int uvq_resume_apply(uvq_conn *conn, const uint8_t *blob, size_t len,
                     int early_data) {
  ngtcp2_transport_params params;
  const uint8_t *p = blob, *tp;
  size_t hlen, tplen, n;
  unsigned flags = 0;
  int rv;

  hlen = blob_header(blob, len, &flags);
  if (hlen == 0 || len < hlen + 2) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  tplen = (size_t)p[hlen] << 8 | p[hlen + 1];
  p += hlen + 2;
  len -= hlen + 2;
  if (tplen + 4 > len) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  tp = p;
  p += tplen;
  len -= tplen;
  n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
  p += 4;
  /* Checked whole before anything is applied. */
  if (n == 0 || n != len - 4 ||
      ngtcp2_transport_params_decode(&params, tp, tplen) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (gnutls_session_set_data(conn->tls, p, n) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!early_data || !(flags & BLOB_EARLY_DATA)) {
    return 0;
  }
  rv = ngtcp2_conn_decode_and_set_0rtt_transport_params(conn->q, tp, tplen);
  if (rv != 0) {
    return rv == NGTCP2_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INVALID_ARGUMENT;
  }
  conn->early_data = UVQ_EARLY_DATA_ATTEMPTED;
  return 0;
}
