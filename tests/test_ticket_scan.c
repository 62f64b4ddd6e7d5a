/*
 * The NewSessionTicket scanner (core/ticket_scan.c): whether the latest
 * ticket in a post-handshake CRYPTO stream grants early data, however the
 * stream is cut into pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "core/ticket_scan.h"

typedef struct msg {
  uint8_t b[512];
  size_t len;
} msg;

static void put(msg *m, uint64_t v, size_t n) {
  for (size_t i = n; i-- > 0;) {
    m->b[m->len++] = (uint8_t)(v >> (8 * i));
  }
}

/* A NewSessionTicket with a |ticketlen|-byte ticket and, if |early| >= 0,
 * an early_data extension with max_early_data_size |early|; |pad| adds a
 * padding-like extension (type 0xfafa) of that many bytes before it. */
static msg nst(size_t ticketlen, int64_t early, size_t pad) {
  msg m = {0};
  size_t exts = (pad ? 4 + pad : 0) + (early >= 0 ? 8 : 0);
  size_t body = 4 + 4 + 1 + 3 + 2 + ticketlen + 2 + exts;
  put(&m, 4, 1);
  put(&m, body, 3);
  put(&m, 7200, 4);       /* lifetime */
  put(&m, 0x12345678, 4); /* age_add */
  put(&m, 3, 1);          /* nonce */
  put(&m, 0xabcdef, 3);
  put(&m, ticketlen, 2);
  for (size_t i = 0; i < ticketlen; i++) {
    put(&m, 0x42, 1); /* an early_data type inside the ticket: ignored */
  }
  put(&m, exts, 2);
  if (pad) {
    put(&m, 0xfafa, 2);
    put(&m, pad, 2);
    for (size_t i = 0; i < pad; i++) {
      put(&m, 0, 1);
    }
  }
  if (early >= 0) {
    put(&m, 42, 2);
    put(&m, 4, 2);
    put(&m, (uint64_t)early, 4);
  }
  return m;
}

static msg cat(const msg *a, const msg *b) {
  msg m = *a;
  memcpy(m.b + m.len, b->b, b->len);
  m.len += b->len;
  return m;
}

/* Feeds |m| in pieces of |step| bytes (0: whole). */
static uvq_ticket_scan scan(const msg *m, size_t step) {
  uvq_ticket_scan ts;
  uvq_ticket_scan_init(&ts);
  if (step == 0) {
    uvq_ticket_scan_feed(&ts, m->b, m->len);
    return ts;
  }
  for (size_t off = 0; off < m->len; off += step) {
    size_t n = m->len - off < step ? m->len - off : step;
    uvq_ticket_scan_feed(&ts, m->b + off, n);
  }
  return ts;
}

static const size_t steps[] = {0, 1, 2, 3, 5, 7, 64};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

static void test_ticket_scan_grants(void **state) {
  (void)state;
  for (size_t i = 0; i < NSTEPS; i++) {
    msg m = nst(100, 0xffffffff, 0);
    uvq_ticket_scan ts = scan(&m, steps[i]);
    assert_int_equal(ts.broken, 0);
    assert_int_equal(ts.tickets, 1);
    assert_int_equal(ts.granted, 1);
    /* After another extension; and any size above 0 counts. */
    m = nst(33, 16384, 9);
    ts = scan(&m, steps[i]);
    assert_int_equal(ts.tickets, 1);
    assert_int_equal(ts.granted, 1);
  }
}

static void test_ticket_scan_no_grant(void **state) {
  (void)state;
  for (size_t i = 0; i < NSTEPS; i++) {
    msg none = nst(100, -1, 0);
    msg padded = nst(100, -1, 5);
    msg zero = nst(100, 0, 0);
    uvq_ticket_scan ts = scan(&none, steps[i]);
    assert_int_equal(ts.broken, 0);
    assert_int_equal(ts.tickets, 1);
    assert_int_equal(ts.granted, 0);
    ts = scan(&padded, steps[i]);
    assert_int_equal(ts.tickets, 1);
    assert_int_equal(ts.granted, 0);
    ts = scan(&zero, steps[i]);
    assert_int_equal(ts.tickets, 1);
    assert_int_equal(ts.granted, 0);
  }
}

/* The latest whole ticket decides; a ticket still arriving does not. */
static void test_ticket_scan_latest_ticket(void **state) {
  msg yes = nst(80, 0xffffffff, 0), no = nst(80, -1, 0);
  msg yes_no = cat(&yes, &no), no_yes = cat(&no, &yes);
  uvq_ticket_scan ts;
  (void)state;
  for (size_t i = 0; i < NSTEPS; i++) {
    ts = scan(&yes_no, steps[i]);
    assert_int_equal(ts.tickets, 2);
    assert_int_equal(ts.granted, 0);
    ts = scan(&no_yes, steps[i]);
    assert_int_equal(ts.tickets, 2);
    assert_int_equal(ts.granted, 1);
  }
  uvq_ticket_scan_init(&ts);
  uvq_ticket_scan_feed(&ts, yes.b, yes.len);
  uvq_ticket_scan_feed(&ts, no.b, no.len - 1);
  assert_int_equal(ts.tickets, 1);
  assert_int_equal(ts.granted, 1);
  uvq_ticket_scan_feed(&ts, no.b + no.len - 1, 1);
  assert_int_equal(ts.tickets, 2);
  assert_int_equal(ts.granted, 0);
}

/* Other handshake messages are skipped whole. */
static void test_ticket_scan_other_messages(void **state) {
  msg other = {0}, yes = nst(10, 0xffffffff, 0), m;
  (void)state;
  put(&other, 24, 1); /* key_update */
  put(&other, 1, 3);
  put(&other, 42, 1);
  m = cat(&other, &yes);
  uvq_ticket_scan ts = scan(&m, 1);
  assert_int_equal(ts.tickets, 1);
  assert_int_equal(ts.granted, 1);
}

/* A stream that does not parse grants nothing, ever after. */
static void test_ticket_scan_malformed(void **state) {
  (void)state;
  for (size_t i = 0; i < NSTEPS; i++) {
    /* The extensions block says more than the message holds. */
    msg m = nst(20, 0xffffffff, 0);
    m.b[4 + 4 + 4 + 4 + 2 + 20] = 0x10;
    uvq_ticket_scan ts = scan(&m, steps[i]);
    assert_int_equal(ts.broken, 1);
    assert_int_equal(ts.granted, 0);
    /* early_data of 3 bytes. */
    m = nst(20, 0xffffffff, 0);
    m.b[m.len - 5] = 3;
    ts = scan(&m, steps[i]);
    assert_int_equal(ts.broken, 1);
    assert_int_equal(ts.granted, 0);
    /* A granting ticket, then a broken one: nothing granted. */
    msg yes = nst(20, 0xffffffff, 0), bad = nst(20, -1, 0);
    bad.b[3] = (uint8_t)(bad.b[3] - 1); /* body one byte short */
    m = cat(&yes, &bad);
    ts = scan(&m, steps[i]);
    assert_int_equal(ts.broken, 1);
    assert_int_equal(ts.granted, 0);
    uvq_ticket_scan_feed(&ts, yes.b, yes.len);
    assert_int_equal(ts.granted, 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ticket_scan_grants),
      cmocka_unit_test(test_ticket_scan_no_grant),
      cmocka_unit_test(test_ticket_scan_latest_ticket),
      cmocka_unit_test(test_ticket_scan_other_messages),
      cmocka_unit_test(test_ticket_scan_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
