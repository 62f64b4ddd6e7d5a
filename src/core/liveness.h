/*
 * Liveness (liveness.c): the path watchdog, the stall timeout and stream
 * keep-alive.
 */
#ifndef UVQ_CORE_LIVENESS_H
#define UVQ_CORE_LIVENESS_H

#include "core/core.h"

/* liveness.c: after each datagram read (|path| it came on), at each
 * write pass, the earliest deadline it adds to the connection's expiry,
 * what is due at |now|, and ngtcp2's path-validation result. */
void uvq_live_init(uvq_conn *conn, uvq_tstamp now);
void uvq_live_on_recv(uvq_conn *conn, const uvq_path *path, uvq_tstamp now);
void uvq_live_on_write(uvq_conn *conn, uvq_tstamp now);
uvq_tstamp uvq_live_deadline(const uvq_conn *conn);
void uvq_live_expiry(uvq_conn *conn, uvq_tstamp now);
void uvq_live_path_validated(uvq_conn *conn, const uvq_addr *remote);

#endif
