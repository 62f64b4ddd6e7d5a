/*
 * libFuzzer harness: CID map operation sequences checked against a model
 * (a plain array). Input: records of [op][keylen][key bytes...]. The
 * map's hash key is drawn from the input, so a crash file replays the same
 * table layout.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cid_map.h"
#include "qtest.h"

#define FC_MAX 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fc_model {
  uint8_t key[FC_MAX][UVQ_MAX_CIDLEN];
  size_t len[FC_MAX];
  void *val[FC_MAX];
  size_t n;
} fc_model;

static size_t fc_find(const fc_model *m, const uint8_t *key, size_t len) {
  for (size_t i = 0; i < m->n; i++) {
    if (m->len[i] == len && (len == 0 || memcmp(m->key[i], key, len) == 0)) {
      return i;
    }
  }
  return SIZE_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fc_model m;
  uvq_cid_map map;
  uint8_t hash_key[UVQ_CID_MAP_KEYLEN];
  uint64_t seed = qt_hash(data, size);
  uintptr_t next = 1;

  m.n = 0;
  qt_fill_rand(&seed, hash_key, sizeof(hash_key));
  if (uvq_cid_map_init_seeded(&map, NULL, hash_key) != 0) {
    return 0;
  }
  while (size >= 2) {
    uint8_t op = data[0];
    size_t len = data[1] % (UVQ_MAX_CIDLEN + 1);
    uint8_t key[UVQ_MAX_CIDLEN];
    size_t i;
    data += 2;
    size -= 2;
    if (len > size) {
      len = size;
    }
    memcpy(key, data, len);
    data += len;
    size -= len;
    i = fc_find(&m, key, len);
    switch (op % 4) {
    case 0:
    case 1: { /* insert */
      void *v = (void *)next++;
      int rv = uvq_cid_map_insert(&map, key, len, v);
      if (i != SIZE_MAX) {
        if (rv != UVQ_ERR_CID_IN_USE) {
          abort();
        }
      } else if (m.n < FC_MAX) {
        if (rv != 0) {
          abort();
        }
        memcpy(m.key[m.n], key, len);
        m.len[m.n] = len;
        m.val[m.n++] = v;
      } else if (rv == 0) {
        uvq_cid_map_erase(&map, key, len); /* the model is full */
      }
      break;
    }
    case 2: { /* erase */
      void *v = uvq_cid_map_erase(&map, key, len);
      if (v != (i == SIZE_MAX ? NULL : m.val[i])) {
        abort();
      }
      if (i != SIZE_MAX) {
        m.n--;
        memcpy(m.key[i], m.key[m.n], UVQ_MAX_CIDLEN);
        m.len[i] = m.len[m.n];
        m.val[i] = m.val[m.n];
      }
      break;
    }
    default: /* find */
      if (uvq_cid_map_find(&map, key, len) !=
          (i == SIZE_MAX ? NULL : m.val[i])) {
        abort();
      }
      break;
    }
    if (uvq_cid_map_size(&map) != m.n) {
      abort();
    }
  }
  /* Everything the model holds is still found. */
  for (size_t k = 0; k < m.n; k++) {
    if (uvq_cid_map_find(&map, m.key[k], m.len[k]) != m.val[k]) {
      abort();
    }
  }
  uvq_cid_map_free(&map);
  return 0;
}
