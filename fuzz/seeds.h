/* Seed inputs for the fuzz harnesses (seeds.c). */
#ifndef UVQ_FUZZ_SEEDS_H
#define UVQ_FUZZ_SEEDS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*uvq_seed_emit)(const char *harness, const uint8_t *data,
                              size_t len, void *ud);

/* Calls |emit| for each seed of |harness| ("router", "token", "cid_map",
 * "h3_request", "http_path", "http_cond", "mime_types", "quic_lb"). */
void uvq_fuzz_seeds(const char *harness, uvq_seed_emit emit, void *ud);

#endif
