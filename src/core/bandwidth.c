/*
 * Bandwidth / utilisation estimator: see bandwidth.h for the definitions.
 * Each round yields min(ack rate, send rate): the ack rate alone overstates
 * what the path carries when acknowledgements arrive bunched (a filled
 * gap releases a burst of stream ranges at once); the send rate alone
 * overstates it in slow start, when we send faster than the path drains.
 */
#include <string.h>

#include "core/bandwidth.h"

void uvq_bw_init(uvq_bw *bw, size_t window, uvq_tstamp now) {
  memset(bw, 0, sizeof(*bw));
  if (window == 0) {
    window = UVQ_BW_DEFAULT_ROUNDS;
  }
  if (window > UVQ_BW_MAX_ROUNDS) {
    window = UVQ_BW_MAX_ROUNDS;
  }
  bw->window = window;
  bw->start = now;
}

int uvq_bw_round_due(const uvq_bw *bw, uvq_tstamp now, uint64_t rtt) {
  if (rtt < UVQ_BW_MIN_ROUND) {
    rtt = UVQ_BW_MIN_ROUND;
  }
  return now >= bw->start && now - bw->start >= rtt;
}

static uint64_t rate(uint64_t bytes, uvq_tstamp dur) {
  return (uint64_t)((double)bytes * (double)UVQ_SECONDS / (double)dur);
}

void uvq_bw_end_round(uvq_bw *bw, uvq_tstamp now, const uvq_bw_sample *s) {
  uvq_bw_round *r = &bw->rounds[bw->next];
  uvq_tstamp dur = now > bw->start ? now - bw->start : 1;
  uint64_t ack_rate = rate(s->acked - bw->at.acked, dur);
  uint64_t send_rate = rate(s->sent - bw->at.sent, dur);

  r->bw = ack_rate < send_rate ? ack_rate : send_rate;
  r->dgrams = s->dgrams - bw->at.dgrams;
  r->lost = s->lost - bw->at.lost;
  bw->next = (bw->next + 1) % bw->window;
  bw->nrounds++;
  bw->at = *s;
  bw->start = now;
}

static size_t filled(const uvq_bw *bw) {
  return bw->nrounds < bw->window ? (size_t)bw->nrounds : bw->window;
}

uint64_t uvq_bw_max(const uvq_bw *bw) {
  uint64_t m = 0;
  for (size_t i = 0; i < filled(bw); i++) {
    if (bw->rounds[i].bw > m) {
      m = bw->rounds[i].bw;
    }
  }
  return m;
}

double uvq_bw_loss(const uvq_bw *bw) {
  uint64_t lost = 0, sent = 0;
  for (size_t i = 0; i < filled(bw); i++) {
    lost += bw->rounds[i].lost;
    sent += bw->rounds[i].dgrams;
  }
  return sent ? (double)lost / (double)sent : 0.0;
}
