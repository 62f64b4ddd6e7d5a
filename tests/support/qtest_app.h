/*
 * The protocol tests' application. Each side of a connection is a qt_app:
 * once established it can open a stream and send |to_send| pattern bytes
 * (qt_pattern_*, seed |seed|) on it, answer a peer's stream with |to_send|
 * bytes when its FIN arrives, and it counts and hashes (SHA-256) all it
 * receives. A test hands &qt_app_callbacks, or a table of its own built
 * from the qt_app_on_* callbacks, with the qt_app as user_data; a server
 * node takes connections with qt_app_accept (one side) or
 * qt_app_pool_accept (a side per connection), given to qt_add_server.
 */
#ifndef UVQ_QTEST_APP_H
#define UVQ_QTEST_APP_H

#include <gnutls/crypto.h>
#include <stddef.h>
#include <stdint.h>

#include "qtest.h"
#include "uvquic/uvquic.h"

typedef struct qt_app {
  uvq_conn *conn; /* NULL once on_closed has fired */
  /* Optional: the world whose clock on_closed reads into |closed_at| (the
   * accept hooks set it for server sides). */
  const qt_world *w;
  int established;
  int closed;             /* on_closed fired (asserted to fire once) */
  uvq_close_info ci;      /* what on_closed had; ci.reason is NULL */
  uint8_t ci_reason[128]; /* the first bytes of the reason */
  uvq_tstamp closed_at;
  int accept_validated; /* server: info->address_validated at accept */

  /* Sending: |to_send| bytes of pattern |seed| on stream |sid|. */
  int64_t sid;
  uint64_t to_send, sent;
  uint32_t seed;
  int send_on_established; /* open a bidirectional stream and send */
  int reply; /* send on the last stream opened by the peer at its FIN */

  /* Receiving, over all streams: |digest| is the SHA-256 of what arrived
   * up to the last FIN (the next byte starts a new hash). */
  gnutls_hash_hd_t hash;
  uint8_t digest[32];
  uint64_t received;
  int fin;

  uint8_t token[256]; /* the last NEW_TOKEN token */
  size_t tokenlen;
} qt_app;

/* Where qt_app_pool_accept puts connections: the n-th gets sides[n]. */
typedef struct qt_app_pool {
  qt_app *sides;
  size_t nsides;
  size_t accepted;
  int refuse; /* nonzero: refuse every connection */
  size_t refused;
  /* Nonzero: every side answers with |reply_len| bytes of |reply_seed|. */
  uint64_t reply_len;
  uint32_t reply_seed;
} qt_app_pool;

/* Writes |a|'s stream until |to_send| bytes are taken (FIN with the last)
 * or the stream is full (on_stream_writable goes on); with |to_send| 0, a
 * lone FIN. A failed write fails the test. Returns 0. */
int qt_app_pump(uvq_conn *conn, qt_app *a);

/* The callbacks, for tables of a test's own (|ud| is the qt_app):
 * on_established notes it and the conn, and with |send_on_established|
 * opens a stream and pumps; on_stream_open keeps the stream in |sid|;
 * on_stream_data counts and hashes, and at a FIN finishes |digest| and,
 * with |reply|, pumps; on_stream_writable pumps; on_closed notes the close
 * (asserting it is the first) and drops a hash no FIN finished;
 * on_new_token keeps the token. */
int qt_app_on_established(uvq_conn *conn, void *ud);
int qt_app_on_stream_open(uvq_conn *conn, int64_t sid, void *ud);
int qt_app_on_stream_data(uvq_conn *conn, int64_t sid, const uint8_t *data,
                          size_t len, int fin, void *ud, void *sud);
int qt_app_on_stream_writable(uvq_conn *conn, int64_t sid, void *ud, void *sud);
void qt_app_on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud);
int qt_app_on_new_token(uvq_conn *conn, const uint8_t *token, size_t len,
                        void *ud);

/* All of the above. */
extern const uvq_app_callbacks qt_app_callbacks;

/* Accept hooks for qt_add_server, whose user_data is the qt_app (every
 * connection goes to that one side) or the qt_app_pool. They hand out
 * qt_app_callbacks; a test with a table of its own sets *pcb after. */
int qt_app_accept(uvq_endpoint *ep, uvq_conn *conn, const uvq_accept_info *info,
                  const uvq_app_callbacks **pcb, void **pud, void *ud);
int qt_app_pool_accept(uvq_endpoint *ep, uvq_conn *conn,
                       const uvq_accept_info *info,
                       const uvq_app_callbacks **pcb, void **pud, void *ud);

/* Frees a hash still open (a connection freed without on_closed). */
void qt_app_free(qt_app *a);

/* Asserts that |a| received exactly the first |len| bytes of pattern
 * |seed|, up to a FIN. */
void qt_app_assert_received(const qt_app *a, uint32_t seed, uint64_t len);

/* qt_run conditions: both of a qt_app *[2] established; a qt_app closed;
 * a qt_app got a FIN. */
int qt_app_both_established(void *pair);
int qt_app_is_closed(void *a);
int qt_app_got_fin(void *a);

#endif
