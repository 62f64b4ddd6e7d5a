/*
 * uvq_lb_relay: a test-only QUIC-LB load balancer on loopback, for
 * tests/fleet.sh.
 *
 *   uvq_lb_relay --quic-lb CONFIG --server SID=HOST:PORT... [--listen
 *                HOST:PORT] [--initial-rr] [--move-retried]
 *
 * Datagrams from clients to --listen are forwarded to a server by the
 * server ID QUIC-LB decodes from their DCID (CONFIG as uvq_lb_config_parse
 * reads it, sid-len=N for the ID), like a real QUIC-LB balancer. When it
 * decodes to no known server:
 * - a client's Initial or 0-RTT packet (its DCID is the client's random
 *   choice) goes where the first packet with that DCID went: by the
 *   4-tuple hash (the draft's fallback), or with --initial-rr to the next
 *   server in turn (so tests can spread connections deterministically);
 * - any other packet by the 4-tuple hash, counted as unroutable.
 * --move-retried sends a client's Initial that carries a token (its answer
 * to a Retry) to the server after the one its DCID names, as if the pool
 * had changed since the Retry: the token must be accepted by a server that
 * did not mint it.
 * Each client address gets its own socket towards the servers (the relay
 * is a NAT), so a client that changes address is a new address to them
 * too; replies go back to the client from --listen.
 *
 * Prints "listening on HOST:PORT", then on SIGTERM/SIGINT, per server,
 * "server SID: by_cid=N by_fallback=N", and "clients=N spanning=N
 * unroutable=N" (client addresses; those whose packets went to more than
 * one server; non-Initial packets routed by the fallback), and exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hex.h"
#include "uvquic/uvquic_lb.h"

#define MAX_SERVERS 8
#define MAX_CLIENTS 256
#define MAX_INITIAL_DCIDS 1024

typedef struct backend {
  uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
  size_t sidlen;
  struct sockaddr_in addr;
  unsigned long by_cid, by_fallback;
} backend;

typedef struct client {
  struct sockaddr_in addr;
  int fd;           /* towards the servers */
  unsigned servers; /* bit set of the servers it reached */
} client;

typedef struct initial_route {
  uint8_t dcid[20];
  size_t len;
  int server;
} initial_route;

static backend servers[MAX_SERVERS];
static int nservers;
static client clients[MAX_CLIENTS];
static int nclients;
static initial_route initials[MAX_INITIAL_DCIDS];
static int ninitials;
static int initial_rr, next_rr, move_retried;
static unsigned long unroutable;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char *what) {
  fprintf(stderr, "uvq_lb_relay: %s\n", what);
  exit(2);
}

static int parse_addr(const char *s, struct sockaddr_in *sa) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
    return -1;
  }
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)atoi(colon + 1));
  return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* fallback is the 4-tuple hash (the server side of the tuple is fixed). */
static int fallback(const struct sockaddr_in *from) {
  uint32_t h = 2166136261u;
  const uint8_t *p = (const uint8_t *)&from->sin_addr;
  for (int i = 0; i < 4; i++) {
    h = (h ^ p[i]) * 16777619u;
  }
  h = (h ^ (from->sin_port & 0xff)) * 16777619u;
  h = (h ^ (from->sin_port >> 8)) * 16777619u;
  return (int)(h % (uint32_t)nservers);
}

static client *client_of(const struct sockaddr_in *from) {
  struct sockaddr_in local;
  client *c;
  for (int i = 0; i < nclients; i++) {
    if (clients[i].addr.sin_port == from->sin_port &&
        clients[i].addr.sin_addr.s_addr == from->sin_addr.s_addr) {
      return &clients[i];
    }
  }
  if (nclients == MAX_CLIENTS) {
    return NULL;
  }
  c = &clients[nclients];
  c->fd = socket(AF_INET, SOCK_DGRAM, 0);
  memset(&local, 0, sizeof(local));
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&local, sizeof(local))) {
    die("cannot open a socket towards the servers");
  }
  c->addr = *from;
  c->servers = 0;
  nclients++;
  return c;
}

/* is_initial_or_0rtt: the long header's packet type, by version (QUIC v2,
 * RFC 9369, renumbers them); unknown versions count as Initials. */
static int is_initial_or_0rtt(const uint8_t *d) {
  uint32_t version =
      (uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 8 | d[4];
  unsigned type = (d[0] >> 4) & 3;
  if (version == 0x00000001u) {
    return type == 0 || type == 1;
  }
  if (version == 0x6b3343cfu) {
    return type == 1 || type == 2;
  }
  return 1;
}

/* route_initial routes a client's Initial or 0-RTT packet by the table of
 * their DCIDs; a new DCID goes to |server|, or if that is -1 to the next
 * server in turn (--initial-rr) or by the 4-tuple hash. */
static int route_initial(const uint8_t *dcid, size_t len,
                         const struct sockaddr_in *from, int server) {
  for (int i = 0; i < ninitials; i++) {
    if (initials[i].len == len && memcmp(initials[i].dcid, dcid, len) == 0) {
      servers[initials[i].server].by_fallback++;
      return initials[i].server;
    }
  }
  if (server < 0) {
    server = initial_rr ? next_rr++ % nservers : fallback(from);
  }
  if (ninitials < MAX_INITIAL_DCIDS) {
    memcpy(initials[ninitials].dcid, dcid, len);
    initials[ninitials].len = len;
    initials[ninitials++].server = server;
  }
  servers[server].by_fallback++;
  return server;
}

/* has_token: the long header |d| (|n| octets) is an Initial carrying a
 * token (a client's Initial after a Retry). */
static int has_token(const uint8_t *d, size_t n) {
  uint32_t version =
      (uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 8 | d[4];
  unsigned type = (d[0] >> 4) & 3;
  size_t p = 6 + (size_t)d[5];
  if (!((version == 0x00000001u && type == 0) ||
        (version == 0x6b3343cfu && type == 1)) ||
      p >= n) {
    return 0;
  }
  p += 1 + (size_t)d[p]; /* SCID */
  if (p >= n) {
    return 0;
  }
  /* The token length, a varint of 1, 2, 4 or 8 octets: nonzero or not. */
  size_t len = (size_t)1 << (d[p] >> 6);
  int nonzero = (d[p] & 0x3f) != 0;
  for (size_t i = 1; i < len && p + i < n; i++) {
    nonzero |= d[p + i] != 0;
  }
  return nonzero;
}

/* decoded is the server |lb| decodes |dcid| to, or -1. */
static int decoded(uvq_lb *lb, const uint8_t *dcid, size_t dcidlen) {
  uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
  size_t sidlen;
  if (uvq_lb_decode(lb, dcid, dcidlen, sid, sizeof(sid), &sidlen) == 0) {
    for (int i = 0; i < nservers; i++) {
      if (servers[i].sidlen == sidlen &&
          memcmp(servers[i].sid, sid, sidlen) == 0) {
        return i;
      }
    }
  }
  return -1;
}

static int route(uvq_lb *lb, const uint8_t *d, size_t n,
                 const struct sockaddr_in *from) {
  const uint8_t *dcid;
  size_t dcidlen;
  int s;

  if (n < 1) {
    return -1;
  }
  if (d[0] & 0x80) {
    if (n < 6 || d[5] > 20 || n < 6 + (size_t)d[5]) {
      return -1;
    }
    dcid = d + 6;
    dcidlen = d[5];
    if (is_initial_or_0rtt(d)) {
      s = decoded(lb, dcid, dcidlen);
      if (s >= 0 && move_retried && has_token(d, n)) {
        /* As if the pool changed since the Retry: the token goes to the
         * next server (the table keeps its retransmissions there too). */
        return route_initial(dcid, dcidlen, from, (s + 1) % nservers);
      }
      if (s < 0) {
        return route_initial(dcid, dcidlen, from, -1);
      }
      servers[s].by_cid++;
      return s;
    }
  } else {
    dcid = d + 1;
    dcidlen = n - 1 < UVQ_LB_MAX_CID_LEN ? n - 1 : UVQ_LB_MAX_CID_LEN;
  }
  s = decoded(lb, dcid, dcidlen);
  if (s >= 0) {
    servers[s].by_cid++;
    return s;
  }
  unroutable++;
  s = fallback(from);
  servers[s].by_fallback++;
  return s;
}

int main(int argc, char **argv) {
  struct sockaddr_in listen_addr, bound;
  socklen_t blen = sizeof(bound);
  const char *conf = NULL, *reason = NULL;
  struct pollfd pfd[1 + MAX_CLIENTS];
  uvq_lb_config cfg;
  uint8_t buf[65536];
  uvq_lb *lb;
  int front, spanning = 0;

  parse_addr("127.0.0.1:0", &listen_addr);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--initial-rr") == 0) {
      initial_rr = 1;
    } else if (strcmp(argv[i], "--move-retried") == 0) {
      move_retried = 1;
    } else if (i + 1 < argc && strcmp(argv[i], "--quic-lb") == 0) {
      conf = argv[++i];
    } else if (i + 1 < argc && strcmp(argv[i], "--listen") == 0) {
      if (parse_addr(argv[++i], &listen_addr) != 0) {
        die("bad --listen");
      }
    } else if (i + 1 < argc && strcmp(argv[i], "--server") == 0) {
      const char *arg = argv[++i], *eq = strchr(arg, '=');
      backend *b = &servers[nservers];
      int n;
      if (nservers == MAX_SERVERS || eq == NULL ||
          (n = tool_unhex(arg, (size_t)(eq - arg), b->sid, sizeof(b->sid))) <
              0 ||
          parse_addr(eq + 1, &b->addr) != 0) {
        die("bad --server (SIDHEX=HOST:PORT)");
      }
      b->sidlen = (size_t)n;
      nservers++;
    } else {
      die("usage: uvq_lb_relay --quic-lb CONFIG --server SID=HOST:PORT... "
          "[--listen HOST:PORT] [--initial-rr] [--move-retried]");
    }
  }
  if (conf == NULL || nservers == 0) {
    die("--quic-lb and at least one --server are required");
  }
  if (uvq_lb_config_parse(&cfg, conf, &reason) != 0) {
    fprintf(stderr, "uvq_lb_relay: bad --quic-lb: %s\n", reason);
    return 2;
  }
  if (uvq_lb_new(&lb, &cfg, NULL) != 0) {
    die("cannot set up QUIC-LB");
  }
  front = socket(AF_INET, SOCK_DGRAM, 0);
  if (front < 0 ||
      bind(front, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) ||
      getsockname(front, (struct sockaddr *)&bound, &blen)) {
    die("cannot bind --listen");
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("listening on 127.0.0.1:%u\n", ntohs(bound.sin_port));

  while (!stop) {
    int npoll = nclients;
    pfd[0].fd = front;
    pfd[0].events = POLLIN;
    for (int i = 0; i < nclients; i++) {
      pfd[1 + i].fd = clients[i].fd;
      pfd[1 + i].events = POLLIN;
    }
    if (poll(pfd, (nfds_t)(1 + npoll), 1000) < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("poll failed");
    }
    if (pfd[0].revents & POLLIN) {
      struct sockaddr_in from;
      socklen_t flen = sizeof(from);
      ssize_t n =
          recvfrom(front, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
      client *c = n > 0 ? client_of(&from) : NULL;
      int s = c ? route(lb, buf, (size_t)n, &from) : -1;
      if (s >= 0) {
        c->servers |= 1u << s;
        (void)sendto(c->fd, buf, (size_t)n, 0,
                     (struct sockaddr *)&servers[s].addr,
                     sizeof(servers[s].addr));
      }
    }
    for (int i = 0; i < npoll; i++) {
      if (pfd[1 + i].revents & POLLIN) {
        ssize_t n = recv(clients[i].fd, buf, sizeof(buf), 0);
        if (n > 0) {
          (void)sendto(front, buf, (size_t)n, 0,
                       (struct sockaddr *)&clients[i].addr,
                       sizeof(clients[i].addr));
        }
      }
    }
  }
  for (int i = 0; i < nservers; i++) {
    printf("server ");
    for (size_t j = 0; j < servers[i].sidlen; j++) {
      printf("%02x", servers[i].sid[j]);
    }
    printf(": by_cid=%lu by_fallback=%lu\n", servers[i].by_cid,
           servers[i].by_fallback);
  }
  for (int i = 0; i < nclients; i++) {
    spanning += (clients[i].servers & (clients[i].servers - 1)) != 0;
    close(clients[i].fd);
  }
  printf("clients=%d spanning=%d unroutable=%lu\n", nclients, spanning,
         unroutable);
  uvq_lb_del(lb);
  close(front);
  return 0;
}
