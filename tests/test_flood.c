/*
 * Floods and limits, over the in-memory wire:
 * - an Initial flood from thousands of source ports (real client Initials,
 *   captured and injected from distinct addresses): with retry = AUTO the
 *   server switches to Retry by itself once handshakes in flight reach the
 *   threshold and not before, a legitimate client still connects, and the
 *   memory the server holds (through a counting uvq_mem) stays bounded;
 * - max_connections refuses the excess with CONNECTION_REFUSED;
 * - a garbage flood (random sizes, random first bytes, random sources, and
 *   short headers aimed at the live connection) during a download: the
 *   download completes intact and every garbage datagram is accounted for
 *   by a drop counter, a Version Negotiation or the connection it reached;
 * - address-validation tokens at the endpoint: a NEW_TOKEN token from
 *   another IP or past its lifetime, a forged one, one of an unknown type,
 *   and a Retry token presented from another port — rejected and counted by
 *   reason (tampered and expired Retry tokens are in test_endpoint.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/token.h"
#include "qtest.h"
#include "qtest_app.h"
#include "qtest_mem.h"

/* ---- the application (qtest_app.h): a download of |reply_len| bytes ----- */

#define MAX_SRV 4096
#define REPLY_SEED 44

/* The server node's user_data: a side per accepted connection. */
static qt_app_pool g_pool;

/* A client side: its request is an empty stream. */
static void client_init(qt_app *cli) {
  memset(cli, 0, sizeof(*cli));
  cli->send_on_established = 1;
}

static void world_init(qt_world *w, uint64_t seed) {
  qt_world_init(w, seed);
  memset(&g_pool, 0, sizeof(g_pool));
  g_pool.sides = calloc(MAX_SRV, sizeof(*g_pool.sides));
  assert_non_null(g_pool.sides);
  g_pool.nsides = MAX_SRV;
  g_pool.reply_seed = REPLY_SEED;
}

static void world_free(qt_world *w) {
  qt_world_free(w);
  for (size_t i = 0; i < g_pool.accepted; i++) {
    qt_app_free(&g_pool.sides[i]);
  }
  free(g_pool.sides);
  g_pool.sides = NULL;
}

static int downloaded(void *ud) {
  qt_app *c = ud;
  return c->closed || (c->fin && c->received == g_pool.reply_len);
}

static int closed_or_established(void *ud) {
  qt_app *c = ud;
  return c->closed || c->established;
}

/* ---- captured client Initials ------------------------------------------ */

typedef struct capture {
  int client;
  uint8_t (*dgrams)[1500];
  size_t *lens;
  size_t n, cap;
} capture;

/* Keeps each first-flight datagram of node |client|, delivers none. */
static int capture_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  capture *c = ud;
  (void)w;
  if (from == c->client && c->n < c->cap) {
    memcpy(c->dgrams[c->n], p->data, p->len);
    c->lens[c->n++] = p->len;
  }
  return 1;
}

/* Makes |n| real client Initials (one per connection, distinct CIDs and
 * ClientHellos) from a throw-away client endpoint. */
static void make_initials(capture *cap, size_t n) {
  qt_world w;
  qt_app *cli = calloc(n, sizeof(*cli));
  int s, c;

  assert_non_null(cli);
  cap->dgrams = malloc(n * sizeof(*cap->dgrams));
  cap->lens = malloc(n * sizeof(*cap->lens));
  assert_non_null(cap->dgrams);
  assert_non_null(cap->lens);
  cap->n = 0;
  cap->cap = n;
  qt_world_init(&w, 41);
  s = qt_add_server(&w, NULL, qt_app_pool_accept, NULL);
  c = qt_add_client(&w, NULL, NULL);
  cap->client = c;
  w.filter = capture_fn;
  w.filter_ud = cap;
  for (size_t i = 0; i < n; i++) {
    client_init(&cli[i]);
    assert_int_equal(
        qt_connect(&w, c, s, &qt_app_callbacks, &cli[i], &cli[i].conn), 0);
    /* One flush per connection: its first datagram, the padded Initial. */
    uvq_endpoint_flush(w.nodes[c].ep, w.now);
  }
  assert_int_equal(cap->n, n);
  for (size_t i = 0; i < n; i++) {
    assert_true(cap->lens[i] >= 1200);
    assert_true((cap->dgrams[i][0] & 0xf0) == 0xc0); /* Initial */
  }
  qt_world_free(&w); /* no callbacks fire from here */
  free(cli);
}

static void capture_free(capture *cap) {
  free(cap->dgrams);
  free(cap->lens);
}

/* Source i of a flood: 10.x.y.z:port, never on the wire (replies vanish). */
static void flood_addr(uvq_addr *a, size_t i) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)(1024 + i % 60000));
  sa.sin_addr.s_addr = htonl(0x0a000000u | (uint32_t)(i / 16));
  memset(a, 0, sizeof(*a));
  uvq_addr_set(a, (struct sockaddr *)&sa, sizeof(sa));
}

/* ---- (a) Initial flood with Retry on demand ----------------------------- */

#define FLOOD_N 2000
#define FLOOD_THRESHOLD 64

static void test_flood_initials_retry_auto(void **state) {
  qt_world w;
  capture cap;
  qt_mem m;
  uvq_settings st;
  uvq_endpoint_stats es, before;
  qt_app cli;
  int64_t peak_at_threshold_bytes = 0, peak_at_threshold_blocks = 0;
  (void)state;

  make_initials(&cap, FLOOD_N);
  world_init(&w, 42);
  g_pool.reply_len = 64 * 1024;
  qt_mem_init(&m);
  w.mem = &m.mem;
  uvq_settings_default(&st);
  st.retry = UVQ_RETRY_AUTO;
  st.retry_auto_threshold = FLOOD_THRESHOLD;
  int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  w.mem = NULL;
  int c = qt_add_client(&w, NULL, NULL);

  for (size_t i = 0; i < FLOOD_N; i++) {
    uvq_addr from;
    flood_addr(&from, i);
    uvq_endpoint_get_stats(w.nodes[s].ep, &before);
    qt_inject(&w, s, &from, cap.dgrams[i], cap.lens[i]);
    uvq_endpoint_flush(w.nodes[s].ep, w.now);
    uvq_endpoint_get_stats(w.nodes[s].ep, &es);
    if (before.handshakes_in_flight < FLOOD_THRESHOLD) {
      /* Below the threshold: a connection, never a Retry. */
      assert_int_equal(es.retries_sent, before.retries_sent);
      assert_int_equal(es.initials_accepted, before.initials_accepted + 1);
    } else {
      /* At or above it: a Retry, and no state. */
      assert_int_equal(es.retries_sent, before.retries_sent + 1);
      assert_int_equal(es.initials_accepted, before.initials_accepted);
      assert_int_equal(es.connections_current, before.connections_current);
    }
    if (i + 1 == 2 * FLOOD_THRESHOLD) {
      peak_at_threshold_bytes = m.peak_bytes;
      peak_at_threshold_blocks = m.peak_live;
    }
  }
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.handshakes_in_flight, FLOOD_THRESHOLD);
  assert_int_equal(es.connections_current, FLOOD_THRESHOLD);
  assert_int_equal(es.retries_sent, FLOOD_N - FLOOD_THRESHOLD);
  assert_int_equal(es.dropped[UVQ_DROP_STATELESS_QUEUE_FULL], 0);
  /* Bounded: the last 1,872 Initials cost the server no memory at all. */
  assert_int_equal(m.peak_bytes, peak_at_threshold_bytes);
  assert_int_equal(m.peak_live, peak_at_threshold_blocks);
  print_message("# Initial flood: %d Initials from %d addresses, threshold "
                "%d: %llu connections, %llu Retries; server memory through "
                "uvq_mem: peak %lld blocks, %lld KiB (%lld KiB per "
                "half-open connection)\n",
                FLOOD_N, FLOOD_N, FLOOD_THRESHOLD,
                (unsigned long long)es.initials_accepted,
                (unsigned long long)es.retries_sent, (long long)m.peak_live,
                (long long)(m.peak_bytes / 1024),
                (long long)(m.peak_bytes / 1024 / FLOOD_THRESHOLD));

  /* A legitimate client still connects, through a Retry, and downloads. */
  client_init(&cli);
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, downloaded, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(cli.closed, 0);
  qt_app_assert_received(&cli, REPLY_SEED, g_pool.reply_len);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.retries_sent, before.retries_sent + 1);
  assert_int_equal(g_pool.sides[g_pool.accepted - 1].accept_validated, 1);

  /* The half-open flood times out; the server is back to empty. */
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 60 * UVQ_SECONDS);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.handshakes_in_flight, 0);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  assert_int_equal(es.handshake_timeouts, FLOOD_THRESHOLD);
  world_free(&w);
  assert_int_equal(m.live, 0);
  capture_free(&cap);
}

/* ---- (a) max_connections ------------------------------------------------ */

static void test_flood_max_connections(void **state) {
  qt_world w;
  capture cap;
  uvq_settings st;
  uvq_endpoint_stats es;
  qt_app cli;
  const size_t max = 16, n = 200;
  (void)state;

  make_initials(&cap, n);
  world_init(&w, 43);
  uvq_settings_default(&st);
  /* Finite by default, and room for ordinary load from one host. */
  assert_int_equal(st.max_connections, 10000);
  st.max_connections = max;
  int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  int c = qt_add_client(&w, NULL, NULL);
  for (size_t i = 0; i < n; i++) {
    uvq_addr from;
    flood_addr(&from, i);
    qt_inject(&w, s, &from, cap.dgrams[i], cap.lens[i]);
    uvq_endpoint_flush(w.nodes[s].ep, w.now);
  }
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.connections_current, max);
  assert_int_equal(es.initials_accepted, max);
  assert_int_equal(es.initials_refused, n - max);
  assert_int_equal(es.stateless_closes_sent, n - max);

  /* A real client while full: refused with CONNECTION_REFUSED. */
  client_init(&cli);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, closed_or_established, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.established, 0);
  assert_int_equal(cli.ci.error, UVQ_ERR_PEER_REFUSED);

  /* Once the half-open ones time out, a client gets in again. */
  qt_run(&w, NULL, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  client_init(&cli);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, closed_or_established, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(cli.established, 1);
  world_free(&w);
  capture_free(&cap);
}

/* ---- (a') admission: handshakes in flight, per source ------------------- */

static void addr_v4(uvq_addr *a, uint32_t ip, uint16_t port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(ip);
  memset(a, 0, sizeof(*a));
  uvq_addr_set(a, (struct sockaddr *)&sa, sizeof(sa));
}

static void addr_v6(uvq_addr *a, uint64_t prefix, uint64_t iid) {
  struct sockaddr_in6 sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(4000);
  for (int i = 0; i < 8; i++) {
    sa.sin6_addr.s6_addr[i] = (uint8_t)(prefix >> (56 - 8 * i));
    sa.sin6_addr.s6_addr[8 + i] = (uint8_t)(iid >> (56 - 8 * i));
  }
  memset(a, 0, sizeof(*a));
  uvq_addr_set(a, (struct sockaddr *)&sa, sizeof(sa));
}

/* Defaults let one host through with 64 handshakes in flight; the 65th
 * from the same IPv4 address (plain or IPv4-mapped) is refused, counted;
 * an IPv6 /64 is one source, another /64 another; max_handshakes caps the
 * endpoint, with Retry for unproven addresses when Retry is enabled. */
static void test_flood_admission(void **state) {
  qt_world w;
  capture cap;
  uvq_settings st;
  uvq_endpoint_stats es;
  uvq_addr from;
  size_t k = 0;
  (void)state;

  make_initials(&cap, 200);
  world_init(&w, 44);
  uvq_settings_default(&st);
  assert_int_equal(st.max_handshakes_per_source, 64);
  assert_int_equal(st.max_connections_per_source, 1024);
  assert_true(st.max_handshakes >= 64);
  int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  uvq_endpoint *ep = w.nodes[s].ep;

  /* 64 from 10.1.1.1 (half of them IPv4-mapped): all in; the 65th not. */
  for (int i = 0; i < 64; i++, k++) {
    if (i & 1) {
      addr_v6(&from, 0, 0xffff00000000ull | 0x0a010101u); /* ::ffff:10.1.1.1 */
    } else {
      addr_v4(&from, 0x0a010101u, 4000);
    }
    qt_inject(&w, s, &from, cap.dgrams[k], cap.lens[k]);
  }
  uvq_endpoint_get_stats(ep, &es);
  assert_int_equal(es.initials_accepted, 64);
  addr_v4(&from, 0x0a010101u, 4001);
  qt_inject(&w, s, &from, cap.dgrams[k], cap.lens[k]);
  k++;
  uvq_endpoint_get_stats(ep, &es);
  assert_int_equal(es.initials_accepted, 64);
  assert_int_equal(es.refused_source_handshakes, 1);
  assert_int_equal(es.initials_refused, 1);
  /* Another address is another source. */
  addr_v4(&from, 0x0a010102u, 4000);
  qt_inject(&w, s, &from, cap.dgrams[k], cap.lens[k]);
  k++;
  uvq_endpoint_get_stats(ep, &es);
  assert_int_equal(es.initials_accepted, 65);

  /* IPv6: 64 from one /64 (different interface ids), then one more from
   * it refused, one from the next /64 accepted. */
  for (int i = 0; i < 64; i++, k++) {
    addr_v6(&from, 0x20010db800000001ull, 1000 + (uint64_t)i);
    qt_inject(&w, s, &from, cap.dgrams[k], cap.lens[k]);
  }
  addr_v6(&from, 0x20010db800000001ull, 99);
  qt_inject(&w, s, &from, cap.dgrams[k], cap.lens[k]);
  k++;
  addr_v6(&from, 0x20010db800000002ull, 99);
  qt_inject(&w, s, &from, cap.dgrams[k], cap.lens[k]);
  k++;
  uvq_endpoint_get_stats(ep, &es);
  assert_int_equal(es.initials_accepted, 65 + 64 + 1);
  assert_int_equal(es.refused_source_handshakes, 2);
  assert_int_equal(es.handshakes_in_flight, 130);
  world_free(&w);

  /* max_handshakes = 32 across many sources: Retry off refuses the rest,
   * counted; with Retry auto they get a Retry instead. */
  for (int retry = 0; retry < 2; retry++) {
    world_init(&w, 45);
    uvq_settings_default(&st);
    st.max_handshakes = 32;
    st.retry = retry ? UVQ_RETRY_AUTO : UVQ_RETRY_OFF;
    s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
    for (size_t i = 0; i < 40; i++) {
      flood_addr(&from, i * 16); /* one Initial per address */
      qt_inject(&w, s, &from, cap.dgrams[i], cap.lens[i]);
    }
    uvq_endpoint_get_stats(w.nodes[s].ep, &es);
    assert_int_equal(es.initials_accepted, 32);
    assert_int_equal(es.handshakes_in_flight, 32);
    assert_int_equal(es.refused_handshakes, retry ? 0 : 8);
    assert_int_equal(es.retries_sent, retry ? 8 : 0);
    world_free(&w);
  }
  capture_free(&cap);
}

/* ---- (a2) a client that answers every Retry, from one address ---------- */

#define RA_N 200

/* What the attack made the server hold, sampled at every step. */
typedef struct ra_watch {
  qt_world *w;
  int s;
  uint64_t max_in_flight;
  size_t max_conns;
  qt_app *good; /* the well-behaved client, once it runs */
} ra_watch;

static int ra_sample(void *ud) {
  ra_watch *r = ud;
  uvq_endpoint_stats es;
  size_t n = uvq_endpoint_conn_count(r->w->nodes[r->s].ep);
  uvq_endpoint_get_stats(r->w->nodes[r->s].ep, &es);
  if (es.handshakes_in_flight > r->max_in_flight) {
    r->max_in_flight = es.handshakes_in_flight;
  }
  if (n > r->max_conns) {
    r->max_conns = n;
  }
  return r->good ? downloaded(r->good) : 0;
}

static int g_ra_attacker; /* the attacker's node */

/* Gives client node |n| an address of its own, |ip|:port: the wire
 * routes by address, and every node is 127.0.0.1 (one source) otherwise. */
static void node_ip(qt_world *w, int n, uint32_t ip) {
  addr_v4(&w->nodes[n].addr, ip, (uint16_t)(50000 + n));
}

/* The attacker hears the server's Retries (v1 long header, type 3) and
 * nothing else: it answers each with its token, and the handshake that
 * starts then never completes. */
static int retry_only(qt_world *w, int from, qt_pkt *p, void *ud) {
  (void)w;
  (void)ud;
  return from == 0 && p->dst == g_ra_attacker && (p->data[0] & 0xf0) != 0xf0;
}

/* RA_N connections from one client socket, each answering its Retry with
 * the token (an address the server then counts as proven), none ever
 * completing its handshake. With Retry always, or auto past a threshold of
 * 1, the per-source limit (64) holds the handshakes in flight, with
 * max_handshakes (96) above it: a client from another address completes a
 * download meanwhile. With no per-source limit, max_handshakes (48) holds
 * them, and while it is full a proven client is refused too (as documented
 * for max_handshakes), counted as refused_handshakes. The server's memory
 * (a counting uvq_mem) stops growing once the limit is reached, for the
 * rest of the attack. */
static void test_flood_retry_answering(void **state) {
  (void)state;
  for (int v = 0; v < 4; v++) {
    const int auto_retry = v & 1, per_source = v < 2;
    const uint64_t cap = per_source ? 64 : 48;
    qt_world w;
    qt_mem m;
    uvq_settings st;
    uvq_endpoint_stats es, before;
    qt_app *att = calloc(RA_N, sizeof(*att));
    qt_app good;
    ra_watch r;
    int64_t peak_at_cap;

    assert_non_null(att);
    world_init(&w, 50 + (uint64_t)v);
    g_pool.reply_len = 64 * 1024;
    qt_mem_init(&m);
    uvq_settings_default(&st);
    st.retry = auto_retry ? UVQ_RETRY_AUTO : UVQ_RETRY_ALWAYS;
    st.retry_auto_threshold = 1;
    st.max_handshakes = per_source ? 96 : 48;
    st.max_handshakes_per_source = per_source ? 64 : 0;
    w.mem = &m.mem;
    int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
    w.mem = NULL;
    g_ra_attacker = qt_add_client(&w, NULL, NULL);
    int g = qt_add_client(&w, NULL, NULL);
    node_ip(&w, g_ra_attacker, 0x0a090001u);
    node_ip(&w, g, 0x0a090002u);
    assert_int_equal(s, 0);
    w.filter = retry_only;
    memset(&r, 0, sizeof(r));
    r.w = &w;
    r.s = s;

    for (size_t i = 0; i < RA_N; i++) {
      client_init(&att[i]);
      assert_int_equal(qt_connect(&w, g_ra_attacker, s, &qt_app_callbacks,
                                  &att[i], &att[i].conn),
                       0);
    }
    /* Every Retry answered (those the full stateless queue dropped, at
     * the Initial's next retransmission); the server at its limit. */
    qt_run(&w, ra_sample, &r, 2 * UVQ_SECONDS);
    uvq_endpoint_get_stats(w.nodes[s].ep, &es);
    assert_int_equal(es.handshakes_in_flight, cap);
    assert_true(es.retries_sent >= cap);
    if (per_source) {
      assert_true(es.refused_source_handshakes > 0);
      assert_int_equal(es.refused_handshakes, 0);
    } else {
      assert_true(es.refused_handshakes > 0);
      assert_int_equal(es.refused_source_handshakes, 0);
    }
    peak_at_cap = m.peak_bytes;

    /* The attack goes on (the attacker's Initials are resent and refused)
     * for 2 s more, within the handshake timeout: no more connections,
     * and memory stays where the limit put it (the handshakes in flight
     * may still grow their own state a little as their probes go out:
     * within a tenth). */
    qt_run(&w, ra_sample, &r, 2 * UVQ_SECONDS);
    uvq_endpoint_get_stats(w.nodes[s].ep, &es);
    assert_int_equal(es.handshakes_in_flight, cap);
    assert_int_equal(r.max_in_flight, cap);
    assert_int_equal(r.max_conns, cap);
    assert_true(m.peak_bytes <= peak_at_cap + peak_at_cap / 10);

    /* A well-behaved client from another address. */
    client_init(&good);
    uvq_endpoint_get_stats(w.nodes[s].ep, &before);
    assert_int_equal(qt_connect(&w, g, s, &qt_app_callbacks, &good, &good.conn),
                     0);
    if (per_source) {
      r.good = &good;
      assert_true(qt_run(&w, ra_sample, &r, 5 * UVQ_SECONDS));
      assert_int_equal(good.closed, 0);
      qt_app_assert_received(&good, REPLY_SEED, g_pool.reply_len);
      uvq_endpoint_get_stats(w.nodes[s].ep, &es);
      assert_int_equal(es.handshakes_in_flight, cap); /* still attacked */
    } else {
      assert_true(qt_run(&w, closed_or_established, &good, 5 * UVQ_SECONDS));
      assert_int_equal(good.established, 0);
      assert_int_equal(good.ci.error, UVQ_ERR_PEER_REFUSED);
      uvq_endpoint_get_stats(w.nodes[s].ep, &es);
      assert_true(es.refused_handshakes > before.refused_handshakes);
      assert_int_equal(es.handshakes_in_flight, cap);
    }
    print_message("# Retry-answering flood (%s, %s): %d connections from one "
                  "address, %llu Retries, %llu handshakes in flight at most; "
                  "server memory through uvq_mem: peak %lld KiB\n",
                  auto_retry ? "retry auto" : "retry always",
                  per_source ? "per-source limit 64" : "max_handshakes 48",
                  RA_N, (unsigned long long)es.retries_sent,
                  (unsigned long long)r.max_in_flight,
                  (long long)(m.peak_bytes / 1024));
    world_free(&w);
    assert_int_equal(m.live, 0);
    for (size_t i = 0; i < RA_N; i++) {
      qt_app_free(&att[i]);
    }
    qt_app_free(&good);
    free(att);
  }
}

/* ---- (a3) idle connections kept alive, past the limits ------------------ */

#define IDLE_N 60
#define IDLE_MAX_CONNS 40
#define IDLE_PER_SOURCE 32

/* Connects IDLE_N clients of node |c| that do nothing but keep alive;
 * returns how many got in. Every other one was refused. */
static size_t idle_connect(qt_world *w, int c, int s, qt_app *cl) {
  size_t in = 0;
  for (size_t i = 0; i < IDLE_N; i++) {
    memset(&cl[i], 0, sizeof(cl[i]));
    assert_int_equal(
        qt_connect(w, c, s, &qt_app_callbacks, &cl[i], &cl[i].conn), 0);
  }
  for (size_t i = 0; i < IDLE_N; i++) {
    assert_true(qt_run(w, closed_or_established, &cl[i], 5 * UVQ_SECONDS));
  }
  for (size_t i = 0; i < IDLE_N; i++) {
    if (cl[i].established) {
      in++;
    } else {
      assert_int_equal(cl[i].ci.error, UVQ_ERR_PEER_REFUSED);
    }
  }
  return in;
}

typedef struct idle_watch {
  qt_world *w;
  int s;
  size_t max_conns;
  qt_app *good;
} idle_watch;

static int idle_sample(void *ud) {
  idle_watch *iw = ud;
  size_t n = uvq_endpoint_conn_count(iw->w->nodes[iw->s].ep);
  if (n > iw->max_conns) {
    iw->max_conns = n;
  }
  return iw->good ? downloaded(iw->good) : 0;
}

/* Idle connections that only keep alive (PINGs every 5 s: the server's
 * 30 s idle timeout never fires), from one address and then from a
 * second: the per-source limit holds the first to 32
 * (refused_source_connections), max_connections (40) the total. While
 * there is room a well-behaved client downloads; once max_connections is
 * full it is refused too (CONNECTION_REFUSED, as documented for
 * max_connections), counted in initials_refused and in no per-source
 * counter. The server's memory is what the connections took: a minute of
 * keep-alive adds none. */
static void test_flood_idle_keepalive(void **state) {
  qt_world w;
  qt_mem m;
  uvq_settings st, cs;
  uvq_endpoint_stats es, before;
  qt_app *a1 = calloc(IDLE_N, sizeof(*a1)), *a2 = calloc(IDLE_N, sizeof(*a2));
  qt_app good, late;
  idle_watch iw;
  int64_t live_held;
  (void)state;

  assert_non_null(a1);
  assert_non_null(a2);
  world_init(&w, 60);
  g_pool.reply_len = 256 * 1024;
  qt_mem_init(&m);
  uvq_settings_default(&st);
  st.max_connections = IDLE_MAX_CONNS;
  st.max_connections_per_source = IDLE_PER_SOURCE;
  w.mem = &m.mem;
  int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  w.mem = NULL;
  uvq_settings_default(&cs);
  cs.keep_alive = 5 * UVQ_SECONDS;
  int c1 = qt_add_client(&w, &cs, NULL);
  int c2 = qt_add_client(&w, &cs, NULL);
  int g = qt_add_client(&w, NULL, NULL);
  node_ip(&w, c1, 0x0a090001u);
  node_ip(&w, c2, 0x0a090002u);
  node_ip(&w, g, 0x0a090003u);
  memset(&iw, 0, sizeof(iw));
  iw.w = &w;
  iw.s = s;

  /* One address: 32 in, 28 refused by the per-source limit. */
  assert_int_equal(idle_connect(&w, c1, s, a1), IDLE_PER_SOURCE);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.refused_source_connections, IDLE_N - IDLE_PER_SOURCE);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), IDLE_PER_SOURCE);

  /* Held for twice the idle timeout by keep-alive alone: the same
   * connections, the same memory. */
  qt_run(&w, NULL, NULL, 1 * UVQ_SECONDS);
  live_held = m.live_bytes;
  qt_mem_reset_peaks(&m);
  qt_run(&w, idle_sample, &iw, 60 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), IDLE_PER_SOURCE);
  assert_int_equal(iw.max_conns, IDLE_PER_SOURCE);
  for (size_t i = 0; i < IDLE_N; i++) {
    assert_int_equal(a1[i].closed, !a1[i].established);
  }
  assert_int_equal(m.live_bytes, live_held);
  print_message("# idle keep-alive: %d connections held by the server, "
                "%lld KiB through uvq_mem (%lld KiB each), peak over a "
                "minute of PINGs %lld KiB\n",
                IDLE_PER_SOURCE, (long long)(live_held / 1024),
                (long long)(live_held / 1024 / IDLE_PER_SOURCE),
                (long long)(m.peak_bytes / 1024));

  /* Room left under max_connections: a client from another address. */
  client_init(&good);
  iw.good = &good;
  assert_int_equal(qt_connect(&w, g, s, &qt_app_callbacks, &good, &good.conn),
                   0);
  assert_true(qt_run(&w, idle_sample, &iw, 5 * UVQ_SECONDS));
  qt_app_assert_received(&good, REPLY_SEED, g_pool.reply_len);
  assert_int_equal(uvq_conn_close(good.conn, 0, NULL), 0);
  iw.good = NULL;
  qt_run(&w, idle_sample, &iw, 5 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), IDLE_PER_SOURCE);

  /* A second address fills max_connections: 8 in, 52 refused by it. */
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  assert_int_equal(idle_connect(&w, c2, s, a2),
                   IDLE_MAX_CONNS - IDLE_PER_SOURCE);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.initials_refused - before.initials_refused,
                   IDLE_N - (IDLE_MAX_CONNS - IDLE_PER_SOURCE));
  assert_int_equal(es.refused_source_connections,
                   before.refused_source_connections);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), IDLE_MAX_CONNS);

  /* Full: a well-behaved client is refused too, counted by reason. */
  memset(&late, 0, sizeof(late));
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  assert_int_equal(qt_connect(&w, g, s, &qt_app_callbacks, &late, &late.conn),
                   0);
  assert_true(qt_run(&w, closed_or_established, &late, 5 * UVQ_SECONDS));
  assert_int_equal(late.established, 0);
  assert_int_equal(late.ci.error, UVQ_ERR_PEER_REFUSED);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.initials_refused, before.initials_refused + 1);
  assert_int_equal(es.refused_source_connections,
                   before.refused_source_connections);
  assert_int_equal(es.refused_source_handshakes,
                   before.refused_source_handshakes);
  assert_int_equal(es.refused_handshakes, before.refused_handshakes);
  iw.max_conns = 0;
  qt_run(&w, idle_sample, &iw, 10 * UVQ_SECONDS);
  assert_int_equal(iw.max_conns, IDLE_MAX_CONNS);

  world_free(&w);
  assert_int_equal(m.live, 0);
  for (size_t i = 0; i < IDLE_N; i++) {
    qt_app_free(&a1[i]);
    qt_app_free(&a2[i]);
  }
  qt_app_free(&good);
  qt_app_free(&late);
  free(a1);
  free(a2);
}

/* ---- (b) garbage flood during a download -------------------------------- */

typedef struct garbage_state {
  qt_world *w;
  qt_app *cli;
  int s;
  uint8_t dcid[UVQ_MAX_CIDLEN]; /* the server's CID the client uses */
  int have_dcid;
  uint64_t injected, aimed, steps;
  uint64_t accounted;
} garbage_state;

static garbage_state *g_gs;

/* Learns the DCID of the client's short-header packets. */
static int dcid_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  garbage_state *g = ud;
  (void)w;
  if (from != g->s && p->len > 17 && (p->data[0] & 0x80) == 0) {
    memcpy(g->dcid, p->data + 1, 16);
    g->have_dcid = 1;
  }
  return 0;
}

static uint64_t accounted(uvq_endpoint *ep, uvq_conn *conn) {
  uvq_endpoint_stats es;
  uvq_conn_stats cs;
  uint64_t sum = 0;
  uvq_endpoint_get_stats(ep, &es);
  for (int r = 0; r < UVQ_DROP_REASON_COUNT; r++) {
    sum += es.dropped[r];
  }
  sum += es.version_negotiations_sent;
  if (conn) {
    uvq_conn_get_stats(conn, &cs);
    sum += cs.datagrams_received; /* reached the connection */
  }
  return sum;
}

static int garbage_step(void *ud) {
  garbage_state *g = ud;
  qt_world *w = g->w;
  uvq_endpoint *ep = w->nodes[g->s].ep;
  uvq_conn *sconn = g_pool.accepted > 0 ? g_pool.sides[0].conn : NULL;

  if (downloaded(g->cli)) {
    return 1;
  }
  g->steps++;
  /* A handful of garbage datagrams at every step of the transfer. */
  for (int k = 0; k < 16; k++) {
    uint8_t buf[1500];
    size_t len = (size_t)(qt_rand(w) % 1501);
    uvq_addr from;
    uint64_t before, after;
    int aimed = 0;
    for (size_t j = 0; j < len; j++) {
      buf[j] = (uint8_t)qt_rand(w);
    }
    if (g->have_dcid && sconn && len > 20 && qt_rand(w) % 4 == 0) {
      /* A short header aimed at the live connection: it cannot decrypt. */
      buf[0] = (uint8_t)(0x40 | (buf[0] & 0x3f));
      memcpy(buf + 1, g->dcid, 16);
      aimed = 1;
    }
    if (aimed && qt_rand(w) % 2) {
      from = w->nodes[1].addr; /* spoofing the client */
    } else {
      flood_addr(&from, (size_t)(qt_rand(w) % 100000));
    }
    before = accounted(ep, sconn);
    qt_inject(w, g->s, &from, buf, len);
    after = accounted(ep, sconn);
    /* Exactly one counter moved by exactly one. */
    assert_int_equal(after - before, 1);
    g->injected++;
    g->aimed += (uint64_t)aimed;
  }
  return 0;
}

static void test_flood_garbage_during_download(void **state) {
  qt_world w;
  garbage_state g;
  qt_app cli;
  uvq_endpoint_stats es;
  (void)state;

  world_init(&w, 44);
  w.delay = 2 * UVQ_MILLISECONDS;
  g_pool.reply_len = 2 * 1024 * 1024;
  int s = qt_add_server(&w, NULL, qt_app_pool_accept, &g_pool);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(c, 1);
  memset(&g, 0, sizeof(g));
  client_init(&cli);
  g.w = &w;
  g.cli = &cli;
  g.s = s;
  g_gs = &g;
  w.filter = dcid_fn;
  w.filter_ud = &g;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, garbage_step, &g, 60 * UVQ_SECONDS));
  assert_int_equal(cli.closed, 0);
  qt_app_assert_received(&cli, REPLY_SEED, g_pool.reply_len);
  assert_true(g.injected > 1000);
  assert_true(g.aimed > 100);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  /* No garbage became an accepted connection. */
  assert_int_equal(g_pool.accepted, 1);
  print_message("# garbage flood: %llu datagrams (%llu aimed at the live "
                "connection) over %llu steps of a %llu KiB download; "
                "server: %llu VN, dropped malformed %llu, truncated %llu, "
                "unknown_cid %llu, unsupported_version %llu, "
                "initial_too_small %llu, unexpected_long %llu, 0rtt %llu, "
                "conn_rejected %llu\n",
                (unsigned long long)g.injected, (unsigned long long)g.aimed,
                (unsigned long long)g.steps,
                (unsigned long long)(g_pool.reply_len / 1024),
                (unsigned long long)es.version_negotiations_sent,
                (unsigned long long)es.dropped[UVQ_DROP_MALFORMED],
                (unsigned long long)es.dropped[UVQ_DROP_TRUNCATED],
                (unsigned long long)es.dropped[UVQ_DROP_UNKNOWN_CID],
                (unsigned long long)es.dropped[UVQ_DROP_UNSUPPORTED_VERSION],
                (unsigned long long)es.dropped[UVQ_DROP_INITIAL_TOO_SMALL],
                (unsigned long long)es.dropped[UVQ_DROP_UNEXPECTED_LONG],
                (unsigned long long)es.dropped[UVQ_DROP_0RTT_UNKNOWN],
                (unsigned long long)es.dropped[UVQ_DROP_CONN_REJECTED]);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  g_gs = NULL;
  world_free(&w);
}

/* ---- (c) tokens at the endpoint ----------------------------------------- */

/* Connects from |local| (an alias of node |c|) with |token|; runs until it
 * is established or closed. */
static void connect_from(qt_world *w, int c, int s, const uvq_addr *local,
                         const uint8_t *token, size_t tokenlen, qt_app *cli) {
  uvq_connect_params p;
  uvq_path path;
  client_init(cli);
  path.local = *local;
  path.remote = w->nodes[s].addr;
  uvq_connect_params_default(&p);
  p.path = &path;
  p.callbacks = &qt_app_callbacks;
  p.user_data = cli;
  p.token = token;
  p.tokenlen = tokenlen;
  assert_int_equal(qt_connect_params(w, c, s, &p, &cli->conn), 0);
  assert_true(qt_run(w, closed_or_established, cli, 5 * UVQ_SECONDS));
}

static void test_flood_new_token_rejections(void **state) {
  qt_world w;
  uvq_settings st;
  uvq_endpoint_stats es, before;
  qt_app first, cli;
  uvq_addr other_ip, other_port;
  uint8_t forged[64];
  (void)state;

  world_init(&w, 45);
  uvq_settings_default(&st);
  st.retry = UVQ_RETRY_ALWAYS;
  int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  int c = qt_add_client(&w, NULL, NULL);
  addr_v4(&other_ip, 0x7f000002u, 50001); /* 127.0.0.2 */
  addr_v4(&other_port, 0x7f000001u, 50002);
  assert_int_equal(qt_add_alias(&w, c, &other_ip), 0);
  assert_int_equal(qt_add_alias(&w, c, &other_port), 0);

  /* A first connection earns a NEW_TOKEN token for 127.0.0.1. */
  connect_from(&w, c, s, &w.nodes[c].addr, NULL, 0, &first);
  assert_int_equal(first.established, 1);
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_true(first.tokenlen > 0);

  /* Same IP, another port: accepted (NEW_TOKEN tokens bind the IP only),
   * so no Retry. */
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  connect_from(&w, c, s, &other_port, first.token, first.tokenlen, &cli);
  assert_int_equal(cli.established, 1);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.retries_sent, before.retries_sent);
  assert_int_equal(g_pool.sides[g_pool.accepted - 1].accept_validated, 1);

  /* Another IP: rejected for its address, treated as absent (RFC 9000
   * §8.1.3): the server validates with a Retry and the client gets in. */
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  connect_from(&w, c, s, &other_ip, first.token, first.tokenlen, &cli);
  assert_int_equal(cli.established, 1);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.tokens_rejected[UVQ_TOKEN_REJECT_ADDRESS],
                   before.tokens_rejected[UVQ_TOKEN_REJECT_ADDRESS] + 1);
  assert_int_equal(es.retries_sent, before.retries_sent + 1);

  /* Forged: the NEW_TOKEN type byte over random bytes. */
  for (size_t i = 0; i < sizeof(forged); i++) {
    forged[i] = (uint8_t)qt_rand(&w);
  }
  forged[0] = UVQ_TOKEN_TYPE_NEW;
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  connect_from(&w, c, s, &w.nodes[c].addr, forged, sizeof(forged), &cli);
  assert_int_equal(cli.established, 1);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.tokens_rejected[UVQ_TOKEN_REJECT_DECRYPT] +
                       es.tokens_rejected[UVQ_TOKEN_REJECT_MALFORMED],
                   before.tokens_rejected[UVQ_TOKEN_REJECT_DECRYPT] +
                       before.tokens_rejected[UVQ_TOKEN_REJECT_MALFORMED] + 1);
  assert_int_equal(es.retries_sent, before.retries_sent + 1);

  /* An unknown type byte: malformed. */
  forged[0] = 0x11;
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  connect_from(&w, c, s, &w.nodes[c].addr, forged, sizeof(forged), &cli);
  assert_int_equal(cli.established, 1);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.tokens_rejected[UVQ_TOKEN_REJECT_MALFORMED],
                   before.tokens_rejected[UVQ_TOKEN_REJECT_MALFORMED] + 1);

  /* Past its 24 h lifetime: expired, treated as absent. */
  w.wall += 86400 + 60;
  uvq_endpoint_get_stats(w.nodes[s].ep, &before);
  connect_from(&w, c, s, &w.nodes[c].addr, first.token, first.tokenlen, &cli);
  assert_int_equal(cli.established, 1);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.tokens_rejected[UVQ_TOKEN_REJECT_EXPIRED],
                   before.tokens_rejected[UVQ_TOKEN_REJECT_EXPIRED] + 1);
  assert_int_equal(es.retries_sent, before.retries_sent + 1);
  world_free(&w);
}

/* The client's Initial that carries the Retry token comes from another
 * port (a NAT rebinding between Retry and answer). */
typedef struct rebind_filter {
  int client;
  uvq_addr to;
  int rebound;
} rebind_filter;

static int rebind_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  rebind_filter *f = ud;
  if (from != f->client && p->path.local.len == f->to.len &&
      memcmp(&p->path.local.ss, &f->to.ss, f->to.len) == 0) {
    /* The NAT maps the server's answer back to the client's socket. */
    p->path.local = w->nodes[f->client].addr;
    return 0;
  }
  if (from == f->client && (p->data[0] & 0xf0) == 0xc0 && p->len > 7) {
    /* An Initial: its token length follows the CIDs. */
    size_t off = 5;
    off += 1 + p->data[off];
    off += 1 + p->data[off];
    if (off < p->len && p->data[off] != 0) {
      p->path.remote = f->to;
      f->rebound++;
    }
  }
  return 0;
}

static void test_flood_retry_token_other_port(void **state) {
  qt_world w;
  uvq_settings st;
  uvq_endpoint_stats es;
  rebind_filter f;
  qt_app cli;
  (void)state;

  world_init(&w, 46);
  uvq_settings_default(&st);
  st.retry = UVQ_RETRY_ALWAYS;
  int s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  int c = qt_add_client(&w, NULL, NULL);
  memset(&f, 0, sizeof(f));
  f.client = c;
  addr_v4(&f.to, 0x7f000001u, 50999);
  assert_int_equal(qt_add_alias(&w, c, &f.to), 0);
  w.filter = rebind_fn;
  w.filter_ud = &f;
  client_init(&cli);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, closed_or_established, &cli, 5 * UVQ_SECONDS));
  assert_true(f.rebound >= 1);
  assert_int_equal(cli.established, 0);
  assert_int_equal(cli.ci.error, UVQ_ERR_INVALID_TOKEN);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.tokens_rejected[UVQ_TOKEN_REJECT_ADDRESS], 1);
  assert_int_equal(es.initials_accepted, 0);
  assert_int_equal(g_pool.accepted, 0);
  world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flood_initials_retry_auto),
      cmocka_unit_test(test_flood_max_connections),
      cmocka_unit_test(test_flood_admission),
      cmocka_unit_test(test_flood_retry_answering),
      cmocka_unit_test(test_flood_idle_keepalive),
      cmocka_unit_test(test_flood_garbage_during_download),
      cmocka_unit_test(test_flood_new_token_rejections),
      cmocka_unit_test(test_flood_retry_token_other_port),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
