/*
 * uvq_lb_decode CONFIG CID...: prints, one line per CID (hex), the server
 * ID (hex) a QUIC-LB load balancer holding CONFIG (uvq_lb_config_parse's
 * syntax; sid-len=N instead of sid=HEX) routes it to, or "unroutable".
 * Exits 2 on a bad CONFIG or CID. A test helper for tests/quic_lb.sh.
 */
#include <stdio.h>
#include <string.h>

#include "uvquic/uvquic_lb.h"

static int unhex(const char *s, uint8_t *out, size_t size, size_t *plen) {
  size_t n = strlen(s);
  if (n % 2 != 0 || n / 2 > size) {
    return -1;
  }
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) {
      return -1;
    }
    out[i] = (uint8_t)v;
  }
  *plen = n / 2;
  return 0;
}

int main(int argc, char **argv) {
  uvq_lb_config cfg;
  const char *reason = NULL;
  uvq_lb *lb;

  if (argc < 3) {
    fprintf(stderr, "usage: uvq_lb_decode CONFIG CID...\n");
    return 2;
  }
  if (uvq_lb_config_parse(&cfg, argv[1], &reason) != 0) {
    fprintf(stderr, "uvq_lb_decode: bad CONFIG: %s\n", reason);
    return 2;
  }
  if (uvq_lb_new(&lb, &cfg, NULL) != 0) {
    fprintf(stderr, "uvq_lb_decode: cannot set up AES\n");
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    uint8_t cid[UVQ_LB_MAX_CID_LEN], sid[UVQ_LB_MAX_SERVER_ID_LEN];
    size_t cidlen, sidlen;
    if (unhex(argv[i], cid, sizeof(cid), &cidlen) != 0) {
      fprintf(stderr, "uvq_lb_decode: bad CID \"%s\"\n", argv[i]);
      uvq_lb_del(lb);
      return 2;
    }
    if (uvq_lb_decode(lb, cid, cidlen, sid, sizeof(sid), &sidlen) != 0) {
      printf("unroutable\n");
      continue;
    }
    for (size_t j = 0; j < sidlen; j++) {
      printf("%02x", sid[j]);
    }
    printf("\n");
  }
  uvq_lb_del(lb);
  return 0;
}
