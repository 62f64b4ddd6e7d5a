/*
 * libFuzzer harness: QUIC-LB, the load balancer's side. The first octet
 * picks a mode:
 * - even: the next two octets pick a configuration (server ID and nonce
 *   lengths, key or none, config rotation codepoint) and the rest is a
 *   DCID to route. Decoding must either refuse it (too short, another
 *   codepoint) or give a server ID; and since every plaintext is some
 *   server's CID, encoding what was decoded must give the same CID back.
 * - odd: the rest is a --quic-lb configuration string, which must parse
 *   into a configuration uvq_lb_new accepts or be refused with a reason.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uvquic/uvquic_lb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quic_lb_fuzz_decode(const uint8_t *data, size_t size) {
  static const uint8_t key[UVQ_LB_KEYLEN] = "fuzz-quic-lb-key";
  uvq_lb_config cfg;
  uvq_lb *lb;
  uint8_t sid[UVQ_LB_MAX_SERVER_ID_LEN];
  uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
  uint8_t again[UVQ_LB_MAX_CID_LEN];
  size_t sidlen = 0;
  size_t room;
  int rv;

  if (size < 3) {
    return;
  }
  uvq_lb_config_default(&cfg);
  cfg.has_key = data[0] & 2;
  cfg.config_id = (uint8_t)((data[0] >> 2) % UVQ_LB_CONFIG_ID_UNROUTABLE);
  cfg.server_id_len = 1 + data[1] % UVQ_LB_MAX_SERVER_ID_LEN;
  room = UVQ_LB_MAX_PLAINTEXT_LEN - cfg.server_id_len - UVQ_LB_MIN_NONCE_LEN;
  cfg.nonce_len = UVQ_LB_MIN_NONCE_LEN + data[2] % (room + 1);
  memcpy(cfg.key, key, sizeof(key));
  data += 3;
  size -= 3;
  if (uvq_lb_new(&lb, &cfg, NULL) != 0) {
    abort(); /* every configuration built above is valid */
  }
  rv = uvq_lb_decode(lb, data, size, sid, sizeof(sid), &sidlen);
  if (rv == 0) {
    if (sidlen != cfg.server_id_len || uvq_lb_decrypt(lb, data, size, pt) ||
        memcmp(pt, sid, sidlen) != 0) {
      abort();
    }
    /* Encode the decoded server ID and nonce as that server would. */
    uvq_lb_del(lb);
    memcpy(cfg.server_id, sid, sidlen);
    if (uvq_lb_new(&lb, &cfg, NULL) != 0 ||
        uvq_lb_encode(lb, pt + sidlen, data[0], again) != 0 ||
        memcmp(again, data, uvq_lb_cid_len(lb)) != 0) {
      abort();
    }
  } else if (rv != UVQ_ERR_INVALID_ARGUMENT ||
             (size >= uvq_lb_cid_len(lb) &&
              uvq_lb_config_id(data[0]) == cfg.config_id)) {
    abort(); /* refused a CID it should have decoded */
  }
  uvq_lb_del(lb);
}

static void quic_lb_fuzz_parse(const uint8_t *data, size_t size) {
  char text[256];
  uvq_lb_config cfg;
  const char *reason = NULL;
  uvq_lb *lb;

  if (size >= sizeof(text)) {
    size = sizeof(text) - 1;
  }
  memcpy(text, data, size);
  text[size] = '\0';
  if (uvq_lb_config_parse(&cfg, text, &reason) != 0) {
    if (reason == NULL) {
      abort();
    }
    return;
  }
  if (uvq_lb_config_check(&cfg) != NULL || uvq_lb_new(&lb, &cfg, NULL) != 0) {
    abort();
  }
  uvq_lb_del(lb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) {
    return 0;
  }
  if (data[0] & 1) {
    quic_lb_fuzz_parse(data + 1, size - 1);
  } else {
    quic_lb_fuzz_decode(data, size);
  }
  return 0;
}
