/*
 * udplat: the latency floor of run.sh part 4 on this machine — a request /
 * response over plain UDP on loopback, scheduled and timed exactly as
 * uvquic-client --rate times its HTTP/3 GETs, with no QUIC, no TLS and no
 * event loop in the way.
 *
 *   udplat --server                      prints "port N", echoes until killed
 *   udplat --port N [--rate R] [--duration S] [--size B]
 *
 * The client issues request i at t0 + i/R from an absolute CLOCK_MONOTONIC
 * timerfd (as the load generator does) on one socket; the server answers
 * each request with B bytes (default 1024 + 40: a 1 KiB body and roughly
 * the QUIC and HTTP/3 framing around it). A request's latency runs from
 * when it was due to when its answer arrived, so a late wake-up of either
 * process counts (coordinated-omission safe). What remains in these
 * figures is the kernel's loopback path and the scheduler: the tail any
 * server measured by part 4 on this machine has under it. Prints one line
 * in the load generator's format:
 *
 *   rate: R req/s ...; latency us p50 A p90 B p99 C p999 D max E; max send lag
 * F us
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define UDPLAT_MAX 2048

static uint64_t now_ns(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bound_socket(uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_DGRAM, 0), bufsize = 8 << 20;

  if (fd < 0) {
    perror("udplat: socket");
    exit(1);
  }
  /* Room for a burst after a stall (the run counts unanswered requests
   * as failed): as large as the kernel lets us, as uvquic's sockets. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof(bufsize)) !=
      0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
  }
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    perror("udplat: bind");
    exit(1);
  }
  return fd;
}

static int run_server(size_t size) {
  uint8_t buf[UDPLAT_MAX];
  struct sockaddr_in sa;
  socklen_t salen = sizeof(sa);
  int fd = bound_socket(0);

  if (getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) {
    perror("udplat: getsockname");
    return 1;
  }
  printf("port %u\n", ntohs(sa.sin_port));
  fflush(stdout);
  memset(buf, 0x5a, sizeof(buf));
  for (;;) {
    ssize_t n;

    salen = sizeof(sa);
    n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&sa, &salen);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      perror("udplat: recvfrom");
      return 1;
    }
    /* The request's sequence number stays at the front of the answer. */
    (void)sendto(fd, buf, size, 0, (struct sockaddr *)&sa, salen);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

  return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p) {
  size_t k = (size_t)(p * (double)n + 0.999999);

  k = k == 0 ? 0 : k - 1;
  return (double)v[k < n ? k : n - 1] / 1e3;
}

static int run_client(uint16_t port, double rate, double duration) {
  size_t nreq = (size_t)(rate * duration), next = 0, done = 0, i;
  uint64_t *due, *lat, t0, max_lag = 0;
  uint8_t buf[UDPLAT_MAX];
  struct sockaddr_in sa;
  struct pollfd pfd[2];
  int fd = bound_socket(0), tfd;

  due = calloc(nreq ? nreq : 1, sizeof(*due));
  lat = calloc(nreq ? nreq : 1, sizeof(*lat));
  tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (due == NULL || lat == NULL || tfd < 0 || nreq == 0) {
    fprintf(stderr, "udplat: cannot set up %zu requests\n", nreq);
    return 1;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    perror("udplat: connect");
    return 1;
  }
  t0 = now_ns() + 10000000u;
  for (i = 0; i < nreq; ++i) {
    due[i] = t0 + (uint64_t)((double)i * 1e9 / rate);
    lat[i] = UINT64_MAX;
  }
  pfd[0].fd = tfd;
  pfd[0].events = POLLIN;
  pfd[1].fd = fd;
  pfd[1].events = POLLIN;
  while (done < nreq) {
    if (next < nreq) {
      struct itimerspec its;

      memset(&its, 0, sizeof(its));
      its.it_value.tv_sec = (time_t)(due[next] / 1000000000u);
      its.it_value.tv_nsec = (long)(due[next] % 1000000000u);
      (void)timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
    }
    /* A lost datagram (none expected on loopback) ends the run after 2 s
     * of silence rather than hanging it; it counts as not answered. */
    if (poll(pfd, 2, 2000) == 0) {
      break;
    }
    if (pfd[0].revents & POLLIN) {
      uint64_t exp, t = now_ns();

      (void)read(tfd, &exp, sizeof(exp));
      while (next < nreq && due[next] <= t) {
        uint64_t seq = next;

        if (t - due[next] > max_lag) {
          max_lag = t - due[next];
        }
        memcpy(buf, &seq, sizeof(seq));
        memset(buf + sizeof(seq), 0, 40 - sizeof(seq));
        (void)send(fd, buf, 40, 0);
        ++next;
      }
    }
    if (pfd[1].revents & POLLIN) {
      ssize_t n;

      while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) >=
             (ssize_t)sizeof(uint64_t)) {
        uint64_t seq, t = now_ns();

        memcpy(&seq, buf, sizeof(seq));
        if (seq < nreq && lat[seq] == UINT64_MAX) {
          lat[seq] = t - due[seq];
          ++done;
        }
      }
    }
  }
  qsort(lat, nreq, sizeof(*lat), cmp_u64);
  /* Unanswered requests sort last (UINT64_MAX) and are reported failed. */
  printf("rate: %.0f req/s for %.1f s on 1 socket: %zu requests, %zu ok, %zu "
         "failed; latency us p50 %.0f p90 %.0f p99 %.0f p999 %.0f max %.0f; "
         "max send lag %.0f us\n",
         rate, duration, nreq, done, nreq - done, pct(lat, nreq, 0.5),
         pct(lat, nreq, 0.9), pct(lat, nreq, 0.99), pct(lat, nreq, 0.999),
         done ? (double)lat[done - 1] / 1e3 : 0.0, (double)max_lag / 1e3);
  free(due);
  free(lat);
  return done == nreq ? 0 : 1;
}

int main(int argc, char **argv) {
  double rate = 5000, duration = 3;
  size_t size = 1024 + 40;
  long port = -1;
  int server = 0, i;

  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--server") == 0) {
      server = 1;
    } else if (i + 1 < argc && strcmp(argv[i], "--port") == 0) {
      port = strtol(argv[++i], NULL, 10);
    } else if (i + 1 < argc && strcmp(argv[i], "--rate") == 0) {
      rate = strtod(argv[++i], NULL);
    } else if (i + 1 < argc && strcmp(argv[i], "--duration") == 0) {
      duration = strtod(argv[++i], NULL);
    } else if (i + 1 < argc && strcmp(argv[i], "--size") == 0) {
      size = (size_t)strtoul(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: udplat --server [--size B] | --port N "
                      "[--rate R] [--duration S]\n");
      return 2;
    }
  }
  if (size < sizeof(uint64_t) || size > UDPLAT_MAX) {
    fprintf(stderr, "udplat: --size must be %zu..%d\n", sizeof(uint64_t),
            UDPLAT_MAX);
    return 2;
  }
  if (server) {
    return run_server(size);
  }
  if (port <= 0 || port > 65535 || rate <= 0 || duration <= 0) {
    fprintf(stderr, "udplat: needs --port N, a positive --rate and "
                    "--duration\n");
    return 2;
  }
  return run_client((uint16_t)port, rate, duration);
}
