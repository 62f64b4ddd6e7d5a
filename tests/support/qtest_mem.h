/*
 * A counting allocator for tests: every malloc/calloc/realloc through it is
 * counted; it can refuse the n-th one (failmalloc), and tracks live
 * allocations and bytes with their peaks (leak and memory-bound checks).
 */
#ifndef UVQ_QTEST_MEM_H
#define UVQ_QTEST_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

typedef struct qt_mem {
  uvq_mem mem;      /* hand &m->mem to the library */
  uint64_t count;   /* allocation attempts (malloc, calloc, realloc) */
  uint64_t fail_at; /* 1-based attempt to refuse; 0 = never */
  int fail_after;   /* refuse every attempt from fail_at on, not just one */
  uint64_t failed;  /* attempts refused */
  int64_t live;     /* blocks allocated and not freed */
  int64_t peak_live;
  int64_t live_bytes; /* usable bytes of those blocks */
  int64_t peak_bytes;
} qt_mem;

/* Zeroes |m| and wires its uvq_mem to it. */
void qt_mem_init(qt_mem *m);

/* Resets the peaks to the current values. */
void qt_mem_reset_peaks(qt_mem *m);

#endif
