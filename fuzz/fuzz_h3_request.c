/*
 * libFuzzer harness: the HTTP/3 server's request path. A persistent world
 * holds an h3 server (src/app) and a raw client connection speaking ALPN
 * "h3" with plain uvquic streams, so it can write anything. Each input:
 *   [flags][split][bytes...]
 * The bytes after |split| (if flags bit 0) go first on a new client
 * unidirectional stream (a control or QPACK stream, or garbage); the rest
 * go on a new bidirectional request stream, with FIN unless bit 1. Then
 * the world runs for 50 ms of fake time. A connection the server closed
 * (H3 errors close it) is replaced before the next input. The endpoints'
 * randomness is seeded and re-seeded from each input, and the clock is the
 * world's fake one, so a crash file replays the same draws in a fresh
 * process (GnuTLS's own randomness aside).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qtest.h"
#include "uvquic/uvquic_h3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static qt_world *fh_w;
static int fh_s, fh_c;
static uvq_h3_server *fh_srv;
static uvq_conn *fh_cli;
static int fh_up, fh_dead;

static int fh_on_request(uvq_h3_stream *st, const uvq_h3_request_info *req,
                         void *ud) {
  uvq_h3_response resp;
  static const uint8_t body[] = "ok\n";
  (void)req;
  (void)ud;
  memset(&resp, 0, sizeof(resp));
  resp.status = 200;
  resp.body.type = UVQ_H3_BODY_BUFFER;
  resp.body.data = body;
  resp.body.len = sizeof(body) - 1;
  return uvq_h3_respond(st, &resp);
}

static int fh_on_accept(uvq_endpoint *ep, uvq_conn *conn,
                        const uvq_accept_info *info,
                        const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  return uvq_h3_server_accept(fh_srv, conn, fh_w->now, pcb, pud);
}

static int fh_on_established(uvq_conn *conn, void *ud) {
  (void)conn;
  (void)ud;
  fh_up = 1;
  return 0;
}

static void fh_on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  (void)conn;
  (void)ci;
  (void)ud;
  fh_cli = NULL;
  fh_dead = 1;
}

static const uvq_app_callbacks fh_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = fh_on_established,
    .on_closed = fh_on_closed,
};

static int fh_ready(void *ud) {
  (void)ud;
  return fh_up || fh_dead;
}

static void fh_connect(void) {
  fh_up = fh_dead = 0;
  if (qt_connect(fh_w, fh_c, fh_s, &fh_cb, NULL, &fh_cli) != 0) {
    abort();
  }
  qt_run(fh_w, fh_ready, NULL, 5 * UVQ_SECONDS);
}

static void fh_setup(void) {
  static const char *const alpn[] = {"h3"};
  uvq_h3_server_config cfg;
  fh_w = calloc(1, sizeof(*fh_w));
  if (fh_w == NULL) {
    abort();
  }
  qt_world_init_alpn(fh_w, 9, alpn, 1);
  fh_w->seeded_rand = 1;
  uvq_h3_server_config_default(&cfg);
  cfg.on_request = fh_on_request;
  if (uvq_h3_server_new(&fh_srv, &cfg) != 0) {
    abort();
  }
  fh_s = qt_add_server(fh_w, NULL, fh_on_accept, NULL);
  fh_c = qt_add_client(fh_w, NULL, NULL);
  if (fh_s < 0 || fh_c < 0) {
    abort();
  }
  fh_connect();
}

static void fh_write(int64_t sid, const uint8_t *p, size_t len, int fin) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = uvq_stream_write(fh_cli, sid, p + off, len - off, 0);
    if (n <= 0) {
      return;
    }
    off += (size_t)n;
  }
  if (fin) {
    uvq_stream_write(fh_cli, sid, NULL, 0, 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t flags;
  size_t split;
  int64_t sid;

  if (fh_w == NULL) {
    fh_setup();
  }
  qt_world_reseed(fh_w, data, size);
  if (fh_cli == NULL || fh_dead || !fh_up) {
    fh_connect();
    if (!fh_up || fh_cli == NULL) {
      return 0;
    }
  }
  if (size < 2) {
    return 0;
  }
  flags = data[0];
  split = data[1];
  data += 2;
  size -= 2;
  if (split > size) {
    split = size;
  }
  if ((flags & 1) && split < size &&
      uvq_conn_open_stream(fh_cli, 0, &sid, NULL) == 0) {
    fh_write(sid, data + split, size - split, 0);
    size = split;
  }
  if (uvq_conn_open_stream(fh_cli, 1, &sid, NULL) == 0) {
    fh_write(sid, data, size, !(flags & 2));
  }
  qt_run(fh_w, NULL, NULL, 50 * UVQ_MILLISECONDS);
  return 0;
}
