/* libFuzzer target: parse the input as a scalar expression over a fixed
 * scope and evaluate it twice (with values, then with every column NULL).
 * Errors are fine; crashes, sanitizer reports and leaks are not. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spec/expr.h"

static const expr_column cols[] = {
    {"a", EXPR_BIGINT}, {"x", EXPR_DOUBLE}, {"t", EXPR_TEXT},  {"d", EXPR_DATE},
    {"ts", EXPR_TIMESTAMPTZ}, {"flag", EXPR_BOOL}, {"j", EXPR_JSONB}, {"state.cases", EXPR_BIGINT},
};
#define NCOLS (sizeof cols / sizeof cols[0])
static const char json_text[] = "{\"k\":\"v\",\"n\":5,\"a\":[1,\"x\",null]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const expr_scope scope = {cols, NCOLS};
    expr_value vals[NCOLS] = {
        expr_int(INT64_MAX), expr_double(-0.5), expr_text("h\xc3\xa9", 3), expr_date(18332),
        expr_ts(1583922600000000LL), expr_bool(true), expr_jsonb(json_text, sizeof json_text - 1), expr_int(-3),
    };
    expr_value nulls[NCOLS];
    for (size_t k = 0; k < NCOLS; k++)
        nulls[k] = expr_null((expr_type)cols[k].type);
    expr *e = NULL;
    payi_err err;
    if (expr_parse((const char *)data, size, &scope, &e, &err) != PAYI_OK)
        return 0;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value out;
    buf b = BUF_INIT;
    if (expr_eval(e, vals, &ctx, &out, &err) == PAYI_OK) {
        if (out.type != expr_result_type(e))
            __builtin_trap();
        expr_value_format(&out, &b);
    }
    if (expr_eval(e, nulls, &ctx, &out, &err) == PAYI_OK && out.type != expr_result_type(e))
        __builtin_trap();
    buf_release(&b);
    expr_ctx_release(&ctx);
    expr_free(e);
    return 0;
}
