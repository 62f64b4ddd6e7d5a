/* uvquic-client: the token and session stores (--token-file,
 * --session-file), and the connection callbacks wrapped around the
 * application's: key updates, migration, the TLS hook that names a
 * certificate failure. */
#include "client/client.h"

#include <stdarg.h>

/* ------------------------------------------------------------------------ */
/* Token and session stores, connection features                            */
/* ------------------------------------------------------------------------ */

client *g_client;

kv_store g_tokens, g_sessions;
static uvq_app_callbacks g_cb;
static const uvq_app_callbacks *g_inner;

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') {
    return ch - '0';
  }
  if (ch >= 'a' && ch <= 'f') {
    return ch - 'a' + 10;
  }
  return -1;
}

static kv_entry *kv_find(kv_store *kv, const char *key, int create) {
  size_t i;
  kv_entry *ne;

  for (i = 0; i < kv->n; ++i) {
    if (strcmp(kv->e[i].key, key) == 0) {
      return &kv->e[i];
    }
  }
  if (!create) {
    return NULL;
  }
  ne = realloc(kv->e, (kv->n + 1) * sizeof(*kv->e));
  if (ne == NULL) {
    return NULL;
  }
  kv->e = ne;
  memset(&kv->e[kv->n], 0, sizeof(kv->e[0]));
  snprintf(kv->e[kv->n].key, sizeof(kv->e[0].key), "%s", key);
  return &kv->e[kv->n++];
}

/* Loads |path| if it exists; malformed lines are skipped. */
void kv_load(kv_store *kv, const char *path) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  FILE *f;

  kv->path = path;
  f = fopen(path, "r");
  if (f == NULL) {
    return;
  }
  while ((n = getline(&line, &cap, f)) > 0) {
    char *sp = strchr(line, ' ');
    size_t hlen, i;
    kv_entry *e;
    uint8_t *val;

    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
      line[--n] = '\0';
    }
    if (sp == NULL || sp == line || (size_t)(sp - line) >= sizeof(e->key)) {
      continue;
    }
    *sp++ = '\0';
    hlen = strlen(sp);
    if (hlen == 0 || hlen % 2 != 0 || (val = malloc(hlen / 2)) == NULL) {
      continue;
    }
    for (i = 0; i < hlen / 2; ++i) {
      int hi = hexval(sp[2 * i]), lo = hexval(sp[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        break;
      }
      val[i] = (uint8_t)(hi << 4 | lo);
    }
    if (i != hlen / 2 || (e = kv_find(kv, line, 1)) == NULL) {
      free(val);
      continue;
    }
    free(e->val);
    e->val = val;
    e->len = hlen / 2;
  }
  free(line);
  fclose(f);
}

/* Stores |val| under |key| and rewrites the file (mode 0600: secrets). */
static void kv_put(kv_store *kv, const char *key, const uint8_t *val,
                   size_t len) {
  kv_entry *e = kv_find(kv, key, 1);
  size_t i, total = 0, off = 0;
  char *buf;

  if (e == NULL || (buf = malloc(len)) == NULL) {
    return;
  }
  memcpy(buf, val, len);
  free(e->val);
  e->val = (uint8_t *)buf;
  e->len = len;
  if (kv->path == NULL) {
    return;
  }
  for (i = 0; i < kv->n; ++i) {
    total += strlen(kv->e[i].key) + 2 * kv->e[i].len + 2;
  }
  buf = malloc(total + 1);
  if (buf == NULL) {
    return;
  }
  for (i = 0; i < kv->n; ++i) {
    off += (size_t)sprintf(buf + off, "%s ", kv->e[i].key);
    cli_hex(buf + off, kv->e[i].val, kv->e[i].len);
    off += 2 * kv->e[i].len;
    buf[off++] = '\n';
  }
  if (cli_write_atomic(kv->path, buf, off, 0600) != 0) {
    fprintf(stderr, "uvquic-client: cannot write %s: %s\n", kv->path,
            strerror(errno));
  }
  free(buf);
}

void kv_free(kv_store *kv) {
  size_t i;

  for (i = 0; i < kv->n; ++i) {
    free(kv->e[i].val);
  }
  free(kv->e);
  kv->e = NULL;
  kv->n = 0;
}

void group_key(const group *g, char *buf, size_t len) {
  snprintf(buf, len, "%s:%s", g->host, g->port);
}

static group *group_of(uvq_conn *conn) {
  size_t i;

  for (i = 0; g_client != NULL && i < g_client->ngroups; ++i) {
    if (g_client->groups[i].conn == conn) {
      return &g_client->groups[i];
    }
  }
  return NULL;
}

__attribute__((format(printf, 2, 3))) static void vlog(group *g,
                                                       const char *fmt, ...) {
  if (g->c->cc.verbose) {
    va_list ap;
    progress_clear(g->c);
    fprintf(stderr, "uvquic-client: %s:%s: ", g->host, g->port);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
  }
}

static void on_key_update_timer(uv_timer_t *t) {
  group *g = t->data;
  int rv;

  if (g->conn == NULL) {
    return;
  }
  rv = uvq_conn_update_key(g->conn, uv_hrtime());
  if (rv == 0) {
    ++g->key_updates;
  } else if (rv != UVQ_ERR_INVALID_STATE) {
    vlog(g, "key update failed: %s", uvq_strerror(rv));
  }
}

static void on_migrate_timer(uv_timer_t *t) {
  group *g = t->data;
  uvq_conn_info info;
  struct sockaddr_storage local;
  uvq_addr bound;
  char addr[128];
  int rv;

  if (g->conn == NULL) {
    return;
  }
  /* The same local IP as now, a new port (a new socket). */
  uvq_conn_get_info(g->conn, &info);
  memcpy(&local, &info.path->local.ss, sizeof(local));
  if (local.ss_family == AF_INET6) {
    ((struct sockaddr_in6 *)&local)->sin6_port = 0;
  } else {
    ((struct sockaddr_in *)&local)->sin_port = 0;
  }
  rv = uvq_uv_conn_migrate(g->ep, g->conn, (struct sockaddr *)&local,
                           g->c->nat_rebinding, &bound);
  if (rv != 0) {
    progress_clear(g->c);
    fprintf(stderr, "uvquic-client: %s:%s: migration failed: %s\n", g->host,
            g->port, uvq_strerror(rv));
    return;
  }
  g->migrated = 1;
  cli_format_addr((struct sockaddr *)&bound.ss, addr, sizeof(addr));
  vlog(g,
       g->c->nat_rebinding ? "rebound to %s (NAT rebinding)"
                           : "migrating to %s",
       addr);
}

static void stop_timers(group *g) {
  if (g->timers) {
    uv_timer_stop(&g->ku_timer);
    uv_timer_stop(&g->mig_timer);
  }
}

/* The group connecting now, for the TLS hook (which runs inside
 * uvq_uv_connect_with, before the connection is known). */
static group *g_connecting;

/* Keeps each connection's GnuTLS session, to name a certificate failure. */
int tls_hook(uvq_conn *conn, struct gnutls_session_int *session,
             void *user_data) {
  (void)conn;
  (void)user_data;
  if (g_connecting != NULL) {
    g_connecting->tls_session = session;
  }
  return 0;
}

/* What GnuTLS found wrong with the server's certificate, in |buf|. */
static void cert_failure(gnutls_session_t session, char *buf, size_t len) {
  unsigned int status = gnutls_session_get_verify_cert_status(session);
  gnutls_datum_t out = {NULL, 0};
  char *p;

  buf[0] = '\0';
  if (status == 0 ||
      gnutls_certificate_verification_status_print(
          status, gnutls_certificate_type_get(session), &out, 0) != 0) {
    return;
  }
  p = (char *)out.data;
  if (strncmp(p, "The certificate is NOT trusted. ", 32) == 0 && p[32]) {
    p += 32; /* said already */
  }
  snprintf(buf, len, "%s", p);
  gnutls_free(out.data);
  /* "The certificate is NOT trusted. The certificate issuer is unknown."
   * reads better in lower case after a colon, without the final dot. */
  if (buf[0] == 'T') {
    buf[0] = 't';
  }
  p = buf + strlen(buf);
  while (p > buf && (p[-1] == '.' || p[-1] == ' ')) {
    *--p = '\0';
  }
}

static int w_on_established(uvq_conn *conn, void *user_data) {
  group *g = group_of(conn);

  if (g != NULL) {
    uvq_conn_info info;

    uvq_conn_get_info(conn, &info);
    g->retry = info.retry;
    g->resumed = info.resumed;
    g->early = info.early_data;
    vlog(g, "established%s", g->retry ? " after a Retry" : "");
    {
      const char *name = cli_quic_version_name(info.version);
      char v[64];
      snprintf(v, sizeof(v), "%s%s", name ? name : "?",
               info.version != g->c->settings.client_chosen_version
                   ? (g->c->settings.client_chosen_version == UVQ_QUIC_V1
                          ? " (started in v1)"
                          : " (started in v2)")
                   : "");
      vlog(g, "QUIC version %s", v);
    }
    if (g->resumed) {
      vlog(g, "session resumed%s", "");
    }
    if (g->early_attempted) {
      vlog(g, "early data %s",
           g->early == UVQ_EARLY_DATA_ACCEPTED ? "accepted" : "rejected");
    }
    if (g->c->key_update_ms) {
      uv_timer_start(&g->ku_timer, on_key_update_timer, g->c->key_update_ms,
                     g->c->key_update_ms);
    }
    if (g->c->migrate_ms) {
      uv_timer_start(&g->mig_timer, on_migrate_timer, g->c->migrate_ms, 0);
    }
  }
  return g_inner->on_established ? g_inner->on_established(conn, user_data) : 0;
}

static int w_on_new_token(uvq_conn *conn, const uint8_t *token, size_t tokenlen,
                          void *user_data) {
  group *g = group_of(conn);
  char key[300];

  (void)user_data;
  if (g != NULL && g->c->token_file != NULL) {
    group_key(g, key, sizeof(key));
    kv_put(&g_tokens, key, token, tokenlen);
    vlog(g, "stored a NEW_TOKEN in %s", g->c->token_file);
  }
  return 0;
}

static int w_on_session_ticket(uvq_conn *conn, const uint8_t *data, size_t len,
                               void *user_data) {
  group *g = group_of(conn);
  char key[300];

  (void)user_data;
  if (g != NULL && (g->c->session_file != NULL || g->c->retry_max > 0)) {
    /* --retry alone keeps it in memory: a retry resumes with 0-RTT. */
    group_key(g, key, sizeof(key));
    kv_put(&g_sessions, key, data, len);
    if (g->c->session_file != NULL) {
      vlog(g, "stored a session ticket in %s", g->c->session_file);
    } else {
      vlog(g, "kept a session ticket for a retry%s", "");
    }
  }
  return 0;
}

static int w_on_early_data_rejected(uvq_conn *conn, void *user_data) {
  group *g = group_of(conn);

  if (g != NULL) {
    g->early = UVQ_EARLY_DATA_REJECTED;
  }
  return g_inner->on_early_data_rejected
             ? g_inner->on_early_data_rejected(conn, user_data)
             : 0;
}

static void w_on_closed(uvq_conn *conn, const uvq_close_info *ci,
                        void *user_data) {
  group *g = group_of(conn);

  if (g != NULL) {
    uvq_conn_stats cst;

    stop_timers(g);
    uvq_conn_get_stats(conn, &cst);
    g->close_rx = cst.datagrams_received;
    g->cert_detail[0] = '\0';
    if (ci->error == UVQ_ERR_CERT_VERIFY && g->tls_session != NULL) {
      cert_failure(g->tls_session, g->cert_detail, sizeof(g->cert_detail));
    }
    g->tls_session = NULL;
    g->rl_held = 0; /* dropped with the connection */
    if (g->c->stats != NULL) {
      record_stats(g, conn, ci);
    }
    g->conn = NULL;
    group_set_output_conn(g);
  }
  if (g_inner->on_closed) {
    g_inner->on_closed(conn, ci, user_data);
  }
}

/* uvq_uv_connect with what the stores hold for |g| (token, resumption), and
 * our callbacks around the application's. */
int group_connect(client *c, group *g, uvq_uv_endpoint *ep,
                  const uvq_app_callbacks *inner, void *user_data) {
  uvq_connect_params params;
  kv_entry *tok = NULL, *ses = NULL;
  char key[300];
  int rv;

  g_inner = inner;
  g_cb = *inner;
  g_cb.on_established = w_on_established;
  g_cb.on_closed = w_on_closed;
  g_cb.on_new_token = w_on_new_token;
  g_cb.on_session_ticket = w_on_session_ticket;
  g_cb.on_early_data_rejected = w_on_early_data_rejected;
  g->retry = g->resumed = g->early_attempted = g->key_updates = 0;
  g->migrated = 0;
  g->early = UVQ_EARLY_DATA_NONE;
  g->ep = ep;
  if (!g->timers) {
    uv_timer_init(c->loop, &g->ku_timer);
    uv_timer_init(c->loop, &g->mig_timer);
    uv_timer_init(c->loop, &g->retry_timer);
    g->ku_timer.data = g->mig_timer.data = g->retry_timer.data = g;
    g->timers = 1;
  }
  group_key(g, key, sizeof(key));
  if (c->token_file != NULL) {
    tok = kv_find(&g_tokens, key, 0);
  }
  if (c->session_file != NULL || c->retry_max > 0) {
    ses = kv_find(&g_sessions, key, 0);
  }
  uvq_connect_params_default(&params);
  params.server_name = g->host;
  params.callbacks = &g_cb;
  params.user_data = user_data;
  if (tok != NULL) {
    params.token = tok->val;
    params.tokenlen = tok->len;
    vlog(g, "sending the stored token%s", "");
  }
  if (ses != NULL) {
    params.resumption = ses->val;
    params.resumptionlen = ses->len;
    params.early_data = 1;
  }
  g->tls_session = NULL;
  g_connecting = g;
  rv = uvq_uv_connect_with(ep, (struct sockaddr *)&g->addr, &params, &g->conn);
  if (rv == UVQ_ERR_INVALID_ARGUMENT && ses != NULL) {
    /* A stored session that no longer parses: connect without it. */
    vlog(g, "the stored session does not parse: a full handshake%s", "");
    params.resumption = NULL;
    params.resumptionlen = 0;
    params.early_data = 0;
    ses = NULL;
    rv =
        uvq_uv_connect_with(ep, (struct sockaddr *)&g->addr, &params, &g->conn);
  }
  g_connecting = NULL;
  if (rv == 0) {
    group_set_output_conn(g);
  }
  if (rv == 0 && ses != NULL) {
    uvq_conn_info info;

    /* The library attempts 0-RTT only on a ticket that allows it. */
    uvq_conn_get_info(g->conn, &info);
    g->early_attempted = info.early_data == UVQ_EARLY_DATA_ATTEMPTED;
    vlog(g, "resuming the stored session, %s",
         g->early_attempted ? "attempting 0-RTT"
                            : "without 0-RTT (its ticket does not allow it)");
  }
  return rv;
}
