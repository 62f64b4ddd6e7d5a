/*
 * uvquic-server: serves a directory over hq-interop.
 *
 *   uvquic-server [--listen HOST:PORT] [--root DIR] [--cert FILE --key FILE]
 *                 [--retry] [--quiet] [--write-cert FILE]
 *
 * Prints "listening on HOST:PORT" once bound; SIGINT / SIGTERM close every
 * connection gracefully, print the endpoint's counters (unless --quiet) and
 * exit 0. Bad arguments exit 2 with a one-line message.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

#include "app/hq.h"
#include "cli.h"
#include "core/tls.h"

typedef struct server {
  uv_loop_t *loop;
  uvq_listener *listener;
  uvq_hq_server *hq;
  uv_signal_t sigint, sigterm;
  int quiet;
  int closing;
} server;

static void usage(FILE *f) {
  fprintf(f,
          "usage: uvquic-server [--listen HOST:PORT] [--root DIR] "
          "[--cert FILE --key FILE] [--retry] [--quiet] [--write-cert FILE]\n");
}

static void fail_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "uvquic-server: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  exit(CLI_EXIT_USAGE);
}

static int on_accept(uvq_listener *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks,
                     void **pconn_user_data, void *user_data) {
  server *s = user_data;

  (void)l;
  if (info->alpnlen == sizeof(UVQ_HQ_ALPN) - 1 &&
      memcmp(info->alpn, UVQ_HQ_ALPN, info->alpnlen) == 0) {
    return uvq_hq_server_accept(s->hq, conn, pcallbacks, pconn_user_data);
  }
  /* No application for this ALPN: CONNECTION_REFUSED. */
  return UVQ_ERR_REFUSED;
}

static void print_stats(uvq_endpoint *ep) {
  uvq_endpoint_stats st;
  uint64_t dropped = 0;
  char reasons[1024];
  size_t off = 0;
  int r;

  uvq_endpoint_get_stats(ep, &st);
  reasons[0] = '\0';
  for (r = 0; r < UVQ_DROP_REASON_COUNT; ++r) {
    if (st.dropped[r] == 0) {
      continue;
    }
    dropped += st.dropped[r];
    if (off < sizeof(reasons)) {
      int n = snprintf(reasons + off, sizeof(reasons) - off, "%s%s=%" PRIu64,
                       off ? " " : "", uvq_drop_reason_name((uvq_drop_reason)r),
                       st.dropped[r]);
      if (n > 0) {
        off += (size_t)n;
      }
    }
  }
  printf("stats: received=%" PRIu64 " dropped=%" PRIu64 " (%s) sent=%" PRIu64
         " connections=%" PRIu64 " version_negotiations=%" PRIu64
         " retries=%" PRIu64 " stateless_closes=%" PRIu64 "\n",
         st.datagrams_received, dropped, off ? reasons : "none",
         st.datagrams_sent, st.connections_total, st.version_negotiations_sent,
         st.retries_sent, st.stateless_closes_sent);
  fflush(stdout);
}

static void on_listener_closed(uvq_uv_endpoint *uep, void *user_data) {
  server *s = user_data;

  if (!s->quiet) {
    print_stats(uvq_uv_endpoint_get_endpoint(uep));
  }
  s->listener = NULL;
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  server *s = h->data;

  (void)signum;
  if (s->closing) {
    /* A second signal: the user does not want to wait. */
    exit(CLI_EXIT_TRANSFER);
  }
  s->closing = 1;
  uvq_listener_close(s->listener, on_listener_closed);
}

static int write_cert(uvq_tls_ctx *tls, const char *path) {
  ssize_t len = uvq_tls_ctx_get_cert_pem(tls, NULL, 0);
  char *pem;
  FILE *f;
  int ok;

  if (len < 0) {
    fprintf(stderr, "uvquic-server: cannot get the certificate: %s\n",
            uvq_strerror((int)len));
    return -1;
  }
  pem = malloc((size_t)len + 1);
  if (pem == NULL ||
      uvq_tls_ctx_get_cert_pem(tls, pem, (size_t)len + 1) != len) {
    fprintf(stderr, "uvquic-server: cannot get the certificate\n");
    free(pem);
    return -1;
  }
  f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "uvquic-server: cannot write certificate to %s: %s\n", path,
            strerror(errno));
    free(pem);
    return -1;
  }
  ok = fwrite(pem, 1, (size_t)len, f) == (size_t)len;
  ok = (fclose(f) == 0) && ok;
  free(pem);
  if (!ok) {
    fprintf(stderr, "uvquic-server: cannot write certificate to %s\n", path);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"root", required_argument, NULL, 'r'},
      {"cert", required_argument, NULL, 'c'},
      {"key", required_argument, NULL, 'K'},
      {"retry", no_argument, NULL, 'R'},
      {"quiet", no_argument, NULL, 'q'},
      {"write-cert", required_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *listen_arg = "127.0.0.1:4433", *root = ".", *cert = NULL,
             *key = NULL, *cert_out = NULL;
  static const char *const alpn[] = {UVQ_HQ_ALPN};
  char host[256], port[16], err[512], addrbuf[128];
  struct sockaddr_storage ss;
  socklen_t sslen;
  uvq_tls_config tcfg;
  uvq_settings settings;
  uvq_tls_ctx *tls = NULL;
  uvq_addr bound;
  unsigned int hqflags = 0;
  int retry = 0, c, rv;
  server s;

  memset(&s, 0, sizeof(s));
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
    switch (c) {
    case 'l':
      listen_arg = optarg;
      break;
    case 'r':
      root = optarg;
      break;
    case 'c':
      cert = optarg;
      break;
    case 'K':
      key = optarg;
      break;
    case 'R':
      retry = 1;
      break;
    case 'q':
      s.quiet = 1;
      break;
    case 'w':
      cert_out = optarg;
      break;
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
  if (optind < argc) {
    fail_usage("unexpected argument \"%s\"", argv[optind]);
  }
  if ((cert == NULL) != (key == NULL)) {
    fail_usage("%s", "--cert and --key go together");
  }
  if (cli_split_hostport(listen_arg, NULL, host, sizeof(host), port,
                         sizeof(port), err, sizeof(err)) != 0 ||
      cli_resolve(host, port, 1, &ss, &sslen, err, sizeof(err)) != 0) {
    fail_usage("bad --listen: %s", err);
  }
  /* A test knob: exercise the resolver used where openat2 is missing. */
  if (getenv("UVQUIC_HQ_NO_OPENAT2") != NULL) {
    hqflags |= UVQ_HQ_SERVER_NO_OPENAT2;
  }
  if (uvq_hq_server_new(&s.hq, root, hqflags, NULL, err, sizeof(err)) != 0) {
    fail_usage("%s", err);
  }

  uvq_tls_config_default(&tcfg);
  tcfg.cert_file = cert;
  tcfg.key_file = key;
  tcfg.alpn = alpn;
  tcfg.alpnlen = 1;
  err[0] = '\0';
  rv = uvq_tls_ctx_new(&tls, 1, &tcfg, NULL, err, sizeof(err));
  if (rv != 0) {
    fprintf(stderr, "uvquic-server: TLS setup failed: %s\n",
            err[0] ? err : uvq_strerror(rv));
    goto fail_tls;
  }
  if (cert_out && write_cert(tls, cert_out) != 0) {
    goto fail_listen;
  }

  uvq_settings_default(&settings);
  if (retry) {
    settings.retry = UVQ_RETRY_ALWAYS;
  }
  s.loop = uv_default_loop();
  rv = uvq_listen(&s.listener, s.loop, (struct sockaddr *)&ss, &settings, tls,
                  on_accept, &s);
  if (rv != 0) {
    fprintf(stderr, "uvquic-server: cannot listen on %s: %s%s%s\n", listen_arg,
            uvq_strerror(rv), rv == UVQ_ERR_IO ? ": " : "",
            rv == UVQ_ERR_IO ? strerror(errno) : "");
    goto fail_listen;
  }
  uvq_uv_endpoint_get_local_addr(s.listener, &bound);
  cli_format_addr((struct sockaddr *)&bound.ss, addrbuf, sizeof(addrbuf));
  printf("listening on %s\n", addrbuf);
  fflush(stdout);

  uv_signal_init(s.loop, &s.sigint);
  uv_signal_init(s.loop, &s.sigterm);
  s.sigint.data = s.sigterm.data = &s;
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  signal(SIGPIPE, SIG_IGN);

  uv_run(s.loop, UV_RUN_DEFAULT);

  uvq_hq_server_del(s.hq);
  uvq_tls_ctx_del(tls);
  uv_loop_close(s.loop);
  return CLI_EXIT_OK;

fail_listen:
  uvq_tls_ctx_del(tls);
fail_tls:
  uvq_hq_server_del(s.hq);
  return CLI_EXIT_USAGE;
}
