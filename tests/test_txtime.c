/*
 * Transmit-time pacing in the core (settings.txtime): with it a connection
 * writes its paced bursts ahead of time, each stamped with the release
 * time ngtcp2's pacer gives it. In-process, on the in-memory wire, which
 * either holds stamped batches until their txtime (as the fq qdisc does)
 * or sends them at once (as loopback's noqueue does).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "qtest.h"
#include "qtest_app.h"

/* What the server answers with, and the burst limit its settings set (so a
 * merged pair of bursts would show). */
#define DOWN_BYTES (4u << 20)
#define BURST_LIMIT 16

/* ---- a download: the client asks, the server writes it all at once ---- */

/* The client is a plain qt_app (qtest_app.h); the server answers below. */
static qt_app g_cli, g_srv;
static uint8_t *g_body;

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  if (ud == &g_srv) {
    if (fin) {
      /* The whole body in one write (the stream's send buffer holds it),
       * so no on_stream_writable writes the connection a second time in
       * a flush: each server flush is one write_paced pass. */
      assert_int_equal(uvq_stream_write(conn, sid, g_body, DOWN_BYTES, 1),
                       (ssize_t)DOWN_BYTES);
    }
    return 0;
  }
  return qt_app_on_stream_data(conn, sid, data, len, fin, ud, sud);
}

static const uvq_app_callbacks app_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = qt_app_on_established,
    .on_stream_data = on_stream_data,
    .on_closed = qt_app_on_closed,
};

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  qt_app_accept(ep, conn, info, pcb, pud, ud);
  *pcb = &app_cb;
  return 0;
}

/* ---- what the server's send callback saw ------------------------------ */

typedef struct rec {
  uint64_t flush; /* qt_world.flushes when it was sent */
  uvq_tstamp now;
  uvq_tstamp txtime;
  size_t datalen, count;
  /* The connection's pacing inputs at that moment (ngtcp2_conn_stat). */
  uint64_t cwnd, srtt;
  double pacing_rate;
} rec;

typedef struct recorder {
  int server; /* node index of the server */
  rec *r;
  size_t n, cap;
  uint64_t client_stamped; /* client batches with a txtime */
  uint64_t client_batches;
} recorder;

static void on_batch(qt_world *w, int from, const uvq_send_batch *b, void *ud) {
  recorder *rc = ud;
  rec *r;
  ngtcp2_conn_stat cs;

  if (from != rc->server) {
    rc->client_batches++;
    rc->client_stamped += b->txtime != 0;
    return;
  }
  if (rc->n == rc->cap) {
    rc->cap = rc->cap ? rc->cap * 2 : 4096;
    rc->r = realloc(rc->r, rc->cap * sizeof(*rc->r));
    assert_non_null(rc->r);
  }
  r = &rc->r[rc->n++];
  memset(r, 0, sizeof(*r));
  r->flush = w->flushes;
  r->now = w->now;
  r->txtime = b->txtime;
  r->datalen = b->datalen;
  r->count = b->count;
  if (g_srv.conn != NULL) {
    /* A test may look inside: the rate ngtcp2 paces at right now. */
    ngtcp2_conn_get_conn_stat(g_srv.conn->q, &cs);
    r->cwnd = cs.cwnd;
    r->srtt = cs.smoothed_rtt;
    r->pacing_rate = cs.pacing_rate;
  }
}

/* The gap ngtcp2 0.12 puts after |bytes| at the rate in |r| — the same
 * arithmetic as ngtcp2_conn_update_pkt_tx_time. */
static uvq_tstamp expected_gap(const rec *r, size_t bytes) {
  double rate = r->pacing_rate > 0 ? r->pacing_rate
                                   : (double)r->cwnd / (double)r->srtt * 1.25;
  return (uvq_tstamp)((double)bytes / rate);
}

/* ---- one download ------------------------------------------------------ */

typedef struct run_opts {
  int txtime;         /* settings.txtime on both endpoints */
  uvq_tstamp horizon; /* settings.txtime_horizon (0: default) */
  int honour;         /* the wire holds stamped batches (fq) */
  double drop_pct;
  uint64_t seed;
} run_opts;

typedef struct run_result {
  uint64_t stamped;       /* server batches with a txtime */
  uint64_t batches;       /* all server batches */
  uint64_t write_flushes; /* server flushes that sent something */
  uvq_tstamp duration;    /* fake time from connect to the last byte */
  uvq_tstamp max_lead;    /* largest txtime - now */
  uint64_t dropped;       /* datagrams the wire dropped */
} run_result;

static void run_download(const run_opts *o, recorder *rc, run_result *res) {
  qt_world w;
  uvq_settings ss, cs;
  uvq_tstamp start;
  uint64_t last_flush = UINT64_MAX;

  memset(&g_cli, 0, sizeof(g_cli));
  g_cli.send_on_established = 1;
  g_cli.to_send = 3; /* the request */
  memset(&g_srv, 0, sizeof(g_srv));
  memset(rc, 0, sizeof(*rc));
  memset(res, 0, sizeof(*res));
  qt_world_init(&w, o->seed);
  w.delay = 5 * UVQ_MILLISECONDS;
  w.drop_pct = o->drop_pct;
  w.honour_txtime = o->honour;
  w.on_batch = on_batch;
  w.on_batch_ud = rc;

  uvq_settings_default(&ss);
  ss.stream_send_buffer = 2 * DOWN_BYTES;
  ss.max_burst_datagrams = BURST_LIMIT;
  ss.txtime = o->txtime;
  ss.txtime_horizon = o->horizon;
  uvq_settings_default(&cs);
  cs.txtime = o->txtime;
  rc->server = qt_add_server(&w, &ss, on_accept, &g_srv);
  int c = qt_add_client(&w, &cs, NULL);
  assert_true(rc->server >= 0 && c >= 0);
  start = w.now;
  assert_int_equal(qt_connect(&w, c, rc->server, &app_cb, &g_cli, &g_cli.conn),
                   0);
  assert_true(qt_run(&w, qt_app_got_fin, &g_cli, 120 * UVQ_SECONDS));
  res->duration = w.now - start;

  /* Byte-identical. */
  qt_app_assert_received(&g_cli, 33, DOWN_BYTES);

  assert_int_equal(uvq_conn_close(g_cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 30 * UVQ_SECONDS);
  assert_true(g_cli.closed && g_srv.closed);
  res->dropped = w.dropped;
  qt_world_free(&w);

  for (size_t i = 0; i < rc->n; i++) {
    const rec *r = &rc->r[i];
    res->batches++;
    if (r->txtime) {
      res->stamped++;
      if (r->txtime - r->now > res->max_lead) {
        res->max_lead = r->txtime - r->now;
      }
    }
    if (r->flush != last_flush) {
      res->write_flushes++;
      last_flush = r->flush;
    }
  }
}

static void setup_body(void) {
  if (g_body == NULL) {
    g_body = malloc(DOWN_BYTES);
    assert_non_null(g_body);
    qt_pattern_fill(33, 0, g_body, DOWN_BYTES);
  }
}

/* Checks the stamps the server's batches carried: release times only move
 * forward; within a flush (one write pass) consecutive bursts are exactly
 * the pacing gap of the previous burst's bytes apart; a pass's first burst
 * is at most ngtcp2's 1 ms ahead and the bursts written after it at most
 * |horizon|; and no release time covers more datagrams than one burst. */
static void check_stamps(const recorder *rc, uvq_tstamp horizon) {
  uvq_tstamp last = 0;
  size_t i = 0, bursts = 0, chained = 0;

  while (i < rc->n) {
    const rec *r = &rc->r[i];
    size_t j, bytes = 0, dgrams = 0;
    if (r->txtime == 0) {
      i++;
      continue;
    }
    /* One burst: the consecutive batches of one flush with this txtime
     * (ACK-only datagrams, txtime 0, may sit between them). */
    for (j = i; j < rc->n && rc->r[j].flush == r->flush; j++) {
      if (rc->r[j].txtime == r->txtime) {
        bytes += rc->r[j].datalen;
        dgrams += rc->r[j].count;
      } else if (rc->r[j].txtime != 0) {
        break;
      }
    }
    bursts++;
    assert_true(r->txtime > r->now);
    assert_true(r->txtime >= last);
    assert_true(dgrams <= BURST_LIMIT);
    last = r->txtime;
    /* The next stamped burst of the same flush. */
    if (j < rc->n && rc->r[j].flush == r->flush && rc->r[j].txtime != 0) {
      uvq_tstamp gap = rc->r[j].txtime - r->txtime;
      uvq_tstamp want = expected_gap(r, bytes);
      assert_true(rc->r[j].txtime > r->txtime);
      /* ngtcp2's arithmetic, give or take a nanosecond of rounding. */
      if (gap + 1 < want || gap > want + 1) {
        fail_msg("gap %llu ns after a burst of %zu bytes, ngtcp2 paces "
                 "%llu ns (cwnd %llu, srtt %llu)",
                 (unsigned long long)gap, bytes, (unsigned long long)want,
                 (unsigned long long)r->cwnd, (unsigned long long)r->srtt);
      }
      assert_true(rc->r[j].txtime - rc->r[j].now <= horizon);
      chained++;
    } else {
      assert_true(r->txtime - r->now <= UVQ_MILLISECONDS);
    }
    i = j;
  }
  print_message("# %zu stamped bursts, %zu of them written after another in "
                "the same pass\n",
                bursts, chained);
  assert_true(chained > 0);
}

/* ---- tests ------------------------------------------------------------- */

static void test_txtime_download_paced(void **state) {
  run_opts on = {.txtime = 1, .honour = 1, .seed = 7};
  run_opts off = {.txtime = 0, .honour = 1, .seed = 7};
  run_result ron, roff;
  recorder rc;
  uint64_t cli_stamped, cli_batches;
  (void)state;

  setup_body();
  run_download(&on, &rc, &ron);
  check_stamps(&rc, UVQ_MILLISECONDS);
  assert_true(ron.max_lead <= UVQ_MILLISECONDS);
  /* The client mostly acknowledges, and ACK-only datagrams are never
   * held back: only its few ack-eliciting ones (flow-control updates) may
   * carry a release time. */
  assert_true(rc.client_stamped * 10 < rc.client_batches);
  cli_stamped = rc.client_stamped;
  cli_batches = rc.client_batches;
  free(rc.r);

  run_download(&off, &rc, &roff);
  assert_int_equal(roff.stamped, 0);
  free(rc.r);

  print_message(
      "# txtime on: %llu batches (%llu stamped; client %llu of "
      "%llu) in %llu flushes, %.1f ms; off: %llu batches in %llu "
      "flushes, %.1f ms\n",
      (unsigned long long)ron.batches, (unsigned long long)ron.stamped,
      (unsigned long long)cli_stamped, (unsigned long long)cli_batches,
      (unsigned long long)ron.write_flushes, (double)ron.duration / 1e6,
      (unsigned long long)roff.batches, (unsigned long long)roff.write_flushes,
      (double)roff.duration / 1e6);
  /* Writing ahead is the point: fewer wake-ups to send the same (the
   * rest are ACK arrivals, which open the window in slow start). */
  assert_true(ron.write_flushes * 3 < roff.write_flushes * 2);
  /* ... at the same pace: the transfer takes as long (within 10 %). */
  assert_true(ron.duration * 10 < roff.duration * 11);
  assert_true(roff.duration * 10 < ron.duration * 11);
}

static void test_txtime_horizon(void **state) {
  run_opts o = {
      .txtime = 1, .horizon = 200 * UVQ_MICROSECONDS, .honour = 1, .seed = 8};
  run_result r;
  recorder rc;
  (void)state;

  setup_body();
  run_download(&o, &rc, &r);
  check_stamps(&rc, 200 * UVQ_MICROSECONDS);
  free(rc.r);
}

static void test_txtime_wire_ignores_lossy(void **state) {
  /* Loopback-like: stamps are ignored and bursts leave at once, with 2 %
   * loss on top. Still byte-identical. */
  run_opts o = {.txtime = 1, .honour = 0, .drop_pct = 2, .seed = 9};
  run_result r;
  recorder rc;
  (void)state;

  setup_body();
  run_download(&o, &rc, &r);
  assert_true(r.stamped > 0);
  assert_true(r.dropped > 0);
  free(rc.r);
}

static void test_txtime_off_never_stamps(void **state) {
  run_opts o = {.txtime = 0, .honour = 1, .drop_pct = 1, .seed = 10};
  run_result r;
  recorder rc;
  (void)state;

  setup_body();
  run_download(&o, &rc, &r);
  assert_int_equal(r.stamped, 0);
  assert_int_equal(rc.client_stamped, 0);
  assert_true(r.batches > 0);
  free(rc.r);
}

static void test_txtime_settings_default(void **state) {
  uvq_settings s;
  (void)state;
  uvq_settings_default(&s);
  assert_int_equal(s.txtime, 0);
  assert_int_equal(s.txtime_horizon, UVQ_MILLISECONDS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_txtime_settings_default),
      cmocka_unit_test(test_txtime_download_paced),
      cmocka_unit_test(test_txtime_horizon),
      cmocka_unit_test(test_txtime_wire_ignores_lossy),
      cmocka_unit_test(test_txtime_off_never_stamps),
  };
  int rv = cmocka_run_group_tests(tests, NULL, NULL);
  free(g_body);
  return rv;
}
