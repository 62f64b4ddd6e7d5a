/*
 * Stream credit (MAX_STREAMS) for the peer's bidirectional streams, in one
 * process over the in-memory wire: closed streams are given back in
 * batches, once fewer than half of settings.max_streams_bidi remain to the
 * peer, so a run of requests costs a MAX_STREAMS frame per half window, not
 * one per request; and a peer is never held up, even with most of its
 * window held by streams that stay open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "qtest.h"

#define WINDOW 20

typedef struct credit_run {
  /* Client: streams kept open (no FIN), then requests one after another. */
  int held, requests, done, opened;
  int failed_open;
  int waiting; /* a request waits for credit (on_streams_available) */
  uvq_conn *cli;
  /* Server's qlog, to count the MAX_STREAMS frames it sent. */
  char *log;
  size_t loglen, logcap;
} credit_run;

static credit_run g;

static void qlog_cb(void *ud, uvq_conn *conn, const void *data, size_t len,
                    int fin) {
  (void)ud;
  (void)conn;
  (void)fin;
  if (g.loglen + len + 1 > g.logcap) {
    g.logcap = (g.loglen + len + 1) * 2;
    g.log = realloc(g.log, g.logcap);
    assert_non_null(g.log);
  }
  memcpy(g.log + g.loglen, data, len);
  g.loglen += len;
  g.log[g.loglen] = '\0';
}

/* MAX_STREAMS frames in packets the server sent. */
static int max_streams_sent(void) {
  int n = 0;
  const char *p = g.log;
  while (p && (p = strstr(p, "\"name\":\"transport:packet_sent\"")) != NULL) {
    const char *end = strchr(p, 0x1e);
    const char *f = strstr(p, "\"frame_type\":\"max_streams\"");
    if (f && (end == NULL || f < end)) {
      n++;
    }
    p++;
  }
  return n;
}

static void next_request(uvq_conn *conn) {
  int64_t sid;
  int rv;
  if (g.opened - g.held >= g.requests) {
    return;
  }
  rv = uvq_conn_open_stream(conn, 1, &sid, NULL);
  if (rv != 0) {
    g.failed_open++;
    g.waiting = 1; /* on_streams_available tries again */
    return;
  }
  g.opened++;
  assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"get", 3, 1),
                   3);
}

static int cli_established(uvq_conn *conn, void *ud) {
  int i;
  (void)ud;
  g.cli = conn;
  for (i = 0; i < g.held; i++) {
    int64_t sid;
    assert_int_equal(uvq_conn_open_stream(conn, 1, &sid, NULL), 0);
    g.opened++;
    assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"h", 1, 0),
                     1);
  }
  next_request(conn);
  return 0;
}

static int cli_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                    size_t len, int fin, void *ud, void *sud) {
  (void)sid;
  (void)data;
  (void)len;
  (void)ud;
  (void)sud;
  if (fin) {
    g.done++;
    next_request(conn);
  }
  return 0;
}

static int cli_available(uvq_conn *conn, void *ud) {
  (void)ud;
  if (g.waiting) {
    g.waiting = 0;
    next_request(conn);
  }
  return 0;
}

static int srv_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                    size_t len, int fin, void *ud, void *sud) {
  (void)data;
  (void)len;
  (void)ud;
  (void)sud;
  if (fin) {
    assert_int_equal(uvq_stream_write(conn, sid, (const uint8_t *)"ok", 2, 1),
                     2);
  }
  return 0;
}

static const uvq_app_callbacks cli_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cli_established,
    .on_stream_data = cli_data,
    .on_streams_available = cli_available,
};

static const uvq_app_callbacks srv_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = srv_data,
};

static int srv_accept(uvq_endpoint *ep, uvq_conn *conn,
                      const uvq_accept_info *info,
                      const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)conn;
  (void)info;
  (void)ud;
  *pcb = &srv_cb;
  *pud = NULL;
  return 0;
}

static int all_done(void *ud) {
  (void)ud;
  return g.done == g.requests;
}

static void run(int held, int requests) {
  qt_world w;
  uvq_settings ss;
  int s, c;
  uvq_conn *conn = NULL;

  memset(&g, 0, sizeof(g));
  g.held = held;
  g.requests = requests;
  qt_world_init(&w, 5);
  w.delay = 1 * UVQ_MILLISECONDS;
  uvq_settings_default(&ss);
  ss.max_streams_bidi = WINDOW;
  ss.qlog = qlog_cb;
  s = qt_add_server(&w, &ss, srv_accept, NULL);
  c = qt_add_client(&w, NULL, NULL);
  assert_true(s >= 0 && c >= 0);
  assert_int_equal(qt_connect(&w, c, s, &cli_cb, NULL, &conn), 0);
  assert_true(qt_run(&w, all_done, NULL, 60 * UVQ_SECONDS));
  assert_int_equal(g.done, requests);
  print_message("# %d held, %d requests: %d MAX_STREAMS sent, %d opens "
                "refused for want of credit\n",
                held, requests, max_streams_sent(), g.failed_open);
  qt_world_free(&w);
}

/* 100 requests one after another in a window of 20: credit goes back ten
 * streams at a time (half the window), so about 100 / 10 MAX_STREAMS,
 * not 100; and the client never waits for credit. */
static void test_stream_credit_batched(void **state) {
  (void)state;
  run(0, 100);
  assert_true(max_streams_sent() >= 8);
  assert_true(max_streams_sent() <= 12);
  assert_int_equal(g.failed_open, 0);
  free(g.log);
}

/* 15 of the 20 streams stay open the whole time and the client cycles 60
 * requests through the other five: once fewer than half the window is
 * left, every close gives its credit back at once, so nothing stalls. */
static void test_stream_credit_held_streams_never_starve(void **state) {
  (void)state;
  run(15, 60);
  assert_int_equal(g.done, 60);
  free(g.log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stream_credit_batched),
      cmocka_unit_test(test_stream_credit_held_streams_never_starve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
