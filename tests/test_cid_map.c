/* Tests for src/core/cid_map.c: the keyed-hash CID map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cid_map.h"

static const uint8_t seed[UVQ_CID_MAP_KEYLEN] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

#define VAL(i) ((void *)(uintptr_t)((i) + 1))

/* ------------------------------------------------------------------------ */
/* An allocator that fails every call after the first |budget| ones.        */
/* ------------------------------------------------------------------------ */

typedef struct fail_mem {
  uvq_mem mem;
  size_t calls;
  size_t budget;
  size_t live;
} fail_mem;

static int fail_mem_take(fail_mem *fm) {
  ++fm->calls;
  return fm->calls <= fm->budget;
}

static void *fm_malloc(size_t size, void *user_data) {
  fail_mem *fm = user_data;
  void *p;
  if (!fail_mem_take(fm) || (p = malloc(size)) == NULL) {
    return NULL;
  }
  ++fm->live;
  return p;
}

static void fm_free(void *ptr, void *user_data) {
  fail_mem *fm = user_data;
  if (ptr) {
    --fm->live;
  }
  free(ptr);
}

static void *fm_calloc(size_t nmemb, size_t size, void *user_data) {
  fail_mem *fm = user_data;
  void *p;
  if (!fail_mem_take(fm) || (p = calloc(nmemb, size)) == NULL) {
    return NULL;
  }
  ++fm->live;
  return p;
}

static void *fm_realloc(void *ptr, size_t size, void *user_data) {
  fail_mem *fm = user_data;
  void *p;
  if (!fail_mem_take(fm) || (p = realloc(ptr, size)) == NULL) {
    return NULL;
  }
  if (ptr == NULL) {
    ++fm->live;
  }
  return p;
}

static void fail_mem_init(fail_mem *fm, size_t budget) {
  fm->mem.user_data = fm;
  fm->mem.malloc = fm_malloc;
  fm->mem.free = fm_free;
  fm->mem.calloc = fm_calloc;
  fm->mem.realloc = fm_realloc;
  fm->calls = 0;
  fm->budget = budget;
  fm->live = 0;
}

/* ------------------------------------------------------------------------ */
/* Deterministic keys                                                       */
/* ------------------------------------------------------------------------ */

/* make_key writes key number |i| (unique per i) of 4..20 bytes into |buf|
 * and returns its length: i in the first 4 bytes, noise after. */
static size_t make_key(uint8_t *buf, uint32_t i) {
  size_t len = 4 + (size_t)(i % 17), k;
  uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + 1;

  buf[0] = (uint8_t)i;
  buf[1] = (uint8_t)(i >> 8);
  buf[2] = (uint8_t)(i >> 16);
  buf[3] = (uint8_t)(i >> 24);
  for (k = 4; k < len; ++k) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[k] = (uint8_t)x;
  }
  return len;
}

/* ------------------------------------------------------------------------ */
/* SipHash                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t key_lo(void) { return 0x0706050403020100ull; }
static uint64_t key_hi(void) { return 0x0f0e0d0c0b0a0908ull; }

static void test_cid_map_siphash24_matches_paper(void **state) {
  uint8_t msg[15];
  size_t i;
  (void)state;

  for (i = 0; i < sizeof(msg); ++i) {
    msg[i] = (uint8_t)i;
  }
  /* Appendix A of the SipHash paper: key 00..0f, message 00..0e. */
  assert_int_equal(uvq_siphash24(key_lo(), key_hi(), msg, 15),
                   0xa129ca6149be45e5ull);
  /* The reference implementation's vector for the empty message. */
  assert_int_equal(uvq_siphash24(key_lo(), key_hi(), msg, 0),
                   0x726fdb47dd0e0e31ull);
}

static void test_cid_map_siphash13_matches_reference(void **state) {
  /* SipHash-1-3 under the all-zero key, message 00..len-1, as computed by
   * CPython 3.11's independent implementation (PYTHONHASHSEED=0 zeroes its
   * key; hash(bytes(range(len)))). Lengths cover 0, 1 and 2 full blocks
   * with 0, 1 and 7 trailing bytes. */
  static const struct {
    size_t len;
    uint64_t hash;
  } v[] = {
      {1, 0x68a914128e01e473ull},  {7, 0x2f098ab0c751325aull},
      {8, 0xead411e67ebe2eeaull},  {9, 0x75927f9d95124362ull},
      {15, 0xf30eb725bb91c9eaull}, {16, 0x8972188433a5c5b7ull},
      {20, 0x639e355ae68c0100ull},
  };
  uint8_t msg[20];
  size_t i;
  (void)state;

  for (i = 0; i < sizeof(msg); ++i) {
    msg[i] = (uint8_t)i;
  }
  for (i = 0; i < sizeof(v) / sizeof(v[0]); ++i) {
    assert_int_equal(uvq_siphash13(0, 0, msg, v[i].len), v[i].hash);
  }
  /* And the key matters. */
  assert_int_not_equal(uvq_siphash13(1, 0, msg, 8), v[2].hash);
  assert_int_not_equal(uvq_siphash13(0, 1, msg, 8), v[2].hash);
}

/* ------------------------------------------------------------------------ */
/* Map behaviour                                                            */
/* ------------------------------------------------------------------------ */

static void test_cid_map_every_key_length(void **state) {
  uvq_cid_map map;
  uint8_t key[UVQ_MAX_CIDLEN];
  size_t len;
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  for (len = 0; len <= UVQ_MAX_CIDLEN; ++len) {
    memset(key, (int)(0xc0 + len), sizeof(key));
    assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(len)), 0);
    assert_int_equal(uvq_cid_map_size(&map), len + 1);
  }
  for (len = 0; len <= UVQ_MAX_CIDLEN; ++len) {
    memset(key, (int)(0xc0 + len), sizeof(key));
    assert_ptr_equal(uvq_cid_map_find(&map, key, len), VAL(len));
  }
  for (len = 0; len <= UVQ_MAX_CIDLEN; ++len) {
    memset(key, (int)(0xc0 + len), sizeof(key));
    assert_ptr_equal(uvq_cid_map_erase(&map, key, len), VAL(len));
    assert_null(uvq_cid_map_find(&map, key, len));
  }
  assert_int_equal(uvq_cid_map_size(&map), 0);
  uvq_cid_map_free(&map);
}

static void test_cid_map_empty_key_may_be_null(void **state) {
  uvq_cid_map map;
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_null(uvq_cid_map_find(&map, NULL, 0));
  assert_int_equal(uvq_cid_map_insert(&map, NULL, 0, VAL(7)), 0);
  assert_ptr_equal(uvq_cid_map_find(&map, (const uint8_t *)"", 0), VAL(7));
  assert_ptr_equal(uvq_cid_map_erase(&map, NULL, 0), VAL(7));
  assert_int_equal(uvq_cid_map_size(&map), 0);
  uvq_cid_map_free(&map);
}

static void test_cid_map_many_entries(void **state) {
  enum { N = 100000 };
  uvq_cid_map map;
  uint8_t key[UVQ_MAX_CIDLEN];
  size_t len;
  uint32_t i;
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(i)), 0);
  }
  assert_int_equal(uvq_cid_map_size(&map), N);
  /* Load stays at or below 3/4. */
  assert_true(uvq_cid_map_size(&map) * 4 <= uvq_cid_map_capacity(&map) * 3);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_find(&map, key, len), VAL(i));
  }

  /* Erase the odd ones. */
  for (i = 1; i < N; i += 2) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_erase(&map, key, len), VAL(i));
  }
  assert_int_equal(uvq_cid_map_size(&map), N / 2);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    if (i & 1) {
      assert_null(uvq_cid_map_find(&map, key, len));
      assert_null(uvq_cid_map_erase(&map, key, len));
    } else {
      assert_ptr_equal(uvq_cid_map_find(&map, key, len), VAL(i));
    }
  }

  /* Put them back with new values. */
  for (i = 1; i < N; i += 2) {
    len = make_key(key, i);
    assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(i + N)), 0);
  }
  assert_int_equal(uvq_cid_map_size(&map), N);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_find(&map, key, len),
                     (i & 1) ? VAL(i + N) : VAL(i));
  }

  /* Keys never inserted are absent. */
  for (i = N; i < N + 1000; ++i) {
    len = make_key(key, i);
    assert_null(uvq_cid_map_find(&map, key, len));
  }
  uvq_cid_map_free(&map);
}

static void test_cid_map_duplicate_insert(void **state) {
  uvq_cid_map map;
  const uint8_t key[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_int_equal(uvq_cid_map_insert(&map, key, 8, VAL(1)), 0);
  assert_int_equal(uvq_cid_map_insert(&map, key, 8, VAL(2)),
                   UVQ_ERR_CID_IN_USE);
  assert_ptr_equal(uvq_cid_map_find(&map, key, 8), VAL(1));
  assert_int_equal(uvq_cid_map_size(&map), 1);
  uvq_cid_map_free(&map);
}

static void test_cid_map_keylen_21_rejected(void **state) {
  uvq_cid_map map;
  uint8_t key[21] = {0};
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_int_equal(uvq_cid_map_insert(&map, key, 21, VAL(1)),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_cid_map_size(&map), 0);
  assert_null(uvq_cid_map_find(&map, key, 21));
  assert_null(uvq_cid_map_erase(&map, key, 21));
  /* The 20-byte prefix was not stored under another length either. */
  assert_null(uvq_cid_map_find(&map, key, 20));
  uvq_cid_map_free(&map);
}

static void test_cid_map_null_value_rejected(void **state) {
  uvq_cid_map map;
  const uint8_t key[8] = {0};
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_int_equal(uvq_cid_map_insert(&map, key, 8, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_cid_map_size(&map), 0);
  uvq_cid_map_free(&map);
}

static void test_cid_map_keys_differing_only_in_length(void **state) {
  uvq_cid_map map;
  const uint8_t zeros[UVQ_MAX_CIDLEN] = {0};
  size_t len;
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  /* "", "\0", "\0\0" */
  for (len = 0; len < 3; ++len) {
    assert_null(uvq_cid_map_find(&map, zeros, len));
    assert_int_equal(uvq_cid_map_insert(&map, zeros, len, VAL(len)), 0);
  }
  assert_int_equal(uvq_cid_map_size(&map), 3);
  for (len = 0; len < 3; ++len) {
    assert_ptr_equal(uvq_cid_map_find(&map, zeros, len), VAL(len));
  }
  assert_null(uvq_cid_map_find(&map, zeros, 3));
  assert_ptr_equal(uvq_cid_map_erase(&map, zeros, 1), VAL(1));
  assert_ptr_equal(uvq_cid_map_find(&map, zeros, 0), VAL(0));
  assert_null(uvq_cid_map_find(&map, zeros, 1));
  assert_ptr_equal(uvq_cid_map_find(&map, zeros, 2), VAL(2));
  uvq_cid_map_free(&map);
}

static void test_cid_map_copies_key(void **state) {
  uvq_cid_map map;
  uint8_t key[8] = {9, 9, 9, 9, 9, 9, 9, 9};
  const uint8_t orig[8] = {9, 9, 9, 9, 9, 9, 9, 9};
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_int_equal(uvq_cid_map_insert(&map, key, 8, VAL(3)), 0);
  memset(key, 0, sizeof(key));
  assert_ptr_equal(uvq_cid_map_find(&map, orig, 8), VAL(3));
  assert_null(uvq_cid_map_find(&map, key, 8));
  uvq_cid_map_free(&map);
}

static void test_cid_map_ngtcp2_cid_wrappers(void **state) {
  uvq_cid_map map;
  ngtcp2_cid a, b;
  const uint8_t abytes[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                              9, 10, 11, 12, 13, 14, 15, 16};
  (void)state;

  ngtcp2_cid_init(&a, abytes, 16);
  ngtcp2_cid_init(&b, abytes, 15);
  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_int_equal(uvq_cid_map_insert_cid(&map, &a, VAL(1)), 0);
  assert_int_equal(uvq_cid_map_insert_cid(&map, &a, VAL(2)),
                   UVQ_ERR_CID_IN_USE);
  assert_ptr_equal(uvq_cid_map_find_cid(&map, &a), VAL(1));
  assert_ptr_equal(uvq_cid_map_find(&map, abytes, 16), VAL(1));
  assert_null(uvq_cid_map_find_cid(&map, &b));
  assert_null(uvq_cid_map_erase_cid(&map, &b));
  assert_ptr_equal(uvq_cid_map_erase_cid(&map, &a), VAL(1));
  assert_int_equal(uvq_cid_map_size(&map), 0);
  uvq_cid_map_free(&map);
}

static void test_cid_map_init_nomem(void **state) {
  fail_mem fm;
  uvq_cid_map map;
  (void)state;

  fail_mem_init(&fm, 0);
  assert_int_equal(uvq_cid_map_init(&map, &fm.mem), UVQ_ERR_NOMEM);
  assert_int_equal(fm.live, 0);
  /* Freeing after a failed init is harmless. */
  uvq_cid_map_free(&map);
}

static void test_cid_map_grow_nomem_leaves_map_intact(void **state) {
  fail_mem fm;
  uvq_cid_map map;
  uint8_t key[UVQ_MAX_CIDLEN];
  size_t len, n, cap;
  uint32_t i;
  (void)state;

  /* Only the initial table may be allocated. */
  fail_mem_init(&fm, 1);
  assert_int_equal(uvq_cid_map_init_seeded(&map, &fm.mem, seed), 0);
  cap = uvq_cid_map_capacity(&map);
  assert_int_equal(cap, UVQ_CID_MAP_INITIAL_CAPACITY);

  for (i = 0;; ++i) {
    int rv;
    len = make_key(key, i);
    rv = uvq_cid_map_insert(&map, key, len, VAL(i));
    if (rv != 0) {
      assert_int_equal(rv, UVQ_ERR_NOMEM);
      break;
    }
    assert_true(i < cap);
  }
  n = i; /* keys 0..n-1 are in; key n was refused */
  assert_int_equal(n, cap * 3 / 4);
  assert_int_equal(uvq_cid_map_size(&map), n);
  assert_int_equal(uvq_cid_map_capacity(&map), cap);
  for (i = 0; i < n; ++i) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_find(&map, key, len), VAL(i));
  }
  len = make_key(key, (uint32_t)n);
  assert_null(uvq_cid_map_find(&map, key, len));
  /* Duplicates still report themselves, without trying to grow. */
  fm.calls = 0;
  len = make_key(key, 0);
  assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(99)),
                   UVQ_ERR_CID_IN_USE);
  assert_int_equal(fm.calls, 0);

  /* Still usable: erase one, and the refused key fits without growing. */
  len = make_key(key, 1);
  assert_ptr_equal(uvq_cid_map_erase(&map, key, len), VAL(1));
  len = make_key(key, (uint32_t)n);
  assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(n)), 0);
  assert_ptr_equal(uvq_cid_map_find(&map, key, len), VAL(n));

  /* Memory comes back: the map grows and keeps everything. */
  fm.budget = SIZE_MAX;
  len = make_key(key, 1);
  assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(1)), 0);
  for (i = (uint32_t)n + 1; i < 1000; ++i) {
    len = make_key(key, i);
    assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(i)), 0);
  }
  assert_true(uvq_cid_map_capacity(&map) > cap);
  for (i = 0; i < 1000; ++i) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_find(&map, key, len), VAL(i));
  }
  uvq_cid_map_free(&map);
  assert_int_equal(fm.live, 0);
}

static void test_cid_map_grow_nomem_at_every_size(void **state) {
  /* Refuse the k-th growth for every k up to 2^10 slots: each refusal
   * leaves exactly the keys inserted so far. */
  enum { N = 800 };
  uint8_t key[UVQ_MAX_CIDLEN];
  size_t len, budget;
  uint32_t i, n;
  (void)state;

  for (budget = 1; budget <= 7; ++budget) {
    fail_mem fm;
    uvq_cid_map map;

    fail_mem_init(&fm, budget);
    assert_int_equal(uvq_cid_map_init_seeded(&map, &fm.mem, seed), 0);
    for (n = 0; n < N; ++n) {
      len = make_key(key, n);
      if (uvq_cid_map_insert(&map, key, len, VAL(n)) != 0) {
        break;
      }
    }
    assert_true(n < N);
    assert_int_equal(uvq_cid_map_size(&map), n);
    for (i = 0; i <= n; ++i) {
      len = make_key(key, i);
      assert_ptr_equal(uvq_cid_map_find(&map, key, len), i < n ? VAL(i) : NULL);
    }
    uvq_cid_map_free(&map);
    assert_int_equal(fm.live, 0);
  }
}

static void test_cid_map_shrinks_but_not_below_initial(void **state) {
  enum { N = 5000 };
  uvq_cid_map map;
  uint8_t key[UVQ_MAX_CIDLEN];
  size_t len, peak;
  uint32_t i;
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(i)), 0);
  }
  peak = uvq_cid_map_capacity(&map);
  assert_true(peak >= N * 4 / 3);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_erase(&map, key, len), VAL(i));
    assert_true(uvq_cid_map_capacity(&map) >= UVQ_CID_MAP_INITIAL_CAPACITY);
  }
  assert_int_equal(uvq_cid_map_size(&map), 0);
  assert_int_equal(uvq_cid_map_capacity(&map), UVQ_CID_MAP_INITIAL_CAPACITY);
  uvq_cid_map_free(&map);
}

static void test_cid_map_shrink_nomem_is_harmless(void **state) {
  enum { N = 3000 };
  fail_mem fm;
  uvq_cid_map map;
  uint8_t key[UVQ_MAX_CIDLEN];
  size_t len, peak;
  uint32_t i;
  (void)state;

  fail_mem_init(&fm, SIZE_MAX);
  assert_int_equal(uvq_cid_map_init_seeded(&map, &fm.mem, seed), 0);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_int_equal(uvq_cid_map_insert(&map, key, len, VAL(i)), 0);
  }
  peak = uvq_cid_map_capacity(&map);
  fm.budget = fm.calls; /* nothing more */
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    if (i % 3 != 0) {
      assert_ptr_equal(uvq_cid_map_erase(&map, key, len), VAL(i));
    }
  }
  assert_int_equal(uvq_cid_map_capacity(&map), peak);
  for (i = 0; i < N; ++i) {
    len = make_key(key, i);
    assert_ptr_equal(uvq_cid_map_find(&map, key, len),
                     i % 3 == 0 ? VAL(i) : NULL);
  }
  uvq_cid_map_free(&map);
  assert_int_equal(fm.live, 0);
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void test_cid_map_matches_model_under_churn(void **state) {
  /* Random inserts, erases and lookups over a small key universe, checked
   * against a plain array: exercises Robin Hood displacement, backward
   * shifts across the table's wrap-around, growth and shrinking. */
  enum { KEYS = 300, OPS = 200000 };
  static uint8_t keys[KEYS][UVQ_MAX_CIDLEN];
  static size_t lens[KEYS];
  static void *model[KEYS];
  uvq_cid_map map;
  uint64_t s = 0x2545f4914f6cdd1dull;
  size_t i, n = 0, op;
  (void)state;

  for (i = 0; i < KEYS; ++i) {
    size_t k;
    /* Short keys so many share prefixes; index in the first byte pair keeps
     * them unique (length 0 and 1 are special-cased below). */
    lens[i] = i == 0 ? 0 : 2 + (size_t)(rng_next(&s) % 19);
    keys[i][0] = (uint8_t)i;
    keys[i][1] = (uint8_t)(i >> 8);
    for (k = 2; k < UVQ_MAX_CIDLEN; ++k) {
      keys[i][k] = (uint8_t)(rng_next(&s) & 1);
    }
  }
  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  for (op = 0; op < OPS; ++op) {
    uint64_t r = rng_next(&s);
    size_t k = (size_t)(r % KEYS);
    /* Bias between phases so the map fills up and drains repeatedly. */
    int fill = (op / 20000) % 2 == 0;
    unsigned choice = (unsigned)((r >> 32) % 8);

    if (choice < (fill ? 5u : 2u)) {
      void *v = VAL(op);
      int rv = uvq_cid_map_insert(&map, keys[k], lens[k], v);
      if (model[k] != NULL) {
        assert_int_equal(rv, UVQ_ERR_CID_IN_USE);
      } else {
        assert_int_equal(rv, 0);
        model[k] = v;
        ++n;
      }
    } else if (choice < 6u) {
      assert_ptr_equal(uvq_cid_map_erase(&map, keys[k], lens[k]), model[k]);
      if (model[k] != NULL) {
        model[k] = NULL;
        --n;
      }
    } else {
      assert_ptr_equal(uvq_cid_map_find(&map, keys[k], lens[k]), model[k]);
    }
    assert_int_equal(uvq_cid_map_size(&map), n);
  }
  for (i = 0; i < KEYS; ++i) {
    assert_ptr_equal(uvq_cid_map_find(&map, keys[i], lens[i]), model[i]);
  }
  uvq_cid_map_free(&map);
}

/* The memo of the router's lookups: a repeated key is answered from it,
 * an erase forgets it (even of another key), and a key that differs only
 * in length is not mistaken for it. */
static void test_cid_map_find_memo(void **state) {
  uvq_cid_map map;
  uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8] = {9, 9, 9, 9, 9, 9, 9, 9};
  (void)state;

  assert_int_equal(uvq_cid_map_init_seeded(&map, NULL, seed), 0);
  assert_null(uvq_cid_map_find_memo(&map, a, sizeof(a)));
  assert_int_equal(uvq_cid_map_insert(&map, a, sizeof(a), VAL(1)), 0);
  assert_int_equal(uvq_cid_map_insert(&map, b, sizeof(b), VAL(2)), 0);
  assert_ptr_equal(uvq_cid_map_find_memo(&map, a, sizeof(a)), VAL(1));
  assert_ptr_equal(uvq_cid_map_find_memo(&map, a, sizeof(a)), VAL(1));
  assert_null(uvq_cid_map_find_memo(&map, a, 7));
  assert_ptr_equal(uvq_cid_map_find_memo(&map, a, sizeof(a)), VAL(1));
  /* Erased while remembered: gone, and not resurrected by the memo. */
  assert_ptr_equal(uvq_cid_map_erase(&map, a, sizeof(a)), VAL(1));
  assert_null(uvq_cid_map_find_memo(&map, a, sizeof(a)));
  assert_int_equal(uvq_cid_map_insert(&map, a, sizeof(a), VAL(3)), 0);
  assert_ptr_equal(uvq_cid_map_find_memo(&map, a, sizeof(a)), VAL(3));
  assert_ptr_equal(uvq_cid_map_find_memo(&map, b, sizeof(b)), VAL(2));
  assert_ptr_equal(uvq_cid_map_erase(&map, b, sizeof(b)), VAL(2));
  assert_null(uvq_cid_map_find_memo(&map, b, sizeof(b)));
  assert_ptr_equal(uvq_cid_map_find_memo(&map, a, sizeof(a)), VAL(3));
  uvq_cid_map_free(&map);
}

static void test_cid_map_init_draws_distinct_keys(void **state) {
  uvq_cid_map a, b;
  (void)state;

  assert_int_equal(uvq_cid_map_init(&a, NULL), 0);
  assert_int_equal(uvq_cid_map_init(&b, NULL), 0);
  /* Two 128-bit random keys collide with probability 2^-128. */
  assert_false(a.k0 == b.k0 && a.k1 == b.k1);
  uvq_cid_map_free(&a);
  uvq_cid_map_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cid_map_siphash24_matches_paper),
      cmocka_unit_test(test_cid_map_siphash13_matches_reference),
      cmocka_unit_test(test_cid_map_every_key_length),
      cmocka_unit_test(test_cid_map_empty_key_may_be_null),
      cmocka_unit_test(test_cid_map_many_entries),
      cmocka_unit_test(test_cid_map_duplicate_insert),
      cmocka_unit_test(test_cid_map_keylen_21_rejected),
      cmocka_unit_test(test_cid_map_null_value_rejected),
      cmocka_unit_test(test_cid_map_keys_differing_only_in_length),
      cmocka_unit_test(test_cid_map_copies_key),
      cmocka_unit_test(test_cid_map_ngtcp2_cid_wrappers),
      cmocka_unit_test(test_cid_map_init_nomem),
      cmocka_unit_test(test_cid_map_grow_nomem_leaves_map_intact),
      cmocka_unit_test(test_cid_map_grow_nomem_at_every_size),
      cmocka_unit_test(test_cid_map_shrinks_but_not_below_initial),
      cmocka_unit_test(test_cid_map_shrink_nomem_is_harmless),
      cmocka_unit_test(test_cid_map_matches_model_under_churn),
      cmocka_unit_test(test_cid_map_find_memo),
      cmocka_unit_test(test_cid_map_init_draws_distinct_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
