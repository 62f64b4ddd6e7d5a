/*
 * hs_floor: what one QUIC handshake costs ngtcp2 1.x + GnuTLS on this
 * machine, server side and client side apart, with nothing else in the way.
 *
 * N times over: a fresh client and a fresh server connection (ngtcp2_conn
 * and gnutls_session_t each; credentials and the priority cache are made
 * once per side and shared, as a server process shares them) do a
 * complete handshake, the client sends a small request on a bidirectional
 * stream, the server answers with 1 KiB and FIN, the client closes the
 * connection (CONNECTION_CLOSE) and frees its side, and the server reads
 * the close and frees its side. TLS as uvquic has it: TLS 1.3 only, the
 * same priority string (AES-128-GCM first, X25519 preferred), the bench's
 * ECDSA P-256 certificate, ALPN h3, a session ticket from the server
 * (0-RTT allowed in it), the client verifying the certificate against
 * 127.0.0.1 as uvquic-client --ca does.
 *
 * Both sides run in this one thread and hand datagrams over through two
 * in-memory queues. ngtcp2 gets its time from a fake clock (one way takes
 * HS_ONE_WAY), so the loop makes no system call but the CPU-time reads
 * that split the cost (and GnuTLS's random generator reseeding, rarely):
 * CLOCK_THREAD_CPUTIME_ID is read once at every hand over between the two
 * sides, the interval is charged to the side that ran, and the cost of the read
 * itself (calibrated at start) is taken off. No sockets, no kernel, no event
 * loop, no HTTP/3: the server figure is the floor under any server on this
 * stack.
 *
 *   hs_floor --cert FILE --key FILE [--handshakes N] [--warmup N]
 *            [--key-share-top] [--no-tickets] [--h3] [--hold N]
 *
 * --h3 makes the request and response HTTP/3 through nghttp3 on both sides
 * (control and QPACK streams, a GET, a 1 KiB body) instead of raw bytes on
 * a bidirectional stream.
 *
 * --hold N measures memory instead of time: N connections as above, but
 * the client does not close; once the server has nothing in flight the
 * client side is freed (it says nothing) and the server side stays, idle.
 * The figure is the process's VmRSS growth over the N connections,
 * divided by N: the floor under any server of this stack that keeps an
 * idle connection (ngtcp2 + GnuTLS, and nghttp3 with --h3), with
 * uvquic-server's transport parameters and QPACK settings. The client
 * sides come and go one at a time, so the heap they leave free is reused
 * by the next connection.
 *
 * --key-share-top makes the client send one key share (X25519) instead of
 * GnuTLS's default two (X25519 and P-256, GNUTLS_KEY_SHARE_TOP2).
 * Output, one line (bench/run.sh reads it):
 *   hs_floor: N handshakes; server S us, client C us, total T us per
 *   handshake (thread CPU); loop R handshakes/s; ...
 * or, with --hold:
 *   hs_floor: held N idle server connections (h3|stream); VmRSS A -> B kB:
 *   K KB/conn (KB = 1000 B)
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nghttp3/nghttp3.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

/* uvquic's priority string (src/core/tls.c). */
static const char hs_priority[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
    "+CHACHA20-POLY1305:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:"
    "+GROUP-SECP384R1:+GROUP-X448:+GROUP-SECP521R1:%DISABLE_TLS13_COMPAT_MODE";

#define HS_MAX_UDP 1452  /* uvquic's max_udp_payload_size */
#define HS_QCAP 64       /* datagrams in flight one way, per turn */
#define HS_REQUEST 33    /* about an h3 HEADERS frame for GET /1k.bin */
#define HS_RESPONSE 1024 /* the bench's 1k.bin */
#define HS_MAX_TURNS 200 /* a handshake that takes more is a bug */
#define HS_ONE_WAY (50 * NGTCP2_MICROSECONDS)
#define HS_CID_LEN 16
#define HS_CID_LIMIT 8 /* uvquic's active_connection_id_limit */

static uint8_t hs_request[HS_REQUEST];
static uint8_t hs_response[HS_RESPONSE];

typedef struct hs_dgram {
  size_t len;
  uint8_t data[HS_MAX_UDP];
} hs_dgram;

typedef struct hs_queue {
  size_t n;
  hs_dgram d[HS_QCAP];
} hs_queue;

enum { HS_SERVER, HS_CLIENT, HS_SIDES };

struct hs_bench;

/* One side of one connection. |ref| is what ngtcp2_crypto_gnutls finds
 * through the session pointer. */
typedef struct hs_peer {
  ngtcp2_crypto_conn_ref ref;
  struct hs_bench *bench;
  ngtcp2_conn *conn;
  gnutls_session_t tls;
  nghttp3_conn *h3; /* --h3, once the handshake completed */
  int handshake_done;
  int closed; /* conn and session freed */
  /* What this side sends on its stream: the request or the response. */
  int64_t tx_sid;
  const uint8_t *tx;
  size_t txlen, txoff;
  int tx_fin_sent;
  /* What it received. */
  size_t rxlen;
  int rx_fin;
} hs_peer;

typedef struct hs_bench {
  gnutls_certificate_credentials_t srv_cred, cli_cred;
  gnutls_priority_t srv_prio, cli_prio;
  gnutls_datum_t ticket_key;
  gnutls_anti_replay_t anti_replay;
  uint8_t static_secret[32];
  gnutls_hmac_hd_t reset_hmac; /* keyed from static_secret, as uvquic */
  unsigned int cli_flags;
  int tickets;
  struct sockaddr_in caddr, saddr;
  ngtcp2_path cpath, spath;
  ngtcp2_tstamp now; /* the fake clock */
  hs_queue c2s, s2c;
  hs_peer cli;
  hs_peer *srv; /* one per connection: --hold keeps them */
  int h3;
  long hold; /* --hold: connections kept so far go here */
  hs_peer **held;
  long nheld;
  /* Accounting: CPU ns and turns per side, for the handshakes timed. */
  uint64_t cpu_ns[HS_SIDES];
  uint64_t turns[HS_SIDES];
  uint64_t last_cpu;
  uint64_t datagrams[HS_SIDES];
} hs_bench;

static void die(const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  fputs("hs_floor: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;

  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* charge ends the current turn: the CPU time since the last hand-over
 * goes to |side|. */
static void charge(hs_bench *b, int side) {
  uint64_t t = clock_ns(CLOCK_THREAD_CPUTIME_ID);

  b->cpu_ns[side] += t - b->last_cpu;
  b->turns[side]++;
  b->last_cpu = t;
}

/* ------------------------------------------------------------------------
 * ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  return ((hs_peer *)ref->user_data)->conn;
}

static void cb_rand(uint8_t *dest, size_t destlen,
                    const ngtcp2_rand_ctx *rand_ctx) {
  (void)rand_ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

/* The client's CIDs: random, random reset tokens (a client's are never
 * used). */
static int cb_client_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                             size_t cidlen, void *user_data) {
  (void)conn;
  (void)user_data;
  gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

/* reset_token derives the stateless-reset token of a server CID from the
 * static secret with the work per token uvquic has (src/core/reset.c):
 * HMAC-SHA256 on a handle keyed once, first 16 bytes. */
static int reset_token(hs_bench *b, const ngtcp2_cid *cid, uint8_t *token) {
  uint8_t full[32];

  if (gnutls_hmac(b->reset_hmac, cid->data, cid->datalen) != 0) {
    return -1;
  }
  gnutls_hmac_output(b->reset_hmac, full);
  memcpy(token, full, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

/* The server's CIDs: random, reset tokens derived from a static secret as
 * a server that can send stateless resets must. */
static int cb_server_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                             size_t cidlen, void *user_data) {
  hs_bench *b = ((hs_peer *)user_data)->bench;

  (void)conn;
  gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
  cid->datalen = cidlen;
  return reset_token(b, cid, token) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *user_data) {
  (void)conn;
  ((hs_peer *)user_data)->handshake_done = 1;
  return 0;
}

/* credit gives |n| bytes of flow-control credit back on |stream_id|. */
static int credit(ngtcp2_conn *conn, int64_t stream_id, size_t n) {
  if (ngtcp2_conn_extend_max_stream_offset(conn, stream_id, n) != 0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  ngtcp2_conn_extend_max_offset(conn, n);
  return 0;
}

/* ------------------------------------------------------------------------
 * HTTP/3 (--h3): nghttp3 on both sides, as an h3 server and client wire
 * it to ngtcp2. */

static nghttp3_ssize h3_read_response(nghttp3_conn *h3, int64_t stream_id,
                                      nghttp3_vec *vec, size_t veccnt,
                                      uint32_t *pflags, void *conn_user_data,
                                      void *stream_user_data) {
  (void)h3;
  (void)stream_id;
  (void)veccnt;
  (void)conn_user_data;
  (void)stream_user_data;
  vec[0].base = hs_response;
  vec[0].len = sizeof(hs_response);
  *pflags |= NGHTTP3_DATA_FLAG_EOF;
  return 1;
}

static int h3_recv_data(nghttp3_conn *h3, int64_t stream_id,
                        const uint8_t *data, size_t datalen,
                        void *conn_user_data, void *stream_user_data) {
  hs_peer *p = conn_user_data;

  (void)h3;
  (void)data;
  (void)stream_user_data;
  p->rxlen += datalen;
  return credit(p->conn, stream_id, datalen) == 0
             ? 0
             : NGHTTP3_ERR_CALLBACK_FAILURE;
}

static int h3_deferred_consume(nghttp3_conn *h3, int64_t stream_id,
                               size_t consumed, void *conn_user_data,
                               void *stream_user_data) {
  hs_peer *p = conn_user_data;

  (void)h3;
  (void)stream_user_data;
  return credit(p->conn, stream_id, consumed) == 0
             ? 0
             : NGHTTP3_ERR_CALLBACK_FAILURE;
}

/* The end of a request (server: answer it) or of a response (client). */
static int h3_end_stream(nghttp3_conn *h3, int64_t stream_id,
                         void *conn_user_data, void *stream_user_data) {
  static const nghttp3_data_reader dr = {h3_read_response};
  static const nghttp3_nv nva[] = {
      {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP3_NV_FLAG_NONE},
      {(uint8_t *)"content-length", (uint8_t *)"1024", 14, 4,
       NGHTTP3_NV_FLAG_NONE}};
  hs_peer *p = conn_user_data;

  (void)stream_user_data;
  if (!ngtcp2_conn_is_server(p->conn)) {
    p->rx_fin = 1;
    return 0;
  }
  return nghttp3_conn_submit_response(h3, stream_id, nva, 2, &dr) == 0
             ? 0
             : NGHTTP3_ERR_CALLBACK_FAILURE;
}

/* h3_start binds a peer's nghttp3 connection to its three unidirectional
 * streams; the client then sends its GET. */
static void h3_start(hs_peer *p) {
  static const nghttp3_callbacks cb = {.recv_data = h3_recv_data,
                                       .deferred_consume = h3_deferred_consume,
                                       .end_stream = h3_end_stream};
  static const nghttp3_nv req[] = {
      {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP3_NV_FLAG_NONE},
      {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP3_NV_FLAG_NONE},
      {(uint8_t *)":authority", (uint8_t *)"127.0.0.1", 10, 9,
       NGHTTP3_NV_FLAG_NONE},
      {(uint8_t *)":path", (uint8_t *)"/1k.bin", 5, 7, NGHTTP3_NV_FLAG_NONE}};
  nghttp3_settings settings;
  int64_t ctrl, enc, dec;
  int server = ngtcp2_conn_is_server(p->conn), rv;

  nghttp3_settings_default(&settings);
  /* As uvquic's h3 layer: no QPACK dynamic table. */
  settings.qpack_max_dtable_capacity = 0;
  settings.qpack_blocked_streams = 0;
  rv = server ? nghttp3_conn_server_new(&p->h3, &cb, &settings, NULL, p)
              : nghttp3_conn_client_new(&p->h3, &cb, &settings, NULL, p);
  if (rv != 0 || ngtcp2_conn_open_uni_stream(p->conn, &ctrl, NULL) != 0 ||
      ngtcp2_conn_open_uni_stream(p->conn, &enc, NULL) != 0 ||
      ngtcp2_conn_open_uni_stream(p->conn, &dec, NULL) != 0 ||
      nghttp3_conn_bind_control_stream(p->h3, ctrl) != 0 ||
      nghttp3_conn_bind_qpack_streams(p->h3, enc, dec) != 0) {
    die("cannot set up HTTP/3");
  }
  if (!server) {
    if (ngtcp2_conn_open_bidi_stream(p->conn, &p->tx_sid, NULL) != 0 ||
        nghttp3_conn_submit_request(p->h3, p->tx_sid, req, 4, NULL, NULL) !=
            0) {
      die("cannot send the request");
    }
  }
}

static int cb_acked_stream_data_offset(ngtcp2_conn *conn, int64_t stream_id,
                                       uint64_t offset, uint64_t datalen,
                                       void *user_data,
                                       void *stream_user_data) {
  hs_peer *p = user_data;

  (void)conn;
  (void)offset;
  (void)stream_user_data;
  if (p->h3 && nghttp3_conn_add_ack_offset(p->h3, stream_id, datalen) != 0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                           uint64_t app_error_code, void *user_data,
                           void *stream_user_data) {
  hs_peer *p = user_data;
  int rv;

  (void)conn;
  (void)stream_user_data;
  if (p->h3 == NULL) {
    return 0;
  }
  if (!(flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)) {
    app_error_code = NGHTTP3_H3_NO_ERROR;
  }
  rv = nghttp3_conn_close_stream(p->h3, stream_id, app_error_code);
  return rv == 0 || rv == NGHTTP3_ERR_STREAM_NOT_FOUND
             ? 0
             : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t stream_id,
                                     uint64_t max_data, void *user_data,
                                     void *stream_user_data) {
  hs_peer *p = user_data;

  (void)conn;
  (void)max_data;
  (void)stream_user_data;
  if (p->h3 && nghttp3_conn_unblock_stream(p->h3, stream_id) != 0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags,
                               int64_t stream_id, uint64_t offset,
                               const uint8_t *data, size_t datalen,
                               void *user_data, void *stream_user_data) {
  hs_peer *p = user_data;
  nghttp3_ssize nread;
  int rv;

  (void)offset;
  (void)stream_user_data;
  if (p->bench->h3 && p->h3 == NULL) {
    h3_start(p); /* the server: the client's first bytes come first */
  }
  if (p->h3) {
    /* nghttp3 says how much of it was framing; the body it hands to
     * h3_recv_data, which credits it there. */
    nread = nghttp3_conn_read_stream(p->h3, stream_id, data, datalen,
                                     flags & NGTCP2_STREAM_DATA_FLAG_FIN);
    if (nread < 0) {
      return NGTCP2_ERR_CALLBACK_FAILURE;
    }
    return credit(conn, stream_id, (size_t)nread);
  }
  p->rxlen += datalen;
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
    p->rx_fin = 1;
  }
  /* Consumed at once, as an application that reads everything does. */
  rv = credit(conn, stream_id, datalen);
  if (rv != 0) {
    return rv;
  }
  /* The server answers a whole request. */
  if (ngtcp2_conn_is_server(conn) && p->rx_fin && p->tx_sid < 0) {
    p->tx_sid = stream_id;
    p->tx = hs_response;
    p->txlen = sizeof(hs_response);
  }
  return 0;
}

static void set_callbacks(ngtcp2_callbacks *cb, int is_server) {
  memset(cb, 0, sizeof(*cb));
  if (is_server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
    cb->get_new_connection_id = cb_server_new_cid;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb->get_new_connection_id = cb_client_new_cid;
  }
  cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = ngtcp2_crypto_decrypt_cb;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb->rand = cb_rand;
  cb->handshake_completed = cb_handshake_completed;
  cb->recv_stream_data = cb_recv_stream_data;
  cb->acked_stream_data_offset = cb_acked_stream_data_offset;
  cb->stream_close = cb_stream_close;
  cb->extend_max_stream_data = cb_extend_max_stream_data;
}

static void settings_init(const hs_bench *b, ngtcp2_settings *s) {
  ngtcp2_settings_default(s);
  s->initial_ts = b->now;
  s->initial_rtt = NGTCP2_MILLISECONDS; /* as bench/run.sh's peers */
  s->max_tx_udp_payload_size = HS_MAX_UDP;
}

static void params_init(ngtcp2_transport_params *p) {
  ngtcp2_transport_params_default(p);
  p->initial_max_data = 16u << 20;
  p->initial_max_stream_data_bidi_local = 1u << 20;
  p->initial_max_stream_data_bidi_remote = 1u << 20;
  p->initial_max_stream_data_uni = 1u << 20;
  p->initial_max_streams_bidi = 100;
  p->initial_max_streams_uni = 100;
  p->max_idle_timeout = 30 * NGTCP2_SECONDS;
  p->active_connection_id_limit = HS_CID_LIMIT;
}

/* ------------------------------------------------------------------------
 * TLS */

static void tls_session_new(hs_bench *b, hs_peer *p, int is_server) {
  static const gnutls_datum_t alpn = {(unsigned char *)"h3", 2};
  unsigned int flags = GNUTLS_NO_END_OF_EARLY_DATA;
  int rv;

  if (is_server) {
    flags |= GNUTLS_SERVER;
    if (b->tickets) {
      flags |= GNUTLS_ENABLE_EARLY_DATA;
    }
  } else {
    flags |= GNUTLS_CLIENT | b->cli_flags;
  }
  if (gnutls_init(&p->tls, flags) != 0) {
    die("gnutls_init failed");
  }
  rv = is_server ? ngtcp2_crypto_gnutls_configure_server_session(p->tls)
                 : ngtcp2_crypto_gnutls_configure_client_session(p->tls);
  if (rv != 0) {
    die("ngtcp2_crypto_gnutls_configure_*_session failed");
  }
  if (gnutls_priority_set(p->tls, is_server ? b->srv_prio : b->cli_prio) != 0 ||
      gnutls_credentials_set(p->tls, GNUTLS_CRD_CERTIFICATE,
                             is_server ? b->srv_cred : b->cli_cred) != 0 ||
      gnutls_alpn_set_protocols(
          p->tls, &alpn, 1,
          GNUTLS_ALPN_MANDATORY |
              (is_server ? GNUTLS_ALPN_SERVER_PRECEDENCE : 0u)) != 0) {
    die("cannot configure the GnuTLS session");
  }
  if (is_server && b->tickets) {
    if (gnutls_session_ticket_enable_server(p->tls, &b->ticket_key) != 0 ||
        gnutls_record_set_max_early_data_size(p->tls, 0xffffffffu) != 0) {
      die("cannot enable session tickets");
    }
    gnutls_anti_replay_enable(p->tls, b->anti_replay);
  }
  if (!is_server) {
    /* uvquic-client --ca with an IP literal: no SNI, the IP SAN checked. */
    gnutls_session_set_verify_cert(p->tls, "127.0.0.1", 0);
  }
  p->ref.get_conn = get_conn;
  p->ref.user_data = p;
  gnutls_session_set_ptr(p->tls, &p->ref);
  ngtcp2_conn_set_tls_native_handle(p->conn, p->tls);
}

static void peer_free(hs_peer *p) {
  nghttp3_conn_del(p->h3);
  p->h3 = NULL;
  ngtcp2_conn_del(p->conn);
  gnutls_deinit(p->tls);
  p->conn = NULL;
  p->tls = NULL;
  p->closed = 1;
}

/* ------------------------------------------------------------------------
 * The wire */

static hs_dgram *queue_slot(hs_queue *q) {
  if (q->n == HS_QCAP) {
    die("more than %d datagrams in one turn", HS_QCAP);
  }
  return &q->d[q->n];
}

/* peer_write_h3 is peer_write for a peer with nghttp3: the streams and
 * bytes nghttp3 has ready go first. */
static void peer_write_h3(hs_bench *b, hs_peer *p, hs_queue *q) {
  ngtcp2_ssize nwrite, ndatalen;
  nghttp3_ssize nvec;
  nghttp3_vec vec[16];
  hs_dgram *d;
  int64_t sid;
  int fin;
  uint32_t flags;

  for (;;) {
    d = queue_slot(q);
    sid = -1;
    fin = 0;
    nvec = nghttp3_conn_writev_stream(p->h3, &sid, &fin, vec, 16);
    if (nvec < 0) {
      die("nghttp3_conn_writev_stream: %s", nghttp3_strerror((int)nvec));
    }
    flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    if (fin) {
      flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    nwrite = ngtcp2_conn_writev_stream(
        p->conn, NULL, NULL, d->data, sizeof(d->data), &ndatalen, flags, sid,
        (const ngtcp2_vec *)vec, (size_t)nvec, b->now);
    if (nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
      nghttp3_conn_block_stream(p->h3, sid);
      continue;
    }
    if (nwrite < 0 && nwrite != NGTCP2_ERR_WRITE_MORE) {
      die("writev_stream: %s", ngtcp2_strerror((int)nwrite));
    }
    if (ndatalen >= 0 &&
        nghttp3_conn_add_write_offset(p->h3, sid, (uint64_t)ndatalen) != 0) {
      die("nghttp3_conn_add_write_offset failed");
    }
    if (nwrite == NGTCP2_ERR_WRITE_MORE) {
      continue;
    }
    if (nwrite == 0) {
      break;
    }
    d->len = (size_t)nwrite;
    q->n++;
  }
  ngtcp2_conn_update_pkt_tx_time(p->conn, b->now);
}

/* peer_write writes everything |p| has to send, its stream data first,
 * into |q|. */
static void peer_write(hs_bench *b, hs_peer *p, hs_queue *q) {
  ngtcp2_ssize nwrite, ndatalen;
  ngtcp2_vec v;
  hs_dgram *d;
  int64_t sid;
  uint32_t flags;
  int blocked = 0;

  if (b->h3 && p->handshake_done && p->h3 == NULL) {
    h3_start(p);
  }
  if (p->h3) {
    peer_write_h3(b, p, q);
    return;
  }
  for (;;) {
    d = queue_slot(q);
    sid = -1;
    flags = NGTCP2_WRITE_STREAM_FLAG_NONE;
    v.base = NULL;
    v.len = 0;
    if (p->tx_sid >= 0 && !p->tx_fin_sent && !blocked) {
      sid = p->tx_sid;
      flags = NGTCP2_WRITE_STREAM_FLAG_FIN;
      v.base = (uint8_t *)(uintptr_t)p->tx + p->txoff;
      v.len = p->txlen - p->txoff;
    }
    nwrite = ngtcp2_conn_writev_stream(p->conn, NULL, NULL, d->data,
                                       sizeof(d->data), &ndatalen, flags, sid,
                                       &v, sid < 0 ? 0 : 1, b->now);
    if (nwrite < 0) {
      if (nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
        blocked = 1;
        continue;
      }
      die("writev_stream: %s", ngtcp2_strerror((int)nwrite));
    }
    if (sid >= 0 && ndatalen >= 0) {
      p->txoff += (size_t)ndatalen;
      if (p->txoff == p->txlen) {
        p->tx_fin_sent = 1;
      }
    }
    if (nwrite == 0) {
      break;
    }
    d->len = (size_t)nwrite;
    q->n++;
  }
  ngtcp2_conn_update_pkt_tx_time(p->conn, b->now);
}

static void peer_expiry(hs_bench *b, hs_peer *p) {
  int rv;

  if (ngtcp2_conn_get_expiry(p->conn) <= b->now) {
    rv = ngtcp2_conn_handle_expiry(p->conn, b->now);
    if (rv != 0) {
      die("handle_expiry: %s", ngtcp2_strerror(rv));
    }
  }
}

/* server_accept makes the server's connection for the client's first
 * datagram, as a listener does. */
static void server_accept(hs_bench *b, const hs_dgram *d) {
  ngtcp2_callbacks cb;
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_pkt_hd hd;
  ngtcp2_cid scid;
  hs_peer *p = b->srv;

  if (ngtcp2_accept(&hd, d->data, d->len) != 0) {
    die("ngtcp2_accept refused the client's Initial");
  }
  scid.datalen = HS_CID_LEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  set_callbacks(&cb, 1);
  settings_init(b, &settings);
  params_init(&params);
  params.original_dcid = hd.dcid;
  params.original_dcid_present = 1;
  if (reset_token(b, &scid, params.stateless_reset_token) != 0) {
    die("cannot make a stateless reset token");
  }
  params.stateless_reset_token_present = 1;
  if (ngtcp2_conn_server_new(&p->conn, &hd.scid, &scid, &b->spath, hd.version,
                             &cb, &settings, &params, NULL, p) != 0) {
    die("ngtcp2_conn_server_new failed");
  }
  tls_session_new(b, p, 1);
}

/* server_turn: the server reads what the client sent, then writes. */
static void server_turn(hs_bench *b) {
  hs_peer *p = b->srv;
  size_t i;
  int rv;

  for (i = 0; i < b->c2s.n && !p->closed; i++) {
    if (p->conn == NULL) {
      server_accept(b, &b->c2s.d[i]);
    }
    rv = ngtcp2_conn_read_pkt(p->conn, &b->spath, NULL, b->c2s.d[i].data,
                              b->c2s.d[i].len, b->now);
    if (rv == NGTCP2_ERR_DRAINING) {
      /* The client's CONNECTION_CLOSE: a server would keep the
       * connection for the draining period, sending nothing; freeing it
       * now costs the same. */
      peer_free(p);
    } else if (rv != 0) {
      die("server read_pkt: %s", ngtcp2_strerror(rv));
    }
  }
  b->datagrams[HS_CLIENT] += b->c2s.n;
  b->c2s.n = 0;
  if (p->conn == NULL) {
    return;
  }
  peer_expiry(b, p);
  peer_write(b, p, &b->s2c);
}

static void client_start(hs_bench *b) {
  ngtcp2_callbacks cb;
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  ngtcp2_cid dcid, scid;
  hs_peer *p = &b->cli;

  dcid.datalen = HS_CID_LEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  scid.datalen = HS_CID_LEN;
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  set_callbacks(&cb, 0);
  settings_init(b, &settings);
  params_init(&params);
  if (ngtcp2_conn_client_new(&p->conn, &dcid, &scid, &b->cpath,
                             NGTCP2_PROTO_VER_V1, &cb, &settings, &params, NULL,
                             p) != 0) {
    die("ngtcp2_conn_client_new failed");
  }
  tls_session_new(b, p, 0);
  peer_write(b, p, &b->c2s);
}

/* server_quiet: nothing of the server's is in flight. */
static int server_quiet(hs_bench *b) {
  ngtcp2_conn_info ci;

  ngtcp2_conn_get_conn_info(b->srv->conn, &ci);
  return ci.bytes_in_flight == 0;
}

/* client_turn: the client reads, sends its request once it can, and
 * closes once the whole response is in (with --hold, leaves once the
 * server is idle). */
static void client_turn(hs_bench *b) {
  ngtcp2_ccerr ccerr;
  ngtcp2_ssize nwrite;
  hs_peer *p = &b->cli;
  hs_dgram *d;
  size_t i;
  int rv;

  if (p->closed) {
    return;
  }
  for (i = 0; i < b->s2c.n; i++) {
    rv = ngtcp2_conn_read_pkt(p->conn, &b->cpath, NULL, b->s2c.d[i].data,
                              b->s2c.d[i].len, b->now);
    if (rv != 0) {
      die("client read_pkt: %s", ngtcp2_strerror(rv));
    }
  }
  b->datagrams[HS_SERVER] += b->s2c.n;
  b->s2c.n = 0;
  peer_expiry(b, p);
  if (!b->h3 && p->handshake_done && p->tx_sid < 0) {
    rv = ngtcp2_conn_open_bidi_stream(p->conn, &p->tx_sid, NULL);
    if (rv != 0) {
      die("open_bidi_stream: %s", ngtcp2_strerror(rv));
    }
    p->tx = hs_request;
    p->txlen = sizeof(hs_request);
  }
  peer_write(b, p, &b->c2s);
  if (p->rx_fin) {
    if (p->rxlen != HS_RESPONSE) {
      die("response of %zu bytes, not %d", p->rxlen, HS_RESPONSE);
    }
    if (b->hold) {
      /* Leave the server idle: once all it sent is acknowledged and we
       * have nothing more to say, this side goes without a word. */
      if (b->c2s.n == 0 && server_quiet(b)) {
        peer_free(p);
      }
      return;
    }
    d = queue_slot(&b->c2s);
    ngtcp2_ccerr_set_application_error(&ccerr, 0, NULL, 0);
    nwrite = ngtcp2_conn_write_connection_close(
        p->conn, NULL, NULL, d->data, sizeof(d->data), &ccerr, b->now);
    if (nwrite <= 0) {
      die("write_connection_close: %s", ngtcp2_strerror((int)nwrite));
    }
    d->len = (size_t)nwrite;
    b->c2s.n++;
    peer_free(p);
  }
}

/* earliest_expiry: when the next timer of either side is due. */
static ngtcp2_tstamp earliest_expiry(const hs_bench *b) {
  ngtcp2_tstamp e = UINT64_MAX, t;

  if (b->cli.conn) {
    e = ngtcp2_conn_get_expiry(b->cli.conn);
  }
  if (b->srv->conn) {
    t = ngtcp2_conn_get_expiry(b->srv->conn);
    e = t < e ? t : e;
  }
  return e;
}

static void peer_reset(hs_bench *b, hs_peer *p) {
  memset(p, 0, sizeof(*p));
  p->bench = b;
  p->tx_sid = -1;
}

/* The connection is over for this loop: both sides freed, or with --hold
 * the client freed and the server idle. */
static int finished(const hs_bench *b) {
  return b->cli.closed && (b->hold || b->srv->closed);
}

/* one_handshake runs one connection from the client's first packet to
 * both sides freed (with --hold: to the client freed and the server kept
 * in b->held); the CPU time goes to b->cpu_ns. The caller has read the
 * clock into b->last_cpu. */
static void one_handshake(hs_bench *b, int check) {
  static hs_peer srv;
  ngtcp2_tstamp e;
  int turn;

  b->srv = &srv;
  if (b->hold) {
    if (b->nheld == b->hold) {
      die("--hold: all %ld connections held already", b->hold);
    }
    b->srv = malloc(sizeof(*b->srv));
    if (b->srv == NULL) {
      die("out of memory");
    }
    b->held[b->nheld++] = b->srv;
  }
  peer_reset(b, &b->cli);
  peer_reset(b, b->srv);
  client_start(b);
  charge(b, HS_CLIENT);
  for (turn = 0; !finished(b); turn++) {
    if (turn == HS_MAX_TURNS) {
      die("no end after %d turns (client %s, server %s)", turn,
          b->cli.handshake_done ? "established" : "in handshake",
          b->srv->handshake_done ? "established" : "in handshake");
    }
    b->now += HS_ONE_WAY;
    server_turn(b);
    charge(b, HS_SERVER);
    if (check && b->srv->handshake_done && b->srv->tls) {
      /* What was meant is what was negotiated. */
      if (gnutls_cipher_get(b->srv->tls) != GNUTLS_CIPHER_AES_128_GCM ||
          gnutls_group_get(b->srv->tls) != GNUTLS_GROUP_X25519 ||
          gnutls_protocol_get_version(b->srv->tls) != GNUTLS_TLS1_3) {
        die("negotiated %s / %s, not TLS 1.3 AES-128-GCM X25519",
            gnutls_cipher_get_name(gnutls_cipher_get(b->srv->tls)),
            gnutls_group_get_name(gnutls_group_get(b->srv->tls)));
      }
      check = 0;
    }
    if (finished(b)) {
      break;
    }
    b->now += HS_ONE_WAY;
    client_turn(b);
    charge(b, HS_CLIENT);
    if (b->c2s.n == 0 && b->s2c.n == 0 && !b->srv->closed && !finished(b)) {
      /* Nothing on the wire: on to the next timer (delayed ACK). */
      e = earliest_expiry(b);
      if (e == UINT64_MAX) {
        die("stuck: nothing to send and no timer");
      }
      if (e > b->now) {
        b->now = e;
      }
    }
  }
}

/* clock_read_ns: what one CLOCK_THREAD_CPUTIME_ID read costs. */
static double clock_read_ns(void) {
  enum { READS = 20000 };
  uint64_t t0, t1;
  int i;

  t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (i = 0; i < READS; i++) {
    clock_ns(CLOCK_THREAD_CPUTIME_ID);
  }
  t1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  return (double)(t1 - t0) / READS;
}

static void bench_init(hs_bench *b, const char *cert, const char *key,
                       int key_share_top, int tickets) {
  int rv;

  memset(b, 0, sizeof(*b));
  b->tickets = tickets;
  b->cli_flags = key_share_top ? GNUTLS_KEY_SHARE_TOP : 0u;
  b->now = NGTCP2_SECONDS;
  if (gnutls_certificate_allocate_credentials(&b->srv_cred) != 0 ||
      gnutls_certificate_allocate_credentials(&b->cli_cred) != 0) {
    die("cannot allocate credentials");
  }
  rv = gnutls_certificate_set_x509_key_file(b->srv_cred, cert, key,
                                            GNUTLS_X509_FMT_PEM);
  if (rv < 0) {
    die("certificate %s with key %s: %s", cert, key, gnutls_strerror(rv));
  }
  /* The client trusts exactly the server's certificate, like --ca. */
  rv = gnutls_certificate_set_x509_trust_file(b->cli_cred, cert,
                                              GNUTLS_X509_FMT_PEM);
  if (rv <= 0) {
    die("CA file %s: %s", cert, rv < 0 ? gnutls_strerror(rv) : "empty");
  }
  if (gnutls_priority_init(&b->srv_prio, hs_priority, NULL) != 0 ||
      gnutls_priority_init(&b->cli_prio, hs_priority, NULL) != 0) {
    die("priority string rejected");
  }
  if (gnutls_session_ticket_key_generate(&b->ticket_key) != 0 ||
      gnutls_anti_replay_init(&b->anti_replay) != 0) {
    die("cannot set up session tickets");
  }
  gnutls_rnd(GNUTLS_RND_KEY, b->static_secret, sizeof(b->static_secret));
  if (gnutls_hmac_init(&b->reset_hmac, GNUTLS_MAC_SHA256, b->static_secret,
                       sizeof(b->static_secret)) != 0) {
    die("cannot key the reset-token HMAC");
  }
  memset(hs_request, 'q', sizeof(hs_request));
  memset(hs_response, 'x', sizeof(hs_response));

  b->caddr.sin_family = AF_INET;
  b->caddr.sin_port = htons(50000);
  b->caddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  b->saddr = b->caddr;
  b->saddr.sin_port = htons(4433);
  b->cpath.local.addr = (ngtcp2_sockaddr *)&b->caddr;
  b->cpath.local.addrlen = sizeof(b->caddr);
  b->cpath.remote.addr = (ngtcp2_sockaddr *)&b->saddr;
  b->cpath.remote.addrlen = sizeof(b->saddr);
  b->spath.local = b->cpath.remote;
  b->spath.remote = b->cpath.local;
}

static void bench_free(hs_bench *b) {
  gnutls_hmac_deinit(b->reset_hmac, NULL);
  gnutls_anti_replay_deinit(b->anti_replay);
  gnutls_memset(b->ticket_key.data, 0, b->ticket_key.size);
  gnutls_free(b->ticket_key.data);
  gnutls_priority_deinit(b->srv_prio);
  gnutls_priority_deinit(b->cli_prio);
  gnutls_certificate_free_credentials(b->srv_cred);
  gnutls_certificate_free_credentials(b->cli_cred);
}

static long parse_count(const char *s, const char *what) {
  char *end;
  long v = strtol(s, &end, 10);

  if (*s == '\0' || *end != '\0' || v < 0 || v > 100000000) {
    die("bad %s \"%s\"", what, s);
  }
  return v;
}

static void usage(FILE *f) {
  fputs("usage: hs_floor --cert FILE --key FILE [--handshakes N] "
        "[--warmup N]\n"
        "                [--key-share-top] [--no-tickets] [--h3] "
        "[--hold N]\n",
        f);
}

/* vmrss_kb: this process's resident set, in kB (1024 B, as the kernel
 * counts). */
static long vmrss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");

  if (f == NULL) {
    die("cannot open /proc/self/status");
  }
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
      break;
    }
  }
  fclose(f);
  if (kb < 0) {
    die("no VmRSS in /proc/self/status");
  }
  return kb;
}

/* hold_idle keeps |n| idle server connections (after the warm-up) and
 * prints the resident memory each costs. */
static int hold_idle(hs_bench *b, long n) {
  long before, after, i;

  b->held = calloc((size_t)n, sizeof(*b->held));
  if (b->held == NULL) {
    die("out of memory");
  }
  b->hold = n;
  before = vmrss_kb();
  for (i = 0; i < n; i++) {
    one_handshake(b, 0);
  }
  after = vmrss_kb();
  printf("hs_floor: held %ld idle server connections (%s); VmRSS %ld -> %ld "
         "kB: %.1f KB/conn (KB = 1000 B)\n",
         n, b->h3 ? "h3" : "stream", before, after,
         (double)(after - before) * 1.024 / (double)n);
  for (i = 0; i < n; i++) {
    peer_free(b->held[i]);
    free(b->held[i]);
  }
  free(b->held);
  bench_free(b);
  gnutls_global_deinit();
  return 0;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"cert", required_argument, NULL, 'c'},
      {"key", required_argument, NULL, 'k'},
      {"handshakes", required_argument, NULL, 'n'},
      {"warmup", required_argument, NULL, 'w'},
      {"key-share-top", no_argument, NULL, 't'},
      {"no-tickets", no_argument, NULL, 'T'},
      {"h3", no_argument, NULL, '3'},
      {"hold", required_argument, NULL, 'H'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static hs_bench bench; /* the queues are big: not on the stack */
  hs_bench *b = &bench;
  const char *cert = NULL, *key = NULL;
  long n = 2000, warmup = 100, hold = 0, i;
  int key_share_top = 0, tickets = 1, h3 = 0, c;
  double read_ns, us[HS_SIDES], wall_s;
  uint64_t w0, w1;

  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      cert = optarg;
      break;
    case 'k':
      key = optarg;
      break;
    case 'n':
      n = parse_count(optarg, "--handshakes");
      break;
    case 'w':
      warmup = parse_count(optarg, "--warmup");
      break;
    case 't':
      key_share_top = 1;
      break;
    case 'T':
      tickets = 0;
      break;
    case '3':
      h3 = 1;
      break;
    case 'H':
      hold = parse_count(optarg, "--hold");
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 1;
    }
  }
  if (cert == NULL || key == NULL || optind != argc || n == 0) {
    usage(stderr);
    return 1;
  }
  if (gnutls_global_init() != 0) {
    die("gnutls_global_init failed");
  }
  bench_init(b, cert, key, key_share_top, tickets);
  b->h3 = h3;

  /* Warm up: first-use costs (GnuTLS's lazy tables, malloc arenas, the
   * page cache) stay out of the figures. */
  b->last_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (i = 0; i < warmup; i++) {
    one_handshake(b, i == 0);
  }
  if (hold > 0) {
    return hold_idle(b, hold);
  }
  read_ns = clock_read_ns();
  memset(b->cpu_ns, 0, sizeof(b->cpu_ns));
  memset(b->turns, 0, sizeof(b->turns));
  memset(b->datagrams, 0, sizeof(b->datagrams));

  w0 = clock_ns(CLOCK_MONOTONIC);
  b->last_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (i = 0; i < n; i++) {
    one_handshake(b, warmup == 0 && i == 0);
  }
  w1 = clock_ns(CLOCK_MONOTONIC);

  /* Each turn holds about one clock read: take it off. */
  for (c = 0; c < HS_SIDES; c++) {
    us[c] = ((double)b->cpu_ns[c] - (double)b->turns[c] * read_ns) / (double)n /
            1e3;
  }
  wall_s = (double)(w1 - w0) / 1e9;
  printf("hs_floor: %ld handshakes; server %.1f us, client %.1f us, total "
         "%.1f us per handshake (thread CPU); loop %.1f handshakes/s; "
         "datagrams c->s %.1f s->c %.1f; clock reads %.1f per handshake at "
         "%.0f ns, taken off; key shares %s, tickets %s\n",
         n, us[HS_SERVER], us[HS_CLIENT], us[HS_SERVER] + us[HS_CLIENT],
         (double)n / wall_s, (double)b->datagrams[HS_CLIENT] / (double)n,
         (double)b->datagrams[HS_SERVER] / (double)n,
         (double)(b->turns[HS_SERVER] + b->turns[HS_CLIENT]) / (double)n,
         read_ns, key_share_top ? "1 (X25519)" : "2 (X25519, P-256)",
         tickets ? "on" : "off");
  bench_free(b);
  gnutls_global_deinit();
  return 0;
}
