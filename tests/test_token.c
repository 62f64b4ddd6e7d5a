/* Address-validation tokens: sealing, opening, every rejection path, and
 * key rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four headers above first. */
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/token.h"

#define NOW 1700000000u

static const uint8_t key_a[UVQ_TOKEN_KEYLEN] = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};
static const uint8_t key_b[UVQ_TOKEN_KEYLEN] = {
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
    0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
static const uint8_t key_c[UVQ_TOKEN_KEYLEN] = {
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf};

typedef struct fixture {
  uvq_token_keys keys;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
  ngtcp2_cid odcid;
  ngtcp2_cid rscid;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  size_t toklen;
} fixture;

static void set_v4(struct sockaddr_in *sin, const char *ip, uint16_t port) {
  memset(sin, 0, sizeof(*sin));
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

static void set_v6(struct sockaddr_in6 *sin6, const char *ip, uint16_t port) {
  memset(sin6, 0, sizeof(*sin6));
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
}

static void set_cid(ngtcp2_cid *cid, uint8_t fill, size_t len) {
  uint8_t buf[NGTCP2_MAX_CIDLEN];
  memset(buf, fill, sizeof(buf));
  for (size_t i = 0; i < len; ++i) {
    buf[i] = (uint8_t)(fill + i);
  }
  ngtcp2_cid_init(cid, buf, len);
}

#define SA(x) ((const struct sockaddr *)&(x))

static int setup(void **state) {
  static fixture f;
  memset(&f, 0, sizeof(f));
  if (uvq_token_keys_init(&f.keys, key_a) != 0) {
    return -1;
  }
  set_v4(&f.v4, "192.0.2.7", 4433);
  set_v6(&f.v6, "2001:db8::1:2", 51000);
  set_cid(&f.odcid, 0x10, 8);
  set_cid(&f.rscid, 0x80, 16);
  *state = &f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  uvq_token_keys_free(&f->keys);
  return 0;
}

/* seal_retry_v4 seals a Retry token for the fixture's IPv4 client at
 * |when| into f->tok. */
static void seal_retry_v4(fixture *f, uint64_t when) {
  ssize_t n = uvq_token_seal_retry(&f->keys, f->tok, sizeof(f->tok),
                                   UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                   &f->odcid, &f->rscid, when);
  assert_true(n > 0);
  f->toklen = (size_t)n;
}

static int open_retry_v4(fixture *f, const uint8_t *tok, size_t len,
                         uint64_t now, uvq_token_reject_reason *reason) {
  ngtcp2_cid got;
  return uvq_token_open_retry(&f->keys, tok, len, UVQ_QUIC_V1, SA(f->v4),
                              sizeof(f->v4), &f->rscid, now,
                              UVQ_TOKEN_RETRY_LIFETIME_DEFAULT, &got, reason);
}

static void seal_new_v4(fixture *f, uint64_t when) {
  ssize_t n = uvq_token_seal_new(&f->keys, f->tok, sizeof(f->tok), UVQ_QUIC_V1,
                                 SA(f->v4), sizeof(f->v4), when);
  assert_true(n > 0);
  f->toklen = (size_t)n;
}

static void test_token_retry_round_trip_v4(void **state) {
  fixture *f = *state;
  ngtcp2_cid got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  assert_true(f->toklen <= UVQ_TOKEN_MAXLEN);
  assert_int_equal(uvq_token_type(f->tok, f->toklen), UVQ_TOKEN_TYPE_RETRY);
  memset(&got, 0xee, sizeof(got));
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        &f->rscid, NOW + 1, 10, &got, &reason),
                   0);
  assert_true(ngtcp2_cid_eq(&got, &f->odcid));
  /* Not touched on success. */
  assert_int_equal(reason, UVQ_TOKEN_REJECT_REASON_COUNT);
}

static void test_token_retry_round_trip_v6(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  ngtcp2_cid odcid, rscid, got;
  ssize_t n;

  /* Longest CIDs: the token must still fit UVQ_TOKEN_MAXLEN exactly. */
  set_cid(&odcid, 0x20, NGTCP2_MAX_CIDLEN);
  set_cid(&rscid, 0x40, NGTCP2_MAX_CIDLEN);
  n = uvq_token_seal_retry(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1, SA(f->v6),
                           sizeof(f->v6), &odcid, &rscid, NOW);
  assert_int_equal(n, UVQ_TOKEN_MAXLEN);
  assert_int_equal(uvq_token_open_retry(&f->keys, tok, (size_t)n, UVQ_QUIC_V1,
                                        SA(f->v6), sizeof(f->v6), &rscid, NOW,
                                        10, &got, NULL),
                   0);
  assert_true(ngtcp2_cid_eq(&got, &odcid));
}

static void test_token_retry_empty_cids(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  ngtcp2_cid empty, got;
  ssize_t n;

  ngtcp2_cid_init(&empty, NULL, 0);
  n = uvq_token_seal_retry(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1, SA(f->v4),
                           sizeof(f->v4), &empty, &empty, NOW);
  assert_true(n > 0);
  assert_int_equal(uvq_token_open_retry(&f->keys, tok, (size_t)n, UVQ_QUIC_V1,
                                        SA(f->v4), sizeof(f->v4), &empty, NOW,
                                        10, &got, NULL),
                   0);
  assert_int_equal(got.datalen, 0);
}

static void test_token_new_round_trip_v4(void **state) {
  fixture *f = *state;
  uvq_token_reject_reason reason;

  seal_new_v4(f, NOW);
  assert_true(f->toklen <= UVQ_TOKEN_NEW_MAXLEN);
  assert_int_equal(uvq_token_type(f->tok, f->toklen), UVQ_TOKEN_TYPE_NEW);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW + 3600,
                                      UVQ_TOKEN_NEW_LIFETIME_DEFAULT, &reason),
                   0);
}

static void test_token_new_round_trip_v6(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  ssize_t n;

  n = uvq_token_seal_new(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1, SA(f->v6),
                         sizeof(f->v6), NOW);
  assert_int_equal(n, UVQ_TOKEN_NEW_MAXLEN);
  assert_int_equal(uvq_token_open_new(&f->keys, tok, (size_t)n, UVQ_QUIC_V1,
                                      SA(f->v6), sizeof(f->v6), NOW,
                                      UVQ_TOKEN_NEW_LIFETIME_DEFAULT, NULL),
                   0);
}

static void test_token_nonce_differs(void **state) {
  fixture *f = *state;
  uint8_t tok2[UVQ_TOKEN_MAXLEN];
  ssize_t n;

  seal_retry_v4(f, NOW);
  n = uvq_token_seal_retry(&f->keys, tok2, sizeof(tok2), UVQ_QUIC_V1, SA(f->v4),
                           sizeof(f->v4), &f->odcid, &f->rscid, NOW);
  assert_int_equal(n, (ssize_t)f->toklen);
  /* Same inputs, fresh nonce: the sealed bytes differ. */
  assert_memory_not_equal(f->tok + 2, tok2 + 2, f->toklen - 2);
  assert_int_equal(f->keys.sealed, 2);
}

/* A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; a token
 * sealed from one form verifies from the other. */
static void test_token_v4mapped_matches_v4(void **state) {
  fixture *f = *state;
  struct sockaddr_in6 mapped;
  ngtcp2_cid got;

  set_v6(&mapped, "::ffff:192.0.2.7", 4433);
  seal_retry_v4(f, NOW);
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(mapped), sizeof(mapped),
                                        &f->rscid, NOW, 10, &got, NULL),
                   0);
  seal_new_v4(f, NOW);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(mapped), sizeof(mapped), NOW, 10,
                                      NULL),
                   0);
}

static void test_token_retry_bitflip_rejected(void **state) {
  fixture *f = *state;
  uint8_t bad[UVQ_TOKEN_MAXLEN];

  seal_retry_v4(f, NOW);
  for (size_t i = 0; i < f->toklen; ++i) {
    for (unsigned bit = 0; bit < 8; ++bit) {
      uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
      memcpy(bad, f->tok, f->toklen);
      bad[i] ^= (uint8_t)(1u << bit);
      assert_int_equal(open_retry_v4(f, bad, f->toklen, NOW, &reason),
                       UVQ_ERR_INVALID_TOKEN);
      /* A flipped type byte is no longer a Retry token; anything else
       * (key id, nonce, ciphertext, tag) fails authentication. */
      assert_int_equal(reason, i == 0 ? UVQ_TOKEN_REJECT_MALFORMED
                                      : UVQ_TOKEN_REJECT_DECRYPT);
    }
  }
  /* The untouched token still verifies: the loop tested the flips. */
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, NULL), 0);
}

static void test_token_new_bitflip_rejected(void **state) {
  fixture *f = *state;
  uint8_t bad[UVQ_TOKEN_MAXLEN];

  seal_new_v4(f, NOW);
  for (size_t i = 0; i < f->toklen; ++i) {
    for (unsigned bit = 0; bit < 8; ++bit) {
      memcpy(bad, f->tok, f->toklen);
      bad[i] ^= (uint8_t)(1u << bit);
      assert_int_equal(uvq_token_open_new(&f->keys, bad, f->toklen, UVQ_QUIC_V1,
                                          SA(f->v4), sizeof(f->v4), NOW, 10,
                                          NULL),
                       UVQ_ERR_INVALID_TOKEN);
    }
  }
}

static void test_token_retry_truncated_rejected(void **state) {
  fixture *f = *state;
  uint8_t buf[UVQ_TOKEN_MAXLEN + 1];

  seal_retry_v4(f, NOW);
  for (size_t len = 0; len < f->toklen; ++len) {
    uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
    /* A copy of exactly |len| bytes, so ASan catches any read past it. */
    uint8_t *cut = test_malloc(len ? len : 1);
    memcpy(cut, f->tok, len);
    assert_int_equal(open_retry_v4(f, len ? cut : NULL, len, NOW, &reason),
                     UVQ_ERR_INVALID_TOKEN);
    assert_true(reason == UVQ_TOKEN_REJECT_MALFORMED ||
                reason == UVQ_TOKEN_REJECT_DECRYPT);
    test_free(cut);
  }
  /* One byte too many fails as well. */
  memcpy(buf, f->tok, f->toklen);
  buf[f->toklen] = 0;
  assert_int_equal(open_retry_v4(f, buf, f->toklen + 1, NOW, NULL),
                   UVQ_ERR_INVALID_TOKEN);
}

static void test_token_new_truncated_rejected(void **state) {
  fixture *f = *state;

  seal_new_v4(f, NOW);
  for (size_t len = 0; len < f->toklen; ++len) {
    uint8_t *cut = test_malloc(len ? len : 1);
    memcpy(cut, f->tok, len);
    assert_int_equal(uvq_token_open_new(&f->keys, len ? cut : NULL, len,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        NOW, 10, NULL),
                     UVQ_ERR_INVALID_TOKEN);
    test_free(cut);
  }
}

/* Lifetime is inclusive: at exactly |lifetime| seconds the token is valid,
 * one second later it is not. */
static void test_token_retry_expiry(void **state) {
  fixture *f = *state;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW + 10, &reason), 0);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW + 11, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_EXPIRED);
  /* No wrap-around for very old tokens or huge lifetimes. */
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, UINT64_MAX, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_EXPIRED);
}

static void test_token_new_expiry(void **state) {
  fixture *f = *state;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  const uint64_t life = UVQ_TOKEN_NEW_LIFETIME_DEFAULT;

  seal_new_v4(f, NOW);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW + life,
                                      life, &reason),
                   0);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW + life + 1,
                                      life, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_EXPIRED);
  /* UINT64_MAX lifetime: never expires, and now - issued cannot overflow. */
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), UINT64_MAX,
                                      UINT64_MAX, &reason),
                   0);
}

static void test_token_future_issue_rejected(void **state) {
  fixture *f = *state;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  /* Within the allowed skew: accepted. */
  seal_retry_v4(f, NOW + UVQ_TOKEN_MAX_CLOCK_SKEW);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, &reason), 0);
  /* Beyond it: rejected, even with a long lifetime. */
  seal_retry_v4(f, NOW + UVQ_TOKEN_MAX_CLOCK_SKEW + 1);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_EXPIRED);

  seal_new_v4(f, NOW + 3600);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW, UINT64_MAX,
                                      &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_EXPIRED);
}

static void test_token_retry_other_ip_rejected(void **state) {
  fixture *f = *state;
  struct sockaddr_in other;
  struct sockaddr_in6 other6;
  ngtcp2_cid got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  set_v4(&other, "192.0.2.8", 4433);
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(other), sizeof(other),
                                        &f->rscid, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_ADDRESS);

  /* Another family altogether. */
  set_v6(&other6, "2001:db8::c000:207", 4433);
  reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(other6), sizeof(other6),
                                        &f->rscid, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_ADDRESS);
}

static void test_token_retry_v6_other_ip_rejected(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  struct sockaddr_in6 other;
  ngtcp2_cid got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  ssize_t n;

  n = uvq_token_seal_retry(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1, SA(f->v6),
                           sizeof(f->v6), &f->odcid, &f->rscid, NOW);
  assert_true(n > 0);
  /* Differs only in the last byte of the address. */
  set_v6(&other, "2001:db8::1:3", 51000);
  assert_int_equal(uvq_token_open_retry(&f->keys, tok, (size_t)n, UVQ_QUIC_V1,
                                        SA(other), sizeof(other), &f->rscid,
                                        NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_ADDRESS);
}

static void test_token_retry_other_port_rejected(void **state) {
  fixture *f = *state;
  struct sockaddr_in other;
  ngtcp2_cid got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  set_v4(&other, "192.0.2.7", 4434);
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(other), sizeof(other),
                                        &f->rscid, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_ADDRESS);
}

static void test_token_retry_other_version_rejected(void **state) {
  fixture *f = *state;
  ngtcp2_cid got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  /* QUIC v2 (RFC 9369). */
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        0x6b3343cfu, SA(f->v4), sizeof(f->v4),
                                        &f->rscid, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_VERSION);
}

/* The Initial carrying a Retry token must use the Retry's SCID as its DCID;
 * a mismatch is reported as MALFORMED (see token.h). */
static void test_token_retry_other_scid_rejected(void **state) {
  fixture *f = *state;
  ngtcp2_cid other, shorter, got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  other = f->rscid;
  other.data[other.datalen - 1] ^= 1;
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        &other, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_MALFORMED);

  /* A prefix of the right SCID is not the right SCID. */
  ngtcp2_cid_init(&shorter, f->rscid.data, f->rscid.datalen - 1);
  reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        &shorter, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_MALFORMED);

  /* Nor is the original DCID. */
  reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        &f->odcid, NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_MALFORMED);
}

static void test_token_new_other_port_accepted(void **state) {
  fixture *f = *state;
  struct sockaddr_in other;

  seal_new_v4(f, NOW);
  set_v4(&other, "192.0.2.7", 61000);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(other), sizeof(other), NOW, 10, NULL),
                   0);
}

static void test_token_new_other_ip_rejected(void **state) {
  fixture *f = *state;
  struct sockaddr_in other;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_new_v4(f, NOW);
  set_v4(&other, "198.51.100.7", 4433);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(other), sizeof(other), NOW, 10,
                                      &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_ADDRESS);
}

static void test_token_types_never_cross(void **state) {
  fixture *f = *state;
  uint8_t swapped[UVQ_TOKEN_MAXLEN];
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  /* A Retry token offered as NEW_TOKEN: wrong type byte. */
  seal_retry_v4(f, NOW);
  assert_int_equal(uvq_token_open_new(&f->keys, f->tok, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW, UINT64_MAX,
                                      &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_MALFORMED);
  /* Relabelled as NEW_TOKEN: the type byte is authenticated. (Retry tokens
   * are longer than any NEW_TOKEN, so this one is refused on length.) */
  memcpy(swapped, f->tok, f->toklen);
  swapped[0] = UVQ_TOKEN_TYPE_NEW;
  assert_int_equal(uvq_token_open_new(&f->keys, swapped, f->toklen, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW, UINT64_MAX,
                                      &reason),
                   UVQ_ERR_INVALID_TOKEN);

  /* A NEW_TOKEN token offered as Retry, as is and relabelled. */
  seal_new_v4(f, NOW);
  reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_MALFORMED);
  memcpy(swapped, f->tok, f->toklen);
  swapped[0] = UVQ_TOKEN_TYPE_RETRY;
  assert_int_equal(open_retry_v4(f, swapped, f->toklen, NOW, &reason),
                   UVQ_ERR_INVALID_TOKEN);
}

/* A NEW_TOKEN token for an IPv6 client has the length of a short Retry
 * token, so relabelling it reaches the AEAD: the authenticated type byte
 * is what refuses it. */
static void test_token_relabelled_fails_auth(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  ngtcp2_cid got;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  ssize_t n;

  n = uvq_token_seal_new(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1, SA(f->v6),
                         sizeof(f->v6), NOW);
  assert_true(n > 0);
  tok[0] = UVQ_TOKEN_TYPE_RETRY;
  assert_int_equal(uvq_token_open_retry(&f->keys, tok, (size_t)n, UVQ_QUIC_V1,
                                        SA(f->v6), sizeof(f->v6), &f->rscid,
                                        NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_DECRYPT);
}

static void test_token_type(void **state) {
  const uint8_t foreign[] = {0xb6, 0x00};
  (void)state;
  assert_int_equal(uvq_token_type(NULL, 0), -1);
  assert_int_equal(uvq_token_type(foreign, 0), -1);
  assert_int_equal(uvq_token_type(foreign, sizeof(foreign)), 0xb6);
  assert_int_not_equal(UVQ_TOKEN_TYPE_RETRY, UVQ_TOKEN_TYPE_NEW);
}

static void test_token_wrong_key_rejected(void **state) {
  fixture *f = *state;
  uvq_token_keys other;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  ngtcp2_cid got;

  seal_retry_v4(f, NOW);
  assert_int_equal(uvq_token_keys_init(&other, key_b), 0);
  assert_int_equal(uvq_token_open_retry(&other, f->tok, f->toklen, UVQ_QUIC_V1,
                                        SA(f->v4), sizeof(f->v4), &f->rscid,
                                        NOW, 10, &got, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_DECRYPT);
  uvq_token_keys_free(&other);
}

/* Another process holding the same key (not a copy of our ring) opens our
 * tokens: nothing but the key is shared. */
static void test_token_shared_key_across_rings(void **state) {
  fixture *f = *state;
  uvq_token_keys sibling;
  ngtcp2_cid got;

  assert_int_equal(uvq_token_keys_init(&sibling, key_c), 0);
  assert_int_equal(uvq_token_keys_rotate(&sibling, key_a), 0);
  seal_retry_v4(f, NOW);
  assert_int_equal(uvq_token_open_retry(&sibling, f->tok, f->toklen,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        &f->rscid, NOW, 10, &got, NULL),
                   0);
  uvq_token_keys_free(&sibling);
}

static void test_token_key_rotation(void **state) {
  fixture *f = *state;
  uint8_t new_a[UVQ_TOKEN_MAXLEN], retry_b[UVQ_TOKEN_MAXLEN];
  size_t new_a_len, retry_b_len;
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  ssize_t n;

  /* Sealed under A. */
  seal_retry_v4(f, NOW);
  n = uvq_token_seal_new(&f->keys, new_a, sizeof(new_a), UVQ_QUIC_V1, SA(f->v4),
                         sizeof(f->v4), NOW);
  assert_true(n > 0);
  new_a_len = (size_t)n;

  /* A -> B: A's tokens still verify; new tokens are sealed under B. */
  assert_int_equal(uvq_token_keys_rotate(&f->keys, key_b), 0);
  assert_int_equal(f->keys.sealed, 0);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, &reason), 0);
  assert_int_equal(uvq_token_open_new(&f->keys, new_a, new_a_len, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW, 10,
                                      &reason),
                   0);
  n = uvq_token_seal_retry(&f->keys, retry_b, sizeof(retry_b), UVQ_QUIC_V1,
                           SA(f->v4), sizeof(f->v4), &f->odcid, &f->rscid, NOW);
  assert_true(n > 0);
  retry_b_len = (size_t)n;
  assert_int_equal(retry_b[1], uvq_token_key_id(key_b));
  assert_int_equal(open_retry_v4(f, retry_b, retry_b_len, NOW, &reason), 0);

  /* B -> C: A is gone, B still verifies. */
  assert_int_equal(uvq_token_keys_rotate(&f->keys, key_c), 0);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_DECRYPT);
  reason = UVQ_TOKEN_REJECT_REASON_COUNT;
  assert_int_equal(uvq_token_open_new(&f->keys, new_a, new_a_len, UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW, 10,
                                      &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_DECRYPT);
  assert_int_equal(open_retry_v4(f, retry_b, retry_b_len, NOW, &reason), 0);
}

/* When the current and previous key share an id, both are tried. */
static void test_token_key_id_collision(void **state) {
  fixture *f = *state;
  uint8_t twin[UVQ_TOKEN_KEYLEN];
  uint8_t id_a = uvq_token_key_id(key_a);
  uint8_t tok_twin[UVQ_TOKEN_MAXLEN];
  ssize_t n;
  unsigned i;

  /* Find a key with A's id (about 256 tries). */
  memcpy(twin, key_b, sizeof(twin));
  for (i = 0; i < 100000; ++i) {
    twin[0] = (uint8_t)i;
    twin[1] = (uint8_t)(i >> 8);
    twin[2] = (uint8_t)(i >> 16);
    if (uvq_token_key_id(twin) == id_a && memcmp(twin, key_a, 16) != 0) {
      break;
    }
  }
  assert_true(i < 100000);

  seal_retry_v4(f, NOW);
  assert_int_equal(uvq_token_keys_rotate(&f->keys, twin), 0);
  n = uvq_token_seal_retry(&f->keys, tok_twin, sizeof(tok_twin), UVQ_QUIC_V1,
                           SA(f->v4), sizeof(f->v4), &f->odcid, &f->rscid, NOW);
  assert_true(n > 0);
  assert_int_equal(tok_twin[1], f->tok[1]);
  /* Previous key (A) behind a current key with the same id. */
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, NULL), 0);
  assert_int_equal(open_retry_v4(f, tok_twin, (size_t)n, NOW, NULL), 0);
}

/* The id byte of a token is the id of the key that sealed it, and ids
 * depend on the key bytes. */
static void test_token_key_id_stable(void **state) {
  fixture *f = *state;
  uint8_t key[UVQ_TOKEN_KEYLEN];
  int seen[256] = {0};
  unsigned distinct = 0;

  seal_retry_v4(f, NOW);
  assert_int_equal(f->tok[1], uvq_token_key_id(key_a));
  assert_int_equal(uvq_token_key_id(key_a), uvq_token_key_id(key_a));
  memcpy(key, key_a, sizeof(key));
  for (unsigned i = 0; i < 64; ++i) {
    key[15] = (uint8_t)i;
    uint8_t id = uvq_token_key_id(key);
    if (!seen[id]) {
      seen[id] = 1;
      ++distinct;
    }
  }
  /* 64 keys landing on fewer than 16 ids would mean a broken derivation. */
  assert_true(distinct >= 16);
}

static void test_token_bad_arguments(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  struct sockaddr_un_like {
    sa_family_t family;
    char path[32];
  } unix_addr;
  ngtcp2_cid big, got;

  memset(&unix_addr, 0, sizeof(unix_addr));
  unix_addr.family = AF_UNIX;
  big = f->odcid;
  big.datalen = NGTCP2_MAX_CIDLEN + 1;

  /* Output one byte too small. */
  seal_retry_v4(f, NOW);
  assert_int_equal(uvq_token_seal_retry(&f->keys, tok, f->toklen - 1,
                                        UVQ_QUIC_V1, SA(f->v4), sizeof(f->v4),
                                        &f->odcid, &f->rscid, NOW),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_token_seal_retry(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1,
                                        SA(unix_addr), sizeof(unix_addr),
                                        &f->odcid, &f->rscid, NOW),
                   UVQ_ERR_INVALID_ARGUMENT);
  /* sockaddr length shorter than its family needs. */
  assert_int_equal(uvq_token_seal_new(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1,
                                      SA(f->v6), sizeof(struct sockaddr_in),
                                      NOW),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_token_seal_retry(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1,
                                        SA(f->v4), sizeof(f->v4), &big,
                                        &f->rscid, NOW),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_token_open_retry(&f->keys, f->tok, f->toklen,
                                        UVQ_QUIC_V1, NULL, 0, &f->rscid, NOW,
                                        10, &got, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_token_keys_init(NULL, key_a), UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_token_keys_rotate(&f->keys, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  /* A failed call changed nothing: the token still verifies. */
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, NULL), 0);
}

static void test_token_freed_ring(void **state) {
  fixture *f = *state;
  uint8_t tok[UVQ_TOKEN_MAXLEN];
  uvq_token_reject_reason reason = UVQ_TOKEN_REJECT_REASON_COUNT;

  seal_retry_v4(f, NOW);
  uvq_token_keys_free(&f->keys);
  uvq_token_keys_free(&f->keys); /* idempotent */
  uvq_token_keys_free(NULL);
  assert_int_equal(uvq_token_seal_new(&f->keys, tok, sizeof(tok), UVQ_QUIC_V1,
                                      SA(f->v4), sizeof(f->v4), NOW),
                   UVQ_ERR_INVALID_STATE);
  assert_int_equal(open_retry_v4(f, f->tok, f->toklen, NOW, &reason),
                   UVQ_ERR_INVALID_TOKEN);
  assert_int_equal(reason, UVQ_TOKEN_REJECT_DECRYPT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      T(test_token_retry_round_trip_v4),
      T(test_token_retry_round_trip_v6),
      T(test_token_retry_empty_cids),
      T(test_token_new_round_trip_v4),
      T(test_token_new_round_trip_v6),
      T(test_token_nonce_differs),
      T(test_token_v4mapped_matches_v4),
      T(test_token_retry_bitflip_rejected),
      T(test_token_new_bitflip_rejected),
      T(test_token_retry_truncated_rejected),
      T(test_token_new_truncated_rejected),
      T(test_token_retry_expiry),
      T(test_token_new_expiry),
      T(test_token_future_issue_rejected),
      T(test_token_retry_other_ip_rejected),
      T(test_token_retry_v6_other_ip_rejected),
      T(test_token_retry_other_port_rejected),
      T(test_token_retry_other_version_rejected),
      T(test_token_retry_other_scid_rejected),
      T(test_token_new_other_port_accepted),
      T(test_token_new_other_ip_rejected),
      T(test_token_types_never_cross),
      T(test_token_relabelled_fails_auth),
      T(test_token_type),
      T(test_token_wrong_key_rejected),
      T(test_token_shared_key_across_rings),
      T(test_token_key_rotation),
      T(test_token_key_id_collision),
      T(test_token_key_id_stable),
      T(test_token_bad_arguments),
      T(test_token_freed_ring),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
