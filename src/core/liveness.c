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
 *     if no datagram comes within one more validation timeout (2 s at
 *     least), the connection ends silently. Both counted.
 * Only datagrams with a packet that decrypted count (conn.c, cb_decrypt):
 * ngtcp2_conn_read_pkt returns 0 for packets it dropped too, and an
 * off-path sender must not move the watchdog or where the close goes.
 *
 * The stall timeout and stream keep-alive (settings.stall_timeout,
 * settings.stream_keep_alive): while a stream is open, PING the peer after
 * stream_keep_alive of silence, and close with NO_VIABLE_PATH once nothing
 * at all has arrived for stall_timeout.
 */
#include "core/liveness.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/metrics.h"
#include "core/stage.h"

/* a + b, or the largest time if that overflows. */
static uvq_tstamp sat_add(uvq_tstamp a, uvq_tstamp b) {
  return a > UVQ_TSTAMP_MAX - b ? UVQ_TSTAMP_MAX : a + b;
}

/* How long a connection stalled on a path waits for a datagram to carry
 * its close: one path-validation timeout, but at least this long, so a
 * peer that PINGs every second or two is still answered. */
#define UVQ_STALL_CLOSE_WAIT (2 * UVQ_SECONDS)

/* The idle timeout both sides agreed on (0: none). */
static uvq_tstamp idle_timeout(const uvq_conn *conn) {
  const ngtcp2_transport_params *rp =
      ngtcp2_conn_get_remote_transport_params(conn->ngconn);
  uvq_tstamp t = conn->ep->settings.idle_timeout;
  if (rp && rp->max_idle_timeout && (t == 0 || rp->max_idle_timeout < t)) {
    t = rp->max_idle_timeout;
  }
  return t;
}

/* One of ngtcp2's path-validation timeouts, as ngtcp2 1.11 computes it:
 * 3 x max(PTO, the PTO of the initial RTT). */
static uvq_tstamp pv_timeout(const uvq_conn *conn) {
  const ngtcp2_transport_params *rp =
      ngtcp2_conn_get_remote_transport_params(conn->ngconn);
  uvq_tstamp rtt = conn->ep->settings.initial_rtt;
  uvq_tstamp initial = rtt + 2 * rtt + (rp ? rp->max_ack_delay : 0);
  uvq_tstamp pto = ngtcp2_conn_get_pto(conn->ngconn);

  return 3 * (pto > initial ? pto : initial);
}

void uvq_live_init(uvq_conn *conn, uvq_tstamp now) {
  conn->live.last_rx = now;
  conn->live.path_due = UVQ_TSTAMP_MAX;
  conn->live.drop_due = UVQ_TSTAMP_MAX;
}

/* Called for datagrams with a packet that decrypted only (conn.c). */
void uvq_live_on_recv(uvq_conn *conn, const uvq_path *path, uvq_tstamp now) {
  uvq_tstamp idle;

  conn->live.last_rx = now;
  /* The watchdog is a server's: a client's peer address only changes with
   * a preferred address, which ngtcp2 validates and reports. */
  if (!conn->is_server || !(conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) ||
      conn->stage >= UVQ_STAGE_CLOSING) {
    return;
  }
  if (!conn->live.have_good) {
    /* The path the handshake completed on, as ngtcp2 has it. */
    uvq_path cur;
    if (uvq_path_from_ngtcp2(&cur, ngtcp2_conn_get_path(conn->ngconn)) != 0) {
      return;
    }
    conn->live.good_remote = cur.remote;
    conn->live.have_good = 1;
  }
  if (uvq_addr_eq(&path->remote, &conn->live.good_remote)) {
    /* The peer is (back) where it is known to work. */
    conn->live.path_due = UVQ_TSTAMP_MAX;
    conn->live.path_stalled = 0;
    conn->live.drop_due = UVQ_TSTAMP_MAX;
    return;
  }
  if (!conn->live.path_stalled) {
    if (conn->live.path_due == UVQ_TSTAMP_MAX) {
      conn->live.path_due = sat_add(now, 3 * pv_timeout(conn));
    }
    return;
  }
  /* Stalled: this datagram gave the path the credit a close needs. */
  conn->close_to = *path;
  conn->flags |= UVQ_CONN_FLAG_CLOSE_TO_SET;
  conn->ep->stats.paths_stalled++;
  uvq_stage_close_transport(conn, UVQ_ERR_PATH_STALLED, NGTCP2_NO_VIABLE_PATH,
                            "no viable path", now);
  /* The close may be lost on the way, as everything was: the closing
   * period answers the peer's datagrams with it (ever less often) until
   * the idle timeout both sides agreed on, the bound the peer itself works
   * with, rather than for the usual 3 x PTO. */
  idle = sat_add(now, idle_timeout(conn));
  if (conn->stage == UVQ_STAGE_CLOSING && idle > conn->close_deadline) {
    conn->close_deadline = idle;
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
  /* Requests: HTTP/3's control and QPACK streams are unidirectional and
   * stay open for the connection's life. */
  int busy = conn->open_bidi > 0;

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
    uvq_tstamp ka = st->keep_alive ? st->keep_alive : UINT64_MAX;
    if (busy && st->stream_keep_alive < ka) {
      ka = st->stream_keep_alive;
    }
    ngtcp2_conn_set_keep_alive_timeout(conn->ngconn, ka);
  }
}

static uvq_tstamp stall_due(const uvq_conn *conn) {
  uvq_tstamp t = conn->ep->settings.stall_timeout, from;
  if (t == 0 || !conn->live.busy) {
    return UVQ_TSTAMP_MAX;
  }
  from = conn->live.last_rx > conn->live.busy_since ? conn->live.last_rx
                                                    : conn->live.busy_since;
  return sat_add(from, t);
}

uvq_tstamp uvq_live_deadline(const uvq_conn *conn) {
  uvq_tstamp s;
  if (conn->live.path_stalled) {
    return conn->live.drop_due; /* the connection ends by then anyway */
  }
  s = stall_due(conn);
  return s < conn->live.path_due ? s : conn->live.path_due;
}

void uvq_live_expiry(uvq_conn *conn, uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;
  uvq_tstamp wait;

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
    wait = pv_timeout(conn);
    conn->live.path_stalled = 1;
    conn->live.path_due = UVQ_TSTAMP_MAX;
    conn->live.drop_due =
        sat_add(now, wait > UVQ_STALL_CLOSE_WAIT ? wait : UVQ_STALL_CLOSE_WAIT);
    uvq_log(ep, UVQ_LOG_INFO, conn->metrics.scid_hex,
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
