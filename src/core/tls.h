/* TLS layer: a GnuTLS context shared by many QUIC connections, and the
 * GnuTLS sessions the connection code drives through ngtcp2_crypto. */
#ifndef UVQ_CORE_TLS_H
#define UVQ_CORE_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <gnutls/gnutls.h>

#include "uvquic/uvquic.h"

/* GnuTLS 3.7 limits on ALPN (lib/ext/alpn.h): at most 8 protocols of at
 * most 31 bytes each; gnutls_alpn_set_protocols fails beyond that. */
#define UVQ_TLS_MAX_ALPN 8
#define UVQ_TLS_MAX_ALPN_NAME 31

struct uvq_tls_ctx {
  const uvq_mem *mem;
  int is_server;
  /* Client: verify nothing about the peer. */
  int insecure;
  gnutls_certificate_credentials_t cred;
  /* Parsed once; every session shares it (gnutls_priority_set). */
  gnutls_priority_t prio;
  /* ALPN list, most preferred first; each data is a uvq_mem copy. */
  gnutls_datum_t alpn[UVQ_TLS_MAX_ALPN];
  size_t alpnlen;
  /* uvq_tls_config.keylog and its user data, or NULL: no key log. */
  void (*keylog)(const char *line, size_t len, void *user_data);
  void *keylog_user_data;
  /* PEM of our own (leaf) certificate, NUL-terminated, or NULL. */
  char *cert_pem;
  size_t cert_pemlen;
  /* uvq_tls_config.hook, run by the connection once its session exists. */
  int (*hook)(uvq_conn *conn, struct gnutls_session_int *session,
              void *user_data);
  void *hook_user_data;
  /* Server: the session-ticket master key (uvq_tls_config.ticket_key, or
   * gnutls_session_ticket_key_generate; endpoints derive theirs from it),
   * and two anti-replay contexts for 0-RTT: one that records ClientHellos
   * and refuses duplicates, one that records nothing (settings.anti_replay
   * off; GnuTLS refuses early data without any anti-replay context). */
  gnutls_datum_t ticket_key;
  gnutls_anti_replay_t anti_replay;
  gnutls_anti_replay_t anti_replay_off;
  struct uvq_replay_db *replay_db;
  /* Credentials uvq_tls_ctx_reload replaced: sessions made before may
   * still use them, so they are freed with the context. */
  struct uvq_tls_retired *retired;
};

/* uvq_tls_ctx_is_server returns nonzero if |ctx| was made for servers. */
int uvq_tls_ctx_is_server(const uvq_tls_ctx *ctx);

/*
 * uvq_tls_session_new creates a GnuTLS session for one QUIC connection on
 * |ctx|'s side (server or client): early data enabled, the context's
 * priority cache and credentials, its ALPN list, the ngtcp2_crypto QUIC
 * hooks, and (client) SNI plus peer verification against |server_name|
 * unless the context is insecure. IP literals are not sent as SNI
 * (RFC 6066) and are verified against the certificate's iPAddress SANs.
 * |server_name| may be NULL (client: chain-only verification; server:
 * ignored).
 *
 * The caller owns *psession and must set its session pointer to an
 * ngtcp2_crypto_conn_ref (gnutls_session_set_ptr) before the first
 * handshake call. tls.c owns the session's db pointer (gnutls_db_set_ptr):
 * it points at |ctx|, which must outlive the session.
 *
 * Returns 0, UVQ_ERR_NOMEM, or UVQ_ERR_TLS.
 */
int uvq_tls_session_new(uvq_tls_ctx *ctx, gnutls_session_t *psession,
                        const char *server_name);

/* Session options for uvq_tls_session_new_opts. */
#define UVQ_TLS_SESSION_EARLY_DATA 0x1u  /* accept (client: offer) 0-RTT */
#define UVQ_TLS_SESSION_ANTI_REPLAY 0x2u /* refuse replayed ClientHellos */
/* Client: the qlog guard (qlog_guard.h). The session gets uvquic's own
 * QUIC glue instead of ngtcp2_crypto_gnutls_configure_client_session's:
 * the same secret, handshake-read and alert functions, and a
 * quic_transport_parameters (0x39) handler that refuses a server's set
 * whose qlog rendering would overflow ngtcp2 1.11's 1024-byte buffer
 * before handing the set to ngtcp2 (ngtcp2 decodes and logs it in the
 * same call; GnuTLS keeps one handler per extension and session, so ours
 * replaces ngtcp2's rather than wrapping it). The refusal sets the
 * ngtcp2 TLS error NGTCP2_ERR_TRANSPORT_PARAM (the packet's read fails
 * with it) and uvq_tls_session_tp_refused. Ignored on server contexts. */
#define UVQ_TLS_SESSION_QLOG_GUARD 0x4u

/*
 * uvq_tls_session_new_opts is uvq_tls_session_new with options |opts|
 * (UVQ_TLS_SESSION_*). A client offers 0-RTT only with
 * UVQ_TLS_SESSION_EARLY_DATA, and then whenever it resumes: GnuTLS does
 * not check that the ticket grants early data, the caller must. Every
 * server session
 * issues session tickets under the context's ticket key; with
 * UVQ_TLS_SESSION_EARLY_DATA the tickets allow 0-RTT (max_early_data_size
 * 0xffffffff, RFC 9001 §4.6.1) and 0-RTT is accepted, subject to the
 * anti-replay check if UVQ_TLS_SESSION_ANTI_REPLAY is set.
 * uvq_tls_session_new uses both options.
 */
int uvq_tls_session_new_opts(uvq_tls_ctx *ctx, gnutls_session_t *psession,
                             const char *server_name, unsigned int opts);

/*
 * uvq_tls_session_new_ex is uvq_tls_session_new_opts with the key a server
 * session encrypts and decrypts tickets with: |ticket_key| (64 bytes, from
 * uvq_tls_ctx_derive_ticket_key; copied by GnuTLS), or NULL for the
 * context's master key itself.
 */
int uvq_tls_session_new_ex(uvq_tls_ctx *ctx, gnutls_session_t *psession,
                           const char *server_name, unsigned int opts,
                           const gnutls_datum_t *ticket_key);

/*
 * uvq_tls_ctx_derive_ticket_key derives a ticket key from the server
 * context's master key and |info| (HKDF-SHA256): the endpoint passes a
 * hash of the limits 0-RTT relies on, so tickets issued under other limits
 * no longer decrypt. Returns 0, UVQ_ERR_INVALID_STATE (not a server
 * context) or UVQ_ERR_INTERNAL.
 */
int uvq_tls_ctx_derive_ticket_key(const uvq_tls_ctx *ctx, const uint8_t *info,
                                  size_t infolen,
                                  uint8_t out[UVQ_TICKET_KEYLEN]);

/*
 * uvq_tls_session_configure applies everything uvq_tls_session_new does
 * except the QUIC hooks to an existing |session| created with the side
 * matching |ctx|. Exposed so tests can run the same configuration over
 * plain TLS. Returns 0, UVQ_ERR_NOMEM, or UVQ_ERR_TLS.
 */
int uvq_tls_session_configure(uvq_tls_ctx *ctx, gnutls_session_t session,
                              const char *server_name);

/* uvq_tls_session_tp_refused returns nonzero if the qlog guard of
 * |session| (UVQ_TLS_SESSION_QLOG_GUARD) refused the server's transport
 * parameters; NULL gives 0. */
int uvq_tls_session_tp_refused(gnutls_session_t session);

/* uvq_tls_session_del frees |session| (NULL is a no-op). */
void uvq_tls_session_del(gnutls_session_t session);

/*
 * uvq_tls_session_get_alpn points *p / *len at the negotiated ALPN, which
 * lives as long as the session. Returns 0, or UVQ_ERR_INVALID_STATE if no
 * protocol is negotiated yet.
 */
int uvq_tls_session_get_alpn(gnutls_session_t s, const uint8_t **p,
                             size_t *len);

/*
 * uvq_tls_session_get_sni copies the server name the client sent (server
 * side) into |buf| as a NUL-terminated string. Returns 0,
 * UVQ_ERR_INVALID_STATE if there is none, or UVQ_ERR_INVALID_ARGUMENT if
 * |buf| is too small.
 */
int uvq_tls_session_get_sni(gnutls_session_t s, char *buf, size_t buflen);

/* uvq_tls_ctx_get_cert_pem is public: see uvquic.h. */

#endif
