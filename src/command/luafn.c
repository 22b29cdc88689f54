/* luafn.c — command handlers written in Lua, run in a LuaJIT sandbox.
 *
 * One lua_State per luafn holds every handler loaded into it.  The pieces:
 *
 * Sandbox by construction.  Only the base, string, table and math libraries
 * are ever opened (io, os, package, debug, ffi and jit do not exist in the
 * state at all).  At open a "template" table is built from a whitelist of
 * base functions plus those three libraries; each handler gets a copy of it
 * (with its own copies of string, table and math, so one handler replacing
 * string.format cannot affect another).  load, loadstring, dofile, loadfile,
 * require, collectgarbage, gcinfo, getfenv, setfenv, newproxy (finalizers),
 * coroutine and print (payi's stdout carries NDJSON) are not on the list;
 * string.dump is deleted from the library itself, because the string
 * metatable's __index still reaches it through ("x"):dump().  That metatable
 * gets __metatable = false so getmetatable("") cannot reach it.  Source is
 * loaded in text mode only: LuaJIT bytecode is not verified.
 *
 * Globals.  Every function in a handler's code has as its environment the
 * same empty proxy table, whose metatable's __index and __newindex point
 * where globals really live:
 *   - while the top level runs (luafn_load): at the handler's base table, so
 *     the functions and values it defines become the handler's globals;
 *   - during each call: at a fresh scratch table S whose own __index is the
 *     base table.  Reads fall through to the base; writes land in S, which is
 *     dropped after the call.
 * A fresh environment per call set with setfenv on the entry function alone
 * would not do: helper functions defined by the same code keep the load-time
 * environment and would write into it.  Swapping what one proxy points to
 * covers every function of the handler at once, for the cost of creating one
 * table per call.  The proxy's metatable is protected (__metatable), rawset
 * refuses the proxy, and the proxy is emptied after every call in case a raw
 * write slipped in anyway (table.insert(_G, x) writes raw).  What this does
 * not isolate, by design: tables and upvalues created by the top level are
 * shared by the calls of that handler (mutating them is mutating data, not
 * defining globals); handlers never share any.  Visible quirks: pairs(_G)
 * and rawget(_G, k) see the empty proxy, and methods on strings
 * (s:upper()) use the shared library, not the handler's copy of string.
 *
 * Time.  The JIT is off for the whole state, so the interpreter runs every
 * instruction and a count hook fires every HOOK_EVERY instructions; it
 * compares CLOCK_MONOTONIC with the call's deadline.  Known gap: a single C
 * library call does not execute instructions, so a pathological pattern
 * (string.find with many backtracking items over a long subject) is not
 * interrupted until it returns.
 *
 * Memory.  The state's allocator counts the bytes Lua holds and refuses
 * (returns NULL) any growth beyond max_bytes; Lua then raises its
 * out-of-memory error.  The count includes garbage not yet collected, and
 * Lua 5.1 has no emergency collection, so: after an out-of-memory error a
 * full collection (with the cap lifted while it runs) brings the state back
 * to its live size, and a call that starts with more than half the cap in
 * use collects first.
 *
 * Aborts that user code must not swallow.  reject(), a timeout and memory
 * exhaustion set self->abort and raise an error.  pcall and xpcall are
 * replaced by versions that re-raise when an abort is pending (and xpcall
 * runs no user handler then), and the hook raises again each time it fires,
 * so user code cannot catch an abort and carry on.
 *
 * Error locations.  Source is fed to Lua after first_line - 1 newlines under
 * the chunk name "=" + file, so Lua's own messages read "file:line: ...".
 * The message handler adds the location of the innermost frame of the
 * handler's code to messages without one (error("x", 0), error({})).  Lua
 * truncates the chunk name in messages (LUA_IDSIZE); messages are rewritten
 * to the full file name on the way out, and made valid UTF-8.
 *
 * Every use of the Lua API runs inside lua_cpcall: allocation can fail at
 * any point, and an error outside a protected call would abort the process.
 */
#include "command/luafn.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/mem.h"

#define DEFAULT_MAX_MS 100u
#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define HOOK_EVERY 1000          /* instructions between deadline checks */
#define JSON_MAX_DEPTH 32        /* nested tables in event data */
#define EXACT_INT_LIMIT 9007199254740992.0   /* 2^53: larger integers lose precision in a double */
#define MSG_QUOTE_MAX 64         /* bytes of a user string quoted in an error message */

typedef enum { ABORT_NONE, ABORT_REJECT, ABORT_TIMEOUT, ABORT_MEMORY } abort_kind;

/* What is known about a handler on the C side, for messages. */
typedef struct handler {
    char *file;
    char *chunkname;                 /* "=" file: what Lua reports as the source */
    char short_src[LUA_IDSIZE];      /* the file name as Lua prints it (possibly truncated) */
    char *fname;
    uint32_t first_line;
    uint32_t line_defined;           /* line of "function fname": where shape errors point */
} handler;

/* Slots of a handler's record table in the registry. */
enum { REC_FN = 1, REC_META, REC_BASE, REC_SCRATCH_META, REC_ENV, REC_NSLOTS = REC_ENV };

typedef struct key_ref {
    const char *s;   /* a string key of a table being converted; the table keeps it alive */
    size_t len;
} key_ref;

struct luafn {
    lua_State *L;
    luafn_limits lim;
    size_t used;                     /* bytes the allocator has handed to Lua */
    bool collecting;                 /* our own full collection: the cap is lifted */

    /* The load or call in progress. */
    abort_kind abort;
    int abort_line;                  /* line running when the time ran out, or -1 */
    uint64_t deadline_ns;
    const handler *cur;
    luafn_result *cur_res;           /* NULL while loading: reject() is then an error */

    int template_ref, handlers_ref;  /* registry references */
    handler *handlers;
    size_t nhandlers, handlers_cap;

    /* Scratch for converting event data; kept here, not on the C stack,
     * because a Lua error may unwind through the converter. */
    key_ref *keys;
    size_t nkeys, keys_cap;
    const void *ancestors[JSON_MAX_DEPTH + 1];
    char path[256];
    size_t path_len;
    char detail[512];                /* what was wrong, for the message */
};

/* The address identifies the abort error and marks the proxy environments. */
static char abort_sentinel;
static char environment_marker;

static const char *const allowed_base_functions[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "rawequal", "rawget",
    "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "_VERSION",
};

/* ------------------------------------------------------------- messages */

/* Copy src[0..len) into dst (cap bytes, NUL-terminated) as valid UTF-8:
 * invalid bytes become '?', and a cut for room falls between characters.
 * Messages end up in JSON answers, whose writer requires valid UTF-8. */
static void copy_utf8(char *dst, size_t cap, const char *src, size_t len)
{
    size_t o = 0, i = 0;
    while (i < len && o + 1 < cap) {
        size_t run = len - i, bad;
        if (json_utf8_valid(src + i, run, &bad))
            bad = run;
        size_t n = bad, room = cap - 1 - o;
        if (n > room) {
            n = room;
            while (n > 0 && ((unsigned char)src[i + n] & 0xC0) == 0x80)
                n--;
        }
        memcpy(dst + o, src + i, n);
        o += n;
        i += n;
        if (n < bad || o + 1 >= cap)
            break;
        if (i < len) {
            dst[o++] = '?';
            i++;
        }
    }
    dst[o] = '\0';
}

/* payi_err_set, with the message made valid UTF-8 (it may quote user text). */
static payi_code fail(payi_err *err, payi_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static payi_code fail(payi_err *err, payi_code code, const char *field, const char *fmt, ...)
{
    char raw[1024], clean[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
    copy_utf8(clean, sizeof clean, raw, len);
    return payi_err_set(err, code, field, "%s", clean);
}

/* Whether a Lua message starts with the handler's location "file:N". */
static bool has_location(const handler *h, const char *msg, size_t len)
{
    size_t n = strlen(h->short_src);
    return len > n + 1 && memcmp(msg, h->short_src, n) == 0 && msg[n] == ':' && msg[n + 1] >= '0' &&
           msg[n + 1] <= '9';
}

/* A Lua error message as a payi error "file:line: message": Lua's
 * (possibly truncated) file name is replaced by the full one, and a message
 * without a location gets the handler's. */
static payi_code fail_lua_message(payi_err *err, payi_code code, const handler *h, const char *msg, size_t len)
{
    int shown = len > 900 ? 900 : (int)len;
    if (has_location(h, msg, len))
        return fail(err, code, NULL, "%s%.*s", h->file, shown - (int)strlen(h->short_src),
                    msg + strlen(h->short_src));
    return fail(err, code, NULL, "%s:%u: %.*s", h->file, h->line_defined, shown, msg);
}

/* "decide" for a call, or the top level while loading. */
static const char *running_what(const luafn *self) { return self->cur_res ? self->cur->fname : "the top-level code"; }

static payi_code fail_abort(luafn *self, payi_code code, payi_err *err)
{
    const handler *h = self->cur;
    if (self->abort == ABORT_TIMEOUT) {
        unsigned line = self->abort_line > 0 ? (unsigned)self->abort_line : h->line_defined;
        return fail(err, code, NULL, "%s:%u: %s exceeded its time limit of %u ms", h->file, line,
                    running_what(self), self->lim.max_ms);
    }
    /* Lua raises memory errors without running the message handler, so the
     * line that allocated is unknown: point at the handler. */
    return fail(err, code, NULL, "%s:%u: %s exceeded its memory limit of %zu bytes", h->file, h->line_defined,
                running_what(self), self->lim.max_bytes);
}

/* ---------------------------------------------------- allocator and clock */

static luafn *owner(lua_State *L)
{
    void *ud = NULL;
    (void)lua_getallocf(L, &ud);
    return ud;
}

/* Lua's allocator contract: nsize 0 frees; otherwise realloc semantics, and
 * a shrink must not fail.  Growth past the cap is refused with NULL, which
 * Lua turns into its out-of-memory error. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    luafn *self = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        self->used -= old;
        return NULL;
    }
    if (nsize > old && !self->collecting &&
        (self->used > self->lim.max_bytes || nsize - old > self->lim.max_bytes - self->used)) {
        if (self->abort == ABORT_NONE)
            self->abort = ABORT_MEMORY;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        if (nsize > old) {
            if (self->abort == ABORT_NONE)
                self->abort = ABORT_MEMORY;
            return NULL;
        }
        p = ptr;   /* a failed shrink: the old block is still big enough */
    }
    self->used = self->used - old + nsize;
    return p;
}

/* Now on the monotonic clock; if the clock cannot be read, the time is
 * treated as up, so that a call stays bounded. */
static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return UINT64_MAX;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void start_clock(luafn *self)
{
    uint64_t now = monotonic_ns(), budget = (uint64_t)self->lim.max_ms * 1000000u;
    self->deadline_ns = now > UINT64_MAX - budget ? UINT64_MAX : now + budget;
}

/* --------------------------------------------------------- aborts, hook */

static int raise_abort(lua_State *L)
{
    lua_pushlightuserdata(L, &abort_sentinel);   /* allocates nothing: works out of memory too */
    return lua_error(L);
}

static bool aborting(lua_State *L) { return owner(L)->abort != ABORT_NONE; }

/* The line of the innermost frame running the handler's own code, or -1. */
static int running_line(lua_State *L, const handler *h)
{
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar))
            break;
        if (ar.currentline > 0 && ar.source && strcmp(ar.source, h->chunkname) == 0)
            return ar.currentline;
    }
    return -1;
}

static void deadline_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luafn *self = owner(L);
    if (self->abort == ABORT_NONE) {
        if (monotonic_ns() < self->deadline_ns)
            return;
        self->abort = ABORT_TIMEOUT;
        self->abort_line = running_line(L, self->cur);
    }
    /* Raised again on every firing while an abort is pending, in case user
     * code got control back somehow. */
    raise_abort(L);
}

/* Message handler of the protected calls into user code: gives every error
 * a "file:line:" location.  Abort errors pass through untouched. */
static int locate_error(lua_State *L)
{
    luafn *self = owner(L);
    if (self->abort != ABORT_NONE)
        return 1;
    const handler *h = self->cur;
    int line = running_line(L, h);
    if (line < 0)
        line = (int)h->line_defined;
    if (lua_isstring(L, 1)) {   /* a string or a number */
        size_t len;
        const char *msg = lua_tolstring(L, 1, &len);
        if (has_location(h, msg, len))
            return 1;
        lua_pushfstring(L, "%s:%d: %s", h->short_src, line, msg);
    } else {
        lua_pushfstring(L, "%s:%d: error object is a %s value", h->short_src, line, luaL_typename(L, 1));
    }
    return 1;
}

/* ------------------------------------------------- sandboxed base functions */

static int sandbox_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (status != 0 && aborting(L))
        return lua_error(L);   /* rethrow the abort */
    luaL_checkstack(L, 1, NULL);
    lua_pushboolean(L, status == 0);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* The message handler xpcall installs: the user's, except during an abort. */
static int xpcall_handler(lua_State *L)
{
    if (aborting(L))
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sandbox_xpcall(lua_State *L)
{
    luaL_checkany(L, 2);
    int nargs = lua_gettop(L) - 2;
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_insert(L, 1);    /* handler, f, user handler, args... */
    lua_remove(L, 3);    /* handler, f, args... */
    int status = lua_pcall(L, nargs, LUA_MULTRET, 1);
    if (status != 0 && aborting(L))
        return lua_error(L);
    lua_pushboolean(L, status == 0);
    lua_replace(L, 1);
    return lua_gettop(L);
}

static bool is_environment(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return false;
    lua_pushlightuserdata(L, &environment_marker);
    lua_rawget(L, -2);
    bool yes = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return yes;
}

static int sandbox_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (is_environment(L, 1))
        return luaL_error(L, "rawset on the global environment is not allowed");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* reject(message): refuse the command.  The message goes straight into the
 * result text; luafn_call sees the abort and reports rejected. */
static int sandbox_reject(lua_State *L)
{
    luafn *self = owner(L);
    if (self->abort != ABORT_NONE)
        return raise_abort(L);
    if (!self->cur_res)
        return luaL_error(L, "reject() can only be called while deciding a command, not when the code is loaded");
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_error(L, "reject expects a message string, got %s", luaL_typename(L, 1));
    size_t len, bad;
    const char *msg = lua_tolstring(L, 1, &len);
    if (!json_utf8_valid(msg, len, &bad))
        return luaL_error(L, "reject message is not valid UTF-8 (byte %d)", (int)bad);
    if (len > UINT32_MAX - self->cur_res->text.len)
        return luaL_error(L, "reject message is too long");
    luafn_result *r = self->cur_res;
    r->reject_off = (uint32_t)r->text.len;
    r->reject_len = (uint32_t)len;
    buf_put(&r->text, msg, len);
    self->abort = ABORT_REJECT;
    return raise_abort(L);
}

/* ------------------------------------------------------------ state setup */

static void open_library(lua_State *L, lua_CFunction open, const char *name)
{
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

static void set_cfunction(lua_State *L, int table, const char *name, lua_CFunction f)
{
    lua_pushcfunction(L, f);
    lua_setfield(L, table, name);
}

/* Runs in lua_cpcall: opens the allowed libraries, closes the string
 * metatable and string.dump, and builds the template of a handler's globals. */
static int setup_state(lua_State *L)
{
    luafn *self = lua_touserdata(L, 1);
    lua_settop(L, 0);
    open_library(L, luaopen_base, "");
    open_library(L, luaopen_string, LUA_STRLIBNAME);
    open_library(L, luaopen_table, LUA_TABLIBNAME);
    open_library(L, luaopen_math, LUA_MATHLIBNAME);

    lua_getglobal(L, LUA_STRLIBNAME);   /* 1: the string library, also the string metatable's __index */
    lua_pushnil(L);
    lua_setfield(L, 1, "dump");
    lua_pushliteral(L, "");
    if (!lua_getmetatable(L, -1))
        return luaL_error(L, "strings have no metatable");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_newtable(L);                    /* 2: the template */
    for (size_t i = 0; i < sizeof allowed_base_functions / sizeof allowed_base_functions[0]; i++) {
        lua_getglobal(L, allowed_base_functions[i]);
        if (lua_isnil(L, -1))
            return luaL_error(L, "base library has no %s", allowed_base_functions[i]);
        lua_setfield(L, 2, allowed_base_functions[i]);
    }
    set_cfunction(L, 2, "pcall", sandbox_pcall);
    set_cfunction(L, 2, "xpcall", sandbox_xpcall);
    set_cfunction(L, 2, "rawset", sandbox_rawset);
    set_cfunction(L, 2, "reject", sandbox_reject);
    lua_pushvalue(L, 1);
    lua_setfield(L, 2, LUA_STRLIBNAME);
    lua_getglobal(L, LUA_TABLIBNAME);
    lua_setfield(L, 2, LUA_TABLIBNAME);
    lua_getglobal(L, LUA_MATHLIBNAME);
    lua_setfield(L, 2, LUA_MATHLIBNAME);
    lua_pushvalue(L, 2);
    self->template_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    self->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (self->template_ref == LUA_REFNIL || self->handlers_ref == LUA_REFNIL)
        return luaL_error(L, "cannot reference the sandbox tables");
    return 0;
}

void luafn_limits_default(luafn_limits *l)
{
    l->max_ms = DEFAULT_MAX_MS;
    l->max_bytes = DEFAULT_MAX_BYTES;
}

payi_code luafn_open(luafn **out, const luafn_limits *lim, payi_err *err)
{
    *out = NULL;
    luafn *self = xcalloc(1, sizeof *self);
    luafn_limits_default(&self->lim);
    if (lim && lim->max_ms)
        self->lim.max_ms = lim->max_ms;
    if (lim && lim->max_bytes)
        self->lim.max_bytes = lim->max_bytes;
    self->template_ref = self->handlers_ref = LUA_NOREF;

    self->L = lua_newstate(capped_alloc, self);
    if (!self->L) {
        size_t max_bytes = self->lim.max_bytes;
        free(self);
        return fail(err, PAYI_INTERNAL, NULL, "cannot create a Lua state (memory limit %zu bytes)", max_bytes);
    }
    /* The JIT would run compiled traces without calling the count hook. */
    if (!luaJIT_setmode(self->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF)) {
        luafn_close(self);
        return fail(err, PAYI_INTERNAL, NULL, "cannot turn the LuaJIT compiler off");
    }
    int status = lua_cpcall(self->L, setup_state, self);
    if (status != 0) {
        const char *msg = lua_tostring(self->L, -1);
        payi_code code =
            status == LUA_ERRMEM || self->abort == ABORT_MEMORY
                ? fail(err, PAYI_INTERNAL, NULL, "the Lua libraries do not fit in the memory limit of %zu bytes",
                       self->lim.max_bytes)
                : fail(err, PAYI_INTERNAL, NULL, "cannot set up the Lua sandbox: %s", msg ? msg : "?");
        luafn_close(self);
        return code;
    }
    lua_settop(self->L, 0);
    if (!lua_sethook(self->L, deadline_hook, LUA_MASKCOUNT, HOOK_EVERY)) {
        luafn_close(self);
        return fail(err, PAYI_INTERNAL, NULL, "cannot install the Lua time-limit hook");
    }
    *out = self;
    return PAYI_OK;
}

static void handler_release(handler *h)
{
    free(h->file);
    free(h->chunkname);
    free(h->fname);
}

void luafn_close(luafn *self)
{
    if (!self)
        return;
    if (self->L)
        lua_close(self->L);   /* before free(self): the allocator counts into self */
    for (size_t i = 0; i < self->nhandlers; i++)
        handler_release(&self->handlers[i]);
    free(self->handlers);
    free(self->keys);
    free(self);
}

/* A full collection.  Lua 5.1 has no emergency collection: when the cap
 * refuses an allocation, the garbage of the failed call is still counted,
 * and the next call would fail too.  No finalizers can exist in the
 * sandbox, so this runs no user code. */
static int collect_all(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* Collect everything, lifting the cap meanwhile: right at the cap, even
 * lua_cpcall's own closure (or the string table that a sweep shrinks into
 * a new array) could not be allocated. */
static void collect_garbage(luafn *self)
{
    lua_settop(self->L, 0);
    self->collecting = true;
    (void)lua_cpcall(self->L, collect_all, NULL);   /* nothing to report if even that fails */
    self->collecting = false;
    lua_settop(self->L, 0);
}

/* ------------------------------------------------------- environments */

/* Empty table t (at absolute index t) of all its raw keys. */
static void clear_table(lua_State *L, int t)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, t);
    }
}

static void copy_table(lua_State *L, int src)
{
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* Point the environment proxy's reads and writes at table idx. */
static void aim_environment(lua_State *L, int meta, int idx)
{
    lua_pushliteral(L, "__index");
    lua_pushvalue(L, idx);
    lua_rawset(L, meta);
    lua_pushliteral(L, "__newindex");
    lua_pushvalue(L, idx);
    lua_rawset(L, meta);
}

/* Push a new handler's base (globals), proxy metatable, proxy, and the
 * metatable of its per-call scratch tables: four values, in that order. */
static void new_environment(lua_State *L, luafn *self)
{
    int top = lua_gettop(L);
    int base = top + 1, meta = top + 2, env = top + 3;
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->template_ref);
    int tmpl = lua_gettop(L);
    copy_table(L, tmpl);
    lua_pushnil(L);
    while (lua_next(L, tmpl)) {   /* each handler its own string, table and math */
        if (lua_istable(L, -1)) {
            copy_table(L, lua_gettop(L));
            lua_pushvalue(L, -3);
            lua_insert(L, -2);
            lua_rawset(L, -5);
        }
        lua_pop(L, 1);
    }
    lua_remove(L, tmpl);   /* base is at top + 1 again */

    lua_createtable(L, 0, 4);
    aim_environment(L, meta, base);
    lua_pushboolean(L, 0);
    lua_setfield(L, meta, "__metatable");
    lua_pushlightuserdata(L, &environment_marker);
    lua_pushboolean(L, 1);
    lua_rawset(L, meta);

    lua_newtable(L);
    lua_pushvalue(L, meta);
    lua_setmetatable(L, env);
    lua_pushvalue(L, env);
    lua_setfield(L, base, "_G");

    lua_createtable(L, 0, 1);
    lua_pushvalue(L, base);
    lua_setfield(L, -2, "__index");
}

/* ------------------------------------------------------------- loading */

#define NL16 "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n"
static const char line_padding[] = NL16 NL16 NL16 NL16 NL16 NL16 NL16 NL16;

/* Feeds Lua first_line - 1 newlines, then the source: line numbers in
 * messages are then the spec file's. */
typedef struct chunk_reader {
    const char *src;
    size_t len;
    uint32_t padding_left;
    bool src_given;
} chunk_reader;

static const char *read_chunk(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    chunk_reader *r = ud;
    if (r->padding_left) {
        size_t n = sizeof line_padding - 1;
        if (r->padding_left < n)
            n = r->padding_left;
        r->padding_left -= (uint32_t)n;
        *size = n;
        return line_padding;
    }
    if (!r->src_given && r->len) {
        r->src_given = true;
        *size = r->len;
        return r->src;
    }
    *size = 0;
    return NULL;
}

typedef struct load_ctx {
    luafn *self;
    handler *h;
    const char *src;
    size_t len;
    payi_err *err;
    payi_code code;
} load_ctx;

static int load_protected(lua_State *L)
{
    load_ctx *c = lua_touserdata(L, 1);
    luafn *self = c->self;
    handler *h = c->h;
    lua_settop(L, 0);
    lua_pushcfunction(L, locate_error);   /* 1 */
    new_environment(L, self);             /* 2 base, 3 meta, 4 env, 5 scratch meta */

    chunk_reader rd = {c->src, c->len, h->first_line - 1, false};
    int status = lua_loadx(L, read_chunk, &rd, h->chunkname, "t");   /* 6 */
    if (status == 0) {
        lua_pushvalue(L, 4);
        if (!lua_setfenv(L, 6))
            return luaL_error(L, "cannot set the environment of the chunk");
        start_clock(self);
        status = lua_pcall(L, 0, 0, 1);
    }
    if (status != 0) {
        if (self->abort == ABORT_TIMEOUT || self->abort == ABORT_MEMORY || status == LUA_ERRMEM) {
            if (self->abort == ABORT_NONE)
                self->abort = ABORT_MEMORY;
            c->code = fail_abort(self, PAYI_VALIDATION, c->err);
        } else {
            size_t len = 0;
            const char *msg = lua_tolstring(L, -1, &len);
            c->code = msg ? fail_lua_message(c->err, PAYI_VALIDATION, h, msg, len)
                          : fail(c->err, PAYI_VALIDATION, NULL, "%s:%u: error while loading", h->file, h->first_line);
        }
        return 0;
    }

    lua_pushstring(L, h->fname);
    lua_rawget(L, 2);                     /* 6: the handler function */
    if (!lua_isfunction(L, 6)) {
        c->code = lua_isnil(L, 6)
                      ? fail(c->err, PAYI_VALIDATION, NULL, "%s:%u: the code defines no global function %s", h->file,
                             h->first_line, h->fname)
                      : fail(c->err, PAYI_VALIDATION, NULL, "%s:%u: global %s is a %s, not a function", h->file,
                             h->first_line, h->fname, luaL_typename(L, 6));
        return 0;
    }
    lua_Debug ar;
    lua_pushvalue(L, 6);
    if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
        h->line_defined = (uint32_t)ar.linedefined;
    clear_table(L, 4);

    lua_createtable(L, REC_NSLOTS, 0);    /* 7: the record */
    lua_pushvalue(L, 6);
    lua_rawseti(L, 7, REC_FN);
    lua_pushvalue(L, 3);
    lua_rawseti(L, 7, REC_META);
    lua_pushvalue(L, 2);
    lua_rawseti(L, 7, REC_BASE);
    lua_pushvalue(L, 5);
    lua_rawseti(L, 7, REC_SCRATCH_META);
    lua_pushvalue(L, 4);
    lua_rawseti(L, 7, REC_ENV);
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->handlers_ref);
    lua_pushvalue(L, 7);
    lua_rawseti(L, -2, (int)self->nhandlers + 1);
    c->code = PAYI_OK;
    return 0;
}

static void handler_init(handler *h, const char *file, uint32_t first_line, const char *fname)
{
    memset(h, 0, sizeof *h);
    h->file = xstrdup(file);
    size_t n = strlen(file);
    h->chunkname = xmalloc(n + 2);
    h->chunkname[0] = '=';
    memcpy(h->chunkname + 1, file, n + 1);
    /* What Lua prints for a "=name" chunk: the name cut to LUA_IDSIZE - 1 bytes. */
    snprintf(h->short_src, sizeof h->short_src, "%s", file);
    h->fname = xstrdup(fname);
    h->first_line = first_line ? first_line : 1;
    h->line_defined = h->first_line;
}

payi_code luafn_load(luafn *self, const char *file, uint32_t first_line, const char *src, size_t len,
                     const char *fname, int *handle, payi_err *err)
{
    *handle = -1;
    if (self->nhandlers >= (size_t)INT32_MAX - 1)
        return fail(err, PAYI_INTERNAL, NULL, "%s: too many Lua handlers", file);
    handler h;
    handler_init(&h, file, first_line, fname);
    load_ctx c = {self, &h, src, len, err, PAYI_INTERNAL};
    self->abort = ABORT_NONE;
    self->abort_line = -1;
    self->cur = &h;
    self->cur_res = NULL;
    int status = lua_cpcall(self->L, load_protected, &c);
    if (status != 0) {
        const char *msg = lua_tostring(self->L, -1);
        if (status == LUA_ERRMEM || self->abort == ABORT_MEMORY) {
            self->abort = ABORT_MEMORY;
            c.code = fail_abort(self, PAYI_VALIDATION, err);
        } else {
            c.code = fail(err, PAYI_INTERNAL, NULL, "%s:%u: cannot load the Lua code: %s", h.file, h.first_line,
                          msg ? msg : "?");
        }
    }
    bool out_of_memory = self->abort == ABORT_MEMORY;
    self->cur = NULL;
    lua_settop(self->L, 0);
    if (out_of_memory)
        collect_garbage(self);
    if (c.code != PAYI_OK) {
        handler_release(&h);
        return c.code;
    }
    self->handlers = xgrow(self->handlers, &self->handlers_cap, self->nhandlers + 1, sizeof *self->handlers);
    self->handlers[self->nhandlers] = h;
    *handle = (int)self->nhandlers++;
    return PAYI_OK;
}

/* ------------------------------------------------------ values into Lua */

/* Format a date (days since 1970-01-01) as YYYY-MM-DD into out. */
static void format_date(int64_t days, char *out, size_t cap)
{
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(days, &y, &m, &d);
    snprintf(out, cap, "%04lld-%02u-%02u", (long long)y, m, d);
}

static void format_timestamp(int64_t us, char *out, size_t cap)
{
    const int64_t day_us = 86400LL * 1000000LL;
    int64_t days = us / day_us, rem = us % day_us;
    if (rem < 0) {
        rem += day_us;
        days--;
    }
    char date[32];
    format_date(days, date, sizeof date);
    int64_t secs = rem / 1000000, micros = rem % 1000000;
    snprintf(out, cap, "%sT%02d:%02d:%02d.%06dZ", date, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
             (int)micros);
}

typedef enum { PUSH_OK, PUSH_BIGINT_RANGE, PUSH_BAD_TYPE } push_status;

/* Push one non-NULL value, converted as the header says. */
static push_status push_value(lua_State *L, const expr_value *v)
{
    char text[64];
    switch (v->type) {
    case EXPR_BOOL:
        lua_pushboolean(L, v->b);
        return PUSH_OK;
    case EXPR_BIGINT:
        if (v->i > (int64_t)EXACT_INT_LIMIT || v->i < -(int64_t)EXACT_INT_LIMIT)
            return PUSH_BIGINT_RANGE;
        lua_pushnumber(L, (lua_Number)v->i);
        return PUSH_OK;
    case EXPR_DOUBLE:
        lua_pushnumber(L, v->d);
        return PUSH_OK;
    case EXPR_TEXT:
    case EXPR_JSONB:
        lua_pushlstring(L, v->len ? v->s : "", v->len);
        return PUSH_OK;
    case EXPR_DATE:
        format_date(v->i, text, sizeof text);
        lua_pushstring(L, text);
        return PUSH_OK;
    case EXPR_TIMESTAMPTZ:
        format_timestamp(v->i, text, sizeof text);
        lua_pushstring(L, text);
        return PUSH_OK;
    default:
        return PUSH_BAD_TYPE;
    }
}

/* Push a record as a table of its non-NULL fields; which is "state" or
 * "cmd" for messages.  A NULL record is an empty table. */
static payi_code push_record(lua_State *L, luafn *self, const luafn_record *rec, const char *which, payi_err *err)
{
    lua_createtable(L, 0, rec ? (int)(rec->n > INT32_MAX ? INT32_MAX : rec->n) : 0);
    if (!rec)
        return PAYI_OK;
    const handler *h = self->cur;
    for (uint32_t i = 0; i < rec->n; i++) {
        const expr_value *v = &rec->values[i];
        if (v->null)
            continue;
        push_status st = push_value(L, v);
        if (st != PUSH_OK) {
            char field[64];
            snprintf(field, sizeof field, "%s.%s", which, rec->names[i]);
            if (st == PUSH_BIGINT_RANGE)
                return fail(err, PAYI_VALIDATION, field,
                            "%s:%u: %s: %s is %lld, beyond +-2^53, which a Lua number cannot hold exactly", h->file,
                            h->line_defined, h->fname, field, (long long)v->i);
            return fail(err, PAYI_INTERNAL, field, "%s:%u: %s: %s has unknown type %d", h->file, h->line_defined,
                        h->fname, field, (int)v->type);
        }
        lua_setfield(L, -2, rec->names[i]);
    }
    return PAYI_OK;
}

/* ------------------------------------------------ events out of Lua: JSON */

static void path_set(luafn *self, size_t len)
{
    self->path_len = len;
    self->path[len] = '\0';
}

/* Append to the path of the value being converted; returns the length to
 * restore.  A path too long for the buffer is cut (messages only). */
static size_t path_push(luafn *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(luafn *self, const char *fmt, ...)
{
    size_t mark = self->path_len, room = sizeof self->path - mark;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(self->path + mark, room, fmt, ap);
    va_end(ap);
    path_set(self, n < 0 ? mark : (size_t)n < room ? mark + (size_t)n : sizeof self->path - 1);
    return mark;
}

static bool detail(luafn *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool detail(luafn *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->detail, sizeof self->detail, fmt, ap);
    va_end(ap);
    return false;
}

/* Write a finite number as JSON: integral values within +-2^53 as
 * integers, others in the fewest digits (15 to 17) that read back as the
 * same double — 0.1 stays 0.1 for the schema check downstream. */
static void put_number(buf *out, double d)
{
    if (d == floor(d) && fabs(d) <= EXACT_INT_LIMIT) {
        buf_put_i64(out, (int64_t)d);
        return;
    }
    char text[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, d);
        if (strtod(text, NULL) == d)
            break;
    }
    buf_puts(out, text);
}

static int compare_keys(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static bool put_value(luafn *self, lua_State *L, buf *out, int depth);

/* Describe a non-string key for a message; the key stays a number (calling
 * lua_tostring on it would change it in place and break lua_next). */
static void describe_key(lua_State *L, int idx, char *outs, size_t cap)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        snprintf(outs, cap, "the number key %.14g", lua_tonumber(L, idx));
    else if (lua_type(L, idx) == LUA_TBOOLEAN)
        snprintf(outs, cap, "the key %s", lua_toboolean(L, idx) ? "true" : "false");
    else
        snprintf(outs, cap, "a %s key", luaL_typename(L, idx));
}

/* Write the table at the top of the stack as a JSON array (keys exactly
 * 1..n) or object (string keys, written sorted so that equal data gives
 * equal text).  Top-level data (depth 1) must be an object. */
static bool put_table(luafn *self, lua_State *L, buf *out, int depth)
{
    const char *where = self->path;
    if (depth > JSON_MAX_DEPTH)
        return detail(self, "%s is nested more than %d tables deep", where, JSON_MAX_DEPTH);
    const void *me = lua_topointer(L, -1);
    for (int i = 0; i < depth - 1; i++)
        if (self->ancestors[i] == me)
            return detail(self, "%s contains itself (a cycle)", where);
    self->ancestors[depth - 1] = me;

    int t = lua_gettop(L);
    size_t n = lua_objlen(L, t), count = 0, first_key = self->nkeys;
    bool indexes_only = true;        /* every non-string key is an integer in 1..n */
    char other_key[80] = "";         /* the first key that is not a string, described */
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            self->keys = xgrow(self->keys, &self->keys_cap, self->nkeys + 1, sizeof *self->keys);
            key_ref *k = &self->keys[self->nkeys++];
            k->s = lua_tolstring(L, -1, &k->len);
            continue;
        }
        if (!other_key[0])
            describe_key(L, -1, other_key, sizeof other_key);
        double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (!(k >= 1 && k <= (double)n && k == floor(k)))
            indexes_only = false;
    }
    size_t nstrings = self->nkeys - first_key;
    bool ok;
    if (nstrings == 0 && count > 0 && indexes_only && count == n) {
        if (depth == 1) {
            ok = detail(self, "%s must have string keys (a JSON object), not be a list", where);
        } else if (n > INT32_MAX) {
            ok = detail(self, "%s has more than %d elements", where, INT32_MAX);
        } else {
            ok = true;
            buf_putc(out, '[');
            for (size_t i = 1; ok && i <= n; i++) {
                if (i > 1)
                    buf_putc(out, ',');
                lua_rawgeti(L, t, (int)i);
                size_t mark = path_push(self, "[%zu]", i);
                ok = put_value(self, L, out, depth);
                path_set(self, mark);
                lua_pop(L, 1);
            }
            buf_putc(out, ']');
        }
    } else if (nstrings != count) {
        ok = detail(self,
                    "%s %s %s; a table must have only string keys (a JSON object) or exactly the keys 1..n "
                    "(a JSON array)",
                    where, nstrings ? "mixes string keys with" : "has",
                    nstrings || !indexes_only ? other_key : "number keys that are not exactly 1..n");
    } else {
        ok = true;
        if (nstrings > 1)
            qsort(self->keys + first_key, nstrings, sizeof *self->keys, compare_keys);
        buf_putc(out, '{');
        for (size_t i = 0; ok && i < nstrings; i++) {
            key_ref k = self->keys[first_key + i];   /* by value: the array may move */
            size_t bad;
            if (!json_utf8_valid(k.s, k.len, &bad)) {
                ok = detail(self, "%s has a key that is not valid UTF-8 (byte %zu)", where, bad);
                break;
            }
            if (i)
                buf_putc(out, ',');
            json_put_string(out, k.s, k.len);
            buf_putc(out, ':');
            lua_pushlstring(L, k.s, k.len);   /* the key exists: found, not allocated */
            lua_rawget(L, t);
            size_t mark = path_push(self, ".%.*s", (int)(k.len > 64 ? 64 : k.len), k.s);
            ok = put_value(self, L, out, depth);
            path_set(self, mark);
            lua_pop(L, 1);
        }
        buf_putc(out, '}');
    }
    self->nkeys = first_key;
    return ok;
}

/* Write the value at the top of the stack (left there) as JSON. */
static bool put_value(luafn *self, lua_State *L, buf *out, int depth)
{
    const char *where = self->path;
    if (out->len > self->lim.max_bytes)
        return detail(self, "%s: the events' JSON text exceeds the memory limit of %zu bytes", where,
                      self->lim.max_bytes);
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        buf_puts(out, "null");
        return true;
    case LUA_TBOOLEAN:
        buf_puts(out, lua_toboolean(L, -1) ? "true" : "false");
        return true;
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, -1);
        if (isnan(d))
            return detail(self, "%s is NaN, which JSON cannot represent", where);
        if (isinf(d))
            return detail(self, "%s is %sinfinity, which JSON cannot represent", where, d < 0 ? "minus " : "");
        put_number(out, d);
        return true;
    }
    case LUA_TSTRING: {
        size_t len, bad;
        const char *s = lua_tolstring(L, -1, &len);
        if (!json_utf8_valid(s, len, &bad))
            return detail(self, "%s is not valid UTF-8 text (byte %zu)", where, bad);
        json_put_string(out, s, len);
        return true;
    }
    case LUA_TTABLE:
        return put_table(self, L, out, depth + 1);
    default:
        return detail(self, "%s is a %s, which cannot be converted to JSON", where, luaL_typename(L, -1));
    }
}

/* ------------------------------------------------------- events out of Lua */

/* The shape error of a result: "file:line: decide must return a list of
 * events; <what>". */
static payi_code fail_shape(luafn *self, payi_err *err, const char *what)
{
    const handler *h = self->cur;
    return fail(err, PAYI_INTERNAL, NULL, "%s:%u: %s must return a list of events; %s", h->file, h->line_defined,
                h->fname, what);
}

/* Quote s for a message: cut to MSG_QUOTE_MAX bytes (fail() repairs a cut character). */
static int quote_len(size_t len) { return len > MSG_QUOTE_MAX ? MSG_QUOTE_MAX : (int)len; }

/* Check the keys of event i (table at t): only type and data. */
static bool check_event_keys(luafn *self, lua_State *L, int t, size_t i)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len;
            const char *k = lua_tolstring(L, -1, &len);
            if ((len == 4 && memcmp(k, "type", 4) == 0) || (len == 4 && memcmp(k, "data", 4) == 0))
                continue;
            lua_pop(L, 1);
            return detail(self, "event %zu has an unexpected key \"%.*s\" (an event is {type = ..., data = {...}})", i,
                          quote_len(len), k);
        }
        char what[80];
        describe_key(L, -1, what, sizeof what);
        lua_pop(L, 1);
        return detail(self, "event %zu has %s (an event is {type = ..., data = {...}})", i, what);
    }
    return true;
}

/* Convert event i (table at the top of the stack) into res. */
static bool put_event(luafn *self, lua_State *L, luafn_result *res, size_t i)
{
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        return detail(self, "event %zu is a %s, not a table {type = ..., data = {...}}", i, luaL_typename(L, t));
    if (!check_event_keys(self, L, t, i))
        return false;

    lua_pushliteral(L, "type");
    lua_rawget(L, t);
    if (lua_isnil(L, -1))
        return detail(self, "event %zu has no type", i);
    if (lua_type(L, -1) != LUA_TSTRING)
        return detail(self, "event %zu: type must be a string, not a %s", i, luaL_typename(L, -1));
    size_t tlen, bad;
    const char *type = lua_tolstring(L, -1, &tlen);
    if (tlen == 0)
        return detail(self, "event %zu: type is empty", i);
    if (!json_utf8_valid(type, tlen, &bad))
        return detail(self, "event %zu: type is not valid UTF-8 text (byte %zu)", i, bad);

    lua_pushliteral(L, "data");
    lua_rawget(L, t);
    if (lua_isnil(L, -1))
        return detail(self, "event %zu (%.*s) has no data (use data = {} for an event without fields)", i,
                      quote_len(tlen), type);
    if (!lua_istable(L, -1))
        return detail(self, "event %zu (%.*s): data must be a table, not a %s", i, quote_len(tlen), type,
                      luaL_typename(L, -1));

    if (res->nevents >= UINT32_MAX / 2)
        return detail(self, "more than %u events", UINT32_MAX / 2);
    size_t cap = res->cap;
    res->events = xgrow(res->events, &cap, (size_t)res->nevents + 1, sizeof *res->events);
    res->cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    luafn_event *ev = &res->events[res->nevents];
    ev->type_off = (uint32_t)res->text.len;
    ev->type_len = (uint32_t)tlen;
    buf_put(&res->text, type, tlen);
    size_t data_off = res->text.len;
    path_set(self, 0);
    path_push(self, "event %zu (%.*s): data", i, quote_len(tlen), type);
    if (!put_value(self, L, &res->text, 0))
        return false;
    if (res->text.len > UINT32_MAX)
        return detail(self, "event %zu: the events' text exceeds 4 GiB", i);
    ev->data_off = (uint32_t)data_off;
    ev->data_len = (uint32_t)(res->text.len - data_off);
    res->nevents++;
    lua_settop(L, t);
    return true;
}

/* Convert the list of events at index idx into res. */
static payi_code convert_events(luafn *self, lua_State *L, int idx, luafn_result *res, payi_err *err)
{
    if (!lua_istable(L, idx)) {
        char what[96];
        snprintf(what, sizeof what, "it returned %s%s", lua_isnil(L, idx) ? "" : "a ",
                 lua_isnil(L, idx) ? "nothing (nil)" : luaL_typename(L, idx));
        return fail_shape(self, err, what);
    }
    /* Room for the deepest conversion: a table, key and value per level. */
    if (!lua_checkstack(L, 3 * (JSON_MAX_DEPTH + 2) + 8))
        return fail_shape(self, err, "no room on the Lua stack to convert it");
    size_t n = lua_objlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (!(k >= 1 && k <= (double)n && k == floor(k))) {
            char what[160], key[80];
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                snprintf(key, sizeof key, "the key \"%.*s\"", quote_len(len), s);
            } else {
                describe_key(L, -1, key, sizeof key);
            }
            snprintf(what, sizeof what, "the table it returned has %s (a list has exactly the keys 1..n)", key);
            lua_pop(L, 1);
            return fail_shape(self, err, what);
        }
    }
    if (count != n)
        return fail_shape(self, err, "the table it returned has holes (a list has exactly the keys 1..n)");
    int top = lua_gettop(L);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        self->nkeys = 0;
        if (!put_event(self, L, res, i)) {
            lua_settop(L, top);
            return fail_shape(self, err, self->detail);
        }
        lua_settop(L, top);
    }
    return PAYI_OK;
}

/* --------------------------------------------------------------- calling */

typedef struct call_ctx {
    luafn *self;
    int handle;
    const luafn_record *state, *cmd;
    luafn_result *res;
    payi_err *err;
    payi_code code;
} call_ctx;

static int call_protected(lua_State *L)
{
    call_ctx *c = lua_touserdata(L, 1);
    luafn *self = c->self;
    lua_settop(L, 0);
    lua_pushcfunction(L, locate_error);            /* 1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->handlers_ref);
    lua_rawgeti(L, -1, c->handle + 1);             /* 3: the handler's record */
    if (!lua_istable(L, 3))
        return luaL_error(L, "handler %d has no record", c->handle);
    for (int slot = REC_FN; slot <= REC_ENV; slot++)
        lua_rawgeti(L, 3, slot);                   /* 4 fn, 5 meta, 6 base, 7 scratch meta, 8 env */
    const int fn = 4, meta = 5, base = 6, scratch_meta = 7, env = 8;

    clear_table(L, env);
    lua_newtable(L);                               /* 9: this call's globals */
    lua_pushvalue(L, scratch_meta);
    lua_setmetatable(L, 9);
    aim_environment(L, meta, 9);

    lua_pushvalue(L, fn);
    c->code = push_record(L, self, c->state, "state", c->err);
    if (c->code == PAYI_OK)
        c->code = push_record(L, self, c->cmd, "cmd", c->err);
    int status = 0;
    if (c->code == PAYI_OK) {
        start_clock(self);
        status = lua_pcall(L, 2, 1, 1);             /* the result, or the error, at 10 */
    }
    /* Back to the load-time globals, so the scratch table can be collected. */
    aim_environment(L, meta, base);
    clear_table(L, env);
    if (c->code != PAYI_OK)
        return 0;
    if (status != 0) {
        if (self->abort == ABORT_REJECT) {
            c->code = PAYI_OK;
        } else if (self->abort != ABORT_NONE || status == LUA_ERRMEM) {
            if (self->abort == ABORT_NONE)
                self->abort = ABORT_MEMORY;
            c->code = fail_abort(self, PAYI_INTERNAL, c->err);
        } else {
            size_t len = 0;
            const char *msg = lua_tolstring(L, 10, &len);
            c->code = msg ? fail_lua_message(c->err, PAYI_INTERNAL, self->cur, msg, len)
                          : fail(c->err, PAYI_INTERNAL, NULL, "%s:%u: %s failed", self->cur->file,
                                 self->cur->line_defined, self->cur->fname);
        }
        return 0;
    }
    c->code = convert_events(self, L, 10, c->res, c->err);
    return 0;
}

payi_code luafn_call(luafn *self, int handle, const luafn_record *state, const luafn_record *cmd, luafn_result *res,
                     payi_err *err)
{
    res->rejected = false;
    res->reject_off = res->reject_len = 0;
    res->nevents = 0;
    buf_reset(&res->text);
    if (handle < 0 || (size_t)handle >= self->nhandlers)
        return fail(err, PAYI_INTERNAL, NULL, "no Lua handler %d", handle);

    /* Garbage left by earlier calls counts against the cap until the
     * incremental collector gets to it: clear it first when half is used. */
    if (self->used > self->lim.max_bytes / 2)
        collect_garbage(self);

    call_ctx c = {self, handle, state, cmd, res, err, PAYI_INTERNAL};
    self->abort = ABORT_NONE;
    self->abort_line = -1;
    self->cur = &self->handlers[handle];
    self->cur_res = res;
    int status = lua_cpcall(self->L, call_protected, &c);
    if (status != 0) {
        const char *msg = lua_tostring(self->L, -1);
        if (status == LUA_ERRMEM || self->abort == ABORT_MEMORY) {
            self->abort = ABORT_MEMORY;
            c.code = fail_abort(self, PAYI_INTERNAL, err);
        } else {
            c.code = fail(err, PAYI_INTERNAL, NULL, "%s:%u: %s: %s", self->cur->file, self->cur->line_defined,
                          self->cur->fname, msg ? msg : "error in the Lua bridge");
        }
    }
    bool rejected = c.code == PAYI_OK && self->abort == ABORT_REJECT;
    bool out_of_memory = self->abort == ABORT_MEMORY;
    self->cur = NULL;
    self->cur_res = NULL;
    lua_settop(self->L, 0);
    if (out_of_memory)
        collect_garbage(self);
    if (c.code != PAYI_OK || rejected) {
        /* Keep only the reject message (it sits at the start of the text). */
        res->nevents = 0;
        if (!rejected)
            buf_reset(&res->text);
        res->rejected = rejected;
    }
    return c.code;
}

void luafn_result_init(luafn_result *r) { memset(r, 0, sizeof *r); }

void luafn_result_release(luafn_result *r)
{
    free(r->events);
    buf_release(&r->text);
    memset(r, 0, sizeof *r);
}
