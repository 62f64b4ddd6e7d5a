#include "qtest_mem.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static int refuse(qt_mem *m) {
  m->count++;
  if (m->fail_at &&
      (m->count == m->fail_at || (m->fail_after && m->count > m->fail_at))) {
    m->failed++;
    return 1;
  }
  return 0;
}

static void note_alloc(qt_mem *m, void *p) {
  m->live++;
  m->live_bytes += (int64_t)malloc_usable_size(p);
  if (m->live > m->peak_live) {
    m->peak_live = m->live;
  }
  if (m->live_bytes > m->peak_bytes) {
    m->peak_bytes = m->live_bytes;
  }
}

static void note_free(qt_mem *m, void *p) {
  m->live--;
  m->live_bytes -= (int64_t)malloc_usable_size(p);
}

static void *qm_malloc(size_t size, void *ud) {
  qt_mem *m = ud;
  void *p;
  if (refuse(m)) {
    return NULL;
  }
  p = malloc(size ? size : 1);
  if (p) {
    note_alloc(m, p);
  }
  return p;
}

static void *qm_calloc(size_t nmemb, size_t size, void *ud) {
  qt_mem *m = ud;
  void *p;
  if (refuse(m)) {
    return NULL;
  }
  p = calloc(nmemb ? nmemb : 1, size ? size : 1);
  if (p) {
    note_alloc(m, p);
  }
  return p;
}

static void qm_free(void *ptr, void *ud) {
  qt_mem *m = ud;
  if (ptr == NULL) {
    return;
  }
  note_free(m, ptr);
  free(ptr);
}

static void *qm_realloc(void *ptr, size_t size, void *ud) {
  qt_mem *m = ud;
  void *p;
  if (ptr && size == 0) {
    qm_free(ptr, ud);
    return NULL;
  }
  if (refuse(m)) {
    return NULL;
  }
  if (ptr) {
    size_t old = malloc_usable_size(ptr);
    p = realloc(ptr, size);
    if (p) {
      m->live_bytes += (int64_t)malloc_usable_size(p) - (int64_t)old;
      if (m->live_bytes > m->peak_bytes) {
        m->peak_bytes = m->live_bytes;
      }
    }
    return p;
  }
  p = malloc(size ? size : 1);
  if (p) {
    note_alloc(m, p);
  }
  return p;
}

void qt_mem_init(qt_mem *m) {
  memset(m, 0, sizeof(*m));
  m->mem.user_data = m;
  m->mem.malloc = qm_malloc;
  m->mem.free = qm_free;
  m->mem.calloc = qm_calloc;
  m->mem.realloc = qm_realloc;
}

void qt_mem_reset_peaks(qt_mem *m) {
  m->peak_live = m->live;
  m->peak_bytes = m->live_bytes;
}
