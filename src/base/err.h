/* err.h — payi's error codes and the error value that carries a message.
 *
 * One table, written once (PAYI_ERRORS), generates the enum, the stable error
 * word used in JSON answers and CLI messages, and the HTTP status.  Functions
 * return a payi_code; when they can fail for a reason a person must read, they
 * also take a payi_err* and fill it with the message (and the field at fault).
 */
#ifndef PAYI_ERR_H
#define PAYI_ERR_H

#include <stddef.h>

/*        name            word                    http  meaning */
#define PAYI_ERRORS(X)                                                             \
    X(OK,              "ok",                   200, "success")                     \
    X(BAD_JSON,        "bad_json",             400, "malformed JSON")              \
    X(VALIDATION,      "validation",           400, "invalid input")               \
    X(USAGE,           "usage",                400, "bad command-line usage")      \
    X(NOT_FOUND,       "not_found",            404, "not found")                   \
    X(UNKNOWN_COMMAND, "unknown_command",      404, "no such command in the spec") \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", 405, "method not allowed")        \
    X(CONFLICT,        "conflict",             409, "expected version mismatch")   \
    X(CANCELLED,       "cancelled",            409, "not attempted: an earlier append of the same submission failed") \
    X(TOO_LARGE,       "too_large",            413, "too large")                   \
    X(REJECTED,        "rejected",             422, "rejected by a rule of the command") \
    X(LOCKED,          "locked",               423, "data directory in use")       \
    X(IO,              "io_error",             500, "input/output error")          \
    X(CORRUPT,         "corrupt",              500, "data corruption")             \
    X(READ_ONLY,       "read_only",            503, "log is in read-only error state") \
    X(UNAVAILABLE,     "unavailable",          503, "unavailable")                 \
    X(TIMEOUT,         "timeout",              504, "timed out")                   \
    X(NOSPACE,         "insufficient_storage", 507, "insufficient storage")        \
    X(HANDLER,         "handler_error",        500, "the command's Lua handler failed") \
    X(INTERNAL,        "internal",             500, "internal error")

typedef enum {
#define PAYI_ERR_ENUM(name, word, http, text) PAYI_##name,
    PAYI_ERRORS(PAYI_ERR_ENUM)
#undef PAYI_ERR_ENUM
    PAYI__NCODES
} payi_code;

/* The error value: code, a human message, and optionally the input field at
 * fault ("stream", "data.day", ...).  Fixed size, no allocation, so it can be
 * filled on any path, including out-of-memory and I/O failure. */
typedef struct payi_err {
    payi_code code;
    char field[64];
    char msg[512];
} payi_err;

const char *payi_code_word(payi_code code);   /* "conflict"; static storage */
const char *payi_strerror(payi_code code);    /* "expected version mismatch" */
int payi_code_http(payi_code code);           /* 409 */

/* Fill err (if not NULL) and return code.  field may be NULL. */
payi_code payi_err_set(payi_err *err, payi_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Like payi_err_set with ": <strerror(errnum)>" appended. */
payi_code payi_err_sys(payi_err *err, payi_code code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Map an errno value from a failed write to the payi code that describes it. */
payi_code payi_code_from_errno(int errnum);

void payi_err_clear(payi_err *err);

#endif
