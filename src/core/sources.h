/*
 * Per-source admission (server, sources.c): handshakes and connections
 * counted per source address under a keyed hash.
 */
#ifndef UVQ_CORE_SOURCES_H
#define UVQ_CORE_SOURCES_H

#include "core/core.h"

typedef struct uvq_sources {
  uvq_source **buckets;
  size_t nbuckets, count;
  uint64_t k0, k1;
  const uvq_mem *mem;
} uvq_sources;

/* uvq_sources_init keys the table's hash with |key| (secret,
 * random); uvq_sources_admit says whether |remote|'s source may start
 * another handshake (0, or UVQ_ERR_CONNECTION_LIMIT, counted by reason);
 * uvq_sources_add counts a new server connection under its source;
 * handshake_done and remove uncount it (idempotent). */
void uvq_sources_init(uvq_sources *t, const uvq_mem *mem,
                      const uint64_t key[2]);
void uvq_sources_free(uvq_sources *t);
int uvq_sources_admit(uvq_endpoint *ep, const uvq_addr *remote);
int uvq_sources_add(uvq_endpoint *ep, uvq_conn *conn);
void uvq_sources_handshake_done(uvq_conn *conn);
void uvq_sources_remove(uvq_conn *conn);

#endif
