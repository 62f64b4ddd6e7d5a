/* The connection-ID map: CID bytes (0..20) -> value, on the hot path of
 * every received packet. Open addressing with Robin Hood linear probing and
 * backward-shift deletion; keys live inline in the slots, so inserts and
 * lookups never allocate (only growing and shrinking the table do). Slots
 * are placed by SipHash-1-3 under a secret 128-bit key, so peers choosing
 * the DCIDs we look up cannot aim them at one probe sequence. */
#ifndef UVQ_CORE_CID_MAP_H
#define UVQ_CORE_CID_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"

/** Slots a new map starts with; it never shrinks below this. Power of 2. */
#define UVQ_CID_MAP_INITIAL_CAPACITY 16
/** Length of the SipHash key (uvq_cid_map_init_seeded). */
#define UVQ_CID_MAP_KEYLEN 16

typedef struct uvq_cid_map_slot {
  /* NULL marks an empty slot, which is why NULL values are refused. */
  void *value;
  /* The full SipHash of the key: its low bits are the home slot, and all
   * 64 bits are compared before the key bytes are. */
  uint64_t hash;
  uint8_t keylen;
  uint8_t key[UVQ_MAX_CIDLEN];
} uvq_cid_map_slot;

typedef struct uvq_cid_map {
  const uvq_mem *mem;
  uvq_cid_map_slot *slots;
  /* Capacity - 1; capacity is a power of two. */
  size_t mask;
  size_t size;
  /* SipHash key halves. */
  uint64_t k0, k1;
  /* The last hit of uvq_cid_map_find_memo (value NULL: none). A bulk
   * transfer sends every packet to one CID, so the router skips the hash
   * for all but the first; any erase forgets it. */
  void *memo_value;
  uint8_t memo_keylen;
  uint8_t memo_key[UVQ_MAX_CIDLEN];
} uvq_cid_map;

/**
 * uvq_cid_map_init makes |map| empty, with UVQ_CID_MAP_INITIAL_CAPACITY
 * slots and a hash key drawn from gnutls_rnd (GNUTLS_RND_KEY: a secret
 * that lives as long as the map). |mem| (NULL = libc) must outlive it.
 *
 * Returns 0, UVQ_ERR_NOMEM, or UVQ_ERR_TLS if GnuTLS's random generator
 * fails. On error there is nothing to free.
 */
int uvq_cid_map_init(uvq_cid_map *map, const uvq_mem *mem);

/**
 * uvq_cid_map_init_seeded is uvq_cid_map_init with a caller-chosen hash
 * key of UVQ_CID_MAP_KEYLEN bytes, for deterministic tests and benchmarks.
 * A key an attacker may know defeats the flooding protection: the
 * library itself never uses this. Returns 0 or UVQ_ERR_NOMEM.
 */
int uvq_cid_map_init_seeded(uvq_cid_map *map, const uvq_mem *mem,
                            const uint8_t key[UVQ_CID_MAP_KEYLEN]);

/** uvq_cid_map_free releases the table; the values are not touched. */
void uvq_cid_map_free(uvq_cid_map *map);

/**
 * uvq_cid_map_insert maps the |keylen| bytes at |key| (copied) to |value|.
 *
 * Returns 0; UVQ_ERR_CID_IN_USE if the key is already present (its value
 * is left unchanged); UVQ_ERR_INVALID_ARGUMENT if |keylen| > 20 or |value|
 * is NULL; UVQ_ERR_NOMEM if the table had to grow and could not, in which
 * case the map is exactly as before the call.
 */
int uvq_cid_map_insert(uvq_cid_map *map, const uint8_t *key, size_t keylen,
                       void *value);

/**
 * uvq_cid_map_find returns the value mapped to the |keylen| bytes at |key|,
 * or NULL if there is none (including for |keylen| > 20).
 */
void *uvq_cid_map_find(const uvq_cid_map *map, const uint8_t *key,
                       size_t keylen);

/**
 * uvq_cid_map_erase removes the key and returns the value it mapped to, or
 * NULL if the key was absent. It cannot fail; when the table falls below
 * 1/8 full it tries to halve it (never below the initial capacity) and
 * simply keeps the larger table if that allocation fails.
 */
/*
 * uvq_cid_map_find_memo is uvq_cid_map_find remembering its last hit: a
 * lookup of the same key again costs one comparison instead of a hash.
 */
void *uvq_cid_map_find_memo(uvq_cid_map *map, const uint8_t *key,
                            size_t keylen);

void *uvq_cid_map_erase(uvq_cid_map *map, const uint8_t *key, size_t keylen);

/** uvq_cid_map_size returns the number of keys in |map|. */
size_t uvq_cid_map_size(const uvq_cid_map *map);

/** uvq_cid_map_capacity returns the number of slots (for tests, stats). */
size_t uvq_cid_map_capacity(const uvq_cid_map *map);

/* The same three operations keyed by an ngtcp2_cid. */
int uvq_cid_map_insert_cid(uvq_cid_map *map, const ngtcp2_cid *cid,
                           void *value);
void *uvq_cid_map_find_cid(const uvq_cid_map *map, const ngtcp2_cid *cid);
void *uvq_cid_map_erase_cid(uvq_cid_map *map, const ngtcp2_cid *cid);

/**
 * uvq_siphash13 and uvq_siphash24 return SipHash-c-d (Aumasson & Bernstein,
 * 2012) of |len| bytes at |data| under the 128-bit key (|k0|, |k1|), where
 * k0 and k1 are the key's bytes 0..7 and 8..15 read little-endian. The map
 * uses SipHash-1-3; SipHash-2-4 shares every line of it and exists so the
 * tests can check the code against the paper's test vector.
 */
uint64_t uvq_siphash13(uint64_t k0, uint64_t k1, const uint8_t *data,
                       size_t len);
uint64_t uvq_siphash24(uint64_t k0, uint64_t k1, const uint8_t *data,
                       size_t len);

#endif
