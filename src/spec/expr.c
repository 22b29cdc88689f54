/* expr.c — SQL scalar expressions: parse with libpg_query, compile to a
 * typed tree, evaluate with PostgreSQL semantics.
 *
 * Design.
 *
 * Parsing.  The text is wrapped as "SELECT <text>" and handed to
 * pg_query_parse; its JSON parse tree is read with base/json.h.  Exactly one
 * SELECT with exactly one unnamed target and nothing else (no FROM, WHERE,
 * UNION, second statement...) is accepted, so no text can smuggle in more
 * than an expression.  Each raw node is compiled once into an enode; the
 * libpg_query result is freed before expr_parse returns, on every path.
 *
 * Nodes.  An expr is a flat array of enodes; children are indexes (a, b, c,
 * or a run in e->args for variadic nodes).  Every node's result type is fixed
 * at compile time, and operators are chosen by operand type at compile time
 * (OP_ADD_I vs OP_ADD_F, ...), so evaluation is one switch per node and
 * never looks up types or names.  Implicit conversions (bigint -> double,
 * date -> timestamptz) are explicit OP_CAST nodes inserted by the compiler.
 * String and NULL literals are "unknown" as in PostgreSQL: they take the type
 * of the other operand and are converted once at compile time, so
 * `day <= '2020-03-11'` compares dates and `1 + 'a'` fails at parse time.
 *
 * Values.  expr_value is 16 bytes: type, null flag, length and a union.
 * bigint, boolean, double, date and timestamptz live in the union, so those
 * paths never allocate.  Computed text is bump-allocated in the expr_ctx
 * arena (blocks kept across expr_ctx_reset); substr and jsonb access return
 * slices of their input where they can.  Constants live in the expr's own
 * arena.
 *
 * NULL rules (as PostgreSQL): operators and functions return NULL when an
 * argument is NULL, after evaluating every argument (so `NULL + 1/0` is still
 * an error); AND/OR are three-valued and stop at the first FALSE/TRUE; CASE,
 * COALESCE stop at the first match; IN is TRUE on a match, else NULL if any
 * side was NULL, else FALSE; IS [NOT] DISTINCT FROM treats NULL as a value.
 *
 * Errors.  Every message ends with " (at N)", N the 0-based byte offset into
 * the caller's text of the construct at fault (libpg_query locations minus
 * the 7 bytes of "SELECT "; its syntax-error cursor, a 1-based character
 * count, is converted to bytes).  expr_compile_node compiles a node of a
 * tree its caller parsed (a view's SELECT): there the text is the whole
 * statement and locations are used as they are (base 0).  Run-time errors carry the position of the
 * operator or function that failed.
 *
 * Deliberate differences from PostgreSQL, chosen for a typed event engine:
 * integer and numeric literals are bigint and double precision (there is no
 * numeric type; int/int4/numeric casts map to bigint/double); text compares
 * bytewise (C collation) and lower/upper map ASCII only; the time zone is
 * always UTC; dates range over years 1..9999; intervals exist only as
 * literals in timestamptz +/- interval and date_bin; a jsonb string cast to
 * text is its content without quotes (what ->> gives).
 */
#include "spec/expr.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pg_query.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#define NONE UINT32_MAX
#define T_INTERVAL 100   /* compile-time only: an interval literal */
#define DAY_US 86400000000LL
#define PREFIX "SELECT "
#define PREFIX_LEN 7
#define MAX_JSON_DEPTH 400   /* bounds compile and eval recursion */

enum op {
    OP_CONST, OP_COL, OP_IVCONST,
    OP_AND, OP_OR, OP_NOT, OP_ISNULL, OP_ISNOTNULL, OP_BOOLTEST,
    OP_CMP, OP_DISTINCT, OP_IN, OP_BETWEEN,
    OP_ADD_I, OP_SUB_I, OP_MUL_I, OP_DIV_I, OP_MOD_I, OP_NEG_I,
    OP_ADD_F, OP_SUB_F, OP_MUL_F, OP_DIV_F, OP_MOD_F, OP_NEG_F,
    OP_DATE_ADDI, OP_DATE_SUBI, OP_DATE_DIFF, OP_TS_IV,
    OP_CONCAT, OP_CASE, OP_COALESCE, OP_NULLIF, OP_GREATEST, OP_LEAST,
    OP_CAST, OP_JSON_GET, OP_FUNC,
};

enum cmp { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
enum func {
    F_LOWER, F_UPPER, F_LENGTH, F_SUBSTR, F_ABS, F_ROUND, F_FLOOR, F_CEIL,
    F_DATE_TRUNC, F_EXTRACT, F_DATE_BIN,
};
enum unit {
    U_MICROSECOND, U_SECOND, U_MINUTE, U_HOUR, U_DAY, U_WEEK, U_MONTH, U_QUARTER, U_YEAR,
    U_DOW, U_ISODOW, U_DOY, U_EPOCH, U_ISOYEAR, U_NONE
};

typedef struct enode {
    uint16_t op;
    uint8_t type;      /* result type (expr_type or T_INTERVAL) */
    uint8_t sub;       /* cmp kind, func id, negation, sign, json-as-text ... */
    uint8_t unknown;   /* an untyped literal (string or NULL) not yet resolved */
    uint8_t unit;      /* date_trunc / extract unit */
    uint32_t pos;      /* byte offset in the expression text */
    uint32_t a, b, c;
    uint32_t args, nargs;
    int32_t ivm, ivd;  /* interval months, days (k.i holds microseconds) */
    expr_value k;      /* constant; OP_COL: k.i is the slot */
} enode;

struct expr {
    enode *n;
    size_t nn, ncap;
    uint32_t *args;
    size_t na, acap;
    uint32_t root;
    expr_ctx kctx;     /* owns constant text */
};

struct expr_arena_blk {
    expr_arena_blk *next;
    size_t cap, used;
    char data[];
};

/* ------------------------------------------------------------------ errors */

static bool failv(payi_err *err, uint32_t pos, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static bool failv(payi_err *err, uint32_t pos, const char *fmt, va_list ap)
{
    char m[400];
    vsnprintf(m, sizeof m, fmt, ap);
    payi_err_set(err, PAYI_VALIDATION, NULL, "%s (at %u)", m, pos);
    return false;
}

static bool fail(payi_err *err, uint32_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(payi_err *err, uint32_t pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    failv(err, pos, fmt, ap);
    va_end(ap);
    return false;
}

bool expr_error_pos(const payi_err *err, size_t *pos)
{
    /* Only the suffix that ends the message: a message may quote a client's
     * text, which may hold "(at 1)" too (a key named so, in "unknown
     * field"), and callers strip what this finds. */
    const char *at = strrchr(err->msg, '(');
    unsigned long v;
    int end = -1;
    if (!at || at == err->msg || at[-1] != ' ' || strncmp(at, "(at ", 4) != 0 || at[4] < '0' || at[4] > '9' ||
        sscanf(at + 4, "%lu)%n", &v, &end) != 1 || end < 0 || at[4 + end] != '\0')
        return false;
    *pos = v;
    return true;
}

const char *expr_type_name(expr_type t)
{
    switch ((int)t) {
    case EXPR_BOOL: return "boolean";
    case EXPR_BIGINT: return "bigint";
    case EXPR_DOUBLE: return "double precision";
    case EXPR_TEXT: return "text";
    case EXPR_DATE: return "date";
    case EXPR_TIMESTAMPTZ: return "timestamp with time zone";
    case EXPR_JSONB: return "jsonb";
    case T_INTERVAL: return "interval";
    }
    return "unknown";
}

/* ------------------------------------------------------------------- arena */

void expr_ctx_init(expr_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->jd = (json_doc)JSON_DOC_INIT;
}

void expr_ctx_reset(expr_ctx *ctx)
{
    for (expr_arena_blk *b = ctx->first; b; b = b->next)
        b->used = 0;
    ctx->cur = ctx->first;
}

void expr_ctx_release(expr_ctx *ctx)
{
    expr_arena_blk *b = ctx->first;
    while (b) {
        expr_arena_blk *nx = b->next;
        free(b);
        b = nx;
    }
    json_doc_release(&ctx->jd);
    buf_release(&ctx->scratch);
    memset(ctx, 0, sizeof *ctx);
}

static char *arena_alloc(expr_ctx *ctx, size_t n)
{
    expr_arena_blk *b = ctx->cur;
    while (b) {
        if (b->cap - b->used >= n) {
            char *p = b->data + b->used;
            b->used += n;
            ctx->cur = b;
            return p;
        }
        if (!b->next)
            break;
        b = b->next;
    }
    size_t cap = b ? b->cap * 2 : 4096;
    if (cap < n)
        cap = n;
    expr_arena_blk *nb = xmalloc(sizeof *nb + cap);
    nb->next = NULL;
    nb->cap = cap;
    nb->used = n;
    if (b)
        b->next = nb;
    else
        ctx->first = nb;
    ctx->cur = nb;
    return nb->data;
}

char *expr_ctx_alloc(expr_ctx *ctx, size_t n) { return arena_alloc(ctx, n ? n : 1); }

/* ---------------------------------------------------------------- calendar */

static int64_t floordiv(int64_t a, int64_t b) { int64_t q = a / b; return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q; }

int64_t expr_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    /* Count in 400-year eras starting on March 1st so that the leap day is
     * the last day of a "year". */
    y -= m <= 2;
    int64_t era = floordiv(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void expr_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = days + 719468;
    int64_t era = floordiv(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
static unsigned mdays(int64_t y, unsigned m)
{
    static const unsigned char n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : n[m - 1];
}

#define DATE_MIN (-719162)   /* 0001-01-01 */
#define DATE_MAX 2932896     /* 9999-12-31 */
#define TS_MIN ((int64_t)DATE_MIN * DAY_US)
#define TS_MAX ((int64_t)(DATE_MAX + 1) * DAY_US - 1)

static bool date_ok(int64_t d) { return d >= DATE_MIN && d <= DATE_MAX; }
static bool ts_ok(int64_t t) { return t >= TS_MIN && t <= TS_MAX; }

static void trim(const char **s, size_t *len)
{
    while (*len && isspace((unsigned char)**s))
        (*s)++, (*len)--;
    while (*len && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* Reads 1..maxd digits at s[*i]; false when none. */
static bool digits(const char *s, size_t len, size_t *i, unsigned maxd, int64_t *v)
{
    size_t st = *i;
    int64_t x = 0;
    while (*i < len && *i - st < maxd && s[*i] >= '0' && s[*i] <= '9')
        x = x * 10 + (s[(*i)++] - '0');
    *v = x;
    return *i > st;
}

static bool parse_ymd(const char *s, size_t len, size_t *i, int64_t *days)
{
    int64_t y, m, d;
    size_t st = *i;
    if (!digits(s, len, i, 4, &y) || *i - st != 4 || *i >= len || s[(*i)++] != '-' ||
        !digits(s, len, i, 2, &m) || *i >= len || s[(*i)++] != '-' || !digits(s, len, i, 2, &d))
        return false;
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays(y, (unsigned)m))
        return false;
    *days = expr_days_from_civil(y, (unsigned)m, (unsigned)d);
    return true;
}

/* The part of a clock time after "hh:": mm[:ss[.ffffff]], with digits past
 * the microsecond dropped.  *i moves past what was read. */
static bool parse_clock_tail(const char *s, size_t len, size_t *i, int64_t *mi, int64_t *sec, int64_t *frac)
{
    *sec = *frac = 0;
    if (!digits(s, len, i, 2, mi))
        return false;
    if (*i < len && s[*i] == ':') {
        (*i)++;
        if (!digits(s, len, i, 2, sec))
            return false;
        if (*i < len && s[*i] == '.') {
            size_t st = ++*i;
            if (!digits(s, len, i, 6, frac))
                return false;
            for (size_t k = *i - st; k < 6; k++)
                *frac *= 10;
            if (*i < len && s[*i] >= '5' && s[*i] <= '9')
                (*frac)++;   /* rounded to the microsecond, as PostgreSQL does (1000000 carries into the second) */
            while (*i < len && s[*i] >= '0' && s[*i] <= '9')
                (*i)++;
        }
    }
    return true;
}

bool expr_parse_date(const char *s, size_t len, int64_t *days)
{
    size_t i = 0;
    trim(&s, &len);
    return parse_ymd(s, len, &i, days) && i == len;
}

bool expr_parse_timestamptz(const char *s, size_t len, int64_t *us)
{
    size_t i = 0;
    int64_t days, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    trim(&s, &len);
    if (!parse_ymd(s, len, &i, &days))
        return false;
    if (i < len && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if (!digits(s, len, &i, 2, &h) || i >= len || s[i++] != ':' || !parse_clock_tail(s, len, &i, &mi, &sec, &frac))
            return false;
        if (h > 23 || mi > 59 || sec > 59)
            return false;
    }
    while (i < len && s[i] == ' ')
        i++;
    if (i < len) {
        if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len)
            i++;
        else if (len - i == 3 && strncasecmp(s + i, "UTC", 3) == 0)
            i = len;
        else if (s[i] == '+' || s[i] == '-') {
            int sign = s[i++] == '-' ? -1 : 1;
            int64_t oh, om = 0;
            if (!digits(s, len, &i, 2, &oh))
                return false;
            if (i < len && s[i] == ':')
                i++;
            if (i < len && !digits(s, len, &i, 2, &om))
                return false;
            if (oh > 15 || om > 59)
                return false;
            off = sign * (oh * 3600 + om * 60) * 1000000LL;
        }
    }
    if (i != len)
        return false;
    int64_t t = days * DAY_US + ((h * 60 + mi) * 60 + sec) * 1000000LL + frac - off;
    if (!ts_ok(t))
        return false;
    *us = t;
    return true;
}

static void format_date(int64_t days, buf *out)
{
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(days, &y, &m, &d);
    buf_printf(out, "%04lld-%02u-%02u", (long long)y, m, d);
}

static void format_ts(int64_t us, buf *out)
{
    int64_t days = floordiv(us, DAY_US), r = us - days * DAY_US;
    format_date(days, out);
    int64_t secs = r / 1000000, f = r % 1000000;
    buf_printf(out, " %02d:%02d:%02d", (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    if (f) {
        char fb[8];
        snprintf(fb, sizeof fb, "%06d", (int)f);
        size_t n = 6;
        while (fb[n - 1] == '0')
            n--;
        buf_putc(out, '.');
        buf_put(out, fb, n);
    }
    buf_puts(out, "+00");
}

/* Shortest text that reads back as the same double, laid out the way
 * PostgreSQL's float8out does (fixed notation for exponents -4..14). */
static void format_double(double d, buf *out)
{
    if (isnan(d)) { buf_puts(out, "NaN"); return; }
    if (isinf(d)) { buf_puts(out, d < 0 ? "-Infinity" : "Infinity"); return; }
    if (d == 0) { buf_puts(out, signbit(d) ? "-0" : "0"); return; }
    char e[40];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d)
            break;
    }
    snprintf(e, sizeof e, "%.*e", p - 1, d);
    int ex = atoi(strchr(e, 'e') + 1);
    if (ex < -4 || ex >= 15) {
        buf_puts(out, e);
        return;
    }
    int dec = p - 1 - ex;
    buf_printf(out, "%.*f", dec < 0 ? 0 : dec, d);
}

void expr_value_format(const expr_value *v, buf *out)
{
    if (v->null) { buf_puts(out, "NULL"); return; }
    switch (v->type) {
    case EXPR_BOOL: buf_puts(out, v->b ? "true" : "false"); break;
    case EXPR_BIGINT: buf_put_i64(out, v->i); break;
    case EXPR_DOUBLE: format_double(v->d, out); break;
    case EXPR_TEXT: case EXPR_JSONB: buf_put(out, v->s, v->len); break;
    case EXPR_DATE: format_date(v->i, out); break;
    case EXPR_TIMESTAMPTZ: format_ts(v->i, out); break;
    default: buf_puts(out, "?"); break;
    }
}

/* --------------------------------------------------------------- intervals */

static bool parse_interval(const char *s, size_t len, int32_t *months, int32_t *days, int64_t *us)
{
    int64_t mo = 0, dd = 0, u = 0;
    size_t i = 0;
    bool any = false;
    for (;;) {
        while (i < len && isspace((unsigned char)s[i]))
            i++;
        if (i == len)
            break;
        int sign = 1;
        if (s[i] == '-' || s[i] == '+')
            sign = s[i++] == '-' ? -1 : 1;
        int64_t n;
        if (!digits(s, len, &i, 9, &n))
            return false;
        if (i < len && s[i] == ':') {   /* hh:mm[:ss[.ffffff]] */
            int64_t mi, sec, f;
            i++;
            if (!parse_clock_tail(s, len, &i, &mi, &sec, &f))
                return false;
            u += sign * (((n * 60 + mi) * 60 + sec) * 1000000LL + f);
            any = true;
            continue;
        }
        while (i < len && s[i] == ' ')
            i++;
        size_t w = i;
        while (i < len && isalpha((unsigned char)s[i]))
            i++;
        size_t wl = i - w;
        const char *word = s + w;
#define W(lit) (wl == sizeof(lit) - 1 && strncasecmp(word, lit, wl) == 0)
        n *= sign;
        if (W("microsecond") || W("microseconds") || W("us")) u += n;
        else if (W("millisecond") || W("milliseconds") || W("ms")) u += n * 1000;
        else if (W("second") || W("seconds") || W("sec") || W("secs") || W("s")) u += n * 1000000;
        else if (W("minute") || W("minutes") || W("min") || W("mins") || W("m")) u += n * 60000000LL;
        else if (W("hour") || W("hours") || W("hr") || W("hrs") || W("h")) u += n * 3600000000LL;
        else if (W("day") || W("days") || W("d")) dd += n;
        else if (W("week") || W("weeks") || W("w")) dd += n * 7;
        else if (W("month") || W("months") || W("mon") || W("mons")) mo += n;
        else if (W("year") || W("years") || W("yr") || W("yrs") || W("y")) mo += n * 12;
        else return false;
#undef W
        any = true;
        if (mo > INT32_MAX || mo < INT32_MIN || dd > INT32_MAX || dd < INT32_MIN)
            return false;
    }
    *months = (int32_t)mo;
    *days = (int32_t)dd;
    *us = u;
    return any;
}

static bool ts_add_interval(int64_t t, int sign, int32_t months, int32_t days, int64_t us, int64_t *out)
{
    if (months) {
        int64_t d = floordiv(t, DAY_US), r = t - d * DAY_US, y;
        unsigned m, dd;
        expr_civil_from_days(d, &y, &m, &dd);
        int64_t total = y * 12 + (m - 1) + (int64_t)sign * months;
        y = floordiv(total, 12);
        m = (unsigned)(total - y * 12 + 1);
        if (y < 1 || y > 9999)
            return false;
        if (dd > mdays(y, m))
            dd = mdays(y, m);
        t = expr_days_from_civil(y, m, dd) * DAY_US + r;
    }
    int64_t delta;
    if (__builtin_mul_overflow((int64_t)days, DAY_US, &delta) || __builtin_add_overflow(delta, us, &delta) ||
        __builtin_mul_overflow(delta, (int64_t)sign, &delta) || __builtin_add_overflow(t, delta, &t) || !ts_ok(t))
        return false;
    *out = t;
    return true;
}

/* ------------------------------------------------------------------- casts */

static bool cast_ok(int from, int to)
{
    if (from == to || to == EXPR_TEXT || from == EXPR_TEXT)
        return from != T_INTERVAL && to != T_INTERVAL;
    switch (from) {
    case EXPR_BIGINT: return to == EXPR_DOUBLE || to == EXPR_BOOL;
    case EXPR_DOUBLE: return to == EXPR_BIGINT;
    case EXPR_BOOL: return to == EXPR_BIGINT;
    case EXPR_DATE: return to == EXPR_TIMESTAMPTZ;
    case EXPR_TIMESTAMPTZ: return to == EXPR_DATE;
    case EXPR_JSONB: return to == EXPR_BIGINT || to == EXPR_DOUBLE || to == EXPR_BOOL;
    }
    return false;
}

static bool parse_bool(const char *s, size_t len, bool *b)
{
    trim(&s, &len);
    if (len == 0)
        return false;
#define PFX(lit, min) (len >= (min) && len <= sizeof(lit) - 1 && strncasecmp(s, lit, len) == 0)
    if (PFX("true", 1) || PFX("yes", 1) || PFX("on", 2) || (len == 1 && s[0] == '1')) { *b = true; return true; }
    if (PFX("false", 1) || PFX("no", 1) || PFX("off", 2) || (len == 1 && s[0] == '0')) { *b = false; return true; }
#undef PFX
    return false;
}

static double round_half_even_to_i(double d) { return rint(d); }

/* in is not NULL.  On failure writes the message (no position) into msg. */
static bool cast_value(const expr_value *in, int to, expr_ctx *ctx, expr_value *out, char *msg, size_t msz)
{
    expr_value v = {0};
    v.type = (uint8_t)to;
    if (in->type == to) {
        *out = *in;
        return true;
    }
    if (to == EXPR_TEXT && in->type == EXPR_JSONB && in->len >= 2 && in->s[0] == '"') {
        /* A JSON string becomes its content, as ->> gives it (PostgreSQL's
         * ::text would keep the quotes): the natural reading of a field of
         * an untyped event, `page::text`. */
        json_error je;
        if (json_parse(&ctx->jd, in->s, in->len, NULL, &je) && ctx->jd.nodes[0].kind == JSON_STRING) {
            buf *b = &ctx->scratch;
            if (!json_get_string(&ctx->jd, 0, b))
                goto nocast;
            char *p = arena_alloc(ctx, b->len ? b->len : 1);
            memcpy(p, b->data, b->len);
            *out = expr_text(p, b->len);
            return true;
        }
    }
    if (to == EXPR_TEXT) {
        buf *b = &ctx->scratch;
        buf_reset(b);
        expr_value_format(in, b);
        char *p = arena_alloc(ctx, b->len ? b->len : 1);
        memcpy(p, b->data, b->len);
        v.s = p;
        v.len = (uint32_t)b->len;
        *out = v;
        return true;
    }
    if (in->type == EXPR_TEXT) {
        const char *s = in->s;
        size_t len = in->len;
        switch (to) {
        case EXPR_BOOL:
            if (parse_bool(s, len, &v.b))
                break;
            goto bad;
        case EXPR_BIGINT: {
            trim(&s, &len);
            size_t i = 0;
            bool neg = false;
            if (i < len && (s[i] == '-' || s[i] == '+'))
                neg = s[i++] == '-';
            if (i == len)
                goto bad;
            uint64_t x = 0;
            for (; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                    goto bad;
                if (x > (UINT64_MAX - 9) / 10) { x = UINT64_MAX; continue; }
                x = x * 10 + (uint64_t)(s[i] - '0');
            }
            if (x > (uint64_t)INT64_MAX + neg) {
                snprintf(msg, msz, "value \"%.*s\" is out of range for type bigint", (int)(len > 100 ? 100 : len), s);
                return false;
            }
            v.i = neg ? (int64_t)(0 - x) : (int64_t)x;
            break;
        }
        case EXPR_DOUBLE: {
            trim(&s, &len);
            if (len == 0 || len > 300)
                goto bad;
            char tmp[320], *end;
            memcpy(tmp, s, len);
            tmp[len] = 0;
            errno = 0;
            v.d = strtod(tmp, &end);
            if (end != tmp + len)
                goto bad;
            if (errno == ERANGE && isinf(v.d)) {
                snprintf(msg, msz, "\"%.60s\" is out of range for type double precision", tmp);
                return false;
            }
            break;
        }
        case EXPR_DATE:
            if (expr_parse_date(s, len, &v.i))
                break;
            goto bad;
        case EXPR_TIMESTAMPTZ:
            if (expr_parse_timestamptz(s, len, &v.i))
                break;
            goto bad;
        case EXPR_JSONB: {
            json_error je;
            if (!json_parse(&ctx->jd, s, len, NULL, &je)) {
                snprintf(msg, msz, "invalid input syntax for type json: %s", je.msg);
                return false;
            }
            /* Compact, as decoded JSON and DEFAULTs are (schema.c): one jsonb
             * value, one encoding, whichever way it was made. */
            buf *b = &ctx->scratch;
            buf_reset(b);
            json_write_compact(&ctx->jd, 0, b);
            v.s = s;
            v.len = (uint32_t)b->len;
            if (b->len != len) {   /* compacting only drops bytes: same length, same text */
                char *p = arena_alloc(ctx, b->len);
                memcpy(p, b->data, b->len);
                v.s = p;
            }
            break;
        }
        default:
            goto nocast;
        }
        *out = v;
        return true;
    bad:
        snprintf(msg, msz, "invalid input syntax for type %s: \"%.*s\"", expr_type_name((expr_type)to),
                 (int)(in->len > 100 ? 100 : in->len), in->s);
        return false;
    }
    switch (in->type) {
    case EXPR_BIGINT:
        if (to == EXPR_DOUBLE) v.d = (double)in->i;
        else if (to == EXPR_BOOL) v.b = in->i != 0;
        else goto nocast;
        break;
    case EXPR_DOUBLE:
        if (to != EXPR_BIGINT)
            goto nocast;
        if (isnan(in->d) || !(round_half_even_to_i(in->d) >= -9223372036854775808.0 &&
                              round_half_even_to_i(in->d) < 9223372036854775808.0)) {
            snprintf(msg, msz, "bigint out of range");
            return false;
        }
        v.i = (int64_t)round_half_even_to_i(in->d);
        break;
    case EXPR_BOOL:
        if (to != EXPR_BIGINT)
            goto nocast;
        v.i = in->b;
        break;
    case EXPR_DATE:
        if (to != EXPR_TIMESTAMPTZ)
            goto nocast;
        v.i = in->i * DAY_US;
        break;
    case EXPR_TIMESTAMPTZ:
        if (to != EXPR_DATE)
            goto nocast;
        v.i = floordiv(in->i, DAY_US);
        break;
    case EXPR_JSONB: {
        json_error je;
        if (!json_parse(&ctx->jd, in->s, in->len, NULL, &je)) {
            snprintf(msg, msz, "invalid jsonb value");
            return false;
        }
        const json_node *r = &ctx->jd.nodes[0];
        static const char *const kinds[] = {"null", "boolean", "boolean", "number", "string", "array", "object"};
        if (to == EXPR_BOOL && (r->kind == JSON_TRUE || r->kind == JSON_FALSE)) {
            v.b = r->kind == JSON_TRUE;
            break;
        }
        if (to != EXPR_BOOL && r->kind == JSON_NUMBER) {
            double d;
            if (!json_get_double(&ctx->jd, 0, &d)) {
                snprintf(msg, msz, "%s out of range", expr_type_name((expr_type)to));
                return false;
            }
            if (to == EXPR_DOUBLE) {
                v.d = d;
                break;
            }
            if (json_get_int64(&ctx->jd, 0, &v.i))
                break;
            expr_value dv = expr_double(d);
            return cast_value(&dv, to, ctx, out, msg, msz);
        }
        snprintf(msg, msz, "cannot cast jsonb %s to type %s", kinds[r->kind], expr_type_name((expr_type)to));
        return false;
    }
    default:
        goto nocast;
    }
    *out = v;
    return true;
nocast:
    snprintf(msg, msz, "cannot cast type %s to %s", expr_type_name((expr_type)in->type), expr_type_name((expr_type)to));
    return false;
}

/* ---------------------------------------------------------------- compiler */

typedef struct cc {
    const json_doc *d;
    const char *text;     /* the caller's text */
    const char *q;        /* "SELECT " + text, as parsed */
    size_t len;
    uint32_t base;        /* bytes of q before text: PREFIX_LEN, or 0 for expr_compile_node */
    const expr_scope *scope;
    expr *e;
    payi_err *err;
    buf sb;
} cc;

static uint32_t new_node(cc *c, int op, int type, uint32_t pos)
{
    expr *e = c->e;
    e->n = xgrow(e->n, &e->ncap, e->nn + 1, sizeof *e->n);
    enode *n = &e->n[e->nn];
    memset(n, 0, sizeof *n);
    n->op = (uint16_t)op;
    n->type = (uint8_t)type;
    n->pos = pos;
    n->a = n->b = n->c = NONE;
    return (uint32_t)e->nn++;
}
#define N(i) (c->e->n[(i)])

static uint32_t push_args(cc *c, const uint32_t *v, size_t n)
{
    expr *e = c->e;
    e->args = xgrow(e->args, &e->acap, e->na + n + 1, sizeof *e->args);
    uint32_t at = (uint32_t)e->na;
    memcpy(e->args + at, v, n * sizeof *v);
    e->na += n;
    return at;
}

/* JSON helpers over libpg_query's tree: a node is {"Kind": {...}}. */
static bool unwrap(const json_doc *d, uint32_t i, uint32_t *key, uint32_t *body)
{
    if (i >= d->n || d->nodes[i].kind != JSON_OBJECT || d->nodes[i].count != 1)
        return false;
    *key = i + 1;
    *body = d->nodes[i + 1].next;
    return true;
}

static bool key_is(const json_doc *d, uint32_t key, const char *s)
{
    const json_node *k = &d->nodes[key];
    size_t n = strlen(s);
    return k->len == n + 2 && memcmp(d->src + k->start + 1, s, n) == 0;
}

static uint32_t get(const json_doc *d, uint32_t obj, const char *key)
{
    if (obj == NONE || obj >= d->n || d->nodes[obj].kind != JSON_OBJECT)
        return NONE;
    return json_object_get(d, obj, key);
}

/* Converts a libpg_query location into an offset in the caller's text. */
static uint32_t pos_of(cc *c, uint32_t body)
{
    int64_t loc;
    uint32_t l = get(c->d, body, "location");
    if (l == NONE || !json_get_int64(c->d, l, &loc) || loc < c->base)
        return NONE;
    loc -= c->base;
    return loc > (int64_t)c->len ? (uint32_t)c->len : (uint32_t)loc;
}

/* The first location found anywhere in a subtree (for constructs without one). */
static uint32_t first_pos(cc *c, uint32_t i)
{
    const json_doc *d = c->d;
    uint32_t end = d->nodes[i].next;
    for (uint32_t k = i; k + 1 < end; k++) {
        if (d->nodes[k].kind == JSON_STRING && key_is(d, k, "location") && d->nodes[k + 1].kind == JSON_NUMBER) {
            int64_t loc;
            if (json_get_int64(d, k + 1, &loc) && loc >= c->base)
                return (uint32_t)(loc - c->base > (int64_t)c->len ? (int64_t)c->len : loc - c->base);
        }
    }
    return 0;
}

static const char *get_str(cc *c, uint32_t i)
{
    if (i == NONE || !json_get_string(c->d, i, &c->sb))
        return "";
    return c->sb.data;
}

/* sval of a {"String":{"sval":...}} node. */
static const char *string_node(cc *c, uint32_t i)
{
    uint32_t k, b;
    if (!unwrap(c->d, i, &k, &b) || !key_is(c->d, k, "String"))
        return NULL;
    return get_str(c, get(c->d, b, "sval"));
}

/* Last element of a name list (drops "pg_catalog."), copied into out. */
static bool last_name(cc *c, uint32_t list, char *out, size_t osz)
{
    if (list == NONE || c->d->nodes[list].kind != JSON_ARRAY || c->d->nodes[list].count == 0)
        return false;
    uint32_t it = json_first_child(c->d, list), last = it;
    for (uint32_t k = 0; k < c->d->nodes[list].count; k++, it = json_next_sibling(c->d, it))
        last = it;
    const char *s = string_node(c, last);
    if (!s)
        return false;
    snprintf(out, osz, "%s", s);
    return true;
}

static char *own_text(cc *c, const char *s, size_t n)
{
    char *p = arena_alloc(&c->e->kctx, n ? n : 1);
    memcpy(p, s, n);
    return p;
}

static uint32_t compile(cc *c, uint32_t i);

/* Resolves an unknown literal or inserts an implicit cast so that node i has
 * type t.  implicit_only refuses conversions PostgreSQL would not do silently. */
static uint32_t coerce(cc *c, uint32_t i, int t, bool explicit_cast, uint32_t pos)
{
    enode *n = &N(i);
    if (n->type == t && !(n->unknown && n->op == OP_CONST && t != EXPR_TEXT)) {
        n->unknown = 0;
        return i;
    }
    if (n->unknown && n->op == OP_CONST) {
        char msg[300];
        expr_value v;
        if (n->k.null) {
            v = expr_null((expr_type)t);
        } else if (t == T_INTERVAL) {
            fail(c->err, n->pos, "interval values are only supported as literals (interval '1 day')");
            return NONE;
        } else if (!cast_value(&n->k, t, &c->e->kctx, &v, msg, sizeof msg)) {
            fail(c->err, n->pos, "%s", msg);
            return NONE;
        }
        n = &N(i);
        n->k = v;
        n->type = (uint8_t)t;
        n->unknown = 0;
        if (t == EXPR_JSONB && !v.null)
            n->k.type = EXPR_JSONB;
        return i;
    }
    bool ok = explicit_cast ? cast_ok(n->type, t)
                            : ((n->type == EXPR_BIGINT && t == EXPR_DOUBLE) ||
                               (n->type == EXPR_DATE && t == EXPR_TIMESTAMPTZ));
    if (!ok) {
        fail(c->err, pos, "cannot cast type %s to %s", expr_type_name((expr_type)n->type), expr_type_name((expr_type)t));
        return NONE;
    }
    uint32_t k = new_node(c, OP_CAST, t, pos);
    N(k).a = i;
    return k;
}

/* The common type of a set of nodes, PostgreSQL-style: unknown literals
 * follow the others; bigint+double -> double; date+timestamptz -> timestamptz. */
static int unify(cc *c, const uint32_t *v, size_t n, const char *what, uint32_t pos)
{
    int t = 0;
    for (size_t k = 0; k < n; k++) {
        const enode *x = &N(v[k]);
        if (x->unknown)
            continue;
        int u = x->type;
        if (!t || t == u) { t = u; continue; }
        if ((t == EXPR_BIGINT && u == EXPR_DOUBLE) || (t == EXPR_DOUBLE && u == EXPR_BIGINT)) { t = EXPR_DOUBLE; continue; }
        if ((t == EXPR_DATE && u == EXPR_TIMESTAMPTZ) || (t == EXPR_TIMESTAMPTZ && u == EXPR_DATE)) { t = EXPR_TIMESTAMPTZ; continue; }
        fail(c->err, x->pos, "%s types %s and %s cannot be matched", what, expr_type_name((expr_type)t), expr_type_name((expr_type)u));
        return 0;
    }
    if (t == T_INTERVAL) {
        fail(c->err, pos, "interval values are only supported in timestamptz +/- interval and date_bin");
        return 0;
    }
    return t ? t : EXPR_TEXT;
}

static bool coerce_all(cc *c, uint32_t *v, size_t n, int t)
{
    for (size_t k = 0; k < n; k++)
        if ((v[k] = coerce(c, v[k], t, false, N(v[k]).pos)) == NONE)
            return false;
    return true;
}

static bool need_bool(cc *c, uint32_t *i, const char *what)
{
    if (N(*i).unknown)
        return (*i = coerce(c, *i, EXPR_BOOL, false, N(*i).pos)) != NONE;
    if (N(*i).type != EXPR_BOOL)
        return fail(c->err, N(*i).pos, "argument of %s must be type boolean, not type %s", what,
                    expr_type_name((expr_type)N(*i).type));
    return true;
}

/* Compiles each element of a JSON array of expressions into v (max cap). */
static bool compile_list(cc *c, uint32_t list, uint32_t *v, size_t cap, size_t *n, uint32_t pos)
{
    *n = 0;
    if (list == NONE)
        return true;
    if (c->d->nodes[list].kind != JSON_ARRAY)
        return fail(c->err, pos, "unexpected parse tree");
    if (c->d->nodes[list].count > cap)
        return fail(c->err, pos, "too many arguments (more than %zu)", cap);
    uint32_t it = json_first_child(c->d, list);
    for (uint32_t k = 0; k < c->d->nodes[list].count; k++, it = json_next_sibling(c->d, it))
        if ((v[(*n)++] = compile(c, it)) == NONE)
            return false;
    return true;
}

static uint32_t mk2(cc *c, int op, int type, uint32_t pos, uint32_t a, uint32_t b)
{
    uint32_t k = new_node(c, op, type, pos);
    N(k).a = a;
    N(k).b = b;
    return k;
}

static uint32_t mk_cmp(cc *c, int cmp, uint32_t pos, uint32_t l, uint32_t r)
{
    uint32_t v[2] = {l, r};
    int t = unify(c, v, 2, "comparison", pos);
    if (!t)
        return NONE;
    if (t == EXPR_JSONB)
        return fail(c->err, pos, "operator does not exist: jsonb comparison"), NONE;
    if (!coerce_all(c, v, 2, t))
        return NONE;
    uint32_t k = mk2(c, OP_CMP, EXPR_BOOL, pos, v[0], v[1]);
    N(k).sub = (uint8_t)cmp;
    return k;
}

static uint32_t binop(cc *c, const char *op, uint32_t pos, uint32_t l, uint32_t r)
{
    static const struct { const char *s; int cmp; } cmps[] = {
        {"=", CMP_EQ}, {"<>", CMP_NE}, {"!=", CMP_NE}, {"<", CMP_LT}, {"<=", CMP_LE}, {">", CMP_GT}, {">=", CMP_GE}};
    for (size_t k = 0; k < sizeof cmps / sizeof cmps[0]; k++)
        if (strcmp(op, cmps[k].s) == 0)
            return mk_cmp(c, cmps[k].cmp, pos, l, r);
    if (strcmp(op, "||") == 0) {
        int lt = N(l).type, rt = N(r).type;
        if (lt == EXPR_JSONB || rt == EXPR_JSONB || lt == T_INTERVAL || rt == T_INTERVAL ||
            (lt != EXPR_TEXT && rt != EXPR_TEXT && !N(l).unknown && !N(r).unknown))
            return fail(c->err, pos, "operator does not exist: %s || %s", expr_type_name((expr_type)lt),
                        expr_type_name((expr_type)rt)), NONE;
        if ((l = coerce(c, l, EXPR_TEXT, true, pos)) == NONE || (r = coerce(c, r, EXPR_TEXT, true, pos)) == NONE)
            return NONE;
        return mk2(c, OP_CONCAT, EXPR_TEXT, pos, l, r);
    }
    if (strcmp(op, "->>") == 0 || strcmp(op, "->") == 0) {
        if ((l = coerce(c, l, EXPR_JSONB, false, pos)) == NONE)
            return NONE;
        if (N(r).unknown && (r = coerce(c, r, EXPR_TEXT, false, pos)) == NONE)
            return NONE;
        if (N(r).type != EXPR_TEXT && N(r).type != EXPR_BIGINT)
            return fail(c->err, pos, "operator does not exist: jsonb %s %s", op, expr_type_name((expr_type)N(r).type)), NONE;
        uint32_t k = mk2(c, OP_JSON_GET, op[2] ? EXPR_TEXT : EXPR_JSONB, pos, l, r);
        N(k).sub = op[2] != 0;
        return k;
    }
    int o = strlen(op) == 1 ? op[0] : 0;
    if (o != '+' && o != '-' && o != '*' && o != '/' && o != '%')
        return fail(c->err, pos, "operator %s is not supported", op), NONE;
    /* Unknown literals take the other side's type (bigint next to a date). */
    if (N(l).unknown && N(r).unknown) {
        if ((l = coerce(c, l, EXPR_BIGINT, false, pos)) == NONE || (r = coerce(c, r, EXPR_BIGINT, false, pos)) == NONE)
            return NONE;
    } else if (N(l).unknown || N(r).unknown) {
        uint32_t *u = N(l).unknown ? &l : &r;
        int ot = N(N(l).unknown ? r : l).type;
        int t = (ot == EXPR_DATE || ot == EXPR_TIMESTAMPTZ) && !(o == '-' && ot == EXPR_DATE && u == &r) ? EXPR_BIGINT : ot;
        if (ot == EXPR_TIMESTAMPTZ)
            t = T_INTERVAL;
        if ((*u = coerce(c, *u, t, false, pos)) == NONE)
            return NONE;
    }
    int lt = N(l).type, rt = N(r).type;
    bool ln = lt == EXPR_BIGINT || lt == EXPR_DOUBLE, rn = rt == EXPR_BIGINT || rt == EXPR_DOUBLE;
    if (ln && rn) {
        static const char ops[] = "+-*/%";
        int idx = (int)(strchr(ops, o) - ops);
        if (lt == EXPR_BIGINT && rt == EXPR_BIGINT)
            return mk2(c, OP_ADD_I + idx, EXPR_BIGINT, pos, l, r);
        if ((l = coerce(c, l, EXPR_DOUBLE, false, pos)) == NONE || (r = coerce(c, r, EXPR_DOUBLE, false, pos)) == NONE)
            return NONE;
        return mk2(c, OP_ADD_F + idx, EXPR_DOUBLE, pos, l, r);
    }
    if (o == '+' && lt == EXPR_DATE && rt == EXPR_BIGINT)
        return mk2(c, OP_DATE_ADDI, EXPR_DATE, pos, l, r);
    if (o == '+' && lt == EXPR_BIGINT && rt == EXPR_DATE)
        return mk2(c, OP_DATE_ADDI, EXPR_DATE, pos, r, l);
    if (o == '-' && lt == EXPR_DATE && rt == EXPR_BIGINT)
        return mk2(c, OP_DATE_SUBI, EXPR_DATE, pos, l, r);
    if (o == '-' && lt == EXPR_DATE && rt == EXPR_DATE)
        return mk2(c, OP_DATE_DIFF, EXPR_BIGINT, pos, l, r);
    if ((o == '+' || o == '-') && lt == EXPR_TIMESTAMPTZ && rt == T_INTERVAL) {
        uint32_t k = mk2(c, OP_TS_IV, EXPR_TIMESTAMPTZ, pos, l, NONE);
        N(k).sub = o == '-';
        N(k).ivm = N(r).ivm, N(k).ivd = N(r).ivd, N(k).k.i = N(r).k.i;
        return k;
    }
    if (o == '+' && lt == T_INTERVAL && rt == EXPR_TIMESTAMPTZ)
        return binop(c, op, pos, r, l);
    if (lt == EXPR_DATE && rt == T_INTERVAL)
        return fail(c->err, pos, "date %c interval is not supported; cast the date to timestamptz", o), NONE;
    return fail(c->err, pos, "operator does not exist: %s %c %s", expr_type_name((expr_type)lt), o,
                expr_type_name((expr_type)rt)), NONE;
}

static int type_from_name(const char *s)
{
    static const struct { const char *n; int t; } m[] = {
        {"int8", EXPR_BIGINT}, {"int4", EXPR_BIGINT}, {"int2", EXPR_BIGINT}, {"bigint", EXPR_BIGINT},
        {"integer", EXPR_BIGINT}, {"float8", EXPR_DOUBLE}, {"float4", EXPR_DOUBLE}, {"numeric", EXPR_DOUBLE},
        {"text", EXPR_TEXT}, {"varchar", EXPR_TEXT}, {"bpchar", EXPR_TEXT}, {"bool", EXPR_BOOL},
        {"date", EXPR_DATE}, {"timestamptz", EXPR_TIMESTAMPTZ}, {"jsonb", EXPR_JSONB}, {"json", EXPR_JSONB},
        {"interval", T_INTERVAL}};
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++)
        if (strcmp(s, m[k].n) == 0)
            return m[k].t;
    return 0;
}

static uint32_t compile_cast(cc *c, uint32_t body, uint32_t pos)
{
    uint32_t tn = get(c->d, body, "typeName"), arg = get(c->d, body, "arg");
    char name[64];
    uint32_t tpos = pos_of(c, tn);
    if (pos == NONE)
        pos = tpos != NONE ? tpos : first_pos(c, body);
    if (tpos == NONE)
        tpos = pos;
    if (!last_name(c, get(c->d, tn, "names"), name, sizeof name))
        return fail(c->err, pos, "unexpected parse tree"), NONE;
    int t = type_from_name(name);
    if (!t)
        return fail(c->err, tpos, "type %s is not supported", strcmp(name, "timestamp") == 0 ? "timestamp without time zone (use timestamptz)" : name), NONE;
    if (get(c->d, tn, "arrayBounds") != NONE)
        return fail(c->err, tpos, "array types are not supported"), NONE;
    if (get(c->d, tn, "typmods") != NONE)
        return fail(c->err, tpos, "type modifiers are not supported (%s(...))", name), NONE;
    if (t == T_INTERVAL) {
        uint32_t k, b;
        if (!unwrap(c->d, arg, &k, &b) || !key_is(c->d, k, "A_Const") || get(c->d, b, "sval") == NONE)
            return fail(c->err, pos, "interval values are only supported as literals (interval '1 day')"), NONE;
        const char *s = get_str(c, get(c->d, get(c->d, b, "sval"), "sval"));
        uint32_t n = new_node(c, OP_IVCONST, T_INTERVAL, pos);
        if (!parse_interval(s, strlen(s), &N(n).ivm, &N(n).ivd, &N(n).k.i))
            return fail(c->err, pos_of(c, b), "invalid input syntax for type interval: \"%.100s\"", s), NONE;
        return n;
    }
    uint32_t a = compile(c, arg);
    if (a == NONE)
        return NONE;
    if (N(a).type == t && !N(a).unknown)
        return a;
    return coerce(c, a, t, true, N(a).unknown ? N(a).pos : pos);
}

/* Integer constants: libpg_query 15-4.0.0 omits the value of a negative
 * integer (and of 0) in its JSON ("ival":{}), so read it from the text: the
 * location points at the minus sign that the grammar folded in. */
static bool int_from_source(cc *c, uint32_t pos, int64_t *v)
{
    const char *s = c->text;
    size_t i = pos, len = c->len;
    bool neg = false;
    while (i < len) {
        if (s[i] == '-' && i + 1 < len && s[i + 1] == '-') {
            while (i < len && s[i] != '\n')
                i++;
        } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
            const char *e = memmem(s + i + 2, len - i - 2, "*/", 2);
            i = e ? (size_t)(e - s) + 2 : len;
        } else if (s[i] == '-') {
            neg = !neg, i++;
        } else if (s[i] == '(' || isspace((unsigned char)s[i]) || s[i] == '+') {
            i++;
        } else {
            break;
        }
    }
    int64_t x = 0;
    size_t st = i;
    while (i < len && s[i] >= '0' && s[i] <= '9' && x < 1000000000000LL)
        x = x * 10 + (s[i++] - '0');
    if (i == st)
        return false;
    *v = neg ? -x : x;
    return true;
}

static uint32_t compile_const(cc *c, uint32_t b, uint32_t pos)
{
    const json_doc *d = c->d;
    uint32_t f;
    uint32_t n = new_node(c, OP_CONST, EXPR_TEXT, pos);
    if ((f = get(d, b, "isnull")) != NONE) {
        N(n).k = expr_null(EXPR_TEXT);
        N(n).unknown = 1;
    } else if ((f = get(d, b, "ival")) != NONE) {
        int64_t v;
        uint32_t iv = get(d, f, "ival");
        if (iv != NONE ? !json_get_int64(d, iv, &v) : !int_from_source(c, pos, &v))
            return fail(c->err, pos, "unsupported integer literal"), NONE;
        N(n).k = expr_int(v);
        N(n).type = EXPR_BIGINT;
    } else if ((f = get(d, b, "fval")) != NONE) {
        const char *s = get_str(c, get(d, f, "fval"));
        char *end;
        errno = 0;
        if (!strpbrk(s, ".eE")) {
            long long v = strtoll(s, &end, 10);
            if (errno == 0 && *end == 0) {
                N(n).k = expr_int(v);
                N(n).type = EXPR_BIGINT;
                return n;
            }
        }
        errno = 0;
        double v = strtod(s, &end);
        if (*end || (errno == ERANGE && isinf(v)))
            return fail(c->err, pos, "numeric literal out of range: %.60s", s), NONE;
        N(n).k = expr_double(v);
        N(n).type = EXPR_DOUBLE;
    } else if ((f = get(d, b, "sval")) != NONE) {
        uint32_t sv = get(d, f, "sval");
        if (sv != NONE && !json_get_string(d, sv, &c->sb))
            return fail(c->err, pos, "unexpected parse tree"), NONE;
        size_t l = sv != NONE ? c->sb.len : 0;
        N(n).k = expr_text(own_text(c, sv != NONE ? c->sb.data : "", l), l);
        N(n).unknown = 1;
    } else if ((f = get(d, b, "boolval")) != NONE) {
        uint32_t bv = get(d, f, "boolval");
        N(n).k = expr_bool(bv != NONE && d->nodes[bv].kind == JSON_TRUE);
        N(n).type = EXPR_BOOL;
    } else {
        return fail(c->err, pos, "bit-string literals are not supported"), NONE;
    }
    return n;
}

static int unit_from(const char *s)
{
    static const char *const names[] = {"microseconds", "second", "minute", "hour", "day", "week", "month",
                                        "quarter", "year", "dow", "isodow", "doy", "epoch", "isoyear"};
    char low[32];
    size_t n = strlen(s);
    if (n >= sizeof low)
        return U_NONE;
    for (size_t k = 0; k <= n; k++)
        low[k] = (char)tolower((unsigned char)s[k]);
    if (n > 1 && low[n - 1] == 's' && strcmp(low, "microseconds") != 0)
        low[n - 1] = 0;   /* "days" -> "day" */
    for (int k = 0; k < U_NONE; k++)
        if (strcmp(low, names[k]) == 0)
            return k;
    if (strcmp(low, "microsecond") == 0)
        return U_MICROSECOND;
    return U_NONE;
}

static bool is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static uint32_t compile_func(cc *c, uint32_t b, uint32_t pos)
{
    static const char *const aggs[] = {"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and",
                                       "bool_or", "every", "stddev", "stddev_pop", "stddev_samp", "variance",
                                       "var_pop", "var_samp", "json_agg", "jsonb_agg", "json_object_agg",
                                       "jsonb_object_agg", "bit_and", "bit_or", "percentile_cont",
                                       "percentile_disc", "mode", "first_value", "last_value", NULL};
    static const char *const volatile_fns[] = {"now", "current_timestamp", "clock_timestamp", "statement_timestamp",
                                               "transaction_timestamp", "timeofday", "random", "setseed",
                                               "gen_random_uuid", "nextval", "currval", "pg_sleep",
                                               "txid_current", "uuid_generate_v4", NULL};
    char name[64];
    if (!last_name(c, get(c->d, b, "funcname"), name, sizeof name))
        return fail(c->err, pos, "unexpected parse tree"), NONE;
    if (get(c->d, b, "over") != NONE)
        return fail(c->err, pos, "window functions are not supported in expressions (%s() OVER)", name), NONE;
    if (is_one_of(name, aggs) || get(c->d, b, "agg_star") != NONE || get(c->d, b, "agg_distinct") != NONE ||
        get(c->d, b, "agg_filter") != NONE || get(c->d, b, "agg_order") != NONE)
        return fail(c->err, pos, "aggregate function %s() is not allowed in a scalar expression", name), NONE;
    if (is_one_of(name, volatile_fns))
        return fail(c->err, pos, "%s() is not allowed: expressions must be deterministic so that a replay gives the same answer", name), NONE;
    if (get(c->d, b, "func_variadic") != NONE)
        return fail(c->err, pos, "VARIADIC is not supported"), NONE;
    uint32_t v[3];
    size_t n;
    uint32_t argl = get(c->d, b, "args");
    /* date_trunc/extract units must be literals: keep their text before compiling. */
    int unit = U_NONE;
    bool is_trunc = strcmp(name, "date_trunc") == 0, is_extract = strcmp(name, "extract") == 0 || strcmp(name, "date_part") == 0;
    if (argl != NONE && c->d->nodes[argl].kind != JSON_ARRAY)
        return fail(c->err, pos, "unexpected parse tree"), NONE;
    if (argl != NONE && c->d->nodes[argl].count > 3)
        return fail(c->err, pos, "function %s() with %u arguments is not supported", name, c->d->nodes[argl].count), NONE;
    if (!compile_list(c, argl, v, 3, &n, pos))
        return NONE;
    int f;
    size_t minn = 1, maxn = 1;
    if (strcmp(name, "lower") == 0) f = F_LOWER;
    else if (strcmp(name, "upper") == 0) f = F_UPPER;
    else if (strcmp(name, "length") == 0 || strcmp(name, "char_length") == 0 || strcmp(name, "character_length") == 0) f = F_LENGTH;
    else if (strcmp(name, "substr") == 0 || strcmp(name, "substring") == 0) f = F_SUBSTR, minn = 2, maxn = 3;
    else if (strcmp(name, "abs") == 0) f = F_ABS;
    else if (strcmp(name, "round") == 0) f = F_ROUND, maxn = 2;
    else if (strcmp(name, "floor") == 0) f = F_FLOOR;
    else if (strcmp(name, "ceil") == 0 || strcmp(name, "ceiling") == 0) f = F_CEIL;
    else if (is_trunc) f = F_DATE_TRUNC, minn = maxn = 2;
    else if (is_extract) f = F_EXTRACT, minn = maxn = 2;
    else if (strcmp(name, "date_bin") == 0) f = F_DATE_BIN, minn = maxn = 3;
    else if (strcmp(name, "coalesce") == 0 || strcmp(name, "nullif") == 0)
        return fail(c->err, pos, "unexpected parse tree"), NONE;
    else return fail(c->err, pos, "function %s() is not supported", name), NONE;
    if (n < minn || n > maxn)
        return fail(c->err, pos, "function %s() takes %zu%s argument%s, not %zu", name, minn,
                    maxn > minn ? " or more" : "", minn == 1 && maxn == 1 ? "" : "s", n), NONE;
    int rt;
#define ARGT(k) N(v[k]).type
    switch (f) {
    case F_LOWER: case F_UPPER: case F_LENGTH: case F_SUBSTR:
        if (!N(v[0]).unknown && ARGT(0) != EXPR_TEXT)
            return fail(c->err, pos, "function %s(%s) does not exist", name, expr_type_name((expr_type)ARGT(0))), NONE;
        if ((v[0] = coerce(c, v[0], EXPR_TEXT, false, pos)) == NONE)
            return NONE;
        for (size_t k = 1; k < n; k++)
            if ((v[k] = coerce(c, v[k], EXPR_BIGINT, false, pos)) == NONE)
                return NONE;
        rt = f == F_LENGTH ? EXPR_BIGINT : EXPR_TEXT;
        break;
    case F_ABS: case F_ROUND: case F_FLOOR: case F_CEIL:
        if (N(v[0]).unknown && (v[0] = coerce(c, v[0], EXPR_DOUBLE, false, pos)) == NONE)
            return NONE;
        if (ARGT(0) != EXPR_BIGINT && ARGT(0) != EXPR_DOUBLE)
            return fail(c->err, pos, "function %s(%s) does not exist", name, expr_type_name((expr_type)ARGT(0))), NONE;
        if (n == 2 && (v[1] = coerce(c, v[1], EXPR_BIGINT, false, pos)) == NONE)
            return NONE;
        if (n == 2 && (v[0] = coerce(c, v[0], EXPR_DOUBLE, false, pos)) == NONE)
            return NONE;
        rt = ARGT(0);
        break;
    case F_DATE_TRUNC: case F_EXTRACT: {
        const enode *u = &N(v[0]);
        if (u->op != OP_CONST || !u->unknown || u->k.null)
            return fail(c->err, pos, "%s: the unit must be a string literal", name), NONE;
        char ub[40];
        snprintf(ub, sizeof ub, "%.*s", (int)(u->k.len < 39 ? u->k.len : 39), u->k.s);
        unit = unit_from(ub);
        if (N(v[1]).unknown && (v[1] = coerce(c, v[1], EXPR_TIMESTAMPTZ, false, pos)) == NONE)
            return NONE;
        int at = ARGT(1);
        if (at != EXPR_DATE && at != EXPR_TIMESTAMPTZ)
            return fail(c->err, pos, "function %s(text, %s) does not exist", name, expr_type_name((expr_type)at)), NONE;
        if (f == F_DATE_TRUNC) {
            if (unit > U_YEAR)
                return fail(c->err, N(v[0]).pos, "unit \"%s\" not recognized for type timestamp with time zone", ub), NONE;
            if ((v[1] = coerce(c, v[1], EXPR_TIMESTAMPTZ, false, pos)) == NONE)
                return NONE;
            rt = EXPR_TIMESTAMPTZ;
        } else {
            if (unit == U_NONE)
                return fail(c->err, N(v[0]).pos, "unit \"%s\" not recognized for type %s", ub, expr_type_name((expr_type)at)), NONE;
            if (at == EXPR_DATE && unit <= U_HOUR)
                return fail(c->err, N(v[0]).pos, "unit \"%s\" not supported for type date", ub), NONE;
            rt = unit == U_EPOCH || unit == U_SECOND ? EXPR_DOUBLE : EXPR_BIGINT;
        }
        v[0] = v[1];
        n = 1;
        break;
    }
    case F_DATE_BIN: {
        if (ARGT(0) != T_INTERVAL)
            return fail(c->err, pos, "date_bin: the stride must be an interval literal"), NONE;
        if (N(v[0]).ivm)
            return fail(c->err, N(v[0]).pos, "timestamps cannot be binned into intervals containing months or years"), NONE;
        int64_t stride;
        if (__builtin_mul_overflow((int64_t)N(v[0]).ivd, DAY_US, &stride) || __builtin_add_overflow(stride, N(v[0]).k.i, &stride) || stride <= 0)
            return fail(c->err, N(v[0]).pos, "stride must be greater than zero"), NONE;
        for (int k = 1; k <= 2; k++)
            if ((v[k] = coerce(c, v[k], EXPR_TIMESTAMPTZ, false, pos)) == NONE)
                return NONE;
        uint32_t k = new_node(c, OP_FUNC, EXPR_TIMESTAMPTZ, pos);
        N(k).sub = F_DATE_BIN;
        N(k).k.i = stride;
        N(k).a = v[1];
        N(k).b = v[2];
        return k;
    }
    default:
        return NONE;
    }
    for (size_t k = 0; k < n; k++)
        if (N(v[k]).type == T_INTERVAL)
            return fail(c->err, pos, "interval values are not supported here"), NONE;
    uint32_t k = new_node(c, OP_FUNC, rt, pos);
    N(k).sub = (uint8_t)f;
    N(k).unit = (uint8_t)unit;
    N(k).a = v[0];
    N(k).b = n > 1 ? v[1] : NONE;
    N(k).c = n > 2 ? v[2] : NONE;
    return k;
}

static uint32_t compile_aexpr(cc *c, uint32_t b, uint32_t pos)
{
    const json_doc *d = c->d;
    char kind[40], op[16] = "";
    snprintf(kind, sizeof kind, "%s", get_str(c, get(d, b, "kind")));
    uint32_t lj = get(d, b, "lexpr"), rj = get(d, b, "rexpr");
    if (!last_name(c, get(d, b, "name"), op, sizeof op))
        op[0] = 0;
    if (strcmp(kind, "AEXPR_OP") == 0) {
        if (lj == NONE) {   /* prefix operator */
            uint32_t r = compile(c, rj);
            if (r == NONE)
                return NONE;
            if (strcmp(op, "+") != 0 && strcmp(op, "-") != 0)
                return fail(c->err, pos, "prefix operator %s is not supported", op), NONE;
            if (N(r).unknown && (r = coerce(c, r, EXPR_BIGINT, false, pos)) == NONE)
                return NONE;
            int t = N(r).type;
            if (t == T_INTERVAL && op[0] == '-') {
                N(r).ivm = -N(r).ivm, N(r).ivd = -N(r).ivd, N(r).k.i = -N(r).k.i;
                return r;
            }
            if (t != EXPR_BIGINT && t != EXPR_DOUBLE)
                return fail(c->err, pos, "operator does not exist: %s %s", op, expr_type_name((expr_type)t)), NONE;
            if (op[0] == '+')
                return r;
            return mk2(c, t == EXPR_BIGINT ? OP_NEG_I : OP_NEG_F, t, pos, r, NONE);
        }
        uint32_t l = compile(c, lj);
        if (l == NONE)
            return NONE;
        uint32_t r = compile(c, rj);
        if (r == NONE)
            return NONE;
        return binop(c, op, pos, l, r);
    }
    if (strcmp(kind, "AEXPR_DISTINCT") == 0 || strcmp(kind, "AEXPR_NOT_DISTINCT") == 0 ||
        strcmp(kind, "AEXPR_NULLIF") == 0) {
        uint32_t v[2];
        if ((v[0] = compile(c, lj)) == NONE || (v[1] = compile(c, rj)) == NONE)
            return NONE;
        bool nullif = kind[6] == 'N' && kind[7] == 'U';
        int t = unify(c, v, 2, nullif ? "NULLIF" : "IS DISTINCT FROM", pos);
        if (!t || !coerce_all(c, v, 2, t))
            return NONE;
        if (t == EXPR_JSONB)
            return fail(c->err, pos, "operator does not exist: jsonb = jsonb"), NONE;
        uint32_t k = mk2(c, nullif ? OP_NULLIF : OP_DISTINCT, nullif ? t : EXPR_BOOL, pos, v[0], v[1]);
        N(k).sub = kind[6] == 'N';   /* NOT DISTINCT */
        return k;
    }
    if (strcmp(kind, "AEXPR_IN") == 0 || strcmp(kind, "AEXPR_BETWEEN") == 0 || strcmp(kind, "AEXPR_NOT_BETWEEN") == 0) {
        bool in = kind[6] == 'I';
        uint32_t l = compile(c, lj);
        if (l == NONE)
            return NONE;
        uint32_t items = get(d, get(d, rj, "List"), "items");
        if (items == NONE)
            return fail(c->err, pos, "unexpected parse tree"), NONE;
        uint32_t v[257];
        size_t n;
        v[0] = l;
        if (!compile_list(c, items, v + 1, 256, &n, pos))
            return NONE;
        int t = unify(c, v, n + 1, in ? "IN" : "BETWEEN", pos);
        if (!t || !coerce_all(c, v, n + 1, t))
            return NONE;
        if (t == EXPR_JSONB)
            return fail(c->err, pos, "operator does not exist: jsonb = jsonb"), NONE;
        uint32_t k = new_node(c, in ? OP_IN : OP_BETWEEN, EXPR_BOOL, pos);
        N(k).a = v[0];
        N(k).args = push_args(c, v + 1, n);
        N(k).nargs = (uint32_t)n;
        N(k).sub = in ? strcmp(op, "<>") == 0 : kind[6] == 'N';
        return k;
    }
    static const struct { const char *k, *what; } names[] = {
        {"AEXPR_OP_ANY", "ANY (...)"}, {"AEXPR_OP_ALL", "ALL (...)"}, {"AEXPR_LIKE", "LIKE"},
        {"AEXPR_ILIKE", "ILIKE"}, {"AEXPR_SIMILAR", "SIMILAR TO"}, {"AEXPR_BETWEEN_SYM", "BETWEEN SYMMETRIC"},
        {"AEXPR_NOT_BETWEEN_SYM", "NOT BETWEEN SYMMETRIC"}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(kind, names[k].k) == 0)
            return fail(c->err, pos, "%s is not supported in expressions", names[k].what), NONE;
    return fail(c->err, pos, "%s is not supported in expressions", kind), NONE;
}

static uint32_t compile(cc *c, uint32_t i)
{
    const json_doc *d = c->d;
    uint32_t key, b;
    if (i == NONE || !unwrap(d, i, &key, &b))
        return fail(c->err, 0, "unexpected parse tree"), NONE;
    uint32_t pos = pos_of(c, b);
    uint32_t p0 = pos == NONE ? first_pos(c, b) : pos;
    if (key_is(d, key, "A_Const"))
        return compile_const(c, b, p0);
    if (key_is(d, key, "ColumnRef")) {
        uint32_t f = get(d, b, "fields");
        char name[256];
        size_t nl = 0;
        if (f == NONE || d->nodes[f].kind != JSON_ARRAY)
            return fail(c->err, p0, "unexpected parse tree"), NONE;
        uint32_t it = json_first_child(d, f);
        for (uint32_t k = 0; k < d->nodes[f].count; k++, it = json_next_sibling(d, it)) {
            const char *s = string_node(c, it);
            if (!s)
                return fail(c->err, p0, "* is not allowed in an expression"), NONE;
            int w = snprintf(name + nl, sizeof name - nl, "%s%s", k ? "." : "", s);
            if (w < 0 || (size_t)w >= sizeof name - nl)
                return fail(c->err, p0, "column name too long"), NONE;
            nl += (size_t)w;
        }
        for (size_t k = 0; c->scope && k < c->scope->n; k++) {
            if (strcmp(c->scope->cols[k].name, name) == 0) {
                uint32_t n = new_node(c, OP_COL, c->scope->cols[k].type, p0);
                N(n).k.i = (int64_t)k;
                return n;
            }
        }
        return fail(c->err, p0, "column \"%s\" does not exist", name), NONE;
    }
    if (key_is(d, key, "TypeCast"))
        return compile_cast(c, b, pos);
    if (key_is(d, key, "A_Expr"))
        return compile_aexpr(c, b, p0);
    if (key_is(d, key, "BoolExpr")) {
        char bop[16];
        snprintf(bop, sizeof bop, "%s", get_str(c, get(d, b, "boolop")));
        uint32_t v[256];   /* PostgreSQL flattens a AND b AND c into one node */
        size_t n;
        if (!compile_list(c, get(d, b, "args"), v, 256, &n, p0))
            return NONE;
        const char *what = bop[0] == 'A' ? "AND" : bop[0] == 'O' ? "OR" : "NOT";
        for (size_t k = 0; k < n; k++)
            if (!need_bool(c, &v[k], what))
                return NONE;
        if (bop[0] == 'N')
            return mk2(c, OP_NOT, EXPR_BOOL, p0, v[0], NONE);
        uint32_t k = new_node(c, bop[0] == 'A' ? OP_AND : OP_OR, EXPR_BOOL, p0);
        N(k).args = push_args(c, v, n);
        N(k).nargs = (uint32_t)n;
        return k;
    }
    if (key_is(d, key, "NullTest")) {
        uint32_t a = compile(c, get(d, b, "arg"));
        if (a == NONE)
            return NONE;
        if (N(a).unknown && (a = coerce(c, a, EXPR_TEXT, false, p0)) == NONE)
            return NONE;
        if (N(a).type == T_INTERVAL)
            return fail(c->err, p0, "interval values are only supported in timestamptz +/- interval and date_bin"), NONE;
        bool isnot = strcmp(get_str(c, get(d, b, "nulltesttype")), "IS_NOT_NULL") == 0;
        return mk2(c, isnot ? OP_ISNOTNULL : OP_ISNULL, EXPR_BOOL, p0, a, NONE);
    }
    if (key_is(d, key, "BooleanTest")) {
        static const char *const tests[] = {"IS_TRUE", "IS_NOT_TRUE", "IS_FALSE", "IS_NOT_FALSE", "IS_UNKNOWN", "IS_NOT_UNKNOWN", NULL};
        uint32_t a = compile(c, get(d, b, "arg"));
        if (a == NONE || !need_bool(c, &a, "IS TRUE"))
            return NONE;
        const char *t = get_str(c, get(d, b, "booltesttype"));
        int k;
        for (k = 0; tests[k] && strcmp(tests[k], t) != 0; k++)
            ;
        if (!tests[k])
            return fail(c->err, p0, "unexpected parse tree"), NONE;
        uint32_t r = mk2(c, OP_BOOLTEST, EXPR_BOOL, p0, a, NONE);
        N(r).sub = (uint8_t)k;
        return r;
    }
    if (key_is(d, key, "CaseExpr")) {
        uint32_t operand = NONE, whens = get(d, b, "args"), dj = get(d, b, "defresult");
        if (get(d, b, "arg") != NONE && (operand = compile(c, get(d, b, "arg"))) == NONE)
            return NONE;
        if (whens == NONE || d->nodes[whens].kind != JSON_ARRAY || d->nodes[whens].count > 64)
            return fail(c->err, p0, "CASE with more than 64 WHEN clauses is not supported"), NONE;
        uint32_t conds[64], res[65];
        size_t n = 0;
        uint32_t it = json_first_child(d, whens);
        for (uint32_t k = 0; k < d->nodes[whens].count; k++, it = json_next_sibling(d, it), n++) {
            uint32_t wk, wb;
            if (!unwrap(d, it, &wk, &wb))
                return fail(c->err, p0, "unexpected parse tree"), NONE;
            uint32_t cond = compile(c, get(d, wb, "expr"));
            if (cond == NONE)
                return NONE;
            if (operand != NONE) {
                /* CASE x WHEN v: the operand is pure, so it is re-evaluated per WHEN. */
                if ((cond = mk_cmp(c, CMP_EQ, N(cond).pos, operand, cond)) == NONE)
                    return NONE;
            } else if (!need_bool(c, &cond, "CASE/WHEN")) {
                return NONE;
            }
            conds[n] = cond;
            if ((res[n] = compile(c, get(d, wb, "result"))) == NONE)
                return NONE;
        }
        size_t nr = n;
        if (dj != NONE) {
            if ((res[nr++] = compile(c, dj)) == NONE)
                return NONE;
        }
        int t = unify(c, res, nr, "CASE", p0);
        if (!t || !coerce_all(c, res, nr, t))
            return NONE;
        uint32_t pairs[128];
        for (size_t k = 0; k < n; k++)
            pairs[2 * k] = conds[k], pairs[2 * k + 1] = res[k];
        uint32_t k = new_node(c, OP_CASE, t, p0);
        N(k).args = push_args(c, pairs, 2 * n);
        N(k).nargs = (uint32_t)n;
        N(k).c = dj != NONE ? res[n] : NONE;
        return k;
    }
    if (key_is(d, key, "CoalesceExpr") || key_is(d, key, "MinMaxExpr")) {
        bool coal = key_is(d, key, "CoalesceExpr");
        uint32_t v[64];
        size_t n;
        if (!compile_list(c, get(d, b, "args"), v, 64, &n, p0))
            return NONE;
        bool least = !coal && strcmp(get_str(c, get(d, b, "op")), "IS_LEAST") == 0;
        int t = unify(c, v, n, coal ? "COALESCE" : least ? "LEAST" : "GREATEST", p0);
        if (!t || !coerce_all(c, v, n, t))
            return NONE;
        if (!coal && t == EXPR_JSONB)
            return fail(c->err, p0, "could not identify a comparison function for type jsonb"), NONE;
        uint32_t k = new_node(c, coal ? OP_COALESCE : least ? OP_LEAST : OP_GREATEST, t, p0);
        N(k).args = push_args(c, v, n);
        N(k).nargs = (uint32_t)n;
        return k;
    }
    if (key_is(d, key, "FuncCall"))
        return compile_func(c, b, p0);
    if (key_is(d, key, "SubLink"))
        return fail(c->err, p0, "subqueries are not supported in expressions"), NONE;
    if (key_is(d, key, "SQLValueFunction"))
        return fail(c->err, p0, "%s is not allowed: expressions must be deterministic so that a replay gives the same answer",
                    "CURRENT_DATE/CURRENT_TIMESTAMP/LOCALTIMESTAMP"), NONE;
    static const struct { const char *k, *what; } names[] = {
        {"ParamRef", "parameters ($n)"}, {"A_ArrayExpr", "ARRAY constructors"}, {"RowExpr", "row constructors"},
        {"A_Indirection", "subscripts and field selection"}, {"CollateClause", "COLLATE"},
        {"GroupingFunc", "GROUPING()"}, {"XmlExpr", "XML functions"}, {"XmlSerialize", "XML functions"}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (key_is(d, key, names[k].k))
            return fail(c->err, p0, "%s are not supported in expressions", names[k].what), NONE;
    const json_node *kn = &d->nodes[key];
    return fail(c->err, p0, "%.*s is not supported in expressions", (int)(kn->len - 2), d->src + kn->start + 1), NONE;
}

/* Converts libpg_query's syntax-error cursor (1-based, in characters of the
 * whole query) to a byte offset in the caller's text. */
static uint32_t cursor_to_offset(const char *q, size_t qlen, int cursor)
{
    size_t i = 0;
    for (int ch = 1; ch < cursor && i < qlen; ch++) {
        i++;
        while (i < qlen && ((unsigned char)q[i] & 0xC0) == 0x80)
            i++;
    }
    return i < PREFIX_LEN ? 0 : (uint32_t)(i - PREFIX_LEN);
}

static bool check_select(cc *c, uint32_t root, uint32_t *target)
{
    const json_doc *d = c->d;
    uint32_t stmts = get(d, root, "stmts");
    if (stmts == NONE || d->nodes[stmts].kind != JSON_ARRAY || d->nodes[stmts].count == 0)
        return fail(c->err, 0, "empty expression");
    if (d->nodes[stmts].count > 1) {
        uint32_t second = json_next_sibling(d, json_first_child(d, stmts));
        int64_t loc = 0;
        uint32_t l = get(d, second, "stmt_location");
        if (l != NONE && json_get_int64(d, l, &loc))
            loc = loc > PREFIX_LEN ? loc - PREFIX_LEN - 1 : 0;
        return fail(c->err, (uint32_t)loc, "only one expression is allowed (found ';')");
    }
    uint32_t k, sel;
    if (!unwrap(d, get(d, json_first_child(d, stmts), "stmt"), &k, &sel) || !key_is(d, k, "SelectStmt"))
        return fail(c->err, 0, "expected an expression");
    static const struct { const char *k, *what; } extra[] = {
        {"fromClause", "FROM"}, {"whereClause", "WHERE"}, {"groupClause", "GROUP BY"}, {"havingClause", "HAVING"},
        {"sortClause", "ORDER BY"}, {"limitCount", "LIMIT"}, {"limitOffset", "OFFSET"},
        {"distinctClause", "DISTINCT"}, {"windowClause", "WINDOW"}, {"intoClause", "INTO"},
        {"withClause", "WITH"}, {"lockingClause", "FOR UPDATE"}, {"valuesLists", "VALUES"},
        {"larg", "UNION/INTERSECT/EXCEPT"}};
    for (size_t x = 0; x < sizeof extra / sizeof extra[0]; x++) {
        uint32_t v = get(d, sel, extra[x].k);
        if (v != NONE)
            return fail(c->err, first_pos(c, v), "%s is not allowed in an expression", extra[x].what);
    }
    if (get(d, sel, "targetList") == NONE)
        return fail(c->err, 0, "empty expression");
    if (d->nodes[sel].count != 3)
        return fail(c->err, 0, "expected a single expression");
    uint32_t tl = get(d, sel, "targetList");
    if (d->nodes[tl].kind != JSON_ARRAY || d->nodes[tl].count != 1) {
        uint32_t second = json_next_sibling(d, json_first_child(d, tl));
        return fail(c->err, d->nodes[tl].count > 1 ? first_pos(c, second) : 0, "expected one expression, found a list");
    }
    uint32_t rk, rb;
    if (!unwrap(d, json_first_child(d, tl), &rk, &rb) || !key_is(d, rk, "ResTarget"))
        return fail(c->err, 0, "expected an expression");
    if (get(d, rb, "name") != NONE)
        return fail(c->err, first_pos(c, rb), "AS aliases are not allowed in an expression");
    *target = get(d, rb, "val");
    return true;
}

/* Compiles the expression at node i into c->e and sets its root: an untyped
 * literal at the top becomes text, and a bare interval is refused. */
static bool compile_root(cc *c, uint32_t i)
{
    uint32_t root = compile(c, i);
    if (root == NONE)
        return false;
    if (c->e->n[root].unknown && (root = coerce(c, root, EXPR_TEXT, false, c->e->n[root].pos)) == NONE)
        return false;
    if (c->e->n[root].type == T_INTERVAL)
        return fail(c->err, c->e->n[root].pos, "interval values are only supported in timestamptz +/- interval and date_bin");
    c->e->root = root;
    return true;
}

payi_code expr_parse(const char *text, size_t len, const expr_scope *scope, expr **out, payi_err *err)
{
    *out = NULL;
    size_t bad;
    if (len > 1000000)
        return fail(err, 0, "expression too long (%zu bytes)", len), PAYI_VALIDATION;
    if (memchr(text, 0, len))
        return fail(err, (uint32_t)((const char *)memchr(text, 0, len) - text), "NUL byte in expression"), PAYI_VALIDATION;
    if (!json_utf8_valid(text, len, &bad))
        return fail(err, (uint32_t)bad, "invalid UTF-8 in expression"), PAYI_VALIDATION;
    char *q = xmalloc(PREFIX_LEN + len + 1);
    memcpy(q, PREFIX, PREFIX_LEN);
    memcpy(q + PREFIX_LEN, text, len);
    q[PREFIX_LEN + len] = 0;
    PgQueryParseResult r = pg_query_parse(q);
    payi_code rc = PAYI_VALIDATION;
    json_doc d = JSON_DOC_INIT;
    cc c = {.d = &d, .text = text, .q = q, .len = len, .base = PREFIX_LEN, .scope = scope, .err = err, .sb = BUF_INIT};
    if (r.error) {
        const char *m = r.error->message ? r.error->message : "syntax error";
        fail(err, r.error->cursorpos > 0 ? cursor_to_offset(q, PREFIX_LEN + len, r.error->cursorpos) : (uint32_t)len,
             "%s", m);
        goto done;
    }
    json_error je;
    json_limits lim = {.max_depth = MAX_JSON_DEPTH, .max_nodes = 200000};
    if (!r.parse_tree || !json_parse(&d, r.parse_tree, strlen(r.parse_tree), &lim, &je)) {
        fail(err, 0, "expression too complex (%s)", r.parse_tree ? je.msg : "no parse tree");
        goto done;
    }
    c.e = xcalloc(1, sizeof *c.e);
    expr_ctx_init(&c.e->kctx);
    uint32_t target = NONE;
    if (check_select(&c, 0, &target) && compile_root(&c, target)) {
        *out = c.e;
        c.e = NULL;
        rc = PAYI_OK;
    }
done:
    if (c.e)
        expr_free(c.e);
    buf_release(&c.sb);
    json_doc_release(&d);
    pg_query_free_parse_result(r);
    free(q);
    return rc;
}

payi_code expr_compile_node(const json_doc *d, uint32_t node, const char *sql, size_t len, const expr_scope *scope,
                            expr **out, payi_err *err)
{
    *out = NULL;
    cc c = {.d = d, .text = sql, .q = sql, .len = len, .base = 0, .scope = scope, .err = err, .sb = BUF_INIT};
    c.e = xcalloc(1, sizeof *c.e);
    expr_ctx_init(&c.e->kctx);
    payi_code rc = PAYI_VALIDATION;
    if (node < d->n && compile_root(&c, node)) {
        *out = c.e;
        c.e = NULL;
        rc = PAYI_OK;
    } else if (node >= d->n) {
        fail(err, 0, "unexpected parse tree");
    }
    if (c.e)
        expr_free(c.e);
    buf_release(&c.sb);
    return rc;
}

void expr_free(expr *e)
{
    if (!e)
        return;
    free(e->n);
    free(e->args);
    expr_ctx_release(&e->kctx);
    free(e);
}

expr_type expr_result_type(const expr *e) { return (expr_type)e->n[e->root].type; }

/* -------------------------------------------------------------- evaluation */

static int cmp_vals(const expr_value *a, const expr_value *b)
{
    switch (a->type) {
    case EXPR_BOOL: return (int)a->b - (int)b->b;
    case EXPR_DOUBLE:
        /* PostgreSQL orders NaN above every number and equal to itself. */
        if (isnan(a->d)) return isnan(b->d) ? 0 : 1;
        if (isnan(b->d)) return -1;
        return a->d < b->d ? -1 : a->d > b->d;
    case EXPR_TEXT: case EXPR_JSONB: {
        uint32_t n = a->len < b->len ? a->len : b->len;
        int r = n ? memcmp(a->s, b->s, n) : 0;
        return r ? r : (a->len > b->len) - (a->len < b->len);
    }
    default: return a->i < b->i ? -1 : a->i > b->i;
    }
}

static bool cmp_result(int r, int kind)
{
    switch (kind) {
    case CMP_EQ: return r == 0;
    case CMP_NE: return r != 0;
    case CMP_LT: return r < 0;
    case CMP_LE: return r <= 0;
    case CMP_GT: return r > 0;
    default: return r >= 0;
    }
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offset of the character number ch (0-based), clamped to n. */
static size_t utf8_skip(const char *s, size_t n, int64_t ch)
{
    size_t i = 0;
    while (ch > 0 && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        ch--;
    }
    return i;
}

static bool ev(const expr *e, uint32_t idx, const expr_value *cols, expr_ctx *ctx, expr_value *out, payi_err *err);

#define EV(i, v) do { if (!ev(e, (i), cols, ctx, &(v), err)) return false; } while (0)
#define RETNULL() do { *out = expr_null((expr_type)n->type); return true; } while (0)

static bool ev_extract(const enode *n, const expr_value *a, expr_value *out, payi_err *err)
{
    bool isdate = a->type == EXPR_DATE;
    int64_t t = isdate ? a->i * DAY_US : a->i;
    int64_t days = floordiv(t, DAY_US), r = t - days * DAY_US, y;
    unsigned m, d;
    expr_civil_from_days(days, &y, &m, &d);
    int64_t isodow = floordiv(days + 3, 7) * -7 + days + 3 + 1;   /* 1 = Monday; 1970-01-01 was a Thursday */
    int64_t v = 0;
    switch (n->unit) {
    case U_YEAR: v = y; break;
    case U_QUARTER: v = (m - 1) / 3 + 1; break;
    case U_MONTH: v = m; break;
    case U_DAY: v = d; break;
    case U_HOUR: v = r / 3600000000LL; break;
    case U_MINUTE: v = r / 60000000 % 60; break;
    case U_MICROSECOND: v = r % 60000000; break;
    case U_SECOND: *out = expr_double((double)(r % 60000000) / 1e6); return true;
    case U_EPOCH: *out = expr_double(isdate ? (double)days * 86400.0 : (double)t / 1e6); return true;
    case U_DOW: v = isodow % 7; break;
    case U_ISODOW: v = isodow; break;
    case U_DOY: v = days - expr_days_from_civil(y, 1, 1) + 1; break;
    case U_WEEK: case U_ISOYEAR: {
        int64_t thu = days - isodow + 4, ty;
        unsigned tm, td;
        expr_civil_from_days(thu, &ty, &tm, &td);
        v = n->unit == U_ISOYEAR ? ty : (thu - expr_days_from_civil(ty, 1, 1)) / 7 + 1;
        break;
    }
    default: return fail(err, n->pos, "unsupported extract unit");
    }
    *out = expr_int(v);
    return true;
}

static bool ev_func(const expr *e, const enode *n, const expr_value *cols, expr_ctx *ctx, expr_value *out, payi_err *err)
{
    expr_value a, b = {0}, c3 = {0};
    EV(n->a, a);
    if (n->b != NONE) EV(n->b, b);
    if (n->c != NONE) EV(n->c, c3);
    if (a.null || (n->b != NONE && b.null) || (n->c != NONE && c3.null))
        RETNULL();
    switch (n->sub) {
    case F_LOWER: case F_UPPER: {
        char *p = arena_alloc(ctx, a.len ? a.len : 1);
        for (uint32_t k = 0; k < a.len; k++) {
            char ch = a.s[k];
            p[k] = (char)(n->sub == F_LOWER ? (ch >= 'A' && ch <= 'Z' ? ch + 32 : ch) : (ch >= 'a' && ch <= 'z' ? ch - 32 : ch));
        }
        *out = expr_text(p, a.len);
        return true;
    }
    case F_LENGTH:
        *out = expr_int((int64_t)utf8_chars(a.s, a.len));
        return true;
    case F_SUBSTR: {
        /* PostgreSQL: characters from start (1-based, may be < 1) for count. */
        int64_t st = b.i, end;
        if (n->c != NONE) {
            if (c3.i < 0)
                return fail(err, n->pos, "negative substring length not allowed");
            if (__builtin_add_overflow(st, c3.i, &end))
                end = INT64_MAX;
        } else {
            end = INT64_MAX;
        }
        if (st < 1) st = 1;
        if (end <= st) { *out = expr_text(a.s, 0); return true; }
        size_t from = utf8_skip(a.s, a.len, st - 1);
        size_t to = end == INT64_MAX ? a.len : from + utf8_skip(a.s + from, a.len - from, end - st);
        *out = expr_text(a.s + from, to - from);
        return true;
    }
    case F_ABS:
        if (n->type == EXPR_DOUBLE) { *out = expr_double(fabs(a.d)); return true; }
        if (a.i == INT64_MIN) return fail(err, n->pos, "bigint out of range");
        *out = expr_int(a.i < 0 ? -a.i : a.i);
        return true;
    case F_ROUND: case F_FLOOR: case F_CEIL:
        if (n->type == EXPR_BIGINT) { *out = a; return true; }
        if (n->sub == F_FLOOR) *out = expr_double(floor(a.d));
        else if (n->sub == F_CEIL) *out = expr_double(ceil(a.d));
        else if (n->b == NONE) *out = expr_double(rint(a.d));   /* float8 round: half to even */
        else {
            if (b.i > 300 || b.i < -300) { *out = a; return true; }
            double sc = pow(10.0, (double)b.i), x = round(a.d * sc) / sc;
            *out = expr_double(isfinite(x) ? x : a.d);
        }
        return true;
    case F_DATE_TRUNC: {
        int64_t t = a.i, days = floordiv(t, DAY_US), r = t - days * DAY_US, y;
        unsigned m, d;
        expr_civil_from_days(days, &y, &m, &d);
        switch (n->unit) {
        case U_MICROSECOND: break;
        case U_SECOND: t -= r % 1000000; break;
        case U_MINUTE: t -= r % 60000000; break;
        case U_HOUR: t -= r % 3600000000LL; break;
        case U_DAY: t = days * DAY_US; break;
        case U_WEEK: t = (days - (floordiv(days + 3, 7) * -7 + days + 3)) * DAY_US; break;
        case U_MONTH: t = expr_days_from_civil(y, m, 1) * DAY_US; break;
        case U_QUARTER: t = expr_days_from_civil(y, (m - 1) / 3 * 3 + 1, 1) * DAY_US; break;
        default: t = expr_days_from_civil(y, 1, 1) * DAY_US; break;
        }
        if (!ts_ok(t))
            return fail(err, n->pos, "timestamp out of range");
        *out = expr_ts(t);
        return true;
    }
    case F_EXTRACT:
        return ev_extract(n, &a, out, err);
    case F_DATE_BIN: {
        int64_t stride = n->k.i, diff, bin;
        if (__builtin_sub_overflow(a.i, b.i, &diff))
            return fail(err, n->pos, "timestamp out of range");
        bin = floordiv(diff, stride) * stride;
        if (__builtin_add_overflow(b.i, bin, &bin) || !ts_ok(bin))
            return fail(err, n->pos, "timestamp out of range");
        *out = expr_ts(bin);
        return true;
    }
    }
    return fail(err, n->pos, "internal: unknown function");
}

static bool ev_json(const enode *n, const expr_value *a, const expr_value *b, expr_ctx *ctx, expr_value *out, payi_err *err)
{
    json_error je;
    if (!json_parse(&ctx->jd, a->s, a->len, NULL, &je))
        return fail(err, n->pos, "invalid jsonb value: %s", je.msg);
    const json_doc *d = &ctx->jd;
    uint32_t v = NONE;
    if (b->type == EXPR_TEXT && d->nodes[0].kind == JSON_OBJECT) {
        uint32_t it = 1;
        for (uint32_t k = 0; k < d->nodes[0].count; k++) {
            /* Compare the key after unescaping; keys with escapes go through json_get_string. */
            const json_node *kn = &d->nodes[it];
            bool eq;
            if (kn->flags & JSON_F_ESCAPED) {
                eq = json_get_string(d, it, &ctx->scratch) && ctx->scratch.len == b->len &&
                     memcmp(ctx->scratch.data, b->s, b->len) == 0;
            } else {
                eq = kn->len - 2 == b->len && memcmp(d->src + kn->start + 1, b->s, b->len) == 0;
            }
            uint32_t val = d->nodes[it].next;
            if (eq)
                v = val;   /* duplicates are refused by the parser */
            it = d->nodes[val].next;
        }
    } else if (b->type == EXPR_BIGINT && d->nodes[0].kind == JSON_ARRAY) {
        int64_t want = b->i < 0 ? (int64_t)d->nodes[0].count + b->i : b->i;
        uint32_t it = 1;
        for (int64_t k = 0; k < (int64_t)d->nodes[0].count; k++, it = d->nodes[it].next)
            if (k == want)
                v = it;
    }
    if (v == NONE)
        RETNULL();
    const json_node *jn = &d->nodes[v];
    if (!n->sub) {
        *out = expr_jsonb(a->s + jn->start, jn->len);
        return true;
    }
    if (jn->kind == JSON_NULL)
        RETNULL();
    if (jn->kind == JSON_STRING) {
        if (!(jn->flags & JSON_F_ESCAPED)) {
            *out = expr_text(a->s + jn->start + 1, jn->len - 2);
            return true;
        }
        if (!json_get_string(d, v, &ctx->scratch))
            return fail(err, n->pos, "invalid jsonb string");
        char *p = arena_alloc(ctx, ctx->scratch.len ? ctx->scratch.len : 1);
        memcpy(p, ctx->scratch.data, ctx->scratch.len);
        *out = expr_text(p, ctx->scratch.len);
        return true;
    }
    *out = expr_text(a->s + jn->start, jn->len);
    return true;
}

static bool ev(const expr *e, uint32_t idx, const expr_value *cols, expr_ctx *ctx, expr_value *out, payi_err *err)
{
    const enode *n = &e->n[idx];
    expr_value a, b;
    switch ((enum op)n->op) {
    case OP_CONST:
        *out = n->k;
        return true;
    case OP_COL:
        *out = cols[n->k.i];
        if (out->type != n->type) {
            if (!out->null)
                return fail(err, n->pos, "column %lld holds a %s value, declared %s", (long long)n->k.i,
                            expr_type_name((expr_type)out->type), expr_type_name((expr_type)n->type));
            out->type = n->type;
        } else if (!out->null && ((n->type == EXPR_DATE && !date_ok(out->i)) ||
                                  (n->type == EXPR_TIMESTAMPTZ && !ts_ok(out->i)))) {
            /* Keeps calendar arithmetic on caller data inside int64. */
            return fail(err, n->pos, "%s value out of range in column %lld", expr_type_name((expr_type)n->type),
                        (long long)n->k.i);
        }
        return true;
    case OP_IVCONST:
        return fail(err, n->pos, "internal: interval value");
    case OP_AND: case OP_OR: {
        bool stop = n->op == OP_OR, sawnull = false;
        for (uint32_t k = 0; k < n->nargs; k++) {
            EV(e->args[n->args + k], a);
            if (a.null) sawnull = true;
            else if (a.b == stop) { *out = expr_bool(stop); return true; }
        }
        if (sawnull) RETNULL();
        *out = expr_bool(!stop);
        return true;
    }
    case OP_NOT:
        EV(n->a, a);
        if (a.null) RETNULL();
        *out = expr_bool(!a.b);
        return true;
    case OP_ISNULL: case OP_ISNOTNULL:
        EV(n->a, a);
        *out = expr_bool(a.null == (n->op == OP_ISNULL));
        return true;
    case OP_BOOLTEST: {
        EV(n->a, a);
        bool r;
        switch (n->sub) {
        case 0: r = !a.null && a.b; break;
        case 1: r = a.null || !a.b; break;
        case 2: r = !a.null && !a.b; break;
        case 3: r = a.null || a.b; break;
        case 4: r = a.null; break;
        default: r = !a.null; break;
        }
        *out = expr_bool(r);
        return true;
    }
    case OP_CMP:
        EV(n->a, a);
        EV(n->b, b);
        if (a.null || b.null) RETNULL();
        if (a.type == EXPR_BIGINT || a.type == EXPR_DATE || a.type == EXPR_TIMESTAMPTZ)
            *out = expr_bool(cmp_result(a.i < b.i ? -1 : a.i > b.i, n->sub));
        else
            *out = expr_bool(cmp_result(cmp_vals(&a, &b), n->sub));
        return true;
    case OP_DISTINCT: {
        EV(n->a, a);
        EV(n->b, b);
        bool distinct = a.null != b.null || (!a.null && cmp_vals(&a, &b) != 0);
        *out = expr_bool(n->sub ? !distinct : distinct);
        return true;
    }
    case OP_IN: {
        EV(n->a, a);
        bool sawnull = a.null, found = false;
        for (uint32_t k = 0; k < n->nargs && !found; k++) {
            EV(e->args[n->args + k], b);
            if (b.null) sawnull = true;
            else if (!a.null && cmp_vals(&a, &b) == 0) found = true;
        }
        if (found) { *out = expr_bool(!n->sub); return true; }
        if (sawnull) RETNULL();
        *out = expr_bool(n->sub);
        return true;
    }
    case OP_BETWEEN: {
        expr_value lo, hi;
        EV(n->a, a);
        EV(e->args[n->args], lo);
        EV(e->args[n->args + 1], hi);
        /* a >= lo AND a <= hi, three-valued. */
        int r1 = a.null || lo.null ? -1 : cmp_vals(&a, &lo) >= 0;
        int r2 = a.null || hi.null ? -1 : cmp_vals(&a, &hi) <= 0;
        int r = (r1 == 0 || r2 == 0) ? 0 : (r1 < 0 || r2 < 0) ? -1 : 1;
        if (r < 0) RETNULL();
        *out = expr_bool(n->sub ? !r : r);
        return true;
    }
    case OP_ADD_I: case OP_SUB_I: case OP_MUL_I: case OP_DIV_I: case OP_MOD_I: {
        EV(n->a, a);
        EV(n->b, b);
        if (a.null || b.null) RETNULL();
        int64_t r;
        bool ovf = false;
        switch (n->op) {
        case OP_ADD_I: ovf = __builtin_add_overflow(a.i, b.i, &r); break;
        case OP_SUB_I: ovf = __builtin_sub_overflow(a.i, b.i, &r); break;
        case OP_MUL_I: ovf = __builtin_mul_overflow(a.i, b.i, &r); break;
        case OP_DIV_I:
            if (b.i == 0) return fail(err, n->pos, "division by zero");
            if (b.i == -1) { ovf = a.i == INT64_MIN; r = ovf ? 0 : -a.i; }
            else r = a.i / b.i;
            break;
        default:
            if (b.i == 0) return fail(err, n->pos, "division by zero");
            r = b.i == -1 ? 0 : a.i % b.i;
            break;
        }
        if (ovf) return fail(err, n->pos, "bigint out of range");
        *out = expr_int(r);
        return true;
    }
    case OP_ADD_F: case OP_SUB_F: case OP_MUL_F: case OP_DIV_F: case OP_MOD_F: {
        EV(n->a, a);
        EV(n->b, b);
        if (a.null || b.null) RETNULL();
        double r;
        switch (n->op) {
        case OP_ADD_F: r = a.d + b.d; break;
        case OP_SUB_F: r = a.d - b.d; break;
        case OP_MUL_F: r = a.d * b.d; break;
        case OP_DIV_F:
            if (b.d == 0) return fail(err, n->pos, "division by zero");
            r = a.d / b.d;
            break;
        default:
            if (b.d == 0) return fail(err, n->pos, "division by zero");
            r = fmod(a.d, b.d);
            break;
        }
        if (isinf(r) && !isinf(a.d) && !isinf(b.d))
            return fail(err, n->pos, "value out of range: overflow");
        *out = expr_double(r);
        return true;
    }
    case OP_NEG_I:
        EV(n->a, a);
        if (a.null) RETNULL();
        if (a.i == INT64_MIN) return fail(err, n->pos, "bigint out of range");
        *out = expr_int(-a.i);
        return true;
    case OP_NEG_F:
        EV(n->a, a);
        if (a.null) RETNULL();
        *out = expr_double(-a.d);
        return true;
    case OP_DATE_ADDI: case OP_DATE_SUBI: case OP_DATE_DIFF: {
        EV(n->a, a);
        EV(n->b, b);
        if (a.null || b.null) RETNULL();
        int64_t r;
        bool ovf = n->op == OP_DATE_ADDI ? __builtin_add_overflow(a.i, b.i, &r) : __builtin_sub_overflow(a.i, b.i, &r);
        if (n->op == OP_DATE_DIFF) { *out = expr_int(r); return true; }
        if (ovf || !date_ok(r)) return fail(err, n->pos, "date out of range");
        *out = expr_date(r);
        return true;
    }
    case OP_TS_IV: {
        EV(n->a, a);
        if (a.null) RETNULL();
        int64_t r;
        if (!ts_add_interval(a.i, n->sub ? -1 : 1, n->ivm, n->ivd, n->k.i, &r))
            return fail(err, n->pos, "timestamp out of range");
        *out = expr_ts(r);
        return true;
    }
    case OP_CONCAT: {
        EV(n->a, a);
        EV(n->b, b);
        if (a.null || b.null) RETNULL();
        if ((uint64_t)a.len + b.len > 0x3fffffff)
            return fail(err, n->pos, "string too long");
        char *p = arena_alloc(ctx, (size_t)a.len + b.len + 1);
        if (a.len) memcpy(p, a.s, a.len);
        if (b.len) memcpy(p + a.len, b.s, b.len);
        *out = expr_text(p, (size_t)a.len + b.len);
        return true;
    }
    case OP_CASE:
        for (uint32_t k = 0; k < n->nargs; k++) {
            EV(e->args[n->args + 2 * k], a);
            if (!a.null && a.b)
                return ev(e, e->args[n->args + 2 * k + 1], cols, ctx, out, err);
        }
        if (n->c == NONE) RETNULL();
        return ev(e, n->c, cols, ctx, out, err);
    case OP_COALESCE:
        for (uint32_t k = 0; k < n->nargs; k++) {
            EV(e->args[n->args + k], a);
            if (!a.null) { *out = a; return true; }
        }
        RETNULL();
    case OP_NULLIF:
        EV(n->a, a);
        EV(n->b, b);
        if (!a.null && !b.null && cmp_vals(&a, &b) == 0) RETNULL();
        *out = a;
        return true;
    case OP_GREATEST: case OP_LEAST: {
        /* NULLs are ignored; NULL only when every argument is. */
        bool have = false;
        for (uint32_t k = 0; k < n->nargs; k++) {
            EV(e->args[n->args + k], b);
            if (b.null) continue;
            if (!have || (cmp_vals(&b, &a) > 0) == (n->op == OP_GREATEST)) {
                if (!have || cmp_vals(&b, &a) != 0) a = b;
            }
            have = true;
        }
        if (!have) RETNULL();
        *out = a;
        return true;
    }
    case OP_CAST: {
        EV(n->a, a);
        if (a.null) RETNULL();
        char msg[300];
        if (!cast_value(&a, n->type, ctx, out, msg, sizeof msg))
            return fail(err, n->pos, "%s", msg);
        return true;
    }
    case OP_JSON_GET:
        EV(n->a, a);
        EV(n->b, b);
        if (a.null || b.null) RETNULL();
        return ev_json(n, &a, &b, ctx, out, err);
    case OP_FUNC:
        return ev_func(e, n, cols, ctx, out, err);
    }
    return fail(err, n->pos, "internal: bad node");
}

payi_code expr_eval(const expr *e, const expr_value *columns, expr_ctx *ctx, expr_value *out, payi_err *err)
{
    return ev(e, e->root, columns, ctx, out, err) ? PAYI_OK : PAYI_VALIDATION;
}
