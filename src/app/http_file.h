/*
 * http_file: the HTTP semantics of serving static files, shared by the
 * HTTP/3 side of uvquic-server and by hq-interop, so both protocols decode,
 * resolve and type a path the same way:
 *
 *   - request targets: percent-decoding, query and fragment dropped;
 *   - resolution beneath a uvq_fileserve root: directories, index.html,
 *     the trailing-slash redirect, an optional HTML listing;
 *   - media types from a mime.types(5) file, with a built-in fallback;
 *   - validators (Last-Modified, a strong ETag from size and mtime) and the
 *     conditional and range request headers (RFC 9110 §13, §14).
 *
 * Everything but uvq_http_resolve and uvq_http_autoindex is pure parsing
 * (no I/O), so the fuzz harnesses in fuzz/ drive it directly.
 */
#ifndef UVQ_APP_HTTP_FILE_H
#define UVQ_APP_HTTP_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "app/fileserve.h"

/* ---- request targets ---------------------------------------------------- */

/**
 * uvq_http_decode_path turns the request target |target| (|len| bytes, e.g.
 * "/a%20b/c.txt?x=1#f") into a NUL-terminated file path in |out|: the query
 * and fragment are dropped, %XX escapes decoded. It refuses (returns -1) a
 * target that does not start with '/', an invalid escape ("%g0", "%2"), an
 * encoded '/' ("%2F": it would name a different resource than the one the
 * client's path segments name), a NUL (literal or %00), and a path that
 * does not fit |outlen| bytes. Returns the decoded length otherwise.
 */
int uvq_http_decode_path(const char *target, size_t len, char *out,
                         size_t outlen);

/**
 * uvq_http_path_has_dotdot returns nonzero if the decoded path |path| has a
 * ".." segment. Run on the decoded path: "%2e%2e" is "..".
 */
int uvq_http_path_has_dotdot(const char *path);

/* ---- resolution --------------------------------------------------------- */

typedef enum uvq_http_resolve_status {
  /** A regular file: fd and st are set; |path| names the file served
   * (index.html for a directory). */
  UVQ_HTTP_FILE = 0,
  /** A directory asked for without its trailing slash: answer 308 with
   * Location = the target's path + "/" (+ the query, if any). */
  UVQ_HTTP_REDIRECT,
  /** A directory with no index.html, and listings allowed: fd is the
   * directory (uvq_http_autoindex). */
  UVQ_HTTP_LISTING,
  /** 400: the target does not decode (uvq_http_decode_path). */
  UVQ_HTTP_BAD_REQUEST,
  /** 403: ".." segment, a path leaving the root, a special file. */
  UVQ_HTTP_FORBIDDEN,
  /** 404: no such file, or a directory with no index.html. */
  UVQ_HTTP_NOT_FOUND,
  /** 500: an I/O error. */
  UVQ_HTTP_ERROR
} uvq_http_resolve_status;

/** Flags for uvq_http_resolve. */
/** A directory without index.html is listed (UVQ_HTTP_LISTING), not 404. */
#define UVQ_HTTP_AUTOINDEX 0x1
/** A directory named without its trailing slash is served as if it had one
 * (for protocols that cannot redirect: hq-interop). */
#define UVQ_HTTP_NO_REDIRECT 0x2

typedef struct uvq_http_resolved {
  /** FILE, LISTING: owned by the caller afterwards (close it). */
  int fd;
  /** FILE, LISTING: the fstat of fd. */
  struct stat st;
  /** The decoded path (FILE: of the file served, index.html included). */
  char path[4096];
  /** REDIRECT: the Location value. */
  char location[4096];
} uvq_http_resolved;

/**
 * uvq_http_resolve finds what request target |target| (|len| bytes) names
 * beneath |fs|. On FILE and LISTING the caller owns res->fd; on every other
 * status nothing is left open.
 */
uvq_http_resolve_status uvq_http_resolve(uvq_fileserve *fs, const char *target,
                                         size_t len, unsigned int flags,
                                         uvq_http_resolved *res);

/**
 * uvq_http_autoindex writes an HTML listing of directory |dirfd| (not
 * closed) whose decoded path is |path| to a malloc'd buffer: *pbuf, *plen.
 * Names are sorted, HTML-escaped in the text and percent-encoded in the
 * links; dot files are left out. Returns 0, or -1 (errno set).
 */
int uvq_http_autoindex(int dirfd, const char *path, char **pbuf, size_t *plen);

/**
 * uvq_http_html_escape copies |src| to |dst| (|dstlen| bytes, NUL-terminated)
 * with &, <, >, " and ' as character references. Returns the length it
 * needed (as snprintf: a result >= dstlen means it was cut).
 */
size_t uvq_http_html_escape(char *dst, size_t dstlen, const char *src);

/* ---- media types -------------------------------------------------------- */

/** Debian's media-types table. */
#define UVQ_MIME_TYPES_PATH "/etc/mime.types"

typedef struct uvq_mime_entry {
  const char *ext;
  /** The Content-Type value, "; charset=utf-8" appended for text. */
  const char *type;
} uvq_mime_entry;

typedef struct uvq_mime_table {
  uvq_mime_entry *entries;
  size_t n;
  /* Where ext and type point. */
  char *strings;
} uvq_mime_table;

/**
 * uvq_mime_table_parse reads mime.types(5) text (|len| bytes): one media
 * type per line followed by its extensions, '#' comments. For an extension
 * listed twice the first line wins. Types are lower-cased; extensions are
 * matched without regard to case. Lines that are not "type/subtype ext..."
 * are skipped. Returns 0 (the table, possibly empty) or -1 (out of memory);
 * free with uvq_mime_table_free.
 */
int uvq_mime_table_parse(uvq_mime_table *t, const char *text, size_t len);

/**
 * uvq_mime_table_load parses the file |path|. Returns 0, or -1 with a
 * message in |errbuf| if it cannot be read (the table is then empty).
 */
int uvq_mime_table_load(uvq_mime_table *t, const char *path, char *errbuf,
                        size_t errbuflen);

void uvq_mime_table_free(uvq_mime_table *t);

/**
 * uvq_mime_type returns the Content-Type of file |path| by its extension:
 * from |t| (may be NULL or empty), else from a built-in list of the types a
 * browser needs (html, css, js, json, svg, png, ...), else
 * "application/octet-stream".
 */
const char *uvq_mime_type(const uvq_mime_table *t, const char *path);

/* ---- validators and conditional requests -------------------------------- */

/** "Sun, 06 Nov 1994 08:49:37 GMT" plus NUL. */
#define UVQ_HTTP_DATE_LEN 30

/** uvq_http_format_date writes |t| as an IMF-fixdate to |buf|. */
void uvq_http_format_date(time_t t, char buf[UVQ_HTTP_DATE_LEN]);

/**
 * uvq_http_parse_date parses an HTTP-date (|len| bytes) in any of the three
 * forms of RFC 9110 §5.6.7 (IMF-fixdate, RFC 850, asctime). Returns 0 and
 * sets *pt, or -1.
 */
int uvq_http_parse_date(const char *s, size_t len, time_t *pt);

/** '"' 16 hex '-' 16 hex '-' 8 hex '"' plus NUL. */
#define UVQ_HTTP_ETAG_LEN 48

/**
 * uvq_http_etag writes the strong entity tag of a file with |st|'s size and
 * modification time (to the nanosecond). Not the inode, so hosts serving
 * the same files agree.
 */
void uvq_http_etag(const struct stat *st, char buf[UVQ_HTTP_ETAG_LEN]);

/**
 * uvq_http_etag_match returns nonzero if the If-None-Match / If-Match style
 * list |list| (|len| bytes: "*" or comma-separated entity tags) holds
 * |etag|: by weak comparison if |weak| (W/ ignored), else strong (a W/ tag
 * never matches). A malformed list matches nothing.
 */
int uvq_http_etag_match(const char *list, size_t len, const char *etag,
                        int weak);

typedef enum uvq_http_range_status {
  /** No usable Range: serve the whole file (absent, not "bytes=", several
   * ranges, or malformed — RFC 9110 §14.2 lets a server ignore those). */
  UVQ_RANGE_NONE = 0,
  /** One satisfiable range: *poff, *plen. */
  UVQ_RANGE_OK,
  /** A valid range that does not overlap the file: 416. */
  UVQ_RANGE_UNSATISFIABLE
} uvq_http_range_status;

/**
 * uvq_http_parse_range evaluates the Range header |s| (|len| bytes) against
 * a file of |size| bytes: "bytes=a-b", "bytes=a-", "bytes=-n" (one range).
 */
uvq_http_range_status uvq_http_parse_range(const char *s, size_t len,
                                           uint64_t size, uint64_t *poff,
                                           uint64_t *plen);

/** The request header fields that decide a file response; NULL = absent. */
typedef struct uvq_http_conditions {
  const char *if_none_match;
  size_t if_none_match_len;
  const char *if_modified_since;
  size_t if_modified_since_len;
  const char *range;
  size_t range_len;
  const char *if_range;
  size_t if_range_len;
} uvq_http_conditions;

/** What to answer for a file (uvq_http_evaluate). */
typedef struct uvq_http_plan {
  /** 200, 206, 304 or 416. */
  unsigned int status;
  /** 200, 206: the bytes to send. */
  uint64_t offset;
  uint64_t length;
} uvq_http_plan;

/**
 * uvq_http_evaluate applies |c| to a file with |st| (size, mtime) and
 * entity tag |etag| for a GET or HEAD, in RFC 9110 §13.2.2's order:
 * If-None-Match (weak comparison; If-Modified-Since is then ignored), else
 * If-Modified-Since → 304; then Range, honoured only if If-Range (an
 * entity tag compared strongly, or a date equal to Last-Modified) holds →
 * 206 or 416; else 200 for the whole file.
 */
void uvq_http_evaluate(const uvq_http_conditions *c, const struct stat *st,
                       const char *etag, uvq_http_plan *plan);

#endif
