/* Connection-ID generation: an interface every generator implements (the
 * random one here, a QUIC-LB one later) and a random-CID helper. */
#ifndef UVQ_CORE_CID_H
#define UVQ_CORE_CID_H

#include <stddef.h>

#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"

/** Shortest CID an endpoint issues (RFC 9000 §7.2: a client DCID has 8+). */
#define UVQ_CID_GEN_MIN_LEN 8
/** Longest CID an endpoint issues: UVQ_MAX_CIDLEN (20). */
#define UVQ_CID_GEN_MAX_LEN UVQ_MAX_CIDLEN

typedef struct uvq_cid_gen uvq_cid_gen;

/**
 * uvq_cid_gen produces the connection IDs an endpoint issues. A generator
 * is a plain struct the owner embeds; it holds no resources of its own, so
 * it needs no _free(). Implementations fill in |generate| and |cid_len|
 * and may keep their state behind |user_data|.
 */
struct uvq_cid_gen {
  /**
   * Writes a new CID of exactly gen->cid_len bytes into *cid (data and
   * datalen). Returns 0 or a negative UVQ_ERR_*; on error *cid is
   * unspecified.
   */
  int (*generate)(uvq_cid_gen *gen, ngtcp2_cid *cid);
  /** Length of every CID this generator issues, 8..20. */
  size_t cid_len;
  void *user_data;
  /**
   * With |has_shard| nonzero, a shard index (0..31) uvq_cid_gen_generate
   * writes into the low five bits of every CID's first octet, over what
   * |generate| put there. Zero (uvq_cid_gen_random_init): none.
   */
  int has_shard;
  unsigned shard; /**< See has_shard. */
};

/**
 * uvq_cid_gen_random_init makes |gen| a generator of uniformly random CIDs
 * of |cid_len| bytes (drawn from gnutls_rnd at GNUTLS_RND_NONCE: CIDs are
 * public values that must be unpredictable, exactly what GnuTLS calls a
 * nonce, and that level keeps their generator apart from the one that
 * produces secrets). |gen->user_data| is set to NULL.
 *
 * Returns 0, or UVQ_ERR_INVALID_ARGUMENT if |cid_len| is outside 8..20
 * (|gen| is then left untouched).
 */
int uvq_cid_gen_random_init(uvq_cid_gen *gen, size_t cid_len);

/**
 * uvq_cid_gen_generate asks |gen| for a new CID and writes it to *cid.
 * With gen->has_shard the first octet's low five bits become the shard.
 * Returns 0, the generator's own negative error, or UVQ_ERR_INTERNAL if
 * the generator reported success but wrote a CID of another length than
 * gen->cid_len (a generator bug the endpoint must not put on the wire).
 */
int uvq_cid_gen_generate(uvq_cid_gen *gen, ngtcp2_cid *cid);

/**
 * uvq_cid_random writes |len| random bytes (GNUTLS_RND_NONCE) to |cid| and
 * sets cid->datalen = |len|; for a client's initial DCID and SCID, which
 * no generator owns. |len| 0 yields the empty CID.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT if |len| > 20, or UVQ_ERR_TLS if
 * GnuTLS's random generator fails.
 */
int uvq_cid_random(ngtcp2_cid *cid, size_t len);

#endif
