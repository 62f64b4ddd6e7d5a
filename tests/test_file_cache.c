/*
 * The open-file cache (src/app/file_cache.c) in front of uvq_http_resolve:
 * a hit touches no file, a changed file is seen once the validity has run
 * out (fake clock) and not before, the limits evict least recently used
 * entries, a response keeps its file across eviction, no descriptor
 * leaks, and the path jail holds through the cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/file_cache.h"

static char ROOT[64];
static char OUTSIDE[64];

#define MS ((uint64_t)1000000)

static void put(const char *rel, const char *text) {
  char p[256];
  FILE *f;

  snprintf(p, sizeof(p), "%s/%s", ROOT, rel);
  f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* A file of |n| bytes of |c|. */
static void put_n(const char *rel, size_t n, char c) {
  char *buf = malloc(n + 1);

  assert_non_null(buf);
  memset(buf, c, n);
  buf[n] = '\0';
  put(rel, buf);
  free(buf);
}

static void rm(const char *rel) {
  char p[256];

  snprintf(p, sizeof(p), "%s/%s", ROOT, rel);
  assert_int_equal(unlink(p), 0);
}

static int group_setup(void **state) {
  char p[256];
  FILE *f;

  (void)state;
  strcpy(ROOT, "/tmp/uvq_test_file_cache.XXXXXX");
  strcpy(OUTSIDE, "/tmp/uvq_test_file_cache_out.XXXXXX");
  if (mkdtemp(ROOT) == NULL || mkdtemp(OUTSIDE) == NULL) {
    return -1;
  }
  snprintf(p, sizeof(p), "%s/secret", OUTSIDE);
  f = fopen(p, "w");
  if (f == NULL) {
    return -1;
  }
  fputs("secret\n", f);
  fclose(f);
  snprintf(p, sizeof(p), "%s/dir", ROOT);
  return mkdir(p, 0755);
}

static int group_teardown(void **state) {
  char cmd[256];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", ROOT, OUTSIDE);
  return system(cmd) == 0 ? 0 : -1;
}

/* The descriptors this process holds. */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;

  assert_non_null(d);
  while (readdir(d) != NULL) {
    ++n;
  }
  closedir(d);
  return n;
}

static uvq_http_resolve_status get(uvq_file_cache *fc, uvq_fileserve *fs,
                                   const char *target, uint64_t now,
                                   uvq_file **pf) {
  static uvq_http_resolved res;
  uvq_http_resolve_status rs =
      uvq_file_cache_resolve(fc, fs, target, strlen(target), 0, now, &res, pf);

  if (rs == UVQ_HTTP_FILE) {
    assert_non_null(*pf);
    assert_int_equal(res.fd, -1);
    assert_int_equal(res.st.st_size, uvq_file_stat(*pf)->st_size);
  } else {
    assert_null(*pf);
    if (res.fd >= 0) {
      close(res.fd);
    }
  }
  return rs;
}

/* The body |target| resolves to, in |out| (released). */
static void body(uvq_file_cache *fc, uvq_fileserve *fs, const char *target,
                 uint64_t now, char *out, size_t outlen) {
  uvq_file *f;
  ssize_t n;

  assert_int_equal(get(fc, fs, target, now, &f), UVQ_HTTP_FILE);
  n = uvq_file_read(f, (uint8_t *)out, outlen - 1, 0);
  assert_true(n >= 0);
  out[n] = '\0';
  uvq_file_release(f);
}

/* Checks the counters of |fc| (fds apart); ANY skips one. */
#define ANY UINT64_MAX
static void expect(const uvq_file_cache *fc, uint64_t hits, uint64_t misses,
                   uint64_t evictions, uint64_t expirations, uint64_t entries,
                   uint64_t bytes) {
  const uint64_t want[] = {hits,        misses,  evictions,
                           expirations, entries, bytes};
  uvq_file_cache_stats st;

  uvq_file_cache_get_stats(fc, &st);
  const uint64_t got[] = {st.hits,        st.misses,  st.evictions,
                          st.expirations, st.entries, st.bytes};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); ++i) {
    if (want[i] != ANY) {
      assert_int_equal(got[i], want[i]);
    }
  }
}

static void cache_init_fds(uvq_file_cache *fc, size_t entries, size_t bytes,
                           uint64_t valid, size_t fds) {
  uvq_file_cache_config cfg;

  uvq_file_cache_config_default(&cfg);
  cfg.max_fds = fds;
  cfg.max_entries = entries;
  cfg.max_bytes = bytes;
  cfg.valid = valid;
  assert_int_equal(uvq_file_cache_init(fc, &cfg), 0);
}

static void cache_init(uvq_file_cache *fc, size_t entries, size_t bytes,
                       uint64_t valid) {
  cache_init_fds(fc, entries, bytes, valid, UVQ_FILE_CACHE_FDS);
}

/* A hit opens, stats and reads nothing: the file can be gone or rewritten
 * and the cached bytes are served, until the validity runs out. */
static void test_file_cache_hit(void **state) {
  uvq_file_cache fc;
  uvq_fileserve fs;
  char buf[64];
  (void)state;

  put("a.txt", "hello\n");
  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  cache_init(&fc, 16, 1 << 20, 1000 * MS);
  body(&fc, &fs, "/a.txt", 0, buf, sizeof(buf));
  assert_string_equal(buf, "hello\n");
  /* Rewritten in place (no pread on a hit), then removed (no openat2). */
  put("a.txt", "HELLO\n");
  body(&fc, &fs, "/a.txt?q=1", 10 * MS, buf, sizeof(buf));
  assert_string_equal(buf, "hello\n");
  rm("a.txt");
  /* The same decoded path, spelled differently. */
  body(&fc, &fs, "/%61.txt", 999 * MS, buf, sizeof(buf));
  assert_string_equal(buf, "hello\n");
  expect(&fc, 2, 1, 0, 0, 1, 6 + 2 * strlen("/a.txt"));
  uvq_file_cache_free(&fc);
  uvq_fileserve_free(&fs);
}

/* A changed file is served once the validity has run out, and not before;
 * a removed one is then 404. */
static void test_file_cache_expiry(void **state) {
  uvq_file_cache fc;
  uvq_fileserve fs;
  uvq_file *f;
  char buf[64];
  (void)state;

  put("b.txt", "one\n");
  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  cache_init(&fc, 16, 1 << 20, 500 * MS);
  body(&fc, &fs, "/b.txt", 1000 * MS, buf, sizeof(buf));
  put("b.txt", "two, longer\n");
  body(&fc, &fs, "/b.txt", 1499 * MS, buf, sizeof(buf));
  assert_string_equal(buf, "one\n");
  body(&fc, &fs, "/b.txt", 1500 * MS, buf, sizeof(buf));
  assert_string_equal(buf, "two, longer\n");
  rm("b.txt");
  assert_int_equal(get(&fc, &fs, "/b.txt", 1999 * MS, &f), UVQ_HTTP_FILE);
  uvq_file_release(f);
  assert_int_equal(get(&fc, &fs, "/b.txt", 2000 * MS, &f), UVQ_HTTP_NOT_FOUND);
  /* Not-found is not cached. */
  put("b.txt", "three\n");
  body(&fc, &fs, "/b.txt", 2001 * MS, buf, sizeof(buf));
  assert_string_equal(buf, "three\n");
  expect(&fc, 2, 4, 0, 2, 1, ANY);
  uvq_file_cache_free(&fc);
  uvq_fileserve_free(&fs);
  rm("b.txt");
}

/* A validity too long for the clock to reach (UINT64_MAX: "never look
 * again") keeps the entry; now + valid must not wrap to a time already
 * past. */
static void test_file_cache_valid_forever(void **state) {
  uvq_file_cache fc;
  uvq_fileserve fs;
  char buf[64];
  (void)state;

  put("c.txt", "kept\n");
  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  cache_init(&fc, 16, 1 << 20, UINT64_MAX);
  body(&fc, &fs, "/c.txt", 5 * MS, buf, sizeof(buf));
  body(&fc, &fs, "/c.txt", 6 * MS, buf, sizeof(buf));
  assert_string_equal(buf, "kept\n");
  expect(&fc, 1, 1, 0, 0, 1, ANY);
  uvq_file_cache_free(&fc);
  uvq_fileserve_free(&fs);
  rm("c.txt");
}

/* max_entries and max_bytes evict the least recently used; 0 entries
 * disables the cache. */
static void test_file_cache_limits(void **state) {
  uvq_file_cache fc;
  uvq_fileserve fs;
  uvq_file *f;
  char buf[64];
  (void)state;

  put("c1", "1");
  put("c2", "2");
  put("c3", "3");
  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  cache_init(&fc, 2, 1 << 20, 1000 * MS);
  body(&fc, &fs, "/c1", 0, buf, sizeof(buf));
  body(&fc, &fs, "/c2", 0, buf, sizeof(buf));
  body(&fc, &fs, "/c1", 0, buf, sizeof(buf)); /* c2 is now the oldest */
  body(&fc, &fs, "/c3", 0, buf, sizeof(buf));
  expect(&fc, 1, 3, 1, 0, 2, ANY);
  rm("c2");
  assert_int_equal(get(&fc, &fs, "/c2", 0, &f), UVQ_HTTP_NOT_FOUND);
  rm("c1");
  assert_int_equal(get(&fc, &fs, "/c1", 0, &f), UVQ_HTTP_FILE);
  uvq_file_release(f);
  uvq_file_cache_free(&fc);
  put("c1", "1");
  put("c2", "2");

  /* Bytes: each entry costs its size plus its key and path (3 + 3). */
  cache_init(&fc, 16, 14, 1000 * MS);
  body(&fc, &fs, "/c1", 0, buf, sizeof(buf));
  body(&fc, &fs, "/c2", 0, buf, sizeof(buf));
  expect(&fc, 0, 2, 0, 0, 2, 14);
  body(&fc, &fs, "/c3", 0, buf, sizeof(buf));
  expect(&fc, 0, 3, 1, 0, 2, 14);
  /* A file larger than max_bytes keeps its descriptor instead. */
  put_n("big", 100, 'x');
  body(&fc, &fs, "/big", 0, buf, sizeof(buf));
  expect(&fc, 0, 4, 3, 0, 1, 8);
  uvq_file_cache_free(&fc);

  /* Disabled: every resolution goes to the file system. */
  cache_init(&fc, 0, 1 << 20, 1000 * MS);
  body(&fc, &fs, "/c1", 0, buf, sizeof(buf));
  rm("c1");
  assert_int_equal(get(&fc, &fs, "/c1", 0, &f), UVQ_HTTP_NOT_FOUND);
  expect(&fc, 0, 0, 0, 0, 0, 0);
  uvq_file_cache_free(&fc);
  uvq_fileserve_free(&fs);
  rm("c2");
  rm("c3");
  rm("big");
}

/* max_fds bounds the descriptors held, whatever the entries: the least
 * recently used one with a descriptor goes; small files stay. Aliases of
 * one large file ("/./big") each take one. */
static void test_file_cache_fds(void **state) {
  uvq_file_cache fc;
  uvq_file_cache_stats st;
  uvq_fileserve fs;
  char buf[64];
  int fds;
  (void)state;

  put_n("big", UVQ_FILE_CACHE_SMALL + 1, 'B');
  put("s1", "1");
  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  fds = count_fds();
  cache_init_fds(&fc, 16, 1 << 20, 1000 * MS, 2);
  body(&fc, &fs, "/big", 0, buf, sizeof(buf));
  body(&fc, &fs, "/s1", 0, buf, sizeof(buf));
  body(&fc, &fs, "/./big", 0, buf, sizeof(buf));
  body(&fc, &fs, "/.//big", 0, buf, sizeof(buf));
  body(&fc, &fs, "/././big", 0, buf, sizeof(buf));
  uvq_file_cache_get_stats(&fc, &st);
  assert_int_equal(st.fds, 2);
  assert_int_equal(st.entries, 3);
  assert_int_equal(st.evictions, 2);
  assert_int_equal(count_fds(), fds + 2);
  /* The small file is still a hit; "/big", the oldest, went. */
  body(&fc, &fs, "/s1", 0, buf, sizeof(buf));
  expect(&fc, 1, 5, 2, 0, 3, ANY);
  uvq_file_cache_free(&fc);
  assert_int_equal(count_fds(), fds);

  /* 0: large files are served uncached. */
  cache_init_fds(&fc, 16, 1 << 20, 1000 * MS, 0);
  body(&fc, &fs, "/big", 0, buf, sizeof(buf));
  body(&fc, &fs, "/s1", 0, buf, sizeof(buf));
  uvq_file_cache_get_stats(&fc, &st);
  assert_int_equal(st.fds, 0);
  assert_int_equal(st.entries, 1);
  assert_int_equal(count_fds(), fds);
  uvq_file_cache_free(&fc);
  uvq_fileserve_free(&fs);
  rm("big");
  rm("s1");
}

/* A file larger than small_max is read through its descriptor, which a
 * response keeps across eviction and clearing; nothing leaks. */
static void test_file_cache_streaming(void **state) {
  uvq_file_cache fc;
  uvq_fileserve fs;
  uvq_file *f, *g;
  uint8_t buf[64];
  int fds;
  (void)state;

  put_n("large", UVQ_FILE_CACHE_SMALL + 1, 'L');
  put("small", "s");
  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  fds = count_fds();
  cache_init(&fc, 1, 1 << 20, 1000 * MS);
  assert_int_equal(get(&fc, &fs, "/large", 0, &f), UVQ_HTTP_FILE);
  /* Cached with its descriptor open: the key and path are its bytes. */
  expect(&fc, 0, 1, 0, 0, 1, 2 * strlen("/large"));
  assert_int_equal(count_fds(), fds + 1);
  /* Evicted by another entry while the response still streams. */
  assert_int_equal(get(&fc, &fs, "/small", 0, &g), UVQ_HTTP_FILE);
  uvq_file_release(g);
  expect(&fc, 0, 2, 1, 0, 1, ANY);
  assert_int_equal(uvq_file_read(f, buf, sizeof(buf), UVQ_FILE_CACHE_SMALL - 1),
                   2);
  assert_memory_equal(buf, "LL", 2);
  assert_int_equal(count_fds(), fds + 1);
  uvq_file_release(f);
  assert_int_equal(count_fds(), fds);

  /* Cleared (SIGHUP) while held, then expired while held. */
  assert_int_equal(get(&fc, &fs, "/large", 0, &f), UVQ_HTTP_FILE);
  uvq_file_cache_clear(&fc);
  assert_int_equal(uvq_file_read(f, buf, 1, 0), 1);
  uvq_file_release(f);
  assert_int_equal(get(&fc, &fs, "/large", 0, &f), UVQ_HTTP_FILE);
  assert_int_equal(get(&fc, &fs, "/large", 2000 * MS, &g), UVQ_HTTP_FILE);
  assert_ptr_not_equal(f, g);
  assert_int_equal(uvq_file_read(f, buf, 1, 0), 1);
  uvq_file_release(f);
  uvq_file_release(g);
  assert_int_equal(count_fds(), fds + 1);
  uvq_file_cache_free(&fc);
  assert_int_equal(count_fds(), fds);
  uvq_fileserve_free(&fs);
  rm("large");
  rm("small");
}

/* The jail is the resolver's: refusals are never cached, a cached entry
 * answers only its own decoded path, and a symlink swapped to lead out of
 * the root is refused once the entry expires. */
static void test_file_cache_jail(void **state) {
  uvq_file_cache fc;
  uvq_fileserve fs;
  uvq_file *f;
  char buf[64], p[256], q[256];
  int mode;
  (void)state;

  put("dir/in.txt", "inside\n");
  snprintf(p, sizeof(p), "%s/link", ROOT);
  for (mode = 0; mode < 2; ++mode) {
    assert_int_equal(uvq_fileserve_init(&fs, ROOT,
                                        mode ? UVQ_FILESERVE_NO_OPENAT2 : 0,
                                        NULL, 0),
                     0);
    cache_init(&fc, 16, 1 << 20, 1000 * MS);
    body(&fc, &fs, "/dir/in.txt", 0, buf, sizeof(buf));
    assert_int_equal(get(&fc, &fs, "/dir/../dir/in.txt", 0, &f),
                     UVQ_HTTP_FORBIDDEN);
    assert_int_equal(get(&fc, &fs, "//dir/in.txt", 0, &f), UVQ_HTTP_FORBIDDEN);
    /* A symlink inside the root: openat2 follows it, the fallback
     * refuses every symlink. */
    assert_int_equal(symlink("dir/in.txt", p), 0);
    if (mode == 0) {
      body(&fc, &fs, "/link", 0, buf, sizeof(buf));
      assert_string_equal(buf, "inside\n");
    } else {
      assert_int_equal(get(&fc, &fs, "/link", 0, &f), UVQ_HTTP_FORBIDDEN);
    }
    assert_int_equal(unlink(p), 0);
    snprintf(q, sizeof(q), "%s/secret", OUTSIDE);
    assert_int_equal(symlink(q, p), 0);
    assert_int_equal(get(&fc, &fs, "/link", 1000 * MS, &f), UVQ_HTTP_FORBIDDEN);
    assert_int_equal(get(&fc, &fs, "/link", 1001 * MS, &f), UVQ_HTTP_FORBIDDEN);
    assert_int_equal(unlink(p), 0);
    uvq_file_cache_free(&fc);
    uvq_fileserve_free(&fs);
  }
  rm("dir/in.txt");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_cache_hit),
      cmocka_unit_test(test_file_cache_expiry),
      cmocka_unit_test(test_file_cache_valid_forever),
      cmocka_unit_test(test_file_cache_limits),
      cmocka_unit_test(test_file_cache_fds),
      cmocka_unit_test(test_file_cache_streaming),
      cmocka_unit_test(test_file_cache_jail),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
