/* schema.c — typed records (see schema.h for the model and the typed form).
 *
 * Implementation notes.
 *
 * DEFAULT.  The expression is compiled alone with an empty scope first, so
 * that its own errors carry offsets into default_sql and a reference to a
 * field is caught ("DEFAULT must be a constant").  When its type differs
 * from the field's, the assignment conversions PostgreSQL applies silently
 * (bigint <-> double precision, date <-> timestamptz, anything -> text, a
 * text literal -> any type) are done by compiling "CAST((<sql>\n) AS <type>)"
 * and shifting error offsets back by the 6 bytes of "CAST(("; other pairs
 * (boolean -> bigint, jsonb -> bigint, ...) need an explicit cast in the
 * DEFAULT itself, as in PostgreSQL.  The value is computed once; text and
 * jsonb are copied into memory the schema owns, jsonb in compact form so
 * that a defaulted jsonb encodes exactly like the same value sent as JSON.
 *
 * JSON null.  An explicit null is SQL NULL (it does not take the DEFAULT, as
 * an explicit NULL in an INSERT does not); only a missing key takes it.  A
 * jsonb field given null is SQL NULL too, not the jsonb value 'null'.
 *
 * Typed form.  The encoder is canonical: NULL slots are zero, booleans 0/1,
 * text and jsonb values are laid back to back in field order and fill the
 * tail exactly.  schema_check_data accepts only that form (plus the value
 * rules: dates and timestamps in years 1..9999, finite doubles, text valid
 * UTF-8 without U+0000, jsonb that parses as JSON, NOT NULL fields present),
 * so a corrupted record is refused rather than half-read, and everything
 * schema_write_json renders from checked data is valid JSON.  schema_validate
 * applies the same value rules to computed slots, so whatever is encoded
 * passes the check when read back.
 *
 * Rendering.  Doubles use the shortest of %.15g/%.16g/%.17g that reads back
 * as the same double; non-finite doubles (possible only in computed slots)
 * render as the strings "NaN", "Infinity", "-Infinity" like PostgreSQL's
 * to_json.  Years outside 0000..9999 (only in computed slots) use ISO 8601's
 * expanded form, sign and six digits ("+010000-01-01", "-000044-03-15"), as
 * JavaScript's toISOString does.
 */
#include "spec/schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#define DAY_US 86400000000LL
#define DATE_MIN (-719162)   /* 0001-01-01, the first day expr supports */
#define DATE_MAX 2932896     /* 9999-12-31, the last */
#define TS_MIN ((int64_t)DATE_MIN * DAY_US)
#define TS_MAX ((int64_t)(DATE_MAX + 1) * DAY_US - 1)
#define NAME_MAX_BYTES 63    /* PostgreSQL's identifier limit (NAMEDATALEN - 1) */
#define CAST_OPEN "CAST(("
#define CAST_OPEN_LEN 6
#define SNIPPET_MAX 60       /* bytes of a bad value quoted in a message */
#define JSONB_LIMITS {.max_depth = UINT32_MAX - 1, .max_nodes = UINT32_MAX - 1}

/* ------------------------------------------------------------ small helpers */

/* Length of the longest prefix of s[0..n) that is at most max bytes and
 * does not end inside a UTF-8 sequence (so that quoting it stays valid). */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

/* "prefix.name", or "name" when prefix is empty, cut to fit payi_err.field. */
static void field_path(char out[sizeof(((payi_err *)0)->field)], const char *prefix, const char *name, size_t len)
{
    size_t cap = sizeof(((payi_err *)0)->field) - 1, pl = prefix ? strlen(prefix) : 0, w = 0;
    if (pl) {
        w = utf8_cut(prefix, pl, cap);
        memcpy(out, prefix, w);
        if (w < cap)
            out[w++] = '.';
    }
    size_t nl = utf8_cut(name, len, cap - w);
    memcpy(out + w, name, nl);
    out[w + nl] = '\0';
}

/* A value's JSON text for messages: the source span, cut at SNIPPET_MAX. */
static void snippet(const json_doc *d, uint32_t i, char *out, size_t cap)
{
    const json_node *nd = &d->nodes[i];
    size_t n = utf8_cut(d->src + nd->start, nd->len, SNIPPET_MAX);
    snprintf(out, cap, "%.*s%s", (int)n, d->src + nd->start, n < nd->len ? "..." : "");
}

static void put_u32le(char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (char)(v >> (8 * k));
}

static void put_u64le(char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (char)(v >> (8 * k));
}

static uint32_t get_u32le(const char *p)
{
    uint32_t v = 0;
    for (int k = 3; k >= 0; k--)
        v = v << 8 | (unsigned char)p[k];
    return v;
}

static uint64_t get_u64le(const char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = v << 8 | (unsigned char)p[k];
    return v;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static bool is_tail_type(expr_type t) { return t == EXPR_TEXT || t == EXPR_JSONB; }

static size_t bitmap_bytes(const ev_schema *s) { return (s->nfields + 7) / 8; }
static size_t head_bytes(const ev_schema *s) { return 4 + bitmap_bytes(s) + 8 * (size_t)s->nfields; }

/* -------------------------------------------------------------- type names */

/* The names a type is written with in JSON messages ("expected a bigint"). */
static const char *expected_json(expr_type t)
{
    switch (t) {
    case EXPR_BOOL: return "a boolean";
    case EXPR_BIGINT: return "a bigint";
    case EXPR_DOUBLE: return "a number (double precision)";
    case EXPR_TEXT: return "a string (text)";
    case EXPR_DATE: return "a date string (YYYY-MM-DD)";
    case EXPR_TIMESTAMPTZ: return "a timestamp string (YYYY-MM-DDTHH:MM:SSZ)";
    case EXPR_JSONB: return "any JSON value (jsonb)";
    }
    return "a value";
}

static const char *json_kind_name(json_kind k)
{
    switch (k) {
    case JSON_NULL: return "null";
    case JSON_FALSE: case JSON_TRUE: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "a value";
}

/* The type name expr's CAST understands (the short PostgreSQL spelling). */
static const char *cast_type_name(expr_type t)
{
    switch (t) {
    case EXPR_BOOL: return "bool";
    case EXPR_BIGINT: return "int8";
    case EXPR_DOUBLE: return "float8";
    case EXPR_TEXT: return "text";
    case EXPR_DATE: return "date";
    case EXPR_TIMESTAMPTZ: return "timestamptz";
    case EXPR_JSONB: return "jsonb";
    }
    return "text";
}

static bool type_valid(int t) { return t >= EXPR_BOOL && t <= EXPR_JSONB; }

/* Type from its name in the schema JSON: expr_type_name's spelling (what
 * schema_to_json writes) and the usual short aliases. */
static int type_from_name(const char *s)
{
    static const struct { const char *name; expr_type t; } names[] = {
        {"boolean", EXPR_BOOL}, {"bool", EXPR_BOOL}, {"bigint", EXPR_BIGINT}, {"int8", EXPR_BIGINT},
        {"double precision", EXPR_DOUBLE}, {"float8", EXPR_DOUBLE}, {"text", EXPR_TEXT}, {"date", EXPR_DATE},
        {"timestamp with time zone", EXPR_TIMESTAMPTZ}, {"timestamptz", EXPR_TIMESTAMPTZ}, {"jsonb", EXPR_JSONB},
    };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(s, names[k].name) == 0)
            return names[k].t;
    return 0;
}

/* ------------------------------------------------------------- value rules */

/* Whether v (not NULL) can be stored in the typed form and
 * read back by schema_check_data; why not in why.  jd is scratch for jsonb. */
static bool value_storable(const expr_value *v, json_doc *jd, char *why, size_t cap)
{
    size_t bad;
    switch ((expr_type)v->type) {
    case EXPR_BOOL: case EXPR_BIGINT:
        return true;
    case EXPR_DOUBLE:
        if (isfinite(v->d))
            return true;
        snprintf(why, cap, "%s cannot be stored (expected a finite double precision)",
                 isnan(v->d) ? "NaN" : v->d < 0 ? "-Infinity" : "Infinity");
        return false;
    case EXPR_DATE:
        if (v->i >= DATE_MIN && v->i <= DATE_MAX)
            return true;
        snprintf(why, cap, "date out of range (expected years 0001..9999)");
        return false;
    case EXPR_TIMESTAMPTZ:
        if (v->i >= TS_MIN && v->i <= TS_MAX)
            return true;
        snprintf(why, cap, "timestamptz out of range (expected years 0001..9999)");
        return false;
    case EXPR_TEXT:
        if (v->len && memchr(v->s, 0, v->len)) {
            snprintf(why, cap, "text cannot contain U+0000");
            return false;
        }
        if (!json_utf8_valid(v->s, v->len, &bad)) {
            snprintf(why, cap, "text is not valid UTF-8 (byte %zu)", bad);
            return false;
        }
        return true;
    case EXPR_JSONB: {
        json_error je;
        json_limits lim = JSONB_LIMITS;
        if (json_parse(jd, v->s, v->len, &lim, &je))
            return true;
        snprintf(why, cap, "jsonb is not valid JSON: %s at byte %zu", je.msg, je.offset);
        return false;
    }
    }
    snprintf(why, cap, "unknown type %d", v->type);
    return false;
}

/* --------------------------------------------------------------- lifecycle */

ev_schema *schema_new(const char *name, size_t name_len)
{
    ev_schema *s = xcalloc(1, sizeof *s);
    s->name = xstrndup(name, name_len);
    /* The name is written into JSON: keep it valid UTF-8 whatever came in. */
    size_t n = strlen(s->name), bad;
    while (!json_utf8_valid(s->name, n, &bad))
        s->name[bad] = '?';
    s->id = SCHEMA_NO_ID;
    return s;
}

static void field_release(schema_field *f)
{
    if (f->has_default && !f->def.null && is_tail_type((expr_type)f->def.type))
        free((char *)f->def.s);   /* owned: see compile_default */
    free(f->default_sql);
    free(f->name);
}

void schema_free(ev_schema *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->nfields; i++)
        field_release(&s->fields[i]);
    for (uint32_t i = 0; i < s->nchecks; i++) {
        free(s->checks[i].sql);
        free(s->checks[i].field);
        expr_free(s->checks[i].e);
    }
    free(s->fields);
    free(s->checks);
    free(s->cols);
    free(s->name);
    free(s);
}

int schema_field_index(const ev_schema *s, const char *name, size_t len)
{
    for (uint32_t i = 0; i < s->nfields; i++) {
        const char *f = s->fields[i].name;
        if (strlen(f) == len && memcmp(f, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------------ DEFAULT */

/* Rewrites the " (at N)" suffix of an expr error to N - shift, clamped to
 * [0, max]: positions in wrapped text back to positions in default_sql. */
static void shift_error_pos(payi_err *err, size_t shift, size_t max)
{
    size_t pos;
    if (!err)
        return;
    char *at = strrchr(err->msg, '(');
    if (!at || !expr_error_pos(err, &pos))
        return;
    pos = pos >= shift ? pos - shift : 0;
    if (pos > max)
        pos = max;
    snprintf(at, sizeof err->msg - (size_t)(at - err->msg), "(at %zu)", pos);
}

/* Re-states an expr error as a DEFAULT error of field name. */
static payi_code default_error(payi_err *err, const char *name)
{
    if (!err)
        return PAYI_VALIDATION;
    char m[sizeof err->msg];
    memcpy(m, err->msg, sizeof m);
    return payi_err_set(err, PAYI_VALIDATION, name, "invalid DEFAULT for field \"%s\": %s", name, m);
}

/* The conversions an assignment does silently (see the notes at the top). */
static bool assignable(expr_type from, expr_type to)
{
    if (from == to || to == EXPR_TEXT || from == EXPR_TEXT)
        return true;
    return (from == EXPR_BIGINT && to == EXPR_DOUBLE) || (from == EXPR_DOUBLE && to == EXPR_BIGINT) ||
           (from == EXPR_DATE && to == EXPR_TIMESTAMPTZ) || (from == EXPR_TIMESTAMPTZ && to == EXPR_DATE);
}

/* Compiles the DEFAULT as a constant of the field's type (the expression is
 * checked alone first: see the notes at the top). */
static payi_code compile_default_expr(const ev_schema *s, const char *name, expr_type type, const char *sql,
                                      size_t len, expr **out, size_t *shift, payi_err *err)
{
    *shift = 0;
    static const expr_scope empty = {NULL, 0};
    expr *e = NULL;
    payi_err first;
    payi_err_clear(&first);
    if (expr_parse(sql, len, &empty, &e, &first) != PAYI_OK) {
        /* Did it fail only because it names fields?  Compile it again with
         * the fields (this one included) in scope to tell. */
        expr_column *cols = xcalloc((size_t)s->nfields + 1, sizeof *cols);
        if (s->nfields)
            memcpy(cols, s->cols, s->nfields * sizeof *cols);
        cols[s->nfields] = (expr_column){name, type};
        expr_scope scope = {cols, (size_t)s->nfields + 1};
        payi_code rc = expr_parse(sql, len, &scope, &e, err);
        free(cols);
        if (rc == PAYI_OK) {
            size_t pos = 0;
            expr_free(e);
            expr_error_pos(&first, &pos);
            return payi_err_set(err, PAYI_VALIDATION, name,
                                "invalid DEFAULT for field \"%s\": DEFAULT must be a constant, it cannot refer to "
                                "a field (at %zu)", name, pos);
        }
        return default_error(err, name);
    }
    expr_type got = expr_result_type(e);
    if (got == type) {
        *out = e;
        return PAYI_OK;
    }
    expr_free(e);
    if (!assignable(got, type))
        return payi_err_set(err, PAYI_VALIDATION, name,
                            "invalid DEFAULT for field \"%s\": a %s value cannot be assigned to a %s field "
                            "(write an explicit CAST) (at 0)", name, expr_type_name(got), expr_type_name(type));
    /* The newline ends a trailing "--" comment before the closing text. */
    buf w = BUF_INIT;
    buf_put(&w, CAST_OPEN, CAST_OPEN_LEN);
    buf_put(&w, sql, len);
    buf_printf(&w, "\n) AS %s)", cast_type_name(type));
    payi_code rc = expr_parse(w.data, w.len, &empty, &e, err);
    buf_release(&w);
    if (rc != PAYI_OK) {
        shift_error_pos(err, CAST_OPEN_LEN, len);
        return default_error(err, name);
    }
    *out = e;
    *shift = CAST_OPEN_LEN;
    return PAYI_OK;
}

/* Copies a computed text/jsonb default into memory the schema owns (jsonb
 * compacted, see the notes at the top). */
static void own_default(expr_value *v, json_doc *jd)
{
    buf b = BUF_INIT;
    if (v->type == EXPR_JSONB)
        json_write_compact(jd, 0, &b);   /* jd holds v, parsed by value_storable */
    else
        buf_put(&b, v->s, v->len);
    char *p = xmalloc(b.len + 1);
    memcpy(p, b.data ? b.data : "", b.len);
    p[b.len] = '\0';
    v->s = p;
    v->len = (uint32_t)b.len;
    buf_release(&b);
}

static payi_code compile_default(const ev_schema *s, schema_field *f, const char *sql, size_t len, payi_err *err)
{
    expr *e = NULL;
    size_t shift;
    payi_code rc = compile_default_expr(s, f->name, f->type, sql, len, &e, &shift, err);
    if (rc != PAYI_OK)
        return rc;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    expr_value none[1] = {{0}}, v;
    json_doc jd = JSON_DOC_INIT;
    char why[200];
    rc = expr_eval(e, none, &ctx, &v, err);
    if (rc != PAYI_OK) {
        shift_error_pos(err, shift, len);
        rc = default_error(err, f->name);
    } else if (v.type != f->type) {
        rc = payi_err_set(err, PAYI_INTERNAL, f->name, "DEFAULT of field \"%s\" computed a %s", f->name,
                          expr_type_name((expr_type)v.type));
    } else if (!v.null && !value_storable(&v, &jd, why, sizeof why)) {
        rc = payi_err_set(err, PAYI_VALIDATION, f->name, "invalid DEFAULT for field \"%s\": %s (at 0)", f->name, why);
    } else {
        if (!v.null && is_tail_type((expr_type)v.type))
            own_default(&v, &jd);
        f->def = v;
    }
    json_doc_release(&jd);
    expr_ctx_release(&ctx);
    expr_free(e);
    return rc;
}

/* ------------------------------------------------------------ declaration */

/* Why name cannot name a field, or NULL: names are keys of JSON objects and
 * columns of expressions, so they must be text PostgreSQL could accept. */
static const char *bad_field_name(const char *name, size_t len)
{
    size_t bad;
    if (len == 0)
        return "a field name cannot be empty";
    if (len > NAME_MAX_BYTES)
        return "a field name is at most 63 bytes";
    if (memchr(name, 0, len))
        return "a field name cannot contain U+0000";
    if (!json_utf8_valid(name, len, &bad))
        return "a field name must be valid UTF-8";
    return NULL;
}

payi_code schema_add_field(ev_schema *s, const char *name, size_t name_len, expr_type type, bool not_null,
                           const char *default_sql, size_t default_len, payi_err *err)
{
    const char *why = bad_field_name(name, name_len);
    if (why)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "%s", why);
    schema_field f = {0};
    f.name = xstrndup(name, name_len);
    f.type = type;
    f.not_null = not_null;
    payi_code rc = PAYI_VALIDATION;
    if (!type_valid((int)type)) {
        payi_err_set(err, PAYI_VALIDATION, f.name, "field \"%s\" has an unknown type (%d)", f.name, (int)type);
        goto fail;
    }
    if (schema_field_index(s, name, name_len) >= 0) {
        payi_err_set(err, PAYI_VALIDATION, f.name, "field \"%s\" is declared twice", f.name);
        goto fail;
    }
    if (s->nfields >= SCHEMA_MAX_FIELDS) {
        payi_err_set(err, PAYI_VALIDATION, f.name, "too many fields: \"%s\" would be field %u (at most %d)", f.name,
                     s->nfields + 1, SCHEMA_MAX_FIELDS);
        goto fail;
    }
    if (default_sql) {
        f.has_default = true;
        f.default_sql = xstrndup(default_sql, default_len);
        if ((rc = compile_default(s, &f, default_sql, default_len, err)) != PAYI_OK)
            goto fail;
    }
    /* Schemas are built once and are small: grow by one. */
    s->fields = xrealloc(s->fields, ((size_t)s->nfields + 1) * sizeof *s->fields);
    s->cols = xrealloc(s->cols, ((size_t)s->nfields + 1) * sizeof *s->cols);
    s->fields[s->nfields] = f;
    s->cols[s->nfields] = (expr_column){f.name, type};
    s->nfields++;
    return PAYI_OK;
fail:
    field_release(&f);
    return rc;
}

payi_code schema_add_check(ev_schema *s, const char *field, const char *sql, size_t len, payi_err *err)
{
    if (field && schema_field_index(s, field, strlen(field)) < 0)
        return payi_err_set(err, PAYI_VALIDATION, field, "CHECK written on unknown field \"%s\"", field);
    expr_scope scope = {s->cols, s->nfields};
    expr *e = NULL;
    if (expr_parse(sql, len, &scope, &e, err) != PAYI_OK) {
        if (err) {
            char m[sizeof err->msg];
            memcpy(m, err->msg, sizeof m);
            payi_err_set(err, PAYI_VALIDATION, field, "invalid CHECK: %s", m);
        }
        return PAYI_VALIDATION;
    }
    if (expr_result_type(e) != EXPR_BOOL) {
        payi_err_set(err, PAYI_VALIDATION, field, "invalid CHECK: it must be a boolean expression, not %s (at 0)",
                     expr_type_name(expr_result_type(e)));
        expr_free(e);
        return PAYI_VALIDATION;
    }
    s->checks = xrealloc(s->checks, ((size_t)s->nchecks + 1) * sizeof *s->checks);
    schema_check *c = &s->checks[s->nchecks++];
    c->sql = xstrndup(sql, len);   /* expr_parse refused NUL bytes */
    c->field = field ? xstrdup(field) : NULL;
    c->e = e;
    return PAYI_OK;
}

/* ---------------------------------------------------------- JSON decoding */

/* String node k as bytes: straight from the source when it has no escapes,
 * else decoded into ctx->scratch (valid until the scratch is reused). */
static void string_view(const json_doc *d, uint32_t k, expr_ctx *ctx, const char **s, size_t *len)
{
    const json_node *nd = &d->nodes[k];
    if (!(nd->flags & JSON_F_ESCAPED)) {
        *s = d->src + nd->start + 1;
        *len = nd->len - 2;
    } else if (json_get_string(d, k, &ctx->scratch)) {
        *s = ctx->scratch.data;
        *len = ctx->scratch.len;
    } else {
        *s = "";
        *len = 0;
    }
}

/* Levenshtein distance of two strings of at most 64 bytes. */
static size_t edit_distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t row[65];
    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bn];
}

/* The field a mistyped key most likely meant, or NULL. */
static const char *nearest_field(const ev_schema *s, const char *key, size_t len)
{
    if (len == 0 || len > 64)
        return NULL;
    size_t limit = len <= 4 ? 1 : 2, best = limit + 1;
    const char *name = NULL;
    for (uint32_t i = 0; i < s->nfields; i++) {
        const char *f = s->fields[i].name;
        size_t dist = edit_distance(key, len, f, strlen(f));
        if (dist < best) {
            best = dist;
            name = f;
        }
    }
    return name;
}

static payi_code unknown_field(const ev_schema *s, const char *prefix, const char *key, size_t len, payi_err *err)
{
    char path[sizeof(((payi_err *)0)->field)];
    field_path(path, prefix, key, len);
    size_t shown = utf8_cut(key, len, SNIPPET_MAX);
    const char *near = nearest_field(s, key, len);
    return payi_err_set(err, PAYI_VALIDATION, path, "unknown field \"%.*s%s\"%s%s%s", (int)shown, key,
                        shown < len ? "..." : "", near ? "; did you mean \"" : "", near ? near : "", near ? "\"?" : "");
}

static payi_code value_error(const schema_field *f, const char *prefix, payi_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static payi_code value_error(const schema_field *f, const char *prefix, payi_err *err, const char *fmt, ...)
{
    char path[sizeof(((payi_err *)0)->field)], m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    field_path(path, prefix, f->name, strlen(f->name));
    return payi_err_set(err, PAYI_VALIDATION, path, "field \"%s\": %s", f->name, m);
}

/* True when a number's mantissa has a non-zero digit: a double that reads
 * as 0 from such text underflowed, which PostgreSQL refuses too. */
static bool mantissa_nonzero(const char *s, size_t len)
{
    for (size_t k = 0; k < len && s[k] != 'e' && s[k] != 'E'; k++)
        if (s[k] >= '1' && s[k] <= '9')
            return true;
    return false;
}

static payi_code decode_text(const schema_field *f, const json_doc *d, uint32_t v, const char *prefix,
                             expr_value *out, expr_ctx *ctx, payi_err *err)
{
    const char *s;
    size_t len;
    string_view(d, v, ctx, &s, &len);
    if (s == d->src + d->nodes[v].start + 1) {
        *out = expr_text(s, len);   /* the parser refused raw control characters: no U+0000 */
        return PAYI_OK;
    }
    if (memchr(s, 0, len))
        return value_error(f, prefix, err, "text cannot contain U+0000 (\\u0000), PostgreSQL refuses it too");
    char *p = expr_ctx_alloc(ctx, len);
    if (len)
        memcpy(p, s, len);
    *out = expr_text(p, len);
    return PAYI_OK;
}

static void decode_jsonb(const json_doc *d, uint32_t v, expr_value *out, expr_ctx *ctx)
{
    const json_node *nd = &d->nodes[v];
    buf *b = &ctx->scratch;
    buf_reset(b);
    json_write_compact(d, v, b);
    /* Compacting only drops bytes: the same length means the source span
     * already is the compact text. */
    if (b->len == nd->len) {
        *out = expr_jsonb(d->src + nd->start, nd->len);
        return;
    }
    char *p = expr_ctx_alloc(ctx, b->len);
    memcpy(p, b->data, b->len);
    *out = expr_jsonb(p, b->len);
}

/* JSON value node v into out for field f (the rules in schema.h). */
static payi_code decode_value(const schema_field *f, const json_doc *d, uint32_t v, const char *prefix,
                              expr_value *out, expr_ctx *ctx, payi_err *err)
{
    const json_node *nd = &d->nodes[v];
    char snip[SNIPPET_MAX + 8];
    const char *s;
    size_t len;
    if (nd->kind == JSON_NULL) {
        *out = expr_null(f->type);
        return PAYI_OK;
    }
    switch (f->type) {
    case EXPR_BOOL:
        if (nd->kind != JSON_TRUE && nd->kind != JSON_FALSE)
            break;
        *out = expr_bool(nd->kind == JSON_TRUE);
        return PAYI_OK;
    case EXPR_BIGINT:
        if (nd->kind != JSON_NUMBER)
            break;
        snippet(d, v, snip, sizeof snip);
        if (!(nd->flags & JSON_F_INTEGER))
            return value_error(f, prefix, err, "%s is not an integer literal (expected a bigint)", snip);
        *out = expr_int(0);
        if (!json_get_int64(d, v, &out->i))
            return value_error(f, prefix, err, "%s is out of range for bigint", snip);
        return PAYI_OK;
    case EXPR_DOUBLE:
        if (nd->kind != JSON_NUMBER)
            break;
        *out = expr_double(0);
        if (!json_get_double(d, v, &out->d) || (out->d == 0 && mantissa_nonzero(d->src + nd->start, nd->len))) {
            snippet(d, v, snip, sizeof snip);
            return value_error(f, prefix, err, "%s is out of range for double precision", snip);
        }
        return PAYI_OK;
    case EXPR_TEXT:
        if (nd->kind != JSON_STRING)
            break;
        return decode_text(f, d, v, prefix, out, ctx, err);
    case EXPR_DATE:
        if (nd->kind != JSON_STRING)
            break;
        string_view(d, v, ctx, &s, &len);
        *out = expr_date(0);
        if (expr_parse_date(s, len, &out->i))
            return PAYI_OK;
        snippet(d, v, snip, sizeof snip);
        return value_error(f, prefix, err, "%s is not a valid date (expected YYYY-MM-DD, years 0001..9999)", snip);
    case EXPR_TIMESTAMPTZ:
        if (nd->kind != JSON_STRING)
            break;
        string_view(d, v, ctx, &s, &len);
        *out = expr_ts(0);
        if (expr_parse_timestamptz(s, len, &out->i))
            return PAYI_OK;
        snippet(d, v, snip, sizeof snip);
        return value_error(f, prefix, err,
                           "%s is not a valid timestamp (expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or an offset "
                           "like +02:00, years 0001..9999)", snip);
    case EXPR_JSONB:
        decode_jsonb(d, v, out, ctx);
        return PAYI_OK;
    }
    return value_error(f, prefix, err, "expected %s, got %s", expected_json(f->type), json_kind_name(nd->kind));
}

/* NOT NULL, then the CHECKs in declaration order.  given (may be NULL)
 * tells a missing field from an explicit null in the message. */
static payi_code check_constraints(const ev_schema *s, const expr_value *slots, const uint8_t *given,
                                   const char *prefix, expr_ctx *ctx, payi_err *err)
{
    char path[sizeof(((payi_err *)0)->field)];
    for (uint32_t i = 0; i < s->nfields; i++) {
        const schema_field *f = &s->fields[i];
        if (f->not_null && slots[i].null) {
            field_path(path, prefix, f->name, strlen(f->name));
            return payi_err_set(err, PAYI_VALIDATION, path, "field \"%s\" is NOT NULL but %s", f->name,
                                given && !given[i] ? "missing" : "null");
        }
    }
    for (uint32_t k = 0; k < s->nchecks; k++) {
        const schema_check *c = &s->checks[k];
        expr_value r;
        const char *at = prefix && prefix[0] ? prefix : NULL;
        if (c->field) {
            field_path(path, prefix, c->field, strlen(c->field));
            at = path;
        }
        size_t shown = utf8_cut(c->sql, strlen(c->sql), 200);
        const char *more = c->sql[shown] ? "..." : "";
        if (expr_eval(c->e, slots, ctx, &r, err) != PAYI_OK) {
            if (!err)
                return PAYI_VALIDATION;
            char m[sizeof err->msg];
            memcpy(m, err->msg, sizeof m);
            return payi_err_set(err, PAYI_VALIDATION, at, "CHECK (%.*s%s) could not be evaluated: %s", (int)shown,
                                c->sql, more, m);
        }
        if (!r.null && !r.b)
            return payi_err_set(err, PAYI_VALIDATION, at, "CHECK (%.*s%s) failed", (int)shown, c->sql, more);
    }
    return PAYI_OK;
}

payi_code schema_decode_json(const ev_schema *s, const json_doc *d, uint32_t obj, const char *prefix,
                             expr_value *slots, expr_ctx *ctx, payi_err *err)
{
    if (!prefix)
        prefix = "";
    if (obj >= d->n || d->nodes[obj].kind != JSON_OBJECT)
        return payi_err_set(err, PAYI_VALIDATION, prefix[0] ? prefix : NULL, "expected a JSON object, got %s",
                            obj < d->n ? json_kind_name(d->nodes[obj].kind) : "nothing");
    uint8_t given[SCHEMA_MAX_FIELDS] = {0};
    uint32_t key = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].count; m++) {
        uint32_t val = key + 1;
        const char *name;
        size_t len;
        string_view(d, key, ctx, &name, &len);
        /* Keys usually come in declaration order: try that field first. */
        int i = m < s->nfields && strlen(s->fields[m].name) == len && memcmp(s->fields[m].name, name, len) == 0
                    ? (int)m
                    : schema_field_index(s, name, len);
        if (i < 0)
            return unknown_field(s, prefix, name, len, err);
        const schema_field *f = &s->fields[i];
        if (given[i])   /* our parser refuses duplicate keys; this guards other producers of json_doc */
            return value_error(f, prefix, err, "given twice");
        given[i] = 1;
        payi_code rc = decode_value(f, d, val, prefix, &slots[i], ctx, err);
        if (rc != PAYI_OK)
            return rc;
        key = d->nodes[val].next;
    }
    for (uint32_t i = 0; i < s->nfields; i++)
        if (!given[i])
            slots[i] = s->fields[i].has_default ? s->fields[i].def : expr_null(s->fields[i].type);
    return check_constraints(s, slots, given, prefix, ctx, err);
}

payi_code schema_validate(const ev_schema *s, const expr_value *slots, const char *prefix, expr_ctx *ctx,
                          payi_err *err)
{
    char why[300];
    for (uint32_t i = 0; i < s->nfields; i++) {
        const schema_field *f = &s->fields[i];
        const expr_value *v = &slots[i];
        if (v->null)
            continue;
        if (v->type != f->type)
            return value_error(f, prefix, err, "expected a %s value, got %s", expr_type_name(f->type),
                               expr_type_name((expr_type)v->type));
        if (!value_storable(v, &ctx->jd, why, sizeof why))
            return value_error(f, prefix, err, "%s", why);
    }
    return check_constraints(s, slots, NULL, prefix, ctx, err);
}

/* ------------------------------------------------------------- typed form */

void schema_encode(const ev_schema *s, const expr_value *slots, buf *out)
{
    size_t head = head_bytes(s), tail = 0;
    for (uint32_t i = 0; i < s->nfields; i++) {
        const expr_value *v = &slots[i];
        if (!v->null && v->type != s->fields[i].type) {
            /* Slots come from schema_decode_json or passed schema_validate:
             * anything else is a bug that would write garbage. */
            fprintf(stderr, "payi: schema_encode: field \"%s\" of %s holds a %s value\n", s->fields[i].name, s->name,
                    expr_type_name((expr_type)v->type));
            abort();
        }
        if (!v->null && is_tail_type((expr_type)v->type))
            tail += v->len;
    }
    if (tail > UINT32_MAX) {   /* 32-bit offsets: unreachable under any request size limit */
        fprintf(stderr, "payi: schema_encode: %zu bytes of text in one record of %s\n", tail, s->name);
        abort();
    }
    buf_reserve(out, head + tail);
    char *p = out->data + out->len, *bits = p + 4, *slot = bits + bitmap_bytes(s), *t = p + head;
    memset(p, 0, head);
    put_u32le(p, s->id);
    uint32_t off = 0;
    for (uint32_t i = 0; i < s->nfields; i++, slot += 8) {
        const expr_value *v = &slots[i];
        if (v->null) {
            bits[i / 8] = (char)(bits[i / 8] | 1 << (i % 8));
            continue;
        }
        switch (s->fields[i].type) {
        case EXPR_BOOL: put_u64le(slot, v->b ? 1 : 0); break;
        case EXPR_DOUBLE: put_u64le(slot, double_bits(v->d)); break;
        case EXPR_BIGINT: case EXPR_DATE: case EXPR_TIMESTAMPTZ: put_u64le(slot, (uint64_t)v->i); break;
        case EXPR_TEXT: case EXPR_JSONB:
            put_u32le(slot, off);
            put_u32le(slot + 4, v->len);
            if (v->len)
                memcpy(t + off, v->s, v->len);
            off += v->len;
            break;
        }
    }
    out->len += head + tail;
    out->data[out->len] = '\0';
}

bool schema_data_id(const char *data, size_t len, uint32_t *id)
{
    if (len < 4)
        return false;
    *id = get_u32le(data);
    return true;
}

static payi_code corrupt(const ev_schema *s, const char *field, payi_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static payi_code corrupt(const ev_schema *s, const char *field, payi_err *err, const char *fmt, ...)
{
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (field)
        return payi_err_set(err, PAYI_CORRUPT, field, "typed %s record: field \"%s\": %s", s->name, field, m);
    return payi_err_set(err, PAYI_CORRUPT, NULL, "typed %s record: %s", s->name, m);
}

/* One non-NULL slot's fixed part; *cursor is where the next text must start. */
static payi_code check_slot(const ev_schema *s, const schema_field *f, const char *slot, size_t tail_len,
                            uint64_t *cursor, payi_err *err)
{
    uint64_t u = get_u64le(slot);
    int64_t i = (int64_t)u;
    switch (f->type) {
    case EXPR_BOOL:
        if (u > 1)
            return corrupt(s, f->name, err, "boolean slot holds %llu (expected 0 or 1)", (unsigned long long)u);
        return PAYI_OK;
    case EXPR_BIGINT:
        return PAYI_OK;
    case EXPR_DOUBLE:
        if (!isfinite(bits_double(u)))
            return corrupt(s, f->name, err, "double is not finite (bits 0x%016llx)", (unsigned long long)u);
        return PAYI_OK;
    case EXPR_DATE:
        if (i < DATE_MIN || i > DATE_MAX)
            return corrupt(s, f->name, err, "date %lld days from 1970-01-01 is outside years 0001..9999", (long long)i);
        return PAYI_OK;
    case EXPR_TIMESTAMPTZ:
        if (i < TS_MIN || i > TS_MAX)
            return corrupt(s, f->name, err, "timestamp %lld us from 1970 is outside years 0001..9999", (long long)i);
        return PAYI_OK;
    case EXPR_TEXT: case EXPR_JSONB: {
        uint32_t off = get_u32le(slot), len = get_u32le(slot + 4);
        if (off != *cursor)
            return corrupt(s, f->name, err, "value at tail offset %u, expected %llu (values are back to back)", off,
                           (unsigned long long)*cursor);
        if ((uint64_t)off + len > tail_len)
            return corrupt(s, f->name, err, "%u bytes at tail offset %u run past the %zu-byte tail", len, off,
                           tail_len);
        *cursor += len;
        return PAYI_OK;
    }
    }
    return corrupt(s, f->name, err, "unknown type %d in the schema", (int)f->type);
}

/* A text or jsonb value's bytes (its slot already checked). */
static payi_code check_tail_value(const ev_schema *s, const schema_field *f, const char *v, uint32_t len,
                                  json_doc *jd, payi_err *err)
{
    size_t bad;
    if (f->type == EXPR_TEXT) {
        const char *nul = len ? memchr(v, 0, len) : NULL;
        if (nul)
            return corrupt(s, f->name, err, "text contains U+0000 at byte %zu", (size_t)(nul - v));
        if (!json_utf8_valid(v, len, &bad))
            return corrupt(s, f->name, err, "text is not valid UTF-8 at byte %zu", bad);
        return PAYI_OK;
    }
    json_error je;
    json_limits lim = JSONB_LIMITS;
    if (!json_parse(jd, v, len, &lim, &je))
        return corrupt(s, f->name, err, "jsonb is not valid JSON: %s at byte %zu", je.msg, je.offset);
    return PAYI_OK;
}

static payi_code check_layout(const ev_schema *s, const char *data, size_t len, bool *has_tail, payi_err *err);

payi_code schema_check_layout(const ev_schema *s, const char *data, size_t len, payi_err *err)
{
    bool tail;
    return check_layout(s, data, len, &tail, err);
}

payi_code schema_check_data(const ev_schema *s, const char *data, size_t len, payi_err *err)
{
    bool has_tail_values;
    payi_code rc = check_layout(s, data, len, &has_tail_values, err);
    if (rc != PAYI_OK || !has_tail_values)
        return rc;
    /* Slots and offsets are sound: now the text and jsonb bytes. */
    size_t head = head_bytes(s), nb = bitmap_bytes(s);
    const unsigned char *bits = (const unsigned char *)data + 4;
    json_doc jd = JSON_DOC_INIT;
    for (uint32_t i = 0; i < s->nfields && rc == PAYI_OK; i++) {
        const schema_field *f = &s->fields[i];
        if (!is_tail_type(f->type) || (bits[i / 8] >> (i % 8) & 1))
            continue;
        const char *slot = data + 4 + nb + 8 * (size_t)i;
        rc = check_tail_value(s, f, data + head + get_u32le(slot), get_u32le(slot + 4), &jd, err);
    }
    json_doc_release(&jd);
    return rc;
}

/* The header, the slots and the tail offsets: what schema_get needs to read
 * within bounds.  *has_tail: some text or jsonb value is present. */
static payi_code check_layout(const ev_schema *s, const char *data, size_t len, bool *has_tail, payi_err *err)
{
    size_t head = head_bytes(s), nb = bitmap_bytes(s);
    if (len < head)
        return corrupt(s, NULL, err, "%zu bytes, shorter than the %zu-byte header of its %u fields", len, head,
                       s->nfields);
    uint32_t id = get_u32le(data);
    if (id != s->id)
        return corrupt(s, NULL, err, "schema id %u, expected %u", id, s->id);
    const unsigned char *bits = (const unsigned char *)data + 4;
    if (s->nfields % 8 && (bits[nb - 1] >> (s->nfields % 8)) != 0)
        return corrupt(s, NULL, err, "null bitmap has bits set past field %u", s->nfields);
    size_t tail_len = len - head;
    uint64_t cursor = 0;
    bool has_tail_values = false;
    for (uint32_t i = 0; i < s->nfields; i++) {
        const schema_field *f = &s->fields[i];
        const char *slot = data + 4 + nb + 8 * (size_t)i;
        if (bits[i / 8] >> (i % 8) & 1) {
            if (f->not_null)
                return corrupt(s, f->name, err, "NULL in a NOT NULL field");
            if (get_u64le(slot) != 0)
                return corrupt(s, f->name, err, "NULL but its slot is not zero");
            continue;
        }
        payi_code rc = check_slot(s, f, slot, tail_len, &cursor, err);
        if (rc != PAYI_OK)
            return rc;
        has_tail_values |= is_tail_type(f->type);
    }
    if (cursor != tail_len)
        return corrupt(s, NULL, err, "%llu bytes after the last value", (unsigned long long)(tail_len - cursor));
    *has_tail = has_tail_values;
    return PAYI_OK;
}

void schema_get(const ev_schema *s, const char *data, size_t len, uint32_t i, expr_value *out)
{
    size_t head = head_bytes(s), nb = bitmap_bytes(s);
    if (i >= s->nfields || len < head) {   /* not checked data: answer NULL rather than read out of bounds */
        *out = expr_null(i < s->nfields ? s->fields[i].type : EXPR_TEXT);
        return;
    }
    expr_type t = s->fields[i].type;
    if ((unsigned char)data[4 + i / 8] >> (i % 8) & 1) {
        *out = expr_null(t);
        return;
    }
    const char *slot = data + 4 + nb + 8 * (size_t)i;
    uint64_t u = get_u64le(slot);
    switch (t) {
    case EXPR_BOOL: *out = expr_bool(u != 0); return;
    case EXPR_BIGINT: *out = expr_int((int64_t)u); return;
    case EXPR_DOUBLE: *out = expr_double(bits_double(u)); return;
    case EXPR_DATE: *out = expr_date((int64_t)u); return;
    case EXPR_TIMESTAMPTZ: *out = expr_ts((int64_t)u); return;
    case EXPR_TEXT: case EXPR_JSONB: {
        uint32_t off = get_u32le(slot), n = get_u32le(slot + 4);
        if ((uint64_t)off + n > len - head) {
            *out = expr_null(t);
            return;
        }
        *out = t == EXPR_TEXT ? expr_text(data + head + off, n) : expr_jsonb(data + head + off, n);
        return;
    }
    }
    *out = expr_null(t);
}

/* ---------------------------------------------------------------- JSON out */

/* Years 0000..9999 as four digits, others in ISO 8601's expanded form. */
static void put_year(buf *out, int64_t y)
{
    if (y >= 0 && y <= 9999)
        buf_printf(out, "%04lld", (long long)y);
    else
        buf_printf(out, "%c%06llu", y < 0 ? '-' : '+', y < 0 ? 0ULL - (unsigned long long)y : (unsigned long long)y);
}

/* Calendar date of any day number: whole 400-year eras (146097 days) are
 * moved out first so that expr_civil_from_days never overflows. */
static void put_date(buf *out, int64_t days)
{
    int64_t eras = days / 146097, y;
    unsigned m, d;
    expr_civil_from_days(days - eras * 146097, &y, &m, &d);
    put_year(out, y + eras * 400);
    buf_printf(out, "-%02u-%02u", m, d);
}

static void put_timestamp(buf *out, int64_t us)
{
    /* Floor division without multiplying back (which overflows near INT64_MIN). */
    int64_t days = us / DAY_US, r = us % DAY_US;
    if (r < 0) {
        r += DAY_US;
        days--;
    }
    int64_t secs = r / 1000000;
    put_date(out, days);
    buf_printf(out, "T%02d:%02d:%02d.%06dZ", (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
               (int)(r % 1000000));
}

static void put_double(buf *out, double d)
{
    if (!isfinite(d)) {
        buf_puts(out, isnan(d) ? "\"NaN\"" : d < 0 ? "\"-Infinity\"" : "\"Infinity\"");
        return;
    }
    char t[40];
    for (int p = 15; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*g", p, d);
        if (strtod(t, NULL) == d)   /* %.17g always reads back */
            break;
    }
    buf_puts(out, t);
}

/* Text that is valid UTF-8 (all stored and validated text) goes straight to
 * json_put_string; anything else has its bad bytes replaced by U+FFFD so
 * that the output stays valid JSON. */
static void put_text(buf *out, const char *s, size_t len)
{
    size_t bad;
    if (json_utf8_valid(s, len, &bad)) {
        json_put_string(out, s, len);
        return;
    }
    buf clean = BUF_INIT;
    while (!json_utf8_valid(s, len, &bad)) {
        buf_put(&clean, s, bad);
        buf_puts(&clean, "\xEF\xBF\xBD");
        s += bad + 1;
        len -= bad + 1;
    }
    buf_put(&clean, s, len);
    json_put_string(out, clean.data, clean.len);
    buf_release(&clean);
}

void schema_put_value_json(buf *out, const expr_value *v)
{
    if (v->null) {
        buf_puts(out, "null");
        return;
    }
    switch ((expr_type)v->type) {
    case EXPR_BOOL: buf_puts(out, v->b ? "true" : "false"); return;
    case EXPR_BIGINT: buf_put_i64(out, v->i); return;
    case EXPR_DOUBLE: put_double(out, v->d); return;
    case EXPR_TEXT: put_text(out, v->s, v->len); return;
    case EXPR_DATE: buf_putc(out, '"'); put_date(out, v->i); buf_putc(out, '"'); return;
    case EXPR_TIMESTAMPTZ: buf_putc(out, '"'); put_timestamp(out, v->i); buf_putc(out, '"'); return;
    case EXPR_JSONB: buf_put(out, v->s, v->len); return;
    }
    buf_puts(out, "null");
}

void schema_write_json(const ev_schema *s, const char *data, size_t len, buf *out)
{
    buf_putc(out, '{');
    for (uint32_t i = 0; i < s->nfields; i++) {
        expr_value v;
        schema_get(s, data, len, i, &v);
        if (i)
            buf_putc(out, ',');
        json_put_string(out, s->fields[i].name, strlen(s->fields[i].name));
        buf_putc(out, ':');
        schema_put_value_json(out, &v);
    }
    buf_putc(out, '}');
}

void schema_write_slots_json(const ev_schema *s, const expr_value *slots, buf *out)
{
    buf_putc(out, '{');
    for (uint32_t i = 0; i < s->nfields; i++) {
        if (i)
            buf_putc(out, ',');
        json_put_string(out, s->fields[i].name, strlen(s->fields[i].name));
        buf_putc(out, ':');
        schema_put_value_json(out, &slots[i]);
    }
    buf_putc(out, '}');
}

/* ------------------------------------------------------------ schema JSON */

/* Index of the next check from k on written on field (NULL: table checks),
 * or nchecks.  A field's checks, and the table checks, keep their order
 * through schema_to_json and schema_from_json; checks on different fields
 * interleave freely (each is evaluated alone). */
static uint32_t next_check(const ev_schema *s, const char *field, uint32_t k)
{
    for (; k < s->nchecks; k++) {
        const char *f = s->checks[k].field;
        if (field ? f && strcmp(f, field) == 0 : !f)
            return k;
    }
    return s->nchecks;
}

static uint32_t count_checks(const ev_schema *s, const char *field)
{
    uint32_t n = 0;
    for (uint32_t k = next_check(s, field, 0); k < s->nchecks; k = next_check(s, field, k + 1))
        n++;
    return n;
}

static void put_cstring(buf *out, const char *s) { json_put_string(out, s, strlen(s)); }

/* The checks written on field (NULL: table checks) as a JSON array. */
static void put_check_list(buf *out, const ev_schema *s, const char *field)
{
    buf_putc(out, '[');
    for (uint32_t k = next_check(s, field, 0), n = 0; k < s->nchecks; k = next_check(s, field, k + 1), n++) {
        if (n)
            buf_putc(out, ',');
        put_cstring(out, s->checks[k].sql);
    }
    buf_putc(out, ']');
}

void schema_to_json(const ev_schema *s, buf *out)
{
    buf_puts(out, "{\"name\":");
    put_cstring(out, s->name);
    buf_puts(out, ",\"fields\":[");
    for (uint32_t i = 0; i < s->nfields; i++) {
        const schema_field *f = &s->fields[i];
        buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
        put_cstring(out, f->name);
        buf_puts(out, ",\"type\":");
        put_cstring(out, expr_type_name(f->type));
        buf_puts(out, f->not_null ? ",\"not_null\":true" : ",\"not_null\":false");
        if (f->has_default) {
            buf_puts(out, ",\"default\":");
            put_cstring(out, f->default_sql);
        }
        uint32_t nc = count_checks(s, f->name);
        if (nc == 1) {
            buf_puts(out, ",\"check\":");
            put_cstring(out, s->checks[next_check(s, f->name, 0)].sql);
        } else if (nc > 1) {
            buf_puts(out, ",\"check\":");
            put_check_list(out, s, f->name);
        }
        buf_putc(out, '}');
    }
    buf_puts(out, "],\"checks\":");
    put_check_list(out, s, NULL);
    buf_putc(out, '}');
}

/* Reading the schema JSON: every member is checked, errors name the path. */
typedef struct sj {
    const json_doc *d;
    payi_err *err;
    buf str;
} sj;

static payi_code sj_fail(sj *j, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static payi_code sj_fail(sj *j, const char *path, const char *fmt, ...)
{
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return payi_err_set(j->err, PAYI_VALIDATION, path, "schema JSON: %s: %s", path, m);
}

/* String node i decoded into j->str; refuses other kinds and U+0000. */
static payi_code sj_string(sj *j, uint32_t i, const char *path)
{
    if (j->d->nodes[i].kind != JSON_STRING)
        return sj_fail(j, path, "expected a string, got %s", json_kind_name(j->d->nodes[i].kind));
    if (!json_get_string(j->d, i, &j->str))
        return sj_fail(j, path, "unreadable string");
    if (memchr(j->str.data, 0, j->str.len))
        return sj_fail(j, path, "contains U+0000");
    return PAYI_OK;
}

/* Refuses members of object obj other than the allowed ones. */
static payi_code sj_known_keys(sj *j, uint32_t obj, const char *const *allowed, const char *path)
{
    const json_doc *d = j->d;
    uint32_t key = obj + 1;
    for (uint32_t m = 0; m < d->nodes[obj].count; m++, key = d->nodes[key + 1].next) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = json_string_eq(d, key, *a);
        if (!ok) {
            char snip[SNIPPET_MAX + 8];
            snippet(d, key, snip, sizeof snip);
            return sj_fail(j, path, "unknown member %s", snip);
        }
    }
    return PAYI_OK;
}

/* A field's "check": a string, or an array of strings for several.  The
 * checks are added once every field exists (they may name later fields). */
static payi_code sj_field_checks(sj *j, ev_schema *s, const char *field, uint32_t c, const char *path)
{
    const json_doc *d = j->d;
    if (c == UINT32_MAX)
        return PAYI_OK;
    uint32_t n = d->nodes[c].kind == JSON_ARRAY ? d->nodes[c].count : 1;
    uint32_t it = d->nodes[c].kind == JSON_ARRAY ? c + 1 : c;
    for (uint32_t k = 0; k < n; k++, it = d->nodes[it].next) {
        payi_code rc = sj_string(j, it, path);
        if (rc != PAYI_OK)
            return rc;
        if (schema_add_check(s, field, j->str.data, j->str.len, j->err) != PAYI_OK) {
            if (j->err)
                snprintf(j->err->field, sizeof j->err->field, "%s", path);
            return PAYI_VALIDATION;
        }
    }
    return PAYI_OK;
}

static payi_code sj_field(sj *j, ev_schema *s, uint32_t f, uint32_t idx)
{
    static const char *const allowed[] = {"name", "type", "not_null", "default", "check", NULL};
    const json_doc *d = j->d;
    char path[48];
    snprintf(path, sizeof path, "fields[%u]", idx);
    if (d->nodes[f].kind != JSON_OBJECT)
        return sj_fail(j, path, "expected an object, got %s", json_kind_name(d->nodes[f].kind));
    payi_code rc = sj_known_keys(j, f, allowed, path);
    if (rc != PAYI_OK)
        return rc;
    uint32_t name = json_object_get(d, f, "name"), type = json_object_get(d, f, "type");
    uint32_t nn = json_object_get(d, f, "not_null"), def = json_object_get(d, f, "default");
    if (name == UINT32_MAX || type == UINT32_MAX)
        return sj_fail(j, path, "\"name\" and \"type\" are required");
    bool not_null = false;
    if (nn != UINT32_MAX) {
        if (d->nodes[nn].kind != JSON_TRUE && d->nodes[nn].kind != JSON_FALSE)
            return sj_fail(j, path, "\"not_null\" must be true or false");
        not_null = d->nodes[nn].kind == JSON_TRUE;
    }
    if ((rc = sj_string(j, type, path)) != PAYI_OK)
        return rc;
    int t = type_from_name(j->str.data);
    if (!t)
        return sj_fail(j, path, "unknown type \"%.60s\" (expected boolean, bigint, double precision, text, date, "
                       "timestamp with time zone or jsonb)", j->str.data);
    char *def_sql = NULL;
    size_t def_len = 0;
    if (def != UINT32_MAX) {
        if ((rc = sj_string(j, def, path)) != PAYI_OK)
            return rc;
        def_len = j->str.len;
        def_sql = xstrndup(j->str.data, def_len);
    }
    if ((rc = sj_string(j, name, path)) == PAYI_OK &&
        schema_add_field(s, j->str.data, j->str.len, (expr_type)t, not_null, def_sql, def_len, j->err) != PAYI_OK) {
        if (j->err)
            snprintf(j->err->field, sizeof j->err->field, "%s", path);
        rc = PAYI_VALIDATION;
    }
    free(def_sql);
    return rc;
}

payi_code schema_from_json(const json_doc *d, uint32_t obj, ev_schema **out, payi_err *err)
{
    static const char *const allowed[] = {"name", "fields", "checks", NULL};
    sj j = {d, err, BUF_INIT};
    ev_schema *s = NULL;
    payi_code rc;
    *out = NULL;
    if (obj >= d->n || d->nodes[obj].kind != JSON_OBJECT) {
        rc = payi_err_set(err, PAYI_VALIDATION, NULL, "schema JSON: expected an object");
        goto done;
    }
    if ((rc = sj_known_keys(&j, obj, allowed, "schema")) != PAYI_OK)
        goto done;
    uint32_t name = json_object_get(d, obj, "name"), fields = json_object_get(d, obj, "fields");
    uint32_t checks = json_object_get(d, obj, "checks");
    if (name == UINT32_MAX || (rc = sj_string(&j, name, "name")) != PAYI_OK) {
        rc = name == UINT32_MAX ? sj_fail(&j, "name", "required") : rc;
        goto done;
    }
    s = schema_new(j.str.data, j.str.len);
    if (fields == UINT32_MAX || d->nodes[fields].kind != JSON_ARRAY) {
        rc = sj_fail(&j, "fields", "required, an array of field objects");
        goto done;
    }
    if (checks != UINT32_MAX && d->nodes[checks].kind != JSON_ARRAY) {
        rc = sj_fail(&j, "checks", "expected an array of strings");
        goto done;
    }
    uint32_t f = fields + 1;
    for (uint32_t i = 0; i < d->nodes[fields].count; i++, f = d->nodes[f].next)
        if ((rc = sj_field(&j, s, f, i)) != PAYI_OK)
            goto done;
    f = fields + 1;
    for (uint32_t i = 0; i < d->nodes[fields].count; i++, f = d->nodes[f].next) {
        char path[48];
        snprintf(path, sizeof path, "fields[%u].check", i);
        if ((rc = sj_field_checks(&j, s, s->fields[i].name, json_object_get(d, f, "check"), path)) != PAYI_OK)
            goto done;
    }
    if (checks != UINT32_MAX) {
        uint32_t c = checks + 1;
        for (uint32_t k = 0; k < d->nodes[checks].count; k++, c = d->nodes[c].next) {
            char path[48];
            snprintf(path, sizeof path, "checks[%u]", k);
            if (d->nodes[c].kind != JSON_STRING) {   /* one string per table CHECK */
                rc = sj_fail(&j, path, "expected a string, got %s", json_kind_name(d->nodes[c].kind));
                goto done;
            }
            if ((rc = sj_field_checks(&j, s, NULL, c, path)) != PAYI_OK)
                goto done;
        }
    }
    *out = s;
    s = NULL;
    rc = PAYI_OK;
done:
    schema_free(s);
    buf_release(&j.str);
    return rc;
}

static bool same_str(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* The checks written on field (NULL: table checks) are the same, in order. */
static bool same_checks(const ev_schema *a, const ev_schema *b, const char *field)
{
    uint32_t i = next_check(a, field, 0), k = next_check(b, field, 0);
    for (; i < a->nchecks && k < b->nchecks; i = next_check(a, field, i + 1), k = next_check(b, field, k + 1))
        if (strcmp(a->checks[i].sql, b->checks[k].sql) != 0)
            return false;
    return i == a->nchecks && k == b->nchecks;
}

bool schema_same(const ev_schema *a, const ev_schema *b)
{
    if (strcmp(a->name, b->name) != 0 || a->nfields != b->nfields || a->nchecks != b->nchecks)
        return false;
    for (uint32_t i = 0; i < a->nfields; i++) {
        const schema_field *x = &a->fields[i], *y = &b->fields[i];
        if (strcmp(x->name, y->name) != 0 || x->type != y->type || x->not_null != y->not_null ||
            x->has_default != y->has_default || !same_str(x->default_sql, y->default_sql) ||
            !same_checks(a, b, x->name))
            return false;
    }
    return same_checks(a, b, NULL);
}
