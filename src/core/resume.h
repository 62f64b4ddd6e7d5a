/*
 * Resumption blobs (resume.c): client session data and the server's
 * 0-RTT transport parameters.
 */
#ifndef UVQ_CORE_RESUME_H
#define UVQ_CORE_RESUME_H

#include "core/core.h"

/* Client: builds the resumption blob (TLS session data and the server's
 * 0-RTT transport parameters) into *pblob, freed with uvq_free. */
int uvq_resume_encode(uvq_conn *conn, uint8_t **pblob, size_t *plen);
/* Client, before the handshake starts: resumes from |blob|, and with
 * |early_data|, if the blob's ticket grants early data, prepares 0-RTT
 * (conn->early_data becomes UVQ_EARLY_DATA_ATTEMPTED). Returns 0 or
 * UVQ_ERR_INVALID_ARGUMENT. */
int uvq_resume_apply(uvq_conn *conn, const uint8_t *blob, size_t len,
                     int early_data);
/* The QUIC version the connection that produced |blob| started in, or 0
 * if |blob| does not parse that far. */
uint32_t uvq_resume_version(const uint8_t *blob, size_t len);
/* Nonzero if |blob| parses far enough to say that its ticket grants early
 * data, and it does: the client's TLS session must offer early data only
 * then (it is created before uvq_resume_apply). */
int uvq_resume_grants_early_data(const uint8_t *blob, size_t len);

#endif
