/* HTTP semantics of static files; see http_file.h. */
#include "app/http_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- request targets ---------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

int uvq_http_decode_path(const char *target, size_t len, char *out,
                         size_t outlen) {
  size_t i, o = 0;

  if (len == 0 || target[0] != '/' || outlen == 0) {
    return -1;
  }
  for (i = 0; i < len; ++i) {
    char ch = target[i];
    if (ch == '?' || ch == '#') {
      break;
    }
    if (ch == '%') {
      int hi, lo;
      if (len - i < 3) {
        return -1;
      }
      hi = hexval(target[i + 1]);
      lo = hexval(target[i + 2]);
      if (hi < 0 || lo < 0) {
        return -1;
      }
      ch = (char)(hi << 4 | lo);
      if (ch == '/') {
        return -1;
      }
      i += 2;
    }
    if (ch == '\0' || o + 1 >= outlen) {
      return -1;
    }
    out[o++] = ch;
  }
  out[o] = '\0';
  return o > INT32_MAX ? -1 : (int)o;
}

int uvq_http_path_has_dotdot(const char *path) {
  const char *p = path;

  for (;;) {
    const char *end = strchr(p, '/');
    size_t seglen = end ? (size_t)(end - p) : strlen(p);
    if (seglen == 2 && p[0] == '.' && p[1] == '.') {
      return 1;
    }
    if (end == NULL) {
      return 0;
    }
    p = end + 1;
  }
}

/* ---- resolution --------------------------------------------------------- */

static int join(char *dst, size_t dstlen, const char *a, size_t alen,
                const char *b) {
  size_t blen = strlen(b);

  if (alen + blen + 1 > dstlen) {
    return -1;
  }
  memmove(dst, a, alen);
  memcpy(dst + alen, b, blen + 1);
  return 0;
}

static uvq_http_resolve_status fs_status(uvq_fs_status fst) {
  switch (fst) {
  case UVQ_FS_NOT_FOUND:
    return UVQ_HTTP_NOT_FOUND;
  case UVQ_FS_FORBIDDEN:
    return UVQ_HTTP_FORBIDDEN;
  default:
    return UVQ_HTTP_ERROR;
  }
}

uvq_http_resolve_status uvq_http_resolve(uvq_fileserve *fs, const char *target,
                                         size_t len, unsigned int flags,
                                         uvq_http_resolved *res) {
  uvq_fs_status fst;
  struct stat ist;
  size_t plen;
  int n, ifd;

  res->fd = -1;
  res->location[0] = '\0';
  n = uvq_http_decode_path(target, len, res->path, sizeof(res->path));
  if (n < 0) {
    return UVQ_HTTP_BAD_REQUEST;
  }
  plen = (size_t)n;
  if (uvq_http_path_has_dotdot(res->path)) {
    return UVQ_HTTP_FORBIDDEN;
  }
  /* The path is relative to the root: drop exactly one leading '/', so
   * "//etc/passwd" asks for an absolute path, which the resolver refuses. */
  fst = uvq_fileserve_lookup(fs, res->path + 1, &res->fd, &res->st);
  if (fst == UVQ_FS_OK) {
    if (res->path[plen - 1] == '/') {
      /* "file/" is not a directory: as a POSIX path it does not resolve. */
      close(res->fd);
      res->fd = -1;
      return UVQ_HTTP_NOT_FOUND;
    }
    return UVQ_HTTP_FILE;
  }
  if (fst != UVQ_FS_DIRECTORY) {
    res->fd = -1;
    return fs_status(fst);
  }
  if (res->path[plen - 1] != '/' && !(flags & UVQ_HTTP_NO_REDIRECT)) {
    /* The path of the target as sent (escapes kept), a slash, the query. */
    const char *q = memchr(target, '?', len);
    const char *h = memchr(target, '#', len);
    size_t pathlen = q ? (size_t)(q - target) : len;
    size_t qlen;

    if (h != NULL && (size_t)(h - target) < pathlen) {
      pathlen = (size_t)(h - target);
    }
    qlen = q ? (size_t)((h && h > q ? h : target + len) - q) : 0;
    close(res->fd);
    res->fd = -1;
    if (pathlen + 1 + qlen + 1 > sizeof(res->location)) {
      return UVQ_HTTP_BAD_REQUEST;
    }
    memcpy(res->location, target, pathlen);
    res->location[pathlen] = '/';
    memcpy(res->location + pathlen + 1, q ? q : "", qlen);
    res->location[pathlen + 1 + qlen] = '\0';
    return UVQ_HTTP_REDIRECT;
  }
  /* index.html through the same resolver as any file: a symlink to it is
   * followed, or refused, as for any other file. */
  if (join(res->path, sizeof(res->path), res->path, plen,
           res->path[plen - 1] == '/' ? "index.html" : "/index.html") == 0) {
    uvq_fs_status ist_status =
        uvq_fileserve_lookup(fs, res->path + 1, &ifd, &ist);
    if (ist_status == UVQ_FS_OK) {
      close(res->fd);
      res->fd = ifd;
      res->st = ist;
      return UVQ_HTTP_FILE;
    }
    if (ist_status == UVQ_FS_DIRECTORY) {
      close(ifd);
    }
    res->path[plen] = '\0';
  }
  if (flags & UVQ_HTTP_AUTOINDEX) {
    return UVQ_HTTP_LISTING;
  }
  close(res->fd);
  res->fd = -1;
  return UVQ_HTTP_NOT_FOUND;
}

size_t uvq_http_html_escape(char *dst, size_t dstlen, const char *src) {
  size_t o = 0;

  for (; *src; ++src) {
    const char *rep = NULL;
    char one[2] = {*src, '\0'};
    size_t rlen;

    switch (*src) {
    case '&':
      rep = "&amp;";
      break;
    case '<':
      rep = "&lt;";
      break;
    case '>':
      rep = "&gt;";
      break;
    case '"':
      rep = "&quot;";
      break;
    case '\'':
      rep = "&#39;";
      break;
    default:
      rep = one;
    }
    rlen = strlen(rep);
    if (o + rlen < dstlen) {
      memcpy(dst + o, rep, rlen);
    }
    o += rlen;
  }
  if (dstlen > 0) {
    dst[o < dstlen ? o : dstlen - 1] = '\0';
  }
  return o;
}

/* A growing output buffer for the listing. */
typedef struct outbuf {
  char *p;
  size_t len, cap;
  int failed;
} outbuf;

static void out_add(outbuf *b, const char *s, size_t len) {
  if (b->failed) {
    return;
  }
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *np;
    while (b->len + len + 1 > cap) {
      cap *= 2;
    }
    np = realloc(b->p, cap);
    if (np == NULL) {
      b->failed = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, len);
  b->len += len;
  b->p[b->len] = '\0';
}

static void out_str(outbuf *b, const char *s) { out_add(b, s, strlen(s)); }

static void out_html(outbuf *b, const char *s) {
  char tmp[1024];
  size_t n = uvq_http_html_escape(tmp, sizeof(tmp), s);

  if (n >= sizeof(tmp)) {
    char *big = malloc(n + 1);
    if (big == NULL) {
      b->failed = 1;
      return;
    }
    uvq_http_html_escape(big, n + 1, s);
    out_add(b, big, n);
    free(big);
    return;
  }
  out_add(b, tmp, n);
}

/* Percent-encodes every byte outside RFC 3986's unreserved set. */
static void out_href(outbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";

  for (; *s; ++s) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out_add(b, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 0xf]};
      out_add(b, e, 3);
    }
  }
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int uvq_http_autoindex(int dirfd, const char *path, char **pbuf, size_t *plen) {
  outbuf b = {0};
  char **names = NULL;
  size_t n = 0, cap = 0, i;
  struct dirent *de;
  DIR *d;
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd < 0) {
    return -1;
  }
  d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -1;
  }
  while ((de = readdir(d)) != NULL) {
    struct stat sb;
    size_t nl;
    char *name;

    if (de->d_name[0] == '.') {
      continue;
    }
    if (n == cap) {
      char **nn = realloc(names, (cap ? cap * 2 : 32) * sizeof(*names));
      if (nn == NULL) {
        goto fail;
      }
      names = nn;
      cap = cap ? cap * 2 : 32;
    }
    nl = strlen(de->d_name);
    name = malloc(nl + 2);
    if (name == NULL) {
      goto fail;
    }
    memcpy(name, de->d_name, nl + 1);
    /* Directories end in '/', as their links must. */
    if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISDIR(sb.st_mode)) {
      name[nl] = '/';
      name[nl + 1] = '\0';
    }
    names[n++] = name;
  }
  closedir(d);
  d = NULL;
  if (n > 1) {
    qsort(names, n, sizeof(*names), name_cmp);
  }
  out_str(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
              "<title>Index of ");
  out_html(&b, path);
  out_str(&b, "</title></head>\n<body><h1>Index of ");
  out_html(&b, path);
  out_str(&b, "</h1>\n<ul>\n");
  for (i = 0; i < n; ++i) {
    size_t nl = strlen(names[i]);
    int dir = names[i][nl - 1] == '/';
    out_str(&b, "<li><a href=\"");
    if (dir) {
      names[i][nl - 1] = '\0';
    }
    out_href(&b, names[i]);
    if (dir) {
      out_str(&b, "/");
      names[i][nl - 1] = '/';
    }
    out_str(&b, "\">");
    out_html(&b, names[i]);
    out_str(&b, "</a></li>\n");
  }
  out_str(&b, "</ul>\n</body></html>\n");
  for (i = 0; i < n; ++i) {
    free(names[i]);
  }
  free(names);
  if (b.failed) {
    free(b.p);
    errno = ENOMEM;
    return -1;
  }
  *pbuf = b.p;
  *plen = b.len;
  return 0;

fail:
  for (i = 0; i < n; ++i) {
    free(names[i]);
  }
  free(names);
  if (d != NULL) {
    closedir(d);
  }
  free(b.p);
  errno = ENOMEM;
  return -1;
}

/* ---- media types -------------------------------------------------------- */

static const uvq_mime_entry builtin_types[] = {
    {"css", "text/css; charset=utf-8"},
    {"gif", "image/gif"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/vnd.microsoft.icon"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mp4", "video/mp4"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"svg", "image/svg+xml"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"webm", "video/webm"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xml", "text/xml; charset=utf-8"},
};

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* next_word skips the blanks from *pp on and returns the length of the word
 * found there (its start in *pstart, *pp after it): 0 at |eol| or a '#'. */
static size_t next_word(const char *text, size_t eol, size_t *pp,
                        size_t *pstart) {
  size_t p = *pp;
  while (p < eol && is_space(text[p])) {
    ++p;
  }
  *pstart = p;
  while (p < eol && !is_space(text[p]) && text[p] != '#') {
    ++p;
  }
  *pp = p;
  return p - *pstart;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

static int ext_cmp(const char *a, const char *b) {
  for (;; ++a, ++b) {
    int ca = lower((unsigned char)*a), cb = lower((unsigned char)*b);
    if (ca != cb || ca == 0) {
      return ca - cb;
    }
  }
}

static int entry_cmp(const void *a, const void *b) {
  const uvq_mime_entry *x = a, *y = b;
  int c = ext_cmp(x->ext, y->ext);

  /* Equal extensions stay in file order (the first line wins). */
  if (c == 0) {
    return x < y ? -1 : x > y;
  }
  return c;
}

/* A type is "type/subtype" of token characters. */
static int valid_type(const char *s, size_t len) {
  size_t i, slash = 0;

  for (i = 0; i < len; ++i) {
    char c = s[i];
    if (c == '/') {
      if (slash++ || i == 0 || i + 1 == len) {
        return 0;
      }
    } else if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f ||
               strchr("()<>@,;:\\\"[]?={}", c)) {
      return 0;
    }
  }
  return slash == 1;
}

int uvq_mime_table_parse(uvq_mime_table *t, const char *text, size_t len) {
  static const char charset[] = "; charset=utf-8";
  size_t i = 0, n = 0, strsize = 0, pass;

  memset(t, 0, sizeof(*t));
  /* Pass 0 counts the entries and string bytes; pass 1 fills them in. */
  for (pass = 0; pass < 2; ++pass) {
    size_t so = 0;
    n = 0;
    for (i = 0; i < len;) {
      size_t eol = i, p, tstart, tlen, tout = 0;
      int have_type = 0;
      while (eol < len && text[eol] != '\n') {
        ++eol;
      }
      p = i;
      i = eol + 1;
      tlen = next_word(text, eol, &p, &tstart);
      if (tlen == 0 || !valid_type(text + tstart, tlen)) {
        continue;
      }
      for (;;) {
        size_t estart, elen = next_word(text, eol, &p, &estart);
        if (elen == 0) {
          break;
        }
        if (memchr(text + estart, '\0', elen) != NULL ||
            memchr(text + estart, '.', elen) != NULL) {
          continue;
        }
        if (pass == 0) {
          if (!have_type) {
            have_type = 1;
            strsize += tlen + sizeof(charset);
          }
          strsize += elen + 1;
        } else {
          size_t k;
          if (!have_type) {
            char *ty = t->strings + so;
            int text_type;
            for (k = 0; k < tlen; ++k) {
              ty[k] = (char)lower((unsigned char)text[tstart + k]);
            }
            ty[tlen] = '\0';
            text_type = strncmp(ty, "text/", 5) == 0;
            if (text_type) {
              memcpy(ty + tlen, charset, sizeof(charset));
            }
            have_type = 1;
            tout = so;
            so += tlen + sizeof(charset);
          }
          t->entries[n].type = t->strings + tout;
          t->entries[n].ext = t->strings + so;
          memcpy(t->strings + so, text + estart, elen);
          t->strings[so + elen] = '\0';
          so += elen + 1;
        }
        ++n;
      }
    }
    if (pass == 0) {
      if (n == 0) {
        return 0;
      }
      t->entries = malloc(n * sizeof(*t->entries));
      t->strings = malloc(strsize);
      if (t->entries == NULL || t->strings == NULL) {
        uvq_mime_table_free(t);
        return -1;
      }
    }
  }
  qsort(t->entries, n, sizeof(*t->entries), entry_cmp);
  /* Keep the first of each extension. */
  {
    size_t w = 0;
    for (i = 0; i < n; ++i) {
      if (w > 0 && ext_cmp(t->entries[w - 1].ext, t->entries[i].ext) == 0) {
        continue;
      }
      t->entries[w++] = t->entries[i];
    }
    t->n = w;
  }
  return 0;
}

int uvq_mime_table_load(uvq_mime_table *t, const char *path, char *errbuf,
                        size_t errbuflen) {
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC), rv;

  memset(t, 0, sizeof(*t));
  if (fd < 0) {
    goto fail;
  }
  for (;;) {
    ssize_t r;
    if (len == cap) {
      char *nb;
      if (cap >= (64u << 20)) {
        errno = EFBIG;
        goto fail;
      }
      cap = cap ? cap * 2 : 65536;
      nb = realloc(buf, cap);
      if (nb == NULL) {
        goto fail;
      }
      buf = nb;
    }
    r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      goto fail;
    }
    if (r == 0) {
      break;
    }
    len += (size_t)r;
  }
  close(fd);
  rv = uvq_mime_table_parse(t, buf, len);
  free(buf);
  if (rv != 0 && errbuf && errbuflen) {
    snprintf(errbuf, errbuflen, "%s: out of memory", path);
  }
  return rv;

fail:
  if (errbuf && errbuflen) {
    snprintf(errbuf, errbuflen, "cannot read %s: %s", path, strerror(errno));
  }
  if (fd >= 0) {
    close(fd);
  }
  free(buf);
  return -1;
}

void uvq_mime_table_free(uvq_mime_table *t) {
  free(t->entries);
  free(t->strings);
  memset(t, 0, sizeof(*t));
}

static const uvq_mime_entry *find_ext(const uvq_mime_entry *e, size_t n,
                                      const char *ext) {
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = ext_cmp(ext, e[mid].ext);
    if (c == 0) {
      return &e[mid];
    }
    if (c < 0) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return NULL;
}

const char *uvq_mime_type(const uvq_mime_table *t, const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  const char *dot = strrchr(base, '.');
  const uvq_mime_entry *e = NULL;

  /* ".profile" has no extension. */
  if (dot != NULL && dot != base && dot[1] != '\0') {
    if (t != NULL && t->n > 0) {
      e = find_ext(t->entries, t->n, dot + 1);
    }
    if (e == NULL) {
      e = find_ext(builtin_types,
                   sizeof(builtin_types) / sizeof(builtin_types[0]), dot + 1);
    }
  }
  return e ? e->type : "application/octet-stream";
}

/* ---- validators and conditional requests -------------------------------- */

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                 "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Writes the |n| low decimal digits of |v|, zero-padded; returns the end. */
static char *put_digits(char *p, unsigned v, int n) {
  for (int i = n - 1; i >= 0; --i) {
    p[i] = (char)('0' + v % 10u);
    v /= 10u;
  }
  return p + n;
}

void uvq_http_format_date(time_t t, char buf[UVQ_HTTP_DATE_LEN]) {
  struct tm tm;
  char *p = buf;

  if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
      tm.tm_year + 1900 < 0) {
    t = 0;
    gmtime_r(&t, &tm);
  }
  /* By hand, not snprintf: two per file response (Date, Last-Modified),
   * and snprintf was the largest cost of building one. Each field is
   * reduced to its width: 29 bytes. */
  memcpy(p, wdays[(unsigned)tm.tm_wday % 7u], 3);
  p += 3;
  *p++ = ',';
  *p++ = ' ';
  p = put_digits(p, (unsigned)tm.tm_mday, 2);
  *p++ = ' ';
  memcpy(p, months[(unsigned)tm.tm_mon % 12u], 3);
  p += 3;
  *p++ = ' ';
  p = put_digits(p, (unsigned)(tm.tm_year + 1900), 4);
  *p++ = ' ';
  p = put_digits(p, (unsigned)tm.tm_hour, 2);
  *p++ = ':';
  p = put_digits(p, (unsigned)tm.tm_min, 2);
  *p++ = ':';
  p = put_digits(p, (unsigned)tm.tm_sec, 2);
  memcpy(p, " GMT", 5);
}

/* Reads exactly |n| digits at *pp. */
static int digits(const char **pp, const char *end, int n, int *pv) {
  int v = 0, i;

  if (end - *pp < n) {
    return -1;
  }
  for (i = 0; i < n; ++i) {
    char c = (*pp)[i];
    if (c < '0' || c > '9') {
      return -1;
    }
    v = v * 10 + (c - '0');
  }
  *pp += n;
  *pv = v;
  return 0;
}

static int lit(const char **pp, const char *end, const char *s) {
  size_t n = strlen(s);

  if ((size_t)(end - *pp) < n || memcmp(*pp, s, n) != 0) {
    return -1;
  }
  *pp += n;
  return 0;
}

static int month(const char **pp, const char *end, int *pm) {
  int i;

  for (i = 0; i < 12; ++i) {
    if (lit(pp, end, months[i]) == 0) {
      *pm = i;
      return 0;
    }
  }
  return -1;
}

static int hms(const char **pp, const char *end, struct tm *tm) {
  return digits(pp, end, 2, &tm->tm_hour) || lit(pp, end, ":") ||
                 digits(pp, end, 2, &tm->tm_min) || lit(pp, end, ":") ||
                 digits(pp, end, 2, &tm->tm_sec)
             ? -1
             : 0;
}

int uvq_http_parse_date(const char *s, size_t len, time_t *pt) {
  const char *p = s, *end = s + len, *comma = memchr(s, ',', len);
  struct tm tm;
  time_t t;

  memset(&tm, 0, sizeof(tm));
  if (comma != NULL && comma - s == 3) {
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    p = comma + 1;
    if (lit(&p, end, " ") || digits(&p, end, 2, &tm.tm_mday) ||
        lit(&p, end, " ") || month(&p, end, &tm.tm_mon) || lit(&p, end, " ") ||
        digits(&p, end, 4, &tm.tm_year) || lit(&p, end, " ") ||
        hms(&p, end, &tm) || lit(&p, end, " GMT")) {
      return -1;
    }
    tm.tm_year -= 1900;
  } else if (comma != NULL) {
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year is in
     * the 50 years to come (RFC 9110 §5.6.7), taken here as 1970-2069. */
    p = comma + 1;
    if (lit(&p, end, " ") || digits(&p, end, 2, &tm.tm_mday) ||
        lit(&p, end, "-") || month(&p, end, &tm.tm_mon) || lit(&p, end, "-") ||
        digits(&p, end, 2, &tm.tm_year) || lit(&p, end, " ") ||
        hms(&p, end, &tm) || lit(&p, end, " GMT")) {
      return -1;
    }
    if (tm.tm_year < 70) {
      tm.tm_year += 100;
    }
  } else {
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    p += len >= 4 ? 4 : len;
    if (len < 4 || s[3] != ' ' || month(&p, end, &tm.tm_mon) ||
        lit(&p, end, " ")) {
      return -1;
    }
    if (p < end && *p == ' ') {
      ++p;
      if (digits(&p, end, 1, &tm.tm_mday)) {
        return -1;
      }
    } else if (digits(&p, end, 2, &tm.tm_mday)) {
      return -1;
    }
    if (lit(&p, end, " ") || hms(&p, end, &tm) || lit(&p, end, " ") ||
        digits(&p, end, 4, &tm.tm_year)) {
      return -1;
    }
    tm.tm_year -= 1900;
  }
  if (p != end || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return -1;
  }
  t = timegm(&tm);
  if (t == (time_t)-1) {
    return -1;
  }
  *pt = t;
  return 0;
}

/* Writes |v| in lower-case hex without leading zeros; returns the end. */
static char *put_hex(char *p, uint64_t v) {
  static const char hex[] = "0123456789abcdef";
  int n = 1;

  while (n < 16 && (v >> (4 * n)) != 0) {
    ++n;
  }
  for (int i = n - 1; i >= 0; --i) {
    p[i] = hex[v & 0xf];
    v >>= 4;
  }
  return p + n;
}

void uvq_http_etag(const struct stat *st, char buf[UVQ_HTTP_ETAG_LEN]) {
  char *p = buf;

  /* '"' size '-' mtime seconds '-' nanoseconds '"', in hex (as
   * "%" PRIx64, by hand: one per file response). */
  *p++ = '"';
  p = put_hex(p, (uint64_t)st->st_size);
  *p++ = '-';
  p = put_hex(p, (uint64_t)st->st_mtim.tv_sec);
  *p++ = '-';
  p = put_hex(p, (uint32_t)st->st_mtim.tv_nsec);
  *p++ = '"';
  *p = '\0';
}

static const char *skip_ows(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t')) {
    ++p;
  }
  return p;
}

int uvq_http_etag_match(const char *list, size_t len, const char *etag,
                        int weak) {
  const char *p = list, *end = list + len;
  size_t elen = strlen(etag);

  p = skip_ows(p, end);
  if (end - p >= 1 && *p == '*' && skip_ows(p + 1, end) == end) {
    return 1;
  }
  while (p < end) {
    const char *q;
    int is_weak = 0;

    p = skip_ows(p, end);
    if (p < end && *p == ',') {
      ++p;
      continue;
    }
    if (p == end) {
      break;
    }
    if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
      is_weak = 1;
      p += 2;
    }
    if (p == end || *p != '"') {
      return 0;
    }
    q = memchr(p + 1, '"', (size_t)(end - p - 1));
    if (q == NULL) {
      return 0;
    }
    if ((size_t)(q + 1 - p) == elen && memcmp(p, etag, elen) == 0 &&
        (weak || !is_weak)) {
      return 1;
    }
    p = skip_ows(q + 1, end);
    if (p < end && *p != ',') {
      return 0;
    }
  }
  return 0;
}

/* A decimal number without sign: 0 with *pv set, -1 if malformed or over
 * 2^63. */
static int parse_u64(const char *p, const char *end, uint64_t *pv) {
  uint64_t v = 0;

  if (p == end) {
    return -1;
  }
  for (; p < end; ++p) {
    if (*p < '0' || *p > '9' || v > (UINT64_MAX >> 1) / 10) {
      return -1;
    }
    v = v * 10 + (uint64_t)(*p - '0');
  }
  *pv = v;
  return 0;
}

uvq_http_range_status uvq_http_parse_range(const char *s, size_t len,
                                           uint64_t size, uint64_t *poff,
                                           uint64_t *plen) {
  const char *p = s, *end = s + len, *dash;
  uint64_t a, b;

  if (len < 6 || strncasecmp(s, "bytes=", 6) != 0) {
    return UVQ_RANGE_NONE;
  }
  p += 6;
  p = skip_ows(p, end);
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
    --end;
  }
  if (memchr(p, ',', (size_t)(end - p)) != NULL) {
    /* Several ranges: served whole (a multipart body is not worth it). */
    return UVQ_RANGE_NONE;
  }
  dash = memchr(p, '-', (size_t)(end - p));
  if (dash == NULL) {
    return UVQ_RANGE_NONE;
  }
  if (dash == p) {
    /* "-n": the last n bytes. */
    if (parse_u64(dash + 1, end, &b) != 0) {
      return UVQ_RANGE_NONE;
    }
    if (b == 0 || size == 0) {
      return UVQ_RANGE_UNSATISFIABLE;
    }
    if (b > size) {
      b = size;
    }
    *poff = size - b;
    *plen = b;
    return UVQ_RANGE_OK;
  }
  if (parse_u64(p, dash, &a) != 0) {
    return UVQ_RANGE_NONE;
  }
  if (dash + 1 == end) {
    b = UINT64_MAX;
  } else if (parse_u64(dash + 1, end, &b) != 0 || b < a) {
    return UVQ_RANGE_NONE;
  }
  if (a >= size) {
    return UVQ_RANGE_UNSATISFIABLE;
  }
  if (b >= size) {
    b = size - 1;
  }
  *poff = a;
  *plen = b - a + 1;
  return UVQ_RANGE_OK;
}

void uvq_http_evaluate(const uvq_http_conditions *c, const struct stat *st,
                       const char *etag, uvq_http_plan *plan) {
  uint64_t size = (uint64_t)st->st_size;
  time_t t;
  int range_ok = 1;

  plan->status = 200;
  plan->offset = 0;
  plan->length = size;
  if (c->if_none_match != NULL) {
    if (uvq_http_etag_match(c->if_none_match, c->if_none_match_len, etag, 1)) {
      plan->status = 304;
      return;
    }
  } else if (c->if_modified_since != NULL &&
             uvq_http_parse_date(c->if_modified_since, c->if_modified_since_len,
                                 &t) == 0 &&
             st->st_mtim.tv_sec <= t) {
    plan->status = 304;
    return;
  }
  if (c->range == NULL) {
    return;
  }
  if (c->if_range != NULL) {
    const char *p = skip_ows(c->if_range, c->if_range + c->if_range_len);
    size_t n = c->if_range_len - (size_t)(p - c->if_range);

    if (n > 0 && (*p == '"' || *p == 'W')) {
      range_ok = uvq_http_etag_match(p, n, etag, 0);
    } else {
      /* A date validates only if it is exactly Last-Modified (RFC 9110
       * §13.1.5). */
      range_ok = uvq_http_parse_date(p, n, &t) == 0 && t == st->st_mtim.tv_sec;
    }
  }
  if (!range_ok) {
    return;
  }
  switch (uvq_http_parse_range(c->range, c->range_len, size, &plan->offset,
                               &plan->length)) {
  case UVQ_RANGE_OK:
    plan->status = 206;
    break;
  case UVQ_RANGE_UNSATISFIABLE:
    plan->status = 416;
    plan->offset = 0;
    plan->length = 0;
    break;
  default:
    plan->offset = 0;
    plan->length = size;
    break;
  }
}
