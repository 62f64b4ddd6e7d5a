/*
 * Observability: live connection statistics, the estimator's feed,
 * endpoint handshake metrics, the log callback and the Prometheus writer.
 * What is measured and what is inferred is spelled out in
 * docs/internals/metrics.md.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/metrics.h"
#include "core/stream.h"
#include "core/tls.h"

/* ---- logging ----------------------------------------------------------- */

int uvq_log_enabled(const uvq_endpoint *ep, uvq_log_level lvl) {
  return ep->settings.log_cb != NULL && lvl <= ep->settings.log_level;
}

void uvq_log(const uvq_endpoint *ep, uvq_log_level lvl, const char *scid_hex,
             const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (!uvq_log_enabled(ep, lvl)) {
    return;
  }
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ep->settings.log_cb(ep->settings.log_cb_user_data, lvl, scid_hex, msg);
}

static void fmt_addr(char *out, size_t outlen, const uvq_addr *a) {
  char host[INET6_ADDRSTRLEN];
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *sa = (const struct sockaddr_in *)&a->ss;
    inet_ntop(AF_INET, &sa->sin_addr, host, sizeof(host));
    snprintf(out, outlen, "%s:%u", host, ntohs(sa->sin_port));
  } else if (a->ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)&a->ss;
    inet_ntop(AF_INET6, &sa->sin6_addr, host, sizeof(host));
    snprintf(out, outlen, "[%s]:%u", host, ntohs(sa->sin6_port));
  } else {
    snprintf(out, outlen, "?");
  }
}

/* Copies at most |outlen| - 1 printable bytes of |p| (a wire string). */
static void printable(char *out, size_t outlen, const uint8_t *p, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len && n + 1 < outlen; i++) {
    out[n++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"') ? (char)p[i] : '?';
  }
  out[n] = '\0';
}

static void conn_alpn(uvq_conn *conn, char *out, size_t outlen) {
  const uint8_t *alpn;
  size_t alpnlen;
  if (uvq_tls_session_get_alpn(conn->tls, &alpn, &alpnlen) != 0) {
    alpn = NULL;
    alpnlen = 0;
  }
  printable(out, outlen, alpn, alpnlen);
}

int uvq_metrics_want_ngtcp2_log(const uvq_endpoint *ep) {
  return ep->settings.log != NULL || uvq_log_enabled(ep, UVQ_LOG_DEBUG);
}

void uvq_metrics_ngtcp2_log(uvq_conn *conn, const char *line) {
  const uvq_settings *st = &conn->ep->settings;
  if (st->log) {
    st->log(st->log_user_data, line);
  }
  if (uvq_log_enabled(conn->ep, UVQ_LOG_DEBUG)) {
    st->log_cb(st->log_cb_user_data, UVQ_LOG_DEBUG, conn->metrics.scid_hex,
               line);
  }
}

void uvq_metrics_drop(uvq_endpoint *ep) {
  char line[512];
  size_t off = 0;
  uvq_ep_metrics *m = &ep->metrics;

  if (!uvq_log_enabled(ep, UVQ_LOG_DEBUG) || ep->last_now < m->drop_log_next) {
    return;
  }
  /* One line per interval at most, carrying every drop since the last
   * one: a flood of garbage costs one line a second, not one a datagram. */
  off = (size_t)snprintf(line, sizeof(line), "dropped since last report:");
  for (int r = 0; r < UVQ_DROP_REASON_COUNT; r++) {
    uint64_t d = ep->stats.dropped[r] - m->drops_logged[r];
    if (d == 0 || off >= sizeof(line)) {
      continue;
    }
    off += (size_t)snprintf(line + off, sizeof(line) - off, " %s=%llu",
                            uvq_drop_reason_name((uvq_drop_reason)r),
                            (unsigned long long)d);
  }
  memcpy(m->drops_logged, ep->stats.dropped, sizeof(m->drops_logged));
  m->drop_log_next = ep->last_now + UVQ_DROP_LOG_INTERVAL;
  ep->settings.log_cb(ep->settings.log_cb_user_data, UVQ_LOG_DEBUG, NULL, line);
}

/* ---- connection hooks -------------------------------------------------- */

void uvq_metrics_conn_init(uvq_conn *conn, const ngtcp2_cid *scid,
                           uvq_tstamp now) {
  static const char hex[] = "0123456789abcdef";
  uvq_conn_metrics *m = &conn->metrics;
  size_t i;
  memset(m, 0, sizeof(*m));
  m->created = now;
  for (i = 0; i < scid->datalen && i < UVQ_MAX_CIDLEN; i++) {
    m->scid_hex[2 * i] = hex[scid->data[i] >> 4];
    m->scid_hex[2 * i + 1] = hex[scid->data[i] & 0xf];
  }
  m->scid_hex[2 * i] = '\0';
  uvq_bw_init(&m->bw, conn->ep->settings.bw_window_rounds, now);
}

void uvq_metrics_conn_accepted(uvq_conn *conn, const uvq_accept_info *info) {
  char alpn[64], peer[64];
  if (!uvq_log_enabled(conn->ep, UVQ_LOG_INFO)) {
    return;
  }
  printable(alpn, sizeof(alpn), info->alpn, info->alpnlen);
  fmt_addr(peer, sizeof(peer), &info->path->remote);
  uvq_log(conn->ep, UVQ_LOG_INFO, conn->metrics.scid_hex,
          "accepted: peer=%s alpn=%s sni=%s version=0x%08x validated=%d", peer,
          alpn, info->server_name ? info->server_name : "-", info->version,
          info->address_validated);
}

/* Packets with STREAM frames declared lost, over every stream so far.
 * ngtcp2 forgets a stream's count when it closes the stream, so each
 * stream remembers the count it last saw (sampled on every ack of its
 * data) and hands it over when destroyed. */
static uint64_t stream_lost(uvq_conn *conn) {
  const uvq_stream_table *t = &conn->streams;
  uint64_t sum = conn->metrics.stream_lost_closed;
  for (size_t i = 0; i < t->cap; i++) {
    uvq_stream *s = t->slots[i];
    if (s) {
      uint64_t n = ngtcp2_conn_get_stream_loss_count(conn->ngconn, s->id);
      sum += n > s->loss_seen ? n : s->loss_seen;
    }
  }
  if (sum > conn->metrics.stream_lost_hwm) {
    conn->metrics.stream_lost_hwm = sum;
  }
  return conn->metrics.stream_lost_hwm;
}

static const uvq_tstamp hs_bounds[UVQ_HANDSHAKE_TIME_BUCKETS - 1] = {
    500 * UVQ_MICROSECONDS, 1 * UVQ_MILLISECONDS,   2500 * UVQ_MICROSECONDS,
    5 * UVQ_MILLISECONDS,   10 * UVQ_MILLISECONDS,  25 * UVQ_MILLISECONDS,
    50 * UVQ_MILLISECONDS,  100 * UVQ_MILLISECONDS, 250 * UVQ_MILLISECONDS,
    500 * UVQ_MILLISECONDS, 1 * UVQ_SECONDS,        2500 * UVQ_MILLISECONDS,
    5 * UVQ_SECONDS,        10 * UVQ_SECONDS};

uint64_t uvq_handshake_time_bucket_le(size_t i) {
  return i < UVQ_HANDSHAKE_TIME_BUCKETS - 1 ? hs_bounds[i] : UVQ_TSTAMP_MAX;
}

static void note_established(uvq_conn *conn, uvq_tstamp now) {
  uvq_endpoint *ep = conn->ep;
  uvq_tstamp d = now > conn->metrics.created ? now - conn->metrics.created : 0;
  size_t i = 0;

  conn->metrics.handshake_noted = 1;
  conn->metrics.handshake_duration = d;
  while (i < UVQ_HANDSHAKE_TIME_BUCKETS - 1 && d > hs_bounds[i]) {
    i++;
  }
  ep->stats.handshake_time[i]++;
  ep->stats.handshake_time_sum += d;
  ep->stats.handshakes_completed++;
  {
    uint32_t v = ngtcp2_conn_get_negotiated_version(conn->ngconn);
    if (v == UVQ_QUIC_V2) {
      ep->stats.handshakes_by_version[1]++;
    } else {
      ep->stats.handshakes_by_version[0]++;
    }
    if (v != conn->first_version) {
      ep->stats.compatible_upgrades++;
    }
  }
  if (uvq_log_enabled(ep, UVQ_LOG_INFO)) {
    char alpn[64];
    const char *cs = gnutls_ciphersuite_get(conn->tls);
    conn_alpn(conn, alpn, sizeof(alpn));
    uvq_log(ep, UVQ_LOG_INFO, conn->metrics.scid_hex,
            "established: alpn=%s version=0x%08x cipher=%s handshake=%.3fms",
            alpn, ngtcp2_conn_get_negotiated_version(conn->ngconn),
            cs ? cs : "?", (double)d / (double)UVQ_MILLISECONDS);
  }
}

void uvq_metrics_conn_read(uvq_conn *conn, uvq_tstamp now) {
  ngtcp2_conn_info cs;
  if ((conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) &&
      !conn->metrics.handshake_noted) {
    note_established(conn, now);
  }
  /* Acknowledgements are processed here, so rounds end here. */
  ngtcp2_conn_get_conn_info(conn->ngconn, &cs);
  if (uvq_bw_round_due(&conn->metrics.bw, now, cs.smoothed_rtt)) {
    uvq_bw_sample s;
    s.sent = conn->metrics.stream_bytes_sent;
    s.acked = conn->metrics.stream_bytes_acked;
    s.dgrams = conn->metrics.datagrams_sent;
    s.lost = stream_lost(conn);
    uvq_bw_end_round(&conn->metrics.bw, now, &s);
  }
}

static uvq_handshake_failure classify(const uvq_close_info *ci) {
  switch (ci->error) {
  case UVQ_ERR_HANDSHAKE_TIMEOUT:
  case UVQ_ERR_IDLE_TIMEOUT:
    return UVQ_HS_FAIL_TIMEOUT;
  case UVQ_ERR_TLS_ALERT:
  case UVQ_ERR_CERT_VERIFY:
    return UVQ_HS_FAIL_TLS_ALERT;
  case UVQ_ERR_REFUSED:
  case UVQ_ERR_PEER_REFUSED:
  case UVQ_ERR_PORT_UNREACHABLE:
  case UVQ_ERR_HOST_UNREACHABLE:
    return UVQ_HS_FAIL_REFUSED;
  case UVQ_ERR_VERSION_NEGOTIATION:
    return UVQ_HS_FAIL_VERSION_NEGOTIATION;
  case UVQ_ERR_INVALID_TOKEN:
    return UVQ_HS_FAIL_INVALID_TOKEN;
  default:
    return ci->tls_alert ? UVQ_HS_FAIL_TLS_ALERT : UVQ_HS_FAIL_OTHER;
  }
}

static uvq_log_level close_level(int error) {
  switch (error) {
  case UVQ_ERR_NOMEM:
  case UVQ_ERR_INTERNAL:
    return UVQ_LOG_ERROR;
  case UVQ_ERR_PROTOCOL:
  case UVQ_ERR_CALLBACK:
  case UVQ_ERR_TLS:
  case UVQ_ERR_QLOG_UNSAFE:
    return UVQ_LOG_WARN;
  default:
    return UVQ_LOG_INFO;
  }
}

void uvq_metrics_conn_closed(uvq_conn *conn) {
  static const char *const origins[] = {"local", "peer", "timeout"};
  static const char *const types[] = {"none", "transport", "application"};
  const uvq_close_info *ci = &conn->ci;
  uvq_log_level lvl = close_level(ci->error);
  char reason[96];

  if (!(conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED)) {
    conn->ep->stats.handshake_failures[classify(ci)]++;
  }
  if (!uvq_log_enabled(conn->ep, lvl)) {
    return;
  }
  printable(reason, sizeof(reason), ci->reason, ci->reason ? ci->reasonlen : 0);
  uvq_log(conn->ep, lvl, conn->metrics.scid_hex,
          "closed: error=%s origin=%s type=%s code=0x%llx tls_alert=%u "
          "reason=\"%s\" handshake_completed=%d sent=%llu received=%llu",
          uvq_strerror(ci->error), origins[ci->origin % 3], types[ci->type % 3],
          (unsigned long long)ci->code, ci->tls_alert, reason,
          ((conn->flags & UVQ_CONN_FLAG_HANDSHAKE_COMPLETED) != 0),
          (unsigned long long)conn->metrics.bytes_sent,
          (unsigned long long)conn->metrics.bytes_received);
}

/* ---- public API -------------------------------------------------------- */

size_t uvq_conn_get_max_udp_payload(uvq_conn *conn) {
  return conn ? ngtcp2_conn_get_path_max_tx_udp_payload_size(conn->ngconn) : 0;
}

int uvq_conn_get_stats(uvq_conn *conn, uvq_conn_stats *st) {
  ngtcp2_conn_info cs;
  const uvq_conn_metrics *m;
  if (conn == NULL || st == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  m = &conn->metrics;
  memset(st, 0, sizeof(*st));
  ngtcp2_conn_get_conn_info(conn->ngconn, &cs);
  st->latest_rtt = cs.latest_rtt;
  st->min_rtt = cs.min_rtt == UINT64_MAX ? 0 : cs.min_rtt;
  st->smoothed_rtt = cs.smoothed_rtt;
  st->rttvar = cs.rttvar;
  st->cwnd = cs.cwnd;
  st->ssthresh = cs.ssthresh;
  st->bytes_in_flight = cs.bytes_in_flight;
  st->bytes_sent = m->bytes_sent;
  st->datagrams_sent = m->datagrams_sent;
  st->bytes_received = m->bytes_received;
  st->datagrams_received = m->datagrams_received;
  st->stream_bytes_sent = m->stream_bytes_sent;
  st->stream_bytes_acked = m->stream_bytes_acked;
  st->stream_bytes_received = m->stream_bytes_received;
  st->handshake_duration = m->handshake_duration;
  st->max_bandwidth = uvq_bw_max(&m->bw);
  st->bw_rounds = m->bw.nrounds;
  st->stream_packets_lost = stream_lost(conn);
  st->loss = uvq_bw_loss(&m->bw);
  return 0;
}

const char *uvq_handshake_failure_name(uvq_handshake_failure r) {
  switch (r) {
  case UVQ_HS_FAIL_TIMEOUT:
    return "timeout";
  case UVQ_HS_FAIL_TLS_ALERT:
    return "tls_alert";
  case UVQ_HS_FAIL_REFUSED:
    return "refused";
  case UVQ_HS_FAIL_VERSION_NEGOTIATION:
    return "version_negotiation";
  case UVQ_HS_FAIL_INVALID_TOKEN:
    return "invalid_token";
  case UVQ_HS_FAIL_OTHER:
    return "other";
  default:
    return "unknown";
  }
}

void uvq_endpoint_add_gso_fallbacks(uvq_endpoint *ep, uint64_t n) {
  if (ep) {
    ep->stats.gso_fallbacks += n;
  }
}

void uvq_endpoint_add_send_errors(uvq_endpoint *ep, uint64_t n) {
  if (ep) {
    ep->stats.dropped[UVQ_DROP_SEND_ERROR] += n;
  }
}

/* ---- Prometheus text exposition --------------------------------------- */

typedef struct prom {
  char *buf;
  size_t len; /* capacity of buf */
  size_t n;   /* length of the whole text so far */
  const char *pre;
} prom;

static void pr(prom *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pr(prom *p, const char *fmt, ...) {
  char *dst = NULL;
  size_t room = 0;
  va_list ap;
  int r;
  if (p->buf && p->n < p->len) {
    dst = p->buf + p->n;
    room = p->len - p->n;
  }
  va_start(ap, fmt);
  r = vsnprintf(dst, room, fmt, ap);
  va_end(ap);
  if (r > 0) {
    p->n += (size_t)r;
  }
}

static void head(prom *p, const char *name, const char *type,
                 const char *help) {
  pr(p, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", p->pre, name, help, p->pre, name,
     type);
}

static void counter(prom *p, const char *name, const char *help, uint64_t v) {
  head(p, name, "counter", help);
  pr(p, "%s_%s %llu\n", p->pre, name, (unsigned long long)v);
}

static void gauge(prom *p, const char *name, const char *help, uint64_t v) {
  head(p, name, "gauge", help);
  pr(p, "%s_%s %llu\n", p->pre, name, (unsigned long long)v);
}

static void labelled(prom *p, const char *name, const char *label,
                     const char *value, uint64_t v) {
  pr(p, "%s_%s{%s=\"%s\"} %llu\n", p->pre, name, label, value,
     (unsigned long long)v);
}

static const char *token_reject_name(int r) {
  static const char *const names[UVQ_TOKEN_REJECT_REASON_COUNT] = {
      "malformed", "decrypt", "expired", "address", "version"};
  return names[r];
}

static int valid_name(const char *s) {
  if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9')) {
    return 0;
  }
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == ':')) {
      return 0;
    }
  }
  return 1;
}

ssize_t uvq_endpoint_write_prometheus(uvq_endpoint *ep, char *buf, size_t len,
                                      const char *prefix) {
  uvq_endpoint_stats st;
  const uvq_endpoint_stats *s = &st;
  prom p;
  uint64_t cum = 0;

  if (ep == NULL || (buf == NULL && len > 0)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (prefix == NULL) {
    prefix = "uvquic";
  }
  if (!valid_name(prefix)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  uvq_endpoint_get_stats(ep, &st);
  p.buf = buf;
  p.len = len;
  p.n = 0;
  p.pre = prefix;
  if (buf && len) {
    buf[0] = '\0';
  }

  counter(&p, "datagrams_received_total", "UDP datagrams received.",
          s->datagrams_received);
  counter(&p, "datagrams_sent_total", "UDP datagrams sent.", s->datagrams_sent);
  counter(&p, "bytes_received_total", "UDP payload bytes received.",
          s->bytes_received);
  counter(&p, "bytes_sent_total", "UDP payload bytes sent.", s->bytes_sent);
  gauge(&p, "connections", "Connections held, closing ones included.",
        s->connections_current);
  counter(&p, "connections_total", "Connections created.",
          s->connections_total);
  gauge(&p, "handshakes_in_flight", "Handshakes in progress.",
        s->handshakes_in_flight);
  counter(&p, "handshakes_completed_total", "Handshakes completed.",
          s->handshakes_completed);
  counter(&p, "initials_accepted_total", "Client Initials accepted.",
          s->initials_accepted);
  counter(&p, "initials_refused_total", "Client Initials refused.",
          s->initials_refused);
  counter(&p, "retries_sent_total", "Retry packets sent.", s->retries_sent);
  counter(&p, "version_negotiations_sent_total",
          "Version Negotiation packets sent.", s->version_negotiations_sent);
  counter(&p, "version_negotiations_received_total",
          "Version Negotiation packets a client connection acted on.",
          s->version_negotiations_received);
  counter(&p, "compatible_upgrades_total",
          "Handshakes completed in another QUIC version than the client's "
          "first Initial (RFC 9368 compatible version negotiation).",
          s->compatible_upgrades);
  counter(&p, "resumption_version_mismatch_total",
          "Resumption data left unused: from a connection of another QUIC "
          "version.",
          s->resumption_version_mismatch);
  counter(&p, "stateless_closes_sent_total",
          "Stateless CONNECTION_CLOSE packets sent.", s->stateless_closes_sent);
  counter(&p, "handshake_timeouts_total", "Handshake timeouts.",
          s->handshake_timeouts);
  counter(&p, "idle_timeouts_total", "Idle timeouts.", s->idle_timeouts);
  counter(&p, "send_blocked_total", "Times the send callback pushed back.",
          s->send_blocked);
  counter(&p, "paths_stalled_total",
          "Connections closed with NO_VIABLE_PATH: the peer's new path "
          "could not be validated.",
          s->paths_stalled);
  counter(&p, "paths_stalled_dropped_total",
          "Stalled connections ended silently: no datagram came to carry "
          "the close.",
          s->paths_stalled_dropped);
  counter(&p, "stalls_total",
          "Connections closed after nothing arrived for the stall timeout.",
          s->stalls);
  counter(&p, "new_tokens_sent_total", "NEW_TOKEN tokens sent.",
          s->new_tokens_sent);
  counter(&p, "app_datagrams_sent_total", "DATAGRAM frames sent.",
          s->datagrams_app_sent);
  counter(&p, "app_datagrams_received_total", "DATAGRAM frames received.",
          s->datagrams_app_received);
  counter(&p, "gso_fallbacks_total", "GSO fallbacks reported by the driver.",
          s->gso_fallbacks);
  counter(&p, "stateless_resets_sent_total",
          "Stateless resets sent for unknown connections.",
          s->stateless_resets_sent);
  counter(&p, "stateless_resets_suppressed_total",
          "Stateless resets not sent because of the rate limit.",
          s->stateless_resets_suppressed);
  counter(&p, "stateless_resets_received_total",
          "Stateless resets received for our connections.",
          s->stateless_resets_received);
  counter(&p, "send_buffer_pool_hits_total",
          "Send buffers taken from the endpoint's cache.", s->pool_hits);
  counter(&p, "send_buffer_pool_misses_total",
          "Send buffers allocated because the cache had none.", s->pool_misses);
  counter(&p, "send_buffer_pool_released_total",
          "Send buffers freed because the cache was full.", s->pool_released);
  gauge(&p, "send_buffer_pool_cached_bytes",
        "Bytes of free send buffers kept for reuse.", s->pool_cached_bytes);
  gauge(&p, "send_buffer_pool_outstanding",
        "Send buffers held by connections (unacknowledged data).",
        s->pool_outstanding);
  gauge(&p, "send_buffer_pool_outstanding_bytes",
        "Bytes of the send buffers held by connections.",
        s->pool_outstanding_bytes);
  counter(&p, "refused_handshakes_total",
          "Initials refused: max_handshakes in flight.", s->refused_handshakes);
  counter(&p, "refused_source_handshakes_total",
          "Initials refused: their source's max_handshakes_per_source.",
          s->refused_source_handshakes);
  counter(&p, "refused_source_connections_total",
          "Initials refused: their source's max_connections_per_source.",
          s->refused_source_connections);
  counter(&p, "send_budget_pushbacks_total",
          "Stream writes cut short by their connection's send budget.",
          s->send_budget_pushbacks);
  counter(&p, "endpoint_send_budget_pushbacks_total",
          "Stream writes cut short by the endpoint's send budget.",
          s->endpoint_send_budget_pushbacks);
  gauge(&p, "send_buffered_bytes",
        "Bytes all connections hold in their send buffers (the endpoint's "
        "send budget counts these).",
        s->send_buffered_bytes);
  gauge(&p, "recv_held_bytes",
        "Received bytes the application layers hold (the receive budgets "
        "count these).",
        s->recv_held_bytes);
  counter(&p, "recv_budget_pauses_total",
          "Times a connection's reads paused for a receive budget.",
          s->recv_budget_pauses);
  counter(&p, "quic_lb_unroutable_cids_total",
          "CIDs issued with QUIC-LB's unroutable codepoint because the "
          "configuration's nonces were spent (rotate the configuration).",
          s->quic_lb_unroutable_cids);
  counter(&p, "evicted_idle_total",
          "Idle connections closed to admit new ones under memory pressure.",
          s->evicted_idle);
  counter(&p, "refused_memory_pressure_total",
          "Initials refused under memory pressure with no idle connection "
          "to close.",
          s->refused_memory_pressure);
  counter(&p, "clock_backwards_total",
          "Calls whose time was older than one already given (run at the "
          "newer time).",
          s->clock_backwards);

  head(&p, "handshakes_by_version_total", "counter",
       "Handshakes completed, by negotiated QUIC version.");
  labelled(&p, "handshakes_by_version_total", "version", "0x00000001",
           s->handshakes_by_version[0]);
  labelled(&p, "handshakes_by_version_total", "version", "0x6b3343cf",
           s->handshakes_by_version[1]);
  head(&p, "dropped_total", "counter",
       "Datagrams or packets dropped unused, by reason.");
  for (int r = 0; r < UVQ_DROP_REASON_COUNT; r++) {
    labelled(&p, "dropped_total", "reason",
             uvq_drop_reason_name((uvq_drop_reason)r), s->dropped[r]);
  }
  head(&p, "tokens_rejected_total", "counter",
       "Address-validation tokens rejected, by reason.");
  for (int r = 0; r < UVQ_TOKEN_REJECT_REASON_COUNT; r++) {
    labelled(&p, "tokens_rejected_total", "reason", token_reject_name(r),
             s->tokens_rejected[r]);
  }
  head(&p, "handshake_failures_total", "counter",
       "Connections that ended before completing the handshake, by reason.");
  for (int r = 0; r < UVQ_HS_FAIL_REASON_COUNT; r++) {
    labelled(&p, "handshake_failures_total", "reason",
             uvq_handshake_failure_name((uvq_handshake_failure)r),
             s->handshake_failures[r]);
  }

  head(&p, "handshake_duration_seconds", "histogram",
       "Time from connection creation to handshake completion.");
  for (size_t i = 0; i < UVQ_HANDSHAKE_TIME_BUCKETS; i++) {
    cum += s->handshake_time[i];
    if (i + 1 < UVQ_HANDSHAKE_TIME_BUCKETS) {
      pr(&p, "%s_handshake_duration_seconds_bucket{le=\"%g\"} %llu\n", prefix,
         (double)hs_bounds[i] / (double)UVQ_SECONDS, (unsigned long long)cum);
    } else {
      pr(&p, "%s_handshake_duration_seconds_bucket{le=\"+Inf\"} %llu\n", prefix,
         (unsigned long long)cum);
    }
  }
  pr(&p, "%s_handshake_duration_seconds_sum %.9f\n", prefix,
     (double)s->handshake_time_sum / (double)UVQ_SECONDS);
  pr(&p, "%s_handshake_duration_seconds_count %llu\n", prefix,
     (unsigned long long)cum);
  return (ssize_t)p.n;
}
