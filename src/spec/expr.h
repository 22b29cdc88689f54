/* expr.h — SQL scalar expressions (PostgreSQL syntax and semantics), shared
 * by the spec file (CHECK, REJECT IF, EMIT fields, aggregate SET) and the
 * views (SELECT, WHERE, GROUP BY).
 *
 *   expr_column cols[] = {{"cases", EXPR_BIGINT}, {"state.cases", EXPR_BIGINT}};
 *   expr_scope scope = {cols, 2};
 *   expr *e;
 *   if (expr_parse("cases - state.cases", 19, &scope, &e, &err) != PAYI_OK) ...
 *   expr_value slots[2] = {expr_int(10), expr_int(7)}, v;
 *   expr_ctx ctx; expr_ctx_init(&ctx);
 *   if (expr_eval(e, slots, &ctx, &v, &err) != PAYI_OK) ...      v.i == 3
 *
 * Every error message ends with " (at N)": N is the 0-based byte offset into
 * the expression text of the construct at fault (for run-time errors such as
 * division by zero: of the operator or function).  expr_error_pos() reads it
 * back so that callers can map it to file:line:col.
 */
#ifndef PAYI_EXPR_H
#define PAYI_EXPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/json.h"

typedef enum {
    EXPR_BOOL = 1,
    EXPR_BIGINT,
    EXPR_DOUBLE,
    EXPR_TEXT,
    EXPR_DATE,          /* days since 1970-01-01 */
    EXPR_TIMESTAMPTZ,   /* microseconds since 1970-01-01 00:00:00 UTC */
    EXPR_JSONB,         /* JSON text */
} expr_type;

/* A value.  null says SQL NULL (type still tells of which type).  Text and
 * jsonb point to s[0..len), not NUL-terminated, owned by whoever produced it:
 * the caller for column values, the expr for constants, the expr_ctx arena
 * for computed values (valid until expr_ctx_reset). */
typedef struct expr_value {
    uint8_t type;   /* expr_type */
    bool null;
    uint32_t len;   /* text, jsonb */
    union {
        bool b;
        int64_t i;  /* bigint, date, timestamptz */
        double d;
        const char *s;
    };
} expr_value;

static inline expr_value expr_null(expr_type t) { expr_value v = {0}; v.type = (uint8_t)t; v.null = true; return v; }
static inline expr_value expr_bool(bool b) { expr_value v = {0}; v.type = EXPR_BOOL; v.b = b; return v; }
static inline expr_value expr_int(int64_t i) { expr_value v = {0}; v.type = EXPR_BIGINT; v.i = i; return v; }
static inline expr_value expr_double(double d) { expr_value v = {0}; v.type = EXPR_DOUBLE; v.d = d; return v; }
static inline expr_value expr_date(int64_t days) { expr_value v = {0}; v.type = EXPR_DATE; v.i = days; return v; }
static inline expr_value expr_ts(int64_t us) { expr_value v = {0}; v.type = EXPR_TIMESTAMPTZ; v.i = us; return v; }
static inline expr_value expr_text(const char *s, size_t len)
{
    expr_value v = {0}; v.type = EXPR_TEXT; v.s = s; v.len = (uint32_t)len; return v;
}
static inline expr_value expr_jsonb(const char *s, size_t len)
{
    expr_value v = {0}; v.type = EXPR_JSONB; v.s = s; v.len = (uint32_t)len; return v;
}

typedef struct expr_column {
    const char *name;   /* as written after identifier folding: "cases", "state.last_day" */
    expr_type type;
} expr_column;

typedef struct expr_scope {
    const expr_column *cols;
    size_t n;
} expr_scope;

/* Evaluation context: a bump arena for computed text, reused across
 * evaluations (no allocation once warm), and scratch for jsonb access. */
typedef struct expr_arena_blk expr_arena_blk;
typedef struct expr_ctx {
    expr_arena_blk *first, *cur;
    json_doc jd;
    buf scratch;
} expr_ctx;

typedef struct expr expr;

payi_code expr_parse(const char *text, size_t len, const expr_scope *scope, expr **out, payi_err *err);
/* Compile node `node` of d, the JSON parse tree that pg_query_parse gave for
 * sql[0..len) (read with json_parse), under the same rules as expr_parse: for
 * callers that parse a whole statement themselves (a view's SELECT).  The
 * " (at N)" of errors is a byte offset into sql.  d and sql are only
 * borrowed during the call. */
payi_code expr_compile_node(const json_doc *d, uint32_t node, const char *sql, size_t len, const expr_scope *scope,
                            expr **out, payi_err *err);
void expr_free(expr *e);
expr_type expr_result_type(const expr *e);

void expr_ctx_init(expr_ctx *ctx);
void expr_ctx_reset(expr_ctx *ctx);     /* invalidates text values computed so far */
void expr_ctx_release(expr_ctx *ctx);
/* n bytes from the context's arena, valid until expr_ctx_reset (never NULL). */
char *expr_ctx_alloc(expr_ctx *ctx, size_t n);

/* columns[i] is the value of scope column i; a column whose value has
 * another type than declared (other than a NULL) is an error. */
payi_code expr_eval(const expr *e, const expr_value *columns, expr_ctx *ctx, expr_value *out, payi_err *err);

const char *expr_type_name(expr_type t);   /* "bigint", "double precision", ... */
/* The PostgreSQL text output of v ("2020-03-11", booleans as "true"/"false" like ::text, NULL as "NULL"). */
void expr_value_format(const expr_value *v, buf *out);
/* Reads the " (at N)" suffix of an error from this module. */
bool expr_error_pos(const payi_err *err, size_t *pos);

/* Calendar helpers, also for callers that decode event fields. */
int64_t expr_days_from_civil(int64_t y, unsigned m, unsigned d);
void expr_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* Parse text as date / timestamptz the way the casts do. */
bool expr_parse_date(const char *s, size_t len, int64_t *days);
bool expr_parse_timestamptz(const char *s, size_t len, int64_t *us);

#endif
