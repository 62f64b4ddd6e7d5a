/* QUIC-LB connection IDs (draft-ietf-quic-load-balancers-21): the encoder a
 * server issues its CIDs with, and the decoder a load balancer routes by.
 * Names of the Feistel steps (left_0, right_1, expand, half_len) follow the
 * draft's "General Case: Four-Pass Encryption" so the two read side by
 * side. */
#include "core/quic_lb.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/mem.h"

#define AES_BLOCK 16
/* half_len of the longest plaintext: 19 / 2 rounded up. */
#define MAX_HALF ((UVQ_LB_MAX_PLAINTEXT_LEN + 1) / 2)

struct uvq_lb {
  const uvq_mem *mem;
  uvq_lb_config cfg; /* key wiped: only GnuTLS's handle holds it */
  size_t plaintext_len;
  /* AES-128 through GnuTLS, which offers no ECB: CBC over one block with
   * a zero IV is exactly ECB for that block (C = E(K, 0 ^ P)), and the IV
   * is reset before every block so no chaining carries over. */
  gnutls_cipher_hd_t aes;
  /* Keyed configurations: the next nonce, counting up from a random start
   * (|started| once drawn); |exhausted| once it came back to |first|. */
  uint8_t nonce[UVQ_LB_MAX_PLAINTEXT_LEN];
  uint8_t first[UVQ_LB_MAX_PLAINTEXT_LEN];
  int started;
  int exhausted;
  /* uvq_lb_set_nonce_lane: the nonce's low five bits are |lane| and it
   * counts in steps of UVQ_LB_NONCE_LANES (|has_lane|). */
  int has_lane;
  uint8_t lane;
  /* CIDs issued with the unroutable codepoint once the nonces ran out. */
  uint64_t unroutable;
  uvq_lb_rand_fn rand;
  void *rand_ud;
};

void uvq_lb_config_default(uvq_lb_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_LB_CONFIG_VERSION;
  cfg->nonce_len = 8;
}

const char *uvq_lb_config_check(const uvq_lb_config *cfg) {
  if (cfg == NULL) {
    return "no QUIC-LB configuration";
  }
  if (cfg->version != UVQ_LB_CONFIG_VERSION) {
    return "unknown uvq_lb_config version (initialise it with "
           "uvq_lb_config_default)";
  }
  if (cfg->config_id >= UVQ_LB_CONFIG_ID_UNROUTABLE) {
    return "config rotation codepoint must be 0..6 (7 marks unroutable "
           "CIDs)";
  }
  if (cfg->server_id_len < UVQ_LB_MIN_SERVER_ID_LEN ||
      cfg->server_id_len > UVQ_LB_MAX_SERVER_ID_LEN) {
    return "server ID must be 1..15 octets";
  }
  if (cfg->nonce_len < UVQ_LB_MIN_NONCE_LEN) {
    return "nonce must be at least 4 octets";
  }
  if (cfg->server_id_len + cfg->nonce_len > UVQ_LB_MAX_PLAINTEXT_LEN) {
    return "server ID and nonce together must be at most 19 octets (a QUIC "
           "v1 CID is at most 20, with the first octet)";
  }
  return NULL;
}

/* hex_value is the value of hex digit |c|, or -1. */
static int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = (char)tolower((unsigned char)c);
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

/* parse_hex decodes the |len| hex digits at |s| into |out| (room for
 * |size| octets) and sets *poutlen; -1 if odd, too long or not hex. */
static int parse_hex(const char *s, size_t len, uint8_t *out, size_t size,
                     size_t *poutlen) {
  if (len == 0 || len % 2 != 0 || len / 2 > size) {
    return -1;
  }
  for (size_t i = 0; i < len; i += 2) {
    int hi = hex_value(s[i]);
    int lo = hex_value(s[i + 1]);
    if (hi < 0 || lo < 0) {
      return -1;
    }
    out[i / 2] = (uint8_t)(hi << 4 | lo);
  }
  *poutlen = len / 2;
  return 0;
}

/* parse_small reads the decimal |s| of |len| digits (at most 2) into *pv. */
static int parse_small(const char *s, size_t len, size_t *pv) {
  size_t v = 0;
  if (len == 0 || len > 2) {
    return -1;
  }
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return -1;
    }
    v = v * 10 + (size_t)(s[i] - '0');
  }
  *pv = v;
  return 0;
}

/* field_is: the KEY of KEY[=VALUE] at |s| (|klen| long) is |name|. */
static int field_is(const char *s, size_t klen, const char *name) {
  return strlen(name) == klen && memcmp(s, name, klen) == 0;
}

/* parse_field applies one KEY[=VALUE] of uvq_lb_config_parse; returns
 * NULL or the reason it is refused. */
static const char *parse_field(uvq_lb_config *cfg, const char *s, size_t len,
                               int *phave_sid) {
  const char *eq = memchr(s, '=', len);
  size_t klen = eq ? (size_t)(eq - s) : len;
  const char *v = eq ? eq + 1 : s + len;
  size_t vlen = eq ? len - klen - 1 : 0;
  size_t n;

  if (field_is(s, klen, "encode-len")) {
    if (eq) {
      return "encode-len takes no value";
    }
    cfg->encode_len = 1;
    return NULL;
  }
  if (!eq) {
    return "expected KEY=VALUE (cr, sid, sid-len, nonce, key) or encode-len";
  }
  if (field_is(s, klen, "cr")) {
    if (parse_small(v, vlen, &n) != 0 || n >= UVQ_LB_CONFIG_ID_UNROUTABLE) {
      return "cr must be a config rotation codepoint 0..6";
    }
    cfg->config_id = (uint8_t)n;
  } else if (field_is(s, klen, "sid")) {
    if (parse_hex(v, vlen, cfg->server_id, sizeof(cfg->server_id),
                  &cfg->server_id_len) != 0) {
      return "sid must be 1..15 octets in hex (an even number of digits)";
    }
    *phave_sid = 1;
  } else if (field_is(s, klen, "sid-len")) {
    if (parse_small(v, vlen, &n) != 0) {
      return "sid-len must be a number of octets";
    }
    cfg->server_id_len = n;
    *phave_sid = 1;
  } else if (field_is(s, klen, "nonce")) {
    if (parse_small(v, vlen, &n) != 0) {
      return "nonce must be a number of octets";
    }
    cfg->nonce_len = n;
  } else if (field_is(s, klen, "key")) {
    if (vlen != 2 * UVQ_LB_KEYLEN ||
        parse_hex(v, vlen, cfg->key, sizeof(cfg->key), &n) != 0) {
      return "key must be 16 octets in hex (32 digits)";
    }
    cfg->has_key = 1;
  } else {
    return "unknown field (expected cr, sid, sid-len, nonce, key, "
           "encode-len)";
  }
  return NULL;
}

int uvq_lb_config_parse(uvq_lb_config *cfg, const char *text,
                        const char **preason) {
  const char *reason = NULL;
  int have_sid = 0;

  uvq_lb_config_default(cfg);
  if (text == NULL || *text == '\0') {
    reason = "empty QUIC-LB configuration";
  }
  for (const char *s = text; reason == NULL && s != NULL;) {
    const char *comma = strchr(s, ',');
    size_t len = comma ? (size_t)(comma - s) : strlen(s);
    reason = parse_field(cfg, s, len, &have_sid);
    s = comma ? comma + 1 : NULL;
  }
  if (reason == NULL && !have_sid) {
    reason = "a server ID is required (sid=HEX, or sid-len=N for a load "
             "balancer)";
  }
  if (reason == NULL) {
    reason = uvq_lb_config_check(cfg);
  }
  if (reason != NULL) {
    gnutls_memset(cfg->key, 0, sizeof(cfg->key));
    if (preason) {
      *preason = reason;
    }
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  return 0;
}

int uvq_lb_new(uvq_lb **plb, const uvq_lb_config *cfg, const uvq_mem *mem) {
  uvq_lb *lb;

  if (plb == NULL || uvq_lb_config_check(cfg) != NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (mem == NULL) {
    mem = uvq_mem_default();
  }
  lb = uvq_calloc(mem, 1, sizeof(*lb));
  if (lb == NULL) {
    return UVQ_ERR_NOMEM;
  }
  lb->mem = mem;
  lb->cfg = *cfg;
  lb->plaintext_len = cfg->server_id_len + cfg->nonce_len;
  if (cfg->has_key) {
    uint8_t zero_iv[AES_BLOCK] = {0};
    gnutls_datum_t key = {lb->cfg.key, UVQ_LB_KEYLEN};
    gnutls_datum_t iv = {zero_iv, sizeof(zero_iv)};
    int rv = gnutls_cipher_init(&lb->aes, GNUTLS_CIPHER_AES_128_CBC, &key, &iv);
    gnutls_memset(lb->cfg.key, 0, sizeof(lb->cfg.key));
    if (rv != 0) {
      uvq_free(mem, lb);
      return UVQ_ERR_TLS;
    }
  }
  *plb = lb;
  return 0;
}

void uvq_lb_del(uvq_lb *lb) {
  if (lb == NULL) {
    return;
  }
  const uvq_mem *mem = lb->mem;
  if (lb->cfg.has_key) {
    gnutls_cipher_deinit(lb->aes);
  }
  /* The nonce counter says where this server's next CIDs lie. */
  gnutls_memset(lb, 0, sizeof(*lb));
  uvq_free(mem, lb);
}

size_t uvq_lb_cid_len(const uvq_lb *lb) { return 1 + lb->plaintext_len; }

unsigned uvq_lb_config_id(uint8_t first_octet) {
  return (unsigned)first_octet >> 5;
}

void uvq_lb_set_rand(uvq_lb *lb, uvq_lb_rand_fn rand, void *user_data) {
  lb->rand = rand;
  lb->rand_ud = user_data;
}

/* aes_ecb encrypts (|decrypt| 0) or decrypts one block |in| to |out|. */
static int aes_ecb(uvq_lb *lb, const uint8_t *in, uint8_t *out, int decrypt) {
  static const uint8_t zero_iv[AES_BLOCK];
  int rv;
  gnutls_cipher_set_iv(lb->aes, (void *)(uintptr_t)zero_iv, AES_BLOCK);
  if (decrypt) {
    rv = gnutls_cipher_decrypt2(lb->aes, in, AES_BLOCK, out, AES_BLOCK);
  } else {
    rv = gnutls_cipher_encrypt2(lb->aes, in, AES_BLOCK, out, AES_BLOCK);
  }
  return rv == 0 ? 0 : UVQ_ERR_TLS;
}

/* One Feistel round: |dst| ^= truncate(AES(expand(len, pass, src)),
 * half_len), then the odd-length nibble of |dst| cleared (its first four
 * bits for a right half, its last four for a left one). */
static int feistel_round(uvq_lb *lb, uint8_t pass, const uint8_t *src,
                         uint8_t *dst, int dst_is_left) {
  size_t len = lb->plaintext_len;
  size_t half = (len + 1) / 2;
  uint8_t block[AES_BLOCK] = {0};
  uint8_t out[AES_BLOCK];
  int rv;

  /* expand(): the half, zero padding, then length and pass. */
  memcpy(block, src, half);
  block[14] = (uint8_t)len;
  block[15] = pass;
  rv = aes_ecb(lb, block, out, 0);
  if (rv != 0) {
    return rv;
  }
  for (size_t i = 0; i < half; i++) {
    dst[i] ^= out[i];
  }
  if (len % 2) {
    if (dst_is_left) {
      dst[half - 1] &= 0xf0;
    } else {
      dst[0] &= 0x0f;
    }
  }
  return 0;
}

/* split cuts the |len|-octet |in| into halves of half_len octets; for an
 * odd |len| the middle octet's high nibble goes left, its low one right. */
static void split(const uint8_t *in, size_t len, uint8_t *left,
                  uint8_t *right) {
  size_t half = (len + 1) / 2;
  memcpy(left, in, half);
  memcpy(right, in + len - half, half);
  if (len % 2) {
    left[half - 1] &= 0xf0;
    right[0] &= 0x0f;
  }
}

/* join is split's inverse. */
static void join(const uint8_t *left, const uint8_t *right, size_t len,
                 uint8_t *out) {
  size_t half = (len + 1) / 2;
  memcpy(out + len - half, right, half);
  memcpy(out, left, half - (len % 2));
  if (len % 2) {
    out[half - 1] = (uint8_t)(left[half - 1] | right[0]);
  }
}

/* feistel encrypts (|decrypt| 0) the server ID and nonce |in| into the
 * ciphertext |out|, or decrypts: one AES block for a 16-octet plaintext,
 * else the four passes in order (1..4) or in reverse (4..1). Odd passes
 * encrypt the left half into the right one, even passes the right into
 * the left. With |sid_only| decryption stops after three passes when the
 * server ID lies wholly in left_0 (the nonce is at least as long), leaving
 * the nonce in |out| undefined. */
static int feistel(uvq_lb *lb, const uint8_t *in, uint8_t *out, int decrypt,
                   int sid_only) {
  uint8_t left[MAX_HALF];
  uint8_t right[MAX_HALF];
  size_t len = lb->plaintext_len;
  int passes = 4;
  int rv;

  if (len == AES_BLOCK) {
    return aes_ecb(lb, in, out, decrypt);
  }
  if (decrypt && sid_only && lb->cfg.server_id_len <= len / 2) {
    passes = 3;
  }
  split(in, len, left, right);
  for (int i = 0; i < passes; i++) {
    uint8_t pass = (uint8_t)(decrypt ? 4 - i : 1 + i);
    int into_left = pass % 2 == 0;
    rv = feistel_round(lb, pass, into_left ? right : left,
                       into_left ? left : right, into_left);
    if (rv != 0) {
      return rv;
    }
  }
  join(left, right, len, out);
  return 0;
}

/* first_octet: config rotation codepoint |cr| (7: unroutable) in the top
 * three bits; below, the CID length minus one if the configuration
 * encodes it, else |bits|' low five. */
static uint8_t first_octet(const uvq_lb *lb, unsigned cr, uint8_t bits) {
  uint8_t low = lb->cfg.encode_len ? (uint8_t)lb->plaintext_len : bits;

  return (uint8_t)(cr << 5 | (low & 0x1fu));
}

int uvq_lb_encode(uvq_lb *lb, const uint8_t *nonce, uint8_t first_bits,
                  uint8_t *cid) {
  uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
  int rv = 0;

  cid[0] = first_octet(lb, lb->cfg.config_id, first_bits);
  memcpy(pt, lb->cfg.server_id, lb->cfg.server_id_len);
  memcpy(pt + lb->cfg.server_id_len, nonce, lb->cfg.nonce_len);
  if (lb->cfg.has_key) {
    rv = feistel(lb, pt, cid + 1, 0, 0);
  } else {
    memcpy(cid + 1, pt, lb->plaintext_len);
  }
  gnutls_memset(pt, 0, sizeof(pt));
  return rv;
}

/* lb_rand draws |len| octets from the installed source or GnuTLS. */
static int lb_rand(uvq_lb *lb, uint8_t *dest, size_t len) {
  if (lb->rand) {
    return lb->rand(lb->rand_ud, dest, len) == 0 ? 0 : UVQ_ERR_TLS;
  }
  return gnutls_rnd(GNUTLS_RND_NONCE, dest, len) == 0 ? 0 : UVQ_ERR_TLS;
}

void uvq_lb_set_nonce_lane(uvq_lb *lb, unsigned lane) {
  lb->has_lane = 1;
  lb->lane = (uint8_t)(lane % UVQ_LB_NONCE_LANES);
}

/* next_nonce writes the nonce for the next keyed CID and advances the
 * counter (big-endian, wrapping); the nonce space is spent when the
 * counter comes back to where it started. */
static int next_nonce(uvq_lb *lb, uint8_t *nonce) {
  size_t n = lb->cfg.nonce_len;
  /* The step: 1, or UVQ_LB_NONCE_LANES in a lane (the low bits fixed). */
  unsigned carry = lb->has_lane ? UVQ_LB_NONCE_LANES : 1;

  if (!lb->started) {
    int rv = lb_rand(lb, lb->nonce, n);
    if (rv != 0) {
      return rv;
    }
    if (lb->has_lane) {
      lb->nonce[n - 1] = (uint8_t)((lb->nonce[n - 1] & ~0x1fu) | lb->lane);
    }
    memcpy(lb->first, lb->nonce, n);
    lb->started = 1;
  }
  if (lb->exhausted) {
    return UVQ_ERR_CONNECTION_LIMIT;
  }
  memcpy(nonce, lb->nonce, n);
  for (size_t i = n; i-- > 0 && carry != 0;) {
    unsigned v = lb->nonce[i] + carry;

    lb->nonce[i] = (uint8_t)v;
    carry = v >> 8;
  }
  lb->exhausted = memcmp(lb->nonce, lb->first, n) == 0;
  return 0;
}

int uvq_lb_generate(uvq_lb *lb, uint8_t first_bits, uint8_t *cid) {
  uint8_t nonce[UVQ_LB_MAX_PLAINTEXT_LEN];
  int rv;

  if (lb->cfg.has_key) {
    rv = next_nonce(lb, nonce);
  } else {
    /* In the clear a counter would link every CID to the one before. */
    rv = lb_rand(lb, nonce, lb->cfg.nonce_len);
  }
  if (rv == 0) {
    rv = uvq_lb_encode(lb, nonce, first_bits, cid);
  }
  return rv;
}

/* cid_usable: |cid| is long enough and names |lb|'s configuration. */
static int cid_usable(const uvq_lb *lb, const uint8_t *cid, size_t cidlen) {
  return cid != NULL && cidlen >= 1 + lb->plaintext_len &&
         uvq_lb_config_id(cid[0]) == lb->cfg.config_id;
}

static int lb_decrypt(uvq_lb *lb, const uint8_t *cid, size_t cidlen,
                      uint8_t *pt, int sid_only) {
  if (!cid_usable(lb, cid, cidlen)) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (!lb->cfg.has_key) {
    memcpy(pt, cid + 1, lb->plaintext_len);
    return 0;
  }
  return feistel(lb, cid + 1, pt, 1, sid_only);
}

int uvq_lb_decrypt(uvq_lb *lb, const uint8_t *cid, size_t cidlen,
                   uint8_t *plaintext) {
  return lb_decrypt(lb, cid, cidlen, plaintext, 0);
}

int uvq_lb_decode(uvq_lb *lb, const uint8_t *cid, size_t cidlen,
                  uint8_t *server_id, size_t server_id_size,
                  size_t *pserver_id_len) {
  uint8_t pt[UVQ_LB_MAX_PLAINTEXT_LEN];
  size_t sid_len = lb->cfg.server_id_len;
  int rv;

  if (server_id_size < sid_len) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = lb_decrypt(lb, cid, cidlen, pt, 1);
  if (rv != 0) {
    return rv;
  }
  memcpy(server_id, pt, sid_len);
  *pserver_id_len = sid_len;
  return 0;
}

/* The endpoint's generator: the first octet's low bits from the same
 * randomness as the nonce, unless they encode the length. */
static int lb_cid_generate(uvq_cid_gen *gen, ngtcp2_cid *cid) {
  uvq_lb *lb = gen->user_data;
  size_t len = uvq_lb_cid_len(lb);
  uint8_t bits = 0;
  int rv;

  if (!lb->cfg.encode_len) {
    rv = lb_rand(lb, &bits, 1);
    if (rv != 0) {
      return rv;
    }
  }
  rv = uvq_lb_generate(lb, bits, cid->data);
  if (rv == UVQ_ERR_CONNECTION_LIMIT) {
    /* Every nonce is spent: draft-21 has the server switch
     * configuration or issue CIDs with the unroutable codepoint 0b111, so
     * connections go on (routed by the balancer's 4-tuple fallback) and
     * no nonce repeats. Random octets, the same length; the low five bits
     * still take the length or a shard index. Counted. */
    rv = lb_rand(lb, cid->data, len);
    if (rv != 0) {
      return rv;
    }
    cid->data[0] = first_octet(lb, 7, cid->data[0]);
    lb->unroutable++;
  } else if (rv != 0) {
    return rv;
  }
  cid->datalen = len;
  return 0;
}

void uvq_lb_test_spend_nonces(uvq_lb *lb) {
  lb->started = 1;
  lb->exhausted = 1;
}

uint64_t uvq_lb_unroutable_count(const uvq_lb *lb) {
  return lb ? lb->unroutable : 0;
}

void uvq_lb_cid_gen_init(uvq_cid_gen *gen, uvq_lb *lb) {
  gen->generate = lb_cid_generate;
  gen->cid_len = uvq_lb_cid_len(lb);
  gen->user_data = lb;
}
