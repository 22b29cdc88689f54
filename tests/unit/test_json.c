#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "base/buf.h"
#include "base/json.h"
#include "test.h"

/* One input and what json_parse must say about it.  len 0 means strlen(in);
 * inputs with NUL bytes give their length. */
typedef struct json_case {
    const char *in;
    size_t len;
    bool ok;
    const char *msg;       /* rejects: a substring of the message */
    unsigned line, col;    /* rejects: where */
} json_case;

#define OK(s) {s, 0, true, NULL, 0, 0}
#define BAD(s, m, l, c) {s, 0, false, m, l, c}
#define BADN(s, n, m, l, c) {s, n, false, m, l, c}

static const json_case cases[] = {
    /* scalars */
    OK("null"), OK("true"), OK("false"), OK("0"), OK("-0"), OK("1"), OK("-1"), OK("123"),
    OK("1.5"), OK("-1.5e10"), OK("1E+2"), OK("1e-2"), OK("0.0"), OK("0e0"), OK("-0.0e-0"),
    OK("12345678901234567890123"), OK("\"\""), OK("\"abc\""), OK(" \t\r\n1 \n"),
    /* containers */
    OK("[]"), OK("{}"), OK(" [ 1 , 2 ] "), OK("[[[]]]"), OK("{\"\":0}"),
    OK("{\"a\":{\"b\":[1,{\"c\":null}]},\"d\":[true,false]}"), OK("{\"a\":1,\"\\u0061b\":2}"),
    OK("{\"a\":{\"a\":1}}"), OK("[{},{},[]]"),
    /* escapes and UTF-8 */
    OK("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), OK("\"\\u00e9\\u00E9\""), OK("\"\\ud83d\\ude00\""),
    OK("\"\\u0000\""), OK("\"\xc3\xa9\""), OK("\"\xe2\x82\xac\""), OK("\"\xf0\x9f\x98\x80\""),
    OK("\"\xf4\x8f\xbf\xbf\""), OK("\"\xef\xbf\xbf\""), OK("\"\xed\x9f\xbf\""), OK("\"\xee\x80\x80\""),
    OK("\"\x7f\""), OK("\"\xc2\x80\""),

    /* end of input */
    BAD("", "unexpected end of input", 1, 1),
    BAD("   ", "unexpected end of input", 1, 4),
    BAD("[", "unexpected end of input", 1, 2),
    BAD("[1,", "unexpected end of input", 1, 4),
    BAD("[1,2", "unexpected end of input in array", 1, 5),
    BAD("{", "unexpected end of input in object", 1, 2),
    BAD("{\"a\"", "unexpected end of input in object", 1, 5),
    BAD("{\"a\":", "unexpected end of input", 1, 6),
    BAD("{\"a\":1", "unexpected end of input in object", 1, 7),
    BAD("nul", "unexpected end of input in literal, expected 'null'", 1, 4),
    /* literals and stray characters */
    BAD("nulx", "unexpected character 'x' in literal, expected 'null'", 1, 4),
    BAD("True", "unexpected character 'T', expected a JSON value", 1, 1),
    BAD("[tru]", "expected 'true'", 1, 5),
    BAD(",", "unexpected character ','", 1, 1),
    BAD("]", "unexpected character ']', expected a JSON value", 1, 1),
    BAD("'a'", "double quotes", 1, 1),
    BAD("\xc3\xa9", "unexpected byte 0xc3", 1, 1),
    BAD("\xef\xbb\xbf{}", "byte order mark", 1, 1),
    BADN("\0", 1, "unexpected byte 0x00", 1, 1),
    /* numbers */
    BAD("NaN", "NaN is not valid JSON", 1, 1),
    BAD("[NaN]", "NaN is not valid JSON", 1, 2),
    BAD("Infinity", "Infinity is not valid JSON", 1, 1),
    BAD("-Infinity", "-Infinity is not valid JSON", 1, 1),
    BAD("01", "number has a leading zero", 1, 1),
    BAD("-01", "number has a leading zero", 1, 2),
    BAD("[00]", "number has a leading zero", 1, 2),
    BAD("+1", "cannot start with '+'", 1, 1),
    BAD(".5", "cannot start with '.'", 1, 1),
    BAD("5.", "expected a digit after the decimal point", 1, 3),
    BAD("1.e5", "unexpected character 'e', expected a digit after the decimal point", 1, 3),
    BAD("1e", "expected a digit in the exponent", 1, 3),
    BAD("1e+", "expected a digit in the exponent", 1, 4),
    BAD("1.5E-x", "unexpected character 'x', expected a digit in the exponent", 1, 6),
    BAD("0x1F", "hexadecimal numbers are not valid JSON", 1, 2),
    BAD("-", "expected a digit after '-'", 1, 2),
    BAD("- 1", "expected a digit after '-'", 1, 2),
    BAD("[-]", "unexpected character ']', expected a digit after '-'", 1, 3),
    BAD("123abc", "trailing characters after the JSON value", 1, 4),
    BAD("1.5.3", "trailing characters", 1, 4),
    /* structure */
    BAD("[1 2]", "unexpected character '2' after array element, expected ',' or ']'", 1, 4),
    BAD("[1,]", "trailing comma in array", 1, 3),
    BAD("[,1]", "unexpected character ',', expected a JSON value", 1, 2),
    BAD("{\"a\":1,}", "trailing comma in object", 1, 7),
    BAD("{\"a\" 1}", "unexpected character '1' after object key, expected ':'", 1, 6),
    BAD("{\"a\":1 \"b\":2}", "unexpected character '\"' after object value, expected ',' or '}'", 1, 8),
    BAD("{1:2}", "unexpected character '1' in object, expected a string key", 1, 2),
    BAD("{,}", "expected a string key", 1, 2),
    BAD("{\"a\":}", "unexpected character '}', expected a JSON value", 1, 6),
    BAD("[}", "unexpected character '}', expected a JSON value", 1, 2),
    BAD("{\"a\":1]", "unexpected character ']' after object value", 1, 7),
    BAD("{}}", "trailing characters after the JSON value", 1, 3),
    BAD("1 2", "trailing characters after the JSON value", 1, 3),
    BAD("[1]\n\n  x", "trailing characters after the JSON value", 3, 3),
    BAD("{\n  \"a\": tru\n}", "unexpected byte 0x0a in literal, expected 'true'", 2, 11),
    BADN("\"a\"\0", 4, "trailing characters", 1, 4),
    /* duplicate keys */
    BAD("{\"a\":1,\"a\":2}", "duplicate key \"a\"", 1, 8),
    BAD("{\"a\":1,\"b\":2,\"a\":3}", "duplicate key \"a\"", 1, 14),
    BAD("{\"a\":1,\"\\u0061\":2}", "duplicate key \"\\u0061\"", 1, 8),
    BAD("{\"\\u00e9\":1,\"\xc3\xa9\":2}", "duplicate key", 1, 13),
    BAD("{\"x\":{\"a\":1,\"a\":2}}", "duplicate key \"a\"", 1, 13),
    /* strings */
    BAD("\"abc", "unterminated string", 1, 1),
    BAD("[\"a\\\"]", "unterminated string", 1, 2),
    BAD("\"\\", "unterminated string", 1, 1),
    BAD("\"\\u00", "unterminated string", 1, 1),
    BAD("\"\\ud800", "unterminated string", 1, 1),
    BAD("\"a\nb\"", "unescaped control character 0x0a in string", 1, 3),
    BAD("\"\t\"", "unescaped control character 0x09 in string", 1, 2),
    BADN("\"\0\"", 3, "unescaped control character 0x00 in string", 1, 2),
    BAD("\"\\x\"", "invalid escape '\\' followed by character 'x' in string", 1, 2),
    BAD("\"\\U0041\"", "invalid escape", 1, 2),
    BAD("\"\\u12G4\"", "invalid \\u escape in string: expected 4 hex digits", 1, 2),
    BAD("\"\\u00\"", "invalid \\u escape", 1, 2),
    BAD("\"\\ud800\"", "unpaired surrogate \\uD800", 1, 2),
    BAD("\"\\udc00\"", "unpaired surrogate \\uDC00", 1, 2),
    BAD("\"x\\ud800\\u0041\"", "unpaired surrogate \\uD800", 1, 3),
    BAD("\"\\ud800\\ud800\"", "unpaired surrogate", 1, 2),
    BAD("\"\\ude00\\ud83d\"", "unpaired surrogate \\uDE00", 1, 2),
    BAD("\"\\ud800\\uzzzz\"", "invalid \\u escape", 1, 8),
    BAD("\"\xff\"", "invalid UTF-8 byte 0xff in string", 1, 2),
    BAD("\"\x80\"", "invalid UTF-8 byte 0x80 in string", 1, 2),
    BAD("\"ab\xfe\"", "invalid UTF-8 byte 0xfe in string", 1, 4),
    BAD("\"\xc0\xaf\"", "overlong UTF-8 encoding", 1, 2),
    BAD("\"\xc1\xbf\"", "overlong UTF-8 encoding", 1, 2),
    BAD("\"\xe0\x80\xaf\"", "overlong UTF-8 encoding", 1, 2),
    BAD("\"\xe0\x9f\xbf\"", "overlong UTF-8 encoding", 1, 2),
    BAD("\"\xf0\x82\x82\xac\"", "overlong UTF-8 encoding", 1, 2),
    BAD("\"\xed\xa0\x80\"", "UTF-8-encoded surrogate", 1, 2),
    BAD("\"\xed\xbf\xbf\"", "UTF-8-encoded surrogate", 1, 2),
    BAD("\"\xf4\x90\x80\x80\"", "above U+10FFFF", 1, 2),
    BAD("\"\xf5\x80\x80\x80\"", "invalid UTF-8 byte 0xf5", 1, 2),
    BAD("\"\xc3\"", "truncated UTF-8 sequence", 1, 2),
    BAD("\"\xe2\x82\"", "truncated UTF-8 sequence", 1, 2),
    BAD("\"\xf0\x9f\x98\"", "truncated UTF-8 sequence", 1, 2),
    BAD("\"\xe2\x82", "truncated UTF-8 sequence", 1, 2),
    BAD("{\"k\xff\":1}", "invalid UTF-8 byte 0xff in string", 1, 4),
};

static void check_case(json_doc *d, const json_case *c)
{
    size_t len = c->len ? c->len : strlen(c->in);
    json_error e;
    memset(&e, 0, sizeof e);
    bool ok = json_parse(d, c->in, len, NULL, &e);
    if (ok != c->ok) {
        test_fail(__FILE__, __LINE__, "input %.40s: expected %s, got %s (%s)", c->in, c->ok ? "accept" : "reject",
                  ok ? "accept" : "reject", ok ? "" : e.msg);
        return;
    }
    if (ok)
        return;
    if (!strstr(e.msg, c->msg))
        test_fail(__FILE__, __LINE__, "input %.40s: message \"%s\" lacks \"%s\"", c->in, e.msg, c->msg);
    if (e.line != c->line || e.col != c->col)
        test_fail(__FILE__, __LINE__, "input %.40s (%s): at %u:%u, expected %u:%u", c->in, e.msg, e.line, e.col,
                  c->line, c->col);
    if (e.line == 1 && e.offset + 1 != e.col)
        test_fail(__FILE__, __LINE__, "input %.40s: offset %zu does not match col %u", c->in, e.offset, e.col);
    if (e.offset > len)
        test_fail(__FILE__, __LINE__, "input %.40s: offset %zu past the end", c->in, e.offset);
}

TEST(json_accept_reject_table)
{
    json_doc d = JSON_DOC_INIT;
    size_t n = sizeof cases / sizeof cases[0];
    CHECK(n >= 60);
    for (size_t i = 0; i < n; i++)
        check_case(&d, &cases[i]);
    /* Without an error struct the verdicts stand. */
    for (size_t i = 0; i < n; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        CHECK(json_parse(&d, cases[i].in, len, NULL, NULL) == cases[i].ok);
    }
    json_doc_release(&d);
}

static bool parse(json_doc *d, const char *s)
{
    json_error e;
    if (json_parse(d, s, strlen(s), NULL, &e))
        return true;
    test_fail(__FILE__, __LINE__, "parse of %.60s failed: %s at %u:%u", s, e.msg, e.line, e.col);
    return false;
}

static void compact_is(json_doc *d, uint32_t i, const char *want)
{
    buf b = BUF_INIT;
    json_write_compact(d, i, &b);
    CHECK_STR(b.data, want);
    CHECK_EQ_U64(b.len, strlen(want));
    buf_release(&b);
}

TEST(json_tree_shape)
{
    json_doc d = JSON_DOC_INIT;
    const char *s = "{\"a\": [1, \"x\", {}], \"b\": true}";
    if (!parse(&d, s))
        return;
    CHECK_EQ_U64(d.n, 8);
    CHECK_EQ_INT(d.nodes[0].kind, JSON_OBJECT);
    CHECK_EQ_U64(d.nodes[0].count, 2);
    CHECK_EQ_U64(d.nodes[0].next, 8);
    CHECK_EQ_U64(d.nodes[0].len, strlen(s));
    CHECK(json_string_eq(&d, 1, "a"));
    CHECK_EQ_INT(d.nodes[2].kind, JSON_ARRAY);
    CHECK_EQ_U64(d.nodes[2].count, 3);
    CHECK_EQ_U64(d.nodes[2].next, 6);
    CHECK_EQ_U64(d.nodes[2].start, 6);
    CHECK_EQ_U64(d.nodes[2].len, 12);
    CHECK_EQ_INT(d.nodes[3].kind, JSON_NUMBER);
    CHECK_EQ_U64(d.nodes[3].flags, JSON_F_INTEGER);
    CHECK_EQ_INT(d.nodes[4].kind, JSON_STRING);
    CHECK_EQ_U64(d.nodes[4].len, 3);
    CHECK_EQ_INT(d.nodes[5].kind, JSON_OBJECT);
    CHECK_EQ_U64(d.nodes[5].count, 0);
    CHECK_EQ_U64(d.nodes[5].next, 6);
    CHECK_EQ_INT(d.nodes[7].kind, JSON_TRUE);
    CHECK_EQ_U64(d.nodes[7].next, 8);
    /* Walking the array by siblings visits every element once. */
    uint32_t seen = 0;
    for (uint32_t c = json_first_child(&d, 2); c < d.nodes[2].next; c = json_next_sibling(&d, c))
        seen++;
    CHECK_EQ_U64(seen, 3);
    json_doc_release(&d);
}

TEST(json_navigation_and_object_get)
{
    json_doc d = JSON_DOC_INIT;
    if (!parse(&d, "{\"id\": 7, \"user\": {\"name\": \"Ann\", \"tags\": [\"a\", \"b\"]}, \"\\u00e9t\\u00e9\": 1,"
                   " \"q\\\"k\": null, \"\": 0}"))
        return;
    uint32_t id = json_object_get(&d, 0, "id");
    int64_t v = 0;
    CHECK(id != UINT32_MAX && json_get_int64(&d, id, &v) && v == 7);
    uint32_t user = json_object_get(&d, 0, "user");
    CHECK(user != UINT32_MAX && d.nodes[user].kind == JSON_OBJECT);
    uint32_t name = json_object_get(&d, user, "name");
    CHECK(json_string_eq(&d, name, "Ann"));
    CHECK(!json_string_eq(&d, name, "An"));
    CHECK(!json_string_eq(&d, name, "Anne"));
    uint32_t tags = json_object_get(&d, user, "tags");
    CHECK(d.nodes[tags].kind == JSON_ARRAY && d.nodes[tags].count == 2);
    CHECK(json_string_eq(&d, json_next_sibling(&d, json_first_child(&d, tags)), "b"));
    CHECK(json_object_get(&d, 0, "été") != UINT32_MAX);
    CHECK(json_object_get(&d, 0, "q\"k") != UINT32_MAX);
    CHECK_EQ_INT(d.nodes[json_object_get(&d, 0, "q\"k")].kind, JSON_NULL);
    CHECK(json_object_get(&d, 0, "") != UINT32_MAX);
    CHECK_EQ_U64(json_object_get(&d, 0, "name"), UINT32_MAX);    /* not at this level */
    CHECK_EQ_U64(json_object_get(&d, 0, "i"), UINT32_MAX);
    CHECK_EQ_U64(json_object_get(&d, 0, "ids"), UINT32_MAX);
    CHECK_EQ_U64(json_object_get(&d, tags, "a"), UINT32_MAX);    /* not an object */
    CHECK_EQ_U64(json_object_get(&d, 9999, "a"), UINT32_MAX);    /* out of range */
    CHECK(!json_string_eq(&d, id, "7"));                          /* not a string */
    compact_is(&d, user, "{\"name\":\"Ann\",\"tags\":[\"a\",\"b\"]}");
    json_doc_release(&d);
}

TEST(json_compact_round_trip)
{
    json_doc d = JSON_DOC_INIT, d2 = JSON_DOC_INIT;
    const char *s = " {\n  \"a\" : [ 1.10 , -0 , 1E+2 , \"x y\\n\" , { } , [ ] ] ,\r\n\t\"b\" : { \"c\" : null ,"
                    " \"d\" : \"\\u00e9 \xc3\xa9\" } , \"e\":12345678901234567890 } ";
    const char *want = "{\"a\":[1.10,-0,1E+2,\"x y\\n\",{},[]],\"b\":{\"c\":null,\"d\":\"\\u00e9 \xc3\xa9\"},"
                       "\"e\":12345678901234567890}";
    if (!parse(&d, s))
        return;
    compact_is(&d, 0, want);
    buf b = BUF_INIT;
    buf_puts(&b, "prefix:");
    json_write_compact(&d, 0, &b);   /* appends */
    CHECK(strncmp(b.data, "prefix:{", 8) == 0);
    if (parse(&d2, want)) {
        CHECK_EQ_U64(d2.n, d.n);
        compact_is(&d2, 0, want);
    }
    /* Scalars and subtrees. */
    if (parse(&d, " \"a b\" "))
        compact_is(&d, 0, "\"a b\"");
    if (parse(&d, "[ [ [ 1 ] ] , [ ] ]")) {
        compact_is(&d, 1, "[[1]]");
        compact_is(&d, 3, "1");
        compact_is(&d, 4, "[]");
    }
    buf_release(&b);
    json_doc_release(&d);
    json_doc_release(&d2);
}

static bool int64_of(const char *s, int64_t *v)
{
    json_doc d = JSON_DOC_INIT;
    bool ok = parse(&d, s) && json_get_int64(&d, 0, v);
    json_doc_release(&d);
    return ok;
}

TEST(json_int64_edges)
{
    int64_t v = 0;
    CHECK(int64_of("9223372036854775807", &v) && v == INT64_MAX);
    CHECK(int64_of("-9223372036854775808", &v) && v == INT64_MIN);
    CHECK(int64_of("-9223372036854775807", &v) && v == -INT64_MAX);
    CHECK(int64_of("0", &v) && v == 0);
    v = 5;
    CHECK(int64_of("-0", &v) && v == 0);
    CHECK(int64_of("-1", &v) && v == -1);
    CHECK(int64_of("1000000000000000000", &v) && v == 1000000000000000000LL);
    v = 42;
    CHECK(!int64_of("9223372036854775808", &v));
    CHECK(!int64_of("-9223372036854775809", &v));
    CHECK(!int64_of("18446744073709551616", &v));
    CHECK(!int64_of("99999999999999999999", &v));
    CHECK(!int64_of("1.0", &v));
    CHECK(!int64_of("1e3", &v));
    CHECK(!int64_of("\"1\"", &v));
    CHECK(!int64_of("true", &v));
    CHECK_EQ_INT(v, 42);   /* failures leave the output alone */
}

static bool double_of(const char *s, double *v)
{
    json_doc d = JSON_DOC_INIT;
    bool ok = parse(&d, s) && json_get_double(&d, 0, v);
    json_doc_release(&d);
    return ok;
}

TEST(json_double_conversion)
{
    double v = 0;
    CHECK(double_of("1.5", &v) && v == 1.5);
    CHECK(double_of("-0.25e2", &v) && v == -25.0);
    CHECK(double_of("0.1", &v) && v == 0.1);
    CHECK(double_of("12345678901234567890", &v) && v == 12345678901234567890.0);
    CHECK(double_of("1e-400", &v) && v == 0.0);
    CHECK(double_of("1.7976931348623157e308", &v) && v == 1.7976931348623157e308);
    /* Longer than the stack buffer. */
    CHECK(double_of("0.1000000000000000000000000000000000000000000000000000000000000000000000000001", &v)
          && v == 0.1);
    v = 3;
    CHECK(!double_of("1e400", &v));
    CHECK(!double_of("-1e400", &v));
    CHECK(!double_of("\"1\"", &v));
    CHECK(v == 3);
}

static bool decoded_is(const char *json, const char *want, size_t want_len)
{
    json_doc d = JSON_DOC_INIT;
    buf b = BUF_INIT;
    bool ok = parse(&d, json) && json_get_string(&d, 0, &b) && b.len == want_len && memcmp(b.data, want, want_len) == 0
              && b.data[b.len] == '\0';
    buf_release(&b);
    json_doc_release(&d);
    return ok;
}

TEST(json_escapes_decode)
{
    CHECK(decoded_is("\"abc\"", "abc", 3));
    CHECK(decoded_is("\"\"", "", 0));
    CHECK(decoded_is("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8));
    CHECK(decoded_is("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6));
    CHECK(decoded_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4));
    CHECK(decoded_is("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4));
    CHECK(decoded_is("\"a\\u0000b\"", "a\0b", 3));
    CHECK(decoded_is("\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11));
    CHECK(decoded_is("\"x\xc3\xa9y\"", "x\xc3\xa9y", 4));
    /* json_string_eq compares decoded text. */
    json_doc d = JSON_DOC_INIT;
    if (parse(&d, "[\"\\u0041b\\n\", \"a\\\\b\"]")) {
        CHECK(json_string_eq(&d, 1, "Ab\n"));
        CHECK(!json_string_eq(&d, 1, "Ab"));
        CHECK(!json_string_eq(&d, 1, "Ab\nc"));
        CHECK(json_string_eq(&d, 2, "a\\b"));
        CHECK(d.nodes[1].flags & JSON_F_ESCAPED);
    }
    buf b = BUF_INIT;
    buf_puts(&b, "old");
    CHECK(!json_get_string(&d, 0, &b));   /* array, not a string */
    CHECK_STR(b.data, "old");
    buf_release(&b);
    json_doc_release(&d);
}

/* A straightforward decoder to hold the validator against: decode by the bit
 * patterns, then apply the range rules. */
static bool reference_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (i + need >= n)
            return false;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

TEST(json_utf8_exhaustive)
{
    unsigned char s[4];
    size_t bad = 0;
    long mismatches = 0;
    for (unsigned a = 0x80; a < 0x100; a++) {
        s[0] = (unsigned char)a;
        for (unsigned b = 0; b < 0x100; b++) {
            s[1] = (unsigned char)b;
            mismatches += json_utf8_valid((char *)s, 2, &bad) != reference_utf8_valid(s, 2);
            for (unsigned c = 0; c < 0x100; c++) {
                s[2] = (unsigned char)c;
                if (a >= 0xE0)
                    mismatches += json_utf8_valid((char *)s, 3, &bad) != reference_utf8_valid(s, 3);
                if (a >= 0xF0)
                    for (unsigned e = 0; e < 4; e++) {
                        s[3] = (unsigned char)"\x7f\x80\xbf\xc0"[e];
                        mismatches += json_utf8_valid((char *)s, 4, &bad) != reference_utf8_valid(s, 4);
                    }
            }
        }
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK(json_utf8_valid("", 0, &bad));
    CHECK(json_utf8_valid("plain ascii text that is long enough", 36, &bad));
    bad = 99;
    CHECK(!json_utf8_valid("0123456789abcdef\xc3(", 18, &bad));
    CHECK_EQ_U64(bad, 16);
    CHECK(!json_utf8_valid("ok \xed\xa0\x80", 6, &bad));
    CHECK_EQ_U64(bad, 3);
    CHECK(!json_utf8_valid("\xe2\x82\xac\xf0\x9f\x98", 6, &bad));
    CHECK_EQ_U64(bad, 3);
    CHECK(json_utf8_valid("\xe2\x82\xac\xf0\x9f\x98\x80", 7, NULL));
    /* Exactly sized heap buffers, so that ASan sees any read past the end
     * (the fuzzer found one after an all-ASCII run of 8k bytes). */
    for (size_t n = 1; n <= 24; n++) {
        char *h = malloc(n);
        memset(h, 'a', n);
        CHECK(json_utf8_valid(h, n, NULL));
        h[n - 1] = (char)0xc3;
        CHECK(!json_utf8_valid(h, n, &bad) && bad == n - 1);
        free(h);
    }
}

TEST(json_utf8_in_strings_matches_validator)
{
    /* Every byte pair after a valid lead: the parser accepts the string
     * exactly when the validator accepts its content. */
    json_doc d = JSON_DOC_INIT;
    char s[6] = {'"', 0, 0, 0, 0, '"'};
    long mismatches = 0;
    for (unsigned a = 0x80; a < 0x100; a++)
        for (unsigned b = 0x80; b < 0x100; b += 3) {
            s[1] = (char)a, s[2] = (char)b, s[3] = (char)0x80, s[4] = (char)0xBF;
            for (size_t n = 1; n <= 4; n++) {
                char t[6];
                memcpy(t, s, n + 1);
                t[n + 1] = '"';
                mismatches += json_parse(&d, t, n + 2, NULL, NULL) != json_utf8_valid(s + 1, n, NULL);
            }
        }
    CHECK_EQ_INT(mismatches, 0);
    json_doc_release(&d);
}

static void reject_with(json_doc *d, const char *s, size_t len, const json_limits *lim, const char *msg,
                        size_t offset)
{
    json_error e;
    memset(&e, 0, sizeof e);
    if (json_parse(d, s, len, lim, &e)) {
        test_fail(__FILE__, __LINE__, "expected \"%s\" but the parse succeeded", msg);
        return;
    }
    if (!strstr(e.msg, msg))
        test_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", e.msg, msg);
    if (e.offset != offset)
        test_fail(__FILE__, __LINE__, "\"%s\" at offset %zu, expected %zu", e.msg, e.offset, offset);
}

static char *nested(size_t depth, char open, char close)
{
    char *s = malloc(2 * depth + 1);
    memset(s, open, depth);
    memset(s + depth, close, depth);
    s[2 * depth] = '\0';
    return s;
}

TEST(json_limits_depth)
{
    json_doc d = JSON_DOC_INIT;
    char *ok = nested(64, '[', ']'), *deep = nested(65, '[', ']');
    CHECK(json_parse(&d, ok, strlen(ok), NULL, NULL));
    CHECK_EQ_U64(d.n, 64);
    reject_with(&d, deep, strlen(deep), NULL, "nesting deeper than 64 (limit max_depth)", 64);
    free(ok);
    free(deep);

    /* A zero field means the default. */
    json_limits zero = {0, 0};
    deep = nested(65, '[', ']');
    reject_with(&d, deep, strlen(deep), &zero, "nesting deeper than 64", 64);
    free(deep);
    /* Objects count the same; scalars do not add depth. */
    json_limits lim = {3, 0};
    CHECK(json_parse(&d, "{\"a\":[{\"b\":1}]}", 15, &lim, NULL));
    reject_with(&d, "{\"a\":[{\"b\":{}}]}", 16, &lim, "nesting deeper than 3", 11);
    /* The parser does not recurse, so a large limit is only a counter. */
    lim.max_depth = 200000;
    char *huge = nested(150000, '[', ']');
    CHECK(json_parse(&d, huge, strlen(huge), &lim, NULL));
    buf b = BUF_INIT;
    json_write_compact(&d, 0, &b);
    CHECK(b.len == strlen(huge) && memcmp(b.data, huge, b.len) == 0);
    buf_release(&b);
    free(huge);
    json_doc_release(&d);
}

TEST(json_limits_nodes)
{
    json_doc d = JSON_DOC_INIT;
    json_limits lim = {0, 5};
    CHECK(json_parse(&d, "[1,2,3,4]", 9, &lim, NULL));
    CHECK_EQ_U64(d.n, 5);
    reject_with(&d, "[1,2,3,4,5]", 11, &lim, "more than 5 nodes (limit max_nodes)", 9);
    /* Keys are nodes too. */
    CHECK(json_parse(&d, "{\"a\":1,\"b\":2}", 13, &lim, NULL));
    reject_with(&d, "{\"a\":1,\"b\":2,\"c\":3}", 19, &lim, "max_nodes", 13);
    json_doc_release(&d);
}

static void big_object(buf *b, size_t nkeys, const char *extra)
{
    buf_reset(b);
    buf_putc(b, '{');
    for (size_t i = 0; i < nkeys; i++)
        buf_printf(b, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    buf_puts(b, extra);
    buf_putc(b, '}');
}

TEST(json_big_object_keys)
{
    json_doc d = JSON_DOC_INIT;
    buf b = BUF_INIT;
    big_object(&b, 100000, "");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    json_error e;
    bool ok = json_parse(&d, b.data, b.len, NULL, &e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(ok);
    CHECK_EQ_U64(d.nodes[0].count, 100000);
    CHECK(secs < 2.0);   /* quadratic would take minutes */
    uint32_t v = json_object_get(&d, 0, "k99999");
    int64_t iv = 0;
    CHECK(v != UINT32_MAX && json_get_int64(&d, v, &iv) && iv == 99999);

    big_object(&b, 100000, ",\"k5\":0");
    reject_with(&d, b.data, b.len, NULL, "duplicate key \"k5\"", b.len - 7);
    big_object(&b, 100000, ",\"\\u006b77777\":0");
    reject_with(&d, b.data, b.len, NULL, "duplicate key \"\\u006b77777\"", b.len - 16);
    /* Just past the linear-scan size, the duplicate is of an early key. */
    big_object(&b, 16, ",\"k0\":0");
    reject_with(&d, b.data, b.len, NULL, "duplicate key \"k0\"", b.len - 7);
    big_object(&b, 17, ",\"k16\":0");
    reject_with(&d, b.data, b.len, NULL, "duplicate key \"k16\"", b.len - 8);

    /* Big objects side by side and nested share key names without clashing. */
    buf_reset(&b);
    buf_putc(&b, '[');
    for (int o = 0; o < 3; o++) {
        buf_puts(&b, o ? ",{" : "{");
        for (int k = 0; k < 40; k++)
            buf_printf(&b, "%s\"k%d\":%s", k ? "," : "", k, k == 20 ? "{\"k1\":1,\"k2\":2}" : "1");
        buf_putc(&b, '}');
    }
    buf_putc(&b, ']');
    CHECK(json_parse(&d, b.data, b.len, NULL, &e));
    buf_release(&b);
    json_doc_release(&d);
}

TEST(json_big_object_long_keys)
{
    /* Keys longer than the message cut-off are shortened in the message. */
    json_doc d = JSON_DOC_INIT;
    buf b = BUF_INIT;
    char key[201];
    memset(key, 'z', 200);
    key[200] = '\0';
    buf_printf(&b, "{\"%s\":1,\"%s\":2}", key, key);
    json_error e;
    CHECK(!json_parse(&d, b.data, b.len, NULL, &e));
    CHECK(strstr(e.msg, "duplicate key \"zzzz") && strstr(e.msg, "...\""));
    buf_release(&b);
    json_doc_release(&d);
}

TEST(json_put_string_escapes_and_reparses)
{
    buf b = BUF_INIT, dec = BUF_INIT;
    json_put_string(&b, "a\"b\\c\n\x01/\xc3\xa9\x7f", 11);
    CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001/\xc3\xa9\x7f\"");
    buf_reset(&b);
    json_put_string(&b, "", 0);
    CHECK_STR(b.data, "\"\"");
    buf_reset(&b);
    json_put_string(&b, NULL, 0);
    CHECK_STR(b.data, "\"\"");

    /* Every byte below 0x80, and some UTF-8, survives a round trip. */
    char all[128 + 9];
    for (int i = 0; i < 128; i++)
        all[i] = (char)i;
    memcpy(all + 128, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    buf_reset(&b);
    json_put_string(&b, all, sizeof all);
    json_doc d = JSON_DOC_INIT;
    if (parse(&d, b.data)) {
        CHECK(json_get_string(&d, 0, &dec));
        CHECK(dec.len == sizeof all && memcmp(dec.data, all, sizeof all) == 0);
    }
    CHECK(strstr(b.data, "\\b\\t\\n\\u000b\\f\\r\\u000e") != NULL);
    buf_release(&b);
    buf_release(&dec);
    json_doc_release(&d);
}

TEST(json_doc_reuse)
{
    json_doc d = JSON_DOC_INIT;
    buf b = BUF_INIT;
    big_object(&b, 1000, "");
    CHECK(json_parse(&d, b.data, b.len, NULL, NULL));
    json_node *nodes = d.nodes;
    uint32_t cap = d.cap;
    CHECK(parse(&d, "[1]"));
    CHECK(d.nodes == nodes && d.cap == cap && d.n == 2);   /* no reallocation */
    CHECK(!json_parse(&d, "[1,", 3, NULL, NULL));
    CHECK_EQ_U64(d.n, 0);
    json_doc_release(&d);
    CHECK(d.nodes == NULL && d.n == 0 && d.cap == 0);
    CHECK(parse(&d, "{\"a\":1}"));
    json_doc_release(&d);
    json_doc_release(&d);   /* twice is harmless */
    CHECK(!json_parse(&d, NULL, 0, NULL, NULL));
    buf_release(&b);
}

TEST(json_error_positions_multiline)
{
    json_doc d = JSON_DOC_INIT;
    json_error e;
    const char *s = "{\r\n  \"a\": 1,\n  \"b\": [1, 2,\n        3, 01]\n}";
    CHECK(!json_parse(&d, s, strlen(s), NULL, &e));
    CHECK(strstr(e.msg, "leading zero") != NULL);
    CHECK_EQ_U64(e.line, 4);
    CHECK_EQ_U64(e.col, 12);
    CHECK_EQ_U64(e.offset, (size_t)(strstr(s, "01") - s));
    json_doc_release(&d);
}
