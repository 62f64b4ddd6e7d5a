/*
 * QUIC v2 (RFC 9369) and version negotiation (RFC 9368), in one process:
 * a v2 handshake and transfer, a v2 Retry, the compatible upgrade v1 → v2
 * and its absence when the client does not offer v2, a v2-only server's
 * Version Negotiation and the client starting over in v2, a forged
 * Version Negotiation (downgrade) refused, and tokens and tickets bound to
 * the version they were issued on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/router.h"
#include "qtest.h"
#include "qtest_app.h"

/* ---- what the wire carried -------------------------------------------- */

typedef struct wire_log {
  int client; /* node index of the client */
  /* Long-header packets (first of each datagram) by direction and
   * version: [0] client → server, [1] server → client. */
  uint64_t v1[2], v2[2], other[2];
  uint64_t vn[2];        /* Version Negotiation packets */
  uint64_t v2_retry;     /* server → client, v2, type bits 0b00 */
  uint32_t first_client; /* version of the client's first datagram */
  uint32_t vn_list[8];   /* the last VN's versions */
  size_t vn_len;
  /* Drop the client's datagrams of this version (0: none), keeping the
   * CIDs of the first for a forged VN. */
  uint32_t drop_client_version;
  uint8_t dcid[20], scid[20];
  size_t dcidlen, scidlen;
  int dropped;
} wire_log;

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static int log_filter(qt_world *w, int from, qt_pkt *p, void *ud) {
  wire_log *l = ud;
  int dir = from == l->client ? 0 : 1;
  uint32_t v;
  (void)w;

  if (p->len < 7 || !(p->data[0] & 0x80)) {
    return 0;
  }
  v = be32(p->data + 1);
  if (dir == 0 && l->first_client == 0) {
    l->first_client = v;
  }
  if (v == 0) {
    /* Version Negotiation: flags, version, DCID, SCID, versions. */
    size_t off = 5 + 1 + p->data[5];
    off += 1 + p->data[off];
    l->vn[dir]++;
    l->vn_len = 0;
    for (; off + 4 <= p->len && l->vn_len < 8; off += 4) {
      l->vn_list[l->vn_len++] = be32(p->data + off);
    }
  } else if (v == UVQ_QUIC_V1) {
    l->v1[dir]++;
  } else if (v == UVQ_QUIC_V2) {
    l->v2[dir]++;
    if (dir == 1 && ((p->data[0] >> 4) & 0x3) == 0) {
      l->v2_retry++;
    }
  } else {
    l->other[dir]++;
  }
  if (dir == 0 && v == l->drop_client_version) {
    if (!l->dropped) {
      l->dcidlen = p->data[5];
      memcpy(l->dcid, p->data + 6, l->dcidlen);
      l->scidlen = p->data[6 + l->dcidlen];
      memcpy(l->scid, p->data + 7 + l->dcidlen, l->scidlen);
    }
    l->dropped++;
    return 1;
  }
  return 0;
}

static uvq_settings client_settings(uint32_t chosen, const uint32_t *versions,
                                    size_t n) {
  uvq_settings st;
  uvq_settings_default(&st);
  memcpy(st.quic_versions, versions, n * sizeof(versions[0]));
  st.quic_versionslen = n;
  st.client_chosen_version = chosen;
  return st;
}

static uint32_t conn_version(uvq_conn *conn) {
  uvq_conn_info info;
  uvq_conn_get_info(conn, &info);
  return info.version;
}

static int transfer_done(void *ud) {
  qt_app **s = ud;
  return s[0]->fin && s[1]->fin;
}

static void close_all(qt_world *w, qt_app *cli) {
  if (cli->conn) {
    assert_int_equal(uvq_conn_close(cli->conn, 0, NULL), 0);
  }
  qt_run(w, NULL, NULL, 10 * UVQ_SECONDS);
}

/* A connection between a client and a server of these settings that
 * carries 200 KB each way; returns with both established and done. */
static void run_pair(qt_world *w, wire_log *l, const uvq_settings *ss,
                     const uvq_settings *cs, qt_app *cli, qt_app *srv, int *ps,
                     int *pc) {
  qt_app *pair[2] = {cli, srv};
  int s = qt_add_server(w, ss, qt_app_accept, srv);
  int c = qt_add_client(w, cs, NULL);
  assert_true(s >= 0 && c >= 0);
  l->client = c;
  w->filter = log_filter;
  w->filter_ud = l;
  cli->send_on_established = 1;
  cli->to_send = 200000;
  cli->seed = 7;
  srv->reply = 1;
  srv->to_send = 200000;
  srv->seed = 8;
  assert_int_equal(qt_connect(w, c, s, &qt_app_callbacks, cli, &cli->conn), 0);
  assert_true(qt_run(w, transfer_done, pair, 20 * UVQ_SECONDS));
  qt_app_assert_received(srv, 7, 200000);
  qt_app_assert_received(cli, 8, 200000);
  *ps = s;
  *pc = c;
}

/* ---- v2 end to end ----------------------------------------------------- */

static void test_version_v2_handshake_transfer(void **state) {
  /* Offering v1 too would let the default server, which prefers v1,
   * negotiate the connection down to it (compatible negotiation). */
  static const uint32_t v2[] = {UVQ_QUIC_V2};
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0};
  uvq_settings cs = client_settings(UVQ_QUIC_V2, v2, 1);
  uvq_endpoint_stats st;
  int s, c;
  (void)state;

  qt_world_init(&w, 1);
  run_pair(&w, &l, NULL, &cs, &cli, &srv, &s, &c);
  assert_int_equal(conn_version(cli.conn), UVQ_QUIC_V2);
  assert_int_equal(conn_version(srv.conn), UVQ_QUIC_V2);
  /* Every long header either way was v2. */
  assert_int_equal(l.first_client, UVQ_QUIC_V2);
  assert_int_equal(l.v1[0] + l.v1[1] + l.other[0] + l.other[1], 0);
  assert_true(l.v2[0] > 0 && l.v2[1] > 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.handshakes_by_version[1], 1);
  assert_int_equal(st.handshakes_by_version[0], 0);
  assert_int_equal(st.compatible_upgrades, 0);
  assert_int_equal(st.version_negotiations_sent, 0);
  close_all(&w, &cli);
  qt_world_free(&w);
}

static void test_version_v2_retry(void **state) {
  static const uint32_t v2[] = {UVQ_QUIC_V2};
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0};
  uvq_settings ss, cs = client_settings(UVQ_QUIC_V2, v2, 1);
  uvq_endpoint_stats st;
  uvq_conn_info info;
  int s, c;
  (void)state;

  qt_world_init(&w, 2);
  uvq_settings_default(&ss);
  ss.retry = UVQ_RETRY_ALWAYS;
  run_pair(&w, &l, &ss, &cs, &cli, &srv, &s, &c);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.retries_sent, 1);
  /* A v2 Retry (type bits 0b00, RFC 9369 §3.2) that the client verified
   * with v2's integrity key and nonce: it followed it. */
  assert_int_equal(l.v2_retry, 1);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.retry, 1);
  assert_int_equal(info.version, UVQ_QUIC_V2);
  assert_int_equal(srv.accept_validated, 1);
  assert_int_equal(st.tokens_rejected[UVQ_TOKEN_REJECT_VERSION], 0);
  close_all(&w, &cli);
  qt_world_free(&w);
}

/* ---- compatible negotiation -------------------------------------------- */

static void test_version_compatible_upgrade(void **state) {
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0};
  uvq_settings ss;
  uvq_endpoint_stats sst, cst;
  char prom[16384];
  int s, c;
  (void)state;

  qt_world_init(&w, 3);
  uvq_settings_default(&ss);
  ss.quic_versions[0] = UVQ_QUIC_V2;
  ss.quic_versions[1] = UVQ_QUIC_V1;
  /* The default client: starts in v1, offers v1 and v2. */
  run_pair(&w, &l, &ss, NULL, &cli, &srv, &s, &c);
  assert_int_equal(l.first_client, UVQ_QUIC_V1);
  assert_int_equal(conn_version(cli.conn), UVQ_QUIC_V2);
  assert_int_equal(conn_version(srv.conn), UVQ_QUIC_V2);
  /* No round trip: no Version Negotiation; the server's datagrams, its
   * first Initial included, are v2 (RFC 9368 §2.3); the client's after
   * its first Initial too. */
  print_message("# upgrade: client v1 %llu v2 %llu, server v1 %llu v2 %llu\n",
                (unsigned long long)l.v1[0], (unsigned long long)l.v2[0],
                (unsigned long long)l.v1[1], (unsigned long long)l.v2[1]);
  assert_int_equal(l.vn[0] + l.vn[1], 0);
  assert_true(l.v1[0] > 0 && l.v2[0] > 0 && l.v2[1] > 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &sst);
  uvq_endpoint_get_stats(w.nodes[c].ep, &cst);
  assert_int_equal(sst.compatible_upgrades, 1);
  assert_int_equal(cst.compatible_upgrades, 1);
  assert_int_equal(sst.handshakes_by_version[1], 1);
  assert_true(uvq_endpoint_write_prometheus(w.nodes[s].ep, prom, sizeof(prom),
                                            NULL) > 0);
  assert_non_null(strstr(prom, "uvquic_compatible_upgrades_total 1\n"));
  assert_non_null(strstr(
      prom, "uvquic_handshakes_by_version_total{version=\"0x6b3343cf\"} 1\n"));
  assert_non_null(strstr(
      prom, "uvquic_handshakes_by_version_total{version=\"0x00000001\"} 0\n"));
  close_all(&w, &cli);
  qt_world_free(&w);
}

static void test_version_no_upgrade_without_v2(void **state) {
  static const uint32_t v1[] = {UVQ_QUIC_V1};
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0};
  uvq_settings ss, cs = client_settings(UVQ_QUIC_V1, v1, 1);
  uvq_endpoint_stats st;
  int s, c;
  (void)state;

  qt_world_init(&w, 4);
  uvq_settings_default(&ss);
  ss.quic_versions[0] = UVQ_QUIC_V2;
  ss.quic_versions[1] = UVQ_QUIC_V1;
  run_pair(&w, &l, &ss, &cs, &cli, &srv, &s, &c);
  assert_int_equal(conn_version(cli.conn), UVQ_QUIC_V1);
  assert_int_equal(conn_version(srv.conn), UVQ_QUIC_V1);
  assert_int_equal(l.v2[0] + l.v2[1], 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.compatible_upgrades, 0);
  assert_int_equal(st.handshakes_by_version[0], 1);
  close_all(&w, &cli);
  qt_world_free(&w);
}

/* ---- incompatible negotiation ------------------------------------------ */

static void test_version_v2_only_server_vn(void **state) {
  static const uint32_t v1[] = {UVQ_QUIC_V1};
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0}, cli2 = {0};
  qt_app *pair[2] = {&cli2, &srv};
  uvq_settings ss, cs1 = client_settings(UVQ_QUIC_V1, v1, 1);
  uvq_endpoint_stats sst, cst;
  (void)state;

  qt_world_init(&w, 5);
  uvq_settings_default(&ss);
  ss.quic_versions[0] = UVQ_QUIC_V2;
  ss.quic_versionslen = 1;
  int s = qt_add_server(&w, &ss, qt_app_accept, &srv);
  int c1 = qt_add_client(&w, &cs1, NULL);
  int c2 = qt_add_client(&w, NULL, NULL);
  w.filter = log_filter;
  w.filter_ud = &l;

  /* A v1-only client: Version Negotiation listing v2 (and a greased
   * version), nothing in common, UVQ_ERR_VERSION_NEGOTIATION. */
  l.client = c1;
  assert_int_equal(qt_connect(&w, c1, s, &qt_app_callbacks, &cli, &cli.conn),
                   0);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(cli.established, 0);
  assert_int_equal(cli.ci.error, UVQ_ERR_VERSION_NEGOTIATION);
  assert_int_equal(l.vn[1], 1);
  assert_int_equal(l.vn_len, 2);
  assert_int_equal(l.vn_list[0], UVQ_QUIC_V2);
  assert_int_equal(l.vn_list[1] & 0x0f0f0f0fu, 0x0a0a0a0au);
  uvq_endpoint_get_stats(w.nodes[c1].ep, &cst);
  assert_int_equal(cst.version_negotiations_received, 1);
  assert_int_equal(cst.handshake_failures[UVQ_HS_FAIL_VERSION_NEGOTIATION], 1);

  /* The default client (v1 first, v2 offered) starts over in v2. */
  memset(&l, 0, sizeof(l));
  l.client = c2;
  cli2.send_on_established = 1;
  cli2.to_send = 50000;
  cli2.seed = 3;
  srv.reply = 1;
  srv.to_send = 50000;
  srv.seed = 4;
  assert_int_equal(qt_connect(&w, c2, s, &qt_app_callbacks, &cli2, &cli2.conn),
                   0);
  assert_true(qt_run(&w, transfer_done, pair, 5 * UVQ_SECONDS));
  qt_app_assert_received(&cli2, 4, 50000);
  assert_int_equal(l.first_client, UVQ_QUIC_V1);
  assert_int_equal(l.vn[1], 1);
  assert_int_equal(conn_version(cli2.conn), UVQ_QUIC_V2);
  assert_int_equal(conn_version(srv.conn), UVQ_QUIC_V2);
  uvq_endpoint_get_stats(w.nodes[s].ep, &sst);
  uvq_endpoint_get_stats(w.nodes[c2].ep, &cst);
  assert_int_equal(sst.version_negotiations_sent, 2);
  assert_int_equal(cst.version_negotiations_received, 1);
  /* Not an upgrade: the server's connection started in v2. */
  assert_int_equal(sst.compatible_upgrades, 0);
  close_all(&w, &cli2);
  qt_world_free(&w);
}

static void test_version_forged_vn_refused(void **state) {
  static const uint32_t v21[] = {UVQ_QUIC_V2, UVQ_QUIC_V1};
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0};
  uvq_settings cs = client_settings(UVQ_QUIC_V2, v21, 2);
  uint8_t vn[256];
  uint32_t sv[1] = {UVQ_QUIC_V1};
  uvq_endpoint_stats cst;
  ngtcp2_ssize n;
  (void)state;

  qt_world_init(&w, 6);
  /* The server speaks both; the client prefers v2 and starts in it. */
  int s = qt_add_server(&w, NULL, qt_app_accept, &srv);
  int c = qt_add_client(&w, &cs, NULL);
  l.client = c;
  l.drop_client_version = UVQ_QUIC_V2;
  w.filter = log_filter;
  w.filter_ud = &l;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_MILLISECONDS);
  assert_true(l.dropped >= 1);

  /* An attacker on the path answers the v2 Initial with a Version
   * Negotiation listing only v1. */
  n = ngtcp2_pkt_write_version_negotiation(vn, sizeof(vn), 0x40, l.scid,
                                           l.scidlen, l.dcid, l.dcidlen, sv, 1);
  assert_true(n > 0);
  l.drop_client_version = 0;
  qt_inject(&w, c, &w.nodes[s].addr, vn, (size_t)n);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 5 * UVQ_SECONDS));
  /* The client started over in v1, then saw in the server's
   * version_information that it speaks v2, which the client prefers: a
   * downgrade, refused with VERSION_NEGOTIATION_ERROR (0x11). */
  assert_true(l.v1[0] > 0);
  assert_int_equal(cli.established, 0);
  assert_int_equal(cli.ci.error, UVQ_ERR_VERSION_NEGOTIATION);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(cli.ci.code, NGTCP2_VERSION_NEGOTIATION_ERROR);
  uvq_endpoint_get_stats(w.nodes[c].ep, &cst);
  assert_int_equal(cst.version_negotiations_received, 1);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(srv.established, 0);
  qt_world_free(&w);
}

/* A Version Negotiation may list any number of versions (RFC 9000 §17.2.1):
 * ours after twenty greased ones is still found, and the client starts
 * over in it. */
static void test_version_vn_long_list(void **state) {
  qt_world w;
  wire_log l = {0};
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_settings ss;
  uint8_t vn[256];
  uint32_t sv[21];
  ngtcp2_ssize n;
  (void)state;

  qt_world_init(&w, 7);
  uvq_settings_default(&ss);
  ss.quic_versions[0] = UVQ_QUIC_V2;
  ss.quic_versionslen = 1;
  int s = qt_add_server(&w, &ss, qt_app_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  l.client = c;
  l.drop_client_version = UVQ_QUIC_V1;
  w.filter = log_filter;
  w.filter_ud = &l;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_MILLISECONDS);
  assert_true(l.dropped >= 1);

  for (size_t i = 0; i < 20; i++) {
    sv[i] = 0x0a0a0a0au | (uint32_t)i << 28 | (uint32_t)i << 12;
  }
  sv[20] = UVQ_QUIC_V2;
  n = ngtcp2_pkt_write_version_negotiation(
      vn, sizeof(vn), 0x40, l.scid, l.scidlen, l.dcid, l.dcidlen, sv, 21);
  assert_true(n > 0);
  l.drop_client_version = 0;
  qt_inject(&w, c, &w.nodes[s].addr, vn, (size_t)n);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(conn_version(cli.conn), UVQ_QUIC_V2);
  close_all(&w, &cli);
  qt_world_free(&w);
}

/* ---- tokens and tickets are per version -------------------------------- */

static uint8_t g_ticket[4096];
static size_t g_ticketlen;

static int on_ticket(uvq_conn *conn, const uint8_t *blob, size_t len,
                     void *ud) {
  (void)conn;
  (void)ud;
  assert_true(len <= sizeof(g_ticket));
  memcpy(g_ticket, blob, len);
  g_ticketlen = len;
  return 0;
}

static int connect_with(qt_world *w, int c, int s, const uvq_app_callbacks *cb,
                        qt_app *cli, const uint8_t *token, size_t tokenlen,
                        const uint8_t *ticket, size_t ticketlen) {
  uvq_connect_params p;
  uvq_connect_params_default(&p);
  p.callbacks = cb;
  p.user_data = cli;
  p.token = token;
  p.tokenlen = tokenlen;
  p.resumption = ticket;
  p.resumptionlen = ticketlen;
  return qt_connect_params(w, c, s, &p, &cli->conn);
}

static int resumed(uvq_conn *conn) {
  uvq_conn_info info;
  uvq_conn_get_info(conn, &info);
  return info.resumed;
}

static void test_version_token_ticket_per_version(void **state) {
  static const uint32_t v2[] = {UVQ_QUIC_V2};
  qt_world w;
  qt_app cli = {0}, srv = {0}, a = {0}, as = {0}, b = {0}, bs = {0};
  qt_app c3 = {0}, s3 = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_app_callbacks cb = qt_app_callbacks;
  uvq_settings ss, cs2 = client_settings(UVQ_QUIC_V2, v2, 1);
  uvq_endpoint_stats st, cst;
  uint8_t token[256], ticket[4096], patched[4096];
  size_t tokenlen, ticketlen;
  (void)state;

  cb.on_session_ticket = on_ticket;
  g_ticketlen = 0;
  qt_world_init(&w, 7);
  uvq_settings_default(&ss);
  ss.retry = UVQ_RETRY_ALWAYS;
  int s = qt_add_server(&w, &ss, qt_app_accept, &srv);
  int c1 = qt_add_client(&w, NULL, NULL);
  int c2 = qt_add_client(&w, &cs2, NULL);

  /* A v1 connection leaves a NEW_TOKEN token and a ticket. */
  assert_int_equal(connect_with(&w, c1, s, &cb, &cli, NULL, 0, NULL, 0), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_int_equal(conn_version(cli.conn), UVQ_QUIC_V1);
  assert_true(cli.tokenlen > 0 && g_ticketlen > 0);
  tokenlen = cli.tokenlen;
  memcpy(token, cli.token, tokenlen);
  ticketlen = g_ticketlen;
  memcpy(ticket, g_ticket, ticketlen);

  /* Both honoured on v1: no Retry, the session resumed. */
  w.nodes[s].user_data = &as;
  pair[0] = &a;
  pair[1] = &as;
  assert_int_equal(
      connect_with(&w, c1, s, &cb, &a, token, tokenlen, ticket, ticketlen), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.retries_sent, 1);
  assert_int_equal(as.accept_validated, 1);
  assert_int_equal(resumed(a.conn), 1);
  assert_int_equal(resumed(as.conn), 1);

  /* A v2-only client with them: the server treats the token as absent
   * (Retry, counted as a version mismatch), and the client leaves the v1
   * ticket out (counted): a full handshake in v2. */
  w.nodes[s].user_data = &bs;
  pair[0] = &b;
  pair[1] = &bs;
  assert_int_equal(
      connect_with(&w, c2, s, &cb, &b, token, tokenlen, ticket, ticketlen), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  uvq_endpoint_get_stats(w.nodes[c2].ep, &cst);
  assert_int_equal(st.tokens_rejected[UVQ_TOKEN_REJECT_VERSION], 1);
  assert_int_equal(st.retries_sent, 2);
  assert_int_equal(cst.resumption_version_mismatch, 1);
  assert_int_equal(conn_version(b.conn), UVQ_QUIC_V2);
  assert_int_equal(resumed(b.conn), 0);
  assert_int_equal(resumed(bs.conn), 0);

  /* The server checks tickets itself: the v1 ticket in a blob relabelled
   * v2 (the client believes it) reaches a v2 Initial, and the server's v2
   * ticket key does not open it — a full handshake. */
  memcpy(patched, ticket, ticketlen);
  assert_int_equal(patched[4], 3);
  patched[5] = (uint8_t)(UVQ_QUIC_V2 >> 24);
  patched[6] = (uint8_t)(UVQ_QUIC_V2 >> 16);
  patched[7] = (uint8_t)(UVQ_QUIC_V2 >> 8);
  patched[8] = (uint8_t)UVQ_QUIC_V2;
  w.nodes[s].user_data = &s3;
  pair[0] = &c3;
  pair[1] = &s3;
  assert_int_equal(
      connect_with(&w, c2, s, &cb, &c3, NULL, 0, patched, ticketlen), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[c2].ep, &cst);
  assert_int_equal(cst.resumption_version_mismatch, 1);
  assert_int_equal(conn_version(c3.conn), UVQ_QUIC_V2);
  assert_int_equal(resumed(s3.conn), 0);
  assert_int_equal(resumed(c3.conn), 0);

  uvq_conn_close(cli.conn, 0, NULL);
  uvq_conn_close(a.conn, 0, NULL);
  uvq_conn_close(b.conn, 0, NULL);
  uvq_conn_close(c3.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  qt_world_free(&w);
}

/* ---- headers and settings ---------------------------------------------- */

/* v2 renumbers the long packet types (RFC 9369 §3.2); the router reads
 * them in v1's numbering. */
static void test_version_long_types(void **state) {
  uint8_t pkt[64];
  uvq_pkt_view v;
  uvq_drop_reason why;
  static const struct {
    uint32_t version;
    uint8_t bits;
    uint8_t type;
  } cases[] = {
      {UVQ_QUIC_V1, 0, 0}, {UVQ_QUIC_V1, 1, 1}, {UVQ_QUIC_V1, 2, 2},
      {UVQ_QUIC_V1, 3, 3}, {UVQ_QUIC_V2, 1, 0}, {UVQ_QUIC_V2, 2, 1},
      {UVQ_QUIC_V2, 3, 2}, {UVQ_QUIC_V2, 0, 3},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memset(pkt, 0, sizeof(pkt));
    pkt[0] = (uint8_t)(0xc0 | cases[i].bits << 4);
    pkt[1] = (uint8_t)(cases[i].version >> 24);
    pkt[2] = (uint8_t)(cases[i].version >> 16);
    pkt[3] = (uint8_t)(cases[i].version >> 8);
    pkt[4] = (uint8_t)cases[i].version;
    pkt[5] = 8;  /* DCID */
    pkt[14] = 8; /* SCID */
    assert_int_equal(uvq_pkt_parse(&v, pkt, sizeof(pkt), 16, &why), 0);
    assert_int_equal(v.version, cases[i].version);
    assert_int_equal(v.long_type, cases[i].type);
  }
}

static void test_version_settings_checked(void **state) {
  qt_world w;
  uvq_settings st;
  (void)state;

  qt_world_init(&w, 8);
  uvq_settings_default(&st);
  assert_int_equal(st.quic_versionslen, 2);
  assert_int_equal(st.quic_versions[0], UVQ_QUIC_V1);
  assert_int_equal(st.quic_versions[1], UVQ_QUIC_V2);
  assert_int_equal(st.client_chosen_version, UVQ_QUIC_V1);

  st.quic_versions[1] = UVQ_QUIC_V1; /* twice */
  assert_true(qt_add_server(&w, &st, qt_app_accept, NULL) < 0);
  assert_int_equal(w.last_add_error, UVQ_ERR_INVALID_ARGUMENT);
  st.quic_versions[1] = 0x1a2a3a4au; /* not one ngtcp2 speaks */
  assert_true(qt_add_server(&w, &st, qt_app_accept, NULL) < 0);
  st.quic_versionslen = 0;
  assert_true(qt_add_server(&w, &st, qt_app_accept, NULL) < 0);
  uvq_settings_default(&st);
  st.quic_versionslen = 1;
  st.client_chosen_version = UVQ_QUIC_V2; /* not in the list */
  assert_true(qt_add_client(&w, &st, NULL) < 0);
  assert_int_equal(w.last_add_error, UVQ_ERR_INVALID_ARGUMENT);
  /* A server ignores client_chosen_version. */
  assert_true(qt_add_server(&w, &st, qt_app_accept, NULL) >= 0);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version_v2_handshake_transfer),
      cmocka_unit_test(test_version_v2_retry),
      cmocka_unit_test(test_version_compatible_upgrade),
      cmocka_unit_test(test_version_no_upgrade_without_v2),
      cmocka_unit_test(test_version_v2_only_server_vn),
      cmocka_unit_test(test_version_forged_vn_refused),
      cmocka_unit_test(test_version_vn_long_list),
      cmocka_unit_test(test_version_token_ticket_per_version),
      cmocka_unit_test(test_version_long_types),
      cmocka_unit_test(test_version_settings_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
