/* libuv adapter tests: real sockets on 127.0.0.1 / ::1, port 0. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "uv/ifmtu.h"
#include "uv/udp.h"
#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

static const char *const echo_alpn[] = {"uvq-echo"};

/* Everything one test run observes. */
typedef struct fixture {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_endpoint *listener;
  uvq_uv_endpoint *client;
  uv_timer_t later;
  /* Runs after the loop's I/O phase in the iteration of later_cb. */
  uv_check_t after_later;
  uint64_t sent_before_later;
  int sent_in_same_iteration;
  uv_timer_t watchdog;
  int accepted;
  int established;
  int server_closed;
  int client_closed;
  int client_close_error;
  int listener_close_cb;
  int client_close_cb;
  int hung;
  /* Bytes the server echoed; bytes the client got back on each stream. */
  size_t server_bytes;
  char echo[2][64];
  size_t echolen[2];
  int fin[2];
  int64_t sid[2];
  uvq_conn *cconn;
} fixture;

/* ---- server: echo every byte of every bidi stream, FIN with FIN ---- */

static int srv_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                    int fin, void *ud, void *sud) {
  fixture *f = ud;
  ssize_t w;

  (void)sud;
  f->server_bytes += len;
  w = uvq_stream_write(conn, id, data, len, fin);
  assert_int_equal(w, (ssize_t)len);
  return 0;
}

static void srv_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  fixture *f = ud;
  (void)conn;
  (void)ci;
  f->server_closed++;
}

static const uvq_app_callbacks srv_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = srv_data,
    .on_closed = srv_closed,
};

static int on_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks,
                     void **pconn_user_data, void *user_data) {
  fixture *f = user_data;

  (void)l;
  (void)conn;
  assert_int_equal(info->alpnlen, strlen(echo_alpn[0]));
  assert_memory_equal(info->alpn, echo_alpn[0], info->alpnlen);
  f->accepted++;
  *pcallbacks = &srv_cbs;
  *pconn_user_data = f;
  return 0;
}

/* ---- client: one stream from on_established, one from a uv timer ---- */

static void open_and_send(fixture *f, uvq_conn *conn, int i, const char *msg) {
  assert_int_equal(
      uvq_conn_open_stream(conn, 1, &f->sid[i], (void *)(intptr_t)(i + 1)), 0);
  assert_int_equal(
      uvq_stream_write(conn, f->sid[i], (const uint8_t *)msg, strlen(msg), 1),
      (ssize_t)strlen(msg));
}

static uint64_t client_datagrams_sent(fixture *f) {
  uvq_endpoint_stats st;
  uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(f->client), &st);
  return st.datagrams_sent;
}

static void after_later_cb(uv_check_t *h) {
  fixture *f = h->data;
  /* The stream opened in later_cb left in the same loop iteration: the
   * adapter's prepare hook flushed it before the loop blocked, instead of
   * waiting for the next core timer or incoming packet. */
  f->sent_in_same_iteration = client_datagrams_sent(f) > f->sent_before_later;
  uv_check_stop(h);
}

static void later_cb(uv_timer_t *t) {
  fixture *f = t->data;
  /* Outside every library callback: the adapter must flush this on its
   * own. */
  f->sent_before_later = client_datagrams_sent(f);
  open_and_send(f, f->cconn, 1, "from a timer");
  uv_check_start(&f->after_later, after_later_cb);
}

static int cli_established(uvq_conn *conn, void *ud) {
  fixture *f = ud;

  f->established++;
  f->cconn = conn;
  open_and_send(f, conn, 0, "hello over QUIC");
  return 0;
}

static int cli_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                    int fin, void *ud, void *sud) {
  fixture *f = ud;
  int i = (int)(intptr_t)sud - 1;

  assert_true(i == 0 || i == 1);
  assert_true(id == f->sid[i]);
  assert_true(f->echolen[i] + len < sizeof(f->echo[i]));
  memcpy(f->echo[i] + f->echolen[i], data, len);
  f->echolen[i] += len;
  if (fin) {
    f->fin[i] = 1;
    if (i == 0) {
      /* The first echo is back. Once the connection's short timers (ACK
       * delay, pacing) are past, only its idle timer is armed: open the
       * second stream then, from a plain libuv timer, so nothing but the
       * adapter's prepare hook can send it in that loop iteration. */
      uv_timer_start(&f->later, later_cb, 20, 0);
    }
  }
  if (f->fin[0] && f->fin[1]) {
    assert_int_equal(uvq_conn_close(conn, 0, "bye"), 0);
  }
  return 0;
}

static void listener_closed(uvq_uv_endpoint *uep, void *ud) {
  fixture *f = ud;
  (void)uep;
  f->listener_close_cb++;
  if (f->client_close_cb) {
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_close((uv_handle_t *)&f->later, NULL);
    uv_close((uv_handle_t *)&f->after_later, NULL);
  }
}

static void client_closed_cb(uvq_uv_endpoint *uep, void *ud) {
  fixture *f = ud;
  (void)uep;
  f->client_close_cb++;
  if (f->listener_close_cb) {
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_close((uv_handle_t *)&f->later, NULL);
    uv_close((uv_handle_t *)&f->after_later, NULL);
  }
}

static void cli_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  fixture *f = ud;
  (void)conn;
  f->client_closed++;
  f->client_close_error = ci->error;
  if (ci->error != 0) {
    print_message("client connection closed: %s (origin %d, code 0x%llx, "
                  "alert %u, reason %.*s)\n",
                  uvq_strerror(ci->error), (int)ci->origin,
                  (unsigned long long)ci->code, ci->tls_alert,
                  (int)ci->reasonlen, (const char *)ci->reason);
    {
      uvq_endpoint_stats st;
      int r;
      uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(f->client), &st);
      for (r = 0; r < UVQ_DROP_REASON_COUNT; ++r) {
        if (st.dropped[r]) {
          print_message("  client dropped %s=%llu\n",
                        uvq_drop_reason_name((uvq_drop_reason)r),
                        (unsigned long long)st.dropped[r]);
        }
      }
      print_message("  client received %llu sent %llu\n",
                    (unsigned long long)st.datagrams_received,
                    (unsigned long long)st.datagrams_sent);
    }
  }
  /* From inside a library callback: the adapter defers the close. */
  uvq_uv_endpoint_close(f->client, client_closed_cb);
  uvq_uv_endpoint_close(f->listener, listener_closed);
}

static const uvq_app_callbacks cli_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cli_established,
    .on_stream_data = cli_data,
    .on_closed = cli_closed,
};

/* The tests' hang guard: after |ms| the loop stops and *hung is set, so
 * the asserts after uv_run report what is missing instead of the test
 * runner timing out. Never a timing assertion. */
static void watchdog_cb(uv_timer_t *t) {
  *(int *)t->data = 1;
  uv_stop(t->loop);
}

static void start_watchdog(uv_loop_t *loop, uv_timer_t *t, int *hung,
                           uint64_t ms) {
  uv_timer_init(loop, t);
  t->data = hung;
  uv_timer_start(t, watchdog_cb, ms, 0);
}

static void set_addr(struct sockaddr_storage *ss, int family, const char *ip,
                     uint16_t port) {
  memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
  }
}

/* |ss|: the loopback address of |family|, port 0. */
static void set_loopback(struct sockaddr_storage *ss, int family) {
  set_addr(ss, family, family == AF_INET ? "127.0.0.1" : "::1", 0);
}

static void make_tls(uvq_tls_ctx **stls, uvq_tls_ctx **ctls) {
  uvq_tls_config cfg;
  char err[256];

  uvq_tls_config_default(&cfg);
  cfg.alpn = echo_alpn;
  cfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(stls, 1, &cfg, NULL, err, sizeof(err)), 0);
  cfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(ctls, 0, &cfg, NULL, err, sizeof(err)), 0);
}

/* A loop, both TLS contexts and a listener on the loopback address of
 * |family| (port 0) that takes connections with |on_acc| and |ud|; |bound|
 * gets the address it bound. */
static void listen_loopback(uv_loop_t *loop, uvq_tls_ctx **stls,
                            uvq_tls_ctx **ctls, uvq_uv_endpoint **listener,
                            int family, uvq_uv_accept_cb on_acc, void *ud,
                            uvq_addr *bound) {
  struct sockaddr_storage ss;
  set_loopback(&ss, family);
  assert_int_equal(uv_loop_init(loop), 0);
  make_tls(stls, ctls);
  assert_int_equal(uvq_uv_listen(listener, loop, (struct sockaddr *)&ss, NULL,
                                 NULL, *stls, on_acc, ud),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_local_addr(*listener, bound), 0);
}

/* The end of listen_loopback's loop: closed (every handle was), and the
 * TLS contexts freed. */
static void end_loop(uv_loop_t *loop, uvq_tls_ctx *stls, uvq_tls_ctx *ctls) {
  assert_int_equal(uv_loop_close(loop), 0);
  uvq_tls_ctx_del(stls);
  uvq_tls_ctx_del(ctls);
}

static void run_exchange(int family) {
  fixture f;
  uvq_addr bound;

  memset(&f, 0, sizeof(f));
  listen_loopback(&f.loop, &f.stls, &f.ctls, &f.listener, family, on_accept, &f,
                  &bound);
  assert_int_equal(bound.ss.ss_family, family);
  assert_int_not_equal(family == AF_INET
                           ? ((struct sockaddr_in *)&bound.ss)->sin_port
                           : ((struct sockaddr_in6 *)&bound.ss)->sin6_port,
                       0);
  assert_ptr_equal(uvq_uv_endpoint_get_user_data(f.listener), &f);
  assert_non_null(uvq_uv_endpoint_get_endpoint(f.listener));

  assert_int_equal(uvq_uv_client_new(&f.client, &f.loop, family, NULL, NULL,
                                     NULL, f.ctls, &f),
                   0);
  assert_int_equal(uvq_uv_connect(f.client, (struct sockaddr *)&bound.ss,
                                  "localhost", &cli_cbs, &f, NULL),
                   0);

  uv_timer_init(&f.loop, &f.later);
  f.later.data = &f;
  uv_check_init(&f.loop, &f.after_later);
  f.after_later.data = &f;
  start_watchdog(&f.loop, &f.watchdog, &f.hung, 60000);

  uv_run(&f.loop, UV_RUN_DEFAULT);

  assert_false(f.hung);
  assert_int_equal(f.accepted, 1);
  assert_int_equal(f.established, 1);
  assert_int_equal(f.echolen[0], strlen("hello over QUIC"));
  assert_memory_equal(f.echo[0], "hello over QUIC", f.echolen[0]);
  assert_int_equal(f.echolen[1], strlen("from a timer"));
  assert_memory_equal(f.echo[1], "from a timer", f.echolen[1]);
  assert_int_equal(f.server_bytes, f.echolen[0] + f.echolen[1]);
  assert_true(f.sent_in_same_iteration);
  assert_int_equal(f.client_closed, 1);
  assert_int_equal(f.client_close_error, 0);
  assert_int_equal(f.server_closed, 1);
  assert_int_equal(f.listener_close_cb, 1);
  assert_int_equal(f.client_close_cb, 1);

  end_loop(&f.loop, f.stls, f.ctls);
}

static void test_uv_exchange_ipv4(void **state) {
  (void)state;
  run_exchange(AF_INET);
}

static void test_uv_exchange_ipv6(void **state) {
  (void)state;
  run_exchange(AF_INET6);
}

static void count_close(uvq_uv_endpoint *uep, void *ud) {
  (void)uep;
  ++*(int *)ud;
}

static int refuse_all(uvq_uv_endpoint *l, uvq_conn *conn,
                      const uvq_accept_info *info,
                      const uvq_app_callbacks **pcallbacks,
                      void **pconn_user_data, void *user_data) {
  (void)l;
  (void)conn;
  (void)info;
  (void)pcallbacks;
  (void)pconn_user_data;
  (void)user_data;
  return UVQ_ERR_REFUSED;
}

/* ---- ICMP unreachable (IP_RECVERR / IPV6_RECVERR) ---- */

/* One client endpoint, two connections: one to a port where nothing
 * listens, one to a live echo server. The first ends at once with
 * UVQ_ERR_PORT_UNREACHABLE (not by the handshake timeout); the second
 * still completes: the socket's POLLERR stopped neither the poll nor the
 * reads. */
typedef struct icmp_fix {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_endpoint *listener;
  uvq_uv_endpoint *client;
  uv_timer_t watchdog;
  int hung;
  int dead_error, dead_closed, live_error, live_closed, echoed, ends;
  uvq_uv_stats ust;
  uvq_endpoint_stats est;
} icmp_fix;

static void icmp_end(icmp_fix *f) {
  if (f->dead_closed && f->live_closed) {
    uvq_uv_endpoint_get_stats(f->client, &f->ust);
    uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(f->client), &f->est);
    uvq_uv_endpoint_close(f->client, NULL);
    uvq_uv_endpoint_close(f->listener, NULL);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
  }
}

static void icmp_dead_closed(uvq_conn *conn, const uvq_close_info *ci,
                             void *ud) {
  icmp_fix *f = ud;
  (void)conn;
  f->dead_closed++;
  f->dead_error = ci->error;
  icmp_end(f);
}

static int icmp_live_established(uvq_conn *conn, void *ud) {
  int64_t id;
  (void)ud;
  assert_int_equal(uvq_conn_open_stream(conn, 1, &id, NULL), 0);
  assert_int_equal(uvq_stream_write(conn, id, (const uint8_t *)"ping", 4, 1),
                   4);
  return 0;
}

static int icmp_live_data(uvq_conn *conn, int64_t id, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  icmp_fix *f = ud;
  (void)id;
  (void)data;
  (void)sud;
  f->echoed += (int)len;
  if (fin) {
    assert_int_equal(uvq_conn_close(conn, 0, NULL), 0);
  }
  return 0;
}

static void icmp_live_closed(uvq_conn *conn, const uvq_close_info *ci,
                             void *ud) {
  icmp_fix *f = ud;
  (void)conn;
  f->live_closed++;
  f->live_error = ci->error;
  icmp_end(f);
}

static int icmp_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                       const uvq_accept_info *info,
                       const uvq_app_callbacks **pcallbacks,
                       void **pconn_user_data, void *user_data) {
  static fixture echo;
  (void)l;
  (void)conn;
  (void)info;
  (void)user_data;
  *pcallbacks = &srv_cbs;
  *pconn_user_data = &echo;
  return 0;
}

static void run_icmp_refused(int family) {
  static const uvq_app_callbacks dead_cbs = {
      .version = UVQ_APP_CALLBACKS_VERSION,
      .on_closed = icmp_dead_closed,
  };
  static const uvq_app_callbacks live_cbs = {
      .version = UVQ_APP_CALLBACKS_VERSION,
      .on_established = icmp_live_established,
      .on_stream_data = icmp_live_data,
      .on_closed = icmp_live_closed,
  };
  struct sockaddr_storage dead;
  socklen_t len = sizeof(dead);
  uvq_addr bound;
  icmp_fix f;
  int fd;

  memset(&f, 0, sizeof(f));
  /* A port that was just free: bound, read back, closed. */
  set_loopback(&dead, family);
  fd = socket(family, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&dead,
                        family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6)),
                   0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&dead, &len), 0);
  close(fd);

  listen_loopback(&f.loop, &f.stls, &f.ctls, &f.listener, family, icmp_accept,
                  &f, &bound);
  assert_int_equal(uvq_uv_client_new(&f.client, &f.loop, family, NULL, NULL,
                                     NULL, f.ctls, &f),
                   0);
  assert_int_equal(uvq_uv_connect(f.client, (struct sockaddr *)&dead,
                                  "localhost", &dead_cbs, &f, NULL),
                   0);
  assert_int_equal(uvq_uv_connect(f.client, (struct sockaddr *)&bound.ss,
                                  "localhost", &live_cbs, &f, NULL),
                   0);
  /* Far below the 10 s handshake timeout. */
  start_watchdog(&f.loop, &f.watchdog, &f.hung, 5000);
  uv_run(&f.loop, UV_RUN_DEFAULT);

  assert_false(f.hung);
  assert_int_equal(f.dead_closed, 1);
  assert_int_equal(f.dead_error, UVQ_ERR_PORT_UNREACHABLE);
  assert_int_equal(f.live_closed, 1);
  assert_int_equal(f.live_error, 0);
  assert_int_equal(f.echoed, 4);
  assert_true(f.ust.icmp_unreachable >= 1);
  assert_true(f.est.icmp_errors >= 1);
  assert_int_equal(f.est.icmp_closed, 1);
  end_loop(&f.loop, f.stls, f.ctls);
}

static void test_uv_icmp_refused_ipv4(void **state) {
  (void)state;
  run_icmp_refused(AF_INET);
}

static void test_uv_icmp_refused_ipv6(void **state) {
  (void)state;
  run_icmp_refused(AF_INET6);
}

static void test_uv_listen_addr_in_use(void **state) {
  struct sockaddr_in sin;
  uvq_uv_endpoint *l1 = NULL, *l2 = NULL;
  uvq_addr bound;
  uv_loop_t loop;
  fixture f;
  int closed = 0;

  (void)state;
  memset(&f, 0, sizeof(f));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(uv_loop_init(&loop), 0);
  make_tls(&f.stls, &f.ctls);
  assert_int_equal(uvq_uv_listen(&l1, &loop, (struct sockaddr *)&sin, NULL,
                                 NULL, f.stls, refuse_all, &closed),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_local_addr(l1, &bound), 0);
  errno = 0;
  assert_int_equal(uvq_uv_listen(&l2, &loop, (struct sockaddr *)&bound.ss, NULL,
                                 NULL, f.stls, refuse_all, NULL),
                   UVQ_ERR_IO);
  assert_int_equal(errno, EADDRINUSE);
  assert_null(l2);

  /* Closing an idle listener completes with its callback, once. */
  uvq_uv_endpoint_close(l1, count_close);
  uvq_uv_endpoint_close(l1, count_close);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  uvq_tls_ctx_del(f.stls);
  uvq_tls_ctx_del(f.ctls);
}

static void test_uv_bad_arguments(void **state) {
  struct sockaddr_in sin;
  uvq_uv_endpoint *c = NULL;
  uv_loop_t loop;
  fixture f;

  (void)state;
  memset(&f, 0, sizeof(f));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  assert_int_equal(uv_loop_init(&loop), 0);
  make_tls(&f.stls, &f.ctls);
  assert_int_equal(
      uvq_uv_client_new(&c, &loop, AF_UNIX, NULL, NULL, NULL, f.ctls, NULL),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_uv_listen(&c, &loop, (struct sockaddr *)&sin, NULL, NULL,
                                 f.stls, NULL, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uv_loop_close(&loop), 0);
  uvq_tls_ctx_del(f.stls);
  uvq_tls_ctx_del(f.ctls);
}

/* ---- uvq_uv_config: read by version; its allocator and switches ---- */

/* libc, counting what is live and how many calls were made. */
typedef struct counting_mem {
  long live;
  long calls;
} counting_mem;

static void *cm_malloc(size_t size, void *ud) {
  counting_mem *m = ud;
  void *p = malloc(size);
  m->calls++;
  m->live += p != NULL;
  return p;
}

static void cm_free(void *ptr, void *ud) {
  counting_mem *m = ud;
  if (ptr != NULL) {
    m->calls++;
    m->live--;
  }
  free(ptr);
}

static void *cm_calloc(size_t nmemb, size_t size, void *ud) {
  counting_mem *m = ud;
  void *p = calloc(nmemb, size);
  m->calls++;
  m->live += p != NULL;
  return p;
}

static void *cm_realloc(void *ptr, size_t size, void *ud) {
  counting_mem *m = ud;
  void *p = realloc(ptr, size);
  m->calls++;
  m->live += ptr == NULL && p != NULL;
  return p;
}

/* The fd of this process's UDP socket bound to |a| (its family and port;
 * the adapter does not expose its sockets), or -1. */
static int udp_fd_bound_to(const uvq_addr *a) {
  for (int fd = 0; fd < 1024; fd++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
        type != SOCK_DGRAM ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != a->ss.ss_family) {
      continue;
    }
    if (ss.ss_family == AF_INET &&
        ((struct sockaddr_in *)&ss)->sin_port ==
            ((const struct sockaddr_in *)&a->ss)->sin_port) {
      return fd;
    }
    if (ss.ss_family == AF_INET6 &&
        ((struct sockaddr_in6 *)&ss)->sin6_port ==
            ((const struct sockaddr_in6 *)&a->ss)->sin6_port) {
      return fd;
    }
  }
  return -1;
}

/* 1 if net.core.|name| (rmem_max, wmem_max) is at least |bytes|. */
static int sysctl_at_least(const char *name, long bytes) {
  char path[64];
  long v = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/sys/net/core/%s", name);
  f = fopen(path, "r");
  if (f == NULL) {
    return 0;
  }
  if (fscanf(f, "%ld", &v) != 1) {
    v = 0;
  }
  fclose(f);
  return v >= bytes;
}

/* A config of an older (0: none was ever valid) or newer version than
 * this header's is refused before anything is allocated; the current one
 * is honoured: its allocator serves the adapter and the core endpoint and
 * gets everything back, GSO and GRO stay off, the buffer size is asked
 * for. */
static void test_uv_config(void **state) {
  static const int bad[] = {0, UVQ_UV_CONFIG_VERSION + 1};
  counting_mem m = {0, 0};
  const uvq_mem mem = {&m, cm_malloc, cm_free, cm_calloc, cm_realloc};
  uvq_uv_endpoint *l = NULL, *c = NULL;
  struct sockaddr_storage ss;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_config cfg;
  uvq_uv_stats st;
  uv_loop_t loop;
  uvq_addr added;
  int closed = 0, fd, gro, rcvbuf;
  socklen_t optlen = sizeof(gro);

  (void)state;
  set_loopback(&ss, AF_INET);
  assert_int_equal(uv_loop_init(&loop), 0);
  make_tls(&stls, &ctls);

  uvq_uv_config_default(&cfg);
  assert_int_equal(cfg.version, UVQ_UV_CONFIG_VERSION);
  assert_null(cfg.mem);
  assert_int_equal(cfg.no_gso, 0);
  assert_int_equal(cfg.no_gro, 0);
  assert_int_equal(cfg.sockbuf, UVQ_UV_SOCKBUF_DEFAULT);
  cfg.mem = &mem;
  cfg.no_gso = 1;
  cfg.no_gro = 1;
  cfg.sockbuf = 131072;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cfg.version = bad[i];
    assert_int_equal(uvq_uv_listen(&l, &loop, (struct sockaddr *)&ss, &cfg,
                                   NULL, stls, refuse_all, NULL),
                     UVQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        uvq_uv_client_new(&c, &loop, AF_INET, NULL, &cfg, NULL, ctls, NULL),
        UVQ_ERR_INVALID_ARGUMENT);
    assert_null(l);
    assert_null(c);
  }
  assert_int_equal(m.calls, 0);

  cfg.version = UVQ_UV_CONFIG_VERSION;
  assert_int_equal(uvq_uv_listen(&l, &loop, (struct sockaddr *)&ss, &cfg, NULL,
                                 stls, refuse_all, &closed),
                   0);
  assert_ptr_equal(uvq_endpoint_get_mem(uvq_uv_endpoint_get_endpoint(l)), &mem);
  assert_true(m.live > 0);
  assert_int_equal(uvq_uv_endpoint_get_stats(l, &st), 0);
  assert_int_equal(st.gso, 0);
  assert_int_equal(st.gro, 0);
  if (sysctl_at_least("rmem_max", cfg.sockbuf) &&
      sysctl_at_least("wmem_max", cfg.sockbuf)) {
    /* Linux reports twice what it granted. */
    assert_int_equal(st.rcvbuf, 2 * cfg.sockbuf);
    assert_int_equal(st.sndbuf, 2 * cfg.sockbuf);
  }

  /* A client with the same config, and a second socket for it. */
  assert_int_equal(
      uvq_uv_client_new(&c, &loop, AF_INET, NULL, &cfg, NULL, ctls, &closed),
      0);
  assert_int_equal(uvq_uv_endpoint_add_local(c, (struct sockaddr *)&ss, &added),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_stats(c, &st), 0);
  assert_int_equal(st.gso, 0);
  assert_int_equal(st.gro, 0);
  /* The stats' facts are the first socket's: ask the added one itself. */
  fd = udp_fd_bound_to(&added);
  assert_true(fd >= 0);
  gro = 1;
  assert_int_equal(getsockopt(fd, SOL_UDP, UDP_GRO, &gro, &optlen), 0);
  assert_int_equal(gro, 0);
  /* DF set, and the kernel's ICMP-learnt path MTU ignored (PROBE): only
   * QUIC's own discovery sizes datagrams. */
  {
    int pmtud = -1;
    optlen = sizeof(pmtud);
    assert_int_equal(
        getsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtud, &optlen), 0);
    assert_int_equal(pmtud, IP_PMTUDISC_PROBE);
  }
  if (sysctl_at_least("rmem_max", cfg.sockbuf)) {
    optlen = sizeof(rcvbuf);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &optlen),
                     0);
    assert_int_equal(rcvbuf, 2 * cfg.sockbuf);
  }

  uvq_uv_endpoint_close(l, count_close);
  uvq_uv_endpoint_close(c, count_close);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 2);
  assert_int_equal(m.live, 0);
  end_loop(&loop, stls, ctls);
}

/* ---- bulk transfers through the datapath (GSO, GRO, ECN, PKTINFO) ---- */

/* The client asks with one stream (FIN); the server answers with |total|
 * bytes of a position-dependent pattern, so a datagram lost, duplicated or
 * reordered inside a GRO super-buffer shows up as a wrong byte. */
typedef struct bulk {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_endpoint *listener;
  uvq_uv_endpoint *client;
  uv_timer_t watchdog;
  int hung;
  size_t total;
  /* Server side. */
  int64_t srv_sid;
  size_t srv_off;
  int srv_fin;
  uvq_addr srv_local;
  int srv_closed;
  /* Client side. */
  int established;
  int64_t cli_sid;
  size_t got;
  size_t bad;
  int cli_fin;
  int cli_closed;
  int cli_close_error;
  uvq_addr cli_remote;
  /* Each side's datagram size at the end (path MTU discovery). */
  size_t cli_payload, srv_payload;
  int closes;
  /* Counters read in the endpoints' close callbacks. */
  uvq_uv_stats srv_uv, cli_uv;
  uvq_endpoint_stats srv_core, cli_core;
  /* Migration: 0 none, 1 active, 2 NAT-rebinding style; done once a
   * quarter arrived, from a timer (not inside the data callback). */
  int migrate;
  int migrated;
  uvq_conn *cli_conn;
  uv_timer_t migrate_timer;
  uvq_addr migrated_to;
  uvq_addr cli_local_before;
  uvq_addr srv_remote_end;
  /* bulk_opts.inject_eagain: send calls of the server's socket each
   * injection refuses with EAGAIN, and the injections made — from the
   * client's data callback once a quarter and half arrived, and from the
   * server's own callbacks (while its send queue may hold batches) once
   * three quarters were written. */
  unsigned eagain;
  int eagain_cli_quarter, eagain_cli_half, eagain_srv;
} bulk;

static uint8_t pattern_at(size_t off) {
  return (uint8_t)((off * 7u + (off >> 12)) & 0xff);
}

static void bulk_push(uvq_conn *conn, bulk *b) {
  uint8_t chunk[16384];

  while (b->srv_off < b->total) {
    size_t n = b->total - b->srv_off, i;
    ssize_t w;
    if (n > sizeof(chunk)) {
      n = sizeof(chunk);
    }
    for (i = 0; i < n; ++i) {
      chunk[i] = pattern_at(b->srv_off + i);
    }
    w = uvq_stream_write(conn, b->srv_sid, chunk, n,
                         b->srv_off + n == b->total);
    assert_true(w >= 0);
    b->srv_off += (size_t)w;
    if (b->eagain && !b->eagain_srv && b->srv_off >= b->total / 4 * 3) {
      b->eagain_srv = 1;
      uvq_uv_endpoint_inject_eagain(b->listener, b->eagain);
    }
    if ((size_t)w < n) {
      /* Buffer full: on_stream_writable resumes. */
      return;
    }
  }
  b->srv_fin = 1;
}

static int bsrv_data(uvq_conn *conn, int64_t id, const uint8_t *data,
                     size_t len, int fin, void *ud, void *sud) {
  bulk *b = ud;
  uvq_conn_info ci;

  (void)data;
  (void)len;
  (void)sud;
  if (fin) {
    uvq_conn_get_info(conn, &ci);
    b->srv_local = ci.path->local;
    b->srv_sid = id;
    bulk_push(conn, b);
  }
  return 0;
}

static int bsrv_writable(uvq_conn *conn, int64_t id, void *ud, void *sud) {
  bulk *b = ud;
  (void)sud;
  if (id == b->srv_sid && !b->srv_fin) {
    bulk_push(conn, b);
  }
  return 0;
}

static void bsrv_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  bulk *b = ud;
  uvq_conn_info info;
  (void)ci;
  uvq_conn_get_info(conn, &info);
  b->srv_remote_end = info.path->remote;
  b->srv_payload = uvq_conn_get_max_udp_payload(conn);
  b->srv_closed++;
}

static const uvq_app_callbacks bsrv_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = bsrv_data,
    .on_stream_writable = bsrv_writable,
    .on_closed = bsrv_closed,
};

static int bulk_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                       const uvq_accept_info *info,
                       const uvq_app_callbacks **pcallbacks,
                       void **pconn_user_data, void *user_data) {
  (void)l;
  (void)conn;
  (void)info;
  *pcallbacks = &bsrv_cbs;
  *pconn_user_data = user_data;
  return 0;
}

static int bcli_established(uvq_conn *conn, void *ud) {
  bulk *b = ud;
  uvq_conn_info ci;

  b->established++;
  uvq_conn_get_info(conn, &ci);
  b->cli_remote = ci.path->remote;
  assert_int_equal(uvq_conn_open_stream(conn, 1, &b->cli_sid, NULL), 0);
  assert_int_equal(
      uvq_stream_write(conn, b->cli_sid, (const uint8_t *)"GET", 3, 1), 3);
  return 0;
}

static void bulk_migrate(uv_timer_t *t) {
  bulk *b = t->data;
  struct sockaddr_in sa;
  uvq_conn_info info;

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uvq_conn_get_info(b->cli_conn, &info);
  b->cli_local_before = info.path->local;
  assert_int_equal(uvq_uv_conn_migrate(b->client, b->cli_conn,
                                       (struct sockaddr *)&sa, b->migrate == 2,
                                       &b->migrated_to),
                   0);
  b->migrated = 1;
}

static int bcli_data(uvq_conn *conn, int64_t id, const uint8_t *data,
                     size_t len, int fin, void *ud, void *sud) {
  bulk *b = ud;
  size_t i;

  (void)sud;
  assert_true(id == b->cli_sid);
  for (i = 0; i < len; ++i) {
    if (data[i] != pattern_at(b->got + i)) {
      b->bad++;
    }
  }
  b->got += len;
  if (b->eagain && !b->eagain_cli_quarter && b->got >= b->total / 4) {
    b->eagain_cli_quarter = 1;
    uvq_uv_endpoint_inject_eagain(b->listener, b->eagain);
  }
  if (b->eagain && !b->eagain_cli_half && b->got >= b->total / 2) {
    b->eagain_cli_half = 1;
    uvq_uv_endpoint_inject_eagain(b->listener, b->eagain);
  }
  if (b->migrate && !b->migrated && b->got >= b->total / 4) {
    b->migrated = -1; /* scheduled */
    b->cli_conn = conn;
    uv_timer_start(&b->migrate_timer, bulk_migrate, 0, 0);
  }
  if (fin) {
    b->cli_fin = 1;
    b->cli_payload = uvq_conn_get_max_udp_payload(conn);
    assert_int_equal(uvq_conn_close(conn, 0, "done"), 0);
  }
  return 0;
}

static void bulk_ep_closed(uvq_uv_endpoint *uep, void *ud) {
  bulk *b = ud;

  if (uep == b->listener) {
    uvq_uv_endpoint_get_stats(uep, &b->srv_uv);
    uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(uep), &b->srv_core);
  } else {
    uvq_uv_endpoint_get_stats(uep, &b->cli_uv);
    uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(uep), &b->cli_core);
  }
  if (++b->closes == 2) {
    uv_close((uv_handle_t *)&b->watchdog, NULL);
    uv_close((uv_handle_t *)&b->migrate_timer, NULL);
  }
}

static void bcli_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  bulk *b = ud;
  (void)conn;
  b->cli_closed++;
  b->cli_close_error = ci->error;
  uvq_uv_endpoint_close(b->client, bulk_ep_closed);
  uvq_uv_endpoint_close(b->listener, bulk_ep_closed);
}

static const uvq_app_callbacks bcli_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = bcli_established,
    .on_stream_data = bcli_data,
    .on_closed = bcli_closed,
};

static uint16_t addr_port(const uvq_addr *a) {
  return ntohs(a->ss.ss_family == AF_INET
                   ? ((const struct sockaddr_in *)&a->ss)->sin_port
                   : ((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* The address of |a| as text, for comparisons. */
static const char *addr_ip(const uvq_addr *a, char *buf, size_t len) {
  const void *p =
      a->ss.ss_family == AF_INET
          ? (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr
          : (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
  assert_non_null(inet_ntop(a->ss.ss_family, p, buf, (socklen_t)len));
  return buf;
}

typedef struct bulk_opts {
  int family;
  const char *listen_ip;
  const char *connect_ip;
  size_t total;
  /* Turn GSO off on both endpoints before the transfer. */
  int gso_off;
  /* Make the server's first GSO send fail with this errno. */
  int inject_errno;
  /* Migrate the client mid-transfer (bulk.migrate). */
  int migrate;
  /* Make the server's socket refuse this many send calls with EAGAIN, at
   * three points of the transfer (bulk.eagain); 0 = never. */
  unsigned inject_eagain;
} bulk_opts;

static void run_bulk(bulk *b, const bulk_opts *o) {
  struct sockaddr_storage ss;
  uvq_addr bound;
  char ip[INET6_ADDRSTRLEN];

  memset(b, 0, sizeof(*b));
  b->total = o->total;
  b->migrate = o->migrate;
  b->eagain = o->inject_eagain;
  b->srv_sid = b->cli_sid = -1;
  assert_int_equal(uv_loop_init(&b->loop), 0);
  make_tls(&b->stls, &b->ctls);
  set_addr(&ss, o->family, o->listen_ip, 0);
  assert_int_equal(uvq_uv_listen(&b->listener, &b->loop, (struct sockaddr *)&ss,
                                 NULL, NULL, b->stls, bulk_accept, b),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_local_addr(b->listener, &bound), 0);
  assert_int_equal(uvq_uv_client_new(&b->client, &b->loop, o->family, NULL,
                                     NULL, NULL, b->ctls, b),
                   0);
  if (o->gso_off) {
    assert_int_equal(uvq_uv_endpoint_set_gso(b->listener, 0), 0);
    assert_int_equal(uvq_uv_endpoint_set_gso(b->client, 0), 0);
  }
  if (o->inject_errno) {
    uvq_uv_endpoint_inject_gso_errno(b->listener, o->inject_errno);
  }
  set_addr(&ss, o->family, o->connect_ip, addr_port(&bound));
  assert_int_equal(uvq_uv_connect(b->client, (struct sockaddr *)&ss,
                                  "localhost", &bcli_cbs, b, NULL),
                   0);
  uv_timer_init(&b->loop, &b->migrate_timer);
  b->migrate_timer.data = b;
  start_watchdog(&b->loop, &b->watchdog, &b->hung, 120000);

  uv_run(&b->loop, UV_RUN_DEFAULT);

  assert_false(b->hung);
  assert_int_equal(b->established, 1);
  assert_int_equal(b->got, b->total);
  assert_int_equal(b->bad, 0);
  assert_true(b->cli_fin);
  assert_int_equal(b->cli_closed, 1);
  assert_int_equal(b->cli_close_error, 0);
  assert_int_equal(b->srv_closed, 1);
  assert_int_equal(b->closes, 2);
  /* Replies came from, and the server answered as, the address the client
   * wrote to. */
  assert_string_equal(addr_ip(&b->cli_remote, ip, sizeof(ip)), o->connect_ip);
  assert_string_equal(addr_ip(&b->srv_local, ip, sizeof(ip)), o->connect_ip);
  assert_int_equal(addr_port(&b->srv_local), addr_port(&bound));
  /* Nothing the adapter read was lost on the way into the core: every
   * datagram of every GRO super-buffer was handed over. */
  assert_int_equal(b->cli_uv.datagrams_received,
                   b->cli_core.datagrams_received);
  assert_int_equal(b->srv_uv.datagrams_received,
                   b->srv_core.datagrams_received);
  assert_int_equal(b->srv_uv.datagrams_sent, b->srv_core.datagrams_sent);
  assert_int_equal(b->cli_uv.truncated, 0);

  assert_int_equal(uv_loop_close(&b->loop), 0);
  uvq_tls_ctx_del(b->stls);
  uvq_tls_ctx_del(b->ctls);
}

/* A client moves to a second socket mid-transfer (uvq_uv_conn_migrate):
 * the download stays byte-identical and the server ends up talking to the
 * new port. */
static void run_bulk_migrate(int style) {
  bulk_opts o = {AF_INET, "127.0.0.1", "127.0.0.1", 4u << 20, 0, 0, style, 0};
  bulk b;

  run_bulk(&b, &o);
  assert_int_equal(b.migrated, 1);
  assert_int_not_equal(addr_port(&b.migrated_to),
                       addr_port(&b.cli_local_before));
  assert_int_equal(addr_port(&b.srv_remote_end), addr_port(&b.migrated_to));
}

static void test_uv_migrate_active(void **state) {
  (void)state;
  run_bulk_migrate(1);
}

static void test_uv_migrate_nat_style(void **state) {
  (void)state;
  run_bulk_migrate(2);
}

static void test_uv_bulk_gso_gro(void **state) {
  bulk_opts o = {AF_INET, "127.0.0.1", "127.0.0.1", 8u << 20, 0, 0, 0, 0};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  /* The startup probe found GSO on this kernel and the server used it:
   * bursts left as few messages (three 16384-byte datagrams at most per
   * message, 64 KiB; a burst of four goes as three and one). */
  assert_int_equal(b.srv_uv.gso, 1);
  assert_int_equal(b.srv_uv.gso_fallbacks, 0);
  assert_true(b.srv_uv.gso_msgs > 0);
  assert_true(b.srv_uv.send_msgs * 3 <= b.srv_uv.datagrams_sent * 2);
  /* Loopback hands a GSO message to a UDP_GRO socket whole: the client
   * read super-buffers and split them (the pattern check above proves the
   * split was right). */
  assert_int_equal(b.cli_uv.gro, 1);
  assert_true(b.cli_uv.gro_buffers > 0);
  assert_true(b.cli_uv.recv_buffers < b.cli_uv.datagrams_received);
  /* Path MTU discovery took the server to the ceiling loopback's MTU
   * allows: 16384-byte datagrams (lo's MTU is 65536 unless someone lowered
   * it); its client, told by the server's transport parameter, to 1452. */
  {
    uvq_ifmtu t = {0};
    uvq_addr lo;
    struct sockaddr_storage ss;
    size_t mtu;
    set_addr(&ss, AF_INET, "127.0.0.1", 0);
    assert_int_equal(
        uvq_addr_set(&lo, (struct sockaddr *)&ss, sizeof(struct sockaddr_in)),
        0);
    mtu = uvq_ifmtu_get(&t, &lo, &lo, 1);
    assert_int_equal(b.cli_payload, 1452);
    assert_int_equal(b.srv_payload, mtu - 28 < UVQ_UDP_PAYLOAD_AUTO_MAX
                                        ? mtu - 28
                                        : UVQ_UDP_PAYLOAD_AUTO_MAX);
  }
  print_message("gso: server %llu datagrams in %llu messages (%llu calls); "
                "client %llu datagrams in %llu buffers (%llu GRO)\n",
                (unsigned long long)b.srv_uv.datagrams_sent,
                (unsigned long long)b.srv_uv.send_msgs,
                (unsigned long long)b.srv_uv.send_calls,
                (unsigned long long)b.cli_uv.datagrams_received,
                (unsigned long long)b.cli_uv.recv_buffers,
                (unsigned long long)b.cli_uv.gro_buffers);
}

static void test_uv_bulk_gso_off(void **state) {
  bulk_opts o = {AF_INET, "127.0.0.1", "127.0.0.1", 4u << 20, 1, 0, 0, 0};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  /* One message per datagram; still batched with sendmmsg. */
  assert_int_equal(b.srv_uv.gso, 0);
  assert_int_equal(b.srv_uv.gso_msgs, 0);
  assert_int_equal(b.srv_uv.send_msgs, b.srv_uv.datagrams_sent);
  assert_int_equal(b.srv_uv.gso_fallbacks, 0);
}

static void test_uv_bulk_gso_refused(void **state) {
  bulk_opts o = {AF_INET, "127.0.0.1", "127.0.0.1", 4u << 20, 0, EIO, 0, 0};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  /* The refusal turned GSO off for the server's socket, was counted, and
   * the transfer went on one message per datagram. */
  assert_int_equal(b.srv_uv.gso_fallbacks, 1);
  assert_int_equal(b.srv_core.gso_fallbacks, 1); /* reported to the core */
  assert_int_equal(b.srv_uv.gso, 0);
  assert_int_equal(b.srv_uv.gso_msgs, 0);
  assert_int_equal(b.srv_core.dropped[UVQ_DROP_SEND_ERROR], 0);
  /* The client's socket kept GSO. */
  assert_int_equal(b.cli_uv.gso, 1);
}

static void test_uv_bulk_gso_einval(void **state) {
  bulk_opts o = {AF_INET6, "::1", "::1", 1u << 20, 0, EINVAL, 0, 0};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  assert_int_equal(b.srv_uv.gso_fallbacks, 1);
  assert_int_equal(b.srv_uv.gso, 0);
}

static void test_uv_bulk_ecn(void **state) {
  bulk_opts o = {AF_INET, "127.0.0.1", "127.0.0.1", 4u << 20, 0, 0, 0, 0};
  bulk b6;
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  /* ngtcp2 marks ECT(0) while it tests the path and keeps marking only
   * once the peer's ACK_ECN counts validate it: marks far beyond the
   * testing packets mean the path was found ECN-capable, and loopback
   * carried the TOS bits to the peer's IP_RECVTOS. */
  print_message("ecn: server sent ECT(0) %llu of %llu; client read ECT(0) "
                "%llu of %llu\n",
                (unsigned long long)b.srv_uv.ecn_sent[UVQ_ECN_ECT_0],
                (unsigned long long)b.srv_uv.datagrams_sent,
                (unsigned long long)b.cli_uv.ecn_received[UVQ_ECN_ECT_0],
                (unsigned long long)b.cli_uv.datagrams_received);
  assert_true(b.srv_uv.ecn_sent[UVQ_ECN_ECT_0] > b.srv_uv.datagrams_sent / 2);
  assert_int_equal(b.cli_uv.ecn_received[UVQ_ECN_ECT_0],
                   b.srv_uv.ecn_sent[UVQ_ECN_ECT_0]);
  assert_true(b.srv_uv.ecn_received[UVQ_ECN_ECT_0] > 0);

  /* IPv6: IPV6_TCLASS both ways. */
  o.family = AF_INET6;
  o.listen_ip = o.connect_ip = "::1";
  run_bulk(&b6, &o);
  assert_true(b6.srv_uv.ecn_sent[UVQ_ECN_ECT_0] > b6.srv_uv.datagrams_sent / 2);
  assert_int_equal(b6.cli_uv.ecn_received[UVQ_ECN_ECT_0],
                   b6.srv_uv.ecn_sent[UVQ_ECN_ECT_0]);
}

static void test_uv_pktinfo_wildcard_ipv4(void **state) {
  /* Any 127/8 address reaches the loopback device on Linux. */
  bulk_opts o = {AF_INET, "0.0.0.0", "127.0.0.2", 1u << 20, 0, 0, 0, 0};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  assert_int_equal(b.srv_uv.pktinfo, 1);
  /* The client's socket is wildcard-bound too. */
  assert_int_equal(b.cli_uv.pktinfo, 1);
}

static void test_uv_pktinfo_wildcard_ipv6(void **state) {
  bulk_opts o = {AF_INET6, "::", "::1", 1u << 20, 0, 0, 0, 0};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  assert_int_equal(b.srv_uv.pktinfo, 1);
}

/* uv_hrtime() — the adapter's |now|, and so the clock of every core
 * timestamp and deadline — reads CLOCK_MONOTONIC, the clock of the expiry
 * timerfd, which arms those deadlines as absolute times unchanged. */
static void test_uv_hrtime_is_monotonic_clock(void **state) {
  struct timespec a, c;
  uint64_t ta, tb, tc;
  (void)state;

  assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &a), 0);
  tb = uv_hrtime();
  assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &c), 0);
  ta = (uint64_t)a.tv_sec * UVQ_SECONDS + (uint64_t)a.tv_nsec;
  tc = (uint64_t)c.tv_sec * UVQ_SECONDS + (uint64_t)c.tv_nsec;
  assert_true(ta <= tb);
  assert_true(tb <= tc);
}

/* The server's socket pushes back (EAGAIN, injected) at three points of a
 * transfer: what the send queue held stays queued, the endpoint waits for
 * writability and sends it then, and the core retries what the socket did
 * not take — the download completes byte-exact, nothing is dropped, and
 * the adapter sent every datagram the core counted as sent. */
static void test_uv_bulk_eagain(void **state) {
  bulk_opts o = {AF_INET, "127.0.0.1", "127.0.0.1", 4u << 20, 0, 0, 0, 8};
  bulk b;

  (void)state;
  run_bulk(&b, &o);
  assert_true(b.eagain_cli_quarter);
  assert_true(b.eagain_cli_half);
  assert_true(b.eagain_srv);
  /* The server watched for writability after the pushback. */
  assert_true(b.srv_uv.writable_wakeups > 0);
  assert_int_equal(b.srv_core.dropped[UVQ_DROP_SEND_ERROR], 0);
  assert_int_equal(b.cli_core.dropped[UVQ_DROP_SEND_ERROR], 0);
  assert_int_equal(b.srv_uv.send_errors, 0);
  assert_int_equal(b.cli_uv.send_errors, 0);
  assert_int_equal(b.cli_uv.datagrams_sent, b.cli_core.datagrams_sent);
  /* run_bulk checked srv_uv.datagrams_sent == srv_core.datagrams_sent. */
  print_message("bulk eagain: server %llu datagrams, %llu messages, %llu "
                "calls, %llu queued batches, %llu dropped by the core\n",
                (unsigned long long)b.srv_uv.datagrams_sent,
                (unsigned long long)b.srv_uv.send_msgs,
                (unsigned long long)b.srv_uv.send_calls,
                (unsigned long long)b.srv_uv.queued_batches,
                (unsigned long long)b.srv_core.dropped[UVQ_DROP_SEND_ERROR]);
}

/* ---- many connections at once: the send queue batches them ----------- */

#define MC_CONNS 40

struct mc_fixture;

/* One client connection: its message, and what came back. */
typedef struct mc_conn {
  struct mc_fixture *f;
  char msg[64];
  size_t msglen;
  int64_t sid;
  char echo[64];
  size_t echolen;
  int established;
  int fin;
  int closed;
  int close_error;
} mc_conn;

typedef struct mc_fixture {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_endpoint *listener;
  uvq_uv_endpoint *client;
  uv_timer_t watchdog;
  int hung;
  /* Send calls each EAGAIN injection refuses (0: none): at creation and
   * again from the first server on_accept / on_established and the first
   * client on_established, so that batches are queued when it hits. */
  unsigned eagain;
  int send_errno, srv_errno_injected;
  int srv_accept_injected, srv_est_injected, cli_est_injected;
  /* Server side (all connections share the fixture). */
  int accepted;
  int srv_established;
  size_t srv_bytes;
  int srv_closed;
  int srv_close_errors;
  /* Client side. */
  mc_conn conns[MC_CONNS];
  int cli_established;
  int cli_closed;
  int cli_close_errors;
  int closes;
  /* Counters read in the endpoints' close callbacks. */
  uvq_uv_stats srv_uv, cli_uv;
  uvq_endpoint_stats srv_core, cli_core;
} mc_fixture;

static int mc_srv_established(uvq_conn *conn, void *ud) {
  mc_fixture *f = ud;
  (void)conn;
  f->srv_established++;
  if (f->eagain && !f->srv_est_injected) {
    f->srv_est_injected = 1;
    uvq_uv_endpoint_inject_eagain(f->listener, f->eagain);
  }
  return 0;
}

static int mc_srv_data(uvq_conn *conn, int64_t id, const uint8_t *data,
                       size_t len, int fin, void *ud, void *sud) {
  mc_fixture *f = ud;
  (void)sud;
  f->srv_bytes += len;
  assert_int_equal(uvq_stream_write(conn, id, data, len, fin), (ssize_t)len);
  return 0;
}

static void mc_srv_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  mc_fixture *f = ud;
  (void)conn;
  f->srv_closed++;
  if (ci->error != 0) {
    f->srv_close_errors++;
  }
}

static const uvq_app_callbacks mc_srv_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = mc_srv_established,
    .on_stream_data = mc_srv_data,
    .on_closed = mc_srv_closed,
};

static int mc_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks,
                     void **pconn_user_data, void *user_data) {
  mc_fixture *f = user_data;
  (void)conn;
  (void)info;
  f->accepted++;
  if (f->eagain && !f->srv_accept_injected) {
    f->srv_accept_injected = 1;
    uvq_uv_endpoint_inject_eagain(l, f->eagain);
  }
  if (f->send_errno && !f->srv_errno_injected) {
    /* The server's first flight is queued next; its first message fails. */
    f->srv_errno_injected = 1;
    uvq_uv_endpoint_inject_send_errno(l, f->send_errno);
  }
  *pcallbacks = &mc_srv_cbs;
  *pconn_user_data = f;
  return 0;
}

static int mc_cli_established(uvq_conn *conn, void *ud) {
  mc_conn *c = ud;
  mc_fixture *f = c->f;

  c->established++;
  f->cli_established++;
  if (f->eagain && !f->cli_est_injected) {
    f->cli_est_injected = 1;
    uvq_uv_endpoint_inject_eagain(f->client, f->eagain);
  }
  assert_int_equal(uvq_conn_open_stream(conn, 1, &c->sid, NULL), 0);
  assert_int_equal(
      uvq_stream_write(conn, c->sid, (const uint8_t *)c->msg, c->msglen, 1),
      (ssize_t)c->msglen);
  return 0;
}

static int mc_cli_data(uvq_conn *conn, int64_t id, const uint8_t *data,
                       size_t len, int fin, void *ud, void *sud) {
  mc_conn *c = ud;

  (void)sud;
  assert_true(id == c->sid);
  assert_true(c->echolen + len <= sizeof(c->echo));
  memcpy(c->echo + c->echolen, data, len);
  c->echolen += len;
  if (fin) {
    c->fin = 1;
    assert_int_equal(uvq_conn_close(conn, 0, "bye"), 0);
  }
  return 0;
}

static void mc_ep_closed(uvq_uv_endpoint *uep, void *ud) {
  mc_fixture *f = ud;

  if (uep == f->listener) {
    uvq_uv_endpoint_get_stats(uep, &f->srv_uv);
    uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(uep), &f->srv_core);
  } else {
    uvq_uv_endpoint_get_stats(uep, &f->cli_uv);
    uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(uep), &f->cli_core);
  }
  if (++f->closes == 2) {
    uv_close((uv_handle_t *)&f->watchdog, NULL);
  }
}

static void mc_cli_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  mc_conn *c = ud;
  mc_fixture *f = c->f;

  (void)conn;
  c->closed++;
  c->close_error = ci->error;
  if (ci->error != 0 && f->cli_close_errors++ < 3) {
    print_message("connection %d closed: %s (origin %d, code 0x%llx)\n",
                  (int)(c - f->conns), uvq_strerror(ci->error), (int)ci->origin,
                  (unsigned long long)ci->code);
  }
  if (++f->cli_closed == MC_CONNS) {
    /* From inside a library callback: the adapter defers the closes. */
    uvq_uv_endpoint_close(f->client, mc_ep_closed);
    uvq_uv_endpoint_close(f->listener, mc_ep_closed);
  }
}

static const uvq_app_callbacks mc_cli_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = mc_cli_established,
    .on_stream_data = mc_cli_data,
    .on_closed = mc_cli_closed,
};

/* MC_CONNS connections opened at once on one client endpoint to one
 * listener, each echoing one short message and closing. Their handshake
 * flights, echoes, ACKs and closes are small batches: the send queue makes
 * them leave several per system call. With |eagain| the sockets refuse
 * that many send calls at creation and again once batches are queued. */
static void run_many(mc_fixture *f, unsigned eagain, int send_errno) {
  struct sockaddr_storage ss;
  uvq_addr bound;
  size_t sent = 0;
  int i;

  memset(f, 0, sizeof(*f));
  f->eagain = eagain;
  f->send_errno = send_errno;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  make_tls(&f->stls, &f->ctls);
  set_addr(&ss, AF_INET, "127.0.0.1", 0);
  assert_int_equal(uvq_uv_listen(&f->listener, &f->loop, (struct sockaddr *)&ss,
                                 NULL, NULL, f->stls, mc_accept, f),
                   0);
  if (eagain) {
    uvq_uv_endpoint_inject_eagain(f->listener, eagain);
  }
  assert_int_equal(uvq_uv_endpoint_get_local_addr(f->listener, &bound), 0);
  assert_int_equal(uvq_uv_client_new(&f->client, &f->loop, AF_INET, NULL, NULL,
                                     NULL, f->ctls, f),
                   0);
  if (eagain) {
    uvq_uv_endpoint_inject_eagain(f->client, eagain);
  }
  set_addr(&ss, AF_INET, "127.0.0.1", addr_port(&bound));
  for (i = 0; i < MC_CONNS; ++i) {
    mc_conn *c = &f->conns[i];
    int n = snprintf(c->msg, sizeof(c->msg), "message %d of %d, own connection",
                     i, MC_CONNS);
    assert_true(n > 0 && (size_t)n < sizeof(c->msg));
    c->f = f;
    c->msglen = (size_t)n;
    c->sid = -1;
    assert_int_equal(uvq_uv_connect(f->client, (struct sockaddr *)&ss,
                                    "localhost", &mc_cli_cbs, c, NULL),
                     0);
  }
  start_watchdog(&f->loop, &f->watchdog, &f->hung, 60000);

  uv_run(&f->loop, UV_RUN_DEFAULT);

  assert_false(f->hung);
  assert_int_equal(f->accepted, MC_CONNS);
  assert_int_equal(f->srv_established, MC_CONNS);
  assert_int_equal(f->cli_established, MC_CONNS);
  for (i = 0; i < MC_CONNS; ++i) {
    mc_conn *c = &f->conns[i];
    assert_int_equal(c->established, 1);
    assert_true(c->fin);
    assert_int_equal(c->echolen, c->msglen);
    assert_memory_equal(c->echo, c->msg, c->msglen);
    assert_int_equal(c->closed, 1);
    assert_int_equal(c->close_error, 0);
    sent += c->msglen;
  }
  assert_int_equal(f->srv_bytes, sent);
  assert_int_equal(f->cli_closed, MC_CONNS);
  assert_int_equal(f->cli_close_errors, 0);
  assert_int_equal(f->srv_closed, MC_CONNS);
  assert_int_equal(f->srv_close_errors, 0);
  assert_int_equal(f->closes, 2);
  /* Nothing the queue took was lost or refused, except the message whose
   * send was made to fail (one or more datagrams: a GSO message fails
   * whole): the adapter sent every other datagram the core counted as
   * sent, and the refused ones are in both the adapter's send_errors and
   * the core's drop counter. */
  if (!send_errno) {
    assert_int_equal(f->srv_uv.send_errors, 0);
  }
  assert_int_equal(f->cli_uv.send_errors, 0);
  assert_int_equal(f->srv_uv.datagrams_sent + f->srv_uv.send_errors,
                   f->srv_core.datagrams_sent);
  assert_int_equal(f->cli_uv.datagrams_sent, f->cli_core.datagrams_sent);
  /* Nor did the core drop anything else: a datagram written after the
   * socket filled up is kept (a batch of its own when it cannot join the
   * kept ones), not dropped. */
  (void)eagain;
  assert_int_equal(f->srv_core.dropped[UVQ_DROP_SEND_ERROR],
                   f->srv_uv.send_errors);
  assert_int_equal(f->cli_core.dropped[UVQ_DROP_SEND_ERROR], 0);

  assert_int_equal(uv_loop_close(&f->loop), 0);
  uvq_tls_ctx_del(f->stls);
  uvq_tls_ctx_del(f->ctls);
}

static void print_many(const char *name, const mc_fixture *f) {
  print_message("%s: server %llu queued batches, %llu datagrams in %llu "
                "messages, %llu calls; client %llu queued, %llu datagrams in "
                "%llu messages, %llu calls; core send-error drops %llu/%llu\n",
                name, (unsigned long long)f->srv_uv.queued_batches,
                (unsigned long long)f->srv_uv.datagrams_sent,
                (unsigned long long)f->srv_uv.send_msgs,
                (unsigned long long)f->srv_uv.send_calls,
                (unsigned long long)f->cli_uv.queued_batches,
                (unsigned long long)f->cli_uv.datagrams_sent,
                (unsigned long long)f->cli_uv.send_msgs,
                (unsigned long long)f->cli_uv.send_calls,
                (unsigned long long)f->srv_core.dropped[UVQ_DROP_SEND_ERROR],
                (unsigned long long)f->cli_core.dropped[UVQ_DROP_SEND_ERROR]);
}

/* Many connections' small batches leave together: several messages per
 * sendmmsg on both endpoints. */
static void test_uv_many_connections_coalesced(void **state) {
  static mc_fixture f;

  (void)state;
  run_many(&f, 0, 0);
  print_many("coalesced", &f);
  assert_true(f.srv_uv.queued_batches > 0);
  assert_true(f.srv_uv.send_msgs > f.srv_uv.send_calls);
  assert_true(f.cli_uv.queued_batches > 0);
  assert_true(f.cli_uv.send_msgs > f.cli_uv.send_calls);
}

/* The same with both sockets pushing back (EAGAIN) while batches are
 * queued: the queued batches wait for writability and still all leave. */
static void test_uv_many_connections_eagain(void **state) {
  static mc_fixture f;

  (void)state;
  run_many(&f, 8, 0);
  print_many("eagain", &f);
  assert_true(f.srv_accept_injected);
  assert_true(f.srv_est_injected);
  assert_true(f.cli_est_injected);
  assert_true(f.srv_uv.queued_batches > 0);
  assert_true(f.cli_uv.queued_batches > 0);
  assert_true(f.srv_uv.writable_wakeups > 0);
  assert_true(f.cli_uv.writable_wakeups > 0);
}

/* A queued datagram the kernel refuses outright (EPERM, a firewall's
 * answer) is dropped, counted by the adapter and reported to the core's
 * drop counter; loss recovery resends what it carried, and every
 * connection still completes. */
static void test_uv_many_connections_send_error(void **state) {
  static mc_fixture f;

  (void)state;
  run_many(&f, 0, EPERM);
  print_many("send error", &f);
  assert_true(f.srv_errno_injected);
  assert_true(f.srv_uv.send_errors > 0);
  assert_true(f.srv_uv.send_errors <= UVQ_UDP_GSO_MAX_SEGMENTS);
}

/* EMSGSIZE once: what an ICMP "packet too big" (the answer to a path MTU
 * probe beyond a hop) leaves pending on the socket for whichever send comes
 * next. That send is made again and nothing is dropped. */
static void test_uv_many_connections_pending_emsgsize(void **state) {
  static mc_fixture f;

  (void)state;
  run_many(&f, 0, EMSGSIZE);
  print_many("pending EMSGSIZE", &f);
  assert_true(f.srv_errno_injected);
  assert_int_equal(f.srv_uv.send_errors, 0);
  assert_int_equal(f.srv_uv.send_async_errors, 1);
}

static void test_uv_stats_bad_arguments(void **state) {
  uvq_uv_stats st;
  (void)state;
  assert_int_equal(uvq_uv_endpoint_get_stats(NULL, &st),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_uv_endpoint_set_gso(NULL, 1), UVQ_ERR_INVALID_ARGUMENT);
}

/* ---- close_now: free at once after sending the closes ---------------- */

typedef struct cn_fixture {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_endpoint *listener;
  uvq_uv_endpoint *client;
  uv_timer_t watchdog;
  int hung;
  int echoed;
  int client_closed;       /* client on_closed */
  int client_closed_first; /* ...before the endpoint's close cb */
  int server_closed;
  uvq_close_origin server_origin;
  int server_error;
  int client_cb, listener_cb;
  size_t conns_at_cb; /* connections the client core still held then */
  uint8_t *ref;       /* a write_ref buffer the client may still hold */
  int ref_freed;
} cn_fixture;

static uint8_t cn_ref_buf[256 * 1024];

static void cn_ref_free(void *ptr, void *ud) {
  cn_fixture *f = ud;
  assert_ptr_equal(ptr, f->ref);
  f->ref_freed++;
}

static void cn_maybe_done(cn_fixture *f) {
  if (f->client_cb && f->listener_cb) {
    uv_close((uv_handle_t *)&f->watchdog, NULL);
  }
}

static void cn_listener_closed(uvq_uv_endpoint *uep, void *ud) {
  cn_fixture *f = ud;
  (void)uep;
  f->listener_cb++;
  cn_maybe_done(f);
}

static void cn_client_closed(uvq_uv_endpoint *uep, void *ud) {
  cn_fixture *f = ud;
  f->client_cb++;
  f->client_closed_first = f->client_closed;
  f->conns_at_cb = uvq_endpoint_conn_count(uvq_uv_endpoint_get_endpoint(uep));
  cn_maybe_done(f);
}

static void cn_srv_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  cn_fixture *f = ud;
  (void)conn;
  f->server_closed++;
  f->server_origin = ci->origin;
  f->server_error = ci->error;
  uvq_uv_endpoint_close(f->listener, cn_listener_closed);
}

/* Echoes bidi streams; the client's unidirectional stream is only read. */
static int cn_srv_data(uvq_conn *conn, int64_t id, const uint8_t *data,
                       size_t len, int fin, void *ud, void *sud) {
  (void)ud;
  (void)sud;
  if (id & 2) {
    return 0;
  }
  assert_int_equal(uvq_stream_write(conn, id, data, len, fin), (ssize_t)len);
  return 0;
}

static const uvq_app_callbacks cn_srv_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = cn_srv_data,
    .on_closed = cn_srv_closed,
};

static int cn_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks,
                     void **pconn_user_data, void *user_data) {
  (void)l;
  (void)conn;
  (void)info;
  *pcallbacks = &cn_srv_cbs;
  *pconn_user_data = user_data;
  return 0;
}

static int cn_established(uvq_conn *conn, void *ud) {
  cn_fixture *f = ud;
  int64_t sid;
  assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"ping", 4, 1),
                   4);
  /* A unidirectional stream whose reference is still held (the server
   * does not read it in time to matter): freed with the connection. */
  assert_int_equal(uvq_conn_open_stream(conn, 0, &sid, NULL), 0);
  assert_int_equal(
      uvq_stream_write_ref(conn, sid, f->ref, 256 * 1024, 0, cn_ref_free, f),
      256 * 1024);
  return 0;
}

static int cn_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                   int fin, void *ud, void *sud) {
  cn_fixture *f = ud;
  (void)conn;
  (void)id;
  (void)data;
  (void)len;
  (void)sud;
  if (fin) {
    f->echoed = 1;
    /* All work done: from inside a library callback (deferred), without
     * closing the connection first. */
    uvq_uv_endpoint_close_now(f->client, cn_client_closed);
    uvq_uv_endpoint_close_now(f->client, cn_client_closed); /* no-op */
  }
  return 0;
}

static void cn_cli_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  cn_fixture *f = ud;
  (void)conn;
  (void)ci;
  f->client_closed++;
}

static const uvq_app_callbacks cn_cli_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cn_established,
    .on_stream_data = cn_data,
    .on_closed = cn_cli_closed,
};

/* uvq_uv_endpoint_close_now: the client's CONNECTION_CLOSE reaches the
 * server (which sees the peer's NO_ERROR close, not an idle timeout), the
 * client's on_closed fires before the endpoint's close cb, and at that cb
 * the connection is still held — in its closing period, freed right after
 * without waiting it out — and a write_ref reference still held is
 * released exactly once as it is freed. */
static void test_uv_close_now(void **state) {
  struct sockaddr_in sin;
  cn_fixture f;
  uvq_addr bound;
  (void)state;

  memset(&f, 0, sizeof(f));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  f.ref = cn_ref_buf;
  assert_int_equal(uv_loop_init(&f.loop), 0);
  make_tls(&f.stls, &f.ctls);
  assert_int_equal(uvq_uv_listen(&f.listener, &f.loop, (struct sockaddr *)&sin,
                                 NULL, NULL, f.stls, cn_accept, &f),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_local_addr(f.listener, &bound), 0);
  assert_int_equal(uvq_uv_client_new(&f.client, &f.loop, AF_INET, NULL, NULL,
                                     NULL, f.ctls, &f),
                   0);
  assert_int_equal(uvq_uv_connect(f.client, (struct sockaddr *)&bound.ss,
                                  "localhost", &cn_cli_cbs, &f, NULL),
                   0);
  start_watchdog(&f.loop, &f.watchdog, &f.hung, 60000);

  uv_run(&f.loop, UV_RUN_DEFAULT);

  assert_false(f.hung);
  assert_int_equal(f.echoed, 1);
  assert_int_equal(f.client_cb, 1);
  assert_int_equal(f.client_closed, 1);
  assert_int_equal(f.client_closed_first, 1);
  assert_int_equal(f.conns_at_cb, 1);
  assert_int_equal(f.ref_freed, 1);
  assert_int_equal(f.server_closed, 1);
  assert_int_equal(f.server_origin, UVQ_CLOSE_PEER);
  assert_int_equal(f.server_error, 0);
  assert_int_equal(f.listener_cb, 1);

  assert_int_equal(uv_loop_close(&f.loop), 0);
  uvq_tls_ctx_del(f.stls);
  uvq_tls_ctx_del(f.ctls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uv_close_now),
      cmocka_unit_test(test_uv_exchange_ipv4),
      cmocka_unit_test(test_uv_exchange_ipv6),
      cmocka_unit_test(test_uv_icmp_refused_ipv4),
      cmocka_unit_test(test_uv_icmp_refused_ipv6),
      cmocka_unit_test(test_uv_listen_addr_in_use),
      cmocka_unit_test(test_uv_bad_arguments),
      cmocka_unit_test(test_uv_config),
      cmocka_unit_test(test_uv_bulk_gso_gro),
      cmocka_unit_test(test_uv_bulk_gso_off),
      cmocka_unit_test(test_uv_bulk_gso_refused),
      cmocka_unit_test(test_uv_bulk_gso_einval),
      cmocka_unit_test(test_uv_bulk_ecn),
      cmocka_unit_test(test_uv_pktinfo_wildcard_ipv4),
      cmocka_unit_test(test_uv_pktinfo_wildcard_ipv6),
      cmocka_unit_test(test_uv_stats_bad_arguments),
      cmocka_unit_test(test_uv_hrtime_is_monotonic_clock),
      cmocka_unit_test(test_uv_migrate_active),
      cmocka_unit_test(test_uv_migrate_nat_style),
      cmocka_unit_test(test_uv_bulk_eagain),
      cmocka_unit_test(test_uv_many_connections_coalesced),
      cmocka_unit_test(test_uv_many_connections_eagain),
      cmocka_unit_test(test_uv_many_connections_send_error),
      cmocka_unit_test(test_uv_many_connections_pending_emsgsize),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
