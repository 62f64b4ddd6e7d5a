/*
 * hq_echo_client: fetches paths over hq-interop (HTTP/0.9 over QUIC) with
 * the library's hq client on libuv, one stream per path on one connection,
 * and writes each response to stdout. Against hq_echo_server it prints the
 * paths back; against uvquic-server, the files.
 *
 *   hq_echo_client HOST PORT PATH...     (the certificate is not verified)
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uvquic/uvquic.h>
#include <uvquic/uvquic_hq.h>
#include <uvquic/uvquic_uv.h>

static uvq_uv_endpoint *client;
static int failures;

static void on_done(uvq_hq_client *cli, const uvq_close_info *ci, void *arg) {
  uvq_hq_request *reqs = arg;
  size_t n = uvq_hq_client_completed(cli);
  (void)ci;
  for (size_t i = 0; reqs[i].path != NULL; i++) {
    if (reqs[i].state != UVQ_HQ_DONE) {
      fprintf(stderr, "%s: failed (%s)\n", reqs[i].path,
              reqs[i].reset ? uvq_hq_strerror(reqs[i].reset_code)
                            : uvq_strerror(reqs[i].error));
      failures++;
    }
  }
  fprintf(stderr, "%zu request(s) done\n", n);
  uvq_hq_client_del(cli); /* allowed here: done is its last callback */
  uvq_uv_endpoint_close(client, NULL); /* then uv_run returns */
}

int main(int argc, char **argv) {
  const char *alpn[] = {UVQ_HQ_ALPN};
  char errbuf[256];
  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai;
  uvq_hq_request *reqs;
  uvq_tls_config tc;
  uvq_tls_ctx *tls;
  uvq_hq_client *cli;
  int rv, nreqs = argc - 3;

  if (nreqs < 1) {
    fprintf(stderr, "usage: %s HOST PORT PATH...\n", argv[0]);
    return 2;
  }
  if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0) {
    fprintf(stderr, "cannot resolve %s\n", argv[1]);
    return 1;
  }
  /* The requests: the client fills in their outcome; NULL path ends. */
  reqs = calloc((size_t)nreqs + 1, sizeof(*reqs));
  for (int i = 0; i < nreqs; i++) {
    reqs[i].path = argv[3 + i];
    reqs[i].sink_fd = STDOUT_FILENO;
  }

  uvq_tls_config_default(&tc);
  tc.alpn = alpn;
  tc.alpnlen = 1;
  tc.insecure = 1; /* an example: set ca_file instead in real use */
  rv = uvq_tls_ctx_new(&tls, 0, &tc, NULL, errbuf, sizeof(errbuf));
  if (rv != 0) {
    fprintf(stderr, "tls: %s\n", errbuf);
    return 1;
  }
  rv = uvq_uv_client_new(&client, uv_default_loop(), ai->ai_family, NULL, NULL,
                         NULL, tls, NULL);
  if (rv == 0) {
    rv = uvq_hq_client_new(&cli, reqs, (size_t)nreqs, NULL, on_done, reqs);
  }
  if (rv == 0) {
    rv = uvq_uv_connect(client, ai->ai_addr, argv[1], uvq_hq_client_callbacks(),
                        cli, NULL);
    if (rv != 0) {
      uvq_hq_client_del(cli); /* never started: done will not fire */
    }
  }
  freeaddrinfo(ai);
  if (rv != 0) {
    fprintf(stderr, "connect: %s\n", uvq_strerror(rv));
    return 1;
  }
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  uvq_tls_ctx_del(tls); /* after the endpoint that used it is gone */
  free(reqs);
  return failures ? 1 : 0;
}
