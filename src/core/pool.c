/*
 * The endpoint's buffer pool; see pool.h. A cached buffer is linked into
 * its class's free list through its first bytes.
 */
#include "core/pool.h"

#include "core/mem.h"

/* Under AddressSanitizer a cached buffer is poisoned (all but the free-list
 * link), so a use after it went back to the pool is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n) ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct pool_free {
  struct pool_free *next;
} pool_free;

struct uvq_pool {
  const uvq_mem *mem;
  size_t max_cached;
  pool_free *free[UVQ_POOL_NALL];
  int deleted; /* the owner is gone: free the pool with the last buffer */
  uvq_pool_stats st;
};

static const size_t class_sizes[UVQ_POOL_NALL] = {
    UVQ_POOL_SMALL, UVQ_POOL_MEDIUM, UVQ_POOL_LARGE, UVQ_POOL_BULK};

int uvq_pool_class(size_t size) {
  for (int i = 0; i < UVQ_POOL_NCLASSES; i++) {
    if (size <= class_sizes[i]) {
      return i;
    }
  }
  return -1;
}

size_t uvq_pool_class_size(int cls) { return class_sizes[cls]; }

int uvq_pool_new(uvq_pool **ppool, const uvq_mem *mem, size_t max_cached) {
  uvq_pool *pool = uvq_calloc(mem, 1, sizeof(*pool));
  if (pool == NULL) {
    return UVQ_ERR_NOMEM;
  }
  pool->mem = mem;
  pool->max_cached = max_cached;
  *ppool = pool;
  return 0;
}

void uvq_pool_trim(uvq_pool *pool) {
  for (int i = 0; i < UVQ_POOL_NALL; i++) {
    while (pool->free[i]) {
      pool_free *f = pool->free[i];
      pool->free[i] = f->next;
      POOL_UNPOISON(f, class_sizes[i]);
      uvq_free(pool->mem, f);
    }
  }
  pool->st.cached_bytes = 0;
}

void uvq_pool_del(uvq_pool *pool) {
  if (pool == NULL) {
    return;
  }
  uvq_pool_trim(pool);
  if (pool->st.outstanding == 0) {
    uvq_free(pool->mem, pool);
    return;
  }
  pool->deleted = 1;
}

void *uvq_pool_get(uvq_pool *pool, int cls) {
  pool_free *f = pool->free[cls];
  if (f) {
    pool->free[cls] = f->next;
    POOL_UNPOISON(f, class_sizes[cls]);
    pool->st.cached_bytes -= class_sizes[cls];
    pool->st.hits++;
  } else {
    f = uvq_malloc(pool->mem, class_sizes[cls]);
    if (f == NULL) {
      return NULL;
    }
    pool->st.misses++;
  }
  pool->st.outstanding++;
  pool->st.outstanding_bytes += class_sizes[cls];
  return f;
}

void uvq_pool_put(uvq_pool *pool, int cls, void *buf) {
  pool_free *f = buf;
  if (buf == NULL) {
    return;
  }
  pool->st.outstanding--;
  pool->st.outstanding_bytes -= class_sizes[cls];
  if (pool->deleted) {
    uvq_free(pool->mem, buf);
    if (pool->st.outstanding == 0) {
      uvq_free(pool->mem, pool);
    }
    return;
  }
  if (pool->st.cached_bytes + class_sizes[cls] > pool->max_cached) {
    pool->st.released++;
    uvq_free(pool->mem, buf);
    return;
  }
  f->next = pool->free[cls];
  pool->free[cls] = f;
  POOL_POISON((char *)buf + sizeof(*f), class_sizes[cls] - sizeof(*f));
  pool->st.cached_bytes += class_sizes[cls];
}

void uvq_pool_get_stats(const uvq_pool *pool, uvq_pool_stats *st) {
  *st = pool->st;
}
