/*
 * The fuzz harnesses (fuzz/) as plain regression tests, without libFuzzer:
 * each harness is fed its seed corpus (fuzz/seeds.c), a few thousand
 * deterministic mutations of it, and every file under
 * fuzz/corpus/<harness>/ (inputs that once crashed stay there as
 * regressions). Keeps the harnesses compiling and their findings fixed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each harness's entry point under its own name. */
#define LLVMFuzzerTestOneInput fuzz_router_one
#include "../fuzz/fuzz_router.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_token_one
#include "../fuzz/fuzz_token.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_cid_map_one
#include "../fuzz/fuzz_cid_map.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_h3_request_one
#include "../fuzz/fuzz_h3_request.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_http_path_one
#include "../fuzz/fuzz_http_path.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_http_cond_one
#include "../fuzz/fuzz_http_cond.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_mime_types_one
#include "../fuzz/fuzz_mime_types.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_quic_lb_one
#include "../fuzz/fuzz_quic_lb.c"
#undef LLVMFuzzerTestOneInput
#include "../fuzz/seeds.c"

typedef int (*harness_fn)(const uint8_t *data, size_t size);

typedef struct replay {
  harness_fn fn;
  uint64_t rng;
  uint64_t inputs;
  int mutations; /* per seed */
} replay;

static uint64_t next_rand(replay *r) {
  uint64_t x = r->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->rng = x;
  return x * 0x2545f4914f6cdd1dull;
}

/* Feeds a seed and |mutations| variants: bit flips, byte sets, cuts. */
static void feed(const char *harness, const uint8_t *data, size_t len,
                 void *ud) {
  replay *r = ud;
  uint8_t *buf = malloc(len + 16);
  (void)harness;
  assert_non_null(buf);
  r->fn(data, len);
  r->inputs++;
  for (int m = 0; m < r->mutations; m++) {
    size_t n = len;
    memcpy(buf, data, len);
    for (int k = 0; k < 1 + (int)(next_rand(r) % 4); k++) {
      size_t at = n ? (size_t)(next_rand(r) % n) : 0;
      switch (next_rand(r) % 4) {
      case 0:
        if (n) {
          buf[at] ^= (uint8_t)(1u << (next_rand(r) % 8));
        }
        break;
      case 1:
        if (n) {
          buf[at] = (uint8_t)next_rand(r);
        }
        break;
      case 2:
        n = at; /* truncate */
        break;
      default:
        if (n < len + 16) {
          buf[n++] = (uint8_t)next_rand(r);
        }
        break;
      }
    }
    r->fn(buf, n);
    r->inputs++;
  }
  free(buf);
}

static void replay_dir(const char *harness, replay *r) {
  const char *src = getenv("UVQ_SOURCE_DIR");
  char path[4096];
  DIR *d;
  struct dirent *e;
  snprintf(path, sizeof(path), "%s/fuzz/corpus/%s", src ? src : ".", harness);
  d = opendir(path);
  if (d == NULL) {
    return;
  }
  while ((e = readdir(d)) != NULL) {
    char file[8192];
    uint8_t buf[65536];
    size_t n;
    FILE *f;
    if (e->d_name[0] == '.') {
      continue;
    }
    snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
    f = fopen(file, "rb");
    if (f == NULL) {
      continue;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    r->fn(buf, n);
    r->inputs++;
  }
  closedir(d);
}

static void run(const char *harness, harness_fn fn, int mutations) {
  replay r = {fn, 0x1234567u, 0, mutations};
  uvq_fuzz_seeds(harness, feed, &r);
  replay_dir(harness, &r);
  print_message("# %s: %llu inputs\n", harness, (unsigned long long)r.inputs);
  assert_true(r.inputs > 0);
}

static void test_fuzz_corpus_router(void **state) {
  (void)state;
  run("router", fuzz_router_one, 100);
}

static void test_fuzz_corpus_token(void **state) {
  (void)state;
  run("token", fuzz_token_one, 2000);
}

static void test_fuzz_corpus_cid_map(void **state) {
  (void)state;
  run("cid_map", fuzz_cid_map_one, 2000);
}

static void test_fuzz_corpus_h3_request(void **state) {
  (void)state;
  run("h3_request", fuzz_h3_request_one, 300);
}

static void test_fuzz_corpus_http_path(void **state) {
  (void)state;
  run("http_path", fuzz_http_path_one, 300);
}

static void test_fuzz_corpus_http_cond(void **state) {
  (void)state;
  run("http_cond", fuzz_http_cond_one, 2000);
}

static void test_fuzz_corpus_mime_types(void **state) {
  (void)state;
  run("mime_types", fuzz_mime_types_one, 2000);
}

static void test_fuzz_corpus_quic_lb(void **state) {
  (void)state;
  run("quic_lb", fuzz_quic_lb_one, 2000);
}

/* ---- a reseeded world draws what its input says ------------------------ */

typedef struct first_dcid {
  int from;
  size_t len; /* 0 until captured */
  uint8_t dcid[UVQ_MAX_CIDLEN];
} first_dcid;

/* qt filter: keeps the DCID of the first long-header datagram |from| sends. */
static int capture_dcid(qt_world *w, int from, qt_pkt *p, void *ud) {
  first_dcid *f = ud;
  (void)w;
  if (from == f->from && f->len == 0 && p->len > 6 && (p->data[0] & 0x80) &&
      p->data[5] <= UVQ_MAX_CIDLEN && p->len > 6u + p->data[5]) {
    f->len = p->data[5];
    memcpy(f->dcid, p->data + 6, f->len);
  }
  return 0;
}

/* A seeded world makes |history| connections, is reseeded with |input|
 * (as a harness does with each input) and connects once more: the DCID of
 * that connection's first Initial goes to |f|. The application is
 * fuzz/seeds.c's (sd_on_accept, sd_cb), included above. */
static void reseeded_connect(int history, const char *input, first_dcid *f) {
  qt_world w;
  uvq_conn *conn;
  int s, c;

  qt_world_init(&w, 7);
  w.seeded_rand = 1;
  s = qt_add_server(&w, NULL, sd_on_accept, NULL);
  c = qt_add_client(&w, NULL, NULL);
  assert_true(s >= 0 && c >= 0);
  for (int i = 0; i < history; i++) {
    assert_int_equal(qt_connect(&w, c, s, &sd_cb, NULL, &conn), 0);
    qt_run(&w, NULL, NULL, 50 * UVQ_MILLISECONDS);
  }
  qt_world_reseed(&w, (const uint8_t *)input, strlen(input));
  memset(f, 0, sizeof(*f));
  f->from = c;
  w.filter = capture_dcid;
  w.filter_ud = f;
  assert_int_equal(qt_connect(&w, c, s, &sd_cb, NULL, &conn), 0);
  qt_run(&w, NULL, NULL, 50 * UVQ_MILLISECONDS);
  assert_true(f->len >= 8);
  qt_world_free(&w);
}

/* What the harnesses rely on for a crash file to replay: after
 * qt_world_reseed, the world's draws depend on the input alone, not on
 * what the world did before (libFuzzer ran other inputs before the crash;
 * the replay runs only the crash file). */
static void test_fuzz_reseed_replays(void **state) {
  first_dcid a, b, other;
  (void)state;

  reseeded_connect(0, "crash-input", &a);
  reseeded_connect(3, "crash-input", &b);
  reseeded_connect(0, "another-input", &other);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.dcid, b.dcid, a.len);
  assert_memory_not_equal(a.dcid, other.dcid, a.len);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fuzz_corpus_router),
      cmocka_unit_test(test_fuzz_corpus_token),
      cmocka_unit_test(test_fuzz_corpus_cid_map),
      cmocka_unit_test(test_fuzz_corpus_h3_request),
      cmocka_unit_test(test_fuzz_corpus_http_path),
      cmocka_unit_test(test_fuzz_corpus_http_cond),
      cmocka_unit_test(test_fuzz_corpus_mime_types),
      cmocka_unit_test(test_fuzz_corpus_quic_lb),
      cmocka_unit_test(test_fuzz_reseed_replays),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
