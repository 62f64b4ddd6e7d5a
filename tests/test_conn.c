/*
 * Protocol tests of the core, in one process: real GnuTLS, a fake clock,
 * and an in-memory wire (tests/support/qtest.c) that can drop, reorder,
 * duplicate and corrupt datagrams.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2.h>

#include "qtest.h"
#include "qtest_app.h"

/* ---- the test application (qtest_app.h), with this file's hooks -------- */

static int g_stop_reading_server; /* server stops reading the first stream */
static int g_reentry_checks = -1; /* stream-open callbacks that tried; -1 off */
static uint64_t g_close_server_after; /* server closes after this many bytes */
static int g_drop_s2c;                /* drop this many server->client dgrams */
static uint64_t g_reset_code;
static int g_resets;

static int on_stream_open(uvq_conn *conn, int64_t sid, void *ud) {
  if (g_reentry_checks >= 0) {
    uvq_endpoint *ep = uvq_conn_get_endpoint(conn);
    /* Driving the endpoint from inside a callback is refused. */
    assert_int_equal(uvq_endpoint_flush(ep, 0), UVQ_ERR_INVALID_STATE);
    assert_int_equal(uvq_endpoint_handle_expiry(ep, 0), UVQ_ERR_INVALID_STATE);
    assert_int_equal(uvq_endpoint_process_wakes(ep), UVQ_ERR_INVALID_STATE);
    /* The peer's unidirectional stream has no send side for us. */
    if (!ngtcp2_is_bidi_stream(sid)) {
      assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"x", 1, 0),
                       UVQ_ERR_STREAM_SHUT);
    }
    g_reentry_checks++;
  }
  return qt_app_on_stream_open(conn, sid, ud);
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  qt_app *a = ud;
  if (g_stop_reading_server && uvq_conn_is_server(conn)) {
    g_stop_reading_server = 0;
    assert_int_equal(uvq_stream_stop_sending(conn, sid, 0x42), 0);
    return 0;
  }
  if (g_close_server_after && uvq_conn_is_server(conn) &&
      a->received + len >= g_close_server_after) {
    g_close_server_after = 0;
    g_drop_s2c = 2; /* lose the CONNECTION_CLOSE and the next datagram */
    assert_int_equal(uvq_conn_close(conn, 0x77, "enough"), 0);
    /* The close is asynchronous: the API still answers until the flush. */
    assert_int_equal(uvq_conn_get_stage(conn), UVQ_STAGE_RUNNING);
  }
  return qt_app_on_stream_data(conn, sid, data, len, fin, ud, sud);
}

static int g_wakes;
static int g_timers;
static uvq_tstamp g_timer_at;
static int g_stop_sending;
static qt_world *g_world;

static int g_key_updates[2]; /* successful initiations: client, server */

static int on_timer(uvq_conn *conn, void *ud) {
  (void)conn;
  (void)ud;
  g_timers++;
  g_timer_at = g_world->now;
  return 0;
}

static void on_stop_sending(uvq_conn *conn, int64_t sid, uint64_t err, void *ud,
                            void *sud) {
  qt_app *a = ud;
  (void)sud;
  (void)err;
  g_stop_sending++;
  assert_int_equal(sid, a->sid);
  /* The send side is gone: further writes are refused. */
  assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"x", 1, 0),
                   UVQ_ERR_STREAM_SHUT);
  a->fin = 1; /* done from the test's point of view */
}

static int on_wake(uvq_conn *conn, void *ud) {
  (void)conn;
  (void)ud;
  g_wakes++;
  return 0;
}

static void on_stream_reset(uvq_conn *conn, int64_t sid, uint64_t err, void *ud,
                            void *sud) {
  (void)conn;
  (void)sid;
  (void)ud;
  (void)sud;
  g_resets++;
  g_reset_code = err;
}

static int g_dgrams;
static int g_dgram_echo; /* server echoes DATAGRAMs */
static int g_dgram_bad;
static int g_dgram_acked, g_dgram_lost, g_dgram_twice, g_dgram_spurious;
static uint64_t g_dgram_id_sum;
/* Per id: DGRAM_LOST and/or DGRAM_ACKED, as reported. */
enum { DGRAM_LOST = 1, DGRAM_ACKED = 2 };
static uint8_t g_dgram_seen[512];

/* The one second report allowed is acked after lost: the loss was
 * spurious (a late ACK still covered the packet). */
static void dgram_report(uint64_t id, uint8_t what) {
  g_dgram_id_sum += id;
  if (id >= sizeof(g_dgram_seen)) {
    return;
  }
  if (g_dgram_seen[id] == DGRAM_LOST && what == DGRAM_ACKED) {
    g_dgram_spurious++;
  } else if (g_dgram_seen[id]) {
    g_dgram_twice++;
  }
  g_dgram_seen[id] |= what;
}

static int on_datagram_acked(uvq_conn *conn, uint64_t id, void *ud) {
  (void)ud;
  if (!uvq_conn_is_server(conn)) {
    g_dgram_acked++;
    dgram_report(id, DGRAM_ACKED);
  }
  return 0;
}

static int on_datagram_lost(uvq_conn *conn, uint64_t id, void *ud) {
  (void)ud;
  if (!uvq_conn_is_server(conn)) {
    g_dgram_lost++;
    dgram_report(id, DGRAM_LOST);
  }
  return 0;
}

static int on_datagram(uvq_conn *conn, const uint8_t *data, size_t len,
                       void *ud) {
  (void)ud;
  g_dgrams++;
  /* Each carries its own length and a pattern derived from its first byte. */
  for (size_t i = 1; i < len; i++) {
    if (data[i] != (uint8_t)(data[0] + i)) {
      g_dgram_bad++;
      break;
    }
  }
  if (g_dgram_echo && uvq_conn_is_server(conn)) {
    int rv = uvq_conn_send_datagram(conn, data, len, NULL);
    assert_true(rv == 0 || rv == UVQ_ERR_QUEUE_FULL);
  }
  return 0;
}

static const uvq_app_callbacks app_cb = {
    .on_datagram = on_datagram,
    .on_datagram_acked = on_datagram_acked,
    .on_datagram_lost = on_datagram_lost,
    .on_new_token = qt_app_on_new_token,
    .on_stream_reset = on_stream_reset,
    .on_wake = on_wake,
    .on_timer = on_timer,
    .on_stop_sending = on_stop_sending,
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = qt_app_on_established,
    .on_stream_open = on_stream_open,
    .on_stream_data = on_stream_data,
    .on_stream_writable = qt_app_on_stream_writable,
    .on_closed = qt_app_on_closed,
};

/* What the server's accept hook saw (test_conn_handshake checks it). */
static struct {
  int accepted;
  char sni[64];
  char alpn[32];
} g_accept;

/* The server node's user_data is its qt_app (tests use one connection at
 * a time). */
static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  g_accept.accepted++;
  if (info->server_name) {
    snprintf(g_accept.sni, sizeof(g_accept.sni), "%s", info->server_name);
  }
  if (info->alpn) {
    snprintf(g_accept.alpn, sizeof(g_accept.alpn), "%.*s", (int)info->alpnlen,
             (const char *)info->alpn);
  }
  qt_app_accept(ep, conn, info, pcb, pud, ud);
  *pcb = &app_cb;
  return 0;
}

static void test_conn_handshake(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_endpoint_stats st;
  (void)state;

  qt_world_init(&w, 1);
  memset(&g_accept, 0, sizeof(g_accept));
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_true(s >= 0 && c >= 0);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(g_accept.accepted, 1);
  assert_string_equal(g_accept.sni, "localhost");
  assert_string_equal(g_accept.alpn, "test");
  assert_int_equal(uvq_conn_get_stage(cli.conn), UVQ_STAGE_RUNNING);
  {
    uvq_conn_info info;
    uvq_conn_get_info(cli.conn, &info);
    assert_int_equal(info.retry, 0); /* no Retry without Retry mode */
    assert_non_null(info.cipher);
  }
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.connections_current, 1);
  assert_int_equal(st.initials_accepted, 1);
  assert_int_equal(st.handshakes_in_flight, 0);

  /* A graceful close from the client: both sides see on_closed once. */
  assert_int_equal(uvq_conn_close(cli.conn, 0, "bye"), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(srv.closed, 1);
  assert_int_equal(srv.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(srv.ci.type, UVQ_CLOSE_TYPE_APPLICATION);
  assert_int_equal(srv.ci.error, 0);
  assert_memory_equal(srv.ci_reason, "bye", 3);
  /* After the closing/draining periods everything is freed. */
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  qt_world_free(&w);
}

static int transfer_done(void *ud) {
  qt_app **s = ud;
  return s[0]->fin && s[1]->fin;
}

static void run_transfer(double drop, double reorder, double dup, uint64_t up,
                         uint64_t down, uint64_t seed) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};

  qt_world_init(&w, seed);
  w.drop_pct = drop;
  w.reorder_pct = reorder;
  w.dup_pct = dup;
  w.delay = 5 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  cli.send_on_established = 1;
  cli.to_send = up;
  cli.seed = 11;
  srv.reply = 1;
  srv.to_send = down;
  srv.seed = 22;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, transfer_done, pair, 600 * UVQ_SECONDS));

  qt_app_assert_received(&srv, 11, up);
  qt_app_assert_received(&cli, 22, down);
  if (drop > 0) {
    assert_true(w.dropped > 0);
  }
  print_message("# transfer up=%llu down=%llu: delivered=%llu dropped=%llu "
                "reordered=%llu duplicated=%llu, fake time %.3f s\n",
                (unsigned long long)up, (unsigned long long)down,
                (unsigned long long)w.delivered, (unsigned long long)w.dropped,
                (unsigned long long)w.reordered,
                (unsigned long long)w.duplicated,
                (double)(w.now - 1000 * UVQ_SECONDS) / 1e9);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(srv.closed, 1);
  qt_world_free(&w);
}

static void test_conn_transfer_clean(void **state) {
  (void)state;
  run_transfer(0, 0, 0, 1u << 20, 1u << 20, 2);
}

static void test_conn_transfer_10mib_lossy(void **state) {
  (void)state;
  run_transfer(5, 3, 2, 10u << 20, 10u << 20, 3);
}

static void *wake_thread(void *arg) {
  for (int i = 0; i < 1000; i++) {
    uvq_waker_wake(arg);
  }
  return NULL;
}

static void test_conn_waker(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_waker *wk, *wk2;
  pthread_t th[2];
  (void)state;

  qt_world_init(&w, 7);
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));

  g_wakes = 0;
  wk = uvq_conn_waker(cli.conn);
  wk2 = uvq_conn_waker(cli.conn);
  assert_non_null(wk);
  assert_ptr_equal(wk, wk2);
  /* Two threads wake 2,000 times: wakes coalesce until processed. */
  assert_int_equal(pthread_create(&th[0], NULL, wake_thread, wk), 0);
  assert_int_equal(pthread_create(&th[1], NULL, wake_thread, wk2), 0);
  pthread_join(th[0], NULL);
  pthread_join(th[1], NULL);
  uvq_endpoint_process_wakes(w.nodes[c].ep);
  assert_int_equal(g_wakes, 1);
  uvq_endpoint_process_wakes(w.nodes[c].ep);
  assert_int_equal(g_wakes, 1);
  uvq_waker_wake(wk);
  uvq_endpoint_process_wakes(w.nodes[c].ep);
  assert_int_equal(g_wakes, 2);

  /* A wake queued before the close, then the connection goes away. */
  uvq_waker_wake(wk);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  uvq_endpoint_process_wakes(w.nodes[c].ep);
  assert_int_equal(g_wakes, 2);
  /* Waking after the close is a harmless no-op, even after the endpoint
   * is gone; the last release frees everything (ASan checks). */
  uvq_waker_wake(wk);
  uvq_waker_release(wk2);
  qt_world_free(&w);
  uvq_waker_wake(wk);
  uvq_waker_release(wk);
}

static void test_conn_app_timer(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_tstamp deadline;
  (void)state;

  qt_world_init(&w, 9);
  g_world = &w;
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  g_timers = 0;
  deadline = w.now + 5 * UVQ_SECONDS;
  uvq_conn_set_app_timer(cli.conn, w.now + 1 * UVQ_SECONDS);
  uvq_conn_set_app_timer(cli.conn, deadline); /* replaces the first */
  qt_run(&w, NULL, NULL, 8 * UVQ_SECONDS);
  assert_int_equal(g_timers, 1);
  assert_true(g_timer_at >= deadline);
  assert_true(g_timer_at < deadline + 10 * UVQ_MILLISECONDS);
  /* Disarmed: nothing more fires. */
  uvq_conn_set_app_timer(cli.conn, w.now + 1 * UVQ_SECONDS);
  uvq_conn_set_app_timer(cli.conn, UVQ_TSTAMP_MAX);
  qt_run(&w, NULL, NULL, 3 * UVQ_SECONDS);
  assert_int_equal(g_timers, 1);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

static void test_conn_peer_stop_sending(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  (void)state;

  qt_world_init(&w, 10);
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  cli.send_on_established = 1;
  cli.to_send = 8u << 20; /* more than fits: the client keeps writing */
  cli.seed = 5;
  g_stop_sending = 0;
  g_stop_reading_server = 1;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(g_stop_sending, 1);
  assert_true(cli.sent < cli.to_send);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  qt_world_free(&w);
}

static void test_conn_gro_super_buffer(void **state) {
  qt_world w;
  uvq_endpoint_stats st;
  uvq_addr from;
  uint8_t buf[350];
  (void)state;

  qt_world_init(&w, 12);
  int s = qt_add_server(&w, NULL, on_accept, NULL);
  from = w.nodes[s].addr;
  ((struct sockaddr_in *)&from.ss)->sin_port = htons(9999);
  /* Four short-header datagrams in one GRO buffer: 3 x 100 + 50 bytes. */
  for (size_t i = 0; i < sizeof(buf); i++) {
    buf[i] = (uint8_t)(i * 7 + 1);
  }
  buf[0] = buf[100] = buf[200] = buf[300] = 0x40;
  uvq_path path;
  path.local = w.nodes[s].addr;
  path.remote = from;
  assert_int_equal(
      uvq_endpoint_recv(w.nodes[s].ep, &path, 0, buf, 350, 100, w.now), 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.datagrams_received, 4);
  assert_int_equal(st.bytes_received, 350);
  assert_int_equal(st.dropped[UVQ_DROP_UNKNOWN_CID], 4);
  /* segment_size 0 or >= len: one datagram. */
  assert_int_equal(
      uvq_endpoint_recv(w.nodes[s].ep, &path, 0, buf, 350, 0, w.now), 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.datagrams_received, 5);
  assert_int_equal(uvq_endpoint_recv(w.nodes[s].ep, NULL, 0, buf, 1, 0, w.now),
                   UVQ_ERR_INVALID_ARGUMENT);
  qt_world_free(&w);
}

static int drop_s2c(qt_world *w, int from, qt_pkt *p, void *ud) {
  (void)w;
  (void)p;
  (void)ud;
  if (from == 0 && g_drop_s2c > 0) { /* node 0 is the server */
    g_drop_s2c--;
    return 1;
  }
  return 0;
}

static void test_conn_closing_period_resends_close(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  uvq_tstamp t0;
  (void)state;

  qt_world_init(&w, 13);
  w.delay = 10 * UVQ_MILLISECONDS;
  w.filter = drop_s2c;
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(s, 0);
  cli.send_on_established = 1;
  cli.to_send = 4u << 20;
  cli.seed = 3;
  g_close_server_after = 256 * 1024;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  t0 = w.now;
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 20 * UVQ_SECONDS));
  /* The first CONNECTION_CLOSE was lost; the closing server answered the
   * client's next packets with the cached one, long before any timeout. */
  assert_int_equal(g_drop_s2c, 0);
  assert_true(w.now - t0 < 2 * UVQ_SECONDS);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(cli.ci.type, UVQ_CLOSE_TYPE_APPLICATION);
  assert_int_equal(cli.ci.code, 0x77);
  assert_int_equal(cli.ci.reasonlen, 6);
  assert_memory_equal(cli.ci_reason, "enough", 6);
  assert_int_equal(srv.closed, 1);
  assert_int_equal(srv.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(srv.ci.code, 0x77);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  qt_app_free(&srv);
  qt_world_free(&w);
}

static void test_conn_stream_reset(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  int64_t sid;
  int dummy;
  (void)state;

  qt_world_init(&w, 14);
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, &dummy), 0);
  assert_ptr_equal(uvq_stream_get_user_data(cli.conn, sid), &dummy);
  assert_int_equal(
      uvq_stream_write(cli.conn, sid, (const uint8_t *)"hello", 5, 0), 5);
  assert_int_equal(uvq_stream_get_buffered(cli.conn, sid), 5);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(srv.received, 5);
  assert_int_equal(uvq_stream_get_buffered(cli.conn, sid), 0); /* acked */
  g_resets = 0;
  assert_int_equal(uvq_stream_reset(cli.conn, sid, 0x99), 0);
  assert_int_equal(uvq_stream_write(cli.conn, sid, (const uint8_t *)"x", 1, 0),
                   UVQ_ERR_STREAM_SHUT);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(g_resets, 1);
  assert_int_equal(g_reset_code, 0x99);
  assert_int_equal(
      uvq_stream_write(cli.conn, 12345, (const uint8_t *)"x", 1, 0),
      UVQ_ERR_STREAM_NOT_FOUND);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  assert_int_equal(uvq_stream_write(cli.conn, sid, (const uint8_t *)"x", 1, 0),
                   UVQ_ERR_CLOSED);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_app_free(&srv);
  qt_world_free(&w);
}

static int connect_with_token(qt_world *w, int c, int s, qt_app *cli,
                              const uint8_t *tok, size_t toklen) {
  uvq_connect_params p;
  uvq_connect_params_default(&p);
  p.callbacks = &app_cb;
  p.user_data = cli;
  p.token = tok;
  p.tokenlen = toklen;
  return qt_connect_params(w, c, s, &p, &cli->conn);
}

static void test_conn_new_token_skips_retry(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0}, cli2 = {0}, srv2 = {0}, cli3 = {0}, srv3 = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_settings ss;
  uvq_endpoint_stats st;
  uint8_t bad[256];
  (void)state;

  qt_world_init(&w, 15);
  uvq_settings_default(&ss);
  ss.retry = UVQ_RETRY_ALWAYS;
  int s = qt_add_server(&w, &ss, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.retries_sent, 1);
  assert_int_equal(st.new_tokens_sent, 1);
  assert_true(cli.tokenlen > 0);

  /* The token validates the address of the next connection: no Retry. */
  w.nodes[s].user_data = &srv2;
  pair[0] = &cli2;
  pair[1] = &srv2;
  assert_int_equal(connect_with_token(&w, c, s, &cli2, cli.token, cli.tokenlen),
                   0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.retries_sent, 1);
  assert_int_equal(srv2.accept_validated, 1);

  /* A forged token is treated as absent (RFC 9000 §8.1.3): Retry again,
   * the connection still succeeds, and the rejection is counted. */
  memcpy(bad, cli.token, cli.tokenlen);
  bad[cli.tokenlen - 1] ^= 1;
  w.nodes[s].user_data = &srv3;
  pair[0] = &cli3;
  pair[1] = &srv3;
  assert_int_equal(connect_with_token(&w, c, s, &cli3, bad, cli.tokenlen), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.retries_sent, 2);
  assert_int_equal(st.tokens_rejected[UVQ_TOKEN_REJECT_DECRYPT], 1);
  assert_int_equal(srv3.accept_validated, 1); /* by the Retry token this time */

  uvq_conn_close(cli.conn, 0, NULL);
  uvq_conn_close(cli2.conn, 0, NULL);
  uvq_conn_close(cli3.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  qt_world_free(&w);
}

static void test_conn_key_update(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  (void)state;

  qt_world_init(&w, 16);
  w.delay = 2 * UVQ_MILLISECONDS;
  /* The server only sends ACKs here, which give it no RTT samples; a small
   * initial RTT keeps its PTO (and so the 3 PTO ngtcp2 waits between key
   * updates) short. */
  uvq_settings st;
  uvq_settings_default(&st);
  st.initial_rtt = 10 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, &st, on_accept, &srv);
  int c = qt_add_client(&w, &st, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS); /* handshake confirmed */
  assert_int_equal(uvq_conn_update_key(cli.conn, w.now), 0);
  /* A second update before the first is acknowledged is refused. */
  assert_int_equal(uvq_conn_update_key(cli.conn, w.now), UVQ_ERR_INVALID_STATE);

  /* Dozens of updates while data flows: the server tries every 100 ms of
   * fake time for 3.2 s, then the client does, then the server again (each
   * side's updates are peer-initiated ones for the other, and each side
   * initiates after the other has). ngtcp2 refuses an update until the
   * previous one is confirmed and 3 PTO have passed; refused attempts are
   * simply retried. */
  g_key_updates[0] = g_key_updates[1] = 0;
  int server_after_client = 0;
  cli.seed = 44;
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &cli.sid, NULL), 0);
  for (int i = 0; i < 96; i++) {
    uint8_t chunk[32 * 1024];
    int server_turn = i < 32 || i >= 64;
    if (uvq_conn_update_key(server_turn ? srv.conn : cli.conn, w.now) == 0) {
      g_key_updates[server_turn]++;
      server_after_client += i >= 64;
    }
    qt_pattern_fill(44, cli.sent, chunk, sizeof(chunk));
    assert_int_equal(
        uvq_stream_write(cli.conn, cli.sid, chunk, sizeof(chunk), i == 95),
        (ssize_t)sizeof(chunk));
    cli.sent += sizeof(chunk);
    qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  }
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 10 * UVQ_SECONDS));
  print_message("# key updates: client %d, server %d (%d after the client's)\n",
                g_key_updates[0], g_key_updates[1], server_after_client);
  assert_true(g_key_updates[0] >= 8);
  assert_true(g_key_updates[1] >= 16);
  assert_true(server_after_client >= 8);
  qt_app_assert_received(&srv, 44, 96 * 32 * 1024);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.error, 0);
  assert_int_equal(srv.ci.error, 0);
  qt_world_free(&w);
}

static void test_conn_datagram(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_settings st;
  uvq_endpoint_stats cs, ss;
  uint8_t buf[1500];
  size_t max;
  int queued = 0, rv;
  (void)state;

  qt_world_init(&w, 17);
  uvq_settings_default(&st);
  st.max_datagram_frame_size = 65535;
  st.datagram_queue_len = 32;
  int s = qt_add_server(&w, &st, on_accept, &srv);
  int c = qt_add_client(&w, &st, NULL);
  /* Before the handshake DATAGRAM cannot be used. */
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_int_equal(uvq_conn_send_datagram(cli.conn, buf, 10, NULL),
                   UVQ_ERR_INVALID_STATE);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  max = uvq_conn_get_max_datagram_size(cli.conn);
  assert_true(max >= 1100 && max < 1200);
  assert_int_equal(uvq_conn_send_datagram(cli.conn, buf, max + 1, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);

  g_dgrams = g_dgram_bad = 0;
  g_dgram_acked = g_dgram_lost = g_dgram_twice = g_dgram_spurious = 0;
  g_dgram_id_sum = 0;
  memset(g_dgram_seen, 0, sizeof(g_dgram_seen));
  g_dgram_echo = 1;
  for (int i = 0; i < 200; i++) {
    uint64_t id = 0;
    size_t len = 1 + (size_t)i * 5 % max;
    buf[0] = (uint8_t)i;
    for (size_t j = 1; j < len; j++) {
      buf[j] = (uint8_t)(buf[0] + j);
    }
    rv = uvq_conn_send_datagram(cli.conn, buf, len, &id);
    if (rv == UVQ_ERR_QUEUE_FULL) {
      /* The queue is bounded: let it drain, then go on. */
      qt_run(&w, NULL, NULL, 50 * UVQ_MILLISECONDS);
      rv = uvq_conn_send_datagram(cli.conn, buf, len, &id);
    }
    assert_int_equal(rv, 0);
    assert_int_equal(id, (uint64_t)i);
    queued++;
  }
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  g_dgram_echo = 0;
  uvq_endpoint_get_stats(w.nodes[c].ep, &cs);
  uvq_endpoint_get_stats(w.nodes[s].ep, &ss);
  /* A clean wire: every DATAGRAM arrives once, intact, and is echoed. */
  assert_int_equal(cs.datagrams_app_sent, (uint64_t)queued);
  assert_int_equal(ss.datagrams_app_received, (uint64_t)queued);
  assert_int_equal(cs.datagrams_app_received, ss.datagrams_app_sent);
  assert_true(ss.datagrams_app_sent > 0);
  assert_int_equal(g_dgram_bad, 0);
  assert_int_equal(
      g_dgrams, (int)(ss.datagrams_app_received + cs.datagrams_app_received));
  /* Every DATAGRAM is reported acknowledged exactly once (ids 0..199). */
  assert_int_equal(g_dgram_acked, queued);
  assert_int_equal(g_dgram_lost, 0);
  assert_int_equal(g_dgram_id_sum, (uint64_t)queued * (queued - 1) / 2);

  /* On a lossy wire some are lost, and none is reported twice, but for
   * acked after lost (a spurious loss). ngtcp2 reports neither for a
   * packet it reclaimed into a PTO probe and then declared lost (1.11:
   * rtb_on_pkt_lost), so the ids reported may fall a little short of the
   * count (documented). */
  w.drop_pct = 30;
  g_dgram_echo = 0;
  g_dgram_acked = g_dgram_lost = 0;
  for (int i = 0; i < 40; i++) {
    assert_int_equal(uvq_conn_send_datagram(cli.conn, buf, 100, NULL), 0);
    qt_run(&w, NULL, NULL, 20 * UVQ_MILLISECONDS);
  }
  qt_run(&w, NULL, NULL, 3 * UVQ_SECONDS);
  assert_true(g_dgram_lost > 0);
  assert_true(g_dgram_acked > 0);
  assert_true(g_dgram_acked + g_dgram_lost - g_dgram_spurious <= 40);
  assert_true(g_dgram_acked + g_dgram_lost - g_dgram_spurious >= 34);
  assert_int_equal(g_dgram_twice, 0);
  w.drop_pct = 0;

  /* A peer without DATAGRAM support: refused locally. */
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);

  qt_world_init(&w, 18);
  memset(&cli, 0, sizeof(cli));
  memset(&srv, 0, sizeof(srv));
  s = qt_add_server(&w, NULL, on_accept, &srv);
  c = qt_add_client(&w, &st, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_get_max_datagram_size(cli.conn), 0);
  assert_int_equal(uvq_conn_send_datagram(cli.conn, buf, 10, NULL),
                   UVQ_ERR_INVALID_STATE);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

typedef struct qlog_sink {
  char buf[1 << 16];
  size_t len;
  size_t total;
  int fins;
} qlog_sink;

static void qlog_cb(void *ud, uvq_conn *conn, const void *data, size_t len,
                    int fin) {
  qlog_sink *q = ud;
  (void)conn;
  if (q->len + len < sizeof(q->buf)) {
    memcpy(q->buf + q->len, data, len);
    q->len += len;
  }
  q->total += len;
  q->fins += fin;
}

static void test_conn_qlog(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  static qlog_sink sink;
  uvq_settings st;
  uvq_conn_info info;
  (void)state;

  memset(&sink, 0, sizeof(sink));
  qt_world_init(&w, 19);
  uvq_settings_default(&st);
  st.qlog = qlog_cb;
  st.qlog_user_data = &sink;
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, &st, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.odcidlen, 18);
  assert_true(sink.len > 0);
  sink.buf[sink.len < sizeof(sink.buf) ? sink.len : sizeof(sink.buf) - 1] = 0;
  assert_non_null(strstr(sink.buf, "qlog_version"));
  assert_non_null(strstr(sink.buf, "packet_sent"));
  assert_int_equal(sink.fins, 0);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(sink.fins, 1); /* the trace is closed with the conn */
  qt_world_free(&w);
}

static void noop_free(void *p, void *ud) {
  (void)p;
  (*(int *)ud)++;
}

/* Many small by-reference chunks ending with FIN, queued before one flush:
 * the writer offers at most 16 chunks at a time, and FIN must ride only
 * with the last byte (it once went out with the 16th chunk, truncating). */
static void test_conn_fin_after_many_chunks(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  static uint8_t piece[40][50];
  int freed = 0;
  uint8_t want[32];
  gnutls_hash_hd_t h;
  (void)state;

  qt_world_init(&w, 21);
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &cli.sid, NULL), 0);
  assert_int_equal(gnutls_hash_init(&h, GNUTLS_DIG_SHA256), 0);
  for (int i = 0; i < 40; i++) {
    qt_pattern_fill(9, (uint64_t)i * 50, piece[i], 50);
    gnutls_hash(h, piece[i], 50);
    assert_int_equal(uvq_stream_write_ref(cli.conn, cli.sid, piece[i], 50,
                                          i == 39, noop_free, &freed),
                     50);
  }
  gnutls_hash_deinit(h, want);
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 5 * UVQ_SECONDS));
  assert_int_equal(srv.received, 2000);
  assert_memory_equal(srv.digest, want, 32);
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_int_equal(freed, 40);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

static void test_conn_callback_reentry_and_uni(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  int64_t uni;
  (void)state;

  qt_world_init(&w, 22);
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  g_reentry_checks = 0;
  assert_int_equal(uvq_conn_open_stream(cli.conn, 0, &uni, NULL), 0);
  /* Our unidirectional stream has no receive side to stop. */
  assert_int_equal(uvq_stream_stop_sending(cli.conn, uni, 1),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_stream_write(cli.conn, uni, (const uint8_t *)"hi", 2, 1),
                   2);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(g_reentry_checks, 1); /* the server saw the stream */
  assert_int_equal(srv.received, 2);
  g_reentry_checks = -1;
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_app_free(&srv);
  qt_world_free(&w);
}

/* ---- on_write: the application writes once per flush pass ------------- */

static struct {
  int fail;               /* on_write returns an error */
  int reply_due;          /* the server read the request's FIN */
  uint64_t calls;         /* on_write calls on the server */
  uint64_t same_pass;     /* calls in a flush that already had one */
  uint64_t last_flush;    /* w->flushes at the last call */
  uint64_t version1_hits; /* calls through a version 1 table */
} g_ow;

static int ow_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  qt_app *a = ud;
  int rv;
  /* Count and hash, but answer from on_write, not from here. */
  a->reply = 0;
  rv = qt_app_on_stream_data(conn, sid, data, len, fin, ud, sud);
  if (fin) {
    g_ow.reply_due = 1;
  }
  return rv;
}

static int ow_write(uvq_conn *conn, void *ud) {
  qt_app *a = ud;
  g_ow.calls++;
  if (g_ow.calls > 1 && g_world->flushes == g_ow.last_flush) {
    g_ow.same_pass++;
  }
  g_ow.last_flush = g_world->flushes;
  if (g_ow.fail) {
    return UVQ_ERR_INTERNAL;
  }
  if (g_ow.reply_due) {
    g_ow.reply_due = 0;
    return qt_app_pump(conn, a);
  }
  return 0;
}

static int ow_write_v1(uvq_conn *conn, void *ud) {
  (void)conn;
  (void)ud;
  g_ow.version1_hits++;
  return 0;
}

static const uvq_app_callbacks ow_cb = {
    .version = 2,
    .on_established = qt_app_on_established,
    .on_stream_open = qt_app_on_stream_open,
    .on_stream_data = ow_stream_data,
    .on_stream_writable = qt_app_on_stream_writable,
    .on_closed = qt_app_on_closed,
    .on_write = ow_write,
};

/* A table that says version 1 has no on_write, whatever the member holds. */
static const uvq_app_callbacks ow_cb_v1 = {
    .version = 1,
    .on_established = qt_app_on_established,
    .on_stream_open = qt_app_on_stream_open,
    .on_stream_data = qt_app_on_stream_data,
    .on_stream_writable = qt_app_on_stream_writable,
    .on_closed = qt_app_on_closed,
    .on_write = ow_write_v1,
};

static int ow_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  qt_app_accept(ep, conn, info, pcb, pud, ud);
  *pcb = &ow_cb;
  return 0;
}

static void test_conn_on_write(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_conn_stats st;
  (void)state;

  memset(&g_ow, 0, sizeof(g_ow));
  qt_world_init(&w, 31);
  g_world = &w;
  w.delay = 2 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, ow_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  cli.send_on_established = 1;
  cli.to_send = 600000;
  cli.seed = 5;
  srv.to_send = 300000;
  srv.seed = 6;
  assert_int_equal(qt_connect(&w, c, s, &ow_cb_v1, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, transfer_done, pair, 60 * UVQ_SECONDS));
  /* What on_write wrote arrived whole. */
  qt_app_assert_received(&srv, 5, 600000);
  qt_app_assert_received(&cli, 6, 300000);
  /* Called on the server's passes, at most once per flush: its own writes
   * do not mark the connection for a second pass. */
  assert_true(g_ow.calls > 0);
  assert_int_equal(g_ow.same_pass, 0);
  uvq_conn_get_stats(srv.conn, &st);
  /* Far fewer calls than packets: the wire hands over bursts. */
  assert_true(g_ow.calls < st.datagrams_received / 2);
  assert_int_equal(g_ow.version1_hits, 0);

  /* A failing on_write closes the connection with INTERNAL_ERROR. */
  g_ow.fail = 1;
  {
    int64_t sid;
    assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, NULL), 0);
    assert_int_equal(
        uvq_stream_write(cli.conn, sid, (const uint8_t *)"x", 1, 1), 1);
  }
  assert_true(qt_run(&w, qt_app_is_closed, &srv, 10 * UVQ_SECONDS));
  assert_int_equal(srv.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(srv.ci.type, UVQ_CLOSE_TYPE_TRANSPORT);
  assert_int_equal(srv.ci.code, NGTCP2_INTERNAL_ERROR);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  qt_world_free(&w);
}

/* Delivers every queued datagram (all bound for node |dst|) straight to
 * its endpoint, without a flush. Returns 1 if there was any. */
static int deliver_by_hand(qt_world *w, int dst) {
  int delivered = 0;
  while (w->queue) {
    qt_pkt *p = w->queue;
    w->queue = p->next;
    assert_int_equal(p->dst, dst);
    if (p->deliver_at > w->now) {
      w->now = p->deliver_at;
    }
    assert_int_equal(uvq_endpoint_recv(w->nodes[dst].ep, &p->path, 0, p->data,
                                       p->len, 0, w->now),
                     0);
    free(p);
    delivered = 1;
  }
  return delivered;
}

/* A driver may ask for the next expiry between receiving and flushing:
 * the timers a read packet set are in it (uvq_ep_refresh_timers). */
static void test_conn_expiry_before_flush(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_endpoint *sep;
  uvq_tstamp deadline;
  int64_t sid;
  (void)state;

  qt_world_init(&w, 41);
  w.delay = 10 * UVQ_MILLISECONDS;
  int s = qt_add_server(&w, NULL, on_accept, &srv);
  int c = qt_add_client(&w, NULL, NULL);
  sep = w.nodes[s].ep;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 2 * UVQ_SECONDS); /* quiet: only far timers left */
  assert_null(w.queue);
  assert_true(uvq_endpoint_next_expiry(sep) > w.now + UVQ_SECONDS);

  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, NULL), 0);
  assert_int_equal(
      uvq_stream_write(cli.conn, sid, (const uint8_t *)"ping", 4, 0), 4);
  assert_int_equal(uvq_endpoint_flush(w.nodes[c].ep, w.now), 0);
  /* Hand the client's datagrams to the server by hand, without a flush. */
  assert_int_equal(deliver_by_hand(&w, s), 1);
  /* The stream data wants an ACK within max_ack_delay (25 ms). */
  assert_true(uvq_endpoint_next_expiry(sep) <= w.now + 25 * UVQ_MILLISECONDS);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(srv.received, 4);

  /* A driver that runs timers straight after receiving: a deadline that
   * fell between the packets and |now| fires in that call. */
  g_world = &w;
  g_timers = 0;
  deadline = w.now + 50 * UVQ_MILLISECONDS;
  uvq_conn_set_app_timer(srv.conn, deadline);
  assert_int_equal(
      uvq_stream_write(cli.conn, sid, (const uint8_t *)"pong", 4, 0), 4);
  assert_int_equal(uvq_endpoint_flush(w.nodes[c].ep, w.now), 0);
  assert_int_equal(deliver_by_hand(&w, s), 1);
  assert_true(w.now < deadline);
  assert_int_equal(uvq_endpoint_handle_expiry(sep, deadline), 0);
  assert_int_equal(g_timers, 1);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(srv.received, 8);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

/* A server that never answers, and a client with a stream open waiting:
 * with stream_keep_alive the client PINGs, the server acknowledges, and
 * the 2 s stall timeout never fires (a slow peer is not a dead path);
 * without it nothing arrives and the stall timeout closes the connection
 * with UVQ_ERR_STALLED at 2 s, far inside the 30 s idle timeout. */
static uvq_tstamp run_silent_server(uvq_tstamp stream_keep_alive, qt_app *cli,
                                    qt_world *w) {
  static qt_app srv;
  qt_app *pair[2] = {cli, &srv};
  uvq_settings cs;
  uvq_tstamp opened;
  int64_t sid;

  memset(cli, 0, sizeof(*cli));
  memset(&srv, 0, sizeof(srv));
  qt_world_init(w, 12);
  uvq_settings_default(&cs);
  cs.stall_timeout = 2 * UVQ_SECONDS;
  cs.stream_keep_alive = stream_keep_alive;
  int s = qt_add_server(w, NULL, on_accept, &srv);
  int c = qt_add_client(w, &cs, NULL);
  cli->w = w;
  assert_int_equal(qt_connect(w, c, s, &app_cb, cli, &cli->conn), 0);
  assert_true(qt_run(w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  /* A request the server reads and never answers. */
  assert_int_equal(uvq_conn_open_stream(cli->conn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(cli->conn, sid, (const uint8_t *)"q", 1, 1),
                   1);
  opened = w->now;
  qt_run(w, qt_app_is_closed, cli, 6 * UVQ_SECONDS);
  return opened;
}

static void test_conn_stall_timeout(void **state) {
  qt_world w;
  qt_app cli;
  uvq_endpoint_stats es;
  uvq_tstamp opened;
  (void)state;

  run_silent_server(1 * UVQ_SECONDS, &cli, &w);
  assert_int_equal(cli.closed, 0);
  uvq_endpoint_get_stats(uvq_conn_get_endpoint(cli.conn), &es);
  assert_int_equal(es.stalls, 0);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);

  opened = run_silent_server(0, &cli, &w);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.error, UVQ_ERR_STALLED);
  assert_int_equal(cli.ci.code, NGTCP2_NO_VIABLE_PATH);
  assert_true(cli.closed_at < opened + 3 * UVQ_SECONDS);
  uvq_endpoint_get_stats(w.nodes[1].ep, &es); /* the client's */
  assert_int_equal(es.stalls, 1);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

/* An ICMP port unreachable from the peer's address ends a client
 * connection that has heard nothing from it yet, at once; any other ICMP
 * error (another address, a peer already heard from, a server) is only
 * counted (RFC 9000 §14.2.1: ICMP is unauthenticated). */
static void test_conn_icmp_unreachable(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_endpoint_stats st;
  uvq_addr other;
  int s, c;
  (void)state;

  /* Before anything came back: only the peer's own address counts. */
  qt_world_init(&w, 1);
  memset(&g_accept, 0, sizeof(g_accept));
  s = qt_add_server(&w, NULL, on_accept, &srv);
  c = qt_add_client(&w, NULL, NULL);
  assert_true(s >= 0 && c >= 0);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  other = w.nodes[s].addr;
  ((struct sockaddr_in *)&other.ss)->sin_port ^= 0x100;
  assert_int_equal(uvq_endpoint_recv_icmp(w.nodes[c].ep,
                                          (struct sockaddr *)&other.ss,
                                          UVQ_ICMP_PORT_UNREACHABLE, w.now),
                   0);
  assert_int_equal(uvq_conn_get_stage(cli.conn), UVQ_STAGE_HANDSHAKE);
  assert_int_equal(uvq_endpoint_recv_icmp(
                       w.nodes[c].ep, (struct sockaddr *)&w.nodes[s].addr.ss,
                       UVQ_ICMP_PORT_UNREACHABLE, w.now),
                   0);
  assert_int_equal(uvq_endpoint_flush(w.nodes[c].ep, w.now), 0);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.error, UVQ_ERR_PORT_UNREACHABLE);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_PEER);
  uvq_endpoint_get_stats(w.nodes[c].ep, &st);
  assert_int_equal(st.icmp_errors, 2);
  assert_int_equal(st.icmp_closed, 1);
  assert_int_equal(uvq_endpoint_recv_icmp(w.nodes[c].ep, NULL,
                                          UVQ_ICMP_PORT_UNREACHABLE, w.now),
                   UVQ_ERR_INVALID_ARGUMENT);
  qt_world_free(&w);

  /* Established: neither side closes on one. */
  memset(&cli, 0, sizeof(cli));
  memset(&srv, 0, sizeof(srv));
  qt_world_init(&w, 2);
  memset(&g_accept, 0, sizeof(g_accept));
  s = qt_add_server(&w, NULL, on_accept, &srv);
  c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_endpoint_recv_icmp(
                       w.nodes[c].ep, (struct sockaddr *)&w.nodes[s].addr.ss,
                       UVQ_ICMP_HOST_UNREACHABLE, w.now),
                   0);
  assert_int_equal(uvq_endpoint_recv_icmp(
                       w.nodes[s].ep, (struct sockaddr *)&w.nodes[c].addr.ss,
                       UVQ_ICMP_PORT_UNREACHABLE, w.now),
                   0);
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_int_equal(cli.closed, 0);
  assert_int_equal(srv.closed, 0);
  uvq_endpoint_get_stats(w.nodes[c].ep, &st);
  assert_int_equal(st.icmp_errors, 1);
  assert_int_equal(st.icmp_closed, 0);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_int_equal(st.icmp_errors, 1);
  assert_int_equal(st.icmp_closed, 0);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conn_handshake),
      cmocka_unit_test(test_conn_icmp_unreachable),
      cmocka_unit_test(test_conn_transfer_clean),
      cmocka_unit_test(test_conn_transfer_10mib_lossy),
      cmocka_unit_test(test_conn_waker),
      cmocka_unit_test(test_conn_app_timer),
      cmocka_unit_test(test_conn_peer_stop_sending),
      cmocka_unit_test(test_conn_gro_super_buffer),
      cmocka_unit_test(test_conn_closing_period_resends_close),
      cmocka_unit_test(test_conn_stream_reset),
      cmocka_unit_test(test_conn_new_token_skips_retry),
      cmocka_unit_test(test_conn_key_update),
      cmocka_unit_test(test_conn_datagram),
      cmocka_unit_test(test_conn_qlog),
      cmocka_unit_test(test_conn_fin_after_many_chunks),
      cmocka_unit_test(test_conn_callback_reentry_and_uni),
      cmocka_unit_test(test_conn_on_write),
      cmocka_unit_test(test_conn_expiry_before_flush),
      cmocka_unit_test(test_conn_stall_timeout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
