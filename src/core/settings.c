#include <netinet/in.h>
#include <stddef.h>
#include <string.h>

#include "core/settings.h"
#include "uvquic/uvquic.h"

void uvq_settings_default(uvq_settings *s) {
  memset(s, 0, sizeof(*s));
  s->version = UVQ_SETTINGS_VERSION;
  s->cid_len = 16;
  s->cc_algo = UVQ_CC_CUBIC;
  s->idle_timeout = 30 * UVQ_SECONDS;
  s->handshake_timeout = 20 * UVQ_SECONDS;
  s->keep_alive = 0;
  s->initial_rtt = 100 * UVQ_MILLISECONDS;
  s->initial_max_data = 16u << 20;
  s->initial_max_stream_data = 1u << 20;
  s->max_window = 24u << 20;
  s->max_stream_window = 16u << 20;
  s->max_streams_bidi = 100;
  s->max_streams_uni = 100;
  s->max_udp_payload_size = 0; /* auto: the first link's MTU */
  s->pmtud = 1;
  s->disable_active_migration = 0;
  s->retry = UVQ_RETRY_OFF;
  s->retry_auto_threshold = 256;
  s->retry_token_lifetime = 10;
  s->new_token_lifetime = 86400;
  s->stream_send_buffer = 1u << 20;
  s->max_connections = 10000;
  s->stateless_queue_len = 64;
  s->max_burst_datagrams = 64;
  s->ack_thresh = 2;
  s->send_new_token = 1;
  s->max_datagram_frame_size = 0;
  s->datagram_queue_len = 128;
  s->log_level = UVQ_LOG_WARN;
  s->bw_window_rounds = 10;
  s->early_data = 1;
  s->anti_replay = 1;
  s->stateless_reset_rate = 100;
  s->stateless_reset_burst = 100;
  s->send_buffer_cache = 1u << 20;
  s->conn_send_budget = 8u << 20;
  s->max_handshakes = 1024;
  s->max_handshakes_per_source = 64;
  s->max_connections_per_source = 1024;
  s->quic_versions[0] = UVQ_QUIC_V1;
  s->quic_versions[1] = UVQ_QUIC_V2;
  s->quic_versionslen = 2;
  s->client_chosen_version = UVQ_QUIC_V1;
  s->endpoint_send_budget = 256u << 20;
  s->conn_recv_budget = 1u << 20;
  s->endpoint_recv_budget = 64u << 20;
}

void uvq_endpoint_config_default(uvq_endpoint_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->version = UVQ_ENDPOINT_CONFIG_VERSION;
}

void uvq_connect_params_default(uvq_connect_params *p) {
  memset(p, 0, sizeof(*p));
  p->version = UVQ_CONNECT_PARAMS_VERSION;
}

int uvq_addr_set(uvq_addr *addr, const struct sockaddr *sa, socklen_t len) {
  if (addr == NULL || sa == NULL) {
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  switch (sa->sa_family) {
  case AF_INET:
    if (len < (socklen_t)sizeof(struct sockaddr_in)) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    len = sizeof(struct sockaddr_in);
    break;
  case AF_INET6:
    if (len < (socklen_t)sizeof(struct sockaddr_in6)) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    len = sizeof(struct sockaddr_in6);
    break;
  default:
    return UVQ_ERR_INVALID_ARGUMENT;
  }
  memset(&addr->ss, 0, sizeof(addr->ss));
  memcpy(&addr->ss, sa, len);
  addr->len = len;
  return 0;
}

/* The bytes of a version-1 uvq_settings: every field before quic_versions
 * (version 2 added it and everything after it). */
#define SETTINGS_V1_SIZE offsetof(uvq_settings, quic_versions)
/* Version 3 added quic_lb. */
#define SETTINGS_V2_SIZE offsetof(uvq_settings, quic_lb)

int uvq_settings_copy(uvq_settings *dst, const uvq_settings *src) {
  switch (src->version) {
  case 1:
    /* An older header: only its fields are read; the rest are defaults. */
    uvq_settings_default(dst);
    memcpy(dst, src, SETTINGS_V1_SIZE);
    dst->version = UVQ_SETTINGS_VERSION;
    return 0;
  case 2:
    uvq_settings_default(dst);
    memcpy(dst, src, SETTINGS_V2_SIZE);
    dst->version = UVQ_SETTINGS_VERSION;
    return 0;
  case UVQ_SETTINGS_VERSION:
    *dst = *src;
    return 0;
  default:
    return UVQ_ERR_INVALID_ARGUMENT;
  }
}

int uvq_app_callbacks_ok(const uvq_app_callbacks *cb) {
  return cb != NULL && cb->version >= 1 &&
         cb->version <= UVQ_APP_CALLBACKS_VERSION;
}
