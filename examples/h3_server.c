/*
 * h3_server: an HTTP/3 server on libuv answering from memory: GET / gets a
 * greeting, anything else a 404. Try it with h3_client or any HTTP/3
 * client that accepts its ephemeral certificate (curl --http3-only -k).
 *
 *   h3_server [PORT]        (0 or none: the kernel picks one)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uvquic/uvquic.h>
#include <uvquic/uvquic_h3.h>
#include <uvquic/uvquic_uv.h>

static const char greeting[] = "hello from uvquic over HTTP/3\n";
static const char not_found[] = "not found\n";

static int on_request(uvq_h3_stream *st, const uvq_h3_request_info *req,
                      void *user_data) {
  int root = req->pathlen == 1 && req->path[0] == '/';
  const char *body = root ? greeting : not_found;
  uvq_h3_header ct = {"content-type", 12, "text/plain", 10};
  uvq_h3_response resp = {
      .status = root ? 200 : 404, .headers = &ct, .nheaders = 1};
  (void)user_data;
  fprintf(stderr, "%.*s %.*s -> %u\n", (int)req->methodlen, req->method,
          (int)req->pathlen, req->path, resp.status);
  /* The body is static: borrowed (copy 0), nothing to free. The response
   * struct itself is copied by uvq_h3_respond. */
  resp.body.type = UVQ_H3_BODY_BUFFER;
  resp.body.data = (const uint8_t *)body;
  resp.body.len = strlen(body);
  return uvq_h3_respond(st, &resp); /* nonzero resets the stream */
}

static int on_accept(uvq_uv_endpoint *l, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks, void **pconn_ud,
                     void *user_data) {
  uvq_h3_server *srv = user_data;
  (void)l, (void)info;
  /* uvq_conn_get_now: the time of the call that runs this callback, on
   * the adapter's clock (uv_hrtime). */
  return uvq_h3_server_accept(srv, conn, uvq_conn_get_now(conn), pcallbacks,
                              pconn_ud);
}

int main(int argc, char **argv) {
  const char *alpn[] = {UVQ_H3_ALPN};
  char errbuf[256];
  struct sockaddr_in addr;
  uvq_h3_server_config cfg;
  uvq_h3_server *srv;
  uvq_tls_config tc;
  uvq_tls_ctx *tls;
  uvq_uv_endpoint *l;
  uvq_addr bound;
  int rv;

  uvq_h3_server_config_default(&cfg);
  cfg.on_request = on_request;
  rv = uvq_h3_server_new(&srv, &cfg);
  if (rv != 0) {
    fprintf(stderr, "h3: %s\n", uvq_h3_strerror(rv));
    return 1;
  }
  uvq_tls_config_default(&tc);
  tc.alpn = alpn;
  tc.alpnlen = 1;
  rv = uvq_tls_ctx_new(&tls, 1, &tc, NULL, errbuf, sizeof(errbuf));
  if (rv != 0) {
    fprintf(stderr, "tls: %s\n", errbuf);
    return 1;
  }
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 0, &addr);
  rv = uvq_uv_listen(&l, uv_default_loop(), (const struct sockaddr *)&addr,
                     NULL, NULL, tls, on_accept, srv);
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
