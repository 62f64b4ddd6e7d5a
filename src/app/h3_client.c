/* HTTP/3 client: one uvq_h3_conn per QUIC connection, the queue of
 * requests waiting for a stream, submit, cancel, responses and GOAWAY.
 * See h3.h and docs/internals/h3.md. */
#include "app/h3.h"

#include <stdio.h>
#include <string.h>

#include "core/mem.h"

void uvq_h3_client_config_default(uvq_h3_client_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_H3_CLIENT_CONFIG_VERSION;
  cfg->max_field_section_size = 64 * 1024;
}

void uvq_h3_request_init(uvq_h3_request *req) {
  memset(req, 0, sizeof(*req));
  req->urgency = UVQ_H3_URGENCY_DEFAULT;
}

const uvq_app_callbacks *uvq_h3_callbacks(void) {
  return &uvq_h3_app_callbacks;
}

int uvq_h3_conn_client_new(uvq_h3_conn **ph3, const uvq_h3_client_config *cfg) {
  const uvq_mem *mem;
  uvq_h3_conn *h;
  if (ph3 == NULL || cfg == NULL || cfg->version < 1 ||
      cfg->version > UVQ_H3_CLIENT_CONFIG_VERSION) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  mem = cfg->mem ? cfg->mem : uvq_mem_default();
  h = uvq_calloc(mem, 1, sizeof(*h));
  if (h == NULL) {
    return UVQ_ERR_NOMEM;
  }
  h->mem = mem;
  /* nghttp3 is created when the connection first reports (h3_enter), with
   * the endpoint's allocator unless the config gives one. */
  h->nmem_src = cfg->mem;
  h->ccfg = *cfg;
  h->max_section = cfg->max_field_section_size;
  h->max_bidi_seen = -1;
  *ph3 = h;
  return 0;
}

void uvq_h3_conn_del(uvq_h3_conn *h) {
  if (h == NULL || h->server) {
    return;
  }
  while (h->streams) {
    /* Never started: nothing fires for them any more. */
    uvq_h3_stream *st = h->streams;
    st->cb.on_complete = NULL;
    uvq_h3_stream_finish(st, UVQ_H3_ERR_CONN_CLOSED, 0);
  }
  uvq_h3_conn_free_nghttp3(h);
  uvq_free(h->mem, h);
}

void uvq_h3_client_dequeue(uvq_h3_conn *h, uvq_h3_stream *st) {
  uvq_h3_stream **pp = &h->qhead, *prev = NULL;
  while (*pp && *pp != st) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (*pp) {
    *pp = st->qnext;
    if (h->qtail == st) {
      h->qtail = prev;
    }
  }
  st->qnext = NULL;
  st->queued = 0;
}

void uvq_h3_client_open_queued(uvq_h3_conn *h) {
  while (h->qhead && h->ready && !h->close_sent && !h->closed) {
    uvq_h3_stream *st = h->qhead;
    int64_t sid;
    int rv = uvq_conn_open_stream(h->conn, 1, &sid, st);
    if (rv == UVQ_ERR_STREAM_LIMIT) {
      return; /* on_streams_available brings us back */
    }
    uvq_h3_client_dequeue(h, st);
    if (rv != 0) {
      uvq_h3_stream_finish(st, rv, 0);
      continue;
    }
    st->id = sid;
    rv = nghttp3_conn_submit_request(h->h3, sid, st->req.nv, st->req.n,
                                     uvq_h3_stream_reader(st), st);
    if (!h->early) {
      /* nghttp3 copied it; sent as 0-RTT, it is kept to resend it. */
      uvq_h3_nvlist_free(h->mem, &st->req);
    }
    if (rv != 0) {
      /* GOAWAY arrived (CONN_CLOSING) or no memory: give the id back. */
      st->rejected = rv == NGHTTP3_ERR_CONN_CLOSING;
      uvq_h3_stream_abort(st, UVQ_H3_REQUEST_CANCELLED);
      if (!st->rejected) {
        st->local_reset_code = UVQ_H3_INTERNAL_ERROR;
      }
    }
  }
}

int uvq_h3_submit(uvq_h3_conn *h, const uvq_h3_request *req,
                  uvq_h3_stream **pst) {
  uvq_h3_header pre[5];
  size_t npre = 0;
  char prio[16];
  uvq_h3_stream *st;
  int rv;

  if (h == NULL || req == NULL || h->server || req->urgency > 7) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!req->raw_headers &&
      (req->method == NULL || req->scheme == NULL || req->path == NULL)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (h->closed || h->close_sent) {
    return UVQ_ERR_CLOSED;
  }
  if (h->shutting_down || h->goaway_received) {
    return UVQ_H3_ERR_SHUTDOWN;
  }
  if (!req->raw_headers) {
    pre[npre++] = uvq_h3_mkhdr(":method", req->method);
    pre[npre++] = uvq_h3_mkhdr(":scheme", req->scheme);
    if (req->authority) {
      pre[npre++] = uvq_h3_mkhdr(":authority", req->authority);
    }
    pre[npre++] = uvq_h3_mkhdr(":path", req->path);
    if (req->urgency != UVQ_H3_URGENCY_DEFAULT || req->incremental) {
      if (req->incremental) {
        snprintf(prio, sizeof(prio), "u=%u, i", req->urgency);
      } else {
        snprintf(prio, sizeof(prio), "u=%u", req->urgency);
      }
      pre[npre++] = uvq_h3_mkhdr("priority", prio);
    }
  }
  st = uvq_h3_stream_new(h, -1);
  if (st == NULL) {
    return UVQ_ERR_NOMEM;
  }
  st->cb = req->cb;
  st->user_data = req->user_data;
  rv = uvq_h3_nvlist_build(h->mem, &st->req, pre, npre, req->headers,
                           req->nheaders);
  if (rv == 0) {
    rv = uvq_h3_stream_take_body(st, &req->body, req->trailers, req->ntrailers,
                                 0);
  }
  if (rv != 0) {
    /* No callback for a failed call, and a borrowed body stays the
     * caller's. */
    st->cb.on_complete = NULL;
    uvq_h3_stream_drop_body(st);
    uvq_h3_stream_finish(st, rv, 0);
    return rv;
  }
  st->queued = 1;
  if (h->qtail) {
    h->qtail->qnext = st;
  } else {
    h->qhead = st;
  }
  h->qtail = st;
  h->stats.requests_started++;
  if (pst) {
    *pst = st;
  }
  uvq_h3_after(h);
  return 0;
}

int uvq_h3_cancel(uvq_h3_stream *st) {
  if (st == NULL || st->server || st->finished) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (st->cancelled) {
    return 0;
  }
  st->cancelled = 1;
  if (st->queued) {
    uvq_h3_stream_finish(st, UVQ_H3_ERR_CANCELLED, UVQ_H3_REQUEST_CANCELLED);
    return 0;
  }
  uvq_h3_stream_abort(st, UVQ_H3_REQUEST_CANCELLED);
  uvq_h3_after(st->h);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Responses and GOAWAY                                                     */
/* ------------------------------------------------------------------------ */

static unsigned int parse_status(const h3_hdrs *x) {
  for (size_t i = 0; i < x->n; i++) {
    const h3_field *f = &x->f[i];
    if (f->nlen == 7 && memcmp(x->buf + f->noff, ":status", 7) == 0 &&
        f->vlen == 3) {
      const uint8_t *v = x->buf + f->voff;
      return (unsigned int)((v[0] - '0') * 100 + (v[1] - '0') * 10 +
                            (v[2] - '0'));
    }
  }
  return 0;
}

int uvq_h3_client_end_headers(uvq_h3_conn *h, uvq_h3_stream *st) {
  uvq_h3_header *view;
  unsigned int status = parse_status(&st->rx);

  if (status < 200) {
    /* Informational: nothing to report; the final response follows. */
    uvq_h3_hdrs_reset(&st->rx);
    return 0;
  }
  st->got_response = 1;
  if (st->cb.on_response) {
    view = uvq_h3_hdrs_view(h->mem, &st->rx);
    if (view == NULL) {
      return UVQ_ERR_NOMEM;
    }
    st->cb.on_response(st, status, view, st->rx.n, st->user_data);
    uvq_free(h->mem, view);
  }
  uvq_h3_hdrs_free(h->mem, &st->rx);
  return 0;
}

void uvq_h3_client_on_goaway(uvq_h3_conn *h, int64_t id) {
  /* Requests the server will not process (RFC 9114 §5.2): no use waiting
   * for them; they are safe to retry elsewhere. */
  for (uvq_h3_stream *st = h->streams; st; st = st->next) {
    if (!st->queued && st->id >= id && !st->finished && !st->rejected) {
      st->rejected = 1;
      uvq_h3_stream_abort(st, UVQ_H3_REQUEST_CANCELLED);
    }
  }
  while (h->qhead) {
    uvq_h3_stream_finish(h->qhead, UVQ_H3_ERR_REJECTED,
                         UVQ_H3_REQUEST_REJECTED);
  }
  if (h->ccfg.on_goaway) {
    h->ccfg.on_goaway(h, id, h->ccfg.user_data);
  }
}
