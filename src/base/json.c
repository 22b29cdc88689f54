/* json.c — strict RFC 8259 parser into a flat node array, and writers.
 *
 * Design:
 * - One pass and no recursion.  While a container is open, its `next` field
 *   holds its parent's index (the real `next` is only known when it closes),
 *   so the open containers form a chain inside the node array itself: no
 *   separate stack, and deep nesting costs only a counter.
 * - The node array belongs to the doc and is reused across parses.  The only
 *   other allocations are for objects with more than SMALL_OBJECT_KEYS keys
 *   (a key hash set, freed before json_parse returns), so a typical parse
 *   allocates nothing.
 * - Strings are validated (escapes, UTF-8, control characters) but not
 *   decoded; decoding happens on demand.  Plain ASCII runs are skipped eight
 *   bytes at a time.
 * - Errors are formatted only on failure, and line/column are found then by
 *   rescanning the prefix, so the success path never counts lines.
 * - Big-object keys are hashed with SipHash-1-3 under a per-process random
 *   key: clients choose the keys, and a fixed hash would let them make every
 *   key collide and turn duplicate detection quadratic.
 */
#include "base/json.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/mem.h"

typedef unsigned char uchar;

#define DEFAULT_MAX_DEPTH 64u
#define DEFAULT_MAX_NODES 1000000u
#define NO_NODE UINT32_MAX
/* Up to this many keys a linear scan over the earlier keys beats hashing. */
#define SMALL_OBJECT_KEYS 16u
/* Longest key quoted in a "duplicate key" message before it is cut. */
#define MSG_KEY_MAX 64

typedef struct key_slot {
    uint32_t hash, obj, key;   /* key == 0 marks an empty slot (node 0 is never a key) */
} key_slot;

typedef struct parser {
    const uchar *base, *end;
    json_doc *doc;
    json_error *err;
    uint32_t max_depth, max_nodes;
    uint32_t stop;             /* min(doc->cap, max_nodes): adding node `stop` needs the slow path */
    key_slot *slots;           /* key set for objects with more than SMALL_OBJECT_KEYS keys */
    size_t nslots, used;
    buf scratch;               /* decoded escaped keys, for hashing */
} parser;

/* ---------------------------------------------------------------- errors */

static void locate(const uchar *base, size_t off, unsigned *line, unsigned *col)
{
    const uchar *p = base, *stop = base + off, *nl;
    size_t line_start = 0;
    unsigned n = 1;
    while (p < stop && (nl = memchr(p, '\n', (size_t)(stop - p))) != NULL) {
        n++;
        p = nl + 1;
        line_start = (size_t)(p - base);
    }
    *line = n;
    *col = (unsigned)(off - line_start + 1);
}

/* Returns NULL so that scanners can `return fail(...)`. */
__attribute__((cold, noinline, format(printf, 3, 4))) static const uchar *
fail(parser *ps, const uchar *at, const char *fmt, ...)
{
    json_error *e = ps->err;
    if (!e)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->offset = (size_t)(at - ps->base);
    locate(ps->base, e->offset, &e->line, &e->col);
    return NULL;
}

/* "character 'x'" for printable ASCII, "byte 0x0a" otherwise: a raw control
 * or non-ASCII byte in a message would be unreadable. */
static const char *describe_byte(uchar c, char out[20])
{
    if (c >= 0x20 && c < 0x7f)
        snprintf(out, 20, "character '%c'", c);
    else
        snprintf(out, 20, "byte 0x%02x", c);
    return out;
}

static const uchar *fail_unexpected(parser *ps, const uchar *at, const char *where)
{
    char what[20];
    if (at == ps->end)
        return fail(ps, at, "unexpected end of input%s", where);
    return fail(ps, at, "unexpected %s%s", describe_byte(*at, what), where);
}

/* ------------------------------------------------------------- UTF-8 */

enum utf8_status { UTF8_OK, UTF8_BAD_BYTE, UTF8_OVERLONG, UTF8_SURROGATE, UTF8_TOO_BIG, UTF8_TRUNCATED };

/* Check the multi-byte sequence at p (p[0] >= 0x80).  The second byte's
 * allowed range depends on the lead byte; that is where overlongs (E0, F0),
 * UTF-8-encoded surrogates (ED) and code points past U+10FFFF (F4) are told
 * apart from a plainly truncated sequence. */
static enum utf8_status utf8_sequence(const uchar *p, const uchar *end, size_t *len)
{
    uchar c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0xC2)
        return c >= 0xC0 ? UTF8_OVERLONG : UTF8_BAD_BYTE;
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return UTF8_BAD_BYTE;
    }
    if (end - p < 2 || (p[1] & 0xC0) != 0x80)
        return UTF8_TRUNCATED;
    if (p[1] < lo)
        return UTF8_OVERLONG;
    if (p[1] > hi)
        return c == 0xED ? UTF8_SURROGATE : UTF8_TOO_BIG;
    for (size_t i = 2; i < n; i++)
        if ((size_t)(end - p) <= i || (p[i] & 0xC0) != 0x80)
            return UTF8_TRUNCATED;
    *len = n;
    return UTF8_OK;
}

static const uchar *fail_utf8(parser *ps, const uchar *at, enum utf8_status st)
{
    switch (st) {
    case UTF8_OVERLONG:
        return fail(ps, at, "overlong UTF-8 encoding (lead byte 0x%02x) in string", *at);
    case UTF8_SURROGATE:
        return fail(ps, at, "UTF-8-encoded surrogate (U+D800..U+DFFF) in string");
    case UTF8_TOO_BIG:
        return fail(ps, at, "UTF-8 code point above U+10FFFF in string");
    case UTF8_TRUNCATED:
        return fail(ps, at, "truncated UTF-8 sequence (lead byte 0x%02x) in string", *at);
    default:
        return fail(ps, at, "invalid UTF-8 byte 0x%02x in string", *at);
    }
}

static inline uint64_t load64(const uchar *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

#define BYTES(x) (0x0101010101010101ull * (uint64_t)(x))

/* High bit set in the bytes of w that are '"', '\\', < 0x20 or >= 0x80, as
 * the classic "has a byte less than n" tests.  Borrows can flag bytes above
 * a true hit but never below one, so the lowest flagged byte is exact. */
static inline uint64_t special_bytes(uint64_t w)
{
    uint64_t q = w ^ BYTES('"'), b = w ^ BYTES('\\');
    uint64_t ctrl = (w - BYTES(0x20)) & ~w;
    uint64_t quote = (q - BYTES(1)) & ~q;
    uint64_t bslash = (b - BYTES(1)) & ~b;
    return (ctrl | quote | bslash | w) & BYTES(0x80);
}

bool json_utf8_valid(const char *s, size_t len, size_t *bad_offset)
{
    const uchar *p = (const uchar *)s, *end = p + len;
    if (!len)
        return true;
    while (p < end) {
        while (end - p >= 8 && (load64(p) & BYTES(0x80)) == 0)
            p += 8;
        if (p == end)
            break;
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n;
        if (utf8_sequence(p, end, &n) != UTF8_OK) {
            if (bad_offset)
                *bad_offset = (size_t)(p - (const uchar *)s);
            return false;
        }
        p += n;
    }
    return true;
}

/* ------------------------------------------------------------- escapes */

static int hex_digit(uchar c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Value of four hex digits, or -1 if one is not a hex digit. */
static int32_t hex4(const uchar *p)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t utf8_encode(uint32_t cp, uchar out[4])
{
    if (cp < 0x80) {
        out[0] = (uchar)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uchar)(0xC0 | cp >> 6);
        out[1] = (uchar)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uchar)(0xE0 | cp >> 12);
        out[1] = (uchar)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uchar)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uchar)(0xF0 | cp >> 18);
    out[1] = (uchar)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uchar)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uchar)(0x80 | (cp & 0x3F));
    return 4;
}

static bool is_high_surrogate(int32_t u) { return u >= 0xD800 && u <= 0xDBFF; }
static bool is_low_surrogate(int32_t u) { return u >= 0xDC00 && u <= 0xDFFF; }

/* Decode the escape at *pp (a backslash) of an already validated string into
 * out; advance *pp past it and return the number of bytes written. */
static size_t decode_escape(const uchar **pp, uchar out[4])
{
    const uchar *p = *pp;
    *pp = p + 2;
    switch (p[1]) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u': break;
    default: out[0] = p[1]; return 1;   /* '"', '\\', '/' */
    }
    uint32_t cp = (uint32_t)hex4(p + 2);
    *pp = p + 6;
    if (is_high_surrogate((int32_t)cp)) {
        uint32_t lo = (uint32_t)hex4(p + 8);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        *pp = p + 12;
    }
    return utf8_encode(cp, out);
}

/* Decode the inside of a validated string; out needs room for n bytes
 * (decoding never lengthens: every escape is longer than its UTF-8). */
static size_t decode_string(const uchar *s, size_t n, uchar *out)
{
    const uchar *end = s + n;
    uchar *w = out;
    while (s < end) {
        const uchar *bs = memchr(s, '\\', (size_t)(end - s));
        size_t run = (size_t)((bs ? bs : end) - s);
        memcpy(w, s, run);
        w += run;
        s += run;
        if (bs)
            w += decode_escape(&s, w);
    }
    return (size_t)(w - out);
}

/* Yields the decoded bytes of a validated string one at a time, so that
 * escaped strings compare without a buffer. */
typedef struct str_cursor {
    const uchar *p, *end;
    uchar pending[4];
    uint8_t at, n;
} str_cursor;

static str_cursor cursor_of(const char *src, const json_node *nd)
{
    str_cursor c = {(const uchar *)src + nd->start + 1, (const uchar *)src + nd->start + nd->len - 1, {0}, 0, 0};
    return c;
}

static int cursor_next(str_cursor *c)
{
    if (c->at < c->n)
        return c->pending[c->at++];
    if (c->p == c->end)
        return -1;
    if (*c->p != '\\')
        return *c->p++;
    c->n = (uint8_t)decode_escape(&c->p, c->pending);
    c->at = 1;
    return c->pending[0];
}

static bool string_nodes_equal(const char *src, const json_node *a, const json_node *b)
{
    if (!((a->flags | b->flags) & JSON_F_ESCAPED))
        return a->len == b->len && memcmp(src + a->start, src + b->start, a->len) == 0;
    str_cursor x = cursor_of(src, a), y = cursor_of(src, b);
    for (;;) {
        int cx = cursor_next(&x), cy = cursor_next(&y);
        if (cx != cy)
            return false;
        if (cx < 0)
            return true;
    }
}

static bool string_node_equals(const char *src, const json_node *nd, const char *s, size_t n)
{
    if (!(nd->flags & JSON_F_ESCAPED))
        return nd->len - 2 == n && memcmp(src + nd->start + 1, s, n) == 0;
    str_cursor c = cursor_of(src, nd);
    for (size_t i = 0; i < n; i++)
        if (cursor_next(&c) != (uchar)s[i])
            return false;
    return cursor_next(&c) < 0;
}

/* ------------------------------------------------------------- scanners */

static inline const uchar *skip_ws(const uchar *p, const uchar *end)
{
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* The four hex digits of a \u escape at p (the backslash).  Running out of
 * input first is an unterminated string, not a bad escape. */
static const uchar *scan_hex4(parser *ps, const uchar *p, const uchar *open, int32_t *u)
{
    for (int i = 2; i < 6; i++) {
        if (p + i == ps->end)
            return fail(ps, open, "unterminated string");
        if (hex_digit(p[i]) < 0)
            return fail(ps, p, "invalid \\u escape in string: expected 4 hex digits");
    }
    *u = hex4(p + 2);
    return p + 6;
}

/* p at a backslash; returns the position after the escape. */
static const uchar *scan_escape(parser *ps, const uchar *p, const uchar *open)
{
    const uchar *end = ps->end, *q;
    if (end - p < 2)
        return fail(ps, open, "unterminated string");
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 2;
    case 'u':
        break;
    default: {
        char what[20];
        return fail(ps, p, "invalid escape '\\' followed by %s in string", describe_byte(p[1], what));
    }
    }
    int32_t u, lo;
    if (!(q = scan_hex4(ps, p, open, &u)))
        return NULL;
    if (is_low_surrogate(u))
        return fail(ps, p, "unpaired surrogate \\u%04X in string (low surrogate without a high one)", (unsigned)u);
    if (!is_high_surrogate(u))
        return q;
    if (q == end || (q[0] == '\\' && q + 1 == end))
        return fail(ps, open, "unterminated string");
    if (q[0] == '\\' && q[1] == 'u') {
        const uchar *r = scan_hex4(ps, q, open, &lo);
        if (!r)
            return NULL;
        if (is_low_surrogate(lo))
            return r;
    }
    return fail(ps, p, "unpaired surrogate \\u%04X in string (high surrogate not followed by a low one)",
                (unsigned)u);
}

/* Bytes that need no attention inside a string: printable ASCII but '"' and '\\'. */
static const uchar plain_byte[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* 0x22 '"' */
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,   /* 0x5c '\\' */
    R16(1), R16(1),
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};

/* First byte at or after p that is not plain string content. */
static inline const uchar *skip_plain(const uchar *p, const uchar *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t m = special_bytes(load64(p));
        if (m)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && plain_byte[*p])
        p++;
    return p;
}

/* p at the opening quote; returns the position after the closing quote. */
static const uchar *scan_string(parser *ps, const uchar *p, uint32_t *flags)
{
    const uchar *open = p, *end = ps->end;
    p++;
    for (;;) {
        p = skip_plain(p, end);
        if (p == end)
            return fail(ps, open, "unterminated string");
        uchar c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            *flags |= JSON_F_ESCAPED;
            if (!(p = scan_escape(ps, p, open)))
                return NULL;
        } else if (c < 0x20) {
            return fail(ps, p, "unescaped control character 0x%02x in string", c);
        } else {
            size_t n;
            enum utf8_status st = utf8_sequence(p, end, &n);
            if (st != UTF8_OK)
                return fail_utf8(ps, p, st);
            p += n;
        }
    }
}

static inline bool is_digit(uchar c) { return (unsigned)(c - '0') < 10; }

static const uchar *skip_digits(const uchar *p, const uchar *end)
{
    while (p < end && is_digit(*p))
        p++;
    return p;
}

static bool starts_with(const uchar *p, const uchar *end, const char *word, size_t n)
{
    return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

/* p at '-' or a digit.  The RFC grammar, exactly:
 *   '-'? ('0' | [1-9][0-9]*) ('.' [0-9]+)? ([eE] [+-]? [0-9]+)? */
static const uchar *scan_number(parser *ps, const uchar *p, uint32_t *flags)
{
    const uchar *end = ps->end;
    if (*p == '-') {
        if (starts_with(p + 1, end, "Infinity", 8))
            return fail(ps, p, "-Infinity is not valid JSON");
        p++;
        if (p == end || !is_digit(*p))
            return fail_unexpected(ps, p, ", expected a digit after '-'");
    }
    if (*p == '0') {
        if (p + 1 < end && is_digit(p[1]))
            return fail(ps, p, "number has a leading zero");
        if (p + 1 < end && (p[1] | 0x20) == 'x')
            return fail(ps, p + 1, "hexadecimal numbers are not valid JSON");
        p++;
    } else {
        p = skip_digits(p, end);
    }
    uint32_t integer = JSON_F_INTEGER;
    if (p < end && *p == '.') {
        p++;
        if (p == end || !is_digit(*p))
            return fail_unexpected(ps, p, ", expected a digit after the decimal point");
        p = skip_digits(p, end);
        integer = 0;
    }
    if (p < end && (*p | 0x20) == 'e') {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return fail_unexpected(ps, p, ", expected a digit in the exponent");
        p = skip_digits(p, end);
        integer = 0;
    }
    *flags = integer;
    return p;
}

static const uchar *scan_literal(parser *ps, const uchar *p, const char *word, size_t n)
{
    if (starts_with(p, ps->end, word, n))
        return p + n;
    size_t i = 1;
    while (p + i < ps->end && p[i] == (uchar)word[i])
        i++;
    char where[40];
    snprintf(where, sizeof where, " in literal, expected '%s'", word);
    return fail_unexpected(ps, p + i, where);
}

/* Something that cannot start a value.  Name the usual mistakes. */
static const uchar *fail_value(parser *ps, const uchar *p)
{
    const uchar *end = ps->end;
    if (p == end)
        return fail(ps, p, "unexpected end of input, expected a JSON value");
    if (starts_with(p, end, "NaN", 3))
        return fail(ps, p, "NaN is not valid JSON");
    if (starts_with(p, end, "Infinity", 8))
        return fail(ps, p, "Infinity is not valid JSON");
    if (*p == '+')
        return fail(ps, p, "a number cannot start with '+'");
    if (*p == '.')
        return fail(ps, p, "a number cannot start with '.'");
    if (*p == '\'')
        return fail(ps, p, "strings must be in double quotes, not single quotes");
    if (p == ps->base && starts_with(p, end, "\xEF\xBB\xBF", 3))
        return fail(ps, p, "byte order mark (U+FEFF) is not allowed");
    return fail_unexpected(ps, p, ", expected a JSON value");
}

/* ------------------------------------------------------------- key set */

static uint64_t sip_key[2];
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_seed(void)
{
    if (getrandom(sip_key, sizeof sip_key, GRND_NONBLOCK) == (ssize_t)sizeof sip_key)
        return;
    /* Without the entropy pool the hash is only as good as this guess; the
     * parser stays correct either way. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sip_key[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&ts;
    sip_key[1] = (uint64_t)ts.tv_sec * 0xC2B2AE3D27D4EB4Full ^ (uint64_t)(uintptr_t)&sip_key;
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

static inline void sip_round(uint64_t v[4])
{
    v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
    v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

/* SipHash-1-3 (one compression round, three finalization rounds). */
static uint64_t siphash13(const uint64_t k[2], const uchar *s, size_t n)
{
    uint64_t v[4] = {k[0] ^ 0x736f6d6570736575ull, k[1] ^ 0x646f72616e646f6dull,
                     k[0] ^ 0x6c7967656e657261ull, k[1] ^ 0x7465646279746573ull};
    const uchar *end = s + (n & ~(size_t)7);
    for (; s < end; s += 8) {
        uint64_t m = load64(s);
        v[3] ^= m;
        sip_round(v);
        v[0] ^= m;
    }
    uint64_t last = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++)
        last |= (uint64_t)s[i] << (8 * i);
    v[3] ^= last;
    sip_round(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    sip_round(v);
    sip_round(v);
    sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static uint32_t key_hash(parser *ps, uint32_t obj, const json_node *k)
{
    const uchar *s = ps->base + k->start + 1;
    size_t n = k->len - 2;
    if (k->flags & JSON_F_ESCAPED) {
        buf_reset(&ps->scratch);
        buf_reserve(&ps->scratch, n);
        n = decode_string(s, n, (uchar *)ps->scratch.data);
        s = (const uchar *)ps->scratch.data;
    }
    uint64_t h = siphash13(sip_key, s, n);
    /* Keys of different objects share the table; mixing in the object keeps
     * a popular key name from piling up in one chain. */
    return (uint32_t)(h ^ h >> 32) ^ obj * 0x9E3779B9u;
}

static void keyset_place(key_slot *slots, size_t nslots, key_slot s)
{
    size_t mask = nslots - 1, i = s.hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = s;
}

static void keyset_grow(parser *ps)
{
    size_t nslots = ps->nslots ? ps->nslots * 2 : 256;
    key_slot *slots = xcalloc(nslots, sizeof *slots);
    for (size_t i = 0; i < ps->nslots; i++)
        if (ps->slots[i].key)
            keyset_place(slots, nslots, ps->slots[i]);
    free(ps->slots);
    ps->slots = slots;
    ps->nslots = nslots;
}

/* Returns the earlier equal key of the same object, or 0 after adding key. */
static uint32_t keyset_add(parser *ps, const json_node *nodes, uint32_t obj, uint32_t key)
{
    if ((ps->used + 1) * 2 > ps->nslots)
        keyset_grow(ps);
    uint32_t h = key_hash(ps, obj, &nodes[key]);
    size_t mask = ps->nslots - 1, i = h & mask;
    for (; ps->slots[i].key; i = (i + 1) & mask) {
        const key_slot *s = &ps->slots[i];
        if (s->hash == h && s->obj == obj
            && string_nodes_equal((const char *)ps->base, &nodes[s->key], &nodes[key]))
            return s->key;
    }
    ps->slots[i] = (key_slot){h, obj, key};
    ps->used++;
    return 0;
}

static const uchar *fail_duplicate(parser *ps, const json_node *k)
{
    const uchar *s = ps->base + k->start + 1;
    size_t n = k->len - 2;
    const char *cut = "";
    if (n > MSG_KEY_MAX) {
        n = MSG_KEY_MAX;
        while (n > 0 && (s[n] & 0xC0) == 0x80)   /* do not split a UTF-8 sequence */
            n--;
        cut = "...";
    }
    return fail(ps, s - 1, "duplicate key \"%.*s%s\"", (int)n, (const char *)s, cut);
}

/* key is the newest key of obj, whose count already includes it. */
static bool check_unique_key(parser *ps, const json_node *nodes, uint32_t obj, uint32_t key)
{
    const json_node *nk = &nodes[key];
    uint32_t count = nodes[obj].count;
    if (count <= SMALL_OBJECT_KEYS) {
        /* Earlier values are complete, so their `next` leads to the next key.
         * Unescaped keys of different lengths differ: skip them cheaply. */
        for (uint32_t k = obj + 1; k != key; k = nodes[k + 1].next)
            if ((nodes[k].len == nk->len || ((nodes[k].flags | nk->flags) & JSON_F_ESCAPED))
                && string_nodes_equal((const char *)ps->base, &nodes[k], nk))
                return fail_duplicate(ps, nk) != NULL;
        return true;
    }
    if (count == SMALL_OBJECT_KEYS + 1) {
        pthread_once(&sip_once, sip_seed);
        for (uint32_t k = obj + 1; k != key; k = nodes[k + 1].next)
            keyset_add(ps, nodes, obj, k);   /* known distinct */
    }
    if (keyset_add(ps, nodes, obj, key))
        return fail_duplicate(ps, &nodes[key]) != NULL;
    return true;
}

/* ------------------------------------------------------------- parser */

/* The slow path of the driver's capacity check: grow, or hit max_nodes. */
static bool make_room(parser *ps, uint32_t n, const uchar *at)
{
    json_doc *d = ps->doc;
    if (n >= ps->max_nodes)
        return fail(ps, at, "more than %u nodes (limit max_nodes)", ps->max_nodes) != NULL;
    size_t cap = d->cap;
    d->nodes = xgrow(d->nodes, &cap, (size_t)n + 1, sizeof *d->nodes);
    d->cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    ps->stop = d->cap < ps->max_nodes ? d->cap : ps->max_nodes;
    return true;
}

static inline json_node *init_node(json_node *nd, json_kind kind, uint32_t start)
{
    nd->kind = kind;
    nd->start = start;
    nd->count = 0;
    nd->flags = 0;
    return nd;
}

/* Scan the scalar at p into nd (kind already set); returns the end. */
static const uchar *scan_scalar(parser *ps, json_node *nd, const uchar *p)
{
    switch (nd->kind) {
    case JSON_STRING: return scan_string(ps, p, &nd->flags);
    case JSON_NUMBER: return scan_number(ps, p, &nd->flags);
    case JSON_TRUE: return scan_literal(ps, p, "true", 4);
    case JSON_FALSE: return scan_literal(ps, p, "false", 5);
    default: return scan_literal(ps, p, "null", 4);
    }
}

/* 1 + the kind of value a byte starts; 0 when it cannot start one. */
static const uint8_t value_kind[256] = {
    ['"'] = JSON_STRING + 1, ['-'] = JSON_NUMBER + 1,
    ['0'] = JSON_NUMBER + 1, ['1'] = JSON_NUMBER + 1, ['2'] = JSON_NUMBER + 1,
    ['3'] = JSON_NUMBER + 1, ['4'] = JSON_NUMBER + 1, ['5'] = JSON_NUMBER + 1,
    ['6'] = JSON_NUMBER + 1, ['7'] = JSON_NUMBER + 1, ['8'] = JSON_NUMBER + 1,
    ['9'] = JSON_NUMBER + 1, ['t'] = JSON_TRUE + 1, ['f'] = JSON_FALSE + 1,
    ['n'] = JSON_NULL + 1, ['['] = JSON_ARRAY + 1, ['{'] = JSON_OBJECT + 1,
};

/* The state machine.  Open containers are chained through `next` (see the
 * top of the file); `cur` is the innermost one.  The node array, its length
 * and capacity live in locals: stores into nodes could otherwise alias them
 * and force a reload after every field written. */
static bool parse_document(parser *ps)
{
    const uchar *base = ps->base, *end = ps->end, *p = skip_ws(base, end), *q;
    json_doc *d = ps->doc;
    json_node *nodes = d->nodes, *nd;
    uint32_t n = 0, stop = ps->stop, cur = NO_NODE, depth = 0, idx;

value:
    if (p == end || !value_kind[*p])
        return fail_value(ps, p) != NULL;
    if (n == stop) {
        if (!make_room(ps, n, p))
            return false;
        nodes = d->nodes;
        stop = ps->stop;
    }
    idx = n++;
    nd = init_node(&nodes[idx], (json_kind)(value_kind[*p] - 1), (uint32_t)(p - base));
    if (nd->kind == JSON_ARRAY || nd->kind == JSON_OBJECT) {
        if (++depth > ps->max_depth)
            return fail(ps, p, "nesting deeper than %u (limit max_depth)", ps->max_depth) != NULL;
        nd->next = cur;
        cur = idx;
        p = skip_ws(p + 1, end);
        if (p < end && *p == (nd->kind == JSON_ARRAY ? ']' : '}'))
            goto close;
        if (nd->kind == JSON_OBJECT)
            goto key;
        nd->count = 1;
        goto value;
    }
    if (!(q = scan_scalar(ps, nd, p)))
        return false;
    nd->len = (uint32_t)(q - p);
    nd->next = idx + 1;
    p = q;

after_value:
    if (cur == NO_NODE)
        goto done;
    p = skip_ws(p, end);
    nd = &nodes[cur];
    if (p < end && *p == ',') {
        const uchar *comma = p;
        p = skip_ws(p + 1, end);
        if (nd->kind == JSON_ARRAY) {
            if (p < end && *p == ']')
                return fail(ps, comma, "trailing comma in array") != NULL;
            nd->count++;
            goto value;
        }
        if (p < end && *p == '}')
            return fail(ps, comma, "trailing comma in object") != NULL;
        goto key;
    }
    if (p < end && *p == (nd->kind == JSON_ARRAY ? ']' : '}'))
        goto close;
    if (nd->kind == JSON_ARRAY)
        return fail_unexpected(ps, p, p == end ? " in array" : " after array element, expected ',' or ']'") != NULL;
    return fail_unexpected(ps, p, p == end ? " in object" : " after object value, expected ',' or '}'") != NULL;

close:
    /* nd is the container at cur; p at its closing bracket. */
    nd->len = (uint32_t)(p + 1 - base) - nd->start;
    cur = nd->next;
    nd->next = n;
    depth--;
    p++;
    goto after_value;

key:
    if (p == end || *p != '"')
        return fail_unexpected(ps, p, p == end ? " in object" : " in object, expected a string key") != NULL;
    if (n == stop) {
        if (!make_room(ps, n, p))
            return false;
        nodes = d->nodes;
        stop = ps->stop;
    }
    idx = n++;
    nd = init_node(&nodes[idx], JSON_STRING, (uint32_t)(p - base));
    if (!(q = scan_string(ps, p, &nd->flags)))
        return false;
    nd->len = (uint32_t)(q - p);
    nd->next = idx + 1;
    nodes[cur].count++;
    if (!check_unique_key(ps, nodes, cur, idx))
        return false;
    p = skip_ws(q, end);
    if (p == end || *p != ':')
        return fail_unexpected(ps, p, p == end ? " in object" : " after object key, expected ':'") != NULL;
    p = skip_ws(p + 1, end);
    goto value;

done:
    p = skip_ws(p, end);
    if (p != end)
        return fail(ps, p, "trailing characters after the JSON value") != NULL;
    d->n = n;
    return true;
}

bool json_parse(json_doc *doc, const char *src, size_t len, const json_limits *limits, json_error *err)
{
    doc->src = src;
    doc->src_len = len;
    doc->n = 0;
    if (len > UINT32_MAX) {
        if (err) {
            err->offset = 0;
            err->line = err->col = 1;
            snprintf(err->msg, sizeof err->msg, "input of %zu bytes is larger than the 4294967295-byte maximum", len);
        }
        return false;
    }
    parser ps = {0};
    ps.base = (const uchar *)(src ? src : "");
    ps.end = ps.base + len;
    ps.doc = doc;
    ps.err = err;
    ps.max_depth = limits && limits->max_depth ? limits->max_depth : DEFAULT_MAX_DEPTH;
    ps.max_nodes = limits && limits->max_nodes ? limits->max_nodes : DEFAULT_MAX_NODES;
    ps.stop = doc->cap < ps.max_nodes ? doc->cap : ps.max_nodes;
    bool ok = parse_document(&ps);
    if (ps.slots) {
        free(ps.slots);
        buf_release(&ps.scratch);
    }
    if (!ok)
        doc->n = 0;
    return ok;
}

void json_doc_release(json_doc *doc)
{
    free(doc->nodes);
    *doc = (json_doc)JSON_DOC_INIT;
}

/* ------------------------------------------------------------- access */

static const json_node *node_of(const json_doc *d, uint32_t i, json_kind kind)
{
    if (i >= d->n || d->nodes[i].kind != kind)
        return NULL;
    return &d->nodes[i];
}

uint32_t json_object_get(const json_doc *d, uint32_t obj, const char *key)
{
    const json_node *o = node_of(d, obj, JSON_OBJECT);
    if (!o)
        return UINT32_MAX;
    size_t n = strlen(key);
    uint32_t k = obj + 1;
    for (uint32_t i = 0; i < o->count; i++, k = d->nodes[k + 1].next)
        if (string_node_equals(d->src, &d->nodes[k], key, n))
            return k + 1;
    return UINT32_MAX;
}

bool json_string_eq(const json_doc *d, uint32_t i, const char *s)
{
    const json_node *nd = node_of(d, i, JSON_STRING);
    return nd && string_node_equals(d->src, nd, s, strlen(s));
}

bool json_get_string(const json_doc *d, uint32_t i, buf *out)
{
    const json_node *nd = node_of(d, i, JSON_STRING);
    if (!nd)
        return false;
    const uchar *s = (const uchar *)d->src + nd->start + 1;
    size_t n = nd->len - 2;
    buf_reset(out);
    buf_reserve(out, n);
    if (nd->flags & JSON_F_ESCAPED) {
        n = decode_string(s, n, (uchar *)out->data);
    } else if (n) {
        memcpy(out->data, s, n);
    }
    out->len = n;
    out->data[n] = '\0';
    return true;
}

bool json_get_int64(const json_doc *d, uint32_t i, int64_t *out)
{
    const json_node *nd = node_of(d, i, JSON_NUMBER);
    if (!nd || !(nd->flags & JSON_F_INTEGER))
        return false;
    const uchar *p = (const uchar *)d->src + nd->start, *end = p + nd->len;
    bool neg = *p == '-';
    p += neg;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (; p < end; p++) {
        unsigned dig = (unsigned)(*p - '0');
        if (v > (limit - dig) / 10)
            return false;
        v = v * 10 + dig;
    }
    /* Negate in the unsigned domain's complement so that INT64_MIN needs no
     * out-of-range conversion. */
    *out = !neg ? (int64_t)v : v == 0 ? 0 : -(int64_t)(v - 1) - 1;
    return true;
}

bool json_get_double(const json_doc *d, uint32_t i, double *out)
{
    const json_node *nd = node_of(d, i, JSON_NUMBER);
    if (!nd)
        return false;
    char local[64];
    char *tmp = nd->len < sizeof local ? local : xmalloc((size_t)nd->len + 1);
    memcpy(tmp, d->src + nd->start, nd->len);
    tmp[nd->len] = '\0';
    double v = strtod(tmp, NULL);
    if (tmp != local)
        free(tmp);
    if (isinf(v))
        return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------- writing */

typedef struct write_frame {
    uint32_t end;      /* index just past the container's subtree */
    uint32_t child;    /* children written so far */
    bool object;
} write_frame;

typedef struct write_stack {
    write_frame local[32], *frames;
    size_t top, cap;
} write_stack;

static void write_push(write_stack *st, write_frame f)
{
    if (st->top == st->cap) {
        size_t cap = st->cap;
        if (st->frames == st->local) {
            st->frames = xmalloc(cap * 2 * sizeof *st->frames);
            memcpy(st->frames, st->local, cap * sizeof *st->frames);
            st->cap = cap * 2;
        } else {
            st->frames = xgrow(st->frames, &st->cap, cap + 1, sizeof *st->frames);
        }
    }
    st->frames[st->top++] = f;
}

void json_write_compact(const json_doc *d, uint32_t i, buf *out)
{
    if (i >= d->n)
        return;
    const json_node *nodes = d->nodes;
    /* Dropping whitespace never lengthens the text, so one reservation
     * covers the whole subtree. */
    buf_reserve(out, nodes[i].len);
    char *w = out->data + out->len;
    write_stack st;
    st.frames = st.local;
    st.top = 0;
    st.cap = sizeof st.local / sizeof st.local[0];
    uint32_t j = i, end = nodes[i].next;
    while (j < end) {
        if (st.top) {
            write_frame *f = &st.frames[st.top - 1];
            if (f->child)
                *w++ = f->object && (f->child & 1) ? ':' : ',';
            f->child++;
        }
        const json_node *nd = &nodes[j];
        if (nd->kind == JSON_ARRAY || nd->kind == JSON_OBJECT) {
            bool object = nd->kind == JSON_OBJECT;
            *w++ = object ? '{' : '[';
            if (nd->count) {
                write_push(&st, (write_frame){nd->next, 0, object});
                j++;
                continue;
            }
            *w++ = object ? '}' : ']';
        } else {
            memcpy(w, d->src + nd->start, nd->len);
            w += nd->len;
        }
        j = nd->next;
        while (st.top && j == st.frames[st.top - 1].end)
            *w++ = st.frames[--st.top].object ? '}' : ']';
    }
    if (st.frames != st.local)
        free(st.frames);
    out->len = (size_t)(w - out->data);
    *w = '\0';
}

static void put_escape(buf *out, uchar c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    switch (c) {
    case '"': e[1] = '"'; break;
    case '\\': e[1] = '\\'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    default:
        memcpy(e + 1, "u00", 3);
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        buf_put(out, e, 6);
        return;
    }
    buf_put(out, e, 2);
}

void json_put_string(buf *out, const char *s, size_t len)
{
    buf_reserve(out, len + 2);
    buf_putc(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        uchar c = (uchar)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_put(out, s + run, i - run);
        put_escape(out, c);
        run = i + 1;
    }
    if (len > run)
        buf_put(out, s + run, len - run);
    buf_putc(out, '"');
}
