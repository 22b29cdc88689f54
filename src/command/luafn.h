/* luafn.h — custom command logic in Lua (LuaJIT), sandboxed.
 *
 * A spec may give a command a Lua body instead of declarative rules:
 *
 *   CREATE COMMAND Transfer (...) FOR account LANGUAGE lua AS $$
 *     function decide(state, cmd)
 *       if cmd.amount > state.balance then reject("insufficient funds") end
 *       return { {type = "Debited", data = {account = cmd.account, amount = cmd.amount}} }
 *     end
 *   $$;
 *
 * decide(state, cmd) returns a list of events ({type=..., data={...}}), or an
 * empty list, or calls reject(message) to refuse the command.  Values cross
 * as: NULL -> nil, boolean -> boolean, bigint and double -> number (a bigint
 * beyond +-2^53 is refused: a Lua number cannot hold it exactly), text ->
 * string, date -> "YYYY-MM-DD", timestamptz -> "YYYY-MM-DDTHH:MM:SS.ffffffZ",
 * jsonb -> its JSON text.  Event data comes back as JSON text (integral
 * numbers as integers; NaN and infinities are errors; nested tables become
 * objects, or arrays when their keys are exactly 1..n), which the caller
 * then validates against the event's schema like any other append.
 *
 * Sandbox: only the base functions without load/loadstring/dofile/loadfile/
 * require/collectgarbage/getfenv/setfenv/rawset-on-globals, and the string
 * (without string.dump), table and math libraries.  No io, os, package,
 * debug, ffi, jit.  Each call is bounded in time (an instruction-count hook
 * checks a deadline; the JIT is off so that the hook always runs) and the
 * whole state in memory (an allocator with a cap).  Each handler's globals
 * live in their own environment table, so handlers cannot see or change
 * each other's state, and a call cannot leave globals behind for the next.
 *
 * Errors name the spec file and line: code is loaded as if it started at
 * first_line of file, so "spec.payi:23: attempt to index a nil value".
 *
 * Threads: a luafn is used by one thread at a time; callers keep one per
 * worker thread (loading the same sources into each).
 */
#ifndef PAYI_LUAFN_H
#define PAYI_LUAFN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "spec/expr.h"

typedef struct luafn luafn;

typedef struct luafn_limits {
    uint32_t max_ms;        /* per call (default 100) */
    size_t max_bytes;       /* the whole Lua state (default 64 MiB) */
} luafn_limits;

void luafn_limits_default(luafn_limits *l);

payi_code luafn_open(luafn **out, const luafn_limits *lim, payi_err *err);
void luafn_close(luafn *L);

/* Compile src (Lua source, first byte at line first_line of file) in a fresh
 * environment, run its top level (bounded like a call), and find the global
 * function fname in it.  *handle identifies it for luafn_call.  Errors
 * (PAYI_VALIDATION) read "file:line: message". */
payi_code luafn_load(luafn *L, const char *file, uint32_t first_line, const char *src, size_t len,
                     const char *fname, int *handle, payi_err *err);

/* A record handed to Lua: field names and values, in order. */
typedef struct luafn_record {
    const char *const *names;
    const expr_value *values;
    uint32_t n;
} luafn_record;

/* What a call produced.  Owned by the caller: init once, reused across calls. */
typedef struct luafn_event {
    uint32_t type_off, type_len;   /* into text */
    uint32_t data_off, data_len;   /* JSON object text, into text */
} luafn_event;

typedef struct luafn_result {
    bool rejected;            /* reject(message) was called: message in text[reject_off..+reject_len) */
    uint32_t reject_off, reject_len;
    luafn_event *events;
    uint32_t nevents, cap;
    buf text;
} luafn_result;

void luafn_result_init(luafn_result *r);
void luafn_result_release(luafn_result *r);

/* Call handle(state, cmd).  PAYI_OK with either res->rejected or the events;
 * PAYI_INTERNAL "file:line: message" for a Lua error, a result of the wrong
 * shape, a timeout ("... exceeded its time limit of N ms") or memory
 * exhaustion ("... exceeded its memory limit of N bytes").  The state stays
 * usable after any error. */
payi_code luafn_call(luafn *L, int handle, const luafn_record *state, const luafn_record *cmd, luafn_result *res,
                     payi_err *err);

#endif
