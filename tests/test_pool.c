/*
 * The endpoint's send-buffer pool (src/core/pool.c): its classes, cache cap,
 * reuse and allocation failures on its own; then over the in-process wire
 * (fake clock, real GnuTLS), that a connection holds no pool buffer once
 * everything it sent is acknowledged, and that the next transfer takes its
 * buffers from the cache — for raw streams and for HTTP/3 (provider chunks,
 * frames copied from nghttp3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "app/h3.h"
#include "core/pool.h"
#include "qtest.h"
#include "qtest_app.h"
#include "qtest_mem.h"
#include "uvquic/uvquic_h3.h"

/* ---- the pool alone ---------------------------------------------------- */

static void test_pool_classes(void **state) {
  (void)state;
  assert_int_equal(uvq_pool_class(0), 0);
  assert_int_equal(uvq_pool_class(UVQ_POOL_SMALL), 0);
  assert_int_equal(uvq_pool_class(UVQ_POOL_SMALL + 1), 1);
  assert_int_equal(uvq_pool_class(UVQ_POOL_MEDIUM), 1);
  assert_int_equal(uvq_pool_class(UVQ_POOL_MEDIUM + 1), 2);
  assert_int_equal(uvq_pool_class(UVQ_POOL_LARGE), 2);
  assert_int_equal(uvq_pool_class(UVQ_POOL_LARGE + 1), -1);
  for (int i = 0; i < UVQ_POOL_NCLASSES; i++) {
    assert_int_equal(uvq_pool_class(uvq_pool_class_size(i)), i);
  }
  /* The core's largest chunk is 16 KiB with its header... */
  assert_true(uvq_pool_class_size(UVQ_POOL_NCLASSES - 1) >= 16384 + 48);
  /* ... and no size picks the bulk class, taken only by name: a 64 KiB
   * provider chunk with its header. */
  assert_int_equal(UVQ_POOL_CLASS_BULK, UVQ_POOL_NALL - 1);
  assert_int_equal(uvq_pool_class_size(UVQ_POOL_CLASS_BULK), UVQ_POOL_BULK);
  assert_int_equal(uvq_pool_class(UVQ_POOL_BULK), -1);
  assert_true(uvq_pool_class_size(UVQ_POOL_CLASS_BULK) >=
              sizeof(h3_chunk) + UVQ_H3_PROVIDER_CHUNK);
  assert_int_equal(UVQ_H3_PROVIDER_CHUNK, 65536);
}

static void test_pool_reuse(void **state) {
  qt_mem m;
  uvq_pool *pool;
  uvq_pool_stats st;
  void *a, *b, *c;
  (void)state;
  qt_mem_init(&m);
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 1u << 20), 0);
  a = uvq_pool_get(pool, 1);
  b = uvq_pool_get(pool, 2);
  assert_non_null(a);
  assert_non_null(b);
  memset(a, 0xa5, uvq_pool_class_size(1));
  memset(b, 0x5a, uvq_pool_class_size(2));
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.misses, 2);
  assert_int_equal(st.hits, 0);
  assert_int_equal(st.outstanding, 2);
  assert_int_equal(st.outstanding_bytes,
                   uvq_pool_class_size(1) + uvq_pool_class_size(2));
  assert_int_equal(st.cached_bytes, 0);

  uvq_pool_put(pool, 1, a);
  uvq_pool_put(pool, 2, b);
  uvq_pool_put(pool, 0, NULL); /* no-op */
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.outstanding, 0);
  assert_int_equal(st.outstanding_bytes, 0);
  assert_int_equal(st.cached_bytes,
                   uvq_pool_class_size(1) + uvq_pool_class_size(2));

  /* The same buffers come back, from their own class, without allocating. */
  {
    uint64_t allocs = m.count;
    c = uvq_pool_get(pool, 2);
    assert_ptr_equal(c, b);
    c = uvq_pool_get(pool, 1);
    assert_ptr_equal(c, a);
    assert_int_equal(m.count, allocs);
  }
  /* Class 0 had nothing cached. */
  c = uvq_pool_get(pool, 0);
  assert_non_null(c);
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.hits, 2);
  assert_int_equal(st.misses, 3);
  assert_int_equal(st.cached_bytes, 0);
  uvq_pool_put(pool, 0, c);
  uvq_pool_put(pool, 1, a);
  uvq_pool_put(pool, 2, b);

  /* The bulk class keeps its own buffers. */
  c = uvq_pool_get(pool, UVQ_POOL_CLASS_BULK);
  assert_non_null(c);
  memset(c, 0x3c, UVQ_POOL_BULK);
  uvq_pool_put(pool, UVQ_POOL_CLASS_BULK, c);
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.misses, 4);
  assert_int_equal(st.cached_bytes, uvq_pool_class_size(0) +
                                        uvq_pool_class_size(1) +
                                        uvq_pool_class_size(2) + UVQ_POOL_BULK);
  assert_ptr_equal(uvq_pool_get(pool, UVQ_POOL_CLASS_BULK), c);
  assert_ptr_not_equal(uvq_pool_get(pool, 2), c);
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.hits, 4);
  assert_int_equal(st.outstanding_bytes,
                   UVQ_POOL_BULK + uvq_pool_class_size(2));
  uvq_pool_put(pool, UVQ_POOL_CLASS_BULK, c);
  uvq_pool_put(pool, 2, b);
  uvq_pool_del(pool);
  assert_int_equal(m.live, 0);
}

static void test_pool_cap(void **state) {
  qt_mem m;
  uvq_pool *pool;
  uvq_pool_stats st;
  void *b[3];
  (void)state;
  qt_mem_init(&m);
  /* Room for two medium buffers and a bit. */
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 2 * UVQ_POOL_MEDIUM + 100), 0);
  for (int i = 0; i < 3; i++) {
    b[i] = uvq_pool_get(pool, 1);
    assert_non_null(b[i]);
  }
  for (int i = 0; i < 3; i++) {
    uvq_pool_put(pool, 1, b[i]);
  }
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.cached_bytes, 2 * UVQ_POOL_MEDIUM);
  assert_int_equal(st.released, 1);
  assert_int_equal(m.live, 1 + 2); /* the pool and two cached buffers */
  /* A large buffer no longer fits: freed at once. */
  b[0] = uvq_pool_get(pool, 2);
  uvq_pool_put(pool, 2, b[0]);
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.released, 2);
  assert_int_equal(st.cached_bytes, 2 * UVQ_POOL_MEDIUM);
  /* Trimming empties the cache. */
  uvq_pool_trim(pool);
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.cached_bytes, 0);
  assert_int_equal(m.live, 1);
  uvq_pool_del(pool);
  assert_int_equal(m.live, 0);

  /* The default cap (1 MiB) holds 15 bulk buffers, not 16: a 64 KiB chunk
   * has its header. */
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 1u << 20), 0);
  {
    void *bulk[16];
    for (int i = 0; i < 16; i++) {
      bulk[i] = uvq_pool_get(pool, UVQ_POOL_CLASS_BULK);
      assert_non_null(bulk[i]);
    }
    for (int i = 0; i < 16; i++) {
      uvq_pool_put(pool, UVQ_POOL_CLASS_BULK, bulk[i]);
    }
  }
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.cached_bytes, 15 * UVQ_POOL_BULK);
  assert_int_equal(st.released, 1);
  uvq_pool_del(pool);
  assert_int_equal(m.live, 0);

  /* A cap of 0 caches nothing. */
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 0), 0);
  b[0] = uvq_pool_get(pool, 0);
  uvq_pool_put(pool, 0, b[0]);
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.cached_bytes, 0);
  assert_int_equal(st.released, 1);
  assert_int_equal(m.live, 1);
  uvq_pool_del(pool);
  assert_int_equal(m.live, 0);
}

static void test_pool_nomem(void **state) {
  qt_mem m;
  uvq_pool *pool;
  uvq_pool_stats st;
  void *a;
  (void)state;
  qt_mem_init(&m);
  m.fail_at = 1;
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 1u << 20), UVQ_ERR_NOMEM);
  assert_int_equal(m.live, 0);

  m.fail_at = 0;
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 1u << 20), 0);
  a = uvq_pool_get(pool, 2);
  assert_non_null(a);
  uvq_pool_put(pool, 2, a);
  /* From now on the allocator refuses everything. */
  m.fail_at = m.count + 1;
  m.fail_after = 1;
  assert_null(uvq_pool_get(pool, 1)); /* nothing cached in that class */
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.outstanding, 0);
  assert_int_equal(st.misses, 1);
  /* A cached buffer still comes without the allocator. */
  a = uvq_pool_get(pool, 2);
  assert_non_null(a);
  assert_null(uvq_pool_get(pool, 2));
  uvq_pool_get_stats(pool, &st);
  assert_int_equal(st.outstanding, 1);
  assert_int_equal(st.hits, 1);
  uvq_pool_put(pool, 2, a);
  uvq_pool_del(pool);
  assert_int_equal(m.live, 0);
}

static void test_pool_outlives_owner(void **state) {
  qt_mem m;
  uvq_pool *pool;
  void *a, *b;
  (void)state;
  qt_mem_init(&m);
  assert_int_equal(uvq_pool_new(&pool, &m.mem, 1u << 20), 0);
  a = uvq_pool_get(pool, 0);
  b = uvq_pool_get(pool, UVQ_POOL_CLASS_BULK);
  uvq_pool_put(pool, 1, uvq_pool_get(pool, 1));
  uvq_pool_put(pool, UVQ_POOL_CLASS_BULK,
               uvq_pool_get(pool, UVQ_POOL_CLASS_BULK));
  /* The owner goes first: the cache is freed now, the pool with the last
   * buffer. */
  uvq_pool_del(pool);
  assert_int_equal(m.live, 3);
  uvq_pool_put(pool, 0, a);
  assert_int_equal(m.live, 2);
  uvq_pool_put(pool, UVQ_POOL_CLASS_BULK, b);
  assert_int_equal(m.live, 0);
}

/* ---- raw streams over the wire ---------------------------------------- */

/* Both sides are qt_apps (qtest_app.h); the client writes by hand. */
static qt_app SRV_SIDE, CLI_SIDE;

static int both_established(void *ud) {
  (void)ud;
  return SRV_SIDE.established && CLI_SIDE.established;
}

static uint64_t g_want;

static int server_has_all(void *ud) {
  (void)ud;
  return SRV_SIDE.fin && SRV_SIDE.received == g_want;
}

static int both_closed(void *ud) {
  (void)ud;
  return SRV_SIDE.closed && CLI_SIDE.closed;
}

/* Writes |len| pattern bytes and FIN on a new stream; the server never
 * answers, so the stream stays open on our side: only acknowledgements can
 * give its buffers back. Returns the stream id. */
static int64_t send_stream(qt_world *w, size_t len, uint32_t seed) {
  uint8_t *buf = malloc(len);
  size_t off = 0;
  int64_t sid;
  assert_non_null(buf);
  qt_pattern_fill(seed, 0, buf, len);
  assert_int_equal(uvq_conn_open_stream(CLI_SIDE.conn, 1, &sid, NULL), 0);
  /* Uneven writes: small pieces (frame-header sized), then bulk. */
  while (off < len) {
    size_t n = off < 64 ? 7 : 50000;
    ssize_t k;
    if (n > len - off) {
      n = len - off;
    }
    k = uvq_stream_write(CLI_SIDE.conn, sid, buf + off, n, off + n == len);
    assert_int_equal(k, (ssize_t)n);
    off += n;
  }
  free(buf);
  g_want += len;
  assert_true(qt_run(w, server_has_all, NULL, 30 * UVQ_SECONDS));
  /* Let the last ACKs arrive (the delayed-ACK timer); far from any idle
   * timeout. */
  qt_run(w, NULL, NULL, 1 * UVQ_SECONDS);
  assert_int_equal(uvq_stream_get_buffered(CLI_SIDE.conn, sid), 0);
  return sid;
}

static void pool_stats(qt_world *w, int node, uvq_endpoint_stats *st) {
  uvq_endpoint_get_stats(w->nodes[node].ep, st);
}

/* uvq_buf_get / uvq_buf_put: the public face of the pool for application
 * layers. Sizes pick the class (and the counters show it), a buffer given
 * back is reused, out-of-range sizes are refused, and a buffer may be given
 * back after its endpoint is gone. */
static void test_pool_buf_public(void **state) {
  qt_world w;
  int c;
  uvq_endpoint_stats st;
  uint8_t *a, *b, *big;
  (void)state;
  qt_world_init(&w, 11);
  c = qt_add_client(&w, NULL, NULL);
  assert_null(uvq_buf_get(w.nodes[c].ep, 0));
  assert_null(uvq_buf_get(w.nodes[c].ep, UVQ_BUF_MAX + 1));

  a = uvq_buf_get(w.nodes[c].ep, 100);
  assert_non_null(a);
  memset(a, 0xaa, 100);
  pool_stats(&w, c, &st);
  assert_int_equal(st.pool_outstanding, 1);
  assert_int_equal(st.pool_outstanding_bytes, UVQ_POOL_SMALL);
  uvq_buf_put(a);
  b = uvq_buf_get(w.nodes[c].ep, 200);
  assert_ptr_equal(a, b); /* the cached buffer, same class */
  uvq_buf_put(b);
  uvq_buf_put(NULL);

  big = uvq_buf_get(w.nodes[c].ep, UVQ_BUF_MAX);
  assert_non_null(big);
  memset(big, 0x55, UVQ_BUF_MAX);
  pool_stats(&w, c, &st);
  assert_int_equal(st.pool_outstanding_bytes, UVQ_POOL_BULK);
  /* The endpoint goes first; the buffer still goes back (ASan checks). */
  qt_world_free(&w);
  uvq_buf_put(big);
}

static void test_pool_stream_idle_holds_none(void **state) {
  qt_world w;
  int s, c;
  uvq_endpoint_stats st, st2;
  uint64_t hits;
  const size_t len = 300 * 1000;
  (void)state;
  memset(&SRV_SIDE, 0, sizeof(SRV_SIDE));
  memset(&CLI_SIDE, 0, sizeof(CLI_SIDE));
  g_want = 0;
  qt_world_init(&w, 7);
  s = qt_add_server(&w, NULL, qt_app_accept, &SRV_SIDE);
  c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &CLI_SIDE, NULL), 0);
  assert_true(qt_run(&w, both_established, NULL, 10 * UVQ_SECONDS));

  send_stream(&w, len, 1);
  pool_stats(&w, c, &st);
  /* The data went through pool buffers... */
  assert_true(st.pool_misses > 0);
  /* ... and the open, idle connection holds none of them. */
  assert_int_equal(st.pool_outstanding, 0);
  assert_int_equal(st.pool_outstanding_bytes, 0);
  assert_true(st.pool_cached_bytes > 0);
  assert_true(st.pool_cached_bytes <= 1u << 20);
  assert_int_equal(uvq_conn_get_stage(CLI_SIDE.conn), UVQ_STAGE_RUNNING);
  pool_stats(&w, s, &st2);
  assert_int_equal(st2.pool_outstanding, 0);

  /* A second transfer is served from the cache. */
  hits = st.pool_hits;
  send_stream(&w, len, 2);
  pool_stats(&w, c, &st2);
  assert_true(st2.pool_hits > hits);
  assert_true(st2.pool_hits - hits >= st2.pool_misses - st.pool_misses);
  assert_int_equal(st2.pool_outstanding, 0);
  assert_int_equal(SRV_SIDE.received, 2 * len);

  uvq_conn_close(CLI_SIDE.conn, 0, "done");
  assert_true(qt_run(&w, both_closed, NULL, 10 * UVQ_SECONDS));
  qt_world_free(&w);
}

/* Every buffer comes from the endpoint's allocator and goes back to it,
 * whatever is in flight when the endpoint is deleted. */
static void test_pool_stream_endpoint_del_in_flight(void **state) {
  qt_world w;
  qt_mem m;
  int s, c;
  uvq_endpoint_stats st;
  static uint8_t buf[200000];
  int64_t sid;
  (void)state;
  memset(&SRV_SIDE, 0, sizeof(SRV_SIDE));
  memset(&CLI_SIDE, 0, sizeof(CLI_SIDE));
  qt_mem_init(&m);
  qt_world_init(&w, 8);
  w.mem = &m.mem;
  s = qt_add_server(&w, NULL, qt_app_accept, &SRV_SIDE);
  c = qt_add_client(&w, NULL, NULL);
  assert_int_equal(qt_connect(&w, c, s, &qt_app_callbacks, &CLI_SIDE, NULL), 0);
  assert_true(qt_run(&w, both_established, NULL, 10 * UVQ_SECONDS));
  assert_int_equal(uvq_conn_open_stream(CLI_SIDE.conn, 1, &sid, NULL), 0);
  assert_int_equal(uvq_stream_write(CLI_SIDE.conn, sid, buf, sizeof(buf), 0),
                   (ssize_t)sizeof(buf));
  pool_stats(&w, c, &st);
  assert_true(st.pool_outstanding > 0);
  /* Large writes are cut into large buffers: no allocation of the write's
   * size. */
  assert_true(st.pool_outstanding_bytes <
              sizeof(buf) + 2 * uvq_pool_class_size(UVQ_POOL_NCLASSES - 1));
  qt_world_free(&w); /* deletes the endpoints with the data unsent */
  assert_int_equal(m.live, 0);
  qt_app_free(&SRV_SIDE);
}

/* ---- HTTP/3 over the wire --------------------------------------------- */

static uvq_h3_server *H3SRV;
static uvq_h3_conn *H3CLI;
static int H3_CLOSED;
static qt_world *H3W;

typedef struct body {
  uint64_t off, size;
} body;

/* Provider calls over all responses, and the smallest room offered. */
static uint64_t PROVIDER_READS;
static size_t PROVIDER_MIN_LEN;

static ssize_t provider(uvq_h3_stream *st, uint8_t *buf, size_t len, int *peof,
                        void *ud) {
  body *b = ud;
  uint64_t left = b->size - b->off;
  size_t n = left < len ? (size_t)left : len;
  (void)st;
  PROVIDER_READS++;
  if (PROVIDER_MIN_LEN == 0 || len < PROVIDER_MIN_LEN) {
    PROVIDER_MIN_LEN = len;
  }
  qt_pattern_fill(3, b->off, buf, n);
  b->off += n;
  *peof = b->off == b->size;
  return (ssize_t)n;
}

static int h3_on_request(uvq_h3_stream *st, const uvq_h3_request_info *ri,
                         void *ud) {
  uvq_h3_response resp;
  body *b = calloc(1, sizeof(*b));
  (void)ud;
  assert_non_null(b);
  b->size = strtoull(ri->path + 1, NULL, 10);
  uvq_h3_stream_set_user_data(st, b);
  memset(&resp, 0, sizeof(resp));
  resp.status = 200;
  resp.body.type = UVQ_H3_BODY_PROVIDER;
  resp.body.read = provider;
  resp.body.read_user_data = b;
  assert_int_equal(uvq_h3_respond(st, &resp), 0);
  return 0;
}

static void h3_on_stream_close(uvq_h3_stream *st, int error, uint64_t code,
                               void *ud) {
  (void)error;
  (void)code;
  (void)ud;
  free(uvq_h3_stream_get_user_data(st));
}

static int h3_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  return uvq_h3_server_accept(H3SRV, conn, H3W->now, pcb, pud);
}

typedef struct creq {
  uint64_t bytes;
  int complete;
  int error;
} creq;

static void c_on_data(uvq_h3_stream *st, const uint8_t *d, size_t len,
                      void *ud) {
  creq *r = ud;
  (void)st;
  (void)d;
  r->bytes += len;
}

static void c_on_complete(uvq_h3_stream *st, int error, uint64_t app_error,
                          void *ud) {
  creq *r = ud;
  (void)st;
  (void)app_error;
  r->complete = 1;
  r->error = error;
}

static void c_on_closed(uvq_h3_conn *h3, const uvq_close_info *ci, void *ud) {
  (void)h3;
  (void)ci;
  (void)ud;
  H3_CLOSED = 1;
}

static int req_done(void *ud) { return ((creq *)ud)->complete; }

static int h3_closed(void *ud) {
  qt_world *w = ud;
  return H3_CLOSED && uvq_endpoint_conn_count(w->nodes[0].ep) == 0;
}

static void h3_get(qt_world *w, const char *path, uint64_t want) {
  uvq_h3_request req;
  creq r = {0};
  uvq_h3_request_init(&req);
  req.method = "GET";
  req.scheme = "https";
  req.authority = "localhost";
  req.path = path;
  req.cb.on_data = c_on_data;
  req.cb.on_complete = c_on_complete;
  req.user_data = &r;
  assert_int_equal(uvq_h3_submit(H3CLI, &req, NULL), 0);
  assert_true(qt_run(w, req_done, &r, 60 * UVQ_SECONDS));
  assert_int_equal(r.error, 0);
  assert_int_equal(r.bytes, want);
  qt_run(w, NULL, NULL, 1 * UVQ_SECONDS);
}

static void test_pool_h3_idle_holds_none(void **state) {
  static const char *const alpn[] = {"h3"};
  qt_world w;
  int s, c;
  uvq_h3_server_config scfg;
  uvq_h3_client_config ccfg;
  uvq_endpoint_stats ss, ss2, cs;
  uint64_t reads;
  (void)state;
  H3_CLOSED = 0;
  H3W = &w;
  PROVIDER_READS = 0;
  PROVIDER_MIN_LEN = 0;
  qt_world_init_alpn(&w, 9, alpn, 1);
  uvq_h3_server_config_default(&scfg);
  scfg.on_request = h3_on_request;
  scfg.on_stream_close = h3_on_stream_close;
  assert_int_equal(uvq_h3_server_new(&H3SRV, &scfg), 0);
  s = qt_add_server(&w, NULL, h3_accept, NULL);
  assert_int_equal(s, 0);
  c = qt_add_client(&w, NULL, NULL);
  uvq_h3_client_config_default(&ccfg);
  ccfg.on_closed = c_on_closed;
  assert_int_equal(uvq_h3_conn_client_new(&H3CLI, &ccfg), 0);
  assert_int_equal(qt_connect(&w, c, s, uvq_h3_callbacks(), H3CLI, NULL), 0);

  h3_get(&w, "/500000", 500000);
  pool_stats(&w, s, &ss);
  pool_stats(&w, c, &cs);
  reads = PROVIDER_READS;
  /* The provider filled 64 KiB chunks: one call per chunk. */
  assert_int_equal(PROVIDER_MIN_LEN, UVQ_H3_PROVIDER_CHUNK);
  assert_int_equal(PROVIDER_READS, (500000 + UVQ_H3_PROVIDER_CHUNK - 1) /
                                       UVQ_H3_PROVIDER_CHUNK);
  /* Provider chunks and the frames copied from nghttp3 came from the
   * pool... */
  assert_true(ss.pool_misses >= 500000 / UVQ_H3_PROVIDER_CHUNK);
  assert_true(cs.pool_misses > 0);
  /* ... and an idle HTTP/3 connection holds none, on either side. */
  assert_int_equal(ss.pool_outstanding, 0);
  assert_int_equal(ss.pool_outstanding_bytes, 0);
  assert_int_equal(cs.pool_outstanding, 0);
  assert_true(ss.pool_cached_bytes > 0);
  assert_int_equal(uvq_endpoint_conn_count(w.nodes[s].ep), 1);

  /* The second response reuses the cached buffers. */
  h3_get(&w, "/500000", 500000);
  pool_stats(&w, s, &ss2);
  assert_true(ss2.pool_hits > ss.pool_hits);
  /* ... every one of them: its provider chunks and the rest. */
  assert_int_equal(PROVIDER_READS, 2 * reads);
  assert_true(ss2.pool_hits - ss.pool_hits >= reads);
  assert_int_equal(ss2.pool_misses, ss.pool_misses);
  assert_int_equal(ss2.pool_outstanding, 0);

  /* The Prometheus text carries the counters. */
  {
    static char text[16384];
    ssize_t n =
        uvq_endpoint_write_prometheus(w.nodes[s].ep, text, sizeof(text), NULL);
    assert_true(n > 0 && (size_t)n < sizeof(text));
    assert_non_null(strstr(text, "\nuvquic_send_buffer_pool_outstanding 0\n"));
    assert_non_null(strstr(text, "uvquic_send_buffer_pool_hits_total "));
    assert_non_null(strstr(text, "# TYPE uvquic_send_buffer_pool_cached_bytes "
                                 "gauge\n"));
  }

  uvq_h3_shutdown(H3CLI);
  assert_true(qt_run(&w, h3_closed, &w, 30 * UVQ_SECONDS));
  uvq_h3_conn_del(H3CLI);
  qt_world_free(&w);
  uvq_h3_server_del(H3SRV);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_classes),
      cmocka_unit_test(test_pool_reuse),
      cmocka_unit_test(test_pool_cap),
      cmocka_unit_test(test_pool_nomem),
      cmocka_unit_test(test_pool_outlives_owner),
      cmocka_unit_test(test_pool_buf_public),
      cmocka_unit_test(test_pool_stream_idle_holds_none),
      cmocka_unit_test(test_pool_stream_endpoint_del_in_flight),
      cmocka_unit_test(test_pool_h3_idle_holds_none),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
