/* uvquic-client --stats-json: one object per connection. */
#include "client/client.h"

/* Adds this connection's object to --stats-json. */
void record_stats(group *g, uvq_conn *conn, const uvq_close_info *ci) {
  uvq_conn_stats st;
  uvq_conn_info info;
  json_t *o = json_object(), *s = json_object(), *cl = json_object();
  char key[300], alpn[64], ver[16];
  const char *cipher = NULL;

  if (o == NULL || s == NULL || cl == NULL) {
    json_decref(o);
    json_decref(s);
    json_decref(cl);
    return;
  }
  uvq_conn_get_stats(conn, &st);
  uvq_conn_get_info(conn, &info);
  group_key(g, key, sizeof(key));
  snprintf(alpn, sizeof(alpn), "%.*s", (int)info.alpnlen,
           info.alpn ? (const char *)info.alpn : "");
  snprintf(ver, sizeof(ver), "0x%08x", info.version);
  cipher = info.cipher;
  json_object_set_new(o, "server", json_string(key));
  json_object_set_new(o, "alpn", json_string(alpn));
  json_object_set_new(o, "version", json_string(ver));
  json_object_set_new(o, "cipher", cipher ? json_string(cipher) : json_null());
  json_object_set_new(o, "handshake_completed",
                      json_boolean(ci->handshake_completed));
  json_object_set_new(o, "retry", json_boolean(g->retry));
  json_object_set_new(o, "resumed", json_boolean(g->resumed));
  json_object_set_new(o, "early_data_attempted",
                      json_boolean(g->early_attempted));
  json_object_set_new(o, "early_data_accepted",
                      json_boolean(g->early == UVQ_EARLY_DATA_ACCEPTED));
  json_object_set_new(o, "key_updates", json_integer(g->key_updates));
  json_object_set_new(o, "migrated", json_boolean(g->migrated));
#define ST(f) json_object_set_new(s, #f, json_integer((json_int_t)st.f))
  ST(latest_rtt);
  ST(min_rtt);
  ST(smoothed_rtt);
  ST(rttvar);
  ST(cwnd);
  /* UINT64_MAX until the first congestion event: no threshold yet. */
  json_object_set_new(s, "ssthresh",
                      st.ssthresh == UINT64_MAX
                          ? json_null()
                          : json_integer((json_int_t)st.ssthresh));
  ST(bytes_in_flight);
  ST(bytes_sent);
  ST(datagrams_sent);
  ST(bytes_received);
  ST(datagrams_received);
  ST(stream_bytes_sent);
  ST(stream_bytes_acked);
  ST(stream_bytes_received);
  ST(handshake_duration);
  ST(max_bandwidth);
  ST(bw_rounds);
  ST(stream_packets_lost);
#undef ST
  json_object_set_new(s, "loss", json_real(st.loss));
  json_object_set_new(o, "stats", s);
  json_object_set_new(
      cl, "error", json_string(ci->error ? uvq_strerror(ci->error) : "none"));
  json_object_set_new(cl, "origin",
                      json_string(ci->origin == UVQ_CLOSE_PEER      ? "peer"
                                  : ci->origin == UVQ_CLOSE_TIMEOUT ? "timeout"
                                                                    : "local"));
  json_object_set_new(
      cl, "type",
      json_string(ci->type == UVQ_CLOSE_TYPE_TRANSPORT     ? "transport"
                  : ci->type == UVQ_CLOSE_TYPE_APPLICATION ? "application"
                                                           : "none"));
  json_object_set_new(cl, "code", json_integer((json_int_t)ci->code));
  json_object_set_new(
      cl, "reason",
      json_stringn(ci->reasonlen ? (const char *)ci->reason : "",
                   ci->reasonlen));
  json_object_set_new(o, "close", cl);
  json_array_append_new(g->c->stats, o);
}

/* Writes --stats-json and frees the array. Returns 0, or -1 (reported). */
int stats_write(client *c) {
  char *text = json_dumps(c->stats, JSON_INDENT(2));
  int rv = 0;

  if (text == NULL ||
      cli_write_atomic(c->stats_json, text, strlen(text), 0644) != 0) {
    fprintf(stderr, "uvquic-client: cannot write %s: %s\n", c->stats_json,
            text ? strerror(errno) : "out of memory");
    rv = -1;
  }
  free(text);
  json_decref(c->stats);
  c->stats = NULL;
  return rv;
}
