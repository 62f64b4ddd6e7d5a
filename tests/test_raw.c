/*
 * Raw mode: a connection driven entirely by hand — every datagram taken out
 * with uvq_raw_write and fed in with uvq_raw_recv — talking to a normal
 * uvquic endpoint, in both roles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2.h>
#include <stdio.h>
#include <string.h>

#include "core/conn.h"

#define QMAX 8192

typedef struct dgram {
  uvq_path path; /* as the receiver sees it */
  size_t len;
  uint8_t data[UVQ_MAX_DATAGRAM];
} dgram;

static dgram g_q[QMAX]; /* endpoint -> raw */
static size_t g_qlen;
static uvq_tstamp g_now;

static uvq_path swap(const uvq_path *p) {
  uvq_path r;
  r.local = p->remote;
  r.remote = p->local;
  return r;
}

static ssize_t ep_send(uvq_endpoint *ep, const uvq_send_batch *b, void *ud) {
  size_t i;
  (void)ep;
  (void)ud;
  for (i = 0; i < b->count && g_qlen < QMAX; i++) {
    size_t off = i * b->segment_size;
    dgram *d = &g_q[g_qlen++];
    d->len =
        b->datalen - off < b->segment_size ? b->datalen - off : b->segment_size;
    d->path = swap(b->path);
    memcpy(d->data, b->data + off, d->len);
  }
  return (ssize_t)i;
}

static uint64_t ep_wall(uvq_endpoint *ep, void *ud) {
  (void)ep;
  (void)ud;
  return 1700000000;
}

/* ---- a small app: the client uploads, the server answers in kind ------ */

typedef struct side {
  int established, closed, fin;
  uvq_close_info ci;
  int64_t sid;
  uint64_t to_send, sent, received;
  uint8_t sum; /* running check over received bytes */
  uint8_t want_sum;
  int echo; /* server: answer with as many bytes */
  int upload;
  uvq_conn *conn;
} side;

static uint8_t pattern(uint64_t off) { return (uint8_t)(off * 131 + 7); }

static int pump(uvq_conn *conn, side *a) {
  uint8_t buf[8192];
  while (a->sent < a->to_send) {
    size_t n = a->to_send - a->sent < sizeof(buf)
                   ? (size_t)(a->to_send - a->sent)
                   : sizeof(buf);
    ssize_t w;
    for (size_t i = 0; i < n; i++) {
      buf[i] = pattern(a->sent + i);
    }
    w = uvq_stream_write(conn, a->sid, buf, n, a->sent + n == a->to_send);
    assert_true(w >= 0);
    a->sent += (uint64_t)w;
    if ((size_t)w < n) {
      break;
    }
  }
  return 0;
}

static int on_established(uvq_conn *conn, void *ud) {
  side *a = ud;
  a->established = 1;
  a->conn = conn;
  if (a->upload) {
    assert_int_equal(uvq_conn_open_stream(conn, 1, &a->sid, NULL), 0);
    pump(conn, a);
  }
  return 0;
}

static int on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  side *a = ud;
  (void)sud;
  for (size_t i = 0; i < len; i++) {
    if (data[i] != pattern(a->received + i)) {
      a->sum++; /* counts mismatches */
    }
  }
  a->received += len;
  if (fin) {
    a->fin = 1;
    if (a->echo) {
      a->sid = sid;
      a->to_send = a->received;
      pump(conn, a);
    }
  }
  return 0;
}

static int on_writable(uvq_conn *conn, int64_t sid, void *ud, void *sud) {
  (void)sid;
  (void)sud;
  return pump(conn, ud);
}

static void on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  side *a = ud;
  (void)conn;
  assert_int_equal(a->closed, 0);
  a->closed = 1;
  a->ci = *ci;
}

static const uvq_app_callbacks cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
    .on_stream_data = on_stream_data,
    .on_stream_writable = on_writable,
    .on_closed = on_closed,
};

static side *g_srv;

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  g_srv->conn = conn;
  *pcb = &cb;
  *pud = g_srv;
  return 0;
}

/* ---- plumbing ---------------------------------------------------------- */

static uvq_tls_ctx *tls_ctx(int server) {
  static const char *const alpn[] = {"test"};
  uvq_tls_config c;
  uvq_tls_ctx *ctx;
  char err[256];
  uvq_tls_config_default(&c);
  c.alpn = alpn;
  c.alpnlen = 1;
  c.insecure = !server;
  assert_int_equal(uvq_tls_ctx_new(&ctx, server, &c, NULL, err, sizeof(err)),
                   0);
  return ctx;
}

static uvq_endpoint *make_ep(int server, uvq_tls_ctx *tls) {
  uvq_endpoint_config ec;
  uvq_endpoint *ep;
  uvq_endpoint_config_default(&ec);
  ec.is_server = server;
  ec.tls = tls;
  ec.send = ep_send;
  ec.wall_time = ep_wall;
  ec.on_accept = on_accept;
  assert_int_equal(uvq_endpoint_new(&ep, &ec), 0);
  return ep;
}

static uvq_addr addr4(uint16_t port) {
  struct sockaddr_in sa;
  uvq_addr a;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uvq_addr_set(&a, (struct sockaddr *)&sa, sizeof(sa));
  return a;
}

/* Moves datagrams both ways and advances the fake clock until |done|. */
static int run(uvq_raw *raw, uvq_endpoint *ep, int (*done)(void),
               uvq_tstamp limit) {
  uvq_tstamp end = g_now + limit;
  uint8_t buf[UVQ_MAX_DATAGRAM];
  for (;;) {
    ssize_t n;
    uvq_path p;
    int moved = 0;
    if (done && done()) {
      return 1;
    }
    while ((n = uvq_raw_write(raw, buf, sizeof(buf), &p, g_now)) > 0) {
      uvq_path r = swap(&p);
      uvq_endpoint_recv(ep, &r, 0, buf, (size_t)n, 0, g_now);
      moved = 1;
    }
    uvq_endpoint_flush(ep, g_now);
    if (g_qlen) {
      for (size_t i = 0; i < g_qlen; i++) {
        uvq_raw_recv(raw, &g_q[i].path, 0, g_q[i].data, g_q[i].len, g_now);
      }
      g_qlen = 0;
      moved = 1;
    }
    if (moved) {
      continue;
    }
    uvq_tstamp a = uvq_raw_next_expiry(raw), b = uvq_endpoint_next_expiry(ep);
    uvq_tstamp next = a < b ? a : b;
    if (next == UVQ_TSTAMP_MAX || next > end) {
      return done ? done() : 0;
    }
    if (next > g_now) {
      g_now = next;
    }
    uvq_raw_handle_expiry(raw, g_now);
    uvq_endpoint_handle_expiry(ep, g_now);
  }
}

static side g_cli_side, g_srv_side;

static int both_fin(void) { return g_cli_side.fin && g_srv_side.fin; }

static int hook_calls;
static int hook(struct ngtcp2_settings *s, struct ngtcp2_transport_params *p,
                void *ud) {
  (void)ud;
  hook_calls++;
  s->ack_thresh = 4;
  p->initial_max_streams_uni = 7; /* visible to the peer */
  return 0;
}

static void test_raw_client_transfer(void **state) {
  uvq_tls_ctx *stls = tls_ctx(1), *ctls = tls_ctx(0);
  uvq_endpoint *ep;
  uvq_raw *raw;
  uvq_raw_config rc;
  uvq_path path;
  (void)state;

  memset(&g_cli_side, 0, sizeof(g_cli_side));
  memset(&g_srv_side, 0, sizeof(g_srv_side));
  g_srv = &g_srv_side;
  g_srv_side.echo = 1;
  g_cli_side.upload = 1;
  g_cli_side.to_send = 2u << 20;
  g_now = 1000 * UVQ_SECONDS;
  g_qlen = 0;
  hook_calls = 0;
  ep = make_ep(1, stls);

  uvq_raw_config_default(&rc);
  rc.tls = ctls;
  rc.callbacks = &cb;
  rc.conn_user_data = &g_cli_side;
  rc.server_name = "localhost";
  rc.hook = hook;
  path.local = addr4(50000);
  path.remote = addr4(4433);
  assert_int_equal(uvq_raw_connect(&raw, &rc, &path, g_now), 0);
  assert_int_equal(hook_calls, 1);
  assert_true(run(raw, ep, both_fin, 60 * UVQ_SECONDS));
  assert_int_equal(g_srv_side.received, 2u << 20);
  assert_int_equal(g_srv_side.sum, 0);
  assert_int_equal(g_cli_side.received, 2u << 20);
  assert_int_equal(g_cli_side.sum, 0);
  /* The hook's transport parameter reached the peer. */
  assert_int_equal(
      ngtcp2_conn_get_remote_transport_params(g_srv_side.conn->ngconn)
          ->initial_max_streams_uni,
      7);

  /* Close by hand; the close is observable through the callback and then
   * through uvq_raw_get_conn once the closing period is over. */
  assert_non_null(uvq_raw_get_conn(raw));
  assert_int_equal(uvq_conn_close(uvq_raw_get_conn(raw), 5, "raw done"), 0);
  run(raw, ep, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(g_cli_side.closed, 1);
  assert_int_equal(g_cli_side.ci.origin, UVQ_CLOSE_LOCAL);
  assert_int_equal(g_srv_side.closed, 1);
  assert_int_equal(g_srv_side.ci.code, 5);
  assert_null(uvq_raw_get_conn(raw));
  assert_int_equal(uvq_raw_recv(raw, &path, 0, (const uint8_t *)"x", 1, g_now),
                   UVQ_ERR_CLOSED);
  uvq_raw_del(raw);
  uvq_endpoint_del(ep);
  uvq_tls_ctx_del(stls);
  uvq_tls_ctx_del(ctls);
}

static void test_raw_server_transfer(void **state) {
  uvq_tls_ctx *stls = tls_ctx(1), *ctls = tls_ctx(0);
  uvq_endpoint *cep;
  uvq_raw *raw;
  uvq_raw_config rc;
  uvq_connect_params cp;
  uvq_path path;
  dgram first;
  (void)state;

  memset(&g_cli_side, 0, sizeof(g_cli_side));
  memset(&g_srv_side, 0, sizeof(g_srv_side));
  g_srv_side.echo = 1;
  g_cli_side.upload = 1;
  g_cli_side.to_send = 1u << 20;
  g_now = 1000 * UVQ_SECONDS;
  g_qlen = 0;
  cep = make_ep(0, ctls);
  path.local = addr4(50001);
  path.remote = addr4(4434);
  uvq_connect_params_default(&cp);
  cp.server_name = "localhost";
  cp.path = &path;
  cp.callbacks = &cb;
  cp.user_data = &g_cli_side;
  assert_int_equal(uvq_endpoint_connect(cep, &cp, g_now, NULL), 0);
  uvq_endpoint_flush(cep, g_now);
  assert_true(g_qlen >= 1);
  first = g_q[0];

  uvq_raw_config_default(&rc);
  rc.tls = stls;
  rc.callbacks = &cb;
  rc.conn_user_data = &g_srv_side;
  /* Not an Initial: refused. */
  assert_int_equal(
      uvq_raw_accept(&raw, &rc, &first.path, first.data, 100, g_now),
      UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      uvq_raw_accept(&raw, &rc, &first.path, first.data, first.len, g_now), 0);
  /* The rest of the client's first flight goes in by hand too. */
  for (size_t i = 1; i < g_qlen; i++) {
    uvq_raw_recv(raw, &g_q[i].path, 0, g_q[i].data, g_q[i].len, g_now);
  }
  g_qlen = 0;
  assert_true(run(raw, cep, both_fin, 60 * UVQ_SECONDS));
  assert_int_equal(g_srv_side.received, 1u << 20);
  assert_int_equal(g_cli_side.received, 1u << 20);
  assert_int_equal(g_cli_side.sum + g_srv_side.sum, 0);

  /* The peer closes: the raw side drains, then is gone. */
  assert_int_equal(uvq_conn_close(g_cli_side.conn, 0, NULL), 0);
  run(raw, cep, NULL, 30 * UVQ_SECONDS);
  assert_int_equal(g_srv_side.closed, 1);
  assert_int_equal(g_srv_side.ci.origin, UVQ_CLOSE_PEER);
  assert_null(uvq_raw_get_conn(raw));
  uvq_raw_del(raw);
  uvq_endpoint_del(cep);
  uvq_tls_ctx_del(stls);
  uvq_tls_ctx_del(ctls);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_raw_client_transfer),
      cmocka_unit_test(test_raw_server_transfer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
