/*
 * The key file (uvq_keys): the format (uvq_keys_format / uvq_keys_parse,
 * no I/O) and the tools' file I/O on it (apps/cli.c: cli_keys_save /
 * cli_keys_load): round trip, permission and format refusals, and two
 * server "processes" sharing one key file — each accepts
 * the other's Retry tokens, NEW_TOKEN tokens and session tickets — while a
 * server with other 0-RTT limits no longer resumes those tickets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/conn.h"
#include "core/endpoint.h"
#include "core/reset.h"
#include "core/token.h"
#include "qtest.h"
#include "qtest_app.h"

/* ---- files ------------------------------------------------------------ */

static char g_dir[256];

static void path_in_dir(char *out, size_t outlen, const char *name) {
  snprintf(out, outlen, "%s/%s", g_dir, name);
}

static int setup_dir(void **state) {
  (void)state;
  snprintf(g_dir, sizeof(g_dir), "/tmp/uvq_keys_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  char cmd[300];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
}

static void test_keys_round_trip(void **state) {
  uvq_keys k, back, again;
  char path[300], err[256];
  struct stat st;
  (void)state;

  path_in_dir(path, sizeof(path), "keys");
  assert_int_equal(uvq_keys_generate(&k), 0);
  assert_int_equal(k.token_key_prev_set, 0);
  assert_int_equal(cli_keys_save(&k, path, err, sizeof(err)), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  memset(&back, 0xee, sizeof(back));
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)), 0);
  assert_memory_equal(back.ticket_key, k.ticket_key, UVQ_TICKET_KEYLEN);
  assert_memory_equal(back.token_key, k.token_key, UVQ_TOKEN_KEYLEN);
  assert_memory_equal(back.static_secret, k.static_secret,
                      UVQ_STATIC_SECRETLEN);
  assert_int_equal(back.token_key_prev_set, 0);
  assert_int_equal(back.static_secret_prev_set, 0);

  /* Rotation: current becomes previous; the ticket key stays. Saving over
   * the old file replaces it (rename), still 0600. */
  again = k;
  assert_int_equal(uvq_keys_rotate(&again), 0);
  assert_memory_equal(again.token_key_prev, k.token_key, UVQ_TOKEN_KEYLEN);
  assert_memory_equal(again.static_secret_prev, k.static_secret,
                      UVQ_STATIC_SECRETLEN);
  assert_memory_not_equal(again.token_key, k.token_key, UVQ_TOKEN_KEYLEN);
  assert_memory_equal(again.ticket_key, k.ticket_key, UVQ_TICKET_KEYLEN);
  assert_int_equal(cli_keys_save(&again, path, err, sizeof(err)), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)), 0);
  assert_memory_equal(&back, &again, sizeof(back));
  /* No temporary file is left behind. */
  {
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", g_dir);
    assert_int_equal(system(cmd), 0);
  }
  unlink(path);
}

static void test_keys_refused(void **state) {
  uvq_keys k, back;
  char path[300], err[256];
  (void)state;

  path_in_dir(path, sizeof(path), "keys-perm");
  assert_int_equal(uvq_keys_generate(&k), 0);
  assert_int_equal(cli_keys_save(&k, path, err, sizeof(err)), 0);

  /* Readable by the group, or by everyone: refused, untouched output. */
  memset(&back, 0x11, sizeof(back));
  assert_int_equal(chmod(path, 0640), 0);
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_non_null(strstr(err, "0640"));
  assert_non_null(strstr(err, path));
  assert_int_equal(chmod(path, 0604), 0);
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_int_equal(back.token_key_prev_set, 0x11111111);
  assert_int_equal(chmod(path, 0400), 0);
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)), 0);
  unlink(path);

  /* A missing file; contents the parser refuses, through the file. */
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)), UVQ_ERR_IO);
  write_text(path, "uvquic-keys 1\ntoken_key 0011zz\n", 0600);
  assert_int_equal(cli_keys_load(&back, path, err, sizeof(err)),
                   UVQ_ERR_KEY_FILE);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, ":2:"));
  unlink(path);
}

/* The format alone, no file: what uvq_keys_parse refuses, and
 * uvq_keys_format's buffer limits. */
static void test_keys_parse_format(void **state) {
  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"uvquic-keys 2\n", "version"},
      {"uvquic-keys 1\ntoken_key 00112233445566778899aabbccddeeff\n",
       "incomplete"},
      {"uvquic-keys 1\ntoken_key 0011zz\n", "k:2:"},
      {"uvquic-keys 1\nsecret_sauce 00\n", "unknown key"},
      {"ticket_key 00\n", "not a uvquic key file"},
      {"", "incomplete"},
  };
  uvq_keys k, back;
  char text[UVQ_KEYS_TEXTLEN], err[256];
  ssize_t n;
  (void)state;

  assert_int_equal(uvq_keys_generate(&k), 0);
  assert_int_equal(uvq_keys_rotate(&k), 0); /* both _prev keys written */
  n = uvq_keys_format(&k, text, sizeof(text));
  assert_true(n > 0);
  assert_int_equal(strlen(text), (size_t)n);
  memset(&back, 0xee, sizeof(back));
  assert_int_equal(
      uvq_keys_parse(&back, text, (size_t)n, "k", err, sizeof(err)), 0);
  assert_memory_equal(&back, &k, sizeof(back));
  /* One byte short of the NUL: refused, and no partial secret left. */
  assert_int_equal(uvq_keys_format(&k, text, (size_t)n),
                   UVQ_ERR_INVALID_ARGUMENT);
  for (ssize_t i = 0; i < n; i++) {
    assert_int_equal(text[i], 0);
  }
  assert_int_equal(uvq_keys_format(&k, text, 10), UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_keys_format(NULL, text, sizeof(text)),
                   UVQ_ERR_INVALID_ARGUMENT);

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    memset(&back, 0x11, sizeof(back));
    assert_int_equal(uvq_keys_parse(&back, bad[i].text, strlen(bad[i].text),
                                    "k", err, sizeof(err)),
                     UVQ_ERR_KEY_FILE);
    assert_non_null(strstr(err, bad[i].msg));
    assert_int_equal(back.token_key_prev_set, 0x11111111);
  }
  assert_int_equal(uvq_keys_parse(NULL, "", 0, "k", err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
  assert_int_equal(uvq_keys_parse(&back, NULL, 0, "k", err, sizeof(err)),
                   UVQ_ERR_INVALID_ARGUMENT);
}

/* ---- two servers behind one address ----------------------------------- */

/* A side: a qt_app (qtest_app.h) that keeps the last session ticket too. */
typedef struct side {
  qt_app app; /* first: the qt_app callbacks get a side as a qt_app */
  uint8_t ticket[4096];
  size_t ticketlen;
} side;

typedef struct server_rec {
  int accepted;
  int resumed;
  int validated;
  side s;
} server_rec;

static server_rec g_srv[QT_MAX_NODES];

static int on_session_ticket(uvq_conn *conn, const uint8_t *data, size_t len,
                             void *ud) {
  side *a = ud;
  (void)conn;
  assert_true(len <= sizeof(a->ticket));
  memcpy(a->ticket, data, len);
  a->ticketlen = len;
  return 0;
}

static const uvq_app_callbacks app_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = qt_app_on_established,
    .on_closed = qt_app_on_closed,
    .on_session_ticket = on_session_ticket,
    .on_new_token = qt_app_on_new_token,
};

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info, const uvq_app_callbacks **pcb,
                     void **pud, void *ud) {
  qt_node *n = ud;
  server_rec *r = &g_srv[n->idx];
  (void)ep;
  r->accepted++;
  r->resumed = info->resumed;
  r->validated = info->address_validated;
  memset(&r->s, 0, sizeof(r->s));
  r->s.app.conn = conn;
  *pcb = &app_cb;
  *pud = &r->s;
  return 0;
}

/* Datagrams the client sends to node |front| go to node |back| instead
 * (from the |after|-th on), as a load balancer in front of two processes
 * would do: the path is untouched, so |back| answers from |front|'s
 * address. */
typedef struct redirect {
  int client, front, back;
  int after;
  int seen;
} redirect;

static int redirect_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  redirect *r = ud;
  (void)w;
  if (from == r->client && p->dst == r->front) {
    if (r->seen++ >= r->after) {
      p->dst = r->back;
    }
  }
  return 0;
}

static int connect_to(qt_world *w, int c, int s, side *a, const uint8_t *token,
                      size_t tokenlen, const uint8_t *res, size_t reslen) {
  uvq_connect_params p;
  uvq_connect_params_default(&p);
  p.callbacks = &app_cb;
  p.user_data = a;
  p.token = token;
  p.tokenlen = tokenlen;
  p.resumption = res;
  p.resumptionlen = reslen;
  return qt_connect_params(w, c, s, &p, &a->app.conn);
}

static int est(void *ud) { return ((side *)ud)->app.established; }

static int est_with_extras(void *ud) {
  side *a = ud;
  return a->app.established && a->ticketlen > 0 && a->app.tokenlen > 0;
}

static void close_conn(qt_world *w, side *a) {
  assert_int_equal(uvq_conn_close(a->app.conn, 0, NULL), 0);
  qt_run(w, NULL, NULL, 5 * UVQ_SECONDS);
  assert_int_equal(a->app.closed, 1);
}

/* A server TLS context with the key file's ticket key. */
static uvq_tls_ctx *server_ctx(const uvq_keys *k) {
  static const char *const alpn[] = {"test", "hq-interop"};
  uvq_tls_config cfg;
  uvq_tls_ctx *ctx = NULL;
  char err[256];
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn;
  cfg.alpnlen = 2;
  uvq_keys_apply(k, NULL, &cfg);
  assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)), 0);
  return ctx;
}

static void test_keys_shared_between_servers(void **state) {
  qt_world w;
  uvq_keys generated, ka, kb;
  uvq_settings sa, sb, sc;
  uvq_tls_ctx *orig, *ctxa, *ctxb, *ctxc;
  uvq_endpoint_stats st;
  char path[300], err[256];
  side first, second, third, fourth;
  redirect rd;
  (void)state;

  /* One key file, loaded by two "processes" (two contexts, two
   * endpoints; nothing shared in memory). */
  path_in_dir(path, sizeof(path), "shared");
  assert_int_equal(uvq_keys_generate(&generated), 0);
  assert_int_equal(cli_keys_save(&generated, path, err, sizeof(err)), 0);
  assert_int_equal(cli_keys_load(&ka, path, err, sizeof(err)), 0);
  assert_int_equal(cli_keys_load(&kb, path, err, sizeof(err)), 0);
  uvq_settings_default(&sa);
  sa.retry = UVQ_RETRY_ALWAYS;
  uvq_keys_apply(&ka, &sa, NULL);
  uvq_settings_default(&sb);
  sb.retry = UVQ_RETRY_ALWAYS;
  uvq_keys_apply(&kb, &sb, NULL);
  /* A third server with the same keys but a lower 0-RTT limit. */
  sc = sb;
  sc.initial_max_data = sb.initial_max_data / 2;

  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 41);
  orig = w.server_tls;
  ctxa = server_ctx(&ka);
  ctxb = server_ctx(&kb);
  ctxc = server_ctx(&kb);
  w.server_tls = ctxa;
  int a = qt_add_server(&w, &sa, on_accept, NULL);
  w.server_tls = ctxb;
  int b = qt_add_server(&w, &sb, on_accept, NULL);
  w.server_tls = ctxc;
  int sc_node = qt_add_server(&w, &sc, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);

  /* 1. Retry by A, the retried Initial (and everything after) lands on
   * B: B accepts A's Retry token. */
  memset(&rd, 0, sizeof(rd));
  rd.client = c;
  rd.front = a;
  rd.back = b;
  rd.after = 1;
  w.filter = redirect_fn;
  w.filter_ud = &rd;
  memset(&first, 0, sizeof(first));
  assert_int_equal(connect_to(&w, c, a, &first, NULL, 0, NULL, 0), 0);
  assert_true(qt_run(&w, est_with_extras, &first, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[a].ep, &st);
  assert_int_equal(st.retries_sent, 1);
  assert_int_equal(st.initials_accepted, 0);
  assert_int_equal(g_srv[a].accepted, 0);
  uvq_endpoint_get_stats(w.nodes[b].ep, &st);
  assert_int_equal(st.retries_sent, 0);
  assert_int_equal(st.tokens_rejected[UVQ_TOKEN_REJECT_DECRYPT], 0);
  assert_int_equal(g_srv[b].accepted, 1);
  assert_int_equal(g_srv[b].validated, 1);
  assert_true(first.app.tokenlen > 0); /* B's NEW_TOKEN */
  assert_true(first.ticketlen > 0);    /* B's session ticket */
  close_conn(&w, &first);

  /* 2. A NEW_TOKEN token and a ticket from B, presented to A: no Retry
   * (the token validates the address) and the session resumes. */
  w.filter = NULL;
  memset(&second, 0, sizeof(second));
  assert_int_equal(connect_to(&w, c, a, &second, first.app.token,
                              first.app.tokenlen, first.ticket,
                              first.ticketlen),
                   0);
  assert_true(qt_run(&w, est_with_extras, &second, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(w.nodes[a].ep, &st);
  assert_int_equal(st.retries_sent, 1); /* still only the one of step 1 */
  assert_int_equal(g_srv[a].accepted, 1);
  assert_int_equal(g_srv[a].validated, 1);
  assert_int_equal(g_srv[a].resumed, 1);
  close_conn(&w, &second);

  /* 3. And back: A's ticket resumes on B. */
  memset(&third, 0, sizeof(third));
  assert_true(second.ticketlen > 0);
  assert_int_equal(connect_to(&w, c, b, &third, second.app.token,
                              second.app.tokenlen, second.ticket,
                              second.ticketlen),
                   0);
  assert_true(qt_run(&w, est_with_extras, &third, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[b].accepted, 2);
  assert_int_equal(g_srv[b].resumed, 1);
  close_conn(&w, &third);

  /* 4. The server whose 0-RTT limits changed cannot read the ticket: a
   * full handshake, which still succeeds. */
  memset(&fourth, 0, sizeof(fourth));
  assert_int_equal(connect_to(&w, c, sc_node, &fourth, third.app.token,
                              third.app.tokenlen, third.ticket,
                              third.ticketlen),
                   0);
  assert_true(qt_run(&w, est, &fourth, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[sc_node].accepted, 1);
  assert_int_equal(g_srv[sc_node].resumed, 0);
  assert_int_equal(gnutls_session_is_resumed(fourth.app.conn->tls), 0);
  /* Its new ticket resumes there again. */
  assert_true(qt_run(&w, est_with_extras, &fourth, 5 * UVQ_SECONDS));
  close_conn(&w, &fourth);
  memset(&third, 0, sizeof(third));
  assert_int_equal(connect_to(&w, c, sc_node, &third, NULL, 0, fourth.ticket,
                              fourth.ticketlen),
                   0);
  assert_true(qt_run(&w, est, &third, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[sc_node].resumed, 1);
  close_conn(&w, &third);

  qt_world_free(&w); /* frees ctxc, the last one installed */
  uvq_tls_ctx_del(ctxa);
  uvq_tls_ctx_del(ctxb);
  uvq_tls_ctx_del(orig);
  unlink(path);
}

/* SIGHUP in uvquic-server: uvq_tls_ctx_reload + uvq_endpoint_reload_keys
 * with a new key file. A connection open across the reload goes on; a
 * NEW_TOKEN token sealed under the old token key still validates the
 * address (it became the previous key); a ticket under the old ticket key
 * no longer resumes (full handshake), one under the new key does; the
 * reset secret of new connection IDs is the new one. */
static void test_keys_reload(void **state) {
  static const char *const alpn[] = {"test", "hq-interop"};
  qt_world w;
  uvq_keys k1, k2;
  uvq_settings ss;
  uvq_tls_config cfg;
  uvq_tls_ctx *orig, *ctx;
  uvq_endpoint_stats st;
  uvq_endpoint *ep;
  char err[256];
  side first, open_conn, second, third;
  (void)state;

  assert_int_equal(uvq_keys_generate(&k1), 0);
  assert_int_equal(uvq_keys_generate(&k2), 0);
  uvq_settings_default(&ss);
  ss.retry = UVQ_RETRY_ALWAYS;
  uvq_keys_apply(&k1, &ss, NULL);
  memset(g_srv, 0, sizeof(g_srv));
  qt_world_init(&w, 43);
  orig = w.server_tls;
  ctx = server_ctx(&k1);
  w.server_tls = ctx;
  int s = qt_add_server(&w, &ss, on_accept, NULL);
  int c = qt_add_client(&w, NULL, NULL);
  ep = w.nodes[s].ep;

  memset(&first, 0, sizeof(first));
  assert_int_equal(connect_to(&w, c, s, &first, NULL, 0, NULL, 0), 0);
  assert_true(qt_run(&w, est_with_extras, &first, 5 * UVQ_SECONDS));
  close_conn(&w, &first);
  memset(&open_conn, 0, sizeof(open_conn));
  assert_int_equal(connect_to(&w, c, s, &open_conn, NULL, 0, NULL, 0), 0);
  assert_true(qt_run(&w, est, &open_conn, 5 * UVQ_SECONDS));

  /* The reload. */
  uvq_tls_config_default(&cfg);
  cfg.alpn = alpn;
  cfg.alpnlen = 2;
  uvq_keys_apply(&k2, NULL, &cfg);
  assert_int_equal(uvq_tls_ctx_reload(ctx, &cfg, err, sizeof(err)), 0);
  assert_int_equal(uvq_endpoint_reload_keys(ep, &k2), 0);
  assert_memory_equal(ep->static_secret, k2.static_secret,
                      UVQ_STATIC_SECRETLEN);
  /* Reset tokens come from a handle keyed from the secret, not from
   * static_secret itself: that handle must be the new secret's too. */
  {
    gnutls_hmac_hd_t h;
    uint8_t got[NGTCP2_STATELESS_RESET_TOKENLEN];
    uint8_t want[NGTCP2_STATELESS_RESET_TOKENLEN];
    ngtcp2_cid cid;
    ngtcp2_cid_init(&cid, (const uint8_t *)"reloaded", 8);
    assert_int_equal(uvq_reset_token_of(ep, &cid, got), 0);
    assert_int_equal(uvq_reset_token_key_new(k2.static_secret, &h), 0);
    gnutls_hmac_deinit(ep->reset_token_hmac, NULL);
    ep->reset_token_hmac = h;
    assert_int_equal(uvq_reset_token_of(ep, &cid, want), 0);
    assert_memory_equal(got, want, sizeof(got));
  }
  assert_int_equal(ep->tokens.cur.id, uvq_token_key_id(k2.token_key));
  assert_int_equal(ep->tokens.prev.id, uvq_token_key_id(k1.token_key));
  /* The same keys again change nothing (the old key stays the previous). */
  assert_int_equal(uvq_endpoint_reload_keys(ep, &k2), 0);
  assert_int_equal(ep->tokens.prev.id, uvq_token_key_id(k1.token_key));
  assert_int_equal(uvq_endpoint_reload_keys(w.nodes[c].ep, &k2),
                   UVQ_ERR_INVALID_ARGUMENT);

  /* The connection from before is still up. */
  (void)qt_run(&w, NULL, NULL, UVQ_SECONDS);
  assert_int_equal(open_conn.app.closed, 0);
  assert_true(uvq_conn_get_stage(open_conn.app.conn) < UVQ_STAGE_CLOSING);
  close_conn(&w, &open_conn);

  /* Old token: no Retry; old ticket: not resumed. */
  memset(&second, 0, sizeof(second));
  assert_int_equal(connect_to(&w, c, s, &second, first.app.token,
                              first.app.tokenlen, first.ticket,
                              first.ticketlen),
                   0);
  assert_true(qt_run(&w, est_with_extras, &second, 5 * UVQ_SECONDS));
  uvq_endpoint_get_stats(ep, &st);
  assert_int_equal(st.retries_sent, 2); /* first and open_conn only */
  assert_int_equal(g_srv[s].validated, 1);
  assert_int_equal(g_srv[s].resumed, 0);
  close_conn(&w, &second);
  /* A ticket of the new key resumes. */
  memset(&third, 0, sizeof(third));
  assert_int_equal(connect_to(&w, c, s, &third, second.app.token,
                              second.app.tokenlen, second.ticket,
                              second.ticketlen),
                   0);
  assert_true(qt_run(&w, est, &third, 5 * UVQ_SECONDS));
  assert_int_equal(g_srv[s].resumed, 1);
  close_conn(&w, &third);

  qt_world_free(&w); /* frees ctx, the last one installed */
  uvq_tls_ctx_del(orig);
}

/* uvq_keys_apply points the TLS config at the key; a wrong length fails. */
static void test_keys_apply_and_bad_ticket_key(void **state) {
  uvq_keys k;
  uvq_tls_config cfg;
  (void)state;
  assert_int_equal(uvq_keys_generate(&k), 0);
  uvq_tls_config_default(&cfg);
  k.token_key_prev_set = 1;
  uvq_keys_apply(&k, NULL, &cfg);
  assert_ptr_equal(cfg.ticket_key, k.ticket_key);
  assert_int_equal(cfg.ticket_keylen, UVQ_TICKET_KEYLEN);
  {
    static const char *const alpn[] = {"test"};
    uvq_tls_ctx *ctx = NULL;
    char err[256];
    cfg.alpn = alpn;
    cfg.alpnlen = 1;
    cfg.ticket_keylen = 32;
    assert_int_equal(uvq_tls_ctx_new(&ctx, 1, &cfg, NULL, err, sizeof(err)),
                     UVQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "ticket_key"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys_round_trip),
      cmocka_unit_test(test_keys_refused),
      cmocka_unit_test(test_keys_parse_format),
      cmocka_unit_test(test_keys_shared_between_servers),
      cmocka_unit_test(test_keys_apply_and_bad_ticket_key),
      cmocka_unit_test(test_keys_reload),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
