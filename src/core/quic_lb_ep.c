/* The endpoint's side of QUIC-LB: a server endpoint configured with a
 * uvq_lb_config issues its CIDs through a uvq_lb (quic_lb.c). */
#include "core/endpoint.h"
#include "core/quic_lb.h"

int uvq_ep_quic_lb_init(uvq_endpoint *ep) {
  const uvq_lb_config *cfg = ep->settings.quic_lb;
  int rv;

  /* Only the endpoint's own copy is used: the caller's may go away. */
  ep->settings.quic_lb = NULL;
  if (cfg == NULL) {
    return 0;
  }
  /* A shard index (uvq_endpoint_config.cid_shard) takes the first
   * octet's low five bits: not when they encode the CID length. */
  if (!ep->is_server || uvq_lb_config_check(cfg) != NULL ||
      1 + cfg->server_id_len + cfg->nonce_len < UVQ_CID_GEN_MIN_LEN ||
      (cfg->encode_len && ep->cfg.cid_shard_set)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_lb_new(&ep->quic_lb, cfg, ep->mem);
  if (rv != 0) {
    return rv;
  }
  uvq_lb_set_rand(ep->quic_lb, uvq_ep_rand_cb, ep);
  /* Shards share the server ID and key: each counts in its own lane, so
   * no two issue the same nonce. */
  if (ep->cfg.cid_shard_set) {
    uvq_lb_set_nonce_lane(ep->quic_lb, ep->cfg.cid_shard);
  }
  ep->settings.cid_len = uvq_lb_cid_len(ep->quic_lb);
  return 0;
}
