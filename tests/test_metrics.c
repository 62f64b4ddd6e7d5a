/*
 * Observability tests over the in-process harness: the bandwidth
 * estimator against a rate-limited wire, inferred loss on a lossy one,
 * live connection stats, handshake failures by reason, the handshake-time
 * histogram, the Prometheus text and the log callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bandwidth.h"
#include "qtest.h"
#include "qtest_app.h"

/* ---- a test application (qtest_app.h): the client sends |to_send| bytes - */

#define MAX_SERVER_SIDES 8
static qt_app g_srv[MAX_SERVER_SIDES];
static qt_app_pool g_pool; /* the server node's user_data */

static void on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  uvq_conn_stats st;
  /* Stats stay readable until on_closed returns. */
  assert_int_equal(uvq_conn_get_stats(conn, &st), 0);
  qt_app_on_closed(conn, ci, ud);
}

static const uvq_app_callbacks app_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = qt_app_on_established,
    .on_stream_data = qt_app_on_stream_data,
    .on_stream_writable = qt_app_on_stream_writable,
    .on_closed = on_closed,
};

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  int rv = qt_app_pool_accept(ep, conn, info, pcb, pud, ud);
  if (rv == 0) {
    *pcb = &app_cb;
  }
  return rv;
}

static void reset_globals(void) {
  memset(g_srv, 0, sizeof(g_srv));
  memset(&g_pool, 0, sizeof(g_pool));
  g_pool.sides = g_srv;
  g_pool.nsides = MAX_SERVER_SIDES;
}

/* A client that opens a stream and sends |len| bytes once established. */
static void client_sends(qt_app *cli, uint64_t len) {
  cli->send_on_established = 1;
  cli->to_send = len;
}

static int server_fin(void *ud) {
  (void)ud;
  return g_pool.accepted > 0 && g_srv[0].fin;
}

/* ---- the estimator on its own ----------------------------------------- */

static void test_metrics_bw_rounds(void **state) {
  uvq_bw bw;
  uvq_bw_sample s = {0};
  uvq_tstamp t = 1000 * UVQ_SECONDS;
  (void)state;

  uvq_bw_init(&bw, 3, t);
  assert_int_equal(uvq_bw_max(&bw), 0);
  assert_false(
      uvq_bw_round_due(&bw, t + 5 * UVQ_MILLISECONDS, 10 * UVQ_MILLISECONDS));
  /* Round 1, 10 ms: 20 kB sent, 10 kB acked -> 1 MB/s (the ack rate). */
  s.sent = 20000;
  s.acked = 10000;
  s.dgrams = 20;
  s.lost = 1;
  t += 10 * UVQ_MILLISECONDS;
  assert_true(uvq_bw_round_due(&bw, t, 10 * UVQ_MILLISECONDS));
  uvq_bw_end_round(&bw, t, &s);
  assert_int_equal(uvq_bw_max(&bw), 1000000);
  /* Round 2, 10 ms: 30 kB acked but only 20 kB sent -> 2 MB/s. */
  s.sent += 20000;
  s.acked += 30000;
  s.dgrams += 30;
  t += 10 * UVQ_MILLISECONDS;
  uvq_bw_end_round(&bw, t, &s);
  assert_int_equal(uvq_bw_max(&bw), 2000000);
  assert_true(uvq_bw_loss(&bw) > 0.019 && uvq_bw_loss(&bw) < 0.021);
  /* Three idle rounds push both out of the three-round window. */
  for (int i = 0; i < 3; i++) {
    t += 10 * UVQ_MILLISECONDS;
    uvq_bw_end_round(&bw, t, &s);
  }
  assert_int_equal(uvq_bw_max(&bw), 0);
  assert_true(uvq_bw_loss(&bw) == 0.0);
  assert_int_equal(bw.nrounds, 5);
  /* A tiny RTT still makes 1 ms rounds. */
  assert_false(uvq_bw_round_due(&bw, t + UVQ_MILLISECONDS / 2, 1000));
  assert_true(uvq_bw_round_due(&bw, t + UVQ_MILLISECONDS, 1000));
}

/* ---- bandwidth against a rate-limited wire ---------------------------- */

#define RATE_BPS (10u * 1000 * 1000) /* 10 Mbit/s = 1.25 MB/s */

static void transfer_world(qt_world *w, int *ps, int *pc,
                           const uvq_settings *ss, const uvq_settings *cs) {
  reset_globals();
  qt_world_init(w, 42);
  *ps = qt_add_server(w, ss, on_accept, &g_pool);
  *pc = qt_add_client(w, cs, NULL);
  assert_true(*ps >= 0 && *pc >= 0);
}

static void test_metrics_bandwidth_estimate(void **state) {
  qt_world w;
  int s, c;
  qt_app cli = {0};
  uvq_conn *conn;
  uvq_conn_stats st;
  double ratio;
  (void)state;

  transfer_world(&w, &s, &c, NULL, NULL);
  w.rate_bps = RATE_BPS;
  w.rate_queue_max = 40 * UVQ_MILLISECONDS;
  w.delay = 10 * UVQ_MILLISECONDS;
  client_sends(&cli, 4u << 20);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &conn), 0);
  assert_true(qt_run(&w, server_fin, NULL, 120 * UVQ_SECONDS));
  assert_int_equal(g_srv[0].received, cli.to_send);

  assert_int_equal(uvq_conn_get_stats(conn, &st), 0);
  ratio = (double)st.max_bandwidth / (RATE_BPS / 8.0);
  print_message("max_bandwidth %llu B/s (%.2f of the link), %llu rounds, "
                "srtt %.1f ms, lost %llu, rate drops %llu\n",
                (unsigned long long)st.max_bandwidth, ratio,
                (unsigned long long)st.bw_rounds, (double)st.smoothed_rtt / 1e6,
                (unsigned long long)st.stream_packets_lost,
                (unsigned long long)w.rate_dropped);
  assert_true(ratio > 0.7 && ratio < 1.3);
  assert_true(st.bw_rounds >= 10);
  qt_world_free(&w);
}

/* ---- inferred loss on a lossy wire ------------------------------------ */

static void test_metrics_loss_inferred(void **state) {
  qt_world w;
  int s, c;
  qt_app cli = {0};
  uvq_conn *conn;
  uvq_conn_stats st;
  double frac;
  (void)state;

  transfer_world(&w, &s, &c, NULL, NULL);
  w.rate_bps = RATE_BPS;
  w.delay = 10 * UVQ_MILLISECONDS;
  w.drop_pct = 5;
  client_sends(&cli, 2u << 20);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &conn), 0);
  assert_true(qt_run(&w, server_fin, NULL, 300 * UVQ_SECONDS));
  assert_int_equal(g_srv[0].received, cli.to_send);

  assert_int_equal(uvq_conn_get_stats(conn, &st), 0);
  frac = (double)st.stream_packets_lost / (double)st.datagrams_sent;
  print_message("lost %llu of %llu datagrams (%.2f%%), window loss %.2f%%, "
                "wire dropped %llu\n",
                (unsigned long long)st.stream_packets_lost,
                (unsigned long long)st.datagrams_sent, frac * 100,
                st.loss * 100, (unsigned long long)w.dropped);
  assert_true(st.stream_packets_lost > 0);
  /* 5% of the client's datagrams are dropped; almost all carry stream
   * data, and spurious losses may add a few. */
  assert_true(frac > 0.02 && frac < 0.12);
  assert_true(st.loss >= 0.0 && st.loss < 0.5);
  /* Retransmissions make the wire carry more than the stream did. */
  assert_true(st.bytes_sent > st.stream_bytes_acked);
  qt_world_free(&w);
}

/* ---- live stats mid-transfer ------------------------------------------ */

static int server_got_1mib(void *ud) {
  (void)ud;
  return g_pool.accepted > 0 && g_srv[0].received >= (1u << 20);
}

static void test_metrics_live_stats(void **state) {
  qt_world w;
  int s, c;
  qt_app cli = {0};
  uvq_conn *conn;
  uvq_conn_stats mid, end, srv;
  (void)state;

  transfer_world(&w, &s, &c, NULL, NULL);
  w.rate_bps = RATE_BPS;
  w.rate_queue_max = 40 * UVQ_MILLISECONDS;
  w.delay = 5 * UVQ_MILLISECONDS;
  client_sends(&cli, 3u << 20);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &conn), 0);

  /* Before the handshake: counters only. */
  assert_int_equal(uvq_conn_get_stats(conn, &mid), 0);
  assert_int_equal(mid.handshake_duration, 0);
  assert_int_equal(uvq_conn_get_stats(NULL, &mid), UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_conn_get_stats(conn, NULL), UVQ_ERR_INVALID_ARGUMENT);

  assert_true(qt_run(&w, server_got_1mib, NULL, 60 * UVQ_SECONDS));
  assert_false(g_srv[0].fin);
  assert_int_equal(uvq_conn_get_stats(conn, &mid), 0);
  assert_true(mid.handshake_duration >= 10 * UVQ_MILLISECONDS); /* 1 RTT */
  assert_true(mid.smoothed_rtt >= 10 * UVQ_MILLISECONDS);
  assert_true(mid.min_rtt > 0 && mid.min_rtt <= mid.smoothed_rtt + mid.rttvar);
  assert_true(mid.latest_rtt > 0);
  assert_true(mid.cwnd > 0);
  assert_true(mid.datagrams_sent > 0 && mid.bytes_sent > mid.datagrams_sent);
  assert_true(mid.datagrams_received > 0 && mid.bytes_received > 0);
  assert_true(mid.stream_bytes_sent >= (1u << 20));
  assert_true(mid.stream_bytes_acked > 0);
  assert_true(mid.stream_bytes_acked <= mid.stream_bytes_sent);
  assert_true(mid.stream_bytes_sent < cli.to_send);
  assert_true(mid.max_bandwidth > 0);
  assert_true(mid.bw_rounds > 0);

  assert_true(qt_run(&w, server_fin, NULL, 60 * UVQ_SECONDS));
  (void)qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(uvq_conn_get_stats(conn, &end), 0);
  assert_true(end.bytes_sent > mid.bytes_sent);
  assert_true(end.datagrams_sent > mid.datagrams_sent);
  assert_true(end.datagrams_received > mid.datagrams_received);
  assert_true(end.bw_rounds > mid.bw_rounds);
  assert_int_equal(end.stream_bytes_sent, cli.to_send);
  assert_int_equal(end.stream_bytes_acked, cli.to_send);
  assert_int_equal(end.handshake_duration, mid.handshake_duration);
  /* The server counted what it received. */
  assert_int_equal(uvq_conn_get_stats(g_srv[0].conn, &srv), 0);
  assert_int_equal(srv.stream_bytes_received, cli.to_send);
  assert_true(srv.bytes_received >= cli.to_send);
  assert_true(srv.handshake_duration > 0);
  qt_world_free(&w);
}

/* ---- handshake failures by reason ------------------------------------- */

static int drop_all(qt_world *w, int from, qt_pkt *p, void *ud) {
  (void)w;
  (void)from;
  (void)p;
  (void)ud;
  return 1;
}

static void test_metrics_handshake_failures(void **state) {
  qt_world w;
  int s, c;
  qt_app cli = {0};
  uvq_endpoint_stats ss, cs;
  uvq_settings set;
  uvq_tls_ctx *other_tls, *saved;
  uvq_tls_config tcfg;
  static const char *const nope[] = {"nope"};
  (void)state;

  /* A timeout: nothing gets through. */
  uvq_settings_default(&set);
  set.handshake_timeout = 2 * UVQ_SECONDS;
  transfer_world(&w, &s, &c, NULL, &set);
  w.filter = drop_all;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, NULL), 0);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 30 * UVQ_SECONDS));
  assert_int_equal(cli.ci.error, UVQ_ERR_HANDSHAKE_TIMEOUT);
  uvq_endpoint_get_stats(w.nodes[c].ep, &cs);
  assert_int_equal(cs.handshake_failures[UVQ_HS_FAIL_TIMEOUT], 1);
  assert_int_equal(cs.handshakes_completed, 0);
  qt_world_free(&w);

  /* A refusal, seen from both sides. */
  memset(&cli, 0, sizeof(cli));
  transfer_world(&w, &s, &c, NULL, NULL);
  g_pool.refuse = 1;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, NULL), 0);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 30 * UVQ_SECONDS));
  (void)qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(cli.ci.error, UVQ_ERR_PEER_REFUSED);
  uvq_endpoint_get_stats(w.nodes[c].ep, &cs);
  uvq_endpoint_get_stats(w.nodes[s].ep, &ss);
  assert_int_equal(cs.handshake_failures[UVQ_HS_FAIL_REFUSED], 1);
  assert_int_equal(ss.handshake_failures[UVQ_HS_FAIL_REFUSED], 1);
  assert_int_equal(ss.handshake_failures[UVQ_HS_FAIL_TIMEOUT], 0);
  qt_world_free(&w);

  /* A TLS alert: the client offers an ALPN the server does not speak. */
  memset(&cli, 0, sizeof(cli));
  reset_globals();
  qt_world_init(&w, 7);
  uvq_tls_config_default(&tcfg);
  tcfg.alpn = nope;
  tcfg.alpnlen = 1;
  tcfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&other_tls, 0, &tcfg, NULL, NULL, 0), 0);
  saved = w.client_tls;
  w.client_tls = other_tls;
  s = qt_add_server(&w, NULL, on_accept, &g_pool);
  c = qt_add_client(&w, NULL, NULL);
  w.client_tls = saved;
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, NULL), 0);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 30 * UVQ_SECONDS));
  (void)qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  print_message("ALPN mismatch: client error %s alert %u\n",
                uvq_strerror(cli.ci.error), cli.ci.tls_alert);
  uvq_endpoint_get_stats(w.nodes[c].ep, &cs);
  uvq_endpoint_get_stats(w.nodes[s].ep, &ss);
  assert_int_equal(cs.handshake_failures[UVQ_HS_FAIL_TLS_ALERT], 1);
  assert_int_equal(ss.handshake_failures[UVQ_HS_FAIL_TLS_ALERT], 1);
  assert_int_equal(cs.handshake_failures[UVQ_HS_FAIL_OTHER], 0);
  assert_int_equal(ss.handshake_failures[UVQ_HS_FAIL_OTHER], 0);
  qt_world_free(&w);
  uvq_tls_ctx_del(other_tls);

  assert_string_equal(uvq_handshake_failure_name(UVQ_HS_FAIL_TLS_ALERT),
                      "tls_alert");
  assert_string_equal(
      uvq_handshake_failure_name(UVQ_HS_FAIL_VERSION_NEGOTIATION),
      "version_negotiation");
}

/* ---- histogram and Prometheus ----------------------------------------- */

#define NCLIENTS 3

static int all_established(void *ud) {
  qt_app *cl = ud;
  if (g_pool.accepted != NCLIENTS) {
    return 0;
  }
  for (int i = 0; i < NCLIENTS; i++) {
    if (!cl[i].established || !g_srv[i].established) {
      return 0;
    }
  }
  return 1;
}

/* Every sample line is `name{labels} value`; comments are HELP or TYPE. */
static void check_exposition(const char *text) {
  regex_t sample, comment;
  const char *line = text;
  int samples = 0;
  assert_int_equal(
      regcomp(&sample,
              "^[a-zA-Z_:][a-zA-Z0-9_:]*"
              "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
              "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})?"
              " [-+]?([0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|NaN)$",
              REG_EXTENDED | REG_NOSUB),
      0);
  assert_int_equal(regcomp(&comment,
                           "^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE "
                           "[a-zA-Z_:][a-zA-Z0-9_:]* "
                           "(counter|gauge|histogram|summary|untyped))$",
                           REG_EXTENDED | REG_NOSUB),
                   0);
  while (*line) {
    const char *nl = strchr(line, '\n');
    char buf[512];
    size_t n;
    assert_non_null(nl); /* every line ends with a newline */
    n = (size_t)(nl - line);
    assert_true(n < sizeof(buf));
    memcpy(buf, line, n);
    buf[n] = '\0';
    if (buf[0] == '#') {
      if (regexec(&comment, buf, 0, NULL, 0) != 0) {
        fail_msg("bad comment line: %s", buf);
      }
    } else {
      if (regexec(&sample, buf, 0, NULL, 0) != 0) {
        fail_msg("bad sample line: %s", buf);
      }
      samples++;
    }
    line = nl + 1;
  }
  assert_true(samples > 20);
  regfree(&sample);
  regfree(&comment);
}

static void expect_line(const char *text, const char *want) {
  char pat[256];
  snprintf(pat, sizeof(pat), "\n%s\n", want);
  if (strstr(text, pat) == NULL) {
    fail_msg("missing line: %s", want);
  }
}

static void test_metrics_histogram_prometheus(void **state) {
  qt_world w;
  int s, c;
  qt_app cl[NCLIENTS];
  uvq_endpoint_stats ss, cs;
  uint64_t total = 0;
  static char text[16384];
  char want[128];
  ssize_t n, m;
  uint8_t junk[40];
  (void)state;

  memset(cl, 0, sizeof(cl));
  transfer_world(&w, &s, &c, NULL, NULL);
  w.delay = 2 * UVQ_MILLISECONDS;
  for (int i = 0; i < NCLIENTS; i++) {
    assert_int_equal(qt_connect(&w, c, s, &app_cb, &cl[i], NULL), 0);
  }
  assert_true(qt_run(&w, all_established, cl, 30 * UVQ_SECONDS));
  /* Some garbage for the drop counters. */
  memset(junk, 0, sizeof(junk));
  for (int i = 0; i < 5; i++) {
    qt_inject(&w, s, &w.nodes[c].addr, junk, 3);
  }
  uvq_endpoint_add_gso_fallbacks(w.nodes[s].ep, 2);

  uvq_endpoint_get_stats(w.nodes[s].ep, &ss);
  uvq_endpoint_get_stats(w.nodes[c].ep, &cs);
  assert_int_equal(ss.handshakes_completed, NCLIENTS);
  assert_int_equal(cs.handshakes_completed, NCLIENTS);
  for (int i = 0; i < UVQ_HANDSHAKE_TIME_BUCKETS; i++) {
    total += ss.handshake_time[i];
  }
  assert_int_equal(total, ss.handshakes_completed);
  assert_true(ss.handshake_time_sum > 0);
  /* One RTT (4 ms) plus processing: in the 5 ms or 10 ms bucket. */
  assert_int_equal(cs.handshake_time[3] + cs.handshake_time[4], NCLIENTS);
  assert_int_equal(uvq_handshake_time_bucket_le(0), 500 * UVQ_MICROSECONDS);
  assert_int_equal(uvq_handshake_time_bucket_le(13), 10 * UVQ_SECONDS);
  assert_true(uvq_handshake_time_bucket_le(14) == UVQ_TSTAMP_MAX);

  /* Measure, then write. */
  n = uvq_endpoint_write_prometheus(w.nodes[s].ep, NULL, 0, NULL);
  assert_true(n > 0 && (size_t)n < sizeof(text));
  m = uvq_endpoint_write_prometheus(w.nodes[s].ep, text, sizeof(text), NULL);
  assert_int_equal(m, n);
  assert_int_equal(strlen(text), (size_t)n);
  check_exposition(text);
  expect_line(text, "# TYPE uvquic_handshake_duration_seconds histogram");
  snprintf(want, sizeof(want), "uvquic_handshakes_completed_total %d",
           NCLIENTS);
  expect_line(text, want);
  snprintf(want, sizeof(want),
           "uvquic_handshake_duration_seconds_bucket{le=\"+Inf\"} %d",
           NCLIENTS);
  expect_line(text, want);
  snprintf(want, sizeof(want), "uvquic_handshake_duration_seconds_count %d",
           NCLIENTS);
  expect_line(text, want);
  expect_line(text,
              "uvquic_handshake_duration_seconds_bucket{le=\"0.0005\"} 0");
  snprintf(want, sizeof(want), "uvquic_dropped_total{reason=\"%s\"} %llu",
           uvq_drop_reason_name(UVQ_DROP_TRUNCATED),
           (unsigned long long)ss.dropped[UVQ_DROP_TRUNCATED]);
  expect_line(text, want);
  assert_true(ss.dropped[UVQ_DROP_TRUNCATED] >= 5);
  expect_line(text, "uvquic_handshake_failures_total{reason=\"timeout\"} 0");
  expect_line(text, "uvquic_gso_fallbacks_total 2");
  snprintf(want, sizeof(want), "uvquic_connections %d", NCLIENTS);
  expect_line(text, want);
  expect_line(text, "# TYPE uvquic_datagrams_received_total counter");

  /* A short buffer: cut, NUL-terminated, same length reported. */
  m = uvq_endpoint_write_prometheus(w.nodes[s].ep, text, 100, "edge:uvq");
  assert_true(m > 100);
  assert_int_equal(strlen(text), 99);
  assert_int_equal(strncmp(text, "# HELP edge:uvq_", 16), 0);
  assert_int_equal(
      uvq_endpoint_write_prometheus(w.nodes[s].ep, text, sizeof(text), "9x"),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      uvq_endpoint_write_prometheus(w.nodes[s].ep, text, sizeof(text), "a-b"),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_endpoint_write_prometheus(NULL, text, 10, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  qt_world_free(&w);
}

/* ---- the log callback -------------------------------------------------- */

typedef struct log_line {
  uvq_log_level lvl;
  char scid[2 * UVQ_MAX_CIDLEN + 1];
  int has_scid;
  char msg[512];
} log_line;

typedef struct log_sink {
  log_line lines[64];
  int n;     /* lines kept */
  int total; /* lines seen */
  int debug; /* DEBUG lines seen */
  int drops; /* "dropped" lines seen */
  int too_verbose;
  uvq_log_level max;
} log_sink;

static void log_cb(void *ud, uvq_log_level lvl, const char *scid,
                   const char *msg) {
  log_sink *k = ud;
  k->total++;
  if (lvl > k->max) {
    k->too_verbose++;
  }
  if (lvl == UVQ_LOG_DEBUG) {
    k->debug++;
    if (strncmp(msg, "dropped", 7) == 0) {
      k->drops++;
      if (k->n < 64) {
        snprintf(k->lines[k->n++].msg, sizeof(k->lines[0].msg), "%s", msg);
      }
    }
    return;
  }
  if (k->n < 64) {
    log_line *l = &k->lines[k->n++];
    l->lvl = lvl;
    l->has_scid = scid != NULL;
    snprintf(l->scid, sizeof(l->scid), "%s", scid ? scid : "");
    snprintf(l->msg, sizeof(l->msg), "%s", msg);
  }
}

static const log_line *find_line(const log_sink *k, const char *prefix) {
  for (int i = 0; i < k->n; i++) {
    if (strncmp(k->lines[i].msg, prefix, strlen(prefix)) == 0) {
      return &k->lines[i];
    }
  }
  return NULL;
}

static int g_plain_log_lines;

static void plain_log(void *ud, const char *line) {
  (void)ud;
  (void)line;
  g_plain_log_lines++;
}

static void test_metrics_log_lifecycle(void **state) {
  qt_world w;
  int s, c;
  qt_app cli = {0};
  uvq_settings ss, cs;
  log_sink sk = {0}, ck = {0};
  const log_line *acc, *est, *clo;
  uvq_conn *conn;
  (void)state;

  uvq_settings_default(&ss);
  assert_int_equal(ss.log_level, UVQ_LOG_WARN);
  assert_int_equal(ss.bw_window_rounds, 10);
  ss.log_cb = log_cb;
  ss.log_cb_user_data = &sk;
  ss.log_level = UVQ_LOG_INFO;
  sk.max = UVQ_LOG_INFO;
  cs = ss;
  cs.log_cb_user_data = &ck;
  ck.max = UVQ_LOG_INFO;
  transfer_world(&w, &s, &c, &ss, &cs);
  w.delay = 2 * UVQ_MILLISECONDS;
  client_sends(&cli, 10000);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, &conn), 0);
  assert_true(qt_run(&w, server_fin, NULL, 30 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_close(conn, 0, "bye"), 0);
  assert_true(qt_run(&w, qt_app_is_closed, &cli, 30 * UVQ_SECONDS));
  (void)qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);

  assert_int_equal(sk.too_verbose + ck.too_verbose, 0);
  assert_int_equal(sk.debug + ck.debug, 0);
  acc = find_line(&sk, "accepted:");
  est = find_line(&sk, "established:");
  clo = find_line(&sk, "closed:");
  assert_non_null(acc);
  assert_non_null(est);
  assert_non_null(clo);
  assert_true(acc->has_scid && acc->lvl == UVQ_LOG_INFO);
  assert_int_equal(strlen(acc->scid), 2 * 16); /* default cid_len 16 */
  assert_string_equal(acc->scid, est->scid);
  assert_string_equal(acc->scid, clo->scid);
  assert_true(strstr(acc->msg, "alpn=test") != NULL);
  assert_true(strstr(est->msg, "alpn=test") != NULL);
  assert_true(strstr(est->msg, "cipher=TLS_") != NULL);
  assert_true(strstr(est->msg, "version=0x00000001") != NULL);
  assert_true(strstr(clo->msg, "origin=peer") != NULL);
  assert_true(strstr(clo->msg, "type=application") != NULL);
  assert_true(strstr(clo->msg, "reason=\"bye\"") != NULL);

  /* The client logs establish and close under its own SCID. */
  est = find_line(&ck, "established:");
  clo = find_line(&ck, "closed:");
  assert_non_null(est);
  assert_non_null(clo);
  assert_null(find_line(&ck, "accepted:"));
  assert_string_equal(est->scid, clo->scid);
  assert_string_not_equal(est->scid, acc->scid);
  assert_true(strstr(clo->msg, "origin=local") != NULL);
  qt_world_free(&w);
}

static void test_metrics_log_threshold_and_drops(void **state) {
  qt_world w;
  int s, c;
  qt_app cli = {0};
  uvq_settings ss, cs;
  log_sink sk = {0}, ck = {0};
  uint8_t junk[64];
  int base;
  (void)state;

  /* Default threshold (WARN): a clean connection logs nothing. */
  uvq_settings_default(&ss);
  ss.log_cb = log_cb;
  ss.log_cb_user_data = &sk;
  sk.max = UVQ_LOG_WARN;
  /* DEBUG on the client: ngtcp2's trace arrives there, and settings.log
   * still gets it too. */
  uvq_settings_default(&cs);
  cs.log_cb = log_cb;
  cs.log_cb_user_data = &ck;
  cs.log_level = UVQ_LOG_DEBUG;
  cs.log = plain_log;
  ck.max = UVQ_LOG_DEBUG;
  g_plain_log_lines = 0;
  transfer_world(&w, &s, &c, &ss, &cs);
  client_sends(&cli, 1000);
  assert_int_equal(qt_connect(&w, c, s, &app_cb, &cli, NULL), 0);
  assert_true(qt_run(&w, server_fin, NULL, 30 * UVQ_SECONDS));
  assert_int_equal(sk.total, 0);
  assert_int_equal(ck.too_verbose, 0);
  assert_true(ck.debug > 10);
  assert_true(g_plain_log_lines > 10);
  assert_non_null(find_line(&ck, "established:"));

  /* Garbage at the client: one aggregated DEBUG line for the burst, not
   * one per datagram. Past the interval first, so the burst's first drop
   * reports at once. */
  memset(junk, 0x40, sizeof(junk)); /* short header, unknown DCID */
  w.now += 2 * UVQ_SECONDS;
  base = ck.drops;
  for (int i = 0; i < 100; i++) {
    qt_inject(&w, c, &w.nodes[s].addr, junk, sizeof(junk));
  }
  assert_int_equal(ck.drops, base + 1);
  w.now += 2 * UVQ_SECONDS;
  qt_inject(&w, c, &w.nodes[s].addr, junk, sizeof(junk));
  assert_int_equal(ck.drops, base + 2);
  /* The second line carries the 99 held back plus the new one. */
  {
    const char *last = "";
    for (int i = 0; i < ck.n; i++) {
      if (strncmp(ck.lines[i].msg, "dropped", 7) == 0) {
        last = ck.lines[i].msg;
      }
    }
    print_message("%s\n", last);
    assert_true(strstr(last, "=100") != NULL);
  }
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_bw_rounds),
      cmocka_unit_test(test_metrics_bandwidth_estimate),
      cmocka_unit_test(test_metrics_loss_inferred),
      cmocka_unit_test(test_metrics_live_stats),
      cmocka_unit_test(test_metrics_handshake_failures),
      cmocka_unit_test(test_metrics_histogram_prometheus),
      cmocka_unit_test(test_metrics_log_lifecycle),
      cmocka_unit_test(test_metrics_log_threshold_and_drops),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
