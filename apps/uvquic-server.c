/*
 * uvquic-server: serves a directory over HTTP/3 and hq-interop at once (the
 * application is picked by the ALPN the client negotiates).
 *
 *   uvquic-server [--listen HOST:PORT] [--root DIR] [--cert FILE --key FILE]
 *                 [--retry[=always|auto]] [--quiet] [--write-cert FILE]
 *                 [--initial-rtt MS] [--keys-file FILE | --gen-keys FILE]
 *                 [--metrics-file FILE] [transport options] [-v|-vv]
 *                 [--qlog-dir DIR] [--header-timeout S] [--request-timeout S]
 *                 [--max-field-section-size N] [--max-request-line N]
 *                 [--no-early-data] [--quic-lb CONFIG|@FILE] [--threads N]
 *
 * Transport options (shared with uvquic-client, see cli.h): --cc,
 * --max-data, --max-stream-data, --max-streams, --idle-timeout,
 * --keep-alive, --no-pmtud, --disable-migration, --max-udp-payload.
 * --keys-file loads a uvquic key file (token keys, stateless-reset secret,
 * session-ticket master key) so tokens and tickets survive restarts;
 * --gen-keys FILE writes a new one and exits.
 * --metrics-file rewrites FILE (atomically) every second with the
 * endpoint's Prometheus text (with shards, each shard's, labelled
 * shard="i").
 * --threads N runs N shards (uvq_uv_listen with uvq_uv_config.shards):
 * N threads, each with its own loop, endpoint and SO_REUSEPORT socket;
 * default: the CPUs the process may run on. Each shard has its own
 * HTTP/3 and hq-interop server objects; the file root, media types and
 * options are shared read-only; signals are handled on the main thread,
 * which reaches the shards with uvq_uv_endpoint_each_shard.
 * --file-cache ENTRIES[,KIB[,MS]] keeps up to ENTRIES resolved files per
 * shard (src/app/file_cache.c): a file of 16 KiB or less by its bytes, a
 * larger one by its open descriptor (64 at most, fewer if RLIMIT_NOFILE / 4
 * shared by the caches is less), at most KIB KiB of bytes, each served
 * MS ms before it is resolved again (default 256,4096,1000; 0 disables).
 * SIGHUP empties it.
 * --quic-lb makes every connection ID a QUIC-LB one (uvquic_lb.h) that a
 * load balancer routes to this server: CONFIG is uvq_lb_config_parse's
 * "cr=N,sid=HEX,nonce=N[,key=HEX][,encode-len]", or @FILE a file holding
 * it (so the key stays out of the process list; refused when others may
 * read it).
 *
 * Files (src/app/http_file.c, the same for both protocols): the path is
 * percent-decoded (an encoded '/', a NUL or a bad escape is a bad request;
 * ".." after decoding is refused), its query and fragment ignored; a
 * directory serves its index.html, else 404 (or a listing with
 * --autoindex). HTTP/3: GET and HEAD, a directory named without its slash
 * answers 308; Content-Type from the media-types table, Date,
 * Last-Modified, ETag (size and mtime), Accept-Ranges, nosniff,
 * --cache-control; If-None-Match / If-Modified-Since give 304, one Range
 * 206 (or 416), subject to If-Range; 405 for other methods. hq-interop:
 * GET, refusals as stream resets.
 *
 * Prints "listening on HOST:PORT" once bound, then one access-log line per
 * request (unless --quiet):
 *   PEER PROTO METHOD PATH STATUS BYTES DURATIONs [aborted: WHY]
 * BYTES is the response body the client acknowledged; "aborted: WHY"
 * follows unless it acknowledged the whole response and its FIN.
 * The first SIGINT / SIGTERM stops accepting, sends GOAWAY on HTTP/3
 * connections and gives the exchanges in flight --shutdown-timeout; a
 * second closes at once. Either way every connection gets a
 * CONNECTION_CLOSE, the counters are printed (unless --quiet) and the exit
 * is 0. SIGHUP reloads the certificate, key and keys file and empties the
 * file cache. Bad arguments
 * exit 2 with a one-line message.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

#include "uvquic/uvquic_h3.h"
#include "uvquic/uvquic_lb.h"

#include "app/file_cache.h"
#include "app/fileserve.h"
#include "app/hq.h"
#include "app/http_file.h"
#include "cli.h"

typedef struct server server;

/* The HTTP/3 server of one shard, and what only its thread touches. */
typedef struct h3_shard {
  server *s;
  uvq_file_cache fcache;
  /* The Date value, formatted once a second (date_sec: of which). */
  time_t date_sec;
  char date[UVQ_HTTP_DATE_LEN];
  /* h3_on_request's resolution (8 KiB): one per shard, not a malloc per
   * request; on_request does not nest. */
  uvq_http_resolved res;
} h3_shard;

struct server {
  uv_loop_t *loop;
  uvq_uv_endpoint *listener;
  /* One of each per shard (--threads), indexed by the shard's index:
   * a shard's connections only ever touch its own. */
  unsigned nshards;
  uvq_hq_server *hq[UVQ_UV_MAX_SHARDS];
  uvq_h3_server *h3[UVQ_UV_MAX_SHARDS];
  h3_shard h3ctx[UVQ_UV_MAX_SHARDS];
  /* The HTTP/3 side's view of the root (hq has its own, same jail). */
  uvq_fileserve fs;
  /* Content types (--mime-types, else /etc/mime.types, else built in). */
  uvq_mime_table mime;
  /* --cache-control VALUE, or NULL; --autoindex. */
  const char *cache_control;
  int autoindex;
  /* Graceful shutdown: how long in-flight exchanges may take (ns). */
  uint64_t shutdown_timeout;
  uv_timer_t shutdown_timer;
  uint64_t shutdown_start;
  uv_signal_t sigint, sigterm, sighup;
  /* What SIGHUP reloads. */
  uvq_tls_ctx *tls;
  const char *cert, *key, *keys_file, *cert_out;
  int quiet;
  int closing;
  /* --metrics-file */
  const char *metrics_file;
  uv_timer_t metrics_timer;
  char *metrics_buf;
  size_t metrics_cap;
  /* With shards: each shard's latest labelled Prometheus text, written on
   * its thread (metrics_lock) and joined by the main thread. */
  uv_mutex_t metrics_lock;
  char *shard_metrics[UVQ_UV_MAX_SHARDS];
};

/* --shutdown-timeout's default. */
#define SHUTDOWN_TIMEOUT (10 * UVQ_SECONDS)

/* One request, from its header section to the end of the exchange. */
typedef struct request {
  server *s;
  h3_shard *sh;
  /* The file being sent (a reference into the shard's cache). */
  uvq_file *file;
  uint64_t off;
  uint64_t size;
  uint64_t start;
  unsigned int status;
  int head;
  char peer[64];
  char method[24];
  /* The path as logged (escaped); the file path is taken from it. */
  char path[512];
} request;

/* Copies |len| bytes of |src| into |dst| for the log: non-printable bytes
 * and spaces become %XX, and an over-long value ends in "...". */
static void log_escape(char *dst, size_t dstlen, const char *src, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0, i;

  for (i = 0; i < len; ++i) {
    unsigned char ch = (unsigned char)src[i];
    if (o + 7 >= dstlen) {
      memcpy(dst + o, "...", 3);
      o += 3;
      break;
    }
    /* Not '%': the path is shown as received, escaped only once. */
    if (ch <= 0x20 || ch >= 0x7f) {
      dst[o++] = '%';
      dst[o++] = hex[ch >> 4];
      dst[o++] = hex[ch & 0xf];
    } else {
      dst[o++] = (char)ch;
    }
  }
  dst[o] = '\0';
}

static void peer_of(uvq_conn *conn, char *buf, size_t buflen) {
  uvq_conn_info info;

  uvq_conn_get_info(conn, &info);
  if (info.path != NULL) {
    cli_format_addr((const struct sockaddr *)&info.path->remote.ss, buf,
                    buflen);
  } else {
    snprintf(buf, buflen, "-");
  }
}

/* |outcome| is NULL for a complete exchange, else why it ended early. */
static void access_log(server *s, const char *peer, const char *proto,
                       const char *method, const char *path,
                       unsigned int status, uint64_t bytes, uint64_t start,
                       const char *outcome) {
  char st[16];

  if (s->quiet) {
    return;
  }
  if (status) {
    snprintf(st, sizeof(st), "%u", status);
  } else {
    snprintf(st, sizeof(st), "-");
  }
  printf("%s %s %s %s %s %" PRIu64 " %.3fs%s%s\n", peer, proto, method,
         *path ? path : "-", st, bytes, (double)(uv_hrtime() - start) / 1e9,
         outcome ? " aborted: " : "", outcome ? outcome : "");
}

/* ---- hq-interop access log ---------------------------------------------- */

typedef struct hq_log {
  uint64_t start;
  char peer[64];
} hq_log;

static void *hq_log_start(uvq_conn *conn, int64_t stream_id, void *user_data) {
  server *s = user_data;
  hq_log *l = malloc(sizeof(*l));

  (void)stream_id;
  if (l != NULL && !s->quiet) {
    l->start = uv_hrtime();
    peer_of(conn, l->peer, sizeof(l->peer));
  }
  return l;
}

static void hq_log_end(const uvq_hq_log_entry *e, void *log, void *user_data) {
  server *s = user_data;
  hq_log *l = log;
  const char *why = NULL;
  char path[512];

  if (l == NULL) {
    return;
  }
  /* A refusal (404 and the like) is a reset by design: its status says
   * what happened. */
  if (!e->delivered && (e->status == 0 || e->status == 200)) {
    why = e->conn == NULL ? "server closed"
          : uvq_conn_get_stage(e->conn) >= UVQ_STAGE_CLOSING
              ? "connection closed"
              : "stream reset";
  }
  log_escape(path, sizeof(path), e->path, strlen(e->path));
  access_log(s, l->peer, "hq", "GET", path, e->status, e->acked, l->start, why);
  free(l);
}

/* ---- HTTP/3 ------------------------------------------------------------- */

static ssize_t file_read(uvq_h3_stream *st, uint8_t *buf, size_t len, int *peof,
                         void *user_data) {
  request *r = user_data;
  uint64_t left = r->size - r->off;
  ssize_t n;

  (void)st;
  if (left < len) {
    len = (size_t)left;
  }
  n = len ? uvq_file_read(r->file, buf, len, r->off) : 0;
  if (n < 0) {
    /* Not UVQ_H3_READ_WOULDBLOCK: the stream is reset. */
    return -2;
  }
  r->off += (uint64_t)n;
  /* A file that shrank ends early: the client sees a short body. */
  if (r->off == r->size || n == 0) {
    *peof = 1;
  }
  return n;
}

/* The response header fields being built for one answer. */
typedef struct hdrs {
  uvq_h3_header h[16];
  size_t n;
  char date[UVQ_HTTP_DATE_LEN];
  char clen[24];
} hdrs;

static void hdr_add(hdrs *hs, const char *name, const char *value) {
  if (hs->n < sizeof(hs->h) / sizeof(hs->h[0])) {
    hs->h[hs->n++] = (uvq_h3_header){name, strlen(name), value, strlen(value)};
  }
}

/* Fields every response carries: Date and nosniff. */
static void hdrs_init(hdrs *hs, request *r) {
  h3_shard *sh = r->sh;
  time_t now = time(NULL);

  hs->n = 0;
  if (now != sh->date_sec || sh->date[0] == '\0') {
    uvq_http_format_date(now, sh->date);
    sh->date_sec = now;
  }
  memcpy(hs->date, sh->date, sizeof(hs->date));
  hdr_add(hs, "date", hs->date);
  hdr_add(hs, "x-content-type-options", "nosniff");
}

/* Answers with |hs| and a body held in memory (none for HEAD, but the same
 * content-length). */
static int respond_buffer(uvq_h3_stream *st, request *r, unsigned int status,
                          hdrs *hs, const char *type, const char *body,
                          size_t len) {
  uvq_h3_response resp;

  r->status = status;
  snprintf(hs->clen, sizeof(hs->clen), "%zu", len);
  if (type != NULL) {
    hdr_add(hs, "content-type", type);
  }
  hdr_add(hs, "content-length", hs->clen);
  memset(&resp, 0, sizeof(resp));
  resp.status = status;
  resp.headers = hs->h;
  resp.nheaders = hs->n;
  if (r->head || len == 0) {
    resp.body.type = UVQ_H3_BODY_NONE;
  } else {
    resp.body.type = UVQ_H3_BODY_BUFFER;
    resp.body.data = (const uint8_t *)body;
    resp.body.len = len;
    resp.body.copy = 1;
  }
  return uvq_h3_respond(st, &resp);
}

static int respond_text(uvq_h3_stream *st, request *r, unsigned int status,
                        const char *text) {
  hdrs hs;

  hdrs_init(&hs, r);
  if (status == 405) {
    hdr_add(&hs, "allow", "GET, HEAD");
  }
  return respond_buffer(st, r, status, &hs, "text/plain; charset=utf-8", text,
                        strlen(text));
}

/* The value of request field |name| (lower case, as HTTP/3 sends them), or
 * NULL. */
static const char *find_field(const uvq_h3_request_info *req, const char *name,
                              size_t *plen) {
  size_t i, nlen = strlen(name);

  for (i = 0; i < req->nheaders; ++i) {
    const uvq_h3_header *h = &req->headers[i];
    if (h->namelen == nlen && strncasecmp(h->name, name, nlen) == 0) {
      *plen = h->valuelen;
      return h->value;
    }
  }
  *plen = 0;
  return NULL;
}

static int respond_listing(uvq_h3_stream *st, request *r,
                           uvq_http_resolved *res) {
  char *body;
  size_t len;
  hdrs hs;
  int rv;

  if (uvq_http_autoindex(res->fd, res->path, &body, &len) != 0) {
    return respond_text(st, r, 500, "internal server error\n");
  }
  hdrs_init(&hs, r);
  rv = respond_buffer(st, r, 200, &hs, "text/html; charset=utf-8", body, len);
  free(body);
  return rv;
}

/* A regular file: validators, conditionals, Range. */
static int respond_file(uvq_h3_stream *st, request *r,
                        const uvq_h3_request_info *req, uvq_http_resolved *res,
                        uvq_file **pfile) {
  server *s = r->s;
  uvq_http_conditions cond;
  uvq_http_plan plan;
  uvq_h3_response resp;
  char etag[UVQ_HTTP_ETAG_LEN], lastmod[UVQ_HTTP_DATE_LEN], crange[80];
  const char *type = uvq_mime_type(&s->mime, res->path);
  hdrs hs;

  memset(&cond, 0, sizeof(cond));
  cond.if_none_match =
      find_field(req, "if-none-match", &cond.if_none_match_len);
  cond.if_modified_since =
      find_field(req, "if-modified-since", &cond.if_modified_since_len);
  cond.range = find_field(req, "range", &cond.range_len);
  cond.if_range = find_field(req, "if-range", &cond.if_range_len);
  uvq_http_etag(&res->st, etag);
  uvq_http_format_date(res->st.st_mtim.tv_sec, lastmod);
  uvq_http_evaluate(&cond, &res->st, etag, &plan);

  hdrs_init(&hs, r);
  hdr_add(&hs, "last-modified", lastmod);
  hdr_add(&hs, "etag", etag);
  hdr_add(&hs, "accept-ranges", "bytes");
  if (s->cache_control != NULL) {
    hdr_add(&hs, "cache-control", s->cache_control);
  }
  if (plan.status == 304) {
    /* RFC 9110 §15.4.5: the validators and Cache-Control, no body, no
     * content fields. */
    r->status = 304;
    memset(&resp, 0, sizeof(resp));
    resp.status = 304;
    resp.headers = hs.h;
    resp.nheaders = hs.n;
    resp.body.type = UVQ_H3_BODY_NONE;
    return uvq_h3_respond(st, &resp);
  }
  if (plan.status == 416) {
    snprintf(crange, sizeof(crange), "bytes */%" PRIu64,
             (uint64_t)res->st.st_size);
    hdr_add(&hs, "content-range", crange);
    return respond_buffer(st, r, 416, &hs, "text/plain; charset=utf-8",
                          "range not satisfiable\n", 22);
  }
  if (plan.status == 206) {
    snprintf(crange, sizeof(crange), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
             plan.offset, plan.offset + plan.length - 1,
             (uint64_t)res->st.st_size);
    hdr_add(&hs, "content-range", crange);
  }
  r->file = *pfile;
  *pfile = NULL;
  r->off = plan.offset;
  r->size = plan.offset + plan.length;
  r->status = plan.status;
  snprintf(hs.clen, sizeof(hs.clen), "%" PRIu64, plan.length);
  hdr_add(&hs, "content-type", type);
  hdr_add(&hs, "content-length", hs.clen);
  memset(&resp, 0, sizeof(resp));
  resp.status = plan.status;
  resp.headers = hs.h;
  resp.nheaders = hs.n;
  if (r->head) {
    resp.body.type = UVQ_H3_BODY_NONE;
  } else {
    resp.body.type = UVQ_H3_BODY_PROVIDER;
    resp.body.read = file_read;
    resp.body.read_user_data = r;
  }
  return uvq_h3_respond(st, &resp);
}

static int h3_on_request(uvq_h3_stream *st, const uvq_h3_request_info *req,
                         void *user_data) {
  h3_shard *sh = user_data;
  server *s = sh->s;
  uvq_http_resolved *res;
  uvq_file *file = NULL;
  request *r;
  hdrs hs;
  int rv;

  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    return -1;
  }
  r->s = s;
  r->sh = sh;
  r->start = uv_hrtime();
  uvq_h3_stream_set_user_data(st, r);
  /* What only the access log reads: not formatted under --quiet (an
   * address to text and two escapes per request). */
  if (!s->quiet) {
    peer_of(uvq_h3_conn_get_conn(uvq_h3_stream_get_conn(st)), r->peer,
            sizeof(r->peer));
    log_escape(r->method, sizeof(r->method), req->method, req->methodlen);
    log_escape(r->path, sizeof(r->path), req->path, req->pathlen);
  }

  r->head = req->methodlen == 4 && memcmp(req->method, "HEAD", 4) == 0;
  if (!r->head &&
      !(req->methodlen == 3 && memcmp(req->method, "GET", 3) == 0)) {
    return respond_text(st, r, 405, "method not allowed\n");
  }
  res = &sh->res;
  switch (uvq_file_cache_resolve(&sh->fcache, &s->fs, req->path, req->pathlen,
                                 s->autoindex ? UVQ_HTTP_AUTOINDEX : 0,
                                 uv_hrtime(), res, &file)) {
  case UVQ_HTTP_FILE:
    rv = respond_file(st, r, req, res, &file);
    break;
  case UVQ_HTTP_LISTING:
    rv = respond_listing(st, r, res);
    break;
  case UVQ_HTTP_REDIRECT:
    hdrs_init(&hs, r);
    hdr_add(&hs, "location", res->location);
    rv = respond_buffer(st, r, 308, &hs, "text/plain; charset=utf-8",
                        "moved permanently\n", 18);
    break;
  case UVQ_HTTP_BAD_REQUEST:
    rv = respond_text(st, r, 400, "bad request\n");
    break;
  case UVQ_HTTP_NOT_FOUND:
    rv = respond_text(st, r, 404, "not found\n");
    break;
  case UVQ_HTTP_FORBIDDEN:
    rv = respond_text(st, r, 403, "forbidden\n");
    break;
  default:
    rv = respond_text(st, r, 500, "internal server error\n");
    break;
  }
  if (res->fd >= 0) {
    close(res->fd);
  }
  if (file != NULL) {
    /* Not streamed (HEAD, 304, 416): back to the cache. */
    uvq_file_release(file);
  }
  return rv;
}

static void h3_on_stream_close(uvq_h3_stream *st, int error, uint64_t app_error,
                               void *user_data) {
  request *r = uvq_h3_stream_get_user_data(st);
  uint64_t acked;
  int complete;

  (void)app_error;
  (void)user_data;
  if (r == NULL) {
    return;
  }
  /* Only what the client acknowledged counts. A client that closes the
   * connection as soon as it has the body (gtlsclient does) may do so
   * before acknowledging our last packets: that is logged as it is,
   * aborted with the bytes acknowledged, since nothing tells us more. */
  acked = uvq_h3_stream_get_acked(st, &complete);
  access_log(r->s, r->peer, "h3", r->method, r->path, r->status, acked,
             r->start,
             complete ? NULL
             : error  ? uvq_h3_strerror(error)
                      : "stream reset");
  if (r->file != NULL) {
    uvq_file_release(r->file);
  }
  free(r);
}

static void print_version(void) {
  printf("uvquic-server %s (ngtcp2 %s, nghttp3 %s, GnuTLS %s)\n", UVQ_VERSION,
         ngtcp2_version(0)->version_str, nghttp3_version(0)->version_str,
         gnutls_check_version(NULL));
}

/* --threads' default: the CPUs this process may run on (its affinity
 * mask, as taskset or a cgroup cpuset leave it), at most 32. */
static unsigned default_threads(void) {
  cpu_set_t set;
  int n;

  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    return 1;
  }
  n = CPU_COUNT(&set);
  return n < 1 ? 1 : n > UVQ_UV_MAX_SHARDS ? UVQ_UV_MAX_SHARDS : (unsigned)n;
}

static void usage(FILE *f) {
  uvq_settings d;

  /* The transport defaults are the library's: read, not restated. */
  uvq_settings_default(&d);
  fprintf(
      f,
      "usage: uvquic-server [--listen HOST:PORT] [--root DIR] "
      "[--cert FILE --key FILE] [OPTIONS]\n"
      "Serves DIR over HTTP/3 (ALPN h3) and hq-interop. Every option, with\n"
      "its default:\n"
      "  --listen HOST:PORT         default 127.0.0.1:4433\n"
      "  --root DIR                 directory served (default .)\n"
      "  --cert FILE, --key FILE    PEM certificate chain and key (default:\n"
      "                             an ephemeral self-signed certificate)\n"
      "  --write-cert FILE          write the certificate's PEM (default\n"
      "                             none; a client's CA file)\n"
      "  --keys-file FILE           load token keys, reset secret and\n"
      "                             ticket master key (mode 0600; default\n"
      "                             random keys per run)\n"
      "  --gen-keys FILE            write a new key file and exit\n"
      "  --mime-types FILE          media types (mime.types format; default\n"
      "                             " UVQ_MIME_TYPES_PATH
      " if present, always a\n"
      "                             built-in list of the common web types)\n"
      "  --autoindex                list a directory without index.html\n"
      "                             (default off: 404)\n"
      "  --cache-control VALUE      Cache-Control of every file response\n"
      "                             (default none)\n"
      "  --file-cache ENTRIES[,KIB[,MS]]\n"
      "                             per shard, keep up to ENTRIES files\n"
      "                             open (those of 16 KiB or less read into\n"
      "                             memory, KIB KiB in all; at most %zu\n"
      "                             larger ones, fewer if RLIMIT_NOFILE / 4\n"
      "                             is less than the caches need), each\n"
      "                             reused for MS ms before it is looked up\n"
      "                             again;\n"
      "                             0 disables (default %zu,%zu,%" PRIu64 ")\n"
      "  --threads N                shards: N threads, each with its own\n"
      "                             loop, endpoint and socket on the same\n"
      "                             address (SO_REUSEPORT), 1..32 (default:\n"
      "                             the CPUs this process may run on, from\n"
      "                             sched_getaffinity: %u here)\n"
      "  --shutdown-timeout S       on SIGINT/SIGTERM: stop accepting, "
      "GOAWAY,\n"
      "                             let requests in flight finish for up to S\n"
      "                             seconds, then close (default 10; a second\n"
      "                             signal closes at once)\n"
      "  --retry[=always|auto]      address validation with Retry (default\n"
      "                             off; plain --retry: always; auto: under\n"
      "                             load)\n"
      "  --max-handshakes N         handshakes in flight (default %zu;\n"
      "                             beyond: Retry if --retry, else refused)\n"
      "  --max-handshakes-per-source N\n"
      "                             per IPv4 address or IPv6 /64 (default\n"
      "                             %zu; 0 = no limit)\n"
      "  --max-connections-per-source N\n"
      "                             per IPv4 address or IPv6 /64 (default\n"
      "                             %zu; 0 = no limit)\n"
      "  --conn-send-budget KIB     send buffers per connection (default\n"
      "                             %zu)\n"
      "  --endpoint-send-budget KIB send buffers of all connections\n"
      "                             (default %zu; 0 = no limit)\n"
      "  --conn-recv-budget KIB     received bytes held per connection\n"
      "                             (partial headers, request lines;\n"
      "                             default %zu; 0 = no limit)\n"
      "  --endpoint-recv-budget KIB the same for all connections (default\n"
      "                             %zu; 0 = no limit)\n"
      "  --no-idle-eviction         under memory pressure (an endpoint\n"
      "                             budget at 90 %%) refuse new connections\n"
      "                             instead of closing the longest-idle\n"
      "                             (default off)\n"
      "  --quic-versions LIST       QUIC versions accepted, most preferred\n"
      "                             first: v1, v2 (default v1,v2; v2,v1\n"
      "                             upgrades clients that offer v2; v2\n"
      "                             alone answers v1 with Version\n"
      "                             Negotiation)\n"
      "  --quiet                    no access log, no counters at exit\n"
      "                             (default off)\n"
      "  --initial-rtt MS           RTT assumed before the first sample\n"
      "                             (default %" PRIu64 ")\n"
      "  --header-timeout S         a request's header section (h3) or\n"
      "                             request line (hq) must arrive within S\n"
      "                             seconds of its stream's first frame,\n"
      "                             else the stream is reset (default 10;\n"
      "                             0 = no limit)\n"
      "  --request-timeout S        h3: close a connection that has sent\n"
      "                             no whole request S seconds after it was\n"
      "                             accepted (default 30; 0 = never)\n"
      "  --max-field-section-size N h3: largest request header section\n"
      "                             (RFC 9114 size; default 16384; larger:\n"
      "                             431, as soon as its frame says so)\n"
      "  --max-request-line N       hq: longest request line, CRLF included\n"
      "                             (16..65536, default 4096)\n"
      "  --metrics-file FILE        rewrite FILE every second with the\n"
      "                             Prometheus counters (default none)\n"
      "  --no-early-data            refuse 0-RTT; session tickets then allow\n"
      "                             resumption only (default: 0-RTT on)\n"
      "  --quic-lb CONFIG|@FILE     issue QUIC-LB connection IDs a load\n"
      "                             balancer routes by (draft-ietf-quic-\n"
      "                             load-balancers-21). CONFIG:\n"
      "                             cr=N,sid=HEX,nonce=N[,key=HEX]\n"
      "                             [,encode-len]: config rotation 0..6\n"
      "                             (default 0), this server's ID (1..15\n"
      "                             octets), nonce octets (4..18, default\n"
      "                             8; sid + nonce 7..19), 16-octet AES key\n"
      "                             (default none: server ID in the clear),\n"
      "                             length in the first octet; @FILE reads\n"
      "                             CONFIG from FILE (mode 0600). Default\n"
      "                             off: random CIDs\n"
      "  --cc reno|cubic|bbr        congestion controller (default cubic)\n"
      "  --max-data BYTES           connection flow-control window we grant\n"
      "                             (default %" PRIu64 ")\n"
      "  --max-stream-data BYTES    per-stream flow-control window we grant\n"
      "                             (default %" PRIu64 ")\n"
      "  --max-streams N            bidi and uni streams the peer may open\n"
      "                             (default %" PRIu64 ")\n"
      "  --idle-timeout SECONDS     idle timeout (default %" PRIu64 ")\n"
      "  --keep-alive MS            PING interval (default off)\n"
      "  --no-pmtud                 no path MTU discovery (default: on)\n"
      "  --disable-migration        forbid the peer from migrating (default:\n"
      "                             allowed)\n"
      "  --max-udp-payload N|auto   largest UDP payload we send (1200..65527;\n"
      "                             default auto: the link's MTU, at most\n"
      "                             %d)\n"
      "  --max-connections N        connections at once (default %zu; 0 = no\n"
      "                             limit)\n"
      "  -v, --verbose, -vv         log connection lifecycle (info) or\n"
      "                             ngtcp2's trace (debug) to stderr, with\n"
      "                             the SCID (default off)\n"
      "  --qlog-dir DIR             one qlog (JSON-SEQ) per connection, named\n"
      "                             ODCID-ROLE.sqlog (default off)\n"
      "  --version                  print the versions and exit\n"
      "  -h, --help                 this text\n"
      "Signals: SIGINT/SIGTERM shut down gracefully (see\n"
      "--shutdown-timeout); SIGHUP reloads --cert/--key and --keys-file for\n"
      "new handshakes without dropping a connection (a file that does not\n"
      "load is reported and the old ones kept) and empties the file cache. "
      "SSLKEYLOGFILE=FILE appends\n"
      "the TLS secrets to FILE (for Wireshark).\n",
      (size_t)UVQ_FILE_CACHE_FDS, (size_t)UVQ_FILE_CACHE_ENTRIES,
      UVQ_FILE_CACHE_BYTES >> 10, UVQ_FILE_CACHE_VALID / UVQ_MILLISECONDS,
      default_threads(), d.max_handshakes, d.max_handshakes_per_source,
      d.max_connections_per_source, d.conn_send_budget >> 10,
      d.endpoint_send_budget >> 10, d.conn_recv_budget >> 10,
      d.endpoint_recv_budget >> 10, d.initial_rtt / UVQ_MILLISECONDS,
      d.initial_max_data, d.initial_max_stream_data, d.max_streams_bidi,
      d.idle_timeout / UVQ_SECONDS, UVQ_UDP_PAYLOAD_AUTO_MAX,
      d.max_connections);
}

static int on_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks,
                     void **pconn_user_data, void *user_data) {
  server *s = user_data;
  /* On the thread of shard |l|: its own servers. */
  unsigned i = uvq_uv_endpoint_get_shard_index(l);

  if (info->alpnlen == sizeof(UVQ_H3_ALPN) - 1 &&
      memcmp(info->alpn, UVQ_H3_ALPN, info->alpnlen) == 0) {
    return uvq_h3_server_accept(s->h3[i], conn, uv_hrtime(), pcallbacks,
                                pconn_user_data);
  }
  if (info->alpnlen == sizeof(UVQ_HQ_ALPN) - 1 &&
      memcmp(info->alpn, UVQ_HQ_ALPN, info->alpnlen) == 0) {
    return uvq_hq_server_accept(s->hq[i], conn, pcallbacks, pconn_user_data);
  }
  /* No application for this ALPN: CONNECTION_REFUSED. */
  return UVQ_ERR_REFUSED;
}

static void print_stats(uvq_uv_endpoint *uep) {
  unsigned nshards = uvq_uv_endpoint_get_shard_count(uep);
  uvq_uv_stats us;
  uvq_endpoint_stats st;
  uint64_t dropped = 0;
  char reasons[1024];
  size_t off = 0;
  int r;

  /* With shards, the sum over all of them. */
  uvq_uv_endpoint_get_endpoint_stats(uep, &st);
  reasons[0] = '\0';
  for (r = 0; r < UVQ_DROP_REASON_COUNT; ++r) {
    if (st.dropped[r] == 0) {
      continue;
    }
    dropped += st.dropped[r];
    if (off < sizeof(reasons)) {
      int n = snprintf(reasons + off, sizeof(reasons) - off, "%s%s=%" PRIu64,
                       off ? " " : "", uvq_drop_reason_name((uvq_drop_reason)r),
                       st.dropped[r]);
      if (n > 0) {
        off += (size_t)n;
      }
    }
  }
  printf("stats: received=%" PRIu64 " dropped=%" PRIu64 " (%s) sent=%" PRIu64
         " connections=%" PRIu64 " version_negotiations=%" PRIu64
         " retries=%" PRIu64 " stateless_closes=%" PRIu64 " v1=%" PRIu64
         " v2=%" PRIu64 " compatible_upgrades=%" PRIu64 "\n",
         st.datagrams_received, dropped, off ? reasons : "none",
         st.datagrams_sent, st.connections_total, st.version_negotiations_sent,
         st.retries_sent, st.stateless_closes_sent, st.handshakes_by_version[0],
         st.handshakes_by_version[1], st.compatible_upgrades);
  if (uvq_uv_endpoint_get_stats(uep, &us) == 0) {
    printf("datapath: send_calls=%" PRIu64 " messages=%" PRIu64
           " gso_messages=%" PRIu64 " queued_batches=%" PRIu64
           " send_errors=%" PRIu64 " gso_fallbacks=%" PRIu64
           " recv_calls=%" PRIu64 " gro_buffers=%" PRIu64
           " timer_fires=%" PRIu64 " expiry_immediate=%" PRIu64 "\n",
           us.send_calls, us.send_msgs, us.gso_msgs, us.queued_batches,
           us.send_errors, us.gso_fallbacks, us.recv_calls, us.gro_buffers,
           us.timer_fires, us.expiry_immediate);
  }
  for (unsigned i = 0; nshards > 1 && i < nshards; i++) {
    uvq_endpoint_stats es;
    if (uvq_uv_endpoint_get_shard_stats(uep, i, &us, &es) == 0) {
      printf("shard %u: connections=%" PRIu64 " received=%" PRIu64
             " sent=%" PRIu64 " bytes_sent=%" PRIu64 " forwarded=%" PRIu64
             " forward_received=%" PRIu64 " forward_overflows=%" PRIu64 "\n",
             i, es.connections_total, es.datagrams_received, es.datagrams_sent,
             es.bytes_sent, us.forwarded, us.forward_received,
             us.forward_overflows);
    }
  }
  fflush(stdout);
}

/* dst[i] += src[i] for |n| counters. */
static void add_counters(uint64_t *dst, const uint64_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    dst[i] += src[i];
  }
}

/* The file caches of shard |i| (HTTP/3's and hq's), summed. */
static void shard_file_cache_stats(server *s, unsigned i,
                                   uvq_file_cache_stats *f) {
  uvq_file_cache_stats q;

  uvq_file_cache_get_stats(&s->h3ctx[i].fcache, f);
  uvq_hq_server_get_file_cache_stats(s->hq[i], &q);
  add_counters((uint64_t *)(void *)f, (const uint64_t *)(void *)&q,
               sizeof(q) / sizeof(uint64_t));
}

_Static_assert(sizeof(uvq_h3_server_stats) % sizeof(uint64_t) == 0 &&
                   sizeof(uvq_hq_server_stats) % sizeof(uint64_t) == 0 &&
                   sizeof(uvq_file_cache_stats) % sizeof(uint64_t) == 0,
               "the application counters are summed as uint64_t arrays");

/* The HTTP/3 and hq-interop counters, over every connection served. */
static void print_app_stats(server *s) {
  uvq_h3_server_stats h, h1;
  uvq_hq_server_stats q, q1;
  uvq_file_cache_stats f, f1;

  /* Read after the shards' threads ended; every field is a counter (the
   * file cache's entries and bytes are sums too). */
  memset(&h, 0, sizeof(h));
  memset(&q, 0, sizeof(q));
  memset(&f, 0, sizeof(f));
  for (unsigned i = 0; i < s->nshards; i++) {
    shard_file_cache_stats(s, i, &f1);
    add_counters((uint64_t *)(void *)&f, (const uint64_t *)(void *)&f1,
                 sizeof(f) / sizeof(uint64_t));
    uvq_h3_server_get_stats(s->h3[i], &h1);
    uvq_hq_server_get_stats(s->hq[i], &q1);
    add_counters((uint64_t *)(void *)&h, (const uint64_t *)(void *)&h1,
                 sizeof(h) / sizeof(uint64_t));
    add_counters((uint64_t *)(void *)&q, (const uint64_t *)(void *)&q1,
                 sizeof(q) / sizeof(uint64_t));
  }
  printf("h3: connections=%" PRIu64 " requests=%" PRIu64 " completed=%" PRIu64
         " rejected=%" PRIu64 " reset=%" PRIu64 " header_too_large=%" PRIu64
         " header_timeouts=%" PRIu64 " request_timeouts=%" PRIu64 "\n",
         h.connections, h.requests_started, h.requests_completed,
         h.requests_rejected, h.streams_reset, h.header_too_large,
         h.header_timeouts, h.request_timeouts);
  printf("hq: requests=%" PRIu64 " files=%" PRIu64 " bytes=%" PRIu64
         " request_timeouts=%" PRIu64 " requests_too_long=%" PRIu64 "\n",
         q.requests, q.files, q.bytes, q.request_timeouts, q.requests_too_long);
  printf("file_cache: hits=%" PRIu64 " misses=%" PRIu64 " evictions=%" PRIu64
         " expirations=%" PRIu64 " entries=%" PRIu64 " bytes=%" PRIu64
         " fds=%" PRIu64 "\n",
         f.hits, f.misses, f.evictions, f.expirations, f.entries, f.bytes,
         f.fds);
  fflush(stdout);
}

/* Room the application's counters take after the endpoint's. */
#define APP_METRICS_LEN 2048

/* Appends the Prometheus text of shard |i|'s file caches at |buf| (|len|
 * bytes): nothing if it does not fit. Returns the length appended. */
static size_t file_cache_metrics(char *buf, size_t len, server *s, unsigned i) {
  uvq_file_cache_stats f;
  int m;

  shard_file_cache_stats(s, i, &f);
  m = snprintf(buf, len,
               "# HELP uvquic_file_cache_hits_total Files served from the "
               "file cache.\n"
               "# TYPE uvquic_file_cache_hits_total counter\n"
               "uvquic_file_cache_hits_total %" PRIu64 "\n"
               "# HELP uvquic_file_cache_misses_total Files looked up on "
               "disk (not cached, or expired).\n"
               "# TYPE uvquic_file_cache_misses_total counter\n"
               "uvquic_file_cache_misses_total %" PRIu64 "\n"
               "# HELP uvquic_file_cache_evictions_total Entries dropped "
               "to stay within --file-cache.\n"
               "# TYPE uvquic_file_cache_evictions_total counter\n"
               "uvquic_file_cache_evictions_total %" PRIu64 "\n"
               "# HELP uvquic_file_cache_expirations_total Entries looked "
               "up again once older than --file-cache's validity.\n"
               "# TYPE uvquic_file_cache_expirations_total counter\n"
               "uvquic_file_cache_expirations_total %" PRIu64 "\n"
               "# HELP uvquic_file_cache_entries Files the cache holds.\n"
               "# TYPE uvquic_file_cache_entries gauge\n"
               "uvquic_file_cache_entries %" PRIu64 "\n"
               "# HELP uvquic_file_cache_bytes Bytes the cache holds.\n"
               "# TYPE uvquic_file_cache_bytes gauge\n"
               "uvquic_file_cache_bytes %" PRIu64 "\n"
               "# HELP uvquic_file_cache_fds Descriptors the cache holds "
               "open.\n"
               "# TYPE uvquic_file_cache_fds gauge\n"
               "uvquic_file_cache_fds %" PRIu64 "\n",
               f.hits, f.misses, f.evictions, f.expirations, f.entries, f.bytes,
               f.fds);
  if (m < 0 || (size_t)m >= len) {
    if (len > 0) {
      buf[0] = '\0';
    }
    return 0;
  }
  return (size_t)m;
}

/* Writes the Prometheus text of the listener's endpoint, and of the file
 * cache, to --metrics-file through a temporary file renamed over it. */
static void write_metrics(server *s, uvq_endpoint *ep) {
  ssize_t n =
      uvq_endpoint_write_prometheus(ep, s->metrics_buf, s->metrics_cap, NULL);

  if (n >= 0 && (size_t)n + APP_METRICS_LEN >= s->metrics_cap) {
    char *nb = realloc(s->metrics_buf, (size_t)n + APP_METRICS_LEN + 4096);
    if (nb == NULL) {
      return;
    }
    s->metrics_buf = nb;
    s->metrics_cap = (size_t)n + APP_METRICS_LEN + 4096;
    n = uvq_endpoint_write_prometheus(ep, s->metrics_buf, s->metrics_cap, NULL);
  }
  if (n < 0 || (size_t)n >= s->metrics_cap) {
    return;
  }
  n += (ssize_t)file_cache_metrics(s->metrics_buf + n,
                                   s->metrics_cap - (size_t)n, s, 0);
  if (cli_write_atomic(s->metrics_file, s->metrics_buf, (size_t)n, 0644) != 0) {
    fprintf(stderr, "uvquic-server: cannot write %s: %s\n", s->metrics_file,
            strerror(errno));
  }
}

/* On a shard's thread: its Prometheus text, labelled, for the main
 * thread's next write. */
static void shard_metrics(uvq_uv_endpoint *shard, void *arg) {
  server *s = arg;
  unsigned i = uvq_uv_endpoint_get_shard_index(shard);
  uvq_endpoint *ep = uvq_uv_endpoint_get_endpoint(shard);
  ssize_t n = uvq_endpoint_write_prometheus(ep, NULL, 0, NULL);
  char *text, *labelled, label[32];
  uvq_uv_stats us;
  int m;

  /* The core's counters, then the adapter's forwarding ones. */
  if (n < 0 || (text = malloc((size_t)n + 1024 + APP_METRICS_LEN)) == NULL) {
    return;
  }
  (void)uvq_endpoint_write_prometheus(ep, text, (size_t)n + 1, NULL);
  uvq_uv_endpoint_get_stats(shard, &us);
  m = snprintf(
      text + n, 1023,
      "# HELP uvquic_forwarded_total Datagrams read by this shard that "
      "another owns, handed to it.\n"
      "# TYPE uvquic_forwarded_total counter\n"
      "uvquic_forwarded_total %" PRIu64 "\n"
      "# HELP uvquic_forward_received_total Datagrams another shard read "
      "and handed to this one.\n"
      "# TYPE uvquic_forward_received_total counter\n"
      "uvquic_forward_received_total %" PRIu64 "\n"
      "# HELP uvquic_forward_overflows_total Datagrams dropped because the "
      "owner's forward queue was full.\n"
      "# TYPE uvquic_forward_overflows_total counter\n"
      "uvquic_forward_overflows_total %" PRIu64 "\n",
      us.forwarded, us.forward_received, us.forward_overflows);
  if (m < 0 || m >= 1023) {
    m = 0;
    text[n] = '\0';
  }
  (void)file_cache_metrics(text + n + m, APP_METRICS_LEN, s, i);
  snprintf(label, sizeof(label), "shard=\"%u\"", i);
  labelled = cli_prometheus_label(text, label, i == 0);
  free(text);
  if (labelled == NULL) {
    return;
  }
  uv_mutex_lock(&s->metrics_lock);
  free(s->shard_metrics[i]);
  s->shard_metrics[i] = labelled;
  uv_mutex_unlock(&s->metrics_lock);
}

/* With shards: the texts the shards last produced, one after the other
 * (Prometheus sums them: sum without (shard)). */
static void write_shard_metrics(server *s) {
  size_t len = 0;
  char *all;

  uv_mutex_lock(&s->metrics_lock);
  for (unsigned i = 0; i < s->nshards; i++) {
    len += s->shard_metrics[i] ? strlen(s->shard_metrics[i]) : 0;
  }
  all = malloc(len + 1);
  if (all != NULL) {
    len = 0;
    for (unsigned i = 0; i < s->nshards; i++) {
      size_t l = s->shard_metrics[i] ? strlen(s->shard_metrics[i]) : 0;

      if (l > 0) {
        memcpy(all + len, s->shard_metrics[i], l);
        len += l;
      }
    }
  }
  uv_mutex_unlock(&s->metrics_lock);
  if (all == NULL || len == 0) {
    free(all);
    return;
  }
  if (cli_write_atomic(s->metrics_file, all, len, 0644) != 0) {
    fprintf(stderr, "uvquic-server: cannot write %s: %s\n", s->metrics_file,
            strerror(errno));
  }
  free(all);
}

static void on_metrics_timer(uv_timer_t *t) {
  server *s = t->data;

  if (s->listener == NULL) {
    return;
  }
  if (s->nshards > 1) {
    /* What the shards wrote since the last tick, then ask for more. */
    write_shard_metrics(s);
    (void)uvq_uv_endpoint_each_shard(s->listener, shard_metrics, s);
  } else {
    write_metrics(s, uvq_uv_endpoint_get_endpoint(s->listener));
  }
}

static void on_listener_closed(uvq_uv_endpoint *uep, void *user_data) {
  server *s = user_data;

  if (s->metrics_file != NULL) {
    /* The final counters (with shards: as they last reported, just before
     * the close), then stop. */
    if (s->nshards > 1) {
      write_shard_metrics(s);
    } else {
      write_metrics(s, uvq_uv_endpoint_get_endpoint(uep));
    }
    uv_close((uv_handle_t *)&s->metrics_timer, NULL);
  }

  if (!s->quiet) {
    print_stats(uep);
    print_app_stats(s);
  }
  s->listener = NULL;
  if (s->closing) {
    uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
  }
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sighup, NULL);
}

/* While shutting down: once no connection is left, or the deadline has
 * passed, close the listener (what is left gets CONNECTION_CLOSE). */
static void on_shutdown_timer(uv_timer_t *t) {
  server *s = t->data;

  if (s->listener == NULL || s->closing > 1) {
    return;
  }
  /* With shards, the counts they publish after every pass. */
  if (uvq_uv_endpoint_conn_count(s->listener) == 0 ||
      uv_hrtime() - s->shutdown_start >= s->shutdown_timeout) {
    s->closing = 2;
    uv_timer_stop(t);
    if (s->metrics_file != NULL && s->nshards > 1) {
      /* Runs on each shard before its close request. */
      (void)uvq_uv_endpoint_each_shard(s->listener, shard_metrics, s);
    }
    uvq_uv_endpoint_close(s->listener, on_listener_closed);
  }
}

/* The first signal, on a shard's thread: no new connections, GOAWAY. */
static void shard_shutdown(uvq_uv_endpoint *shard, void *arg) {
  server *s = arg;
  unsigned i = uvq_uv_endpoint_get_shard_index(shard);

  uvq_endpoint_stop_accepting(uvq_uv_endpoint_get_endpoint(shard));
  uvq_h3_server_shutdown(s->h3[i]);
  uvq_hq_server_shutdown(s->hq[i]);
}

/*
 * The first SIGINT / SIGTERM starts a graceful shutdown: no new
 * connections, GOAWAY on HTTP/3 ones, hq ones closed as they go idle, the
 * exchanges in flight given --shutdown-timeout, then every connection
 * closed. A second closes everything at once (CONNECTION_CLOSE still sent,
 * closing periods not waited out).
 */
static void on_signal(uv_signal_t *h, int signum) {
  server *s = h->data;

  (void)signum;
  if (s->listener == NULL) {
    return;
  }
  if (s->closing) {
    s->closing = 3;
    uv_timer_stop(&s->shutdown_timer);
    if (s->metrics_file != NULL && s->nshards > 1) {
      (void)uvq_uv_endpoint_each_shard(s->listener, shard_metrics, s);
    }
    uvq_uv_endpoint_close_now(s->listener, on_listener_closed);
    return;
  }
  s->closing = 1;
  if (!s->quiet) {
    printf("shutting down: %zu connection(s), up to %.1fs (a second signal "
           "closes them now)\n",
           uvq_uv_endpoint_conn_count(s->listener),
           (double)s->shutdown_timeout / 1e9);
  }
  /* On every shard's thread (at once without shards). */
  (void)uvq_uv_endpoint_each_shard(s->listener, shard_shutdown, s);
  /* uvq_h3_server_shutdown closes connections without a request in flight
   * from the libuv driver's next pass; the timer sees them go. */
  s->shutdown_start = uv_hrtime();
  uv_timer_init(s->loop, &s->shutdown_timer);
  s->shutdown_timer.data = s;
  uv_timer_start(&s->shutdown_timer, on_shutdown_timer, 10, 20);
}

static int write_cert(uvq_tls_ctx *tls, const char *path);

/* The TLS configuration of the server: from the start and on SIGHUP. */
static void tls_config(server *s, uvq_tls_config *tcfg, const uvq_keys *keys,
                       uvq_settings *settings) {
  static const char *const alpn[] = {UVQ_H3_ALPN, UVQ_HQ_ALPN};

  uvq_tls_config_default(tcfg);
  tcfg->cert_file = s->cert;
  tcfg->key_file = s->key;
  tcfg->alpn = alpn;
  tcfg->alpnlen = 2;
  if (keys != NULL) {
    uvq_keys_apply(keys, settings, tcfg);
  }
}

/* A SIGHUP reload with shards: uvq_tls_ctx_reload may not run while any
 * shard uses the context, so every shard waits in pause_shard until the
 * main thread has reloaded it, then reloads its own endpoint's keys. */
typedef struct reload_barrier {
  uv_mutex_t lock;
  uv_cond_t cond;
  unsigned paused, resumed;
  int released;
  const uvq_keys *keys;
  int rv;
} reload_barrier;

static void pause_shard(uvq_uv_endpoint *shard, void *arg) {
  reload_barrier *b = arg;
  int rv = 0;

  uv_mutex_lock(&b->lock);
  b->paused++;
  uv_cond_broadcast(&b->cond);
  while (!b->released) {
    uv_cond_wait(&b->cond, &b->lock);
  }
  uv_mutex_unlock(&b->lock);
  if (b->rv == 0) {
    rv = uvq_endpoint_reload_keys(uvq_uv_endpoint_get_endpoint(shard), b->keys);
  }
  uv_mutex_lock(&b->lock);
  if (rv != 0) {
    b->rv = rv;
  }
  b->resumed++;
  uv_cond_broadcast(&b->cond);
  uv_mutex_unlock(&b->lock);
}

static int reload_shards(server *s, const uvq_tls_config *tcfg,
                         const uvq_keys *keys, char *err, size_t errlen) {
  reload_barrier b;
  int n;

  memset(&b, 0, sizeof(b));
  b.keys = keys;
  if (uv_mutex_init(&b.lock) != 0) {
    return UVQ_ERR_NOMEM;
  }
  if (uv_cond_init(&b.cond) != 0) {
    uv_mutex_destroy(&b.lock);
    return UVQ_ERR_NOMEM;
  }
  n = uvq_uv_endpoint_each_shard(s->listener, pause_shard, &b);
  uv_mutex_lock(&b.lock);
  while (n > 0 && b.paused < (unsigned)n) {
    uv_cond_wait(&b.cond, &b.lock);
  }
  /* Every shard is parked: the context is ours alone. */
  b.rv = n < 0 ? n : uvq_tls_ctx_reload(s->tls, tcfg, err, errlen);
  b.released = 1;
  uv_cond_broadcast(&b.cond);
  while (n > 0 && b.resumed < (unsigned)n) {
    uv_cond_wait(&b.cond, &b.lock);
  }
  uv_mutex_unlock(&b.lock);
  uv_cond_destroy(&b.cond);
  uv_mutex_destroy(&b.lock);
  return b.rv;
}

/* On a shard's thread (SIGHUP): its file caches emptied. */
static void shard_clear_file_cache(uvq_uv_endpoint *shard, void *arg) {
  server *s = arg;
  unsigned i = uvq_uv_endpoint_get_shard_index(shard);

  uvq_file_cache_clear(&s->h3ctx[i].fcache);
  uvq_hq_server_clear_file_cache(s->hq[i]);
}

/*
 * SIGHUP: the certificate, key and keys file are read again and, if all
 * of them load, used for the handshakes from now on; connections are not
 * touched. A file that does not load is reported and the old ones kept.
 */
static void on_sighup(uv_signal_t *h, int signum) {
  server *s = h->data;
  uvq_tls_config tcfg;
  uvq_keys keys;
  char err[512];
  int rv;

  (void)signum;
  if (s->listener == NULL || s->closing) {
    return;
  }
  /* Files are looked up afresh, whatever becomes of the keys. */
  (void)uvq_uv_endpoint_each_shard(s->listener, shard_clear_file_cache, s);
  if (s->keys_file != NULL &&
      cli_keys_load(&keys, s->keys_file, err, sizeof(err)) != 0) {
    fprintf(stderr,
            "uvquic-server: SIGHUP: %s; keeping the certificate and keys in "
            "use\n",
            err);
    return;
  }
  if (s->cert == NULL && s->keys_file == NULL) {
    fprintf(stderr, "uvquic-server: SIGHUP: nothing to reload (no --cert, no "
                    "--keys-file)\n");
    return;
  }
  /* Without --cert the ephemeral certificate stays (cert_file NULL). */
  tls_config(s, &tcfg, s->keys_file ? &keys : NULL, NULL);
  err[0] = '\0';
  if (s->nshards > 1) {
    rv = reload_shards(s, &tcfg, s->keys_file ? &keys : NULL, err, sizeof(err));
  } else {
    rv = uvq_tls_ctx_reload(s->tls, &tcfg, err, sizeof(err));
  }
  if (rv != 0) {
    fprintf(stderr,
            "uvquic-server: SIGHUP: %s; keeping the certificate and keys in "
            "use\n",
            err[0] ? err : uvq_strerror(rv));
    return;
  }
  rv = s->nshards > 1
           ? 0
           : uvq_endpoint_reload_keys(uvq_uv_endpoint_get_endpoint(s->listener),
                                      s->keys_file ? &keys : NULL);
  if (rv != 0) {
    fprintf(stderr, "uvquic-server: SIGHUP: keys: %s\n", uvq_strerror(rv));
    return;
  }
  if (s->cert_out != NULL) {
    (void)write_cert(s->tls, s->cert_out);
  }
  if (!s->quiet) {
    printf("reloaded:%s%s%s%s\n", s->cert ? " certificate " : "",
           s->cert ? s->cert : "", s->keys_file ? " keys " : "",
           s->keys_file ? s->keys_file : "");
  }
}

static int write_cert(uvq_tls_ctx *tls, const char *path) {
  ssize_t len = uvq_tls_ctx_get_cert_pem(tls, NULL, 0);
  char *pem;
  FILE *f;
  int ok;

  if (len < 0) {
    fprintf(stderr, "uvquic-server: cannot get the certificate: %s\n",
            uvq_strerror((int)len));
    return -1;
  }
  pem = malloc((size_t)len + 1);
  if (pem == NULL ||
      uvq_tls_ctx_get_cert_pem(tls, pem, (size_t)len + 1) != len) {
    fprintf(stderr, "uvquic-server: cannot get the certificate\n");
    free(pem);
    return -1;
  }
  f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "uvquic-server: cannot write certificate to %s: %s\n", path,
            strerror(errno));
    free(pem);
    return -1;
  }
  ok = fwrite(pem, 1, (size_t)len, f) == (size_t)len;
  ok = (fclose(f) == 0) && ok;
  free(pem);
  if (!ok) {
    fprintf(stderr, "uvquic-server: cannot write certificate to %s\n", path);
    return -1;
  }
  return 0;
}

/* load_quic_lb parses --quic-lb's |arg| (CONFIG, or @FILE holding it)
 * into |cfg|; exits with the reason when it is refused. */
static void load_quic_lb(const char *arg, uvq_lb_config *cfg) {
  char text[512];
  const char *reason = NULL;
  struct stat st;
  size_t n = 0;
  ssize_t r = 0;
  int fd;

  if (arg[0] == '@') {
    /* O_NONBLOCK: a FIFO must not block the open; it is refused below. */
    fd = open(arg + 1, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      cli_fail_usage("bad --quic-lb: cannot open %s: %s", arg + 1,
                     strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      cli_fail_usage("bad --quic-lb: %s is not a regular file", arg + 1);
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
      close(fd);
      cli_fail_usage("bad --quic-lb: %s may be read by others (it holds the "
                     "key; chmod 600)",
                     arg + 1);
    }
    /* One byte more than fits: a longer file is refused, not cut. */
    while (n < sizeof(text) &&
           ((r = read(fd, text + n, sizeof(text) - n)) > 0 ||
            (r < 0 && errno == EINTR))) {
      n += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    if (r < 0) {
      cli_fail_usage("bad --quic-lb: cannot read %s: %s", arg + 1,
                     strerror(errno));
    }
    if (n == sizeof(text)) {
      cli_fail_usage("bad --quic-lb: %s is longer than %zu bytes", arg + 1,
                     sizeof(text) - 1);
    }
    text[n] = '\0';
    /* One line; trailing white space (the newline) is not part of it. */
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' ||
                     text[n - 1] == ' ' || text[n - 1] == '\t')) {
      text[--n] = '\0';
    }
    arg = text;
  }
  if (uvq_lb_config_parse(cfg, arg, &reason) != 0) {
    cli_fail_usage("bad --quic-lb: %s", reason);
  }
  if (1 + cfg->server_id_len + cfg->nonce_len < 8) {
    cli_fail_usage("%s", "bad --quic-lb: server ID and nonce must be 7 "
                         "octets or more together (a server's CIDs are at "
                         "least 8)");
  }
  gnutls_memset(text, 0, sizeof(text));
}

/* A budget option given in KiB (|min|..|max|), in bytes. */
static size_t parse_kib(const char *opt, uint64_t min, uint64_t max) {
  return (size_t)cli_parse_u64(optarg, opt, min, max) << 10;
}

/* --file-cache ENTRIES[,KIB[,MS]]: what is not given keeps its default. */
static void parse_file_cache(const char *arg, uvq_file_cache_config *cfg) {
  char buf[64], *parts[3] = {NULL, NULL, NULL}, *p;
  size_t n = 0, len = strlen(arg);

  if (len >= sizeof(buf)) {
    cli_fail_usage("bad --file-cache \"%s\" (ENTRIES[,KIB[,MS]])", arg);
  }
  memcpy(buf, arg, len + 1);
  for (p = buf; n < 3; ++n) {
    parts[n] = p;
    p = strchr(p, ',');
    if (p == NULL) {
      ++n;
      break;
    }
    *p++ = '\0';
  }
  if (p != NULL) {
    cli_fail_usage("bad --file-cache \"%s\" (ENTRIES[,KIB[,MS]])", arg);
  }
  cfg->max_entries =
      (size_t)cli_parse_u64(parts[0], "--file-cache ENTRIES", 0, 1000000);
  if (parts[1] != NULL) {
    cfg->max_bytes =
        (size_t)cli_parse_u64(parts[1], "--file-cache KIB", 0, 16u << 20) << 10;
  }
  if (parts[2] != NULL) {
    cfg->valid = cli_parse_u64(parts[2], "--file-cache MS", 0, 86400000) *
                 UVQ_MILLISECONDS;
  }
}

/* The descriptors the file caches may hold open (two per shard: HTTP/3
 * and hq), together at most a quarter of RLIMIT_NOFILE: the rest is for
 * sockets, files being sent uncached, the logs. */
static void file_cache_fd_budget(uvq_file_cache_config *cfg, unsigned nshards) {
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    rlim_t each = rl.rlim_cur / 4 / (2 * (rlim_t)nshards);
    if ((rlim_t)cfg->max_fds > each) {
      cfg->max_fds = (size_t)each;
    }
  }
}

/* What main set up for the shards and the files, once they are done. */
static void server_free(server *s) {
  for (unsigned i = 0; i < s->nshards; i++) {
    uvq_h3_server_del(s->h3[i]);
    uvq_file_cache_free(&s->h3ctx[i].fcache);
    uvq_hq_server_del(s->hq[i]);
    free(s->shard_metrics[i]);
  }
  uv_mutex_destroy(&s->metrics_lock);
  uvq_fileserve_free(&s->fs);
  uvq_mime_table_free(&s->mime);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"root", required_argument, NULL, 'r'},
      {"cert", required_argument, NULL, 'c'},
      {"key", required_argument, NULL, 'K'},
      {"retry", optional_argument, NULL, 'R'},
      {"quiet", no_argument, NULL, 'q'},
      {"write-cert", required_argument, NULL, 'w'},
      {"initial-rtt", required_argument, NULL, 'I'},
      {"keys-file", required_argument, NULL, CLI_OPT_FIRST_TOOL},
      {"gen-keys", required_argument, NULL, CLI_OPT_FIRST_TOOL + 1},
      {"metrics-file", required_argument, NULL, CLI_OPT_FIRST_TOOL + 2},
      {"max-handshakes", required_argument, NULL, CLI_OPT_FIRST_TOOL + 10},
      {"max-handshakes-per-source", required_argument, NULL,
       CLI_OPT_FIRST_TOOL + 11},
      {"max-connections-per-source", required_argument, NULL,
       CLI_OPT_FIRST_TOOL + 12},
      {"header-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 20},
      {"request-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 21},
      {"max-field-section-size", required_argument, NULL,
       CLI_OPT_FIRST_TOOL + 22},
      {"max-request-line", required_argument, NULL, CLI_OPT_FIRST_TOOL + 23},
      {"quic-versions", required_argument, NULL, CLI_OPT_FIRST_TOOL + 30},
      {"no-early-data", no_argument, NULL, CLI_OPT_FIRST_TOOL + 24},
      {"conn-send-budget", required_argument, NULL, CLI_OPT_FIRST_TOOL + 13},
      {"endpoint-send-budget", required_argument, NULL,
       CLI_OPT_FIRST_TOOL + 14},
      {"conn-recv-budget", required_argument, NULL, CLI_OPT_FIRST_TOOL + 15},
      {"endpoint-recv-budget", required_argument, NULL,
       CLI_OPT_FIRST_TOOL + 16},
      {"no-idle-eviction", no_argument, NULL, CLI_OPT_FIRST_TOOL + 17},
      {"mime-types", required_argument, NULL, CLI_OPT_FIRST_TOOL + 40},
      {"autoindex", no_argument, NULL, CLI_OPT_FIRST_TOOL + 41},
      {"cache-control", required_argument, NULL, CLI_OPT_FIRST_TOOL + 42},
      {"shutdown-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 43},
      {"version", no_argument, NULL, CLI_OPT_FIRST_TOOL + 44},
      {"quic-lb", required_argument, NULL, CLI_OPT_FIRST_TOOL + 45},
      {"threads", required_argument, NULL, CLI_OPT_FIRST_TOOL + 50},
      {"file-cache", required_argument, NULL, CLI_OPT_FIRST_TOOL + 51},
      CLI_COMMON_OPTIONS,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *listen_arg = "127.0.0.1:4433", *root = ".", *cert = NULL,
             *key = NULL, *cert_out = NULL;
  char host[256], port[16], err[512], addrbuf[128];
  struct sockaddr_storage ss;
  socklen_t sslen;
  uvq_tls_config tcfg;
  uvq_settings settings;
  uvq_uv_config uvcfg;
  uvq_h3_server_config h3cfg;
  uvq_file_cache_config fccfg;
  uvq_tls_ctx *tls = NULL;
  uvq_addr bound;
  unsigned int hqflags = 0;
  uint64_t initial_rtt = 0;
  /* Slow requests (--header-timeout and the others below). */
  uint64_t header_timeout = UVQ_H3_HEADER_TIMEOUT;
  uint64_t request_timeout = UVQ_H3_REQUEST_TIMEOUT;
  uint64_t max_field_section = 16384;
  size_t max_request_line = UVQ_HQ_MAX_REQUEST;
  const char *keys_file = NULL, *gen_keys = NULL;
  /* NULL: the system's table if it is there, silently. */
  const char *mime_file = NULL;
  uvq_retry_mode retry = UVQ_RETRY_OFF;
  /* --quic-lb; uvq_endpoint_new copies it. */
  uvq_lb_config quic_lb = {0};
  int threads_set = 0;
  cli_common cc;
  uvq_keys keys;
  int c, rv;
  server s;

  memset(&s, 0, sizeof(s));
  s.shutdown_timeout = SHUTDOWN_TIMEOUT;
  s.nshards = default_threads();
  memset(&cc, 0, sizeof(cc));
  cc.role = "server";
  uvq_settings_default(&settings);
  uvq_file_cache_config_default(&fccfg);
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":hqv", opts, NULL)) != -1) {
    if (cli_common_opt(c, optarg, &settings, &cc)) {
      continue;
    }
    switch (c) {
    case 'l':
      listen_arg = optarg;
      break;
    case 'r':
      root = optarg;
      break;
    case 'c':
      cert = optarg;
      break;
    case 'K':
      key = optarg;
      break;
    case 'R':
      /* The one option whose argument is optional. The analyzer keeps this
       * optarg == NULL across getopt_long calls: the NOLINTs below, on
       * options whose argument getopt_long requires, are that. */
      if (optarg == NULL || strcmp(optarg, "always") == 0) {
        retry = UVQ_RETRY_ALWAYS;
      } else if (strcmp(optarg, "auto") == 0) {
        retry = UVQ_RETRY_AUTO;
      } else {
        cli_fail_usage("bad --retry \"%s\" (always or auto)", optarg);
      }
      break;
    case CLI_OPT_FIRST_TOOL:
      keys_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 1:
      gen_keys = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 2:
      s.metrics_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 10:
      settings.max_handshakes =
          (size_t)cli_parse_u64(optarg, "--max-handshakes", 0, 100000000);
      break;
    case CLI_OPT_FIRST_TOOL + 11:
      settings.max_handshakes_per_source = (size_t)cli_parse_u64(
          optarg, "--max-handshakes-per-source", 0, 100000000);
      break;
    case CLI_OPT_FIRST_TOOL + 12:
      settings.max_connections_per_source = (size_t)cli_parse_u64(
          optarg, "--max-connections-per-source", 0, 100000000);
      break;
    case CLI_OPT_FIRST_TOOL + 13:
      settings.conn_send_budget = parse_kib("--conn-send-budget", 1, 16u << 20);
      break;
    case CLI_OPT_FIRST_TOOL + 14:
      settings.endpoint_send_budget =
          parse_kib("--endpoint-send-budget", 0, 1u << 30);
      break;
    case CLI_OPT_FIRST_TOOL + 15:
      settings.conn_recv_budget = parse_kib("--conn-recv-budget", 0, 16u << 20);
      break;
    case CLI_OPT_FIRST_TOOL + 16:
      settings.endpoint_recv_budget =
          parse_kib("--endpoint-recv-budget", 0, 1u << 30);
      break;
    case CLI_OPT_FIRST_TOOL + 17:
      settings.no_idle_eviction = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 40:
      mime_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 41:
      s.autoindex = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 51:
      parse_file_cache(optarg, &fccfg);
      break;
    case CLI_OPT_FIRST_TOOL + 42:
      /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
      if (strpbrk(optarg, "\r\n") != NULL) {
        cli_fail_usage("%s", "bad --cache-control: a line break");
      }
      s.cache_control = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 43:
      s.shutdown_timeout =
          /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
          strcmp(optarg, "0") == 0
              ? 0
              : cli_parse_secs(optarg, "--shutdown-timeout", 86400);
      break;
    case CLI_OPT_FIRST_TOOL + 44:
      print_version();
      return CLI_EXIT_OK;
    case CLI_OPT_FIRST_TOOL + 50:
      s.nshards =
          (unsigned)cli_parse_u64(optarg, "--threads", 1, UVQ_UV_MAX_SHARDS);
      threads_set = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 45:
      load_quic_lb(optarg, &quic_lb);
      settings.quic_lb = &quic_lb;
      break;
    case CLI_OPT_FIRST_TOOL + 20:
      /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
      header_timeout = strcmp(optarg, "0") == 0
                           ? 0
                           : cli_parse_secs(optarg, "--header-timeout", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 21:
      request_timeout =
          /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
          strcmp(optarg, "0") == 0
              ? 0
              : cli_parse_secs(optarg, "--request-timeout", 86400);
      break;
    case CLI_OPT_FIRST_TOOL + 22:
      max_field_section =
          cli_parse_u64(optarg, "--max-field-section-size", 256, 1024 * 1024);
      break;
    case CLI_OPT_FIRST_TOOL + 23:
      max_request_line =
          (size_t)cli_parse_u64(optarg, "--max-request-line", 16, 65536);
      break;
    case CLI_OPT_FIRST_TOOL + 30:
      cli_parse_quic_versions(optarg, "--quic-versions", &settings);
      break;
    case CLI_OPT_FIRST_TOOL + 24:
      settings.early_data = 0;
      break;
    case 'q':
      s.quiet = 1;
      break;
    case 'w':
      cert_out = optarg;
      break;
    case 'I':
      initial_rtt = cli_parse_ms(optarg, "--initial-rtt");
      break;
    case 'h':
      usage(stdout);
      return CLI_EXIT_OK;
    default:
      cli_fail_getopt(c, argv);
    }
  }
  if (optind < argc) {
    cli_fail_usage("unexpected argument \"%s\"", argv[optind]);
  }
  if (settings.quic_lb != NULL && quic_lb.encode_len) {
    /* The first octet's low bits encode the length: no room for a shard
     * index, so one shard. */
    if (threads_set && s.nshards > 1) {
      cli_fail_usage("%s", "--quic-lb with encode-len needs --threads 1 (the "
                           "shard index takes the bits it encodes)");
    }
    s.nshards = 1;
  }
  if (gen_keys != NULL) {
    err[0] = '\0';
    if (uvq_keys_generate(&keys) != 0 ||
        cli_keys_save(&keys, gen_keys, err, sizeof(err)) != 0) {
      fprintf(stderr, "uvquic-server: cannot write keys: %s\n", err);
      return CLI_EXIT_TRANSFER;
    }
    return CLI_EXIT_OK;
  }
  if (keys_file != NULL &&
      cli_keys_load(&keys, keys_file, err, sizeof(err)) != 0) {
    cli_fail_usage("%s", err);
  }
  if (mime_file != NULL) {
    if (uvq_mime_table_load(&s.mime, mime_file, err, sizeof(err)) != 0) {
      cli_fail_usage("bad --mime-types: %s", err);
    }
  } else {
    /* Absent (no media-types package): the built-in types serve. */
    (void)uvq_mime_table_load(&s.mime, UVQ_MIME_TYPES_PATH, NULL, 0);
  }
  if ((cert == NULL) != (key == NULL)) {
    cli_fail_usage("%s", "--cert and --key go together");
  }
  if (cli_split_hostport(listen_arg, NULL, host, sizeof(host), port,
                         sizeof(port), err, sizeof(err)) != 0 ||
      cli_resolve(host, port, 1, &ss, &sslen, err, sizeof(err)) != 0) {
    cli_fail_usage("bad --listen: %s", err);
  }
  /* A test knob: exercise the resolver used where openat2 is missing. */
  if (getenv("UVQUIC_HQ_NO_OPENAT2") != NULL) {
    hqflags |= UVQ_HQ_SERVER_NO_OPENAT2;
  }
  file_cache_fd_budget(&fccfg, s.nshards);
  for (unsigned i = 0; i < s.nshards; i++) {
    if (uvq_hq_server_new(&s.hq[i], root, hqflags, NULL, err, sizeof(err)) !=
        0) {
      cli_fail_usage("%s", err);
    }
    uvq_hq_server_set_log(s.hq[i], hq_log_start, hq_log_end, &s);
    (void)uvq_hq_server_set_limits(s.hq[i], header_timeout, max_request_line);
    if (uvq_hq_server_set_file_cache(s.hq[i], fccfg.max_entries,
                                     fccfg.max_bytes, fccfg.max_fds,
                                     fccfg.valid) != 0) {
      cli_fail_usage("%s", "--file-cache: out of memory");
    }
  }
  if (uvq_fileserve_init(
          &s.fs, root,
          (hqflags & UVQ_HQ_SERVER_NO_OPENAT2) ? UVQ_FILESERVE_NO_OPENAT2 : 0,
          err, sizeof(err)) != 0) {
    cli_fail_usage("%s", err);
  }
  uvq_h3_server_config_default(&h3cfg);
  h3cfg.header_timeout = header_timeout;
  h3cfg.request_timeout = request_timeout;
  h3cfg.max_field_section_size = max_field_section;
  h3cfg.on_request = h3_on_request;
  h3cfg.on_stream_close = h3_on_stream_close;
  for (unsigned i = 0; i < s.nshards; i++) {
    s.h3ctx[i].s = &s;
    if (uvq_file_cache_init(&s.h3ctx[i].fcache, &fccfg) != 0) {
      cli_fail_usage("%s", "--file-cache: out of memory");
    }
    h3cfg.user_data = &s.h3ctx[i];
    rv = uvq_h3_server_new(&s.h3[i], &h3cfg);
    if (rv != 0) {
      cli_fail_usage("HTTP/3 setup failed: %s", uvq_strerror(rv));
    }
  }
  if (uv_mutex_init(&s.metrics_lock) != 0) {
    cli_fail_usage("%s", "cannot create a mutex");
  }

  s.cert = cert;
  s.key = key;
  s.keys_file = keys_file;
  s.cert_out = cert_out;
  tls_config(&s, &tcfg, keys_file ? &keys : NULL, &settings);
  if (cli_keylog_from_env(&tcfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "uvquic-server: %s\n", err);
    goto fail_tls;
  }
  err[0] = '\0';
  rv = uvq_tls_ctx_new(&tls, 1, &tcfg, NULL, err, sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "uvquic-server: TLS setup failed: %s\n",
            err[0] ? err : uvq_strerror(rv));
    goto fail_tls;
  }
  s.tls = tls;
  if (cert_out && write_cert(tls, cert_out) != 0) {
    goto fail_listen;
  }

  settings.retry = retry;
  if (initial_rtt) {
    settings.initial_rtt = initial_rtt;
  }
  cli_common_apply(&cc, &settings);
  cli_uv_config(&uvcfg);
  uvcfg.shards = s.nshards;
  s.loop = uv_default_loop();
  rv = uvq_uv_listen(&s.listener, s.loop, (struct sockaddr *)&ss, &uvcfg,
                     &settings, tls, on_accept, &s);
  /* The endpoint keeps its own copy of the QUIC-LB key, inside GnuTLS. */
  gnutls_memset(&quic_lb, 0, sizeof(quic_lb));
  settings.quic_lb = NULL;
  if (rv != 0) {
    fprintf(stderr, "uvquic-server: cannot listen on %s: %s%s%s\n", listen_arg,
            uvq_strerror(rv), rv == UVQ_ERR_IO ? ": " : "",
            rv == UVQ_ERR_IO ? strerror(errno) : "");
    goto fail_listen;
  }
  uvq_uv_endpoint_get_local_addr(s.listener, &bound);
  cli_format_addr((struct sockaddr *)&bound.ss, addrbuf, sizeof(addrbuf));
  /* One line per request, visible at once to whoever tails the log. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("listening on %s\n", addrbuf);
  fflush(stdout);

  uv_signal_init(s.loop, &s.sigint);
  uv_signal_init(s.loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_init(s.loop, &s.sighup);
  s.sighup.data = &s;
  uv_signal_start(&s.sighup, on_sighup, SIGHUP);
  signal(SIGPIPE, SIG_IGN);
  if (s.metrics_file != NULL) {
    uv_timer_init(s.loop, &s.metrics_timer);
    s.metrics_timer.data = &s;
    uv_timer_start(&s.metrics_timer, on_metrics_timer, 0, 1000);
  }

  uv_run(s.loop, UV_RUN_DEFAULT);
  free(s.metrics_buf);
  cli_common_free(&cc);
  server_free(&s);
  uvq_tls_ctx_del(tls);
  uv_loop_close(s.loop);
  return CLI_EXIT_OK;

fail_listen:
  uvq_tls_ctx_del(tls);
fail_tls:
  server_free(&s);
  return CLI_EXIT_USAGE;
}
