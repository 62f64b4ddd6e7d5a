/*
 * The router (router.c): parses the first packet's header and hands a
 * datagram to its connection, the acceptor, or the reset check.
 */
#ifndef UVQ_CORE_ROUTER_H
#define UVQ_CORE_ROUTER_H

#include "core/core.h"

typedef struct uvq_pkt_view {
  int is_long;
  uint32_t version;
  /* Long packet type, in v1's numbering whatever the version (RFC 9369
   * §3.2 renumbers them): 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry. */
  uint8_t long_type;
  const uint8_t *dcid;
  size_t dcidlen;
  const uint8_t *scid;
  size_t scidlen;
} uvq_pkt_view;

/* Whether |version| is in |st|->quic_versions. */
int uvq_version_ok(const uvq_settings *st, uint32_t version);

/* uvq_pkt_parse reads the routing fields of the first packet in |data|.
 * Returns 0, or -1 if it cannot be routed, with the reason to count the
 * drop under in *preason. */
int uvq_pkt_parse(uvq_pkt_view *v, const uint8_t *data, size_t len,
                  size_t short_dcidlen, uvq_drop_reason *preason);
void uvq_router_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                     const uint8_t *data, size_t len, uvq_tstamp now);

#endif
