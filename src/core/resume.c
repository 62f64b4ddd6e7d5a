/*
 * Session resumption and 0-RTT for clients (RFC 9001 §4.6): the opaque
 * blob on_session_ticket hands out and uvq_connect_params.resumption takes
 * back. It holds the GnuTLS session data (the ticket and its secrets) and
 * the server transport parameters that bound 0-RTT (RFC 9000 §7.4.1), as
 * ngtcp2_conn_encode_0rtt_transport_params encodes them.
 *
 * Layout, integers big-endian:
 *   "uvqr" | layout (3) | u32 QUIC version | flags (1) | u16 t | t bytes
 *   of transport parameters | u32 n | n bytes of gnutls_session_get_data2
 *   output
 * The QUIC version is the one the connection started in (its first
 * Initial's): the server's ticket is only good in that version (RFC 9369
 * §5; the server's ticket key is per version). flags: BLOB_EARLY_DATA if
 * the server's NewSessionTicket granted early data (ticket_scan.h); other
 * bits are written 0 and ignored when read. Layout 2 had neither: it came
 * from QUIC v1 connections and is read as such, as a ticket that grants
 * no early data (it did not say, and offering early data on a ticket
 * without it is what RFC 8446 §4.2.10 forbids). (Layout 1 held 8 x u64
 * parameters of our own; it is not read.)
 */
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/resume.h"

#define BLOB_MAGIC "uvqr"
#define BLOB_VERSION 3
/* Layout 2: as 3 without the QUIC version (always v1) and the flags. */
#define BLOB_VERSION_V1ONLY 2
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

  if (ngtcp2_conn_get_remote_transport_params(conn->ngconn) == NULL) {
    return UVQ_ERR_INVALID_STATE;
  }
  tplen =
      ngtcp2_conn_encode_0rtt_transport_params(conn->ngconn, tp, sizeof(tp));
  if (tplen < 0) {
    return UVQ_ERR_INTERNAL;
  }
  if (gnutls_session_get_data2(conn->tls, &sd) != 0) {
    return UVQ_ERR_TLS;
  }
  len = 4 + 1 + 4 + 1 + 2 + (size_t)tplen + 4 + sd.size;
  blob = uvq_malloc(conn->ep->mem, len);
  if (blob == NULL) {
    gnutls_free(sd.data);
    return UVQ_ERR_NOMEM;
  }
  p = blob;
  /* The magic's 4 bytes, not a string. */
  memcpy(p, BLOB_MAGIC, 4); /* NOLINT(bugprone-not-null-terminated-result) */
  p += 4;
  *p++ = BLOB_VERSION;
  *p++ = (uint8_t)(conn->first_version >> 24);
  *p++ = (uint8_t)(conn->first_version >> 16);
  *p++ = (uint8_t)(conn->first_version >> 8);
  *p++ = (uint8_t)conn->first_version;
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

/* The length of |blob|'s header (magic, layout, version, flags), with the
 * version and flags it holds, or 0 for a blob of no layout we read. */
static size_t blob_header(const uint8_t *blob, size_t len, uint32_t *pversion,
                          unsigned *pflags) {
  if (blob == NULL || len < 4 + 1 || memcmp(blob, BLOB_MAGIC, 4) != 0) {
    return 0;
  }
  if (blob[4] == BLOB_VERSION_V1ONLY) {
    *pversion = UVQ_QUIC_V1;
    *pflags = 0;
    return 4 + 1;
  }
  if (blob[4] != BLOB_VERSION || len < 4 + 1 + 4 + 1) {
    return 0;
  }
  *pversion = (uint32_t)blob[5] << 24 | (uint32_t)blob[6] << 16 |
              (uint32_t)blob[7] << 8 | blob[8];
  *pflags = blob[9];
  return 4 + 1 + 4 + 1;
}

int uvq_resume_apply(uvq_conn *conn, const uint8_t *blob, size_t len,
                     int early_data) {
  ngtcp2_transport_params params;
  const uint8_t *p = blob, *tp;
  size_t tplen, n;
  uint32_t version;
  unsigned flags;
  int rv;

  n = blob_header(blob, len, &version, &flags);
  if (n == 0 || len < n + 2) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  p += n;
  len -= n;
  tplen = (size_t)p[0] << 8 | p[1];
  p += 2;
  len -= 2;
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
  rv =
      ngtcp2_conn_decode_and_set_0rtt_transport_params(conn->ngconn, tp, tplen);
  if (rv != 0) {
    return rv == NGTCP2_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INVALID_ARGUMENT;
  }
  conn->early_data = UVQ_EARLY_DATA_ATTEMPTED;
  return 0;
}

uint32_t uvq_resume_version(const uint8_t *blob, size_t len) {
  uint32_t version;
  unsigned flags;
  return blob_header(blob, len, &version, &flags) ? version : 0;
}

int uvq_resume_grants_early_data(const uint8_t *blob, size_t len) {
  uint32_t version;
  unsigned flags;
  return blob_header(blob, len, &version, &flags) != 0 &&
         (flags & BLOB_EARLY_DATA);
}
