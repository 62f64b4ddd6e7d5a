/* Shards: a server as N endpoints, each on its own thread and loop with its
 * own SO_REUSEPORT socket on one address, steered by the shard index in
 * the CIDs (classic BPF) and forwarding to each other what still reaches
 * the wrong one. driver.c calls these; see uvq_uv_listen and
 * docs/internals/uv-adapter.md ("Shards"). */
#ifndef UVQ_UV_SHARD_H
#define UVQ_UV_SHARD_H

#include "uv/driver.h"

/* uvq_uv_listen with cfg->shards > 1. */
int uvq_uv_group_listen(uvq_uv_endpoint **puep, uv_loop_t *loop,
                        const struct sockaddr *addr, const uvq_uv_config *cfg,
                        const uvq_settings *settings, uvq_tls_ctx *tls,
                        uvq_uv_accept_cb on_accept, void *user_data);

/* uvq_uv_endpoint_close (|now| 0) and _close_now (1) of a group. */
void uvq_uv_group_close(uvq_uv_group *g, uvq_uv_close_cb cb, int now);

/* Shard |i| of |g| (NULL past the last). */
uvq_uv_endpoint *uvq_uv_group_shard(uvq_uv_group *g, unsigned i);

/* The address every shard's socket is bound to. */
void uvq_uv_group_local_addr(const uvq_uv_group *g, uvq_addr *addr);

/* The datapath counters of the shards that have stopped, summed. */
int uvq_uv_group_get_stats(uvq_uv_group *g, uvq_uv_stats *st);

/* On the shard's thread, for each received buffer: nonzero if another
 * shard owns it (a short header whose DCID names it) — then it has been
 * copied to that shard's forward queue (|st|->forwarded) or dropped
 * because the queue was full (|st|->forward_overflows); zero: ours. */
int uvq_uv_shard_steer(uvq_uv_shard *sh, uvq_uv_stats *st, const uvq_path *path,
                       uint8_t ecn, const uint8_t *data, size_t len,
                       size_t segment_size);

/* On the shard's thread after every pass: its connection count, for
 * uvq_uv_endpoint_conn_count on the group. */
void uvq_uv_shard_publish(uvq_uv_shard *sh, size_t conns);

/* On the shard's thread when its endpoint starts closing its handles:
 * nothing is forwarded or posted to it any more. */
void uvq_uv_shard_stopping(uvq_uv_shard *sh);

/* The shard's index. */
unsigned uvq_uv_shard_index(const uvq_uv_shard *sh);

#endif
