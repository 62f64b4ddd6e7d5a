/* libuv adapter tests: real sockets on 127.0.0.1 / ::1, port 0. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

static const char *const echo_alpn[] = {"uvq-echo"};

/* Everything one test run observes. */
typedef struct fixture {
  uv_loop_t loop;
  uvq_tls_ctx *stls, *ctls;
  uvq_listener *listener;
  uvq_uv_endpoint *client;
  uv_timer_t later;
  /* Runs after the loop's I/O phase in the iteration of later_cb. */
  uv_check_t after_later;
  uint64_t sent_before_later;
  int sent_in_same_iteration;
  uv_timer_t watchdog;
  int accepted;
  int established;
  int server_closed;
  int client_closed;
  int client_close_error;
  int listener_close_cb;
  int client_close_cb;
  int hung;
  /* Bytes the server echoed; bytes the client got back on each stream. */
  size_t server_bytes;
  char echo[2][64];
  size_t echolen[2];
  int fin[2];
  int64_t sid[2];
  uvq_conn *cconn;
} fixture;

/* ---- server: echo every byte of every bidi stream, FIN with FIN ---- */

static int srv_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                    int fin, void *ud, void *sud) {
  fixture *f = ud;
  ssize_t w;

  (void)sud;
  f->server_bytes += len;
  w = uvq_stream_write(conn, id, data, len, fin);
  assert_int_equal(w, (ssize_t)len);
  return 0;
}

static void srv_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  fixture *f = ud;
  (void)conn;
  (void)ci;
  f->server_closed++;
}

static const uvq_app_callbacks srv_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = srv_data,
    .on_closed = srv_closed,
};

static int on_accept(uvq_listener *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks,
                     void **pconn_user_data, void *user_data) {
  fixture *f = user_data;

  (void)l;
  (void)conn;
  assert_int_equal(info->alpnlen, strlen(echo_alpn[0]));
  assert_memory_equal(info->alpn, echo_alpn[0], info->alpnlen);
  f->accepted++;
  *pcallbacks = &srv_cbs;
  *pconn_user_data = f;
  return 0;
}

/* ---- client: one stream from on_established, one from a uv timer ---- */

static void open_and_send(fixture *f, uvq_conn *conn, int i, const char *msg) {
  assert_int_equal(
      uvq_conn_open_stream(conn, 1, &f->sid[i], (void *)(intptr_t)(i + 1)), 0);
  assert_int_equal(
      uvq_stream_write(conn, f->sid[i], (const uint8_t *)msg, strlen(msg), 1),
      (ssize_t)strlen(msg));
}

static uint64_t client_datagrams_sent(fixture *f) {
  uvq_endpoint_stats st;
  uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(f->client), &st);
  return st.datagrams_sent;
}

static void after_later_cb(uv_check_t *h) {
  fixture *f = h->data;
  /* The stream opened in later_cb left in the same loop iteration: the
   * adapter's prepare hook flushed it before the loop blocked, instead of
   * waiting for the next core timer or incoming packet. */
  f->sent_in_same_iteration = client_datagrams_sent(f) > f->sent_before_later;
  uv_check_stop(h);
}

static void later_cb(uv_timer_t *t) {
  fixture *f = t->data;
  /* Outside every library callback: the adapter must flush this on its
   * own. */
  f->sent_before_later = client_datagrams_sent(f);
  open_and_send(f, f->cconn, 1, "from a timer");
  uv_check_start(&f->after_later, after_later_cb);
}

static int cli_established(uvq_conn *conn, void *ud) {
  fixture *f = ud;

  f->established++;
  f->cconn = conn;
  open_and_send(f, conn, 0, "hello over QUIC");
  return 0;
}

static int cli_data(uvq_conn *conn, int64_t id, const uint8_t *data, size_t len,
                    int fin, void *ud, void *sud) {
  fixture *f = ud;
  int i = (int)(intptr_t)sud - 1;

  assert_true(i == 0 || i == 1);
  assert_true(id == f->sid[i]);
  assert_true(f->echolen[i] + len < sizeof(f->echo[i]));
  memcpy(f->echo[i] + f->echolen[i], data, len);
  f->echolen[i] += len;
  if (fin) {
    f->fin[i] = 1;
    if (i == 0) {
      /* The first echo is back. Once the connection's short timers (ACK
       * delay, pacing) are past, only its idle timer is armed: open the
       * second stream then, from a plain libuv timer, so nothing but the
       * adapter's prepare hook can send it in that loop iteration. */
      uv_timer_start(&f->later, later_cb, 20, 0);
    }
  }
  if (f->fin[0] && f->fin[1]) {
    assert_int_equal(uvq_conn_close(conn, 0, "bye"), 0);
  }
  return 0;
}

static void listener_closed(uvq_uv_endpoint *uep, void *ud) {
  fixture *f = ud;
  (void)uep;
  f->listener_close_cb++;
  if (f->client_close_cb) {
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_close((uv_handle_t *)&f->later, NULL);
    uv_close((uv_handle_t *)&f->after_later, NULL);
  }
}

static void client_closed_cb(uvq_uv_endpoint *uep, void *ud) {
  fixture *f = ud;
  (void)uep;
  f->client_close_cb++;
  if (f->listener_close_cb) {
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_close((uv_handle_t *)&f->later, NULL);
    uv_close((uv_handle_t *)&f->after_later, NULL);
  }
}

static void cli_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  fixture *f = ud;
  (void)conn;
  f->client_closed++;
  f->client_close_error = ci->error;
  if (ci->error != 0) {
    print_message("client connection closed: %s (origin %d, code 0x%llx, "
                  "alert %u, reason %.*s)\n",
                  uvq_strerror(ci->error), (int)ci->origin,
                  (unsigned long long)ci->code, ci->tls_alert,
                  (int)ci->reasonlen, (const char *)ci->reason);
    {
      uvq_endpoint_stats st;
      int r;
      uvq_endpoint_get_stats(uvq_uv_endpoint_get_endpoint(f->client), &st);
      for (r = 0; r < UVQ_DROP_REASON_COUNT; ++r) {
        if (st.dropped[r]) {
          print_message("  client dropped %s=%llu\n",
                        uvq_drop_reason_name((uvq_drop_reason)r),
                        (unsigned long long)st.dropped[r]);
        }
      }
      print_message("  client received %llu sent %llu\n",
                    (unsigned long long)st.datagrams_received,
                    (unsigned long long)st.datagrams_sent);
    }
  }
  /* From inside a library callback: the adapter defers the close. */
  uvq_uv_endpoint_close(f->client, client_closed_cb);
  uvq_listener_close(f->listener, listener_closed);
}

static const uvq_app_callbacks cli_cbs = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cli_established,
    .on_stream_data = cli_data,
    .on_closed = cli_closed,
};

static void watchdog_cb(uv_timer_t *t) {
  fixture *f = t->data;
  /* Only a hang guard: stop the loop so the asserts below report what is
   * missing instead of the test runner timing out. */
  f->hung = 1;
  uv_stop(&f->loop);
}

static void make_tls(fixture *f) {
  uvq_tls_config cfg;
  char err[256];

  uvq_tls_config_default(&cfg);
  cfg.alpn = echo_alpn;
  cfg.alpnlen = 1;
  assert_int_equal(uvq_tls_ctx_new(&f->stls, 1, &cfg, NULL, err, sizeof(err)),
                   0);
  cfg.insecure = 1;
  assert_int_equal(uvq_tls_ctx_new(&f->ctls, 0, &cfg, NULL, err, sizeof(err)),
                   0);
}

static void run_exchange(int family) {
  struct sockaddr_storage ss;
  fixture f;
  uvq_addr bound;

  memset(&f, 0, sizeof(f));
  memset(&ss, 0, sizeof(ss));
  if (family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_addr = in6addr_loopback;
  }
  assert_int_equal(uv_loop_init(&f.loop), 0);
  make_tls(&f);
  assert_int_equal(uvq_listen(&f.listener, &f.loop, (struct sockaddr *)&ss,
                              NULL, f.stls, on_accept, &f),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_local_addr(f.listener, &bound), 0);
  assert_int_equal(bound.ss.ss_family, family);
  assert_int_not_equal(family == AF_INET
                           ? ((struct sockaddr_in *)&bound.ss)->sin_port
                           : ((struct sockaddr_in6 *)&bound.ss)->sin6_port,
                       0);
  assert_ptr_equal(uvq_uv_endpoint_get_user_data(f.listener), &f);
  assert_non_null(uvq_uv_endpoint_get_endpoint(f.listener));

  assert_int_equal(
      uvq_uv_client_new(&f.client, &f.loop, family, NULL, NULL, f.ctls, &f), 0);
  assert_int_equal(uvq_connect(f.client, (struct sockaddr *)&bound.ss,
                               "localhost", &cli_cbs, &f, NULL),
                   0);

  uv_timer_init(&f.loop, &f.later);
  f.later.data = &f;
  uv_check_init(&f.loop, &f.after_later);
  f.after_later.data = &f;
  uv_timer_init(&f.loop, &f.watchdog);
  f.watchdog.data = &f;
  uv_timer_start(&f.watchdog, watchdog_cb, 60000, 0);

  uv_run(&f.loop, UV_RUN_DEFAULT);

  assert_false(f.hung);
  assert_int_equal(f.accepted, 1);
  assert_int_equal(f.established, 1);
  assert_int_equal(f.echolen[0], strlen("hello over QUIC"));
  assert_memory_equal(f.echo[0], "hello over QUIC", f.echolen[0]);
  assert_int_equal(f.echolen[1], strlen("from a timer"));
  assert_memory_equal(f.echo[1], "from a timer", f.echolen[1]);
  assert_int_equal(f.server_bytes, f.echolen[0] + f.echolen[1]);
  assert_true(f.sent_in_same_iteration);
  assert_int_equal(f.client_closed, 1);
  assert_int_equal(f.client_close_error, 0);
  assert_int_equal(f.server_closed, 1);
  assert_int_equal(f.listener_close_cb, 1);
  assert_int_equal(f.client_close_cb, 1);

  assert_int_equal(uv_loop_close(&f.loop), 0);
  uvq_tls_ctx_del(f.stls);
  uvq_tls_ctx_del(f.ctls);
}

static void test_uv_exchange_ipv4(void **state) {
  (void)state;
  run_exchange(AF_INET);
}

static void test_uv_exchange_ipv6(void **state) {
  (void)state;
  run_exchange(AF_INET6);
}

static void count_close(uvq_uv_endpoint *uep, void *ud) {
  (void)uep;
  ++*(int *)ud;
}

static int refuse_all(uvq_listener *l, uvq_conn *conn,
                      const uvq_accept_info *info,
                      const uvq_app_callbacks **pcallbacks,
                      void **pconn_user_data, void *user_data) {
  (void)l;
  (void)conn;
  (void)info;
  (void)pcallbacks;
  (void)pconn_user_data;
  (void)user_data;
  return UVQ_ERR_REFUSED;
}

static void test_uv_listen_addr_in_use(void **state) {
  struct sockaddr_in sin;
  uvq_listener *l1 = NULL, *l2 = NULL;
  uvq_addr bound;
  uv_loop_t loop;
  fixture f;
  int closed = 0;

  (void)state;
  memset(&f, 0, sizeof(f));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(uv_loop_init(&loop), 0);
  make_tls(&f);
  assert_int_equal(uvq_listen(&l1, &loop, (struct sockaddr *)&sin, NULL, f.stls,
                              refuse_all, &closed),
                   0);
  assert_int_equal(uvq_uv_endpoint_get_local_addr(l1, &bound), 0);
  errno = 0;
  assert_int_equal(uvq_listen(&l2, &loop, (struct sockaddr *)&bound.ss, NULL,
                              f.stls, refuse_all, NULL),
                   UVQ_ERR_IO);
  assert_int_equal(errno, EADDRINUSE);
  assert_null(l2);

  /* Closing an idle listener completes with its callback, once. */
  uvq_listener_close(l1, count_close);
  uvq_listener_close(l1, count_close);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  uvq_tls_ctx_del(f.stls);
  uvq_tls_ctx_del(f.ctls);
}

static void test_uv_bad_arguments(void **state) {
  struct sockaddr_in sin;
  uvq_uv_endpoint *c = NULL;
  uv_loop_t loop;
  fixture f;

  (void)state;
  memset(&f, 0, sizeof(f));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  assert_int_equal(uv_loop_init(&loop), 0);
  make_tls(&f);
  assert_int_equal(
      uvq_uv_client_new(&c, &loop, AF_UNIX, NULL, NULL, f.ctls, NULL),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      uvq_listen(&c, &loop, (struct sockaddr *)&sin, NULL, f.stls, NULL, NULL),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uv_loop_close(&loop), 0);
  uvq_tls_ctx_del(f.stls);
  uvq_tls_ctx_del(f.ctls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uv_exchange_ipv4),
      cmocka_unit_test(test_uv_exchange_ipv6),
      cmocka_unit_test(test_uv_listen_addr_in_use),
      cmocka_unit_test(test_uv_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
