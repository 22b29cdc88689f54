/* Tests for src/spec/schema: JSON -> slots -> typed form -> JSON round trips,
 * the validation errors (a table: code, field, message), DEFAULT and CHECK,
 * the schema's own JSON, and schema_check_data against damaged records.
 *
 * JSON in the tables is written with ' for " (see J) to stay readable. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "spec/schema.h"
#include "test.h"

/* ' -> " (the test JSON never needs a literal '). */
static char *J(const char *s)
{
    static char b[4][2048];
    static int k;
    char *o = b[k++ % 4];
    size_t n = strlen(s);
    if (n >= sizeof b[0])
        n = sizeof b[0] - 1;
    for (size_t i = 0; i < n; i++)
        o[i] = s[i] == '\'' ? '"' : s[i];
    o[n] = '\0';
    return o;
}

static bool add(ev_schema *s, const char *name, expr_type t, bool not_null, const char *def)
{
    payi_err err;
    if (schema_add_field(s, name, strlen(name), t, not_null, def, def ? strlen(def) : 0, &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "add %s: %s", name, err.msg);
        return false;
    }
    return true;
}

static bool add_check(ev_schema *s, const char *field, const char *sql)
{
    payi_err err;
    if (schema_add_check(s, field, sql, strlen(sql), &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "check %s: %s", sql, err.msg);
        return false;
    }
    return true;
}

/* One field of each type, defaults, a field CHECK and a table CHECK. */
static ev_schema *cases_schema(void)
{
    ev_schema *s = schema_new("CasesReported", 13);
    add(s, "country", EXPR_TEXT, true, NULL);
    add(s, "day", EXPR_DATE, true, NULL);
    add(s, "cases", EXPR_BIGINT, false, "0");
    add(s, "rate", EXPR_DOUBLE, false, NULL);
    add(s, "at", EXPR_TIMESTAMPTZ, false, NULL);
    add(s, "ok", EXPR_BOOL, false, "true");
    add(s, "extra", EXPR_JSONB, false, NULL);
    add(s, "note", EXPR_TEXT, false, "'n/a'");
    add_check(s, "cases", "cases >= 0");
    add_check(s, NULL, "rate IS NULL OR rate <= 1e6");
    s->id = 7;
    return s;
}

#define NF 8

/* Decodes text as the JSON object for s; PAYI_OK or the error in err. */
static payi_code decode(const ev_schema *s, const char *text, const char *prefix, json_doc *d, expr_value *slots,
                        expr_ctx *ctx, payi_err *err)
{
    json_error je;
    if (!json_parse(d, text, strlen(text), NULL, &je)) {
        test_fail(__FILE__, __LINE__, "test JSON does not parse: %s: %s", je.msg, text);
        return PAYI_BAD_JSON;
    }
    return schema_decode_json(s, d, 0, prefix, slots, ctx, err);
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

/* JSON -> slots -> typed -> JSON, checking every step; returns the final JSON
 * in out and checks it decodes to the same slots and encodes identically. */
static void round_trip(const ev_schema *s, const char *in, buf *out)
{
    json_doc d = JSON_DOC_INIT, d2 = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value slots[SCHEMA_MAX_FIELDS], again[SCHEMA_MAX_FIELDS];
    payi_err err;
    buf typed = BUF_INIT, typed2 = BUF_INIT, fromslots = BUF_INIT;
    buf_reset(out);
    if (decode(s, in, "data", &d, slots, &ctx, &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "decode %s: %s (%s)", in, err.msg, err.field);
        goto done;
    }
    schema_encode(s, slots, &typed);
    CHECK_EQ_INT(schema_check_data(s, typed.data, typed.len, &err), PAYI_OK);
    schema_write_json(s, typed.data, typed.len, out);
    schema_write_slots_json(s, slots, &fromslots);
    CHECK_STR(fromslots.data, out->data);
    for (uint32_t i = 0; i < s->nfields; i++) {
        expr_value v;
        schema_get(s, typed.data, typed.len, i, &v);
        if (!same_value(&v, &slots[i]))
            test_fail(__FILE__, __LINE__, "schema_get field %u differs for %s", i, in);
    }
    if (decode(s, out->data, "data", &d2, again, &ctx, &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "decode again %s: %s", out->data, err.msg);
        goto done;
    }
    for (uint32_t i = 0; i < s->nfields; i++)
        if (!same_value(&again[i], &slots[i]))
            test_fail(__FILE__, __LINE__, "field %u changed through %s", i, out->data);
    schema_encode(s, again, &typed2);
    CHECK(typed.len == typed2.len && memcmp(typed.data, typed2.data, typed.len) == 0);
done:
    buf_release(&typed);
    buf_release(&typed2);
    buf_release(&fromslots);
    json_doc_release(&d);
    json_doc_release(&d2);
    expr_ctx_release(&ctx);
}

TEST(schema_round_trip_every_type)
{
    ev_schema *s = cases_schema();
    buf out = BUF_INIT;
    round_trip(s, J("{'country':'CI','day':'2020-03-11','cases':5,'rate':0.25,'at':'2020-03-11T10:30:00.5+02:00',"
                    "'ok':false,'extra':{ 'a' : [1, 2.50, 'x\\u00e9'], 'b':null },'note':'h\\u00e9\\n\\\"q\\\"'}"),
               &out);
    CHECK_STR(out.data, J("{'country':'CI','day':'2020-03-11','cases':5,'rate':0.25,'at':'2020-03-11T08:30:00.500000Z',"
                          "'ok':false,'extra':{'a':[1,2.50,'x\\u00e9'],'b':null},'note':'h\xc3\xa9\\n\\\"q\\\"'}"));
    /* Keys in any order, escaped keys, a scalar jsonb. */
    round_trip(s, J("{'extra':'str','day':' 2020-02-29 ','co\\u0075ntry':'\xe2\x82\xac','at':'2020-03-11'}"), &out);
    CHECK_STR(out.data, J("{'country':'\xe2\x82\xac','day':'2020-02-29','cases':0,'rate':null,"
                          "'at':'2020-03-11T00:00:00.000000Z','ok':true,'extra':'str','note':'n/a'}"));
    /* Extremes of every range. */
    round_trip(s, J("{'country':'','day':'0001-01-01','cases':0,'rate':-1.7976931348623157e308,"
                    "'at':'9999-12-31T23:59:59.999999Z','extra':[],'note':''}"), &out);
    CHECK_STR(out.data, J("{'country':'','day':'0001-01-01','cases':0,"
                          "'rate':-1.7976931348623157e+308,'at':'9999-12-31T23:59:59.999999Z','ok':true,'extra':[],"
                          "'note':''}"));
    round_trip(s, J("{'country':'x','day':'9999-12-31','cases':9223372036854775807,'at':'0001-01-01T00:00:00Z'}"), &out);
    CHECK(strstr(out.data, J("'cases':9223372036854775807")) != NULL);
    CHECK(strstr(out.data, J("'at':'0001-01-01T00:00:00.000000Z'")) != NULL);
    buf_release(&out);
    schema_free(s);
}

TEST(schema_bigint_extremes)
{
    ev_schema *s = schema_new("B", 1);
    add(s, "n", EXPR_BIGINT, false, NULL);
    buf out = BUF_INIT;
    round_trip(s, "{\"n\":-9223372036854775808}", &out);
    CHECK_STR(out.data, "{\"n\":-9223372036854775808}");
    round_trip(s, "{\"n\":-0}", &out);
    CHECK_STR(out.data, "{\"n\":0}");
    buf_release(&out);
    schema_free(s);
}

TEST(schema_nulls_and_defaults)
{
    ev_schema *s = cases_schema();
    buf out = BUF_INIT;
    /* Missing fields take their DEFAULT; explicit nulls stay NULL. */
    round_trip(s, J("{'country':'CI','day':'2020-03-11'}"), &out);
    CHECK_STR(out.data, J("{'country':'CI','day':'2020-03-11','cases':0,'rate':null,'at':null,'ok':true,"
                          "'extra':null,'note':'n/a'}"));
    round_trip(s, J("{'country':'CI','day':'2020-03-11','cases':null,'rate':null,'at':null,'ok':null,'extra':null,"
                    "'note':null}"), &out);
    CHECK_STR(out.data, J("{'country':'CI','day':'2020-03-11','cases':null,'rate':null,'at':null,'ok':null,"
                          "'extra':null,'note':null}"));
    buf_release(&out);
    schema_free(s);

    /* Defaults of every type, converted to the field's type. */
    s = schema_new("Defaults", 8);
    add(s, "d", EXPR_DOUBLE, false, "1");
    add(s, "day", EXPR_DATE, false, "'2020-01-01'");
    add(s, "ts", EXPR_TIMESTAMPTZ, false, " '2020-01-01T10:00:00+01:00'  -- trailing comment");
    add(s, "ts2", EXPR_TIMESTAMPTZ, false, "date '2020-01-02'");
    add(s, "j", EXPR_JSONB, false, "'{\"a\": [1, 2] }'");
    add(s, "t", EXPR_TEXT, false, "'x' || 'y'");
    add(s, "b", EXPR_BIGINT, false, "2.6");
    add(s, "n", EXPR_BIGINT, true, "NULL");
    add(s, "bt", EXPR_TEXT, false, "42");
    add(s, "f", EXPR_BOOL, false, "'yes'");
    add(s, "dd", EXPR_DATE, false, "timestamptz '2020-05-05T23:00:00Z'");
    CHECK(s->fields[4].def.len == 11 && memcmp(s->fields[4].def.s, "{\"a\":[1,2]}", 11) == 0);
    CHECK_STR(s->fields[7].default_sql, "NULL");
    buf_reset(&out);
    schema_write_slots_json(s, (expr_value[]){s->fields[0].def, s->fields[1].def, s->fields[2].def, s->fields[3].def,
                                              s->fields[4].def, s->fields[5].def, s->fields[6].def, s->fields[7].def,
                                              s->fields[8].def, s->fields[9].def, s->fields[10].def},
                            &out);
    CHECK_STR(out.data, J("{'d':1,'day':'2020-01-01','ts':'2020-01-01T09:00:00.000000Z',"
                          "'ts2':'2020-01-02T00:00:00.000000Z','j':{'a':[1,2]},'t':'xy','b':3,'n':null,'bt':'42',"
                          "'f':true,'dd':'2020-05-05'}"));
    /* n is NOT NULL with DEFAULT NULL: missing is an error. */
    json_doc d = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value slots[16];
    payi_err err;
    CHECK_EQ_INT(decode(s, "{}", "", &d, slots, &ctx, &err), PAYI_VALIDATION);
    CHECK_STR(err.field, "n");
    CHECK_STR(err.msg, "field \"n\" is NOT NULL but missing");
    CHECK_EQ_INT(decode(s, "{\"n\":1}", "", &d, slots, &ctx, &err), PAYI_OK);
    CHECK(slots[4].type == EXPR_JSONB && slots[4].s == s->fields[4].def.s);   /* borrowed from the schema */
    json_doc_release(&d);
    expr_ctx_release(&ctx);
    buf_release(&out);
    schema_free(s);
}

struct err_case {
    const char *json, *prefix;
    payi_code code;
    const char *field, *msg;
};

#define BASE "'country':'CI','day':'2020-03-11'"

static const struct err_case err_cases[] = {
    {"[]", "data", PAYI_VALIDATION, "data", "expected a JSON object, got an array"},
    {"5", "", PAYI_VALIDATION, "", "expected a JSON object, got a number"},
    {"{'cuntry':'CI','day':'2020-03-11'}", "data", PAYI_VALIDATION, "data.cuntry",
     "unknown field \"cuntry\"; did you mean \"country\"?"},
    {"{" BASE ",'zzzzzz':1}", "data", PAYI_VALIDATION, "data.zzzzzz", "unknown field \"zzzzzz\""},
    {"{" BASE ",'x':1}", "", PAYI_VALIDATION, "x", "unknown field \"x\""},
    {"{'country':5,'day':'2020-03-11'}", "data", PAYI_VALIDATION, "data.country",
     "field \"country\": expected a string (text), got a number"},
    {"{'country':'CI','day':'2020-02-30'}", "data", PAYI_VALIDATION, "data.day",
     "field \"day\": \"2020-02-30\" is not a valid date (expected YYYY-MM-DD"},
    {"{'country':'CI','day':'2021-02-29'}", "data", PAYI_VALIDATION, "data.day", "is not a valid date"},
    {"{'country':'CI','day':''}", "data", PAYI_VALIDATION, "data.day", "\"\" is not a valid date"},
    {"{'country':'CI','day':'10000-01-01'}", "data", PAYI_VALIDATION, "data.day", "is not a valid date"},
    {"{'country':'CI','day':'2020-03-11x'}", "data", PAYI_VALIDATION, "data.day", "is not a valid date"},
    {"{'country':'CI','day':20200311}", "data", PAYI_VALIDATION, "data.day",
     "field \"day\": expected a date string (YYYY-MM-DD), got a number"},
    {"{" BASE ",'cases':9223372036854775808}", "data", PAYI_VALIDATION, "data.cases",
     "field \"cases\": 9223372036854775808 is out of range for bigint"},
    {"{" BASE ",'cases':-9223372036854775809}", "data", PAYI_VALIDATION, "data.cases",
     "-9223372036854775809 is out of range for bigint"},
    {"{" BASE ",'cases':1.0}", "data", PAYI_VALIDATION, "data.cases",
     "field \"cases\": 1.0 is not an integer literal (expected a bigint)"},
    {"{" BASE ",'cases':1e3}", "data", PAYI_VALIDATION, "data.cases", "1e3 is not an integer literal"},
    {"{" BASE ",'cases':'5'}", "data", PAYI_VALIDATION, "data.cases", "field \"cases\": expected a bigint, got a string"},
    {"{" BASE ",'cases':true}", "data", PAYI_VALIDATION, "data.cases", "expected a bigint, got a boolean"},
    {"{" BASE ",'rate':1e400}", "data", PAYI_VALIDATION, "data.rate",
     "field \"rate\": 1e400 is out of range for double precision"},
    {"{" BASE ",'rate':-1e400}", "data", PAYI_VALIDATION, "data.rate", "-1e400 is out of range for double precision"},
    {"{" BASE ",'rate':1e-400}", "data", PAYI_VALIDATION, "data.rate", "1e-400 is out of range for double precision"},
    {"{" BASE ",'rate':'1.5'}", "data", PAYI_VALIDATION, "data.rate", "expected a number (double precision), got a string"},
    {"{" BASE ",'at':'2020-03-11T25:00:00Z'}", "data", PAYI_VALIDATION, "data.at",
     "field \"at\": \"2020-03-11T25:00:00Z\" is not a valid timestamp (expected YYYY-MM-DDTHH:MM:SS"},
    {"{" BASE ",'at':'2020-03-11T10:00:00+99:00'}", "data", PAYI_VALIDATION, "data.at", "is not a valid timestamp"},
    {"{" BASE ",'at':'0000-12-31T00:00:00Z'}", "data", PAYI_VALIDATION, "data.at", "is not a valid timestamp"},
    {"{" BASE ",'at':{}}", "data", PAYI_VALIDATION, "data.at", "expected a timestamp string"},
    {"{" BASE ",'ok':'true'}", "data", PAYI_VALIDATION, "data.ok", "field \"ok\": expected a boolean, got a string"},
    {"{" BASE ",'ok':1}", "data", PAYI_VALIDATION, "data.ok", "expected a boolean, got a number"},
    {"{" BASE ",'note':'a\\u0000b'}", "data", PAYI_VALIDATION, "data.note", "field \"note\": text cannot contain U+0000"},
    {"{" BASE ",'note':['x']}", "data", PAYI_VALIDATION, "data.note", "expected a string (text), got an array"},
    {"{'day':'2020-03-11'}", "data", PAYI_VALIDATION, "data.country", "field \"country\" is NOT NULL but missing"},
    {"{'country':null,'day':'2020-03-11'}", "data", PAYI_VALIDATION, "data.country",
     "field \"country\" is NOT NULL but null"},
    {"{'country':'CI'}", "", PAYI_VALIDATION, "day", "field \"day\" is NOT NULL but missing"},
    {"{" BASE ",'cases':-1}", "data", PAYI_VALIDATION, "data.cases", "CHECK (cases >= 0) failed"},
    {"{" BASE ",'cases':-5}", "", PAYI_VALIDATION, "cases", "CHECK (cases >= 0) failed"},
    {"{" BASE ",'rate':2e6}", "data", PAYI_VALIDATION, "data", "CHECK (rate IS NULL OR rate <= 1e6) failed"},
    {"{" BASE ",'rate':2e6}", "", PAYI_VALIDATION, "", "CHECK (rate IS NULL OR rate <= 1e6) failed"},
};

TEST(schema_decode_error_table)
{
    ev_schema *s = cases_schema();
    json_doc d = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value slots[NF];
    for (size_t k = 0; k < sizeof err_cases / sizeof err_cases[0]; k++) {
        const struct err_case *c = &err_cases[k];
        payi_err err;
        payi_err_clear(&err);
        payi_code rc = decode(s, J(c->json), c->prefix, &d, slots, &ctx, &err);
        if (rc != c->code || strcmp(err.field, c->field) != 0 || !strstr(err.msg, c->msg))
            test_fail(__FILE__, __LINE__, "case %zu %s: got %s field \"%s\" msg \"%s\"; want %s \"%s\" \"%s\"", k,
                      c->json, payi_code_word(rc), err.field, err.msg, payi_code_word(c->code), c->field, c->msg);
        expr_ctx_reset(&ctx);
    }
    CHECK(sizeof err_cases / sizeof err_cases[0] >= 25);
    json_doc_release(&d);
    expr_ctx_release(&ctx);
    schema_free(s);
}

TEST(schema_check_null_passes)
{
    ev_schema *s = cases_schema();
    json_doc d = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value slots[NF];
    payi_err err;
    /* cases >= 0 is NULL for a NULL cases: passes, as in SQL. */
    CHECK_EQ_INT(decode(s, J("{" BASE ",'cases':null,'rate':null}"), "data", &d, slots, &ctx, &err), PAYI_OK);
    CHECK(slots[2].null && slots[2].type == EXPR_BIGINT);
    CHECK_EQ_INT(decode(s, J("{" BASE ",'cases':0,'rate':1e6}"), "data", &d, slots, &ctx, &err), PAYI_OK);
    json_doc_release(&d);
    expr_ctx_release(&ctx);
    schema_free(s);
}

TEST(schema_text_borrows_or_copies)
{
    ev_schema *s = cases_schema();
    json_doc d = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value slots[NF];
    payi_err err;
    const char *text = J("{'country':'CI','day':'2020-03-11','note':'a\\tb','extra':[1,2]}");
    CHECK_EQ_INT(decode(s, text, "", &d, slots, &ctx, &err), PAYI_OK);
    CHECK(slots[0].s == text + 12 && slots[0].len == 2);   /* unescaped: points into the source */
    CHECK(slots[7].len == 3 && memcmp(slots[7].s, "a\tb", 3) == 0);
    CHECK(slots[7].s < text || slots[7].s > text + strlen(text));
    CHECK(slots[6].s > text && slots[6].s < text + strlen(text));   /* compact already */
    json_doc_release(&d);
    expr_ctx_release(&ctx);
    schema_free(s);
}

TEST(schema_validate_computed_slots)
{
    ev_schema *s = cases_schema();
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    payi_err err;
    expr_value v[NF] = {expr_text("CI", 2), expr_date(18332), expr_int(3), expr_double(0.5), expr_ts(0),
                        expr_bool(true), expr_jsonb("[1]", 3), expr_text("n", 1)};
    CHECK_EQ_INT(schema_validate(s, v, "state", &ctx, &err), PAYI_OK);
    static const struct {
        int slot;
        expr_value v;
        const char *field, *msg;
    } bad[] = {
        {2, {.type = EXPR_TEXT, .len = 1, .s = "x"}, "state.cases", "expected a bigint value, got text"},
        {3, {.type = EXPR_DOUBLE, .d = NAN}, "state.rate", "NaN cannot be stored"},
        {3, {.type = EXPR_DOUBLE, .d = -INFINITY}, "state.rate", "-Infinity cannot be stored"},
        {7, {.type = EXPR_TEXT, .len = 3, .s = "a\0b"}, "state.note", "U+0000"},
        {7, {.type = EXPR_TEXT, .len = 1, .s = "\xff"}, "state.note", "not valid UTF-8"},
        {6, {.type = EXPR_JSONB, .len = 2, .s = "[1"}, "state.extra", "jsonb is not valid JSON"},
        {1, {.type = EXPR_DATE, .i = 3000000}, "state.day", "date out of range"},
        {4, {.type = EXPR_TIMESTAMPTZ, .i = INT64_MAX}, "state.at", "timestamptz out of range"},
        {0, {.type = EXPR_TEXT, .null = true}, "state.country", "field \"country\" is NOT NULL but null"},
        {2, {.type = EXPR_BIGINT, .i = -1}, "state.cases", "CHECK (cases >= 0) failed"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        expr_value w[NF];
        memcpy(w, v, sizeof w);
        w[bad[k].slot] = bad[k].v;
        payi_err_clear(&err);
        if (schema_validate(s, w, "state", &ctx, &err) != PAYI_VALIDATION || strcmp(err.field, bad[k].field) != 0 ||
            !strstr(err.msg, bad[k].msg))
            test_fail(__FILE__, __LINE__, "validate case %zu: field \"%s\" msg \"%s\"", k, err.field, err.msg);
    }
    expr_ctx_release(&ctx);
    schema_free(s);
}

struct def_case {
    expr_type type;
    const char *sql, *msg;
};

TEST(schema_add_field_errors)
{
    static const struct def_case defs[] = {
        {EXPR_BIGINT, "a + 1", "DEFAULT must be a constant, it cannot refer to a field (at 0)"},
        {EXPR_BIGINT, "1 + x", "DEFAULT must be a constant, it cannot refer to a field (at 4)"},
        {EXPR_BIGINT, "nope + 1", "column \"nope\" does not exist (at 0)"},
        {EXPR_BIGINT, "1 +", "syntax error at end of input (at 3)"},
        {EXPR_BIGINT, "1 + 'a'", "invalid input syntax for type bigint: \"a\" (at 4)"},
        {EXPR_BIGINT, "'abc'", "invalid input syntax for type bigint: \"abc\" (at 0)"},
        {EXPR_DATE, "  '2020-13-01'", "invalid input syntax for type date: \"2020-13-01\" (at 2)"},
        {EXPR_BIGINT, "1e300", "bigint out of range"},
        {EXPR_BIGINT, "1 / 0", "division by zero (at 2)"},
        {EXPR_BIGINT, "true", "a boolean value cannot be assigned to a bigint field"},
        {EXPR_DATE, "5", "a bigint value cannot be assigned to a date field"},
        {EXPR_DOUBLE, "'NaN'", "NaN cannot be stored"},
        {EXPR_BIGINT, "1; SELECT 2", "only one expression"},
        {EXPR_JSONB, "'{'", "invalid input syntax for type json"},
    };
    ev_schema *s = schema_new("E", 1);
    payi_err err;
    add(s, "a", EXPR_BIGINT, false, NULL);
    for (size_t k = 0; k < sizeof defs / sizeof defs[0]; k++) {
        payi_err_clear(&err);
        payi_code rc = schema_add_field(s, "x", 1, defs[k].type, false, defs[k].sql, strlen(defs[k].sql), &err);
        if (rc != PAYI_VALIDATION || strcmp(err.field, "x") != 0 || !strstr(err.msg, defs[k].msg) ||
            !strstr(err.msg, "invalid DEFAULT for field \"x\""))
            test_fail(__FILE__, __LINE__, "default %s: %s (%s)", defs[k].sql, err.msg, err.field);
    }
    CHECK_EQ_INT(s->nfields, 1);
    CHECK_EQ_INT(schema_add_field(s, "a", 1, EXPR_TEXT, false, NULL, 0, &err), PAYI_VALIDATION);
    CHECK(strstr(err.msg, "field \"a\" is declared twice") != NULL);
    CHECK_EQ_INT(schema_add_field(s, "", 0, EXPR_TEXT, false, NULL, 0, &err), PAYI_VALIDATION);
    CHECK_EQ_INT(schema_add_field(s, "\xff", 1, EXPR_TEXT, false, NULL, 0, &err), PAYI_VALIDATION);
    CHECK_EQ_INT(schema_add_field(s, "y", 1, (expr_type)99, false, NULL, 0, &err), PAYI_VALIDATION);
    for (int i = 1; i < SCHEMA_MAX_FIELDS; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        CHECK_EQ_INT(schema_add_field(s, name, strlen(name), EXPR_BOOL, false, NULL, 0, &err), PAYI_OK);
    }
    CHECK_EQ_INT(schema_add_field(s, "last", 4, EXPR_BOOL, false, NULL, 0, &err), PAYI_VALIDATION);
    CHECK(strstr(err.msg, "too many fields") != NULL);
    CHECK_EQ_INT(s->nfields, SCHEMA_MAX_FIELDS);
    /* CHECK errors. */
    CHECK_EQ_INT(schema_add_check(s, NULL, "a + 1", 5, &err), PAYI_VALIDATION);
    CHECK(strstr(err.msg, "must be a boolean expression, not bigint") != NULL);
    CHECK_EQ_INT(schema_add_check(s, "a", "b > 0", 5, &err), PAYI_VALIDATION);
    CHECK(strstr(err.msg, "column \"b\" does not exist (at 0)") != NULL);
    CHECK_STR(err.field, "a");
    CHECK_EQ_INT(schema_add_check(s, "zz", "a > 0", 5, &err), PAYI_VALIDATION);
    CHECK(strstr(err.msg, "unknown field \"zz\"") != NULL);
    CHECK_EQ_INT(schema_field_index(s, "f255", 4), 255);
    CHECK_EQ_INT(schema_field_index(s, "f25", 3), 25);
    CHECK_EQ_INT(schema_field_index(s, "f2555", 5), -1);
    schema_free(s);
}

TEST(schema_encode_layout)
{
    /* The example of schema.h: 4 + 1 + 24 + 2 = 31 bytes. */
    ev_schema *s = schema_new("Ex", 2);
    add(s, "country", EXPR_TEXT, false, NULL);
    add(s, "day", EXPR_DATE, false, NULL);
    add(s, "cases", EXPR_BIGINT, false, NULL);
    s->id = 3;
    expr_value v[3] = {expr_text("CI", 2), expr_date(expr_days_from_civil(2020, 3, 11)), expr_int(5)};
    buf b = BUF_INIT;
    schema_encode(s, v, &b);
    static const unsigned char want[31] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x9C, 0x47, 0, 0, 0, 0, 0, 0,
                                           5, 0, 0, 0, 0, 0, 0, 0, 'C', 'I'};
    CHECK_EQ_INT(b.len, 31);
    CHECK_MEM(b.data, want, 31);
    uint32_t id = 0;
    CHECK(schema_data_id(b.data, b.len, &id) && id == 3);
    CHECK(!schema_data_id(b.data, 3, &id));
    /* NULLs: bit set, zero slot, no tail bytes. */
    v[0] = expr_null(EXPR_TEXT);
    v[2] = expr_null(EXPR_BIGINT);
    buf_reset(&b);
    schema_encode(s, v, &b);
    CHECK_EQ_INT(b.len, 29);
    CHECK_EQ_INT((unsigned char)b.data[4], 5);
    payi_err err;
    CHECK_EQ_INT(schema_check_data(s, b.data, b.len, &err), PAYI_OK);
    buf out = BUF_INIT;
    schema_write_json(s, b.data, b.len, &out);
    CHECK_STR(out.data, J("{'country':null,'day':'2020-03-11','cases':null}"));
    buf_release(&out);
    buf_release(&b);
    schema_free(s);
}

/* A valid typed record of cases_schema with every tail value present. */
static void valid_record(const ev_schema *s, buf *b)
{
    json_doc d = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value slots[NF];
    payi_err err;
    if (decode(s, J("{'country':'C\xc3\xa9','day':'2020-03-11','cases':5,'rate':1.5,'at':'2020-03-11T10:00:00Z',"
                    "'ok':true,'extra':{'k':[1,'v']},'note':'n'}"),
               "", &d, slots, &ctx, &err) != PAYI_OK)
        test_fail(__FILE__, __LINE__, "valid_record: %s", err.msg);
    else
        schema_encode(s, slots, b);
    json_doc_release(&d);
    expr_ctx_release(&ctx);
}

static void put32(buf *b, size_t off, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        b->data[off + (size_t)k] = (char)(v >> (8 * k));
}

static void put64(buf *b, size_t off, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        b->data[off + (size_t)k] = (char)(v >> (8 * k));
}

#define HEAD 69                          /* 4 + 1 + 8 * 8 */
#define SLOT(i) (5 + 8 * (size_t)(i))

TEST(schema_check_data_rejects_damage)
{
    ev_schema *s = cases_schema();
    buf good = BUF_INIT, b = BUF_INIT, out = BUF_INIT;
    payi_err err;
    valid_record(s, &good);
    CHECK_EQ_INT(schema_check_data(s, good.data, good.len, &err), PAYI_OK);
    CHECK_EQ_INT(good.len, HEAD + 3 + 13 + 1);   /* "Cé", {"k":[1,"v"]}, "n" */
    /* Every truncation, and one byte more. */
    for (size_t n = 0; n < good.len; n++)
        if (schema_check_data(s, good.data, n, &err) != PAYI_CORRUPT)
            test_fail(__FILE__, __LINE__, "truncation to %zu bytes accepted", n);
    buf_reset(&b);
    buf_put(&b, good.data, good.len);
    buf_putc(&b, 'x');
    CHECK_EQ_INT(schema_check_data(s, b.data, b.len, &err), PAYI_CORRUPT);
    CHECK(strstr(err.msg, "1 bytes after the last value") != NULL);

    static const struct {
        size_t off;
        int width;   /* 1, 4 or 8 bytes */
        uint64_t v;
        const char *msg;
    } damage[] = {
        {0, 4, 8, "schema id 8, expected 7"},
        {SLOT(0), 4, 1, "value at tail offset 1, expected 0"},
        {SLOT(0) + 4, 4, 0xFFFFFFFF, "run past"},
        {SLOT(0) + 4, 4, 2, "value at tail offset 3, expected 2"},
        {SLOT(6), 4, 0xFFFFFFF0, "expected 3"},
        {SLOT(7) + 4, 4, 0, "1 bytes after the last value"},
        {SLOT(5), 8, 2, "boolean slot holds 2"},
        {SLOT(3), 8, 0x7FF0000000000000ULL, "double is not finite"},
        {SLOT(3), 8, 0x7FF8000000000001ULL, "double is not finite"},
        {SLOT(1), 8, 3000000, "outside years 0001..9999"},
        {SLOT(1), 8, (uint64_t)-800000, "outside years 0001..9999"},
        {SLOT(4), 8, (uint64_t)INT64_MIN, "outside years 0001..9999"},
        {HEAD + 1, 1, 0xFF, "text is not valid UTF-8 at byte 1"},
        {HEAD + 1, 1, 0, "text contains U+0000 at byte 1"},
        {HEAD + 4, 1, '[', "jsonb is not valid JSON"},
        {4, 1, 0x01, "NULL in a NOT NULL field"},
        {4, 1, 0x04, "NULL but its slot is not zero"},
    };
    for (size_t k = 0; k < sizeof damage / sizeof damage[0]; k++) {
        buf_reset(&b);
        buf_put(&b, good.data, good.len);
        if (damage[k].width == 1)
            b.data[damage[k].off] = (char)damage[k].v;
        else if (damage[k].width == 4)
            put32(&b, damage[k].off, (uint32_t)damage[k].v);
        else
            put64(&b, damage[k].off, damage[k].v);
        payi_err_clear(&err);
        if (schema_check_data(s, b.data, b.len, &err) != PAYI_CORRUPT || !strstr(err.msg, damage[k].msg))
            test_fail(__FILE__, __LINE__, "damage %zu accepted or wrong message: %s", k, err.msg);
    }
    /* Padding bits of the bitmap: a 3-field schema uses 3 of 8. */
    ev_schema *small = schema_new("S", 1);
    add(small, "a", EXPR_BOOL, false, NULL);
    add(small, "b", EXPR_BOOL, false, NULL);
    add(small, "c", EXPR_BOOL, false, NULL);
    buf_reset(&b);
    schema_encode(small, (expr_value[]){expr_bool(true), expr_null(EXPR_BOOL), expr_bool(false)}, &b);
    CHECK_EQ_INT(schema_check_data(small, b.data, b.len, &err), PAYI_OK);
    b.data[4] |= 0x08;
    CHECK_EQ_INT(schema_check_data(small, b.data, b.len, &err), PAYI_CORRUPT);
    CHECK(strstr(err.msg, "bits set past field 3") != NULL);
    schema_free(small);
    /* Any single damaged byte: refused, or still renders valid JSON. */
    json_doc d = JSON_DOC_INIT;
    static const unsigned char masks[] = {0x01, 0x10, 0x80, 0xFF};
    for (size_t i = 0; i < good.len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            buf_reset(&b);
            buf_put(&b, good.data, good.len);
            b.data[i] = (char)(b.data[i] ^ masks[m]);
            if (schema_check_data(s, b.data, b.len, &err) != PAYI_OK)
                continue;
            buf_reset(&out);
            schema_write_json(s, b.data, b.len, &out);
            if (!json_parse(&d, out.data, out.len, NULL, NULL))
                test_fail(__FILE__, __LINE__, "byte %zu ^ 0x%02x: invalid JSON %s", i, masks[m], out.data);
        }
    }
    json_doc_release(&d);
    buf_release(&out);
    buf_release(&b);
    buf_release(&good);
    schema_free(s);
}

TEST(schema_doubles_round_trip)
{
    ev_schema *s = schema_new("D", 1);
    add(s, "x", EXPR_DOUBLE, false, NULL);
    s->id = 1;
    static const struct {
        double v;
        const char *json;
    } cases[] = {
        {0.1, "0.1"},
        {1e300, "1e+300"},
        {-0.0, "-0"},
        {0.0, "0"},
        {5e-324, "4.94065645841247e-324"},
        {1.0 / 3, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {-DBL_MIN, "-2.2250738585072014e-308"},
        {2.5e-5, "2.5e-05"},
        {123456789012345678.0, "1.2345678901234568e+17"},
        {100, "100"},
    };
    buf typed = BUF_INIT, out = BUF_INIT;
    json_doc d = JSON_DOC_INIT;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        expr_value v = expr_double(cases[k].v), back;
        payi_err err;
        buf_reset(&typed);
        buf_reset(&out);
        schema_encode(s, &v, &typed);
        CHECK_EQ_INT(schema_check_data(s, typed.data, typed.len, &err), PAYI_OK);
        schema_write_json(s, typed.data, typed.len, &out);
        char want[64];
        snprintf(want, sizeof want, "{\"x\":%s}", cases[k].json);
        CHECK_STR(out.data, want);
        if (decode(s, out.data, "", &d, &back, &ctx, &err) != PAYI_OK)
            test_fail(__FILE__, __LINE__, "%s: %s", out.data, err.msg);
        else if (memcmp(&back.d, &cases[k].v, sizeof back.d) != 0)
            test_fail(__FILE__, __LINE__, "%s read back as %.17g", out.data, back.d);
    }
    /* Non-finite doubles (computed only) render as PostgreSQL's to_json does. */
    buf_reset(&out);
    schema_put_value_json(&out, &(expr_value){.type = EXPR_DOUBLE, .d = NAN});
    schema_put_value_json(&out, &(expr_value){.type = EXPR_DOUBLE, .d = -INFINITY});
    CHECK_STR(out.data, "\"NaN\"\"-Infinity\"");
    json_doc_release(&d);
    expr_ctx_release(&ctx);
    buf_release(&typed);
    buf_release(&out);
    schema_free(s);
}

TEST(schema_dates_render_any_day)
{
    static const struct {
        expr_value v;
        const char *json;
    } cases[] = {
        {{.type = EXPR_DATE, .i = 0}, "\"1970-01-01\""},
        {{.type = EXPR_DATE, .i = -719162}, "\"0001-01-01\""},
        {{.type = EXPR_DATE, .i = -719163}, "\"0000-12-31\""},
        {{.type = EXPR_DATE, .i = -719529}, "\"-000001-12-31\""},
        {{.type = EXPR_DATE, .i = 2932897}, "\"+010000-01-01\""},
        {{.type = EXPR_TIMESTAMPTZ, .i = -1}, "\"1969-12-31T23:59:59.999999Z\""},
        {{.type = EXPR_TIMESTAMPTZ, .i = 1583922600000001LL}, "\"2020-03-11T10:30:00.000001Z\""},
        {{.type = EXPR_BOOL, .b = true}, "true"},
        {{.type = EXPR_BIGINT, .i = INT64_MIN}, "-9223372036854775808"},
        {{.type = EXPR_TEXT, .len = 4, .s = "a\"\n\x01"}, "\"a\\\"\\n\\u0001\""},
        {{.type = EXPR_TEXT, .len = 3, .s = "a\xff" "b"}, "\"a\xef\xbf\xbd" "b\""},
        {{.type = EXPR_JSONB, .null = true}, "null"},
    };
    buf out = BUF_INIT;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        buf_reset(&out);
        schema_put_value_json(&out, &cases[k].v);
        if (strcmp(out.data, cases[k].json) != 0)
            test_fail(__FILE__, __LINE__, "case %zu: %s != %s", k, out.data, cases[k].json);
    }
    /* The extremes of int64 still give valid JSON strings. */
    json_doc d = JSON_DOC_INIT;
    const int64_t ext[] = {INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 719468};
    for (size_t k = 0; k < sizeof ext / sizeof ext[0]; k++) {
        for (int t = EXPR_DATE; t <= EXPR_TIMESTAMPTZ; t++) {
            expr_value v = {.type = (uint8_t)t, .i = ext[k]};
            buf_reset(&out);
            schema_put_value_json(&out, &v);
            CHECK(json_parse(&d, out.data, out.len, NULL, NULL));
            CHECK(d.n == 1 && d.nodes[0].kind == JSON_STRING);
        }
    }
    json_doc_release(&d);
    buf_release(&out);
}

TEST(schema_json_round_trip_same)
{
    ev_schema *s = cases_schema();
    add_check(s, "cases", "cases < 1000000000");
    add_check(s, "note", "length(note) < 100");
    add_check(s, NULL, "day >= '2020-01-01'");
    buf j = BUF_INIT, j2 = BUF_INIT;
    schema_to_json(s, &j);
    /* Written without J: the SQL holds ' quotes. */
    CHECK_STR(j.data,
              "{\"name\":\"CasesReported\",\"fields\":[{\"name\":\"country\",\"type\":\"text\",\"not_null\":true},"
              "{\"name\":\"day\",\"type\":\"date\",\"not_null\":true},"
              "{\"name\":\"cases\",\"type\":\"bigint\",\"not_null\":false,\"default\":\"0\",\"check\":[\"cases >= 0\","
              "\"cases < 1000000000\"]},{\"name\":\"rate\",\"type\":\"double precision\",\"not_null\":false},"
              "{\"name\":\"at\",\"type\":\"timestamp with time zone\",\"not_null\":false},"
              "{\"name\":\"ok\",\"type\":\"boolean\",\"not_null\":false,\"default\":\"true\"},"
              "{\"name\":\"extra\",\"type\":\"jsonb\",\"not_null\":false},"
              "{\"name\":\"note\",\"type\":\"text\",\"not_null\":false,\"default\":\"'n/a'\","
              "\"check\":\"length(note) < 100\"}],\"checks\":[\"rate IS NULL OR rate <= 1e6\","
              "\"day >= '2020-01-01'\"]}");
    json_doc d = JSON_DOC_INIT;
    ev_schema *r = NULL;
    payi_err err;
    CHECK(json_parse(&d, j.data, j.len, NULL, NULL));
    CHECK_EQ_INT(schema_from_json(&d, 0, &r, &err), PAYI_OK);
    if (r) {
        CHECK(schema_same(s, r));
        CHECK(schema_same(r, s));
        CHECK_EQ_INT(r->id, SCHEMA_NO_ID);
        CHECK(r->fields[7].def.len == 3 && memcmp(r->fields[7].def.s, "n/a", 3) == 0);
        schema_to_json(r, &j2);
        CHECK_STR(j2.data, j.data);
        schema_free(r);
    }
    /* Each difference is seen. */
    ev_schema *o = cases_schema();
    CHECK(!schema_same(s, o));   /* fewer checks */
    add_check(o, "cases", "cases < 1000000000");
    add_check(o, NULL, "day >= '2020-01-01'");
    add_check(o, "note", "length(note) < 100");   /* another order across fields: still the same */
    CHECK(schema_same(s, o));
    o->fields[3].not_null = true;
    CHECK(!schema_same(s, o));
    o->fields[3].not_null = false;
    o->fields[3].type = EXPR_BIGINT;
    CHECK(!schema_same(s, o));
    o->fields[3].type = EXPR_DOUBLE;
    free(o->fields[2].default_sql);
    o->fields[2].default_sql = strdup("1");
    CHECK(!schema_same(s, o));
    schema_free(o);
    o = cases_schema();
    add_check(o, "cases", "cases < 1000000000");
    add_check(o, NULL, "day >= '2020-01-01'");
    add_check(o, "note", "length(note) <= 100");
    CHECK(!schema_same(s, o));
    schema_free(o);
    json_doc_release(&d);
    buf_release(&j);
    buf_release(&j2);
    schema_free(s);
}

struct sj_case {
    const char *json, *field, *msg;
};

TEST(schema_from_json_errors)
{
    static const struct sj_case cases[] = {
        {"[]", "", "expected an object"},
        {"{'fields':[]}", "name", "required"},
        {"{'name':1,'fields':[]}", "name", "expected a string"},
        {"{'name':'X'}", "fields", "required"},
        {"{'name':'X','fields':[],'id':3}", "schema", "unknown member \"id\""},
        {"{'name':'X','fields':[5]}", "fields[0]", "expected an object"},
        {"{'name':'X','fields':[{'name':'a'}]}", "fields[0]", "\"name\" and \"type\" are required"},
        {"{'name':'X','fields':[{'name':'a','type':'int128'}]}", "fields[0]", "unknown type \"int128\""},
        {"{'name':'X','fields':[{'name':'a','type':'text','nullable':true}]}", "fields[0]", "unknown member"},
        {"{'name':'X','fields':[{'name':'a','type':'text','not_null':1}]}", "fields[0]", "true or false"},
        {"{'name':'X','fields':[{'name':'a','type':'bigint','default':'a + 1'}]}", "fields[0]",
         "DEFAULT must be a constant"},
        {"{'name':'X','fields':[{'name':'a','type':'text'},{'name':'a','type':'text'}]}", "fields[1]",
         "declared twice"},
        {"{'name':'X','fields':[{'name':'a\\u0000','type':'text'}]}", "fields[0]", "U+0000"},
        {"{'name':'X','fields':[{'name':'a','type':'bigint','check':'a'}]}", "fields[0].check", "must be a boolean"},
        {"{'name':'X','fields':[{'name':'a','type':'bigint','check':[1]}]}", "fields[0].check", "expected a string"},
        {"{'name':'X','fields':[{'name':'a','type':'bigint'}],'checks':['b > 0']}", "checks[0]",
         "column \"b\" does not exist"},
        {"{'name':'X','fields':[],'checks':{}}", "checks", "expected an array"},
        {"{'name':'X','fields':[],'checks':[['true']]}", "checks[0]", "expected a string"},
    };
    json_doc d = JSON_DOC_INIT;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ev_schema *s = (ev_schema *)1;
        payi_err err;
        payi_err_clear(&err);
        const char *t = J(cases[k].json);
        if (!json_parse(&d, t, strlen(t), NULL, NULL)) {
            test_fail(__FILE__, __LINE__, "case %zu does not parse", k);
            continue;
        }
        payi_code rc = schema_from_json(&d, 0, &s, &err);
        if (rc != PAYI_VALIDATION || s != NULL || strcmp(err.field, cases[k].field) != 0 ||
            !strstr(err.msg, cases[k].msg))
            test_fail(__FILE__, __LINE__, "case %zu %s: %s field \"%s\" msg \"%s\"", k, cases[k].json,
                      payi_code_word(rc), err.field, err.msg);
    }
    json_doc_release(&d);
}
