/* The libuv driver's endpoint, shared by driver.c (one endpoint: its
 * sockets, timer and handles) and shard.c (a group of shard endpoints on
 * their own threads). See docs/internals/uv-adapter.md. */
#ifndef UVQ_UV_DRIVER_H
#define UVQ_UV_DRIVER_H

#include "uvquic/uvquic_uv.h"

#include "uv/ifmtu.h"
#include "uv/udp.h"

typedef struct uvq_uv_shard uvq_uv_shard;
typedef struct uvq_uv_group uvq_uv_group;

/* One UDP socket of an endpoint. The first (socks[0]) is opened with the
 * endpoint; a client endpoint adds more for migration
 * (uvq_uv_endpoint_add_local). Every one is received on, and a datagram
 * leaves through the one its path's local address belongs to. Each lives
 * until the endpoint is freed. */
typedef struct uep_sock {
  /* The socket and its datapath state; udp.bound is its address. */
  uvq_udp udp;
  /* Its data is the endpoint, as for every handle (sock_of finds us). */
  uv_poll_t poll;
  /* Events |poll| watches now. */
  int poll_events;
} uep_sock;

typedef enum uep_state {
  UEP_RUNNING = 0,
  /* uvq_uv_endpoint_close was called; connections are closing. */
  UEP_CLOSING,
  /* Handles are being closed; the endpoint is freed when they all are. */
  UEP_CLOSING_HANDLES
} uep_state;

struct uvq_uv_endpoint {
  uv_loop_t *loop;
  uvq_endpoint *ep;
  /* cfg.mem, or libc. */
  const uvq_mem *mem;
  uvq_uv_config cfg;
  int is_server;
  uvq_uv_accept_cb on_accept;
  void *user_data;

  /* Every socket: the first, then the added ones in the order they came. */
  uep_sock **socks;
  size_t nsocks;
  /* The socket the last batch went to (uep_send): before another socket
   * sends, what this one still queues leaves first. */
  size_t last_send;
  /* The receive buffers, shared by the sockets (one read at a time). */
  uvq_udp_rx *rx;
  /* The host's interface MTUs, for the core's path_mtu callback. */
  uvq_ifmtu ifmtu;

  /* The expiry timer: a CLOCK_MONOTONIC timerfd (ns resolution), watched
   * by |timer|. */
  int tfd;
  uv_poll_t timer;
  uv_async_t async;
  uv_prepare_t prepare;
  /* Runs a deadline that is already due without a timer: see
   * uep_arm_timer. Active only while such a deadline waits. */
  uv_idle_t idle;
  int idle_active;
  /* Expiry the timer is armed for (UVQ_TSTAMP_MAX: stopped). */
  uvq_tstamp armed;
  /* The last flush was blocked or a send queue filled: watch UV_WRITABLE. */
  int blocked;

  uep_state state;
  /* A shard of a group (uvq_uv_listen with shards): its index and group
   * (shard.c); NULL otherwise. */
  uvq_uv_shard *shard;
  /* Set on a group's handle (the endpoint uvq_uv_listen returned with
   * shards): every call is the group's (shard.c); nothing above is used
   * but loop, mem, cfg, is_server and user_data. */
  uvq_uv_group *group;
  /* uvq_uv_endpoint_close_now: free once the close packets are out,
   * without waiting for closing/draining periods. */
  int close_now;
  /* Handles whose close callback has not run yet (UEP_CLOSING_HANDLES). */
  int handles_open;
  uvq_uv_close_cb close_cb;
};

/* Creates an endpoint as uvq_uv_listen / uvq_uv_client_new do; |cfg| is
 * read by its version. With |shard| (NULL: none) it is that shard: its
 * socket sets SO_REUSEPORT before binding, and its CIDs carry the shard's
 * index (uvq_endpoint_config.cid_shard). */
int uvq_uv_ep_new(uvq_uv_endpoint **puep, uv_loop_t *loop, int is_server,
                  const struct sockaddr *addr, const uvq_uv_config *cfg,
                  const uvq_settings *settings, uvq_tls_ctx *tls,
                  uvq_uv_accept_cb on_accept, void *user_data,
                  uvq_uv_shard *shard);

/* Gives one received buffer to |uep|'s core endpoint (no flush: call
 * uvq_uv_ep_flush after a batch). Ignored once the endpoint closes its
 * handles. */
void uvq_uv_ep_recv(uvq_uv_endpoint *uep, const uvq_path *path, uint8_t ecn,
                    const uint8_t *data, size_t len, size_t segment_size);

/* Flushes |uep| and re-arms its timer: what every call into the core ends
 * with. */
void uvq_uv_ep_flush(uvq_uv_endpoint *uep);

/* Reads |src| (NULL: the defaults) by its version into |dst|. Returns 0 or
 * UVQ_ERR_INVALID_ARGUMENT. */
int uvq_uv_config_read(uvq_uv_config *dst, const uvq_uv_config *src);

/* Adds the counters of |x| to |st| (the facts stay |st|'s). */
void uvq_uv_stats_add(uvq_uv_stats *st, const uvq_uv_stats *x);

#endif
