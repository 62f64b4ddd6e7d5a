/* A bounded cache of resolved static files; see file_cache.h. */
#include "app/file_cache.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mem.h"

struct uvq_file {
  const uvq_mem *mem;
  /* Hash chain; LRU neighbours (most recent towards lru_head). */
  uvq_file *hnext, *prev, *next;
  /* The cache's reference while in the table, plus one per response. */
  unsigned int refs;
  uint64_t hash;
  /* Served without resolving again until then. */
  uint64_t expiry;
  /* The descriptor (-1 once the bytes are in |data|). */
  int fd;
  uint8_t *data;
  /* What the entry adds to stats.bytes. */
  size_t cost;
  struct stat st;
  /* The decoded request path (the key) and the file served, as
   * uvq_http_resolved.path: index.html for a directory. */
  size_t keylen, pathlen;
  char *key, *path;
  char strings[];
};

void uvq_file_cache_config_default(uvq_file_cache_config *cfg) {
  cfg->mem = NULL;
  cfg->max_entries = UVQ_FILE_CACHE_ENTRIES;
  cfg->max_bytes = UVQ_FILE_CACHE_BYTES;
  cfg->small_max = UVQ_FILE_CACHE_SMALL;
  cfg->valid = UVQ_FILE_CACHE_VALID;
  cfg->max_fds = UVQ_FILE_CACHE_FDS;
}

int uvq_file_cache_init(uvq_file_cache *fc, const uvq_file_cache_config *cfg) {
  size_t n = 16;

  memset(fc, 0, sizeof(*fc));
  if (cfg != NULL) {
    fc->cfg = *cfg;
  } else {
    uvq_file_cache_config_default(&fc->cfg);
  }
  if (fc->cfg.mem == NULL) {
    fc->cfg.mem = uvq_mem_default();
  }
  if (fc->cfg.max_entries == 0) {
    return 0;
  }
  /* Keyed: the keys are request paths, and "/./a" and "/.//a" name the
   * same file, so a client could otherwise pick colliding ones. */
  if (gnutls_rnd(GNUTLS_RND_NONCE, fc->hkey, sizeof(fc->hkey)) != 0) {
    return -1;
  }
  /* About one entry per chain when full. */
  while (n < fc->cfg.max_entries && n < ((size_t)1 << 24)) {
    n <<= 1;
  }
  fc->buckets = uvq_calloc(fc->cfg.mem, n, sizeof(uvq_file *));
  if (fc->buckets == NULL) {
    return -1;
  }
  fc->nbuckets = n;
  return 0;
}

void uvq_file_release(uvq_file *f) {
  if (--f->refs > 0) {
    return;
  }
  if (f->fd >= 0) {
    close(f->fd);
  }
  uvq_free(f->mem, f->data);
  uvq_free(f->mem, f);
}

/* Takes |f| out of the table and the LRU list and drops the cache's
 * reference: a response that still holds it keeps it whole. */
static void unlink_entry(uvq_file_cache *fc, uvq_file *f) {
  uvq_file **pp = &fc->buckets[f->hash & (fc->nbuckets - 1)];

  while (*pp != f) {
    pp = &(*pp)->hnext;
  }
  *pp = f->hnext;
  if (f->prev != NULL) {
    f->prev->next = f->next;
  } else {
    fc->lru_head = f->next;
  }
  if (f->next != NULL) {
    f->next->prev = f->prev;
  } else {
    fc->lru_tail = f->prev;
  }
  f->hnext = f->prev = f->next = NULL;
  fc->stats.entries--;
  fc->stats.bytes -= f->cost;
  if (f->fd >= 0) {
    fc->stats.fds--;
  }
  uvq_file_release(f);
}

void uvq_file_cache_clear(uvq_file_cache *fc) {
  while (fc->lru_head != NULL) {
    unlink_entry(fc, fc->lru_head);
  }
}

void uvq_file_cache_free(uvq_file_cache *fc) {
  uvq_file_cache_clear(fc);
  uvq_free(fc->cfg.mem, fc->buckets);
  fc->buckets = NULL;
  fc->nbuckets = 0;
}

/* FNV-1a from a random basis, then a keyed finaliser (MurmurHash3's
 * fmix64): collisions found offline for one key are not collisions for
 * another. (SipHash lives in src/core, which src/app may not include.) */
static uint64_t hash_key(const uvq_file_cache *fc, const char *s, size_t len) {
  uint64_t h = 14695981039346656037u ^ fc->hkey[0];

  for (size_t i = 0; i < len; ++i) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211u;
  }
  h ^= fc->hkey[1];
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53u;
  h ^= h >> 33;
  return h;
}

static void lru_push_front(uvq_file_cache *fc, uvq_file *f) {
  f->prev = NULL;
  f->next = fc->lru_head;
  if (fc->lru_head != NULL) {
    fc->lru_head->prev = f;
  } else {
    fc->lru_tail = f;
  }
  fc->lru_head = f;
}

static uvq_file *lookup(uvq_file_cache *fc, const char *key, size_t keylen,
                        uint64_t hash) {
  uvq_file *f = fc->buckets[hash & (fc->nbuckets - 1)];

  for (; f != NULL; f = f->hnext) {
    if (f->hash == hash && f->keylen == keylen &&
        memcmp(f->key, key, keylen) == 0) {
      return f;
    }
  }
  return NULL;
}

/* A file object for |res| (its fd taken), keyed |key|, not yet cached. */
static uvq_file *file_new(const uvq_mem *mem, const char *key, size_t keylen,
                          uvq_http_resolved *res) {
  size_t pathlen = strlen(res->path);
  uvq_file *f = uvq_malloc(mem, sizeof(*f) + keylen + 1 + pathlen + 1);

  if (f == NULL) {
    return NULL;
  }
  memset(f, 0, sizeof(*f));
  f->mem = mem;
  f->refs = 1;
  f->fd = res->fd;
  res->fd = -1;
  f->st = res->st;
  f->keylen = keylen;
  f->pathlen = pathlen;
  f->key = f->strings;
  memcpy(f->key, key, keylen);
  f->key[keylen] = '\0';
  f->path = f->strings + keylen + 1;
  memcpy(f->path, res->path, pathlen + 1);
  return f;
}

/* Reads all of small file |f| into memory and closes its descriptor.
 * Returns 0, or -1 (the file changed size, or an error): |f| is unchanged. */
static int load_bytes(uvq_file *f) {
  size_t size = (size_t)f->st.st_size, got = 0;
  uint8_t *data = uvq_malloc(f->mem, size ? size : 1);
  uint8_t extra;

  if (data == NULL) {
    return -1;
  }
  while (got < size) {
    ssize_t n = pread(f->fd, data + got, size - got, (off_t)got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      uvq_free(f->mem, data);
      return -1;
    }
    got += (size_t)n;
  }
  /* A file that grew since its fstat would be served cut short. */
  if (pread(f->fd, &extra, 1, (off_t)size) != 0) {
    uvq_free(f->mem, data);
    return -1;
  }
  close(f->fd);
  f->fd = -1;
  f->data = data;
  return 0;
}

/* Makes room for |cost| more bytes and one more entry (that keeps a
 * descriptor if |fd|): least recently used first. */
static void make_room(uvq_file_cache *fc, size_t cost, int fd) {
  while (fc->lru_tail != NULL && (fc->stats.entries + 1 > fc->cfg.max_entries ||
                                  fc->stats.bytes + cost > fc->cfg.max_bytes)) {
    unlink_entry(fc, fc->lru_tail);
    fc->stats.evictions++;
  }
  if (fd && fc->stats.fds + 1 > fc->cfg.max_fds) {
    /* The least recently used of those with a descriptor (max_fds >= 1
     * here, so there is one). */
    uvq_file *f = fc->lru_tail;
    while (f != NULL && f->fd < 0) {
      f = f->prev;
    }
    if (f != NULL) {
      unlink_entry(fc, f);
      fc->stats.evictions++;
    }
  }
}

uvq_http_resolve_status
uvq_file_cache_resolve(uvq_file_cache *fc, uvq_fileserve *fs,
                       const char *target, size_t len, unsigned int flags,
                       uint64_t now, uvq_http_resolved *res, uvq_file **pfile) {
  char key[sizeof(res->path)];
  uvq_http_resolve_status rs;
  uint64_t hash = 0;
  size_t keylen = 0;
  uvq_file *f;
  int n = -1;

  *pfile = NULL;
  if (fc->cfg.max_entries > 0) {
    n = uvq_http_decode_path(target, len, key, sizeof(key));
  }
  if (n >= 0) {
    keylen = (size_t)n;
    hash = hash_key(fc, key, keylen);
    f = lookup(fc, key, keylen, hash);
    if (f != NULL && now < f->expiry) {
      fc->stats.hits++;
      if (f != fc->lru_head) {
        /* To the front: unlink from the list only. */
        f->prev->next = f->next;
        if (f->next != NULL) {
          f->next->prev = f->prev;
        } else {
          fc->lru_tail = f->prev;
        }
        lru_push_front(fc, f);
      }
      f->refs++;
      res->fd = -1;
      res->st = f->st;
      res->location[0] = '\0';
      memcpy(res->path, f->path, f->pathlen + 1);
      *pfile = f;
      return UVQ_HTTP_FILE;
    }
    if (f != NULL) {
      /* Resolved again below: the file may have changed or gone. */
      fc->stats.expirations++;
      unlink_entry(fc, f);
    }
    fc->stats.misses++;
  }
  /* What the cache holds comes only from here: the resolver's jail. */
  rs = uvq_http_resolve(fs, target, len, flags, res);
  if (rs != UVQ_HTTP_FILE) {
    return rs;
  }
  f = file_new(fc->cfg.mem, n >= 0 ? key : "", keylen, res);
  if (f == NULL) {
    close(res->fd);
    res->fd = -1;
    return UVQ_HTTP_ERROR;
  }
  *pfile = f;
  if (n < 0) {
    return rs;
  }
  f->cost = keylen + f->pathlen;
  if ((uint64_t)f->st.st_size <= fc->cfg.small_max &&
      (uint64_t)f->st.st_size + f->cost <= fc->cfg.max_bytes) {
    if (load_bytes(f) != 0) {
      /* Served from the descriptor, this once, uncached. */
      return rs;
    }
    f->cost += (size_t)f->st.st_size;
  }
  if (f->cost > fc->cfg.max_bytes || (f->fd >= 0 && fc->cfg.max_fds == 0)) {
    return rs;
  }
  make_room(fc, f->cost, f->fd >= 0);
  f->hash = hash;
  /* Saturated: a |valid| past the clock's range means never. */
  f->expiry =
      fc->cfg.valid > UINT64_MAX - now ? UINT64_MAX : now + fc->cfg.valid;
  f->refs++;
  f->hnext = fc->buckets[hash & (fc->nbuckets - 1)];
  fc->buckets[hash & (fc->nbuckets - 1)] = f;
  lru_push_front(fc, f);
  fc->stats.entries++;
  fc->stats.bytes += f->cost;
  if (f->fd >= 0) {
    fc->stats.fds++;
  }
  return rs;
}

ssize_t uvq_file_read(uvq_file *f, uint8_t *buf, size_t len, uint64_t off) {
  ssize_t n;

  if (f->data != NULL) {
    uint64_t size = (uint64_t)f->st.st_size;
    if (off >= size) {
      return 0;
    }
    if (len > size - off) {
      len = (size_t)(size - off);
    }
    memcpy(buf, f->data + off, len);
    return (ssize_t)len;
  }
  do {
    n = pread(f->fd, buf, len, (off_t)off);
  } while (n < 0 && errno == EINTR);
  return n;
}

const struct stat *uvq_file_stat(const uvq_file *f) { return &f->st; }

void uvq_file_cache_get_stats(const uvq_file_cache *fc,
                              uvq_file_cache_stats *st) {
  *st = fc->stats;
}
