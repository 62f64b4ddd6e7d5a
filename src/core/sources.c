/*
 * Admission by source: how many handshakes and connections each client
 * source has on a server endpoint, so one host (or one spoofed address, or
 * one /64) cannot take the whole endpoint. A source is an IPv4 address
 * (IPv4-mapped IPv6 addresses on dual-stack sockets count as IPv4) or an
 * IPv6 /64, the unit an ISP hands one customer.
 *
 * Entries exist only while the source has a connection, so the table is
 * bounded by max_connections; buckets are chained, the hash is SipHash
 * with a per-endpoint random key, so an attacker cannot aim at one bucket.
 */
#include <netinet/in.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "core/cid_map.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/mem.h"
#include "core/sources.h"

struct uvq_source {
  uvq_source *next;
  uint8_t key[16];
  uint32_t handshakes; /* connections of it still in their handshake */
  uint32_t conns;      /* all its connections, handshakes included */
};

/* The source key of |a|: 16 bytes, IPv4 as ::ffff:a.b.c.d, IPv6 as its
 * first 64 bits and zeros. */
static void source_key(uint8_t key[16], const uvq_addr *a) {
  memset(key, 0, 16);
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *in =
        (const struct sockaddr_in *)(const void *)&a->ss;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &in->sin_addr, 4);
  } else if (a->ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 =
        (const struct sockaddr_in6 *)(const void *)&a->ss;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      memcpy(key, &in6->sin6_addr, 16);
    } else {
      memcpy(key, &in6->sin6_addr, 8);
    }
  }
}

static size_t bucket_of(const uvq_sources *t, const uint8_t key[16]) {
  return (size_t)uvq_siphash13(t->k0, t->k1, key, 16) & (t->nbuckets - 1);
}

void uvq_sources_init(uvq_sources *t, const uvq_mem *mem,
                      const uint64_t key[2]) {
  memset(t, 0, sizeof(*t));
  t->mem = mem;
  t->k0 = key[0];
  t->k1 = key[1];
}

void uvq_sources_free(uvq_sources *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    uvq_source *s = t->buckets[i];
    while (s) {
      uvq_source *next = s->next;
      uvq_free(t->mem, s);
      s = next;
    }
  }
  uvq_free(t->mem, t->buckets);
  memset(t, 0, sizeof(*t));
}

static uvq_source *find(const uvq_sources *t, const uint8_t key[16]) {
  uvq_source *s;
  if (t->nbuckets == 0) {
    return NULL;
  }
  for (s = t->buckets[bucket_of(t, key)]; s; s = s->next) {
    if (memcmp(s->key, key, 16) == 0) {
      return s;
    }
  }
  return NULL;
}

/* Doubles the bucket array once entries outnumber buckets. */
static void grow(uvq_sources *t) {
  size_t n = t->nbuckets ? t->nbuckets * 2 : 64;
  uvq_source **b;
  if (t->count < t->nbuckets) {
    return;
  }
  /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
  b = uvq_calloc(t->mem, n, sizeof(*b));
  if (b == NULL) {
    return; /* longer chains, nothing lost */
  }
  for (size_t i = 0; i < t->nbuckets; i++) {
    uvq_source *s = t->buckets[i];
    while (s) {
      uvq_source *next = s->next;
      size_t j = (size_t)uvq_siphash13(t->k0, t->k1, s->key, 16) & (n - 1);
      s->next = b[j];
      b[j] = s;
      s = next;
    }
  }
  uvq_free(t->mem, t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

int uvq_sources_admit(uvq_endpoint *ep, const uvq_addr *remote) {
  const uvq_settings *st = &ep->settings;
  uint8_t key[16];
  uvq_source *s;

  source_key(key, remote);
  s = find(&ep->sources, key);
  if (s == NULL) {
    return 0;
  }
  if (st->max_handshakes_per_source &&
      s->handshakes >= st->max_handshakes_per_source) {
    ep->stats.refused_source_handshakes++;
    return UVQ_ERR_CONNECTION_LIMIT;
  }
  if (st->max_connections_per_source &&
      s->conns >= st->max_connections_per_source) {
    ep->stats.refused_source_connections++;
    return UVQ_ERR_CONNECTION_LIMIT;
  }
  return 0;
}

int uvq_sources_add(uvq_endpoint *ep, uvq_conn *conn) {
  uvq_sources *t = &ep->sources;
  uint8_t key[16];
  uvq_source *s;

  source_key(key, &conn->path.remote);
  s = find(t, key);
  if (s == NULL) {
    s = uvq_calloc(t->mem, 1, sizeof(*s));
    if (s == NULL) {
      return UVQ_ERR_NOMEM;
    }
    memcpy(s->key, key, 16);
    grow(t);
    if (t->nbuckets == 0) {
      uvq_free(t->mem, s);
      return UVQ_ERR_NOMEM;
    }
    size_t b = bucket_of(t, key);
    s->next = t->buckets[b];
    t->buckets[b] = s;
    t->count++;
  }
  s->conns++;
  s->handshakes++;
  conn->source = s;
  conn->flags |= UVQ_CONN_FLAG_SOURCE_IN_HANDSHAKE;
  return 0;
}

void uvq_sources_handshake_done(uvq_conn *conn) {
  if (conn->source && (conn->flags & UVQ_CONN_FLAG_SOURCE_IN_HANDSHAKE)) {
    conn->source->handshakes--;
  }
  conn->flags &= ~UVQ_CONN_FLAG_SOURCE_IN_HANDSHAKE;
}

void uvq_sources_remove(uvq_conn *conn) {
  uvq_sources *t = &conn->ep->sources;
  uvq_source *s = conn->source, **pp;

  if (s == NULL) {
    return;
  }
  uvq_sources_handshake_done(conn);
  conn->source = NULL;
  if (--s->conns > 0) {
    return;
  }
  for (pp = &t->buckets[bucket_of(t, s->key)]; *pp; pp = &(*pp)->next) {
    if (*pp == s) {
      *pp = s->next;
      t->count--;
      uvq_free(t->mem, s);
      return;
    }
  }
}
