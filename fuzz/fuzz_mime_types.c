/*
 * libFuzzer harness: the mime.types(5) parser. The input is parsed as a
 * table, then file names made from its bytes are looked up. Checked: every
 * entry has a non-empty extension without '.' and a "type/subtype" type;
 * the entries are sorted by extension with no duplicates (so the lookup's
 * binary search finds each one); every lookup gives a type.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/http_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uvq_mime_table t;
  char name[80];
  size_t i;

  if (uvq_mime_table_parse(&t, (const char *)data, size) != 0) {
    return 0;
  }
  for (i = 0; i < t.n; ++i) {
    const uvq_mime_entry *e = &t.entries[i];
    if (e->ext[0] == '\0' || strchr(e->ext, '.') != NULL ||
        strchr(e->type, '/') == NULL) {
      abort();
    }
    if (i > 0 && strcasecmp(t.entries[i - 1].ext, e->ext) >= 0) {
      abort();
    }
    snprintf(name, sizeof(name), "/dir/file.%.60s", e->ext);
    /* Only where the extension is what a path's last dot leads to. */
    if (strlen(e->ext) <= 60 && strchr(e->ext, '/') == NULL &&
        uvq_mime_type(&t, name) != e->type) {
      abort();
    }
  }
  if (size > 0) {
    size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    if (uvq_mime_type(&t, name) == NULL) {
      abort();
    }
  }
  uvq_mime_table_free(&t);
  return 0;
}
