/*
 * The libuv driver of a uvq_endpoint (uvquic_uv.h): its UDP sockets and a
 * timerfd, each watched by a uv_poll, plus one uv_async, uv_prepare and
 * uv_idle. Every socket is handled by the same code; the datapath of one
 * socket is udp.c. See docs/internals/uv-adapter.md for the rules (when we
 * flush, how the timer is armed, how close proceeds).
 */
#include "uvquic/uvquic_uv.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "uv/driver.h"
#include "uv/shard.h"
#include "uv/udp.h"

/* What one connection needs: one GSO batch (64 segments, the kernel's
 * UDP_MAX_SEGMENTS) of full-size (1500-byte) datagrams. Less, and a single
 * connection's burst is dropped or its send blocks. */
#define UVQ_UV_MIN_SOCKBUF (64 * 1500)
/* Datagrams (GRO segments counted one by one) read per readable wake-up
 * before we flush and return to the loop, so the expiry timer, sends and
 * other handles are not starved by a flood. */
#define UVQ_UV_MAX_RECV_PER_WAKE 1024
/* A deadline that moved later by less than this keeps the timer armed
 * where it was (uep_arm_timer): it fires early, at most once, and re-arms. */
#define UVQ_UV_TIMER_SLACK UVQ_MILLISECONDS

static void uep_update(uvq_uv_endpoint *uep);
static void uep_on_poll(uv_poll_t *h, int status, int events);
static void uep_on_timer(uv_poll_t *h, int status, int events);
static void uep_on_idle(uv_idle_t *h);

/* The socket whose poll handle is |h|. */
static uep_sock *sock_of(uv_poll_t *h) {
  return (uep_sock *)(void *)((char *)h - offsetof(uep_sock, poll));
}

/* ------------------------------------------------------------------------ */
/* Core callbacks                                                           */
/* ------------------------------------------------------------------------ */

/* Whether datagrams from local address |a| leave through socket |u| (on a
 * wildcard socket: any address of the family, same port; PKTINFO then sets
 * the source). */
static int sock_serves(const uvq_udp *u, const uvq_addr *a) {
  const uvq_addr *bound = &u->bound;

  if (a->ss.ss_family != bound->ss.ss_family) {
    return 0;
  }
  if (!u->pktinfo) {
    return a->len == bound->len && memcmp(&a->ss, &bound->ss, a->len) == 0;
  }
  if (a->ss.ss_family == AF_INET) {
    return ((const struct sockaddr_in *)&a->ss)->sin_port ==
           ((const struct sockaddr_in *)&bound->ss)->sin_port;
  }
  return ((const struct sockaddr_in6 *)&a->ss)->sin6_port ==
         ((const struct sockaddr_in6 *)&bound->ss)->sin6_port;
}

/* The core's metrics (Prometheus, the drop counters) count GSO fallbacks
 * and the queued datagrams the kernel refused too. */
static void report_to_core(uvq_endpoint *ep, uvq_udp *u) {
  if (u->stats.gso_fallbacks != u->gso_fallbacks_reported) {
    uvq_endpoint_add_gso_fallbacks(ep, u->stats.gso_fallbacks -
                                           u->gso_fallbacks_reported);
    u->gso_fallbacks_reported = u->stats.gso_fallbacks;
  }
  if (u->stats.send_errors != u->send_errors_reported) {
    uvq_endpoint_add_send_errors(ep, u->stats.send_errors -
                                         u->send_errors_reported);
    u->send_errors_reported = u->stats.send_errors;
  }
}

static ssize_t uep_send(uvq_endpoint *ep, const uvq_send_batch *b,
                        void *user_data) {
  uvq_uv_endpoint *uep = user_data;
  size_t i = uep->nsocks - 1;
  uvq_udp *u;
  ssize_t rv;

  /* The core's batches carry their path: a connection that migrated sends
   * from the socket bound to its new local address (the newest such),
   * anything else from the first. */
  while (i > 0 && !sock_serves(&uep->socks[i]->udp, &b->path->local)) {
    i--;
  }
  u = &uep->socks[i]->udp;
  /* Datagrams leave in the order the core wrote them, across sockets too:
   * when a migrated connection's batch goes to another socket than the
   * last one, what that one still queues goes first. Otherwise a large
   * batch sent at once from the new socket would overtake small ones
   * queued on the old, and the peer would see packets from the old path
   * after the new one (and may switch back to it). If the old socket is
   * full, nothing is taken: the core keeps the batch for the next flush. */
  if (i != uep->last_send && uep->last_send < uep->nsocks &&
      uvq_udp_flush(&uep->socks[uep->last_send]->udp) != 0) {
    return 0;
  }
  uep->last_send = i;
  /* |b| points into the core's shared write buffer, which the next
   * connection's burst overwrites: "taken" means the kernel took it, or
   * (a small batch) the socket's send queue copied it. */
  rv = uvq_udp_send(u, b);
  report_to_core(ep, u);
  return rv;
}

static void uep_wake(uvq_endpoint *ep, void *user_data) {
  uvq_uv_endpoint *uep = user_data;
  (void)ep;
  /* Thread-safe; coalesces. The handle outlives every waker call that can
   * reach here, because wakes after the endpoint is gone are no-ops in the
   * core. */
  uv_async_send(&uep->async);
}

static uint64_t uep_wall_time(uvq_endpoint *ep, void *user_data) {
  (void)ep;
  (void)user_data;
  return (uint64_t)time(NULL);
}

/* The link a new connection starts on: the MTU of the interface holding
 * its local address, at most 1500 for a peer off that interface's subnet
 * (0: unknown, a wildcard-bound socket without PKTINFO). */
static size_t uep_path_mtu(uvq_endpoint *ep, const uvq_path *path,
                           void *user_data) {
  uvq_uv_endpoint *uep = user_data;
  (void)ep;
  return uvq_ifmtu_get(&uep->ifmtu, &path->local, &path->remote,
                       uv_now(uep->loop));
}

static int uep_accept(uvq_endpoint *ep, uvq_conn *conn,
                      const uvq_accept_info *info,
                      const uvq_app_callbacks **pcallbacks,
                      void **pconn_user_data, void *user_data) {
  uvq_uv_endpoint *uep = user_data;
  (void)ep;
  if (uep->on_accept == NULL || uep->state != UEP_RUNNING) {
    return UVQ_ERR_REFUSED;
  }
  return uep->on_accept(uep, conn, info, pcallbacks, pconn_user_data,
                        uep->user_data);
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                  */
/* ------------------------------------------------------------------------ */

/* Frees |uep| once no handle refers to its fds any more. */
static void uep_free(uvq_uv_endpoint *uep) {
  size_t i;

  /* Closing makes a last try at what is queued; what the core counted as
   * sent and never left is reported before |close_cb| reads the stats. */
  for (i = 0; i < uep->nsocks; i++) {
    uvq_udp *u = &uep->socks[i]->udp;
    uvq_udp_close(u);
    report_to_core(uep->ep, u);
    uvq_free(uep->mem, u->txq);
    u->txq = NULL;
  }
  if (uep->tfd >= 0) {
    close(uep->tfd);
    uep->tfd = -1;
  }
  if (uep->close_cb) {
    /* The core endpoint is still alive here so |cb| can read its stats. */
    uep->close_cb(uep, uep->user_data);
  }
  uvq_endpoint_del(uep->ep);
  /* Freed only now: |cb| may still read their counters. */
  for (i = 0; i < uep->nsocks; i++) {
    uvq_free(uep->mem, uep->socks[i]);
  }
  uvq_free(uep->mem, uep->socks);
  uvq_free(uep->mem, uep->rx);
  uvq_free(uep->mem, uep);
}

static void uep_handle_closed(uv_handle_t *h) {
  uvq_uv_endpoint *uep = h->data;

  if (--uep->handles_open == 0) {
    uep_free(uep);
  }
}

/* The one way an endpoint ends, also how a half-built one is undone:
 * every handle that was initialized (its data set) is closed through the
 * loop, and the endpoint is freed when the last one is — at once if none
 * was. */
static void uep_close_handles(uvq_uv_endpoint *uep) {
  uv_handle_t *own[] = {(uv_handle_t *)&uep->timer, (uv_handle_t *)&uep->async,
                        (uv_handle_t *)&uep->prepare,
                        (uv_handle_t *)&uep->idle};
  size_t i;

  uep->state = UEP_CLOSING_HANDLES;
  if (uep->shard != NULL) {
    /* Nothing more is handed to this shard from now on. */
    uvq_uv_shard_stopping(uep->shard);
  }
  /* Held until every close is asked for, so none can free us early. */
  uep->handles_open = 1;
  for (i = 0; i < uep->nsocks; i++) {
    uep->handles_open++;
    uv_close((uv_handle_t *)&uep->socks[i]->poll, uep_handle_closed);
  }
  for (i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
    if (own[i]->data != NULL) {
      uep->handles_open++;
      uv_close(own[i], uep_handle_closed);
    }
  }
  if (--uep->handles_open == 0) {
    uep_free(uep);
  }
}

/* ------------------------------------------------------------------------ */
/* Driving the core                                                         */
/* ------------------------------------------------------------------------ */

/* Every call into the core ends here. Inside one (an application callback
 * asked for a connect, a migration or a close), the core's own re-entry
 * guard refuses the flush and the outer call's flush follows when it
 * returns; otherwise the datagrams go out and uep_update follows. */
static void uep_flush(uvq_uv_endpoint *uep) {
  int rv;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  rv = uvq_endpoint_flush(uep->ep, uv_hrtime());
  if (rv == UVQ_ERR_INVALID_STATE) {
    return;
  }
  /* flush_inner returns only 0 or UVQ_FLUSH_BLOCKED: a connection's own
   * failure has become its close. */
  uep->blocked = rv == UVQ_FLUSH_BLOCKED;
  uep_update(uep);
}

static void uep_arm_timer(uvq_uv_endpoint *uep) {
  uvq_tstamp exp = uvq_endpoint_next_expiry(uep->ep);
  struct itimerspec its;

  if (exp != UVQ_TSTAMP_MAX && exp <= uv_hrtime()) {
    /* Already due — typically a pacing deadline that passed while we
     * wrote. Programming a timerfd for it costs a syscall plus an hrtimer
     * interrupt (a fifth of the server's CPU in a bulk transfer); an
     * active idle handle instead makes the loop poll without blocking and
     * run it in the next iteration. A timerfd still armed for a later
     * deadline is left alone: firing early only re-arms. */
    if (!uep->idle_active) {
      uep->idle_active = 1;
      uv_idle_start(&uep->idle, uep_on_idle);
    }
    return;
  }
  if (exp == uep->armed) {
    /* Already armed for this deadline (or stopped for "never"). */
    return;
  }
  if (uep->armed != UVQ_TSTAMP_MAX && exp != UVQ_TSTAMP_MAX &&
      exp > uep->armed && exp - uep->armed < UVQ_UV_TIMER_SLACK) {
    /* The deadline moved a little later — the idle timeout follows every
     * received packet, so in a transfer it moves in nearly every loop
     * iteration. Leave the timer where it is: firing early only re-arms
     * it (uep_on_timer), once, where a syscall each time costs more. */
    return;
  }
  memset(&its, 0, sizeof(its));
  if (exp != UVQ_TSTAMP_MAX) {
    /* An absolute deadline on CLOCK_MONOTONIC, the clock uv_hrtime()
     * reads (and so the clock of every |now| we give the core), to the
     * nanosecond: a pacing deadline 200 us away fires 200 us later, not at
     * the next millisecond. A deadline already due becomes 1 ns after the
     * clock's origin (all-zero would disarm), which fires at once. */
    uvq_tstamp at = exp == 0 ? 1 : exp;
    its.it_value.tv_sec = (time_t)(at / UVQ_SECONDS);
    its.it_value.tv_nsec = (long)(at % UVQ_SECONDS);
  }
  /* Setting disarms or re-arms and clears an expiration not yet read. */
  (void)timerfd_settime(uep->tfd, TFD_TIMER_ABSTIME, &its, NULL);
  uep->armed = exp;
}

/* Nonzero if a socket's send queue still holds datagrams. */
static int queues_pending(const uvq_uv_endpoint *uep) {
  for (size_t i = 0; i < uep->nsocks; i++) {
    if (uvq_udp_pending(&uep->socks[i]->udp)) {
      return 1;
    }
  }
  return 0;
}

/* After the outermost flush (uep_flush, which every call into the core
 * ends with; never inside one): send what is queued, watch for
 * writability if blocked, re-arm the timer, and finish a graceful close
 * once no connection is left. */
static void uep_update(uvq_uv_endpoint *uep) {
  int events, full = 0;
  size_t i;

  /* What the send callbacks queued leaves now: the small batches of every
   * connection the last call served, in as few sendmmsg calls as fit. A
   * full socket leaves the rest queued until it is writable. */
  for (i = 0; i < uep->nsocks; i++) {
    full |= uvq_udp_flush(&uep->socks[i]->udp);
    report_to_core(uep->ep, &uep->socks[i]->udp);
  }
  if (full) {
    uep->blocked = 1;
  }
  if (uep->shard != NULL) {
    uvq_uv_shard_publish(uep->shard, uvq_endpoint_conn_count(uep->ep));
  }
  if (uep->state == UEP_CLOSING && !(uep->blocked && queues_pending(uep)) &&
      (uvq_endpoint_conn_count(uep->ep) == 0 ||
       (uep->close_now && !uep->blocked))) {
    /* With close_now the flush that just returned wrote every close packet
     * that was due (it was not blocked); the connections left are only
     * waiting out their closing/draining periods, and uvq_endpoint_del
     * frees them with the rest. Either way, datagrams still queued because
     * a socket was full (a connection's last CONNECTION_CLOSE, say) are
     * waited for: the sockets are watched for writability below. */
    uep_close_handles(uep);
    return;
  }
  /* Which socket pushed back is not known here: watch them all. */
  events = UV_READABLE | (uep->blocked ? UV_WRITABLE : 0);
  for (i = 0; i < uep->nsocks; i++) {
    uep_sock *k = uep->socks[i];
    if (events != k->poll_events) {
      k->poll_events = events;
      uv_poll_start(&k->poll, events, uep_on_poll);
    }
  }
  uep_arm_timer(uep);
}

static void uep_on_icmp(void *arg, const struct sockaddr *dst,
                        uvq_icmp_kind kind) {
  uvq_uv_endpoint *uep = arg;

  (void)uvq_endpoint_recv_icmp(uep->ep, dst, kind, uv_hrtime());
}

static void uep_read(uvq_uv_endpoint *uep, uep_sock *k) {
  uvq_udp *udp = &k->udp;
  size_t total = 0;
  uvq_path path;
  uvq_udp_meta meta;
  int i, n, errors = 0;

  while (total < UVQ_UV_MAX_RECV_PER_WAKE) {
    uvq_tstamp now;
    size_t before = (size_t)udp->stats.datagrams_received;

    n = uvq_udp_recv(udp, uep->rx);
    if (n < 0 && errors++ < 4) {
      /* The socket's pending error (ECONNREFUSED and the like, left by an
       * ICMP error; reading it cleared it) is never fatal: the error queue
       * says which peer it concerned; then read on. */
      (void)uvq_udp_read_errors(udp, uep_on_icmp, uep);
      continue;
    }
    if (n <= 0) {
      break;
    }
    now = uv_hrtime();
    for (i = 0; i < n; ++i) {
      struct msghdr *h = &uep->rx->msgs[i].msg_hdr;
      if (h->msg_flags & MSG_TRUNC) {
        /* Larger than any GRO super-buffer or datagram QUIC sends us; the
         * tail is gone. */
        udp->stats.truncated++;
        continue;
      }
      if (uvq_addr_set(&path.remote, h->msg_name, h->msg_namelen) != 0) {
        continue;
      }
      uvq_udp_meta_get(udp, uep->rx, i, &meta);
      /* On a wildcard socket the local address is the one the peer wrote
       * to (PKTINFO), so replies leave from it; otherwise the bound one. */
      path.local = meta.has_local ? meta.local : udp->bound;
      if (uep->shard != NULL &&
          uvq_uv_shard_steer(uep->shard, &udp->stats, &path, meta.ecn,
                             uep->rx->bufs[i], uep->rx->msgs[i].msg_len,
                             meta.segment_size)) {
        /* Another shard's: handed to it (or counted as dropped). */
        continue;
      }
      (void)uvq_endpoint_recv(uep->ep, &path, meta.ecn, uep->rx->bufs[i],
                              uep->rx->msgs[i].msg_len, meta.segment_size, now);
    }
    total += (size_t)udp->stats.datagrams_received - before;
    if (n < UVQ_UDP_RECV_BATCH) {
      break;
    }
  }
}

/* Any socket's poll handle. */
static void uep_on_poll(uv_poll_t *h, int status, int events) {
  uvq_uv_endpoint *uep = h->data;
  uep_sock *k = sock_of(h);

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  if (status < 0) {
    /* POLLERR: an ICMP error on the error queue (IP_RECVERR). libuv
     * stopped the handle: read the queue (first: the core acts on an
     * error only for a peer it has heard nothing from) and the datagrams,
     * and watch the socket again. */
    (void)uvq_udp_read_errors(&k->udp, uep_on_icmp, uep);
    uep_read(uep, k);
    uv_poll_start(&k->poll, k->poll_events, uep_on_poll);
    events = 0;
  }
  if (events & UV_READABLE) {
    uep_read(uep, k);
  }
  if (events & UV_WRITABLE) {
    k->udp.stats.writable_wakeups++;
  }
  /* One flush covers both the received batch and a writable socket. */
  uep_flush(uep);
}

/* A deadline is due: the timerfd fired, or the idle handle ran one that
 * was due already. The counters are the first socket's. */
static void uep_expire(uvq_uv_endpoint *uep, uint64_t *counter) {
  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  (*counter)++;
  uvq_endpoint_handle_expiry(uep->ep, uv_hrtime());
  uep_flush(uep);
}

static void uep_on_timer(uv_poll_t *h, int status, int events) {
  uvq_uv_endpoint *uep = h->data;
  uint64_t expirations;

  (void)status;
  (void)events;
  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  /* Consume the expiration so the level-triggered poll quiets down; EAGAIN
   * (re-armed since it fired) is harmless: the core decides what is due. */
  if (read(uep->tfd, &expirations, sizeof(expirations)) < 0) {
    expirations = 0;
  }
  uep->armed = UVQ_TSTAMP_MAX;
  uep_expire(uep, &uep->socks[0]->udp.stats.timer_fires);
}

static void uep_on_idle(uv_idle_t *h) {
  uvq_uv_endpoint *uep = h->data;

  uv_idle_stop(h);
  uep->idle_active = 0;
  uep_expire(uep, &uep->socks[0]->udp.stats.expiry_immediate);
}

static void uep_on_async(uv_async_t *h) {
  uvq_uv_endpoint *uep = h->data;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  uvq_endpoint_process_wakes(uep->ep);
  uep_flush(uep);
}

void uvq_uv_ep_recv(uvq_uv_endpoint *uep, const uvq_path *path, uint8_t ecn,
                    const uint8_t *data, size_t len, size_t segment_size) {
  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  (void)uvq_endpoint_recv(uep->ep, path, ecn, data, len, segment_size,
                          uv_hrtime());
}

void uvq_uv_ep_flush(uvq_uv_endpoint *uep) { uep_flush(uep); }

/* Runs once per loop iteration, just before the loop blocks for I/O: picks
 * up whatever the application asked of the core from outside our own
 * callbacks (its timers, its other handles, before uv_run). */
static void uep_on_prepare(uv_prepare_t *h) { uep_flush(h->data); }

/* ------------------------------------------------------------------------ */
/* Construction                                                             */
/* ------------------------------------------------------------------------ */

void uvq_uv_config_default(uvq_uv_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_UV_CONFIG_VERSION;
  cfg->sockbuf = UVQ_UV_SOCKBUF_DEFAULT;
}

int uvq_uv_config_read(uvq_uv_config *dst, const uvq_uv_config *src) {
  uvq_uv_config_default(dst);
  if (src == NULL) {
    return 0;
  }
  switch (src->version) {
  case 1:
    /* An older header's config: the fields before shards. */
    memcpy(dst, src, offsetof(uvq_uv_config, shards));
    dst->version = UVQ_UV_CONFIG_VERSION;
    return 0;
  case UVQ_UV_CONFIG_VERSION:
    *dst = *src;
    return 0;
  default:
    return UVQ_ERR_INVALID_ARGUMENT;
  }
}

/* The informational clamp note, to the log_cb of the endpoint's settings
 * (|user_data|). */
static void uep_log_info(void *user_data, const char *line) {
  const uvq_settings *st = user_data;

  st->log_cb(st->log_cb_user_data, UVQ_LOG_INFO, NULL, line);
}

/* Opens a socket bound to |addr| (AF_INET or AF_INET6, checked by the
 * caller), watches it, and appends it to uep->socks. Warnings go where the
 * endpoint's settings say. Returns 0, UVQ_ERR_IO (errno left set) or
 * UVQ_ERR_NOMEM. */
static int uep_sock_add(uvq_uv_endpoint *uep, const struct sockaddr *addr,
                        int reuseport) {
  const uvq_settings *settings = uvq_endpoint_get_settings(uep->ep);
  socklen_t len = addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);
  uvq_udp_opts opts;
  uep_sock **socks, *k;
  int saved;

  socks =
      uvq_realloc(uep->mem, uep->socks, (uep->nsocks + 1) * sizeof(uep_sock *));
  if (socks == NULL) {
    return UVQ_ERR_NOMEM;
  }
  uep->socks = socks;
  k = uvq_calloc(uep->mem, 1, sizeof(*k));
  if (k == NULL) {
    return UVQ_ERR_NOMEM;
  }
  memset(&opts, 0, sizeof(opts));
  opts.bufsize = uep->cfg.sockbuf;
  opts.min_bufsize = UVQ_UV_MIN_SOCKBUF;
  opts.no_gso = uep->cfg.no_gso;
  opts.no_gro = uep->cfg.no_gro;
  opts.reuseport = reuseport;
  opts.log = settings->log;
  opts.log_user_data = settings->log_user_data;
  if (settings->log_cb != NULL && settings->log_level >= UVQ_LOG_INFO) {
    opts.info = uep_log_info;
    opts.info_user_data = (void *)(uintptr_t)settings;
  }
  if (uvq_udp_open(&k->udp, addr, len, &opts) != 0) {
    saved = errno;
    uvq_free(uep->mem, k);
    errno = saved;
    return UVQ_ERR_IO;
  }
  if (uep->nsocks > 0) {
    /* GSO as the first socket sends now (uvq_uv_endpoint_set_gso, a
     * fallback). */
    k->udp.gso = k->udp.gso && uep->socks[0]->udp.gso;
  }
  /* Without it (no memory) every batch is sent at once. */
  k->udp.txq = uvq_calloc(uep->mem, 1, sizeof(*k->udp.txq));
  if (uv_poll_init(uep->loop, &k->poll, k->udp.fd) != 0) {
    saved = errno;
    uvq_udp_close(&k->udp);
    uvq_free(uep->mem, k->udp.txq);
    uvq_free(uep->mem, k);
    errno = saved;
    return UVQ_ERR_IO;
  }
  k->poll.data = uep;
  k->poll_events = UV_READABLE;
  uv_poll_start(&k->poll, UV_READABLE, uep_on_poll);
  uep->socks[uep->nsocks++] = k;
  return 0;
}

int uvq_uv_ep_new(uvq_uv_endpoint **puep, uv_loop_t *loop, int is_server,
                  const struct sockaddr *addr, const uvq_uv_config *uvcfg,
                  const uvq_settings *settings, uvq_tls_ctx *tls,
                  uvq_uv_accept_cb on_accept, void *user_data,
                  uvq_uv_shard *shard) {
  uvq_endpoint_config cfg;
  uvq_uv_endpoint *uep;
  uvq_uv_config c;
  int rv, saved;

  if (puep == NULL || loop == NULL || addr == NULL || tls == NULL ||
      (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_uv_config_read(&c, uvcfg);
  if (rv != 0) {
    return rv;
  }
  uep = uvq_calloc(c.mem ? c.mem : uvq_mem_default(), 1, sizeof(*uep));
  if (uep == NULL) {
    return UVQ_ERR_NOMEM;
  }
  uep->cfg = c;
  uep->mem = c.mem ? c.mem : uvq_mem_default();
  uep->loop = loop;
  uep->is_server = is_server;
  uep->on_accept = on_accept;
  uep->user_data = user_data;
  uep->armed = UVQ_TSTAMP_MAX;
  uep->tfd = -1;
  /* From here on every failure is undone by uep_close_handles. */
  uep->rx = uvq_malloc(uep->mem, sizeof(*uep->rx));
  if (uep->rx == NULL) {
    rv = UVQ_ERR_NOMEM;
    goto fail;
  }
  /* CLOCK_MONOTONIC is the clock of uv_hrtime() on Linux (libuv reads it
   * with clock_gettime(CLOCK_MONOTONIC)), so core deadlines, which are in
   * uv_hrtime() nanoseconds, arm it as absolute times unchanged. */
  uep->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (uep->tfd < 0) {
    rv = UVQ_ERR_IO;
    goto fail;
  }

  uvq_endpoint_config_default(&cfg);
  cfg.is_server = is_server;
  cfg.settings = settings;
  cfg.tls = tls;
  cfg.mem = c.mem;
  cfg.user_data = uep;
  cfg.send = uep_send;
  cfg.wake = uep_wake;
  cfg.wall_time = uep_wall_time;
  cfg.path_mtu = uep_path_mtu;
  cfg.on_accept = is_server ? uep_accept : NULL;
  if (shard != NULL) {
    uep->shard = shard;
    cfg.cid_shard = uvq_uv_shard_index(shard);
    cfg.cid_shard_set = 1;
  }
  rv = uvq_endpoint_new(&uep->ep, &cfg);
  if (rv != 0) {
    goto fail;
  }
  rv = uep_sock_add(uep, addr, shard != NULL);
  if (rv != 0) {
    goto fail;
  }

  if (uv_poll_init(loop, &uep->timer, uep->tfd) != 0) {
    rv = UVQ_ERR_IO;
    goto fail;
  }
  uep->timer.data = uep;
  if (uv_async_init(loop, &uep->async, uep_on_async) != 0) {
    rv = UVQ_ERR_IO;
    goto fail;
  }
  uep->async.data = uep;
  /* These only fill structs: they cannot fail on a valid loop. */
  uv_prepare_init(loop, &uep->prepare);
  uep->prepare.data = uep;
  uv_idle_init(loop, &uep->idle);
  uep->idle.data = uep;

  uv_poll_start(&uep->timer, UV_READABLE, uep_on_timer);
  uv_prepare_start(&uep->prepare, uep_on_prepare);
  /* The prepare hook alone must not keep the loop alive. */
  uv_unref((uv_handle_t *)&uep->prepare);

  *puep = uep;
  return 0;

fail:
  saved = errno;
  uep_close_handles(uep);
  errno = saved;
  return rv;
}

int uvq_uv_listen(uvq_uv_endpoint **puep, uv_loop_t *loop,
                  const struct sockaddr *addr, const uvq_uv_config *cfg,
                  const uvq_settings *settings, uvq_tls_ctx *tls,
                  uvq_uv_accept_cb on_accept, void *user_data) {
  if (on_accept == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (cfg != NULL && cfg->version >= 2 && cfg->shards > 1) {
    return uvq_uv_group_listen(puep, loop, addr, cfg, settings, tls, on_accept,
                               user_data);
  }
  return uvq_uv_ep_new(puep, loop, 1, addr, cfg, settings, tls, on_accept,
                       user_data, NULL);
}

int uvq_uv_client_new(uvq_uv_endpoint **puep, uv_loop_t *loop, int family,
                      const struct sockaddr *local, const uvq_uv_config *cfg,
                      const uvq_settings *settings, uvq_tls_ctx *tls,
                      void *user_data) {
  struct sockaddr_storage any;

  if (local == NULL) {
    memset(&any, 0, sizeof(any));
    if (family == AF_INET) {
      ((struct sockaddr_in *)&any)->sin_family = AF_INET;
    } else if (family == AF_INET6) {
      ((struct sockaddr_in6 *)&any)->sin6_family = AF_INET6;
    } else {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    local = (const struct sockaddr *)&any;
  } else if (local->sa_family != family) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  return uvq_uv_ep_new(puep, loop, 0, local, cfg, settings, tls, NULL,
                       user_data, NULL);
}

/* The path's local address for a connection to |remote|. On a wildcard
 * socket, received datagrams report the address they were sent to
 * (PKTINFO), so the path must start with the address the kernel will pick
 * as our source, or the first reply would look like a new path: ask the
 * routing table with a throwaway connected socket. */
static void uep_local_for(const uep_sock *k, const uvq_addr *remote,
                          uvq_addr *local) {
  const uvq_udp *udp = &k->udp;
  const uvq_addr *bound = &udp->bound;
  struct sockaddr_storage ss = {0};
  socklen_t sslen = sizeof(ss);
  int fd;

  *local = *bound;
  if (!udp->pktinfo) {
    return;
  }
  fd = socket(remote->ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) {
    return;
  }
  if (connect(fd, (const struct sockaddr *)&remote->ss, remote->len) == 0 &&
      getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0 &&
      ss.ss_family == bound->ss.ss_family) {
    if (ss.ss_family == AF_INET) {
      ((struct sockaddr_in *)&ss)->sin_port =
          ((const struct sockaddr_in *)&bound->ss)->sin_port;
    } else {
      ((struct sockaddr_in6 *)&ss)->sin6_port =
          ((const struct sockaddr_in6 *)&bound->ss)->sin6_port;
    }
    (void)uvq_addr_set(local, (const struct sockaddr *)&ss, sslen);
  }
  close(fd);
}

/* The family of the endpoint's sockets. */
static int uep_family(const uvq_uv_endpoint *uep) {
  return uep->socks[0]->udp.bound.ss.ss_family;
}

int uvq_uv_connect_with(uvq_uv_endpoint *uep, const struct sockaddr *remote,
                        const uvq_connect_params *params, uvq_conn **pconn) {
  uvq_connect_params p;
  uvq_path path;
  socklen_t len;
  int rv;

  if (uep == NULL || remote == NULL || params == NULL || uep->is_server) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (uep->state != UEP_RUNNING) {
    return UVQ_ERR_SHUTDOWN;
  }
  if (remote->sa_family != uep_family(uep)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  len = remote->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                     : sizeof(struct sockaddr_in6);
  rv = uvq_addr_set(&path.remote, remote, len);
  if (rv != 0) {
    return rv;
  }
  uep_local_for(uep->socks[0], &path.remote, &path.local);
  p = *params;
  p.path = &path;
  rv = uvq_endpoint_connect(uep->ep, &p, uv_hrtime(), pconn);
  if (rv == 0) {
    /* The Initial goes out now when called from outside the core, or from
     * the prepare hook / the outer flush otherwise. */
    uep_flush(uep);
  }
  return rv;
}

int uvq_uv_connect(uvq_uv_endpoint *uep, const struct sockaddr *remote,
                   const char *server_name, const uvq_app_callbacks *callbacks,
                   void *conn_user_data, uvq_conn **pconn) {
  uvq_connect_params params;
  uvq_connect_params_default(&params);
  params.server_name = server_name;
  params.callbacks = callbacks;
  params.user_data = conn_user_data;
  return uvq_uv_connect_with(uep, remote, &params, pconn);
}

void uvq_uv_endpoint_close(uvq_uv_endpoint *uep, uvq_uv_close_cb cb) {
  if (uep != NULL && uep->group != NULL) {
    uvq_uv_group_close(uep->group, cb, 0);
    return;
  }
  if (uep == NULL || uep->state != UEP_RUNNING) {
    return;
  }
  uep->state = UEP_CLOSING;
  uep->close_cb = cb;
  /* Only marks the connections (allowed inside callbacks too); the close
   * packets leave with the next flush: this one when called from outside
   * the core, otherwise the outer call's. */
  uvq_endpoint_close_all(uep->ep, 0, "shutdown");
  uep_flush(uep);
}

void uvq_uv_endpoint_close_now(uvq_uv_endpoint *uep, uvq_uv_close_cb cb) {
  if (uep != NULL && uep->group != NULL) {
    uvq_uv_group_close(uep->group, cb, 1);
    return;
  }
  if (uep == NULL || uep->state == UEP_CLOSING_HANDLES ||
      (uep->state == UEP_CLOSING && uep->close_now)) {
    return;
  }
  uep->close_now = 1;
  uep->close_cb = cb;
  if (uep->state == UEP_RUNNING) {
    uep->state = UEP_CLOSING;
    uvq_endpoint_close_all(uep->ep, 0, "shutdown");
  }
  /* As for uvq_uv_endpoint_close. The flush sends the CONNECTION_CLOSEs
   * and uep_update then closes the handles. */
  uep_flush(uep);
}

uvq_endpoint *uvq_uv_endpoint_get_endpoint(uvq_uv_endpoint *uep) {
  /* A group's is NULL: it has one per shard. */
  return uep->ep;
}

int uvq_uv_endpoint_get_local_addr(uvq_uv_endpoint *uep, uvq_addr *addr) {
  if (uep == NULL || addr == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (uep->group != NULL) {
    uvq_uv_group_local_addr(uep->group, addr);
    return 0;
  }
  *addr = uep->socks[0]->udp.bound;
  return 0;
}

void *uvq_uv_endpoint_get_user_data(uvq_uv_endpoint *uep) {
  return uep->user_data;
}

void uvq_uv_stats_add(uvq_uv_stats *st, const uvq_uv_stats *x) {
  st->send_calls += x->send_calls;
  st->send_msgs += x->send_msgs;
  st->gso_msgs += x->gso_msgs;
  st->gso_fallbacks += x->gso_fallbacks;
  st->datagrams_sent += x->datagrams_sent;
  st->recv_calls += x->recv_calls;
  st->recv_buffers += x->recv_buffers;
  st->gro_buffers += x->gro_buffers;
  st->datagrams_received += x->datagrams_received;
  st->truncated += x->truncated;
  st->timer_fires += x->timer_fires;
  st->expiry_immediate += x->expiry_immediate;
  st->queued_batches += x->queued_batches;
  st->send_errors += x->send_errors;
  st->writable_wakeups += x->writable_wakeups;
  st->errqueue_reads += x->errqueue_reads;
  st->icmp_unreachable += x->icmp_unreachable;
  st->send_async_errors += x->send_async_errors;
  st->forwarded += x->forwarded;
  st->forward_overflows += x->forward_overflows;
  st->forward_received += x->forward_received;
  for (int i = 0; i < 4; i++) {
    st->ecn_sent[i] += x->ecn_sent[i];
    st->ecn_received[i] += x->ecn_received[i];
  }
}

int uvq_uv_endpoint_get_stats(uvq_uv_endpoint *uep, uvq_uv_stats *st) {
  if (uep == NULL || st == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (uep->group != NULL) {
    return uvq_uv_group_get_stats(uep->group, st);
  }
  /* Counters cover every socket; the facts (gso, gro, pktinfo, buffers)
   * are the first socket's. */
  *st = uep->socks[0]->udp.stats;
  for (size_t i = 1; i < uep->nsocks; i++) {
    uvq_uv_stats_add(st, &uep->socks[i]->udp.stats);
  }
  return 0;
}

int uvq_uv_endpoint_set_gso(uvq_uv_endpoint *uep, int enable) {
  if (uep == NULL || uep->group != NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  for (size_t i = 0; i < uep->nsocks; i++) {
    uvq_udp *u = &uep->socks[i]->udp;
    u->gso = enable && u->gso_capable;
    u->stats.gso = u->gso;
  }
  return uep->socks[0]->udp.gso;
}

void uvq_uv_endpoint_inject_gso_errno(uvq_uv_endpoint *uep, int err) {
  uep->socks[0]->udp.inject_gso_errno = err;
}

void uvq_uv_endpoint_inject_eagain(uvq_uv_endpoint *uep, unsigned n) {
  uep->socks[0]->udp.inject_eagain = n;
}

void uvq_uv_endpoint_inject_send_errno(uvq_uv_endpoint *uep, int err) {
  uep->socks[0]->udp.inject_send_errno = err;
}

int uvq_uv_endpoint_add_local(uvq_uv_endpoint *uep,
                              const struct sockaddr *local, uvq_addr *pbound) {
  int rv;

  if (uep == NULL || local == NULL || uep->is_server ||
      local->sa_family != uep_family(uep)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (uep->state != UEP_RUNNING) {
    return UVQ_ERR_SHUTDOWN;
  }
  rv = uep_sock_add(uep, local, 0);
  if (rv == 0 && pbound) {
    *pbound = uep->socks[uep->nsocks - 1]->udp.bound;
  }
  return rv;
}

int uvq_uv_conn_migrate(uvq_uv_endpoint *uep, uvq_conn *conn,
                        const struct sockaddr *local, int nat_rebinding_style,
                        uvq_addr *pbound) {
  uvq_addr from;
  uvq_conn_info info;
  int rv;

  if (uep == NULL || conn == NULL || local == NULL ||
      uvq_conn_get_endpoint(conn) != uep->ep) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_uv_endpoint_add_local(uep, local, NULL);
  if (rv != 0) {
    return rv;
  }
  /* On a wildcard socket the connection's local address is the one the
   * kernel picks toward the peer, with the new socket's port. */
  uvq_conn_get_info(conn, &info);
  uep_local_for(uep->socks[uep->nsocks - 1], &info.path->remote, &from);
  rv = uvq_conn_migrate(conn, &from, nat_rebinding_style, uv_hrtime());
  if (rv != 0) {
    return rv;
  }
  if (pbound) {
    *pbound = from;
  }
  uep_flush(uep);
  return 0;
}
