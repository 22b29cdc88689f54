/* json.h — a strict RFC 8259 JSON parser into a flat node array, and the
 * writing helpers payi uses at its edges (HTTP bodies, NDJSON on the CLI).
 *
 * Why our own: payi stores an event's data as the client sent it (minus
 * insignificant whitespace), so numbers keep their exact text (no double
 * round-trip: 1.10 stays 1.10, 12345678901234567890 stays as written), and the
 * parser must say precisely where and what is wrong (line, column, message).
 *
 * The tree: json_parse fills doc->nodes in document order (pre-order).  Node 0
 * is the root.  A container's children follow it directly; node.next is the
 * index just past the node's whole subtree, so skipping a value is O(1).  In
 * an object the children alternate key (a JSON_STRING node) and value.
 * Spans (start, len) point into the source text, which must outlive the doc.
 *
 * Strictness: exactly one value with optional surrounding whitespace; UTF-8 is
 * validated everywhere (overlongs, surrogates encoded in UTF-8, and code
 * points above U+10FFFF are errors); \u escapes must pair surrogates
 * correctly; control characters in strings are errors; numbers follow the
 * RFC grammar (no NaN, Infinity, leading zeros, leading '+', hex); duplicate
 * keys in one object are errors; nesting deeper than limits.max_depth and more
 * than limits.max_nodes nodes are errors.
 */
#ifndef PAYI_JSON_H
#define PAYI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json_node {
    json_kind kind;
    uint32_t start;   /* byte offset of the value's first character in the source */
    uint32_t len;     /* byte length of the value's text (strings: including the quotes) */
    uint32_t next;    /* index of the node after this node's subtree */
    uint32_t count;   /* arrays: elements; objects: key/value pairs; else 0 */
    uint32_t flags;   /* JSON_F_* */
} json_node;

#define JSON_F_ESCAPED 1u   /* string contains backslash escapes (decode needed) */
#define JSON_F_INTEGER 2u   /* number has no fraction and no exponent */

typedef struct json_limits {   /* a zero field means its default */
    uint32_t max_depth;   /* default 64 */
    uint32_t max_nodes;   /* default 1,000,000 */
} json_limits;

typedef struct json_doc {
    const char *src;      /* borrowed: the text parsed */
    size_t src_len;
    json_node *nodes;     /* owned; reused across json_parse calls on the same doc */
    uint32_t n, cap;
} json_doc;

typedef struct json_error {
    size_t offset;        /* byte offset of the error in the source */
    unsigned line, col;   /* 1-based; col counts bytes */
    char msg[160];        /* e.g. "invalid UTF-8 byte 0xff in string", "unexpected end of input" */
} json_error;

#define JSON_DOC_INIT {NULL, 0, NULL, 0, 0}

/* Parse src[0..len).  Returns true on success; on failure fills err (if not
 * NULL) and sets doc->n to 0.  limits may be NULL for the defaults.
 * Sources longer than UINT32_MAX bytes are refused. */
bool json_parse(json_doc *doc, const char *src, size_t len, const json_limits *limits, json_error *err);
void json_doc_release(json_doc *doc);   /* frees nodes; doc can be parsed into again */

/* Navigation.  Indexes are node indexes in doc->nodes.  json_first_child is
 * meaningful only for a container whose count is > 0. */
static inline uint32_t json_first_child(const json_doc *d, uint32_t i) { (void)d; return i + 1; }
static inline uint32_t json_next_sibling(const json_doc *d, uint32_t i) { return d->nodes[i].next; }
/* Value node of key in object obj, or UINT32_MAX when absent (key compared
 * after unescaping). */
uint32_t json_object_get(const json_doc *d, uint32_t obj, const char *key);
/* True when string node i (unescaped) equals s. */
bool json_string_eq(const json_doc *d, uint32_t i, const char *s);

/* Conversions.  Each returns false (and leaves *out unchanged) when the node
 * is not of the right kind or the value does not fit. */
/* Decode a string node into out (replaces out's content; NUL-terminated; may contain
 * NUL bytes from \u0000, so use out->len). */
bool json_get_string(const json_doc *d, uint32_t i, buf *out);
/* Integer: the number must be an integer literal within int64 range. */
bool json_get_int64(const json_doc *d, uint32_t i, int64_t *out);
/* Any number, converted with strtod; false on overflow to infinity. */
bool json_get_double(const json_doc *d, uint32_t i, double *out);

/* Append the compact text of node i's subtree to out: insignificant
 * whitespace removed, strings and numbers copied byte for byte as written. */
void json_write_compact(const json_doc *d, uint32_t i, buf *out);

/* Writing.  json_put_string appends s[0..len) as a quoted JSON string,
 * escaping '"', '\\' and control characters (as \n, \t, ... or \u00XX); s must be
 * valid UTF-8 (not checked here: validate input where it enters). */
void json_put_string(buf *out, const char *s, size_t len);

/* Validate that s[0..len) is UTF-8 under the same rules as the parser.  On
 * failure *bad_offset is the offset of the first bad byte. */
bool json_utf8_valid(const char *s, size_t len, size_t *bad_offset);

#endif
