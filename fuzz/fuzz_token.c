/*
 * libFuzzer harness: address-validation tokens. Arbitrary bytes are opened
 * as Retry and NEW_TOKEN tokens (they must be rejected with a reason, never
 * crash); and fields taken from the input are sealed and opened again,
 * which must round-trip. The nonces come from a generator seeded with the
 * input and the clock is fixed, so a crash file replays exactly.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/token.h"
#include "qtest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* uvq_token_keys.rand: the input's stream. */
static int ft_rand(void *ud, uint8_t *dest, size_t len) {
  qt_fill_rand(ud, dest, len);
  return 0;
}

static void ft_addr(struct sockaddr_in *sa, uint16_t port) {
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  sa->sin_port = htons(port);
  sa->sin_addr.s_addr = htonl(0x7f000001u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uvq_token_keys keys;
  static uint64_t rand_state;
  static int init;
  static const uint8_t key[UVQ_TOKEN_KEYLEN] = "fuzz-token-key!";
  struct sockaddr_in sa;
  ngtcp2_cid dcid, odcid;
  uvq_token_reject_reason reason;
  const uint64_t now = 1700000000;

  if (!init) {
    if (uvq_token_keys_init(&keys, key) != 0) {
      abort();
    }
    keys.rand = ft_rand;
    keys.rand_ud = &rand_state;
    init = 1;
  }
  rand_state = qt_hash(data, size);
  if (size == 0) {
    return 0;
  }
  ft_addr(&sa, 50000);
  ngtcp2_cid_init(&dcid, (const uint8_t *)"0123456789abcdef", 16);
  switch (data[0] % 3) {
  case 0:
    reason = UVQ_TOKEN_REJECT_REASON_COUNT;
    if (uvq_token_open_retry(&keys, data + 1, size - 1, 1,
                             (struct sockaddr *)&sa, sizeof(sa), &dcid, now, 10,
                             &odcid, &reason) != 0 &&
        reason >= UVQ_TOKEN_REJECT_REASON_COUNT) {
      abort();
    }
    break;
  case 1:
    reason = UVQ_TOKEN_REJECT_REASON_COUNT;
    if (uvq_token_open_new(&keys, data + 1, size - 1, UVQ_QUIC_V1,
                           (struct sockaddr *)&sa, sizeof(sa), now, 86400,
                           &reason) != 0 &&
        reason >= UVQ_TOKEN_REJECT_REASON_COUNT) {
      abort();
    }
    (void)uvq_token_type(data + 1, size - 1);
    break;
  default: {
    /* [port 2][odcidlen 1][odcid][rscidlen 1][rscid]: seal, then open. */
    uint8_t tok[UVQ_TOKEN_MAXLEN];
    ngtcp2_cid o, r, got;
    size_t ol, rl, off = 1;
    uint16_t port;
    ssize_t n;
    if (size < 5) {
      return 0;
    }
    port = (uint16_t)(data[off] << 8 | data[off + 1]);
    off += 2;
    ol = data[off++] % (NGTCP2_MAX_CIDLEN + 1);
    if (off + ol + 1 > size) {
      return 0;
    }
    ngtcp2_cid_init(&o, data + off, ol);
    off += ol;
    rl = data[off++] % (NGTCP2_MAX_CIDLEN + 1);
    if (off + rl > size) {
      return 0;
    }
    ngtcp2_cid_init(&r, data + off, rl);
    ft_addr(&sa, port);
    n = uvq_token_seal_retry(&keys, tok, sizeof(tok), 1, (struct sockaddr *)&sa,
                             sizeof(sa), &o, &r, now);
    if (n <= 0) {
      abort();
    }
    if (uvq_token_open_retry(&keys, tok, (size_t)n, 1, (struct sockaddr *)&sa,
                             sizeof(sa), &r, now, 10, &got, &reason) != 0 ||
        !ngtcp2_cid_eq(&got, &o)) {
      abort();
    }
    n = uvq_token_seal_new(&keys, tok, sizeof(tok), UVQ_QUIC_V1,
                           (struct sockaddr *)&sa, sizeof(sa), now);
    if (n <= 0 || uvq_token_open_new(&keys, tok, (size_t)n, UVQ_QUIC_V1,
                                     (struct sockaddr *)&sa, sizeof(sa),
                                     now + 5, 86400, &reason) != 0) {
      abort();
    }
    break;
  }
  }
  return 0;
}
