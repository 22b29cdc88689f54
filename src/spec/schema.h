/* schema.h — typed records: the declared shape of an event type, a command or
 * an aggregate's state, how JSON is validated against it, and the compact
 * typed form events of declared types are stored in.
 *
 * A schema is an ordered list of fields (name, SQL type, NOT NULL, DEFAULT)
 * and CHECK constraints over those fields.  Values travel as expr_value
 * arrays, one slot per field in declaration order, so that the same slots are
 * the columns of the expressions that read them (CHECK, REJECT IF, EMIT ...).
 *
 * JSON in (schema_decode_json): an object whose keys are field names.  Every
 * error names the field ("data.day") and says what was wrong:
 *   unknown key                -> validation, "unknown field"
 *   wrong JSON kind            -> validation, "expected a bigint, got a string"
 *   bigint not an integer literal or outside int64; double overflowing to
 *   infinity; date/timestamptz not a real calendar value; text containing
 *   U+0000 (PostgreSQL refuses it too)        -> validation
 *   missing or null NOT NULL field with no DEFAULT -> validation
 *   a CHECK that evaluates to false            -> validation (NULL passes, as in SQL)
 * A missing field takes its DEFAULT, else NULL.  Text values point into the
 * JSON source when unescaped, else into the expr_ctx arena.
 *
 * The typed form (schema_encode / schema_get / schema_write_json), little-endian:
 *
 *   off        size  field
 *   0          4     schema id (the registry's number for this schema version)
 *   4          B     null bitmap, B = ceil(n/8): bit i set = field i is NULL
 *   4+B        8*n   one slot per field: bool (0/1), bigint, date (days),
 *                    timestamptz (us) as int64; double as its IEEE bits;
 *                    text and jsonb as (u32 offset into the tail, u32 length)
 *   4+B+8n     ...   the tail: text and jsonb bytes, back to back
 *
 * Example: (country text, day date, cases bigint) = ('CI', 2020-03-11, 5)
 * with id 3 is 4 + 1 + 24 + 2 = 31 bytes.  Reading field i costs one memcpy
 * at a fixed offset: views read fields without parsing anything.
 *
 * Ownership: a schema owns its names, defaults and compiled checks; values it
 * returns borrow from the caller's data or the expr_ctx arena.
 */
#ifndef PAYI_SCHEMA_H
#define PAYI_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/json.h"
#include "spec/expr.h"

#define SCHEMA_MAX_FIELDS 256
#define SCHEMA_NO_ID UINT32_MAX

typedef struct schema_field {
    char *name;           /* as folded by the spec parser (lower case unless quoted) */
    expr_type type;
    bool not_null;
    bool has_default;
    char *default_sql;    /* the DEFAULT expression as written, or NULL */
    expr_value def;       /* its value, computed once (text/jsonb owned by the schema) */
} schema_field;

typedef struct schema_check {
    char *sql;            /* the expression as written */
    char *field;          /* the field the CHECK was written on (named in errors), or NULL for a table CHECK */
    expr *e;
} schema_check;

typedef struct ev_schema {
    char *name;           /* event type, command or aggregate name, as written */
    schema_field *fields;
    uint32_t nfields;
    schema_check *checks;
    uint32_t nchecks;
    expr_column *cols;    /* fields as expression columns, in order (for CHECK and callers' scopes) */
    uint32_t id;          /* registry id of this version; SCHEMA_NO_ID until registered */
} ev_schema;

ev_schema *schema_new(const char *name, size_t name_len);
void schema_free(ev_schema *s);

/* Add a field.  default_sql (may be NULL) is a constant expression, evaluated
 * now and cast to the field's type.  Errors: duplicate field name, too many
 * fields, a DEFAULT that does not parse, is not constant, or does not fit
 * the type (expression errors keep expr's " (at N)" suffix, N relative to
 * default_sql). */
payi_code schema_add_field(ev_schema *s, const char *name, size_t name_len, expr_type type, bool not_null,
                           const char *default_sql, size_t default_len, payi_err *err);
/* Add a CHECK over the fields added so far (call after the last field);
 * field names the field it was written on, or NULL.  The expression must
 * be boolean. */
payi_code schema_add_check(ev_schema *s, const char *field, const char *sql, size_t len, payi_err *err);
/* Index of a field, or -1. */
int schema_field_index(const ev_schema *s, const char *name, size_t len);

/* Validate the object at node obj of d into slots[0..nfields).  prefix names
 * the object in error fields ("data" gives "data.day"; "" gives "day").
 * Runs NOT NULL, DEFAULT and CHECK. */
payi_code schema_decode_json(const ev_schema *s, const json_doc *d, uint32_t obj, const char *prefix,
                             expr_value *slots, expr_ctx *ctx, payi_err *err);
/* NOT NULL and CHECK on slots that were computed rather than decoded (an
 * EMIT's fields); missing values must already hold their DEFAULT. */
payi_code schema_validate(const ev_schema *s, const expr_value *slots, const char *prefix, expr_ctx *ctx,
                          payi_err *err);

/* The typed form: append it to out (the id written is s->id). */
void schema_encode(const ev_schema *s, const expr_value *slots, buf *out);
/* The schema id of typed data, false when shorter than 4 bytes. */
bool schema_data_id(const char *data, size_t len, uint32_t *id);
/* Check that typed data has this schema's layout: sizes, offsets inside the
 * tail, booleans 0/1.  Decoders call it once per record read from disk. */
payi_code schema_check_data(const ev_schema *s, const char *data, size_t len, payi_err *err);
/* Only what schema_get needs to stay within bounds (header, slots, tail
 * offsets), not the text and jsonb bytes: for hot readers of records this
 * process's log wrote and checksummed, whose values were checked when they
 * were encoded. */
payi_code schema_check_layout(const ev_schema *s, const char *data, size_t len, payi_err *err);
/* Field i of checked typed data (text/jsonb borrow from data). */
void schema_get(const ev_schema *s, const char *data, size_t len, uint32_t i, expr_value *out);
/* The JSON object of checked typed data: every field, NULL as null, numbers
 * that read back as the same value, dates "YYYY-MM-DD", timestamps
 * "YYYY-MM-DDTHH:MM:SS.ffffffZ", jsonb as stored. */
void schema_write_json(const ev_schema *s, const char *data, size_t len, buf *out);
/* The JSON object of slots (the same shape as schema_write_json). */
void schema_write_slots_json(const ev_schema *s, const expr_value *slots, buf *out);
/* One value as JSON (the rules of schema_write_json). */
void schema_put_value_json(buf *out, const expr_value *v);

/* The schema as JSON, for the registry and for people:
 *   {"name":"CasesReported","fields":[{"name":"day","type":"date","not_null":true,
 *    "default":"...","check":"..."}...],"checks":["..."]}
 * A field's own CHECKs are listed on it; table CHECKs under "checks".
 * schema_from_json rebuilds it (compiling checks and defaults again). */
void schema_to_json(const ev_schema *s, buf *out);
payi_code schema_from_json(const json_doc *d, uint32_t obj, ev_schema **out, payi_err *err);
/* Same fields, types, constraints (ids are not compared). */
bool schema_same(const ev_schema *a, const ev_schema *b);

#endif
