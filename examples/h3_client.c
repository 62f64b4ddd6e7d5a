/*
 * h3_client: fetches one URL over HTTP/3 with the library's h3 client on
 * libuv and writes the body to stdout, the status to stderr.
 *
 *   h3_client https://HOST:PORT/PATH     (the certificate is not verified)
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uvquic/uvquic.h>
#include <uvquic/uvquic_h3.h>
#include <uvquic/uvquic_uv.h>

static uvq_uv_endpoint *client;
static int result = 1;

static void on_response(uvq_h3_stream *st, unsigned int status,
                        const uvq_h3_header *headers, size_t nheaders,
                        void *user_data) {
  (void)st, (void)headers, (void)nheaders, (void)user_data;
  fprintf(stderr, "status %u\n", status);
  result = status == 200 ? 0 : 1;
}

static void on_data(uvq_h3_stream *st, const uint8_t *data, size_t len,
                    void *user_data) {
  (void)st, (void)user_data;
  fwrite(data, 1, len, stdout); /* lent for the call */
}

static void on_complete(uvq_h3_stream *st, int error, uint64_t app_error,
                        void *user_data) {
  (void)user_data;
  if (error != 0) {
    fprintf(stderr, "failed: %s (0x%llx)\n", uvq_h3_strerror(error),
            (unsigned long long)app_error);
    result = 1;
  }
  /* One request: close the connection; on_closed follows. */
  uvq_conn_close(uvq_h3_conn_get_conn(uvq_h3_stream_get_conn(st)),
                 UVQ_H3_NO_ERROR, "done");
}

static void on_closed(uvq_h3_conn *h3, const uvq_close_info *ci, void *ud) {
  (void)ci, (void)ud;
  uvq_h3_conn_del(h3);                 /* allowed here, its last callback */
  uvq_uv_endpoint_close(client, NULL); /* then uv_run returns */
}

int main(int argc, char **argv) {
  const char *alpn[] = {UVQ_H3_ALPN};
  char host[256], port[8] = "443", errbuf[256], authority[300];
  const char *path = "/";
  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai;
  uvq_h3_client_config ccfg;
  uvq_h3_request req;
  uvq_tls_config tc;
  uvq_tls_ctx *tls;
  uvq_h3_conn *h3;
  int rv;

  if (argc != 2 ||
      sscanf(argv[1], "https://%255[^:/]:%7[0-9]", host, port) < 1) {
    fprintf(stderr, "usage: %s https://HOST[:PORT]/PATH\n", argv[0]);
    return 2;
  }
  if (strchr(argv[1] + 8, '/') != NULL) {
    path = strchr(argv[1] + 8, '/');
  }
  snprintf(authority, sizeof(authority), "%s:%s", host, port);
  if (getaddrinfo(host, port, &hints, &ai) != 0) {
    fprintf(stderr, "cannot resolve %s\n", host);
    return 1;
  }
  uvq_tls_config_default(&tc);
  tc.alpn = alpn;
  tc.alpnlen = 1;
  tc.insecure = 1; /* an example: set ca_file instead in real use */
  if (uvq_tls_ctx_new(&tls, 0, &tc, NULL, errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "tls: %s\n", errbuf);
    return 1;
  }
  uvq_h3_client_config_default(&ccfg);
  ccfg.on_closed = on_closed;
  uvq_h3_request_init(&req);
  req.method = "GET";
  req.scheme = "https";
  req.authority = authority;
  req.path = path; /* copied, like every field */
  req.cb.on_response = on_response;
  req.cb.on_data = on_data;
  req.cb.on_complete = on_complete;

  rv = uvq_uv_client_new(&client, uv_default_loop(), ai->ai_family, NULL, NULL,
                         NULL, tls, NULL);
  if (rv == 0 && (rv = uvq_h3_conn_client_new(&h3, &ccfg)) == 0) {
    /* Submitted before the handshake: sent as soon as it completes. */
    rv = uvq_h3_submit(h3, &req, NULL);
    if (rv == 0) {
      rv = uvq_uv_connect(client, ai->ai_addr, host, uvq_h3_callbacks(), h3,
                          NULL);
    }
    if (rv != 0) {
      uvq_h3_conn_del(h3); /* never connected: on_closed will not fire */
    }
  }
  freeaddrinfo(ai);
  if (rv != 0) {
    fprintf(stderr, "connect: %s\n", uvq_h3_strerror(rv));
    return 1;
  }
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  uvq_tls_ctx_del(tls);
  return result;
}
