/* store_int.h — private to src/store: the store value, the backend vtable,
 * the per-table cache, and the helpers store.c shares with the backends
 * (store_sqlite.c, store_pg.c).  Internal names carry the prefix store__.
 *
 * Who does what.  store.c checks arguments, keeps the transaction state,
 * owns the table cache and writes every SQL text that is the same in both
 * dialects (DDL, merge expressions, select, checkpoints); a backend talks
 * to its library: connection, statements, binding values, reading rows,
 * error mapping, and the statement layouts that differ (SQLite: one
 * prepared row statement stepped per row; PostgreSQL: multi-row VALUES
 * statements).
 */
#ifndef PAYI_STORE_INT_H
#define PAYI_STORE_INT_H

#include "store/store.h"

/* A table as the cache holds it: the caller's store_table validated and
 * copied, with what every statement about it needs. */
typedef struct store__tab {
    char *sig;              /* cache key: name and shape (see tab_signature) */
    size_t sig_len;
    uint64_t sig_hash;
    char *name;
    store_col *cols;        /* copies; names owned */
    uint32_t ncols;
    uint32_t *keys;         /* indexes of the key columns, in order */
    uint32_t nkeys;         /* 0: the hidden key STORE_HIDDEN_KEY */
    uint32_t *param;        /* param[c]: 0-based parameter slot of column c in a row
                               statement; UINT32_MAX for SMERGE_AVG (computed in SQL) */
    uint32_t nparams;       /* parameters per row */
    expr_value *vals;       /* ncols scratch values for row callbacks */
    void *be;               /* the backend's statements for this table */
} store__tab;

/* A parameter reference in generated SQL: SQLite ?N, PostgreSQL $N. */
typedef struct store__ref {
    char mark;              /* '?' or '$' */
    uint32_t base;          /* slot of the row's first parameter */
} store__ref;

typedef struct store__ops {
    const char *type_names[EXPR_JSONB + 1];   /* column types, by expr_type */
    const char *text_collate;                  /* appended to text columns */
    const char *table_options;                 /* appended to CREATE TABLE (...) */
    const char *hidden_key_type;
    const char *fn_min, *fn_max;               /* two-argument scalar min / max */
    const char *begin_rw;                      /* BEGIN for a writer */
    char param_mark;                           /* '?' or '$' */

    void (*close)(store *s);
    /* One statement without parameters or rows (DDL, BEGIN, COMMIT). */
    payi_code (*exec)(store *s, const char *sql, payi_err *err);
    /* One statement with typed parameters; each result row converted to
     * the given column types and passed to fn (fn may be NULL). */
    payi_code (*query)(store *s, const char *sql, const expr_value *params, uint32_t nparams,
                       const expr_type *types, uint32_t ncols, store_row_fn fn, void *ctx, payi_err *err);
    payi_code (*upsert)(store *s, store__tab *t, const expr_value *rows, size_t nrows, store_row_fn changed,
                        void *ctx, payi_err *err);
    payi_code (*del)(store *s, store__tab *t, const expr_value *keys, size_t nrows, payi_err *err);
    payi_code (*insert_new)(store *s, store__tab *t, const expr_value *rows, size_t nrows, bool *inserted,
                            payi_err *err);
    payi_code (*sql_json)(store *s, const char *sql, size_t max_rows, int timeout_ms, buf *out, payi_err *err);
    /* Free t->be (the table was dropped or renamed, or the store closes). */
    void (*tab_release)(store *s, store__tab *t);
} store__ops;

/* The common part of a store; a backend's struct begins with it. */
struct store {
    const store__ops *ops;
    store_kind kind;
    store_mode mode;
    char *url;                  /* redacted, for messages */
    const char *key_clause;     /* "PRIMARY KEY" or "UNIQUE NULLS NOT DISTINCT" */
    bool in_txn, txn_failed;
    store__tab **tabs;
    size_t ntabs, tabs_cap;
    buf sig;                    /* scratch: the signature being looked up */
    uint32_t *set;              /* scratch: open-addressing set of row indexes */
    size_t set_cap;
};

payi_code store__sqlite_open(store **out, const char *path, store_mode mode, const char *url, payi_err *err);
payi_code store__pg_open(store **out, const char *conninfo, store_mode mode, const char *url, payi_err *err);
/* Fill the common part (after the backend allocated its struct). */
void store__init(store *s, const store__ops *ops, store_kind kind, store_mode mode, const char *url);
void store__release(store *s);   /* frees the common part (not s) */

/* ---- SQL text ---------------------------------------------------------- */
void store__quote(buf *b, const char *name);   /* "name" with " doubled */
void store__put_ref(buf *b, const store__ref *r, uint32_t slot);
/* INSERT INTO "t" ("payi_one"?, "c0", ...) */
void store__sql_insert_into(buf *b, const store__tab *t);
/* The comma-separated values of one row for store__sql_insert_into: 1 for
 * the hidden key, a parameter for each column, the quotient for AVG. */
void store__sql_row_values(buf *b, const store *s, const store__tab *t, const store__ref *r);
/* ON CONFLICT (keys) DO UPDATE SET <merges>, or DO NOTHING when nothing
 * merges and nothing is returned. */
void store__sql_on_conflict(buf *b, const store *s, const store__tab *t, bool returning);
/* The merge assignments with the new row's values taken from parameters
 * (SQLite's UPDATE for NULL keys).  Never empty. */
void store__sql_set_params(buf *b, const store *s, const store__tab *t, const store__ref *r);
/* " RETURNING" and the visible columns. */
void store__sql_returning(buf *b, const store__tab *t);
/* The key columns matched: "t"."k0" IS ?1 AND ... (is_form: SQLite, where
 * IS uses the index and matches NULL), else "t"."k0" = $1 AND ..., with
 * IS NULL for the keys whose value in vals (when given) is NULL
 * (PostgreSQL, whose IS NOT DISTINCT FROM cannot use an index).  row_slots:
 * the parameters are the row's (t->param), else numbered from r->base
 * over the key values that are not NULL. */
void store__sql_key_match(buf *b, const store__tab *t, const store__ref *r, bool row_slots,
                          const expr_value *vals, bool is_form);

/* ---- values -------------------------------------------------------------- */
/* Text forms: date "YYYY-MM-DD", timestamptz "YYYY-MM-DDTHH:MM:SS.ffffffZ".
 * False when the value is outside years 1..9999. */
#define STORE_DATE_LEN 10
#define STORE_TS_LEN 27
bool store__fmt_date(int64_t days, char out[STORE_DATE_LEN + 1]);
bool store__fmt_ts(int64_t us, char out[STORE_TS_LEN + 1]);
/* A double that reads back exactly ("%.17g"), or Infinity / -Infinity / NaN. */
void store__fmt_double(double d, buf *out);
/* Parse a stored or server-produced text as a value of type t (booleans:
 * t/f/true/false/1/0).  False when it does not parse. */
bool store__parse_value(expr_type t, const char *s, size_t len, expr_value *out);
/* Append the PostgreSQL input text of a non-NULL value (booleans t/f). */
payi_code store__value_text(const expr_value *v, buf *out, payi_err *err);
/* Check that every value of nrows rows of width `width` (the columns cols[]
 * of t, or all columns when cols is NULL) has its column's type. */
payi_code store__check_values(const store *s, const store__tab *t, const expr_value *vals, size_t nrows,
                              const uint32_t *cols, uint32_t width, const char *what, payi_err *err);
bool store__key_has_null(const store__tab *t, const expr_value *row, bool row_is_keys);

/* ---- key sets (rows with equal keys) ----------------------------------- */
/* Empty the set, sized for up to max_rows rows. */
void store__set_clear(store *s, size_t max_rows);
/* Add row i of rows (width values each, keys at t->keys[]); returns the
 * index of a row already in the set with the same key (and adds nothing),
 * or SIZE_MAX when i was added. */
size_t store__set_add(store *s, const store__tab *t, const expr_value *rows, uint32_t width, size_t i);

/* ---- JSON -------------------------------------------------------------- */
void store__json_text(buf *out, const char *s, size_t len);   /* string; bad UTF-8 -> U+FFFD */
void store__json_double(buf *out, double d);                  /* number, or string for NaN/inf */

#endif
