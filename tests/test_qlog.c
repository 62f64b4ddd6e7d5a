/*
 * qlog against a hostile server (CVE-2026-40170): ngtcp2 1.11's qlog
 * writer renders a set of transport parameters into a 1024-byte stack
 * buffer, and Debian bookworm-backports' 1.11.0-1~bpo12+1 has no bound on
 * it. A server whose set renders longer (a preferred_address with 20-byte
 * CIDs, maximal limits) smashes the client's stack, and the stack
 * protector aborts the process; ASan cannot see into the uninstrumented
 * system library. So the pass condition is: no abort, the documented
 * error. Without the guard (tls.c, qlog_guard.c) this file's
 * test_qlog_hostile_server_refused aborts with "stack smashing detected".
 *
 * The hostile server is a uvquic server whose transport parameters its
 * endpoint's conn_hook makes maximal (the hook runs before ngtcp2 copies
 * them; its own qlog stays off, since ngtcp2 logs a server's own set with
 * the same writer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/qlog_guard.h"
#include "qtest.h"
#include "qtest_app.h"

/* ---- the hostile server ------------------------------------------------- */

/* ngtcp2 writes max_idle_timeout as (ns / 10^6): the largest it can print
 * is UINT64_MAX ns in ms, 14 digits; this many ms still fits in ns. */
#define HOSTILE_IDLE_MS 18446744073709ull

static int g_hostile_pa = 1; /* with a preferred_address */

/* Every limit at its largest legal value (a local set's active CID limit
 * is at most 8 in ngtcp2 1.11), a preferred_address with both families,
 * all-ones addresses, 5-digit ports and a 20-byte CID. "false" prints
 * longer than "true", so the two flags stay off. */
static int hostile_hook(struct ngtcp2_settings *settings,
                        struct ngtcp2_transport_params *p, void *ud) {
  ngtcp2_preferred_addr *pa = &p->preferred_addr;
  (void)settings;
  (void)ud;

  p->max_idle_timeout = HOSTILE_IDLE_MS * NGTCP2_MILLISECONDS;
  p->max_udp_payload_size = NGTCP2_MAX_VARINT;
  p->ack_delay_exponent = 20;
  p->max_ack_delay = 16383 * NGTCP2_MILLISECONDS;
  p->active_connection_id_limit = 8;
  p->initial_max_data = NGTCP2_MAX_VARINT;
  p->initial_max_stream_data_bidi_local = NGTCP2_MAX_VARINT;
  p->initial_max_stream_data_bidi_remote = NGTCP2_MAX_VARINT;
  p->initial_max_stream_data_uni = NGTCP2_MAX_VARINT;
  p->initial_max_streams_bidi = (uint64_t)1 << 60; /* NGTCP2_MAX_STREAMS */
  p->initial_max_streams_uni = (uint64_t)1 << 60;
  p->max_datagram_frame_size = NGTCP2_MAX_VARINT;
  p->disable_active_migration = 0;
  p->grease_quic_bit = 0;
  if (g_hostile_pa) {
    memset(pa, 0, sizeof(*pa));
    pa->ipv4_present = 1;
    pa->ipv4.sin_family = NGTCP2_AF_INET;
    memset(&pa->ipv4.sin_addr, 0xff, sizeof(pa->ipv4.sin_addr));
    pa->ipv4.sin_port = 0xffff;
    pa->ipv6_present = 1;
    pa->ipv6.sin6_family = NGTCP2_AF_INET6;
    memset(&pa->ipv6.sin6_addr, 0xff, sizeof(pa->ipv6.sin6_addr));
    pa->ipv6.sin6_port = 0xffff;
    pa->cid.datalen = NGTCP2_MAX_CIDLEN;
    memset(pa->cid.data, 0xc1, NGTCP2_MAX_CIDLEN);
    memset(pa->stateless_reset_token, 0xe7, sizeof(pa->stateless_reset_token));
    p->preferred_addr_present = 1;
  }
  return 0;
}

/* A preferred_address an ordinary server might send: 8-byte CID, IPv4
 * only, everyday limits. */
static int benign_pa_hook(struct ngtcp2_settings *settings,
                          struct ngtcp2_transport_params *p, void *ud) {
  ngtcp2_preferred_addr *pa = &p->preferred_addr;
  (void)settings;
  (void)ud;

  memset(pa, 0, sizeof(*pa));
  pa->ipv4_present = 1;
  pa->ipv4.sin_family = NGTCP2_AF_INET;
  pa->ipv4.sin_addr.s_addr = htonl(0x7f000002);
  pa->ipv4.sin_port = htons(4433);
  pa->cid.datalen = 8;
  memset(pa->cid.data, 0xb3, 8);
  memset(pa->stateless_reset_token, 0x5a, sizeof(pa->stateless_reset_token));
  p->preferred_addr_present = 1;
  return 0;
}

/* ---- qlog sinks ---------------------------------------------------------- */

typedef struct qlog_sink {
  char buf[1 << 17];
  size_t len;
} qlog_sink;

static void qlog_cb(void *ud, uvq_conn *conn, const void *data, size_t len,
                    int fin) {
  qlog_sink *q = ud;
  (void)conn;
  (void)fin;
  if (q->len + len < sizeof(q->buf)) {
    memcpy(q->buf + q->len, data, len);
    q->len += len;
    q->buf[q->len] = '\0';
  }
}

/* Finds the parameters_set event of |owner| in |q|: its length from the
 * record separator through the newline, and its "time". */
static size_t find_tp_event(const qlog_sink *q, const char *owner,
                            uint64_t *time_ms) {
  char want[64];
  const char *rec = q->buf, *end = q->buf + q->len;

  snprintf(want, sizeof(want), "\"owner\":\"%s\"", owner);
  while (rec < end) {
    const char *nl = memchr(rec, '\n', (size_t)(end - rec));
    size_t len;
    if (nl == NULL) {
      break;
    }
    len = (size_t)(nl + 1 - rec);
    if (rec[0] == '\x1e' && memmem(rec, len, "transport:parameters_set", 24) &&
        memmem(rec, len, want, strlen(want))) {
      assert_memory_equal(rec, "\x1e{\"time\":", 9);
      *time_ms = strtoull(rec + 9, NULL, 10);
      return len;
    }
    rec = nl + 1;
  }
  fail_msg("no parameters_set event with %s", want);
  return 0;
}

/* ---- tests ----------------------------------------------------------------
 */

/* The length function against what the linked ngtcp2 writes, for all four
 * combinations of side and owner, with a preferred_address that fits. */
static void test_qlog_len_matches_ngtcp2(void **state) {
  static qlog_sink cq, sq;
  qt_world w;
  qt_app cli = {0}, srv = {0};
  qt_app *pair[2] = {&cli, &srv};
  uvq_settings cs, ss;
  uint64_t t;
  size_t len;
  (void)state;

  memset(&cq, 0, sizeof(cq));
  memset(&sq, 0, sizeof(sq));
  qt_world_init(&w, 41);
  uvq_settings_default(&ss);
  ss.cid_len = 20;
  ss.qlog = qlog_cb;
  ss.qlog_user_data = &sq;
  uvq_settings_default(&cs);
  cs.qlog = qlog_cb;
  cs.qlog_user_data = &cq;
  int s = qt_add_server(&w, &ss, qt_app_accept, &srv);
  int c = qt_add_client(&w, &cs, NULL);
  w.nodes[s].ep->conn_hook = benign_pa_hook;
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &cli, &cli.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));

  const ngtcp2_transport_params *crem =
      ngtcp2_conn_get_remote_transport_params(cli.conn->ngconn);
  assert_true(crem->preferred_addr_present);
  len = find_tp_event(&cq, "remote", &t);
  assert_int_equal(uvq_qlog_tp_len(crem, 0, 1, t), len);
  print_message("server's set with a preferred_address as the client logs "
                "it: %zu bytes\n",
                len);
  len = find_tp_event(&cq, "local", &t);
  assert_int_equal(
      uvq_qlog_tp_len(ngtcp2_conn_get_local_transport_params(cli.conn->ngconn),
                      0, 0, t),
      len);
  len = find_tp_event(&sq, "local", &t);
  assert_int_equal(
      uvq_qlog_tp_len(ngtcp2_conn_get_local_transport_params(srv.conn->ngconn),
                      1, 0, t),
      len);
  len = find_tp_event(&sq, "remote", &t);
  assert_int_equal(
      uvq_qlog_tp_len(ngtcp2_conn_get_remote_transport_params(srv.conn->ngconn),
                      1, 1, t),
      len);

  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  qt_world_free(&w);
}

/* 10^(digits - 1): a number printed with |digits| digits (1..19). */
static uint64_t with_digits(int digits) {
  uint64_t v = 1;
  while (--digits > 0) {
    v *= 10;
  }
  return v;
}

/* uvq_qlog_tp_check refuses from 1025 bytes on, counting the widest
 * "time"; what does not decode is left to ngtcp2. */
static void test_qlog_check_boundary(void **state) {
  ngtcp2_transport_params p;
  uint8_t enc[512];
  size_t rendered;
  int hit[2] = {0, 0};
  ngtcp2_ssize n;
  (void)state;

  /* Lengths move by 2 per preferred_address CID byte, 1 per digit of
   * max_datagram_frame_size and 4 per digit of the four data limits, so
   * these cover every length from under 1000 to ~1180 bytes. */
  for (int retry = 0; retry <= 1; retry++) {
    for (size_t cidlen = 1; cidlen <= NGTCP2_MAX_CIDLEN; cidlen++) {
      for (int d1 = 1; d1 <= 19; d1++) {
        for (int d2 = 1; d2 <= 19; d2++) {
          ngtcp2_transport_params_default(&p);
          hostile_hook(NULL, &p, NULL);
          p.initial_scid.datalen = NGTCP2_MAX_CIDLEN;
          memset(p.initial_scid.data, 1, NGTCP2_MAX_CIDLEN);
          p.initial_scid_present = 1;
          p.original_dcid = p.initial_scid;
          p.original_dcid_present = 1;
          p.retry_scid = p.initial_scid;
          p.retry_scid_present = (uint8_t)retry;
          memset(p.stateless_reset_token, 2, sizeof(p.stateless_reset_token));
          p.stateless_reset_token_present = 1;
          p.preferred_addr.cid.datalen = cidlen;
          p.max_datagram_frame_size = with_digits(d1);
          p.initial_max_data = with_digits(d2);
          p.initial_max_stream_data_bidi_local = with_digits(d2);
          p.initial_max_stream_data_bidi_remote = with_digits(d2);
          p.initial_max_stream_data_uni = with_digits(d2);
          n = ngtcp2_transport_params_encode(enc, sizeof(enc), &p);
          assert_true(n > 0);
          size_t want = uvq_qlog_tp_len(&p, 0, 1, UVQ_QLOG_TP_MAX_TIME_MS);
          int rv = uvq_qlog_tp_check(enc, (size_t)n, &rendered);
          assert_int_equal(rendered, want);
          assert_int_equal(rv, want <= UVQ_QLOG_TP_BUFLEN ? 0 : -1);
          if (want == UVQ_QLOG_TP_BUFLEN) {
            hit[0]++;
          } else if (want == UVQ_QLOG_TP_BUFLEN + 1) {
            hit[1]++;
          }
        }
      }
    }
  }
  assert_true(hit[0] > 0 && hit[1] > 0); /* both edges were tried */

  /* Truncated: not decodable, so not ours to refuse. */
  assert_int_equal(uvq_qlog_tp_check(enc, 3, &rendered), 0);
  assert_int_equal(rendered, 0);

  /* ngtcp2 also logs a client's remembered 0-RTT limits (and the server's
   * the client's set): without CIDs, tokens or a preferred_address even
   * every number at its widest fits. */
  ngtcp2_transport_params_default(&p);
  p.max_idle_timeout = UINT64_MAX - 1;
  p.max_udp_payload_size = UINT64_MAX;
  p.active_connection_id_limit = UINT64_MAX;
  p.initial_max_data = UINT64_MAX;
  p.initial_max_stream_data_bidi_local = UINT64_MAX;
  p.initial_max_stream_data_bidi_remote = UINT64_MAX;
  p.initial_max_stream_data_uni = UINT64_MAX;
  p.initial_max_streams_bidi = UINT64_MAX;
  p.initial_max_streams_uni = UINT64_MAX;
  p.max_datagram_frame_size = UINT64_MAX;
  p.ack_delay_exponent = UINT64_MAX;
  p.max_ack_delay = UINT64_MAX;
  p.initial_scid.datalen = NGTCP2_MAX_CIDLEN; /* a client's, on a server */
  assert_true(uvq_qlog_tp_len(&p, 0, 1, UVQ_QLOG_TP_MAX_TIME_MS) <=
              UVQ_QLOG_TP_BUFLEN);
  assert_true(uvq_qlog_tp_len(&p, 1, 1, UVQ_QLOG_TP_MAX_TIME_MS) <=
              UVQ_QLOG_TP_BUFLEN);
}

/* Connects a client (qlog on or off) to a hostile server with Retry, so
 * the set carries retry_source_connection_id too. The server speaks QUIC
 * v1 only: the maximal set fills the 256 bytes ngtcp2_crypto_gnutls 1.11
 * encodes a server's parameters into, and listing v2 too in
 * version_information takes 4 more (test_qlog_server_set_too_large). */
static void run_hostile_versions(qt_world *w, qt_app *cli, qt_app *srv,
                                 int qlog, qlog_sink *sink,
                                 size_t quic_versionslen) {
  uvq_settings cs, ss;
  qt_app *pair[2] = {cli, srv};

  qt_world_init(w, 43);
  uvq_settings_default(&ss);
  ss.cid_len = 20;
  ss.retry = UVQ_RETRY_ALWAYS;
  ss.quic_versions[0] = UVQ_QUIC_V1;
  ss.quic_versions[1] = UVQ_QUIC_V2;
  ss.quic_versionslen = quic_versionslen;
  uvq_settings_default(&cs);
  if (qlog) {
    cs.qlog = qlog_cb;
    cs.qlog_user_data = sink;
  }
  int s = qt_add_server(w, &ss, qt_app_accept, srv);
  int c = qt_add_client(w, &cs, NULL);
  w->nodes[s].ep->conn_hook = hostile_hook;
  cli->send_on_established = 1;
  cli->to_send = 4096;
  cli->seed = 7;
  assert_int_equal(qt_connect(w, c, s, &qt_app_callbacks, cli, &cli->conn), 0);
  qt_run(w, qt_app_both_established, pair, 5 * UVQ_SECONDS);
}

static void run_hostile(qt_world *w, qt_app *cli, qt_app *srv, int qlog,
                        qlog_sink *sink) {
  run_hostile_versions(w, cli, srv, qlog, sink, 1);
}

/* The same server listing v1 and v2: its set no longer fits the 256 bytes
 * ngtcp2_crypto_gnutls 1.11 encodes it into right after installing the
 * Handshake key, where a failure frees the key's contexts that ngtcp2 keeps
 * (the CONNECTION_CLOSE then crashed in gnutls_aead_cipher_encrypt). The
 * server now refuses before that: it closes in Initial with
 * INTERNAL_ERROR, and the client hears it. */
static void test_qlog_server_set_too_large(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  uvq_endpoint_stats es;
  (void)state;

  g_hostile_pa = 1;
  run_hostile_versions(&w, &cli, &srv, 0, NULL, 2);
  qt_run(&w, qt_app_is_closed, &cli, 5 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.established, 0);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(cli.ci.type, UVQ_CLOSE_TYPE_TRANSPORT);
  assert_int_equal(cli.ci.code, NGTCP2_INTERNAL_ERROR);
  assert_int_equal(cli.ci.reasonlen, strlen("transport parameters too large"));
  assert_memory_equal(cli.ci_reason, "transport parameters too large",
                      cli.ci.reasonlen);

  qt_run(&w, qt_app_is_closed, &srv, 60 * UVQ_SECONDS);
  assert_int_equal(srv.closed, 1);
  assert_int_equal(srv.established, 0);
  assert_int_equal(srv.ci.error, UVQ_ERR_INTERNAL);
  assert_int_equal(srv.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(srv.ci.code, NGTCP2_INTERNAL_ERROR);
  uvq_endpoint_get_stats(w.nodes[0].ep, &es); /* the server's */
  assert_int_equal(es.handshake_failures[UVQ_HS_FAIL_OTHER], 1);
  qt_run(&w, NULL, NULL, 120 * UVQ_SECONDS);
  qt_app_free(&cli);
  qt_app_free(&srv);
  qt_world_free(&w);
}

static void test_qlog_hostile_server_refused(void **state) {
  static qlog_sink sink;
  qt_world w;
  qt_app cli = {0}, srv = {0};
  uvq_endpoint_stats es;
  (void)state;

  memset(&sink, 0, sizeof(sink));
  g_hostile_pa = 1;
  run_hostile(&w, &cli, &srv, 1, &sink);
  /* Still here: no "stack smashing detected". */
  qt_run(&w, qt_app_is_closed, &cli, 5 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.established, 0);
  assert_int_equal(cli.ci.error, UVQ_ERR_QLOG_UNSAFE);
  assert_int_equal(cli.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(cli.ci.type, UVQ_CLOSE_TYPE_TRANSPORT);
  assert_int_equal(cli.ci.code, NGTCP2_TRANSPORT_PARAMETER_ERROR);
  assert_int_equal(cli.ci.reasonlen, strlen(UVQ_QLOG_TP_REASON));
  assert_memory_equal(cli.ci_reason, UVQ_QLOG_TP_REASON,
                      strlen(UVQ_QLOG_TP_REASON));
  assert_string_equal(uvq_strerror(UVQ_ERR_QLOG_UNSAFE),
                      "server transport parameters refused: too large for "
                      "ngtcp2's qlog (CVE-2026-40170)");
  /* Nothing of the server's set reached the trace. */
  assert_true(sink.len > 0);
  assert_null(memmem(sink.buf, sink.len, "\"owner\":\"remote\"", 16));
  assert_null(memmem(sink.buf, sink.len, "preferred_address", 17));
  uvq_endpoint_get_stats(w.nodes[1].ep, &es); /* the client's */
  assert_int_equal(es.handshake_failures[UVQ_HS_FAIL_OTHER], 1);

  /* The server hears the reason in the CONNECTION_CLOSE. */
  qt_run(&w, qt_app_is_closed, &srv, 60 * UVQ_SECONDS);
  assert_int_equal(srv.closed, 1);
  assert_int_equal(srv.ci.origin, UVQ_CLOSE_PEER);
  assert_int_equal(srv.ci.code, NGTCP2_TRANSPORT_PARAMETER_ERROR);
  assert_memory_equal(srv.ci_reason, UVQ_QLOG_TP_REASON,
                      strlen(UVQ_QLOG_TP_REASON));
  qt_run(&w, NULL, NULL, 120 * UVQ_SECONDS);
  qt_app_free(&cli);
  qt_app_free(&srv);
  qt_world_free(&w);
}

/* The same server without qlog: nothing to guard, the connection goes on
 * (a stream's worth of data), and the set it took is the hostile one. */
static void test_qlog_off_hostile_server_proceeds(void **state) {
  qt_world w;
  qt_app cli = {0}, srv = {0};
  const ngtcp2_transport_params *p;
  size_t len;
  (void)state;

  g_hostile_pa = 1;
  run_hostile(&w, &cli, &srv, 0, NULL);
  assert_int_equal(cli.established, 1);
  assert_int_equal(srv.established, 1);
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 30 * UVQ_SECONDS));
  qt_app_assert_received(&srv, 7, 4096);

  p = ngtcp2_conn_get_remote_transport_params(cli.conn->ngconn);
  assert_true(p->preferred_addr_present);
  assert_int_equal(p->preferred_addr.cid.datalen, NGTCP2_MAX_CIDLEN);
  assert_true(p->retry_scid_present);
  assert_int_equal(p->initial_scid.datalen, 20);
  assert_int_equal(p->initial_max_data, NGTCP2_MAX_VARINT);
  len = uvq_qlog_tp_len(p, 0, 1, 0);
  print_message("hostile set as a client's qlog would render it: %zu bytes "
                "(time 0), %zu at most\n",
                len, uvq_qlog_tp_len(p, 0, 1, UVQ_QLOG_TP_MAX_TIME_MS));
  assert_true(len > UVQ_QLOG_TP_BUFLEN);

  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 120 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(cli.ci.error, 0);
  qt_app_free(&cli);
  qt_app_free(&srv);
  qt_world_free(&w);
}

/* Large but fitting: the same maximal limits without the preferred_address
 * render to less than 1024 bytes, and the guarded client connects. */
static void test_qlog_large_set_that_fits(void **state) {
  static qlog_sink sink;
  qt_world w;
  qt_app cli = {0}, srv = {0};
  uint64_t t;
  (void)state;

  memset(&sink, 0, sizeof(sink));
  g_hostile_pa = 0;
  run_hostile(&w, &cli, &srv, 1, &sink);
  g_hostile_pa = 1;
  assert_int_equal(cli.established, 1);
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 30 * UVQ_SECONDS));
  size_t len = find_tp_event(&sink, "remote", &t);
  assert_int_equal(
      uvq_qlog_tp_len(ngtcp2_conn_get_remote_transport_params(cli.conn->ngconn),
                      0, 1, t),
      len);
  assert_true(len <= UVQ_QLOG_TP_BUFLEN);
  uvq_conn_close(cli.conn, 0, NULL);
  qt_run(&w, NULL, NULL, 120 * UVQ_SECONDS);
  qt_app_free(&cli);
  qt_app_free(&srv);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_qlog_len_matches_ngtcp2),
      cmocka_unit_test(test_qlog_check_boundary),
      cmocka_unit_test(test_qlog_off_hostile_server_proceeds),
      cmocka_unit_test(test_qlog_large_set_that_fits),
      cmocka_unit_test(test_qlog_hostile_server_refused),
      cmocka_unit_test(test_qlog_server_set_too_large),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
