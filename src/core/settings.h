/*
 * Versioned copies of the application's structs (settings.c).
 */
#ifndef UVQ_CORE_SETTINGS_H
#define UVQ_CORE_SETTINGS_H

#include "uvquic/uvquic.h"

/* settings.c: copies the application's |src| into |dst| by its version:
 * a version-1 struct (an older header) gives its fields and defaults for
 * the ones added since. Returns 0 or UVQ_ERR_INVALID_ARGUMENT (a version
 * this library does not know). */
int uvq_settings_copy(uvq_settings *dst, const uvq_settings *src);
/* Nonzero if |cb| is a table of a version this library reads. */
int uvq_app_callbacks_ok(const uvq_app_callbacks *cb);

#endif
