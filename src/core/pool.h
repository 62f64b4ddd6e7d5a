/*
 * The endpoint's buffer pool: fixed-size buffers for stream send data (the
 * core's chunks; through uvq_buf_get, the HTTP/3 layer's provider chunks
 * and hq-interop's file reads), taken while data is in flight and given
 * back once the peer acknowledged it, so an idle
 * connection holds none. Given-back buffers wait in a cache shared by all
 * the endpoint's connections, bounded in bytes; beyond it they go back to
 * the allocator. Every buffer comes from the endpoint's uvq_mem.
 *
 * Single-threaded: only the endpoint's thread touches it. It may outlive
 * the endpoint: uvq_pool_del frees the cache at once and the pool itself
 * with the last buffer handed back (an HTTP/3 client object may still hold
 * a provider chunk after the endpoint is gone).
 */
#ifndef UVQ_CORE_POOL_H
#define UVQ_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

/* Buffer classes, smallest first. The first UVQ_POOL_NCLASSES are the ones
 * uvq_pool_class chooses from, the core's chunk sizes: frame headers and
 * control data, small messages, and bulk data (a core chunk of 16 KiB with
 * its header). */
#define UVQ_POOL_NCLASSES 3
#define UVQ_POOL_SMALL 256
#define UVQ_POOL_MEDIUM 4096
#define UVQ_POOL_LARGE (16384 + 64)
/* One more class, taken only by name: a file read of 64 KiB with its header
 * (an h3 provider chunk, an hq-interop read), handed to the core by
 * reference. A download then costs one read(2) per 64 KiB, while copied
 * writes still climb only to 16 KiB chunks (a stream of small writes does
 * not end up holding 64 KiB buffers). */
#define UVQ_POOL_CLASS_BULK UVQ_POOL_NCLASSES
#define UVQ_POOL_BULK (65536 + 64)
/* Every class, UVQ_POOL_CLASS_BULK included. */
#define UVQ_POOL_NALL (UVQ_POOL_NCLASSES + 1)

typedef struct uvq_pool uvq_pool;

/* Counters, as uvq_endpoint_stats reports them. */
typedef struct uvq_pool_stats {
  uint64_t hits;     /* buffers taken from the cache */
  uint64_t misses;   /* buffers allocated (the cache had none) */
  uint64_t released; /* buffers given back beyond the cap: freed */
  uint64_t cached_bytes;
  uint64_t outstanding; /* buffers handed out and not given back */
  uint64_t outstanding_bytes;
} uvq_pool_stats;

/* Creates a pool allocating through |mem| and caching at most |max_cached|
 * bytes (0: no cache). Returns 0 or UVQ_ERR_NOMEM. */
int uvq_pool_new(uvq_pool **ppool, const uvq_mem *mem, size_t max_cached);
/* The owner is done with |pool|: frees the cache, and the pool once every
 * buffer is back (now, if none is out). NULL is a no-op. */
void uvq_pool_del(uvq_pool *pool);

/* The class of the smallest buffers of at least |size| bytes among the
 * first UVQ_POOL_NCLASSES, or -1 if |size| exceeds UVQ_POOL_LARGE. */
int uvq_pool_class(size_t size);
/* Bytes in a buffer of class |cls| (0 .. UVQ_POOL_NALL - 1). */
size_t uvq_pool_class_size(int cls);

/* A buffer of class |cls| (uvq_pool_class_size bytes, uninitialised), or
 * NULL if the allocator has no memory. */
void *uvq_pool_get(uvq_pool *pool, int cls);
/* Gives back |buf| of class |cls|, taken from |pool|. NULL is a no-op. */
void uvq_pool_put(uvq_pool *pool, int cls, void *buf);
/* Frees every cached buffer. */
void uvq_pool_trim(uvq_pool *pool);

void uvq_pool_get_stats(const uvq_pool *pool, uvq_pool_stats *st);

#endif
