/*
 * The hq-interop server (src/app/hq.c) over the in-process wire (fake
 * clock, real GnuTLS): it reads a file 64 KiB at a time into buffers of the
 * endpoint's pool and hands them to the stream by reference, keeping a
 * read the full stream refused until there is room. The downloads check
 * the bytes, that no read is made twice, that the server holds the stream
 * buffer and a chunk or two at most, and that every pool buffer and every
 * allocation comes back: after a whole transfer, STOP_SENDING, the
 * connection closed, the file shrinking, and the endpoint deleted with
 * data in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/hq.h"
#include "core/pool.h"
#include "qtest.h"
#include "qtest_app.h"
#include "qtest_mem.h"

#define FILE_SEED 5
/* Not a multiple of 64 KiB, and over the 1 MiB stream buffer. */
#define FILE_SIZE (3u * 1024 * 1024 + 123)
#define CHUNK (64 * 1024)

/* ---- the served directory ---------------------------------------------- */

static char ROOT[64];
static char FILE_PATH[96];

static void write_file(uint64_t size) {
  FILE *f = fopen(FILE_PATH, "wb");
  uint8_t buf[8192];
  uint64_t off = 0;
  assert_non_null(f);
  while (off < size) {
    size_t n = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
    qt_pattern_fill(FILE_SEED, off, buf, n);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    off += n;
  }
  assert_int_equal(fclose(f), 0);
}

static int group_setup(void **state) {
  (void)state;
  strcpy(ROOT, "/tmp/uvq_test_hq.XXXXXX");
  if (mkdtemp(ROOT) == NULL) {
    return -1;
  }
  snprintf(FILE_PATH, sizeof(FILE_PATH), "%s/f.bin", ROOT);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  unlink(FILE_PATH);
  rmdir(ROOT);
  return 0;
}

/* ---- the server's access log ------------------------------------------- */

typedef struct log_seen {
  int starts, ends;
  int conn_null; /* ends reported with conn NULL */
  unsigned int status;
  int complete;
  uint64_t bytes;
} log_seen;

static log_seen LOG;

static void *log_start(uvq_conn *conn, int64_t sid, void *ud) {
  (void)conn;
  (void)sid;
  (void)ud;
  LOG.starts++;
  return &LOG;
}

static void log_end(const uvq_hq_log_entry *e, void *log, void *ud) {
  (void)ud;
  assert_ptr_equal(log, &LOG);
  LOG.ends++;
  LOG.conn_null += e->conn == NULL;
  LOG.status = e->status;
  LOG.complete = e->complete;
  LOG.bytes = e->bytes;
}

/* ---- a world: the hq server and a client that asks for /f.bin ---------- */

static uvq_hq_server *HQ;

static int hq_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  return uvq_hq_server_accept(HQ, conn, pcb, pud);
}

/* The client: a qt_app (it counts and hashes the response) that sends the
 * request once established and, past |stop_at| bytes, sends STOP_SENDING
 * or closes the connection. */
typedef enum stop_how { STOP_NONE = 0, STOP_SENDING, STOP_CLOSE } stop_how;

typedef struct client {
  qt_app a; /* first: the qt_app_* callbacks take the client as a qt_app */
  int64_t sid;
  uint64_t stop_at;
  stop_how how;
  int stopped;
  int reset;
  int stream_closed;
} client;

static client CLI;

static int cli_on_established(uvq_conn *conn, void *ud) {
  static const char req[] = "GET /f.bin\r\n";
  client *c = ud;
  c->a.established = 1;
  c->a.conn = conn;
  assert_int_equal(uvq_conn_open_stream(conn, 1, &c->sid, NULL), 0);
  assert_int_equal(
      uvq_stream_write(conn, c->sid, (const uint8_t *)req, sizeof(req) - 1, 1),
      (ssize_t)(sizeof(req) - 1));
  return 0;
}

static int cli_on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                              size_t len, int fin, void *ud, void *sud) {
  client *c = ud;
  int rv = qt_app_on_stream_data(conn, sid, data, len, fin, ud, sud);
  if (c->how != STOP_NONE && !c->stopped && c->a.received >= c->stop_at) {
    c->stopped = 1;
    if (c->how == STOP_SENDING) {
      assert_int_equal(uvq_stream_stop_sending(conn, sid, 0x77), 0);
    } else {
      assert_int_equal(uvq_conn_close(conn, 0, "enough"), 0);
    }
  }
  return rv;
}

static void cli_on_stream_reset(uvq_conn *conn, int64_t sid, uint64_t code,
                                void *ud, void *sud) {
  client *c = ud;
  (void)conn;
  (void)sid;
  (void)sud;
  c->reset = 1;
  assert_int_equal(code, 0x77);
}

static void cli_on_stream_closed(uvq_conn *conn, int64_t sid, uint64_t code,
                                 void *ud, void *sud) {
  client *c = ud;
  (void)conn;
  (void)sid;
  (void)code;
  (void)sud;
  c->stream_closed = 1;
}

static const uvq_app_callbacks cli_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cli_on_established,
    .on_stream_data = cli_on_stream_data,
    .on_stream_reset = cli_on_stream_reset,
    .on_stream_closed = cli_on_stream_closed,
    .on_closed = qt_app_on_closed,
};

typedef struct world {
  qt_world w;
  qt_mem m;
  int s, c;
  uint64_t peak_outstanding_bytes; /* the server pool's, as sampled */
} world;

static void setup(world *x, stop_how how, uint64_t stop_at) {
  static const char *const alpn[] = {UVQ_HQ_ALPN};
  memset(&CLI, 0, sizeof(CLI));
  memset(&LOG, 0, sizeof(LOG));
  CLI.how = how;
  CLI.stop_at = stop_at;
  qt_mem_init(&x->m);
  x->peak_outstanding_bytes = 0;
  assert_int_equal(uvq_hq_server_new(&HQ, ROOT, 0, &x->m.mem, NULL, 0), 0);
  uvq_hq_server_set_log(HQ, log_start, log_end, NULL);
  qt_world_init_alpn(&x->w, 21, alpn, 1);
  x->w.mem = &x->m.mem;
  x->s = qt_add_server(&x->w, NULL, hq_accept, NULL);
  x->c = qt_add_client(&x->w, NULL, NULL);
  assert_int_equal(qt_connect(&x->w, x->c, x->s, &cli_callbacks, &CLI, NULL),
                   0);
}

static void server_stats(world *x, uvq_endpoint_stats *st) {
  uvq_endpoint_get_stats(x->w.nodes[x->s].ep, st);
}

/* Samples the server's pool and stops once |done| holds. */
typedef struct until {
  world *x;
  int (*done)(void);
} until;

static int sample(void *ud) {
  until *u = ud;
  uvq_endpoint_stats st;
  server_stats(u->x, &st);
  if (st.pool_outstanding_bytes > u->x->peak_outstanding_bytes) {
    u->x->peak_outstanding_bytes = st.pool_outstanding_bytes;
  }
  return u->done();
}

static int got_fin(void) { return CLI.a.fin; }
static int stopped_and_closed(void) { return CLI.stream_closed; }
static int conn_closed(void) { return CLI.a.closed; }
static int some_received(void) { return CLI.a.received >= 400000; }

static void run(world *x, int (*done)(void)) {
  until u = {x, done};
  assert_true(qt_run(&x->w, sample, &u, 60 * UVQ_SECONDS));
}

/* Deletes the endpoints, then the hq server: nothing may be left. */
static void teardown(world *x) {
  qt_app_free(&CLI.a);
  qt_world_free(&x->w);
  uvq_hq_server_del(HQ);
  HQ = NULL;
  assert_int_equal(x->m.live, 0);
}

static uint64_t chunks_of(uint64_t size) { return (size + CHUNK - 1) / CHUNK; }

/* ---- tests ------------------------------------------------------------- */

static void test_hq_download(void **state) {
  world x;
  uvq_endpoint_stats st;
  (void)state;
  write_file(FILE_SIZE);
  setup(&x, STOP_NONE, 0);
  run(&x, got_fin);
  qt_app_assert_received(&CLI.a, FILE_SEED, FILE_SIZE);
  /* Let the last ACKs arrive. */
  qt_run(&x.w, NULL, NULL, 1 * UVQ_SECONDS);
  server_stats(&x, &st);
  /* One bulk buffer per 64 KiB read and one reference header per write:
   * no read was made twice, and nothing was copied into 16 KiB chunks. */
  assert_int_equal(st.pool_hits + st.pool_misses, 2 * chunks_of(FILE_SIZE));
  /* The connection is open and idle: it holds none. */
  assert_int_equal(st.pool_outstanding, 0);
  assert_int_equal(uvq_endpoint_conn_count(x.w.nodes[x.s].ep), 1);
  /* The stream buffer (1 MiB), the reference that overshoots it and the
   * read it refused, with their headers. */
  assert_true(x.peak_outstanding_bytes >
              uvq_endpoint_get_settings(x.w.nodes[x.s].ep)->stream_send_buffer);
  assert_true(x.peak_outstanding_bytes <=
              uvq_endpoint_get_settings(x.w.nodes[x.s].ep)->stream_send_buffer +
                  2 * UVQ_POOL_BULK + 32 * UVQ_POOL_SMALL);
  assert_int_equal(LOG.ends, 1);
  assert_int_equal(LOG.status, 200);
  assert_int_equal(LOG.complete, 1);
  assert_int_equal(LOG.bytes, FILE_SIZE);
  {
    uint64_t files, bytes;
    uvq_hq_server_get_counts(HQ, &files, &bytes);
    assert_int_equal(files, 1);
    assert_int_equal(bytes, FILE_SIZE);
  }
  assert_int_equal(uvq_conn_close(CLI.a.conn, 0, "done"), 0);
  run(&x, conn_closed);
  teardown(&x);
}

static void test_hq_empty_file(void **state) {
  world x;
  uvq_endpoint_stats st;
  (void)state;
  write_file(0);
  setup(&x, STOP_NONE, 0);
  run(&x, got_fin);
  assert_int_equal(CLI.a.received, 0);
  qt_run(&x.w, NULL, NULL, 1 * UVQ_SECONDS);
  server_stats(&x, &st);
  assert_int_equal(st.pool_outstanding, 0);
  assert_int_equal(LOG.complete, 1);
  teardown(&x);
}

/* The client stops the response while the server's stream is full (a read
 * waits for room): the reset gives back what the core held, the stream
 * what it read. */
static void test_hq_stop_sending(void **state) {
  world x;
  uvq_endpoint_stats st;
  (void)state;
  write_file(FILE_SIZE);
  setup(&x, STOP_SENDING, 300000);
  run(&x, stopped_and_closed);
  assert_true(CLI.reset);
  assert_true(CLI.a.received < FILE_SIZE);
  qt_run(&x.w, NULL, NULL, 1 * UVQ_SECONDS);
  server_stats(&x, &st);
  assert_int_equal(st.pool_outstanding, 0);
  assert_int_equal(LOG.ends, 1);
  assert_int_equal(LOG.status, 200);
  assert_int_equal(LOG.complete, 0);
  teardown(&x);
}

/* The client closes the connection in the middle of the response. */
static void test_hq_conn_close(void **state) {
  world x;
  uvq_endpoint_stats st;
  (void)state;
  write_file(FILE_SIZE);
  setup(&x, STOP_CLOSE, 300000);
  run(&x, conn_closed);
  /* The server's closing or draining period ends. */
  qt_run(&x.w, NULL, NULL, 10 * UVQ_SECONDS);
  assert_int_equal(uvq_endpoint_conn_count(x.w.nodes[x.s].ep), 0);
  server_stats(&x, &st);
  assert_int_equal(st.pool_outstanding, 0);
  assert_int_equal(LOG.ends, 1);
  assert_int_equal(LOG.complete, 0);
  teardown(&x);
}

/* The file shrinks while it is served: the response ends early with FIN,
 * after what was read before. */
static void test_hq_file_shrinks(void **state) {
  world x;
  uvq_endpoint_stats st;
  const uint64_t cut = 2u * 1024 * 1024;
  (void)state;
  write_file(FILE_SIZE);
  setup(&x, STOP_NONE, 0);
  run(&x, some_received);
  assert_int_equal(truncate(FILE_PATH, (off_t)cut), 0);
  run(&x, got_fin);
  qt_app_assert_received(&CLI.a, FILE_SEED, cut);
  qt_run(&x.w, NULL, NULL, 1 * UVQ_SECONDS);
  server_stats(&x, &st);
  assert_int_equal(st.pool_outstanding, 0);
  assert_int_equal(LOG.bytes, cut);
  teardown(&x);
}

/* The endpoints go with the response in flight and a read waiting for
 * room: the core gives back its references, uvq_hq_server_del the rest
 * (and logs the stream, without its connection). */
static void test_hq_endpoint_del_in_flight(void **state) {
  world x;
  uvq_endpoint_stats st;
  (void)state;
  write_file(FILE_SIZE);
  setup(&x, STOP_NONE, 0);
  run(&x, some_received);
  server_stats(&x, &st);
  assert_true(st.pool_outstanding > 0);
  assert_int_equal(LOG.ends, 0);
  qt_app_free(&CLI.a);
  qt_world_free(&x.w);
  /* No callback fired; the hq server still has the connection. */
  assert_int_equal(LOG.ends, 0);
  assert_true(x.m.live > 0);
  uvq_hq_server_del(HQ);
  HQ = NULL;
  assert_int_equal(LOG.ends, 1);
  assert_int_equal(LOG.conn_null, 1);
  assert_int_equal(LOG.complete, 0);
  assert_int_equal(x.m.live, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hq_download),
      cmocka_unit_test(test_hq_empty_file),
      cmocka_unit_test(test_hq_stop_sending),
      cmocka_unit_test(test_hq_conn_close),
      cmocka_unit_test(test_hq_file_shrinks),
      cmocka_unit_test(test_hq_endpoint_del_in_flight),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
