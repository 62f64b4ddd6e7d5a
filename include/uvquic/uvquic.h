/**
 * @file uvquic.h
 * uvquic — async QUIC connection management for C.
 *
 * This header is the sans-I/O core: an endpoint that takes datagrams and a
 * timestamp in, and gives datagrams and its next expiry out. It opens no
 * socket and reads no clock. The libuv adapter (uvquic_uv.h) drives it on a
 * UDP socket; any other event loop can drive it the same way.
 *
 * Conventions:
 * - Errors are negative UVQ_ERR_* values; uvq_strerror() names them.
 * - Times are nanoseconds on the caller's monotonic clock (uvq_tstamp);
 *   under the libuv adapter that clock is uv_hrtime().
 * - An endpoint and its connections belong to one thread. Only wakers
 *   (uvq_waker_*) may be used from other threads.
 * - No callback fires after a connection's on_closed.
 * - Callbacks may call the connection and stream API (write, open, close,
 *   ...), but not uvq_endpoint_recv/flush/handle_expiry/process_wakes (they
 *   return UVQ_ERR_INVALID_STATE there) nor uvq_endpoint_del: the driver
 *   flushes after the call that ran the callback returns.
 */
#ifndef UVQUIC_H
#define UVQUIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Marks a function of the public API. Building the library (UVQ_BUILDING,
 * with -fvisibility=hidden) it exports the symbol; everything else the
 * libraries define stays hidden.
 */
#if defined(UVQ_BUILDING) && defined(__GNUC__)
#define UVQ_EXTERN __attribute__((visibility("default")))
#else
#define UVQ_EXTERN
#endif

/** The major version of the headers. 0 until the API is stable. */
#define UVQ_VERSION_MAJOR 0
/** The minor version: pre-1.0 it grows with every API or ABI change. */
#define UVQ_VERSION_MINOR 2
/** The patch version: fixes that change no API. */
#define UVQ_VERSION_PATCH 0
/** The version of the headers as a string, "MAJOR.MINOR.PATCH". */
#define UVQ_VERSION "0.2.0"
/**
 * The version of the headers as one number, 0xMMmmpp, for comparisons in
 * the preprocessor (\#if UVQ_VERSION_NUM >= 0x000200).
 */
#define UVQ_VERSION_NUM                                                        \
  ((UVQ_VERSION_MAJOR << 16) | (UVQ_VERSION_MINOR << 8) | UVQ_VERSION_PATCH)

/**
 * uvq_version returns the version of the uvquic library linked at run time
 * ("0.2.0"), which may differ from UVQ_VERSION when the program was built
 * against other headers. The string is static; any thread may call it.
 */
UVQ_EXTERN const char *uvq_version(void);

/* ------------------------------------------------------------------------ */
/* Basic types                                                              */
/* ------------------------------------------------------------------------ */

/** Nanoseconds on the caller's monotonic clock. */
typedef uint64_t uvq_tstamp;

/** One nanosecond, the unit of uvq_tstamp and of every duration. */
#define UVQ_NANOSECONDS ((uint64_t)1)
/** One microsecond in uvq_tstamp units. */
#define UVQ_MICROSECONDS ((uint64_t)1000)
/** One millisecond in uvq_tstamp units. */
#define UVQ_MILLISECONDS ((uint64_t)1000000)
/** One second in uvq_tstamp units. */
#define UVQ_SECONDS ((uint64_t)1000000000)
/** A timestamp that never comes: "no expiry". */
#define UVQ_TSTAMP_MAX UINT64_MAX

/** QUIC version 1 (RFC 9000). */
#define UVQ_QUIC_V1 0x00000001u
/** QUIC version 2 (RFC 9369). */
#define UVQ_QUIC_V2 0x6b3343cfu
/** Most entries of uvq_settings.quic_versions. */
#define UVQ_MAX_VERSIONS 4

/** Longest connection ID QUIC v1 allows. */
#define UVQ_MAX_CIDLEN 20

/** An endpoint: one UDP address's worth of QUIC (a server, or a client carrying
 * many connections). Opaque; uvq_endpoint_new / uvq_endpoint_del. */
typedef struct uvq_endpoint uvq_endpoint;
/** A QUIC connection. Opaque; the library frees it after its on_closed. */
typedef struct uvq_conn uvq_conn;
/** A handle that wakes a connection from another thread (uvq_conn_waker). */
typedef struct uvq_waker uvq_waker;
/** A TLS context (GnuTLS credentials and settings) shared by endpoints. Opaque;
 * uvq_tls_ctx_new / uvq_tls_ctx_del. */
typedef struct uvq_tls_ctx uvq_tls_ctx;
/* GnuTLS's session type (gnutls_session_t), declared without its header. */
struct gnutls_session_int;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/** Error codes: every function that fails returns one of these (negative);
 * uvq_strerror names them, uvq_err_is_fatal tells which end a connection. */
typedef enum uvq_error {
  UVQ_OK = 0,
  /** A caller passed a bad argument (NULL, out of range, wrong state). */
  UVQ_ERR_INVALID_ARGUMENT = -1,
  /** An allocation failed. */
  UVQ_ERR_NOMEM = -2,
  /** The operation is not valid in the object's current state. */
  UVQ_ERR_INVALID_STATE = -3,
  /** The connection is closing or closed. */
  UVQ_ERR_CLOSED = -4,
  /** A connection ID is already in the endpoint's map. */
  UVQ_ERR_CID_IN_USE = -5,
  /** The peer's stream limit is reached; wait for on_streams_available. */
  UVQ_ERR_STREAM_LIMIT = -6,
  /** No such stream (never opened, or already closed). */
  UVQ_ERR_STREAM_NOT_FOUND = -7,
  /** The stream's send side is already shut (FIN sent or reset). */
  UVQ_ERR_STREAM_SHUT = -8,
  /** A TLS configuration problem (bad priority string, no ALPN, ...). */
  UVQ_ERR_TLS_CONFIG = -9,
  /** The certificate file could not be read or parsed. */
  UVQ_ERR_CERT_FILE = -10,
  /** The private key file could not be read or parsed, or does not match. */
  UVQ_ERR_KEY_FILE = -11,
  /** The CA file (or the system store) could not be loaded. */
  UVQ_ERR_CA_FILE = -12,
  /** A local TLS failure (GnuTLS error) during the handshake. */
  UVQ_ERR_TLS = -13,
  /** The handshake did not complete within settings.handshake_timeout. */
  UVQ_ERR_HANDSHAKE_TIMEOUT = -14,
  /** No packet arrived within the idle timeout. */
  UVQ_ERR_IDLE_TIMEOUT = -15,
  /** A TLS alert ended the handshake; uvq_close_info.tls_alert holds it. */
  UVQ_ERR_TLS_ALERT = -16,
  /** The peer refused the connection (CONNECTION_REFUSED). */
  UVQ_ERR_PEER_REFUSED = -17,
  /** We refused the connection (on_accept, max_connections). */
  UVQ_ERR_REFUSED = -18,
  /** The server speaks none of our versions (Version Negotiation), or a
   * Version Negotiation proved forged (a downgrade, RFC 9368). */
  UVQ_ERR_VERSION_NEGOTIATION = -19,
  /** An address-validation token was invalid (INVALID_TOKEN). */
  UVQ_ERR_INVALID_TOKEN = -20,
  /** The peer closed with a transport error; see uvq_close_info.code. */
  UVQ_ERR_PEER_TRANSPORT = -21,
  /** We closed because the peer violated the protocol; see code. */
  UVQ_ERR_PROTOCOL = -22,
  /** The peer sent a stateless reset. */
  UVQ_ERR_STATELESS_RESET = -23,
  /** An application callback returned an error (INTERNAL_ERROR sent). */
  UVQ_ERR_CALLBACK = -24,
  /** The endpoint is shutting down. */
  UVQ_ERR_SHUTDOWN = -25,
  /** An operating-system call failed (adapter layer). */
  UVQ_ERR_IO = -26,
  /** An address could not be parsed or resolved (adapter layer). */
  UVQ_ERR_ADDRESS = -27,
  /** An internal invariant failed; this is a bug, please report it. */
  UVQ_ERR_INTERNAL = -28,
  /** The limit on concurrent connections is reached. */
  UVQ_ERR_CONNECTION_LIMIT = -29,
  /** The peer's certificate did not verify. */
  UVQ_ERR_CERT_VERIFY = -30,
  /** A bounded queue is full; try again later. */
  UVQ_ERR_QUEUE_FULL = -31,
  /**
   * No viable path: the peer's address changed and the new path could not
   * be validated within three path-validation timeouts while the peer kept
   * sending from it (ngtcp2 1.x can stall there, amplification-limited with
   * a full congestion window). Closed with NO_VIABLE_PATH (0x10), written
   * to the path the peer's latest datagram came from; counted in
   * uvq_endpoint_stats.paths_stalled (paths_stalled_dropped when no
   * datagram came to carry the close).
   */
  UVQ_ERR_PATH_STALLED = -32,
  /**
   * Nothing at all arrived from the peer for settings.stall_timeout while
   * the connection had a stream open: closed with NO_VIABLE_PATH.
   */
  UVQ_ERR_STALLED = -33,
  /**
   * Client with settings.qlog set: the server's transport parameters were
   * refused because ngtcp2's qlog writer could overflow on them
   * (CVE-2026-40170; see uvq_settings.qlog). Closed with
   * TRANSPORT_PARAMETER_ERROR (0x08) and the reason "transport parameters
   * too large for ngtcp2's qlog (CVE-2026-40170)". The same server may
   * be reached with qlog off.
   */
  UVQ_ERR_QLOG_UNSAFE = -34,
  /**
   * Server: an idle connection (no bidirectional stream open) closed to
   * make room for a new one under memory pressure (see
   * uvq_settings.no_idle_eviction). Closed with NO_ERROR and the reason
   * "idle connection closed under memory pressure"; counted in
   * uvq_endpoint_stats.evicted_idle.
   */
  UVQ_ERR_EVICTED = -35,
  /**
   * Client: the network answered the connection's first datagrams with an
   * ICMP / ICMPv6 port unreachable from its peer's address, before
   * anything arrived from the peer (nothing listens there): closed at
   * once, without a CONNECTION_CLOSE. See uvq_endpoint_recv_icmp.
   */
  UVQ_ERR_PORT_UNREACHABLE = -36,
  /**
   * Client: as UVQ_ERR_PORT_UNREACHABLE, for an ICMP host, network or
   * address unreachable (or administratively prohibited).
   */
  UVQ_ERR_HOST_UNREACHABLE = -37
} uvq_error;

/** uvq_strerror returns a static, human-readable name for |err|. */
UVQ_EXTERN const char *uvq_strerror(int err);

/**
 * uvq_err_is_fatal returns nonzero if |err| means the object it came from
 * can no longer be used (e.g. UVQ_ERR_NOMEM during a handshake), zero for
 * errors that leave it usable (e.g. UVQ_ERR_STREAM_LIMIT).
 */
UVQ_EXTERN int uvq_err_is_fatal(int err);

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * uvq_mem routes every allocation the library (and the ngtcp2 connections it
 * creates) makes. Pass NULL wherever a uvq_mem is taken to use libc. The
 * functions follow malloc/free/calloc/realloc semantics; |user_data| is
 * passed back to each.
 */
typedef struct uvq_mem {
  void *user_data; /**< Passed back to every function below. */
  void *(*malloc)(size_t size, void *user_data); /**< As malloc(3). */
  void (*free)(void *ptr,
               void *user_data); /**< As free(3); |ptr| may be NULL. */
  void *(*calloc)(size_t nmemb, size_t size,
                  void *user_data); /**< As calloc(3). */
  void *(*realloc)(void *ptr, size_t size,
                   void *user_data); /**< As realloc(3). */
} uvq_mem;

/** uvq_mem_default returns the libc allocator. */
UVQ_EXTERN const uvq_mem *uvq_mem_default(void);

/* ------------------------------------------------------------------------ */
/* Addresses and paths                                                      */
/* ------------------------------------------------------------------------ */

/** A socket address with its length. */
typedef struct uvq_addr {
  struct sockaddr_storage
      ss; /**< The address (struct sockaddr_in or sockaddr_in6 inside). */
  socklen_t len; /**< Its length. */
} uvq_addr;

/** A network path: our address and the peer's. */
typedef struct uvq_path {
  uvq_addr local;  /**< Our address. */
  uvq_addr remote; /**< The peer's address. */
} uvq_path;

/**
 * uvq_addr_set copies |sa| (AF_INET or AF_INET6) into |addr|.
 * Returns 0, or UVQ_ERR_INVALID_ARGUMENT for another family or a short len.
 */
UVQ_EXTERN int uvq_addr_set(uvq_addr *addr, const struct sockaddr *sa,
                            socklen_t len);

/** ECN codepoints, as carried in the IP header's two low TOS bits. */
#define UVQ_ECN_NOT_ECT 0x0
/** ECT(1). */
#define UVQ_ECN_ECT_1 0x1
/** ECT(0). */
#define UVQ_ECN_ECT_0 0x2
/** Congestion Experienced. */
#define UVQ_ECN_CE 0x3

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * The current version of uvq_settings (its first member). Version 2 added
 * quic_versions, quic_versionslen, client_chosen_version,
 * endpoint_send_budget, conn_recv_budget, endpoint_recv_budget and
 * no_idle_eviction; version 3 added quic_lb. A struct of an older version
 * (compiled against the older header, so without the later fields) is
 * still read: those fields take their defaults. Any other version makes
 * uvq_endpoint_new fail with UVQ_ERR_INVALID_ARGUMENT.
 */
#define UVQ_SETTINGS_VERSION 3

struct uvq_lb_config;

/** When a server sends Retry to validate a client's address
 * (uvq_settings.retry). */
typedef enum uvq_retry_mode {
  /** Never send Retry. */
  UVQ_RETRY_OFF = 0,
  /** Validate every new client's address with a Retry first. */
  UVQ_RETRY_ALWAYS = 1,
  /** Send Retry only while handshakes in flight exceed retry_auto_threshold,
   * or under memory pressure (see uvq_settings.no_idle_eviction: a new
   * connection closes an idle one only once its address is proven). */
  UVQ_RETRY_AUTO = 2
} uvq_retry_mode;

/** Congestion controller (uvq_settings.cc_algo). */
typedef enum uvq_cc_algo {
  UVQ_CC_CUBIC = 0,
  UVQ_CC_RENO = 1,
  /** ngtcp2's BBR (BBRv2 since ngtcp2 1.0; the value 3, once a second BBR,
   * is refused). */
  UVQ_CC_BBR = 2
} uvq_cc_algo;

/** Length of the static secret that derives stateless-reset tokens. */
#define UVQ_STATIC_SECRETLEN 32
/** Length of an address-validation token key (AES-128). */
#define UVQ_TOKEN_KEYLEN 16
/** Length of a session-ticket master key (what GnuTLS takes). */
#define UVQ_TICKET_KEYLEN 64

/** Severity of a uvq_settings.log_cb line; a lower value is more severe. */
typedef enum uvq_log_level {
  /** Something failed that the library cannot recover from (NOMEM ...). */
  UVQ_LOG_ERROR = 0,
  /** A connection failed through a local or protocol error. */
  UVQ_LOG_WARN = 1,
  /** Connection lifecycle: accepted, established, closed. */
  UVQ_LOG_INFO = 2,
  /** Aggregated drops, and ngtcp2's own debug trace. */
  UVQ_LOG_DEBUG = 3
} uvq_log_level;

/**
 * uvq_settings holds every tunable of an endpoint. Initialise with
 * uvq_settings_default() and change what you need; new fields are only
 * ever added at the end.
 */
typedef struct uvq_settings {
  int version; /**< UVQ_SETTINGS_VERSION (set by uvq_settings_default). */
  /** Length of the connection IDs we issue, 8..20. Default 16. */
  size_t cid_len;
  /** Congestion controller. Default CUBIC. */
  uvq_cc_algo cc_algo;
  /** Idle timeout (ns). Default 30 s. */
  uint64_t idle_timeout;
  /**
   * Handshake timeout (ns), from the connection's creation; a handshake
   * not complete by then ends with UVQ_ERR_HANDSHAKE_TIMEOUT (origin
   * UVQ_CLOSE_TIMEOUT). UVQ_TSTAMP_MAX disables it. Default 20 s: with the
   * default initial_rtt a client sends its first flight at 0, 0.3, 0.9,
   * 2.1, 4.5, 9.3 and 18.9 s (the PTO, 3 x initial_rtt, doubles after each
   * probe; ngtcp2 1.11 has no cap on that backoff), so a server that never
   * answers is given up 20 s after the connect, and a handshake through 30 %
   * loss each way gets seven tries (about 1 in 1,800 still fails; 1 in 65
   * with the earlier 333 ms / 10 s). The next try would be at 38.1 s, past
   * the default idle timeout, which also ends a handshake that hears
   * nothing: a longer timeout would only wait longer. quic-go gives up
   * after 5 s without a packet or 10 s in all, quinn and ngtcp2's example
   * client after their 30 s idle timeout.
   */
  uint64_t handshake_timeout;
  /** Keep-alive PING interval (ns); 0 disables. Default 0. */
  uint64_t keep_alive;
  /**
   * Initial RTT estimate (ns), until the first sample. Default 100 ms, as
   * quic-go and Chromium use, rather than RFC 9002's 333 ms: the first
   * PTO is 300 ms instead of 1 s, so lost first flights are resent sooner
   * (see handshake_timeout). On a path slower than 300 ms round trip the
   * first flight goes out once more than needed.
   */
  uint64_t initial_rtt;
  /** Connection-level flow-control window we grant. Default 16 MiB. */
  uint64_t initial_max_data;
  /** Per-stream flow-control window we grant. Default 1 MiB. */
  uint64_t initial_max_stream_data;
  /** Connection window auto-tuning ceiling. Default 24 MiB. */
  uint64_t max_window;
  /** Stream window auto-tuning ceiling. Default 16 MiB. */
  uint64_t max_stream_window;
  /** Bidirectional streams the peer may open. Default 100. */
  uint64_t max_streams_bidi;
  /** Unidirectional streams the peer may open. Default 100. */
  uint64_t max_streams_uni;
  /**
   * Largest UDP payload we send (bytes): 0 (the default) or
   * 1200..UVQ_MAX_UDP_PAYLOAD. Each connection starts at 1200 and path MTU
   * discovery (pmtud) raises it up to a ceiling:
   *   - 0, auto: the MTU of the link the connection starts on, as the
   *     driver reports it (uvq_endpoint_config.path_mtu; the libuv adapter
   *     reads the MTU of the interface that holds the path's local
   *     address, at most 1500 for a peer off its subnet), less the IP and
   *     UDP headers, and at most
   *     UVQ_UDP_PAYLOAD_AUTO_MAX; 1452 (a 1500-byte Ethernet MTU over IPv6)
   *     where the driver does not know the link. So a jumbo-frame LAN
   *     (MTU 9000) gets 8952-byte datagrams and loopback (MTU 65536)
   *     UVQ_UDP_PAYLOAD_AUTO_MAX, and fewer datagrams for the same bytes
   *     cost fewer per-packet cycles at both ends.
   *   - N: at most N, and never more than the link's MTU allows when the
   *     driver knows it.
   * Up to 1472 discovery climbs 1342, 1406, 1444, 1452 and then the
   * ceiling, each size one round trip after the last was confirmed; a size
   * lost three times ends the climb at the last size confirmed, as does
   * every larger one (RFC 8899). Above it (the first link is the path) it
   * probes the ceiling first, and only if that is lost climbs 1342 ... 8952.
   * Data flows at the confirmed size meanwhile. Above 1500 only towards a peer
   * on the first link's own subnet (the libuv adapter's rule): one
   * beyond a router is reached over links the host cannot see.
   * A server in auto mode also tells its clients (transport parameter
   * max_udp_payload_size) to send it at most 1452 bytes per datagram:
   * ngtcp2 keeps a decrypt buffer the size of the largest datagram a
   * connection received until the connection ends, 14.5 KB per idle
   * connection for loopback's 16384. Set a size explicitly to take large
   * datagrams from clients too (uploads); clients always take them. uvq_raw
   * takes at most 1500 (its buffers' size).
   */
  size_t max_udp_payload_size;
  /** Path MTU discovery. Default on (1). Off: every datagram is 1200
   * bytes, whatever max_udp_payload_size says. */
  int pmtud;
  /** Forbid the peer from migrating. Default 0 (migration allowed). */
  int disable_active_migration;
  /** Retry / address validation (servers). Default UVQ_RETRY_OFF. */
  uvq_retry_mode retry;
  /** Handshakes in flight above which UVQ_RETRY_AUTO sends Retry. Default 256.
   */
  size_t retry_auto_threshold;
  /** Lifetime of Retry tokens (seconds of wall time). Default 10. */
  uint64_t retry_token_lifetime;
  /** Lifetime of NEW_TOKEN tokens (seconds of wall time). Default 86400. */
  uint64_t new_token_lifetime;
  /**
   * Bytes a stream may hold unacknowledged in its send buffer. Default 1 MiB.
   * A stream also takes no more unsent bytes than the peer's remaining
   * flow-control credit on it plus one 64 KiB lookahead (so a credit update
   * finds data ready while the writer makes more): a peer that grants no
   * credit makes a stream hold at most that lookahead, whatever the writer
   * offers (writes come back short, on_stream_writable follows the credit).
   */
  size_t stream_send_buffer;
  /**
   * Concurrent connections allowed (those still closing included); 0 = no
   * limit. Default 10000. Over it a server refuses Initials
   * (CONNECTION_REFUSED, counted in initials_refused) and a client's
   * uvq_endpoint_connect returns UVQ_ERR_CONNECTION_LIMIT.
   */
  size_t max_connections;
  /** Stateless replies (VN, Retry, closes) queued before overflow. Default 64.
   */
  size_t stateless_queue_len;
  /** Datagrams a connection writes per flush. Default 64. */
  size_t max_burst_datagrams;
  /** ACK-eliciting packets before an immediate ACK (ngtcp2 ack_thresh).
   * Default 2. */
  size_t ack_thresh;
  /**
   * Secret that derives stateless-reset tokens from CIDs. Share it between
   * endpoints serving the same CIDs. If static_secret_set is 0 a random
   * secret is drawn per endpoint.
   */
  uint8_t static_secret[UVQ_STATIC_SECRETLEN];
  int static_secret_set; /**< Nonzero if static_secret is set. */
  /**
   * Key for address-validation tokens. If token_key_set is 0 a random key
   * is drawn per endpoint. Rotate with uvq_endpoint_rotate_token_key().
   */
  uint8_t token_key[UVQ_TOKEN_KEYLEN];
  int token_key_set; /**< Nonzero if token_key is set. */
  /**
   * Optional ngtcp2-level debug log: one line per call, without newline.
   */
  void (*log)(void *user_data, const char *line);
  void *log_user_data; /**< Passed to |log|. */
  /** Server: send a NEW_TOKEN token after each handshake. Default 1. */
  int send_new_token;
  /**
   * Largest DATAGRAM frame (RFC 9221) we accept; 0 disables DATAGRAM
   * support. Default 0.
   */
  uint64_t max_datagram_frame_size;
  /** DATAGRAMs a connection queues before uvq_conn_send_datagram refuses.
   * Default 128. */
  size_t datagram_queue_len;
  /**
   * Optional qlog sink (draft-ietf-quic-qlog, JSON-SEQ as ngtcp2 writes
   * it): called with each piece of a connection's trace, |fin| set on the
   * last one. Name files by uvq_conn_info.odcid. It must not call into the
   * library (it also runs while the connection is being built). Off by
   * default. Debian bookworm-backports' ngtcp2 1.11.0-1~bpo12+1 lacks the
   * fix for CVE-2026-40170: a hostile server's transport parameters
   * overflow a 1024-byte stack buffer in ngtcp2's qlog writer
   * (ngtcp2_qlog_parameters_set_transport_params; a client's cannot: 1.11
   * refuses server-only parameters from a client before logging them).
   * trixie's 1.11.0-1+deb13u1 has the fix, but both report
   * ngtcp2_version() 1.11.0, so uvquic guards always: with qlog set, a
   * client computes the length of the qlog rendering of the server's
   * parameters (exactly as 1.11 writes it, taking the widest "time") before
   * ngtcp2 decodes and logs them, and refuses a set longer than 1024 bytes:
   * the connection closes with TRANSPORT_PARAMETER_ERROR and on_closed
   * reports UVQ_ERR_QLOG_UNSAFE. Only unusually large sets are refused: a
   * preferred_address with a long CID together with 19-digit limits, say
   * (at most 1,194 bytes). Without a preferred_address no set overflows
   * (951 bytes at most: 20-byte CIDs, every limit maximal); with one
   * of 8 bytes and everyday limits a set renders to ~880 bytes. With qlog
   * unset nothing is logged and nothing is refused. To do this the client
   * session uses uvquic's own GnuTLS QUIC glue in place of
   * ngtcp2_crypto_gnutls's (the same secret, handshake-read and alert
   * functions, and a quic_transport_parameters handler, extension 0x39,
   * with the check); uvq_tls_config.hook still gets the session with the
   * GnuTLS handshake hook function free, and must not replace those
   * functions (it cannot register 0x39 again: GnuTLS refuses a second
   * handler). Servers' sessions are unchanged; a server logs its own set
   * through the same writer, so a raw-mode hook (uvq_raw_config.hook) that
   * gives a server a set that large must leave qlog off.
   */
  void (*qlog)(void *user_data, uvq_conn *conn, const void *data, size_t len,
               int fin);
  void *qlog_user_data; /**< Passed to |qlog|. */
  /**
   * Server: accept 0-RTT (early data, RFC 9001 §4.6) from clients that
   * resume a session, and say so in the session tickets we issue (tickets
   * are always issued; with 0 they allow resumption only). Early data can be
   * replayed by an attacker: serve only requests that are safe to repeat
   * before the handshake completes (uvq_conn_info.early_data and the stage
   * tell). Default 1.
   */
  int early_data;
  /**
   * Server: refuse the early data of a ClientHello seen before (GnuTLS's
   * anti-replay, RFC 8446 §8.2): ClientHellos are recorded for 10 s, per
   * TLS context, so endpoints sharing a context share the record. The
   * handshake of a refused ClientHello goes on in 1-RTT. 0 accepts every
   * ClientHello whose ticket age fits the window. Default 1.
   */
  int anti_replay;
  /**
   * Optional log callback. |scid_hex| is the connection's first Source
   * CID in lowercase hex, or NULL for endpoint-wide lines; |msg| is one
   * line without newline. Both are valid during the call only. It runs on
   * the endpoint's thread and must not call into the library. Lines above
   * log_level are not even formatted. Lifecycle lines are at INFO; drops
   * at DEBUG, aggregated (at most one line a second, carrying the counts
   * since the last line); with log_level DEBUG, ngtcp2's own trace (the
   * lines |log| above gets) comes through here too. |log| keeps working
   * on its own, whatever log_level says.
   */
  void (*log_cb)(void *user_data, uvq_log_level lvl, const char *scid_hex,
                 const char *msg);
  void *log_cb_user_data; /**< Passed to |log_cb|. */
  /** Most verbose level log_cb receives. Default UVQ_LOG_WARN. */
  uvq_log_level log_level;
  /**
   * Rounds (one smoothed RTT each) the bandwidth estimator's max filter
   * spans (uvq_conn_stats.max_bandwidth), 1..32; 0 = 10. Default 10.
   */
  size_t bw_window_rounds;
  /**
   * The token key before token_key: tokens it sealed are still accepted
   * (until uvq_endpoint_rotate_token_key pushes it out), so several
   * processes can roll a new key out one by one. Ignored unless
   * token_key_prev_set is nonzero. uvq_keys_apply sets both.
   */
  uint8_t token_key_prev[UVQ_TOKEN_KEYLEN];
  int token_key_prev_set; /**< Nonzero if token_key_prev is set. */
  /**
   * Stateless resets (RFC 9000 §10.3) answering short-header packets for
   * connections we do not know, as after a crash: a token bucket refilled
   * with stateless_reset_rate resets per second of the endpoint's clock,
   * holding at most stateless_reset_burst. A reset the bucket cannot pay
   * for is not sent and is counted (stateless_resets_suppressed). Rate 0
   * sends none. Defaults 100 per second, burst 100.
   */
  uint64_t stateless_reset_rate;
  uint64_t stateless_reset_burst; /**< The bucket's size (see
                                     stateless_reset_rate). */
  /**
   * Bytes of send buffers (stream send data, HTTP/3 body chunks) the
   * endpoint keeps for reuse once the peer acknowledged their contents: a
   * cache shared by all its connections, which themselves hold buffers
   * only while data is unacknowledged. Buffers given back beyond it are
   * freed. 0 keeps none. Default 1 MiB: enough for bulk transfers (99 %
   * of a 100 MiB download's buffers come from it); a bigger cache also
   * costs idle memory after a burst of short exchanges (docs/internals/
   * bench.md).
   */
  size_t send_buffer_cache;
  /**
   * While the connection has a stream open, send a PING after this long
   * without receiving anything (ns; ngtcp2's keep-alive, which otherwise
   * uses keep_alive above), so a peer that is waiting on a broken path
   * hears from us and the path is probed. 0 = off (default). Meant for
   * clients with requests in flight; uvquic-client uses 1 s.
   */
  uint64_t stream_keep_alive;
  /**
   * Close a connection that has a stream open and has received nothing at
   * all from the peer for this long (ns) with UVQ_ERR_STALLED. 0 = off
   * (default): a silent peer may be computing a slow answer. With
   * stream_keep_alive on, a live peer acknowledges the PINGs, so silence
   * means the path is gone; uvquic-client uses 5 s with a 1 s keep-alive.
   */
  uint64_t stall_timeout;
  /**
   * Bytes all of a connection's streams may hold in their send buffers
   * together (every buffer until its last byte is acknowledged: unsent
   * and unacknowledged bytes, and acknowledged ones sharing a buffer with
   * them); over it, writes come back short
   * and on_stream_writable follows acknowledgements. Counted in
   * uvq_endpoint_stats.send_budget_pushbacks. Default 8 MiB: enough for
   * a full congestion window at the default flow-control windows; a
   * connection whose peer grants no credit stays far below it (one
   * lookahead per stream).
   */
  size_t conn_send_budget;
  /**
   * Server admission. Handshakes in flight at most max_handshakes (default
   * 1024; 0 = no limit): beyond it an Initial without a valid token gets a
   * Retry when retry is auto or always, and any other Initial is refused
   * (CONNECTION_REFUSED). Per source — an IPv4 address (IPv4-mapped IPv6
   * addresses count as IPv4) or an IPv6 /64 —, at most
   * max_handshakes_per_source handshakes in flight (default 64) and
   * max_connections_per_source connections (default 1024); 0 = no limit.
   * Every refusal is counted by reason in uvq_endpoint_stats.
   */
  size_t max_handshakes;
  size_t max_handshakes_per_source;  /**< Handshakes in flight per source (see
                                        max_handshakes). */
  size_t max_connections_per_source; /**< Connections per source (see
                                        max_handshakes). */
  /**
   * QUIC versions the endpoint speaks, most preferred first: UVQ_QUIC_V1
   * and UVQ_QUIC_V2, each at most once, quic_versionslen of them (1 to
   * UVQ_MAX_VERSIONS); anything else makes uvq_endpoint_new fail with
   * UVQ_ERR_INVALID_ARGUMENT. Default {UVQ_QUIC_V1, UVQ_QUIC_V2}.
   *
   * Server: accepts Initials of these versions and answers any other
   * with Version Negotiation listing them all. It upgrades a client that
   * offers one of them in its version_information transport parameter
   * (compatible version negotiation, RFC 9368 §2.3, no round trip) to the
   * first of these the client offers: the default prefers v1, so only a
   * server that lists v2 first upgrades; {UVQ_QUIC_V2} alone is a
   * v2-only server. (ngtcp2's preferred_versions and, for the transport
   * parameter, available_versions.)
   *
   * Client: offers these in its version_information (ngtcp2's
   * available_versions), so a server may upgrade it to any of them. If the
   * server answers its first Initial with Version Negotiation, it starts
   * over in the first of these the server lists (incompatible version
   * negotiation, RFC 9368 §4; counted in
   * uvq_endpoint_stats.version_negotiations_received), and then refuses
   * the connection (UVQ_ERR_VERSION_NEGOTIATION, VERSION_NEGOTIATION_ERROR)
   * if the server's transport parameters show it supports a version this
   * list prefers to that one — a forged Version Negotiation (downgrade).
   * No version in common: UVQ_ERR_VERSION_NEGOTIATION.
   */
  uint32_t quic_versions[UVQ_MAX_VERSIONS];
  size_t quic_versionslen; /**< Entries in quic_versions. */
  /**
   * Client: the version of its first Initial (ngtcp2's
   * client_chosen_version); must be in quic_versions. Default
   * UVQ_QUIC_V1. Session tickets and NEW_TOKEN tokens are bound to the
   * version a connection starts in (see uvq_connect_params.resumption).
   */
  uint32_t client_chosen_version;
  /**
   * Bytes all the endpoint's connections may hold in their send buffers
   * together (as conn_send_budget counts them); over it, writes on every
   * connection come back short until acknowledgements free some, counted
   * in uvq_endpoint_stats.endpoint_send_budget_pushbacks. Connections
   * pushed back are served in the order they were: while any waits, what
   * frees goes to them in turn (64 KiB each, through on_stream_writable),
   * not to whichever writes first. 0 = no limit.
   * Default 256 MiB (32 connections at their full conn_send_budget): a
   * server on 1 GiB of RAM keeps its send buffers to a quarter of it
   * however many clients ask at once.
   */
  size_t endpoint_send_budget;
  /**
   * Received bytes the application layers hold for a connection (partial
   * HTTP/3 header sections, unfinished hq request lines, anything an
   * application reports with uvq_conn_recv_hold), per connection and for
   * the whole endpoint. While either is reached, the connection's reads
   * pause: the flow-control credit for the data it delivers is withheld
   * (the peer may send only what it was already granted) and returned
   * once the holder releases enough; counted in
   * uvq_endpoint_stats.recv_budget_pauses. Nothing received is dropped.
   * 0 = no limit. Defaults 1 MiB per connection and 64 MiB per endpoint.
   */
  size_t conn_recv_budget;
  size_t endpoint_recv_budget; /**< The endpoint-wide receive budget (see
                                  conn_recv_budget). */
  /**
   * Server: under memory pressure — endpoint_send_budget or
   * endpoint_recv_budget at 90 % or more — a new connection first closes
   * the endpoint's longest-idle connection (no bidirectional stream open,
   * idle the longest; counted in uvq_endpoint_stats.evicted_idle) and is
   * refused (CONNECTION_REFUSED, counted in refused_memory_pressure) when
   * there is none. Nonzero turns eviction off (refusal stays). Default 0.
   * With retry UVQ_RETRY_AUTO or ALWAYS an Initial without a valid token
   * gets a Retry first; with UVQ_RETRY_OFF any Initial may close one, a
   * spoofed one included.
   */
  int no_idle_eviction;
  /**
   * Server, optional: a QUIC-LB configuration (uvquic_lb.h), copied by
   * uvq_endpoint_new (the pointer need not outlive that call; the
   * endpoint's own settings then hold NULL here). The endpoint issues
   * only QUIC-LB connection IDs — the SCID of its first Initial, Retry
   * SCIDs, every NEW_CONNECTION_ID — so a load balancer holding the same
   * configuration routes every packet of a connection to this server by
   * its DCID, whatever the client's address. Their length, 1 +
   * server_id_len + nonce_len (8..20 here), replaces cid_len. Nonces and
   * the first octet's random bits come from the endpoint's randomness
   * (uvq_endpoint_config.rand). A keyed configuration that has spent its
   * nonces fails the connections that ask for a new CID: rotate first.
   * uvq_endpoint_new fails with UVQ_ERR_INVALID_ARGUMENT on a client or
   * when uvq_lb_config_check finds fault with it. NULL (default): random
   * CIDs of cid_len octets.
   */
  const struct uvq_lb_config *quic_lb;
} uvq_settings;

/** uvq_settings_default fills |s| with the defaults listed above. */
UVQ_EXTERN void uvq_settings_default(uvq_settings *s);

/* ------------------------------------------------------------------------ */
/* TLS                                                                      */
/* ------------------------------------------------------------------------ */

/**
 * The current version of uvq_tls_config. 2 added wall_time, keylog and
 * user_data at the end; a version-1 config is still read (up to its end),
 * but its keylog_file must be NULL now: the library opens no key log file
 * (see keylog).
 */
#define UVQ_TLS_CONFIG_VERSION 2

/**
 * uvq_tls_config configures a TLS context (GnuTLS underneath). One context
 * serves many connections; it must outlive every endpoint that uses it.
 */
typedef struct uvq_tls_config {
  int version; /**< UVQ_TLS_CONFIG_VERSION (set by uvq_tls_config_default). */
  /**
   * Server: PEM certificate chain and key. If both are NULL an ephemeral
   * self-signed P-256 certificate for "localhost" and 127.0.0.1/::1 is
   * generated. Client: an optional client certificate.
   */
  const char *cert_file;
  const char *key_file; /**< The key of cert_file (PEM). */
  /** Client: PEM file of trusted CAs; NULL = the system store. */
  const char *ca_file;
  /** Client: skip peer verification entirely. Default 0. */
  int insecure;
  /**
   * ALPN protocols, most preferred first. A server accepts any of them; a
   * client offers all. Required: at least one.
   */
  const char *const *alpn;
  size_t alpnlen; /**< Entries in |alpn|. */
  /**
   * Extra GnuTLS priority string for the cipher suites, e.g.
   * "-CIPHER-ALL:+CHACHA20-POLY1305"; NULL = uvquic's default (AES-128-GCM,
   * AES-256-GCM, ChaCha20-Poly1305, TLS 1.3 only). It is appended to the
   * default, which also sets the key-exchange groups: X25519 first (the
   * cheapest here), then P-256, P-384, X448, P-521; no FFDHE groups, which
   * QUIC peers do not use. "-GROUP-ALL:+GROUP-SECP256R1" and the like
   * change that.
   */
  const char *ciphers;
  /**
   * Version 1's key-log file name, kept so that version-1 structs keep
   * their layout. The library no longer writes files: it must be NULL (a
   * non-NULL one is refused with UVQ_ERR_INVALID_ARGUMENT); use |keylog|.
   */
  const char *keylog_file;
  /**
   * Optional per-connection hook (tokio-quiche's ConnectionHook): runs for
   * every new connection's GnuTLS session (a gnutls_session_t) after uvquic
   * configured it (priorities, credentials, ALPN, QUIC callbacks) and before
   * the handshake. It may pick other credentials (e.g. by SNI from a
   * post-client-hello function), require and verify client certificates,
   * restrict suites. It must not replace the session pointer
   * (gnutls_session_set_ptr), the db pointer (used by the key log) or the
   * QUIC functions (gnutls_handshake_set_secret_function,
   * gnutls_handshake_set_read_function, gnutls_alert_set_read_function);
   * the handshake hook function (gnutls_handshake_set_hook_function) is
   * free for it: uvquic installs none (see uvq_settings.qlog).
   * A nonzero return fails the connection: a client's uvq_endpoint_connect
   * returns UVQ_ERR_TLS; a server drops the Initial (counted as
   * accept_failed). |conn| has no app callbacks yet on servers.
   */
  int (*hook)(uvq_conn *conn, struct gnutls_session_int *session,
              void *user_data);
  void *hook_user_data; /**< Passed to |hook|. */
  /**
   * Server: the session-ticket master key, UVQ_TICKET_KEYLEN bytes
   * (copied), or NULL for a random one per context. Give every process
   * behind one address the same key (uvq_keys) and each resumes the
   * others' tickets. GnuTLS rotates the keys that encrypt tickets by
   * itself, deriving them from this one; each endpoint further mixes in a
   * hash of the limits 0-RTT relies on (the transport parameters a client
   * remembers — initial_max_data, initial_max_stream_data,
   * max_streams_bidi/uni, max_datagram_frame_size, the active CID limit —
   * and the tickets' early-data size limit), so tickets issued under other
   * limits no longer decrypt and those clients do a full handshake.
   * Turning settings.early_data off keeps tickets valid: the handshake
   * refuses their 0-RTT and still resumes. Replacing the master key
   * invalidates every ticket.
   */
  const uint8_t *ticket_key;
  size_t ticket_keylen; /**< Length of ticket_key: UVQ_TICKET_KEYLEN. */
  /**
   * (version >= 2) Optional: wall-clock seconds since the epoch, the
   * clock uvq_endpoint_config.wall_time reads. uvq_tls_ctx_new calls it
   * once, for the validity of an ephemeral certificate (from an hour
   * before to a week after). NULL: the system clock (time(2)). A test
   * world gives its own clock, so that a run replays exactly.
   */
  uint64_t (*wall_time)(void *user_data);
  /**
   * (version >= 2) Optional: receives the NSS key log (the format
   * Wireshark reads), one line per call: |line| is |len| bytes ending in
   * a newline and NUL-terminated after it, valid during the call only.
   * It runs during handshakes on the thread driving the connection's
   * endpoint, so on several threads at once if endpoints on several
   * threads share the context; it must not call into uvquic. NULL
   * (default): no key log. The library itself neither reads the
   * SSLKEYLOGFILE environment variable nor lets GnuTLS write to it; the
   * tools (uvquic-server, uvquic-client) honour it by appending these
   * lines to the file it names. The lines are secrets: whoever has them
   * can decrypt the connections they belong to.
   */
  void (*keylog)(const char *line, size_t len, void *user_data);
  void *user_data; /**< (version >= 2) Passed to wall_time and keylog. */
} uvq_tls_config;

/** uvq_tls_config_default zeroes |cfg| and sets its version. */
UVQ_EXTERN void uvq_tls_config_default(uvq_tls_config *cfg);

/**
 * uvq_tls_ctx_new creates a TLS context for servers (|is_server| nonzero) or
 * clients. It copies everything it needs from |cfg|.
 *
 * Returns 0 and sets *pctx, or UVQ_ERR_INVALID_ARGUMENT, UVQ_ERR_NOMEM,
 * UVQ_ERR_CERT_FILE, UVQ_ERR_KEY_FILE, UVQ_ERR_CA_FILE, UVQ_ERR_TLS_CONFIG.
 * If |errbuf| is not NULL, a one-line description naming the failing file or
 * setting is written to it on error.
 */
UVQ_EXTERN int uvq_tls_ctx_new(uvq_tls_ctx **pctx, int is_server,
                               const uvq_tls_config *cfg, const uvq_mem *mem,
                               char *errbuf, size_t errbuflen);

/**
 * uvq_tls_ctx_get_cert_pem copies the PEM of the context's own certificate
 * (e.g. the ephemeral one) into |buf| with a terminating NUL, so a tool can
 * hand it to clients as their CA. With |buf| NULL it only returns the length.
 * Returns the PEM length, UVQ_ERR_INVALID_ARGUMENT if |buflen| is too small,
 * or UVQ_ERR_INVALID_STATE if the context has no certificate.
 */
UVQ_EXTERN ssize_t uvq_tls_ctx_get_cert_pem(uvq_tls_ctx *ctx, char *buf,
                                            size_t buflen);

/** uvq_tls_ctx_del frees |ctx|. No endpoint may still use it. */
UVQ_EXTERN void uvq_tls_ctx_del(uvq_tls_ctx *ctx);

/**
 * uvq_tls_ctx_reload gives the server context |ctx| the certificate chain
 * and key of |cfg| (cert_file / key_file; none: the certificate in use is
 * kept) and, if cfg->ticket_key is set, that session-ticket master key; the
 * rest of |cfg| must describe the same context (ALPN, ciphers).
 * Handshakes that start afterwards use them; connections already set up
 * keep what they had. Everything is loaded and checked first: on any error
 * |ctx| is left exactly as it was and the reason goes to |errbuf|. The
 * replaced credentials stay allocated until uvq_tls_ctx_del (sessions may
 * still point at them). Endpoints using |ctx| derive their ticket keys from
 * the master key: call uvq_endpoint_reload_keys on each after a new
 * ticket_key. Not thread-safe: no other thread may use |ctx| meanwhile.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (a client context), or the errors of
 * uvq_tls_ctx_new (UVQ_ERR_CERT_FILE, UVQ_ERR_KEY_FILE, UVQ_ERR_NOMEM...).
 */
UVQ_EXTERN int uvq_tls_ctx_reload(uvq_tls_ctx *ctx, const uvq_tls_config *cfg,
                                  char *errbuf, size_t errbuflen);

/* ------------------------------------------------------------------------ */
/* Key file                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * uvq_keys holds what must survive restarts and be shared by every process
 * serving one address (several SO_REUSEPORT processes, or a fleet behind a
 * CID-routing load balancer):
 *
 * - ticket_key: the session-ticket master key (uvq_tls_config.ticket_key).
 *   GnuTLS rotates the ticket encryption keys derived from it by itself;
 *   replacing it forces full handshakes (tickets stop decrypting).
 * - token_key, token_key_prev: Retry and NEW_TOKEN tokens are sealed with
 *   the current key; tokens sealed with either are accepted.
 * - static_secret, static_secret_prev: the stateless-reset secret. Reset
 *   tokens are derived from the CIDs we issue with the current secret, and
 *   the resets we send use it too; there is nothing to verify on our side,
 *   so the previous secret is only kept to record the rotation. A
 *   connection whose CIDs were issued under another secret is not reset
 *   recognisably by its peer (it ends by idle timeout instead): rotate it
 *   rarely, between restarts.
 *
 * To rotate: uvq_keys_rotate, uvq_keys_format and store the text, then
 * restart the processes one by one — tokens from old and new processes
 * are accepted by both.
 * The contents are secret: whoever has them can forge tokens, reset
 * connections and decrypt session tickets.
 */
typedef struct uvq_keys {
  uint8_t ticket_key[UVQ_TICKET_KEYLEN]; /**< The session-ticket master key
                                            (uvq_tls_config.ticket_key). */
  uint8_t token_key[UVQ_TOKEN_KEYLEN]; /**< The current address-validation token
                                          key. */
  uint8_t token_key_prev[UVQ_TOKEN_KEYLEN]; /**< The previous token key, still
                                               accepted. */
  /** Nonzero if token_key_prev holds a key. */
  int token_key_prev_set;
  uint8_t static_secret[UVQ_STATIC_SECRETLEN]; /**< The current stateless-reset
                                                  secret. */
  uint8_t
      static_secret_prev[UVQ_STATIC_SECRETLEN]; /**< The previous one (resets
                                                   for CIDs issued under it). */
  /** Nonzero if static_secret_prev holds a secret. */
  int static_secret_prev_set;
} uvq_keys;

/**
 * uvq_keys_generate fills |keys| with fresh random keys (no previous ones).
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT, or UVQ_ERR_INTERNAL if the random
 * generator fails.
 */
UVQ_EXTERN int uvq_keys_generate(uvq_keys *keys);

/**
 * uvq_keys_rotate makes the current token key and reset secret the
 * previous ones and draws new current ones. The ticket master key is left
 * alone (GnuTLS rotates what it derives from it). Returns as
 * uvq_keys_generate.
 */
UVQ_EXTERN int uvq_keys_rotate(uvq_keys *keys);

/**
 * A buffer of UVQ_KEYS_TEXTLEN bytes holds any key file uvq_keys_format
 * writes, its NUL included.
 */
#define UVQ_KEYS_TEXTLEN 1024

/**
 * uvq_keys_format writes |keys| into |buf| in uvquic's key file format (a
 * versioned text: "uvquic-keys 1", then one "name hex" line per key),
 * NUL-terminated. It does no I/O: storing the text is the caller's —
 * secret, so written with mode 0600, and atomically (a temporary file in
 * the same directory, flushed, renamed over the old one), as
 * uvquic-server --gen-keys does. Wipe |buf| afterwards.
 *
 * Returns the text's length (without the NUL), or
 * UVQ_ERR_INVALID_ARGUMENT (a NULL argument, or |buflen| too small:
 * UVQ_KEYS_TEXTLEN always suffices; |buf| is then zeroed).
 */
UVQ_EXTERN ssize_t uvq_keys_format(const uvq_keys *keys, char *buf,
                                   size_t buflen);

/**
 * uvq_keys_parse reads the |len| bytes of key file text at |text| (what
 * uvq_keys_format writes) into |keys|. It refuses anything it cannot
 * parse: unknown version, a missing current key, bad hex, a wrong length,
 * an unknown or repeated key. It does no I/O: reading the file, and
 * refusing one that others may read (uvquic-server refuses any mode but
 * 0600 or stricter), is the caller's.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (|keys| or |text| NULL) or
 * UVQ_ERR_KEY_FILE (the contents); on error a one-line reason naming
 * |name| (the file, for messages; may be NULL) and the line goes to
 * |errbuf| (may be NULL). |keys| is untouched on error.
 */
UVQ_EXTERN int uvq_keys_parse(uvq_keys *keys, const char *text, size_t len,
                              const char *name, char *errbuf, size_t errbuflen);

/**
 * uvq_keys_apply puts |keys| into |settings| (static_secret, token_key,
 * token_key_prev and their _set flags) and, if |tls| is not NULL, into
 * |tls| (ticket_key points into |keys|, which must then live until
 * uvq_tls_ctx_new has copied it). Either pointer may be NULL to skip it.
 */
UVQ_EXTERN void uvq_keys_apply(const uvq_keys *keys, uvq_settings *settings,
                               uvq_tls_config *tls);

/* ------------------------------------------------------------------------ */
/* Close information                                                        */
/* ------------------------------------------------------------------------ */

/** Who ended a connection (uvq_close_info.origin). */
typedef enum uvq_close_origin {
  /** We closed: uvq_conn_close, a protocol error, a refusal. */
  UVQ_CLOSE_LOCAL = 0,
  /** The peer sent CONNECTION_CLOSE, a stateless reset or a VN packet. */
  UVQ_CLOSE_PEER = 1,
  /** A timer ended the connection (idle or handshake timeout). */
  UVQ_CLOSE_TIMEOUT = 2
} uvq_close_origin;

/** Which CONNECTION_CLOSE ended a connection, if any (uvq_close_info.type). */
typedef enum uvq_close_type {
  /** No CONNECTION_CLOSE frame was involved (timeouts, resets, VN). */
  UVQ_CLOSE_TYPE_NONE = 0,
  /** A transport-level CONNECTION_CLOSE (frame type 0x1c). */
  UVQ_CLOSE_TYPE_TRANSPORT = 1,
  /** An application-level CONNECTION_CLOSE (frame type 0x1d). */
  UVQ_CLOSE_TYPE_APPLICATION = 2
} uvq_close_type;

/**
 * uvq_close_info says how a connection ended. It is valid only during
 * on_closed. |error| is 0 for a clean close (transport NO_ERROR, or any
 * application close — the application protocol judges its own codes);
 * otherwise a precise UVQ_ERR_*.
 */
typedef struct uvq_close_info {
  int error;               /**< 0 for a clean close, else a UVQ_ERR_*. */
  uvq_close_origin origin; /**< Who ended it. */
  uvq_close_type type;     /**< Which kind of CONNECTION_CLOSE, if any. */
  /** The transport or application error code on the wire. */
  uint64_t code;
  /** The TLS alert (0x100 + alert on the wire), or 0. */
  uint8_t tls_alert;
  /** Reason phrase, not NUL-terminated; may be empty. */
  const uint8_t *reason;
  size_t reasonlen; /**< Length of |reason|. */
  /** Nonzero if the handshake had completed. */
  int handshake_completed;
} uvq_close_info;

/* ------------------------------------------------------------------------ */
/* Connections and application callbacks                                    */
/* ------------------------------------------------------------------------ */

/** The life stages of a connection (tokio-quiche's ConnectionStage). */
typedef enum uvq_stage {
  UVQ_STAGE_HANDSHAKE = 0,
  UVQ_STAGE_RUNNING = 1,
  UVQ_STAGE_CLOSING = 2,
  UVQ_STAGE_DRAINING = 3,
  UVQ_STAGE_CLOSED = 4
} uvq_stage;

/**
 * The current version of uvq_app_callbacks. 2 added on_write. The core
 * reads members added after version 1 only when |version| says they are
 * there; a table of any other version than 1 or 2 is refused
 * (uvq_endpoint_connect: UVQ_ERR_INVALID_ARGUMENT; from on_accept: the
 * connection is refused).
 */
#define UVQ_APP_CALLBACKS_VERSION 2

/**
 * uvq_app_callbacks is an application over QUIC (tokio-quiche's
 * ApplicationOverQuic). Every member may be NULL. Callbacks that return int
 * return 0, or a negative UVQ_ERR_* which closes the connection with
 * INTERNAL_ERROR (call uvq_conn_close yourself for a specific code).
 * |user_data| is the connection's; |stream_user_data| the stream's.
 * Stream data is lent for the duration of on_stream_data only; its
 * flow-control credit is returned when the callback returns.
 */
typedef struct uvq_app_callbacks {
  int version; /**< UVQ_APP_CALLBACKS_VERSION, or 1 for a table without
                  on_write. */
  /** The handshake completed. */
  int (*on_established)(uvq_conn *conn, void *user_data);
  /** The peer opened stream |stream_id| (it is about to deliver data). */
  int (*on_stream_open)(uvq_conn *conn, int64_t stream_id, void *user_data);
  /** Data (possibly empty with |fin|) arrived in order on a stream. */
  int (*on_stream_data)(uvq_conn *conn, int64_t stream_id, const uint8_t *data,
                        size_t len, int fin, void *user_data,
                        void *stream_user_data);
  /** A stream that took a short write has room again. */
  int (*on_stream_writable)(uvq_conn *conn, int64_t stream_id, void *user_data,
                            void *stream_user_data);
  /** The peer acknowledged [offset, offset+len) of a stream. */
  int (*on_stream_acked)(uvq_conn *conn, int64_t stream_id, uint64_t offset,
                         uint64_t len, void *user_data, void *stream_user_data);
  /** The peer reset its sending side of a stream (RESET_STREAM). */
  void (*on_stream_reset)(uvq_conn *conn, int64_t stream_id, uint64_t app_error,
                          void *user_data, void *stream_user_data);
  /**
   * The peer asked us to stop sending (STOP_SENDING); the transport has
   * reset our sending side. ngtcp2 (1.11) does not report the frame itself
   * (its stream_stop_sending callback is for our own STOP_SENDING): this
   * fires when the stream next has data to send and finds its send side
   * shut, and |app_error| is 0 (on_stream_closed later carries the code).
   */
  void (*on_stop_sending)(uvq_conn *conn, int64_t stream_id, uint64_t app_error,
                          void *user_data, void *stream_user_data);
  /**
   * A stream is closed in both directions and forgotten; its id is no
   * longer valid. |app_error| is 0 unless it was reset.
   */
  void (*on_stream_closed)(uvq_conn *conn, int64_t stream_id,
                           uint64_t app_error, void *user_data,
                           void *stream_user_data);
  /** The peer raised MAX_STREAMS: uvq_conn_open_stream may succeed again. */
  int (*on_streams_available)(uvq_conn *conn, void *user_data);
  /** A waker of this connection was signalled. */
  int (*on_wake)(uvq_conn *conn, void *user_data);
  /**
   * The connection ended. Fires exactly once, last; |conn| must not be
   * used after it returns (the library frees it).
   */
  void (*on_closed)(uvq_conn *conn, const uvq_close_info *ci, void *user_data);
  /** The deadline set with uvq_conn_set_app_timer passed. */
  int (*on_timer)(uvq_conn *conn, void *user_data);
  /**
   * Client: the server sent an address-validation token (NEW_TOKEN). Keep
   * it (per server) and pass it in uvq_connect_params.token next time to
   * skip a Retry round trip. |token| is valid during the call only.
   */
  int (*on_new_token)(uvq_conn *conn, const uint8_t *token, size_t tokenlen,
                      void *user_data);
  /** An unreliable DATAGRAM (RFC 9221) arrived; lent for the call only. */
  int (*on_datagram)(uvq_conn *conn, const uint8_t *data, size_t len,
                     void *user_data);
  /** The packet carrying DATAGRAM |id| was acknowledged. */
  int (*on_datagram_acked)(uvq_conn *conn, uint64_t id, void *user_data);
  /**
   * The packet carrying DATAGRAM |id| was declared lost (not resent).
   * The loss may prove spurious: if the peer's acknowledgement of that
   * packet arrives later, on_datagram_acked follows for the same |id|
   * (ngtcp2 1.11 keeps a lost packet's frames and acknowledges them when a
   * late ACK covers it). A DATAGRAM whose packet ngtcp2 reclaimed into a
   * PTO probe and later declared lost gets neither on_datagram_acked nor
   * on_datagram_lost (ngtcp2 1.11's rtb_on_pkt_lost skips the
   * lost_datagram callback for a PTO-reclaimed packet).
   */
  int (*on_datagram_lost)(uvq_conn *conn, uint64_t id, void *user_data);
  /**
   * Client: the server sent a session ticket (after the handshake). |data|
   * is an opaque resumption blob — the TLS session, whether the ticket
   * grants early data, and the server's transport parameters 0-RTT
   * needs — valid during the call only. Keep
   * the latest per server (it is secret: it resumes the session) and pass
   * it in uvq_connect_params.resumption next time. May fire more than once.
   */
  int (*on_session_ticket)(uvq_conn *conn, const uint8_t *data, size_t len,
                           void *user_data);
  /**
   * Client: the server refused our 0-RTT data, or none could be sent. The
   * streams opened before the handshake are gone (on_stream_closed fired
   * for each, with app_error 0) and nothing written on them arrived: open
   * new streams and write again. Fires once, just before on_established.
   */
  int (*on_early_data_rejected)(uvq_conn *conn, void *user_data);
  /**
   * (version >= 2) The connection is about to write: called at the start
   * of each write pass a flush gives a connection marked for writing
   * (every received packet, timer, wake or API call that has something to
   * send marks it), in the handshake and running stages — not after
   * uvq_conn_close or a failed callback, and not while datagrams of an
   * earlier pass still wait for the socket. Stream data written here goes
   * out in this pass as far as the burst size and the congestion window
   * allow. So an application that answers what it reads can write once per
   * receive batch here instead of once per packet in on_stream_data. Not a
   * poll hook: an unmarked connection is not called. Inside it,
   * uvq_endpoint_flush / handle_expiry return UVQ_ERR_INVALID_STATE; other
   * connections and uvq_conn_close may be used.
   */
  int (*on_write)(uvq_conn *conn, void *user_data);
} uvq_app_callbacks;

/** What became of 0-RTT on a connection (uvq_conn_info.early_data). */
typedef enum uvq_early_data {
  /** No 0-RTT: not attempted, or (server) not accepted. */
  UVQ_EARLY_DATA_NONE = 0,
  /** Client: 0-RTT attempted, the handshake has not said yet. */
  UVQ_EARLY_DATA_ATTEMPTED = 1,
  /** The server accepted the client's 0-RTT data. */
  UVQ_EARLY_DATA_ACCEPTED = 2,
  /** Client: the server refused it (on_early_data_rejected fired). */
  UVQ_EARLY_DATA_REJECTED = 3
} uvq_early_data;

/** Facts about a connection's handshake and path (uvq_conn_get_info). */
typedef struct uvq_conn_info {
  /** Negotiated ALPN, not NUL-terminated; alpnlen 0 before it is known. */
  const uint8_t *alpn;
  size_t alpnlen; /**< Length of |alpn|. */
  /** SNI the client sent (server) or requested (client); may be NULL. */
  const char *server_name;
  uint32_t version; /**< The QUIC version in use (UVQ_QUIC_V1, UVQ_QUIC_V2). */
  const uvq_path *path; /**< The current path. */
  /** Nonzero if the peer's address was validated by a token. */
  int address_validated;
  uvq_stage stage; /**< The connection's stage. */
  /** Smoothed RTT, RTT variance (ns) and congestion window (bytes). */
  uint64_t smoothed_rtt;
  uint64_t rttvar; /**< RTT variance (ns). */
  uint64_t cwnd;   /**< Congestion window (bytes). */
  /** Bytes sent and not yet acknowledged or declared lost. */
  uint64_t bytes_in_flight;
  /** The client's first Destination CID: the connection's name in logs. */
  const uint8_t *odcid;
  size_t odcidlen; /**< Length of |odcid|. */
  /**
   * Nonzero if the TLS session was resumed from a ticket (client: once the
   * ServerHello said so; server: from on_accept on).
   */
  int resumed;
  /**
   * 0-RTT outcome. A server that accepted it delivers early data while the
   * stage is still UVQ_STAGE_HANDSHAKE: that data may be a replay.
   */
  uvq_early_data early_data;
  /**
   * Nonzero if the handshake went through a Retry: the client followed one,
   * or the server accepted the client on a Retry token.
   */
  int retry;
  /** The negotiated AEAD's GnuTLS name ("AES-128-GCM"), or NULL before. */
  const char *cipher;
} uvq_conn_info;

/**
 * uvq_conn_get_info fills |info| for |conn|. Pointers in it stay valid until
 * the next call into the library for this connection.
 */
UVQ_EXTERN void uvq_conn_get_info(uvq_conn *conn, uvq_conn_info *info);

/** The connection's user data, as given by on_accept or connect. */
UVQ_EXTERN void *uvq_conn_get_user_data(uvq_conn *conn);
/** uvq_conn_set_user_data replaces the connection's user data (what its
 * callbacks receive from now on). The old value is not freed. */
UVQ_EXTERN void uvq_conn_set_user_data(uvq_conn *conn, void *user_data);
/** The endpoint that owns |conn|. */
UVQ_EXTERN uvq_endpoint *uvq_conn_get_endpoint(uvq_conn *conn);
/** The connection's stage (UVQ_STAGE_*). */
UVQ_EXTERN uvq_stage uvq_conn_get_stage(uvq_conn *conn);
/** Nonzero if |conn| is a server connection. */
UVQ_EXTERN int uvq_conn_is_server(uvq_conn *conn);

/**
 * uvq_conn_close starts closing |conn| with application error |app_error|
 * and an optional NUL-terminated |reason|, in any stage (before the handshake
 * completes the wire carries APPLICATION_ERROR as RFC 9000 §10.2.3 says).
 * It returns at once; on_closed fires later, exactly once, from a flush.
 * Calling it on a closing connection is a no-op returning 0.
 *
 * Returns 0, or UVQ_ERR_NOMEM if the reason cannot be stored.
 */
UVQ_EXTERN int uvq_conn_close(uvq_conn *conn, uint64_t app_error,
                              const char *reason);

/**
 * uvq_conn_set_app_timer arms the connection's one application timer:
 * on_timer fires once |deadline| (on the endpoint's clock) has passed.
 * UVQ_TSTAMP_MAX disarms it; a new deadline replaces the old one. The timer
 * shares the endpoint's timer heap, so drivers need nothing extra.
 */
UVQ_EXTERN void uvq_conn_set_app_timer(uvq_conn *conn, uvq_tstamp deadline);

/**
 * uvq_conn_get_now returns the endpoint's time: inside a callback, the
 * |now| of the endpoint call it runs in (callbacks are not given the time;
 * this is what to base uvq_conn_set_app_timer deadlines on); outside, the
 * latest |now| the endpoint was given.
 */
UVQ_EXTERN uvq_tstamp uvq_conn_get_now(uvq_conn *conn);

/**
 * uvq_conn_update_key starts a key update (RFC 9001 §6) on an established
 * connection. Returns 0, UVQ_ERR_INVALID_STATE (handshake not confirmed or
 * an update still in progress) or UVQ_ERR_CLOSED.
 *
 * |now|: nanoseconds on the endpoint's monotonic clock (uv_hrtime() under
 * the libuv adapter); it should never go back (see
 * uvq_endpoint_stats.clock_backwards).
 */
UVQ_EXTERN int uvq_conn_update_key(uvq_conn *conn, uvq_tstamp now);

/**
 * uvq_conn_migrate moves client connection |conn| to the local address
 * |new_local| (the peer's address stays). The driver must be able to send
 * from |new_local| and deliver what arrives there (the libuv adapter:
 * uvq_uv_conn_migrate opens the socket).
 *
 * With |nat_rebinding_style| 0 this is active migration (RFC 9000 §9.2):
 * the connection probes the new path with PATH_CHALLENGE under a fresh
 * connection ID, keeps using the old path until the peer answered, then
 * switches and retires the old ID. Nonzero behaves like a NAT rebinding:
 * packets leave from |new_local| at once with the same connection ID and
 * the server validates the new path itself; until a packet arrives at
 * |new_local|, packets still arriving at the old address are taken as if
 * they had arrived at the new one (so our acknowledgements tell the server
 * where we are even when we have nothing else to send). Either way the
 * transfer goes on; uvq_conn_get_info's path follows the switch.
 *
 * Call it outside |conn|'s own callbacks (from a timer or another
 * handle): it drives ngtcp2, which is not re-entrant. It fires no
 * callback; the driver flushes afterwards, as after any API call.
 *
 * Returns 0; UVQ_ERR_INVALID_ARGUMENT (a NULL argument, a server
 * connection, |new_local| is the current local address or of another
 * family); UVQ_ERR_INVALID_STATE (handshake not confirmed; for active
 * migration also: the server disabled it, or it gave us no spare
 * connection ID yet);
 * UVQ_ERR_CLOSED; or UVQ_ERR_NOMEM.
 *
 * |now|: nanoseconds on the endpoint's monotonic clock (uv_hrtime() under
 * the libuv adapter); it should never go back (see
 * uvq_endpoint_stats.clock_backwards).
 */
UVQ_EXTERN int uvq_conn_migrate(uvq_conn *conn, const uvq_addr *new_local,
                                int nat_rebinding_style, uvq_tstamp now);

/**
 * uvq_conn_send_datagram queues an unreliable DATAGRAM (RFC 9221): copied,
 * sent ahead of stream data when congestion control allows, never
 * retransmitted. If |pid| is not NULL it receives the DATAGRAM's id, which
 * on_datagram_acked or on_datagram_lost report later (one of them, or lost
 * then acked when the loss was spurious; neither for a DATAGRAM still
 * queued when the connection closes, and see on_datagram_lost for a gap in
 * ngtcp2's loss reporting).
 * Returns 0, UVQ_ERR_INVALID_STATE (handshake not done, or the peer does
 * not accept DATAGRAM frames), UVQ_ERR_INVALID_ARGUMENT (|len| above
 * uvq_conn_get_max_datagram_size), UVQ_ERR_QUEUE_FULL, UVQ_ERR_CLOSED or
 * UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_conn_send_datagram(uvq_conn *conn, const uint8_t *data,
                                      size_t len, uint64_t *pid);

/**
 * uvq_conn_get_max_datagram_size returns the largest payload
 * uvq_conn_send_datagram takes now (0 if DATAGRAM cannot be used): bounded
 * by the peer's max_datagram_frame_size and by what fits in a minimum-size
 * QUIC packet, so it never depends on the path MTU.
 */
UVQ_EXTERN size_t uvq_conn_get_max_datagram_size(uvq_conn *conn);

/**
 * uvq_conn_open_stream opens a new stream (|bidi| nonzero: bidirectional)
 * with |stream_user_data| and writes its id to *pstream_id.
 *
 * Before the handshake completes it works on a client attempting 0-RTT
 * (uvq_connect_params.early_data), within the stream limits the server
 * granted in the earlier connection — such streams are discarded if the
 * server refuses the early data (on_early_data_rejected) — and on a server
 * from on_accept on (0.5-RTT data, e.g. answers to 0-RTT requests).
 *
 * Returns 0, UVQ_ERR_STREAM_LIMIT if the peer's limit is reached (retry in
 * on_streams_available), UVQ_ERR_INVALID_STATE before the handshake
 * completes (without 0-RTT), UVQ_ERR_CLOSED, or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_conn_open_stream(uvq_conn *conn, int bidi,
                                    int64_t *pstream_id,
                                    void *stream_user_data);

/**
 * uvq_stream_write copies up to |len| bytes of |data| into the stream's send
 * buffer (bounded by settings.stream_send_buffer) and returns how many it
 * took; if fewer than |len|, on_stream_writable fires when room opens. |fin|
 * ends the stream once every byte given so far is sent; it takes effect only
 * if all |len| bytes were accepted. len 0 with |fin| just ends the stream.
 * The library keeps the data until the peer acknowledges it.
 *
 * Returns the count (>= 0), or UVQ_ERR_STREAM_NOT_FOUND, UVQ_ERR_STREAM_SHUT,
 * UVQ_ERR_CLOSED, UVQ_ERR_NOMEM.
 */
UVQ_EXTERN ssize_t uvq_stream_write(uvq_conn *conn, int64_t stream_id,
                                    const uint8_t *data, size_t len, int fin);

/**
 * uvq_stream_reset abandons the stream's send side with RESET_STREAM
 * carrying |app_error|; unsent and unacknowledged data is dropped.
 * Returns 0, UVQ_ERR_STREAM_NOT_FOUND, UVQ_ERR_INVALID_ARGUMENT (the
 * peer's unidirectional stream: no send side), UVQ_ERR_CLOSED or
 * UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_stream_reset(uvq_conn *conn, int64_t stream_id,
                                uint64_t app_error);

/**
 * uvq_stream_stop_sending asks the peer to stop sending on the stream
 * (STOP_SENDING with |app_error|); further data is discarded.
 * Returns 0, UVQ_ERR_STREAM_NOT_FOUND, UVQ_ERR_INVALID_ARGUMENT (our own
 * unidirectional stream: no receive side), UVQ_ERR_CLOSED or
 * UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_stream_stop_sending(uvq_conn *conn, int64_t stream_id,
                                       uint64_t app_error);

/**
 * uvq_stream_is_early returns nonzero if any of the stream's data arrived
 * in 0-RTT packets (replayable: RFC 9001 §9.2), 0 otherwise or for an
 * unknown stream.
 */
UVQ_EXTERN int uvq_stream_is_early(uvq_conn *conn, int64_t stream_id);

/** Per-stream user data. Returns 0 or UVQ_ERR_STREAM_NOT_FOUND. */
UVQ_EXTERN int uvq_stream_set_user_data(uvq_conn *conn, int64_t stream_id,
                                        void *stream_user_data);
/** The stream's user data (uvq_stream_set_user_data, or what
 * uvq_conn_open_stream was given); NULL for an unknown stream. */
UVQ_EXTERN void *uvq_stream_get_user_data(uvq_conn *conn, int64_t stream_id);

/**
 * uvq_stream_get_buffered returns the bytes the stream holds that the peer
 * has not acknowledged yet (0 for an unknown stream).
 */
UVQ_EXTERN size_t uvq_stream_get_buffered(uvq_conn *conn, int64_t stream_id);

/**
 * uvq_stream_get_acked returns how many bytes of the stream's send side the
 * peer has acknowledged, counted from its first byte up to the first one
 * not yet acknowledged (bytes acknowledged past a gap count once the gap
 * is filled). If |pfin_acked| is not NULL it is set to nonzero once the
 * peer has acknowledged every byte written and the FIN after them: the
 * whole stream was delivered. A stream reset before that, by either side,
 * or a connection that ended first never gets there.
 *
 * Usable while the stream is known: in its on_stream_closed and in the
 * connection's on_closed too (an access log reads it there). Returns 0,
 * with *pfin_acked 0, for an unknown stream.
 */
UVQ_EXTERN uint64_t uvq_stream_get_acked(uvq_conn *conn, int64_t stream_id,
                                         int *pfin_acked);

/**
 * uvq_stream_get_send_room returns how many bytes uvq_stream_write would
 * take on the stream now (the least of its buffer, the peer's credit plus
 * the lookahead, and the connection's and the endpoint's budgets; see
 * stream_send_buffer, conn_send_budget and endpoint_send_budget), 0 for an
 * unknown or finished stream. A writer that
 * reads its data from elsewhere (a file) asks first, so that it reads no
 * more than the peer can take; when it gets 0, on_stream_writable fires
 * once there is room.
 */
UVQ_EXTERN size_t uvq_stream_get_send_room(uvq_conn *conn, int64_t stream_id);

/**
 * uvq_conn_recv_hold tells the library the application now holds |n| more
 * bytes it received on |conn| and has not finished with (a partial header,
 * a request line still being read, a reassembly buffer of its own);
 * uvq_conn_recv_release, that it let |n| of them go (never more than it
 * reported). They count against settings.conn_recv_budget and
 * endpoint_recv_budget: while a budget is reached, the connection's reads
 * pause (flow-control credit is withheld) and resume once the holders
 * release enough. Call them from the endpoint's thread, in callbacks or
 * outside; a hold still reported when the connection closes is dropped
 * with it. NULL |conn| is a no-op.
 */
UVQ_EXTERN void uvq_conn_recv_hold(uvq_conn *conn, size_t n);
/** uvq_conn_recv_release returns |n| bytes held with uvq_conn_recv_hold to the
 * budgets; flow-control credit withheld for them is given back. */
UVQ_EXTERN void uvq_conn_recv_release(uvq_conn *conn, size_t n);

/**
 * uvq_stream_write_ref is uvq_stream_write without the copy: the stream
 * keeps a reference to the |len| bytes at |data|, which must stay valid and
 * unchanged until free_cb(data, ud) is called. That happens exactly once,
 * when the peer has acknowledged every one of the bytes, or when the stream
 * or the connection is closed with some still unacknowledged (data in flight
 * at close is never reported acknowledged), whichever comes first. free_cb
 * may run from inside any call that processes the connection (reading a
 * datagram, a timer, closing, freeing the endpoint); it must not call
 * uvquic functions.
 *
 * The reference is taken whole or not at all: while the stream's
 * unacknowledged bytes are below settings.stream_send_buffer it is taken
 * (counting against the buffer, which may overshoot by at most this one
 * write, so the caller bounds memory by the size of what it hands over);
 * otherwise nothing is taken, 0 is returned, on_stream_writable fires when
 * room opens and |data| stays the caller's. |fin| applies only if the bytes
 * were taken. len 0 keeps no reference (free_cb is not called): it is
 * uvq_stream_write(conn, stream_id, NULL, 0, fin).
 *
 * Returns |len|, 0, or UVQ_ERR_INVALID_ARGUMENT (NULL |data| or |free_cb|
 * with len > 0), UVQ_ERR_STREAM_NOT_FOUND, UVQ_ERR_STREAM_SHUT,
 * UVQ_ERR_CLOSED, UVQ_ERR_NOMEM. On any error free_cb is never called.
 */
UVQ_EXTERN ssize_t uvq_stream_write_ref(uvq_conn *conn, int64_t stream_id,
                                        const uint8_t *data, size_t len,
                                        int fin,
                                        void (*free_cb)(void *ptr, void *ud),
                                        void *ud);

/* ------------------------------------------------------------------------ */
/* Wakers                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * uvq_conn_waker returns a new reference to |conn|'s waker, or NULL on
 * allocation failure. Any thread may uvq_waker_wake() it; each reference
 * must be dropped with uvq_waker_release(). After the connection closed,
 * waking is a harmless no-op.
 */
UVQ_EXTERN uvq_waker *uvq_conn_waker(uvq_conn *conn);

/**
 * uvq_waker_wake marks the connection for on_wake and calls the endpoint's
 * wake hook (so the driver calls uvq_endpoint_process_wakes on its thread).
 * Thread-safe.
 */
UVQ_EXTERN void uvq_waker_wake(uvq_waker *w);

/** uvq_waker_release drops one reference. Thread-safe. */
UVQ_EXTERN void uvq_waker_release(uvq_waker *w);

/* ------------------------------------------------------------------------ */
/* Endpoint                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * A batch of datagrams for the driver to send: |datalen| bytes at |data|
 * holding consecutive datagrams of |segment_size| bytes each (the last may
 * be shorter) — exactly what UDP GSO takes. All go on |path| with |ecn|.
 */
typedef struct uvq_send_batch {
  const uvq_path *path; /**< The path: our address and the destination. */
  uint8_t ecn;          /**< ECN codepoint to set (UVQ_ECN_*). */
  const uint8_t *data;  /**< The datagrams, back to back; valid during the send
                           call only. */
  size_t datalen;       /**< Bytes in |data|. */
  size_t segment_size;  /**< Size of each datagram but the last. */
  /** Number of datagrams: ceil(datalen / segment_size). */
  size_t count;
} uvq_send_batch;

/** Facts about a new server connection, for on_accept. */
typedef struct uvq_accept_info {
  const uint8_t
      *alpn; /**< The ALPN the client chose from ours, not NUL-terminated. */
  size_t alpnlen; /**< Length of |alpn|. */
  /** SNI, NUL-terminated, or NULL if the client sent none. */
  const char *server_name;
  uint32_t version;     /**< The QUIC version negotiated. */
  const uvq_path *path; /**< The client's path. */
  /** Nonzero if the client's address was validated by a token. */
  int address_validated;
  /** Nonzero if the client resumed a session from one of our tickets. */
  int resumed;
  /**
   * Nonzero if we accepted the client's 0-RTT data: stream data may arrive
   * before the handshake completes, and it may be a replay.
   */
  int early_data;
} uvq_accept_info;

/**
 * The current version of uvq_endpoint_config. 2 added rand, 3 cid_shard
 * and cid_shard_set, 4 path_mtu; an older config is read without the later
 * fields.
 */
#define UVQ_ENDPOINT_CONFIG_VERSION 4

/** Largest uvq_settings.max_udp_payload_size (RFC 9000 §18.2). */
#define UVQ_MAX_UDP_PAYLOAD 65527

/**
 * Ceiling of uvq_settings.max_udp_payload_size 0 (auto) on a link whose
 * MTU allows more (loopback). Measured on loopback (bench/output.sh, 100
 * MiB): 16384-byte datagrams took 0.09 s against 0.15 s for 1452-byte
 * ones, and 32768 or 60000 gained nothing more; larger datagrams also lose
 * more to one drop, and need larger kernel allocations.
 */
#define UVQ_UDP_PAYLOAD_AUTO_MAX 16384

/** Shards a server's CIDs can name: the five low bits of the first octet
 * (uvq_endpoint_config.cid_shard). */
#define UVQ_MAX_CID_SHARDS 32

/**
 * uvq_endpoint_config describes an endpoint: a server (accepts) or a client
 * (connects; one client endpoint carries any number of connections).
 */
typedef struct uvq_endpoint_config {
  int version;   /**< UVQ_ENDPOINT_CONFIG_VERSION (set by
                    uvq_endpoint_config_default). */
  int is_server; /**< Nonzero for a server (accepts), 0 for a client (connects).
                  */
  /** NULL = uvq_settings_default(). Copied. */
  const uvq_settings *settings;
  /** Required; must outlive the endpoint. */
  uvq_tls_ctx *tls;
  /** NULL = libc. Must outlive the endpoint. */
  const uvq_mem *mem;
  void *user_data; /**< Passed to every endpoint callback. */

  /**
   * Required. Send the batch |b|. Return how many datagrams were taken
   * (0..b->count; fewer means "blocked, call flush again when writable"),
   * or a negative value: the first datagram cannot be sent at all (it is
   * dropped and counted; loss recovery resends its contents).
   */
  ssize_t (*send)(uvq_endpoint *ep, const uvq_send_batch *b, void *user_data);
  /**
   * Optional. Called from any thread by uvq_waker_wake, with the waker
   * lock held: it must only signal the endpoint's thread (uv_async_send,
   * a write to an eventfd...), never call into uvquic; the driver then
   * runs uvq_endpoint_process_wakes on the endpoint's thread.
   */
  void (*wake)(uvq_endpoint *ep, void *user_data);
  /**
   * Required. Wall-clock seconds since the epoch; used only for token issue
   * and expiry (tokens must survive restarts and hosts).
   */
  uint64_t (*wall_time)(uvq_endpoint *ep, void *user_data);
  /**
   * Server: required. A new connection finished processing the client's
   * ClientHello (ALPN, SNI and peer known) and nothing has been delivered
   * yet. Set *pcallbacks (must stay valid for the connection's life) and
   * *pconn_user_data and return 0, or return a negative value to refuse it
   * (CONNECTION_REFUSED; no app callback fires for it).
   */
  int (*on_accept)(uvq_endpoint *ep, uvq_conn *conn,
                   const uvq_accept_info *info,
                   const uvq_app_callbacks **pcallbacks, void **pconn_user_data,
                   void *user_data);
  /**
   * (version >= 2) Optional: where the endpoint's own randomness comes
   * from — connection IDs, the static secret and token key when settings
   * give none, token nonces, hash-table keys, ngtcp2's rand callback, the
   * greased Version Negotiation entry, stateless reset padding. Fill
   * |dest| with |len| random bytes and return 0 (nonzero fails the
   * operation that asked); |key| is nonzero when the bytes become a secret
   * key. NULL (default): GnuTLS's generator (gnutls_rnd, GNUTLS_RND_KEY
   * for keys, GNUTLS_RND_NONCE otherwise). Only tests should replace it: a
   * seeded generator makes a run repeat itself (except the TLS stack's own
   * randomness, which GnuTLS does not let anyone replace), and a
   * predictable one makes connection IDs and tokens guessable. Runs on
   * the endpoint's thread.
   */
  int (*rand)(uint8_t *dest, size_t len, int key, void *user_data);
  /**
   * (version >= 3) Server, with cid_shard_set nonzero: every connection ID
   * the endpoint issues (random or QUIC-LB) carries |cid_shard| (0..31) in
   * the low five bits of its first octet, so a driver running several
   * endpoints on one address (the libuv adapter's shards) can tell from a
   * packet's DCID which one owns it. Those bits are the ones QUIC-LB
   * leaves to the server when it does not self-encode the CID length, and
   * are never encrypted. cid_shard_set 0 (default): no such bits.
   * uvq_endpoint_new fails with UVQ_ERR_INVALID_ARGUMENT for a shard of 32
   * or more, and with a settings.quic_lb that self-encodes the CID length
   * (encode_len: those bits are the length then).
   */
  unsigned cid_shard;
  int cid_shard_set; /**< Nonzero if cid_shard is set. */
  /**
   * (version >= 4) Optional: the MTU (bytes of IP packet) of the link a
   * connection on |path| starts on — the interface that holds
   * path->local — or 0 if the driver does not know it. Called once as
   * each connection is created, on the endpoint's thread; it must not call
   * into uvquic. It bounds path MTU discovery (see
   * uvq_settings.max_udp_payload_size). NULL (default): unknown, so
   * discovery stops at 1452 bytes unless max_udp_payload_size says more.
   */
  size_t (*path_mtu)(uvq_endpoint *ep, const uvq_path *path, void *user_data);
} uvq_endpoint_config;

/** uvq_endpoint_config_default zeroes |cfg| and sets its version. */
UVQ_EXTERN void uvq_endpoint_config_default(uvq_endpoint_config *cfg);

/**
 * uvq_endpoint_new creates an endpoint. |now| is the current time.
 * Returns 0 and sets *pep, or UVQ_ERR_INVALID_ARGUMENT (missing callback,
 * cid_len out of 8..20, ...) or UVQ_ERR_NOMEM.
 */
UVQ_EXTERN int uvq_endpoint_new(uvq_endpoint **pep,
                                const uvq_endpoint_config *cfg);

/**
 * uvq_endpoint_del frees |ep| and every connection it still holds, without
 * sending anything and without firing callbacks. Use
 * uvq_endpoint_close_all and wait for uvq_endpoint_conn_count() == 0 first
 * for a graceful end.
 */
UVQ_EXTERN void uvq_endpoint_del(uvq_endpoint *ep);

/** The endpoint's user data (uvq_endpoint_config.user_data). */
UVQ_EXTERN void *uvq_endpoint_get_user_data(uvq_endpoint *ep);
/** The allocator the endpoint uses (never NULL), for apps layered on it. */
UVQ_EXTERN const uvq_mem *uvq_endpoint_get_mem(uvq_endpoint *ep);
/** Nonzero if |ep| is a server endpoint. */
UVQ_EXTERN int uvq_endpoint_is_server(uvq_endpoint *ep);
/** The endpoint's settings (a copy; valid until uvq_endpoint_del). */
UVQ_EXTERN const uvq_settings *uvq_endpoint_get_settings(uvq_endpoint *ep);

/** The largest buffer uvq_buf_get hands out: 64 KiB and 48 bytes. */
#define UVQ_BUF_MAX (65536 + 48)

/**
 * uvq_buf_get takes a buffer of at least |size| bytes (1..UVQ_BUF_MAX) from
 * the buffer pool of |ep|, the one its connections' send buffers come
 * from: an application layer that reads data into a buffer and hands it to
 * uvq_stream_write_ref (as HTTP/3 does with body providers) then draws on
 * the same cache and the same counters (uvq_endpoint_stats pool_*). The
 * caller owns the buffer until it gives it back with uvq_buf_put, which it
 * may do after uvq_endpoint_del (the pool lives until its last buffer is
 * back). Same thread as the endpoint; may be called from its callbacks.
 *
 * Returns the buffer, or NULL if |size| is 0 or over UVQ_BUF_MAX or memory
 * ran out.
 */
UVQ_EXTERN void *uvq_buf_get(uvq_endpoint *ep, size_t size);

/**
 * uvq_buf_put gives back |buf| (from uvq_buf_get) to its pool, which caches
 * or frees it. NULL is a no-op. The thread of the endpoint it came from.
 */
UVQ_EXTERN void uvq_buf_put(void *buf);

/** What an ICMP / ICMPv6 error said about a datagram we sent. */
typedef enum uvq_icmp_kind {
  /** Port unreachable: nothing listens at the destination. */
  UVQ_ICMP_PORT_UNREACHABLE = 1,
  /** Host, network or address unreachable, or administratively
   * prohibited. */
  UVQ_ICMP_HOST_UNREACHABLE = 2
} uvq_icmp_kind;

/**
 * uvq_endpoint_recv_icmp reports an ICMP / ICMPv6 error the driver read
 * from its socket's error queue (IP_RECVERR / IPV6_RECVERR) for a datagram
 * it had sent to |remote|. ICMP is unauthenticated (RFC 9000 §14.2.1), so
 * it is counted (uvq_endpoint_stats.icmp_errors) and acted on only by a
 * client, and only for a connection whose current peer is |remote| and
 * that has received nothing from it yet: that connection ends at once
 * with UVQ_ERR_PORT_UNREACHABLE or UVQ_ERR_HOST_UNREACHABLE (origin
 * UVQ_CLOSE_PEER, no CONNECTION_CLOSE sent; on_closed fires from the next
 * flush) and is counted in icmp_closed. A server never closes on one.
 *
 * Returns 0, or UVQ_ERR_INVALID_ARGUMENT.
 */
UVQ_EXTERN int uvq_endpoint_recv_icmp(uvq_endpoint *ep,
                                      const struct sockaddr *remote,
                                      uvq_icmp_kind kind, uvq_tstamp now);

/**
 * uvq_endpoint_recv processes one received buffer: a single datagram
 * (|segment_size| 0 or >= |len|) or a GRO super-buffer of |segment_size|-byte
 * datagrams (the last may be shorter). |path| is the datagram's local and
 * remote address; |ecn| its ECN codepoint. Connections it touches are
 * marked for the next uvq_endpoint_flush. Packets that cannot be used are
 * dropped and counted by reason (uvq_endpoint_get_stats).
 *
 * May fire on_accept and any app callback. Returns 0, or
 * UVQ_ERR_INVALID_ARGUMENT.
 *
 * |now|: nanoseconds on the endpoint's monotonic clock (uv_hrtime() under
 * the libuv adapter); it should never go back (see
 * uvq_endpoint_stats.clock_backwards).
 */
UVQ_EXTERN int uvq_endpoint_recv(uvq_endpoint *ep, const uvq_path *path,
                                 uint8_t ecn, const uint8_t *data, size_t len,
                                 size_t segment_size, uvq_tstamp now);

/** Returned by uvq_endpoint_flush when the send callback pushed back. */
#define UVQ_FLUSH_BLOCKED 1

/**
 * uvq_endpoint_flush sends queued stateless replies, then lets every marked
 * connection write once, through the send callback. Connections whose
 * on_closed is due get it here.
 *
 * Returns 0 when everything was sent, UVQ_FLUSH_BLOCKED if the send callback
 * took fewer datagrams than offered (call again when the socket is
 * writable; nothing is lost), or a negative error.
 *
 * |now|: nanoseconds on the endpoint's monotonic clock (uv_hrtime() under
 * the libuv adapter); it should never go back (see
 * uvq_endpoint_stats.clock_backwards).
 */
UVQ_EXTERN int uvq_endpoint_flush(uvq_endpoint *ep, uvq_tstamp now);

/**
 * uvq_endpoint_next_expiry returns when uvq_endpoint_handle_expiry should
 * next be called, or UVQ_TSTAMP_MAX if no timer is armed.
 */
UVQ_EXTERN uvq_tstamp uvq_endpoint_next_expiry(uvq_endpoint *ep);

/**
 * uvq_endpoint_handle_expiry runs every timer due at |now| (loss recovery,
 * idle and handshake timeouts, closing periods) and marks the connections
 * that must write. Call uvq_endpoint_flush afterwards. Returns 0.
 *
 * |now|: nanoseconds on the endpoint's monotonic clock (uv_hrtime() under
 * the libuv adapter); it should never go back (see
 * uvq_endpoint_stats.clock_backwards).
 */
UVQ_EXTERN int uvq_endpoint_handle_expiry(uvq_endpoint *ep, uvq_tstamp now);

/**
 * uvq_endpoint_process_wakes runs on_wake for every connection whose waker
 * was signalled. Call on the endpoint's thread, then flush. Returns 0.
 */
UVQ_EXTERN int uvq_endpoint_process_wakes(uvq_endpoint *ep);

/** The current version of uvq_connect_params. */
#define UVQ_CONNECT_PARAMS_VERSION 1

/** Per-connection parameters for uvq_endpoint_connect. */
typedef struct uvq_connect_params {
  int version; /**< UVQ_CONNECT_PARAMS_VERSION (set by
                  uvq_connect_params_default). */
  /** SNI and the name the certificate is verified against. May be NULL. */
  const char *server_name;
  /** Local and remote address of the new connection. Required. */
  const uvq_path *path;
  const uvq_app_callbacks *
      callbacks; /**< The application; required; must outlive the connection. */
  void *user_data; /**< The connection's user data, passed to its callbacks. */
  /**
   * A token from on_new_token of an earlier connection, or NULL. A server
   * honours a token only in an Initial of the QUIC version the connection
   * that got it started in (RFC 9369 §5); another version's token is
   * treated as absent (counted in tokens_rejected[VERSION]). It is not
   * sent again after Version Negotiation.
   */
  const uint8_t *token;
  size_t tokenlen; /**< Length of |token|. */
  /**
   * A blob from on_session_ticket of an earlier connection to the same
   * server, or NULL: the handshake resumes that session (no certificate
   * exchange). Copied; the server may still refuse and do a full handshake.
   * Tickets are per QUIC version (RFC 9369 §5): the blob records the
   * version its connection started in (settings.client_chosen_version, or
   * the one Version Negotiation led to), and this connection starts in
   * that version instead of settings.client_chosen_version when
   * settings.quic_versions has it. A blob of a version not in
   * quic_versions is not used (counted in
   * uvq_endpoint_stats.resumption_version_mismatch; no 0-RTT either): the
   * connection goes on with a full handshake. A server refuses a ticket
   * issued on another version than the Initial carrying it the same way.
   */
  const uint8_t *resumption;
  size_t resumptionlen; /**< Length of |resumption|. */
  /**
   * With |resumption|: attempt 0-RTT, if the ticket in it grants early
   * data (the server's NewSessionTicket carried the early_data extension;
   * RFC 8446 §4.2.10 forbids offering it otherwise). Then
   * uvq_conn_info.early_data is UVQ_EARLY_DATA_ATTEMPTED as soon as
   * uvq_endpoint_connect returns, uvq_conn_open_stream and
   * uvq_stream_write work at once, and what is written before the
   * handshake completes goes out as early data; uvq_conn_info.early_data
   * and on_early_data_rejected tell whether it arrived. With a ticket that
   * grants none (or a blob from before uvquic recorded it), early_data
   * stays UVQ_EARLY_DATA_NONE: the session resumes in 1-RTT, and streams
   * open once the handshake completes.
   */
  int early_data;
} uvq_connect_params;

/** uvq_connect_params_default zeroes |p| and sets its version. */
UVQ_EXTERN void uvq_connect_params_default(uvq_connect_params *p);

/**
 * uvq_endpoint_connect starts a client connection on a client endpoint. The
 * handshake begins at the next flush; on_established or on_closed reports
 * how it went. The callbacks must stay valid for the connection's life.
 *
 * Returns 0 and sets *pconn (may be NULL), or UVQ_ERR_INVALID_ARGUMENT (a
 * server endpoint, no path, a resumption blob that does not parse),
 * UVQ_ERR_SHUTDOWN, UVQ_ERR_CONNECTION_LIMIT, UVQ_ERR_NOMEM, UVQ_ERR_TLS.
 *
 * |now|: nanoseconds on the endpoint's monotonic clock (uv_hrtime() under
 * the libuv adapter); it should never go back (see
 * uvq_endpoint_stats.clock_backwards).
 */
UVQ_EXTERN int uvq_endpoint_connect(uvq_endpoint *ep,
                                    const uvq_connect_params *params,
                                    uvq_tstamp now, uvq_conn **pconn);

/**
 * uvq_endpoint_close_all closes every connection with |app_error| (use 0,
 * NO_ERROR, for a graceful shutdown) and, for servers, stops accepting:
 * new Initials are answered with CONNECTION_REFUSED. Call flush afterwards.
 */
UVQ_EXTERN void uvq_endpoint_close_all(uvq_endpoint *ep, uint64_t app_error,
                                       const char *reason);

/**
 * uvq_endpoint_reload_keys puts |keys| (uvq_keys_parse) into the running
 * server endpoint |ep| as a restart with them would, without touching a
 * connection: a token key that differs from the current one becomes
 * current (the current one stays accepted as the previous), the reset
 * secret is used for connection IDs issued from now on, and the session
 * ticket keys are derived again from the endpoint's TLS context (so call
 * uvq_tls_ctx_reload with keys->ticket_key first). |keys| NULL: only the
 * ticket keys are derived again. Not from inside one of |ep|'s callbacks.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (not a server endpoint),
 * UVQ_ERR_INVALID_STATE (inside a callback), UVQ_ERR_NOMEM or
 * UVQ_ERR_INTERNAL; on error nothing has changed.
 */
UVQ_EXTERN int uvq_endpoint_reload_keys(uvq_endpoint *ep, const uvq_keys *keys);

/**
 * uvq_endpoint_stop_accepting makes a server endpoint refuse new
 * connections (new Initials are answered with CONNECTION_REFUSED, as after
 * uvq_endpoint_close_all) while the connections it holds go on: the first
 * step of a graceful shutdown. There is no way back.
 */
UVQ_EXTERN void uvq_endpoint_stop_accepting(uvq_endpoint *ep);

/**
 * uvq_endpoint_conn_count returns the connections the endpoint still holds,
 * including those in their closing or draining period.
 */
UVQ_EXTERN size_t uvq_endpoint_conn_count(uvq_endpoint *ep);

/**
 * uvq_endpoint_rotate_token_key makes |key| the key that seals new tokens;
 * the previous key is still accepted for verification until the next
 * rotation. Returns 0 or UVQ_ERR_INVALID_ARGUMENT.
 */
UVQ_EXTERN int uvq_endpoint_rotate_token_key(uvq_endpoint *ep,
                                             const uint8_t *key, size_t keylen);

/** Why the endpoint dropped a datagram or packet without using it. */
typedef enum uvq_drop_reason {
  /** Too short to hold any QUIC header. */
  UVQ_DROP_TRUNCATED = 0,
  /** A header that does not parse (bad fixed bit, bad lengths). */
  UVQ_DROP_MALFORMED,
  /** Short header with a DCID no connection owns. */
  UVQ_DROP_UNKNOWN_CID,
  /** A long header of another version in a datagram too small for VN. */
  UVQ_DROP_UNSUPPORTED_VERSION,
  /** An Initial in a datagram smaller than 1200 bytes. */
  UVQ_DROP_INITIAL_TOO_SMALL,
  /** A long-header packet other than Initial for an unknown connection. */
  UVQ_DROP_UNEXPECTED_LONG,
  /** 0-RTT for an unknown connection (never answered with Retry). */
  UVQ_DROP_0RTT_UNKNOWN,
  /** A client endpoint got a packet for no connection of its own. */
  UVQ_DROP_CLIENT_UNKNOWN,
  /** The connection's stack rejected the packet (decrypt failure, ...). */
  UVQ_DROP_CONN_REJECTED,
  /** The connection is draining and takes nothing more. */
  UVQ_DROP_DRAINING,
  /** The stateless reply queue was full. */
  UVQ_DROP_STATELESS_QUEUE_FULL,
  /** The send callback refused a datagram with an error. */
  UVQ_DROP_SEND_ERROR,
  /** A new connection could not be created (allocation, TLS). */
  UVQ_DROP_ACCEPT_FAILED,
  UVQ_DROP_REASON_COUNT
} uvq_drop_reason;

/** Why a token was rejected. */
typedef enum uvq_token_reject_reason {
  UVQ_TOKEN_REJECT_MALFORMED = 0,
  UVQ_TOKEN_REJECT_DECRYPT,
  UVQ_TOKEN_REJECT_EXPIRED,
  UVQ_TOKEN_REJECT_ADDRESS,
  UVQ_TOKEN_REJECT_VERSION,
  UVQ_TOKEN_REJECT_REASON_COUNT
} uvq_token_reject_reason;

/**
 * Why a connection ended before its handshake completed
 * (uvq_endpoint_stats.handshake_failures), from its close info.
 */
typedef enum uvq_handshake_failure {
  /** UVQ_ERR_HANDSHAKE_TIMEOUT or UVQ_ERR_IDLE_TIMEOUT. */
  UVQ_HS_FAIL_TIMEOUT = 0,
  /** A TLS alert either way (UVQ_ERR_TLS_ALERT, UVQ_ERR_CERT_VERIFY). */
  UVQ_HS_FAIL_TLS_ALERT,
  /** CONNECTION_REFUSED either way (UVQ_ERR_REFUSED, _PEER_REFUSED). */
  UVQ_HS_FAIL_REFUSED,
  /** The server speaks none of our versions (client side). */
  UVQ_HS_FAIL_VERSION_NEGOTIATION,
  /** The server closed with INVALID_TOKEN (client side). */
  UVQ_HS_FAIL_INVALID_TOKEN,
  /** Anything else: an application close, a local TLS or protocol
   *  error, a stateless reset, an allocation failure. */
  UVQ_HS_FAIL_OTHER,
  UVQ_HS_FAIL_REASON_COUNT
} uvq_handshake_failure;

/**
 * Buckets of the handshake-duration histogram
 * (uvq_endpoint_stats.handshake_time): upper bounds 0.5, 1, 2.5, 5, 10, 25,
 * 50, 100, 250, 500 ms, 1, 2.5, 5, 10 s, and a last bucket for anything
 * longer. uvq_handshake_time_bucket_le() gives the bounds.
 */
#define UVQ_HANDSHAKE_TIME_BUCKETS 15

/** Endpoint counters (uvq_endpoint_get_stats). */
typedef struct uvq_endpoint_stats {
  uint64_t datagrams_received;  /**< UDP datagrams received (every one given to
                                   uvq_endpoint_recv). */
  uint64_t datagrams_sent;      /**< UDP datagrams the send callback took. */
  uint64_t bytes_received;      /**< Bytes of those datagrams received. */
  uint64_t bytes_sent;          /**< Bytes of those datagrams sent. */
  uint64_t connections_current; /**< Connections now open (a gauge). */
  uint64_t
      connections_total; /**< Connections created since the endpoint was. */
  uint64_t handshakes_in_flight; /**< Server connections whose handshake is
                                    still running (a gauge). */
  uint64_t
      initials_accepted;     /**< Server: Initials that created a connection. */
  uint64_t initials_refused; /**< Server: Initials refused with
                                CONNECTION_REFUSED, for any reason. */
  uint64_t retries_sent;     /**< Server: Retry packets sent. */
  uint64_t version_negotiations_sent; /**< Server: Version Negotiation packets
                                         sent. */
  uint64_t stateless_closes_sent; /**< Server: CONNECTION_CLOSEs sent without a
                                     connection (refusals, INVALID_TOKEN). */
  uint64_t
      handshake_timeouts; /**< Connections ended by the handshake timeout. */
  uint64_t idle_timeouts; /**< Connections ended by the idle timeout. */
  uint64_t send_blocked;  /**< Times the send callback took fewer datagrams than
                             offered. */
  /**
   * Connections closed with UVQ_ERR_PATH_STALLED (a CONNECTION_CLOSE went
   * out with the peer's next datagram), those ended silently because no
   * datagram came to carry it, and connections closed with
   * UVQ_ERR_STALLED.
   */
  uint64_t paths_stalled;
  uint64_t paths_stalled_dropped;          /**< See paths_stalled. */
  uint64_t stalls;                         /**< See paths_stalled. */
  uint64_t dropped[UVQ_DROP_REASON_COUNT]; /**< Received packets dropped, by
                                              reason (uvq_drop_reason_name). */
  uint64_t tokens_rejected
      [UVQ_TOKEN_REJECT_REASON_COUNT]; /**< Server: address-validation tokens
                                          refused, by reason. */
  uint64_t new_tokens_sent;            /**< Server: NEW_TOKEN tokens sent. */
  uint64_t datagrams_app_sent;         /**< DATAGRAM frames sent. */
  uint64_t datagrams_app_received;     /**< DATAGRAM frames received. */
  /** Handshakes that completed; each is also in handshake_time. */
  uint64_t handshakes_completed;
  /**
   * Connections that ended before their handshake completed, by reason.
   * Initials answered statelessly (Retry, VN, INVALID_TOKEN, refusals for
   * max_connections or shutdown) made no connection and are not here; see
   * the counters above for them.
   */
  uint64_t handshake_failures[UVQ_HS_FAIL_REASON_COUNT];
  /**
   * Handshake durations (from the connection's creation to handshake
   * completion on this endpoint's clock), per bucket, not cumulative: a
   * duration d lands in the first bucket i with d <= bound(i).
   */
  uint64_t handshake_time[UVQ_HANDSHAKE_TIME_BUCKETS];
  /** Sum of those durations (ns). */
  uint64_t handshake_time_sum;
  /**
   * GSO fallbacks the driver reported with uvq_endpoint_add_gso_fallbacks
   * (the core never sees the socket, so it cannot count them itself).
   */
  uint64_t gso_fallbacks;
  /**
   * Stateless resets sent in answer to short-header packets for unknown
   * connections (each such packet is also counted as dropped unknown_cid).
   */
  uint64_t stateless_resets_sent;
  /** Resets not sent because the rate limit's bucket was empty. */
  uint64_t stateless_resets_suppressed;
  /**
   * Unroutable datagrams whose last 16 bytes matched the stateless-reset
   * token of one of our connections' peers: handed to that connection,
   * which then ends with UVQ_ERR_STATELESS_RESET.
   */
  uint64_t stateless_resets_received;
  /**
   * The send-buffer pool (settings.send_buffer_cache): buffers taken from
   * its cache, buffers allocated because the cache had none, and buffers
   * freed because the cache was full...
   */
  uint64_t pool_hits;
  uint64_t pool_misses;   /**< See pool_hits. */
  uint64_t pool_released; /**< See pool_hits. */
  /** ... and now: the bytes cached, and the buffers connections hold
   * (and their bytes). */
  uint64_t pool_cached_bytes;
  uint64_t pool_outstanding;       /**< See pool_cached_bytes. */
  uint64_t pool_outstanding_bytes; /**< See pool_cached_bytes. */
  /** Stream writes cut short because their connection's send budget
   * (settings.conn_send_budget) was spent. */
  uint64_t send_budget_pushbacks;
  /** Initials refused (CONNECTION_REFUSED) for max_handshakes, for their
   * source's max_handshakes_per_source, and for its
   * max_connections_per_source; also in initials_refused. */
  uint64_t refused_handshakes;
  uint64_t refused_source_handshakes;  /**< See refused_handshakes. */
  uint64_t refused_source_connections; /**< See refused_handshakes. */
  /**
   * Calls whose |now| was older than one the endpoint had already been
   * given: each ran at the newer time instead (ngtcp2 requires that time
   * never goes backwards). Nonzero means the driver's clock is not
   * monotonic, or that it mixes clocks.
   */
  uint64_t clock_backwards;
  /**
   * Client: Version Negotiation packets its connections acted on (each
   * either starts the connection over in another version or ends it with
   * UVQ_ERR_VERSION_NEGOTIATION). The server's count is
   * version_negotiations_sent.
   */
  uint64_t version_negotiations_received;
  /**
   * Handshakes completed in a version other than the one the client's
   * first Initial used (compatible version negotiation, RFC 9368 §2.3);
   * also in handshakes_by_version.
   */
  uint64_t compatible_upgrades;
  /** Handshakes completed, by negotiated version: [0] v1, [1] v2. */
  uint64_t handshakes_by_version[2];
  /**
   * Client: resumption data (uvq_connect_params.resumption) not used
   * because it came from a connection started in another QUIC version
   * than this one (RFC 9369 §5): the connection goes on without it.
   */
  uint64_t resumption_version_mismatch;
  /** Bytes all connections hold in their send buffers now (gauge; what
   * settings.endpoint_send_budget limits). */
  uint64_t send_buffered_bytes;
  /** Received bytes the application layers hold now, all connections
   * (gauge; what settings.endpoint_recv_budget limits). */
  uint64_t recv_held_bytes;
  /** Stream writes cut short because settings.endpoint_send_budget was
   * spent (those for conn_send_budget are send_budget_pushbacks). */
  uint64_t endpoint_send_budget_pushbacks;
  /** Times a connection's reads paused for a receive budget. */
  uint64_t recv_budget_pauses;
  /** Server: idle connections closed to make room under memory pressure,
   * and new connections refused under it with no idle one to close (also
   * in initials_refused). */
  uint64_t evicted_idle;
  uint64_t refused_memory_pressure; /**< See evicted_idle. */
  /** ICMP / ICMPv6 unreachable errors reported (uvq_endpoint_recv_icmp). */
  uint64_t icmp_errors;
  /** Client connections closed because of one. */
  uint64_t icmp_closed;
  /** Server with QUIC-LB (uvq_settings.quic_lb, keyed): CIDs issued with
   * the unroutable config rotation codepoint 0b111 because every nonce of
   * the configuration was spent (draft-ietf-quic-load-balancers-21: the
   * balancer routes them by its 4-tuple fallback). Nonzero: rotate to a
   * new configuration (docs/deploy.md). */
  uint64_t quic_lb_unroutable_cids;
} uvq_endpoint_stats;

/** uvq_endpoint_get_stats copies the counters into |st|. */
UVQ_EXTERN void uvq_endpoint_get_stats(uvq_endpoint *ep,
                                       uvq_endpoint_stats *st);

/** uvq_drop_reason_name returns a short name for |r| ("unknown_cid"). */
UVQ_EXTERN const char *uvq_drop_reason_name(uvq_drop_reason r);

/* ------------------------------------------------------------------------ */
/* Raw mode                                                                 */
/* ------------------------------------------------------------------------ */

/* ngtcp2's types, declared without its header (for the raw-mode hook). */
struct ngtcp2_settings;
struct ngtcp2_transport_params;

/**
 * A raw connection (tokio-quiche's raw.rs): uvquic builds one connection —
 * TLS, callbacks, streams, timers, CIDs — but no router stands in front of
 * it: the caller feeds it every packet (uvq_raw_recv) and takes every
 * datagram out by hand (uvq_raw_write), on whatever transport it likes.
 * ngtcp2 cannot re-target an existing connection's callbacks (1.11 fixes
 * them and their user data at ngtcp2_conn_client_new / server_new, with no
 * setter), so raw mode creates the connection rather than adopting one.
 */
typedef struct uvq_raw uvq_raw;

/** The current version of uvq_raw_config. */
#define UVQ_RAW_CONFIG_VERSION 1

/** What uvq_raw_connect and uvq_raw_accept need: one connection without an
 * endpoint. */
typedef struct uvq_raw_config {
  int version; /**< UVQ_RAW_CONFIG_VERSION (set by uvq_raw_config_default). */
  /** NULL = defaults. Retry is never used in raw mode. */
  const uvq_settings *settings;
  /** Required (a server context for uvq_raw_accept, client for connect). */
  uvq_tls_ctx *tls;
  const uvq_mem
      *mem; /**< Allocator; NULL = libc. Must outlive the connection. */
  /** The connection's application and its user data. Required. */
  const uvq_app_callbacks *callbacks;
  void *conn_user_data; /**< Passed to the connection's callbacks. */
  /** Client: SNI and verification name. */
  const char *server_name;
  /**
   * Optional: edit ngtcp2's settings and transport parameters (pointers to
   * ngtcp2 1.x's ngtcp2_settings / ngtcp2_transport_params, as in
   * <ngtcp2/ngtcp2.h> of the ngtcp2 >= 1.11 uvquic was built with) just
   * before the connection is created. uvquic has filled them from
   * uvq_settings; what the hook leaves is what ngtcp2 gets, except that a
   * server's original_dcid (with original_dcid_present), retry_scid and
   * stateless_reset_token are set after it. Nonzero fails the creation with
   * UVQ_ERR_CALLBACK. A server's encoded parameters (with its
   * version_information) must fit in 256 bytes, what ngtcp2_crypto_gnutls
   * encodes them into: a larger set closes the connection in its first
   * Initial with INTERNAL_ERROR (UVQ_ERR_INTERNAL).
   */
  int (*hook)(struct ngtcp2_settings *settings,
              struct ngtcp2_transport_params *params, void *user_data);
  /** Wall-clock seconds (tokens); NULL = 0. */
  uint64_t (*wall_time)(void *user_data);
  void *user_data; /**< Passed to |hook| and |wall_time|. */
} uvq_raw_config;

/** uvq_raw_config_default zeroes |cfg| and sets its version. */
UVQ_EXTERN void uvq_raw_config_default(uvq_raw_config *cfg);

/**
 * uvq_raw_connect creates a raw client connection on |path|; its first
 * datagrams are ready for uvq_raw_write. Returns 0, or the errors of
 * uvq_endpoint_new / uvq_endpoint_connect, or UVQ_ERR_CALLBACK (hook).
 *
 * |now|: nanoseconds on the caller's monotonic clock, the same for every
 * call on this connection; it should never go back.
 */
UVQ_EXTERN int uvq_raw_connect(uvq_raw **praw, const uvq_raw_config *cfg,
                               const uvq_path *path, uvq_tstamp now);

/**
 * uvq_raw_accept creates a raw server connection from a client's first
 * Initial datagram |data| received on |path| (on_accept is implicit: the
 * config's callbacks serve it). Returns 0; UVQ_ERR_INVALID_ARGUMENT if
 * |data| is not an acceptable Initial (too short, of a version not in
 * settings.quic_versions...); or
 * the creation errors above.
 *
 * |now|: nanoseconds on the caller's monotonic clock, the same for every
 * call on this connection; it should never go back.
 */
UVQ_EXTERN int uvq_raw_accept(uvq_raw **praw, const uvq_raw_config *cfg,
                              const uvq_path *path, const uint8_t *data,
                              size_t len, uvq_tstamp now);

/**
 * uvq_raw_recv hands one received datagram straight to the connection (no
 * routing by CID). Returns 0, or UVQ_ERR_CLOSED once the connection is gone.
 *
 * |now|: nanoseconds on the caller's monotonic clock, the same for every
 * call on this connection; it should never go back.
 */
UVQ_EXTERN int uvq_raw_recv(uvq_raw *raw, const uvq_path *path, uint8_t ecn,
                            const uint8_t *data, size_t len, uvq_tstamp now);

/**
 * uvq_raw_write takes the next datagram the connection wants sent: copies
 * it into |buf| (|buflen| >= 1500) and its path into *ppath (may be NULL).
 * Returns its length, 0 when there is nothing to send now, or
 * UVQ_ERR_INVALID_ARGUMENT.
 *
 * |now|: nanoseconds on the caller's monotonic clock, the same for every
 * call on this connection; it should never go back.
 */
UVQ_EXTERN ssize_t uvq_raw_write(uvq_raw *raw, uint8_t *buf, size_t buflen,
                                 uvq_path *ppath, uvq_tstamp now);

/** Timers, as for an endpoint. */
UVQ_EXTERN uvq_tstamp uvq_raw_next_expiry(uvq_raw *raw);
/** uvq_raw_handle_expiry runs the connection's timers due at |now| (the
 * caller's monotonic clock, as for every call on this connection); call
 * uvq_raw_write afterwards. Returns 0 or a UVQ_ERR_* that ended the connection.
 */
UVQ_EXTERN int uvq_raw_handle_expiry(uvq_raw *raw, uvq_tstamp now);

/**
 * uvq_raw_get_conn returns the connection, or NULL once it is gone (after
 * on_closed and its closing or draining period): that is how the close is
 * observed without callbacks.
 */
UVQ_EXTERN uvq_conn *uvq_raw_get_conn(uvq_raw *raw);

/** uvq_raw_del frees |raw| and its connection without sending anything. */
UVQ_EXTERN void uvq_raw_del(uvq_raw *raw);

/* ------------------------------------------------------------------------ */
/* Observability                                                            */
/* ------------------------------------------------------------------------ */

/**
 * Live statistics of one connection (uvq_conn_get_stats). Three kinds:
 * ngtcp2's recovery state (measured by ngtcp2), what uvquic counts on its
 * own paths (exact), and the bandwidth estimator's output (inferred; see
 * docs/internals/metrics.md).
 */
typedef struct uvq_conn_stats {
  /* ngtcp2's view (ngtcp2_conn_info). Times in ns, sizes in bytes. */
  /** RTT of the latest sample, minimum, smoothed, and variance. */
  uint64_t latest_rtt;
  uint64_t min_rtt;      /**< Minimum RTT (ns). */
  uint64_t smoothed_rtt; /**< Smoothed RTT (ns). */
  uint64_t rttvar;       /**< RTT variance (ns). */
  /**
   * Congestion window, slow-start threshold (UINT64_MAX until the first
   * congestion event) and bytes sent but not yet acked or declared lost.
   * ngtcp2 1.x does not publish its delivery-rate sample or pacing rate:
   * max_bandwidth below is uvquic's own estimate of what the path carries.
   */
  uint64_t cwnd;
  uint64_t ssthresh;        /**< Slow-start threshold (bytes). */
  uint64_t bytes_in_flight; /**< Bytes in flight. */

  /* Counted by uvquic. */
  /** UDP payloads the send callback took for this connection. */
  uint64_t bytes_sent;
  uint64_t datagrams_sent; /**< Datagrams of those. */
  /** Datagrams routed to this connection (used or not). */
  uint64_t bytes_received;
  uint64_t datagrams_received; /**< Datagrams of those. */
  /**
   * Stream payload bytes handed to ngtcp2 for the first time
   * (retransmissions are ngtcp2's and not counted), acknowledged by the
   * peer, and delivered to us in order.
   */
  uint64_t stream_bytes_sent;
  uint64_t stream_bytes_acked;    /**< Stream bytes the peer acknowledged. */
  uint64_t stream_bytes_received; /**< Stream bytes delivered to us in order. */
  /** From creation to handshake completion (ns); 0 until it completes. */
  uint64_t handshake_duration;

  /* The bandwidth estimator (inferred). */
  /**
   * Largest per-round min(stream ack rate, stream send rate) over the last
   * settings.bw_window_rounds rounds of one smoothed RTT (bytes/s of
   * stream payload): the goodput the path has recently shown it carries.
   */
  uint64_t max_bandwidth;
  /** Rounds the estimator has finished. */
  uint64_t bw_rounds;
  /**
   * Packets carrying STREAM data that ngtcp2's loss detection declared
   * lost, summed over every stream the connection has had (ngtcp2 1.11
   * publishes no connection-level loss count, only
   * ngtcp2_conn_get_stream_loss_count: a packet counts once per stream it
   * carried, spurious losses included; lost packets without STREAM frames
   * are not seen).
   */
  uint64_t stream_packets_lost;
  /**
   * stream_packets_lost during the estimator's window divided by
   * datagrams sent during it: an inferred loss rate, 0..~1.
   */
  double loss;
} uvq_conn_stats;

/**
 * uvq_conn_get_stats fills |st| with |conn|'s live statistics. It may be
 * called at any time, from any callback of the connection, including
 * on_closed. It fires no callback. Returns 0, or UVQ_ERR_INVALID_ARGUMENT
 * if an argument is NULL.
 */
UVQ_EXTERN int uvq_conn_get_stats(uvq_conn *conn, uvq_conn_stats *st);

/**
 * uvq_conn_get_max_udp_payload returns the largest UDP payload |conn| now
 * sends on its current path: 1200 until path MTU discovery confirms more,
 * at most the ceiling uvq_settings.max_udp_payload_size gives. 0 if |conn|
 * is NULL.
 */
UVQ_EXTERN size_t uvq_conn_get_max_udp_payload(uvq_conn *conn);

/** uvq_handshake_failure_name returns a short name ("tls_alert"). */
UVQ_EXTERN const char *uvq_handshake_failure_name(uvq_handshake_failure r);

/**
 * uvq_handshake_time_bucket_le returns bucket |i|'s upper bound in ns
 * (UVQ_TSTAMP_MAX for the last one and for |i| out of range).
 */
UVQ_EXTERN uint64_t uvq_handshake_time_bucket_le(size_t i);

/**
 * uvq_endpoint_add_gso_fallbacks adds |n| to the endpoint's gso_fallbacks
 * counter. Drivers call it when the kernel refuses UDP GSO and they fall
 * back to one datagram per message (the libuv adapter does); the core has
 * no socket of its own to notice.
 */
UVQ_EXTERN void uvq_endpoint_add_gso_fallbacks(uvq_endpoint *ep, uint64_t n);

/**
 * uvq_endpoint_add_send_errors counts |n| datagrams as dropped with
 * UVQ_DROP_SEND_ERROR. For drivers that take datagrams (the send callback
 * returned them as taken, so the core counted them sent) and only later
 * learn that the kernel refused them — the libuv adapter's send queue.
 */
UVQ_EXTERN void uvq_endpoint_add_send_errors(uvq_endpoint *ep, uint64_t n);

/**
 * uvq_endpoint_write_prometheus writes the endpoint's counters in the
 * Prometheus text exposition format (version 0.0.4) into |buf|, always
 * NUL-terminated when |len| > 0: HELP and TYPE lines, counters named
 * PREFIX_..._total, drops, token rejections and handshake failures with
 * a "reason" label, and the handshake-duration histogram in seconds
 * (_bucket{le=...}, _sum, _count). |prefix| NULL means "uvquic". Give
 * shards distinct prefixes, or sum their uvq_endpoint_stats yourself.
 *
 * Returns the length of the whole text (without the NUL), like snprintf:
 * if it is >= |len| the text was cut; call again with a larger buffer
 * (|buf| may be NULL with |len| 0 to measure). Returns
 * UVQ_ERR_INVALID_ARGUMENT if |ep| is NULL or |prefix| is not a valid
 * metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
 */
UVQ_EXTERN ssize_t uvq_endpoint_write_prometheus(uvq_endpoint *ep, char *buf,
                                                 size_t len,
                                                 const char *prefix);

#ifdef __cplusplus
}
#endif

#endif /* UVQUIC_H */
