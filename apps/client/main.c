/*
 * uvquic-client: downloads files over HTTP/3 (default) or hq-interop, with
 * curl's conventions: uvquic-client [OPTIONS] https://HOST[:PORT]/path...
 * (--help lists every option, the signals and the exit statuses).
 *
 * URLs to the same HOST:PORT share one connection and are requested
 * concurrently (one stream each; requests beyond the server's stream limit
 * wait for more credit); different hosts get their own connections on the
 * same client socket (one socket per address family). With --connections N
 * the whole set is fetched N times, each round on new connections.
 *
 * A download succeeds when its response is 2xx and complete. Its body goes
 * through the output writer (writer.h) to NAME.part, renamed once it is
 * complete; a failed response never creates or truncates the target. A
 * complete response of another status is reported and not saved (written
 * only to standard output, and only without --fail, as curl does); with
 * --fail a status >= 400 exits 22. When stderr is a terminal, a progress
 * bar per running download is redrawn up to 10 times a second; a summary
 * line ends every run; --quiet / -s silences both.
 *
 * Connection features (not with the load generator): --token-file,
 * --session-file (resumption and 0-RTT when the ticket allows it),
 * --stats-json, --key-update, --migrate-after [--nat-rebinding]. Dead
 * paths: --stream-keep-alive MS PINGs while requests are open and nothing
 * arrives; --stall-timeout closes a connection that receives nothing at
 * all for that long; --retry N (h3) reconnects after a transient failure
 * and redoes the unfinished downloads, with a Range request where the
 * server takes them. The load generator (--concurrency, --hold, --rate)
 * is loadgen.c.
 *
 * This file: the command line and main.
 */
#include "client/client.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: uvquic-client [OPTIONS] https://HOST[:PORT]/path...\n"
      "Downloads over HTTP/3 (default) or hq-interop; URLs to one HOST:PORT\n"
      "share a connection. Short options mean what they mean in curl.\n"
      "\n"
      "Output:\n"
      "  -o FILE                    write the body to FILE (through\n"
      "                             FILE.part, renamed once the response is\n"
      "                             complete and 2xx; a failed response\n"
      "                             never creates or truncates FILE); -o -\n"
      "                             writes it to standard output\n"
      "  --output-dir DIR           each body to DIR/<name from the URL>\n"
      "                             (the same way); without -o or\n"
      "                             --output-dir bodies are discarded\n"
      "  -C -, --continue-at -      continue FILE.part where it ends (a\n"
      "                             Range request; a server that ignores it\n"
      "                             sends the whole file again)\n"
      "  -i, --include              the response header section before the\n"
      "                             body\n"
      "  -I, --head                 HEAD: show the header section only\n"
      "  -D, --dump-header FILE     write header sections to FILE (- for\n"
      "                             standard output)\n"
      "  -f, --fail                 an HTTP status >= 400 fails (exit 22);\n"
      "                             without it the body of a complete 4xx/5xx\n"
      "                             response is reported, written only to\n"
      "                             standard output, and the exit is 0\n"
      "  -s, --silent, --quiet      no progress, no summary\n"
      "\n"
      "Requests (HTTP/3):\n"
      "  -X, --request METHOD       method (default GET; POST with --data)\n"
      "  -d, --data DATA|@FILE      request body (from FILE without CR/LF);\n"
      "                             Content-Type defaults to\n"
      "                             application/x-www-form-urlencoded\n"
      "  --data-binary DATA|@FILE   request body, FILE's bytes as they are\n"
      "  -H, --header 'Name: value' an extra request field (repeatable)\n"
      "  --limit-rate RATE          receive at most RATE bytes/s (k, M, G\n"
      "                             suffixes): flow-control credit is\n"
      "                             withheld, nothing is dropped\n"
      "\n"
      "Connection:\n"
      "  --alpn h3|hq-interop       application (default h3)\n"
      "  -k, --insecure             do not verify the server\n"
      "  --ca FILE                  trusted CAs or the server's certificate\n"
      "                             (PEM; uvquic-server --write-cert FILE)\n"
      "  --connect-timeout SECONDS  give up on a handshake after this long\n"
      "                             (default 20, or the idle timeout if\n"
      "                             shorter)\n"
      "  --initial-rtt MS           RTT assumed before the first sample\n"
      "  --stream-keep-alive MS     PING every MS while requests are open\n"
      "                             and nothing arrives (default 1000, 0 =\n"
      "                             off): a slow but live server still\n"
      "                             answers with ACKs\n"
      "  --stall-timeout SECONDS    close a connection that receives\n"
      "                             nothing at all for this long with\n"
      "                             requests open: its path is dead\n"
      "                             (default 5, 0 = off)\n"
      "  --retry N                  after a transient failure (stall, idle\n"
      "                             timeout, stateless reset, no viable\n"
      "                             path, refused) reconnect and redo the\n"
      "                             unfinished downloads, up to N times\n"
      "                             (default 0; h3 only)\n"
      "  --quic-version v1|v2       version of the first Initial; alone,\n"
      "                             the only version offered (default v1,\n"
      "                             offering v1 and v2: a server that\n"
      "                             prefers v2 upgrades the connection)\n"
      "  --quic-versions LIST       versions offered, most preferred first\n"
      "                             (default v1,v2); after Version\n"
      "                             Negotiation the first the server lists\n"
      "  --token-file FILE          keep NEW_TOKENs per HOST:PORT, reuse\n"
      "  --session-file FILE        keep session tickets per HOST:PORT;\n"
      "                             resume and attempt 0-RTT next time\n"
      "  --stats-json FILE          per-connection stats and facts (JSON)\n"
      "  --key-update MS            a key update every MS once established\n"
      "  --migrate-after MS         move to a new local socket MS after\n"
      "                             the handshake\n"
      "  --nat-rebinding            ... as a NAT rebinding (no probing)\n"
      "  -V, --version              uvquic's, ngtcp2's, nghttp3's and\n"
      "                             GnuTLS's versions\n"
      "\n"
      "Load generation (bodies discarded, results on stdout, one HOST:PORT):\n"
      "  --connections N            fetch everything N times, each round on\n"
      "                             new connections\n"
      "  --concurrency C            at most C connections being set up at a\n"
      "                             time\n"
      "  --hold SECONDS             keep the connections open until all N\n"
      "                             are up, then SECONDS more\n"
      "  --rate R --duration SECONDS\n"
      "                             then GET the URLs at R requests/s for\n"
      "                             SECONDS; prints latency percentiles (h3)\n"
      "  (keep-alive and stall timer off unless given)\n"
      "\n" CLI_COMMON_USAGE "\n"
      "SIGINT / SIGTERM close the connections, keep the .part files, print\n"
      "the summary and exit 130 / 143; a second signal exits at once.\n"
      "SSLKEYLOGFILE=FILE appends the TLS secrets (for Wireshark).\n"
      "\n"
      "Exit status (curl's):\n"
      "   0  every download complete    2  bad command line\n"
      "   6  cannot resolve the host    7  refused or unreachable\n"
      "  22  HTTP status >= 400 (-f)   23  writing the output failed\n"
      "  28  no response in time       35  TLS handshake failure\n"
      "  56  connection lost mid-transfer\n"
      "  60  server certificate not trusted\n"
      " 130  SIGINT                   143  SIGTERM\n"
      "With several URLs the first failure decides.\n");
}

/* Splits https://HOST[:PORT]/path into |u|. */
static int parse_url(url *u, const char *text, char *err, size_t errlen) {
  const char *p, *slash;
  char hostport[300];
  size_t n;

  u->text = text;
  if (strncasecmp(text, "https://", 8) != 0) {
    snprintf(err, errlen, "bad URL \"%s\": must start with https://", text);
    return -1;
  }
  p = text + 8;
  slash = strchr(p, '/');
  n = slash ? (size_t)(slash - p) : strlen(p);
  if (n == 0 || n >= sizeof(hostport)) {
    snprintf(err, errlen, "bad URL \"%s\": no host", text);
    return -1;
  }
  memcpy(hostport, p, n);
  hostport[n] = '\0';
  if (cli_split_hostport(hostport, "443", u->host, sizeof(u->host), u->port,
                         sizeof(u->port), err, errlen) != 0) {
    char inner[1024];
    snprintf(inner, sizeof(inner), "%s", err);
    snprintf(err, errlen, "bad URL \"%.200s\": %.300s", text, inner);
    return -1;
  }
  if (strcmp(u->port, "0") == 0) {
    snprintf(err, errlen, "bad URL \"%s\": port 0", text);
    return -1;
  }
  /* :authority is the URL's own HOST[:PORT] text. */
  if (n >= sizeof(u->authority)) {
    snprintf(err, errlen, "bad URL \"%.200s\": host too long", text);
    return -1;
  }
  memcpy(u->authority, hostport, n + 1);
  u->path = slash ? slash : "/";
  if (strpbrk(u->path, "\r\n") != NULL || strlen(u->path) > MAX_PATH) {
    snprintf(err, errlen, "bad URL \"%s\": bad path", text);
    return -1;
  }
  /* A #fragment is for the client alone: never sent. */
  n = strcspn(u->path, "#");
  memcpy(u->pathbuf, u->path, n);
  u->pathbuf[n] = '\0';
  u->path = u->pathbuf[0] ? u->pathbuf : "/";
  return 0;
}

const char *base_name(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  return *b ? b : "index.html";
}

/* --limit-rate RATE: bytes per second, with curl's k, M, G suffixes
 * (powers of 1024). */
static uint64_t parse_rate(const char *arg) {
  char *end;
  double v;

  errno = 0;
  v = strtod(arg, &end);
  switch (*end) {
  case 'k':
  case 'K':
    v *= 1024;
    ++end;
    break;
  case 'm':
  case 'M':
    v *= 1024 * 1024;
    ++end;
    break;
  case 'g':
  case 'G':
    v *= 1024.0 * 1024 * 1024;
    ++end;
    break;
  default:
    break;
  }
  if (errno || *end || arg[0] == '\0' || !(v >= 1024) || v > 1e12) {
    cli_fail_usage("bad --limit-rate \"%s\" (bytes per second, at least "
                   "1k; k, M, G suffixes)",
                   arg);
  }
  return (uint64_t)v;
}

/* -V, --version: ours and the libraries' (those we run with). */
static void print_version(void) {
  printf("uvquic-client %s (uvquic %s)\n", UVQ_VERSION, UVQ_VERSION);
  printf("ngtcp2 %s, nghttp3 %s, GnuTLS %s\n", ngtcp2_version(0)->version_str,
         nghttp3_version(0)->version_str, gnutls_check_version(NULL));
  printf("Protocols: h3 hq-interop\n");
}

/* The index of -H field |name| (lower case), or -1. */
static int header_index(const client *c, const char *name) {
  for (size_t i = 0; i < c->nhdrs; ++i) {
    if (strcmp(c->hdrs[i].name, name) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* -H "Name: value": an extra request field (the name in lower case, as
 * HTTP/3 wants it). One more slot is kept for the range of -C / --retry. */
static void add_header(client *c, const char *arg) {
  const char *colon = strchr(arg, ':');
  uvq_h3_header *nh;
  char *name, *value;
  size_t n;

  if (colon == NULL || colon == arg) {
    cli_fail_usage("bad -H \"%s\" (\"Name: value\")", arg);
  }
  n = (size_t)(colon - arg);
  name = strndup(arg, n);
  value = strdup(colon + 1 + strspn(colon + 1, " \t"));
  nh = realloc(c->hdrs, (c->nhdrs + 2) * sizeof(*nh));
  if (name == NULL || value == NULL || nh == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  for (size_t i = 0; i < n; ++i) {
    if (name[i] <= ' ' || name[i] == 0x7f) {
      cli_fail_usage("bad -H \"%s\" (a field name has no spaces)", arg);
    }
    name[i] = (char)tolower((unsigned char)name[i]);
  }
  c->hdrs = nh;
  nh[c->nhdrs].name = name;
  nh[c->nhdrs].namelen = n;
  nh[c->nhdrs].value = value;
  nh[c->nhdrs].valuelen = strlen(value);
  ++c->nhdrs;
}

/* Exits 2: the file |path| cannot be read, for the reason in errno. */
static void fail_read(const char *path) __attribute__((noreturn));
static void fail_read(const char *path) {
  char err[600];
  snprintf(err, sizeof(err), "cannot read %.500s: %s", path, strerror(errno));
  cli_fail_usage("%s", err);
}

/* --data / --data-binary ARG: the request body, ARG itself or @FILE's
 * bytes (--data, as curl's -d, drops CR and LF from a file). Several are
 * joined with '&', as curl does. */
static void read_body(client *c, const char *arg, int strip) {
  uint8_t *data = NULL;
  size_t len = 0, cap = 0;
  uint8_t *nb;

  if (arg[0] == '@') {
    FILE *f = strcmp(arg + 1, "-") == 0 ? stdin : fopen(arg + 1, "rb");
    size_t n;
    if (f == NULL) {
      fail_read(arg + 1);
    }
    do {
      if (len == cap) {
        cap = cap ? cap * 2 : 65536;
        nb = realloc(data, cap);
        if (nb == NULL) {
          cli_fail_usage("%s", "out of memory");
        }
        data = nb;
      }
      n = fread(data + len, 1, cap - len, f);
      len += n;
    } while (n > 0);
    if (ferror(f)) {
      /* Not a truncated body, sent as if it were the whole file. */
      fail_read(arg + 1);
    }
    if (f != stdin) {
      fclose(f);
    }
    if (strip) {
      size_t j = 0;
      for (size_t i = 0; i < len; ++i) {
        if (data[i] != '\r' && data[i] != '\n') {
          data[j++] = data[i];
        }
      }
      len = j;
    }
  } else {
    len = strlen(arg);
    data = malloc(len + 1);
    if (data == NULL) {
      cli_fail_usage("%s", "out of memory");
    }
    memcpy(data, arg, len);
  }
  nb = realloc(c->body, c->bodylen + (c->has_body ? 1 : 0) + len + 1);
  if (nb == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  c->body = nb;
  if (c->has_body) {
    c->body[c->bodylen++] = '&';
  }
  if (len > 0) {
    memcpy(c->body + c->bodylen, data, len);
  }
  c->bodylen += len;
  c->has_body = 1;
  free(data);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"insecure", no_argument, NULL, 'k'},
      {"ca", required_argument, NULL, CLI_OPT_FIRST_TOOL + 13},
      {"output", required_argument, NULL, 'o'},
      {"output-dir", required_argument, NULL, CLI_OPT_FIRST_TOOL + 14},
      {"quiet", no_argument, NULL, 'q'},
      {"connections", required_argument, NULL, 'n'},
      {"alpn", required_argument, NULL, 'a'},
      {"initial-rtt", required_argument, NULL, CLI_OPT_FIRST_TOOL + 15},
      {"concurrency", required_argument, NULL, 'c'},
      {"hold", required_argument, NULL, CLI_OPT_FIRST_TOOL + 16},
      {"rate", required_argument, NULL, 'r'},
      {"duration", required_argument, NULL, CLI_OPT_FIRST_TOOL + 17},
      {"token-file", required_argument, NULL, CLI_OPT_FIRST_TOOL},
      {"session-file", required_argument, NULL, CLI_OPT_FIRST_TOOL + 1},
      {"stats-json", required_argument, NULL, CLI_OPT_FIRST_TOOL + 2},
      {"key-update", required_argument, NULL, CLI_OPT_FIRST_TOOL + 3},
      {"migrate-after", required_argument, NULL, CLI_OPT_FIRST_TOOL + 4},
      {"nat-rebinding", no_argument, NULL, CLI_OPT_FIRST_TOOL + 5},
      {"stream-keep-alive", required_argument, NULL, CLI_OPT_FIRST_TOOL + 6},
      {"stall-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 7},
      {"retry", required_argument, NULL, CLI_OPT_FIRST_TOOL + 8},
      {"quic-version", required_argument, NULL, CLI_OPT_FIRST_TOOL + 9},
      {"quic-versions", required_argument, NULL, CLI_OPT_FIRST_TOOL + 10},
      {"fail", no_argument, NULL, 'f'},
      {"connect-timeout", required_argument, NULL, CLI_OPT_FIRST_TOOL + 11},
      {"limit-rate", required_argument, NULL, CLI_OPT_FIRST_TOOL + 12},
      {"continue-at", required_argument, NULL, 'C'},
      {"dump-header", required_argument, NULL, 'D'},
      {"header", required_argument, NULL, 'H'},
      {"head", no_argument, NULL, 'I'},
      {"include", no_argument, NULL, 'i'},
      {"request", required_argument, NULL, 'X'},
      {"data", required_argument, NULL, 'd'},
      {"data-binary", required_argument, NULL, CLI_OPT_FIRST_TOOL + 18},
      {"silent", no_argument, NULL, 's'},
      {"version", no_argument, NULL, 'V'},
      CLI_COMMON_OPTIONS,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const char *const alpn_h3[] = {UVQ_H3_ALPN};
  static const char *const alpn_hq[] = {UVQ_HQ_ALPN};
  char err[1024];
  uvq_tls_config tcfg;
  const char *ca = NULL;
  int insecure = 0, usage_error = 0, conc_set = 0, ch, rv;
  /* --quic-version (0: not given) and whether --quic-versions was. */
  uint32_t quic_version = 0;
  int quic_versions_set = 0;
  /* UINT64_MAX: not given (the tool's default, off for the load
   * generator). */
  uint64_t stream_keep_alive = UINT64_MAX, stall_timeout = UINT64_MAX;
  size_t i, j;
  client c;
  double secs;

  memset(&c, 0, sizeof(c));
  uvq_settings_default(&c.settings);
  c.rounds = 1;
  c.conc = 1;
  c.tfd = -1;
  opterr = 0;
  c.cc.role = "client";
  g_client = &c;
  while ((ch = getopt_long(argc, argv, ":fkho:qvC:D:H:IiX:d:sV", opts, NULL)) !=
         -1) {
    if (cli_common_opt(ch, optarg, &c.settings, &c.cc)) {
      continue;
    }
    switch (ch) {
    case CLI_OPT_FIRST_TOOL:
      c.token_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 1:
      c.session_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 2:
      c.stats_json = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 3:
      c.key_update_ms = cli_parse_ms(optarg, "--key-update") / 1000000u;
      break;
    case CLI_OPT_FIRST_TOOL + 4:
      c.migrate_ms = cli_parse_ms(optarg, "--migrate-after") / 1000000u;
      break;
    case CLI_OPT_FIRST_TOOL + 5:
      c.nat_rebinding = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 6:
      stream_keep_alive =
          cli_parse_u64(optarg, "--stream-keep-alive", 0, 60000) * 1000000u;
      break;
    case CLI_OPT_FIRST_TOOL + 7:
      stall_timeout = strcmp(optarg, "0") == 0
                          ? 0
                          : cli_parse_secs(optarg, "--stall-timeout", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 8:
      c.retry_max = (unsigned long)cli_parse_u64(optarg, "--retry", 0, 100);
      break;
    case CLI_OPT_FIRST_TOOL + 9:
      quic_version = cli_parse_quic_version(optarg, "--quic-version");
      break;
    case CLI_OPT_FIRST_TOOL + 10:
      cli_parse_quic_versions(optarg, "--quic-versions", &c.settings);
      quic_versions_set = 1;
      break;
    case 'k':
      insecure = 1;
      break;
    case 'f':
      c.fail_http = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 12:
      c.limit_rate = parse_rate(optarg);
      break;
    case CLI_OPT_FIRST_TOOL + 11:
      c.settings.handshake_timeout =
          cli_parse_secs(optarg, "--connect-timeout", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 13:
      ca = optarg;
      break;
    case 'C':
      if (strcmp(optarg, "-") != 0) {
        cli_fail_usage("-C takes \"-\" (continue where the .part file "
                       "ends), not \"%s\"",
                       optarg);
      }
      c.resume = 1;
      break;
    case 'D':
      c.dump_path = optarg;
      break;
    case 'H':
      add_header(&c, optarg);
      break;
    case 'I':
      c.head = 1;
      c.include_headers = 1;
      break;
    case 'i':
      c.include_headers = 1;
      break;
    case 'X':
      c.method = optarg;
      break;
    case 'd':
    case CLI_OPT_FIRST_TOOL + 18:
      read_body(&c, optarg, ch == 'd');
      break;
    case 's':
      c.quiet = 1;
      break;
    case 'V':
      print_version();
      return CLI_EXIT_OK;
    case 'o':
      c.out_file = optarg;
      break;
    case CLI_OPT_FIRST_TOOL + 14:
      c.out_dir = optarg;
      break;
    case 'q':
      c.quiet = 1;
      break;
    case CLI_OPT_FIRST_TOOL + 15:
      c.settings.initial_rtt = cli_parse_ms(optarg, "--initial-rtt");
      break;
    case CLI_OPT_FIRST_TOOL + 16:
      c.hold = cli_parse_secs(optarg, "--hold", 3600);
      break;
    case CLI_OPT_FIRST_TOOL + 17:
      c.duration = cli_parse_secs(optarg, "--duration", 3600);
      break;
    case 'r': {
      char *end;
      errno = 0;
      c.rate = strtod(optarg, &end);
      if (errno || *end || optarg[0] == '\0' || !(c.rate >= 1) ||
          c.rate > 1000000) {
        cli_fail_usage("bad --rate \"%s\" (requests per second, 1..1000000)",
                       optarg);
      }
      break;
    }
    case 'c': {
      char *end;
      errno = 0;
      c.conc = strtoul(optarg, &end, 10);
      if (errno || *end || optarg[0] == '-' || c.conc == 0 ||
          c.conc > 1000000) {
        cli_fail_usage("bad --concurrency \"%s\" (1..1000000)", optarg);
      }
      conc_set = 1;
      break;
    }
    case 'a':
      if (strcmp(optarg, UVQ_H3_ALPN) == 0) {
        c.proto = PROTO_H3;
      } else if (strcmp(optarg, UVQ_HQ_ALPN) == 0) {
        c.proto = PROTO_HQ;
      } else {
        cli_fail_usage("bad --alpn \"%s\" (h3 or hq-interop)", optarg);
      }
      break;
    case 'n': {
      char *end;
      errno = 0;
      c.rounds = strtoul(optarg, &end, 10);
      if (errno || *end || optarg[0] == '-' || c.rounds == 0 ||
          c.rounds > 1000000) {
        cli_fail_usage("bad --connections \"%s\" (1..1000000)", optarg);
      }
      break;
    }
    case 'h':
      usage(stdout);
      return CLI_EXIT_OK;
    default:
      cli_fail_getopt(ch, argv);
    }
  }
  c.nurls = (size_t)(argc - optind);
  if (c.nurls == 0) {
    cli_fail_usage("%s", "no URL given");
  }
  if (c.out_file && c.out_dir) {
    cli_fail_usage("%s", "-o and --output-dir exclude each other");
  }
  if (c.out_file && c.nurls != 1) {
    cli_fail_usage("%s", "-o takes exactly one URL");
  }
  if (c.proto == PROTO_HQ && (c.method || c.has_body || c.nhdrs ||
                              c.include_headers || c.dump_path || c.resume)) {
    cli_fail_usage("%s", "-X, --data, -H, -i, -I, -D and -C need HTTP/3 "
                         "(hq-interop has no methods, fields or ranges)");
  }
  if (c.resume && c.out_file == NULL && c.out_dir == NULL) {
    cli_fail_usage("%s", "-C - continues a file: give -o FILE or "
                         "--output-dir");
  }
  if (c.resume && c.out_file != NULL && strcmp(c.out_file, "-") == 0) {
    cli_fail_usage("%s", "-C - cannot continue standard output");
  }
  if (c.head && c.has_body) {
    cli_fail_usage("%s", "-I and --data exclude each other");
  }
  if (c.method == NULL) {
    c.method = c.head ? "HEAD" : c.has_body ? "POST" : "GET";
  }
  if (c.has_body && header_index(&c, "content-type") < 0) {
    /* curl's default for --data. */
    add_header(&c, "Content-Type: application/x-www-form-urlencoded");
  }
  if (c.hdrs == NULL) {
    /* The slot the range of -C / --retry goes in. */
    c.hdrs = calloc(1, sizeof(*c.hdrs));
    if (c.hdrs == NULL) {
      cli_fail_usage("%s", "out of memory");
    }
  }
  if (c.dump_path != NULL) {
    c.dump = strcmp(c.dump_path, "-") == 0 ? stdout : fopen(c.dump_path, "w");
    if (c.dump == NULL) {
      char derr[600];
      snprintf(derr, sizeof(derr), "cannot write -D %.500s: %s", c.dump_path,
               strerror(errno));
      cli_fail_usage("%s", derr);
    }
  }
  if (c.out_dir) {
    struct stat sb;
    if (stat(c.out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      cli_fail_usage("--output-dir %s is not a directory", c.out_dir);
    }
  }
  if ((c.rate > 0) != (c.duration > 0)) {
    cli_fail_usage("%s", "--rate and --duration go together");
  }
  if (c.rate > 0 && c.hold > 0) {
    cli_fail_usage("%s", "--rate and --hold exclude each other");
  }
  /* The rate phase spreads its requests over all the connections. */
  if (c.rate > 0 && !conc_set) {
    c.conc = c.rounds;
  }
  /* A load generator holding more connections than the default limit
   * needs room for them, unless --max-connections said otherwise. */
  if (!c.cc.max_connections_set && c.settings.max_connections != 0 &&
      c.rounds > c.settings.max_connections) {
    c.settings.max_connections = c.rounds;
  }
  c.lg = c.conc > 1 || c.hold > 0 || c.rate > 0;
  if (c.lg && (c.out_file || c.out_dir)) {
    cli_fail_usage("%s", "--concurrency, --hold and --rate discard bodies: no "
                         "-o / --output-dir");
  }
  if (c.lg && c.proto == PROTO_HQ && c.rate > 0) {
    cli_fail_usage("%s", "--rate needs --alpn h3");
  }
  if (c.nat_rebinding && c.migrate_ms == 0) {
    cli_fail_usage("%s", "--nat-rebinding needs --migrate-after");
  }
  if (c.lg && (c.token_file || c.session_file || c.stats_json ||
               c.key_update_ms || c.migrate_ms || c.retry_max)) {
    cli_fail_usage("%s",
                   "--token-file, --session-file, --stats-json, "
                   "--key-update, --migrate-after and --retry are not for "
                   "the load generator");
  }
  if (c.retry_max > 0 && c.proto != PROTO_H3) {
    cli_fail_usage("%s", "--retry needs --alpn h3");
  }
  /* The load generator holds many connections with streams open: no
   * PINGs or stall timer unless asked for. */
  if (stream_keep_alive == UINT64_MAX) {
    stream_keep_alive =
        c.lg ? 0 : (uint64_t)DEFAULT_STREAM_KEEP_ALIVE_MS * 1000000u;
  }
  if (stall_timeout == UINT64_MAX) {
    stall_timeout = c.lg ? 0 : (uint64_t)DEFAULT_STALL_TIMEOUT_S * 1000000000u;
  }
  c.settings.stream_keep_alive = stream_keep_alive;
  c.settings.stall_timeout = stall_timeout;
  cli_common_apply(&c.cc, &c.settings);
  if (c.limit_rate != 0) {
    /* Credit is withheld once the held bytes reach the receive budget;
     * what the peer may still send is its window: keep both to a small
     * part of a second's worth, so the rate holds from the first byte. */
    uint64_t win = c.limit_rate / 8 > 16384 ? c.limit_rate / 8 : 16384;
    if (c.lg) {
      cli_fail_usage("%s", "--limit-rate is not for the load generator");
    }
    c.settings.initial_max_data = c.settings.max_window = win;
    c.settings.initial_max_stream_data = c.settings.max_stream_window = win;
    c.settings.conn_recv_budget = (size_t)(win / 2);
  }
  if (c.token_file) {
    kv_load(&g_tokens, c.token_file);
  }
  if (c.session_file) {
    kv_load(&g_sessions, c.session_file);
  }
  if (c.stats_json && (c.stats = json_array()) == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  if (ca && access(ca, R_OK) != 0) {
    snprintf(err, sizeof(err), "cannot read CA file %s: %s", ca,
             strerror(errno));
    cli_fail_usage("%s", err);
  }

  /* QUIC versions: --quic-version V alone offers V only (as gtlsclient -v
   * does); --quic-versions LIST offers LIST, starting in V if given, else
   * in v1 if listed, else in the first of LIST. */
  if (quic_version != 0 && !quic_versions_set) {
    c.settings.quic_versions[0] = quic_version;
    c.settings.quic_versionslen = 1;
  }
  if (quic_version == 0) {
    quic_version = c.settings.quic_versions[0];
    for (i = 0; i < c.settings.quic_versionslen; ++i) {
      if (c.settings.quic_versions[i] == UVQ_QUIC_V1) {
        quic_version = UVQ_QUIC_V1;
      }
    }
  }
  for (i = 0; i < c.settings.quic_versionslen; ++i) {
    if (c.settings.quic_versions[i] == quic_version) {
      break;
    }
  }
  if (i == c.settings.quic_versionslen) {
    cli_fail_usage("--quic-version %s is not in --quic-versions",
                   cli_quic_version_name(quic_version));
  }
  c.settings.client_chosen_version = quic_version;

  /* Parse and group by HOST:PORT, in order of first appearance. */
  c.urls = calloc(c.nurls, sizeof(*c.urls));
  c.groups = calloc(c.nurls, sizeof(*c.groups));
  if (c.urls == NULL || c.groups == NULL) {
    cli_fail_usage("%s", "out of memory");
  }
  for (i = 0; i < c.nurls; ++i) {
    url *u = &c.urls[i];
    if (parse_url(u, argv[optind + (int)i], err, sizeof(err)) != 0) {
      cli_fail_usage("%s", err);
    }
    for (j = 0; j < c.ngroups; ++j) {
      if (strcasecmp(c.groups[j].host, u->host) == 0 &&
          strcmp(c.groups[j].port, u->port) == 0) {
        break;
      }
    }
    if (j == c.ngroups) {
      group *g = &c.groups[c.ngroups++];
      socklen_t len;
      snprintf(g->host, sizeof(g->host), "%s", u->host);
      snprintf(g->port, sizeof(g->port), "%s", u->port);
      if (cli_resolve(g->host, g->port, 0, &g->addr, &len, err, sizeof(err)) !=
          0) {
        fprintf(stderr, "uvquic-client: %s\n", err);
        exit(EXIT_RESOLVE);
      }
    }
    u->group = j;
    c.groups[j].nurls++;
  }
  if (c.lg && c.ngroups != 1) {
    cli_fail_usage("%s", "--concurrency, --hold and --rate take URLs of one "
                         "HOST:PORT");
  }
  for (j = 0; j < c.ngroups; ++j) {
    group *g = &c.groups[j];
    g->c = &c;
    /* A group exists for a URL: g->nurls >= 1, which the analyzer cannot
     * see (hence the NOLINTs here and below). */
    /* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
    g->urls = calloc(g->nurls, sizeof(*g->urls));
    g->reqs = c.proto == PROTO_HQ ? calloc(g->nurls, sizeof(*g->reqs)) : NULL;
    if (g->urls == NULL || (c.proto == PROTO_HQ && g->reqs == NULL)) {
      cli_fail_usage("%s", "out of memory");
    }
    g->nurls = 0;
  }
  for (i = 0; i < c.nurls; ++i) {
    group *g = &c.groups[c.urls[i].group];
    g->urls[g->nurls++] = i; /* NOLINT(clang-analyzer-core.NullDereference) */
  }

  uvq_tls_config_default(&tcfg);
  tcfg.ca_file = ca;
  tcfg.insecure = insecure;
  tcfg.alpn = c.proto == PROTO_H3 ? alpn_h3 : alpn_hq;
  tcfg.alpnlen = 1;
  tcfg.hook = tls_hook;
  if (cli_keylog_from_env(&tcfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "uvquic-client: %s\n", err);
    usage_error = 1;
    goto out;
  }
  err[0] = '\0';
  rv = uvq_tls_ctx_new(&c.tls, 0, &tcfg, NULL, err, sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "uvquic-client: TLS setup failed: %s\n",
            err[0] ? err : uvq_strerror(rv));
    usage_error = 1;
    goto out;
  }

  signal(SIGPIPE, SIG_IGN);
  c.loop = uv_default_loop();
  uv_timer_init(c.loop, &c.next);
  c.next.data = &c;
  c.progress = !c.lg && !c.quiet && isatty(STDERR_FILENO);
  if (c.progress) {
    uv_timer_init(c.loop, &c.tick);
    c.tick.data = &c;
    uv_timer_start(&c.tick, on_tick, PROGRESS_MS, PROGRESS_MS);
  }
  /* Installed whatever the inherited disposition: a client started in
   * the background of a script inherits SIGINT ignored, and must still
   * stop cleanly. They do not keep the loop alive. */
  uv_signal_init(c.loop, &c.sigint);
  uv_signal_init(c.loop, &c.sigterm);
  c.sigint.data = c.sigterm.data = &c;
  uv_signal_start(&c.sigint, on_signal, SIGINT);
  uv_signal_start(&c.sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&c.sigint);
  uv_unref((uv_handle_t *)&c.sigterm);
  if (c.limit_rate != 0) {
    uv_timer_init(c.loop, &c.rl_timer);
    c.rl_timer.data = &c;
    c.rl_last = uv_hrtime();
    uv_timer_start(&c.rl_timer, on_rate_tick, 10, 10);
  }
  c.start = uv_hrtime();
  if (c.lg) {
    if (lg_begin(&c) != 0) {
      fprintf(stderr, "uvquic-client: out of memory\n");
      exit(CLI_EXIT_TRANSFER);
    }
  } else {
    start_round(&c);
  }
  uv_run(c.loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&c.sigint, NULL);
  uv_close((uv_handle_t *)&c.sigterm, NULL);
  uv_run(c.loop, UV_RUN_NOWAIT);
  if (c.lg) {
    lg_end(&c);
  }

  if (c.end == 0) {
    c.end = uv_hrtime();
  }
  secs = (double)(c.end - c.start) / 1e9;
  if (!c.quiet && !c.lg) {
    /* ", retries: K (stalled 1, no-viable-path 1)" with --retry. */
    char retries[256] = "";
    if (c.retry_max > 0) {
      const char *sep = " (";
      size_t off = (size_t)snprintf(retries, sizeof(retries), ", retries: %lu",
                                    c.retries);
      for (i = 0; i < RETRY_REASONS; ++i) {
        if (c.retry_why[i] > 0) {
          off +=
              (size_t)snprintf(retries + off, sizeof(retries) - off, "%s%s %lu",
                               sep, retry_reasons[i], c.retry_why[i]);
          sep = ", ";
        }
      }
      if (c.retries > 0) {
        snprintf(retries + off, sizeof(retries) - off, ")");
      }
    }
    fprintf(stderr,
            "downloaded %" PRIu64 " files, %" PRIu64
            " bytes in %.3f s (%.1f Mbit/s)%s\n",
            c.files, c.bytes, secs,
            secs > 0 ? (double)c.bytes * 8 / secs / 1e6 : 0.0, retries);
  }
  if (c.stats != NULL && stats_write(&c) != 0) {
    c.failures++;
  }
  uvq_tls_ctx_del(c.tls);
  uv_loop_close(c.loop);
  cli_common_free(&c.cc);
out:
  kv_free(&g_tokens);
  kv_free(&g_sessions);
  for (j = 0; j < c.ngroups; ++j) {
    free(c.groups[j].urls);
    free(c.groups[j].reqs);
  }
  free(c.groups);
  free(c.urls);
  for (j = 0; j < c.nhdrs; ++j) {
    free((void *)(uintptr_t)c.hdrs[j].name);
    free((void *)(uintptr_t)c.hdrs[j].value);
  }
  free(c.hdrs);
  free(c.body);
  if (c.dump != NULL && c.dump != stdout) {
    fclose(c.dump);
  }
  if (usage_error) {
    return CLI_EXIT_USAGE;
  }
  if (c.interrupted) {
    return c.interrupted == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
  }
  if (c.exit_code != 0) {
    return c.exit_code;
  }
  if (c.write_failed) {
    return EXIT_WRITE;
  }
  return c.failures ? CLI_EXIT_TRANSFER : CLI_EXIT_OK;
}
