/* store.h — the read store: where views land.  SQLite (embedded default, a
 * file in the data directory, WAL) or PostgreSQL (libpq), behind one
 * interface, so that the same view definition gives the same rows in both.
 *
 *   store *st;
 *   store_open(&st, "sqlite:payi-data/views.db", STORE_RW, &err);
 *   store_open(&st, "postgresql://postgres@127.0.0.1:5432/postgres", STORE_RW, &err);
 *
 * One store value is one connection, used by one thread at a time.  Several
 * connections to one SQLite file are fine (WAL; writers wait for each
 * other with a busy timeout of 10 s, then fail with PAYI_UNAVAILABLE).
 *
 * View tables.  A view is a real table named as the view, unique on its key
 * columns, readable by sqlite3 and psql.  Each column has a merge rule
 * saying how a new row for an existing key combines with the stored one;
 * store_upsert turns the rules into one INSERT ... ON CONFLICT DO UPDATE
 * (both stores speak it).  Text columns are COLLATE "C" in PostgreSQL so
 * that min/max/order compare bytes as SQLite does.  Column types:
 *
 *   bigint      INTEGER                       bigint
 *   double      REAL                          double precision
 *   text        TEXT                          text COLLATE "C"
 *   boolean     INTEGER 0/1                   boolean
 *   date        TEXT 'YYYY-MM-DD'             date
 *   timestamptz TEXT 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (always 6 digits, UTC)
 *                                             timestamptz
 *   jsonb       TEXT (as given)               jsonb (PostgreSQL normalizes
 *                                             its text: spaces, key order)
 *
 * SQLite tables are STRICT, so a bigint sum that overflows is an error in
 * both stores (SQLite would otherwise turn it into a REAL).
 *
 * Key columns may hold NULL (GROUP BY makes a NULL group): NULL is one key
 * value like any other.  PostgreSQL needs version 15 for that (UNIQUE NULLS
 * NOT DISTINCT); on older servers the key is a PRIMARY KEY and a NULL key is
 * refused by the server.  A table with no key column holds one row, keyed
 * by a hidden constant column STORE_HIDDEN_KEY ("payi_one", always 1),
 * which store_select and `changed` rows leave out (SELECT * shows it).
 *
 * Checkpoints.  Table payi_views (view PK, hash, position, table_name,
 * definition) holds each view's last applied position and definition hash;
 * it is created by store_open in STORE_RW.  The engine writes a batch's rows
 * and the checkpoint in one transaction (store_begin .. store_commit):
 * exactly once.
 *
 * Transactions.  Every write function is atomic: outside store_begin ..
 * store_commit it runs in a transaction of its own.  Inside one, a failed
 * call spoils the whole transaction (PostgreSQL aborts it; SQLite may have
 * applied part of the call): later calls are refused, store_commit rolls
 * back and fails, and the caller should store_rollback and start again.
 *
 * Read-only SQL.  A store opened STORE_RO refuses every write: SQLite opens
 * the file read-only with query_only and an authorizer allowing reads only,
 * PostgreSQL runs in READ ONLY transactions with a statement timeout and
 * accepts only SELECT, VALUES, TABLE, EXPLAIN and SHOW statements.  Connect
 * to PostgreSQL as a role without superuser rights all the same (functions
 * such as pg_read_file are reads).
 */
#ifndef PAYI_STORE_H
#define PAYI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "spec/expr.h"

typedef struct store store;

typedef enum store_kind { STORE_SQLITE = 1, STORE_POSTGRES } store_kind;
typedef enum store_mode { STORE_RW = 1, STORE_RO } store_mode;

#define STORE_HIDDEN_KEY "payi_one"   /* the key column of a table without key columns */
#define STORE_META_TABLE "payi_views"
#define STORE_NAME_MAX 63             /* bytes in a table or column name (PostgreSQL's limit) */

/* url: "sqlite:PATH", or "postgresql://..." / "postgres://..." (a libpq
 * URI).  Errors name the URL (without its password) and the cause:
 * PAYI_VALIDATION for a URL of no known kind, PAYI_UNAVAILABLE when the
 * store cannot be reached or opened.  On success *out is owned by the
 * caller until store_close. */
payi_code store_open(store **out, const char *url, store_mode mode, payi_err *err);
void store_close(store *s);   /* rolls back an open transaction; NULL is fine */
store_kind store_get_kind(const store *s);
/* The URL with any password replaced by "***", for messages and logs
 * (appended to out). */
void store_url_redacted(const char *url, buf *out);

typedef enum store_merge {
    SMERGE_KEY = 1,    /* part of the key */
    SMERGE_ADD,        /* old + new; NULL + x = x (sum, count); bigint or double */
    SMERGE_MIN,        /* least non-NULL (text: bytewise); not jsonb */
    SMERGE_MAX,        /* greatest non-NULL; not jsonb */
    SMERGE_REPLACE,    /* new (latest), NULL included */
    SMERGE_KEEP,       /* old (earliest), NULL included */
    SMERGE_AVG,        /* double: (sum col) / (count col) after their merge, NULL when the
                          count is 0; the row's own value is ignored */
} store_merge;

typedef struct store_col {
    const char *name;
    expr_type type;
    store_merge merge;
    uint32_t avg_sum, avg_count;   /* SMERGE_AVG: indexes of its SMERGE_ADD sum (bigint or
                                      double) and count (bigint) columns */
    /* SMERGE_REPLACE / SMERGE_KEEP: index of a guard column, or STORE_NO_GUARD.
     * A new row whose guard value is NULL brings no value for this column
     * (the stored one stays); KEEP keeps the stored value only when the
     * stored guard is not NULL.  latest(x) / earliest(x) use the position of
     * the event the value came from as guard, so that a NULL x is still a
     * value and a batch without one changes nothing.  The guard is another
     * column, neither a key nor AVG (a zero-filled store_col would name
     * column 0: say STORE_NO_GUARD); other merge rules ignore it. */
    uint32_t guard;
} store_col;
#define STORE_NO_GUARD UINT32_MAX

/* A table's shape.  Names: 1..STORE_NAME_MAX bytes of UTF-8, any
 * characters (they are quoted); column names distinct ignoring ASCII case
 * (SQLite's rule); the table name not STORE_META_TABLE.  The store keeps
 * its own copy: the caller's store_table need only live during a call. */
typedef struct store_table {
    const char *name;
    const store_col *cols;
    uint32_t ncols;
} store_table;

/* SQLite takes the write lock at store_begin (BEGIN IMMEDIATE). */
payi_code store_begin(store *s, payi_err *err);
payi_code store_commit(store *s, payi_err *err);
void store_rollback(store *s);   /* no-op outside a transaction */

/* CREATE TABLE IF NOT EXISTS (unique key on the SMERGE_KEY columns in
 * their order; a table with no key column holds one row, keyed by the
 * hidden column STORE_HIDDEN_KEY).  An existing table is not checked
 * against t: payi_views' hash says whether it is current. */
payi_code store_create_table(store *s, const store_table *t, payi_err *err);
payi_code store_drop_table(store *s, const char *name, payi_err *err);   /* IF EXISTS */
/* Drop `to` if it exists and rename `from` to `to` (inside the caller's
 * transaction: readers see the old table or the new one). */
payi_code store_replace_table(store *s, const char *from, const char *to, payi_err *err);
/* On error: false, and err says why. */
bool store_table_exists(store *s, const char *name, payi_err *err);

/* A row callback: vals[0..ncols) in the table's column order; text values
 * valid during the call.  Return nonzero to stop. */
typedef int (*store_row_fn)(void *ctx, const expr_value *vals, uint32_t ncols);

/* Merge nrows rows (t->ncols values each, row-major) into t, in order (two
 * rows with one key merge as if sent one after the other).  Each value has
 * its column's type or is a NULL (of any type).  When changed is not NULL
 * it is called with every merged row as stored after the statement
 * (RETURNING), for change feeds; its nonzero return stops the calls, not
 * the merge.  An unknown table: PAYI_NOT_FOUND. */
payi_code store_upsert(store *s, const store_table *t, const expr_value *rows, size_t nrows,
                       store_row_fn changed, void *ctx, payi_err *err);
/* Delete the rows whose keys (the key columns' values, in order, row-major;
 * NULL matches NULL) are given.  A table without key column: nrows > 0
 * deletes its row. */
payi_code store_delete(store *s, const store_table *t, const expr_value *keys, size_t nrows, payi_err *err);
/* Insert rows that are not there yet (a table whose columns are all keys:
 * the sets behind count(DISTINCT)); inserted[i] says whether row i was new
 * (a row repeated in rows is new at most once). */
payi_code store_insert_new(store *s, const store_table *t, const expr_value *rows, size_t nrows,
                           bool *inserted, payi_err *err);

/* A view's checkpoint. */
typedef struct store_meta {
    bool found;
    uint64_t hash;
    uint64_t position;     /* events applied: every position < this one (at most INT64_MAX) */
    char table[STORE_NAME_MAX + 1];
} store_meta;
payi_code store_get_meta(store *s, const char *view, store_meta *out, payi_err *err);
/* table / definition NULL: keep the stored value (a new row takes the view's
 * name as table and no definition), so that the per-batch checkpoint need
 * not send the definition again. */
payi_code store_put_meta(store *s, const char *view, uint64_t hash, uint64_t position, const char *table,
                         const char *definition, payi_err *err);
payi_code store_delete_meta(store *s, const char *view, payi_err *err);

/* Read a view table: rows whose columns equal the filters (values typed as
 * the columns; a NULL filter matches NULL), ordered by the given columns
 * then by the key columns (so that both stores give the same order; NULLs
 * sort as in PostgreSQL: last ascending, first descending), at most limit
 * rows (-1: all).  Rows are streamed to row (the hidden key left out). */
typedef struct store_filter {
    uint32_t col;
    expr_value value;
} store_filter;
typedef struct store_order {
    uint32_t col;
    bool desc;
} store_order;
payi_code store_select(store *s, const store_table *t, const store_filter *filters, uint32_t nfilters,
                       const store_order *order, uint32_t norder, int64_t limit, store_row_fn row, void *ctx,
                       payi_err *err);

/* Read-only SQL (a store opened STORE_RO, outside a transaction): one
 * statement; appends to out
 * {"columns":["a",...],"rows":[[...],...],"truncated":bool} with at most
 * max_rows rows, values as JSON: numbers for integer and floating columns
 * (PostgreSQL: int2/4/8, float4/8, numeric; NaN and infinities as
 * strings), true/false for PostgreSQL booleans, embedded JSON for json and
 * jsonb, null, and strings for the rest (timestamptz from PostgreSQL in the
 * RFC 3339 form SQLite stores, SQLite blobs as "\\x0a1b..").  A write or
 * several statements: PAYI_VALIDATION, message beginning "the SQL endpoint
 * is read-only" / naming the rule; a SQL error: PAYI_VALIDATION with the
 * store's message; longer than timeout_ms (<= 0: no limit): PAYI_TIMEOUT.
 * On error out is left as it was. */
payi_code store_sql_json(store *s, const char *sql, size_t max_rows, int timeout_ms, buf *out, payi_err *err);

#endif
