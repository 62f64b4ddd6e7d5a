/* Shards (uvq_uv_listen with uvq_uv_config.shards): two shards on
 * 127.0.0.1 port 0, client endpoints on the test's loop. Each client
 * uploads a position-patterned body, the server checks every byte and
 * answers with a patterned body the client checks. Server callbacks run on
 * the shards' threads: their counters are per shard and read only after
 * the group has closed (its threads joined). */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "uv/driver.h"
#include "uvquic/uvquic.h"
#include "uvquic/uvquic_lb.h"
#include "uvquic/uvquic_uv.h"

static const char *const alpn[] = {"uvq-shard"};

#define NSHARDS 2

/* Written only by shard |i|'s thread while the group runs. */
typedef struct shard_counts {
  uint64_t accepted, bytes_in, bytes_out, bad, closed;
} shard_counts;

typedef struct xfer {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_uv_endpoint *group;
  uvq_addr bound;
  size_t up, down;
  /* Connections to make, at most |width| at a time. */
  unsigned total, width, started, done, active;
  /* Migrate each client once a quarter of the download arrived: 0 none,
   * 1 active, 2 NAT-rebinding style. */
  int migrate;
  unsigned migrated;
  uv_timer_t watchdog;
  int hung;
  /* Client side, on the test's loop. */
  uint64_t cli_bad, cli_got, cli_fin, cli_errors;
  /* Server side. */
  shard_counts per[NSHARDS];
  /* Lines the settings' log_cb received. */
  uv_mutex_t log_lock;
  char log[512];
  /* The group's counters, read in its close callback. */
  uvq_uv_stats uvst;
  uvq_endpoint_stats epst;
  uvq_endpoint_stats shard_epst[NSHARDS];
  int group_closed;
} xfer;

static uint8_t pattern_at(size_t off) {
  return (uint8_t)((off * 7u + (off >> 12)) & 0xff);
}

/* ---- server, on the shards' threads ------------------------------------ */

typedef struct sconn {
  xfer *x;
  unsigned shard;
  int64_t sid;
  size_t in, out;
  int fin;
} sconn;

/* Writes the pattern from *|off| up to |total| on stream |sid| (FIN with
 * the last byte) until done or the stream pushes back; returns the bytes
 * written. */
static size_t push_pattern(uvq_conn *conn, int64_t sid, size_t *off,
                           size_t total) {
  uint8_t chunk[16384];
  size_t done = 0;

  while (*off < total) {
    size_t n = total - *off, i;
    ssize_t w;
    if (n > sizeof(chunk)) {
      n = sizeof(chunk);
    }
    for (i = 0; i < n; i++) {
      chunk[i] = pattern_at(*off + i);
    }
    w = uvq_stream_write(conn, sid, chunk, n, *off + n == total);
    if (w < 0) {
      /* Not asserted here: this may run on a shard's thread. The byte
       * counts at the end tell. */
      break;
    }
    *off += (size_t)w;
    done += (size_t)w;
    if ((size_t)w < n) {
      break;
    }
  }
  return done;
}

static void srv_push(uvq_conn *conn, sconn *sc) {
  xfer *x = sc->x;

  x->per[sc->shard].bytes_out += push_pattern(conn, sc->sid, &sc->out, x->down);
  sc->fin = sc->out == x->down;
}

static int srv_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                    int fin, void *ud, void *sud) {
  sconn *sc = ud;
  size_t i;

  (void)sud;
  for (i = 0; i < len; i++) {
    if (data[i] != pattern_at(sc->in + i)) {
      sc->x->per[sc->shard].bad++;
    }
  }
  sc->in += len;
  sc->x->per[sc->shard].bytes_in += len;
  if (fin) {
    sc->sid = id;
    srv_push(conn, sc);
  }
  return 0;
}

static int srv_writable(uvq_conn *conn, int64_t id, void *ud, void *sud) {
  sconn *sc = ud;

  (void)sud;
  if (id == sc->sid && !sc->fin) {
    srv_push(conn, sc);
  }
  return 0;
}

static void srv_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  sconn *sc = ud;

  (void)conn;
  (void)ci;
  sc->x->per[sc->shard].closed++;
  free(sc);
}

static const uvq_app_callbacks srv_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = srv_data,
    .on_stream_writable = srv_writable,
    .on_closed = srv_closed,
};

static int srv_accept(uvq_uv_endpoint *shard, uvq_conn *conn,
                      const uvq_accept_info *info,
                      const uvq_app_callbacks **pcallbacks,
                      void **pconn_user_data, void *user_data) {
  xfer *x = user_data;
  sconn *sc = calloc(1, sizeof(*sc));

  (void)conn;
  (void)info;
  if (sc == NULL) {
    return -1;
  }
  sc->x = x;
  sc->shard = uvq_uv_endpoint_get_shard_index(shard);
  sc->sid = -1;
  assert_true(sc->shard < NSHARDS);
  assert_int_equal(uvq_uv_endpoint_get_shard_count(shard), NSHARDS);
  x->per[sc->shard].accepted++;
  *pcallbacks = &srv_cbs;
  *pconn_user_data = sc;
  return 0;
}

/* ---- client, on the test's loop ----------------------------------------- */

typedef struct cconn {
  xfer *x;
  uvq_uv_endpoint *ep;
  uvq_conn *conn;
  int64_t sid;
  size_t up_off, got;
  int migrate_state; /* 0, 1 scheduled, 2 done */
  uv_timer_t timer;
} cconn;

static void cli_push(uvq_conn *conn, cconn *c) {
  (void)push_pattern(conn, c->sid, &c->up_off, c->x->up);
}

static int cli_established(uvq_conn *conn, void *ud) {
  cconn *c = ud;

  assert_int_equal(uvq_conn_open_stream(conn, 1, &c->sid, NULL), 0);
  cli_push(conn, c);
  return 0;
}

static int cli_writable(uvq_conn *conn, int64_t id, void *ud, void *sud) {
  cconn *c = ud;

  (void)sud;
  if (id == c->sid) {
    cli_push(conn, c);
  }
  return 0;
}

static void cli_migrate(uv_timer_t *t) {
  cconn *c = t->data;
  struct sockaddr_in sa;

  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(uvq_uv_conn_migrate(c->ep, c->conn, (struct sockaddr *)&sa,
                                       c->x->migrate == 2, NULL),
                   0);
  c->migrate_state = 2;
  c->x->migrated++;
}

static int cli_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                    int fin, void *ud, void *sud) {
  cconn *c = ud;
  xfer *x = c->x;
  size_t i;

  (void)sud;
  assert_true(id == c->sid);
  for (i = 0; i < len; i++) {
    if (data[i] != pattern_at(c->got + i)) {
      x->cli_bad++;
    }
  }
  c->got += len;
  x->cli_got += len;
  if (x->migrate && c->migrate_state == 0 && c->got >= x->down / 4) {
    c->migrate_state = 1;
    c->conn = conn;
    uv_timer_start(&c->timer, cli_migrate, 0, 0);
  }
  if (fin) {
    assert_int_equal(c->got, x->down);
    x->cli_fin++;
    assert_int_equal(uvq_conn_close(conn, 0, "done"), 0);
  }
  return 0;
}

static void cli_timer_closed(uv_handle_t *h) { free(h->data); }

static void top_up(xfer *x);

static void cli_ep_closed(uvq_uv_endpoint *uep, void *ud) {
  cconn *c = ud;

  (void)uep;
  c->x->done++;
  c->x->active--;
  uv_close((uv_handle_t *)&c->timer, cli_timer_closed);
  /* Outside any call into the core: the next one may start here. */
  top_up(c->x);
}

static void group_closed(uvq_uv_endpoint *uep, void *ud) {
  xfer *x = ud;

  assert_true(uep == x->group);
  assert_int_equal(uvq_uv_endpoint_get_stats(uep, &x->uvst), 0);
  assert_int_equal(uvq_uv_endpoint_get_endpoint_stats(uep, &x->epst), 0);
  for (unsigned i = 0; i < NSHARDS; i++) {
    assert_int_equal(
        uvq_uv_endpoint_get_shard_stats(uep, i, NULL, &x->shard_epst[i]), 0);
    /* Stopped: no longer reachable. */
    assert_null(uvq_uv_endpoint_get_shard(uep, i));
  }
  assert_int_equal(uvq_uv_endpoint_get_shard_stats(uep, NSHARDS, NULL, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  x->group_closed = 1;
  uv_close((uv_handle_t *)&x->watchdog, NULL);
}

static void cli_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  cconn *c = ud;
  xfer *x = c->x;

  (void)conn;
  if (ci->error != 0) {
    x->cli_errors++;
  }
  uvq_uv_endpoint_close(c->ep, cli_ep_closed);
}

static const uvq_app_callbacks cli_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cli_established,
    .on_stream_data = cli_data,
    .on_stream_writable = cli_writable,
    .on_closed = cli_closed,
};

/* Keeps |width| connections going, each from its own client endpoint
 * (its own port, so the kernel's hash spreads their handshakes); closes
 * the group after the last. */
static void top_up(xfer *x) {
  while (x->started < x->total && x->active < x->width) {
    struct sockaddr_in sa;
    cconn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->x = x;
    c->sid = -1;
    uv_timer_init(&x->loop, &c->timer);
    c->timer.data = c;
    assert_int_equal(uvq_uv_client_new(&c->ep, &x->loop, AF_INET, NULL, NULL,
                                       NULL, x->ctls, c),
                     0);
    memcpy(&sa, &x->bound.ss, sizeof(sa));
    assert_int_equal(uvq_uv_connect(c->ep, (struct sockaddr *)&sa, "localhost",
                                    &cli_cbs, c, NULL),
                     0);
    x->started++;
    x->active++;
  }
  if (x->done == x->total) {
    uvq_uv_endpoint_close(x->group, group_closed);
  }
}

static void watchdog_cb(uv_timer_t *t) {
  xfer *x = t->data;
  x->hung = 1;
  uv_stop(t->loop);
}

typedef struct xfer_opts {
  unsigned total, width;
  size_t up, down;
  int migrate;
  /* Replace the group's steering program by one that sends every
   * short-header packet to the other shard: everything is forwarded. */
  int swap_steering;
  unsigned forward_queue_len;
  int no_gro;
  /* Non-NULL: the shards issue QUIC-LB CIDs of this configuration. */
  const uvq_lb_config *lb;
  /* Bind another SO_REUSEPORT socket to the port first (closed once the
   * group is up): the group must notice and not steer. */
  int foreign;
} xfer_opts;

/* Steers every short-header packet to the shard its CID does not name
 * (index ^ 1), long headers by the kernel's hash. */
static void attach_swap(int fd) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 4, 0),
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x1f),
      BPF_STMT(BPF_ALU | BPF_XOR | BPF_K, 1),
      BPF_STMT(BPF_RET | BPF_A, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof(code) / sizeof(code[0])),
                            code};

  assert_int_equal(
      setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)),
      0);
}

/* The settings' log_cb: on the test's thread (listen) and the shards'. */
static void log_line(void *ud, uvq_log_level lvl, const char *scid,
                     const char *line) {
  xfer *x = ud;
  size_t used;

  (void)lvl;
  (void)scid;
  uv_mutex_lock(&x->log_lock);
  used = strlen(x->log);
  snprintf(x->log + used, sizeof(x->log) - used, "%s\n", line);
  uv_mutex_unlock(&x->log_lock);
}

/* A UDP socket with SO_REUSEPORT on 127.0.0.1, port 0; its port in *sa. */
static int foreign_socket(struct sockaddr_in *sa) {
  socklen_t len = sizeof(*sa);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), on = 1;

  assert_true(fd >= 0);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)),
                   0);
  assert_int_equal(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &len), 0);
  return fd;
}

static void run_xfer(xfer *x, const xfer_opts *o) {
  struct sockaddr_in sa;
  uvq_tls_config tcfg;
  uvq_uv_config cfg;
  uvq_settings st;
  uint64_t t0;
  char err[256];
  int fd;

  memset(x, 0, sizeof(*x));
  assert_int_equal(uv_mutex_init(&x->log_lock), 0);
  x->total = o->total;
  x->width = o->width;
  x->up = o->up;
  x->down = o->down;
  x->migrate = o->migrate;
  assert_int_equal(uv_loop_init(&x->loop), 0);
  uvq_tls_config_default(&tcfg);
  tcfg.alpn = alpn;
  tcfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&x->stls, 1, &tcfg, NULL, err, sizeof(err)),
                   0);
  tcfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&x->ctls, 0, &tcfg, NULL, err, sizeof(err)),
                   0);

  uvq_uv_config_default(&cfg);
  cfg.shards = NSHARDS;
  cfg.forward_queue_len = o->forward_queue_len;
  cfg.no_gro = o->no_gro;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uvq_settings_default(&st);
  st.quic_lb = o->lb;
  st.log_cb = log_line;
  st.log_cb_user_data = x;
  fd = o->foreign ? foreign_socket(&sa) : -1;
  assert_int_equal(uvq_uv_listen(&x->group, &x->loop, (struct sockaddr *)&sa,
                                 &cfg, &st, x->stls, srv_accept, x),
                   0);
  if (fd >= 0) {
    /* The kernel fills its slot with the group's last socket: shard 1
     * becomes socket 0. Only forwarding keeps the connections whole. */
    close(fd);
  }
  assert_int_equal(uvq_uv_endpoint_get_shard_count(x->group), NSHARDS);
  assert_null(uvq_uv_endpoint_get_endpoint(x->group));
  assert_null(uvq_uv_endpoint_get_shard(x->group, NSHARDS));
  assert_int_equal(uvq_uv_endpoint_get_local_addr(x->group, &x->bound), 0);
  assert_int_not_equal(((struct sockaddr_in *)&x->bound.ss)->sin_port, 0);
  if (o->swap_steering) {
    attach_swap(uvq_uv_endpoint_get_shard(x->group, 0)->socks[0]->udp.fd);
  }

  t0 = uv_hrtime();
  top_up(x);
  uv_timer_init(&x->loop, &x->watchdog);
  x->watchdog.data = x;
  uv_timer_start(&x->watchdog, watchdog_cb, 300000, 0);

  uv_run(&x->loop, UV_RUN_DEFAULT);
  /* Printed, never asserted: what forwarding costs shows against the
   * same transfers steered directly. */
  printf("  %u connections in %.1f ms: %" PRIu64 " datagrams read, %" PRIu64
         " forwarded, %" PRIu64 " overflows\n",
         x->total, (double)(uv_hrtime() - t0) / 1e6, x->uvst.datagrams_received,
         x->uvst.forwarded, x->uvst.forward_overflows);

  assert_false(x->hung);
  assert_true(x->group_closed);
  assert_int_equal(uv_loop_close(&x->loop), 0);
  uvq_tls_ctx_del(x->stls);
  uvq_tls_ctx_del(x->ctls);
  uv_mutex_destroy(&x->log_lock);

  /* Every transfer complete and byte-identical, both ways. */
  assert_int_equal(x->done, x->total);
  assert_int_equal(x->cli_fin, x->total);
  assert_int_equal(x->cli_errors, 0);
  assert_int_equal(x->cli_bad, 0);
  assert_int_equal(x->cli_got, (uint64_t)x->total * x->down);
  {
    uint64_t accepted = 0, in = 0, closed = 0;
    for (int i = 0; i < NSHARDS; i++) {
      assert_int_equal(x->per[i].bad, 0);
      /* Each shard's own counters agree with what its callbacks saw. */
      assert_int_equal(x->shard_epst[i].connections_total, x->per[i].accepted);
      accepted += x->per[i].accepted;
      in += x->per[i].bytes_in;
      closed += x->per[i].closed;
    }
    assert_int_equal(accepted, x->total);
    assert_int_equal(closed, x->total);
    assert_int_equal(in, (uint64_t)x->total * x->up);
  }
  /* The group's summed counters: every connection, and every datagram
   * the shards read reached a core endpoint (its own or, forwarded, its
   * owner's) or was counted as an overflow. */
  assert_int_equal(x->epst.connections_total, x->total);
  assert_int_equal(x->uvst.datagrams_received - x->uvst.forwarded -
                       x->uvst.forward_overflows + x->uvst.forward_received,
                   x->epst.datagrams_received);
  assert_int_equal(x->uvst.forwarded, x->uvst.forward_received);
}

/* 400 connections from 400 client ports: the kernel's hash spreads the
 * handshakes over both shards (each serves at least a quarter), every
 * transfer is byte-identical, and with the steering program every
 * short-header packet reached its owner directly (nothing forwarded). */
static void test_shard_spread(void **state) {
  xfer_opts o = {400, 16, 1024, 16384, 0, 0, 0, 0, NULL, 0};
  xfer *x = calloc(1, sizeof(*x));

  (void)state;
  assert_non_null(x);
  run_xfer(x, &o);
  for (int i = 0; i < NSHARDS; i++) {
    printf("shard %d: %" PRIu64 " connections, %" PRIu64 " bytes out\n", i,
           x->per[i].accepted, x->per[i].bytes_out);
    assert_true(x->per[i].accepted * 4 >= o.total);
  }
  assert_int_equal(x->uvst.forwarded, 0);
  assert_int_equal(x->uvst.forward_overflows, 0);
  free(x);
}

/* Clients that change their source port mid-download (a new socket:
 * uvq_uv_conn_migrate, both styles) finish: the steering program sends
 * their packets from the new port to their shard by the DCID. */
static void run_migrate(int style) {
  xfer_opts o = {8, 8, 1024, 1u << 20, style, 0, 0, 0, NULL, 0};
  xfer *x = calloc(1, sizeof(*x));

  assert_non_null(x);
  run_xfer(x, &o);
  assert_int_equal(x->migrated, o.total);
  assert_int_equal(x->uvst.forwarded, 0);
  free(x);
}

static void test_shard_migrate_steered(void **state) {
  (void)state;
  run_migrate(1);
}

static void test_shard_nat_rebinding_steered(void **state) {
  (void)state;
  run_migrate(2);
}

/* Every short-header packet reaches the wrong shard (a program that swaps
 * the index): each is forwarded to its owner, and migrating clients
 * finish all the same. */
static void test_shard_migrate_forwarded(void **state) {
  xfer_opts o = {8, 8, 1024, 1u << 20, 1, 1, 0, 0, NULL, 0};
  xfer *x = calloc(1, sizeof(*x));

  (void)state;
  assert_non_null(x);
  run_xfer(x, &o);
  assert_int_equal(x->migrated, o.total);
  assert_true(x->uvst.forwarded > 0);
  assert_int_equal(x->uvst.forward_overflows, 0);
  free(x);
}

/* A forward queue of one datagram, every short-header packet on the wrong
 * shard, uploads in bursts (no GRO: one datagram per buffer): the queue
 * overflows, each drop is counted (never silent), and loss recovery still
 * completes every transfer. */
static void test_shard_forward_overflow_counted(void **state) {
  xfer_opts o = {4, 4, 2u << 20, 1024, 0, 1, 1, 1, NULL, 0};
  xfer *x = calloc(1, sizeof(*x));

  (void)state;
  assert_non_null(x);
  run_xfer(x, &o);
  printf("forwarded %" PRIu64 ", overflows %" PRIu64 "\n", x->uvst.forwarded,
         x->uvst.forward_overflows);
  assert_true(x->uvst.forward_overflows > 0);
  free(x);
}

/* What forwarding costs, printed (never asserted): four 8 MiB uploads
 * without GRO (one datagram per buffer, so one queue entry per datagram),
 * steered directly and then with every short-header packet forwarded
 * through the owner's queue (default length). */
static void test_shard_forward_cost(void **state) {
  xfer_opts o = {4, 4, 8u << 20, 1024, 0, 0, 0, 1, NULL, 0};
  xfer *x = calloc(1, sizeof(*x));

  (void)state;
  assert_non_null(x);
  for (int swap = 0; swap < 2; swap++) {
    o.swap_steering = swap;
    run_xfer(x, &o);
    if (swap) {
      assert_true(x->uvst.forwarded > 0);
    } else {
      assert_int_equal(x->uvst.forwarded, 0);
    }
  }
  free(x);
}

/* Another owner's SO_REUSEPORT socket held the port before the group: the
 * socket indices are not the shard indices, so the group says so and
 * attaches no program; with that socket gone (its slot refilled by the
 * last shard's), migrating clients still finish, by the hash and
 * forwarding. */
static void test_shard_foreign_group(void **state) {
  xfer_opts o = {8, 8, 1024, 1u << 20, 1, 0, 0, 0, NULL, 1};
  xfer *x = calloc(1, sizeof(*x));

  (void)state;
  assert_non_null(x);
  run_xfer(x, &o);
  assert_non_null(strstr(x->log, "socket indices are not shard indices"));
  assert_int_equal(x->migrated, o.total);
  free(x);
}

/* QUIC-LB connection IDs (plaintext and encrypted) carry the shard index
 * in the five bits QUIC-LB leaves to the server: migrating clients are
 * still steered to their shard, nothing forwarded. A configuration that
 * encodes the CID length there leaves no room and is refused. */
static void test_shard_quic_lb(void **state) {
  static const char *const configs[] = {
      "cr=1,sid=0a0b,nonce=8",
      "cr=2,sid=0a0b0c,nonce=12,key=000102030405060708090a0b0c0d0e0f",
  };
  xfer_opts o = {8, 8, 1024, 1u << 20, 2, 0, 0, 0, NULL, 0};
  uvq_lb_config lb;
  const char *why;

  (void)state;
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    xfer *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(uvq_lb_config_parse(&lb, configs[i], &why), 0);
    o.lb = &lb;
    run_xfer(x, &o);
    assert_int_equal(x->migrated, o.total);
    assert_int_equal(x->uvst.forwarded, 0);
    free(x);
  }
}

/* What a group refuses, before starting anything. */
static void test_shard_bad_arguments(void **state) {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_tls_config tcfg;
  uvq_uv_config cfg;
  uvq_uv_endpoint *g = NULL;
  struct sockaddr_in sa;
  uvq_settings st;
  uvq_lb_config lb;
  const char *why;
  char err[256];

  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  uvq_tls_config_default(&tcfg);
  tcfg.alpn = alpn;
  tcfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&stls, 1, &tcfg, NULL, err, sizeof(err)), 0);
  tcfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&ctls, 0, &tcfg, NULL, err, sizeof(err)), 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uvq_uv_config_default(&cfg);
  cfg.shards = UVQ_UV_MAX_SHARDS + 1;
  assert_int_equal(uvq_uv_listen(&g, &loop, (struct sockaddr *)&sa, &cfg, NULL,
                                 stls, srv_accept, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  cfg.shards = 2;
  uvq_settings_default(&st);
  assert_int_equal(
      uvq_lb_config_parse(&lb, "cr=0,sid=01,nonce=8,encode-len", &why), 0);
  st.quic_lb = &lb;
  assert_int_equal(uvq_uv_listen(&g, &loop, (struct sockaddr *)&sa, &cfg, &st,
                                 stls, srv_accept, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  st.quic_lb = NULL;
  st.version = 1;
  assert_int_equal(uvq_uv_listen(&g, &loop, (struct sockaddr *)&sa, &cfg, &st,
                                 stls, srv_accept, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_uv_listen(&g, &loop, (struct sockaddr *)&sa, &cfg, NULL,
                                 ctls, srv_accept, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_null(g);
  /* The client context was refused by the first shard's endpoint; what
   * was set up is undone through the loop. */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  uvq_tls_ctx_del(stls);
  uvq_tls_ctx_del(ctls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shard_bad_arguments),
      cmocka_unit_test(test_shard_spread),
      cmocka_unit_test(test_shard_migrate_steered),
      cmocka_unit_test(test_shard_nat_rebinding_steered),
      cmocka_unit_test(test_shard_migrate_forwarded),
      cmocka_unit_test(test_shard_forward_overflow_counted),
      cmocka_unit_test(test_shard_quic_lb),
      cmocka_unit_test(test_shard_foreign_group),
      cmocka_unit_test(test_shard_forward_cost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
