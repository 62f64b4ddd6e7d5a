/* Internal error helpers. */
#ifndef UVQ_CORE_ERROR_H
#define UVQ_CORE_ERROR_H

#include <stddef.h>

/* uvq_set_errbuf formats a one-line description into |errbuf| (if not
 * NULL), for API calls that report which file or setting failed. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void uvq_set_errbuf(char *errbuf, size_t errbuflen, const char *fmt, ...);

#endif
