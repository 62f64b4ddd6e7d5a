/*
 * uvq_tls_config.hook: per-connection GnuTLS customisation, end to end
 * through real handshakes — certificates chosen by SNI, client
 * certificates required and verified, suites restricted, and a hook that
 * fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/tls.h"
#include "qtest.h"
#include "qtest_app.h"

/* Sides are qt_apps (qtest_app.h); the server's is the server node's
 * user_data. */
static qt_app g_srv;
static int g_accepts;

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  g_accepts++;
  return qt_app_accept(ep, conn, info, pcb, pud, ud);
}

static const char *const g_alpn[] = {"test"};

/* Replaces the world's TLS context of one side (before nodes are added). */
static void replace_ctx(qt_world *w, int server, const uvq_tls_config *cfg) {
  uvq_tls_ctx **pctx = server ? &w->server_tls : &w->client_tls;
  char err[256];
  uvq_tls_ctx_del(*pctx);
  if (uvq_tls_ctx_new(pctx, server, cfg, NULL, err, sizeof(err)) != 0) {
    fail_msg("tls ctx: %s", err);
  }
}

static int connect_sni(qt_world *w, int c, int s, const char *sni, qt_app *a) {
  uvq_connect_params p;
  uvq_connect_params_default(&p);
  p.server_name = sni;
  p.callbacks = &qt_app_callbacks;
  p.user_data = a;
  return qt_connect_params(w, c, s, &p, &a->conn);
}

static int both_established(void *ud) {
  qt_app *a = ud;
  return a->established && g_srv.established;
}

static int both_closed(void *ud) {
  qt_app *a = ud;
  return a->closed && g_srv.closed;
}

/* DER of a context's own certificate. */
static void ctx_cert_der(uvq_tls_ctx *ctx, gnutls_datum_t *der) {
  gnutls_datum_t pem = {(unsigned char *)ctx->cert_pem,
                        (unsigned)ctx->cert_pemlen};
  assert_int_equal(gnutls_pem_base64_decode2("CERTIFICATE", &pem, der), 0);
}

/* ---- 1. certificate chosen by SNI ------------------------------------- */

static uvq_tls_ctx *g_ctx_b;

static int post_client_hello(gnutls_session_t session) {
  char name[256];
  size_t len = sizeof(name);
  unsigned int type;
  if (gnutls_server_name_get(session, name, &len, &type, 0) == 0 &&
      type == GNUTLS_NAME_DNS && strcmp(name, "b.example") == 0) {
    return gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE,
                                  g_ctx_b->cred);
  }
  return 0;
}

static int sni_hook(uvq_conn *conn, gnutls_session_t session, void *ud) {
  (void)conn;
  (void)ud;
  gnutls_handshake_set_post_client_hello_function(session, post_client_hello);
  return 0;
}

static void check_sni_cert(qt_world *w, int c, int s, const char *sni,
                           uvq_tls_ctx *want) {
  qt_app cli;
  gnutls_datum_t der;
  const gnutls_datum_t *peers;
  unsigned int n = 0;
  uvq_conn_info info;

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv, 0, sizeof(g_srv));
  assert_int_equal(connect_sni(w, c, s, sni, &cli), 0);
  assert_true(qt_run(w, both_established, &cli, 5 * UVQ_SECONDS));
  uvq_conn_get_info(g_srv.conn, &info);
  assert_string_equal(info.server_name, sni);
  peers = gnutls_certificate_get_peers(cli.conn->tls, &n);
  assert_non_null(peers);
  assert_int_equal(n, 1);
  ctx_cert_der(want, &der);
  assert_int_equal(peers[0].size, der.size);
  assert_memory_equal(peers[0].data, der.data, der.size);
  gnutls_free(der.data);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  assert_true(qt_run(w, both_closed, &cli, 5 * UVQ_SECONDS));
}

static void test_tlshook_sni_certificate(void **state) {
  qt_world w;
  uvq_tls_config cfg;
  char err[256];
  (void)state;

  qt_world_init(&w, 1);
  uvq_tls_config_default(&cfg);
  cfg.alpn = g_alpn;
  cfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&g_ctx_b, 1, &cfg, NULL, err, sizeof(err)),
                   0);
  cfg.hook = sni_hook;
  replace_ctx(&w, 1, &cfg);
  int s = qt_add_server(&w, NULL, on_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);

  /* Two ephemeral certificates: different keys, different DER. */
  assert_string_not_equal(w.server_tls->cert_pem, g_ctx_b->cert_pem);
  check_sni_cert(&w, c, s, "a.example", w.server_tls);
  check_sni_cert(&w, c, s, "b.example", g_ctx_b);
  check_sni_cert(&w, c, s, "a.example", w.server_tls);
  qt_world_free(&w);
  uvq_tls_ctx_del(g_ctx_b);
  g_ctx_b = NULL;
}

/* ---- 2. client certificates ------------------------------------------- */

typedef struct pki {
  char dir[64];
  char ca[96], cli_crt[96], cli_key[96], other_crt[96], other_key[96];
} pki;

static gnutls_x509_trust_list_t g_trust;

static void write_file(const char *path, const gnutls_datum_t *d) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(d->data, 1, d->size, f), d->size);
  fclose(f);
}

/* Makes a key and a certificate for |cn| signed by |issuer| (NULL: self,
 * as a CA). */
static void make_cert(const char *cn, int is_ca, gnutls_x509_crt_t issuer,
                      gnutls_x509_privkey_t issuer_key, gnutls_x509_crt_t *pcrt,
                      gnutls_x509_privkey_t *pkey) {
  static unsigned char serial = 1;
  gnutls_x509_crt_t crt;
  gnutls_x509_privkey_t key;
  time_t now = time(NULL);
  unsigned char sn[2] = {0x40, serial++};

  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate(
                       key, GNUTLS_PK_ECDSA,
                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, sn, sizeof(sn)), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 3600), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 86400), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(crt,
                                                 GNUTLS_OID_X520_COMMON_NAME, 0,
                                                 cn, (unsigned)strlen(cn)),
                   0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_set_basic_constraints(crt, is_ca, -1), 0);
  if (is_ca) {
    assert_int_equal(gnutls_x509_crt_set_key_usage(
                         crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN),
                     0);
  } else {
    assert_int_equal(
        gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), 0);
    assert_int_equal(
        gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0),
        0);
  }
  assert_int_equal(gnutls_x509_crt_sign2(crt, issuer ? issuer : crt,
                                         issuer_key ? issuer_key : key,
                                         GNUTLS_DIG_SHA256, 0),
                   0);
  *pcrt = crt;
  *pkey = key;
}

static void save(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key,
                 const char *crt_path, const char *key_path) {
  gnutls_datum_t d;
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d), 0);
  write_file(crt_path, &d);
  gnutls_free(d.data);
  if (key_path) {
    assert_int_equal(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d),
                     0);
    write_file(key_path, &d);
    gnutls_free(d.data);
  }
}

static void pki_make(pki *p) {
  gnutls_x509_crt_t ca, other_ca, crt;
  gnutls_x509_privkey_t ca_key, other_key, key;

  snprintf(p->dir, sizeof(p->dir), "/tmp/uvq-tlshook-XXXXXX");
  assert_non_null(mkdtemp(p->dir));
  snprintf(p->ca, sizeof(p->ca), "%s/ca.pem", p->dir);
  snprintf(p->cli_crt, sizeof(p->cli_crt), "%s/client.pem", p->dir);
  snprintf(p->cli_key, sizeof(p->cli_key), "%s/client.key", p->dir);
  snprintf(p->other_crt, sizeof(p->other_crt), "%s/other.pem", p->dir);
  snprintf(p->other_key, sizeof(p->other_key), "%s/other.key", p->dir);

  make_cert("Test CA", 1, NULL, NULL, &ca, &ca_key);
  save(ca, NULL, p->ca, NULL);
  make_cert("client", 0, ca, ca_key, &crt, &key);
  save(crt, key, p->cli_crt, p->cli_key);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);

  make_cert("Other CA", 1, NULL, NULL, &other_ca, &other_key);
  make_cert("client", 0, other_ca, other_key, &crt, &key);
  save(crt, key, p->other_crt, p->other_key);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  gnutls_x509_crt_deinit(other_ca);
  gnutls_x509_privkey_deinit(other_key);
  gnutls_x509_privkey_deinit(ca_key);
  gnutls_x509_crt_deinit(ca);

  /* The server trusts the first CA only, read back from its PEM file (a
   * certificate generated in memory has no raw DN to match issuers by). */
  assert_int_equal(gnutls_x509_trust_list_init(&g_trust, 0), 0);
  assert_int_equal(gnutls_x509_trust_list_add_trust_file(
                       g_trust, p->ca, NULL, GNUTLS_X509_FMT_PEM, 0, 0),
                   1);
}

static void pki_free(pki *p) {
  unlink(p->ca);
  unlink(p->cli_crt);
  unlink(p->cli_key);
  unlink(p->other_crt);
  unlink(p->other_key);
  rmdir(p->dir);
  gnutls_x509_trust_list_deinit(g_trust, 1);
  g_trust = NULL;
}

/* Verifies the client's chain against g_trust (GnuTLS calls it once the
 * client's Certificate arrived; nonzero fails the handshake). */
static int verify_client(gnutls_session_t session) {
  const gnutls_datum_t *peers;
  unsigned int n = 0, status = 0;
  gnutls_x509_crt_t *chain;
  int rv;

  peers = gnutls_certificate_get_peers(session, &n);
  if (peers == NULL || n == 0) {
    return GNUTLS_E_NO_CERTIFICATE_FOUND;
  }
  chain = calloc(n, sizeof(*chain));
  assert_non_null(chain);
  for (unsigned int i = 0; i < n; i++) {
    assert_int_equal(gnutls_x509_crt_init(&chain[i]), 0);
    assert_int_equal(
        gnutls_x509_crt_import(chain[i], &peers[i], GNUTLS_X509_FMT_DER), 0);
  }
  rv = gnutls_x509_trust_list_verify_crt2(g_trust, chain, n, NULL, 0, 0,
                                          &status, NULL);
  for (unsigned int i = 0; i < n; i++) {
    gnutls_x509_crt_deinit(chain[i]);
  }
  free(chain);
  return rv == 0 && status == 0 ? 0 : GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
}

static int client_cert_hook(uvq_conn *conn, gnutls_session_t session,
                            void *ud) {
  (void)conn;
  (void)ud;
  gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
  gnutls_session_set_verify_function(session, verify_client);
  return 0;
}

/* One connection with client credentials |crt|/|key| (NULL: none). */
static void client_cert_run(const char *crt, const char *key, qt_app *cli) {
  qt_world w;
  uvq_tls_config cfg;

  qt_world_init(&w, 2);
  uvq_tls_config_default(&cfg);
  cfg.alpn = g_alpn;
  cfg.alpnlen = 1;
  cfg.hook = client_cert_hook;
  replace_ctx(&w, 1, &cfg);
  uvq_tls_config_default(&cfg);
  cfg.alpn = g_alpn;
  cfg.alpnlen = 1;
  cfg.insecure = 1;
  cfg.cert_file = crt;
  cfg.key_file = key;
  replace_ctx(&w, 0, &cfg);
  int s = qt_add_server(&w, NULL, on_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);
  memset(cli, 0, sizeof(*cli));
  memset(&g_srv, 0, sizeof(g_srv));
  g_accepts = 0;
  assert_int_equal(connect_sni(&w, c, s, "localhost", cli), 0);
  if (crt) {
    /* Run until the server settled too (TLS 1.3: the client completes
     * before the server has checked its certificate). */
    qt_run(&w, both_established, cli, 5 * UVQ_SECONDS);
  }
  qt_run(&w, both_closed, cli, 5 * UVQ_SECONDS);
  if (cli->closed == 0 && cli->conn) {
    /* Accepted: close cleanly so the world can be freed. */
    assert_int_equal(uvq_conn_close(cli->conn, 0, NULL), 0);
    assert_true(qt_run(&w, both_closed, cli, 5 * UVQ_SECONDS));
  }
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  qt_world_free(&w);
}

static void test_tlshook_client_cert(void **state) {
  pki p;
  qt_app cli;
  (void)state;

  pki_make(&p);

  /* The right certificate: both sides established, closed cleanly. */
  client_cert_run(p.cli_crt, p.cli_key, &cli);
  assert_int_equal(cli.established, 1);
  assert_int_equal(g_srv.established, 1);
  assert_int_equal(cli.ci.error, 0);
  assert_int_equal(g_srv.ci.error, 0);

  /* No certificate: the server ends the handshake with alert
   * certificate_required (116, RFC 8446 §4.4.2.4). */
  client_cert_run(NULL, NULL, &cli);
  assert_int_equal(g_accepts, 1);
  assert_int_equal(g_srv.established, 0);
  assert_int_equal(g_srv.closed, 1);
  assert_int_equal(g_srv.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(g_srv.ci.type, UVQ_CLOSE_TYPE_TRANSPORT);
  assert_int_equal(g_srv.ci.error, UVQ_ERR_CERT_VERIFY);
  assert_int_equal(g_srv.ci.tls_alert, 116);
  assert_int_equal(g_srv.ci.code, 0x100 + 116);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(cli.ci.type, UVQ_CLOSE_TYPE_TRANSPORT);
  assert_int_equal(cli.ci.error, UVQ_ERR_TLS_ALERT);
  assert_int_equal(cli.ci.tls_alert, 116);
  assert_int_equal(cli.ci.code, 0x100 + 116);

  /* A certificate from another CA: refused with bad_certificate (42). */
  client_cert_run(p.other_crt, p.other_key, &cli);
  assert_int_equal(g_srv.established, 0);
  assert_int_equal(g_srv.closed, 1);
  assert_int_equal(g_srv.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(g_srv.ci.error, UVQ_ERR_CERT_VERIFY);
  assert_int_equal(g_srv.ci.tls_alert, 42);
  assert_int_equal(g_srv.ci.code, 0x100 + 42);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(cli.ci.error, UVQ_ERR_TLS_ALERT);
  assert_int_equal(cli.ci.tls_alert, 42);
  assert_int_equal(cli.ci.code, 0x100 + 42);

  pki_free(&p);
}

/* ---- 3. suites restricted per connection ------------------------------ */

static int chacha_hook(uvq_conn *conn, gnutls_session_t session, void *ud) {
  (void)conn;
  (void)ud;
  return gnutls_priority_set_direct(
      session,
      "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305:"
      "%DISABLE_TLS13_COMPAT_MODE",
      NULL);
}

static void test_tlshook_chacha_only(void **state) {
  qt_world w;
  uvq_tls_config cfg;
  qt_app cli;
  (void)state;

  qt_world_init(&w, 3);
  uvq_tls_config_default(&cfg);
  cfg.alpn = g_alpn;
  cfg.alpnlen = 1;
  cfg.hook = chacha_hook;
  replace_ctx(&w, 1, &cfg);
  int s = qt_add_server(&w, NULL, on_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);
  memset(&cli, 0, sizeof(cli));
  memset(&g_srv, 0, sizeof(g_srv));
  /* The client offers AES-128-GCM first; the server only takes ChaCha. */
  assert_int_equal(connect_sni(&w, c, s, "localhost", &cli), 0);
  assert_true(qt_run(&w, both_established, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(gnutls_cipher_get(cli.conn->tls),
                   GNUTLS_CIPHER_CHACHA20_POLY1305);
  assert_int_equal(gnutls_cipher_get(g_srv.conn->tls),
                   GNUTLS_CIPHER_CHACHA20_POLY1305);
  qt_world_free(&w);
}

/* ---- 4. a failing hook ------------------------------------------------ */

static int failing_hook(uvq_conn *conn, gnutls_session_t session, void *ud) {
  (void)conn;
  (void)session;
  (*(int *)ud)++;
  return -1;
}

static void test_tlshook_failure(void **state) {
  qt_world w;
  uvq_tls_config cfg;
  uvq_endpoint_stats st;
  qt_app cli;
  int calls = 0;
  (void)state;

  /* Client: connect fails at once with UVQ_ERR_TLS, nothing is left. */
  qt_world_init(&w, 4);
  uvq_tls_config_default(&cfg);
  cfg.alpn = g_alpn;
  cfg.alpnlen = 1;
  cfg.insecure = 1;
  cfg.hook = failing_hook;
  cfg.hook_user_data = &calls;
  replace_ctx(&w, 0, &cfg);
  int s = qt_add_server(&w, NULL, on_accept, &g_srv);
  int c = qt_add_client(&w, NULL, NULL);
  memset(&cli, 0, sizeof(cli));
  assert_int_equal(connect_sni(&w, c, s, "localhost", &cli), UVQ_ERR_TLS);
  assert_int_equal(calls, 1);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  qt_world_free(&w);

  /* Server: each Initial is dropped as accept_failed, no connection is
   * created and on_accept never runs. */
  calls = 0;
  g_accepts = 0;
  qt_world_init(&w, 5);
  uvq_tls_config_default(&cfg);
  cfg.alpn = g_alpn;
  cfg.alpnlen = 1;
  cfg.hook = failing_hook;
  cfg.hook_user_data = &calls;
  replace_ctx(&w, 1, &cfg);
  s = qt_add_server(&w, NULL, on_accept, &g_srv);
  c = qt_add_client(&w, NULL, NULL);
  memset(&cli, 0, sizeof(cli));
  assert_int_equal(connect_sni(&w, c, s, "localhost", &cli), 0);
  qt_run(&w, NULL, NULL, 2 * UVQ_SECONDS);
  uvq_endpoint_get_stats(w.nodes[s].ep, &st);
  assert_true(calls >= 1);
  assert_int_equal(st.dropped[UVQ_DROP_ACCEPT_FAILED], (uint64_t)calls);
  assert_int_equal(st.initials_accepted, 0);
  assert_int_equal(st.connections_total, 0);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  assert_int_equal(g_accepts, 0);
  /* The client gets no answer and gives up at its handshake timeout
   * (20 s from the connect). */
  qt_run(&w, NULL, NULL, 20 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.error, UVQ_ERR_HANDSHAKE_TIMEOUT);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tlshook_sni_certificate),
      cmocka_unit_test(test_tlshook_client_cert),
      cmocka_unit_test(test_tlshook_chacha_only),
      cmocka_unit_test(test_tlshook_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
