/* Internal allocation helpers: every library allocation goes through a
 * uvq_mem so tests can inject failures. */
#ifndef UVQ_CORE_MEM_H
#define UVQ_CORE_MEM_H

#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"

void *uvq_malloc(const uvq_mem *mem, size_t size);
void *uvq_calloc(const uvq_mem *mem, size_t nmemb, size_t size);
void *uvq_realloc(const uvq_mem *mem, void *ptr, size_t size);
void uvq_free(const uvq_mem *mem, void *ptr);
/* uvq_memdup copies |len| bytes (plus a NUL) into a new allocation. */
void *uvq_memdup(const uvq_mem *mem, const void *src, size_t len);

/* uvq_mem_to_ngtcp2 fills |dst| so ngtcp2 allocates through |mem|. */
void uvq_mem_to_ngtcp2(ngtcp2_mem *dst, const uvq_mem *mem);

#endif
