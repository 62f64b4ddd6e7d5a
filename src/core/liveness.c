/*
 * Liveness: connections that would otherwise wait out their idle timeout,
 * or forever, on a path that no longer carries anything.
 *
 * The path watchdog. When the peer's datagrams start coming from an
 * address other than the one we last know works (a NAT rebinding, a
 * migration), ngtcp2 validates the new path. ngtcp2 1.x can stall there
 * for good: amplification-limited on the unvalidated path with a full
 * congestion window, it cancels its loss-detection timer, writes no
 * PATH_CHALLENGE (ngtcp2_conn_write_vmsg skips conn_write_path_challenge
 * when the window is zero and no probe is due) and so never times the
 * validation out, or falls back to an old path the peer has left; it then
 * answers the peer's packets with ACKs only, and a peer that keeps sending
 * (keep-alive) keeps the idle timer from ever firing. The 1.11 API offers
 * no way out (no call forces a probe or a loss declaration), so:
 *   - the watchdog arms at the first datagram from a new address and
 *     disarms when ngtcp2 reports that path validated (or the peer is back
 *     on the known-good address);
 *   - it fires after three of ngtcp2's own path-validation timeouts
 *     (each 3 x max(PTO, the initial PTO), the RFC 9000 §8.2.4 figure):
 *     a validation that had its chance fails after one and ngtcp2 falls
 *     back; a second one, started by the peer's next packets, is allowed
 *     its full timeout too; nothing that has not resolved after three is
 *     going to;
 *   - then the connection closes with NO_VIABLE_PATH, written as soon as
 *     the peer's next datagram arrives (the only moment the unvalidated
 *     path has amplification credit) and sent to where it came from, and
 *     repeated in answer to the peer's datagrams until the idle timeout;
 *     if no datagram comes within one more validation timeout, the
 *     connection ends silently. Both counted.
 *
 * The stall timeout and stream keep-alive (settings.stall_timeout,
 * settings.stream_keep_alive): while a stream is open, PING the peer after
 * stream_keep_alive of silence, and close with NO_VIABLE_PATH once nothing
 * at all has arrived for stall_timeout.
 */
#include "core/core.h"

/* One of ngtcp2's path-validation timeouts, as ngtcp2 1.11 computes it:
 * 3 x max(PTO, the PTO of the initial RTT). */
static uvq_tstamp pv_timeout(const uvq_conn *conn) {
  const ngtcp2_transport_params *rp =
      ngtcp2_conn_get_remote_transport_params(conn->q);
  uvq_tstamp rtt = conn->ep->settings.initial_rtt;
  uvq_tstamp initial = rtt + 2 * rtt + (rp ? rp->max_ack_delay : 0);
  uvq_tstamp pto = ngtcp2_conn_get_pto(conn->q);

  return 3 * (pto > initial ? pto : initial);
}

void uvq_live_init(uvq_conn *conn, uvq_tstamp now) {
  conn->live.last_rx = now;
  conn->live.path_due = UVQ_TSTAMP_MAX;
  conn->live.drop_due = UVQ_TSTAMP_MAX;
}

void uvq_live_on_recv(uvq_conn *conn, const uvq_path *path, uvq_tstamp now) {
  conn->live.last_rx = now;
  if (!conn->handshake_completed || conn->stage >= UVQ_STAGE_CLOSING) {
    return;
  }
  if (!conn->live.have_good) {
    conn->live.good_remote = path->remote;
    conn->live.have_good = 1;
    return;
  }
  if (conn->live.path_stalled) {
    /* This datagram gave the path the credit a close needs. */
    conn->close_to = *path;
    conn->close_to_set = 1;
    conn->ep->stats.paths_stalled++;
    uvq_stage_close_transport(conn, UVQ_ERR_PATH_STALLED, NGTCP2_NO_VIABLE_PATH,
                              "no viable path", now);
    /* The close may be lost on the way, as everything was: the closing
     * period answers the peer's datagrams with it (ever less often) until
     * the idle timeout, the bound the peer itself works with, rather than
     * for the usual 3 x PTO. */
    if (conn->stage == UVQ_STAGE_CLOSING &&
        now + conn->ep->settings.idle_timeout > conn->close_deadline) {
      conn->close_deadline = now + conn->ep->settings.idle_timeout;
    }
    return;
  }
  if (uvq_addr_eq(&path->remote, &conn->live.good_remote)) {
    conn->live.path_due = UVQ_TSTAMP_MAX;
  } else if (conn->live.path_due == UVQ_TSTAMP_MAX) {
    conn->live.path_due = now + 3 * pv_timeout(conn);
  }
}

void uvq_live_path_validated(uvq_conn *conn, const uvq_addr *remote) {
  conn->live.good_remote = *remote;
  conn->live.have_good = 1;
  conn->live.path_due = UVQ_TSTAMP_MAX;
  conn->live.path_stalled = 0;
  conn->live.drop_due = UVQ_TSTAMP_MAX;
}

void uvq_live_on_write(uvq_conn *conn, uvq_tstamp now) {
  const uvq_settings *st = &conn->ep->settings;
  int busy = conn->streams.len > 0;

  if (busy == conn->live.busy) {
    return;
  }
  conn->live.busy = busy;
  if (busy) {
    /* The stall clock starts now, not at the last datagram of an idle
     * connection. */
    conn->live.busy_since = now;
  }
  if (st->stream_keep_alive) {
    uvq_tstamp ka = busy             ? st->stream_keep_alive
                    : st->keep_alive ? st->keep_alive
                                     : UINT64_MAX;
    ngtcp2_conn_set_keep_alive_timeout(conn->q, ka);
  }
}

static uvq_tstamp stall_due(const uvq_conn *conn) {
  uvq_tstamp t = conn->ep->settings.stall_timeout, from;
  if (t == 0 || !conn->live.busy) {
    return UVQ_TSTAMP_MAX;
  }
  from = conn->live.last_rx > conn->live.busy_since ? conn->live.last_rx
                                                    : conn->live.busy_since;
  return from + t;
}

uvq_tstamp uvq_live_deadline(const uvq_conn *conn) {
  uvq_tstamp e =
      conn->live.path_stalled ? conn->live.drop_due : conn->live.path_due;
  uvq_tstamp s = stall_due(conn);
  return s < e ? s : e;
}

void uvq_live_expiry(uvq_conn *conn, uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;

  if (conn->live.path_stalled) {
    if (now >= conn->live.drop_due) {
      /* No datagram came to carry the close: nothing can reach the
       * peer, so nothing is sent. */
      ep->stats.paths_stalled_dropped++;
      uvq_stage_finish(conn, UVQ_ERR_PATH_STALLED, UVQ_CLOSE_LOCAL);
    }
    return;
  }
  if (now >= conn->live.path_due) {
    conn->live.path_stalled = 1;
    conn->live.path_due = UVQ_TSTAMP_MAX;
    conn->live.drop_due = now + pv_timeout(conn);
    uvq_log(ep, UVQ_LOG_INFO, conn->m.scid_hex,
            "path stalled: the peer's new path was not validated; closing "
            "with its next datagram");
    return;
  }
  if (now >= stall_due(conn)) {
    ep->stats.stalls++;
    uvq_stage_close_transport(conn, UVQ_ERR_STALLED, NGTCP2_NO_VIABLE_PATH,
                              "stalled", now);
  }
}
