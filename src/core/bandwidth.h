/*
 * Bandwidth / utilisation estimator (tokio-quiche's utilization_estimator):
 * per-round goodput and loss, max-filtered over the last N rounds.
 *
 * A round lasts one smoothed RTT (at least UVQ_BW_MIN_ROUND) of the
 * caller's clock and ends at the first acknowledgement-processing point
 * past that deadline, so its length is measured, not assumed. ngtcp2
 * reports acknowledgements per stream range, not per packet (1.11: the
 * acked_stream_data_offset callback; none is per packet), so "a packet
 * sent after the round began was acknowledged" cannot be observed; the
 * RTT clock is the round definition here.
 *
 * The module is pure arithmetic on cumulative counters the caller keeps:
 * it never reads a clock or a connection.
 */
#ifndef UVQ_CORE_BANDWIDTH_H
#define UVQ_CORE_BANDWIDTH_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

/* Longest window the max filter can span (settings.bw_window_rounds). */
#define UVQ_BW_MAX_ROUNDS 32
/* Default window. */
#define UVQ_BW_DEFAULT_ROUNDS 10
/* Shortest round: keeps rates meaningful when the RTT is tiny or unknown. */
#define UVQ_BW_MIN_ROUND (1 * UVQ_MILLISECONDS)

/* Cumulative counters sampled at round boundaries. */
typedef struct uvq_bw_sample {
  uint64_t sent;   /* stream bytes handed to the transport (first sends) */
  uint64_t acked;  /* stream bytes acknowledged */
  uint64_t dgrams; /* datagrams sent */
  uint64_t lost;   /* packets with STREAM frames declared lost */
} uvq_bw_sample;

typedef struct uvq_bw_round {
  uint64_t bw;     /* min(ack rate, send rate), bytes/s */
  uint64_t dgrams; /* datagrams sent during the round */
  uint64_t lost;   /* losses declared during the round */
} uvq_bw_round;

typedef struct uvq_bw {
  size_t window;    /* rounds in the filter, 1..UVQ_BW_MAX_ROUNDS */
  uvq_tstamp start; /* when the current round began */
  uvq_bw_sample at; /* counters when it began */
  uvq_bw_round rounds[UVQ_BW_MAX_ROUNDS]; /* ring of finished rounds */
  size_t next;      /* ring slot the next finished round goes to */
  uint64_t nrounds; /* rounds finished so far */
} uvq_bw;

/* Starts the first round at |now|. |window| 0 means the default; values
 * above UVQ_BW_MAX_ROUNDS are clamped. */
void uvq_bw_init(uvq_bw *bw, size_t window, uvq_tstamp now);

/* Nonzero if the current round, with smoothed RTT |rtt| (ns), is over. */
int uvq_bw_round_due(const uvq_bw *bw, uvq_tstamp now, uint64_t rtt);

/* Ends the current round at |now| with cumulative counters |s| and starts
 * the next one. */
void uvq_bw_end_round(uvq_bw *bw, uvq_tstamp now, const uvq_bw_sample *s);

/* The largest per-round estimate in the window (bytes/s); 0 before the
 * first round ends. */
uint64_t uvq_bw_max(const uvq_bw *bw);

/* Losses declared during the window's rounds divided by datagrams sent
 * during them (0 if none were sent). */
double uvq_bw_loss(const uvq_bw *bw);

#endif
