/*
 * Stateless resets (RFC 9000 §10.3) in one process: a server restarted
 * with the same static secret resets a client's connection and the client
 * recognises it; tiny packets get no reset; the rate limit holds; two
 * endpoints resetting each other's resets stop (every reset is smaller
 * than its trigger).
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

/* Sides are qt_apps (qtest_app.h); a server's is per node. */
static qt_app g_srv_side[QT_MAX_NODES];

/* The token of |cid| under static secret |secret|, as reset.c documents
 * it: HMAC-SHA256(HKDF-Expand-SHA256(secret, "uvquic stateless reset"),
 * cid), first 16 bytes; computed here with GnuTLS's one-shot calls. */
static void expected_token(const uint8_t *secret, const ngtcp2_cid *cid,
                           uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN]) {
  static const char info[] = "uvquic stateless reset";
  const gnutls_datum_t prk = {(unsigned char *)(uintptr_t)secret,
                              UVQ_STATIC_SECRETLEN};
  const gnutls_datum_t infod = {(unsigned char *)(uintptr_t)info,
                                sizeof(info) - 1};
  uint8_t key[32], full[32];

  assert_int_equal(
      gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prk, &infod, key, sizeof(key)), 0);
  assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, sizeof(key),
                                    cid->data, cid->datalen, full),
                   0);
  memcpy(token, full, NGTCP2_STATELESS_RESET_TOKENLEN);
}

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  qt_node *n = ud;
  memset(&g_srv_side[n->idx], 0, sizeof(g_srv_side[n->idx]));
  n->user_data = &g_srv_side[n->idx];
  return qt_app_accept(ep, conn, info, pcb, pud, ud);
}

/* After the "crash": what the client sends to the old server reaches the
 * new process on the same address; the old one is silent. */
typedef struct crash {
  int client, old, fresh;
  int on;
  size_t resets_to_client; /* short packets the new server sent back */
} crash;

static int crash_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  crash *c = ud;
  (void)w;
  if (!c->on) {
    return 0;
  }
  if (from == c->old) {
    return 1;
  }
  if (from == c->client && p->dst == c->old) {
    p->dst = c->fresh;
  }
  if (from == c->fresh && p->dst == c->client) {
    c->resets_to_client++;
  }
  return 0;
}

static uvq_settings secret_settings(uint8_t fill) {
  uvq_settings st;
  uvq_settings_default(&st);
  memset(st.static_secret, fill, sizeof(st.static_secret));
  st.static_secret_set = 1;
  return st;
}

static void test_reset_after_restart(void **state) {
  qt_world w;
  qt_app cli = {0};
  qt_app *pair[2];
  crash cr;
  uvq_endpoint_stats st;
  uvq_settings ss = secret_settings(0x42);
  int64_t sid;
  (void)state;

  memset(g_srv_side, 0, sizeof(g_srv_side));
  qt_world_init(&w, 61);
  int s = qt_add_server(&w, &ss, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  pair[0] = &cli;
  pair[1] = &g_srv_side[s];
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);

  /* The server process dies; a new one with the same secret (the key
   * file) takes its address. It knows nothing of the connection. */
  int fresh = qt_add_server(&w, &ss, on_accept, NULL);
  memset(&cr, 0, sizeof(cr));
  cr.client = c;
  cr.old = s;
  cr.fresh = fresh;
  cr.on = 1;
  w.filter = crash_fn;
  w.filter_ud = &cr;

  /* The client's next packet draws a reset, which ends the connection. */
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, NULL), 0);
  assert_int_equal(
      uvq_stream_write(cli.conn, sid, (const uint8_t *)"hello?", 6, 1), 6);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 2 * UVQ_SECONDS));
  assert_int_equal(cli.ci.error, UVQ_ERR_STATELESS_RESET);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(cli.ci.type, UVQ_CLOSE_TYPE_NONE);
  assert_int_equal(cli.ci.handshake_completed, 1);

  uvq_endpoint_get_stats(w.nodes[fresh].ep, &st);
  assert_true(st.stateless_resets_sent >= 1);
  assert_true(st.dropped[UVQ_DROP_UNKNOWN_CID] >= 1);
  assert_int_equal(st.connections_total, 0);
  assert_true(cr.resets_to_client >= 1);
  uvq_endpoint_get_stats(w.nodes[c].ep, &st);
  assert_true(st.stateless_resets_received >= 1);

  /* The client is gone after its draining period; the table with it. */
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  assert_int_equal(uvq_cid_map_size(&w.nodes[c].ep->reset_tokens), 0);
  qt_world_free(&w);
}

/* A server with another secret sends a reset too, but the client cannot
 * tell it from noise: the connection is not ended by it. */
static void test_reset_wrong_secret_ignored(void **state) {
  qt_world w;
  qt_app cli = {0};
  qt_app *pair[2];
  crash cr;
  uvq_endpoint_stats st;
  uvq_settings ss = secret_settings(0x42), other = secret_settings(0x43);
  int64_t sid;
  (void)state;

  memset(g_srv_side, 0, sizeof(g_srv_side));
  qt_world_init(&w, 62);
  int s = qt_add_server(&w, &ss, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  pair[0] = &cli;
  pair[1] = &g_srv_side[s];
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  int fresh = qt_add_server(&w, &other, on_accept, NULL);
  memset(&cr, 0, sizeof(cr));
  cr.client = c;
  cr.old = s;
  cr.fresh = fresh;
  cr.on = 1;
  w.filter = crash_fn;
  w.filter_ud = &cr;
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(cli.conn, sid, (const uint8_t *)"x", 1, 1),
                   1);
  qt_run(&w, qt_app_is_closed, &cli, 1 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 0);
  uvq_endpoint_get_stats(w.nodes[fresh].ep, &st);
  assert_true(st.stateless_resets_sent >= 1);
  uvq_endpoint_get_stats(w.nodes[c].ep, &st);
  assert_int_equal(st.stateless_resets_received, 0);
  assert_true(st.dropped[UVQ_DROP_CLIENT_UNKNOWN] >= 1);
  /* It ends later by idle timeout, not by the bogus resets. */
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 60 * UVQ_SECONDS));
  assert_int_equal(cli.ci.error, UVQ_ERR_IDLE_TIMEOUT);
  qt_world_free(&w);
}

/* ---- packets injected by hand ----------------------------------------- */

typedef struct sink {
  int node;
  size_t n;
  size_t len[64];
  uint8_t data[64][64];
} sink;

static int sink_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  sink *k = ud;
  (void)w;
  if (from == k->node && k->n < 64) {
    k->len[k->n] = p->len;
    memcpy(k->data[k->n], p->data, p->len < 64 ? p->len : 64);
    k->n++;
  }
  return 1; /* nothing reaches anyone: we look only */
}

static void short_pkt(uint8_t *buf, size_t len, uint8_t seed) {
  for (size_t i = 0; i < len; i++) {
    buf[i] = (uint8_t)(seed * 31 + i * 7);
  }
  buf[0] = 0x40 | (buf[0] & 0x3f); /* short header, fixed bit */
}

static void test_reset_sizes(void **state) {
  qt_world w;
  sink k;
  uvq_addr peer;
  uvq_endpoint_stats st;
  uvq_settings ss = secret_settings(7);
  uint8_t pkt[1500];
  uint8_t token[16];
  ngtcp2_cid dcid;
  const size_t minlen = 1 + ss.cid_len + 4 + 16; /* 37 with 16-byte CIDs */
  (void)state;

  qt_world_init(&w, 63);
  int s = qt_add_server(&w, &ss, on_accept, NULL);
  memset(&k, 0, sizeof(k));
  k.node = s;
  w.filter = sink_fn;
  w.filter_ud = &k;
  qt_addr_v4(&peer, 40000);
  assert_int_equal(qt_add_alias(&w, s, &peer), 0); /* so the wire takes it */

  /* Too small to be a packet with our CIDs: no reset, only a drop. */
  short_pkt(pkt, minlen - 1, 1);
  qt_inject(&w, s, &peer, pkt, minlen - 1);
  short_pkt(pkt, 21, 2);
  qt_inject(&w, s, &peer, pkt, 21);
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  assert_int_equal(k.n, 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 0);
  assert_int_equal(st.dropped[UVQ_DROP_UNKNOWN_CID], 2);

  /* The smallest answered packet gets a reset one byte shorter; a large
   * one gets 43 bytes; both end with the token of the packet's DCID
   * under our secret and look like short-header packets. */
  short_pkt(pkt, minlen, 3);
  qt_inject(&w, s, &peer, pkt, minlen);
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  assert_int_equal(k.n, 1);
  assert_int_equal(k.len[0], minlen - 1);
  ngtcp2_cid_init(&dcid, pkt + 1, ss.cid_len);
  expected_token(ss.static_secret, &dcid, token);
  assert_memory_equal(k.data[0] + k.len[0] - 16, token, 16);
  assert_int_equal(k.data[0][0] & 0xc0, 0x40);

  short_pkt(pkt, 1200, 4);
  qt_inject(&w, s, &peer, pkt, 1200);
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  assert_int_equal(k.n, 2);
  assert_int_equal(k.len[1], 43);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 2);

  /* Client endpoints never send resets. */
  int c = qt_add_client(&w, NULL, NULL);
  k.node = c;
  qt_inject(&w, c, &peer, pkt, 1200);
  uvq_endpoint_flush(w.nodes[c].ep, w.now);
  assert_int_equal(k.n, 2);
  uvq_endpoint_get_stats(w.nodes[c].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 0);
  assert_int_equal(st.dropped[UVQ_DROP_CLIENT_UNKNOWN], 1);
  qt_world_free(&w);
}

static void test_reset_rate_limited(void **state) {
  qt_world w;
  sink k;
  uvq_addr peer;
  uvq_endpoint_stats st;
  uvq_settings ss = secret_settings(9);
  uint8_t pkt[200];
  (void)state;

  ss.stateless_reset_rate = 2; /* one per 500 ms */
  ss.stateless_reset_burst = 3;
  qt_world_init(&w, 64);
  int s = qt_add_server(&w, &ss, on_accept, NULL);
  memset(&k, 0, sizeof(k));
  k.node = s;
  w.filter = sink_fn;
  w.filter_ud = &k;
  qt_addr_v4(&peer, 40001);
  assert_int_equal(qt_add_alias(&w, s, &peer), 0);

  for (int i = 0; i < 10; i++) {
    short_pkt(pkt, sizeof(pkt), (uint8_t)(10 + i));
    qt_inject(&w, s, &peer, pkt, sizeof(pkt));
  }
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 3);
  assert_int_equal(st.stateless_resets_suppressed, 7);
  assert_int_equal(st.dropped[UVQ_DROP_UNKNOWN_CID], 10);
  assert_int_equal(k.n, 3);

  /* 1.2 s later two tokens were earned (not three, not the burst). */
  w.now += 1200 * UVQ_MILLISECONDS;
  for (int i = 0; i < 5; i++) {
    short_pkt(pkt, sizeof(pkt), (uint8_t)(30 + i));
    qt_inject(&w, s, &peer, pkt, sizeof(pkt));
  }
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 5);
  assert_int_equal(st.stateless_resets_suppressed, 10);
  /* The 0.2 s left over counts: 0.3 s more earn the next one. */
  w.now += 300 * UVQ_MILLISECONDS;
  qt_inject(&w, s, &peer, pkt, sizeof(pkt));
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 6);

  /* Rate 0: never. */
  qt_world_free(&w);
  ss.stateless_reset_rate = 0;
  qt_world_init(&w, 65);
  s = qt_add_server(&w, &ss, on_accept, NULL);
  qt_inject(&w, s, &peer, pkt, sizeof(pkt));
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.stateless_resets_sent, 0);
  assert_int_equal(st.stateless_resets_suppressed, 1);
  qt_world_free(&w);
}

/* Two servers that know nothing of each other, each resetting what the
 * other sends: every reset is shorter than its trigger, so the exchange
 * dies out below the minimum size. */
static void test_reset_no_loop(void **state) {
  qt_world w;
  uvq_settings sa = secret_settings(1), sb = secret_settings(2);
  uvq_endpoint_stats st;
  uint8_t pkt[1200];
  uint64_t total;
  (void)state;

  sa.stateless_reset_burst = sb.stateless_reset_burst = 1000;
  qt_world_init(&w, 66);
  int a = qt_add_server(&w, &sa, on_accept, NULL);
  int b = qt_add_server(&w, &sb, on_accept, NULL);
  short_pkt(pkt, sizeof(pkt), 99);
  qt_inject(&w, a, &w.nodes[b].addr, pkt, sizeof(pkt));
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);

  uvq_endpoint_get_stats(w.nodes[a].ep, &st);
  total = st.stateless_resets_sent;
  uvq_endpoint_get_stats(w.nodes[b].ep, &st);
  total += st.stateless_resets_sent;
  /* 43, 42, ..., 36 bytes: 8 resets, then 36 < 37 is not answered. */
  assert_int_equal(total, 43 - 36 + 1);
  assert_null(w.queue);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reset_after_restart),
      cmocka_unit_test(test_reset_wrong_secret_ignored),
      cmocka_unit_test(test_reset_sizes),
      cmocka_unit_test(test_reset_rate_limited),
      cmocka_unit_test(test_reset_no_loop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
