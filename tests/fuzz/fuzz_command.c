/* libFuzzer target for commands: the path a body takes in POST
 * /commands/{Name}, from bytes to the events it would append, without a log
 * (cmd_decide: decode, validate, stream, decide, build the typed events).
 *
 * A fixed spec (below) is compiled once: event types with every field type,
 * NOT NULL, DEFAULT, field and table CHECKs; an aggregate folding them; and
 * commands with REJECT IF rules, EMIT expressions, a conditional EMIT, a
 * stateless STREAM, and one Lua handler.  Input:
 *
 *   byte 0     command = b % n (n = 6 commands, in spec order), state =
 *              (b / n) % 3: the DEFAULTs of a new stream, an opened account,
 *              an opened account with money (seeds: tests/fuzz/corpus/command)
 *   bytes 1..  the body, as a client sends it
 *
 * Read what a seed does: FUZZ_VERBOSE=1 build-fuzz/fuzz_command FILE.
 *
 * Invariants (a broken one traps):
 *   1. The outcome is a function of the input: deciding again gives the same
 *      code, message, field, and byte for byte the same records.
 *   2. An error has a non-empty message and a code a client may get for a
 *      body (validation, bad_json, rejected; handler_error for Lua only); a
 *      rejection carries one of the command's MESSAGEs; a field it names is
 *      a field of the command, an unknown key, "stream" (the name computed
 *      from the fields is not a valid one), or a field of an emitted event.
 *   3. A decision's records are sound: the command and every event pass
 *      their schema's layout check, every event renders as JSON that decodes
 *      against its type (NOT NULL, CHECK) back to the same bytes, and the
 *      state after the events is a valid state to decide from.
 *   4. The decoded command is canonical: its own JSON render, sent as the
 *      body, decides exactly the same way (DEFAULTs filled, numbers, dates,
 *      jsonb normalized).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command/command.h"

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)
#define NSTATES 3

static const char SPEC[] =
    "CREATE EVENT Opened (account text NOT NULL, owner text NOT NULL, opened_on date NOT NULL,\n"
    "  overdraft bigint NOT NULL DEFAULT 0 CHECK (overdraft >= 0), tags jsonb,\n"
    "  rate double precision DEFAULT 0.5 CHECK (rate >= 0));\n"
    "CREATE EVENT Moved (account text NOT NULL, amount bigint NOT NULL CHECK (amount <> 0), at timestamptz,\n"
    "  note text DEFAULT 'none', share double precision, CHECK (share IS NULL OR share BETWEEN -1 AND 1));\n"
    "CREATE EVENT Flagged (account text NOT NULL, flag boolean NOT NULL, until date, meta jsonb);\n"
    "CREATE EVENT Noted (topic text NOT NULL, body text, due date, at timestamptz, words bigint);\n"
    "CREATE EVENT RateSet (account text NOT NULL, rate double precision NOT NULL,\n"
    "  vip boolean NOT NULL DEFAULT false, CHECK (rate >= 0 AND rate < 1));\n"
    "CREATE AGGREGATE account (opened boolean DEFAULT false, owner text, balance bigint DEFAULT 0,\n"
    "  overdraft bigint DEFAULT 0, rate double precision DEFAULT 0, last_at timestamptz, opened_on date,\n"
    "  flags jsonb, moves bigint DEFAULT 0)\n"
    "  STREAM 'acct-' || account\n"
    "  ON Opened SET opened = true, owner = owner, overdraft = overdraft, opened_on = opened_on,\n"
    "                rate = rate, flags = tags\n"
    "  ON Moved SET balance = state.balance + amount, last_at = COALESCE(at, state.last_at),\n"
    "               moves = state.moves + 1\n"
    "  ON Flagged SET flags = meta\n"
    "  ON RateSet SET rate = rate;\n"
    "CREATE COMMAND Open (account text NOT NULL CHECK (length(account) BETWEEN 1 AND 40),\n"
    "  owner text NOT NULL, opened_on date NOT NULL, overdraft bigint DEFAULT 0, tags jsonb,\n"
    "  rate double precision) FOR account\n"
    "  REJECT IF state.opened MESSAGE 'already open'\n"
    "  REJECT IF opened_on < DATE '2000-01-01' MESSAGE 'too early'\n"
    "  EMIT Opened (account, upper(owner) AS owner, opened_on, COALESCE(overdraft, 0) AS overdraft, tags,\n"
    "               COALESCE(rate, 0.5) AS rate);\n"
    "CREATE COMMAND Move (account text NOT NULL, amount bigint NOT NULL CHECK (amount <> 0), at timestamptz,\n"
    "  note text, share double precision, flag boolean DEFAULT false) FOR account\n"
    "  REJECT IF NOT state.opened MESSAGE 'no such account'\n"
    "  REJECT IF state.balance + state.overdraft + amount < 0 MESSAGE 'insufficient funds'\n"
    "  EMIT Moved (account, amount, at, COALESCE(note, 'none') AS note, share / 2 AS share)\n"
    "  EMIT Flagged (account, true AS flag, at::date + 30 AS until, '{\"big\": true}'::jsonb AS meta)\n"
    "    IF flag OR abs(amount) >= 10000;\n"
    "CREATE COMMAND Flag (account text NOT NULL, flag boolean NOT NULL DEFAULT true, until date, meta jsonb,\n"
    "  CHECK (until IS NULL OR until > DATE '2000-01-01')) FOR account\n"
    "  REJECT IF meta ->> 'veto' = 'yes' MESSAGE 'vetoed'\n"
    "  EMIT Flagged (account, flag, until + 1 AS until, meta);\n"
    "CREATE COMMAND Note (topic text NOT NULL, body text, due date, at timestamptz DEFAULT '2020-01-01T00:00:00Z',\n"
    "  days bigint NOT NULL DEFAULT 7 CHECK (days BETWEEN -1000 AND 1000))\n"
    "  STREAM 'notes-' || lower(topic)\n"
    "  REJECT IF length(topic) > 50 MESSAGE 'topic too long'\n"
    "  EMIT Noted (topic, CASE WHEN body IS NULL THEN '(empty)' ELSE substr(body, 1, 100) END AS body,\n"
    "              due + days AS due, at + interval '1 day' AS at, length(body) * days AS words);\n"
    "CREATE COMMAND Schedule (account text NOT NULL, start_at timestamptz NOT NULL, end_at timestamptz,\n"
    "  weight double precision NOT NULL DEFAULT 1, CHECK (end_at IS NULL OR end_at > start_at)) FOR account\n"
    "  REJECT IF state.last_at IS NOT NULL AND start_at < state.last_at MESSAGE 'in the past'\n"
    "  EMIT Noted (account AS topic, start_at::date AS due, COALESCE(end_at, start_at) AS at,\n"
    "              round(weight * state.balance)::bigint AS words);\n"
    "CREATE COMMAND SetRate (account text NOT NULL, rate double precision NOT NULL, vip boolean) FOR account\n"
    "  LANGUAGE lua AS $$\n"
    "function decide(state, cmd)\n"
    "  if not state.opened then reject('no such account') end\n"
    "  if cmd.rate > 0.5 and not cmd.vip then reject('a rate above 0.5 needs vip') end\n"
    "  return { { type = 'RateSet', data = { account = cmd.account, rate = cmd.rate, vip = cmd.vip or false } } }\n"
    "end\n"
    "$$;\n";

static const char *const LUA_REJECTS[] = {"no such account", "a rate above 0.5 needs vip", NULL};

typedef struct fixture {
    payi_spec *spec;
    buf states[NSTATES];      /* [0] empty: the DEFAULTs */
} fixture;

static void decide_fixed(const payi_spec *spec, const char *cmd, const char *body, const buf *state, buf *after)
{
    cmd_decision d;
    payi_err err;
    cmd_decision_init(&d);
    REQUIRE(cmd_decide(spec, cmd, strlen(cmd), body, strlen(body), state->data, state->len, &d, &err) == PAYI_OK);
    buf_put(after, d.state.data, d.state.len);
    cmd_decision_release(&d);
}

static const fixture *fixture_get(void)
{
    static fixture f;
    if (f.spec)
        return &f;
    payi_err err;
    REQUIRE(spec_parse("fuzz.payi", SPEC, strlen(SPEC), &f.spec, &err) == PAYI_OK);
    decide_fixed(f.spec, "Open", "{\"account\":\"a\",\"owner\":\"Ann\",\"opened_on\":\"2021-02-03\",\"overdraft\":100}",
                 &f.states[0], &f.states[1]);
    decide_fixed(f.spec, "Move", "{\"account\":\"a\",\"amount\":500,\"at\":\"2021-02-04T10:00:00Z\",\"flag\":true}",
                 &f.states[1], &f.states[2]);
    return &f;
}

static bool same_buf(const buf *a, const buf *b)
{
    return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/* Invariant 1 on two decisions of the same input. */
static void same_outcome(payi_code r1, const cmd_decision *d1, const payi_err *e1, payi_code r2,
                         const cmd_decision *d2, const payi_err *e2)
{
    REQUIRE(r1 == r2);
    if (r1 != PAYI_OK) {
        REQUIRE(e1->code == e2->code && strcmp(e1->msg, e2->msg) == 0 && strcmp(e1->field, e2->field) == 0);
        return;
    }
    REQUIRE(same_buf(&d1->command, &d2->command) && same_buf(&d1->stream, &d2->stream));
    REQUIRE(same_buf(&d1->data, &d2->data) && same_buf(&d1->state, &d2->state));
    REQUIRE(d1->nevents == d2->nevents);
    for (uint32_t k = 0; k < d1->nevents; k++)
        REQUIRE(d1->events[k].event == d2->events[k].event && d1->events[k].off == d2->events[k].off &&
                d1->events[k].len == d2->events[k].len);
}

/* "EMIT Ev.f" with f a field of event Ev of one of c's EMITs, or "EMIT Ev"
 * for a table CHECK of Ev. */
static bool emit_field(const payi_spec *spec, const spec_command *c, const char *field)
{
    for (uint32_t k = 0; k < c->nemits; k++) {
        const ev_schema *es = spec->events[c->emits[k].event];
        size_t nl = strlen(es->name);
        if (strncmp(field, "EMIT ", 5) != 0 || strncmp(field + 5, es->name, nl) != 0)
            continue;
        const char *f = field + 5 + nl;
        if (*f == '\0' || (*f == '.' && schema_field_index(es, f + 1, strlen(f + 1)) >= 0))
            return true;
    }
    return false;
}

/* Invariant 2. */
static void sound_error(const payi_spec *spec, const spec_command *c, payi_code rc, const payi_err *e)
{
    REQUIRE(e->code == rc && e->msg[0] != '\0' && strlen(e->msg) < sizeof e->msg);
    REQUIRE(rc == PAYI_VALIDATION || rc == PAYI_BAD_JSON || rc == PAYI_REJECTED || (c->lua && rc == PAYI_HANDLER));
    /* a message meant for a client does not carry the spec's " (at N)" */
    size_t pos;
    REQUIRE(!expr_error_pos(e, &pos));
    if (rc == PAYI_REJECTED) {
        bool known = false;
        for (uint32_t k = 0; k < c->nrejects; k++)
            known |= strcmp(e->msg, c->rejects[k].message) == 0;
        for (const char *const *m = LUA_REJECTS; c->lua && *m; m++)
            known |= strcmp(e->msg, *m) == 0;
        REQUIRE(known && e->field[0] == '\0');
    }
    if (e->field[0] == '\0')
        return;
    /* "stream": the name computed from the fields is not a valid stream name */
    bool ok = schema_field_index(c->fields, e->field, strlen(e->field)) >= 0 || strcmp(e->field, "stream") == 0 ||
              strncmp(e->msg, "unknown field", 13) == 0 || emit_field(spec, c, e->field) ||
              (c->lua && strncmp(e->field, "events[", 7) == 0);
    REQUIRE(ok);
}

/* Invariant 3 for one event: layout, then JSON and back to the same bytes. */
static void sound_event(const ev_schema *es, const char *data, size_t len, expr_ctx *ctx)
{
    payi_err err;
    buf js = BUF_INIT, again = BUF_INIT;
    json_doc d = JSON_DOC_INIT;
    expr_value slots[SCHEMA_MAX_FIELDS];
    REQUIRE(schema_check_data(es, data, len, &err) == PAYI_OK);
    schema_write_json(es, data, len, &js);
    REQUIRE(json_parse(&d, js.data, js.len, NULL, NULL));
    REQUIRE(schema_decode_json(es, &d, 0, "data", slots, ctx, &err) == PAYI_OK);
    schema_encode(es, slots, &again);
    REQUIRE(again.len == len && memcmp(again.data, data, len) == 0);
    buf_release(&js);
    buf_release(&again);
    json_doc_release(&d);
}

static void sound_decision(const payi_spec *spec, const spec_command *c, const cmd_decision *d)
{
    payi_err err;
    expr_ctx ctx;
    expr_ctx_init(&ctx);
    REQUIRE(schema_check_data(c->fields, d->command.data, d->command.len, &err) == PAYI_OK);
    REQUIRE(d->stream.len > 0 && d->stream.data[0] != '$');
    REQUIRE(c->lua || d->nevents <= c->nemits);
    size_t end = 0;
    for (uint32_t k = 0; k < d->nevents; k++) {
        const cmd_decided_event *ev = &d->events[k];
        REQUIRE(ev->event < spec->nevents && ev->off == end && ev->off + ev->len <= d->data.len);
        sound_event(spec->events[ev->event], d->data.data + ev->off, ev->len, &ctx);
        expr_ctx_reset(&ctx);
        end = ev->off + ev->len;
    }
    REQUIRE(end == d->data.len);
    if (c->aggregate >= 0)
        REQUIRE(schema_check_data(spec->aggregates[c->aggregate].state, d->state.data, d->state.len, &err) ==
                PAYI_OK);
    else
        REQUIRE(d->state.len == 0);
    expr_ctx_release(&ctx);
}

/* Invariant 4, and the state after as the state of the next decision. */
static void canonical_again(const payi_spec *spec, const spec_command *c, const cmd_decision *d,
                            const buf *state)
{
    buf body = BUF_INIT;
    cmd_decision d2;
    payi_err err;
    cmd_decision_init(&d2);
    schema_write_json(c->fields, d->command.data, d->command.len, &body);
    payi_code rc = cmd_decide(spec, c->name, strlen(c->name), body.data, body.len, state->data, state->len, &d2, &err);
    same_outcome(PAYI_OK, d, NULL, rc, &d2, &err);
    if (c->aggregate >= 0) {   /* whatever the next decision says, the state it starts from is sound */
        rc = cmd_decide(spec, c->name, strlen(c->name), body.data, body.len, d->state.data, d->state.len, &d2, &err);
        REQUIRE(rc == PAYI_OK || strncmp(err.msg, "the state is not a record", 25) != 0);
    }
    cmd_decision_release(&d2);
    buf_release(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fixture *f = fixture_get();
    if (size < 1)
        return 0;
    uint32_t n = f->spec->ncommands;
    const spec_command *c = &f->spec->commands[data[0] % n];
    const buf *state = &f->states[(data[0] / n) % NSTATES];
    const char *body = (const char *)data + 1;
    cmd_decision d1, d2;
    payi_err e1, e2;
    cmd_decision_init(&d1);
    cmd_decision_init(&d2);
    payi_code r1 = cmd_decide(f->spec, c->name, strlen(c->name), body, size - 1, state->data, state->len, &d1, &e1);
    payi_code r2 = cmd_decide(f->spec, c->name, strlen(c->name), body, size - 1, state->data, state->len, &d2, &e2);
    same_outcome(r1, &d1, &e1, r2, &d2, &e2);
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%s: %s field=%s: %s; %u events, stream %.*s\n", c->name, payi_code_word(r1),
                r1 ? e1.field : "", r1 ? e1.msg : "", d1.nevents, (int)d1.stream.len,
                d1.stream.data ? d1.stream.data : "");
    if (r1 != PAYI_OK) {
        sound_error(f->spec, c, r1, &e1);
    } else {
        sound_decision(f->spec, c, &d1);
        canonical_again(f->spec, c, &d1, state);
    }
    cmd_decision_release(&d1);
    cmd_decision_release(&d2);
    return 0;
}
