/* Helpers shared by the uvquic command-line tools: see cli.h. */
#include "cli.h"

#include <stdarg.h>

#include <gnutls/gnutls.h>

int cli_split_hostport(const char *s, const char *defport, char *host,
                       size_t hostlen, char *port, size_t portlen, char *err,
                       size_t errlen) {
  const char *hend, *colon;
  size_t n;

  if (*s == '[') {
    hend = strchr(s, ']');
    if (hend == NULL) {
      snprintf(err, errlen, "unterminated '[' in address \"%s\"", s);
      return -1;
    }
    ++s;
    colon = hend[1] == ':' ? hend + 1 : NULL;
    if (hend[1] != '\0' && colon == NULL) {
      snprintf(err, errlen, "junk after ']' in address \"%s\"", s - 1);
      return -1;
    }
  } else {
    colon = strrchr(s, ':');
    if (colon && strchr(s, ':') != colon) {
      snprintf(err, errlen,
               "IPv6 address \"%s\" must be in brackets: [ADDR]:PORT", s);
      return -1;
    }
    hend = colon ? colon : s + strlen(s);
  }
  n = (size_t)(hend - s);
  if (n == 0 || n >= hostlen) {
    snprintf(err, errlen, "bad host in address \"%s\"", s);
    return -1;
  }
  memcpy(host, s, n);
  host[n] = '\0';
  if (colon == NULL) {
    if (defport == NULL) {
      snprintf(err, errlen, "missing port in address \"%s\"", s);
      return -1;
    }
    snprintf(port, portlen, "%s", defport);
  } else {
    const char *p = colon + 1;
    char *end;
    long v;

    if (*p == '\0' || strlen(p) >= portlen) {
      snprintf(err, errlen, "bad port in address \"%s\"", s);
      return -1;
    }
    v = strtol(p, &end, 10);
    if (*end != '\0' || v < 0 || v > 65535 || p[0] == '-' || p[0] == '+') {
      snprintf(err, errlen, "bad port \"%s\" (0..65535)", p);
      return -1;
    }
    snprintf(port, portlen, "%s", p);
  }
  return 0;
}

int cli_resolve(const char *host, const char *port, int passive,
                struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                size_t errlen) {
  struct addrinfo hints, *res;
  int rv;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  rv = getaddrinfo(host, port, &hints, &res);
  if (rv != 0) {
    snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rv));
    return -1;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sslen = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

void cli_fail_usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", program_invocation_short_name);
  va_start(ap, fmt);
  /* clang 14's valist checker misses the va_start just above. */
  vfprintf(stderr, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized) */
  va_end(ap);
  fputc('\n', stderr);
  exit(CLI_EXIT_USAGE);
}

void cli_fail_getopt(int c, char *const argv[]) {
  if (c == ':') {
    cli_fail_usage("option %s needs an argument", argv[optind - 1]);
  }
  if (optopt) {
    char opt[3] = {'-', (char)optopt, '\0'};
    cli_fail_usage("unknown option %s", opt);
  }
  cli_fail_usage("unknown option %s", argv[optind - 1]);
}

uint64_t cli_parse_ms(const char *arg, const char *opt) {
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul(arg, &end, 10);
  if (errno || *end || arg[0] == '-' || arg[0] == '\0' || v == 0 || v > 60000) {
    fprintf(stderr, "%s: bad %s \"%s\" (milliseconds, 1..60000)\n",
            program_invocation_short_name, opt, arg);
    exit(CLI_EXIT_USAGE);
  }
  return (uint64_t)v * 1000000u;
}

uint64_t cli_parse_secs(const char *arg, const char *opt, double max) {
  char *end;
  double v;

  errno = 0;
  v = strtod(arg, &end);
  if (errno || *end || arg[0] == '\0' || !(v > 0) || v > max) {
    fprintf(stderr, "%s: bad %s \"%s\" (seconds, up to %.0f)\n",
            program_invocation_short_name, opt, arg, max);
    exit(CLI_EXIT_USAGE);
  }
  return (uint64_t)(v * 1e9);
}

void cli_format_addr(const struct sockaddr *sa, char *buf, size_t buflen) {
  char host[INET6_ADDRSTRLEN];

  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
    snprintf(buf, buflen, "[%s]:%u", host, ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
    snprintf(buf, buflen, "%s:%u", host, ntohs(s4->sin_port));
  }
}

uint64_t cli_parse_u64(const char *arg, const char *opt, uint64_t min,
                       uint64_t max) {
  char *end;
  unsigned long long v;

  errno = 0;
  v = strtoull(arg, &end, 10);
  if (errno || *end || arg[0] == '-' || arg[0] == '+' || arg[0] == '\0' ||
      v < min || v > max) {
    fprintf(stderr, "%s: bad %s \"%s\" (%llu..%llu)\n",
            program_invocation_short_name, opt, arg, (unsigned long long)min,
            (unsigned long long)max);
    exit(CLI_EXIT_USAGE);
  }
  return (uint64_t)v;
}

uint32_t cli_parse_quic_version(const char *arg, const char *opt) {
  if (strcmp(arg, "v1") == 0 || strcasecmp(arg, "0x00000001") == 0 ||
      strcasecmp(arg, "0x1") == 0) {
    return UVQ_QUIC_V1;
  }
  if (strcmp(arg, "v2") == 0 || strcasecmp(arg, "0x6b3343cf") == 0) {
    return UVQ_QUIC_V2;
  }
  fprintf(stderr,
          "%s: unknown QUIC version \"%s\" in %s (v1, v2, 0x00000001 or "
          "0x6b3343cf)\n",
          program_invocation_short_name, arg, opt);
  exit(CLI_EXIT_USAGE);
}

void cli_parse_quic_versions(const char *arg, const char *opt,
                             uvq_settings *st) {
  char buf[128], *tok, *save = NULL;
  size_t n = 0;

  if (strlen(arg) >= sizeof(buf) || arg[0] == '\0') {
    fprintf(stderr, "%s: bad %s \"%s\" (a list such as v2,v1)\n",
            program_invocation_short_name, opt, arg);
    exit(CLI_EXIT_USAGE);
  }
  memcpy(buf, arg, strlen(arg) + 1);
  if (buf[strlen(buf) - 1] == ',' || buf[0] == ',' || strstr(buf, ",,")) {
    fprintf(stderr, "%s: bad %s \"%s\": empty entry\n",
            program_invocation_short_name, opt, arg);
    exit(CLI_EXIT_USAGE);
  }
  for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    uint32_t v = cli_parse_quic_version(tok, opt);
    for (size_t i = 0; i < n; i++) {
      if (st->quic_versions[i] == v) {
        fprintf(stderr, "%s: bad %s \"%s\": %s given twice\n",
                program_invocation_short_name, opt, arg, tok);
        exit(CLI_EXIT_USAGE);
      }
    }
    if (n == UVQ_MAX_VERSIONS) {
      fprintf(stderr, "%s: bad %s \"%s\": more than %d versions\n",
              program_invocation_short_name, opt, arg, UVQ_MAX_VERSIONS);
      exit(CLI_EXIT_USAGE);
    }
    st->quic_versions[n++] = v;
  }
  st->quic_versionslen = n;
}

const char *cli_quic_version_name(uint32_t v) {
  return v == UVQ_QUIC_V1 ? "v1" : v == UVQ_QUIC_V2 ? "v2" : NULL;
}

int cli_common_opt(int c, const char *arg, uvq_settings *st, cli_common *cc) {
  switch (c) {
  case CLI_OPT_CC:
    if (strcmp(arg, "reno") == 0) {
      st->cc_algo = UVQ_CC_RENO;
    } else if (strcmp(arg, "cubic") == 0) {
      st->cc_algo = UVQ_CC_CUBIC;
    } else if (strcmp(arg, "bbr") == 0) {
      st->cc_algo = UVQ_CC_BBR;
    } else {
      fprintf(stderr, "%s: bad --cc \"%s\" (reno, cubic or bbr)\n",
              program_invocation_short_name, arg);
      exit(CLI_EXIT_USAGE);
    }
    return 1;
  case CLI_OPT_MAX_DATA:
    st->initial_max_data = cli_parse_u64(arg, "--max-data", 1, 1ull << 62);
    if (st->max_window < st->initial_max_data) {
      st->max_window = st->initial_max_data;
    }
    return 1;
  case CLI_OPT_MAX_STREAM_DATA:
    st->initial_max_stream_data =
        cli_parse_u64(arg, "--max-stream-data", 1, 1ull << 62);
    if (st->max_stream_window < st->initial_max_stream_data) {
      st->max_stream_window = st->initial_max_stream_data;
    }
    return 1;
  case CLI_OPT_MAX_STREAMS:
    st->max_streams_bidi = st->max_streams_uni =
        cli_parse_u64(arg, "--max-streams", 3, 1ull << 60);
    return 1;
  case CLI_OPT_IDLE_TIMEOUT:
    st->idle_timeout = cli_parse_secs(arg, "--idle-timeout", 3600);
    return 1;
  case CLI_OPT_KEEP_ALIVE:
    st->keep_alive = cli_parse_ms(arg, "--keep-alive");
    return 1;
  case CLI_OPT_NO_PMTUD:
    st->pmtud = 0;
    return 1;
  case CLI_OPT_DISABLE_MIGRATION:
    st->disable_active_migration = 1;
    return 1;
  case CLI_OPT_MAX_UDP_PAYLOAD:
    st->max_udp_payload_size =
        strcmp(arg, "auto") == 0
            ? 0
            : (size_t)cli_parse_u64(arg, "--max-udp-payload", 1200,
                                    UVQ_MAX_UDP_PAYLOAD);
    return 1;
  case CLI_OPT_QLOG_DIR:
    cc->qlog_dir = arg;
    return 1;
  case CLI_OPT_MAX_CONNECTIONS:
    st->max_connections =
        (size_t)cli_parse_u64(arg, "--max-connections", 0, 100000000);
    cc->max_connections_set = 1;
    return 1;
  case 'v':
    ++cc->verbose;
    return 1;
  default:
    return 0;
  }
}

static void cli_log_cb(void *user_data, uvq_log_level lvl, const char *scid_hex,
                       const char *msg) {
  static const char *const names[] = {"error", "warn", "info", "debug"};

  (void)user_data;
  fprintf(stderr, "%s: [%s] %s%s%s\n", program_invocation_short_name,
          (unsigned)lvl < 4 ? names[lvl] : "?", scid_hex ? scid_hex : "",
          scid_hex ? ": " : "", msg);
}

/* Opens DIR/ODCID-ROLE.sqlog for the trace whose first piece (ngtcp2's
 * trace header, which names the ODCID as its group_id) is |data|. */
static FILE *cli_qlog_open(cli_common *cc, const void *data, size_t len) {
  static const char key[] = "\"group_id\":\"";
  char name[64], path[4096];
  const char *p = memmem(data, len, key, sizeof(key) - 1);
  size_t n = 0;
  FILE *f;

  if (p != NULL) {
    const char *end = (const char *)data + len;
    p += sizeof(key) - 1;
    while (p + n < end && n + 1 < sizeof(name) &&
           strchr("0123456789abcdef", p[n]) != NULL && p[n] != '\0') {
      name[n] = p[n];
      ++n;
    }
  }
  if (n == 0) {
    n = (size_t)snprintf(name, sizeof(name), "unknown%lu", ++cc->qlog_seq);
  }
  name[n] = '\0';
  snprintf(path, sizeof(path), "%s/%s-%s.sqlog", cc->qlog_dir, name, cc->role);
  f = fopen(path, "w");
  if (f == NULL && cc->verbose) {
    fprintf(stderr, "%s: cannot write qlog %s: %s\n",
            program_invocation_short_name, path, strerror(errno));
  }
  return f;
}

/* settings.qlog: appends to the connection's file, closes it on |fin|. */
static void cli_qlog_cb(void *user_data, uvq_conn *conn, const void *data,
                        size_t len, int fin) {
  cli_common *cc = user_data;
  cli_qlog **pq = &cc->qlogs, *q;

  while (*pq != NULL && (*pq)->conn != conn) {
    pq = &(*pq)->next;
  }
  q = *pq;
  if (q == NULL) {
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
      return;
    }
    q->conn = conn;
    q->f = cli_qlog_open(cc, data, len);
    q->next = cc->qlogs;
    cc->qlogs = q;
    pq = &cc->qlogs;
  }
  if (q->f != NULL && len > 0) {
    (void)fwrite(data, 1, len, q->f);
  }
  if (fin) {
    if (q->f != NULL) {
      fclose(q->f);
    }
    *pq = q->next;
    free(q);
  }
}

void cli_common_apply(cli_common *cc, uvq_settings *st) {
  if (cc->verbose > 0) {
    st->log_cb = cli_log_cb;
    st->log_cb_user_data = cc;
    st->log_level = cc->verbose > 1 ? UVQ_LOG_DEBUG : UVQ_LOG_INFO;
  }
  if (cc->qlog_dir != NULL) {
    struct stat sb;
    if (stat(cc->qlog_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      fprintf(stderr, "%s: --qlog-dir %s is not a directory\n",
              program_invocation_short_name, cc->qlog_dir);
      exit(CLI_EXIT_USAGE);
    }
    st->qlog = cli_qlog_cb;
    st->qlog_user_data = cc;
  }
}

void cli_common_free(cli_common *cc) {
  while (cc->qlogs != NULL) {
    cli_qlog *q = cc->qlogs;
    cc->qlogs = q->next;
    if (q->f != NULL) {
      fclose(q->f);
    }
    free(q);
  }
}

/* Nonzero if environment variable |name| is set to anything but "" or "0". */
static int env_on(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

void cli_uv_config(uvq_uv_config *cfg) {
  uvq_uv_config_default(cfg);
  cfg->no_gso = env_on("UVQ_UV_NO_GSO");
  cfg->no_gro = env_on("UVQ_UV_NO_GRO");
}

int cli_write_atomic(const char *path, const void *data, size_t len, int mode) {
  char tmp[4096];
  int fd, ok, saved;

  if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
      sizeof(tmp)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return -1;
  }
  ok = write(fd, data, len) == (ssize_t)len;
  ok = (close(fd) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    saved = errno;
    unlink(tmp);
    errno = saved ? saved : EIO;
    return -1;
  }
  return 0;
}

void cli_hex(char *out, const uint8_t *in, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t i;

  for (i = 0; i < len; ++i) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 0xf];
  }
  out[2 * len] = '\0';
}

/* name v becomes name{LAB} v, and name{a="b"} v name{LAB,a="b"} v. */
char *cli_prometheus_label(const char *text, const char *lab, int comments) {
  size_t cap = strlen(text) * 2 + 64, o = 0, lablen = strlen(lab);
  char *out = malloc(cap);
  const char *p = text;

  if (out == NULL) {
    return NULL;
  }
  while (*p) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) + 1 : strlen(p);
    size_t name = strcspn(p, "{ \n");
    if (o + len + lablen + 4 >= cap) {
      char *nb = realloc(out, cap = (cap + len + lablen) * 2);
      if (nb == NULL) {
        free(out);
        return NULL;
      }
      out = nb;
    }
    if (*p == '#') {
      if (comments) {
        memcpy(out + o, p, len);
        o += len;
      }
    } else if (p[name] == '{') {
      /* name{a="b"} v  ->  name{shard="i",a="b"} v */
      memcpy(out + o, p, name + 1);
      o += name + 1;
      memcpy(out + o, lab, lablen);
      o += lablen;
      out[o++] = ',';
      memcpy(out + o, p + name + 1, len - name - 1);
      o += len - name - 1;
    } else {
      /* name v  ->  name{shard="i"} v */
      memcpy(out + o, p, name);
      o += name;
      out[o++] = '{';
      memcpy(out + o, lab, lablen);
      o += lablen;
      out[o++] = '}';
      memcpy(out + o, p + name, len - name);
      o += len - name;
    }
    p += len;
  }
  out[o] = '\0';
  return out;
}

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int cli_keys_save(const uvq_keys *keys, const char *path, char *err,
                  size_t errlen) {
  char text[UVQ_KEYS_TEXTLEN];
  char *tmp;
  ssize_t n;
  size_t pathlen;
  int fd, e = 0;

  if (keys == NULL || path == NULL || path[0] == '\0') {
    snprintf(err, errlen, "keys and path are required");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  n = uvq_keys_format(keys, text, sizeof(text));
  if (n < 0) {
    snprintf(err, errlen, "key file %s: %s", path, uvq_strerror((int)n));
    return (int)n;
  }

  /* mkstemp creates the file with mode 0600 in the target's directory, so
   * the rename below stays within one file system. */
  pathlen = strlen(path);
  tmp = malloc(pathlen + sizeof(".tmpXXXXXX"));
  if (tmp == NULL) {
    gnutls_memset(text, 0, sizeof(text));
    snprintf(err, errlen, "out of memory");
    errno = ENOMEM;
    return UVQ_ERR_IO;
  }
  memcpy(tmp, path, pathlen);
  memcpy(tmp + pathlen, ".tmpXXXXXX", sizeof(".tmpXXXXXX"));
  fd = mkstemp(tmp);
  if (fd < 0) {
    e = errno;
    snprintf(err, errlen, "key file %s: cannot create a temporary file: %s",
             path, strerror(e));
    goto fail_open;
  }
  if (fchmod(fd, 0600) != 0 || write_all(fd, text, (size_t)n) != 0 ||
      fsync(fd) != 0) {
    e = errno;
    snprintf(err, errlen, "key file %s: cannot write %s: %s", path, tmp,
             strerror(e));
    close(fd);
    goto fail_write;
  }
  if (close(fd) != 0) {
    e = errno;
    snprintf(err, errlen, "key file %s: cannot write %s: %s", path, tmp,
             strerror(e));
    goto fail_write;
  }
  if (rename(tmp, path) != 0) {
    e = errno;
    snprintf(err, errlen, "key file %s: cannot rename %s over it: %s", path,
             tmp, strerror(e));
    goto fail_write;
  }
  gnutls_memset(text, 0, sizeof(text));
  free(tmp);
  return 0;

fail_write:
  unlink(tmp);
fail_open:
  gnutls_memset(text, 0, sizeof(text));
  free(tmp);
  errno = e;
  return UVQ_ERR_IO;
}

/* Longest key file read: the format needs well under 1 KiB. */
#define KEYS_MAXFILE 8192

static int read_all(int fd, char *buf, size_t cap, size_t *plen) {
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    if (n == 0) {
      break;
    }
    len += (size_t)n;
    if (len == cap) {
      errno = EFBIG;
      return -1;
    }
  }
  *plen = len;
  return 0;
}

int cli_keys_load(uvq_keys *keys, const char *path, char *err, size_t errlen) {
  char text[KEYS_MAXFILE];
  struct stat st;
  size_t len = 0;
  int fd, rv, e;

  if (keys == NULL || path == NULL) {
    snprintf(err, errlen, "keys and path are required");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  /* O_NONBLOCK: a FIFO at |path| must not block the open (it is refused
   * below as not a regular file; a regular file ignores the flag). */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    e = errno;
    snprintf(err, errlen, "key file %s: %s", path, strerror(e));
    errno = e;
    return UVQ_ERR_IO;
  }
  /* Checked on the open file, so a swap between check and read cannot
   * slip a readable file in. */
  if (fstat(fd, &st) != 0) {
    e = errno;
    close(fd);
    snprintf(err, errlen, "key file %s: %s", path, strerror(e));
    errno = e;
    return UVQ_ERR_IO;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    snprintf(err, errlen, "key file %s: not a regular file", path);
    return UVQ_ERR_KEY_FILE;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    close(fd);
    snprintf(err, errlen,
             "key file %s: mode %04o lets group or others access it; refusing "
             "(chmod 600 it, and consider the keys leaked)",
             path, (unsigned)(st.st_mode & 07777));
    return UVQ_ERR_KEY_FILE;
  }
  if (read_all(fd, text, sizeof(text), &len) != 0) {
    e = errno;
    close(fd);
    snprintf(err, errlen, "key file %s: %s", path,
             e == EFBIG ? "too large to be a key file" : strerror(e));
    gnutls_memset(text, 0, sizeof(text));
    return e == EFBIG ? UVQ_ERR_KEY_FILE : UVQ_ERR_IO;
  }
  close(fd);
  rv = uvq_keys_parse(keys, text, len, path, err, errlen);
  gnutls_memset(text, 0, sizeof(text));
  return rv;
}

/* The process's key log: one file, whatever the number of TLS contexts. */
static int keylog_fd = -1;

static void keylog_write(const char *line, size_t len, void *user_data) {
  ssize_t n;

  (void)user_data;
  /* A key log is a debugging aid: a failed write must not fail the
   * handshake. */
  n = write(keylog_fd, line, len);
  (void)n;
}

int cli_keylog_from_env(uvq_tls_config *tcfg, char *err, size_t errlen) {
  const char *path = getenv("SSLKEYLOGFILE");

  if (path == NULL || path[0] == '\0') {
    return 0;
  }
  if (keylog_fd < 0) {
    keylog_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (keylog_fd < 0) {
      snprintf(err, errlen, "SSLKEYLOGFILE: cannot open %s: %s", path,
               strerror(errno));
      return -1;
    }
  }
  tcfg->keylog = keylog_write;
  return 0;
}
