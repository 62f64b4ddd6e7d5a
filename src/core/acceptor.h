/*
 * The acceptor (acceptor.c): server Initials, Retry, Version Negotiation
 * and admission.
 */
#ifndef UVQ_CORE_ACCEPTOR_H
#define UVQ_CORE_ACCEPTOR_H

#include "core/router.h"

void uvq_acceptor_recv(uvq_endpoint *ep, const uvq_path *path, uint8_t ecn,
                       const uvq_pkt_view *v, const uint8_t *data, size_t len,
                       uvq_tstamp now);
void uvq_acceptor_send_version_negotiation(uvq_endpoint *ep,
                                           const uvq_path *path,
                                           const uvq_pkt_view *v);

#endif
