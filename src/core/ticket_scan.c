/*
 * Client: follows the server's post-handshake handshake messages to learn
 * whether its latest NewSessionTicket grants early data (ticket_scan.h).
 *
 *   Handshake  = u8 msg_type | u24 length | body
 *   NewSessionTicket body (RFC 8446 §4.6.1) = u32 ticket_lifetime |
 *     u32 ticket_age_add | u8 n, n bytes nonce | u16 t, t bytes ticket |
 *     u16 e, e bytes extensions (u16 type | u16 len | len bytes each)
 *   early_data (42) in a NewSessionTicket = u32 max_early_data_size
 */
#include "core/ticket_scan.h"

#include <string.h>

#define HS_NEW_SESSION_TICKET 4
#define EXT_EARLY_DATA 42

enum {
  TS_TYPE,       /* u8, message type */
  TS_LEN,        /* u24, body length */
  TS_SKIP,       /* the body of another message */
  TS_LIFETIME,   /* u32 */
  TS_AGE_ADD,    /* u32 */
  TS_NONCE_LEN,  /* u8 */
  TS_NONCE,      /* skipped */
  TS_TICKET_LEN, /* u16 */
  TS_TICKET,     /* skipped */
  TS_EXTS_LEN,   /* u16 */
  TS_EXT_TYPE,   /* u16 */
  TS_EXT_LEN,    /* u16 */
  TS_EXT_BODY,   /* skipped */
  TS_EARLY_SIZE  /* u32, max_early_data_size */
};

void uvq_ticket_scan_init(uvq_ticket_scan *ts) {
  memset(ts, 0, sizeof(*ts));
  ts->state = TS_TYPE;
  ts->need = 1;
}

static int skipped(uint8_t state) {
  return state == TS_SKIP || state == TS_NONCE || state == TS_TICKET ||
         state == TS_EXT_BODY;
}

static int in_body(uint8_t state) {
  return state != TS_TYPE && state != TS_LEN && state != TS_SKIP;
}

static int in_exts(uint8_t state) { return state >= TS_EXT_TYPE; }

/* Starts reading field |state| of |n| bytes; within a ticket the field
 * must fit in what is left of its message (and of its extensions). */
static void expect(uvq_ticket_scan *ts, uint8_t state, uint32_t n) {
  if ((in_body(state) && n > ts->msg_left) ||
      (in_exts(state) && n > ts->ext_left)) {
    ts->broken = 1;
    return;
  }
  ts->state = state;
  ts->need = n;
  ts->acc = 0;
}

static void next_message(uvq_ticket_scan *ts) { expect(ts, TS_TYPE, 1); }

static void ticket_done(uvq_ticket_scan *ts) {
  ts->granted = ts->early;
  ts->tickets++;
  next_message(ts);
}

/* After an extension: the next one, or the end of the ticket (the
 * extensions block ends the message). */
static void next_extension(uvq_ticket_scan *ts) {
  if (ts->ext_left == 0) {
    ticket_done(ts);
  } else {
    expect(ts, TS_EXT_TYPE, 2);
  }
}

/* The field in ts->state is read whole (its value in ts->acc). */
static void field_done(uvq_ticket_scan *ts) {
  uint32_t v = ts->acc;

  switch (ts->state) {
  case TS_TYPE:
    /* The type is kept in ext_type until the length is known. */
    ts->ext_type = (uint16_t)v;
    expect(ts, TS_LEN, 3);
    break;
  case TS_LEN:
    ts->msg_left = v;
    if (ts->ext_type != HS_NEW_SESSION_TICKET) {
      if (v == 0) {
        next_message(ts);
      } else {
        expect(ts, TS_SKIP, v);
      }
      break;
    }
    ts->early = 0;
    expect(ts, TS_LIFETIME, 4);
    break;
  case TS_SKIP:
    next_message(ts);
    break;
  case TS_LIFETIME:
    expect(ts, TS_AGE_ADD, 4);
    break;
  case TS_AGE_ADD:
    expect(ts, TS_NONCE_LEN, 1);
    break;
  case TS_NONCE_LEN:
    if (v == 0) {
      expect(ts, TS_TICKET_LEN, 2);
    } else {
      expect(ts, TS_NONCE, v);
    }
    break;
  case TS_NONCE:
    expect(ts, TS_TICKET_LEN, 2);
    break;
  case TS_TICKET_LEN:
    if (v == 0) {
      expect(ts, TS_EXTS_LEN, 2);
    } else {
      expect(ts, TS_TICKET, v);
    }
    break;
  case TS_TICKET:
    expect(ts, TS_EXTS_LEN, 2);
    break;
  case TS_EXTS_LEN:
    /* The extensions are the message's last field. */
    if (v != ts->msg_left) {
      ts->broken = 1;
      break;
    }
    ts->ext_left = v;
    next_extension(ts);
    break;
  case TS_EXT_TYPE:
    ts->ext_type = (uint16_t)v;
    expect(ts, TS_EXT_LEN, 2);
    break;
  case TS_EXT_LEN:
    if (ts->ext_type == EXT_EARLY_DATA) {
      if (v != 4) {
        ts->broken = 1;
        break;
      }
      expect(ts, TS_EARLY_SIZE, 4);
    } else if (v == 0) {
      next_extension(ts);
    } else {
      expect(ts, TS_EXT_BODY, v);
    }
    break;
  case TS_EXT_BODY:
    next_extension(ts);
    break;
  case TS_EARLY_SIZE:
    /* RFC 9001 §4.6.1 wants 0xffffffff; any nonzero size grants it. */
    ts->early = v != 0;
    next_extension(ts);
    break;
  default:
    ts->broken = 1;
    break;
  }
}

void uvq_ticket_scan_feed(uvq_ticket_scan *ts, const uint8_t *data,
                          size_t len) {
  while (len > 0 && !ts->broken) {
    uint32_t take = len < ts->need ? (uint32_t)len : ts->need;

    if (!skipped(ts->state)) {
      for (uint32_t i = 0; i < take; i++) {
        ts->acc = ts->acc << 8 | data[i];
      }
    }
    if (in_body(ts->state)) {
      ts->msg_left -= take;
    }
    if (in_exts(ts->state)) {
      ts->ext_left -= take;
    }
    ts->need -= take;
    data += take;
    len -= take;
    if (ts->need == 0) {
      field_done(ts);
    }
  }
  if (ts->broken) {
    ts->granted = 0;
  }
}
