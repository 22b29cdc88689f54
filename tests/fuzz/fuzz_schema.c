/* libFuzzer target for src/spec/schema: a fixed schema with one field of
 * each type, defaults and CHECKs.  The input is used twice:
 *
 *   as JSON: decode -> encode -> check_data -> render -> parse -> decode; the
 *   record must pass its own check, the render must be valid JSON equal to
 *   the slots' render, and must decode to the same slots and bytes;
 *
 *   as typed data: when schema_check_data accepts it, the render must be
 *   valid JSON that decodes (unless a CHECK fails: check_data does not run
 *   CHECKs) and re-encodes to a record that renders the same, compacted.
 *
 * Errors are fine; a broken invariant traps. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spec/schema.h"

#define NF 8
#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

static const json_limits deep = {.max_depth = 100000, .max_nodes = 0};

static ev_schema *fuzz_schema(void)
{
    static ev_schema *s;
    static const struct { const char *name; expr_type t; bool not_null; const char *def; } f[NF] = {
        {"b", EXPR_BOOL, false, NULL},          {"n", EXPR_BIGINT, false, "0"},
        {"x", EXPR_DOUBLE, false, "1"},         {"t", EXPR_TEXT, false, NULL},
        {"d", EXPR_DATE, false, "'2020-03-11'"}, {"ts", EXPR_TIMESTAMPTZ, false, NULL},
        {"j", EXPR_JSONB, false, "'{\"k\": [1, 2]}'"}, {"t2", EXPR_TEXT, true, "'dflt'"},
    };
    if (s)
        return s;
    payi_err err;
    s = schema_new("Fuzz", 4);
    for (int i = 0; i < NF; i++)
        REQUIRE(schema_add_field(s, f[i].name, strlen(f[i].name), f[i].t, f[i].not_null, f[i].def,
                                 f[i].def ? strlen(f[i].def) : 0, &err) == PAYI_OK);
    REQUIRE(schema_add_check(s, "n", "n >= 0", 6, &err) == PAYI_OK);
    REQUIRE(schema_add_check(s, NULL, "length(t) < 50 OR d IS NULL", 27, &err) == PAYI_OK);
    s->id = 42;
    return s;
}

static bool same_value(const expr_value *a, const expr_value *b)
{
    if (a->type != b->type || a->null != b->null)
        return false;
    if (a->null)
        return true;
    switch (a->type) {
    case EXPR_BOOL: return a->b == b->b;
    case EXPR_DOUBLE: return memcmp(&a->d, &b->d, sizeof a->d) == 0;
    case EXPR_TEXT: case EXPR_JSONB: return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    default: return a->i == b->i;
    }
}

static bool same_buf(const buf *a, const buf *b) { return a->len == b->len && memcmp(a->data, b->data, a->len) == 0; }

/* Path 1: the input as a JSON document. */
static void json_path(const ev_schema *s, const char *src, size_t size, expr_ctx *ctx)
{
    json_doc d = JSON_DOC_INIT, d2 = JSON_DOC_INIT;
    expr_value slots[NF], again[NF];
    buf e1 = BUF_INIT, e2 = BUF_INIT, r1 = BUF_INIT, rs = BUF_INIT;
    payi_err err;
    if (!json_parse(&d, src, size, NULL, NULL) || schema_decode_json(s, &d, 0, "data", slots, ctx, &err) != PAYI_OK)
        goto done;
    REQUIRE(schema_validate(s, slots, "data", ctx, &err) == PAYI_OK);
    schema_encode(s, slots, &e1);
    REQUIRE(schema_check_data(s, e1.data, e1.len, &err) == PAYI_OK);
    schema_write_json(s, e1.data, e1.len, &r1);
    schema_write_slots_json(s, slots, &rs);
    REQUIRE(same_buf(&r1, &rs));
    REQUIRE(json_parse(&d2, r1.data, r1.len, &deep, NULL));
    REQUIRE(schema_decode_json(s, &d2, 0, "data", again, ctx, &err) == PAYI_OK);
    for (int i = 0; i < NF; i++)
        REQUIRE(same_value(&slots[i], &again[i]));
    schema_encode(s, again, &e2);
    REQUIRE(same_buf(&e1, &e2));
done:
    buf_release(&e1);
    buf_release(&e2);
    buf_release(&r1);
    buf_release(&rs);
    json_doc_release(&d);
    json_doc_release(&d2);
}

/* Path 2: the input as a typed record. */
static void typed_path(const ev_schema *s, const char *data, size_t size, expr_ctx *ctx)
{
    json_doc d = JSON_DOC_INIT;
    expr_value slots[NF];
    buf r1 = BUF_INIT, compact = BUF_INIT, e2 = BUF_INIT, r2 = BUF_INIT;
    payi_err err;
    if (schema_check_data(s, data, size, &err) != PAYI_OK)
        goto done;
    for (uint32_t i = 0; i < NF; i++) {
        expr_value v;
        schema_get(s, data, size, i, &v);
        REQUIRE(v.type == s->fields[i].type);
    }
    schema_write_json(s, data, size, &r1);
    REQUIRE(json_parse(&d, r1.data, r1.len, &deep, NULL));
    json_write_compact(&d, 0, &compact);
    if (schema_decode_json(s, &d, 0, "", slots, ctx, &err) != PAYI_OK) {
        REQUIRE(strncmp(err.msg, "CHECK (", 7) == 0);
        goto done;
    }
    schema_encode(s, slots, &e2);
    REQUIRE(schema_check_data(s, e2.data, e2.len, &err) == PAYI_OK);
    schema_write_json(s, e2.data, e2.len, &r2);
    /* Stored jsonb may hold whitespace that decoding drops: compare compacted. */
    REQUIRE(same_buf(&compact, &r2));
done:
    buf_release(&r1);
    buf_release(&compact);
    buf_release(&e2);
    buf_release(&r2);
    json_doc_release(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ev_schema *s = fuzz_schema();
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    json_path(s, (const char *)data, size, &ctx);
    expr_ctx_reset(&ctx);
    typed_path(s, (const char *)data, size, &ctx);
    expr_ctx_release(&ctx);
    return 0;
}
