/* command.c — validate, decide, append (the flow and its guarantees are in
 * command.h).
 *
 * Structures:
 *   the state cache  CACHE_SHARDS shards, each a hash table of entries with
 *                    an LRU list, under the shard's mutex.  An entry is one
 *                    (aggregate, stream): its folded state in the typed form
 *                    of the aggregate's state schema, the version that state
 *                    includes, and its own mutex, held while a command reads
 *                    the state, decides and submits.  refs counts the jobs
 *                    using an entry; only unreferenced entries are evicted.
 *   a job            one command in flight: its decoded fields, state, the
 *                    events it emits (typed bytes in job->data), its append.
 *
 * Invariants:
 *   1. entry->valid implies entry->state is the fold of versions
 *      [0, entry->version] of the stream, of which those past the log's
 *      durable version were submitted, in order, by jobs still holding refs.
 *   2. Any failed append makes its entry invalid before its job lets go.
 *   3. Text values a job reads stay valid while the job holds the entry's
 *      mutex (state) or lives (its body, its arena).
 */
#include "command/command.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "event/evjson.h"

#define CACHE_SHARDS 64
#define MAX_EVENTS_PER_COMMAND 1000
#define MAX_COLS (2 * SCHEMA_MAX_FIELDS)

/* ------------------------------------------------------------ the cache */

typedef struct centry {
    struct centry *hnext;          /* hash chain */
    struct centry *prev, *next;    /* LRU, most recent first */
    uint64_t hash;
    uint32_t agg;
    char *stream;
    uint32_t stream_len;
    uint32_t refs;                 /* under the shard mutex */
    pthread_mutex_t mu;            /* the state: read, decide, submit */
    bool valid;
    int64_t version;               /* -1: the stream has no event */
    uint32_t unsettled;            /* events submitted on this state whose appends have not completed */
    payi_uuid last_id;             /* the id of the state's last event (when version >= 0) */
    buf state;
} centry;

typedef struct cshard {
    pthread_mutex_t mu;
    centry **buckets;
    uint32_t nbuckets;             /* power of two */
    uint32_t count;
    centry *head, *tail;
} cshard;

/* ----------------------------------------------------- idempotency keys */

typedef enum { IDEM_PENDING, IDEM_DONE } idem_state;

typedef struct idem_entry {
    struct idem_entry *hnext, *prev, *next;
    uint64_t hash;
    char *key;                     /* "<command>\n<key>" */
    size_t key_len;
    uint64_t body_hash;
    idem_state state;
    payi_code code;
    payi_err err;
    int status;
    buf answer;
} idem_entry;

typedef struct idem_table {
    pthread_mutex_t mu;
    idem_entry **buckets;
    uint32_t nbuckets;
    uint32_t count, max;
    idem_entry *head, *tail;
} idem_table;

struct cmd_engine {
    payi_log *log;
    const payi_spec *spec;
    const registry *reg;
    cmd_options opt;
    cshard shards[CACHE_SHARDS];
    uint32_t shard_max;
    idem_table idem;
    pthread_mutex_t lua_mu;        /* the pool of Lua states, one per concurrent Lua call */
    luafn **lua_pool;
    size_t nlua, lua_cap;
    int *lua_handle;               /* by command index; the same in every state of the pool */
    pthread_mutex_t free_mu;
    struct cmd_call *free_calls;
    size_t nfree;
    _Atomic uint64_t executed, rejected, failed, retried, hits, misses;
};

/* ------------------------------------------------------------- hashing */



static uint64_t key_hash(uint32_t agg, const char *s, size_t n)
{
    return hash_mix64(hash_fnv1a(s, n, HASH_FNV_SEED ^ agg));
}

/* --------------------------------------------------------- cache code */

static void lru_unlink(cshard *sh, centry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        sh->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        sh->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(cshard *sh, centry *e)
{
    e->next = sh->head;
    e->prev = NULL;
    if (sh->head)
        sh->head->prev = e;
    sh->head = e;
    if (!sh->tail)
        sh->tail = e;
}

static void centry_free(centry *e)
{
    pthread_mutex_destroy(&e->mu);
    buf_release(&e->state);
    free(e->stream);
    free(e);
}

static void hash_remove(cshard *sh, centry *e)
{
    centry **pp = &sh->buckets[(e->hash >> 8) & (sh->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* Evict unreferenced entries from the cold end until there is room. */
static void evict(cshard *sh, uint32_t max)
{
    centry *e = sh->tail;
    while (sh->count >= max && e) {
        centry *prev = e->prev;
        if (e->refs == 0) {
            lru_unlink(sh, e);
            hash_remove(sh, e);
            sh->count--;
            centry_free(e);
        }
        e = prev;
    }
}

static centry *cache_acquire(cmd_engine *en, uint32_t agg, const char *stream, uint32_t len, bool *hit)
{
    uint64_t h = key_hash(agg, stream, len);
    cshard *sh = &en->shards[h % CACHE_SHARDS];
    pthread_mutex_lock(&sh->mu);
    centry *e = sh->buckets[(h >> 8) & (sh->nbuckets - 1)];
    while (e && !(e->hash == h && e->agg == agg && e->stream_len == len && memcmp(e->stream, stream, len) == 0))
        e = e->hnext;
    *hit = e != NULL;
    if (e) {
        lru_unlink(sh, e);
    } else {
        evict(sh, en->shard_max);
        e = xcalloc(1, sizeof *e);
        e->hash = h;
        e->agg = agg;
        e->stream = xstrndup(stream, len);
        e->stream_len = len;
        pthread_mutex_init(&e->mu, NULL);
        centry **b = &sh->buckets[(h >> 8) & (sh->nbuckets - 1)];
        e->hnext = *b;
        *b = e;
        sh->count++;
    }
    e->refs++;
    lru_push_front(sh, e);
    pthread_mutex_unlock(&sh->mu);
    return e;
}

static void cache_release(cmd_engine *en, centry *e)
{
    cshard *sh = &en->shards[e->hash % CACHE_SHARDS];
    pthread_mutex_lock(&sh->mu);
    e->refs--;
    pthread_mutex_unlock(&sh->mu);
}

static void shards_init(cmd_engine *en)
{
    en->shard_max = en->opt.cache_entries / CACHE_SHARDS + 1;
    uint32_t nb = 16;
    while (nb < en->shard_max)
        nb <<= 1;
    for (int k = 0; k < CACHE_SHARDS; k++) {
        pthread_mutex_init(&en->shards[k].mu, NULL);
        en->shards[k].nbuckets = nb;
        en->shards[k].buckets = xcalloc(nb, sizeof(centry *));
    }
}

static void shards_release(cmd_engine *en)
{
    for (int k = 0; k < CACHE_SHARDS; k++) {
        cshard *sh = &en->shards[k];
        for (centry *e = sh->head, *n; e; e = n) {
            n = e->next;
            centry_free(e);
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
}

/* ------------------------------------------------------------- jobs */

typedef struct job_event {
    uint32_t event;                /* spec event index */
    size_t data_off, data_len;     /* typed bytes in job->data */
} job_event;

typedef struct job {
    cmd_engine *en;
    const spec_command *c;
    int cmd;
    const spec_aggregate *agg;
    json_doc doc, out_doc;
    expr_ctx ctx;
    expr_value cols[MAX_COLS];     /* command fields, then state fields */
    buf stream;
    centry *entry;
    int64_t decided_version;       /* the stream version the decision read */
    job_event *evs;
    uint32_t nev;
    size_t evcap;
    buf data, meta, next_state;
    log_event_in *in;
    size_t incap;
    log_append a;
    log_submission *sub;           /* a synchronous job's outstanding append */
    bool waiting;                  /* an append is outstanding (either kind) */
    cmd_wake_fn wake;              /* set: appends complete by calling wake(wake_ctx) */
    void *wake_ctx;
    const char *key;
    size_t key_len;
    uint32_t tries;
    payi_code rc;
    payi_err err;
} job;

/* Everything but cols, which every run fills before reading (zeroing
 * 12 KB per command showed in the profile). */
static void job_init(job *j, cmd_engine *en)
{
    memset(j, 0, offsetof(job, cols));
    memset((char *)j + offsetof(job, stream), 0, sizeof *j - offsetof(job, stream));
    j->en = en;
    expr_ctx_init(&j->ctx);
    j->doc = (json_doc)JSON_DOC_INIT;
    j->out_doc = (json_doc)JSON_DOC_INIT;
}

/* Ready for the next command, keeping the memory it grew. */
static void job_reuse(job *j)
{
    expr_ctx_reset(&j->ctx);
    buf_reset(&j->stream);
    buf_reset(&j->data);
    buf_reset(&j->meta);
    buf_reset(&j->next_state);
    j->c = NULL;
    j->cmd = 0;
    j->agg = NULL;
    j->entry = NULL;
    j->decided_version = 0;
    j->nev = 0;
    j->sub = NULL;
    j->waiting = false;
    j->wake = NULL;
    j->wake_ctx = NULL;
    j->key = NULL;
    j->key_len = 0;
    j->tries = 0;
    j->rc = PAYI_OK;
    payi_err_clear(&j->err);
}

static void job_release(job *j)
{
    json_doc_release(&j->doc);
    json_doc_release(&j->out_doc);
    expr_ctx_release(&j->ctx);
    buf_release(&j->stream);
    buf_release(&j->data);
    buf_release(&j->meta);
    buf_release(&j->next_state);
    free(j->evs);
    free(j->in);
}

static payi_code job_fail(job *j, payi_code code, const payi_err *err)
{
    j->rc = code;
    if (err != &j->err)
        j->err = *err;
    j->err.code = code;
    return code;
}

/* 1-2: the body against the command's fields, then its stream. */
static payi_code job_decode(job *j, const char *body, size_t len)
{
    json_error je;
    if (!json_parse(&j->doc, body, len, NULL, &je))
        return j->rc = payi_err_set(&j->err, PAYI_BAD_JSON, NULL, "malformed JSON at line %u, column %u: %s", je.line,
                                    je.col, je.msg);
    const ev_schema *fs = j->c->fields;
    payi_code rc = schema_decode_json(fs, &j->doc, 0, "", j->cols, &j->ctx, &j->err);
    if (rc != PAYI_OK)
        return j->rc = rc;
    expr_value v;
    rc = expr_eval(j->c->stream, j->cols, &j->ctx, &v, &j->err);
    if (rc != PAYI_OK)
        return j->rc = rc;
    if (v.null)
        return j->rc = payi_err_set(&j->err, PAYI_VALIDATION, NULL,
                                    "the stream of this command is NULL: a field it is named from is missing");
    rc = log_check_stream_name(v.s, v.len, &j->err);
    if (rc == PAYI_OK && v.s[0] == '$')
        rc = payi_err_set(&j->err, PAYI_VALIDATION, NULL, "the command's stream \"%.*s\" starts with '$', which is reserved",
                          (int)(v.len > 100 ? 100 : v.len), v.s);
    if (rc != PAYI_OK)
        return j->rc = rc;
    buf_reset(&j->stream);
    buf_put(&j->stream, v.s, v.len);
    return PAYI_OK;
}

/* ---------------------------------------------------- folding a stream */

static void state_defaults(const ev_schema *st, expr_value *slots)
{
    for (uint32_t k = 0; k < st->nfields; k++)
        slots[k] = st->fields[k].has_default ? st->fields[k].def : expr_null(st->fields[k].type);
}

static void state_read(const ev_schema *st, const buf *b, expr_value *slots)
{
    for (uint32_t k = 0; k < st->nfields; k++)
        schema_get(st, b->data, b->len, k, &slots[k]);
}

/* The fields of a stored event as the spec's event type declares them:
 * typed data of the same schema is read in place; of an older schema, by
 * field name (a field the old one lacks takes its DEFAULT or NULL); JSON
 * data (appended before the type was declared) is validated now. */
static payi_code stored_event_fields(const cmd_engine *en, const log_event *ev, const ev_schema *want,
                                     expr_value *slots, json_doc *doc, expr_ctx *ctx, payi_err *err)
{
    if (ev->encoding == LOG_ENC_JSON) {
        json_error je;
        if (!json_parse(doc, ev->data, ev->data_len, NULL, &je))
            return payi_err_set(err, PAYI_INTERNAL, NULL, "event at position %" PRIu64 " has malformed data: %s",
                                ev->position, je.msg);
        payi_err e;
        if (schema_decode_json(want, doc, 0, "data", slots, ctx, &e) != PAYI_OK)
            return payi_err_set(err, PAYI_INTERNAL, NULL,
                                "event at position %" PRIu64 " does not fit the declared type %s: %s", ev->position,
                                want->name, e.msg);
        return PAYI_OK;
    }
    uint32_t id;
    const ev_schema *have = NULL;
    if (ev->encoding != LOG_ENC_TYPED || !schema_data_id(ev->data, ev->data_len, &id) ||
        !(have = registry_by_id(en->reg, id)))
        return payi_err_set(err, PAYI_INTERNAL, NULL, "event at position %" PRIu64 " has data of an unknown schema",
                            ev->position);
    payi_code rc = schema_check_data(have, ev->data, ev->data_len, err);
    if (rc != PAYI_OK)
        return rc;
    for (uint32_t k = 0; k < want->nfields; k++) {
        const schema_field *f = &want->fields[k];
        int h = have == want ? (int)k : schema_field_index(have, f->name, strlen(f->name));
        if (h >= 0 && have->fields[h].type == f->type)
            schema_get(have, ev->data, ev->data_len, (uint32_t)h, &slots[k]);
        else
            slots[k] = f->has_default ? f->def : expr_null(f->type);
    }
    return PAYI_OK;
}

typedef struct fold_ctx {
    job *j;
    const spec_aggregate *agg;
    expr_value state[SCHEMA_MAX_FIELDS];
    buf bufs[2];                   /* the state after each event, alternately */
    expr_ctx ctx;                  /* its own: the job's arena holds the command's decoded text */
    int cur;
    int64_t version;
    payi_uuid last_id;
    payi_code rc;
} fold_ctx;

static int fold_one(void *vctx, const log_event *ev)
{
    fold_ctx *f = vctx;
    job *j = f->j;
    f->version = (int64_t)ev->version;
    f->last_id = ev->id;
    int evi = spec_find_event(j->en->spec, ev->type, ev->type_len);
    const spec_on *on = evi >= 0 ? spec_aggregate_on(f->agg, (uint32_t)evi) : NULL;
    if (!on)
        return 0;   /* an event this aggregate does not fold */
    const ev_schema *es = j->en->spec->events[evi];
    expr_value fields[SCHEMA_MAX_FIELDS];
    payi_code rc = stored_event_fields(j->en, ev, es, fields, &j->out_doc, &f->ctx, &j->err);
    if (rc == PAYI_OK)
        rc = spec_fold(f->agg, on, es, fields, f->state, &f->ctx, &j->err);
    if (rc != PAYI_OK) {
        f->rc = rc;
        return 1;
    }
    /* the event's bytes go away after this call: keep the state in our own buffer */
    f->cur ^= 1;
    buf_reset(&f->bufs[f->cur]);
    schema_encode(f->agg->state, f->state, &f->bufs[f->cur]);
    state_read(f->agg->state, &f->bufs[f->cur], f->state);
    expr_ctx_reset(&f->ctx);
    return 0;
}

/* 3 on a miss: fold the stream from its first event into the entry. */
static payi_code rebuild_state(job *j, centry *e)
{
    fold_ctx *f = xcalloc(1, sizeof *f);
    f->j = j;
    f->agg = j->agg;
    f->version = -1;
    f->rc = PAYI_OK;
    expr_ctx_init(&f->ctx);
    state_defaults(j->agg->state, f->state);
    payi_code rc = log_read_stream(j->en->log, e->stream, e->stream_len, 0, 0, false, fold_one, f, &j->err);
    if (rc == PAYI_OK)
        rc = f->rc;
    if (rc == PAYI_OK) {
        buf_reset(&e->state);
        schema_encode(j->agg->state, f->state, &e->state);
        e->version = f->version;
        e->last_id = f->last_id;
        e->valid = true;
    }
    buf_release(&f->bufs[0]);
    buf_release(&f->bufs[1]);
    expr_ctx_release(&f->ctx);
    free(f);
    return rc;
}

/* ---------------------------------------------------------- deciding */

static payi_code eval_bool(job *j, const expr *e, bool *out)
{
    expr_value v;
    payi_code rc = expr_eval(e, j->cols, &j->ctx, &v, &j->err);
    *out = rc == PAYI_OK && !v.null && v.b;
    return rc;
}

static void widen(expr_value *v, expr_type want)
{
    if (!v->null && v->type == EXPR_BIGINT && want == EXPR_DOUBLE) {
        double d = (double)v->i;
        v->d = d;
    }
    v->type = (uint8_t)want;
}

/* An event decided: its typed bytes into job->data, its effect on the state. */
static payi_code take_event(job *j, uint32_t evi, expr_value *fields)
{
    const ev_schema *es = j->en->spec->events[evi];
    if (j->nev >= MAX_EVENTS_PER_COMMAND)
        return payi_err_set(&j->err, PAYI_VALIDATION, NULL, "a command may emit at most %d events",
                            MAX_EVENTS_PER_COMMAND);
    j->evs = xgrow(j->evs, &j->evcap, j->nev + 1, sizeof *j->evs);
    job_event *je = &j->evs[j->nev++];
    je->event = evi;
    je->data_off = j->data.len;
    schema_encode(es, fields, &j->data);
    je->data_len = j->data.len - je->data_off;
    const spec_on *on = j->agg ? spec_aggregate_on(j->agg, evi) : NULL;
    if (!on)
        return PAYI_OK;
    uint32_t nc = j->c->fields->nfields;
    return spec_fold(j->agg, on, es, fields, j->cols + nc, &j->ctx, &j->err);
}

static payi_code decide_declarative(job *j)
{
    const spec_command *c = j->c;
    for (uint32_t k = 0; k < c->nrejects; k++) {
        bool hit;
        payi_code rc = eval_bool(j, c->rejects[k].cond, &hit);
        if (rc != PAYI_OK)
            return rc;
        if (hit)
            return payi_err_set(&j->err, PAYI_REJECTED, NULL, "%s", c->rejects[k].message);
    }
    /* EMIT values read the state before this command's own events */
    uint32_t nc = c->fields->nfields, ns = j->agg ? j->agg->state->nfields : 0;
    expr_value before[MAX_COLS];
    memcpy(before, j->cols, (nc + ns) * sizeof *before);
    for (uint32_t k = 0; k < c->nemits; k++) {
        const spec_emit *em = &c->emits[k];
        expr_value saved[MAX_COLS];
        memcpy(saved, j->cols, (nc + ns) * sizeof *saved);
        memcpy(j->cols, before, (nc + ns) * sizeof *before);
        bool on = true;
        payi_code rc = em->cond ? eval_bool(j, em->cond, &on) : PAYI_OK;
        const ev_schema *es = j->en->spec->events[em->event];
        expr_value fields[SCHEMA_MAX_FIELDS];
        for (uint32_t f = 0; rc == PAYI_OK && on && f < es->nfields; f++) {
            if (!em->values[f]) {
                fields[f] = es->fields[f].has_default ? es->fields[f].def : expr_null(es->fields[f].type);
                continue;
            }
            rc = expr_eval(em->values[f], j->cols, &j->ctx, &fields[f], &j->err);
            if (rc == PAYI_OK)   /* a failed eval leaves fields[f] unset */
                widen(&fields[f], es->fields[f].type);
        }
        memcpy(j->cols, saved, (nc + ns) * sizeof *saved);
        if (rc == PAYI_OK && on) {
            char where[300];
            snprintf(where, sizeof where, "EMIT %s", es->name);
            rc = schema_validate(es, fields, where, &j->ctx, &j->err);
            if (rc == PAYI_OK)
                rc = take_event(j, em->event, fields);
        }
        if (rc != PAYI_OK)
            return rc;
    }
    return PAYI_OK;
}

/* ------------------------------------------------------------------ Lua */

static luafn *lua_take(cmd_engine *en, payi_err *err);
static void lua_give(cmd_engine *en, luafn *L);

static void lua_record(const ev_schema *s, const expr_value *vals, const char **names, luafn_record *r)
{
    for (uint32_t k = 0; s && k < s->nfields; k++)
        names[k] = s->fields[k].name;
    *r = (luafn_record){names, vals, s ? s->nfields : 0};
}

static payi_code take_lua_event(job *j, const luafn_result *res, uint32_t k)
{
    const luafn_event *le = &res->events[k];
    const char *type = res->text.data + le->type_off;
    int evi = spec_find_event(j->en->spec, type, le->type_len);
    if (evi < 0)
        return payi_err_set(&j->err, PAYI_HANDLER, NULL,
                            "%s: the Lua handler returned an event of type \"%.*s\", which the spec does not declare",
                            j->c->name, (int)(le->type_len > 100 ? 100 : le->type_len), type);
    /* out_doc's source is res->text, which lives until the next call */
    json_error je;
    if (!json_parse(&j->out_doc, res->text.data + le->data_off, le->data_len, NULL, &je))
        return payi_err_set(&j->err, PAYI_HANDLER, NULL, "%s: the Lua handler's event %u is not JSON: %s", j->c->name,
                            k + 1, je.msg);
    expr_value fields[SCHEMA_MAX_FIELDS];
    char where[64];
    snprintf(where, sizeof where, "events[%u].data", k);
    payi_err e;
    if (schema_decode_json(j->en->spec->events[evi], &j->out_doc, 0, where, fields, &j->ctx, &e) != PAYI_OK)
        return payi_err_set(&j->err, PAYI_HANDLER, e.field, "%s: the Lua handler's event %u (%s): %s", j->c->name,
                            k + 1, j->en->spec->events[evi]->name, e.msg);
    return take_event(j, (uint32_t)evi, fields);
}

static payi_code decide_lua(job *j)
{
    payi_code rc;
    luafn *L = lua_take(j->en, &j->err);
    if (!L)
        return j->err.code;
    const ev_schema *st = j->agg ? j->agg->state : NULL;
    const char *snames[SCHEMA_MAX_FIELDS], *cnames[SCHEMA_MAX_FIELDS];
    luafn_record srec, crec;
    uint32_t nc = j->c->fields->nfields;
    lua_record(st, j->cols + nc, snames, &srec);
    lua_record(j->c->fields, j->cols, cnames, &crec);
    luafn_result res;
    luafn_result_init(&res);
    rc = luafn_call(L, j->en->lua_handle[j->cmd], &srec, &crec, &res, &j->err);
    lua_give(j->en, L);
    if (rc != PAYI_OK) {
        char msg[sizeof j->err.msg];
        memcpy(msg, j->err.msg, sizeof msg);   /* payi_err_set writes where it would read */
        rc = payi_err_set(&j->err, PAYI_HANDLER, NULL, "%s", msg);
    }
    else if (res.rejected)
        rc = payi_err_set(&j->err, PAYI_REJECTED, NULL, "%.*s", (int)res.reject_len, res.text.data + res.reject_off);
    for (uint32_t k = 0; rc == PAYI_OK && k < res.nevents; k++)
        rc = take_lua_event(j, &res, k);
    luafn_result_release(&res);
    return rc;
}

/* ------------------------------------------------------- the append */

/* Ids derived from the idempotency key: a retry that decides the same
 * events repeats their ids, and the log appends them once. */
static void derive_id(const job *j, uint32_t index, payi_uuid *out)
{
    uint64_t h1 = hash_fnv1a(j->c->name, strlen(j->c->name), HASH_FNV_SEED);
    h1 = hash_fnv1a("\n", 1, h1);
    h1 = hash_fnv1a(j->key, j->key_len, h1);
    uint64_t h2 = hash_fnv1a(&index, sizeof index, hash_mix64(h1 ^ 0x9e3779b97f4a7c15ULL));
    h1 = hash_mix64(hash_fnv1a(&index, sizeof index, h1));
    h2 = hash_mix64(h2);
    memcpy(out->b, &h1, 8);
    memcpy(out->b + 8, &h2, 8);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x80);   /* version 8: vendor-defined */
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
}

static void build_append(job *j)
{
    buf_reset(&j->meta);
    buf_puts(&j->meta, "{\"command\":");
    json_put_string(&j->meta, j->c->name, strlen(j->c->name));
    if (j->key) {
        buf_puts(&j->meta, ",\"idempotency_key\":");
        json_put_string(&j->meta, j->key, j->key_len);
    }
    buf_putc(&j->meta, '}');
    j->in = xgrow(j->in, &j->incap, j->nev, sizeof *j->in);
    for (uint32_t k = 0; k < j->nev; k++) {
        const ev_schema *es = j->en->spec->events[j->evs[k].event];
        j->in[k] = (log_event_in){
            .type = es->name,
            .type_len = (uint32_t)strlen(es->name),
            .data = j->data.data + j->evs[k].data_off,
            .data_len = (uint32_t)j->evs[k].data_len,
            .encoding = LOG_ENC_TYPED,
            .meta = j->meta.data,
            .meta_len = (uint32_t)j->meta.len,
        };
        if (j->key) {
            derive_id(j, k, &j->in[k].id);
            j->in[k].has_id = true;
        }
    }
    j->a = (log_append){
        .stream = j->stream.data,
        .stream_len = (uint32_t)j->stream.len,
        .expected = j->agg ? (j->decided_version >= 0 ? j->decided_version : LOG_EXPECT_NO_STREAM) : LOG_EXPECT_ANY,
        .events = j->in,
        .nevents = j->nev,
    };
}

/* The job's append completed; a failed one leaves the state wrong. */
static void settle_entry(job *j, bool ok)
{
    if (!j->entry)
        return;
    pthread_mutex_lock(&j->entry->mu);
    j->entry->unsettled -= j->nev;
    if (!ok)
        j->entry->valid = false;
    pthread_mutex_unlock(&j->entry->mu);
}

/* A cached state is current unless the stream moved without us: a raw
 * append to it, or another writer's.  With nothing of ours in flight, the
 * log's version must be the state's. */
static bool entry_current(job *j, centry *e)
{
    return e->valid && (e->unsettled > 0 || log_stream_version(j->en->log, e->stream, e->stream_len) == e->version);
}

static void let_go(job *j)
{
    if (j->entry)
        cache_release(j->en, j->entry);
    j->entry = NULL;
}

/* The writer thread: the append is durable or failed; the job goes on in
 * whichever thread its owner wakes. */
static void job_appended(void *ctx)
{
    job *j = ctx;
    j->wake(j->wake_ctx);
}

/* 3-5 under the entry's lock: state, decision, submission. */
static payi_code decide_and_submit(job *j)
{
    cmd_engine *en = j->en;
    uint32_t nc = j->c->fields->nfields;
    j->nev = 0;
    buf_reset(&j->data);
    j->sub = NULL;
    j->waiting = false;
    if (j->agg) {
        bool hit;
        j->entry = cache_acquire(en, (uint32_t)j->c->aggregate, j->stream.data, (uint32_t)j->stream.len, &hit);
        pthread_mutex_lock(&j->entry->mu);
        hit = hit && entry_current(j, j->entry);
        atomic_fetch_add(hit ? &en->hits : &en->misses, 1);
        payi_code rc = hit ? PAYI_OK : rebuild_state(j, j->entry);
        if (rc != PAYI_OK) {
            pthread_mutex_unlock(&j->entry->mu);
            let_go(j);
            return job_fail(j, rc, &j->err);
        }
        state_read(j->agg->state, &j->entry->state, j->cols + nc);
        j->decided_version = j->entry->version;
    }
    payi_code rc = j->c->lua ? decide_lua(j) : decide_declarative(j);
    if (rc == PAYI_OK && j->nev > 0) {
        build_append(j);
        rc = log_validate(en->log, &j->a, &j->err);   /* sizes: the writer checks nothing */
    }
    if (rc == PAYI_OK && j->nev > 0) {
        j->waiting = true;
        /* The decision holds only after the state's last event: if that
         * one is still in flight and fails, its version slot may be taken
         * by another append, and the version alone would match. */
        j->a.check_prev = j->agg && j->decided_version >= 0;
        if (j->a.check_prev)
            j->a.prev_id = j->entry->last_id;
        if (j->wake)
            log_submit_cb(en->log, &j->a, 1, false, job_appended, j);
        else
            j->sub = log_submit(en->log, &j->a, 1, false);
        if (j->agg) {   /* the state now includes what was just submitted */
            buf_reset(&j->next_state);
            schema_encode(j->agg->state, j->cols + nc, &j->next_state);
            buf tmp = j->entry->state;
            j->entry->state = j->next_state;
            j->next_state = tmp;
            j->entry->version += j->nev;
            j->entry->unsettled += j->nev;
            j->entry->last_id = j->in[j->nev - 1].id;   /* set by the submission, in this thread */
        }
    }
    if (j->agg)
        pthread_mutex_unlock(&j->entry->mu);
    if (rc != PAYI_OK || j->nev == 0)
        let_go(j);
    if (rc != PAYI_OK)
        return job_fail(j, rc, &j->err);
    return PAYI_OK;
}

/* The outstanding append completed: done, or (on a conflict) decided again,
 * which may leave a new append outstanding. */
static payi_code settle(job *j)
{
    j->waiting = false;
    payi_code rc = j->a.status;
    settle_entry(j, rc == PAYI_OK);
    let_go(j);
    if (rc == PAYI_OK)
        return j->rc = PAYI_OK;
    if (rc != PAYI_CONFLICT || j->tries >= j->en->opt.max_retries)
        return job_fail(j, rc, &j->a.err);
    j->tries++;
    atomic_fetch_add(&j->en->retried, 1);
    expr_ctx_reset(&j->ctx);
    /* the body is unchanged, but its decoded text may have lived in the arena */
    if (job_decode(j, j->doc.src, j->doc.src_len) != PAYI_OK)
        return j->rc;
    return decide_and_submit(j);
}

/* A synchronous job: wait for each append, deciding again on conflicts. */
static payi_code finish(job *j)
{
    while (j->rc == PAYI_OK && j->waiting) {
        log_wait(j->en->log, j->sub);
        j->sub = NULL;
        settle(j);
    }
    return j->rc;
}

static void write_answer(const job *j, int *status, buf *out)
{
    bool any = j->nev > 0;
    *status = any ? 201 : 200;
    buf_puts(out, "{\"position\":");
    if (any)
        buf_put_u64(out, j->in[j->nev - 1].position);
    else
        buf_puts(out, "null");
    buf_puts(out, ",\"stream\":");
    json_put_string(out, j->stream.data, j->stream.len);
    buf_puts(out, ",\"version\":");
    int64_t v = any ? (int64_t)j->in[j->nev - 1].version : j->decided_version;
    if (j->agg || any)
        buf_put_i64(out, v);
    else
        buf_puts(out, "null");
    buf_puts(out, ",\"events\":[");
    for (uint32_t k = 0; k < j->nev; k++) {
        const log_event_in *in = &j->in[k];
        log_event ev = {
            .position = in->position, .offset = in->position, .stream = j->stream.data,
            .stream_len = (uint32_t)j->stream.len, .version = in->version, .type = in->type,
            .type_len = in->type_len, .id = in->id, .time_ns = in->time_ns, .encoding = LOG_ENC_TYPED,
            .data = in->data, .data_len = in->data_len, .meta = in->meta, .meta_len = in->meta_len,
        };
        if (k)
            buf_putc(out, ',');
        evjson_write_event(out, &ev, j->en->reg);   /* the registry has the spec's schemas (cmd_open checks) */
    }
    buf_puts(out, "]");
    if (j->nev && j->in[0].duplicate)
        buf_puts(out, ",\"duplicate\":true");
    buf_putc(out, '}');
}

/* An NDJSON line's answer: where the command's events went, without them. */
static void write_ack(const job *j, buf *out)
{
    buf_puts(out, "{\"position\":");
    if (j->nev)
        buf_put_u64(out, j->in[j->nev - 1].position);
    else
        buf_puts(out, "null");
    buf_puts(out, ",\"stream\":");
    json_put_string(out, j->stream.data, j->stream.len);
    buf_puts(out, ",\"version\":");
    if (j->nev)
        buf_put_u64(out, j->in[j->nev - 1].version);
    else if (j->agg)
        buf_put_i64(out, j->decided_version);
    else
        buf_puts(out, "null");
    buf_printf(out, ",\"events\":%u}", j->nev);
}

/* ------------------------------------------------------- idempotency */

static void idem_init(idem_table *t, uint32_t max)
{
    pthread_mutex_init(&t->mu, NULL);
    t->max = max ? max : 1;
    t->nbuckets = 16;
    while (t->nbuckets < t->max)
        t->nbuckets <<= 1;
    t->buckets = xcalloc(t->nbuckets, sizeof *t->buckets);
}

static void idem_free_entry(idem_entry *e)
{
    buf_release(&e->answer);
    free(e->key);
    free(e);
}

static void idem_release(idem_table *t)
{
    for (idem_entry *e = t->head, *n; e; e = n) {
        n = e->next;
        idem_free_entry(e);
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
}

static void idem_unlink(idem_table *t, idem_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->tail = e->prev;
    idem_entry **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    t->count--;
}

static idem_entry *idem_find(idem_table *t, uint64_t h, const char *key, size_t len)
{
    for (idem_entry *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static idem_entry *idem_insert(idem_table *t, uint64_t h, const char *key, size_t len, uint64_t body_hash)
{
    for (idem_entry *e = t->tail; t->count >= t->max && e;) {   /* forget the oldest finished answers */
        idem_entry *prev = e->prev;
        if (e->state == IDEM_DONE) {
            idem_unlink(t, e);
            idem_free_entry(e);
        }
        e = prev;
    }
    idem_entry *e = xcalloc(1, sizeof *e);
    e->hash = h;
    e->key = xstrndup(key, len);
    e->key_len = len;
    e->body_hash = body_hash;
    e->state = IDEM_PENDING;
    idem_entry **b = &t->buckets[h & (t->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    e->next = t->head;
    if (t->head)
        t->head->prev = e;
    t->head = e;
    if (!t->tail)
        t->tail = e;
    t->count++;
    return e;
}

/* An answer worth repeating: success or a refusal that the same request
 * would get again.  Retryable failures (5xx, conflicts) are forgotten. */
static bool final_answer(payi_code rc)
{
    return rc == PAYI_OK || rc == PAYI_VALIDATION || rc == PAYI_BAD_JSON || rc == PAYI_REJECTED;
}

/* ------------------------------------------------------------- api */

void cmd_options_default(cmd_options *o)
{
    o->cache_entries = 100000;
    o->max_retries = 8;
    o->idempotency_keys = 100000;
    luafn_limits_default(&o->lua);
}

static luafn *lua_new_state(cmd_engine *en, payi_err *err)
{
    luafn *L;
    if (luafn_open(&L, &en->opt.lua, err) != PAYI_OK)
        return NULL;
    for (uint32_t k = 0; k < en->spec->ncommands; k++) {
        const spec_command *c = &en->spec->commands[k];
        if (!c->lua)
            continue;
        int h;
        if (luafn_load(L, en->spec->file, c->lua_line, c->lua, c->lua_len, "decide", &h, err) != PAYI_OK) {
            luafn_close(L);
            return NULL;
        }
        en->lua_handle[k] = h;
    }
    return L;
}

payi_code cmd_check_lua(const payi_spec *spec, const luafn_limits *lim, payi_err *err)
{
    luafn *L = NULL;
    payi_code rc = luafn_open(&L, lim, err);
    for (uint32_t k = 0; rc == PAYI_OK && k < spec->ncommands; k++) {
        const spec_command *c = &spec->commands[k];
        int h;
        if (c->lua)
            rc = luafn_load(L, spec->file, c->lua_line, c->lua, c->lua_len, "decide", &h, err);
    }
    if (L)
        luafn_close(L);
    return rc;
}

static luafn *lua_take(cmd_engine *en, payi_err *err)
{
    pthread_mutex_lock(&en->lua_mu);
    luafn *L = en->nlua ? en->lua_pool[--en->nlua] : NULL;
    pthread_mutex_unlock(&en->lua_mu);
    if (!L && !(L = lua_new_state(en, err)))
        err->code = PAYI_HANDLER;
    return L;
}

static void lua_give(cmd_engine *en, luafn *L)
{
    pthread_mutex_lock(&en->lua_mu);
    en->lua_pool = xgrow(en->lua_pool, &en->lua_cap, en->nlua + 1, sizeof *en->lua_pool);
    en->lua_pool[en->nlua++] = L;
    pthread_mutex_unlock(&en->lua_mu);
}

payi_code cmd_open(cmd_engine **out, payi_log *log, const payi_spec *spec, const registry *reg,
                   const cmd_options *o, payi_err *err)
{
    *out = NULL;
    for (uint32_t k = 0; k < spec->nevents; k++)
        if (spec->events[k]->id == SCHEMA_NO_ID || registry_by_id(reg, spec->events[k]->id) == NULL)
            return payi_err_set(err, PAYI_INTERNAL, NULL, "event type %s has no registered schema",
                                spec->events[k]->name);
    cmd_engine *en = xcalloc(1, sizeof *en);
    en->log = log;
    en->spec = spec;
    en->reg = reg;
    if (o)
        en->opt = *o;
    else
        cmd_options_default(&en->opt);
    shards_init(en);
    idem_init(&en->idem, en->opt.idempotency_keys);
    pthread_mutex_init(&en->lua_mu, NULL);
    pthread_mutex_init(&en->free_mu, NULL);
    en->lua_handle = xcalloc(spec->ncommands + 1, sizeof *en->lua_handle);
    bool any_lua = false;
    for (uint32_t k = 0; k < spec->ncommands; k++)
        any_lua |= spec->commands[k].lua != NULL;
    if (any_lua) {   /* compile now: a mistake in the Lua stops the start, not the first command */
        luafn *L = lua_new_state(en, err);
        if (!L) {
            cmd_close(en);
            return err->code == PAYI_OK ? PAYI_VALIDATION : err->code;
        }
        lua_give(en, L);
    }
    *out = en;
    return PAYI_OK;
}

static void free_calls_release(cmd_engine *en);

void cmd_close(cmd_engine *en)
{
    if (!en)
        return;
    shards_release(en);
    idem_release(&en->idem);
    free_calls_release(en);
    for (size_t k = 0; k < en->nlua; k++)
        luafn_close(en->lua_pool[k]);
    free(en->lua_pool);
    free(en->lua_handle);
    pthread_mutex_destroy(&en->lua_mu);
    free(en);
}

static payi_code job_start(job *j, const char *name, size_t name_len, const char *body, size_t body_len)
{
    int ci = spec_find_command(j->en->spec, name, name_len);
    if (ci < 0)
        return j->rc = payi_err_set(&j->err, PAYI_UNKNOWN_COMMAND, NULL, "the spec has no command \"%.*s\"",
                                    (int)(name_len > 100 ? 100 : name_len), name);
    j->cmd = ci;
    j->c = &j->en->spec->commands[ci];
    j->agg = j->c->aggregate >= 0 ? &j->en->spec->aggregates[j->c->aggregate] : NULL;
    if (job_decode(j, body, body_len) != PAYI_OK)
        return j->rc;
    return decide_and_submit(j);
}

static void count_outcome(cmd_engine *en, payi_code rc)
{
    atomic_fetch_add(&en->executed, 1);
    if (rc == PAYI_REJECTED)
        atomic_fetch_add(&en->rejected, 1);
    else if (rc != PAYI_OK)
        atomic_fetch_add(&en->failed, 1);
}

struct cmd_call {
    job j;
    bool keyed;                    /* an Idempotency-Key entry waits for the outcome */
    uint64_t idem_hash;
    buf idem_key;                  /* "<command>\n<key>" */
    cmd_call *next_free;
};

#define MAX_FREE_CALLS 1024   /* an NDJSON batch of up to this many lines allocates nothing once warm */

/* Calls are recycled with the memory their buffers grew: a warm command
 * allocates nothing of its own. */
static cmd_call *call_new(cmd_engine *en)
{
    pthread_mutex_lock(&en->free_mu);
    cmd_call *c = en->free_calls;
    if (c) {
        en->free_calls = c->next_free;
        en->nfree--;
    }
    pthread_mutex_unlock(&en->free_mu);
    if (!c) {
        c = xmalloc(sizeof *c);
        job_init(&c->j, en);
        c->idem_key = (buf)BUF_INIT;
    }
    c->keyed = false;
    c->idem_hash = 0;
    c->next_free = NULL;
    return c;
}

static void call_free(cmd_engine *en, cmd_call *c)
{
    job_reuse(&c->j);
    buf_reset(&c->idem_key);
    pthread_mutex_lock(&en->free_mu);
    bool keep = en->nfree < MAX_FREE_CALLS;
    if (keep) {
        c->next_free = en->free_calls;
        en->free_calls = c;
        en->nfree++;
    }
    pthread_mutex_unlock(&en->free_mu);
    if (!keep) {
        job_release(&c->j);
        buf_release(&c->idem_key);
        free(c);
    }
}

/* Remember the outcome for the key: final answers are kept, retryable
 * failures forgotten, so that a retry runs again. */
static void idem_finish(cmd_engine *en, cmd_call *c, payi_code rc, int status, const char *ans, size_t len,
                        const payi_err *err)
{
    idem_table *t = &en->idem;
    pthread_mutex_lock(&t->mu);
    idem_entry *e = idem_find(t, c->idem_hash, c->idem_key.data, c->idem_key.len);   /* pending: never evicted */
    if (e && final_answer(rc)) {
        e->state = IDEM_DONE;
        e->code = rc;
        e->status = rc == PAYI_OK ? status : payi_code_http(rc);
        if (rc == PAYI_OK)
            buf_put(&e->answer, ans, len);
        else
            e->err = *err;
    } else if (e) {
        idem_unlink(t, e);
        idem_free_entry(e);
    }
    pthread_mutex_unlock(&t->mu);
}

static void free_calls_release(cmd_engine *en)
{
    for (cmd_call *c = en->free_calls, *n; c; c = n) {
        n = c->next_free;
        job_release(&c->j);
        buf_release(&c->idem_key);
        free(c);
    }
    en->free_calls = NULL;
    pthread_mutex_destroy(&en->free_mu);
}

typedef struct originals {
    const job *j;
    buf *out;
    uint32_t n;
    int64_t version;
} originals;

static int put_original(void *ctx, const log_event *ev)
{
    originals *o = ctx;
    payi_uuid want;
    derive_id(o->j, o->n, &want);
    if (memcmp(want.b, ev->id.b, 16) != 0 || ev->stream_len != o->j->stream.len ||
        memcmp(ev->stream, o->j->stream.data, ev->stream_len) != 0)
        return 1;   /* past the command's events */
    if (o->n++)
        buf_putc(o->out, ',');
    evjson_write_event(o->out, ev, o->j->en->reg);
    o->version = (int64_t)ev->version;
    return 0;
}

/* A keyed command the engine does not remember (a restart, or an evicted
 * key) that now fails, or whose events the log found repeated: if the log
 * holds the events of its first run (their ids derive from the key), the
 * first answer is rebuilt from them. */
static bool first_answer_from_log(job *j, int *status, buf *answer)
{
    if (!j->stream.len)
        return false;
    log_event_in probe = {.type = "probe", .type_len = 5, .data = "{}", .data_len = 2, .has_id = true};
    derive_id(j, 0, &probe.id);
    log_append a = {.stream = j->stream.data, .stream_len = (uint32_t)j->stream.len, .expected = LOG_EXPECT_ANY,
                    .events = &probe, .nevents = 1, .probe = true};
    if (log_append_one(j->en->log, &a) != PAYI_OK)
        return false;
    buf events = BUF_INIT;
    originals o = {j, &events, 0, -1};
    payi_err err;
    payi_code rc = log_read_all(j->en->log, probe.position, MAX_EVENTS_PER_COMMAND, false, put_original, &o, &err);
    bool ok = rc == PAYI_OK && o.n > 0;
    if (ok) {
        buf_puts(answer, "{\"position\":");
        buf_put_u64(answer, probe.position + o.n - 1);
        buf_puts(answer, ",\"stream\":");
        json_put_string(answer, j->stream.data, j->stream.len);
        buf_puts(answer, ",\"version\":");
        buf_put_i64(answer, o.version);
        buf_puts(answer, ",\"events\":[");
        buf_put(answer, events.data, events.len);
        buf_puts(answer, "]}");
        *status = 201;
    }
    buf_release(&events);
    return ok;
}

/* A run-time expression error ends with " (at N)", an offset into the spec's
 * expression: meaningful to whoever wrote the spec, noise to a client. */
static void strip_expr_pos(payi_err *err)
{
    size_t pos;
    char *at = strstr(err->msg, " (at ");
    if (!expr_error_pos(err, &pos) || !at)
        return;
    for (char *next; (next = strstr(at + 1, " (at "));)
        at = next;
    *at = '\0';
}

/* The call is over: its answer or error out, its key updated, its memory freed. */
static payi_code call_outcome(cmd_call *c, int *status, buf *answer, payi_err *err)
{
    job *j = &c->j;
    payi_code rc = j->rc;
    size_t mark = answer->len;
    bool repeated = rc == PAYI_OK && j->nev > 0 && j->in[0].duplicate;
    if (c->keyed && (repeated || rc == PAYI_REJECTED || rc == PAYI_VALIDATION) &&
        first_answer_from_log(j, status, answer))
        rc = PAYI_OK;
    else if (rc == PAYI_OK)
        write_answer(j, status, answer);
    else {
        strip_expr_pos(&j->err);
        *err = j->err;
    }
    count_outcome(j->en, rc);
    if (c->keyed)
        idem_finish(j->en, c, rc, *status, answer->data + mark, answer->len - mark, err);
    call_free(j->en, c);
    return rc;
}

/* Idempotency-Key: a repeated answer (returns true with *rc set), or a new
 * pending entry for this call. */
static bool idem_lookup(cmd_engine *en, cmd_call *c, const char *name, size_t name_len, const char *body,
                        size_t body_len, const char *key, size_t key_len, payi_code *rc, int *status, buf *answer,
                        payi_err *err)
{
    buf_put(&c->idem_key, name, name_len);
    buf_putc(&c->idem_key, '\n');
    buf_put(&c->idem_key, key, key_len);
    c->idem_hash = hash_mix64(hash_fnv1a(c->idem_key.data, c->idem_key.len, HASH_FNV_SEED));
    uint64_t bh = hash_fnv1a(body, body_len, HASH_FNV_SEED);
    idem_table *t = &en->idem;
    pthread_mutex_lock(&t->mu);
    idem_entry *e = idem_find(t, c->idem_hash, c->idem_key.data, c->idem_key.len);
    if (!e) {
        idem_insert(t, c->idem_hash, c->idem_key.data, c->idem_key.len, bh);
        c->keyed = true;
    } else if (e->body_hash != bh) {
        *rc = payi_err_set(err, PAYI_VALIDATION, "Idempotency-Key",
                           "this Idempotency-Key was used with a different request body");
    } else if (e->state == IDEM_PENDING) {
        *rc = payi_err_set(err, PAYI_CONFLICT, "Idempotency-Key",
                           "a request with this Idempotency-Key is still being processed");
    } else {
        *rc = e->code;
        *status = e->status;
        if (e->code == PAYI_OK)
            buf_put(answer, e->answer.data, e->answer.len);
        else
            *err = e->err;
    }
    pthread_mutex_unlock(&t->mu);
    return e != NULL;
}

payi_code cmd_start(cmd_engine *en, const char *name, size_t name_len, const char *body, size_t body_len,
                    const char *key, size_t key_len, cmd_wake_fn wake, void *wake_ctx, cmd_call **pending,
                    int *status, buf *answer, payi_err *err)
{
    *pending = NULL;
    if (key && (key_len == 0 || key_len > 255))
        return payi_err_set(err, PAYI_VALIDATION, "Idempotency-Key", "Idempotency-Key must be 1 to 255 bytes");
    cmd_call *c = call_new(en);
    payi_code rc;
    if (key && idem_lookup(en, c, name, name_len, body, body_len, key, key_len, &rc, status, answer, err)) {
        call_free(en, c);
        return rc;
    }
    job *j = &c->j;
    j->key = key;
    j->key_len = key_len;
    j->wake = wake;
    j->wake_ctx = wake_ctx;
    if (key) {   /* the job outlives the caller's header string */
        j->key = c->idem_key.data + name_len + 1;
    }
    job_start(j, name, name_len, body, body_len);
    if (j->rc == PAYI_OK && j->waiting) {
        if (wake) {
            *pending = c;
            return PAYI_OK;
        }
        finish(j);
    }
    return call_outcome(c, status, answer, err);
}

payi_code cmd_resume(cmd_call *c, int *status, buf *answer, payi_err *err)
{
    c->j.wake = NULL;   /* a retry waits here */
    settle(&c->j);
    finish(&c->j);
    return call_outcome(c, status, answer, err);
}

payi_code cmd_execute(cmd_engine *en, const char *name, size_t name_len, const char *body, size_t body_len,
                      const char *key, size_t key_len, int *status, buf *answer, payi_err *err)
{
    cmd_call *pending;
    return cmd_start(en, name, name_len, body, body_len, key, key_len, NULL, NULL, &pending, status, answer, err);
}

static void write_error_line(buf *out, const payi_err *err, uint32_t lineno)
{
    buf_puts(out, "{\"error\":{\"code\":");
    const char *w = payi_code_word(err->code);
    json_put_string(out, w, strlen(w));
    buf_puts(out, ",\"message\":");
    json_put_string(out, err->msg, strlen(err->msg));
    if (err->field[0]) {
        buf_puts(out, ",\"field\":");
        json_put_string(out, err->field, strlen(err->field));
    }
    buf_printf(out, ",\"line\":%u}}", lineno);
}

size_t cmd_execute_ndjson(cmd_engine *en, const char *name, size_t name_len, const char *body, size_t body_len,
                          buf *out)
{
    /* Every line is decided and submitted before the first wait, so that the
     * batch shares group commits.  Each line submits at once, under its
     * stream's lock: submitting the batch's appends together at the end let
     * other connections' commands decided later reach the log first, and
     * conflict (measured: 100x slower with 16 concurrent batches). */
    size_t nlines = 0, ncalls_cap = 0, failed = 0;
    cmd_call **calls = NULL;
    uint32_t *linenos = NULL;
    size_t lcap = 0;
    uint32_t lineno = 0;
    const char *p = body, *end = body + body_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t len = (size_t)(le - p);
        while (len && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        lineno++;
        if (len > 0) {
            linenos = xgrow(linenos, &lcap, nlines + 1, sizeof *linenos);
            linenos[nlines] = lineno;
            calls = xgrow(calls, &ncalls_cap, nlines + 1, sizeof *calls);
            cmd_call *c = calls[nlines++] = call_new(en);
            job_start(&c->j, name, name_len, p, len);
        }
        p = nl ? nl + 1 : end;
    }
    for (size_t k = 0; k < nlines; k++) {
        job *j = &calls[k]->j;
        payi_code rc = finish(j);
        if (rc == PAYI_OK)
            write_ack(j, out);
        else {
            strip_expr_pos(&j->err);
            write_error_line(out, &j->err, linenos[k]);
            failed++;
        }
        buf_putc(out, '\n');
        count_outcome(en, rc);
        call_free(en, calls[k]);
    }
    free(calls);
    free(linenos);
    return failed;
}

void cmd_get_stats(cmd_engine *en, cmd_stats *s)
{
    memset(s, 0, sizeof *s);
    s->executed = atomic_load(&en->executed);
    s->rejected = atomic_load(&en->rejected);
    s->failed = atomic_load(&en->failed);
    s->conflicts_retried = atomic_load(&en->retried);
    s->cache_hits = atomic_load(&en->hits);
    s->cache_misses = atomic_load(&en->misses);
    for (int k = 0; k < CACHE_SHARDS; k++) {
        pthread_mutex_lock(&en->shards[k].mu);
        s->cache_entries += en->shards[k].count;
        pthread_mutex_unlock(&en->shards[k].mu);
    }
}

/* ------------------------------------------------------- dry runs */

void cmd_decision_init(cmd_decision *d)
{
    *d = (cmd_decision){.command = BUF_INIT, .stream = BUF_INIT, .data = BUF_INIT, .state = BUF_INIT};
}

void cmd_decision_release(cmd_decision *d)
{
    buf_release(&d->command);
    buf_release(&d->stream);
    buf_release(&d->data);
    buf_release(&d->state);
    free(d->events);
    cmd_decision_init(d);
}

static void decision_reset(cmd_decision *d)
{
    buf_reset(&d->command);
    buf_reset(&d->stream);
    buf_reset(&d->data);
    buf_reset(&d->state);
    d->nevents = 0;
}

/* An engine that can only decide: the spec and a Lua pool, no log, cache or
 * keys.  decide_declarative and decide_lua read nothing else of it. */
static cmd_engine *dry_engine_new(const payi_spec *spec)
{
    cmd_engine *en = xcalloc(1, sizeof *en);
    en->spec = spec;
    cmd_options_default(&en->opt);
    pthread_mutex_init(&en->lua_mu, NULL);
    en->lua_handle = xcalloc(spec->ncommands + 1, sizeof *en->lua_handle);
    return en;
}

static void dry_engine_free(cmd_engine *en)
{
    for (size_t k = 0; k < en->nlua; k++)
        luafn_close(en->lua_pool[k]);
    free(en->lua_pool);
    free(en->lua_handle);
    pthread_mutex_destroy(&en->lua_mu);
    free(en);
}

/* The state slots the decision starts from: the caller's record, checked
 * (its text stays the caller's for the call), or the DEFAULTs. */
static payi_code dry_state(job *j, const char *state, size_t state_len)
{
    const ev_schema *st = j->agg->state;
    expr_value *slots = j->cols + j->c->fields->nfields;
    if (state_len == 0) {
        state_defaults(st, slots);
        return PAYI_OK;
    }
    payi_err e;
    if (schema_check_data(st, state, state_len, &e) != PAYI_OK)
        return payi_err_set(&j->err, PAYI_VALIDATION, NULL, "the state is not a record of aggregate %s: %s", st->name,
                            e.msg);
    for (uint32_t k = 0; k < st->nfields; k++)
        schema_get(st, state, state_len, k, &slots[k]);
    return PAYI_OK;
}

static void dry_output(const job *j, cmd_decision *d)
{
    schema_encode(j->c->fields, j->cols, &d->command);
    buf_put(&d->stream, j->stream.data, j->stream.len);
    buf_put(&d->data, j->data.data, j->data.len);
    d->events = xrealloc(d->events, (j->nev + 1) * sizeof *d->events);
    for (uint32_t k = 0; k < j->nev; k++)
        d->events[k] = (cmd_decided_event){j->evs[k].event, j->evs[k].data_off, j->evs[k].data_len};
    d->nevents = j->nev;
    if (j->agg)
        schema_encode(j->agg->state, j->cols + j->c->fields->nfields, &d->state);
}

payi_code cmd_decide(const payi_spec *spec, const char *name, size_t name_len, const char *body, size_t body_len,
                     const char *state, size_t state_len, cmd_decision *d, payi_err *err)
{
    decision_reset(d);
    int ci = spec_find_command(spec, name, name_len);
    if (ci < 0)
        return payi_err_set(err, PAYI_UNKNOWN_COMMAND, NULL, "the spec has no command \"%.*s\"",
                            (int)(name_len > 100 ? 100 : name_len), name);
    cmd_engine *en = dry_engine_new(spec);
    job *j = xmalloc(sizeof *j);
    job_init(j, en);
    j->cmd = ci;
    j->c = &spec->commands[ci];
    j->agg = j->c->aggregate >= 0 ? &spec->aggregates[j->c->aggregate] : NULL;
    payi_code rc = job_decode(j, body, body_len);
    if (rc == PAYI_OK && j->agg)
        rc = dry_state(j, state, state_len);
    if (rc == PAYI_OK)
        rc = j->c->lua ? decide_lua(j) : decide_declarative(j);
    if (rc == PAYI_OK) {
        dry_output(j, d);
    } else {   /* what a client would read: cmd_execute's error */
        strip_expr_pos(&j->err);
        j->err.code = rc;
        if (err)
            *err = j->err;
    }
    job_release(j);
    free(j);
    dry_engine_free(en);
    return rc;
}
