/*
 * Client: what the server's NewSessionTicket allows. A client may offer
 * early data only on a ticket whose NewSessionTicket carried an early_data
 * extension (RFC 8446 §4.2.10, §4.6.1; RFC 9001 §4.6.1). GnuTLS 3.7 does
 * not tell: its client keeps max_early_data_size at its default UINT32_MAX
 * when a ticket has no such extension (lib/tls13/session_ticket.c only
 * overwrites it when one is present), and offers early data on any ticket
 * when the session has GNUTLS_ENABLE_EARLY_DATA. So the connection follows
 * the server's post-handshake CRYPTO stream (1-RTT: only NewSessionTicket
 * messages in QUIC, RFC 9001 §4.1.3) itself, as it is delivered in order,
 * field by field and without buffering.
 */
#ifndef UVQ_CORE_TICKET_SCAN_H
#define UVQ_CORE_TICKET_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct uvq_ticket_scan {
  uint32_t need;     /* bytes left of the field being read */
  uint32_t acc;      /* a numeric field's value so far */
  uint32_t msg_left; /* bytes left of the current message's body */
  uint32_t ext_left; /* bytes left of its extensions block */
  uint16_t ext_type; /* the extension being read */
  uint8_t state;
  uint8_t early;  /* the current ticket has early_data with a size > 0 */
  uint8_t broken; /* the stream did not parse: nothing is granted */
  /* The latest complete NewSessionTicket granted early data. */
  uint8_t granted;
  /* NewSessionTicket messages read whole. */
  uint32_t tickets;
} uvq_ticket_scan;

/* uvq_ticket_scan_init readies |ts| for the start of a CRYPTO stream. */
void uvq_ticket_scan_init(uvq_ticket_scan *ts);

/*
 * uvq_ticket_scan_feed reads the next |len| bytes of the stream. Messages
 * other than NewSessionTicket are skipped. A message that does not parse
 * (a field longer than its message, an early_data extension that is not
 * 4 bytes) stops the scan for good with |granted| 0: GnuTLS fails the
 * connection on it anyway.
 */
void uvq_ticket_scan_feed(uvq_ticket_scan *ts, const uint8_t *data, size_t len);

#endif
