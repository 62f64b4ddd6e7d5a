/**
 * @file uvquic_h3.h
 * uvquic HTTP/3 (RFC 9114) on nghttp3: a uvq_app_callbacks implementation
 * for servers and clients. It owns the control stream and the QPACK
 * encoder/decoder streams, SETTINGS and GOAWAY; the application sees
 * requests and responses.
 *
 * Server:
 *   uvq_h3_server_config cfg;
 *   uvq_h3_server_config_default(&cfg);
 *   cfg.on_request = my_on_request;
 *   uvq_h3_server_new(&srv, &cfg);
 *   ... in the endpoint's on_accept, for ALPN "h3":
 *   return uvq_h3_server_accept(srv, conn, now, pcallbacks, pconn_user_data);
 *   ... in my_on_request: uvq_h3_respond(st, &resp);
 *
 * Client (one uvq_h3_conn per QUIC connection, as on the server; the
 * client makes and frees its own, like ngtcp2_conn_client_new):
 *   uvq_h3_conn_client_new(&h3, &ccfg);
 *   uvq_endpoint_connect(ep, &params{callbacks = uvq_h3_callbacks(),
 *                                    user_data = h3}, now, &conn);
 *   uvq_h3_submit(h3, &req, &st);   (before or after the handshake)
 *   uvq_h3_conn_start(h3, conn);    (optional: requests go as 0-RTT)
 *   ... ccfg.on_closed fires last; then uvq_h3_conn_del(h3).
 *
 * Threading and time follow the core: one thread, time from the caller.
 * Every callback below may call any function of this header, except that
 * uvq_h3_conn_del and uvq_h3_server_del may only be called where said.
 */
#ifndef UVQUIC_H3_H
#define UVQUIC_H3_H

#include "uvquic/uvquic.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The ALPN token of HTTP/3. */
#define UVQ_H3_ALPN "h3"

/* HTTP/3 application error codes (RFC 9114 §8.1). */
#define UVQ_H3_NO_ERROR 0x100 /**< No error. */
#define UVQ_H3_GENERAL_PROTOCOL_ERROR                                          \
  0x101                             /**< Peer violated protocol requirements. */
#define UVQ_H3_INTERNAL_ERROR 0x102 /**< Internal error. */
#define UVQ_H3_STREAM_CREATION_ERROR 0x103 /**< Stream creation error. */
#define UVQ_H3_CLOSED_CRITICAL_STREAM                                          \
  0x104 /**< A critical stream was closed. */
#define UVQ_H3_FRAME_UNEXPECTED                                                \
  0x105 /**< Frame not permitted in the current state. */
#define UVQ_H3_FRAME_ERROR 0x106    /**< Frame violated layout or size rules. */
#define UVQ_H3_EXCESSIVE_LOAD 0x107 /**< Peer generating excessive load. */
#define UVQ_H3_ID_ERROR 0x108       /**< An identifier was used incorrectly. */
#define UVQ_H3_SETTINGS_ERROR                                                  \
  0x109 /**< SETTINGS frame contained invalid values. */
#define UVQ_H3_MISSING_SETTINGS 0x10a /**< No SETTINGS frame received. */
#define UVQ_H3_REQUEST_REJECTED                                                \
  0x10b /**< Request not processed (safe to retry). */
#define UVQ_H3_REQUEST_CANCELLED 0x10c  /**< Data no longer needed. */
#define UVQ_H3_REQUEST_INCOMPLETE 0x10d /**< Stream terminated early. */
#define UVQ_H3_MESSAGE_ERROR 0x10e      /**< Malformed message. */
#define UVQ_H3_CONNECT_ERROR                                                   \
  0x10f /**< TCP reset or error on a CONNECT request. */
#define UVQ_H3_VERSION_FALLBACK 0x110 /**< Retry over HTTP/1.1. */

/**
 * Outcomes of an exchange (uvq_h3_complete_cb) and errors of this API, in a
 * range of their own next to the core's UVQ_ERR_*.
 */
typedef enum uvq_h3_error {
  /** The peer reset the stream; app_error holds its H3 code. */
  UVQ_H3_ERR_RESET = -100,
  /** We cancelled it (uvq_h3_cancel); app_error is H3_REQUEST_CANCELLED. */
  UVQ_H3_ERR_CANCELLED = -101,
  /**
   * The server did not and will not process the request (GOAWAY or
   * H3_REQUEST_REJECTED); it is safe to retry on another connection.
   */
  UVQ_H3_ERR_REJECTED = -102,
  /** The connection ended first; app_error is its close code. */
  UVQ_H3_ERR_CONN_CLOSED = -103,
  /** The peer's message was malformed (we reset with H3_MESSAGE_ERROR). */
  UVQ_H3_ERR_MALFORMED = -104,
  /** uvq_h3_shutdown was called: no new requests on this connection. */
  UVQ_H3_ERR_SHUTDOWN = -105,
  /** A body provider returned an error; the stream was reset. */
  UVQ_H3_ERR_PROVIDER = -106,
  /** A response was already submitted on this stream. */
  UVQ_H3_ERR_ALREADY_RESPONDED = -107
} uvq_h3_error;

/** uvq_h3_strerror names a UVQ_H3_ERR_* or UVQ_ERR_* value. */
UVQ_EXTERN const char *uvq_h3_strerror(int err);

/** An HTTP/3 connection (one per QUIC connection), server or client side. */
typedef struct uvq_h3_conn uvq_h3_conn;
/** An HTTP/3 server: request handling shared by all its connections. */
typedef struct uvq_h3_server uvq_h3_server;
/** One request/response exchange (a request stream), on either side. */
typedef struct uvq_h3_stream uvq_h3_stream;

/**
 * A header field; names are lower case on the wire. Fields you pass in need
 * not be NUL-terminated. Fields the library lends you (received requests,
 * responses and trailers, and the method/scheme/authority/path pointers of
 * uvq_h3_request_info) are also NUL-terminated, the NUL not counted in the
 * length; HTTP/3 field values cannot contain NUL (RFC 9114 §4.2).
 */
typedef struct uvq_h3_header {
  const char
      *name; /**< Field name (lowercase on the wire); not NUL-terminated. */
  size_t namelen;    /**< Length of |name|. */
  const char *value; /**< Field value; not NUL-terminated. */
  size_t valuelen;   /**< Length of |value|. */
} uvq_h3_header;

/* ------------------------------------------------------------------------ */
/* Bodies                                                                   */
/* ------------------------------------------------------------------------ */

/** Returned by a uvq_h3_read_cb with nothing to give yet. */
#define UVQ_H3_READ_WOULDBLOCK (-1)

/**
 * A pull-style body provider. Fill up to |len| bytes of |buf| and return
 * how many (0 is allowed with *peof set), set *peof when this is the end,
 * return UVQ_H3_READ_WOULDBLOCK to pause (call uvq_h3_resume when data is
 * ready), or any other negative value to abort: the stream is reset with
 * H3_INTERNAL_ERROR. It is only called when the stream has room in its send
 * buffer, so a huge body streams with bounded memory.
 */
typedef ssize_t (*uvq_h3_read_cb)(uvq_h3_stream *st, uint8_t *buf, size_t len,
                                  int *peof, void *user_data);

/** Where a body comes from (uvq_h3_body.type). */
typedef enum uvq_h3_body_type {
  /** No body. */
  UVQ_H3_BODY_NONE = 0,
  /** |data|/|len|: copied at submission (copy nonzero) or borrowed. */
  UVQ_H3_BODY_BUFFER = 1,
  /** |read|/|read_user_data|: pulled as the stream has room. */
  UVQ_H3_BODY_PROVIDER = 2
} uvq_h3_body_type;

/** A request or response body. */
typedef struct uvq_h3_body {
  uvq_h3_body_type type; /**< NONE, BUFFER or PROVIDER. */
  const uint8_t *data;   /**< BUFFER: the bytes. */
  size_t len;            /**< BUFFER: their length. */
  /** BUFFER: nonzero copies |data| at submission. */
  int copy;
  /**
   * BUFFER, borrowed: called once when the library no longer needs |data|
   * (the exchange ended, successfully or not). May be NULL.
   */
  void (*free_cb)(const uint8_t *data, void *user_data);
  void *free_user_data; /**< Passed to |free_cb|. */
  uvq_h3_read_cb
      read; /**< PROVIDER: called for more bytes as the stream has room; returns
               a count, UVQ_H3_READ_WOULDBLOCK (resume with uvq_h3_resume) or a
               negative error (resets the stream). */
  void *read_user_data; /**< Passed to |read|. */
} uvq_h3_body;

/* ------------------------------------------------------------------------ */
/* Priorities (RFC 9218)                                                    */
/* ------------------------------------------------------------------------ */

/** The default urgency (RFC 9218). */
#define UVQ_H3_URGENCY_DEFAULT 3
/** The most urgent. */
#define UVQ_H3_URGENCY_HIGH 0
/** The least urgent. */
#define UVQ_H3_URGENCY_LOW 7

/**
 * uvq_h3_stream_set_priority changes an exchange's priority. A client sends
 * PRIORITY_UPDATE; a server overrides what the client asked for (nghttp3
 * then ignores the client's updates) and schedules its response data by it.
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (urgency > 7), UVQ_ERR_INVALID_STATE
 * (stream not open yet or gone) or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_h3_stream_set_priority(uvq_h3_stream *st, uint32_t urgency,
                                          int incremental);

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

/** What the server received: valid during on_request only. */
typedef struct uvq_h3_request_info {
  const char *method; /**< :method. */
  size_t methodlen;   /**< Length of |method|. */
  const char *scheme; /**< :scheme. */
  size_t schemelen;   /**< Length of |scheme|. */
  /** :authority, or the Host header; may be empty. */
  const char *authority;
  size_t authoritylen; /**< Length of |authority|. */
  const char *path;    /**< :path. */
  size_t pathlen;      /**< Length of |path|. */
  /** Every field of the header section, pseudo-headers included. */
  const uvq_h3_header *headers;
  size_t nheaders; /**< Entries in |headers|. */
  /** content-length, or -1 if absent. */
  int64_t content_length;
  /** The request's RFC 9218 priority (defaults if it sent none). */
  uint32_t urgency;
  int incremental; /**< Nonzero if the request asked for incremental delivery.
                    */
  /**
   * Nonzero if (part of) the request arrived as 0-RTT early data, which an
   * attacker can replay (RFC 9001 §9.2): refuse non-idempotent ones (e.g.
   * answer 425 Too Early, RFC 8470) unless the application is replay-safe.
   */
  int early_data;
} uvq_h3_request_info;

/** A response: valid during the uvq_h3_respond call only (copied). */
typedef struct uvq_h3_response {
  /** 100..599 (1xx are not supported by uvq_h3_respond). */
  unsigned int status;
  const uvq_h3_header
      *headers;     /**< Fields to send (copied); no pseudo-headers. */
  size_t nheaders;  /**< Entries in |headers|. */
  uvq_h3_body body; /**< The body. */
  /** Trailer fields sent after the body; copied. */
  const uvq_h3_header *trailers;
  size_t ntrailers; /**< Entries in |trailers|. */
} uvq_h3_response;

/** The current version of uvq_h3_server_config. */
#define UVQ_H3_SERVER_CONFIG_VERSION 1

/** Configuration of an HTTP/3 server (uvq_h3_server_new). */
typedef struct uvq_h3_server_config {
  int version; /**< UVQ_H3_SERVER_CONFIG_VERSION (set by
                  uvq_h3_server_config_default). */
  /**
   * Allocator of the server object and of every connection's state,
   * nghttp3 included. NULL: libc for the server object, and each
   * connection uses its endpoint's (uvq_endpoint_get_mem). Must outlive
   * the server.
   */
  const uvq_mem *mem;
  void *user_data; /**< Passed to every callback below. */
  /**
   * Largest request header section (RFC 9114 §4.2.2: the sum of name +
   * value + 32 over all fields) accepted; larger ones are answered with 431
   * without calling on_request. Also advertised as
   * SETTINGS_MAX_FIELD_SECTION_SIZE. Default 16 KiB.
   *
   * It is enforced as the bytes arrive, not only once the section is
   * whole: a HEADERS frame is held by h3 until its last byte is in (nghttp3
   * decodes it only then), and one whose length on the wire exceeds this
   * limit is refused from its frame header, before its payload: a request
   * section with 431 (an early response, RFC 9114 §4.1.2, then
   * STOP_SENDING with H3_NO_ERROR), a trailer section by resetting the
   * stream with H3_EXCESSIVE_LOAD. (An encoded section is never larger
   * than its §4.2.2 size unless padded: each field line's encoding costs
   * less than the 32 bytes the size adds.) A request stream so holds at
   * most this many bytes of a section, and only bytes that arrived.
   */
  uint64_t max_field_section_size;
  /**
   * Requests served per connection; 0 = no limit. After the last one
   * arrives the server sends GOAWAY, rejects later request streams with
   * H3_REQUEST_REJECTED and closes the connection with H3_NO_ERROR once the
   * accepted exchanges are done. Default 0.
   */
  uint64_t max_requests_per_conn;
  /**
   * A connection that has not started a request within this many ns of
   * being accepted is closed with H3_NO_ERROR; 0 disables. A request has
   * started once its header section has arrived (a section that never
   * completes does not count: header_timeout resets its stream, and this
   * timer still closes the connection). It runs on the connection's
   * application timer (uvq_conn_set_app_timer), so every driver serves it
   * with no extra call. Default UVQ_H3_REQUEST_TIMEOUT (30 s): the
   * transport's default idle timeout, so a client that lets an unused
   * connection go idle sees no difference, while one that keeps it alive
   * with PINGs without ever asking for anything is closed.
   */
  uint64_t request_timeout;

  /**
   * Required. A request's header section arrived. Answer with
   * uvq_h3_respond now or later (e.g. from on_request_end). Returning
   * nonzero resets the stream with H3_INTERNAL_ERROR.
   */
  int (*on_request)(uvq_h3_stream *st, const uvq_h3_request_info *req,
                    void *user_data);
  /** Request body bytes, lent for the call. May be NULL (discarded). */
  void (*on_request_body)(uvq_h3_stream *st, const uint8_t *data, size_t len,
                          void *user_data);
  /** Request trailers, lent for the call. May be NULL. */
  void (*on_request_trailers)(uvq_h3_stream *st, const uvq_h3_header *trailers,
                              size_t ntrailers, void *user_data);
  /** The whole request arrived. May be NULL. */
  void (*on_request_end)(uvq_h3_stream *st, void *user_data);
  /**
   * The exchange is over: |error| 0 if the response was fully delivered,
   * else a UVQ_H3_ERR_* with |app_error|. |st| is freed when it returns.
   * Fires for every stream on_request saw. May be NULL.
   */
  void (*on_stream_close)(uvq_h3_stream *st, int error, uint64_t app_error,
                          void *user_data);

  /**
   * A request stream whose header section is not complete this many ns
   * after its first frame arrived (in order or not) is reset in both
   * directions with H3_REQUEST_REJECTED, without on_request or
   * on_stream_close (RFC 9114 §4.1.1: the server cancelled a request it
   * did no processing for; the client may retry it). Counted in
   * uvq_h3_conn_stats.header_timeouts. 0 disables. Default
   * UVQ_H3_HEADER_TIMEOUT (10 s): a real client sends its header section
   * in one flight, so 10 s is many round trips even on a lossy path, while
   * a client that dribbles sections (slowloris) holds a stream for 10 s at
   * most. Runs on the application timer too.
   */
  uint64_t header_timeout;
} uvq_h3_server_config;

/** Default request_timeout and header_timeout of uvq_h3_server_config. */
#define UVQ_H3_REQUEST_TIMEOUT (30 * UVQ_SECONDS)
/** Default header_timeout. */
#define UVQ_H3_HEADER_TIMEOUT (10 * UVQ_SECONDS)

/** uvq_h3_server_config_default zeroes |cfg|, sets its version and the defaults
 * above (max_field_section_size 16 KiB, request_timeout, header_timeout). Any
 * thread. */
UVQ_EXTERN void uvq_h3_server_config_default(uvq_h3_server_config *cfg);

/**
 * uvq_h3_server_new creates a server (shared by any number of connections)
 * from |cfg| (copied). Returns 0, UVQ_ERR_INVALID_ARGUMENT (no on_request)
 * or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_h3_server_new(uvq_h3_server **psrv,
                                 const uvq_h3_server_config *cfg);

/**
 * uvq_h3_server_shutdown starts a graceful shutdown of every connection
 * |srv| serves (uvq_h3_shutdown on each: GOAWAY, new requests refused with
 * H3_REQUEST_REJECTED, the exchanges in flight finish, then the connection
 * closes with H3_NO_ERROR; one still in its handshake closes at once).
 * Pair it with
 * uvq_endpoint_stop_accepting, and close what is left after a deadline.
 * Calling it again is a no-op.
 */
UVQ_EXTERN void uvq_h3_server_shutdown(uvq_h3_server *srv);

/** uvq_h3_server_del frees |srv|; its connections must have closed. */
UVQ_EXTERN void uvq_h3_server_del(uvq_h3_server *srv);

/**
 * uvq_h3_server_accept serves |conn|: call it from the endpoint's on_accept
 * for ALPN "h3" (|now| is the time of that call, on the endpoint's clock:
 * uvq_conn_get_now(conn) gives it, uv_hrtime() under the libuv adapter)
 * and return its result.
 * Sets *pcallbacks and *pconn_user_data; the per-connection state is freed
 * after on_closed. request_timeout and header_timeout run on the
 * connection's application timer (uvq_conn_set_app_timer), which h3 owns:
 * do not set it yourself on an h3 connection. Returns 0 or UVQ_ERR_NOMEM
 * (refuse the connection).
 */
UVQ_EXTERN int uvq_h3_server_accept(uvq_h3_server *srv, uvq_conn *conn,
                                    uvq_tstamp now,
                                    const uvq_app_callbacks **pcallbacks,
                                    void **pconn_user_data);

/**
 * uvq_h3_respond answers the request on |st|; |resp| and everything it
 * points to is copied except a borrowed body buffer or provider. HEAD
 * responses never carry a body (a body given is released unsent; keep the
 * content-length header you want the client to see).
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (bad status, a provider without
 * read), UVQ_H3_ERR_ALREADY_RESPONDED, UVQ_ERR_INVALID_STATE (a client
 * stream, or the exchange is over) or UVQ_ERR_NOMEM. On error a borrowed
 * body's free_cb is not called.
 */
UVQ_EXTERN int uvq_h3_respond(uvq_h3_stream *st, const uvq_h3_response *resp);

/**
 * uvq_h3_stop_request_body tells the client that the rest of the request
 * is not needed (RFC 9114 §4.1.2: a server may answer before the request
 * is complete): it sends STOP_SENDING with H3_NO_ERROR on the request
 * stream, after uvq_h3_respond. No on_request_body, on_request_trailers or
 * on_request_end fires for |st| after it returns; on_stream_close still
 * reports 0 once the response is delivered, and the client sees a complete
 * response. A no-op returning 0 if the whole request already arrived.
 *
 * Returns 0, or UVQ_ERR_INVALID_STATE (a client stream, no response
 * submitted yet, or the exchange is over).
 */
UVQ_EXTERN int uvq_h3_stop_request_body(uvq_h3_stream *st);

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

/** Per-request callbacks; all may be NULL. |user_data| is the request's. */
typedef struct uvq_h3_request_callbacks {
  /** The final response's header section; lent for the call. */
  void (*on_response)(uvq_h3_stream *st, unsigned int status,
                      const uvq_h3_header *headers, size_t nheaders,
                      void *user_data);
  /** Response body bytes, lent for the call. */
  void (*on_data)(uvq_h3_stream *st, const uint8_t *data, size_t len,
                  void *user_data);
  /** Response trailers, lent for the call. */
  void (*on_trailers)(uvq_h3_stream *st, const uvq_h3_header *trailers,
                      size_t ntrailers, void *user_data);
  /**
   * Fires exactly once per successfully submitted request, last: |error| 0
   * when the response arrived completely (and our request was delivered),
   * otherwise a UVQ_H3_ERR_* and |app_error| (the reset code, or the
   * connection's close code). |st| is freed when it returns.
   */
  void (*on_complete)(uvq_h3_stream *st, int error, uint64_t app_error,
                      void *user_data);
} uvq_h3_request_callbacks;

/** A request to submit (uvq_h3_submit); start from uvq_h3_request_init. */
typedef struct uvq_h3_request {
  /** Required unless raw_headers: NUL-terminated, copied. */
  const char *method;
  const char
      *scheme; /**< Required unless raw_headers: NUL-terminated, copied. */
  const char
      *authority;   /**< Required unless raw_headers: NUL-terminated, copied. */
  const char *path; /**< Required unless raw_headers: NUL-terminated, copied. */
  /** Extra fields (regular ones; copied). */
  const uvq_h3_header *headers;
  size_t nheaders; /**< Entries in |headers|. */
  /**
   * Nonzero sends |headers| verbatim and nothing else: no pseudo-headers
   * are added (proxies and tests that need an exact field section).
   */
  int raw_headers;
  uvq_h3_body body; /**< The request body. */
  const uvq_h3_header
      *trailers;    /**< Trailer fields sent after the body; copied. */
  size_t ntrailers; /**< Entries in |trailers|. */
  /** RFC 9218: 0..7 (default UVQ_H3_URGENCY_DEFAULT) and incremental. A
   * non-default value is sent as a "priority" header field. */
  uint32_t urgency;
  int incremental; /**< Nonzero asks for incremental delivery (RFC 9218). */
  uvq_h3_request_callbacks cb; /**< Callbacks of this request. */
  void *user_data;             /**< Passed to |cb| and returned by
                                  uvq_h3_stream_get_user_data. */
} uvq_h3_request;

/** uvq_h3_request_init zeroes |req| and sets the default urgency. */
UVQ_EXTERN void uvq_h3_request_init(uvq_h3_request *req);

/** The current version of uvq_h3_client_config. */
#define UVQ_H3_CLIENT_CONFIG_VERSION 1

/** Configuration of an HTTP/3 client connection (uvq_h3_conn_client_new). */
typedef struct uvq_h3_client_config {
  int version; /**< UVQ_H3_CLIENT_CONFIG_VERSION (set by
                  uvq_h3_client_config_default). */
  /**
   * Allocator of the client and its requests, nghttp3 included. NULL:
   * libc for the client and its requests (they exist before the
   * connection), and the endpoint's allocator for nghttp3, which is
   * created when the connection first reports. Must outlive the client.
   */
  const uvq_mem *mem;
  void *user_data; /**< Passed to every callback below. */
  /** Largest response header section we accept (advertised). 64 KiB. */
  uint64_t max_field_section_size;
  /** The connection is established and HTTP/3 streams are open. */
  void (*on_ready)(uvq_h3_conn *h3, void *user_data);
  /**
   * The server sent GOAWAY with |id|: requests on streams >= |id| complete
   * with UVQ_H3_ERR_REJECTED, queued ones too; later submissions fail.
   */
  void (*on_goaway)(uvq_h3_conn *h3, int64_t id, void *user_data);
  /**
   * The QUIC connection ended; every request has completed before this.
   * Fires once, last; uvq_h3_conn_del may be called from here.
   */
  void (*on_closed)(uvq_h3_conn *h3, const uvq_close_info *ci, void *user_data);
} uvq_h3_client_config;

/** uvq_h3_client_config_default zeroes |cfg|, sets its version and the default
 * max_field_section_size (64 KiB). Any thread. */
UVQ_EXTERN void uvq_h3_client_config_default(uvq_h3_client_config *cfg);

/**
 * uvq_h3_conn_client_new makes the client side of one HTTP/3 connection:
 * a uvq_h3_conn, the type a server's connections have too, so the
 * functions under "Both sides" take it. Pass uvq_h3_callbacks() and |*ph3|
 * as the QUIC connection's callbacks and user data to uvq_endpoint_connect
 * (or uvq_uv_connect). The caller owns it: uvq_h3_conn_del frees it. Returns
 * 0, UVQ_ERR_INVALID_ARGUMENT or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_h3_conn_client_new(uvq_h3_conn **ph3,
                                      const uvq_h3_client_config *cfg);

/** The callbacks an h3 client connection runs on. */
UVQ_EXTERN const uvq_app_callbacks *uvq_h3_callbacks(void);

/**
 * uvq_h3_conn_del frees a connection made by uvq_h3_conn_client_new: after
 * its on_closed fired (also from inside it), or if its connection never
 * started. A server's connections belong to the uvq_h3_server: for one of
 * them this does nothing.
 */
UVQ_EXTERN void uvq_h3_conn_del(uvq_h3_conn *h3);

/**
 * uvq_h3_conn_start (client) binds |h3| to |conn|, the connection
 * uvq_endpoint_connect (or uvq_uv_connect) just returned for it. If the core
 * lets streams open now (0-RTT attempted: uvq_connect_params.early_data
 * with a resumption blob), it opens the HTTP/3 control and QPACK streams
 * and the queued requests, which then go out as early data at the next
 * flush, as do requests submitted later before the handshake completes;
 * otherwise it does nothing and requests wait for the handshake as without
 * it. Optional: a client that never calls it sends no 0-RTT.
 *
 * If the server refuses the early data, nothing is lost: the requests sent
 * early are sent again once the handshake completes, in their order, with
 * their header lists, buffer bodies and trailers. Only a request whose
 * body provider was already read (its bytes cannot be asked for again)
 * completes with UVQ_H3_ERR_PROVIDER (a cancelled one with
 * UVQ_H3_ERR_CANCELLED). Early data can be replayed by an attacker (RFC
 * 9001 §9.2): start early only with idempotent requests queued.
 *
 * Returns 0 (also when no 0-RTT is attempted), UVQ_ERR_INVALID_ARGUMENT
 * (NULL, a server connection), UVQ_ERR_INVALID_STATE (|h3| is bound to
 * another connection), UVQ_ERR_CLOSED or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_h3_conn_start(uvq_h3_conn *h3, uvq_conn *conn);

/**
 * uvq_h3_submit sends a request (copied, except a borrowed body). Before
 * the handshake completes, or while the server's stream limit is reached,
 * it waits in a queue (a stream limit never fails a request). Sets *pst if
 * |pst| is not NULL; its on_complete fires exactly once.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (missing pseudo-header fields, urgency
 * > 7, a provider without read), UVQ_H3_ERR_SHUTDOWN (after
 * uvq_h3_shutdown, or GOAWAY received), UVQ_ERR_CLOSED or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_h3_submit(uvq_h3_conn *h3, const uvq_h3_request *req,
                             uvq_h3_stream **pst);

/**
 * uvq_h3_cancel abandons a request: RESET_STREAM and STOP_SENDING with
 * H3_REQUEST_CANCELLED. on_complete then fires with UVQ_H3_ERR_CANCELLED —
 * at once for a request still queued, else when the stream closes. No data
 * callback fires after this returns. Returns 0, or UVQ_ERR_INVALID_STATE if
 * the exchange is already over or |st| is a server stream.
 */
UVQ_EXTERN int uvq_h3_cancel(uvq_h3_stream *st);

/* ------------------------------------------------------------------------ */
/* Both sides                                                               */
/* ------------------------------------------------------------------------ */

/**
 * uvq_h3_shutdown starts a graceful shutdown: it sends GOAWAY (server: the
 * first stream id it will not process; client: push id 0), refuses new
 * requests, lets the exchanges in flight finish, then closes the QUIC
 * connection with H3_NO_ERROR. Queued client requests complete with
 * UVQ_H3_ERR_SHUTDOWN. Calling it again is a no-op. Returns 0 or
 * UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_h3_shutdown(uvq_h3_conn *h3);

/**
 * uvq_h3_resume wakes a body provider that returned
 * UVQ_H3_READ_WOULDBLOCK. Returns 0 or UVQ_ERR_INVALID_STATE.
 */
UVQ_EXTERN int uvq_h3_resume(uvq_h3_stream *st);

/** The QUIC connection under |h3|. */
UVQ_EXTERN uvq_conn *uvq_h3_conn_get_conn(uvq_h3_conn *h3);
/** The h3 connection of |st|, and the stream's QUIC id (-1 while queued). */
UVQ_EXTERN uvq_h3_conn *uvq_h3_stream_get_conn(uvq_h3_stream *st);
/** The stream's QUIC id, or -1 while the request waits in the queue. */
UVQ_EXTERN int64_t uvq_h3_stream_get_id(uvq_h3_stream *st);
/** Application data of an exchange (server: starts NULL; client: the
 * request's user_data). */
UVQ_EXTERN void uvq_h3_stream_set_user_data(uvq_h3_stream *st, void *ud);
/** The exchange's application data (see uvq_h3_stream_set_user_data). */
UVQ_EXTERN void *uvq_h3_stream_get_user_data(uvq_h3_stream *st);

/**
 * uvq_h3_stream_get_acked returns how many bytes of the body this side
 * sends on |st| (server: the response body; client: the request body) the
 * peer has acknowledged — delivered, not merely sent — and sets
 * *pcomplete (if not NULL) to nonzero once the peer has acknowledged the
 * whole stream, FIN included: the message was delivered. An exchange cut
 * short (a reset by either side, STOP_SENDING, the connection ending
 * first) is never complete.
 *
 * It is the stream's acknowledged prefix (uvq_stream_get_acked) less the
 * header sections and frame headers written so far: exact once complete;
 * before, or for an exchange cut short, it may be short by the DATA frame
 * headers sent past the acknowledged point (at most 9 bytes per frame in
 * flight), never more than was acknowledged. Usable until |st| is freed,
 * in on_stream_close and on_complete included (an access log reads it
 * there); 0 for a client request still queued.
 */
UVQ_EXTERN uint64_t uvq_h3_stream_get_acked(uvq_h3_stream *st, int *pcomplete);

/** Counters of one h3 connection. */
typedef struct uvq_h3_conn_stats {
  uint64_t
      requests_started; /**< Server: requests received; client: submitted. */
  uint64_t requests_completed; /**< Exchanges that ended with error 0. */
  uint64_t requests_rejected;  /**< Requests refused with H3_REQUEST_REJECTED or
                                  by GOAWAY. */
  /* Server: sections over max_field_section_size: request sections
   * answered with 431 (once decoded, or at once from the HEADERS frame's
   * length), trailer sections reset with H3_EXCESSIVE_LOAD. */
  uint64_t header_too_large; /**< See the comment above. */
  uint64_t streams_reset;    /**< Exchanges that ended with a reset. */
  int goaway_sent;           /**< Nonzero once we sent GOAWAY. */
  int goaway_received;       /**< Nonzero once the peer sent GOAWAY. */
  /* Server: request streams reset by header_timeout (their end is also
   * counted above, as requests_rejected or streams_reset, by the code the
   * client's answering reset carries). */
  uint64_t header_timeouts; /**< See the comment above. */
  /* Server: nonzero if request_timeout closed the connection (readable
   * until on_closed; uvq_h3_server_get_stats keeps the sum). */
  int request_timed_out; /**< See the comment above. */
} uvq_h3_conn_stats;

/** uvq_h3_conn_get_stats copies the counters of |h3| into |st|. Same thread as
 * the connection; any time until the connection's on_closed returns. */
UVQ_EXTERN void uvq_h3_conn_get_stats(uvq_h3_conn *h3, uvq_h3_conn_stats *st);

/** Counters of an h3 server: the sums over its connections that closed. */
typedef struct uvq_h3_server_stats {
  uint64_t connections; /**< Connections that closed (their counters are summed
                           here). */
  uint64_t requests_started;   /**< Requests received. */
  uint64_t requests_completed; /**< Exchanges that ended with error 0. */
  uint64_t requests_rejected;  /**< Requests refused with H3_REQUEST_REJECTED or
                                  by GOAWAY. */
  uint64_t
      header_too_large;     /**< Header sections over max_field_section_size. */
  uint64_t streams_reset;   /**< Exchanges that ended with a reset. */
  uint64_t header_timeouts; /**< Request streams reset by header_timeout. */
  uint64_t request_timeouts; /**< Connections request_timeout closed. */
} uvq_h3_server_stats;

/** uvq_h3_server_get_stats copies the counters of |srv|, over every connection
 * it has served (closed ones summed, open ones as of now), into |st|. Same
 * thread as the endpoints. */
UVQ_EXTERN void uvq_h3_server_get_stats(uvq_h3_server *srv,
                                        uvq_h3_server_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* UVQUIC_H3_H */
