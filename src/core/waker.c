/*
 * Wakers: reference-counted handles any thread may signal. A shared hub
 * (itself reference-counted by the endpoint and every waker) holds the
 * queue of woken wakers, so a waker outliving its connection or endpoint
 * is harmless.
 */
#include "core/waker.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/stage.h"

static void hub_release(uvq_wake_hub *hub) {
  if (atomic_fetch_sub(&hub->refcnt, 1) == 1) {
    pthread_mutex_destroy(&hub->lock);
    uvq_free(hub->mem, hub);
  }
}

int uvq_wake_hub_new(uvq_wake_hub **phub, uvq_endpoint *ep,
                     const uvq_mem *mem) {
  uvq_wake_hub *hub = uvq_calloc(mem, 1, sizeof(*hub));
  if (hub == NULL) {
    return UVQ_ERR_NOMEM;
  }
  if (pthread_mutex_init(&hub->lock, NULL) != 0) {
    uvq_free(mem, hub);
    return UVQ_ERR_INTERNAL;
  }
  atomic_init(&hub->refcnt, 1);
  hub->ep = ep;
  hub->mem = mem;
  *phub = hub;
  return 0;
}

static void waker_release(uvq_waker *w) {
  if (atomic_fetch_sub(&w->refcnt, 1) == 1) {
    uvq_wake_hub *hub = w->hub;
    uvq_free(hub->mem, w);
    hub_release(hub);
  }
}

void uvq_wake_hub_detach(uvq_wake_hub *hub) {
  uvq_waker *q;
  pthread_mutex_lock(&hub->lock);
  hub->ep = NULL;
  q = hub->queue;
  hub->queue = NULL;
  for (uvq_waker *w = q; w; w = w->next) {
    w->queued = 0;
  }
  pthread_mutex_unlock(&hub->lock);
  while (q) {
    uvq_waker *next = q->next;
    waker_release(q);
    q = next;
  }
  hub_release(hub);
}

uvq_waker *uvq_conn_waker(uvq_conn *conn) {
  uvq_wake_hub *hub = conn->ep->hub;
  uvq_waker *w = conn->waker;
  if (w == NULL) {
    w = uvq_calloc(conn->ep->mem, 1, sizeof(*w));
    if (w == NULL) {
      return NULL;
    }
    /* The connection holds one reference until it is freed. */
    atomic_init(&w->refcnt, 1);
    w->hub = hub;
    w->conn = conn;
    atomic_fetch_add(&hub->refcnt, 1);
    conn->waker = w;
  }
  atomic_fetch_add(&w->refcnt, 1);
  return w;
}

void uvq_waker_wake(uvq_waker *w) {
  uvq_wake_hub *hub;
  if (w == NULL) {
    return;
  }
  hub = w->hub;
  pthread_mutex_lock(&hub->lock);
  if (w->conn && hub->ep && !w->queued) {
    w->queued = 1;
    atomic_fetch_add(&w->refcnt, 1);
    w->next = hub->queue;
    hub->queue = w;
    /* Called under the lock so the endpoint cannot go away meanwhile. */
    if (hub->ep->cfg.wake) {
      hub->ep->cfg.wake(hub->ep, hub->ep->cfg.user_data);
    }
  }
  pthread_mutex_unlock(&hub->lock);
}

void uvq_waker_release(uvq_waker *w) {
  if (w) {
    waker_release(w);
  }
}

void uvq_waker_detach_conn(uvq_conn *conn) {
  uvq_waker *w = conn->waker;
  uvq_wake_hub *hub;
  if (w == NULL) {
    return;
  }
  hub = w->hub;
  pthread_mutex_lock(&hub->lock);
  w->conn = NULL;
  pthread_mutex_unlock(&hub->lock);
  conn->waker = NULL;
  waker_release(w);
}

static void process_wakes(uvq_endpoint *ep);

int uvq_endpoint_process_wakes(uvq_endpoint *ep) {
  int rv;
  if (ep == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_ep_enter(ep);
  if (rv == 0) {
    process_wakes(ep);
    ep->busy = 0;
  }
  return rv;
}

static void process_wakes(uvq_endpoint *ep) {
  uvq_wake_hub *hub = ep->hub;
  uvq_waker *q;

  pthread_mutex_lock(&hub->lock);
  q = hub->queue;
  hub->queue = NULL;
  pthread_mutex_unlock(&hub->lock);

  /* Only this thread frees connections, so w->conn stays valid here. A
   * waker stays marked queued (so wakes are no-ops and leave its link
   * alone) until its link has been read. */
  while (q) {
    uvq_waker *next;
    uvq_conn *conn;
    pthread_mutex_lock(&hub->lock);
    next = q->next;
    q->queued = 0;
    conn = q->conn;
    pthread_mutex_unlock(&hub->lock);
    if (conn && conn->cb && conn->cb->on_wake &&
        conn->stage < UVQ_STAGE_CLOSING &&
        !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED)) {
      if (conn->cb->on_wake(conn, conn->user_data) != 0) {
        conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
        uvq_stage_fail(conn, NGTCP2_ERR_CALLBACK_FAILURE, ep->last_now);
      }
      uvq_ep_mark(ep, conn);
    }
    waker_release(q);
    q = next;
  }
}
