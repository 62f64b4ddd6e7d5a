/*
 * Guard against CVE-2026-40170 in unfixed ngtcp2 1.11 builds (Debian
 * bookworm-backports' 1.11.0-1~bpo12+1): its qlog writer renders a set of
 * transport parameters into a 1024-byte stack buffer without a bound
 * (ngtcp2_qlog_parameters_set_transport_params), and a server's set can be
 * longer than that. ngtcp2_version() says 1.11.0 for fixed and unfixed
 * builds alike, so uvquic cannot tell them apart and guards always: with
 * qlog on, a client refuses a server's set whose rendering would not fit,
 * before ngtcp2 decodes and logs it (tls.c, UVQ_TLS_SESSION_QLOG_GUARD).
 */
#ifndef UVQ_CORE_QLOG_GUARD_H
#define UVQ_CORE_QLOG_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <ngtcp2/ngtcp2.h>

/* The stack buffer ngtcp2 1.11 renders one set of parameters into. */
#define UVQ_QLOG_TP_BUFLEN 1024

/* The widest "time" ngtcp2 can write there: the milliseconds of the
 * largest ngtcp2_tstamp difference, UINT64_MAX ns / 10^6 (14 digits). */
#define UVQ_QLOG_TP_MAX_TIME_MS (UINT64_MAX / NGTCP2_MILLISECONDS)

/* The close reason of a refused set (CONNECTION_CLOSE and on_closed). */
#define UVQ_QLOG_TP_REASON                                                     \
  "transport parameters too large for ngtcp2's qlog (CVE-2026-40170)"

/*
 * uvq_qlog_tp_len returns the exact number of bytes ngtcp2 1.11 writes
 * into that buffer for |params| (the "transport:parameters_set" event,
 * from its record separator to its final newline): |server| is the
 * logging endpoint's side, |remote| whether |params| are the peer's, and
 * |time_ms| the event's "time" (the connection's qlog clock, in ms; pass
 * UVQ_QLOG_TP_MAX_TIME_MS for an upper bound). Mirrors ngtcp2_qlog.c of
 * 1.11.0 field by field; tests/test_qlog.c checks it against the bytes
 * the linked library writes.
 */
size_t uvq_qlog_tp_len(const ngtcp2_transport_params *params, int server,
                       int remote, uint64_t time_ms);

/*
 * uvq_qlog_tp_check decodes a client's received quic_transport_parameters
 * extension (|data|, |datalen|) and stores in *prendered the length of its
 * qlog rendering with the widest "time" (an upper bound, at most 13 bytes
 * over the exact length). Returns 0 if it fits in UVQ_QLOG_TP_BUFLEN bytes
 * or does not decode (ngtcp2 then refuses it itself, before logging
 * anything; *prendered is 0), -1 if it would overflow.
 */
int uvq_qlog_tp_check(const uint8_t *data, size_t datalen, size_t *prendered);

#endif
