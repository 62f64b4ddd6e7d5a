/*
 * The libuv adapter's interface-MTU table (src/uv/ifmtu.c), which answers
 * the core's path_mtu callback: lookups by exact address and by subnet,
 * the wildcard, reloads (stale table, unknown address, rate-limited), and
 * the host's real table (loopback).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "uv/ifmtu.h"

typedef struct fake_host {
  uvq_ifmtu_entry e[4];
  size_t n;
} fake_host;

static size_t fake_load(uvq_ifmtu_entry *e, size_t cap, void *arg) {
  fake_host *h = arg;
  size_t n = h->n < cap ? h->n : cap;
  memcpy(e, h->e, n * sizeof(*e));
  return n;
}

static void v4_entry(uvq_ifmtu_entry *e, const char *addr, const char *mask,
                     size_t mtu) {
  memset(e, 0, sizeof(*e));
  e->family = AF_INET;
  assert_int_equal(inet_pton(AF_INET, addr, e->addr), 1);
  assert_int_equal(inet_pton(AF_INET, mask, e->mask), 1);
  e->mtu = mtu;
}

static uvq_addr v4(const char *s) {
  struct sockaddr_in sin = {0};
  uvq_addr a;
  sin.sin_family = AF_INET;
  sin.sin_port = htons(443);
  assert_int_equal(inet_pton(AF_INET, s, &sin.sin_addr), 1);
  assert_int_equal(uvq_addr_set(&a, (const struct sockaddr *)&sin, sizeof(sin)),
                   0);
  return a;
}

static uvq_addr v6(const char *s) {
  struct sockaddr_in6 sin6 = {0};
  uvq_addr a;
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(443);
  assert_int_equal(inet_pton(AF_INET6, s, &sin6.sin6_addr), 1);
  assert_int_equal(
      uvq_addr_set(&a, (const struct sockaddr *)&sin6, sizeof(sin6)), 0);
  return a;
}

static void v6_entry(uvq_ifmtu_entry *e, const char *addr, unsigned prefix,
                     size_t mtu) {
  unsigned i;
  memset(e, 0, sizeof(*e));
  e->family = AF_INET6;
  assert_int_equal(inet_pton(AF_INET6, addr, e->addr), 1);
  for (i = 0; i < prefix; i++) {
    e->mask[i / 8] |= (uint8_t)(0x80u >> (i % 8));
  }
  e->mtu = mtu;
}

/* IPv6: ::1/128 and a jumbo /64; an interface below 1500 is never
 * raised. */
static void test_ifmtu_ipv6_and_small_links(void **state) {
  fake_host h = {0};
  uvq_ifmtu t = {0};
  uvq_addr a, r;
  (void)state;
  v6_entry(&h.e[0], "::1", 128, 65536);
  v6_entry(&h.e[1], "2001:db8::1", 64, 9000);
  v4_entry(&h.e[2], "10.0.0.5", "255.255.255.0", 1400);
  h.n = 3;
  t.load = fake_load;
  t.load_arg = &h;
  a = v6("::1");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1000), 65536);
  a = v6("2001:db8::1");
  r = v6("2001:db8::2");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 9000);
  r = v6("2001:db8:1::2");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 1500);
  a = v4("10.0.0.5"); /* a tunnel's 1400 stays 1400 beyond the subnet */
  r = v4("192.0.2.1");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 1400);
  a = v6("::");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1000), 0);
  assert_int_equal(t.loads, 1);
}

static void test_ifmtu_lookup_and_reload(void **state) {
  fake_host h = {0};
  uvq_ifmtu t = {0};
  uvq_addr a, r;
  (void)state;
  v4_entry(&h.e[0], "127.0.0.1", "255.0.0.0", 65536);
  v4_entry(&h.e[1], "192.0.2.10", "255.255.255.0", 9000);
  h.n = 2;
  t.load = fake_load;
  t.load_arg = &h;

  /* Exact, then by subnet (127.0.0.2 is on lo's 127/8), to a peer on the
   * same subnet. */
  a = v4("192.0.2.10");
  r = v4("192.0.2.77");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 9000);
  a = v4("127.0.0.2");
  r = v4("127.0.0.1");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 65536);
  assert_int_equal(t.loads, 1);
  /* A peer beyond a router (off the subnet), or of the other family: the
   * jumbo link is only the first hop, so at most 1500. */
  a = v4("192.0.2.10");
  r = v4("198.51.100.1");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 1500);
  a = v4("127.0.0.1"); /* a service address on lo, a peer elsewhere */
  r = v4("203.0.113.5");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 1500);
  r = v6("::1");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &r, 1000), 1500);
  assert_int_equal(t.loads, 1);
  /* The wildcard names no interface, and reads nothing. */
  a = v4("0.0.0.0");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1000), 0);
  assert_int_equal(t.loads, 1);

  /* An address the host lacks: unknown, and the table is read again at
   * most once a UVQ_IFMTU_RETRY_MS, so a flood of them costs nothing. */
  a = v4("198.51.100.7");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1500), 0);
  assert_int_equal(t.loads, 1);
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1000 + UVQ_IFMTU_RETRY_MS), 0);
  assert_int_equal(t.loads, 2);
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1100 + UVQ_IFMTU_RETRY_MS), 0);
  assert_int_equal(t.loads, 2);
  /* An interface that came up is found on the next allowed read. */
  v4_entry(&h.e[2], "198.51.100.7", "255.255.255.255", 1500);
  h.n = 3;
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1000 + 2 * UVQ_IFMTU_RETRY_MS),
                   1500);
  assert_int_equal(t.loads, 3);

  /* A known address is served from the table until it is stale. */
  h.e[1].mtu = 1500;
  a = v4("192.0.2.10");
  assert_int_equal(uvq_ifmtu_get(&t, &a, &a, 1000 + 3 * UVQ_IFMTU_RETRY_MS),
                   9000);
  assert_int_equal(
      uvq_ifmtu_get(&t, &a, &a,
                    1000 + 2 * UVQ_IFMTU_RETRY_MS + UVQ_IFMTU_TTL_MS),
      1500);
  assert_int_equal(t.loads, 4);
}

/* The host's own table: loopback is there, with lo's MTU (65536 on
 * Linux by default; at least 1280 anywhere). */
static void test_ifmtu_host_loopback(void **state) {
  uvq_ifmtu t = {0};
  uvq_addr a = v4("127.0.0.1");
  size_t mtu;
  (void)state;
  mtu = uvq_ifmtu_get(&t, &a, &a, 5000);
  print_message("# lo MTU %zu\n", mtu);
  assert_true(mtu >= 1280);
  assert_int_equal(t.loads, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ifmtu_lookup_and_reload),
      cmocka_unit_test(test_ifmtu_ipv6_and_small_links),
      cmocka_unit_test(test_ifmtu_host_loopback),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
