/*
 * Allocation failures: a uvq_mem that refuses the n-th allocation (every
 * malloc/calloc/realloc the endpoints and their ngtcp2 connections make
 * goes through it), walked for every n through endpoint creation, a
 * handshake, a 64 KiB transfer each way and the close. Each run must end
 * without a crash, without a leak (live allocations back to 0 once the
 * world is freed; LeakSanitizer watches the rest under ASan), without a
 * hang (bounded fake time, no connection left behind), and with a clean,
 * observable outcome: an API call returning UVQ_ERR_NOMEM, a connection
 * closed with an error, or the transfer completing because the failure
 * was recoverable.
 *
 * The whole walk (every n, six variants) takes about a second, under ASan
 * too, so it is never strided by default; UVQ_FAILMALLOC_STRIDE=k walks
 * every k-th n, UVQ_FAILMALLOC_N=n runs one n (debugging) and
 * UVQ_FAILMALLOC_TRACE=1 prints each run's outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cid_map.h"
#include "core/endpoint.h"
#include "qtest.h"
#include "qtest_mem.h"

#define XFER (64 * 1024)
#define MAX_SRV 4

typedef struct side {
  uvq_conn *conn;
  int established;
  int closed;
  int close_error;
  int64_t sid;
  uint32_t seed;
  uint64_t to_send, sent;
  uint64_t received;
  int fin;
  int corrupt;   /* a received byte differed from the generator's */
  int reply;     /* server: answer the stream with to_send bytes */
  int api_nomem; /* an API call returned UVQ_ERR_NOMEM */
} side;

typedef struct fm_run {
  qt_world w;
  qt_mem m;
  side cli;
  side srv[MAX_SRV];
  int nsrv;
  int s, c;
} fm_run;

static fm_run *g_run;

/* How a walk injects failures. */
typedef struct fm_variant {
  const char *name;
  int fail_after; /* refuse every allocation from n on (persistent OOM) */
  int who;        /* 0: both endpoints share the allocator; 1: server only;
                     2: client only (the other side uses libc) */
  int lossy;      /* 3% loss, 2% reordering, 1% duplication */
} fm_variant;

/* A failed API call is the application's to handle: it closes. */
static void app_nomem(uvq_conn *conn, side *a) {
  a->api_nomem = 1;
  /* No reason string: closing must not need memory of its own. */
  assert_int_equal(uvq_conn_close(conn, 1, NULL), 0);
}

static int pump(uvq_conn *conn, side *a) {
  uint8_t buf[8192];
  while (a->sent < a->to_send) {
    size_t n = a->to_send - a->sent < sizeof(buf)
                   ? (size_t)(a->to_send - a->sent)
                   : sizeof(buf);
    ssize_t w;
    for (size_t i = 0; i < n; i++) {
      buf[i] = qt_pattern_byte(a->seed, a->sent + i);
    }
    w = uvq_stream_write(conn, a->sid, buf, n, a->sent + n == a->to_send);
    if (w == UVQ_ERR_NOMEM) {
      app_nomem(conn, a);
      return 0;
    }
    assert_true(w >= 0);
    a->sent += (uint64_t)w;
    if ((size_t)w < n) {
      return 0; /* on_stream_writable comes back */
    }
  }
  return 0;
}

static int on_established(uvq_conn *conn, void *ud) {
  side *a = ud;
  int rv;
  a->established = 1;
  if (uvq_conn_is_server(conn)) {
    return 0;
  }
  rv = uvq_conn_open_stream(conn, 1, &a->sid, NULL);
  if (rv == UVQ_ERR_NOMEM) {
    app_nomem(conn, a);
    return 0;
  }
  assert_int_equal(rv, 0);
  return pump(conn, a);
}

static int on_stream_open(uvq_conn *conn, int64_t sid, void *ud) {
  side *a = ud;
  (void)conn;
  a->sid = sid;
  return 0;
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  side *a = ud;
  uint32_t peer_seed = uvq_conn_is_server(conn) ? 1 : 2;
  (void)sid;
  (void)sud;
  for (size_t i = 0; i < len; i++) {
    if (data[i] != qt_pattern_byte(peer_seed, a->received + i)) {
      a->corrupt = 1;
    }
  }
  a->received += len;
  if (fin) {
    a->fin = 1;
    if (a->reply) {
      return pump(conn, a);
    }
  }
  return 0;
}

static int on_stream_writable(uvq_conn *conn, int64_t sid, void *ud,
                              void *sud) {
  (void)sid;
  (void)sud;
  return pump(conn, ud);
}

static void on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  side *a = ud;
  (void)conn;
  assert_int_equal(a->closed, 0); /* exactly once */
  a->closed = 1;
  a->close_error = ci->error;
  a->conn = NULL;
}

static const uvq_app_callbacks app_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_open = on_stream_open,
    .on_stream_data = on_stream_data,
    .on_stream_writable = on_stream_writable,
    .on_closed = on_closed,
};

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  fm_run *r = g_run;
  side *a;
  (void)ep;
  (void)info;
  (void)ud;
  assert_true(r->nsrv < MAX_SRV);
  a = &r->srv[r->nsrv++];
  memset(a, 0, sizeof(*a));
  a->conn = conn;
  a->reply = 1;
  a->to_send = XFER;
  a->seed = 2;
  *pcb = &app_cb;
  *pud = a;
  return 0;
}

static int transfer_done(void *ud) {
  fm_run *r = ud;
  if (r->cli.closed) {
    return 1;
  }
  return r->cli.fin && r->cli.received == XFER && r->nsrv > 0 &&
         r->srv[r->nsrv - 1].received == XFER;
}

static int all_gone(void *ud) {
  fm_run *r = ud;
  return uvq_endpoint_conn_count(r->w.nodes[r->s].ep) == 0 &&
         uvq_endpoint_conn_count(r->w.nodes[r->c].ep) == 0;
}

/* ---- outcomes ---------------------------------------------------------- */

enum {
  OUT_ENDPOINT_NOMEM, /* uvq_endpoint_new returned UVQ_ERR_NOMEM */
  OUT_CONNECT_NOMEM,  /* uvq_endpoint_connect returned UVQ_ERR_NOMEM */
  OUT_API_NOMEM,      /* open_stream / stream_write returned NOMEM */
  OUT_CLOSED_ERROR,   /* the client's on_closed carried an error */
  OUT_COMPLETED,      /* recovered: the transfer completed */
  OUT_NO_FAILURE,     /* n beyond this run's allocations */
  OUT_COUNT
};

static const char *const out_names[OUT_COUNT] = {
    "endpoint_new -> NOMEM",
    "connect -> NOMEM",
    "stream API -> NOMEM, app closed",
    "client on_closed with an error",
    "failure absorbed, transfer completed",
    "no allocation refused"};

typedef struct fm_tally {
  uint64_t out[OUT_COUNT];
  /* Client close errors (negated UVQ_ERR_*), for the outcome report. */
  uint64_t cli_err[64];
  uint64_t srv_err[64];
  uint64_t max_count;
} fm_tally;

static void note_err(uint64_t *hist, int err) {
  int i = -err;
  if (i < 0 || i >= 64) {
    i = 63;
  }
  hist[i]++;
}

/* One world: a server and a client endpoint sharing the allocator that
 * refuses attempt |fail_at| (0: none). Returns the outcome. */
static int run_once(const fm_variant *v, uint64_t fail_at, fm_tally *t,
                    uint64_t *pcount) {
  fm_run *r = calloc(1, sizeof(*r));
  uvq_settings st;
  int rv, out;

  assert_non_null(r);
  g_run = r;
  qt_mem_init(&r->m);
  r->m.fail_at = fail_at;
  r->m.fail_after = v->fail_after;
  qt_world_init(&r->w, 77);
  r->w.delay = 5 * UVQ_MILLISECONDS;
  if (v->lossy) {
    r->w.drop_pct = 3;
    r->w.reorder_pct = 2;
    r->w.dup_pct = 1;
  }
  r->w.mem = v->who == 2 ? NULL : &r->m.mem;
  uvq_settings_default(&st);
  /* Short timers keep a failed run's fake time (and so its steps) small. */
  st.idle_timeout = 3 * UVQ_SECONDS;
  st.handshake_timeout = 3 * UVQ_SECONDS;

  r->s = qt_add_server(&r->w, &st, on_accept, NULL);
  if (r->s < 0) {
    assert_int_equal(r->w.last_add_error, UVQ_ERR_NOMEM);
    out = OUT_ENDPOINT_NOMEM;
    goto done;
  }
  r->w.mem = v->who == 1 ? NULL : &r->m.mem;
  r->c = qt_add_client(&r->w, &st, NULL);
  if (r->c < 0) {
    assert_int_equal(r->w.last_add_error, UVQ_ERR_NOMEM);
    out = OUT_ENDPOINT_NOMEM;
    goto done;
  }
  r->cli.to_send = XFER;
  r->cli.seed = 1;
  rv = qt_connect(&r->w, r->c, r->s, &app_cb, &r->cli, &r->cli.conn);
  if (rv != 0) {
    assert_int_equal(rv, UVQ_ERR_NOMEM);
    assert_int_equal(uvq_endpoint_conn_count(r->w.nodes[r->c].ep), 0);
    out = OUT_CONNECT_NOMEM;
    goto done;
  }

  qt_run(&r->w, transfer_done, r, 30 * UVQ_SECONDS);
  if (!r->cli.closed) {
    if (r->cli.conn) {
      assert_int_equal(uvq_conn_close(r->cli.conn, 0, NULL), 0);
    }
  }
  /* Never a hang: every connection ends within bounded fake time. */
  assert_true(qt_run(&r->w, all_gone, r, 60 * UVQ_SECONDS));
  assert_int_equal(r->cli.closed, 1);
  assert_int_equal(r->cli.corrupt, 0);
  for (int i = 0; i < r->nsrv; i++) {
    assert_int_equal(r->srv[i].closed, 1);
    assert_int_equal(r->srv[i].corrupt, 0);
    if (r->srv[i].close_error) {
      note_err(t->srv_err, r->srv[i].close_error);
    }
  }
  assert_int_equal(uvq_cid_map_size(&r->w.nodes[r->s].ep->cids), 0);

  if (r->cli.fin && r->cli.received == XFER && r->nsrv > 0 &&
      r->srv[r->nsrv - 1].received == XFER) {
    out = r->m.failed ? OUT_COMPLETED : OUT_NO_FAILURE;
  } else if (r->cli.api_nomem ||
             (r->nsrv > 0 && r->srv[r->nsrv - 1].api_nomem)) {
    out = OUT_API_NOMEM;
  } else {
    /* The transfer did not complete: the client must have been told. */
    assert_int_not_equal(r->cli.close_error, 0);
    out = OUT_CLOSED_ERROR;
  }
  if (r->cli.close_error) {
    note_err(t->cli_err, r->cli.close_error);
  }
  if (getenv("UVQ_FAILMALLOC_TRACE")) {
    fprintf(stderr, "n=%llu client %s server %s\n", (unsigned long long)fail_at,
            uvq_strerror(r->cli.close_error),
            r->nsrv ? uvq_strerror(r->srv[r->nsrv - 1].close_error) : "-");
  }

done:
  *pcount = r->m.count;
  qt_world_free(&r->w);
  /* No leak: every block the library took through the allocator is back. */
  if (r->m.live != 0) {
    fprintf(stderr, "failmalloc: n=%llu leaked %lld blocks\n",
            (unsigned long long)fail_at, (long long)r->m.live);
  }
  assert_int_equal(r->m.live, 0);
  assert_true(v->fail_after || r->m.failed <= 1);
  t->out[out]++;
  g_run = NULL;
  free(r);
  return out;
}

static void walk(const fm_variant *v) {
  fm_tally t;
  uint64_t total = 0, count = 0, walked = 0;
  uint64_t stride = 1;
  const char *env;

  memset(&t, 0, sizeof(t));
  /* A clean run: how many allocations a full run makes. */
  assert_int_equal(run_once(v, 0, &t, &total), OUT_NO_FAILURE);
  memset(&t, 0, sizeof(t));
  assert_true(total > 20);

  env = getenv("UVQ_FAILMALLOC_N"); /* debugging: one run */
  if (env && atoi(env) > 0) {
    print_message("# %s n=%d -> %s\n", v->name, atoi(env),
                  out_names[run_once(v, (uint64_t)atoi(env), &t, &count)]);
    return;
  }
  /* The full walk takes about a second even under ASan, so it is not
   * strided there; UVQ_FAILMALLOC_STRIDE can still thin it out. */
  env = getenv("UVQ_FAILMALLOC_STRIDE");
  if (env && atoi(env) > 0) {
    stride = (uint64_t)atoi(env);
  }
  /* Until a run refuses nothing: runs differ slightly (random CIDs, the
   * lossy wire). The stride ends on the last allocation too. */
  for (uint64_t n = 1;;
       n = n + stride > total && n < total ? total : n + stride) {
    int out = run_once(v, n, &t, &count);
    if (count > t.max_count) {
      t.max_count = count;
    }
    if (getenv("UVQ_FAILMALLOC_TRACE")) {
      fprintf(stderr, "%s n=%llu -> %s\n", v->name, (unsigned long long)n,
              out_names[out]);
    }
    walked++;
    if (out == OUT_NO_FAILURE) {
      break;
    }
    assert_true(n < 4 * total); /* the walk ends */
  }
  print_message("# failmalloc %s: %llu allocations in a clean run; walked "
                "%llu values of n (stride %llu)\n",
                v->name, (unsigned long long)total, (unsigned long long)walked,
                (unsigned long long)stride);
  for (int i = 0; i < OUT_COUNT; i++) {
    if (t.out[i]) {
      print_message("#   %-40s %llu\n", out_names[i],
                    (unsigned long long)t.out[i]);
    }
  }
  for (int i = 0; i < 64; i++) {
    if (t.cli_err[i]) {
      print_message("#     client closed: %-24s %llu\n", uvq_strerror(-i),
                    (unsigned long long)t.cli_err[i]);
    }
  }
  for (int i = 0; i < 64; i++) {
    if (t.srv_err[i]) {
      print_message("#     server closed: %-24s %llu\n", uvq_strerror(-i),
                    (unsigned long long)t.srv_err[i]);
    }
  }
  /* The walk reached the end of a run, and failures had effects. */
  assert_true(t.out[OUT_NO_FAILURE] > 0);
  assert_true(t.out[OUT_ENDPOINT_NOMEM] > 0);
  assert_true(t.out[OUT_COMPLETED] + t.out[OUT_CLOSED_ERROR] +
                  t.out[OUT_API_NOMEM] >
              0);
}

static const fm_variant v_once = {"one-shot, shared", 0, 0, 0};
static const fm_variant v_persist = {"persistent, shared", 1, 0, 0};
static const fm_variant v_server = {"one-shot, server only", 0, 1, 0};
static const fm_variant v_client = {"one-shot, client only", 0, 2, 0};
static const fm_variant v_lossy = {"one-shot, shared, lossy", 0, 0, 1};
static const fm_variant v_lossy_persist = {"persistent, server, lossy", 1, 1,
                                           1};

static void test_failmalloc_one_shot(void **state) {
  (void)state;
  walk(&v_once);
}

static void test_failmalloc_persistent(void **state) {
  (void)state;
  walk(&v_persist);
}

static void test_failmalloc_server_only(void **state) {
  (void)state;
  walk(&v_server);
}

static void test_failmalloc_client_only(void **state) {
  (void)state;
  walk(&v_client);
}

static void test_failmalloc_lossy(void **state) {
  (void)state;
  walk(&v_lossy);
}

static void test_failmalloc_lossy_persistent(void **state) {
  (void)state;
  walk(&v_lossy_persist);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failmalloc_one_shot),
      cmocka_unit_test(test_failmalloc_persistent),
      cmocka_unit_test(test_failmalloc_server_only),
      cmocka_unit_test(test_failmalloc_client_only),
      cmocka_unit_test(test_failmalloc_lossy),
      cmocka_unit_test(test_failmalloc_lossy_persistent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
