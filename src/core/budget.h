/*
 * Receive budgets, the idle list and admission under memory pressure
 * (budget.c).
 */
#ifndef UVQ_CORE_BUDGET_H
#define UVQ_CORE_BUDGET_H

#include "core/core.h"

/* budget.c: the credit for |n| bytes |conn| delivered on |stream_id|
 * (|s| may be NULL), returned now or owed while its reads pause; the idle
 * list kept up to date (after open_bidi, stage or close_requested change);
 * admission under memory pressure (0: admit, having closed the
 * longest-idle connection if pressed; UVQ_ERR_CONNECTION_LIMIT: refuse,
 * counted); and a connection leaving its lists and its receive hold
 * (uvq_conn_del, after its streams are freed: uvq_stream_table_free takes
 * its send buffers off the endpoint's total). */
void uvq_budget_recv_credit(uvq_conn *conn, uvq_stream *s, int64_t stream_id,
                            size_t n);
void uvq_budget_idle_update(uvq_conn *conn);
int uvq_budget_admit(uvq_endpoint *ep, uvq_tstamp now);
/* Nonzero under memory pressure: an endpoint budget at 90 % or more. */
int uvq_budget_pressed(const uvq_endpoint *ep);
void uvq_budget_conn_gone(uvq_conn *conn);

#endif
