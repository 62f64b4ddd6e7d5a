/*
 * uvquic-client's modules share these types: the client, its groups (one
 * connection per HOST:PORT), URLs and their downloads. main.c parses the
 * command line; download.c runs the downloads (h3 and hq-interop) and their
 * outcomes; progress.c draws the bars; stores.c keeps tokens and sessions
 * and wraps the connection callbacks (key updates, migration); stats.c
 * writes --stats-json; loadgen.c is the load generator; writer.c the
 * output writer.
 */
#ifndef UVQ_CLIENT_CLIENT_H
#define UVQ_CLIENT_CLIENT_H

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

/* stores.c: the one client (for the callback wrappers) and the stores. */
extern client *g_client;
extern kv_store g_tokens, g_sessions;
/* download.c: what the summary calls each transient failure. */
extern const char *const retry_reasons[RETRY_REASONS];

/* main.c */
const char *base_name(const char *path);

/* progress.c */
void progress_clear(client *c);
void on_tick(uv_timer_t *t);

/* download.c */
void describe_hq_failure(const group *g, const uvq_hq_request *req, char *buf,
                         size_t buflen);
void record_close(group *g, const uvq_close_info *ci);
void group_set_output_conn(group *g);
int64_t content_length(const uvq_h3_header *headers, size_t nheaders);
uvq_uv_endpoint *endpoint_for(client *c, int family, int *prv);
void start_round(client *c);
void on_endpoint_closed(uvq_uv_endpoint *uep, void *user_data);
void on_rate_tick(uv_timer_t *t);
void on_signal(uv_signal_t *h, int signum);

/* stores.c */
void kv_load(kv_store *kv, const char *path);
void kv_free(kv_store *kv);
void group_key(const group *g, char *buf, size_t len);
int tls_hook(uvq_conn *conn, struct gnutls_session_int *session,
             void *user_data);
int group_connect(client *c, group *g, uvq_uv_endpoint *ep,
                  const uvq_app_callbacks *inner, void *user_data);

/* stats.c */
void record_stats(group *g, uvq_conn *conn, const uvq_close_info *ci);
int stats_write(client *c);

/* loadgen.c */
int lg_begin(client *c);
void lg_end(client *c);

#endif
