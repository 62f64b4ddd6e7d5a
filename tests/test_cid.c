/* Tests for src/core/cid.c: the CID generator interface and random CIDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/cid.h"

static void test_cid_gen_random_honours_every_length(void **state) {
  size_t len;
  (void)state;

  for (len = 8; len <= 20; ++len) {
    uvq_cid_gen gen;
    ngtcp2_cid cid;

    memset(&cid, 0, sizeof(cid));
    assert_int_equal(uvq_cid_gen_random_init(&gen, len), 0);
    assert_int_equal(gen.cid_len, len);
    assert_non_null(gen.generate);
    assert_int_equal(uvq_cid_gen_generate(&gen, &cid), 0);
    assert_int_equal(cid.datalen, len);
  }
}

static void test_cid_gen_random_rejects_bad_lengths(void **state) {
  static const size_t bad[] = {0, 1, 7, 21, 255};
  size_t i;
  (void)state;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
    uvq_cid_gen gen, before;
    /* A rejected init leaves the generator untouched. */
    memset(&gen, 0xab, sizeof(gen));
    before = gen;
    assert_int_equal(uvq_cid_gen_random_init(&gen, bad[i]),
                     UVQ_ERR_INVALID_ARGUMENT);
    assert_memory_equal(&gen, &before, sizeof(gen));
  }
}

static void test_cid_gen_random_cids_differ(void **state) {
  enum { N = 256 };
  static ngtcp2_cid cids[N];
  uvq_cid_gen gen;
  size_t i, j;
  (void)state;

  /* 8 random bytes: a collision among 256 has probability ~2^-49. */
  assert_int_equal(uvq_cid_gen_random_init(&gen, 8), 0);
  for (i = 0; i < N; ++i) {
    assert_int_equal(uvq_cid_gen_generate(&gen, &cids[i]), 0);
    for (j = 0; j < i; ++j) {
      assert_memory_not_equal(cids[i].data, cids[j].data, 8);
    }
  }
}

static void test_cid_gen_random_fills_every_byte(void **state) {
  /* Each of the 20 positions must change across draws: catches a generator
   * that writes fewer bytes than it claims. Chance of a false failure:
   * 20 * 2^-(8*63). */
  uint8_t seen_diff[20] = {0};
  ngtcp2_cid first, cid;
  uvq_cid_gen gen;
  size_t i, k;
  (void)state;

  assert_int_equal(uvq_cid_gen_random_init(&gen, 20), 0);
  assert_int_equal(uvq_cid_gen_generate(&gen, &first), 0);
  for (i = 0; i < 64; ++i) {
    assert_int_equal(uvq_cid_gen_generate(&gen, &cid), 0);
    for (k = 0; k < 20; ++k) {
      seen_diff[k] |= (uint8_t)(cid.data[k] != first.data[k]);
    }
  }
  for (k = 0; k < 20; ++k) {
    assert_true(seen_diff[k]);
  }
}

static void test_cid_random_lengths(void **state) {
  size_t len;
  ngtcp2_cid cid;
  (void)state;

  for (len = 0; len <= 20; ++len) {
    cid.datalen = 99;
    assert_int_equal(uvq_cid_random(&cid, len), 0);
    assert_int_equal(cid.datalen, len);
  }
  cid.datalen = 5;
  assert_int_equal(uvq_cid_random(&cid, 21), UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(cid.datalen, 5);
}

typedef struct fixed_gen_state {
  int calls;
  size_t write_len;
  int rv;
} fixed_gen_state;

static int fixed_generate(uvq_cid_gen *gen, ngtcp2_cid *cid) {
  fixed_gen_state *st = gen->user_data;
  ++st->calls;
  if (st->rv != 0) {
    return st->rv;
  }
  memset(cid->data, 0x5a, st->write_len);
  cid->datalen = st->write_len;
  return 0;
}

static void test_cid_gen_generate_dispatches(void **state) {
  fixed_gen_state st = {0, 12, 0};
  uvq_cid_gen gen = {fixed_generate, 12, &st, 0, 0};
  ngtcp2_cid cid;
  uint8_t expect[12];
  (void)state;

  memset(expect, 0x5a, sizeof(expect));
  assert_int_equal(uvq_cid_gen_generate(&gen, &cid), 0);
  assert_int_equal(st.calls, 1);
  assert_int_equal(cid.datalen, 12);
  assert_memory_equal(cid.data, expect, 12);

  /* The generator's own error comes back unchanged. */
  st.rv = UVQ_ERR_NOMEM;
  assert_int_equal(uvq_cid_gen_generate(&gen, &cid), UVQ_ERR_NOMEM);
  assert_int_equal(st.calls, 2);
}

static void test_cid_gen_generate_catches_wrong_length(void **state) {
  fixed_gen_state st = {0, 11, 0};
  uvq_cid_gen gen = {fixed_generate, 12, &st, 0, 0};
  ngtcp2_cid cid;
  (void)state;

  assert_int_equal(uvq_cid_gen_generate(&gen, &cid), UVQ_ERR_INTERNAL);
  assert_int_equal(st.calls, 1);
}

/* A shard index replaces the first octet's low five bits of whatever the
 * generator wrote, and only those. */
static void test_cid_gen_generate_writes_shard(void **state) {
  fixed_gen_state st = {0, 12, 0};
  uvq_cid_gen gen = {fixed_generate, 12, &st, 1, 0x13};
  ngtcp2_cid cid;
  (void)state;

  assert_int_equal(uvq_cid_gen_generate(&gen, &cid), 0);
  /* 0x5a = 010 11010: the top three bits stay, the low five are 0x13. */
  assert_int_equal(cid.data[0], 0x40 | 0x13);
  assert_int_equal(cid.data[1], 0x5a);
  gen.has_shard = 0;
  assert_int_equal(uvq_cid_gen_generate(&gen, &cid), 0);
  assert_int_equal(cid.data[0], 0x5a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cid_gen_generate_writes_shard),
      cmocka_unit_test(test_cid_gen_random_honours_every_length),
      cmocka_unit_test(test_cid_gen_random_rejects_bad_lengths),
      cmocka_unit_test(test_cid_gen_random_cids_differ),
      cmocka_unit_test(test_cid_gen_random_fills_every_byte),
      cmocka_unit_test(test_cid_random_lengths),
      cmocka_unit_test(test_cid_gen_generate_dispatches),
      cmocka_unit_test(test_cid_gen_generate_catches_wrong_length),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
