/* Internal allocation helpers: every library allocation goes through a
 * uvq_mem so tests can inject failures. They are inline so that each of the
 * libraries (core, uv, h3) has them without exporting them.
 *
 * This is the one core header the layers above the core may include:
 * src/app (h3, hq) and src/uv use the public API plus these helpers, which
 * only wrap the public uvq_mem (tests/layering.sh checks it). */
#ifndef UVQ_CORE_MEM_H
#define UVQ_CORE_MEM_H

#include <stdint.h>
#include <string.h>

#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"

static inline void *uvq_malloc(const uvq_mem *mem, size_t size) {
  return mem->malloc(size, mem->user_data);
}

static inline void *uvq_calloc(const uvq_mem *mem, size_t nmemb, size_t size) {
  return mem->calloc(nmemb, size, mem->user_data);
}

static inline void *uvq_realloc(const uvq_mem *mem, void *ptr, size_t size) {
  return mem->realloc(ptr, size, mem->user_data);
}

static inline void uvq_free(const uvq_mem *mem, void *ptr) {
  if (ptr) {
    mem->free(ptr, mem->user_data);
  }
}

/* uvq_memdup copies |len| bytes (plus a NUL) into a new allocation. */
static inline void *uvq_memdup(const uvq_mem *mem, const void *src,
                               size_t len) {
  uint8_t *p = uvq_malloc(mem, len + 1);
  if (p == NULL) {
    return NULL;
  }
  if (len) {
    memcpy(p, src, len);
  }
  p[len] = 0;
  return p;
}

/* uvq_mem_to_ngtcp2 fills |dst| so ngtcp2 allocates through |mem|. */
static inline void uvq_mem_to_ngtcp2(ngtcp2_mem *dst, const uvq_mem *mem) {
  /* uvq_mem and ngtcp2_mem share their shape: user_data first, then the
   * four functions with user_data last. */
  dst->user_data = mem->user_data;
  dst->malloc = mem->malloc;
  dst->free = mem->free;
  dst->calloc = mem->calloc;
  dst->realloc = mem->realloc;
}

#endif
