/*
 * The length of ngtcp2 1.11's qlog rendering of a set of transport
 * parameters (see qlog_guard.h). Each term below is one piece of what
 * ngtcp2_qlog_parameters_set_transport_params writes, in its order.
 */
#include "core/qlog_guard.h"

#include <arpa/inet.h>

/* A literal written verbatim. */
#define LIT(s) (sizeof(s) - 1)
/* A key: the quoted name and the colon. */
#define KEY(s) (LIT(s) + 3)
/* A quoted lowercase-hex string of |n| bytes (CIDs, tokens, addresses). */
#define HEX(n) (2 * (size_t)(n) + 2)
/* true / false. */
#define TF(b) ((b) ? LIT("true") : LIT("false"))

/* Decimal digits of |n|, as ngtcp2's write_number prints it. */
static size_t num_len(uint64_t n) {
  size_t len = 1;

  while (n >= 10) {
    n /= 10;
    ++len;
  }
  return len;
}

/* A "name":number pair. */
#define NUM(s, v) (KEY(s) + num_len(v))
/* A "name":milliseconds pair (ngtcp2 writes durations in ms, truncated). */
#define MS(s, v) NUM(s, (v) / NGTCP2_MILLISECONDS)

size_t uvq_qlog_tp_len(const ngtcp2_transport_params *p, int server, int remote,
                       uint64_t time_ms) {
  const ngtcp2_preferred_addr *pa = &p->preferred_addr;
  size_t n = 0;

  n += 2; /* record separator, '{' */
  n += NUM("time", time_ms);
  n += LIT(",\"name\":\"transport:parameters_set\",\"data\":{\"owner\":");
  n += remote ? LIT("\"remote\"") : LIT("\"local\"");
  n += 1; /* ',' */
  n += KEY("initial_source_connection_id") + HEX(p->initial_scid.datalen) + 1;
  /* Written whenever the set is the server's, present or not. */
  if (server ? !remote : remote) {
    n += KEY("original_destination_connection_id") +
         HEX(p->original_dcid.datalen) + 1;
  }
  if (p->retry_scid_present) {
    n += KEY("retry_source_connection_id") + HEX(p->retry_scid.datalen) + 1;
  }
  if (p->stateless_reset_token_present) {
    n += LIT("\"stateless_reset_token\":{") + KEY("data") +
         HEX(sizeof(p->stateless_reset_token)) + 2; /* "}," */
  }
  n += KEY("disable_active_migration") + TF(p->disable_active_migration) + 1;
  n += MS("max_idle_timeout", p->max_idle_timeout) + 1;
  n += NUM("max_udp_payload_size", p->max_udp_payload_size) + 1;
  n += NUM("ack_delay_exponent", p->ack_delay_exponent) + 1;
  n += MS("max_ack_delay", p->max_ack_delay) + 1;
  n += NUM("active_connection_id_limit", p->active_connection_id_limit) + 1;
  n += NUM("initial_max_data", p->initial_max_data) + 1;
  n += NUM("initial_max_stream_data_bidi_local",
           p->initial_max_stream_data_bidi_local) +
       1;
  n += NUM("initial_max_stream_data_bidi_remote",
           p->initial_max_stream_data_bidi_remote) +
       1;
  n += NUM("initial_max_stream_data_uni", p->initial_max_stream_data_uni) + 1;
  n += NUM("initial_max_streams_bidi", p->initial_max_streams_bidi) + 1;
  n += NUM("initial_max_streams_uni", p->initial_max_streams_uni);
  if (p->preferred_addr_present) {
    n += 1 + LIT("\"preferred_address\"") + 2; /* ',' ... ":{" */
    if (pa->ipv4_present) {
      /* ngtcp2 prints ntohs() of the port as its decoder stored it. */
      n += KEY("ip_v4") + HEX(sizeof(pa->ipv4.sin_addr)) + 1;
      n += NUM("port_v4", ntohs(pa->ipv4.sin_port)) + 1;
    }
    if (pa->ipv6_present) {
      n += KEY("ip_v6") + HEX(sizeof(pa->ipv6.sin6_addr)) + 1;
      n += NUM("port_v6", ntohs(pa->ipv6.sin6_port)) + 1;
    }
    n += KEY("connection_id") + HEX(pa->cid.datalen);
    n += LIT(",\"stateless_reset_token\":{") + KEY("data") +
         HEX(sizeof(pa->stateless_reset_token)) + 2; /* "}}" */
  }
  n += 1 + NUM("max_datagram_frame_size", p->max_datagram_frame_size);
  n += 1 + KEY("grease_quic_bit") + TF(p->grease_quic_bit);
  n += LIT("}}\n");
  /* version_information is decoded but not logged by 1.11. */
  return n;
}

int uvq_qlog_tp_check(const uint8_t *data, size_t datalen, size_t *prendered) {
  ngtcp2_transport_params params;

  *prendered = 0;
  /* The same decoder ngtcp2_conn_decode_and_set_remote_transport_params
   * runs, so the same values ngtcp2 would log. */
  if (ngtcp2_transport_params_decode(&params, data, datalen) != 0) {
    return 0;
  }
  *prendered = uvq_qlog_tp_len(&params, /* server = */ 0, /* remote = */ 1,
                               UVQ_QLOG_TP_MAX_TIME_MS);
  return *prendered <= UVQ_QLOG_TP_BUFLEN ? 0 : -1;
}
