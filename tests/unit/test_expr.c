/* Tests for src/spec/expr: a table of expression text -> expected result
 * ("type:text output") or expected error ("!substring"), over a fixed scope. */
#include <stdlib.h>

#include "spec/expr.h"
#include "test.h"

static const expr_column cols[] = {
    {"a", EXPR_BIGINT},       {"b", EXPR_BIGINT},   {"n", EXPR_BIGINT},       {"x", EXPR_DOUBLE},
    {"t", EXPR_TEXT},         {"tn", EXPR_TEXT},    {"d", EXPR_DATE},         {"ts", EXPR_TIMESTAMPTZ},
    {"flag", EXPR_BOOL},      {"fn", EXPR_BOOL},    {"j", EXPR_JSONB},        {"state.cases", EXPR_BIGINT},
    {"state.last_day", EXPR_DATE}, {"day", EXPR_DATE}, {"cases", EXPR_BIGINT}, {"big", EXPR_BIGINT},
    {"u", EXPR_TEXT},
};
static const expr_scope scope = {cols, sizeof cols / sizeof cols[0]};
static const char json_text[] = "{\"k\":\"v\",\"n\":5,\"o\":{\"z\":1},\"e\":\"a\\\"b\",\"nul\":null,\"arr\":[1,2]}";

static void fill(expr_value *v)
{
    int64_t d = expr_days_from_civil(2020, 3, 11);
    v[0] = expr_int(7);
    v[1] = expr_int(2);
    v[2] = expr_null(EXPR_BIGINT);
    v[3] = expr_double(2.5);
    v[4] = expr_text("Hello", 5);
    v[5] = expr_null(EXPR_TEXT);
    v[6] = expr_date(d);
    v[7] = expr_ts(d * 86400000000LL + (10 * 3600 + 30 * 60) * 1000000LL);
    v[8] = expr_bool(true);
    v[9] = expr_null(EXPR_BOOL);
    v[10] = expr_jsonb(json_text, sizeof json_text - 1);
    v[11] = expr_int(100);
    v[12] = expr_date(d - 1);
    v[13] = expr_date(d);
    v[14] = expr_int(150);
    v[15] = expr_int(INT64_MAX);
    v[16] = expr_text("h\xc3\xa9llo", 6);   /* héllo */
}

struct tcase {
    const char *text, *want;
};

static const struct tcase cases_tab[] = {
    /* arithmetic */
    {"cases - state.cases", "bigint:50"},
    {"a + b * 3", "bigint:13"},
    {"(a + b) * 3", "bigint:27"},
    {"a / b", "bigint:3"},
    {"-a / b", "bigint:-3"},
    {"a % b", "bigint:1"},
    {"-7 % 2", "bigint:-1"},
    {"a / 0", "!division by zero (at 2)"},
    {"a % 0", "!division by zero"},
    {"x / 0", "!division by zero"},
    {"big + 1", "!bigint out of range (at 4)"},
    {"big * 2", "!bigint out of range"},
    {"-big - 2", "!bigint out of range"},
    {"-9223372036854775808 / -1", "!bigint out of range"},
    {"a + x", "double precision:9.5"},
    {"x * 2", "double precision:5"},
    {"1.5 + 1", "double precision:2.5"},
    {"-a", "bigint:-7"},
    {"- x", "double precision:-2.5"},
    {"0", "bigint:0"},
    {"-5 + 0", "bigint:-5"},
    {"3 + -2", "bigint:1"},
    {"9223372036854775807", "bigint:9223372036854775807"},
    {"a + n", "bigint:NULL"},
    {"1e300 * 1e300", "!value out of range: overflow"},
    {"1 + 'a'", "!invalid input syntax for type bigint: \"a\" (at 4)"},
    {"1 + '2'", "bigint:3"},
    {"a + t", "!operator does not exist: bigint + text (at 2)"},
    {"7.0 / 2", "double precision:3.5"},
    {"0.1 + 0.2", "double precision:0.30000000000000004"},
    {"1e20::text", "text:1e+20"},
    /* comparison and NULL logic */
    {"day <= state.last_day", "boolean:false"},
    {"a > b", "boolean:true"},
    {"a >= 7 AND a <= 7", "boolean:true"},
    {"a <> 7", "boolean:false"},
    {"a != 8", "boolean:true"},
    {"a < x", "boolean:false"},
    {"t = 'Hello'", "boolean:true"},
    {"t < 'Help'", "boolean:true"},
    {"NULL = NULL", "boolean:NULL"},
    {"n = 1", "boolean:NULL"},
    {"NULL AND FALSE", "boolean:false"},
    {"NULL AND TRUE", "boolean:NULL"},
    {"NULL OR TRUE", "boolean:true"},
    {"fn OR FALSE", "boolean:NULL"},
    {"NOT fn", "boolean:NULL"},
    {"NOT flag", "boolean:false"},
    {"FALSE AND a / 0 = 1", "boolean:false"},
    {"n IS NULL", "boolean:true"},
    {"a IS NOT NULL", "boolean:true"},
    {"n IS DISTINCT FROM NULL", "boolean:false"},
    {"n IS NOT DISTINCT FROM NULL", "boolean:true"},
    {"a IS DISTINCT FROM n", "boolean:true"},
    {"fn IS UNKNOWN", "boolean:true"},
    {"fn IS NOT TRUE", "boolean:true"},
    {"flag IS TRUE", "boolean:true"},
    {"a BETWEEN 1 AND 10", "boolean:true"},
    {"a NOT BETWEEN 1 AND 10", "boolean:false"},
    {"a BETWEEN n AND 5", "boolean:false"},
    {"a BETWEEN n AND 10", "boolean:NULL"},
    {"a IN (1, 7, 9)", "boolean:true"},
    {"a IN (1, 2)", "boolean:false"},
    {"a IN (1, NULL)", "boolean:NULL"},
    {"a NOT IN (1, NULL)", "boolean:NULL"},
    {"a NOT IN (1, 2)", "boolean:true"},
    {"t IN ('x', 'Hello')", "boolean:true"},
    {"a AND flag", "!argument of AND must be type boolean, not type bigint (at 0)"},
    {"a = t", "!comparison types bigint and text cannot be matched"},
    {"'NaN'::double precision > 1e308", "boolean:true"},
    /* text */
    {"t || ' world'", "text:Hello world"},
    {"t || tn", "text:NULL"},
    {"'n=' || a", "text:n=7"},
    {"lower(t)", "text:hello"},
    {"upper(t)", "text:HELLO"},
    {"length(u)", "bigint:5"},
    {"substr(u, 2, 3)", "text:\xc3\xa9ll"},
    {"substring(t from 2 for 2)", "text:el"},
    {"substr(t, 0, 2)", "text:H"},
    {"substr(t, 3)", "text:llo"},
    {"substr(t, 1, -1)", "!negative substring length not allowed"},
    {"lower(a)", "!function lower(bigint) does not exist"},
    /* CASE, COALESCE, NULLIF, GREATEST, LEAST */
    {"CASE WHEN a > 5 THEN 'big' ELSE 'small' END", "text:big"},
    {"CASE WHEN a > 50 THEN 'big' END", "text:NULL"},
    {"CASE a WHEN 1 THEN 'one' WHEN 7 THEN 'seven' ELSE 'other' END", "text:seven"},
    {"CASE WHEN fn THEN 1 ELSE 2.5 END", "double precision:2.5"},
    {"CASE WHEN flag THEN 1 ELSE 'x' END", "!invalid input syntax for type bigint: \"x\""},
    {"CASE WHEN flag THEN a ELSE t END", "!CASE types bigint and text cannot be matched"},
    {"COALESCE(n, b, a)", "bigint:2"},
    {"COALESCE(tn, 'dflt')", "text:dflt"},
    {"COALESCE(n, NULL)", "bigint:NULL"},
    {"NULLIF(a, 7)", "bigint:NULL"},
    {"NULLIF(a, 8)", "bigint:7"},
    {"GREATEST(a, b, n, 9)", "bigint:9"},
    {"LEAST(a, b, x)", "double precision:2"},
    {"GREATEST(n, NULL)", "bigint:NULL"},
    {"abs(-a)", "bigint:7"},
    {"abs(-2.5)", "double precision:2.5"},
    {"abs(-big - 1)", "!bigint out of range"},
    {"round(x)", "double precision:2"},
    {"round(3.14159, 2)", "double precision:3.14"},
    {"floor(-x)", "double precision:-3"},
    {"ceil(x)", "double precision:3"},
    {"ceiling(a)", "bigint:7"},
    /* casts */
    {"'42'::bigint + 1", "bigint:43"},
    {"' 42 '::bigint", "bigint:42"},
    {"'4x'::bigint", "!invalid input syntax for type bigint: \"4x\""},
    {"t::bigint", "!invalid input syntax for type bigint: \"Hello\" (at 1)"},
    {"'99999999999999999999'::bigint", "!out of range for type bigint"},
    {"CAST(a AS double precision) / 2", "double precision:3.5"},
    {"x::bigint", "bigint:2"},
    {"3.5::bigint", "bigint:4"},
    {"1e19::bigint", "!bigint out of range"},
    {"a::text || '!'", "text:7!"},
    {"x::text", "text:2.5"},
    {"'2020-13-01'::date", "!invalid input syntax for type date: \"2020-13-01\" (at 0)"},
    {"'2021-02-29'::date", "!invalid input syntax for type date"},
    {"'2020-02-29'::date", "date:2020-02-29"},
    {"'yes'::boolean", "boolean:true"},
    {"'off'::boolean", "boolean:false"},
    {"'maybe'::boolean", "!invalid input syntax for type boolean"},
    {"flag::bigint", "bigint:1"},
    {"d::timestamptz", "timestamp with time zone:2020-03-11 00:00:00+00"},
    {"ts::date", "date:2020-03-11"},
    {"'2020-03-11T10:00:00+02:00'::timestamptz", "timestamp with time zone:2020-03-11 08:00:00+00"},
    {"'2020-03-11 10:00:00.5Z'::timestamptz", "timestamp with time zone:2020-03-11 10:00:00.5+00"},
    {"d::bigint", "!cannot cast type date to bigint"},
    {"a::numeric(5,2)", "!type modifiers are not supported"},
    {"a::timestamp", "!timestamp without time zone"},
    {"a::int", "bigint:7"},
    /* dates and times */
    {"date '2020-03-11'", "date:2020-03-11"},
    {"d + 1", "date:2020-03-12"},
    {"1 + d", "date:2020-03-12"},
    {"d - 11", "date:2020-02-29"},
    {"d - date '2020-01-01'", "bigint:70"},
    {"d - state.last_day", "bigint:1"},
    {"day <= '2020-03-11'", "boolean:true"},
    {"d < ts", "boolean:true"},
    {"d + 3000000", "!date out of range"},
    {"ts + interval '1 day'", "timestamp with time zone:2020-03-12 10:30:00+00"},
    {"ts - interval '2 hours 30 minutes'", "timestamp with time zone:2020-03-11 08:00:00+00"},
    {"ts + interval '1 month'", "timestamp with time zone:2020-04-11 10:30:00+00"},
    {"timestamptz '2020-01-31' + interval '1 month'", "timestamp with time zone:2020-02-29 00:00:00+00"},
    {"timestamptz '2020-01-01 00:00:00.9999995'", "timestamp with time zone:2020-01-01 00:00:01+00"},
    {"timestamptz '2020-01-01 00:00:00.1234564'", "timestamp with time zone:2020-01-01 00:00:00.123456+00"},
    {"timestamptz '2020-01-01 00:00:00.1234565'", "timestamp with time zone:2020-01-01 00:00:00.123457+00"},
    {"d + interval '1 day'", "!date + interval is not supported"},
    {"interval '1 day'", "!interval values are only supported"},
    {"date_trunc('month', d)", "timestamp with time zone:2020-03-01 00:00:00+00"},
    {"date_trunc('year', ts)", "timestamp with time zone:2020-01-01 00:00:00+00"},
    {"date_trunc('week', d)", "timestamp with time zone:2020-03-09 00:00:00+00"},
    {"date_trunc('day', ts)::date", "date:2020-03-11"},
    {"date_trunc('fortnight', ts)", "!unit \"fortnight\" not recognized for type timestamp with time zone (at 11)"},
    {"extract(year from d)", "bigint:2020"},
    {"extract(month from ts)", "bigint:3"},
    {"extract(day from d)", "bigint:11"},
    {"extract(dow from d)", "bigint:3"},
    {"extract(isodow from date '2020-03-15')", "bigint:7"},
    {"extract(week from date '2021-01-01')", "bigint:53"},
    {"extract(epoch from d)", "double precision:1583884800"},
    {"extract(hour from ts)", "bigint:10"},
    {"extract(hour from d)", "!unit \"hour\" not supported for type date"},
    {"date_bin(interval '15 minutes', ts + interval '7 minutes', timestamptz '2000-01-01')",
     "timestamp with time zone:2020-03-11 10:30:00+00"},
    {"date_bin(interval '1 month', ts, ts)", "!containing months"},
    /* jsonb */
    {"j ->> 'k'", "text:v"},
    {"j ->> 'e'", "text:a\"b"},
    {"j -> 'o'", "jsonb:{\"z\":1}"},
    {"(j ->> 'n')::bigint + 1", "bigint:6"},
    {"(j -> 'n')::bigint", "bigint:5"},
    {"(j -> 'k')::bigint", "!cannot cast jsonb string to type bigint"},
    {"j ->> 'missing'", "text:NULL"},
    {"j ->> 'nul'", "text:NULL"},
    {"j -> 'arr' ->> 1", "text:2"},
    {"(j -> 'k')::text", "text:v"},          /* a jsonb string as text: its content (a documented difference) */
    {"(j -> 'e')::text", "text:a\"b"},
    {"(j -> 'o')::text", "text:{\"z\":1}"},   /* anything else: its JSON text */
    {"(j -> 'n')::text", "text:5"},
    /* literals */
    {"TRUE", "boolean:true"},
    {"NULL", "text:NULL"},
    {"'it''s'", "text:it's"},
    {"1 -- comment", "bigint:1"},
    /* unknown columns, syntax errors, unsupported constructs */
    {"nosuch + 1", "!column \"nosuch\" does not exist (at 0)"},
    {"a + state.nope", "!column \"state.nope\" does not exist (at 4)"},
    {"a +", "!syntax error at end of input (at 3)"},
    {"a + * 2", "!syntax error at or near \"*\" (at 4)"},
    {"a + (SELECT 1)", "!subqueries are not supported in expressions (at 4)"},
    {"a IN (SELECT 1)", "!subqueries are not supported"},
    {"sum(a)", "!aggregate function sum() is not allowed in a scalar expression (at 0)"},
    {"count(*)", "!aggregate function count()"},
    {"row_number() OVER ()", "!window functions are not supported"},
    {"now()", "!now() is not allowed: expressions must be deterministic"},
    {"current_date", "!is not allowed: expressions must be deterministic"},
    {"random() < 1", "!random() is not allowed"},
    {"a FROM t", "!FROM is not allowed in an expression (at 7)"},
    {"a WHERE true", "!WHERE is not allowed"},
    {"1; DROP TABLE x", "!only one expression is allowed"},
    {"a, b", "!expected one expression"},
    {"a AS z", "!AS aliases are not allowed"},
    {"1 UNION SELECT 2", "!is not allowed in an expression"},
    {"t LIKE 'H%'", "!LIKE is not supported"},
    {"$1 + 1", "!parameters ($n) are not supported"},
    {"ARRAY[1,2]", "!ARRAY constructors are not supported"},
    {"foo(a)", "!function foo() is not supported (at 0)"},
    {"*", "!* is not allowed"},
    {"", "!empty expression"},
    {"a ~ 'x'", "!operator ~ is not supported"},
    {"interval '1 day' IS NULL", "!interval values are only supported"},
    {"a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a+a", "bigint:140"},
    {"\xc3\xa9 + 1", "!column \"\xc3\xa9\" does not exist (at 0)"},
    {"'\xc3\xa9' + * 1", "!syntax error at or near \"*\" (at 7)"},   /* byte offsets */
};

TEST(expr_table)
{
    expr_value slots[sizeof cols / sizeof cols[0]];
    fill(slots);
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    buf got = BUF_INIT;
    size_t ncases = sizeof cases_tab / sizeof cases_tab[0];
    for (size_t k = 0; k < ncases; k++) {
        const struct tcase *tc = &cases_tab[k];
        expr *e = NULL;
        payi_err err;
        expr_value v;
        buf_reset(&got);
        if (expr_parse(tc->text, strlen(tc->text), &scope, &e, &err) != PAYI_OK) {
            buf_printf(&got, "!%s", err.msg);
        } else {
            if (expr_eval(e, slots, &ctx, &v, &err) != PAYI_OK) {
                buf_printf(&got, "!%s", err.msg);
            } else {
                if (v.type != expr_result_type(e))
                    test_fail(__FILE__, __LINE__, "%s: value type %d != result type %d", tc->text, v.type,
                              expr_result_type(e));
                buf_printf(&got, "%s:", expr_type_name((expr_type)v.type));
                expr_value_format(&v, &got);
            }
            expr_free(e);
        }
        bool ok = tc->want[0] == '!' ? got.data[0] == '!' && strstr(got.data, tc->want + 1) != NULL
                                     : strcmp(got.data, tc->want) == 0;
        if (!ok)
            test_fail(__FILE__, __LINE__, "[%s] want %s, got %s", tc->text, tc->want, got.data);
        expr_ctx_reset(&ctx);
    }
    CHECK(ncases >= 80);
    buf_release(&got);
    expr_ctx_release(&ctx);
}

TEST(expr_error_positions)
{
    payi_err err;
    expr *e = NULL;
    size_t pos = 99;
    const char *text = "a +\n  (SELECT 1)";
    CHECK(expr_parse(text, strlen(text), &scope, &e, &err) != PAYI_OK);
    CHECK(e == NULL);
    CHECK(expr_error_pos(&err, &pos));
    CHECK_EQ_U64(pos, 6);
    /* The expression is read from text[0..len) only. */
    CHECK(expr_parse("a + 1 garbage", 5, &scope, &e, &err) == PAYI_OK);
    expr_free(e);
    CHECK(expr_parse("a\0b", 3, &scope, &e, &err) != PAYI_OK);
    CHECK(expr_parse("'\xff'", 3, &scope, &e, &err) != PAYI_OK);
    CHECK(strstr(err.msg, "UTF-8") != NULL);
    /* Nesting is bounded (it bounds the compiler's and evaluator's recursion). */
    buf deep = BUF_INIT;
    for (int k = 0; k < 300; k++)
        buf_puts(&deep, "a+");
    buf_puts(&deep, "1");
    CHECK(expr_parse(deep.data, deep.len, &scope, &e, &err) != PAYI_OK);
    CHECK(strstr(err.msg, "expression too complex") != NULL);
    buf_release(&deep);
}

TEST(expr_types_and_column_checks)
{
    expr_value slots[sizeof cols / sizeof cols[0]];
    fill(slots);
    payi_err err;
    expr *e = NULL;
    CHECK(expr_parse("d + 1", 5, &scope, &e, &err) == PAYI_OK);
    CHECK_EQ_INT(expr_result_type(e), EXPR_DATE);
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value v;
    slots[6] = expr_int(3);   /* a bigint where a date was declared */
    CHECK(expr_eval(e, slots, &ctx, &v, &err) != PAYI_OK);
    slots[6] = expr_date(INT64_MAX);   /* out of the date range: refused, no overflow */
    CHECK(expr_eval(e, slots, &ctx, &v, &err) != PAYI_OK);
    CHECK(strstr(err.msg, "date value out of range") != NULL);
    slots[6] = expr_null(EXPR_BIGINT);   /* a NULL of any type is a NULL */
    CHECK(expr_eval(e, slots, &ctx, &v, &err) == PAYI_OK);
    CHECK(v.null && v.type == EXPR_DATE);
    expr_free(e);
    /* Text results survive until the context is reset, and the arena is reused. */
    CHECK(expr_parse("t || t", 6, &scope, &e, &err) == PAYI_OK);
    for (int k = 0; k < 10000; k++) {
        CHECK(expr_eval(e, slots, &ctx, &v, &err) == PAYI_OK);
        if (k % 100 == 99)
            expr_ctx_reset(&ctx);
    }
    CHECK_EQ_U64(v.len, 10);
    CHECK_MEM(v.s, "HelloHello", 10);
    expr_free(e);
    expr_ctx_release(&ctx);
    int64_t days;
    CHECK(expr_parse_date("1970-01-01", 10, &days) && days == 0);
    CHECK(expr_parse_date("0001-01-01", 10, &days) && days == -719162);
    int64_t y;
    unsigned m, dd;
    expr_civil_from_days(expr_days_from_civil(2000, 2, 29), &y, &m, &dd);
    CHECK(y == 2000 && m == 2 && dd == 29);
}
