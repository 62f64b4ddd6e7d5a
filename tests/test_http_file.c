/*
 * The HTTP semantics of static files (src/app/http_file.c), shared by the
 * HTTP/3 side of uvquic-server and hq-interop: percent-decoding, path
 * resolution beneath a root (index.html, the trailing-slash redirect, the
 * listing), the media-types parser, HTTP dates, entity tags and the
 * conditional and Range evaluation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/http_file.h"

static char ROOT[64];

static void put(const char *rel, const char *text) {
  char p[256];
  FILE *f;

  snprintf(p, sizeof(p), "%s/%s", ROOT, rel);
  f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void mkd(const char *rel) {
  char p[256];

  snprintf(p, sizeof(p), "%s/%s", ROOT, rel);
  assert_int_equal(mkdir(p, 0755), 0);
}

static int group_setup(void **state) {
  (void)state;
  strcpy(ROOT, "/tmp/uvq_test_http_file.XXXXXX");
  if (mkdtemp(ROOT) == NULL) {
    return -1;
  }
  put("a.txt", "hello\n");
  put("sp ace.html", "<p>\n");
  mkd("dir");
  put("dir/index.html", "<h1>\n");
  mkd("empty");
  mkd("list");
  put("list/b&<x>.txt", "b\n");
  put("list/a b.css", "a\n");
  put("list/.hidden", "h\n");
  mkd("list/sub");
  return 0;
}

static int group_teardown(void **state) {
  char cmd[128];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ROOT);
  return system(cmd) == 0 ? 0 : -1;
}

static int decode(const char *in, char *out, size_t outlen) {
  return uvq_http_decode_path(in, strlen(in), out, outlen);
}

static void test_http_file_decode(void **state) {
  char out[64];
  (void)state;

  assert_int_equal(decode("/a%20b", out, sizeof(out)), 4);
  assert_string_equal(out, "/a b");
  assert_int_equal(decode("/x.html?q=%zz#f", out, sizeof(out)), 7);
  assert_string_equal(out, "/x.html");
  assert_int_equal(decode("/x#f?y", out, sizeof(out)), 2);
  assert_string_equal(out, "/x");
  assert_int_equal(decode("/%c3%A9", out, sizeof(out)), 3);
  assert_string_equal(out, "/\xc3\xa9");
  assert_int_equal(decode("/", out, sizeof(out)), 1);
  /* Refused: encoded '/', NUL, bad or cut escapes, no leading '/'. */
  assert_int_equal(decode("/a%2fb", out, sizeof(out)), -1);
  assert_int_equal(decode("/a%2Fb", out, sizeof(out)), -1);
  assert_int_equal(decode("/a%00", out, sizeof(out)), -1);
  assert_int_equal(decode("/a%g1", out, sizeof(out)), -1);
  assert_int_equal(decode("/a%1", out, sizeof(out)), -1);
  assert_int_equal(decode("/a%", out, sizeof(out)), -1);
  assert_int_equal(decode("a", out, sizeof(out)), -1);
  assert_int_equal(decode("", out, sizeof(out)), -1);
  assert_int_equal(uvq_http_decode_path("/a\0b", 4, out, sizeof(out)), -1);
  /* Too long for the buffer: refused, not cut. */
  assert_int_equal(decode("/abcdef", out, 7), -1);
  assert_int_equal(decode("/abcde", out, 7), 6);

  assert_true(uvq_http_path_has_dotdot("/a/../b"));
  assert_true(uvq_http_path_has_dotdot("/.."));
  assert_true(uvq_http_path_has_dotdot("/a/.."));
  assert_false(uvq_http_path_has_dotdot("/a/..b/c"));
  assert_false(uvq_http_path_has_dotdot("/...")); /* a name */
}

static uvq_http_resolve_status resolve(uvq_fileserve *fs, const char *t,
                                       unsigned int flags,
                                       uvq_http_resolved *res) {
  uvq_http_resolve_status rs = uvq_http_resolve(fs, t, strlen(t), flags, res);

  if (rs == UVQ_HTTP_FILE || rs == UVQ_HTTP_LISTING) {
    assert_true(res->fd >= 0);
    close(res->fd);
  } else {
    assert_int_equal(res->fd, -1);
  }
  return rs;
}

static void test_http_file_resolve(void **state) {
  static uvq_http_resolved res;
  uvq_fileserve fs;
  int mode;
  (void)state;

  /* Both resolvers: openat2 and the component-by-component one. */
  for (mode = 0; mode < 2; ++mode) {
    assert_int_equal(uvq_fileserve_init(&fs, ROOT,
                                        mode ? UVQ_FILESERVE_NO_OPENAT2 : 0,
                                        NULL, 0),
                     0);
    assert_int_equal(resolve(&fs, "/a.txt?x=1", 0, &res), UVQ_HTTP_FILE);
    assert_int_equal(res.st.st_size, 6);
    assert_string_equal(res.path, "/a.txt");
    assert_int_equal(resolve(&fs, "/sp%20ace.html", 0, &res), UVQ_HTTP_FILE);
    assert_string_equal(res.path, "/sp ace.html");
    assert_int_equal(resolve(&fs, "/dir/", 0, &res), UVQ_HTTP_FILE);
    assert_string_equal(res.path, "/dir/index.html");
    assert_int_equal(res.st.st_size, 5);
    /* No slash: 308 to the slash form, query kept, fragment dropped. */
    assert_int_equal(resolve(&fs, "/dir?a=1#f", 0, &res), UVQ_HTTP_REDIRECT);
    assert_string_equal(res.location, "/dir/?a=1");
    assert_int_equal(resolve(&fs, "/d%69r", 0, &res), UVQ_HTTP_REDIRECT);
    assert_string_equal(res.location, "/d%69r/");
    assert_int_equal(resolve(&fs, "/dir", UVQ_HTTP_NO_REDIRECT, &res),
                     UVQ_HTTP_FILE);
    assert_string_equal(res.path, "/dir/index.html");
    assert_int_equal(resolve(&fs, "/empty/", 0, &res), UVQ_HTTP_NOT_FOUND);
    assert_int_equal(resolve(&fs, "/empty/", UVQ_HTTP_AUTOINDEX, &res),
                     UVQ_HTTP_LISTING);
    assert_int_equal(resolve(&fs, "/", 0, &res), UVQ_HTTP_NOT_FOUND);
    assert_int_equal(resolve(&fs, "/nope", 0, &res), UVQ_HTTP_NOT_FOUND);
    assert_int_equal(resolve(&fs, "/a.txt/", 0, &res), UVQ_HTTP_NOT_FOUND);
    assert_int_equal(resolve(&fs, "/a%2ftxt", 0, &res), UVQ_HTTP_BAD_REQUEST);
    /* ".." is checked after decoding, even where it stays inside. */
    assert_int_equal(resolve(&fs, "/dir/%2e%2e/a.txt", 0, &res),
                     UVQ_HTTP_FORBIDDEN);
    assert_int_equal(resolve(&fs, "/dir/../a.txt", 0, &res),
                     UVQ_HTTP_FORBIDDEN);
    assert_int_equal(resolve(&fs, "//etc/passwd", 0, &res), UVQ_HTTP_FORBIDDEN);
    uvq_fileserve_free(&fs);
  }
}

static void test_http_file_autoindex(void **state) {
  static uvq_http_resolved res;
  uvq_fileserve fs;
  char *body, esc[64];
  size_t len;
  (void)state;

  assert_int_equal(uvq_fileserve_init(&fs, ROOT, 0, NULL, 0), 0);
  assert_int_equal(uvq_http_resolve(&fs, "/list/", 6, UVQ_HTTP_AUTOINDEX, &res),
                   UVQ_HTTP_LISTING);
  assert_int_equal(uvq_http_autoindex(res.fd, res.path, &body, &len), 0);
  close(res.fd);
  assert_int_equal(strlen(body), len);
  /* Sorted, escaped in text and in links, dot files left out,
   * directories with their slash. */
  assert_non_null(strstr(body, "<a href=\"a%20b.css\">a b.css</a>"));
  assert_non_null(
      strstr(body, "<a href=\"b%26%3Cx%3E.txt\">b&amp;&lt;x&gt;.txt</a>"));
  assert_non_null(strstr(body, "<a href=\"sub/\">sub/</a>"));
  assert_true(strstr(body, "a b.css") < strstr(body, "b&amp;"));
  assert_null(strstr(body, "hidden"));
  assert_null(strstr(body, "<x>"));
  free(body);
  uvq_fileserve_free(&fs);

  assert_int_equal(uvq_http_html_escape(esc, sizeof(esc), "<'\"&>"), 24);
  assert_string_equal(esc, "&lt;&#39;&quot;&amp;&gt;");
  assert_int_equal(uvq_http_html_escape(esc, 5, "<a>"), 9);
  assert_string_equal(esc, "&lt;");
}

static void test_http_file_mime(void **state) {
  static const char text[] = "# comment\n"
                             "text/html\t\t\thtml htm\n"
                             "Text/CSS css # trailing comment\n"
                             "\n"
                             "   application/x-thing  thing THING2\n"
                             "image/png png\n"
                             "image/other png\n" /* the first line wins */
                             "notatype foo\n"    /* no slash: skipped */
                             "application/onlytype\n"
                             "bad/ty;pe bar\n";
  uvq_mime_table t;
  (void)state;

  assert_int_equal(uvq_mime_table_parse(&t, text, sizeof(text) - 1), 0);
  assert_string_equal(uvq_mime_type(&t, "/x/a.html"),
                      "text/html; charset=utf-8");
  assert_string_equal(uvq_mime_type(&t, "/a.HTM"), "text/html; charset=utf-8");
  assert_string_equal(uvq_mime_type(&t, "/s.css"), "text/css; charset=utf-8");
  assert_string_equal(uvq_mime_type(&t, "/t.thing"), "application/x-thing");
  assert_string_equal(uvq_mime_type(&t, "/t.thing2"), "application/x-thing");
  assert_string_equal(uvq_mime_type(&t, "/i.png"), "image/png");
  /* Not in the file: the built-in list, then octet-stream. */
  assert_string_equal(uvq_mime_type(&t, "/app.js"),
                      "text/javascript; charset=utf-8");
  assert_string_equal(uvq_mime_type(&t, "/x.foo"), "application/octet-stream");
  assert_string_equal(uvq_mime_type(&t, "/x.bar"), "application/octet-stream");
  assert_string_equal(uvq_mime_type(&t, "/.css"), "application/octet-stream");
  assert_string_equal(uvq_mime_type(&t, "/d.css/x"),
                      "application/octet-stream");
  assert_string_equal(uvq_mime_type(&t, "/x."), "application/octet-stream");
  uvq_mime_table_free(&t);

  /* No table at all. */
  assert_string_equal(uvq_mime_type(NULL, "/a.svg"), "image/svg+xml");
  assert_int_equal(uvq_mime_table_parse(&t, "", 0), 0);
  assert_int_equal(t.n, 0);
  uvq_mime_table_free(&t);
  assert_int_equal(uvq_mime_table_load(&t, "/nonexistent/mime.types", NULL, 0),
                   -1);
  /* The system's table, where the media-types package is installed. */
  if (access(UVQ_MIME_TYPES_PATH, R_OK) == 0) {
    assert_int_equal(uvq_mime_table_load(&t, UVQ_MIME_TYPES_PATH, NULL, 0), 0);
    assert_true(t.n > 100);
    assert_string_equal(uvq_mime_type(&t, "/a.html"),
                        "text/html; charset=utf-8");
    assert_string_equal(uvq_mime_type(&t, "/a.png"), "image/png");
    uvq_mime_table_free(&t);
  }
}

static void test_http_file_dates(void **state) {
  char buf[UVQ_HTTP_DATE_LEN];
  time_t t;
  (void)state;

  uvq_http_format_date(784111777, buf);
  assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
  assert_int_equal(uvq_http_parse_date(buf, strlen(buf), &t), 0);
  assert_int_equal(t, 784111777);
  t = 0;
  assert_int_equal(
      uvq_http_parse_date("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t), 0);
  assert_int_equal(t, 784111777);
  t = 0;
  assert_int_equal(uvq_http_parse_date("Sun Nov  6 08:49:37 1994", 24, &t), 0);
  assert_int_equal(t, 784111777);
  assert_int_equal(uvq_http_parse_date("Sun, 06 Nov 1994 08:49:37 UTC", 29, &t),
                   -1);
  assert_int_equal(
      uvq_http_parse_date("Sun, 06 Nov 1994 08:49:37 GMTx", 30, &t), -1);
  assert_int_equal(uvq_http_parse_date("Sun, 06 Foo 1994 08:49:37 GMT", 29, &t),
                   -1);
  assert_int_equal(uvq_http_parse_date("Sun, 36 Nov 1994 08:49:37 GMT", 29, &t),
                   -1);
  assert_int_equal(uvq_http_parse_date("", 0, &t), -1);
  assert_int_equal(uvq_http_parse_date("yesterday", 9, &t), -1);
}

static void test_http_file_etag(void **state) {
  struct stat a, b;
  char ea[UVQ_HTTP_ETAG_LEN], eb[UVQ_HTTP_ETAG_LEN];
  (void)state;

  memset(&a, 0, sizeof(a));
  a.st_size = 1000;
  a.st_mtim.tv_sec = 1700000000;
  a.st_mtim.tv_nsec = 5;
  a.st_ino = 1;
  b = a;
  b.st_ino = 2; /* another host, another inode: the same tag */
  uvq_http_etag(&a, ea);
  uvq_http_etag(&b, eb);
  assert_string_equal(ea, eb);
  assert_string_equal(ea, "\"3e8-6553f100-5\"");
  b.st_mtim.tv_nsec = 6;
  uvq_http_etag(&b, eb);
  assert_string_not_equal(ea, eb);

  assert_true(uvq_http_etag_match("*", 1, ea, 1));
  assert_true(uvq_http_etag_match(" \"x\", \"3e8-6553f100-5\"", 22, ea, 1));
  assert_true(uvq_http_etag_match("W/\"3e8-6553f100-5\"", 18, ea, 1));
  assert_false(uvq_http_etag_match("W/\"3e8-6553f100-5\"", 18, ea, 0));
  assert_true(uvq_http_etag_match("\"3e8-6553f100-5\"", 16, ea, 0));
  assert_false(uvq_http_etag_match("\"3e8-6553f100-6\"", 16, ea, 1));
  assert_false(uvq_http_etag_match("3e8-6553f100-5", 14, ea, 1));
  assert_false(uvq_http_etag_match("\"3e8-6553f100-5", 15, ea, 1));
  assert_false(uvq_http_etag_match("", 0, ea, 1));
}

/* The date and entity tag are formatted by hand: the same bytes as the
 * printf formats they replaced, over edges and a spread of values. */
static void test_http_file_format_by_hand(void **state) {
  static const time_t times[] = {0,          1,          59,
                                 86399,      951782400,  1709164800,
                                 2147483647, 4102444800, 253402300799};
  char buf[UVQ_HTTP_DATE_LEN], want[64], ebuf[UVQ_HTTP_ETAG_LEN];
  struct stat st;
  struct tm tm;
  uint64_t x = 0x9e3779b97f4a7c15u;
  (void)state;

  for (size_t i = 0; i < sizeof(times) / sizeof(times[0]) + 2000; ++i) {
    time_t t =
        i < sizeof(times) / sizeof(times[0])
            ? times[i]
            : (time_t)((x = x * 6364136223846793005u + 1) >> 30) % 253402300800;
    assert_non_null(gmtime_r(&t, &tm));
    strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    uvq_http_format_date(t, buf);
    assert_string_equal(buf, want);
  }
  /* Past 9999, and before 0 AD: the epoch instead. */
  uvq_http_format_date((time_t)253402300800, buf);
  assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");

  memset(&st, 0, sizeof(st));
  for (int i = 0; i < 2000; ++i) {
    st.st_size = (off_t)(i < 2 ? (i ? INT64_MAX : 0)
                               : (int64_t)((x = x * 6364136223846793005u + 1) >>
                                           (unsigned)(i % 63 + 1)));
    st.st_mtim.tv_sec = (time_t)(i < 2 ? 0 : (int64_t)(x >> 20));
    st.st_mtim.tv_nsec = i < 2 ? (i ? 999999999 : 0) : (long)(x % 1000000000u);
    snprintf(want, sizeof(want), "\"%" PRIx64 "-%" PRIx64 "-%" PRIx32 "\"",
             (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
             (uint32_t)st.st_mtim.tv_nsec);
    uvq_http_etag(&st, ebuf);
    assert_string_equal(ebuf, want);
  }
}

static uvq_http_range_status range(const char *s, uint64_t size, uint64_t *off,
                                   uint64_t *len) {
  *off = *len = 12345;
  return uvq_http_parse_range(s, strlen(s), size, off, len);
}

static void test_http_file_range(void **state) {
  uint64_t off, len;
  (void)state;

  assert_int_equal(range("bytes=0-99", 1000, &off, &len), UVQ_RANGE_OK);
  assert_int_equal(off, 0);
  assert_int_equal(len, 100);
  assert_int_equal(range("bytes=900-", 1000, &off, &len), UVQ_RANGE_OK);
  assert_int_equal(off, 900);
  assert_int_equal(len, 100);
  assert_int_equal(range("bytes=-10", 1000, &off, &len), UVQ_RANGE_OK);
  assert_int_equal(off, 990);
  assert_int_equal(len, 10);
  assert_int_equal(range("Bytes=-5000", 1000, &off, &len), UVQ_RANGE_OK);
  assert_int_equal(off, 0);
  assert_int_equal(len, 1000);
  assert_int_equal(range("bytes=500-99999", 1000, &off, &len), UVQ_RANGE_OK);
  assert_int_equal(len, 500);
  assert_int_equal(range("bytes=999-999", 1000, &off, &len), UVQ_RANGE_OK);
  assert_int_equal(len, 1);
  /* Unsatisfiable. */
  assert_int_equal(range("bytes=1000-", 1000, &off, &len),
                   UVQ_RANGE_UNSATISFIABLE);
  assert_int_equal(range("bytes=-0", 1000, &off, &len),
                   UVQ_RANGE_UNSATISFIABLE);
  assert_int_equal(range("bytes=0-", 0, &off, &len), UVQ_RANGE_UNSATISFIABLE);
  /* Ignored: malformed, another unit, several ranges, overflow. */
  assert_int_equal(range("bytes=5-1", 1000, &off, &len), UVQ_RANGE_NONE);
  assert_int_equal(range("bytes=a-b", 1000, &off, &len), UVQ_RANGE_NONE);
  assert_int_equal(range("bytes=-", 1000, &off, &len), UVQ_RANGE_NONE);
  assert_int_equal(range("bytes=1", 1000, &off, &len), UVQ_RANGE_NONE);
  assert_int_equal(range("items=0-1", 1000, &off, &len), UVQ_RANGE_NONE);
  assert_int_equal(range("bytes=0-1,5-6", 1000, &off, &len), UVQ_RANGE_NONE);
  assert_int_equal(range("bytes=99999999999999999999-", 1000, &off, &len),
                   UVQ_RANGE_NONE);
  assert_int_equal(range("", 1000, &off, &len), UVQ_RANGE_NONE);
}

static void eval(const char *inm, const char *ims, const char *rng,
                 const char *ifr, const struct stat *st, const char *etag,
                 uvq_http_plan *plan) {
  uvq_http_conditions c;

  memset(&c, 0, sizeof(c));
  c.if_none_match = inm;
  c.if_none_match_len = inm ? strlen(inm) : 0;
  c.if_modified_since = ims;
  c.if_modified_since_len = ims ? strlen(ims) : 0;
  c.range = rng;
  c.range_len = rng ? strlen(rng) : 0;
  c.if_range = ifr;
  c.if_range_len = ifr ? strlen(ifr) : 0;
  uvq_http_evaluate(&c, st, etag, plan);
}

static void test_http_file_evaluate(void **state) {
  static const char lm[] = "Sun, 06 Nov 1994 08:49:37 GMT";
  static const char before[] = "Sun, 06 Nov 1994 08:49:36 GMT";
  struct stat st;
  char etag[UVQ_HTTP_ETAG_LEN];
  uvq_http_plan p;
  (void)state;

  memset(&st, 0, sizeof(st));
  st.st_size = 1000;
  st.st_mtim.tv_sec = 784111777;
  uvq_http_etag(&st, etag);

  eval(NULL, NULL, NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 200);
  assert_int_equal(p.length, 1000);
  eval(etag, NULL, NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 304);
  eval("\"other\"", NULL, NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 200);
  eval(NULL, lm, NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 304);
  eval(NULL, before, NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 200);
  eval(NULL, "garbage", NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 200);
  /* If-None-Match present: If-Modified-Since is ignored. */
  eval("\"other\"", lm, NULL, NULL, &st, etag, &p);
  assert_int_equal(p.status, 200);

  eval(NULL, NULL, "bytes=10-19", NULL, &st, etag, &p);
  assert_int_equal(p.status, 206);
  assert_int_equal(p.offset, 10);
  assert_int_equal(p.length, 10);
  eval(NULL, NULL, "bytes=2000-", NULL, &st, etag, &p);
  assert_int_equal(p.status, 416);
  /* If-Range: the current tag or date keeps the range, others void it. */
  eval(NULL, NULL, "bytes=10-19", etag, &st, etag, &p);
  assert_int_equal(p.status, 206);
  eval(NULL, NULL, "bytes=10-19", "\"old\"", &st, etag, &p);
  assert_int_equal(p.status, 200);
  assert_int_equal(p.offset, 0);
  assert_int_equal(p.length, 1000);
  eval(NULL, NULL, "bytes=10-19", lm, &st, etag, &p);
  assert_int_equal(p.status, 206);
  eval(NULL, NULL, "bytes=10-19", before, &st, etag, &p);
  assert_int_equal(p.status, 200);
  /* A weak tag never validates a range. */
  {
    char weak[UVQ_HTTP_ETAG_LEN + 2];
    snprintf(weak, sizeof(weak), "W/%s", etag);
    eval(NULL, NULL, "bytes=10-19", weak, &st, etag, &p);
    assert_int_equal(p.status, 200);
  }
  /* A 304 wins over Range. */
  eval(etag, NULL, "bytes=10-19", NULL, &st, etag, &p);
  assert_int_equal(p.status, 304);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_file_decode),
      cmocka_unit_test(test_http_file_resolve),
      cmocka_unit_test(test_http_file_autoindex),
      cmocka_unit_test(test_http_file_mime),
      cmocka_unit_test(test_http_file_dates),
      cmocka_unit_test(test_http_file_etag),
      cmocka_unit_test(test_http_file_format_by_hand),
      cmocka_unit_test(test_http_file_range),
      cmocka_unit_test(test_http_file_evaluate),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
