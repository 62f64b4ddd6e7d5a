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

#include "core/core.h"
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

static int srv_accept(uvq_endpoint *ep, uvq_conn *conn,
                      const uvq_accept_info *info,
                      const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)conn;
  (void)info;
  (void)ud;
  *pcb = &srv_cb;
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
  uvq_settings zero;
  uvq_endpoint_stats es;
  uint64_t conn_budget;
  int s, c;
  (void)state;

  g_nstreams = 0;
  qt_world_init(&w, 90);
  w.delay = 2 * UVQ_MILLISECONDS;
  s = qt_add_server(&w, NULL, srv_accept, NULL);
  g_sep = w.nodes[s].ep;
  conn_budget = uvq_endpoint_get_settings(g_sep)->conn_send_budget;
  uvq_settings_default(&zero);
  zero.initial_max_stream_data = 0; /* no credit on any stream, ever */
  zero.max_stream_window = 0;
  c = qt_add_client(&w, &zero, NULL);
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

  g_nstreams = 0;
  qt_world_init(&w, 91);
  w.delay = 5 * UVQ_MILLISECONDS;
  w.rate_bps = 50000000;
  g_response = 256u << 10;
  s = qt_add_server(&w, NULL, srv_accept, NULL);
  g_sep = w.nodes[s].ep;
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_budget_zero_credit_clients),
      cmocka_unit_test(test_budget_connection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
