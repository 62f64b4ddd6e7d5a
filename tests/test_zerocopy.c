/*
 * Zero-copy stream writes (uvq_stream_write_ref), in one process: real
 * GnuTLS, a fake clock and the in-memory wire (tests/support/qtest.c).
 * Every reference is one generated piece of the stream; its free_cb must
 * fire exactly once — after the ACK in a clean transfer, at the stream's
 * close after a reset, at the connection's end with data in flight — and
 * poisons the piece, so a byte sent from released memory breaks the hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qtest.h"
#include "qtest_app.h"
#include "uvquic/uvquic.h"

#define MAX_PIECES 4096

/* ---- pieces: referenced memory and its free_cb ------------------------- */

typedef struct piece {
  uint8_t *data;
  size_t len;
  int freed; /* free_cb calls: must end at exactly 1 */
} piece;

static piece g_pieces[MAX_PIECES];
static size_t g_npieces; /* handed to the core */
static size_t g_nfrees;  /* free_cb calls in all */
static int g_bad_free;   /* free_cb with a wrong pointer, or twice */

static void piece_free_cb(void *ptr, void *ud) {
  piece *p = &g_pieces[(uintptr_t)ud];
  if (ptr != p->data || p->freed) {
    g_bad_free++;
  }
  p->freed++;
  g_nfrees++;
  memset(p->data, 0xdd, p->len); /* poison: a later send would show */
  free(p->data);
  p->data = NULL;
}

static void pieces_reset(void) {
  memset(g_pieces, 0, sizeof(g_pieces));
  g_npieces = 0;
  g_nfrees = 0;
  g_bad_free = 0;
}

static void assert_all_freed_once(void) {
  assert_int_equal(g_bad_free, 0);
  assert_int_equal(g_nfrees, g_npieces);
  for (size_t i = 0; i < g_npieces; i++) {
    assert_int_equal(g_pieces[i].freed, 1);
  }
}

/* ---- the test application ---------------------------------------------- */

/* The server is a plain qt_app (qtest_app.h); the client writes its stream
 * with write_ref only: |to_send| bytes in |piece_len| pieces. */
typedef struct zc_client {
  qt_app app;   /* first: the qt_app callbacks get a zc_client as a qt_app */
  int writable; /* on_stream_writable calls */
  int uni;
  size_t piece_len;
  int pump_off; /* the test writes by hand */
} zc_client;

/* Hands the next piece to the core; returns what uvq_stream_write_ref
 * returned (the piece is kept only if it was taken). */
static ssize_t write_piece(uvq_conn *conn, zc_client *a, size_t len, int fin) {
  size_t i = g_npieces;
  ssize_t w;
  assert_true(i < MAX_PIECES);
  g_pieces[i].data = malloc(len);
  assert_non_null(g_pieces[i].data);
  g_pieces[i].len = len;
  qt_pattern_fill(a->app.seed, a->app.sent, g_pieces[i].data, len);
  w = uvq_stream_write_ref(conn, a->app.sid, g_pieces[i].data, len, fin,
                           piece_free_cb, (void *)(uintptr_t)i);
  if (w > 0) {
    assert_int_equal((size_t)w, len); /* all or nothing */
    g_npieces++;
    a->app.sent += len;
  } else {
    free(g_pieces[i].data);
    memset(&g_pieces[i], 0, sizeof(g_pieces[i]));
  }
  return w;
}

static int pump(uvq_conn *conn, zc_client *a) {
  if (a->pump_off) {
    return 0;
  }
  while (a->app.sent < a->app.to_send) {
    uint64_t left = a->app.to_send - a->app.sent;
    size_t n = left < a->piece_len ? (size_t)left : a->piece_len;
    ssize_t w = write_piece(conn, a, n, a->app.sent + n == a->app.to_send);
    assert_true(w >= 0);
    if (w == 0) {
      return 0; /* wait for on_stream_writable */
    }
  }
  return 0;
}

static int on_established(uvq_conn *conn, void *ud) {
  zc_client *a = ud;
  a->app.established = 1;
  if (a->app.send_on_established) {
    assert_int_equal(uvq_conn_open_stream(conn, !a->uni, &a->app.sid, NULL), 0);
    return pump(conn, a);
  }
  return 0;
}

static int on_stream_writable(uvq_conn *conn, int64_t sid, void *ud,
                              void *sud) {
  zc_client *a = ud;
  (void)sid;
  (void)sud;
  a->writable++;
  return pump(conn, a);
}

static const uvq_app_callbacks client_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_data = qt_app_on_stream_data,
    .on_stream_writable = on_stream_writable,
    .on_closed = qt_app_on_closed,
};

static int all_freed(void *ud) {
  (void)ud;
  return g_nfrees == g_npieces;
}

/* A world with one server (answered by |srv|) and one client. */
static void world_setup(qt_world *w, uint64_t seed, qt_app *srv,
                        const uvq_settings *cset, int *pc, int *ps) {
  pieces_reset();
  qt_world_init(w, seed);
  *ps = qt_add_server(w, NULL, qt_app_accept, srv);
  *pc = qt_add_client(w, cset, NULL);
  assert_true(*ps >= 0 && *pc >= 0);
}

/* ---- tests ------------------------------------------------------------- */

/* Clean transfer: every reference is released by its ACK, while the
 * connection is still open, and the stream then holds nothing. */
static void test_zerocopy_freed_after_ack(void **state) {
  qt_world w;
  zc_client cli = {0};
  qt_app srv = {0};
  int c, s;
  (void)state;

  world_setup(&w, 31, &srv, NULL, &c, &s);
  cli.app.send_on_established = 1;
  cli.app.to_send = 1u << 20;
  cli.piece_len = 16384;
  cli.app.seed = 5;
  assert_int_equal(qt_connect(&w, c, s, &client_cb, &cli, &cli.app.conn), 0);
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 60 * UVQ_SECONDS));
  qt_app_assert_received(&srv, 5, 1u << 20);
  assert_true(qt_run(&w, all_freed, NULL, 5 * UVQ_SECONDS));
  assert_int_equal(g_npieces, 64);
  assert_all_freed_once();
  assert_int_equal(cli.app.closed, 0); /* released by ACKs, not by a close */
  assert_int_equal(uvq_stream_get_buffered(cli.app.conn, cli.app.sid), 0);

  assert_int_equal(uvq_conn_close(cli.app.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.app.closed, 1);
  assert_all_freed_once(); /* nothing released twice at the close */
  qt_world_free(&w);
}

/* All or nothing, against settings.stream_send_buffer: a reference larger
 * than the whole buffer is taken while there is room; the next is refused
 * (0, nothing kept, free_cb never called) until ACKs open room and
 * on_stream_writable fires. Bad arguments are refused likewise. */
static void test_zerocopy_all_or_nothing(void **state) {
  qt_world w;
  zc_client cli = {0};
  qt_app srv = {0};
  qt_app *pair[2] = {&cli.app, &srv};
  uvq_settings cs;
  int c, s;
  uint8_t byte = 1;
  (void)state;

  uvq_settings_default(&cs);
  cs.stream_send_buffer = 64 * 1024;
  world_setup(&w, 32, &srv, &cs, &c, &s);
  cli.app.seed = 6;
  cli.pump_off = 1;
  assert_int_equal(qt_connect(&w, c, s, &client_cb, &cli, &cli.app.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_open_stream(cli.app.conn, 1, &cli.app.sid, NULL),
                   0);

  assert_int_equal(write_piece(cli.app.conn, &cli, 100 * 1024, 0), 100 * 1024);
  assert_int_equal(uvq_stream_get_buffered(cli.app.conn, cli.app.sid),
                   100 * 1024);
  assert_int_equal(write_piece(cli.app.conn, &cli, 4096, 0), 0);
  assert_int_equal(g_npieces, 1);
  /* Copying writes see the same full buffer. */
  assert_int_equal(uvq_stream_write(cli.app.conn, cli.app.sid, &byte, 1, 0), 0);
  assert_int_equal(
      uvq_stream_write_ref(cli.app.conn, cli.app.sid, &byte, 1, 0, NULL, NULL),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_stream_write_ref(cli.app.conn, cli.app.sid, NULL, 1, 0,
                                        piece_free_cb, NULL),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      uvq_stream_write_ref(cli.app.conn, 999, &byte, 1, 0, piece_free_cb, NULL),
      UVQ_ERR_STREAM_NOT_FOUND);

  assert_true(qt_run(&w, all_freed, NULL, 5 * UVQ_SECONDS));
  assert_true(cli.writable >= 1);
  /* Room again: the rest goes by reference, FIN on the last piece. */
  assert_int_equal(write_piece(cli.app.conn, &cli, 4096, 1), 4096);
  assert_int_equal(write_piece(cli.app.conn, &cli, 1, 0), UVQ_ERR_STREAM_SHUT);
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 5 * UVQ_SECONDS));
  qt_app_assert_received(&srv, 6, 100 * 1024 + 4096);
  assert_true(qt_run(&w, all_freed, NULL, 5 * UVQ_SECONDS));
  assert_all_freed_once();

  assert_int_equal(uvq_conn_close(cli.app.conn, 0, NULL), 0);
  /* Closed: refused, and the caller keeps its memory. */
  assert_int_equal(write_piece(cli.app.conn, &cli, 1, 0), UVQ_ERR_CLOSED);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_all_freed_once();
  qt_world_free(&w);
}

/* Reset with references unacknowledged (some in flight, some unsent): they
 * are released once, when the reset stream closes — not before, while
 * ngtcp2 may still point at them — and the connection lives on. */
static void test_zerocopy_freed_at_reset(void **state) {
  qt_world w;
  zc_client cli = {0};
  qt_app srv = {0};
  qt_app *pair[2] = {&cli.app, &srv};
  int c, s;
  (void)state;

  world_setup(&w, 33, &srv, NULL, &c, &s);
  cli.app.seed = 7;
  cli.uni = 1;
  cli.pump_off = 1;
  assert_int_equal(qt_connect(&w, c, s, &client_cb, &cli, &cli.app.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  qt_run(&w, NULL, NULL, 100 * UVQ_MILLISECONDS); /* handshake confirmed */
  assert_int_equal(uvq_conn_open_stream(cli.app.conn, 0, &cli.app.sid, NULL),
                   0);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(write_piece(cli.app.conn, &cli, 32768, 0), 32768);
  }
  /* Everything sent is lost for a while: the data is in flight. */
  w.drop_pct = 100;
  qt_run(&w, NULL, NULL, 2 * UVQ_MILLISECONDS);
  assert_int_equal(g_nfrees, 0);
  assert_int_equal(uvq_stream_reset(cli.app.conn, cli.app.sid, 0x55), 0);
  assert_int_equal(g_nfrees, 0); /* ngtcp2 may still reference them */
  w.drop_pct = 0;
  assert_true(qt_run(&w, all_freed, NULL, 10 * UVQ_SECONDS));
  assert_all_freed_once();
  assert_int_equal(cli.app.closed, 0);
  assert_int_equal(uvq_conn_get_stage(cli.app.conn), UVQ_STAGE_RUNNING);

  assert_int_equal(uvq_conn_close(cli.app.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(cli.app.closed, 1);
  assert_all_freed_once();
  qt_app_free(&srv);
  qt_world_free(&w);
}

/* The connection closes with references in flight (never acknowledged):
 * each is released once, when the connection is freed. A second world
 * frees the endpoint outright with references held. */
static void test_zerocopy_freed_at_close(void **state) {
  qt_world w;
  zc_client cli = {0};
  qt_app srv = {0};
  qt_app *pair[2] = {&cli.app, &srv};
  int c, s;
  (void)state;

  world_setup(&w, 34, &srv, NULL, &c, &s);
  cli.app.seed = 8;
  cli.pump_off = 1;
  assert_int_equal(qt_connect(&w, c, s, &client_cb, &cli, &cli.app.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_open_stream(cli.app.conn, 1, &cli.app.sid, NULL),
                   0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(write_piece(cli.app.conn, &cli, 65536, 0), 65536);
  }
  w.drop_pct = 100;
  qt_run(&w, NULL, NULL, 2 * UVQ_MILLISECONDS);
  assert_int_equal(g_nfrees, 0);
  assert_int_equal(uvq_conn_close(cli.app.conn, 0x1, "bye"), 0);
  qt_run(&w, NULL, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(cli.app.closed, 1);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[c].ep), 0);
  assert_all_freed_once();
  qt_app_free(&srv);
  qt_world_free(&w);

  /* Freed with the endpoint, the connection still running. */
  memset(&cli, 0, sizeof(cli));
  memset(&srv, 0, sizeof(srv));
  world_setup(&w, 35, &srv, NULL, &c, &s);
  cli.app.seed = 9;
  cli.pump_off = 1;
  assert_int_equal(qt_connect(&w, c, s, &client_cb, &cli, &cli.app.conn), 0);
  assert_true(qt_run(&w, qt_app_both_established, pair, 5 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_open_stream(cli.app.conn, 1, &cli.app.sid, NULL),
                   0);
  assert_int_equal(write_piece(cli.app.conn, &cli, 65536, 0), 65536);
  assert_int_equal(write_piece(cli.app.conn, &cli, 65536, 0), 65536);
  w.drop_pct = 100;
  qt_run(&w, NULL, NULL, 2 * UVQ_MILLISECONDS);
  assert_int_equal(g_nfrees, 0);
  qt_world_free(&w);
  assert_all_freed_once();
  qt_app_free(&srv);
}

/* 10 MiB under loss, reordering and duplication, written only with
 * write_ref: byte-identical at the server, every reference released once,
 * by ACKs, before the connection closes. */
static void test_zerocopy_10mib_lossy(void **state) {
  qt_world w;
  zc_client cli = {0};
  qt_app srv = {0};
  int c, s;
  (void)state;

  world_setup(&w, 36, &srv, NULL, &c, &s);
  w.drop_pct = 5;
  w.reorder_pct = 3;
  w.dup_pct = 2;
  w.delay = 5 * UVQ_MILLISECONDS;
  cli.app.send_on_established = 1;
  cli.app.to_send = 10u << 20;
  cli.piece_len = 65536 - 17; /* pieces straddle packets unevenly */
  cli.app.seed = 10;
  assert_int_equal(qt_connect(&w, c, s, &client_cb, &cli, &cli.app.conn), 0);
  assert_true(qt_run(&w, qt_app_got_fin, &srv, 600 * UVQ_SECONDS));
  assert_true(w.dropped > 0);
  qt_app_assert_received(&srv, 10, 10u << 20);
  assert_true(qt_run(&w, all_freed, NULL, 30 * UVQ_SECONDS));
  assert_all_freed_once();
  assert_int_equal(cli.app.closed, 0);
  assert_int_equal(uvq_conn_close(cli.app.conn, 0, NULL), 0);
  qt_run(&w, NULL, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(cli.app.closed, 1);
  assert_all_freed_once();
  qt_world_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zerocopy_freed_after_ack),
      cmocka_unit_test(test_zerocopy_all_or_nothing),
      cmocka_unit_test(test_zerocopy_freed_at_reset),
      cmocka_unit_test(test_zerocopy_freed_at_close),
      cmocka_unit_test(test_zerocopy_10mib_lossy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
