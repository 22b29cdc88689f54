/* store_pg.c — the PostgreSQL read store (libpq).
 *
 * Session.  TimeZone UTC, DateStyle ISO, extra_float_digits 3 (doubles read
 * back exactly), client_encoding UTF8, a quiet notice processor
 * ("relation already exists, skipping" is not news); STORE_RO adds
 * default_transaction_read_only.  Values travel as text parameters with
 * declared types (PQprepare / PQexecParams), never inside SQL text.
 *
 * Upserts: multi-row VALUES.  Measured on this machine (1M rows over 100k
 * keys, 1000 rows per transaction, 5 columns, 3 merges): multi-row
 * INSERT .. VALUES with 1000 rows per prepared statement 65-84k rows/s;
 * INSERT .. SELECT FROM unnest($1::text[], ...) 54-75k; COPY into a temp
 * table then INSERT .. SELECT .. ON CONFLICT 59-70k; one prepared row
 * statement per row in pipeline mode 40-44k.  So VALUES, with up to
 * min(1000, 65535 / parameters per row) rows per statement.  A statement is
 * prepared per row count on a ladder (1, 4, 16, 64, 256, max): a chunk of
 * k rows runs as the fewest ladder statements that sum to k, so each table
 * has at most 6 prepared shapes (x2 with RETURNING) rather than one per
 * batch size.
 *
 * PostgreSQL refuses a statement that would update one row twice ("ON
 * CONFLICT DO UPDATE command cannot affect row a second time"), where
 * SQLite just merges twice: rows are therefore cut into chunks in which no
 * key repeats (a hash set of the chunk's keys), chunks run in order, and
 * the result is the same as merging row after row.
 *
 * Deletes and insert_new run one prepared row statement per row, sent in
 * pipeline mode in windows of PIPE_WINDOW rows (one round trip per window;
 * their answers are command tags, small enough that a blocking pipeline
 * cannot fill both socket buffers).  Per-row statements keep SQLite's
 * semantics without matching RETURNING rows back to input rows (jsonb keys
 * come back normalized, so they would not match).  A NULL key needs IS NULL,
 * which is not indexable as `k IS NOT DISTINCT FROM $1`: such a row gets its
 * own statement text, with = or IS NULL per key column.
 *
 * Read-only SQL: the statement is parsed with libpg_query first: exactly
 * one statement, and SELECT/VALUES/TABLE, EXPLAIN or SHOW (not COPY, DO,
 * CALL, SET ...).  It then runs in BEGIN READ ONLY with SET LOCAL
 * statement_timeout, in single-row mode; past max_rows the query is
 * cancelled, and the transaction is always rolled back (which also undoes
 * any SET the statement made).
 */
#include <libpq-fe.h>
#include <pg_query.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"
#include "store/store_int.h"

#define ROWS_PER_STMT 1000
#define MAX_PARAMS 65535      /* the protocol's limit per statement */
#define PIPE_WINDOW 500
#define NSIZES 6
#define NAME_LEN 16           /* "payi_" + a uint32 + NUL */

/* Type OIDs (pg_type.h is a server header). */
enum {
    OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25, OID_OID = 26, OID_JSON = 114,
    OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_DATE = 1082, OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

static const Oid type_oid[EXPR_JSONB + 1] = {
    [EXPR_BOOL] = OID_BOOL, [EXPR_BIGINT] = OID_INT8, [EXPR_DOUBLE] = OID_FLOAT8, [EXPR_TEXT] = OID_TEXT,
    [EXPR_DATE] = OID_DATE, [EXPR_TIMESTAMPTZ] = OID_TIMESTAMPTZ, [EXPR_JSONB] = OID_JSONB,
};

typedef struct pg_tab {
    uint32_t sizes[NSIZES];              /* the ladder of rows per upsert statement */
    uint32_t nsizes;
    char upsert[2][NSIZES][NAME_LEN];    /* [returning][size]; "" until prepared */
    char insert_new[NAME_LEN];
    char del[NAME_LEN];
} pg_tab;

typedef struct pg_store {
    store base;
    PGconn *conn;
    uint32_t next_name;
    bool closing;           /* no DEALLOCATE: the session ends */
    buf text;               /* scratch: parameter texts, NUL-separated */
    size_t *offs;           /* scratch: offsets into text (SIZE_MAX: NULL) */
    const char **ptrs;      /* scratch: what PQexec* reads */
    Oid *oids;
    size_t cap;
} pg_store;

static pg_store *pgs(store *s) { return (pg_store *)s; }

/* ---------------------------------------------------------------- errors */

static bool starts(const char *s, const char *p) { return s && strncmp(s, p, strlen(p)) == 0; }

static payi_code pg_code(const char *state, bool conn_bad)
{
    if (conn_bad || !state || starts(state, "08") || starts(state, "57P"))
        return PAYI_UNAVAILABLE;
    if (strcmp(state, "42P01") == 0)
        return PAYI_NOT_FOUND;
    if (strcmp(state, "57014") == 0)
        return PAYI_TIMEOUT;
    if (strcmp(state, "53100") == 0)
        return PAYI_NOSPACE;
    if (starts(state, "53") || starts(state, "40"))
        return PAYI_UNAVAILABLE;
    if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0)
        return PAYI_CORRUPT;
    if (starts(state, "58"))
        return PAYI_IO;
    if (starts(state, "XX"))
        return PAYI_INTERNAL;
    return PAYI_VALIDATION;
}

/* The server's message (primary, then detail) or libpq's, one line. */
static void pg_message(pg_store *q, const PGresult *res, char *out, size_t cap)
{
    const char *prim = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (prim)
        snprintf(out, cap, detail ? "%s (%s)" : "%s", prim, detail);
    else
        snprintf(out, cap, "%s", PQerrorMessage(q->conn));
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

static payi_code pg_fail(pg_store *q, const PGresult *res, payi_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static payi_code pg_fail(pg_store *q, const PGresult *res, payi_err *err, const char *fmt, ...)
{
    char what[256], msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    pg_message(q, res, msg, sizeof msg);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    payi_code code = pg_code(state, PQstatus(q->conn) != CONNECTION_OK);
    return payi_err_set(err, code, NULL, "read store %s: %s: %s", q->base.url, what, msg);
}

static bool ok_status(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* ---------------------------------------------------------- parameters */

static void pg_reserve(pg_store *q, size_t n)
{
    if (n <= q->cap)
        return;
    size_t cap = q->cap ? q->cap : 64;
    while (cap < n)
        cap *= 2;
    q->offs = xrealloc(q->offs, cap * sizeof *q->offs);
    q->ptrs = xrealloc(q->ptrs, cap * sizeof *q->ptrs);
    q->oids = xrealloc(q->oids, cap * sizeof *q->oids);
    q->cap = cap;
}

/* Render v as parameter i (q->offs[i]); call pg_finish_params after the last. */
static payi_code pg_param(pg_store *q, size_t i, const expr_value *v, payi_err *err)
{
    q->oids[i] = v->type <= EXPR_JSONB ? type_oid[v->type] : 0;
    if (v->null) {
        q->offs[i] = SIZE_MAX;
        return PAYI_OK;
    }
    q->offs[i] = q->text.len;
    payi_code rc = store__value_text(v, &q->text, err);
    buf_putc(&q->text, '\0');
    if (rc != PAYI_OK && err) {   /* prefix the store to the value's complaint */
        char msg[200];
        size_t n = strnlen(err->msg, sizeof msg - 1);
        memcpy(msg, err->msg, n);
        msg[n] = '\0';
        payi_err_set(err, rc, NULL, "read store %s: %s", q->base.url, msg);
    }
    return rc;
}

static void pg_finish_params(pg_store *q, size_t n)
{
    for (size_t i = 0; i < n; i++)
        q->ptrs[i] = q->offs[i] == SIZE_MAX ? NULL : q->text.data + q->offs[i];
}

/* The parameters of rows[first .. first+k) (full rows), row after row. */
static payi_code pg_row_params(pg_store *q, const store__tab *t, const expr_value *rows, size_t first, size_t k,
                               payi_err *err)
{
    size_t n = k * t->nparams;
    pg_reserve(q, n);
    buf_reset(&q->text);
    for (size_t r = 0; r < k; r++) {
        const expr_value *row = rows + (first + r) * t->ncols;
        for (uint32_t c = 0; c < t->ncols; c++) {
            if (t->param[c] == UINT32_MAX)
                continue;
            payi_code rc = pg_param(q, r * t->nparams + t->param[c], &row[c], err);
            if (rc != PAYI_OK)
                return rc;
        }
    }
    pg_finish_params(q, n);
    return PAYI_OK;
}

/* A row's key values as parameters: all of them, or (skip_null) only the
 * non-NULL ones, for a statement that says IS NULL for the others. */
static payi_code pg_key_params(pg_store *q, const store__tab *t, const expr_value *keys, bool skip_null,
                               uint32_t *n, payi_err *err)
{
    pg_reserve(q, t->nkeys);
    buf_reset(&q->text);
    *n = 0;
    for (uint32_t j = 0; j < t->nkeys; j++) {
        if (skip_null && keys[j].null)
            continue;
        payi_code rc = pg_param(q, (*n)++, &keys[j], err);
        if (rc != PAYI_OK)
            return rc;
    }
    pg_finish_params(q, *n);
    return PAYI_OK;
}

/* -------------------------------------------------------------- results */

/* Row i of res as values of the given types (text points into res). */
static payi_code pg_row_values(pg_store *q, const PGresult *res, int i, const expr_type *types, uint32_t n,
                               expr_value *vals, payi_err *err)
{
    for (uint32_t c = 0; c < n; c++) {
        if (PQgetisnull(res, i, (int)c)) {
            vals[c] = expr_null(types[c]);
            continue;
        }
        const char *s = PQgetvalue(res, i, (int)c);
        if (!store__parse_value(types[c], s, (size_t)PQgetlength(res, i, (int)c), &vals[c]))
            return payi_err_set(err, PAYI_CORRUPT, NULL, "read store %s: column \"%s\" holds \"%.60s\", not a %s",
                                q->base.url, PQfname(res, (int)c), s, expr_type_name(types[c]));
    }
    return PAYI_OK;
}

/* Every row of res to fn (unless *stop), typed as t's columns. */
static payi_code pg_rows_to(pg_store *q, const PGresult *res, store__tab *t, store_row_fn fn, void *ctx, bool *stop,
                            payi_err *err)
{
    expr_type types[64], *ty = t->ncols <= 64 ? types : xcalloc(t->ncols, sizeof *ty);
    for (uint32_t c = 0; c < t->ncols; c++)
        ty[c] = t->cols[c].type;
    payi_code pc = PAYI_OK;
    uint32_t n = (uint32_t)PQnfields(res) < t->ncols ? (uint32_t)PQnfields(res) : t->ncols;
    for (int i = 0; i < PQntuples(res) && !*stop && pc == PAYI_OK; i++) {
        pc = pg_row_values(q, res, i, ty, n, t->vals, err);
        if (pc == PAYI_OK && fn(ctx, t->vals, n))
            *stop = true;
    }
    if (ty != types)
        free(ty);
    return pc;
}

/* Read the results of a query sent in single-row mode; rows go to fn until
 * it asks to stop (the rest is read and dropped). */
static payi_code pg_stream(pg_store *q, const char *what, const expr_type *types, uint32_t ncols, store_row_fn fn,
                           void *ctx, payi_err *err)
{
    expr_value vals[64], *v = ncols <= 64 ? vals : xcalloc(ncols, sizeof *v);
    payi_code pc = PAYI_OK;
    bool stop = false;
    PGresult *res;
    while ((res = PQgetResult(q->conn))) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE) {
            uint32_t n = (uint32_t)PQnfields(res) < ncols ? (uint32_t)PQnfields(res) : ncols;
            if (fn && !stop && pc == PAYI_OK && (pc = pg_row_values(q, res, 0, types, n, v, err)) == PAYI_OK)
                stop = fn(ctx, v, n) != 0;
        } else if (!ok_status(res) && pc == PAYI_OK) {
            pc = pg_fail(q, res, err, "%.100s", what);
        }
        PQclear(res);
    }
    if (v != vals)
        free(v);
    return pc;
}

/* ------------------------------------------------------------ statements */

static payi_code pg_prepare(pg_store *q, const store__tab *t, char name[NAME_LEN], const char *sql, int nparams,
                            const Oid *types, payi_err *err)
{
    snprintf(name, NAME_LEN, "payi_%u", ++q->next_name);
    PGresult *res = PQprepare(q->conn, name, sql, nparams, types);
    payi_code pc = PQresultStatus(res) == PGRES_COMMAND_OK ? PAYI_OK : pg_fail(q, res, err, "table \"%s\"", t->name);
    PQclear(res);
    if (pc != PAYI_OK)
        name[0] = '\0';
    return pc;
}

static pg_tab *pg_tab_of(store__tab *t)
{
    if (t->be)
        return t->be;
    pg_tab *b = xcalloc(1, sizeof *b);
    uint32_t max = MAX_PARAMS / t->nparams;
    if (max > ROWS_PER_STMT)
        max = ROWS_PER_STMT;
    if (t->nkeys == 0)
        max = 1;   /* every row has the one key: each is its own chunk */
    for (uint32_t k = 1; k < max && k <= 256; k *= 4)
        b->sizes[b->nsizes++] = k;
    b->sizes[b->nsizes++] = max;
    t->be = b;
    return b;
}

static void pg_deallocate(pg_store *q, const char *name)
{
    if (!name[0] || q->closing || PQstatus(q->conn) != CONNECTION_OK)
        return;
    buf b = BUF_INIT;
    buf_printf(&b, "DEALLOCATE %s", name);   /* our own name: payi_N */
    PQclear(PQexec(q->conn, b.data));
    buf_release(&b);
}

static void pg_tab_release(store *s, store__tab *t)
{
    pg_store *q = pgs(s);
    pg_tab *b = t->be;
    for (int r = 0; r < 2; r++)
        for (uint32_t i = 0; i < b->nsizes; i++)
            pg_deallocate(q, b->upsert[r][i]);
    pg_deallocate(q, b->insert_new);
    pg_deallocate(q, b->del);
    free(b);
    t->be = NULL;
}

/* Parameter types of k rows of t. */
static void pg_row_oids(pg_store *q, const store__tab *t, uint32_t k)
{
    pg_reserve(q, (size_t)k * t->nparams);
    for (uint32_t r = 0; r < k; r++)
        for (uint32_t c = 0; c < t->ncols; c++)
            if (t->param[c] != UINT32_MAX)
                q->oids[(size_t)r * t->nparams + t->param[c]] = type_oid[t->cols[c].type];
}

/* The upsert statement for ladder size i, prepared on first use. */
static payi_code pg_upsert_stmt(pg_store *q, store__tab *t, bool ret, uint32_t i, payi_err *err)
{
    pg_tab *b = t->be;
    if (b->upsert[ret][i][0])
        return PAYI_OK;
    uint32_t k = b->sizes[i];
    buf sql = BUF_INIT;
    store__sql_insert_into(&sql, t);
    buf_puts(&sql, " VALUES ");
    for (uint32_t r = 0; r < k; r++) {
        store__ref ref = {'$', r * t->nparams};
        buf_puts(&sql, r ? ", (" : "(");
        store__sql_row_values(&sql, &q->base, t, &ref);
        buf_putc(&sql, ')');
    }
    store__sql_on_conflict(&sql, &q->base, t, ret);
    if (ret)
        store__sql_returning(&sql, t);
    pg_row_oids(q, t, k);
    payi_code pc = pg_prepare(q, t, b->upsert[ret][i], sql.data, (int)(k * t->nparams), q->oids, err);
    buf_release(&sql);
    return pc;
}

/* ------------------------------------------------------------ operations */

/* Rows [first, first+k), in which no key repeats: the fewest ladder
 * statements that add up to k. */
static payi_code pg_upsert_chunk(pg_store *q, store__tab *t, const expr_value *rows, size_t first, size_t k,
                                 store_row_fn changed, void *ctx, bool *stop, payi_err *err)
{
    pg_tab *b = t->be;
    bool ret = changed != NULL;
    while (k > 0) {
        uint32_t i = b->nsizes - 1;
        while (b->sizes[i] > k)
            i--;
        uint32_t n = b->sizes[i];
        payi_code pc = pg_upsert_stmt(q, t, ret, i, err);
        if (pc == PAYI_OK)
            pc = pg_row_params(q, t, rows, first, n, err);
        if (pc != PAYI_OK)
            return pc;
        PGresult *res = PQexecPrepared(q->conn, b->upsert[ret][i], (int)(n * t->nparams), q->ptrs, NULL, NULL, 0);
        if (!ok_status(res))
            pc = pg_fail(q, res, err, "upsert into \"%s\"", t->name);
        else if (ret && !*stop)
            pc = pg_rows_to(q, res, t, changed, ctx, stop, err);
        PQclear(res);
        if (pc != PAYI_OK)
            return pc;
        first += n;
        k -= n;
    }
    return PAYI_OK;
}

static payi_code pg_upsert(store *s, store__tab *t, const expr_value *rows, size_t nrows, store_row_fn changed,
                           void *ctx, payi_err *err)
{
    pg_store *q = pgs(s);
    pg_tab *b = pg_tab_of(t);
    uint32_t max = b->sizes[b->nsizes - 1];
    size_t cap = nrows < max ? nrows : max, first = 0;
    bool stop = false;
    store__set_clear(s, cap);
    for (size_t r = 0; r < nrows; r++) {
        if (r - first < max && store__set_add(s, t, rows, t->ncols, r) == SIZE_MAX)
            continue;
        payi_code pc = pg_upsert_chunk(q, t, rows, first, r - first, changed, ctx, &stop, err);
        if (pc != PAYI_OK)
            return pc;
        first = r;
        store__set_clear(s, cap);
        store__set_add(s, t, rows, t->ncols, r);
    }
    return pg_upsert_chunk(q, t, rows, first, nrows - first, changed, ctx, &stop, err);
}

typedef void (*pg_result_fn)(void *ctx, size_t i, const PGresult *res);

/* Read the answers of a pipeline up to its sync; each successful one goes
 * to fn with its index; the first error is reported.  Leaves pipeline mode. */
static payi_code pg_pipeline_end(pg_store *q, const char *what, pg_result_fn fn, void *ctx, payi_err *err)
{
    payi_code pc = PAYI_OK;
    size_t i = 0;
    int nulls = 0;
    if (!PQpipelineSync(q->conn))
        pc = pg_fail(q, NULL, err, "%s", what);
    while (pc == PAYI_OK || PQstatus(q->conn) == CONNECTION_OK) {
        PGresult *res = PQgetResult(q->conn);
        if (!res) {
            if (++nulls > 1)   /* one NULL ends each answer; two mean the connection is gone */
                break;
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (ok_status(res)) {
            if (pc == PAYI_OK && fn)
                fn(ctx, i, res);
        } else if (st != PGRES_PIPELINE_ABORTED && pc == PAYI_OK) {
            pc = pg_fail(q, res, err, "%s", what);
        }
        i++;
        PQclear(res);
    }
    if (nulls > 1 && pc == PAYI_OK)
        pc = pg_fail(q, NULL, err, "%s", what);
    PQexitPipelineMode(q->conn);
    return pc;
}

static payi_code pg_pipeline_begin(pg_store *q, const char *what, payi_err *err)
{
    return PQenterPipelineMode(q->conn) ? PAYI_OK : pg_fail(q, NULL, err, "%s: pipeline mode", what);
}

/* A delete of one key row with NULLs: its own text (= or IS NULL per key). */
static payi_code pg_send_delete_null(pg_store *q, store__tab *t, const expr_value *keys, payi_err *err)
{
    uint32_t n;
    payi_code pc = pg_key_params(q, t, keys, true, &n, err);
    if (pc != PAYI_OK)
        return pc;
    buf sql = BUF_INIT;
    store__ref ref = {'$', 0};
    buf_puts(&sql, "DELETE FROM ");
    store__quote(&sql, t->name);
    buf_puts(&sql, " WHERE ");
    store__sql_key_match(&sql, t, &ref, false, keys, false);
    int sent = PQsendQueryParams(q->conn, sql.data, (int)n, q->oids, q->ptrs, NULL, NULL, 0);
    buf_release(&sql);
    return sent ? PAYI_OK : pg_fail(q, NULL, err, "delete from \"%s\"", t->name);
}

static payi_code pg_delete_stmt(pg_store *q, store__tab *t, payi_err *err)
{
    pg_tab *b = t->be;
    if (b->del[0])
        return PAYI_OK;
    buf sql = BUF_INIT;
    store__ref ref = {'$', 0};
    buf_puts(&sql, "DELETE FROM ");
    store__quote(&sql, t->name);
    buf_puts(&sql, " WHERE ");
    store__sql_key_match(&sql, t, &ref, false, NULL, false);
    pg_reserve(q, t->nkeys);
    for (uint32_t j = 0; j < t->nkeys; j++)
        q->oids[j] = type_oid[t->cols[t->keys[j]].type];
    payi_code pc = pg_prepare(q, t, b->del, sql.data, (int)t->nkeys, q->oids, err);
    buf_release(&sql);
    return pc;
}

static payi_code pg_delete(store *s, store__tab *t, const expr_value *keys, size_t nrows, payi_err *err)
{
    pg_store *q = pgs(s);
    pg_tab *b = pg_tab_of(t);
    char what[120];
    snprintf(what, sizeof what, "delete from \"%.80s\"", t->name);
    if (t->nkeys == 0) {
        buf sql = BUF_INIT;
        buf_puts(&sql, "DELETE FROM ");
        store__quote(&sql, t->name);
        payi_code pc = s->ops->exec(s, sql.data, err);
        buf_release(&sql);
        return pc;
    }
    payi_code pc = pg_delete_stmt(q, t, err);
    for (size_t w = 0; pc == PAYI_OK && w < nrows; w += PIPE_WINDOW) {
        size_t end = nrows - w < PIPE_WINDOW ? nrows : w + PIPE_WINDOW;
        if ((pc = pg_pipeline_begin(q, what, err)) != PAYI_OK)
            break;
        for (size_t r = w; r < end && pc == PAYI_OK; r++) {
            const expr_value *k = keys + r * t->nkeys;
            uint32_t n;
            if (store__key_has_null(t, k, true))
                pc = pg_send_delete_null(q, t, k, err);
            else if ((pc = pg_key_params(q, t, k, false, &n, err)) == PAYI_OK &&
                     !PQsendQueryPrepared(q->conn, b->del, (int)n, q->ptrs, NULL, NULL, 0))
                pc = pg_fail(q, NULL, err, "%s", what);
        }
        payi_code end_pc = pg_pipeline_end(q, what, NULL, NULL, err);
        if (pc == PAYI_OK)
            pc = end_pc;
    }
    return pc;
}

static payi_code pg_insert_new_stmt(pg_store *q, store__tab *t, payi_err *err)
{
    pg_tab *b = t->be;
    if (b->insert_new[0])
        return PAYI_OK;
    buf sql = BUF_INIT;
    store__ref ref = {'$', 0};
    store__sql_insert_into(&sql, t);
    buf_puts(&sql, " VALUES (");
    store__sql_row_values(&sql, &q->base, t, &ref);
    buf_puts(&sql, ") ON CONFLICT DO NOTHING");
    pg_row_oids(q, t, 1);
    payi_code pc = pg_prepare(q, t, b->insert_new, sql.data, (int)t->nparams, q->oids, err);
    buf_release(&sql);
    return pc;
}

typedef struct inserted_ctx {
    bool *inserted;
    size_t first;
} inserted_ctx;

static void note_inserted(void *ctx, size_t i, const PGresult *res)
{
    inserted_ctx *c = ctx;
    c->inserted[c->first + i] = strcmp(PQcmdTuples((PGresult *)res), "1") == 0;
}

static payi_code pg_insert_new(store *s, store__tab *t, const expr_value *rows, size_t nrows, bool *inserted,
                               payi_err *err)
{
    pg_store *q = pgs(s);
    pg_tab *b = pg_tab_of(t);
    char what[120];
    snprintf(what, sizeof what, "insert into \"%.80s\"", t->name);
    payi_code pc = pg_insert_new_stmt(q, t, err);
    for (size_t w = 0; pc == PAYI_OK && w < nrows; w += PIPE_WINDOW) {
        size_t end = nrows - w < PIPE_WINDOW ? nrows : w + PIPE_WINDOW;
        if ((pc = pg_pipeline_begin(q, what, err)) != PAYI_OK)
            break;
        for (size_t r = w; r < end && pc == PAYI_OK; r++) {
            if ((pc = pg_row_params(q, t, rows, r, 1, err)) == PAYI_OK &&
                !PQsendQueryPrepared(q->conn, b->insert_new, (int)t->nparams, q->ptrs, NULL, NULL, 0))
                pc = pg_fail(q, NULL, err, "%s", what);
        }
        inserted_ctx ic = {inserted, w};
        payi_code end_pc = pg_pipeline_end(q, what, note_inserted, &ic, err);
        if (pc == PAYI_OK)
            pc = end_pc;
    }
    return pc;
}

static payi_code pg_exec(store *s, const char *sql, payi_err *err)
{
    pg_store *q = pgs(s);
    PGresult *res = PQexec(q->conn, sql);
    payi_code pc = PAYI_OK;
    if (!ok_status(res))
        pc = pg_fail(q, res, err, "%.100s", sql);
    else if (strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0)
        pc = payi_err_set(err, PAYI_INTERNAL, NULL, "read store %s: COMMIT answered %s: nothing was committed",
                          q->base.url, PQcmdStatus(res));
    PQclear(res);
    return pc;
}

static payi_code pg_query(store *s, const char *sql, const expr_value *params, uint32_t nparams,
                          const expr_type *types, uint32_t ncols, store_row_fn fn, void *ctx, payi_err *err)
{
    pg_store *q = pgs(s);
    pg_reserve(q, nparams);
    buf_reset(&q->text);
    for (uint32_t i = 0; i < nparams; i++) {
        payi_code pc = pg_param(q, i, &params[i], err);
        if (pc != PAYI_OK)
            return pc;
    }
    pg_finish_params(q, nparams);
    if (!PQsendQueryParams(q->conn, sql, (int)nparams, q->oids, q->ptrs, NULL, NULL, 0))
        return pg_fail(q, NULL, err, "%.100s", sql);
    PQsetSingleRowMode(q->conn);
    return pg_stream(q, sql, types, ncols, fn, ctx, err);
}

/* ------------------------------------------------------- read-only SQL */

static const char *stmt_word(const char *node)
{
    static const struct { const char *node, *word; } words[] = {
        {"InsertStmt", "INSERT"}, {"UpdateStmt", "UPDATE"}, {"DeleteStmt", "DELETE"}, {"MergeStmt", "MERGE"},
        {"CreateStmt", "CREATE TABLE"}, {"CreateTableAsStmt", "CREATE TABLE AS"}, {"DropStmt", "DROP"},
        {"AlterTableStmt", "ALTER TABLE"}, {"TruncateStmt", "TRUNCATE"}, {"CopyStmt", "COPY"},
        {"TransactionStmt", "transaction control"}, {"VariableSetStmt", "SET"}, {"DoStmt", "DO"},
        {"CallStmt", "CALL"}, {"IndexStmt", "CREATE INDEX"}, {"ViewStmt", "CREATE VIEW"},
        {"GrantStmt", "GRANT"}, {"VacuumStmt", "VACUUM"}, {"LockStmt", "LOCK"}, {"NotifyStmt", "NOTIFY"},
        {"ListenStmt", "LISTEN"}, {"PrepareStmt", "PREPARE"}, {"ExecuteStmt", "EXECUTE"},
        {"DeclareCursorStmt", "DECLARE"}, {"CreateFunctionStmt", "CREATE FUNCTION"},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(words[i].node, node) == 0)
            return words[i].word;
    return node;
}

/* One statement, and a reading one.  When libpg_query cannot parse the
 * text, the server will say why (its message is the one users know). */
static payi_code pg_check_statement(const char *sql, payi_err *err)
{
    PgQueryParseResult r = pg_query_parse(sql);
    payi_code pc = PAYI_OK;
    json_doc d = JSON_DOC_INIT;
    if (!r.error && r.parse_tree && json_parse(&d, r.parse_tree, strlen(r.parse_tree), NULL, NULL)) {
        uint32_t stmts = json_object_get(&d, 0, "stmts");
        uint32_t n = stmts == UINT32_MAX ? 0 : d.nodes[stmts].count;
        if (n == 0)
            pc = payi_err_set(err, PAYI_VALIDATION, "sql", "no SQL statement given");
        else if (n > 1)
            pc = payi_err_set(err, PAYI_VALIDATION, "sql", "only one SQL statement is allowed per request");
        else {
            uint32_t st = json_object_get(&d, json_first_child(&d, stmts), "stmt");
            buf kind = BUF_INIT;
            if (st != UINT32_MAX && d.nodes[st].count > 0)
                json_get_string(&d, json_first_child(&d, st), &kind);
            const char *k = kind.data ? kind.data : "";
            if (strcmp(k, "SelectStmt") != 0 && strcmp(k, "ExplainStmt") != 0 && strcmp(k, "VariableShowStmt") != 0)
                pc = payi_err_set(err, PAYI_VALIDATION, "sql", "the SQL endpoint is read-only: %s is not allowed "
                                  "(SELECT, VALUES, TABLE, EXPLAIN and SHOW are)", stmt_word(k));
            buf_release(&kind);
        }
    }
    json_doc_release(&d);
    pg_query_free_parse_result(r);
    return pc;
}

static bool json_number_text(const char *s)
{
    const char *p = s + (*s == '-');
    return *p >= '0' && *p <= '9';   /* not NaN, Infinity, -Infinity */
}

static void pg_value_json(buf *out, Oid type, const char *s, size_t len)
{
    char ts[STORE_TS_LEN + 1];
    int64_t us;
    switch (type) {
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID:
        buf_put(out, s, len);
        return;
    case OID_FLOAT4: case OID_FLOAT8: case OID_NUMERIC:
        if (json_number_text(s))
            buf_put(out, s, len);
        else
            store__json_text(out, s, len);
        return;
    case OID_BOOL:
        buf_puts(out, s[0] == 't' ? "true" : "false");
        return;
    case OID_JSON: case OID_JSONB:
        buf_put(out, s, len);
        return;
    case OID_TIMESTAMPTZ:   /* as SQLite stores it, so both stores answer alike */
        if (expr_parse_timestamptz(s, len, &us) && store__fmt_ts(us, ts)) {
            store__json_text(out, ts, STORE_TS_LEN);
            return;
        }
        break;
    default:
        break;
    }
    store__json_text(out, s, len);
}

static void pg_columns_json(buf *out, const PGresult *res)
{
    buf_puts(out, "{\"columns\":[");
    for (int i = 0; res && i < PQnfields(res); i++) {
        const char *name = PQfname(res, i);
        if (i)
            buf_putc(out, ',');
        store__json_text(out, name, strlen(name));
    }
    buf_puts(out, "],\"rows\":[");
}

static void pg_row_json(buf *out, const PGresult *res, bool first)
{
    buf_puts(out, first ? "[" : ",[");
    for (int i = 0; i < PQnfields(res); i++) {
        if (i)
            buf_putc(out, ',');
        if (PQgetisnull(res, 0, i))
            buf_puts(out, "null");
        else
            pg_value_json(out, PQftype(res, i), PQgetvalue(res, 0, i), (size_t)PQgetlength(res, 0, i));
    }
    buf_putc(out, ']');
}

static void pg_cancel(pg_store *q)
{
    PGcancel *c = PQgetCancel(q->conn);
    char ebuf[256];
    if (c) {
        PQcancel(c, ebuf, sizeof ebuf);
        PQfreeCancel(c);
    }
}

static payi_code pg_sql_fail(pg_store *q, const PGresult *res, int timeout_ms, payi_err *err)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    char msg[400];
    pg_message(q, res, msg, sizeof msg);
    if (state && strcmp(state, "57014") == 0)
        return payi_err_set(err, PAYI_TIMEOUT, "sql", "the SQL statement ran longer than %d ms and was stopped",
                            timeout_ms);
    if (state && strcmp(state, "25006") == 0)
        return payi_err_set(err, PAYI_VALIDATION, "sql", "the SQL endpoint is read-only: %s", msg);
    payi_code code = pg_code(state, PQstatus(q->conn) != CONNECTION_OK);
    if (code == PAYI_NOT_FOUND || code == PAYI_INTERNAL)
        code = PAYI_VALIDATION;
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    if (pos)
        return payi_err_set(err, code, "sql", "%s (at character %s of the statement)", msg, pos);
    return payi_err_set(err, code, "sql", "%s", msg);
}

/* Stream the answer of the statement just sent into out, cancelling it
 * past max_rows. */
static payi_code pg_rows_json(pg_store *q, size_t max_rows, int timeout_ms, buf *out, payi_err *err)
{
    payi_code pc = PAYI_OK;
    size_t rows = 0;
    bool head = false, truncated = false;
    PGresult *res;
    while ((res = PQgetResult(q->conn))) {
        ExecStatusType st = PQresultStatus(res);
        if ((st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) && pc == PAYI_OK) {
            if (!head)
                pg_columns_json(out, res);
            head = true;
            if (st == PGRES_SINGLE_TUPLE && !truncated) {
                if (rows == max_rows) {
                    truncated = true;
                    pg_cancel(q);
                } else {
                    pg_row_json(out, res, rows++ == 0);
                }
            }
        } else if (!ok_status(res) && st != PGRES_SINGLE_TUPLE && pc == PAYI_OK && !truncated) {
            pc = pg_sql_fail(q, res, timeout_ms, err);
        }
        PQclear(res);
    }
    if (pc == PAYI_OK && !head)
        pg_columns_json(out, NULL);   /* a statement without a row description */
    if (pc == PAYI_OK)
        buf_printf(out, "],\"truncated\":%s}", truncated ? "true" : "false");
    return pc;
}

static payi_code pg_sql_json(store *s, const char *sql, size_t max_rows, int timeout_ms, buf *out, payi_err *err)
{
    pg_store *q = pgs(s);
    payi_code pc = pg_check_statement(sql, err);
    if (pc != PAYI_OK || (pc = pg_exec(s, "BEGIN READ ONLY", err)) != PAYI_OK)
        return pc;
    char set[64];
    snprintf(set, sizeof set, "SET LOCAL statement_timeout = %d", timeout_ms > 0 ? timeout_ms : 0);
    pc = pg_exec(s, set, err);
    if (pc == PAYI_OK) {
        if (!PQsendQueryParams(q->conn, sql, 0, NULL, NULL, NULL, NULL, 0))
            pc = pg_fail(q, NULL, err, "SQL request");
        else {
            PQsetSingleRowMode(q->conn);
            pc = pg_rows_json(q, max_rows, timeout_ms, out, err);
        }
    }
    PQclear(PQexec(q->conn, "ROLLBACK"));
    return pc;
}

/* ------------------------------------------------------------ life cycle */

static void pg_close(store *s)
{
    pg_store *q = pgs(s);
    q->closing = true;
    store__release(s);
    PQfinish(q->conn);
    buf_release(&q->text);
    free(q->offs);
    free(q->ptrs);
    free(q->oids);
    free(q);
}

static const store__ops pg_ops = {
    .type_names = {[EXPR_BOOL] = "boolean", [EXPR_BIGINT] = "bigint", [EXPR_DOUBLE] = "double precision",
                   [EXPR_TEXT] = "text", [EXPR_DATE] = "date", [EXPR_TIMESTAMPTZ] = "timestamptz",
                   [EXPR_JSONB] = "jsonb"},
    .text_collate = " COLLATE \"C\"",
    .table_options = "",
    .hidden_key_type = "smallint",
    .fn_min = "least",
    .fn_max = "greatest",
    .begin_rw = "BEGIN",
    .param_mark = '$',
    .close = pg_close,
    .exec = pg_exec,
    .query = pg_query,
    .upsert = pg_upsert,
    .del = pg_delete,
    .insert_new = pg_insert_new,
    .sql_json = pg_sql_json,
    .tab_release = pg_tab_release,
};

static void quiet_notices(void *arg, const char *message) { (void)arg, (void)message; }

payi_code store__pg_open(store **out, const char *conninfo, store_mode mode, const char *url, payi_err *err)
{
    pg_store *q = xcalloc(1, sizeof *q);
    store__init(&q->base, &pg_ops, STORE_POSTGRES, mode, url);
    /* Our defaults first: the URL (dbname, expanded) may override them. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "payi", conninfo, NULL};
    q->conn = PQconnectdbParams(keys, vals, 1);
    payi_code pc = PAYI_OK;
    if (!q->conn || PQstatus(q->conn) != CONNECTION_OK) {
        char msg[400];
        pg_message(q, NULL, msg, sizeof msg);
        pc = payi_err_set(err, PAYI_UNAVAILABLE, NULL, "cannot connect to read store %s: %s", url, msg);
    } else {
        PQsetNoticeProcessor(q->conn, quiet_notices, NULL);
        if (PQserverVersion(q->conn) >= 150000)
            q->base.key_clause = "UNIQUE NULLS NOT DISTINCT";
        pc = pg_exec(&q->base,
                     mode == STORE_RO
                         ? "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; "
                           "SET client_encoding = 'UTF8'; SET default_transaction_read_only = on"
                         : "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; "
                           "SET client_encoding = 'UTF8'",
                     err);
        if (pc != PAYI_OK && err)
            err->code = pc = PAYI_UNAVAILABLE;
    }
    if (pc != PAYI_OK) {
        pg_close(&q->base);
        return pc;
    }
    *out = &q->base;
    return PAYI_OK;
}
