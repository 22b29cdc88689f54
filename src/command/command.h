/* command.h — commands: validate, decide against the state of their stream,
 * append what they emit.
 *
 * One command, from JSON to durable events:
 *   1. decode   the body against the command's fields (types, NOT NULL,
 *               DEFAULT, CHECK): errors are 400 validation naming the field;
 *   2. stream   evaluate the aggregate's STREAM over the command's fields;
 *   3. state    from the bounded cache of folded states, rebuilt from the
 *               stream's events on a miss (events of types the aggregate has
 *               no ON for are skipped);
 *   4. decide   REJECT IF rules in order (422 rejected, the rule's MESSAGE),
 *               then each EMIT whose IF holds, fields computed from the
 *               command and the state; or the Lua handler;
 *   5. append   the events, typed, with the state's version as the expected
 *               version, so that a stream never moves under a decision.
 *
 * Concurrency.  Steps 3-5 run under the stream's cache entry lock, and the
 * entry's state moves on to include the events just submitted before the
 * append is durable: the next command on that stream decides against it and
 * expects that version, so commands on a hot stream pipeline through one
 * group commit instead of conflicting.  The log checks every expected version
 * in submission order, which is decision order.  If an append fails, the
 * entry is dropped (its state included events that never were), and any
 * command decided on top of it fails its version check: on a conflict the
 * command re-reads the stream and decides again, at most max_retries times.
 *
 * Idempotency-Key: the first answer to a key (per command name) is kept in a
 * bounded in-memory table and returned for a retry with the same body; a
 * different body is refused; a retry while the first is still running gets
 * 409.  The events of a keyed command carry ids derived from the key, so a
 * retry after a restart that decides the same events appends nothing new
 * (the log's id deduplication) — but the kept answers themselves do not
 * survive a restart.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef PAYI_COMMAND_H
#define PAYI_COMMAND_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "command/luafn.h"
#include "event/registry.h"
#include "log/log.h"
#include "spec/spec.h"

typedef struct cmd_engine cmd_engine;

typedef struct cmd_options {
    uint32_t cache_entries;      /* folded states kept (default 100,000) */
    uint32_t max_retries;        /* re-decisions after a version conflict (default 8) */
    uint32_t idempotency_keys;   /* answers kept for Idempotency-Key (default 100,000) */
    luafn_limits lua;
} cmd_options;

void cmd_options_default(cmd_options *o);

/* The engine borrows log, spec and reg (whose schemas must be registered
 * already: the events of the spec carry their ids).  Compiles the Lua
 * handlers once to report their mistakes ("file:line: ..."). */
payi_code cmd_open(cmd_engine **out, payi_log *log, const payi_spec *spec, const registry *reg,
                   const cmd_options *o, payi_err *err);
void cmd_close(cmd_engine *e);
/* Compile the spec's Lua handlers and forget them: their mistakes
 * ("file:line: message"), before anything is opened. */
payi_code cmd_check_lua(const payi_spec *spec, const luafn_limits *lim, payi_err *err);

/* One command.  On success *status is 201 (events appended) or 200 (no
 * event emitted) and answer holds
 *   {"position":P,"stream":S,"version":V,"events":[event...]}
 * (position: the last event's, null when none; version: the stream's after
 * the command).  On failure the code and err say why (err->field names the
 * field at fault).  key may be NULL.  answer is appended to. */
payi_code cmd_execute(cmd_engine *e, const char *name, size_t name_len, const char *body, size_t body_len,
                      const char *key, size_t key_len, int *status, buf *answer, payi_err *err);

/* The same without a waiting thread.  When the command must wait for its
 * append, cmd_start returns PAYI_OK with *pending set (and nothing in the
 * outputs): wake(ctx) will be called once, from the log's writer thread,
 * after which the caller calls cmd_resume(*pending, ...) from any thread,
 * which answers like cmd_execute.  A retry after a version conflict (rare:
 * only after a failed append or a raw append to the stream) waits inside
 * cmd_resume.  body must stay valid until the answer. */
typedef struct cmd_call cmd_call;
typedef void (*cmd_wake_fn)(void *ctx);
payi_code cmd_start(cmd_engine *e, const char *name, size_t name_len, const char *body, size_t body_len,
                    const char *key, size_t key_len, cmd_wake_fn wake, void *ctx, cmd_call **pending, int *status,
                    buf *answer, payi_err *err);
payi_code cmd_resume(cmd_call *call, int *status, buf *answer, payi_err *err);

/* A batch: NDJSON, one command per line (the command's fields).  Lines
 * are decided in order and their appends submitted together (one group
 * commit); out gets one line per non-blank input line, in order: an ack
 * {"position","stream","version","events":N} (the events themselves are
 * left out: a batch's answer would otherwise repeat its whole input), or
 * {"error":{"code","message","field"?,"line":N}}.  Returns the number of
 * lines that failed. */
size_t cmd_execute_ndjson(cmd_engine *e, const char *name, size_t name_len, const char *body, size_t body_len,
                          buf *out);

/* A decision without a log or an engine: steps 1, 2 and 4 of one command
 * against a given state, for dry runs, tools and tests.  Nothing is
 * appended, no cache or key is touched.  What the caller gets back is what
 * cmd_execute would have appended: the decoded command, its stream, the
 * events (typed records, each validated against its event type; the schema
 * id in them is the spec's, SCHEMA_NO_ID when not registered) and the state
 * after them.  A Lua command compiles the spec's handlers for the call: this
 * is a slow path, not one to serve with. */
typedef struct cmd_decided_event {
    uint32_t event;                /* index into spec->events */
    size_t off, len;               /* its typed record in cmd_decision.data */
} cmd_decided_event;

typedef struct cmd_decision {
    buf command;                   /* the command's fields as a typed record of its schema */
    buf stream;                    /* the stream the events go to */
    cmd_decided_event *events;
    uint32_t nevents;
    buf data;                      /* the events' typed records, back to back */
    buf state;                     /* the state after the events (typed); empty for a stateless command */
} cmd_decision;

void cmd_decision_init(cmd_decision *d);
void cmd_decision_release(cmd_decision *d);

/* Decide command name of spec on body against state, the typed record of
 * the command's aggregate state (state_len 0: the state's DEFAULTs, as for
 * a new stream; ignored for a stateless command).  The errors are those of
 * cmd_execute (validation and bad_json naming the field, rejected with the
 * rule's MESSAGE, handler_error, unknown_command), and validation for a state
 * record that does not fit the aggregate.  d is reset first, and holds the
 * decision only on PAYI_OK. */
payi_code cmd_decide(const payi_spec *spec, const char *name, size_t name_len, const char *body, size_t body_len,
                     const char *state, size_t state_len, cmd_decision *d, payi_err *err);

typedef struct cmd_stats {
    uint64_t executed, rejected, failed, conflicts_retried, cache_hits, cache_misses, cache_entries;
} cmd_stats;
void cmd_get_stats(cmd_engine *e, cmd_stats *out);

#endif
