/*
 * uvq_impair: a UDP impairment relay for tests between real processes.
 *
 *   uvq_impair --upstream HOST:PORT [--listen HOST:PORT] [--loss PCT]
 *              [--reorder PCT] [--reorder-delay MS] [--dup PCT]
 *              [--corrupt PCT] [--delay MS] [--rebind-after MS]
 *              [--rebind-every MS] [--rebind-after-bytes N]
 *              [--blackout-after-rebind MS] [--seed N] [--max-queue N]
 *              [--stats-file FILE]
 *
 * Clients send to the relay's --listen address (default 127.0.0.1:0); the
 * relay prints "listening on HOST:PORT" and forwards each client's datagrams
 * to --upstream from a socket of its own (one per client address, like a
 * NAT), and the replies back to that client. Every datagram, in each
 * direction independently, may be dropped (--loss), have one random byte
 * flipped (--corrupt), be sent twice (--dup) and be held back by an extra
 * --reorder-delay (--reorder) so later datagrams overtake it; all of them
 * are delayed by --delay. Percentages are real numbers ("0.1").
 *
 * Delayed datagrams wait in one queue ordered by release time (a binary
 * heap; equal times keep arrival order), released by a timerfd on
 * CLOCK_MONOTONIC from one epoll loop. Each direction draws from its own
 * PRNG seeded from --seed, so a run's impairment decisions are reproducible
 * for the same sequence of datagrams.
 *
 * NAT rebinding: --rebind-after MS (once) or --rebind-every MS (repeatedly),
 * counted from the first client datagram, replaces every client's upstream
 * socket with a new one on a new ephemeral port and closes the old one, so
 * the server sees the client move to a new port and whatever it sends to
 * the old one is lost, as behind a NAT whose mapping expired. Datagrams
 * already queued towards the server leave from the new port.
 * --rebind-after-bytes N rebinds once, when N payload bytes have been
 * forwarded towards the client: a point in a transfer independent of
 * timing. rebind_s2c_bytes is where the first rebinding happened, and
 * s2c_after_rebind counts datagrams the server sent to the newest port (so
 * the server did follow the client). --blackout-after-rebind MS drops
 * every server->client datagram sent in the MS milliseconds after the
 * first rebinding (a path that is dead for a while, whatever the server
 * does): counted as blackout_dropped, not in s2c_dropped.
 *
 * On SIGTERM or SIGINT it prints its counters to stderr (and to
 * --stats-file, as key=value lines) and exits 0. Kernel receive-buffer
 * drops on the relay's own sockets (SO_RXQ_OVFL) are counted too: they are
 * losses the relay did not choose.
 *
 * A test helper, not part of the library.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FLOWS 256
#define MAX_DGRAM 65536
#define SOCKBUF (4 << 20)

enum { DIR_C2S, DIR_S2C, NDIR };

static const char *const dir_names[NDIR] = {"c2s", "s2c"};

typedef struct {
  uint64_t received;   /* datagrams read from the sockets */
  uint64_t forwarded;  /* datagrams sent (duplicates included) */
  uint64_t dropped;    /* chosen losses */
  uint64_t reordered;  /* held back by --reorder-delay */
  uint64_t duplicated; /* extra copies queued */
  uint64_t corrupted;  /* one byte flipped */
  uint64_t queue_full; /* dropped because the queue was full */
  uint64_t send_errors;
  uint64_t kernel_drops; /* SO_RXQ_OVFL on the receiving socket(s) */
  uint64_t bytes;        /* payload bytes forwarded */
} dir_stats;

typedef struct flow {
  struct sockaddr_storage client;
  socklen_t client_len;
  int fd; /* upstream socket: its port is the client's "NAT mapping" */
  uint32_t ovfl_seen;
} flow;

typedef struct {
  uint64_t release; /* CLOCK_MONOTONIC ns */
  uint64_t seq;     /* tie-break: arrival order */
  int dir;
  flow *f;
  size_t len;
  uint8_t data[];
} pkt;

typedef struct {
  double loss, reorder, dup, corrupt; /* probabilities in [0, 1] */
  uint64_t delay_ns, reorder_delay_ns;
  uint64_t rebind_after_ns, rebind_every_ns;
  uint64_t rebind_after_bytes; /* 0 = off */
  uint64_t blackout_ns;        /* after the first rebinding; 0 = off */
  uint64_t seed;
  size_t max_queue;
  const char *stats_file;
} config;

static config cfg;
static dir_stats stats[NDIR];
static uint64_t rebinds;
static uint64_t rebind_s2c_bytes; /* s2c bytes forwarded at the first one */
static uint64_t s2c_after_rebind; /* server datagrams to the newest port */
static uint64_t blackout_until;   /* CLOCK_MONOTONIC ns; 0 = none */
static uint64_t blackout_dropped; /* s2c datagrams it dropped */
static uint64_t rng_state[NDIR];

static int front_fd = -1, timer_fd = -1, sig_fd = -1, ep_fd = -1;
static uint32_t front_ovfl_seen;
static struct sockaddr_storage upstream;
static socklen_t upstream_len;
static flow flows[MAX_FLOWS];
static size_t nflows;

static pkt **heap;
static size_t heap_len, heap_cap;
static uint64_t next_seq;
static uint64_t first_client_ns; /* 0 until the first client datagram */
static uint64_t next_rebind_ns;  /* 0 = none scheduled */

static void die(const char *what) {
  fprintf(stderr, "uvq_impair: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: uvq_impair --upstream HOST:PORT [--listen HOST:PORT] "
          "[--loss PCT] [--reorder PCT] [--reorder-delay MS] [--dup PCT] "
          "[--corrupt PCT] [--delay MS] [--rebind-after MS] "
          "[--rebind-every MS] [--rebind-after-bytes N] "
          "[--blackout-after-rebind MS] [--seed N] [--max-queue N] "
          "[--stats-file FILE]\n");
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, seedable, good enough for coin flips. */
static uint64_t rng_next(int dir) {
  uint64_t z = (rng_state[dir] += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static double rng_unit(int dir) {
  return (double)(rng_next(dir) >> 11) * (1.0 / 9007199254740992.0);
}

static int chance(int dir, double p) { return p > 0 && rng_unit(dir) < p; }

static double parse_pct(const char *s, const char *opt) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || v < 0 || v > 100) {
    fprintf(stderr, "uvq_impair: %s wants a percentage 0..100\n", opt);
    usage();
  }
  return v / 100.0;
}

static uint64_t parse_u64(const char *s, const char *opt) {
  char *end;
  unsigned long long v;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno != 0 || s[0] == '-') {
    fprintf(stderr, "uvq_impair: %s wants a non-negative integer\n", opt);
    usage();
  }
  return (uint64_t)v;
}

/* Milliseconds, fractions allowed ("0.5"). */
static uint64_t parse_ms(const char *s, const char *opt) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || v < 0 || v > 3600e3) {
    fprintf(stderr, "uvq_impair: %s wants milliseconds\n", opt);
    usage();
  }
  return (uint64_t)(v * 1e6);
}

/* HOST:PORT or [HOST]:PORT, numeric. */
static void parse_addr(const char *s, struct sockaddr_storage *sa,
                       socklen_t *len) {
  char host[256];
  const char *colon = strrchr(s, ':');
  const char *h = s;
  size_t hl;
  struct addrinfo hints, *res;
  int rv;

  if (colon == NULL) {
    fprintf(stderr, "uvq_impair: %s: want HOST:PORT\n", s);
    usage();
  }
  hl = (size_t)(colon - s);
  if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
    h = s + 1;
    hl -= 2;
  }
  if (hl >= sizeof(host)) {
    usage();
  }
  memcpy(host, h, hl);
  host[hl] = '\0';
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  rv = getaddrinfo(host, colon + 1, &hints, &res);
  if (rv != 0) {
    fprintf(stderr, "uvq_impair: %s: %s\n", s, gai_strerror(rv));
    usage();
  }
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
}

static void epoll_add(int fd, void *ptr) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.ptr = ptr;
  if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    die("epoll_ctl");
  }
}

/* A non-blocking UDP socket with big buffers and drop counting. */
static int udp_socket(int family) {
  int one = 1, buf = SOCKBUF;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    die("socket");
  }
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  (void)setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
  return fd;
}

/* The upstream side of a flow: a new socket on a new ephemeral port. */
static int upstream_socket(flow *f) {
  int fd = udp_socket(upstream.ss_family);
  struct sockaddr_storage any;
  socklen_t any_len;

  /* Bind explicitly so the port exists before the first send; the kernel
   * picks the port, and a rebinding gets a different one because the old
   * socket is still open while the new one binds. */
  memset(&any, 0, sizeof(any));
  any.ss_family = upstream.ss_family;
  any_len = upstream.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&any, any_len) != 0) {
    die("bind upstream socket");
  }
  epoll_add(fd, f);
  return fd;
}

static int pkt_before(const pkt *a, const pkt *b) {
  return a->release < b->release ||
         (a->release == b->release && a->seq < b->seq);
}

static void heap_push(pkt *p) {
  size_t i;
  if (heap_len == heap_cap) {
    size_t cap = heap_cap ? heap_cap * 2 : 1024;
    pkt **h = realloc(heap, cap * sizeof(*h));
    if (h == NULL) {
      die("realloc");
    }
    heap = h;
    heap_cap = cap;
  }
  i = heap_len++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!pkt_before(p, heap[parent])) {
      break;
    }
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = p;
}

static pkt *heap_pop(void) {
  pkt *top = heap[0], *last = heap[--heap_len];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= heap_len) {
      break;
    }
    if (c + 1 < heap_len && pkt_before(heap[c + 1], heap[c])) {
      c++;
    }
    if (!pkt_before(heap[c], last)) {
      break;
    }
    heap[i] = heap[c];
    i = c;
  }
  if (heap_len > 0) {
    heap[i] = last;
  }
  return top;
}

static void queue(int dir, flow *f, const uint8_t *data, size_t len,
                  uint64_t release) {
  pkt *p;
  if (heap_len >= cfg.max_queue) {
    stats[dir].queue_full++;
    return;
  }
  p = malloc(sizeof(*p) + len);
  if (p == NULL) {
    die("malloc");
  }
  p->release = release;
  p->seq = next_seq++;
  p->dir = dir;
  p->f = f;
  p->len = len;
  memcpy(p->data, data, len);
  heap_push(p);
}

/* Decides the fate of one datagram that arrived at |now|. */
static void impair(int dir, flow *f, uint8_t *data, size_t len, uint64_t now) {
  uint64_t release = now + cfg.delay_ns;
  int dup;

  stats[dir].received++;
  if (chance(dir, cfg.loss)) {
    stats[dir].dropped++;
    return;
  }
  if (len > 0 && chance(dir, cfg.corrupt)) {
    size_t at = (size_t)(rng_next(dir) % len);
    data[at] ^= (uint8_t)(1 + rng_next(dir) % 255);
    stats[dir].corrupted++;
  }
  /* Draw every coin for every datagram so one setting does not shift the
   * others' decisions. */
  dup = chance(dir, cfg.dup);
  if (chance(dir, cfg.reorder)) {
    stats[dir].reordered++;
    queue(dir, f, data, len, release + cfg.reorder_delay_ns);
  } else {
    queue(dir, f, data, len, release);
  }
  if (dup) {
    stats[dir].duplicated++;
    queue(dir, f, data, len, release);
  }
}

static void rebind_all(void);

static void send_pkt(const pkt *p) {
  ssize_t n;
  if (p->dir == DIR_S2C && blackout_until != 0 && now_ns() < blackout_until) {
    blackout_dropped++;
    return;
  }
  if (p->dir == DIR_C2S) {
    n = sendto(p->f->fd, p->data, p->len, 0, (struct sockaddr *)&upstream,
               upstream_len);
  } else {
    n = sendto(front_fd, p->data, p->len, 0,
               (const struct sockaddr *)&p->f->client, p->f->client_len);
  }
  if (n < 0) {
    /* EAGAIN included: a full socket buffer is a loss on this path too. */
    stats[p->dir].send_errors++;
    return;
  }
  stats[p->dir].forwarded++;
  stats[p->dir].bytes += p->len;
  if (p->dir == DIR_S2C && cfg.rebind_after_bytes != 0 && rebinds == 0 &&
      stats[DIR_S2C].bytes >= cfg.rebind_after_bytes) {
    rebind_all();
  }
}

static void rebind_all(void) {
  size_t i;
  for (i = 0; i < nflows; i++) {
    int old = flows[i].fd;
    flows[i].fd = upstream_socket(&flows[i]);
    flows[i].ovfl_seen = 0;
    /* Closing removes it from the epoll set too. */
    close(old);
  }
  if (rebinds == 0) {
    rebind_s2c_bytes = stats[DIR_S2C].bytes;
    if (cfg.blackout_ns) {
      blackout_until = now_ns() + cfg.blackout_ns;
    }
  }
  rebinds++;
  s2c_after_rebind = 0;
}

static void arm_timer(void) {
  struct itimerspec its;
  uint64_t t = 0;
  memset(&its, 0, sizeof(its));
  if (heap_len > 0) {
    t = heap[0]->release;
  }
  if (next_rebind_ns != 0 && (t == 0 || next_rebind_ns < t)) {
    t = next_rebind_ns;
  }
  if (t != 0) {
    its.it_value.tv_sec = (time_t)(t / 1000000000u);
    its.it_value.tv_nsec = (long)(t % 1000000000u);
  }
  /* t == 0 disarms; an absolute time in the past fires at once. */
  if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0) {
    die("timerfd_settime");
  }
}

static void run_timers(void) {
  uint64_t now = now_ns();
  while (heap_len > 0 && heap[0]->release <= now) {
    pkt *p = heap_pop();
    send_pkt(p);
    free(p);
  }
  if (next_rebind_ns != 0 && next_rebind_ns <= now) {
    rebind_all();
    next_rebind_ns = cfg.rebind_every_ns ? now + cfg.rebind_every_ns : 0;
  }
}

static flow *flow_for(const struct sockaddr_storage *sa, socklen_t len) {
  size_t i;
  flow *f;
  for (i = 0; i < nflows; i++) {
    if (flows[i].client_len == len && memcmp(&flows[i].client, sa, len) == 0) {
      return &flows[i];
    }
  }
  if (nflows == MAX_FLOWS) {
    return NULL;
  }
  f = &flows[nflows++];
  memcpy(&f->client, sa, len);
  f->client_len = len;
  f->fd = upstream_socket(f);
  return f;
}

/* Counts kernel drops reported by SO_RXQ_OVFL (a running total). */
static void account_ovfl(struct msghdr *mh, int dir, uint32_t *seen) {
  struct cmsghdr *c;
  for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
      uint32_t total;
      memcpy(&total, CMSG_DATA(c), sizeof(total));
      if (total > *seen) {
        stats[dir].kernel_drops += total - *seen;
      }
      *seen = total;
    }
  }
}

/* Reads |fd| dry. |f| is NULL for the client-facing socket. */
static void drain(int fd, flow *f) {
  static uint8_t buf[MAX_DGRAM];
  for (;;) {
    struct sockaddr_storage from;
    struct iovec iov = {buf, sizeof(buf)};
    union {
      char b[CMSG_SPACE(sizeof(uint32_t))];
      struct cmsghdr align;
    } ctl;
    struct msghdr mh;
    ssize_t n;
    uint64_t now;

    memset(&mh, 0, sizeof(mh));
    mh.msg_name = &from;
    mh.msg_namelen = sizeof(from);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.b;
    mh.msg_controllen = sizeof(ctl.b);
    n = recvmsg(fd, &mh, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      }
      /* A queued ICMP error (port unreachable) is not fatal to a relay. */
      if (errno == EINTR || errno == ECONNREFUSED) {
        continue;
      }
      die("recvmsg");
    }
    now = now_ns();
    if (f == NULL) {
      flow *cf;
      account_ovfl(&mh, DIR_C2S, &front_ovfl_seen);
      cf = flow_for(&from, mh.msg_namelen);
      if (cf == NULL) {
        stats[DIR_C2S].queue_full++;
        continue;
      }
      if (first_client_ns == 0) {
        first_client_ns = now;
        if (cfg.rebind_after_ns) {
          next_rebind_ns = now + cfg.rebind_after_ns;
        } else if (cfg.rebind_every_ns) {
          next_rebind_ns = now + cfg.rebind_every_ns;
        }
      }
      impair(DIR_C2S, cf, buf, (size_t)n, now);
    } else {
      account_ovfl(&mh, DIR_S2C, &f->ovfl_seen);
      if (rebinds > 0) {
        s2c_after_rebind++;
      }
      impair(DIR_S2C, f, buf, (size_t)n, now);
    }
  }
}

static void report(FILE *out) {
  int d;
  for (d = 0; d < NDIR; d++) {
    const dir_stats *s = &stats[d];
    const char *n = dir_names[d];
    fprintf(out,
            "%s_received=%" PRIu64 "\n%s_forwarded=%" PRIu64
            "\n%s_bytes=%" PRIu64 "\n%s_dropped=%" PRIu64
            "\n%s_reordered=%" PRIu64 "\n%s_duplicated=%" PRIu64
            "\n%s_corrupted=%" PRIu64 "\n%s_queue_full=%" PRIu64
            "\n%s_send_errors=%" PRIu64 "\n%s_kernel_drops=%" PRIu64 "\n",
            n, s->received, n, s->forwarded, n, s->bytes, n, s->dropped, n,
            s->reordered, n, s->duplicated, n, s->corrupted, n, s->queue_full,
            n, s->send_errors, n, s->kernel_drops);
  }
  fprintf(out,
          "forwarded=%" PRIu64 "\ndropped=%" PRIu64 "\nreordered=%" PRIu64
          "\nduplicated=%" PRIu64 "\ncorrupted=%" PRIu64 "\nrebinds=%" PRIu64
          "\nrebind_s2c_bytes=%" PRIu64 "\ns2c_after_rebind=%" PRIu64
          "\nblackout_dropped=%" PRIu64 "\nflows=%zu\nseed=%" PRIu64 "\n",
          stats[0].forwarded + stats[1].forwarded,
          stats[0].dropped + stats[1].dropped,
          stats[0].reordered + stats[1].reordered,
          stats[0].duplicated + stats[1].duplicated,
          stats[0].corrupted + stats[1].corrupted, rebinds, rebind_s2c_bytes,
          s2c_after_rebind, blackout_dropped, nflows, cfg.seed);
}

static void write_stats(void) {
  char tmp[4096];
  FILE *f;
  report(stderr);
  if (cfg.stats_file == NULL) {
    return;
  }
  /* Write then rename, so a reader never sees half a file. */
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", cfg.stats_file) >=
      (int)sizeof(tmp)) {
    fprintf(stderr, "uvq_impair: --stats-file path too long\n");
    exit(1);
  }
  f = fopen(tmp, "w");
  if (f == NULL) {
    die(tmp);
  }
  report(f);
  if (fclose(f) != 0 || rename(tmp, cfg.stats_file) != 0) {
    die(cfg.stats_file);
  }
}

static void parse_args(int argc, char **argv, struct sockaddr_storage *listen,
                       socklen_t *listen_len) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"upstream", required_argument, NULL, 'u'},
      {"loss", required_argument, NULL, 'L'},
      {"reorder", required_argument, NULL, 'R'},
      {"reorder-delay", required_argument, NULL, 'r'},
      {"dup", required_argument, NULL, 'D'},
      {"corrupt", required_argument, NULL, 'C'},
      {"delay", required_argument, NULL, 'd'},
      {"rebind-after", required_argument, NULL, 'a'},
      {"rebind-every", required_argument, NULL, 'e'},
      {"rebind-after-bytes", required_argument, NULL, 'b'},
      {"blackout-after-rebind", required_argument, NULL, 'B'},
      {"seed", required_argument, NULL, 's'},
      {"max-queue", required_argument, NULL, 'q'},
      {"stats-file", required_argument, NULL, 'S'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c, have_upstream = 0;

  cfg.reorder_delay_ns = 5000000; /* 5 ms */
  cfg.seed = 1;
  cfg.max_queue = 1u << 20;
  parse_addr("127.0.0.1:0", listen, listen_len);
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'l':
      parse_addr(optarg, listen, listen_len);
      break;
    case 'u':
      parse_addr(optarg, &upstream, &upstream_len);
      have_upstream = 1;
      break;
    case 'L':
      cfg.loss = parse_pct(optarg, "--loss");
      break;
    case 'R':
      cfg.reorder = parse_pct(optarg, "--reorder");
      break;
    case 'r':
      cfg.reorder_delay_ns = parse_ms(optarg, "--reorder-delay");
      break;
    case 'D':
      cfg.dup = parse_pct(optarg, "--dup");
      break;
    case 'C':
      cfg.corrupt = parse_pct(optarg, "--corrupt");
      break;
    case 'd':
      cfg.delay_ns = parse_ms(optarg, "--delay");
      break;
    case 'a':
      cfg.rebind_after_ns = parse_ms(optarg, "--rebind-after");
      break;
    case 'e':
      cfg.rebind_every_ns = parse_ms(optarg, "--rebind-every");
      break;
    case 'b':
      cfg.rebind_after_bytes = parse_u64(optarg, "--rebind-after-bytes");
      break;
    case 'B':
      cfg.blackout_ns = parse_ms(optarg, "--blackout-after-rebind");
      break;
    case 's':
      cfg.seed = parse_u64(optarg, "--seed");
      break;
    case 'q':
      cfg.max_queue = (size_t)parse_u64(optarg, "--max-queue");
      break;
    case 'S':
      cfg.stats_file = optarg;
      break;
    default:
      usage();
    }
  }
  if (optind != argc || !have_upstream) {
    usage();
  }
}

int main(int argc, char **argv) {
  struct sockaddr_storage listen_addr;
  socklen_t listen_len;
  char host[INET6_ADDRSTRLEN];
  sigset_t sigs;
  int d;
  static int front_tag, timer_tag, sig_tag;

  parse_args(argc, argv, &listen_addr, &listen_len);
  for (d = 0; d < NDIR; d++) {
    /* Distinct, fixed streams per direction. */
    rng_state[d] = cfg.seed * 2 + (uint64_t)d;
    (void)rng_next(d);
  }

  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0) {
    die("sigprocmask");
  }
  sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  ep_fd = epoll_create1(EPOLL_CLOEXEC);
  if (sig_fd < 0 || timer_fd < 0 || ep_fd < 0) {
    die("signalfd/timerfd/epoll");
  }

  front_fd = udp_socket(listen_addr.ss_family);
  if (bind(front_fd, (struct sockaddr *)&listen_addr, listen_len) != 0) {
    die("bind --listen");
  }
  listen_len = sizeof(listen_addr);
  if (getsockname(front_fd, (struct sockaddr *)&listen_addr, &listen_len) !=
      0) {
    die("getsockname");
  }
  epoll_add(front_fd, &front_tag);
  epoll_add(timer_fd, &timer_tag);
  epoll_add(sig_fd, &sig_tag);

  if (listen_addr.ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&listen_addr;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
    printf("listening on [%s]:%u\n", host, ntohs(s6->sin6_port));
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&listen_addr;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
    printf("listening on %s:%u\n", host, ntohs(s4->sin_port));
  }
  fflush(stdout);

  for (;;) {
    struct epoll_event evs[64];
    int i, n = epoll_wait(ep_fd, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      die("epoll_wait");
    }
    for (i = 0; i < n; i++) {
      void *tag = evs[i].data.ptr;
      if (tag == &sig_tag) {
        write_stats();
        return 0;
      } else if (tag == &timer_tag) {
        uint64_t expirations;
        (void)!read(timer_fd, &expirations, sizeof(expirations));
      } else if (tag == &front_tag) {
        drain(front_fd, NULL);
      } else {
        flow *f = tag;
        drain(f->fd, f);
      }
    }
    /* Release what is due (a zero delay releases at once), then re-arm. */
    run_timers();
    arm_timer();
  }
}
