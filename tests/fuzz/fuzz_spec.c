/* libFuzzer target for the spec parser (spec_parse): the input is a whole
 * spec file.
 *
 * Invariants (a broken one traps):
 *   1. spec_parse either compiles the spec or fails with PAYI_VALIDATION and
 *      a message "fuzz.payi:LINE:COL: text" whose position lies inside the
 *      input: 1 <= LINE <= lines of the input, 1 <= COL <= bytes of that line
 *      + 1 (col may name the end of the line or of the file).  The only
 *      message without a position is the one for a spec that declares
 *      nothing (no position to point at).
 *   2. Parsing is a function of the text: a second parse gives the same
 *      outcome, and the same message.
 *   3. A compiled spec is consistent (spec.c invariant 2): every index is in
 *      range, every name is unique per kind and findable, every EMIT gives
 *      each NOT NULL field that has no DEFAULT, every expression's type fits
 *      where it is used; the schemas survive their own JSON.
 * Lua bodies are kept as text here (they are compiled by the command module).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec/spec.h"

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)
#define FILE_NAME "fuzz.payi"

/* Invariant 1 on a failure's message. */
static void sound_error(const char *src, size_t size, const payi_err *err)
{
    const char *m = err->msg;
    size_t fl = strlen(FILE_NAME);
    REQUIRE(strncmp(m, FILE_NAME ":", fl + 1) == 0);
    m += fl + 1;
    if (strncmp(m, " the spec declares nothing", 26) == 0)
        return;
    char *end;
    unsigned long line = strtoul(m, &end, 10);
    REQUIRE(end > m && *end == ':');
    m = end + 1;
    unsigned long col = strtoul(m, &end, 10);
    REQUIRE(end > m && end[0] == ':' && end[1] == ' ' && end[2] != '\0');
    /* the line's bytes */
    size_t start = 0, no = 1;
    for (size_t k = 0; k < size && no < line; k++)
        if (src[k] == '\n')
            start = k + 1, no++;
    REQUIRE(line >= 1 && no == line);
    size_t len = 0;
    while (start + len < size && src[start + len] != '\n')
        len++;
    REQUIRE(col >= 1 && col <= len + 1);
}

static void sound_schema(const ev_schema *s)
{
    buf js = BUF_INIT;
    json_doc d = JSON_DOC_INIT;
    ev_schema *back = NULL;
    payi_err err;
    REQUIRE(s->nfields <= SCHEMA_MAX_FIELDS);
    for (uint32_t k = 0; k < s->nfields; k++)
        REQUIRE(schema_field_index(s, s->fields[k].name, strlen(s->fields[k].name)) == (int)k);
    schema_to_json(s, &js);
    REQUIRE(json_parse(&d, js.data, js.len, NULL, NULL));
    REQUIRE(schema_from_json(&d, 0, &back, &err) == PAYI_OK);
    REQUIRE(schema_same(s, back));
    schema_free(back);
    json_doc_release(&d);
    buf_release(&js);
}

static bool assignable(expr_type value, expr_type field)
{
    return value == field || (value == EXPR_BIGINT && field == EXPR_DOUBLE);
}

/* Events, aggregates and commands share one namespace. */
static void unique_name(const payi_spec *sp, const char *name, int ev, int agg, int cmd)
{
    size_t n = strlen(name);
    REQUIRE(n > 0);
    REQUIRE(spec_find_event(sp, name, n) == ev && spec_find_aggregate(sp, name, n) == agg &&
            spec_find_command(sp, name, n) == cmd);
}

static void sound_aggregate(const payi_spec *sp, const spec_aggregate *a, uint32_t index)
{
    unique_name(sp, a->name, -1, (int)index, -1);
    sound_schema(a->state);
    REQUIRE(a->stream_sql && a->stream_sql[0]);
    for (uint32_t k = 0; k < a->state->nfields; k++)
        REQUIRE(!a->state->fields[k].not_null);
    for (uint32_t k = 0; k < a->nons; k++) {
        const spec_on *on = &a->ons[k];
        REQUIRE(on->event < sp->nevents && spec_aggregate_on(a, on->event) == on && on->nsets > 0);
        for (uint32_t s = 0; s < on->nsets; s++) {
            REQUIRE(on->sets[s].field < a->state->nfields && on->sets[s].value);
            REQUIRE(assignable(expr_result_type(on->sets[s].value), a->state->fields[on->sets[s].field].type));
            for (uint32_t t = 0; t < s; t++)
                REQUIRE(on->sets[t].field != on->sets[s].field);
        }
    }
}

static void sound_emit(const payi_spec *sp, const spec_emit *em)
{
    REQUIRE(em->event < sp->nevents);
    const ev_schema *es = sp->events[em->event];
    for (uint32_t f = 0; f < es->nfields; f++) {
        if (em->values[f])
            REQUIRE(assignable(expr_result_type(em->values[f]), es->fields[f].type));
        else
            REQUIRE(!es->fields[f].not_null || es->fields[f].has_default);
    }
    REQUIRE(!em->cond || expr_result_type(em->cond) == EXPR_BOOL);
}

static void sound_command(const payi_spec *sp, const spec_command *c, uint32_t index)
{
    unique_name(sp, c->name, -1, -1, (int)index);
    sound_schema(c->fields);
    REQUIRE(c->aggregate >= -1 && c->aggregate < (int32_t)sp->naggregates);
    REQUIRE(c->stream && expr_result_type(c->stream) == EXPR_TEXT);
    const ev_schema *st = c->aggregate >= 0 ? sp->aggregates[c->aggregate].state : NULL;
    REQUIRE(c->ncols == c->fields->nfields + (st ? st->nfields : 0));
    for (uint32_t k = 0; k < c->ncols; k++) {
        char want[300];
        if (k < c->fields->nfields)
            snprintf(want, sizeof want, "%s", c->fields->fields[k].name);
        else
            snprintf(want, sizeof want, "state.%s", st->fields[k - c->fields->nfields].name);
        REQUIRE(strcmp(c->cols[k].name, want) == 0);
    }
    for (uint32_t k = 0; k < c->nrejects; k++)
        REQUIRE(c->rejects[k].message && expr_result_type(c->rejects[k].cond) == EXPR_BOOL);
    for (uint32_t k = 0; k < c->nemits; k++)
        sound_emit(sp, &c->emits[k]);
    if (c->lua)
        REQUIRE(c->nemits == 0 && c->nrejects == 0 && c->lua_line >= 1 && strlen(c->lua) <= c->lua_len);
    else
        REQUIRE(c->nemits > 0);
}

static void sound_spec(const payi_spec *sp, size_t size)
{
    REQUIRE(strcmp(sp->file, FILE_NAME) == 0);
    REQUIRE(sp->nevents + sp->ncommands + sp->nviews > 0);
    for (uint32_t k = 0; k < sp->nevents; k++) {
        unique_name(sp, sp->events[k]->name, (int)k, -1, -1);
        sound_schema(sp->events[k]);
    }
    for (uint32_t k = 0; k < sp->naggregates; k++)
        sound_aggregate(sp, &sp->aggregates[k], k);
    for (uint32_t k = 0; k < sp->ncommands; k++)
        sound_command(sp, &sp->commands[k], k);
    for (uint32_t k = 0; k < sp->nviews; k++) {
        const spec_view *v = &sp->views[k];
        REQUIRE(v->name && v->sql && v->sql[0] && v->line >= 1 && v->col >= 1 && strlen(v->sql) <= size);
        for (uint32_t j = 0; j < k; j++)
            REQUIRE(strcmp(sp->views[j].name, v->name) != 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    payi_spec *s1 = NULL, *s2 = NULL;
    payi_err e1, e2;
    payi_code r1 = spec_parse(FILE_NAME, src, size, &s1, &e1);
    payi_code r2 = spec_parse(FILE_NAME, src, size, &s2, &e2);
    REQUIRE(r1 == r2);
    if (r1 == PAYI_OK) {
        REQUIRE(s1 && s2);
        sound_spec(s1, size);
    } else {
        REQUIRE(r1 == PAYI_VALIDATION && e1.code == r1 && !s1 && !s2);
        REQUIRE(strcmp(e1.msg, e2.msg) == 0);
        sound_error(src, size, &e1);
    }
    spec_free(s1);
    spec_free(s2);
    return 0;
}
