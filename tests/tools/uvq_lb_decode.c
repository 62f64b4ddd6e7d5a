/*
 * uvq_lb_decode CONFIG CID...: prints, one line per CID (hex), the server
 * ID (hex) a QUIC-LB load balancer holding CONFIG (uvq_lb_config_parse's
 * syntax; sid-len=N instead of sid=HEX) routes it to, or "unroutable".
 * Exits 2 on a bad CONFIG or CID. A test helper for tests/quic_lb.sh.
 */
#include <stdio.h>
#include <string.h>

#include "hex.h"
#include "uvquic/uvquic_lb.h"

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
    int cidlen = tool_unhex(argv[i], strlen(argv[i]), cid, sizeof(cid));
    size_t sidlen;
    if (cidlen < 0) {
      fprintf(stderr, "uvq_lb_decode: bad CID \"%s\"\n", argv[i]);
      uvq_lb_del(lb);
      return 2;
    }
    if (uvq_lb_decode(lb, cid, (size_t)cidlen, sid, sizeof(sid), &sidlen) !=
        0) {
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
