/* Helpers shared by the uvquic command-line tools (cli.c, linked into
 * each of them): host:port parsing, option values, the options every tool
 * takes (CLI_COMMON_OPTIONS), qlog files, atomic writes. */
#ifndef UVQ_APPS_CLI_H
#define UVQ_APPS_CLI_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uvquic/uvquic.h"
#include "uvquic/uvquic_uv.h"

/* Exit statuses of the tools. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_TRANSFER 1
#define CLI_EXIT_USAGE 2

/*
 * cli_split_hostport splits "HOST:PORT" or "[V6]:PORT" (brackets removed)
 * into |host| and |port|. If the ":PORT" part is missing, |defport| is used
 * (NULL: an error). Returns 0 or -1 (a message is in |err|).
 */
int cli_split_hostport(const char *s, const char *defport, char *host,
                       size_t hostlen, char *port, size_t portlen, char *err,
                       size_t errlen);

/*
 * cli_resolve resolves |host| (a name or an IP literal) and a numeric
 * |port| to the first UDP address getaddrinfo returns. Returns 0 or -1 with
 * a message in |err|.
 */
int cli_resolve(const char *host, const char *port, int passive,
                struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                size_t errlen);

/* cli_fail_usage prints "PROGRAM: " and |fmt| with |arg| on stderr and
 * exits 2 (bad command line). */
void cli_fail_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* cli_fail_getopt reports what getopt_long refused (|c| is what it
 * returned: ':' for a missing argument, anything else for an unknown
 * option) and exits 2. */
void cli_fail_getopt(int c, char *const argv[]);

/*
 * cli_parse_ms parses a whole number of milliseconds in 1..60000 for
 * option |opt| and returns it in nanoseconds; anything else exits 2.
 */
uint64_t cli_parse_ms(const char *arg, const char *opt);

/*
 * cli_parse_secs parses a duration in seconds (decimals allowed) in
 * (0, |max|] for option |opt| and returns it in nanoseconds; anything else
 * exits 2.
 */
uint64_t cli_parse_secs(const char *arg, const char *opt, double max);

/* cli_format_addr writes "1.2.3.4:443" or "[::1]:443" into |buf|. */
void cli_format_addr(const struct sockaddr *sa, char *buf, size_t buflen);

/* ------------------------------------------------------------------------ */
/* Options both tools take (transport settings, logging, qlog)              */
/* ------------------------------------------------------------------------ */

/* getopt_long codes of the shared options (above any short option). */
enum {
  CLI_OPT_CC = 0x200,
  CLI_OPT_MAX_DATA,
  CLI_OPT_MAX_STREAM_DATA,
  CLI_OPT_MAX_STREAMS,
  CLI_OPT_IDLE_TIMEOUT,
  CLI_OPT_KEEP_ALIVE,
  CLI_OPT_NO_PMTUD,
  CLI_OPT_DISABLE_MIGRATION,
  CLI_OPT_MAX_UDP_PAYLOAD,
  CLI_OPT_QLOG_DIR,
  CLI_OPT_MAX_CONNECTIONS,
  CLI_OPT_FIRST_TOOL /* each tool numbers its own options from here */
};

/* Laid out by hand: clang-format 14 and 19 disagree on this macro. */
/* clang-format off */
#define CLI_COMMON_OPTIONS \
  {"cc", required_argument, NULL, CLI_OPT_CC}, \
  {"max-data", required_argument, NULL, CLI_OPT_MAX_DATA}, \
  {"max-stream-data", required_argument, NULL, CLI_OPT_MAX_STREAM_DATA}, \
  {"max-streams", required_argument, NULL, CLI_OPT_MAX_STREAMS}, \
  {"idle-timeout", required_argument, NULL, CLI_OPT_IDLE_TIMEOUT}, \
  {"keep-alive", required_argument, NULL, CLI_OPT_KEEP_ALIVE}, \
  {"no-pmtud", no_argument, NULL, CLI_OPT_NO_PMTUD}, \
  {"disable-migration", no_argument, NULL, CLI_OPT_DISABLE_MIGRATION}, \
  {"max-udp-payload", required_argument, NULL, CLI_OPT_MAX_UDP_PAYLOAD}, \
  {"qlog-dir", required_argument, NULL, CLI_OPT_QLOG_DIR}, \
  {"max-connections", required_argument, NULL, CLI_OPT_MAX_CONNECTIONS}, \
  {"verbose", no_argument, NULL, 'v'}
/* clang-format on */

#define CLI_COMMON_USAGE                                                       \
  "  --cc reno|cubic|bbr        congestion controller (default cubic)\n"       \
  "  --max-data BYTES           connection flow-control window we grant\n"     \
  "  --max-stream-data BYTES    per-stream flow-control window we grant\n"     \
  "  --max-streams N            bidi and uni streams the peer may open\n"      \
  "  --idle-timeout SECONDS     idle timeout (default 30)\n"                   \
  "  --keep-alive MS            PING interval (default off)\n"                 \
  "  --no-pmtud                 no path MTU discovery\n"                       \
  "  --disable-migration        forbid the peer from migrating\n"              \
  "  --max-udp-payload N|auto   largest UDP payload we send (1200..65527;\n"   \
  "                             default auto: the link's MTU, at most "        \
  "16384)\n"                                                                   \
  "  --max-connections N        connections at once (default 10000; 0 = no\n"  \
  "                             limit)\n"                                      \
  "  -v, -vv                    log connection lifecycle (info) or ngtcp2's\n" \
  "                             trace (debug) to stderr, with the SCID\n"      \
  "  --qlog-dir DIR             one qlog (JSON-SEQ) per connection, named\n"   \
  "                             ODCID-ROLE.sqlog (default off). A client\n"    \
  "                             then refuses server transport parameters\n"    \
  "                             too large for ngtcp2 1.11's qlog writer\n"     \
  "                             (CVE-2026-40170)\n"

/* cli_parse_u64 parses a whole number in [min, max] for |opt|; else exit 2. */
uint64_t cli_parse_u64(const char *arg, const char *opt, uint64_t min,
                       uint64_t max);

/*
 * cli_parse_quic_version parses a QUIC version name for option |opt|: "v1"
 * or "v2" (as gtlsclient -v takes them), or the hex number
 * ("0x00000001", "0x6b3343cf"). Anything else exits 2, naming it.
 */
uint32_t cli_parse_quic_version(const char *arg, const char *opt);

/*
 * cli_parse_quic_versions parses a comma-separated list of version names
 * for |opt| ("v2,v1": most preferred first) into st->quic_versions. An
 * empty entry, an unknown name, a version given twice or more than
 * UVQ_MAX_VERSIONS entries exits 2.
 */
void cli_parse_quic_versions(const char *arg, const char *opt,
                             uvq_settings *st);

/* cli_quic_version_name: "v1", "v2", or NULL for another version. */
const char *cli_quic_version_name(uint32_t v);

/* The shared state of the logging and qlog options. */
typedef struct cli_common {
  int verbose;
  const char *qlog_dir;
  /* "server" or "client": the second half of qlog file names. */
  const char *role;
  /* Open qlog files, by connection. */
  struct cli_qlog *qlogs;
  unsigned long qlog_seq;
  int max_connections_set; /* --max-connections was given */
} cli_common;

/*
 * cli_common_opt applies shared option |c| (with |arg|) to |st| and |cc|.
 * Returns 1 if |c| was one of them, 0 if not; a bad value exits 2.
 */
int cli_common_opt(int c, const char *arg, uvq_settings *st, cli_common *cc);

/* One connection's qlog file. */
typedef struct cli_qlog {
  uvq_conn *conn;
  FILE *f;
  struct cli_qlog *next;
} cli_qlog;

/* cli_common_apply puts logging and qlog into |st| (after option parsing). */
void cli_common_apply(cli_common *cc, uvq_settings *st);

/* Closes the qlog files of connections that never finished their trace. */
void cli_common_free(cli_common *cc);

/*
 * cli_write_atomic writes |len| bytes of |data| to |path| through a
 * temporary file in the same directory renamed over it, so readers see
 * the old contents or the new, never a part. Returns 0 or -1 (errno set).
 */
int cli_write_atomic(const char *path, const void *data, size_t len, int mode);

/*
 * cli_uv_config fills |cfg| with the adapter's defaults and the
 * environment's overrides: UVQ_UV_NO_GSO and UVQ_UV_NO_GRO set to anything
 * but "" or "0" turn GSO / GRO off (for troubleshooting a kernel or NIC).
 */
void cli_uv_config(uvq_uv_config *cfg);

/*
 * cli_prometheus_label returns a new copy (malloc) of Prometheus text
 * |text| in which every sample carries the label |lab| (name="value")
 * first, and HELP / TYPE lines only if |comments| is nonzero (when texts
 * of several sources are joined, each family must be described once).
 * NULL without memory.
 */
char *cli_prometheus_label(const char *text, const char *lab, int comments);

/* cli_hex writes |len| bytes as lowercase hex into |out| (2*len+1). */
void cli_hex(char *out, const uint8_t *in, size_t len);

/*
 * cli_keys_save writes |keys| (uvq_keys_format) to the key file |path|
 * with mode 0600: to a temporary file in the same directory, flushed to
 * disk, then renamed over |path|, so readers see the old file or the new
 * one, never a part. Returns 0, UVQ_ERR_INVALID_ARGUMENT or UVQ_ERR_IO
 * (errno set); on error a one-line reason goes to |err|.
 */
int cli_keys_save(const uvq_keys *keys, const char *path, char *err,
                  size_t errlen);

/*
 * cli_keys_load reads the key file |path| into |keys| (uvq_keys_parse). It
 * refuses a file that its group or other users may read or write (mode
 * 0600 or stricter only), checked on the open file. Returns 0,
 * UVQ_ERR_INVALID_ARGUMENT, UVQ_ERR_IO (cannot open or read) or
 * UVQ_ERR_KEY_FILE (permissions, size or contents); on error a one-line
 * reason naming the file goes to |err|. |keys| is untouched on error.
 */
int cli_keys_load(uvq_keys *keys, const char *path, char *err, size_t errlen);

/*
 * cli_keylog_from_env honours SSLKEYLOGFILE for the tool (the library
 * ignores it): if the variable names a file, it is opened for appending
 * (created with mode 0600) and tcfg->keylog appends each NSS key log line
 * to it with one write(2), which O_APPEND keeps whole. The file stays open
 * until the process exits. Returns 0 (also when the variable is unset or
 * empty: no key log), or -1 with a message in |err|.
 */
int cli_keylog_from_env(uvq_tls_config *tcfg, char *err, size_t errlen);

#endif
