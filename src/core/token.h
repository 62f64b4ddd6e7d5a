/*
 * Address-validation tokens (RFC 9000 §8.1): the tokens a server puts in
 * Retry packets and NEW_TOKEN frames, and checks when a client echoes them
 * in an Initial.
 *
 * Wire format of a sealed token (the client treats it as opaque bytes):
 *
 *   type (1) | key id (1) | nonce (12) | AES-128-GCM ciphertext | tag (16)
 *
 * The type byte and the key id are sent in the clear and are the AEAD's
 * associated data, so a token of one type can never verify as the other
 * and a key id cannot be swapped without failing the tag.
 *
 * Retry plaintext:   version (4) | address | port (2) | odcid len (1) |
 *                    odcid | retry scid len (1) | retry scid | issued (8)
 * NEW_TOKEN plaintext: version (4) | address | issued (8)
 * Both carry a QUIC version, and a token is honoured only in an Initial
 * of that version (RFC 9369 §5): a Retry token's is the Initial's that
 * Retry answered; a NEW_TOKEN token's is the version the connection that
 * sent it started in (its client's first Initial, whatever compatible
 * version negotiation then chose), which is also what the session
 * tickets of that connection are bound to (the server's ticket key is
 * per version, endpoint.c), so a client that resumes starts in it.
 * where address is family (1: 4 or 6) then 4 or 16 bytes, and every integer
 * is big-endian. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a
 * dual-stack socket reports IPv4 peers) is sealed and compared as the IPv4
 * address, so a token survives being verified on the other kind of socket.
 *
 * Times are wall-clock seconds since the epoch (tokens outlive processes
 * and hosts); they come from the caller. A token is valid while
 * now - issued <= lifetime: at exactly |lifetime| seconds it is still
 * accepted, one second later it is not. A token whose issue time is more
 * than UVQ_TOKEN_MAX_CLOCK_SKEW seconds in the future is rejected as
 * expired (the sealer's clock is ahead, or the token is not ours).
 *
 * Keys and key ids: each 16-byte key has a one-byte id derived from the key
 * itself (a hash), not from a rotation counter, so every process sharing a
 * key agrees on its id however often each has rotated. The id only picks
 * which key to try; if the current and the previous key happen to share an
 * id, both are tried.
 *
 * Nonces are random (96 bits). AES-GCM with random nonces should not seal
 * more than 2^32 tokens under one key: rotate before uvq_token_keys.sealed
 * gets there.
 *
 * A uvq_token_keys is embedded by its owner and confined to one thread
 * (GnuTLS AEAD handles are not safe for concurrent use).
 */
#ifndef UVQ_CORE_TOKEN_H
#define UVQ_CORE_TOKEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>

#include "uvquic/uvquic.h"

/*
 * Type bytes. The server must tell a Retry token from a NEW_TOKEN token
 * before it can verify either (RFC 9000 §8.1.1, §8.1.3): a bad Retry token
 * closes the connection with INVALID_TOKEN, a bad NEW_TOKEN token is
 * treated as absent. The two values are bitwise complements (Hamming
 * distance 8), so no corruption of a few bits turns one type into the
 * other; neither is 0x00 or 0xff (what zeroed or erased buffers hold); and
 * both differ from ngtcp2_crypto's own token magics (0xb6 / 0x36), so a
 * token minted by another ngtcp2-based stack behind the same address is
 * reported as malformed rather than tried as ours.
 */
#define UVQ_TOKEN_TYPE_RETRY 0xa5
#define UVQ_TOKEN_TYPE_NEW 0x5a

#define UVQ_TOKEN_NONCELEN 12
#define UVQ_TOKEN_TAGLEN 16
/* type + key id + nonce */
#define UVQ_TOKEN_HEADERLEN (2 + UVQ_TOKEN_NONCELEN)
/* family + IPv6 address */
#define UVQ_TOKEN_ADDR_MAXLEN (1 + 16)
#define UVQ_TOKEN_RETRY_PLAIN_MAXLEN                                           \
  (4 + UVQ_TOKEN_ADDR_MAXLEN + 2 + 1 + NGTCP2_MAX_CIDLEN + 1 +                 \
   NGTCP2_MAX_CIDLEN + 8)
#define UVQ_TOKEN_NEW_PLAIN_MAXLEN (4 + UVQ_TOKEN_ADDR_MAXLEN + 8)
/** Upper bound of a sealed Retry token (103 bytes). */
#define UVQ_TOKEN_RETRY_MAXLEN                                                 \
  (UVQ_TOKEN_HEADERLEN + UVQ_TOKEN_RETRY_PLAIN_MAXLEN + UVQ_TOKEN_TAGLEN)
/** Upper bound of a sealed NEW_TOKEN token (59 bytes). */
#define UVQ_TOKEN_NEW_MAXLEN                                                   \
  (UVQ_TOKEN_HEADERLEN + UVQ_TOKEN_NEW_PLAIN_MAXLEN + UVQ_TOKEN_TAGLEN)
/** Upper bound of any sealed token: size output buffers with it. */
#define UVQ_TOKEN_MAXLEN UVQ_TOKEN_RETRY_MAXLEN

/** Default lifetimes (seconds), matching uvq_settings_default(). */
#define UVQ_TOKEN_RETRY_LIFETIME_DEFAULT 10
#define UVQ_TOKEN_NEW_LIFETIME_DEFAULT 86400
/** How far in the future an issue time may lie (seconds). */
#define UVQ_TOKEN_MAX_CLOCK_SKEW 3

typedef struct uvq_token_key {
  gnutls_aead_cipher_hd_t hd;
  /* Derived from the key bytes: see uvq_token_key_id. */
  uint8_t id;
  /* Nonzero once hd holds a key. */
  int set;
} uvq_token_key;

/** The token key ring: the key that seals and the one before it. */
typedef struct uvq_token_keys {
  uvq_token_key cur;
  uvq_token_key prev;
  /** Tokens sealed under the current key (reset by rotation). */
  uint64_t sealed;
  /**
   * Optional source of the nonces (the endpoint's, uvq_ep_rand): 0 or an
   * error. NULL: GnuTLS's generator. uvq_token_keys_init clears it.
   */
  int (*rand)(void *ud, uint8_t *dest, size_t len);
  void *rand_ud;
} uvq_token_keys;

/**
 * uvq_token_key_id returns the one-byte id of |key|: the first byte of
 * SHA-256("uvquic token key id" || key). Exposed for tests.
 */
uint8_t uvq_token_key_id(const uint8_t key[UVQ_TOKEN_KEYLEN]);

/**
 * uvq_token_keys_init makes |key| the only key of |k|. GnuTLS allocates the
 * cipher handle; release it with uvq_token_keys_free. The caller may wipe
 * |key| afterwards: the ring keeps no copy of its own.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT (NULL), or UVQ_ERR_INTERNAL if GnuTLS
 * fails (|k| is then left zeroed, safe to free).
 */
int uvq_token_keys_init(uvq_token_keys *k, const uint8_t key[UVQ_TOKEN_KEYLEN]);

/**
 * uvq_token_keys_rotate makes |key| the current key; the current key
 * becomes the previous one and the previous one is dropped, so tokens
 * sealed under it fail with UVQ_TOKEN_REJECT_DECRYPT from now on.
 *
 * Returns 0, UVQ_ERR_INVALID_ARGUMENT, or UVQ_ERR_INTERNAL (the ring is
 * then unchanged).
 */
int uvq_token_keys_rotate(uvq_token_keys *k,
                          const uint8_t key[UVQ_TOKEN_KEYLEN]);

/** uvq_token_keys_free releases both handles; |k| is zeroed. NULL is ok. */
void uvq_token_keys_free(uvq_token_keys *k);

/**
 * uvq_token_seal_retry writes into |out| a Retry token for a client at
 * |client| (AF_INET or AF_INET6) that sent an Initial of |version| with
 * DCID |odcid|, answered by a Retry whose SCID is |retry_scid|, at
 * |now_wall_s|. |outlen| of UVQ_TOKEN_MAXLEN always suffices.
 *
 * Returns the token length, or UVQ_ERR_INVALID_ARGUMENT (NULL, unknown
 * address family, short |clientlen|, CID over 20 bytes, |outlen| too small),
 * UVQ_ERR_INVALID_STATE (the ring was freed), or UVQ_ERR_INTERNAL (GnuTLS
 * or the random generator failed).
 */
ssize_t uvq_token_seal_retry(uvq_token_keys *k, uint8_t *out, size_t outlen,
                             uint32_t version, const struct sockaddr *client,
                             socklen_t clientlen, const ngtcp2_cid *odcid,
                             const ngtcp2_cid *retry_scid, uint64_t now_wall_s);

/**
 * uvq_token_open_retry verifies the Retry token |token| carried by an
 * Initial of |version| from |client| with DCID |dcid|, at |now_wall_s|,
 * for a token lifetime of |lifetime_s|. On success it returns 0 and sets
 * *odcid to the client's original DCID (needed for the
 * original_destination_connection_id transport parameter).
 *
 * Otherwise it returns UVQ_ERR_INVALID_TOKEN and sets *reason (if |reason|
 * is not NULL), checking in this order:
 * - MALFORMED: empty, not a Retry token, too short or too long, or a
 *   plaintext that does not parse;
 * - DECRYPT: no key with that id, or the tag does not verify (tampered,
 *   wrong key, a key rotated out);
 * - VERSION: sealed for another QUIC version;
 * - EXPIRED: now - issued > lifetime, or issued more than
 *   UVQ_TOKEN_MAX_CLOCK_SKEW seconds in the future;
 * - ADDRESS: another IP address or port;
 * - MALFORMED: |dcid| is not the Retry SCID the token was sealed with. The
 *   token is authentic and the client's address matches, but the packet
 *   carrying it breaks RFC 9000 §17.2.5.2 (or replays the token into
 *   another attempt): a peer protocol error, not a change of address.
 *
 * Returns UVQ_ERR_INVALID_ARGUMENT (no reason set) for NULL arguments or
 * an unusable |client|.
 */
int uvq_token_open_retry(uvq_token_keys *k, const uint8_t *token,
                         size_t tokenlen, uint32_t version,
                         const struct sockaddr *client, socklen_t clientlen,
                         const ngtcp2_cid *dcid, uint64_t now_wall_s,
                         uint64_t lifetime_s, ngtcp2_cid *odcid,
                         uvq_token_reject_reason *reason);

/**
 * uvq_token_seal_new writes into |out| a NEW_TOKEN token for a client at
 * |client|, issued at |now_wall_s| on a connection started in QUIC
 * |version|. Only the IP address is sealed, not the port: NATs change
 * ports between connections.
 *
 * Returns the token length, or UVQ_ERR_INVALID_ARGUMENT,
 * UVQ_ERR_INVALID_STATE or UVQ_ERR_INTERNAL as uvq_token_seal_retry.
 */
ssize_t uvq_token_seal_new(uvq_token_keys *k, uint8_t *out, size_t outlen,
                           uint32_t version, const struct sockaddr *client,
                           socklen_t clientlen, uint64_t now_wall_s);

/**
 * uvq_token_open_new verifies the NEW_TOKEN token |token| from |client|,
 * carried by an Initial of |version|, at |now_wall_s| for a lifetime of
 * |lifetime_s|. Returns 0, or UVQ_ERR_INVALID_TOKEN with *reason
 * (MALFORMED, DECRYPT, VERSION, EXPIRED, ADDRESS, in that order of
 * checking, as uvq_token_open_retry), or UVQ_ERR_INVALID_ARGUMENT.
 */
int uvq_token_open_new(uvq_token_keys *k, const uint8_t *token, size_t tokenlen,
                       uint32_t version, const struct sockaddr *client,
                       socklen_t clientlen, uint64_t now_wall_s,
                       uint64_t lifetime_s, uvq_token_reject_reason *reason);

/**
 * uvq_token_type returns the type byte of |token| (UVQ_TOKEN_TYPE_RETRY,
 * UVQ_TOKEN_TYPE_NEW, or any other byte for a foreign token), or -1 for an
 * empty token. It verifies nothing.
 */
int uvq_token_type(const uint8_t *token, size_t tokenlen);

#endif
