/* Tests for src/store.  Every test body runs on each store in the table of
 * backends: SQLite (a file in a fresh temp directory) and, when
 * PAYI_TEST_PG_URL is set, PostgreSQL (tables named ut_*, dropped first).
 * The expected rows are the same strings for both, so "the same
 * definitions give the same rows" is checked by each test, and
 * store_same_rows_both compares the two stores directly on a larger mixed
 * workload. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/timefmt.h"
#include "store/store.h"
#include "test.h"

typedef struct backend {
    const char *name;
    store_kind kind;
    char url[600];
} backend;

static const char *cur = "?";   /* the backend under test, for messages */

#define BCHECK(cond)                                                                 \
    do {                                                                             \
        if (!(cond))                                                                 \
            test_fail(__FILE__, __LINE__, "[%s] CHECK(%s)", cur, #cond);             \
    } while (0)
#define BCHECK_STR(a, b)                                                             \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                       \
            test_fail(__FILE__, __LINE__, "[%s] %s ==\n\"%s\"\n, expected\n\"%s\"", cur, #a, \
                      a_ ? a_ : "(null)", b_ ? b_ : "(null)");                       \
    } while (0)
/* A call that must succeed; e is a payi_err in scope. */
#define BOK(call)                                                                    \
    do {                                                                             \
        payi_code rc_ = (call);                                                      \
        if (rc_ != PAYI_OK)                                                          \
            test_fail(__FILE__, __LINE__, "[%s] %s: %s: %s", cur, #call,             \
                      payi_code_word(rc_), e.msg);                                   \
    } while (0)
/* A call that must fail with code and a message containing needle. */
#define BFAIL(call, code, needle)                                                    \
    do {                                                                             \
        payi_code rc_ = (call);                                                      \
        if (rc_ != (code) || !strstr(e.msg, (needle)))                               \
            test_fail(__FILE__, __LINE__, "[%s] %s: got %s \"%s\", expected %s \"...%s...\"", cur, #call, \
                      payi_code_word(rc_), rc_ ? e.msg : "", payi_code_word(code), needle); \
    } while (0)

static int backends(backend out[2])
{
    int n = 0;
    out[n].name = "sqlite";
    out[n].kind = STORE_SQLITE;
    snprintf(out[n].url, sizeof out[n].url, "sqlite:%s/views.db", test_tmpdir());
    n++;
    const char *pg = getenv("PAYI_TEST_PG_URL");
    static bool noted;
    if (pg && *pg) {
        out[n].name = "postgres";
        out[n].kind = STORE_POSTGRES;
        snprintf(out[n].url, sizeof out[n].url, "%s", pg);
        n++;
    } else if (!noted) {
        noted = true;
        fprintf(stderr, "note: PAYI_TEST_PG_URL is not set: the store tests run on SQLite only\n");
    }
    return n;
}

#define FOR_BACKENDS(fn)                                                             \
    TEST(store_##fn)                                                                 \
    {                                                                                \
        backend bs[2];                                                               \
        int nb = backends(bs);                                                       \
        for (int i = 0; i < nb; i++) {                                               \
            cur = bs[i].name;                                                        \
            fn(&bs[i]);                                                              \
        }                                                                            \
    }

static store *open_store(const backend *b, store_mode mode)
{
    store *s = NULL;
    payi_err e = {0};
    if (store_open(&s, b->url, mode, &e) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "[%s] store_open %s: %s", cur, b->url, e.msg);
        return NULL;
    }
    return s;
}

/* A fresh table: dropped (a PostgreSQL database outlives the test), created. */
static void fresh(store *s, const store_table *t)
{
    payi_err e = {0};
    BOK(store_drop_table(s, t->name, &e));
    BOK(store_create_table(s, t, &e));
}

#define T(str) expr_text((str), strlen(str))
#define I(x) expr_int(x)
#define D(x) expr_double(x)
#define NUL(t) expr_null(t)

/* ---- dumping rows as text ---- */

static buf dumped;

static int dump_row(void *ctx, const expr_value *v, uint32_t n)
{
    buf *b = ctx;
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            buf_putc(b, '|');
        expr_value_format(&v[i], b);
    }
    buf_putc(b, '\n');
    return 0;
}

/* Every row of t ordered by its keys, "v|v|v\n" each (valid until the next dump). */
static const char *dump(store *s, const store_table *t)
{
    payi_err e = {0};
    buf_reset(&dumped);
    buf_puts(&dumped, "");
    BOK(store_select(s, t, NULL, 0, NULL, 0, -1, dump_row, &dumped, &e));
    return dumped.data;
}

/* ---- merge rules ---- */

static const store_col merge_cols[] = {
    {"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD},      {"n", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},
    {"x", EXPR_DOUBLE, SMERGE_ADD, 0, 0, STORE_NO_GUARD},    {"lo", EXPR_BIGINT, SMERGE_MIN, 0, 0, STORE_NO_GUARD},
    {"hi", EXPR_BIGINT, SMERGE_MAX, 0, 0, STORE_NO_GUARD},   {"r", EXPR_TEXT, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},
    {"kp", EXPR_TEXT, SMERGE_KEEP, 0, 0, STORE_NO_GUARD},    {"s", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},
    {"c", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},    {"a", EXPR_DOUBLE, SMERGE_AVG, 7, 8, STORE_NO_GUARD},
};
static const store_table merge_t = {"ut_merge", merge_cols, 10};

static void merge_rules(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    fresh(s, &merge_t);
    const expr_value r1[] = {
        T("a"), I(1), D(1.5), I(5), I(5), T("r1"), T("k1"), I(10), I(1), NUL(EXPR_DOUBLE),
        T("b"), NUL(EXPR_BIGINT), NUL(EXPR_DOUBLE), NUL(EXPR_BIGINT), NUL(EXPR_BIGINT), NUL(EXPR_TEXT),
        NUL(EXPR_TEXT), NUL(EXPR_BIGINT), I(0), D(99),   /* AVG's own value is ignored */
    };
    BOK(store_upsert(s, &merge_t, r1, 2, NULL, NULL, &e));
    BCHECK_STR(dump(s, &merge_t), "a|1|1.5|5|5|r1|k1|10|1|10\n"
                                  "b|NULL|NULL|NULL|NULL|NULL|NULL|NULL|0|NULL\n");
    const expr_value r2[] = {
        T("a"), I(2), NUL(EXPR_DOUBLE), I(3), NUL(EXPR_BIGINT), T("r2"), T("k2"), I(20), I(1), NUL(EXPR_DOUBLE),
        T("a"), NUL(EXPR_BIGINT), D(0.25), NUL(EXPR_BIGINT), I(9), NUL(EXPR_TEXT), T("k3"), NUL(EXPR_BIGINT),
        I(1), NUL(EXPR_DOUBLE),
        T("b"), I(4), D(2), I(7), I(7), T("rb"), T("kb"), I(6), I(2), NUL(EXPR_DOUBLE),
    };
    BOK(store_upsert(s, &merge_t, r2, 3, NULL, NULL, &e));
    BCHECK_STR(dump(s, &merge_t), "a|3|1.75|3|9|NULL|k1|30|3|10\n"
                                  "b|4|2|7|7|rb|NULL|6|2|3\n");
    store_close(s);
}
FOR_BACKENDS(merge_rules)

/* ---- text compares bytewise ---- */

static void text_bytewise(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    static const store_col cols[] = {
        {"k", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"mn", EXPR_TEXT, SMERGE_MIN, 0, 0, STORE_NO_GUARD}, {"mx", EXPR_TEXT, SMERGE_MAX, 0, 0, STORE_NO_GUARD}};
    static const store_table t = {"ut_bytes", cols, 3};
    fresh(s, &t);
    const char *words[] = {"a", "B", "\xc3\xa9", "z", "Z"};
    for (int i = 0; i < 5; i++) {
        expr_value row[] = {I(1), T(words[i]), T(words[i])};
        BOK(store_upsert(s, &t, row, 1, NULL, NULL, &e));
    }
    BCHECK_STR(dump(s, &t), "1|B|\xc3\xa9\n");

    static const store_col kcols[] = {{"w", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}};
    static const store_table kt = {"ut_bytes_order", kcols, 1};
    fresh(s, &kt);
    bool ins[5];
    expr_value rows[5];
    for (int i = 0; i < 5; i++)
        rows[i] = T(words[i]);
    BOK(store_insert_new(s, &kt, rows, 5, ins, &e));
    BCHECK_STR(dump(s, &kt), "B\nZ\na\nz\n\xc3\xa9\n");
    store_order desc = {0, true};
    buf_reset(&dumped);
    BOK(store_select(s, &kt, NULL, 0, &desc, 1, 2, dump_row, &dumped, &e));
    BCHECK_STR(dumped.data, "\xc3\xa9\nz\n");
    store_close(s);
}
FOR_BACKENDS(text_bytewise)

/* ---- every type round trip ---- */

static const store_col type_cols[] = {
    {"k", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD},          {"b", EXPR_BOOL, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},
    {"i", EXPR_BIGINT, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},      {"d", EXPR_DOUBLE, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},
    {"t", EXPR_TEXT, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},        {"dt", EXPR_DATE, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},
    {"ts", EXPR_TIMESTAMPTZ, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD}, {"j", EXPR_JSONB, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD},
};
static const store_table type_t = {"ut_types", type_cols, 8};

static int64_t ts_of(int64_t y, unsigned m, unsigned d, int64_t h, int64_t mi, int64_t sec, int64_t us)
{
    return expr_days_from_civil(y, m, d) * 86400000000LL + ((h * 60 + mi) * 60 + sec) * 1000000LL + us;
}

static void types_roundtrip(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    fresh(s, &type_t);
    const char *text = "h\xc3\xa9llo \"q\" \\ 'x'\n\ttab";
    const expr_value rows[] = {
        I(1), expr_bool(true), I(INT64_MAX), D(0.1), T(text), expr_date(expr_days_from_civil(2020, 3, 11)),
        expr_ts(ts_of(2020, 3, 11, 10, 30, 0, 123456)), expr_jsonb("\"x\"", 3),
        I(2), expr_bool(false), I(INT64_MIN), D(-1e300), T(""), expr_date(expr_days_from_civil(1, 1, 1)),
        expr_ts(ts_of(1, 1, 1, 0, 0, 0, 0)), expr_jsonb("null", 4),
        I(3), expr_bool(false), I(0), D(1.7976931348623157e308), T("z"),
        expr_date(expr_days_from_civil(9999, 12, 31)), expr_ts(ts_of(9999, 12, 31, 23, 59, 59, 999999)),
        expr_jsonb("1", 1),
        I(4), NUL(EXPR_BOOL), NUL(EXPR_BIGINT), NUL(EXPR_DOUBLE), NUL(EXPR_TEXT), NUL(EXPR_DATE),
        NUL(EXPR_TIMESTAMPTZ), NUL(EXPR_JSONB),
        I(5), expr_bool(true), I(-1), D(5e-324), T("a"), expr_date(-1), expr_ts(-1), expr_jsonb("[]", 2),
    };
    BOK(store_upsert(s, &type_t, rows, 5, NULL, NULL, &e));
    char want[1000];
    snprintf(want, sizeof want,
             "1|true|9223372036854775807|0.1|%s|2020-03-11|2020-03-11 10:30:00.123456+00|\"x\"\n"
             "2|false|-9223372036854775808|-1e+300||0001-01-01|0001-01-01 00:00:00+00|null\n"
             "3|false|0|1.7976931348623157e+308|z|9999-12-31|9999-12-31 23:59:59.999999+00|1\n"
             "4|NULL|NULL|NULL|NULL|NULL|NULL|NULL\n"
             "5|true|-1|5e-324|a|1969-12-31|1969-12-31 23:59:59.999999+00|[]\n", text);
    BCHECK_STR(dump(s, &type_t), want);

    /* Filters of every type find their row. */
    for (int c = 2; c < 7; c++) {   /* column 1 (false) is also row 3's */
        store_filter f = {(uint32_t)c, rows[8 + c]};
        buf_reset(&dumped);
        BOK(store_select(s, &type_t, &f, 1, NULL, 0, -1, dump_row, &dumped, &e));
        BCHECK(dumped.data && strncmp(dumped.data, "2|", 2) == 0 && strchr(dumped.data, '\n') == dumped.data + dumped.len - 1);
    }
    store_filter fnull = {3, NUL(EXPR_DOUBLE)};
    buf_reset(&dumped);
    BOK(store_select(s, &type_t, &fnull, 1, NULL, 0, -1, dump_row, &dumped, &e));
    BCHECK_STR(dumped.data, "4|NULL|NULL|NULL|NULL|NULL|NULL|NULL\n");

    /* Out of range dates are refused, not stored mangled. */
    expr_value bad[] = {I(6), NUL(EXPR_BOOL), NUL(EXPR_BIGINT), NUL(EXPR_DOUBLE), NUL(EXPR_TEXT),
                        expr_date(expr_days_from_civil(10000, 1, 1)), NUL(EXPR_TIMESTAMPTZ), NUL(EXPR_JSONB)};
    BFAIL(store_upsert(s, &type_t, bad, 1, NULL, NULL, &e), PAYI_VALIDATION, "out of range");
    /* A value of another type than its column. */
    bad[5] = T("2020-01-01");
    BFAIL(store_upsert(s, &type_t, bad, 1, NULL, NULL, &e), PAYI_VALIDATION, "column \"dt\" is date");
    store_close(s);

    /* The stored forms, through the read-only SQL endpoint. */
    store *ro = open_store(b, STORE_RO);
    if (!ro)
        return;
    buf out = BUF_INIT;
    BOK(store_sql_json(ro, "SELECT dt, ts, b, i, d FROM ut_types WHERE k = 1", 10, 5000, &out, &e));
    BCHECK_STR(out.data, b->kind == STORE_SQLITE
                   ? "{\"columns\":[\"dt\",\"ts\",\"b\",\"i\",\"d\"],\"rows\":[[\"2020-03-11\","
                     "\"2020-03-11T10:30:00.123456Z\",1,9223372036854775807,0.1]],\"truncated\":false}"
                   : "{\"columns\":[\"dt\",\"ts\",\"b\",\"i\",\"d\"],\"rows\":[[\"2020-03-11\","
                     "\"2020-03-11T10:30:00.123456Z\",true,9223372036854775807,0.1]],"
                     "\"truncated\":false}");
    buf_release(&out);
    store_close(ro);
}
FOR_BACKENDS(types_roundtrip)

/* ---- RETURNING rows ---- */

static void returning_rows(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    fresh(s, &merge_t);
    const expr_value r1[] = {
        T("a"), I(1), D(1), I(5), I(5), T("r1"), T("k1"), I(10), I(1), NUL(EXPR_DOUBLE),
        T("a"), I(2), D(1), I(3), I(3), T("r2"), T("k2"), I(20), I(3), NUL(EXPR_DOUBLE),
        T("b"), I(7), NUL(EXPR_DOUBLE), I(1), I(1), NUL(EXPR_TEXT), T("kb"), I(1), I(0), NUL(EXPR_DOUBLE),
    };
    buf got = BUF_INIT;
    BOK(store_upsert(s, &merge_t, r1, 3, dump_row, &got, &e));
    BCHECK_STR(got.data, "a|1|1|5|5|r1|k1|10|1|10\n"
                         "a|3|2|3|5|r2|k1|30|4|7.5\n"
                         "b|7|NULL|1|1|NULL|kb|1|0|NULL\n");
    BCHECK_STR(dump(s, &merge_t), "a|3|2|3|5|r2|k1|30|4|7.5\n"
                                  "b|7|NULL|1|1|NULL|kb|1|0|NULL\n");

    /* Only keys and KEEP columns: a conflict still reports its row. */
    static const store_col kc[] = {{"k", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"first", EXPR_TEXT, SMERGE_KEEP, 0, 0, STORE_NO_GUARD}};
    static const store_table kt = {"ut_keep", kc, 2};
    fresh(s, &kt);
    const expr_value kr[] = {I(1), T("one"), I(1), T("uno"), I(2), T("two")};
    buf_reset(&got);
    BOK(store_upsert(s, &kt, kr, 3, dump_row, &got, &e));
    BCHECK_STR(got.data, "1|one\n1|one\n2|two\n");
    BOK(store_upsert(s, &kt, kr, 3, NULL, NULL, &e));
    BCHECK_STR(dump(s, &kt), "1|one\n2|two\n");
    buf_release(&got);
    store_close(s);
}
FOR_BACKENDS(returning_rows)

/* ---- guarded REPLACE / KEEP (latest / earliest) ---- */

static void guards(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    static const store_col cols[] = {
        {"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD},       {"lat", EXPR_TEXT, SMERGE_REPLACE, 0, 0, 2},
        {"lat_pos", EXPR_BIGINT, SMERGE_MAX, 0, 0, STORE_NO_GUARD}, {"ear", EXPR_TEXT, SMERGE_KEEP, 0, 0, 4},
        {"ear_pos", EXPR_BIGINT, SMERGE_MIN, 0, 0, STORE_NO_GUARD},
    };
    static const store_table t = {"ut_guard", cols, 5};
    fresh(s, &t);
    /* Each step for key "a" and for the NULL key (SQLite's other path). */
    const expr_value none[] = {T("a"), NUL(EXPR_TEXT), NUL(EXPR_BIGINT), NUL(EXPR_TEXT), NUL(EXPR_BIGINT),
                               NUL(EXPR_TEXT), NUL(EXPR_TEXT), NUL(EXPR_BIGINT), NUL(EXPR_TEXT), NUL(EXPR_BIGINT)};
    const expr_value x5[] = {T("a"), T("x"), I(5), T("x"), I(5), NUL(EXPR_TEXT), T("x"), I(5), T("x"), I(5)};
    const expr_value null9[] = {T("a"), NUL(EXPR_TEXT), I(9), T("y"), I(9),
                                NUL(EXPR_TEXT), NUL(EXPR_TEXT), I(9), T("y"), I(9)};
    BOK(store_upsert(s, &t, none, 2, NULL, NULL, &e));
    BCHECK_STR(dump(s, &t), "a|NULL|NULL|NULL|NULL\nNULL|NULL|NULL|NULL|NULL\n");
    BOK(store_upsert(s, &t, x5, 2, NULL, NULL, &e));
    BCHECK_STR(dump(s, &t), "a|x|5|x|5\nNULL|x|5|x|5\n");
    BOK(store_upsert(s, &t, none, 2, NULL, NULL, &e));   /* no value: nothing changes */
    BCHECK_STR(dump(s, &t), "a|x|5|x|5\nNULL|x|5|x|5\n");
    BOK(store_upsert(s, &t, null9, 2, NULL, NULL, &e));  /* a NULL value is a value for latest */
    BCHECK_STR(dump(s, &t), "a|NULL|9|x|5\nNULL|NULL|9|x|5\n");

    store_col bad[] = {{"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"v", EXPR_TEXT, SMERGE_REPLACE, 0, 0, 0}};
    store_table bt = {"ut_guard_bad", bad, 2};
    BFAIL(store_create_table(s, &bt, &e), PAYI_VALIDATION, "guard");
    bad[1].guard = 1;
    BFAIL(store_create_table(s, &bt, &e), PAYI_VALIDATION, "guard");
    bad[1].merge = SMERGE_ADD;   /* ignored by other rules */
    bad[1].type = EXPR_BIGINT;
    BOK(store_drop_table(s, "ut_guard_bad", &e));
    BOK(store_create_table(s, &bt, &e));
    store_close(s);
}
FOR_BACKENDS(guards)

/* ---- NULL keys ---- */

static int stop_at_first(void *ctx, const expr_value *v, uint32_t n)
{
    dump_row(ctx, v, n);
    return 1;
}

static void null_keys(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    static const store_col cols[] = {
        {"k1", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"k2", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"n", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD}};
    static const store_table t = {"ut_nullkey", cols, 3};
    fresh(s, &t);
    const expr_value rows[] = {
        NUL(EXPR_TEXT), I(1), I(1),   NUL(EXPR_TEXT), I(1), I(2),  T("x"), NUL(EXPR_BIGINT), I(5),
        NUL(EXPR_TEXT), NUL(EXPR_BIGINT), I(1),
    };
    buf got = BUF_INIT;
    BOK(store_upsert(s, &t, rows, 4, dump_row, &got, &e));
    BCHECK_STR(got.data, "NULL|1|1\nNULL|1|3\nx|NULL|5\nNULL|NULL|1\n");
    BOK(store_upsert(s, &t, rows, 1, NULL, NULL, &e));
    BCHECK_STR(dump(s, &t), "x|NULL|5\nNULL|1|4\nNULL|NULL|1\n");

    store_filter f = {0, NUL(EXPR_TEXT)};
    buf_reset(&got);
    BOK(store_select(s, &t, &f, 1, NULL, 0, -1, dump_row, &got, &e));
    BCHECK_STR(got.data, "NULL|1|4\nNULL|NULL|1\n");
    store_order o = {1, true};   /* DESC: NULLs first, as PostgreSQL */
    buf_reset(&got);
    BOK(store_select(s, &t, &f, 1, &o, 1, -1, dump_row, &got, &e));
    BCHECK_STR(got.data, "NULL|NULL|1\nNULL|1|4\n");
    buf_reset(&got);
    BOK(store_select(s, &t, NULL, 0, NULL, 0, -1, stop_at_first, &got, &e));
    BCHECK_STR(got.data, "x|NULL|5\n");

    const expr_value del[] = {NUL(EXPR_TEXT), I(1), T("nope"), I(3)};
    BOK(store_delete(s, &t, del, 2, &e));
    BCHECK_STR(dump(s, &t), "x|NULL|5\nNULL|NULL|1\n");
    const expr_value del2[] = {NUL(EXPR_TEXT), NUL(EXPR_BIGINT), T("x"), NUL(EXPR_BIGINT)};
    BOK(store_delete(s, &t, del2, 2, &e));
    BCHECK_STR(dump(s, &t), "");

    static const store_col sc[] = {{"v", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}};
    static const store_table st = {"ut_nullset", sc, 1};
    fresh(s, &st);
    const expr_value set[] = {NUL(EXPR_TEXT), NUL(EXPR_TEXT), T("a")};
    bool ins[3];
    BOK(store_insert_new(s, &st, set, 3, ins, &e));
    BCHECK(ins[0] && !ins[1] && ins[2]);
    BOK(store_insert_new(s, &st, set, 3, ins, &e));
    BCHECK(!ins[0] && !ins[1] && !ins[2]);
    BCHECK_STR(dump(s, &st), "a\nNULL\n");
    buf_release(&got);
    store_close(s);
}
FOR_BACKENDS(null_keys)

/* ---- insert_new and delete ---- */

static void sets_and_deletes(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    static const store_col cols[] = {{"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"v", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}};
    static const store_table t = {"ut_set", cols, 2};
    fresh(s, &t);
    const expr_value r1[] = {T("a"), I(1), T("a"), I(2), T("a"), I(1), T("b"), I(1)};
    bool ins[4];
    BOK(store_insert_new(s, &t, r1, 4, ins, &e));
    BCHECK(ins[0] && ins[1] && !ins[2] && ins[3]);
    const expr_value r2[] = {T("a"), I(1), T("c"), I(3), T("c"), I(3)};
    BOK(store_insert_new(s, &t, r2, 3, ins, &e));
    BCHECK(!ins[0] && ins[1] && !ins[2]);
    BCHECK_STR(dump(s, &t), "a|1\na|2\nb|1\nc|3\n");

    /* Enough rows for several pipeline windows. */
    enum { N = 1200 };
    static expr_value many[N * 2];
    static char names[N][8];
    static bool mins[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i % 700);
        many[2 * i] = T(names[i]);
        many[2 * i + 1] = I(i % 700);
    }
    BOK(store_insert_new(s, &t, many, N, mins, &e));
    int n_new = 0;
    for (int i = 0; i < N; i++)
        n_new += mins[i] && i < 700;
    BCHECK(n_new == 700 && !mins[700] && !mins[N - 1]);
    BOK(store_delete(s, &t, many, N, &e));
    BCHECK_STR(dump(s, &t), "a|1\na|2\nb|1\nc|3\n");

    const expr_value d[] = {T("a"), I(2), T("zz"), I(0), T("c"), I(3)};
    BOK(store_delete(s, &t, d, 3, &e));
    BCHECK_STR(dump(s, &t), "a|1\nb|1\n");
    const expr_value badkey[] = {I(1), I(2)};
    BFAIL(store_delete(s, &t, badkey, 1, &e), PAYI_VALIDATION, "column \"k\" is text");
    store_close(s);
}
FOR_BACKENDS(sets_and_deletes)

/* ---- a table without key columns ---- */

static void hidden_key(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    static const store_col cols[] = {{"total", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD}, {"top", EXPR_DOUBLE, SMERGE_MAX, 0, 0, STORE_NO_GUARD}};
    static const store_table t = {"ut_one", cols, 2};
    fresh(s, &t);
    const expr_value rows[] = {I(1), D(0.5), I(2), NUL(EXPR_DOUBLE), I(3), D(-1)};
    buf got = BUF_INIT;
    BOK(store_upsert(s, &t, rows, 3, dump_row, &got, &e));
    BCHECK_STR(got.data, "1|0.5\n3|0.5\n6|0.5\n");
    BOK(store_upsert(s, &t, rows, 1, NULL, NULL, &e));
    BCHECK_STR(dump(s, &t), "7|0.5\n");
    BOK(store_delete(s, &t, NULL, 1, &e));
    BCHECK_STR(dump(s, &t), "");
    BOK(store_upsert(s, &t, rows + 4, 1, NULL, NULL, &e));
    BCHECK_STR(dump(s, &t), "3|-1\n");

    static const store_col reserved[] = {{"PAYI_ONE", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD}};
    static const store_table rt = {"ut_reserved", reserved, 1};
    BFAIL(store_create_table(s, &rt, &e), PAYI_VALIDATION, "reserved");
    store_close(s);

    store *ro = open_store(b, STORE_RO);
    if (!ro)
        return;
    buf_reset(&got);
    BOK(store_sql_json(ro, "SELECT * FROM ut_one", 10, 5000, &got, &e));
    BCHECK_STR(got.data, "{\"columns\":[\"payi_one\",\"total\",\"top\"],\"rows\":[[1,3,-1]],\"truncated\":false}");
    buf_release(&got);
    store_close(ro);
}
FOR_BACKENDS(hidden_key)

/* ---- checkpoints ---- */

static void meta_roundtrip(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    store_meta m;
    BOK(store_delete_meta(s, "ut_view", &e));
    BOK(store_get_meta(s, "ut_view", &m, &e));
    BCHECK(!m.found);
    BOK(store_put_meta(s, "ut_view", 0xfedcba9876543210ULL, 7, "ut_view_t", "SELECT 1", &e));
    BOK(store_get_meta(s, "ut_view", &m, &e));
    BCHECK(m.found && m.hash == 0xfedcba9876543210ULL && m.position == 7);
    BCHECK_STR(m.table, "ut_view_t");
    BOK(store_put_meta(s, "ut_view", 43, (uint64_t)INT64_MAX, NULL, NULL, &e));
    BOK(store_get_meta(s, "ut_view", &m, &e));
    BCHECK(m.found && m.hash == 43 && m.position == (uint64_t)INT64_MAX);
    BCHECK_STR(m.table, "ut_view_t");
    BFAIL(store_put_meta(s, "ut_view", 1, (uint64_t)INT64_MAX + 1, NULL, NULL, &e), PAYI_VALIDATION, "position");
    BOK(store_delete_meta(s, "ut_view2", &e));
    BOK(store_put_meta(s, "ut_view2", 1, 2, NULL, NULL, &e));
    BOK(store_get_meta(s, "ut_view2", &m, &e));
    BCHECK_STR(m.table, "ut_view2");
    store_close(s);

    store *ro = open_store(b, STORE_RO);
    if (!ro)
        return;
    buf out = BUF_INIT;
    BOK(store_sql_json(ro, "SELECT definition FROM payi_views WHERE view = 'ut_view'", 10, 5000, &out, &e));
    BCHECK_STR(out.data, "{\"columns\":[\"definition\"],\"rows\":[[\"SELECT 1\"]],\"truncated\":false}");
    BOK(store_get_meta(ro, "ut_view", &m, &e));
    BCHECK(m.found && m.hash == 43);
    BFAIL(store_put_meta(ro, "ut_view", 1, 1, NULL, NULL, &e), PAYI_INTERNAL, "read-only");
    buf_release(&out);
    store_close(ro);

    s = open_store(b, STORE_RW);
    if (!s)
        return;
    BOK(store_delete_meta(s, "ut_view", &e));
    BOK(store_get_meta(s, "ut_view", &m, &e));
    BCHECK(!m.found);
    store_close(s);
}
FOR_BACKENDS(meta_roundtrip)

/* ---- replace_table ---- */

static const store_col live_cols[] = {{"k", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"v", EXPR_TEXT, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD}};

static void fill(store *s, const char *name, const char *v)
{
    payi_err e = {0};
    store_table t = {name, live_cols, 2};
    fresh(s, &t);
    expr_value row[] = {I(1), T(v)};
    BOK(store_upsert(s, &t, row, 1, NULL, NULL, &e));
}

static const char *sql_cell(store *ro, const char *sql, buf *out)
{
    payi_err e = {0};
    buf_reset(out);
    if (store_sql_json(ro, sql, 10, 5000, out, &e) != PAYI_OK) {
        buf_reset(out);
        buf_printf(out, "error: %s", e.msg);
    }
    return out->data;
}

static void replace_table(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    store_table live = {"ut_live", live_cols, 2}, next = {"ut_live_next", live_cols, 2};
    fill(s, "ut_live", "old");
    fill(s, "ut_live_next", "new");
    store *ro = open_store(b, STORE_RO);
    buf out = BUF_INIT;
    BOK(store_begin(s, &e));
    BOK(store_replace_table(s, "ut_live_next", "ut_live", &e));
    if (ro && b->kind == STORE_SQLITE)   /* PostgreSQL readers wait on the lock instead */
        BCHECK_STR(sql_cell(ro, "SELECT v FROM ut_live", &out),
                   "{\"columns\":[\"v\"],\"rows\":[[\"old\"]],\"truncated\":false}");
    BOK(store_commit(s, &e));
    if (ro)
        BCHECK_STR(sql_cell(ro, "SELECT v FROM ut_live", &out),
                   "{\"columns\":[\"v\"],\"rows\":[[\"new\"]],\"truncated\":false}");
    BCHECK(!store_table_exists(s, "ut_live_next", &e));
    BCHECK(store_table_exists(s, "ut_live", &e));
    BCHECK_STR(dump(s, &live), "1|new\n");

    /* Rolled back: both tables as they were. */
    fill(s, "ut_live_next", "newer");
    BOK(store_begin(s, &e));
    BOK(store_replace_table(s, "ut_live_next", "ut_live", &e));
    store_rollback(s);
    BCHECK_STR(dump(s, &live), "1|new\n");
    BCHECK_STR(dump(s, &next), "1|newer\n");

    /* Again (constraint and index names of the renamed table must not clash),
     * and into a name that does not exist. */
    BOK(store_replace_table(s, "ut_live_next", "ut_live", &e));
    BCHECK_STR(dump(s, &live), "1|newer\n");
    BOK(store_drop_table(s, "ut_live_other", &e));
    fill(s, "ut_live_next", "newest");
    BOK(store_replace_table(s, "ut_live_next", "ut_live_other", &e));
    store_table other = {"ut_live_other", live_cols, 2};
    BCHECK_STR(dump(s, &other), "1|newest\n");
    BFAIL(store_replace_table(s, "ut_live", "payi_views", &e), PAYI_VALIDATION, "checkpoints");
    BFAIL(store_replace_table(s, "ut_missing", "ut_live", &e), PAYI_NOT_FOUND, "ut_missing");
    BCHECK_STR(dump(s, &live), "1|newer\n");
    buf_release(&out);
    store_close(ro);
    store_close(s);
}
FOR_BACKENDS(replace_table)

/* ---- transactions ---- */

static void transactions(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    store_table t = {"ut_txn", live_cols, 2}, missing = {"ut_txn_missing", live_cols, 2};
    fresh(s, &t);
    BOK(store_drop_table(s, "ut_txn_missing", &e));
    BOK(store_delete_meta(s, "ut_txn", &e));
    expr_value row[] = {I(1), T("a")};
    store_meta m;

    BOK(store_begin(s, &e));
    BOK(store_upsert(s, &t, row, 1, NULL, NULL, &e));
    BOK(store_put_meta(s, "ut_txn", 1, 10, "ut_txn", NULL, &e));
    store_rollback(s);
    BCHECK_STR(dump(s, &t), "");
    BOK(store_get_meta(s, "ut_txn", &m, &e));
    BCHECK(!m.found);

    BOK(store_begin(s, &e));
    BFAIL(store_begin(s, &e), PAYI_INTERNAL, "already open");
    BOK(store_upsert(s, &t, row, 1, NULL, NULL, &e));
    BOK(store_put_meta(s, "ut_txn", 1, 10, "ut_txn", NULL, &e));
    BOK(store_commit(s, &e));
    BCHECK_STR(dump(s, &t), "1|a\n");
    BOK(store_get_meta(s, "ut_txn", &m, &e));
    BCHECK(m.found && m.position == 10);

    /* A failure spoils the transaction: nothing of it commits. */
    row[1] = T("b");
    BOK(store_begin(s, &e));
    BOK(store_upsert(s, &t, row, 1, NULL, NULL, &e));
    BFAIL(store_upsert(s, &missing, row, 1, NULL, NULL, &e), PAYI_NOT_FOUND, "ut_txn_missing");
    BFAIL(store_put_meta(s, "ut_txn", 1, 11, NULL, NULL, &e), PAYI_INTERNAL, "roll it back");
    BFAIL(store_commit(s, &e), PAYI_INTERNAL, "rolled back");
    BCHECK_STR(dump(s, &t), "1|a\n");
    BOK(store_get_meta(s, "ut_txn", &m, &e));
    BCHECK(m.position == 10);
    BFAIL(store_commit(s, &e), PAYI_INTERNAL, "without a transaction");
    store_rollback(s);   /* harmless outside a transaction */

    /* Outside a transaction a failed call changes nothing either. */
    const expr_value two[] = {I(2), T("x"), I(3), expr_int(4)};
    BFAIL(store_upsert(s, &t, two, 2, NULL, NULL, &e), PAYI_VALIDATION, "column \"v\" is text");
    BCHECK_STR(dump(s, &t), "1|a\n");
    store_close(s);
}
FOR_BACKENDS(transactions)

/* ---- bad input ---- */

static void bad_input(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    store_table missing = {"ut_nope", live_cols, 2};
    BOK(store_drop_table(s, "ut_nope", &e));
    expr_value row[] = {I(1), T("a")};
    BFAIL(store_upsert(s, &missing, row, 1, NULL, NULL, &e), PAYI_NOT_FOUND, "ut_nope");
    BFAIL(store_select(s, &missing, NULL, 0, NULL, 0, -1, dump_row, &dumped, &e), PAYI_NOT_FOUND, "ut_nope");
    bool ins;
    BFAIL(store_insert_new(s, &missing, row, 1, &ins, &e), PAYI_NOT_FOUND, "ut_nope");
    BFAIL(store_delete(s, &missing, row, 1, &e), PAYI_NOT_FOUND, "ut_nope");
    BCHECK(!store_table_exists(s, "ut_nope", &e));

    store_col c1[] = {{"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"v", EXPR_TEXT, SMERGE_ADD, 0, 0, STORE_NO_GUARD}};
    store_table bad = {"ut_bad", c1, 2};
    BFAIL(store_create_table(s, &bad, &e), PAYI_VALIDATION, "cannot merge by ADD");
    c1[1] = (store_col){"V", EXPR_JSONB, SMERGE_MAX, 0, 0, STORE_NO_GUARD};
    BFAIL(store_create_table(s, &bad, &e), PAYI_VALIDATION, "cannot merge by MIN/MAX");
    c1[1] = (store_col){"K", EXPR_TEXT, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD};
    BFAIL(store_create_table(s, &bad, &e), PAYI_VALIDATION, "two columns named");
    c1[1] = (store_col){"a", EXPR_DOUBLE, SMERGE_AVG, 0, 0, STORE_NO_GUARD};
    BFAIL(store_create_table(s, &bad, &e), PAYI_VALIDATION, "AVG");
    c1[1] = (store_col){"", EXPR_TEXT, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD};
    BFAIL(store_create_table(s, &bad, &e), PAYI_VALIDATION, "column name is empty");
    c1[1] = (store_col){"v", 99, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD};
    BFAIL(store_create_table(s, &bad, &e), PAYI_VALIDATION, "no valid type");
    store_table longname = {"ut_0123456789012345678901234567890123456789012345678901234567890123", live_cols, 2};
    BFAIL(store_create_table(s, &longname, &e), PAYI_VALIDATION, "longer than 63");
    store_table meta = {"payi_views", live_cols, 2};
    BFAIL(store_create_table(s, &meta, &e), PAYI_VALIDATION, "reserved");
    store_table none = {"ut_none", live_cols, 0};
    BFAIL(store_create_table(s, &none, &e), PAYI_VALIDATION, "0 columns");

    /* Odd but valid names are quoted, not pasted. */
    static const store_col odd_cols[] = {{"we\"ird col", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD},
                                         {"sel;ect", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD}};
    store_table odd = {"ut_odd\"; DROP TABLE x; --", odd_cols, 2};
    fresh(s, &odd);
    const expr_value orow[] = {I(1), I(2), I(1), I(3)};
    BOK(store_upsert(s, &odd, orow, 2, NULL, NULL, &e));
    BCHECK_STR(dump(s, &odd), "1|5\n");
    BOK(store_drop_table(s, odd.name, &e));

    /* A bigint sum that overflows is an error in both stores, not a REAL. */
    static const store_col ov[] = {{"k", EXPR_BIGINT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"n", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD}};
    store_table ovt = {"ut_overflow", ov, 2};
    fresh(s, &ovt);
    const expr_value big[] = {I(1), I(INT64_MAX), I(1), I(1)};
    BOK(store_upsert(s, &ovt, big, 1, NULL, NULL, &e));
    payi_code rc = store_upsert(s, &ovt, big + 2, 1, NULL, NULL, &e);
    BCHECK(rc == PAYI_VALIDATION);
    BCHECK_STR(dump(s, &ovt), "1|9223372036854775807\n");
    store_close(s);
}
FOR_BACKENDS(bad_input)

/* ---- a table recreated with another shape ---- */

static void reshape(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    store_table t1 = {"ut_shape", live_cols, 2};
    fresh(s, &t1);
    expr_value r1[] = {I(1), T("a")};
    BOK(store_upsert(s, &t1, r1, 1, NULL, NULL, &e));
    static const store_col c2[] = {{"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD}, {"n", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},
                                   {"m", EXPR_DOUBLE, SMERGE_MIN, 0, 0, STORE_NO_GUARD}};
    store_table t2 = {"ut_shape", c2, 3};
    fresh(s, &t2);
    expr_value r2[] = {T("x"), I(2), D(3), T("x"), I(2), D(1)};
    BOK(store_upsert(s, &t2, r2, 2, NULL, NULL, &e));
    BCHECK_STR(dump(s, &t2), "x|4|1\n");
    store_close(s);
}
FOR_BACKENDS(reshape)

/* ---- read-only SQL ---- */

typedef struct refusal {
    const char *sql;
    payi_code code;
    const char *needle;        /* in the message, both stores */
} refusal;

static void sql_endpoint(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return;
    store_table t = {"ut_sql", live_cols, 2};
    fresh(s, &t);
    const expr_value rows[] = {I(1), T("a"), I(2), T("b"), I(3), NUL(EXPR_TEXT)};
    BOK(store_upsert(s, &t, rows, 3, NULL, NULL, &e));
    buf out = BUF_INIT;
    BFAIL(store_sql_json(s, "SELECT 1", 10, 1000, &out, &e), PAYI_INTERNAL, "read-only");
    store_close(s);

    store *ro = open_store(b, STORE_RO);
    if (!ro)
        return;
    BFAIL(store_upsert(ro, &t, rows, 1, NULL, NULL, &e), PAYI_INTERNAL, "read-only");
    BFAIL(store_create_table(ro, &t, &e), PAYI_INTERNAL, "read-only");
    BOK(store_sql_json(ro, "SELECT k, v FROM ut_sql ORDER BY k", 10, 5000, &out, &e));
    BCHECK_STR(out.data, "{\"columns\":[\"k\",\"v\"],\"rows\":[[1,\"a\"],[2,\"b\"],[3,null]],\"truncated\":false}");
    buf_reset(&out);
    BOK(store_sql_json(ro, "SELECT k FROM ut_sql ORDER BY k; -- one statement and a comment\n", 2, 5000, &out, &e));
    BCHECK_STR(out.data, "{\"columns\":[\"k\"],\"rows\":[[1],[2]],\"truncated\":true}");
    buf_reset(&out);
    BOK(store_sql_json(ro, "SELECT k FROM ut_sql WHERE k > 5", 2, 5000, &out, &e));
    BCHECK_STR(out.data, "{\"columns\":[\"k\"],\"rows\":[],\"truncated\":false}");
    buf_reset(&out);
    BOK(store_sql_json(ro, "SELECT 'a\"b\\c' AS s, 1.5 AS x, NULL AS n, -7 AS i", 2, 5000, &out, &e));
    BCHECK_STR(out.data, "{\"columns\":[\"s\",\"x\",\"n\",\"i\"],\"rows\":[[\"a\\\"b\\\\c\",1.5,null,-7]],"
                         "\"truncated\":false}");
    buf_reset(&out);
    if (b->kind == STORE_POSTGRES) {
        BOK(store_sql_json(ro, "SELECT true AS b, '{\"a\":[1]}'::jsonb AS j, 1.50::numeric AS n, "
                               "'NaN'::float8 AS f, 2::int2 AS s, date '2020-03-11' AS d",
                           2, 5000, &out, &e));
        BCHECK_STR(out.data, "{\"columns\":[\"b\",\"j\",\"n\",\"f\",\"s\",\"d\"],\"rows\":[[true,{\"a\": [1]},"
                             "1.50,\"NaN\",2,\"2020-03-11\"]],\"truncated\":false}");
        buf_reset(&out);
        BOK(store_sql_json(ro, "SELECT generate_series(1, 10000000) AS g", 3, 20000, &out, &e));
        BCHECK_STR(out.data, "{\"columns\":[\"g\"],\"rows\":[[1],[2],[3]],\"truncated\":true}");
        buf_reset(&out);
    } else {
        BOK(store_sql_json(ro, "SELECT x'0aff' AS b, 1e300 * 1e300 AS inf", 2, 5000, &out, &e));
        BCHECK_STR(out.data, "{\"columns\":[\"b\",\"inf\"],\"rows\":[[\"\\\\x0aff\",\"Infinity\"]],"
                             "\"truncated\":false}");
        buf_reset(&out);
    }
    BCHECK(out.len == 0);

    static const refusal both[] = {
        {"INSERT INTO ut_sql VALUES (9, 'x')", PAYI_VALIDATION, "read-only"},
        {"UPDATE ut_sql SET v = 'y'", PAYI_VALIDATION, "read-only"},
        {"DELETE FROM ut_sql", PAYI_VALIDATION, "read-only"},
        {"DROP TABLE ut_sql", PAYI_VALIDATION, "read-only"},
        {"CREATE TABLE ut_evil (a int)", PAYI_VALIDATION, "read-only"},
        {"CREATE INDEX ut_evil_i ON ut_sql (v)", PAYI_VALIDATION, "read-only"},
        {"BEGIN", PAYI_VALIDATION, "read-only"},
        {"SELECT 1; DELETE FROM ut_sql", PAYI_VALIDATION, "only one SQL statement"},
        {"SELECT 1; SELECT 2", PAYI_VALIDATION, "only one SQL statement"},
        {"SELEKT 1", PAYI_VALIDATION, "syntax error"},
        {"SELECT nope FROM ut_sql", PAYI_VALIDATION, "nope"},
        {"SELECT * FROM ut_no_such_table", PAYI_VALIDATION, "ut_no_such_table"},
        {"", PAYI_VALIDATION, "no SQL statement"},
        {"-- just a comment", PAYI_VALIDATION, "no SQL statement"},
        {"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
         PAYI_TIMEOUT, "longer than 300 ms"},
    };
    static const refusal sqlite_only[] = {
        {"ATTACH DATABASE '/tmp/payi-ut-evil.db' AS evil", PAYI_VALIDATION, "read-only: ATTACH"},
        {"PRAGMA query_only = 0", PAYI_VALIDATION, "read-only: PRAGMA"},
        {"PRAGMA journal_mode = DELETE", PAYI_VALIDATION, "read-only: PRAGMA"},
        {"VACUUM INTO '/tmp/payi-ut-evil.db'", PAYI_VALIDATION, "read-only"},
        {"SELECT load_extension('/nonexistent')", PAYI_VALIDATION, "read-only"},
    };
    static const refusal pg_only[] = {
        {"COPY (SELECT 1) TO STDOUT", PAYI_VALIDATION, "read-only: COPY"},
        {"SET default_transaction_read_only = off", PAYI_VALIDATION, "read-only: SET"},
        {"DO $$BEGIN DELETE FROM ut_sql; END$$", PAYI_VALIDATION, "read-only: DO"},
        {"WITH d AS (DELETE FROM ut_sql RETURNING *) SELECT * FROM d", PAYI_VALIDATION, "read-only"},
        {"SELECT * FROM ut_sql FOR UPDATE", PAYI_VALIDATION, "read-only"},
        {"SELECT 1/0", PAYI_VALIDATION, "division by zero"},
    };
    size_t nspec = b->kind == STORE_SQLITE ? sizeof sqlite_only / sizeof sqlite_only[0]
                                           : sizeof pg_only / sizeof pg_only[0];
    const refusal *spec = b->kind == STORE_SQLITE ? sqlite_only : pg_only;
    for (size_t i = 0; i < sizeof both / sizeof both[0] + nspec; i++) {
        const refusal *r = i < sizeof both / sizeof both[0] ? &both[i] : &spec[i - sizeof both / sizeof both[0]];
        int64_t t0 = time_mono_ns();
        buf_puts(&out, "keep");
        payi_code rc = store_sql_json(ro, r->sql, 10, 300, &out, &e);
        if (rc != r->code || !strstr(e.msg, r->needle))
            test_fail(__FILE__, __LINE__, "[%s] %s: got %s \"%s\", expected %s \"...%s...\"", cur, r->sql,
                      payi_code_word(rc), rc ? e.msg : out.data, payi_code_word(r->code), r->needle);
        BCHECK(strcmp(out.data, "keep") == 0);
        BCHECK(time_mono_ns() - t0 < 5000000000LL);
        buf_reset(&out);
    }
    BCHECK(access("/tmp/payi-ut-evil.db", F_OK) != 0);
    /* Still usable, and nothing changed. */
    BOK(store_sql_json(ro, "SELECT count(*) AS n FROM ut_sql", 10, 5000, &out, &e));
    BCHECK_STR(out.data, "{\"columns\":[\"n\"],\"rows\":[[3]],\"truncated\":false}");
    buf_release(&out);
    store_close(ro);
}
FOR_BACKENDS(sql_endpoint)

/* ---- both stores, one workload ---- */

static uint64_t lcg(uint64_t *st)
{
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return *st >> 33;
}

static const store_col mix_cols[] = {
    {"k", EXPR_TEXT, SMERGE_KEY, 0, 0, STORE_NO_GUARD},      {"d", EXPR_DATE, SMERGE_KEY, 0, 0, STORE_NO_GUARD},
    {"n", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},    {"x", EXPR_DOUBLE, SMERGE_ADD, 0, 0, STORE_NO_GUARD},
    {"lo", EXPR_TEXT, SMERGE_MIN, 0, 0, STORE_NO_GUARD},     {"hi", EXPR_TIMESTAMPTZ, SMERGE_MAX, 0, 0, STORE_NO_GUARD},
    {"last", EXPR_BOOL, SMERGE_REPLACE, 0, 0, STORE_NO_GUARD}, {"first", EXPR_BIGINT, SMERGE_KEEP, 0, 0, STORE_NO_GUARD},
    {"cnt", EXPR_BIGINT, SMERGE_ADD, 0, 0, STORE_NO_GUARD},  {"mean", EXPR_DOUBLE, SMERGE_AVG, 3, 8, STORE_NO_GUARD},
};
static const store_table mix_t = {"ut_mix", mix_cols, 10};

/* 3300 rows over ~300 keys (NULL keys included) in calls of 1100 rows, so
 * that PostgreSQL cuts chunks at repeated keys and uses every statement
 * size, then a few deletes; returns the dump. */
static char *run_mix(const backend *b)
{
    payi_err e = {0};
    store *s = open_store(b, STORE_RW);
    if (!s)
        return NULL;
    fresh(s, &mix_t);
    enum { CALL = 1100 };
    static expr_value rows[CALL * 10];
    static char words[CALL][2][8];
    uint64_t st = 42;
    for (int call = 0; call < 3; call++) {
        for (int r = 0; r < CALL; r++) {
            expr_value *v = rows + r * 10;
            uint64_t k = lcg(&st) % 60;
            snprintf(words[r][0], 8, "k%02d", (int)k);
            snprintf(words[r][1], 8, "%c%d", (char)('a' + lcg(&st) % 26), (int)(lcg(&st) % 10));
            v[0] = k == 0 ? NUL(EXPR_TEXT) : T(words[r][0]);
            v[1] = lcg(&st) % 7 == 0 ? NUL(EXPR_DATE) : expr_date(18000 + (int64_t)(lcg(&st) % 4));
            v[2] = lcg(&st) % 5 == 0 ? NUL(EXPR_BIGINT) : I((int64_t)(lcg(&st) % 1000) - 300);
            v[3] = lcg(&st) % 5 == 0 ? NUL(EXPR_DOUBLE) : D((double)(lcg(&st) % 64) / 8);
            v[4] = lcg(&st) % 4 == 0 ? NUL(EXPR_TEXT) : T(words[r][1]);
            v[5] = lcg(&st) % 4 == 0 ? NUL(EXPR_TIMESTAMPTZ) : expr_ts((int64_t)(lcg(&st) % 100000) * 999999);
            v[6] = lcg(&st) % 3 == 0 ? NUL(EXPR_BOOL) : expr_bool(lcg(&st) % 2);
            v[7] = I((int64_t)lcg(&st) % 100);
            v[8] = v[3].null ? I(0) : I(1);
            v[9] = NUL(EXPR_DOUBLE);
        }
        BOK(store_upsert(s, &mix_t, rows, CALL, NULL, NULL, &e));
    }
    expr_value keys[20];
    for (int i = 0; i < 10; i++) {
        snprintf(words[i][0], 8, "k%02d", i * 5);
        keys[2 * i] = i == 0 ? NUL(EXPR_TEXT) : T(words[i][0]);
        keys[2 * i + 1] = i % 3 == 0 ? NUL(EXPR_DATE) : expr_date(18000 + i % 4);
    }
    BOK(store_delete(s, &mix_t, keys, 10, &e));
    char *d = xstrdup(dump(s, &mix_t));
    store_close(s);
    return d;
}

TEST(store_same_rows_both)
{
    backend bs[2];
    int nb = backends(bs);
    char *d[2] = {NULL, NULL};
    for (int i = 0; i < nb; i++) {
        cur = bs[i].name;
        d[i] = run_mix(&bs[i]);
        BCHECK(d[i] && strlen(d[i]) > 1000);
    }
    cur = "both";
    if (nb == 2 && d[0] && d[1] && strcmp(d[0], d[1]) != 0) {
        size_t i = 0;
        while (d[0][i] == d[1][i])
            i++;
        while (i && d[0][i - 1] != '\n')
            i--;
        test_fail(__FILE__, __LINE__, "SQLite and PostgreSQL differ from here:\n%.300s\n---\n%.300s", d[0] + i,
                  d[1] + i);
    }
    free(d[0]);
    free(d[1]);
    buf_release(&dumped);
}

/* ---- no backend needed ---- */

TEST(store_url_redaction)
{
    static const char *cases[][2] = {
        {"postgresql://u:secret@host:5432/db", "postgresql://u:***@host:5432/db"},
        {"postgres://u@host/db?password=secret&sslmode=off", "postgres://u@host/db?password=***&sslmode=off"},
        {"postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"},
        {"postgresql://host/db", "postgresql://host/db"},
        {"postgresql://u:a@b@host/db", "postgresql://u:***@host/db"},
        {"sqlite:/data/pass:word@x.db", "sqlite:/data/pass:word@x.db"},
        {"host=x password=secret", "host=x password=***"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = BUF_INIT;
        store_url_redacted(cases[i][0], &b);
        CHECK_STR(b.data, cases[i][1]);
        buf_release(&b);
    }
}

TEST(store_open_errors)
{
    payi_err e = {0};
    store *s = (store *)1;
    cur = "-";
    BFAIL(store_open(&s, "mysql://x", STORE_RW, &e), PAYI_VALIDATION, "no known kind");
    CHECK(s == NULL);
    BFAIL(store_open(&s, "sqlite:", STORE_RW, &e), PAYI_VALIDATION, "names no file");
    char url[600];
    snprintf(url, sizeof url, "sqlite:%s/missing.db", test_tmpdir());
    BFAIL(store_open(&s, url, STORE_RO, &e), PAYI_UNAVAILABLE, "missing.db");
    snprintf(url, sizeof url, "sqlite:%s/no/such/dir/v.db", test_tmpdir());
    BFAIL(store_open(&s, url, STORE_RW, &e), PAYI_UNAVAILABLE, "unable to open");
    /* A file that is not a database. */
    snprintf(url, sizeof url, "%s/junk.db", test_tmpdir());
    FILE *f = fopen(url, "w");
    if (f) {
        fputs("this is not a database, just text that is long enough to be read as a header..........", f);
        fclose(f);
    }
    char jurl[620];
    snprintf(jurl, sizeof jurl, "sqlite:%s", url);
    BFAIL(store_open(&s, jurl, STORE_RW, &e), PAYI_CORRUPT, "not a database");
    BFAIL(store_open(&s, jurl, STORE_RO, &e), PAYI_CORRUPT, "not a database");
    /* Nothing listens on port 1: refused at once; the password stays out of the message. */
    payi_code rc = store_open(&s, "postgresql://u:topsecret@127.0.0.1:1/db", STORE_RW, &e);
    CHECK(rc == PAYI_UNAVAILABLE);
    CHECK(strstr(e.msg, "postgresql://u:***@127.0.0.1:1/db") != NULL);
    CHECK(strstr(e.msg, "topsecret") == NULL);
    store_close(NULL);
}
