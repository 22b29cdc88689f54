/* registry.c — event schemas kept in the log's "$schemas" stream (registry.h). */
#include "event/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

struct registry {
    ev_schema **by_id;      /* index = id = version in "$schemas" */
    uint32_t n;
    size_t cap;
};

registry *registry_new(void) { return xcalloc(1, sizeof(registry)); }

void registry_free(registry *r)
{
    if (!r)
        return;
    for (uint32_t k = 0; k < r->n; k++)
        schema_free(r->by_id[k]);
    free(r->by_id);
    free(r);
}

typedef struct load_ctx {
    registry *r;
    json_doc doc;
    payi_code rc;
    payi_err *err;
} load_ctx;

static int load_one(void *vctx, const log_event *ev)
{
    load_ctx *c = vctx;
    if (ev->version != c->r->n)   /* read from r->n on: anything else means a hole */
        return c->rc = payi_err_set(c->err, PAYI_CORRUPT, NULL, "schema registry: expected version %u, read %llu",
                                    c->r->n, (unsigned long long)ev->version),
               1;
    json_error je;
    ev_schema *s = NULL;
    if (ev->encoding != LOG_ENC_JSON || !json_parse(&c->doc, ev->data, ev->data_len, NULL, &je)) {
        c->rc = payi_err_set(c->err, PAYI_CORRUPT, NULL, "schema registry: the schema at position %llu is not JSON",
                             (unsigned long long)ev->position);
        return 1;
    }
    payi_err e;
    if (schema_from_json(&c->doc, 0, &s, &e) != PAYI_OK) {
        c->rc = payi_err_set(c->err, PAYI_CORRUPT, NULL, "schema registry: the schema at position %llu: %s",
                             (unsigned long long)ev->position, e.msg);
        return 1;
    }
    s->id = c->r->n;
    c->r->by_id = xgrow(c->r->by_id, &c->r->cap, c->r->n + 1, sizeof *c->r->by_id);
    c->r->by_id[c->r->n++] = s;
    return 0;
}

payi_code registry_refresh(registry *r, payi_log *log, payi_err *err)
{
    load_ctx c = {.r = r, .doc = JSON_DOC_INIT, .rc = PAYI_OK, .err = err};
    payi_code rc = log_read_stream(log, REGISTRY_STREAM, sizeof REGISTRY_STREAM - 1, r->n, 0, false, load_one, &c, err);
    json_doc_release(&c.doc);
    return rc != PAYI_OK ? rc : c.rc;
}

const ev_schema *registry_by_id(const registry *r, uint32_t id) { return id < r->n ? r->by_id[id] : NULL; }

const ev_schema *registry_latest(const registry *r, const char *type, uint32_t type_len)
{
    for (uint32_t k = r->n; k-- > 0;)
        if (strlen(r->by_id[k]->name) == type_len && memcmp(r->by_id[k]->name, type, type_len) == 0)
            return r->by_id[k];
    return NULL;
}

payi_code registry_register(registry *r, payi_log *log, ev_schema *s, payi_err *err)
{
    payi_code rc = registry_refresh(r, log, err);
    if (rc != PAYI_OK)
        return rc;
    const ev_schema *have = registry_latest(r, s->name, (uint32_t)strlen(s->name));
    if (have && schema_same(have, s)) {
        s->id = have->id;
        return PAYI_OK;
    }
    buf text = BUF_INIT;
    schema_to_json(s, &text);
    log_event_in ev = {.type = REGISTRY_EVENT_TYPE, .type_len = sizeof REGISTRY_EVENT_TYPE - 1,
                       .data = text.data, .data_len = (uint32_t)text.len};
    log_append a = {.stream = REGISTRY_STREAM, .stream_len = sizeof REGISTRY_STREAM - 1,
                    .expected = r->n ? (int64_t)r->n - 1 : LOG_EXPECT_NO_STREAM, .events = &ev, .nevents = 1};
    rc = log_append_one(log, &a);
    buf_release(&text);
    if (rc != PAYI_OK)
        return payi_err_set(err, rc, NULL, "registering the schema of %s: %s", s->name, a.err.msg);
    rc = registry_refresh(r, log, err);   /* reads it back, exactly as any other reader will */
    if (rc != PAYI_OK)
        return rc;
    s->id = (uint32_t)ev.version;
    return PAYI_OK;
}

static void write_data_error(buf *out, const char *msg)
{
    buf_puts(out, "{\"$error\":");
    json_put_string(out, msg, strlen(msg));
    buf_putc(out, '}');
}

void registry_write_data(const registry *r, const log_event *ev, buf *out)
{
    if (ev->encoding == LOG_ENC_JSON) {
        buf_put(out, ev->data, ev->data_len);
        return;
    }
    if (ev->encoding != LOG_ENC_TYPED)
        return write_data_error(out, "unknown data encoding");
    uint32_t id;
    const ev_schema *s = NULL;
    if (!schema_data_id(ev->data, ev->data_len, &id) || !r || !(s = registry_by_id(r, id)))
        return write_data_error(out, "typed data of an unknown schema");
    payi_err e;
    if (schema_check_data(s, ev->data, ev->data_len, &e) != PAYI_OK)
        return write_data_error(out, e.msg);
    schema_write_json(s, ev->data, ev->data_len, out);
}
