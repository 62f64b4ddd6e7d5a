/*
 * The libuv adapter: one UDP socket, one uv_poll, one uv_timer, one
 * uv_async and one uv_prepare drive one uvq_endpoint. See
 * docs/internals/uv-adapter.md for the rules (when we flush, how the timer
 * is armed, how close proceeds).
 */
#include "uvquic/uvquic_uv.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "uv/udp.h"

/* Socket buffer size we ask for (capped by the kernel's [rw]mem_max). */
#define UVQ_UV_SOCKBUF (4 * 1024 * 1024)
/* Datagrams read per readable wake-up before we flush and return to the
 * loop, so timers and other handles are not starved by a flood. */
#define UVQ_UV_MAX_RECV_PER_WAKE 256
/* The handles we close at the end: poll, timer, async, prepare. */
#define UVQ_UV_NHANDLES 4

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
  int fd;
  uvq_addr local;
  int is_server;
  uvq_uv_accept_cb on_accept;
  void *user_data;

  uv_poll_t poll;
  uv_timer_t timer;
  uv_async_t async;
  uv_prepare_t prepare;
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
  /* Expiry the timer is armed for (UVQ_TSTAMP_MAX: stopped). */
  uvq_tstamp armed;

  uep_state state;
  int handles_open;
  uvq_uv_close_cb close_cb;

  uvq_udp_rx *rx;
  uvq_udp_tx tx;
};

static void uep_update(uvq_uv_endpoint *uep);
static void uep_on_poll(uv_poll_t *h, int status, int events);
static void uep_on_timer(uv_timer_t *h);

/* ------------------------------------------------------------------------ */
/* Core callbacks                                                           */
/* ------------------------------------------------------------------------ */

static ssize_t uep_send(uvq_endpoint *ep, const uvq_send_batch *b,
                        void *user_data) {
  uvq_uv_endpoint *uep = user_data;
  (void)ep;
  return uvq_udp_send(uep->fd, &uep->tx, b);
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

static void uep_handle_closed(uv_handle_t *h) {
  uvq_uv_endpoint *uep = h->data;

  if (--uep->handles_open > 0) {
    return;
  }
  /* Every handle is closed: nothing of libuv refers to the fd any more. */
  close(uep->fd);
  uep->fd = -1;
  if (uep->close_cb) {
    /* The core endpoint is still alive here so |cb| can read its stats. */
    uep->close_cb(uep, uep->user_data);
  }
  uvq_endpoint_del(uep->ep);
  uvq_free(uep->mem, uep->rx);
  uvq_free(uep->mem, uep);
}

static void uep_close_handles(uvq_uv_endpoint *uep) {
  uep->state = UEP_CLOSING_HANDLES;
  uep->handles_open = UVQ_UV_NHANDLES;
  uv_close((uv_handle_t *)&uep->poll, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->timer, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->async, uep_handle_closed);
  uv_close((uv_handle_t *)&uep->prepare, uep_handle_closed);
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
  uvq_tstamp now;
  uint64_t ms;

  if (exp == uep->armed) {
    /* Already armed for this deadline (or stopped for "never"). */
    return;
  }
  if (exp == UVQ_TSTAMP_MAX) {
    uv_timer_stop(&uep->timer);
    uep->armed = exp;
    return;
  }
  now = uv_hrtime();
  /* Round up: firing early would only re-arm, firing late is harmless at
   * millisecond granularity; a due deadline fires on the next iteration. */
  ms = exp <= now ? 0 : (exp - now + UVQ_MILLISECONDS - 1) / UVQ_MILLISECONDS;
  /* libuv measures timeouts from its cached loop time, which may be behind
   * uv_hrtime(); refresh it so the timer is not early by the lag. */
  uv_update_time(uep->loop);
  uv_timer_start(&uep->timer, uep_on_timer, ms, 0);
  uep->armed = exp;
}

/* After any call into the core: watch for writability if blocked, re-arm
 * the timer, and finish a graceful close once no connection is left. */
static void uep_update(uvq_uv_endpoint *uep) {
  int events;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  if (uep->state == UEP_CLOSING && uvq_endpoint_conn_count(uep->ep) == 0) {
    uep_close_handles(uep);
    return;
  }
  events = UV_READABLE | (uep->blocked ? UV_WRITABLE : 0);
  if (events != uep->poll_events) {
    uep->poll_events = events;
    uv_poll_start(&uep->poll, events, uep_on_poll);
  }
  uep_arm_timer(uep);
}

static void uep_read(uvq_uv_endpoint *uep) {
  size_t total = 0;
  uvq_path path;
  int i, n;

  path.local = uep->local;
  while (total < UVQ_UV_MAX_RECV_PER_WAKE) {
    uvq_tstamp now;

    n = uvq_udp_recv(uep->fd, uep->rx);
    if (n <= 0) {
      /* 0: drained. -1: an error queued on the socket (e.g. ICMP port
       * unreachable reported as ECONNREFUSED); reading cleared it, and
       * QUIC's own timers deal with an unreachable peer. */
      break;
    }
    now = uv_hrtime();
    ++uep->in_core;
    for (i = 0; i < n; ++i) {
      struct msghdr *h = &uep->rx->msgs[i].msg_hdr;
      if (h->msg_flags & MSG_TRUNC) {
        /* Larger than any datagram QUIC sends us; the tail is gone. */
        continue;
      }
      if (uvq_addr_set(&path.remote, h->msg_name, h->msg_namelen) != 0) {
        continue;
      }
      (void)uvq_endpoint_recv(uep->ep, &path, UVQ_ECN_NOT_ECT, uep->rx->bufs[i],
                              uep->rx->msgs[i].msg_len, 0, now);
    }
    --uep->in_core;
    total += (size_t)n;
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
    /* libuv reports a poll error (EBADF etc.) once; read anyway so a
     * pending socket error is consumed. */
    events = UV_READABLE;
  }
  if (events & UV_READABLE) {
    uep_read(uep);
  }
  /* One flush covers both the received batch and a writable socket. */
  uep_flush(uep);
}

static void uep_on_timer(uv_timer_t *h) {
  uvq_uv_endpoint *uep = h->data;

  if (uep->state == UEP_CLOSING_HANDLES) {
    return;
  }
  uep->armed = UVQ_TSTAMP_MAX;
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

static int uep_new(uvq_uv_endpoint **puep, uv_loop_t *loop, int is_server,
                   const struct sockaddr *addr, const uvq_settings *settings,
                   uvq_tls_ctx *tls, uvq_uv_accept_cb on_accept,
                   void *user_data) {
  const uvq_mem *mem = uvq_mem_default();
  uvq_endpoint_config cfg;
  uvq_uv_endpoint *uep;
  socklen_t addrlen;
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

  uep->fd = uvq_udp_open(addr, addrlen, UVQ_UV_SOCKBUF, &uep->local);
  if (uep->fd < 0) {
    rv = UVQ_ERR_IO;
    goto fail_socket;
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

  if (uv_poll_init(loop, &uep->poll, uep->fd) != 0) {
    rv = UVQ_ERR_IO;
    goto fail_poll;
  }
  /* From here on the handles exist; failures below cannot happen for
   * timer/async/prepare on a valid loop (they only fill structs). */
  uv_timer_init(loop, &uep->timer);
  if (uv_async_init(loop, &uep->async, uep_on_async) != 0) {
    rv = UVQ_ERR_IO;
    goto fail_async;
  }
  uv_prepare_init(loop, &uep->prepare);
  uep->poll.data = uep;
  uep->timer.data = uep;
  uep->async.data = uep;
  uep->prepare.data = uep;

  uep->poll_events = UV_READABLE;
  uv_poll_start(&uep->poll, UV_READABLE, uep_on_poll);
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

fail_poll:
  uvq_endpoint_del(uep->ep);
fail_endpoint:
  saved = errno;
  close(uep->fd);
  errno = saved;
fail_socket:
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

int uvq_connect(uvq_uv_endpoint *uep, const struct sockaddr *remote,
                const char *server_name, const uvq_app_callbacks *callbacks,
                void *conn_user_data, uvq_conn **pconn) {
  uvq_connect_params params;
  uvq_path path;
  socklen_t len;
  int rv;

  if (uep == NULL || remote == NULL || uep->is_server) {
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
  path.local = uep->local;
  rv = uvq_addr_set(&path.remote, remote, len);
  if (rv != 0) {
    return rv;
  }
  uvq_connect_params_default(&params);
  params.server_name = server_name;
  params.path = &path;
  params.callbacks = callbacks;
  params.user_data = conn_user_data;
  ++uep->in_core;
  rv = uvq_endpoint_connect(uep->ep, &params, uv_hrtime(), pconn);
  --uep->in_core;
  if (rv == 0) {
    /* The Initial goes out now when called from outside the core, or from
     * the prepare hook / the outer flush otherwise. */
    uep_flush(uep);
  }
  return rv;
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
