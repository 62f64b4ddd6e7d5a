/*
 * Raw mode (tokio-quiche's raw.rs): one connection without a router in
 * front. A private endpoint builds and runs the connection — TLS, streams,
 * timers, CID bookkeeping all as usual — while its "driver" is the caller:
 * datagrams the connection writes collect in a queue uvq_raw_write empties,
 * and received datagrams go straight to the connection.
 */
#include <string.h>

#include "core/acceptor.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/router.h"
#include "core/settings.h"

#define RAW_QUEUE 128

/* A datagram written and not yet taken by uvq_raw_write. */
typedef struct raw_slot {
  uvq_path path;
  size_t len;
  uint8_t data[UVQ_MAX_DATAGRAM];
} raw_slot;

struct uvq_raw {
  uvq_endpoint *ep;
  uvq_conn *conn; /* NULL once the connection is gone */
  uvq_raw_config cfg;
  /* Datagrams written and not yet taken: a ring of RAW_QUEUE slots. */
  raw_slot *queue;
  size_t queue_head, queue_len;
};

void uvq_raw_config_default(uvq_raw_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_RAW_CONFIG_VERSION;
}

static ssize_t raw_send(uvq_endpoint *ep, const uvq_send_batch *b,
                        void *user_data) {
  uvq_raw *raw = user_data;
  size_t i;
  (void)ep;
  for (i = 0; i < b->count && raw->queue_len < RAW_QUEUE; i++) {
    size_t off = i * b->segment_size;
    size_t len =
        b->datalen - off < b->segment_size ? b->datalen - off : b->segment_size;
    size_t slot = (raw->queue_head + raw->queue_len) % RAW_QUEUE;
    raw->queue[slot].path = *b->path;
    raw->queue[slot].len = len;
    memcpy(raw->queue[slot].data, b->data + off, len);
    raw->queue_len++;
  }
  /* A full queue pushes back; the connection keeps the rest. */
  return (ssize_t)i;
}

static uint64_t raw_wall_time(uvq_endpoint *ep, void *user_data) {
  uvq_raw *raw = user_data;
  (void)ep;
  return raw->cfg.wall_time ? raw->cfg.wall_time(raw->cfg.user_data) : 0;
}

static int raw_on_accept(uvq_endpoint *ep, uvq_conn *conn,
                         const uvq_accept_info *info,
                         const uvq_app_callbacks **pcallbacks,
                         void **pconn_user_data, void *user_data) {
  uvq_raw *raw = user_data;
  (void)ep;
  (void)info;
  if (raw->conn != NULL) {
    return -1; /* one connection per raw object */
  }
  raw->conn = conn;
  *pcallbacks = raw->cfg.callbacks;
  *pconn_user_data = raw->cfg.conn_user_data;
  return 0;
}

static int raw_new(uvq_raw **praw, const uvq_raw_config *cfg, int is_server) {
  const uvq_mem *mem;
  uvq_endpoint_config ec;
  uvq_settings st;
  uvq_raw *raw;
  int rv;

  if (praw == NULL || cfg == NULL || cfg->version < 1 ||
      cfg->version > UVQ_RAW_CONFIG_VERSION || cfg->tls == NULL ||
      !uvq_app_callbacks_ok(cfg->callbacks)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (cfg->settings == NULL) {
    uvq_settings_default(&st);
  } else if (uvq_settings_copy(&st, cfg->settings) != 0 ||
             st.max_udp_payload_size > UVQ_MAX_DATAGRAM) {
    /* uvq_raw_write's buffers hold UVQ_MAX_DATAGRAM bytes. */
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  mem = cfg->mem ? cfg->mem : uvq_mem_default();
  raw = uvq_calloc(mem, 1, sizeof(*raw));
  if (raw == NULL) {
    return UVQ_ERR_NOMEM;
  }
  raw->cfg = *cfg;
  raw->queue = uvq_calloc(mem, RAW_QUEUE, sizeof(*raw->queue));
  if (raw->queue == NULL) {
    uvq_free(mem, raw);
    return UVQ_ERR_NOMEM;
  }
  st.retry = UVQ_RETRY_OFF;
  uvq_endpoint_config_default(&ec);
  ec.is_server = is_server;
  ec.settings = &st;
  ec.tls = cfg->tls;
  ec.mem = mem;
  ec.user_data = raw;
  ec.send = raw_send;
  ec.wall_time = raw_wall_time;
  ec.on_accept = raw_on_accept;
  rv = uvq_endpoint_new(&raw->ep, &ec);
  if (rv != 0) {
    uvq_free(mem, raw->queue);
    uvq_free(mem, raw);
    return rv;
  }
  raw->ep->conn_hook = cfg->hook;
  raw->ep->conn_hook_ud = cfg->user_data;
  *praw = raw;
  return 0;
}

int uvq_raw_connect(uvq_raw **praw, const uvq_raw_config *cfg,
                    const uvq_path *path, uvq_tstamp now) {
  uvq_connect_params p;
  uvq_raw *raw;
  int rv;

  if (path == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = raw_new(&raw, cfg, 0);
  if (rv != 0) {
    return rv;
  }
  uvq_connect_params_default(&p);
  p.server_name = cfg->server_name;
  p.path = path;
  p.callbacks = cfg->callbacks;
  p.user_data = cfg->conn_user_data;
  rv = uvq_endpoint_connect(raw->ep, &p, now, &raw->conn);
  if (rv != 0) {
    uvq_raw_del(raw);
    return rv;
  }
  *praw = raw;
  return 0;
}

int uvq_raw_accept(uvq_raw **praw, const uvq_raw_config *cfg,
                   const uvq_path *path, const uint8_t *data, size_t len,
                   uvq_tstamp now) {
  uvq_pkt_view v;
  uvq_drop_reason why;
  uvq_raw *raw;
  int rv;

  if (path == NULL || data == NULL ||
      uvq_pkt_parse(&v, data, len, UVQ_MAX_CIDLEN, &why) != 0 || !v.is_long ||
      !ngtcp2_is_supported_version(v.version) || v.long_type != 0 ||
      len < UVQ_MIN_INITIAL_DATAGRAM) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = raw_new(&raw, cfg, 1);
  if (rv != 0) {
    return rv;
  }
  if (!uvq_version_ok(&raw->ep->settings, v.version)) {
    /* Not a version settings.quic_versions accepts: what the router
     * would answer with Version Negotiation. */
    uvq_raw_del(raw);
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  uvq_acceptor_recv(raw->ep, path, 0, &v, data, len, uvq_ep_now(raw->ep, now));
  /* A connection the Initial already ended (undecryptable: ngtcp2 drops
   * it) is not one: it would vanish at the first write. */
  if (raw->ep->nconns == 0 || raw->ep->conns->stage >= UVQ_STAGE_CLOSING) {
    /* The Initial did not make a connection (undecryptable, hook or
     * allocation failure): the endpoint's counters say which. */
    rv = raw->ep->stats.dropped[UVQ_DROP_ACCEPT_FAILED]
             ? UVQ_ERR_NOMEM
             : UVQ_ERR_INVALID_ARGUMENT;
    uvq_raw_del(raw);
    return rv;
  }
  if (raw->conn == NULL) {
    /* Created but on_accept has not run yet (the ClientHello needs more
     * packets): the endpoint's only connection is ours. */
    raw->conn = raw->ep->conns;
  }
  *praw = raw;
  return 0;
}

/* The connection is gone once the private endpoint holds none. */
static int raw_alive(uvq_raw *raw) {
  if (raw->conn && raw->ep->nconns == 0) {
    raw->conn = NULL;
  }
  return raw->conn != NULL;
}

int uvq_raw_recv(uvq_raw *raw, const uvq_path *path, uint8_t ecn,
                 const uint8_t *data, size_t len, uvq_tstamp now) {
  if (raw == NULL || path == NULL || (data == NULL && len > 0)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!raw_alive(raw)) {
    return UVQ_ERR_CLOSED;
  }
  if (uvq_ep_enter(raw->ep) != 0) {
    return UVQ_ERR_INVALID_STATE;
  }
  raw->ep->stats.datagrams_received++;
  raw->ep->stats.bytes_received += len;
  now = uvq_ep_enter_now(raw->ep, now);
  uvq_conn_recv(raw->conn, path, ecn, data, len, now);
  raw->ep->busy = 0;
  return 0;
}

ssize_t uvq_raw_write(uvq_raw *raw, uint8_t *buf, size_t buflen,
                      uvq_path *ppath, uvq_tstamp now) {
  size_t len;
  if (raw == NULL || buf == NULL || buflen < UVQ_MAX_DATAGRAM) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (raw->queue_len == 0) {
    /* Let the connection write (and fire a due on_closed). */
    uvq_endpoint_flush(raw->ep, now);
    raw_alive(raw);
  }
  if (raw->queue_len == 0) {
    return 0;
  }
  len = raw->queue[raw->queue_head].len;
  memcpy(buf, raw->queue[raw->queue_head].data, len);
  if (ppath) {
    *ppath = raw->queue[raw->queue_head].path;
  }
  raw->queue_head = (raw->queue_head + 1) % RAW_QUEUE;
  raw->queue_len--;
  return (ssize_t)len;
}

uvq_tstamp uvq_raw_next_expiry(uvq_raw *raw) {
  return uvq_endpoint_next_expiry(raw->ep);
}

int uvq_raw_handle_expiry(uvq_raw *raw, uvq_tstamp now) {
  int rv = uvq_endpoint_handle_expiry(raw->ep, now);
  raw_alive(raw);
  return rv;
}

uvq_conn *uvq_raw_get_conn(uvq_raw *raw) {
  return raw_alive(raw) ? raw->conn : NULL;
}

void uvq_raw_del(uvq_raw *raw) {
  const uvq_mem *mem;
  if (raw == NULL) {
    return;
  }
  mem = raw->ep ? raw->ep->mem : uvq_mem_default();
  uvq_endpoint_del(raw->ep);
  uvq_free(mem, raw->queue);
  uvq_free(mem, raw);
}
