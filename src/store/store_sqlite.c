/* store_sqlite.c — the SQLite read store (the embedded default).
 *
 * Connection.  RW: WAL, synchronous=NORMAL: a commit is atomic and
 * consistent at once, durable at the next checkpoint of the WAL.  A view is
 * derived data and its rows commit with its checkpoint, so a power loss can
 * only take the view back to an earlier checkpoint, from which it folds the
 * log again (exactly once still holds; a view may briefly stand behind a
 * position it had reported, and min_position waits for it again).  FULL
 * cost an fsync per view commit: measured with seven Nexmark views at 10k
 * commands/s, change p99 114 ms with FULL, 35 ms with NORMAL (payi bench
 * views-latency); store_upsert.c: FULL 278k rows/s, NORMAL 337k.  busy_timeout 10 s, a 32 MiB page cache.  RO: the file opened read-only, PRAGMA query_only=1, no
 * ATTACH (limit 0), defensive mode, and during store_sql_json an authorizer
 * that allows only SELECT, READ, FUNCTION (not load_extension) and
 * RECURSIVE, plus a progress handler that interrupts the statement past
 * its deadline.  sqlite3_stmt_readonly() is checked as well (VACUUM INTO
 * has no authorizer action and would write a file).
 *
 * Statements.  Per cached table (store__tab.be) one statement per purpose,
 * prepared on first use (SQLITE_PREPARE_PERSISTENT) and stepped once per row:
 * SQLite runs in-process, so a row statement costs no round trip and needs
 * no multi-row VALUES.  Each is reset right after use, so no statement holds
 * a read snapshot between calls.  Generic queries (store_select, checkpoints)
 * go through a small cache keyed by SQL text.
 */
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/timefmt.h"
#include "store/store_int.h"

#define BUSY_TIMEOUT_MS 10000
#define QCACHE 16            /* generic statements kept, by SQL text */
#define PROGRESS_OPS 1000    /* VM steps between deadline checks */

typedef struct sq_tab {
    sqlite3_stmt *upsert[2];        /* [returning]: INSERT .. ON CONFLICT DO UPDATE */
    sqlite3_stmt *update_null[2];   /* a NULL key: UPDATE .. WHERE k IS ? */
    sqlite3_stmt *insert[2];        /* a NULL key that matched no row: INSERT */
    sqlite3_stmt *insert_new;       /* INSERT .. ON CONFLICT DO NOTHING */
    sqlite3_stmt *insert_new_null;  /* INSERT .. SELECT .. WHERE NOT EXISTS (k IS ?) */
    sqlite3_stmt *del;
} sq_tab;

typedef struct sq_store {
    store base;
    sqlite3 *db;
    int64_t deadline;   /* time_mono_ns() past which statements are interrupted; 0: none */
    bool user_sql;      /* the authorizer is judging a store_sql_json statement */
    int denied;         /* the first action it refused, or -1 */
    bool denied_schema; /* ... an INSERT/UPDATE/DELETE of SQLite's schema table: the first step of
                           CREATE, DROP and pragma functions, not what the user wrote */
    struct {
        char *sql;
        sqlite3_stmt *st;
    } qc[QCACHE];
    unsigned qc_next;
} sq_store;

static sq_store *sq(store *s) { return (sq_store *)s; }

/* ---------------------------------------------------------------- errors */

static payi_code sq_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY: case SQLITE_LOCKED: return PAYI_UNAVAILABLE;
    case SQLITE_FULL: return PAYI_NOSPACE;
    case SQLITE_IOERR: case SQLITE_CANTOPEN: case SQLITE_PROTOCOL: return PAYI_IO;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return PAYI_CORRUPT;
    case SQLITE_INTERRUPT: return PAYI_TIMEOUT;
    case SQLITE_NOMEM: case SQLITE_MISUSE: case SQLITE_INTERNAL: return PAYI_INTERNAL;
    default: return PAYI_VALIDATION;   /* SQL errors, constraints, types */
    }
}

/* "read store URL: <what>: <SQLite's message>"; an unknown table is
 * PAYI_NOT_FOUND.  Call before resetting the statement (the message lives
 * on the connection). */
static payi_code sq_fail(sq_store *q, int rc, payi_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static payi_code sq_fail(sq_store *q, int rc, payi_err *err, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *msg = q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc);
    payi_code code = sq_code(rc);
    if (code == PAYI_VALIDATION && strncmp(msg, "no such table", 13) == 0)
        code = PAYI_NOT_FOUND;
    return payi_err_set(err, code, NULL, "read store %s: %s: %s", q->base.url, what, msg);
}

/* ---------------------------------------------------------------- values */

static payi_code sq_bind(sq_store *q, sqlite3_stmt *st, int i, const expr_value *v, payi_err *err)
{
    char tmp[STORE_TS_LEN + 1];
    int rc;
    if (v->null)
        rc = sqlite3_bind_null(st, i);
    else {
        switch (v->type) {
        case EXPR_BOOL: rc = sqlite3_bind_int(st, i, v->b); break;
        case EXPR_BIGINT: rc = sqlite3_bind_int64(st, i, v->i); break;
        case EXPR_DOUBLE: rc = sqlite3_bind_double(st, i, v->d); break;
        case EXPR_TEXT: case EXPR_JSONB:
            rc = sqlite3_bind_text(st, i, v->len ? v->s : "", (int)v->len, SQLITE_STATIC);   /* lives during the call */
            break;
        case EXPR_DATE:
        case EXPR_TIMESTAMPTZ:
            if (!(v->type == EXPR_DATE ? store__fmt_date(v->i, tmp) : store__fmt_ts(v->i, tmp)))
                return payi_err_set(err, PAYI_VALIDATION, NULL, "read store %s: %s out of range (years 1..9999)",
                                    q->base.url, expr_type_name(v->type));
            rc = sqlite3_bind_text(st, i, tmp, -1, SQLITE_TRANSIENT);
            break;
        default:
            return payi_err_set(err, PAYI_VALIDATION, NULL, "read store %s: value of unknown type %d", q->base.url,
                                (int)v->type);
        }
    }
    return rc == SQLITE_OK ? PAYI_OK : sq_fail(q, rc, err, "bind parameter %d", i);
}

/* Bind a row's values to its parameter slots (AVG columns have none). */
static payi_code sq_bind_row(sq_store *q, sqlite3_stmt *st, const store__tab *t, const expr_value *row,
                             payi_err *err)
{
    for (uint32_t c = 0; c < t->ncols; c++) {
        if (t->param[c] == UINT32_MAX)
            continue;
        payi_code rc = sq_bind(q, st, (int)t->param[c] + 1, &row[c], err);
        if (rc != PAYI_OK)
            return rc;
    }
    return PAYI_OK;
}

static const char *sq_type_word(int ct)
{
    switch (ct) {
    case SQLITE_INTEGER: return "an integer";
    case SQLITE_FLOAT: return "a real";
    case SQLITE_TEXT: return "text";
    default: return "a blob";
    }
}

/* Column i of the current row as a value of type t. */
static payi_code sq_column(sq_store *q, sqlite3_stmt *st, int i, expr_type t, expr_value *out, payi_err *err)
{
    int ct = sqlite3_column_type(st, i);
    if (ct == SQLITE_NULL) {
        *out = expr_null(t);
        return PAYI_OK;
    }
    switch (t) {
    case EXPR_BOOL:
    case EXPR_BIGINT:
        if (ct != SQLITE_INTEGER)
            break;
        *out = t == EXPR_BOOL ? expr_bool(sqlite3_column_int64(st, i) != 0) : expr_int(sqlite3_column_int64(st, i));
        return PAYI_OK;
    case EXPR_DOUBLE:
        if (ct != SQLITE_FLOAT && ct != SQLITE_INTEGER)
            break;
        *out = expr_double(sqlite3_column_double(st, i));
        return PAYI_OK;
    default: {
        const char *s = (const char *)sqlite3_column_text(st, i);
        size_t len = (size_t)sqlite3_column_bytes(st, i);
        if (ct == SQLITE_TEXT && store__parse_value(t, s ? s : "", len, out))
            return PAYI_OK;
        break;
    }
    }
    return payi_err_set(err, PAYI_CORRUPT, NULL, "read store %s: column \"%s\" holds %s where %s was expected",
                        q->base.url, sqlite3_column_name(st, i), sq_type_word(ct), expr_type_name(t));
}

/* --------------------------------------------------------------- running */

/* Step st to its end; each row (RETURNING) goes to fn, typed as t's
 * columns, until fn asks to stop.  Always leaves st reset. */
static payi_code sq_run(sq_store *q, sqlite3_stmt *st, store__tab *t, store_row_fn fn, void *ctx, bool *stop,
                        payi_err *err)
{
    int rc;
    payi_code pc = PAYI_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fn || *stop || pc != PAYI_OK)
            continue;
        for (uint32_t c = 0; c < t->ncols && pc == PAYI_OK; c++)
            pc = sq_column(q, st, (int)c, t->cols[c].type, &t->vals[c], err);
        if (pc == PAYI_OK && fn(ctx, t->vals, t->ncols))
            *stop = true;
    }
    if (rc != SQLITE_DONE)
        pc = sq_fail(q, rc, err, "table \"%s\"", t->name);
    sqlite3_reset(st);
    return pc;
}

/* what: the table the statement is about, or NULL to quote the SQL. */
static payi_code sq_prepare(sq_store *q, const char *sql, const char *what, unsigned flags, sqlite3_stmt **st,
                            payi_err *err)
{
    int rc = sqlite3_prepare_v3(q->db, sql, -1, flags, st, NULL);
    if (rc == SQLITE_OK && *st)
        return PAYI_OK;
    rc = rc == SQLITE_OK ? SQLITE_ERROR : rc;
    payi_code pc = what ? sq_fail(q, rc, err, "table \"%s\"", what) : sq_fail(q, rc, err, "%.100s", sql);
    sqlite3_finalize(*st);
    *st = NULL;
    return pc;
}

/* The table's statements, built on first use. */
typedef void (*sq_builder)(buf *b, const store *s, const store__tab *t, bool returning);

static payi_code sq_tab_stmt(sq_store *q, store__tab *t, sqlite3_stmt **slot, sq_builder build, bool returning,
                             payi_err *err)
{
    if (*slot)
        return PAYI_OK;
    buf b = BUF_INIT;
    build(&b, &q->base, t, returning);
    payi_code rc = sq_prepare(q, b.data, t->name, SQLITE_PREPARE_PERSISTENT, slot, err);
    buf_release(&b);
    return rc;
}

static const store__ref sq_ref = {'?', 0};

static void build_upsert(buf *b, const store *s, const store__tab *t, bool returning)
{
    store__sql_insert_into(b, t);
    buf_puts(b, " VALUES (");
    store__sql_row_values(b, s, t, &sq_ref);
    buf_putc(b, ')');
    store__sql_on_conflict(b, s, t, returning);
    if (returning)
        store__sql_returning(b, t);
}

static void build_update_null(buf *b, const store *s, const store__tab *t, bool returning)
{
    buf_puts(b, "UPDATE ");
    store__quote(b, t->name);
    buf_puts(b, " SET ");
    store__sql_set_params(b, s, t, &sq_ref);
    buf_puts(b, " WHERE ");
    store__sql_key_match(b, t, &sq_ref, true, NULL, true);
    if (returning)
        store__sql_returning(b, t);
}

static void build_insert(buf *b, const store *s, const store__tab *t, bool returning)
{
    store__sql_insert_into(b, t);
    buf_puts(b, " VALUES (");
    store__sql_row_values(b, s, t, &sq_ref);
    buf_putc(b, ')');
    if (returning)
        store__sql_returning(b, t);
}

static void build_insert_new(buf *b, const store *s, const store__tab *t, bool returning)
{
    (void)returning;
    build_insert(b, s, t, false);
    buf_puts(b, " ON CONFLICT DO NOTHING");
}

/* SQLite's unique index keeps NULLs distinct: look for the row with IS. */
static void build_insert_new_null(buf *b, const store *s, const store__tab *t, bool returning)
{
    (void)returning;
    store__sql_insert_into(b, t);
    buf_puts(b, " SELECT ");
    store__sql_row_values(b, s, t, &sq_ref);
    buf_puts(b, " WHERE NOT EXISTS (SELECT 1 FROM ");
    store__quote(b, t->name);
    buf_puts(b, " WHERE ");
    store__sql_key_match(b, t, &sq_ref, true, NULL, true);
    buf_putc(b, ')');
}

static void build_delete(buf *b, const store *s, const store__tab *t, bool returning)
{
    (void)s, (void)returning;
    buf_puts(b, "DELETE FROM ");
    store__quote(b, t->name);
    if (t->nkeys) {
        buf_puts(b, " WHERE ");
        store__sql_key_match(b, t, &sq_ref, false, NULL, true);
    }
}

static sq_tab *sq_tab_of(store__tab *t)
{
    if (!t->be)
        t->be = xcalloc(1, sizeof(sq_tab));
    return t->be;
}

static void sq_tab_release(store *s, store__tab *t)
{
    (void)s;
    sq_tab *b = t->be;
    for (int i = 0; i < 2; i++) {
        sqlite3_finalize(b->upsert[i]);
        sqlite3_finalize(b->update_null[i]);
        sqlite3_finalize(b->insert[i]);
    }
    sqlite3_finalize(b->insert_new);
    sqlite3_finalize(b->insert_new_null);
    sqlite3_finalize(b->del);
    free(b);
    t->be = NULL;
}

/* Bind row and run the table statement in *slot (built by build). */
static payi_code sq_row(sq_store *q, store__tab *t, sqlite3_stmt **slot, sq_builder build, bool returning,
                        const expr_value *row, store_row_fn fn, void *ctx, bool *stop, payi_err *err)
{
    payi_code rc = sq_tab_stmt(q, t, slot, build, returning, err);
    if (rc == PAYI_OK)
        rc = sq_bind_row(q, *slot, t, row, err);
    return rc == PAYI_OK ? sq_run(q, *slot, t, fn, ctx, stop, err) : rc;
}

/* ------------------------------------------------------------ operations */

static payi_code sq_upsert(store *s, store__tab *t, const expr_value *rows, size_t nrows, store_row_fn changed,
                           void *ctx, payi_err *err)
{
    sq_store *q = sq(s);
    sq_tab *b = sq_tab_of(t);
    bool ret = changed != NULL, stop = false;
    for (size_t r = 0; r < nrows; r++) {
        const expr_value *row = rows + r * t->ncols;
        payi_code rc;
        if (!store__key_has_null(t, row, false)) {
            rc = sq_row(q, t, &b->upsert[ret], build_upsert, ret, row, changed, ctx, &stop, err);
        } else {   /* invariant 5 of store.c */
            rc = sq_row(q, t, &b->update_null[ret], build_update_null, ret, row, changed, ctx, &stop, err);
            if (rc == PAYI_OK && sqlite3_changes(q->db) == 0)
                rc = sq_row(q, t, &b->insert[ret], build_insert, ret, row, changed, ctx, &stop, err);
        }
        if (rc != PAYI_OK)
            return rc;
    }
    return PAYI_OK;
}

static payi_code sq_insert_new(store *s, store__tab *t, const expr_value *rows, size_t nrows, bool *inserted,
                               payi_err *err)
{
    sq_store *q = sq(s);
    sq_tab *b = sq_tab_of(t);
    bool stop = false;
    for (size_t r = 0; r < nrows; r++) {
        const expr_value *row = rows + r * t->ncols;
        bool null_key = store__key_has_null(t, row, false);
        payi_code rc = null_key
            ? sq_row(q, t, &b->insert_new_null, build_insert_new_null, false, row, NULL, NULL, &stop, err)
            : sq_row(q, t, &b->insert_new, build_insert_new, false, row, NULL, NULL, &stop, err);
        if (rc != PAYI_OK)
            return rc;
        inserted[r] = sqlite3_changes(q->db) == 1;
    }
    return PAYI_OK;
}

static payi_code sq_delete(store *s, store__tab *t, const expr_value *keys, size_t nrows, payi_err *err)
{
    sq_store *q = sq(s);
    sq_tab *b = sq_tab_of(t);
    bool stop = false;
    payi_code rc = sq_tab_stmt(q, t, &b->del, build_delete, false, err);
    for (size_t r = 0; rc == PAYI_OK && r < (t->nkeys ? nrows : 1); r++) {
        for (uint32_t j = 0; rc == PAYI_OK && j < t->nkeys; j++)
            rc = sq_bind(q, b->del, (int)j + 1, &keys[r * t->nkeys + j], err);
        if (rc == PAYI_OK)
            rc = sq_run(q, b->del, t, NULL, NULL, &stop, err);
    }
    return rc;
}

static payi_code sq_exec(store *s, const char *sql, payi_err *err)
{
    sq_store *q = sq(s);
    int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? PAYI_OK : sq_fail(q, rc, err, "%.100s", sql);
}

/* A statement from the text-keyed cache (prepared on a miss; the oldest
 * entry goes). */
static payi_code sq_cached(sq_store *q, const char *sql, sqlite3_stmt **st, payi_err *err)
{
    for (unsigned i = 0; i < QCACHE; i++) {
        if (q->qc[i].sql && strcmp(q->qc[i].sql, sql) == 0) {
            *st = q->qc[i].st;
            return PAYI_OK;
        }
    }
    payi_code rc = sq_prepare(q, sql, NULL, SQLITE_PREPARE_PERSISTENT, st, err);
    if (rc != PAYI_OK)
        return rc;
    unsigned i = q->qc_next++ % QCACHE;
    free(q->qc[i].sql);
    sqlite3_finalize(q->qc[i].st);
    q->qc[i].sql = xstrdup(sql);
    q->qc[i].st = *st;
    return PAYI_OK;
}

static payi_code sq_query(store *s, const char *sql, const expr_value *params, uint32_t nparams,
                          const expr_type *types, uint32_t ncols, store_row_fn fn, void *ctx, payi_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st;
    payi_code pc = sq_cached(q, sql, &st, err);
    for (uint32_t i = 0; pc == PAYI_OK && i < nparams; i++)
        pc = sq_bind(q, st, (int)i + 1, &params[i], err);
    if (pc != PAYI_OK) {
        sqlite3_reset(st);
        return pc;
    }
    expr_value vals[64], *v = ncols <= 64 ? vals : xcalloc(ncols, sizeof *v);
    uint32_t n = ncols < (uint32_t)sqlite3_column_count(st) ? ncols : (uint32_t)sqlite3_column_count(st);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fn)
            continue;
        for (uint32_t c = 0; c < n && pc == PAYI_OK; c++)
            pc = sq_column(q, st, (int)c, types[c], &v[c], err);
        if (pc != PAYI_OK || fn(ctx, v, n)) {   /* stopped: the reset below ends the statement */
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        pc = sq_fail(q, rc, err, "%.100s", sql);
    sqlite3_reset(st);
    if (v != vals)
        free(v);
    return pc;
}

/* ------------------------------------------------------- read-only SQL */

static const char *action_word(int action)
{
    switch (action) {
    case SQLITE_INSERT: return "INSERT";
    case SQLITE_UPDATE: return "UPDATE";
    case SQLITE_DELETE: return "DELETE";
    case SQLITE_CREATE_INDEX: case SQLITE_CREATE_TABLE: case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE: case SQLITE_CREATE_TEMP_TRIGGER: case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_CREATE_TRIGGER: case SQLITE_CREATE_VIEW: case SQLITE_CREATE_VTABLE: return "CREATE";
    case SQLITE_DROP_INDEX: case SQLITE_DROP_TABLE: case SQLITE_DROP_TEMP_INDEX: case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TRIGGER: case SQLITE_DROP_TEMP_VIEW: case SQLITE_DROP_TRIGGER: case SQLITE_DROP_VIEW:
    case SQLITE_DROP_VTABLE: return "DROP";
    case SQLITE_ALTER_TABLE: return "ALTER TABLE";
    case SQLITE_ATTACH: return "ATTACH";
    case SQLITE_DETACH: return "DETACH";
    case SQLITE_PRAGMA: return "PRAGMA";
    case SQLITE_TRANSACTION: return "transaction control";
    case SQLITE_SAVEPOINT: return "SAVEPOINT";
    case SQLITE_REINDEX: return "REINDEX";
    case SQLITE_ANALYZE: return "ANALYZE";
    case SQLITE_FUNCTION: return "load_extension()";
    default: return "this statement";
    }
}

/* Only while judging the user's statement: payi's own statements on a
 * read-only store (BEGIN, reads) are not the user's. */
static int sq_authorize(void *ctx, int action, const char *a, const char *b, const char *db, const char *trigger)
{
    sq_store *q = ctx;
    (void)db, (void)trigger;
    if (!q->user_sql)
        return SQLITE_OK;
    switch (action) {
    case SQLITE_SELECT: case SQLITE_READ: case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_FUNCTION:
        if (!b || strcasecmp(b, "load_extension") != 0)
            return SQLITE_OK;
        break;
    default:
        break;
    }
    if (q->denied < 0) {
        q->denied = action;
        q->denied_schema = a && strncmp(a, "sqlite_", 7) == 0;
    }
    return SQLITE_DENY;
}

static int sq_progress(void *ctx)
{
    sq_store *q = ctx;
    return q->deadline && time_mono_ns() > q->deadline;
}

static payi_code sql_fail(sq_store *q, int rc, int timeout_ms, payi_err *err)
{
    if (q->denied >= 0 && q->denied_schema)
        return payi_err_set(err, PAYI_VALIDATION, "sql", "the SQL endpoint is read-only: schema changes and "
                            "pragmas (CREATE, DROP, ALTER, PRAGMA) are not allowed");
    if (q->denied >= 0)
        return payi_err_set(err, PAYI_VALIDATION, "sql", "the SQL endpoint is read-only: %s is not allowed",
                            action_word(q->denied));
    if ((rc & 0xff) == SQLITE_INTERRUPT)
        return payi_err_set(err, PAYI_TIMEOUT, "sql", "the SQL statement ran longer than %d ms and was stopped",
                            timeout_ms);
    const char *msg = sqlite3_errmsg(q->db);
    if ((rc & 0xff) == SQLITE_READONLY)
        return payi_err_set(err, PAYI_VALIDATION, "sql", "the SQL endpoint is read-only: %s", msg);
    payi_code code = sq_code(rc);
    if (code == PAYI_NOT_FOUND || code == PAYI_INTERNAL)
        code = PAYI_VALIDATION;
    int off = sqlite3_error_offset(q->db);
    if (off >= 0)
        return payi_err_set(err, code, "sql", "%s (at byte %d of the statement)", msg, off);
    return payi_err_set(err, code, "sql", "%s", msg);
}

/* True when tail holds nothing but whitespace, comments and semicolons. */
static bool only_trailing(sq_store *q, const char *tail)
{
    while (*tail) {
        sqlite3_stmt *st = NULL;
        const char *next = NULL;
        int rc = sqlite3_prepare_v3(q->db, tail, -1, 0, &st, &next);
        bool more = rc != SQLITE_OK || st != NULL || next == tail;
        sqlite3_finalize(st);
        if (more)
            return false;
        tail = next;
    }
    return true;
}

static void put_blob_json(buf *out, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_puts(out, "\"\\\\x");
    for (size_t i = 0; i < n; i++) {
        buf_putc(out, hex[p[i] >> 4]);
        buf_putc(out, hex[p[i] & 15]);
    }
    buf_putc(out, '"');
}

static void put_value_json(buf *out, sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: buf_put_i64(out, sqlite3_column_int64(st, i)); break;
    case SQLITE_FLOAT: store__json_double(out, sqlite3_column_double(st, i)); break;
    case SQLITE_TEXT: {
        const char *s = (const char *)sqlite3_column_text(st, i);
        store__json_text(out, s ? s : "", (size_t)sqlite3_column_bytes(st, i));
        break;
    }
    case SQLITE_BLOB: {
        const void *p = sqlite3_column_blob(st, i);
        put_blob_json(out, p, (size_t)sqlite3_column_bytes(st, i));
        break;
    }
    default: buf_puts(out, "null"); break;
    }
}

static payi_code sq_rows_json(sq_store *q, sqlite3_stmt *st, size_t max_rows, int timeout_ms, buf *out,
                              payi_err *err)
{
    int n = sqlite3_column_count(st), rc;
    buf_puts(out, "{\"columns\":[");
    for (int i = 0; i < n; i++) {
        const char *name = sqlite3_column_name(st, i);
        if (i)
            buf_putc(out, ',');
        store__json_text(out, name ? name : "", name ? strlen(name) : 0);
    }
    buf_puts(out, "],\"rows\":[");
    size_t rows = 0;
    bool truncated = false;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows == max_rows) {
            truncated = true;
            break;
        }
        buf_puts(out, rows++ ? ",[" : "[");
        for (int i = 0; i < n; i++) {
            if (i)
                buf_putc(out, ',');
            put_value_json(out, st, i);
        }
        buf_putc(out, ']');
    }
    if (!truncated && rc != SQLITE_DONE)
        return sql_fail(q, rc, timeout_ms, err);
    buf_printf(out, "],\"truncated\":%s}", truncated ? "true" : "false");
    return PAYI_OK;
}

static payi_code sq_sql_json(store *s, const char *sql, size_t max_rows, int timeout_ms, buf *out, payi_err *err)
{
    sq_store *q = sq(s);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    payi_code pc;
    q->user_sql = true;
    q->denied = -1;
    q->deadline = timeout_ms > 0 ? time_mono_ns() + (int64_t)timeout_ms * 1000000 : 0;
    int rc = sqlite3_prepare_v3(q->db, sql, -1, 0, &st, &tail);
    if (rc != SQLITE_OK)
        pc = sql_fail(q, rc, timeout_ms, err);
    else if (!st)
        pc = payi_err_set(err, PAYI_VALIDATION, "sql", "no SQL statement given");
    else if (!only_trailing(q, tail))
        pc = payi_err_set(err, PAYI_VALIDATION, "sql", "only one SQL statement is allowed per request");
    else if (!sqlite3_stmt_readonly(st))
        pc = payi_err_set(err, PAYI_VALIDATION, "sql", "the SQL endpoint is read-only: the statement would write");
    else {
        q->denied = -1;   /* only_trailing may have been refused something: not this statement */
        pc = sq_rows_json(q, st, max_rows, timeout_ms, out, err);
    }
    sqlite3_finalize(st);
    q->user_sql = false;
    q->deadline = 0;
    return pc;
}

/* ------------------------------------------------------------ life cycle */

static void sq_close(store *s)
{
    sq_store *q = sq(s);
    store__release(s);   /* finalizes the tables' statements first */
    for (unsigned i = 0; i < QCACHE; i++) {
        free(q->qc[i].sql);
        sqlite3_finalize(q->qc[i].st);
    }
    sqlite3_close_v2(q->db);
    free(q);
}

static const store__ops sq_ops = {
    .type_names = {[EXPR_BOOL] = "INTEGER", [EXPR_BIGINT] = "INTEGER", [EXPR_DOUBLE] = "REAL",
                   [EXPR_TEXT] = "TEXT", [EXPR_DATE] = "TEXT", [EXPR_TIMESTAMPTZ] = "TEXT", [EXPR_JSONB] = "TEXT"},
    .text_collate = "",
    .table_options = " STRICT",
    .hidden_key_type = "INTEGER",
    .fn_min = "min",
    .fn_max = "max",
    .begin_rw = "BEGIN IMMEDIATE",   /* take the write lock now: a deferred transaction that reads first
                                        cannot wait for it later (SQLITE_BUSY at once) */
    .param_mark = '?',
    .close = sq_close,
    .exec = sq_exec,
    .query = sq_query,
    .upsert = sq_upsert,
    .del = sq_delete,
    .insert_new = sq_insert_new,
    .sql_json = sq_sql_json,
    .tab_release = sq_tab_release,
};

/* A pragma's one-value answer (journal_mode answers the mode it got). */
static payi_code sq_pragma(sq_store *q, const char *sql, char *ans, size_t cap, payi_err *err)
{
    sqlite3_stmt *st;
    payi_code pc = sq_prepare(q, sql, NULL, 0, &st, err);
    if (pc != PAYI_OK)
        return pc;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && ans)
        snprintf(ans, cap, "%s", (const char *)sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        pc = sq_fail(q, rc, err, "%s", sql);
    sqlite3_finalize(st);
    return pc;
}

static payi_code sq_setup_rw(sq_store *q, payi_err *err)
{
    char mode[32] = "";
    payi_code rc = sq_pragma(q, "PRAGMA journal_mode=WAL", mode, sizeof mode, err);
    if (rc == PAYI_OK && strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
        rc = payi_err_set(err, PAYI_UNAVAILABLE, NULL, "read store %s: cannot use WAL (journal mode is \"%s\")",
                          q->base.url, mode);
    if (rc == PAYI_OK)
        rc = sq_pragma(q, "PRAGMA synchronous=NORMAL", NULL, 0, err);
    if (rc == PAYI_OK)
        rc = sq_pragma(q, "PRAGMA cache_size=-32768", NULL, 0, err);
    return rc;
}

static payi_code sq_setup_ro(sq_store *q, payi_err *err)
{
    payi_code rc = sq_pragma(q, "PRAGMA query_only=1", NULL, 0, err);
    if (rc == PAYI_OK)   /* an unreadable file says so now, not at the first request */
        rc = sq_pragma(q, "SELECT count(*) FROM sqlite_schema", NULL, 0, err);
    sqlite3_limit(q->db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(q->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    sqlite3_set_authorizer(q->db, sq_authorize, q);
    sqlite3_progress_handler(q->db, PROGRESS_OPS, sq_progress, q);
    return rc;
}

payi_code store__sqlite_open(store **out, const char *path, store_mode mode, const char *url, payi_err *err)
{
    sq_store *q = xcalloc(1, sizeof *q);
    store__init(&q->base, &sq_ops, STORE_SQLITE, mode, url);
    q->denied = -1;
    q->base.key_clause = "UNIQUE";   /* a STRICT table's PRIMARY KEY refuses NULL; UNIQUE keeps NULLs
                                        distinct, which sq_upsert's NULL-key path makes up for */
    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
                (mode == STORE_RO ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &q->db, flags, NULL);
    payi_code pc;
    if (rc != SQLITE_OK)
        pc = payi_err_set(err, PAYI_UNAVAILABLE, NULL, "cannot open read store %s: %s", url,
                          q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
    else {
        sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
        pc = mode == STORE_RW ? sq_setup_rw(q, err) : sq_setup_ro(q, err);
        if (pc != PAYI_OK && err)   /* the setup message names the URL already; say what failed */
            err->code = pc == PAYI_CORRUPT ? PAYI_CORRUPT : PAYI_UNAVAILABLE;
    }
    if (pc != PAYI_OK) {
        sq_close(&q->base);
        return pc == PAYI_CORRUPT ? PAYI_CORRUPT : PAYI_UNAVAILABLE;
    }
    *out = &q->base;
    return PAYI_OK;
}
