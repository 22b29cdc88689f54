/* spec.h — the application spec: one file that declares a whole backend.
 *
 *   -- event types: typed fields, NOT NULL, DEFAULT, CHECK
 *   CREATE EVENT CasesReported (country text NOT NULL, day date NOT NULL,
 *     cumulative bigint NOT NULL, new_cases bigint NOT NULL DEFAULT 0);
 *
 *   -- aggregate: its state, the stream of a command or event (an expression
 *   -- over its fields), and how each event type changes the state
 *   CREATE AGGREGATE country_tally (cases bigint DEFAULT 0, last_day date)
 *     STREAM 'country-' || country
 *     ON CasesReported SET cases = cumulative, last_day = day;
 *
 *   -- command: typed fields, CHECK, the aggregate it acts on, rules that
 *   -- reject, events it emits (conditionally with IF), fields computed from
 *   -- the command and the state (state.<field>)
 *   CREATE COMMAND ReportCumulative (country text NOT NULL, day date NOT NULL,
 *     cases bigint NOT NULL CHECK (cases >= 0)) FOR country_tally
 *     REJECT IF day <= state.last_day MESSAGE 'day already reported'
 *     EMIT CasesReported (country, day, cases AS cumulative, cases - state.cases AS new_cases);
 *
 *   -- custom logic: a Lua function decide(state, cmd) (command/luafn.h)
 *   CREATE COMMAND Correct (...) FOR country_tally LANGUAGE lua AS $$ ... $$;
 *
 *   -- a command with no state: STREAM instead of FOR
 *   CREATE COMMAND Note (country text NOT NULL, body text) STREAM 'notes-' || country EMIT ...;
 *
 *   -- a view: PostgreSQL's SELECT, kept as text and compiled by view/viewdef.h
 *   CREATE VIEW name [DELETE ON Event] AS SELECT ...;
 *
 *   -- a generator: derived events from a daily series per key, computed by
 *   -- a kind of generator (gen/generator.h) with numeric parameters
 *   CREATE GENERATOR rt USING rt_cori FROM CasesReported, CasesCorrected
 *     KEY country DAY day VALUE new_cases
 *     WITH (si_mean = 4.7, si_sd = 2.9) EMIT RtEstimated;
 *
 * Lexical rules are PostgreSQL's: -- and block comments, 'strings' with ''
 * for a quote, "quoted identifiers", $$dollar$$ or $tag$quoting$tag$.
 * Unquoted field names fold to lower case (as in expressions); names of
 * event types, aggregates, commands and views keep their case, since they
 * appear in URLs and in events.  Keywords are case-insensitive.
 *
 * Expressions are PostgreSQL scalar expressions (spec/expr.h).  Where an
 * expression ends is found at parenthesis depth 0: at ',' ')' ';' or at the
 * keyword that may follow it (DEFAULT ends at NOT, NULL, CHECK, DEFAULT;
 * STREAM at ON, REJECT, EMIT, LANGUAGE; SET values at ON; REJECT IF at
 * MESSAGE, REJECT, EMIT; an EMIT field at AS; EMIT ... IF at REJECT, EMIT).  Parenthesize
 * an expression that needs one of these words at its top level.
 *
 * Every mistake is reported as "file:line:col: message", line and col
 * 1-based (col counts bytes), pointing into the expression when the
 * expression is at fault.  Checked at load: names unique per kind; every
 * referenced event, aggregate, field and column exists; types of SET and
 * EMIT values fit their fields; each EMIT gives every NOT NULL field that has
 * no DEFAULT; STREAM is text.  Lua sources are compiled by the command module
 * (which depends on this one), and report file:line the same way.
 *
 * Ownership: a payi_spec owns everything it points to; spec_free frees it.
 */
#ifndef PAYI_SPEC_H
#define PAYI_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "spec/expr.h"
#include "spec/schema.h"

/* state.<field> = value, evaluated over [event fields..., state fields...] */
typedef struct spec_set {
    uint32_t field;        /* state field index */
    expr *value;
} spec_set;

/* ON <event> SET ... of an aggregate. */
typedef struct spec_on {
    uint32_t event;        /* index into spec->events */
    spec_set *sets;
    uint32_t nsets;
} spec_on;

typedef struct spec_aggregate {
    char *name;
    ev_schema *state;      /* state fields with their DEFAULT (initial) values */
    char *stream_sql;      /* the STREAM expression as written */
    uint32_t stream_off;   /* its byte offset in the spec file */
    spec_on *ons;
    uint32_t nons;
} spec_aggregate;

/* EMIT <event> (values) [IF cond], evaluated over [command fields..., state fields...] */
typedef struct spec_emit {
    uint32_t event;        /* index into spec->events */
    expr **values;         /* one per event field; NULL: the field's DEFAULT, else NULL */
    expr *cond;            /* NULL: always */
} spec_emit;

typedef struct spec_reject {
    expr *cond;
    char *message;
} spec_reject;

typedef struct spec_command {
    char *name;
    ev_schema *fields;     /* the command's fields: types, NOT NULL, DEFAULT, CHECK */
    int32_t aggregate;     /* index into spec->aggregates, -1 for a stateless command */
    expr *stream;          /* over the command fields (slots [0, nfields)) */
    expr_column *cols;     /* command fields then "state.<f>" for every state field */
    uint32_t ncols;
    spec_reject *rejects;
    uint32_t nrejects;
    spec_emit *emits;
    uint32_t nemits;
    char *lua;             /* LANGUAGE lua body, or NULL */
    size_t lua_len;
    uint32_t lua_line;     /* the file line of the body's first byte */
} spec_command;

typedef struct spec_view {
    char *name;
    char *sql;             /* the text after AS */
    uint32_t line, col;    /* of the text after AS */
    char *delete_type;     /* DELETE ON <event type> (case kept), or NULL; the view module checks it */
    uint32_t delete_line, delete_col;   /* of the type's name */
} spec_view;

/* CREATE GENERATOR: derived events computed by a kind of generator
 * (gen/generator.h) from a daily series per key. */
typedef struct spec_gen_input {
    uint32_t event;        /* FROM: index into spec->events */
    expr *key;             /* KEY (text), DAY (date), VALUE (bigint or double), over the event's fields */
    expr *day;
    expr *value;
} spec_gen_input;

typedef struct spec_gen_param {
    char *name;            /* folded to lower case */
    double value;
    uint32_t line, col;    /* of the name */
} spec_gen_param;

typedef struct spec_generator {
    char *name;
    char *kind;            /* USING <kind>, folded; checked by the generator module */
    uint32_t kind_line, kind_col;
    char *key_name;        /* the KEY's column name when KEY is a plain column, else "key" */
    spec_gen_input *inputs;
    uint32_t ninputs;
    spec_gen_param *params;
    uint32_t nparams;
    uint32_t emit;         /* EMIT: index into spec->events */
    uint32_t emit_line, emit_col;
    uint32_t line, col;    /* of the name */
} spec_generator;

typedef struct payi_spec {
    char *file;            /* as given, for messages */
    ev_schema **events;
    uint32_t nevents;
    spec_aggregate *aggregates;
    uint32_t naggregates;
    spec_command *commands;
    uint32_t ncommands;
    spec_view *views;
    uint32_t nviews;
    spec_generator *generators;
    uint32_t ngenerators;
} payi_spec;

/* Read and compile the spec in path.  PAYI_VALIDATION "path:line:col: ..."
 * for mistakes in it, PAYI_IO when it cannot be read. */
payi_code spec_load(const char *path, payi_spec **out, payi_err *err);
/* The same from text in memory; file names it in messages. */
payi_code spec_parse(const char *file, const char *text, size_t len, payi_spec **out, payi_err *err);
void spec_free(payi_spec *spec);

int spec_find_event(const payi_spec *spec, const char *name, size_t len);      /* index or -1 */
int spec_find_command(const payi_spec *spec, const char *name, size_t len);
int spec_find_aggregate(const payi_spec *spec, const char *name, size_t len);
/* The ON clause of aggregate a for event type ev, or NULL when ev does not change its state. */
const spec_on *spec_aggregate_on(const spec_aggregate *a, uint32_t ev);

/* Fold one event (its fields in ev_slots) into state (nstate slots): every
 * SET value is computed from the old state, then all are assigned, as in an
 * SQL UPDATE.  Text results live in ctx's arena: the caller copies what it
 * keeps beyond expr_ctx_reset. */
payi_code spec_fold(const spec_aggregate *a, const spec_on *on, const ev_schema *event, const expr_value *ev_slots,
                    expr_value *state, expr_ctx *ctx, payi_err *err);

#endif
