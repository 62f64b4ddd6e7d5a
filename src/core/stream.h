/*
 * Streams (stream.c): the stream table, send buffers as chunks of the
 * endpoint's pool, the ready list, and what conn.c and conn_io.c call.
 */
#ifndef UVQ_CORE_STREAM_H
#define UVQ_CORE_STREAM_H

#include <ngtcp2/ngtcp2.h>

#include "core/core.h"

/* A chunk of stream send data, owned by the stream until acknowledged.
 * Every chunk is a buffer of the endpoint's pool (class |cls|), given back
 * when freed. A copied chunk holds its bytes in |data| (base == data, cap
 * the room its class leaves); a reference chunk (uvq_stream_write_ref)
 * points at the caller's memory, has cap == len (nothing is appended to
 * it) and calls free_cb once, when freed. */
typedef struct uvq_chunk {
  struct uvq_chunk *next;
  const uint8_t *base;
  size_t len;
  size_t cap;
  void (*free_cb)(void *ptr, void *ud); /* reference chunks only */
  void *free_ud;
  int cls;
  uint8_t data[];
} uvq_chunk;

struct uvq_stream {
  int64_t id;
  void *user_data;
  uvq_conn *conn;

  /* Send buffer: chunks from the first unacknowledged byte on. */
  uvq_chunk *head, *tail;
  uint64_t head_offset;       /* stream offset of head->data[0] */
  uint64_t acked;             /* every byte below is acknowledged */
  uint64_t sent;              /* every byte below was handed to ngtcp2 */
  uint64_t written;           /* bytes the application wrote */
  uvq_chunk *send_chunk;      /* chunk holding offset |sent| (NULL: none) */
  uint64_t send_chunk_offset; /* stream offset of send_chunk->data[0] */

  unsigned fin_requested : 1; /* app asked for FIN after |written| */
  unsigned fin_sent : 1;
  unsigned shut_wr : 1;       /* reset by us, or peer sent STOP_SENDING */
  unsigned stop_reading : 1;  /* we sent STOP_SENDING: discard input */
  unsigned want_writable : 1; /* a short write happened */
  unsigned in_ready : 1;      /* on conn->ready list */
  unsigned data_blocked : 1;  /* flow control blocked in ngtcp2 */
  unsigned writable_pending : 1;
  unsigned stop_pending : 1; /* peer STOP_SENDING to report */
  unsigned early : 1;        /* some data arrived in 0-RTT packets */
  unsigned fin_alone : 1;    /* our FIN went in a STREAM frame with no data */
  unsigned fin_acked : 1;    /* the peer acknowledged a frame with our FIN */

  uvq_stream *ready_prev, *ready_next;
  uvq_stream *pending_next; /* conn->writable_pending list */
  uvq_stream *stop_next;    /* conn->stop_pending list */
  uint64_t loss_seen; /* ngtcp2's loss count at the last ack (metrics.c) */
  /* Stream credit withheld while the connection's reads pause (budget.c). */
  uint64_t credit_owed;
};

/* Stream table: open addressing by stream id. */
typedef struct uvq_stream_table {
  uvq_stream **slots;
  size_t cap; /* power of two, or 0 */
  size_t len;
} uvq_stream_table;

int uvq_stream_table_init(uvq_stream_table *t);
void uvq_stream_table_free(uvq_conn *conn);
uvq_stream *uvq_stream_find(uvq_conn *conn, int64_t id);
int uvq_stream_create(uvq_conn *conn, int64_t id, void *user_data,
                      uvq_stream **pstrm);
void uvq_stream_destroy(uvq_conn *conn, uvq_stream *s);
void uvq_stream_ready(uvq_conn *conn, uvq_stream *s);
void uvq_stream_unready(uvq_conn *conn, uvq_stream *s);
/* Fills |iov| with unsent data of |s| from offset s->sent, up to the chunk
 * that reaches |maxbytes| (what one packet can carry); *ptotal gets the
 * bytes offered (less than what is unsent when |iovcnt| or |maxbytes| ends
 * the walk). */
size_t uvq_stream_unsent_iov(uvq_stream *s, ngtcp2_vec *iov, size_t iovcnt,
                             size_t maxbytes, uint64_t *ptotal);
/* ngtcp2 took |n| bytes (and FIN if |flags| has it and nothing is left). */
void uvq_stream_consumed(uvq_conn *conn, uvq_stream *s, size_t n,
                         uint32_t flags);
void uvq_stream_ack(uvq_conn *conn, uvq_stream *s, uint64_t offset,
                    uint64_t len);
size_t uvq_stream_buffered(const uvq_stream *s);
/* The peer raised |s|'s flow-control credit: a writer waiting for room
 * hears of it. */
void uvq_stream_credit(uvq_conn *conn, uvq_stream *s);
/* |conn|'s writers have had the endpoint budget set aside for them: what
 * they left goes back to the endpoint (and to the next waiters). */
void uvq_stream_grant_end(uvq_conn *conn);

#endif
