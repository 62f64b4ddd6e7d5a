#include "core/mem.h"

#include <stdlib.h>
#include <string.h>

static void *default_malloc(size_t size, void *user_data) {
  (void)user_data;
  return malloc(size);
}

static void default_free(void *ptr, void *user_data) {
  (void)user_data;
  free(ptr);
}

static void *default_calloc(size_t nmemb, size_t size, void *user_data) {
  (void)user_data;
  return calloc(nmemb, size);
}

static void *default_realloc(void *ptr, size_t size, void *user_data) {
  (void)user_data;
  return realloc(ptr, size);
}

static const uvq_mem mem_default = {NULL, default_malloc, default_free,
                                    default_calloc, default_realloc};

const uvq_mem *uvq_mem_default(void) { return &mem_default; }

void *uvq_malloc(const uvq_mem *mem, size_t size) {
  return mem->malloc(size, mem->user_data);
}

void *uvq_calloc(const uvq_mem *mem, size_t nmemb, size_t size) {
  return mem->calloc(nmemb, size, mem->user_data);
}

void *uvq_realloc(const uvq_mem *mem, void *ptr, size_t size) {
  return mem->realloc(ptr, size, mem->user_data);
}

void uvq_free(const uvq_mem *mem, void *ptr) {
  if (ptr) {
    mem->free(ptr, mem->user_data);
  }
}

void *uvq_memdup(const uvq_mem *mem, const void *src, size_t len) {
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

void uvq_mem_to_ngtcp2(ngtcp2_mem *dst, const uvq_mem *mem) {
  /* uvq_mem and ngtcp2_mem share their shape: user_data first, then the
   * four functions with user_data last. */
  dst->user_data = mem->user_data;
  dst->malloc = mem->malloc;
  dst->free = mem->free;
  dst->calloc = mem->calloc;
  dst->realloc = mem->realloc;
}
