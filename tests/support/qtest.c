#include "qtest.h"

#include <gnutls/crypto.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t qt_rand(qt_world *w) {
  /* xorshift64*: deterministic per seed, good enough for impairments. */
  uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

static int chance(qt_world *w, double pct) {
  if (pct <= 0) {
    return 0;
  }
  return (double)(qt_rand(w) % 1000000) < pct * 10000.0;
}

static uint64_t wall_time(uvq_endpoint *ep, void *user_data) {
  qt_node *n = user_data;
  (void)ep;
  return n->w->wall;
}

/* uvq_tls_config.wall_time: the world's clock dates the ephemeral
 * certificate too, so a seeded world replays it. */
static uint64_t tls_wall_time(void *user_data) {
  const qt_world *w = user_data;
  return w->wall;
}

static int node_of_addr(qt_world *w, const uvq_addr *a) {
  for (int i = 0; i < w->nnodes; i++) {
    if (w->nodes[i].addr.len == a->len &&
        memcmp(&w->nodes[i].addr.ss, &a->ss, a->len) == 0) {
      return i;
    }
  }
  for (int i = 0; i < w->naliases; i++) {
    if (w->alias[i].len == a->len &&
        memcmp(&w->alias[i].ss, &a->ss, a->len) == 0) {
      return w->alias_node[i];
    }
  }
  return -1;
}

void qt_addr_v4(uvq_addr *a, uint16_t port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  memset(a, 0, sizeof(*a));
  uvq_addr_set(a, (struct sockaddr *)&sa, sizeof(sa));
}

int qt_add_alias(qt_world *w, int node, const uvq_addr *addr) {
  if (w->naliases >= QT_MAX_NODES || node < 0 || node >= w->nnodes) {
    return -1;
  }
  w->alias[w->naliases] = *addr;
  w->alias_node[w->naliases] = node;
  w->naliases++;
  return 0;
}

static void enqueue(qt_world *w, qt_pkt *p) {
  qt_pkt **pp = &w->queue;
  p->seq = w->seq++;
  while (*pp && ((*pp)->deliver_at < p->deliver_at ||
                 ((*pp)->deliver_at == p->deliver_at && (*pp)->seq < p->seq))) {
    pp = &(*pp)->next;
  }
  p->next = *pp;
  *pp = p;
}

static void wire_send(qt_world *w, int from, const uvq_path *path,
                      const uint8_t *data, size_t len) {
  qt_pkt *p;
  int dst = node_of_addr(w, &path->remote);
  if (dst < 0) {
    w->dropped++;
    return;
  }
  if (len > w->max_payload_seen) {
    w->max_payload_seen = len;
  }
  if (w->count_max && len >= w->count_min && len <= w->count_max) {
    w->counted++;
  }
  if (w->path_max_payload && len > w->path_max_payload) {
    w->dropped++;
    w->too_big++;
    return;
  }
  p = calloc(1, sizeof(*p) + len);
  if (p == NULL) {
    return;
  }
  p->dst = dst;
  p->path.local = path->remote;
  p->path.remote = path->local;
  p->len = len;
  memcpy(p->data, data, len);
  p->deliver_at = w->now + w->delay;
  if (w->filter && w->filter(w, from, p, w->filter_ud)) {
    w->dropped++;
    free(p);
    return;
  }
  if (chance(w, w->drop_pct)) {
    w->dropped++;
    free(p);
    return;
  }
  if (w->rate_bps) {
    qt_node *n = &w->nodes[from];
    uvq_tstamp start = n->link_free > w->now ? n->link_free : w->now;
    uvq_tstamp tx = (uvq_tstamp)((double)len * 8.0 * (double)UVQ_SECONDS /
                                 (double)w->rate_bps);
    if (w->rate_queue_max && start - w->now > w->rate_queue_max) {
      w->dropped++;
      w->rate_dropped++;
      free(p);
      return;
    }
    n->link_free = start + tx;
    p->deliver_at = n->link_free + w->delay;
  }
  if (chance(w, w->corrupt_pct) && len > 0) {
    p->data[qt_rand(w) % len] ^= (uint8_t)(1 + qt_rand(w) % 255);
    w->corrupted++;
  }
  if (chance(w, w->reorder_pct)) {
    /* Hold it back behind later datagrams. */
    p->deliver_at += 1 * UVQ_MILLISECONDS + qt_rand(w) % (2 * UVQ_MILLISECONDS);
    w->reordered++;
  }
  if (chance(w, w->dup_pct)) {
    qt_pkt *d = malloc(sizeof(*d) + len);
    if (d) {
      memcpy(d, p, sizeof(*d) + len);
      d->deliver_at += qt_rand(w) % UVQ_MILLISECONDS;
      enqueue(w, d);
      w->duplicated++;
    }
  }
  enqueue(w, p);
}

static size_t path_mtu(uvq_endpoint *ep, const uvq_path *path,
                       void *user_data) {
  qt_node *n = user_data;
  (void)ep;
  (void)path;
  return n->w->link_mtu;
}

static ssize_t send_cb(uvq_endpoint *ep, const uvq_send_batch *b,
                       void *user_data) {
  qt_node *n = user_data;
  (void)ep;
  if (n->send_blocked) {
    return 0;
  }
  if (b->count > 1 && b->segment_size > n->w->max_batch_segment) {
    n->w->max_batch_segment = b->segment_size;
  }
  for (size_t i = 0; i < b->count; i++) {
    size_t off = i * b->segment_size;
    size_t len =
        b->datalen - off < b->segment_size ? b->datalen - off : b->segment_size;
    wire_send(n->w, n->idx, b->path, b->data + off, len);
    n->sent++;
    n->bytes_sent += len;
  }
  return (ssize_t)b->count;
}

void qt_world_init(qt_world *w, uint64_t seed) {
  static const char *const alpn[] = {"test", "hq-interop"};
  qt_world_init_alpn(w, seed, alpn, 2);
}

void qt_world_init_alpn(qt_world *w, uint64_t seed, const char *const *alpn,
                        size_t nalpn) {
  uvq_tls_config cfg;
  char err[256];
  memset(w, 0, sizeof(*w));
  w->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
  w->seed = w->rng;
  w->now = 1000 * UVQ_SECONDS;
  w->wall = 1700000000;
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn;
  cfg.alpnlen = nalpn;
  cfg.wall_time = tls_wall_time;
  cfg.user_data = w;
  if (uvq_tls_ctx_new(&w->server_tls, 1, &cfg, NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "qtest: server TLS: %s\n", err);
    abort();
  }
  cfg.insecure = 1;
  if (uvq_tls_ctx_new(&w->client_tls, 0, &cfg, NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "qtest: client TLS: %s\n", err);
    abort();
  }
}

void qt_world_free(qt_world *w) {
  for (int i = 0; i < w->nnodes; i++) {
    uvq_endpoint_del(w->nodes[i].ep);
  }
  while (w->queue) {
    qt_pkt *p = w->queue;
    w->queue = p->next;
    free(p);
  }
  uvq_tls_ctx_del(w->server_tls);
  uvq_tls_ctx_del(w->client_tls);
}

void qt_fill_rand(uint64_t *state, uint8_t *dest, size_t len) {
  for (size_t i = 0; i < len; i++) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    dest[i] = (uint8_t)(z ^ (z >> 31));
  }
}

uint64_t qt_hash(const uint8_t *data, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h = (h ^ data[i]) * 0x100000001b3ull;
  }
  /* splitmix64's finaliser: short inputs still spread over 64 bits. */
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

void qt_world_reseed(qt_world *w, const uint8_t *data, size_t len) {
  uint64_t h = qt_hash(data, len);
  w->rng = h ? h : 1; /* xorshift must not start at 0 */
  for (int i = 0; i < w->nnodes; i++) {
    w->nodes[i].rand_state = h * 0x100000001b3ull + (uint64_t)i;
  }
}

/* uvq_endpoint_config.rand of a node in a seeded world: splitmix64. */
static int node_rand(uint8_t *dest, size_t len, int key, void *user_data) {
  qt_node *n = user_data;
  (void)key;
  qt_fill_rand(&n->rand_state, dest, len);
  return 0;
}

static int
add_node(qt_world *w, int is_server, const uvq_settings *settings,
         int (*on_accept)(uvq_endpoint *, uvq_conn *, const uvq_accept_info *,
                          const uvq_app_callbacks **, void **, void *),
         void *user_data, uint16_t port) {
  qt_node *n = &w->nodes[w->nnodes];
  uvq_endpoint_config cfg;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uvq_addr_set(&n->addr, (struct sockaddr *)&sa, sizeof(sa));
  n->w = w;
  n->idx = w->nnodes;
  n->user_data = user_data;
  uvq_endpoint_config_default(&cfg);
  cfg.is_server = is_server;
  cfg.settings = settings;
  if (w->seeded_rand) {
    n->rand_state = w->seed * 0x100000001b3ull + (uint64_t)n->idx;
    cfg.rand = node_rand;
  }
  cfg.tls = is_server ? w->server_tls : w->client_tls;
  cfg.user_data = n;
  cfg.send = send_cb;
  cfg.wall_time = wall_time;
  cfg.on_accept = on_accept;
  cfg.mem = w->mem;
  if (w->link_mtu) {
    cfg.path_mtu = path_mtu;
  }
  w->last_add_error = uvq_endpoint_new(&n->ep, &cfg);
  if (w->last_add_error != 0) {
    n->ep = NULL;
    return -1;
  }
  return w->nnodes++;
}

int qt_add_server(qt_world *w, const uvq_settings *settings,
                  int (*on_accept)(uvq_endpoint *, uvq_conn *,
                                   const uvq_accept_info *,
                                   const uvq_app_callbacks **, void **, void *),
                  void *user_data) {
  return add_node(w, 1, settings, on_accept, user_data,
                  (uint16_t)(4433 + w->nnodes));
}

int qt_add_client(qt_world *w, const uvq_settings *settings, void *user_data) {
  return add_node(w, 0, settings, NULL, user_data,
                  (uint16_t)(50000 + w->nnodes));
}

int qt_connect_params(qt_world *w, int c, int s,
                      const uvq_connect_params *params, uvq_conn **pconn) {
  uvq_connect_params p = *params;
  uvq_path path;
  path.local = w->nodes[c].addr;
  path.remote = w->nodes[s].addr;
  if (p.path == NULL) {
    p.path = &path;
  }
  if (p.server_name == NULL) {
    p.server_name = "localhost";
  }
  return uvq_endpoint_connect(w->nodes[c].ep, &p, w->now, pconn);
}

int qt_connect(qt_world *w, int c, int s, const uvq_app_callbacks *cb,
               void *user_data, uvq_conn **pconn) {
  uvq_connect_params p;
  uvq_connect_params_default(&p);
  p.callbacks = cb;
  p.user_data = user_data;
  return qt_connect_params(w, c, s, &p, pconn);
}

void qt_inject(qt_world *w, int dst, const uvq_addr *from, const uint8_t *data,
               size_t len) {
  uvq_path path;
  path.local = w->nodes[dst].addr;
  path.remote = *from;
  uvq_endpoint_recv(w->nodes[dst].ep, &path, 0, data, len, 0, w->now);
}

static void flush_all(qt_world *w) {
  for (int i = 0; i < w->nnodes; i++) {
    w->flushes++;
    uvq_endpoint_flush(w->nodes[i].ep, w->now);
  }
}

/* Expiry rounds in a row at one instant, with nothing delivered, after
 * which qt_run reports the fake clock stuck. A connection may be due again
 * at the instant it was handled (a pacing deadline in the past, say: a
 * round or two), but a timer that stays due — one ngtcp2 reports at T and
 * acts on only after T — would spin forever. */
#define QT_STUCK_ROUNDS 64

int qt_run(qt_world *w, int (*done)(void *ud), void *ud, uvq_tstamp limit) {
  uvq_tstamp end = w->now + limit;
  int stuck = 0;
  for (;;) {
    uvq_tstamp next = UVQ_TSTAMP_MAX;
    int delivered = 0;
    flush_all(w);
    if (done && done(ud)) {
      return 1;
    }
    /* Deliver everything due now, per destination in one receive batch. */
    while (w->queue && w->queue->deliver_at <= w->now) {
      qt_pkt *p = w->queue;
      w->queue = p->next;
      if (getenv("QT_TRACE")) {
        fprintf(stderr, "qt: t=%.6f deliver -> node %d len %zu b0=%02x\n",
                (double)(w->now % (1000 * UVQ_SECONDS)) / 1e9, p->dst, p->len,
                p->data[0]);
      }
      uvq_endpoint_recv(w->nodes[p->dst].ep, &p->path, 0, p->data, p->len, 0,
                        w->now);
      w->delivered++;
      delivered = 1;
      free(p);
    }
    if (delivered) {
      stuck = 0;
      continue;
    }
    if (w->queue) {
      next = w->queue->deliver_at;
    }
    for (int i = 0; i < w->nnodes; i++) {
      uvq_tstamp e = uvq_endpoint_next_expiry(w->nodes[i].ep);
      if (e < next) {
        next = e;
      }
    }
    if (next == UVQ_TSTAMP_MAX) {
      return done ? done(ud) : 0;
    }
    if (next > end) {
      w->now = end;
      return done ? done(ud) : 0;
    }
    if (next > w->now) {
      w->now = next;
      stuck = 0;
    } else if (++stuck > QT_STUCK_ROUNDS) {
      fprintf(stderr,
              "qtest: fake clock stuck at %llu ns: a timer due now is "
              "reported again after handling\n",
              (unsigned long long)w->now);
      abort();
    }
    for (int i = 0; i < w->nnodes; i++) {
      uvq_endpoint_handle_expiry(w->nodes[i].ep, w->now);
    }
  }
}

void qt_sha256_hex(const uint8_t *d, char out[65]) {
  for (int i = 0; i < 32; i++) {
    snprintf(out + 2 * i, 3, "%02x", d[i]);
  }
}

uint8_t qt_pattern_byte(uint32_t seed, uint64_t off) {
  uint64_t x = (off / 8 + 1) * 0x9e3779b97f4a7c15ull ^ seed;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  return (uint8_t)(x >> ((off % 8) * 8));
}

void qt_pattern_fill(uint32_t seed, uint64_t off, uint8_t *buf, size_t len) {
  for (size_t i = 0; i < len; i++) {
    buf[i] = qt_pattern_byte(seed, off + i);
  }
}

void qt_pattern_sha256(uint32_t seed, uint64_t len, uint8_t out[32]) {
  gnutls_hash_hd_t h;
  uint8_t buf[65536];
  if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) != 0) {
    abort();
  }
  for (uint64_t off = 0; off < len; off += sizeof(buf)) {
    size_t n = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
    qt_pattern_fill(seed, off, buf, n);
    gnutls_hash(h, buf, n);
  }
  gnutls_hash_deinit(h, out);
}
