/* uvquic-client's output writer (apps/client/writer.c): .part files
 * renamed only on commit, nothing created for a body that never came,
 * a partial .part kept, restart, write errors, and a partial last block
 * that waits behind a slow write still reaching the output. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/writer.h"

typedef struct wt {
  uv_loop_t loop;
  char dir[64];
  char target[128];
  int done, err;
} wt;

static void on_done(outw *w, int err, void *arg) {
  wt *t = arg;
  (void)w;
  t->done++;
  t->err = err;
}

static void wt_init(wt *t) {
  memset(t, 0, sizeof(*t));
  assert_int_equal(uv_loop_init(&t->loop), 0);
  snprintf(t->dir, sizeof(t->dir), "/tmp/uvq-writer-XXXXXX");
  assert_non_null(mkdtemp(t->dir));
  snprintf(t->target, sizeof(t->target), "%s/out.bin", t->dir);
}

static void wt_free(wt *t) {
  char p[160];
  snprintf(p, sizeof(p), "%s.part", t->target);
  (void)unlink(p);
  (void)unlink(t->target);
  assert_int_equal(rmdir(t->dir), 0);
  assert_int_equal(uv_loop_close(&t->loop), 0);
}

static int exists(const char *path, off_t *psize) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    return 0;
  }
  if (psize) {
    *psize = sb.st_size;
  }
  return 1;
}

static uint8_t *pattern(size_t n) {
  uint8_t *b = malloc(n);
  assert_non_null(b);
  for (size_t i = 0; i < n; ++i) {
    b[i] = (uint8_t)(i * 7 + i / 251);
  }
  return b;
}

/* 3 MiB in uneven pieces, committed: the target has every byte, no .part
 * is left, and the writes were few and large. */
static void test_writer_commit_renames(void **state) {
  size_t n = 3 * 1024 * 1024 + 17, off = 0, piece = 1350;
  uint8_t *b = pattern(n), *got = malloc(n + 1);
  char part[160];
  outw w;
  wt t;
  int fd;
  (void)state;

  wt_init(&t);
  snprintf(part, sizeof(part), "%s.part", t.target);
  assert_int_equal(outw_init(&w, &t.loop, t.target, 0), 0);
  while (off < n) {
    size_t k = n - off < piece ? n - off : piece;
    assert_int_equal(outw_append(&w, b + off, k), 0);
    off += k;
    uv_run(&t.loop, UV_RUN_NOWAIT);
  }
  assert_false(exists(t.target, NULL));
  outw_close(&w, 1, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(t.done, 1);
  assert_int_equal(t.err, 0);
  assert_false(exists(part, NULL));
  fd = open(t.target, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(read(fd, got, n + 1), (ssize_t)n);
  close(fd);
  assert_memory_equal(got, b, n);
  /* Gathered: at most one write per 256 KiB block, and one more. */
  assert_true(w.writes <= n / OUTW_BLOCK + 2);
  free(b);
  free(got);
  wt_free(&t);
}

/* No byte, not committed: nothing is created. Some bytes, not committed:
 * the .part stays for a resume, and the target is never touched. */
static void test_writer_failure_leaves_target(void **state) {
  char part[160];
  off_t size = 0;
  outw w;
  wt t;
  FILE *f;
  (void)state;

  wt_init(&t);
  snprintf(part, sizeof(part), "%s.part", t.target);
  f = fopen(t.target, "w");
  assert_non_null(f);
  fputs("keep me", f);
  fclose(f);
  assert_int_equal(outw_init(&w, &t.loop, t.target, 0), 0);
  outw_close(&w, 0, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(t.done, 1);
  assert_false(exists(part, NULL));
  assert_true(exists(t.target, &size));
  assert_int_equal(size, 7);

  assert_int_equal(outw_init(&w, &t.loop, t.target, 0), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"partial", 7), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"!", 1), 0);
  outw_close(&w, 0, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(t.done, 2);
  assert_int_equal(t.err, 0);
  assert_true(exists(part, &size));
  assert_int_equal(size, 8);
  assert_true(exists(t.target, &size));
  assert_int_equal(size, 7);

  /* Resuming appends to the .part; a restart drops what was written. */
  assert_int_equal(outw_init(&w, &t.loop, t.target, 1), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"more", 4), 0);
  outw_close(&w, 0, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_true(exists(part, &size));
  assert_int_equal(size, 12);
  assert_int_equal(outw_init(&w, &t.loop, t.target, 1), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"x", 1), 0);
  assert_int_equal(outw_restart(&w), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"whole", 5), 0);
  outw_close(&w, 1, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(t.err, 0);
  assert_false(exists(part, NULL));
  assert_true(exists(t.target, &size));
  assert_int_equal(size, 5);
  wt_free(&t);
}

/* Standard output on /dev/full: the error comes back from the threadpool
 * write, the next append fails with it, and done reports it. */
static void test_writer_enospc(void **state) {
  uint8_t *b = pattern(OUTW_BLOCK);
  int saved = dup(STDOUT_FILENO), full = open("/dev/full", O_WRONLY);
  outw w;
  wt t;
  int rv = 0, i;
  (void)state;

  if (full < 0) {
    skip();
  }
  wt_init(&t);
  assert_int_equal(dup2(full, STDOUT_FILENO), STDOUT_FILENO);
  assert_int_equal(outw_init(&w, &t.loop, NULL, 0), 0);
  for (i = 0; i < 8 && rv == 0; ++i) {
    rv = outw_append(&w, b, OUTW_BLOCK);
    uv_run(&t.loop, UV_RUN_ONCE);
  }
  assert_int_equal(rv, -1);
  assert_int_equal(errno, ENOSPC);
  outw_close(&w, 1, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
  close(saved);
  close(full);
  assert_int_equal(t.done, 1);
  assert_int_equal(t.err, ENOSPC);
  free(b);
  wt_free(&t);
}

/* A full block goes to a pipe nobody reads for 150 ms; the 10 bytes after
 * it wait in a partial block whose flush timer fires while that write is
 * stuck. Once the reader drains the pipe, those 10 bytes must follow
 * without another append (the received bytes they hold may be what
 * pauses the connection). */
typedef struct slow {
  int rfd;
  size_t got;
  uv_timer_t start, check;
  uv_poll_t poll;
  int polling;
} slow;

static void slow_read(uv_poll_t *h, int status, int events) {
  slow *s = h->data;
  char buf[65536];
  ssize_t n;
  (void)status;
  (void)events;
  while ((n = read(s->rfd, buf, sizeof(buf))) > 0) {
    s->got += (size_t)n;
  }
}

static void slow_start(uv_timer_t *t) {
  slow *s = t->data;
  uv_poll_start(&s->poll, UV_READABLE, slow_read);
}

static void slow_check(uv_timer_t *t) {
  slow *s = t->data;
  uv_stop(t->loop);
  (void)s;
}

static void test_writer_partial_after_slow_write(void **state) {
  uint8_t *b = pattern(OUTW_BLOCK + 10);
  int saved = dup(STDOUT_FILENO), p[2];
  slow s;
  outw w;
  wt t;
  (void)state;

  wt_init(&t);
  memset(&s, 0, sizeof(s));
  assert_int_equal(pipe(p), 0);
  s.rfd = p[0];
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  assert_int_equal(dup2(p[1], STDOUT_FILENO), STDOUT_FILENO);
  uv_poll_init(&t.loop, &s.poll, p[0]);
  uv_timer_init(&t.loop, &s.start);
  uv_timer_init(&t.loop, &s.check);
  s.poll.data = s.start.data = s.check.data = &s;
  uv_timer_start(&s.start, slow_start, 150, 0);
  uv_timer_start(&s.check, slow_check, 600, 0);
  assert_int_equal(outw_init(&w, &t.loop, NULL, 0), 0);
  assert_int_equal(outw_append(&w, b, OUTW_BLOCK + 10), 0);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(s.got, OUTW_BLOCK + 10);
  outw_close(&w, 1, on_done, &t);
  uv_close((uv_handle_t *)&s.poll, NULL);
  uv_close((uv_handle_t *)&s.start, NULL);
  uv_close((uv_handle_t *)&s.check, NULL);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
  close(saved);
  close(p[0]);
  close(p[1]);
  assert_int_equal(t.err, 0);
  free(b);
  wt_free(&t);
}

/* A target that is not a regular file (a FIFO here; /dev/null in use) is
 * written in place and never renamed over: it stays what it was. A
 * symbolic link is written through and stays a link. */
static void test_writer_special_targets(void **state) {
  char fifo[160], link[160], buf[64];
  struct stat sb;
  off_t size = 0;
  outw w;
  wt t;
  int rfd;
  (void)state;

  wt_init(&t);
  snprintf(fifo, sizeof(fifo), "%s/fifo", t.dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  rfd = open(fifo, O_RDONLY | O_NONBLOCK);
  assert_true(rfd >= 0);
  assert_int_equal(outw_init(&w, &t.loop, fifo, 0), 0);
  assert_int_equal(outw_part_size(&w), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"through", 7), 0);
  outw_close(&w, 1, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(t.err, 0);
  assert_int_equal(lstat(fifo, &sb), 0);
  assert_true(S_ISFIFO(sb.st_mode));
  assert_int_equal(read(rfd, buf, sizeof(buf)), 7);
  assert_memory_equal(buf, "through", 7);
  close(rfd);
  assert_int_equal(unlink(fifo), 0);

  snprintf(link, sizeof(link), "%s/link", t.dir);
  assert_int_equal(symlink(t.target, link), 0);
  assert_int_equal(outw_init(&w, &t.loop, link, 0), 0);
  assert_int_equal(outw_append(&w, (const uint8_t *)"abc", 3), 0);
  outw_close(&w, 1, on_done, &t);
  uv_run(&t.loop, UV_RUN_DEFAULT);
  assert_int_equal(t.err, 0);
  assert_int_equal(lstat(link, &sb), 0);
  assert_true(S_ISLNK(sb.st_mode));
  assert_true(exists(t.target, &size));
  assert_int_equal(size, 3);
  assert_int_equal(unlink(link), 0);
  wt_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_commit_renames),
      cmocka_unit_test(test_writer_failure_leaves_target),
      cmocka_unit_test(test_writer_enospc),
      cmocka_unit_test(test_writer_special_targets),
      cmocka_unit_test(test_writer_partial_after_slow_write),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
