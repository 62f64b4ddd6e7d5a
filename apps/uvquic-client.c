/*
 * uvquic-client: downloads files over hq-interop.
 *
 *   uvquic-client [-k|--insecure] [--ca FILE] [-o FILE | --output-dir DIR]
 *                 [--quiet] [--connections N] URL...
 *
 * URL is https://HOST[:PORT]/path. URLs to the same HOST:PORT share one
 * connection (one stream each); different hosts get their own connections
 * on the same client socket (one socket per address family). With
 * --connections N the whole set is fetched N times, one round after
 * another. Exit status: 0 if every download completed, 1 if one failed, 2
 * for bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

#include "app/hq.h"
#include "cli.h"

typedef struct url {
  const char *text;
  char host[256];
  char port[16];
  const char *path;
  size_t group;
} url;

typedef struct client client;

typedef struct group {
  client *c;
  char host[256];
  char port[16];
  struct sockaddr_storage addr;
  size_t *urls;
  size_t nurls;
  uvq_hq_request *reqs;
  uvq_hq_client *cli;
  /* How the last connection ended, when it failed. */
  char close_err[384];
} group;

struct client {
  uv_loop_t *loop;
  uvq_tls_ctx *tls;
  uvq_uv_endpoint *ep4, *ep6;
  url *urls;
  size_t nurls;
  group *groups;
  size_t ngroups;
  const char *out_file;
  const char *out_dir;
  int quiet;
  unsigned long rounds, round;
  size_t active;
  uv_timer_t next;
  uint64_t start, end;
  uint64_t files, bytes, failures;
};

static void fail_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "uvquic-client: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(CLI_EXIT_USAGE);
}

static void usage(FILE *f) {
  fprintf(f, "usage: uvquic-client [-k|--insecure] [--ca FILE] "
             "[-o FILE | --output-dir DIR] [--quiet] [--connections N] "
             "https://HOST:PORT/path...\n");
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
  u->path = slash ? slash : "/";
  if (strpbrk(u->path, "\r\n") != NULL ||
      strlen(u->path) + 6 > UVQ_HQ_MAX_REQUEST) {
    snprintf(err, errlen, "bad URL \"%s\": bad path", text);
    return -1;
  }
  return 0;
}

static const char *base_name(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  return *b ? b : "index.html";
}

static void describe_failure(const group *g, const uvq_hq_request *req,
                             char *buf, size_t buflen) {
  if (req->reset) {
    const char *name = uvq_hq_strerror(req->reset_code);
    snprintf(buf, buflen, "stream reset by server: %s (0x%" PRIx64 ")",
             name ? name : "application error", req->reset_code);
  } else if (req->error == UVQ_ERR_IO && req->sink_errno) {
    snprintf(buf, buflen, "writing the output failed: %s",
             strerror(req->sink_errno));
  } else {
    snprintf(buf, buflen, "%s%s%s", uvq_strerror(req->error),
             g->close_err[0] ? ": " : "", g->close_err);
  }
}

static void close_sinks(group *g) {
  size_t i;

  for (i = 0; i < g->nurls; ++i) {
    if (g->reqs[i].sink_fd >= 0) {
      close(g->reqs[i].sink_fd);
      g->reqs[i].sink_fd = -1;
    }
  }
}

static void round_done(client *c);

static void group_finish(client *c, group *g) {
  char why[512];
  size_t i;

  for (i = 0; i < g->nurls; ++i) {
    uvq_hq_request *req = &g->reqs[i];
    if (req->state == UVQ_HQ_DONE) {
      ++c->files;
      c->bytes += req->bytes;
    } else {
      ++c->failures;
      c->bytes += req->bytes;
      describe_failure(g, req, why, sizeof(why));
      fprintf(stderr, "uvquic-client: %s: %s\n", c->urls[g->urls[i]].text, why);
    }
  }
  close_sinks(g);
  if (--c->active == 0) {
    round_done(c);
  }
}

static void on_hq_done(uvq_hq_client *cli, const uvq_close_info *ci,
                       void *user_data) {
  group *g = user_data;

  g->close_err[0] = '\0';
  if (ci->error != 0) {
    snprintf(g->close_err, sizeof(g->close_err),
             "connection closed by %s, code 0x%" PRIx64 "%s%.*s%s",
             ci->origin == UVQ_CLOSE_PEER      ? "peer"
             : ci->origin == UVQ_CLOSE_TIMEOUT ? "timeout"
                                               : "us",
             ci->code, ci->reasonlen ? ", reason \"" : "",
             (int)(ci->reasonlen > 200 ? 200 : ci->reasonlen),
             ci->reasonlen ? (const char *)ci->reason : "",
             ci->reasonlen ? "\"" : "");
  }
  uvq_hq_client_del(cli);
  g->cli = NULL;
}

static void group_done_cb(uvq_hq_client *cli, const uvq_close_info *ci,
                          void *user_data);

static int open_sink(client *c, const char *path) {
  char full[4096];
  const char *target = c->out_file;
  int fd;

  if (c->out_file == NULL && c->out_dir == NULL) {
    return -1;
  }
  if (target == NULL) {
    snprintf(full, sizeof(full), "%s/%s", c->out_dir, base_name(path));
    target = full;
  }
  fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "uvquic-client: cannot open output %s: %s\n", target,
            strerror(errno));
    exit(CLI_EXIT_USAGE);
  }
  return fd;
}

static uvq_uv_endpoint *endpoint_for(client *c, int family, int *prv) {
  uvq_uv_endpoint **pep = family == AF_INET6 ? &c->ep6 : &c->ep4;

  *prv = 0;
  if (*pep == NULL) {
    *prv = uvq_uv_client_new(pep, c->loop, family, NULL, NULL, c->tls, c);
    if (*prv != 0) {
      *pep = NULL;
    }
  }
  return *pep;
}

static void start_round(client *c) {
  size_t gi, i;

  c->active = c->ngroups;
  for (gi = 0; gi < c->ngroups; ++gi) {
    group *g = &c->groups[gi];
    uvq_uv_endpoint *ep;
    int rv;

    g->close_err[0] = '\0';
    for (i = 0; i < g->nurls; ++i) {
      memset(&g->reqs[i], 0, sizeof(g->reqs[i]));
      g->reqs[i].path = c->urls[g->urls[i]].path;
      g->reqs[i].sink_fd = open_sink(c, g->reqs[i].path);
    }
    rv = uvq_hq_client_new(&g->cli, g->reqs, g->nurls, NULL, group_done_cb, g);
    if (rv == 0) {
      ep = endpoint_for(c, g->addr.ss_family, &rv);
      if (ep != NULL) {
        rv = uvq_connect(ep, (struct sockaddr *)&g->addr, g->host,
                         uvq_hq_client_callbacks(), g->cli, NULL);
      }
      if (rv != 0) {
        uvq_hq_client_del(g->cli);
        g->cli = NULL;
      }
    }
    if (rv != 0) {
      for (i = 0; i < g->nurls; ++i) {
        g->reqs[i].state = UVQ_HQ_FAILED;
        g->reqs[i].error = rv;
      }
      snprintf(g->close_err, sizeof(g->close_err), "cannot connect to %s:%s",
               g->host, g->port);
      group_finish(c, g);
    }
  }
}

static void group_done_cb(uvq_hq_client *cli, const uvq_close_info *ci,
                          void *user_data) {
  group *g = user_data;

  on_hq_done(cli, ci, g);
  group_finish(g->c, g);
}

static void on_endpoint_closed(uvq_uv_endpoint *uep, void *user_data) {
  (void)uep;
  (void)user_data;
}

static void on_next(uv_timer_t *t) {
  client *c = t->data;

  if (++c->round < c->rounds) {
    start_round(c);
    return;
  }
  c->end = uv_hrtime();
  uv_close((uv_handle_t *)&c->next, NULL);
  if (c->ep4) {
    uvq_uv_endpoint_close(c->ep4, on_endpoint_closed);
  }
  if (c->ep6) {
    uvq_uv_endpoint_close(c->ep6, on_endpoint_closed);
  }
}

static void round_done(client *c) {
  /* Called from inside the library's callbacks: continue from the loop. */
  uv_timer_start(&c->next, on_next, 0, 0);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"insecure", no_argument, NULL, 'k'},
      {"ca", required_argument, NULL, 'C'},
      {"output", required_argument, NULL, 'o'},
      {"output-dir", required_argument, NULL, 'd'},
      {"quiet", no_argument, NULL, 'q'},
      {"connections", required_argument, NULL, 'n'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static const char *const alpn[] = {UVQ_HQ_ALPN};
  char err[1024];
  uvq_tls_config tcfg;
  const char *ca = NULL;
  int insecure = 0, usage_error = 0, ch, rv;
  size_t i, j;
  client c;
  double secs;

  memset(&c, 0, sizeof(c));
  c.rounds = 1;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":kho:q", opts, NULL)) != -1) {
    switch (ch) {
    case 'k':
      insecure = 1;
      break;
    case 'C':
      ca = optarg;
      break;
    case 'o':
      c.out_file = optarg;
      break;
    case 'd':
      c.out_dir = optarg;
      break;
    case 'q':
      c.quiet = 1;
      break;
    case 'n': {
      char *end;
      errno = 0;
      c.rounds = strtoul(optarg, &end, 10);
      if (errno || *end || optarg[0] == '-' || c.rounds == 0 ||
          c.rounds > 1000000) {
        fail_usage("bad --connections \"%s\" (1..1000000)", optarg);
      }
      break;
    }
    case 'h':
      usage(stdout);
      return CLI_EXIT_OK;
    case ':':
      fail_usage("option %s needs an argument", argv[optind - 1]);
      break;
    default:
      if (optopt) {
        char opt[3] = {'-', (char)optopt, '\0'};
        fail_usage("unknown option %s", opt);
      }
      fail_usage("unknown option %s", argv[optind - 1]);
    }
  }
  c.nurls = (size_t)(argc - optind);
  if (c.nurls == 0) {
    fail_usage("%s", "no URL given");
  }
  if (c.out_file && c.out_dir) {
    fail_usage("%s", "-o and --output-dir exclude each other");
  }
  if (c.out_file && c.nurls != 1) {
    fail_usage("%s", "-o takes exactly one URL");
  }
  if (c.out_dir) {
    struct stat sb;
    if (stat(c.out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      fail_usage("--output-dir %s is not a directory", c.out_dir);
    }
  }
  if (ca && access(ca, R_OK) != 0) {
    snprintf(err, sizeof(err), "cannot read CA file %s: %s", ca,
             strerror(errno));
    fail_usage("%s", err);
  }

  /* Parse and group by HOST:PORT, in order of first appearance. */
  c.urls = calloc(c.nurls, sizeof(*c.urls));
  c.groups = calloc(c.nurls, sizeof(*c.groups));
  if (c.urls == NULL || c.groups == NULL) {
    fail_usage("%s", "out of memory");
  }
  for (i = 0; i < c.nurls; ++i) {
    url *u = &c.urls[i];
    if (parse_url(u, argv[optind + (int)i], err, sizeof(err)) != 0) {
      fail_usage("%s", err);
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
        fail_usage("%s", err);
      }
    }
    u->group = j;
    c.groups[j].nurls++;
  }
  for (j = 0; j < c.ngroups; ++j) {
    group *g = &c.groups[j];
    g->c = &c;
    g->urls = calloc(g->nurls, sizeof(*g->urls));
    g->reqs = calloc(g->nurls, sizeof(*g->reqs));
    if (g->urls == NULL || g->reqs == NULL) {
      fail_usage("%s", "out of memory");
    }
    g->nurls = 0;
  }
  for (i = 0; i < c.nurls; ++i) {
    group *g = &c.groups[c.urls[i].group];
    g->urls[g->nurls++] = i;
  }

  uvq_tls_config_default(&tcfg);
  tcfg.ca_file = ca;
  tcfg.insecure = insecure;
  tcfg.alpn = alpn;
  tcfg.alpnlen = 1;
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
  c.start = uv_hrtime();
  start_round(&c);
  uv_run(c.loop, UV_RUN_DEFAULT);

  if (c.end == 0) {
    c.end = uv_hrtime();
  }
  secs = (double)(c.end - c.start) / 1e9;
  if (!c.quiet) {
    fprintf(stderr,
            "downloaded %" PRIu64 " files, %" PRIu64
            " bytes in %.3f s (%.1f Mbit/s)\n",
            c.files, c.bytes, secs,
            secs > 0 ? (double)c.bytes * 8 / secs / 1e6 : 0.0);
  }
  uvq_tls_ctx_del(c.tls);
  uv_loop_close(c.loop);
out:
  for (j = 0; j < c.ngroups; ++j) {
    free(c.groups[j].urls);
    free(c.groups[j].reqs);
  }
  free(c.groups);
  free(c.urls);
  if (usage_error) {
    return CLI_EXIT_USAGE;
  }
  return c.failures ? CLI_EXIT_TRANSFER : CLI_EXIT_OK;
}
