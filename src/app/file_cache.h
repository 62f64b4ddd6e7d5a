/*
 * file_cache: a bounded cache of resolved static files in front of
 * uvq_http_resolve, so a repeated GET of the same file costs no openat2,
 * fstat or close, and for a small file no pread either (nginx's
 * open_file_cache, with open_file_cache_valid as |valid|):
 *
 *   uvq_file_cache fc;
 *   uvq_file_cache_init(&fc, &cfg);
 *   rs = uvq_file_cache_resolve(&fc, &fs, target, len, flags, now, res, &f);
 *   if (rs == UVQ_HTTP_FILE) { uvq_file_read(f, buf, n, off); ...
 *                              uvq_file_release(f); }
 *   uvq_file_cache_free(&fc);
 *
 * Only what uvq_http_resolve produced is cached (regular files, under the
 * decoded request path): the path jail is the resolver's, unchanged. An
 * entry older than |valid| is resolved again, so a changed, replaced or
 * removed file is seen within that time. Not-found and the other refusals
 * are not cached.
 *
 * Entries are reference-counted: a response holds its uvq_file until it
 * has sent the body, and an entry evicted, expired or cleared meanwhile
 * keeps its descriptor and bytes until that last reference goes (no dup(2)
 * per request). One thread: each shard has its own cache.
 */
#ifndef UVQ_APP_FILE_CACHE_H
#define UVQ_APP_FILE_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "app/fileserve.h"
#include "app/http_file.h"
#include "uvquic/uvquic.h"
#include "uvquic/uvquic_hq.h"

/** Defaults: entries, bytes held in memory, validity (ns), descriptors. */
#define UVQ_FILE_CACHE_ENTRIES 256
#define UVQ_FILE_CACHE_BYTES ((size_t)4 << 20)
#define UVQ_FILE_CACHE_VALID ((uint64_t)1000 * 1000000)
#define UVQ_FILE_CACHE_FDS 64
/** Files up to this size are held in memory (no descriptor kept). */
#define UVQ_FILE_CACHE_SMALL ((size_t)16384)

typedef struct uvq_file_cache_config {
  /** Allocator of the table and the entries; NULL: libc. Must outlive
   * every entry. */
  const uvq_mem *mem;
  /** Most entries (each a file's bytes or one open descriptor); 0 disables
   * the cache: every resolution opens the file, as without it. */
  size_t max_entries;
  /** Most bytes held: the small files' contents plus the keys. */
  size_t max_bytes;
  /** Files of at most this many bytes are read once and kept in memory
   * (if they fit max_bytes); larger ones keep their descriptor. */
  size_t small_max;
  /** How long an entry is served without resolving it again (ns). */
  uint64_t valid;
  /** Most entries that keep a descriptor open (the larger files): a
   * client naming many large files, or one under many spellings
   * ("/./big", "/.//big"), must not take the process's descriptors
   * (RLIMIT_NOFILE). Within max_entries. */
  size_t max_fds;
} uvq_file_cache_config;

/** uvq_file_cache_config_default sets the defaults above. */
void uvq_file_cache_config_default(uvq_file_cache_config *cfg);

/* The cache's counters are the public hq type (uvquic_hq.h), so
 * uvq_hq_server_get_file_cache_stats hands them out as they are. */
typedef uvq_hq_file_cache_stats uvq_file_cache_stats;

/** A resolved file: its stat, and its bytes or its descriptor. */
typedef struct uvq_file uvq_file;

typedef struct uvq_file_cache {
  uvq_file_cache_config cfg;
  /* Hash chains (nbuckets, a power of two) and the LRU list, most
   * recently used first. */
  uvq_file **buckets;
  size_t nbuckets;
  uvq_file *lru_head, *lru_tail;
  /* The chains' hash key, random per cache. */
  uint64_t hkey[2];
  uvq_file_cache_stats stats;
} uvq_file_cache;

/**
 * uvq_file_cache_init makes an empty cache with |cfg| (NULL: the
 * defaults). Returns 0, or -1 if the table cannot be allocated (or its
 * hash key drawn).
 */
int uvq_file_cache_init(uvq_file_cache *fc, const uvq_file_cache_config *cfg);

/** uvq_file_cache_free drops every entry (see uvq_file_cache_clear). */
void uvq_file_cache_free(uvq_file_cache *fc);

/**
 * uvq_file_cache_clear drops every entry: descriptors are closed and bytes
 * freed now, or, for an entry a response still holds, at its last
 * uvq_file_release. For SIGHUP.
 */
void uvq_file_cache_clear(uvq_file_cache *fc);

/**
 * uvq_file_cache_resolve is uvq_http_resolve(|fs|, |target|, |len|,
 * |flags|, |res|) through the cache, at time |now| (ns, any monotonic
 * origin). |flags| must be the same on every call for one cache.
 *
 * On UVQ_HTTP_FILE, *pfile is a reference the caller owns (read with
 * uvq_file_read, give back with uvq_file_release), res->st and res->path
 * are set and res->fd is -1. On every other status *pfile is NULL and res
 * is as uvq_http_resolve leaves it (LISTING: res->fd is the caller's).
 * UVQ_HTTP_ERROR also when memory runs out.
 */
uvq_http_resolve_status
uvq_file_cache_resolve(uvq_file_cache *fc, uvq_fileserve *fs,
                       const char *target, size_t len, unsigned int flags,
                       uint64_t now, uvq_http_resolved *res, uvq_file **pfile);

/**
 * uvq_file_read copies up to |len| bytes of |f| at |off| into |buf|: from
 * memory, or with pread(2). Returns the bytes read (0 at the end), or -1
 * with errno set.
 */
ssize_t uvq_file_read(uvq_file *f, uint8_t *buf, size_t len, uint64_t off);

/** uvq_file_stat returns the fstat |f| was resolved with. */
const struct stat *uvq_file_stat(const uvq_file *f);

/** uvq_file_release gives back a reference from uvq_file_cache_resolve. */
void uvq_file_release(uvq_file *f);

/** uvq_file_cache_get_stats copies the counters of |fc| into |st|. */
void uvq_file_cache_get_stats(const uvq_file_cache *fc,
                              uvq_file_cache_stats *st);

#endif
