/*
 * Send buffers bounded by the peer's credit and the connection's budget: a
 * client that opens every stream it may and grants no flow-control credit
 * on any makes the server hold at most one lookahead per stream and never
 * more than conn_send_budget per connection, however much the server's
 * application offers; a well-behaved client on the same endpoint still
 * gets its whole download, and a zero-credit stream resumes when credit
 * comes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "qtest.h"
#include "qtest_app.h"

/* What the server offers on every stream. */
static uint64_t g_response = 32u << 20;
#define BLOCK (64u << 10)
#define HOSTILE 4
#define STREAMS 100

static uint8_t g_block[BLOCK];

/* The server: on every request (a FIN), answer RESPONSE bytes, written in
 * BLOCK writes until one comes back short, resumed by on_stream_writable. */
typedef struct srv_stream {
  uint64_t sent;
} srv_stream;

static uint64_t g_offered; /* bytes the server's writes were offered */

static void pump(uvq_conn *conn, int64_t sid, srv_stream *st) {
  while (st->sent < g_response) {
    size_t want = g_response - st->sent < BLOCK ? g_response - st->sent : BLOCK;
    ssize_t n = uvq_stream_write(conn, sid, g_block, want,
                                 st->sent + want == g_response);
    assert_true(n >= 0);
    g_offered += want;
    st->sent += (size_t)n;
    if ((size_t)n < want) {
      return;
    }
  }
}

/* Every server stream's state, from a static array (endpoints deleted at
 * the end of a test fire no callbacks to free anything). */
static srv_stream g_streams[1024];
static size_t g_nstreams;

static int srv_open(uvq_conn *conn, int64_t sid, void *ud) {
  srv_stream *st;
  (void)ud;
  assert_true(g_nstreams < sizeof(g_streams) / sizeof(g_streams[0]));
  st = &g_streams[g_nstreams++];
  memset(st, 0, sizeof(*st));
  return uvq_stream_set_user_data(conn, sid, st);
}

static int srv_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                    size_t len, int fin, void *ud, void *sud) {
  (void)data;
  (void)len;
  (void)ud;
  if (fin) {
    pump(conn, sid, sud);
  }
  return 0;
}

static int srv_writable(uvq_conn *conn, int64_t sid, void *ud, void *sud) {
  (void)ud;
  pump(conn, sid, sud);
  return 0;
}

static const uvq_app_callbacks srv_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_open = srv_open,
    .on_stream_data = srv_data,
    .on_stream_writable = srv_writable,
};

/* The server's accept hook: every connection gets the callbacks that
 * qt_add_server's user_data (kept in the node, ud) points at. */
static int cb_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  (void)ep;
  (void)conn;
  (void)info;
  *pcb = ((qt_node *)ud)->user_data;
  *pud = NULL;
  return 0;
}

/* The hostile clients: every stream asks, none is ever read or credited. */
typedef struct hostile {
  uvq_conn *conn;
  int established;
  int closed;
} hostile;

static int h_established(uvq_conn *conn, void *ud) {
  hostile *h = ud;
  h->established = 1;
  for (int i = 0; i < STREAMS; i++) {
    int64_t sid;
    assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
    assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"q", 1, 1),
                     1);
  }
  return 0;
}

static void h_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  (void)conn;
  (void)ci;
  ((hostile *)ud)->closed = 1;
}

static const uvq_app_callbacks hostile_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = h_established,
    .on_closed = h_closed,
};

/* A client node whose connections grant no credit on any stream, ever. */
static int zero_credit_client(qt_world *w) {
  uvq_settings zero;
  uvq_settings_default(&zero);
  zero.initial_max_stream_data = 0;
  zero.max_stream_window = 0;
  return qt_add_client(w, &zero, NULL);
}

/* A hostile connection to server s from a new zero-credit client, given
 * 500 ms to fill the server's buffers. */
static void hostile_fill(qt_world *w, int s, hostile *hx) {
  int hc = zero_credit_client(w);
  memset(hx, 0, sizeof(*hx));
  assert_int_equal(qt_connect(w, hc, s, &hostile_cb, hx, &hx->conn), 0);
  qt_run(w, NULL, NULL, 500 * UVQ_MILLISECONDS);
}

/* The well-behaved client: |streams| requests, reads every answer. */
typedef struct good {
  int streams;
  uint64_t received;
  int fins;
} good;

static int g_established(uvq_conn *conn, void *ud) {
  good *g = ud;
  for (int i = 0; i < g->streams; i++) {
    int64_t sid;
    assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
    assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"q", 1, 1),
                     1);
  }
  return 0;
}

static int g_data(uvq_conn *conn, int64_t sid, const uint8_t *data, size_t len,
                  int fin, void *ud, void *sud) {
  good *g = ud;
  (void)conn;
  (void)sid;
  (void)data;
  (void)sud;
  g->received += len;
  g->fins += fin != 0;
  return 0;
}

static const uvq_app_callbacks good_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = g_established,
    .on_stream_data = g_data,
};

/* n well-behaved clients of server s, a node each, ok[i] asking for
 * |streams| answers. */
static void good_clients(qt_world *w, int s, good *ok, int n, int streams) {
  for (int i = 0; i < n; i++) {
    uvq_conn *conn;
    int c = qt_add_client(w, NULL, NULL);
    memset(&ok[i], 0, sizeof(ok[i]));
    ok[i].streams = streams;
    assert_int_equal(qt_connect(w, c, s, &good_cb, &ok[i], &conn), 0);
  }
}

static int watch_step(void *ud);

static int good_done(void *ud) {
  (void)watch_step(ud);
  good *g = ud;
  return g->fins == g->streams;
}

static uint64_t g_peak; /* the server's pool outstanding bytes, at most */
/* The most stream bytes one server connection held (written - acked). */
static uint64_t g_peak_buffered;
static uvq_endpoint *g_sep;

/* A world (seed, one-way delay, link rate: 0 for none) with a server whose
 * connections get srv_cb, with settings ss (NULL: the defaults); g_sep is
 * its endpoint. Returns the server's node. */
static int srv_world(qt_world *w, uint64_t seed, uvq_tstamp delay,
                     uint64_t rate_bps, const uvq_settings *ss) {
  int s;
  g_nstreams = 0;
  qt_world_init(w, seed);
  w->delay = delay;
  w->rate_bps = rate_bps;
  s = qt_add_server(w, ss, cb_accept, (void *)(uintptr_t)&srv_cb);
  g_sep = w->nodes[s].ep;
  return s;
}

static int watch_step(void *ud) {
  uvq_endpoint_stats es;
  (void)ud;
  uvq_endpoint_get_stats(g_sep, &es);
  if (es.pool_outstanding_bytes > g_peak) {
    g_peak = es.pool_outstanding_bytes;
  }
  for (uvq_conn *c = g_sep->conns; c; c = c->next) {
    if (c->send_buffered > g_peak_buffered) {
      g_peak_buffered = c->send_buffered;
    }
  }
  return 0;
}

static void test_budget_zero_credit_clients(void **state) {
  static hostile h[HOSTILE];
  qt_world w;
  good ok = {.streams = 1};
  uvq_conn *ok_conn;
  uvq_endpoint_stats es;
  uint64_t conn_budget;
  int s, c;
  (void)state;

  s = srv_world(&w, 90, 2 * UVQ_MILLISECONDS, 0, NULL);
  conn_budget = uvq_endpoint_get_settings(g_sep)->conn_send_budget;
  c = zero_credit_client(&w);
  memset(h, 0, sizeof(h));
  for (int i = 0; i < HOSTILE; i++) {
    uvq_conn *conn;
    assert_int_equal(qt_connect(&w, c, s, &hostile_cb, &h[i], &conn), 0);
    h[i].conn = conn;
  }
  g_peak = g_peak_buffered = 0;
  g_offered = 0;
  qt_run(&w, watch_step, NULL, 3 * UVQ_SECONDS);
  for (int i = 0; i < HOSTILE; i++) {
    assert_int_equal(h[i].established, 1);
    assert_int_equal(h[i].closed, 0);
  }
  uvq_endpoint_get_stats(g_sep, &es);
  print_message("zero credit: %d connections x %d streams; the server "
                "offered %.1f MB, held %.2f MB at most (%.2f MB per "
                "connection; budget %.1f MB)\n",
                HOSTILE, STREAMS, (double)g_offered / 1e6, (double)g_peak / 1e6,
                (double)g_peak / HOSTILE / 1e6, (double)conn_budget / 1e6);
  /* One lookahead per stream (plus chunk overhead), far below 8 MiB. */
  assert_true(g_peak_buffered <= STREAMS * (uint64_t)BLOCK);
  assert_true(g_peak / HOSTILE <= conn_budget);
  assert_true(g_peak / HOSTILE <= STREAMS * (uint64_t)(80u << 10));
  assert_true(g_offered > (uint64_t)HOSTILE * STREAMS * BLOCK);

  /* A well-behaved client on the same endpoint downloads in full while
   * they hold on. */
  c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &good_cb, &ok, &ok_conn), 0);
  assert_true(qt_run(&w, good_done, &ok, 30 * UVQ_SECONDS));
  assert_int_equal(ok.received, g_response);
  for (int i = 0; i < HOSTILE; i++) {
    assert_int_equal(h[i].closed, 0);
  }
  assert_true(g_peak / (HOSTILE + 1) <= conn_budget);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(es.pool_outstanding_bytes / HOSTILE <= conn_budget);
  qt_world_free(&w);
}

/* Plenty of credit but a slow link: 100 streams of 256 KiB would put
 * 25 MiB in the server's buffers; the connection's budget holds it to
 * 8 MiB (plus at most one write's overshoot), counts the pushbacks, and
 * every answer still arrives whole. */
static void test_budget_connection(void **state) {
  qt_world w;
  good ok = {.streams = STREAMS};
  uvq_conn *conn;
  uvq_endpoint_stats es;
  uint64_t budget;
  int s, c;
  (void)state;

  g_response = 256u << 10;
  s = srv_world(&w, 91, 5 * UVQ_MILLISECONDS, 50000000, NULL);
  budget = uvq_endpoint_get_settings(g_sep)->conn_send_budget;
  c = qt_add_client(&w, NULL, NULL);
  g_peak = g_peak_buffered = 0;
  assert_int_equal(qt_connect(&w, c, s, &good_cb, &ok, &conn), 0);
  assert_true(qt_run(&w, good_done, &ok, 60 * UVQ_SECONDS));
  assert_int_equal(ok.received, (uint64_t)STREAMS * g_response);
  uvq_endpoint_get_stats(g_sep, &es);
  print_message("budget: held %.2f MB of stream data (%.2f MB of pool "
                "buffers) at most (budget %.2f MB), %llu pushbacks\n",
                (double)g_peak_buffered / 1e6, (double)g_peak / 1e6,
                (double)budget / 1e6,
                (unsigned long long)es.send_budget_pushbacks);
  assert_true(es.send_budget_pushbacks > 0);
  /* What the budget counts: never more than it, to the byte (copied
   * writes never overshoot). */
  assert_true(g_peak_buffered <= budget);
  assert_true(g_peak_buffered > budget / 2);
  /* The budget counts stream bytes; the pool's buffers add chunk headers
   * and a partly filled last chunk per stream. */
  assert_true(g_peak <= budget + BLOCK + STREAMS * (uint64_t)(16u << 10));
  g_response = 32u << 20;
  qt_world_free(&w);
}

/* Four well-behaved clients over a slow link, 20 answers of 256 KiB each:
 * 20 MiB in the server's buffers without a limit; the endpoint's budget
 * (2 MiB, below any one connection's) holds them all to it to the byte,
 * counts the pushbacks apart from the connections', and every answer
 * still arrives (connections waiting on the endpoint are woken in turn). */
static void test_budget_endpoint_send(void **state) {
  enum { NCLI = 4 };
  static good ok[NCLI];
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uint64_t peak_ep = 0;
  uvq_tstamp t0;
  int s;
  (void)state;

  g_response = 256u << 10;
  uvq_settings_default(&ss);
  ss.endpoint_send_budget = 2u << 20;
  s = srv_world(&w, 92, 5 * UVQ_MILLISECONDS, 50000000, &ss);
  good_clients(&w, s, ok, NCLI, 20);
  t0 = w.now;
  for (int done = 0; !done;) {
    assert_true(w.now - t0 < 60 * UVQ_SECONDS);
    qt_run(&w, NULL, NULL, 10 * UVQ_MILLISECONDS);
    uvq_endpoint_get_stats(g_sep, &es);
    if (es.send_buffered_bytes > peak_ep) {
      peak_ep = es.send_buffered_bytes;
    }
    done = 1;
    for (int i = 0; i < NCLI; i++) {
      done &= ok[i].fins == ok[i].streams;
    }
  }
  for (int i = 0; i < NCLI; i++) {
    assert_int_equal(ok[i].received, 20 * g_response);
  }
  uvq_endpoint_get_stats(g_sep, &es);
  print_message("endpoint budget: %d connections held %.2f MB at most "
                "(endpoint budget %.2f MB), %llu endpoint pushbacks\n",
                NCLI, (double)peak_ep / 1e6,
                (double)ss.endpoint_send_budget / 1e6,
                (unsigned long long)es.endpoint_send_budget_pushbacks);
  assert_true(peak_ep <= ss.endpoint_send_budget);
  assert_true(peak_ep > ss.endpoint_send_budget / 2);
  assert_true(es.endpoint_send_budget_pushbacks > 0);
  /* The last answers' acknowledgements may still be on their way. */
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_int_equal(es.send_buffered_bytes, 0);
  assert_int_equal(g_sep->send_reserved, 0);
  g_response = 32u << 20;
  qt_world_free(&w);
}

/* A server application that holds what it receives (uvq_conn_recv_hold)
 * until told to let go. */
static uint64_t g_rx, g_rx_held;
static uvq_conn *g_rx_conn;

static int hold_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                     size_t len, int fin, void *ud, void *sud) {
  (void)sid;
  (void)data;
  (void)fin;
  (void)ud;
  (void)sud;
  g_rx_conn = conn;
  g_rx += len;
  g_rx_held += len;
  uvq_conn_recv_hold(conn, len);
  return 0;
}

static const uvq_app_callbacks hold_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = hold_data,
};

static int all_received(void *ud) { return g_rx == *(uint64_t *)ud; }

/* The receive budget: while the application holds a budget's worth, the
 * connection's reads pause (the peer gets no more credit and stalls at
 * what it was granted), nothing is dropped, and the upload completes once
 * the application lets go. */
static void test_budget_recv_pause(void **state) {
  static qt_app up;
  uint64_t total = 4u << 20, stalled;
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uvq_conn *conn;
  int s, c;
  (void)state;

  g_rx = g_rx_held = 0;
  g_rx_conn = NULL;
  qt_world_init(&w, 93);
  w.delay = 2 * UVQ_MILLISECONDS;
  uvq_settings_default(&ss);
  ss.conn_recv_budget = 256u << 10;
  s = qt_add_server(&w, &ss, cb_accept, (void *)(uintptr_t)&hold_cb);
  c = qt_add_client(&w, NULL, NULL);
  memset(&up, 0, sizeof(up));
  up.send_on_established = 1;
  up.to_send = total;
  up.seed = 7;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &up, &conn), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  stalled = g_rx;
  print_message("receive budget %.2f MB: %.2f MB of %.2f MB arrived while "
                "held, %llu pauses\n",
                (double)ss.conn_recv_budget / 1e6, (double)stalled / 1e6,
                (double)total / 1e6, (unsigned long long)es.recv_budget_pauses);
  /* Paused: no more than the budget plus what the peer had been granted
   * (the stream window, which grows no further). */
  assert_true(stalled < total);
  assert_true(
      stalled <=
      ss.conn_recv_budget +
          uvq_endpoint_get_settings(w.nodes[s].ep)->initial_max_stream_data);
  assert_true(es.recv_budget_pauses > 0);
  assert_int_equal(es.recv_held_bytes, g_rx_held);
  assert_false(up.closed);
  /* Let go: the credit owed goes back and the rest arrives. */
  uvq_conn_recv_release(g_rx_conn, (size_t)g_rx_held);
  g_rx_held = 0;
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  for (;;) {
    uint64_t before = g_rx;
    qt_run(&w, all_received, &total, 200 * UVQ_MILLISECONDS);
    if (g_rx == total) {
      break;
    }
    assert_true(g_rx > before); /* it moves again */
    uvq_conn_recv_release(g_rx_conn, (size_t)g_rx_held);
    g_rx_held = 0;
    uvq_endpoint_flush(w.nodes[s].ep, w.now);
  }
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(g_rx, total);
  qt_world_free(&w);
}

/* Memory pressure: a zero-credit client fills the endpoint's send budget
 * past 90 %; a new connection then closes the longest-idle one (the first
 * of three idle clients) and gets in; with eviction off it is refused,
 * counted by reason. */
static void test_budget_pressure_evicts_idle(void **state) {
  static qt_app idle[3], late, late2;
  static hostile hx;
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uvq_conn *conn;
  int s, c;
  (void)state;

  uvq_settings_default(&ss);
  ss.endpoint_send_budget = 4u << 20; /* 100 lookaheads are 6.5 MB */
  s = srv_world(&w, 94, 2 * UVQ_MILLISECONDS, 0, &ss);
  c = qt_add_client(&w, NULL, NULL);
  for (int i = 0; i < 3; i++) {
    memset(&idle[i], 0, sizeof(idle[i]));
    assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &idle[i], &conn),
                     0);
    qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
    assert_true(idle[i].established);
  }
  hostile_fill(&w, s, &hx);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(hx.established);
  assert_true(es.send_buffered_bytes >= ss.endpoint_send_budget / 10 * 9);
  assert_true(es.send_buffered_bytes <= ss.endpoint_send_budget);
  assert_int_equal(es.evicted_idle, 0);

  memset(&late, 0, sizeof(late));
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &late, &conn), 0);
  qt_run(&w, NULL, NULL, 500 * UVQ_MILLISECONDS);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_int_equal(es.evicted_idle, 1);
  assert_true(late.established);
  /* The longest idle went, with NO_ERROR and the reason. */
  assert_true(idle[0].closed);
  assert_int_equal(idle[0].ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(idle[0].ci.code, 0);
  assert_memory_equal(idle[0].ci_reason, "idle connection closed", 22);
  assert_false(idle[1].closed);
  assert_false(idle[2].closed);
  assert_false(hx.closed);

  /* Eviction off: refused, counted. */
  g_sep->settings.no_idle_eviction = 1;
  memset(&late2, 0, sizeof(late2));
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &late2, &conn), 0);
  qt_run(&w, NULL, NULL, 500 * UVQ_MILLISECONDS);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(late2.closed);
  assert_false(late2.established);
  assert_int_equal(es.evicted_idle, 1);
  assert_int_equal(es.refused_memory_pressure, 1);
  assert_false(idle[1].closed);
  qt_world_free(&w);
}

/* An endpoint budget under two lookaheads (32 KiB): a connection pushed
 * back by it is woken once the other's acknowledgements free half of it
 * (the small-budget rule the connection's budget has), not after a
 * lookahead's worth it can never free; both answers arrive whole. */
static void test_budget_endpoint_small(void **state) {
  enum { NCLI = 2 };
  static good ok[NCLI];
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uvq_tstamp t0;
  int s, done = 0;
  (void)state;

  g_response = 256u << 10;
  uvq_settings_default(&ss);
  ss.endpoint_send_budget = 32u << 10;
  s = srv_world(&w, 95, 2 * UVQ_MILLISECONDS, 0, &ss);
  good_clients(&w, s, ok, NCLI, 1);
  t0 = w.now;
  while (!done && w.now - t0 < 30 * UVQ_SECONDS) {
    qt_run(&w, NULL, NULL, 10 * UVQ_MILLISECONDS);
    uvq_endpoint_get_stats(g_sep, &es);
    assert_true(es.send_buffered_bytes <= ss.endpoint_send_budget);
    done = ok[0].fins == 1 && ok[1].fins == 1;
  }
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(es.endpoint_send_budget_pushbacks > 0);
  assert_int_equal(ok[0].received, g_response);
  assert_int_equal(ok[1].received, g_response);
  assert_int_equal(es.send_buffered_bytes, 0);
  g_response = 32u << 20;
  qt_world_free(&w);
}

static int send_waiters(const uvq_endpoint *ep) {
  int n = 0;
  for (const uvq_conn *c = ep->send_waiters; c; c = c->send_wait_next) {
    n++;
  }
  return n;
}

/* A zero-credit client fills the endpoint's send budget and two good ones
 * wait on the endpoint's list. One of them goes while it waits (its
 * connection leaves the list as it is freed); when the hostile connection
 * ends, its buffers go back (uvq_stream_table_free) and that alone wakes
 * the other waiter, which then gets its whole answer; every gauge is back
 * to 0 once the connections are gone. */
static void test_budget_endpoint_freed_by_close(void **state) {
  static hostile hx;
  static good ok = {.streams = 1}, gone;
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uvq_conn *conn, *gconn;
  int64_t sid;
  int s, c;
  (void)state;

  g_response = 256u << 10;
  uvq_settings_default(&ss);
  ss.endpoint_send_budget = 2u << 20; /* 32 of the 100 lookaheads */
  s = srv_world(&w, 96, 2 * UVQ_MILLISECONDS, 0, &ss);
  /* In before the pressure (it would refuse a new connection); asks
   * once the budget is spent. */
  c = qt_add_client(&w, NULL, NULL);
  memset(&ok, 0, sizeof(ok));
  memset(&gone, 0, sizeof(gone));
  assert_int_equal(qt_connect(&w, c, s, &good_cb, &ok, &conn), 0);
  assert_int_equal(qt_connect(&w, c, s, &good_cb, &gone, &gconn), 0);
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  hostile_fill(&w, s, &hx);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(hx.established);
  assert_int_equal(es.send_buffered_bytes, ss.endpoint_send_budget);

  ok.streams = gone.streams = 1;
  assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"q", 1, 1), 1);
  assert_int_equal(uvq_conn_open_stream(gconn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(gconn, sid, (const uint8_t *)"q", 1, 1), 1);
  uvq_endpoint_flush(w.nodes[c].ep, w.now);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(ok.fins + gone.fins, 0); /* waiting on the list */
  /* Both, and the hostile connection's streams pushed back too. */
  assert_int_equal(send_waiters(g_sep), 3);

  assert_int_equal(uvq_conn_close(gconn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 3 * UVQ_SECONDS);
  assert_true(gone.fins == 0 && ok.fins == 0);
  assert_int_equal(send_waiters(g_sep), 2);

  assert_int_equal(uvq_conn_close(hx.conn, 0, NULL), 0);
  assert_true(qt_run(&w, good_done, &ok, 30 * UVQ_SECONDS));
  assert_int_equal(ok.received, g_response);
  assert_true(hx.closed);
  assert_int_equal(uvq_conn_close(conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_null(g_sep->conns);
  assert_null(g_sep->send_waiters);
  assert_null(g_sep->idle_head);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_int_equal(es.send_buffered_bytes, 0);
  assert_int_equal(es.recv_held_bytes, 0);
  g_response = 32u << 20;
  qt_world_free(&w);
}

/* Two uploads into an application that holds every byte: together they
 * reach the endpoint's receive budget and both pause. When one connection
 * ends, its hold goes with it (uvq_budget_conn_gone), and that pays the
 * credit the other is owed: it moves again without any release of its
 * own. The gauge is 0 once both are gone. */
typedef struct held_side {
  uint64_t rx;
} held_side;

static int held_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                     size_t len, int fin, void *ud, void *sud) {
  (void)sid;
  (void)data;
  (void)fin;
  (void)sud;
  ((held_side *)ud)->rx += len;
  uvq_conn_recv_hold(conn, len);
  return 0;
}

static const uvq_app_callbacks held_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = held_data,
};

static held_side g_held[2];
static size_t g_nheld;

static int held_accept(uvq_endpoint *ep, uvq_conn *conn,
                       const uvq_accept_info *info,
                       const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)conn;
  (void)info;
  (void)ud;
  assert_true(g_nheld < 2);
  *pcb = &held_cb;
  *pud = &g_held[g_nheld++];
  return 0;
}

static void test_budget_recv_freed_by_close(void **state) {
  static qt_app up[2];
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uvq_endpoint *sep;
  uvq_conn *conns[2];
  uint64_t stalled;
  int s;
  (void)state;

  memset(g_held, 0, sizeof(g_held));
  g_nheld = 0;
  qt_world_init(&w, 97);
  w.delay = 2 * UVQ_MILLISECONDS;
  uvq_settings_default(&ss);
  /* Each connection may hold no more than half the endpoint's budget
   * and a window: one alone never pauses. */
  ss.conn_recv_budget = 0;
  ss.endpoint_recv_budget = 1u << 20;
  ss.initial_max_stream_data = 64u << 10;
  ss.max_stream_window = 64u << 10;
  s = qt_add_server(&w, &ss, held_accept, NULL);
  sep = w.nodes[s].ep;
  for (int i = 0; i < 2; i++) {
    int c = qt_add_client(&w, NULL, NULL);
    memset(&up[i], 0, sizeof(up[i]));
    up[i].send_on_established = 1;
    up[i].to_send = 16u << 20;
    up[i].seed = (uint32_t)(11 + i);
    assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &up[i], &conns[i]),
                     0);
  }
  qt_run(&w, NULL, NULL, 3 * UVQ_SECONDS);
  assert_int_equal(g_nheld, 2);
  uvq_endpoint_get_stats(sep, &es);
  assert_true(es.recv_held_bytes >= ss.endpoint_recv_budget);
  assert_true(g_held[0].rx < up[0].to_send && g_held[1].rx < up[1].to_send);
  stalled = g_held[1].rx;
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(g_held[1].rx, stalled); /* paused */

  /* The first server connection goes (its client closes): the second's
   * credit is paid. */
  assert_int_equal(uvq_conn_close(conns[0], 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_true(up[0].closed);
  assert_true(g_held[1].rx > stalled);
  assert_false(up[1].closed);

  assert_int_equal(uvq_conn_close(conns[1], 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_null(sep->conns);
  assert_null(sep->recv_waiters);
  uvq_endpoint_get_stats(sep, &es);
  assert_int_equal(es.recv_held_bytes, 0);
  qt_world_free(&w);
}

/* Fairness of the endpoint's list: a connection with 20 answers in flight
 * keeps the endpoint's send budget spent; one asking once it is spent
 * still moves while the other goes on (it is not starved until the other
 * has finished). */
static void test_budget_endpoint_fair(void **state) {
  static good big = {.streams = 20}, small;
  qt_world w;
  uvq_settings ss;
  uvq_conn *bconn, *sconn;
  int64_t sid;
  uvq_tstamp t0;
  int s, c;
  (void)state;

  g_response = 4u << 20;
  uvq_settings_default(&ss);
  ss.endpoint_send_budget = 2u << 20;
  s = srv_world(&w, 98, 5 * UVQ_MILLISECONDS, 50000000, &ss);
  c = qt_add_client(&w, NULL, NULL);
  memset(&small, 0, sizeof(small));
  assert_int_equal(qt_connect(&w, c, s, &good_cb, &small, &sconn), 0);
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  c = qt_add_client(&w, NULL, NULL);
  memset(&big, 0, sizeof(big));
  big.streams = 20;
  assert_int_equal(qt_connect(&w, c, s, &good_cb, &big, &bconn), 0);
  qt_run(&w, NULL, NULL, 500 * UVQ_MILLISECONDS);
  small.streams = 1;
  assert_int_equal(uvq_conn_open_stream(sconn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(sconn, sid, (const uint8_t *)"q", 1, 1), 1);
  t0 = w.now;
  while (small.fins == 0 && w.now - t0 < 60 * UVQ_SECONDS) {
    qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  }
  print_message("fairness: the late answer (%.1f MB) took %.1f s, while the "
                "other connection got %.1f of its %.1f MB\n",
                (double)g_response / 1e6, (double)(w.now - t0) / UVQ_SECONDS,
                (double)big.received / 1e6,
                (double)big.streams * (double)g_response / 1e6);
  assert_int_equal(small.received, g_response);
  /* Served in turn with the other, not after it. */
  assert_true(big.received < (uint64_t)big.streams * g_response / 2);
  assert_true(qt_run(&w, good_done, &big, 60 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(g_sep->send_reserved, 0);
  assert_null(g_sep->send_waiters);
  g_response = 32u << 20;
  qt_world_free(&w);
}

/* One connection: 97 streams the client grants no credit, each holding
 * its lookahead (the connection's budget is spent on them but for one
 * lookahead), and two it grants plenty. The first of those takes the rest
 * of the budget; the second is pushed back with nothing in flight. As
 * the first one's data is acknowledged, each release wakes as many
 * streams as the freed room serves: the zero-credit ones, waiting for
 * credit, not room, must not use those wakeups up (they did: the second
 * answer got 0 bytes, its stream waiting for good with 64 KiB free). */
#define STUCK 97
static int64_t g_rich[2];
static good g_rich_good;

static int rich_established(uvq_conn *conn, void *ud) {
  (void)ud;
  for (int i = 0; i < STUCK; i++) {
    int64_t sid;
    assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
    assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"q", 1, 1),
                     1);
  }
  for (int i = 0; i < 2; i++) {
    assert_int_equal(uvq_conn_open_stream(conn, 1, &g_rich[i], NULL), 0);
    assert_int_equal(
        uvq_stream_write(conn, g_rich[i], (const uint8_t *)"q", 1, 1), 1);
  }
  return 0;
}

static int rich_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                     size_t len, int fin, void *ud, void *sud) {
  (void)conn;
  (void)data;
  (void)ud;
  (void)sud;
  if (sid == g_rich[0] || sid == g_rich[1]) {
    g_rich_good.received += len;
    g_rich_good.fins += fin != 0;
  }
  return 0;
}

static const uvq_app_callbacks rich_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = rich_established,
    .on_stream_data = rich_data,
};

static void test_budget_wakeups_not_spent_on_credit(void **state) {
  qt_world w;
  uvq_settings ss;
  uvq_conn *conn;
  int s, c;
  (void)state;

  g_response = 128u << 10;
  uvq_settings_default(&ss);
  ss.conn_send_budget = (STUCK + 1) * (size_t)BLOCK;
  s = srv_world(&w, 99, 10 * UVQ_MILLISECONDS, 0, &ss);
  c = zero_credit_client(&w);
  memset(&g_rich_good, 0, sizeof(g_rich_good));
  g_rich_good.streams = 2;
  assert_int_equal(qt_connect(&w, c, s, &rich_cb, NULL, &conn), 0);
  qt_run(&w, NULL, NULL, 200 * UVQ_MILLISECONDS);
  /* Credit for the two, once every stream has asked (ngtcp2 is told
   * directly: uvq returns credit only as data is read). */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(ngtcp2_conn_extend_max_stream_offset(conn->ngconn,
                                                          g_rich[i], 64u << 20),
                     0);
  }
  uvq_ep_mark(conn->ep, conn);
  uvq_endpoint_flush(w.nodes[c].ep, w.now);
  qt_run(&w, good_done, &g_rich_good, 20 * UVQ_SECONDS);
  assert_int_equal(g_rich_good.received, 2 * g_response);
  assert_int_equal(g_rich_good.fins, 2);
  g_response = 32u << 20;
  qt_world_free(&w);
}

/* Drops the server's Retry packets (a v1 long header of type Retry): a
 * client that cannot answer one, as a spoofed source cannot. */
static int drop_retry(qt_world *w, int from, qt_pkt *p, void *ud) {
  (void)w;
  return from == *(int *)ud && p->len > 0 && (p->data[0] & 0xf0) == 0xf0;
}

/* Under memory pressure with retry auto, a new connection closes an idle
 * one only once its address is proven: Initials that never answer the
 * Retry (a spoofed source's) close nothing; answered, the longest-idle
 * connection goes as before. */
static void test_budget_pressure_evicts_validated(void **state) {
  static qt_app idle, late;
  static hostile hx;
  qt_world w;
  uvq_settings ss;
  uvq_endpoint_stats es;
  uvq_conn *conn;
  int s, c;
  (void)state;

  uvq_settings_default(&ss);
  ss.endpoint_send_budget = 4u << 20;
  ss.retry = UVQ_RETRY_AUTO;
  s = srv_world(&w, 100, 2 * UVQ_MILLISECONDS, 0, &ss);
  c = qt_add_client(&w, NULL, NULL);
  memset(&idle, 0, sizeof(idle));
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &idle, &conn), 0);
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_true(idle.established);
  hostile_fill(&w, s, &hx);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(es.send_buffered_bytes >= ss.endpoint_send_budget / 10 * 9);
  assert_int_equal(es.retries_sent, 0); /* none needed until now */

  w.filter = drop_retry;
  w.filter_ud = &s;
  memset(&late, 0, sizeof(late));
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &late, &conn), 0);
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(es.retries_sent > 0);
  assert_int_equal(es.evicted_idle, 0);
  assert_false(idle.closed);
  assert_false(late.established);

  w.filter = NULL;
  qt_run(&w, NULL, NULL, 3 * UVQ_SECONDS);
  uvq_endpoint_get_stats(g_sep, &es);
  assert_true(late.established);
  assert_int_equal(es.evicted_idle, 1);
  assert_true(idle.closed);
  assert_false(hx.closed);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_budget_zero_credit_clients),
      cmocka_unit_test(test_budget_connection),
      cmocka_unit_test(test_budget_endpoint_send),
      cmocka_unit_test(test_budget_recv_pause),
      cmocka_unit_test(test_budget_pressure_evicts_idle),
      cmocka_unit_test(test_budget_endpoint_small),
      cmocka_unit_test(test_budget_endpoint_freed_by_close),
      cmocka_unit_test(test_budget_recv_freed_by_close),
      cmocka_unit_test(test_budget_endpoint_fair),
      cmocka_unit_test(test_budget_wakeups_not_spent_on_credit),
      cmocka_unit_test(test_budget_pressure_evicts_validated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
