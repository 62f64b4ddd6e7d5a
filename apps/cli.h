/* Helpers shared by the uvquic command-line tools (header-only, because
 * each apps/ source file becomes its own executable). */
#ifndef UVQ_APPS_CLI_H
#define UVQ_APPS_CLI_H

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Exit statuses of the tools. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_TRANSFER 1
#define CLI_EXIT_USAGE 2

/*
 * cli_split_hostport splits "HOST:PORT" or "[V6]:PORT" (brackets removed)
 * into |host| and |port|. If the ":PORT" part is missing, |defport| is used
 * (NULL: an error). Returns 0 or -1 (a message is in |err|).
 */
static inline int cli_split_hostport(const char *s, const char *defport,
                                     char *host, size_t hostlen, char *port,
                                     size_t portlen, char *err, size_t errlen) {
  const char *hend, *colon;
  size_t n;

  if (*s == '[') {
    hend = strchr(s, ']');
    if (hend == NULL) {
      snprintf(err, errlen, "unterminated '[' in address \"%s\"", s);
      return -1;
    }
    ++s;
    colon = hend[1] == ':' ? hend + 1 : NULL;
    if (hend[1] != '\0' && colon == NULL) {
      snprintf(err, errlen, "junk after ']' in address \"%s\"", s - 1);
      return -1;
    }
  } else {
    colon = strrchr(s, ':');
    if (colon && strchr(s, ':') != colon) {
      snprintf(err, errlen,
               "IPv6 address \"%s\" must be in brackets: [ADDR]:PORT", s);
      return -1;
    }
    hend = colon ? colon : s + strlen(s);
  }
  n = (size_t)(hend - s);
  if (n == 0 || n >= hostlen) {
    snprintf(err, errlen, "bad host in address \"%s\"", s);
    return -1;
  }
  memcpy(host, s, n);
  host[n] = '\0';
  if (colon == NULL) {
    if (defport == NULL) {
      snprintf(err, errlen, "missing port in address \"%s\"", s);
      return -1;
    }
    snprintf(port, portlen, "%s", defport);
  } else {
    const char *p = colon + 1;
    char *end;
    long v;

    if (*p == '\0' || strlen(p) >= portlen) {
      snprintf(err, errlen, "bad port in address \"%s\"", s);
      return -1;
    }
    v = strtol(p, &end, 10);
    if (*end != '\0' || v < 0 || v > 65535 || p[0] == '-' || p[0] == '+') {
      snprintf(err, errlen, "bad port \"%s\" (0..65535)", p);
      return -1;
    }
    snprintf(port, portlen, "%s", p);
  }
  return 0;
}

/*
 * cli_resolve resolves |host| (a name or an IP literal) and a numeric
 * |port| to the first UDP address getaddrinfo returns. Returns 0 or -1 with
 * a message in |err|.
 */
static inline int cli_resolve(const char *host, const char *port, int passive,
                              struct sockaddr_storage *ss, socklen_t *sslen,
                              char *err, size_t errlen) {
  struct addrinfo hints, *res;
  int rv;

  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  rv = getaddrinfo(host, port, &hints, &res);
  if (rv != 0) {
    snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rv));
    return -1;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *sslen = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/*
 * cli_parse_ms parses a whole number of milliseconds in 1..60000 for
 * option |opt| and returns it in nanoseconds; anything else exits 2.
 */
static inline uint64_t cli_parse_ms(const char *arg, const char *opt) {
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul(arg, &end, 10);
  if (errno || *end || arg[0] == '-' || arg[0] == '\0' || v == 0 || v > 60000) {
    fprintf(stderr, "%s: bad %s \"%s\" (milliseconds, 1..60000)\n",
            program_invocation_short_name, opt, arg);
    exit(CLI_EXIT_USAGE);
  }
  return (uint64_t)v * 1000000u;
}

/*
 * cli_parse_secs parses a duration in seconds (decimals allowed) in
 * (0, |max|] for option |opt| and returns it in nanoseconds; anything else
 * exits 2.
 */
static inline uint64_t cli_parse_secs(const char *arg, const char *opt,
                                      double max) {
  char *end;
  double v;

  errno = 0;
  v = strtod(arg, &end);
  if (errno || *end || arg[0] == '\0' || !(v > 0) || v > max) {
    fprintf(stderr, "%s: bad %s \"%s\" (seconds, up to %.0f)\n",
            program_invocation_short_name, opt, arg, max);
    exit(CLI_EXIT_USAGE);
  }
  return (uint64_t)(v * 1e9);
}

/* cli_format_addr writes "1.2.3.4:443" or "[::1]:443" into |buf|. */
static inline void cli_format_addr(const struct sockaddr *sa, char *buf,
                                   size_t buflen) {
  char host[INET6_ADDRSTRLEN];

  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
    snprintf(buf, buflen, "[%s]:%u", host, ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
    snprintf(buf, buflen, "%s:%u", host, ntohs(s4->sin_port));
  }
}

#endif
