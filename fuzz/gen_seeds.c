/*
 * Writes the seed corpora: gen_seeds <dir> creates <dir>/<harness>/seed-N
 * for each harness (scripts/fuzz.sh runs it before fuzzing).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "seeds.h"

static const char *g_dir;
static int g_count;

static void emit(const char *harness, const uint8_t *data, size_t len,
                 void *ud) {
  char path[4096];
  FILE *f;
  (void)ud;
  snprintf(path, sizeof(path), "%s/%s", g_dir, harness);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
  snprintf(path, sizeof(path), "%s/%s/seed-%03d", g_dir, harness, g_count++);
  f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, len, f) != len) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

int main(int argc, char **argv) {
  static const char *const harnesses[] = {
      "router",    "token",     "cid_map",    "h3_request",
      "http_path", "http_cond", "mime_types", "quic_lb"};
  if (argc != 2) {
    fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  g_dir = argv[1];
  if (mkdir(g_dir, 0755) != 0 && errno != EEXIST) {
    perror(g_dir);
    return 1;
  }
  for (size_t i = 0; i < sizeof(harnesses) / sizeof(harnesses[0]); i++) {
    uvq_fuzz_seeds(harnesses[i], emit, NULL);
  }
  printf("%d seeds in %s\n", g_count, g_dir);
  return 0;
}
