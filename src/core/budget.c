/* Receive budgets and memory pressure. The application layers report the
 * received bytes they hold (uvq_conn_recv_hold / _release); while a
 * connection's or the endpoint's total is at its budget, the credit for
 * data the connection delivers is owed instead of returned, and paid once
 * the holders release enough. Under memory pressure (an endpoint budget
 * at 90 % or more) a new server connection first closes the longest-idle
 * one (no bidirectional stream open), kept on a list oldest first, and is
 * refused when there is none. The send budgets live in stream.c. */
#include "core/budget.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/stage.h"
#include "core/stream.h"

/* Nonzero while |conn|'s reads pause for a receive budget. */
static int recv_paused(const uvq_conn *conn) {
  const uvq_settings *st = &conn->ep->settings;
  return (st->conn_recv_budget && conn->recv_held >= st->conn_recv_budget) ||
         (st->endpoint_recv_budget &&
          conn->ep->stats.recv_held_bytes >= st->endpoint_recv_budget);
}

/* Pays the credit |conn| owes: each stream's, then the connection's. */
static void repay(uvq_conn *conn) {
  uvq_stream_table *t = &conn->streams;
  for (size_t i = 0; i < t->cap; i++) {
    uvq_stream *s = t->slots[i];
    if (s && s->credit_owed) {
      ngtcp2_conn_extend_max_stream_offset(conn->ngconn, s->id, s->credit_owed);
      s->credit_owed = 0;
    }
  }
  ngtcp2_conn_extend_max_offset(conn->ngconn, conn->credit_owed);
  conn->credit_owed = 0;
  uvq_ep_mark(conn->ep, conn);
}

void uvq_budget_recv_credit(uvq_conn *conn, uvq_stream *s, int64_t stream_id,
                            size_t n) {
  uvq_endpoint *ep = conn->ep;
  if (!recv_paused(conn)) {
    ngtcp2_conn_extend_max_stream_offset(conn->ngconn, stream_id, n);
    ngtcp2_conn_extend_max_offset(conn->ngconn, n);
    return;
  }
  if (s) {
    s->credit_owed += n;
  }
  conn->credit_owed += n;
  if (!(conn->flags & UVQ_CONN_FLAG_EP_RECV_WAITING)) {
    /* A pause starts: the connection waits on the endpoint's list (its own
     * release may not be what ends the pause: the endpoint's total can
     * fall through any connection) until repay() ends it. */
    ep->stats.recv_budget_pauses++;
    conn->flags |= UVQ_CONN_FLAG_EP_RECV_WAITING;
    conn->recv_wait_next = ep->recv_waiters;
    ep->recv_waiters = conn;
  }
}

void uvq_conn_recv_hold(uvq_conn *conn, size_t n) {
  if (conn == NULL) {
    return;
  }
  conn->recv_held += n;
  conn->ep->stats.recv_held_bytes += n;
}

/* Pays every waiting connection no longer paused; the others wait on. */
static void wake_recv_waiters(uvq_endpoint *ep) {
  uvq_conn **pp = &ep->recv_waiters;
  while (*pp) {
    uvq_conn *c = *pp;
    if (recv_paused(c)) {
      pp = &c->recv_wait_next;
      continue;
    }
    *pp = c->recv_wait_next;
    c->flags &= ~UVQ_CONN_FLAG_EP_RECV_WAITING;
    c->recv_wait_next = NULL;
    repay(c);
  }
}

void uvq_conn_recv_release(uvq_conn *conn, size_t n) {
  uvq_endpoint *ep;
  int ep_was_full, wake;
  if (conn == NULL) {
    return;
  }
  ep = conn->ep;
  if (n > conn->recv_held) {
    n = (size_t)conn->recv_held; /* never below what it reported */
  }
  ep_was_full = ep->settings.endpoint_recv_budget &&
                ep->stats.recv_held_bytes >= ep->settings.endpoint_recv_budget;
  conn->recv_held -= n;
  ep->stats.recv_held_bytes -= n;
  /* The endpoint's total fell from its budget (any waiter may go on), or
   * this connection's pause ended, whichever budget held it. */
  wake = ep_was_full ||
         ((conn->flags & UVQ_CONN_FLAG_EP_RECV_WAITING) && !recv_paused(conn));
  if (wake && ep->recv_waiters) {
    wake_recv_waiters(ep);
  }
}

/* ---- idle connections and memory pressure ------------------------------ */

static void idle_remove(uvq_conn *conn) {
  uvq_endpoint *ep = conn->ep;
  if (!(conn->flags & UVQ_CONN_FLAG_IN_IDLE)) {
    return;
  }
  if (conn->idle_prev) {
    conn->idle_prev->idle_next = conn->idle_next;
  } else {
    ep->idle_head = conn->idle_next;
  }
  if (conn->idle_next) {
    conn->idle_next->idle_prev = conn->idle_prev;
  } else {
    ep->idle_tail = conn->idle_prev;
  }
  conn->idle_prev = conn->idle_next = NULL;
  conn->flags &= ~UVQ_CONN_FLAG_IN_IDLE;
}

void uvq_budget_idle_update(uvq_conn *conn) {
  uvq_endpoint *ep = conn->ep;
  int idle = conn->is_server && conn->stage == UVQ_STAGE_RUNNING &&
             !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) &&
             conn->open_bidi == 0;
  if (idle == ((conn->flags & UVQ_CONN_FLAG_IN_IDLE) != 0)) {
    return;
  }
  if (!idle) {
    idle_remove(conn);
    return;
  }
  conn->idle_since = ep->last_now;
  conn->flags |= UVQ_CONN_FLAG_IN_IDLE;
  conn->idle_next = NULL;
  conn->idle_prev = ep->idle_tail;
  if (ep->idle_tail) {
    ep->idle_tail->idle_next = conn;
  } else {
    ep->idle_head = conn;
  }
  ep->idle_tail = conn;
}

/* Nonzero if |used| is at 90 % of |budget| or more (0: no budget). */
static int near(uint64_t used, uint64_t budget) {
  return budget && used >= budget - budget / 10;
}

int uvq_budget_pressed(const uvq_endpoint *ep) {
  const uvq_settings *st = &ep->settings;
  return near(ep->stats.send_buffered_bytes, st->endpoint_send_budget) ||
         near(ep->stats.recv_held_bytes, st->endpoint_recv_budget);
}

int uvq_budget_admit(uvq_endpoint *ep, uvq_tstamp now) {
  const uvq_settings *st = &ep->settings;
  uvq_conn *victim;

  if (!uvq_budget_pressed(ep)) {
    return 0;
  }
  /* A connection on the list may have started closing since it joined. */
  while ((victim = ep->idle_head) != NULL &&
         (victim->stage != UVQ_STAGE_RUNNING ||
          (victim->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED))) {
    idle_remove(victim);
  }
  if (victim == NULL || st->no_idle_eviction) {
    ep->stats.refused_memory_pressure++;
    return UVQ_ERR_CONNECTION_LIMIT;
  }
  idle_remove(victim);
  ep->stats.evicted_idle++;
  uvq_stage_close_transport(victim, UVQ_ERR_EVICTED, NGTCP2_NO_ERROR,
                            "idle connection closed under memory pressure",
                            now);
  return 0;
}

void uvq_budget_conn_gone(uvq_conn *conn) {
  uvq_endpoint *ep = conn->ep;
  uvq_conn **pp;
  idle_remove(conn);
  if (conn->flags & UVQ_CONN_FLAG_EP_RECV_WAITING) {
    for (pp = &ep->recv_waiters; *pp != conn; pp = &(*pp)->recv_wait_next) {
    }
    *pp = conn->recv_wait_next;
    conn->flags &= ~UVQ_CONN_FLAG_EP_RECV_WAITING;
  }
  conn->credit_owed = 0;
  uvq_conn_recv_release(conn, (size_t)conn->recv_held);
}
