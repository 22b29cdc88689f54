/* viewdef.c — compile `CREATE VIEW name [DELETE ON T] AS SELECT ...` into
 * the plan of view/viewdef.h (what is accepted and refused is listed there).
 *
 * Design.
 *
 * Parsing.  The SELECT text is handed to pg_query_parse as it is, and its
 * JSON parse tree is read with base/json.h.  Nothing is re-serialized to SQL
 * and no expression's end is searched for in the text: every expression is
 * compiled straight from its subtree with expr_compile_node (spec/expr.h),
 * so commas in strings, nested parentheses and comments cannot cut an
 * expression in the wrong place.  The libpg_query result and the JSON doc
 * live in the compiler state (vc) and are released by compile_view's single
 * exit, on every path.
 *
 * Positions.  libpg_query locations are byte offsets into the SELECT text.
 * An offset becomes file:line:col by counting from spec_view's line/col (the
 * position of the SELECT's first byte): each '\n' starts a new line at col
 * 1, any other byte adds one col (cols count bytes, as in spec.c).  The
 * syntax-error cursor is a 1-based character count and is converted to
 * bytes first; expr's " (at N)" suffixes are offsets into the same text (the
 * whole SELECT is expr's text here).  Constructs without a location in the
 * tree (DISTINCT, UNION, FOR UPDATE, OFFSET, JOIN ...) are found by their
 * keyword at parenthesis depth 0 with a small lexer (kw_pos) that skips
 * comments, strings, quoted names and dollar quotes.
 *
 * Normalized trees.  Two expressions are "the same" (a SELECT item and a
 * GROUP BY expression, a HAVING aggregate and a SELECT item) when their
 * subtrees print to the same JSON with every "location" member left out.
 * libpg_query 15-4.0.0 prints the value of 0 and of negative integer
 * constants as "ival":{}, so those are read back from the text, else `x + 0`
 * and `x + -1` would compare equal.  The same printing of the whole SELECT
 * is the input of the definition hash.
 *
 * Names.  Output column names follow PostgreSQL's FigureColname (column
 * name, function name, CASE's ELSE name or "case", a cast's type name ...);
 * "?column?" is refused.  Event type names keep their case: an unquoted
 * FROM name is taken as written in the text (libpg_query folds relname);
 * the unquoted name `events` (any case) means every event.
 *
 * Scope.  Before any expression is compiled, every ColumnRef of the SELECT
 * items, WHERE and GROUP BY is collected (document order); attribute names
 * are the VIEW_NATTRS first columns and shadow data fields of the same name;
 * the others become fields typed from the declared source types.  HAVING is
 * compiled over the output columns: a HAVING subtree that equals a SELECT
 * item (an aggregate call or a key expression) is replaced by a reference to
 * that item's output column before compiling, other names are output column
 * names, and an aggregate call that is no SELECT item is refused (select it
 * with AS and use the name).  GROUP BY resolves a bare name as an input
 * column first when the source declares it (PostgreSQL's rule), else as an
 * output name; ORDER BY resolves output names first, then positions, then
 * an expression written as a SELECT item.  A SELECT item that matches no
 * GROUP BY expression is compiled before it is refused, so that a misspelt
 * aggregate reads "function lates() is not supported".
 *
 * Sources.  FROM T reads T (declared: typed fields; else jsonb fields).
 * FROM events reads every type, unless the WHERE's top-level AND holds
 * event_type = '...' / IN (...) tests: then types[] is their intersection
 * and only those types' declarations type the fields.  An event type name
 * that differs from a declared one only by case is refused with a hint.
 *
 * Hash.  FNV-1a 64 over the normalized SELECT, the resolved source types,
 * the DELETE ON type and schema_to_json of every declared type read (all
 * of them for an unfiltered FROM events) and of the DELETE ON type.
 *
 * Invariants of a compiled view_def:
 *   1. Every expression's column indexes are slots of the scope it was
 *      compiled over: scope (where, keys, aggs, values), cols (having),
 *      delete_scope (delete_keys); scope names borrow from fields/cols.
 *   2. shape == VIEW_GROUPED: every col is a key or an aggregate, every key
 *      is some visible col, naggs + nkeys > 0; VIEW_ROWS: nkeys == naggs ==
 *      0, ncols == nvalues, and cols[position_col] is event_position.
 *   3. Column names are unique; types of cols are those of their exprs.
 *   4. delete_keys[i] has the type of keys[i].
 */
#include "view/viewdef.h"

#include <ctype.h>
#include <limits.h>
#include <pg_query.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/hash.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"

#define NONE UINT32_MAX
#define MAX_SQL_BYTES (1u << 20)
#define MAX_JSON_DEPTH 400      /* bounds every recursive walk below */
#define MAX_JSON_NODES 1000000

static const char *const attr_names[VIEW_NATTRS] = {"event_position", "event_stream", "event_version",
                                                     "event_time", "event_type"};
static const expr_type attr_types[VIEW_NATTRS] = {EXPR_BIGINT, EXPR_TEXT, EXPR_BIGINT, EXPR_TIMESTAMPTZ,
                                                   EXPR_TEXT};

/* The aggregates a view folds (agg_kinds[] below gives each one's kind);
 * other PostgreSQL aggregates are listed so that the refusal of one says
 * "aggregate" rather than "unknown function". */
static const char *const view_aggs[] = {"count", "sum", "min", "max", "avg", "latest", "earliest", NULL};
static const char *const other_aggs[] = {
    "array_agg", "string_agg", "bool_and", "bool_or", "every", "stddev", "stddev_pop", "stddev_samp",
    "variance", "var_pop", "var_samp", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
    "bit_and", "bit_or", "bit_xor", "percentile_cont", "percentile_disc", "mode", "corr", "covar_pop",
    "covar_samp", "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope",
    "regr_sxx", "regr_sxy", "regr_syy", "xmlagg", "any_value", "range_agg", "range_intersect_agg",
    "first_value", "last_value", NULL};

/* One SELECT item. */
typedef struct item {
    uint32_t val;          /* the expression node */
    size_t pos;            /* its offset in the SELECT */
    char *name;            /* output name */
    char *norm;            /* normalized tree of val */
    bool agg;              /* an aggregate call (grouped shape) */
    uint32_t slot;         /* grouped: index into keys (plain item) or aggs (aggregate) */
} item;

/* One GROUP BY expression, resolved. */
typedef struct group {
    uint32_t node;         /* the expression (a SELECT item's when named by ordinal or output name) */
    size_t pos;            /* of the GROUP BY item as written */
    char *norm;
} group;

/* A data field while the scope is built. */
typedef struct fieldref {
    char *name;
    size_t pos;            /* first use, for messages */
} fieldref;

typedef struct fieldrefs {
    fieldref *v;
    size_t n, cap;
} fieldrefs;

typedef struct vc {
    const payi_spec *spec;
    const char *sql;       /* the SELECT, NUL-terminated */
    size_t len;
    const char *file;
    uint32_t line, col;    /* of sql[0] */
    uint32_t dline, dcol;  /* of the DELETE ON type name */
    payi_err *err;
    json_doc d;
    uint32_t sel;          /* the SelectStmt body */
    view_def *v;
    item *items;
    size_t nitems;
    group *groups;
    size_t ngroups, gcap;
    const ev_schema **srcs;  /* declared types the source reads */
    uint32_t nsrcs;
    bool untyped;          /* the source may read undeclared types: unknown names are jsonb fields */
    char *src_desc;        /* "event type T" / "event types A, B", for messages */
    buf sb;                /* scratch for decoded JSON strings */
} vc;

/* --------------------------------------------------------------- positions */

static void line_col(const vc *c, size_t off, uint32_t *line, uint32_t *col)
{
    uint32_t l = c->line, k = c->col;
    if (off > c->len)
        off = c->len;
    for (size_t i = 0; i < off; i++) {
        if (c->sql[i] == '\n')
            l++, k = 1;
        else
            k++;
    }
    *line = l;
    *col = k;
}

static bool vfail_lc(vc *c, uint32_t line, uint32_t col, const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static bool vfail_lc(vc *c, uint32_t line, uint32_t col, const char *fmt, va_list ap)
{
    char m[440];
    vsnprintf(m, sizeof m, fmt, ap);
    payi_err_set(c->err, PAYI_VALIDATION, NULL, "%s:%u:%u: %s", c->file, line, col, m);
    return false;
}

/* Refuses with the position of SELECT byte off.  Returns false. */
static bool fail(vc *c, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(vc *c, size_t off, const char *fmt, ...)
{
    uint32_t line, col;
    line_col(c, off, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    vfail_lc(c, line, col, fmt, ap);
    va_end(ap);
    return false;
}

/* Refuses with the position of DELETE ON's event type. */
static bool fail_delete(vc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail_delete(vc *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_lc(c, c->dline, c->dcol, fmt, ap);
    va_end(ap);
    return false;
}

/* ------------------------------------------------------------------- lexer */

static bool ident_start(unsigned char ch) { return ch == '_' || (ch < 0x80 && isalpha(ch)) || ch >= 0x80; }
static bool ident_char(unsigned char ch) { return ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '$'; }

/* Length of a $tag$ dollar-quote delimiter at s[i], 0 when there is none ($1 is a parameter). */
static size_t dollar_delim(const char *s, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && s[j] != '$') {
        if (!ident_start((unsigned char)s[j]))
            return 0;
        while (j < len && s[j] != '$' && ident_char((unsigned char)s[j]))
            j++;
    }
    return j < len && s[j] == '$' ? j + 1 - i : 0;
}

/* The offset after the comment, string, quoted name or dollar quote at
 * s[i]; i when none starts there.  backslash: an E'...' string. */
static size_t skip_opaque(const char *s, size_t len, size_t i, bool backslash)
{
    if (s[i] == '-' && i + 1 < len && s[i + 1] == '-') {
        while (i < len && s[i] != '\n')
            i++;
        return i;
    }
    if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
        int depth = 0;   /* block comments nest, as in PostgreSQL */
        for (; i + 1 < len; i++) {
            if (s[i] == '/' && s[i + 1] == '*')
                depth++, i++;
            else if (s[i] == '*' && s[i + 1] == '/' && --depth == 0)
                return i + 2;
        }
        return len;
    }
    if (s[i] == '\'' || s[i] == '"') {
        char q = s[i];
        for (i++; i < len; i++) {
            if (backslash && s[i] == '\\') {
                i++;
            } else if (s[i] == q) {
                if (i + 1 < len && s[i + 1] == q) {
                    i++;
                    continue;
                }
                return i + 1;
            }
        }
        return len;
    }
    size_t dl;
    if (s[i] == '$' && (dl = dollar_delim(s, len, i)) > 0) {
        const char *end = memmem(s + i + dl, len - i - dl, s + i, dl);
        return end ? (size_t)(end - s) + dl : len;
    }
    return i;
}

/* Offset of the first keyword kw (an unquoted identifier, any case) at
 * parenthesis depth 0 at or after from; from when there is none.  Used for
 * constructs the parse tree gives no location for. */
static size_t kw_pos(const vc *c, const char *kw, size_t from)
{
    const char *s = c->sql;
    size_t len = c->len, kl = strlen(kw), i = 0;
    int depth = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)s[i];
        size_t j = skip_opaque(s, len, i, false);
        if (j != i) {
            i = j;
            continue;
        }
        if (ident_start(ch)) {
            size_t st = i;
            while (i < len && ident_char((unsigned char)s[i]))
                i++;
            if (i - st == 1 && (ch | 32) == 'e' && i < len && s[i] == '\'') {
                i = skip_opaque(s, len, i, true);
                continue;
            }
            if (depth == 0 && st >= from && i - st == kl && strncasecmp(s + st, kw, kl) == 0)
                return st;
            continue;
        }
        if (ch == '(' || ch == '[')
            depth++;
        else if ((ch == ')' || ch == ']') && depth > 0)
            depth--;
        i++;
    }
    return from;
}

/* Offset of the innermost '(' still open at pos (the start of a
 * parenthesized subquery whose first location is pos), else pos. */
static size_t open_paren(const vc *c, size_t pos)
{
    const char *s = c->sql;
    size_t stack[64], depth = 0, i = 0;
    while (i < pos && i < c->len) {
        size_t j = skip_opaque(s, c->len, i, false);
        if (j != i) {
            i = j;
            continue;
        }
        if (s[i] == '(') {
            if (depth < 64)
                stack[depth] = i;
            depth++;
        } else if (s[i] == ')' && depth > 0) {
            depth--;
        }
        i++;
    }
    return depth > 0 && depth <= 64 ? stack[depth - 1] : pos;
}

/* An integer constant read from the text at off (the A_Const's location):
 * libpg_query 15-4.0.0 leaves 0 and negative values out of its JSON. */
static bool int_at(const vc *c, size_t off, int64_t *v)
{
    const char *s = c->sql;
    size_t i = off, len = c->len;
    bool neg = false;
    while (i < len) {
        size_t j = skip_opaque(s, len, i, false);
        if (j != i && (s[i] == '-' || s[i] == '/')) {   /* a comment between the sign and the digits */
            i = j;
        } else if (s[i] == '-') {
            neg = !neg, i++;
        } else if (s[i] == '+' || s[i] == '(' || isspace((unsigned char)s[i])) {
            i++;
        } else {
            break;
        }
    }
    int64_t x = 0;
    size_t st = i;
    while (i < len && s[i] >= '0' && s[i] <= '9' && x < 100000000000000LL)
        x = x * 10 + (s[i++] - '0');
    if (i == st)
        return false;
    *v = neg ? -x : x;
    return true;
}

/* ------------------------------------------------------------ JSON helpers */

/* A node of libpg_query's tree is {"Kind": {...body...}}. */
static bool unwrap(const json_doc *d, uint32_t i, uint32_t *key, uint32_t *body)
{
    if (i == NONE || i >= d->n || d->nodes[i].kind != JSON_OBJECT || d->nodes[i].count != 1)
        return false;
    *key = i + 1;
    *body = d->nodes[i + 1].next;
    return true;
}

static bool key_is(const json_doc *d, uint32_t key, const char *s)
{
    const json_node *k = &d->nodes[key];
    size_t n = strlen(s);
    return k->kind == JSON_STRING && k->len == n + 2 && memcmp(d->src + k->start + 1, s, n) == 0;
}

/* True when node i is {"kind": body}. */
static bool kind_is(const json_doc *d, uint32_t i, const char *kind, uint32_t *body)
{
    uint32_t k, b;
    if (!unwrap(d, i, &k, &b) || !key_is(d, k, kind))
        return false;
    if (body)
        *body = b;
    return true;
}

static uint32_t get(const json_doc *d, uint32_t obj, const char *key)
{
    if (obj == NONE || obj >= d->n || d->nodes[obj].kind != JSON_OBJECT)
        return NONE;
    return json_object_get(d, obj, key);
}

static uint32_t count_of(const json_doc *d, uint32_t arr)
{
    return arr != NONE && d->nodes[arr].kind == JSON_ARRAY ? d->nodes[arr].count : 0;
}

/* Element k of array arr (k < count_of). */
static uint32_t elem(const json_doc *d, uint32_t arr, uint32_t k)
{
    uint32_t it = arr + 1;
    while (k--)
        it = d->nodes[it].next;
    return it;
}

/* The "location" of a node body, or -1. */
static int64_t location(const json_doc *d, uint32_t body)
{
    int64_t loc;
    uint32_t l = get(d, body, "location");
    if (l == NONE || !json_get_int64(d, l, &loc))
        return -1;
    return loc;
}

/* The smallest location in subtree i, else dflt: where the construct's text
 * starts (a node's own location may be its operator, after its left operand,
 * and the JSON lists children before a node's own location). */
static size_t first_loc(const vc *c, uint32_t i, size_t dflt)
{
    const json_doc *d = &c->d;
    size_t best = SIZE_MAX;
    if (i == NONE)
        return dflt;
    for (uint32_t k = i; k + 1 < d->nodes[i].next; k++) {
        int64_t loc;
        if (key_is(d, k, "location") && d->nodes[k + 1].kind == JSON_NUMBER && json_get_int64(d, k + 1, &loc) &&
            loc >= 0 && (size_t)loc < best)
            best = (size_t)loc;
    }
    if (best == SIZE_MAX)
        return dflt;
    return best > c->len ? c->len : best;
}

/* Decoded string node i (valid until the next call), "" when it is none. */
static const char *str_of(vc *c, uint32_t i)
{
    if (i == NONE || !json_get_string(&c->d, i, &c->sb))
        return "";
    return c->sb.data;
}

/* The sval of a {"String":{"sval":...}} node, or NULL. */
static const char *sval_of(vc *c, uint32_t i)
{
    uint32_t b;
    if (!kind_is(&c->d, i, "String", &b))
        return NULL;
    return str_of(c, get(&c->d, b, "sval"));
}

/* The last name of a name list (drops "pg_catalog."), copied into out. */
static bool last_name(vc *c, uint32_t list, char *out, size_t size)
{
    uint32_t n = count_of(&c->d, list);
    const char *s = n ? sval_of(c, elem(&c->d, list, n - 1)) : NULL;
    if (!s)
        return false;
    snprintf(out, size, "%s", s);
    return true;
}

/* The single name of a ColumnRef body (NULL when qualified or *). */
static const char *colref_name(vc *c, uint32_t body)
{
    uint32_t f = get(&c->d, body, "fields");
    return count_of(&c->d, f) == 1 ? sval_of(c, elem(&c->d, f, 0)) : NULL;
}

typedef enum { W_DESCEND, W_SKIP, W_STOP } walk_op;
typedef walk_op (*visit_fn)(vc *c, uint32_t node, uint32_t key, uint32_t body, void *arg);

/* Calls fn on every node ({"Kind": {...}}) of subtree i in document order;
 * false when fn stopped the walk (it has then reported why). */
static bool walk(vc *c, uint32_t i, visit_fn fn, void *arg)
{
    const json_doc *d = &c->d;
    if (i == NONE)
        return true;
    const json_node *n = &d->nodes[i];
    if (n->kind == JSON_ARRAY) {
        for (uint32_t k = 0, it = i + 1; k < n->count; k++, it = d->nodes[it].next)
            if (!walk(c, it, fn, arg))
                return false;
        return true;
    }
    if (n->kind != JSON_OBJECT)
        return true;
    uint32_t key, body;
    if (unwrap(d, i, &key, &body)) {
        walk_op op = fn(c, i, key, body, arg);
        if (op != W_DESCEND)
            return op == W_SKIP;
    }
    for (uint32_t k = 0, it = i + 1; k < n->count; k++) {
        uint32_t val = d->nodes[it].next;
        if (!walk(c, val, fn, arg))
            return false;
        it = d->nodes[val].next;
    }
    return true;
}

/* ------------------------------------------------------- normalized trees */

/* Appends subtree i without its "location" members; aconst: i is the body
 * of an A_Const (whose 0 and negative integers are read from the text). */
static void norm_write(vc *c, uint32_t i, bool aconst, buf *out)
{
    const json_doc *d = &c->d;
    const json_node *n = &d->nodes[i];
    if (n->kind == JSON_ARRAY) {
        buf_putc(out, '[');
        for (uint32_t k = 0, it = i + 1; k < n->count; k++, it = d->nodes[it].next) {
            if (k)
                buf_putc(out, ',');
            norm_write(c, it, false, out);
        }
        buf_putc(out, ']');
        return;
    }
    if (n->kind != JSON_OBJECT) {
        json_write_compact(d, i, out);
        return;
    }
    bool first = true;
    buf_putc(out, '{');
    for (uint32_t k = 0, it = i + 1; k < n->count; k++) {
        uint32_t val = d->nodes[it].next;
        if (!key_is(d, it, "location")) {
            if (!first)
                buf_putc(out, ',');
            first = false;
            json_write_compact(d, it, out);
            buf_putc(out, ':');
            int64_t v, loc;
            if (aconst && key_is(d, it, "ival") && d->nodes[val].kind == JSON_OBJECT && d->nodes[val].count == 0 &&
                (loc = location(d, i)) >= 0 && int_at(c, (size_t)loc, &v))
                buf_printf(out, "{\"ival\":%lld}", (long long)v);
            else
                norm_write(c, val, key_is(d, it, "A_Const"), out);
        }
        it = d->nodes[val].next;
    }
    buf_putc(out, '}');
}

static char *norm_of(vc *c, uint32_t i)
{
    buf b = BUF_INIT;
    norm_write(c, i, false, &b);
    return b.data;
}

/* ------------------------------------------------------------- aggregates */

static bool is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* True when FuncCall body b is an aggregate call; its function name in name. */
static bool is_agg(vc *c, uint32_t b, char *name, size_t size)
{
    const json_doc *d = &c->d;
    if (!last_name(c, get(d, b, "funcname"), name, size))
        snprintf(name, size, "?");
    return is_one_of(name, view_aggs) || is_one_of(name, other_aggs) || get(d, b, "agg_star") != NONE ||
           get(d, b, "agg_distinct") != NONE || get(d, b, "agg_filter") != NONE || get(d, b, "agg_order") != NONE ||
           get(d, b, "agg_within_group") != NONE;
}

typedef struct agg_find {
    const char *clause;    /* refusal: "aggregate functions are not allowed in <clause>" */
    enum { AGG_IN_CLAUSE, AGG_NESTED, AGG_OVER } why;
} agg_find;

/* Refuses the first aggregate call of a subtree. */
static walk_op refuse_agg(vc *c, uint32_t node, uint32_t key, uint32_t body, void *arg)
{
    const agg_find *f = arg;
    char name[64];
    if (!key_is(&c->d, key, "FuncCall") || !is_agg(c, body, name, sizeof name))
        return W_DESCEND;
    int64_t loc = location(&c->d, body);
    size_t pos = loc >= 0 ? (size_t)loc : first_loc(c, node, 0);
    if (f->why == AGG_NESTED)
        fail(c, pos, "nested aggregate calls are not supported in a view (%s)", name);
    else if (f->why == AGG_OVER)
        fail(c, pos, "expressions over aggregates are not supported in a view (%s): "
             "select the aggregate and combine the columns when reading", name);
    else
        fail(c, pos, "aggregate functions are not allowed in %s (%s)", f->clause, name);
    return W_STOP;
}

static bool no_aggs(vc *c, uint32_t node, const char *clause)
{
    agg_find f = {clause, AGG_IN_CLAUSE};
    return walk(c, node, refuse_agg, &f);
}

/* ---------------------------------------------------------- unsupported SQL */

/* Subqueries, window functions, GROUPING(): refused wherever they are. */
static walk_op refuse_anywhere(vc *c, uint32_t node, uint32_t key, uint32_t body, void *arg)
{
    const json_doc *d = &c->d;
    int64_t loc = location(d, body);
    size_t pos = loc >= 0 ? (size_t)loc : first_loc(c, node, 0);
    if (key_is(d, key, "SubLink"))
        return fail(c, pos, "subqueries are not supported in a view"), W_STOP;
    if (key_is(d, key, "GroupingFunc"))
        return fail(c, pos, "GROUPING() is not supported in a view"), W_STOP;
    if (key_is(d, key, "FuncCall") && get(d, body, "over") != NONE) {
        char name[64];
        if (!last_name(c, get(d, body, "funcname"), name, sizeof name))
            snprintf(name, sizeof name, "?");
        return fail(c, pos, "window functions are not supported in a view (%s)", name), W_STOP;
    }
    return W_DESCEND;
}

/* Clauses of the statement that a view cannot have. */
static bool check_statement(vc *c)
{
    const json_doc *d = &c->d;
    uint32_t s = c->sel, x;
    if (get(d, s, "withClause") != NONE)
        return fail(c, kw_pos(c, "with", 0), "WITH (common table expressions) is not supported in a view");
    const char *op = str_of(c, get(d, s, "op"));
    if (*op && strcmp(op, "SETOP_NONE") != 0) {
        const char *w = strcmp(op, "SETOP_UNION") == 0 ? "union" : strcmp(op, "SETOP_INTERSECT") == 0 ? "intersect" : "except";
        return fail(c, kw_pos(c, w, 0), "%s is not supported in a view",
                    w[0] == 'u' ? "UNION" : w[0] == 'i' ? "INTERSECT" : "EXCEPT");
    }
    if (get(d, s, "valuesLists") != NONE)
        return fail(c, kw_pos(c, "values", 0), "VALUES is not supported in a view: write SELECT ... FROM ...");
    if (get(d, s, "intoClause") != NONE)
        return fail(c, kw_pos(c, "into", 0), "SELECT INTO is not supported in a view");
    if ((x = get(d, s, "distinctClause")) != NONE) {
        size_t at = kw_pos(c, "distinct", 0);
        uint32_t first = count_of(d, x) ? elem(d, x, 0) : NONE;
        if (first != NONE && d->nodes[first].count > 0)
            return fail(c, at, "DISTINCT ON is not supported in a view");
        return fail(c, at, "DISTINCT is not supported in a view: use GROUP BY");
    }
    if (get(d, s, "windowClause") != NONE)
        return fail(c, kw_pos(c, "window", 0), "window functions are not supported in a view (WINDOW clause)");
    if (get(d, s, "lockingClause") != NONE)
        return fail(c, kw_pos(c, "for", 0), "FOR UPDATE/SHARE is not supported in a view");
    if ((x = get(d, s, "limitOffset")) != NONE)
        return fail(c, kw_pos(c, "offset", 0), "OFFSET is not supported in a view");
    if (strcmp(str_of(c, get(d, s, "limitOption")), "LIMIT_OPTION_WITH_TIES") == 0)
        return fail(c, kw_pos(c, "fetch", 0), "FETCH ... WITH TIES is not supported in a view");
    if (count_of(d, get(d, s, "targetList")) == 0)
        return fail(c, kw_pos(c, "select", 0), "a view must select at least one column");
    static const char *const clauses[] = {"targetList", "whereClause", "groupClause", "havingClause", "sortClause",
                                          "limitCount", NULL};   /* FROM: check_from */
    for (int k = 0; clauses[k]; k++)
        if (!walk(c, get(d, s, clauses[k]), refuse_anywhere, NULL))
            return false;
    return true;
}

/* ------------------------------------------------------------------ source */

/* The declared type named like name but for case, or NULL. */
static const ev_schema *case_twin(const payi_spec *spec, const char *name)
{
    for (uint32_t k = 0; k < spec->nevents; k++)
        if (strcasecmp(spec->events[k]->name, name) == 0)
            return spec->events[k];
    return NULL;
}

/* An event type name given in the view (FROM, DELETE ON, event_type = ...):
 * declared, or not declared and no case variant of a declared one. */
static bool check_type_name(vc *c, const char *name, size_t pos, bool delete_on)
{
    if (spec_find_event(c->spec, name, strlen(name)) >= 0)
        return true;
    const ev_schema *twin = case_twin(c->spec, name);
    if (!twin)
        return true;
    if (delete_on)
        return fail_delete(c, "event type \"%s\" is not declared; did you mean \"%s\"? (event type names are case-sensitive)",
                           name, twin->name);
    return fail(c, pos, "event type \"%s\" is not declared; did you mean \"%s\"? (event type names are case-sensitive)",
                name, twin->name);
}

static void add_type(view_def *v, const char *name)
{
    for (uint32_t k = 0; k < v->ntypes; k++)
        if (strcmp(v->types[k], name) == 0)
            return;
    v->types = xrealloc(v->types, (v->ntypes + 1) * sizeof *v->types);
    v->types[v->ntypes++] = xstrdup(name);
}

/* FROM: exactly one event type or `events`. */
static bool check_from(vc *c, char **name, bool *all)
{
    const json_doc *d = &c->d;
    uint32_t from = get(d, c->sel, "fromClause");
    uint32_t n = count_of(d, from);
    if (n == 0)
        return fail(c, kw_pos(c, "select", 0), "a view needs FROM <event type> or FROM events");
    uint32_t it = elem(d, from, 0), b;
    size_t pos = first_loc(c, it, 0);
    if (kind_is(d, it, "JoinExpr", NULL))
        return fail(c, kw_pos(c, "join", pos), "joins are not supported in a view");
    if (kind_is(d, it, "RangeSubselect", NULL))
        return fail(c, open_paren(c, first_loc(c, it, 0)), "subqueries are not supported in a view");
    if (kind_is(d, it, "RangeFunction", NULL))
        return fail(c, pos, "functions in FROM are not supported in a view");
    if (!kind_is(d, it, "RangeVar", &b))
        return fail(c, pos, "FROM must name an event type or events");
    if (n > 1)
        return fail(c, first_loc(c, elem(d, from, 1), pos), "joins are not supported in a view (several FROM items)");
    if (get(d, b, "schemaname") != NONE || get(d, b, "catalogname") != NONE)
        return fail(c, pos, "schema-qualified names are not supported in a view's FROM");
    uint32_t alias = get(d, b, "alias");
    if (alias != NONE && get(d, alias, "colnames") != NONE)
        return fail(c, pos, "column aliases in FROM are not supported in a view");
    const char *rel = str_of(c, get(d, b, "relname"));
    size_t rl = strlen(rel);
    bool quoted = pos < c->len && c->sql[pos] == '"';
    /* libpg_query folds an unquoted name; event type names keep the case they are written in. */
    *name = quoted || pos + rl > c->len ? xstrdup(rel) : xstrndup(c->sql + pos, rl);
    *all = !quoted && strcasecmp(*name, "events") == 0;
    return *all || check_type_name(c, *name, pos, false);
}

/* event_type = 'T' or event_type IN ('T', ...): 1 with the types allowed
 * in tv[0..*tn), 0 when node is no such test, -1 when it names a type wrongly. */
static int type_test(vc *c, uint32_t node, char ***tv, uint32_t *tn)
{
    const json_doc *d = &c->d;
    uint32_t b;
    if (!kind_is(d, node, "A_Expr", &b) || count_of(d, get(d, b, "name")) != 1)
        return 0;
    const char *op = sval_of(c, elem(d, get(d, b, "name"), 0));
    if (!op || strcmp(op, "=") != 0)
        return 0;
    const char *kind = str_of(c, get(d, b, "kind"));
    bool in = strcmp(kind, "AEXPR_IN") == 0;
    if (!in && strcmp(kind, "AEXPR_OP") != 0)
        return 0;
    uint32_t l = get(d, b, "lexpr"), r = get(d, b, "rexpr"), cb;
    if (!in && kind_is(d, r, "ColumnRef", NULL) && kind_is(d, l, "A_Const", NULL)) {   /* 'T' = event_type */
        uint32_t t = l;
        l = r, r = t;
    }
    if (!kind_is(d, l, "ColumnRef", &cb))
        return 0;
    const char *col = colref_name(c, cb);
    if (!col || strcmp(col, "event_type") != 0)
        return 0;
    uint32_t list, nv;
    if (in) {
        if (!kind_is(d, r, "List", &list) || (list = get(d, list, "items")) == NONE)
            return 0;
        nv = count_of(d, list);
    } else {
        list = NONE, nv = 1;
    }
    char **v = xcalloc(nv ? nv : 1, sizeof *v);
    for (uint32_t k = 0; k < nv; k++) {
        uint32_t cn = in ? elem(d, list, k) : r, sv;
        int rc = 1;
        if (!kind_is(d, cn, "A_Const", &cb) || (sv = get(d, get(d, cb, "sval"), "sval")) == NONE)
            rc = 0;
        else if (!check_type_name(c, (v[k] = xstrdup(str_of(c, sv))), first_loc(c, cn, 0), false))
            rc = -1, k++;
        if (rc != 1) {
            for (uint32_t j = 0; j < k; j++)
                free(v[j]);
            free(v);
            return rc;
        }
    }
    *tv = v;
    *tn = nv;
    return 1;
}

/* FROM events: the types its WHERE's top-level AND restricts event_type to. */
static bool type_filter(vc *c)
{
    const json_doc *d = &c->d;
    view_def *v = c->v;
    uint32_t w = get(d, c->sel, "whereClause"), b, args;
    if (w == NONE)
        return true;
    uint32_t n = 1;
    args = NONE;
    if (kind_is(d, w, "BoolExpr", &b) && strcmp(str_of(c, get(d, b, "boolop")), "AND_EXPR") == 0) {
        args = get(d, b, "args");
        n = count_of(d, args);
    }
    bool any = false;
    for (uint32_t k = 0; k < n; k++) {
        char **tv;
        uint32_t tn;
        int t = type_test(c, args == NONE ? w : elem(d, args, k), &tv, &tn);
        if (t < 0)
            return false;
        if (t == 0)
            continue;
        if (!any) {
            for (uint32_t j = 0; j < tn; j++)
                add_type(v, tv[j]);
        } else {   /* a later test narrows: keep the types both allow */
            uint32_t keep = 0;
            for (uint32_t j = 0; j < v->ntypes; j++) {
                bool in = false;
                for (uint32_t m = 0; m < tn && !in; m++)
                    in = strcmp(v->types[j], tv[m]) == 0;
                if (in)
                    v->types[keep++] = v->types[j];
                else
                    free(v->types[j]);
            }
            v->ntypes = keep;
        }
        any = true;
        for (uint32_t j = 0; j < tn; j++)
            free(tv[j]);
        free(tv);
    }
    if (any && v->ntypes == 0)
        return fail(c, first_loc(c, w, 0), "the WHERE clause's event_type conditions exclude every event type");
    return true;
}

/* The declared types read (srcs), whether undeclared ones may be read too,
 * and the text naming them in messages. */
static void resolve_sources(vc *c)
{
    const payi_spec *s = c->spec;
    view_def *v = c->v;
    buf b = BUF_INIT;
    uint32_t n = v->ntypes ? v->ntypes : s->nevents;
    c->srcs = xcalloc(n ? n : 1, sizeof *c->srcs);
    if (v->ntypes == 0) {   /* every event: all declared types plus untyped events */
        for (uint32_t k = 0; k < s->nevents; k++)
            c->srcs[c->nsrcs++] = s->events[k];
        c->untyped = true;
    }
    for (uint32_t k = 0; k < v->ntypes; k++) {
        int e = spec_find_event(s, v->types[k], strlen(v->types[k]));
        if (e >= 0)
            c->srcs[c->nsrcs++] = s->events[e];
        else
            c->untyped = true;
    }
    buf_puts(&b, c->nsrcs > 1 ? "event types " : "event type ");
    for (uint32_t k = 0; k < c->nsrcs && k < 4; k++)
        buf_printf(&b, "%s%s", k ? ", " : "", c->srcs[k]->name);
    if (c->nsrcs > 4)
        buf_puts(&b, ", ...");
    c->src_desc = b.data ? b.data : xstrdup("");
}

/* ------------------------------------------------------------------ fields */

/* Collects the data fields a subtree names; refuses * and qualified names. */
static walk_op collect_colref(vc *c, uint32_t node, uint32_t key, uint32_t body, void *arg)
{
    fieldrefs *f = arg;
    const json_doc *d = &c->d;
    if (!key_is(d, key, "ColumnRef"))
        return W_DESCEND;
    int64_t loc = location(d, body);
    size_t pos = loc >= 0 ? (size_t)loc : first_loc(c, node, 0);
    uint32_t fl = get(d, body, "fields");
    for (uint32_t k = 0; k < count_of(d, fl); k++)
        if (kind_is(d, elem(d, fl, k), "A_Star", NULL))
            return fail(c, pos, "SELECT * is not supported in a view: name the columns"), W_STOP;
    const char *name = colref_name(c, body);
    if (!name)
        return fail(c, pos, "qualified column names are not supported in a view: write the column name alone"), W_STOP;
    for (int k = 0; k < VIEW_NATTRS; k++)
        if (strcmp(name, attr_names[k]) == 0)
            return W_SKIP;
    for (size_t k = 0; k < f->n; k++)
        if (strcmp(f->v[k].name, name) == 0)
            return W_SKIP;
    f->v = xgrow(f->v, &f->cap, f->n + 1, sizeof *f->v);
    f->v[f->n++] = (fieldref){xstrdup(name), pos};
    return W_SKIP;
}

static bool collect_fields(vc *c, uint32_t node, fieldrefs *out)
{
    return walk(c, node, collect_colref, out);
}

static void fieldrefs_release(fieldrefs *f)
{
    for (size_t k = 0; k < f->n; k++)
        free(f->v[k].name);
    free(f->v);
    memset(f, 0, sizeof *f);
}

/* Types the used fields from the declared types in srcs[0..nsrcs) (jsonb
 * when none declares one and untyped events may be read); builds the scope. */
static bool build_scope(vc *c, fieldrefs *used, const ev_schema *const *srcs, uint32_t nsrcs, bool untyped,
                        const char *desc, const char *clause, view_field **fields_out, uint32_t *nfields_out,
                        expr_column **scope_out, uint32_t *nscope_out)
{
    view_field *fields = xcalloc(used->n ? used->n : 1, sizeof *fields);
    uint32_t nf = 0;
    bool ok = true;
    for (size_t k = 0; k < used->n && ok; k++) {
        const char *name = used->v[k].name;
        const ev_schema *from = NULL;
        expr_type t = EXPR_JSONB;
        for (uint32_t s = 0; s < nsrcs && ok; s++) {
            int fi = schema_field_index(srcs[s], name, strlen(name));
            if (fi < 0)
                continue;
            expr_type ft = srcs[s]->fields[fi].type;
            if (from && ft != t)
                ok = fail(c, used->v[k].pos, "%scolumn \"%s\" is %s in event type %s but %s in event type %s: "
                          "a view's column has one type", clause, name, expr_type_name(t), from->name,
                          expr_type_name(ft), srcs[s]->name);
            if (!from)
                from = srcs[s], t = ft;
        }
        if (ok && !from && !untyped)
            ok = fail(c, used->v[k].pos, "%scolumn \"%s\" does not exist in %s", clause, name, desc);
        if (ok)
            fields[nf++] = (view_field){xstrdup(name), t, from != NULL};
    }
    *fields_out = fields;
    *nfields_out = nf;
    if (!ok)
        return false;
    expr_column *scope = xcalloc(VIEW_NATTRS + nf, sizeof *scope);
    for (int k = 0; k < VIEW_NATTRS; k++)
        scope[k] = (expr_column){attr_names[k], attr_types[k]};
    for (uint32_t k = 0; k < nf; k++)
        scope[VIEW_NATTRS + k] = (expr_column){fields[k].name, fields[k].type};
    *scope_out = scope;
    *nscope_out = VIEW_NATTRS + nf;
    return true;
}

/* --------------------------------------------------------------- compiling */

/* Compiles node of doc d over scope; expr's error is re-reported at its
 * file position with the clause named. */
static expr *compile_in(vc *c, const json_doc *d, uint32_t node, const expr_column *cols, uint32_t ncols,
                        const char *clause)
{
    expr_scope scope = {cols, ncols};
    expr *e;
    payi_err ee;
    if (expr_compile_node(d, node, c->sql, c->len, &scope, &e, &ee) == PAYI_OK)
        return e;
    size_t pos;
    if (!expr_error_pos(&ee, &pos))
        pos = d == &c->d ? first_loc(c, node, 0) : 0;
    char *at = strstr(ee.msg, " (at ");
    char *last = at;
    while (at && (at = strstr(at + 1, " (at ")) != NULL)
        last = at;
    if (last)
        *last = 0;
    fail(c, pos, "%s%s", clause, ee.msg);
    return NULL;
}

static expr *compile(vc *c, uint32_t node, const char *clause)
{
    return compile_in(c, &c->d, node, c->v->scope, c->v->nscope, clause);
}

/* A condition (WHERE, FILTER, HAVING) must be boolean. */
static bool need_bool(vc *c, expr *e, size_t pos, const char *what)
{
    if (expr_result_type(e) == EXPR_BOOL)
        return true;
    return fail(c, pos, "argument of %s must be type boolean, not type %s", what,
                expr_type_name(expr_result_type(e)));
}

/* ---------------------------------------------------------------- names */

/* PostgreSQL's FigureColname: 2 for a real name, 1 for a fallback (a type
 * name, "case"), 0 for none ("?column?"). */
static int figure_name(vc *c, uint32_t i, char *out, size_t size)
{
    const json_doc *d = &c->d;
    uint32_t key, b;
    if (!unwrap(d, i, &key, &b))
        return 0;
    if (key_is(d, key, "ColumnRef")) {
        uint32_t f = get(d, b, "fields");
        uint32_t n = count_of(d, f);
        const char *s = n ? sval_of(c, elem(d, f, n - 1)) : NULL;
        if (!s)
            return 0;
        snprintf(out, size, "%s", s);
        return 2;
    }
    if (key_is(d, key, "FuncCall"))
        return last_name(c, get(d, b, "funcname"), out, size) ? 2 : 0;
    if (key_is(d, key, "A_Expr")) {
        if (strcmp(str_of(c, get(d, b, "kind")), "AEXPR_NULLIF") != 0)
            return 0;
        snprintf(out, size, "nullif");
        return 2;
    }
    if (key_is(d, key, "TypeCast")) {
        int s = figure_name(c, get(d, b, "arg"), out, size);
        if (s <= 1 && last_name(c, get(d, get(d, b, "typeName"), "names"), out, size))
            return 1;
        return s;
    }
    if (key_is(d, key, "CollateClause"))
        return figure_name(c, get(d, b, "arg"), out, size);
    if (key_is(d, key, "CaseExpr")) {
        int s = get(d, b, "defresult") != NONE ? figure_name(c, get(d, b, "defresult"), out, size) : 0;
        if (s <= 1) {
            snprintf(out, size, "case");
            return 1;
        }
        return s;
    }
    static const struct { const char *kind, *name; } fixed[] = {
        {"CoalesceExpr", "coalesce"}, {"A_ArrayExpr", "array"}, {"RowExpr", "row"}, {"GroupingFunc", "grouping"}};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
        if (key_is(d, key, fixed[k].kind)) {
            snprintf(out, size, "%s", fixed[k].name);
            return 2;
        }
    if (key_is(d, key, "MinMaxExpr")) {
        snprintf(out, size, "%s", strcmp(str_of(c, get(d, b, "op")), "IS_LEAST") == 0 ? "least" : "greatest");
        return 2;
    }
    return 0;
}

/* ------------------------------------------------------------- SELECT items */

/* Checks the form of an aggregate call (its arguments are compiled later). */
static bool check_agg_call(vc *c, uint32_t body, const char *name, size_t pos)
{
    const json_doc *d = &c->d;
    if (!is_one_of(name, view_aggs))
        return fail(c, pos, "aggregate function %s() is not supported in a view "
                    "(count, sum, min, max, avg, latest, earliest are)", name);
    if (get(d, body, "agg_within_group") != NONE)
        return fail(c, pos, "WITHIN GROUP is not supported in a view (%s)", name);
    if (get(d, body, "agg_order") != NONE)
        return fail(c, pos, "ORDER BY inside an aggregate is not supported in a view (%s)", name);
    if (get(d, body, "func_variadic") != NONE)
        return fail(c, pos, "VARIADIC is not supported in a view (%s)", name);
    bool star = get(d, body, "agg_star") != NONE;
    uint32_t nargs = count_of(d, get(d, body, "args"));
    if (star && strcmp(name, "count") != 0)
        return fail(c, pos, "%s(*) is not supported in a view (only count(*))", name);
    if (get(d, body, "agg_distinct") != NONE && strcmp(name, "count") != 0)
        return fail(c, pos, "DISTINCT is only supported in count(DISTINCT x) in a view (%s)", name);
    if (!star && nargs != 1)
        return fail(c, pos, "%s() takes one argument in a view%s", name,
                    strcmp(name, "count") == 0 ? " (or count(*))" : "");
    agg_find nested = {NULL, AGG_NESTED};
    agg_find filter = {"FILTER", AGG_IN_CLAUSE};
    return walk(c, get(d, body, "args"), refuse_agg, &nested) &&
           walk(c, get(d, body, "agg_filter"), refuse_agg, &filter);
}

/* True for `*` and `t.*`. */
static bool is_star(vc *c, uint32_t node)
{
    uint32_t b, f, n;
    if (!kind_is(&c->d, node, "ColumnRef", &b) || (n = count_of(&c->d, f = get(&c->d, b, "fields"))) == 0)
        return false;
    return kind_is(&c->d, elem(&c->d, f, n - 1), "A_Star", NULL);
}

/* Reads the SELECT list: names, aggregate or not, normalized trees. */
static bool read_items(vc *c)
{
    const json_doc *d = &c->d;
    uint32_t tl = get(d, c->sel, "targetList");
    uint32_t n = count_of(d, tl);
    c->items = xcalloc(n, sizeof *c->items);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t rb, it = elem(d, tl, k), fb;
        item *x = &c->items[c->nitems++];
        x->slot = NONE;
        if (!kind_is(d, it, "ResTarget", &rb) || (x->val = get(d, rb, "val")) == NONE)
            return fail(c, first_loc(c, it, 0), "unexpected parse tree");
        int64_t loc = location(d, rb);
        x->pos = loc >= 0 ? (size_t)loc : first_loc(c, x->val, 0);
        char name[256];
        if (get(d, rb, "name") != NONE) {
            x->name = xstrdup(str_of(c, get(d, rb, "name")));
        } else if (is_star(c, x->val)) {
            return fail(c, x->pos, "SELECT * is not supported in a view: name the columns");
        } else if (figure_name(c, x->val, name, sizeof name) > 0) {
            x->name = xstrdup(name);
        } else {
            return fail(c, x->pos, "column %u of the view has no name: add AS <name>", k + 1);
        }
        x->norm = norm_of(c, x->val);
        char fn[64];
        if (kind_is(d, x->val, "FuncCall", &fb) && is_agg(c, fb, fn, sizeof fn)) {
            x->agg = true;
            if (!check_agg_call(c, fb, fn, x->pos))
                return false;
        } else {
            agg_find over = {NULL, AGG_OVER};
            if (!walk(c, x->val, refuse_agg, &over))
                return false;
        }
    }
    return true;
}

/* ----------------------------------------------------------------- GROUP BY */

static bool is_input_name(vc *c, const char *name)
{
    for (int k = 0; k < VIEW_NATTRS; k++)
        if (strcmp(name, attr_names[k]) == 0)
            return true;
    for (uint32_t s = 0; s < c->nsrcs; s++)
        if (schema_field_index(c->srcs[s], name, strlen(name)) >= 0)
            return true;
    return false;
}

/* The SELECT item a GROUP BY / ORDER BY ordinal or name refers to: *out is
 * its index, or NONE when the node is neither. */
static bool item_ref(vc *c, uint32_t node, const char *clause, bool names_first, uint32_t *out)
{
    const json_doc *d = &c->d;
    uint32_t b;
    *out = NONE;
    size_t pos = first_loc(c, node, 0);
    if (kind_is(d, node, "A_Const", &b)) {
        uint32_t iv = get(d, b, "ival");
        int64_t v;
        if (iv == NONE) {
            if (get(d, b, "isnull") != NONE || get(d, b, "boolval") != NONE || get(d, b, "sval") != NONE ||
                get(d, b, "fval") != NONE)
                return fail(c, pos, "non-integer constant in %s", clause);
            return true;
        }
        if (get(d, iv, "ival") == NONE ? !int_at(c, pos, &v) : !json_get_int64(d, get(d, iv, "ival"), &v))
            return fail(c, pos, "unexpected parse tree");
        if (v < 1 || (uint64_t)v > c->nitems)
            return fail(c, pos, "%s position %lld is not in select list", clause, (long long)v);
        *out = (uint32_t)(v - 1);
        return true;
    }
    const char *name;
    if (!kind_is(d, node, "ColumnRef", &b) || (name = colref_name(c, b)) == NULL)
        return true;
    if (!names_first && is_input_name(c, name))
        return true;
    for (uint32_t k = 0; k < c->nitems; k++) {
        if (strcmp(c->items[k].name, name) != 0)
            continue;
        if (*out != NONE && strcmp(c->items[*out].norm, c->items[k].norm) != 0)
            return fail(c, pos, "%s \"%s\" is ambiguous", clause, name);
        if (*out == NONE)
            *out = k;
    }
    return true;
}

static bool read_groups(vc *c)
{
    const json_doc *d = &c->d;
    uint32_t gl = get(d, c->sel, "groupClause");
    for (uint32_t k = 0; k < count_of(d, gl); k++) {
        uint32_t g = elem(d, gl, k), b, ref;
        size_t pos = first_loc(c, g, 0);
        if (kind_is(d, g, "GroupingSet", &b)) {
            const char *kind = str_of(c, get(d, b, "kind"));
            if (strcmp(kind, "GROUPING_SET_EMPTY") == 0)
                return fail(c, pos, "GROUP BY () is not supported in a view: leave GROUP BY out "
                            "(aggregates without GROUP BY give one row)");
            return fail(c, pos, "GROUPING SETS, ROLLUP and CUBE are not supported in a view");
        }
        if (!item_ref(c, g, "GROUP BY", false, &ref))
            return false;
        if (ref != NONE && c->items[ref].agg)
            return fail(c, pos, "aggregate functions are not allowed in GROUP BY (column %u of the SELECT)", ref + 1);
        uint32_t node = ref != NONE ? c->items[ref].val : g;
        if (ref == NONE && !no_aggs(c, g, "GROUP BY"))
            return false;
        char *norm = norm_of(c, node);
        bool dup = false;
        for (size_t j = 0; j < c->ngroups && !dup; j++)
            dup = strcmp(c->groups[j].norm, norm) == 0;
        if (dup) {   /* GROUP BY a, a groups by a */
            free(norm);
            continue;
        }
        c->groups = xgrow(c->groups, &c->gcap, c->ngroups + 1, sizeof *c->groups);
        c->groups[c->ngroups++] = (group){node, pos, norm};
    }
    return true;
}

/* Grouped: every plain item repeats a GROUP BY expression, every GROUP BY
 * expression is selected (a view's rows are keyed by them).  Runs once the
 * scope is built, so that an item is compiled before it is called ungrouped. */
static bool match_groups(vc *c)
{
    for (uint32_t k = 0; k < c->nitems; k++) {
        item *x = &c->items[k];
        if (x->agg)
            continue;
        for (size_t g = 0; g < c->ngroups && x->slot == NONE; g++)
            if (strcmp(c->groups[g].norm, x->norm) == 0)
                x->slot = (uint32_t)g;
        if (x->slot != NONE)
            continue;
        uint32_t b;
        const char *col = kind_is(&c->d, x->val, "ColumnRef", &b) ? colref_name(c, b) : NULL;
        if (col)
            return fail(c, x->pos, "column \"%s\" must appear in the GROUP BY clause or be used in an aggregate function",
                        col);
        /* A mistake inside the item (a misspelt aggregate is an unknown function) says more. */
        expr *e = compile(c, x->val, "SELECT: ");
        if (!e)
            return false;
        expr_free(e);
        return fail(c, x->pos, "column %u of the view (%s) is neither an aggregate nor a GROUP BY expression: "
                    "group by it as written, or by its name or position", k + 1, x->name);
    }
    for (size_t g = 0; g < c->ngroups; g++) {
        bool selected = false;
        for (uint32_t k = 0; k < c->nitems && !selected; k++)
            selected = !c->items[k].agg && c->items[k].slot == g;
        if (!selected)
            return fail(c, c->groups[g].pos, "GROUP BY expression %zu is not in the SELECT list: select it too "
                        "(a view's rows are keyed by their GROUP BY values)", g + 1);
    }
    return true;
}

/* --------------------------------------------------------- the plan itself */

static const view_agg_kind agg_kinds[] = {VAGG_COUNT, VAGG_SUM, VAGG_MIN, VAGG_MAX, VAGG_AVG, VAGG_LATEST,
                                          VAGG_EARLIEST};

/* The types of an aggregate's argument and result (viewdef.h's rules). */
static bool agg_types(vc *c, view_agg *a, const char *name, uint32_t argnode, size_t pos)
{
    expr_type t = a->arg_type;
    char hint[300] = "";
    uint32_t b;
    const char *col = kind_is(&c->d, argnode, "ColumnRef", &b) ? colref_name(c, b) : NULL;
    switch (a->kind) {
    case VAGG_COUNT_STAR: case VAGG_COUNT: case VAGG_COUNT_DISTINCT:
        a->type = EXPR_BIGINT;
        return true;
    case VAGG_SUM: case VAGG_AVG:
        if (t == EXPR_BIGINT || t == EXPR_DOUBLE) {
            a->type = a->kind == VAGG_AVG ? EXPR_DOUBLE : t;
            return true;
        }
        if (t == EXPR_JSONB)
            snprintf(hint, sizeof hint, ": cast it, e.g. %s(%s::bigint) or %s(%s::double precision)", name,
                     col ? col : "(...)", name, col ? col : "(...)");
        return fail(c, pos, "%s(%s) is not supported in a view%s", name, expr_type_name(t), hint);
    case VAGG_MIN: case VAGG_MAX:
        if (t == EXPR_JSONB)
            snprintf(hint, sizeof hint, ": cast it, e.g. %s(%s::bigint)", name, col ? col : "(...)");
        if (t == EXPR_JSONB || t == EXPR_BOOL)
            return fail(c, pos, "%s(%s) is not supported in a view%s", name, expr_type_name(t), hint);
        a->type = t;
        return true;
    default:
        a->type = t;
        return true;
    }
}

static bool compile_agg(vc *c, item *x, view_agg *a)
{
    const json_doc *d = &c->d;
    uint32_t b;
    char name[64];
    kind_is(d, x->val, "FuncCall", &b);
    is_agg(c, b, name, sizeof name);
    for (int k = 0; view_aggs[k]; k++)
        if (strcmp(view_aggs[k], name) == 0)
            a->kind = agg_kinds[k];
    uint32_t argnode = NONE;
    if (get(d, b, "agg_star") != NONE) {
        a->kind = VAGG_COUNT_STAR;
        a->arg_type = EXPR_BIGINT;
    } else {
        if (a->kind == VAGG_COUNT && get(d, b, "agg_distinct") != NONE)
            a->kind = VAGG_COUNT_DISTINCT;
        argnode = elem(d, get(d, b, "args"), 0);
        char clause[80];
        snprintf(clause, sizeof clause, "%s(): ", name);
        if ((a->arg = compile(c, argnode, clause)) == NULL)
            return false;
        a->arg_type = expr_result_type(a->arg);
    }
    uint32_t f = get(d, b, "agg_filter");
    if (f != NONE && ((a->filter = compile(c, f, "FILTER: ")) == NULL ||
                      !need_bool(c, a->filter, first_loc(c, f, x->pos), "FILTER")))
        return false;
    return agg_types(c, a, name, argnode, x->pos);
}

/* The expressions of the plan, over the scope. */
static bool compile_body(vc *c)
{
    view_def *v = c->v;
    uint32_t w = get(&c->d, c->sel, "whereClause");
    if (w != NONE && ((v->where = compile(c, w, "WHERE: ")) == NULL ||
                      !need_bool(c, v->where, first_loc(c, w, 0), "WHERE")))
        return false;
    if (v->shape == VIEW_ROWS) {
        v->values = xcalloc(c->nitems + 1, sizeof *v->values);
        for (uint32_t k = 0; k < c->nitems; k++, v->nvalues++)
            if ((v->values[k] = compile(c, c->items[k].val, "SELECT: ")) == NULL)
                return false;
        return true;
    }
    v->keys = xcalloc(c->ngroups ? c->ngroups : 1, sizeof *v->keys);
    for (size_t g = 0; g < c->ngroups; g++, v->nkeys++)
        if ((v->keys[g] = compile(c, c->groups[g].node, "GROUP BY: ")) == NULL)
            return false;
    v->aggs = xcalloc(c->nitems, sizeof *v->aggs);
    for (uint32_t k = 0; k < c->nitems; k++) {
        if (!c->items[k].agg)
            continue;
        c->items[k].slot = v->naggs;
        if (!compile_agg(c, &c->items[k], &v->aggs[v->naggs++]))
            return false;
    }
    return true;
}

static bool add_col(vc *c, const char *name, expr_type t, view_col_role role, uint32_t index, bool hidden, size_t pos)
{
    view_def *v = c->v;
    for (uint32_t k = 0; k < v->ncols; k++)
        if (strcmp(v->cols[k].name, name) == 0)
            return fail(c, pos, "column \"%s\" is named twice in the view: name one of them with AS", name);
    v->cols[v->ncols++] = (view_col){xstrdup(name), t, role, index, hidden};
    return true;
}

/* Output columns: the SELECT's, then VIEW_ROWS' hidden event_position. */
static bool build_cols(vc *c)
{
    view_def *v = c->v;
    v->cols = xcalloc(c->nitems + 1, sizeof *v->cols);
    v->position_col = NONE;
    for (uint32_t k = 0; k < c->nitems; k++) {
        item *x = &c->items[k];
        bool ok;
        if (v->shape == VIEW_ROWS) {
            /* The column named event_position is the row key: it must hold the position. */
            if (strcmp(x->name, attr_names[VIEW_ATTR_POSITION]) == 0) {
                uint32_t b;
                const char *col = kind_is(&c->d, x->val, "ColumnRef", &b) ? colref_name(c, b) : NULL;
                if (!col || strcmp(col, attr_names[VIEW_ATTR_POSITION]) != 0)
                    return fail(c, x->pos, "column \"event_position\" is the row key of this view (the event's "
                                "position): give this column another name");
                if (v->position_col == NONE)
                    v->position_col = k;
            }
            ok = add_col(c, x->name, expr_result_type(v->values[k]), VCOL_VALUE, k, false, x->pos);
        } else if (x->agg) {
            ok = add_col(c, x->name, v->aggs[x->slot].type, VCOL_AGG, x->slot, false, x->pos);
        } else {
            ok = add_col(c, x->name, expr_result_type(v->keys[x->slot]), VCOL_KEY, x->slot, false, x->pos);
        }
        if (!ok)
            return false;
    }
    if (v->shape != VIEW_ROWS || v->position_col != NONE)
        return true;
    expr *e;
    expr_scope scope = {v->scope, v->nscope};
    payi_err ee;
    if (expr_parse(attr_names[VIEW_ATTR_POSITION], strlen(attr_names[VIEW_ATTR_POSITION]), &scope, &e, &ee) != PAYI_OK)
        return fail(c, 0, "internal: %s", ee.msg);
    v->values[v->nvalues] = e;
    v->position_col = v->ncols;
    return add_col(c, attr_names[VIEW_ATTR_POSITION], EXPR_BIGINT, VCOL_VALUE, v->nvalues++, true, 0);
}

/* ------------------------------------------------------------------ HAVING */

/* Writes HAVING subtree i as JSON with every subtree that equals a SELECT
 * item replaced by a reference to that item's output column. */
static bool having_write(vc *c, uint32_t i, buf *out)
{
    const json_doc *d = &c->d;
    const json_node *n = &d->nodes[i];
    uint32_t key, body;
    if (unwrap(d, i, &key, &body)) {
        char *norm = norm_of(c, i);
        for (uint32_t k = 0; k < c->nitems; k++)
            if (strcmp(c->items[k].norm, norm) == 0) {
                free(norm);
                buf_puts(out, "{\"ColumnRef\":{\"fields\":[{\"String\":{\"sval\":");
                json_put_string(out, c->items[k].name, strlen(c->items[k].name));
                buf_printf(out, "}}],\"location\":%zu}}", first_loc(c, i, 0));
                return true;
            }
        free(norm);
        char name[64];
        if (key_is(d, key, "FuncCall") && is_agg(c, body, name, sizeof name))
            return fail(c, first_loc(c, i, 0), "HAVING: aggregate %s(...) is not a column of the view: "
                        "select it (AS a name) and use the name in HAVING", name);
    }
    if (n->kind == JSON_ARRAY || n->kind == JSON_OBJECT) {
        bool obj = n->kind == JSON_OBJECT;
        buf_putc(out, obj ? '{' : '[');
        for (uint32_t k = 0, it = i + 1; k < n->count; k++) {
            if (k)
                buf_putc(out, ',');
            if (obj) {
                json_write_compact(d, it, out);
                buf_putc(out, ':');
                it = d->nodes[it].next;
            }
            if (!having_write(c, it, out))
                return false;
            it = d->nodes[it].next;
        }
        buf_putc(out, obj ? '}' : ']');
        return true;
    }
    json_write_compact(d, i, out);
    return true;
}

static bool compile_having(vc *c)
{
    view_def *v = c->v;
    uint32_t h = get(&c->d, c->sel, "havingClause");
    if (h == NONE)
        return true;
    size_t pos = first_loc(c, h, 0);
    if (v->shape != VIEW_GROUPED)
        return fail(c, kw_pos(c, "having", 0), "HAVING needs GROUP BY or an aggregate in a view");
    buf j = BUF_INIT;
    json_doc hd = JSON_DOC_INIT;
    expr_column *cols = xcalloc(v->ncols, sizeof *cols);
    for (uint32_t k = 0; k < v->ncols; k++)
        cols[k] = (expr_column){v->cols[k].name, v->cols[k].type};
    json_limits lim = {.max_depth = MAX_JSON_DEPTH + 8, .max_nodes = MAX_JSON_NODES};
    json_error je;
    bool ok = having_write(c, h, &j);
    if (ok && !json_parse(&hd, j.data, j.len, &lim, &je))
        ok = fail(c, pos, "HAVING: too complex (%s)", je.msg);
    if (ok)
        ok = (v->having = compile_in(c, &hd, 0, cols, v->ncols, "HAVING: ")) != NULL &&
             need_bool(c, v->having, pos, "HAVING");
    json_doc_release(&hd);
    buf_release(&j);
    free(cols);
    return ok;
}

/* ------------------------------------------------------- ORDER BY, LIMIT */

static bool compile_order(vc *c)
{
    const json_doc *d = &c->d;
    view_def *v = c->v;
    uint32_t sl = get(d, c->sel, "sortClause");
    uint32_t n = count_of(d, sl);
    v->order = xcalloc(n ? n : 1, sizeof *v->order);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t b, node, ref, cb;
        if (!kind_is(d, elem(d, sl, k), "SortBy", &b) || (node = get(d, b, "node")) == NONE)
            return fail(c, first_loc(c, elem(d, sl, k), 0), "unexpected parse tree");
        size_t pos = first_loc(c, node, 0);
        const char *dir = str_of(c, get(d, b, "sortby_dir"));
        if (strcmp(dir, "SORTBY_USING") == 0)
            return fail(c, pos, "ORDER BY ... USING is not supported in a view");
        bool desc = strcmp(dir, "SORTBY_DESC") == 0;
        if (strcmp(str_of(c, get(d, b, "sortby_nulls")), "SORTBY_NULLS_DEFAULT") != 0)
            return fail(c, pos, "NULLS FIRST/LAST is not supported in a view's ORDER BY");
        uint32_t col = NONE;
        char name[256] = "";
        const char *cn = kind_is(d, node, "ColumnRef", &cb) ? colref_name(c, cb) : NULL;
        if (cn)
            snprintf(name, sizeof name, "%s", cn);
        if (*name) {   /* output names first, hidden event_position included */
            for (uint32_t j = 0; j < v->ncols; j++) {
                if (strcmp(v->cols[j].name, name) == 0)
                    col = j;
            }
        }
        if (col == NONE) {
            if (!item_ref(c, node, "ORDER BY", true, &ref))
                return false;
            col = ref;
        }
        if (col == NONE) {   /* an expression written as in the SELECT */
            char *norm = norm_of(c, node);
            for (uint32_t j = 0; j < c->nitems && col == NONE; j++)
                if (strcmp(c->items[j].norm, norm) == 0)
                    col = j;
            free(norm);
        }
        if (col == NONE && *name)
            return fail(c, pos, "ORDER BY \"%s\" is not a column of the view", name);
        if (col == NONE)
            return fail(c, pos, "ORDER BY expressions are not supported in a view: "
                        "order by a column of the view (name or position)");
        v->order[v->norder++] = (view_order){col, desc};
    }
    return true;
}

static bool read_limit(vc *c)
{
    const json_doc *d = &c->d;
    uint32_t l = get(d, c->sel, "limitCount"), b, iv;
    c->v->limit = -1;
    if (l == NONE)
        return true;
    size_t pos = first_loc(c, l, kw_pos(c, "limit", 0));
    if (!kind_is(d, l, "A_Const", &b))
        return fail(c, pos, "LIMIT must be a non-negative integer constant in a view");
    if (get(d, b, "isnull") != NONE)   /* LIMIT ALL / LIMIT NULL */
        return true;
    int64_t v;
    uint32_t fv = get(d, get(d, b, "fval"), "fval");
    if (fv != NONE) {   /* an integer beyond int32 is a "float" literal to the parser */
        const char *s = str_of(c, fv);
        char *end;
        long long x = strtoll(s, &end, 10);
        if (*end || !*s || x == LLONG_MAX || x == LLONG_MIN)
            return fail(c, pos, "LIMIT must be a non-negative integer constant in a view");
        if (x < 0)
            return fail(c, pos, "LIMIT must not be negative");
        c->v->limit = x;
        return true;
    }
    if ((iv = get(d, b, "ival")) == NONE)
        return fail(c, pos, "LIMIT must be a non-negative integer constant in a view");
    if (get(d, iv, "ival") == NONE ? !int_at(c, pos, &v) : !json_get_int64(d, get(d, iv, "ival"), &v))
        return fail(c, pos, "unexpected parse tree");
    if (v < 0)
        return fail(c, pos, "LIMIT must not be negative");
    c->v->limit = v;
    return true;
}

/* ---------------------------------------------------------------- DELETE ON */

static bool compile_delete(vc *c)
{
    view_def *v = c->v;
    if (!v->delete_type)
        return true;
    if (v->shape != VIEW_GROUPED || c->ngroups == 0)
        return fail_delete(c, "DELETE ON needs a view with GROUP BY (an event of type %s removes the row of its group)",
                           v->delete_type);
    if (!check_type_name(c, v->delete_type, 0, true))
        return false;
    int e = spec_find_event(c->spec, v->delete_type, strlen(v->delete_type));
    const ev_schema *src = e >= 0 ? c->spec->events[e] : NULL;
    fieldrefs used = {0};
    bool ok = true;
    for (size_t g = 0; g < c->ngroups && ok; g++)
        ok = collect_fields(c, c->groups[g].node, &used);
    char desc[300], clause[300];
    snprintf(desc, sizeof desc, "event type %s", v->delete_type);
    snprintf(clause, sizeof clause, "DELETE ON %s: ", v->delete_type);
    if (ok)
        ok = build_scope(c, &used, src ? &src : NULL, src ? 1 : 0, src == NULL, desc, clause, &v->delete_fields,
                         &v->ndelete_fields, &v->delete_scope, &v->ndelete_scope);
    fieldrefs_release(&used);
    if (!ok)
        return false;
    v->delete_keys = xcalloc(c->ngroups, sizeof *v->delete_keys);
    for (size_t g = 0; g < c->ngroups; g++) {
        expr *k = compile_in(c, &c->d, c->groups[g].node, v->delete_scope, v->ndelete_scope, clause);
        if (!k)
            return false;
        v->delete_keys[g] = k;
        expr_type want = expr_result_type(v->keys[g]), got = expr_result_type(k);
        if (want != got)
            return fail(c, c->groups[g].pos, "%sGROUP BY expression %zu is %s in the view but %s over %s%s", clause,
                        g + 1, expr_type_name(want), expr_type_name(got), v->delete_type,
                        src ? "" : " (its fields are jsonb: declare the event type)");
    }
    return true;
}

/* -------------------------------------------------------------------- hash */


/* The normalized SELECT, the source and delete types, and the schemas of
 * the declared types read: what the stored table's content depends on. */
static void compute_hash(vc *c)
{
    view_def *v = c->v;
    buf b = BUF_INIT;
    norm_write(c, c->sel, false, &b);
    buf_printf(&b, "%cfrom:%s", 0, v->from_events ? "events" : "");
    for (uint32_t k = 0; k < v->ntypes; k++)
        buf_printf(&b, "%c%s", 0, v->types[k]);
    buf_printf(&b, "%cdelete:%s", 0, v->delete_type ? v->delete_type : "");
    for (uint32_t k = 0; k < c->nsrcs; k++) {
        buf_putc(&b, 0);
        schema_to_json(c->srcs[k], &b);
    }
    int e = v->delete_type ? spec_find_event(c->spec, v->delete_type, strlen(v->delete_type)) : -1;
    if (e >= 0) {
        buf_putc(&b, 0);
        schema_to_json(c->spec->events[e], &b);
    }
    v->hash = hash_fnv1a(b.data, b.len, HASH_FNV_SEED);
    buf_release(&b);
}

/* -------------------------------------------------------------------- main */

/* pg_query_parse's cursor (1-based, in characters) as a byte offset. */
static size_t cursor_offset(const char *s, size_t len, int cursor)
{
    size_t i = 0;
    for (int ch = 1; ch < cursor && i < len; ch++) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

/* Parses the SELECT and finds its SelectStmt. */
static bool parse_select(vc *c, PgQueryParseResult *r)
{
    size_t bad;
    if (c->len > MAX_SQL_BYTES)
        return fail(c, 0, "the view's SELECT is longer than %u bytes", MAX_SQL_BYTES);
    if (!json_utf8_valid(c->sql, c->len, &bad))
        return fail(c, bad, "invalid UTF-8 in the view");
    *r = pg_query_parse(c->sql);
    if (r->error)
        return fail(c, r->error->cursorpos > 0 ? cursor_offset(c->sql, c->len, r->error->cursorpos) : c->len, "%s",
                    r->error->message ? r->error->message : "syntax error");
    json_error je;
    json_limits lim = {.max_depth = MAX_JSON_DEPTH, .max_nodes = MAX_JSON_NODES};
    if (!r->parse_tree || !json_parse(&c->d, r->parse_tree, strlen(r->parse_tree), &lim, &je))
        return fail(c, 0, "the view's SELECT is too complex (%s)", r->parse_tree ? je.msg : "no parse tree");
    const json_doc *d = &c->d;
    uint32_t stmts = get(d, 0, "stmts"), k, b;
    if (count_of(d, stmts) == 0)
        return fail(c, 0, "expected a SELECT");
    if (count_of(d, stmts) > 1) {
        int64_t loc = 0;
        uint32_t l = get(d, elem(d, stmts, 1), "stmt_location");
        if (l == NONE || !json_get_int64(d, l, &loc) || loc < 1)
            loc = 1;
        return fail(c, (size_t)loc - 1, "a view is one SELECT (found ';')");
    }
    uint32_t stmt = get(d, elem(d, stmts, 0), "stmt");
    if (!unwrap(d, stmt, &k, &b))
        return fail(c, 0, "expected a SELECT");
    if (!key_is(d, k, "SelectStmt")) {   /* "InsertStmt" -> INSERT */
        const json_node *kn = &d->nodes[k];
        char what[64];
        size_t n = 0;
        for (uint32_t j = 1; j + 1 < kn->len && n + 1 < sizeof what; j++)
            what[n++] = (char)toupper((unsigned char)d->src[kn->start + j]);
        what[n] = 0;
        if (n > 4 && strcmp(what + n - 4, "STMT") == 0)
            what[n - 4] = 0;
        return fail(c, 0, "a view must be a SELECT (found %s)", what);
    }
    c->sel = b;
    return true;
}

static bool compile_steps(vc *c, PgQueryParseResult *r)
{
    view_def *v = c->v;
    char *src = NULL;
    bool all = false;
    if (!parse_select(c, r) || !check_statement(c) || !check_from(c, &src, &all))
        return free(src), false;
    v->from_events = all;
    if (!all)
        add_type(v, src);
    free(src);
    if (all && !type_filter(c))
        return false;
    resolve_sources(c);
    if (!read_items(c) || !no_aggs(c, get(&c->d, c->sel, "whereClause"), "WHERE") || !read_groups(c))
        return false;
    bool any_agg = false;
    for (uint32_t k = 0; k < c->nitems; k++)
        any_agg |= c->items[k].agg;
    v->shape = any_agg || c->ngroups ? VIEW_GROUPED : VIEW_ROWS;
    fieldrefs used = {0};
    bool ok = true;
    for (uint32_t k = 0; k < c->nitems && ok; k++)
        ok = collect_fields(c, c->items[k].val, &used);
    if (ok)
        ok = collect_fields(c, get(&c->d, c->sel, "whereClause"), &used);
    for (size_t g = 0; g < c->ngroups && ok; g++)
        ok = collect_fields(c, c->groups[g].node, &used);
    if (ok)
        ok = build_scope(c, &used, c->srcs, c->nsrcs, c->untyped, c->src_desc, "", &v->fields, &v->nfields,
                         &v->scope, &v->nscope);
    fieldrefs_release(&used);
    return ok && (v->shape != VIEW_GROUPED || match_groups(c)) && compile_body(c) && build_cols(c) && compile_having(c) && compile_order(c) && read_limit(c) &&
           compile_delete(c);
}

static payi_code compile_view(const payi_spec *spec, const char *name, const char *delete_type, uint32_t dline,
                              uint32_t dcol, const char *sql, const char *file, uint32_t line, uint32_t col,
                              view_def **out, payi_err *err)
{
    *out = NULL;
    view_def *v = xcalloc(1, sizeof *v);
    v->name = xstrdup(name);
    v->sql = xstrdup(sql);
    v->file = xstrdup(file);
    v->line = line;
    v->col = col;
    v->limit = -1;
    v->position_col = NONE;
    v->delete_type = delete_type ? xstrdup(delete_type) : NULL;
    vc c = {.spec = spec, .sql = v->sql, .len = strlen(sql), .file = file, .line = line, .col = col,
            .dline = dline, .dcol = dcol, .err = err, .d = JSON_DOC_INIT, .v = v, .sb = BUF_INIT};
    PgQueryParseResult r = {0};
    bool ok = compile_steps(&c, &r);
    if (ok)
        compute_hash(&c);
    for (size_t k = 0; k < c.nitems; k++) {
        free(c.items[k].name);
        free(c.items[k].norm);
    }
    free(c.items);
    for (size_t k = 0; k < c.ngroups; k++)
        free(c.groups[k].norm);
    free(c.groups);
    free(c.srcs);
    free(c.src_desc);
    buf_release(&c.sb);
    json_doc_release(&c.d);
    pg_query_free_parse_result(r);
    if (!ok) {
        view_def_free(v);
        return PAYI_VALIDATION;
    }
    *out = v;
    return PAYI_OK;
}

payi_code view_def_compile(const payi_spec *spec, uint32_t i, view_def **out, payi_err *err)
{
    *out = NULL;
    if (i >= spec->nviews)
        return payi_err_set(err, PAYI_NOT_FOUND, NULL, "no view %u in the spec", i);
    const spec_view *sv = &spec->views[i];
    return compile_view(spec, sv->name, sv->delete_type, sv->delete_line, sv->delete_col, sv->sql, spec->file,
                        sv->line, sv->col, out, err);
}

payi_code view_def_compile_sql(const payi_spec *spec, const char *name, const char *delete_type, const char *sql,
                               const char *file, uint32_t line, uint32_t col, view_def **out, payi_err *err)
{
    return compile_view(spec, name, delete_type, line, col, sql, file, line, col, out, err);
}

static void free_fields(view_field *f, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        free(f[k].name);
    free(f);
}

void view_def_free(view_def *v)
{
    if (!v)
        return;
    free(v->name);
    free(v->sql);
    free(v->file);
    for (uint32_t k = 0; k < v->ntypes; k++)
        free(v->types[k]);
    free(v->types);
    free(v->scope);
    free_fields(v->fields, v->nfields);
    expr_free(v->where);
    for (uint32_t k = 0; k < v->nkeys; k++)
        expr_free(v->keys[k]);
    free(v->keys);
    for (uint32_t k = 0; k < v->naggs; k++) {
        expr_free(v->aggs[k].arg);
        expr_free(v->aggs[k].filter);
    }
    free(v->aggs);
    for (uint32_t k = 0; k < v->nvalues; k++)
        expr_free(v->values[k]);
    free(v->values);
    for (uint32_t k = 0; k < v->ncols; k++)
        free(v->cols[k].name);
    free(v->cols);
    expr_free(v->having);
    free(v->order);
    free(v->delete_type);
    if (v->delete_keys)
        for (uint32_t k = 0; k < v->nkeys; k++)
            expr_free(v->delete_keys[k]);
    free(v->delete_keys);
    free(v->delete_scope);
    free_fields(v->delete_fields, v->ndelete_fields);
    free(v);
}

static bool name_is(const char *a, const char *b, uint32_t blen) { return strlen(a) == blen && memcmp(a, b, blen) == 0; }

bool view_def_reads(const view_def *v, const char *type, uint32_t type_len)
{
    if (v->ntypes == 0)
        return true;
    for (uint32_t k = 0; k < v->ntypes; k++)
        if (name_is(v->types[k], type, type_len))
            return true;
    return false;
}

bool view_def_deletes(const view_def *v, const char *type, uint32_t type_len)
{
    return v->delete_type && name_is(v->delete_type, type, type_len);
}
