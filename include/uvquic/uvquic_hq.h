/**
 * @file uvquic_hq.h
 * hq-interop: HTTP/0.9 over QUIC, the protocol of the QUIC interop runner.
 *
 * A client opens one bidirectional stream per file, sends "GET /path\r\n"
 * and FIN; the server answers with the file's bytes and FIN, or resets the
 * stream with one of the UVQ_HQ_ERR_* codes below. Both sides are plain
 * uvq_app_callbacks, so they run on any driver (libuv or another loop).
 *
 * Server:
 *   uvq_hq_server_new(&srv, "/srv/www", 0, NULL, err, sizeof(err));
 *   ... in on_accept, for ALPN "hq-interop":
 *   return uvq_hq_server_accept(srv, conn, pcallbacks, pconn_user_data);
 *   ... after every connection closed, or the endpoint deleted:
 *   uvq_hq_server_del(srv);
 *
 * Client (one uvq_hq_client per connection):
 *   uvq_hq_request reqs[2] = {{.path = "/a", .sink_fd = -1},
 *                             {.path = "/b", .sink_fd = fd}};
 *   uvq_hq_client_new(&cli, reqs, 2, NULL, on_done, arg);
 *   uvq_uv_connect(uep, addr, "example.com", uvq_hq_client_callbacks(), cli,
 *               NULL);
 *   ... on_done(cli, ci, arg) fires from the connection's on_closed with
 *   each request's outcome in reqs[i].state; then uvq_hq_client_del(cli).
 */
#ifndef UVQUIC_HQ_H
#define UVQUIC_HQ_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The ALPN token of hq-interop. */
#define UVQ_HQ_ALPN "hq-interop"

/*
 * Application error codes the server resets a response stream with (the
 * hq-interop convention defines none; these are ours). A client that sees
 * another code reports it as a number.
 */
/** The request was not "GET <path>" on one line of at most the server's
 * limit (uvq_hq_server_set_limits; 4 KiB by default), or the path does not
 * percent-decode (an encoded '/', a NUL, a bad escape). */
#define UVQ_HQ_ERR_BAD_REQUEST 0x101
/** No such file under the root, or a directory without index.html. The
 * path is percent-decoded and its query and fragment ignored, as HTTP/3
 * does; a directory serves its index.html. */
#define UVQ_HQ_ERR_NOT_FOUND 0x102
/** The path escapes the root (a ".." segment after decoding, absolute, a
 * symlink out), or names something that is not a regular file or a
 * directory. */
#define UVQ_HQ_ERR_FORBIDDEN 0x103
/** Reading the file failed (I/O error, too many open files). */
#define UVQ_HQ_ERR_IO 0x104
/** The server ran out of memory or hit another internal failure. */
#define UVQ_HQ_ERR_INTERNAL 0x105
/** Client: the local sink could not be written (stream abandoned with
 * STOP_SENDING carrying this code). */
#define UVQ_HQ_ERR_SINK 0x106
/** The request line did not arrive whole within the server's request
 * timeout (uvq_hq_server_set_limits) of the stream's first frame. */
#define UVQ_HQ_ERR_REQUEST_TIMEOUT 0x107

/**
 * Longest request line, including "GET " and CRLF: what the client sends
 * at most, and the server's default limit.
 */
#define UVQ_HQ_MAX_REQUEST 4096
/**
 * The server's default request timeout: the whole request line within
 * 10 s of the stream's first frame (as HTTP/3's header_timeout: a real
 * client sends it in one packet).
 */
#define UVQ_HQ_REQUEST_TIMEOUT (10 * UVQ_SECONDS)

/** uvq_hq_strerror names an UVQ_HQ_ERR_* code ("not found"), or NULL. */
UVQ_EXTERN const char *uvq_hq_strerror(uint64_t code);

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

/** An hq-interop file server: shared by all the connections it serves. */
typedef struct uvq_hq_server uvq_hq_server;

/** Flag for uvq_hq_server_new: never use openat2(2), always the portable
 * component-by-component resolver (for tests of the fallback). */
#define UVQ_HQ_SERVER_NO_OPENAT2 0x1

/**
 * uvq_hq_server_new opens |root| once as a directory; every request is
 * resolved beneath it (openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
 * or, where the kernel lacks openat2, openat one component at a time with
 * O_NOFOLLOW, refusing ".." — that fallback refuses every symlink).
 * |mem| may be NULL (libc).
 *
 * Returns 0 and sets *psrv, UVQ_ERR_IO (root missing or not a directory;
 * errno is set and a message is written to |errbuf| if not NULL), or
 * UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_hq_server_new(uvq_hq_server **psrv, const char *root,
                                 unsigned int flags, const uvq_mem *mem,
                                 char *errbuf, size_t errbuflen);

/**
 * uvq_hq_server_del frees |srv| and closes the root. Every connection
 * served by it must be over first: closed (its on_closed fired) or its
 * endpoint deleted. Calling it while such a connection is still alive is
 * a use after free (the core still holds the connection's user data). For
 * connections an endpoint deleted without on_closed it frees what they
 * left (open files, file reads not yet handed to the stream) and fires the
 * log end callback of each of their streams, with conn NULL.
 */
UVQ_EXTERN void uvq_hq_server_del(uvq_hq_server *srv);

/**
 * uvq_hq_server_accept prepares |conn| to be served: call it from on_accept
 * for ALPN UVQ_HQ_ALPN and return its result. Sets *pcallbacks and
 * *pconn_user_data. Returns 0 or UVQ_ERR_NOMEM (refuse the connection).
 */
UVQ_EXTERN int uvq_hq_server_accept(uvq_hq_server *srv, uvq_conn *conn,
                                    const uvq_app_callbacks **pcallbacks,
                                    void **pconn_user_data);

/**
 * uvq_hq_server_shutdown starts a graceful shutdown: every connection
 * closes (NO_ERROR) as soon as it has no request stream open — at once for
 * an idle one, else when its last exchange ends. hq-interop has no GOAWAY:
 * a stream the client opens meanwhile is still served. Pair it with
 * uvq_endpoint_stop_accepting, and close what is left after a deadline.
 * Calling it again is a no-op. Runs on the endpoint's thread.
 */
UVQ_EXTERN void uvq_hq_server_shutdown(uvq_hq_server *srv);

/** What became of one request, for an access log (valid during the call). */
typedef struct uvq_hq_log_entry {
  /** The connection; usable during the call (it may be in on_closed).
   * NULL from uvq_hq_server_del: the endpoint was deleted first. */
  uvq_conn *conn;
  int64_t stream_id; /**< The request's stream. */
  /** The requested path ("/dir/file"), or "" if no valid request line came. */
  const char *path;
  /**
   * HTTP-like status: 200 once the file was opened, 400 / 403 / 404 / 500
   * when refused with UVQ_HQ_ERR_BAD_REQUEST / FORBIDDEN / NOT_FOUND /
   * IO or INTERNAL, 414 for a request line over the limit, 408 when it
   * was late (UVQ_HQ_ERR_REQUEST_TIMEOUT), 0 if the request never
   * completed.
   */
  unsigned int status;
  /** Nonzero if the whole file was queued with FIN. */
  int complete;
  /** File bytes queued on the stream (not necessarily delivered). */
  uint64_t bytes;
  /**
   * Response bytes the client acknowledged (uvq_stream_get_acked): what
   * reached it, counted from the first byte without gaps. With conn NULL,
   * the count as of the last acknowledgement the endpoint processed.
   */
  uint64_t acked;
  /**
   * Nonzero if the client acknowledged the whole response and its FIN:
   * the file was delivered. Zero when the stream was reset (a refusal,
   * the client's STOP_SENDING) or the connection ended first.
   */
  int delivered;
} uvq_hq_log_entry;

/** Called when a request stream opens; the result is passed to the end
 * callback. May be NULL. */
typedef void *(*uvq_hq_log_start_cb)(uvq_conn *conn, int64_t stream_id,
                                     void *user_data);
/** Called once per stream the start callback saw, when it is freed (also
 * from the connection's on_closed). */
typedef void (*uvq_hq_log_end_cb)(const uvq_hq_log_entry *e, void *log,
                                  void *user_data);

/**
 * uvq_hq_server_set_log installs access-log hooks (NULL, NULL: none). Set
 * them before the first connection is accepted.
 */
UVQ_EXTERN void uvq_hq_server_set_log(uvq_hq_server *srv,
                                      uvq_hq_log_start_cb start,
                                      uvq_hq_log_end_cb end, void *user_data);

/**
 * uvq_hq_server_set_limits bounds what a request stream may hold before its
 * request line is complete (set before the first connection is accepted):
 *
 * - |request_timeout| (ns; 0 = none): a stream whose request line is not
 *   whole this long after its first frame arrived (in order or not) is
 *   reset in both directions with UVQ_HQ_ERR_REQUEST_TIMEOUT (access-log
 *   status 408). Runs on the connection's application timer
 *   (uvq_conn_set_app_timer), which hq owns on its connections. Default
 *   UVQ_HQ_REQUEST_TIMEOUT.
 * - |max_request| (16..65536): the longest request line, "GET " and CRLF
 *   included; a longer one is reset with UVQ_HQ_ERR_BAD_REQUEST (status
 *   414) as soon as the bytes over it arrive. Default UVQ_HQ_MAX_REQUEST.
 *
 * A stream keeps only the bytes of the line that arrived, so an unfinished
 * request line costs at most |max_request| bytes for at most
 * |request_timeout|. Returns 0 or UVQ_ERR_INVALID_ARGUMENT.
 */
UVQ_EXTERN int uvq_hq_server_set_limits(uvq_hq_server *srv,
                                        uint64_t request_timeout,
                                        size_t max_request);

/** Counters of an hq server, over all its connections since creation. */
typedef struct uvq_hq_server_stats {
  /** Files served to completion, and bytes queued for them. */
  uint64_t files;
  uint64_t bytes; /**< See files. */
  /** Request streams opened by clients. */
  uint64_t requests;
  /** Streams reset because the request line was late (request_timeout). */
  uint64_t request_timeouts;
  /** Streams reset because the request line was over max_request. */
  uint64_t requests_too_long;
} uvq_hq_server_stats;

/** uvq_hq_server_get_stats copies the counters of |srv| into |st|. Same thread
 * as the endpoints. */
UVQ_EXTERN void uvq_hq_server_get_stats(uvq_hq_server *srv,
                                        uvq_hq_server_stats *st);

/**
 * uvq_hq_server_set_file_cache keeps up to |max_entries| resolved files
 * (0, the default: none), so a repeated GET of the same file opens
 * nothing: a file of 16 KiB or less is read once and kept in memory (at
 * most |max_bytes| bytes, its path included), a larger one keeps its open
 * descriptor (at most |max_fds| of them, least recently used evicted
 * first: mind RLIMIT_NOFILE; 0: larger files are not cached). An entry is
 * served for |valid| ns, then looked up again, so a changed, replaced or
 * removed file is seen within that time; not-found and refused paths are never
 * cached, and only what the resolver above found is (the same path jail).
 * Replaces the cache there was (its entries dropped; a file still being sent
 * stays open until it is done). Same thread as the endpoints. Returns 0,
 * UVQ_ERR_INVALID_ARGUMENT or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_hq_server_set_file_cache(uvq_hq_server *srv,
                                            size_t max_entries,
                                            size_t max_bytes, size_t max_fds,
                                            uint64_t valid);

/** uvq_hq_server_clear_file_cache drops every entry of the file cache (a
 * file still being sent stays open until it is done): for a reload. */
UVQ_EXTERN void uvq_hq_server_clear_file_cache(uvq_hq_server *srv);

/** Counters of an hq server's file cache (uvq_hq_server_set_file_cache). */
typedef struct uvq_hq_file_cache_stats {
  uint64_t hits;        /**< Requests answered from the cache. */
  uint64_t misses;      /**< Requests that looked the file up (a cache
                             that is disabled counts none). */
  uint64_t evictions;   /**< Entries dropped to stay within the limits. */
  uint64_t expirations; /**< Entries found older than |valid|. */
  uint64_t entries;     /**< Entries held now. */
  uint64_t bytes;       /**< Bytes held now (see max_bytes). */
  uint64_t fds;         /**< Descriptors held now (see max_fds). */
} uvq_hq_file_cache_stats;

/** uvq_hq_server_get_file_cache_stats copies the file cache's counters. */
UVQ_EXTERN void uvq_hq_server_get_file_cache_stats(uvq_hq_server *srv,
                                                   uvq_hq_file_cache_stats *st);

/** Files served to completion and bytes queued for them, since creation. */
UVQ_EXTERN void uvq_hq_server_get_counts(uvq_hq_server *srv, uint64_t *pfiles,
                                         uint64_t *pbytes);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

/** Where a request stands (uvq_hq_request.state). */
typedef enum uvq_hq_state {
  /** Not requested yet (waiting for the handshake or for stream credit). */
  UVQ_HQ_PENDING = 0,
  /** Request sent, response arriving. */
  UVQ_HQ_ACTIVE,
  /** The whole response arrived (FIN). */
  UVQ_HQ_DONE,
  /** The server reset the stream, the sink failed, or the connection
   * ended first; see reset_code / error. */
  UVQ_HQ_FAILED
} uvq_hq_state;

/**
 * One file to fetch. The caller fills the inputs and owns the array, which
 * must stay valid until the client is deleted; the client fills the
 * outputs.
 */
typedef struct uvq_hq_request {
  /* Inputs. */
  /** Request path, sent as is ("/dir/file"). Not copied. */
  const char *path;
  /** Where the body goes: a file descriptor written with write(2), or -1
   * to discard it (the bytes are still counted). Not closed. */
  int sink_fd;
  void *user_data; /**< The caller's; not used by the client. */
  /** If not NULL, where the body goes instead of sink_fd: called with
   * each piece in order, from the connection's callbacks. Returns 0, or
   * -1 with errno set to abandon the request as a sink failure (as a
   * failed write to sink_fd). */
  int (*sink)(struct uvq_hq_request *req, uvq_conn *conn, const uint8_t *data,
              size_t len);

  /* Outputs. */
  uvq_hq_state state; /**< Where the request stands. */
  /** Body bytes received. */
  uint64_t bytes;
  /** FAILED: nonzero if the server reset the stream with reset_code. */
  int reset;
  uint64_t reset_code; /**< The server's reset code (UVQ_HQ_ERR_* or another
                          number). */
  /**
   * FAILED without a reset: a UVQ_ERR_* — the connection's close error
   * (uvq_close_info.error, or UVQ_ERR_CLOSED for a clean close that came
   * before this file did), UVQ_ERR_STREAM_LIMIT never (it only delays), or
   * UVQ_ERR_IO if the sink failed (errno in sink_errno).
   */
  int error;
  int sink_errno; /**< errno of the failed write when error is UVQ_ERR_IO. */
} uvq_hq_request;

/** An hq-interop client: the requests of one connection. */
typedef struct uvq_hq_client uvq_hq_client;

/**
 * Called once from the connection's on_closed, after every request reached
 * DONE or FAILED. |ci| is the connection's close information (valid during
 * the call only). The callback may delete |cli|.
 */
typedef void (*uvq_hq_done_cb)(uvq_hq_client *cli, const uvq_close_info *ci,
                               void *user_data);

/**
 * uvq_hq_client_new prepares fetching |nreqs| files on one connection. Pass
 * uvq_hq_client_callbacks() and |*pcli| as the connection's callbacks and
 * user data to uvq_uv_connect / uvq_endpoint_connect. Once established it opens
 * a stream per request (when the peer's stream limit is reached it waits for
 * on_streams_available: a limit never fails a request), and when every
 * request has finished it closes the connection with application error 0.
 * A failed request does not stop the others.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (no requests, a path that is empty or
 * longer than the request limit allows), or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_hq_client_new(uvq_hq_client **pcli, uvq_hq_request *reqs,
                                 size_t nreqs, const uvq_mem *mem,
                                 uvq_hq_done_cb done, void *user_data);

/** The callbacks an hq client connection runs on. */
UVQ_EXTERN const uvq_app_callbacks *uvq_hq_client_callbacks(void);

/**
 * uvq_hq_client_del frees |cli|. Call it after done fired, or if the
 * connection could not be started at all.
 */
UVQ_EXTERN void uvq_hq_client_del(uvq_hq_client *cli);

/** Requests that reached DONE so far. */
UVQ_EXTERN size_t uvq_hq_client_completed(uvq_hq_client *cli);

/** Called once, when every request has finished on a held connection. */
typedef void (*uvq_hq_ready_cb)(uvq_hq_client *cli, void *user_data);

/**
 * uvq_hq_client_hold keeps the connection open once every request has
 * finished, instead of closing it: |ready| (may be NULL) fires then, from
 * one of the connection's callbacks, with the outcomes in the requests.
 * The connection stays until uvq_hq_client_close, the peer or a timeout
 * ends it; done fires as always. Call it before connecting.
 */
UVQ_EXTERN void uvq_hq_client_hold(uvq_hq_client *cli, uvq_hq_ready_cb ready);

/**
 * uvq_hq_client_close closes the connection with application error 0.
 * Returns 0 (also if it is closing already), UVQ_ERR_INVALID_STATE if it
 * has not reported yet (not established), or uvq_conn_close's error.
 */
UVQ_EXTERN int uvq_hq_client_close(uvq_hq_client *cli);

#ifdef __cplusplus
}
#endif

#endif
