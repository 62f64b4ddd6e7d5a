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

#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "qtest.h"

#define DOWNLOAD (1024 * 1024)

typedef struct side {
  uvq_conn *conn;
  int established;
  int closed;
  uvq_close_info ci;
  int64_t sid;
  uint64_t to_send, sent;
  gnutls_hash_hd_t hash;
  uint8_t digest[32];
  uint64_t received;
  int fin;
} side;

static side g_srv;

static uint8_t byte_at(uint64_t off) {
  uint64_t x = (off / 8 + 1) * 0x9e3779b97f4a7c15ull;
  x ^= x >> 31;
  return (uint8_t)(x >> ((off % 8) * 8));
}

static int pump(uvq_conn *conn, side *a) {
  uint8_t buf[8192];
  while (a->sent < a->to_send) {
    size_t n = a->to_send - a->sent < sizeof(buf)
                   ? (size_t)(a->to_send - a->sent)
                   : sizeof(buf);
    ssize_t w;
    for (size_t i = 0; i < n; i++) {
      buf[i] = byte_at(a->sent + i);
    }
    w = uvq_stream_write(conn, a->sid, buf, n, a->sent + n == a->to_send);
    assert_true(w >= 0);
    a->sent += (uint64_t)w;
    if ((size_t)w < n) {
      return 0;
    }
  }
  return 0;
}

static int on_established(uvq_conn *conn, void *ud) {
  side *a = ud;
  a->established = 1;
  if (!uvq_conn_is_server(conn)) {
    assert_int_equal(uvq_conn_open_stream(conn, 1, &a->sid, NULL), 0);
    assert_int_equal(
        uvq_stream_write(conn, a->sid, (const uint8_t *)"GET", 3, 1), 3);
  }
  return 0;
}

static int on_stream_open(uvq_conn *conn, int64_t sid, void *ud) {
  (void)conn;
  ((side *)ud)->sid = sid;
  return 0;
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  side *a = ud;
  (void)sid;
  (void)sud;
  if (uvq_conn_is_server(conn)) {
    if (fin) {
      a->to_send = DOWNLOAD;
      return pump(conn, a);
    }
    return 0;
  }
  if (a->hash == NULL) {
    assert_int_equal(gnutls_hash_init(&a->hash, GNUTLS_DIG_SHA256), 0);
  }
  gnutls_hash(a->hash, data, len);
  a->received += len;
  if (fin) {
    a->fin = 1;
    gnutls_hash_deinit(a->hash, a->digest);
    a->hash = NULL;
  }
  return 0;
}

static int on_stream_writable(uvq_conn *conn, int64_t sid, void *ud,
                              void *sud) {
  (void)sid;
  (void)sud;
  return pump(conn, ud);
}

static void on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  side *a = ud;
  (void)conn;
  a->closed = 1;
  a->ci = *ci;
  a->ci.reason = NULL;
  a->conn = NULL;
}

static const uvq_app_callbacks app_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_open = on_stream_open,
    .on_stream_data = on_stream_data,
    .on_stream_writable = on_stream_writable,
    .on_closed = on_closed,
};

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  memset(&g_srv, 0, sizeof(g_srv));
  g_srv.conn = conn;
  *pcb = &app_cb;
  *pud = &g_srv;
  return 0;
}

static void expected_digest(uint8_t out[32]) {
  gnutls_hash_hd_t h;
  uint8_t buf[8192];
  assert_int_equal(gnutls_hash_init(&h, GNUTLS_DIG_SHA256), 0);
  for (uint64_t off = 0; off < DOWNLOAD; off += sizeof(buf)) {
    for (size_t i = 0; i < sizeof(buf); i++) {
      buf[i] = byte_at(off + i);
    }
    gnutls_hash(h, buf, sizeof(buf));
  }
  gnutls_hash_deinit(h, out);
}

static int quarter_done(void *ud) {
  side *a = ud;
  return a->received >= DOWNLOAD / 4;
}

static int download_done(void *ud) { return ((side *)ud)->fin; }

static int addr_eq(const uvq_addr *a, const uvq_addr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static size_t server_scids(uvq_conn *conn, ngtcp2_cid *out) {
  size_t n = ngtcp2_conn_get_num_scid(conn->q);
  assert_true(n <= 32);
  return ngtcp2_conn_get_scid(conn->q, out);
}

static int cid_in(const ngtcp2_cid *c, const ngtcp2_cid *set, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (ngtcp2_cid_eq(c, &set[i])) {
      return 1;
    }
  }
  return 0;
}

static void finish(qt_world *w, side *cli, int c, int s) {
  uint8_t want[32];
  assert_true(qt_run(w, download_done, cli, 60 * UVQ_SECONDS));
  assert_int_equal(cli->received, DOWNLOAD);
  expected_digest(want);
  assert_memory_equal(cli->digest, want, 32);
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
  side cli;
  uvq_addr alt;
  uvq_conn_info info;
  ngtcp2_cid before[32], after[32];
  size_t nb, na;
  int retired = 0;

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, nat_style ? 72 : 71);
  w.delay = 5 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, quarter_done, &cli, 10 * UVQ_SECONDS));
  assert_false(cli.fin);
  nb = server_scids(g_srv.conn, before);

  /* Errors first: same address, other family, a server connection. */
  assert_int_equal(uvq_conn_migrate(cli.conn, &w.nodes[c].addr, nat_style,
                                    w.now),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_conn_migrate(g_srv.conn, &w.nodes[s].addr, nat_style,
                                    w.now),
                   UVQ_ERR_INVALID_ARGUMENT);

  qt_addr_v4(&alt, 50100);
  assert_int_equal(qt_add_alias(&w, c, &alt), 0);
  assert_int_equal(uvq_conn_migrate(cli.conn, &alt, nat_style, w.now), 0);
  qt_run(&w, download_done, &cli, 60 * UVQ_SECONDS);
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
  side cli;
  nat n;
  uvq_conn_info info;
  (void)state;

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 73);
  w.delay = 5 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  memset(&n, 0, sizeof(n));
  n.client = c;
  n.server = s;
  n.inside = w.nodes[c].addr;
  qt_addr_v4(&n.outside, 61000);
  assert_int_equal(qt_add_alias(&w, c, &n.outside), 0);
  w.filter = nat_fn;
  w.filter_ud = &n;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, quarter_done, &cli, 10 * UVQ_SECONDS));
  uvq_conn_get_info(g_srv.conn, &info);
  assert_true(addr_eq(&info.path->remote, &n.inside));

  n.on = 1;
  assert_true(qt_run(&w, download_done, &cli, 60 * UVQ_SECONDS));
  assert_true(n.rewritten > 0);
  uvq_conn_get_info(g_srv.conn, &info);
  assert_true(addr_eq(&info.path->remote, &n.outside));
  /* The client never knew. */
  uvq_conn_get_info(cli.conn, &info);
  assert_true(addr_eq(&info.path->local, &n.inside));
  finish(&w, &cli, c, s);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_migration_client_active),
      cmocka_unit_test(test_migration_client_nat_style),
      cmocka_unit_test(test_migration_nat_rebinding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
