/* Hex decoding for the test tools (tests/tools/). */
#ifndef UVQ_TOOLS_HEX_H
#define UVQ_TOOLS_HEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* tool_unhex decodes the |n| hex digits at |s| into |out| (room for
 * |size| octets); returns the octet count, or -1 if |n| is odd or zero,
 * too long, or not hex. */
static inline int tool_unhex(const char *s, size_t n, uint8_t *out,
                             size_t size) {
  if (n == 0 || n % 2 || n / 2 > size) {
    return -1;
  }
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) {
      return -1;
    }
    out[i] = (uint8_t)v;
  }
  return (int)(n / 2);
}

#endif
