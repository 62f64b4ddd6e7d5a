/* Tests for src/core/quic_lb.c: QUIC-LB connection IDs per
 * draft-ietf-quic-load-balancers-21, against the draft's own test vectors
 * ("Load Balancer Test Vectors" and the "Encryption Example" of the
 * four-pass algorithm), then round trips and bad configurations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/quic_lb.h"
#include "qtest.h"
#include "qtest_app.h"
#include "uvquic/uvquic_lb.h"

/* unhex decodes |hex| into |out| and returns the octet count. */
static size_t unhex(const char *hex, uint8_t *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
    out[i] = (uint8_t)v;
  }
  return n;
}

typedef struct vector {
  uint8_t cr;
  const char *sid;
  const char *nonce;
  const char *key; /* NULL: unencrypted */
  const char *cid;
} vector;

static const char draft_key[] = "8f95f09245765f80256934e50c66207f";

/* The draft's vectors; every one self-encodes the CID length. */
static const vector vectors[] = {
    /* Unencrypted CIDs. */
    {0, "c4605e", "4504cc4f", NULL, "07c4605e4504cc4f"},
    /* The draft prints this row as "1 350d28b420 3487d970b
     * 20a350d28b4203487d970b": a 9-digit nonce and a 22-digit CID whose
     * octets, read literally, start 0x20 (length 0) and carry the server
     * ID a350d28b42, contradicting the row's own sid column. The row's
     * fields printed without leading zeros give the only consistent
     * reading: first octet 0x2a (cr 1, length 10), sid 350d28b420, nonce
     * 03487d970b. */
    {1, "350d28b420", "03487d970b", NULL, "2a350d28b42003487d970b"},
    /* Encrypted CIDs: four-pass with an odd plaintext (7), with a server
     * ID longer than the nonce (15: a fourth decryption pass), the
     * single-pass 16-octet case, and an even four-pass plaintext (18). */
    {0, "ed793a", "ee080dbf", draft_key, "0720b1d07b359d3c"},
    {1, "ed793a51d49b8f5fab65", "ee080dbf48", draft_key,
     "2fcc381bc74cb4fbad2823a3d1f8fed2"},
    {2, "ed793a51d49b8f5f", "ee080dbf48c0d1e5", draft_key,
     "504dd2d05a7b0de9b2b9907afb5ecf8cc3"},
    /* The draft labels this row cr_bits 3, but its CID's first octet 0x12
     * is codepoint 0 with length 18 (-17 printed 0x72 for the same row);
     * the ciphertext does not depend on the codepoint, so the row is
     * reproduced with the codepoint its CID carries. */
    {0, "ed793a51d49b8f5fab", "ee080dbf48c0d1e55d", draft_key,
     "125779c9cc86beb3a3a4a3ca96fce4bfe0cdbc"},
    /* The four-pass "Encryption Example" (its step 10 prints the AES
     * output's second octet as e4 in the XOR but 34 in the line above;
     * 34 is the one that gives its final CID). */
    {0, "31441a", "9c69c275", "fdf726a9893ec05c0632d3956680baf0",
     "0767947d29be054a"},
};

#define NVECTORS (sizeof(vectors) / sizeof(vectors[0]))

static void vector_config(const vector *v, uvq_lb_config *cfg, uint8_t *nonce) {
  uvq_lb_config_default(cfg);
  cfg->config_id = v->cr;
  cfg->server_id_len = unhex(v->sid, cfg->server_id);
  cfg->nonce_len = unhex(v->nonce, nonce);
  cfg->encode_len = 1;
  if (v->key) {
    assert_int_equal(unhex(v->key, cfg->key), UVQ_LB_KEYLEN);
    cfg->has_key = 1;
  }
}

/* Each vector both ways: the server's side encodes its server ID and
 * nonce into the draft's CID; the load balancer's, which knows lengths and
 * key but no server ID, decodes the CID back to them. */
static void test_quic_lb_draft_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < NVECTORS; i++) {
    const vector *v = &vectors[i];
    uvq_lb_config cfg, lbview;
    uvq_lb *server, *balancer;
    uint8_t nonce[UVQ_LB_MAX_PLAINTEXT_LEN];
    uint8_t want[UVQ_LB_MAX_CID_LEN];
    uint8_t cid[UVQ_LB_MAX_CID_LEN];
    uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
    uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
    size_t wantlen = unhex(v->cid, want);
    size_t sidlen = 0;

    vector_config(v, &cfg, nonce);
    lbview = cfg;
    memset(lbview.server_id, 0, sizeof(lbview.server_id));
    assert_int_equal(uvq_lb_new(&server, &cfg, NULL), 0);
    assert_int_equal(uvq_lb_new(&balancer, &lbview, NULL), 0);
    assert_int_equal(uvq_lb_cid_len(server), wantlen);
    /* Random first-octet bits are ignored when the length is encoded. */
    assert_int_equal(uvq_lb_encode(server, nonce, 0x15, cid), 0);
    if (memcmp(cid, want, wantlen) != 0) {
      print_error("vector %zu (cid %s) encodes differently\n", i, v->cid);
    }
    assert_memory_equal(cid, want, wantlen);

    assert_int_equal(uvq_lb_config_id(want[0]), v->cr);
    assert_int_equal(
        uvq_lb_decode(balancer, want, wantlen, sid, sizeof(sid), &sidlen), 0);
    assert_int_equal(sidlen, cfg.server_id_len);
    assert_memory_equal(sid, cfg.server_id, sidlen);
    assert_int_equal(uvq_lb_decrypt(balancer, want, wantlen, pt), 0);
    assert_memory_equal(pt, cfg.server_id, sidlen);
    assert_memory_equal(pt + sidlen, nonce, cfg.nonce_len);
    uvq_lb_del(server);
    uvq_lb_del(balancer);
  }
}

/* Every legal split of every plaintext length, keyed and not: the decoder
 * gives back the server ID and nonce the encoder was given. */
static void test_quic_lb_round_trips_every_shape(void **state) {
  (void)state;
  for (size_t sidlen = 1; sidlen <= UVQ_LB_MAX_SERVER_ID_LEN; sidlen++) {
    for (size_t nlen = 4; sidlen + nlen <= 19; nlen++) {
      for (int keyed = 0; keyed < 2; keyed++) {
        uvq_lb_config cfg;
        uvq_lb *lb;
        uint8_t nonce[UVQ_LB_MAX_PLAINTEXT_LEN];
        uint8_t cid[UVQ_LB_MAX_CID_LEN];
        uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
        uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
        size_t got = 0;

        uvq_lb_config_default(&cfg);
        cfg.config_id = (uint8_t)((sidlen + nlen) % 7);
        cfg.server_id_len = sidlen;
        cfg.nonce_len = nlen;
        cfg.has_key = keyed;
        for (size_t i = 0; i < sizeof(cfg.server_id); i++) {
          cfg.server_id[i] = (uint8_t)(0xa5 ^ (i * 37 + sidlen));
        }
        for (size_t i = 0; i < UVQ_LB_KEYLEN; i++) {
          cfg.key[i] = (uint8_t)(i * 11 + nlen);
        }
        for (size_t i = 0; i < nlen; i++) {
          nonce[i] = (uint8_t)(0xff - i * 13);
        }
        assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), 0);
        assert_int_equal(uvq_lb_encode(lb, nonce, 0x1f, cid), 0);
        assert_int_equal(cid[0], cfg.config_id << 5 | 0x1f);
        if (keyed) {
          /* Encrypted: the server ID is not in the clear. */
          assert_true(memcmp(cid + 1, cfg.server_id, sidlen) != 0);
        } else {
          assert_memory_equal(cid + 1, cfg.server_id, sidlen);
        }
        assert_int_equal(uvq_lb_decrypt(lb, cid, 1 + sidlen + nlen, pt), 0);
        assert_memory_equal(pt, cfg.server_id, sidlen);
        assert_memory_equal(pt + sidlen, nonce, nlen);
        /* A DCID read longer than the CID decodes the same. */
        assert_int_equal(
            uvq_lb_decode(lb, cid, UVQ_LB_MAX_CID_LEN, sid, sizeof(sid), &got),
            0);
        assert_int_equal(got, sidlen);
        assert_memory_equal(sid, cfg.server_id, sidlen);
        uvq_lb_del(lb);
      }
    }
  }
}

/* Generated CIDs: distinct, decodable, never the same nonce twice. */
static void test_quic_lb_generate_issues_distinct_routable_cids(void **state) {
  uvq_lb_config cfg;
  uvq_lb *lb;
  uint8_t cids[64][UVQ_LB_MAX_CID_LEN];
  (void)state;

  assert_int_equal(uvq_lb_config_parse(&cfg,
                                       "cr=5,sid=0a0b0c,nonce=5,key="
                                       "000102030405060708090a0b0c0d0e0f",
                                       NULL),
                   0);
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), 0);
  for (size_t i = 0; i < 64; i++) {
    uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
    uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
    size_t sidlen = 0;
    assert_int_equal(uvq_lb_generate(lb, (uint8_t)i, cids[i]), 0);
    assert_int_equal(uvq_lb_config_id(cids[i][0]), 5);
    assert_int_equal(cids[i][0] & 0x1f, i & 0x1f);
    assert_int_equal(uvq_lb_decode(lb, cids[i], 9, sid, sizeof(sid), &sidlen),
                     0);
    assert_int_equal(sidlen, 3);
    assert_memory_equal(sid, "\x0a\x0b\x0c", 3);
    assert_int_equal(uvq_lb_decrypt(lb, cids[i], 9, pt), 0);
    for (size_t j = 0; j < i; j++) {
      assert_true(memcmp(cids[i] + 1, cids[j] + 1, 8) != 0);
    }
  }
  uvq_lb_del(lb);
}

/* A keyed configuration counts its nonces up from a random start,
 * wrapping at the top: no nonce repeats before all were used. */
static int counting_rand(void *ud, uint8_t *dest, size_t len) {
  (void)ud;
  memset(dest, 0xff, len);
  dest[len - 1] = 0xfd; /* three nonces before the counter wraps */
  return 0;
}

static void test_quic_lb_keyed_nonces_count_from_random_start(void **state) {
  uvq_lb_config cfg;
  uvq_lb *lb;
  uint8_t cid[UVQ_LB_MAX_CID_LEN];
  uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
  uint8_t first_nonce[4];
  (void)state;

  assert_int_equal(uvq_lb_config_parse(&cfg,
                                       "sid=01,nonce=4,key="
                                       "00112233445566778899aabbccddeeff",
                                       NULL),
                   0);
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), 0);
  uvq_lb_set_rand(lb, counting_rand, NULL);
  assert_int_equal(uvq_lb_generate(lb, 0, cid), 0);
  assert_int_equal(uvq_lb_decrypt(lb, cid, 6, pt), 0);
  memcpy(first_nonce, pt + 1, 4);
  assert_memory_equal(first_nonce, "\xff\xff\xff\xfd", 4);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(uvq_lb_generate(lb, 0, cid), 0);
  }
  assert_int_equal(uvq_lb_decrypt(lb, cid, 6, pt), 0);
  assert_memory_equal(pt + 1, "\xff\xff\xff\xff", 4);
  assert_int_equal(uvq_lb_generate(lb, 0, cid), 0);
  assert_int_equal(uvq_lb_decrypt(lb, cid, 6, pt), 0);
  assert_memory_equal(pt + 1, "\x00\x00\x00\x00", 4);
  uvq_lb_del(lb);
}

/* Shards share one server ID and key, each with its own uvq_lb: in
 * their own nonce lanes, two of them drawing the same random start still
 * never issue the same nonce (without lanes they would issue the same
 * sequence), and a lane counts in steps of 32 with its low bits fixed. */
static int same_rand(void *ud, uint8_t *dest, size_t len) {
  (void)ud;
  memset(dest, 0x5a, len);
  return 0;
}

static void test_quic_lb_shard_lanes_never_share_a_nonce(void **state) {
  enum { N = 300 };
  static uint8_t nonces[2][N][4];
  uvq_lb_config cfg;
  uvq_lb *lb[2];
  uint8_t cid[UVQ_LB_MAX_CID_LEN];
  uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
  (void)state;

  assert_int_equal(uvq_lb_config_parse(&cfg,
                                       "sid=01,nonce=4,key="
                                       "00112233445566778899aabbccddeeff",
                                       NULL),
                   0);
  for (unsigned s = 0; s < 2; s++) {
    assert_int_equal(uvq_lb_new(&lb[s], &cfg, NULL), 0);
    uvq_lb_set_rand(lb[s], same_rand, NULL);
    uvq_lb_set_nonce_lane(lb[s], s + 3);
    for (int i = 0; i < N; i++) {
      assert_int_equal(uvq_lb_generate(lb[s], (uint8_t)s, cid), 0);
      assert_int_equal(uvq_lb_decrypt(lb[s], cid, 6, pt), 0);
      memcpy(nonces[s][i], pt + 1, 4);
      assert_int_equal(nonces[s][i][3] & 0x1f, s + 3);
    }
  }
  /* Consecutive nonces of a lane are 32 apart. */
  assert_int_equal((uint8_t)(nonces[0][1][3] - nonces[0][0][3]), 32);
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < N; j++) {
      assert_memory_not_equal(nonces[0][i], nonces[1][j], 4);
    }
  }
  uvq_lb_del(lb[0]);
  uvq_lb_del(lb[1]);
}

/* Once every nonce of a keyed configuration is spent, the endpoint's
 * generator issues CIDs with the unroutable codepoint 0b111 (draft-21),
 * counted, rather than failing new connections or reusing a nonce. */
static void test_quic_lb_exhausted_nonces_go_unroutable(void **state) {
  uvq_lb_config cfg;
  uvq_lb *lb;
  uvq_cid_gen gen;
  ngtcp2_cid cid;
  uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
  size_t sidlen;
  (void)state;

  assert_int_equal(uvq_lb_config_parse(&cfg,
                                       "cr=2,sid=01,nonce=7,key="
                                       "00112233445566778899aabbccddeeff",
                                       NULL),
                   0);
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), 0);
  uvq_lb_set_rand(lb, counting_rand, NULL);
  memset(&gen, 0, sizeof(gen));
  uvq_lb_cid_gen_init(&gen, lb);
  /* counting_rand starts three nonces before the counter wraps; the
   * space is spent when it comes back there (2^56 later): jump close. */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(gen.generate(&gen, &cid), 0);
    assert_int_equal(cid.data[0] >> 5, 2);
    assert_int_equal(
        uvq_lb_decode(lb, cid.data, cid.datalen, sid, sizeof(sid), &sidlen), 0);
  }
  assert_int_equal(uvq_lb_unroutable_count(lb), 0);
  uvq_lb_test_spend_nonces(lb);
  assert_int_equal(gen.generate(&gen, &cid), 0);
  assert_int_equal(cid.datalen, 9); /* 1 + server ID 1 + nonce 7 */
  assert_int_equal(cid.data[0] >> 5, 7);
  assert_int_equal(uvq_lb_unroutable_count(lb), 1);
  assert_int_not_equal(
      uvq_lb_decode(lb, cid.data, cid.datalen, sid, sizeof(sid), &sidlen), 0);
  uvq_lb_del(lb);
}

static void test_quic_lb_refuses_foreign_and_short_cids(void **state) {
  uvq_lb_config cfg;
  uvq_lb *lb;
  uint8_t cid[UVQ_LB_MAX_CID_LEN];
  uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
  size_t sidlen;
  (void)state;

  assert_int_equal(uvq_lb_config_parse(&cfg, "cr=2,sid=abcd,nonce=6", NULL), 0);
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), 0);
  assert_int_equal(uvq_lb_cid_len(lb), 9);
  assert_int_equal(uvq_lb_generate(lb, 0, cid), 0);
  assert_int_equal(uvq_lb_decode(lb, cid, 9, sid, sizeof(sid), &sidlen), 0);
  /* Too short for the configuration. */
  assert_int_equal(uvq_lb_decode(lb, cid, 8, sid, sizeof(sid), &sidlen),
                   UVQ_ERR_INVALID_ARGUMENT);
  /* No room for the server ID. */
  assert_int_equal(uvq_lb_decode(lb, cid, 9, sid, 1, &sidlen),
                   UVQ_ERR_INVALID_ARGUMENT);
  /* Another configuration's codepoint, and the unroutable one. */
  cid[0] = (uint8_t)(3 << 5 | (cid[0] & 0x1f));
  assert_int_equal(uvq_lb_decode(lb, cid, 9, sid, sizeof(sid), &sidlen),
                   UVQ_ERR_INVALID_ARGUMENT);
  cid[0] = 0xe0;
  assert_int_equal(uvq_lb_config_id(cid[0]), UVQ_LB_CONFIG_ID_UNROUTABLE);
  assert_int_equal(uvq_lb_decode(lb, cid, 9, sid, sizeof(sid), &sidlen),
                   UVQ_ERR_INVALID_ARGUMENT);
  uvq_lb_del(lb);
}

static void test_quic_lb_parse_rejects_bad_configs(void **state) {
  static const struct {
    const char *text;
    const char *reason_has;
  } bad[] = {
      {"", "empty"},
      {"nonce=8", "server ID is required"},
      {"cr=7,sid=01", "0..6"},
      {"cr=x,sid=01", "0..6"},
      {"sid=0", "hex"},
      {"sid=zz", "hex"},
      {"sid=00112233445566778899aabbccddeeff", "hex"},
      {"sid=01,nonce=3", "at least 4"},
      {"sid=0011223344556677,nonce=12", "at most 19"},
      {"sid-len=0", "1..15"},
      {"sid=01,key=0011", "32 digits"},
      {"sid=01,key=0011223344556677889900112233445g", "32 digits"},
      {"sid=01,colour=blue", "unknown field"},
      {"sid=01,encode-len=1", "no value"},
      {"sid=01,nonce", "KEY=VALUE"},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uvq_lb_config cfg;
    const char *reason = NULL;
    assert_int_equal(uvq_lb_config_parse(&cfg, bad[i].text, &reason),
                     UVQ_ERR_INVALID_ARGUMENT);
    assert_non_null(reason);
    if (strstr(reason, bad[i].reason_has) == NULL) {
      print_error("\"%s\": reason \"%s\" lacks \"%s\"\n", bad[i].text, reason,
                  bad[i].reason_has);
      fail();
    }
  }
}

static void test_quic_lb_new_rejects_bad_configs(void **state) {
  uvq_lb_config cfg;
  uvq_lb *lb = NULL;
  (void)state;

  uvq_lb_config_default(&cfg);
  /* No server ID. */
  assert_non_null(uvq_lb_config_check(&cfg));
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), UVQ_ERR_INVALID_ARGUMENT);
  cfg.server_id_len = 2;
  assert_null(uvq_lb_config_check(&cfg));
  cfg.config_id = UVQ_LB_CONFIG_ID_UNROUTABLE;
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), UVQ_ERR_INVALID_ARGUMENT);
  cfg.config_id = 0;
  cfg.nonce_len = 18;
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), UVQ_ERR_INVALID_ARGUMENT);
  cfg.nonce_len = 17;
  cfg.version = UVQ_LB_CONFIG_VERSION + 1;
  assert_int_equal(uvq_lb_new(&lb, &cfg, NULL), UVQ_ERR_INVALID_ARGUMENT);
  assert_null(lb);
  assert_int_equal(uvq_lb_new(&lb, NULL, NULL), UVQ_ERR_INVALID_ARGUMENT);
  assert_non_null(uvq_lb_config_check(NULL));
  uvq_lb_del(NULL);
}

/* The parser's fields land where they should. */
static void test_quic_lb_parse_reads_every_field(void **state) {
  uvq_lb_config cfg;
  (void)state;

  assert_int_equal(uvq_lb_config_parse(&cfg,
                                       "cr=6,sid=A1b2C3,nonce=10,key="
                                       "8F95f09245765f80256934e50c66207f,"
                                       "encode-len",
                                       NULL),
                   0);
  assert_int_equal(cfg.config_id, 6);
  assert_int_equal(cfg.server_id_len, 3);
  assert_memory_equal(cfg.server_id, "\xa1\xb2\xc3", 3);
  assert_int_equal(cfg.nonce_len, 10);
  assert_true(cfg.has_key);
  assert_memory_equal(cfg.key,
                      "\x8f\x95\xf0\x92\x45\x76\x5f\x80\x25\x69\x34\xe5\x0c"
                      "\x66\x20\x7f",
                      16);
  assert_true(cfg.encode_len);
  assert_int_equal(uvq_lb_config_parse(&cfg, "sid-len=4", NULL), 0);
  assert_int_equal(cfg.server_id_len, 4);
  assert_int_equal(cfg.nonce_len, 8);
  assert_false(cfg.has_key);
  assert_false(cfg.encode_len);
}

/* ---- a server endpoint that issues QUIC-LB CIDs ------------------------ */

#define LB_DOWNLOAD (256 * 1024)
#define LB_MAX_SEEN 64

/* What the wire showed: the SCIDs of the server's long headers (Retry,
 * Initial, Handshake) and the DCIDs of the client's short headers. */
typedef struct lb_seen {
  int server;
  size_t cidlen;
  ngtcp2_cid scid[LB_MAX_SEEN];
  size_t nscid;
  ngtcp2_cid dcid[LB_MAX_SEEN];
  size_t ndcid;
} lb_seen;

static void seen_add(ngtcp2_cid *set, size_t *n, const uint8_t *data,
                     size_t len) {
  ngtcp2_cid c;
  ngtcp2_cid_init(&c, data, len);
  for (size_t i = 0; i < *n; i++) {
    if (ngtcp2_cid_eq(&c, &set[i])) {
      return;
    }
  }
  if (*n < LB_MAX_SEEN) {
    set[(*n)++] = c;
  }
}

static int lb_watch(qt_world *w, int from, qt_pkt *p, void *ud) {
  lb_seen *seen = ud;
  (void)w;
  if (p->len < 1 + seen->cidlen) {
    return 0;
  }
  if (p->data[0] & 0x80) {
    /* Long header: version (4), DCID length and DCID, SCID length and
     * SCID; Version Negotiation (version 0) carries no SCID of ours. */
    size_t dcil, scil;
    if (from != seen->server || p->len < 7 ||
        memcmp(p->data + 1, "\0\0\0\0", 4) == 0) {
      return 0;
    }
    dcil = p->data[5];
    if (p->len < 7 + dcil) {
      return 0;
    }
    scil = p->data[6 + dcil];
    if (p->len >= 7 + dcil + scil) {
      seen_add(seen->scid, &seen->nscid, p->data + 7 + dcil, scil);
    }
  } else if (from != seen->server) {
    seen_add(seen->dcid, &seen->ndcid, p->data + 1, seen->cidlen);
  }
  return 0;
}

/* assert_routes: the load balancer's decoder, which knows only the
 * lengths and the key, maps |cid| to server ID |sid|. */
static void assert_routes(uvq_lb *balancer, const ngtcp2_cid *cid,
                          const uint8_t *sid, size_t sidlen) {
  uint8_t got[UVQ_LB_MAX_SERVER_ID_LEN];
  size_t gotlen = 0;
  assert_int_equal(cid->datalen, uvq_lb_cid_len(balancer));
  assert_int_equal(uvq_lb_decode(balancer, cid->data, cid->datalen, got,
                                 sizeof(got), &gotlen),
                   0);
  assert_int_equal(gotlen, sidlen);
  assert_memory_equal(got, sid, sidlen);
}

static qt_app g_lb_srv;

static int lb_quarter_done(void *ud) {
  return ((qt_app *)ud)->received >= LB_DOWNLOAD / 4;
}

/* A server with QUIC-LB and Retry on serves a download to a client that
 * migrates halfway: every CID the server issued — the Retry SCID, the SCID
 * of its Initial and Handshake packets, every NEW_CONNECTION_ID it sent
 * (what its connection lists as its SCIDs), and the one the client moved
 * to — routes to its server ID. */
static void run_server_issues_routable_cids(const char *server_conf,
                                            const char *balancer_conf) {
  uvq_lb_config lbcfg, balcfg;
  uvq_settings st;
  qt_world w;
  qt_app cli;
  lb_seen seen;
  uvq_lb *balancer;
  uvq_addr alt;
  ngtcp2_cid scids[32];
  size_t nscids;
  qt_app *pair[2] = {&cli, &g_lb_srv};

  assert_int_equal(uvq_lb_config_parse(&lbcfg, server_conf, NULL), 0);
  assert_int_equal(uvq_lb_config_parse(&balcfg, balancer_conf, NULL), 0);
  assert_int_equal(uvq_lb_new(&balancer, &balcfg, NULL), 0);

  memset(&cli, 0, sizeof(cli));
  cli.send_on_established = 1;
  cli.to_send = 3;
  cli.seed = 80;
  memset(&g_lb_srv, 0, sizeof(g_lb_srv));
  g_lb_srv.reply = 1;
  g_lb_srv.to_send = LB_DOWNLOAD;
  g_lb_srv.seed = 81;

  qt_world_init(&w, 80);
  w.delay = 5 * UVQ_MILLISECONDS;
  uvq_settings_default(&st);
  st.retry = UVQ_RETRY_ALWAYS;
  st.cid_len = 20; /* ignored: QUIC-LB decides the length */
  st.quic_lb = &lbcfg;
  int s = qt_add_server(&w, &st, qt_app_accept, &g_lb_srv);
  assert_true(s >= 0);
  assert_null(uvq_endpoint_get_settings(w.nodes[s].ep)->quic_lb);
  int c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(uvq_endpoint_get_settings(w.nodes[s].ep)->cid_len,
                   uvq_lb_cid_len(balancer));

  memset(&seen, 0, sizeof(seen));
  seen.server = s;
  seen.cidlen = uvq_lb_cid_len(balancer);
  w.filter = lb_watch;
  w.filter_ud = &seen;

  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 10 * UVQ_SECONDS));
  /* Migrate once the download is under way. */
  assert_true(qt_run(&w, lb_quarter_done, &cli, 10 * UVQ_SECONDS));
  qt_addr_v4(&alt, 50200);
  assert_int_equal(qt_add_alias(&w, c, &alt), 0);
  assert_int_equal(uvq_conn_migrate(cli.conn, &alt, 0, w.now), 0);
  assert_true(qt_run(&w, qt_app_got_fin, &cli, 60 * UVQ_SECONDS));
  qt_app_assert_received(&cli, 81, LB_DOWNLOAD);

  /* The Retry SCID and the connection's SCID. */
  assert_true(seen.nscid >= 2);
  for (size_t i = 0; i < seen.nscid; i++) {
    assert_routes(balancer, &seen.scid[i], lbcfg.server_id,
                  lbcfg.server_id_len);
  }
  /* The handshake's CID, then a NEW_CONNECTION_ID one after migrating. */
  assert_true(seen.ndcid >= 2);
  for (size_t i = 0; i < seen.ndcid; i++) {
    assert_routes(balancer, &seen.dcid[i], lbcfg.server_id,
                  lbcfg.server_id_len);
  }
  /* Everything the server's connection has issued and not retired. */
  nscids = ngtcp2_conn_get_scid(g_lb_srv.conn->ngconn, NULL);
  assert_true(nscids >= 2 && nscids <= 32);
  nscids = ngtcp2_conn_get_scid(g_lb_srv.conn->ngconn, scids);
  print_message("# %zu server SCIDs and %zu client DCIDs on the wire, %zu "
                "SCIDs held, all routed to the server\n",
                seen.nscid, seen.ndcid, nscids);
  for (size_t i = 0; i < nscids; i++) {
    assert_routes(balancer, &scids[i], lbcfg.server_id, lbcfg.server_id_len);
  }

  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 0);
  uvq_lb_del(balancer);
  qt_world_free(&w);
}

static void test_quic_lb_server_issues_routable_cids_encrypted(void **state) {
  (void)state;
  run_server_issues_routable_cids(
      "cr=2,sid=c0ffee,nonce=6,key=8f95f09245765f80256934e50c66207f",
      "cr=2,sid-len=3,nonce=6,key=8f95f09245765f80256934e50c66207f");
}

static void test_quic_lb_server_issues_routable_cids_single_pass(void **state) {
  (void)state;
  run_server_issues_routable_cids(
      "cr=1,sid=0102030405060708,nonce=8,encode-len,"
      "key=00112233445566778899aabbccddeeff",
      "cr=1,sid-len=8,nonce=8,key=00112233445566778899aabbccddeeff");
}

static void test_quic_lb_server_issues_routable_cids_plaintext(void **state) {
  (void)state;
  run_server_issues_routable_cids("cr=0,sid=5a,nonce=7",
                                  "cr=0,sid-len=1,nonce=7");
}

/* QUIC-LB is for servers, with CIDs of at least 8 octets; a version-2
 * uvq_settings (no quic_lb field) is read without it. */
static void test_quic_lb_endpoint_rejects_misuse(void **state) {
  uvq_lb_config lbcfg;
  uvq_settings st;
  qt_world w;
  int s;
  (void)state;

  qt_world_init(&w, 82);
  uvq_settings_default(&st);
  assert_int_equal(uvq_lb_config_parse(&lbcfg, "sid=01,nonce=5", NULL), 0);
  st.quic_lb = &lbcfg; /* 7-octet CIDs */
  assert_int_equal(qt_add_server(&w, &st, qt_app_accept, NULL), -1);
  assert_int_equal(w.last_add_error, UVQ_ERR_INVALID_ARGUMENT);
  lbcfg.config_id = 7; /* the unroutable codepoint */
  lbcfg.nonce_len = 6;
  assert_int_equal(qt_add_server(&w, &st, qt_app_accept, NULL), -1);
  assert_int_equal(qt_add_client(&w, &st, NULL), -1);
  lbcfg.config_id = 0;
  /* A client endpoint refuses it. */
  assert_int_equal(qt_add_client(&w, &st, NULL), -1);
  assert_int_equal(w.last_add_error, UVQ_ERR_INVALID_ARGUMENT);
  s = qt_add_server(&w, &st, qt_app_accept, NULL);
  assert_true(s >= 0);
  assert_int_equal(uvq_endpoint_get_settings(w.nodes[s].ep)->cid_len, 8);
  /* An older header's settings stop before quic_lb: random CIDs. */
  st.version = 2;
  s = qt_add_server(&w, &st, qt_app_accept, NULL);
  assert_true(s >= 0);
  assert_int_equal(uvq_endpoint_get_settings(w.nodes[s].ep)->cid_len, 16);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quic_lb_draft_vectors),
      cmocka_unit_test(test_quic_lb_round_trips_every_shape),
      cmocka_unit_test(test_quic_lb_generate_issues_distinct_routable_cids),
      cmocka_unit_test(test_quic_lb_keyed_nonces_count_from_random_start),
      cmocka_unit_test(test_quic_lb_shard_lanes_never_share_a_nonce),
      cmocka_unit_test(test_quic_lb_exhausted_nonces_go_unroutable),
      cmocka_unit_test(test_quic_lb_refuses_foreign_and_short_cids),
      cmocka_unit_test(test_quic_lb_parse_rejects_bad_configs),
      cmocka_unit_test(test_quic_lb_new_rejects_bad_configs),
      cmocka_unit_test(test_quic_lb_parse_reads_every_field),
      cmocka_unit_test(test_quic_lb_server_issues_routable_cids_encrypted),
      cmocka_unit_test(test_quic_lb_server_issues_routable_cids_single_pass),
      cmocka_unit_test(test_quic_lb_server_issues_routable_cids_plaintext),
      cmocka_unit_test(test_quic_lb_endpoint_rejects_misuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
