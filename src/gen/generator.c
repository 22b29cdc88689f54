/* generator.c — the generator engine (see generator.h for the contract).
 *
 * Design.
 *
 * One thread per generator.  At start it subscribes to the log from
 * position 0 and replays every input: the series state of each key is
 * rebuilt from history (batch) and then follows new events (live) through
 * the same subscription and the same code.
 *
 * Per input event: decode its fields (typed record, or JSON for events
 * written before the type was declared), evaluate KEY, DAY and VALUE
 * compiled over that type's fields, find the key's series (a hash map of
 * key -> series), fill the days between its last day and this one with 0,
 * then push this day.  The kind answers rows; each row becomes one event of
 * the EMIT type, typed, in stream "<generator>-<key>".
 *
 * Appends are gathered and submitted in batches (when the log is drained
 * or 4,096 events are pending), one log_append per derived event, each with
 * its derived id (FNV-1a of generator, key and row number, as UUID version
 * 8): the log answers an id it already holds with the original position
 * ("duplicate"), so replaying from 0 after a restart appends nothing twice.
 * The status position moves only after a batch is durable.
 *
 * Invariants: a key's days reach its kind strictly increasing and gapless;
 * a derived event's id depends only on (generator, key, row number), and
 * row numbers depend only on the key's series: the same history gives the
 * same ids.
 */
#include "gen/generator.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/thread.h"
#include "base/timefmt.h"
#include "gen/forecast.h"
#include "gen/rt.h"

#define FLUSH_EVENTS 4096
#define HEAD_QUIET_MS 50         /* no input for this long before a look ahead (at_head kinds) */
#define MAX_ROWS 64              /* rows one day may produce (a forecast's horizon) */
#define KIND_MAX_PARAMS 8
#define KIND_MAX_FIELDS 8

/* ------------------------------------------------------------ kinds */

typedef struct kind_field {
    const char *name;
    expr_type type;
} kind_field;

typedef struct gen_kind {
    const char *name;
    const char *params[KIND_MAX_PARAMS];
    double defaults[KIND_MAX_PARAMS];
    kind_field fields[KIND_MAX_FIELDS];   /* besides the key; NULL name ends */
    payi_code (*open)(void **series, const double *params, payi_err *err);
    void (*close)(void *series);
    /* The next day of the series: rows (nfields values each, in fields
     * order) into rows; returns their number (<= MAX_ROWS). */
    size_t (*push)(void *series, int64_t day, int64_t value, expr_value *rows);
    int64_t (*clamped)(const void *series);
    /* Kinds that look ahead answer at the head of the log instead, for each
     * key whose series moved since the last time: rows (as push) made from
     * the series up to its last day, returned in *origin. */
    size_t (*at_head)(void *series, int64_t *origin, expr_value *rows);
} gen_kind;

static uint32_t kind_nfields(const gen_kind *k)
{
    uint32_t n = 0;
    while (n < KIND_MAX_FIELDS && k->fields[n].name)
        n++;
    return n;
}

static uint32_t kind_nparams(const gen_kind *k)
{
    uint32_t n = 0;
    while (n < KIND_MAX_PARAMS && k->params[n])
        n++;
    return n;
}

/* rt_cori: params si_mean, si_sd, window, prior_mean, prior_sd */

typedef struct rt_series {
    rt_state *st;
    int64_t first_day;
} rt_series;

/* The Rt state both kinds start from: params si_mean, si_sd, window,
 * prior_mean, prior_sd in prm[0..4]; only the quantiles asked for. */
static payi_code open_rt_state(const double *prm, unsigned quantiles, rt_state **out, payi_err *err)
{
    enum { SI_N = 256 };
    double w[SI_N];
    payi_code rc = rt_discr_si(prm[0], prm[1], SI_N, w, err);
    if (rc != PAYI_OK)
        return rc;
    rt_config cfg;
    rt_config_default(&cfg);
    cfg.window = (int)prm[2];
    cfg.prior_mean = prm[3];
    cfg.prior_sd = prm[4];
    cfg.quantiles = quantiles;
    return rt_open(out, w, SI_N, &cfg, err);
}

static payi_code rt_kind_open(void **out, const double *prm, payi_err *err)
{
    rt_series *s = xcalloc(1, sizeof *s);
    /* the quantiles the events carry */
    payi_code rc = open_rt_state(prm, 1u << RT_MEDIAN | 1u << RT_Q025 | 1u << RT_Q975, &s->st, err);
    if (rc != PAYI_OK) {
        free(s);
        return rc;
    }
    s->first_day = INT64_MIN;
    *out = s;
    return PAYI_OK;
}

static void rt_kind_close(void *p)
{
    rt_series *s = p;
    if (s)
        rt_close(s->st);
    free(s);
}

static size_t rt_kind_push(void *p, int64_t day, int64_t value, expr_value *rows)
{
    rt_series *s = p;
    if (s->first_day == INT64_MIN)
        s->first_day = day;
    rt_estimate e;
    if (!rt_push(s->st, value, &e))
        return 0;
    rows[0] = expr_date(s->first_day + e.t_end - 1);
    rows[1] = expr_double(e.mean);
    rows[2] = expr_double(e.sd);
    rows[3] = expr_double(e.q[RT_MEDIAN]);
    rows[4] = expr_double(e.q[RT_Q025]);
    rows[5] = expr_double(e.q[RT_Q975]);
    return 1;
}

static int64_t rt_kind_clamped(const void *p) { return rt_clamped(((const rt_series *)p)->st); }

/* renewal_forecast: params si_mean, si_sd, window, prior_mean, prior_sd (as
 * rt_cori: the Rt that drives the forecast), horizon, paths, r_max. */

enum { FORECAST_FIELDS = 5 };    /* origin_day, day, median, q025, q975 */

typedef struct forecast_series {
    rt_state *st;
    int64_t first_day;
    bool estimated;              /* the last day pushed ended an Rt window */
    double shape, scale;         /* its posterior */
    forecast_config cfg;
} forecast_series;

static payi_code forecast_kind_open(void **out, const double *prm, payi_err *err)
{
    if (!(prm[5] >= 1 && prm[5] <= MAX_ROWS && prm[5] == floor(prm[5])))
        return payi_err_set(err, PAYI_VALIDATION, "horizon", "horizon must be a whole number of days from 1 to %d",
                            MAX_ROWS);
    if (!(prm[6] >= 1 && prm[6] <= 100000 && prm[6] == floor(prm[6])))
        return payi_err_set(err, PAYI_VALIDATION, "paths", "paths must be a whole number from 1 to 100000");
    if (!(prm[7] > 0))
        return payi_err_set(err, PAYI_VALIDATION, "r_max", "r_max must be > 0");
    forecast_series *s = xcalloc(1, sizeof *s);
    payi_code rc = open_rt_state(prm, 0, &s->st, err);   /* only the posterior's shape and scale are used */
    if (rc != PAYI_OK) {
        free(s);
        return rc;
    }
    forecast_config_default(&s->cfg);
    s->cfg.horizon = (int)prm[5];
    s->cfg.paths = (int)prm[6];
    s->cfg.r_max = prm[7];
    s->first_day = INT64_MIN;
    *out = s;
    return PAYI_OK;
}

static void forecast_kind_close(void *p)
{
    forecast_series *s = p;
    if (s)
        rt_close(s->st);
    free(s);
}

static size_t forecast_kind_push(void *p, int64_t day, int64_t value, expr_value *rows)
{
    (void)rows;
    forecast_series *s = p;
    if (s->first_day == INT64_MIN)
        s->first_day = day;
    rt_estimate e;
    s->estimated = rt_push(s->st, value, &e);
    if (s->estimated) {
        s->shape = e.shape;
        s->scale = e.scale;
    }
    return 0;
}

static size_t forecast_kind_at_head(void *p, int64_t *origin, expr_value *rows)
{
    forecast_series *s = p;
    if (!s->estimated)
        return 0;
    size_t nw;
    const double *w = rt_si(s->st, &nw);
    double hist[RT_HISTORY_MIN + 256];
    size_t nh = rt_history(s->st, hist, sizeof hist / sizeof *hist);
    forecast_day out[MAX_ROWS];
    payi_err err;
    if (forecast_renewal(w, nw, hist, nh, s->shape, s->scale, &s->cfg, out, NULL, &err) != PAYI_OK)
        return 0;   /* the inputs were validated at open; nothing here can be refused */
    *origin = s->first_day + rt_days(s->st) - 1;
    for (int h = 0; h < s->cfg.horizon; h++) {
        expr_value *r = rows + (size_t)h * FORECAST_FIELDS;
        r[0] = expr_date(*origin);
        r[1] = expr_date(*origin + out[h].h);
        r[2] = expr_double(out[h].median);
        r[3] = expr_double(out[h].q025);
        r[4] = expr_double(out[h].q975);
    }
    return (size_t)s->cfg.horizon;
}

static int64_t forecast_kind_clamped(const void *p) { return rt_clamped(((const forecast_series *)p)->st); }

static const gen_kind kinds[] = {
    {.name = "rt_cori",
     .params = {"si_mean", "si_sd", "window", "prior_mean", "prior_sd"},
     .defaults = {4.7, 2.9, 7, 5, 5},
     .fields = {{"day", EXPR_DATE}, {"mean", EXPR_DOUBLE}, {"sd", EXPR_DOUBLE}, {"median", EXPR_DOUBLE},
                {"q025", EXPR_DOUBLE}, {"q975", EXPR_DOUBLE}},
     .open = rt_kind_open, .close = rt_kind_close, .push = rt_kind_push, .clamped = rt_kind_clamped},
    {.name = "renewal_forecast",
     .params = {"si_mean", "si_sd", "window", "prior_mean", "prior_sd", "horizon", "paths", "r_max"},
     .defaults = {4.7, 2.9, 7, 5, 5, 14, 1000, 3},
     .fields = {{"origin_day", EXPR_DATE}, {"day", EXPR_DATE}, {"median", EXPR_DOUBLE}, {"q025", EXPR_DOUBLE},
                {"q975", EXPR_DOUBLE}},
     .open = forecast_kind_open, .close = forecast_kind_close, .push = forecast_kind_push,
     .clamped = forecast_kind_clamped, .at_head = forecast_kind_at_head},
};

static const gen_kind *kind_find(const char *name)
{
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        if (strcmp(kinds[k].name, name) == 0)
            return &kinds[k];
    return NULL;
}

/* ------------------------------------------------------------ checking */

static payi_code check_params(const payi_spec *spec, const spec_generator *g, const gen_kind *k, double *out,
                              payi_err *err)
{
    uint32_t np = kind_nparams(k);
    memcpy(out, k->defaults, sizeof k->defaults);
    for (uint32_t i = 0; i < g->nparams; i++) {
        const spec_gen_param *p = &g->params[i];
        uint32_t j = 0;
        while (j < np && strcmp(k->params[j], p->name) != 0)
            j++;
        if (j == np) {
            buf names = BUF_INIT;
            for (uint32_t q = 0; q < np; q++)
                buf_printf(&names, "%s%s", q ? ", " : "", k->params[q]);
            payi_code rc = payi_err_set(err, PAYI_VALIDATION, NULL, "%s:%u:%u: %s has no parameter %s (its parameters: %s)",
                                        spec->file, p->line, p->col, k->name, p->name, names.data ? names.data : "");
            buf_release(&names);
            return rc;
        }
        out[j] = p->value;
    }
    return PAYI_OK;
}

/* The EMIT type must carry the key and the kind's fields; the rest nullable. */
static payi_code check_emit(const payi_spec *spec, const spec_generator *g, const gen_kind *k, payi_err *err)
{
    const ev_schema *es = spec->events[g->emit];
    uint32_t nf = kind_nfields(k);
    for (uint32_t i = 0; i <= nf; i++) {
        const char *name = i == 0 ? g->key_name : k->fields[i - 1].name;
        expr_type want = i == 0 ? EXPR_TEXT : k->fields[i - 1].type;
        int f = schema_field_index(es, name, strlen(name));
        if (f < 0 || es->fields[f].type != want)
            return payi_err_set(err, PAYI_VALIDATION, NULL,
                                "%s:%u:%u: generator %s emits %s, which needs the field %s %s%s", spec->file,
                                g->emit_line, g->emit_col, g->name, es->name, name, expr_type_name(want),
                                f < 0 ? "" : " (it is declared with another type)");
    }
    for (uint32_t f = 0; f < es->nfields; f++) {
        bool ours = strcmp(es->fields[f].name, g->key_name) == 0;
        for (uint32_t i = 0; i < nf && !ours; i++)
            ours = strcmp(es->fields[f].name, k->fields[i].name) == 0;
        if (!ours && es->fields[f].not_null && !es->fields[f].has_default)
            return payi_err_set(err, PAYI_VALIDATION, NULL,
                                "%s:%u:%u: generator %s cannot fill field %s of %s (NOT NULL without DEFAULT)",
                                spec->file, g->emit_line, g->emit_col, g->name, es->fields[f].name, es->name);
    }
    return PAYI_OK;
}

static payi_code check_one(const payi_spec *spec, const spec_generator *g, double *params, const gen_kind **kind,
                           payi_err *err)
{
    *kind = kind_find(g->kind);
    if (!*kind) {
        buf names = BUF_INIT;
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
            buf_printf(&names, "%s%s", k ? ", " : "", kinds[k].name);
        payi_code rc = payi_err_set(err, PAYI_VALIDATION, NULL, "%s:%u:%u: unknown generator kind %s (kinds: %s)",
                                    spec->file, g->kind_line, g->kind_col, g->kind, names.data);
        buf_release(&names);
        return rc;
    }
    payi_code rc = check_params(spec, g, *kind, params, err);
    if (rc == PAYI_OK)
        rc = check_emit(spec, g, *kind, err);
    void *probe = NULL;
    if (rc == PAYI_OK && (rc = (*kind)->open(&probe, params, err)) != PAYI_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        rc = payi_err_set(err, PAYI_VALIDATION, NULL, "%s:%u:%u: generator %s: %s", spec->file, g->line, g->col,
                          g->name, msg);
    }
    if (probe)
        (*kind)->close(probe);
    return rc;
}

payi_code gen_check(const payi_spec *spec, payi_err *err)
{
    for (uint32_t i = 0; i < spec->ngenerators; i++) {
        double params[KIND_MAX_PARAMS];
        const gen_kind *k;
        payi_code rc = check_one(spec, &spec->generators[i], params, &k, err);
        if (rc != PAYI_OK)
            return rc;
    }
    return PAYI_OK;
}

/* ------------------------------------------------------------ the engine */

typedef struct series {
    char *key;
    uint32_t key_len;
    uint64_t hash;
    void *state;
    int64_t last_day;            /* INT64_MIN: none yet */
    uint64_t rows;               /* rows emitted so far: the next row's number */
    bool moved;                  /* days pushed since the last head rows (at_head kinds) */
} series;

typedef struct pending {         /* a derived event waiting for its batch */
    uint32_t stream_off, stream_len;   /* in gen.text */
    uint32_t data_off, data_len;
    payi_uuid id;
} pending;

typedef struct gen {
    gen_engine *eng;
    const spec_generator *g;
    const gen_kind *kind;
    double params[KIND_MAX_PARAMS];
    pthread_t thread;
    bool started;
    /* thread's own */
    series *map;                 /* open addressing, power of two */
    uint32_t cap, n;
    uint32_t nmoved;             /* series with moved set */
    int64_t last_input_ns;       /* when the last input event was read (monotonic) */
    pending *pend;
    uint32_t npend, cappend;
    buf text;                    /* streams and typed data of pending events */
    expr_ctx ctx;
    json_doc jd;
    expr_value *slots;
    expr_value rows[MAX_ROWS * (KIND_MAX_FIELDS + 1)];
    expr_value *out;             /* EMIT slots */
    uint32_t *out_map;           /* kind field i (0: key) -> EMIT field */
    /* shared */
    pthread_mutex_t mu;
    gen_status st;
} gen;

struct gen_engine {
    payi_log *log;
    registry *reg;
    const payi_spec *spec;
    gen *gens;
    uint32_t n;
    _Atomic bool stopping;
};



/* A derived event's id: the hash h of what names it, and its row, as a
 * UUID version 8 (vendor-defined). */
static void derived_uuid(uint64_t h, uint64_t row, payi_uuid *out)
{
    uint64_t h1 = hash_mix64(hash_fnv1a(&row, sizeof row, h));
    uint64_t h2 = hash_mix64(h1 ^ 0x9e3779b97f4a7c15ULL ^ row);
    memcpy(out->b, &h1, 8);
    memcpy(out->b + 8, &h2, 8);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x80);   /* version 8 */
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
}

static uint64_t key_hash(const char *prefix, const gen *G, const series *s)
{
    uint64_t h = hash_fnv1a(prefix, strlen(prefix), HASH_FNV_SEED);
    h = hash_fnv1a(G->g->name, strlen(G->g->name) + 1, h);
    return hash_fnv1a(s->key, s->key_len, h);
}

/* The id of row number row of a key: the same history gives the same ids. */
static void derived_id(const gen *G, const series *s, uint64_t row, payi_uuid *out)
{
    derived_uuid(key_hash("gen\n", G, s), row, out);
}

/* The id of a head row: (key, origin day, row of that origin), so that the
 * same origin forecast again (a restart replays to the head and looks
 * ahead once more) is the same event, which the log keeps once. */
static void derived_head_id(const gen *G, const series *s, int64_t origin, uint64_t row, payi_uuid *out)
{
    derived_uuid(hash_fnv1a(&origin, sizeof origin, key_hash("gen-head\n", G, s)), row, out);
}

static void gen_error(gen *G, const char *what, const payi_err *err)
{
    pthread_mutex_lock(&G->mu);
    snprintf(G->st.last_error, sizeof G->st.last_error, "%s: %s", what, err->msg);
    pthread_mutex_unlock(&G->mu);
}

static series *series_get(gen *G, const char *key, uint32_t len, payi_err *err)
{
    if (2 * (G->n + 1) > G->cap) {
        uint32_t nc = G->cap ? G->cap * 2 : 256;
        series *nm = xcalloc(nc, sizeof *nm);
        for (uint32_t i = 0; i < G->cap; i++)
            if (G->map[i].key) {
                uint32_t j = (uint32_t)G->map[i].hash & (nc - 1);
                while (nm[j].key)
                    j = (j + 1) & (nc - 1);
                nm[j] = G->map[i];
            }
        free(G->map);
        G->map = nm;
        G->cap = nc;
    }
    uint64_t h = hash_fnv1a(key, len, HASH_FNV_SEED);
    uint32_t i = (uint32_t)h & (G->cap - 1);
    for (; G->map[i].key; i = (i + 1) & (G->cap - 1))
        if (G->map[i].hash == h && G->map[i].key_len == len && memcmp(G->map[i].key, key, len) == 0)
            return &G->map[i];
    series *s = &G->map[i];
    void *st;
    if (G->kind->open(&st, G->params, err) != PAYI_OK)
        return NULL;
    *s = (series){.key = xmalloc(len + 1), .key_len = len, .hash = h, .state = st, .last_day = INT64_MIN};
    memcpy(s->key, key, len);
    s->key[len] = 0;
    G->n++;
    return s;
}

/* The fields of an input event as the spec declares them. */
static bool decode_input(gen *G, const ev_schema *decl, const log_event *ev, payi_err *err)
{
    if (ev->encoding == LOG_ENC_TYPED) {
        uint32_t id;
        const ev_schema *s = schema_data_id(ev->data, ev->data_len, &id) ? registry_by_id(G->eng->reg, id) : NULL;
        if (!s) {
            payi_err_set(err, PAYI_CORRUPT, NULL, "event %" PRIu64 ": typed data of an unknown schema", ev->position);
            return false;
        }
        if (schema_check_layout(s, ev->data, ev->data_len, err) != PAYI_OK)
            return false;
        for (uint32_t f = 0; f < decl->nfields; f++) {   /* by name: an older version of the type may differ */
            int i = s == decl ? (int)f : schema_field_index(s, decl->fields[f].name, strlen(decl->fields[f].name));
            if (i >= 0 && s->fields[i].type == decl->fields[f].type)
                schema_get(s, ev->data, ev->data_len, (uint32_t)i, &G->slots[f]);
            else
                G->slots[f] = expr_null(decl->fields[f].type);
        }
        return true;
    }
    json_error je;
    if (!json_parse(&G->jd, ev->data, ev->data_len, NULL, &je) || G->jd.nodes[0].kind != JSON_OBJECT) {
        payi_err_set(err, PAYI_BAD_JSON, NULL, "event %" PRIu64 ": data is not a JSON object", ev->position);
        return false;
    }
    return schema_decode_json(decl, &G->jd, 0, "data", G->slots, &G->ctx, err) == PAYI_OK;
}

static int input_index(const gen *G, const log_event *ev)
{
    const payi_spec *spec = G->eng->spec;
    for (uint32_t k = 0; k < G->g->ninputs; k++) {
        const char *name = spec->events[G->g->inputs[k].event]->name;
        if (strlen(name) == ev->type_len && memcmp(name, ev->type, ev->type_len) == 0)
            return (int)k;
    }
    return -1;
}

/* One derived event into the pending batch, with id *id. */
static void emit_row(gen *G, const series *s, const expr_value *row, const payi_uuid *id)
{
    const ev_schema *es = G->eng->spec->events[G->g->emit];
    uint32_t nf = kind_nfields(G->kind);
    for (uint32_t f = 0; f < es->nfields; f++)
        G->out[f] = es->fields[f].has_default ? es->fields[f].def : expr_null(es->fields[f].type);
    G->out[G->out_map[0]] = expr_text(s->key, s->key_len);
    for (uint32_t i = 0; i < nf; i++)
        G->out[G->out_map[i + 1]] = row[i];
    if (G->npend == G->cappend) {
        G->cappend = G->cappend ? G->cappend * 2 : 1024;
        G->pend = xrealloc(G->pend, G->cappend * sizeof *G->pend);
    }
    pending *p = &G->pend[G->npend++];
    p->stream_off = (uint32_t)G->text.len;
    buf_printf(&G->text, "%s-", G->g->name);
    buf_put(&G->text, s->key, s->key_len);
    p->stream_len = (uint32_t)(G->text.len - p->stream_off);
    p->data_off = (uint32_t)G->text.len;
    schema_encode(es, G->out, &G->text);
    p->data_len = (uint32_t)(G->text.len - p->data_off);
    p->id = *id;
}

/* The rows of at_head kinds for every series that moved: called when the
 * generator has read everything the log holds. */
static void emit_head_rows(gen *G)
{
    uint32_t nf = kind_nfields(G->kind);
    for (uint32_t i = 0; i < G->cap && G->nmoved; i++) {
        series *s = &G->map[i];
        if (!s->key || !s->moved)
            continue;
        s->moved = false;
        G->nmoved--;
        int64_t origin;
        size_t nrows = G->kind->at_head(s->state, &origin, G->rows);
        for (size_t r = 0; r < nrows; r++) {
            payi_uuid id;
            derived_head_id(G, s, origin, r, &id);
            emit_row(G, s, &G->rows[r * nf], &id);
        }
    }
}

/* Apply one input event. */
static void apply_input(gen *G, const log_event *ev)
{
    int k = input_index(G, ev);
    if (k < 0 || (ev->stream_len && ev->stream[0] == '$'))
        return;
    G->last_input_ns = time_mono_ns();
    const spec_gen_input *in = &G->g->inputs[k];
    const ev_schema *decl = G->eng->spec->events[in->event];
    payi_err err;
    expr_value key, day, val;
    expr_ctx_reset(&G->ctx);
    bool ok = decode_input(G, decl, ev, &err) && expr_eval(in->key, G->slots, &G->ctx, &key, &err) == PAYI_OK &&
              expr_eval(in->day, G->slots, &G->ctx, &day, &err) == PAYI_OK &&
              expr_eval(in->value, G->slots, &G->ctx, &val, &err) == PAYI_OK;
    if (ok && (key.null || day.null || val.null)) {
        payi_err_set(&err, PAYI_VALIDATION, NULL, "event %" PRIu64 ": KEY, DAY or VALUE is NULL", ev->position);
        ok = false;
    }
    int64_t v = 0;
    if (ok) {
        double d = val.type == EXPR_BIGINT ? (double)val.i : val.d;
        ok = val.type == EXPR_BIGINT || (isfinite(d) && d == floor(d) && fabs(d) < 9e15);
        v = val.type == EXPR_BIGINT ? val.i : (int64_t)d;
        if (!ok)
            payi_err_set(&err, PAYI_VALIDATION, NULL, "event %" PRIu64 ": VALUE %g is not a whole number", ev->position, d);
    }
    series *s = ok ? series_get(G, key.s, key.len, &err) : NULL;
    if (!s) {
        pthread_mutex_lock(&G->mu);
        G->st.skipped++;
        snprintf(G->st.last_error, sizeof G->st.last_error, "%s", err.msg);
        pthread_mutex_unlock(&G->mu);
        return;
    }
    if (s->last_day != INT64_MIN && day.i <= s->last_day) {
        pthread_mutex_lock(&G->mu);
        G->st.late_values++;
        pthread_mutex_unlock(&G->mu);
        return;
    }
    /* gapless: the days in between count 0 */
    for (int64_t d = s->last_day == INT64_MIN ? day.i : s->last_day + 1; d <= day.i; d++) {
        size_t nrows = G->kind->push(s->state, d, d == day.i ? v : 0, G->rows);
        uint32_t nf = kind_nfields(G->kind);
        for (size_t r = 0; r < nrows; r++) {
            payi_uuid id;
            derived_id(G, s, s->rows++, &id);
            emit_row(G, s, &G->rows[r * nf], &id);
        }
    }
    s->last_day = day.i;
    if (G->kind->at_head && !s->moved) {
        s->moved = true;
        G->nmoved++;
    }
    pthread_mutex_lock(&G->mu);
    G->st.inputs++;
    G->st.keys = G->n;
    pthread_mutex_unlock(&G->mu);
}

/* Append the pending events, durably; true when every one is in the log. */
static bool flush_pending(gen *G, uint64_t position)
{
    if (G->npend) {
        log_event_in *ins = xcalloc(G->npend, sizeof *ins);
        log_append *aps = xcalloc(G->npend, sizeof *aps);
        const ev_schema *es = G->eng->spec->events[G->g->emit];
        for (uint32_t i = 0; i < G->npend; i++) {
            const pending *p = &G->pend[i];
            ins[i] = (log_event_in){.type = es->name, .type_len = (uint32_t)strlen(es->name),
                                    .data = G->text.data + p->data_off, .data_len = p->data_len,
                                    .encoding = LOG_ENC_TYPED, .id = p->id, .has_id = true};
            aps[i] = (log_append){.stream = G->text.data + p->stream_off, .stream_len = p->stream_len,
                                  .expected = LOG_EXPECT_ANY, .events = &ins[i], .nevents = 1};
        }
        log_submission *sub = log_submit(G->eng->log, aps, G->npend, false);
        log_wait(G->eng->log, sub);
        uint64_t fresh = 0, repeated = 0;
        bool ok = true;
        for (uint32_t i = 0; i < G->npend; i++) {
            if (aps[i].status != PAYI_OK) {
                if (ok)
                    gen_error(G, "append", &aps[i].err);
                ok = false;
            } else if (ins[i].duplicate) {
                repeated++;
            } else {
                fresh++;
            }
        }
        free(ins);
        free(aps);
        pthread_mutex_lock(&G->mu);
        G->st.emitted += fresh;
        G->st.repeated += repeated;
        pthread_mutex_unlock(&G->mu);
        if (!ok)
            return false;
        G->npend = 0;
        buf_reset(&G->text);
    }
    int64_t clamped = 0;
    for (uint32_t i = 0; i < G->cap; i++)
        if (G->map[i].key && G->kind->clamped)
            clamped += G->kind->clamped(G->map[i].state);
    pthread_mutex_lock(&G->mu);
    G->st.position = position;
    G->st.looking_ahead = G->nmoved > 0;
    G->st.clamped = (uint64_t)clamped;
    pthread_mutex_unlock(&G->mu);
    return true;
}

static void *gen_main(void *arg)
{
    gen *G = arg;
    thread_set_name("g:", G->g->name);
    log_cursor c;
    log_cursor_at(&c, 0);
    log_sub *sub = log_sub_open(G->eng->log, &c);
    uint64_t next = 0;
    while (!atomic_load(&G->eng->stopping)) {
        log_event ev;
        payi_err err;
        /* Pending events are flushed as soon as the log is drained.  A
         * look ahead waits until no input has arrived for HEAD_QUIET_MS,
         * because the next input makes it stale (a fast ingest would
         * otherwise forecast every key at every drain); other events (the
         * derived ones of other generators, our own) do not count. */
        int64_t quiet_ms = (time_mono_ns() - G->last_input_ns) / 1000000;
        if (!G->npend && G->nmoved && quiet_ms >= HEAD_QUIET_MS) {
            emit_head_rows(G);
        } else {
            int wait_ms = G->npend ? 0 : G->nmoved ? (int)(HEAD_QUIET_MS - quiet_ms) : 200;
            payi_code rc = log_sub_next(sub, &ev, wait_ms, &err);
            if (rc == PAYI_OK) {
                apply_input(G, &ev);
                next = ev.position + 1;
                if (G->npend < FLUSH_EVENTS)
                    continue;
            } else if (rc != PAYI_TIMEOUT) {
                gen_error(G, "reading the log", &err);
                pthread_mutex_lock(&G->mu);
                G->st.failed = true;
                pthread_mutex_unlock(&G->mu);
                break;
            }
        }
        if (!flush_pending(G, next)) {   /* the log refused (read-only, disk full): stop, visibly */
            pthread_mutex_lock(&G->mu);
            G->st.failed = true;
            pthread_mutex_unlock(&G->mu);
            break;
        }
    }
    log_sub_close(sub);
    return NULL;
}

static void gen_release(gen *G)
{
    for (uint32_t i = 0; i < G->cap; i++)
        if (G->map[i].key) {
            G->kind->close(G->map[i].state);
            free(G->map[i].key);
        }
    free(G->map);
    free(G->pend);
    buf_release(&G->text);
    expr_ctx_release(&G->ctx);
    json_doc_release(&G->jd);
    free(G->slots);
    free(G->out);
    free(G->out_map);
    pthread_mutex_destroy(&G->mu);
}

static payi_code gen_init(gen_engine *e, gen *G, const spec_generator *g, payi_err *err)
{
    const payi_spec *spec = e->spec;
    G->eng = e;
    G->g = g;
    payi_code rc = check_one(spec, g, G->params, &G->kind, err);
    if (rc != PAYI_OK)
        return rc;
    pthread_mutex_init(&G->mu, NULL);
    expr_ctx_init(&G->ctx);
    uint32_t most = 1;
    for (uint32_t k = 0; k < g->ninputs; k++)
        if (spec->events[g->inputs[k].event]->nfields > most)
            most = spec->events[g->inputs[k].event]->nfields;
    G->slots = xcalloc(most, sizeof *G->slots);
    const ev_schema *es = spec->events[g->emit];
    G->out = xcalloc(es->nfields + 1, sizeof *G->out);
    uint32_t nf = kind_nfields(G->kind);
    G->out_map = xcalloc(nf + 1, sizeof *G->out_map);
    for (uint32_t i = 0; i <= nf; i++) {
        const char *name = i == 0 ? g->key_name : G->kind->fields[i - 1].name;
        G->out_map[i] = (uint32_t)schema_field_index(es, name, strlen(name));   /* check_one made sure */
    }
    return PAYI_OK;
}

payi_code gen_engine_open(gen_engine **out, payi_log *log, registry *reg, const payi_spec *spec, payi_err *err)
{
    gen_engine *e = xcalloc(1, sizeof *e);
    e->log = log;
    e->reg = reg;
    e->spec = spec;
    e->gens = xcalloc(spec->ngenerators + 1, sizeof *e->gens);
    payi_code rc = PAYI_OK;
    for (uint32_t i = 0; rc == PAYI_OK && i < spec->ngenerators; i++) {
        rc = gen_init(e, &e->gens[i], &spec->generators[i], err);
        if (rc == PAYI_OK)
            e->n++;
    }
    for (uint32_t i = 0; rc == PAYI_OK && i < e->n; i++) {
        if (pthread_create(&e->gens[i].thread, NULL, gen_main, &e->gens[i]) != 0)
            rc = payi_err_sys(err, PAYI_INTERNAL, errno, "cannot start the thread of generator %s",
                              spec->generators[i].name);
        else
            e->gens[i].started = true;
    }
    if (rc != PAYI_OK) {
        gen_engine_close(e);
        return rc;
    }
    *out = e;
    return PAYI_OK;
}

void gen_engine_close(gen_engine *e)
{
    if (!e)
        return;
    atomic_store(&e->stopping, true);
    for (uint32_t i = 0; i < e->n; i++)
        if (e->gens[i].started)
            pthread_join(e->gens[i].thread, NULL);
    for (uint32_t i = 0; i < e->n; i++)
        gen_release(&e->gens[i]);
    free(e->gens);
    free(e);
}

uint32_t gen_engine_count(const gen_engine *e) { return e ? e->n : 0; }

const char *gen_engine_name(const gen_engine *e, uint32_t i) { return e->gens[i].g->name; }

void gen_engine_status(gen_engine *e, uint32_t i, gen_status *out)
{
    gen *G = &e->gens[i];
    pthread_mutex_lock(&G->mu);
    *out = G->st;
    pthread_mutex_unlock(&G->mu);
}
