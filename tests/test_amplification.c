/*
 * Amplification (RFC 9000 §8.1): before it has validated a client's
 * address, the server never sends more than three times the bytes it
 * received from that address. A wire filter counts both directions per
 * client address and checks the ratio at every server datagram, while the
 * client's later datagrams are dropped so the server can never validate —
 * with the small ephemeral certificate, and with a large certificate whose
 * first flight alone exceeds the budget. The stateless replies (Retry,
 * Version Negotiation, stateless CONNECTION_CLOSE) must each be smaller
 * than the datagram that triggered them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qtest.h"
#include "qtest_app.h"

/* ---- a minimal application (qtest_app.h) ---------------------------- */

#define MAX_SRV 8
static qt_app g_srv[MAX_SRV];
static qt_app_pool g_pool; /* the server node's user_data */

static void sides_reset(void) {
  memset(g_srv, 0, sizeof(g_srv));
  memset(&g_pool, 0, sizeof(g_pool));
  g_pool.sides = g_srv;
  g_pool.nsides = MAX_SRV;
}

/* ---- per-address accounting on the wire ------------------------------ */

#define MAX_PEERS 8

typedef struct peer_acct {
  uvq_addr addr;
  int validated; /* a Handshake or 1-RTT packet of its reached the server */
  uint64_t dgrams_from; /* datagrams the client sent (passed or not) */
  uint64_t rx;          /* bytes the server got from it */
  uint64_t tx;          /* bytes the server sent to it */
  uint64_t tx_dgrams;
} peer_acct;

typedef struct amp_filter {
  int server;
  uint64_t drop_after; /* drop each client's datagrams after this many */
  int drop_validating; /* drop client datagrams that would validate it */
  peer_acct peers[MAX_PEERS];
  int npeers;
  uint64_t checks; /* server datagrams checked */
  double worst;    /* highest tx / rx seen */
} amp_filter;

static int addr_eq(const uvq_addr *a, const uvq_addr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static peer_acct *peer_of(amp_filter *f, const uvq_addr *a) {
  for (int i = 0; i < f->npeers; i++) {
    if (addr_eq(&f->peers[i].addr, a)) {
      return &f->peers[i];
    }
  }
  assert_true(f->npeers < MAX_PEERS);
  memset(&f->peers[f->npeers], 0, sizeof(f->peers[0]));
  f->peers[f->npeers].addr = *a;
  return &f->peers[f->npeers++];
}

static size_t varint(const uint8_t *d, size_t len, uint64_t *pv) {
  size_t n;
  if (len == 0) {
    return 0;
  }
  n = (size_t)1 << (d[0] >> 6);
  if (len < n) {
    return 0;
  }
  *pv = d[0] & 0x3f;
  for (size_t i = 1; i < n; i++) {
    *pv = (*pv << 8) | d[i];
  }
  return n;
}

/* Whether a client datagram carries a packet whose receipt validates the
 * client's address (RFC 9000 §8.1: a Handshake packet; or 1-RTT), walking
 * coalesced long-header packets by their Length fields. */
static int validates(const qt_pkt *p) {
  size_t off = 0;
  while (off < p->len) {
    const uint8_t *d = p->data + off;
    size_t left = p->len - off, o, n;
    uint64_t v;
    unsigned type;
    if ((d[0] & 0x80) == 0) {
      return 1; /* short header */
    }
    type = (d[0] >> 4) & 3;
    if (type == 2) {
      return 1; /* Handshake */
    }
    if (left < 7) {
      return 0;
    }
    o = 5;
    o += 1 + d[o]; /* DCID */
    if (o >= left) {
      return 0;
    }
    o += 1 + d[o]; /* SCID */
    if (type == 0) {
      n = varint(d + o, left - o, &v); /* token */
      if (n == 0 || v > left - o - n) {
        return 0;
      }
      o += n + (size_t)v;
    }
    n = varint(d + o, left - o, &v); /* Length */
    if (n == 0 || v > left - o - n) {
      return 0;
    }
    off += o + n + (size_t)v;
  }
  return 0;
}

static int amp_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  amp_filter *f = ud;
  peer_acct *pa;
  (void)w;
  if (from == f->server) {
    /* p->path.local is the receiver's address: the client's. */
    pa = peer_of(f, &p->path.local);
    pa->tx += p->len;
    pa->tx_dgrams++;
    if (pa->validated) {
      return 0; /* no limit any more */
    }
    f->checks++;
    assert_true(pa->rx > 0);
    if ((double)pa->tx / (double)pa->rx > f->worst) {
      f->worst = (double)pa->tx / (double)pa->rx;
    }
    /* The invariant, at every step. */
    assert_true(pa->tx <= 3 * pa->rx);
    return 0;
  }
  pa = peer_of(f, &p->path.remote);
  if (++pa->dgrams_from > f->drop_after) {
    return 1; /* the server never hears from it again */
  }
  if (validates(p)) {
    if (f->drop_validating) {
      return 1;
    }
    pa->validated = 1;
  }
  pa->rx += p->len;
  return 0;
}

/* ---- a large certificate --------------------------------------------- */

/* A self-signed ECDSA certificate for "localhost" with |nsan| long DNS
 * names: its Certificate message alone exceeds 3 x 1200 bytes. Writes the
 * PEM files and returns a server context using them. */
static uvq_tls_ctx *big_cert_ctx(int nsan, size_t *pcertlen) {
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  gnutls_datum_t out;
  char certpath[] = "/tmp/uvq-amp-cert-XXXXXX";
  char keypath[] = "/tmp/uvq-amp-key-XXXXXX";
  static const char *const alpn[] = {"test", "hq-interop"};
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  uint8_t serial[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  char err[256];
  time_t now = time(NULL);
  int fd;

  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate(
                       key, GNUTLS_PK_ECDSA,
                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 3600), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 86400), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(
                       crt, GNUTLS_OID_X520_COMMON_NAME, 0, "localhost", 9),
                   0);
  assert_int_equal(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME,
                                                        "localhost", 9,
                                                        GNUTLS_FSAN_APPEND),
                   0);
  for (int i = 0; i < nsan; i++) {
    char name[64];
    int n = snprintf(name, sizeof(name),
                     "host-%04d.amplification-test.example.com", i);
    assert_int_equal(
        gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name,
                                             (unsigned)n, GNUTLS_FSAN_APPEND),
        0);
  }
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0),
                   0);

  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &out), 0);
  *pcertlen = out.size;
  gnutls_free(out.data);
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &out), 0);
  fd = mkstemp(certpath);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, out.data, out.size), (ssize_t)out.size);
  close(fd);
  gnutls_free(out.data);
  assert_int_equal(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &out),
                   0);
  fd = mkstemp(keypath);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, out.data, out.size), (ssize_t)out.size);
  close(fd);
  gnutls_free(out.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);

  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn;
  cfg.alpnlen = 2;
  cfg.cert_file = certpath;
  cfg.key_file = keypath;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
  unlink(certpath);
  unlink(keypath);
  return ctx;
}

/* ---- the scenarios --------------------------------------------------- */

typedef struct amp_result {
  uint64_t rx, tx, tx_dgrams;
  double worst;
  int established;
} amp_result;

static int all_established(void *ud) {
  qt_app *c = ud;
  return c->established;
}

/* |nclients| clients connect; each client's datagrams after the first
 * |drop_after| are dropped. Runs until every server connection is gone. */
static void run_amp(int big_cert, int nclients, uint64_t drop_after,
                    int drop_validating, amp_result *res) {
  qt_world w;
  amp_filter f;
  qt_app cli[4];
  int s, c[4];
  size_t certlen = 0;

  assert_true(nclients <= 4);
  memset(&f, 0, sizeof(f));
  memset(cli, 0, sizeof(cli));
  sides_reset();
  qt_world_init(&w, 31);
  w.delay = 10 * UVQ_MILLISECONDS;
  if (big_cert) {
    uvq_tls_ctx_del(w.server_tls);
    w.server_tls = big_cert_ctx(150, &certlen);
    assert_true(certlen > 3 * 1200);
  }
  s = qt_add_server(&w, NULL, qt_app_pool_accept, &g_pool);
  for (int i = 0; i < nclients; i++) {
    c[i] = qt_add_client(&w, NULL, NULL);
  }
  f.server = s;
  f.drop_after = drop_after;
  f.drop_validating = drop_validating;
  w.filter = amp_fn;
  w.filter_ud = &f;
  for (int i = 0; i < nclients; i++) {
    assert_int_equal(
        qt_connect(&w, c[i], s, &qt_app_callbacks, &cli[i], &cli[i].conn), 0);
  }
  if (drop_after == UINT64_MAX && !drop_validating) {
    assert_true(qt_run(&w, all_established, &cli[0], 10 * UVQ_SECONDS));
  } else {
    /* Until the server gives up (handshake timeout, 10 s by default). */
    qt_run(&w, NULL, NULL, 60 * UVQ_SECONDS);
    assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
    assert_int_equal(g_pool.accepted, nclients);
    for (int i = 0; i < nclients; i++) {
      /* The server never validated, so it never completed. */
      assert_int_equal(g_srv[i].established, 0);
    }
  }
  memset(res, 0, sizeof(*res));
  res->worst = f.worst;
  res->established = cli[0].established;
  for (int i = 0; i < f.npeers; i++) {
    res->rx += f.peers[i].rx;
    res->tx += f.peers[i].tx;
    res->tx_dgrams += f.peers[i].tx_dgrams;
    if (drop_after != UINT64_MAX || drop_validating) {
      assert_int_equal(f.peers[i].validated, 0);
      /* Per address: sent something, never more than 3x. */
      assert_true(f.peers[i].tx > 0);
      assert_true(f.peers[i].tx <= 3 * f.peers[i].rx);
    }
  }
  print_message("# %s cert (%zu B DER), %d client(s), client datagrams "
                "after %llu dropped%s: server got %llu B, sent %llu B in %llu "
                "datagrams, worst ratio %.2f (%llu checks)\n",
                big_cert ? "large" : "ephemeral", certlen, nclients,
                (unsigned long long)(drop_after == UINT64_MAX ? 0 : drop_after),
                drop_validating ? " (and any validating one)" : "",
                (unsigned long long)res->rx, (unsigned long long)res->tx,
                (unsigned long long)res->tx_dgrams, res->worst,
                (unsigned long long)f.checks);
  qt_world_free(&w);
}

static void test_amplification_small_cert(void **state) {
  amp_result r;
  (void)state;
  run_amp(0, 1, 1, 0, &r);
  assert_int_equal(r.rx, 1200);
  assert_true(r.tx <= 3 * 1200);
}

static void test_amplification_large_cert(void **state) {
  amp_result r;
  (void)state;
  /* The server's first flight wants more than 3600 bytes: the limit, not
   * the flight, bounds what goes out — across every PTO resend too. */
  run_amp(1, 1, 1, 0, &r);
  assert_int_equal(r.rx, 1200);
  assert_true(r.tx <= 3 * 1200);
  assert_true(r.tx > 2 * 1200); /* the budget was used: the limit bound */

  /* Every client datagram reaches the server except those carrying a
   * Handshake or 1-RTT packet: the budget grows 3x with each Initial. */
  run_amp(1, 1, UINT64_MAX, 1, &r);
  assert_true(r.rx >= 1200);
  assert_true(r.tx <= 3 * r.rx);
}

static void test_amplification_per_address(void **state) {
  amp_result r;
  (void)state;
  /* Three clients on three ports: each address has its own budget. */
  run_amp(1, 3, 1, 0, &r);
  assert_int_equal(r.rx, 3 * 1200);
  assert_true(r.tx <= 3 * r.rx);
}

static void test_amplification_validated(void **state) {
  amp_result r;
  (void)state;
  /* Nothing dropped: the address is validated by the client's Handshake
   * packet, the limit lifts and the handshake completes. */
  run_amp(1, 1, UINT64_MAX, 0, &r);
  assert_int_equal(r.established, 1);
}

/* ---- stateless replies are smaller than their trigger ---------------- */

typedef struct largest_filter {
  int from;
  size_t largest;
  uint64_t count;
  uint8_t first_byte;
} largest_filter;

static int largest_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  largest_filter *f = ud;
  (void)w;
  if (from == f->from) {
    if (p->len > f->largest) {
      f->largest = p->len;
    }
    f->first_byte = p->data[0];
    f->count++;
  }
  return 0;
}

/* Builds a client Initial by letting a real client write its first
 * datagram (captured, never delivered). */
typedef struct grab_filter {
  int client;
  uint8_t data[1500];
  size_t len;
} grab_filter;

static int grab_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  grab_filter *g = ud;
  (void)w;
  if (from == g->client && g->len == 0) {
    assert_true(p->len <= sizeof(g->data));
    memcpy(g->data, p->data, p->len);
    g->len = p->len;
  }
  return 1;
}

static void test_amplification_stateless_replies(void **state) {
  qt_world w;
  grab_filter g;
  largest_filter lf;
  uvq_settings st;
  uvq_endpoint_stats es;
  qt_app cli;
  uint8_t vn[1200];
  int s, c;
  (void)state;

  /* A real client Initial, captured. */
  memset(&g, 0, sizeof(g));
  memset(&cli, 0, sizeof(cli));
  sides_reset();
  qt_world_init(&w, 32);
  uvq_settings_default(&st);
  st.retry = UVQ_RETRY_ALWAYS;
  s = qt_add_server(&w, &st, qt_app_pool_accept, &g_pool);
  c = qt_add_client(&w, NULL, NULL);
  g.client = c;
  w.filter = grab_fn;
  w.filter_ud = &g;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  uvq_endpoint_flush(w.nodes[c].ep, w.now);
  assert_true(g.len >= 1200);

  /* Retry: one packet, smaller than the Initial. */
  memset(&lf, 0, sizeof(lf));
  lf.from = s;
  w.filter = largest_fn;
  w.filter_ud = &lf;
  qt_inject(&w, s, &w.nodes[c].addr, g.data, g.len);
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.retries_sent, 1);
  assert_int_equal(lf.count, 1);
  assert_int_equal((lf.first_byte & 0xf0), 0xf0); /* long header, Retry */
  assert_true(lf.largest < g.len);
  print_message("# Retry: %zu B in answer to a %zu B Initial\n", lf.largest,
                g.len);

  /* Version Negotiation: smaller than the 1200-byte probe. */
  memset(vn, 0x5a, sizeof(vn));
  vn[0] = 0xc0;
  memcpy(vn + 1, "\x1a\x2a\x3a\x4a", 4);
  vn[5] = 20;
  vn[26] = 20;
  memset(&lf, 0, sizeof(lf));
  lf.from = s;
  qt_inject(&w, s, &w.nodes[c].addr, vn, sizeof(vn));
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.version_negotiations_sent, 1);
  assert_int_equal(lf.count, 1);
  assert_true(lf.largest < sizeof(vn));
  print_message("# Version Negotiation: %zu B in answer to %zu B\n", lf.largest,
                sizeof(vn));

  /* Stateless CONNECTION_CLOSE (refusal while shutting down). */
  uvq_endpoint_close_all(w.nodes[s].ep, 0, NULL);
  memset(&lf, 0, sizeof(lf));
  lf.from = s;
  qt_inject(&w, s, &w.nodes[c].addr, g.data, g.len);
  uvq_endpoint_flush(w.nodes[s].ep, w.now);
  uvq_endpoint_get_stats(w.nodes[s].ep, &es);
  assert_int_equal(es.stateless_closes_sent, 1);
  assert_int_equal(lf.count, 1);
  assert_true(lf.largest < g.len);
  print_message("# stateless CONNECTION_CLOSE: %zu B in answer to %zu B\n",
                lf.largest, g.len);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_amplification_small_cert),
      cmocka_unit_test(test_amplification_large_cert),
      cmocka_unit_test(test_amplification_per_address),
      cmocka_unit_test(test_amplification_validated),
      cmocka_unit_test(test_amplification_stateless_replies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
