/* viewdef.h — a view definition: `CREATE VIEW name AS SELECT ...` parsed
 * with libpg_query and compiled into the plan the view engine folds events
 * with.
 *
 * Accepted (PostgreSQL syntax):
 *
 *   CREATE VIEW name [DELETE ON EventType] AS
 *     SELECT item, ... FROM source [WHERE cond]
 *     [GROUP BY expr, ...] [HAVING cond] [ORDER BY col [ASC|DESC], ...] [LIMIT n]
 *
 *   source  an event type, declared in the spec or not; or `events`, every
 *           event (narrowed by `WHERE event_type = '...'` / `IN (...)`:
 *           the type filter is found in the WHERE's top-level AND and the
 *           engine skips other types without evaluating anything).
 *   columns the event's attributes event_position (bigint), event_stream
 *           (text), event_version (bigint), event_time (timestamptz),
 *           event_type (text); then the fields of its data.  A field of a
 *           declared type has its declared type; a field of an undeclared
 *           type is jsonb (cast it: `cases::bigint`); a field missing from
 *           an event is NULL.  With `FROM events` the fields are those of
 *           every declared type (the same name must have the same type in
 *           all of them) and any other name is a jsonb field of untyped
 *           events.
 *   items   a GROUP BY expression (repeated as written, or referred to by
 *           output name/ordinal in GROUP BY), or one aggregate call:
 *           count(*), count(x), count(DISTINCT x), sum(x), min(x), max(x),
 *           avg(x), latest(x), earliest(x) (the value of the event with the
 *           highest / lowest position), each with an optional
 *           FILTER (WHERE cond).  `AS name` names the column; unnamed
 *           columns take PostgreSQL's names (the column or function name),
 *           and two columns may not share a name.
 *   shape   GROUP BY or any aggregate: one row per group (no GROUP BY: one
 *           row); every GROUP BY expression must also be selected, since
 *           the rows are keyed by them.  No aggregate and no GROUP BY: one
 *           row per matching event, keyed by its position: the column named
 *           event_position (which must then be the attribute itself) is
 *           the key, added as the last, hidden column when the SELECT has
 *           none (position_col says which).
 *   DELETE ON T  (grouped views only) an event of type T removes the row of
 *           its group: the GROUP BY expressions are evaluated over T's
 *           fields, which must therefore have them, with the same types
 *           (an undeclared T has jsonb fields: cast, or declare T)
 *           (entity views: the current state of each key with latest(...)).
 *   HAVING, ORDER BY, LIMIT  apply when the view is read (GET /views); the
 *           stored table holds every group.  HAVING and ORDER BY see the
 *           output columns by name; an aggregate call or key expression
 *           written as in the SELECT stands for its column (`HAVING
 *           count(*) > 1` when count(*) is selected; an aggregate that is no
 *           column is refused).  ORDER BY also takes positions; no NULLS
 *           FIRST/LAST.  LIMIT is a constant (LIMIT ALL: none).
 *
 * Refused at load time, with "file:line:col: message" naming the construct:
 * joins, several FROM items, subqueries, CTEs, UNION/INTERSECT/EXCEPT,
 * window functions, DISTINCT / DISTINCT ON, aggregates in WHERE or GROUP BY,
 * nested aggregates, expressions over aggregates (select the aggregates and
 * combine them when reading), ORDER BY inside aggregates, GROUPING SETS /
 * ROLLUP / CUBE, OFFSET, FOR UPDATE, non-grouped columns beside aggregates,
 * and anything expr.h refuses (unknown functions, volatile functions, type
 * errors).
 */
#ifndef PAYI_VIEWDEF_H
#define PAYI_VIEWDEF_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "spec/expr.h"
#include "spec/schema.h"
#include "spec/spec.h"

/* The event attributes are always scope columns 0..4, in this order. */
enum {
    VIEW_ATTR_POSITION, VIEW_ATTR_STREAM, VIEW_ATTR_VERSION, VIEW_ATTR_TIME, VIEW_ATTR_TYPE,
    VIEW_NATTRS
};

typedef enum view_agg_kind {
    VAGG_COUNT_STAR = 1, VAGG_COUNT, VAGG_COUNT_DISTINCT, VAGG_SUM, VAGG_MIN, VAGG_MAX, VAGG_AVG,
    VAGG_LATEST, VAGG_EARLIEST,
} view_agg_kind;

typedef struct view_agg {
    view_agg_kind kind;
    expr *arg;             /* over the source scope; NULL for count(*) */
    expr *filter;          /* FILTER (WHERE ...), or NULL */
    expr_type arg_type;    /* arg's type (count(*): EXPR_BIGINT) */
    expr_type type;        /* result: count -> bigint; sum(bigint) -> bigint, sum(double) -> double;
                              avg -> double; min/max/latest/earliest -> arg_type */
} view_agg;

typedef enum view_shape {
    VIEW_GROUPED = 1,      /* one row per group: keys + aggregates */
    VIEW_ROWS,             /* one row per matching event: values, keyed by event_position */
} view_shape;

typedef enum view_col_role {
    VCOL_KEY = 1,          /* index: into keys */
    VCOL_AGG,              /* index: into aggs */
    VCOL_VALUE,            /* index: into values (VIEW_ROWS) */
} view_col_role;

typedef struct view_col {
    char *name;            /* output name, folded like PostgreSQL (lower case unless quoted) */
    expr_type type;
    view_col_role role;
    uint32_t index;
    bool hidden;           /* added by payi (VIEW_ROWS' event_position), not in the SELECT */
} view_col;

/* Where scope column i (i >= VIEW_NATTRS) comes from. */
typedef struct view_field {
    char *name;            /* the data field's name */
    expr_type type;        /* declared type; EXPR_JSONB for untyped fields */
    bool declared;         /* a field of at least one declared source type */
} view_field;

typedef struct view_order {
    uint32_t col;          /* index into cols */
    bool desc;
} view_order;

typedef struct view_def {
    char *name;
    char *sql;             /* the SELECT as written */
    char *file;            /* the spec file, for messages */
    uint32_t line, col;    /* of sql's first byte in the file */
    uint64_t hash;         /* FNV-1a 64 of the normalized definition (parse tree without
                              locations) and of the schemas of the declared types it reads:
                              a changed hash means the stored table must be rebuilt */

    /* Source.  types[] lists the event types read; ntypes == 0 means every
     * type (FROM events without a type filter). */
    char **types;
    uint32_t ntypes;
    bool from_events;      /* FROM events */

    /* Scope of every expression below except having: VIEW_NATTRS attribute
     * columns then one column per field used (fields[i - VIEW_NATTRS]). */
    expr_column *scope;
    uint32_t nscope;
    view_field *fields;
    uint32_t nfields;

    view_shape shape;
    expr *where;           /* or NULL; the type filter stays in it too (harmless) */
    expr **keys;           /* GROUP BY, in order */
    uint32_t nkeys;
    view_agg *aggs;
    uint32_t naggs;
    expr **values;         /* VIEW_ROWS: the projected expressions */
    uint32_t nvalues;

    view_col *cols;        /* output columns: SELECT order, then hidden ones */
    uint32_t ncols;
    uint32_t position_col; /* VIEW_ROWS: the column holding event_position (the row key);
                              UINT32_MAX for VIEW_GROUPED */

    /* Read-time clauses.  having's scope is cols (slot i = output column i). */
    expr *having;
    view_order *order;
    uint32_t norder;
    int64_t limit;         /* -1: none */

    /* DELETE ON: events of delete_type remove their group's row.
     * delete_keys are the GROUP BY expressions compiled over delete_scope
     * (attributes then delete_fields, as above). */
    char *delete_type;
    expr **delete_keys;
    expr_column *delete_scope;
    uint32_t ndelete_scope;
    view_field *delete_fields;
    uint32_t ndelete_fields;
} view_def;

/* Compile spec->views[i].  Mistakes: PAYI_VALIDATION with
 * "file:line:col: message" (the position of the construct at fault in the
 * spec file). */
payi_code view_def_compile(const payi_spec *spec, uint32_t i, view_def **out, payi_err *err);
/* The same for a definition outside a spec file ("CREATE VIEW ..." text
 * reduced to name and SELECT), positions reported relative to file/line/col. */
payi_code view_def_compile_sql(const payi_spec *spec, const char *name, const char *delete_type,
                               const char *sql, const char *file, uint32_t line, uint32_t col,
                               view_def **out, payi_err *err);
void view_def_free(view_def *v);

/* True when type (type_len bytes) is one the view reads (for DELETE ON see
 * view_def_deletes). */
bool view_def_reads(const view_def *v, const char *type, uint32_t type_len);
bool view_def_deletes(const view_def *v, const char *type, uint32_t type_len);

#endif
