/*
 * The endpoint: owns the CID map, the connections, their timers (a binary
 * min-heap keyed by expiry), the stateless reply queue and the list of
 * connections marked for the next flush.
 */
#include <gnutls/crypto.h>
#include <string.h>

#include "core/cid.h"
#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "core/quic_lb.h"
#include "core/reset.h"
#include "core/router.h"
#include "core/settings.h"
#include "core/sources.h"
#include "core/stage.h"
#include "core/tls.h"
#include "core/token.h"
#include "core/waker.h"

/* ---- timer heap -------------------------------------------------------- */

static void heap_swap(uvq_endpoint *ep, size_t a, size_t b) {
  uvq_conn *ca = ep->heap[a], *cb = ep->heap[b];
  ep->heap[a] = cb;
  ep->heap[b] = ca;
  cb->heap_idx = a;
  ca->heap_idx = b;
}

static void heap_up(uvq_endpoint *ep, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (ep->heap[parent]->expiry <= ep->heap[i]->expiry) {
      break;
    }
    heap_swap(ep, i, parent);
    i = parent;
  }
}

static void heap_down(uvq_endpoint *ep, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < ep->heaplen && ep->heap[l]->expiry < ep->heap[m]->expiry) {
      m = l;
    }
    if (r < ep->heaplen && ep->heap[r]->expiry < ep->heap[m]->expiry) {
      m = r;
    }
    if (m == i) {
      return;
    }
    heap_swap(ep, i, m);
    i = m;
  }
}

void uvq_ep_timer_remove(uvq_endpoint *ep, uvq_conn *conn) {
  size_t i = conn->heap_idx;
  if (i == SIZE_MAX) {
    return;
  }
  conn->heap_idx = SIZE_MAX;
  ep->heaplen--;
  if (i == ep->heaplen) {
    return;
  }
  ep->heap[i] = ep->heap[ep->heaplen];
  ep->heap[i]->heap_idx = i;
  heap_up(ep, i);
  heap_down(ep, ep->heap[i]->heap_idx);
}

void uvq_ep_timer_update(uvq_endpoint *ep, uvq_conn *conn) {
  uvq_tstamp exp = uvq_conn_expiry(conn);
  conn->flags &= ~UVQ_CONN_FLAG_TIMER_STALE;
  if (exp == UVQ_TSTAMP_MAX) {
    uvq_ep_timer_remove(ep, conn);
    conn->expiry = exp;
    return;
  }
  if (conn->heap_idx == SIZE_MAX) {
    /* The heap has room for every connection: reserved at link time. */
    conn->expiry = exp;
    conn->heap_idx = ep->heaplen;
    ep->heap[ep->heaplen++] = conn;
    heap_up(ep, conn->heap_idx);
    return;
  }
  if (exp < conn->expiry) {
    conn->expiry = exp;
    heap_up(ep, conn->heap_idx);
  } else if (exp > conn->expiry) {
    conn->expiry = exp;
    heap_down(ep, conn->heap_idx);
  }
}

void uvq_ep_refresh_timers(uvq_endpoint *ep) {
  /* A connection with a stale timer is marked, so the marked list has them
   * all; after a flush it is usually empty. */
  for (uvq_conn *c = ep->marked_head; c; c = c->marked_next) {
    if (c->flags & UVQ_CONN_FLAG_TIMER_STALE) {
      uvq_ep_timer_update(ep, c);
    }
  }
}

static int heap_reserve(uvq_endpoint *ep, size_t n) {
  uvq_conn **h;
  size_t cap;
  if (n <= ep->heapcap) {
    return 0;
  }
  cap = ep->heapcap ? ep->heapcap * 2 : 16;
  while (cap < n) {
    cap *= 2;
  }
  /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
  h = uvq_realloc(ep->mem, ep->heap, cap * sizeof(*h));
  if (h == NULL) {
    return UVQ_ERR_NOMEM;
  }
  ep->heap = h;
  ep->heapcap = cap;
  return 0;
}

/* ---- connection lists -------------------------------------------------- */

void uvq_ep_mark(uvq_endpoint *ep, uvq_conn *conn) {
  if (conn->flags & UVQ_CONN_FLAG_MARKED) {
    return;
  }
  conn->flags |= UVQ_CONN_FLAG_MARKED;
  conn->marked_next = NULL;
  if (ep->marked_tail) {
    ep->marked_tail->marked_next = conn;
  } else {
    ep->marked_head = conn;
  }
  ep->marked_tail = conn;
}

static void marked_remove(uvq_endpoint *ep, uvq_conn *conn) {
  uvq_conn *prev = NULL, *c;
  if (!(conn->flags & UVQ_CONN_FLAG_MARKED)) {
    return;
  }
  for (c = ep->marked_head; c; prev = c, c = c->marked_next) {
    if (c == conn) {
      if (prev) {
        prev->marked_next = c->marked_next;
      } else {
        ep->marked_head = c->marked_next;
      }
      if (ep->marked_tail == c) {
        ep->marked_tail = prev;
      }
      break;
    }
  }
  conn->flags &= ~UVQ_CONN_FLAG_MARKED;
  conn->marked_next = NULL;
}

void uvq_ep_conn_link(uvq_endpoint *ep, uvq_conn *conn) {
  conn->prev = NULL;
  conn->next = ep->conns;
  if (ep->conns) {
    ep->conns->prev = conn;
  }
  ep->conns = conn;
  ep->nconns++;
  ep->stats.connections_current = ep->nconns;
  ep->stats.connections_total++;
}

void uvq_ep_conn_unlink(uvq_endpoint *ep, uvq_conn *conn) {
  if (conn->prev) {
    conn->prev->next = conn->next;
  } else if (ep->conns == conn) {
    ep->conns = conn->next;
  }
  if (conn->next) {
    conn->next->prev = conn->prev;
  }
  ep->nconns--;
  ep->stats.connections_current = ep->nconns;
  marked_remove(ep, conn);
  uvq_ep_timer_remove(ep, conn);
}

int uvq_ep_reserve_conn(uvq_endpoint *ep) {
  return heap_reserve(ep, ep->nconns + 1);
}

/* ---- misc -------------------------------------------------------------- */

void uvq_ep_drop(uvq_endpoint *ep, uvq_drop_reason r) {
  ep->stats.dropped[r]++;
  uvq_metrics_drop(ep);
}

int uvq_ep_rand_cb(void *ep, uint8_t *dest, size_t len) {
  return uvq_ep_rand(ep, dest, len, 0);
}

/* The setting, or |auto_value| where it is 0 (auto). */
static size_t payload_setting_or(const uvq_endpoint *ep, size_t auto_value) {
  return ep->settings.max_udp_payload_size != 0
             ? ep->settings.max_udp_payload_size
             : auto_value;
}

size_t uvq_ep_max_payload(const uvq_endpoint *ep) {
  return payload_setting_or(ep, ep->cfg.path_mtu ? UVQ_UDP_PAYLOAD_AUTO_MAX
                                                 : UVQ_DEFAULT_UDP_PAYLOAD);
}

size_t uvq_ep_path_payload(uvq_endpoint *ep, const uvq_path *path) {
  size_t max, mtu = 0, hdr;
  if (ep->cfg.path_mtu != NULL) {
    mtu = ep->cfg.path_mtu(ep, path, ep->cfg.user_data);
  }
  /* IPv4 20 + UDP 8; IPv6 40 + 8 (an IPv4-mapped peer is counted as IPv6:
   * 20 bytes to spare). */
  hdr = path->remote.ss.ss_family == AF_INET ? 28 : 48;
  if (mtu < hdr + UVQ_MIN_INITIAL_DATAGRAM) {
    /* The link is unknown (or absurd): as if there were no callback. */
    return payload_setting_or(ep, UVQ_DEFAULT_UDP_PAYLOAD);
  }
  max = payload_setting_or(ep, UVQ_UDP_PAYLOAD_AUTO_MAX);
  return mtu - hdr < max ? mtu - hdr : max;
}

int uvq_ep_random_cid(uvq_endpoint *ep, ngtcp2_cid *cid, size_t len) {
  if (len > NGTCP2_MAX_CIDLEN || uvq_ep_rand(ep, cid->data, len, 0) != 0) {
    return UVQ_ERR_INTERNAL;
  }
  cid->datalen = len;
  return 0;
}

/* The endpoint's CID generator: random CIDs of settings.cid_len bytes. */
static int ep_generate_cid(uvq_cid_gen *gen, ngtcp2_cid *cid) {
  return uvq_ep_random_cid(gen->user_data, cid, gen->cid_len);
}

int uvq_ep_cid_map_init(uvq_endpoint *ep, uvq_cid_map *map) {
  uint8_t key[UVQ_CID_MAP_KEYLEN];
  int rv = uvq_ep_rand(ep, key, sizeof(key), 1);
  if (rv == 0) {
    rv = uvq_cid_map_init_seeded(map, ep->mem, key);
  }
  gnutls_memset(key, 0, sizeof(key));
  return rv;
}

int uvq_ep_rand(uvq_endpoint *ep, void *dest, size_t len, int key) {
  int rv;
  if (ep->cfg.rand) {
    rv = ep->cfg.rand(dest, len, key, ep->cfg.user_data);
  } else {
    rv = gnutls_rnd(key ? GNUTLS_RND_KEY : GNUTLS_RND_NONCE, dest, len);
  }
  return rv == 0 ? 0 : UVQ_ERR_INTERNAL;
}

uint64_t uvq_ep_wall_time(uvq_endpoint *ep) {
  return ep->cfg.wall_time(ep, ep->cfg.user_data);
}

void uvq_ep_queue_stateless(uvq_endpoint *ep, const uvq_path *path,
                            const uint8_t *data, size_t len, uint64_t *sent) {
  uvq_stateless_pkt *p;
  if (ep->stateless_len == ep->stateless_cap || len > UVQ_MAX_DATAGRAM) {
    uvq_ep_drop(ep, UVQ_DROP_STATELESS_QUEUE_FULL);
    return;
  }
  (*sent)++;
  p = &ep->stateless[(ep->stateless_head + ep->stateless_len) %
                     ep->stateless_cap];
  p->path = *path;
  p->len = len;
  memcpy(p->data, data, len);
  ep->stateless_len++;
}

size_t uvq_ep_send(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                   const uint8_t *data, size_t len, size_t seg) {
  size_t done = 0, count = (len + seg - 1) / seg;
  while (done < count) {
    uvq_send_batch b;
    ssize_t n;
    size_t off = done * seg;
    b.path = path;
    b.ecn = ecn;
    b.data = data + off;
    b.datalen = len - off;
    b.segment_size = seg;
    b.count = count - done;
    n = ep->cfg.send(ep, &b, ep->cfg.user_data);
    if (n < 0) {
      /* The first datagram cannot be sent at all: drop it, loss recovery
       * resends its contents. */
      uvq_ep_drop(ep, UVQ_DROP_SEND_ERROR);
      done++;
      continue;
    }
    if ((size_t)n > b.count) {
      n = (ssize_t)b.count;
    }
    for (size_t i = 0; i < (size_t)n; i++) {
      size_t dl = (i + 1 == b.count) ? b.datalen - i * seg : seg;
      ep->stats.bytes_sent += dl;
    }
    ep->stats.datagrams_sent += (uint64_t)n;
    done += (size_t)n;
    if (n == 0 || (size_t)n < b.count) {
      ep->stats.send_blocked++;
      break;
    }
  }
  return done;
}

/* ---- lifecycle --------------------------------------------------------- */

static void put_u64(gnutls_hash_hd_t h, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) {
    b[i] = (uint8_t)(v >> (56 - 8 * i));
  }
  gnutls_hash(h, b, sizeof(b));
}

/* Server: the ticket key of this endpoint — the TLS context's master key
 * mixed with a hash of what a client remembers for 0-RTT (RFC 9000
 * §7.4.1: the flow-control, stream and CID limits, RFC 9221's DATAGRAM
 * size) and the early-data size limit of our tickets. A server that lowers a
 * limit must not accept 0-RTT sent under the old one, and ngtcp2 does not
 * check (1.11 checks only on the client,
 * conn_validate_early_transport_params_limits, which then fails the
 * connection): tickets from before simply no longer decrypt (full
 * handshake). Must match what uvq_conn_new puts in the parameters.
 * Tickets are per QUIC version (RFC 9369 §5): |version| 0 derives the v1
 * key as before versions existed (v1 tickets survive the upgrade); any
 * other is mixed in, so a ticket never decrypts under another version's
 * key. */
static int derive_ticket_key(uvq_endpoint *ep, uint32_t version, uint8_t *out) {
  const uvq_settings *st = &ep->settings;
  gnutls_hash_hd_t h;
  uint8_t digest[32];

  if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) != 0) {
    return UVQ_ERR_NOMEM;
  }
  gnutls_hash(h, "uvquic 0-RTT limits v1", 22);
  put_u64(h, st->initial_max_data);
  put_u64(h, st->initial_max_stream_data); /* bidi local, remote, uni */
  put_u64(h, st->max_streams_bidi);
  put_u64(h, st->max_streams_uni);
  put_u64(h, UVQ_ACTIVE_CID_LIMIT);
  put_u64(h, st->max_datagram_frame_size);
  /* The early-data limit our tickets carry (tls.c). settings.early_data
   * itself stays out: a server that stops taking 0-RTT refuses it in the
   * handshake (GnuTLS) and can still resume the session. */
  put_u64(h, 0xffffffffu);
  if (version != 0) {
    gnutls_hash(h, "quic version", 12);
    put_u64(h, version);
  }
  gnutls_hash_deinit(h, digest);
  return uvq_tls_ctx_derive_ticket_key(ep->cfg.tls, digest, sizeof(digest),
                                       out);
}

static int derive_ticket_keys(uvq_endpoint *ep) {
  int rv = derive_ticket_key(ep, 0, ep->ticket_key);
  if (rv != 0) {
    return rv;
  }
  rv = derive_ticket_key(ep, UVQ_QUIC_V2, ep->ticket_key_v2);
  if (rv != 0) {
    return rv;
  }
  ep->ticket_key_d.data = ep->ticket_key;
  ep->ticket_key_d.size = UVQ_TICKET_KEYLEN;
  ep->ticket_key_v2_d.data = ep->ticket_key_v2;
  ep->ticket_key_v2_d.size = UVQ_TICKET_KEYLEN;
  return 0;
}

const gnutls_datum_t *uvq_ep_ticket_key(uvq_endpoint *ep, uint32_t version) {
  return version == UVQ_QUIC_V2 ? &ep->ticket_key_v2_d : &ep->ticket_key_d;
}

/* settings.quic_versions: 1..UVQ_MAX_VERSIONS versions ngtcp2 speaks, none
 * twice, and a client's first version among them. */
static int versions_valid(const uvq_settings *st, int is_server) {
  if (st->quic_versionslen == 0 || st->quic_versionslen > UVQ_MAX_VERSIONS) {
    return 0;
  }
  for (size_t i = 0; i < st->quic_versionslen; i++) {
    if (!ngtcp2_is_supported_version(st->quic_versions[i])) {
      return 0;
    }
    for (size_t j = 0; j < i; j++) {
      if (st->quic_versions[j] == st->quic_versions[i]) {
        return 0;
      }
    }
  }
  return is_server || uvq_version_ok(st, st->client_chosen_version);
}

int uvq_endpoint_new(uvq_endpoint **pep, const uvq_endpoint_config *cfg) {
  uvq_endpoint *ep;
  uvq_settings settings;
  uint64_t sources_key[2];
  const uvq_mem *mem;
  int rv;
  uint8_t key[UVQ_TOKEN_KEYLEN];

  if (pep == NULL || cfg == NULL || cfg->version < 1 ||
      cfg->version > UVQ_ENDPOINT_CONFIG_VERSION || cfg->tls == NULL ||
      cfg->send == NULL || cfg->wall_time == NULL ||
      (cfg->is_server && cfg->on_accept == NULL) ||
      (cfg->version >= 3 && cfg->cid_shard_set &&
       cfg->cid_shard >= UVQ_MAX_CID_SHARDS)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (cfg->settings == NULL) {
    uvq_settings_default(&settings);
  } else if (uvq_settings_copy(&settings, cfg->settings) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (uvq_tls_ctx_is_server(cfg->tls) != (cfg->is_server != 0)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  mem = cfg->mem ? cfg->mem : uvq_mem_default();
  ep = uvq_calloc(mem, 1, sizeof(*ep));
  if (ep == NULL) {
    return UVQ_ERR_NOMEM;
  }
  ep->mem = mem;
  uvq_mem_to_ngtcp2(&ep->nmem, mem);
  if (cfg->version == 1) {
    /* An older header's config: its fields, none of the later ones. */
    memcpy(&ep->cfg, cfg, offsetof(uvq_endpoint_config, rand));
  } else if (cfg->version == 2) {
    memcpy(&ep->cfg, cfg, offsetof(uvq_endpoint_config, cid_shard));
  } else if (cfg->version == 3) {
    memcpy(&ep->cfg, cfg, offsetof(uvq_endpoint_config, path_mtu));
  } else {
    ep->cfg = *cfg;
  }
  ep->settings = settings;
  ep->is_server = cfg->is_server != 0;

  if ((ep->settings.max_udp_payload_size != 0 &&
       ep->settings.max_udp_payload_size < UVQ_MIN_INITIAL_DATAGRAM) ||
      ep->settings.max_udp_payload_size > UVQ_MAX_UDP_PAYLOAD ||
      ep->settings.stateless_queue_len == 0 ||
      ep->settings.max_burst_datagrams == 0 ||
      ep->settings.stream_send_buffer == 0 ||
      ep->settings.conn_send_budget == 0 ||
      (unsigned)ep->settings.cc_algo > UVQ_CC_BBR ||
      !versions_valid(&ep->settings, ep->is_server)) {
    rv = UVQ_ERR_INVALID_ARGUMENT;
    goto fail_settings;
  }
  /* QUIC-LB sets settings.cid_len, checked by the random init below. */
  rv = uvq_ep_quic_lb_init(ep);
  if (rv != 0) {
    goto fail_settings;
  }
  rv = uvq_cid_gen_random_init(&ep->cidgen, ep->settings.cid_len);
  if (rv != 0) {
    goto fail_settings;
  }
  /* Random CIDs, from the endpoint's randomness. */
  ep->cidgen.generate = ep_generate_cid;
  ep->cidgen.user_data = ep;
  if (ep->quic_lb) {
    uvq_lb_cid_gen_init(&ep->cidgen, ep->quic_lb);
  }
  /* Over either generator's first octet (QUIC-LB's when it does not
   * encode the length: uvq_ep_quic_lb_init refuses that combination). */
  ep->cidgen.has_shard = ep->cfg.cid_shard_set;
  ep->cidgen.shard = ep->cfg.cid_shard;
  rv = uvq_ep_cid_map_init(ep, &ep->cids);
  if (rv != 0) {
    goto fail_settings;
  }
  /* Allocates nothing until a connection is added. */
  rv = uvq_ep_rand(ep, sources_key, sizeof(sources_key), 1);
  if (rv != 0) {
    goto fail_secret;
  }
  uvq_sources_init(&ep->sources, mem, sources_key);
  gnutls_memset(sources_key, 0, sizeof(sources_key));
  if (ep->settings.static_secret_set) {
    memcpy(ep->static_secret, ep->settings.static_secret, UVQ_STATIC_SECRETLEN);
  } else if (uvq_ep_rand(ep, ep->static_secret, UVQ_STATIC_SECRETLEN, 1) != 0) {
    rv = UVQ_ERR_INTERNAL;
    goto fail_secret;
  }
  if (ep->settings.token_key_set) {
    memcpy(key, ep->settings.token_key, UVQ_TOKEN_KEYLEN);
  } else if (uvq_ep_rand(ep, key, sizeof(key), 1) != 0) {
    rv = UVQ_ERR_INTERNAL;
    goto fail_secret;
  }
  if (ep->settings.token_key_prev_set) {
    /* The previous key first, then the current one rotated in on top. */
    rv = uvq_token_keys_init(&ep->tokens, ep->settings.token_key_prev);
    if (rv == 0) {
      rv = uvq_token_keys_rotate(&ep->tokens, key);
      if (rv != 0) {
        uvq_token_keys_free(&ep->tokens);
      }
    }
  } else {
    rv = uvq_token_keys_init(&ep->tokens, key);
  }
  gnutls_memset(key, 0, sizeof(key));
  if (rv != 0) {
    goto fail_secret;
  }
  ep->tokens.rand = uvq_ep_rand_cb;
  ep->tokens.rand_ud = ep;
  if (ep->is_server) {
    rv = derive_ticket_keys(ep);
    if (rv != 0) {
      goto fail_ticket;
    }
  }
  rv = uvq_reset_init(ep);
  if (rv != 0) {
    goto fail_ticket;
  }
  ep->stateless_cap = ep->settings.stateless_queue_len;
  ep->stateless = uvq_calloc(mem, ep->stateless_cap, sizeof(*ep->stateless));
  if (ep->stateless == NULL) {
    rv = UVQ_ERR_NOMEM;
    goto fail_sq;
  }
  /* Room for a burst of the largest datagrams any connection may send
   * (uvq_ep_max_payload); untouched pages cost no memory. */
  ep->txbufcap = ep->settings.max_burst_datagrams * uvq_ep_max_payload(ep);
  ep->txbuf = uvq_malloc(mem, ep->txbufcap);
  if (ep->txbuf == NULL) {
    rv = UVQ_ERR_NOMEM;
    goto fail_txbuf;
  }
  rv = uvq_pool_new(&ep->pool, mem, ep->settings.send_buffer_cache);
  if (rv != 0) {
    goto fail_pool;
  }
  rv = uvq_wake_hub_new(&ep->hub, ep, mem);
  if (rv != 0) {
    goto fail_hub;
  }
  *pep = ep;
  return 0;

fail_hub:
  uvq_pool_del(ep->pool);
fail_pool:
  uvq_free(mem, ep->txbuf);
fail_txbuf:
  uvq_free(mem, ep->stateless);
fail_sq:
  uvq_reset_free(ep);
fail_ticket:
  uvq_token_keys_free(&ep->tokens);
fail_secret:
  uvq_cid_map_free(&ep->cids);
fail_settings:
  uvq_lb_del(ep->quic_lb);
  uvq_free(mem, ep);
  return rv;
}

void uvq_endpoint_del(uvq_endpoint *ep) {
  if (ep == NULL) {
    return;
  }
  while (ep->conns) {
    uvq_conn *c = ep->conns;
    /* No callbacks fire from here: the owner is tearing everything down. */
    c->flags |= UVQ_CONN_FLAG_CLOSED_FIRED;
    c->flags &= ~UVQ_CONN_FLAG_CLOSED_PENDING;
    uvq_conn_del(c);
  }
  uvq_wake_hub_detach(ep->hub);
  /* Buffers still out (an h3 client's body chunks) free it later. */
  uvq_pool_del(ep->pool);
  uvq_free(ep->mem, ep->heap);
  uvq_free(ep->mem, ep->txbuf);
  uvq_free(ep->mem, ep->stateless);
  uvq_reset_free(ep);
  uvq_token_keys_free(&ep->tokens);
  gnutls_memset(ep->ticket_key, 0, sizeof(ep->ticket_key));
  gnutls_memset(ep->ticket_key_v2, 0, sizeof(ep->ticket_key_v2));
  gnutls_memset(ep->static_secret, 0, sizeof(ep->static_secret));
  uvq_cid_map_free(&ep->cids);
  uvq_sources_free(&ep->sources);
  uvq_lb_del(ep->quic_lb);
  uvq_free(ep->mem, ep);
}

void *uvq_endpoint_get_user_data(uvq_endpoint *ep) { return ep->cfg.user_data; }

const uvq_mem *uvq_endpoint_get_mem(uvq_endpoint *ep) { return ep->mem; }

int uvq_endpoint_is_server(uvq_endpoint *ep) { return ep->is_server; }

const uvq_settings *uvq_endpoint_get_settings(uvq_endpoint *ep) {
  return &ep->settings;
}

size_t uvq_endpoint_conn_count(uvq_endpoint *ep) { return ep->nconns; }

void uvq_endpoint_get_stats(uvq_endpoint *ep, uvq_endpoint_stats *st) {
  uvq_pool_stats ps;
  *st = ep->stats;
  uvq_pool_get_stats(ep->pool, &ps);
  st->pool_hits = ps.hits;
  st->pool_misses = ps.misses;
  st->pool_released = ps.released;
  st->pool_cached_bytes = ps.cached_bytes;
  st->pool_outstanding = ps.outstanding;
  st->pool_outstanding_bytes = ps.outstanding_bytes;
  st->quic_lb_unroutable_cids = uvq_lb_unroutable_count(ep->quic_lb);
}

/* What uvq_buf_get puts in front of the buffer it returns, so uvq_buf_put
 * finds the pool (which may outlive its endpoint) and the class. */
typedef struct buf_header {
  uvq_pool *pool;
  size_t cls;
} buf_header;

_Static_assert(sizeof(buf_header) + UVQ_BUF_MAX <= UVQ_POOL_BULK,
               "UVQ_BUF_MAX larger than the pool's bulk buffer");

void *uvq_buf_get(uvq_endpoint *ep, size_t size) {
  buf_header *h;
  int cls;
  if (size == 0 || size > UVQ_BUF_MAX) {
    return NULL;
  }
  /* The smallest core class that fits, else the bulk one. */
  cls = uvq_pool_class(sizeof(*h) + size);
  if (cls < 0) {
    cls = UVQ_POOL_CLASS_BULK;
  }
  h = uvq_pool_get(ep->pool, cls);
  if (h == NULL) {
    return NULL;
  }
  h->pool = ep->pool;
  h->cls = (size_t)cls;
  return h + 1;
}

void uvq_buf_put(void *buf) {
  buf_header *h;
  if (buf == NULL) {
    return;
  }
  h = (buf_header *)buf - 1;
  uvq_pool_put(h->pool, (int)h->cls, h);
}

int uvq_endpoint_rotate_token_key(uvq_endpoint *ep, const uint8_t *key,
                                  size_t keylen) {
  if (ep == NULL || key == NULL || keylen != UVQ_TOKEN_KEYLEN) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  return uvq_token_keys_rotate(&ep->tokens, key);
}

/* ---- I/O --------------------------------------------------------------- */

int uvq_ep_enter(uvq_endpoint *ep) {
  if (ep->busy) {
    /* Called from inside one of our callbacks: re-entering would run
     * ngtcp2 inside its own callbacks, or free the connection the outer
     * call is still using. */
    return UVQ_ERR_INVALID_STATE;
  }
  ep->busy = 1;
  return 0;
}

uvq_tstamp uvq_ep_enter_now(uvq_endpoint *ep, uvq_tstamp now) {
  if (now < ep->last_now) {
    ep->stats.clock_backwards++;
    return ep->last_now;
  }
  ep->last_now = now;
  return now;
}

uvq_tstamp uvq_ep_now(uvq_endpoint *ep, uvq_tstamp now) {
  /* Inside a recv, flush or expiry call (one of our callbacks called us):
   * that call goes on at its own time after we return, so a newer one
   * must not reach ngtcp2 first. */
  return ep->busy ? ep->last_now : uvq_ep_enter_now(ep, now);
}

static int recv_inner(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                      const uint8_t *data, size_t len, size_t segment_size,
                      uvq_tstamp now) {
  now = uvq_ep_enter_now(ep, now);
  if (segment_size == 0 || segment_size >= len) {
    segment_size = len ? len : 1;
  }
  if (len == 0) {
    ep->stats.datagrams_received++;
    uvq_ep_drop(ep, UVQ_DROP_TRUNCATED);
    return 0;
  }
  for (size_t off = 0; off < len; off += segment_size) {
    size_t n = len - off < segment_size ? len - off : segment_size;
    ep->stats.datagrams_received++;
    ep->stats.bytes_received += n;
    uvq_router_recv(ep, path, ecn, data + off, n, now);
  }
  return 0;
}

int uvq_endpoint_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                      const uint8_t *data, size_t len, size_t segment_size,
                      uvq_tstamp now) {
  int rv;
  if (ep == NULL || path == NULL || (data == NULL && len > 0)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_ep_enter(ep);
  if (rv == 0) {
    rv = recv_inner(ep, path, ecn, data, len, segment_size, now);
    ep->busy = 0;
  }
  return rv;
}

int uvq_endpoint_recv_icmp(uvq_endpoint *ep, const struct sockaddr *remote,
                           uvq_icmp_kind kind, uvq_tstamp now) {
  uvq_addr addr;
  socklen_t len;
  int rv;

  if (ep == NULL || remote == NULL ||
      (kind != UVQ_ICMP_PORT_UNREACHABLE &&
       kind != UVQ_ICMP_HOST_UNREACHABLE)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  len = remote->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                      : sizeof(struct sockaddr_in);
  if (uvq_addr_set(&addr, remote, len) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  ep->stats.icmp_errors++;
  if (ep->is_server) {
    return 0; /* counted; a server never closes on one */
  }
  rv = uvq_ep_enter(ep);
  if (rv != 0) {
    return rv;
  }
  (void)uvq_ep_enter_now(ep, now);
  for (uvq_conn *c = ep->conns; c != NULL; c = c->next) {
    /* Only before anything came from the peer: an off-path attacker can
     * forge ICMP, but not the peer's packets we already accepted. */
    if (c->stage >= UVQ_STAGE_CLOSING || c->metrics.datagrams_received != 0 ||
        !uvq_addr_eq(&c->path.remote, &addr)) {
      continue;
    }
    ep->stats.icmp_closed++;
    c->ci.type = UVQ_CLOSE_TYPE_NONE;
    uvq_stage_finish(c,
                     kind == UVQ_ICMP_PORT_UNREACHABLE
                         ? UVQ_ERR_PORT_UNREACHABLE
                         : UVQ_ERR_HOST_UNREACHABLE,
                     UVQ_CLOSE_PEER);
  }
  ep->busy = 0;
  return 0;
}

static int flush_stateless(uvq_endpoint *ep) {
  while (ep->stateless_len) {
    uvq_stateless_pkt *p = &ep->stateless[ep->stateless_head];
    ssize_t n;
    uvq_send_batch b;
    b.path = &p->path;
    b.ecn = 0;
    b.data = p->data;
    b.datalen = p->len;
    b.segment_size = p->len;
    b.count = 1;
    n = ep->cfg.send(ep, &b, ep->cfg.user_data);
    if (n == 0) {
      ep->stats.send_blocked++;
      return UVQ_FLUSH_BLOCKED;
    }
    if (n < 0) {
      uvq_ep_drop(ep, UVQ_DROP_SEND_ERROR);
    } else {
      ep->stats.datagrams_sent++;
      ep->stats.bytes_sent += p->len;
    }
    ep->stateless_head = (ep->stateless_head + 1) % ep->stateless_cap;
    ep->stateless_len--;
  }
  return 0;
}

static int flush_inner(uvq_endpoint *ep, uvq_tstamp now) {
  uvq_conn *list, *conn;
  int rv;

  now = uvq_ep_enter_now(ep, now);
  rv = flush_stateless(ep);
  if (rv != 0) {
    return rv;
  }
  /* Take the current list: connections marked while we write (by
   * callbacks) go to a fresh list and are written in this flush too. */
  while ((list = ep->marked_head) != NULL) {
    ep->marked_head = ep->marked_tail = NULL;
    while ((conn = list) != NULL) {
      list = conn->marked_next;
      conn->flags &= ~UVQ_CONN_FLAG_MARKED;
      conn->marked_next = NULL;
      rv = uvq_conn_write(conn, now);
      if (rv == UVQ_FLUSH_BLOCKED) {
        /* Put this one and the rest back in front, in order. */
        uvq_conn *rest = list, *tail;
        conn->flags |= UVQ_CONN_FLAG_MARKED;
        conn->marked_next = rest;
        for (tail = conn; tail->marked_next; tail = tail->marked_next) {
          tail->marked_next->flags |= UVQ_CONN_FLAG_MARKED;
        }
        tail->marked_next = ep->marked_head;
        if (ep->marked_head == NULL) {
          ep->marked_tail = tail;
        }
        ep->marked_head = conn;
        return UVQ_FLUSH_BLOCKED;
      }
      /* uvq_conn_write frees connections whose life is over. */
    }
    rv = flush_stateless(ep);
    if (rv != 0) {
      return rv;
    }
  }
  return 0;
}

uvq_tstamp uvq_endpoint_next_expiry(uvq_endpoint *ep) {
  uvq_ep_refresh_timers(ep);
  if (ep->heaplen == 0) {
    return UVQ_TSTAMP_MAX;
  }
  return ep->heap[0]->expiry;
}

int uvq_endpoint_flush(uvq_endpoint *ep, uvq_tstamp now) {
  int rv;
  if (ep == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_ep_enter(ep);
  if (rv == 0) {
    rv = flush_inner(ep, now);
    ep->busy = 0;
  }
  return rv;
}

static void expiry_inner(uvq_endpoint *ep, uvq_tstamp now) {
  /* A stale connection's deadline (packets read since its timer was set)
   * is brought up to date first, so one that fell between its packets and
   * |now| is due in this call. */
  uvq_ep_refresh_timers(ep);
  now = uvq_ep_enter_now(ep, now);
  while (ep->heaplen && ep->heap[0]->expiry <= now) {
    uvq_conn *conn = ep->heap[0];
    /* Take it off the heap first: handling re-arms it with a new expiry,
     * and a connection whose timer stays due is only handled once. */
    uvq_ep_timer_remove(ep, conn);
    conn->expiry = UVQ_TSTAMP_MAX;
    uvq_conn_handle_expiry(conn, now);
    if (conn->heap_idx == SIZE_MAX) {
      continue;
    }
    if (conn->expiry <= now) {
      /* Still due (e.g. a pacing deadline): it writes at the next flush,
       * which re-arms the timer. Park it off the heap until then. */
      uvq_ep_timer_remove(ep, conn);
      uvq_ep_mark(ep, conn);
    }
  }
}

int uvq_endpoint_handle_expiry(uvq_endpoint *ep, uvq_tstamp now) {
  int rv;
  if (ep == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_ep_enter(ep);
  if (rv == 0) {
    expiry_inner(ep, now);
    ep->busy = 0;
  }
  return rv;
}

void uvq_endpoint_stop_accepting(uvq_endpoint *ep) { ep->closing_all = 1; }

int uvq_endpoint_reload_keys(uvq_endpoint *ep, const uvq_keys *keys) {
  uint8_t tk[UVQ_TICKET_KEYLEN], tk2[UVQ_TICKET_KEYLEN];
  gnutls_hmac_hd_t reset_hmac = NULL;
  int rv;

  if (ep == NULL || !ep->is_server) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (ep->busy) {
    return UVQ_ERR_INVALID_STATE;
  }
  /* The ticket keys first, into scratch space: the step that can fail. */
  memcpy(tk, ep->ticket_key, sizeof(tk));
  memcpy(tk2, ep->ticket_key_v2, sizeof(tk2));
  rv = derive_ticket_keys(ep);
  if (rv == 0 && keys != NULL) {
    rv = uvq_reset_token_key_new(keys->static_secret, &reset_hmac);
    if (rv != 0) {
      reset_hmac = NULL;
    }
  }
  if (rv == 0 && keys != NULL &&
      (!ep->settings.token_key_set ||
       memcmp(ep->settings.token_key, keys->token_key, UVQ_TOKEN_KEYLEN) !=
           0)) {
    rv = uvq_token_keys_rotate(&ep->tokens, keys->token_key);
    if (rv == 0) {
      memcpy(ep->settings.token_key, keys->token_key, UVQ_TOKEN_KEYLEN);
      ep->settings.token_key_set = 1;
    }
  }
  if (rv != 0) {
    memcpy(ep->ticket_key, tk, sizeof(tk));
    memcpy(ep->ticket_key_v2, tk2, sizeof(tk2));
    if (reset_hmac != NULL) {
      gnutls_hmac_deinit(reset_hmac, NULL);
    }
  } else if (keys != NULL) {
    memcpy(ep->static_secret, keys->static_secret, UVQ_STATIC_SECRETLEN);
    gnutls_hmac_deinit(ep->reset_token_hmac, NULL);
    ep->reset_token_hmac = reset_hmac;
  }
  gnutls_memset(tk, 0, sizeof(tk));
  gnutls_memset(tk2, 0, sizeof(tk2));
  return rv;
}

void uvq_endpoint_close_all(uvq_endpoint *ep, uint64_t app_error,
                            const char *reason) {
  if (ep == NULL) {
    return;
  }
  ep->closing_all = 1;
  for (uvq_conn *c = ep->conns; c; c = c->next) {
    uvq_conn_close(c, app_error, reason);
  }
}
