/*
 * Observability: per-connection counters and the bandwidth estimator,
 * endpoint handshake metrics (failures by reason, duration histogram),
 * the log callback, and the Prometheus writer. The core's paths call the
 * hooks below; nothing here changes protocol behaviour.
 */
#ifndef UVQ_CORE_METRICS_H
#define UVQ_CORE_METRICS_H

#include <ngtcp2/ngtcp2.h>

#include "core/bandwidth.h"
#include "uvquic/uvquic.h"

/* Per-connection counters (uvq_conn.metrics). */
typedef struct uvq_conn_metrics {
  uint64_t bytes_sent, datagrams_sent;         /* taken by the send callback */
  uint64_t bytes_received, datagrams_received; /* routed to the connection */
  uint64_t stream_bytes_sent;     /* first sends handed to ngtcp2 */
  uint64_t stream_bytes_acked;    /* acknowledged stream ranges */
  uint64_t stream_bytes_received; /* delivered in order */
  uint64_t stream_lost_closed;    /* loss counts of destroyed streams */
  uint64_t stream_lost_hwm;       /* keeps the loss sum monotonic */
  uvq_tstamp created;
  uvq_tstamp handshake_duration;
  int handshake_noted;
  char scid_hex[2 * UVQ_MAX_CIDLEN + 1];
  uvq_bw bw;
} uvq_conn_metrics;

/* Per-endpoint logging state (uvq_endpoint.metrics). */
typedef struct uvq_ep_metrics {
  uint64_t drops_logged[UVQ_DROP_REASON_COUNT]; /* counts at the last line */
  uvq_tstamp drop_log_next;                     /* no drop line before this */
} uvq_ep_metrics;

/* Interval between aggregated drop lines. */
#define UVQ_DROP_LOG_INTERVAL (1 * UVQ_SECONDS)

/* Nonzero if settings.log_cb wants lines of |lvl|. */
int uvq_log_enabled(const uvq_endpoint *ep, uvq_log_level lvl);
/* Formats and sends one line to settings.log_cb if |lvl| is enabled.
 * |scid_hex| may be NULL. */
void uvq_log(const uvq_endpoint *ep, uvq_log_level lvl, const char *scid_hex,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* uvq_conn_new: start counting; |scid| names the connection in logs. */
void uvq_metrics_conn_init(uvq_conn *conn, const ngtcp2_cid *scid,
                           uvq_tstamp now);
/* run_on_accept: the application accepted the connection. */
void uvq_metrics_conn_accepted(uvq_conn *conn, const uvq_accept_info *info);
/* uvq_conn_recv, after ngtcp2 read a packet: notes handshake completion
 * (duration, histogram, log) and advances the bandwidth estimator. */
void uvq_metrics_conn_read(uvq_conn *conn, uvq_tstamp now);
/* stage.c, once per connection, when its close info is final: counts
 * handshake failures and logs the close. */
void uvq_metrics_conn_closed(uvq_conn *conn);
/* cb_log: one line of ngtcp2's trace, forwarded at DEBUG. */
void uvq_metrics_ngtcp2_log(uvq_conn *conn, const char *line);
/* Nonzero if ngtcp2's trace is wanted (settings.log, or log_cb at DEBUG). */
int uvq_metrics_want_ngtcp2_log(const uvq_endpoint *ep);
/* uvq_ep_drop: an aggregated DEBUG line at most every interval. */
void uvq_metrics_drop(uvq_endpoint *ep);

#endif
