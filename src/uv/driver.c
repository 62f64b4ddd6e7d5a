/*
 * The libuv adapter: one UDP socket and one timerfd (each watched by a
 * uv_poll), one uv_async and one uv_prepare drive one uvq_endpoint. See
 * docs/internals/uv-adapter.md for the rules (when we flush, how the timer
 * is armed, how close proceeds).
 */
#include "uvquic/uvquic_uv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "uv/udp.h"

/* Socket buffer size we ask for (root may exceed [rw]mem_max; others are
 * capped by it, and warned). */
#define UVQ_UV_SOCKBUF (8 * 1024 * 1024)
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
/* The handles we close at the end: socket poll, timer poll, async,
 * prepare, idle. */
#define UVQ_UV_NHANDLES 5

/* An additional socket of a client endpoint (uvq_uv_endpoint_add_local):
 * received on like the first; sends whose path's local address is its
 * own leave through it. Lives until the endpoint closes. */
typedef struct uep_sock {
  struct uep_sock *next;
  uvq_uv_endpoint *uep;
  uvq_udp udp;
  uvq_addr local;
  uv_poll_t poll;
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
  const uvq_mem *mem;
  /* The socket and its datapath state (udp.c). */
  uvq_udp udp;
  /* The expiry timer: a CLOCK_MONOTONIC timerfd (ns resolution). */
  int tfd;
  uvq_addr local;
  int is_server;
  uvq_uv_accept_cb on_accept;
  void *user_data;

  uv_poll_t poll;
  uv_poll_t timer;
  uv_async_t async;
  uv_prepare_t prepare;
  /* Runs a deadline that is already due without a timer: see
   * uep_arm_timer. Active only while such a deadline waits. */
  uv_idle_t idle;
  int idle_active;
  /* Events the poll handle watches now. */
  int poll_events;
  /* The last flush was blocked: watch UV_WRITABLE. */
  int blocked;
  /* Depth of calls into the core (recv, flush, expiry, wakes): the core is
   * not re-entrant, so what an app asks for from inside its callbacks is
   * done after the outermost call returns. */
  int in_core;
  /* close_all must still be called (close was asked from a callback). */
  int close_pending;
  /* uvq_uv_endpoint_close_now: free once the close packets are out,
   * without waiting for closing/draining periods. */
  int close_now;
  /* Expiry the timer is armed for (UVQ_TSTAMP_MAX: stopped). */
  uvq_tstamp armed;

  uep_state state;
  int handles_open;
  uvq_uv_close_cb close_cb;

  uvq_udp_rx *rx;
  /* Additional sockets (migration), newest first. */
  uep_sock *socks;
};

static void uep_update(uvq_uv_endpoint *uep);
static void uep_on_poll(uv_poll_t *h, int status, int events);
static void uep_on_sock_poll(uv_poll_t *h, int status, int events);
static void uep_on_timer(uv_poll_t *h, int status, int events);
static void uep_on_idle(uv_idle_t *h);

/* ------------------------------------------------------------------------ */
/* Core callbacks                                                           */
/* ------------------------------------------------------------------------ */

/* Whether datagrams from local address |a| leave through a socket bound
 * to |bound| (on a wildcard socket: any address of the family, same port;
 * PKTINFO then sets the source). */
static int sock_serves(const uvq_udp *u, const uvq_addr *bound,
                       const uvq_addr *a) {
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
  /* The core's batches carry their path: a connection that migrated sends
   * from the additional socket bound to its new local address. */
  uvq_udp *u = &uep->udp;
  ssize_t rv;
  for (uep_sock *k = uep->socks; k; k = k->next) {
    if (sock_serves(&k->udp, &k->local, &b->path->local)) {
      u = &k->udp;
      break;
    }
  }
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
/* Driving the core                                                         */
/* ------------------------------------------------------------------------ */

static void uep_one_handle_closed(uvq_uv_endpoint *uep) {
  if (--uep->handles_open > 0) {
    return;
  }
  /* Every handle is closed: nothing of libuv refers to the fds any more.
   * Closing makes a last try at what is queued; what the core counted as
   * sent and never left is reported before |close_cb| reads the stats. */
  uvq_udp_close(&uep->udp);
  report_to_core(uep->ep, &uep->udp);
  uvq_free(uep->mem, uep->udp.txq);
  uep->udp.txq = NULL;
  for (uep_sock *k = uep->socks; k; k = k->next) {
    uvq_udp_close(&k->udp);
    report_to_core(uep->ep, &k->udp);
    uvq_free(uep->mem, k->udp.txq);
    k->udp.txq = NULL;
  }
  close(uep->tfd);
  uep->tfd = -1;
  if (uep->close_cb) {
    /* The core endpoint is still alive here so |cb| can read its stats. */
    uep->close_cb(uep, uep->user_data);
  }
  uvq_endpoint_del(uep->ep);
  /* Freed only now: |cb| may still read their counters. */
  while (uep->socks) {
    uep_sock *k = uep->socks;
    uep->socks = k->next;
    uvq_free(uep->mem, k);
  }
  uvq_free(uep->mem, uep->rx);
  uvq_free(uep->mem, uep);
}

static void uep_handle_closed(uv_handle_t *h) {
  uep_one_handle_closed(h->data);
}

/* An additional socket's poll handle points at the socket, not at the
 * endpoint. */
static void uep_sock_handle_closed(uv_handle_t *h) {
  uep_sock *k = h->data;
  uep_one_handle_closed(k->uep);
}

static void uep_close_handles(uvq_uv_endpoint *uep) {
  uep->state = UEP_CLOSING_HANDLES;
  uep->handles_open = UVQ_UV_NHANDLES;
  uv_close((uv_handle_t *)&uep->poll, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->timer, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->async, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->prepare, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->idle, uep_handle_closed);
  for (uep_sock *k = uep->socks; k; k = k->next) {
    uep->handles_open++;
    uv_close((uv_handle_t *)&k->poll, uep_sock_handle_closed);
  }
}

static void uep_flush(uvq_uv_endpoint *uep) {
  int rv;

  if (uep->in_core || uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  if (uep->close_pending) {
    uep->close_pending = 0;
    ++uep->in_core;
    uvq_endpoint_close_all(uep->ep, 0, "shutdown");
    --uep->in_core;
  }
  ++uep->in_core;
  rv = uvq_endpoint_flush(uep->ep, uv_hrtime());
  --uep->in_core;
  /* A negative result is an internal failure of one connection, which the
   * core has already turned into that connection's close; keep going. */
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
  if (uvq_udp_pending(&uep->udp)) {
    return 1;
  }
  for (const uep_sock *k = uep->socks; k; k = k->next) {
    if (uvq_udp_pending(&k->udp)) {
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
  int events, full;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  /* What the send callbacks queued leaves now: the small batches of every
   * connection the last call served, in as few sendmmsg calls as fit. A
   * full socket leaves the rest queued until it is writable. */
  full = uvq_udp_flush(&uep->udp);
  report_to_core(uep->ep, &uep->udp);
  for (uep_sock *k = uep->socks; k; k = k->next) {
    full |= uvq_udp_flush(&k->udp);
    report_to_core(uep->ep, &k->udp);
  }
  if (full) {
    uep->blocked = 1;
  }
  if (uep->state == UEP_CLOSING && !(uep->blocked && queues_pending(uep)) &&
      (uvq_endpoint_conn_count(uep->ep) == 0 ||
       (uep->close_now && !uep->close_pending && !uep->blocked))) {
    /* With close_now the flush that just returned wrote every close packet
     * that was due (it was not blocked); the connections left are only
     * waiting out their closing/draining periods, and uvq_endpoint_del
     * frees them with the rest. Either way, datagrams still queued because
     * the socket was full (a connection's last CONNECTION_CLOSE, say) are
     * waited for: the socket is watched for writability below. */
    uep_close_handles(uep);
    return;
  }
  events = UV_READABLE | (uep->blocked ? UV_WRITABLE : 0);
  if (events != uep->poll_events) {
    uep->poll_events = events;
    uv_poll_start(&uep->poll, events, uep_on_poll);
  }
  /* Which socket pushed back is not known here: watch them all. */
  for (uep_sock *k = uep->socks; k; k = k->next) {
    if (events != k->poll_events) {
      k->poll_events = events;
      uv_poll_start(&k->poll, events, uep_on_sock_poll);
    }
  }
  uep_arm_timer(uep);
}

static void uep_on_icmp(void *arg, const struct sockaddr *dst,
                        uvq_icmp_kind kind) {
  uvq_uv_endpoint *uep = arg;

  ++uep->in_core;
  (void)uvq_endpoint_recv_icmp(uep->ep, dst, kind, uv_hrtime());
  --uep->in_core;
}

static void uep_read(uvq_uv_endpoint *uep, uvq_udp *udp,
                     const uvq_addr *bound) {
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
    ++uep->in_core;
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
      path.local = meta.has_local ? meta.local : *bound;
      (void)uvq_endpoint_recv(uep->ep, &path, meta.ecn, uep->rx->bufs[i],
                              uep->rx->msgs[i].msg_len, meta.segment_size, now);
    }
    --uep->in_core;
    total += (size_t)udp->stats.datagrams_received - before;
    if (n < UVQ_UDP_RECV_BATCH) {
      break;
    }
  }
}

static void uep_on_poll(uv_poll_t *h, int status, int events) {
  uvq_uv_endpoint *uep = h->data;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  if (status < 0) {
    /* POLLERR: an ICMP error on the error queue (IP_RECVERR). libuv
     * stopped the handle: read the queue (first: the core acts on an
     * error only for a peer it has heard nothing from) and the datagrams,
     * and watch the socket again. */
    (void)uvq_udp_read_errors(&uep->udp, uep_on_icmp, uep);
    uep_read(uep, &uep->udp, &uep->local);
    uv_poll_start(&uep->poll, uep->poll_events, uep_on_poll);
    events = 0;
  }
  if (events & UV_READABLE) {
    uep_read(uep, &uep->udp, &uep->local);
  }
  if (events & UV_WRITABLE) {
    uep->udp.stats.writable_wakeups++;
  }
  /* One flush covers both the received batch and a writable socket. */
  uep_flush(uep);
}

static void uep_on_sock_poll(uv_poll_t *h, int status, int events) {
  uep_sock *k = h->data;
  uvq_uv_endpoint *uep = k->uep;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  if (status < 0) {
    /* POLLERR, as in uep_on_poll. */
    (void)uvq_udp_read_errors(&k->udp, uep_on_icmp, uep);
    uep_read(uep, &k->udp, &k->local);
    uv_poll_start(&k->poll, k->poll_events, uep_on_sock_poll);
    events = 0;
  }
  if (events & UV_READABLE) {
    uep_read(uep, &k->udp, &k->local);
  }
  if (events & UV_WRITABLE) {
    k->udp.stats.writable_wakeups++;
  }
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
  uep->udp.stats.timer_fires++;
  uep->armed = UVQ_TSTAMP_MAX;
  ++uep->in_core;
  uvq_endpoint_handle_expiry(uep->ep, uv_hrtime());
  --uep->in_core;
  uep_flush(uep);
}

static void uep_on_idle(uv_idle_t *h) {
  uvq_uv_endpoint *uep = h->data;

  uv_idle_stop(h);
  uep->idle_active = 0;
  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  uep->udp.stats.expiry_immediate++;
  ++uep->in_core;
  uvq_endpoint_handle_expiry(uep->ep, uv_hrtime());
  --uep->in_core;
  uep_flush(uep);
}

static void uep_on_async(uv_async_t *h) {
  uvq_uv_endpoint *uep = h->data;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  ++uep->in_core;
  uvq_endpoint_process_wakes(uep->ep);
  --uep->in_core;
  uep_flush(uep);
}

/* Runs once per loop iteration, just before the loop blocks for I/O: picks
 * up whatever the application asked of the core from outside our own
 * callbacks (its timers, its other handles, before uv_run). */
static void uep_on_prepare(uv_prepare_t *h) {
  uvq_uv_endpoint *uep = h->data;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  uep_flush(uep);
}

/* ------------------------------------------------------------------------ */
/* Construction                                                             */
/* ------------------------------------------------------------------------ */

/* The informational clamp note, to the settings' log_cb (the settings
 * outlive the uvq_udp_open call this runs in). */
static void uep_log_info(void *user_data, const char *line) {
  const uvq_settings *st = user_data;

  st->log_cb(st->log_cb_user_data, UVQ_LOG_INFO, NULL, line);
}

static int uep_new(uvq_uv_endpoint **puep, uv_loop_t *loop, int is_server,
                   const struct sockaddr *addr, const uvq_settings *settings,
                   uvq_tls_ctx *tls, uvq_uv_accept_cb on_accept,
                   void *user_data) {
  const uvq_mem *mem = uvq_mem_default();
  uvq_endpoint_config cfg;
  uvq_uv_endpoint *uep;
  uvq_udp_opts opts;
  socklen_t addrlen;
  const char *env;
  int rv, saved;

  if (puep == NULL || loop == NULL || addr == NULL || tls == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (addr->sa_family == AF_INET) {
    addrlen = sizeof(struct sockaddr_in);
  } else if (addr->sa_family == AF_INET6) {
    addrlen = sizeof(struct sockaddr_in6);
  } else {
    return UVQ_ERR_INVALID_ARGUMENT;
  }

  uep = uvq_calloc(mem, 1, sizeof(*uep));
  if (uep == NULL) {
    return UVQ_ERR_NOMEM;
  }
  uep->mem = mem;
  uep->loop = loop;
  uep->is_server = is_server;
  uep->on_accept = on_accept;
  uep->user_data = user_data;
  uep->armed = UVQ_TSTAMP_MAX;
  uep->rx = uvq_malloc(mem, sizeof(*uep->rx));
  if (uep->rx == NULL) {
    rv = UVQ_ERR_NOMEM;
    goto fail_rx;
  }

  memset(&opts, 0, sizeof(opts));
  opts.bufsize = UVQ_UV_SOCKBUF;
  opts.min_bufsize = UVQ_UV_MIN_SOCKBUF;
  env = getenv("UVQ_UV_NO_GSO");
  opts.no_gso = env != NULL && env[0] != '\0' && env[0] != '0';
  env = getenv("UVQ_UV_NO_GRO");
  opts.no_gro = env != NULL && env[0] != '\0' && env[0] != '0';
  if (settings != NULL) {
    opts.log = settings->log;
    opts.log_user_data = settings->log_user_data;
    if (settings->log_cb != NULL && settings->log_level >= UVQ_LOG_INFO) {
      opts.info = uep_log_info;
      opts.info_user_data = (void *)(uintptr_t)settings;
    }
  }
  if (uvq_udp_open(&uep->udp, addr, addrlen, &opts) != 0) {
    rv = UVQ_ERR_IO;
    goto fail_socket;
  }
  /* Without it (no memory) every batch is sent at once. */
  uep->udp.txq = uvq_calloc(mem, 1, sizeof(*uep->udp.txq));
  uep->local = uep->udp.bound;
  /* CLOCK_MONOTONIC is the clock of uv_hrtime() on Linux (libuv reads it
   * with clock_gettime(CLOCK_MONOTONIC)), so core deadlines, which are in
   * uv_hrtime() nanoseconds, arm it as absolute times unchanged. */
  uep->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (uep->tfd < 0) {
    rv = UVQ_ERR_IO;
    goto fail_timerfd;
  }

  uvq_endpoint_config_default(&cfg);
  cfg.is_server = is_server;
  cfg.settings = settings;
  cfg.tls = tls;
  cfg.mem = NULL;
  cfg.user_data = uep;
  cfg.send = uep_send;
  cfg.wake = uep_wake;
  cfg.wall_time = uep_wall_time;
  cfg.on_accept = is_server ? uep_accept : NULL;
  rv = uvq_endpoint_new(&uep->ep, &cfg);
  if (rv != 0) {
    goto fail_endpoint;
  }

  if (uv_poll_init(loop, &uep->poll, uep->udp.fd) != 0) {
    rv = UVQ_ERR_IO;
    goto fail_poll;
  }
  uep->poll.data = uep;
  if (uv_poll_init(loop, &uep->timer, uep->tfd) != 0) {
    rv = UVQ_ERR_IO;
    goto fail_timer_poll;
  }
  uep->timer.data = uep;
  /* From here on the handles exist; failures below cannot happen for
   * async/prepare on a valid loop (they only fill structs). */
  if (uv_async_init(loop, &uep->async, uep_on_async) != 0) {
    rv = UVQ_ERR_IO;
    goto fail_async;
  }
  uv_prepare_init(loop, &uep->prepare);
  uv_idle_init(loop, &uep->idle);
  uep->async.data = uep;
  uep->prepare.data = uep;
  uep->idle.data = uep;

  uep->poll_events = UV_READABLE;
  uv_poll_start(&uep->poll, UV_READABLE, uep_on_poll);
  uv_poll_start(&uep->timer, UV_READABLE, uep_on_timer);
  uv_prepare_start(&uep->prepare, uep_on_prepare);
  /* The prepare hook alone must not keep the loop alive. */
  uv_unref((uv_handle_t *)&uep->prepare);

  *puep = uep;
  return 0;

fail_async:
  /* The poll and timer handles must be closed through the loop; the rest
   * is freed when they are. */
  uep->state = UEP_CLOSING_HANDLES;
  uep->handles_open = 2;
  uep->close_cb = NULL;
  uv_close((uv_handle_t *)&uep->poll, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->timer, uep_handle_closed);
  return rv;

fail_timer_poll:
  /* The socket's poll handle must be closed through the loop; the rest is
   * freed when it is. */
  uep->state = UEP_CLOSING_HANDLES;
  uep->handles_open = 1;
  uep->close_cb = NULL;
  uv_close((uv_handle_t *)&uep->poll, uep_handle_closed);
  return rv;

fail_poll:
  uvq_endpoint_del(uep->ep);
fail_endpoint:
  close(uep->tfd);
fail_timerfd:
  saved = errno;
  uvq_udp_close(&uep->udp);
  errno = saved;
fail_socket:
  uvq_free(mem, uep->udp.txq);
  uvq_free(mem, uep->rx);
fail_rx:
  uvq_free(mem, uep);
  return rv;
}

int uvq_listen(uvq_listener **plistener, uv_loop_t *loop,
               const struct sockaddr *addr, const uvq_settings *settings,
               uvq_tls_ctx *tls, uvq_uv_accept_cb on_accept, void *user_data) {
  if (on_accept == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  return uep_new(plistener, loop, 1, addr, settings, tls, on_accept, user_data);
}

int uvq_uv_client_new(uvq_uv_endpoint **puep, uv_loop_t *loop, int family,
                      const struct sockaddr *local,
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
  return uep_new(puep, loop, 0, local, settings, tls, NULL, user_data);
}

/* The path's local address for a connection to |remote|. On a wildcard
 * socket, received datagrams report the address they were sent to
 * (PKTINFO), so the path must start with the address the kernel will pick
 * as our source, or the first reply would look like a new path: ask the
 * routing table with a throwaway connected socket. */
static void uep_local_for_sock(const uvq_udp *udp, const uvq_addr *bound,
                               const uvq_addr *remote, uvq_addr *local) {
  struct sockaddr_storage ss;
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

static void uep_local_for(uvq_uv_endpoint *uep, const uvq_addr *remote,
                          uvq_addr *local) {
  uep_local_for_sock(&uep->udp, &uep->local, remote, local);
}

int uvq_connect_with(uvq_uv_endpoint *uep, const struct sockaddr *remote,
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
  if (remote->sa_family != uep->local.ss.ss_family) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  len = remote->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                     : sizeof(struct sockaddr_in6);
  rv = uvq_addr_set(&path.remote, remote, len);
  if (rv != 0) {
    return rv;
  }
  uep_local_for(uep, &path.remote, &path.local);
  p = *params;
  p.path = &path;
  ++uep->in_core;
  rv = uvq_endpoint_connect(uep->ep, &p, uv_hrtime(), pconn);
  --uep->in_core;
  if (rv == 0) {
    /* The Initial goes out now when called from outside the core, or from
     * the prepare hook / the outer flush otherwise. */
    uep_flush(uep);
  }
  return rv;
}

int uvq_connect(uvq_uv_endpoint *uep, const struct sockaddr *remote,
                const char *server_name, const uvq_app_callbacks *callbacks,
                void *conn_user_data, uvq_conn **pconn) {
  uvq_connect_params params;
  uvq_connect_params_default(&params);
  params.server_name = server_name;
  params.callbacks = callbacks;
  params.user_data = conn_user_data;
  return uvq_connect_with(uep, remote, &params, pconn);
}

void uvq_uv_endpoint_close(uvq_uv_endpoint *uep, uvq_uv_close_cb cb) {
  if (uep == NULL || uep->state != UEP_RUNNING) {
    return;
  }
  uep->state = UEP_CLOSING;
  uep->close_cb = cb;
  uep->close_pending = 1;
  /* Directly when called from outside the core; otherwise the outermost
   * flush or the prepare hook does it. */
  uep_flush(uep);
}

void uvq_uv_endpoint_close_now(uvq_uv_endpoint *uep, uvq_uv_close_cb cb) {
  if (uep == NULL || uep->state == UEP_CLOSING_HANDLES ||
      (uep->state == UEP_CLOSING && uep->close_now)) {
    return;
  }
  uep->close_now = 1;
  uep->close_cb = cb;
  if (uep->state == UEP_RUNNING) {
    uep->state = UEP_CLOSING;
    uep->close_pending = 1;
  }
  /* As for uvq_uv_endpoint_close: directly from outside the core, else
   * from the outermost flush or the prepare hook. The flush sends the
   * CONNECTION_CLOSEs and uep_update then closes the handles. */
  uep_flush(uep);
}

void uvq_listener_close(uvq_listener *listener, uvq_uv_close_cb cb) {
  uvq_uv_endpoint_close(listener, cb);
}

uvq_endpoint *uvq_uv_endpoint_get_endpoint(uvq_uv_endpoint *uep) {
  return uep->ep;
}

int uvq_uv_endpoint_get_local_addr(uvq_uv_endpoint *uep, uvq_addr *addr) {
  if (uep == NULL || addr == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  *addr = uep->local;
  return 0;
}

void *uvq_uv_endpoint_get_user_data(uvq_uv_endpoint *uep) {
  return uep->user_data;
}

int uvq_uv_endpoint_get_stats(uvq_uv_endpoint *uep, uvq_uv_stats *st) {
  if (uep == NULL || st == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  *st = uep->udp.stats;
  /* Counters cover every socket; the facts (gso, gro, pktinfo, buffers)
   * are the first socket's. */
  for (uep_sock *k = uep->socks; k; k = k->next) {
    const uvq_uv_stats *x = &k->udp.stats;
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
    st->queued_batches += x->queued_batches;
    st->send_errors += x->send_errors;
    st->writable_wakeups += x->writable_wakeups;
    st->errqueue_reads += x->errqueue_reads;
    st->icmp_unreachable += x->icmp_unreachable;
    st->send_async_errors += x->send_async_errors;
    for (int i = 0; i < 4; i++) {
      st->ecn_sent[i] += x->ecn_sent[i];
      st->ecn_received[i] += x->ecn_received[i];
    }
  }
  return 0;
}

int uvq_uv_endpoint_set_gso(uvq_uv_endpoint *uep, int enable) {
  if (uep == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  uep->udp.gso = enable && uep->udp.gso_capable;
  uep->udp.stats.gso = uep->udp.gso;
  return uep->udp.gso;
}

void uvq_uv_endpoint_inject_gso_errno(uvq_uv_endpoint *uep, int err) {
  uep->udp.inject_gso_errno = err;
}

void uvq_uv_endpoint_inject_eagain(uvq_uv_endpoint *uep, unsigned n) {
  uep->udp.inject_eagain = n;
}

void uvq_uv_endpoint_inject_send_errno(uvq_uv_endpoint *uep, int err) {
  uep->udp.inject_send_errno = err;
}

int uvq_uv_endpoint_add_local(uvq_uv_endpoint *uep,
                              const struct sockaddr *local, uvq_addr *pbound) {
  uvq_udp_opts opts;
  socklen_t len;
  uep_sock *k;
  int saved;

  if (uep == NULL || local == NULL || uep->is_server ||
      local->sa_family != uep->local.ss.ss_family) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (uep->state != UEP_RUNNING) {
    return UVQ_ERR_SHUTDOWN;
  }
  len = local->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                    : sizeof(struct sockaddr_in6);
  k = uvq_calloc(uep->mem, 1, sizeof(*k));
  if (k == NULL) {
    return UVQ_ERR_NOMEM;
  }
  memset(&opts, 0, sizeof(opts));
  opts.bufsize = UVQ_UV_SOCKBUF;
  opts.min_bufsize = UVQ_UV_MIN_SOCKBUF;
  opts.no_gso = !uep->udp.gso_capable;
  opts.no_gro = !uep->udp.gro;
  opts.log = uvq_endpoint_get_settings(uep->ep)->log;
  opts.log_user_data = uvq_endpoint_get_settings(uep->ep)->log_user_data;
  if (uvq_udp_open(&k->udp, local, len, &opts) != 0) {
    saved = errno;
    uvq_free(uep->mem, k);
    errno = saved;
    return UVQ_ERR_IO;
  }
  k->udp.gso = k->udp.gso && uep->udp.gso;
  k->udp.txq = uvq_calloc(uep->mem, 1, sizeof(*k->udp.txq));
  k->uep = uep;
  k->local = k->udp.bound;
  if (uv_poll_init(uep->loop, &k->poll, k->udp.fd) != 0) {
    uvq_udp_close(&k->udp);
    uvq_free(uep->mem, k->udp.txq);
    uvq_free(uep->mem, k);
    return UVQ_ERR_IO;
  }
  k->poll.data = k;
  k->poll_events = UV_READABLE;
  uv_poll_start(&k->poll, UV_READABLE, uep_on_sock_poll);
  k->next = uep->socks;
  uep->socks = k;
  if (pbound) {
    *pbound = k->local;
  }
  return 0;
}

int uvq_uv_conn_migrate(uvq_uv_endpoint *uep, uvq_conn *conn,
                        const struct sockaddr *local, int nat_rebinding_style,
                        uvq_addr *pbound) {
  uvq_addr bound, from;
  uvq_conn_info info;
  int rv;

  if (uep == NULL || conn == NULL || local == NULL ||
      uvq_conn_get_endpoint(conn) != uep->ep) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_uv_endpoint_add_local(uep, local, &bound);
  if (rv != 0) {
    return rv;
  }
  /* On a wildcard socket the connection's local address is the one the
   * kernel picks toward the peer, with the new socket's port. */
  uvq_conn_get_info(conn, &info);
  uep_local_for_sock(&uep->socks->udp, &bound, &info.path->remote, &from);
  ++uep->in_core;
  rv = uvq_conn_migrate(conn, &from, nat_rebinding_style, uv_hrtime());
  --uep->in_core;
  if (rv != 0) {
    return rv;
  }
  if (pbound) {
    *pbound = from;
  }
  uep_flush(uep);
  return 0;
}
