/*
 * Shards (uvq_uv_listen with uvq_uv_config.shards > 1): N server endpoints,
 * each on its own thread with its own libuv loop and its own SO_REUSEPORT
 * socket bound to one address. Every CID a shard issues carries its index
 * in the low five bits of its first octet; a classic BPF program steers
 * short-header packets to that shard's socket, and a packet that still
 * reaches another shard (the client's address changed) is copied to its
 * owner's forward queue. The group handle the caller holds lives on the
 * caller's loop and only starts, reaches and stops the shards.
 *
 * Threads and locks: a shard's endpoint, loop and counters belong to its
 * thread. Each shard has one mutex guarding what other threads hand it
 * (forwarded datagrams, jobs, a close request) and whether it still takes
 * them; its |ctl| async wakes it, and is only signalled under that mutex
 * while |open|, so never after it is closed. No thread holds two locks.
 */
#include "uv/shard.h"

#include <errno.h>
#include <linux/filter.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/mem.h"

/* Forwarded datagrams given to the endpoint per wake-up before the loop
 * gets its turn again (the rest wait for the next). */
#define FWD_PER_WAKE 256

/* One datagram (or GRO super-buffer) waiting for its owner. */
typedef struct fwd_ent {
  uvq_path path;
  uint8_t ecn;
  size_t len, segment_size;
  uint8_t data[];
} fwd_ent;

/* An uvq_uv_endpoint_each_shard call waiting for a shard's thread. */
typedef struct shard_job {
  uvq_uv_shard_cb cb;
  void *arg;
  struct shard_job *next;
} shard_job;

struct uvq_uv_shard {
  uvq_uv_group *g;
  unsigned index;
  uv_loop_t loop;
  int loop_ready;
  uv_thread_t thread;
  int thread_started;
  /* This shard's endpoint: its thread's alone once that has started. */
  uvq_uv_endpoint *uep;
  /* Wakes the shard for what other threads handed it. */
  uv_async_t ctl;
  /* Published by the shard after every pass (uvq_uv_endpoint_conn_count). */
  atomic_size_t conns;

  uv_mutex_t lock;
  /* Under |lock| from here on. */
  /* Takes forwarded datagrams, jobs and close requests (ctl is alive and
   * the endpoint has not begun closing its handles). */
  int open;
  /* 0, or 1 (close) / 2 (close now) asked by the group. */
  int close_req;
  /* The forward queue: a ring of g->qcap entries. */
  fwd_ent **q;
  size_t qhead, qn;
  shard_job *jobs;
  /* Set when the shard has stopped, with its final counters. */
  int stopped;
  uvq_uv_stats ustats;
  uvq_endpoint_stats estats;
};

struct uvq_uv_group {
  /* What the caller holds: a uvq_uv_endpoint whose |group| is us. */
  uvq_uv_endpoint *handle;
  uv_loop_t *loop;
  const uvq_mem *mem;
  unsigned n;
  size_t qcap;
  uvq_uv_shard *shards;
  /* On the caller's loop: a shard's thread has ended. */
  uv_async_t done;
  uv_mutex_t lock;
  /* Under |lock|: threads that have ended. */
  unsigned ended;
  int closing; /* 0, 1 (close) or 2 (close now) */
  int finished;
  uvq_uv_close_cb close_cb;
  /* Where every shard's socket is bound. */
  uvq_addr bound;
};

_Static_assert(sizeof(uvq_endpoint_stats) % sizeof(uint64_t) == 0,
               "uvq_endpoint_stats is summed as uint64_t counters");

/* ------------------------------------------------------------------------ */
/* On a shard's thread                                                      */
/* ------------------------------------------------------------------------ */

unsigned uvq_uv_shard_index(const uvq_uv_shard *sh) { return sh->index; }

int uvq_uv_shard_steer(uvq_uv_shard *sh, uvq_uv_stats *st, const uvq_path *path,
                       uint8_t ecn, const uint8_t *data, size_t len,
                       size_t segment_size) {
  uvq_uv_group *g = sh->g;
  uvq_uv_shard *o;
  unsigned owner;
  fwd_ent *e;

  /* Long headers are whoever's the kernel's hash picked (a handshake stays
   * where it began); a short header's DCID follows its first octet. */
  if (len < 2 || (data[0] & 0x80)) {
    return 0;
  }
  owner = data[1] & 0x1fu;
  if (owner == sh->index || owner >= g->n) {
    /* Ours, or no shard's CID: the endpoint drops or resets it. */
    return 0;
  }
  o = &g->shards[owner];
  e = uvq_malloc(g->mem, sizeof(*e) + len);
  if (e == NULL) {
    st->forward_overflows++;
    return 1;
  }
  e->path = *path;
  e->ecn = ecn;
  e->len = len;
  e->segment_size = segment_size;
  memcpy(e->data, data, len);
  uv_mutex_lock(&o->lock);
  if (!o->open || o->qn == g->qcap) {
    uv_mutex_unlock(&o->lock);
    uvq_free(g->mem, e);
    st->forward_overflows++;
    return 1;
  }
  o->q[(o->qhead + o->qn) % g->qcap] = e;
  o->qn++;
  /* Under the lock: |ctl| is alive while |open|. Coalesces. */
  uv_async_send(&o->ctl);
  uv_mutex_unlock(&o->lock);
  st->forwarded++;
  return 1;
}

void uvq_uv_shard_publish(uvq_uv_shard *sh, size_t conns) {
  atomic_store_explicit(&sh->conns, conns, memory_order_relaxed);
}

void uvq_uv_shard_stopping(uvq_uv_shard *sh) {
  uv_mutex_lock(&sh->lock);
  sh->open = 0;
  uv_mutex_unlock(&sh->lock);
}

/* Frees what waits in the queue and the job list (the shard stopped
 * before taking them); returns how many datagrams were dropped. */
static uint64_t shard_drain(uvq_uv_shard *sh) {
  uint64_t dropped = sh->qn;

  while (sh->qn > 0) {
    uvq_free(sh->g->mem, sh->q[sh->qhead]);
    sh->qhead = (sh->qhead + 1) % sh->g->qcap;
    sh->qn--;
  }
  while (sh->jobs != NULL) {
    shard_job *j = sh->jobs;
    sh->jobs = j->next;
    uvq_free(sh->g->mem, j);
  }
  return dropped;
}

/* The shard endpoint's close callback (in uep_free: its core endpoint is
 * still alive): keep its counters for the group, then let the loop end. */
static void shard_closed(uvq_uv_endpoint *uep, void *user_data) {
  uvq_uv_shard *sh = uep->shard;
  uvq_uv_stats us;
  uvq_endpoint_stats es;

  (void)user_data;
  uvq_uv_endpoint_get_stats(uep, &us);
  uvq_endpoint_get_stats(uep->ep, &es);
  uv_mutex_lock(&sh->lock);
  sh->open = 0;
  /* Handed to us and never read: dropped, and counted as such. */
  us.forward_overflows += shard_drain(sh);
  sh->ustats = us;
  sh->estats = es;
  sh->stopped = 1;
  uv_mutex_unlock(&sh->lock);
  atomic_store_explicit(&sh->conns, 0, memory_order_relaxed);
  uv_close((uv_handle_t *)&sh->ctl, NULL);
}

static void shard_on_ctl(uv_async_t *h) {
  uvq_uv_shard *sh = h->data;
  uvq_uv_endpoint *uep = sh->uep;
  fwd_ent *batch[FWD_PER_WAKE];
  shard_job *jobs, *rev = NULL;
  size_t nb = 0, i;
  int close_req, open, more;

  uv_mutex_lock(&sh->lock);
  while (nb < FWD_PER_WAKE && sh->qn > 0) {
    batch[nb++] = sh->q[sh->qhead];
    sh->qhead = (sh->qhead + 1) % sh->g->qcap;
    sh->qn--;
  }
  more = sh->qn > 0;
  jobs = sh->jobs;
  sh->jobs = NULL;
  close_req = sh->close_req;
  sh->close_req = 0;
  open = sh->open;
  uv_mutex_unlock(&sh->lock);

  for (i = 0; i < nb; i++) {
    fwd_ent *e = batch[i];
    if (open) {
      uvq_uv_ep_recv(uep, &e->path, e->ecn, e->data, e->len, e->segment_size);
      uep->socks[0]->udp.stats.forward_received++;
    } else {
      /* Queued before the endpoint began closing its handles: it reads
       * nothing more. Dropped, and counted. */
      uep->socks[0]->udp.stats.forward_overflows++;
    }
    uvq_free(sh->g->mem, e);
  }
  /* In the order they were asked for. */
  while (jobs != NULL) {
    shard_job *j = jobs;
    jobs = j->next;
    j->next = rev;
    rev = j;
  }
  while (rev != NULL) {
    shard_job *j = rev;
    rev = j->next;
    if (open) {
      j->cb(uep, j->arg);
    }
    uvq_free(sh->g->mem, j);
  }
  if (close_req == 2) {
    uvq_uv_endpoint_close_now(uep, shard_closed);
  } else if (close_req == 1) {
    uvq_uv_endpoint_close(uep, shard_closed);
  } else {
    uvq_uv_ep_flush(uep);
  }
  if (more) {
    uv_mutex_lock(&sh->lock);
    if (sh->open) {
      uv_async_send(&sh->ctl);
    }
    uv_mutex_unlock(&sh->lock);
  }
}

static void shard_main(void *arg) {
  uvq_uv_shard *sh = arg;
  uvq_uv_group *g = sh->g;

  /* Runs until the shard's endpoint and |ctl| are closed. */
  uv_run(&sh->loop, UV_RUN_DEFAULT);
  uv_mutex_lock(&g->lock);
  g->ended++;
  /* Under the lock: the group waits for every thread before it closes
   * |done|. */
  uv_async_send(&g->done);
  uv_mutex_unlock(&g->lock);
}

/* ------------------------------------------------------------------------ */
/* The group, on the caller's loop                                          */
/* ------------------------------------------------------------------------ */

static void group_free(uv_handle_t *h) {
  uvq_uv_group *g = h->data;
  const uvq_mem *mem = g->mem;

  for (unsigned i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    /* |q| is set once |lock| is initialized. */
    if (sh->q != NULL) {
      uv_mutex_destroy(&sh->lock);
      uvq_free(mem, sh->q);
    }
  }
  uv_mutex_destroy(&g->lock);
  uvq_free(mem, g->shards);
  uvq_free(mem, g->handle);
  uvq_free(mem, g);
}

/* Releases every shard: joins its thread and closes its loop (each must
 * have ended or never started). */
static void group_release(uvq_uv_group *g) {
  for (unsigned i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    if (sh->thread_started) {
      uv_thread_join(&sh->thread);
      sh->thread_started = 0;
    }
    if (sh->loop_ready) {
      /* Runs close callbacks left by a shard that never started. */
      uv_run(&sh->loop, UV_RUN_DEFAULT);
      (void)uv_loop_close(&sh->loop);
      sh->loop_ready = 0;
    }
    if (sh->q != NULL) {
      uv_mutex_lock(&sh->lock);
      (void)shard_drain(sh);
      uv_mutex_unlock(&sh->lock);
    }
  }
}

static void group_on_done(uv_async_t *h) {
  uvq_uv_group *g = h->data;
  unsigned ended, started = 0;

  uv_mutex_lock(&g->lock);
  ended = g->ended;
  uv_mutex_unlock(&g->lock);
  for (unsigned i = 0; i < g->n; i++) {
    started += g->shards[i].thread_started != 0;
  }
  if (g->finished || ended < started) {
    return;
  }
  g->finished = 1;
  group_release(g);
  if (g->close_cb != NULL) {
    /* Every shard has stopped: the stats are complete. */
    g->close_cb(g->handle, g->handle->user_data);
  }
  uv_close((uv_handle_t *)&g->done, group_free);
}

void uvq_uv_group_close(uvq_uv_group *g, uvq_uv_close_cb cb, int now) {
  int level = now ? 2 : 1;

  if (g->finished || g->closing >= level) {
    return;
  }
  g->closing = level;
  g->close_cb = cb;
  for (unsigned i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    uv_mutex_lock(&sh->lock);
    if (sh->open) {
      sh->close_req = level;
      uv_async_send(&sh->ctl);
    }
    uv_mutex_unlock(&sh->lock);
  }
}

uvq_uv_endpoint *uvq_uv_group_shard(uvq_uv_group *g, unsigned i) {
  uvq_uv_endpoint *uep = NULL;

  if (i < g->n) {
    uv_mutex_lock(&g->shards[i].lock);
    uep = g->shards[i].stopped ? NULL : g->shards[i].uep;
    uv_mutex_unlock(&g->shards[i].lock);
  }
  return uep;
}

int uvq_uv_endpoint_get_shard_stats(uvq_uv_endpoint *uep, unsigned i,
                                    uvq_uv_stats *st, uvq_endpoint_stats *est) {
  uvq_uv_shard *sh;
  int rv = 0;

  if (uep == NULL || uep->group == NULL || i >= uep->group->n) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  sh = &uep->group->shards[i];
  uv_mutex_lock(&sh->lock);
  if (!sh->stopped) {
    rv = UVQ_ERR_INVALID_STATE;
  } else {
    if (st != NULL) {
      *st = sh->ustats;
    }
    if (est != NULL) {
      *est = sh->estats;
    }
  }
  uv_mutex_unlock(&sh->lock);
  return rv;
}

void uvq_uv_group_local_addr(const uvq_uv_group *g, uvq_addr *addr) {
  *addr = g->bound;
}

int uvq_uv_group_get_stats(uvq_uv_group *g, uvq_uv_stats *st) {
  int first = 1;

  memset(st, 0, sizeof(*st));
  for (unsigned i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    uv_mutex_lock(&sh->lock);
    if (sh->stopped) {
      if (first) {
        *st = sh->ustats;
        first = 0;
      } else {
        uvq_uv_stats_add(st, &sh->ustats);
      }
    }
    uv_mutex_unlock(&sh->lock);
  }
  return 0;
}

/* The classic BPF program of the reuseport group: the return value is the
 * index of the socket to deliver to, and one out of range (or a program
 * that cannot run) lets the kernel hash the 4-tuple instead. Offset 0 is
 * the UDP payload. */
static int attach_steering(int fd) {
  struct sock_filter code[] = {
      /* A = the QUIC packet's first octet. */
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
      /* Long header (form bit set: Initial, 0-RTT, Handshake, Retry, any
       * version's numbering): out of range, so the 4-tuple hash. */
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x80, 3, 0),
      /* Short header: the DCID's first octet, its low five bits. An index
       * past the last socket is out of range too. */
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x1f),
      BPF_STMT(BPF_RET | BPF_A, 0),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof(code) / sizeof(code[0])),
                            code};

  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog,
                    sizeof(prog));
}

/* The settings every shard starts from: |settings| (NULL: the defaults)
 * with the secrets drawn once when it gives none, and the endpoint-wide
 * limits divided among |n| shards. */
static int shard_settings(uvq_settings *st, const uvq_settings *settings,
                          unsigned n) {
  if (settings == NULL) {
    uvq_settings_default(st);
  } else if (settings->version != UVQ_SETTINGS_VERSION) {
    /* Older structs are read by the core, which we cannot copy from. */
    return UVQ_ERR_INVALID_ARGUMENT;
  } else {
    *st = *settings;
  }
  /* Shards answer for each other's CIDs (stateless resets) and tokens
   * (Retry, NEW_TOKEN): one secret for all. The session-ticket key and
   * the 0-RTT anti-replay table are the shared TLS context's. */
  if (!st->static_secret_set) {
    if (getrandom(st->static_secret, sizeof(st->static_secret), 0) !=
        (ssize_t)sizeof(st->static_secret)) {
      return UVQ_ERR_INTERNAL;
    }
    st->static_secret_set = 1;
  }
  if (!st->token_key_set) {
    if (getrandom(st->token_key, sizeof(st->token_key), 0) !=
        (ssize_t)sizeof(st->token_key)) {
      return UVQ_ERR_INTERNAL;
    }
    st->token_key_set = 1;
  }
#define SHARE(x) ((x) = (x) == 0 ? 0 : ((x) + n - 1) / n)
  SHARE(st->endpoint_send_budget);
  SHARE(st->endpoint_recv_budget);
  SHARE(st->max_connections);
  SHARE(st->max_handshakes);
#undef SHARE
  return 0;
}

/* Nonzero if some socket already holds |addr| (a nonzero port): our
 * shards would join its reuseport group behind it, and their socket
 * indices would not be their shard indices. A plain bind (no
 * SO_REUSEPORT) fails then; it succeeds, and is undone, on a free port. */
static int port_taken(const struct sockaddr *addr) {
  socklen_t len = addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);
  int fd, on = 1, taken;

  if ((addr->sa_family == AF_INET &&
       ((const struct sockaddr_in *)addr)->sin_port == 0) ||
      (addr->sa_family == AF_INET6 &&
       ((const struct sockaddr_in6 *)addr)->sin6_port == 0)) {
    return 0;
  }
  fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) {
    return 0;
  }
  if (addr->sa_family == AF_INET6) {
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
  }
  taken = bind(fd, addr, len) != 0 && errno == EADDRINUSE;
  close(fd);
  return taken;
}

/* A warning to the settings' log_cb (at UVQ_LOG_WARN), else to their
 * ngtcp2 |log|, else to stderr. */
static void warn(const uvq_settings *st, const char *line) {
  if (st->log_cb != NULL && st->log_level >= UVQ_LOG_WARN) {
    st->log_cb(st->log_cb_user_data, UVQ_LOG_WARN, NULL, line);
  } else if (st->log != NULL) {
    st->log(st->log_user_data, line);
  } else {
    fprintf(stderr, "uvquic: %s\n", line);
  }
}

int uvq_uv_group_listen(uvq_uv_endpoint **puep, uv_loop_t *loop,
                        const struct sockaddr *addr, const uvq_uv_config *cfg,
                        const uvq_settings *settings, uvq_tls_ctx *tls,
                        uvq_uv_accept_cb on_accept, void *user_data) {
  struct sockaddr_storage bind_ss;
  uvq_uv_endpoint *handle;
  int foreign;
  uvq_uv_group *g;
  uvq_uv_config c;
  uvq_settings st;
  unsigned i;
  int rv, saved;

  if (puep == NULL || loop == NULL || addr == NULL || tls == NULL ||
      (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = uvq_uv_config_read(&c, cfg);
  if (rv != 0) {
    return rv;
  }
  if (c.shards > UVQ_UV_MAX_SHARDS) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = shard_settings(&st, settings, c.shards);
  if (rv != 0) {
    return rv;
  }
  if (c.mem == NULL) {
    c.mem = uvq_mem_default();
  }
  g = uvq_calloc(c.mem, 1, sizeof(*g));
  handle = uvq_calloc(c.mem, 1, sizeof(*handle));
  if (g != NULL) {
    g->shards = uvq_calloc(c.mem, c.shards, sizeof(*g->shards));
  }
  if (g == NULL || handle == NULL || g->shards == NULL ||
      uv_mutex_init(&g->lock) != 0) {
    if (g != NULL) {
      uvq_free(c.mem, g->shards);
    }
    uvq_free(c.mem, g);
    uvq_free(c.mem, handle);
    return UVQ_ERR_NOMEM;
  }
  g->mem = c.mem;
  g->loop = loop;
  g->n = c.shards;
  g->qcap =
      c.forward_queue_len ? c.forward_queue_len : UVQ_UV_FORWARD_QUEUE_DEFAULT;
  g->handle = handle;
  handle->group = g;
  handle->loop = loop;
  handle->mem = c.mem;
  handle->cfg = c;
  handle->is_server = 1;
  handle->on_accept = on_accept;
  handle->user_data = user_data;
  g->done.data = g;
  if (uv_async_init(loop, &g->done, group_on_done) != 0) {
    uv_mutex_destroy(&g->lock);
    uvq_free(c.mem, g->shards);
    uvq_free(c.mem, g);
    uvq_free(c.mem, handle);
    return UVQ_ERR_IO;
  }

  /* Checked before our sockets exist: after, the port is ours. */
  foreign = port_taken(addr);
  /* One shard after the other, shard 0 first: the order their sockets
   * join the reuseport group is the socket index the BPF program returns.
   * The first binds |addr| (port 0 picks one), the others its address. */
  memcpy(&bind_ss, addr,
         addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                    : sizeof(struct sockaddr_in6));
  for (i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];

    sh->g = g;
    sh->index = i;
    sh->q = uvq_calloc(c.mem, g->qcap, sizeof(fwd_ent *));
    if (sh->q == NULL) {
      rv = UVQ_ERR_NOMEM;
      goto fail;
    }
    if (uv_mutex_init(&sh->lock) != 0) {
      uvq_free(c.mem, sh->q);
      sh->q = NULL;
      rv = UVQ_ERR_NOMEM;
      goto fail;
    }
    if (uv_loop_init(&sh->loop) != 0) {
      rv = UVQ_ERR_IO;
      goto fail;
    }
    sh->loop_ready = 1;
    if (uv_async_init(&sh->loop, &sh->ctl, shard_on_ctl) != 0) {
      rv = UVQ_ERR_IO;
      goto fail;
    }
    sh->ctl.data = sh;
    rv = uvq_uv_ep_new(&sh->uep, &sh->loop, 1, (struct sockaddr *)&bind_ss, &c,
                       &st, tls, on_accept, user_data, sh);
    if (rv != 0) {
      saved = errno;
      uv_close((uv_handle_t *)&sh->ctl, NULL);
      errno = saved;
      goto fail;
    }
    uv_mutex_lock(&sh->lock);
    sh->open = 1;
    uv_mutex_unlock(&sh->lock);
    if (i == 0) {
      g->bound = sh->uep->socks[0]->udp.bound;
      memcpy(&bind_ss, &g->bound.ss, g->bound.len);
    }
  }
  if (foreign) {
    /* Another process's SO_REUSEPORT sockets came first: socket index i
     * is not shard i, and a program would steer to the wrong sockets. */
    warn(&st, "shards: the address already has SO_REUSEPORT sockets of "
              "another owner, so socket indices are not shard indices: no "
              "steering program; the kernel's hash spreads packets, "
              "forwarding fixes what lands wrong");
  } else if (attach_steering(g->shards[0].uep->socks[0]->udp.fd) != 0) {
    char line[256];
    snprintf(line, sizeof(line),
             "shards: cannot attach the steering program "
             "(SO_ATTACH_REUSEPORT_CBPF: %s); the kernel's hash spreads "
             "packets, forwarding fixes what lands wrong",
             strerror(errno));
    warn(&st, line);
  }
  for (i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    if (uv_thread_create(&sh->thread, shard_main, sh) != 0) {
      rv = UVQ_ERR_IO;
      goto fail;
    }
    sh->thread_started = 1;
  }
  *puep = handle;
  return 0;

fail:
  saved = errno;
  /* Shards whose thread runs close and end on it; the others are closed
   * here, on their loops, by group_release. */
  for (i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    if (sh->uep == NULL) {
      continue;
    }
    if (sh->thread_started) {
      uv_mutex_lock(&sh->lock);
      if (sh->open) {
        sh->close_req = 2;
        uv_async_send(&sh->ctl);
      }
      uv_mutex_unlock(&sh->lock);
    } else {
      uvq_uv_endpoint_close_now(sh->uep, shard_closed);
    }
  }
  g->finished = 1;
  group_release(g);
  uv_close((uv_handle_t *)&g->done, group_free);
  errno = saved;
  return rv;
}

/* ------------------------------------------------------------------------ */
/* Public calls about shards                                                */
/* ------------------------------------------------------------------------ */

unsigned uvq_uv_endpoint_get_shard_count(uvq_uv_endpoint *uep) {
  if (uep->group != NULL) {
    return uep->group->n;
  }
  return uep->shard != NULL ? uep->shard->g->n : 1;
}

unsigned uvq_uv_endpoint_get_shard_index(uvq_uv_endpoint *uep) {
  return uep->shard != NULL ? uep->shard->index : 0;
}

uvq_uv_endpoint *uvq_uv_endpoint_get_shard(uvq_uv_endpoint *uep, unsigned i) {
  if (uep->group != NULL) {
    return uvq_uv_group_shard(uep->group, i);
  }
  return i == 0 ? uep : NULL;
}

uv_loop_t *uvq_uv_endpoint_get_loop(uvq_uv_endpoint *uep) { return uep->loop; }

int uvq_uv_endpoint_each_shard(uvq_uv_endpoint *uep, uvq_uv_shard_cb cb,
                               void *arg) {
  uvq_uv_group *g;
  int count = 0;

  if (uep == NULL || cb == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  g = uep->group;
  if (g == NULL) {
    cb(uep, arg);
    return 1;
  }
  for (unsigned i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    shard_job *j = uvq_malloc(g->mem, sizeof(*j));
    if (j == NULL) {
      return UVQ_ERR_NOMEM;
    }
    j->cb = cb;
    j->arg = arg;
    uv_mutex_lock(&sh->lock);
    if (sh->open) {
      j->next = sh->jobs;
      sh->jobs = j;
      uv_async_send(&sh->ctl);
      j = NULL;
      count++;
    }
    uv_mutex_unlock(&sh->lock);
    uvq_free(g->mem, j);
  }
  return count;
}

size_t uvq_uv_endpoint_conn_count(uvq_uv_endpoint *uep) {
  size_t n = 0;

  if (uep->group == NULL) {
    return uvq_endpoint_conn_count(uep->ep);
  }
  for (unsigned i = 0; i < uep->group->n; i++) {
    n += atomic_load_explicit(&uep->group->shards[i].conns,
                              memory_order_relaxed);
  }
  return n;
}

int uvq_uv_endpoint_get_endpoint_stats(uvq_uv_endpoint *uep,
                                       uvq_endpoint_stats *st) {
  uvq_uv_group *g;

  if (uep == NULL || st == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  g = uep->group;
  if (g == NULL) {
    uvq_endpoint_get_stats(uep->ep, st);
    return 0;
  }
  memset(st, 0, sizeof(*st));
  for (unsigned i = 0; i < g->n; i++) {
    uvq_uv_shard *sh = &g->shards[i];
    uv_mutex_lock(&sh->lock);
    if (sh->stopped) {
      uint64_t *d = (uint64_t *)(void *)st;
      const uint64_t *s = (const uint64_t *)(const void *)&sh->estats;
      for (size_t k = 0; k < sizeof(*st) / sizeof(uint64_t); k++) {
        d[k] += s[k];
      }
    }
    uv_mutex_unlock(&sh->lock);
  }
  return 0;
}
