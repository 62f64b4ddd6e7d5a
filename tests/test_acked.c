/*
 * What the peer acknowledged, for an access log: uvq_stream_get_acked (the
 * core's acknowledged prefix and FIN) and uvq_h3_stream_get_acked (the
 * response body). In process, fake clock. hq's log is tested in test_hq.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "qtest.h"
#include "uvquic/uvquic_h3.h"

/* ---- the core: a FIN sent alone ----------------------------------------- */

#define RAW_LEN 100000

/* The server answers a request stream with RAW_LEN bytes and no FIN; the
 * test sends the FIN later, alone in its frame. */
typedef struct raw_server {
  uvq_conn *conn;
  int64_t sid;
  int answered;
  int closed;
  uint64_t closed_acked; /* uvq_stream_get_acked in on_stream_closed */
  int closed_fin;
} raw_server;

static raw_server RS;
static int DROP_FROM_SERVER; /* the wire drops the server's datagrams */
static uint8_t PAYLOAD[RAW_LEN];

static int rs_on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                             size_t len, int fin, void *ud, void *sud) {
  (void)data;
  (void)len;
  (void)ud;
  (void)sud;
  if (fin && !RS.answered) {
    RS.answered = 1;
    RS.conn = conn;
    RS.sid = sid;
    assert_int_equal(uvq_stream_write(conn, sid, PAYLOAD, RAW_LEN, 0), RAW_LEN);
  }
  return 0;
}

static void rs_on_stream_closed(uvq_conn *conn, int64_t sid, uint64_t code,
                                void *ud, void *sud) {
  (void)code;
  (void)ud;
  (void)sud;
  if (sid == RS.sid) {
    RS.closed = 1;
    RS.closed_acked = uvq_stream_get_acked(conn, sid, &RS.closed_fin);
  }
}

static const uvq_app_callbacks rs_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = rs_on_stream_data,
    .on_stream_closed = rs_on_stream_closed,
};

static int rs_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  (void)ep;
  (void)conn;
  (void)info;
  (void)ud;
  *pcb = &rs_callbacks;
  *pud = NULL;
  return 0;
}

/* The client sends one request with FIN and reads what comes back. */
static int rc_on_established(uvq_conn *conn, void *ud) {
  int64_t sid;
  (void)ud;
  assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"x", 1, 1), 1);
  return 0;
}

static const uvq_app_callbacks rc_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = rc_on_established,
};

static int drop_server(qt_world *w, int from, qt_pkt *p, void *ud) {
  (void)p;
  (void)ud;
  return DROP_FROM_SERVER && from == w->nodes[0].idx;
}

static int all_data_acked(void *ud) {
  (void)ud;
  return RS.answered &&
         uvq_stream_get_acked(RS.conn, RS.sid, NULL) == (uint64_t)RAW_LEN;
}

static int rs_closed(void *ud) {
  (void)ud;
  return RS.closed;
}

/* Every byte acknowledged is not the stream delivered while its FIN, sent
 * alone later, is not: only the FIN's own acknowledgement completes it. */
static void test_acked_fin_alone(void **state) {
  qt_world w;
  int s, c, fin = -1;
  (void)state;
  memset(&RS, 0, sizeof(RS));
  DROP_FROM_SERVER = 0;
  qt_world_init(&w, 7);
  s = qt_add_server(&w, NULL, rs_accept, NULL);
  c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(s, 0);
  w.filter = drop_server;
  assert_int_equal(qt_connect(&w, c, s, &rc_callbacks, NULL, NULL), 0);
  assert_true(qt_run(&w, all_data_acked, NULL, 10 * UVQ_SECONDS));
  assert_int_equal(uvq_stream_get_acked(RS.conn, RS.sid, &fin), RAW_LEN);
  assert_int_equal(fin, 0); /* no FIN sent yet */

  /* The FIN goes alone, and is lost, again and again. */
  DROP_FROM_SERVER = 1;
  assert_int_equal(uvq_stream_write(RS.conn, RS.sid, NULL, 0, 1), 0);
  qt_run(&w, NULL, NULL, 500 * UVQ_MILLISECONDS);
  fin = -1;
  assert_int_equal(uvq_stream_get_acked(RS.conn, RS.sid, &fin), RAW_LEN);
  assert_int_equal(fin, 0);
  assert_false(RS.closed);

  /* Let it through: the stream closes delivered. */
  DROP_FROM_SERVER = 0;
  assert_true(qt_run(&w, rs_closed, NULL, 30 * UVQ_SECONDS));
  assert_int_equal(RS.closed_acked, RAW_LEN);
  assert_int_equal(RS.closed_fin, 1);
  /* An unknown stream: nothing. */
  fin = -1;
  assert_int_equal(uvq_stream_get_acked(RS.conn, 4000, &fin), 0);
  assert_int_equal(fin, 0);
  qt_world_free(&w);
}

/* ---- HTTP/3: the response body ------------------------------------------ */

#define BODY_LEN (1024u * 1024 + 17)
#define CANCEL_AT 200000

typedef struct h3_seen {
  int closes;
  int error;
  uint64_t acked;
  int complete;
  uint64_t provided;
} h3_seen;

static h3_seen H3S;
static uvq_h3_server *SRV;

static ssize_t provide(uvq_h3_stream *st, uint8_t *buf, size_t len, int *peof,
                       void *ud) {
  uint64_t left = BODY_LEN - H3S.provided;
  size_t n = left < len ? (size_t)left : len;
  (void)st;
  (void)ud;
  qt_pattern_fill(3, H3S.provided, buf, n);
  H3S.provided += n;
  *peof = H3S.provided == BODY_LEN;
  return (ssize_t)n;
}

static int h3_on_request(uvq_h3_stream *st, const uvq_h3_request_info *ri,
                         void *ud) {
  uvq_h3_response resp;
  (void)ri;
  (void)ud;
  memset(&resp, 0, sizeof(resp));
  resp.status = 200;
  resp.body.type = UVQ_H3_BODY_PROVIDER;
  resp.body.read = provide;
  return uvq_h3_respond(st, &resp);
}

static void h3_on_close(uvq_h3_stream *st, int error, uint64_t code, void *ud) {
  (void)code;
  (void)ud;
  H3S.closes++;
  H3S.error = error;
  H3S.acked = uvq_h3_stream_get_acked(st, &H3S.complete);
}

static int h3_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  return uvq_h3_server_accept(SRV, conn, uvq_conn_get_now(conn), pcb, pud);
}

typedef struct h3_client {
  uint64_t received;
  int cancel; /* cancel the request past CANCEL_AT bytes */
  int done;
  int error;
} h3_client;

static h3_client HC;

static void hc_on_data(uvq_h3_stream *st, const uint8_t *d, size_t len,
                       void *ud) {
  (void)d;
  (void)ud;
  HC.received += len;
  if (HC.cancel && HC.received >= CANCEL_AT) {
    HC.cancel = 0;
    assert_int_equal(uvq_h3_cancel(st), 0);
  }
}

static void hc_on_complete(uvq_h3_stream *st, int error, uint64_t code,
                           void *ud) {
  (void)st;
  (void)code;
  (void)ud;
  HC.done = 1;
  HC.error = error;
}

static int server_closed(void *ud) {
  (void)ud;
  return H3S.closes > 0;
}

/* One GET of BODY_LEN bytes; |cancel| cuts it short from the client. */
static void h3_get(int cancel) {
  static const char *const alpn[] = {"h3"};
  uvq_h3_server_config scfg;
  uvq_h3_client_config ccfg;
  uvq_h3_conn *cli;
  uvq_h3_request req;
  qt_world w;
  int s, c;

  memset(&H3S, 0, sizeof(H3S));
  memset(&HC, 0, sizeof(HC));
  HC.cancel = cancel;
  uvq_h3_server_config_default(&scfg);
  scfg.on_request = h3_on_request;
  scfg.on_stream_close = h3_on_close;
  assert_int_equal(uvq_h3_server_new(&SRV, &scfg), 0);
  qt_world_init_alpn(&w, 11, alpn, 1);
  s = qt_add_server(&w, NULL, h3_accept, NULL);
  c = qt_add_client(&w, NULL, NULL);
  uvq_h3_client_config_default(&ccfg);
  assert_int_equal(uvq_h3_conn_client_new(&cli, &ccfg), 0);
  assert_int_equal(qt_connect(&w, c, s, uvq_h3_callbacks(), cli, NULL), 0);
  uvq_h3_request_init(&req);
  req.method = "GET";
  req.scheme = "https";
  req.authority = "localhost";
  req.path = "/body";
  req.cb.on_data = hc_on_data;
  req.cb.on_complete = hc_on_complete;
  assert_int_equal(uvq_h3_submit(cli, &req, NULL), 0);
  assert_true(qt_run(&w, server_closed, NULL, 60 * UVQ_SECONDS));
  assert_true(HC.done);
  uvq_endpoint_close_all(w.nodes[c].ep, 0x100, "bye");
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  uvq_h3_conn_del(cli);
  qt_world_free(&w);
  uvq_h3_server_del(SRV);
}

/* Delivered: exactly the body, not its HEADERS and DATA frame headers. */
static void test_acked_h3_complete(void **state) {
  (void)state;
  h3_get(0);
  assert_int_equal(HC.error, 0);
  assert_int_equal(HC.received, BODY_LEN);
  assert_int_equal(H3S.error, 0);
  assert_int_equal(H3S.complete, 1);
  assert_int_equal(H3S.acked, BODY_LEN);
}

/* Cancelled by the client: what it acknowledged of the body, less than
 * the body and never more than the server read, and not complete. */
static void test_acked_h3_cancelled(void **state) {
  (void)state;
  h3_get(1);
  assert_int_equal(HC.error, UVQ_H3_ERR_CANCELLED);
  assert_true(HC.received >= CANCEL_AT);
  assert_int_not_equal(H3S.error, 0);
  assert_int_equal(H3S.complete, 0);
  assert_true(H3S.acked > 0);
  assert_true(H3S.acked < BODY_LEN);
  assert_true(H3S.acked <= H3S.provided);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_acked_fin_alone),
      cmocka_unit_test(test_acked_h3_complete),
      cmocka_unit_test(test_acked_h3_cancelled),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
