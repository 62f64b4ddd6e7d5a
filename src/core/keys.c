/*
 * The key file: what must survive restarts and be shared by the processes
 * behind one address (session-ticket master key, token keys, stateless-
 * reset secret). A small versioned text format, formatted and parsed here;
 * reading and writing the file is the caller's (the tools: apps/cli.c).
 */
#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "core/error.h"
#include "uvquic/uvquic.h"

#define KEYS_MAGIC "uvquic-keys"
#define KEYS_VERSION 1

int uvq_keys_generate(uvq_keys *keys) {
  if (keys == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  memset(keys, 0, sizeof(*keys));
  if (gnutls_rnd(GNUTLS_RND_KEY, keys->ticket_key, sizeof(keys->ticket_key)) !=
          0 ||
      gnutls_rnd(GNUTLS_RND_KEY, keys->token_key, sizeof(keys->token_key)) !=
          0 ||
      gnutls_rnd(GNUTLS_RND_KEY, keys->static_secret,
                 sizeof(keys->static_secret)) != 0) {
    gnutls_memset(keys, 0, sizeof(*keys));
    return UVQ_ERR_INTERNAL;
  }
  return 0;
}

int uvq_keys_rotate(uvq_keys *keys) {
  uvq_keys next;

  if (keys == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  next = *keys;
  memcpy(next.token_key_prev, keys->token_key, UVQ_TOKEN_KEYLEN);
  next.token_key_prev_set = 1;
  memcpy(next.static_secret_prev, keys->static_secret, UVQ_STATIC_SECRETLEN);
  next.static_secret_prev_set = 1;
  if (gnutls_rnd(GNUTLS_RND_KEY, next.token_key, sizeof(next.token_key)) != 0 ||
      gnutls_rnd(GNUTLS_RND_KEY, next.static_secret,
                 sizeof(next.static_secret)) != 0) {
    gnutls_memset(&next, 0, sizeof(next));
    return UVQ_ERR_INTERNAL;
  }
  *keys = next;
  gnutls_memset(&next, 0, sizeof(next));
  return 0;
}

void uvq_keys_apply(const uvq_keys *keys, uvq_settings *settings,
                    uvq_tls_config *tls) {
  if (keys == NULL) {
    return;
  }
  if (settings) {
    memcpy(settings->static_secret, keys->static_secret, UVQ_STATIC_SECRETLEN);
    settings->static_secret_set = 1;
    memcpy(settings->token_key, keys->token_key, UVQ_TOKEN_KEYLEN);
    settings->token_key_set = 1;
    memcpy(settings->token_key_prev, keys->token_key_prev, UVQ_TOKEN_KEYLEN);
    settings->token_key_prev_set = keys->token_key_prev_set != 0;
  }
  if (tls) {
    tls->ticket_key = keys->ticket_key;
    tls->ticket_keylen = UVQ_TICKET_KEYLEN;
  }
}

/* ---- writing ----------------------------------------------------------- */

static size_t put_line(char *out, size_t off, size_t cap, const char *name,
                       const uint8_t *key, size_t keylen) {
  static const char hex[] = "0123456789abcdef";
  size_t namelen = strlen(name);
  size_t need = namelen + 1 + 2 * keylen + 1;

  if (off + need > cap) {
    return cap + 1;
  }
  /* Part of a line; the text's NUL comes after its last line.
   * NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
  memcpy(out + off, name, namelen);
  off += namelen;
  out[off++] = ' ';
  for (size_t i = 0; i < keylen; i++) {
    out[off++] = hex[key[i] >> 4];
    out[off++] = hex[key[i] & 0xf];
  }
  out[off++] = '\n';
  return off;
}

ssize_t uvq_keys_format(const uvq_keys *keys, char *buf, size_t buflen) {
  size_t off;
  int n;

  if (keys == NULL || buf == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  n = snprintf(buf, buflen,
               "# uvquic key file: secret, keep it mode 0600\n%s %d\n",
               KEYS_MAGIC, KEYS_VERSION);
  if (n < 0 || (size_t)n >= buflen) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  off = (size_t)n;
  off = put_line(buf, off, buflen, "ticket_key", keys->ticket_key,
                 UVQ_TICKET_KEYLEN);
  off = put_line(buf, off, buflen, "token_key", keys->token_key,
                 UVQ_TOKEN_KEYLEN);
  if (keys->token_key_prev_set) {
    off = put_line(buf, off, buflen, "token_key_prev", keys->token_key_prev,
                   UVQ_TOKEN_KEYLEN);
  }
  off = put_line(buf, off, buflen, "static_secret", keys->static_secret,
                 UVQ_STATIC_SECRETLEN);
  if (keys->static_secret_prev_set) {
    off = put_line(buf, off, buflen, "static_secret_prev",
                   keys->static_secret_prev, UVQ_STATIC_SECRETLEN);
  }
  if (off >= buflen) {
    /* Too small (or no room for the NUL): leave no partial secret. */
    gnutls_memset(buf, 0, buflen);
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  buf[off] = '\0';
  return (ssize_t)off;
}

/* ---- reading ----------------------------------------------------------- */

static int unhex(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

/* Decodes exactly |keylen| bytes of hex from |s| (|slen| chars). */
static int parse_hex(uint8_t *key, size_t keylen, const char *s, size_t slen) {
  if (slen != 2 * keylen) {
    return -1;
  }
  for (size_t i = 0; i < keylen; i++) {
    int hi = unhex(s[2 * i]), lo = unhex(s[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return -1;
    }
    key[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

/* Bits of which keys a file set. */
#define HAVE_TICKET 0x1u
#define HAVE_TOKEN 0x2u
#define HAVE_TOKEN_PREV 0x4u
#define HAVE_SECRET 0x8u
#define HAVE_SECRET_PREV 0x10u
#define HAVE_MAGIC 0x20u

static int parse_keys(uvq_keys *k, const char *text, size_t len,
                      const char *path, char *errbuf, size_t errbuflen) {
  unsigned int have = 0;
  size_t lineno = 0;
  const char *p = text, *end = text + len;

  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line = p, *sp, *val;
    size_t linelen, namelen, vallen;
    unsigned int bit = 0;
    uint8_t *dst = NULL;
    size_t dstlen = 0;

    linelen = nl ? (size_t)(nl - p) : (size_t)(end - p);
    p = nl ? nl + 1 : end;
    lineno++;
    if (linelen > 0 && line[linelen - 1] == '\r') {
      linelen--;
    }
    if (linelen == 0 || line[0] == '#') {
      continue;
    }
    sp = memchr(line, ' ', linelen);
    if (sp == NULL) {
      uvq_set_errbuf(errbuf, errbuflen,
                     "key file %s:%zu: expected \"name value\"", path, lineno);
      return UVQ_ERR_KEY_FILE;
    }
    namelen = (size_t)(sp - line);
    val = sp + 1;
    vallen = linelen - namelen - 1;
    if (!(have & HAVE_MAGIC)) {
      if (namelen != strlen(KEYS_MAGIC) ||
          memcmp(line, KEYS_MAGIC, namelen) != 0) {
        uvq_set_errbuf(
            errbuf, errbuflen,
            "key file %s:%zu: not a uvquic key file (no \"%s %d\" line)", path,
            lineno, KEYS_MAGIC, KEYS_VERSION);
        return UVQ_ERR_KEY_FILE;
      }
      if (vallen != 1 || val[0] != '0' + KEYS_VERSION) {
        uvq_set_errbuf(
            errbuf, errbuflen,
            "key file %s:%zu: unsupported version \"%.*s\" (this build "
            "reads %d)",
            path, lineno, (int)(vallen > 16 ? 16 : vallen), val, KEYS_VERSION);
        return UVQ_ERR_KEY_FILE;
      }
      have |= HAVE_MAGIC;
      continue;
    }
#define KEY_IS(lit)                                                            \
  (namelen == sizeof(lit) - 1 && memcmp(line, lit, namelen) == 0)
    if (KEY_IS("ticket_key")) {
      bit = HAVE_TICKET, dst = k->ticket_key, dstlen = UVQ_TICKET_KEYLEN;
    } else if (KEY_IS("token_key")) {
      bit = HAVE_TOKEN, dst = k->token_key, dstlen = UVQ_TOKEN_KEYLEN;
    } else if (KEY_IS("token_key_prev")) {
      bit = HAVE_TOKEN_PREV, dst = k->token_key_prev, dstlen = UVQ_TOKEN_KEYLEN;
    } else if (KEY_IS("static_secret")) {
      bit = HAVE_SECRET, dst = k->static_secret, dstlen = UVQ_STATIC_SECRETLEN;
    } else if (KEY_IS("static_secret_prev")) {
      bit = HAVE_SECRET_PREV, dst = k->static_secret_prev,
      dstlen = UVQ_STATIC_SECRETLEN;
    }
#undef KEY_IS
    if (dst == NULL) {
      uvq_set_errbuf(errbuf, errbuflen, "key file %s:%zu: unknown key \"%.*s\"",
                     path, lineno, (int)(namelen > 32 ? 32 : namelen), line);
      return UVQ_ERR_KEY_FILE;
    }
    if (have & bit) {
      uvq_set_errbuf(errbuf, errbuflen, "key file %s:%zu: \"%.*s\" given twice",
                     path, lineno, (int)namelen, line);
      return UVQ_ERR_KEY_FILE;
    }
    if (parse_hex(dst, dstlen, val, vallen) != 0) {
      uvq_set_errbuf(errbuf, errbuflen,
                     "key file %s:%zu: \"%.*s\" must be %zu hex digits", path,
                     lineno, (int)namelen, line, 2 * dstlen);
      return UVQ_ERR_KEY_FILE;
    }
    have |= bit;
  }
  if ((have & (HAVE_MAGIC | HAVE_TICKET | HAVE_TOKEN | HAVE_SECRET)) !=
      (HAVE_MAGIC | HAVE_TICKET | HAVE_TOKEN | HAVE_SECRET)) {
    uvq_set_errbuf(
        errbuf, errbuflen,
        "key file %s: incomplete (needs the \"%s %d\" line, ticket_key, "
        "token_key and static_secret)",
        path, KEYS_MAGIC, KEYS_VERSION);
    return UVQ_ERR_KEY_FILE;
  }
  k->token_key_prev_set = (have & HAVE_TOKEN_PREV) != 0;
  k->static_secret_prev_set = (have & HAVE_SECRET_PREV) != 0;
  return 0;
}

int uvq_keys_parse(uvq_keys *keys, const char *text, size_t len,
                   const char *name, char *errbuf, size_t errbuflen) {
  uvq_keys k;
  int rv;

  if (errbuf && errbuflen) {
    errbuf[0] = '\0';
  }
  if (keys == NULL || text == NULL) {
    uvq_set_errbuf(errbuf, errbuflen, "keys and text are required");
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  memset(&k, 0, sizeof(k));
  rv = parse_keys(&k, text, len, name ? name : "(text)", errbuf, errbuflen);
  if (rv == 0) {
    *keys = k;
  }
  gnutls_memset(&k, 0, sizeof(k));
  return rv;
}
