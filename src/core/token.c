#include "core/token.h"

#include <netinet/in.h>
#include <string.h>

/* Family bytes in the sealed address. */
#define ADDR_V4 4
#define ADDR_V6 6

/* Shortest ciphertexts: a Retry token for IPv4 and zero-length CIDs, a
 * NEW_TOKEN token for IPv4. Anything shorter is malformed before we spend
 * a decryption on it. */
#define RETRY_PLAIN_MINLEN (4 + 1 + 4 + 2 + 1 + 1 + 8)
#define NEW_PLAIN_MINLEN (4 + 1 + 4 + 8)

/* A client address reduced to what a token binds. */
typedef struct token_addr {
  uint8_t family;
  uint8_t addr[16];
  uint16_t port;
} token_addr;

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};

static size_t addr_len(uint8_t family) { return family == ADDR_V4 ? 4 : 16; }

/* addr_from_sockaddr reduces |sa| to a token_addr, turning an IPv4-mapped
 * IPv6 address into the IPv4 one. Returns 0 or UVQ_ERR_INVALID_ARGUMENT. */
static int addr_from_sockaddr(token_addr *ta, const struct sockaddr *sa,
                              socklen_t salen) {
  memset(ta, 0, sizeof(*ta));
  if (sa == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  switch (sa->sa_family) {
  case AF_INET: {
    struct sockaddr_in sin;
    if ((size_t)salen < sizeof(sin)) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    memcpy(&sin, sa, sizeof(sin));
    ta->family = ADDR_V4;
    memcpy(ta->addr, &sin.sin_addr, 4);
    ta->port = ntohs(sin.sin_port);
    return 0;
  }
  case AF_INET6: {
    struct sockaddr_in6 sin6;
    if ((size_t)salen < sizeof(sin6)) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    memcpy(&sin6, sa, sizeof(sin6));
    if (memcmp(sin6.sin6_addr.s6_addr, v4mapped_prefix,
               sizeof(v4mapped_prefix)) == 0) {
      ta->family = ADDR_V4;
      memcpy(ta->addr, sin6.sin6_addr.s6_addr + 12, 4);
    } else {
      ta->family = ADDR_V6;
      memcpy(ta->addr, sin6.sin6_addr.s6_addr, 16);
    }
    ta->port = ntohs(sin6.sin6_port);
    return 0;
  }
  default:
    return UVQ_ERR_INVALID_ARGUMENT;
  }
}

static int addr_ip_eq(const token_addr *a, const token_addr *b) {
  return a->family == b->family &&
         memcmp(a->addr, b->addr, addr_len(a->family)) == 0;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v) {
  *p++ = (uint8_t)(v >> 8);
  *p++ = (uint8_t)v;
  return p;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
  *p++ = (uint8_t)(v >> 24);
  *p++ = (uint8_t)(v >> 16);
  *p++ = (uint8_t)(v >> 8);
  *p++ = (uint8_t)v;
  return p;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
  p = put_u32(p, (uint32_t)(v >> 32));
  return put_u32(p, (uint32_t)v);
}

static uint8_t *put_addr(uint8_t *p, const token_addr *ta) {
  size_t n = addr_len(ta->family);
  *p++ = ta->family;
  memcpy(p, ta->addr, n);
  return p + n;
}

static uint8_t *put_cid(uint8_t *p, const ngtcp2_cid *cid) {
  *p++ = (uint8_t)cid->datalen;
  if (cid->datalen) {
    memcpy(p, cid->data, cid->datalen);
  }
  return p + cid->datalen;
}

/* A bounded reader over a decrypted plaintext: every get_* fails once the
 * input is exhausted, and the caller checks that nothing is left over. */
typedef struct reader {
  const uint8_t *p;
  const uint8_t *end;
} reader;

static int get_bytes(reader *r, void *dst, size_t n) {
  if ((size_t)(r->end - r->p) < n) {
    return -1;
  }
  if (n) {
    memcpy(dst, r->p, n);
  }
  r->p += n;
  return 0;
}

static int get_u8(reader *r, uint8_t *v) { return get_bytes(r, v, 1); }

static int get_u16(reader *r, uint16_t *v) {
  uint8_t b[2];
  if (get_bytes(r, b, sizeof(b)) != 0) {
    return -1;
  }
  *v = (uint16_t)((b[0] << 8) | b[1]);
  return 0;
}

static int get_u32(reader *r, uint32_t *v) {
  uint8_t b[4];
  if (get_bytes(r, b, sizeof(b)) != 0) {
    return -1;
  }
  *v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) |
       b[3];
  return 0;
}

static int get_u64(reader *r, uint64_t *v) {
  uint32_t hi, lo;
  if (get_u32(r, &hi) != 0 || get_u32(r, &lo) != 0) {
    return -1;
  }
  *v = ((uint64_t)hi << 32) | lo;
  return 0;
}

static int get_addr(reader *r, token_addr *ta) {
  memset(ta, 0, sizeof(*ta));
  if (get_u8(r, &ta->family) != 0 ||
      (ta->family != ADDR_V4 && ta->family != ADDR_V6)) {
    return -1;
  }
  return get_bytes(r, ta->addr, addr_len(ta->family));
}

static int get_cid(reader *r, ngtcp2_cid *cid) {
  uint8_t len;
  memset(cid, 0, sizeof(*cid));
  if (get_u8(r, &len) != 0 || len > NGTCP2_MAX_CIDLEN) {
    return -1;
  }
  cid->datalen = len;
  return get_bytes(r, cid->data, len);
}

uint8_t uvq_token_key_id(const uint8_t key[UVQ_TOKEN_KEYLEN]) {
  static const char label[] = "uvquic token key id";
  uint8_t buf[sizeof(label) - 1 + UVQ_TOKEN_KEYLEN];
  uint8_t md[32];
  uint8_t id;

  memcpy(buf, label, sizeof(label) - 1);
  memcpy(buf + sizeof(label) - 1, key, UVQ_TOKEN_KEYLEN);
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, sizeof(buf), md) != 0) {
    /* The id only speeds up key selection; with a wrong one opening tries
     * both keys anyway (see find_keys), so 0 is a safe fallback. */
    md[0] = 0;
  }
  id = md[0];
  gnutls_memset(buf, 0, sizeof(buf));
  gnutls_memset(md, 0, sizeof(md));
  return id;
}

static int key_set(uvq_token_key *tk, const uint8_t key[UVQ_TOKEN_KEYLEN]) {
  gnutls_datum_t d;
  uint8_t copy[UVQ_TOKEN_KEYLEN];
  int rv;

  /* gnutls_datum_t.data is not const. */
  memcpy(copy, key, sizeof(copy));
  d.data = copy;
  d.size = sizeof(copy);
  rv = gnutls_aead_cipher_init(&tk->hd, GNUTLS_CIPHER_AES_128_GCM, &d);
  gnutls_memset(copy, 0, sizeof(copy));
  if (rv != 0) {
    memset(tk, 0, sizeof(*tk));
    return UVQ_ERR_INTERNAL;
  }
  tk->id = uvq_token_key_id(key);
  tk->set = 1;
  return 0;
}

static void key_clear(uvq_token_key *tk) {
  if (tk->set) {
    gnutls_aead_cipher_deinit(tk->hd);
  }
  memset(tk, 0, sizeof(*tk));
}

int uvq_token_keys_init(uvq_token_keys *k,
                        const uint8_t key[UVQ_TOKEN_KEYLEN]) {
  if (k == NULL || key == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  memset(k, 0, sizeof(*k));
  return key_set(&k->cur, key);
}

int uvq_token_keys_rotate(uvq_token_keys *k,
                          const uint8_t key[UVQ_TOKEN_KEYLEN]) {
  uvq_token_key next;
  int rv;

  if (k == NULL || key == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  rv = key_set(&next, key);
  if (rv != 0) {
    return rv;
  }
  key_clear(&k->prev);
  k->prev = k->cur;
  k->cur = next;
  k->sealed = 0;
  return 0;
}

void uvq_token_keys_free(uvq_token_keys *k) {
  if (k == NULL) {
    return;
  }
  key_clear(&k->cur);
  key_clear(&k->prev);
  k->sealed = 0;
}

/* token_seal encrypts |plain| into |out| as a token of |type| under the current
 * key. |out| must hold UVQ_TOKEN_HEADERLEN + plainlen + UVQ_TOKEN_TAGLEN. */
static ssize_t token_seal(uvq_token_keys *k, uint8_t type, const uint8_t *plain,
                          size_t plainlen, uint8_t *out, size_t outlen) {
  size_t ctlen = outlen - UVQ_TOKEN_HEADERLEN;

  if (!k->cur.set) {
    return UVQ_ERR_INVALID_STATE;
  }
  out[0] = type;
  out[1] = k->cur.id;
  if (k->rand
          ? k->rand(k->rand_ud, out + 2, UVQ_TOKEN_NONCELEN) != 0
          : gnutls_rnd(GNUTLS_RND_NONCE, out + 2, UVQ_TOKEN_NONCELEN) != 0) {
    return UVQ_ERR_INTERNAL;
  }
  /* Associated data: type and key id, so neither can be swapped. */
  if (gnutls_aead_cipher_encrypt(k->cur.hd, out + 2, UVQ_TOKEN_NONCELEN, out, 2,
                                 UVQ_TOKEN_TAGLEN, plain, plainlen,
                                 out + UVQ_TOKEN_HEADERLEN, &ctlen) != 0 ||
      ctlen != plainlen + UVQ_TOKEN_TAGLEN) {
    return UVQ_ERR_INTERNAL;
  }
  ++k->sealed;
  return (ssize_t)(UVQ_TOKEN_HEADERLEN + ctlen);
}

static int try_open(uvq_token_key *tk, const uint8_t *token, size_t tokenlen,
                    uint8_t *plain, size_t *pplainlen) {
  size_t plainlen = *pplainlen;

  if (!tk->set || tk->id != token[1]) {
    return -1;
  }
  if (gnutls_aead_cipher_decrypt(
          tk->hd, token + 2, UVQ_TOKEN_NONCELEN, token, 2, UVQ_TOKEN_TAGLEN,
          token + UVQ_TOKEN_HEADERLEN, tokenlen - UVQ_TOKEN_HEADERLEN, plain,
          &plainlen) != 0) {
    return -1;
  }
  *pplainlen = plainlen;
  return 0;
}

/* token_open checks the framing of |token| (type |type|, ciphertext length in
 * [minplain, maxplain]) and decrypts it into |plain|. Returns 0 and sets
 * *pplainlen, or -1 with *reason set. */
static int token_open(uvq_token_keys *k, uint8_t type, const uint8_t *token,
                      size_t tokenlen, size_t minplain, size_t maxplain,
                      uint8_t *plain, size_t *pplainlen,
                      uvq_token_reject_reason *reason) {
  size_t overhead = UVQ_TOKEN_HEADERLEN + UVQ_TOKEN_TAGLEN;
  size_t cap = *pplainlen;

  if (tokenlen < overhead + minplain || tokenlen > overhead + maxplain ||
      token[0] != type) {
    *reason = UVQ_TOKEN_REJECT_MALFORMED;
    return -1;
  }
  /* The current and the previous key can share an id (1 in 256 rotations),
   * so try each key whose id matches rather than only the first. */
  *pplainlen = cap;
  if (try_open(&k->cur, token, tokenlen, plain, pplainlen) == 0) {
    return 0;
  }
  *pplainlen = cap;
  if (try_open(&k->prev, token, tokenlen, plain, pplainlen) == 0) {
    return 0;
  }
  *reason = UVQ_TOKEN_REJECT_DECRYPT;
  return -1;
}

/* expired applies the lifetime rule documented in token.h. */
static int expired(uint64_t issued, uint64_t now, uint64_t lifetime) {
  if (issued > now) {
    return issued - now > UVQ_TOKEN_MAX_CLOCK_SKEW;
  }
  return now - issued > lifetime;
}

static int cid_ok(const ngtcp2_cid *cid) {
  return cid != NULL && cid->datalen <= NGTCP2_MAX_CIDLEN;
}

ssize_t uvq_token_seal_retry(uvq_token_keys *k, uint8_t *out, size_t outlen,
                             uint32_t version, const struct sockaddr *client,
                             socklen_t clientlen, const ngtcp2_cid *odcid,
                             const ngtcp2_cid *retry_scid,
                             uint64_t now_wall_s) {
  uint8_t plain[UVQ_TOKEN_RETRY_PLAIN_MAXLEN];
  uint8_t *p = plain;
  token_addr ta;
  size_t plainlen, need;

  if (k == NULL || out == NULL || !cid_ok(odcid) || !cid_ok(retry_scid) ||
      addr_from_sockaddr(&ta, client, clientlen) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  p = put_u32(p, version);
  p = put_addr(p, &ta);
  p = put_u16(p, ta.port);
  p = put_cid(p, odcid);
  p = put_cid(p, retry_scid);
  p = put_u64(p, now_wall_s);
  plainlen = (size_t)(p - plain);

  need = UVQ_TOKEN_HEADERLEN + plainlen + UVQ_TOKEN_TAGLEN;
  if (outlen < need) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  return token_seal(k, UVQ_TOKEN_TYPE_RETRY, plain, plainlen, out, need);
}

static int reject(uvq_token_reject_reason *reason,
                  uvq_token_reject_reason why) {
  if (reason) {
    *reason = why;
  }
  return UVQ_ERR_INVALID_TOKEN;
}

int uvq_token_open_retry(uvq_token_keys *k, const uint8_t *token,
                         size_t tokenlen, uint32_t version,
                         const struct sockaddr *client, socklen_t clientlen,
                         const ngtcp2_cid *dcid, uint64_t now_wall_s,
                         uint64_t lifetime_s, ngtcp2_cid *odcid,
                         uvq_token_reject_reason *reason) {
  uint8_t plain[UVQ_TOKEN_RETRY_PLAIN_MAXLEN];
  size_t plainlen = sizeof(plain);
  uvq_token_reject_reason why;
  token_addr want, got;
  ngtcp2_cid sealed_odcid, sealed_scid;
  uint32_t sealed_version;
  uint64_t issued;
  reader r;

  if (k == NULL || (token == NULL && tokenlen) || !cid_ok(dcid) ||
      odcid == NULL || addr_from_sockaddr(&want, client, clientlen) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (token_open(k, UVQ_TOKEN_TYPE_RETRY, token, tokenlen, RETRY_PLAIN_MINLEN,
                 UVQ_TOKEN_RETRY_PLAIN_MAXLEN, plain, &plainlen, &why) != 0) {
    return reject(reason, why);
  }

  r.p = plain;
  r.end = plain + plainlen;
  if (get_u32(&r, &sealed_version) != 0 || get_addr(&r, &got) != 0 ||
      get_u16(&r, &got.port) != 0 || get_cid(&r, &sealed_odcid) != 0 ||
      get_cid(&r, &sealed_scid) != 0 || get_u64(&r, &issued) != 0 ||
      r.p != r.end) {
    /* Authentic but unparseable: only a token from a build with another
     * layout under the same key gets here. */
    return reject(reason, UVQ_TOKEN_REJECT_MALFORMED);
  }
  if (sealed_version != version) {
    return reject(reason, UVQ_TOKEN_REJECT_VERSION);
  }
  if (expired(issued, now_wall_s, lifetime_s)) {
    return reject(reason, UVQ_TOKEN_REJECT_EXPIRED);
  }
  if (!addr_ip_eq(&got, &want) || got.port != want.port) {
    return reject(reason, UVQ_TOKEN_REJECT_ADDRESS);
  }
  if (!ngtcp2_cid_eq(&sealed_scid, dcid)) {
    return reject(reason, UVQ_TOKEN_REJECT_MALFORMED);
  }
  *odcid = sealed_odcid;
  return 0;
}

ssize_t uvq_token_seal_new(uvq_token_keys *k, uint8_t *out, size_t outlen,
                           uint32_t version, const struct sockaddr *client,
                           socklen_t clientlen, uint64_t now_wall_s) {
  uint8_t plain[UVQ_TOKEN_NEW_PLAIN_MAXLEN];
  uint8_t *p = plain;
  token_addr ta;
  size_t plainlen, need;

  if (k == NULL || out == NULL ||
      addr_from_sockaddr(&ta, client, clientlen) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  p = put_u32(p, version);
  p = put_addr(p, &ta);
  p = put_u64(p, now_wall_s);
  plainlen = (size_t)(p - plain);

  need = UVQ_TOKEN_HEADERLEN + plainlen + UVQ_TOKEN_TAGLEN;
  if (outlen < need) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  return token_seal(k, UVQ_TOKEN_TYPE_NEW, plain, plainlen, out, need);
}

int uvq_token_open_new(uvq_token_keys *k, const uint8_t *token, size_t tokenlen,
                       uint32_t version, const struct sockaddr *client,
                       socklen_t clientlen, uint64_t now_wall_s,
                       uint64_t lifetime_s, uvq_token_reject_reason *reason) {
  uint8_t plain[UVQ_TOKEN_NEW_PLAIN_MAXLEN];
  size_t plainlen = sizeof(plain);
  uvq_token_reject_reason why;
  token_addr want, got;
  uint32_t sealed_version;
  uint64_t issued;
  reader r;

  if (k == NULL || (token == NULL && tokenlen) ||
      addr_from_sockaddr(&want, client, clientlen) != 0) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  if (token_open(k, UVQ_TOKEN_TYPE_NEW, token, tokenlen, NEW_PLAIN_MINLEN,
                 UVQ_TOKEN_NEW_PLAIN_MAXLEN, plain, &plainlen, &why) != 0) {
    return reject(reason, why);
  }

  r.p = plain;
  r.end = plain + plainlen;
  if (get_u32(&r, &sealed_version) != 0 || get_addr(&r, &got) != 0 ||
      get_u64(&r, &issued) != 0 || r.p != r.end) {
    return reject(reason, UVQ_TOKEN_REJECT_MALFORMED);
  }
  if (sealed_version != version) {
    return reject(reason, UVQ_TOKEN_REJECT_VERSION);
  }
  if (expired(issued, now_wall_s, lifetime_s)) {
    return reject(reason, UVQ_TOKEN_REJECT_EXPIRED);
  }
  if (!addr_ip_eq(&got, &want)) {
    return reject(reason, UVQ_TOKEN_REJECT_ADDRESS);
  }
  return 0;
}

int uvq_token_type(const uint8_t *token, size_t tokenlen) {
  if (token == NULL || tokenlen == 0) {
    return -1;
  }
  return token[0];
}
