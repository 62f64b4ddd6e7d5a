/*
 * epoll_server: the sans-I/O core driven from a plain epoll loop, no libuv:
 * an hq-interop file server for the files under DIR (hq-interop is in
 * libuvquic too). Try it with hq_echo_client 127.0.0.1 PORT /FILE.
 *
 *   epoll_server DIR [PORT]        (0 or none: the kernel picks one)
 *
 * The loop: read every datagram into uvq_endpoint_recv, run the timers that
 * are due, flush; sleep until the socket is readable or the next expiry.
 * Time is CLOCK_MONOTONIC in nanoseconds: the core reads no clock itself.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <uvquic/uvquic.h>
#include <uvquic/uvquic_hq.h>

static int fd;
static volatile sig_atomic_t stop;

static uvq_tstamp now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uvq_tstamp)ts.tv_sec * UVQ_SECONDS + (uvq_tstamp)ts.tv_nsec;
}

static uint64_t wall_time(uvq_endpoint *ep, void *ud) {
  (void)ep, (void)ud;
  return (uint64_t)time(NULL);
}

/* Sends b->count datagrams; returns how many the socket took (fewer means
 * "blocked": a real server would wait for EPOLLOUT and flush again). */
static ssize_t send_batch(uvq_endpoint *ep, const uvq_send_batch *b, void *ud) {
  size_t i;
  (void)ep, (void)ud;
  for (i = 0; i < b->count; i++) {
    size_t off = i * b->segment_size;
    size_t len =
        b->datalen - off < b->segment_size ? b->datalen - off : b->segment_size;
    if (sendto(fd, b->data + off, len, 0,
               (const struct sockaddr *)&b->path->remote.ss,
               b->path->remote.len) < 0) {
      return i > 0 ? (ssize_t)i : -1; /* -1: dropped and counted */
    }
  }
  return (ssize_t)i;
}

static int on_accept(uvq_endpoint *ep, uvq_conn *conn,
                     const uvq_accept_info *info,
                     const uvq_app_callbacks **pcallbacks, void **pconn_ud,
                     void *user_data) {
  (void)ep, (void)info;
  return uvq_hq_server_accept(user_data, conn, pcallbacks, pconn_ud);
}

static void on_signal(int sig) { stop = sig; }

int main(int argc, char **argv) {
  const char *alpn[] = {UVQ_HQ_ALPN};
  char errbuf[256];
  uint8_t buf[65536];
  struct sockaddr_in sin = {.sin_family = AF_INET};
  struct epoll_event ev = {.events = EPOLLIN};
  uvq_endpoint_config cfg;
  uvq_tls_config tc;
  uvq_hq_server *hq;
  uvq_endpoint *ep;
  uvq_tls_ctx *tls;
  uvq_path path;
  int epfd;

  if (argc < 2 ||
      uvq_hq_server_new(&hq, argv[1], 0, NULL, errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "usage: %s DIR [PORT]\n", argv[0]);
    return 2;
  }
  uvq_tls_config_default(&tc);
  tc.alpn = alpn;
  tc.alpnlen = 1;
  if (uvq_tls_ctx_new(&tls, 1, &tc, NULL, errbuf, sizeof(errbuf)) != 0) {
    fprintf(stderr, "tls: %s\n", errbuf);
    return 1;
  }
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons((uint16_t)(argc > 2 ? atoi(argv[2]) : 0));
  path.local.len = sizeof(sin);
  if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
      getsockname(fd, (struct sockaddr *)&path.local.ss, &path.local.len)) {
    perror("bind");
    return 1;
  }
  uvq_endpoint_config_default(&cfg);
  cfg.is_server = 1;
  cfg.tls = tls;
  cfg.user_data = hq;
  cfg.send = send_batch;
  cfg.wall_time = wall_time;
  cfg.on_accept = on_accept;
  if (uvq_endpoint_new(&ep, &cfg) != 0) {
    return 1;
  }
  printf("uvquic %s listening on 127.0.0.1:%d\n", uvq_version(),
         ntohs(((struct sockaddr_in *)&path.local.ss)->sin_port));
  fflush(stdout);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  epfd = epoll_create1(0);
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);

  while (!stop) {
    uvq_tstamp now = now_ns(), next = uvq_endpoint_next_expiry(ep);
    int timeout = next == UVQ_TSTAMP_MAX ? -1
                  : next <= now          ? 0
                                : (int)((next - now) / UVQ_MILLISECONDS + 1);
    if (epoll_wait(epfd, &ev, 1, timeout) < 0) {
      continue; /* EINTR: a signal, check stop */
    }
    for (;;) {
      ssize_t n;
      path.remote.len = sizeof(path.remote.ss);
      n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&path.remote.ss,
                   &path.remote.len);
      if (n < 0) {
        break; /* EAGAIN: all read */
      }
      uvq_endpoint_recv(ep, &path, UVQ_ECN_NOT_ECT, buf, (size_t)n, 0,
                        now_ns());
    }
    now = now_ns();
    if (uvq_endpoint_next_expiry(ep) <= now) {
      uvq_endpoint_handle_expiry(ep, now);
    }
    uvq_endpoint_flush(ep, now);
  }
  uvq_endpoint_del(ep); /* frees the connections; then the apps' state */
  uvq_hq_server_del(hq);
  uvq_tls_ctx_del(tls);
  close(epfd);
  close(fd);
  return 0;
}
