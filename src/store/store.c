/* store.c — the read store's common part: arguments, transactions, the
 * table cache, and the SQL that both dialects share.  The backends are
 * store_sqlite.c and store_pg.c (vtable in store_int.h).
 *
 * TABLES, by example.  A view
 *
 *   CREATE VIEW daily AS SELECT country, day, sum(new_cases) AS cases,
 *     count(*) AS n, avg(new_cases) AS mean, max(city) AS top FROM ... GROUP BY country, day
 *
 * arrives as store_table {"daily", cols: country KEY text, day KEY date,
 * cases ADD bigint, n ADD bigint, s ADD bigint (hidden sum), mean AVG(s, n)
 * double, top MAX text} and becomes
 *
 *   SQLite:     CREATE TABLE IF NOT EXISTS "daily" ("country" TEXT, "day" TEXT,
 *                 "cases" INTEGER, "n" INTEGER, "s" INTEGER, "mean" REAL, "top" TEXT,
 *                 UNIQUE ("country", "day")) STRICT
 *   PostgreSQL: CREATE TABLE IF NOT EXISTS "daily" ("country" text COLLATE "C",
 *                 "day" date, ..., "top" text COLLATE "C",
 *                 UNIQUE NULLS NOT DISTINCT ("country", "day"))
 *
 * and a row merges with (SQLite numbers its parameters ?N, PostgreSQL $N
 * and puts up to 1000 rows in one VALUES list):
 *
 *   INSERT INTO "daily" ("country", "day", "cases", "n", "s", "mean", "top")
 *     VALUES (?1, ?2, ?3, ?4, ?5, CAST(?5 AS REAL) / NULLIF(?4, 0), ?6)
 *   ON CONFLICT ("country", "day") DO UPDATE SET
 *     "cases" = coalesce("daily"."cases" + excluded."cases", "daily"."cases", excluded."cases"),
 *     ...
 *     "mean" = CAST(<merged s> AS REAL) / NULLIF(<merged n>, 0),
 *     "top" = coalesce(max("daily"."top", excluded."top"), "daily"."top", excluded."top")
 *   [RETURNING "country", "day", ...]
 *
 * Merge rules as SQL (old = "t"."c", new = excluded."c"):
 *   ADD      coalesce(old + new, old, new)          NULL + x = x
 *   MIN/MAX  coalesce(F(old, new), old, new)        F = min/max (SQLite, NULL if
 *                                                   any argument is NULL) or
 *                                                   least/greatest (PostgreSQL,
 *                                                   which skip NULLs already)
 *   REPLACE  new;  with a guard g: CASE WHEN new.g IS NULL THEN old ELSE new END
 *   KEEP     (not assigned: old stays);
 *            with a guard g: CASE WHEN old.g IS NULL THEN new ELSE old END
 *   AVG      CAST(merge(sum) AS double) / NULLIF(merge(count), 0)
 * (The guard of latest(x) / earliest(x) is the position the value came
 * from: a NULL x is then still a value, and a row without one is told
 * apart from a row whose value is NULL.)
 * SET expressions all see the row as it was before the statement, so AVG
 * repeats the merges of its sum and count rather than reading their new
 * values.
 *
 * INVARIANTS
 *  1. No SQL text contains a value: values travel as parameters; names are
 *     quoted by store__quote (" doubled).  The only numbers printed into SQL
 *     are LIMIT and statement_timeout, which are ours.
 *  2. Every write call is atomic (its own transaction outside
 *     store_begin..store_commit); inside one, a failure marks the
 *     transaction failed and store_commit then rolls back (PostgreSQL
 *     answers COMMIT of an aborted transaction with a successful ROLLBACK:
 *     we never report that as committed).
 *  3. A cached store__tab is the exact shape it was built from: the cache key
 *     is the table name and every column's name, type and merge rule, so a
 *     table recreated with another shape gets new statements.  Dropping or
 *     renaming a table evicts its entries.
 *  4. Text forms written to SQLite sort as the values do: dates and
 *     timestamps have fixed width (years 1..9999, always 6 fraction
 *     digits, UTC), so min/max/ORDER BY on the text agree with PostgreSQL's
 *     date/timestamptz; text compares bytewise in both (BINARY, COLLATE "C").
 *  5. A NULL key is a key value: PostgreSQL's unique key is NULLS NOT
 *     DISTINCT; SQLite's is UNIQUE (a STRICT table's PRIMARY KEY refuses
 *     NULL), whose index keeps NULLs distinct, so a row with a NULL key goes
 *     through UPDATE ... WHERE k IS ?, then INSERT when no row matched.
 */
#include "store/store.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/hash.h"
#include "base/json.h"
#include "base/mem.h"
#include "store/store_int.h"

#define MAX_COLS 1000
#define DAY_US 86400000000LL

/* ------------------------------------------------------------------ URLs */

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static bool is_pg_url(const char *url) { return has_prefix(url, "postgresql://") || has_prefix(url, "postgres://"); }

/* Replace the value of every password=... (a libpq URI's query parameter). */
static void redact_params(const char *s, buf *out)
{
    static const char key[] = "password=";
    while (*s) {
        const char *p = strstr(s, key);
        if (!p) {
            buf_puts(out, s);
            return;
        }
        p += sizeof key - 1;
        buf_put(out, s, (size_t)(p - s));
        buf_puts(out, "***");
        s = p + strcspn(p, "&# ");
    }
}

void store_url_redacted(const char *url, buf *out)
{
    if (!url) {
        buf_puts(out, "(null)");
        return;
    }
    if (!is_pg_url(url)) {
        if (has_prefix(url, "sqlite:"))
            buf_puts(out, url);
        else
            redact_params(url, out);
        return;
    }
    const char *auth = strstr(url, "://") + 3;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = NULL;   /* the last '@' of the authority ends the user info */
    for (const char *p = auth; p < auth + auth_len; p++)
        if (*p == '@')
            at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon) {
        buf_put(out, url, (size_t)(colon + 1 - url));
        buf_puts(out, "***");
        buf_put(out, at, (size_t)(auth + auth_len - at));
    } else {
        buf_put(out, url, (size_t)(auth + auth_len - url));
    }
    redact_params(auth + auth_len, out);
}

/* ------------------------------------------------------------ life cycle */

static payi_code meta_create(store *s, payi_err *err);
static void tab_free(store *s, store__tab *t);

void store__init(store *s, const store__ops *ops, store_kind kind, store_mode mode, const char *url)
{
    s->ops = ops;
    s->kind = kind;
    s->mode = mode;
    s->url = xstrdup(url);
    s->key_clause = "PRIMARY KEY";
}

void store__release(store *s)
{
    for (size_t i = 0; i < s->ntabs; i++)
        tab_free(s, s->tabs[i]);
    free(s->tabs);
    free(s->url);
    free(s->set);
    buf_release(&s->sig);
}

payi_code store_open(store **out, const char *url, store_mode mode, payi_err *err)
{
    *out = NULL;
    if (!url)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "no store URL given");
    if (mode != STORE_RW && mode != STORE_RO)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "store_open: bad mode %d", (int)mode);
    buf red = BUF_INIT;
    store_url_redacted(url, &red);
    payi_code rc;
    if (has_prefix(url, "sqlite:")) {
        if (!url[7])
            rc = payi_err_set(err, PAYI_VALIDATION, NULL, "store URL \"sqlite:\" names no file (sqlite:PATH)");
        else
            rc = store__sqlite_open(out, url + 7, mode, red.data, err);
    } else if (is_pg_url(url)) {
        rc = store__pg_open(out, url, mode, red.data, err);
    } else {
        rc = payi_err_set(err, PAYI_VALIDATION, NULL,
                          "store URL \"%.200s\" is of no known kind: expected sqlite:PATH or postgresql://...",
                          red.data);
    }
    buf_release(&red);
    if (rc == PAYI_OK && mode == STORE_RW && (rc = meta_create(*out, err)) != PAYI_OK) {
        store_close(*out);
        *out = NULL;
    }
    return rc;
}

void store_close(store *s)
{
    if (!s)
        return;
    store_rollback(s);
    s->ops->close(s);   /* calls store__release and frees s */
}

store_kind store_get_kind(const store *s) { return s->kind; }

/* ---------------------------------------------------------- transactions */

payi_code store_begin(store *s, payi_err *err)
{
    if (s->in_txn)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "read store %s: a transaction is already open", s->url);
    payi_code rc = s->ops->exec(s, s->mode == STORE_RW ? s->ops->begin_rw : "BEGIN", err);
    if (rc == PAYI_OK) {
        s->in_txn = true;
        s->txn_failed = false;
    }
    return rc;
}

payi_code store_commit(store *s, payi_err *err)
{
    if (!s->in_txn)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "read store %s: commit without a transaction", s->url);
    if (s->txn_failed) {
        store_rollback(s);
        return payi_err_set(err, PAYI_INTERNAL, NULL,
                            "read store %s: transaction rolled back: a statement in it failed", s->url);
    }
    payi_code rc = s->ops->exec(s, "COMMIT", err);
    if (rc != PAYI_OK)
        s->ops->exec(s, "ROLLBACK", NULL);   /* whatever state COMMIT left, end it */
    s->in_txn = s->txn_failed = false;
    return rc;
}

void store_rollback(store *s)
{
    if (!s->in_txn)
        return;
    s->ops->exec(s, "ROLLBACK", NULL);
    s->in_txn = s->txn_failed = false;
}

/* Every operation runs between op_start and op_end: a write refuses a
 * read-only store, an operation refuses a spoiled transaction, and a write
 * outside a transaction gets one of its own (invariant 2). */
static payi_code op_start(store *s, bool write, const char *what, bool *own, payi_err *err)
{
    *own = false;
    if (write && s->mode == STORE_RO)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "read store %s is open read-only: %s refused", s->url, what);
    if (s->in_txn && s->txn_failed)
        return payi_err_set(err, PAYI_INTERNAL, NULL,
                            "read store %s: %s refused: an earlier statement of this transaction failed "
                            "(roll it back)", s->url, what);
    if (!write || s->in_txn)
        return PAYI_OK;
    payi_code rc = store_begin(s, err);
    *own = rc == PAYI_OK;
    return rc;
}

static payi_code op_end(store *s, bool own, payi_code rc, payi_err *err)
{
    if (own) {
        if (rc == PAYI_OK)
            return store_commit(s, err);
        store_rollback(s);
        return rc;
    }
    if (rc != PAYI_OK && s->in_txn)
        s->txn_failed = true;
    return rc;
}

/* ------------------------------------------------------------ validation */

static payi_code check_name(const char *name, const char *what, payi_err *err)
{
    if (!name || !*name)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "%s name is empty", what);
    size_t n = strlen(name), bad;
    if (n > STORE_NAME_MAX)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "%s name \"%.80s...\" is longer than %d bytes", what,
                            name, STORE_NAME_MAX);
    if (!json_utf8_valid(name, n, &bad))
        return payi_err_set(err, PAYI_VALIDATION, NULL, "%s name is not valid UTF-8 (byte %zu)", what, bad);
    return PAYI_OK;
}

static bool numeric(expr_type t) { return t == EXPR_BIGINT || t == EXPR_DOUBLE; }

/* The guard matters for REPLACE and KEEP only (other rules ignore it). */
static bool guarded(const store_col *col)
{
    return (col->merge == SMERGE_REPLACE || col->merge == SMERGE_KEEP) && col->guard != STORE_NO_GUARD;
}

/* A guard is another column that merges (not a key: a zero-filled
 * store_col would otherwise be guarded by column 0 without anyone asking;
 * not AVG, which has no value of its own in a row). */
static payi_code check_guard(const store_table *t, uint32_t c, payi_err *err)
{
    const store_col *col = &t->cols[c];
    if (!guarded(col))
        return PAYI_OK;
    if (col->guard >= t->ncols || col->guard == c || t->cols[col->guard].merge == SMERGE_KEY ||
        t->cols[col->guard].merge == SMERGE_AVG)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": column \"%s\" names no valid guard column "
                            "(another column, neither key nor AVG; STORE_NO_GUARD for none)", t->name, col->name);
    return PAYI_OK;
}

static payi_code check_avg(const store_table *t, uint32_t c, payi_err *err)
{
    const store_col *col = &t->cols[c];
    if (col->type != EXPR_DOUBLE)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": AVG column \"%s\" must be double precision",
                            t->name, col->name);
    if (col->avg_sum >= t->ncols || col->avg_count >= t->ncols || col->avg_sum == col->avg_count)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": AVG column \"%s\" names no sum and count "
                            "columns", t->name, col->name);
    const store_col *sum = &t->cols[col->avg_sum], *cnt = &t->cols[col->avg_count];
    if (sum->merge != SMERGE_ADD || !numeric(sum->type) || cnt->merge != SMERGE_ADD || cnt->type != EXPR_BIGINT)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": AVG column \"%s\" needs an ADD sum "
                            "(bigint or double) and an ADD bigint count", t->name, col->name);
    return PAYI_OK;
}

static payi_code check_col(const store_table *t, uint32_t c, payi_err *err)
{
    const store_col *col = &t->cols[c];
    payi_code rc = check_name(col->name, "column", err);
    if (rc != PAYI_OK)
        return rc;
    for (uint32_t k = 0; k < c; k++)
        if (strcasecmp(t->cols[k].name, col->name) == 0)
            return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": two columns named \"%s\"", t->name,
                                col->name);
    if (col->type < EXPR_BOOL || col->type > EXPR_JSONB)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": column \"%s\" has no valid type", t->name,
                            col->name);
    switch (col->merge) {
    case SMERGE_KEY:
        return PAYI_OK;
    case SMERGE_REPLACE: case SMERGE_KEEP:
        return check_guard(t, c, err);
    case SMERGE_ADD:
        if (numeric(col->type))
            return PAYI_OK;
        break;
    case SMERGE_MIN: case SMERGE_MAX:
        if (col->type != EXPR_JSONB)
            return PAYI_OK;
        break;
    case SMERGE_AVG:
        return check_avg(t, c, err);
    default:
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": column \"%s\" has no valid merge rule",
                            t->name, col->name);
    }
    return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": column \"%s\" of type %s cannot merge by %s",
                        t->name, col->name, expr_type_name(col->type), col->merge == SMERGE_ADD ? "ADD" : "MIN/MAX");
}

static payi_code check_table(const store_table *t, payi_err *err)
{
    payi_code rc = check_name(t->name, "table", err);
    if (rc != PAYI_OK)
        return rc;
    if (strcmp(t->name, STORE_META_TABLE) == 0)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table name \"%s\" is reserved for checkpoints", t->name);
    if (t->ncols == 0 || t->ncols > MAX_COLS || !t->cols)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\" has %u columns (1..%d allowed)", t->name,
                            t->ncols, MAX_COLS);
    bool keyed = false;
    for (uint32_t c = 0; c < t->ncols; c++) {
        if ((rc = check_col(t, c, err)) != PAYI_OK)
            return rc;
        keyed |= t->cols[c].merge == SMERGE_KEY;
    }
    for (uint32_t c = 0; !keyed && c < t->ncols; c++)
        if (strcasecmp(t->cols[c].name, STORE_HIDDEN_KEY) == 0)
            return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\": column name \"%s\" is reserved for the "
                                "key of a table without key columns", t->name, STORE_HIDDEN_KEY);
    return PAYI_OK;
}

/* ----------------------------------------------------------- table cache */


static void put_u32(buf *b, uint32_t v) { buf_put(b, &v, sizeof v); }

/* Name NUL (name NUL type merge avg_sum avg_count guard)*: names hold no
 * NUL, so two different shapes never share a signature. */
static void tab_signature(buf *b, const store_table *t)
{
    buf_reset(b);
    buf_put(b, t->name, strlen(t->name) + 1);
    for (uint32_t c = 0; c < t->ncols; c++) {
        const store_col *col = &t->cols[c];
        buf_put(b, col->name ? col->name : "", col->name ? strlen(col->name) + 1 : 1);
        put_u32(b, (uint32_t)col->type);
        put_u32(b, (uint32_t)col->merge);
        put_u32(b, col->merge == SMERGE_AVG ? col->avg_sum : 0);
        put_u32(b, col->merge == SMERGE_AVG ? col->avg_count : 0);
        put_u32(b, guarded(col) ? col->guard : STORE_NO_GUARD);
    }
}

static store__tab *tab_build(const store_table *t, const buf *sig, uint64_t hash)
{
    store__tab *tab = xcalloc(1, sizeof *tab);
    tab->sig = xmalloc(sig->len);
    memcpy(tab->sig, sig->data, sig->len);
    tab->sig_len = sig->len;
    tab->sig_hash = hash;
    tab->name = xstrdup(t->name);
    tab->ncols = t->ncols;
    tab->cols = xcalloc(t->ncols, sizeof *tab->cols);
    tab->keys = xcalloc(t->ncols, sizeof *tab->keys);
    tab->param = xcalloc(t->ncols, sizeof *tab->param);
    tab->vals = xcalloc(t->ncols, sizeof *tab->vals);
    for (uint32_t c = 0; c < t->ncols; c++) {
        tab->cols[c] = t->cols[c];
        tab->cols[c].name = xstrdup(t->cols[c].name);
        if (t->cols[c].merge == SMERGE_KEY)
            tab->keys[tab->nkeys++] = c;
        tab->param[c] = t->cols[c].merge == SMERGE_AVG ? UINT32_MAX : tab->nparams++;
    }
    return tab;
}

static void tab_free(store *s, store__tab *t)
{
    if (t->be)
        s->ops->tab_release(s, t);
    for (uint32_t c = 0; c < t->ncols; c++)
        free((char *)t->cols[c].name);
    free(t->cols);
    free(t->keys);
    free(t->param);
    free(t->vals);
    free(t->name);
    free(t->sig);
    free(t);
}

static payi_code tab_get(store *s, const store_table *t, store__tab **out, payi_err *err)
{
    if (!t || !t->name || !t->cols)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "no table given");
    for (uint32_t c = 0; c < t->ncols && c < MAX_COLS; c++)
        if (!t->cols[c].name)
            return payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%.80s\": column %u has no name", t->name, c);
    tab_signature(&s->sig, t);
    uint64_t h = hash_fnv1a(s->sig.data, s->sig.len, HASH_FNV_SEED);
    for (size_t i = 0; i < s->ntabs; i++) {
        store__tab *c = s->tabs[i];
        if (c->sig_hash == h && c->sig_len == s->sig.len && memcmp(c->sig, s->sig.data, c->sig_len) == 0) {
            *out = c;
            return PAYI_OK;
        }
    }
    payi_code rc = check_table(t, err);
    if (rc != PAYI_OK)
        return rc;
    s->tabs = xgrow(s->tabs, &s->tabs_cap, s->ntabs + 1, sizeof *s->tabs);
    *out = s->tabs[s->ntabs++] = tab_build(t, &s->sig, h);
    return PAYI_OK;
}

/* Forget every statement about table `name` (dropped or renamed). */
static void tab_evict(store *s, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < s->ntabs; i++) {
        if (strcmp(s->tabs[i]->name, name) == 0)
            tab_free(s, s->tabs[i]);
        else
            s->tabs[j++] = s->tabs[i];
    }
    s->ntabs = j;
}

/* -------------------------------------------------------------- SQL text */

void store__quote(buf *b, const char *name)
{
    buf_putc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            buf_putc(b, '"');
        buf_putc(b, *p);
    }
    buf_putc(b, '"');
}

void store__put_ref(buf *b, const store__ref *r, uint32_t slot)
{
    buf_putc(b, r->mark);
    buf_put_u64(b, (uint64_t)r->base + slot + 1);
}

static void put_col(buf *b, const store__tab *t, uint32_t c) { store__quote(b, t->cols[c].name); }

static void put_old(buf *b, const store__tab *t, uint32_t c)
{
    store__quote(b, t->name);
    buf_putc(b, '.');
    put_col(b, t, c);
}

/* The new row's value of column c: a parameter, or excluded."c". */
static void put_new(buf *b, const store__tab *t, uint32_t c, const store__ref *r)
{
    if (r) {
        store__put_ref(b, r, t->param[c]);
        return;
    }
    buf_puts(b, "excluded.");
    put_col(b, t, c);
}

static void put_visible_cols(buf *b, const store__tab *t)
{
    for (uint32_t c = 0; c < t->ncols; c++) {
        if (c)
            buf_puts(b, ", ");
        put_col(b, t, c);
    }
}

void store__sql_insert_into(buf *b, const store__tab *t)
{
    buf_puts(b, "INSERT INTO ");
    store__quote(b, t->name);
    buf_puts(b, " (");
    if (t->nkeys == 0)
        buf_puts(b, "\"" STORE_HIDDEN_KEY "\", ");
    put_visible_cols(b, t);
    buf_putc(b, ')');
}

static void put_avg(buf *b, const store *s, const store__tab *t, uint32_t c, const store__ref *r, bool merged);

void store__sql_row_values(buf *b, const store *s, const store__tab *t, const store__ref *r)
{
    if (t->nkeys == 0)
        buf_puts(b, "1, ");
    for (uint32_t c = 0; c < t->ncols; c++) {
        if (c)
            buf_puts(b, ", ");
        if (t->cols[c].merge == SMERGE_AVG)
            put_avg(b, s, t, c, r, false);
        else
            store__put_ref(b, r, t->param[c]);
    }
}

/* The merged value of column c (ADD, MIN, MAX, REPLACE, AVG). */
static void put_merge(buf *b, const store *s, const store__tab *t, uint32_t c, const store__ref *r)
{
    const char *fn = NULL;
    const store_col *col = &t->cols[c];
    switch (col->merge) {
    case SMERGE_REPLACE:
        if (!guarded(col)) {
            put_new(b, t, c, r);
            return;
        }
        buf_puts(b, "CASE WHEN ");   /* a new row without a value (NULL guard) leaves the old one */
        put_new(b, t, col->guard, r);
        buf_puts(b, " IS NULL THEN ");
        put_old(b, t, c);
        buf_puts(b, " ELSE ");
        put_new(b, t, c, r);
        buf_puts(b, " END");
        return;
    case SMERGE_KEEP:   /* guarded (unguarded KEEP is never assigned) */
        buf_puts(b, "CASE WHEN ");   /* no stored value yet (NULL guard): take the new one */
        put_old(b, t, col->guard);
        buf_puts(b, " IS NULL THEN ");
        put_new(b, t, c, r);
        buf_puts(b, " ELSE ");
        put_old(b, t, c);
        buf_puts(b, " END");
        return;
    case SMERGE_AVG:
        put_avg(b, s, t, c, r, true);
        return;
    case SMERGE_MIN:
        fn = s->ops->fn_min;
        break;
    case SMERGE_MAX:
        fn = s->ops->fn_max;
        break;
    default:   /* SMERGE_ADD */
        break;
    }
    buf_puts(b, "coalesce(");
    if (fn)
        buf_printf(b, "%s(", fn);
    put_old(b, t, c);
    buf_puts(b, fn ? ", " : " + ");
    put_new(b, t, c, r);
    buf_puts(b, fn ? "), " : ", ");
    put_old(b, t, c);
    buf_puts(b, ", ");
    put_new(b, t, c, r);
    buf_putc(b, ')');
}

/* sum / count as a double, NULL when count is 0 (or NULL): merged (SET) or
 * of the new row alone (VALUES). */
static void put_avg(buf *b, const store *s, const store__tab *t, uint32_t c, const store__ref *r, bool merged)
{
    const store_col *col = &t->cols[c];
    buf_puts(b, "CAST(");
    if (merged)
        put_merge(b, s, t, col->avg_sum, r);
    else
        put_new(b, t, col->avg_sum, r);
    buf_printf(b, " AS %s) / NULLIF(", s->ops->type_names[EXPR_DOUBLE]);
    if (merged)
        put_merge(b, s, t, col->avg_count, r);
    else
        put_new(b, t, col->avg_count, r);
    buf_puts(b, ", 0)");
}

static bool merges(const store_col *col)
{
    return col->merge != SMERGE_KEY && (col->merge != SMERGE_KEEP || guarded(col));
}

/* The assignments; false (nothing written) when no column merges. */
static bool put_assignments(buf *b, const store *s, const store__tab *t, const store__ref *r)
{
    bool any = false;
    for (uint32_t c = 0; c < t->ncols; c++) {
        if (!merges(&t->cols[c]))
            continue;
        if (any)
            buf_puts(b, ", ");
        put_col(b, t, c);
        buf_puts(b, " = ");
        put_merge(b, s, t, c, r);
        any = true;
    }
    return any;
}

/* The first key assigned to itself: an UPDATE that changes nothing, so that
 * RETURNING still reports the row. */
static void put_self_assignment(buf *b, const store__tab *t)
{
    if (t->nkeys == 0) {
        buf_puts(b, "\"" STORE_HIDDEN_KEY "\" = ");
        store__quote(b, t->name);
        buf_puts(b, ".\"" STORE_HIDDEN_KEY "\"");
        return;
    }
    put_col(b, t, t->keys[0]);
    buf_puts(b, " = ");
    put_old(b, t, t->keys[0]);
}

static void put_key_list(buf *b, const store__tab *t)
{
    if (t->nkeys == 0)
        buf_puts(b, "\"" STORE_HIDDEN_KEY "\"");
    for (uint32_t j = 0; j < t->nkeys; j++) {
        if (j)
            buf_puts(b, ", ");
        put_col(b, t, t->keys[j]);
    }
}

void store__sql_on_conflict(buf *b, const store *s, const store__tab *t, bool returning)
{
    buf_puts(b, " ON CONFLICT (");
    put_key_list(b, t);
    buf_puts(b, ") DO ");
    bool any = false;
    for (uint32_t c = 0; c < t->ncols; c++)
        any |= merges(&t->cols[c]);
    if (!any && !returning) {
        buf_puts(b, "NOTHING");
        return;
    }
    buf_puts(b, "UPDATE SET ");
    if (!put_assignments(b, s, t, NULL))
        put_self_assignment(b, t);
}

void store__sql_set_params(buf *b, const store *s, const store__tab *t, const store__ref *r)
{
    if (!put_assignments(b, s, t, r))
        put_self_assignment(b, t);
}

void store__sql_returning(buf *b, const store__tab *t)
{
    buf_puts(b, " RETURNING ");
    put_visible_cols(b, t);
}

void store__sql_key_match(buf *b, const store__tab *t, const store__ref *r, bool row_slots,
                          const expr_value *vals, bool is_form)
{
    uint32_t slot = 0;
    for (uint32_t j = 0; j < t->nkeys; j++) {
        if (j)
            buf_puts(b, " AND ");
        uint32_t c = t->keys[j];
        put_old(b, t, c);
        if (vals && vals[j].null) {
            buf_puts(b, " IS NULL");
            continue;
        }
        buf_puts(b, is_form ? " IS " : " = ");
        store__put_ref(b, r, row_slots ? t->param[c] : slot++);
    }
}

static store__ref sql_ref(const store *s) { return (store__ref){s->ops->param_mark, 0}; }

/* ---------------------------------------------------------------- values */

static int64_t floordiv(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

static void put_digits(char *p, unsigned v, int n)
{
    for (int k = n - 1; k >= 0; k--, v /= 10)
        p[k] = (char)('0' + v % 10);
}

bool store__fmt_date(int64_t days, char out[STORE_DATE_LEN + 1])
{
    int64_t y;
    unsigned m, d;
    if (days < -800000 || days > 3000000)   /* well past years 1..9999; keeps the arithmetic small */
        return false;
    expr_civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return false;
    memcpy(out, "0000-00-00", STORE_DATE_LEN + 1);
    put_digits(out, (unsigned)y, 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    return true;
}

bool store__fmt_ts(int64_t us, char out[STORE_TS_LEN + 1])
{
    int64_t days = floordiv(us, DAY_US), r = us - days * DAY_US;
    if (!store__fmt_date(days, out))
        return false;
    int64_t secs = r / 1000000;
    memcpy(out + STORE_DATE_LEN, "T00:00:00.000000Z", STORE_TS_LEN - STORE_DATE_LEN + 1);
    put_digits(out + 11, (unsigned)(secs / 3600), 2);
    put_digits(out + 14, (unsigned)(secs / 60 % 60), 2);
    put_digits(out + 17, (unsigned)(secs % 60), 2);
    put_digits(out + 20, (unsigned)(r % 1000000), 6);
    return true;
}

void store__fmt_double(double d, buf *out)
{
    if (isnan(d))
        buf_puts(out, "NaN");
    else if (isinf(d))
        buf_puts(out, d < 0 ? "-Infinity" : "Infinity");
    else
        buf_printf(out, "%.17g", d);
}

static bool parse_i64(const char *s, size_t len, int64_t *out)
{
    char tmp[32], *end;
    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || end != tmp + len)
        return false;
    *out = v;
    return true;
}

static bool parse_f64(const char *s, size_t len, double *out)
{
    char tmp[400], *end;
    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    double v = strtod(tmp, &end);
    if (end != tmp + len)
        return false;
    *out = v;
    return true;
}

static bool word_is(const char *s, size_t len, const char *w) { return strlen(w) == len && memcmp(s, w, len) == 0; }

bool store__parse_value(expr_type t, const char *s, size_t len, expr_value *out)
{
    expr_value v = {0};
    v.type = (uint8_t)t;
    switch (t) {
    case EXPR_BOOL:
        if (word_is(s, len, "t") || word_is(s, len, "true") || word_is(s, len, "1"))
            v.b = true;
        else if (!(word_is(s, len, "f") || word_is(s, len, "false") || word_is(s, len, "0")))
            return false;
        break;
    case EXPR_BIGINT:
        if (!parse_i64(s, len, &v.i))
            return false;
        break;
    case EXPR_DOUBLE:
        if (!parse_f64(s, len, &v.d))
            return false;
        break;
    case EXPR_TEXT: case EXPR_JSONB:
        v.s = s;
        v.len = (uint32_t)len;
        break;
    case EXPR_DATE:
        if (!expr_parse_date(s, len, &v.i))
            return false;
        break;
    case EXPR_TIMESTAMPTZ:
        if (!expr_parse_timestamptz(s, len, &v.i))
            return false;
        break;
    default:
        return false;
    }
    *out = v;
    return true;
}

payi_code store__value_text(const expr_value *v, buf *out, payi_err *err)
{
    char tmp[STORE_TS_LEN + 1];
    switch (v->type) {
    case EXPR_BOOL:
        buf_putc(out, v->b ? 't' : 'f');
        return PAYI_OK;
    case EXPR_BIGINT:
        buf_put_i64(out, v->i);
        return PAYI_OK;
    case EXPR_DOUBLE:
        store__fmt_double(v->d, out);
        return PAYI_OK;
    case EXPR_TEXT: case EXPR_JSONB:
        if (v->len && memchr(v->s, '\0', v->len))
            return payi_err_set(err, PAYI_VALIDATION, NULL,
                                "a text value holds a NUL byte, which PostgreSQL text cannot store");
        buf_put(out, v->s, v->len);
        return PAYI_OK;
    case EXPR_DATE:
        if (!store__fmt_date(v->i, tmp))
            return payi_err_set(err, PAYI_VALIDATION, NULL, "date out of range (years 1..9999)");
        buf_puts(out, tmp);
        return PAYI_OK;
    case EXPR_TIMESTAMPTZ:
        if (!store__fmt_ts(v->i, tmp))
            return payi_err_set(err, PAYI_VALIDATION, NULL, "timestamp out of range (years 1..9999)");
        buf_puts(out, tmp);
        return PAYI_OK;
    default:
        return payi_err_set(err, PAYI_VALIDATION, NULL, "value of unknown type %d", (int)v->type);
    }
}

payi_code store__check_values(const store *s, const store__tab *t, const expr_value *vals, size_t nrows,
                              const uint32_t *cols, uint32_t width, const char *what, payi_err *err)
{
    for (size_t r = 0; r < nrows; r++) {
        for (uint32_t j = 0; j < width; j++) {
            const expr_value *v = &vals[r * width + j];
            uint32_t c = cols ? cols[j] : j;
            const store_col *col = &t->cols[c];
            if (v->null || col->merge == SMERGE_AVG || v->type == col->type)
                continue;
            return payi_err_set(err, PAYI_VALIDATION, NULL, "read store %s: %s \"%s\", row %zu: column \"%s\" is %s, "
                                "the value is %s", s->url, what, t->name, r, col->name, expr_type_name(col->type),
                                v->type >= EXPR_BOOL && v->type <= EXPR_JSONB ? expr_type_name(v->type) : "?");
        }
    }
    return PAYI_OK;
}

bool store__key_has_null(const store__tab *t, const expr_value *row, bool row_is_keys)
{
    for (uint32_t j = 0; j < t->nkeys; j++)
        if (row[row_is_keys ? j : t->keys[j]].null)
            return true;
    return false;
}

/* --------------------------------------------------------------- key set */

/* Equal keys hash equal: -0.0 and 0.0, every NaN (PostgreSQL's float8
 * equality says so too). */
static uint64_t key_hash(const store__tab *t, const expr_value *row)
{
    uint64_t h = HASH_FNV_SEED;
    for (uint32_t j = 0; j < t->nkeys; j++) {
        const expr_value *v = &row[t->keys[j]];
        unsigned char null = v->null;
        h = hash_fnv1a(&null, 1, h);
        if (v->null)
            continue;
        switch (v->type) {
        case EXPR_BOOL: { unsigned char b = v->b; h = hash_fnv1a(&b, 1, h); break; }
        case EXPR_DOUBLE: {
            double d = v->d == 0 ? 0.0 : isnan(v->d) ? NAN : v->d;
            h = hash_fnv1a(&d, sizeof d, h);
            break;
        }
        case EXPR_TEXT: case EXPR_JSONB: h = hash_fnv1a(v->s, v->len, h); break;
        default: h = hash_fnv1a(&v->i, sizeof v->i, h); break;
        }
    }
    return h;
}

static bool key_eq(const store__tab *t, const expr_value *a, const expr_value *b)
{
    for (uint32_t j = 0; j < t->nkeys; j++) {
        const expr_value *x = &a[t->keys[j]], *y = &b[t->keys[j]];
        if (x->null || y->null) {
            if (x->null != y->null)
                return false;
            continue;
        }
        bool eq;
        switch (x->type) {
        case EXPR_BOOL: eq = x->b == y->b; break;
        case EXPR_DOUBLE: eq = x->d == y->d || (isnan(x->d) && isnan(y->d)); break;
        case EXPR_TEXT: case EXPR_JSONB: eq = x->len == y->len && memcmp(x->s, y->s, x->len) == 0; break;
        default: eq = x->i == y->i; break;
        }
        if (!eq)
            return false;
    }
    return true;
}

void store__set_clear(store *s, size_t max_rows)
{
    size_t cap = 16;
    while (cap < max_rows * 2)
        cap *= 2;
    if (cap > s->set_cap) {
        free(s->set);
        s->set = xmalloc(cap * sizeof *s->set);
        s->set_cap = cap;
    }
    memset(s->set, 0xff, s->set_cap * sizeof *s->set);
}

size_t store__set_add(store *s, const store__tab *t, const expr_value *rows, uint32_t width, size_t i)
{
    size_t mask = s->set_cap - 1;
    for (size_t k = key_hash(t, rows + i * width) & mask;; k = (k + 1) & mask) {
        uint32_t e = s->set[k];
        if (e == UINT32_MAX) {
            s->set[k] = (uint32_t)i;
            return SIZE_MAX;
        }
        if (key_eq(t, rows + (size_t)e * width, rows + i * width))
            return e;
    }
}

/* ------------------------------------------------------------------ JSON */

void store__json_text(buf *out, const char *s, size_t len)
{
    size_t bad;
    if (json_utf8_valid(s, len, &bad)) {
        json_put_string(out, s, len);
        return;
    }
    buf clean = BUF_INIT;
    while (!json_utf8_valid(s, len, &bad)) {
        buf_put(&clean, s, bad);
        buf_puts(&clean, "\xef\xbf\xbd");   /* U+FFFD for each bad byte */
        s += bad + 1;
        len -= bad + 1;
    }
    buf_put(&clean, s, len);
    json_put_string(out, clean.data, clean.len);
    buf_release(&clean);
}

/* The shortest text that reads back as d. */
void store__json_double(buf *out, double d)
{
    if (!isfinite(d)) {
        buf_puts(out, isnan(d) ? "\"NaN\"" : d < 0 ? "\"-Infinity\"" : "\"Infinity\"");
        return;
    }
    char tmp[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    buf_puts(out, tmp);
}

/* ---------------------------------------------------------- tables (DDL) */

static void put_col_type(buf *b, const store *s, expr_type t)
{
    buf_puts(b, s->ops->type_names[t]);
    if (t == EXPR_TEXT)
        buf_puts(b, s->ops->text_collate);
}

payi_code store_create_table(store *s, const store_table *t, payi_err *err)
{
    bool own;
    store__tab *tab;
    payi_code rc = tab_get(s, t, &tab, err);
    if (rc != PAYI_OK || (rc = op_start(s, true, "CREATE TABLE", &own, err)) != PAYI_OK)
        return rc;
    buf b = BUF_INIT;
    buf_puts(&b, "CREATE TABLE IF NOT EXISTS ");
    store__quote(&b, tab->name);
    buf_puts(&b, " (");
    if (tab->nkeys == 0)
        buf_printf(&b, "\"%s\" %s NOT NULL DEFAULT 1 CHECK (\"%s\" = 1) PRIMARY KEY, ", STORE_HIDDEN_KEY,
                   s->ops->hidden_key_type, STORE_HIDDEN_KEY);
    for (uint32_t c = 0; c < tab->ncols; c++) {
        if (c)
            buf_puts(&b, ", ");
        put_col(&b, tab, c);
        buf_putc(&b, ' ');
        put_col_type(&b, s, tab->cols[c].type);
    }
    if (tab->nkeys) {
        buf_printf(&b, ", %s (", s->key_clause);
        put_key_list(&b, tab);
        buf_putc(&b, ')');
    }
    buf_putc(&b, ')');
    buf_puts(&b, s->ops->table_options);
    rc = s->ops->exec(s, b.data, err);
    buf_release(&b);
    return op_end(s, own, rc, err);
}

static payi_code exec_named(store *s, const char *pre, const char *name, const char *mid, const char *name2,
                            payi_err *err)
{
    buf b = BUF_INIT;
    buf_puts(&b, pre);
    store__quote(&b, name);
    if (mid) {
        buf_puts(&b, mid);
        store__quote(&b, name2);
    }
    payi_code rc = s->ops->exec(s, b.data, err);
    buf_release(&b);
    return rc;
}

static payi_code check_user_table(const char *name, payi_err *err)
{
    payi_code rc = check_name(name, "table", err);
    if (rc == PAYI_OK && strcmp(name, STORE_META_TABLE) == 0)
        rc = payi_err_set(err, PAYI_VALIDATION, NULL, "table \"%s\" holds the checkpoints: refused", name);
    return rc;
}

payi_code store_drop_table(store *s, const char *name, payi_err *err)
{
    bool own;
    payi_code rc = check_user_table(name, err);
    if (rc != PAYI_OK || (rc = op_start(s, true, "DROP TABLE", &own, err)) != PAYI_OK)
        return rc;
    tab_evict(s, name);
    rc = exec_named(s, "DROP TABLE IF EXISTS ", name, NULL, NULL, err);
    return op_end(s, own, rc, err);
}

payi_code store_replace_table(store *s, const char *from, const char *to, payi_err *err)
{
    bool own;
    payi_code rc = check_user_table(from, err);
    if (rc == PAYI_OK)
        rc = check_user_table(to, err);
    if (rc == PAYI_OK && strcmp(from, to) == 0)
        rc = payi_err_set(err, PAYI_VALIDATION, NULL, "replace table \"%s\" by itself", from);
    if (rc != PAYI_OK || (rc = op_start(s, true, "replace table", &own, err)) != PAYI_OK)
        return rc;
    tab_evict(s, from);
    tab_evict(s, to);
    rc = exec_named(s, "DROP TABLE IF EXISTS ", to, NULL, NULL, err);
    if (rc == PAYI_OK)
        rc = exec_named(s, "ALTER TABLE ", from, " RENAME TO ", to, err);
    return op_end(s, own, rc, err);
}

static int set_found(void *ctx, const expr_value *vals, uint32_t n)
{
    (void)vals, (void)n;
    *(bool *)ctx = true;
    return 1;
}

bool store_table_exists(store *s, const char *name, payi_err *err)
{
    bool own, found = false;
    payi_code rc = check_name(name, "table", err);
    if (rc != PAYI_OK || op_start(s, false, "table lookup", &own, err) != PAYI_OK)
        return false;
    const char *sql = s->kind == STORE_SQLITE
        ? "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1"
        : "SELECT 1 FROM pg_catalog.pg_class WHERE oid = to_regclass(quote_ident($1)) AND relkind IN ('r', 'p')";
    expr_value p = expr_text(name, strlen(name));
    static const expr_type one[] = {EXPR_BIGINT};
    rc = s->ops->query(s, sql, &p, 1, one, 1, set_found, &found, err);
    return op_end(s, own, rc, err) == PAYI_OK && found;
}

/* ------------------------------------------------------------------ rows */

payi_code store_upsert(store *s, const store_table *t, const expr_value *rows, size_t nrows,
                       store_row_fn changed, void *ctx, payi_err *err)
{
    bool own;
    store__tab *tab;
    payi_code rc = tab_get(s, t, &tab, err);
    if (rc != PAYI_OK)
        return rc;
    if (nrows >= UINT32_MAX)
        return payi_err_set(err, PAYI_TOO_LARGE, NULL, "upsert of %zu rows at once", nrows);
    if ((rc = store__check_values(s, tab, rows, nrows, NULL, tab->ncols, "upsert into", err)) != PAYI_OK)
        return rc;
    if (nrows == 0 || (rc = op_start(s, true, "upsert", &own, err)) != PAYI_OK)
        return rc;
    rc = s->ops->upsert(s, tab, rows, nrows, changed, ctx, err);
    return op_end(s, own, rc, err);
}

payi_code store_delete(store *s, const store_table *t, const expr_value *keys, size_t nrows, payi_err *err)
{
    bool own;
    store__tab *tab;
    payi_code rc = tab_get(s, t, &tab, err);
    if (rc != PAYI_OK)
        return rc;
    if ((rc = store__check_values(s, tab, keys, nrows, tab->keys, tab->nkeys, "delete from", err)) != PAYI_OK)
        return rc;
    if (nrows == 0 || (rc = op_start(s, true, "delete", &own, err)) != PAYI_OK)
        return rc;
    rc = s->ops->del(s, tab, keys, nrows, err);
    return op_end(s, own, rc, err);
}

payi_code store_insert_new(store *s, const store_table *t, const expr_value *rows, size_t nrows,
                           bool *inserted, payi_err *err)
{
    bool own;
    store__tab *tab;
    payi_code rc = tab_get(s, t, &tab, err);
    if (rc != PAYI_OK)
        return rc;
    if ((rc = store__check_values(s, tab, rows, nrows, NULL, tab->ncols, "insert into", err)) != PAYI_OK)
        return rc;
    for (size_t i = 0; i < nrows; i++)
        inserted[i] = false;
    if (nrows == 0 || (rc = op_start(s, true, "insert", &own, err)) != PAYI_OK)
        return rc;
    rc = s->ops->insert_new(s, tab, rows, nrows, inserted, err);
    if (rc != PAYI_OK)
        for (size_t i = 0; i < nrows; i++)
            inserted[i] = false;
    return op_end(s, own, rc, err);
}

static payi_code check_col_index(const store__tab *t, uint32_t c, const char *what, payi_err *err)
{
    if (c < t->ncols)
        return PAYI_OK;
    return payi_err_set(err, PAYI_VALIDATION, NULL, "select from \"%s\": %s column %u does not exist", t->name,
                        what, c);
}

static bool in_order(const store_order *order, uint32_t norder, uint32_t c)
{
    for (uint32_t i = 0; i < norder; i++)
        if (order[i].col == c)
            return true;
    return false;
}

payi_code store_select(store *s, const store_table *t, const store_filter *filters, uint32_t nfilters,
                       const store_order *order, uint32_t norder, int64_t limit, store_row_fn row, void *ctx,
                       payi_err *err)
{
    bool own;
    store__tab *tab;
    payi_code rc = tab_get(s, t, &tab, err);
    for (uint32_t i = 0; rc == PAYI_OK && i < nfilters; i++) {
        rc = check_col_index(tab, filters[i].col, "filter", err);
        if (rc == PAYI_OK)
            rc = store__check_values(s, tab, &filters[i].value, 1, &filters[i].col, 1, "filter on", err);
    }
    for (uint32_t i = 0; rc == PAYI_OK && i < norder; i++)
        rc = check_col_index(tab, order[i].col, "order", err);
    if (rc != PAYI_OK || (rc = op_start(s, false, "select", &own, err)) != PAYI_OK)
        return rc;

    buf b = BUF_INIT;
    store__ref ref = sql_ref(s);
    expr_value *params = xcalloc(nfilters + 1, sizeof *params);
    uint32_t np = 0;
    buf_puts(&b, "SELECT ");
    put_visible_cols(&b, tab);
    buf_puts(&b, " FROM ");
    store__quote(&b, tab->name);
    for (uint32_t i = 0; i < nfilters; i++) {
        buf_puts(&b, i ? " AND " : " WHERE ");
        put_col(&b, tab, filters[i].col);
        if (filters[i].value.null) {
            buf_puts(&b, " IS NULL");
            continue;
        }
        buf_puts(&b, " = ");
        store__put_ref(&b, &ref, np);
        params[np++] = filters[i].value;
    }
    uint32_t nord = 0;
    for (uint32_t i = 0; i < norder + tab->nkeys; i++) {
        uint32_t c = i < norder ? order[i].col : tab->keys[i - norder];
        if (i >= norder && in_order(order, norder, c))
            continue;
        bool desc = i < norder && order[i].desc;
        buf_puts(&b, nord++ ? ", " : " ORDER BY ");
        put_col(&b, tab, c);
        buf_puts(&b, desc ? " DESC NULLS FIRST" : " ASC NULLS LAST");
    }
    if (limit >= 0)
        buf_printf(&b, " LIMIT %lld", (long long)limit);

    expr_type *types = xcalloc(tab->ncols, sizeof *types);
    for (uint32_t c = 0; c < tab->ncols; c++)
        types[c] = tab->cols[c].type;
    rc = s->ops->query(s, b.data, params, np, types, tab->ncols, row, ctx, err);
    free(types);
    free(params);
    buf_release(&b);
    return op_end(s, own, rc, err);
}

/* ----------------------------------------------------------- checkpoints */

static payi_code meta_create(store *s, payi_err *err)
{
    buf b = BUF_INIT;
    const char *text = s->ops->type_names[EXPR_TEXT], *big = s->ops->type_names[EXPR_BIGINT];
    buf_printf(&b, "CREATE TABLE IF NOT EXISTS \"%s\" (\"view\" %s%s PRIMARY KEY, \"hash\" %s NOT NULL, "
               "\"position\" %s NOT NULL, \"table_name\" %s%s NOT NULL, \"definition\" %s)%s",
               STORE_META_TABLE, text, s->ops->text_collate, big, big, text, s->ops->text_collate, text,
               s->ops->table_options);
    payi_code rc = s->ops->exec(s, b.data, err);
    buf_release(&b);
    return rc;
}

static int meta_row(void *ctx, const expr_value *vals, uint32_t n)
{
    store_meta *m = ctx;
    (void)n;
    m->found = true;
    m->hash = (uint64_t)vals[0].i;
    m->position = (uint64_t)vals[1].i;
    size_t len = vals[2].len < sizeof m->table ? vals[2].len : sizeof m->table - 1;
    memcpy(m->table, vals[2].s, len);
    m->table[len] = '\0';
    return 1;
}

payi_code store_get_meta(store *s, const char *view, store_meta *out, payi_err *err)
{
    bool own;
    memset(out, 0, sizeof *out);
    if (!view)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "no view name given");
    payi_code rc = op_start(s, false, "checkpoint read", &own, err);
    if (rc != PAYI_OK)
        return rc;
    buf b = BUF_INIT;
    store__ref ref = sql_ref(s);
    buf_puts(&b, "SELECT \"hash\", \"position\", \"table_name\" FROM \"" STORE_META_TABLE "\" WHERE \"view\" = ");
    store__put_ref(&b, &ref, 0);
    /* Inside a transaction the checkpoint is read to be written: lock its
     * row, so that a writer racing another (payi replay swapping a rebuilt
     * table in) waits for it and then reads its checkpoint.  SQLite's
     * BEGIN IMMEDIATE already serializes writers. */
    if (s->kind == STORE_POSTGRES && s->in_txn && !own)
        buf_puts(&b, " FOR UPDATE");
    expr_value p = expr_text(view, strlen(view));
    static const expr_type types[] = {EXPR_BIGINT, EXPR_BIGINT, EXPR_TEXT};
    rc = s->ops->query(s, b.data, &p, 1, types, 3, meta_row, out, err);
    buf_release(&b);
    return op_end(s, own, rc, err);
}

payi_code store_put_meta(store *s, const char *view, uint64_t hash, uint64_t position, const char *table,
                         const char *definition, payi_err *err)
{
    bool own;
    if (!view)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "no view name given");
    if (position > INT64_MAX)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "checkpoint of view \"%s\": position %llu out of range",
                            view, (unsigned long long)position);
    payi_code rc = table ? check_name(table, "table", err) : PAYI_OK;
    if (rc != PAYI_OK || (rc = op_start(s, true, "checkpoint write", &own, err)) != PAYI_OK)
        return rc;
    buf b = BUF_INIT;
    store__ref r = sql_ref(s);
    buf_puts(&b, "INSERT INTO \"" STORE_META_TABLE "\" (\"view\", \"hash\", \"position\", \"table_name\", "
             "\"definition\") VALUES (");
    for (uint32_t i = 0; i < 3; i++) {
        store__put_ref(&b, &r, i);
        buf_puts(&b, ", ");
    }
    buf_puts(&b, "coalesce(");
    store__put_ref(&b, &r, 3);
    buf_puts(&b, ", ");
    store__put_ref(&b, &r, 0);
    buf_puts(&b, "), ");
    store__put_ref(&b, &r, 4);
    buf_puts(&b, ") ON CONFLICT (\"view\") DO UPDATE SET \"hash\" = excluded.\"hash\", "
             "\"position\" = excluded.\"position\", \"table_name\" = coalesce(");
    store__put_ref(&b, &r, 3);
    buf_puts(&b, ", \"" STORE_META_TABLE "\".\"table_name\"), \"definition\" = coalesce(");
    store__put_ref(&b, &r, 4);
    buf_puts(&b, ", \"" STORE_META_TABLE "\".\"definition\")");
    expr_value p[5] = {
        expr_text(view, strlen(view)), expr_int((int64_t)hash), expr_int((int64_t)position),
        table ? expr_text(table, strlen(table)) : expr_null(EXPR_TEXT),
        definition ? expr_text(definition, strlen(definition)) : expr_null(EXPR_TEXT),
    };
    rc = s->ops->query(s, b.data, p, 5, NULL, 0, NULL, NULL, err);
    buf_release(&b);
    return op_end(s, own, rc, err);
}

payi_code store_delete_meta(store *s, const char *view, payi_err *err)
{
    bool own;
    if (!view)
        return payi_err_set(err, PAYI_VALIDATION, NULL, "no view name given");
    payi_code rc = op_start(s, true, "checkpoint delete", &own, err);
    if (rc != PAYI_OK)
        return rc;
    buf b = BUF_INIT;
    store__ref r = sql_ref(s);
    buf_puts(&b, "DELETE FROM \"" STORE_META_TABLE "\" WHERE \"view\" = ");
    store__put_ref(&b, &r, 0);
    expr_value p = expr_text(view, strlen(view));
    rc = s->ops->query(s, b.data, &p, 1, NULL, 0, NULL, NULL, err);
    buf_release(&b);
    return op_end(s, own, rc, err);
}

/* ------------------------------------------------------------ SQL (read) */

payi_code store_sql_json(store *s, const char *sql, size_t max_rows, int timeout_ms, buf *out, payi_err *err)
{
    if (s->mode != STORE_RO)
        return payi_err_set(err, PAYI_INTERNAL, NULL,
                            "read store %s: SQL requests need a store opened read-only", s->url);
    if (s->in_txn)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "read store %s: SQL request inside a transaction", s->url);
    if (!sql)
        return payi_err_set(err, PAYI_VALIDATION, "sql", "no SQL statement given");
    size_t mark = out->len;
    payi_code rc = s->ops->sql_json(s, sql, max_rows, timeout_ms, out, err);
    if (rc != PAYI_OK && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}
