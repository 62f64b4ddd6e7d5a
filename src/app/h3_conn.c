/* HTTP/3, both sides: the nghttp3 connection and its callbacks, the
 * control and QPACK streams, exchanges and their bodies, the write pump
 * (nghttp3 -> core), shutdown, and the uvq_app_callbacks every h3
 * connection runs on. See h3.h and docs/internals/h3.md. */
#include "app/h3.h"

#include <stdio.h>
#include <string.h>

#include "core/mem.h"

/* A provider chunk is one uvq_buf_get buffer (a bulk one at most). */
_Static_assert(sizeof(h3_chunk) + UVQ_H3_PROVIDER_CHUNK <= UVQ_BUF_MAX,
               "provider chunk larger than UVQ_BUF_MAX");

const char *uvq_h3_strerror(int err) {
  switch (err) {
  case UVQ_H3_ERR_RESET:
    return "stream reset by peer";
  case UVQ_H3_ERR_CANCELLED:
    return "request cancelled";
  case UVQ_H3_ERR_REJECTED:
    return "request rejected (retryable)";
  case UVQ_H3_ERR_CONN_CLOSED:
    return "connection closed";
  case UVQ_H3_ERR_MALFORMED:
    return "malformed message";
  case UVQ_H3_ERR_SHUTDOWN:
    return "connection shutting down";
  case UVQ_H3_ERR_PROVIDER:
    return "body provider failed";
  case UVQ_H3_ERR_ALREADY_RESPONDED:
    return "already responded";
  default:
    return uvq_strerror(err);
  }
}

/* ------------------------------------------------------------------------ */
/* nghttp3's allocator                                                      */
/* ------------------------------------------------------------------------ */

static void *nmem_malloc(size_t size, void *ud) { return uvq_malloc(ud, size); }
static void nmem_free(void *ptr, void *ud) { uvq_free(ud, ptr); }
static void *nmem_calloc(size_t nmemb, size_t size, void *ud) {
  return uvq_calloc(ud, nmemb, size);
}
static void *nmem_realloc(void *ptr, size_t size, void *ud) {
  return uvq_realloc(ud, ptr, size);
}

static void nmem_init(nghttp3_mem *n, const uvq_mem *mem) {
  n->user_data = (void *)(uintptr_t)mem;
  n->malloc = nmem_malloc;
  n->free = nmem_free;
  n->calloc = nmem_calloc;
  n->realloc = nmem_realloc;
}

/* ------------------------------------------------------------------------ */
/* Exchanges                                                                */
/* ------------------------------------------------------------------------ */

uvq_h3_stream *uvq_h3_stream_new(uvq_h3_conn *h, int64_t id) {
  uvq_h3_stream *st = uvq_calloc(h->mem, 1, sizeof(*st));
  if (st == NULL) {
    return NULL;
  }
  st->h = h;
  st->id = id;
  st->server = h->server;
  st->max_section = h->max_section;
  st->next = h->streams;
  if (h->streams) {
    h->streams->prev = st;
  }
  h->streams = st;
  return st;
}

/* Drops one reference to a provider chunk (the uvq_stream_write_ref
 * free_cb too: the core's references end here). */
static void chunk_unref(void *ptr, void *ud) {
  h3_chunk *c = ud;
  (void)ptr;
  if (--c->refs == 0) {
    uvq_buf_put(c);
  }
}

/* Drops one reference to a BUFFER body (also a write_ref free_cb). */
static void hold_unref(void *ptr, void *ud) {
  h3_hold *b = ud;
  (void)ptr;
  if (--b->refs > 0) {
    return;
  }
  if (b->copy) {
    uvq_free(b->mem, b->copy);
  } else if (b->free_cb) {
    b->free_cb(b->data, b->free_user_data);
  }
  uvq_free(b->mem, b);
}

static void body_release(uvq_h3_conn *h, uvq_h3_stream *st) {
  (void)h;
  while (st->chunk_head) {
    h3_chunk *c = st->chunk_head;
    st->chunk_head = c->next;
    chunk_unref(c->data, c);
  }
  st->chunk_tail = NULL;
  if (st->body_hold) {
    hold_unref(NULL, st->body_hold);
    st->body_hold = NULL;
  } else if (st->body.type == UVQ_H3_BODY_BUFFER && st->body.free_cb) {
    st->body.free_cb(st->body.data, st->body.free_user_data);
  }
  memset(&st->body, 0, sizeof(st->body));
}

void uvq_h3_stream_finish(uvq_h3_stream *st, int error, uint64_t app_error) {
  uvq_h3_conn *h = st->h;

  if (st->finished) {
    return;
  }
  st->finished = 1;
  if (st->queued) {
    uvq_h3_client_dequeue(h, st);
  }
  if (st->prev) {
    st->prev->next = st->next;
  } else {
    h->streams = st->next;
  }
  if (st->next) {
    st->next->prev = st->prev;
  }
  if (st->id >= 0 && h->conn && !h->closed) {
    (void)uvq_stream_set_user_data(h->conn, st->id, NULL);
  }
  if (error == 0) {
    h->stats.requests_completed++;
  } else if (error == UVQ_H3_ERR_REJECTED) {
    h->stats.requests_rejected++;
  } else if (error == UVQ_H3_ERR_RESET || error == UVQ_H3_ERR_CANCELLED ||
             error == UVQ_H3_ERR_MALFORMED) {
    h->stats.streams_reset++;
  }
  body_release(h, st);
  if (st->server) {
    uvq_h3_gate_drop(h, st);
    if (st->request_seen && h->srv->cfg.on_stream_close) {
      h->srv->cfg.on_stream_close(st, error, app_error, h->srv->cfg.user_data);
    }
  } else if (st->cb.on_complete) {
    st->cb.on_complete(st, error, app_error, st->user_data);
  }
  uvq_h3_nvlist_free(h->mem, &st->req);
  uvq_h3_nvlist_free(h->mem, &st->trailers);
  uvq_h3_hdrs_free(h->mem, &st->rx);
  uvq_free(h->mem, st);
}

/* Outcome of an exchange whose QUIC stream closed with |app_error|. */
static void stream_outcome(uvq_h3_stream *st, uint64_t app_error, int *perr,
                           uint64_t *pcode) {
  *pcode = 0;
  if (st->cancelled) {
    *perr = UVQ_H3_ERR_CANCELLED;
    *pcode = UVQ_H3_REQUEST_CANCELLED;
  } else if (st->rejected || (st->peer_reset &&
                              st->peer_reset_code == UVQ_H3_REQUEST_REJECTED)) {
    *perr = UVQ_H3_ERR_REJECTED;
    *pcode = UVQ_H3_REQUEST_REJECTED;
  } else if (st->malformed) {
    *perr = UVQ_H3_ERR_MALFORMED;
    *pcode = UVQ_H3_MESSAGE_ERROR;
  } else if (st->provider_failed) {
    *perr = UVQ_H3_ERR_PROVIDER;
    *pcode = UVQ_H3_INTERNAL_ERROR;
  } else if (st->peer_reset) {
    *perr = UVQ_H3_ERR_RESET;
    *pcode = st->peer_reset_code;
  } else if (st->local_reset) {
    *perr = UVQ_H3_ERR_RESET;
    *pcode = st->local_reset_code;
  } else if (app_error != 0 && app_error != UVQ_H3_NO_ERROR) {
    /* The peer's STOP_SENDING (the transport reset our side in answer). */
    *perr = app_error == UVQ_H3_REQUEST_REJECTED ? UVQ_H3_ERR_REJECTED
                                                 : UVQ_H3_ERR_RESET;
    *pcode = app_error;
  } else if (st->server ? st->responded : (st->recv_done && st->got_response)) {
    /* A STOP_SENDING with H3_NO_ERROR lands here too: a complete response
     * is a success whatever became of the rest of the request (RFC 9114
     * §4.1.2). */
    *perr = 0;
  } else {
    *perr = UVQ_H3_ERR_RESET;
    *pcode = app_error;
  }
}

void uvq_h3_stream_abort(uvq_h3_stream *st, uint64_t code) {
  uvq_h3_conn *h = st->h;
  if (st->id < 0 || h->conn == NULL || h->closed) {
    return;
  }
  st->local_reset = 1;
  st->local_reset_code = code;
  (void)uvq_stream_stop_sending(h->conn, st->id, code);
  (void)uvq_stream_reset(h->conn, st->id, code);
  st->reset_pending = 1;
  if (st->server) {
    uvq_h3_gate_drop(h, st);
  }
}

/* ------------------------------------------------------------------------ */
/* Writing: nghttp3 -> core                                                 */
/* ------------------------------------------------------------------------ */

void uvq_h3_conn_fail(uvq_h3_conn *h, uint64_t code, const char *why) {
  if (h->conn && !h->close_sent && !h->closed) {
    h->close_sent = 1;
    (void)uvq_conn_close(h->conn, code, why);
  }
}

/* Hands one vector nghttp3 produced to the core: body bytes (a provider
 * chunk's, a BUFFER body's) by reference, each reference holding the
 * memory until the core releases it; frame headers, QPACK and control data
 * (nghttp3's own buffers, which it reuses once told they are
 * acknowledged) and short provider reads by copy. */
static ssize_t h3_write_vec(uvq_h3_conn *h, int64_t sid, const uint8_t *p,
                            size_t len, int fin) {
  uvq_h3_stream *st = len ? uvq_stream_get_user_data(h->conn, sid) : NULL;
  ssize_t w;
  if (st) {
    for (h3_chunk *c = st->chunk_head; c; c = c->next) {
      if (p >= c->data && p + len <= c->data + c->len) {
        if (c->len < UVQ_H3_PROVIDER_COPY_BELOW) {
          /* A short read, copied; released as soon as nghttp3 hears it was
           * taken (h3_write). */
          return uvq_stream_write(h->conn, sid, p, len, fin);
        }
        w = uvq_stream_write_ref(h->conn, sid, p, len, fin, chunk_unref, c);
        if (w > 0) {
          c->refs++;
        }
        return w;
      }
    }
    if (st->body_hold && p >= st->body_hold->data &&
        p + len <= st->body_hold->data + st->body_hold->len) {
      w = uvq_stream_write_ref(h->conn, sid, p, len, fin, hold_unref,
                               st->body_hold);
      if (w > 0) {
        st->body_hold->refs++;
      }
      return w;
    }
  }
  w = uvq_stream_write(h->conn, sid, p, len, fin);
  if (st && w > 0) {
    st->framing += (uint64_t)w;
  }
  return w;
}

static size_t h3_may_read(uvq_h3_conn *h, uvq_h3_stream *st, int64_t sid);

/* Moves everything nghttp3 has to send into the core's stream buffers. The
 * core keeps a copy or a reference until the peer acknowledges it, so
 * nghttp3 is told the bytes are acknowledged as soon as the core took
 * them. */
static void h3_write(uvq_h3_conn *h) {
  for (;;) {
    nghttp3_vec vec[16];
    int64_t sid = -1;
    int fin = 0, shortw = 0;
    size_t written = 0;
    nghttp3_ssize nvec;
    int rv;

    if (h->closed || h->close_sent) {
      return;
    }
    h->depth++;
    nvec = nghttp3_conn_writev_stream(h->h3, &sid, &fin, vec, 16);
    h->depth--;
    if (nvec < 0) {
      uvq_h3_conn_fail(h, nghttp3_err_infer_quic_app_error_code((int)nvec),
                       "nghttp3 writev");
      return;
    }
    if (sid < 0) {
      return;
    }
    for (nghttp3_ssize i = 0; i < nvec; i++) {
      int last = i == nvec - 1;
      ssize_t w = h3_write_vec(h, sid, vec[i].base, vec[i].len, fin && last);
      if (w < 0) {
        if (w == UVQ_ERR_CLOSED) {
          return;
        }
        /* Reset, stopped by the peer, or gone: nghttp3 must stop offering
         * it. */
        nghttp3_conn_shutdown_stream_write(h->h3, sid);
        written = 0;
        shortw = -1;
        break;
      }
      written += (size_t)w;
      if ((size_t)w < vec[i].len) {
        shortw = 1;
        break;
      }
    }
    if (shortw < 0) {
      continue;
    }
    if (nvec == 0 && fin) {
      ssize_t w = uvq_stream_write(h->conn, sid, NULL, 0, 1);
      if (w < 0) {
        if (w == UVQ_ERR_CLOSED) {
          return;
        }
        nghttp3_conn_shutdown_stream_write(h->h3, sid);
        continue;
      }
    }
    h->depth++;
    rv = nghttp3_conn_add_write_offset(h->h3, sid, written);
    if (rv == 0 && written) {
      rv = nghttp3_conn_add_ack_offset(h->h3, sid, written);
    }
    h->depth--;
    if (rv != 0) {
      uvq_h3_conn_fail(h, nghttp3_err_infer_quic_app_error_code(rv),
                       "nghttp3 offsets");
      return;
    }
    if (shortw) {
      /* The send buffer is full: on_stream_writable unblocks it. */
      nghttp3_conn_block_stream(h->h3, sid);
    } else {
      /* A provider held back for room nghttp3 had already filled may
       * read again now that the core took it. */
      uvq_h3_stream *st = uvq_stream_get_user_data(h->conn, sid);
      if (st && st->room_blocked && h3_may_read(h, st, sid)) {
        st->room_blocked = 0;
        (void)nghttp3_conn_resume_stream(h->h3, sid);
      }
    }
  }
}

/* Per-stream work that had to wait until we were outside nghttp3. */
static void h3_after_stream(uvq_h3_conn *h, uvq_h3_stream *st) {
  int rv;
  if (st->id < 0) {
    return;
  }
  if (st->reset_pending) {
    st->reset_pending = 0;
    nghttp3_conn_shutdown_stream_write(h->h3, st->id);
  }
  if (st->read_stop_pending) {
    st->read_stop_pending = 0;
    /* nghttp3 drops what is still to come; the peer is asked to stop. */
    rv = nghttp3_conn_shutdown_stream_read(h->h3, st->id);
    if (rv != 0) {
      uvq_h3_conn_fail(h, nghttp3_err_infer_quic_app_error_code(rv),
                       "nghttp3 shutdown read");
      return;
    }
    (void)uvq_stream_stop_sending(h->conn, st->id, UVQ_H3_NO_ERROR);
  }
}

/* Submits the GOAWAY max_requests_per_conn asked for, if due. */
static void h3_shutdown_due(uvq_h3_conn *h) {
  if (h->shutdown_pending && !h->closed) {
    h->shutdown_pending = 0;
    uvq_h3_do_shutdown(h);
  }
}

void uvq_h3_after(uvq_h3_conn *h) {
  if (h->depth > 0 || h->closed || h->conn == NULL || h->h3 == NULL) {
    return;
  }
  for (uvq_h3_stream *st = h->streams; st; st = st->next) {
    h3_after_stream(h, st);
  }
  h3_shutdown_due(h);
  if (!h->server) {
    uvq_h3_client_open_queued(h);
  }
  h3_write(h);
  /* Close once the exchanges are over and the peer has our GOAWAY (the
   * control stream is fully acknowledged), so it learns why. */
  if (h->shutting_down && h->streams == NULL && h->qhead == NULL &&
      (!h->ready || uvq_stream_get_buffered(h->conn, h->ctrl_id) == 0)) {
    uvq_h3_conn_fail(h, UVQ_H3_NO_ERROR, "");
  }
}

void uvq_h3_client_redo_early(uvq_h3_conn *h) {
  uvq_h3_stream *st, *head = NULL, *tail = NULL;
  int again;

  h->early = 0;
  h->early_rejected = 0;
  uvq_h3_conn_free_nghttp3(h);
  h->ready = 0;
  h->ctrl_id = h->qenc_id = h->qdec_id = -1;
  /* h->streams is newest first and the early requests were opened in
   * queue order: prepending each one restores that order. No callback
   * runs in this pass. */
  for (st = h->streams; st; st = st->next) {
    if (st->queued || st->finished || st->id < 0) {
      continue;
    }
    st->id = -1;
    while (st->chunk_head) {
      h3_chunk *c = st->chunk_head;
      st->chunk_head = c->next;
      chunk_unref(c->data, c);
    }
    st->chunk_tail = NULL;
    st->chunk_acked = 0;
    st->body_off = 0;
    st->read_blocked = 0;
    st->reset_pending = 0;
    st->stop_received = 0;
    st->read_stop_pending = 0;
    st->recv_done = 0;
    st->got_response = 0;
    uvq_h3_hdrs_reset(&st->rx);
    if (st->cancelled || st->local_reset || st->provider_read) {
      if (!st->cancelled && !st->local_reset) {
        st->provider_failed = 1; /* its bytes cannot be asked again */
      }
      st->early_lost = 1;
      continue;
    }
    st->queued = 1;
    st->qnext = head;
    head = st;
    if (tail == NULL) {
      tail = st;
    }
  }
  if (head) {
    tail->qnext = h->qhead;
    h->qhead = head;
    if (h->qtail == NULL) {
      h->qtail = tail;
    }
  }
  /* The ones that cannot be resent complete; their callbacks may change
   * h->streams, so look again from the head each time. */
  do {
    again = 0;
    for (st = h->streams; st; st = st->next) {
      if (st->early_lost) {
        int err;
        uint64_t code;
        st->early_lost = 0;
        stream_outcome(st, 0, &err, &code);
        uvq_h3_stream_finish(st, err, code);
        again = 1;
        break;
      }
    }
  } while (again);
}

void uvq_h3_do_shutdown(uvq_h3_conn *h) {
  int rv;
  if (h->shutting_down) {
    return;
  }
  h->shutting_down = 1;
  h->stats.goaway_sent = 1;
  rv = nghttp3_conn_shutdown(h->h3);
  if (rv != 0) {
    uvq_h3_conn_fail(h, UVQ_H3_NO_ERROR, "shutdown");
  }
  while (h->qhead) {
    uvq_h3_stream_finish(h->qhead, UVQ_H3_ERR_SHUTDOWN, 0);
  }
}

/* ------------------------------------------------------------------------ */
/* nghttp3 callbacks                                                        */
/* ------------------------------------------------------------------------ */

static int cb_acked_stream_data(nghttp3_conn *c, int64_t sid, uint64_t n,
                                void *ud, void *sud) {
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  (void)ud;
  if (st == NULL) {
    return 0;
  }
  /* The list's reference to a provider chunk goes once nghttp3 is done
   * with it (the core may still hold its own). */
  while (n > 0 && st->chunk_head) {
    h3_chunk *ch = st->chunk_head;
    size_t left = ch->len - st->chunk_acked;
    if (n < left) {
      st->chunk_acked += (size_t)n;
      break;
    }
    n -= left;
    st->chunk_head = ch->next;
    if (st->chunk_head == NULL) {
      st->chunk_tail = NULL;
    }
    st->chunk_acked = 0;
    chunk_unref(ch->data, ch);
  }
  return 0;
}

static int cb_stream_close(nghttp3_conn *c, int64_t sid, uint64_t app_error,
                           void *ud, void *sud) {
  uvq_h3_stream *st = sud;
  int err;
  uint64_t code;
  (void)c;
  (void)ud;
  (void)sid;
  if (st == NULL) {
    return 0;
  }
  stream_outcome(st, app_error, &err, &code);
  uvq_h3_stream_finish(st, err, code);
  return 0;
}

/* Nothing more of the peer's message reaches the application: the
 * exchange is being torn down, or the server stopped reading. */
static int rx_muted(const uvq_h3_stream *st) {
  return st->rejected || st->cancelled || st->local_reset || st->read_stopped;
}

static int cb_recv_data(nghttp3_conn *c, int64_t sid, const uint8_t *data,
                        size_t len, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  if (st == NULL || rx_muted(st)) {
    return 0;
  }
  if (st->server) {
    if (st->request_seen && h->srv->cfg.on_request_body) {
      h->srv->cfg.on_request_body(st, data, len, h->srv->cfg.user_data);
    }
  } else if (st->cb.on_data) {
    st->cb.on_data(st, data, len, st->user_data);
  }
  return 0;
}

static int cb_begin_headers(nghttp3_conn *c, int64_t sid, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)c;
  if (st != NULL) {
    /* Client: a response section (an informational one may come first). */
    if (!h->server) {
      uvq_h3_hdrs_reset(&st->rx);
    }
    return 0;
  }
  return h->server ? uvq_h3_server_begin_request(h, sid) : 0;
}

static int cb_recv_header(nghttp3_conn *c, int64_t sid, int32_t token,
                          nghttp3_rcbuf *name, nghttp3_rcbuf *value,
                          uint8_t flags, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  nghttp3_vec n = nghttp3_rcbuf_get_buf(name);
  nghttp3_vec v = nghttp3_rcbuf_get_buf(value);
  (void)c;
  (void)sid;
  (void)token;
  (void)flags;
  if (st == NULL || rx_muted(st)) {
    return 0;
  }
  if (uvq_h3_hdrs_add(h->mem, &st->rx, n.base, n.len, v.base, v.len,
                      st->max_section) != 0) {
    return NGHTTP3_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int cb_end_headers(nghttp3_conn *c, int64_t sid, int fin, void *ud,
                          void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  int rv;
  (void)c;
  (void)sid;
  (void)fin;
  if (st == NULL || rx_muted(st)) {
    return 0;
  }
  rv = h->server ? uvq_h3_server_end_headers(h, st)
                 : uvq_h3_client_end_headers(h, st);
  return rv == 0 ? 0 : NGHTTP3_ERR_CALLBACK_FAILURE;
}

static int cb_begin_trailers(nghttp3_conn *c, int64_t sid, void *ud,
                             void *sud) {
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  (void)ud;
  if (st) {
    uvq_h3_hdrs_reset(&st->rx);
  }
  return 0;
}

static int cb_end_trailers(nghttp3_conn *c, int64_t sid, int fin, void *ud,
                           void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  uvq_h3_header *view;
  (void)c;
  (void)sid;
  (void)fin;
  if (st == NULL || rx_muted(st) || st->rx.too_large) {
    return 0;
  }
  view = uvq_h3_hdrs_view(h->mem, &st->rx);
  if (view == NULL) {
    return NGHTTP3_ERR_CALLBACK_FAILURE;
  }
  if (st->server) {
    if (st->request_seen && h->srv->cfg.on_request_trailers) {
      h->srv->cfg.on_request_trailers(st, view, st->rx.n,
                                      h->srv->cfg.user_data);
    }
  } else if (st->cb.on_trailers) {
    st->cb.on_trailers(st, view, st->rx.n, st->user_data);
  }
  uvq_free(h->mem, view);
  uvq_h3_hdrs_free(h->mem, &st->rx);
  return 0;
}

/* A server request stream nghttp3 reports on before it has our user data
 * (its first frame: begin_headers sets it): the core's has it. */
static uvq_h3_stream *h3_sud(uvq_h3_conn *h, int64_t sid, void *sud) {
  if (sud == NULL && h->server && (sid & 0x3) == 0) {
    return uvq_stream_get_user_data(h->conn, sid);
  }
  return sud;
}

static int cb_stop_sending(nghttp3_conn *c, int64_t sid, uint64_t code,
                           void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = h3_sud(h, sid, sud);
  (void)c;
  if (st && code == UVQ_H3_MESSAGE_ERROR) {
    st->malformed = 1;
  }
  (void)uvq_stream_stop_sending(h->conn, sid, code);
  return 0;
}

static int cb_reset_stream(nghttp3_conn *c, int64_t sid, uint64_t code,
                           void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = h3_sud(h, sid, sud);
  (void)c;
  if (st) {
    if (code == UVQ_H3_MESSAGE_ERROR) {
      st->malformed = 1;
    } else if (code == UVQ_H3_REQUEST_REJECTED) {
      st->rejected = 1;
    }
    if (!st->local_reset) {
      st->local_reset = 1;
      st->local_reset_code = code;
    }
    if (st->server) {
      uvq_h3_gate_drop(h, st);
    }
  }
  (void)uvq_stream_reset(h->conn, sid, code);
  return 0;
}

static int cb_end_stream(nghttp3_conn *c, int64_t sid, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  if (st == NULL) {
    return 0;
  }
  st->recv_done = 1;
  if (st->server && st->request_seen && !rx_muted(st) &&
      h->srv->cfg.on_request_end) {
    h->srv->cfg.on_request_end(st, h->srv->cfg.user_data);
  }
  return 0;
}

static int cb_shutdown(nghttp3_conn *c, int64_t id, void *ud) {
  uvq_h3_conn *h = ud;
  (void)c;
  h->goaway_received = 1;
  h->goaway_rx_id = id;
  h->stats.goaway_received = 1;
  if (!h->server) {
    uvq_h3_client_on_goaway(h, id);
  }
  return 0;
}

/* Bytes of |st|'s provider chunks that nghttp3 holds and the core has not
 * taken yet (only the list's reference). */
static size_t h3_unhanded(const uvq_h3_stream *st) {
  size_t n = 0;
  for (const h3_chunk *c = st->chunk_head; c; c = c->next) {
    if (c->refs == 1) {
      n += c->len;
    }
  }
  return n;
}

/* How much of |st|'s provider may be read now (at most one chunk): nghttp3
 * would pull chunk after chunk in one call, so what it already holds
 * counts against the room the core has (the peer's credit, the budget),
 * and a read never asks for more than the rest, so nothing is read that
 * the peer cannot take. Asking for room when there is none makes the core
 * call on_stream_writable later. */
static size_t h3_may_read(uvq_h3_conn *h, uvq_h3_stream *st, int64_t sid) {
  size_t pending = h3_unhanded(st);
  size_t room = uvq_stream_get_send_room(h->conn, sid);
  size_t n = room > pending ? room - pending : 0;
  /* Leave room for the DATA frame's header (type and length: at most 9
   * bytes), so the core takes the whole read at once: a read left mostly
   * handed but for a few bytes would hold its buffer alongside the core's
   * copy. A smaller room is read as it is (a few bytes, a small buffer):
   * returning 0 would wait for a wakeup nobody asked for. */
  if (n > UVQ_H3_DATA_HEADER_MAX) {
    n -= UVQ_H3_DATA_HEADER_MAX;
  }
  return n < UVQ_H3_PROVIDER_CHUNK ? n : UVQ_H3_PROVIDER_CHUNK;
}

static nghttp3_ssize cb_read_data(nghttp3_conn *c, int64_t sid,
                                  nghttp3_vec *vec, size_t veccnt,
                                  uint32_t *pflags, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  int eof = 0;
  nghttp3_ssize nv = 0;
  (void)veccnt;

  if (st == NULL) {
    *pflags |= NGHTTP3_DATA_FLAG_EOF;
    return 0;
  }
  switch (st->body.type) {
  case UVQ_H3_BODY_BUFFER: {
    size_t left = st->body.len - st->body_off;
    size_t n = left < UVQ_H3_BUFFER_CHUNK ? left : UVQ_H3_BUFFER_CHUNK;
    if (n) {
      vec[0].base = (uint8_t *)(uintptr_t)st->body.data + st->body_off;
      vec[0].len = n;
      st->body_off += n;
      nv = 1;
    }
    eof = st->body_off == st->body.len;
    break;
  }
  case UVQ_H3_BODY_PROVIDER: {
    uvq_endpoint *ep = uvq_conn_get_endpoint(h->conn);
    h3_chunk *ch;
    size_t want;
    ssize_t r;
    if (st->read_blocked || st->provider_failed || st->stop_received) {
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    /* Read no further than the core can take: a chunk nghttp3 holds that
     * the core has not taken yet, or a stream with no room (the peer's
     * credit is spent, or the budget), waits for on_stream_writable. */
    want = h3_may_read(h, st, sid);
    if (want == 0) {
      st->room_blocked = 1;
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    /* A read at the credit's edge takes a buffer its size, not a bulk
     * one: 100 streams each holding a few bytes in 64 KiB would hold
     * 6.5 MB that no budget counts. */
    ch = uvq_buf_get(ep, sizeof(*ch) + want);
    if (ch == NULL) {
      return NGHTTP3_ERR_CALLBACK_FAILURE;
    }
    r = st->body.read(st, ch->data, want, &eof, st->body.read_user_data);
    if (r == UVQ_H3_READ_WOULDBLOCK || (r == 0 && !eof)) {
      uvq_buf_put(ch);
      st->read_blocked = 1;
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    if (r < 0 || (size_t)r > want) {
      uvq_buf_put(ch);
      st->provider_failed = 1;
      uvq_h3_stream_abort(st, UVQ_H3_INTERNAL_ERROR);
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    st->provider_read = 1;
    if (r == 0) {
      uvq_buf_put(ch);
      break;
    }
    ch->len = (size_t)r;
    ch->refs = 1;
    ch->next = NULL;
    if (st->chunk_tail) {
      st->chunk_tail->next = ch;
    } else {
      st->chunk_head = ch;
    }
    st->chunk_tail = ch;
    vec[0].base = ch->data;
    vec[0].len = ch->len;
    nv = 1;
    break;
  }
  default:
    eof = 1;
    break;
  }
  if (eof) {
    *pflags |= NGHTTP3_DATA_FLAG_EOF;
    if (st->trailers.n) {
      *pflags |= NGHTTP3_DATA_FLAG_NO_END_STREAM;
      if (nghttp3_conn_submit_trailers(c, sid, st->trailers.nv,
                                       st->trailers.n) != 0) {
        return NGHTTP3_ERR_CALLBACK_FAILURE;
      }
    }
  }
  return nv;
}

/* deferred_consume stays NULL: the core returned the credit already. */
static const nghttp3_callbacks h3_callbacks = {
    .acked_stream_data = cb_acked_stream_data,
    .stream_close = cb_stream_close,
    .recv_data = cb_recv_data,
    .begin_headers = cb_begin_headers,
    .recv_header = cb_recv_header,
    .end_headers = cb_end_headers,
    .begin_trailers = cb_begin_trailers,
    .recv_trailer = cb_recv_header,
    .end_trailers = cb_end_trailers,
    .stop_sending = cb_stop_sending,
    .end_stream = cb_end_stream,
    .reset_stream = cb_reset_stream,
    .shutdown = cb_shutdown};

static const nghttp3_data_reader h3_reader = {cb_read_data};

/* ------------------------------------------------------------------------ */
/* Body submission (both sides)                                             */
/* ------------------------------------------------------------------------ */

int uvq_h3_stream_take_body(uvq_h3_stream *st, const uvq_h3_body *body,
                            const uvq_h3_header *trailers, size_t ntrailers,
                            int no_body) {
  uvq_h3_conn *h = st->h;
  h3_hold *b;
  int rv;

  if (body->type == UVQ_H3_BODY_PROVIDER && body->read == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (body->type == UVQ_H3_BODY_BUFFER && body->data == NULL && body->len) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!no_body && ntrailers) {
    rv = uvq_h3_nvlist_build(h->mem, &st->trailers, NULL, 0, trailers,
                             ntrailers);
    if (rv != 0) {
      return rv;
    }
  }
  if (no_body) {
    /* HEAD: the body is released unsent, now. */
    if (body->type == UVQ_H3_BODY_BUFFER && !body->copy && body->free_cb) {
      body->free_cb(body->data, body->free_user_data);
    }
    return 0;
  }
  st->body = *body;
  if (body->type == UVQ_H3_BODY_BUFFER && body->len) {
    b = uvq_calloc(h->mem, 1, sizeof(*b));
    if (b == NULL) {
      goto fail_hold;
    }
    b->refs = 1;
    b->mem = h->mem;
    b->len = body->len;
    if (body->copy) {
      b->copy = uvq_malloc(h->mem, body->len);
      if (b->copy == NULL) {
        goto fail_copy;
      }
      memcpy(b->copy, body->data, body->len);
      b->data = b->copy;
    } else {
      b->data = body->data;
      b->free_cb = body->free_cb;
      b->free_user_data = body->free_user_data;
    }
    st->body_hold = b;
    st->body.data = b->data;
    st->body.free_cb = NULL; /* the hold calls it */
  }
  return 0;

fail_copy:
  uvq_free(h->mem, b);
fail_hold:
  uvq_h3_nvlist_free(h->mem, &st->trailers);
  memset(&st->body, 0, sizeof(st->body));
  return UVQ_ERR_NOMEM;
}

void uvq_h3_stream_drop_body(uvq_h3_stream *st) {
  uvq_h3_conn *h = st->h;
  memset(&st->body, 0, sizeof(st->body));
  if (st->body_hold) {
    /* Nothing was sent: no other reference exists. */
    uvq_free(h->mem, st->body_hold->copy);
    uvq_free(h->mem, st->body_hold);
    st->body_hold = NULL;
  }
  uvq_h3_nvlist_free(h->mem, &st->trailers);
}

const nghttp3_data_reader *uvq_h3_stream_reader(const uvq_h3_stream *st) {
  if (st->body.type != UVQ_H3_BODY_NONE || st->trailers.n) {
    return &h3_reader;
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Connection setup and core callbacks                                      */
/* ------------------------------------------------------------------------ */

int uvq_h3_conn_init(uvq_h3_conn *h, int server, uint64_t max_section,
                     const uvq_mem *nmem_src) {
  nghttp3_settings s;
  int rv;
  nghttp3_settings_default(&s);
  s.max_field_section_size = max_section;
  /* No dynamic table: QPACK never blocks a stream, so nghttp3 never holds
   * back bytes the core has already credited (see h3.md). */
  s.qpack_max_dtable_capacity = 0;
  s.qpack_blocked_streams = 0;
  nmem_init(&h->nmem, nmem_src ? nmem_src : uvq_mem_default());
  if (server) {
    rv = nghttp3_conn_server_new(&h->h3, &h3_callbacks, &s, &h->nmem, h);
  } else {
    rv = nghttp3_conn_client_new(&h->h3, &h3_callbacks, &s, &h->nmem, h);
  }
  return rv == 0 ? 0 : UVQ_ERR_NOMEM;
}

void uvq_h3_conn_free_nghttp3(uvq_h3_conn *h) {
  if (h->h3) {
    nghttp3_conn_del(h->h3);
    h->h3 = NULL;
  }
}

/* Every core callback starts here: it records the connection and, for a
 * client, creates the nghttp3 connection the first time — only then is
 * the endpoint, and so its allocator, known. Returns 0 or UVQ_ERR_NOMEM
 * (the connection is then closed with H3_INTERNAL_ERROR). */
static int h3_enter(uvq_h3_conn *h, uvq_conn *conn) {
  int rv;
  h->conn = conn;
  if (h->h3 != NULL) {
    return 0;
  }
  rv = uvq_h3_conn_init(
      h, h->server, h->max_section,
      h->nmem_src ? h->nmem_src
                  : uvq_endpoint_get_mem(uvq_conn_get_endpoint(conn)));
  if (rv != 0) {
    uvq_h3_conn_fail(h, UVQ_H3_INTERNAL_ERROR, "nghttp3 setup");
  }
  return rv;
}

/* Opens and binds the control and QPACK streams, as soon as the core lets
 * us: the server may get a request (and answer it) in the same packet
 * that completed the handshake, before on_established runs. */
static int h3_ensure_ready(uvq_h3_conn *h) {
  int64_t ctrl, qenc, qdec;
  int rv;

  if (h->ready) {
    return 1;
  }
  rv = uvq_conn_open_stream(h->conn, 0, &ctrl, NULL);
  if (rv == UVQ_ERR_INVALID_STATE) {
    return 0; /* handshake not complete yet */
  }
  if (rv != 0 || uvq_conn_open_stream(h->conn, 0, &qenc, NULL) != 0 ||
      uvq_conn_open_stream(h->conn, 0, &qdec, NULL) != 0) {
    /* RFC 9114 §6.2: a peer must allow at least three uni streams. */
    uvq_h3_conn_fail(h, UVQ_H3_STREAM_CREATION_ERROR, "no uni streams");
    return 0;
  }
  h->ctrl_id = ctrl;
  h->qenc_id = qenc;
  h->qdec_id = qdec;
  rv = nghttp3_conn_bind_control_stream(h->h3, ctrl);
  if (rv == 0) {
    rv = nghttp3_conn_bind_qpack_streams(h->h3, qenc, qdec);
  }
  if (rv != 0) {
    uvq_h3_conn_fail(h, UVQ_H3_INTERNAL_ERROR, "bind");
    return 0;
  }
  h->ready = 1;
  return 1;
}

/* Client: the handshake settled 0-RTT. Accepted: the requests sent early
 * need no resend. Refused: they are queued again on a new nghttp3
 * connection. */
static void h3_settle_early(uvq_h3_conn *h) {
  if (h->server || !h->early) {
    return;
  }
  if (h->early_rejected) {
    uvq_h3_client_redo_early(h);
    return;
  }
  h->early = 0;
  for (uvq_h3_stream *st = h->streams; st; st = st->next) {
    if (!st->queued) {
      uvq_h3_nvlist_free(h->mem, &st->req);
    }
  }
}

static int on_established(uvq_conn *conn, void *ud) {
  uvq_h3_conn *h = ud;

  h3_settle_early(h);
  if (h3_enter(h, conn) != 0 || !h3_ensure_ready(h)) {
    return 0;
  }
  if (!h->server && h->ccfg.on_ready) {
    h->ccfg.on_ready(h, h->ccfg.user_data);
  }
  uvq_h3_after(h);
  return 0;
}

void uvq_h3_conn_feed(uvq_h3_conn *h, int64_t sid, const uint8_t *data,
                      size_t len, int fin) {
  nghttp3_ssize n;

  if (h->close_sent || h->closed || (len == 0 && !fin)) {
    return;
  }
  /* nghttp3 returns how much it consumed outside DATA payloads; the core
   * returns flow-control credit for all |len| bytes when on_stream_data
   * returns, so the count is not needed (see h3.md). */
  h->depth++;
  n = nghttp3_conn_read_stream(h->h3, sid, data, len, fin);
  h->depth--;
  if (n < 0) {
    if (n == NGHTTP3_ERR_MALFORMED_HTTP_HEADER ||
        n == NGHTTP3_ERR_MALFORMED_HTTP_MESSAGING) {
      uvq_h3_stream *st = uvq_stream_get_user_data(h->conn, sid);
      (void)uvq_stream_stop_sending(h->conn, sid, UVQ_H3_MESSAGE_ERROR);
      (void)uvq_stream_reset(h->conn, sid, UVQ_H3_MESSAGE_ERROR);
      if (st) {
        st->malformed = 1;
        if (st->server) {
          uvq_h3_gate_drop(h, st);
        }
      }
    } else {
      uvq_h3_conn_fail(h, nghttp3_err_infer_quic_app_error_code((int)n),
                       nghttp3_strerror((int)n));
    }
  }
}

/* The client opened a stream: a request stream starts its header clock. */
static int on_stream_open(uvq_conn *conn, int64_t sid, void *ud) {
  uvq_h3_conn *h = ud;

  if (h3_enter(h, conn) != 0) {
    return 0;
  }
  if (h->server && (sid & 0x3) == 0 && !h->close_sent && !h->closed) {
    return uvq_h3_server_open_request(h, sid);
  }
  return 0;
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;

  if (h3_enter(h, conn) != 0) {
    return 0;
  }
  if (h->server && !h->ready) {
    (void)h3_ensure_ready(h);
  }
  if (h->server && (sid & 0x3) == 0 && st != NULL) {
    /* A request stream: HEADERS frames reach nghttp3 only whole. */
    uvq_h3_gate_recv(h, st, data, len, fin);
  } else {
    uvq_h3_conn_feed(h, sid, data, len, fin);
  }
  /* A GOAWAY due (max_requests_per_conn reached) must name the next
   * request stream before nghttp3 reads it, so it cannot wait. */
  h3_shutdown_due(h);
  /* What nghttp3 now has to send (and the rest of uvq_h3_after's work)
   * waits for on_write: once per receive batch, not once per packet. */
  return 0;
}

static int on_write(uvq_conn *conn, void *ud) {
  (void)conn;
  uvq_h3_after(ud);
  return 0;
}

static int on_stream_writable(uvq_conn *conn, int64_t sid, void *ud,
                              void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  if (h3_enter(h, conn) != 0) {
    return 0;
  }
  (void)nghttp3_conn_unblock_stream(h->h3, sid);
  if (st && st->room_blocked) {
    st->room_blocked = 0;
    (void)nghttp3_conn_resume_stream(h->h3, sid);
  }
  uvq_h3_after(h);
  return 0;
}

static void on_stream_reset(uvq_conn *conn, int64_t sid, uint64_t code,
                            void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  if (h3_enter(h, conn) != 0) {
    return;
  }
  /* After uvq_h3_stop_request_body the client's RESET_STREAM with
   * H3_NO_ERROR is the expected answer, not a failure. */
  if (st && !(st->read_stopped && code == UVQ_H3_NO_ERROR)) {
    st->peer_reset = 1;
    st->peer_reset_code = code;
  }
  if (st && st->server) {
    uvq_h3_gate_drop(h, st);
  }
  (void)nghttp3_conn_shutdown_stream_read(h->h3, sid);
  uvq_h3_after(h);
}

/* The peer sent STOP_SENDING; the transport has reset our sending side and
 * the stream's close code will carry the peer's code (which decides the
 * outcome). A critical stream must never be stopped (RFC 9114 §6.2.1). On
 * a request stream nghttp3 stops producing at once, so a body provider is
 * not asked again — e.g. a client whose upload the server declined after
 * answering early (§4.1.2). */
static void on_stop_sending(uvq_conn *conn, int64_t sid, uint64_t code,
                            void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)code;
  if (h3_enter(h, conn) != 0) {
    return;
  }
  if (h->ready &&
      (sid == h->ctrl_id || sid == h->qenc_id || sid == h->qdec_id)) {
    uvq_h3_conn_fail(h, UVQ_H3_CLOSED_CRITICAL_STREAM,
                     "critical stream stopped");
    return;
  }
  if (st) {
    st->stop_received = 1;
  }

  nghttp3_conn_shutdown_stream_write(h->h3, sid);
  uvq_h3_after(h);
}

static void on_stream_closed(uvq_conn *conn, int64_t sid, uint64_t app_error,
                             void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st;
  int rv;
  (void)sud;

  if (h3_enter(h, conn) != 0) {
    return;
  }
  if (h->early && !h->server) {
    uvq_conn_info info;
    uvq_conn_get_info(conn, &info);
    if (info.early_data == UVQ_EARLY_DATA_REJECTED) {
      /* The core discards the streams opened as 0-RTT (inside ngtcp2):
       * on_early_data_rejected follows, and queues their requests again
       * on a new nghttp3 connection; this one must not see them close. */
      h->early_rejected = 1;
      return;
    }
  }
  if (h->server && (sid & 0x3) == 0 && !h->closed) {
    /* The core gave the client one more bidi stream. */
    h->max_client_bidi++;
    nghttp3_conn_set_max_client_streams_bidi(h->h3, h->max_client_bidi);
  }
  h->depth++;
  rv = nghttp3_conn_close_stream(h->h3, sid, app_error);
  h->depth--;
  if (rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND) {
    uvq_h3_conn_fail(h, nghttp3_err_infer_quic_app_error_code(rv),
                     nghttp3_strerror(rv));
  }
  /* A stream nghttp3 never knew (e.g. refused before any header). */
  st = uvq_stream_get_user_data(conn, sid);
  if (st && !st->finished) {
    int err;
    uint64_t code;
    stream_outcome(st, app_error, &err, &code);
    uvq_h3_stream_finish(st, err, code);
  }
  uvq_h3_after(h);
}

static int on_stream_acked(uvq_conn *conn, int64_t sid, uint64_t offset,
                           uint64_t len, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  (void)offset;
  (void)len;
  (void)sud;
  if (h3_enter(h, conn) != 0) {
    return 0;
  }
  if (h->shutting_down && h->ready && sid == h->ctrl_id) {
    uvq_h3_after(h);
  }
  return 0;
}

static int on_early_data_rejected(uvq_conn *conn, void *ud) {
  uvq_h3_conn *h = ud;
  h->conn = conn;
  if (!h->server && h->early) {
    h->early_rejected = 1;
    h3_settle_early(h);
  }
  /* on_established follows: it opens the critical streams and sends the
   * requests again. */
  (void)h3_enter(h, conn);
  return 0;
}

static int on_streams_available(uvq_conn *conn, void *ud) {
  uvq_h3_conn *h = ud;
  if (h3_enter(h, conn) != 0) {
    return 0;
  }
  uvq_h3_after(h);
  return 0;
}

static int on_timer(uvq_conn *conn, void *ud) {
  uvq_h3_conn *h = ud;
  if (h3_enter(h, conn) != 0) {
    return 0;
  }
  if (h->server) {
    uvq_h3_server_on_timer(h);
  }
  uvq_h3_after(h);
  return 0;
}

static void on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  uvq_h3_conn *h = ud;
  (void)conn;

  h->closed = 1;
  /* Every exchange still open ends here, queued ones included. */
  while (h->streams) {
    uvq_h3_stream *st = h->streams;
    int err = UVQ_H3_ERR_CONN_CLOSED;
    uint64_t code = ci->code;
    if (st->rejected) {
      err = UVQ_H3_ERR_REJECTED;
      code = UVQ_H3_REQUEST_REJECTED;
    } else if (st->cancelled) {
      err = UVQ_H3_ERR_CANCELLED;
      code = UVQ_H3_REQUEST_CANCELLED;
    }
    uvq_h3_stream_finish(st, err, code);
  }
  uvq_h3_conn_free_nghttp3(h);
  h->conn = NULL;
  if (h->server) {
    uvq_h3_server_conn_closed(h);
    uvq_free(h->mem, h);
    return;
  }
  if (h->ccfg.on_closed) {
    /* Last: it may delete |h|. */
    h->ccfg.on_closed(h, ci, h->ccfg.user_data);
  }
}

const uvq_app_callbacks uvq_h3_app_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_open = on_stream_open,
    .on_stream_data = on_stream_data,
    .on_stream_writable = on_stream_writable,
    .on_stream_acked = on_stream_acked,
    .on_stream_reset = on_stream_reset,
    .on_stop_sending = on_stop_sending,
    .on_stream_closed = on_stream_closed,
    .on_streams_available = on_streams_available,
    .on_closed = on_closed,
    .on_timer = on_timer,
    .on_early_data_rejected = on_early_data_rejected,
    .on_write = on_write,
};

/* ------------------------------------------------------------------------ */
/* Public API, both sides                                                   */
/* ------------------------------------------------------------------------ */

int uvq_h3_shutdown(uvq_h3_conn *h) {
  if (h == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (h->closed || h->shutting_down) {
    return 0;
  }
  if (h->depth > 0 || h->conn == NULL || h->h3 == NULL) {
    h->shutdown_pending = 1;
    if (h->conn == NULL) {
      /* Not connected yet: fail the queue at once. */
      while (h->qhead) {
        uvq_h3_stream_finish(h->qhead, UVQ_H3_ERR_SHUTDOWN, 0);
      }
    }
    return 0;
  }
  uvq_h3_do_shutdown(h);
  uvq_h3_after(h);
  return 0;
}

int uvq_h3_conn_start(uvq_h3_conn *h, uvq_conn *conn) {
  if (h == NULL || conn == NULL || h->server) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (h->conn != NULL && h->conn != conn) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (h->closed || h->close_sent) {
    return UVQ_ERR_CLOSED;
  }
  if (h3_enter(h, conn) != 0) {
    return UVQ_ERR_NOMEM;
  }
  if (!h->ready && uvq_conn_get_stage(conn) == UVQ_STAGE_HANDSHAKE) {
    /* Set first: the requests opened now keep what a resend needs. */
    h->early = 1;
    if (!h3_ensure_ready(h)) {
      h->early = 0; /* no 0-RTT: requests wait for the handshake */
      return h->close_sent ? UVQ_ERR_CLOSED : 0;
    }
  }
  uvq_h3_after(h);
  return 0;
}

int uvq_h3_resume(uvq_h3_stream *st) {
  uvq_h3_conn *h;
  if (st == NULL || st->finished || st->id < 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  h = st->h;
  if (!st->read_blocked) {
    return 0;
  }
  st->read_blocked = 0;
  if (st->stop_received) {
    return 0; /* the peer wants no more of this body */
  }
  /* Only reschedules the stream; the provider is asked at the next write
   * (at once if we are not inside nghttp3). */
  (void)nghttp3_conn_resume_stream(h->h3, st->id);
  uvq_h3_after(h);
  return 0;
}

int uvq_h3_stream_set_priority(uvq_h3_stream *st, uint32_t urgency,
                               int incremental) {
  int rv;
  if (st == NULL || urgency > 7) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (st->finished || st->id < 0 || st->h->closed) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (st->h->server) {
    nghttp3_pri pri;
    memset(&pri, 0, sizeof(pri));
    pri.urgency = urgency;
    pri.inc = incremental ? 1 : 0;
    rv = nghttp3_conn_set_server_stream_priority(st->h->h3, st->id, &pri);
  } else {
    /* The client sends the RFC 9218 field value in PRIORITY_UPDATE. */
    char field[8];
    int n = snprintf(field, sizeof(field), incremental ? "u=%u, i" : "u=%u",
                     urgency);
    rv = nghttp3_conn_set_client_stream_priority(
        st->h->h3, st->id, (const uint8_t *)field, (size_t)n);
  }
  if (rv == NGHTTP3_ERR_NOMEM) {
    return UVQ_ERR_NOMEM;
  }
  if (rv != 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  uvq_h3_after(st->h);
  return 0;
}

uvq_conn *uvq_h3_conn_get_conn(uvq_h3_conn *h) { return h->conn; }
uvq_h3_conn *uvq_h3_stream_get_conn(uvq_h3_stream *st) { return st->h; }
int64_t uvq_h3_stream_get_id(uvq_h3_stream *st) { return st->id; }
void uvq_h3_stream_set_user_data(uvq_h3_stream *st, void *ud) {
  st->user_data = ud;
}
void *uvq_h3_stream_get_user_data(uvq_h3_stream *st) { return st->user_data; }

uint64_t uvq_h3_stream_get_acked(uvq_h3_stream *st, int *pcomplete) {
  uvq_h3_conn *h = st->h;
  uint64_t acked = 0;
  int fin = 0;

  if (st->id >= 0 && h->conn != NULL) {
    acked = uvq_stream_get_acked(h->conn, st->id, &fin);
  }
  if (pcomplete != NULL) {
    *pcomplete = fin;
  }
  return acked > st->framing ? acked - st->framing : 0;
}

void uvq_h3_conn_get_stats(uvq_h3_conn *h, uvq_h3_conn_stats *out) {
  *out = h->stats;
}
