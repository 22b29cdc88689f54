/* view.c — the view engine.
 *
 * Design.
 *
 * One thread per view.  It reads the log from the view's checkpoint through
 * a subscription (history first, then live: one code path for batch and
 * streaming), folds events into in-memory deltas, and writes the deltas
 * and the new checkpoint in one store transaction.
 *
 * Micro-batches.  A batch ends when the log is drained (after linger_ms),
 * or after batch_events events, or when the deltas hold max_keys groups or
 * max_batch_bytes of copied text: memory is bounded whatever the number of
 * keys, since a full batch is flushed and forgotten.
 *
 * Deltas.  For a grouped view a batch is a hash map from the encoded group
 * key (value_encode: type tag + fixed 8 bytes, or length + bytes) to one
 * partial state per aggregate: count, sum, min, max, latest and earliest
 * (value + that it was seen), avg (sum and count).  The store merges a
 * partial into the stored row with the column's rule (store.h): addition
 * for counts and sums, least/greatest for min/max, the newer value for
 * latest (guarded by its position), the older for earliest.  count(DISTINCT
 * x) keeps a side table (group key, x) in the store: the batch's distinct
 * pairs are inserted if new, and the count grows by the number that were.
 * A DELETE ON event resets its group's partial and marks it: the flush
 * deletes the stored row before merging what came after.  A row view (no
 * aggregate) buffers one row per event, keyed by its position.
 *
 * Exactly once.  The rows and the checkpoint (payi_views.position, every
 * event below it applied) are written in one transaction.  Inside it, the
 * checkpoint is read first: if it is not the position this batch started
 * from, someone else moved it (`payi replay` swapped in a rebuilt table),
 * the batch is dropped and folding restarts from the stored checkpoint.
 * A crash anywhere loses only an uncommitted batch, which is folded again
 * from the checkpoint.
 *
 * Events of payi's own streams (names starting with '$', such as the
 * schema registry's) are not data: no view sees them.
 *
 * Bad events.  An event whose expressions fail for a view (a cast that
 * does not fit, a division by zero) is skipped by that view, counted in
 * events_skipped and remembered as last_error; it does not stop the view.
 * A store failure stops the view (failed, last_error) and retries after a
 * pause: the checkpoint guarantees nothing is lost or counted twice.
 *
 * Rebuilds.  When the stored definition hash differs from the spec's, the
 * thread folds from position 0 into "<view>__rebuild" tables while the old
 * table stays in the store, then swaps them in one transaction with the
 * checkpoint.  `payi replay` does the same from another process.
 */
#include "view/view.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/hash.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/thread.h"
#include "store/store.h"

#define NO_INDEX UINT32_MAX
#define QUERY_WAIT_MAX_MS 10000      /* longest a read waits for min_position */
#define RO_POOL_MAX 16               /* read connections kept open */
#define RETRY_PAUSE_MS 1000          /* after a store failure */
#define SQL_MAX_ROWS 10000

/* ------------------------------------------------------------ encoded values
 * A group key (or a distinct value) as bytes: per value a tag (0 for NULL,
 * else its expr_type) then 8 bytes, or for text/jsonb a 4-byte length and
 * the bytes.  Equal SQL values encode equally: -0.0 becomes 0.0 and every
 * NaN the same NaN, as PostgreSQL groups them. */

static void value_encode(buf *out, const expr_value *v)
{
    uint8_t tag = v->null ? 0 : v->type;
    buf_put(out, &tag, 1);
    if (v->null)
        return;
    switch ((expr_type)v->type) {
    case EXPR_TEXT:
    case EXPR_JSONB: {
        uint32_t n = v->len;
        buf_put(out, &n, 4);
        buf_put(out, v->s, n);
        return;
    }
    case EXPR_DOUBLE: {
        double d = v->d;
        if (d == 0)
            d = 0;            /* -0.0 */
        if (isnan(d))
            d = NAN;
        buf_put(out, &d, 8);
        return;
    }
    case EXPR_BOOL: {
        int64_t b = v->b;
        buf_put(out, &b, 8);
        return;
    }
    default:
        buf_put(out, &v->i, 8);
        return;
    }
}

/* Decode one value at p (from value_encode); text points into p.  Returns
 * the bytes read.  want is the declared type, for NULLs. */
static size_t value_decode(const char *p, expr_type want, expr_value *v)
{
    uint8_t tag = (uint8_t)p[0];
    if (tag == 0) {
        *v = expr_null(want);
        return 1;
    }
    memset(v, 0, sizeof *v);
    v->type = tag;
    if (tag == EXPR_TEXT || tag == EXPR_JSONB) {
        uint32_t n;
        memcpy(&n, p + 1, 4);
        v->s = p + 5;
        v->len = n;
        return 5 + n;
    }
    if (tag == EXPR_DOUBLE)
        memcpy(&v->d, p + 1, 8);
    else if (tag == EXPR_BOOL) {
        int64_t b;
        memcpy(&b, p + 1, 8);
        v->b = b != 0;
    } else
        memcpy(&v->i, p + 1, 8);
    return 9;
}


/* ------------------------------------------------------------ store layout
 * The table of a view: its output columns in SELECT order (keys and
 * aggregates, or a row view's values; viewdef makes every GROUP BY key a
 * selected column), then hidden helpers: avg's sum and count
 * ("<col>__sum", "<col>__count"), latest/earliest's guard ("<col>__pos").
 * count(DISTINCT) aggregates each have a side table "<table>__d<i>" of
 * (key columns..., "value"). */

typedef struct layout {
    store_table t;
    store_col *cols;
    char **names;              /* owned column names */
    uint32_t *key_col;         /* per GROUP BY key: its column (grouped) */
    uint32_t *agg_col;         /* per aggregate: its value column */
    uint32_t *agg_aux;         /* per aggregate: avg's sum column (count is +1), latest/earliest's guard */
    uint32_t *value_col;       /* per row-view value: its column */
    uint32_t pos_col;          /* row view: the event_position key column */
    store_table *distinct;     /* per aggregate: count(DISTINCT)'s side table (ncols 0 otherwise) */
    char *table_name;
} layout;

static uint32_t layout_add(layout *L, char *name, expr_type type, store_merge merge)
{
    uint32_t i = L->t.ncols++;
    L->cols = xrealloc(L->cols, L->t.ncols * sizeof *L->cols);
    L->names = xrealloc(L->names, L->t.ncols * sizeof *L->names);
    L->names[i] = name;
    L->cols[i] = (store_col){.name = name, .type = type, .merge = merge, .avg_sum = NO_INDEX,
                             .avg_count = NO_INDEX, .guard = STORE_NO_GUARD};
    return i;
}

/* "<base><suffix><n>" (n < 0: none), malloc'd. */
static char *name_with(const char *base, const char *suffix, int n)
{
    buf b = {0};
    buf_printf(&b, "%s%s", base, suffix);
    if (n >= 0)
        buf_printf(&b, "%d", n);
    return b.data;   /* buf keeps a NUL terminator */
}

static store_merge merge_of(view_agg_kind k)
{
    switch (k) {
    case VAGG_MIN: return SMERGE_MIN;
    case VAGG_MAX: return SMERGE_MAX;
    case VAGG_LATEST: return SMERGE_REPLACE;
    case VAGG_EARLIEST: return SMERGE_KEEP;
    case VAGG_AVG: return SMERGE_AVG;
    default: return SMERGE_ADD;
    }
}

static void layout_distinct(layout *L, const view_def *d, uint32_t a)
{
    store_table *dt = &L->distinct[a];
    uint32_t n = d->nkeys + 1;
    store_col *dc = xcalloc(n, sizeof *dc);
    for (uint32_t k = 0; k < d->nkeys; k++)
        dc[k] = (store_col){.name = L->cols[L->key_col[k]].name, .type = L->cols[L->key_col[k]].type,
                            .merge = SMERGE_KEY, .guard = STORE_NO_GUARD};
    dc[d->nkeys] = (store_col){.name = "value", .type = d->aggs[a].arg_type, .merge = SMERGE_KEY,
                               .guard = STORE_NO_GUARD};
    dt->name = name_with(L->table_name, "__d", (int)a);
    dt->cols = dc;
    dt->ncols = n;
}

static void layout_build(layout *L, const view_def *d, const char *table_name)
{
    memset(L, 0, sizeof *L);
    L->table_name = xstrdup(table_name);
    L->t.name = L->table_name;
    L->pos_col = NO_INDEX;
    L->key_col = xcalloc(d->nkeys + 1, sizeof *L->key_col);
    L->agg_col = xcalloc(d->naggs + 1, sizeof *L->agg_col);
    L->agg_aux = xcalloc(d->naggs + 1, sizeof *L->agg_aux);
    L->value_col = xcalloc(d->nvalues + 1, sizeof *L->value_col);
    L->distinct = xcalloc(d->naggs + 1, sizeof *L->distinct);
    for (uint32_t k = 0; k < d->nkeys; k++)
        L->key_col[k] = NO_INDEX;
    for (uint32_t c = 0; c < d->ncols; c++) {
        const view_col *vc = &d->cols[c];
        store_merge m = SMERGE_KEY;
        if (d->shape == VIEW_ROWS)
            m = strcmp(vc->name, "event_position") == 0 && L->pos_col == NO_INDEX ? SMERGE_KEY : SMERGE_REPLACE;
        else if (vc->role == VCOL_AGG)
            m = merge_of(d->aggs[vc->index].kind);
        uint32_t i = layout_add(L, xstrdup(vc->name), vc->type, m);
        if (d->shape == VIEW_ROWS) {
            if (m == SMERGE_KEY)
                L->pos_col = i;
            if (vc->role == VCOL_VALUE)
                L->value_col[vc->index] = i;
        } else if (vc->role == VCOL_KEY && L->key_col[vc->index] == NO_INDEX) {
            L->key_col[vc->index] = i;
        } else if (vc->role == VCOL_AGG) {
            L->agg_col[vc->index] = i;
        } else if (vc->role == VCOL_KEY) {
            L->cols[i].merge = SMERGE_KEY;
        }
    }
    for (uint32_t a = 0; a < d->naggs; a++) {
        uint32_t c = L->agg_col[a];
        const char *nm = L->names[c];
        L->agg_aux[a] = NO_INDEX;
        if (d->aggs[a].kind == VAGG_AVG) {
            uint32_t s = layout_add(L, name_with(nm, "__sum", -1), EXPR_DOUBLE, SMERGE_ADD);
            uint32_t n = layout_add(L, name_with(nm, "__count", -1), EXPR_BIGINT, SMERGE_ADD);
            L->cols[c].avg_sum = s;
            L->cols[c].avg_count = n;
            L->agg_aux[a] = s;
        } else if (d->aggs[a].kind == VAGG_LATEST || d->aggs[a].kind == VAGG_EARLIEST) {
            bool latest = d->aggs[a].kind == VAGG_LATEST;
            uint32_t g = layout_add(L, name_with(nm, "__pos", -1), EXPR_BIGINT, latest ? SMERGE_MAX : SMERGE_MIN);
            L->cols[c].guard = g;
            L->agg_aux[a] = g;
        }
    }
    for (uint32_t a = 0; a < d->naggs; a++)
        if (d->aggs[a].kind == VAGG_COUNT_DISTINCT)
            layout_distinct(L, d, a);
    L->t.cols = L->cols;
}

static void layout_free(layout *L, const view_def *d)
{
    for (uint32_t i = 0; i < L->t.ncols; i++)
        free(L->names[i]);
    free(L->names);
    free(L->cols);
    for (uint32_t a = 0; d && a < d->naggs; a++)
        if (L->distinct[a].ncols) {
            free((char *)L->distinct[a].name);
            free((store_col *)L->distinct[a].cols);
        }
    free(L->distinct);
    free(L->key_col);
    free(L->agg_col);
    free(L->agg_aux);
    free(L->value_col);
    free(L->table_name);
    memset(L, 0, sizeof *L);
}

static payi_code layout_create(store *st, const layout *L, const view_def *d, payi_err *err)
{
    payi_code rc = store_create_table(st, &L->t, err);
    for (uint32_t a = 0; rc == PAYI_OK && a < d->naggs; a++)
        if (L->distinct[a].ncols)
            rc = store_create_table(st, &L->distinct[a], err);
    return rc;
}

static payi_code layout_drop(store *st, const layout *L, const view_def *d, payi_err *err)
{
    payi_code rc = store_drop_table(st, L->t.name, err);
    for (uint32_t a = 0; rc == PAYI_OK && a < d->naggs; a++)
        if (L->distinct[a].ncols)
            rc = store_drop_table(st, L->distinct[a].name, err);
    return rc;
}

/* Move the tables of `from` over those of `to` (same view, other names). */
static payi_code layout_replace(store *st, const layout *from, const layout *to, const view_def *d, payi_err *err)
{
    payi_code rc = store_replace_table(st, from->t.name, to->t.name, err);
    for (uint32_t a = 0; rc == PAYI_OK && a < d->naggs; a++)
        if (from->distinct[a].ncols)
            rc = store_replace_table(st, from->distinct[a].name, to->distinct[a].name, err);
    return rc;
}

/* ------------------------------------------------------------ batch state */

typedef struct agg_state {
    expr_value v;      /* min, max, latest, earliest (text copied into the batch arena) */
    int64_t n;         /* count(*), count(x), avg's count, count(DISTINCT)'s new values (at flush) */
    int64_t pos;       /* latest/earliest: the event's position */
    union {
        int64_t i;
        double d;
    } sum;
    bool has;          /* sum/min/max/avg: a non-NULL value seen; latest/earliest: any value */
} agg_state;

typedef struct delta {
    uint64_t hash;
    uint32_t key_off, key_len;   /* in batch.keys */
    bool reset;                  /* a DELETE ON event removed the row: delete it before merging */
    bool any;                    /* something to merge after the reset */
} delta;

typedef struct distinct_pair {
    uint32_t entry;              /* delta index */
    uint32_t agg;
    uint32_t off, len;           /* the encoded (agg, key, value) in batch.dkeys; value at off + vskip */
    uint32_t vskip;
} distinct_pair;

typedef struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    char data[];
} arena_blk;

typedef struct batch {
    /* grouped */
    delta *d;
    agg_state *st;               /* n * naggs */
    uint32_t n, cap;
    uint32_t *slots;             /* hash table: delta index + 1, 0 empty */
    uint32_t nslots;
    buf keys;
    distinct_pair *dp;
    uint32_t ndp, capdp;
    uint32_t *dslots;
    uint32_t ndslots;
    buf dkeys;
    /* rows */
    expr_value *rows;            /* nrows * ncols */
    size_t nrows, caprows;
    /* copied text */
    arena_blk *arena;
    size_t arena_bytes;
    uint64_t events;
} batch;

static char *arena_copy(batch *b, const char *s, size_t n)
{
    arena_blk *a = b->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        arena_blk *nb = xmalloc(sizeof *nb + cap);
        nb->next = a;
        nb->used = 0;
        nb->cap = cap;
        b->arena = a = nb;
    }
    char *p = a->data + a->used;
    memcpy(p, s, n);
    a->used += n;
    b->arena_bytes += n;
    return p;
}

static expr_value value_keep(batch *b, const expr_value *v)
{
    expr_value c = *v;
    if (!c.null && (c.type == EXPR_TEXT || c.type == EXPR_JSONB))
        c.s = c.len ? arena_copy(b, c.s, c.len) : "";
    return c;
}

static void batch_init(batch *b, uint32_t max_keys)
{
    memset(b, 0, sizeof *b);
    uint32_t ns = 16;
    while (ns < 2 * (uint64_t)max_keys)
        ns <<= 1;
    b->nslots = ns;
    b->slots = xcalloc(ns, sizeof *b->slots);
}

static void arena_free(batch *b)
{
    for (arena_blk *a = b->arena, *n; a; a = n) {
        n = a->next;
        free(a);
    }
    b->arena = NULL;
}

/* Forget everything folded: the table and buffers keep their memory except
 * the arena, which gives back all but one block. */
static void batch_clear(batch *b)
{
    if (b->n)
        memset(b->slots, 0, b->nslots * sizeof *b->slots);
    if (b->ndp)
        memset(b->dslots, 0, b->ndslots * sizeof *b->dslots);
    b->n = 0;
    b->ndp = 0;
    b->nrows = 0;
    b->events = 0;
    buf_reset(&b->keys);
    buf_reset(&b->dkeys);
    if (b->arena) {
        arena_blk *keep = b->arena;
        b->arena = keep->next;
        arena_free(b);
        keep->next = NULL;
        keep->used = 0;
        b->arena = keep;
    }
    b->arena_bytes = 0;
}

static void batch_release(batch *b)
{
    arena_free(b);
    free(b->d);
    free(b->st);
    free(b->slots);
    free(b->dp);
    free(b->dslots);
    free(b->rows);
    buf_release(&b->keys);
    buf_release(&b->dkeys);
    memset(b, 0, sizeof *b);
}

/* The delta of the encoded key in scratch[0..len), created when new. */
static uint32_t batch_entry(batch *b, const char *key, uint32_t len, uint32_t naggs)
{
    uint64_t h = hash_mix64(hash_fnv1a(key, len, HASH_FNV_SEED));
    uint32_t mask = b->nslots - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        uint32_t s = b->slots[i];
        if (!s) {
            if (b->n == b->cap) {
                b->cap = b->cap ? b->cap * 2 : 1024;
                b->d = xrealloc(b->d, (size_t)b->cap * sizeof *b->d);
                b->st = xrealloc(b->st, (size_t)b->cap * (naggs ? naggs : 1) * sizeof *b->st);
            }
            uint32_t e = b->n++;
            b->d[e] = (delta){.hash = h, .key_off = (uint32_t)b->keys.len, .key_len = len};
            if (len)   /* a view without GROUP BY has one group, of the empty key */
                buf_put(&b->keys, key, len);
            memset(&b->st[(size_t)e * naggs], 0, naggs * sizeof *b->st);
            b->slots[i] = e + 1;
            return e;
        }
        delta *d = &b->d[s - 1];
        if (d->hash == h && d->key_len == len && (len == 0 || memcmp(b->keys.data + d->key_off, key, len) == 0))
            return s - 1;
    }
}

/* Record (entry, agg, value) once per batch; true when it is new here. */
static bool batch_distinct(batch *b, uint32_t entry, uint32_t agg, const delta *d, const char *keys,
                           const expr_value *v)
{
    size_t start = b->dkeys.len;
    buf_put(&b->dkeys, &agg, sizeof agg);
    buf_put(&b->dkeys, keys + d->key_off, d->key_len);
    uint32_t vskip = (uint32_t)(b->dkeys.len - start);
    value_encode(&b->dkeys, v);
    uint32_t len = (uint32_t)(b->dkeys.len - start);
    const char *p = b->dkeys.data + start;
    uint64_t h = hash_mix64(hash_fnv1a(p, len, HASH_FNV_SEED));
    if (b->ndp * 2 + 2 > b->ndslots) {
        uint32_t ns = b->ndslots ? b->ndslots * 2 : 1024;
        uint32_t *sl = xcalloc(ns, sizeof *sl);
        for (uint32_t k = 0; k < b->ndp; k++) {
            const distinct_pair *q = &b->dp[k];
            uint64_t qh = hash_mix64(hash_fnv1a(b->dkeys.data + q->off, q->len, HASH_FNV_SEED));
            uint32_t j = (uint32_t)qh & (ns - 1);
            while (sl[j])
                j = (j + 1) & (ns - 1);
            sl[j] = k + 1;
        }
        free(b->dslots);
        b->dslots = sl;
        b->ndslots = ns;
    }
    uint32_t mask = b->ndslots - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        uint32_t s = b->dslots[i];
        if (!s) {
            if (b->ndp == b->capdp) {
                b->capdp = b->capdp ? b->capdp * 2 : 1024;
                b->dp = xrealloc(b->dp, b->capdp * sizeof *b->dp);
            }
            b->dp[b->ndp] = (distinct_pair){.entry = entry, .agg = agg, .off = (uint32_t)start, .len = len,
                                            .vskip = vskip};
            b->dslots[i] = ++b->ndp;
            return true;
        }
        const distinct_pair *q = &b->dp[s - 1];
        if (q->len == len && memcmp(b->dkeys.data + q->off, p, len) == 0) {
            b->dkeys.len = start;   /* seen: take the bytes back */
            return false;
        }
    }
}

/* ------------------------------------------------------------ the view */

typedef struct change {
    uint64_t seq;
    char *sse;          /* "id: ...\nevent: ...\ndata: ...\n\n" */
    uint32_t len;
} change;

typedef struct view {
    view_engine *ve;
    uint32_t index;
    view_def *def;
    layout live;                 /* "<name>" */
    layout rebuild;              /* "<name>__rebuild" */
    pthread_t thread;
    bool started;

    bool writing;                /* this view's thread holds ve->write_mu */

    /* read by other threads under mu */
    pthread_mutex_t mu;
    pthread_cond_t moved;
    view_status status;

    /* change ring, under mu */
    change *ring;
    uint32_t ring_cap;
    uint64_t change_head;        /* newest seq */
    _Atomic bool watched;        /* someone read changes: collect them */
} view;

struct view_engine {
    payi_log *log;
    registry *reg;
    view_options opt;
    char *store_url;
    view *views;
    uint32_t nviews;
    _Atomic bool stopping;

    pthread_mutex_t pool_mu;
    store *pool[RO_POOL_MAX];
    uint32_t npool;

    /* SQLite has one writer at a time per file: the views take turns here
     * rather than in SQLite's busy handler, which sleeps 1..100 ms per try
     * (measured: seven views slept most of their time). */
    pthread_mutex_t write_mu;
    bool serialize_writes;

    pthread_mutex_t notify_mu;   /* held while notify runs: set_notify waits for a running call */
    void (*notify)(void *ctx);
    void *notify_ctx;
};

typedef struct agg_input agg_input;

/* Per-thread folding context. */
typedef struct folder {
    view *v;
    const view_def *d;
    expr_ctx ctx;
    expr_value *slots;           /* the source scope */
    expr_value *dslots;          /* the DELETE ON scope */
    agg_input *in;               /* per aggregate: this event's input */
    json_doc jd;
    buf *ftext;                  /* per field: unescaped JSON string or rendered JSON */
    buf scratch;
    /* typed records: scope field -> schema field, per schema id */
    int32_t **fmap;
    uint32_t nfmap;
    int32_t **dfmap;
    uint32_t ndfmap;
    batch b;
    uint64_t start;              /* position the batch starts from */
    uint64_t next;               /* position after the last event folded */
    uint64_t folded;             /* events folded since the last set_position */
    payi_err ev_err;
} folder;

/* ------------------------------------------------------------ event -> slots */

static int32_t *field_map(const view_field *fields, uint32_t nfields, const ev_schema *s)
{
    int32_t *m = xcalloc(nfields + 1, sizeof *m);
    for (uint32_t f = 0; f < nfields; f++) {
        int i = schema_field_index(s, fields[f].name, strlen(fields[f].name));
        m[f] = i >= 0 && s->fields[i].type == fields[f].type ? i : -1;
        if (i >= 0 && fields[f].type == EXPR_JSONB && s->fields[i].type != EXPR_JSONB)
            m[f] = -2 - i;   /* a typed field read by an untyped view: rendered as JSON */
    }
    return m;
}

static const int32_t *field_map_for(int32_t ***maps, uint32_t *nmaps, const view_field *fields, uint32_t nfields,
                                    const ev_schema *s)
{
    if (s->id >= *nmaps) {
        uint32_t n = s->id + 16;
        *maps = xrealloc(*maps, n * sizeof **maps);
        memset(*maps + *nmaps, 0, (n - *nmaps) * sizeof **maps);
        *nmaps = n;
    }
    if (!(*maps)[s->id])
        (*maps)[s->id] = field_map(fields, nfields, s);
    return (*maps)[s->id];
}

/* A JSON member as a value of the wanted type; false when it cannot be. */
static bool json_to_value(folder *f, uint32_t node, expr_type want, buf *text, expr_value *out)
{
    const json_doc *d = &f->jd;
    const json_node *n = &d->nodes[node];
    if (n->kind == JSON_NULL) {
        *out = expr_null(want);
        return true;
    }
    if (want == EXPR_JSONB) {
        *out = expr_jsonb(d->src + n->start, n->len);
        return true;
    }
    switch (want) {
    case EXPR_BIGINT: {
        int64_t i;
        if (n->kind != JSON_NUMBER || !json_get_int64(d, node, &i))
            return false;
        *out = expr_int(i);
        return true;
    }
    case EXPR_DOUBLE: {
        double x;
        if (n->kind != JSON_NUMBER || !json_get_double(d, node, &x))
            return false;
        *out = expr_double(x);
        return true;
    }
    case EXPR_BOOL:
        if (n->kind != JSON_TRUE && n->kind != JSON_FALSE)
            return false;
        *out = expr_bool(n->kind == JSON_TRUE);
        return true;
    default:
        break;
    }
    if (n->kind != JSON_STRING)
        return false;
    const char *s = d->src + n->start + 1;
    size_t len = n->len - 2;
    if (n->flags & JSON_F_ESCAPED) {
        if (!json_get_string(d, node, text))
            return false;
        s = text->data;
        len = text->len;
    }
    int64_t x;
    switch (want) {
    case EXPR_TEXT:
        *out = expr_text(s, len);
        return true;
    case EXPR_DATE:
        if (!expr_parse_date(s, len, &x))
            return false;
        *out = expr_date(x);
        return true;
    case EXPR_TIMESTAMPTZ:
        if (!expr_parse_timestamptz(s, len, &x))
            return false;
        *out = expr_ts(x);
        return true;
    default:
        return false;
    }
}

/* Fill slots (attributes, then fields) from ev.  Returns false with
 * f->ev_err set when the event cannot be read as the view needs. */
static bool event_slots(folder *f, const log_event *ev, const view_field *fields, uint32_t nfields,
                        int32_t ***maps, uint32_t *nmaps, expr_value *slots)
{
    slots[VIEW_ATTR_POSITION] = expr_int((int64_t)ev->position);
    slots[VIEW_ATTR_STREAM] = expr_text(ev->stream, ev->stream_len);
    slots[VIEW_ATTR_VERSION] = expr_int((int64_t)ev->version);
    slots[VIEW_ATTR_TIME] = expr_ts(ev->time_ns / 1000);
    slots[VIEW_ATTR_TYPE] = expr_text(ev->type, ev->type_len);
    if (nfields == 0)
        return true;
    expr_value *fs = slots + VIEW_NATTRS;
    if (ev->encoding == LOG_ENC_TYPED) {
        uint32_t id;
        const ev_schema *s = schema_data_id(ev->data, ev->data_len, &id) ? registry_by_id(f->v->ve->reg, id) : NULL;
        if (!s) {
            payi_err_set(&f->ev_err, PAYI_CORRUPT, NULL, "event %" PRIu64 ": typed data of an unknown schema", ev->position);
            return false;
        }
        if (schema_check_layout(s, ev->data, ev->data_len, &f->ev_err) != PAYI_OK)
            return false;
        const int32_t *m = field_map_for(maps, nmaps, fields, nfields, s);
        for (uint32_t i = 0; i < nfields; i++) {
            if (m[i] >= 0) {
                schema_get(s, ev->data, ev->data_len, (uint32_t)m[i], &fs[i]);
            } else if (m[i] == -1) {
                fs[i] = expr_null(fields[i].type);
            } else {
                expr_value v;
                schema_get(s, ev->data, ev->data_len, (uint32_t)(-2 - m[i]), &v);
                buf *t = &f->ftext[i];
                buf_reset(t);
                schema_put_value_json(t, &v);
                fs[i] = v.null ? expr_null(EXPR_JSONB) : expr_jsonb(t->data, t->len);
            }
        }
        return true;
    }
    json_error je;
    if (!json_parse(&f->jd, ev->data, ev->data_len, NULL, &je) || f->jd.nodes[0].kind != JSON_OBJECT) {
        payi_err_set(&f->ev_err, PAYI_BAD_JSON, NULL, "event %" PRIu64 ": data is not a JSON object", ev->position);
        return false;
    }
    for (uint32_t i = 0; i < nfields; i++) {
        uint32_t node = json_object_get(&f->jd, 0, fields[i].name);
        if (node == UINT32_MAX) {
            fs[i] = expr_null(fields[i].type);
        } else if (!json_to_value(f, node, fields[i].type, &f->ftext[i], &fs[i])) {
            payi_err_set(&f->ev_err, PAYI_VALIDATION, fields[i].name, "event %" PRIu64 ": field \"%s\" is not a %s",
                         ev->position, fields[i].name, expr_type_name(fields[i].type));
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ folding */

static bool eval_bool(folder *f, const expr *e, const expr_value *slots, bool *out)
{
    expr_value r;
    if (expr_eval(e, slots, &f->ctx, &r, &f->ev_err) != PAYI_OK)
        return false;
    *out = !r.null && r.b;
    return true;
}

/* The encoded group key of the event (in f->scratch). */
static bool group_key(folder *f, expr *const *keys, uint32_t nkeys, const expr_value *slots)
{
    buf_reset(&f->scratch);
    for (uint32_t k = 0; k < nkeys; k++) {
        expr_value v;
        if (expr_eval(keys[k], slots, &f->ctx, &v, &f->ev_err) != PAYI_OK)
            return false;
        value_encode(&f->scratch, &v);
    }
    return true;
}

static int cmp_values(const expr_value *a, const expr_value *b)
{
    switch ((expr_type)a->type) {
    case EXPR_DOUBLE: return a->d < b->d ? -1 : a->d > b->d;
    case EXPR_BOOL: return (int)a->b - (int)b->b;
    case EXPR_TEXT:
    case EXPR_JSONB: {
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->s, b->s, n);
        return c ? c : (a->len < b->len ? -1 : a->len > b->len);
    }
    default: return a->i < b->i ? -1 : a->i > b->i;
    }
}

/* An aggregate's input from one event: evaluated for every aggregate
 * before any is applied, so that an event that fails anywhere changes
 * nothing (it is skipped whole). */
struct agg_input {
    bool skip;         /* FILTER said no */
    expr_value v;      /* the argument (count(*): unused) */
};

static bool agg_eval(folder *f, uint32_t a, const expr_value *slots, agg_input *in)
{
    const view_agg *g = &f->d->aggs[a];
    in->skip = false;
    if (g->filter) {
        bool keep;
        if (!eval_bool(f, g->filter, slots, &keep))
            return false;
        in->skip = !keep;
    }
    if (in->skip || g->kind == VAGG_COUNT_STAR)
        return true;
    return expr_eval(g->arg, slots, &f->ctx, &in->v, &f->ev_err) == PAYI_OK;
}

/* The checks that need the state: a bigint sum must not overflow. */
static bool agg_fits(folder *f, uint32_t e, uint32_t a, const agg_input *in)
{
    const view_agg *g = &f->d->aggs[a];
    const agg_state *s = &f->b.st[(size_t)e * f->d->naggs + a];
    int64_t r;
    if (in->skip || g->kind != VAGG_SUM || in->v.null || in->v.type != EXPR_BIGINT ||
        !__builtin_add_overflow(s->sum.i, in->v.i, &r))
        return true;
    payi_err_set(&f->ev_err, PAYI_VALIDATION, NULL, "bigint out of range in sum");
    return false;
}

static void agg_apply(folder *f, uint32_t e, uint32_t a, const agg_input *in, uint64_t position)
{
    const view_agg *g = &f->d->aggs[a];
    agg_state *s = &f->b.st[(size_t)e * f->d->naggs + a];
    const expr_value *v = &in->v;
    if (in->skip)
        return;
    switch (g->kind) {
    case VAGG_COUNT_STAR:
        s->n++;
        return;
    case VAGG_LATEST:
        s->v = value_keep(&f->b, v);
        s->pos = (int64_t)position;
        s->has = true;
        return;
    case VAGG_EARLIEST:
        if (!s->has) {
            s->v = value_keep(&f->b, v);
            s->pos = (int64_t)position;
            s->has = true;
        }
        return;
    default:
        break;
    }
    if (v->null)
        return;
    switch (g->kind) {
    case VAGG_COUNT:
        s->n++;
        break;
    case VAGG_COUNT_DISTINCT:
        batch_distinct(&f->b, e, a, &f->b.d[e], f->b.keys.data, v);
        break;
    case VAGG_SUM:
        if (v->type == EXPR_BIGINT)
            s->sum.i += v->i;   /* agg_fits checked it */
        else
            s->sum.d += v->d;
        s->has = true;
        break;
    case VAGG_AVG:
        s->sum.d += v->type == EXPR_BIGINT ? (double)v->i : v->d;
        s->n++;
        s->has = true;
        break;
    case VAGG_MIN:
    case VAGG_MAX: {
        int c = s->has ? cmp_values(v, &s->v) : 0;
        if (!s->has || (g->kind == VAGG_MIN ? c < 0 : c > 0))
            s->v = value_keep(&f->b, v);
        s->has = true;
        break;
    }
    default:
        break;
    }
}

static bool fold_grouped(folder *f, const log_event *ev)
{
    const view_def *d = f->d;
    if (!group_key(f, d->keys, d->nkeys, f->slots))
        return false;
    for (uint32_t a = 0; a < d->naggs; a++)
        if (!agg_eval(f, a, f->slots, &f->in[a]))
            return false;
    uint32_t e = batch_entry(&f->b, f->scratch.data, (uint32_t)f->scratch.len, d->naggs);
    for (uint32_t a = 0; a < d->naggs; a++)
        if (!agg_fits(f, e, a, &f->in[a]))
            return false;
    for (uint32_t a = 0; a < d->naggs; a++)
        agg_apply(f, e, a, &f->in[a], ev->position);
    f->b.d[e].any = true;
    return true;
}

static bool fold_delete(folder *f)
{
    const view_def *d = f->d;
    if (!group_key(f, d->delete_keys, d->nkeys, f->dslots))
        return false;
    uint32_t e = batch_entry(&f->b, f->scratch.data, (uint32_t)f->scratch.len, d->naggs);
    memset(&f->b.st[(size_t)e * d->naggs], 0, d->naggs * sizeof *f->b.st);
    f->b.d[e].reset = true;
    f->b.d[e].any = false;
    return true;
}

static bool fold_row(folder *f, const log_event *ev)
{
    const view_def *d = f->d;
    batch *b = &f->b;
    uint32_t nc = f->v->live.t.ncols;
    if (b->nrows == b->caprows) {
        b->caprows = b->caprows ? b->caprows * 2 : 1024;
        b->rows = xrealloc(b->rows, b->caprows * nc * sizeof *b->rows);
    }
    expr_value *row = &b->rows[b->nrows * nc];
    for (uint32_t c = 0; c < nc; c++)
        row[c] = expr_null(f->v->live.cols[c].type);
    for (uint32_t i = 0; i < d->nvalues; i++) {
        expr_value v;
        if (expr_eval(d->values[i], f->slots, &f->ctx, &v, &f->ev_err) != PAYI_OK)
            return false;
        row[f->v->live.value_col[i]] = value_keep(b, &v);
    }
    row[f->v->live.pos_col] = expr_int((int64_t)ev->position);
    b->nrows++;
    return true;
}

/* Fold one event; an event the view cannot evaluate is skipped. */
static void fold_event(folder *f, const log_event *ev)
{
    const view_def *d = f->d;
    bool ok = true, touched = false;
    if (ev->stream_len && ev->stream[0] == '$') {   /* payi's own streams ($schemas) are not data */
        f->next = ev->position + 1;
        return;
    }
    expr_ctx_reset(&f->ctx);
    for (uint32_t i = 0; i < d->nfields; i++)
        buf_reset(&f->ftext[i]);
    if (view_def_reads(d, ev->type, ev->type_len)) {
        touched = true;
        bool keep = true;
        ok = event_slots(f, ev, d->fields, d->nfields, &f->fmap, &f->nfmap, f->slots);
        if (ok && d->where)
            ok = eval_bool(f, d->where, f->slots, &keep);
        if (ok && keep)
            ok = d->shape == VIEW_ROWS ? fold_row(f, ev) : fold_grouped(f, ev);
    }
    if (ok && d->delete_type && view_def_deletes(d, ev->type, ev->type_len)) {
        touched = true;
        ok = event_slots(f, ev, d->delete_fields, d->ndelete_fields, &f->dfmap, &f->ndfmap, f->dslots) &&
             fold_delete(f);
    }
    f->next = ev->position + 1;
    f->b.events += touched;
    if (ok) {
        f->folded += touched;   /* published per batch: no lock per event */
        return;
    }
    pthread_mutex_lock(&f->v->mu);
    f->v->status.events_skipped++;
    snprintf(f->v->status.last_error, sizeof f->v->status.last_error, "event %" PRIu64 " skipped: %s",
             ev->position, f->ev_err.msg);
    pthread_mutex_unlock(&f->v->mu);
}

/* ------------------------------------------------------------ flushing */

typedef struct change_sink {
    view *v;
    const layout *L;
    buf out;          /* SSE events, published after commit */
    uint32_t n;
} change_sink;

static void put_row_json(buf *out, const layout *L, const view_def *d, const expr_value *vals)
{
    buf_putc(out, '{');
    for (uint32_t c = 0; c < d->ncols; c++) {
        if (c)
            buf_putc(out, ',');
        json_put_string(out, L->cols[c].name, strlen(L->cols[c].name));
        buf_putc(out, ':');
        schema_put_value_json(out, &vals[c]);
    }
    buf_putc(out, '}');
}

static int on_changed(void *ctx, const expr_value *vals, uint32_t ncols)
{
    change_sink *cs = ctx;
    (void)ncols;
    buf_puts(&cs->out, "event: row\ndata: ");
    put_row_json(&cs->out, cs->L, cs->v->def, vals);
    buf_puts(&cs->out, "\n\n");
    cs->n++;
    return 0;
}

static void sink_deleted(change_sink *cs, const view_def *d, const layout *L, const expr_value *keys)
{
    buf_puts(&cs->out, "event: delete\ndata: {");
    for (uint32_t k = 0; k < d->nkeys; k++) {
        if (k)
            buf_putc(&cs->out, ',');
        const char *nm = L->cols[L->key_col[k]].name;
        json_put_string(&cs->out, nm, strlen(nm));
        buf_putc(&cs->out, ':');
        schema_put_value_json(&cs->out, &keys[k]);
    }
    buf_puts(&cs->out, "}\n\n");
    cs->n++;
}

/* The keys of delta e as values (text into batch.keys). */
static void delta_keys(const batch *b, const delta *dl, const view_def *d, const layout *L, expr_value *out)
{
    const char *p = b->keys.data + dl->key_off;
    for (uint32_t k = 0; k < d->nkeys; k++)
        p += value_decode(p, L->cols[L->key_col[k]].type, &out[k]);
}

static payi_code flush_distinct(folder *f, store *st, const layout *L, payi_err *err)
{
    const view_def *d = f->d;
    batch *b = &f->b;
    if (!b->ndp)
        return PAYI_OK;
    uint32_t nc = d->nkeys + 1;
    expr_value *rows = xmalloc((size_t)b->ndp * nc * sizeof *rows);
    bool *ins = xmalloc(b->ndp * sizeof *ins);
    uint32_t *which = xmalloc(b->ndp * sizeof *which);
    payi_code rc = PAYI_OK;
    for (uint32_t a = 0; rc == PAYI_OK && a < d->naggs; a++) {
        if (d->aggs[a].kind != VAGG_COUNT_DISTINCT)
            continue;
        size_t n = 0;
        for (uint32_t k = 0; k < b->ndp; k++) {
            const distinct_pair *q = &b->dp[k];
            if (q->agg != a)
                continue;
            expr_value *r = &rows[n * nc];
            delta_keys(b, &b->d[q->entry], d, L, r);
            value_decode(b->dkeys.data + q->off + q->vskip, d->aggs[a].arg_type, &r[d->nkeys]);
            which[n++] = q->entry;
        }
        if (n)
            rc = store_insert_new(st, &L->distinct[a], rows, n, ins, err);
        for (size_t k = 0; rc == PAYI_OK && k < n; k++)
            if (ins[k])
                b->st[(size_t)which[k] * d->naggs + a].n++;
    }
    free(rows);
    free(ins);
    free(which);
    return rc;
}

static expr_value agg_value(const view_agg *g, const agg_state *s)
{
    switch (g->kind) {
    case VAGG_COUNT_STAR:
    case VAGG_COUNT:
    case VAGG_COUNT_DISTINCT:
        return expr_int(s->n);
    case VAGG_SUM:
        if (!s->has)
            return expr_null(g->type);
        return g->type == EXPR_BIGINT ? expr_int(s->sum.i) : expr_double(s->sum.d);
    case VAGG_AVG:
        return s->n ? expr_double(s->sum.d / (double)s->n) : expr_null(EXPR_DOUBLE);
    default:
        return s->has ? s->v : expr_null(g->type);
    }
}

static payi_code flush_grouped(folder *f, store *st, const layout *L, change_sink *cs, payi_err *err)
{
    const view_def *d = f->d;
    batch *b = &f->b;
    uint32_t nc = L->t.ncols;
    payi_code rc = flush_distinct(f, st, L, err);
    /* Deletes first: a reset group's stored row goes before its new events merge. */
    expr_value *keys = xmalloc(((size_t)b->n * (d->nkeys ? d->nkeys : 1) + 1) * sizeof *keys);
    size_t ndel = 0;
    for (uint32_t e = 0; rc == PAYI_OK && e < b->n; e++)
        if (b->d[e].reset) {
            delta_keys(b, &b->d[e], d, L, &keys[ndel * d->nkeys]);
            if (cs && !b->d[e].any)
                sink_deleted(cs, d, L, &keys[ndel * d->nkeys]);
            ndel++;
        }
    if (rc == PAYI_OK && ndel)
        rc = store_delete(st, &L->t, keys, ndel, err);
    free(keys);
    expr_value *rows = xmalloc(((size_t)b->n + 1) * nc * sizeof *rows);
    size_t n = 0;
    for (uint32_t e = 0; rc == PAYI_OK && e < b->n; e++) {
        if (!b->d[e].any)
            continue;
        expr_value *r = &rows[n++ * nc];
        for (uint32_t c = 0; c < nc; c++)
            r[c] = expr_null(L->cols[c].type);
        expr_value kv[64];
        expr_value *kp = d->nkeys <= 64 ? kv : xmalloc(d->nkeys * sizeof *kp);
        delta_keys(b, &b->d[e], d, L, kp);
        for (uint32_t c = 0; c < d->ncols; c++)
            if (d->cols[c].role == VCOL_KEY)
                r[c] = kp[d->cols[c].index];
        for (uint32_t k = 0; k < d->nkeys; k++)
            r[L->key_col[k]] = kp[k];
        if (kp != kv)
            free(kp);
        for (uint32_t a = 0; a < d->naggs; a++) {
            const agg_state *s = &b->st[(size_t)e * d->naggs + a];
            r[L->agg_col[a]] = agg_value(&d->aggs[a], s);
            if (d->aggs[a].kind == VAGG_AVG) {
                r[L->agg_aux[a]] = s->n ? expr_double(s->sum.d) : expr_null(EXPR_DOUBLE);
                r[L->agg_aux[a] + 1] = expr_int(s->n);
            } else if (L->agg_aux[a] != NO_INDEX) {
                r[L->agg_aux[a]] = s->has ? expr_int(s->pos) : expr_null(EXPR_BIGINT);
            }
        }
    }
    if (rc == PAYI_OK && n)
        rc = store_upsert(st, &L->t, rows, n, cs ? on_changed : NULL, cs, err);
    free(rows);
    if (rc == PAYI_OK) {
        pthread_mutex_lock(&f->v->mu);
        f->v->status.rows_written += n + ndel;
        pthread_mutex_unlock(&f->v->mu);
    }
    return rc;
}

static payi_code flush_rows(folder *f, store *st, const layout *L, change_sink *cs, payi_err *err)
{
    batch *b = &f->b;
    if (!b->nrows)
        return PAYI_OK;
    payi_code rc = store_upsert(st, &L->t, b->rows, b->nrows, cs ? on_changed : NULL, cs, err);
    if (rc == PAYI_OK) {
        pthread_mutex_lock(&f->v->mu);
        f->v->status.rows_written += b->nrows;
        pthread_mutex_unlock(&f->v->mu);
    }
    return rc;
}

static payi_code flush_rows_of(folder *f, store *st, const layout *L, change_sink *cs, payi_err *err)
{
    return f->d->shape == VIEW_ROWS ? flush_rows(f, st, L, cs, err) : flush_grouped(f, st, L, cs, err);
}

/* Publish a committed batch's changes to the ring. */
static void publish_changes(view *v, change_sink *cs)
{
    if (!cs->n)
        return;
    pthread_mutex_lock(&v->mu);
    const char *p = cs->out.data, *end = cs->out.data + cs->out.len;
    while (p < end) {
        const char *q = strstr(p, "\n\n");
        q = q ? q + 2 : end;
        uint64_t seq = ++v->change_head;
        change *c = &v->ring[seq % v->ring_cap];
        free(c->sse);
        buf one = {0};
        buf_printf(&one, "id: %" PRIu64 "\n", seq);
        buf_put(&one, p, (size_t)(q - p));
        c->seq = seq;
        c->sse = one.data;
        c->len = (uint32_t)one.len;
        p = q;
    }
    pthread_mutex_unlock(&v->mu);
    view_engine *ve = v->ve;
    pthread_mutex_lock(&ve->notify_mu);
    if (ve->notify)
        ve->notify(ve->notify_ctx);
    pthread_mutex_unlock(&ve->notify_mu);
}

/* A store transaction of view v: begin, then commit or roll back once. */
static payi_code tx_begin(view *v, store *st, payi_err *err)
{
    if (v->ve->serialize_writes) {
        pthread_mutex_lock(&v->ve->write_mu);
        v->writing = true;
    }
    payi_code rc = store_begin(st, err);
    if (rc != PAYI_OK && v->writing) {
        v->writing = false;
        pthread_mutex_unlock(&v->ve->write_mu);
    }
    return rc;
}

static void tx_done(view *v)
{
    if (v->writing) {
        v->writing = false;
        pthread_mutex_unlock(&v->ve->write_mu);
    }
}

static payi_code tx_commit(view *v, store *st, payi_err *err)
{
    payi_code rc = store_commit(st, err);
    if (rc != PAYI_OK)
        store_rollback(st);
    tx_done(v);
    return rc;
}

static void tx_rollback(view *v, store *st)
{
    store_rollback(st);
    tx_done(v);
}

/* Commit the batch to the live tables with the checkpoint.  *moved is set
 * (and nothing written) when the stored checkpoint is not where the batch
 * started: another process swapped in a rebuild. */
static payi_code commit_live(folder *f, store *st, bool *moved, uint64_t *stored_pos, payi_err *err)
{
    view *v = f->v;
    *moved = false;
    change_sink cs = {.v = v, .L = &v->live};
    bool watch = atomic_load_explicit(&v->watched, memory_order_relaxed);
    payi_code rc = tx_begin(v, st, err);
    if (rc != PAYI_OK)
        return rc;
    store_meta m;
    rc = store_get_meta(st, v->def->name, &m, err);
    if (rc == PAYI_OK && !m.found)
        rc = payi_err_set(err, PAYI_CORRUPT, NULL, "the checkpoint of view %s is missing from the store",
                          v->def->name);
    if (rc == PAYI_OK && (m.position != f->start || m.hash != v->def->hash)) {
        *moved = true;
        *stored_pos = m.position;
        if (m.hash != v->def->hash)
            rc = payi_err_set(err, PAYI_CONFLICT, NULL,
                              "the store holds another definition of view %s (written by another spec); "
                              "restart the server with the spec that matches, or run payi replay",
                              v->def->name);
        tx_rollback(v, st);
        return rc;
    }
    if (rc == PAYI_OK)
        rc = flush_rows_of(f, st, &v->live, watch ? &cs : NULL, err);
    if (rc == PAYI_OK)
        rc = store_put_meta(st, v->def->name, v->def->hash, f->next, v->live.t.name, v->def->sql, err);
    if (rc == PAYI_OK)
        rc = tx_commit(v, st, err);
    if (rc != PAYI_OK) {
        tx_rollback(v, st);
        buf_release(&cs.out);
        return rc;
    }
    publish_changes(v, &cs);
    buf_release(&cs.out);
    return PAYI_OK;
}

/* ------------------------------------------------------------ folder life */

static void folder_init(folder *f, view *v)
{
    memset(f, 0, sizeof *f);
    f->v = v;
    f->d = v->def;
    expr_ctx_init(&f->ctx);
    f->slots = xcalloc(v->def->nscope + 1, sizeof *f->slots);
    f->dslots = xcalloc(v->def->ndelete_scope + 1, sizeof *f->dslots);
    f->in = xcalloc(v->def->naggs + 1, sizeof *f->in);
    uint32_t nf = v->def->nfields > v->def->ndelete_fields ? v->def->nfields : v->def->ndelete_fields;
    f->ftext = xcalloc(nf + 1, sizeof *f->ftext);
    batch_init(&f->b, v->ve->opt.max_keys);
}

static void folder_release(folder *f)
{
    expr_ctx_release(&f->ctx);
    free(f->slots);
    free(f->dslots);
    free(f->in);
    json_doc_release(&f->jd);
    uint32_t nf = f->d->nfields > f->d->ndelete_fields ? f->d->nfields : f->d->ndelete_fields;
    for (uint32_t i = 0; i < nf; i++)
        buf_release(&f->ftext[i]);
    free(f->ftext);
    buf_release(&f->scratch);
    for (uint32_t i = 0; i < f->nfmap; i++)
        free(f->fmap[i]);
    free(f->fmap);
    for (uint32_t i = 0; i < f->ndfmap; i++)
        free(f->dfmap[i]);
    free(f->dfmap);
    batch_release(&f->b);
}

static bool batch_full(const folder *f)
{
    const view_options *o = &f->v->ve->opt;
    return f->b.events >= o->batch_events || f->b.n >= o->max_keys || f->b.nrows >= o->max_keys ||
           f->b.arena_bytes >= o->max_batch_bytes || f->b.ndp >= 4 * (uint64_t)o->max_keys;
}

/* Fold events from sub into f's batch until it is full, the log is drained
 * (and linger_ms passed), or `until` is reached.  Returns PAYI_OK, or the
 * log's error. */
static payi_code fold_batch(folder *f, log_sub *sub, uint64_t until, payi_err *err)
{
    int wait_first = 200;
    while (!batch_full(f) && f->next < until && !atomic_load(&f->v->ve->stopping)) {
        log_event ev;
        int timeout = f->b.events || f->next != f->start ? f->v->ve->opt.linger_ms : wait_first;
        payi_code rc = log_sub_next(sub, &ev, timeout, err);
        if (rc == PAYI_TIMEOUT)
            return PAYI_OK;
        if (rc != PAYI_OK)
            return rc;
        fold_event(f, &ev);
    }
    return PAYI_OK;
}

static log_sub *sub_at(view *v, uint64_t position)
{
    log_cursor c;
    log_cursor_at(&c, position);
    return log_sub_open(v->ve->log, &c);
}

static void set_position(view *v, folder *f, uint64_t position, bool rebuilding)
{
    pthread_mutex_lock(&v->mu);
    v->status.events_folded += f->folded;
    f->folded = 0;
    if (rebuilding) {
        v->status.rebuild_position = position;
    } else {
        v->status.position = position;
        v->status.rebuilding = false;
    }
    v->status.batches++;
    pthread_cond_broadcast(&v->moved);
    pthread_mutex_unlock(&v->mu);
}

/* ------------------------------------------------------------ rebuilds */

/* Fold every event below `until` (or the head, as it moves, when until is
 * UINT64_MAX) into the rebuild tables, committing batch by batch.  Returns
 * the position reached. */
static payi_code rebuild_fold(folder *f, store *st, uint64_t until, view_progress_fn progress, void *pctx,
                              payi_err *err)
{
    view *v = f->v;
    log_sub *sub = sub_at(v, f->next);
    payi_code rc = PAYI_OK;
    for (;;) {
        uint64_t head = log_head(v->ve->log);
        uint64_t goal = until < head ? until : head;
        if (f->next >= goal)
            break;
        f->start = f->next;
        batch_clear(&f->b);
        rc = fold_batch(f, sub, goal, err);
        if (rc == PAYI_OK)
            rc = tx_begin(v, st, err);
        if (rc == PAYI_OK)
            rc = flush_rows_of(f, st, &v->rebuild, NULL, err);
        if (rc == PAYI_OK)
            rc = tx_commit(v, st, err);
        if (rc != PAYI_OK) {
            tx_rollback(v, st);
            break;
        }
        set_position(v, f, f->next, true);
        if (progress)
            progress(pctx, v->def->name, f->next, head);
        if (atomic_load(&v->ve->stopping)) {
            rc = payi_err_set(err, PAYI_UNAVAILABLE, NULL, "stopping");
            break;
        }
    }
    log_sub_close(sub);
    return rc;
}

/* Build the view from position 0 into "<name>__rebuild" and swap it in
 * with the checkpoint, in one transaction that also folds the last events
 * (so the swap happens at the head of the moment, whatever moved since). */
static payi_code rebuild_view(view *v, store *st, view_progress_fn progress, void *pctx, uint64_t *reached,
                              payi_err *err)
{
    folder f;
    folder_init(&f, v);
    pthread_mutex_lock(&v->mu);
    v->status.rebuilding = true;
    v->status.rebuild_position = 0;
    pthread_mutex_unlock(&v->mu);
    payi_code rc = tx_begin(v, st, err);
    if (rc == PAYI_OK)
        rc = layout_drop(st, &v->rebuild, v->def, err);
    if (rc == PAYI_OK)
        rc = layout_create(st, &v->rebuild, v->def, err);
    if (rc == PAYI_OK)
        rc = tx_commit(v, st, err);
    else
        tx_rollback(v, st);
    if (rc == PAYI_OK)
        rc = rebuild_fold(&f, st, UINT64_MAX, progress, pctx, err);
    if (rc == PAYI_OK) {
        /* The swap: the write transaction first (other writers of this
         * view wait), then the events that arrived meanwhile. */
        rc = tx_begin(v, st, err);
        store_meta m;
        if (rc == PAYI_OK)
            rc = store_get_meta(st, v->def->name, &m, err);
        log_sub *sub = sub_at(v, f.next);
        uint64_t head = log_head(v->ve->log);
        while (rc == PAYI_OK && f.next < head) {
            f.start = f.next;
            batch_clear(&f.b);
            rc = fold_batch(&f, sub, head, err);
            if (rc == PAYI_OK)
                rc = flush_rows_of(&f, st, &v->rebuild, NULL, err);
        }
        log_sub_close(sub);
        if (rc == PAYI_OK)
            rc = layout_replace(st, &v->rebuild, &v->live, v->def, err);
        if (rc == PAYI_OK)
            rc = store_put_meta(st, v->def->name, v->def->hash, f.next, v->live.t.name, v->def->sql, err);
        if (rc == PAYI_OK)
            rc = tx_commit(v, st, err);
        if (rc != PAYI_OK)
            tx_rollback(v, st);
    }
    if (rc == PAYI_OK) {
        *reached = f.next;
        set_position(v, &f, f.next, false);
        if (progress)
            progress(pctx, v->def->name, f.next, f.next);
    } else {
        pthread_mutex_lock(&v->mu);
        v->status.rebuilding = false;
        pthread_mutex_unlock(&v->mu);
    }
    folder_release(&f);
    return rc;
}

/* ------------------------------------------------------------ the thread */

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void view_failed(view *v, const payi_err *err)
{
    pthread_mutex_lock(&v->mu);
    v->status.failed = true;
    snprintf(v->status.last_error, sizeof v->status.last_error, "%s", err->msg);
    pthread_mutex_unlock(&v->mu);
    fprintf(stderr, "payi: view %s: %s\n", v->def->name, err->msg);
}

/* Where the view starts: its checkpoint, after creating or rebuilding its
 * tables as needed. */
static payi_code view_prepare(view *v, store *st, uint64_t *pos, payi_err *err)
{
    store_meta m;
    payi_code rc = store_get_meta(st, v->def->name, &m, err);
    if (rc != PAYI_OK)
        return rc;
    if (m.found && m.hash == v->def->hash) {
        *pos = m.position;
        return PAYI_OK;
    }
    if (m.found)   /* a changed definition: the old table serves until the new one is built */
        return rebuild_view(v, st, NULL, NULL, pos, err);
    rc = tx_begin(v, st, err);
    if (rc == PAYI_OK)
        rc = layout_create(st, &v->live, v->def, err);
    if (rc == PAYI_OK)
        rc = store_put_meta(st, v->def->name, v->def->hash, 0, v->live.t.name, v->def->sql, err);
    if (rc == PAYI_OK)
        rc = tx_commit(v, st, err);
    if (rc != PAYI_OK)
        tx_rollback(v, st);
    *pos = 0;
    return rc;
}

/* Maintain the view in st from its checkpoint until the engine stops.
 * st NULL: a dry run (view_options.dry_run), folding from position 0 and
 * writing nothing. */
static payi_code view_run(view *v, store *st, payi_err *err)
{
    uint64_t pos = 0;
    payi_code rc = st ? view_prepare(v, st, &pos, err) : PAYI_OK;
    if (rc != PAYI_OK)
        return rc;
    folder f;
    folder_init(&f, v);
    f.next = pos;
    set_position(v, &f, pos, false);
    pthread_mutex_lock(&v->mu);
    v->status.failed = false;
    pthread_mutex_unlock(&v->mu);
    log_sub *sub = sub_at(v, pos);
    while (rc == PAYI_OK && !atomic_load(&v->ve->stopping)) {
        f.start = f.next;
        batch_clear(&f.b);
        rc = fold_batch(&f, sub, UINT64_MAX, err);
        if (rc != PAYI_OK || f.next == f.start)
            continue;
        bool moved = false;
        uint64_t stored;
        if (st)
            rc = commit_live(&f, st, &moved, &stored, err);
        if (rc == PAYI_OK && moved) {   /* a replay swapped in a rebuilt table: go on from its checkpoint */
            log_sub_close(sub);
            f.next = stored;
            f.folded = 0;
            sub = sub_at(v, stored);
        }
        if (rc == PAYI_OK)
            set_position(v, &f, f.next, false);
    }
    log_sub_close(sub);
    folder_release(&f);
    return rc;
}

static void *view_thread(void *arg)
{
    view *v = arg;
    view_engine *ve = v->ve;
    thread_set_name("v:", v->def->name);
    while (!atomic_load(&ve->stopping)) {
        payi_err err = {0};
        store *st = NULL;
        payi_code rc = ve->opt.dry_run ? PAYI_OK : store_open(&st, ve->store_url, STORE_RW, &err);
        if (rc == PAYI_OK)
            rc = view_run(v, st, &err);
        if (st)
            store_close(st);
        if (rc == PAYI_OK || atomic_load(&ve->stopping))
            break;
        view_failed(v, &err);
        for (int i = 0; i < RETRY_PAUSE_MS / 50 && !atomic_load(&ve->stopping); i++)
            pause_ms(50);
    }
    return NULL;
}

/* ------------------------------------------------------------ engine */

void view_options_default(view_options *o)
{
    memset(o, 0, sizeof *o);
    o->batch_events = 100000;
    o->max_keys = 100000;
    o->max_batch_bytes = (size_t)64 << 20;
    o->linger_ms = 0;
    o->change_ring = 10000;
    o->live = true;
}

static void view_destroy(view *v)
{
    if (!v->def)
        return;
    layout_free(&v->live, v->def);
    layout_free(&v->rebuild, v->def);
    for (uint32_t i = 0; v->ring && i < v->ring_cap; i++)
        free(v->ring[i].sse);
    free(v->ring);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->moved);
    view_def_free(v->def);
    v->def = NULL;
}

/* The engine refuses what it cannot maintain exactly. */
static payi_code view_supported(const view_def *d, const layout *L, payi_err *err)
{
    for (uint32_t k = 0; k < d->nkeys; k++)
        if (L->key_col[k] == NO_INDEX)
            return payi_err_set(err, PAYI_INTERNAL, NULL, "view %s: GROUP BY key %u is not a column", d->name, k);
    if (d->shape == VIEW_ROWS && L->pos_col == NO_INDEX)
        return payi_err_set(err, PAYI_INTERNAL, NULL, "view %s: a row view without its event_position column",
                            d->name);
    if (!d->delete_type)
        return PAYI_OK;
    for (uint32_t a = 0; a < d->naggs; a++)
        if (d->aggs[a].kind == VAGG_COUNT_DISTINCT)
            return payi_err_set(err, PAYI_VALIDATION, NULL,
                                "%s:%u:%u: view %s: count(DISTINCT) cannot be combined with DELETE ON", d->file,
                                d->line, d->col, d->name);
    return PAYI_OK;
}

payi_code view_engine_open(view_engine **out, payi_log *log, registry *reg, const payi_spec *spec,
                           const view_options *o, payi_err *err)
{
    *out = NULL;
    if (!o->store_url && !o->dry_run)
        return payi_err_set(err, PAYI_USAGE, NULL, "no read store given");
    view_engine *ve = xcalloc(1, sizeof *ve);
    ve->log = log;
    ve->reg = reg;
    ve->opt = *o;
    ve->store_url = xstrdup(o->store_url ? o->store_url : "");
    ve->opt.store_url = ve->store_url;
    if (!ve->opt.change_ring)
        ve->opt.change_ring = 1;
    pthread_mutex_init(&ve->pool_mu, NULL);
    pthread_mutex_init(&ve->notify_mu, NULL);
    pthread_mutex_init(&ve->write_mu, NULL);
    ve->serialize_writes = strncmp(ve->store_url, "sqlite:", 7) == 0;
    ve->views = xcalloc(spec->nviews + 1, sizeof *ve->views);
    payi_code rc = PAYI_OK;
    for (uint32_t i = 0; rc == PAYI_OK && i < spec->nviews; i++) {
        view *v = &ve->views[i];
        rc = view_def_compile(spec, i, &v->def, err);
        if (rc != PAYI_OK) {
            v->def = NULL;
            break;
        }
        ve->nviews++;
        v->ve = ve;
        v->index = i;
        pthread_mutex_init(&v->mu, NULL);
        pthread_cond_init(&v->moved, NULL);
        layout_build(&v->live, v->def, v->def->name);
        buf rn = {0};
        buf_printf(&rn, "%s__rebuild", v->def->name);
        layout_build(&v->rebuild, v->def, rn.data);
        buf_release(&rn);
        v->ring_cap = ve->opt.change_ring;
        v->ring = xcalloc(v->ring_cap, sizeof *v->ring);
        rc = view_supported(v->def, &v->live, err);
    }
    /* The store must open before anything is started: a wrong URL is a
     * start-up error, not a view that retries forever. */
    if (rc == PAYI_OK && !ve->opt.dry_run) {
        store *st;
        rc = store_open(&st, ve->store_url, STORE_RW, err);
        if (rc == PAYI_OK)
            store_close(st);
    }
    if (rc != PAYI_OK) {
        view_engine_close(ve);
        return rc;
    }
    for (uint32_t i = 0; ve->opt.live && i < ve->nviews; i++) {
        view *v = &ve->views[i];
        if (pthread_create(&v->thread, NULL, view_thread, v) != 0) {
            rc = payi_err_sys(err, PAYI_INTERNAL, errno, "cannot start the thread of view %s", v->def->name);
            view_engine_close(ve);
            return rc;
        }
        v->started = true;
    }
    *out = ve;
    return PAYI_OK;
}

void view_engine_close(view_engine *ve)
{
    if (!ve)
        return;
    atomic_store(&ve->stopping, true);
    for (uint32_t i = 0; i < ve->nviews; i++)
        if (ve->views[i].started)
            pthread_join(ve->views[i].thread, NULL);
    for (uint32_t i = 0; i < ve->nviews; i++) {
        pthread_mutex_lock(&ve->views[i].mu);
        pthread_cond_broadcast(&ve->views[i].moved);
        pthread_mutex_unlock(&ve->views[i].mu);
        view_destroy(&ve->views[i]);
    }
    for (uint32_t i = 0; i < ve->npool; i++)
        store_close(ve->pool[i]);
    pthread_mutex_destroy(&ve->pool_mu);
    pthread_mutex_destroy(&ve->notify_mu);
    pthread_mutex_destroy(&ve->write_mu);
    free(ve->views);
    free(ve->store_url);
    free(ve);
}

void view_engine_set_notify(view_engine *ve, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&ve->notify_mu);
    ve->notify = fn;
    ve->notify_ctx = ctx;
    pthread_mutex_unlock(&ve->notify_mu);
}

payi_code view_engine_check(const payi_spec *spec, payi_err *err)
{
    for (uint32_t i = 0; i < spec->nviews; i++) {
        view_def *d;
        payi_code rc = view_def_compile(spec, i, &d, err);
        if (rc != PAYI_OK)
            return rc;
        layout L;
        layout_build(&L, d, d->name);
        rc = view_supported(d, &L, err);
        layout_free(&L, d);
        view_def_free(d);
        if (rc != PAYI_OK)
            return rc;
    }
    return PAYI_OK;
}

int view_engine_find(view_engine *ve, const char *name, size_t len)
{
    for (uint32_t i = 0; ve && i < ve->nviews; i++)
        if (strlen(ve->views[i].def->name) == len && memcmp(ve->views[i].def->name, name, len) == 0)
            return (int)i;
    return -1;
}

uint32_t view_engine_count(view_engine *ve) { return ve ? ve->nviews : 0; }

const view_def *view_engine_def(view_engine *ve, uint32_t i) { return ve->views[i].def; }

void view_engine_status(view_engine *ve, uint32_t i, view_status *out)
{
    view *v = &ve->views[i];
    pthread_mutex_lock(&v->mu);
    *out = v->status;
    pthread_mutex_unlock(&v->mu);
}

payi_code view_engine_wait(view_engine *ve, uint32_t i, uint64_t min_position, int timeout_ms, payi_err *err)
{
    view *v = &ve->views[i];
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&v->mu);
    int w = 0;
    while (v->status.position < min_position && w == 0 && !atomic_load(&ve->stopping))
        w = pthread_cond_timedwait(&v->moved, &v->mu, &dl);
    uint64_t at = v->status.position;
    pthread_mutex_unlock(&v->mu);
    if (at >= min_position)
        return PAYI_OK;
    return payi_err_set(err, PAYI_TIMEOUT, "min_position",
                        "view %s has applied the events below position %" PRIu64
                        ", not yet %" PRIu64 " (waited %d ms)",
                        v->def->name, at, min_position, timeout_ms);
}

/* ------------------------------------------------------------ reads */

static payi_code pool_get(view_engine *ve, store **out, payi_err *err)
{
    pthread_mutex_lock(&ve->pool_mu);
    store *st = ve->npool ? ve->pool[--ve->npool] : NULL;
    pthread_mutex_unlock(&ve->pool_mu);
    if (st) {
        *out = st;
        return PAYI_OK;
    }
    return store_open(out, ve->store_url, STORE_RO, err);
}

static void pool_put(view_engine *ve, store *st)
{
    pthread_mutex_lock(&ve->pool_mu);
    if (ve->npool < RO_POOL_MAX) {
        ve->pool[ve->npool++] = st;
        st = NULL;
    }
    pthread_mutex_unlock(&ve->pool_mu);
    if (st)
        store_close(st);
}

/* A query parameter's text as a value of the column's type. */
static payi_code param_value(const char *col, expr_type t, const char *s, expr_value *out, payi_err *err)
{
    size_t len = strlen(s);
    char *end;
    errno = 0;
    switch (t) {
    case EXPR_BIGINT: {
        long long x = strtoll(s, &end, 10);
        if (!len || *end || errno)
            break;
        *out = expr_int(x);
        return PAYI_OK;
    }
    case EXPR_DOUBLE: {
        double x = strtod(s, &end);
        if (!len || *end || errno || !isfinite(x))
            break;
        *out = expr_double(x);
        return PAYI_OK;
    }
    case EXPR_BOOL:
        if (strcmp(s, "true") && strcmp(s, "false"))
            break;
        *out = expr_bool(s[0] == 't');
        return PAYI_OK;
    case EXPR_DATE: {
        int64_t d;
        if (!expr_parse_date(s, len, &d))
            break;
        *out = expr_date(d);
        return PAYI_OK;
    }
    case EXPR_TIMESTAMPTZ: {
        int64_t us;
        if (!expr_parse_timestamptz(s, len, &us))
            break;
        *out = expr_ts(us);
        return PAYI_OK;
    }
    case EXPR_JSONB:
        *out = expr_jsonb(s, len);
        return PAYI_OK;
    default:
        *out = expr_text(s, len);
        return PAYI_OK;
    }
    return payi_err_set(err, PAYI_VALIDATION, col, "filter %s=%s: not a valid %s", col, s, expr_type_name(t));
}

static int col_index(const view_def *d, const char *name, size_t len)
{
    for (uint32_t c = 0; c < d->ncols; c++)
        if (strlen(d->cols[c].name) == len && memcmp(d->cols[c].name, name, len) == 0)
            return (int)c;
    return -1;
}

static void list_columns(const view_def *d, buf *out)
{
    for (uint32_t c = 0; c < d->ncols; c++)
        buf_printf(out, "%s%s", c ? ", " : "", d->cols[c].name);
}

static payi_code unknown_column(const view_def *d, const char *what, const char *name, payi_err *err)
{
    buf cols = {0};
    list_columns(d, &cols);
    payi_code rc = payi_err_set(err, PAYI_VALIDATION, name, "%s: view %s has no column \"%s\" (its columns: %s)",
                                what, d->name, name, cols.data ? cols.data : "");
    buf_release(&cols);
    return rc;
}

/* order=col[.desc],col2 -> store_order[] */
static payi_code parse_order(const view_def *d, const char *s, store_order *out, uint32_t *n, payi_err *err)
{
    *n = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        bool desc = false;
        size_t nl = len;
        if (len > 5 && memcmp(s + len - 5, ".desc", 5) == 0)
            desc = true, nl = len - 5;
        else if (len > 4 && memcmp(s + len - 4, ".asc", 4) == 0)
            nl = len - 4;
        int c = col_index(d, s, nl);
        if (c < 0) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(nl < 100 ? nl : 100), s);
            return unknown_column(d, "order", name, err);
        }
        if (*n == 16)
            return payi_err_set(err, PAYI_VALIDATION, "order", "order: at most 16 columns");
        out[(*n)++] = (store_order){.col = (uint32_t)c, .desc = desc};
        s += len;
        if (*s == ',')
            s++;
    }
    return PAYI_OK;
}

typedef struct query_out {
    const view_def *d;
    const layout *L;
    buf *out;
    expr_ctx ctx;
    uint64_t rows;
    int64_t limit;
    payi_err err;
    bool failed;
} query_out;

static int query_row(void *ctx, const expr_value *vals, uint32_t ncols)
{
    query_out *q = ctx;
    (void)ncols;
    if (q->d->having) {
        expr_value r;
        expr_ctx_reset(&q->ctx);
        if (expr_eval(q->d->having, vals, &q->ctx, &r, &q->err) != PAYI_OK) {
            q->failed = true;
            return 1;
        }
        if (r.null || !r.b)
            return 0;
    }
    if (q->rows)
        buf_putc(q->out, ',');
    put_row_json(q->out, q->L, q->d, vals);
    q->rows++;
    return q->limit >= 0 && (int64_t)q->rows >= q->limit;
}

payi_code view_engine_query(view_engine *ve, uint32_t i, const view_param *params, size_t nparams, buf *out,
                            payi_err *err)
{
    view *v = &ve->views[i];
    const view_def *d = v->def;
    store_filter filters[32];
    uint32_t nf = 0, norder = 0;
    store_order order[16];
    int64_t limit = d->limit;
    uint64_t min_position = 0;
    bool has_order = false;
    payi_code rc = PAYI_OK;
    for (size_t p = 0; rc == PAYI_OK && p < nparams; p++) {
        const char *k = params[p].key, *val = params[p].value;
        char *end;
        if (strcmp(k, "order") == 0) {
            rc = parse_order(d, val, order, &norder, err);
            has_order = true;
        } else if (strcmp(k, "limit") == 0 || strcmp(k, "min_position") == 0) {
            errno = 0;
            long long x = strtoll(val, &end, 10);
            if (!*val || *end || errno || x < 0)
                rc = payi_err_set(err, PAYI_VALIDATION, k, "%s must be a non-negative integer, not \"%s\"", k, val);
            else if (k[0] == 'l')
                limit = limit >= 0 && limit < x ? limit : x;
            else
                min_position = (uint64_t)x;
        } else {
            int c = col_index(d, k, strlen(k));
            if (c < 0)
                rc = unknown_column(d, "filter", k, err);
            else if (nf == 32)
                rc = payi_err_set(err, PAYI_VALIDATION, k, "at most 32 filters");
            else {
                filters[nf].col = (uint32_t)c;
                rc = param_value(k, d->cols[c].type, val, &filters[nf].value, err);
                nf++;
            }
        }
    }
    if (rc != PAYI_OK)
        return rc;
    if (!has_order)
        for (uint32_t o = 0; o < d->norder && o < 16; o++)
            order[norder++] = (store_order){.col = d->order[o].col, .desc = d->order[o].desc};
    if (min_position)
        rc = view_engine_wait(ve, i, min_position, QUERY_WAIT_MAX_MS, err);
    if (rc != PAYI_OK)
        return rc;
    view_status s;
    view_engine_status(ve, i, &s);
    if (s.position == 0 && s.rebuilding)
        return payi_err_set(err, PAYI_UNAVAILABLE, NULL,
                            "view %s is being rebuilt after its definition changed (%" PRIu64
                            " events folded so far); the old table stays readable with POST /sql",
                            d->name, s.rebuild_position);
    store *st;
    rc = pool_get(ve, &st, err);
    if (rc != PAYI_OK)
        return rc;
    query_out q = {.d = d, .L = &v->live, .limit = limit};
    buf rows = {0};
    q.out = &rows;
    expr_ctx_init(&q.ctx);
    rc = store_select(st, &v->live.t, filters, nf, order, norder, d->having ? -1 : limit, query_row, &q, err);
    if (rc == PAYI_OK && q.failed)
        rc = payi_err_set(err, q.err.code, NULL, "HAVING: %s", q.err.msg);
    expr_ctx_release(&q.ctx);
    pool_put(ve, st);
    if (rc == PAYI_OK) {
        buf_puts(out, "{\"view\":");
        json_put_string(out, d->name, strlen(d->name));
        buf_printf(out, ",\"position\":%" PRIu64 ",\"rows\":[", s.position);
        if (rows.len)
            buf_put(out, rows.data, rows.len);
        buf_puts(out, "]}");
    }
    buf_release(&rows);
    return rc;
}

payi_code view_engine_sql(view_engine *ve, const char *sql, size_t max_rows, buf *out, payi_err *err)
{
    store *st;
    payi_code rc = pool_get(ve, &st, err);
    if (rc != PAYI_OK)
        return rc;
    rc = store_sql_json(st, sql, max_rows ? max_rows : SQL_MAX_ROWS, 5000, out, err);
    pool_put(ve, st);
    return rc;
}

/* ------------------------------------------------------------ changes */

#define FILTER_MAX_COLS 8

struct view_change_filter {
    uint32_t n;
    char *col[FILTER_MAX_COLS];
    buf want[FILTER_MAX_COLS];   /* the value as the changes write it (JSON) */
    json_doc jd;
};

payi_code view_change_filter_make(view_engine *ve, uint32_t i, const view_param *params, size_t nparams,
                                  view_change_filter **out, payi_err *err)
{
    const view_def *d = ve->views[i].def;
    *out = NULL;
    if (!nparams)
        return PAYI_OK;
    view_change_filter *f = xcalloc(1, sizeof *f);
    payi_code rc = PAYI_OK;
    for (size_t p = 0; rc == PAYI_OK && p < nparams; p++) {
        const char *k = params[p].key;
        int c = col_index(d, k, strlen(k));
        expr_value v;
        if (c < 0)
            rc = unknown_column(d, "filter", k, err);
        else if (f->n == FILTER_MAX_COLS)
            rc = payi_err_set(err, PAYI_VALIDATION, k, "at most %d filters on changes", FILTER_MAX_COLS);
        else if ((rc = param_value(k, d->cols[c].type, params[p].value, &v, err)) == PAYI_OK) {
            f->col[f->n] = xstrdup(d->cols[c].name);
            schema_put_value_json(&f->want[f->n], &v);
            f->n++;
        }
    }
    if (rc != PAYI_OK) {
        view_change_filter_free(f);
        return rc;
    }
    *out = f;
    return PAYI_OK;
}

void view_change_filter_free(view_change_filter *f)
{
    if (!f)
        return;
    for (uint32_t k = 0; k < f->n; k++) {
        free(f->col[k]);
        buf_release(&f->want[k]);
    }
    json_doc_release(&f->jd);
    free(f);
}

/* Whether one change ("id: ..\nevent: ..\ndata: {...}\n\n") passes f.  The
 * row's values and f's are written by the same encoder, so equal values
 * are equal text. */
static bool change_passes(view_change_filter *f, const char *sse, size_t len)
{
    const char *data = memmem(sse, len, "\ndata: ", 7);
    if (!data)
        return true;
    data += 7;
    size_t dlen = (size_t)(sse + len - data);
    while (dlen && (data[dlen - 1] == '\n'))
        dlen--;
    json_error je;
    if (!json_parse(&f->jd, data, dlen, NULL, &je) || f->jd.nodes[0].kind != JSON_OBJECT)
        return true;
    for (uint32_t k = 0; k < f->n; k++) {
        uint32_t at = json_object_get(&f->jd, 0, f->col[k]);
        if (at == UINT32_MAX)
            continue;
        const json_node *nd = &f->jd.nodes[at];
        if (nd->len != f->want[k].len || memcmp(data + nd->start, f->want[k].data, nd->len) != 0)
            return false;
    }
    return true;
}

/* Keep, of the changes in b from byte `from` on, those f passes; returns
 * how many. */
static size_t keep_passing(view_change_filter *f, buf *b, size_t from)
{
    size_t kept = 0, w = from, r = from;
    while (r < b->len) {
        const char *end = memmem(b->data + r, b->len - r, "\n\n", 2);
        size_t len = end ? (size_t)(end - (b->data + r)) + 2 : b->len - r;
        if (change_passes(f, b->data + r, len)) {
            memmove(b->data + w, b->data + r, len);
            w += len;
            kept++;
        }
        r += len;
    }
    b->len = w;
    if (b->data)
        b->data[w] = '\0';
    return kept;
}

size_t view_engine_changes(view_engine *ve, uint32_t i, uint64_t *seq, size_t max_bytes,
                           view_change_filter *filter, buf *out)
{
    view *v = &ve->views[i];
    atomic_store_explicit(&v->watched, true, memory_order_relaxed);
    size_t n = 0;
    for (;;) {
        /* Copied under the lock, filtered after it: the view's thread
         * publishes under the same lock. */
        pthread_mutex_lock(&v->mu);
        uint64_t head = v->change_head;
        uint64_t oldest = head >= v->ring_cap ? head - v->ring_cap + 1 : 1;
        if (*seq + 1 < oldest) {
            buf_printf(out, "id: %" PRIu64 "\nevent: reset\ndata: {\"view\":", oldest - 1);
            json_put_string(out, v->def->name, strlen(v->def->name));
            buf_puts(out, ",\"reason\":\"this client fell behind the changes kept; read the view again\"}\n\n");
            *seq = oldest - 1;
            n++;
        }
        size_t from = out->len, copied = 0;
        while (*seq < head && out->len < max_bytes) {
            const change *c = &v->ring[(*seq + 1) % v->ring_cap];
            buf_put(out, c->sse, c->len);
            (*seq)++;
            copied++;
        }
        bool more = *seq < head;
        pthread_mutex_unlock(&v->mu);
        n += filter ? keep_passing(filter, out, from) : copied;
        if (out->len > from || !more)   /* something to send, or nothing left */
            return n;
    }
}

uint64_t view_engine_change_head(view_engine *ve, uint32_t i)
{
    view *v = &ve->views[i];
    atomic_store_explicit(&v->watched, true, memory_order_relaxed);
    pthread_mutex_lock(&v->mu);
    uint64_t h = v->change_head;
    pthread_mutex_unlock(&v->mu);
    return h;
}

/* ------------------------------------------------------------ replay */

payi_code view_engine_replay(view_engine *ve, const char *name, view_progress_fn progress, void *ctx,
                             payi_err *err)
{
    if (name && view_engine_find(ve, name, strlen(name)) < 0)
        return payi_err_set(err, PAYI_NOT_FOUND, "view", "no view named \"%s\" in the spec", name);
    store *st = NULL;
    payi_code rc = store_open(&st, ve->store_url, STORE_RW, err);
    for (uint32_t i = 0; rc == PAYI_OK && i < ve->nviews; i++) {
        view *v = &ve->views[i];
        if (name && strcmp(v->def->name, name) != 0)
            continue;
        uint64_t reached;
        rc = rebuild_view(v, st, progress, ctx, &reached, err);
    }
    if (st)
        store_close(st);
    return rc;
}
