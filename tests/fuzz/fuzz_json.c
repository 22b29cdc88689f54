/* fuzz_json.c — libFuzzer target for the JSON parser.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc \
 *       tests/fuzz/fuzz_json.c src/base/json.c src/base/buf.c src/base/mem.c -o build-fuzz/fuzz_json
 *   build-fuzz/fuzz_json -max_total_time=60 tests/fuzz/corpus/json
 *
 * Besides memory safety it checks what the rest of payi relies on: the tree
 * is well formed, compact output re-parses and is a fixed point, it equals
 * the input minus whitespace outside strings, decoded strings are valid UTF-8
 * and survive json_put_string, integers agree with strtoll, and tighter
 * limits reject exactly the documents that exceed them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"

#define EXPECT(cond)                                                                  \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz_json: %s:%d: expectation failed: %s\n", __FILE__, \
                    __LINE__, #cond);                                                 \
            abort();                                                                  \
        }                                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Reused across runs, as a server reuses them across requests. */
static json_doc doc = JSON_DOC_INIT, doc2 = JSON_DOC_INIT, tiny = JSON_DOC_INIT;
static buf out1, out2, text, again, key;

static void check_error(const json_error *e, const char *src, size_t size)
{
    EXPECT(e->offset <= size);
    EXPECT(e->msg[0] != '\0');
    EXPECT(e->line >= 1 && e->col >= 1);
    unsigned line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < e->offset; i++)
        if (src[i] == '\n')
            line++, line_start = i + 1;
    EXPECT(e->line == line && e->col == e->offset - line_start + 1);
}

/* Checks the tree shape and returns the deepest container nesting. */
static unsigned check_tree(const json_doc *d, size_t size)
{
    uint32_t open[65], top = 0;   /* ends of the enclosing non-empty containers */
    unsigned deepest = 0;
    EXPECT(d->n >= 1 && d->nodes[0].next == d->n);
    for (uint32_t i = 0; i < d->n; i++) {
        const json_node *nd = &d->nodes[i];
        while (top && open[top - 1] == i)
            top--;
        EXPECT(nd->start < size && nd->len >= 1 && (size_t)nd->start + nd->len <= size);
        EXPECT(nd->next > i && nd->next <= d->n);
        if (nd->kind != JSON_ARRAY && nd->kind != JSON_OBJECT) {
            EXPECT(nd->next == i + 1 && nd->count == 0);
            continue;
        }
        uint32_t children = 0;
        for (uint32_t c = i + 1; c < nd->next; c = d->nodes[c].next) {
            const json_node *ch = &d->nodes[c];
            EXPECT(ch->start > nd->start && ch->start + ch->len < nd->start + nd->len);
            if (nd->kind == JSON_OBJECT && children % 2 == 0) {
                EXPECT(ch->kind == JSON_STRING);
                /* Keys are unique, so looking one up finds its own value. */
                EXPECT(json_get_string(d, c, &key));
                if (!memchr(key.data, '\0', key.len))
                    EXPECT(json_object_get(d, i, key.data) == c + 1);
            }
            children++;
        }
        EXPECT(children == (nd->kind == JSON_OBJECT ? 2 * nd->count : nd->count));
        if (top + 1 > deepest)
            deepest = top + 1;
        if (nd->next > i + 1) {
            EXPECT(top < sizeof open / sizeof open[0]);   /* default max_depth is 64 */
            open[top++] = nd->next;
        }
    }
    return deepest;
}

/* The input with whitespace outside strings removed, computed without the
 * parser's help, to hold json_write_compact against. */
static void strip_whitespace(const char *s, size_t n, buf *b)
{
    bool in_string = false;
    buf_reset(b);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\') {
                buf_putc(b, c);
                c = s[++i];
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        }
        buf_putc(b, c);
    }
}

static void check_strings_and_numbers(const json_doc *d)
{
    for (uint32_t i = 0; i < d->n; i++) {
        const json_node *nd = &d->nodes[i];
        if (nd->kind == JSON_STRING) {
            EXPECT(json_get_string(d, i, &text));
            EXPECT(json_utf8_valid(text.data, text.len, NULL));
            EXPECT(text.len <= nd->len - 2);
            buf_reset(&again);
            json_put_string(&again, text.data, text.len);
            EXPECT(json_parse(&doc2, again.data, again.len, NULL, NULL));
            EXPECT(doc2.n == 1 && json_get_string(&doc2, 0, &out2));
            EXPECT(out2.len == text.len && memcmp(out2.data, text.data, text.len) == 0);
            if (!memchr(text.data, '\0', text.len))
                EXPECT(json_string_eq(d, i, text.data));
        } else if (nd->kind == JSON_NUMBER) {
            int64_t v;
            double dv;
            bool fits = json_get_int64(d, i, &v);
            if (nd->flags & JSON_F_INTEGER) {
                char tmp[400];
                if (nd->len < sizeof tmp) {
                    memcpy(tmp, d->src + nd->start, nd->len);
                    tmp[nd->len] = '\0';
                    errno = 0;
                    long long ref = strtoll(tmp, NULL, 10);
                    EXPECT(fits == (errno != ERANGE));
                    EXPECT(!fits || v == ref);
                }
            } else {
                EXPECT(!fits);
            }
            (void)json_get_double(d, i, &dv);
        }
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *src = (const char *)data;
    json_error err;
    if (!json_parse(&doc, src, size, NULL, &err)) {
        check_error(&err, src, size);
        /* Stricter limits cannot make a bad document good. */
        json_limits lim = {4, 50};
        EXPECT(!json_parse(&tiny, src, size, &lim, NULL));
        return 0;
    }
    /* Everything outside strings is ASCII, and strings were validated. */
    EXPECT(json_utf8_valid(src, size, NULL));
    unsigned deepest = check_tree(&doc, size);

    buf_reset(&out1);
    json_write_compact(&doc, 0, &out1);
    strip_whitespace(src, size, &text);
    EXPECT(out1.len == text.len && memcmp(out1.data, text.data, text.len) == 0);
    EXPECT(json_parse(&doc2, out1.data, out1.len, NULL, &err));
    EXPECT(doc2.n == doc.n);
    buf_reset(&out2);
    json_write_compact(&doc2, 0, &out2);
    EXPECT(out1.len == out2.len && memcmp(out1.data, out2.data, out1.len) == 0);

    json_limits lim = {4, 50};
    bool within = deepest <= 4 && doc.n <= 50;
    EXPECT(json_parse(&tiny, src, size, &lim, &err) == within);
    if (!within)
        EXPECT(strstr(err.msg, "limit max_") != NULL);

    check_strings_and_numbers(&doc);
    return 0;
}
