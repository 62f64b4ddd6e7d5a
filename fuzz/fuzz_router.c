/*
 * libFuzzer harness: the router and everything behind it. A persistent
 * in-memory world (tests/support/qtest.c: fake clock, real GnuTLS) holds a
 * server endpoint and a client endpoint with a live connection between
 * them. Each input is a sequence of datagrams:
 *   [len hi][len lo][flags][bytes...]
 * flags bit 0: to the client (else the server); bit 1: from the peer's
 * real address (else from a stranger, port from the high bits); bit 2:
 * overwrite bytes 1..16 with a CID the receiver owns (reaching the live
 * connection's decryption path). After the datagrams the world runs for
 * 20 ms of fake time; a dead connection is replaced before the next input.
 * The endpoints' randomness is seeded (seeded_rand) and re-seeded from each
 * input, and the clock is the world's fake one, so a crash file replays the
 * same draws in a fresh process (GnuTLS's own randomness aside).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "qtest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static qt_world *fr_w;
static int fr_s, fr_c;
static int fr_cli_up, fr_cli_dead;
static uvq_conn *fr_cli, *fr_srv;

static int fr_on_established(uvq_conn *conn, void *ud) {
  (void)ud;
  if (!uvq_conn_is_server(conn)) {
    fr_cli_up = 1;
  }
  return 0;
}

static void fr_on_closed(uvq_conn *conn, const uvq_close_info *ci, void *ud) {
  (void)ci;
  (void)ud;
  if (conn == fr_cli) {
    fr_cli = NULL;
    fr_cli_dead = 1;
  }
  if (conn == fr_srv) {
    fr_srv = NULL;
  }
}

static const uvq_app_callbacks fr_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = fr_on_established,
    .on_closed = fr_on_closed,
};

static int fr_on_accept(uvq_endpoint *ep, uvq_conn *conn,
                        const uvq_accept_info *info,
                        const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)info;
  (void)ud;
  fr_srv = conn;
  *pcb = &fr_cb;
  *pud = NULL;
  return 0;
}

static int fr_up(void *ud) {
  (void)ud;
  return fr_cli_up || fr_cli_dead;
}

static void fr_connect(void) {
  fr_cli_up = fr_cli_dead = 0;
  if (qt_connect(fr_w, fr_c, fr_s, &fr_cb, NULL, &fr_cli) != 0) {
    abort();
  }
  qt_run(fr_w, fr_up, NULL, 5 * UVQ_SECONDS);
}

static void fr_setup(void) {
  uvq_settings st;
  fr_w = calloc(1, sizeof(*fr_w));
  if (fr_w == NULL) {
    abort();
  }
  qt_world_init(fr_w, 7);
  fr_w->seeded_rand = 1;
  uvq_settings_default(&st);
  st.keep_alive = 1 * UVQ_SECONDS; /* the live connection stays live */
  fr_s = qt_add_server(fr_w, &st, fr_on_accept, NULL);
  fr_c = qt_add_client(fr_w, &st, NULL);
  if (fr_s < 0 || fr_c < 0) {
    abort();
  }
  fr_connect();
}

/* A CID |conn| owns (its first SCID), or 0 if none. */
static size_t fr_cid_of(uvq_conn *conn, uint8_t *out) {
  ngtcp2_cid cids[16];
  size_t n;
  if (conn == NULL || conn->ngconn == NULL) {
    return 0;
  }
  n = ngtcp2_conn_get_scid(conn->ngconn, NULL);
  if (n == 0 || n > 16) {
    return 0;
  }
  ngtcp2_conn_get_scid(conn->ngconn, cids);
  memcpy(out, cids[0].data, cids[0].datalen);
  return cids[0].datalen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fr_w == NULL) {
    fr_setup();
  }
  qt_world_reseed(fr_w, data, size);
  if (fr_cli == NULL || fr_cli_dead) {
    fr_connect();
  }
  while (size >= 3) {
    size_t len = (size_t)((data[0] << 8) | data[1]) % 1501;
    uint8_t flags = data[2];
    uint8_t buf[1500];
    int to_client = flags & 1;
    int dst = to_client ? fr_c : fr_s;
    uvq_addr from;
    data += 3;
    size -= 3;
    if (len > size) {
      len = size;
    }
    memcpy(buf, data, len);
    data += len;
    size -= len;
    if (flags & 4) {
      uint8_t cid[UVQ_MAX_CIDLEN];
      size_t cl = fr_cid_of(to_client ? fr_cli : fr_srv, cid);
      if (cl && len > cl) {
        memcpy(buf + 1, cid, cl);
      }
    }
    if (flags & 2) {
      from = fr_w->nodes[to_client ? fr_s : fr_c].addr;
    } else {
      qt_addr_v4(&from, (uint16_t)(20000 + (flags >> 3)));
    }
    qt_inject(fr_w, dst, &from, buf, len);
  }
  qt_run(fr_w, NULL, NULL, 20 * UVQ_MILLISECONDS);
  return 0;
}
