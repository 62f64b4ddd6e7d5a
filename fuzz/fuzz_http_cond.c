/*
 * libFuzzer harness: the conditional and Range request fields. The input
 * is split at '\n' into Range, If-Range, If-None-Match and
 * If-Modified-Since values (absent when missing), its first byte picks the
 * file size. Checked: a 206 range lies inside the file and is not empty,
 * 200 is the whole file, 416 only with a Range; a date that parses
 * formats back to a date that parses to the same instant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/http_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint64_t sizes[] = {0, 1, 100, 1000, 1u << 20, UINT64_MAX >> 2};
  const char *p, *end, *f[4] = {NULL, NULL, NULL, NULL};
  size_t flen[4] = {0, 0, 0, 0}, nf = 0;
  uvq_http_conditions c;
  uvq_http_plan plan;
  struct stat st;
  char etag[UVQ_HTTP_ETAG_LEN], date[UVQ_HTTP_DATE_LEN];
  uint64_t off, len;
  time_t t, t2;

  if (size == 0) {
    return 0;
  }
  memset(&st, 0, sizeof(st));
  st.st_size = (off_t)sizes[data[0] % 6];
  st.st_mtim.tv_sec = 784111777;
  uvq_http_etag(&st, etag);
  p = (const char *)data + 1;
  end = (const char *)data + size;
  while (p <= end && nf < 4) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    f[nf] = p;
    flen[nf] = nl ? (size_t)(nl - p) : (size_t)(end - p);
    ++nf;
    if (nl == NULL) {
      break;
    }
    p = nl + 1;
  }
  memset(&c, 0, sizeof(c));
  c.range = f[0];
  c.range_len = flen[0];
  c.if_range = f[1];
  c.if_range_len = flen[1];
  c.if_none_match = f[2];
  c.if_none_match_len = flen[2];
  c.if_modified_since = f[3];
  c.if_modified_since_len = flen[3];
  uvq_http_evaluate(&c, &st, etag, &plan);
  switch (plan.status) {
  case 200:
    if (plan.offset != 0 || plan.length != (uint64_t)st.st_size) {
      abort();
    }
    break;
  case 206:
    if (plan.length == 0 || plan.offset >= (uint64_t)st.st_size ||
        plan.length > (uint64_t)st.st_size - plan.offset) {
      abort();
    }
    break;
  case 416:
    if (c.range == NULL) {
      abort();
    }
    break;
  case 304:
    break;
  default:
    abort();
  }
  if (f[0] != NULL &&
      uvq_http_parse_range(f[0], flen[0], (uint64_t)st.st_size, &off, &len) ==
          UVQ_RANGE_OK &&
      (len == 0 || off + len > (uint64_t)st.st_size)) {
    abort();
  }
  (void)uvq_http_etag_match((const char *)data, size, etag, data[0] & 1);
  if (uvq_http_parse_date((const char *)data, size, &t) == 0 && t >= 0 &&
      t < 253402300800) { /* before year 10000 */
    uvq_http_format_date(t, date);
    if (uvq_http_parse_date(date, strlen(date), &t2) != 0 || t2 != t) {
      abort();
    }
  }
  return 0;
}
