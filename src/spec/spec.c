/* spec.c — parse and compile the application spec (the language is in spec.h).
 *
 * Two passes over the text.  The lexer cuts the whole file into tokens (with
 * byte offsets, so that any token can be named as file:line:col); the parser
 * walks the tokens statement by statement.  Expressions are not parsed here:
 * the parser only finds where one ends (at parenthesis depth 0, at a ',' ')'
 * ';' or at a keyword that may follow it) and hands that span of the source
 * to expr_parse, which reports faults as byte offsets into the span; adding
 * the span's offset gives the position in the file.
 *
 * Invariants:
 *   1. Names are declared before use (an aggregate's ON names events above
 *      it; a command's FOR names an aggregate above it), so one pass
 *      resolves everything and the first error is the one reported.
 *   2. A compiled spec is consistent: every index in it is in range, every
 *      expression's columns are the slots its evaluator passes, every value
 *      assigned to a field has the field's type (or bigint into double).
 */
#include "spec/spec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/mem.h"

#define MAX_SPEC_BYTES (16u << 20)

/* ------------------------------------------------------------------ lexer */

typedef enum { T_EOF, T_IDENT, T_QIDENT, T_STRING, T_NUMBER, T_DOLLAR, T_PUNCT, T_OP } tok_kind;

typedef struct tok {
    tok_kind kind;
    uint32_t start, len;      /* the token's bytes in the source */
} tok;

typedef struct parser {
    const char *file;
    const char *src;
    size_t len;
    uint32_t *lines;          /* offset of the first byte of each line */
    size_t nlines;
    tok *t;
    size_t nt, cap, i;
    payi_spec *spec;
    payi_err *err;
} parser;

static void index_lines(parser *p)
{
    size_t cap = 0;
    p->lines = xgrow(NULL, &cap, 1, sizeof *p->lines);
    p->lines[p->nlines++] = 0;
    for (size_t k = 0; k < p->len; k++)
        if (p->src[k] == '\n') {
            p->lines = xgrow(p->lines, &cap, p->nlines + 1, sizeof *p->lines);
            p->lines[p->nlines++] = (uint32_t)(k + 1);
        }
}

static void line_col(const parser *p, size_t off, uint32_t *line, uint32_t *col)
{
    size_t lo = 0, hi = p->nlines;   /* the last line start <= off */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->lines[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    *line = (uint32_t)lo + 1;
    *col = (uint32_t)(off - p->lines[lo]) + 1;
}

static payi_code fail_at(parser *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static payi_code fail_at(parser *p, size_t off, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    uint32_t line, col;
    line_col(p, off, &line, &col);
    return payi_err_set(p->err, PAYI_VALIDATION, NULL, "%s:%u:%u: %s", p->file, line, col, msg);
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_ident_start(unsigned char c) { return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z') || c >= 0x80; }
static bool is_ident_char(unsigned char c) { return is_ident_start(c) || is_digit(c) || c == '$'; }
static bool is_op_char(unsigned char c) { return c && strchr("+-*/<>=~!@#%^&|`?:", c) != NULL; }

static void push_tok(parser *p, tok_kind k, size_t start, size_t end)
{
    p->t = xgrow(p->t, &p->cap, p->nt + 1, sizeof *p->t);
    p->t[p->nt++] = (tok){k, (uint32_t)start, (uint32_t)(end - start)};
}

/* $tag$ at s[k]: the length of the delimiter, or 0 when this is no dollar quote */
static size_t dollar_delim(const char *s, size_t len, size_t k)
{
    size_t j = k + 1;
    if (j < len && s[j] != '$') {
        if (!is_ident_start((unsigned char)s[j]) || s[j] == '$')
            return 0;
        while (j < len && s[j] != '$' && is_ident_char((unsigned char)s[j]))
            j++;
    }
    return j < len && s[j] == '$' ? j + 1 - k : 0;
}

static size_t skip_comment(parser *p, size_t k, bool *bad)
{
    const char *s = p->src;
    if (s[k] == '-') {
        while (k < p->len && s[k] != '\n')
            k++;
        return k;
    }
    size_t depth = 0;   /* block comments nest, as in PostgreSQL */
    for (; k + 1 < p->len; k++) {
        if (s[k] == '/' && s[k + 1] == '*')
            depth++, k++;
        else if (s[k] == '*' && s[k + 1] == '/' && --depth == 0)
            return k + 2;
    }
    *bad = true;
    return p->len;
}

static size_t lex_quoted(parser *p, size_t k, char q, bool *bad)
{
    for (size_t j = k + 1; j < p->len; j++)
        if (p->src[j] == q) {
            if (j + 1 < p->len && p->src[j + 1] == q) {   /* doubled: one quote inside */
                j++;
                continue;
            }
            return j + 1;
        }
    *bad = true;
    return p->len;
}

static payi_code lex(parser *p)
{
    const char *s = p->src;
    size_t k = 0;
    while (k < p->len) {
        unsigned char c = (unsigned char)s[k];
        size_t start = k;
        bool bad = false;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            k++;
        } else if ((c == '-' && k + 1 < p->len && s[k + 1] == '-') || (c == '/' && k + 1 < p->len && s[k + 1] == '*')) {
            k = skip_comment(p, k, &bad);
            if (bad)
                return fail_at(p, start, "unterminated /* comment");
        } else if (c == '\'') {
            k = lex_quoted(p, k, '\'', &bad);
            if (bad)
                return fail_at(p, start, "unterminated string literal");
            push_tok(p, T_STRING, start, k);
        } else if (c == '"') {
            k = lex_quoted(p, k, '"', &bad);
            if (bad)
                return fail_at(p, start, "unterminated quoted identifier");
            if (k - start == 2)
                return fail_at(p, start, "zero-length quoted identifier");
            push_tok(p, T_QIDENT, start, k);
        } else if (c == '$' && dollar_delim(s, p->len, k)) {
            size_t dl = dollar_delim(s, p->len, k);
            const char *end = memmem(s + k + dl, p->len - k - dl, s + k, dl);
            if (!end)
                return fail_at(p, start, "unterminated dollar-quoted string %.*s", (int)dl, s + k);
            k = (size_t)(end - s) + dl;
            push_tok(p, T_DOLLAR, start, k);
        } else if (is_ident_start(c)) {
            while (k < p->len && is_ident_char((unsigned char)s[k]))
                k++;
            push_tok(p, T_IDENT, start, k);
        } else if (is_digit(c) || (c == '.' && k + 1 < p->len && is_digit((unsigned char)s[k + 1]))) {
            while (k < p->len && (is_ident_char((unsigned char)s[k]) || s[k] == '.' ||
                                  ((s[k] == '+' || s[k] == '-') && (s[k - 1] | 32) == 'e')))
                k++;
            push_tok(p, T_NUMBER, start, k);
        } else if (strchr("(),;[].", c)) {
            push_tok(p, T_PUNCT, k, k + 1);
            k++;
        } else if (is_op_char(c)) {
            while (k < p->len && is_op_char((unsigned char)s[k]) &&
                   !(s[k] == '-' && k + 1 < p->len && s[k + 1] == '-') &&
                   !(s[k] == '/' && k + 1 < p->len && s[k + 1] == '*'))
                k++;
            push_tok(p, T_OP, start, k);
        } else {
            return fail_at(p, start, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
        }
    }
    push_tok(p, T_EOF, p->len, p->len);
    return PAYI_OK;
}

/* ---------------------------------------------------------- token helpers */

static const tok *cur(const parser *p) { return &p->t[p->i]; }
static size_t cur_off(const parser *p) { return cur(p)->start; }

static bool tok_is_kw(const parser *p, const tok *t, const char *kw)
{
    return t->kind == T_IDENT && strlen(kw) == t->len && strncasecmp(p->src + t->start, kw, t->len) == 0;
}
static bool at_kw(const parser *p, const char *kw) { return tok_is_kw(p, cur(p), kw); }
static bool at_punct(const parser *p, char c)
{
    return cur(p)->kind == T_PUNCT && p->src[cur(p)->start] == c;
}

static bool take_kw(parser *p, const char *kw)
{
    if (!at_kw(p, kw))
        return false;
    p->i++;
    return true;
}

static const char *tok_desc(const parser *p, const tok *t, char *out, size_t size)
{
    if (t->kind == T_EOF)
        snprintf(out, size, "end of file");
    else
        snprintf(out, size, "\"%.*s\"", (int)(t->len > 40 ? 40 : t->len), p->src + t->start);
    return out;
}

static payi_code expect_kw(parser *p, const char *kw, const char *context)
{
    if (take_kw(p, kw))
        return PAYI_OK;
    char d[64], up[32];   /* keywords are written in upper case in messages, as in the docs */
    size_t n = 0;
    for (; kw[n] && n + 1 < sizeof up; n++)
        up[n] = kw[n] >= 'a' && kw[n] <= 'z' ? (char)(kw[n] - 32) : kw[n];
    up[n] = '\0';
    return fail_at(p, cur_off(p), "expected %s %s, found %s", up, context, tok_desc(p, cur(p), d, sizeof d));
}

static payi_code expect_punct(parser *p, char c, const char *context)
{
    if (at_punct(p, c)) {
        p->i++;
        return PAYI_OK;
    }
    char d[64];
    return fail_at(p, cur_off(p), "expected '%c' %s, found %s", c, context, tok_desc(p, cur(p), d, sizeof d));
}

/* A name: an identifier (folded to lower case when fold) or a "quoted" one (as written). */
static payi_code take_name(parser *p, bool fold, const char *what, char **out, size_t *off)
{
    const tok *t = cur(p);
    char d[64];
    if (t->kind != T_IDENT && t->kind != T_QIDENT)
        return fail_at(p, t->start, "expected %s, found %s", what, tok_desc(p, t, d, sizeof d));
    if (t->len > 255)
        return fail_at(p, t->start, "%s is longer than 255 bytes", what);
    *off = t->start;
    if (t->kind == T_QIDENT) {
        buf b = BUF_INIT;
        for (uint32_t k = 1; k + 1 < t->len; k++) {
            char c = p->src[t->start + k];
            buf_putc(&b, c);
            if (c == '"')
                k++;   /* "" inside stands for one " */
        }
        *out = b.data;
    } else {
        *out = xstrndup(p->src + t->start, t->len);
        for (char *c = *out; fold && *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c + 32);
    }
    p->i++;
    return PAYI_OK;
}

/* The value of a 'string' token, quotes undone. */
static char *string_value(const parser *p, const tok *t)
{
    buf b = BUF_INIT;
    for (uint32_t k = 1; k + 1 < t->len; k++) {
        char c = p->src[t->start + k];
        buf_putc(&b, c);
        if (c == '\'')
            k++;
    }
    if (!b.data)
        buf_reserve(&b, 0);
    return b.data;
}

/* ------------------------------------------------------------ expressions */

typedef struct span {
    size_t start, end;     /* source bytes [start, end) */
} span;

/* Scan an expression from the current token up to (not including) a
 * terminator at depth 0: ',' ')' ';' or one of the keywords in stops
 * (NULL-terminated).  Parenthesis depth is tracked, so keywords inside
 * parentheses do not end it. */
static payi_code expr_span(parser *p, const char *const *stops, const char *what, span *out)
{
    int depth = 0;
    size_t first = p->i;
    for (;; p->i++) {
        const tok *t = cur(p);
        if (t->kind == T_EOF)
            break;
        if (t->kind == T_PUNCT) {
            char c = p->src[t->start];
            if (c == '(' || c == '[')
                depth++;
            else if (c == ')' || c == ']') {
                if (depth == 0)
                    break;
                depth--;
            } else if (depth == 0 && (c == ',' || c == ';'))
                break;
        }
        if (depth == 0 && t->kind == T_IDENT) {
            bool stop = false;
            for (const char *const *k = stops; *k && !stop; k++)
                stop = tok_is_kw(p, t, *k);
            if (stop)
                break;
        }
    }
    if (p->i == first) {
        char d[64];
        return fail_at(p, cur_off(p), "expected %s, found %s", what, tok_desc(p, cur(p), d, sizeof d));
    }
    if (depth != 0)
        return fail_at(p, p->t[first].start, "unbalanced parentheses in %s", what);
    out->start = p->t[first].start;
    out->end = p->t[p->i - 1].start + p->t[p->i - 1].len;
    return PAYI_OK;
}

/* Compile the span; map expr's " (at N)" to file:line:col and prefix the
 * context ("CHECK", "REJECT IF" ...). */
static payi_code map_expr_error(parser *p, span sp, const payi_err *e, const char *context)
{
    size_t at = 0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", e->msg);
    if (expr_error_pos(e, &at)) {
        char *suffix = strstr(msg, " (at ");
        char *last = suffix;
        while (last && (last = strstr(last + 1, " (at ")))
            suffix = last;
        if (suffix)
            *suffix = 0;
    } else {
        at = 0;
    }
    if (at > sp.end - sp.start)
        at = 0;
    return fail_at(p, sp.start + at, "%s: %s", context, msg);
}

static payi_code compile_span(parser *p, span sp, const expr_scope *scope, const char *context, expr **out)
{
    payi_err e;
    if (expr_parse(p->src + sp.start, sp.end - sp.start, scope, out, &e) != PAYI_OK)
        return map_expr_error(p, sp, &e, context);
    return PAYI_OK;
}

static bool assignable(expr_type value, expr_type field)
{
    return value == field || (value == EXPR_BIGINT && field == EXPR_DOUBLE);
}

/* -------------------------------------------------------------- field lists */

typedef struct pending_check {
    char *field;     /* NULL: a table CHECK */
    span sp;
} pending_check;

static bool parse_type(parser *p, expr_type *out)
{
    static const struct { const char *name; expr_type t; } one[] = {
        {"text", EXPR_TEXT},       {"varchar", EXPR_TEXT}, {"bigint", EXPR_BIGINT}, {"int8", EXPR_BIGINT},
        {"integer", EXPR_BIGINT},  {"int", EXPR_BIGINT},   {"int4", EXPR_BIGINT},   {"float8", EXPR_DOUBLE},
        {"boolean", EXPR_BOOL},    {"bool", EXPR_BOOL},    {"date", EXPR_DATE},     {"timestamptz", EXPR_TIMESTAMPTZ},
        {"jsonb", EXPR_JSONB},
    };
    if (take_kw(p, "double")) {
        if (!take_kw(p, "precision")) {
            p->i--;   /* the error names "double", not the token after it */
            return false;
        }
        *out = EXPR_DOUBLE;
        return true;
    }
    if (at_kw(p, "timestamp")) {
        size_t save = p->i++;
        if (take_kw(p, "with") && take_kw(p, "time") && take_kw(p, "zone")) {
            *out = EXPR_TIMESTAMPTZ;
            return true;
        }
        p->i = save;
        return false;
    }
    for (size_t k = 0; k < sizeof one / sizeof one[0]; k++)
        if (take_kw(p, one[k].name)) {
            *out = one[k].t;
            return true;
        }
    return false;
}

typedef enum { LIST_RECORD, LIST_STATE } list_kind;

static const char *const default_stops[] = {"not", "null", "check", "default", "primary", "unique", "references", NULL};

static payi_code parse_check_clause(parser *p, const char *field, pending_check **checks, size_t *n, size_t *cap)
{
    payi_code rc = expect_punct(p, '(', "after CHECK");
    static const char *const none[] = {NULL};
    span sp;
    if (rc == PAYI_OK)
        rc = expr_span(p, none, "a CHECK expression", &sp);
    if (rc == PAYI_OK)
        rc = expect_punct(p, ')', "to close CHECK (");
    if (rc != PAYI_OK)
        return rc;
    *checks = xgrow(*checks, cap, *n + 1, sizeof **checks);
    (*checks)[(*n)++] = (pending_check){field ? xstrdup(field) : NULL, sp};
    return PAYI_OK;
}

/* name type [NOT NULL | NULL | DEFAULT expr | CHECK (expr)]... */
static payi_code parse_field(parser *p, ev_schema *s, list_kind kind, pending_check **checks, size_t *nchecks,
                             size_t *ccap)
{
    char *name = NULL;
    size_t name_off;
    payi_code rc = take_name(p, true, "a field name", &name, &name_off);
    if (rc != PAYI_OK)
        return rc;
    expr_type type;
    size_t type_off = cur_off(p);
    if (!parse_type(p, &type)) {
        char d[64];
        rc = fail_at(p, type_off,
                     "field \"%s\": expected a type (text, bigint, double precision, boolean, date, timestamptz, "
                     "jsonb), found %s",
                     name, tok_desc(p, &p->t[p->i], d, sizeof d));
        free(name);
        return rc;
    }
    bool not_null = false, has_default = false;
    span def = {0, 0};
    while (rc == PAYI_OK && !at_punct(p, ',') && !at_punct(p, ')')) {
        size_t off = cur_off(p);
        if (take_kw(p, "not")) {
            rc = expect_kw(p, "null", "after NOT");
            not_null = true;
            if (rc == PAYI_OK && kind == LIST_STATE)
                rc = fail_at(p, off, "field \"%s\": NOT NULL is not allowed on aggregate state (give a DEFAULT)",
                             name);
        } else if (take_kw(p, "null")) {
            not_null = false;
        } else if (take_kw(p, "default")) {
            if (has_default)
                rc = fail_at(p, off, "field \"%s\" has two DEFAULTs", name);
            else
                rc = expr_span(p, default_stops, "a DEFAULT expression", &def);
            has_default = true;
        } else if (take_kw(p, "check")) {
            if (kind == LIST_STATE)
                rc = fail_at(p, off, "field \"%s\": CHECK is not allowed on aggregate state", name);
            else
                rc = parse_check_clause(p, name, checks, nchecks, ccap);
        } else {
            char d[64];
            rc = fail_at(p, off, "field \"%s\": expected NOT NULL, NULL, DEFAULT, CHECK, ',' or ')', found %s", name,
                         tok_desc(p, cur(p), d, sizeof d));
        }
    }
    if (rc == PAYI_OK) {
        payi_err e;
        const char *dsql = has_default ? p->src + def.start : NULL;
        size_t dlen = has_default ? def.end - def.start : 0;
        if (schema_add_field(s, name, strlen(name), type, not_null, dsql, dlen, &e) != PAYI_OK) {
            size_t at;
            if (has_default && expr_error_pos(&e, &at))
                rc = map_expr_error(p, def, &e, "DEFAULT");
            else
                rc = fail_at(p, name_off, "%s", e.msg);
        }
    }
    free(name);
    return rc;
}

/* '(' item, ... ')' into s; checks are compiled once every field is known */
static payi_code parse_field_list(parser *p, ev_schema *s, list_kind kind)
{
    payi_code rc = expect_punct(p, '(', "to open the field list");
    pending_check *checks = NULL;
    size_t nchecks = 0, ccap = 0;
    bool empty_ok = kind == LIST_STATE;
    if (rc == PAYI_OK && at_punct(p, ')') && !empty_ok)
        rc = fail_at(p, cur_off(p), "%s has no fields", s->name);
    while (rc == PAYI_OK && !at_punct(p, ')')) {
        size_t off = cur_off(p);
        if (take_kw(p, "check")) {
            rc = kind == LIST_STATE ? fail_at(p, off, "CHECK is not allowed on aggregate state")
                                    : parse_check_clause(p, NULL, &checks, &nchecks, &ccap);
        } else {
            rc = parse_field(p, s, kind, &checks, &nchecks, &ccap);
        }
        if (rc == PAYI_OK && !at_punct(p, ')'))
            rc = expect_punct(p, ',', "between fields");
        if (rc == PAYI_OK && at_punct(p, ')') && p->t[p->i - 1].kind == T_PUNCT && p->src[p->t[p->i - 1].start] == ',')
            rc = fail_at(p, cur_off(p), "expected a field after ','");
    }
    if (rc == PAYI_OK)
        rc = expect_punct(p, ')', "to close the field list");
    for (size_t k = 0; k < nchecks; k++) {
        payi_err e;
        if (rc == PAYI_OK && schema_add_check(s, checks[k].field, p->src + checks[k].sp.start,
                                              checks[k].sp.end - checks[k].sp.start, &e) != PAYI_OK)
            rc = map_expr_error(p, checks[k].sp, &e, "CHECK");
        free(checks[k].field);
    }
    free(checks);
    return rc;
}

/* ---------------------------------------------------------------- statements */

static bool name_taken(const payi_spec *sp, const char *name)
{
    return spec_find_event(sp, name, strlen(name)) >= 0 || spec_find_command(sp, name, strlen(name)) >= 0 ||
           spec_find_aggregate(sp, name, strlen(name)) >= 0;
}

static payi_code take_object_name(parser *p, const char *what, char **name, size_t *off)
{
    payi_code rc = take_name(p, false, what, name, off);
    if (rc == PAYI_OK && name_taken(p->spec, *name)) {
        rc = fail_at(p, *off, "\"%s\" is declared twice", *name);
        free(*name);
        *name = NULL;
    }
    return rc;
}

static payi_code end_statement(parser *p, const char *what)
{
    if (at_punct(p, ';')) {
        p->i++;
        return PAYI_OK;
    }
    char d[64];
    return fail_at(p, cur_off(p), "expected ';' to end %s, found %s", what, tok_desc(p, cur(p), d, sizeof d));
}

static payi_code parse_event(parser *p)
{
    char *name;
    size_t off;
    payi_code rc = take_object_name(p, "an event type name", &name, &off);
    if (rc != PAYI_OK)
        return rc;
    ev_schema *s = schema_new(name, strlen(name));
    free(name);
    rc = parse_field_list(p, s, LIST_RECORD);
    if (rc == PAYI_OK)
        rc = end_statement(p, "CREATE EVENT");
    if (rc != PAYI_OK) {
        schema_free(s);
        return rc;
    }
    payi_spec *sp = p->spec;
    sp->events = xrealloc(sp->events, (sp->nevents + 1) * sizeof *sp->events);
    sp->events[sp->nevents++] = s;
    return PAYI_OK;
}

/* columns: the fields of `fields`, then "state.<f>" for every state field */
static expr_column *scope_with_state(const ev_schema *fields, const ev_schema *state, uint32_t *n)
{
    uint32_t ns = state ? state->nfields : 0;
    expr_column *c = xcalloc((size_t)fields->nfields + ns + 1, sizeof *c);
    for (uint32_t k = 0; k < fields->nfields; k++)
        c[k] = fields->cols[k];
    for (uint32_t k = 0; k < ns; k++) {
        size_t l = strlen(state->fields[k].name) + 7;
        char *nm = xmalloc(l);
        snprintf(nm, l, "state.%s", state->fields[k].name);
        c[fields->nfields + k] = (expr_column){nm, state->fields[k].type};
    }
    *n = fields->nfields + ns;
    return c;
}

static void free_state_names(expr_column *c, uint32_t from, uint32_t n)
{
    for (uint32_t k = from; k < n; k++)
        free((char *)c[k].name);
    free(c);
}

static payi_code find_event_ref(parser *p, const char *context, int *ev)
{
    char *name;
    size_t off;
    payi_code rc = take_name(p, false, "an event type name", &name, &off);
    if (rc != PAYI_OK)
        return rc;
    *ev = spec_find_event(p->spec, name, strlen(name));
    if (*ev < 0)
        rc = fail_at(p, off, "%s: event type \"%s\" is not declared (declare it with CREATE EVENT above)", context,
                     name);
    free(name);
    return rc;
}

static const char *const set_stops[] = {"on", NULL};

/* ON <event> SET f = v, ... */
static payi_code parse_on(parser *p, spec_aggregate *a)
{
    int ev;
    payi_code rc = find_event_ref(p, "ON", &ev);
    if (rc != PAYI_OK)
        return rc;
    if (spec_aggregate_on(a, (uint32_t)ev))
        return fail_at(p, p->t[p->i - 1].start, "aggregate %s has two ON %s clauses", a->name,
                       p->spec->events[ev]->name);
    const ev_schema *es = p->spec->events[ev];
    a->ons = xrealloc(a->ons, (a->nons + 1) * sizeof *a->ons);
    spec_on *on = &a->ons[a->nons++];
    *on = (spec_on){.event = (uint32_t)ev};
    rc = expect_kw(p, "set", "after ON <event>");
    uint32_t ncols;
    expr_column *cols = scope_with_state(es, a->state, &ncols);
    expr_scope scope = {cols, ncols};
    while (rc == PAYI_OK) {
        char *f;
        size_t foff;
        rc = take_name(p, true, "a state field", &f, &foff);
        if (rc != PAYI_OK)
            break;
        int fi = schema_field_index(a->state, f, strlen(f));
        if (fi < 0)
            rc = fail_at(p, foff, "aggregate %s has no state field \"%s\"", a->name, f);
        for (uint32_t k = 0; rc == PAYI_OK && k < on->nsets; k++)
            if (on->sets[k].field == (uint32_t)fi)
                rc = fail_at(p, foff, "state field \"%s\" is SET twice", f);
        if (rc == PAYI_OK && !(cur(p)->kind == T_OP && cur(p)->len == 1 && p->src[cur_off(p)] == '='))
            rc = fail_at(p, cur_off(p), "expected '=' after SET %s", f);
        span sp;
        expr *e = NULL;
        if (rc == PAYI_OK) {
            p->i++;
            rc = expr_span(p, set_stops, "a value", &sp);
        }
        if (rc == PAYI_OK)
            rc = compile_span(p, sp, &scope, "SET", &e);
        if (rc == PAYI_OK && !assignable(expr_result_type(e), a->state->fields[fi].type))
            rc = fail_at(p, sp.start, "SET %s: the value is %s but the field is %s", f,
                         expr_type_name(expr_result_type(e)), expr_type_name(a->state->fields[fi].type));
        free(f);
        if (rc != PAYI_OK) {
            expr_free(e);
            break;
        }
        on->sets = xrealloc(on->sets, (on->nsets + 1) * sizeof *on->sets);
        on->sets[on->nsets++] = (spec_set){(uint32_t)fi, e};
        if (!at_punct(p, ','))
            break;
        p->i++;
    }
    free_state_names(cols, es->nfields, ncols);
    return rc;
}

/* Compile the aggregate's STREAM over a record's fields: text, or an error
 * that says whose fields were missing. */
static payi_code compile_stream(parser *p, size_t off, size_t len, const ev_schema *over,
                                const char *context, expr **out)
{
    expr_scope scope = {over->cols, over->nfields};
    span sp = {off, off + len};
    payi_code rc = compile_span(p, sp, &scope, context, out);
    if (rc == PAYI_OK && expr_result_type(*out) != EXPR_TEXT) {
        rc = fail_at(p, off, "%s: STREAM must be text, this is %s", context, expr_type_name(expr_result_type(*out)));
        expr_free(*out);
        *out = NULL;
    }
    return rc;
}

static const char *const stream_stops[] = {"on", "reject", "emit", "language", NULL};

static void aggregate_release(spec_aggregate *a)
{
    for (uint32_t k = 0; k < a->nons; k++) {
        for (uint32_t j = 0; j < a->ons[k].nsets; j++)
            expr_free(a->ons[k].sets[j].value);
        free(a->ons[k].sets);
    }
    free(a->ons);
    schema_free(a->state);
    free(a->stream_sql);
    free(a->name);
}

static payi_code parse_aggregate(parser *p)
{
    spec_aggregate a = {0};
    size_t off;
    payi_code rc = take_object_name(p, "an aggregate name", &a.name, &off);
    if (rc != PAYI_OK)
        return rc;
    a.state = schema_new(a.name, strlen(a.name));
    rc = parse_field_list(p, a.state, LIST_STATE);
    if (rc == PAYI_OK)
        rc = expect_kw(p, "stream", "after the state fields (STREAM <expression> names a command's stream)");
    span sp;
    if (rc == PAYI_OK)
        rc = expr_span(p, stream_stops, "a STREAM expression", &sp);
    if (rc == PAYI_OK) {
        a.stream_sql = xstrndup(p->src + sp.start, sp.end - sp.start);
        a.stream_off = (uint32_t)sp.start;
    }
    while (rc == PAYI_OK && take_kw(p, "on")) {
        rc = parse_on(p, &a);
        if (rc == PAYI_OK) {   /* the events it folds must carry the fields its stream is named from */
            const ev_schema *es = p->spec->events[a.ons[a.nons - 1].event];
            char ctx[300];
            snprintf(ctx, sizeof ctx, "STREAM of %s over the fields of event %s", a.name, es->name);
            expr *e = NULL;
            rc = compile_stream(p, sp.start, sp.end - sp.start, es, ctx, &e);
            expr_free(e);
        }
    }
    if (rc == PAYI_OK)
        rc = end_statement(p, "CREATE AGGREGATE");
    if (rc != PAYI_OK) {
        aggregate_release(&a);
        return rc;
    }
    payi_spec *s = p->spec;
    s->aggregates = xrealloc(s->aggregates, (s->naggregates + 1) * sizeof *s->aggregates);
    s->aggregates[s->naggregates++] = a;
    return PAYI_OK;
}

/* REJECT and EMIT too: a forgotten MESSAGE is reported as such, not as a
 * syntax error inside the condition */
static const char *const reject_stops[] = {"message", "reject", "emit", NULL};
static const char *const emit_item_stops[] = {"as", NULL};
static const char *const emit_if_stops[] = {"reject", "emit", NULL};

static const ev_schema *command_state(const parser *p, const spec_command *c)
{
    return c->aggregate >= 0 ? p->spec->aggregates[c->aggregate].state : NULL;
}

static payi_code parse_reject(parser *p, spec_command *c)
{
    payi_code rc = expect_kw(p, "if", "after REJECT");
    span sp;
    expr *e = NULL;
    expr_scope scope = {c->cols, c->ncols};
    if (rc == PAYI_OK)
        rc = expr_span(p, reject_stops, "a REJECT IF condition", &sp);
    if (rc == PAYI_OK)
        rc = compile_span(p, sp, &scope, "REJECT IF", &e);
    if (rc == PAYI_OK && expr_result_type(e) != EXPR_BOOL)
        rc = fail_at(p, sp.start, "REJECT IF: the condition must be boolean, this is %s",
                     expr_type_name(expr_result_type(e)));
    if (rc == PAYI_OK)
        rc = expect_kw(p, "message", "after REJECT IF <condition>");
    if (rc == PAYI_OK && cur(p)->kind != T_STRING)
        rc = fail_at(p, cur_off(p), "MESSAGE takes a 'string literal'");
    if (rc != PAYI_OK) {
        expr_free(e);
        return rc;
    }
    c->rejects = xrealloc(c->rejects, (c->nrejects + 1) * sizeof *c->rejects);
    c->rejects[c->nrejects++] = (spec_reject){e, string_value(p, cur(p))};
    p->i++;
    return PAYI_OK;
}

/* One EMIT item: expr [AS field]; without AS the expression must be a bare field name. */
static payi_code parse_emit_item(parser *p, const spec_command *c, const ev_schema *es, spec_emit *em)
{
    span sp;
    size_t first = p->i;
    payi_code rc = expr_span(p, emit_item_stops, "an EMIT value", &sp);
    if (rc != PAYI_OK)
        return rc;
    char *target = NULL;
    size_t toff = sp.start;
    if (take_kw(p, "as")) {
        rc = take_name(p, true, "an event field after AS", &target, &toff);
    } else if (p->i == first + 1 && (p->t[first].kind == T_IDENT || p->t[first].kind == T_QIDENT)) {
        size_t save = p->i;
        p->i = first;
        rc = take_name(p, true, "a field", &target, &toff);
        p->i = save;
    } else {
        rc = fail_at(p, sp.start, "EMIT %s: name the event field this value goes to (<expression> AS <field>)",
                     es->name);
    }
    int fi = -1;
    if (rc == PAYI_OK) {
        fi = schema_field_index(es, target, strlen(target));
        if (fi < 0)
            rc = fail_at(p, toff, "EMIT %s: event %s has no field \"%s\"", es->name, es->name, target);
        else if (em->values[fi])
            rc = fail_at(p, toff, "EMIT %s: field \"%s\" is given twice", es->name, target);
    }
    expr *e = NULL;
    char ctx[300];
    snprintf(ctx, sizeof ctx, "EMIT %s (%s)", es->name, target ? target : "?");
    expr_scope scope = {c->cols, c->ncols};
    if (rc == PAYI_OK)
        rc = compile_span(p, sp, &scope, ctx, &e);
    if (rc == PAYI_OK && !assignable(expr_result_type(e), es->fields[fi].type))
        rc = fail_at(p, sp.start, "%s: the value is %s but the field is %s", ctx, expr_type_name(expr_result_type(e)),
                     expr_type_name(es->fields[fi].type));
    free(target);
    if (rc != PAYI_OK) {
        expr_free(e);
        return rc;
    }
    em->values[fi] = e;
    return PAYI_OK;
}

static void emit_release(spec_emit *em, uint32_t nfields)
{
    for (uint32_t k = 0; em->values && k < nfields; k++)
        expr_free(em->values[k]);
    free(em->values);
    expr_free(em->cond);
}

static payi_code parse_emit(parser *p, spec_command *c)
{
    size_t emit_off = p->t[p->i - 1].start;
    int ev;
    payi_code rc = find_event_ref(p, "EMIT", &ev);
    if (rc != PAYI_OK)
        return rc;
    const ev_schema *es = p->spec->events[ev];
    spec_emit em = {.event = (uint32_t)ev, .values = xcalloc(es->nfields, sizeof(expr *))};
    rc = expect_punct(p, '(', "after EMIT <event>");
    while (rc == PAYI_OK && !at_punct(p, ')')) {
        rc = parse_emit_item(p, c, es, &em);
        if (rc == PAYI_OK && !at_punct(p, ')'))
            rc = expect_punct(p, ',', "between EMIT values");
    }
    if (rc == PAYI_OK)
        rc = expect_punct(p, ')', "to close EMIT (");
    for (uint32_t k = 0; rc == PAYI_OK && k < es->nfields; k++)
        if (!em.values[k] && es->fields[k].not_null && !es->fields[k].has_default)
            rc = fail_at(p, emit_off, "EMIT %s: field \"%s\" is NOT NULL and has no DEFAULT, so it must be given",
                         es->name, es->fields[k].name);
    if (rc == PAYI_OK && take_kw(p, "if")) {
        span sp;
        expr_scope scope = {c->cols, c->ncols};
        rc = expr_span(p, emit_if_stops, "an EMIT ... IF condition", &sp);
        if (rc == PAYI_OK)
            rc = compile_span(p, sp, &scope, "EMIT ... IF", &em.cond);
        if (rc == PAYI_OK && expr_result_type(em.cond) != EXPR_BOOL)
            rc = fail_at(p, sp.start, "EMIT ... IF: the condition must be boolean, this is %s",
                         expr_type_name(expr_result_type(em.cond)));
    }
    if (rc != PAYI_OK) {
        emit_release(&em, es->nfields);
        return rc;
    }
    c->emits = xrealloc(c->emits, (c->nemits + 1) * sizeof *c->emits);
    c->emits[c->nemits++] = em;
    return PAYI_OK;
}

static void command_release(const payi_spec *sp, spec_command *c)
{
    for (uint32_t k = 0; k < c->nrejects; k++) {
        expr_free(c->rejects[k].cond);
        free(c->rejects[k].message);
    }
    free(c->rejects);
    for (uint32_t k = 0; k < c->nemits; k++)
        emit_release(&c->emits[k], sp->events[c->emits[k].event]->nfields);
    free(c->emits);
    if (c->cols)
        free_state_names(c->cols, c->fields ? c->fields->nfields : 0, c->ncols);
    expr_free(c->stream);
    schema_free(c->fields);
    free(c->lua);
    free(c->name);
}

/* FOR <aggregate> or STREAM <expr> */
static payi_code parse_command_target(parser *p, spec_command *c)
{
    size_t off = cur_off(p);
    if (take_kw(p, "for")) {
        char *an;
        size_t aoff;
        payi_code rc = take_name(p, false, "an aggregate name", &an, &aoff);
        if (rc != PAYI_OK)
            return rc;
        c->aggregate = spec_find_aggregate(p->spec, an, strlen(an));
        if (c->aggregate < 0)
            rc = fail_at(p, aoff, "aggregate \"%s\" is not declared (declare it with CREATE AGGREGATE above)", an);
        free(an);
        if (rc != PAYI_OK)
            return rc;
        const spec_aggregate *a = &p->spec->aggregates[c->aggregate];
        char ctx[300];
        snprintf(ctx, sizeof ctx, "STREAM of %s over the fields of command %s", a->name, c->name);
        return compile_stream(p, a->stream_off, strlen(a->stream_sql), c->fields, ctx, &c->stream);
    }
    if (take_kw(p, "stream")) {
        span sp;
        payi_code rc = expr_span(p, stream_stops, "a STREAM expression", &sp);
        if (rc == PAYI_OK)
            rc = compile_stream(p, sp.start, sp.end - sp.start, c->fields, "STREAM", &c->stream);
        return rc;
    }
    char d[64];
    return fail_at(p, off, "command %s: expected FOR <aggregate> or STREAM <expression>, found %s", c->name,
                   tok_desc(p, cur(p), d, sizeof d));
}

static payi_code parse_lua_body(parser *p, spec_command *c)
{
    char *lang;
    size_t loff;
    payi_code rc = take_name(p, true, "a language name", &lang, &loff);
    if (rc != PAYI_OK)
        return rc;
    if (strcmp(lang, "lua") != 0)
        rc = fail_at(p, loff, "LANGUAGE %s is not supported (LANGUAGE lua is)", lang);
    free(lang);
    if (rc == PAYI_OK)
        rc = expect_kw(p, "as", "after LANGUAGE lua");
    if (rc == PAYI_OK && cur(p)->kind != T_DOLLAR && cur(p)->kind != T_STRING)
        rc = fail_at(p, cur_off(p), "LANGUAGE lua AS takes the code in $$ ... $$");
    if (rc != PAYI_OK)
        return rc;
    const tok *t = cur(p);
    size_t dl = t->kind == T_DOLLAR ? dollar_delim(p->src, p->len, t->start) : 1;
    size_t body = t->start + dl;
    if (t->kind == T_STRING) {
        c->lua = string_value(p, t);
        c->lua_len = strlen(c->lua);
    } else {
        c->lua_len = t->len - 2 * dl;
        c->lua = xstrndup(p->src + body, c->lua_len);
    }
    uint32_t col;
    line_col(p, body, &c->lua_line, &col);
    p->i++;
    return PAYI_OK;
}

static payi_code parse_command_body(parser *p, spec_command *c)
{
    if (take_kw(p, "language"))
        return parse_lua_body(p, c);
    payi_code rc = PAYI_OK;
    for (;;) {
        if (take_kw(p, "reject"))
            rc = parse_reject(p, c);
        else if (take_kw(p, "emit"))
            rc = parse_emit(p, c);
        else
            break;
        if (rc != PAYI_OK)
            return rc;
    }
    if (c->nemits == 0)
        return fail_at(p, cur_off(p), "command %s emits nothing: add EMIT <event> (...) or LANGUAGE lua", c->name);
    return PAYI_OK;
}

static payi_code parse_command(parser *p)
{
    spec_command c = {.aggregate = -1};
    size_t off;
    payi_code rc = take_object_name(p, "a command name", &c.name, &off);
    if (rc != PAYI_OK)
        return rc;
    c.fields = schema_new(c.name, strlen(c.name));
    rc = parse_field_list(p, c.fields, LIST_RECORD);
    if (rc == PAYI_OK)
        rc = parse_command_target(p, &c);
    if (rc == PAYI_OK) {
        c.cols = scope_with_state(c.fields, command_state(p, &c), &c.ncols);
        rc = parse_command_body(p, &c);
    }
    if (rc == PAYI_OK)
        rc = end_statement(p, "CREATE COMMAND");
    if (rc != PAYI_OK) {
        command_release(p->spec, &c);
        return rc;
    }
    payi_spec *s = p->spec;
    s->commands = xrealloc(s->commands, (s->ncommands + 1) * sizeof *s->commands);
    s->commands[s->ncommands++] = c;
    return PAYI_OK;
}

static payi_code parse_view(parser *p)
{
    spec_view v = {0};
    size_t off;
    payi_code rc = take_name(p, false, "a view name", &v.name, &off);
    for (uint32_t k = 0; rc == PAYI_OK && k < p->spec->nviews; k++)
        if (strcmp(p->spec->views[k].name, v.name) == 0)
            rc = fail_at(p, off, "view \"%s\" is declared twice", v.name);
    if (rc == PAYI_OK && take_kw(p, "delete")) {   /* DELETE ON <event type>: checked by the view module */
        rc = expect_kw(p, "on", "after CREATE VIEW <name> DELETE");
        size_t doff = cur_off(p);
        if (rc == PAYI_OK)
            rc = take_name(p, false, "an event type after DELETE ON", &v.delete_type, &doff);
        if (rc == PAYI_OK)
            line_col(p, doff, &v.delete_line, &v.delete_col);
    }
    if (rc == PAYI_OK)
        rc = expect_kw(p, "as", v.delete_type ? "after CREATE VIEW <name> DELETE ON <event type>" : "after CREATE VIEW <name>");
    span sp = {cur_off(p), cur_off(p)};
    int depth = 0;   /* a view's text runs to the ';' at depth 0: its commas and keywords are its own */
    for (; rc == PAYI_OK && cur(p)->kind != T_EOF; p->i++) {
        const tok *t = cur(p);
        if (t->kind == T_PUNCT && depth == 0 && p->src[t->start] == ';')
            break;
        if (t->kind == T_PUNCT && (p->src[t->start] == '(' || p->src[t->start] == '['))
            depth++;
        if (t->kind == T_PUNCT && (p->src[t->start] == ')' || p->src[t->start] == ']') && --depth < 0)
            rc = fail_at(p, t->start, "unbalanced ')' in CREATE VIEW");
        sp.end = t->start + t->len;
    }
    if (rc == PAYI_OK && sp.end == sp.start)
        rc = fail_at(p, cur_off(p), "expected a SELECT after CREATE VIEW %s AS", v.name);
    if (rc == PAYI_OK)
        rc = end_statement(p, "CREATE VIEW");
    if (rc != PAYI_OK) {
        free(v.name);
        free(v.delete_type);
        return rc;
    }
    v.sql = xstrndup(p->src + sp.start, sp.end - sp.start);
    line_col(p, sp.start, &v.line, &v.col);
    payi_spec *s = p->spec;
    s->views = xrealloc(s->views, (s->nviews + 1) * sizeof *s->views);
    s->views[s->nviews++] = v;
    return PAYI_OK;
}


/* ------------------------------------------------------------ generators */

static const char *const gen_key_stops[] = {"day", NULL};
static const char *const gen_day_stops[] = {"value", NULL};
static const char *const gen_value_stops[] = {"with", "emit", NULL};

static void generator_release(spec_generator *g)
{
    for (uint32_t k = 0; k < g->ninputs; k++) {
        expr_free(g->inputs[k].key);
        expr_free(g->inputs[k].day);
        expr_free(g->inputs[k].value);
    }
    free(g->inputs);
    for (uint32_t k = 0; k < g->nparams; k++)
        free(g->params[k].name);
    free(g->params);
    free(g->name);
    free(g->kind);
    free(g->key_name);
}

/* One of KEY, DAY, VALUE compiled over every FROM event's fields, with the
 * type it must have. */
static payi_code gen_clause(parser *p, spec_generator *g, const char *kw, const char *const *stops, int which)
{
    span sp;
    payi_code rc = expect_kw(p, kw, "in CREATE GENERATOR (FROM ... KEY ... DAY ... VALUE ...)");
    char what[32];
    snprintf(what, sizeof what, "a %s expression", kw);
    if (rc == PAYI_OK)
        rc = expr_span(p, stops, what, &sp);
    for (uint32_t k = 0; rc == PAYI_OK && k < g->ninputs; k++) {
        const ev_schema *es = p->spec->events[g->inputs[k].event];
        expr_scope scope = {es->cols, es->nfields};
        char ctx[300];
        snprintf(ctx, sizeof ctx, "%s over the fields of %s", which == 0 ? "KEY" : which == 1 ? "DAY" : "VALUE",
                 es->name);
        expr *e = NULL;
        rc = compile_span(p, sp, &scope, ctx, &e);
        if (rc != PAYI_OK)
            break;
        expr_type t = expr_result_type(e), want = which == 0 ? EXPR_TEXT : which == 1 ? EXPR_DATE : EXPR_DOUBLE;
        if (t != want && !(which == 2 && t == EXPR_BIGINT)) {
            expr_free(e);
            return fail_at(p, sp.start, "%s must be %s, this is %s", ctx, which == 2 ? "bigint or double precision"
                           : expr_type_name(want), expr_type_name(t));
        }
        expr **slot = which == 0 ? &g->inputs[k].key : which == 1 ? &g->inputs[k].day : &g->inputs[k].value;
        *slot = e;
    }
    if (rc == PAYI_OK && which == 0) {   /* a plain column names the key field of the events emitted */
        size_t n = sp.end - sp.start;
        const char *t = p->src + sp.start;
        bool plain = n > 0 && is_ident_start((unsigned char)t[0]);
        for (size_t k = 1; plain && k < n; k++)
            plain = is_ident_char((unsigned char)t[k]);
        g->key_name = plain ? xstrndup(t, n) : xstrdup("key");
        for (char *c = g->key_name; plain && *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c + 32);
    }
    return rc;
}

/* WITH (name = number, ...) */
static payi_code gen_params(parser *p, spec_generator *g)
{
    payi_code rc = expect_punct(p, '(', "after WITH");
    while (rc == PAYI_OK) {
        spec_gen_param prm = {0};
        size_t off;
        rc = take_name(p, true, "a parameter name", &prm.name, &off);
        if (rc != PAYI_OK)
            break;
        line_col(p, off, &prm.line, &prm.col);
        for (uint32_t k = 0; rc == PAYI_OK && k < g->nparams; k++)
            if (strcmp(g->params[k].name, prm.name) == 0)
                rc = fail_at(p, off, "parameter %s is given twice", prm.name);
        const tok *t = cur(p);
        if (rc == PAYI_OK && !(t->kind == T_OP && t->len == 1 && p->src[t->start] == '='))
            rc = fail_at(p, t->start, "expected '=' after parameter %s", prm.name);
        if (rc == PAYI_OK)
            p->i++;
        bool neg = false;
        t = cur(p);
        if (rc == PAYI_OK && t->kind == T_OP && t->len == 1 && p->src[t->start] == '-') {
            neg = true;
            p->i++;
            t = cur(p);
        }
        if (rc == PAYI_OK && t->kind != T_NUMBER)
            rc = fail_at(p, t->start, "parameter %s: expected a number", prm.name);
        if (rc == PAYI_OK) {
            char num[64];
            snprintf(num, sizeof num, "%.*s", (int)(t->len < 63 ? t->len : 63), p->src + t->start);
            char *end;
            double v = strtod(num, &end);
            if (*end || !isfinite(v))
                rc = fail_at(p, t->start, "parameter %s: %s is not a number", prm.name, num);
            prm.value = neg ? -v : v;
            p->i++;
        }
        if (rc != PAYI_OK) {
            free(prm.name);
            break;
        }
        g->params = xrealloc(g->params, (g->nparams + 1) * sizeof *g->params);
        g->params[g->nparams++] = prm;
        if (at_punct(p, ')')) {
            p->i++;
            break;
        }
        rc = expect_punct(p, ',', "between parameters");
    }
    return rc;
}

static payi_code parse_generator(parser *p)
{
    spec_generator g = {0};
    size_t off;
    payi_code rc = take_name(p, false, "a generator name", &g.name, &off);
    if (rc == PAYI_OK)
        line_col(p, off, &g.line, &g.col);
    for (uint32_t k = 0; rc == PAYI_OK && k < p->spec->ngenerators; k++)
        if (strcmp(p->spec->generators[k].name, g.name) == 0)
            rc = fail_at(p, off, "generator \"%s\" is declared twice", g.name);
    if (rc == PAYI_OK)
        rc = expect_kw(p, "using", "after CREATE GENERATOR <name> (USING <kind>)");
    if (rc == PAYI_OK && (rc = take_name(p, true, "a generator kind", &g.kind, &off)) == PAYI_OK)
        line_col(p, off, &g.kind_line, &g.kind_col);
    if (rc == PAYI_OK)
        rc = expect_kw(p, "from", "after USING <kind> (FROM <event type>, ...)");
    while (rc == PAYI_OK) {
        int ev;
        rc = find_event_ref(p, "FROM", &ev);
        if (rc != PAYI_OK)
            break;
        g.inputs = xrealloc(g.inputs, (g.ninputs + 1) * sizeof *g.inputs);
        g.inputs[g.ninputs++] = (spec_gen_input){.event = (uint32_t)ev};
        if (!at_punct(p, ','))
            break;
        p->i++;
    }
    if (rc == PAYI_OK)
        rc = gen_clause(p, &g, "key", gen_key_stops, 0);
    if (rc == PAYI_OK)
        rc = gen_clause(p, &g, "day", gen_day_stops, 1);
    if (rc == PAYI_OK)
        rc = gen_clause(p, &g, "value", gen_value_stops, 2);
    if (rc == PAYI_OK && take_kw(p, "with"))
        rc = gen_params(p, &g);
    if (rc == PAYI_OK)
        rc = expect_kw(p, "emit", "in CREATE GENERATOR (EMIT <event type> names the events it derives)");
    if (rc == PAYI_OK) {
        int ev;
        line_col(p, cur_off(p), &g.emit_line, &g.emit_col);
        rc = find_event_ref(p, "EMIT", &ev);
        g.emit = (uint32_t)ev;
    }
    if (rc == PAYI_OK)
        rc = end_statement(p, "CREATE GENERATOR");
    if (rc != PAYI_OK) {
        generator_release(&g);
        return rc;
    }
    payi_spec *s = p->spec;
    s->generators = xrealloc(s->generators, (s->ngenerators + 1) * sizeof *s->generators);
    s->generators[s->ngenerators++] = g;
    return PAYI_OK;
}

static payi_code parse_statement(parser *p)
{
    char d[64];
    if (!take_kw(p, "create"))
        return fail_at(p, cur_off(p), "expected CREATE EVENT, CREATE AGGREGATE, CREATE COMMAND or CREATE VIEW, found %s",
                       tok_desc(p, cur(p), d, sizeof d));
    if (take_kw(p, "event"))
        return parse_event(p);
    if (take_kw(p, "aggregate"))
        return parse_aggregate(p);
    if (take_kw(p, "command"))
        return parse_command(p);
    if (take_kw(p, "view"))
        return parse_view(p);
    if (take_kw(p, "generator"))
        return parse_generator(p);
    return fail_at(p, cur_off(p), "expected EVENT, AGGREGATE, COMMAND, VIEW or GENERATOR after CREATE, found %s",
                   tok_desc(p, cur(p), d, sizeof d));
}

/* ------------------------------------------------------------------- api */

payi_code spec_parse(const char *file, const char *text, size_t len, payi_spec **out, payi_err *err)
{
    *out = NULL;
    parser p = {.file = file, .src = text, .len = len, .err = err};
    if (len > MAX_SPEC_BYTES)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "%s: the spec is larger than %u bytes", file, MAX_SPEC_BYTES);
    size_t bad;
    index_lines(&p);
    payi_code rc = PAYI_OK;
    if (!json_utf8_valid(text, len, &bad))
        rc = fail_at(&p, bad, "invalid UTF-8");
    else if (memchr(text, 0, len))
        rc = fail_at(&p, (size_t)((const char *)memchr(text, 0, len) - text), "NUL byte in the spec");
    p.spec = xcalloc(1, sizeof *p.spec);
    p.spec->file = xstrdup(file);
    if (rc == PAYI_OK)
        rc = lex(&p);
    while (rc == PAYI_OK && cur(&p)->kind != T_EOF) {
        if (at_punct(&p, ';')) {   /* empty statements are harmless */
            p.i++;
            continue;
        }
        rc = parse_statement(&p);
    }
    if (rc == PAYI_OK && p.spec->ncommands == 0 && p.spec->nevents == 0 && p.spec->nviews == 0)
        rc = payi_err_set(err, PAYI_VALIDATION, NULL, "%s: the spec declares nothing (no CREATE EVENT, COMMAND or VIEW)",
                          file);
    free(p.lines);
    free(p.t);
    if (rc != PAYI_OK) {
        spec_free(p.spec);
        return rc;
    }
    *out = p.spec;
    return PAYI_OK;
}

payi_code spec_load(const char *path, payi_spec **out, payi_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return payi_err_sys(err, PAYI_IO, errno, "cannot open spec %s", path);
    buf b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_put(&b, chunk, n);
        if (b.len > MAX_SPEC_BYTES)
            break;
    }
    bool failed = ferror(f) != 0;
    int e = errno;
    fclose(f);
    payi_code rc;
    if (failed)
        rc = payi_err_sys(err, PAYI_IO, e, "cannot read spec %s", path);
    else
        rc = spec_parse(path, b.data ? b.data : "", b.len, out, err);
    buf_release(&b);
    return rc;
}

void spec_free(payi_spec *s)
{
    if (!s)
        return;
    for (uint32_t k = 0; k < s->ncommands; k++)
        command_release(s, &s->commands[k]);
    free(s->commands);
    for (uint32_t k = 0; k < s->naggregates; k++)
        aggregate_release(&s->aggregates[k]);
    free(s->aggregates);
    for (uint32_t k = 0; k < s->nevents; k++)
        schema_free(s->events[k]);
    free(s->events);
    for (uint32_t k = 0; k < s->nviews; k++) {
        free(s->views[k].name);
        free(s->views[k].sql);
        free(s->views[k].delete_type);
    }
    free(s->views);
    for (uint32_t k = 0; k < s->ngenerators; k++)
        generator_release(&s->generators[k]);
    free(s->generators);
    free(s->file);
    free(s);
}

static bool name_eq(const char *a, const char *b, size_t blen) { return strlen(a) == blen && memcmp(a, b, blen) == 0; }

int spec_find_event(const payi_spec *s, const char *name, size_t len)
{
    for (uint32_t k = 0; k < s->nevents; k++)
        if (name_eq(s->events[k]->name, name, len))
            return (int)k;
    return -1;
}

int spec_find_command(const payi_spec *s, const char *name, size_t len)
{
    for (uint32_t k = 0; k < s->ncommands; k++)
        if (name_eq(s->commands[k].name, name, len))
            return (int)k;
    return -1;
}

int spec_find_aggregate(const payi_spec *s, const char *name, size_t len)
{
    for (uint32_t k = 0; k < s->naggregates; k++)
        if (name_eq(s->aggregates[k].name, name, len))
            return (int)k;
    return -1;
}

const spec_on *spec_aggregate_on(const spec_aggregate *a, uint32_t ev)
{
    for (uint32_t k = 0; k < a->nons; k++)
        if (a->ons[k].event == ev)
            return &a->ons[k];
    return NULL;
}

payi_code spec_fold(const spec_aggregate *a, const spec_on *on, const ev_schema *event, const expr_value *ev_slots,
                    expr_value *state, expr_ctx *ctx, payi_err *err)
{
    uint32_t ne = event->nfields, ns = a->state->nfields;
    expr_value cols[2 * SCHEMA_MAX_FIELDS], next[SCHEMA_MAX_FIELDS];
    memcpy(cols, ev_slots, ne * sizeof *cols);
    memcpy(cols + ne, state, ns * sizeof *cols);
    for (uint32_t k = 0; k < on->nsets; k++) {
        payi_code rc = expr_eval(on->sets[k].value, cols, ctx, &next[k], err);
        if (rc != PAYI_OK)
            return rc;
        expr_type want = a->state->fields[on->sets[k].field].type;
        if (next[k].type == EXPR_BIGINT && want == EXPR_DOUBLE) {   /* the one implicit widening */
            next[k].d = (double)next[k].i;
            next[k].type = EXPR_DOUBLE;
        }
        next[k].type = (uint8_t)want;
    }
    for (uint32_t k = 0; k < on->nsets; k++)
        state[on->sets[k].field] = next[k];
    return PAYI_OK;
}
