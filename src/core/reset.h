/*
 * Stateless resets (reset.c): the peer tokens of our connections, and
 * the resets we send.
 */
#ifndef UVQ_CORE_RESET_H
#define UVQ_CORE_RESET_H

#include <gnutls/crypto.h>

#include "core/router.h"

/* Stateless-reset tokens of the peer's CIDs a connection keeps registered
 * in the endpoint's token table (the CIDs in use: current and bound). */
#define UVQ_CONN_MAX_RESET_TOKENS 8
/* Length of a token's keyed transform in the table (reset.c). */
#define UVQ_RESET_MACLEN 16

int uvq_reset_init(uvq_endpoint *ep);
void uvq_reset_free(uvq_endpoint *ep);
/* A keyed handle for the reset tokens of our CIDs under static secret
 * |secret| (UVQ_STATIC_SECRETLEN bytes), into |*ph|; the caller installs
 * it in ep->reset_token_hmac (and deinits the one it replaces). */
int uvq_reset_token_key_new(const uint8_t *secret, gnutls_hmac_hd_t *ph);
/* The stateless-reset token of our CID |cid| (RFC 9000 §10.3.2): the
 * first 16 bytes of HMAC-SHA256(K, cid), K = HKDF-Expand-SHA256(static
 * secret, "uvquic stateless reset"). The same static secret gives the
 * same tokens in every endpoint and process. */
int uvq_reset_token_of(uvq_endpoint *ep, const ngtcp2_cid *cid,
                       uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN]);
/* Registers / forgets the peer's reset token |token| for |conn|. Adding
 * fails only for lack of memory or room, which costs recognising a reset
 * on that CID, nothing else. */
int uvq_reset_token_add(uvq_conn *conn, const uint8_t *token);
void uvq_reset_token_remove(uvq_conn *conn, const uint8_t *token);
/* Forgets every token of |conn| (it is going away). */
void uvq_reset_conn_forget(uvq_conn *conn);
/* The connection whose peer token ends the datagram, or NULL. */
uvq_conn *uvq_reset_match(uvq_endpoint *ep, const uint8_t *data, size_t len);
/* Server: answers a short-header packet of |len| bytes for unknown DCID
 * |v->dcid| with a stateless reset, if RFC 9000 §10.3 and the rate limit
 * allow. */
void uvq_reset_send(uvq_endpoint *ep, const uvq_path *path,
                    const uvq_pkt_view *v, size_t len, uvq_tstamp now);

#endif
