/**
 * @file uvquic_lb.h
 * QUIC-LB: connection IDs a load balancer can route by.
 *
 * Implements draft-ietf-quic-load-balancers-21 ("QUIC-LB: Generating
 * Routable QUIC Connection IDs"): a server writes its server ID into every
 * connection ID it issues, in the clear or encrypted with a key it shares
 * with the load balancer, and the load balancer reads the server ID back
 * from the Destination Connection ID of any packet, whatever the client's
 * address, so a connection survives migration and NAT rebinding behind a
 * fleet.
 *
 * A QUIC-LB connection ID is:
 *
 *     First Octet (8) = Config Rotation (3) | CID Len or Random Bits (5)
 *     Server ID (server_id_len octets) | Nonce (nonce_len octets)
 *
 * where server ID and nonce are encrypted together when the configuration
 * has a key: one AES-128-ECB block when they are 16 octets, the draft's
 * four-pass Feistel construction over AES-128-ECB otherwise. The "server
 * use" octets of drafts before -08 are not supported.
 *
 * The same uvq_lb object encodes (the server's side) and decodes (the load
 * balancer's side). A server hands its configuration to the endpoint
 * (uvq_settings.quic_lb), which then issues only QUIC-LB connection
 * IDs: the SCID of its first Initial, the Retry SCID and every
 * NEW_CONNECTION_ID.
 *
 * A uvq_lb is used by one thread at a time (its AES handle keeps state
 * between blocks); give each thread its own.
 */
#ifndef UVQUIC_LB_H
#define UVQUIC_LB_H

#include <stddef.h>
#include <stdint.h>

#include "uvquic/uvquic.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Length of a QUIC-LB key: AES-128. */
#define UVQ_LB_KEYLEN 16
/** Shortest server ID (draft-21, "Configuration Agent Actions"). */
#define UVQ_LB_MIN_SERVER_ID_LEN 1
/** Shortest nonce (draft-21, "Configuration Agent Actions"). */
#define UVQ_LB_MIN_NONCE_LEN 4
/**
 * Most octets of server ID and nonce together (draft-21, "Configuration Agent
 * Actions": the first octet plus these fit QUIC version 1's 20-octet connection
 * ID).
 */
#define UVQ_LB_MAX_PLAINTEXT_LEN 19
/** Longest server ID: the plaintext less the shortest nonce. */
#define UVQ_LB_MAX_SERVER_ID_LEN                                               \
  (UVQ_LB_MAX_PLAINTEXT_LEN - UVQ_LB_MIN_NONCE_LEN)
/** Longest QUIC-LB connection ID: first octet and plaintext. */
#define UVQ_LB_MAX_CID_LEN (1 + UVQ_LB_MAX_PLAINTEXT_LEN)
/**
 * The config rotation codepoint a configuration must not use: it marks a
 * connection ID as unroutable (issued by a server without a configuration;
 * the load balancer falls back to the 4-tuple).
 */
#define UVQ_LB_CONFIG_ID_UNROUTABLE 7

/** The current version of uvq_lb_config (its first member). */
#define UVQ_LB_CONFIG_VERSION 1

/**
 * uvq_lb_config is one QUIC-LB configuration, as a configuration agent
 * hands it to a server (with that server's ID) or to a load balancer (the
 * server ID is then unused). Initialise with uvq_lb_config_default() or
 * uvq_lb_config_parse(); new fields will be added at the end.
 */
typedef struct uvq_lb_config {
  int version; /**< UVQ_LB_CONFIG_VERSION (set by uvq_lb_config_default). */
  /** Config rotation codepoint, 0..6: the top three bits of every CID. */
  uint8_t config_id;
  /** This server's ID (server side); its first server_id_len octets. */
  uint8_t server_id[UVQ_LB_MAX_SERVER_ID_LEN];
  /** Length of the server ID, 1..15. */
  size_t server_id_len;
  /** Length of the nonce, 4..18; server_id_len + nonce_len <= 19. */
  size_t nonce_len;
  /** Nonzero: server ID and nonce are encrypted with |key|. */
  int has_key;
  /** The AES-128 key shared with the load balancer (when has_key). */
  uint8_t key[UVQ_LB_KEYLEN];
  /**
   * Nonzero: the low five bits of the first octet encode the length of
   * the CID after it (draft-21, "Length Self-Description", for hardware
   * offload). 0 (default):
   * they are random for every CID, so they link nothing.
   */
  int encode_len;
} uvq_lb_config;

/**
 * uvq_lb_config_default zeroes |cfg| and sets its version: config ID 0,
 * no server ID (a server must set one), a nonce of 8 octets, no key,
 * random first-octet bits.
 */
UVQ_EXTERN void uvq_lb_config_default(uvq_lb_config *cfg);

/**
 * uvq_lb_config_check says what is wrong with |cfg|, or NULL if nothing
 * is: a config ID outside 0..6, a server ID outside 1..15 octets, a nonce
 * under 4 octets, server ID and nonce together over 19 octets, an unknown
 * version. The string is static, in English, for a log or an error
 * message.
 */
UVQ_EXTERN const char *uvq_lb_config_check(const uvq_lb_config *cfg);

/**
 * uvq_lb_config_parse fills |cfg| (from uvq_lb_config_default) from the
 * comma-separated KEY=VALUE list |text|, the syntax of
 * `uvquic-server --quic-lb`:
 *
 * - `cr=N`           config rotation codepoint 0..6 (default 0)
 * - `sid=HEX`        the server ID, 1..15 octets in hex (required)
 * - `sid-len=N`      only the length of the server ID, for a load balancer
 *                    (one of sid and sid-len is required)
 * - `nonce=N`        nonce length in octets, 4..18 (default 8)
 * - `key=HEX`        the 16-octet AES key in hex (default: no key,
 *                    plaintext CIDs)
 * - `encode-len`     the first octet's low bits encode the CID length
 *
 * for example `cr=1,sid=0a2b,nonce=6,key=8f95f09245765f80256934e50c66207f`.
 * The result is checked with uvq_lb_config_check.
 *
 * Returns 0, or UVQ_ERR_INVALID_ARGUMENT with *preason (if |preason| is not
 * NULL) set to a static English sentence naming the problem.
 */
UVQ_EXTERN int uvq_lb_config_parse(uvq_lb_config *cfg, const char *text,
                                   const char **preason);

/** An encoder/decoder for one QUIC-LB configuration (opaque). */
typedef struct uvq_lb uvq_lb;

/**
 * uvq_lb_new makes an encoder/decoder for |cfg| (copied; the key is kept
 * only inside GnuTLS's cipher handle and wiped from uvquic's copy).
 * |mem| NULL = libc. Free with uvq_lb_del.
 *
 * Returns 0 and sets *plb, UVQ_ERR_INVALID_ARGUMENT if uvq_lb_config_check
 * finds fault with |cfg|, UVQ_ERR_NOMEM, or UVQ_ERR_TLS if GnuTLS cannot
 * set up AES-128.
 */
UVQ_EXTERN int uvq_lb_new(uvq_lb **plb, const uvq_lb_config *cfg,
                          const uvq_mem *mem);

/** uvq_lb_del frees |lb| and wipes its key; NULL is a no-op. */
UVQ_EXTERN void uvq_lb_del(uvq_lb *lb);

/** uvq_lb_cid_len returns the length of |lb|'s CIDs: 1 + sid + nonce. */
UVQ_EXTERN size_t uvq_lb_cid_len(const uvq_lb *lb);

/**
 * uvq_lb_encode writes the CID (uvq_lb_cid_len(lb) octets) for |nonce|
 * (nonce_len octets) to |cid|: the first octet from the config ID and,
 * unless the configuration encodes the length, the low five bits of
 * |first_bits| (a server may put its shard there); then the server ID and
 * |nonce|, encrypted when the configuration has a key. Deterministic: the
 * caller must never repeat a nonce under one key (uvq_lb_generate does not).
 *
 * Returns 0, or UVQ_ERR_TLS if AES fails.
 */
UVQ_EXTERN int uvq_lb_encode(uvq_lb *lb, const uint8_t *nonce,
                             uint8_t first_bits, uint8_t *cid);

/**
 * uvq_lb_generate writes a new CID to |cid| (uvq_lb_cid_len(lb) octets),
 * taking randomness from GnuTLS (GNUTLS_RND_NONCE). With a key, the nonce
 * is a counter that starts at a random value and never repeats (draft-21,
 * "Connection ID Entropy"); without one, every nonce is random (a counter would
 * link CIDs). |first_bits| as for uvq_lb_encode; pass a random octet when
 * nothing else goes there.
 *
 * Returns 0, UVQ_ERR_TLS, or UVQ_ERR_CONNECTION_LIMIT once a keyed
 * configuration has used up its nonces (rotate to a new key).
 */
UVQ_EXTERN int uvq_lb_generate(uvq_lb *lb, uint8_t first_bits, uint8_t *cid);

/**
 * uvq_lb_decode is the load balancer's side: it reads the server ID from
 * the connection ID |cid| of |cidlen| octets (a packet's DCID) into
 * |server_id|, which has room for |server_id_size| octets, and sets
 * *pserver_id_len. Octets past uvq_lb_cid_len(lb) are ignored (a packet's
 * DCID on a short header is read at that length). Takes three AES passes
 * when the server ID fits in the first half of the plaintext, four
 * otherwise, one for a 16-octet plaintext.
 *
 * Returns 0; UVQ_ERR_INVALID_ARGUMENT if |cid| is shorter than this
 * configuration's CIDs, its config rotation bits name another
 * configuration (7 included: unroutable), or |server_id_size| is too small;
 * UVQ_ERR_TLS if AES fails. A CID that decodes but names no server the
 * caller knows is the caller's to treat as unroutable.
 */
UVQ_EXTERN int uvq_lb_decode(uvq_lb *lb, const uint8_t *cid, size_t cidlen,
                             uint8_t *server_id, size_t server_id_size,
                             size_t *pserver_id_len);

/**
 * uvq_lb_decrypt recovers the whole plaintext of |cid| — server ID then
 * nonce, server_id_len + nonce_len octets — into |plaintext| (room for
 * UVQ_LB_MAX_PLAINTEXT_LEN octets is always enough). For checks and tests;
 * a load balancer needs only uvq_lb_decode. Errors as uvq_lb_decode's.
 */
UVQ_EXTERN int uvq_lb_decrypt(uvq_lb *lb, const uint8_t *cid, size_t cidlen,
                              uint8_t *plaintext);

/**
 * uvq_lb_config_id returns the config rotation codepoint (0..7) of the
 * connection ID whose first octet is |first_octet|: which configuration a
 * load balancer holding several should decode it with (7: unroutable).
 */
UVQ_EXTERN unsigned uvq_lb_config_id(uint8_t first_octet);

#ifdef __cplusplus
}
#endif

#endif
