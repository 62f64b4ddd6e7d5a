/*
 * hq_echo_server: a QUIC server on libuv that answers every hq-interop
 * request ("GET /path\r\n", then FIN) with the path it asked for, written
 * with the core's stream API. Try it with hq_echo_client.
 *
 *   hq_echo_server [PORT]        (0 or none: the kernel picks one)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uvquic/uvquic.h>
#include <uvquic/uvquic_hq.h>
#include <uvquic/uvquic_uv.h>

/* One request stream: the request line as it arrives. */
typedef struct request {
  char line[UVQ_HQ_MAX_REQUEST];
  size_t len;
} request;

static int on_stream_data(uvq_conn *conn, int64_t stream_id,
                          const uint8_t *data, size_t len, int fin,
                          void *user_data, void *stream_user_data) {
  request *req = stream_user_data;
  char *path, *end;
  (void)user_data;
  if (req == NULL) { /* the stream's first bytes */
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
      return UVQ_ERR_NOMEM; /* closes the connection */
    }
    uvq_stream_set_user_data(conn, stream_id, req);
  }
  if (len > sizeof(req->line) - 1 - req->len) {
    return uvq_stream_reset(conn, stream_id, UVQ_HQ_ERR_BAD_REQUEST);
  }
  memcpy(req->line + req->len, data, len); /* data is lent for the call */
  req->len += len;
  if (!fin) {
    return 0;
  }
  req->line[req->len] = '\0';
  end = strpbrk(req->line, "\r\n");
  if (strncmp(req->line, "GET /", 5) != 0 || end == NULL) {
    return uvq_stream_reset(conn, stream_id, UVQ_HQ_ERR_BAD_REQUEST);
  }
  path = req->line + 4;
  *end++ = '\n'; /* answer "/path\n" */
  /* Copied into the stream's send buffer; FIN once it is all sent. */
  if (uvq_stream_write(conn, stream_id, (const uint8_t *)path,
                       (size_t)(end - path), 1) != end - path) {
    return uvq_stream_reset(conn, stream_id, UVQ_HQ_ERR_INTERNAL);
  }
  return 0;
}

static void on_stream_closed(uvq_conn *conn, int64_t stream_id,
                             uint64_t app_error, void *user_data,
                             void *stream_user_data) {
  (void)conn, (void)stream_id, (void)app_error, (void)user_data;
  free(stream_user_data);
}

static const uvq_app_callbacks echo_app = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_stream_data = on_stream_data,
    .on_stream_closed = on_stream_closed,
};

static int on_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks, void **pconn_ud,
                     void *user_data) {
  (void)l, (void)conn, (void)info, (void)user_data;
  *pcallbacks = &echo_app; /* info->alpn is "hq-interop": the only one */
  *pconn_ud = NULL;
  return 0; /* < 0 refuses the connection */
}

int main(int argc, char **argv) {
  const char *alpn[] = {UVQ_HQ_ALPN};
  char errbuf[256];
  struct sockaddr_in addr;
  uvq_tls_config tc;
  uvq_tls_ctx *tls;
  uvq_uv_endpoint *l;
  uvq_addr bound;
  int rv;

  uvq_tls_config_default(&tc);
  tc.alpn = alpn;
  tc.alpnlen = 1; /* no cert_file/key_file: an ephemeral certificate */
  rv = uvq_tls_ctx_new(&tls, 1, &tc, NULL, errbuf, sizeof(errbuf));
  if (rv != 0) {
    fprintf(stderr, "tls: %s\n", errbuf);
    return 1;
  }
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &addr);
  rv = uvq_uv_listen(&l, uv_default_loop(), (const struct sockaddr *)&addr,
                     NULL, NULL, tls, on_accept, NULL);
  if (rv != 0) {
    fprintf(stderr, "listen: %s\n", uvq_strerror(rv));
    return 1;
  }
  uvq_uv_endpoint_get_local_addr(l, &bound);
  printf("listening on 127.0.0.1:%d\n",
         ntohs(((struct sockaddr_in *)&bound.ss)->sin_port));
  fflush(stdout);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* until the process is killed */
  return 0;
}
