/*
 * hq-interop is public API now: <uvquic/uvquic_hq.h>. This header stays for
 * the tools, which include it by its old name.
 */
#ifndef UVQ_APP_HQ_H
#define UVQ_APP_HQ_H

#include "uvquic/uvquic_hq.h"

#endif
