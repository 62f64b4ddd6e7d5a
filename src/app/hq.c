/* hq-interop server and client; see hq.h. */
#include "uvquic/uvquic_hq.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app/file_cache.h"
#include "app/fileserve.h"
#include "app/http_file.h"
#include "core/mem.h"

/* Bytes read from a file at a time: one uvq_buf_get buffer (of the pool's
 * bulk class), handed to the core by reference. */
#define HQ_CHUNK (64 * 1024)

/* One file read: a uvq_buf_get buffer the core holds (uvq_stream_write_ref)
 * until the peer has acknowledged it or the stream or connection is gone,
 * or the stream holds while the core's buffer is full. Its pool outlives
 * the endpoint until the last buffer is back. */
typedef struct hq_chunk {
  size_t len;
  uint8_t data[];
} hq_chunk;

_Static_assert(sizeof(hq_chunk) + HQ_CHUNK <= UVQ_BUF_MAX,
               "hq chunk larger than UVQ_BUF_MAX");

const char *uvq_hq_strerror(uint64_t code) {
  switch (code) {
  case UVQ_HQ_ERR_BAD_REQUEST:
    return "bad request";
  case UVQ_HQ_ERR_NOT_FOUND:
    return "not found";
  case UVQ_HQ_ERR_FORBIDDEN:
    return "forbidden";
  case UVQ_HQ_ERR_IO:
    return "server I/O error";
  case UVQ_HQ_ERR_INTERNAL:
    return "server internal error";
  case UVQ_HQ_ERR_SINK:
    return "local write failed";
  case UVQ_HQ_ERR_REQUEST_TIMEOUT:
    return "request timeout";
  default:
    return NULL;
  }
}

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

struct uvq_hq_server {
  const uvq_mem *mem;
  uvq_fileserve fs;
  /* Disabled (no entries) until uvq_hq_server_set_file_cache. */
  uvq_file_cache fcache;
  unsigned int flags;
  uvq_hq_log_start_cb log_start;
  uvq_hq_log_end_cb log_end;
  void *log_user_data;
  uint64_t request_timeout; /* ns; 0: none */
  size_t max_request;       /* longest request line, CRLF included */
  uvq_hq_server_stats stats;
  int shutting_down;
  /* Connections whose on_closed has not fired; uvq_hq_server_del frees
   * those an endpoint deleted without it. */
  struct hq_sconn *conns;
};

typedef enum hq_sstate { HQ_S_READING = 0, HQ_S_SENDING, HQ_S_DONE } hq_sstate;

typedef struct hq_sconn hq_sconn;

typedef struct hq_sstream {
  hq_sconn *c;
  struct hq_sstream *prev, *next;
  int64_t id;
  hq_sstate state;
  /* The file being sent: a reference into the server's cache. */
  uvq_file *file;
  /* File bytes the stream took; the next read starts here. */
  uint64_t off;
  uint64_t size;
  /* Read but refused (the stream's buffer was full): sent first when
   * on_stream_writable fires, so no byte is read twice. */
  hq_chunk *pending;
  /* For the access log: what became of the request. */
  unsigned int status;
  int complete;
  uint64_t acked; /* the peer's acknowledged prefix, as last reported */
  int parsed;
  int logging;
  void *log;
  /* The request line as it arrives (without its LF, NUL-terminated once
   * parsed): grown with the bytes, up to the server's max_request. */
  char *req;
  size_t reqlen, reqcap;
  /* Of reqcap, what the connection's receive budget counts: the buffer
   * of a line still arriving (uvq_conn_recv_hold). */
  size_t rx_held;
  /* Waiting for the request line: due at |deadline|, on c->waiting. */
  int waiting;
  uvq_tstamp deadline;
  struct hq_sstream *wprev, *wnext;
} hq_sstream;

struct hq_sconn {
  uvq_hq_server *srv;
  uvq_conn *conn; /* NULL once the endpoint is gone */
  hq_sstream *streams;
  struct hq_sconn *prev, *next;
  /* Streams waiting for their request line, oldest (earliest due) first,
   * and the application timer's deadline (UVQ_TSTAMP_MAX: not set). */
  hq_sstream *whead, *wtail;
  uvq_tstamp timer_at;
};

/* The core's free_cb for a chunk it took, and how the stream gives back
 * one it still holds. */
static void chunk_free(void *ptr, void *ud) {
  (void)ptr;
  uvq_buf_put(ud);
}

/* The response has nothing more to send: closes the file and gives back a
 * read the core did not take. */
static void sstream_drop_file(hq_sstream *st) {
  if (st->pending) {
    chunk_free(st->pending->data, st->pending);
    st->pending = NULL;
  }
  if (st->file != NULL) {
    uvq_file_release(st->file);
    st->file = NULL;
  }
}

/* |st| no longer waits for its request line: off the timeout list. The
 * timer is left: it fires once for nothing at worst (srv_on_timer). */
/* The request line's buffer no longer counts against the receive budget:
 * the line is complete, refused, or the stream is going. */
static void sstream_unhold(hq_sstream *st) {
  uvq_conn_recv_release(st->c->conn, st->rx_held);
  st->rx_held = 0;
}

static void sstream_unwait(hq_sstream *st) {
  hq_sconn *c = st->c;
  if (!st->waiting) {
    return;
  }
  st->waiting = 0;
  if (st->wprev) {
    st->wprev->wnext = st->wnext;
  } else {
    c->whead = st->wnext;
  }
  if (st->wnext) {
    st->wnext->wprev = st->wprev;
  } else {
    c->wtail = st->wprev;
  }
  st->wprev = st->wnext = NULL;
}

static void sstream_free(hq_sstream *st) {
  hq_sconn *c = st->c;
  uvq_hq_server *srv = c->srv;

  if (st->logging && srv->log_end != NULL) {
    uvq_hq_log_entry e;

    e.conn = c->conn;
    e.stream_id = st->id;
    e.path = st->parsed ? st->req + 4 : "";
    e.status = st->status;
    e.complete = st->complete;
    e.bytes = st->off;
    e.acked = st->acked;
    e.delivered = 0;
    if (c->conn != NULL) {
      e.acked = uvq_stream_get_acked(c->conn, st->id, &e.delivered);
    }
    srv->log_end(&e, st->log, srv->log_user_data);
  }

  if (st->prev) {
    st->prev->next = st->next;
  } else {
    c->streams = st->next;
  }
  if (st->next) {
    st->next->prev = st->prev;
  }
  sstream_unwait(st);
  sstream_drop_file(st);
  sstream_unhold(st);
  uvq_free(c->srv->mem, st->req);
  uvq_free(c->srv->mem, st);
}

static hq_sstream *sstream_new(uvq_conn *conn, hq_sconn *c, int64_t id) {
  hq_sstream *st = uvq_malloc(c->srv->mem, sizeof(*st));

  if (st == NULL) {
    return NULL;
  }
  st->c = c;
  st->id = id;
  st->state = HQ_S_READING;
  st->file = NULL;
  st->off = st->size = 0;
  st->pending = NULL;
  st->status = 0;
  st->complete = 0;
  st->acked = 0;
  st->parsed = 0;
  st->logging = 0;
  st->log = NULL;
  st->req = NULL;
  st->reqlen = st->reqcap = 0;
  st->rx_held = 0;
  st->waiting = 0;
  st->deadline = UVQ_TSTAMP_MAX;
  st->wprev = st->wnext = NULL;
  st->prev = NULL;
  st->next = c->streams;
  if (c->streams) {
    c->streams->prev = st;
  }
  c->streams = st;
  if (uvq_stream_set_user_data(conn, id, st) != 0) {
    sstream_free(st);
    return NULL;
  }
  if (c->srv->log_start != NULL) {
    st->log = c->srv->log_start(conn, id, c->srv->log_user_data);
  }
  st->logging = 1;
  c->srv->stats.requests++;
  if (c->srv->request_timeout) {
    /* Due in arrival order: one duration for all. */
    st->deadline = uvq_conn_get_now(conn) + c->srv->request_timeout;
    st->waiting = 1;
    st->wprev = c->wtail;
    if (c->wtail) {
      c->wtail->wnext = st;
    } else {
      c->whead = st;
    }
    c->wtail = st;
    if (st->deadline < c->timer_at) {
      c->timer_at = st->deadline;
      uvq_conn_set_app_timer(conn, st->deadline);
    }
  }
  return st;
}

/* The access-log status of a refusal code. */
static unsigned int code_status(uint64_t code) {
  switch (code) {
  case UVQ_HQ_ERR_BAD_REQUEST:
    return 400;
  case UVQ_HQ_ERR_FORBIDDEN:
    return 403;
  case UVQ_HQ_ERR_NOT_FOUND:
    return 404;
  case UVQ_HQ_ERR_IO:
  case UVQ_HQ_ERR_INTERNAL:
    return 500;
  case UVQ_HQ_ERR_REQUEST_TIMEOUT:
    return 408;
  default:
    return 0;
  }
}

/* Ends the response with |code|: RESET_STREAM on our side, STOP_SENDING on
 * theirs in case the request is still arriving. */
static void sstream_refuse(uvq_conn *conn, hq_sstream *st, uint64_t code) {
  sstream_unwait(st);
  if (!st->parsed) {
    /* The log shows no path: the partial line goes now. */
    sstream_unhold(st);
    uvq_free(st->c->srv->mem, st->req);
    st->req = NULL;
    st->reqlen = st->reqcap = 0;
  }
  st->state = HQ_S_DONE;
  if (st->status == 0) {
    st->status = code_status(code);
  }
  sstream_drop_file(st);
  (void)uvq_stream_stop_sending(conn, st->id, code);
  (void)uvq_stream_reset(conn, st->id, code);
}

static uint64_t resolve_status_to_code(uvq_http_resolve_status rs) {
  switch (rs) {
  case UVQ_HTTP_BAD_REQUEST:
    return UVQ_HQ_ERR_BAD_REQUEST;
  case UVQ_HTTP_NOT_FOUND:
    return UVQ_HQ_ERR_NOT_FOUND;
  case UVQ_HTTP_FORBIDDEN:
    return UVQ_HQ_ERR_FORBIDDEN;
  default:
    return UVQ_HQ_ERR_IO;
  }
}

/* Reads the next piece of the file into a pool buffer: sets *pch (NULL
 * at the end of the file: it shrank, or is empty). Returns 0, or the
 * UVQ_HQ_ERR_* code to refuse the response with. */
static uint64_t sstream_read(uvq_conn *conn, hq_sstream *st, hq_chunk **pch) {
  uint64_t left = st->size - st->off;
  size_t want = left < HQ_CHUNK ? (size_t)left : HQ_CHUNK;
  hq_chunk *ch;
  ssize_t n;

  *pch = NULL;
  if (want == 0) {
    return 0;
  }
  ch = uvq_buf_get(uvq_conn_get_endpoint(conn), sizeof(*ch) + HQ_CHUNK);
  if (ch == NULL) {
    return UVQ_HQ_ERR_INTERNAL;
  }
  n = uvq_file_read(st->file, ch->data, want, st->off);
  if (n <= 0) {
    chunk_free(ch->data, ch);
    return n < 0 ? UVQ_HQ_ERR_IO : 0;
  }
  ch->len = (size_t)n;
  *pch = ch;
  return 0;
}

/* Hands file bytes to the stream by reference until its buffer is full or
 * the file is done. A read is as large as HQ_CHUNK allows, not as the room
 * left: the core takes a reference whole while the buffer has any room
 * (overshooting by at most one chunk), and keeps the count of reads at one
 * per 64 KiB. The one read it refuses stays with the stream. */
static void sstream_send(uvq_conn *conn, hq_sstream *st) {
  uvq_hq_server *srv = st->c->srv;

  while (st->state == HQ_S_SENDING) {
    hq_chunk *ch = st->pending;
    size_t len;
    ssize_t w;
    int fin;

    st->pending = NULL;
    if (ch == NULL) {
      uint64_t code = sstream_read(conn, st, &ch);
      if (code != 0) {
        sstream_refuse(conn, st, code);
        return;
      }
    }
    /* The last chunk carries FIN; so does an early end if the file shrank
     * (the response is then shorter than the size we saw). */
    len = ch ? ch->len : 0;
    fin = len == 0 || st->off + len == st->size;
    if (ch) {
      w = uvq_stream_write_ref(conn, st->id, ch->data, len, fin, chunk_free,
                               ch);
    } else {
      w = uvq_stream_write(conn, st->id, NULL, 0, fin);
    }
    if (w < 0) {
      /* Not taken: the chunk is still ours. */
      if (ch) {
        chunk_free(ch->data, ch);
      }
      if (w == UVQ_ERR_NOMEM) {
        sstream_refuse(conn, st, UVQ_HQ_ERR_INTERNAL);
        return;
      }
      /* The stream or the connection is gone; nothing left to serve. */
      st->state = HQ_S_DONE;
      break;
    }
    if (w == 0 && len > 0) {
      /* Full: on_stream_writable resumes here, with this chunk. */
      st->pending = ch;
      return;
    }
    st->off += len;
    srv->stats.bytes += len;
    if (fin) {
      st->state = HQ_S_DONE;
      st->complete = 1;
      ++srv->stats.files;
    }
  }
  sstream_drop_file(st);
}

/* Parses the request line in st->req (|len| bytes, without the line end)
 * and starts the response. */
static void sstream_request(uvq_conn *conn, hq_sstream *st, size_t len) {
  uvq_hq_server *srv = st->c->srv;
  uvq_http_resolve_status rs;
  uvq_http_resolved *res;
  uvq_file *file;

  sstream_unwait(st);
  if (len > 0 && st->req[len - 1] == '\r') {
    --len;
  }
  st->req[len] = '\0';
  if (len < 5 || memcmp(st->req, "GET /", 5) != 0 ||
      memchr(st->req, '\0', len) != NULL) {
    sstream_refuse(conn, st, UVQ_HQ_ERR_BAD_REQUEST);
    return;
  }
  st->parsed = 1;
  sstream_unhold(st);
  /* The same resolution as HTTP/3 (percent-decoding, query ignored,
   * index.html for a directory); hq cannot redirect, so a directory named
   * without its slash is served as if it had one. */
  res = uvq_malloc(srv->mem, sizeof(*res));
  if (res == NULL) {
    sstream_refuse(conn, st, UVQ_HQ_ERR_INTERNAL);
    return;
  }
  rs = uvq_file_cache_resolve(&srv->fcache, &srv->fs, st->req + 4, len - 4,
                              UVQ_HTTP_NO_REDIRECT, uvq_conn_get_now(conn), res,
                              &file);
  st->size = (uint64_t)res->st.st_size;
  if (res->fd >= 0) {
    close(res->fd);
  }
  uvq_free(srv->mem, res);
  if (rs != UVQ_HTTP_FILE) {
    sstream_refuse(conn, st, resolve_status_to_code(rs));
    return;
  }
  st->file = file;
  st->status = 200;
  st->off = 0;
  st->state = HQ_S_SENDING;
  sstream_send(conn, st);
}

static int srv_on_stream_open(uvq_conn *conn, int64_t stream_id,
                              void *user_data) {
  hq_sconn *c = user_data;

  if ((stream_id & 0x3) != 0) {
    /* Only client-initiated bidirectional streams carry requests; data on
     * others is read and discarded. */
    return 0;
  }
  if (sstream_new(conn, c, stream_id) == NULL) {
    (void)uvq_stream_reset(conn, stream_id, UVQ_HQ_ERR_INTERNAL);
    (void)uvq_stream_stop_sending(conn, stream_id, UVQ_HQ_ERR_INTERNAL);
  }
  return 0;
}

/* Makes room for |need| bytes of request line in st->req (the NUL
 * included), growing with what arrived, never past the server's limit.
 * Returns 0 or UVQ_ERR_NOMEM. */
static int sstream_reserve(hq_sstream *st, size_t need) {
  uvq_hq_server *srv = st->c->srv;
  size_t cap;
  char *nb;

  if (need <= st->reqcap) {
    return 0;
  }
  cap = st->reqcap ? st->reqcap * 2 : 64;
  if (cap < need) {
    cap = need;
  }
  if (cap > srv->max_request) {
    cap = srv->max_request;
  }
  nb = uvq_realloc(srv->mem, st->req, cap);
  if (nb == NULL) {
    return UVQ_ERR_NOMEM;
  }
  uvq_conn_recv_hold(st->c->conn, cap - st->reqcap);
  st->rx_held += cap - st->reqcap;
  st->req = nb;
  st->reqcap = cap;
  return 0;
}

static int srv_on_stream_data(uvq_conn *conn, int64_t stream_id,
                              const uint8_t *data, size_t len, int fin,
                              void *user_data, void *stream_user_data) {
  hq_sstream *st = stream_user_data;
  const uint8_t *nl;
  size_t room, take;

  (void)user_data;
  if (st == NULL || st->state != HQ_S_READING) {
    return 0;
  }
  (void)stream_id;
  /* The line without its LF, and a NUL after it, fit in max_request. */
  room = st->c->srv->max_request - 1 - st->reqlen;
  /* A lone FIN may come with no buffer at all. */
  nl = len ? memchr(data, '\n', len) : NULL;
  take = nl ? (size_t)(nl - data) : len;
  if (take > room) {
    st->status = 414;
    st->c->srv->stats.requests_too_long++;
    sstream_refuse(conn, st, UVQ_HQ_ERR_BAD_REQUEST);
    return 0;
  }
  if (sstream_reserve(st, st->reqlen + take + 1) != 0) {
    sstream_refuse(conn, st, UVQ_HQ_ERR_INTERNAL);
    return 0;
  }
  if (take) {
    memcpy(st->req + st->reqlen, data, take);
  }
  st->reqlen += take;
  if (nl || fin) {
    /* A request ended by FIN without a line end is accepted as well. */
    sstream_request(conn, st, st->reqlen);
  }
  return 0;
}

static int srv_on_stream_writable(uvq_conn *conn, int64_t stream_id,
                                  void *user_data, void *stream_user_data) {
  hq_sstream *st = stream_user_data;

  (void)stream_id;
  (void)user_data;
  if (st != NULL && st->state == HQ_S_SENDING) {
    sstream_send(conn, st);
  }
  return 0;
}

static void srv_on_stop_sending(uvq_conn *conn, int64_t stream_id,
                                uint64_t app_error, void *user_data,
                                void *stream_user_data) {
  hq_sstream *st = stream_user_data;

  (void)stream_id;
  (void)user_data;
  if (st != NULL && st->state != HQ_S_DONE) {
    /* RFC 9000 §3.5: answer STOP_SENDING with RESET_STREAM. */
    sstream_unwait(st);
    st->state = HQ_S_DONE;
    sstream_drop_file(st);
    (void)uvq_stream_reset(conn, st->id, app_error);
  }
}

static void srv_on_stream_reset(uvq_conn *conn, int64_t stream_id,
                                uint64_t app_error, void *user_data,
                                void *stream_user_data) {
  hq_sstream *st = stream_user_data;

  (void)stream_id;
  (void)user_data;
  if (st != NULL && st->state == HQ_S_READING) {
    /* The request was abandoned before it was complete: the code is the
     * peer's, not a refusal of ours, so the log shows no status. */
    sstream_refuse(conn, st, app_error);
    st->status = 0;
  }
}

/* Kept for the access log of a stream the endpoint frees without
 * on_closed (the core's count goes with it). */
static int srv_on_stream_acked(uvq_conn *conn, int64_t stream_id,
                               uint64_t offset, uint64_t len, void *user_data,
                               void *stream_user_data) {
  hq_sstream *st = stream_user_data;

  (void)conn;
  (void)stream_id;
  (void)user_data;
  if (st != NULL && offset + len > st->acked) {
    st->acked = offset + len;
  }
  return 0;
}

static void srv_on_stream_closed(uvq_conn *conn, int64_t stream_id,
                                 uint64_t app_error, void *user_data,
                                 void *stream_user_data) {
  hq_sconn *c = user_data;

  (void)stream_id;
  (void)app_error;
  if (stream_user_data != NULL) {
    sstream_free(stream_user_data);
  }
  if (c != NULL && c->srv->shutting_down && c->streams == NULL) {
    /* The last exchange of a server shutting down is over. */
    (void)uvq_conn_close(conn, 0, "server shutting down");
  }
}

/* The application timer: resets the streams whose request line is late,
 * then waits for the next one due. */
static int srv_on_timer(uvq_conn *conn, void *user_data) {
  hq_sconn *c = user_data;
  uvq_tstamp now = uvq_conn_get_now(conn);

  c->timer_at = UVQ_TSTAMP_MAX; /* the core disarmed it to call us */
  while (c->whead != NULL && c->whead->deadline <= now) {
    hq_sstream *st = c->whead;
    c->srv->stats.request_timeouts++;
    sstream_refuse(conn, st, UVQ_HQ_ERR_REQUEST_TIMEOUT);
  }
  if (c->whead != NULL) {
    c->timer_at = c->whead->deadline;
    uvq_conn_set_app_timer(conn, c->timer_at);
  }
  return 0;
}

static void sconn_free(hq_sconn *c) {
  uvq_hq_server *srv = c->srv;

  while (c->streams) {
    sstream_free(c->streams);
  }
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    srv->conns = c->next;
  }
  if (c->next) {
    c->next->prev = c->prev;
  }
  uvq_free(srv->mem, c);
}

static void srv_on_closed(uvq_conn *conn, const uvq_close_info *ci,
                          void *user_data) {
  (void)conn;
  (void)ci;
  sconn_free(user_data);
}

static const uvq_app_callbacks hq_server_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_open = srv_on_stream_open,
    .on_stream_data = srv_on_stream_data,
    .on_stream_writable = srv_on_stream_writable,
    .on_stream_acked = srv_on_stream_acked,
    .on_stream_reset = srv_on_stream_reset,
    .on_stop_sending = srv_on_stop_sending,
    .on_stream_closed = srv_on_stream_closed,
    .on_closed = srv_on_closed,
    .on_timer = srv_on_timer,
};

int uvq_hq_server_new(uvq_hq_server **psrv, const char *root,
                      unsigned int flags, const uvq_mem *mem, char *errbuf,
                      size_t errbuflen) {
  uvq_hq_server *srv;

  if (mem == NULL) {
    mem = uvq_mem_default();
  }
  if (psrv == NULL || root == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  srv = uvq_malloc(mem, sizeof(*srv));
  if (srv == NULL) {
    return UVQ_ERR_NOMEM;
  }
  if (uvq_fileserve_init(
          &srv->fs, root,
          (flags & UVQ_HQ_SERVER_NO_OPENAT2) ? UVQ_FILESERVE_NO_OPENAT2 : 0,
          errbuf, errbuflen) != 0) {
    int saved = errno;
    uvq_free(mem, srv);
    errno = saved;
    return UVQ_ERR_IO;
  }
  {
    uvq_file_cache_config fcc;
    uvq_file_cache_config_default(&fcc);
    fcc.mem = mem;
    fcc.max_entries = 0;
    /* No allocation without entries: cannot fail. */
    (void)uvq_file_cache_init(&srv->fcache, &fcc);
  }
  srv->mem = mem;
  srv->flags = flags;
  srv->log_start = NULL;
  srv->log_end = NULL;
  srv->log_user_data = NULL;
  memset(&srv->stats, 0, sizeof(srv->stats));
  srv->request_timeout = UVQ_HQ_REQUEST_TIMEOUT;
  srv->max_request = UVQ_HQ_MAX_REQUEST;
  srv->conns = NULL;
  srv->shutting_down = 0;
  *psrv = srv;
  return 0;
}

void uvq_hq_server_del(uvq_hq_server *srv) {
  if (srv == NULL) {
    return;
  }
  /* Left by an endpoint deleted without on_closed: the connections are
   * gone, their files and unsent reads are not. */
  while (srv->conns) {
    srv->conns->conn = NULL;
    sconn_free(srv->conns);
  }
  uvq_file_cache_free(&srv->fcache);
  uvq_fileserve_free(&srv->fs);
  uvq_free(srv->mem, srv);
}

void uvq_hq_server_shutdown(uvq_hq_server *srv) {
  hq_sconn *c, *next;

  if (srv->shutting_down) {
    return;
  }
  srv->shutting_down = 1;
  for (c = srv->conns; c; c = next) {
    next = c->next;
    if (c->conn != NULL && c->streams == NULL) {
      (void)uvq_conn_close(c->conn, 0, "server shutting down");
    }
  }
}

void uvq_hq_server_set_log(uvq_hq_server *srv, uvq_hq_log_start_cb start,
                           uvq_hq_log_end_cb end, void *user_data) {
  srv->log_start = start;
  srv->log_end = end;
  srv->log_user_data = user_data;
}

int uvq_hq_server_accept(uvq_hq_server *srv, uvq_conn *conn,
                         const uvq_app_callbacks **pcallbacks,
                         void **pconn_user_data) {
  hq_sconn *c;

  c = uvq_malloc(srv->mem, sizeof(*c));
  if (c == NULL) {
    return UVQ_ERR_NOMEM;
  }
  c->srv = srv;
  c->conn = conn;
  c->streams = NULL;
  c->whead = c->wtail = NULL;
  c->timer_at = UVQ_TSTAMP_MAX;
  c->prev = NULL;
  c->next = srv->conns;
  if (srv->conns) {
    srv->conns->prev = c;
  }
  srv->conns = c;
  *pcallbacks = &hq_server_callbacks;
  *pconn_user_data = c;
  return 0;
}

int uvq_hq_server_set_limits(uvq_hq_server *srv, uint64_t request_timeout,
                             size_t max_request) {
  if (srv == NULL || max_request < 16 || max_request > 65536) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  srv->request_timeout = request_timeout;
  srv->max_request = max_request;
  return 0;
}

void uvq_hq_server_get_stats(uvq_hq_server *srv, uvq_hq_server_stats *st) {
  *st = srv->stats;
}

int uvq_hq_server_set_file_cache(uvq_hq_server *srv, size_t max_entries,
                                 size_t max_bytes, size_t max_fds,
                                 uint64_t valid) {
  uvq_file_cache_config cfg;
  uvq_file_cache fc;

  if (srv == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  uvq_file_cache_config_default(&cfg);
  cfg.mem = srv->mem;
  cfg.max_entries = max_entries;
  cfg.max_bytes = max_bytes;
  cfg.max_fds = max_fds;
  cfg.valid = valid;
  if (uvq_file_cache_init(&fc, &cfg) != 0) {
    return UVQ_ERR_NOMEM;
  }
  /* Files still being sent keep their references. */
  uvq_file_cache_free(&srv->fcache);
  srv->fcache = fc;
  return 0;
}

void uvq_hq_server_clear_file_cache(uvq_hq_server *srv) {
  uvq_file_cache_clear(&srv->fcache);
}

void uvq_hq_server_get_file_cache_stats(uvq_hq_server *srv,
                                        uvq_hq_file_cache_stats *st) {
  uvq_file_cache_get_stats(&srv->fcache, st);
}

void uvq_hq_server_get_counts(uvq_hq_server *srv, uint64_t *pfiles,
                              uint64_t *pbytes) {
  if (pfiles) {
    *pfiles = srv->stats.files;
  }
  if (pbytes) {
    *pbytes = srv->stats.bytes;
  }
}

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct hq_cstream {
  uvq_hq_client *cli;
  uvq_hq_request *req;
  int64_t id;
  /* The request line and how much of it the stream took. */
  char *line;
  size_t linelen;
  size_t sent;
} hq_cstream;

struct uvq_hq_client {
  const uvq_mem *mem;
  uvq_hq_request *reqs;
  hq_cstream *cs;
  size_t nreqs;
  /* Next request to open a stream for. */
  size_t next;
  size_t finished;
  size_t completed;
  int closing;
  uvq_hq_done_cb done;
  void *user_data;
  /* uvq_hq_client_hold: stay open when the requests are over. */
  int hold;
  uvq_hq_ready_cb ready;
  /* The connection, from its first callback until on_closed. */
  uvq_conn *conn;
};

static void cli_finish(uvq_conn *conn, uvq_hq_client *cli, uvq_hq_request *req,
                       uvq_hq_state state) {
  req->state = state;
  ++cli->finished;
  if (state == UVQ_HQ_DONE) {
    ++cli->completed;
  }
  if (cli->finished == cli->nreqs && !cli->closing) {
    if (cli->hold) {
      if (cli->ready) {
        cli->ready(cli, cli->user_data);
      }
      return;
    }
    cli->closing = 1;
    (void)uvq_conn_close(conn, 0, "done");
  }
}

static void cli_send_request(uvq_conn *conn, hq_cstream *cs) {
  ssize_t w;

  if (cs->sent == cs->linelen) {
    return;
  }
  w = uvq_stream_write(conn, cs->id, (const uint8_t *)cs->line + cs->sent,
                       cs->linelen - cs->sent, 1);
  if (w < 0) {
    if (cs->req->state == UVQ_HQ_ACTIVE) {
      cs->req->error = (int)w;
      cli_finish(conn, cs->cli, cs->req, UVQ_HQ_FAILED);
    }
    return;
  }
  cs->sent += (size_t)w;
}

static int cli_open_more(uvq_conn *conn, uvq_hq_client *cli) {
  while (cli->next < cli->nreqs && !cli->closing) {
    hq_cstream *cs = &cli->cs[cli->next];
    int rv = uvq_conn_open_stream(conn, 1, &cs->id, cs);

    if (rv == UVQ_ERR_STREAM_LIMIT) {
      /* on_streams_available picks up from here. */
      break;
    }
    if (rv == UVQ_ERR_CLOSED) {
      /* on_closed fails what is left. */
      break;
    }
    ++cli->next;
    if (rv != 0) {
      cs->req->error = rv;
      cli_finish(conn, cli, cs->req, UVQ_HQ_FAILED);
      continue;
    }
    cs->req->state = UVQ_HQ_ACTIVE;
    cli_send_request(conn, cs);
  }
  return 0;
}

static int cli_on_established(uvq_conn *conn, void *user_data) {
  uvq_hq_client *cli = user_data;

  cli->conn = conn;
  return cli_open_more(conn, cli);
}

static int cli_on_streams_available(uvq_conn *conn, void *user_data) {
  return cli_open_more(conn, user_data);
}

static int cli_on_stream_writable(uvq_conn *conn, int64_t stream_id,
                                  void *user_data, void *stream_user_data) {
  hq_cstream *cs = stream_user_data;

  (void)stream_id;
  (void)user_data;
  if (cs != NULL && cs->req->state == UVQ_HQ_ACTIVE) {
    cli_send_request(conn, cs);
  }
  return 0;
}

static int sink_write(int fd, const uint8_t *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int cli_on_stream_data(uvq_conn *conn, int64_t stream_id,
                              const uint8_t *data, size_t len, int fin,
                              void *user_data, void *stream_user_data) {
  hq_cstream *cs = stream_user_data;
  uvq_hq_request *req;

  (void)user_data;
  if (cs == NULL || cs->req->state != UVQ_HQ_ACTIVE) {
    return 0;
  }
  req = cs->req;
  if (len > 0 && (req->sink != NULL   ? req->sink(req, conn, data, len)
                  : req->sink_fd >= 0 ? sink_write(req->sink_fd, data, len)
                                      : 0)) {
    req->sink_errno = errno;
    req->error = UVQ_ERR_IO;
    (void)uvq_stream_stop_sending(conn, stream_id, UVQ_HQ_ERR_SINK);
    cli_finish(conn, cs->cli, req, UVQ_HQ_FAILED);
    return 0;
  }
  req->bytes += len;
  if (fin) {
    cli_finish(conn, cs->cli, req, UVQ_HQ_DONE);
  }
  return 0;
}

static void cli_on_stream_reset(uvq_conn *conn, int64_t stream_id,
                                uint64_t app_error, void *user_data,
                                void *stream_user_data) {
  hq_cstream *cs = stream_user_data;

  (void)stream_id;
  (void)user_data;
  if (cs != NULL && cs->req->state == UVQ_HQ_ACTIVE) {
    cs->req->reset = 1;
    cs->req->reset_code = app_error;
    cli_finish(conn, cs->cli, cs->req, UVQ_HQ_FAILED);
  }
}

static void cli_on_stream_closed(uvq_conn *conn, int64_t stream_id,
                                 uint64_t app_error, void *user_data,
                                 void *stream_user_data) {
  hq_cstream *cs = stream_user_data;

  (void)stream_id;
  (void)user_data;
  if (cs != NULL && cs->req->state == UVQ_HQ_ACTIVE) {
    /* Closed without FIN or a reset we saw. */
    if (app_error != 0) {
      cs->req->reset = 1;
      cs->req->reset_code = app_error;
    } else {
      cs->req->error = UVQ_ERR_CLOSED;
    }
    cli_finish(conn, cs->cli, cs->req, UVQ_HQ_FAILED);
  }
}

static void cli_on_closed(uvq_conn *conn, const uvq_close_info *ci,
                          void *user_data) {
  uvq_hq_client *cli = user_data;
  size_t i;

  (void)conn;
  cli->closing = 1;
  cli->conn = NULL;
  for (i = 0; i < cli->nreqs; ++i) {
    uvq_hq_request *req = &cli->reqs[i];
    if (req->state == UVQ_HQ_PENDING || req->state == UVQ_HQ_ACTIVE) {
      req->state = UVQ_HQ_FAILED;
      req->error = ci->error ? ci->error : UVQ_ERR_CLOSED;
      ++cli->finished;
    }
  }
  if (cli->done) {
    cli->done(cli, ci, cli->user_data);
  }
}

static const uvq_app_callbacks hq_client_callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = cli_on_established,
    .on_stream_data = cli_on_stream_data,
    .on_stream_writable = cli_on_stream_writable,
    .on_stream_reset = cli_on_stream_reset,
    .on_stream_closed = cli_on_stream_closed,
    .on_streams_available = cli_on_streams_available,
    .on_closed = cli_on_closed,
};

const uvq_app_callbacks *uvq_hq_client_callbacks(void) {
  return &hq_client_callbacks;
}

int uvq_hq_client_new(uvq_hq_client **pcli, uvq_hq_request *reqs, size_t nreqs,
                      const uvq_mem *mem, uvq_hq_done_cb done,
                      void *user_data) {
  uvq_hq_client *cli;
  size_t i;

  if (mem == NULL) {
    mem = uvq_mem_default();
  }
  if (pcli == NULL || reqs == NULL || nreqs == 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  for (i = 0; i < nreqs; ++i) {
    const char *p = reqs[i].path;
    if (p == NULL || *p == '\0' || strlen(p) + 6 > UVQ_HQ_MAX_REQUEST ||
        strpbrk(p, "\r\n") != NULL) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
  }
  cli = uvq_calloc(mem, 1, sizeof(*cli));
  if (cli == NULL) {
    return UVQ_ERR_NOMEM;
  }
  cli->cs = uvq_calloc(mem, nreqs, sizeof(*cli->cs));
  if (cli->cs == NULL) {
    uvq_free(mem, cli);
    return UVQ_ERR_NOMEM;
  }
  cli->mem = mem;
  cli->reqs = reqs;
  cli->nreqs = nreqs;
  cli->done = done;
  cli->user_data = user_data;
  for (i = 0; i < nreqs; ++i) {
    hq_cstream *cs = &cli->cs[i];
    size_t plen = strlen(reqs[i].path);

    cs->cli = cli;
    cs->req = &reqs[i];
    cs->id = -1;
    cs->line = uvq_malloc(mem, plen + 7);
    if (cs->line == NULL) {
      uvq_hq_client_del(cli);
      return UVQ_ERR_NOMEM;
    }
    memcpy(cs->line, "GET ", 4);
    memcpy(cs->line + 4, reqs[i].path, plen);
    memcpy(cs->line + 4 + plen, "\r\n", 3);
    cs->linelen = plen + 6;
    reqs[i].state = UVQ_HQ_PENDING;
    reqs[i].bytes = 0;
    reqs[i].reset = 0;
    reqs[i].reset_code = 0;
    reqs[i].error = 0;
    reqs[i].sink_errno = 0;
  }
  *pcli = cli;
  return 0;
}

void uvq_hq_client_del(uvq_hq_client *cli) {
  size_t i;

  if (cli == NULL) {
    return;
  }
  for (i = 0; i < cli->nreqs; ++i) {
    uvq_free(cli->mem, cli->cs[i].line);
  }
  uvq_free(cli->mem, cli->cs);
  uvq_free(cli->mem, cli);
}

size_t uvq_hq_client_completed(uvq_hq_client *cli) { return cli->completed; }

void uvq_hq_client_hold(uvq_hq_client *cli, uvq_hq_ready_cb ready) {
  cli->hold = 1;
  cli->ready = ready;
}

int uvq_hq_client_close(uvq_hq_client *cli) {
  if (cli->closing) {
    return 0;
  }
  if (cli->conn == NULL) {
    return UVQ_ERR_INVALID_STATE;
  }
  cli->closing = 1;
  return uvq_conn_close(cli->conn, 0, "done");
}
