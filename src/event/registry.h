/* registry.h — the event schemas a log has seen, kept in the log itself.
 *
 * Events of declared types are stored in the typed form (spec/schema.h),
 * which starts with a schema id.  The schema behind each id is itself an
 * event: stream "$schemas", type "SchemaRegistered", data the schema's JSON
 * (schema_to_json); the id is that event's version in "$schemas".  So the
 * log is self-describing: `payi read` renders typed events without the spec,
 * a changed event type gets a new id while old events keep theirs, and the
 * schemas are exactly as durable as the events that use them.
 *
 * Every append of an event whose type has a registered schema is validated
 * against the latest schema of that type and stored typed (evjson does it
 * for HTTP and the CLI, the command module for commands).  Stream names starting
 * with '$' belong to payi: user appends to them are refused (evjson).
 *
 * Threads: loading and registering happen before the registry is shared
 * (at start-up); afterwards lookups are read-only and may run on any thread.
 * A reader beside a writer process calls registry_refresh when it meets an
 * id it does not know.
 */
#ifndef PAYI_REGISTRY_H
#define PAYI_REGISTRY_H

#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/json.h"
#include "log/log.h"
#include "spec/schema.h"

#define REGISTRY_STREAM "$schemas"
#define REGISTRY_EVENT_TYPE "SchemaRegistered"

typedef struct registry registry;

registry *registry_new(void);
void registry_free(registry *r);

/* Read every schema of the log's "$schemas" stream (those not yet known). */
payi_code registry_refresh(registry *r, payi_log *log, payi_err *err);

/* Give s its id: the id of the latest registered schema of that name when
 * it is the same (schema_same), else a new one appended to "$schemas".  The
 * registry keeps its own copy; s stays the caller's. */
payi_code registry_register(registry *r, payi_log *log, ev_schema *s, payi_err *err);

const ev_schema *registry_by_id(const registry *r, uint32_t id);
/* The latest schema of an event type, or NULL. */
const ev_schema *registry_latest(const registry *r, const char *type, uint32_t type_len);

/* The data of ev as JSON: JSON events as stored, typed events rendered with
 * their schema; an unknown id or a malformed typed record is written as
 * {"$error":"..."} rather than failing the whole read. */
void registry_write_data(const registry *r, const log_event *ev, buf *out);

#endif
