/*
 * The write half of a connection (tokio-quiche's IoWorker): one pass writes
 * a burst of datagrams into the endpoint's shared buffer, GSO-shaped —
 * equal-size datagrams back to back, a batch ending at a shorter datagram
 * or a change of path or ECN mark — and hands each batch to the driver.
 * What the driver cannot take yet stays with the connection, which writes
 * nothing new until it has drained (ngtcp2 has already committed it).
 * ngtcp2 paces: a burst ends at its send quantum, and ngtcp2's pacing
 * deadline (part of its expiry) brings the connection back for the next.
 */
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/liveness.h"
#include "core/mem.h"
#include "core/stage.h"
#include "core/stream.h"

/* Counts the first |done| datagrams of a batch as sent by |conn|. */
static void count_sent(uvq_conn *conn, size_t len, size_t seg, size_t done) {
  size_t bytes = done * seg < len ? done * seg : len;
  conn->metrics.datagrams_sent += done;
  conn->metrics.bytes_sent += bytes;
}

/* Keeps |len| bytes of datagrams (of |seg| bytes, the last may be
 * shorter) from the shared buffer for the next flush, after any batch
 * already kept. */
static int keep_pending(uvq_conn *conn, const uvq_path *path, uint8_t ecn,
                        const uint8_t *data, size_t len, size_t seg) {
  uvq_pending *pb = uvq_malloc(conn->ep->mem, sizeof(*pb) + len);
  if (pb == NULL) {
    /* Dropping is all that is left; loss recovery resends the data. */
    uvq_ep_drop(conn->ep, UVQ_DROP_SEND_ERROR);
    return UVQ_ERR_NOMEM;
  }
  memcpy(pb->data, data, len);
  pb->next = NULL;
  pb->path = *path;
  pb->ecn = ecn;
  pb->len = len;
  pb->off = 0;
  pb->seg = seg;
  if (conn->pending_tail) {
    conn->pending_tail->next = pb;
  } else {
    conn->pending_head = pb;
  }
  conn->pending_tail = pb;
  return 0;
}

/* Sends one batch; returns 0, or UVQ_FLUSH_BLOCKED after keeping the
 * rest. */
static int send_batch(uvq_conn *conn, const uvq_path *path, uint8_t ecn,
                      const uint8_t *data, size_t len, size_t seg) {
  size_t count = (len + seg - 1) / seg;
  size_t done = uvq_ep_send(conn->ep, path, ecn, data, len, seg);
  count_sent(conn, len, seg, done);
  if (done >= count) {
    return 0;
  }
  keep_pending(conn, path, ecn, data + done * seg, len - done * seg, seg);
  return UVQ_FLUSH_BLOCKED;
}

/* Offers the kept batches again, oldest first. Returns 0 once none is
 * left, or UVQ_FLUSH_BLOCKED. */
static int drain_pending(uvq_conn *conn) {
  uvq_pending *pb;

  while ((pb = conn->pending_head) != NULL) {
    size_t len = pb->len - pb->off, seg = pb->seg;
    size_t count = (len + seg - 1) / seg;
    size_t done =
        uvq_ep_send(conn->ep, &pb->path, pb->ecn, pb->data + pb->off, len, seg);
    count_sent(conn, len, seg, done);
    if (done < count) {
      pb->off += done * seg;
      return UVQ_FLUSH_BLOCKED;
    }
    conn->pending_head = pb->next;
    if (conn->pending_head == NULL) {
      conn->pending_tail = NULL;
    }
    uvq_free(conn->ep->mem, pb);
  }
  return 0;
}

/* Writes one datagram, filling it with stream data from the ready list.
 * Returns its length, 0 when there is nothing to send, or an ngtcp2 error. */
static ngtcp2_ssize write_datagram(uvq_conn *conn, ngtcp2_path *path,
                                   ngtcp2_pkt_info *pi, uint8_t *buf,
                                   size_t buflen, uvq_tstamp now) {
  ngtcp2_vec iov[16];
  for (;;) {
    uvq_stream *s = conn->ready_head;
    if (conn->dgram_head) {
      /* DATAGRAMs go first: they are latency-sensitive and small. */
      uvq_dgram *d = conn->dgram_head;
      ngtcp2_vec v;
      int accepted = 0;
      ngtcp2_ssize n;
      v.base = d->data;
      v.len = d->len;
      n = ngtcp2_conn_writev_datagram(
          conn->ngconn, path, pi, buf, buflen, &accepted,
          NGTCP2_WRITE_DATAGRAM_FLAG_MORE, d->id, &v, 1, now);
      if (accepted || n == NGTCP2_ERR_INVALID_STATE ||
          n == NGTCP2_ERR_INVALID_ARGUMENT) {
        /* Sent, or refused for good (sizes are checked when queued, so
         * this only happens if the peer's limit changed): either way it
         * leaves the queue. */
        if (accepted) {
          conn->ep->stats.datagrams_app_sent++;
        } else {
          uvq_ep_drop(conn->ep, UVQ_DROP_SEND_ERROR);
        }
        conn->dgram_head = d->next;
        if (conn->dgram_head == NULL) {
          conn->dgram_tail = NULL;
        }
        conn->dgram_count--;
        uvq_free(conn->ep->mem, d);
        if (n == NGTCP2_ERR_INVALID_STATE || n == NGTCP2_ERR_INVALID_ARGUMENT) {
          continue;
        }
      }
      if (n == NGTCP2_ERR_WRITE_MORE) {
        continue;
      }
      return n;
    }
    int64_t sid = -1;
    size_t iovcnt = 0;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    ngtcp2_ssize ndatalen = -1, n;

    if (s) {
      sid = s->id;
      uint64_t offered;
      iovcnt = uvq_stream_unsent_iov(s, iov, 16, buflen, &offered);
      /* FIN only with the stream's last byte: ngtcp2 adds it whenever all
       * of the iov fits, and the iov may stop short of the end (at 16
       * chunks, or at a packet's worth). */
      if (s->fin_requested && !s->fin_sent && s->sent + offered == s->written) {
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
      }
    }
    n = ngtcp2_conn_writev_stream(conn->ngconn, path, pi, buf, buflen,
                                  &ndatalen, flags, sid, iov, iovcnt, now);
    if (n == NGTCP2_ERR_WRITE_MORE) {
      /* The packet has room for more: account and move to the next. */
      uvq_stream_consumed(conn, s, (size_t)ndatalen, flags);
      continue;
    }
    /* ngtcp2 returns the stream errors below only for a stream write
     * (sid >= 0, so s is not NULL). */
    /* NOLINTBEGIN(clang-analyzer-core.NullDereference) */
    if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
      s->data_blocked = 1;
      conn->nblocked++;
      uvq_stream_unready(conn, s);
      continue;
    }
    if (n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND) {
      if (!s->shut_wr && !s->stop_pending) {
        /* We did not reset it: the peer sent STOP_SENDING and ngtcp2
         * answered with RESET_STREAM. Reported after the burst. */
        s->stop_pending = 1;
        s->stop_next = conn->stop_pending;
        conn->stop_pending = s;
      }
      s->shut_wr = 1;
      uvq_stream_unready(conn, s);
      continue;
    }
    /* NOLINTEND(clang-analyzer-core.NullDereference) */
    if (n < 0) {
      return n;
    }
    if (s && ndatalen >= 0) {
      uvq_stream_consumed(conn, s, (size_t)ndatalen, flags);
    }
    return n;
  }
}

/* uvq_path_from_ngtcp2 cannot fail for a path in an ngtcp2_path_storage. */
_Static_assert(sizeof(ngtcp2_sockaddr_union) <= sizeof(struct sockaddr_storage),
               "ngtcp2's addresses fit a uvq_addr");

/* Writes a burst of datagrams — up to the send quantum — and hands them to
 * the driver in GSO-shaped batches. |*pbytes| is set to the bytes written.
 * Returns 0, UVQ_FLUSH_BLOCKED, or an ngtcp2 error (negative) that ends
 * the connection. */
static int write_burst(uvq_conn *conn, uvq_tstamp now, size_t *pbytes) {
  uvq_endpoint *ep = conn->ep;
  uint8_t *buf = ep->txbuf;
  /* Room for the largest datagram ngtcp2 may write (a probe of the
   * ceiling), while the burst is counted in datagrams of the path's
   * confirmed size. */
  size_t maxpkt = ngtcp2_conn_get_max_tx_udp_payload_size(conn->ngconn);
  size_t quantum = ngtcp2_conn_get_send_quantum(conn->ngconn);
  size_t pathmax = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn->ngconn);
  size_t limit = quantum / pathmax;
  size_t off = 0, nd = 0, seg = 0, total = 0;
  uvq_path bpath;
  uint8_t becn = 0;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  int rv = 0;

  *pbytes = 0;
  if (limit < 1) {
    limit = 1;
  }
  if (limit > ep->settings.max_burst_datagrams) {
    limit = ep->settings.max_burst_datagrams;
  }
  ngtcp2_path_storage_zero(&ps);

  while (total < limit) {
    ngtcp2_ssize n =
        write_datagram(conn, &ps.path, &pi, buf + off, maxpkt, now);
    size_t len;
    uvq_path npath;
    if (n < 0) {
      rv = (int)n;
      break;
    }
    if (n == 0) {
      break;
    }
    len = (size_t)n;
    total++;
    *pbytes += len;
    /* ngtcp2 gives every datagram's path; it differs from the batch's only
     * for a probe on another path, so compare, and copy at a batch start. */
    if (nd > 0 && (len > seg || pi.ecn != becn ||
                   !uvq_path_eq_ngtcp2(&bpath, &ps.path))) {
      /* This datagram cannot join the batch: send the batch first. */
      rv = send_batch(conn, &bpath, becn, buf, off, seg);
      if (rv != 0) {
        /* The socket is full. ngtcp2 has committed this datagram too, and
         * it differs from the kept ones in size, path or ECN mark: kept as
         * a batch of its own, to follow them. */
        (void)uvq_path_from_ngtcp2(&npath, &ps.path);
        keep_pending(conn, &npath, (uint8_t)pi.ecn, buf + off, len, len);
        break;
      }
      memmove(buf, buf + off, len);
      off = 0;
      nd = 0;
    }
    if (nd == 0) {
      (void)uvq_path_from_ngtcp2(&bpath, &ps.path);
      seg = len;
      becn = (uint8_t)pi.ecn;
    }
    off += len;
    nd++;
    /* A datagram larger than the path's confirmed size is a path MTU
     * probe: it leaves alone, so that a probe the first hop cannot carry
     * fails by itself (EMSGSIZE) and not as the segment size of a GSO
     * message that also holds data (refused whole, or GSO turned off). */
    if (len < seg || len > pathmax || off + maxpkt > ep->txbufcap) {
      rv = send_batch(conn, &bpath, becn, buf, off, seg);
      off = 0;
      nd = 0;
      if (rv != 0) {
        break;
      }
    }
  }
  if (rv >= 0 && rv != UVQ_FLUSH_BLOCKED && nd > 0) {
    rv = send_batch(conn, &bpath, becn, buf, off, seg);
  }
  /* Stopping at |limit| leaves the rest to ngtcp2's pacing timer, which
   * brings the connection back through handle_expiry. */
  return rv;
}

/* Writes what the connection may send now: one burst at |now|. Returns as
 * write_burst. */
static int write_paced(uvq_conn *conn, uvq_tstamp now) {
  size_t bytes;
  int rv = write_burst(conn, now, &bytes);

  /* Pace from the handshake's completion on. Pacing the handshake's own
   * flights against the default 333 ms initial RTT (RFC 9002), before any
   * RTT sample, held each side's next flight back ~15 ms — 34 ms per
   * connection on loopback, 3.6 ms without it. Handshake flights stay
   * bounded by the congestion window and the amplification limit. */
  if (bytes && (conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED)) {
    ngtcp2_conn_update_pkt_tx_time(conn->ngconn, now);
  }
  return rv;
}

/* Runs the application's on_write. The stream writes it makes would mark
 * the connection for another pass of this flush; they leave in this one,
 * so marks made during the call are ignored (flush_inner took the
 * connection off the marked list before this pass). */
static void app_on_write(uvq_conn *conn) {
  const uvq_app_callbacks *cb = conn->cb;
  int rv, marked = ((conn->flags & UVQ_CONN_FLAG_MARKED) != 0);

  if (cb == NULL || cb->version < 2 || cb->on_write == NULL ||
      (conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) ||
      (conn->flags & UVQ_CONN_FLAG_CALLBACK_FAILED)) {
    return;
  }
  conn->flags |= UVQ_CONN_FLAG_MARKED;
  rv = cb->on_write(conn, conn->user_data);
  uvq_conn_flag_put(conn, UVQ_CONN_FLAG_MARKED, marked);
  if (rv != 0) {
    conn->flags |= UVQ_CONN_FLAG_CALLBACK_FAILED;
  }
}

int uvq_conn_write(uvq_conn *conn, uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;
  int rv;

  /* Received packets leave the path to be looked at once per batch, here
   * (conn.c, uvq_conn_recv). */
  uvq_conn_sync_path(conn);

  rv = drain_pending(conn);
  if (rv != 0) {
    /* Keep the connection's timers armed while the socket is stuck, so
     * loss recovery and the idle timeout still run. */
    uvq_ep_timer_update(ep, conn);
    return rv;
  }

  if (conn->stage < UVQ_STAGE_CLOSING) {
    uvq_live_on_write(conn, now);
    app_on_write(conn);
    if (conn->flags & UVQ_CONN_FLAG_CALLBACK_FAILED) {
      uvq_stage_fail(conn, NGTCP2_ERR_CALLBACK_FAILURE, now);
    } else if (conn->flags & UVQ_CONN_FLAG_CLOSE_REQUESTED) {
      uvq_stage_close_app(conn, now);
    } else {
      rv = write_paced(conn, now);
      /* The packets may have gone on a probing path: conn->path is the
       * path ngtcp2 considers current, not the last one written on. */
      uvq_conn_sync_path(conn);
      if (rv == UVQ_FLUSH_BLOCKED) {
        uvq_ep_timer_update(ep, conn);
        return rv;
      }
      if (rv < 0) {
        uvq_stage_fail(conn, rv, now);
      } else {
        uvq_conn_run_deferred(conn);
        if ((conn->flags & UVQ_CONN_FLAG_CALLBACK_FAILED) &&
            conn->stage < UVQ_STAGE_CLOSING) {
          uvq_stage_fail(conn, NGTCP2_ERR_CALLBACK_FAILURE, now);
        }
      }
    }
  }

  /* Its writers have had their turn at the endpoint's send budget (in
   * on_stream_writable, run above): the rest goes to the next waiters. */
  uvq_stream_grant_end(conn);

  if (conn->stage == UVQ_STAGE_CLOSING &&
      (conn->flags & UVQ_CONN_FLAG_CLOSE_RESEND) && conn->close_pkt) {
    conn->flags &= ~UVQ_CONN_FLAG_CLOSE_RESEND;
    rv = send_batch(conn,
                    (conn->flags & UVQ_CONN_FLAG_CLOSE_TO_SET) ? &conn->close_to
                                                               : &conn->path,
                    0, conn->close_pkt, conn->close_pktlen, conn->close_pktlen);
  }

  if ((conn->flags & UVQ_CONN_FLAG_CLOSED_PENDING) &&
      !(conn->flags & UVQ_CONN_FLAG_CLOSED_FIRED)) {
    conn->flags &= ~UVQ_CONN_FLAG_CLOSED_PENDING;
    conn->flags |= UVQ_CONN_FLAG_CLOSED_FIRED;
    if (conn->cb && conn->cb->on_closed) {
      conn->cb->on_closed(conn, &conn->ci, conn->user_data);
    }
  }
  if (conn->stage == UVQ_STAGE_CLOSED && conn->pending_head == NULL) {
    uvq_conn_del(conn);
    return 0;
  }
  uvq_ep_timer_update(ep, conn);
  return rv == UVQ_FLUSH_BLOCKED ? rv : 0;
}
