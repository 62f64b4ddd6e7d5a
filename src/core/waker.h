/*
 * Wakers and the wake hub (waker.c): the only part of the core other
 * threads touch.
 */
#ifndef UVQ_CORE_WAKER_H
#define UVQ_CORE_WAKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/core.h"

/* Wake hub: shared by the endpoint and every waker; outlives both. */
struct uvq_wake_hub {
  pthread_mutex_t lock;
  atomic_size_t refcnt;
  uvq_endpoint *ep; /* NULL once the endpoint is gone */
  uvq_waker *queue; /* woken wakers, each holding a reference */
  const uvq_mem *mem;
};

struct uvq_waker {
  atomic_size_t refcnt;
  uvq_wake_hub *hub;
  uvq_conn *conn; /* guarded by hub->lock; NULL after the conn is gone */
  int queued;     /* guarded by hub->lock */
  uvq_waker *next;
};

int uvq_wake_hub_new(uvq_wake_hub **phub, uvq_endpoint *ep, const uvq_mem *mem);
void uvq_wake_hub_detach(uvq_wake_hub *hub);
void uvq_waker_detach_conn(uvq_conn *conn);

#endif
