#include "qtest_app.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/* cmocka.h needs the headers above first. */
#include <cmocka.h>

int qt_app_pump(uvq_conn *conn, qt_app *a) {
  uint8_t buf[16384];
  while (a->sent < a->to_send) {
    size_t n = a->to_send - a->sent < sizeof(buf)
                   ? (size_t)(a->to_send - a->sent)
                   : sizeof(buf);
    ssize_t w;
    qt_pattern_fill(a->seed, a->sent, buf, n);
    w = uvq_stream_write(conn, a->sid, buf, n, a->sent + n == a->to_send);
    assert_true(w >= 0);
    a->sent += (uint64_t)w;
    if ((size_t)w < n) {
      return 0; /* wait for on_stream_writable */
    }
  }
  if (a->to_send == 0) {
    assert_int_equal(uvq_stream_write(conn, a->sid, NULL, 0, 1), 0);
  }
  return 0;
}

int qt_app_on_established(uvq_conn *conn, void *ud) {
  qt_app *a = ud;
  a->established = 1;
  a->conn = conn;
  if (a->send_on_established) {
    assert_int_equal(uvq_conn_open_stream(conn, 1, &a->sid, NULL), 0);
    return qt_app_pump(conn, a);
  }
  return 0;
}

int qt_app_on_stream_open(uvq_conn *conn, int64_t sid, void *ud) {
  qt_app *a = ud;
  (void)conn;
  a->sid = sid;
  return 0;
}

int qt_app_on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud) {
  qt_app *a = ud;
  (void)sid;
  (void)sud;
  if (a->hash == NULL) {
    assert_int_equal(gnutls_hash_init(&a->hash, GNUTLS_DIG_SHA256), 0);
  }
  gnutls_hash(a->hash, data, len);
  a->received += len;
  if (fin) {
    a->fin = 1;
    gnutls_hash_deinit(a->hash, a->digest);
    a->hash = NULL;
    if (a->reply) {
      return qt_app_pump(conn, a);
    }
  }
  return 0;
}

int qt_app_on_stream_writable(uvq_conn *conn, int64_t sid, void *ud,
                              void *sud) {
  (void)sid;
  (void)sud;
  return qt_app_pump(conn, ud);
}

void qt_app_on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  qt_app *a = ud;
  (void)conn;
  assert_int_equal(a->closed, 0); /* exactly once */
  a->closed = 1;
  a->ci = *ci;
  a->ci.reason = NULL;
  if (ci->reasonlen) {
    memcpy(a->ci_reason, ci->reason,
           ci->reasonlen < sizeof(a->ci_reason) ? ci->reasonlen
                                                : sizeof(a->ci_reason));
  }
  a->closed_at = a->w ? a->w->now : 0;
  a->conn = NULL;
  qt_app_free(a);
}

int qt_app_on_new_token(uvq_conn *conn, const uint8_t *token, size_t len,
                        void *ud) {
  qt_app *a = ud;
  (void)conn;
  assert_true(len <= sizeof(a->token));
  memcpy(a->token, token, len);
  a->tokenlen = len;
  return 0;
}

const uvq_app_callbacks qt_app_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = qt_app_on_established,
    .on_stream_open = qt_app_on_stream_open,
    .on_stream_data = qt_app_on_stream_data,
    .on_stream_writable = qt_app_on_stream_writable,
    .on_closed = qt_app_on_closed,
    .on_new_token = qt_app_on_new_token,
};

static void take(qt_app *a, uvq_conn *conn, const uvq_accept_info *info,
                 const qt_node *n, const uvq_app_callbacks **pcb, void **pud) {
  a->conn = conn;
  a->w = n->w;
  a->accept_validated = info->address_validated;
  *pcb = &qt_app_callbacks;
  *pud = a;
}

int qt_app_accept(uvq_endpoint *ep, uvq_conn *conn, const uvq_accept_info *info,
                  const uvq_app_callbacks **pcb, void **pud, void *ud) {
  qt_node *n = ud;
  (void)ep;
  assert_non_null(n->user_data);
  take(n->user_data, conn, info, n, pcb, pud);
  return 0;
}

int qt_app_pool_accept(uvq_endpoint *ep, uvq_conn *conn,
                       const uvq_accept_info *info,
                       const uvq_app_callbacks **pcb, void **pud, void *ud) {
  qt_node *n = ud;
  qt_app_pool *p = n->user_data;
  qt_app *a;
  (void)ep;
  assert_non_null(p);
  if (p->refuse) {
    p->refused++;
    return -1;
  }
  assert_true(p->accepted < p->nsides);
  a = &p->sides[p->accepted++];
  if (p->reply_len) {
    a->reply = 1;
    a->to_send = p->reply_len;
    a->seed = p->reply_seed;
  }
  take(a, conn, info, n, pcb, pud);
  return 0;
}

void qt_app_free(qt_app *a) {
  if (a->hash) {
    gnutls_hash_deinit(a->hash, NULL);
    a->hash = NULL;
  }
}

void qt_app_assert_received(const qt_app *a, uint32_t seed, uint64_t len) {
  uint8_t want[32];
  assert_int_equal(a->received, len);
  assert_int_equal(a->fin, 1);
  qt_pattern_sha256(seed, len, want);
  assert_memory_equal(a->digest, want, 32);
}

int qt_app_both_established(void *pair) {
  qt_app **p = pair;
  return p[0]->established && p[1]->established;
}

int qt_app_is_closed(void *a) { return ((qt_app *)a)->closed; }

int qt_app_got_fin(void *a) { return ((qt_app *)a)->fin; }
