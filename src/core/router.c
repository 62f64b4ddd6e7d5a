/*
 * The router: reads the routing fields of each datagram's first packet and
 * hands it to the connection that owns its DCID, to the acceptor (server
 * Initials), to the connection a stateless reset is for, or drops it with a
 * counted reason (servers answering unknown short headers with a reset).
 */
#include <string.h>

#include "core/acceptor.h"
#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/reset.h"
#include "core/router.h"

/* Version field of a Version Negotiation packet. */
#define VN_VERSION 0u

/* Whether the version-independent long header (RFC 8999 §5.1: flags,
 * version, DCID len + DCID, SCID len + SCID) fits in |len| bytes. */
static int long_header_fits(const uint8_t *data, size_t len) {
  size_t off = 1 + 4;
  if (len < off + 1) {
    return 0;
  }
  off += 1 + (size_t)data[off];
  if (len < off + 1) {
    return 0;
  }
  off += 1 + (size_t)data[off];
  return len >= off;
}

/* uvq_pkt_parse's refusal: -1, with why in *preason. */
static int unroutable(uvq_drop_reason *preason, uvq_drop_reason reason) {
  *preason = reason;
  return -1;
}

int uvq_pkt_parse(uvq_pkt_view *v, const uint8_t *data, size_t len,
                  size_t short_dcidlen, uvq_drop_reason *preason) {
  ngtcp2_version_cid vc;
  int rv;

  memset(v, 0, sizeof(*v));
  if (len == 0) {
    return unroutable(preason, UVQ_DROP_TRUNCATED);
  }
  if ((data[0] & 0x80) == 0) {
    /* Short header fast path: flags byte, then a DCID whose length only
     * the endpoint knows — the length of the CIDs it issues. The fixed
     * bit is not checked: we advertise grease_quic_bit (RFC 9287), so
     * peers may clear it. */
    if (len < 1 + short_dcidlen) {
      return unroutable(preason, UVQ_DROP_TRUNCATED);
    }
    v->dcid = data + 1;
    v->dcidlen = short_dcidlen;
    return 0;
  }
  /* Long header: version (4), DCID len + DCID, SCID len + SCID. */
  if (len < 7) {
    return unroutable(preason, UVQ_DROP_TRUNCATED);
  }
  rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, short_dcidlen);
  if (rv == NGTCP2_ERR_INVALID_ARGUMENT && len < UVQ_MIN_INITIAL_DATAGRAM &&
      long_header_fits(data, len)) {
    uint32_t version = ((uint32_t)data[1] << 24) | ((uint32_t)data[2] << 16) |
                       ((uint32_t)data[3] << 8) | data[4];
    if (version != VN_VERSION && !ngtcp2_is_supported_version(version)) {
      /* ngtcp2 refuses to decode the header of an unknown version in a
       * datagram too small to be answered with VN. The header is not
       * malformed (its invariant fields fit): count it for what it is. */
      return unroutable(preason, UVQ_DROP_UNSUPPORTED_VERSION);
    }
  }
  if (rv != 0 && rv != NGTCP2_ERR_VERSION_NEGOTIATION) {
    return unroutable(preason, UVQ_DROP_MALFORMED);
  }
  v->is_long = 1;
  v->version = vc.version;
  v->dcid = vc.dcid;
  v->dcidlen = vc.dcidlen;
  v->scid = vc.scid;
  v->scidlen = vc.scidlen;
  v->long_type = (uint8_t)((data[0] >> 4) & 0x3);
  if (vc.version == UVQ_QUIC_V2) {
    /* RFC 9369 §3.2: v2 numbers Initial 1, 0-RTT 2, Handshake 3, Retry 0:
     * one more than v1, modulo 4. */
    v->long_type = (uint8_t)((v->long_type + 3) & 0x3);
  }
  return 0;
}

int uvq_version_ok(const uvq_settings *st, uint32_t version) {
  for (size_t i = 0; i < st->quic_versionslen; i++) {
    if (st->quic_versions[i] == version) {
      return 1;
    }
  }
  return 0;
}

void uvq_router_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                     const uint8_t *data, size_t len, uvq_tstamp now) {
  uvq_pkt_view v;
  uvq_drop_reason why;
  uvq_conn *conn;

  if (uvq_pkt_parse(&v, data, len, ep->settings.cid_len, &why) != 0) {
    uvq_ep_drop(ep, why);
    return;
  }

  if (v.is_long && !uvq_version_ok(&ep->settings, v.version) &&
      !(v.version == VN_VERSION && !ep->is_server)) {
    /* Not one of settings.quic_versions (ngtcp2 may know more). A
     * client's Initial-sized datagram of another version is answered with
     * Version Negotiation listing ours; anything else is dropped. */
    if (ep->is_server && len >= UVQ_MIN_INITIAL_DATAGRAM &&
        v.version != VN_VERSION) {
      uvq_acceptor_send_version_negotiation(ep, path, &v);
    } else {
      uvq_ep_drop(ep, UVQ_DROP_UNSUPPORTED_VERSION);
    }
    return;
  }

  conn = v.dcidlen <= UVQ_MAX_CIDLEN
             ? uvq_cid_map_find_memo(&ep->cids, v.dcid, v.dcidlen)
             : NULL;
  if (conn) {
    uvq_conn_recv(conn, path, ecn, data, len, now);
    return;
  }

  if (!v.is_long) {
    /* A stateless reset carries a random DCID: recognise it by its last
     * 16 bytes, the token of a peer CID one of our connections uses, and
     * let that connection's ngtcp2 verify it and close. */
    conn = uvq_reset_match(ep, data, len);
    if (conn) {
      ep->stats.stateless_resets_received++;
      uvq_conn_recv(conn, path, ecn, data, len, now);
      return;
    }
  }
  if (!ep->is_server) {
    uvq_ep_drop(ep, UVQ_DROP_CLIENT_UNKNOWN);
    return;
  }
  if (!v.is_long) {
    /* A connection we do not know, maybe one a previous process of ours
     * served: tell the peer with a stateless reset (reset.c's rules). */
    uvq_ep_drop(ep, UVQ_DROP_UNKNOWN_CID);
    uvq_reset_send(ep, path, &v, len, now);
    return;
  }
  switch (v.long_type) {
  case 0: /* Initial */
    if (len < UVQ_MIN_INITIAL_DATAGRAM) {
      uvq_ep_drop(ep, UVQ_DROP_INITIAL_TOO_SMALL);
      return;
    }
    uvq_acceptor_recv(ep, path, ecn, &v, data, len, now);
    return;
  case 1: /* 0-RTT ahead of its Initial, or for a forgotten connection */
    uvq_ep_drop(ep, UVQ_DROP_0RTT_UNKNOWN);
    return;
  default:
    uvq_ep_drop(ep, UVQ_DROP_UNEXPECTED_LONG);
    return;
  }
}
