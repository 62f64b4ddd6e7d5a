/* TLS layer: GnuTLS contexts (credentials, priorities, ALPN, key log) and
 * the per-connection sessions built from them. */
#include "core/tls.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "core/mem.h"
#include "core/qlog_guard.h"

/*
 * TLS 1.3 only, AEADs QUIC can use for packet protection, and no
 * middlebox-compatibility mode: RFC 9001 §8.4 forbids it, and GnuTLS 3.7.9
 * otherwise puts a 32-byte legacy_session_id in the ClientHello even for a
 * QUIC session (tests/test_tls.c checks that it does not).
 */
static const char prio_base[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"
    "+GROUP-SECP384R1:+GROUP-X448:+GROUP-SECP521R1:%DISABLE_TLS13_COMPAT_MODE";

/* Lifetime of the ephemeral certificate, and how far back it starts so
 * that peers with a slightly slow clock accept it. */
#define EPHEMERAL_BACKDATE (60 * 60)
#define EPHEMERAL_LIFETIME (7 * 24 * 60 * 60)

/* The anti-replay database; see replay_db_add. */
#define REPLAY_WINDOW_MS 10000u
#define REPLAY_BUCKETS 1024
#define REPLAY_WAYS 4

typedef struct replay_entry {
  int64_t expires; /* seconds, GnuTLS's clock; 0 = free */
  uint8_t digest[32];
} replay_entry;

struct uvq_replay_db {
  pthread_mutex_t lock;
  replay_entry e[REPLAY_BUCKETS][REPLAY_WAYS];
};

static int gnutls_to_uvq(int rv) {
  return rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : UVQ_ERR_TLS;
}

void uvq_tls_config_default(uvq_tls_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_TLS_CONFIG_VERSION;
}

typedef struct uvq_tls_retired {
  struct uvq_tls_retired *next;
  gnutls_certificate_credentials_t cred;
} uvq_tls_retired;

static void tls_ctx_free(uvq_tls_ctx *ctx) {
  size_t i;

  while (ctx->retired) {
    uvq_tls_retired *r = ctx->retired;
    ctx->retired = r->next;
    gnutls_certificate_free_credentials(r->cred);
    uvq_free(ctx->mem, r);
  }
  if (ctx->prio) {
    gnutls_priority_deinit(ctx->prio);
  }
  if (ctx->cred) {
    gnutls_certificate_free_credentials(ctx->cred);
  }
  for (i = 0; i < ctx->alpnlen; ++i) {
    uvq_free(ctx->mem, ctx->alpn[i].data);
  }
  uvq_free(ctx->mem, ctx->cert_pem);
  if (ctx->ticket_key.data) {
    gnutls_memset(ctx->ticket_key.data, 0, ctx->ticket_key.size);
    gnutls_free(ctx->ticket_key.data);
  }
  if (ctx->anti_replay) {
    gnutls_anti_replay_deinit(ctx->anti_replay);
  }
  if (ctx->anti_replay_off) {
    gnutls_anti_replay_deinit(ctx->anti_replay_off);
  }
  if (ctx->replay_db) {
    pthread_mutex_destroy(&ctx->replay_db->lock);
    uvq_free(ctx->mem, ctx->replay_db);
  }
  uvq_free(ctx->mem, ctx);
}

void uvq_tls_ctx_del(uvq_tls_ctx *ctx) {
  if (ctx == NULL) {
    return;
  }
  tls_ctx_free(ctx);
}

static int check_alpn(const uvq_tls_config *cfg, char *errbuf,
                      size_t errbuflen) {
  size_t i, len;

  if (cfg->alpn == NULL || cfg->alpnlen == 0) {
    uvq_set_errbuf(errbuf, errbuflen,
                   "alpn: at least one protocol is required");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (cfg->alpnlen > UVQ_TLS_MAX_ALPN) {
    uvq_set_errbuf(errbuf, errbuflen,
                   "alpn: %zu protocols given, GnuTLS takes at most %d",
                   cfg->alpnlen, UVQ_TLS_MAX_ALPN);
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  for (i = 0; i < cfg->alpnlen; ++i) {
    if (cfg->alpn[i] == NULL) {
      uvq_set_errbuf(errbuf, errbuflen, "alpn[%zu] is NULL", i);
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    len = strlen(cfg->alpn[i]);
    if (len == 0 || len > UVQ_TLS_MAX_ALPN_NAME) {
      uvq_set_errbuf(
          errbuf, errbuflen,
          "alpn[%zu]: length %zu, must be 1..%d bytes (GnuTLS limit)", i, len,
          UVQ_TLS_MAX_ALPN_NAME);
      return UVQ_ERR_INVALID_ARGUMENT;
    }
  }
  return 0;
}

static int copy_alpn(uvq_tls_ctx *ctx, const uvq_tls_config *cfg) {
  size_t i, len;

  for (i = 0; i < cfg->alpnlen; ++i) {
    len = strlen(cfg->alpn[i]);
    ctx->alpn[i].data = uvq_memdup(ctx->mem, cfg->alpn[i], len);
    if (ctx->alpn[i].data == NULL) {
      return UVQ_ERR_NOMEM;
    }
    ctx->alpn[i].size = (unsigned int)len;
    ctx->alpnlen = i + 1;
  }
  return 0;
}

/* has_tls13_suite returns nonzero if |prio| enables a TLS 1.3 cipher
 * suite; a priority string may parse and still leave none. */
static int has_tls13_suite(gnutls_priority_t prio) {
  unsigned int i, sidx;
  gnutls_protocol_t minver;
  int rv;

  for (i = 0;; ++i) {
    rv = gnutls_priority_get_cipher_suite_index(prio, i, &sidx);
    if (rv == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
      return 0;
    }
    if (rv != 0) {
      continue;
    }
    if (gnutls_cipher_suite_info(sidx, NULL, NULL, NULL, NULL, &minver) &&
        minver == GNUTLS_TLS1_3) {
      return 1;
    }
  }
}

static int init_priority(uvq_tls_ctx *ctx, const char *ciphers, char *errbuf,
                         size_t errbuflen) {
  size_t baselen = sizeof(prio_base) - 1, extralen = 0, off;
  const char *errpos = NULL;
  char *s;
  int rv;

  if (ciphers != NULL && ciphers[0] != '\0') {
    extralen = strlen(ciphers);
  }
  s = uvq_malloc(ctx->mem, baselen + 1 + extralen + 1);
  if (s == NULL) {
    return UVQ_ERR_NOMEM;
  }
  memcpy(s, prio_base, baselen);
  if (extralen) {
    s[baselen] = ':';
    memcpy(s + baselen + 1, ciphers, extralen + 1);
  } else {
    s[baselen] = '\0';
  }

  rv = gnutls_priority_init(&ctx->prio, s, &errpos);
  if (rv != 0) {
    ctx->prio = NULL;
    if (rv == GNUTLS_E_MEMORY_ERROR) {
      rv = UVQ_ERR_NOMEM;
    } else if (errpos != NULL && extralen && errpos >= s + baselen + 1) {
      off = (size_t)(errpos - (s + baselen + 1));
      uvq_set_errbuf(errbuf, errbuflen,
                     "ciphers: bad GnuTLS priority string \"%s\" at offset %zu "
                     "(\"%s\"): %s",
                     ciphers, off, ciphers + off, gnutls_strerror(rv));
      rv = UVQ_ERR_TLS_CONFIG;
    } else {
      uvq_set_errbuf(
          errbuf, errbuflen, "TLS priority string \"%s\" rejected%s%s: %s", s,
          errpos ? " at " : "", errpos ? errpos : "", gnutls_strerror(rv));
      rv = UVQ_ERR_TLS_CONFIG;
    }
    uvq_free(ctx->mem, s);
    return rv;
  }
  uvq_free(ctx->mem, s);

  if (!has_tls13_suite(ctx->prio)) {
    uvq_set_errbuf(errbuf, errbuflen,
                   "ciphers: \"%s\" leaves no TLS 1.3 cipher suite enabled",
                   ciphers ? ciphers : "");
    return UVQ_ERR_TLS_CONFIG;
  }
  return 0;
}

/* store_cert_pem keeps the PEM of |crt| as the context's own certificate. */
static int store_cert_pem(uvq_tls_ctx *ctx, gnutls_x509_crt_t crt) {
  gnutls_datum_t out = {NULL, 0};
  int rv;

  rv = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &out);
  if (rv != 0) {
    return gnutls_to_uvq(rv);
  }
  uvq_free(ctx->mem, ctx->cert_pem);
  ctx->cert_pem = uvq_memdup(ctx->mem, out.data, out.size);
  ctx->cert_pemlen = out.size;
  gnutls_free(out.data);
  if (ctx->cert_pem == NULL) {
    ctx->cert_pemlen = 0;
    return UVQ_ERR_NOMEM;
  }
  return 0;
}

/* load_file reads |path| and, on failure, names the OS reason when there
 * is one (gnutls_load_file only says "error while reading file"). */
static int load_file(const char *path, gnutls_datum_t *d, const char *what,
                     char *errbuf, size_t errbuflen) {
  int rv, e;

  errno = 0;
  rv = gnutls_load_file(path, d);
  if (rv < 0) {
    e = errno;
    uvq_set_errbuf(errbuf, errbuflen, "%s %s: %s", what, path,
                   e ? strerror(e) : gnutls_strerror(rv));
    d->data = NULL;
    return rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : -1;
  }
  return 0;
}

/*
 * load_cert_key loads a PEM chain and its key into the credentials. Each
 * file is parsed on its own first so the error says which one is bad;
 * gnutls_certificate_set_x509_key_file alone does not tell.
 */
static int load_cert_key(uvq_tls_ctx *ctx, const char *cert_file,
                         const char *key_file, char *errbuf, size_t errbuflen) {
  gnutls_datum_t cd = {NULL, 0}, kd = {NULL, 0};
  gnutls_x509_crt_t *crts = NULL;
  unsigned int ncrts = 0, i;
  gnutls_x509_privkey_t key = NULL;
  int rv;

  rv = load_file(cert_file, &cd, "cannot read certificate file", errbuf,
                 errbuflen);
  if (rv != 0) {
    rv = rv == UVQ_ERR_NOMEM ? rv : UVQ_ERR_CERT_FILE;
    goto fail;
  }
  rv = gnutls_x509_crt_list_import2(&crts, &ncrts, &cd, GNUTLS_X509_FMT_PEM, 0);
  if (rv < 0 || ncrts == 0) {
    uvq_set_errbuf(errbuf, errbuflen,
                   "certificate file %s: no PEM certificate: %s", cert_file,
                   rv < 0 ? gnutls_strerror(rv) : "empty");
    rv = rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : UVQ_ERR_CERT_FILE;
    goto fail;
  }
  rv = store_cert_pem(ctx, crts[0]);
  if (rv != 0) {
    goto fail;
  }

  rv = load_file(key_file, &kd, "cannot read key file", errbuf, errbuflen);
  if (rv != 0) {
    rv = rv == UVQ_ERR_NOMEM ? rv : UVQ_ERR_KEY_FILE;
    goto fail;
  }
  rv = gnutls_x509_privkey_init(&key);
  if (rv != 0) {
    key = NULL;
    rv = gnutls_to_uvq(rv);
    goto fail;
  }
  rv = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
  if (rv != 0) {
    uvq_set_errbuf(errbuf, errbuflen,
                   "key file %s: no usable PEM private key: %s", key_file,
                   gnutls_strerror(rv));
    rv = rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : UVQ_ERR_KEY_FILE;
    goto fail;
  }

  rv = gnutls_certificate_set_x509_key_mem2(ctx->cred, &cd, &kd,
                                            GNUTLS_X509_FMT_PEM, NULL, 0);
  if (rv < 0) {
    if (rv == GNUTLS_E_MEMORY_ERROR) {
      rv = UVQ_ERR_NOMEM;
    } else if (rv == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
      uvq_set_errbuf(errbuf, errbuflen,
                     "key file %s does not match certificate %s", key_file,
                     cert_file);
      rv = UVQ_ERR_KEY_FILE;
    } else {
      uvq_set_errbuf(errbuf, errbuflen, "certificate %s with key %s: %s",
                     cert_file, key_file, gnutls_strerror(rv));
      rv = UVQ_ERR_CERT_FILE;
    }
    goto fail;
  }
  rv = 0;

fail:
  if (key) {
    gnutls_x509_privkey_deinit(key);
  }
  for (i = 0; i < ncrts; ++i) {
    gnutls_x509_crt_deinit(crts[i]);
  }
  gnutls_free(crts);
  if (kd.data) {
    gnutls_memset(kd.data, 0, kd.size);
    gnutls_free(kd.data);
  }
  gnutls_free(cd.data);
  return rv;
}

/*
 * gen_ephemeral makes a self-signed ECDSA P-256 certificate for
 * "localhost", 127.0.0.1 and ::1 and installs it. It is an end-entity
 * certificate (CA:FALSE): GnuTLS accepts a certificate found verbatim in
 * the trust list without treating it as an issuer, so a client can use
 * the exported PEM as its CA file (tests/test_tls.c checks this).
 */
static int gen_ephemeral(uvq_tls_ctx *ctx, time_t now, char *errbuf,
                         size_t errbuflen) {
  static const uint8_t ip4[4] = {127, 0, 0, 1};
  static const uint8_t ip6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 1};
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  uint8_t serial[16];
  uint8_t keyid[64];
  size_t keyidlen = sizeof(keyid);
  int rv;

  rv = gnutls_x509_privkey_init(&key);
  if (rv != 0) {
    key = NULL;
    goto fail;
  }
  rv = gnutls_x509_privkey_generate(
      key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1),
      0);
  if (rv != 0) {
    goto fail;
  }
  rv = gnutls_x509_crt_init(&crt);
  if (rv != 0) {
    crt = NULL;
    goto fail;
  }
  /* A positive 128-bit serial with no leading zero octet. */
  rv = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  if (rv != 0) {
    goto fail;
  }
  serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x40);

  if ((rv = gnutls_x509_crt_set_version(crt, 3)) != 0 ||
      (rv = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) != 0 ||
      (rv = gnutls_x509_crt_set_activation_time(
           crt, now - EPHEMERAL_BACKDATE)) != 0 ||
      (rv = gnutls_x509_crt_set_expiration_time(
           crt, now + EPHEMERAL_LIFETIME)) != 0 ||
      (rv = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                          "localhost", 9)) != 0 ||
      (rv = gnutls_x509_crt_set_subject_alt_name(
           crt, GNUTLS_SAN_DNSNAME, "localhost", 9, GNUTLS_FSAN_APPEND)) != 0 ||
      (rv = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip4,
                                                 sizeof(ip4),
                                                 GNUTLS_FSAN_APPEND)) != 0 ||
      (rv = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip6,
                                                 sizeof(ip6),
                                                 GNUTLS_FSAN_APPEND)) != 0 ||
      (rv = gnutls_x509_crt_set_key(crt, key)) != 0 ||
      (rv = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) !=
          0 ||
      (rv = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER,
                                                0)) != 0 ||
      (rv = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) != 0 ||
      (rv = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, keyid,
                                       &keyidlen)) != 0 ||
      (rv = gnutls_x509_crt_set_subject_key_id(crt, keyid, keyidlen)) != 0 ||
      (rv = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) != 0) {
    goto fail;
  }

  rv = gnutls_certificate_set_x509_key(ctx->cred, &crt, 1, key);
  if (rv < 0) {
    goto fail;
  }
  rv = store_cert_pem(ctx, crt);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  return rv;

fail:
  uvq_set_errbuf(errbuf, errbuflen, "cannot generate ephemeral certificate: %s",
                 gnutls_strerror(rv));
  if (crt) {
    gnutls_x509_crt_deinit(crt);
  }
  if (key) {
    gnutls_x509_privkey_deinit(key);
  }
  return rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : UVQ_ERR_TLS_CONFIG;
}

static int load_trust(uvq_tls_ctx *ctx, const uvq_tls_config *cfg, char *errbuf,
                      size_t errbuflen) {
  int rv;

  if (cfg->ca_file != NULL) {
    rv = gnutls_certificate_set_x509_trust_file(ctx->cred, cfg->ca_file,
                                                GNUTLS_X509_FMT_PEM);
    if (rv <= 0) {
      uvq_set_errbuf(errbuf, errbuflen, "CA file %s: %s", cfg->ca_file,
                     rv < 0 ? gnutls_strerror(rv) : "no PEM certificate in it");
      return rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : UVQ_ERR_CA_FILE;
    }
    return 0;
  }
  if (cfg->insecure) {
    return 0;
  }
  rv = gnutls_certificate_set_x509_system_trust(ctx->cred);
  if (rv <= 0) {
    uvq_set_errbuf(errbuf, errbuflen, "system trust store: %s",
                   rv < 0 ? gnutls_strerror(rv) : "no certificate found");
    return rv == GNUTLS_E_MEMORY_ERROR ? UVQ_ERR_NOMEM : UVQ_ERR_CA_FILE;
  }
  return 0;
}

/*
 * The anti-replay database (RFC 8446 §8.2): GnuTLS derives a key from the
 * ClientHello's PSK binder and the start of the current recording window
 * and asks us to add it; a key already present is a replay, and its early
 * data is refused (the handshake goes on in 1-RTT). Entries live for the
 * window. Bounded: REPLAY_BUCKETS x REPLAY_WAYS SHA-256 digests; when a
 * bucket is full of live entries the ClientHello's early data is refused
 * too, so the table fails closed. Endpoints on several threads may share
 * the context, hence the lock.
 */
static int replay_db_add(void *ptr, time_t exp_time, const gnutls_datum_t *key,
                         const gnutls_datum_t *data) {
  struct uvq_replay_db *db = ptr;
  /* GnuTLS gives exp_time = its now + the window: recover its now rather
   * than reading a clock of our own. */
  int64_t now = (int64_t)exp_time - REPLAY_WINDOW_MS / 1000;
  uint8_t digest[32];
  replay_entry *b, *slot = NULL;
  size_t bucket;
  int rv = GNUTLS_E_DB_ERROR;

  (void)data;
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, key->data, key->size, digest) != 0) {
    return GNUTLS_E_DB_ERROR;
  }
  bucket = ((size_t)digest[0] << 8 | digest[1]) % REPLAY_BUCKETS;
  pthread_mutex_lock(&db->lock);
  b = db->e[bucket];
  for (size_t i = 0; i < REPLAY_WAYS; i++) {
    if (b[i].expires > now) {
      if (memcmp(b[i].digest, digest, sizeof(digest)) == 0) {
        rv = GNUTLS_E_DB_ENTRY_EXISTS;
        goto out;
      }
    } else if (slot == NULL) {
      slot = &b[i];
    }
  }
  if (slot) {
    slot->expires = (int64_t)exp_time;
    memcpy(slot->digest, digest, sizeof(digest));
    rv = 0;
  }
out:
  pthread_mutex_unlock(&db->lock);
  return rv;
}

/* Records nothing: every ClientHello inside the window is accepted. */
static int replay_db_add_none(void *ptr, time_t exp_time,
                              const gnutls_datum_t *key,
                              const gnutls_datum_t *data) {
  (void)ptr;
  (void)exp_time;
  (void)key;
  (void)data;
  return 0;
}

/* Server: the ticket master key and the anti-replay state for 0-RTT. */
static int init_resumption(uvq_tls_ctx *ctx, const uvq_tls_config *cfg,
                           char *errbuf, size_t errbuflen) {
  int rv;

  if (cfg->ticket_key != NULL) {
    if (cfg->ticket_keylen != UVQ_TICKET_KEYLEN) {
      uvq_set_errbuf(errbuf, errbuflen, "ticket_key: %zu bytes, must be %d",
                     cfg->ticket_keylen, UVQ_TICKET_KEYLEN);
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    /* gnutls_malloc: freed like a generated key, with gnutls_free. */
    ctx->ticket_key.data = gnutls_malloc(UVQ_TICKET_KEYLEN);
    if (ctx->ticket_key.data == NULL) {
      return UVQ_ERR_NOMEM;
    }
    memcpy(ctx->ticket_key.data, cfg->ticket_key, UVQ_TICKET_KEYLEN);
    ctx->ticket_key.size = UVQ_TICKET_KEYLEN;
  } else {
    rv = gnutls_session_ticket_key_generate(&ctx->ticket_key);
    if (rv != 0) {
      ctx->ticket_key.data = NULL;
      goto fail;
    }
  }
  ctx->replay_db = uvq_calloc(ctx->mem, 1, sizeof(*ctx->replay_db));
  if (ctx->replay_db == NULL) {
    return UVQ_ERR_NOMEM;
  }
  if (pthread_mutex_init(&ctx->replay_db->lock, NULL) != 0) {
    uvq_free(ctx->mem, ctx->replay_db);
    ctx->replay_db = NULL;
    return UVQ_ERR_NOMEM;
  }
  rv = gnutls_anti_replay_init(&ctx->anti_replay);
  if (rv != 0) {
    ctx->anti_replay = NULL;
    goto fail;
  }
  gnutls_anti_replay_set_window(ctx->anti_replay, REPLAY_WINDOW_MS);
  gnutls_anti_replay_set_add_function(ctx->anti_replay, replay_db_add);
  gnutls_anti_replay_set_ptr(ctx->anti_replay, ctx->replay_db);
  rv = gnutls_anti_replay_init(&ctx->anti_replay_off);
  if (rv != 0) {
    ctx->anti_replay_off = NULL;
    goto fail;
  }
  gnutls_anti_replay_set_window(ctx->anti_replay_off, REPLAY_WINDOW_MS);
  gnutls_anti_replay_set_add_function(ctx->anti_replay_off, replay_db_add_none);
  return 0;

fail:
  uvq_set_errbuf(errbuf, errbuflen, "session tickets: %s", gnutls_strerror(rv));
  return gnutls_to_uvq(rv);
}

int uvq_tls_ctx_new(uvq_tls_ctx **pctx, int is_server,
                    const uvq_tls_config *cfg, const uvq_mem *mem, char *errbuf,
                    size_t errbuflen) {
  uvq_tls_config local;
  uvq_tls_ctx *ctx;
  int rv;

  if (errbuf != NULL && errbuflen > 0) {
    errbuf[0] = '\0';
  }
  if (pctx == NULL || cfg == NULL) {
    uvq_set_errbuf(errbuf, errbuflen, "pctx and cfg are required");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (cfg->version < 1 || cfg->version > UVQ_TLS_CONFIG_VERSION) {
    uvq_set_errbuf(errbuf, errbuflen, "unknown uvq_tls_config version %d",
                   cfg->version);
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  /* Read by version: a version-1 struct ends before wall_time; what it
   * lacks reads as zero. */
  memset(&local, 0, sizeof(local));
  memcpy(&local, cfg,
         cfg->version == 1 ? offsetof(uvq_tls_config, wall_time)
                           : sizeof(local));
  cfg = &local;
  if (cfg->keylog_file != NULL) {
    uvq_set_errbuf(errbuf, errbuflen,
                   "keylog_file is no longer supported: give a keylog "
                   "callback (the tools read SSLKEYLOGFILE)");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = check_alpn(cfg, errbuf, errbuflen);
  if (rv != 0) {
    return rv;
  }
  if ((cfg->cert_file == NULL) != (cfg->key_file == NULL)) {
    uvq_set_errbuf(errbuf, errbuflen, "%s given without %s",
                   cfg->cert_file ? "cert_file" : "key_file",
                   cfg->cert_file ? "key_file" : "cert_file");
    return UVQ_ERR_INVALID_ARGUMENT;
  }

  if (mem == NULL) {
    mem = uvq_mem_default();
  }
  ctx = uvq_calloc(mem, 1, sizeof(*ctx));
  if (ctx == NULL) {
    return UVQ_ERR_NOMEM;
  }
  ctx->mem = mem;
  ctx->is_server = is_server != 0;
  ctx->insecure = !is_server && cfg->insecure;
  ctx->hook = cfg->hook;
  ctx->hook_user_data = cfg->hook_user_data;
  ctx->keylog = cfg->keylog;
  ctx->keylog_user_data = cfg->user_data;

  rv = copy_alpn(ctx, cfg);
  if (rv != 0) {
    goto fail;
  }
  rv = init_priority(ctx, cfg->ciphers, errbuf, errbuflen);
  if (rv != 0) {
    goto fail;
  }
  rv = gnutls_certificate_allocate_credentials(&ctx->cred);
  if (rv != 0) {
    ctx->cred = NULL;
    rv = gnutls_to_uvq(rv);
    goto fail;
  }

  if (cfg->cert_file != NULL) {
    rv = load_cert_key(ctx, cfg->cert_file, cfg->key_file, errbuf, errbuflen);
  } else if (ctx->is_server) {
    /* The caller's clock when it gives one, so a test world's certificate
     * is dated by the world's wall time. */
    rv = gen_ephemeral(ctx,
                       cfg->wall_time ? (time_t)cfg->wall_time(cfg->user_data)
                                      : time(NULL),
                       errbuf, errbuflen);
  }
  if (rv != 0) {
    goto fail;
  }
  if (!ctx->is_server) {
    rv = load_trust(ctx, cfg, errbuf, errbuflen);
    if (rv != 0) {
      goto fail;
    }
  } else {
    rv = init_resumption(ctx, cfg, errbuf, errbuflen);
    if (rv != 0) {
      goto fail;
    }
  }
  *pctx = ctx;
  return 0;

fail:
  if (rv == UVQ_ERR_NOMEM) {
    uvq_set_errbuf(errbuf, errbuflen, "out of memory");
  }
  tls_ctx_free(ctx);
  return rv;
}

int uvq_tls_ctx_reload(uvq_tls_ctx *ctx, const uvq_tls_config *cfg,
                       char *errbuf, size_t errbuflen) {
  uvq_tls_retired *r;
  uvq_tls_ctx *fresh = NULL;
  gnutls_certificate_credentials_t cred;
  gnutls_datum_t tk;
  char *pem;
  size_t pemlen;
  int rv;

  if (ctx == NULL || cfg == NULL || !ctx->is_server) {
    uvq_set_errbuf(errbuf, errbuflen, "a server context and cfg are required");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  r = uvq_malloc(ctx->mem, sizeof(*r));
  if (r == NULL) {
    uvq_set_errbuf(errbuf, errbuflen, "out of memory");
    return UVQ_ERR_NOMEM;
  }
  /* A whole context built and checked the usual way; then its
   * credentials, certificate and (if given) ticket key change hands. */
  rv = uvq_tls_ctx_new(&fresh, 1, cfg, ctx->mem, errbuf, errbuflen);
  if (rv != 0) {
    uvq_free(ctx->mem, r);
    return rv;
  }
  if (cfg->cert_file != NULL) {
    cred = ctx->cred;
    ctx->cred = fresh->cred;
    fresh->cred = NULL;
    r->cred = cred;
    r->next = ctx->retired;
    ctx->retired = r;
    r = NULL;
    pem = ctx->cert_pem;
    pemlen = ctx->cert_pemlen;
    ctx->cert_pem = fresh->cert_pem;
    ctx->cert_pemlen = fresh->cert_pemlen;
    fresh->cert_pem = pem;
    fresh->cert_pemlen = pemlen;
  }
  uvq_free(ctx->mem, r);
  if (cfg->ticket_key != NULL) {
    tk = ctx->ticket_key;
    ctx->ticket_key = fresh->ticket_key;
    fresh->ticket_key = tk;
  }
  tls_ctx_free(fresh);
  return 0;
}

int uvq_tls_ctx_is_server(const uvq_tls_ctx *ctx) { return ctx->is_server; }

int uvq_tls_ctx_derive_ticket_key(const uvq_tls_ctx *ctx, const uint8_t *info,
                                  size_t infolen,
                                  uint8_t out[UVQ_TICKET_KEYLEN]) {
  static const uint8_t salt[] = "uvquic session ticket key v1";
  uint8_t prk[32];
  gnutls_datum_t ikm, sd, prkd, infod;
  int rv;

  if (!ctx->is_server || ctx->ticket_key.data == NULL) {
    return UVQ_ERR_INVALID_STATE;
  }
  ikm.data = ctx->ticket_key.data;
  ikm.size = ctx->ticket_key.size;
  sd.data = (unsigned char *)(uintptr_t)salt;
  sd.size = sizeof(salt) - 1;
  rv = gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &sd, prk);
  if (rv != 0) {
    return UVQ_ERR_INTERNAL;
  }
  prkd.data = prk;
  prkd.size = sizeof(prk);
  infod.data = (unsigned char *)(uintptr_t)info;
  infod.size = (unsigned int)infolen;
  rv = gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &prkd, &infod, out,
                          UVQ_TICKET_KEYLEN);
  gnutls_memset(prk, 0, sizeof(prk));
  return rv == 0 ? 0 : UVQ_ERR_INTERNAL;
}

ssize_t uvq_tls_ctx_get_cert_pem(uvq_tls_ctx *ctx, char *buf, size_t buflen) {
  if (ctx == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (ctx->cert_pem == NULL) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (buf == NULL) {
    return (ssize_t)ctx->cert_pemlen;
  }
  if (buflen <= ctx->cert_pemlen) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  memcpy(buf, ctx->cert_pem, ctx->cert_pemlen + 1);
  return (ssize_t)ctx->cert_pemlen;
}

/*
 * keylog_cb hands one NSS key log line to uvq_tls_config.keylog. It
 * replaces GnuTLS's own writer (which honours SSLKEYLOGFILE by itself), so
 * every line is seen once, by the caller.
 */
static int keylog_cb(gnutls_session_t session, const char *label,
                     const gnutls_datum_t *secret) {
  static const char hex[] = "0123456789abcdef";
  const uvq_tls_ctx *ctx = gnutls_db_get_ptr(session);
  gnutls_datum_t crand, srand;
  char line[512];
  size_t labellen, n, i;

  if (ctx == NULL || ctx->keylog == NULL) {
    return 0;
  }
  gnutls_session_get_random(session, &crand, &srand);
  labellen = strlen(label);
  if (labellen + 1 + crand.size * 2 + 1 + secret->size * 2 + 2 > sizeof(line)) {
    return 0;
  }
  memcpy(line, label, labellen);
  n = labellen;
  line[n++] = ' ';
  for (i = 0; i < crand.size; ++i) {
    line[n++] = hex[crand.data[i] >> 4];
    line[n++] = hex[crand.data[i] & 0xf];
  }
  line[n++] = ' ';
  for (i = 0; i < secret->size; ++i) {
    line[n++] = hex[secret->data[i] >> 4];
    line[n++] = hex[secret->data[i] & 0xf];
  }
  line[n++] = '\n';
  line[n] = '\0';
  ctx->keylog(line, n, ctx->keylog_user_data);
  gnutls_memset(line, 0, sizeof(line));
  return 0;
}

static int is_ip_literal(const char *name) {
  uint8_t addr[16];

  return inet_pton(AF_INET, name, addr) == 1 ||
         inet_pton(AF_INET6, name, addr) == 1;
}

int uvq_tls_session_configure(uvq_tls_ctx *ctx, gnutls_session_t session,
                              const char *server_name) {
  unsigned int alpn_flags = GNUTLS_ALPN_MANDATORY;
  int rv;

  rv = gnutls_priority_set(session, ctx->prio);
  if (rv != 0) {
    return gnutls_to_uvq(rv);
  }
  rv = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, ctx->cred);
  if (rv != 0) {
    return gnutls_to_uvq(rv);
  }
  if (ctx->is_server) {
    alpn_flags |= GNUTLS_ALPN_SERVER_PRECEDENCE;
  }
  rv = gnutls_alpn_set_protocols(session, ctx->alpn, (unsigned)ctx->alpnlen,
                                 alpn_flags);
  if (rv != 0) {
    return gnutls_to_uvq(rv);
  }

  gnutls_db_set_ptr(session, ctx);
  /* NULL also switches off GnuTLS's own SSLKEYLOGFILE writer: the key log
   * goes to uvq_tls_config.keylog or nowhere. */
  gnutls_session_set_keylog_function(session,
                                     ctx->keylog != NULL ? keylog_cb : NULL);

  if (ctx->is_server) {
    return 0;
  }
  if (server_name != NULL && server_name[0] != '\0' &&
      !is_ip_literal(server_name)) {
    rv = gnutls_server_name_set(session, GNUTLS_NAME_DNS, server_name,
                                strlen(server_name));
    if (rv != 0) {
      return gnutls_to_uvq(rv);
    }
  }
  if (!ctx->insecure) {
    /* GnuTLS matches a textual IP address against iPAddress SANs only
     * (GNUTLS_DT_DNS_HOSTNAME), so one call covers names and IPs. */
    gnutls_session_set_verify_cert(
        session, server_name && server_name[0] ? server_name : NULL, 0);
  }
  return 0;
}

/* Server: tickets always; 0-RTT if asked (RFC 9001 §4.6.1 wants
 * max_early_data_size 0xffffffff in tickets that allow it). GnuTLS refuses
 * early data on a session without an anti-replay context. */
static int configure_resumption(uvq_tls_ctx *ctx, gnutls_session_t session,
                                unsigned int opts,
                                const gnutls_datum_t *ticket_key) {
  int rv;

  rv = gnutls_session_ticket_enable_server(
      session, ticket_key ? ticket_key : &ctx->ticket_key);
  if (rv != 0) {
    return gnutls_to_uvq(rv);
  }
  if (opts & UVQ_TLS_SESSION_EARLY_DATA) {
    rv = gnutls_record_set_max_early_data_size(session, 0xffffffffu);
    if (rv != 0) {
      return gnutls_to_uvq(rv);
    }
    gnutls_anti_replay_enable(session, (opts & UVQ_TLS_SESSION_ANTI_REPLAY)
                                           ? ctx->anti_replay
                                           : ctx->anti_replay_off);
  }
  return 0;
}

/*
 * The client's QUIC glue under the qlog guard (UVQ_TLS_SESSION_QLOG_GUARD).
 * ngtcp2_crypto_gnutls registers its quic_transport_parameters handler
 * with gnutls_session_ext_register, which refuses a second handler for
 * the same extension on a session (GNUTLS_E_ALREADY_REGISTERED) and has
 * no getter, so the guard cannot wrap ngtcp2's handler: these functions
 * take the place of everything ngtcp2_crypto_gnutls_configure_client_session
 * installs. A GnuTLS handshake hook on EncryptedExtensions could see the
 * parameters too, but GnuTLS keeps a single hook function per session and
 * uvq_tls_config.hook promises it to the application.
 */

/* The extension's data slot holds this address once the guard refused. */
static const char tp_refused_mark;

static ngtcp2_conn *glue_conn(gnutls_session_t session) {
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(session);
  return ref->get_conn(ref);
}

static int glue_secret(gnutls_session_t session,
                       gnutls_record_encryption_level_t glevel,
                       const void *rx_secret, const void *tx_secret,
                       size_t secretlen) {
  ngtcp2_conn *q = glue_conn(session);
  ngtcp2_encryption_level level =
      ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(glevel);

  if (rx_secret != NULL &&
      ngtcp2_crypto_derive_and_install_rx_key(q, NULL, NULL, NULL, level,
                                              rx_secret, secretlen) != 0) {
    return -1;
  }
  if (tx_secret != NULL &&
      ngtcp2_crypto_derive_and_install_tx_key(q, NULL, NULL, NULL, level,
                                              tx_secret, secretlen) != 0) {
    return -1;
  }
  return 0;
}

/* GnuTLS hands over the handshake bytes it wants sent: CRYPTO data. */
static int glue_handshake_out(gnutls_session_t session,
                              gnutls_record_encryption_level_t glevel,
                              gnutls_handshake_description_t htype,
                              const void *data, size_t datalen) {
  ngtcp2_conn *q = glue_conn(session);
  int rv;

  /* QUIC has no ChangeCipherSpec (compatibility mode is off anyway). */
  if (htype == GNUTLS_HANDSHAKE_CHANGE_CIPHER_SPEC) {
    return 0;
  }
  rv = ngtcp2_conn_submit_crypto_data(
      q, ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(glevel), data,
      datalen);
  if (rv != 0) {
    ngtcp2_conn_set_tls_error(q, rv);
    return -1;
  }
  return 0;
}

/* An alert GnuTLS sends: QUIC carries it as CRYPTO_ERROR 0x100 + alert. */
static int glue_alert(gnutls_session_t session,
                      gnutls_record_encryption_level_t glevel,
                      gnutls_alert_level_t alert_level,
                      gnutls_alert_description_t alert_desc) {
  (void)glevel;
  (void)alert_level;
  ngtcp2_conn_set_tls_alert(glue_conn(session), (uint8_t)alert_desc);
  return 0;
}

static int glue_tp_send(gnutls_session_t session, gnutls_buffer_t extdata) {
  ngtcp2_conn *q = glue_conn(session);
  uint8_t buf[512];
  ngtcp2_ssize n;

  n = ngtcp2_conn_encode_local_transport_params(q, buf, sizeof(buf));
  if (n < 0) {
    return GNUTLS_E_INTERNAL_ERROR;
  }
  return gnutls_buffer_append_data(extdata, buf, (size_t)n);
}

/* The server's parameters (EncryptedExtensions). ngtcp2 logs them to qlog
 * inside ngtcp2_conn_decode_and_set_remote_transport_params, so the check
 * comes first. */
static int glue_tp_recv(gnutls_session_t session, const uint8_t *data,
                        size_t datalen) {
  ngtcp2_conn *q = glue_conn(session);
  size_t rendered;
  int rv;

  if (uvq_qlog_tp_check(data, datalen, &rendered) != 0) {
    gnutls_ext_set_data(session, NGTCP2_TLSEXT_QUIC_TRANSPORT_PARAMETERS_V1,
                        (gnutls_ext_priv_data_t)(uintptr_t)&tp_refused_mark);
    ngtcp2_conn_set_tls_error(q, NGTCP2_ERR_TRANSPORT_PARAM);
    return GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER;
  }
  rv = ngtcp2_conn_decode_and_set_remote_transport_params(q, data, datalen);
  if (rv != 0) {
    ngtcp2_conn_set_tls_error(q, rv);
    return GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER;
  }
  return 0;
}

static int configure_guarded_client(gnutls_session_t session) {
  gnutls_handshake_set_secret_function(session, glue_secret);
  gnutls_handshake_set_read_function(session, glue_handshake_out);
  gnutls_alert_set_read_function(session, glue_alert);
  return gnutls_session_ext_register(
      session, "QUIC Transport Parameters",
      NGTCP2_TLSEXT_QUIC_TRANSPORT_PARAMETERS_V1, GNUTLS_EXT_TLS, glue_tp_recv,
      glue_tp_send, NULL, NULL, NULL,
      GNUTLS_EXT_FLAG_TLS | GNUTLS_EXT_FLAG_CLIENT_HELLO | GNUTLS_EXT_FLAG_EE);
}

int uvq_tls_session_tp_refused(gnutls_session_t session) {
  gnutls_ext_priv_data_t mark = NULL;

  return session != NULL &&
         gnutls_ext_get_data(
             session, NGTCP2_TLSEXT_QUIC_TRANSPORT_PARAMETERS_V1, &mark) == 0 &&
         mark == (gnutls_ext_priv_data_t)(uintptr_t)&tp_refused_mark;
}

int uvq_tls_session_new(uvq_tls_ctx *ctx, gnutls_session_t *psession,
                        const char *server_name) {
  return uvq_tls_session_new_opts(ctx, psession, server_name,
                                  UVQ_TLS_SESSION_EARLY_DATA |
                                      UVQ_TLS_SESSION_ANTI_REPLAY);
}

int uvq_tls_session_new_opts(uvq_tls_ctx *ctx, gnutls_session_t *psession,
                             const char *server_name, unsigned int opts) {
  return uvq_tls_session_new_ex(ctx, psession, server_name, opts, NULL);
}

int uvq_tls_session_new_ex(uvq_tls_ctx *ctx, gnutls_session_t *psession,
                           const char *server_name, unsigned int opts,
                           const gnutls_datum_t *ticket_key) {
  gnutls_session_t session;
  unsigned int flags = GNUTLS_NO_END_OF_EARLY_DATA;
  int rv;

  if (ctx->is_server) {
    /* Without GNUTLS_ENABLE_EARLY_DATA a server neither accepts 0-RTT nor
     * offers it in the tickets it issues. */
    flags |= GNUTLS_SERVER;
    if (opts & UVQ_TLS_SESSION_EARLY_DATA) {
      flags |= GNUTLS_ENABLE_EARLY_DATA;
    }
  } else {
    /* A GnuTLS 3.7 client offers early data on any ticket it resumes
     * while the flag is set, whatever the ticket allows: set it only when
     * 0-RTT is wanted and the ticket grants it (connector.c). */
    flags |= GNUTLS_CLIENT;
    if (opts & UVQ_TLS_SESSION_EARLY_DATA) {
      flags |= GNUTLS_ENABLE_EARLY_DATA;
    }
  }
  rv = gnutls_init(&session, flags);
  if (rv != 0) {
    return gnutls_to_uvq(rv);
  }
  if (ctx->is_server) {
    rv = ngtcp2_crypto_gnutls_configure_server_session(session);
  } else if (opts & UVQ_TLS_SESSION_QLOG_GUARD) {
    rv = configure_guarded_client(session);
  } else {
    rv = ngtcp2_crypto_gnutls_configure_client_session(session);
  }
  if (rv != 0) {
    rv = UVQ_ERR_TLS;
    goto fail;
  }
  rv = uvq_tls_session_configure(ctx, session, server_name);
  if (rv != 0) {
    goto fail;
  }
  if (ctx->is_server) {
    rv = configure_resumption(ctx, session, opts, ticket_key);
    if (rv != 0) {
      goto fail;
    }
  }
  *psession = session;
  return 0;

fail:
  gnutls_deinit(session);
  return rv;
}

void uvq_tls_session_del(gnutls_session_t session) {
  if (session) {
    gnutls_deinit(session);
  }
}

int uvq_tls_session_get_alpn(gnutls_session_t s, const uint8_t **p,
                             size_t *len) {
  gnutls_datum_t d;

  if (gnutls_alpn_get_selected_protocol(s, &d) != 0 || d.size == 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  *p = d.data;
  *len = d.size;
  return 0;
}

int uvq_tls_session_get_sni(gnutls_session_t s, char *buf, size_t buflen) {
  size_t len = buflen;
  unsigned int type;
  int rv;

  if (buf == NULL || buflen == 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = gnutls_server_name_get(s, buf, &len, &type, 0);
  if (rv == GNUTLS_E_SHORT_MEMORY_BUFFER) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (rv != 0 || type != GNUTLS_NAME_DNS) {
    buf[0] = '\0';
    return UVQ_ERR_INVALID_STATE;
  }
  return 0;
}
