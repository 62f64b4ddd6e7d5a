/*
 * Session resumption and 0-RTT for clients (RFC 9001 §4.6): the opaque
 * blob on_session_ticket hands out and uvq_connect_params.resumption takes
 * back. It holds the GnuTLS session data (the ticket and its secrets) and
 * the server transport parameters that bound 0-RTT (RFC 9000 §7.4.1).
 *
 * Layout, integers big-endian:
 *   "uvqr" | version (1) | 8 x u64 transport parameters | u32 n | n bytes
 *   of gnutls_session_get_data2 output
 */
#include <string.h>

#include "core/core.h"

#define BLOB_MAGIC "uvqr"
#define BLOB_VERSION 1
#define BLOB_NPARAMS 8
#define BLOB_HEADER (4 + 1 + BLOB_NPARAMS * 8 + 4)

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) {
    v = v << 8 | p[i];
  }
  return v;
}

/* The parameters RFC 9000 §7.4.1 (and RFC 9221 §3) say a client
 * remembers for 0-RTT, in blob order. */
static void params_to_array(const ngtcp2_transport_params *tp,
                            uint64_t v[BLOB_NPARAMS]) {
  v[0] = tp->initial_max_data;
  v[1] = tp->initial_max_stream_data_bidi_local;
  v[2] = tp->initial_max_stream_data_bidi_remote;
  v[3] = tp->initial_max_stream_data_uni;
  v[4] = tp->initial_max_streams_bidi;
  v[5] = tp->initial_max_streams_uni;
  v[6] = tp->active_connection_id_limit;
  v[7] = tp->max_datagram_frame_size;
}

int uvq_resume_encode(uvq_conn *conn, uint8_t **pblob, size_t *plen) {
  const ngtcp2_transport_params *tp =
      ngtcp2_conn_get_remote_transport_params(conn->q);
  gnutls_datum_t sd = {NULL, 0};
  uint64_t v[BLOB_NPARAMS];
  uint8_t *blob, *p;
  size_t len;

  if (tp == NULL) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (gnutls_session_get_data2(conn->tls, &sd) != 0) {
    return UVQ_ERR_TLS;
  }
  len = BLOB_HEADER + sd.size;
  blob = uvq_malloc(conn->ep->mem, len);
  if (blob == NULL) {
    gnutls_free(sd.data);
    return UVQ_ERR_NOMEM;
  }
  p = blob;
  memcpy(p, BLOB_MAGIC, 4);
  p += 4;
  *p++ = BLOB_VERSION;
  params_to_array(tp, v);
  for (int i = 0; i < BLOB_NPARAMS; i++, p += 8) {
    put_u64(p, v[i]);
  }
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

int uvq_resume_apply(uvq_conn *conn, const uint8_t *blob, size_t len,
                     int early_data) {
  ngtcp2_transport_params tp;
  uint8_t tpbuf[128];
  ngtcp2_ssize enc;
  int rv;
  const uint8_t *p = blob;
  uint64_t v[BLOB_NPARAMS];
  size_t n;

  if (blob == NULL || len < BLOB_HEADER || memcmp(p, BLOB_MAGIC, 4) != 0 ||
      p[4] != BLOB_VERSION) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  p += 5;
  for (int i = 0; i < BLOB_NPARAMS; i++, p += 8) {
    v[i] = get_u64(p);
  }
  n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
  p += 4;
  if (n == 0 || n != len - BLOB_HEADER) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (gnutls_session_set_data(conn->tls, p, n) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!early_data) {
    return 0;
  }
  /* The rest are ones ngtcp2 ignores for 0-RTT (RFC 9000 §7.4.1 lists
   * what must be remembered). */
  ngtcp2_transport_params_default(&tp);
  tp.initial_max_data = v[0];
  tp.initial_max_stream_data_bidi_local = v[1];
  tp.initial_max_stream_data_bidi_remote = v[2];
  tp.initial_max_stream_data_uni = v[3];
  tp.initial_max_streams_bidi = v[4];
  tp.initial_max_streams_uni = v[5];
  tp.active_connection_id_limit = v[6];
  tp.max_datagram_frame_size = v[7];
  /* ngtcp2 takes remembered parameters only in their wire encoding. */
  enc = ngtcp2_transport_params_encode(tpbuf, sizeof(tpbuf), &tp);
  if (enc < 0) {
    return UVQ_ERR_INTERNAL;
  }
  rv = ngtcp2_conn_decode_and_set_0rtt_transport_params(conn->q, tpbuf,
                                                        (size_t)enc);
  if (rv != 0) {
    return rv == NGTCP2_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INTERNAL;
  }
  conn->early_data = UVQ_EARLY_DATA_ATTEMPTED;
  return 0;
}
