/*
 * Path MTU discovery and its ceiling (uvq_settings.max_udp_payload_size,
 * uvq_endpoint_config.path_mtu), in one process over the in-memory wire:
 * a link's MTU bounds the search, a smaller hop beyond it makes probes
 * fail and the search settle below, and the data arrives intact at every
 * size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "qtest.h"
#include "qtest_app.h"

static int done(void *ud) {
  qt_app **s = ud;
  return s[0]->fin && s[1]->fin;
}

typedef struct pmtud_run {
  size_t link_mtu;         /* the path_mtu callback's answer; 0: none */
  size_t path_max_payload; /* the wire drops larger datagrams; 0: none */
  const uvq_settings *st;  /* both endpoints' settings; NULL: defaults */
  uvq_tstamp settle;       /* idle time after the transfer, before reading */
  /* Out: the connection's sizes at the end, both directions. */
  size_t srv_payload, cli_payload;
  size_t max_seen;
  size_t max_batch_segment;
  uint64_t too_big;
} pmtud_run;

/* 2 MiB each way over one connection; checks the bytes. */
static void run(pmtud_run *r) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  const uint64_t len = 2u << 20;
  int s, c;

  qt_world_init(&w, 7);
  w.delay = 2 * UVQ_MILLISECONDS;
  w.link_mtu = r->link_mtu;
  w.path_max_payload = r->path_max_payload;
  s = qt_add_server(&w, r->st, qt_app_accept, &srv);
  c = qt_add_client(&w, r->st, NULL);
  assert_true(s >= 0 && c >= 0);
  cli.send_on_established = 1;
  cli.to_send = len;
  cli.seed = 3;
  srv.reply = 1;
  srv.to_send = len;
  srv.seed = 4;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, done, pair, 120 * UVQ_SECONDS));
  qt_app_assert_received(&srv, 3, len);
  qt_app_assert_received(&cli, 4, len);
  if (r->settle) {
    qt_run(&w, NULL, NULL, r->settle);
  }
  r->srv_payload = uvq_conn_get_max_udp_payload(srv.conn);
  r->cli_payload = uvq_conn_get_max_udp_payload(cli.conn);
  r->max_seen = w.max_payload_seen;
  r->max_batch_segment = w.max_batch_segment;
  r->too_big = w.too_big;
  print_message("# link %zu, path %zu: server %zu, client %zu, largest %zu, "
                "%llu too big\n",
                r->link_mtu, r->path_max_payload, r->srv_payload,
                r->cli_payload, r->max_seen, (unsigned long long)r->too_big);
  qt_app_free(&cli);
  qt_app_free(&srv);
  qt_world_free(&w);
}

/* Auto (the default): a 9000-byte link (jumbo frames) over IPv4 gives
 * the server 9000 - 20 - 8 = 8972-byte datagrams; its clients are told to
 * send it at most 1452 (transport parameter), so it never keeps a
 * jumbo-sized decrypt buffer per connection. */
static void test_pmtud_auto_follows_link(void **state) {
  pmtud_run r = {.link_mtu = 9000};
  (void)state;
  run(&r);
  assert_int_equal(r.srv_payload, 8972);
  assert_int_equal(r.cli_payload, 1452);
  assert_int_equal(r.max_seen, 8972);
  assert_int_equal(r.too_big, 0);
}

/* Auto on loopback's 65536: at most UVQ_UDP_PAYLOAD_AUTO_MAX. */
static void test_pmtud_auto_capped(void **state) {
  pmtud_run r = {.link_mtu = 65536};
  (void)state;
  run(&r);
  assert_int_equal(r.srv_payload, UVQ_UDP_PAYLOAD_AUTO_MAX);
  assert_int_equal(r.max_seen, UVQ_UDP_PAYLOAD_AUTO_MAX);
}

static int established(void *ud) {
  qt_app **s = ud;
  return s[0]->established && s[1]->established;
}

/* On a link above Ethernet's size (the peer is on it, so its MTU is the
 * path's) one probe of the ceiling settles discovery: an idle connection
 * on loopback's 65536 sends no datagram between 1452 and 16384 bytes (the
 * climb through 8952 did), and still reaches 16384. */
static void test_pmtud_link_ceiling_probed_first(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  int s, c;
  (void)state;
  qt_world_init(&w, 9);
  w.delay = 2 * UVQ_MILLISECONDS;
  w.link_mtu = 65536;
  w.count_min = 1453;
  w.count_max = UVQ_UDP_PAYLOAD_AUTO_MAX - 1;
  s = qt_add_server(&w, NULL, qt_app_accept, &srv);
  c = qt_add_client(&w, NULL, NULL);
  assert_true(s >= 0 && c >= 0);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, established, pair, 10 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 3 * UVQ_SECONDS);
  assert_int_equal(uvq_conn_get_max_udp_payload(srv.conn),
                   UVQ_UDP_PAYLOAD_AUTO_MAX);
  assert_int_equal(w.counted, 0);
  qt_app_free(&cli);
  qt_app_free(&srv);
  qt_world_free(&w);
}

/* A driver that cannot tell the link (no callback, or 0): 1452, as ever. */
static void test_pmtud_unknown_link_stays_ethernet(void **state) {
  pmtud_run r = {0};
  (void)state;
  run(&r);
  assert_int_equal(r.srv_payload, 1452);
  assert_int_equal(r.cli_payload, 1452);
  assert_int_equal(r.max_seen, 1452);
}

/* A jumbo first link and a 1500-byte hop beyond it (a misconfigured
 * segment: the first link's MTU is not the path's). The server probes its
 * 8972-byte ceiling first and loses it three times, then climbs 1342 ...
 * 1452 and loses 8952 three times too: it settles at 1452, the largest size
 * that fits, a few PTOs later (after the transfer here, hence the idle
 * time). Its clients were told 1452 and never probe above. Each probe
 * leaves as a batch of its own: were it the segment size of a GSO message
 * with data after it, a first hop that cannot carry it would refuse the
 * data too (or GSO altogether). */
static void test_pmtud_smaller_hop(void **state) {
  pmtud_run r = {
      .link_mtu = 9000, .path_max_payload = 1472, .settle = 10 * UVQ_SECONDS};
  (void)state;
  run(&r);
  assert_int_equal(r.srv_payload, 1452);
  assert_int_equal(r.cli_payload, 1452);
  assert_true(r.too_big >= 6); /* three probes of 8972, three of 8952 */
  assert_int_equal(r.max_seen, 8972);
  assert_int_equal(r.max_batch_segment, 1452);
}

/* An explicit setting caps the link: 4000 on a 9000 link; and a link
 * below the setting lowers it: 1500 (1472 over IPv4) under 4000. */
static void test_pmtud_explicit_setting(void **state) {
  uvq_settings st;
  pmtud_run r = {.link_mtu = 9000, .st = &st};
  (void)state;
  uvq_settings_default(&st);
  st.max_udp_payload_size = 4000;
  run(&r);
  assert_int_equal(r.srv_payload, 4000);
  assert_int_equal(r.cli_payload, 4000); /* explicit: clients may too */
  assert_int_equal(r.max_seen, 4000);

  memset(&r, 0, sizeof(r));
  r.link_mtu = 1500;
  r.st = &st;
  run(&r);
  assert_int_equal(r.srv_payload, 1472);
  assert_int_equal(r.max_seen, 1472);
}

/* Discovery off: 1200-byte datagrams whatever the link. */
static void test_pmtud_off(void **state) {
  uvq_settings st;
  pmtud_run r = {.link_mtu = 9000, .st = &st};
  (void)state;
  uvq_settings_default(&st);
  st.pmtud = 0;
  run(&r);
  assert_int_equal(r.srv_payload, 1200);
  assert_int_equal(r.max_seen, 1200);
}

static uint64_t wall(uvq_endpoint *ep, void *ud) {
  (void)ep;
  (void)ud;
  return 0;
}

static ssize_t sink(uvq_endpoint *ep, const uvq_send_batch *b, void *ud) {
  (void)ep;
  (void)ud;
  return (ssize_t)b->count;
}

/* max_udp_payload_size: 0 or 1200..UVQ_MAX_UDP_PAYLOAD; uvq_raw at most
 * 1500 (its buffers). */
static void test_pmtud_setting_bounds(void **state) {
  static const struct {
    size_t v;
    int ok;
  } cases[] = {{0, 1},    {1199, 0},  {1200, 1},
               {1500, 1}, {65527, 1}, {UVQ_MAX_UDP_PAYLOAD + 1, 0}};
  qt_world w;
  size_t i;
  (void)state;
  qt_world_init(&w, 1);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uvq_endpoint_config cfg;
    uvq_settings st;
    uvq_endpoint *ep = NULL;
    uvq_settings_default(&st);
    st.max_udp_payload_size = cases[i].v;
    uvq_endpoint_config_default(&cfg);
    cfg.settings = &st;
    cfg.tls = w.client_tls;
    cfg.send = sink;
    cfg.wall_time = wall;
    assert_int_equal(uvq_endpoint_new(&ep, &cfg) == 0, cases[i].ok);
    uvq_endpoint_del(ep);
  }
  {
    uvq_raw_config rc;
    uvq_settings st;
    uvq_raw *raw = NULL;
    uvq_addr a;
    uvq_path path;
    qt_addr_v4(&a, 443);
    path.local = a;
    path.remote = a;
    uvq_settings_default(&st);
    st.max_udp_payload_size = 1501;
    uvq_raw_config_default(&rc);
    rc.settings = &st;
    rc.tls = w.client_tls;
    rc.callbacks = &qt_app_callbacks;
    assert_int_equal(uvq_raw_connect(&raw, &rc, &path, 0),
                     UVQ_ERR_INVALID_ARGUMENT);
  }
  qt_world_free(&w);
}

static int g_called;

static size_t must_not_run(uvq_endpoint *ep, const uvq_path *path, void *ud) {
  (void)ep;
  (void)path;
  (void)ud;
  g_called++;
  return 9000;
}

/* A version-3 config (before path_mtu) is read without it: whatever its
 * memory holds there is never called. */
static void test_pmtud_config_v3_ignores_callback(void **state) {
  qt_world w;
  uvq_endpoint_config cfg;
  uvq_endpoint *ep = NULL;
  uvq_conn *conn = NULL;
  uvq_connect_params cp;
  uvq_path path;
  (void)state;
  qt_world_init(&w, 1);
  qt_addr_v4(&path.local, 5000);
  qt_addr_v4(&path.remote, 4433);
  uvq_connect_params_default(&cp);
  cp.server_name = "localhost";
  cp.path = &path;
  cp.callbacks = &qt_app_callbacks;
  uvq_endpoint_config_default(&cfg);
  cfg.version = 3;
  cfg.tls = w.client_tls;
  cfg.send = sink;
  cfg.wall_time = wall;
  cfg.path_mtu = must_not_run;
  assert_int_equal(uvq_endpoint_new(&ep, &cfg), 0);
  assert_int_equal(uvq_endpoint_connect(ep, &cp, 0, &conn), 0);
  assert_int_equal(g_called, 0);
  assert_int_equal(uvq_conn_get_max_udp_payload(conn), 1200);

  /* Version 4 calls it, once per connection. */
  uvq_endpoint_del(ep);
  cfg.version = UVQ_ENDPOINT_CONFIG_VERSION;
  assert_int_equal(uvq_endpoint_new(&ep, &cfg), 0);
  assert_int_equal(uvq_endpoint_connect(ep, &cp, 0, &conn), 0);
  assert_int_equal(g_called, 1);
  uvq_endpoint_del(ep);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pmtud_auto_follows_link),
      cmocka_unit_test(test_pmtud_auto_capped),
      cmocka_unit_test(test_pmtud_link_ceiling_probed_first),
      cmocka_unit_test(test_pmtud_unknown_link_stays_ethernet),
      cmocka_unit_test(test_pmtud_smaller_hop),
      cmocka_unit_test(test_pmtud_explicit_setting),
      cmocka_unit_test(test_pmtud_off),
      cmocka_unit_test(test_pmtud_setting_bounds),
      cmocka_unit_test(test_pmtud_config_v3_ignores_callback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
