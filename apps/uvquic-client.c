/*
 * uvquic-client: downloads files over HTTP/3 (default) or hq-interop.
 *
 *   uvquic-client [--alpn h3|hq-interop] [-k|--insecure] [--ca FILE]
 *                 [-o FILE | --output-dir DIR] [--quiet] [--connections N]
 *                 [--initial-rtt MS] URL...
 *
 * URL is https://HOST[:PORT]/path. URLs to the same HOST:PORT share one
 * connection and are requested concurrently (one stream each; requests
 * beyond the server's stream limit wait for more credit); different hosts
 * get their own connections on the same client socket (one socket per
 * address family). With --connections N the whole set is fetched N times,
 * one round after another, each round on new connections. --initial-rtt
 * sets the RTT assumed before the first sample (default: the library's).
 *
 * Over HTTP/3 a URL succeeds when its response has status 200 and its body
 * arrives completely; any other status fails that URL (its body is not
 * written). When stderr is a terminal, a progress bar per running download
 * is redrawn up to 10 times a second; a summary line ends every run;
 * --quiet silences both. Exit status: 0 if every download completed, 1 if
 * one failed, 2 for bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_h3.h"
#include "uvquic/uvquic_uv.h"

#include "app/hq.h"
#include "cli.h"

/* Longest path we send; the hq limit, kept for both protocols. */
#define MAX_PATH (UVQ_HQ_MAX_REQUEST - 6)
/* Progress redraw period (ms) and the most bars drawn at once. */
#define PROGRESS_MS 100
#define PROGRESS_MAX_BARS 8

typedef enum proto { PROTO_H3 = 0, PROTO_HQ } proto;

typedef struct client client;
typedef struct group group;

typedef enum dl_state {
  DL_PENDING = 0,
  DL_ACTIVE,
  DL_DONE,
  DL_FAILED
} dl_state;

/* One URL's download in the current round. */
typedef struct dl {
  group *g;
  size_t idx;
  int sink_fd;
  dl_state state;
  uint64_t bytes;
  /* content-length, or -1 when unknown (always for hq). */
  int64_t total;
  unsigned int status;
  /* h3: the outcome of on_complete; sink_errno if writing failed. */
  int error;
  uint64_t app_error;
  int sink_errno;
  /* Progress: when it started and the smoothed rate. */
  uint64_t start;
  uint64_t last_t;
  uint64_t last_bytes;
  double rate;
} dl;

typedef struct url {
  const char *text;
  char host[256];
  char port[16];
  char authority[280];
  const char *path;
  size_t group;
  dl d;
} url;

struct group {
  client *c;
  char host[256];
  char port[16];
  struct sockaddr_storage addr;
  size_t *urls;
  size_t nurls;
  /* hq-interop */
  uvq_hq_request *reqs;
  uvq_hq_client *cli;
  /* HTTP/3 */
  uvq_h3_conn *h3;
  size_t h3_left;
  /* How the last connection ended, when it failed. */
  char close_err[384];
};

struct client {
  uv_loop_t *loop;
  uvq_tls_ctx *tls;
  uvq_settings settings;
  uvq_uv_endpoint *ep4, *ep6;
  proto proto;
  url *urls;
  size_t nurls;
  group *groups;
  size_t ngroups;
  const char *out_file;
  const char *out_dir;
  int quiet;
  unsigned long rounds, round;
  size_t active;
  uv_timer_t next;
  uint64_t start, end;
  uint64_t files, bytes, failures;
  /* Progress bars (stderr is a terminal and not --quiet). */
  int progress;
  uv_timer_t tick;
  int drawn;
};

static void fail_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "uvquic-client: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(CLI_EXIT_USAGE);
}

static void usage(FILE *f) {
  fprintf(f, "usage: uvquic-client [--alpn h3|hq-interop] [-k|--insecure] "
             "[--ca FILE] [-o FILE | --output-dir DIR] [--quiet] "
             "[--connections N] [--initial-rtt MS] "
             "https://HOST:PORT/path...\n");
}

/* Splits https://HOST[:PORT]/path into |u|. */
static int parse_url(url *u, const char *text, char *err, size_t errlen) {
  const char *p, *slash;
  char hostport[300];
  size_t n;

  u->text = text;
  if (strncasecmp(text, "https://", 8) != 0) {
    snprintf(err, errlen, "bad URL \"%s\": must start with https://", text);
    return -1;
  }
  p = text + 8;
  slash = strchr(p, '/');
  n = slash ? (size_t)(slash - p) : strlen(p);
  if (n == 0 || n >= sizeof(hostport)) {
    snprintf(err, errlen, "bad URL \"%s\": no host", text);
    return -1;
  }
  memcpy(hostport, p, n);
  hostport[n] = '\0';
  if (cli_split_hostport(hostport, "443", u->host, sizeof(u->host), u->port,
                         sizeof(u->port), err, errlen) != 0) {
    char inner[1024];
    snprintf(inner, sizeof(inner), "%s", err);
    snprintf(err, errlen, "bad URL \"%.200s\": %.300s", text, inner);
    return -1;
  }
  if (strcmp(u->port, "0") == 0) {
    snprintf(err, errlen, "bad URL \"%s\": port 0", text);
    return -1;
  }
  /* :authority is the URL's own HOST[:PORT] text. */
  if (n >= sizeof(u->authority)) {
    snprintf(err, errlen, "bad URL \"%.200s\": host too long", text);
    return -1;
  }
  memcpy(u->authority, hostport, n + 1);
  u->path = slash ? slash : "/";
  if (strpbrk(u->path, "\r\n") != NULL || strlen(u->path) > MAX_PATH) {
    snprintf(err, errlen, "bad URL \"%s\": bad path", text);
    return -1;
  }
  return 0;
}

static const char *base_name(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  return *b ? b : "index.html";
}

/* ------------------------------------------------------------------------ */
/* Progress                                                                 */
/* ------------------------------------------------------------------------ */

static void human_bytes(char *buf, size_t len, double v) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;

  while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
    v /= 1024;
    ++u;
  }
  if (u == 0) {
    snprintf(buf, len, "%.0f %s", v, units[u]);
  } else {
    snprintf(buf, len, "%.1f %s", v, units[u]);
  }
}

static void human_eta(char *buf, size_t len, double secs) {
  unsigned long s;

  if (!(secs >= 0) || secs > 359999) {
    snprintf(buf, len, "--:--");
    return;
  }
  s = (unsigned long)(secs + 0.5);
  if (s >= 3600) {
    snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
  } else {
    snprintf(buf, len, "%02lu:%02lu", s / 60, s % 60);
  }
}

/* Erases the bars drawn last (the cursor is below them). */
static void progress_clear(client *c) {
  if (c->drawn > 0) {
    fprintf(stderr, "\033[%dA\033[J", c->drawn);
    c->drawn = 0;
    fflush(stderr);
  }
}

/* The hq client keeps its counters in its request array. */
static void dl_sync(group *g, size_t i) {
  client *c = g->c;
  dl *d = &c->urls[g->urls[i]].d;

  if (c->proto == PROTO_HQ && g->reqs != NULL) {
    const uvq_hq_request *req = &g->reqs[i];
    d->bytes = req->bytes;
    if (req->state == UVQ_HQ_ACTIVE && d->state == DL_PENDING) {
      d->state = DL_ACTIVE;
      d->start = d->last_t = uv_hrtime();
    }
  }
}

static void progress_line(client *c, dl *d, uint64_t now, int cols) {
  const char *name = base_name(c->urls[d->idx].path);
  char line[512], got[32], tot[32], rate[32], eta[32], bar[128];
  double dt = (double)(now - d->last_t) / 1e9;
  int barw, fill, n;

  if (dt >= 0.05) {
    double inst = (double)(d->bytes - d->last_bytes) / dt;
    /* Smooth over about a second so the figures do not flicker. */
    d->rate =
        d->last_bytes == 0 && d->rate == 0 ? inst : 0.7 * d->rate + 0.3 * inst;
    d->last_bytes = d->bytes;
    d->last_t = now;
  }
  human_bytes(got, sizeof(got), (double)d->bytes);
  human_bytes(rate, sizeof(rate), d->rate);
  barw = cols - 72;
  if (barw > 40) {
    barw = 40;
  }
  if (barw < 0) {
    barw = 0;
  }
  if (d->total >= 0) {
    double frac = d->total ? (double)d->bytes / (double)d->total : 1.0;
    fill = (int)(frac * barw);
    if (fill > barw) {
      fill = barw;
    }
    human_bytes(tot, sizeof(tot), (double)d->total);
    human_eta(eta, sizeof(eta),
              d->rate > 0 ? (double)((uint64_t)d->total - d->bytes) / d->rate
                          : -1);
  } else {
    fill = 0;
    snprintf(tot, sizeof(tot), "?");
    snprintf(eta, sizeof(eta), "--:--");
  }
  memset(bar, '#', (size_t)fill);
  memset(bar + fill, '-', (size_t)(barw - fill));
  bar[barw] = '\0';
  n = snprintf(line, sizeof(line), "%-20.20s %s%s%s %10s / %-10s %10s/s ETA %s",
               name, barw ? "[" : "", bar, barw ? "]" : "", got, tot, rate,
               eta);
  /* Never wrap: the redraw counts lines. */
  if (n >= cols) {
    line[cols > 1 ? cols - 1 : 0] = '\0';
  }
  fprintf(stderr, "%s\n", line);
}

static void progress_draw(client *c) {
  uint64_t now = uv_hrtime();
  struct winsize ws;
  size_t gi, i, shown = 0, more = 0;
  int cols = 80;

  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    cols = ws.ws_col;
  }
  progress_clear(c);
  for (gi = 0; gi < c->ngroups; ++gi) {
    group *g = &c->groups[gi];
    for (i = 0; i < g->nurls; ++i) {
      dl *d = &c->urls[g->urls[i]].d;
      dl_sync(g, i);
      if (d->state != DL_ACTIVE) {
        continue;
      }
      if (shown < PROGRESS_MAX_BARS) {
        progress_line(c, d, now, cols);
        ++shown;
        ++c->drawn;
      } else {
        ++more;
      }
    }
  }
  if (more) {
    fprintf(stderr, "... and %zu more downloads running\n", more);
    ++c->drawn;
  }
  fflush(stderr);
}

static void on_tick(uv_timer_t *t) { progress_draw(t->data); }

/* ------------------------------------------------------------------------ */
/* Outcomes                                                                 */
/* ------------------------------------------------------------------------ */

static void describe_hq_failure(const group *g, const uvq_hq_request *req,
                                char *buf, size_t buflen) {
  if (req->reset) {
    const char *name = uvq_hq_strerror(req->reset_code);
    snprintf(buf, buflen, "stream reset by server: %s (0x%" PRIx64 ")",
             name ? name : "application error", req->reset_code);
  } else if (req->error == UVQ_ERR_IO && req->sink_errno) {
    snprintf(buf, buflen, "writing the output failed: %s",
             strerror(req->sink_errno));
  } else {
    snprintf(buf, buflen, "%s%s%s", uvq_strerror(req->error),
             g->close_err[0] ? ": " : "", g->close_err);
  }
}

static void describe_h3_failure(const group *g, const dl *d, char *buf,
                                size_t buflen) {
  if (d->sink_errno) {
    snprintf(buf, buflen, "writing the output failed: %s",
             strerror(d->sink_errno));
  } else if (d->error == 0 && d->status != 200) {
    snprintf(buf, buflen, "HTTP status %u", d->status);
  } else if (d->error == 0) {
    snprintf(buf, buflen, "body of %" PRIu64 " bytes, content-length %" PRId64,
             d->bytes, d->total);
  } else if (d->error == UVQ_H3_ERR_RESET) {
    snprintf(buf, buflen, "stream reset by server: H3 code 0x%" PRIx64,
             d->app_error);
  } else if (d->error == UVQ_H3_ERR_CONN_CLOSED && g->close_err[0]) {
    snprintf(buf, buflen, "%s", g->close_err);
  } else {
    snprintf(buf, buflen, "%s (code 0x%" PRIx64 ")", uvq_h3_strerror(d->error),
             d->app_error);
  }
}

static void close_sinks(group *g) {
  client *c = g->c;
  size_t i;

  for (i = 0; i < g->nurls; ++i) {
    dl *d = &c->urls[g->urls[i]].d;
    if (d->sink_fd >= 0) {
      close(d->sink_fd);
      d->sink_fd = -1;
    }
  }
}

static void round_done(client *c);

static void group_finish(client *c, group *g) {
  char why[512];
  size_t i;

  for (i = 0; i < g->nurls; ++i) {
    dl *d = &c->urls[g->urls[i]].d;
    int ok;

    if (c->proto == PROTO_HQ) {
      uvq_hq_request *req = &g->reqs[i];
      d->bytes = req->bytes;
      ok = req->state == UVQ_HQ_DONE;
      if (!ok) {
        describe_hq_failure(g, req, why, sizeof(why));
      }
    } else {
      ok = d->state == DL_DONE;
      if (!ok) {
        describe_h3_failure(g, d, why, sizeof(why));
      }
    }
    c->bytes += d->bytes;
    if (ok) {
      ++c->files;
    } else {
      ++c->failures;
      progress_clear(c);
      fprintf(stderr, "uvquic-client: %s: %s\n", c->urls[g->urls[i]].text, why);
    }
    d->state = ok ? DL_DONE : DL_FAILED;
  }
  close_sinks(g);
  if (--c->active == 0) {
    round_done(c);
  }
}

static void record_close(group *g, const uvq_close_info *ci) {
  g->close_err[0] = '\0';
  if (ci->error != 0) {
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

static void h3_on_response(uvq_h3_stream *st, unsigned int status,
                           const uvq_h3_header *headers, size_t nheaders,
                           void *user_data) {
  dl *d = user_data;
  size_t i;

  (void)st;
  d->status = status;
  d->state = DL_ACTIVE;
  d->start = d->last_t = uv_hrtime();
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
        d->total = (int64_t)n;
      }
    }
  }
}

static void h3_on_data(uvq_h3_stream *st, const uint8_t *data, size_t len,
                       void *user_data) {
  dl *d = user_data;

  /* Only a 200's body is the download; an error page is not counted. */
  if (d->status != 200 || d->sink_errno) {
    return;
  }
  d->bytes += len;
  if (d->sink_fd < 0) {
    return;
  }
  while (len > 0) {
    ssize_t n = write(d->sink_fd, data, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      d->sink_errno = errno;
      (void)uvq_h3_cancel(st);
      return;
    }
    data += n;
    len -= (size_t)n;
  }
}

static void h3_on_complete(uvq_h3_stream *st, int error, uint64_t app_error,
                           void *user_data) {
  dl *d = user_data;
  group *g = d->g;

  (void)st;
  d->error = error;
  d->app_error = app_error;
  d->state = error == 0 && d->status == 200 && !d->sink_errno &&
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
  uvq_h3_client_del(h3);
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
  rv = uvq_h3_client_new(&g->h3, &cfg);
  if (rv != 0) {
    g->h3 = NULL;
    return rv;
  }
  rv = uvq_connect(ep, (struct sockaddr *)&g->addr, g->host, uvq_h3_callbacks(),
                   g->h3, NULL);
  if (rv != 0) {
    uvq_h3_client_del(g->h3);
    g->h3 = NULL;
    return rv;
  }
  g->h3_left = g->nurls;
  for (i = 0; i < g->nurls; ++i) {
    url *u = &c->urls[g->urls[i]];
    uvq_h3_request req;

    uvq_h3_request_init(&req);
    req.method = "GET";
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
  if (g->h3_left == 0) {
    (void)uvq_h3_shutdown(g->h3);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Rounds                                                                   */
/* ------------------------------------------------------------------------ */

static int open_sink(client *c, const char *path) {
  char full[4096];
  const char *target = c->out_file;
  int fd;

  if (c->out_file == NULL && c->out_dir == NULL) {
    return -1;
  }
  if (target == NULL) {
    snprintf(full, sizeof(full), "%s/%s", c->out_dir, base_name(path));
    target = full;
  }
  fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    progress_clear(c);
    fprintf(stderr, "uvquic-client: cannot open output %s: %s\n", target,
            strerror(errno));
    exit(CLI_EXIT_USAGE);
  }
  return fd;
}

static uvq_uv_endpoint *endpoint_for(client *c, int family, int *prv) {
  uvq_uv_endpoint **pep = family == AF_INET6 ? &c->ep6 : &c->ep4;

  *prv = 0;
  if (*pep == NULL) {
    *prv =
        uvq_uv_client_new(pep, c->loop, family, NULL, &c->settings, c->tls, c);
    if (*prv != 0) {
      *pep = NULL;
    }
  }
  return *pep;
}

static void start_round(client *c) {
  size_t gi, i;

  c->active = c->ngroups;
  for (gi = 0; gi < c->ngroups; ++gi) {
    group *g = &c->groups[gi];
    uvq_uv_endpoint *ep;
    int rv;

    g->close_err[0] = '\0';
    for (i = 0; i < g->nurls; ++i) {
      url *u = &c->urls[g->urls[i]];
      memset(&u->d, 0, sizeof(u->d));
      u->d.g = g;
      u->d.idx = g->urls[i];
      u->d.total = -1;
      u->d.sink_fd = open_sink(c, u->path);
      if (c->proto == PROTO_HQ) {
        memset(&g->reqs[i], 0, sizeof(g->reqs[i]));
        g->reqs[i].path = u->path;
        g->reqs[i].sink_fd = u->d.sink_fd;
      }
    }
    ep = endpoint_for(c, g->addr.ss_family, &rv);
    if (ep != NULL && c->proto == PROTO_H3) {
      rv = h3_start(c, g, ep);
    } else if (ep != NULL) {
      rv = uvq_hq_client_new(&g->cli, g->reqs, g->nurls, NULL, hq_done_cb, g);
      if (rv == 0) {
        rv = uvq_connect(ep, (struct sockaddr *)&g->addr, g->host,
                         uvq_hq_client_callbacks(), g->cli, NULL);
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
        } else {
          d->state = DL_FAILED;
          d->error = UVQ_H3_ERR_CONN_CLOSED;
        }
      }
      snprintf(g->close_err, sizeof(g->close_err),
               "cannot connect to %s:%s: %s", g->host, g->port,
               uvq_strerror(rv));
      group_finish(c, g);
    }
  }
}

static void on_endpoint_closed(uvq_uv_endpoint *uep, void *user_data) {
  (void)uep;
  (void)user_data;
}

static void on_next(uv_timer_t *t) {
  client *c = t->data;

  if (++c->round < c->rounds) {
    start_round(c);
    return;
  }
  c->end = uv_hrtime();
  uv_close((uv_handle_t *)&c->next, NULL);
  if (c->progress) {
    progress_clear(c);
    uv_close((uv_handle_t *)&c->tick, NULL);
  }
  if (c->ep4) {
    uvq_uv_endpoint_close(c->ep4, on_endpoint_closed);
  }
  if (c->ep6) {
    uvq_uv_endpoint_close(c->ep6, on_endpoint_closed);
  }
}

static void round_done(client *c) {
  /* Called from inside the library's callbacks: continue from the loop. */
  uv_timer_start(&c->next, on_next, 0, 0);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"insecure", no_argument, NULL, 'k'},
      {"ca", required_argument, NULL, 'C'},
      {"output", required_argument, NULL, 'o'},
      {"output-dir", required_argument, NULL, 'd'},
      {"quiet", no_argument, NULL, 'q'},
      {"connections", required_argument, NULL, 'n'},
      {"alpn", required_argument, NULL, 'a'},
      {"initial-rtt", required_argument, NULL, 'I'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const char *const alpn_h3[] = {UVQ_H3_ALPN};
  static const char *const alpn_hq[] = {UVQ_HQ_ALPN};
  char err[1024];
  uvq_tls_config tcfg;
  const char *ca = NULL;
  int insecure = 0, usage_error = 0, ch, rv;
  size_t i, j;
  client c;
  double secs;

  memset(&c, 0, sizeof(c));
  uvq_settings_default(&c.settings);
  c.rounds = 1;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":kho:q", opts, NULL)) != -1) {
    switch (ch) {
    case 'k':
      insecure = 1;
      break;
    case 'C':
      ca = optarg;
      break;
    case 'o':
      c.out_file = optarg;
      break;
    case 'd':
      c.out_dir = optarg;
      break;
    case 'q':
      c.quiet = 1;
      break;
    case 'I':
      c.settings.initial_rtt = cli_parse_ms(optarg, "--initial-rtt");
      break;
    case 'a':
      if (strcmp(optarg, UVQ_H3_ALPN) == 0) {
        c.proto = PROTO_H3;
      } else if (strcmp(optarg, UVQ_HQ_ALPN) == 0) {
        c.proto = PROTO_HQ;
      } else {
        fail_usage("bad --alpn \"%s\" (h3 or hq-interop)", optarg);
      }
      break;
    case 'n': {
      char *end;
      errno = 0;
      c.rounds = strtoul(optarg, &end, 10);
      if (errno || *end || optarg[0] == '-' || c.rounds == 0 ||
          c.rounds > 1000000) {
        fail_usage("bad --connections \"%s\" (1..1000000)", optarg);
      }
      break;
    }
    case 'h':
      usage(stdout);
      return CLI_EXIT_OK;
    case ':':
      fail_usage("option %s needs an argument", argv[optind - 1]);
      break;
    default:
      if (optopt) {
        char opt[3] = {'-', (char)optopt, '\0'};
        fail_usage("unknown option %s", opt);
      }
      fail_usage("unknown option %s", argv[optind - 1]);
    }
  }
  c.nurls = (size_t)(argc - optind);
  if (c.nurls == 0) {
    fail_usage("%s", "no URL given");
  }
  if (c.out_file && c.out_dir) {
    fail_usage("%s", "-o and --output-dir exclude each other");
  }
  if (c.out_file && c.nurls != 1) {
    fail_usage("%s", "-o takes exactly one URL");
  }
  if (c.out_dir) {
    struct stat sb;
    if (stat(c.out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      fail_usage("--output-dir %s is not a directory", c.out_dir);
    }
  }
  if (ca && access(ca, R_OK) != 0) {
    snprintf(err, sizeof(err), "cannot read CA file %s: %s", ca,
             strerror(errno));
    fail_usage("%s", err);
  }

  /* Parse and group by HOST:PORT, in order of first appearance. */
  c.urls = calloc(c.nurls, sizeof(*c.urls));
  c.groups = calloc(c.nurls, sizeof(*c.groups));
  if (c.urls == NULL || c.groups == NULL) {
    fail_usage("%s", "out of memory");
  }
  for (i = 0; i < c.nurls; ++i) {
    url *u = &c.urls[i];
    if (parse_url(u, argv[optind + (int)i], err, sizeof(err)) != 0) {
      fail_usage("%s", err);
    }
    for (j = 0; j < c.ngroups; ++j) {
      if (strcasecmp(c.groups[j].host, u->host) == 0 &&
          strcmp(c.groups[j].port, u->port) == 0) {
        break;
      }
    }
    if (j == c.ngroups) {
      group *g = &c.groups[c.ngroups++];
      socklen_t len;
      snprintf(g->host, sizeof(g->host), "%s", u->host);
      snprintf(g->port, sizeof(g->port), "%s", u->port);
      if (cli_resolve(g->host, g->port, 0, &g->addr, &len, err, sizeof(err)) !=
          0) {
        fail_usage("%s", err);
      }
    }
    u->group = j;
    c.groups[j].nurls++;
  }
  for (j = 0; j < c.ngroups; ++j) {
    group *g = &c.groups[j];
    g->c = &c;
    g->urls = calloc(g->nurls, sizeof(*g->urls));
    g->reqs = c.proto == PROTO_HQ ? calloc(g->nurls, sizeof(*g->reqs)) : NULL;
    if (g->urls == NULL || (c.proto == PROTO_HQ && g->reqs == NULL)) {
      fail_usage("%s", "out of memory");
    }
    g->nurls = 0;
  }
  for (i = 0; i < c.nurls; ++i) {
    group *g = &c.groups[c.urls[i].group];
    g->urls[g->nurls++] = i;
  }

  uvq_tls_config_default(&tcfg);
  tcfg.ca_file = ca;
  tcfg.insecure = insecure;
  tcfg.alpn = c.proto == PROTO_H3 ? alpn_h3 : alpn_hq;
  tcfg.alpnlen = 1;
  err[0] = '\0';
  rv = uvq_tls_ctx_new(&c.tls, 0, &tcfg, NULL, err, sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "uvquic-client: TLS setup failed: %s\n",
            err[0] ? err : uvq_strerror(rv));
    usage_error = 1;
    goto out;
  }

  signal(SIGPIPE, SIG_IGN);
  c.loop = uv_default_loop();
  uv_timer_init(c.loop, &c.next);
  c.next.data = &c;
  c.progress = !c.quiet && isatty(STDERR_FILENO);
  if (c.progress) {
    uv_timer_init(c.loop, &c.tick);
    c.tick.data = &c;
    uv_timer_start(&c.tick, on_tick, PROGRESS_MS, PROGRESS_MS);
  }
  c.start = uv_hrtime();
  start_round(&c);
  uv_run(c.loop, UV_RUN_DEFAULT);

  if (c.end == 0) {
    c.end = uv_hrtime();
  }
  secs = (double)(c.end - c.start) / 1e9;
  if (!c.quiet) {
    fprintf(stderr,
            "downloaded %" PRIu64 " files, %" PRIu64
            " bytes in %.3f s (%.1f Mbit/s)\n",
            c.files, c.bytes, secs,
            secs > 0 ? (double)c.bytes * 8 / secs / 1e6 : 0.0);
  }
  uvq_tls_ctx_del(c.tls);
  uv_loop_close(c.loop);
out:
  for (j = 0; j < c.ngroups; ++j) {
    free(c.groups[j].urls);
    free(c.groups[j].reqs);
  }
  free(c.groups);
  free(c.urls);
  if (usage_error) {
    return CLI_EXIT_USAGE;
  }
  return c.failures ? CLI_EXIT_TRANSFER : CLI_EXIT_OK;
}
