/*
 * libFuzzer harness: request targets. The input is percent-decoded
 * (uvq_http_decode_path) and resolved beneath a small fixed root
 * (uvq_http_resolve, both resolvers). Checked: a decoded path never holds
 * a NUL or a '/' the target did not have literally, never exceeds the
 * target; a path with a ".." segment is never served; whatever resolves to
 * a file is a regular file beneath the root; no descriptor leaks.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/http_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fhp_root[64];
static uvq_fileserve fhp_fs[2];

static void fhp_put(const char *rel) {
  char p[128];
  FILE *f;

  snprintf(p, sizeof(p), "%s/%s", fhp_root, rel);
  f = fopen(p, "w");
  if (f == NULL) {
    abort();
  }
  fputs("x\n", f);
  fclose(f);
}

static void fhp_init(void) {
  char p[128];

  strcpy(fhp_root, "/tmp/uvq_fuzz_http_path.XXXXXX");
  if (mkdtemp(fhp_root) == NULL) {
    abort();
  }
  fhp_put("a.txt");
  fhp_put("sp ace.html");
  snprintf(p, sizeof(p), "%s/d", fhp_root);
  (void)mkdir(p, 0755);
  fhp_put("d/index.html");
  snprintf(p, sizeof(p), "%s/e", fhp_root);
  (void)mkdir(p, 0755);
  snprintf(p, sizeof(p), "%s/out", fhp_root);
  (void)symlink("/etc/passwd", p);
  if (uvq_fileserve_init(&fhp_fs[0], fhp_root, 0, NULL, 0) != 0 ||
      uvq_fileserve_init(&fhp_fs[1], fhp_root, UVQ_FILESERVE_NO_OPENAT2, NULL,
                         0) != 0) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  static uvq_http_resolved res;
  const char *t = (const char *)data;
  static char out[4096];
  size_t i, slashes = 0, tslashes = 0;
  int n, k;

  if (!init) {
    fhp_init();
    init = 1;
  }
  n = uvq_http_decode_path(t, size, out, sizeof(out));
  if (n >= 0) {
    if ((size_t)n > size || out[n] != '\0' || strlen(out) != (size_t)n ||
        out[0] != '/') {
      abort();
    }
    for (i = 0; i < (size_t)n; ++i) {
      slashes += out[i] == '/';
    }
    for (i = 0; i < size && t[i] != '?' && t[i] != '#'; ++i) {
      tslashes += t[i] == '/';
    }
    if (slashes != tslashes) {
      abort();
    }
    (void)uvq_http_path_has_dotdot(out);
  }
  for (k = 0; k < 2; ++k) {
    unsigned int flags = (unsigned int)(size ? data[size - 1] & 3 : 0);
    uvq_http_resolve_status rs =
        uvq_http_resolve(&fhp_fs[k], t, size, flags, &res);
    if (rs == UVQ_HTTP_FILE || rs == UVQ_HTTP_LISTING) {
      struct stat sb;
      if (res.fd < 0 || fstat(res.fd, &sb) != 0 ||
          (rs == UVQ_HTTP_FILE) != S_ISREG(sb.st_mode) ||
          uvq_http_path_has_dotdot(res.path) || n < 0) {
        abort();
      }
      if (rs == UVQ_HTTP_LISTING) {
        char *body;
        size_t len;
        if (uvq_http_autoindex(res.fd, res.path, &body, &len) == 0) {
          free(body);
        }
      }
      close(res.fd);
    } else if (res.fd != -1) {
      abort();
    }
    if (rs == UVQ_HTTP_REDIRECT &&
        res.location[strlen(res.location) - 1] != '/' &&
        strchr(res.location, '?') == NULL) {
      abort();
    }
  }
  return 0;
}
