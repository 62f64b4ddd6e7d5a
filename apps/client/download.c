/* uvquic-client: the downloads. One connection per HOST:PORT (a group);
 * HTTP/3 requests or hq-interop streams; outcomes, exit statuses and the
 * messages a person can act on; --retry; rounds (--connections); outputs
 * through the writer; --limit-rate; SIGINT / SIGTERM. */
#include "client/client.h"

/* ------------------------------------------------------------------------ */
/* Outcomes                                                                 */
/* ------------------------------------------------------------------------ */

static unsigned int hq_status(const uvq_hq_request *req);

void describe_hq_failure(const group *g, const uvq_hq_request *req, char *buf,
                         size_t buflen) {
  if (hq_status(req) != 0) {
    snprintf(buf, buflen, "refused by the server: %s (as HTTP %u)",
             uvq_hq_strerror(req->reset_code), hq_status(req));
  } else if (req->reset) {
    const char *name = uvq_hq_strerror(req->reset_code);
    snprintf(buf, buflen, "stream reset by server: %s (0x%" PRIx64 ")",
             name ? name : "application error", req->reset_code);
  } else if (req->error == UVQ_ERR_IO && req->sink_errno) {
    const dl *d = req->user_data;
    snprintf(buf, buflen, "writing %s failed: %s", outw_name(&d->w),
             strerror(req->sink_errno));
  } else if (g->close_plain) {
    snprintf(buf, buflen, "%s", g->close_err);
  } else {
    snprintf(buf, buflen, "%s%s%s", uvq_strerror(req->error),
             g->close_err[0] ? ": " : "", g->close_err);
  }
}

static void describe_h3_failure(const group *g, const dl *d, char *buf,
                                size_t buflen) {
  if (d->sink_errno) {
    snprintf(buf, buflen, "writing %s failed: %s", outw_name(&d->w),
             strerror(d->sink_errno));
  } else if (d->error == 0 && (d->status < 200 || d->status > 299)) {
    snprintf(buf, buflen, "HTTP status %u%s%s%s", d->status,
             d->out && d->w.target ? " (nothing saved to " : "",
             d->out && d->w.target ? d->w.target : "",
             d->out && d->w.target ? ")" : "");
  } else if (d->error == 0) {
    snprintf(buf, buflen, "body of %" PRIu64 " bytes, content-length %" PRId64,
             d->bytes, d->total);
  } else if (d->error == UVQ_H3_ERR_RESET) {
    snprintf(buf, buflen, "stream reset by server: H3 code 0x%" PRIx64,
             d->app_error);
  } else if (d->error == UVQ_H3_ERR_CONN_CLOSED && g->close_plain) {
    snprintf(buf, buflen, "%s", g->close_err);
  } else if (d->error == UVQ_H3_ERR_CONN_CLOSED && g->close_err[0]) {
    snprintf(buf, buflen, "%s%s%s",
             g->close_error ? uvq_strerror(g->close_error) : "",
             g->close_error ? ": " : "", g->close_err);
  } else {
    snprintf(buf, buflen, "%s (code 0x%" PRIx64 ")", uvq_h3_strerror(d->error),
             d->app_error);
  }
}

static void round_done(client *c);

/* A download's output is on disk (renamed into place if it succeeded) or
 * failed: a write error fails a download that had arrived whole. */
static void on_output_done(outw *w, int err, void *arg) {
  dl *d = arg;
  client *c = d->g->c;

  if (err != 0) {
    if (!d->sink_errno) {
      d->sink_errno = err;
      progress_clear(c);
      fprintf(stderr, "uvquic-client: %s: writing %s failed: %s\n",
              c->urls[d->idx].text, outw_name(w), strerror(err));
    }
    if (d->state == DL_DONE) {
      d->state = DL_FAILED;
      --c->files;
      ++c->failures;
    }
  }
  if (d->sink_errno) {
    c->write_failed = 1;
  }
  if (err == 0 && d->state != DL_DONE && w->appended > 0 && w->part != NULL) {
    progress_clear(c);
    fprintf(stderr,
            "uvquic-client: kept %" PRIu64 " bytes in %s (-C - resumes)\n",
            w->appended, w->part);
  }
  d->out = 0;
  if (--c->writers == 0 && c->active == 0) {
    round_done(c);
  }
}

/* Ends |d|'s output: commits it if the download succeeded. */
static void dl_close_output(client *c, dl *d) {
  if (d->out) {
    ++c->writers;
    outw_close(&d->w, d->state == DL_DONE, on_output_done, d);
  }
}

/* --retry: what the summary calls each transient failure. */
const char *const retry_reasons[RETRY_REASONS] = {
    "stalled",        "idle-timeout", "stateless-reset",  "path-stalled",
    "no-viable-path", "refused",      "handshake-timeout"};

/* The index in retry_reasons of why |g|'s connection ended, if a new
 * connection may fare better, else -1. A server that answers nothing at
 * all (ICMP port unreachable is ignored) times the handshake out. */
static int transient_reason(const group *g) {
  switch (g->close_error) {
  case UVQ_ERR_STALLED:
    return 0;
  case UVQ_ERR_IDLE_TIMEOUT:
    return 1;
  case UVQ_ERR_STATELESS_RESET:
    return 2;
  case UVQ_ERR_PATH_STALLED:
    return 3;
  case UVQ_ERR_PEER_TRANSPORT:
    return g->close_code == QUIC_NO_VIABLE_PATH ? 4 : -1;
  case UVQ_ERR_PEER_REFUSED:
    return g->close_hs ? -1 : 5;
  case UVQ_ERR_PORT_UNREACHABLE:
  case UVQ_ERR_HOST_UNREACHABLE:
    return 5;
  case UVQ_ERR_HANDSHAKE_TIMEOUT:
    return 6;
  default:
    return -1;
  }
}

/* Empties |d|'s output for a new start. Returns 0, or -1 with errno set
 * (a pipe or terminal cannot take back what was written). */
static int sink_restart(dl *d) { return d->out ? outw_restart(&d->w) : 0; }

/* Readies unfinished download |d| for the next connection: continue
 * after what arrived if the server takes ranges, else start over.
 * Returns 0, or -1 if the output cannot be started over (sink_errno). */
static int dl_rewind(dl *d) {
  if (d->ranges && d->status == 200 && d->bytes > 0) {
    d->offset = d->bytes;
  } else if (sink_restart(d) != 0) {
    d->sink_errno = errno;
    return -1;
  } else {
    d->offset = d->bytes = 0;
  }
  d->state = DL_PENDING;
  d->status = 0;
  d->error = 0;
  d->app_error = 0;
  d->total = -1;
  d->last_bytes = d->bytes;
  return 0;
}

static void on_retry_timer(uv_timer_t *t);

/* --retry: if |g|'s connection ended for a transient reason with
 * downloads unfinished and attempts left, rewinds those downloads and
 * schedules a new connection for them. Returns 1 if it did. */
static int group_retry(client *c, group *g) {
  int why = transient_reason(g);
  uint64_t backoff;
  size_t i, n = 0;

  if (why < 0 || g->attempts >= c->retry_max || c->proto != PROTO_H3 ||
      c->interrupted) {
    return 0;
  }
  for (i = 0; i < g->nurls; ++i) {
    dl *d = &c->urls[g->urls[i]].d;
    if (d->state != DL_DONE && d->error == UVQ_H3_ERR_CONN_CLOSED &&
        !d->sink_errno && dl_rewind(d) == 0) {
      ++n;
    }
  }
  if (n == 0) {
    return 0;
  }
  backoff = (uint64_t)RETRY_BACKOFF_MS << (g->attempts < 4 ? g->attempts : 4);
  ++g->attempts;
  ++c->retries;
  ++c->retry_why[why];
  if (!c->quiet) {
    progress_clear(c);
    fprintf(stderr,
            "uvquic-client: %s:%s: %s: %s; retry %lu of %lu in %" PRIu64
            " ms (%zu download%s)\n",
            g->host, g->port, uvq_strerror(g->close_error), g->close_err,
            g->attempts, c->retry_max, backoff, n, n == 1 ? "" : "s");
  }
  uv_timer_start(&g->retry_timer, on_retry_timer, backoff, 0);
  return 1;
}

/* The exit status for downloads that |g|'s connection took down. */
static int close_exit_code(const group *g) {
  switch (g->close_error) {
  case UVQ_ERR_PORT_UNREACHABLE:
  case UVQ_ERR_HOST_UNREACHABLE:
  case UVQ_ERR_PEER_REFUSED:
  case UVQ_ERR_REFUSED:
    return EXIT_CONNECT;
  case UVQ_ERR_CERT_VERIFY:
    return EXIT_CERT;
  case UVQ_ERR_TLS_ALERT:
  case UVQ_ERR_TLS:
  case UVQ_ERR_VERSION_NEGOTIATION:
    return g->close_hs ? EXIT_LOST : EXIT_TLS;
  case UVQ_ERR_HANDSHAKE_TIMEOUT:
    return EXIT_TIMEOUT;
  case UVQ_ERR_IDLE_TIMEOUT:
  case UVQ_ERR_STALLED:
    return g->close_hs ? EXIT_LOST : EXIT_TIMEOUT;
  default:
    return g->close_hs ? EXIT_LOST : EXIT_CONNECT;
  }
}

/* An hq-interop refusal, as the HTTP status it stands for (0: none). */
static unsigned int hq_status(const uvq_hq_request *req) {
  if (!req->reset) {
    return 0;
  }
  switch (req->reset_code) {
  case UVQ_HQ_ERR_BAD_REQUEST:
    return 400;
  case UVQ_HQ_ERR_FORBIDDEN:
    return 403;
  case UVQ_HQ_ERR_NOT_FOUND:
    return 404;
  default:
    return 0;
  }
}

/* The outcome of download |d| of |g|: 0 if it succeeded, else its exit
 * status with |why| filled. A complete response with an HTTP status of
 * 300 or more (or an hq refusal) is not saved; it fails the run (exit 22)
 * only with --fail, as curl's -f. */
static int dl_outcome(client *c, group *g, size_t i, dl *d, char *why,
                      size_t whylen) {
  if (c->proto == PROTO_HQ) {
    uvq_hq_request *req = &g->reqs[i];
    unsigned int st = hq_status(req);

    d->bytes = req->bytes;
    if (req->state == UVQ_HQ_DONE) {
      return 0;
    }
    describe_hq_failure(g, req, why, whylen);
    if (d->sink_errno) {
      return EXIT_WRITE;
    }
    if (st != 0) {
      return c->fail_http ? EXIT_HTTP : -1;
    }
    if (req->reset) {
      return EXIT_LOST;
    }
    return close_exit_code(g);
  }
  if (d->state == DL_DONE) {
    return 0;
  }
  describe_h3_failure(g, d, why, whylen);
  if (d->sink_errno) {
    return EXIT_WRITE;
  }
  if (d->error == 0 && d->status != 0 && (d->status < 200 || d->status > 299)) {
    return c->fail_http && d->status >= 400 ? EXIT_HTTP : -1;
  }
  if (d->error == UVQ_H3_ERR_CONN_CLOSED) {
    return close_exit_code(g);
  }
  return EXIT_LOST;
}

static void group_finish(client *c, group *g) {
  char why[1024];
  size_t i;

  if (group_retry(c, g)) {
    return;
  }
  for (i = 0; i < g->nurls; ++i) {
    dl *d = &c->urls[g->urls[i]].d;
    int code = dl_outcome(c, g, i, d, why, sizeof(why));

    c->bytes += d->bytes;
    if (code == 0) {
      ++c->files;
    } else {
      /* -1: an HTTP error without --fail: reported, not saved, exit 0. */
      if (code > 0) {
        ++c->failures;
        if (c->exit_code == 0) {
          c->exit_code = code;
        }
      }
      progress_clear(c);
      if (c->interrupted && d->error == UVQ_H3_ERR_CONN_CLOSED) {
        snprintf(why, sizeof(why), "interrupted after %" PRIu64 " bytes",
                 d->bytes);
      }
      fprintf(stderr, "uvquic-client: %s: %s\n", c->urls[g->urls[i]].text, why);
    }
    d->state = code == 0 ? DL_DONE : DL_FAILED;
    dl_close_output(c, d);
  }
  if (--c->active == 0 && c->writers == 0) {
    round_done(c);
  }
}

/* HOST:PORT as a person writes it ([::1]:443 for IPv6). */
static void group_hostport(const group *g, char *buf, size_t len) {
  snprintf(buf, len, strchr(g->host, ':') ? "[%s]:%s" : "%s:%s", g->host,
           g->port);
}

/* Keeps how |g|'s connection ended and a message a person can act on. */
void record_close(group *g, const uvq_close_info *ci) {
  const uvq_settings *st = &g->c->settings;
  char hp[300];
  uint64_t limit;

  g->close_err[0] = '\0';
  g->close_plain = 0;
  g->close_error = ci->error;
  g->close_code = ci->code;
  g->close_hs = ci->handshake_completed;
  if (ci->error == 0) {
    return;
  }
  group_hostport(g, hp, sizeof(hp));
  g->close_plain = 1;
  switch (ci->error) {
  case UVQ_ERR_PORT_UNREACHABLE:
    snprintf(g->close_err, sizeof(g->close_err),
             "connection refused by %s (ICMP port unreachable: nothing "
             "listens on that UDP port)",
             hp);
    return;
  case UVQ_ERR_HOST_UNREACHABLE:
    snprintf(g->close_err, sizeof(g->close_err),
             "%s is unreachable (ICMP host or network unreachable)", hp);
    return;
  case UVQ_ERR_CERT_VERIFY:
    snprintf(g->close_err, sizeof(g->close_err),
             "the certificate of %s is not trusted%s%s. Pass --ca FILE with "
             "the certificate or the CA that signed it (uvquic-server "
             "--write-cert FILE exports a server's ephemeral certificate), "
             "or -k to skip verification",
             g->host, g->cert_detail[0] ? ": " : "", g->cert_detail);
    return;
  case UVQ_ERR_TLS_ALERT: {
    const char *name =
        gnutls_alert_get_name((gnutls_alert_description_t)ci->tls_alert);
    snprintf(g->close_err, sizeof(g->close_err),
             "TLS handshake with %s failed: %s sent alert %u (%s)", hp,
             ci->origin == UVQ_CLOSE_PEER ? "the server" : "we", ci->tls_alert,
             name ? name : "unknown");
    return;
  }
  case UVQ_ERR_HANDSHAKE_TIMEOUT:
  case UVQ_ERR_IDLE_TIMEOUT:
    if (ci->handshake_completed) {
      break;
    }
    limit = st->handshake_timeout;
    if (st->idle_timeout != 0 && st->idle_timeout < limit) {
      limit = st->idle_timeout;
    }
    snprintf(g->close_err, sizeof(g->close_err),
             g->close_rx == 0
                 ? "no response from %s within %.0f s"
                 : "the handshake with %s did not complete within %.0f s",
             hp, (double)limit / 1e9);
    return;
  default:
    break;
  }
  g->close_plain = 0;
  snprintf(g->close_err, sizeof(g->close_err),
           "connection closed by %s, code 0x%" PRIx64 "%s%.*s%s",
           ci->origin == UVQ_CLOSE_PEER      ? "peer"
           : ci->origin == UVQ_CLOSE_TIMEOUT ? "timeout"
                                             : "us",
           ci->code, ci->reasonlen ? ", reason \"" : "",
           (int)(ci->reasonlen > 200 ? 200 : ci->reasonlen),
           ci->reasonlen ? (const char *)ci->reason : "",
           ci->reasonlen ? "\"" : "");
}

/* The writers of |g|'s downloads hold what they buffer on its current
 * connection (back-pressure), or on none once it closed. */
void group_set_output_conn(group *g) {
  size_t i;

  for (i = 0; i < g->nurls; ++i) {
    dl *d = &g->c->urls[g->urls[i]].d;
    if (d->out) {
      outw_set_conn(&d->w, g->conn);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* hq-interop                                                               */
/* ------------------------------------------------------------------------ */

static void hq_done_cb(uvq_hq_client *cli, const uvq_close_info *ci,
                       void *user_data) {
  group *g = user_data;

  record_close(g, ci);
  uvq_hq_client_del(cli);
  g->cli = NULL;
  group_finish(g->c, g);
}

/* ------------------------------------------------------------------------ */
/* HTTP/3                                                                   */
/* ------------------------------------------------------------------------ */

/* The content-length of a response, or -1 if absent or malformed. */
int64_t content_length(const uvq_h3_header *headers, size_t nheaders) {
  size_t i;

  for (i = 0; i < nheaders; ++i) {
    const uvq_h3_header *h = &headers[i];
    if (h->namelen == 14 && memcmp(h->name, "content-length", 14) == 0 &&
        h->valuelen > 0 && h->valuelen < 20) {
      char v[24], *end;
      unsigned long long n;
      memcpy(v, h->value, h->valuelen);
      v[h->valuelen] = '\0';
      errno = 0;
      n = strtoull(v, &end, 10);
      if (errno == 0 && *end == '\0' && v[0] != '-' && n <= INT64_MAX) {
        return (int64_t)n;
      }
    }
  }
  return -1;
}

/* The value of response field |name| (lent values are NUL-terminated), or
 * NULL. */
static const char *header_value(const uvq_h3_header *headers, size_t nheaders,
                                const char *name) {
  size_t i, len = strlen(name);

  for (i = 0; i < nheaders; ++i) {
    if (headers[i].namelen == len && memcmp(headers[i].name, name, len) == 0) {
      return headers[i].value;
    }
  }
  return NULL;
}

/* Nonzero if a 206 answers our "range: bytes=OFFSET-" (content-range
 * "bytes OFFSET-LAST/WHOLE") for the same representation: its complete
 * length is |whole|, the first response's (when that had one), so a file
 * that changed between attempts is not spliced. */
static int range_matches(const uvq_h3_header *headers, size_t nheaders,
                         uint64_t offset, int64_t whole) {
  const char *v = header_value(headers, nheaders, "content-range");
  unsigned long long start, len;
  char *end;

  if (v == NULL || strncasecmp(v, "bytes ", 6) != 0 || v[6] < '0' ||
      v[6] > '9') {
    return 0;
  }
  errno = 0;
  start = strtoull(v + 6, &end, 10);
  if (errno != 0 || *end != '-' || start != offset) {
    return 0;
  }
  if (whole < 0) {
    return 1;
  }
  end = strchr(end, '/');
  if (end == NULL || end[1] < '0' || end[1] > '9') {
    return 0;
  }
  len = strtoull(end + 1, &end, 10);
  return errno == 0 && *end == '\0' && len == (unsigned long long)whole;
}

/* -i, -I, -D: the response's header section as curl shows it. */
static void show_headers(dl *d, unsigned int status,
                         const uvq_h3_header *headers, size_t nheaders) {
  client *c = d->g->c;
  int ok = status >= 200 && status <= 299;
  size_t i, len = 32;
  char *buf, *p;

  if (c->dump == NULL && !c->include_headers) {
    return;
  }
  for (i = 0; i < nheaders; ++i) {
    len += headers[i].namelen + headers[i].valuelen + 4;
  }
  buf = malloc(len);
  if (buf == NULL) {
    return;
  }
  p = buf + snprintf(buf, len, "HTTP/3 %u\r\n", status);
  for (i = 0; i < nheaders; ++i) {
    if (headers[i].namelen > 0 && headers[i].name[0] == ':') {
      continue; /* the status line said it */
    }
    memcpy(p, headers[i].name, headers[i].namelen);
    p += headers[i].namelen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, headers[i].value, headers[i].valuelen);
    p += headers[i].valuelen;
    *p++ = '\r';
    *p++ = '\n';
  }
  *p++ = '\r';
  *p++ = '\n';
  len = (size_t)(p - buf);
  if (c->dump != NULL) {
    fwrite(buf, 1, len, c->dump);
    fflush(c->dump);
  }
  if (c->include_headers) {
    /* Where the body goes: a file only for a 2xx (a failed response
     * never creates it); else standard output. */
    if (d->out && (ok || (d->w.target == NULL && !c->fail_http))) {
      if (outw_append(&d->w, (const uint8_t *)buf, len) != 0) {
        d->sink_errno = errno;
        (void)uvq_h3_cancel(d->st);
      }
    } else if (!d->out) {
      fwrite(buf, 1, len, stdout);
      fflush(stdout);
    }
  }
  free(buf);
}

static void h3_on_response(uvq_h3_stream *st, unsigned int status,
                           const uvq_h3_header *headers, size_t nheaders,
                           void *user_data) {
  dl *d = user_data;
  const char *ranges = header_value(headers, nheaders, "accept-ranges");
  int64_t total;

  d->st = st;
  show_headers(d, status, headers, nheaders);
  d->ranges = ranges != NULL && strcasecmp(ranges, "bytes") == 0;
  total = content_length(headers, nheaders);
  if (d->offset == 0 && status == 200 && total >= 0) {
    d->whole = total; /* what a later Range request continues */
  }
  if (d->offset > 0 && status == 206 &&
      range_matches(headers, nheaders, d->offset, d->whole)) {
    /* The rest of the body: count on from the offset. */
    status = 200;
    total = total >= 0 ? (int64_t)d->offset + total : -1;
  } else if (d->offset > 0 && status == 200) {
    /* The server sent the whole body after all: start over. */
    d->offset = 0;
    if (sink_restart(d) != 0) {
      d->sink_errno = errno;
      (void)uvq_h3_cancel(st);
    }
    d->bytes = d->last_bytes = 0;
  }
  d->status = status;
  d->state = DL_ACTIVE;
  d->start = d->last_t = uv_hrtime();
  if (total >= 0 && !d->g->c->head) {
    d->total = total; /* a HEAD response has none of its body */
  }
}

/* --limit-rate: holds |len| received bytes on |g|'s connection until
 * on_rate_tick pays them out. */
static void rate_hold(group *g, size_t len) {
  if (g->c->limit_rate != 0 && g->conn != NULL) {
    uvq_conn_recv_hold(g->conn, len);
    g->rl_held += len;
  }
}

static void h3_on_data(uvq_h3_stream *st, const uint8_t *data, size_t len,
                       void *user_data) {
  dl *d = user_data;

  rate_hold(d->g, len);
  /* Only a 2xx's body is the download; an error page is not counted, and
   * written only to standard output without --fail (as curl does). */
  if (d->sink_errno) {
    return;
  }
  if (d->status < 200 || d->status > 299) {
    if (d->status >= 300 && d->out && d->w.target == NULL &&
        !d->g->c->fail_http && outw_append(&d->w, data, len) != 0) {
      d->sink_errno = errno;
      (void)uvq_h3_cancel(st);
    }
    return;
  }
  d->bytes += len;
  if (d->out && outw_append(&d->w, data, len) != 0) {
    d->sink_errno = errno;
    (void)uvq_h3_cancel(st);
  }
}

/* hq-interop bodies go through the same writer. */
static int hq_sink(uvq_hq_request *req, uvq_conn *conn, const uint8_t *data,
                   size_t len) {
  dl *d = req->user_data;

  (void)conn;
  rate_hold(d->g, len);
  if (!d->out) {
    return 0;
  }
  if (outw_append(&d->w, data, len) != 0) {
    d->sink_errno = errno;
    return -1;
  }
  return 0;
}

static void h3_on_complete(uvq_h3_stream *st, int error, uint64_t app_error,
                           void *user_data) {
  dl *d = user_data;
  group *g = d->g;

  (void)st;
  d->error = error;
  d->app_error = app_error;
  d->state = error == 0 && d->status >= 200 && d->status <= 299 &&
                     !d->sink_errno &&
                     (d->total < 0 || (uint64_t)d->total == d->bytes)
                 ? DL_DONE
                 : DL_FAILED;
  if (--g->h3_left == 0 && g->h3 != NULL) {
    /* GOAWAY, then a clean close once nothing is in flight. */
    (void)uvq_h3_shutdown(g->h3);
  }
}

static void h3_on_closed(uvq_h3_conn *h3, const uvq_close_info *ci,
                         void *user_data) {
  group *g = user_data;

  record_close(g, ci);
  uvq_h3_conn_del(h3);
  g->h3 = NULL;
  group_finish(g->c, g);
}

/* Submits every URL of |g| on its new connection. Returns 0, or an error
 * if the connection could not be started at all. */
static int h3_start(client *c, group *g, uvq_uv_endpoint *ep) {
  uvq_h3_client_config cfg;
  size_t i;
  int rv;

  uvq_h3_client_config_default(&cfg);
  cfg.user_data = g;
  cfg.on_closed = h3_on_closed;
  rv = uvq_h3_conn_client_new(&g->h3, &cfg);
  if (rv != 0) {
    g->h3 = NULL;
    return rv;
  }
  rv = group_connect(c, g, ep, uvq_h3_callbacks(), g->h3);
  if (rv != 0) {
    uvq_h3_conn_del(g->h3);
    g->h3 = NULL;
    return rv;
  }
  g->h3_left = 0;
  for (i = 0; i < g->nurls; ++i) {
    url *u = &c->urls[g->urls[i]];
    uvq_h3_request req;
    uvq_h3_header *hdrs = c->hdrs;
    char rbuf[40];

    if (u->d.state != DL_PENDING) {
      continue; /* --retry: done, or failed for good */
    }
    ++g->h3_left;
    uvq_h3_request_init(&req);
    req.headers = c->hdrs;
    req.nheaders = c->nhdrs;
    if (u->d.offset > 0) {
      /* -H's fields and the range (its slot is kept free at the end). */
      hdrs[c->nhdrs].name = "range";
      hdrs[c->nhdrs].namelen = 5;
      hdrs[c->nhdrs].value = rbuf;
      hdrs[c->nhdrs].valuelen = (size_t)snprintf(
          rbuf, sizeof(rbuf), "bytes=%" PRIu64 "-", u->d.offset);
      req.nheaders = c->nhdrs + 1;
    }
    req.method = c->method;
    if (c->has_body) {
      req.body.type = UVQ_H3_BODY_BUFFER;
      req.body.data = c->body;
      req.body.len = c->bodylen; /* borrowed: lives until exit */
    }
    req.scheme = "https";
    req.authority = u->authority;
    req.path = u->path;
    req.cb.on_response = h3_on_response;
    req.cb.on_data = h3_on_data;
    req.cb.on_complete = h3_on_complete;
    req.user_data = &u->d;
    rv = uvq_h3_submit(g->h3, &req, NULL);
    if (rv != 0) {
      /* on_complete will not fire for it. */
      u->d.error = rv;
      u->d.state = DL_FAILED;
      --g->h3_left;
    }
  }
  if (g->h3_left > 0 && g->conn != NULL) {
    /* Resuming with 0-RTT (--session-file, or a --retry after a ticket
     * came): the GETs go out as early data; otherwise they wait for the
     * handshake. */
    (void)uvq_h3_conn_start(g->h3, g->conn);
  }
  if (g->h3_left == 0) {
    (void)uvq_h3_shutdown(g->h3);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Rounds                                                                   */
/* ------------------------------------------------------------------------ */

/* Prepares |d|'s output (-o FILE, -o - for stdout, --output-dir): the
 * writer opens it when the first body byte arrives. */
static void open_output(client *c, dl *d, const char *path) {
  char full[4096];
  const char *target = c->out_file;

  d->out = 0;
  if (c->out_file == NULL && c->out_dir == NULL) {
    return;
  }
  if (target == NULL) {
    snprintf(full, sizeof(full), "%s/%s", c->out_dir, base_name(path));
    target = full;
  } else if (strcmp(target, "-") == 0) {
    target = NULL;
  }
  if (outw_init(&d->w, c->loop, target, 0) != 0) {
    fprintf(stderr, "uvquic-client: out of memory\n");
    exit(CLI_EXIT_TRANSFER);
  }
  if (c->resume && outw_part_size(&d->w) > 0) {
    /* -C -: continue the .part from its end with a Range request. */
    d->offset = d->bytes = d->last_bytes = outw_part_size(&d->w);
    outw_resume(&d->w);
  }
  d->out = 1;
}

uvq_uv_endpoint *endpoint_for(client *c, int family, int *prv) {
  uvq_uv_endpoint **pep = family == AF_INET6 ? &c->ep6 : &c->ep4;
  uvq_uv_config uvcfg;

  *prv = 0;
  if (*pep == NULL) {
    cli_uv_config(&uvcfg);
    *prv = uvq_uv_client_new(pep, c->loop, family, NULL, &uvcfg, &c->settings,
                             c->tls, c);
    if (*prv != 0) {
      *pep = NULL;
    }
  }
  return *pep;
}

/* Opens |g|'s connection for its pending downloads (all of them at the
 * start of a round; the unfinished ones on a --retry). */
static void group_start(client *c, group *g) {
  uvq_uv_endpoint *ep;
  size_t i;
  int rv;

  g->close_err[0] = '\0';
  g->close_error = 0;
  ep = endpoint_for(c, g->addr.ss_family, &rv);
  if (ep != NULL && c->proto == PROTO_H3) {
    rv = h3_start(c, g, ep);
  } else if (ep != NULL) {
    rv = uvq_hq_client_new(&g->cli, g->reqs, g->nurls, NULL, hq_done_cb, g);
    if (rv == 0) {
      rv = group_connect(c, g, ep, uvq_hq_client_callbacks(), g->cli);
      if (rv != 0) {
        uvq_hq_client_del(g->cli);
        g->cli = NULL;
      }
    }
  }
  if (rv != 0) {
    for (i = 0; i < g->nurls; ++i) {
      dl *d = &c->urls[g->urls[i]].d;
      if (c->proto == PROTO_HQ) {
        g->reqs[i].state = UVQ_HQ_FAILED;
        g->reqs[i].error = rv;
      } else if (d->state == DL_PENDING) {
        d->state = DL_FAILED;
        d->error = UVQ_H3_ERR_CONN_CLOSED;
      }
    }
    snprintf(g->close_err, sizeof(g->close_err), "cannot connect to %s:%s: %s",
             g->host, g->port, uvq_strerror(rv));
    group_finish(c, g);
  }
}

static void on_retry_timer(uv_timer_t *t) {
  group *g = t->data;

  group_start(g->c, g);
}

void start_round(client *c) {
  size_t gi, i;

  c->active = c->ngroups;
  for (gi = 0; gi < c->ngroups; ++gi) {
    group *g = &c->groups[gi];

    g->attempts = 0;
    for (i = 0; i < g->nurls; ++i) {
      url *u = &c->urls[g->urls[i]];
      memset(&u->d, 0, sizeof(u->d));
      u->d.g = g;
      u->d.idx = g->urls[i];
      u->d.total = -1;
      u->d.whole = -1;
      open_output(c, &u->d, u->path);
      if (c->proto == PROTO_HQ) {
        memset(&g->reqs[i], 0, sizeof(g->reqs[i]));
        g->reqs[i].path = u->path;
        g->reqs[i].sink_fd = -1;
        g->reqs[i].sink = hq_sink;
        g->reqs[i].user_data = &u->d;
      }
    }
    group_start(c, g);
  }
}

void on_endpoint_closed(uvq_uv_endpoint *uep, void *user_data) {
  (void)uep;
  (void)user_data;
}

/* --limit-rate: every 10 ms, pays out what the rate allows since the last
 * tick, oldest connection first. */
void on_rate_tick(uv_timer_t *t) {
  client *c = t->data;
  uint64_t now = uv_hrtime();
  size_t gi;

  c->rl_tokens += (double)c->limit_rate * (double)(now - c->rl_last) / 1e9;
  c->rl_last = now;
  for (gi = 0; gi < c->ngroups && c->rl_tokens >= 1; ++gi) {
    group *g = &c->groups[gi];
    uint64_t n = g->rl_held;

    if (n > (uint64_t)c->rl_tokens) {
      n = (uint64_t)c->rl_tokens;
    }
    if (n > 0 && g->conn != NULL) {
      uvq_conn_recv_release(g->conn, (size_t)n);
      g->rl_held -= n;
      c->rl_tokens -= (double)n;
    }
  }
  /* Unused tokens do not pile up beyond a tenth of a second. */
  if (c->rl_tokens > (double)c->limit_rate / 10) {
    c->rl_tokens = (double)c->limit_rate / 10;
  }
}

/* SIGINT / SIGTERM: close every connection (CONNECTION_CLOSE), keep the
 * partial outputs as .part, print the summary and exit 130 / 143. A second
 * signal exits at once. */
void on_signal(uv_signal_t *h, int signum) {
  client *c = h->data;
  size_t gi;

  if (c->interrupted) {
    _exit(signum == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT);
  }
  c->interrupted = signum;
  c->rounds = c->round + 1; /* no further round */
  progress_clear(c);
  if (!c->quiet) {
    fprintf(stderr, "uvquic-client: %s: closing the connections\n",
            signum == SIGTERM ? "terminated" : "interrupted");
  }
  if (c->lg) {
    /* The load generator has no outputs to keep: it just stops. */
    _exit(signum == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT);
  }
  for (gi = 0; gi < c->ngroups; ++gi) {
    group *g = &c->groups[gi];
    if (g->conn != NULL) {
      (void)uvq_conn_close(g->conn,
                           c->proto == PROTO_H3 ? UVQ_H3_REQUEST_CANCELLED : 0,
                           signum == SIGTERM ? "terminated" : "interrupted");
    } else if (g->timers && uv_is_active((uv_handle_t *)&g->retry_timer)) {
      /* Waiting to retry: no connection to close. */
      uv_timer_stop(&g->retry_timer);
      group_finish(c, g);
    }
  }
}

static void on_next(uv_timer_t *t) {
  client *c = t->data;

  if (++c->round < c->rounds) {
    start_round(c);
    return;
  }
  c->end = uv_hrtime();
  uv_close((uv_handle_t *)&c->next, NULL);
  if (c->limit_rate != 0) {
    uv_close((uv_handle_t *)&c->rl_timer, NULL);
  }
  for (size_t gi = 0; gi < c->ngroups; ++gi) {
    if (c->groups[gi].timers) {
      uv_close((uv_handle_t *)&c->groups[gi].ku_timer, NULL);
      uv_close((uv_handle_t *)&c->groups[gi].mig_timer, NULL);
      uv_close((uv_handle_t *)&c->groups[gi].retry_timer, NULL);
      c->groups[gi].timers = 0;
    }
  }
  if (c->progress) {
    progress_clear(c);
    uv_close((uv_handle_t *)&c->tick, NULL);
  }
  /* Every transfer is over and the process exits next: send the closes
   * and free at once, without waiting out the closing periods. */
  if (c->ep4) {
    uvq_uv_endpoint_close_now(c->ep4, on_endpoint_closed);
  }
  if (c->ep6) {
    uvq_uv_endpoint_close_now(c->ep6, on_endpoint_closed);
  }
}

static void round_done(client *c) {
  /* Called from inside the library's callbacks: continue from the loop. */
  uv_timer_start(&c->next, on_next, 0, 0);
}
