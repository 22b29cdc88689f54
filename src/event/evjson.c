#include "event/evjson.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/timefmt.h"

struct evjson_offsets {
    size_t stream;
    size_t first_event;
};

struct evjson_evoffs {
    size_t type, data, meta;
};

void evjson_batch_init(evjson_batch *b)
{
    memset(b, 0, sizeof *b);
    expr_ctx_init(&b->ctx);
}

void evjson_batch_reset(evjson_batch *b)
{
    buf_reset(&b->text);
    b->n = b->nev = 0;
}

void evjson_batch_release(evjson_batch *b)
{
    buf_release(&b->text);
    free(b->appends);
    free(b->events);
    free(b->offs);
    free(b->evoffs);
    expr_ctx_release(&b->ctx);
    const registry *reg = b->reg;
    memset(b, 0, sizeof *b);
    b->reg = reg;
    expr_ctx_init(&b->ctx);
}

/* Decode string node i into the batch text; returns its offset there. */
static size_t put_string(evjson_batch *b, const json_doc *d, uint32_t i, uint32_t *len)
{
    buf tmp = BUF_INIT;
    json_get_string(d, i, &tmp);
    size_t off = b->text.len;
    buf_put(&b->text, tmp.data ? tmp.data : "", tmp.len);
    *len = (uint32_t)tmp.len;
    buf_release(&tmp);
    return off;
}

/* "<prefix><field> <what>", e.g. "[2].type is required", with the field named. */
static payi_code field_error(payi_err *err, payi_code code, const char *prefix, const char *field, const char *what)
{
    char name[64];
    snprintf(name, sizeof name, "%s%s", prefix, field);
    return payi_err_set(err, code, name, "%s %s", name, what);
}

static payi_code decode_expected(const json_doc *d, uint32_t v, int64_t *out, const char *prefix, payi_err *err)
{
    const json_node *n = &d->nodes[v];
    if (n->kind == JSON_STRING) {
        if (json_string_eq(d, v, "any"))
            *out = LOG_EXPECT_ANY;
        else if (json_string_eq(d, v, "no_stream"))
            *out = LOG_EXPECT_NO_STREAM;
        else if (json_string_eq(d, v, "exists"))
            *out = LOG_EXPECT_EXISTS;
        else
            return field_error(err, PAYI_VALIDATION, prefix, "expected_version",
                               "must be \"any\", \"no_stream\", \"exists\" or a version number >= 0");
        return PAYI_OK;
    }
    int64_t v64;
    if (n->kind != JSON_NUMBER || !json_get_int64(d, v, &v64) || v64 < 0)
        return field_error(err, PAYI_VALIDATION, prefix, "expected_version",
                           "must be \"any\", \"no_stream\", \"exists\" or an integer version >= 0");
    *out = v64;
    return PAYI_OK;
}

typedef struct event_fields {
    uint32_t stream, type, data, id, expected, meta;
} event_fields;

/* The stream an append is addressed to from outside the body (an HTTP path),
 * or none: then every event object names it. */
typedef struct fixed_stream {
    const char *name;   /* NULL: the body names the stream */
    size_t len;
} fixed_stream;

static payi_code collect_fields(const json_doc *d, uint32_t obj, event_fields *f, const char *prefix,
                                const fixed_stream *fixed, payi_err *err)
{
    memset(f, 0xff, sizeof *f);   /* UINT32_MAX: absent */
    if (d->nodes[obj].kind != JSON_OBJECT)
        return payi_err_set(err, PAYI_VALIDATION, prefix[0] ? prefix : NULL,
                            "an event must be a JSON object with stream, type and data");
    uint32_t k = json_first_child(d, obj);
    for (uint32_t i = 0; i < d->nodes[obj].count; i++) {
        uint32_t v = json_next_sibling(d, k);
        uint32_t *slot = json_string_eq(d, k, "stream")             ? &f->stream
                         : json_string_eq(d, k, "type")             ? &f->type
                         : json_string_eq(d, k, "data")             ? &f->data
                         : json_string_eq(d, k, "id")               ? &f->id
                         : json_string_eq(d, k, "expected_version") ? &f->expected
                         : json_string_eq(d, k, "meta")             ? &f->meta
                                                                    : NULL;
        if (!slot) {
            buf key = BUF_INIT;
            json_get_string(d, k, &key);
            payi_err_set(err, PAYI_VALIDATION, key.data,
                         "unknown field \"%.60s\" in event (allowed: stream, type, data, id, expected_version, meta)",
                         key.data);
            buf_release(&key);
            return PAYI_VALIDATION;
        }
        *slot = v;
        k = json_next_sibling(d, v);
    }
    if (f->stream == UINT32_MAX && !fixed->name)
        return field_error(err, PAYI_VALIDATION, prefix, "stream", "is required");
    if (f->type == UINT32_MAX)
        return field_error(err, PAYI_VALIDATION, prefix, "type", "is required");
    if (f->data == UINT32_MAX)
        return field_error(err, PAYI_VALIDATION, prefix, "data", "is required");
    if (f->stream != UINT32_MAX && d->nodes[f->stream].kind != JSON_STRING)
        return field_error(err, PAYI_VALIDATION, prefix, "stream", "must be a string");
    if (d->nodes[f->type].kind != JSON_STRING)
        return field_error(err, PAYI_VALIDATION, prefix, "type", "must be a string");
    if (d->nodes[f->data].kind != JSON_OBJECT)
        return field_error(err, PAYI_VALIDATION, prefix, "data", "must be a JSON object");
    if (f->meta != UINT32_MAX && d->nodes[f->meta].kind != JSON_OBJECT)
        return field_error(err, PAYI_VALIDATION, prefix, "meta", "must be a JSON object");
    if (f->id != UINT32_MAX && d->nodes[f->id].kind != JSON_STRING)
        return field_error(err, PAYI_VALIDATION, prefix, "id", "must be a UUID string");
    return PAYI_OK;
}

static payi_code decode_event(evjson_batch *b, const json_doc *d, const event_fields *f, const char *prefix,
                              payi_err *err)
{
    b->events = xgrow(b->events, &b->evcap, b->nev + 1, sizeof *b->events);
    b->evoffs = xgrow(b->evoffs, &b->evoffs_cap, b->nev + 1, sizeof *b->evoffs);
    log_event_in *e = &b->events[b->nev];
    struct evjson_evoffs *o = &b->evoffs[b->nev];
    memset(e, 0, sizeof *e);
    if (f->id != UINT32_MAX) {
        buf s = BUF_INIT;
        json_get_string(d, f->id, &s);
        bool ok = uuid_parse(&e->id, s.data ? s.data : "", s.len) && !uuid_is_nil(&e->id);
        buf_release(&s);
        if (!ok)
            return field_error(err, PAYI_VALIDATION, prefix, "id",
                               "must be a UUID like 123e4567-e89b-12d3-a456-426614174000 (and not nil)");
        e->has_id = true;
    }
    o->type = put_string(b, d, f->type, &e->type_len);
    o->data = b->text.len;
    const ev_schema *schema = b->reg ? registry_latest(b->reg, b->text.data + o->type, e->type_len) : NULL;
    if (schema) {   /* a declared type: validated, and stored typed */
        char where[40];
        snprintf(where, sizeof where, "%sdata", prefix);
        expr_ctx_reset(&b->ctx);
        payi_code rc = schema_decode_json(schema, d, f->data, where, b->slots, &b->ctx, err);
        if (rc != PAYI_OK)
            return rc;
        schema_encode(schema, b->slots, &b->text);
        e->encoding = LOG_ENC_TYPED;
    } else {
        json_write_compact(d, f->data, &b->text);
    }
    e->data_len = (uint32_t)(b->text.len - o->data);
    o->meta = b->text.len;
    if (f->meta != UINT32_MAX)
        json_write_compact(d, f->meta, &b->text);
    e->meta_len = (uint32_t)(b->text.len - o->meta);
    b->nev++;
    return PAYI_OK;
}

/* The stream named in the body must be the one addressed from outside. */
static payi_code check_fixed_stream(const fixed_stream *fixed, const buf *named, const char *prefix, payi_err *err)
{
    if (named->len == fixed->len && memcmp(named->data ? named->data : "", fixed->name, fixed->len) == 0)
        return PAYI_OK;
    return field_error(err, PAYI_VALIDATION, prefix, "stream",
                       "differs from the stream the append is addressed to (leave it out or repeat it)");
}

/* Where the append's stream name goes into the batch text. */
static void put_stream(evjson_batch *b, const json_doc *d, uint32_t node, const fixed_stream *fixed,
                       log_append *a, struct evjson_offsets *ao)
{
    if (fixed->name) {
        ao->stream = b->text.len;
        buf_put(&b->text, fixed->name, fixed->len);
        a->stream_len = (uint32_t)fixed->len;
    } else {
        ao->stream = put_string(b, d, node, &a->stream_len);
    }
}

/* The stream checks of item i: the same stream as the first item, or as the fixed one. */
static payi_code check_item_stream(const json_doc *d, const event_fields *f, uint32_t i, const fixed_stream *fixed,
                                   buf *first_stream, buf *this_stream, const char *prefix, payi_err *err)
{
    if (f->stream == UINT32_MAX)
        return PAYI_OK;   /* only allowed with a fixed stream */
    json_get_string(d, f->stream, i == 0 ? first_stream : this_stream);
    if (fixed->name)
        return check_fixed_stream(fixed, i == 0 ? first_stream : this_stream, prefix, err);
    if (i > 0 && (this_stream->len != first_stream->len || memcmp(this_stream->data, first_stream->data, this_stream->len)))
        return field_error(err, PAYI_VALIDATION, prefix, "stream",
                           "differs from the first event's: an atomic append is to one stream");
    return PAYI_OK;
}

static payi_code decode_items(evjson_batch *b, const json_doc *d, log_append *a, struct evjson_offsets *ao,
                              const fixed_stream *fixed, payi_err *err)
{
    uint32_t root = 0, nitems = 1, item = 0;
    bool is_array = d->nodes[0].kind == JSON_ARRAY;
    if (is_array) {
        nitems = d->nodes[0].count;
        item = json_first_child(d, root);
        if (nitems == 0)
            return payi_err_set(err, PAYI_VALIDATION, NULL, "an array of events must not be empty");
    }
    buf first_stream = BUF_INIT, this_stream = BUF_INIT;
    payi_code rc = PAYI_OK;
    for (uint32_t i = 0; i < nitems && rc == PAYI_OK; i++, item = json_next_sibling(d, item)) {
        char prefix[24] = "";
        if (is_array)
            snprintf(prefix, sizeof prefix, "[%u].", i);
        event_fields f;
        rc = collect_fields(d, item, &f, prefix, fixed, err);
        if (rc != PAYI_OK)
            break;
        rc = check_item_stream(d, &f, i, fixed, &first_stream, &this_stream, prefix, err);
        if (rc == PAYI_OK && i > 0 && f.expected != UINT32_MAX)
            rc = field_error(err, PAYI_VALIDATION, prefix, "expected_version",
                             "is allowed only on the first event of an array");
        else if (rc == PAYI_OK && i == 0 && f.expected != UINT32_MAX)
            rc = decode_expected(d, f.expected, &a->expected, prefix, err);
        if (rc == PAYI_OK && i == 0)
            put_stream(b, d, f.stream, fixed, a, ao);
        if (rc == PAYI_OK)
            rc = decode_event(b, d, &f, prefix, err);
    }
    buf_release(&first_stream);
    buf_release(&this_stream);
    return rc;
}

static payi_code decode_append(evjson_batch *b, const json_doc *doc, const fixed_stream *fixed, payi_err *err)
{
    size_t text_mark = b->text.len, ev_mark = b->nev;
    b->appends = xgrow(b->appends, &b->cap, b->n + 1, sizeof *b->appends);
    b->offs = xgrow(b->offs, &b->offs_cap, b->n + 1, sizeof *b->offs);
    log_append *a = &b->appends[b->n];
    memset(a, 0, sizeof *a);
    a->expected = LOG_EXPECT_ANY;
    b->offs[b->n].first_event = b->nev;
    payi_code rc = decode_items(b, doc, a, &b->offs[b->n], fixed, err);
    if (rc == PAYI_OK && a->stream_len > 0 && b->text.data[b->offs[b->n].stream] == '$')
        rc = payi_err_set(err, PAYI_VALIDATION, "stream",
                          "stream names starting with '$' are reserved for payi's own streams");
    if (rc != PAYI_OK) {   /* leave the batch as it was */
        b->text.len = text_mark;
        b->nev = ev_mark;
        return rc;
    }
    a->nevents = (uint32_t)(b->nev - ev_mark);
    b->n++;
    return PAYI_OK;
}

payi_code evjson_decode(evjson_batch *b, const json_doc *doc, payi_err *err)
{
    fixed_stream none = {NULL, 0};
    return decode_append(b, doc, &none, err);
}

payi_code evjson_decode_in_stream(evjson_batch *b, const json_doc *doc, const char *stream, size_t stream_len,
                                  payi_err *err)
{
    fixed_stream fixed = {stream ? stream : "", stream_len};
    return decode_append(b, doc, &fixed, err);
}

void evjson_batch_seal(evjson_batch *b) { evjson_batch_seal_from(b, 0); }

void evjson_batch_seal_from(evjson_batch *b, size_t first)
{
    const char *base = b->text.data ? b->text.data : "";
    for (size_t i = first < b->n ? b->offs[first].first_event : b->nev; i < b->nev; i++) {
        b->events[i].type = base + b->evoffs[i].type;
        b->events[i].data = base + b->evoffs[i].data;
        b->events[i].meta = b->events[i].meta_len ? base + b->evoffs[i].meta : NULL;
    }
    for (size_t i = first; i < b->n; i++) {
        b->appends[i].stream = base + b->offs[i].stream;
        b->appends[i].events = b->events + b->offs[i].first_event;
    }
}

payi_code evjson_decode_text(evjson_batch *b, json_doc *doc, const char *text, size_t len, payi_err *err)
{
    json_error jerr;
    if (!json_parse(doc, text, len, NULL, &jerr))
        return payi_err_set(err, PAYI_BAD_JSON, NULL, "malformed JSON at column %u: %s", jerr.col, jerr.msg);
    return evjson_decode(b, doc, err);
}

/* The fields an event and its acknowledgement share; leaves the object open. */
static void write_where(buf *out, uint64_t position, const char *stream, uint32_t stream_len, uint64_t version)
{
    buf_puts(out, "{\"position\":");
    buf_put_u64(out, position);
    buf_puts(out, ",\"stream\":");
    json_put_string(out, stream, stream_len);
    buf_puts(out, ",\"version\":");
    buf_put_u64(out, version);
}

void evjson_write_event(buf *out, const log_event *ev, const registry *reg)
{
    char id[UUID_STR_LEN + 1], when[TIME_RFC3339_LEN + 1];
    uuid_format(&ev->id, id);
    time_format_rfc3339(ev->time_ns, when);
    write_where(out, ev->position, ev->stream, ev->stream_len, ev->version);
    buf_puts(out, ",\"type\":");
    json_put_string(out, ev->type, ev->type_len);
    buf_puts(out, ",\"id\":\"");
    buf_put(out, id, UUID_STR_LEN);
    buf_puts(out, "\",\"time\":\"");
    buf_put(out, when, TIME_RFC3339_LEN);
    buf_puts(out, "\",\"data\":");
    registry_write_data(reg, ev, out);
    buf_puts(out, ",\"meta\":");
    if (ev->meta_len)
        buf_put(out, ev->meta, ev->meta_len);
    else
        buf_puts(out, "{}");
    buf_putc(out, '}');
}

void evjson_write_ack(buf *out, const log_append *a, uint32_t i)
{
    const log_event_in *e = &a->events[i];
    write_where(out, e->position, a->stream, a->stream_len, e->version);
    if (e->duplicate)
        buf_puts(out, ",\"duplicate\":true");
    buf_putc(out, '}');
}

void evjson_write_append_result(buf *out, const log_append *a)
{
    const log_event_in *last = &a->events[a->nevents - 1];
    write_where(out, last->position, a->stream, a->stream_len, last->version);
    buf_puts(out, ",\"events\":[");
    bool all_dup = true;
    for (uint32_t i = 0; i < a->nevents; i++) {
        const log_event_in *e = &a->events[i];
        char id[UUID_STR_LEN + 1];
        uuid_format(&e->id, id);
        buf_puts(out, i ? ",{\"position\":" : "{\"position\":");
        buf_put_u64(out, e->position);
        buf_puts(out, ",\"version\":");
        buf_put_u64(out, e->version);
        buf_printf(out, ",\"id\":\"%s\"", id);
        if (e->duplicate)
            buf_puts(out, ",\"duplicate\":true");
        buf_putc(out, '}');
        all_dup = all_dup && e->duplicate;
    }
    buf_puts(out, all_dup ? "],\"duplicate\":true}" : "]}");
}
