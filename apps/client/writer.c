/* The client's buffered output writer: see writer.h. */
#include "client/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct outw_block {
  outw_block *next;
  size_t len;   /* bytes filled */
  size_t start; /* bytes written */
  uint8_t data[];
};

static void on_write(uv_fs_t *req);

/* Blocks are kept for reuse (up to OUTW_SPARE): a fresh 256 KiB malloc is
 * an mmap whose pages all fault on first write, a tenth of the client's
 * CPU when saving at loopback speed. */
static outw_block *block_get(outw *w) {
  outw_block *b = w->spare;

  if (b != NULL) {
    w->spare = b->next;
    --w->nspare;
    return b;
  }
  return malloc(sizeof(*b) + OUTW_BLOCK);
}

static void block_put(outw *w, outw_block *b) {
  if (w->nspare < OUTW_SPARE) {
    b->next = w->spare;
    w->spare = b;
    ++w->nspare;
  } else {
    free(b);
  }
}

static void spare_free(outw *w) {
  while (w->spare != NULL) {
    outw_block *b = w->spare;
    w->spare = b->next;
    free(b);
  }
  w->nspare = 0;
}

/* What symbolic link |path| names, relative to the link's directory. */
static char *link_target(const char *path) {
  char buf[4096], *out;
  const char *slash = strrchr(path, '/');
  ssize_t n = readlink(path, buf, sizeof(buf) - 1);
  size_t dirlen;

  if (n <= 0) {
    return NULL;
  }
  buf[n] = '\0';
  dirlen = slash != NULL && buf[0] != '/' ? (size_t)(slash - path) + 1 : 0;
  out = malloc(dirlen + (size_t)n + 1);
  if (out != NULL) {
    memcpy(out, path, dirlen);
    memcpy(out + dirlen, buf, (size_t)n + 1);
  }
  return out;
}

int outw_init(outw *w, uv_loop_t *loop, const char *target, int append) {
  memset(w, 0, sizeof(*w));
  w->loop = loop;
  w->fd = -1;
  w->append = append;
  if (target != NULL) {
    struct stat sb;
    char *real = NULL;
    size_t n;

    if (lstat(target, &sb) == 0 && S_ISLNK(sb.st_mode)) {
      /* Written through, as curl does: the link stays a link, and the
       * .part is made beside the file it names. */
      real = realpath(target, NULL);
      if (real == NULL) {
        real = link_target(target); /* it names no file yet */
      }
    }
    w->target = real != NULL ? real : strdup(target);
    if (w->target == NULL) {
      return -1;
    }
    if (stat(w->target, &sb) == 0 && !S_ISREG(sb.st_mode)) {
      /* A device (/dev/null), a FIFO: written in place, never renamed
       * over (that would replace the device with a file). */
      w->direct = 1;
    } else {
      n = strlen(w->target);
      w->part = malloc(n + sizeof(".part"));
      if (w->part == NULL) {
        free(w->target);
        return -1;
      }
      memcpy(w->part, w->target, n);
      memcpy(w->part + n, ".part", sizeof(".part"));
    }
  }
  uv_timer_init(loop, &w->flush);
  w->flush.data = w;
  return 0;
}

uint64_t outw_part_size(const outw *w) {
  struct stat sb;

  if (w->part == NULL || stat(w->part, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    return 0;
  }
  return (uint64_t)sb.st_size;
}

void outw_resume(outw *w) { w->append = w->part != NULL; }

const char *outw_name(const outw *w) {
  return w->target ? w->target : "standard output";
}

void outw_set_conn(outw *w, uvq_conn *conn) {
  if (conn != w->conn) {
    /* A closed connection dropped our holds with it; a live one that we
     * leave gets them back. */
    w->held = 0;
  }
  w->conn = conn;
}

static void release(outw *w, size_t n) {
  if (n > w->held) {
    n = w->held;
  }
  if (n > 0) {
    w->held -= n;
    uvq_conn_recv_release(w->conn, n);
  }
}

/* Drops every buffered block but the ones a write in flight still reads
 * (with |keep_inflight|), releasing their holds. */
static void drop_blocks(outw *w, int keep_inflight) {
  outw_block *b = w->head, *next;

  if (keep_inflight && w->writing) {
    return; /* on_write drops them once the write returns */
  }
  for (; b != NULL; b = next) {
    next = b->next;
    block_put(w, b);
  }
  w->head = w->tail = NULL;
  release(w, w->held);
  w->queued = 0;
}

static int open_output(outw *w) {
  struct stat sb;

  if (w->target == NULL) {
    w->fd = STDOUT_FILENO;
    w->seekable = 0;
    return 0;
  }
  if (w->direct) {
    w->fd = open(w->target, O_WRONLY | O_CLOEXEC);
    if (w->fd < 0) {
      return -1;
    }
    w->seekable = 0;
    return 0;
  }
  w->fd =
      open(w->part, O_WRONLY | O_CREAT | O_CLOEXEC | (w->append ? 0 : O_TRUNC),
           0644);
  if (w->fd < 0) {
    return -1;
  }
  if (fstat(w->fd, &sb) != 0) {
    int e = errno;
    close(w->fd);
    w->fd = -1;
    errno = e;
    return -1;
  }
  w->seekable = S_ISREG(sb.st_mode);
  w->off = w->seekable && w->append ? (uint64_t)sb.st_size : 0;
  return 0;
}

static void finish(outw *w);

/* Starts a write of the full blocks (and of a partial last one with
 * |partial|), gathered into one writev, unless one is in flight. */
static void kick(outw *w, int partial) {
  outw_block *b;
  unsigned int n = 0;
  int rv;

  if (w->writing || w->err) {
    return;
  }
  for (b = w->head; b != NULL && n < OUTW_MAX_IOV; b = b->next) {
    if (b->len == b->start) {
      continue;
    }
    if (b->len < OUTW_BLOCK && !partial) {
      break;
    }
    w->iov[n++] = uv_buf_init((char *)b->data + b->start,
                              (unsigned int)(b->len - b->start));
  }
  if (n == 0) {
    return;
  }
  rv = uv_fs_write(w->loop, &w->req, w->fd, w->iov, n,
                   w->seekable ? (int64_t)w->off : -1, on_write);
  if (rv != 0) {
    w->err = -rv;
    drop_blocks(w, 0);
    return;
  }
  w->writing = 1;
  w->req.data = w;
  ++w->writes;
}

/* Consumes |n| written bytes from the head of the queue. */
static void consume(outw *w, size_t n) {
  release(w, n);
  w->queued -= n;
  w->written += n;
  w->off += n;
  while (n > 0 && w->head != NULL) {
    outw_block *b = w->head;
    size_t take = b->len - b->start;
    if (take > n) {
      take = n;
    }
    b->start += take;
    n -= take;
    if (b->start == b->len &&
        (b->len == OUTW_BLOCK || b->next != NULL || w->closing)) {
      w->head = b->next;
      if (w->head == NULL) {
        w->tail = NULL;
      }
      block_put(w, b);
    }
  }
}

static void on_flush_timer(uv_timer_t *t) {
  outw *w = t->data;

  w->flush_armed = 0;
  /* Behind a write in flight: on_write writes the partial block next. */
  w->flush_wanted = w->writing;
  kick(w, 1);
}

/* Arms the flush timer for a partial last block that waits unwritten: it
 * holds received bytes, so it must not wait for more (the connection may
 * be paused on them). */
static void arm_flush(outw *w) {
  if (!w->flush_armed && !w->err && w->tail != NULL &&
      w->tail->len < OUTW_BLOCK && w->tail->len > w->tail->start) {
    w->flush_armed = 1;
    uv_timer_start(&w->flush, on_flush_timer, OUTW_FLUSH_MS, 0);
  }
}

static void on_write(uv_fs_t *req) {
  outw *w = req->data;
  ssize_t res = req->result;

  uv_fs_req_cleanup(req);
  w->writing = 0;
  if (w->truncate_pending) {
    /* Started over while this write was in flight: forget it. */
    outw_block *b, *next;
    w->truncate_pending = 0;
    for (b = w->stale; b != NULL; b = next) {
      next = b->next;
      block_put(w, b);
    }
    w->stale = NULL;
    if (ftruncate(w->fd, 0) != 0 && w->err == 0) {
      w->err = errno;
    }
    w->off = 0;
  } else if (res == UV_EAGAIN) {
    /* A non-blocking pipe that is full: try again shortly. */
    if (!w->flush_armed) {
      w->flush_armed = 1;
      uv_timer_start(&w->flush, on_flush_timer, 1, 0);
    }
    return;
  } else if (res < 0) {
    if (w->err == 0) {
      w->err = (int)-res;
    }
    drop_blocks(w, 0);
  } else {
    consume(w, (size_t)res);
  }
  if (w->err) {
    drop_blocks(w, 0);
  }
  kick(w, w->closing || w->flush_wanted);
  w->flush_wanted = 0;
  if (w->closing && !w->writing) {
    finish(w);
    return;
  }
  arm_flush(w);
}

int outw_append(outw *w, const uint8_t *data, size_t len) {
  if (w->err) {
    errno = w->err;
    return -1;
  }
  if (w->fd < 0 && open_output(w) != 0) {
    w->err = errno;
    return -1;
  }
  w->appended += len;
  w->queued += len;
  if (w->conn != NULL) {
    uvq_conn_recv_hold(w->conn, len);
    w->held += len;
  }
  while (len > 0) {
    outw_block *b = w->tail;
    size_t take;

    if (b == NULL || b->len == OUTW_BLOCK) {
      b = block_get(w);
      if (b == NULL) {
        w->err = ENOMEM;
        drop_blocks(w, 1);
        errno = ENOMEM;
        return -1;
      }
      b->next = NULL;
      b->len = b->start = 0;
      if (w->tail) {
        w->tail->next = b;
      } else {
        w->head = b;
      }
      w->tail = b;
    }
    take = OUTW_BLOCK - b->len;
    if (take > len) {
      take = len;
    }
    memcpy(b->data + b->len, data, take);
    b->len += take;
    data += take;
    len -= take;
  }
  kick(w, 0);
  arm_flush(w);
  return 0;
}

int outw_restart(outw *w) {
  if (w->fd < 0) {
    w->append = 0; /* not opened yet: a resumed .part is truncated */
    w->appended = 0;
    return 0;
  }
  if (!w->seekable) {
    errno = ESPIPE;
    return -1;
  }
  w->appended = w->written = 0;
  release(w, w->held);
  if (w->writing) {
    /* The write in flight still reads the old blocks: set them aside
     * for on_write; what arrives from now on starts a new queue. */
    w->truncate_pending = 1;
    w->stale = w->head;
    w->head = w->tail = NULL;
    w->queued = 0;
    return 0;
  }
  drop_blocks(w, 0);
  w->off = 0;
  if (ftruncate(w->fd, 0) != 0) {
    w->err = errno;
    return -1;
  }
  return 0;
}

static void on_timer_closed(uv_handle_t *h) {
  outw *w = h->data;

  if (w->done) {
    w->done(w, w->err, w->arg); /* the names are still valid */
  }
  free(w->target);
  free(w->part);
  w->target = w->part = NULL;
}

static void finish(outw *w) {
  struct stat sb;

  drop_blocks(w, 0);
  if (w->fd < 0 && w->commit && w->err == 0 && open_output(w) != 0) {
    w->err = errno; /* an empty body: the target exists, empty */
  }
  if (w->fd >= 0 && w->target != NULL) {
    if (close(w->fd) != 0 && w->err == 0) {
      w->err = errno;
    }
    if (w->direct) {
      /* Nothing to rename or remove. */
    } else if (w->commit && w->err == 0) {
      if (rename(w->part, w->target) != 0) {
        w->err = errno;
      }
    } else if (stat(w->part, &sb) == 0 && S_ISREG(sb.st_mode) &&
               sb.st_size == 0) {
      (void)unlink(w->part); /* nothing worth resuming */
    }
  }
  w->fd = -1;
  spare_free(w);
  uv_timer_stop(&w->flush);
  uv_close((uv_handle_t *)&w->flush, on_timer_closed);
}

void outw_close(outw *w, int commit, outw_done_cb done, void *arg) {
  w->closing = 1;
  w->commit = commit;
  w->done = done;
  w->arg = arg;
  kick(w, 1);
  if (!w->writing) {
    finish(w);
  }
}
