/* uvquic-client as a load generator: --connections N --concurrency C
 * [--hold S | --rate R --duration S]. */
#include "client/client.h"

/* ------------------------------------------------------------------------ */
/* Load generation                                                          */
/* ------------------------------------------------------------------------ */

/*
 * With --concurrency C > 1, --hold or --rate the client becomes a load
 * generator on its one client endpoint: --connections N connections in all,
 * at most C of them being set up (handshake + the GETs of every URL) at a
 * time. Without --hold or --rate each connection closes once its GETs are
 * done. With --hold S, connections that finished their GETs stay open (they
 * no longer count against C) until all N are up, then S seconds more. With
 * --rate R --duration S, once all N are up, requests are issued at R/s
 * round-robin over them for S seconds; a request's latency runs from the
 * moment it was due to the end of its response, so a stall delays the
 * clock of every request behind it (no coordinated omission).
 */

struct lreq {
  lconn *lc;
  /* Rate phase: index in c->rreqs, when it was due, when the generator
   * actually submitted it (sched + send lag) and its latency (from sched). */
  size_t idx;
  uint64_t sched;
  uint64_t sent;
  uint64_t latency;
  uint64_t bytes;
  int64_t total;
  unsigned int status;
  int rate;
  int ok;
};

struct lconn {
  client *c;
  uvq_h3_conn *h3;
  uvq_hq_client *cli;
  uvq_hq_request *reqs; /* hq: one per URL */
  lreq *gets;           /* h3: the initial GETs, one per URL */
  size_t left;          /* initial GETs not complete yet */
  int failed;
  int ready;    /* the initial GETs are over */
  int held;     /* open and counted in c->lg_held */
  int closing;  /* we shut it down */
  int conn_err; /* a GET failed because the connection closed */
};

#define LG_MAX_ERRORS 10

static void lg_error(client *c, const char *what, const char *why) {
  if (++c->lg_errors <= LG_MAX_ERRORS) {
    fprintf(stderr, "uvquic-client: %s: %s\n", what, why);
  } else if (c->lg_errors == LG_MAX_ERRORS + 1) {
    fprintf(stderr, "uvquic-client: further errors not shown\n");
  }
}

static void lg_schedule(client *c);
static void lg_phase(client *c);

static void lg_close_handle(uv_handle_t *h) {
  if (h->loop != NULL && !uv_is_closing(h)) {
    uv_close(h, NULL);
  }
}

static void lg_finish(client *c) {
  double secs;

  if (c->lg_finished) {
    return;
  }
  c->lg_finished = 1;
  c->end = uv_hrtime();
  if (!c->lg_phase_started) {
    c->lg_ready_t = c->end;
  }
  secs = (double)(c->lg_ready_t - c->start) / 1e9;
  printf("connections: %lu (concurrency %lu), %lu ok, %lu failed, set up in "
         "%.3f s: %.1f connections/s\n",
         c->rounds, c->conc, c->lg_ok, c->lg_failed, secs,
         secs > 0 ? (double)c->rounds / secs : 0.0);
  fflush(stdout);
  c->failures += c->lg_failed + c->rfailed;
  lg_close_handle((uv_handle_t *)&c->next);
  lg_close_handle((uv_handle_t *)&c->lg_kick);
  lg_close_handle((uv_handle_t *)&c->lg_hold_timer);
  lg_close_handle((uv_handle_t *)&c->tpoll);
  if (c->ep4) {
    uvq_uv_endpoint_close(c->ep4, on_endpoint_closed);
  }
  if (c->ep6) {
    uvq_uv_endpoint_close(c->ep6, on_endpoint_closed);
  }
}

/* Every connection is over, or (hold / rate) every connection is either
 * over or set up and held: move on. */
static void lg_check(client *c) {
  if (c->lg_started < c->rounds || c->lg_setup > 0) {
    return;
  }
  if (c->lg_ok + c->lg_failed == c->rounds) {
    lg_finish(c);
  } else if (!c->lg_phase_started) {
    lg_phase(c);
  }
}

static void lg_shutdown(lconn *lc) {
  if (!lc->closing && lc->h3 != NULL) {
    lc->closing = 1;
    (void)uvq_h3_shutdown(lc->h3);
  } else if (!lc->closing && lc->cli != NULL) {
    lc->closing = 1;
    (void)uvq_hq_client_close(lc->cli);
  }
}

/* Shuts down every held connection (the end of --hold or of --rate). */
static void lg_release(client *c) {
  unsigned long i;

  for (i = 0; i < c->rounds; ++i) {
    if (c->lconns[i].held) {
      lg_shutdown(&c->lconns[i]);
    }
  }
}

static void lg_on_hold_end(uv_timer_t *t) {
  client *c = t->data;

  printf("hold: released %lu connections (%lu had closed early)\n", c->lg_held,
         c->lg_failed);
  fflush(stdout);
  lg_release(c);
}

static void lg_on_response(uvq_h3_stream *st, unsigned int status,
                           const uvq_h3_header *headers, size_t nheaders,
                           void *user_data) {
  lreq *r = user_data;

  (void)st;
  r->status = status;
  r->total = content_length(headers, nheaders);
}

static void lg_on_data(uvq_h3_stream *st, const uint8_t *data, size_t len,
                       void *user_data) {
  lreq *r = user_data;

  (void)st;
  (void)data;
  if (r->status == 200) {
    r->bytes += len;
  }
}

static void lg_conn_ready(lconn *lc) {
  client *c = lc->c;

  lc->ready = 1;
  --c->lg_setup;
  if (lc->failed || (c->hold == 0 && c->rate == 0)) {
    lg_shutdown(lc);
  } else {
    lc->held = 1;
    ++c->lg_held;
  }
  lg_schedule(c);
}

static void lg_rate_done(client *c, lreq *r);

static void lg_on_complete(uvq_h3_stream *st, int error, uint64_t app_error,
                           void *user_data) {
  lreq *r = user_data;
  lconn *lc = r->lc;
  char why[256];

  (void)st;
  r->ok = error == 0 && r->status == 200 &&
          (r->total < 0 || (uint64_t)r->total == r->bytes);
  if (!r->ok && !r->rate && error == UVQ_H3_ERR_CONN_CLOSED) {
    /* on_closed reports why, with the close reason. */
    lc->conn_err = 1;
  } else if (!r->ok) {
    if (error != 0) {
      snprintf(why, sizeof(why), "%s (code 0x%" PRIx64 ")",
               uvq_h3_strerror(error), app_error);
    } else if (r->status != 200) {
      snprintf(why, sizeof(why), "HTTP status %u", r->status);
    } else {
      snprintf(why, sizeof(why),
               "body of %" PRIu64 " bytes, content-length %" PRId64, r->bytes,
               r->total);
    }
    lg_error(lc->c, r->rate ? "rate request" : "GET", why);
  }
  if (r->rate) {
    lg_rate_done(lc->c, r);
    return;
  }
  if (!r->ok) {
    lc->failed = 1;
  }
  if (--lc->left == 0) {
    lg_conn_ready(lc);
  }
}

/* A connection ended: count it, start the next. */
static void lg_conn_over(lconn *lc, const uvq_close_info *ci, int ok) {
  client *c = lc->c;
  char why[1024];

  if (!lc->ready) {
    --c->lg_setup;
    ok = 0;
  }
  if (lc->held) {
    lc->held = 0;
    --c->lg_held;
  }
  if (ok && !lc->closing && (lc->h3 != NULL || lc->cli != NULL)) {
    /* Nobody asked it to close (idle timeout, the server went away). */
    ok = 0;
  }
  if (!ok && (!lc->failed || lc->conn_err)) {
    /* (A GET that failed otherwise was reported already.) */
    group tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.c = c;
    snprintf(tmp.host, sizeof(tmp.host), "%s", c->groups[0].host);
    snprintf(tmp.port, sizeof(tmp.port), "%s", c->groups[0].port);
    record_close(&tmp, ci);
    snprintf(why, sizeof(why), "%s",
             tmp.close_err[0] ? tmp.close_err
                              : "connection closed before its GETs completed");
    lg_error(c, lc->closing ? "connection" : "connection closed early", why);
  }
  if (ok) {
    ++c->lg_ok;
  } else {
    ++c->lg_failed;
  }
  lg_schedule(c);
}

static void lg_on_closed(uvq_h3_conn *h3, const uvq_close_info *ci,
                         void *user_data) {
  lconn *lc = user_data;

  lg_conn_over(lc, ci, !lc->failed);
  uvq_h3_conn_del(h3);
  lc->h3 = NULL;
}

/* Nonzero if every hq request of |lc| completed. */
static int lg_hq_all_done(const lconn *lc) {
  size_t i;

  for (i = 0; i < lc->c->nurls; ++i) {
    if (lc->reqs[i].state != UVQ_HQ_DONE) {
      return 0;
    }
  }
  return 1;
}

/* --hold: the hq requests are over and the connection stays open. */
static void lg_hq_ready(uvq_hq_client *cli, void *user_data) {
  lconn *lc = user_data;
  size_t i;

  (void)cli;
  for (i = 0; i < lc->c->nurls; ++i) {
    if (lc->reqs[i].state != UVQ_HQ_DONE) {
      group none;
      char why[256];

      none.close_err[0] = '\0';
      describe_hq_failure(&none, &lc->reqs[i], why, sizeof(why));
      lc->failed = 1;
      lg_error(lc->c, "GET", why);
      break;
    }
  }
  lg_conn_ready(lc);
}

static void lg_hq_done(uvq_hq_client *cli, const uvq_close_info *ci,
                       void *user_data) {
  lconn *lc = user_data;
  client *c = lc->c;
  int ok = lg_hq_all_done(lc) && !lc->failed;

  if (c->hold == 0) {
    /* Without --hold the hq client closes once its requests are over. */
    lc->ready = 1;
    lc->closing = 1;
    --c->lg_setup;
  }
  lg_conn_over(lc, ci, ok);
  uvq_hq_client_del(cli);
  lc->cli = NULL;
}

/* Starts connection |lc|. Returns 0, or an error (already counted). */
static int lg_start(client *c, lconn *lc) {
  group *g = &c->groups[0];
  uvq_uv_endpoint *ep;
  size_t i;
  int rv;

  lc->c = c;
  ++c->lg_started;
  ++c->lg_setup;
  ep = endpoint_for(c, g->addr.ss_family, &rv);
  if (ep == NULL) {
    goto fail;
  }
  if (c->proto == PROTO_HQ) {
    for (i = 0; i < c->nurls; ++i) {
      memset(&lc->reqs[i], 0, sizeof(lc->reqs[i]));
      lc->reqs[i].path = c->urls[i].path;
      lc->reqs[i].sink_fd = -1;
    }
    rv = uvq_hq_client_new(&lc->cli, lc->reqs, c->nurls, NULL, lg_hq_done, lc);
    if (rv != 0) {
      goto fail;
    }
    if (c->hold) {
      uvq_hq_client_hold(lc->cli, lg_hq_ready);
    }
    rv = uvq_uv_connect(ep, (struct sockaddr *)&g->addr, g->host,
                        uvq_hq_client_callbacks(), lc->cli, NULL);
    if (rv != 0) {
      uvq_hq_client_del(lc->cli);
      lc->cli = NULL;
      goto fail;
    }
    return 0;
  }
  {
    uvq_h3_client_config cfg;
    uvq_h3_client_config_default(&cfg);
    cfg.user_data = lc;
    cfg.on_closed = lg_on_closed;
    rv = uvq_h3_conn_client_new(&lc->h3, &cfg);
    if (rv != 0) {
      lc->h3 = NULL;
      goto fail;
    }
  }
  rv = uvq_uv_connect(ep, (struct sockaddr *)&g->addr, g->host,
                      uvq_h3_callbacks(), lc->h3, NULL);
  if (rv != 0) {
    uvq_h3_conn_del(lc->h3);
    lc->h3 = NULL;
    goto fail;
  }
  lc->left = c->nurls;
  for (i = 0; i < c->nurls; ++i) {
    lreq *r = &lc->gets[i];
    uvq_h3_request req;

    r->lc = lc;
    r->total = -1;
    uvq_h3_request_init(&req);
    req.method = "GET";
    req.scheme = "https";
    req.authority = c->urls[i].authority;
    req.path = c->urls[i].path;
    req.cb.on_response = lg_on_response;
    req.cb.on_data = lg_on_data;
    req.cb.on_complete = lg_on_complete;
    req.user_data = r;
    if (uvq_h3_submit(lc->h3, &req, NULL) != 0) {
      lc->failed = 1;
      --lc->left;
    }
  }
  if (lc->left == 0) {
    lg_conn_ready(lc);
  }
  return 0;

fail:
  --c->lg_setup;
  ++c->lg_failed;
  lg_error(c, "cannot start a connection", uvq_strerror(rv));
  return rv;
}

/* Opens connections while fewer than --concurrency are being set up. */
static void lg_on_kick(uv_timer_t *t) {
  client *c = t->data;

  while (c->lg_started < c->rounds && c->lg_setup < c->conc) {
    (void)lg_start(c, &c->lconns[c->lg_started]);
  }
  lg_check(c);
}

/* Continue from the loop, not from inside the library's callbacks. */
static void lg_schedule(client *c) {
  if (!c->lg_finished) {
    uv_timer_start(&c->lg_kick, lg_on_kick, 0, 0);
  }
}

static uint64_t lg_due(const client *c, size_t i) {
  return c->r0 + (uint64_t)((double)i * 1e9 / c->rate);
}

static void lg_arm(client *c) {
  struct itimerspec its;
  uint64_t t = lg_due(c, c->rnext);

  memset(&its, 0, sizeof(its));
  its.it_value.tv_sec = (time_t)(t / 1000000000u);
  its.it_value.tv_nsec = (long)(t % 1000000000u);
  (void)timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void lg_issue(client *c, size_t i, uint64_t now) {
  lreq *r = &c->rreqs[i];
  lconn *lc = c->rconns[i % c->nrconns];
  const url *u = &c->urls[i % c->nurls];
  uvq_h3_request req;

  r->lc = lc;
  r->idx = i;
  r->rate = 1;
  r->total = -1;
  r->sched = lg_due(c, i);
  r->sent = now;
  if (now - r->sched > c->max_lag) {
    c->max_lag = now - r->sched;
  }
  uvq_h3_request_init(&req);
  req.method = "GET";
  req.scheme = "https";
  req.authority = u->authority;
  req.path = u->path;
  req.cb.on_response = lg_on_response;
  req.cb.on_data = lg_on_data;
  req.cb.on_complete = lg_on_complete;
  req.user_data = r;
  if (lc->h3 == NULL || uvq_h3_submit(lc->h3, &req, NULL) != 0) {
    lg_error(c, "rate request", "cannot submit (connection gone)");
    r->ok = 0;
    lg_rate_done(c, r);
  }
}

static void lg_on_rate_timer(uv_poll_t *h, int status, int events) {
  client *c = h->data;
  uint64_t expirations, now;

  (void)status;
  (void)events;
  if (read(c->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN) {
    return;
  }
  now = uv_hrtime();
  while (c->rnext < c->nrreqs && lg_due(c, c->rnext) <= now) {
    lg_issue(c, c->rnext++, now);
  }
  if (c->rnext < c->nrreqs) {
    lg_arm(c);
  } else {
    uv_poll_stop(&c->tpoll);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p) {
  size_t k;

  if (n == 0) {
    return 0;
  }
  k = (size_t)(p * (double)n + 0.999999);
  k = k == 0 ? 0 : k - 1;
  return (double)v[k < n ? k : n - 1] / 1e3;
}

/* Sorts |v| (|n| values, ns) and prints its p50 p99 p999 max in us. */
static void print_pcts(const char *what, uint64_t *v, size_t n) {
  qsort(v, n, sizeof(*v), cmp_u64);
  printf("%s p50 %.0f p99 %.0f p999 %.0f max %.0f", what, pct(v, n, 0.5),
         pct(v, n, 0.99), pct(v, n, 0.999), n ? (double)v[n - 1] / 1e3 : 0.0);
}

static void lg_rate_done(client *c, lreq *r) {
  uint64_t *lat;
  size_t i, n = 0;

  r->latency = uv_hrtime() - r->sched;
  if (!r->ok) {
    ++c->rfailed;
  }
  if (++c->rdone < c->nrreqs) {
    return;
  }
  lat = malloc(c->nrreqs * sizeof(*lat));
  if (lat != NULL) {
    /* Failed requests count too, with the time they took to fail. */
    for (i = 0; i < c->nrreqs; ++i) {
      lat[n++] = c->rreqs[i].latency;
    }
    qsort(lat, n, sizeof(*lat), cmp_u64);
  }
  printf("rate: %.0f req/s for %.1f s on %zu connections: %zu requests, %zu "
         "ok, %zu failed; latency us p50 %.0f p90 %.0f p99 %.0f p999 %.0f "
         "max %.0f; max send lag %.0f us\n",
         c->rate, (double)c->duration / 1e9, c->nrconns, c->nrreqs,
         c->nrreqs - c->rfailed, c->rfailed, pct(lat, n, 0.5), pct(lat, n, 0.9),
         pct(lat, n, 0.99), pct(lat, n, 0.999),
         n ? (double)lat[n - 1] / 1e3 : 0.0, (double)c->max_lag / 1e3);
  if (lat != NULL) {
    /* The latency split in two: how late the generator itself submitted
     * each request (its timer's wake-up, its own loop), and the rest, from
     * the submission to the response's end (both stacks, the kernel, the
     * server). A tail that is all send lag is the generator's or the
     * scheduler's, not the server's. */
    for (i = 0; i < n; ++i) {
      lat[i] = c->rreqs[i].sent - c->rreqs[i].sched;
    }
    print_pcts("rate: split us: send lag", lat, n);
    for (i = 0; i < n; ++i) {
      lat[i] = c->rreqs[i].latency - (c->rreqs[i].sent - c->rreqs[i].sched);
    }
    print_pcts("; service", lat, n);
    printf("\n");
  }
  fflush(stdout);
  free(lat);
  lg_release(c);
}

/* Every connection is set up (or failed): the hold or the rate phase. */
static void lg_phase(client *c) {
  unsigned long i;

  c->lg_phase_started = 1;
  c->lg_ready_t = uv_hrtime();
  if (c->hold) {
    printf("hold: %lu connections established and idle (%lu failed) after "
           "%.3f s; holding %.1f s\n",
           c->lg_held, c->lg_failed, (double)(c->lg_ready_t - c->start) / 1e9,
           (double)c->hold / 1e9);
    fflush(stdout);
    uv_timer_start(&c->lg_hold_timer, lg_on_hold_end, c->hold / 1000000u, 0);
    return;
  }
  /* --rate */
  /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
  c->rconns = calloc(c->rounds, sizeof(*c->rconns));
  c->nrreqs = (size_t)(c->rate * (double)c->duration / 1e9);
  c->rreqs = calloc(c->nrreqs ? c->nrreqs : 1, sizeof(*c->rreqs));
  if (c->rconns == NULL || c->rreqs == NULL) {
    lg_error(c, "rate phase", "out of memory");
    lg_release(c);
    return;
  }
  for (i = 0; i < c->rounds; ++i) {
    if (c->lconns[i].held) {
      c->rconns[c->nrconns++] = &c->lconns[i];
    }
  }
  if (c->nrconns == 0 || c->nrreqs == 0) {
    lg_release(c);
    return;
  }
  c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (c->tfd < 0 || uv_poll_init(c->loop, &c->tpoll, c->tfd) != 0) {
    lg_error(c, "rate phase", "cannot create a timerfd");
    lg_release(c);
    return;
  }
  c->tpoll.data = c;
  uv_poll_start(&c->tpoll, UV_READABLE, lg_on_rate_timer);
  /* uv_hrtime() is CLOCK_MONOTONIC, the timerfd's clock. */
  c->r0 = uv_hrtime() + 1000000u;
  lg_arm(c);
}

/* Allocates the load generator's state and opens the first connections. */
int lg_begin(client *c) {
  unsigned long i;

  c->lconns = calloc(c->rounds, sizeof(*c->lconns));
  if (c->proto == PROTO_H3) {
    c->lgets = calloc(c->rounds * c->nurls, sizeof(*c->lgets));
  } else {
    c->lgets = NULL;
  }
  if (c->lconns == NULL || (c->proto == PROTO_H3 && c->lgets == NULL)) {
    return -1;
  }
  for (i = 0; i < c->rounds; ++i) {
    if (c->proto == PROTO_H3) {
      c->lconns[i].gets = &c->lgets[i * c->nurls];
    } else {
      c->lconns[i].reqs = calloc(c->nurls, sizeof(*c->lconns[i].reqs));
      if (c->lconns[i].reqs == NULL) {
        return -1;
      }
    }
  }
  uv_timer_init(c->loop, &c->lg_kick);
  uv_timer_init(c->loop, &c->lg_hold_timer);
  c->lg_kick.data = c->lg_hold_timer.data = c;
  c->tfd = -1;
  lg_schedule(c);
  return 0;
}

void lg_end(client *c) {
  unsigned long i;

  if (c->tfd >= 0) {
    close(c->tfd);
  }
  for (i = 0; c->lconns != NULL && i < c->rounds; ++i) {
    free(c->lconns[i].reqs);
  }
  free(c->lconns);
  free(c->lgets);
  free(c->rconns);
  free(c->rreqs);
}
