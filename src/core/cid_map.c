#include "core/cid_map.h"

#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/mem.h"

/* ------------------------------------------------------------------------ */
/* SipHash-c-d, written from the description in Aumasson & Bernstein,      */
/* "SipHash: a fast short-input PRF" (2012), section 2.                     */
/* ------------------------------------------------------------------------ */

static inline uint64_t rotl64(uint64_t x, unsigned b) {
  return (x << b) | (x >> (64 - b));
}

static inline uint64_t load64_le(const uint8_t *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

typedef struct sip_state {
  uint64_t v0, v1, v2, v3;
} sip_state;

static inline void sip_round(sip_state *s) {
  s->v0 += s->v1;
  s->v1 = rotl64(s->v1, 13);
  s->v1 ^= s->v0;
  s->v0 = rotl64(s->v0, 32);
  s->v2 += s->v3;
  s->v3 = rotl64(s->v3, 16);
  s->v3 ^= s->v2;
  s->v0 += s->v3;
  s->v3 = rotl64(s->v3, 21);
  s->v3 ^= s->v0;
  s->v2 += s->v1;
  s->v1 = rotl64(s->v1, 17);
  s->v1 ^= s->v2;
  s->v2 = rotl64(s->v2, 32);
}

static inline void sip_compress(sip_state *s, uint64_t m, int crounds) {
  int i;
  s->v3 ^= m;
  for (i = 0; i < crounds; ++i) {
    sip_round(s);
  }
  s->v0 ^= m;
}

/* Always inlined with constant round counts, so each wrapper below gets
 * its loops unrolled. */
static inline uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *data,
                               size_t len, int crounds, int drounds) {
  sip_state s;
  const uint8_t *end = data + (len & ~(size_t)7);
  uint64_t last;
  size_t rem = len & 7;
  int i;

  s.v0 = k0 ^ 0x736f6d6570736575ull;
  s.v1 = k1 ^ 0x646f72616e646f6dull;
  s.v2 = k0 ^ 0x6c7967656e657261ull;
  s.v3 = k1 ^ 0x7465646279746573ull;

  for (; data != end; data += 8) {
    sip_compress(&s, load64_le(data), crounds);
  }

  /* The final block: the remaining 0..7 bytes, then len mod 256 in the top
   * byte, so keys differing only in trailing zero bytes hash apart. */
  last = (uint64_t)(len & 0xff) << 56;
  switch (rem) {
  case 7:
    last |= (uint64_t)data[6] << 48;
    /* fall through */
  case 6:
    last |= (uint64_t)data[5] << 40;
    /* fall through */
  case 5:
    last |= (uint64_t)data[4] << 32;
    /* fall through */
  case 4:
    last |= (uint64_t)data[3] << 24;
    /* fall through */
  case 3:
    last |= (uint64_t)data[2] << 16;
    /* fall through */
  case 2:
    last |= (uint64_t)data[1] << 8;
    /* fall through */
  case 1:
    last |= (uint64_t)data[0];
    break;
  default:
    break;
  }
  sip_compress(&s, last, crounds);

  s.v2 ^= 0xff;
  for (i = 0; i < drounds; ++i) {
    sip_round(&s);
  }
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t uvq_siphash13(uint64_t k0, uint64_t k1, const uint8_t *data,
                       size_t len) {
  return siphash(k0, k1, data, len, 1, 3);
}

uint64_t uvq_siphash24(uint64_t k0, uint64_t k1, const uint8_t *data,
                       size_t len) {
  return siphash(k0, k1, data, len, 2, 4);
}

/* ------------------------------------------------------------------------ */
/* The map                                                                  */
/* ------------------------------------------------------------------------ */

/* Robin Hood invariant: walking from any key's home slot to the slot that
 * holds it, no slot passed is empty and every slot passed holds a key at
 * least as far from its own home. So a lookup stops at the first empty
 * slot or the first key closer to home than the one sought — which keeps
 * misses (random DCIDs from the Internet) as short as hits. */

static inline uint64_t map_hash(const uvq_cid_map *map, const uint8_t *key,
                                size_t keylen) {
  /* SipHash-1-3 rather than 2-4: hash flooding needs an attacker to
   * predict collisions, which the secret key denies either way; the
   * spare rounds only guard against cryptanalysis that would not matter
   * here, and this runs for every packet. */
  return siphash(map->k0, map->k1, key, keylen, 1, 3);
}

static inline size_t home_of(uint64_t hash, size_t mask) {
  return (size_t)hash & mask;
}

static inline size_t dist_of(const uvq_cid_map_slot *slot, size_t i,
                             size_t mask) {
  return (i - home_of(slot->hash, mask)) & mask;
}

/* A zero-length key may come as a NULL pointer; memcmp and pointer
 * arithmetic want a real one. */
static const uint8_t empty_key[1];

static inline const uint8_t *nonnull_key(const uint8_t *key, size_t keylen) {
  return keylen == 0 ? empty_key : key;
}

/* find_index returns the index of the slot holding the key, or SIZE_MAX. */
static size_t find_index(const uvq_cid_map *map, uint64_t hash,
                         const uint8_t *key, size_t keylen) {
  const size_t mask = map->mask;
  size_t i = home_of(hash, mask);
  size_t dist = 0;

  for (;;) {
    const uvq_cid_map_slot *slot = &map->slots[i];
    if (slot->value == NULL || dist_of(slot, i, mask) < dist) {
      return SIZE_MAX;
    }
    /* The full hash filters nearly every non-match before memcmp runs. */
    if (slot->hash == hash && slot->keylen == keylen &&
        memcmp(slot->key, key, keylen) == 0) {
      return i;
    }
    i = (i + 1) & mask;
    ++dist;
  }
}

/* place puts |entry|, whose key is known to be absent, into |slots|. The
 * table must have an empty slot. */
static void place(uvq_cid_map_slot *slots, size_t mask,
                  uvq_cid_map_slot entry) {
  size_t i = home_of(entry.hash, mask);
  size_t dist = 0;

  for (;;) {
    uvq_cid_map_slot *slot = &slots[i];
    size_t d;
    if (slot->value == NULL) {
      *slot = entry;
      return;
    }
    d = dist_of(slot, i, mask);
    if (d < dist) {
      /* Take from the rich: |entry| is further from home than the
       * occupant, so it takes the slot and the occupant moves on. */
      uvq_cid_map_slot tmp = *slot;
      *slot = entry;
      entry = tmp;
      dist = d;
    }
    i = (i + 1) & mask;
    ++dist;
  }
}

/* resize moves every entry into a new table of |capacity| slots. On
 * allocation failure the map is untouched. */
static int resize(uvq_cid_map *map, size_t capacity) {
  uvq_cid_map_slot *slots;
  size_t i, oldcap = map->mask + 1;

  if (capacity > SIZE_MAX / sizeof(*slots)) {
    return UVQ_ERR_NOMEM;
  }
  /* calloc: all-zero bits make value NULL, i.e. every slot empty. */
  slots = uvq_calloc(map->mem, capacity, sizeof(*slots));
  if (slots == NULL) {
    return UVQ_ERR_NOMEM;
  }
  for (i = 0; i < oldcap; ++i) {
    if (map->slots[i].value != NULL) {
      place(slots, capacity - 1, map->slots[i]);
    }
  }
  uvq_free(map->mem, map->slots);
  map->slots = slots;
  map->mask = capacity - 1;
  return 0;
}

int uvq_cid_map_init_seeded(uvq_cid_map *map, const uvq_mem *mem,
                            const uint8_t key[UVQ_CID_MAP_KEYLEN]) {
  if (mem == NULL) {
    mem = uvq_mem_default();
  }
  /* Fields first, so uvq_cid_map_free is harmless even after a failure. */
  map->mem = mem;
  map->mask = UVQ_CID_MAP_INITIAL_CAPACITY - 1;
  map->size = 0;
  map->memo_value = NULL;
  map->slots =
      uvq_calloc(mem, UVQ_CID_MAP_INITIAL_CAPACITY, sizeof(*map->slots));
  if (map->slots == NULL) {
    return UVQ_ERR_NOMEM;
  }
  map->k0 = load64_le(key);
  map->k1 = load64_le(key + 8);
  return 0;
}

int uvq_cid_map_init(uvq_cid_map *map, const uvq_mem *mem) {
  uint8_t key[UVQ_CID_MAP_KEYLEN];
  int rv;

  /* The key is a secret for the map's whole life: an attacker who learns
   * it can flood one probe chain. GNUTLS_RND_KEY is the level GnuTLS
   * reserves for long-term secrets; it is drawn once, so its cost is
   * irrelevant. */
  if (gnutls_rnd(GNUTLS_RND_KEY, key, sizeof(key)) != 0) {
    return UVQ_ERR_TLS;
  }
  rv = uvq_cid_map_init_seeded(map, mem, key);
  gnutls_memset(key, 0, sizeof(key));
  return rv;
}

void uvq_cid_map_free(uvq_cid_map *map) {
  uvq_free(map->mem, map->slots);
  map->slots = NULL;
  map->size = 0;
  map->memo_value = NULL;
}

int uvq_cid_map_insert(uvq_cid_map *map, const uint8_t *key, size_t keylen,
                       void *value) {
  uvq_cid_map_slot entry;
  size_t capacity = map->mask + 1;
  int rv;

  if (keylen > UVQ_MAX_CIDLEN || value == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  key = nonnull_key(key, keylen);
  entry.hash = map_hash(map, key, keylen);
  /* Look before growing, so a duplicate never costs an allocation. */
  if (find_index(map, entry.hash, key, keylen) != SIZE_MAX) {
    return UVQ_ERR_CID_IN_USE;
  }
  /* Grow past 3/4 full. */
  if ((map->size + 1) * 4 > capacity * 3) {
    if (capacity > SIZE_MAX / 2) {
      return UVQ_ERR_NOMEM;
    }
    rv = resize(map, capacity * 2);
    if (rv != 0) {
      return rv;
    }
  }
  entry.value = value;
  entry.keylen = (uint8_t)keylen;
  memcpy(entry.key, key, keylen);
  memset(entry.key + keylen, 0, sizeof(entry.key) - keylen);
  place(map->slots, map->mask, entry);
  ++map->size;
  return 0;
}

void *uvq_cid_map_find(const uvq_cid_map *map, const uint8_t *key,
                       size_t keylen) {
  size_t i;

  if (keylen > UVQ_MAX_CIDLEN) {
    return NULL;
  }
  key = nonnull_key(key, keylen);
  i = find_index(map, map_hash(map, key, keylen), key, keylen);
  return i == SIZE_MAX ? NULL : map->slots[i].value;
}

void *uvq_cid_map_find_memo(uvq_cid_map *map, const uint8_t *key,
                            size_t keylen) {
  void *value;

  key = nonnull_key(key, keylen);
  if (map->memo_value != NULL && keylen == map->memo_keylen &&
      memcmp(key, map->memo_key, keylen) == 0) {
    return map->memo_value;
  }
  value = uvq_cid_map_find(map, key, keylen);
  if (value != NULL) {
    map->memo_value = value;
    map->memo_keylen = (uint8_t)keylen;
    memcpy(map->memo_key, key, keylen);
  }
  return value;
}

void *uvq_cid_map_erase(uvq_cid_map *map, const uint8_t *key, size_t keylen) {
  const size_t mask = map->mask;
  size_t i, j;
  void *value;

  /* Whatever is erased, the memo may name it. */
  map->memo_value = NULL;
  if (keylen > UVQ_MAX_CIDLEN) {
    return NULL;
  }
  key = nonnull_key(key, keylen);
  i = find_index(map, map_hash(map, key, keylen), key, keylen);
  if (i == SIZE_MAX) {
    return NULL;
  }
  value = map->slots[i].value;

  /* Backward-shift deletion: pull each following displaced entry one slot
   * nearer home until an empty slot or an entry already at home. No
   * tombstones, so probe lengths never decay with churn. */
  for (j = (i + 1) & mask;
       map->slots[j].value != NULL && dist_of(&map->slots[j], j, mask) > 0;
       j = (j + 1) & mask) {
    map->slots[i] = map->slots[j];
    i = j;
  }
  map->slots[i].value = NULL;
  --map->size;

  /* Shrink below 1/8 full, to 1/4 after halving: far enough from the 3/4
   * growth threshold that alternating insert/erase cannot thrash. A failed
   * allocation just keeps the larger table. */
  if (mask + 1 > UVQ_CID_MAP_INITIAL_CAPACITY && map->size * 8 < mask + 1) {
    (void)resize(map, (mask + 1) / 2);
  }
  return value;
}

size_t uvq_cid_map_size(const uvq_cid_map *map) { return map->size; }

size_t uvq_cid_map_capacity(const uvq_cid_map *map) { return map->mask + 1; }

int uvq_cid_map_insert_cid(uvq_cid_map *map, const ngtcp2_cid *cid,
                           void *value) {
  return uvq_cid_map_insert(map, cid->data, cid->datalen, value);
}

void *uvq_cid_map_find_cid(const uvq_cid_map *map, const ngtcp2_cid *cid) {
  return uvq_cid_map_find(map, cid->data, cid->datalen);
}

void *uvq_cid_map_erase_cid(uvq_cid_map *map, const ngtcp2_cid *cid) {
  return uvq_cid_map_erase(map, cid->data, cid->datalen);
}
