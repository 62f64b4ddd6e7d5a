/* QUIC-LB inside the library: how the endpoint issues its CIDs with a
 * uvq_lb (the public API is include/uvquic/uvquic_lb.h). */
#ifndef UVQ_CORE_QUIC_LB_H
#define UVQ_CORE_QUIC_LB_H

#include <stddef.h>
#include <stdint.h>

#include "core/cid.h"
#include "uvquic/uvquic_lb.h"

/* A source of random octets: fills |dest| and returns 0, or nonzero. */
typedef int (*uvq_lb_rand_fn)(void *user_data, uint8_t *dest, size_t len);

/* uvq_lb_set_rand makes |lb| draw its nonces and first-octet bits from
 * |rand| (the endpoint's randomness, which tests seed) instead of GnuTLS;
 * NULL restores GnuTLS. */
void uvq_lb_set_rand(uvq_lb *lb, uvq_lb_rand_fn rand, void *user_data);

/* UVQ_LB_NONCE_LANES: lanes a keyed nonce space can be split into, one
 * per shard (uvq_endpoint_config.cid_shard: up to 32). */
#define UVQ_LB_NONCE_LANES 32

/* uvq_lb_set_nonce_lane gives |lb| lane |lane| (< UVQ_LB_NONCE_LANES) of
 * the keyed nonce space: its nonces all end in the five bits |lane| and
 * count up in steps of 32 above them. Shards of one server share the
 * server ID and key, and each has its own uvq_lb: in separate lanes no
 * two of them can issue the same nonce (the draft's MUST NOT reuse), at
 * the cost of 5 bits of each one's nonce space. Call before the first
 * CID. */
void uvq_lb_set_nonce_lane(uvq_lb *lb, unsigned lane);

/* uvq_lb_unroutable_count: CIDs the endpoint issued with the unroutable
 * codepoint (0b111) because every nonce was spent (0 for NULL). */
uint64_t uvq_lb_unroutable_count(const uvq_lb *lb);

/* uvq_lb_test_spend_nonces: for tests, |lb| as if its counter had come
 * back to its start (2^(8 * nonce_len) CIDs are out of a test's reach). */
void uvq_lb_test_spend_nonces(uvq_lb *lb);

/* uvq_lb_cid_gen_init makes |gen| issue |lb|'s CIDs (random first-octet
 * bits unless the configuration encodes the length). |lb| must outlive
 * |gen|. */
void uvq_lb_cid_gen_init(uvq_cid_gen *gen, uvq_lb *lb);

/* uvq_ep_quic_lb_init sets up QUIC-LB for a new endpoint whose
 * settings.quic_lb is set: makes ep->quic_lb, drawing
 * on the endpoint's randomness, and sets settings.cid_len to its CID
 * length. A no-op without a configuration. Returns 0,
 * UVQ_ERR_INVALID_ARGUMENT (a client, a bad configuration, CIDs shorter
 * than 8 octets) or uvq_lb_new's error. */
int uvq_ep_quic_lb_init(uvq_endpoint *ep);

#endif
