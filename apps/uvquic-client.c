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
 * Load generation, all on the one client endpoint (one socket), bodies
 * discarded, results on stdout:
 *   --connections N --concurrency C   N connections in all, at most C being
 *       set up at a time, each doing the GETs of every URL once, then
 *       closing; prints connections/s.
 *   --hold SECONDS      keep each connection open after its GETs until all
 *       N are up, then SECONDS more (use --keep-alive MS past the idle
 *       timeout); set-up connections no longer count against C.
 *   --rate R --duration SECONDS   once all N are up, GET the URLs at R
 *       requests/s round-robin over the N connections for SECONDS; prints
 *       latency percentiles measured from when each request was due (h3
 *       only; --hold works over both).
 *   --keep-alive MS, --idle-timeout SECONDS   transport settings.
 * Every connection and request must succeed for exit status 0.
 *
 * Over HTTP/3 a URL succeeds when its response has status 200 and its body
 * arrives completely; any other status fails that URL (its body is not
 * written). When stderr is a terminal, a progress bar per running download
 * is redrawn up to 10 times a second; a summary line ends every run;
 * --quiet silences both. Exit status: 0 if every download completed, 1 if
 * one failed, 2 for bad arguments.
 *
 * Connection features (not with the load generator):
 *   --token-file FILE    keep the server's NEW_TOKEN per HOST:PORT and send
 *       it on the next connection (saves a Retry round trip).
 *   --session-file FILE  keep the resumption blob (session ticket and the
 *       server's transport parameters) per HOST:PORT; the next connection
 *       resumes the session, and attempts 0-RTT if the ticket allows it
 *       (the server's NewSessionTicket carried early_data).
 *   --stats-json FILE    one JSON object per connection: stats, retry /
 *       resumed / early_data booleans, ALPN, version, cipher, close reason.
 *   --key-update MS      start a key update every MS once established.
 *   --migrate-after MS [--nat-rebinding]  MS after the handshake, move the
 *       connection to a new local socket (active migration, or a NAT
 *       rebinding without path validation).
 *
 * Dead paths (settings, also for the load generator, where both default
 * to off): --stream-keep-alive MS (default 1000) PINGs while requests are
 * open and nothing arrives, so a slow but live server keeps answering with
 * ACKs; --stall-timeout SECONDS (default 5, 0 = off) closes a connection
 * that receives nothing at all for that long while requests are open.
 * --retry N (h3): when a connection ends for a transient reason (stall,
 * idle timeout, stateless reset, the server found no viable path, refused
 * or unanswered before the handshake), reconnect after a backoff of 200 ms
 * doubling per attempt, up to N times per connection, resuming the session
 * (0-RTT) if a ticket came, and redo each unfinished download: from where
 * it stopped with a Range request if the server sent "accept-ranges:
 * bytes", else from the start, truncating the output.
 */
#include <ctype.h>
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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <jansson.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_h3.h"
#include "uvquic/uvquic_uv.h"

#include "app/hq.h"
#include "cli.h"
#include "client/writer.h"
/* Whether a Retry happened and the negotiated cipher are not in the public
 * API: read them from ngtcp2 and GnuTLS through the connection. */

/* Longest path we send; the hq limit, kept for both protocols. */
#define MAX_PATH (UVQ_HQ_MAX_REQUEST - 6)
/* Progress redraw period (ms) and the most bars drawn at once. */
#define PROGRESS_MS 100
#define PROGRESS_MAX_BARS 8
/* --retry: the first backoff (ms), doubled per attempt; the tool's
 * defaults of --stream-keep-alive (ms) and --stall-timeout (s). */
#define RETRY_BACKOFF_MS 200
#define RETRY_REASONS 7
#define DEFAULT_STREAM_KEEP_ALIVE_MS 1000
#define DEFAULT_STALL_TIMEOUT_S 5
/* The transport error NO_VIABLE_PATH (RFC 9000 §20.1). */
#define QUIC_NO_VIABLE_PATH 0x10
/* Exit statuses, curl's where curl has one (CLI_EXIT_OK 0, CLI_EXIT_USAGE
 * 2 from cli.h). The first failing download's decides. */
#define EXIT_RESOLVE 6
#define EXIT_CONNECT 7
#define EXIT_HTTP 22
#define EXIT_WRITE 23
#define EXIT_TIMEOUT 28
#define EXIT_TLS 35
#define EXIT_LOST 56
#define EXIT_CERT 60
#define EXIT_SIGINT 130
#define EXIT_SIGTERM 143

typedef enum proto { PROTO_H3 = 0, PROTO_HQ } proto;

typedef struct client client;
typedef struct group group;
typedef struct lconn lconn;
typedef struct lreq lreq;

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
  /* The output (-o, --output-dir), if the body is kept: |out| says so. */
  outw w;
  int out;
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
  /* --retry: the server sent "accept-ranges: bytes"; the offset this
   * attempt asked for with a Range request (0: the whole body). */
  int ranges;
  uint64_t offset;
  /* The complete length the first 200 announced (-1: none), which a 206
   * continuing it must have too. */
  int64_t whole;
  /* h3: the request's stream, from its response on. */
  uvq_h3_stream *st;
} dl;

typedef struct url {
  const char *text;
  char host[256];
  char port[16];
  char authority[280];
  const char *path;
  /* The path as sent: the URL's, without its #fragment. */
  char pathbuf[MAX_PATH + 1];
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
  /* How the last connection ended, when it failed: the message, and
   * close_plain if it is whole (no library error name in front). */
  char close_err[768];
  int close_error, close_hs, close_plain;
  uint64_t close_code;
  /* What on_closed saw: datagrams received, the certificate check. */
  uint64_t close_rx;
  char cert_detail[256];
  /* The connection's GnuTLS session (the TLS hook), until it closes. */
  gnutls_session_t tls_session;
  /* --limit-rate: bytes held on the connection, not yet paid out. */
  uint64_t rl_held;
  /* --retry: reconnections so far in this round. */
  unsigned long attempts;
  uv_timer_t retry_timer;
  /* The current connection and what we learnt about it. */
  uvq_conn *conn;
  uvq_uv_endpoint *ep;
  int retry, resumed, early_attempted, key_updates, migrated;
  uvq_early_data early;
  uv_timer_t ku_timer, mig_timer;
  int timers;
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
  /* Outputs still being written; set once a write failed (exit 23). */
  size_t writers;
  int write_failed;
  /* The exit status: that of the first failure (0: none yet). */
  int exit_code;
  /* --fail: an HTTP status >= 400 fails the download (exit 22). */
  int fail_http;
  /* SIGINT / SIGTERM: the signal that stopped the run (0: none). */
  int interrupted;
  uv_signal_t sigint, sigterm;
  /* --limit-rate (bytes/s; 0: none): received bytes are held on their
   * connection (its credit withheld) and paid out at the rate. */
  uint64_t limit_rate;
  uv_timer_t rl_timer;
  uint64_t rl_last;
  double rl_tokens;
  /* curl's request and header options (h3): -X, --data/--data-binary,
   * -H, -i, -I, -D FILE, -C -. */
  const char *method;
  uint8_t *body;
  size_t bodylen;
  int has_body;
  uvq_h3_header *hdrs;
  size_t nhdrs;
  int include_headers, head, resume;
  const char *dump_path;
  FILE *dump;
  /* Progress bars (stderr is a terminal and not --quiet). */
  int progress;
  uv_timer_t tick;
  int drawn;
  /* Load generation (--concurrency > 1, --hold, --rate): see lg_*. */
  int lg;
  unsigned long conc;
  uint64_t hold;     /* ns to keep connections open after their GETs */
  double rate;       /* requests per second; 0: no rate phase */
  uint64_t duration; /* ns of the rate phase */
  lconn *lconns;     /* c->rounds of them */
  lreq *lgets;       /* c->rounds * c->nurls initial GETs */
  unsigned long lg_started, lg_setup, lg_held, lg_ok, lg_failed;
  unsigned long lg_errors;
  int lg_phase_started, lg_finished;
  uint64_t lg_ready_t;
  uv_timer_t lg_kick, lg_hold_timer;
  /* The rate phase: requests scheduled at rate/s over the held
   * connections, from a timerfd (libuv timers have 1 ms steps). */
  lconn **rconns;
  size_t nrconns;
  lreq *rreqs;
  size_t nrreqs, rnext, rdone, rfailed;
  uint64_t r0, max_lag;
  int tfd;
  uv_poll_t tpoll;
  /* Shared options and the connection features. */
  cli_common cc;
  const char *token_file, *session_file, *stats_json;
  uint64_t key_update_ms, migrate_ms;
  int nat_rebinding;
  json_t *stats;
  /* --retry N, and the retries made, in all and per reason. */
  unsigned long retry_max, retries;
  unsigned long retry_why[RETRY_REASONS];
};

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: uvquic-client [OPTIONS] https://HOST[:PORT]/path...\n"
      "Downloads over HTTP/3 (default) or hq-interop; URLs to one HOST:PORT\n"
      "share a connection. Short options mean what they mean in curl.\n"
      "\n"
      "Output:\n"
      "  -o FILE                    write the body to FILE (through\n"
      "                             FILE.part, renamed once the response is\n"
      "                             complete and 2xx; a failed response\n"
      "                             never creates or truncates FILE); -o -\n"
      "                             writes it to standard output\n"
      "  --output-dir DIR           each body to DIR/<name from the URL>\n"
      "                             (the same way); without -o or\n"
      "                             --output-dir bodies are discarded\n"
      "  -C -, --continue-at -      continue FILE.part where it ends (a\n"
      "                             Range request; a server that ignores it\n"
      "                             sends the whole file again)\n"
      "  -i, --include              the response header section before the\n"
      "                             body\n"
      "  -I, --head                 HEAD: show the header section only\n"
      "  -D, --dump-header FILE     write header sections to FILE (- for\n"
      "                             standard output)\n"
      "  -f, --fail                 an HTTP status >= 400 fails (exit 22);\n"
      "                             without it the body of a complete 4xx/5xx\n"
      "                             response is reported, written only to\n"
      "                             standard output, and the exit is 0\n"
      "  -s, --silent, --quiet      no progress, no summary\n"
      "\n"
      "Requests (HTTP/3):\n"
      "  -X, --request METHOD       method (default GET; POST with --data)\n"
      "  -d, --data DATA|@FILE      request body (from FILE without CR/LF);\n"
      "                             Content-Type defaults to\n"
      "                             application/x-www-form-urlencoded\n"
      "  --data-binary DATA|@FILE   request body, FILE's bytes as they are\n"
      "  -H, --header 'Name: value' an extra request field (repeatable)\n"
      "  --limit-rate RATE          receive at most RATE bytes/s (k, M, G\n"
      "                             suffixes): flow-control credit is\n"
      "                             withheld, nothing is dropped\n"
      "\n"
      "Connection:\n"
      "  --alpn h3|hq-interop       application (default h3)\n"
      "  -k, --insecure             do not verify the server\n"
      "  --ca FILE                  trusted CAs or the server's certificate\n"
      "                             (PEM; uvquic-server --write-cert FILE)\n"
      "  --connect-timeout SECONDS  give up on a handshake after this long\n"
      "                             (default 20, or the idle timeout if\n"
      "                             shorter)\n"
      "  --initial-rtt MS           RTT assumed before the first sample\n"
      "  --stream-keep-alive MS     PING every MS while requests are open\n"
      "                             and nothing arrives (default 1000, 0 =\n"
      "                             off): a slow but live server still\n"
      "                             answers with ACKs\n"
      "  --stall-timeout SECONDS    close a connection that receives\n"
      "                             nothing at all for this long with\n"
      "                             requests open: its path is dead\n"
      "                             (default 5, 0 = off)\n"
      "  --retry N                  after a transient failure (stall, idle\n"
      "                             timeout, stateless reset, no viable\n"
      "                             path, refused) reconnect and redo the\n"
      "                             unfinished downloads, up to N times\n"
      "                             (default 0; h3 only)\n"
      "  --quic-version v1|v2       version of the first Initial; alone,\n"
      "                             the only version offered (default v1,\n"
      "                             offering v1 and v2: a server that\n"
      "                             prefers v2 upgrades the connection)\n"
      "  --quic-versions LIST       versions offered, most preferred first\n"
      "                             (default v1,v2); after Version\n"
      "                             Negotiation the first the server lists\n"
      "  --token-file FILE          keep NEW_TOKENs per HOST:PORT, reuse\n"
      "  --session-file FILE        keep session tickets per HOST:PORT;\n"
      "                             resume and attempt 0-RTT next time\n"
      "  --stats-json FILE          per-connection stats and facts (JSON)\n"
      "  --key-update MS            a key update every MS once established\n"
      "  --migrate-after MS         move to a new local socket MS after\n"
      "                             the handshake\n"
      "  --nat-rebinding            ... as a NAT rebinding (no probing)\n"
      "  -V, --version              uvquic's, ngtcp2's, nghttp3's and\n"
      "                             GnuTLS's versions\n"
      "\n"
      "Load generation (bodies discarded, results on stdout, one HOST:PORT):\n"
      "  --connections N            fetch everything N times, each round on\n"
      "                             new connections\n"
      "  --concurrency C            at most C connections being set up at a\n"
      "                             time\n"
      "  --hold SECONDS             keep the connections open until all N\n"
      "                             are up, then SECONDS more\n"
      "  --rate R --duration SECONDS\n"
      "                             then GET the URLs at R requests/s for\n"
      "                             SECONDS; prints latency percentiles (h3)\n"
      "  (keep-alive and stall timer off unless given)\n"
      "\n" CLI_COMMON_USAGE "\n"
      "SIGINT / SIGTERM close the connections, keep the .part files, print\n"
      "the summary and exit 130 / 143; a second signal exits at once.\n"
      "SSLKEYLOGFILE=FILE appends the TLS secrets (for Wireshark).\n"
      "\n"
      "Exit status (curl's):\n"
      "   0  every download complete    2  bad command line\n"
      "   6  cannot resolve the host    7  refused or unreachable\n"
      "  22  HTTP status >= 400 (-f)   23  writing the output failed\n"
      "  28  no response in time       35  TLS handshake failure\n"
      "  56  connection lost mid-transfer\n"
      "  60  server certificate not trusted\n"
      " 130  SIGINT                   143  SIGTERM\n"
      "With several URLs the first failure decides.\n");
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
  /* A #fragment is for the client alone: never sent. */
  n = strcspn(u->path, "#");
  memcpy(u->pathbuf, u->path, n);
  u->pathbuf[n] = '\0';
  u->path = u->pathbuf[0] ? u->pathbuf : "/";
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

static unsigned int hq_status(const uvq_hq_request *req);

static void describe_hq_failure(const group *g, const uvq_hq_request *req,
                                char *buf, size_t buflen) {
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
static const char *const retry_reasons[RETRY_REASONS] = {
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
static void record_close(group *g, const uvq_close_info *ci) {
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

/* ------------------------------------------------------------------------ */
/* Token and session stores, connection features                            */
/* ------------------------------------------------------------------------ */

/* A file of "HOST:PORT HEX" lines (--token-file, --session-file). */
typedef struct kv_entry {
  char key[280];
  uint8_t *val;
  size_t len;
} kv_entry;

typedef struct kv_store {
  const char *path;
  kv_entry *e;
  size_t n;
} kv_store;

static client *g_client;

static kv_store g_tokens, g_sessions;
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
static void kv_load(kv_store *kv, const char *path) {
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

static void kv_free(kv_store *kv) {
  size_t i;

  for (i = 0; i < kv->n; ++i) {
    free(kv->e[i].val);
  }
  free(kv->e);
  kv->e = NULL;
  kv->n = 0;
}

static void group_key(const group *g, char *buf, size_t len) {
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

/* The writers of |g|'s downloads hold what they buffer on its current
 * connection (back-pressure), or on none once it closed. */
static void group_set_output_conn(group *g) {
  size_t i;

  for (i = 0; i < g->nurls; ++i) {
    dl *d = &g->c->urls[g->urls[i]].d;
    if (d->out) {
      outw_set_conn(&d->w, g->conn);
    }
  }
}

static void vlog(group *g, const char *fmt, const char *arg) {
  if (g->c->cc.verbose) {
    progress_clear(g->c);
    fprintf(stderr, "uvquic-client: %s:%s: ", g->host, g->port);
    fprintf(stderr, fmt, arg);
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
 * uvq_connect_with, before the connection is known). */
static group *g_connecting;

/* Keeps each connection's GnuTLS session, to name a certificate failure. */
static int tls_hook(uvq_conn *conn, struct gnutls_session_int *session,
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

/* Adds this connection's object to --stats-json. */
static void record_stats(group *g, uvq_conn *conn, const uvq_close_info *ci) {
  uvq_conn_stats st;
  uvq_conn_info info;
  json_t *o = json_object(), *s = json_object(), *cl = json_object();
  char key[300], alpn[64], ver[16];
  const char *cipher = NULL;

  if (o == NULL || s == NULL || cl == NULL) {
    json_decref(o);
    json_decref(s);
    json_decref(cl);
    return;
  }
  uvq_conn_get_stats(conn, &st);
  uvq_conn_get_info(conn, &info);
  group_key(g, key, sizeof(key));
  snprintf(alpn, sizeof(alpn), "%.*s", (int)info.alpnlen,
           info.alpn ? (const char *)info.alpn : "");
  snprintf(ver, sizeof(ver), "0x%08x", info.version);
  cipher = info.cipher;
  json_object_set_new(o, "server", json_string(key));
  json_object_set_new(o, "alpn", json_string(alpn));
  json_object_set_new(o, "version", json_string(ver));
  json_object_set_new(o, "cipher", cipher ? json_string(cipher) : json_null());
  json_object_set_new(o, "handshake_completed",
                      json_boolean(ci->handshake_completed));
  json_object_set_new(o, "retry", json_boolean(g->retry));
  json_object_set_new(o, "resumed", json_boolean(g->resumed));
  json_object_set_new(o, "early_data_attempted",
                      json_boolean(g->early_attempted));
  json_object_set_new(o, "early_data_accepted",
                      json_boolean(g->early == UVQ_EARLY_DATA_ACCEPTED));
  json_object_set_new(o, "key_updates", json_integer(g->key_updates));
  json_object_set_new(o, "migrated", json_boolean(g->migrated));
#define ST(f) json_object_set_new(s, #f, json_integer((json_int_t)st.f))
  ST(latest_rtt);
  ST(min_rtt);
  ST(smoothed_rtt);
  ST(rttvar);
  ST(cwnd);
  /* UINT64_MAX until the first congestion event: no threshold yet. */
  json_object_set_new(s, "ssthresh",
                      st.ssthresh == UINT64_MAX
                          ? json_null()
                          : json_integer((json_int_t)st.ssthresh));
  ST(bytes_in_flight);
  ST(bytes_sent);
  ST(datagrams_sent);
  ST(bytes_received);
  ST(datagrams_received);
  ST(stream_bytes_sent);
  ST(stream_bytes_acked);
  ST(stream_bytes_received);
  ST(handshake_duration);
  ST(max_bandwidth);
  ST(bw_rounds);
  ST(stream_packets_lost);
#undef ST
  json_object_set_new(s, "loss", json_real(st.loss));
  json_object_set_new(o, "stats", s);
  json_object_set_new(
      cl, "error", json_string(ci->error ? uvq_strerror(ci->error) : "none"));
  json_object_set_new(cl, "origin",
                      json_string(ci->origin == UVQ_CLOSE_PEER      ? "peer"
                                  : ci->origin == UVQ_CLOSE_TIMEOUT ? "timeout"
                                                                    : "local"));
  json_object_set_new(
      cl, "type",
      json_string(ci->type == UVQ_CLOSE_TYPE_TRANSPORT     ? "transport"
                  : ci->type == UVQ_CLOSE_TYPE_APPLICATION ? "application"
                                                           : "none"));
  json_object_set_new(cl, "code", json_integer((json_int_t)ci->code));
  json_object_set_new(
      cl, "reason",
      json_stringn(ci->reasonlen ? (const char *)ci->reason : "",
                   ci->reasonlen));
  json_object_set_new(o, "close", cl);
  json_array_append_new(g->c->stats, o);
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

/* uvq_connect with what the stores hold for |g| (token, resumption), and
 * our callbacks around the application's. */
static int group_connect(client *c, group *g, uvq_uv_endpoint *ep,
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
  rv = uvq_connect_with(ep, (struct sockaddr *)&g->addr, &params, &g->conn);
  if (rv == UVQ_ERR_INVALID_ARGUMENT && ses != NULL) {
    /* A stored session that no longer parses: connect without it. */
    vlog(g, "the stored session does not parse: a full handshake%s", "");
    params.resumption = NULL;
    params.resumptionlen = 0;
    params.early_data = 0;
    ses = NULL;
    rv = uvq_connect_with(ep, (struct sockaddr *)&g->addr, &params, &g->conn);
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
static int64_t content_length(const uvq_h3_header *headers, size_t nheaders) {
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
  rv = group_connect(c, g, ep, uvq_h3_callbacks(), g->h3);
  if (rv != 0) {
    uvq_h3_client_del(g->h3);
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
    (void)uvq_h3_client_start(g->h3, g->conn);
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
  if (c->resume && target != NULL) {
    /* -C -: continue the .part from its end with a Range request. */
    char part[4200];
    struct stat sb;
    snprintf(part, sizeof(part), "%s.part", target);
    if (stat(part, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
      d->offset = d->bytes = d->last_bytes = (uint64_t)sb.st_size;
    }
  }
  if (outw_init(&d->w, c->loop, target, d->offset > 0) != 0) {
    fprintf(stderr, "uvquic-client: out of memory\n");
    exit(CLI_EXIT_TRANSFER);
  }
  d->out = 1;
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

static void start_round(client *c) {
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

static void on_endpoint_closed(uvq_uv_endpoint *uep, void *user_data) {
  (void)uep;
  (void)user_data;
}

/* --limit-rate: every 10 ms, pays out what the rate allows since the last
 * tick, oldest connection first. */
static void on_rate_tick(uv_timer_t *t) {
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
static void on_signal(uv_signal_t *h, int signum) {
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
  /* Rate phase: index in c->rreqs, when it was due and its latency. */
  size_t idx;
  uint64_t sched;
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
  uvq_h3_client_del(h3);
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
    rv = uvq_connect(ep, (struct sockaddr *)&g->addr, g->host,
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
    rv = uvq_h3_client_new(&lc->h3, &cfg);
    if (rv != 0) {
      lc->h3 = NULL;
      goto fail;
    }
  }
  rv = uvq_connect(ep, (struct sockaddr *)&g->addr, g->host, uvq_h3_callbacks(),
                   lc->h3, NULL);
  if (rv != 0) {
    uvq_h3_client_del(lc->h3);
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
static int lg_begin(client *c) {
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

static void lg_end(client *c) {
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

/* --limit-rate RATE: bytes per second, with curl's k, M, G suffixes
 * (powers of 1024). */
static uint64_t parse_rate(const char *arg) {
  char *end;
  double v;

  errno = 0;
  v = strtod(arg, &end);
  switch (*end) {
  case 'k':
  case 'K':
    v *= 1024;
    ++end;
    break;
  case 'm':
  case 'M':
    v *= 1024 * 1024;
    ++end;
    break;
  case 'g':
  case 'G':
    v *= 1024.0 * 1024 * 1024;
    ++end;
    break;
  default:
    break;
  }
  if (errno || *end || arg[0] == '\0' || !(v >= 1024) || v > 1e12) {
    cli_fail_usage("bad --limit-rate \"%s\" (bytes per second, at least "
                   "1k; k, M, G suffixes)",
                   arg);
  }
  return (uint64_t)v;
}

/* -V, --version: ours and the libraries' (those we run with). */
static void print_version(void) {
  printf("uvquic-client %s (uvquic %s)\n", UVQ_VERSION, UVQ_VERSION);
  printf("ngtcp2 %s, nghttp3 %s, GnuTLS %s\n", ngtcp2_version(0)->version_str,
         nghttp3_version(0)->version_str, gnutls_check_version(NULL));
  printf("Protocols: h3 hq-interop\n");
}

/* The index of -H field |name| (lower case), or -1. */
static int header_index(const client *c, const char *name) {
  for (size_t i = 0; i < c->nhdrs; ++i) {
    if (strcmp(c->hdrs[i].name, name) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* -H "Name: value": an extra request field (the name in lower case, as
 * HTTP/3 wants it). One more slot is kept for the range of -C / --retry. */
static void add_header(client *c, const char *arg) {
  const char *colon = strchr(arg, ':');
  uvq_h3_header *nh;
  char *name, *value;
  size_t n;

  if (colon == NULL || colon == arg) {
    cli_fail_usage("bad -H \"%s\" (\"Name: value\")", arg);
  }
  n = (size_t)(colon - arg);
  name = strndup(arg, n);
  value = strdup(colon + 1 + strspn(colon + 1, " \t"));
  nh = realloc(c->hdrs, (c->nhdrs + 2) * sizeof(*nh));
  if (name == NULL || value == NULL || nh == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  for (size_t i = 0; i < n; ++i) {
    if (name[i] <= ' ' || name[i] == 0x7f) {
      cli_fail_usage("bad -H \"%s\" (a field name has no spaces)", arg);
    }
    name[i] = (char)tolower((unsigned char)name[i]);
  }
  c->hdrs = nh;
  nh[c->nhdrs].name = name;
  nh[c->nhdrs].namelen = n;
  nh[c->nhdrs].value = value;
  nh[c->nhdrs].valuelen = strlen(value);
  ++c->nhdrs;
}

/* --data / --data-binary ARG: the request body, ARG itself or @FILE's
 * bytes (--data, as curl's -d, drops CR and LF from a file). Several are
 * joined with '&', as curl does. */
static void read_body(client *c, const char *arg, int strip) {
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  uint8_t *nb;

  if (arg[0] == '@') {
    FILE *f = strcmp(arg + 1, "-") == 0 ? stdin : fopen(arg + 1, "rb");
    size_t n;
    if (f == NULL) {
      char err[600];
      snprintf(err, sizeof(err), "cannot read %.500s: %s", arg + 1,
               strerror(errno));
      cli_fail_usage("%s", err);
    }
    do {
      if (len == cap) {
        cap = cap ? cap * 2 : 65536;
        nb = realloc(data, cap);
        if (nb == NULL) {
          cli_fail_usage("%s", "out of memory");
        }
        data = nb;
      }
      n = fread(data + len, 1, cap - len, f);
      len += n;
    } while (n > 0);
    if (f != stdin) {
      fclose(f);
    }
    if (strip) {
      size_t j = 0;
      for (size_t i = 0; i < len; ++i) {
        if (data[i] != '\r' && data[i] != '\n') {
          data[j++] = data[i];
        }
      }
      len = j;
    }
  } else {
    len = strlen(arg);
    data = malloc(len + 1);
    if (data == NULL) {
      cli_fail_usage("%s", "out of memory");
    }
    memcpy(data, arg, len);
  }
  nb = realloc(c->body, c->bodylen + (c->has_body ? 1 : 0) + len + 1);
  if (nb == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  c->body = nb;
  if (c->has_body) {
    c->body[c->bodylen++] = '&';
  }
  if (len > 0) {
    memcpy(c->body + c->bodylen, data, len);
  }
  c->bodylen += len;
  c->has_body = 1;
  free(data);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"insecure", no_argument, NULL, 'k'},
      {"ca", required_argument, NULL, CLI_OPT_FIRST_TOOL + 13},
      {"output", required_argument, NULL, 'o'},
      {"output-dir", required_argument, NULL, CLI_OPT_FIRST_TOOL + 14},
      {"quiet", no_argument, NULL, 'q'},
      {"connections", required_argument, NULL, 'n'},
      {"alpn", required_argument, NULL, 'a'},
      {"initial-rtt", required_argument, NULL, CLI_OPT_FIRST_TOOL + 15},
      {"concurrency", required_argument, NULL, 'c'},
      {"hold", required_argument, NULL, CLI_OPT_FIRST_TOOL + 16},
      {"rate", required_argument, NULL, 'r'},
      {"duration", required_argument, NULL, CLI_OPT_FIRST_TOOL + 17},
      {"token-file", required_argument, NULL, CLI_OPT_FIRST_TOOL},
      {"session-file", required_argument, NULL, CLI_OPT_FIRST_TOOL + 1},
      {"stats-json", required_argument, NULL, CLI_OPT_FIRST_TOOL + 2},
      {"key-update", required_argument, NULL, CLI_OPT_FIRST_TOOL + 3},
      {"migrate-after", required_argument, NULL, CLI_OPT_FIRST_TOOL + 4},
      {"nat-rebinding", no_argument, NULL, CLI_OPT_FIRST_TOOL + 5},
      {"stream-keep-alive", required_argument, NULL, CLI_OPT_FIRST_TOOL + 6},
      {"stall-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 7},
      {"retry", required_argument, NULL, CLI_OPT_FIRST_TOOL + 8},
      {"quic-version", required_argument, NULL, CLI_OPT_FIRST_TOOL + 9},
      {"quic-versions", required_argument, NULL, CLI_OPT_FIRST_TOOL + 10},
      {"fail", no_argument, NULL, 'f'},
      {"connect-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 11},
      {"limit-rate", required_argument, NULL, CLI_OPT_FIRST_TOOL + 12},
      {"continue-at", required_argument, NULL, 'C'},
      {"dump-header", required_argument, NULL, 'D'},
      {"header", required_argument, NULL, 'H'},
      {"head", no_argument, NULL, 'I'},
      {"include", no_argument, NULL, 'i'},
      {"request", required_argument, NULL, 'X'},
      {"data", required_argument, NULL, 'd'},
      {"data-binary", required_argument, NULL, CLI_OPT_FIRST_TOOL + 18},
      {"silent", no_argument, NULL, 's'},
      {"version", no_argument, NULL, 'V'},
      CLI_COMMON_OPTIONS,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const char *const alpn_h3[] = {UVQ_H3_ALPN};
  static const char *const alpn_hq[] = {UVQ_HQ_ALPN};
  char err[1024];
  uvq_tls_config tcfg;
  const char *ca = NULL;
  int insecure = 0, usage_error = 0, conc_set = 0, ch, rv;
  /* --quic-version (0: not given) and whether --quic-versions was. */
  uint32_t quic_version = 0;
  int quic_versions_set = 0;
  /* UINT64_MAX: not given (the tool's default, off for the load
   * generator). */
  uint64_t stream_keep_alive = UINT64_MAX, stall_timeout = UINT64_MAX;
  size_t i, j;
  client c;
  double secs;

  memset(&c, 0, sizeof(c));
  uvq_settings_default(&c.settings);
  c.rounds = 1;
  c.conc = 1;
  c.tfd = -1;
  opterr = 0;
  c.cc.role = "client";
  g_client = &c;
  while ((ch = getopt_long(argc, argv, ":fkho:qvC:D:H:IiX:d:sV", opts, NULL)) !=
         -1) {
    if (cli_common_opt(ch, optarg, &c.settings, &c.cc)) {
      continue;
    }
    switch (ch) {
    case CLI_OPT_FIRST_TOOL:
      c.token_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 1:
      c.session_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 2:
      c.stats_json = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 3:
      c.key_update_ms = cli_parse_ms(optarg, "--key-update") / 1000000u;
      break;
    case CLI_OPT_FIRST_TOOL + 4:
      c.migrate_ms = cli_parse_ms(optarg, "--migrate-after") / 1000000u;
      break;
    case CLI_OPT_FIRST_TOOL + 5:
      c.nat_rebinding = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 6:
      stream_keep_alive =
          cli_parse_u64(optarg, "--stream-keep-alive", 0, 60000) * 1000000u;
      break;
    case CLI_OPT_FIRST_TOOL + 7:
      stall_timeout = strcmp(optarg, "0") == 0
                          ? 0
                          : cli_parse_secs(optarg, "--stall-timeout", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 8:
      c.retry_max = (unsigned long)cli_parse_u64(optarg, "--retry", 0, 100);
      break;
    case CLI_OPT_FIRST_TOOL + 9:
      quic_version = cli_parse_quic_version(optarg, "--quic-version");
      break;
    case CLI_OPT_FIRST_TOOL + 10:
      cli_parse_quic_versions(optarg, "--quic-versions", &c.settings);
      quic_versions_set = 1;
      break;
    case 'k':
      insecure = 1;
      break;
    case 'f':
      c.fail_http = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 12:
      c.limit_rate = parse_rate(optarg);
      break;
    case CLI_OPT_FIRST_TOOL + 11:
      c.settings.handshake_timeout =
          cli_parse_secs(optarg, "--connect-timeout", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 13:
      ca = optarg;
      break;
    case 'C':
      if (strcmp(optarg, "-") != 0) {
        cli_fail_usage("-C takes \"-\" (continue where the .part file "
                       "ends), not \"%s\"",
                       optarg);
      }
      c.resume = 1;
      break;
    case 'D':
      c.dump_path = optarg;
      break;
    case 'H':
      add_header(&c, optarg);
      break;
    case 'I':
      c.head = 1;
      c.include_headers = 1;
      break;
    case 'i':
      c.include_headers = 1;
      break;
    case 'X':
      c.method = optarg;
      break;
    case 'd':
    case CLI_OPT_FIRST_TOOL + 18:
      read_body(&c, optarg, ch == 'd');
      break;
    case 's':
      c.quiet = 1;
      break;
    case 'V':
      print_version();
      return CLI_EXIT_OK;
    case 'o':
      c.out_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 14:
      c.out_dir = optarg;
      break;
    case 'q':
      c.quiet = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 15:
      c.settings.initial_rtt = cli_parse_ms(optarg, "--initial-rtt");
      break;
    case CLI_OPT_FIRST_TOOL + 16:
      c.hold = cli_parse_secs(optarg, "--hold", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 17:
      c.duration = cli_parse_secs(optarg, "--duration", 3600);
      break;
    case 'r': {
      char *end;
      errno = 0;
      c.rate = strtod(optarg, &end);
      if (errno || *end || optarg[0] == '\0' || !(c.rate >= 1) ||
          c.rate > 1000000) {
        cli_fail_usage("bad --rate \"%s\" (requests per second, 1..1000000)",
                       optarg);
      }
      break;
    }
    case 'c': {
      char *end;
      errno = 0;
      c.conc = strtoul(optarg, &end, 10);
      if (errno || *end || optarg[0] == '-' || c.conc == 0 ||
          c.conc > 1000000) {
        cli_fail_usage("bad --concurrency \"%s\" (1..1000000)", optarg);
      }
      conc_set = 1;
      break;
    }
    case 'a':
      if (strcmp(optarg, UVQ_H3_ALPN) == 0) {
        c.proto = PROTO_H3;
      } else if (strcmp(optarg, UVQ_HQ_ALPN) == 0) {
        c.proto = PROTO_HQ;
      } else {
        cli_fail_usage("bad --alpn \"%s\" (h3 or hq-interop)", optarg);
      }
      break;
    case 'n': {
      char *end;
      errno = 0;
      c.rounds = strtoul(optarg, &end, 10);
      if (errno || *end || optarg[0] == '-' || c.rounds == 0 ||
          c.rounds > 1000000) {
        cli_fail_usage("bad --connections \"%s\" (1..1000000)", optarg);
      }
      break;
    }
    case 'h':
      usage(stdout);
      return CLI_EXIT_OK;
    default:
      cli_fail_getopt(ch, argv);
    }
  }
  c.nurls = (size_t)(argc - optind);
  if (c.nurls == 0) {
    cli_fail_usage("%s", "no URL given");
  }
  if (c.out_file && c.out_dir) {
    cli_fail_usage("%s", "-o and --output-dir exclude each other");
  }
  if (c.out_file && c.nurls != 1) {
    cli_fail_usage("%s", "-o takes exactly one URL");
  }
  if (c.proto == PROTO_HQ && (c.method || c.has_body || c.nhdrs ||
                              c.include_headers || c.dump_path || c.resume)) {
    cli_fail_usage("%s", "-X, --data, -H, -i, -I, -D and -C need HTTP/3 "
                         "(hq-interop has no methods, fields or ranges)");
  }
  if (c.resume && c.out_file == NULL && c.out_dir == NULL) {
    cli_fail_usage("%s", "-C - continues a file: give -o FILE or "
                         "--output-dir");
  }
  if (c.resume && c.out_file != NULL && strcmp(c.out_file, "-") == 0) {
    cli_fail_usage("%s", "-C - cannot continue standard output");
  }
  if (c.head && c.has_body) {
    cli_fail_usage("%s", "-I and --data exclude each other");
  }
  if (c.method == NULL) {
    c.method = c.head ? "HEAD" : c.has_body ? "POST" : "GET";
  }
  if (c.has_body && header_index(&c, "content-type") < 0) {
    /* curl's default for --data. */
    add_header(&c, "Content-Type: application/x-www-form-urlencoded");
  }
  if (c.nhdrs == 0) {
    /* The slot the range of -C / --retry goes in. */
    c.hdrs = calloc(1, sizeof(*c.hdrs));
    if (c.hdrs == NULL) {
      cli_fail_usage("%s", "out of memory");
    }
  }
  if (c.dump_path != NULL) {
    c.dump = strcmp(c.dump_path, "-") == 0 ? stdout : fopen(c.dump_path, "w");
    if (c.dump == NULL) {
      char derr[600];
      snprintf(derr, sizeof(derr), "cannot write -D %.500s: %s", c.dump_path,
               strerror(errno));
      cli_fail_usage("%s", derr);
    }
  }
  if (c.out_dir) {
    struct stat sb;
    if (stat(c.out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      cli_fail_usage("--output-dir %s is not a directory", c.out_dir);
    }
  }
  if ((c.rate > 0) != (c.duration > 0)) {
    cli_fail_usage("%s", "--rate and --duration go together");
  }
  if (c.rate > 0 && c.hold > 0) {
    cli_fail_usage("%s", "--rate and --hold exclude each other");
  }
  /* The rate phase spreads its requests over all the connections. */
  if (c.rate > 0 && !conc_set) {
    c.conc = c.rounds;
  }
  /* A load generator holding more connections than the default limit
   * needs room for them, unless --max-connections said otherwise. */
  if (!c.cc.max_connections_set && c.settings.max_connections != 0 &&
      c.rounds > c.settings.max_connections) {
    c.settings.max_connections = c.rounds;
  }
  c.lg = c.conc > 1 || c.hold > 0 || c.rate > 0;
  if (c.lg && (c.out_file || c.out_dir)) {
    cli_fail_usage("%s", "--concurrency, --hold and --rate discard bodies: no "
                         "-o / --output-dir");
  }
  if (c.lg && c.proto == PROTO_HQ && c.rate > 0) {
    cli_fail_usage("%s", "--rate needs --alpn h3");
  }
  if (c.nat_rebinding && c.migrate_ms == 0) {
    cli_fail_usage("%s", "--nat-rebinding needs --migrate-after");
  }
  if (c.lg && (c.token_file || c.session_file || c.stats_json ||
               c.key_update_ms || c.migrate_ms || c.retry_max)) {
    cli_fail_usage("%s",
                   "--token-file, --session-file, --stats-json, "
                   "--key-update, --migrate-after and --retry are not for "
                   "the load generator");
  }
  if (c.retry_max > 0 && c.proto != PROTO_H3) {
    cli_fail_usage("%s", "--retry needs --alpn h3");
  }
  /* The load generator holds many connections with streams open: no
   * PINGs or stall timer unless asked for. */
  if (stream_keep_alive == UINT64_MAX) {
    stream_keep_alive =
        c.lg ? 0 : (uint64_t)DEFAULT_STREAM_KEEP_ALIVE_MS * 1000000u;
  }
  if (stall_timeout == UINT64_MAX) {
    stall_timeout = c.lg ? 0 : (uint64_t)DEFAULT_STALL_TIMEOUT_S * 1000000000u;
  }
  c.settings.stream_keep_alive = stream_keep_alive;
  c.settings.stall_timeout = stall_timeout;
  cli_common_apply(&c.cc, &c.settings);
  if (c.limit_rate != 0) {
    /* Credit is withheld once the held bytes reach the receive budget;
     * what the peer may still send is its window: keep both to a small
     * part of a second's worth, so the rate holds from the first byte. */
    uint64_t win = c.limit_rate / 8 > 16384 ? c.limit_rate / 8 : 16384;
    if (c.lg) {
      cli_fail_usage("%s", "--limit-rate is not for the load generator");
    }
    c.settings.initial_max_data = c.settings.max_window = win;
    c.settings.initial_max_stream_data = c.settings.max_stream_window = win;
    c.settings.conn_recv_budget = (size_t)(win / 2);
  }
  if (c.token_file) {
    kv_load(&g_tokens, c.token_file);
  }
  if (c.session_file) {
    kv_load(&g_sessions, c.session_file);
  }
  if (c.stats_json && (c.stats = json_array()) == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  if (ca && access(ca, R_OK) != 0) {
    snprintf(err, sizeof(err), "cannot read CA file %s: %s", ca,
             strerror(errno));
    cli_fail_usage("%s", err);
  }

  /* QUIC versions: --quic-version V alone offers V only (as gtlsclient -v
   * does); --quic-versions LIST offers LIST, starting in V if given, else
   * in v1 if listed, else in the first of LIST. */
  if (quic_version != 0 && !quic_versions_set) {
    c.settings.quic_versions[0] = quic_version;
    c.settings.quic_versionslen = 1;
  }
  if (quic_version == 0) {
    quic_version = c.settings.quic_versions[0];
    for (i = 0; i < c.settings.quic_versionslen; ++i) {
      if (c.settings.quic_versions[i] == UVQ_QUIC_V1) {
        quic_version = UVQ_QUIC_V1;
      }
    }
  }
  for (i = 0; i < c.settings.quic_versionslen; ++i) {
    if (c.settings.quic_versions[i] == quic_version) {
      break;
    }
  }
  if (i == c.settings.quic_versionslen) {
    cli_fail_usage("--quic-version %s is not in --quic-versions",
                   cli_quic_version_name(quic_version));
  }
  c.settings.client_chosen_version = quic_version;

  /* Parse and group by HOST:PORT, in order of first appearance. */
  c.urls = calloc(c.nurls, sizeof(*c.urls));
  c.groups = calloc(c.nurls, sizeof(*c.groups));
  if (c.urls == NULL || c.groups == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  for (i = 0; i < c.nurls; ++i) {
    url *u = &c.urls[i];
    if (parse_url(u, argv[optind + (int)i], err, sizeof(err)) != 0) {
      cli_fail_usage("%s", err);
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
        fprintf(stderr, "uvquic-client: %s\n", err);
        exit(EXIT_RESOLVE);
      }
    }
    u->group = j;
    c.groups[j].nurls++;
  }
  if (c.lg && c.ngroups != 1) {
    cli_fail_usage("%s", "--concurrency, --hold and --rate take URLs of one "
                         "HOST:PORT");
  }
  for (j = 0; j < c.ngroups; ++j) {
    group *g = &c.groups[j];
    g->c = &c;
    g->urls = calloc(g->nurls, sizeof(*g->urls));
    g->reqs = c.proto == PROTO_HQ ? calloc(g->nurls, sizeof(*g->reqs)) : NULL;
    if (g->urls == NULL || (c.proto == PROTO_HQ && g->reqs == NULL)) {
      cli_fail_usage("%s", "out of memory");
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
  tcfg.hook = tls_hook;
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
  c.progress = !c.lg && !c.quiet && isatty(STDERR_FILENO);
  if (c.progress) {
    uv_timer_init(c.loop, &c.tick);
    c.tick.data = &c;
    uv_timer_start(&c.tick, on_tick, PROGRESS_MS, PROGRESS_MS);
  }
  /* Installed whatever the inherited disposition: a client started in
   * the background of a script inherits SIGINT ignored, and must still
   * stop cleanly. They do not keep the loop alive. */
  uv_signal_init(c.loop, &c.sigint);
  uv_signal_init(c.loop, &c.sigterm);
  c.sigint.data = c.sigterm.data = &c;
  uv_signal_start(&c.sigint, on_signal, SIGINT);
  uv_signal_start(&c.sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&c.sigint);
  uv_unref((uv_handle_t *)&c.sigterm);
  if (c.limit_rate != 0) {
    uv_timer_init(c.loop, &c.rl_timer);
    c.rl_timer.data = &c;
    c.rl_last = uv_hrtime();
    uv_timer_start(&c.rl_timer, on_rate_tick, 10, 10);
  }
  c.start = uv_hrtime();
  if (c.lg) {
    if (lg_begin(&c) != 0) {
      fprintf(stderr, "uvquic-client: out of memory\n");
      exit(CLI_EXIT_TRANSFER);
    }
  } else {
    start_round(&c);
  }
  uv_run(c.loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&c.sigint, NULL);
  uv_close((uv_handle_t *)&c.sigterm, NULL);
  uv_run(c.loop, UV_RUN_NOWAIT);
  if (c.lg) {
    lg_end(&c);
  }

  if (c.end == 0) {
    c.end = uv_hrtime();
  }
  secs = (double)(c.end - c.start) / 1e9;
  if (!c.quiet && !c.lg) {
    /* ", retries: K (stalled 1, no-viable-path 1)" with --retry. */
    char retries[256] = "";
    if (c.retry_max > 0) {
      const char *sep = " (";
      size_t off = (size_t)snprintf(retries, sizeof(retries), ", retries: %lu",
                                    c.retries);
      for (i = 0; i < RETRY_REASONS; ++i) {
        if (c.retry_why[i] > 0) {
          off +=
              (size_t)snprintf(retries + off, sizeof(retries) - off, "%s%s %lu",
                               sep, retry_reasons[i], c.retry_why[i]);
          sep = ", ";
        }
      }
      if (c.retries > 0) {
        snprintf(retries + off, sizeof(retries) - off, ")");
      }
    }
    fprintf(stderr,
            "downloaded %" PRIu64 " files, %" PRIu64
            " bytes in %.3f s (%.1f Mbit/s)%s\n",
            c.files, c.bytes, secs,
            secs > 0 ? (double)c.bytes * 8 / secs / 1e6 : 0.0, retries);
  }
  if (c.stats != NULL) {
    char *text = json_dumps(c.stats, JSON_INDENT(2));
    if (text == NULL ||
        cli_write_atomic(c.stats_json, text, strlen(text), 0644) != 0) {
      fprintf(stderr, "uvquic-client: cannot write %s: %s\n", c.stats_json,
              text ? strerror(errno) : "out of memory");
      c.failures++;
    }
    free(text);
    json_decref(c.stats);
  }
  uvq_tls_ctx_del(c.tls);
  uv_loop_close(c.loop);
  cli_common_free(&c.cc);
out:
  kv_free(&g_tokens);
  kv_free(&g_sessions);
  for (j = 0; j < c.ngroups; ++j) {
    free(c.groups[j].urls);
    free(c.groups[j].reqs);
  }
  free(c.groups);
  free(c.urls);
  for (j = 0; j < c.nhdrs; ++j) {
    free((void *)c.hdrs[j].name);
    free((void *)c.hdrs[j].value);
  }
  free(c.hdrs);
  free(c.body);
  if (c.dump != NULL && c.dump != stdout) {
    fclose(c.dump);
  }
  if (usage_error) {
    return CLI_EXIT_USAGE;
  }
  if (c.interrupted) {
    return c.interrupted == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
  }
  if (c.exit_code != 0) {
    return c.exit_code;
  }
  if (c.write_failed) {
    return EXIT_WRITE;
  }
  return c.failures ? CLI_EXIT_TRANSFER : CLI_EXIT_OK;
}
