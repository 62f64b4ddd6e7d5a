/*
 * Stateless resets (RFC 9000 §10.3), both ways.
 *
 * Sending (servers): a short-header packet whose DCID no connection owns —
 * typically one of ours from before a restart — is answered with a reset
 * carrying the token derived from that DCID with the static secret, so a
 * peer that got the CID (and its token) from an earlier process with the
 * same secret learns at once that the connection is gone. Rules:
 * - never answer a packet that cannot be a valid packet with our CIDs:
 *   flags, the CID, then the 4 + 16 bytes header protection samples
 *   (RFC 9001 §5.4.2) — smaller ones are discarded as garbage;
 * - a reset is at least 21 bytes (5 unpredictable + 16 token; ngtcp2's
 *   minimum) and always strictly smaller than the packet that triggered
 *   it (§10.3.3), so two endpoints resetting each other shrink every round
 *   and stop below the minimum: no loop, and never amplification;
 * - at most 43 bytes (1 + the longest 20-byte CID + 22, what §10.3 wants a
 *   reset to look like to a third party), one byte less than a short
 *   trigger (§10.3: "one byte shorter than the packet it responds to");
 * - a token bucket (settings.stateless_reset_rate / _burst) bounds the
 *   rate; what it refuses is counted.
 *
 * Receiving: a reset carries a random DCID, so the router cannot route it.
 * Each connection registers the tokens of the peer CIDs it uses (ngtcp2's
 * dcid_status callback); an unroutable short-header datagram whose last 16
 * bytes match one goes to that connection, where ngtcp2 verifies it and
 * closes (UVQ_ERR_STATELESS_RESET). The table is keyed by HMAC-SHA256 of
 * the token under a per-endpoint secret: the comparison then runs over
 * values an attacker cannot predict, which §10.3.1 names as the
 * alternative to a constant-time compare.
 *
 * Our own CIDs' tokens (the ones we issue and the ones we send resets
 * with) are HMAC-SHA256 of the CID under a key derived from the static
 * secret, the construction §10.3.2 suggests. The handle is keyed once per
 * secret: a token then costs two SHA-256 blocks and no allocation, where
 * ngtcp2_crypto_generate_stateless_reset_token (HKDF, keyed anew each
 * call) cost about 5x that, eight times per connection.
 */
#include <gnutls/crypto.h>
#include <string.h>

#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/reset.h"
#include "core/router.h"

#define RESET_MINLEN                                                           \
  (NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN)
#define RESET_MAXLEN (1 + NGTCP2_MAX_CIDLEN + 22)

int uvq_reset_token_key_new(const uint8_t *secret, gnutls_hmac_hd_t *ph) {
  static const char info[] = "uvquic stateless reset";
  const gnutls_datum_t prk = {(unsigned char *)(uintptr_t)secret,
                              UVQ_STATIC_SECRETLEN};
  const gnutls_datum_t infod = {(unsigned char *)(uintptr_t)info,
                                sizeof(info) - 1};
  uint8_t key[32];
  int rv;

  if (gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prk, &infod, key, sizeof(key)) !=
      0) {
    return UVQ_ERR_INTERNAL;
  }
  rv = gnutls_hmac_init(ph, GNUTLS_MAC_SHA256, key, sizeof(key));
  gnutls_memset(key, 0, sizeof(key));
  return rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM
         : rv != 0                   ? UVQ_ERR_INTERNAL
                                     : 0;
}

int uvq_reset_token_of(uvq_endpoint *ep, const ngtcp2_cid *cid,
                       uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN]) {
  uint8_t full[32];

  /* gnutls_hmac_output also resets the handle to its keyed state. */
  if (gnutls_hmac(ep->reset_token_hmac, cid->data, cid->datalen) != 0) {
    return UVQ_ERR_INTERNAL;
  }
  gnutls_hmac_output(ep->reset_token_hmac, full);
  memcpy(token, full, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

int uvq_reset_init(uvq_endpoint *ep) {
  int rv = uvq_ep_cid_map_init(ep, &ep->reset_tokens);
  if (rv != 0) {
    return rv;
  }
  if (uvq_ep_rand(ep, ep->reset_mac_key, sizeof(ep->reset_mac_key), 1) != 0) {
    uvq_cid_map_free(&ep->reset_tokens);
    return UVQ_ERR_INTERNAL;
  }
  rv = uvq_reset_token_key_new(ep->static_secret, &ep->reset_token_hmac);
  if (rv != 0) {
    ep->reset_token_hmac = NULL;
    uvq_cid_map_free(&ep->reset_tokens);
    gnutls_memset(ep->reset_mac_key, 0, sizeof(ep->reset_mac_key));
    return rv;
  }
  ep->reset_bucket = ep->settings.stateless_reset_burst;
  ep->reset_refill_at = 0;
  return 0;
}

void uvq_reset_free(uvq_endpoint *ep) {
  if (ep->reset_token_hmac != NULL) {
    gnutls_hmac_deinit(ep->reset_token_hmac, NULL);
    ep->reset_token_hmac = NULL;
  }
  uvq_cid_map_free(&ep->reset_tokens);
  gnutls_memset(ep->reset_mac_key, 0, sizeof(ep->reset_mac_key));
}

static int token_mac(const uvq_endpoint *ep, const uint8_t *token,
                     uint8_t out[UVQ_RESET_MACLEN]) {
  uint8_t full[32];
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, ep->reset_mac_key,
                       sizeof(ep->reset_mac_key), token,
                       NGTCP2_STATELESS_RESET_TOKENLEN, full) != 0) {
    return -1;
  }
  memcpy(out, full, UVQ_RESET_MACLEN);
  return 0;
}

int uvq_reset_token_add(uvq_conn *conn, const uint8_t *token) {
  uvq_endpoint *ep = conn->ep;
  uint8_t mac[UVQ_RESET_MACLEN];
  int rv;

  if (token_mac(ep, token, mac) != 0) {
    return UVQ_ERR_INTERNAL;
  }
  for (size_t i = 0; i < conn->nreset_macs; i++) {
    if (memcmp(conn->reset_macs[i], mac, UVQ_RESET_MACLEN) == 0) {
      return 0; /* re-activated (e.g. once its token became known) */
    }
  }
  if (conn->nreset_macs == UVQ_CONN_MAX_RESET_TOKENS) {
    return UVQ_ERR_QUEUE_FULL;
  }
  rv = uvq_cid_map_insert(&ep->reset_tokens, mac, sizeof(mac), conn);
  if (rv != 0) {
    /* UVQ_ERR_CID_IN_USE: another connection has the same token, which
     * only a misbehaving peer arranges; the first one keeps it. */
    return rv;
  }
  memcpy(conn->reset_macs[conn->nreset_macs++], mac, UVQ_RESET_MACLEN);
  return 0;
}

static void forget_at(uvq_conn *conn, size_t i) {
  uvq_endpoint *ep = conn->ep;
  if (uvq_cid_map_find(&ep->reset_tokens, conn->reset_macs[i],
                       UVQ_RESET_MACLEN) == conn) {
    uvq_cid_map_erase(&ep->reset_tokens, conn->reset_macs[i], UVQ_RESET_MACLEN);
  }
  conn->nreset_macs--;
  if (i != conn->nreset_macs) {
    memcpy(conn->reset_macs[i], conn->reset_macs[conn->nreset_macs],
           UVQ_RESET_MACLEN);
  }
}

void uvq_reset_token_remove(uvq_conn *conn, const uint8_t *token) {
  uint8_t mac[UVQ_RESET_MACLEN];

  if (token_mac(conn->ep, token, mac) != 0) {
    return;
  }
  for (size_t i = 0; i < conn->nreset_macs; i++) {
    if (memcmp(conn->reset_macs[i], mac, UVQ_RESET_MACLEN) == 0) {
      forget_at(conn, i);
      return;
    }
  }
}

void uvq_reset_conn_forget(uvq_conn *conn) {
  while (conn->nreset_macs > 0) {
    forget_at(conn, conn->nreset_macs - 1);
  }
}

uvq_conn *uvq_reset_match(uvq_endpoint *ep, const uint8_t *data, size_t len) {
  uint8_t mac[UVQ_RESET_MACLEN];

  if (len < RESET_MINLEN || uvq_cid_map_size(&ep->reset_tokens) == 0) {
    return NULL;
  }
  if (token_mac(ep, data + len - NGTCP2_STATELESS_RESET_TOKENLEN, mac) != 0) {
    return NULL;
  }
  return uvq_cid_map_find(&ep->reset_tokens, mac, sizeof(mac));
}

/* Takes one reset from the bucket, refilling it first: one token per
 * 1/rate seconds earned since the last refill, up to the burst. */
static int bucket_take(uvq_endpoint *ep, uvq_tstamp now) {
  const uvq_settings *st = &ep->settings;
  uint64_t interval, n;

  if (st->stateless_reset_rate == 0) {
    return 0;
  }
  interval = UVQ_SECONDS / st->stateless_reset_rate;
  if (interval == 0) {
    interval = 1;
  }
  if (ep->reset_refill_at == 0 || now < ep->reset_refill_at) {
    ep->reset_refill_at = now;
  } else {
    n = (now - ep->reset_refill_at) / interval;
    if (n >= st->stateless_reset_burst - ep->reset_bucket) {
      ep->reset_bucket = st->stateless_reset_burst;
      ep->reset_refill_at = now;
    } else if (n > 0) {
      ep->reset_bucket += n;
      /* Keep the part of a token not yet earned. */
      ep->reset_refill_at += n * interval;
    }
  }
  if (ep->reset_bucket == 0) {
    return 0;
  }
  if (ep->reset_bucket == st->stateless_reset_burst) {
    /* A full bucket earns nothing more until it is drawn from. */
    ep->reset_refill_at = now;
  }
  ep->reset_bucket--;
  return 1;
}

void uvq_reset_send(uvq_endpoint *ep, const uvq_path *path,
                    const uvq_pkt_view *v, size_t len, uvq_tstamp now) {
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
  uint8_t rnd[RESET_MAXLEN];
  uint8_t buf[RESET_MAXLEN];
  size_t resetlen;
  ngtcp2_cid dcid;
  ngtcp2_ssize n;

  /* Too small to be a valid packet with our CIDs: garbage, not a packet
   * of a lost connection. This also keeps every reset we send (< len)
   * at or above the 21-byte minimum. */
  if (len < 1 + ep->settings.cid_len + 4 + 16 || len <= RESET_MINLEN) {
    return;
  }
  resetlen = len - 1 < RESET_MAXLEN ? len - 1 : RESET_MAXLEN;
  if (!bucket_take(ep, now)) {
    ep->stats.stateless_resets_suppressed++;
    return;
  }
  ngtcp2_cid_init(&dcid, v->dcid, v->dcidlen);
  if (uvq_reset_token_of(ep, &dcid, token) != 0 ||
      uvq_ep_rand(ep, rnd, sizeof(rnd), 0) != 0) {
    return;
  }
  n = ngtcp2_pkt_write_stateless_reset(
      buf, resetlen, token, rnd, resetlen - NGTCP2_STATELESS_RESET_TOKENLEN);
  if (n < 0) {
    return;
  }
  uvq_ep_queue_stateless(ep, path, buf, (size_t)n,
                         &ep->stats.stateless_resets_sent);
}
