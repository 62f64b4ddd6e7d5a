/* uvquic-client: progress bars on a terminal, redrawn up to 10 times a
 * second, and the size and time formats they use. */
#include "client/client.h"

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
void progress_clear(client *c) {
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

void on_tick(uv_timer_t *t) { progress_draw(t->data); }
