/* Tests for the TLS layer (src/core/tls.c): context creation and its
 * errors, the ephemeral certificate, peer verification, ALPN, SNI, the key
 * log, and the QUIC ClientHello. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "core/tls.h"
#include "uvquic/uvquic.h"

static char tmpdir[64];
static const char *const alpn_h3[] = {"h3"};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void path_in_tmp(char *buf, size_t buflen, const char *name) {
  snprintf(buf, buflen, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* read_file returns a NUL-terminated malloc'd copy of |path|, or NULL if
 * it does not exist. */
static char *read_file(const char *path, size_t *plen) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;

  if (f == NULL) {
    return NULL;
  }
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  if (plen) {
    *plen = (size_t)n;
  }
  return buf;
}

static void server_config(uvq_tls_config *cfg) {
  uvq_tls_config_default(cfg);
  cfg->alpn = alpn_h3;
  cfg->alpnlen = 1;
}

static uvq_tls_ctx *new_server(void) {
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  char err[256];

  server_config(&cfg);
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
  return ctx;
}

/* export_pem writes |srv|'s certificate to |name| in the temp dir. */
static void export_pem(uvq_tls_ctx *srv, const char *name, char *path,
                       size_t pathlen) {
  char pem[4096];
  ssize_t n = uvq_tls_ctx_get_cert_pem(srv, pem, sizeof(pem));

  assert_true(n > 0);
  path_in_tmp(path, pathlen, name);
  write_file(path, pem, (size_t)n);
}

static uvq_tls_ctx *new_client_trusting(uvq_tls_ctx *srv, const char *name) {
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  char ca[256], err[256];

  export_pem(srv, name, ca, sizeof(ca));
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn_h3;
  cfg.alpnlen = 1;
  cfg.ca_file = ca;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 0, &cfg, NULL, err, sizeof(err)), 0);
  return ctx;
}

/* make_cert_key writes a fresh self-signed ECDSA certificate and its key
 * as PEM files |cert_name| and |key_name| in the temp dir. */
static void make_cert_key(const char *cert_name, const char *key_name,
                          char *cert_path, char *key_path, size_t pathlen) {
  gnutls_x509_privkey_t key;
  gnutls_x509_crt_t crt;
  gnutls_datum_t out;
  uint8_t serial[8] = {0x11, 2, 3, 4, 5, 6, 7, 8};
  time_t now = time(NULL);

  assert_int_equal(gnutls_x509_privkey_init(&key), 0);
  assert_int_equal(gnutls_x509_privkey_generate(
                       key, GNUTLS_PK_ECDSA,
                       GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                   0);
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_set_version(crt, 3), 0);
  assert_int_equal(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), 0);
  assert_int_equal(gnutls_x509_crt_set_activation_time(crt, now - 60), 0);
  assert_int_equal(gnutls_x509_crt_set_expiration_time(crt, now + 3600), 0);
  assert_int_equal(gnutls_x509_crt_set_dn_by_oid(
                       crt, GNUTLS_OID_X520_COMMON_NAME, 0, "file.test", 9),
                   0);
  assert_int_equal(gnutls_x509_crt_set_key(crt, key), 0);
  assert_int_equal(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0),
                   0);

  path_in_tmp(cert_path, pathlen, cert_name);
  assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &out), 0);
  write_file(cert_path, out.data, out.size);
  gnutls_free(out.data);

  path_in_tmp(key_path, pathlen, key_name);
  assert_int_equal(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &out),
                   0);
  write_file(key_path, out.data, out.size);
  gnutls_free(out.data);

  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
}

/*
 * handshake runs a plain TLS 1.3 handshake between |c| and |s| over a
 * non-blocking socketpair in this thread. Sets *pcrv / *psrv to each side's
 * final gnutls_handshake result.
 */
static void handshake(gnutls_session_t c, gnutls_session_t s, int *pcrv,
                      int *psrv) {
  int sv[2], crv = GNUTLS_E_AGAIN, srv = GNUTLS_E_AGAIN, i;

  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
  assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
  gnutls_transport_set_int(c, sv[0]);
  gnutls_transport_set_int(s, sv[1]);

  for (i = 0; i < 1000; ++i) {
    if (crv == GNUTLS_E_AGAIN || crv == GNUTLS_E_INTERRUPTED) {
      crv = gnutls_handshake(c);
    }
    if (srv == GNUTLS_E_AGAIN || srv == GNUTLS_E_INTERRUPTED) {
      srv = gnutls_handshake(s);
    }
    if (crv != GNUTLS_E_AGAIN && srv != GNUTLS_E_AGAIN) {
      break;
    }
  }
  close(sv[0]);
  close(sv[1]);
  *pcrv = crv;
  *psrv = srv;
}

/* A pair of plain-TLS sessions configured by uvq_tls_session_configure. */
typedef struct pair {
  gnutls_session_t c, s;
  int crv, srv;
} pair;

static void pair_run(pair *p, uvq_tls_ctx *cctx, uvq_tls_ctx *sctx,
                     const char *server_name) {
  assert_int_equal(gnutls_init(&p->c, GNUTLS_CLIENT), 0);
  assert_int_equal(gnutls_init(&p->s, GNUTLS_SERVER), 0);
  assert_int_equal(uvq_tls_session_configure(cctx, p->c, server_name), 0);
  assert_int_equal(uvq_tls_session_configure(sctx, p->s, NULL), 0);
  handshake(p->c, p->s, &p->crv, &p->srv);
}

static void pair_free(pair *p) {
  uvq_tls_session_del(p->c);
  uvq_tls_session_del(p->s);
}

/* ------------------------------------------------------------------------ */
/* Context creation                                                         */
/* ------------------------------------------------------------------------ */

static void test_tls_config_default_sets_version(void **state) {
  uvq_tls_config cfg;
  (void)state;

  memset(&cfg, 0xff, sizeof(cfg));
  uvq_tls_config_default(&cfg);
  assert_int_equal(cfg.version, UVQ_TLS_CONFIG_VERSION);
  assert_null(cfg.cert_file);
  assert_null(cfg.alpn);
  assert_int_equal(cfg.alpnlen, 0);
  assert_int_equal(cfg.insecure, 0);
  assert_null(cfg.keylog);
  assert_null(cfg.wall_time);
}

static void test_tls_server_ephemeral_cert(void **state) {
  uvq_tls_ctx *ctx = new_server();
  char pem[4096], san[64];
  ssize_t n;
  gnutls_x509_crt_t crt;
  gnutls_datum_t d;
  size_t sanlen;
  unsigned int i, bits, critical;
  int type, have_dns = 0, have_ip4 = 0, have_ip6 = 0;
  static const uint8_t ip4[4] = {127, 0, 0, 1};
  static const uint8_t ip6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 1};
  (void)state;

  assert_true(uvq_tls_ctx_is_server(ctx));
  n = uvq_tls_ctx_get_cert_pem(ctx, NULL, 0);
  assert_true(n > 0);
  assert_int_equal(uvq_tls_ctx_get_cert_pem(ctx, pem, (size_t)n),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem)), n);
  assert_int_equal(strlen(pem), (size_t)n);
  assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));

  d.data = (unsigned char *)pem;
  d.size = (unsigned int)n;
  assert_int_equal(gnutls_x509_crt_init(&crt), 0);
  assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);

  for (i = 0;; ++i) {
    sanlen = sizeof(san);
    type = gnutls_x509_crt_get_subject_alt_name(crt, i, san, &sanlen, NULL);
    if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
      break;
    }
    assert_true(type >= 0);
    if (type == GNUTLS_SAN_DNSNAME && sanlen == 9 &&
        memcmp(san, "localhost", 9) == 0) {
      have_dns = 1;
    } else if (type == GNUTLS_SAN_IPADDRESS && sanlen == 4 &&
               memcmp(san, ip4, 4) == 0) {
      have_ip4 = 1;
    } else if (type == GNUTLS_SAN_IPADDRESS && sanlen == 16 &&
               memcmp(san, ip6, 16) == 0) {
      have_ip6 = 1;
    }
  }
  assert_true(have_dns);
  assert_true(have_ip4);
  assert_true(have_ip6);

  assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, &bits),
                   GNUTLS_PK_ECDSA);
  assert_int_equal(bits, 256);
  assert_int_equal(gnutls_x509_crt_get_signature_algorithm(crt),
                   GNUTLS_SIGN_ECDSA_SHA256);
  assert_int_equal(
      gnutls_x509_crt_get_basic_constraints(crt, &critical, NULL, NULL),
      0); /* CA:FALSE */
  assert_int_equal(gnutls_x509_crt_get_expiration_time(crt) -
                       gnutls_x509_crt_get_activation_time(crt),
                   7 * 24 * 3600 + 3600);
  /* Self-signed: verifies against itself. */
  assert_int_equal(gnutls_x509_crt_check_issuer(crt, crt), 1);

  gnutls_x509_crt_deinit(crt);
  uvq_tls_ctx_del(ctx);
}

static uint64_t fixed_wall_time(void *user_data) {
  return *(const uint64_t *)user_data;
}

/* import_own_cert parses |ctx|'s own certificate into *pcrt. */
static void import_own_cert(uvq_tls_ctx *ctx, gnutls_x509_crt_t *pcrt) {
  char pem[4096];
  ssize_t n = uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem));
  gnutls_datum_t d;

  assert_true(n > 0);
  d.data = (unsigned char *)pem;
  d.size = (unsigned int)n;
  assert_int_equal(gnutls_x509_crt_init(pcrt), 0);
  assert_int_equal(gnutls_x509_crt_import(*pcrt, &d, GNUTLS_X509_FMT_PEM), 0);
}

/* The ephemeral certificate is dated by the config's wall clock, not the
 * system's: two far-apart injected times give certificates valid around
 * each. */
static void test_tls_ephemeral_cert_wall_time(void **state) {
  static const uint64_t walls[] = {1700000000, 2000000000};
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  gnutls_x509_crt_t crt;
  uint64_t wall;
  time_t before, after;
  char err[256];
  (void)state;

  for (size_t i = 0; i < sizeof(walls) / sizeof(walls[0]); ++i) {
    wall = walls[i];
    server_config(&cfg);
    cfg.wall_time = fixed_wall_time;
    cfg.user_data = &wall;
    assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
    import_own_cert(ctx, &crt);
    before = gnutls_x509_crt_get_activation_time(crt);
    after = gnutls_x509_crt_get_expiration_time(crt);
    assert_true(before < (time_t)wall && (time_t)wall - before <= 24 * 3600);
    assert_true(after > (time_t)wall);
    gnutls_x509_crt_deinit(crt);
    uvq_tls_ctx_del(ctx);
  }
}

static void test_tls_ephemeral_certs_differ(void **state) {
  uvq_tls_ctx *a = new_server(), *b = new_server();
  char pa[4096], pb[4096];
  (void)state;

  assert_true(uvq_tls_ctx_get_cert_pem(a, pa, sizeof(pa)) > 0);
  assert_true(uvq_tls_ctx_get_cert_pem(b, pb, sizeof(pb)) > 0);
  assert_string_not_equal(pa, pb);
  uvq_tls_ctx_del(a);
  uvq_tls_ctx_del(b);
}

static void test_tls_server_cert_files_loaded(void **state) {
  char cert[256], key[256], pem[4096], err[256];
  char *file_pem;
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  ssize_t n;
  (void)state;

  make_cert_key("srv.crt", "srv.key", cert, key, sizeof(cert));
  server_config(&cfg);
  cfg.cert_file = cert;
  cfg.key_file = key;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
  n = uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem));
  assert_true(n > 0);
  file_pem = read_file(cert, NULL);
  assert_non_null(file_pem);
  assert_string_equal(pem, file_pem);
  free(file_pem);
  uvq_tls_ctx_del(ctx);
}

/* uvq_tls_ctx_reload: a new certificate for new sessions; a file that does
 * not load changes nothing; no cert_file keeps the one in use. */
static void test_tls_reload(void **state) {
  char c1[256], k1[256], c2[256], k2[256], bad[300], pem[4096], err[512];
  char *p1, *p2;
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL, *cli = NULL;
  FILE *f;
  (void)state;

  make_cert_key("r1.crt", "r1.key", c1, k1, sizeof(c1));
  make_cert_key("r2.crt", "r2.key", c2, k2, sizeof(c2));
  snprintf(bad, sizeof(bad), "%s.bad", c1);
  f = fopen(bad, "w");
  assert_non_null(f);
  fputs("not a certificate\n", f);
  fclose(f);
  p1 = read_file(c1, NULL);
  p2 = read_file(c2, NULL);
  assert_non_null(p1);
  assert_non_null(p2);
  server_config(&cfg);
  cfg.cert_file = c1;
  cfg.key_file = k1;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);

  cfg.cert_file = c2;
  cfg.key_file = k2;
  assert_int_equal(uvq_tls_ctx_reload(ctx, &cfg, err, sizeof(err)), 0);
  assert_true(uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem)) > 0);
  assert_string_equal(pem, p2);

  cfg.cert_file = bad;
  assert_int_equal(uvq_tls_ctx_reload(ctx, &cfg, err, sizeof(err)),
                   UVQ_ERR_CERT_FILE);
  assert_non_null(strstr(err, bad));
  cfg.cert_file = c1; /* with k2: a mismatch */
  assert_int_equal(uvq_tls_ctx_reload(ctx, &cfg, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_true(uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem)) > 0);
  assert_string_equal(pem, p2);

  cfg.cert_file = NULL;
  cfg.key_file = NULL;
  assert_int_equal(uvq_tls_ctx_reload(ctx, &cfg, err, sizeof(err)), 0);
  assert_true(uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem)) > 0);
  assert_string_equal(pem, p2);

  /* Only for servers. */
  server_config(&cfg);
  cfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)), 0);
  assert_int_equal(uvq_tls_ctx_reload(cli, &cfg, err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(ctx);
  free(p1);
  free(p2);
  unlink(bad);
}

static void test_tls_missing_cert_file(void **state) {
  char cert[256], key[256], missing[256], err[256];
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  (void)state;

  make_cert_key("m.crt", "m.key", cert, key, sizeof(cert));
  path_in_tmp(missing, sizeof(missing), "does-not-exist.crt");
  server_config(&cfg);
  cfg.cert_file = missing;
  cfg.key_file = key;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_CERT_FILE);
  assert_null(ctx);
  assert_non_null(strstr(err, missing));
  assert_non_null(strstr(err, "No such file"));
}

static void test_tls_garbage_cert_file(void **state) {
  char cert[256], key[256], bad[256], err[256];
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  (void)state;

  make_cert_key("g.crt", "g.key", cert, key, sizeof(cert));
  path_in_tmp(bad, sizeof(bad), "garbage.crt");
  write_file(bad, "not a certificate\n", 18);
  server_config(&cfg);
  cfg.cert_file = bad;
  cfg.key_file = key;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_CERT_FILE);
  assert_non_null(strstr(err, bad));
}

static void test_tls_garbage_key_file(void **state) {
  char cert[256], key[256], bad[256], err[256];
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  static const char junk[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                             "-----END PRIVATE KEY-----\n";
  (void)state;

  make_cert_key("k.crt", "k.key", cert, key, sizeof(cert));
  path_in_tmp(bad, sizeof(bad), "garbage.key");
  write_file(bad, junk, sizeof(junk) - 1);
  server_config(&cfg);
  cfg.cert_file = cert;
  cfg.key_file = bad;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_null(ctx);
  assert_non_null(strstr(err, bad));

  /* A missing key is a key problem too, not a certificate one. */
  path_in_tmp(bad, sizeof(bad), "missing.key");
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_non_null(strstr(err, bad));
}

static void test_tls_key_not_matching_cert(void **state) {
  char cert1[256], key1[256], cert2[256], key2[256], err[256];
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  (void)state;

  make_cert_key("a.crt", "a.key", cert1, key1, sizeof(cert1));
  make_cert_key("b.crt", "b.key", cert2, key2, sizeof(cert2));
  server_config(&cfg);
  cfg.cert_file = cert1;
  cfg.key_file = key2;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_non_null(strstr(err, key2));
  assert_non_null(strstr(err, "does not match"));
}

static void test_tls_only_one_of_cert_and_key(void **state) {
  char cert[256], key[256], err[256];
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  int is_server;
  (void)state;

  make_cert_key("o.crt", "o.key", cert, key, sizeof(cert));
  for (is_server = 0; is_server < 2; ++is_server) {
    server_config(&cfg);
    cfg.insecure = 1;
    cfg.cert_file = cert;
    assert_int_equal(
        uvq_tls_ctx_new(&ctx, is_server, &cfg, NULL, err, sizeof(err)),
        UVQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "key_file"));
    cfg.cert_file = NULL;
    cfg.key_file = key;
    assert_int_equal(
        uvq_tls_ctx_new(&ctx, is_server, &cfg, NULL, err, sizeof(err)),
        UVQ_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
  }
}

static void test_tls_alpn_required_and_bounded(void **state) {
  static const char *const empty[] = {""};
  static const char *const too_long[] = {"0123456789abcdef0123456789abcdef"};
  static const char *const longest[] = {"0123456789abcdef0123456789abcde"};
  static const char *const nine[] = {"a", "b", "c", "d", "e",
                                     "f", "g", "h", "i"};
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  char err[256];
  (void)state;

  uvq_tls_config_default(&cfg);
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(err, "alpn"));
  cfg.alpn = alpn_h3;
  cfg.alpnlen = 0;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  cfg.alpn = empty;
  cfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  cfg.alpn = too_long;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  cfg.alpn = nine;
  cfg.alpnlen = 9;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_null(ctx);

  /* The limits themselves are fine, and a session takes the list. */
  cfg.alpnlen = 8;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
  uvq_tls_ctx_del(ctx);
  cfg.alpn = longest;
  cfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
  uvq_tls_ctx_del(ctx);
}

static void test_tls_bad_ciphers(void **state) {
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  char err[256];
  (void)state;

  server_config(&cfg);
  cfg.ciphers = "-CIPHER-ALL:+NO-SUCH-CIPHER";
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_TLS_CONFIG);
  assert_null(ctx);
  assert_non_null(strstr(err, "NO-SUCH-CIPHER"));

  /* Parses, but nothing is left to negotiate. */
  cfg.ciphers = "-CIPHER-ALL";
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_TLS_CONFIG);
  assert_null(ctx);
}

static void test_tls_bad_version(void **state) {
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  (void)state;

  server_config(&cfg);
  cfg.version = 0;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, NULL, 0),
                   UVQ_ERR_INVALID_ARGUMENT);
  /* Version 1 is read up to its end (a heap block of exactly that size:
   * ASan catches a read past it), and its keylog_file must be NULL. */
  {
    size_t v1len = offsetof(uvq_tls_config, wall_time);
    unsigned char *v1 = malloc(v1len);
    const char *keylog_file = "keys.log";
    char err[256];

    assert_non_null(v1);
    cfg.version = 1;
    memcpy(v1, &cfg, v1len);
    assert_int_equal(uvq_tls_ctx_new(&ctx, 1,
                                     (const uvq_tls_config *)(void *)v1, NULL,
                                     NULL, 0),
                     0);
    uvq_tls_ctx_del(ctx);
    ctx = NULL;
    memcpy(v1 + offsetof(uvq_tls_config, keylog_file), &keylog_file,
           sizeof(keylog_file));
    assert_int_equal(uvq_tls_ctx_new(&ctx, 1,
                                     (const uvq_tls_config *)(void *)v1, NULL,
                                     err, sizeof(err)),
                     UVQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "keylog_file"));
    assert_null(ctx);
    free(v1);
  }
  cfg.version = UVQ_TLS_CONFIG_VERSION + 1;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, NULL, 0),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_tls_ctx_new(NULL, 1, &cfg, NULL, NULL, 0),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, NULL, NULL, NULL, 0),
                   UVQ_ERR_INVALID_ARGUMENT);
}

static void test_tls_client_ca_file(void **state) {
  uvq_tls_ctx *srv = new_server(), *cli;
  uvq_tls_config cfg;
  char path[256], err[256];
  (void)state;

  cli = new_client_trusting(srv, "ca.pem");
  assert_false(uvq_tls_ctx_is_server(cli));
  /* A client has no certificate of its own unless given one. */
  assert_int_equal(uvq_tls_ctx_get_cert_pem(cli, NULL, 0),
                   UVQ_ERR_INVALID_STATE);
  uvq_tls_ctx_del(cli);

  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn_h3;
  cfg.alpnlen = 1;
  path_in_tmp(path, sizeof(path), "no-such-ca.pem");
  cfg.ca_file = path;
  cli = NULL;
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_CA_FILE);
  assert_null(cli);
  assert_non_null(strstr(err, path));

  path_in_tmp(path, sizeof(path), "empty-ca.pem");
  write_file(path, "nothing here\n", 13);
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)),
                   UVQ_ERR_CA_FILE);
  assert_non_null(strstr(err, path));
  uvq_tls_ctx_del(srv);
}

static void test_tls_client_cert_optional(void **state) {
  char cert[256], key[256], pem[4096], err[256];
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  (void)state;

  make_cert_key("cli.crt", "cli.key", cert, key, sizeof(cert));
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn_h3;
  cfg.alpnlen = 1;
  cfg.insecure = 1;
  cfg.cert_file = cert;
  cfg.key_file = key;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 0, &cfg, NULL, err, sizeof(err)), 0);
  assert_true(uvq_tls_ctx_get_cert_pem(ctx, pem, sizeof(pem)) > 0);
  uvq_tls_ctx_del(ctx);
}

/* A uvq_mem that fails the |fail_at|-th allocation (0-based). */
typedef struct failmem {
  size_t count, fail_at, live;
} failmem;

static void *fm_malloc(size_t size, void *ud) {
  failmem *fm = ud;
  void *p;

  if (fm->count++ == fm->fail_at) {
    return NULL;
  }
  p = malloc(size);
  fm->live += p != NULL;
  return p;
}

static void fm_free(void *ptr, void *ud) {
  failmem *fm = ud;

  fm->live -= ptr != NULL;
  free(ptr);
}

static void *fm_calloc(size_t nmemb, size_t size, void *ud) {
  failmem *fm = ud;
  void *p;

  if (fm->count++ == fm->fail_at) {
    return NULL;
  }
  p = calloc(nmemb, size);
  fm->live += p != NULL;
  return p;
}

static void *fm_realloc(void *ptr, size_t size, void *ud) {
  (void)ptr;
  (void)size;
  (void)ud;
  return NULL;
}

static void test_tls_ctx_new_allocation_failures(void **state) {
  static const char *const alpn2[] = {"h3", "hq-interop"};
  uvq_tls_ctx *srv = new_server(), *ctx;
  uvq_tls_config cfg;
  char ca[256], err[256];
  failmem fm;
  uvq_mem mem = {&fm, fm_malloc, fm_free, fm_calloc, fm_realloc};
  int is_server, rv, failures;
  (void)state;

  export_pem(srv, "fm-ca.pem", ca, sizeof(ca));
  for (is_server = 0; is_server < 2; ++is_server) {
    uvq_tls_config_default(&cfg);
    cfg.alpn = alpn2;
    cfg.alpnlen = 2;
    cfg.ca_file = is_server ? NULL : ca;
    failures = 0;
    for (fm.fail_at = 0;; ++fm.fail_at) {
      fm.count = fm.live = 0;
      ctx = NULL;
      rv = uvq_tls_ctx_new(&ctx, is_server, &cfg, &mem, err, sizeof(err));
      if (rv == 0) {
        assert_true(fm.count <= fm.fail_at);
        assert_true(fm.live > 0);
        uvq_tls_ctx_del(ctx);
        assert_int_equal(fm.live, 0);
        break;
      }
      assert_int_equal(rv, UVQ_ERR_NOMEM);
      assert_null(ctx);
      assert_int_equal(fm.live, 0);
      ++failures;
    }
    /* ctx, two ALPN copies, the priority string, the certificate PEM. */
    assert_true(failures >= (is_server ? 5 : 4));
  }
  uvq_tls_ctx_del(srv);
}

/* ------------------------------------------------------------------------ */
/* Sessions                                                                 */
/* ------------------------------------------------------------------------ */

/* What a keylog callback received: the lines, concatenated. */
typedef struct keylog_sink {
  char text[8192];
  size_t len;
  size_t calls;
  int bad_line;
} keylog_sink;

static void keylog_collect(const char *line, size_t len, void *user_data) {
  keylog_sink *k = user_data;

  k->calls++;
  if (len == 0 || line[len - 1] != '\n' || line[len] != '\0' ||
      memchr(line, '\n', len - 1) != NULL) {
    k->bad_line = 1;
  }
  if (k->len + len < sizeof(k->text)) {
    memcpy(k->text + k->len, line, len + 1);
    k->len += len;
  }
}

static void test_tls_keylog_callback(void **state) {
  uvq_tls_ctx *srv = new_server(), *cli, *cli_none;
  uvq_tls_config cfg;
  keylog_sink sink;
  char ca[256], envlog[256], err[256], crand_hex[65];
  gnutls_datum_t crand, srand;
  const char *labels[] = {"CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                          "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                          "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"};
  char needle[128];
  const char *p;
  size_t i, count;
  pair pr;
  (void)state;

  /* Run first: GnuTLS reads SSLKEYLOGFILE only once per process. The
   * library must leave it alone: its file stays untouched throughout. */
  path_in_tmp(envlog, sizeof(envlog), "env-keylog.txt");
  unlink(envlog);
  setenv("SSLKEYLOGFILE", envlog, 1);
  export_pem(srv, "kl-ca.pem", ca, sizeof(ca));
  memset(&sink, 0, sizeof(sink));
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn_h3;
  cfg.alpnlen = 1;
  cfg.ca_file = ca;
  cfg.keylog = keylog_collect;
  cfg.user_data = &sink;
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)), 0);

  pair_run(&pr, cli, srv, "localhost");
  assert_int_equal(pr.crv, 0);
  assert_int_equal(pr.srv, 0);
  gnutls_session_get_random(pr.c, &crand, &srand);
  assert_int_equal(crand.size, 32);
  for (i = 0; i < 32; ++i) {
    snprintf(crand_hex + 2 * i, 3, "%02x", crand.data[i]);
  }
  pair_free(&pr);

  /* Each secret once, one whole line per call, for this handshake. */
  assert_false(sink.bad_line);
  assert_true(sink.calls >= 4);
  for (i = 0; i < sizeof(labels) / sizeof(labels[0]); ++i) {
    snprintf(needle, sizeof(needle), "%s %s ", labels[i], crand_hex);
    count = 0;
    for (p = sink.text; (p = strstr(p, needle)) != NULL; ++p) {
      ++count;
    }
    assert_int_equal(count, 1);
  }

  /* No callback: no key log anywhere, SSLKEYLOGFILE notwithstanding. */
  cfg.keylog = NULL;
  assert_int_equal(uvq_tls_ctx_new(&cli_none, 0, &cfg, NULL, err, sizeof(err)),
                   0);
  pair_run(&pr, cli_none, srv, "localhost");
  assert_int_equal(pr.crv, 0);
  pair_free(&pr);
  assert_null(read_file(envlog, NULL));
  unsetenv("SSLKEYLOGFILE");

  uvq_tls_ctx_del(cli_none);
  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(srv);
}

static void test_tls_verify_names(void **state) {
  uvq_tls_ctx *srv = new_server(), *cli;
  const uint8_t *alpn;
  size_t alpnlen;
  char sni[256];
  pair p;
  (void)state;

  cli = new_client_trusting(srv, "v-ca.pem");

  pair_run(&p, cli, srv, "localhost");
  assert_int_equal(p.crv, 0);
  assert_int_equal(p.srv, 0);
  assert_int_equal(uvq_tls_session_get_sni(p.s, sni, sizeof(sni)), 0);
  assert_string_equal(sni, "localhost");
  assert_int_equal(uvq_tls_session_get_sni(p.s, sni, 5),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_tls_session_get_alpn(p.c, &alpn, &alpnlen), 0);
  assert_int_equal(alpnlen, 2);
  assert_memory_equal(alpn, "h3", 2);
  pair_free(&p);

  /* IP literals: no SNI on the wire, verified against iPAddress SANs. */
  pair_run(&p, cli, srv, "127.0.0.1");
  assert_int_equal(p.crv, 0);
  assert_int_equal(p.srv, 0);
  assert_int_equal(uvq_tls_session_get_sni(p.s, sni, sizeof(sni)),
                   UVQ_ERR_INVALID_STATE);
  pair_free(&p);

  pair_run(&p, cli, srv, "::1");
  assert_int_equal(p.crv, 0);
  assert_int_equal(uvq_tls_session_get_sni(p.s, sni, sizeof(sni)),
                   UVQ_ERR_INVALID_STATE);
  pair_free(&p);

  pair_run(&p, cli, srv, "example.com");
  assert_int_equal(p.crv, GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR);
  assert_true(gnutls_session_get_verify_cert_status(p.c) &
              GNUTLS_CERT_UNEXPECTED_OWNER);
  assert_true(p.srv < 0);
  pair_free(&p);

  pair_run(&p, cli, srv, "10.0.0.1");
  assert_int_equal(p.crv, GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR);
  pair_free(&p);

  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(srv);
}

static void test_tls_verify_rejects_untrusted(void **state) {
  uvq_tls_ctx *srv = new_server(), *other = new_server(), *cli;
  pair p;
  (void)state;

  /* Trusts another server's certificate, not this one. */
  cli = new_client_trusting(other, "other-ca.pem");
  pair_run(&p, cli, srv, "localhost");
  assert_int_equal(p.crv, GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR);
  /* Both ephemeral certificates are named CN=localhost, so GnuTLS tries
   * the trusted one as issuer and finds the signature wrong. */
  assert_true(gnutls_session_get_verify_cert_status(p.c) & GNUTLS_CERT_INVALID);
  pair_free(&p);
  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(other);
  uvq_tls_ctx_del(srv);
}

static void test_tls_insecure_accepts_any(void **state) {
  uvq_tls_ctx *srv = new_server(), *cli = NULL;
  uvq_tls_config cfg;
  char err[256];
  pair p;
  (void)state;

  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn_h3;
  cfg.alpnlen = 1;
  cfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)), 0);
  pair_run(&p, cli, srv, "example.com");
  assert_int_equal(p.crv, 0);
  assert_int_equal(p.srv, 0);
  pair_free(&p);
  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(srv);
}

static void test_tls_alpn_server_precedence_and_mismatch(void **state) {
  static const char *const srv_alpn[] = {"h3", "hq-interop"};
  static const char *const cli_alpn[] = {"hq-interop", "h3"};
  static const char *const other_alpn[] = {"smtp"};
  uvq_tls_ctx *srv = NULL, *cli = NULL, *cli2 = NULL;
  uvq_tls_config cfg;
  const uint8_t *alpn;
  size_t alpnlen;
  char err[256];
  pair p;
  (void)state;

  uvq_tls_config_default(&cfg);
  cfg.alpn = srv_alpn;
  cfg.alpnlen = 2;
  assert_int_equal(uvq_tls_ctx_new(&srv, 1, &cfg, NULL, err, sizeof(err)), 0);
  cfg.alpn = cli_alpn;
  cfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)), 0);
  cfg.alpn = other_alpn;
  cfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&cli2, 0, &cfg, NULL, err, sizeof(err)), 0);

  pair_run(&p, cli, srv, "localhost");
  assert_int_equal(p.crv, 0);
  assert_int_equal(uvq_tls_session_get_alpn(p.s, &alpn, &alpnlen), 0);
  assert_int_equal(alpnlen, 2);
  assert_memory_equal(alpn, "h3", 2);
  pair_free(&p);

  pair_run(&p, cli2, srv, "localhost");
  assert_int_equal(p.srv, GNUTLS_E_NO_APPLICATION_PROTOCOL);
  assert_int_equal(uvq_tls_session_get_alpn(p.s, &alpn, &alpnlen),
                   UVQ_ERR_INVALID_STATE);
  pair_free(&p);

  uvq_tls_ctx_del(cli2);
  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(srv);
}

static void test_tls_ciphers_force_chacha(void **state) {
  uvq_tls_ctx *srv = NULL, *cli = NULL;
  uvq_tls_config cfg;
  char err[256];
  pair p;
  (void)state;

  server_config(&cfg);
  cfg.ciphers = "-CIPHER-ALL:+CHACHA20-POLY1305";
  assert_int_equal(uvq_tls_ctx_new(&srv, 1, &cfg, NULL, err, sizeof(err)), 0);
  server_config(&cfg);
  cfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&cli, 0, &cfg, NULL, err, sizeof(err)), 0);

  pair_run(&p, cli, srv, "localhost");
  assert_int_equal(p.crv, 0);
  assert_int_equal(gnutls_protocol_get_version(p.c), GNUTLS_TLS1_3);
  assert_int_equal(gnutls_cipher_get(p.c), GNUTLS_CIPHER_CHACHA20_POLY1305);
  pair_free(&p);

  /* The default prefers AES-128-GCM. */
  uvq_tls_ctx_del(srv);
  server_config(&cfg);
  assert_int_equal(uvq_tls_ctx_new(&srv, 1, &cfg, NULL, err, sizeof(err)), 0);
  pair_run(&p, cli, srv, "localhost");
  assert_int_equal(p.crv, 0);
  assert_int_equal(gnutls_cipher_get(p.c), GNUTLS_CIPHER_AES_128_GCM);
  pair_free(&p);

  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(srv);
}

/* ---- QUIC sessions: the ClientHello a real ngtcp2 client sends ---------- */

typedef struct quic_client {
  ngtcp2_crypto_conn_ref ref; /* first: the GnuTLS session pointer */
  ngtcp2_conn *conn;
  uint8_t hello[2048];
  size_t hellolen;
} quic_client;

static ngtcp2_conn *qc_get_conn(ngtcp2_crypto_conn_ref *ref) {
  return ((quic_client *)ref)->conn;
}

static void qc_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *rctx) {
  (void)rctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int qc_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                      size_t cidlen, void *user_data) {
  (void)conn;
  (void)user_data;
  gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

/* Replaces ngtcp2's read function to capture the ClientHello. */
static int qc_capture(gnutls_session_t session,
                      gnutls_record_encryption_level_t level,
                      gnutls_handshake_description_t htype, const void *data,
                      size_t len) {
  quic_client *qc = gnutls_session_get_ptr(session);
  (void)level;
  if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO && len <= sizeof(qc->hello)) {
    memcpy(qc->hello, data, len);
    qc->hellolen = len;
  }
  return 0;
}

static void test_tls_quic_client_hello(void **state) {
  uvq_tls_ctx *srv = new_server(), *cli;
  quic_client qc;
  gnutls_session_t s, ss;
  struct sockaddr_in addr;
  ngtcp2_path path;
  ngtcp2_callbacks cb;
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_cid dcid, scid;
  size_t off;
  int rv;
  (void)state;

  cli = new_client_trusting(srv, "q-ca.pem");
  memset(&qc, 0, sizeof(qc));
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(4433);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  path.local.addr = (ngtcp2_sockaddr *)&addr;
  path.local.addrlen = sizeof(addr);
  path.remote = path.local;
  path.user_data = NULL;
  memset(&cb, 0, sizeof(cb));
  cb.client_initial = ngtcp2_crypto_client_initial_cb;
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb.rand = qc_rand;
  cb.get_new_connection_id = qc_new_cid;
  dcid.datalen = 16;
  scid.datalen = 16;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  ngtcp2_settings_default(&settings);
  ngtcp2_transport_params_default(&params);
  assert_int_equal(ngtcp2_conn_client_new(&qc.conn, &dcid, &scid, &path,
                                          NGTCP2_PROTO_VER_V1, &cb, &settings,
                                          &params, NULL, &qc),
                   0);

  assert_int_equal(uvq_tls_session_new(cli, &s, "localhost"), 0);
  qc.ref.get_conn = qc_get_conn;
  qc.ref.user_data = &qc;
  gnutls_session_set_ptr(s, &qc.ref);
  ngtcp2_conn_set_tls_native_handle(qc.conn, s);
  gnutls_handshake_set_read_function(s, qc_capture);
  rv = gnutls_handshake(s);
  assert_int_equal(rv, GNUTLS_E_AGAIN);

  /* type(1) length(3) legacy_version(2) random(32) legacy_session_id */
  assert_true(qc.hellolen > 4 + 2 + 32 + 1);
  assert_int_equal(qc.hello[0], 1);
  off = 4 + 2 + 32;
  assert_int_equal(qc.hello[off], 0); /* RFC 9001 §8.4 */
  /* SNI and ALPN are in it; the QUIC transport parameters extension
   * (0x39) too, added by ngtcp2_crypto. */
  assert_non_null(memmem(qc.hello, qc.hellolen, "localhost", 9));
  assert_non_null(memmem(qc.hello, qc.hellolen, "\x02h3", 3));
  assert_non_null(memmem(qc.hello, qc.hellolen, "\x00\x39", 2));

  uvq_tls_session_del(s);
  ngtcp2_conn_del(qc.conn);

  /* A server session is created the same way. */
  assert_int_equal(uvq_tls_session_new(srv, &ss, NULL), 0);
  uvq_tls_session_del(ss);
  uvq_tls_session_del(NULL);

  uvq_tls_ctx_del(cli);
  uvq_tls_ctx_del(srv);
}

/* ------------------------------------------------------------------------ */

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/uvq-test-tls-XXXXXX");
  return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state) {
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  char path[512];
  (void)state;

  if (d == NULL) {
    return -1;
  }
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
      unlink(path);
    }
  }
  closedir(d);
  return rmdir(tmpdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls_keylog_callback),
      cmocka_unit_test(test_tls_config_default_sets_version),
      cmocka_unit_test(test_tls_server_ephemeral_cert),
      cmocka_unit_test(test_tls_ephemeral_cert_wall_time),
      cmocka_unit_test(test_tls_ephemeral_certs_differ),
      cmocka_unit_test(test_tls_server_cert_files_loaded),
      cmocka_unit_test(test_tls_reload),
      cmocka_unit_test(test_tls_missing_cert_file),
      cmocka_unit_test(test_tls_garbage_cert_file),
      cmocka_unit_test(test_tls_garbage_key_file),
      cmocka_unit_test(test_tls_key_not_matching_cert),
      cmocka_unit_test(test_tls_only_one_of_cert_and_key),
      cmocka_unit_test(test_tls_alpn_required_and_bounded),
      cmocka_unit_test(test_tls_bad_ciphers),
      cmocka_unit_test(test_tls_bad_version),
      cmocka_unit_test(test_tls_client_ca_file),
      cmocka_unit_test(test_tls_client_cert_optional),
      cmocka_unit_test(test_tls_ctx_new_allocation_failures),
      cmocka_unit_test(test_tls_verify_names),
      cmocka_unit_test(test_tls_verify_rejects_untrusted),
      cmocka_unit_test(test_tls_insecure_accepts_any),
      cmocka_unit_test(test_tls_alpn_server_precedence_and_mismatch),
      cmocka_unit_test(test_tls_ciphers_force_chacha),
      cmocka_unit_test(test_tls_quic_client_hello),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
