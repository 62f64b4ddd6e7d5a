/* HTTP/3 server and client on nghttp3; see uvquic_h3.h and
 * docs/internals/h3.md. */
#include "app/h3.h"

#include <stdio.h>
#include <string.h>

#include <nghttp3/nghttp3.h>

#include "core/mem.h"

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/* A received header section: bytes in one buffer, fields as offsets. */
typedef struct h3_field {
  size_t noff, nlen, voff, vlen;
} h3_field;

typedef struct h3_hdrs {
  uint8_t *buf;
  size_t len, cap;
  h3_field *f;
  size_t n, fcap;
  uint64_t section_size;
  int too_large;
} h3_hdrs;

/* A provider chunk, kept until nghttp3 reports it acknowledged (which we
 * do as soon as the core has copied it). */
typedef struct h3_chunk {
  struct h3_chunk *next;
  size_t len;
  uint8_t data[];
} h3_chunk;

/* A header list copied for nghttp3: nv array and bytes in one block. */
typedef struct h3_nvlist {
  nghttp3_nv *nv;
  size_t n;
} h3_nvlist;

struct uvq_h3_stream {
  uvq_h3_conn *h;
  uvq_h3_stream *prev, *next; /* h->streams */
  uvq_h3_stream *qnext;       /* client: waiting for a stream id */
  int64_t id;
  int server;
  void *user_data;
  uvq_h3_request_callbacks cb;

  /* Client: the request while it waits in the queue. */
  h3_nvlist req;
  int queued;

  /* Outgoing body and trailers. */
  uvq_h3_body body;
  uint8_t *body_copy;
  size_t body_off;
  h3_chunk *chunk_head, *chunk_tail;
  size_t chunk_acked; /* bytes of chunk_head already acknowledged */
  h3_nvlist trailers;
  int read_blocked;
  int provider_failed;
  int reset_pending; /* reset + shutdown write once out of nghttp3 */

  /* Incoming. */
  h3_hdrs rx;
  uint64_t max_section;
  int head;            /* server: a HEAD request */
  int request_seen;    /* server: on_request ran */
  int responded;
  int recv_done;       /* end_stream */
  int got_response;    /* client: final response headers */

  /* Outcome. */
  int cancelled;
  int rejected;
  int malformed;
  int local_reset;
  uint64_t local_reset_code;
  int peer_reset;
  uint64_t peer_reset_code;
  int finished;
};

struct uvq_h3_server {
  uvq_h3_server_config cfg;
  const uvq_mem *mem;
  uvq_h3_conn *conns;
};

struct uvq_h3_conn {
  const uvq_mem *mem;
  nghttp3_mem nmem;
  nghttp3_conn *h3;
  uvq_conn *conn;
  int server;
  uvq_h3_server *srv;
  uvq_h3_conn *sprev, *snext; /* srv->conns */
  uvq_h3_client_config ccfg;
  uint64_t max_section;

  uvq_h3_stream *streams;
  uvq_h3_stream *qhead, *qtail;
  int depth; /* > 0 while inside nghttp3 */
  int ready; /* critical streams bound */
  int64_t ctrl_id;
  int shutdown_pending;
  int shutting_down;
  int goaway_received;
  int64_t goaway_rx_id;
  int64_t max_bidi_seen;
  int close_sent;
  int closed;
  uint64_t nrequests;
  uint64_t max_client_bidi;
  uvq_tstamp deadline;
  uvq_h3_conn_stats stats;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

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

static void *nmem_malloc(size_t size, void *ud) {
  return uvq_malloc(ud, size);
}
static void nmem_free(void *ptr, void *ud) { uvq_free(ud, ptr); }
static void *nmem_calloc(size_t nmemb, size_t size, void *ud) {
  return uvq_calloc(ud, nmemb, size);
}
static void *nmem_realloc(void *ptr, size_t size, void *ud) {
  return uvq_realloc(ud, ptr, size);
}

static void nmem_init(nghttp3_mem *n, const uvq_mem *mem) {
  n->user_data = (void *)mem;
  n->malloc = nmem_malloc;
  n->free = nmem_free;
  n->calloc = nmem_calloc;
  n->realloc = nmem_realloc;
}

static void hdrs_free(const uvq_mem *mem, h3_hdrs *x) {
  uvq_free(mem, x->buf);
  uvq_free(mem, x->f);
  memset(x, 0, sizeof(*x));
}

static void hdrs_reset(h3_hdrs *x) {
  x->len = 0;
  x->n = 0;
  x->section_size = 0;
  x->too_large = 0;
}

static int hdrs_add(const uvq_mem *mem, h3_hdrs *x, const uint8_t *name,
                    size_t nlen, const uint8_t *value, size_t vlen,
                    uint64_t limit) {
  x->section_size += nlen + vlen + UVQ_H3_FIELD_OVERHEAD;
  if (x->section_size > limit) {
    x->too_large = 1;
  }
  if (x->too_large) {
    return 0;
  }
  if (x->len + nlen + vlen > x->cap) {
    size_t cap = x->cap ? x->cap : 256;
    uint8_t *nb;
    while (cap < x->len + nlen + vlen) {
      cap *= 2;
    }
    nb = uvq_realloc(mem, x->buf, cap);
    if (nb == NULL) {
      return UVQ_ERR_NOMEM;
    }
    x->buf = nb;
    x->cap = cap;
  }
  if (x->n == x->fcap) {
    size_t fcap = x->fcap ? x->fcap * 2 : 16;
    h3_field *nf = uvq_realloc(mem, x->f, fcap * sizeof(*nf));
    if (nf == NULL) {
      return UVQ_ERR_NOMEM;
    }
    x->f = nf;
    x->fcap = fcap;
  }
  x->f[x->n].noff = x->len;
  x->f[x->n].nlen = nlen;
  memcpy(x->buf + x->len, name, nlen);
  x->len += nlen;
  x->f[x->n].voff = x->len;
  x->f[x->n].vlen = vlen;
  if (vlen) {
    memcpy(x->buf + x->len, value, vlen);
  }
  x->len += vlen;
  x->n++;
  return 0;
}

/* Builds the lent uvq_h3_header view of |x| (caller frees). */
static uvq_h3_header *hdrs_view(const uvq_mem *mem, const h3_hdrs *x) {
  uvq_h3_header *v = uvq_malloc(mem, (x->n ? x->n : 1) * sizeof(*v));
  if (v == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < x->n; i++) {
    v[i].name = (const char *)x->buf + x->f[i].noff;
    v[i].namelen = x->f[i].nlen;
    v[i].value = (const char *)x->buf + x->f[i].voff;
    v[i].valuelen = x->f[i].vlen;
  }
  return v;
}

static int name_is(const uvq_h3_header *h, const char *name) {
  size_t n = strlen(name);
  return h->namelen == n && memcmp(h->name, name, n) == 0;
}

/* Copies |n| fields plus |extra| preset ones (already in |pre|) into one
 * allocation that nghttp3 can read later. */
static int nvlist_build(const uvq_mem *mem, h3_nvlist *out,
                        const uvq_h3_header *pre, size_t npre,
                        const uvq_h3_header *hdrs, size_t n) {
  size_t total = (npre + n) * sizeof(nghttp3_nv), i;
  uint8_t *p;
  nghttp3_nv *nv;

  for (i = 0; i < npre; i++) {
    total += pre[i].namelen + pre[i].valuelen + 2;
  }
  for (i = 0; i < n; i++) {
    if ((hdrs[i].name == NULL && hdrs[i].namelen) ||
        (hdrs[i].value == NULL && hdrs[i].valuelen)) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    total += hdrs[i].namelen + hdrs[i].valuelen + 2;
  }
  nv = uvq_malloc(mem, total ? total : 1);
  if (nv == NULL) {
    return UVQ_ERR_NOMEM;
  }
  p = (uint8_t *)(nv + npre + n);
  for (i = 0; i < npre + n; i++) {
    const uvq_h3_header *s = i < npre ? &pre[i] : &hdrs[i - npre];
    nv[i].name = p;
    if (s->namelen) {
      memcpy(p, s->name, s->namelen);
    }
    p[s->namelen] = 0;
    p += s->namelen + 1;
    nv[i].value = p;
    if (s->valuelen) {
      memcpy(p, s->value, s->valuelen);
    }
    p[s->valuelen] = 0;
    p += s->valuelen + 1;
    nv[i].namelen = s->namelen;
    nv[i].valuelen = s->valuelen;
    nv[i].flags = NGHTTP3_NV_FLAG_NONE;
  }
  out->nv = nv;
  out->n = npre + n;
  return 0;
}

static void nvlist_free(const uvq_mem *mem, h3_nvlist *l) {
  uvq_free(mem, l->nv);
  l->nv = NULL;
  l->n = 0;
}

static uvq_h3_header mkhdr(const char *name, const char *value) {
  uvq_h3_header h;
  h.name = name;
  h.namelen = strlen(name);
  h.value = value;
  h.valuelen = strlen(value);
  return h;
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                  */
/* ------------------------------------------------------------------------ */

static uvq_h3_stream *stream_new(uvq_h3_conn *h, int64_t id) {
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

static void body_release(uvq_h3_conn *h, uvq_h3_stream *st) {
  while (st->chunk_head) {
    h3_chunk *c = st->chunk_head;
    st->chunk_head = c->next;
    uvq_free(h->mem, c);
  }
  st->chunk_tail = NULL;
  if (st->body_copy) {
    uvq_free(h->mem, st->body_copy);
    st->body_copy = NULL;
  } else if (st->body.type == UVQ_H3_BODY_BUFFER && st->body.free_cb) {
    st->body.free_cb(st->body.data, st->body.free_user_data);
  }
  memset(&st->body, 0, sizeof(st->body));
}

static void queue_remove(uvq_h3_conn *h, uvq_h3_stream *st) {
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

/* Ends an exchange: fires its last callback and frees it. |in_close| is set
 * when nghttp3 is deleting its own stream (do not touch it there). */
static void stream_finish(uvq_h3_stream *st, int error, uint64_t app_error) {
  uvq_h3_conn *h = st->h;

  if (st->finished) {
    return;
  }
  st->finished = 1;
  if (st->queued) {
    queue_remove(h, st);
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
    if (st->request_seen && h->srv->cfg.on_stream_close) {
      h->srv->cfg.on_stream_close(st, error, app_error, h->srv->cfg.user_data);
    }
  } else if (st->cb.on_complete) {
    st->cb.on_complete(st, error, app_error, st->user_data);
  }
  nvlist_free(h->mem, &st->req);
  nvlist_free(h->mem, &st->trailers);
  hdrs_free(h->mem, &st->rx);
  uvq_free(h->mem, st);
}

/* Outcome of an exchange whose QUIC stream closed with |app_error|. */
static void stream_outcome(uvq_h3_stream *st, uint64_t app_error, int *perr,
                           uint64_t *pcode) {
  *pcode = 0;
  if (st->cancelled) {
    *perr = UVQ_H3_ERR_CANCELLED;
    *pcode = UVQ_H3_REQUEST_CANCELLED;
  } else if (st->rejected || (st->peer_reset && st->peer_reset_code ==
                                                     UVQ_H3_REQUEST_REJECTED)) {
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
    /* The peer's STOP_SENDING (ngtcp2 reset our side in answer). */
    *perr = app_error == UVQ_H3_REQUEST_REJECTED ? UVQ_H3_ERR_REJECTED
                                                 : UVQ_H3_ERR_RESET;
    *pcode = app_error;
  } else if (st->server ? st->responded : (st->recv_done && st->got_response)) {
    *perr = 0;
  } else {
    *perr = UVQ_H3_ERR_RESET;
    *pcode = app_error;
  }
}

/* Resets both directions of a request stream with |code|. */
static void stream_abort(uvq_h3_stream *st, uint64_t code) {
  uvq_h3_conn *h = st->h;
  if (st->id < 0 || h->conn == NULL || h->closed) {
    return;
  }
  st->local_reset = 1;
  st->local_reset_code = code;
  (void)uvq_stream_stop_sending(h->conn, st->id, code);
  (void)uvq_stream_reset(h->conn, st->id, code);
  st->reset_pending = 1;
}

/* ------------------------------------------------------------------------ */
/* Writing: nghttp3 -> core                                                 */
/* ------------------------------------------------------------------------ */

static void conn_fail(uvq_h3_conn *h, uint64_t code, const char *why) {
  if (h->conn && !h->close_sent && !h->closed) {
    h->close_sent = 1;
    (void)uvq_conn_close(h->conn, code, why);
  }
}

/* Moves everything nghttp3 has to send into the core's stream buffers. The
 * core keeps a copy until the peer acknowledges it, so nghttp3 is told the
 * bytes are acknowledged as soon as they are copied. */
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
      conn_fail(h, nghttp3_err_infer_quic_app_error_code((int)nvec),
                "nghttp3 writev");
      return;
    }
    if (sid < 0) {
      return;
    }
    for (nghttp3_ssize i = 0; i < nvec; i++) {
      int last = i == nvec - 1;
      ssize_t w = uvq_stream_write(h->conn, sid, vec[i].base, vec[i].len,
                                   fin && last);
      if (w < 0) {
        if (w == UVQ_ERR_CLOSED) {
          return;
        }
        /* Reset, or gone: nghttp3 must stop offering it. */
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
      conn_fail(h, nghttp3_err_infer_quic_app_error_code(rv),
                "nghttp3 offsets");
      return;
    }
    if (shortw) {
      /* The send buffer is full: on_stream_writable unblocks it. */
      nghttp3_conn_block_stream(h->h3, sid);
    }
  }
}

static void h3_open_queued(uvq_h3_conn *h);
static void h3_do_shutdown(uvq_h3_conn *h);

/* Runs what had to wait until we were outside nghttp3, then writes. */
static void h3_after(uvq_h3_conn *h) {
  if (h->depth > 0 || h->closed || h->conn == NULL) {
    return;
  }
  for (uvq_h3_stream *st = h->streams; st; st = st->next) {
    if (st->reset_pending) {
      st->reset_pending = 0;
      if (st->id >= 0) {
        nghttp3_conn_shutdown_stream_write(h->h3, st->id);
      }
    }
  }
  if (h->shutdown_pending) {
    h->shutdown_pending = 0;
    h3_do_shutdown(h);
  }
  if (!h->server) {
    h3_open_queued(h);
  }
  h3_write(h);
  /* Close once the exchanges are over and the peer has our GOAWAY (the
   * control stream is fully acknowledged), so it learns why. */
  if (h->shutting_down && h->streams == NULL && h->qhead == NULL &&
      (!h->ready || uvq_stream_get_buffered(h->conn, h->ctrl_id) == 0)) {
    conn_fail(h, UVQ_H3_NO_ERROR, "");
  }
}

/* ------------------------------------------------------------------------ */
/* nghttp3 callbacks                                                        */
/* ------------------------------------------------------------------------ */

static int cb_acked_stream_data(nghttp3_conn *c, int64_t sid, uint64_t n,
                                void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  if (st == NULL) {
    return 0;
  }
  /* Provider chunks are freed once wholly acknowledged. */
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
    uvq_free(h->mem, ch);
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
  stream_finish(st, err, code);
  return 0;
}

static int cb_recv_data(nghttp3_conn *c, int64_t sid, const uint8_t *data,
                        size_t len, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  if (st == NULL || st->cancelled || st->local_reset) {
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

static void server_reject(uvq_h3_conn *h, uvq_h3_stream *st) {
  st->rejected = 1;
  stream_abort(st, UVQ_H3_REQUEST_REJECTED);
  (void)h;
}

static int cb_begin_headers(nghttp3_conn *c, int64_t sid, void *ud,
                            void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  (void)c;
  if (!h->server) {
    if (st) {
      hdrs_reset(&st->rx);
    }
    return 0;
  }
  if (st != NULL) {
    return 0;
  }
  st = stream_new(h, sid);
  if (st == NULL) {
    return NGHTTP3_ERR_CALLBACK_FAILURE;
  }
  nghttp3_conn_set_stream_user_data(h->h3, sid, st);
  (void)uvq_stream_set_user_data(h->conn, sid, st);
  h->deadline = UVQ_TSTAMP_MAX;
  if (sid > h->max_bidi_seen) {
    h->max_bidi_seen = sid;
  }
  h->nrequests++;
  h->stats.requests_started++;
  if (h->shutting_down ||
      (h->srv->cfg.max_requests_per_conn &&
       h->nrequests > h->srv->cfg.max_requests_per_conn)) {
    server_reject(h, st);
    return 0;
  }
  if (h->srv->cfg.max_requests_per_conn &&
      h->nrequests == h->srv->cfg.max_requests_per_conn) {
    h->shutdown_pending = 1;
  }
  return 0;
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
  if (st == NULL || st->rejected || st->cancelled) {
    return 0;
  }
  if (hdrs_add(h->mem, &st->rx, n.base, n.len, v.base, v.len,
               st->max_section) != 0) {
    return NGHTTP3_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int respond_simple(uvq_h3_stream *st, unsigned int status);

static int server_end_headers(uvq_h3_conn *h, uvq_h3_stream *st) {
  uvq_h3_request_info ri;
  uvq_h3_header *view;
  nghttp3_pri pri;
  int rv;

  if (st->rx.too_large) {
    h->stats.header_too_large++;
    /* The rest of the request is of no use: STOP_SENDING with
     * H3_NO_ERROR is allowed once the response is complete (§4.1.2). */
    return respond_simple(st, 431);
  }
  view = hdrs_view(h->mem, &st->rx);
  if (view == NULL) {
    return UVQ_ERR_NOMEM;
  }
  memset(&ri, 0, sizeof(ri));
  ri.content_length = -1;
  for (size_t i = 0; i < st->rx.n; i++) {
    const uvq_h3_header *f = &view[i];
    if (name_is(f, ":method")) {
      ri.method = f->value;
      ri.methodlen = f->valuelen;
    } else if (name_is(f, ":scheme")) {
      ri.scheme = f->value;
      ri.schemelen = f->valuelen;
    } else if (name_is(f, ":authority") ||
               (name_is(f, "host") && ri.authority == NULL)) {
      ri.authority = f->value;
      ri.authoritylen = f->valuelen;
    } else if (name_is(f, ":path")) {
      ri.path = f->value;
      ri.pathlen = f->valuelen;
    } else if (name_is(f, "content-length")) {
      int64_t cl = 0;
      for (size_t k = 0; k < f->valuelen && cl >= 0; k++) {
        char ch = f->value[k];
        cl = (ch >= '0' && ch <= '9' && cl < INT64_MAX / 10)
                 ? cl * 10 + (ch - '0')
                 : -1;
      }
      ri.content_length = cl;
    }
  }
  /* nghttp3 validates the pseudo-header section; check again what this
   * API promises, so a gap there is still answered per RFC 9114 §4.1.2. */
  if (ri.method == NULL || ri.path == NULL || ri.scheme == NULL ||
      ri.pathlen == 0) {
    uvq_free(h->mem, view);
    st->malformed = 1;
    stream_abort(st, UVQ_H3_MESSAGE_ERROR);
    return 0;
  }
  st->head = ri.methodlen == 4 && memcmp(ri.method, "HEAD", 4) == 0;
  ri.headers = view;
  ri.nheaders = st->rx.n;
  ri.urgency = UVQ_H3_URGENCY_DEFAULT;
  if (nghttp3_conn_get_stream_priority(h->h3, &pri, st->id) == 0) {
    ri.urgency = pri.urgency;
    ri.incremental = pri.inc;
  }
  st->request_seen = 1;
  rv = h->srv->cfg.on_request(st, &ri, h->srv->cfg.user_data);
  uvq_free(h->mem, view);
  hdrs_free(h->mem, &st->rx);
  if (rv != 0 && !st->finished) {
    stream_abort(st, UVQ_H3_INTERNAL_ERROR);
  }
  return 0;
}

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

static int cb_end_headers(nghttp3_conn *c, int64_t sid, int fin, void *ud,
                          void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  uvq_h3_header *view;
  unsigned int status;
  (void)c;
  (void)sid;
  (void)fin;
  if (st == NULL || st->rejected || st->cancelled || st->local_reset) {
    return 0;
  }
  if (h->server) {
    return server_end_headers(h, st) == 0 ? 0 : NGHTTP3_ERR_CALLBACK_FAILURE;
  }
  status = parse_status(&st->rx);
  if (status < 200) {
    /* Informational: nothing to report; the final response follows. */
    hdrs_reset(&st->rx);
    return 0;
  }
  st->got_response = 1;
  if (st->cb.on_response) {
    view = hdrs_view(h->mem, &st->rx);
    if (view == NULL) {
      return NGHTTP3_ERR_CALLBACK_FAILURE;
    }
    st->cb.on_response(st, status, view, st->rx.n, st->user_data);
    uvq_free(h->mem, view);
  }
  hdrs_free(h->mem, &st->rx);
  return 0;
}

static int cb_begin_trailers(nghttp3_conn *c, int64_t sid, void *ud,
                             void *sud) {
  uvq_h3_stream *st = sud;
  (void)c;
  (void)sid;
  (void)ud;
  if (st) {
    hdrs_reset(&st->rx);
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
  if (st == NULL || st->rejected || st->cancelled || st->local_reset ||
      st->rx.too_large) {
    return 0;
  }
  view = hdrs_view(h->mem, &st->rx);
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
  hdrs_free(h->mem, &st->rx);
  return 0;
}

static int cb_stop_sending(nghttp3_conn *c, int64_t sid, uint64_t code,
                           void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
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
  uvq_h3_stream *st = sud;
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
  if (st->server && st->request_seen && !st->local_reset &&
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
  if (h->server) {
    return 0;
  }
  /* Requests the server will not process (RFC 9114 §5.2): no use waiting
   * for them; they are safe to retry elsewhere. */
  for (uvq_h3_stream *st = h->streams; st; st = st->next) {
    if (!st->queued && st->id >= id && !st->finished && !st->rejected) {
      st->rejected = 1;
      stream_abort(st, UVQ_H3_REQUEST_CANCELLED);
    }
  }
  while (h->qhead) {
    uvq_h3_stream *st = h->qhead;
    stream_finish(st, UVQ_H3_ERR_REJECTED, UVQ_H3_REQUEST_REJECTED);
  }
  if (h->ccfg.on_goaway) {
    h->ccfg.on_goaway(h, id, h->ccfg.user_data);
  }
  return 0;
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
      vec[0].base = (uint8_t *)st->body.data + st->body_off;
      vec[0].len = n;
      st->body_off += n;
      nv = 1;
    }
    eof = st->body_off == st->body.len;
    break;
  }
  case UVQ_H3_BODY_PROVIDER: {
    h3_chunk *ch;
    ssize_t r;
    if (st->read_blocked || st->provider_failed) {
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    ch = uvq_malloc(h->mem, sizeof(*ch) + UVQ_H3_PROVIDER_CHUNK);
    if (ch == NULL) {
      return NGHTTP3_ERR_CALLBACK_FAILURE;
    }
    r = st->body.read(st, ch->data, UVQ_H3_PROVIDER_CHUNK, &eof,
                      st->body.read_user_data);
    if (r == UVQ_H3_READ_WOULDBLOCK || (r == 0 && !eof)) {
      uvq_free(h->mem, ch);
      st->read_blocked = 1;
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    if (r < 0 || (size_t)r > UVQ_H3_PROVIDER_CHUNK) {
      uvq_free(h->mem, ch);
      st->provider_failed = 1;
      stream_abort(st, UVQ_H3_INTERNAL_ERROR);
      return NGHTTP3_ERR_WOULDBLOCK;
    }
    if (r == 0) {
      uvq_free(h->mem, ch);
      break;
    }
    ch->len = (size_t)r;
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

static const nghttp3_callbacks h3_callbacks = {
    cb_acked_stream_data, cb_stream_close, cb_recv_data,
    NULL, /* deferred_consume: the core returned the credit already */
    cb_begin_headers,     cb_recv_header,  cb_end_headers,
    cb_begin_trailers,    cb_recv_header,  cb_end_trailers,
    cb_stop_sending,      cb_end_stream,   cb_reset_stream,
    cb_shutdown};

/* ------------------------------------------------------------------------ */
/* Body submission (both sides)                                             */
/* ------------------------------------------------------------------------ */

/* Takes |body| and |trailers| into |st|; sets *pdr to the reader to pass
 * to nghttp3, or leaves it NULL when there is nothing after the headers. */
static int stream_take_body(uvq_h3_stream *st, const uvq_h3_body *body,
                            const uvq_h3_header *trailers, size_t ntrailers,
                            int no_body, nghttp3_data_reader *dr,
                            const nghttp3_data_reader **pdr) {
  uvq_h3_conn *h = st->h;
  int rv;

  *pdr = NULL;
  if (body->type == UVQ_H3_BODY_PROVIDER && body->read == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (body->type == UVQ_H3_BODY_BUFFER && body->data == NULL && body->len) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!no_body && ntrailers) {
    rv = nvlist_build(h->mem, &st->trailers, NULL, 0, trailers, ntrailers);
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
  if (body->type == UVQ_H3_BODY_BUFFER && body->copy && body->len) {
    st->body_copy = uvq_malloc(h->mem, body->len);
    if (st->body_copy == NULL) {
      nvlist_free(h->mem, &st->trailers);
      memset(&st->body, 0, sizeof(st->body));
      return UVQ_ERR_NOMEM;
    }
    memcpy(st->body_copy, body->data, body->len);
    st->body.data = st->body_copy;
    st->body.free_cb = NULL;
  }
  if (st->body.type != UVQ_H3_BODY_NONE || st->trailers.n) {
    dr->read_data = cb_read_data;
    *pdr = dr;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

void uvq_h3_server_config_default(uvq_h3_server_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_H3_SERVER_CONFIG_VERSION;
  cfg->max_field_section_size = 16 * 1024;
}

int uvq_h3_server_new(uvq_h3_server **psrv, const uvq_h3_server_config *cfg) {
  const uvq_mem *mem;
  uvq_h3_server *srv;
  if (psrv == NULL || cfg == NULL || cfg->on_request == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  mem = cfg->mem ? cfg->mem : uvq_mem_default();
  srv = uvq_calloc(mem, 1, sizeof(*srv));
  if (srv == NULL) {
    return UVQ_ERR_NOMEM;
  }
  srv->cfg = *cfg;
  srv->mem = mem;
  *psrv = srv;
  return 0;
}

void uvq_h3_server_del(uvq_h3_server *srv) {
  if (srv) {
    uvq_free(srv->mem, srv);
  }
}

static int respond_simple(uvq_h3_stream *st, unsigned int status) {
  uvq_h3_response r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  return uvq_h3_respond(st, &r);
}

int uvq_h3_respond(uvq_h3_stream *st, const uvq_h3_response *resp) {
  uvq_h3_conn *h;
  char status[4];
  uvq_h3_header pre;
  h3_nvlist nv = {NULL, 0};
  nghttp3_data_reader dr;
  const nghttp3_data_reader *pdr;
  int rv;

  if (st == NULL || resp == NULL || resp->status < 200 ||
      resp->status > 599) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  h = st->h;
  if (!st->server || st->finished || st->local_reset || h->closed ||
      !h->ready) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (st->responded) {
    return UVQ_H3_ERR_ALREADY_RESPONDED;
  }
  snprintf(status, sizeof(status), "%u", resp->status);
  pre = mkhdr(":status", status);
  rv = nvlist_build(h->mem, &nv, &pre, 1, resp->headers, resp->nheaders);
  if (rv != 0) {
    return rv;
  }
  rv = stream_take_body(st, &resp->body, resp->trailers, resp->ntrailers,
                        st->head, &dr, &pdr);
  if (rv != 0) {
    nvlist_free(h->mem, &nv);
    return rv;
  }
  rv = nghttp3_conn_submit_response(h->h3, st->id, nv.nv, nv.n, pdr);
  nvlist_free(h->mem, &nv);
  if (rv != 0) {
    memset(&st->body, 0, sizeof(st->body));
    uvq_free(h->mem, st->body_copy);
    st->body_copy = NULL;
    nvlist_free(h->mem, &st->trailers);
    return rv == NGHTTP3_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INVALID_STATE;
  }
  st->responded = 1;
  h3_after(h);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Connection setup and core callbacks                                      */
/* ------------------------------------------------------------------------ */

static int h3_conn_init(uvq_h3_conn *h, int server, uint64_t max_section) {
  nghttp3_settings s;
  int rv;
  nghttp3_settings_default(&s);
  s.max_field_section_size = max_section;
  /* No dynamic table: QPACK never blocks a stream, so nghttp3 never holds
   * back bytes the core has already credited (see h3.md). */
  s.qpack_max_dtable_capacity = 0;
  s.qpack_blocked_streams = 0;
  nmem_init(&h->nmem, h->mem);
  h->server = server;
  h->max_section = max_section;
  h->max_bidi_seen = -1;
  h->deadline = UVQ_TSTAMP_MAX;
  if (server) {
    rv = nghttp3_conn_server_new(&h->h3, &h3_callbacks, &s, &h->nmem, h);
  } else {
    rv = nghttp3_conn_client_new(&h->h3, &h3_callbacks, &s, &h->nmem, h);
  }
  return rv == 0 ? 0 : UVQ_ERR_NOMEM;
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
    conn_fail(h, UVQ_H3_STREAM_CREATION_ERROR, "no uni streams");
    return 0;
  }
  h->ctrl_id = ctrl;
  rv = nghttp3_conn_bind_control_stream(h->h3, ctrl);
  if (rv == 0) {
    rv = nghttp3_conn_bind_qpack_streams(h->h3, qenc, qdec);
  }
  if (rv != 0) {
    conn_fail(h, UVQ_H3_INTERNAL_ERROR, "bind");
    return 0;
  }
  h->ready = 1;
  return 1;
}

static int on_established(uvq_conn *conn, void *ud) {
  uvq_h3_conn *h = ud;

  h->conn = conn;
  if (!h3_ensure_ready(h)) {
    return 0;
  }
  if (!h->server && h->ccfg.on_ready) {
    h->ccfg.on_ready(h, h->ccfg.user_data);
  }
  h3_after(h);
  return 0;
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  nghttp3_ssize n;
  (void)sud;

  h->conn = conn;
  if (h->server && !h->ready) {
    (void)h3_ensure_ready(h);
  }
  /* nghttp3 returns how much it consumed outside DATA payloads; the core
   * returns flow-control credit for all |len| bytes when this returns, so
   * the count is not needed (see h3.md). */
  h->depth++;
  n = nghttp3_conn_read_stream(h->h3, sid, data, len, fin);
  h->depth--;
  if (n < 0) {
    if (n == NGHTTP3_ERR_MALFORMED_HTTP_HEADER ||
        n == NGHTTP3_ERR_MALFORMED_HTTP_MESSAGING) {
      uvq_h3_stream *st = uvq_stream_get_user_data(conn, sid);
      (void)uvq_stream_stop_sending(conn, sid, UVQ_H3_MESSAGE_ERROR);
      (void)uvq_stream_reset(conn, sid, UVQ_H3_MESSAGE_ERROR);
      if (st) {
        st->malformed = 1;
      }
    } else {
      conn_fail(h, nghttp3_err_infer_quic_app_error_code((int)n),
                nghttp3_strerror((int)n));
    }
  }
  h3_after(h);
  return 0;
}

static int on_stream_writable(uvq_conn *conn, int64_t sid, void *ud,
                              void *sud) {
  uvq_h3_conn *h = ud;
  (void)sud;
  h->conn = conn;
  (void)nghttp3_conn_unblock_stream(h->h3, sid);
  h3_after(h);
  return 0;
}

static void on_stream_reset(uvq_conn *conn, int64_t sid, uint64_t code,
                            void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st = sud;
  h->conn = conn;
  if (st) {
    st->peer_reset = 1;
    st->peer_reset_code = code;
  }
  (void)nghttp3_conn_shutdown_stream_read(h->h3, sid);
  h3_after(h);
}

/* With ngtcp2 0.12.1 the core reports here the STOP_SENDING *we* sent
 * (ngtcp2's stream_stop_sending callback), not the peer's; the peer's is
 * answered by ngtcp2 with RESET_STREAM and shows up as the stream's close
 * code. The core also stops our writes on the stream; h3_write tells
 * nghttp3 when a write is refused. See h3.md. */
static void on_stop_sending(uvq_conn *conn, int64_t sid, uint64_t code,
                            void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  (void)sid;
  (void)code;
  (void)sud;
  h->conn = conn;
  h3_after(h);
}

static void on_stream_closed(uvq_conn *conn, int64_t sid, uint64_t app_error,
                             void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  uvq_h3_stream *st;
  int rv;
  (void)sud;

  h->conn = conn;
  if (h->server && (sid & 0x3) == 0 && !h->closed) {
    /* The core gave the client one more bidi stream. */
    h->max_client_bidi++;
    nghttp3_conn_set_max_client_streams_bidi(h->h3, h->max_client_bidi);
  }
  h->depth++;
  rv = nghttp3_conn_close_stream(h->h3, sid, app_error);
  h->depth--;
  if (rv != 0 && rv != NGHTTP3_ERR_STREAM_NOT_FOUND) {
    conn_fail(h, nghttp3_err_infer_quic_app_error_code(rv),
              nghttp3_strerror(rv));
  }
  /* A stream nghttp3 never knew (e.g. refused before any header). */
  st = uvq_stream_get_user_data(conn, sid);
  if (st && !st->finished) {
    int err;
    uint64_t code;
    stream_outcome(st, app_error, &err, &code);
    stream_finish(st, err, code);
  }
  h3_after(h);
}

static int on_stream_acked(uvq_conn *conn, int64_t sid, uint64_t offset,
                           uint64_t len, void *ud, void *sud) {
  uvq_h3_conn *h = ud;
  (void)offset;
  (void)len;
  (void)sud;
  h->conn = conn;
  if (h->shutting_down && h->ready && sid == h->ctrl_id) {
    h3_after(h);
  }
  return 0;
}

static int on_streams_available(uvq_conn *conn, void *ud) {
  uvq_h3_conn *h = ud;
  h->conn = conn;
  h3_after(h);
  return 0;
}

static void h3_conn_free(uvq_h3_conn *h) {
  if (h->h3) {
    nghttp3_conn_del(h->h3);
    h->h3 = NULL;
  }
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
    stream_finish(st, err, code);
  }
  h3_conn_free(h);
  h->conn = NULL;
  if (h->server) {
    uvq_h3_server *srv = h->srv;
    if (h->sprev) {
      h->sprev->snext = h->snext;
    } else {
      srv->conns = h->snext;
    }
    if (h->snext) {
      h->snext->sprev = h->sprev;
    }
    uvq_free(h->mem, h);
    return;
  }
  if (h->ccfg.on_closed) {
    /* Last: it may delete |h|. */
    h->ccfg.on_closed(h, ci, h->ccfg.user_data);
  }
}

static const uvq_app_callbacks h3_app_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_data = on_stream_data,
    .on_stream_writable = on_stream_writable,
    .on_stream_acked = on_stream_acked,
    .on_stream_reset = on_stream_reset,
    .on_stop_sending = on_stop_sending,
    .on_stream_closed = on_stream_closed,
    .on_streams_available = on_streams_available,
    .on_closed = on_closed,
};

const uvq_app_callbacks *uvq_h3_callbacks(void) { return &h3_app_callbacks; }

int uvq_h3_server_accept(uvq_h3_server *srv, uvq_conn *conn, uvq_tstamp now,
                         const uvq_app_callbacks **pcallbacks,
                         void **pconn_user_data) {
  uvq_h3_conn *h;
  const uvq_settings *s;
  int rv;

  if (srv == NULL || conn == NULL || pcallbacks == NULL ||
      pconn_user_data == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  h = uvq_calloc(srv->mem, 1, sizeof(*h));
  if (h == NULL) {
    return UVQ_ERR_NOMEM;
  }
  h->mem = srv->mem;
  h->srv = srv;
  h->conn = conn;
  rv = h3_conn_init(h, 1, srv->cfg.max_field_section_size);
  if (rv != 0) {
    uvq_free(srv->mem, h);
    return rv;
  }
  s = uvq_endpoint_get_settings(uvq_conn_get_endpoint(conn));
  h->max_client_bidi = s->max_streams_bidi;
  nghttp3_conn_set_max_client_streams_bidi(h->h3, h->max_client_bidi);
  if (srv->cfg.request_timeout) {
    h->deadline = now + srv->cfg.request_timeout;
  }
  h->snext = srv->conns;
  if (srv->conns) {
    srv->conns->sprev = h;
  }
  srv->conns = h;
  *pcallbacks = &h3_app_callbacks;
  *pconn_user_data = h;
  return 0;
}

uvq_tstamp uvq_h3_server_next_expiry(uvq_h3_server *srv) {
  uvq_tstamp next = UVQ_TSTAMP_MAX;
  for (uvq_h3_conn *h = srv->conns; h; h = h->snext) {
    if (!h->close_sent && h->deadline < next) {
      next = h->deadline;
    }
  }
  return next;
}

void uvq_h3_server_handle_expiry(uvq_h3_server *srv, uvq_tstamp now) {
  for (uvq_h3_conn *h = srv->conns; h; h = h->snext) {
    if (!h->close_sent && h->deadline <= now) {
      h->deadline = UVQ_TSTAMP_MAX;
      conn_fail(h, UVQ_H3_NO_ERROR, "no request");
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

void uvq_h3_client_config_default(uvq_h3_client_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_H3_CLIENT_CONFIG_VERSION;
  cfg->max_field_section_size = 64 * 1024;
}

void uvq_h3_request_init(uvq_h3_request *req) {
  memset(req, 0, sizeof(*req));
  req->urgency = UVQ_H3_URGENCY_DEFAULT;
}

int uvq_h3_client_new(uvq_h3_conn **ph3, const uvq_h3_client_config *cfg) {
  const uvq_mem *mem;
  uvq_h3_conn *h;
  int rv;
  if (ph3 == NULL || cfg == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  mem = cfg->mem ? cfg->mem : uvq_mem_default();
  h = uvq_calloc(mem, 1, sizeof(*h));
  if (h == NULL) {
    return UVQ_ERR_NOMEM;
  }
  h->mem = mem;
  h->ccfg = *cfg;
  rv = h3_conn_init(h, 0, cfg->max_field_section_size);
  if (rv != 0) {
    uvq_free(mem, h);
    return rv;
  }
  *ph3 = h;
  return 0;
}

void uvq_h3_client_del(uvq_h3_conn *h) {
  if (h == NULL || h->server) {
    return;
  }
  while (h->streams) {
    /* Never started: nothing fires for them any more. */
    uvq_h3_stream *st = h->streams;
    st->cb.on_complete = NULL;
    stream_finish(st, UVQ_H3_ERR_CONN_CLOSED, 0);
  }
  h3_conn_free(h);
  uvq_free(h->mem, h);
}

static void h3_open_queued(uvq_h3_conn *h) {
  while (h->qhead && h->ready && !h->close_sent && !h->closed) {
    uvq_h3_stream *st = h->qhead;
    nghttp3_data_reader dr;
    const nghttp3_data_reader *pdr = NULL;
    int64_t sid;
    int rv = uvq_conn_open_stream(h->conn, 1, &sid, st);
    if (rv == UVQ_ERR_STREAM_LIMIT) {
      return; /* on_streams_available brings us back */
    }
    queue_remove(h, st);
    if (rv != 0) {
      stream_finish(st, rv, 0);
      continue;
    }
    st->id = sid;
    if (st->body.type != UVQ_H3_BODY_NONE || st->trailers.n) {
      dr.read_data = cb_read_data;
      pdr = &dr;
    }
    rv = nghttp3_conn_submit_request(h->h3, sid, st->req.nv, st->req.n, pdr,
                                     st);
    nvlist_free(h->mem, &st->req);
    if (rv != 0) {
      /* GOAWAY arrived (CONN_CLOSING) or no memory: give the id back. */
      st->rejected = rv == NGHTTP3_ERR_CONN_CLOSING;
      stream_abort(st, UVQ_H3_REQUEST_CANCELLED);
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
  nghttp3_data_reader dr;
  const nghttp3_data_reader *pdr;
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
    pre[npre++] = mkhdr(":method", req->method);
    pre[npre++] = mkhdr(":scheme", req->scheme);
    if (req->authority) {
      pre[npre++] = mkhdr(":authority", req->authority);
    }
    pre[npre++] = mkhdr(":path", req->path);
    if (req->urgency != UVQ_H3_URGENCY_DEFAULT || req->incremental) {
      if (req->incremental) {
        snprintf(prio, sizeof(prio), "u=%u, i", req->urgency);
      } else {
        snprintf(prio, sizeof(prio), "u=%u", req->urgency);
      }
      pre[npre++] = mkhdr("priority", prio);
    }
  }
  st = stream_new(h, -1);
  if (st == NULL) {
    return UVQ_ERR_NOMEM;
  }
  st->cb = req->cb;
  st->user_data = req->user_data;
  rv = nvlist_build(h->mem, &st->req, pre, npre, req->headers, req->nheaders);
  if (rv == 0) {
    rv = stream_take_body(st, &req->body, req->trailers, req->ntrailers, 0,
                          &dr, &pdr);
  }
  if (rv != 0) {
    /* No callback for a failed call, and a borrowed body stays the
     * caller's. */
    st->cb.on_complete = NULL;
    memset(&st->body, 0, sizeof(st->body));
    stream_finish(st, rv, 0);
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
  h3_after(h);
  return 0;
}

int uvq_h3_cancel(uvq_h3_stream *st) {
  uvq_h3_conn *h;
  if (st == NULL || st->server || st->finished) {
    return UVQ_ERR_INVALID_STATE;
  }
  h = st->h;
  if (st->cancelled) {
    return 0;
  }
  st->cancelled = 1;
  if (st->queued) {
    stream_finish(st, UVQ_H3_ERR_CANCELLED, UVQ_H3_REQUEST_CANCELLED);
    return 0;
  }
  stream_abort(st, UVQ_H3_REQUEST_CANCELLED);
  h3_after(h);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Both sides                                                               */
/* ------------------------------------------------------------------------ */

static void h3_do_shutdown(uvq_h3_conn *h) {
  int rv;
  if (h->shutting_down) {
    return;
  }
  h->shutting_down = 1;
  h->stats.goaway_sent = 1;
  rv = nghttp3_conn_shutdown(h->h3);
  if (rv != 0) {
    conn_fail(h, UVQ_H3_NO_ERROR, "shutdown");
  }
  while (h->qhead) {
    stream_finish(h->qhead, UVQ_H3_ERR_SHUTDOWN, 0);
  }
}

int uvq_h3_shutdown(uvq_h3_conn *h) {
  if (h == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (h->closed || h->shutting_down) {
    return 0;
  }
  if (h->depth > 0 || h->conn == NULL) {
    h->shutdown_pending = 1;
    if (h->conn == NULL) {
      /* Not connected yet: fail the queue at once. */
      while (h->qhead) {
        stream_finish(h->qhead, UVQ_H3_ERR_SHUTDOWN, 0);
      }
    }
    return 0;
  }
  h3_do_shutdown(h);
  h3_after(h);
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
  /* Only reschedules the stream; the provider is asked at the next write
   * (at once if we are not inside nghttp3). */
  (void)nghttp3_conn_resume_stream(h->h3, st->id);
  h3_after(h);
  return 0;
}

int uvq_h3_stream_set_priority(uvq_h3_stream *st, uint32_t urgency,
                               int incremental) {
  nghttp3_pri pri;
  int rv;
  if (st == NULL || urgency > 7) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (st->finished || st->id < 0 || st->h->closed) {
    return UVQ_ERR_INVALID_STATE;
  }
  pri.urgency = urgency;
  pri.inc = incremental ? 1 : 0;
  rv = nghttp3_conn_set_stream_priority(st->h->h3, st->id, &pri);
  if (rv == NGHTTP3_ERR_NOMEM) {
    return UVQ_ERR_NOMEM;
  }
  if (rv != 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  h3_after(st->h);
  return 0;
}

uvq_conn *uvq_h3_conn_get_conn(uvq_h3_conn *h) { return h->conn; }
uvq_h3_conn *uvq_h3_stream_get_conn(uvq_h3_stream *st) { return st->h; }
int64_t uvq_h3_stream_get_id(uvq_h3_stream *st) { return st->id; }
void uvq_h3_stream_set_user_data(uvq_h3_stream *st, void *ud) {
  st->user_data = ud;
}
void *uvq_h3_stream_get_user_data(uvq_h3_stream *st) { return st->user_data; }

void uvq_h3_conn_get_stats(uvq_h3_conn *h, uvq_h3_conn_stats *out) {
  *out = h->stats;
}
