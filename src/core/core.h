/*
 * Internal definitions every part of the sans-I/O core shares: datagram
 * sizes and the types the per-module headers refer to each other by.
 * Each module has its own header (conn.h, endpoint.h, stream.h, ...);
 * nothing here is public API.
 */
#ifndef UVQ_CORE_CORE_H
#define UVQ_CORE_CORE_H

#include "uvquic/uvquic.h"

/* Largest datagram a stateless answer (Version Negotiation, Retry,
 * stateless reset, a refusal's CONNECTION_CLOSE) or uvq_raw ever holds.
 * Connections may send up to UVQ_MAX_UDP_PAYLOAD (uvquic.h). */
#define UVQ_MAX_DATAGRAM 1500
/* The ceiling of path MTU discovery where nothing says more: a 1500-byte
 * Ethernet MTU less the IPv6 and UDP headers (ngtcp2's own default). */
#define UVQ_DEFAULT_UDP_PAYLOAD 1452
/* Smallest datagram that may carry a client Initial (RFC 9000 §14.1). */
#define UVQ_MIN_INITIAL_DATAGRAM 1200
/* active_connection_id_limit we advertise (a 0-RTT limit: endpoint.c
 * hashes it into the ticket key). */
#define UVQ_ACTIVE_CID_LIMIT 8

typedef struct uvq_stream uvq_stream;     /* stream.h */
typedef struct uvq_source uvq_source;     /* sources.h */
typedef struct uvq_wake_hub uvq_wake_hub; /* waker.h */

#endif
