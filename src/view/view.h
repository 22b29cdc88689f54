/* view.h — the view engine: keeps the spec's views up to date in the read
 * store, from the log, live; rebuilds them by replay; answers reads.
 *
 *   view_engine *ve;
 *   view_options o; view_options_default(&o);
 *   o.store_url = "sqlite:payi-data/views.db";
 *   view_engine_open(&ve, log, reg, spec, &o, &err);   // compiles, starts one thread per view
 *   ...
 *   view_engine_close(ve);
 *
 * The same fold serves batch and live: a view's thread reads the log from
 * its checkpoint through a subscription (history, then live, one
 * interface), so replaying years of events and following new ones run the
 * same code.  See view.c for the design (micro-batches, deltas, exactly
 * once, rebuilds).
 */
#ifndef PAYI_VIEW_H
#define PAYI_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "event/registry.h"
#include "log/log.h"
#include "spec/spec.h"
#include "view/viewdef.h"

typedef struct view_engine view_engine;

typedef struct view_options {
    const char *store_url;     /* "sqlite:PATH" or "postgresql://..." (required) */
    uint32_t batch_events;     /* most events folded per store transaction (default 100,000) */
    uint32_t max_keys;         /* most groups held in memory per view before a flush (default 100,000) */
    size_t max_batch_bytes;    /* most bytes of copied text per batch (default 64 MiB) */
    int linger_ms;             /* how long a batch waits for more events once the log is drained (default 0) */
    uint32_t change_ring;      /* changed rows kept per view for /changes (default 10,000) */
    bool live;                 /* start the views' threads (false: open for replay / reads only) */
    bool dry_run;              /* benchmarks: fold from position 0 and write nothing (no store is
                                  opened; reads fail): the cost of folding alone */
} view_options;

void view_options_default(view_options *o);

/* Compile every view of spec (mistakes: "file:line:col: message"), open the
 * store, create missing tables, and (o->live) start maintaining them.  A
 * view whose stored definition hash differs from the spec's is rebuilt into
 * a new table while the old one stays readable in the store, then swapped
 * in. */
payi_code view_engine_open(view_engine **out, payi_log *log, registry *reg, const payi_spec *spec,
                           const view_options *o, payi_err *err);
void view_engine_close(view_engine *ve);

/* fn(ctx) is called (from a view's thread) after a commit published
 * changes; NULL detaches it.  Returns once no call is running. */
void view_engine_set_notify(view_engine *ve, void (*fn)(void *ctx), void *ctx);

/* Compile the spec's views and forget them: their mistakes
 * ("file:line:col: message"), before anything is opened. */
payi_code view_engine_check(const payi_spec *spec, payi_err *err);

/* The view named name, or -1. */
int view_engine_find(view_engine *ve, const char *name, size_t len);
uint32_t view_engine_count(view_engine *ve);
const view_def *view_engine_def(view_engine *ve, uint32_t view);

/* A view's state, for /health, /metrics and GET /views. */
typedef struct view_status {
    uint64_t position;         /* every event below it is applied */
    uint64_t events_folded;    /* since start */
    uint64_t events_skipped;   /* events whose expressions failed: not counted, see last_error */
    uint64_t batches;
    uint64_t rows_written;
    bool rebuilding;           /* building a new table after a definition change */
    uint64_t rebuild_position; /* how far that build is */
    bool failed;               /* stopped on a store error: see last_error */
    char last_error[600];
} view_status;
void view_engine_status(view_engine *ve, uint32_t view, view_status *out);

/* Wait until the view has applied every event below min_position (read
 * your writes), at most timeout_ms.  PAYI_TIMEOUT names how far it got. */
payi_code view_engine_wait(view_engine *ve, uint32_t view, uint64_t min_position, int timeout_ms, payi_err *err);

/* GET /views/{name}: query is the URL's decoded parameters (pairs); every
 * parameter other than order, limit and min_position is an equality filter
 * on the column of that name, its value converted to the column's type.
 * Answers {"view":name,"position":P,"rows":[{col:value,...},...]}.
 * order: "col" or "col.desc", comma-separated; limit: a non-negative
 * integer (the view's LIMIT is the default and the most). */
typedef struct view_param {
    const char *key;
    const char *value;
} view_param;
payi_code view_engine_query(view_engine *ve, uint32_t view, const view_param *params, size_t nparams,
                            buf *out, payi_err *err);

/* Read-only SQL on the store: {"columns":[...],"rows":[[...]],"truncated":b}. */
payi_code view_engine_sql(view_engine *ve, const char *sql, size_t max_rows, buf *out, payi_err *err);

/* Changes: the rows a view's commits changed, in commit order, numbered
 * from 1.  view_engine_changes appends to out every change after *seq as
 * one SSE event each ("id: SEQ\nevent: row|delete\ndata: {...}\n\n"), at
 * most max_bytes (those that pass filter), and moves *seq on (a new client starts from
 * view_engine_change_head: from now on); a client that fell further behind
 * than the ring gets one "event: reset"
 * (re-read the view) and goes on from the oldest kept.  Returns the
 * number of changes written. */
typedef struct view_change_filter view_change_filter;
size_t view_engine_changes(view_engine *ve, uint32_t view, uint64_t *seq, size_t max_bytes,
                           view_change_filter *filter, buf *out);
/* A filter on the changes (filter may be NULL: every change): equality on
 * columns (?col=value, typed as in view_engine_query).  A change passes
 * when each filtered column it carries has the value; a delete that does
 * not carry the column (it is not a key) passes.  The changes skipped
 * still move *seq.  A filter is used by one thread at a time. */
payi_code view_change_filter_make(view_engine *ve, uint32_t view, const view_param *params, size_t nparams,
                                  view_change_filter **out, payi_err *err);
void view_change_filter_free(view_change_filter *f);   /* NULL is fine */
/* The newest change's number (0: none yet). */
uint64_t view_engine_change_head(view_engine *ve, uint32_t view);

/* Rebuild one view (or every view when name is NULL) from position 0 into
 * a new table and swap it in, while the old table keeps serving; for
 * `payi replay` beside or without a running server.  progress(ctx, view,
 * done, total) is called now and then. */
typedef void (*view_progress_fn)(void *ctx, const char *view, uint64_t done, uint64_t total);
payi_code view_engine_replay(view_engine *ve, const char *name, view_progress_fn progress, void *ctx,
                             payi_err *err);

#endif
