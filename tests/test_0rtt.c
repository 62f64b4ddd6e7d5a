/*
 * Session resumption and 0-RTT (RFC 9001 §4.6), in one process: a first
 * connection gets a session ticket, the next resumes with it and sends a
 * request as early data; servers that refuse early data (a setting, or the
 * anti-replay record of a ClientHello seen before) are checked too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "qtest.h"

static const uint8_t REQUEST[] = "GET /index.html";
static const uint8_t RESPONSE[] = "200 here it is";

/* ---- one side of a connection ----------------------------------------- */

typedef struct side {
  uvq_conn *conn;
  int established;
  int closed;
  uvq_close_info ci;

  /* Client: the latest session ticket, and what 0-RTT did. */
  uint8_t ticket[4096];
  size_t ticketlen;
  int tickets;
  int rejected;
  int streams_closed;
  int resend_on_reject;

  /* Stream data received, and the stage it first arrived in. */
  uint8_t buf[256];
  size_t len;
  int fin;
  int data_calls;
  uvq_stage first_data_stage;
  uvq_early_data first_data_early;
} side;

/* Server-side bookkeeping, per server node. */
typedef struct server_rec {
  int accepted;
  int resumed;
  int early_data;
  side s;
} server_rec;

static server_rec g_srv[QT_MAX_NODES];

static int send_request(uvq_conn *conn) {
  int64_t sid;
  int rv = uvq_conn_open_stream(conn, 1, &sid, NULL);
  if (rv != 0) {
    return rv;
  }
  ssize_t n = uvq_stream_write(conn, sid, REQUEST, sizeof(REQUEST), 1);
  return n == (ssize_t)sizeof(REQUEST) ? 0 : UVQ_ERR_INTERNAL;
}

static int on_established(uvq_conn *conn, void *ud) {
  side *a = ud;
  (void)conn;
  a->established = 1;
  return 0;
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  side *a = ud;
  (void)sud;
  if (a->data_calls++ == 0) {
    uvq_conn_info info;
    uvq_conn_get_info(conn, &info);
    a->first_data_stage = uvq_conn_get_stage(conn);
    a->first_data_early = info.early_data;
  }
  assert_true(a->len + len <= sizeof(a->buf));
  memcpy(a->buf + a->len, data, len);
  a->len += len;
  if (fin) {
    a->fin = 1;
    if (uvq_conn_is_server(conn)) {
      /* Answer at once: before the handshake completes this is 0.5-RTT. */
      ssize_t n = uvq_stream_write(conn, sid, RESPONSE, sizeof(RESPONSE), 1);
      assert_int_equal(n, (ssize_t)sizeof(RESPONSE));
    }
  }
  return 0;
}

static void on_stream_closed(uvq_conn *conn, int64_t sid, uint64_t err,
                             void *ud, void *sud) {
  side *a = ud;
  (void)conn;
  (void)sid;
  (void)err;
  (void)sud;
  a->streams_closed++;
}

static int on_session_ticket(uvq_conn *conn, const uint8_t *data, size_t len,
                             void *ud) {
  side *a = ud;
  (void)conn;
  assert_true(len <= sizeof(a->ticket));
  memcpy(a->ticket, data, len);
  a->ticketlen = len;
  a->tickets++;
  return 0;
}

static int on_early_data_rejected(uvq_conn *conn, void *ud) {
  side *a = ud;
  uvq_conn_info info;
  a->rejected++;
  uvq_conn_get_info(conn, &info);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_REJECTED);
  /* Not established yet from the application's point of view. */
  assert_int_equal(a->established, 0);
  if (a->resend_on_reject) {
    return send_request(conn);
  }
  return 0;
}

static void on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  side *a = ud;
  (void)conn;
  assert_int_equal(a->closed, 0);
  a->closed = 1;
  a->ci = *ci;
  a->conn = NULL;
}

static const uvq_app_callbacks app_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_data = on_stream_data,
    .on_stream_closed = on_stream_closed,
    .on_closed = on_closed,
    .on_session_ticket = on_session_ticket,
    .on_early_data_rejected = on_early_data_rejected,
};

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  qt_node *n = ud;
  server_rec *r = &g_srv[n->idx];
  (void)ep;
  r->accepted++;
  r->resumed = info->resumed;
  r->early_data = info->early_data;
  r->s.conn = conn;
  *pcb = &app_cb;
  *pud = &r->s;
  return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static int connect_ex(qt_world *w, int c, int s, side *a, const uint8_t *res,
                      size_t reslen, int early_data) {
  uvq_connect_params p;
  uvq_connect_params_default(&p);
  p.callbacks = &app_cb;
  p.user_data = a;
  p.resumption = res;
  p.resumptionlen = reslen;
  p.early_data = early_data;
  return qt_connect_params(w, c, s, &p, &a->conn);
}

static int got_ticket(void *ud) {
  side *a = ud;
  return a->established && a->ticketlen > 0;
}

static int got_response(void *ud) { return ((side *)ud)->fin; }

/* Runs a first, full connection from |c| to |s| until a ticket arrived,
 * then closes it; the ticket is left in |a|. */
static void first_connection(qt_world *w, int c, int s, side *a) {
  memset(a, 0, sizeof(*a));
  assert_int_equal(connect_ex(w, c, s, a, NULL, 0, 0), 0);
  assert_true(qt_run(w, got_ticket, a, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[s].resumed, 0);
  assert_int_equal(g_srv[s].early_data, 0);
  assert_int_equal(gnutls_session_is_resumed(a->conn->tls), 0);
  assert_int_equal(uvq_conn_close(a->conn, 0, NULL), 0);
  qt_run(w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(a->closed, 1);
  assert_int_equal(a->ci.error, 0);
}

static uvq_settings server_settings(int early_data, int anti_replay) {
  uvq_settings st;
  uvq_settings_default(&st);
  st.early_data = early_data;
  st.anti_replay = anti_replay;
  return st;
}

/* ---- tests ------------------------------------------------------------ */

static void test_0rtt_resume_and_early_request(void **state) {
  qt_world w;
  side first, cli;
  uvq_conn_info info;
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 1);
  int s = qt_add_server(&w, NULL, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  first_connection(&w, c, s, &first);
  assert_true(first.tickets >= 1);

  /* Second connection: resume and send the request before any packet. */
  memset(&cli, 0, sizeof(cli));
  memset(&g_srv[s], 0, sizeof(g_srv[s]));
  assert_int_equal(connect_ex(&w, c, s, &cli, first.ticket, first.ticketlen, 1),
                   0);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_ATTEMPTED);
  assert_int_equal(send_request(cli.conn), 0);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));

  /* The server resumed, accepted the early data and had the whole request
   * while its handshake was still running. */
  assert_int_equal(g_srv[s].accepted, 1);
  assert_int_equal(g_srv[s].resumed, 1);
  assert_int_equal(g_srv[s].early_data, 1);
  assert_int_equal(g_srv[s].s.first_data_stage, UVQ_STAGE_HANDSHAKE);
  assert_int_equal(g_srv[s].s.first_data_early, UVQ_EARLY_DATA_ACCEPTED);
  assert_int_equal(g_srv[s].s.len, sizeof(REQUEST));
  assert_memory_equal(g_srv[s].s.buf, REQUEST, sizeof(REQUEST));
  uvq_conn_get_info(g_srv[s].s.conn, &info);
  assert_int_equal(info.resumed, 1);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_ACCEPTED);

  /* The client resumed, its early data was taken, the answer arrived. */
  assert_int_equal(cli.established, 1);
  assert_int_equal(cli.rejected, 0);
  assert_int_equal(gnutls_session_is_resumed(cli.conn->tls), 1);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.resumed, 1);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_ACCEPTED);
  assert_int_equal(cli.len, sizeof(RESPONSE));
  assert_memory_equal(cli.buf, RESPONSE, sizeof(RESPONSE));

  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(cli.closed, 1);
  assert_int_equal(g_srv[s].s.closed, 1);
  qt_world_free(&w);
}

static void test_0rtt_resume_without_early_data(void **state) {
  qt_world w;
  side first, cli;
  uvq_conn_info info;
  int64_t sid;
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 2);
  int s = qt_add_server(&w, NULL, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  first_connection(&w, c, s, &first);

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv[s], 0, sizeof(g_srv[s]));
  assert_int_equal(connect_ex(&w, c, s, &cli, first.ticket, first.ticketlen, 0),
                   0);
  /* No 0-RTT asked for: no stream before the handshake. */
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, NULL),
                   UVQ_ERR_INVALID_STATE);
  assert_true(qt_run(&w, got_ticket, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[s].resumed, 1);
  assert_int_equal(g_srv[s].early_data, 0);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.resumed, 1);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_NONE);
  assert_int_equal(cli.rejected, 0);
  qt_world_free(&w);
}

static void test_0rtt_bad_resumption_blob(void **state) {
  qt_world w;
  side cli;
  uint8_t junk[100];
  (void)state;

  qt_world_init(&w, 3);
  int s = qt_add_server(&w, NULL, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  memset(&cli, 0, sizeof(cli));
  memset(junk, 0x5a, sizeof(junk));
  assert_int_equal(connect_ex(&w, c, s, &cli, junk, sizeof(junk), 1),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  qt_world_free(&w);
}

/* The blob carries the server's 0-RTT limits as ngtcp2 encodes them
 * (ngtcp2_conn_encode_0rtt_transport_params): a resuming client has them
 * before its first packet, only when it attempts 0-RTT. A blob whose
 * version, lengths or parameters do not parse is refused whole. */
static void test_0rtt_blob_carries_server_limits(void **state) {
  qt_world w;
  side first, cli, cli2, cli3;
  uvq_settings st;
  const ngtcp2_transport_params *tp;
  uint8_t bad[4096];
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 6);
  uvq_settings_default(&st);
  st.initial_max_data = 3 * 1000 * 1000 + 7;
  st.initial_max_stream_data = 700 * 1000 + 3;
  st.max_streams_bidi = 37;
  st.max_streams_uni = 11;
  st.max_datagram_frame_size = 1234;
  int s = qt_add_server(&w, &st, on_accept, NULL);
  int c = qt_add_client(&w, &st, NULL);
  first_connection(&w, c, s, &first);

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv[s], 0, sizeof(g_srv[s]));
  assert_int_equal(connect_ex(&w, c, s, &cli, first.ticket, first.ticketlen, 1),
                   0);
  tp = ngtcp2_conn_get_remote_transport_params(cli.conn->ngconn);
  assert_non_null(tp);
  assert_int_equal(tp->initial_max_data, st.initial_max_data);
  assert_int_equal(tp->initial_max_stream_data_bidi_local,
                   st.initial_max_stream_data);
  assert_int_equal(tp->initial_max_stream_data_bidi_remote,
                   st.initial_max_stream_data);
  assert_int_equal(tp->initial_max_stream_data_uni, st.initial_max_stream_data);
  assert_int_equal(tp->initial_max_streams_bidi, 37);
  assert_int_equal(tp->initial_max_streams_uni, 11);
  assert_int_equal(tp->active_connection_id_limit, UVQ_ACTIVE_CID_LIMIT);
  assert_int_equal(tp->max_datagram_frame_size, 1234);
  assert_int_equal(send_request(cli.conn), 0);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[s].early_data, 1);
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);

  /* Resumption without 0-RTT leaves ngtcp2 without remembered limits. */
  memset(&cli2, 0, sizeof(cli2));
  memset(&g_srv[s], 0, sizeof(g_srv[s]));
  assert_int_equal(
      connect_ex(&w, c, s, &cli2, first.ticket, first.ticketlen, 0), 0);
  assert_null(ngtcp2_conn_get_remote_transport_params(cli2.conn->ngconn));
  assert_int_equal(uvq_conn_close(cli2.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);

  /* "uvqr" | layout | u32 QUIC version | flags | u16 t | parameters |
   * u32 n | session data; flags 1: the ticket grants early data. */
  assert_true(first.ticketlen > 16 && first.ticketlen <= sizeof(bad));
  assert_memory_equal(first.ticket, "uvqr", 4);
  assert_int_equal(first.ticket[4], 3);
  assert_memory_equal(first.ticket + 5, "\x00\x00\x00\x01", 4);
  assert_int_equal(first.ticket[9], 1);
  size_t tplen = (size_t)first.ticket[10] << 8 | first.ticket[11];
  assert_true(tplen > 0 && 12 + tplen + 4 < first.ticketlen);
  for (int i = 0; i < 5; i++) {
    memcpy(bad, first.ticket, first.ticketlen);
    size_t badlen = first.ticketlen;
    switch (i) {
    case 0: /* the layout of the 8 x u64 blobs */
      bad[4] = 1;
      break;
    case 1: /* a parameter length running past its section */
      bad[13] = 0x3f;
      break;
    case 2: /* parameters cut short (the section shrinks by one byte) */
      bad[11]--;
      memmove(bad + 12 + tplen - 1, bad + 12 + tplen, badlen - 12 - tplen);
      badlen--;
      break;
    case 3: /* cut inside the QUIC version */
      badlen = 7;
      break;
    default: /* one byte missing at the end */
      badlen--;
      break;
    }
    memset(&cli3, 0, sizeof(cli3));
    assert_int_equal(connect_ex(&w, c, s, &cli3, bad, badlen, i % 2),
                     UVQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  }
  qt_world_free(&w);
}

static void test_0rtt_refused_by_setting(void **state) {
  qt_world w;
  side first, cli;
  uvq_conn_info info;
  uvq_settings off = server_settings(0, 1);
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 4);
  /* Two servers sharing one TLS context (ticket key): one with 0-RTT,
   * one without. */
  int a = qt_add_server(&w, NULL, on_accept, NULL);
  int b = qt_add_server(&w, &off, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  first_connection(&w, c, a, &first);

  memset(&cli, 0, sizeof(cli));
  cli.resend_on_reject = 1;
  assert_int_equal(connect_ex(&w, c, b, &cli, first.ticket, first.ticketlen, 1),
                   0);
  assert_int_equal(send_request(cli.conn), 0);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));

  /* The server resumed but took no early data: the request it answered
   * is the one resent after the handshake. */
  assert_int_equal(g_srv[b].accepted, 1);
  assert_int_equal(g_srv[b].resumed, 1);
  assert_int_equal(g_srv[b].early_data, 0);
  assert_int_equal(g_srv[b].s.first_data_stage, UVQ_STAGE_RUNNING);
  assert_int_equal(g_srv[b].s.len, sizeof(REQUEST));

  /* The client was told once, its early stream was closed first. */
  assert_int_equal(cli.rejected, 1);
  assert_int_equal(cli.streams_closed >= 1, 1);
  assert_int_equal(cli.established, 1);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.resumed, 1);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_REJECTED);
  assert_int_equal(cli.len, sizeof(RESPONSE));
  assert_memory_equal(cli.buf, RESPONSE, sizeof(RESPONSE));
  qt_world_free(&w);
}

/* ---- tickets that grant no early data ---------------------------------- */

/* What the servers' ClientHello hook saw: the extensions of the latest
 * ClientHello (early_data 42, pre_shared_key 41). */
static int g_ch_early_data, g_ch_psk, g_ch_seen;

static int ch_ext(void *ctx, unsigned tls_id, const unsigned char *data,
                  unsigned size) {
  (void)ctx;
  (void)data;
  (void)size;
  if (tls_id == 42) {
    g_ch_early_data = 1;
  } else if (tls_id == 41) {
    g_ch_psk = 1;
  }
  return 0;
}

static int ch_hook(gnutls_session_t session, unsigned htype, unsigned when,
                   unsigned incoming, const gnutls_datum_t *msg) {
  (void)session;
  (void)when;
  if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO && incoming) {
    g_ch_seen++;
    g_ch_early_data = g_ch_psk = 0;
    assert_int_equal(gnutls_ext_raw_parse(NULL, ch_ext, msg,
                                          GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO),
                     0);
  }
  return 0;
}

static int tls_hook(uvq_conn *conn, struct gnutls_session_int *session,
                    void *ud) {
  (void)conn;
  (void)ud;
  gnutls_handshake_set_hook_function(session, GNUTLS_HANDSHAKE_CLIENT_HELLO,
                                     GNUTLS_HOOK_PRE, ch_hook);
  return 0;
}

/* A server TLS context like the world's, with the ClientHello hook; its
 * own ticket master key, so its tickets resume only on its servers. */
static uvq_tls_ctx *hooked_server_tls(void) {
  static const char *const alpn[] = {"test", "hq-interop"};
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn;
  cfg.alpnlen = 2;
  cfg.hook = tls_hook;
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, NULL, 0), 0);
  return ctx;
}

/* Counts the client's 0-RTT packets (long header type 1), walking the
 * coalesced packets of each datagram it sends. */
typedef struct zrtt_count {
  int client;
  int pkts;
} zrtt_count;

static uint64_t varint(const uint8_t *p, size_t len, size_t *pn) {
  size_t n = (size_t)1 << (p[0] >> 6);
  uint64_t v = p[0] & 0x3f;
  if (n > len) {
    *pn = len + 1;
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    v = v << 8 | p[i];
  }
  *pn = n;
  return v;
}

static int zrtt_filter(qt_world *w, int from, qt_pkt *p, void *ud) {
  zrtt_count *zc = ud;
  const uint8_t *b = p->data;
  size_t len = p->len, n;
  (void)w;
  if (from != zc->client) {
    return 0;
  }
  while (len > 7 && (b[0] & 0x80)) {
    unsigned type = (b[0] >> 4) & 3;
    size_t off = 5;
    off += 1 + b[off]; /* DCID */
    if (off >= len) {
      break;
    }
    off += 1 + b[off];            /* SCID */
    if (type == 0 && off < len) { /* Initial: token */
      uint64_t tl = varint(b + off, len - off, &n);
      off += n + (size_t)tl;
    }
    if (off >= len) {
      break;
    }
    uint64_t pl = varint(b + off, len - off, &n);
    off += n + (size_t)pl;
    if (type == 1) {
      zc->pkts++;
    }
    if (off > len) {
      break;
    }
    b += off;
    len -= off;
  }
  return 0;
}

/* A server whose settings turn early data off issues tickets without the
 * early_data extension (RFC 8446 §4.6.1). A client asked to attempt 0-RTT
 * with one must not (RFC 8446 §4.2.10: quic-go's server answers the
 * offer with alert 110): no early_data in its ClientHello, no 0-RTT
 * packet, uvq_conn_info.early_data NONE from the start, streams only once
 * the handshake completed. It still resumes. */
static void test_0rtt_ticket_without_early_data(void **state) {
  qt_world w;
  side first, cli;
  uvq_conn_info info;
  zrtt_count zc = {0};
  int64_t sid;
  uvq_settings off = server_settings(0, 1);
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 7);
  uvq_tls_ctx_del(w.server_tls);
  w.server_tls = hooked_server_tls();
  int s = qt_add_server(&w, &off, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  zc.client = c;
  w.filter = zrtt_filter;
  w.filter_ud = &zc;
  first_connection(&w, c, s, &first);
  assert_true(first.tickets >= 1);
  /* The blob says the ticket grants no early data. */
  assert_int_equal(first.ticket[4], 3);
  assert_int_equal(first.ticket[9], 0);

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv[s], 0, sizeof(g_srv[s]));
  g_ch_seen = 0;
  assert_int_equal(connect_ex(&w, c, s, &cli, first.ticket, first.ticketlen, 1),
                   0);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_NONE);
  assert_int_equal(uvq_conn_open_stream(cli.conn, 1, &sid, NULL),
                   UVQ_ERR_INVALID_STATE);
  assert_true(qt_run(&w, got_ticket, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_ch_seen, 1);
  assert_int_equal(g_ch_psk, 1);
  assert_int_equal(g_ch_early_data, 0);
  assert_int_equal(zc.pkts, 0);

  /* Resumed on both sides, 0-RTT neither attempted nor refused. */
  assert_int_equal(g_srv[s].resumed, 1);
  assert_int_equal(g_srv[s].early_data, 0);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.resumed, 1);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_NONE);
  assert_int_equal(cli.rejected, 0);

  /* The request goes out once the handshake is done, and is answered. */
  assert_int_equal(send_request(cli.conn), 0);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[s].s.first_data_stage, UVQ_STAGE_RUNNING);
  assert_int_equal(cli.len, sizeof(RESPONSE));
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);

  /* The same server, early data on: its tickets grant it, and the client
   * offers it (the hook and the counter see it, so their silence above
   * means something). */
  int s2 = qt_add_server(&w, NULL, on_accept, NULL);
  first_connection(&w, c, s2, &first);
  assert_int_equal(first.ticket[9], 1);
  memset(&cli, 0, sizeof(cli));
  assert_int_equal(
      connect_ex(&w, c, s2, &cli, first.ticket, first.ticketlen, 1), 0);
  assert_int_equal(send_request(cli.conn), 0);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_ch_early_data, 1);
  assert_true(zc.pkts >= 1);
  assert_int_equal(g_srv[s2].early_data, 1);

  /* A layout 2 blob (no QUIC version, no flags byte: uvquic before it
   * could tell) resumes without 0-RTT. */
  uint8_t v2[4096];
  assert_true(first.ticketlen <= sizeof(v2));
  memcpy(v2, first.ticket, 5);
  v2[4] = 2;
  memcpy(v2 + 5, first.ticket + 10, first.ticketlen - 10);
  memset(&cli, 0, sizeof(cli));
  memset(&g_srv[s2], 0, sizeof(g_srv[s2]));
  zc.pkts = 0;
  assert_int_equal(connect_ex(&w, c, s2, &cli, v2, first.ticketlen - 5, 1), 0);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_NONE);
  assert_true(qt_run(&w, got_ticket, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_ch_early_data, 0);
  assert_int_equal(zc.pkts, 0);
  assert_int_equal(g_srv[s2].resumed, 1);
  qt_world_free(&w);
}

/* A server that cannot use the ticket (another ticket key) refuses the
 * resumption and with it the early data: the connection completes as a
 * full handshake, the early request is resent and answered. */
static void test_0rtt_resumption_refused(void **state) {
  qt_world w;
  side first, cli;
  uvq_conn_info info;
  uvq_tls_ctx *shared;
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 8);
  int a = qt_add_server(&w, NULL, on_accept, NULL);
  shared = w.server_tls;
  w.server_tls = hooked_server_tls();
  int b = qt_add_server(&w, NULL, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  first_connection(&w, c, a, &first);
  assert_int_equal(first.ticket[9], 1);

  memset(&cli, 0, sizeof(cli));
  cli.resend_on_reject = 1;
  g_ch_seen = 0;
  assert_int_equal(connect_ex(&w, c, b, &cli, first.ticket, first.ticketlen, 1),
                   0);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_ATTEMPTED);
  assert_int_equal(send_request(cli.conn), 0);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));
  /* The offer was made, and refused with the resumption. */
  assert_int_equal(g_ch_seen, 1);
  assert_int_equal(g_ch_psk, 1);
  assert_int_equal(g_ch_early_data, 1);
  assert_int_equal(g_srv[b].accepted, 1);
  assert_int_equal(g_srv[b].resumed, 0);
  assert_int_equal(g_srv[b].early_data, 0);
  assert_int_equal(g_srv[b].s.first_data_stage, UVQ_STAGE_RUNNING);
  assert_int_equal(g_srv[b].s.len, sizeof(REQUEST));
  assert_int_equal(cli.rejected, 1);
  assert_int_equal(cli.established, 1);
  uvq_conn_get_info(cli.conn, &info);
  assert_int_equal(info.resumed, 0);
  assert_int_equal(info.early_data, UVQ_EARLY_DATA_REJECTED);
  assert_int_equal(cli.len, sizeof(RESPONSE));
  assert_memory_equal(cli.buf, RESPONSE, sizeof(RESPONSE));
  assert_int_equal(uvq_conn_close(cli.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 5 * UVQ_SECONDS);
  /* Endpoints first, then the contexts they use. */
  uvq_tls_ctx *own = w.server_tls;
  w.server_tls = shared;
  qt_world_free(&w);
  uvq_tls_ctx_del(own);
}

/* Captures the client's first flight to the server; drops whatever the
 * replay targets send back (the real client must not see it). */
typedef struct capture {
  int client, server;
  int replay_a, replay_b;
  int on;
  uint8_t pkt[4][1500];
  size_t len[4];
  int n;
} capture;

static int capture_filter(qt_world *w, int from, qt_pkt *p, void *ud) {
  capture *cap = ud;
  (void)w;
  if (from == cap->replay_a || from == cap->replay_b) {
    return 1;
  }
  if (cap->on && from == cap->client && p->dst == cap->server && cap->n < 4) {
    memcpy(cap->pkt[cap->n], p->data, p->len);
    cap->len[cap->n] = p->len;
    cap->n++;
  }
  return 0;
}

static int conn_of_server_gone(void *ud) {
  qt_node *n = ud;
  return uvq_endpoint_conn_count(n->ep) == 0;
}

static void test_0rtt_replay_refused(void **state) {
  qt_world w;
  side first, cli;
  capture cap;
  uvq_settings noreplay = server_settings(1, 0);
  (void)state;

  memset(g_srv, 0, sizeof(g_srv));
  memset(&cap, 0, sizeof(cap));
  qt_world_init(&w, 5);
  /* a takes the real connection; b (anti-replay on) and d (off) get a
   * replay of its first flight. All share the TLS context. */
  int a = qt_add_server(&w, NULL, on_accept, NULL);
  int b = qt_add_server(&w, NULL, on_accept, NULL);
  int d = qt_add_server(&w, &noreplay, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  cap.client = c;
  cap.server = a;
  cap.replay_a = b;
  cap.replay_b = d;
  w.filter = capture_filter;
  w.filter_ud = &cap;
  first_connection(&w, c, a, &first);

  memset(&cli, 0, sizeof(cli));
  memset(&g_srv[a], 0, sizeof(g_srv[a]));
  cap.on = 1;
  assert_int_equal(connect_ex(&w, c, a, &cli, first.ticket, first.ticketlen, 1),
                   0);
  assert_int_equal(send_request(cli.conn), 0);
  /* One flush sends the first flight: Initial with the ClientHello and the
   * 0-RTT request. */
  uvq_endpoint_flush(w.nodes[c].ep, w.now);
  cap.on = 0;
  assert_true(cap.n >= 1);
  assert_true(qt_run(&w, got_response, &cli, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[a].early_data, 1);
  assert_int_equal(g_srv[a].s.first_data_stage, UVQ_STAGE_HANDSHAKE);

  /* The same flight replayed to another server sharing the context: the
   * session resumes (the ticket is valid) but the early data is refused,
   * so the request never reaches the application. */
  for (int i = 0; i < cap.n; i++) {
    qt_inject(&w, b, &w.nodes[c].addr, cap.pkt[i], cap.len[i]);
  }
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_int_equal(g_srv[b].accepted, 1);
  assert_int_equal(g_srv[b].resumed, 1);
  assert_int_equal(g_srv[b].early_data, 0);
  assert_int_equal(g_srv[b].s.data_calls, 0);

  /* With anti-replay off, the replay gets through: that is what the
   * switch costs. */
  for (int i = 0; i < cap.n; i++) {
    qt_inject(&w, d, &w.nodes[c].addr, cap.pkt[i], cap.len[i]);
  }
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS);
  assert_int_equal(g_srv[d].accepted, 1);
  assert_int_equal(g_srv[d].resumed, 1);
  assert_int_equal(g_srv[d].early_data, 1);
  assert_int_equal(g_srv[d].s.len, sizeof(REQUEST));
  assert_memory_equal(g_srv[d].s.buf, REQUEST, sizeof(REQUEST));

  /* The replayed connections never complete; they time out. */
  assert_true(qt_run(&w, conn_of_server_gone, &w.nodes[b], 30 * UVQ_SECONDS));
  assert_int_equal(g_srv[b].s.closed, 1);
  assert_int_equal(g_srv[b].s.ci.error, UVQ_ERR_HANDSHAKE_TIMEOUT);
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_0rtt_resume_and_early_request),
      cmocka_unit_test(test_0rtt_resume_without_early_data),
      cmocka_unit_test(test_0rtt_bad_resumption_blob),
      cmocka_unit_test(test_0rtt_blob_carries_server_limits),
      cmocka_unit_test(test_0rtt_refused_by_setting),
      cmocka_unit_test(test_0rtt_replay_refused),
      cmocka_unit_test(test_0rtt_ticket_without_early_data),
      cmocka_unit_test(test_0rtt_resumption_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
