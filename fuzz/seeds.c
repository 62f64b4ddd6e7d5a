/*
 * Seed inputs for the fuzz harnesses, made from real traffic: a handshake
 * and a short exchange over the in-memory wire are captured, real tokens
 * are sealed, and minimal HTTP/3 streams are encoded. Shared by
 * gen_seeds.c (writes fuzz/corpus/) and tests/test_fuzz_corpus.c.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/conn.h"
#include "core/endpoint.h"
#include "core/token.h"
#include "qtest.h"
#include "seeds.h"
#include "uvquic/uvquic_lb.h"

/* ---- router: real datagrams of a handshake ----------------------------- */

#define SD_MAX 64

typedef struct sd_capture {
  int server;
  size_t n;
  uint8_t to_client[SD_MAX];
  size_t len[SD_MAX];
  uint8_t data[SD_MAX][1500];
} sd_capture;

static int sd_capture_fn(qt_world *w, int from, qt_pkt *p, void *ud) {
  sd_capture *c = ud;
  (void)w;
  /* The world's endpoints keep the default link (no path_mtu): no
   * datagram exceeds 1500; one that did is left out. */
  if (c->n < SD_MAX && p->len <= sizeof(c->data[0])) {
    c->to_client[c->n] = from == c->server;
    c->len[c->n] = p->len;
    memcpy(c->data[c->n++], p->data, p->len);
  }
  return 0;
}

static int sd_on_established(uvq_conn *conn, void *ud) {
  int64_t sid;
  (void)ud;
  if (!uvq_conn_is_server(conn) &&
      uvq_conn_open_stream(conn, 1, &sid, NULL) == 0) {
    uvq_stream_write(conn, sid, (const uint8_t *)"hello", 5, 1);
  }
  return 0;
}

static const uvq_app_callbacks sd_cb = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = sd_on_established,
};

static int sd_on_accept(uvq_endpoint *ep, uvq_conn *conn,
                        const uvq_accept_info *info,
                        const uvq_app_callbacks **pcb, void **pud, void *ud) {
  (void)ep;
  (void)conn;
  (void)info;
  (void)ud;
  *pcb = &sd_cb;
  *pud = NULL;
  return 0;
}

/* One record of the router harness's format. */
static size_t sd_record(uint8_t *out, const uint8_t *d, size_t len,
                        uint8_t flags) {
  out[0] = (uint8_t)(len >> 8);
  out[1] = (uint8_t)len;
  out[2] = flags;
  memcpy(out + 3, d, len);
  return len + 3;
}

static void seeds_router(uvq_seed_emit emit, void *ud) {
  qt_world w;
  sd_capture *c = calloc(1, sizeof(*c));
  uint8_t *buf = malloc(3 * 1503);
  uvq_conn *conn;
  if (c == NULL || buf == NULL) {
    abort();
  }
  qt_world_init(&w, 5);
  int s = qt_add_server(&w, NULL, sd_on_accept, NULL);
  int cl = qt_add_client(&w, NULL, NULL);
  c->server = s;
  w.filter = sd_capture_fn;
  w.filter_ud = c;
  if (qt_connect(&w, cl, s, &sd_cb, NULL, &conn) != 0) {
    abort();
  }
  qt_run(&w, NULL, NULL, 200 * UVQ_MILLISECONDS);
  qt_world_free(&w);
  for (size_t i = 0; i < c->n; i++) {
    /* As captured, from the real peer; and aimed at a live CID. */
    uint8_t flags = (uint8_t)(c->to_client[i] | 2);
    size_t n = sd_record(buf, c->data[i], c->len[i], flags);
    emit("router", buf, n, ud);
    if ((c->data[i][0] & 0x80) == 0) {
      n = sd_record(buf, c->data[i], c->len[i], (uint8_t)(flags | 4));
      emit("router", buf, n, ud);
    }
  }
  /* Two datagrams in one input: the client's Initial from a stranger,
   * then a short header for the live connection. */
  if (c->n >= 2) {
    size_t n = sd_record(buf, c->data[0], c->len[0], 0);
    n += sd_record(buf + n, c->data[c->n - 1], c->len[c->n - 1], 4 | 2);
    emit("router", buf, n, ud);
  }
  free(buf);
  free(c);
}

/* ---- token -------------------------------------------------------------- */

static void seeds_token(uvq_seed_emit emit, void *ud) {
  static const uint8_t key[UVQ_TOKEN_KEYLEN] = "fuzz-token-key!";
  uvq_token_keys keys;
  struct sockaddr_in sa;
  ngtcp2_cid o, r;
  uint8_t tok[1 + UVQ_TOKEN_MAXLEN];
  uint8_t rt[64];
  ssize_t n;

  if (uvq_token_keys_init(&keys, key) != 0) {
    abort();
  }
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(50000);
  sa.sin_addr.s_addr = htonl(0x7f000001u);
  ngtcp2_cid_init(&o, (const uint8_t *)"original-dcid-01", 16);
  ngtcp2_cid_init(&r, (const uint8_t *)"0123456789abcdef", 16);
  tok[0] = 0;
  n = uvq_token_seal_retry(&keys, tok + 1, sizeof(tok) - 1, 1,
                           (struct sockaddr *)&sa, sizeof(sa), &o, &r,
                           1700000000);
  if (n > 0) {
    emit("token", tok, (size_t)n + 1, ud);
  }
  tok[0] = 1;
  n = uvq_token_seal_new(&keys, tok + 1, sizeof(tok) - 1, UVQ_QUIC_V1,
                         (struct sockaddr *)&sa, sizeof(sa), 1700000000);
  if (n > 0) {
    emit("token", tok, (size_t)n + 1, ud);
  }
  /* Round trip: port, odcid, rscid. */
  rt[0] = 2;
  rt[1] = 0xc3;
  rt[2] = 0x50;
  rt[3] = 16;
  memcpy(rt + 4, "original-dcid-01", 16);
  rt[20] = 8;
  memcpy(rt + 21, "retrycid", 8);
  emit("token", rt, 29, ud);
  uvq_token_keys_free(&keys);
}

/* ---- cid map ------------------------------------------------------------ */

static void seeds_cid_map(uvq_seed_emit emit, void *ud) {
  uint8_t buf[1024];
  size_t n = 0;
  /* Inserts of every length, finds, erases, re-inserts. */
  for (int len = 0; len <= 20; len++) {
    buf[n++] = 0;
    buf[n++] = (uint8_t)len;
    for (int i = 0; i < len; i++) {
      buf[n++] = (uint8_t)(len * 7 + i);
    }
  }
  emit("cid_map", buf, n, ud);
  {
    uint8_t b2[2048];
    size_t m = 0;
    for (int pass = 0; pass < 3; pass++) {
      for (int len = 8; len <= 20; len += 4) {
        b2[m++] = (uint8_t)(pass == 0 ? 0 : pass == 1 ? 3 : 2);
        b2[m++] = (uint8_t)len;
        for (int i = 0; i < len; i++) {
          b2[m++] = (uint8_t)(len + i);
        }
      }
    }
    emit("cid_map", b2, m, ud);
  }
}

/* ---- h3 request --------------------------------------------------------- */

static void seeds_h3(uvq_seed_emit emit, void *ud) {
  uint8_t buf[256];
  size_t n = 0, hdr;
  /* flags: control stream first (bit 0); split after the request. */
  buf[n++] = 1;
  buf[n++] = 0; /* split, patched below */
  hdr = n;
  /* HEADERS: QPACK prefix 0 0, :method GET (static 17), :scheme https
   * (23), :path / (1), :authority (literal, name ref 0) "localhost". */
  buf[n++] = 0x01;
  buf[n++] = 0; /* length, patched */
  buf[n++] = 0x00;
  buf[n++] = 0x00;
  buf[n++] = 0xc0 | 17;
  buf[n++] = 0xc0 | 23;
  buf[n++] = 0xc0 | 1;
  buf[n++] = 0x50;
  buf[n++] = 9;
  memcpy(buf + n, "localhost", 9);
  n += 9;
  buf[hdr + 1] = (uint8_t)(n - hdr - 2);
  buf[1] = (uint8_t)(n - 2);
  /* Control stream: type 0, SETTINGS (4) empty. */
  buf[n++] = 0x00;
  buf[n++] = 0x04;
  buf[n++] = 0x00;
  emit("h3_request", buf, n, ud);
  /* The request alone, no control stream; then with a DATA frame. */
  buf[0] = 0;
  emit("h3_request", buf, n - 3, ud);
  buf[n - 3] = 0x00; /* DATA */
  buf[n - 2] = 0x01;
  buf[n - 1] = 'x';
  buf[1] = (uint8_t)(n - 2);
  emit("h3_request", buf, n, ud);
}

/* Strings, one seed each. */
static void seeds_strings(const char *harness, const char *const *v,
                          uvq_seed_emit emit, void *ud) {
  for (; *v; ++v) {
    emit(harness, (const uint8_t *)*v, strlen(*v), ud);
  }
}

static void seeds_http_path(uvq_seed_emit emit, void *ud) {
  static const char *const v[] = {"/a.txt",
                                  "/sp%20ace.html",
                                  "/d/",
                                  "/d",
                                  "/d?x=1#f",
                                  "/e/\x01",
                                  "/%2e%2e/a.txt",
                                  "/d/../a.txt",
                                  "/a%2fb",
                                  "/a%00",
                                  "/a%g0",
                                  "/a%",
                                  "//etc/passwd",
                                  "/out",
                                  "/a.txt/",
                                  "/",
                                  "/?q",
                                  "/d/index.html#x",
                                  NULL};
  seeds_strings("http_path", v, emit, ud);
}

static void seeds_http_cond(uvq_seed_emit emit, void *ud) {
  /* size selector, then Range \n If-Range \n If-None-Match \n IMS. */
  static const char *const v[] = {
      "\003bytes=0-99",
      "\003bytes=-10",
      "\003bytes=900-",
      "\003bytes=5000-",
      "\003bytes=0-1,4-5",
      "\003bytes=0-9\n\"3e8-2ebc3fa1-0\"",
      "\003bytes=0-9\nSun, 06 Nov 1994 08:49:37 GMT",
      "\003\n\n\"3e8-2ebc3fa1-0\", W/\"x\"",
      "\003\n\n\nSun, 06 Nov 1994 08:49:37 GMT",
      "\003\n\n\nSunday, 06-Nov-94 08:49:37 GMT",
      "\003\n\n\nSun Nov  6 08:49:37 1994",
      "\000bytes=0-",
      "\005bytes=-9223372036854775807",
      NULL};
  seeds_strings("http_cond", v, emit, ud);
}

static void seeds_mime_types(uvq_seed_emit emit, void *ud) {
  static const char *const v[] = {
      "text/html html htm\nimage/png png\n",
      "# c\n  text/css\tcss # x\napplication/onlytype\n",
      "image/png png\nimage/other png PNG\nbad/ty;pe x\nnotype y\n",
      "text/javascript\t\tes js mjs\r\nfont/woff2 woff2\r\n", NULL};
  seeds_strings("mime_types", v, emit, ud);
}

/* ---- quic_lb: real CIDs of several shapes, and configuration strings ---- */

static void seeds_quic_lb(uvq_seed_emit emit, void *ud) {
  /* {server ID length, nonce length, keyed}: odd and even plaintexts,
   * the 16-octet single pass, a server ID longer than the nonce. */
  static const uint8_t shapes[][3] = {{3, 4, 1}, {10, 5, 1}, {8, 8, 1},
                                      {9, 9, 1}, {1, 4, 0},  {5, 5, 0}};
  static const char *const v[] = {
      "\001cr=1,sid=0a0b,nonce=6", "\001cr=0,sid=c4605e,nonce=4,encode-len",
      "\001sid-len=3,nonce=4,key=8f95f09245765f80256934e50c66207f",
      "\001sid=ed793a51d49b8f5fab,nonce=9,key="
      "8f95f09245765f80256934e50c66207f",
      NULL};
  static const uint8_t key[UVQ_LB_KEYLEN] = "fuzz-quic-lb-key";

  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
    uvq_lb_config cfg;
    uvq_lb *lb;
    uint8_t in[3 + UVQ_LB_MAX_CID_LEN];

    uvq_lb_config_default(&cfg);
    cfg.config_id = (uint8_t)(i % 7);
    cfg.server_id_len = shapes[i][0];
    cfg.nonce_len = shapes[i][1];
    cfg.has_key = shapes[i][2];
    memcpy(cfg.key, key, sizeof(key));
    memset(cfg.server_id, (int)(0x11 * (i + 1)), sizeof(cfg.server_id));
    /* The harness's header: mode and codepoint, then the two lengths. */
    in[0] = (uint8_t)(cfg.config_id << 2 | (cfg.has_key ? 2 : 0));
    in[1] = (uint8_t)(cfg.server_id_len - 1);
    in[2] = (uint8_t)(cfg.nonce_len - UVQ_LB_MIN_NONCE_LEN);
    if (uvq_lb_new(&lb, &cfg, NULL) != 0) {
      abort();
    }
    if (uvq_lb_generate(lb, (uint8_t)i, in + 3) == 0) {
      emit("quic_lb", in, 3 + uvq_lb_cid_len(lb), ud);
    }
    uvq_lb_del(lb);
  }
  seeds_strings("quic_lb", v, emit, ud);
}

void uvq_fuzz_seeds(const char *harness, uvq_seed_emit emit, void *ud) {
  if (strcmp(harness, "router") == 0) {
    seeds_router(emit, ud);
  } else if (strcmp(harness, "token") == 0) {
    seeds_token(emit, ud);
  } else if (strcmp(harness, "cid_map") == 0) {
    seeds_cid_map(emit, ud);
  } else if (strcmp(harness, "h3_request") == 0) {
    seeds_h3(emit, ud);
  } else if (strcmp(harness, "http_path") == 0) {
    seeds_http_path(emit, ud);
  } else if (strcmp(harness, "http_cond") == 0) {
    seeds_http_cond(emit, ud);
  } else if (strcmp(harness, "mime_types") == 0) {
    seeds_mime_types(emit, ud);
  } else if (strcmp(harness, "quic_lb") == 0) {
    seeds_quic_lb(emit, ud);
  }
}
