/*
 * Streams: a table by id, bounded send buffers kept until acknowledged, the
 * ready list the writer takes stream data from, and the stream API.
 */
#include <string.h>

#include "core/budget.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/pool.h"
#include "core/stream.h"

/* ---- table (open addressing, linear probing, backward-shift delete) ---- */

static size_t slot_of(const uvq_stream_table *t, int64_t id) {
  uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 32) & (t->cap - 1);
}

int uvq_stream_table_init(uvq_stream_table *t) {
  memset(t, 0, sizeof(*t));
  return 0;
}

uvq_stream *uvq_stream_find(uvq_conn *conn, int64_t id) {
  const uvq_stream_table *t = &conn->streams;
  size_t i;
  if (t->cap == 0) {
    return NULL;
  }
  for (i = slot_of(t, id);; i = (i + 1) & (t->cap - 1)) {
    uvq_stream *s = t->slots[i];
    if (s == NULL) {
      return NULL;
    }
    if (s->id == id) {
      return s;
    }
  }
}

static void table_put(uvq_stream_table *t, uvq_stream *s) {
  size_t i = slot_of(t, s->id);
  while (t->slots[i]) {
    i = (i + 1) & (t->cap - 1);
  }
  t->slots[i] = s;
}

static int table_insert(uvq_conn *conn, uvq_stream *s) {
  uvq_stream_table *t = &conn->streams;
  if ((t->len + 1) * 4 > t->cap * 3) {
    size_t ncap = t->cap ? t->cap * 2 : 8;
    uvq_stream **old = t->slots;
    size_t ocap = t->cap;
    /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    uvq_stream **slots = uvq_calloc(conn->ep->mem, ncap, sizeof(*slots));
    if (slots == NULL) {
      return UVQ_ERR_NOMEM;
    }
    t->slots = slots;
    t->cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
      if (old[i]) {
        table_put(t, old[i]);
      }
    }
    uvq_free(conn->ep->mem, old);
  }
  table_put(t, s);
  t->len++;
  return 0;
}

static void table_remove(uvq_conn *conn, uvq_stream *s) {
  uvq_stream_table *t = &conn->streams;
  size_t i, j;
  if (t->cap == 0) {
    return;
  }
  for (i = slot_of(t, s->id); t->slots[i] != s; i = (i + 1) & (t->cap - 1)) {
    if (t->slots[i] == NULL) {
      return;
    }
  }
  t->slots[i] = NULL;
  t->len--;
  /* Backward shift: pull later entries of the cluster into the hole. */
  for (j = (i + 1) & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1)) {
    size_t home = slot_of(t, t->slots[j]->id);
    /* Move if the hole lies cyclically in [home, j). */
    if (((j - home) & (t->cap - 1)) >= ((j - i) & (t->cap - 1))) {
      t->slots[i] = t->slots[j];
      t->slots[j] = NULL;
      i = j;
    }
  }
}

/* ---- lifecycle --------------------------------------------------------- */

int uvq_stream_create(uvq_conn *conn, int64_t id, void *user_data,
                      uvq_stream **pstrm) {
  uvq_stream *s = uvq_calloc(conn->ep->mem, 1, sizeof(*s));
  int rv;
  if (s == NULL) {
    return UVQ_ERR_NOMEM;
  }
  s->id = id;
  s->user_data = user_data;
  s->conn = conn;
  rv = table_insert(conn, s);
  if (rv != 0) {
    uvq_free(conn->ep->mem, s);
    return rv;
  }
  if ((id & 0x2) == 0) {
    conn->open_bidi++; /* requests, for liveness and idleness (HTTP/3's own
                          streams are unidirectional and never close) */
    uvq_budget_idle_update(conn);
  }
  *pstrm = s;
  return 0;
}

/* A chunk from a pool buffer of class |cls|, with nothing in it. */
static uvq_chunk *chunk_get(uvq_conn *conn, int cls) {
  uvq_chunk *c = uvq_pool_get(conn->ep->pool, cls);
  if (c == NULL) {
    return NULL;
  }
  c->next = NULL;
  c->base = c->data;
  c->len = 0;
  c->cap = uvq_pool_class_size(cls) - sizeof(*c);
  c->free_cb = NULL;
  c->free_ud = NULL;
  c->cls = cls;
  return c;
}

/* Gives |c| back to the pool; a reference chunk hands the caller's memory
 * back first. */
static void chunk_free(uvq_conn *conn, uvq_chunk *c) {
  if (c->free_cb) {
    c->free_cb((void *)(uintptr_t)c->base, c->free_ud);
  }
  uvq_pool_put(conn->ep->pool, c->cls, c);
}

static void free_chunks(uvq_conn *conn, uvq_stream *s) {
  uvq_chunk *c = s->head;
  while (c) {
    uvq_chunk *next = c->next;
    chunk_free(conn, c);
    c = next;
  }
  s->head = s->tail = s->send_chunk = NULL;
}

static void budget_released(uvq_conn *conn);
static void ep_budget_released(uvq_endpoint *ep);
static void grant_drop(uvq_conn *conn);
static void budget_wait(uvq_conn *conn, int budget);
static void buffered_freed(uvq_conn *conn, uint64_t n);

void uvq_stream_destroy(uvq_conn *conn, uvq_stream *s) {
  if (s->data_blocked) {
    conn->nblocked--;
  }
  uvq_stream_unready(conn, s);
  if (s->writable_pending) {
    uvq_stream **pp = &conn->writable_pending;
    while (*pp && *pp != s) {
      pp = &(*pp)->pending_next;
    }
    if (*pp) {
      *pp = s->pending_next;
    }
  }
  if (s->stop_pending) {
    uvq_stream **pp = &conn->stop_pending;
    while (*pp && *pp != s) {
      pp = &(*pp)->stop_next;
    }
    if (*pp) {
      *pp = s->stop_next;
    }
  }
  conn->metrics.stream_lost_closed += s->loss_seen;
  buffered_freed(conn, s->written - s->head_offset);
  if ((s->id & 0x2) == 0) {
    conn->open_bidi--;
    uvq_budget_idle_update(conn);
  }
  table_remove(conn, s);
  free_chunks(conn, s);
  uvq_free(conn->ep->mem, s);
  budget_released(conn);
  ep_budget_released(conn->ep);
}

void uvq_stream_table_free(uvq_conn *conn) {
  uvq_stream_table *t = &conn->streams;
  uvq_endpoint *ep = conn->ep;
  if (conn->flags & UVQ_CONN_FLAG_EP_SEND_WAITING) {
    uvq_conn **pp = &ep->send_waiters;
    while (*pp != conn) {
      pp = &(*pp)->send_wait_next;
    }
    *pp = conn->send_wait_next;
    conn->flags &= ~UVQ_CONN_FLAG_EP_SEND_WAITING;
  }
  grant_drop(conn);
  for (size_t i = 0; i < t->cap; i++) {
    uvq_stream *s = t->slots[i];
    if (s) {
      free_chunks(conn, s);
      uvq_free(conn->ep->mem, s);
    }
  }
  uvq_free(conn->ep->mem, t->slots);
  memset(t, 0, sizeof(*t));
  conn->ready_head = conn->ready_tail = NULL;
  conn->writable_pending = NULL;
  conn->stop_pending = NULL;
  conn->nblocked = 0;
  buffered_freed(conn, conn->send_buffered);
  conn->flags &= ~UVQ_CONN_FLAG_BUDGET_WAITERS;
  ep_budget_released(ep);
}

/* ---- ready list -------------------------------------------------------- */

static int has_work(const uvq_stream *s) {
  if (s->shut_wr || s->data_blocked) {
    return 0;
  }
  return s->sent < s->written || (s->fin_requested && !s->fin_sent);
}

void uvq_stream_ready(uvq_conn *conn, uvq_stream *s) {
  if (s->in_ready || !has_work(s)) {
    return;
  }
  s->in_ready = 1;
  s->ready_next = NULL;
  s->ready_prev = conn->ready_tail;
  if (conn->ready_tail) {
    conn->ready_tail->ready_next = s;
  } else {
    conn->ready_head = s;
  }
  conn->ready_tail = s;
}

void uvq_stream_unready(uvq_conn *conn, uvq_stream *s) {
  if (!s->in_ready) {
    return;
  }
  if (s->ready_prev) {
    s->ready_prev->ready_next = s->ready_next;
  } else {
    conn->ready_head = s->ready_next;
  }
  if (s->ready_next) {
    s->ready_next->ready_prev = s->ready_prev;
  } else {
    conn->ready_tail = s->ready_prev;
  }
  s->ready_prev = s->ready_next = NULL;
  s->in_ready = 0;
}

/* ---- send buffer ------------------------------------------------------- */

size_t uvq_stream_buffered(const uvq_stream *s) {
  return (size_t)(s->written - s->acked);
}

/* Unsent bytes a stream may hold beyond the peer's credit: one provider
 * read (the 64 KiB bulk class), so a MAX_STREAM_DATA finds a chunk ready
 * to go while on_stream_writable has the writer make the next. */
#define UVQ_SEND_LOOKAHEAD (64u * 1024)

/* What the endpoint's send budget has free: neither in buffers nor set
 * aside for a connection whose turn came (ep_budget_released). */
static uint64_t ep_free(const uvq_endpoint *ep) {
  uint64_t used = ep->stats.send_buffered_bytes + ep->send_reserved;
  uint64_t budget = ep->settings.endpoint_send_budget;
  return budget > used ? budget - used : 0;
}

/* What is left of the budgets for |conn|'s send buffers: the least of its
 * own (conn_send_budget) and the endpoint's (endpoint_send_budget, 0 = no
 * limit); *pep says whether the endpoint's is the tighter. While
 * connections wait for the endpoint's budget, what frees goes to them in
 * turn: a connection has only what was set aside for it (first come,
 * first served; a connection writing all along would otherwise take every
 * byte its own acknowledgements free, and a waiter never get any). */
static uint64_t budget_left(const uvq_conn *conn, int *pep) {
  const uvq_settings *st = &conn->ep->settings;
  uint64_t left = st->conn_send_budget > conn->send_buffered
                      ? st->conn_send_budget - conn->send_buffered
                      : 0;
  uint64_t ep_left = conn->ep_grant;
  if (conn->ep->send_waiters == NULL) {
    ep_left += ep_free(conn->ep);
  }
  *pep = st->endpoint_send_budget && ep_left < left;
  return *pep ? ep_left : left;
}

/* The least room of a |budget| worth waking a waiting writer for: a
 * lookahead's worth, or half the budget when that is smaller (a budget
 * under two lookaheads would otherwise never free enough, and its
 * waiters would wait for good). */
static uint64_t wake_min(uint64_t budget) {
  return budget / 2 < UVQ_SEND_LOOKAHEAD ? budget / 2 : UVQ_SEND_LOOKAHEAD;
}

/* How many more bytes |s| may take now, the least of: its buffer
 * (stream_send_buffer, in flight included); the peer's credit (unsent
 * bytes at most the stream's remaining flow-control credit plus
 * UVQ_SEND_LOOKAHEAD); and what is left of the budgets (budget_left).
 * *pbudget: 0 if the buffer or the credit is the limit, 1 if the
 * connection's budget is, 2 if the endpoint's is. */
static uint64_t send_room(const uvq_conn *conn, const uvq_stream *s,
                          int *pbudget) {
  const uvq_settings *st = &conn->ep->settings;
  uint64_t buffered = s->written - s->acked, unsent = s->written - s->sent;
  uint64_t credit = ngtcp2_conn_get_max_stream_data_left(conn->ngconn, s->id) +
                    UVQ_SEND_LOOKAHEAD;
  uint64_t room =
      st->stream_send_buffer > buffered ? st->stream_send_buffer - buffered : 0;
  int ep_limited;
  uint64_t left = budget_left(conn, &ep_limited);

  room = credit > unsent && credit - unsent < room ? credit - unsent
         : credit > unsent                         ? room
                                                   : 0;
  *pbudget = left < room ? 1 + ep_limited : 0;
  return left < room ? left : room;
}

/* A writer that came back short hears when |s| has room again. */
static void maybe_writable(uvq_conn *conn, uvq_stream *s) {
  int budget;
  if (!s->want_writable || s->writable_pending) {
    return;
  }
  if (send_room(conn, s, &budget) > 0) {
    s->want_writable = 0;
    s->writable_pending = 1;
    s->pending_next = conn->writable_pending;
    conn->writable_pending = s;
  } else if (budget) {
    /* The credit came but a budget is spent now: the writer hears when
     * the budget frees, as if its write had come back short for it. */
    budget_wait(conn, budget);
  }
}

void uvq_stream_credit(uvq_conn *conn, uvq_stream *s) {
  maybe_writable(conn, s);
}

static void buffered_grew(uvq_conn *conn, size_t n) {
  uint64_t from_grant = n < conn->ep_grant ? n : conn->ep_grant;
  conn->send_buffered += n;
  conn->ep->stats.send_buffered_bytes += n;
  conn->ep_grant -= from_grant;
  conn->ep->send_reserved -= from_grant;
}

/* |conn| waits for the endpoint's budget: at the end of the endpoint's
 * list, unless it is on it already. */
static void ep_wait(uvq_conn *conn) {
  uvq_conn **pp = &conn->ep->send_waiters;
  if (conn->flags & UVQ_CONN_FLAG_EP_SEND_WAITING) {
    return;
  }
  while (*pp) {
    pp = &(*pp)->send_wait_next;
  }
  *pp = conn;
  conn->send_wait_next = NULL;
  conn->flags |= UVQ_CONN_FLAG_EP_SEND_WAITING;
}

/* A stream of |conn| waits for a budget (send_room's *pbudget): every
 * waiting stream is looked at when the connection's frees, and the
 * connection goes on the endpoint's list when the endpoint's is spent. */
static void budget_wait(uvq_conn *conn, int budget) {
  if (budget) {
    conn->flags |= UVQ_CONN_FLAG_BUDGET_WAITERS;
  }
  if (budget == 2) {
    ep_wait(conn);
  }
}

/* Streams waiting for the endpoint's budget, on every connection that has
 * some, hear of room: connections in the order they started waiting, each
 * given a lookahead's worth set aside for it (the last one whatever is
 * free: the list is empty then) and as many streams as budget_released
 * finds room for, until the free room is spent. Waking by budget_released's
 * rule, so a connection taken off the list does not go straight back. */
static void ep_budget_released(uvq_endpoint *ep) {
  uint64_t need = wake_min(ep->settings.endpoint_send_budget);
  while (ep->send_waiters) {
    uvq_conn *c = ep->send_waiters;
    uint64_t room = ep_free(ep);
    uint64_t grant = room < UVQ_SEND_LOOKAHEAD ? room : UVQ_SEND_LOOKAHEAD;
    if (room == 0 || room < need) {
      return; /* wait for a lookahead's worth */
    }
    ep->send_waiters = c->send_wait_next;
    c->send_wait_next = NULL;
    c->flags &= ~UVQ_CONN_FLAG_EP_SEND_WAITING;
    c->ep_grant += grant;
    ep->send_reserved += grant;
    budget_released(c);
    uvq_ep_mark(ep, c); /* on_stream_writable fires at its next write */
  }
}

/* Gives back what is left of |conn|'s set-aside endpoint budget. */
static void grant_drop(uvq_conn *conn) {
  conn->ep->send_reserved -= conn->ep_grant;
  conn->ep_grant = 0;
}

void uvq_stream_grant_end(uvq_conn *conn) {
  if (conn->ep_grant) {
    grant_drop(conn);
    ep_budget_released(conn->ep);
  }
}

/* Chunks holding |n| bytes went back to the pool: both budgets have room
 * again. */
static void buffered_freed(uvq_conn *conn, uint64_t n) {
  conn->send_buffered -= n;
  conn->ep->stats.send_buffered_bytes -= n;
}

/* A write came back short: the writer hears of room later; a budget
 * pushback is counted, and the streams are looked at when it lifts — an
 * endpoint pushback puts the connection on the endpoint's list. */
static void short_write(uvq_conn *conn, uvq_stream *s, int budget) {
  uvq_endpoint *ep = conn->ep;
  s->want_writable = 1;
  if (budget == 1) {
    ep->stats.send_budget_pushbacks++;
  } else if (budget == 2) {
    ep->stats.endpoint_send_budget_pushbacks++;
  }
  budget_wait(conn, budget);
}

/* Streams cut short by the connection's budget hear of room: as many as
 * the room can serve one lookahead each (at least one), taken round robin
 * from where the last release stopped, so an acknowledgement neither
 * wakes every stream for a few bytes nor favours the first ones. */
static void budget_released(uvq_conn *conn) {
  uvq_stream_table *t = &conn->streams;
  const uvq_settings *st = &conn->ep->settings;
  uint64_t wake, left;
  size_t i, n, start;
  int ep_limited;

  left = budget_left(conn, &ep_limited);
  if (!(conn->flags & UVQ_CONN_FLAG_BUDGET_WAITERS) || t->cap == 0) {
    return;
  }
  if (left == 0 || left < wake_min(ep_limited ? st->endpoint_send_budget
                                              : st->conn_send_budget)) {
    /* Wait for a lookahead's worth, unless the tighter budget is small:
     * this connection's acknowledgements bring it, or the endpoint's list
     * when the endpoint's budget is the tighter (this connection may have
     * nothing in flight to be acknowledged). ep_budget_released wakes by
     * the same rule, so a connection it takes off its list never goes
     * straight back on. */
    if (ep_limited) {
      ep_wait(conn);
    }
    return;
  }
  wake = left / UVQ_SEND_LOOKAHEAD;
  if (wake == 0) {
    wake = 1;
  }
  conn->flags &= ~UVQ_CONN_FLAG_BUDGET_WAITERS;
  start = conn->budget_scan;
  for (n = 0; n < t->cap; n++) {
    uvq_stream *s;
    i = (start + n) % t->cap;
    s = t->slots[i];
    if (s == NULL || !s->want_writable) {
      continue;
    }
    if (wake == 0) {
      /* More are waiting: next time. */
      conn->flags |= UVQ_CONN_FLAG_BUDGET_WAITERS;
      break;
    }
    maybe_writable(conn, s);
    conn->budget_scan = i + 1;
    /* A stream waiting for credit, not room, takes no wakeup: it hears
     * when the credit comes (uvq_stream_credit). Counted, a hundred of
     * them used up the last releases, and a stream waiting for room with
     * nothing in flight to bring another waited for good. */
    if (s->writable_pending) {
      wake--;
    }
  }
}

size_t uvq_stream_unsent_iov(uvq_stream *s, ngtcp2_vec *iov, size_t iovcnt,
                             size_t maxbytes, uint64_t *ptotal) {
  uvq_chunk *c = s->send_chunk;
  uint64_t coff = s->send_chunk_offset;
  uint64_t total = 0;
  size_t n = 0;
  /* No further than one packet can carry: this runs for every packet, and
   * a send buffer may hold hundreds of chunks. */
  while (c && n < iovcnt && total < maxbytes) {
    uint64_t start = s->sent > coff ? s->sent - coff : 0;
    if (start < c->len) {
      iov[n].base = (uint8_t *)(uintptr_t)(c->base + start);
      iov[n].len = (size_t)(c->len - start);
      total += iov[n].len;
      n++;
    }
    coff += c->len;
    c = c->next;
  }
  *ptotal = total;
  return n;
}

void uvq_stream_consumed(uvq_conn *conn, uvq_stream *s, size_t n,
                         uint32_t flags) {
  s->sent += n;
  conn->metrics.stream_bytes_sent += n;
  while (s->send_chunk &&
         s->sent >= s->send_chunk_offset + s->send_chunk->len &&
         s->send_chunk->next) {
    s->send_chunk_offset += s->send_chunk->len;
    s->send_chunk = s->send_chunk->next;
  }
  if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && s->sent == s->written) {
    s->fin_sent = 1;
    s->fin_alone = n == 0;
  }
  uvq_stream_unready(conn, s);
  /* Round robin: a stream with more to send goes to the back. */
  uvq_stream_ready(conn, s);
}

void uvq_stream_ack(uvq_conn *conn, uvq_stream *s, uint64_t offset,
                    uint64_t len) {
  uint64_t end = offset + len;
  /* ngtcp2 reports a frame that adds nothing to the acknowledged prefix
   * only when it carried our FIN. */
  if (len == 0) {
    s->fin_acked = 1;
  }
  if (end > s->acked) {
    conn->metrics.stream_bytes_acked +=
        end - (offset > s->acked ? offset : s->acked);
    s->acked = end;
  }
  /* ngtcp2 forgets the count with the stream: keep the latest (metrics.c). */
  s->loss_seen = ngtcp2_conn_get_stream_loss_count(conn->ngconn, s->id);
  /* Free chunks wholly acknowledged — the writer's too: acknowledged
   * means sent, so the writer moves past it. An idle stream (an HTTP/3
   * control stream after SETTINGS) then holds no buffer at all. */
  while (s->head && s->head_offset + s->head->len <= s->acked) {
    uvq_chunk *c = s->head;
    if (c == s->send_chunk) {
      s->send_chunk = c->next;
      s->send_chunk_offset = s->head_offset + c->len;
    }
    s->head_offset += c->len;
    s->head = c->next;
    buffered_freed(conn, c->len);
    chunk_free(conn, c);
  }
  if (s->head == NULL) {
    s->tail = NULL;
  }
  maybe_writable(conn, s);
  budget_released(conn);
  ep_budget_released(conn->ep);
}

/* Puts |c|, holding stream offsets from |off| on, at the end of the send
 * buffer. */
static void link_chunk(uvq_stream *s, uvq_chunk *c, uint64_t off) {
  c->next = NULL;
  if (s->tail) {
    s->tail->next = c;
  } else {
    s->head = c;
    s->head_offset = off;
  }
  s->tail = c;
  if (s->send_chunk == NULL) {
    s->send_chunk = c;
    s->send_chunk_offset = off;
  }
}

/* Copies |len| bytes into the send buffer: the room left in the last
 * chunk, then new chunks of the smallest class that holds the rest (a
 * frame header takes a small buffer, bulk data large ones). A stream that
 * filled a copied chunk gets the next class up, so many small writes do
 * not make many small chunks. Returns the bytes taken: fewer than |len|
 * only when the pool has no memory. */
static size_t append(uvq_conn *conn, uvq_stream *s, const uint8_t *data,
                     size_t len) {
  uvq_chunk *t = s->tail;
  size_t done = 0;
  int min_cls = 0;
  if (t && t->free_cb == NULL) {
    size_t n = t->cap - t->len < len ? t->cap - t->len : len;
    memcpy(t->data + t->len, data, n);
    t->len += n;
    done = n;
    min_cls = t->cls + 1 < UVQ_POOL_NCLASSES ? t->cls + 1 : t->cls;
  }
  while (done < len) {
    size_t need = len - done;
    int cls = uvq_pool_class(sizeof(uvq_chunk) + need);
    uvq_chunk *c;
    if (cls < 0) {
      cls = UVQ_POOL_NCLASSES - 1;
    }
    if (cls < min_cls) {
      cls = min_cls;
    }
    c = chunk_get(conn, cls);
    if (c == NULL) {
      break;
    }
    c->len = need < c->cap ? need : c->cap;
    memcpy(c->data, data + done, c->len);
    link_chunk(s, c, s->written + done);
    done += c->len;
  }
  return done;
}

/* ---- public stream API ------------------------------------------------- */

static int usable(uvq_conn *conn) {
  return conn->stage < UVQ_STAGE_CLOSING &&
         !(conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED);
}

/* A stream has a send side unless it is the peer's unidirectional one. */
static int has_send_side(uvq_conn *conn, const uvq_stream *s) {
  return ngtcp2_is_bidi_stream(s->id) ||
         ngtcp2_conn_is_local_stream(conn->ngconn, s->id);
}

/* Finds a stream the API may act on; 0 or a UVQ_ERR_*. */
static int api_stream(uvq_conn *conn, int64_t stream_id, uvq_stream **ps) {
  if (conn == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!usable(conn)) {
    return UVQ_ERR_CLOSED;
  }
  *ps = uvq_stream_find(conn, stream_id);
  return *ps ? 0 : UVQ_ERR_STREAM_NOT_FOUND;
}

ssize_t uvq_stream_write(uvq_conn *conn, int64_t stream_id, const uint8_t *data,
                         size_t len, int fin) {
  uvq_stream *s;
  uint64_t room;
  size_t n;
  int rv, budget;

  if (data == NULL && len > 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = api_stream(conn, stream_id, &s);
  if (rv != 0) {
    return rv;
  }
  if (s->shut_wr || s->fin_requested || !has_send_side(conn, s)) {
    return UVQ_ERR_STREAM_SHUT;
  }
  room = send_room(conn, s, &budget);
  n = len < room ? len : (size_t)room;
  if (n) {
    n = append(conn, s, data, n);
    if (n == 0) {
      return UVQ_ERR_NOMEM;
    }
    s->written += n;
    buffered_grew(conn, n);
  }
  if (n < len) {
    short_write(conn, s, budget);
  } else if (fin) {
    s->fin_requested = 1;
  }
  uvq_stream_ready(conn, s);
  uvq_ep_mark(conn->ep, conn);
  return (ssize_t)n;
}

ssize_t uvq_stream_write_ref(uvq_conn *conn, int64_t stream_id,
                             const uint8_t *data, size_t len, int fin,
                             void (*free_cb)(void *ptr, void *ud), void *ud) {
  uvq_stream *s;
  uvq_chunk *c;
  int rv, budget;

  if (len == 0) {
    /* Nothing to reference: a plain FIN (or no-op) write. */
    return uvq_stream_write(conn, stream_id, NULL, 0, fin);
  }
  if (data == NULL || free_cb == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = api_stream(conn, stream_id, &s);
  if (rv != 0) {
    return rv;
  }
  if (s->shut_wr || s->fin_requested || !has_send_side(conn, s)) {
    return UVQ_ERR_STREAM_SHUT;
  }
  /* All or nothing: taken whole while there is any room at all, so each
   * bound may be overshot by at most one reference. */
  if (send_room(conn, s, &budget) == 0) {
    short_write(conn, s, budget);
    return 0;
  }
  c = chunk_get(conn, uvq_pool_class(sizeof(*c)));
  if (c == NULL) {
    return UVQ_ERR_NOMEM;
  }
  c->base = data;
  c->len = c->cap = len;
  c->free_cb = free_cb;
  c->free_ud = ud;
  link_chunk(s, c, s->written);
  s->written += len;
  buffered_grew(conn, len);
  if (fin) {
    s->fin_requested = 1;
  }
  uvq_stream_ready(conn, s);
  uvq_ep_mark(conn->ep, conn);
  return (ssize_t)len;
}

/* ngtcp2_conn_shutdown_stream_* errors: NOMEM, or INVALID_ARGUMENT for a
 * direction the stream does not have (1.11 returns 0 for a stream it no
 * longer knows). */
static int shutdown_error(int rv) {
  return rv == NGTCP2_ERR_NOMEM              ? UVQ_ERR_NOMEM
         : rv == NGTCP2_ERR_INVALID_ARGUMENT ? UVQ_ERR_INVALID_ARGUMENT
                                             : UVQ_ERR_INTERNAL;
}

int uvq_stream_reset(uvq_conn *conn, int64_t stream_id, uint64_t app_error) {
  uvq_stream *s;
  int rv = api_stream(conn, stream_id, &s);
  if (rv != 0) {
    return rv;
  }
  rv = ngtcp2_conn_shutdown_stream_write(conn->ngconn, 0, stream_id, app_error);
  if (rv != 0) {
    return shutdown_error(rv);
  }
  /* Chunks stay until the stream closes: ngtcp2 may still point at them. */
  s->shut_wr = 1;
  s->want_writable = 0;
  uvq_stream_unready(conn, s);
  uvq_ep_mark(conn->ep, conn);
  return 0;
}

int uvq_stream_stop_sending(uvq_conn *conn, int64_t stream_id,
                            uint64_t app_error) {
  uvq_stream *s;
  int rv = api_stream(conn, stream_id, &s);
  if (rv != 0) {
    return rv;
  }
  rv = ngtcp2_conn_shutdown_stream_read(conn->ngconn, 0, stream_id, app_error);
  if (rv != 0) {
    return shutdown_error(rv);
  }
  s->stop_reading = 1;
  uvq_ep_mark(conn->ep, conn);
  return 0;
}

int uvq_stream_set_user_data(uvq_conn *conn, int64_t stream_id,
                             void *stream_user_data) {
  uvq_stream *s = conn ? uvq_stream_find(conn, stream_id) : NULL;
  if (s == NULL) {
    return UVQ_ERR_STREAM_NOT_FOUND;
  }
  s->user_data = stream_user_data;
  return 0;
}

int uvq_stream_is_early(uvq_conn *conn, int64_t stream_id) {
  uvq_stream *s = conn ? uvq_stream_find(conn, stream_id) : NULL;
  return s ? s->early : 0;
}

void *uvq_stream_get_user_data(uvq_conn *conn, int64_t stream_id) {
  uvq_stream *s = conn ? uvq_stream_find(conn, stream_id) : NULL;
  return s ? s->user_data : NULL;
}

size_t uvq_stream_get_buffered(uvq_conn *conn, int64_t stream_id) {
  uvq_stream *s = conn ? uvq_stream_find(conn, stream_id) : NULL;
  return s ? uvq_stream_buffered(s) : 0;
}

size_t uvq_stream_get_send_room(uvq_conn *conn, int64_t stream_id) {
  uvq_stream *s = conn ? uvq_stream_find(conn, stream_id) : NULL;
  uint64_t room;
  int budget;

  if (s == NULL || s->shut_wr || s->fin_requested || !has_send_side(conn, s)) {
    return 0;
  }
  room = send_room(conn, s, &budget);
  if (room == 0) {
    short_write(conn, s, budget); /* the asker hears when room opens */
  }
  return room > SIZE_MAX ? SIZE_MAX : (size_t)room;
}

uint64_t uvq_stream_get_acked(uvq_conn *conn, int64_t stream_id,
                              int *pfin_acked) {
  uvq_stream *s = conn ? uvq_stream_find(conn, stream_id) : NULL;

  if (pfin_acked != NULL) {
    /* The FIN went with the last byte in every frame that held that byte
     * (ngtcp2 keeps it there when it splits or resends), so that byte
     * acknowledged is the FIN acknowledged; a FIN sent alone needs its
     * own acknowledgement. */
    *pfin_acked = s != NULL && s->fin_sent && s->acked == s->written &&
                  (s->fin_acked || (!s->fin_alone && s->written > 0));
  }
  return s ? s->acked : 0;
}
