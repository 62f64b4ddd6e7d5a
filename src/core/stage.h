/*
 * How a connection ends (stage.c): every way in, the close info, the
 * closing and draining periods.
 */
#ifndef UVQ_CORE_STAGE_H
#define UVQ_CORE_STAGE_H

#include "core/core.h"

/* Ends the connection because of ngtcp2 error |liberr| (local). */
void uvq_stage_fail(uvq_conn *conn, int liberr, uvq_tstamp now);
/* Starts a local close with the connection's requested app error. */
void uvq_stage_close_app(uvq_conn *conn, uvq_tstamp now);
/* The peer closed (ngtcp2 returned DRAINING). */
void uvq_stage_drain(uvq_conn *conn, uvq_tstamp now);
/* Ends the connection at once, without a closing period. */
void uvq_stage_finish(uvq_conn *conn, int error, uvq_close_origin origin);
void uvq_stage_closing_recv(uvq_conn *conn);
/* Closes with transport error |code| (CONNECTION_CLOSE written now) and
 * reports |error| in on_closed; |reason| may be NULL. */
void uvq_stage_close_transport(uvq_conn *conn, int error, uint64_t code,
                               const char *reason, uvq_tstamp now);

#endif
