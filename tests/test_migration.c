/*
 * Connection migration in one process: a client that migrates on demand
 * (uvq_conn_migrate, with path validation and in NAT-rebinding style) and
 * a client whose source port a "NAT" rewrites, each in the middle of a
 * 1 MiB download that must arrive byte-identical; the server's path
 * follows, and old connection IDs are retired.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "qtest.h"
#include "qtest_app.h"

#define DOWNLOAD (1024 * 1024)
#define REQUEST_SEED 70
#define DOWNLOAD_SEED 71

/* The application (qtest_app.h): the client asks with a 3-byte request,
 * the server answers with DOWNLOAD bytes. */
static qt_app g_srv;

static void sides_init(qt_app *cli) {
  memset(cli, 0, sizeof(*cli));
  cli->send_on_established = 1;
  cli->to_send = 3;
  cli->seed = REQUEST_SEED;
  memset(&g_srv, 0, sizeof(g_srv));
  g_srv.reply = 1;
  g_srv.to_send = DOWNLOAD;
  g_srv.seed = DOWNLOAD_SEED;
}

static int quarter_done(void *ud) {
  qt_app *a = ud;
  return a->received >= DOWNLOAD / 4;
}

static int addr_eq(const uvq_addr *a, const uvq_addr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static size_t server_scids(uvq_conn *conn, ngtcp2_cid *out) {
  size_t n = ngtcp2_conn_get_scid(conn->ngconn, NULL);
  assert_true(n <= 32);
  return ngtcp2_conn_get_scid(conn->ngconn, out);
}

static int cid_in(const ngtcp2_cid *c, const ngtcp2_cid *set, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ngtcp2_cid_eq(c, &set[i])) {
      return 1;
    }
  }
  return 0;
}

static void finish(qt_world *w, qt_app *cli, int c, int s) {
  assert_true(qt_run(w, qt_app_got_fin, cli, 60 * UVQ_SECONDS));
  qt_app_assert_received(cli, DOWNLOAD_SEED, g_srv.to_send);
  assert_int_equal(cli->closed, 0);
  assert_int_equal(g_srv.closed, 0);
  assert_int_equal(uvq_conn_close(cli->conn, 0, NULL), 0);
  qt_run(w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli->closed, 1);
  assert_int_equal(cli->ci.error, 0);
  assert_int_equal(g_srv.closed, 1);
  assert_int_equal(uvq_endpoint_conn_count(w->nodes[c].ep), 0);
  assert_int_equal(uvq_endpoint_conn_count(w->nodes[s].ep), 0);
}

static void run_client_migration(int nat_style) {
  qt_world w;
  qt_app cli;
  uvq_addr alt;
  uvq_conn_info info;
  ngtcp2_cid before[32], after[32];
  size_t nb, na;
  int retired = 0;

  sides_init(&cli);
  qt_world_init(&w, nat_style ? 72 : 71);
  w.delay = 5 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, qt_app_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, quarter_done, &cli, 10 * UVQ_SECONDS));
  assert_false(cli.fin);
  nb = server_scids(g_srv.conn, before);

  /* Errors first: same address, other family, a server connection. */
  assert_int_equal(
      uvq_conn_migrate(cli.conn, &w.nodes[c].addr, nat_style, w.now),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      uvq_conn_migrate(g_srv.conn, &w.nodes[s].addr, nat_style, w.now),
      UVQ_ERR_INVALID_ARGUMENT);

  qt_addr_v4(&alt, 50100);
  assert_int_equal(qt_add_alias(&w, c, &alt), 0);
  assert_int_equal(uvq_conn_migrate(cli.conn, &alt, nat_style, w.now), 0);
  qt_run(&w, qt_app_got_fin, &cli, 60 * UVQ_SECONDS);
  assert_true(cli.fin);

  /* Both ends are on the new path. */
  uvq_conn_get_info(cli.conn, &info);
  assert_true(addr_eq(&info.path->local, &alt));
  uvq_conn_get_info(g_srv.conn, &info);
  assert_true(addr_eq(&info.path->remote, &alt));
  assert_true(addr_eq(&g_srv.conn->path.remote, &alt));
  /* Retired CIDs leave the server after a few PTOs. */
  qt_run(&w, NULL, NULL, 2 * UVQ_SECONDS);
  if (!nat_style) {
    /* Active migration switched to a fresh CID: the server retired the
     * one the client used before and its map forgot it. */
    na = server_scids(g_srv.conn, after);
    for (size_t i = 0; i < nb; i++) {
      if (!cid_in(&before[i], after, na)) {
        retired++;
        assert_null(uvq_cid_map_find_cid(&w.nodes[s].ep->cids, &before[i]));
      }
    }
    assert_true(retired >= 1);
  }
  finish(&w, &cli, c, s);
  qt_world_free(&w);
}

static void test_migration_client_active(void **state) {
  (void)state;
  run_client_migration(0);
}

static void test_migration_client_nat_style(void **state) {
  (void)state;
  run_client_migration(1);
}

/* A NAT in front of the client picks a new source port mid-transfer: the
 * server sees packets from a new address, validates it and moves. */
typedef struct nat {
  int client, server;
  int on;
  uvq_addr inside, outside;
  uint64_t rewritten;
} nat;

static int nat_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  nat *n = ud;
  (void)w;
  if (!n->on) {
    return 0;
  }
  if (from == n->client && p->dst == n->server) {
    p->path.remote = n->outside; /* as the server sees the sender */
    n->rewritten++;
  } else if (from == n->server && p->dst == n->client &&
             addr_eq(&p->path.local, &n->outside)) {
    p->path.local = n->inside; /* translated back */
  }
  return 0;
}

static void test_migration_nat_rebinding(void **state) {
  qt_world w;
  qt_app cli;
  nat n;
  uvq_conn_info info;
  (void)state;

  sides_init(&cli);
  qt_world_init(&w, 73);
  w.delay = 5 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, qt_app_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);
  memset(&n, 0, sizeof(n));
  n.client = c;
  n.server = s;
  n.inside = w.nodes[c].addr;
  qt_addr_v4(&n.outside, 61000);
  assert_int_equal(qt_add_alias(&w, c, &n.outside), 0);
  w.filter = nat_fn;
  w.filter_ud = &n;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, quarter_done, &cli, 10 * UVQ_SECONDS));
  uvq_conn_get_info(g_srv.conn, &info);
  assert_true(addr_eq(&info.path->remote, &n.inside));

  n.on = 1;
  assert_true(qt_run(&w, qt_app_got_fin, &cli, 60 * UVQ_SECONDS));
  assert_true(n.rewritten > 0);
  uvq_conn_get_info(g_srv.conn, &info);
  assert_true(addr_eq(&info.path->remote, &n.outside));
  /* The client never knew. */
  uvq_conn_get_info(cli.conn, &info);
  assert_true(addr_eq(&info.path->local, &n.inside));
  finish(&w, &cli, c, s);
  qt_world_free(&w);
}

/* ---- a rebinding followed by a blackout (the ngtcp2 path stall) -------- */

/* The NAT above, plus a blackout: from the rebinding on, every server ->
 * client datagram is lost until |until|. */
typedef struct blackout {
  nat n;
  uvq_tstamp until;
  uint64_t dropped;
  /* Nonzero: client -> server datagrams after this many from the new
   * address are lost too, until |until| (a client that goes silent). */
  uint64_t c2s_pass;
  uint64_t c2s_seen;
} blackout;

static int blackout_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  blackout *b = ud;
  if (b->n.on && from == b->n.server && w->now < b->until) {
    b->dropped++;
    return 1;
  }
  if (b->n.on && b->c2s_pass && from == b->n.client && w->now < b->until &&
      ++b->c2s_seen > b->c2s_pass) {
    b->dropped++;
    return 1;
  }
  return nat_fn(w, from, p, &b->n);
}

static int eighth_done(void *ud) {
  return ((qt_app *)ud)->received >= 8 * DOWNLOAD;
}

static int both_closed(void *ud) {
  qt_app *cli = ud;
  return cli->closed && g_srv.closed;
}

/* A 64 MiB download; 8 MiB in, the client's source port changes and every
 * server -> client datagram is lost for |blackout_ms|. Both sides use a
 * 1 ms initial RTT (as on a LAN), so ngtcp2's path validation times out
 * within the blackout: that is what stalls it. Returns when the rebinding
 * happened; *start is then. */
static void rebind_blackout(qt_world *w, blackout *b, qt_app *cli,
                            uvq_tstamp stream_keep_alive,
                            uvq_tstamp stall_timeout, uvq_tstamp blackout_ms,
                            uvq_tstamp *start) {
  uvq_settings ss, cs;
  int s, c;

  sides_init(cli);
  g_srv.to_send = 64 * DOWNLOAD;
  qt_world_init(w, 74);
  w->delay = 1 * UVQ_MILLISECONDS;
  uvq_settings_default(&ss);
  ss.initial_rtt = UVQ_MILLISECONDS;
  uvq_settings_default(&cs);
  cs.initial_rtt = UVQ_MILLISECONDS;
  cs.stream_keep_alive = stream_keep_alive;
  cs.stall_timeout = stall_timeout;
  s = qt_add_server(w, &ss, qt_app_accept, &g_srv);
  c = qt_add_client(w, &cs, NULL);
  memset(b, 0, sizeof(*b));
  b->n.client = c;
  b->n.server = s;
  b->n.inside = w->nodes[c].addr;
  qt_addr_v4(&b->n.outside, 61001);
  assert_int_equal(qt_add_alias(w, c, &b->n.outside), 0);
  w->filter = blackout_fn;
  w->filter_ud = b;
  cli->w = w;
  assert_int_equal(qt_connect(w, c, s, &qt_app_callbacks, cli, &cli->conn), 0);
  assert_true(qt_run(w, eighth_done, cli, 10 * UVQ_SECONDS));
  b->n.on = 1;
  b->until = w->now + blackout_ms * UVQ_MILLISECONDS;
  *start = w->now;
}

/* Lets the world run out its timers, then frees it. */
static void blackout_free(qt_world *w, qt_app *cli) {
  qt_run(w, NULL, NULL, 60 * UVQ_SECONDS);
  qt_app_free(cli);
  qt_app_free(&g_srv);
  qt_world_free(w);
}

/* 1 s of blackout: without the watchdog the server would answer the
 * client's PINGs with ACKs forever (ngtcp2 1.11 stalls on the new path).
 * It closes with NO_VIABLE_PATH within the documented bound (three
 * path-validation timeouts, then the client's next datagram), and the
 * close, repeated in answer to the PINGs, reaches the client once the
 * blackout is over. */
static void test_migration_rebind_blackout_closes(void **state) {
  static blackout b;
  qt_world w;
  qt_app cli;
  uvq_endpoint_stats es;
  uvq_tstamp start;
  (void)state;

  rebind_blackout(&w, &b, &cli, 50 * UVQ_MILLISECONDS, 0, 1000, &start);
  assert_true(qt_run(&w, both_closed, &cli, 10 * UVQ_SECONDS));
  assert_true(b.dropped > 0);
  assert_int_equal(g_srv.ci.error, UVQ_ERR_PATH_STALLED);
  assert_int_equal(g_srv.ci.code, NGTCP2_NO_VIABLE_PATH);
  assert_true(g_srv.closed_at - start < UVQ_SECONDS);
  assert_int_equal(cli.ci.error, UVQ_ERR_PEER_TRANSPORT);
  assert_int_equal(cli.ci.code, NGTCP2_NO_VIABLE_PATH);
  /* Right after the blackout, far inside the 30 s idle timeout. */
  assert_true(cli.closed_at >= b.until);
  assert_true(cli.closed_at - b.until < 500 * UVQ_MILLISECONDS);
  assert_true(cli.received < g_srv.to_send);
  uvq_endpoint_get_stats(w.nodes[b.n.server].ep, &es);
  assert_int_equal(es.paths_stalled, 1);
  assert_int_equal(es.paths_stalled_dropped, 0);
  print_message("rebind + 1 s blackout: server closed %.3f s after, client "
                "%.3f s after\n",
                (double)(g_srv.closed_at - start) / 1e9,
                (double)(cli.closed_at - start) / 1e9);
  blackout_free(&w, &cli);
}

/* 200 ms of blackout: ngtcp2 recovers by itself, and the watchdog must
 * not get in the way: the download completes. */
static void test_migration_rebind_short_blackout(void **state) {
  static blackout b;
  qt_world w;
  qt_app cli;
  uvq_endpoint_stats es;
  uvq_tstamp start;
  (void)state;

  rebind_blackout(&w, &b, &cli, 50 * UVQ_MILLISECONDS, 0, 200, &start);
  assert_true(qt_run(&w, qt_app_got_fin, &cli, 60 * UVQ_SECONDS));
  assert_true(b.dropped > 0);
  assert_int_equal(cli.received, g_srv.to_send);
  assert_int_equal(cli.closed, 0);
  assert_int_equal(g_srv.closed, 0);
  uvq_endpoint_get_stats(w.nodes[b.n.server].ep, &es);
  assert_int_equal(es.paths_stalled + es.paths_stalled_dropped, 0);
  finish(&w, &cli, b.n.client, b.n.server);
  qt_world_free(&w);
}

/* After one datagram from its new address nothing of the client's gets
 * through either for 5 s: the server has no datagram to carry its close
 * and ends the connection silently at the deadline, counted; the client's
 * 2 s stall timeout ends its side with UVQ_ERR_STALLED instead of the
 * 30 s idle timeout. */
static void test_migration_rebind_blackout_silent(void **state) {
  static blackout b;
  qt_world w;
  qt_app cli;
  uvq_endpoint_stats ss, cst;
  uvq_tstamp start;
  (void)state;

  rebind_blackout(&w, &b, &cli, 0, 2 * UVQ_SECONDS, 5000, &start);
  b.c2s_pass = 1;
  assert_true(qt_run(&w, both_closed, &cli, 10 * UVQ_SECONDS));
  assert_int_equal(g_srv.ci.error, UVQ_ERR_PATH_STALLED);
  /* Three validation timeouts, then the 2 s wait for a datagram. */
  assert_true(g_srv.closed_at - start < 3 * UVQ_SECONDS);
  uvq_endpoint_get_stats(w.nodes[b.n.server].ep, &ss);
  assert_int_equal(ss.paths_stalled, 0);
  assert_int_equal(ss.paths_stalled_dropped, 1);
  assert_int_equal(cli.ci.error, UVQ_ERR_STALLED);
  assert_int_equal(cli.ci.code, NGTCP2_NO_VIABLE_PATH);
  assert_true(cli.closed_at - start < 3 * UVQ_SECONDS);
  uvq_endpoint_get_stats(w.nodes[b.n.client].ep, &cst);
  assert_int_equal(cst.stalls, 1);
  blackout_free(&w, &cli);
}

/* Off-path garbage: short-header datagrams that carry the server's CID
 * but do not decrypt, from an address of the attacker's choosing, sent to
 * an idle connection 12 s apart (past the watchdog's bound). ngtcp2 drops
 * them (and returns 0); they must neither arm the path watchdog nor draw
 * a close to that address: the connection stays. */
static void test_migration_spoofed_datagrams(void **state) {
  qt_world w;
  qt_app cli;
  uvq_endpoint_stats es;
  uvq_addr spoof;
  ngtcp2_cid scid[32];
  uint8_t pkt[64];
  size_t n;
  (void)state;

  sides_init(&cli);
  qt_world_init(&w, 75);
  w.delay = 5 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, qt_app_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);
  qt_addr_v4(&spoof, 62000);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_got_fin, &cli, 10 * UVQ_SECONDS));
  n = server_scids(g_srv.conn, scid);
  assert_true(n > 0);
  for (int k = 0; k < 2; k++) {
    pkt[0] = 0x41;
    memcpy(pkt + 1, scid[0].data, scid[0].datalen);
    for (size_t i = 1 + scid[0].datalen; i < sizeof(pkt); i++) {
      pkt[i] = (uint8_t)(i * 37 + (size_t)k);
    }
    qt_inject(&w, s, &spoof, pkt, 1 + scid[0].datalen + 40);
    qt_run(&w, NULL, NULL, 12 * UVQ_SECONDS);
  }
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.paths_stalled + es.paths_stalled_dropped, 0);
  assert_int_equal(g_srv.closed, 0);
  assert_int_equal(cli.closed, 0);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(g_srv.closed, 1);
  assert_int_equal(g_srv.ci.error, 0);
  qt_app_free(&cli);
  qt_app_free(&g_srv);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migration_client_active),
      cmocka_unit_test(test_migration_client_nat_style),
      cmocka_unit_test(test_migration_nat_rebinding),
      cmocka_unit_test(test_migration_rebind_blackout_closes),
      cmocka_unit_test(test_migration_rebind_short_blackout),
      cmocka_unit_test(test_migration_rebind_blackout_silent),
      cmocka_unit_test(test_migration_spoofed_datagrams),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
