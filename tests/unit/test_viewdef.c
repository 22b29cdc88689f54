/* Tests for src/view/viewdef: view definitions compiled into plans (the
 * shapes, aggregates, sources, HAVING/ORDER BY/LIMIT, DELETE ON, the hash),
 * and a table of refusals, each with its exact "file:line:col: message".
 *
 * Every spec here is HDR (line 1: the event types) followed by one
 * `CREATE VIEW v AS <SELECT>` on line 2, so the SELECT's byte k is at
 * t.payi:2:(18 + k). */
#include <stdlib.h>
#include <string.h>

#include "spec/spec.h"
#include "test.h"
#include "view/viewdef.h"

#define HDR                                                                                             \
    "CREATE EVENT CasesReported (country text NOT NULL, day date NOT NULL, cumulative bigint NOT NULL, " \
    "new_cases bigint NOT NULL DEFAULT 0, tags jsonb, ok boolean, rate double precision); "            \
    "CREATE EVENT Deaths (country text NOT NULL, day date, deaths bigint, rate bigint); "               \
    "CREATE EVENT Closed (country text NOT NULL);\n"

static payi_spec *spec_of(const char *text)
{
    payi_spec *s = NULL;
    payi_err err;
    if (spec_parse("t.payi", text, strlen(text), &s, &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "spec: %s", err.msg);
        return NULL;
    }
    return s;
}

/* HDR + "CREATE VIEW v AS " + select, compiled; NULL (with err) when refused. */
static view_def *view_of(const char *view_stmt, payi_err *err)
{
    char text[4096];
    snprintf(text, sizeof text, HDR "%s;\n", view_stmt);
    payi_spec *s = spec_of(text);
    view_def *v = NULL;
    if (!s)
        payi_err_set(err, PAYI_INTERNAL, NULL, "the spec was refused");
    else if (view_def_compile(s, s->nviews - 1, &v, err) != PAYI_OK)
        v = NULL;
    spec_free(s);
    return v;
}

static view_def *ok_view(const char *view_stmt)
{
    payi_err err;
    view_def *v = view_of(view_stmt, &err);
    if (!v)
        test_fail(__FILE__, __LINE__, "%s: %s", view_stmt, err.msg);
    return v;
}

static view_def *ok_select(const char *select)
{
    char stmt[2048];
    snprintf(stmt, sizeof stmt, "CREATE VIEW v AS %s", select);
    return ok_view(stmt);
}

/* Evaluates e over slots; the result formatted as PostgreSQL prints it. */
static void check_eval(const expr *e, const expr_value *slots, const char *want)
{
    expr_ctx ctx;
    expr_value out;
    payi_err err;
    buf b = BUF_INIT;
    expr_ctx_init(&ctx);
    if (!e) {
        test_fail(__FILE__, __LINE__, "no expression");
    } else if (expr_eval(e, slots, &ctx, &out, &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "eval: %s", err.msg);
    } else {
        expr_value_format(&out, &b);
        CHECK_STR(b.data, want);
    }
    buf_release(&b);
    expr_ctx_release(&ctx);
}

static int scope_index(const view_def *v, const char *name)
{
    for (uint32_t k = 0; k < v->nscope; k++)
        if (strcmp(v->scope[k].name, name) == 0)
            return (int)k;
    return -1;
}

/* ---------------------------------------------------------------- grouped */

TEST(viewdef_grouped_basic)
{
    view_def *v = ok_select("SELECT country, day, sum(new_cases) AS cases, count(*) FROM CasesReported "
                            "WHERE day >= '2020-03-01' GROUP BY country, day");
    if (!v)
        return;
    CHECK_STR(v->name, "v");
    CHECK_EQ_INT(v->shape, VIEW_GROUPED);
    CHECK_EQ_INT(v->ntypes, 1);
    CHECK_STR(v->types[0], "CasesReported");
    CHECK(!v->from_events);
    CHECK_EQ_INT(v->line, 2);
    CHECK_EQ_INT(v->col, 18);
    CHECK_STR(v->file, "t.payi");
    /* scope: the five attributes, then the fields in order of first use */
    CHECK_EQ_INT(v->nscope, VIEW_NATTRS + 3);
    CHECK_STR(v->scope[VIEW_ATTR_POSITION].name, "event_position");
    CHECK_STR(v->scope[VIEW_ATTR_TYPE].name, "event_type");
    CHECK_EQ_INT(v->scope[VIEW_ATTR_TIME].type, EXPR_TIMESTAMPTZ);
    CHECK_EQ_INT(v->nfields, 3);
    CHECK_STR(v->fields[0].name, "country");
    CHECK_STR(v->fields[1].name, "day");
    CHECK_STR(v->fields[2].name, "new_cases");
    CHECK_EQ_INT(v->fields[1].type, EXPR_DATE);
    CHECK(v->fields[2].declared);
    CHECK_STR(v->scope[VIEW_NATTRS + 2].name, "new_cases");
    CHECK(v->where != NULL);
    CHECK_EQ_INT(v->nkeys, 2);
    CHECK_EQ_INT(expr_result_type(v->keys[0]), EXPR_TEXT);
    CHECK_EQ_INT(expr_result_type(v->keys[1]), EXPR_DATE);
    CHECK_EQ_INT(v->naggs, 2);
    CHECK_EQ_INT(v->aggs[0].kind, VAGG_SUM);
    CHECK_EQ_INT(v->aggs[0].type, EXPR_BIGINT);
    CHECK_EQ_INT(v->aggs[1].kind, VAGG_COUNT_STAR);
    CHECK(v->aggs[1].arg == NULL);
    CHECK_EQ_INT(v->nvalues, 0);
    CHECK_EQ_INT(v->ncols, 4);
    CHECK_STR(v->cols[0].name, "country");
    CHECK_EQ_INT(v->cols[0].role, VCOL_KEY);
    CHECK_EQ_INT(v->cols[0].index, 0);
    CHECK_EQ_INT(v->cols[1].role, VCOL_KEY);
    CHECK_EQ_INT(v->cols[1].index, 1);
    CHECK_STR(v->cols[2].name, "cases");
    CHECK_EQ_INT(v->cols[2].role, VCOL_AGG);
    CHECK_EQ_INT(v->cols[2].index, 0);
    CHECK_STR(v->cols[3].name, "count");
    CHECK_EQ_INT(v->cols[3].type, EXPR_BIGINT);
    CHECK_EQ_INT(v->cols[3].index, 1);
    CHECK(!v->cols[3].hidden);
    CHECK(v->having == NULL);
    CHECK_EQ_INT(v->norder, 0);
    CHECK_EQ_INT(v->limit, -1);
    CHECK(v->delete_type == NULL);
    CHECK_EQ_INT(v->position_col, UINT32_MAX);

    /* the expressions read the slots of the scope */
    expr_value slots[VIEW_NATTRS + 3] = {0};
    slots[VIEW_ATTR_POSITION] = expr_int(1);
    slots[VIEW_ATTR_STREAM] = expr_text("s", 1);
    slots[VIEW_ATTR_VERSION] = expr_int(0);
    slots[VIEW_ATTR_TIME] = expr_ts(0);
    slots[VIEW_ATTR_TYPE] = expr_text("CasesReported", 13);
    slots[VIEW_NATTRS + 0] = expr_text("CI", 2);
    slots[VIEW_NATTRS + 1] = expr_date(expr_days_from_civil(2020, 3, 11));
    slots[VIEW_NATTRS + 2] = expr_int(42);
    check_eval(v->where, slots, "true");
    check_eval(v->keys[0], slots, "CI");
    check_eval(v->keys[1], slots, "2020-03-11");
    check_eval(v->aggs[0].arg, slots, "42");
    slots[VIEW_NATTRS + 1] = expr_date(expr_days_from_civil(2020, 2, 1));
    check_eval(v->where, slots, "false");
    view_def_free(v);
}

TEST(viewdef_aggregate_kinds_and_types)
{
    view_def *v = ok_select("SELECT count(*), count(tags) AS nt, count(DISTINCT country) AS nc, sum(cumulative) AS si, "
                            "sum(rate) AS sf, min(day), max(country), avg(new_cases), latest(tags), earliest(ok), "
                            "max(event_time) AS last_seen, min(rate) AS lo FROM CasesReported");
    if (!v)
        return;
    static const struct { view_agg_kind kind; expr_type arg, type; const char *name; } want[] = {
        {VAGG_COUNT_STAR, EXPR_BIGINT, EXPR_BIGINT, "count"},
        {VAGG_COUNT, EXPR_JSONB, EXPR_BIGINT, "nt"},
        {VAGG_COUNT_DISTINCT, EXPR_TEXT, EXPR_BIGINT, "nc"},
        {VAGG_SUM, EXPR_BIGINT, EXPR_BIGINT, "si"},
        {VAGG_SUM, EXPR_DOUBLE, EXPR_DOUBLE, "sf"},
        {VAGG_MIN, EXPR_DATE, EXPR_DATE, "min"},
        {VAGG_MAX, EXPR_TEXT, EXPR_TEXT, "max"},
        {VAGG_AVG, EXPR_BIGINT, EXPR_DOUBLE, "avg"},
        {VAGG_LATEST, EXPR_JSONB, EXPR_JSONB, "latest"},
        {VAGG_EARLIEST, EXPR_BOOL, EXPR_BOOL, "earliest"},
        {VAGG_MAX, EXPR_TIMESTAMPTZ, EXPR_TIMESTAMPTZ, "last_seen"},
        {VAGG_MIN, EXPR_DOUBLE, EXPR_DOUBLE, "lo"},
    };
    size_t n = sizeof want / sizeof want[0];
    CHECK_EQ_INT(v->shape, VIEW_GROUPED);
    CHECK_EQ_INT(v->nkeys, 0);
    CHECK_EQ_INT(v->naggs, n);
    CHECK_EQ_INT(v->ncols, n);
    for (uint32_t k = 0; k < v->naggs && k < n; k++) {
        CHECK_EQ_INT(v->aggs[k].kind, want[k].kind);
        CHECK_EQ_INT(v->aggs[k].arg_type, want[k].arg);
        CHECK_EQ_INT(v->aggs[k].type, want[k].type);
        CHECK(v->aggs[k].filter == NULL);
        CHECK((v->aggs[k].arg == NULL) == (want[k].kind == VAGG_COUNT_STAR));
        CHECK_STR(v->cols[k].name, want[k].name);
        CHECK_EQ_INT(v->cols[k].role, VCOL_AGG);
        CHECK_EQ_INT(v->cols[k].index, k);
        CHECK_EQ_INT(v->cols[k].type, want[k].type);
    }
    view_def_free(v);
}

TEST(viewdef_filter)
{
    view_def *v = ok_select("SELECT country, count(*) FILTER (WHERE new_cases > 100) AS big_days, "
                            "sum(new_cases) FILTER (WHERE ok AND day > '2020-01-01') AS s, max(day) FROM CasesReported "
                            "GROUP BY country");
    if (!v)
        return;
    CHECK_EQ_INT(v->naggs, 3);
    CHECK(v->aggs[0].filter != NULL);
    CHECK(v->aggs[1].filter != NULL);
    CHECK(v->aggs[2].filter == NULL);
    CHECK_EQ_INT(expr_result_type(v->aggs[0].filter), EXPR_BOOL);
    CHECK_STR(v->cols[1].name, "big_days");
    CHECK_STR(v->cols[3].name, "max");
    int nc = scope_index(v, "new_cases");
    CHECK(nc >= VIEW_NATTRS);
    expr_value slots[16] = {0};
    for (uint32_t k = 0; k < v->nscope; k++)
        slots[k] = expr_null(v->scope[k].type);
    if (nc >= 0 && nc < 16) {
        slots[nc] = expr_int(101);
        check_eval(v->aggs[0].filter, slots, "true");
        slots[nc] = expr_int(100);
        check_eval(v->aggs[0].filter, slots, "false");
    }
    view_def_free(v);
}

TEST(viewdef_group_by_ordinal_name_and_duplicates)
{
    /* an ordinal, an output name over an undeclared type (jsonb fields), a repeated key */
    view_def *v = ok_select("SELECT cases::bigint AS c, region, count(*) FROM Untyped GROUP BY c, 2, region");
    if (v) {
        CHECK_EQ_INT(v->nkeys, 2);
        CHECK_EQ_INT(expr_result_type(v->keys[0]), EXPR_BIGINT);
        CHECK_EQ_INT(expr_result_type(v->keys[1]), EXPR_JSONB);
        CHECK_EQ_INT(v->nfields, 2);
        CHECK_STR(v->fields[0].name, "cases");
        CHECK_EQ_INT(v->fields[0].type, EXPR_JSONB);
        CHECK(!v->fields[0].declared);
        CHECK_STR(v->fields[1].name, "region");
        CHECK_EQ_INT(v->cols[0].type, EXPR_BIGINT);
        CHECK_EQ_INT(v->cols[0].role, VCOL_KEY);
        CHECK_EQ_INT(v->cols[1].index, 1);
        view_def_free(v);
    }
    /* a declared field wins over an output name in GROUP BY (PostgreSQL's rule) */
    payi_err err;
    v = view_of("CREATE VIEW v AS SELECT upper(country) AS country, count(*) FROM CasesReported GROUP BY country", &err);
    CHECK(v == NULL);
    if (!v)
        CHECK_STR(err.msg, "t.payi:2:25: column 1 of the view (country) is neither an aggregate nor a GROUP BY expression: "
                           "group by it as written, or by its name or position");
    view_def_free(v);
    /* an expression repeated exactly, keys selected twice */
    v = ok_select("SELECT upper(country) AS c, upper( country ) AS c2, count(*) FROM CasesReported "
                  "GROUP BY upper(country)");
    if (v) {
        CHECK_EQ_INT(v->nkeys, 1);
        CHECK_EQ_INT(v->cols[0].index, 0);
        CHECK_EQ_INT(v->cols[1].index, 0);
        CHECK_EQ_INT(v->cols[1].role, VCOL_KEY);
        view_def_free(v);
    }
    /* GROUP BY without aggregates: one row per distinct key */
    v = ok_select("SELECT country FROM CasesReported GROUP BY country");
    if (v) {
        CHECK_EQ_INT(v->shape, VIEW_GROUPED);
        CHECK_EQ_INT(v->naggs, 0);
        CHECK_EQ_INT(v->nkeys, 1);
        view_def_free(v);
    }
}

TEST(viewdef_constants_compare_by_value)
{
    /* libpg_query prints 0 and negative integers as "ival":{}: they are read from the text */
    payi_err err;
    view_def *v = view_of("CREATE VIEW v AS SELECT cumulative + 0 AS a, count(*) FROM CasesReported GROUP BY cumulative + -1", &err);
    CHECK(v == NULL);
    if (!v)
        CHECK_STR(err.msg, "t.payi:2:25: column 1 of the view (a) is neither an aggregate nor a GROUP BY expression: "
                           "group by it as written, or by its name or position");
    view_def_free(v);
    v = ok_select("SELECT cumulative + -1 AS a, count(*) FROM CasesReported GROUP BY cumulative+-1");
    if (v) {
        CHECK_EQ_INT(v->nkeys, 1);
        expr_value slots[VIEW_NATTRS + 1] = {0};
        slots[VIEW_NATTRS] = expr_int(10);
        check_eval(v->keys[0], slots, "9");
        view_def_free(v);
    }
}

/* ------------------------------------------------------------------- rows */

TEST(viewdef_rows_shape)
{
    view_def *v = ok_select("SELECT event_time, country, cumulative - new_cases AS previous, 'a,b' AS tag "
                            "FROM CasesReported WHERE new_cases > 0");
    if (!v)
        return;
    CHECK_EQ_INT(v->shape, VIEW_ROWS);
    CHECK_EQ_INT(v->nkeys, 0);
    CHECK_EQ_INT(v->naggs, 0);
    CHECK_EQ_INT(v->nvalues, 5);
    CHECK_EQ_INT(v->ncols, 5);
    CHECK_STR(v->cols[0].name, "event_time");
    CHECK_EQ_INT(v->cols[0].type, EXPR_TIMESTAMPTZ);
    CHECK_STR(v->cols[2].name, "previous");
    CHECK_EQ_INT(v->cols[2].type, EXPR_BIGINT);
    CHECK_STR(v->cols[3].name, "tag");
    CHECK_EQ_INT(v->cols[3].role, VCOL_VALUE);
    CHECK_EQ_INT(v->cols[3].index, 3);
    /* the hidden row key */
    CHECK_STR(v->cols[4].name, "event_position");
    CHECK(v->cols[4].hidden);
    CHECK_EQ_INT(v->cols[4].type, EXPR_BIGINT);
    CHECK_EQ_INT(v->cols[4].index, 4);
    CHECK_EQ_INT(v->position_col, 4);
    expr_value slots[VIEW_NATTRS + 3] = {0};
    slots[VIEW_ATTR_POSITION] = expr_int(77);
    slots[VIEW_NATTRS + 0] = expr_text("CI", 2);   /* country */
    slots[VIEW_NATTRS + 1] = expr_int(10);         /* cumulative */
    slots[VIEW_NATTRS + 2] = expr_int(3);          /* new_cases */
    CHECK_STR(v->fields[1].name, "cumulative");
    check_eval(v->values[2], slots, "7");
    check_eval(v->values[3], slots, "a,b");
    check_eval(v->values[4], slots, "77");
    view_def_free(v);

    /* event_position selected: no hidden column */
    v = ok_select("SELECT event_stream, event_position FROM CasesReported ORDER BY 2 DESC LIMIT 0");
    if (v) {
        CHECK_EQ_INT(v->ncols, 2);
        CHECK_EQ_INT(v->position_col, 1);
        CHECK(!v->cols[1].hidden);
        CHECK_EQ_INT(v->limit, 0);
        CHECK_EQ_INT(v->norder, 1);
        CHECK_EQ_INT(v->order[0].col, 1);
        CHECK(v->order[0].desc);
        view_def_free(v);
    }
    /* under another name it is a plain value: the key is still added */
    v = ok_select("SELECT event_position AS pos FROM CasesReported");
    if (v) {
        CHECK_EQ_INT(v->ncols, 2);
        CHECK_STR(v->cols[1].name, "event_position");
        CHECK_EQ_INT(v->position_col, 1);
        view_def_free(v);
    }
}

TEST(viewdef_names_like_postgresql)
{
    view_def *v = ok_select("SELECT CASE WHEN ok THEN country ELSE 'x' END, CASE WHEN ok THEN 1 ELSE cumulative END, "
                            "coalesce(country, 'y'), 'z'::text, new_cases::double precision, greatest(1, rate), "
                            "nullif(country, ''), lower(country), \"rate\" AS \"Rate\" FROM CasesReported");
    if (!v)
        return;
    static const char *const names[] = {"case", "cumulative", "coalesce", "text", "new_cases", "greatest", "nullif",
                                        "lower", "Rate", "event_position"};
    /* CASE takes its ELSE's name when that is a real one; casts of a column keep the column's */
    CHECK_EQ_INT(v->ncols, 10);
    for (uint32_t k = 0; k < v->ncols && k < 10; k++)
        CHECK_STR(v->cols[k].name, names[k]);
    CHECK_EQ_INT(v->cols[4].type, EXPR_DOUBLE);
    view_def_free(v);
}

TEST(viewdef_text_with_commas_comments_and_lines)
{
    /* nothing is cut out of the text: commas in strings, comments, nested parentheses, several lines */
    view_def *v = ok_view("CREATE VIEW v AS SELECT country, -- a comment, with a comma\n"
                          "  sum(new_cases) FILTER (WHERE country <> 'a,b' /* , ) */ AND (((day > '2020-01-01')))) AS s,\n"
                          "  max(upper(country || ',')) AS m\n"
                          "FROM CasesReported GROUP BY country");
    if (v) {
        CHECK_EQ_INT(v->ncols, 3);
        CHECK_STR(v->cols[1].name, "s");
        CHECK_STR(v->cols[2].name, "m");
        expr_value slots[VIEW_NATTRS + 3] = {0};
        slots[VIEW_NATTRS + 0] = expr_text("a,b", 3);
        slots[VIEW_NATTRS + 2] = expr_date(expr_days_from_civil(2021, 1, 1));
        CHECK_STR(v->fields[2].name, "day");
        check_eval(v->aggs[0].filter, slots, "false");
        check_eval(v->aggs[1].arg, slots, "A,B,");
        view_def_free(v);
    }
    /* positions on later lines: line 6, col 7 */
    payi_err err;
    v = view_of("CREATE VIEW v AS SELECT country,\n"
                "  sum(new_cases) FILTER (WHERE country <> 'a,b' /* , */) AS s, -- a comment, with commas\n"
                "  max(day) AS last\n"
                "FROM CasesReported\n"
                "WHERE nope > 1\n"
                "GROUP BY country", &err);
    CHECK(v == NULL);
    if (!v)
        CHECK_STR(err.msg, "t.payi:6:7: column \"nope\" does not exist in event type CasesReported");
    view_def_free(v);
    /* an expression error on a later line, after a multi-byte character: cols count bytes */
    v = view_of("CREATE VIEW v AS\n  SELECT 'é' AS e,\n    country || 'é' AS c2 FROM CasesReported WHERE day = 'x'", &err);
    CHECK(v == NULL);
    if (!v)
        CHECK_STR(err.msg, "t.payi:4:58: WHERE: invalid input syntax for type date: \"x\"");
    view_def_free(v);
    /* a syntax error after multi-byte characters (libpg_query counts characters, we count bytes) */
    v = view_of("CREATE VIEW v AS SELECT 'éé' AS a, FROM t", &err);
    CHECK(v == NULL);
    if (!v)
        CHECK_STR(err.msg, "t.payi:2:38: syntax error at or near \"FROM\"");
    view_def_free(v);
}

/* ----------------------------------------------------------------- sources */

TEST(viewdef_from_events)
{
    view_def *v = ok_select("SELECT event_type, country, count(*), sum(deaths) AS d, max(extra::bigint) AS x "
                            "FROM events GROUP BY event_type, country");
    if (!v)
        return;
    CHECK(v->from_events);
    CHECK_EQ_INT(v->ntypes, 0);   /* every type */
    CHECK_EQ_INT(v->nfields, 3);
    CHECK_STR(v->fields[0].name, "country");
    CHECK_EQ_INT(v->fields[0].type, EXPR_TEXT);   /* the same in every declared type */
    CHECK(v->fields[0].declared);
    CHECK_STR(v->fields[1].name, "deaths");
    CHECK_EQ_INT(v->fields[1].type, EXPR_BIGINT);
    CHECK(v->fields[1].declared);
    CHECK_STR(v->fields[2].name, "extra");        /* no declared type has it: jsonb of untyped events */
    CHECK_EQ_INT(v->fields[2].type, EXPR_JSONB);
    CHECK(!v->fields[2].declared);
    CHECK(view_def_reads(v, "Anything", 8));
    CHECK(view_def_reads(v, "Deaths", 6));
    view_def_free(v);

    /* a type filter in the WHERE's top-level AND narrows the types read and the fields' types */
    v = ok_select("SELECT country, sum(deaths) AS r FROM events WHERE event_type IN ('Deaths', 'Imported') "
                  "AND country <> 'XX' AND 'Deaths' = event_type OR false GROUP BY country");
    if (v) {   /* a top-level OR: no filter */
        CHECK_EQ_INT(v->ntypes, 0);
        view_def_free(v);
    }
    /* without a filter, rate is double precision in CasesReported and bigint in Deaths */
    payi_err err;
    v = view_of("CREATE VIEW v AS SELECT sum(rate) FROM events", &err);
    CHECK(v == NULL);
    if (!v)
        CHECK_STR(err.msg, "t.payi:2:29: column \"rate\" is double precision in event type CasesReported but bigint "
                           "in event type Deaths: a view's column has one type");
    view_def_free(v);
    v = ok_select("SELECT country, sum(rate) AS r FROM events WHERE event_type IN ('Deaths', 'Imported', 'CasesReported') "
                  "AND country <> 'XX' AND event_type <> 'x' AND 'Deaths' = event_type GROUP BY country");
    if (v) {
        CHECK_EQ_INT(v->ntypes, 1);
        if (v->ntypes == 1)
            CHECK_STR(v->types[0], "Deaths");
        CHECK_EQ_INT(v->aggs[0].arg_type, EXPR_BIGINT);   /* Deaths.rate, not CasesReported.rate */
        CHECK(view_def_reads(v, "Deaths", 6));
        CHECK(!view_def_reads(v, "CasesReported", 13));
        CHECK(!view_def_reads(v, "Death", 5));
        view_def_free(v);
    }
    v = ok_select("SELECT country, region FROM events WHERE event_type IN ('Deaths', 'Imported')");
    if (v) {
        CHECK_EQ_INT(v->ntypes, 2);
        CHECK_STR(v->types[1], "Imported");
        CHECK_EQ_INT(v->fields[0].type, EXPR_TEXT);
        CHECK_EQ_INT(v->fields[1].type, EXPR_JSONB);   /* Imported is not declared */
        CHECK_EQ_INT(v->shape, VIEW_ROWS);
        view_def_free(v);
    }
}

TEST(viewdef_undeclared_source)
{
    view_def *v = ok_select("SELECT region, sum(cases::bigint) AS cases, latest(note) FROM \"Raw Import\" GROUP BY region");
    if (!v)
        return;
    CHECK_EQ_INT(v->ntypes, 1);
    CHECK_STR(v->types[0], "Raw Import");
    CHECK_EQ_INT(v->cols[0].type, EXPR_JSONB);
    CHECK_EQ_INT(v->aggs[0].arg_type, EXPR_BIGINT);
    CHECK_EQ_INT(v->aggs[1].type, EXPR_JSONB);
    CHECK(view_def_reads(v, "Raw Import", 10));
    CHECK(!view_def_reads(v, "raw import", 10));
    view_def_free(v);
    /* an unquoted name keeps its case too */
    v = ok_select("SELECT a FROM MyEvents");
    if (v) {
        CHECK_STR(v->types[0], "MyEvents");
        view_def_free(v);
    }
}

/* ------------------------------------------------- HAVING, ORDER BY, LIMIT */

TEST(viewdef_having)
{
    view_def *v = ok_select("SELECT country, count(*) AS n, sum(new_cases) FROM CasesReported GROUP BY country "
                            "HAVING count(*) > 2 AND n < 10 AND country <> 'XX' AND sum > 0 ORDER BY n DESC, country LIMIT 5");
    if (!v)
        return;
    CHECK(v->having != NULL);
    /* having reads the output columns: slot i = cols[i] */
    expr_value row[3] = {expr_text("CI", 2), expr_int(5), expr_int(1)};
    check_eval(v->having, row, "true");
    row[1] = expr_int(2);
    check_eval(v->having, row, "false");
    row[1] = expr_int(5);
    row[0] = expr_text("XX", 2);
    check_eval(v->having, row, "false");
    row[0] = expr_text("CI", 2);
    row[2] = expr_int(0);
    check_eval(v->having, row, "false");
    CHECK_EQ_INT(v->norder, 2);
    CHECK_EQ_INT(v->order[0].col, 1);
    CHECK(v->order[0].desc);
    CHECK_EQ_INT(v->order[1].col, 0);
    CHECK(!v->order[1].desc);
    CHECK_EQ_INT(v->limit, 5);
    view_def_free(v);

    /* a key expression in HAVING and ORDER BY maps to its column */
    v = ok_select("SELECT upper(country) AS c, max(day) AS last FROM CasesReported GROUP BY upper(country) "
                  "HAVING upper(country) <> 'X' ORDER BY max(day) DESC, upper(country) LIMIT ALL");
    if (v) {
        expr_value r2[2] = {expr_text("X", 1), expr_date(0)};
        check_eval(v->having, r2, "false");
        r2[0] = expr_text("Y", 1);
        check_eval(v->having, r2, "true");
        CHECK_EQ_INT(v->order[0].col, 1);
        CHECK(v->order[0].desc);
        CHECK_EQ_INT(v->order[1].col, 0);
        CHECK_EQ_INT(v->limit, -1);
        view_def_free(v);
    }
}

/* --------------------------------------------------------------- DELETE ON */

TEST(viewdef_delete_on)
{
    view_def *v = ok_view("CREATE VIEW current DELETE ON Closed AS SELECT country, latest(cumulative) AS cases, "
                          "latest(day) AS day FROM CasesReported GROUP BY country");
    if (v) {
        CHECK_STR(v->delete_type, "Closed");
        CHECK_EQ_INT(v->ndelete_fields, 1);
        CHECK_STR(v->delete_fields[0].name, "country");
        CHECK_EQ_INT(v->delete_fields[0].type, EXPR_TEXT);
        CHECK_EQ_INT(v->ndelete_scope, VIEW_NATTRS + 1);
        CHECK_STR(v->delete_scope[VIEW_NATTRS].name, "country");
        CHECK_EQ_INT(expr_result_type(v->delete_keys[0]), EXPR_TEXT);
        expr_value slots[VIEW_NATTRS + 1] = {0};
        slots[VIEW_NATTRS] = expr_text("CI", 2);
        check_eval(v->delete_keys[0], slots, "CI");
        CHECK(view_def_deletes(v, "Closed", 6));
        CHECK(!view_def_deletes(v, "CasesReported", 13));
        CHECK(!view_def_reads(v, "Closed", 6));
        CHECK(view_def_reads(v, "CasesReported", 13));
        view_def_free(v);
    }
    /* undeclared delete type over an undeclared source: jsonb keys on both sides */
    v = ok_view("CREATE VIEW accounts DELETE ON AccountClosed AS SELECT account, latest(owner) AS owner "
                "FROM events WHERE event_type = 'AccountOpened' GROUP BY 1");
    if (v) {
        CHECK_EQ_INT(v->delete_fields[0].type, EXPR_JSONB);
        CHECK_EQ_INT(expr_result_type(v->keys[0]), EXPR_JSONB);
        CHECK(view_def_deletes(v, "AccountClosed", 13));
        view_def_free(v);
    }
    /* casts make an undeclared delete type fit typed keys */
    v = ok_view("CREATE VIEW c DELETE ON Gone AS SELECT cumulative::text AS k, count(*) FROM CasesReported GROUP BY 1");
    if (v) {
        CHECK_EQ_INT(v->delete_fields[0].type, EXPR_JSONB);
        CHECK_EQ_INT(expr_result_type(v->delete_keys[0]), EXPR_TEXT);
        view_def_free(v);
    }
    view_def *none = ok_select("SELECT country, count(*) FROM CasesReported GROUP BY country");
    if (none) {
        CHECK(!view_def_deletes(none, "Closed", 6));
        CHECK(none->delete_keys == NULL);
        view_def_free(none);
    }
}

TEST(viewdef_delete_on_refusals)
{
    static const struct { const char *stmt, *want; } tab[] = {
        {"CREATE VIEW v DELETE ON Closed AS SELECT country FROM CasesReported",
         "t.payi:2:25: DELETE ON needs a view with GROUP BY (an event of type Closed removes the row of its group)"},
        {"CREATE VIEW v DELETE ON Closed AS SELECT count(*) FROM CasesReported",
         "t.payi:2:25: DELETE ON needs a view with GROUP BY (an event of type Closed removes the row of its group)"},
        {"CREATE VIEW v DELETE ON Closed AS SELECT day, count(*) FROM CasesReported GROUP BY day",
         "t.payi:2:84: DELETE ON Closed: column \"day\" does not exist in event type Closed"},
        {"CREATE VIEW v DELETE ON Gone AS SELECT country, count(*) FROM CasesReported GROUP BY country",
         "t.payi:2:86: DELETE ON Gone: GROUP BY expression 1 is text in the view but jsonb over Gone "
         "(its fields are jsonb: declare the event type)"},
        {"CREATE VIEW v DELETE ON Deaths AS SELECT country, rate, count(*) FROM CasesReported GROUP BY country, rate",
         "t.payi:2:103: DELETE ON Deaths: GROUP BY expression 2 is double precision in the view but bigint over Deaths"},
        {"CREATE VIEW v DELETE ON closed AS SELECT country, count(*) FROM CasesReported GROUP BY country",
         "t.payi:2:25: event type \"closed\" is not declared; did you mean \"Closed\"? (event type names are case-sensitive)"},
    };
    for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
        payi_err err;
        view_def *v = view_of(tab[k].stmt, &err);
        if (v) {
            test_fail(__FILE__, __LINE__, "accepted: %s", tab[k].stmt);
            view_def_free(v);
            continue;
        }
        CHECK_EQ_INT(err.code, PAYI_VALIDATION);
        CHECK_STR(err.msg, tab[k].want);
    }
}

TEST(viewdef_spec_delete_on_syntax)
{
    payi_spec *s = spec_of(HDR "CREATE VIEW v\n  DELETE ON \"Closed\" AS SELECT country, count(*) FROM CasesReported GROUP BY 1;");
    if (s) {
        CHECK_EQ_INT(s->nviews, 1);
        CHECK_STR(s->views[0].delete_type, "Closed");
        CHECK_EQ_INT(s->views[0].delete_line, 3);
        CHECK_EQ_INT(s->views[0].delete_col, 13);
        CHECK_EQ_INT(s->views[0].line, 3);
        CHECK_EQ_INT(s->views[0].col, 25);
        spec_free(s);
    }
    s = spec_of(HDR "CREATE VIEW w AS SELECT country FROM CasesReported;");
    if (s) {
        CHECK(s->views[0].delete_type == NULL);
        spec_free(s);
    }
    static const struct { const char *text, *want; } bad[] = {
        {HDR "CREATE VIEW v DELETE Closed AS SELECT 1;", "t.payi:2:22: expected ON after CREATE VIEW <name> DELETE, found \"Closed\""},
        {HDR "CREATE VIEW v DELETE ON AS SELECT 1;", "t.payi:2:28: expected AS after CREATE VIEW <name> DELETE ON <event type>, found \"SELECT\""},
        {HDR "CREATE VIEW v DELETE ON 'x' AS SELECT 1;", "t.payi:2:25: expected an event type after DELETE ON, found \"'x'\""},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        payi_err err;
        payi_spec *b = NULL;
        CHECK_EQ_INT(spec_parse("t.payi", bad[k].text, strlen(bad[k].text), &b, &err), PAYI_VALIDATION);
        CHECK_STR(err.msg, bad[k].want);
        spec_free(b);
    }
}

/* -------------------------------------------------------------------- hash */

static uint64_t hash_of(const char *text)
{
    payi_spec *s = spec_of(text);
    view_def *v = NULL;
    payi_err err;
    uint64_t h = 0;
    if (s && view_def_compile(s, 0, &v, &err) == PAYI_OK)
        h = v->hash;
    else if (s)
        test_fail(__FILE__, __LINE__, "%s", err.msg);
    view_def_free(v);
    spec_free(s);
    return h;
}

TEST(viewdef_hash)
{
#define EV1 "CREATE EVENT E (a text, b bigint);\n"
    uint64_t h = hash_of(EV1 "CREATE VIEW v AS SELECT a, sum(b) FROM E WHERE b > 0 GROUP BY a;");
    CHECK(h != 0);
    /* layout, comments and keyword case do not matter */
    CHECK_EQ_U64(hash_of(EV1 "\n\nCREATE VIEW v AS\n  select a, SUM(b) -- total\n  from E where b>0 group by a;"), h);
    /* what the stored table depends on does */
    CHECK(hash_of(EV1 "CREATE VIEW v AS SELECT a, sum(b) FROM E WHERE b > -1 GROUP BY a;") != h);
    CHECK(hash_of(EV1 "CREATE VIEW v AS SELECT a, sum(b) FROM E WHERE b > 1 GROUP BY a;") != h);
    CHECK(hash_of(EV1 "CREATE VIEW v AS SELECT a, sum(b) AS s FROM E WHERE b > 0 GROUP BY a;") != h);
    uint64_t hn = hash_of(EV1 "CREATE VIEW v AS SELECT a::text AS k, sum(b) FROM E GROUP BY 1;");
    uint64_t hx = hash_of(EV1 "CREATE VIEW v DELETE ON X AS SELECT a::text AS k, sum(b) FROM E GROUP BY 1;");
    uint64_t hy = hash_of(EV1 "CREATE VIEW v DELETE ON Y AS SELECT a::text AS k, sum(b) FROM E GROUP BY 1;");
    CHECK(hn != hx && hx != hy && hn != hy);
    /* the schema of a declared type read, and the case of the source name */
    CHECK(hash_of("CREATE EVENT E (a text, b bigint NOT NULL);\nCREATE VIEW v AS SELECT a, sum(b) FROM E WHERE b > 0 GROUP BY a;") != h);
    CHECK(hash_of("CREATE EVENT e (a text, b bigint);\nCREATE VIEW v AS SELECT a, sum(b) FROM e WHERE b > 0 GROUP BY a;") != h);
    /* another type's schema does not */
    CHECK_EQ_U64(hash_of(EV1 "CREATE EVENT F (x bigint);\nCREATE VIEW v AS SELECT a, sum(b) FROM E WHERE b > 0 GROUP BY a;"), h);
    /* but every declared type is read by FROM events */
    uint64_t he = hash_of(EV1 "CREATE VIEW v AS SELECT count(*) FROM events;");
    CHECK(hash_of(EV1 "CREATE EVENT F (x bigint);\nCREATE VIEW v AS SELECT count(*) FROM events;") != he);
#undef EV1
}

/* ---------------------------------------------------------- outside a spec */

TEST(viewdef_compile_sql)
{
    payi_spec *s = spec_of(HDR);
    if (!s)
        return;
    view_def *v = NULL;
    payi_err err;
    CHECK_EQ_INT(view_def_compile_sql(s, "adhoc", NULL, "SELECT country, count(*) FROM CasesReported GROUP BY 1",
                                      "query", 1, 1, &v, &err), PAYI_OK);
    if (v) {
        CHECK_STR(v->name, "adhoc");
        CHECK_STR(v->file, "query");
        CHECK_EQ_INT(v->ncols, 2);
        view_def_free(v);
    }
    CHECK_EQ_INT(view_def_compile_sql(s, "adhoc", NULL, "SELECT country,\n  nope FROM CasesReported", "req", 10, 5,
                                      &v, &err), PAYI_VALIDATION);
    CHECK(v == NULL);
    CHECK_STR(err.msg, "req:11:3: column \"nope\" does not exist in event type CasesReported");
    CHECK_EQ_INT(view_def_compile_sql(s, "adhoc", "Closed", "SELECT country FROM CasesReported", "req", 10, 5,
                                      &v, &err), PAYI_VALIDATION);
    CHECK_STR(err.msg, "req:10:5: DELETE ON needs a view with GROUP BY (an event of type Closed removes the row of its group)");
    CHECK_EQ_INT(view_def_compile_sql(s, "adhoc", NULL, "SELECT 1 AS a FROM t; SELECT 2 AS b FROM t", "req", 1, 1,
                                      &v, &err), PAYI_VALIDATION);
    CHECK_STR(err.msg, "req:1:21: a view is one SELECT (found ';')");
    CHECK_EQ_INT(view_def_compile(s, 7, &v, &err), PAYI_NOT_FOUND);
    spec_free(s);
}

/* ----------------------------------------------------------------- refusals */

static const struct { const char *select, *want; } refusals[] = {
    {"SELECT a FROM t JOIN u ON t.a = u.a", "t.payi:2:34: joins are not supported in a view"},
    {"SELECT a FROM t LEFT JOIN u USING (a)", "t.payi:2:39: joins are not supported in a view"},
    {"SELECT a FROM t, u", "t.payi:2:35: joins are not supported in a view (several FROM items)"},
    {"SELECT a FROM (SELECT 1 AS a) s", "t.payi:2:32: subqueries are not supported in a view"},
    {"SELECT a FROM t WHERE a IN (SELECT b FROM u)", "t.payi:2:42: subqueries are not supported in a view"},
    {"SELECT a, (SELECT 1) AS b FROM t", "t.payi:2:28: subqueries are not supported in a view"},
    {"WITH x AS (SELECT 1) SELECT a FROM x", "t.payi:2:18: WITH (common table expressions) is not supported in a view"},
    {"SELECT a FROM t UNION ALL SELECT b FROM u", "t.payi:2:34: UNION is not supported in a view"},
    {"SELECT a FROM t /* union */ INTERSECT SELECT b FROM u", "t.payi:2:46: INTERSECT is not supported in a view"},
    {"SELECT 'union' AS a FROM t EXCEPT SELECT b FROM u", "t.payi:2:45: EXCEPT is not supported in a view"},
    {"SELECT row_number() OVER (ORDER BY a) AS r FROM t", "t.payi:2:25: window functions are not supported in a view (row_number)"},
    {"SELECT sum(a) OVER (PARTITION BY b) FROM t", "t.payi:2:25: window functions are not supported in a view (sum)"},
    {"SELECT a FROM t WINDOW w AS (ORDER BY a)", "t.payi:2:34: window functions are not supported in a view (WINDOW clause)"},
    {"SELECT DISTINCT a FROM t", "t.payi:2:25: DISTINCT is not supported in a view: use GROUP BY"},
    {"SELECT DISTINCT ON (a) a, b FROM t", "t.payi:2:25: DISTINCT ON is not supported in a view"},
    {"SELECT count(*) FROM t WHERE count(*) > 1", "t.payi:2:47: aggregate functions are not allowed in WHERE (count)"},
    {"SELECT a, count(*) FROM t GROUP BY a, max(b)", "t.payi:2:56: aggregate functions are not allowed in GROUP BY (max)"},
    {"SELECT count(*) FROM t GROUP BY 1", "t.payi:2:50: aggregate functions are not allowed in GROUP BY (column 1 of the SELECT)"},
    {"SELECT sum(count(*)) FROM t", "t.payi:2:29: nested aggregate calls are not supported in a view (count)"},
    {"SELECT count(*) FILTER (WHERE max(a) > 1) FROM t", "t.payi:2:48: aggregate functions are not allowed in FILTER (max)"},
    {"SELECT sum(a) * 2 AS s FROM t", "t.payi:2:25: expressions over aggregates are not supported in a view (sum): select the aggregate and combine the columns when reading"},
    {"SELECT string_agg(a, ',' ORDER BY a) FROM t", "t.payi:2:25: aggregate function string_agg() is not supported in a view (count, sum, min, max, avg, latest, earliest are)"},
    {"SELECT max(a ORDER BY a) FROM t", "t.payi:2:25: ORDER BY inside an aggregate is not supported in a view (max)"},
    {"SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY a) FROM t", "t.payi:2:25: aggregate function percentile_disc() is not supported in a view (count, sum, min, max, avg, latest, earliest are)"},
    {"SELECT a, count(*) FROM t GROUP BY ROLLUP (a)", "t.payi:2:53: GROUPING SETS, ROLLUP and CUBE are not supported in a view"},
    {"SELECT a, count(*) FROM t GROUP BY GROUPING SETS ((a), ())", "t.payi:2:53: GROUPING SETS, ROLLUP and CUBE are not supported in a view"},
    {"SELECT count(*) FROM t GROUP BY ()", "t.payi:2:50: GROUP BY () is not supported in a view: leave GROUP BY out (aggregates without GROUP BY give one row)"},
    {"SELECT grouping(a) AS g FROM t GROUP BY a", "t.payi:2:25: GROUPING() is not supported in a view"},
    {"SELECT a FROM t LIMIT 5 OFFSET 10", "t.payi:2:42: OFFSET is not supported in a view"},
    {"SELECT a FROM t FOR UPDATE", "t.payi:2:34: FOR UPDATE/SHARE is not supported in a view"},
    {"SELECT a FROM t ORDER BY a FETCH FIRST 1 ROWS WITH TIES", "t.payi:2:45: FETCH ... WITH TIES is not supported in a view"},
    {"SELECT a INTO z FROM t", "t.payi:2:27: SELECT INTO is not supported in a view"},
    {"VALUES (1)", "t.payi:2:18: VALUES is not supported in a view: write SELECT ... FROM ..."},
    {"SELECT 1 AS a", "t.payi:2:18: a view needs FROM <event type> or FROM events"},
    {"SELECT a FROM generate_series(1, 3) g", "t.payi:2:32: functions in FROM are not supported in a view"},
    {"SELECT a FROM public.t", "t.payi:2:32: schema-qualified names are not supported in a view's FROM"},
    {"SELECT a FROM t AS x (b)", "t.payi:2:32: column aliases in FROM are not supported in a view"},
    {"SELECT country, count(*) FROM CasesReported", "t.payi:2:25: column \"country\" must appear in the GROUP BY clause or be used in an aggregate function"},
    {"SELECT upper(country), count(*) FROM CasesReported GROUP BY country", "t.payi:2:25: column 1 of the view (upper) is neither an aggregate nor a GROUP BY expression: group by it as written, or by its name or position"},
    {"SELECT country, count(*) FROM CasesReported GROUP BY country, day", "t.payi:2:80: GROUP BY expression 2 is not in the SELECT list: select it too (a view's rows are keyed by their GROUP BY values)"},
    {"SELECT country, count(*) FROM CasesReported GROUP BY 3", "t.payi:2:71: GROUP BY position 3 is not in select list"},
    {"SELECT country, count(*) FROM CasesReported GROUP BY 'country'", "t.payi:2:71: non-integer constant in GROUP BY"},
    {"SELECT cumulative - new_cases FROM CasesReported", "t.payi:2:25: column 1 of the view has no name: add AS <name>"},
    {"SELECT country, day AS country FROM CasesReported", "t.payi:2:34: column \"country\" is named twice in the view: name one of them with AS"},
    {"SELECT country, max(cumulative), max(new_cases) FROM CasesReported GROUP BY country", "t.payi:2:51: column \"max\" is named twice in the view: name one of them with AS"},
    {"SELECT country, cases FROM CasesReported", "t.payi:2:34: column \"cases\" does not exist in event type CasesReported"},
    {"SELECT country FROM CasesReported WHERE deaths > 0", "t.payi:2:58: column \"deaths\" does not exist in event type CasesReported"},
    {"SELECT country FROM events WHERE event_type IN ('CasesReported', 'Deaths') AND rate > 1", "t.payi:2:97: column \"rate\" is double precision in event type CasesReported but bigint in event type Deaths: a view's column has one type"},
    {"SELECT country FROM events WHERE event_type = 'Deaths' AND nope", "t.payi:2:77: column \"nope\" does not exist in event type Deaths"},
    {"SELECT * FROM CasesReported", "t.payi:2:25: SELECT * is not supported in a view: name the columns"},
    {"SELECT c.country FROM CasesReported c", "t.payi:2:25: qualified column names are not supported in a view: write the column name alone"},
    {"SELECT country FROM casesreported", "t.payi:2:38: event type \"casesreported\" is not declared; did you mean \"CasesReported\"? (event type names are case-sensitive)"},
    {"SELECT country FROM events WHERE event_type = 'deaths'", "t.payi:2:64: event type \"deaths\" is not declared; did you mean \"Deaths\"? (event type names are case-sensitive)"},
    {"SELECT country FROM events WHERE event_type = 'A' AND event_type IN ('B', 'C')", "t.payi:2:51: the WHERE clause's event_type conditions exclude every event type"},
    {"SELECT sum(country) FROM CasesReported", "t.payi:2:25: sum(text) is not supported in a view"},
    {"SELECT avg(day) FROM CasesReported", "t.payi:2:25: avg(date) is not supported in a view"},
    {"SELECT sum(tags) FROM CasesReported", "t.payi:2:25: sum(jsonb) is not supported in a view: cast it, e.g. sum(tags::bigint) or sum(tags::double precision)"},
    {"SELECT max(ok) FROM CasesReported", "t.payi:2:25: max(boolean) is not supported in a view"},
    {"SELECT min(cases) FROM Untyped", "t.payi:2:25: min(jsonb) is not supported in a view: cast it, e.g. min(cases::bigint)"},
    {"SELECT avg(DISTINCT cumulative) FROM CasesReported", "t.payi:2:25: DISTINCT is only supported in count(DISTINCT x) in a view (avg)"},
    {"SELECT sum(*) FROM CasesReported", "t.payi:2:25: sum(*) is not supported in a view (only count(*))"},
    {"SELECT count(country, day) FROM CasesReported", "t.payi:2:25: count() takes one argument in a view (or count(*))"},
    {"SELECT latest() FROM CasesReported", "t.payi:2:25: latest() takes one argument in a view"},
    {"SELECT count(*) FILTER (WHERE cumulative) FROM CasesReported", "t.payi:2:48: argument of FILTER must be type boolean, not type bigint"},
    {"SELECT country FROM CasesReported WHERE cumulative + 1", "t.payi:2:58: argument of WHERE must be type boolean, not type bigint"},
    {"SELECT country FROM CasesReported WHERE day > 'soon'", "t.payi:2:64: WHERE: invalid input syntax for type date: \"soon\""},
    {"SELECT country, now() AS n FROM CasesReported", "t.payi:2:34: SELECT: now() is not allowed: expressions must be deterministic so that a replay gives the same answer"},
    {"SELECT sum(cumulative + 'x') FROM CasesReported", "t.payi:2:42: sum(): invalid input syntax for type bigint: \"x\""},
    {"SELECT sum(cumulative || 'x') FROM CasesReported", "t.payi:2:25: sum(text) is not supported in a view"},
    {"SELECT country, count(*) FROM CasesReported GROUP BY country HAVING count(*) > 'x'", "t.payi:2:97: HAVING: invalid input syntax for type bigint: \"x\""},
    {"SELECT country FROM CasesReported WHERE country = 'a' AND", "t.payi:2:75: syntax error at end of input"},
    {"SELECT country, FROM CasesReported", "t.payi:2:34: syntax error at or near \"FROM\""},
    {"SELECT country FROM CasesReported LIMIT -1", "t.payi:2:58: LIMIT must not be negative"},
    {"SELECT country FROM CasesReported LIMIT 1 + 1", "t.payi:2:58: LIMIT must be a non-negative integer constant in a view"},
    {"SELECT country FROM CasesReported LIMIT 2.5", "t.payi:2:58: LIMIT must be a non-negative integer constant in a view"},
    {"SELECT country FROM CasesReported ORDER BY day", "t.payi:2:61: ORDER BY \"day\" is not a column of the view"},
    {"SELECT country FROM CasesReported ORDER BY upper(country)", "t.payi:2:61: ORDER BY expressions are not supported in a view: order by a column of the view (name or position)"},
    {"SELECT country FROM CasesReported ORDER BY 2", "t.payi:2:61: ORDER BY position 2 is not in select list"},
    {"SELECT country FROM CasesReported ORDER BY country NULLS FIRST", "t.payi:2:61: NULLS FIRST/LAST is not supported in a view's ORDER BY"},
    {"SELECT country FROM CasesReported ORDER BY country USING <", "t.payi:2:61: ORDER BY ... USING is not supported in a view"},
    {"SELECT country FROM CasesReported HAVING country > 'a'", "t.payi:2:52: HAVING needs GROUP BY or an aggregate in a view"},
    {"SELECT country, count(*) FROM CasesReported GROUP BY country HAVING sum(new_cases) > 1", "t.payi:2:86: HAVING: aggregate sum(...) is not a column of the view: select it (AS a name) and use the name in HAVING"},
    {"SELECT country, count(*) FROM CasesReported GROUP BY country HAVING day > '2020-01-01'", "t.payi:2:86: HAVING: column \"day\" does not exist"},
    {"SELECT cumulative AS event_position FROM CasesReported", "t.payi:2:25: column \"event_position\" is the row key of this view (the event's position): give this column another name"},
    {"SELECT country, lates(day) FROM CasesReported GROUP BY country", "t.payi:2:34: SELECT: function lates() is not supported"},
    {"TABLE t", "t.payi:2:18: SELECT * is not supported in a view: name the columns"},
    {"SELECT count(*) FROM t GROUP BY 0", "t.payi:2:50: GROUP BY position 0 is not in select list"},
    {"INSERT INTO t VALUES (1)", "t.payi:2:18: a view must be a SELECT (found INSERT)"},
    {"SELECT country, latest(rate) FROM CasesReported GROUP BY country HAVING latest > 'x'", "t.payi:2:99: HAVING: invalid input syntax for type double precision: \"x\""},
};

TEST(viewdef_refusals)
{
    CHECK(sizeof refusals / sizeof refusals[0] >= 30);
    for (size_t k = 0; k < sizeof refusals / sizeof refusals[0]; k++) {
        char stmt[2048];
        snprintf(stmt, sizeof stmt, "CREATE VIEW v AS %s", refusals[k].select);
        payi_err err;
        view_def *v = view_of(stmt, &err);
        if (v) {
            test_fail(__FILE__, __LINE__, "accepted: %s", refusals[k].select);
            view_def_free(v);
            continue;
        }
        CHECK_EQ_INT(err.code, PAYI_VALIDATION);
        if (strcmp(err.msg, refusals[k].want) != 0)
            test_fail(__FILE__, __LINE__, "%s\n   got  %s\n   want %s", refusals[k].select, err.msg, refusals[k].want);
    }
}

TEST(viewdef_every_view_of_a_spec)
{
    /* a spec may hold only views */
    const char *text = "CREATE VIEW a AS SELECT count(*) FROM events;\n"
                       "CREATE VIEW b AS SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC LIMIT 3;\n";
    payi_spec *s = spec_of(text);
    if (!s)
        return;
    CHECK_EQ_INT(s->nviews, 2);
    for (uint32_t k = 0; k < s->nviews; k++) {
        view_def *v = NULL;
        payi_err err;
        CHECK_EQ_INT(view_def_compile(s, k, &v, &err), PAYI_OK);
        CHECK(v && v->from_events);
        view_def_free(v);
    }
    spec_free(s);
}
