#include "core/cid.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

int uvq_cid_random(ngtcp2_cid *cid, size_t len) {
  if (len > UVQ_MAX_CIDLEN) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  /* A CID travels in the clear in every packet header, so it is a nonce in
   * GnuTLS's terms: it must be unpredictable (RFC 9000 §5.1: not linkable
   * across migrations, not guessable to inject packets) but it is public.
   * GNUTLS_RND_NONCE serves exactly that and draws from a generator state
   * separate from the RANDOM/KEY levels that feed secrets, so no amount of
   * observed CIDs says anything about our keys. */
  if (len > 0 && gnutls_rnd(GNUTLS_RND_NONCE, cid->data, len) != 0) {
    return UVQ_ERR_TLS;
  }
  cid->datalen = len;
  return 0;
}

static int random_generate(uvq_cid_gen *gen, ngtcp2_cid *cid) {
  return uvq_cid_random(cid, gen->cid_len);
}

int uvq_cid_gen_random_init(uvq_cid_gen *gen, size_t cid_len) {
  if (cid_len < UVQ_CID_GEN_MIN_LEN || cid_len > UVQ_CID_GEN_MAX_LEN) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  gen->generate = random_generate;
  gen->cid_len = cid_len;
  gen->user_data = NULL;
  gen->has_shard = 0;
  return 0;
}

int uvq_cid_gen_generate(uvq_cid_gen *gen, ngtcp2_cid *cid) {
  int rv = gen->generate(gen, cid);
  if (rv != 0) {
    return rv;
  }
  if (cid->datalen != gen->cid_len) {
    return UVQ_ERR_INTERNAL;
  }
  if (gen->has_shard) {
    /* The bits QUIC-LB leaves to the server (no length self-encoding):
     * a packet's owner among shards sharing one address. */
    cid->data[0] = (uint8_t)((cid->data[0] & 0xe0) | (gen->shard & 0x1f));
  }
  return 0;
}
