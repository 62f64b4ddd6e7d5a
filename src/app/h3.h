/*
 * HTTP/3 over uvquic (nghttp3): internal declarations shared by the h3
 * modules. The public API is include/uvquic/uvquic_h3.h; see
 * docs/internals/h3.md for the data path.
 *
 *   h3_fields.c  header sections: received fields, nghttp3 nv lists
 *   h3_conn.c    both sides: nghttp3 glue and callbacks, control/QPACK
 *                streams, exchanges, bodies, write pump, shutdown, and the
 *                uvq_app_callbacks every h3 connection runs on
 *   h3_server.c  server objects, accept, requests, responses, timeouts
 *   h3_gate.c    server request streams: HEADERS frames held until whole,
 *                max_field_section_size enforced as the bytes arrive
 *   h3_client.c  client objects, request queue, submit, cancel, GOAWAY
 */
#ifndef UVQ_APP_H3_H
#define UVQ_APP_H3_H

#include <nghttp3/nghttp3.h>

#include "uvquic/uvquic_h3.h"

/* Body bytes asked of a provider per read callback: one buffer of the
 * pool's bulk class (a file provider makes one read(2) per chunk). */
#define UVQ_H3_PROVIDER_CHUNK (64 * 1024)
/* A provider read shorter than this is copied into the stream's shared
 * chunks rather than handed over by reference: the core counts a
 * reference's bytes, not its buffer, against stream_send_buffer, so a
 * provider giving little per call would otherwise pin a whole chunk per
 * read (1 MiB of 1000-byte reads: 66 MiB of buffers). */
#define UVQ_H3_PROVIDER_COPY_BELOW (UVQ_H3_PROVIDER_CHUNK / 2)
/* The longest DATA frame header: a type and a length, each a varint. */
#define UVQ_H3_DATA_HEADER_MAX 9
/* Body bytes of a buffer handed to nghttp3 per DATA frame. */
#define UVQ_H3_BUFFER_CHUNK (64 * 1024)
/* RFC 9114 §4.2.2: each field line costs name + value + 32 bytes. */
#define UVQ_H3_FIELD_OVERHEAD 32

/* ------------------------------------------------------------------------ */
/* Header sections (h3_fields.c)                                            */
/* ------------------------------------------------------------------------ */

/* A received header section: bytes in one buffer, fields as offsets. */
typedef struct h3_field {
  size_t noff, nlen, voff, vlen;
} h3_field;

typedef struct h3_hdrs {
  uint8_t *buf;
  size_t len, cap;
  h3_field *f;
  size_t n, fcap;
  uint64_t section_size;
  int too_large;
} h3_hdrs;

/* A header list copied for nghttp3: nv array and bytes in one block. */
typedef struct h3_nvlist {
  nghttp3_nv *nv;
  size_t n;
} h3_nvlist;

void uvq_h3_hdrs_free(const uvq_mem *mem, h3_hdrs *x);
void uvq_h3_hdrs_reset(h3_hdrs *x);
/* Appends a field; past |limit| (RFC 9114 §4.2.2 size) it only counts and
 * sets too_large. Returns 0 or UVQ_ERR_NOMEM. */
int uvq_h3_hdrs_add(const uvq_mem *mem, h3_hdrs *x, const uint8_t *name,
                    size_t nlen, const uint8_t *value, size_t vlen,
                    uint64_t limit);
/* The lent uvq_h3_header view of |x|; the caller frees it. NULL: NOMEM. */
uvq_h3_header *uvq_h3_hdrs_view(const uvq_mem *mem, const h3_hdrs *x);
/* Copies |npre| preset fields then |n| given ones into one allocation that
 * nghttp3 may read later. Returns 0, UVQ_ERR_INVALID_ARGUMENT or NOMEM. */
int uvq_h3_nvlist_build(const uvq_mem *mem, h3_nvlist *out,
                        const uvq_h3_header *pre, size_t npre,
                        const uvq_h3_header *hdrs, size_t n);
void uvq_h3_nvlist_free(const uvq_mem *mem, h3_nvlist *l);
/* A header over two NUL-terminated strings (not copied). */
uvq_h3_header uvq_h3_mkhdr(const char *name, const char *value);

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */
/* ------------------------------------------------------------------------ */

/* A provider chunk: a uvq_buf_get buffer of the endpoint's pool. The
 * stream's list holds one reference until nghttp3 reports the chunk
 * acknowledged (which we do as soon as the core has taken it); the core
 * holds one per uvq_stream_write_ref of a piece of it, released when the
 * peer acknowledges it or the stream or connection closes. Given back
 * with the last, possibly after the stream, the h3 connection and the
 * endpoint are gone (uvq_buf_put allows that). */
typedef struct h3_chunk {
  struct h3_chunk *next;
  size_t len;
  size_t refs;
  /* A uvq_buf_get buffer sized to the read: a short one takes less. */
  uint8_t data[];
} h3_chunk;

/* A BUFFER body (copied or borrowed), shared like a chunk: one reference
 * for the exchange, one per core reference. The last one frees the copy
 * or calls the borrowed body's free_cb. */
typedef struct h3_hold {
  size_t refs;
  const uvq_mem *mem;
  uint8_t *copy; /* copied body, or NULL: borrowed */
  const uint8_t *data;
  size_t len;
  void (*free_cb)(const uint8_t *data, void *user_data);
  void *free_user_data;
} h3_hold;

/* The frame gate of a server request stream (h3_gate.c): the frame
 * layer parsed ahead of nghttp3, so that a HEADERS frame reaches nghttp3
 * only whole, and one longer than max_field_section_size never. */
typedef enum h3_gate_state {
  H3_GATE_FRAME = 0, /* reading a frame's type and length */
  H3_GATE_PASS,      /* another frame's payload: straight to nghttp3 */
  H3_GATE_HOLD,      /* a HEADERS frame's payload: held until whole */
  H3_GATE_DROP       /* the stream is refused: nothing more is read */
} h3_gate_state;

typedef struct h3_gate {
  h3_gate_state state;
  uint8_t hdr[16]; /* the frame header read so far (two varints) */
  size_t hdrlen;
  uint64_t left; /* PASS, HOLD: payload bytes still to come */
  uint8_t *hold; /* HOLD: the frame (header and payload) so far */
  size_t holdlen, holdcap;
  unsigned nheaders; /* HEADERS frames seen: the first is the request's */
} h3_gate;

struct uvq_h3_stream {
  uvq_h3_conn *h;
  uvq_h3_stream *prev, *next; /* h->streams */
  uvq_h3_stream *qnext;       /* client: waiting for a stream id */
  int64_t id;
  int server;
  void *user_data;
  uvq_h3_request_callbacks cb;

  /* Client: the request while it waits in the queue; when it went out
   * as 0-RTT, until the handshake settles (to resend it if the server
   * refused the early data). */
  h3_nvlist req;
  int queued;
  int provider_read; /* a provider body returned bytes or EOF */
  int early_lost;    /* sent as refused 0-RTT and cannot be resent */

  /* Outgoing body and trailers. */
  uvq_h3_body body;   /* a BUFFER body's data is body_hold's */
  h3_hold *body_hold; /* BUFFER bodies with len > 0 */
  size_t body_off;
  /* Bytes written to the stream that are not body: header sections, frame
   * headers (uvq_h3_stream_get_acked). */
  uint64_t framing;
  h3_chunk *chunk_head, *chunk_tail;
  size_t chunk_acked; /* bytes of chunk_head already acknowledged */
  h3_nvlist trailers;
  int read_blocked;
  int room_blocked; /* provider not read: the core stream had no room */
  int provider_failed;
  int reset_pending; /* reset + shutdown write once out of nghttp3 */
  int stop_received; /* the peer sent STOP_SENDING (on_stop_sending) */

  /* Incoming. */
  h3_hdrs rx;
  uint64_t max_section;
  int head;         /* server: a HEAD request */
  int request_seen; /* server: on_request ran */
  int responded;
  int recv_done;         /* end_stream */
  int got_response;      /* client: final response headers */
  int read_stopped;      /* server: uvq_h3_stop_request_body */
  int read_stop_pending; /* ... and nghttp3 not told yet */
  int begun;             /* server: uvq_h3_server_begin_request ran */

  /* Server request streams: the frame gate (h3_gate.c) and the header
   * timeout (h3_server.c). */
  h3_gate gate;
  uvq_tstamp hdr_deadline;      /* header_timeout: the section is due */
  uvq_h3_stream *tprev, *tnext; /* h->thead: waiting for their section */
  int hdr_waiting;              /* ... linked there */

  /* Outcome. */
  int cancelled;
  int rejected;
  int malformed;
  int local_reset;
  uint64_t local_reset_code;
  int peer_reset;
  uint64_t peer_reset_code;
  int finished;
};

struct uvq_h3_server {
  uvq_h3_server_config cfg;
  const uvq_mem *mem;        /* the server object's; connections may differ */
  uvq_h3_server_stats stats; /* of the connections that closed */
  /* Connections whose on_closed has not fired (uvq_h3_server_shutdown). */
  struct uvq_h3_conn *conns;
  int shutting_down;
};

struct uvq_h3_conn {
  /* Per-connection state. Server: the h3 config's, else the endpoint's.
   * Client: the client config's, else libc (it exists before its
   * connection). */
  const uvq_mem *mem;
  /* nghttp3's allocator: the config's, else the endpoint's. */
  const uvq_mem *nmem_src;
  nghttp3_mem nmem;
  nghttp3_conn *h3; /* client: created when the connection first reports */
  uvq_conn *conn;
  int server;
  uvq_h3_server *srv;
  /* Server: on srv->conns. */
  struct uvq_h3_conn *sprev, *snext;
  uvq_h3_client_config ccfg;
  uint64_t max_section;

  uvq_h3_stream *streams;
  uvq_h3_stream *qhead, *qtail;
  int depth;          /* > 0 while inside nghttp3 */
  int ready;          /* critical streams bound */
  int early;          /* client: streams opened as 0-RTT, not settled */
  int early_rejected; /* ... and the core discarded them */
  int64_t ctrl_id, qenc_id, qdec_id;
  int shutdown_pending;
  int shutting_down;
  int goaway_received;
  int64_t goaway_rx_id;
  int64_t max_bidi_seen;
  int close_sent;
  int closed;
  uint64_t nrequests;
  uint64_t max_client_bidi;
  int timer_armed; /* server: request_timeout pending on the app timer */
  uvq_tstamp req_deadline;      /* ... due then */
  uvq_h3_stream *thead, *ttail; /* server: header_timeout, oldest first */
  uvq_tstamp timer_at;          /* the app timer's deadline (MAX: none) */
  uvq_h3_conn_stats stats;
};

/* ------------------------------------------------------------------------ */
/* Both sides (h3_conn.c)                                                   */
/* ------------------------------------------------------------------------ */

/* The uvq_app_callbacks of every h3 connection, server or client. */
extern const uvq_app_callbacks uvq_h3_app_callbacks;

/* Creates |h|'s nghttp3 connection with |nmem_src| (NULL: libc). Returns 0
 * or UVQ_ERR_NOMEM. */
int uvq_h3_conn_init(uvq_h3_conn *h, int server, uint64_t max_section,
                     const uvq_mem *nmem_src);
/* Deletes the nghttp3 connection, if any. */
void uvq_h3_conn_free_nghttp3(uvq_h3_conn *h);
/* Hands stream bytes to nghttp3 (nghttp3_conn_read_stream); a malformed
 * message resets the stream, another error closes the connection. */
void uvq_h3_conn_feed(uvq_h3_conn *h, int64_t sid, const uint8_t *data,
                      size_t len, int fin);
/* Closes the QUIC connection with |code| once. */
void uvq_h3_conn_fail(uvq_h3_conn *h, uint64_t code, const char *why);
/* Runs what had to wait until we were outside nghttp3, then writes. */
void uvq_h3_after(uvq_h3_conn *h);
/* Client, outside nghttp3: the server refused our 0-RTT and the early
 * streams are gone. Deletes the nghttp3 connection (the next h3_enter
 * makes a new one), unbinds the critical streams and puts the requests
 * sent early back at the head of the queue, in order; one whose provider
 * body was already read, or that was cancelled or reset, completes. */
void uvq_h3_client_redo_early(uvq_h3_conn *h);
/* Sends GOAWAY and refuses new requests (outside nghttp3 only). */
void uvq_h3_do_shutdown(uvq_h3_conn *h);

/* A new exchange, linked into h->streams. NULL: no memory. */
uvq_h3_stream *uvq_h3_stream_new(uvq_h3_conn *h, int64_t id);
/* Ends an exchange: fires its last callback and frees it. Idempotent. */
void uvq_h3_stream_finish(uvq_h3_stream *st, int error, uint64_t app_error);
/* Resets both directions of a request stream with |code|. */
void uvq_h3_stream_abort(uvq_h3_stream *st, uint64_t code);
/* Takes |body| and |trailers| into |st| (a BUFFER body with copy set is
 * copied). |no_body| (HEAD) releases the body unsent. Returns 0,
 * UVQ_ERR_INVALID_ARGUMENT or UVQ_ERR_NOMEM; on error |st| holds nothing. */
int uvq_h3_stream_take_body(uvq_h3_stream *st, const uvq_h3_body *body,
                            const uvq_h3_header *trailers, size_t ntrailers,
                            int no_body);
/* Forgets what uvq_h3_stream_take_body took, without calling a borrowed
 * body's free_cb (the submission failed: the body stays the caller's). */
void uvq_h3_stream_drop_body(uvq_h3_stream *st);
/* The data reader to submit |st|'s message with, or NULL when nothing
 * follows its header section. */
const nghttp3_data_reader *uvq_h3_stream_reader(const uvq_h3_stream *st);

/* ------------------------------------------------------------------------ */
/* Server (h3_server.c)                                                     */
/* ------------------------------------------------------------------------ */

/* The client opened request stream |sid| (its first frame arrived, in
 * order or not): creates its exchange and starts its header timeout.
 * Returns 0 or UVQ_ERR_NOMEM. */
int uvq_h3_server_open_request(uvq_h3_conn *h, int64_t sid);
/* A request stream's first header section began; creates its exchange (if
 * open_request did not) or rejects it. Returns 0 or an NGHTTP3_ERR_*. */
int uvq_h3_server_begin_request(uvq_h3_conn *h, int64_t sid);
/* The request header section is complete: validate, on_request. Returns 0
 * or UVQ_ERR_NOMEM. */
int uvq_h3_server_end_headers(uvq_h3_conn *h, uvq_h3_stream *st);
/* The connection closed: its counters go into the server's. */
void uvq_h3_server_conn_closed(uvq_h3_conn *h);
/* The connection's application timer fired (request_timeout,
 * header_timeout). */
void uvq_h3_server_on_timer(uvq_h3_conn *h);
/* |st| no longer waits for its header section (it arrived, or the stream
 * is refused or gone): off the header-timeout list. Idempotent. */
void uvq_h3_server_hdr_done(uvq_h3_conn *h, uvq_h3_stream *st);
/* The request's header section is over max_field_section_size on the wire
 * (its HEADERS frame's length) and nghttp3 has seen only the frame header:
 * answers 431 at once, without reading the section (RFC 9114 §4.1.2). */
void uvq_h3_server_refuse_section(uvq_h3_conn *h, uvq_h3_stream *st);

/* ------------------------------------------------------------------------ */
/* Server request streams: the frame gate (h3_gate.c)                       */
/* ------------------------------------------------------------------------ */

/* Feeds |len| bytes of a server request stream to nghttp3 through |st|'s
 * gate: HEADERS frames whole or not at all (see h3.md, "Header sections
 * as they arrive"). */
void uvq_h3_gate_recv(uvq_h3_conn *h, uvq_h3_stream *st, const uint8_t *data,
                      size_t len, int fin);
/* Frees what the gate holds and reads nothing more of the stream. */
void uvq_h3_gate_drop(uvq_h3_conn *h, uvq_h3_stream *st);

/* ------------------------------------------------------------------------ */
/* Client (h3_client.c)                                                     */
/* ------------------------------------------------------------------------ */

/* Opens streams for queued requests while the peer's limit allows. */
void uvq_h3_client_open_queued(uvq_h3_conn *h);
/* Unlinks a queued request from h->qhead. */
void uvq_h3_client_dequeue(uvq_h3_conn *h, uvq_h3_stream *st);
/* The response header section is complete. Returns 0 or UVQ_ERR_NOMEM. */
int uvq_h3_client_end_headers(uvq_h3_conn *h, uvq_h3_stream *st);
/* The server sent GOAWAY(|id|). */
void uvq_h3_client_on_goaway(uvq_h3_conn *h, int64_t id);

#endif
