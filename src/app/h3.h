/*
 * HTTP/3 over uvquic (nghttp3): internal declarations. The public API is
 * include/uvquic/uvquic_h3.h; see docs/internals/h3.md for the data path.
 */
#ifndef UVQ_APP_H3_H
#define UVQ_APP_H3_H

#include "uvquic/uvquic_h3.h"

/* Body bytes asked of a provider per read callback. */
#define UVQ_H3_PROVIDER_CHUNK (16 * 1024)
/* Body bytes of a buffer handed to nghttp3 per DATA frame. */
#define UVQ_H3_BUFFER_CHUNK (64 * 1024)
/* RFC 9114 §4.2.2: each field line costs name + value + 32 bytes. */
#define UVQ_H3_FIELD_OVERHEAD 32

#endif
