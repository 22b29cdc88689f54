/* evjson.h — events as JSON at payi's edges (CLI NDJSON, HTTP bodies).
 *
 * In:  {"stream","type","data","id"?,"expected_version"?,"meta"?}, or an array
 *      of such objects for one stream, appended atomically (expected_version
 *      only on the first).  Unknown keys are refused.  data and meta must be
 *      objects; they are kept as their compact text, numbers as written,
 *      unless the batch has a registry and the type a schema: then data is
 *      validated and stored typed.  Streams starting with '$' are payi's own
 *      and refused.
 * Out: {"position","stream","version","type","id","time","data","meta"} and
 *      acknowledgements {"position","stream","version"[,"duplicate":true]}.
 */
#ifndef PAYI_EVJSON_H
#define PAYI_EVJSON_H

#include <stddef.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/json.h"
#include "event/registry.h"
#include "log/log.h"
#include "spec/expr.h"

/* A batch of decoded appends.  Owns all the strings the appends point to;
 * pointers are valid after evjson_batch_seal and until the next reset. */
typedef struct evjson_batch {
    buf text;
    log_append *appends;
    size_t n, cap;
    log_event_in *events;
    size_t nev, evcap;
    struct evjson_offsets *offs;   /* where each append's strings sit in text */
    size_t offs_cap;
    struct evjson_evoffs *evoffs;
    size_t evoffs_cap;
    /* Set reg (borrowed) to validate events of registered types against
     * their schema and store them typed (event/registry.h). */
    const registry *reg;
    expr_ctx ctx;
    expr_value slots[SCHEMA_MAX_FIELDS];
} evjson_batch;

void evjson_batch_init(evjson_batch *b);
void evjson_batch_reset(evjson_batch *b);
void evjson_batch_release(evjson_batch *b);

/* Decode one event object or array (the root of doc) as one more append.  On
 * error nothing is added and err names the field. */
payi_code evjson_decode(evjson_batch *b, const json_doc *doc, payi_err *err);
/* The same for an append addressed to stream from outside the body (an HTTP
 * path): each object's "stream" key may be left out, and must equal stream
 * when given.  stream is copied; it is not validated here (log_validate). */
payi_code evjson_decode_in_stream(evjson_batch *b, const json_doc *doc, const char *stream, size_t stream_len,
                                  payi_err *err);
/* Fix up string pointers once all appends are decoded. */
void evjson_batch_seal(evjson_batch *b);
/* The same for appends [first, n) only: valid until the batch text grows. */
void evjson_batch_seal_from(evjson_batch *b, size_t first);

/* Parse text and decode it: the usual path for one NDJSON line. */
payi_code evjson_decode_text(evjson_batch *b, json_doc *doc, const char *text, size_t len, payi_err *err);

/* reg renders typed data; it may be NULL when the log has no typed events. */
void evjson_write_event(buf *out, const log_event *ev, const registry *reg);
void evjson_write_ack(buf *out, const log_append *a, uint32_t event_index);
/* The answer to a completed append (HTTP):
 * {"position","stream","version","events":[{"position","version","id"[,"duplicate"]}...][,"duplicate":true]}
 * where position and version are the last event's (version: the stream's
 * version after the append, the next expected_version), and "duplicate" at
 * the top says the whole append was a repeat. */
void evjson_write_append_result(buf *out, const log_append *a);

#endif
