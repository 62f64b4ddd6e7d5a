/* HTTP/3 server: the shared server object, accepting connections, request
 * streams, responses, and the request and header timeouts on the
 * connection's application timer. See h3.h and docs/internals/h3.md. */
#include "app/h3.h"

#include <stdio.h>
#include <string.h>

#include "core/mem.h"

void uvq_h3_server_config_default(uvq_h3_server_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_H3_SERVER_CONFIG_VERSION;
  cfg->max_field_section_size = 16 * 1024;
  cfg->request_timeout = UVQ_H3_REQUEST_TIMEOUT;
  cfg->header_timeout = UVQ_H3_HEADER_TIMEOUT;
}

int uvq_h3_server_new(uvq_h3_server **psrv, const uvq_h3_server_config *cfg) {
  const uvq_mem *mem;
  uvq_h3_server *srv;
  if (psrv == NULL || cfg == NULL || cfg->version < 1 ||
      cfg->version > UVQ_H3_SERVER_CONFIG_VERSION || cfg->on_request == NULL) {
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

int uvq_h3_server_accept(uvq_h3_server *srv, uvq_conn *conn, uvq_tstamp now,
                         const uvq_app_callbacks **pcallbacks,
                         void **pconn_user_data) {
  uvq_endpoint *ep;
  const uvq_mem *mem;
  uvq_h3_conn *h;
  int rv;

  if (srv == NULL || conn == NULL || pcallbacks == NULL ||
      pconn_user_data == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  ep = uvq_conn_get_endpoint(conn);
  /* The connection's state lives and dies with it: without an allocator
   * of its own it takes the endpoint's, nghttp3 included. */
  mem = srv->cfg.mem ? srv->cfg.mem : uvq_endpoint_get_mem(ep);
  h = uvq_calloc(mem, 1, sizeof(*h));
  if (h == NULL) {
    return UVQ_ERR_NOMEM;
  }
  h->mem = mem;
  h->nmem_src = mem;
  h->srv = srv;
  h->conn = conn;
  h->server = 1;
  h->max_section = srv->cfg.max_field_section_size;
  h->max_bidi_seen = -1;
  rv = uvq_h3_conn_init(h, 1, h->max_section, mem);
  if (rv != 0) {
    uvq_free(mem, h);
    return rv;
  }
  h->max_client_bidi = uvq_endpoint_get_settings(ep)->max_streams_bidi;
  nghttp3_conn_set_max_client_streams_bidi(h->h3, h->max_client_bidi);
  h->timer_at = UVQ_TSTAMP_MAX;
  if (srv->cfg.request_timeout) {
    h->timer_armed = 1;
    h->req_deadline = now + srv->cfg.request_timeout;
    h->timer_at = h->req_deadline;
    uvq_conn_set_app_timer(conn, h->req_deadline);
  }
  h->snext = srv->conns;
  if (srv->conns) {
    srv->conns->sprev = h;
  }
  srv->conns = h;
  *pcallbacks = &uvq_h3_app_callbacks;
  *pconn_user_data = h;
  return 0;
}

void uvq_h3_server_shutdown(uvq_h3_server *srv) {
  uvq_h3_conn *h, *next;

  if (srv == NULL || srv->shutting_down) {
    return;
  }
  srv->shutting_down = 1;
  for (h = srv->conns; h; h = next) {
    /* uvq_h3_shutdown may close the connection, but its on_closed comes
     * later, from the endpoint: |h| stays on the list until then. */
    next = h->snext;
    if (h->closed) {
      continue;
    }
    if (!h->ready) {
      /* Still in its handshake: no request yet, and no control stream
       * for a GOAWAY. */
      uvq_h3_conn_fail(h, UVQ_H3_NO_ERROR, "server shutting down");
      continue;
    }
    (void)uvq_h3_shutdown(h);
  }
}

/* ------------------------------------------------------------------------ */
/* Timeouts: one application timer per connection                           */
/* ------------------------------------------------------------------------ */

/* The app timer serves request_timeout and the oldest header_timeout (the
 * list is in arrival order, so in deadline order: one duration for all).
 * It is moved earlier at once and left when the earliest deadline goes: it
 * then fires early once, and on_timer sets it again. */
static void timer_update(uvq_h3_conn *h) {
  uvq_tstamp want = h->timer_armed ? h->req_deadline : UVQ_TSTAMP_MAX;
  if (h->thead && h->thead->hdr_deadline < want) {
    want = h->thead->hdr_deadline;
  }
  if (want < h->timer_at && h->conn && !h->closed) {
    h->timer_at = want;
    uvq_conn_set_app_timer(h->conn, want);
  }
}

void uvq_h3_server_conn_closed(uvq_h3_conn *h) {
  uvq_h3_server_stats *t = &h->srv->stats;
  const uvq_h3_conn_stats *c = &h->stats;
  if (h->sprev) {
    h->sprev->snext = h->snext;
  } else {
    h->srv->conns = h->snext;
  }
  if (h->snext) {
    h->snext->sprev = h->sprev;
  }
  h->sprev = h->snext = NULL;
  t->connections++;
  t->requests_started += c->requests_started;
  t->requests_completed += c->requests_completed;
  t->requests_rejected += c->requests_rejected;
  t->header_too_large += c->header_too_large;
  t->streams_reset += c->streams_reset;
  t->header_timeouts += c->header_timeouts;
  t->request_timeouts += c->request_timed_out != 0;
}

void uvq_h3_server_get_stats(uvq_h3_server *srv, uvq_h3_server_stats *st) {
  *st = srv->stats;
}

void uvq_h3_server_hdr_done(uvq_h3_conn *h, uvq_h3_stream *st) {
  if (!st->hdr_waiting) {
    return;
  }
  st->hdr_waiting = 0;
  if (st->tprev) {
    st->tprev->tnext = st->tnext;
  } else {
    h->thead = st->tnext;
  }
  if (st->tnext) {
    st->tnext->tprev = st->tprev;
  } else {
    h->ttail = st->tprev;
  }
  st->tprev = st->tnext = NULL;
}

void uvq_h3_server_on_timer(uvq_h3_conn *h) {
  uvq_tstamp now = uvq_conn_get_now(h->conn);

  h->timer_at = UVQ_TSTAMP_MAX; /* the core disarmed it to call us */
  if (h->timer_armed && now >= h->req_deadline) {
    h->timer_armed = 0;
    h->stats.request_timed_out = 1;
    uvq_h3_conn_fail(h, UVQ_H3_NO_ERROR, "no request");
    return;
  }
  while (h->thead && h->thead->hdr_deadline <= now) {
    uvq_h3_stream *st = h->thead;
    uvq_h3_server_hdr_done(h, st);
    /* RFC 9114 §4.1.1: cancelled before any processing, so "rejected"
     * (the client may retry); both directions, so the client's half
     * frame is dropped too. */
    h->stats.header_timeouts++;
    uvq_h3_stream_abort(st, UVQ_H3_REQUEST_REJECTED);
  }
  timer_update(h);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

int uvq_h3_server_open_request(uvq_h3_conn *h, int64_t sid) {
  uvq_h3_stream *st = uvq_stream_get_user_data(h->conn, sid);
  uint64_t t = h->srv->cfg.header_timeout;

  if (st != NULL) {
    return 0;
  }
  st = uvq_h3_stream_new(h, sid);
  if (st == NULL) {
    return UVQ_ERR_NOMEM;
  }
  (void)uvq_stream_set_user_data(h->conn, sid, st);
  if (t) {
    st->hdr_deadline = uvq_conn_get_now(h->conn) + t;
    st->hdr_waiting = 1;
    st->tprev = h->ttail;
    if (h->ttail) {
      h->ttail->tnext = st;
    } else {
      h->thead = st;
    }
    h->ttail = st;
    timer_update(h);
  }
  return 0;
}

int uvq_h3_server_begin_request(uvq_h3_conn *h, int64_t sid) {
  /* Opened in on_stream_open, unless its allocation failed there. */
  uvq_h3_stream *st = uvq_stream_get_user_data(h->conn, sid);
  uint64_t limit = h->srv->cfg.max_requests_per_conn;

  if (st == NULL) {
    st = uvq_h3_stream_new(h, sid);
    if (st == NULL) {
      return NGHTTP3_ERR_CALLBACK_FAILURE;
    }
    (void)uvq_stream_set_user_data(h->conn, sid, st);
  }
  st->begun = 1;
  nghttp3_conn_set_stream_user_data(h->h3, sid, st);
  /* A request started: request_timeout no longer applies (the timer
   * fires once more for nothing, or for a header_timeout). */
  h->timer_armed = 0;
  if (sid > h->max_bidi_seen) {
    h->max_bidi_seen = sid;
  }
  h->nrequests++;
  h->stats.requests_started++;
  if (h->shutting_down || (limit && h->nrequests > limit)) {
    st->rejected = 1;
    uvq_h3_stream_abort(st, UVQ_H3_REQUEST_REJECTED);
    return 0;
  }
  if (limit && h->nrequests == limit) {
    h->shutdown_pending = 1;
  }
  return 0;
}

static int name_is(const uvq_h3_header *h, const char *name) {
  size_t n = strlen(name);
  return h->namelen == n && memcmp(h->name, name, n) == 0;
}

static int64_t parse_content_length(const uvq_h3_header *f) {
  int64_t cl = 0;
  for (size_t k = 0; k < f->valuelen && cl >= 0; k++) {
    char ch = f->value[k];
    cl = (ch >= '0' && ch <= '9' && cl < INT64_MAX / 10) ? cl * 10 + (ch - '0')
                                                         : -1;
  }
  return cl;
}

static int respond_simple(uvq_h3_stream *st, unsigned int status) {
  uvq_h3_response r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  return uvq_h3_respond(st, &r);
}

void uvq_h3_server_refuse_section(uvq_h3_conn *h, uvq_h3_stream *st) {
  uvq_h3_server_hdr_done(h, st);
  h->stats.header_too_large++;
  if (respond_simple(st, 431) == 0) {
    /* STOP_SENDING(H3_NO_ERROR): the section is not wanted. */
    (void)uvq_h3_stop_request_body(st);
  } else {
    /* No response can go yet (0-RTT, before the control streams). */
    uvq_h3_stream_abort(st, UVQ_H3_REQUEST_REJECTED);
  }
}

int uvq_h3_server_end_headers(uvq_h3_conn *h, uvq_h3_stream *st) {
  uvq_h3_request_info ri;
  uvq_h3_header *view;
  nghttp3_pri pri;
  int rv;

  uvq_h3_server_hdr_done(h, st);
  if (st->rx.too_large) {
    h->stats.header_too_large++;
    rv = respond_simple(st, 431);
    if (rv == 0) {
      /* The rest of the request is of no use (RFC 9114 §4.1.2). */
      (void)uvq_h3_stop_request_body(st);
    }
    return rv;
  }
  view = uvq_h3_hdrs_view(h->mem, &st->rx);
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
      ri.content_length = parse_content_length(f);
    }
  }
  /* nghttp3 validates the pseudo-header section; check again what this
   * API promises, so a gap there is still answered per RFC 9114 §4.1.2. */
  if (ri.method == NULL || ri.path == NULL || ri.scheme == NULL ||
      ri.pathlen == 0) {
    uvq_free(h->mem, view);
    st->malformed = 1;
    uvq_h3_stream_abort(st, UVQ_H3_MESSAGE_ERROR);
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
  ri.early_data = uvq_stream_is_early(h->conn, st->id);
  st->request_seen = 1;
  rv = h->srv->cfg.on_request(st, &ri, h->srv->cfg.user_data);
  uvq_free(h->mem, view);
  uvq_h3_hdrs_free(h->mem, &st->rx);
  if (rv != 0 && !st->finished) {
    uvq_h3_stream_abort(st, UVQ_H3_INTERNAL_ERROR);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

int uvq_h3_respond(uvq_h3_stream *st, const uvq_h3_response *resp) {
  uvq_h3_conn *h;
  char status[4];
  uvq_h3_header pre;
  h3_nvlist nv = {NULL, 0};
  int rv;

  if (st == NULL || resp == NULL || resp->status < 200 || resp->status > 599) {
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
  pre = uvq_h3_mkhdr(":status", status);
  rv = uvq_h3_nvlist_build(h->mem, &nv, &pre, 1, resp->headers, resp->nheaders);
  if (rv != 0) {
    return rv;
  }
  rv = uvq_h3_stream_take_body(st, &resp->body, resp->trailers, resp->ntrailers,
                               st->head);
  if (rv != 0) {
    uvq_h3_nvlist_free(h->mem, &nv);
    return rv;
  }
  rv = nghttp3_conn_submit_response(h->h3, st->id, nv.nv, nv.n,
                                    uvq_h3_stream_reader(st));
  uvq_h3_nvlist_free(h->mem, &nv);
  if (rv != 0) {
    uvq_h3_stream_drop_body(st);
    return rv == NGHTTP3_ERR_NOMEM ? UVQ_ERR_NOMEM : UVQ_ERR_INVALID_STATE;
  }
  st->responded = 1;
  uvq_h3_after(h);
  return 0;
}

int uvq_h3_stop_request_body(uvq_h3_stream *st) {
  if (st == NULL || !st->server || st->finished || !st->responded ||
      st->h->closed) {
    return UVQ_ERR_INVALID_STATE;
  }
  if (st->recv_done || st->read_stopped) {
    return 0;
  }
  st->read_stopped = 1;
  /* nghttp3 and the transport are told outside nghttp3 (we may be inside
   * one of its callbacks); no request callback fires from now on. */
  st->read_stop_pending = 1;
  uvq_h3_after(st->h);
  return 0;
}
