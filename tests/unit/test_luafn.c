/* Tests for src/command/luafn: values in and out, reject, error locations,
 * the sandbox, the time and memory limits, global isolation, and the JSON
 * written for event data. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "command/luafn.h"
#include "test.h"

#define CHECK_CONTAINS(hay, needle)                                                              \
    do {                                                                                         \
        const char *h_ = (hay), *n_ = (needle);                                                  \
        if (!strstr(h_, n_))                                                                     \
            test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", h_, n_);             \
    } while (0)

#define CHECK_EVENT(r, i, type, data) check_event(__FILE__, __LINE__, (r), (i), (type), (data))

static void check_event(const char *file, int line, const luafn_result *r, uint32_t i, const char *type,
                        const char *data)
{
    if (i >= r->nevents) {
        test_fail(file, line, "event %u missing (%u events)", i, r->nevents);
        return;
    }
    const luafn_event *e = &r->events[i];
    const char *t = r->text.data + e->type_off, *d = r->text.data + e->data_off;
    if (e->type_len != strlen(type) || memcmp(t, type, e->type_len) != 0)
        test_fail(file, line, "event %u type \"%.*s\" != \"%s\"", i, (int)e->type_len, t, type);
    if (e->data_len != strlen(data) || memcmp(d, data, e->data_len) != 0)
        test_fail(file, line, "event %u data %.*s != %s", i, (int)e->data_len, d, data);
}

/* One state with one handler "decide" loaded from src as spec.payi. */
typedef struct fixture {
    luafn *fn;
    int h;
    luafn_result res;
    payi_err err;
} fixture;

static bool fixture_open(fixture *f, const luafn_limits *lim, const char *src, uint32_t first_line)
{
    memset(f, 0, sizeof *f);
    luafn_result_init(&f->res);
    f->h = -1;
    if (luafn_open(&f->fn, lim, &f->err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "luafn_open: %s", f->err.msg);
        return false;
    }
    if (luafn_load(f->fn, "spec.payi", first_line, src, strlen(src), "decide", &f->h, &f->err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "luafn_load: %s", f->err.msg);
        return false;
    }
    return true;
}

static payi_code fixture_call(fixture *f, const luafn_record *state, const luafn_record *cmd)
{
    payi_err_clear(&f->err);
    return luafn_call(f->fn, f->h, state, cmd, &f->res, &f->err);
}

static void fixture_close(fixture *f)
{
    luafn_close(f->fn);
    luafn_result_release(&f->res);
}

/* Load src and call it with empty records; expect failure with code, and
 * return the message (static storage). */
static const char *call_fails(const char *src, payi_code code)
{
    static payi_err last;
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        payi_code got = fixture_call(&f, NULL, NULL);
        if (got != code)
            test_fail(__FILE__, __LINE__, "call returned %s, want %s (%s)", payi_code_word(got), payi_code_word(code),
                      f.err.msg);
    }
    last = f.err;
    fixture_close(&f);
    return last.msg;
}

/* Load src; expect the load to fail with PAYI_VALIDATION; return the message. */
static const char *load_fails(const char *src, uint32_t first_line)
{
    static payi_err err;
    luafn *fn;
    int h;
    payi_err_clear(&err);
    if (luafn_open(&fn, NULL, &err) != PAYI_OK) {
        test_fail(__FILE__, __LINE__, "luafn_open: %s", err.msg);
        return err.msg;
    }
    payi_code got = luafn_load(fn, "spec.payi", first_line, src, strlen(src), "decide", &h, &err);
    if (got != PAYI_VALIDATION)
        test_fail(__FILE__, __LINE__, "load returned %s, want validation (%s)", payi_code_word(got), err.msg);
    CHECK_EQ_INT(h, -1);
    luafn_close(fn);
    return err.msg;
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---------------------------------------------------------------- calls */

TEST(luafn_values_in_and_out)
{
    static const char src[] =
        "function decide(state, cmd)\n"
        "  assert(type(state.balance) == 'number' and state.balance == 100, 'balance')\n"
        "  assert(state.owner == 'ann', 'owner')\n"
        "  assert(state.open == true and state.closed == false, 'booleans')\n"
        "  assert(state.rate == 0.25, 'rate')\n"
        "  assert(state.since == '2020-03-11', 'date')\n"
        "  assert(state.before == '1969-12-31', 'date before 1970')\n"
        "  assert(state.updated == '2020-03-11T10:30:00.000001Z', 'timestamp')\n"
        "  assert(state.last == '1969-12-31T23:59:59.999999Z', 'timestamp before 1970')\n"
        "  assert(state.meta == '{\"a\":1}', 'jsonb')\n"
        "  assert(state.note == nil, 'NULL')\n"
        "  return {\n"
        "    {type = 'Debited', data = {account = cmd.account, amount = cmd.amount,\n"
        "                               balance = state.balance - cmd.amount}},\n"
        "    {type = 'Noted', data = {flag = state.closed, ok = state.open, rate = state.rate, half = 0.1,\n"
        "                             big = 2^53, neg = -7, text = 'a\"b\\n', since = state.since,\n"
        "                             meta = state.meta, at = state.updated}},\n"
        "    {type = 'Closed', data = {}},\n"
        "  }\n"
        "end\n";
    static const char *const snames[] = {"balance", "owner", "open", "closed", "rate", "since", "before",
                                         "updated", "last", "meta", "note"};
    static const char meta[] = "{\"a\":1}";
    int64_t day = expr_days_from_civil(2020, 3, 11);
    expr_value svals[] = {
        expr_int(100),
        expr_text("ann", 3),
        expr_bool(true),
        expr_bool(false),
        expr_double(0.25),
        expr_date(day),
        expr_date(-1),
        expr_ts(day * 86400000000LL + (10 * 3600 + 30 * 60) * 1000000LL + 1),
        expr_ts(-1),
        expr_jsonb(meta, sizeof meta - 1),
        expr_null(EXPR_TEXT),
    };
    static const char *const cnames[] = {"amount", "account"};
    expr_value cvals[] = {expr_int(30), expr_text("acc-1", 5)};
    luafn_record state = {snames, svals, 11}, cmd = {cnames, cvals, 2};

    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        for (int round = 0; round < 2; round++) {   /* the result is reused */
            payi_code code = fixture_call(&f, &state, &cmd);
            CHECK_STR(f.err.msg, "");
            CHECK_EQ_INT(code, PAYI_OK);
            CHECK(!f.res.rejected);
            CHECK_EQ_U64(f.res.nevents, 3);
            CHECK_EVENT(&f.res, 0, "Debited", "{\"account\":\"acc-1\",\"amount\":30,\"balance\":70}");
            CHECK_EVENT(&f.res, 1, "Noted",
                        "{\"at\":\"2020-03-11T10:30:00.000001Z\",\"big\":9007199254740992,\"flag\":false,"
                        "\"half\":0.1,\"meta\":\"{\\\"a\\\":1}\",\"neg\":-7,\"ok\":true,\"rate\":0.25,"
                        "\"since\":\"2020-03-11\",\"text\":\"a\\\"b\\n\"}");
            CHECK_EVENT(&f.res, 2, "Closed", "{}");
        }
    }
    fixture_close(&f);
}

TEST(luafn_empty_list)
{
    fixture f;
    if (fixture_open(&f, NULL, "function decide(state, cmd) return {} end", 1)) {
        CHECK_EQ_INT(fixture_call(&f, NULL, NULL), PAYI_OK);
        CHECK(!f.res.rejected);
        CHECK_EQ_U64(f.res.nevents, 0);
    }
    fixture_close(&f);
}

TEST(luafn_reject)
{
    static const char src[] = "function decide(state, cmd)\n"
                              "  if cmd.amount > 10 then reject('insufficient funds: ' .. cmd.amount) end\n"
                              "  if cmd.amount < 0 then pcall(reject, 'caught?') ; return {} end\n"
                              "  return {{type = 'Debited', data = {amount = cmd.amount}}}\n"
                              "end\n";
    static const char *const names[] = {"amount"};
    expr_value v[1];
    luafn_record cmd = {names, v, 1};
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        v[0] = expr_int(50);
        CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
        CHECK(f.res.rejected);
        CHECK_EQ_U64(f.res.nevents, 0);
        CHECK_EQ_U64(f.res.reject_len, strlen("insufficient funds: 50"));
        CHECK_MEM(f.res.text.data + f.res.reject_off, "insufficient funds: 50", f.res.reject_len);

        v[0] = expr_int(5);   /* the same result, no longer rejected */
        CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
        CHECK(!f.res.rejected);
        CHECK_EVENT(&f.res, 0, "Debited", "{\"amount\":5}");

        v[0] = expr_int(-1);  /* pcall cannot swallow a reject */
        CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
        CHECK(f.res.rejected);
        CHECK_MEM(f.res.text.data + f.res.reject_off, "caught?", 7);
    }
    fixture_close(&f);
}

TEST(luafn_reject_needs_a_string)
{
    const char *msg = call_fails("function decide(state, cmd)\n  reject(42)\nend\n", PAYI_INTERNAL);
    CHECK_CONTAINS(msg, "spec.payi:2: reject expects a message string, got number");
    msg = call_fails("function decide(state, cmd)\n  reject()\nend\n", PAYI_INTERNAL);
    CHECK_CONTAINS(msg, "spec.payi:2: reject expects a message string, got no value");
    msg = load_fails("reject('at load')\nfunction decide() return {} end\n", 1);
    CHECK_CONTAINS(msg, "spec.payi:1: reject() can only be called while deciding a command");
}

/* ------------------------------------------------------ error locations */

TEST(luafn_runtime_error_names_line)
{
    /* The code starts at line 20 of the spec file. */
    static const char src[] = "function decide(state, cmd)\n"   /* 20 */
                              "  local t = nil\n"               /* 21 */
                              "  return t.x\n"                  /* 22 */
                              "end\n";
    fixture f;
    if (fixture_open(&f, NULL, src, 20)) {
        CHECK_EQ_INT(fixture_call(&f, NULL, NULL), PAYI_INTERNAL);
        CHECK_CONTAINS(f.err.msg, "spec.payi:22: attempt to index");
        CHECK(strncmp(f.err.msg, "spec.payi:22:", 13) == 0);
        CHECK_EQ_U64(f.res.nevents, 0);
    }
    fixture_close(&f);

    const char *msg = call_fails("local function helper()\n  error('boom')\nend\n"
                                 "function decide(state, cmd)\n  helper()\nend\n",
                                 PAYI_INTERNAL);
    CHECK_STR(msg, "spec.payi:2: boom");
    msg = call_fails("function decide(state, cmd)\n\n  error('no position', 0)\nend\n", PAYI_INTERNAL);
    CHECK_STR(msg, "spec.payi:3: no position");
    msg = call_fails("function decide(state, cmd)\n  error({code = 1})\nend\n", PAYI_INTERNAL);
    CHECK_STR(msg, "spec.payi:2: error object is a table value");
    msg = call_fails("function decide(state, cmd)\n  local s = string.rep('x')\n  return s\nend\n", PAYI_INTERNAL);
    CHECK_CONTAINS(msg, "spec.payi:2: bad argument #2 to 'rep'");
    msg = call_fails("function decide(state, cmd)\n  error('bad \\255 byte')\nend\n", PAYI_INTERNAL);
    CHECK_STR(msg, "spec.payi:2: bad ? byte");   /* messages are kept valid UTF-8 */
}

TEST(luafn_long_file_name_in_messages)
{
    static const char file[] = "specs/a/rather/long/directory/name/that/goes/on/and/on/for/ever/bank.payi";
    static const char src[] = "function decide(state, cmd)\n  return nil + 1\nend\n";
    luafn *fn;
    payi_err err;
    luafn_result res;
    luafn_result_init(&res);
    int h;
    CHECK_EQ_INT(luafn_open(&fn, NULL, &err), PAYI_OK);
    CHECK_EQ_INT(luafn_load(fn, file, 7, src, strlen(src), "decide", &h, &err), PAYI_OK);
    CHECK_EQ_INT(luafn_call(fn, h, NULL, NULL, &res, &err), PAYI_INTERNAL);
    char want[256];
    snprintf(want, sizeof want, "%s:8: attempt to perform arithmetic", file);
    CHECK(strncmp(err.msg, want, strlen(want)) == 0);
    CHECK_EQ_INT(luafn_load(fn, file, 7, "x = = 1", 7, "decide", &h, &err), PAYI_VALIDATION);
    snprintf(want, sizeof want, "%s:7:", file);
    CHECK(strncmp(err.msg, want, strlen(want)) == 0);
    luafn_close(fn);
    luafn_result_release(&res);
}

TEST(luafn_syntax_error_names_line)
{
    const char *msg = load_fails("function decide(state, cmd)\n  local x = = 1\nend\n", 10);
    CHECK(strncmp(msg, "spec.payi:11:", 13) == 0);
    CHECK_CONTAINS(msg, "near '='");
    msg = load_fails("function decide(state, cmd)\n  return {\nend\n", 1);
    CHECK(strncmp(msg, "spec.payi:3:", 12) == 0);
}

TEST(luafn_load_errors)
{
    const char *msg = load_fails("local x = nil\n\nlocal y = x.field\nfunction decide() return {} end\n", 5);
    CHECK_CONTAINS(msg, "spec.payi:7: attempt to index");
    msg = load_fails("function other() return {} end\n", 3);
    CHECK_STR(msg, "spec.payi:3: the code defines no global function decide");
    msg = load_fails("local function decide() return {} end\n", 1);
    CHECK_STR(msg, "spec.payi:1: the code defines no global function decide");
    msg = load_fails("decide = 5\n", 1);
    CHECK_STR(msg, "spec.payi:1: global decide is a number, not a function");
    /* Bytecode is never loaded: LuaJIT does not verify it. */
    msg = load_fails("\033LJ\002\000\000", 1);
    CHECK_CONTAINS(msg, "spec.payi");
}

TEST(luafn_bad_handle)
{
    fixture f;
    if (fixture_open(&f, NULL, "function decide() return {} end", 1)) {
        CHECK_EQ_INT(luafn_call(f.fn, 7, NULL, NULL, &f.res, &f.err), PAYI_INTERNAL);
        CHECK_EQ_INT(luafn_call(f.fn, -1, NULL, NULL, &f.res, &f.err), PAYI_INTERNAL);
        CHECK_EQ_INT(fixture_call(&f, NULL, NULL), PAYI_OK);
    }
    fixture_close(&f);
}

/* --------------------------------------------------------------- sandbox */

/* body runs at line 2 of decide; the call must fail at that line with want. */
static void check_unavailable(const char *body, const char *want)
{
    char src[512];
    snprintf(src, sizeof src, "function decide(state, cmd)\n  %s\n  return {}\nend\n", body);
    const char *msg = call_fails(src, PAYI_INTERNAL);
    CHECK(strncmp(msg, "spec.payi:2:", 12) == 0);
    CHECK_CONTAINS(msg, want);
}

TEST(luafn_sandbox_io) { check_unavailable("io.write('x')", "attempt to index global 'io' (a nil value)"); }
TEST(luafn_sandbox_os) { check_unavailable("os.exit(1)", "attempt to index global 'os' (a nil value)"); }
TEST(luafn_sandbox_require) { check_unavailable("require('os')", "attempt to call global 'require' (a nil value)"); }
TEST(luafn_sandbox_load) { check_unavailable("load('return 1')", "attempt to call global 'load' (a nil value)"); }
TEST(luafn_sandbox_loadstring)
{
    check_unavailable("loadstring('return 1')", "attempt to call global 'loadstring' (a nil value)");
}
TEST(luafn_sandbox_dofile)
{
    check_unavailable("dofile('/etc/passwd')", "attempt to call global 'dofile' (a nil value)");
}
TEST(luafn_sandbox_loadfile)
{
    check_unavailable("loadfile('/etc/passwd')", "attempt to call global 'loadfile' (a nil value)");
}
TEST(luafn_sandbox_string_dump)
{
    check_unavailable("string.dump(decide)", "attempt to call field 'dump' (a nil value)");
    check_unavailable("('x').dump(decide)", "attempt to call field 'dump' (a nil value)");
}
TEST(luafn_sandbox_debug) { check_unavailable("debug.getinfo(1)", "attempt to index global 'debug' (a nil value)"); }
TEST(luafn_sandbox_ffi) { check_unavailable("ffi.C.abort()", "attempt to index global 'ffi' (a nil value)"); }
TEST(luafn_sandbox_jit) { check_unavailable("jit.on()", "attempt to index global 'jit' (a nil value)"); }
TEST(luafn_sandbox_package) { check_unavailable("package.loadlib('x', 'y')", "attempt to index global 'package'"); }
TEST(luafn_sandbox_collectgarbage)
{
    check_unavailable("collectgarbage('stop')", "attempt to call global 'collectgarbage' (a nil value)");
}
TEST(luafn_sandbox_fenv)
{
    check_unavailable("setfenv(1, {})", "attempt to call global 'setfenv' (a nil value)");
    check_unavailable("getfenv(0)", "attempt to call global 'getfenv' (a nil value)");
}
TEST(luafn_sandbox_string_metatable)
{
    check_unavailable("getmetatable('').__index.x = 1", "attempt to index a boolean value");
}
TEST(luafn_sandbox_rawset_globals)
{
    check_unavailable("rawset(_G, 'x', 1)", "rawset on the global environment is not allowed");
    check_unavailable("setmetatable(_G, nil)", "cannot change a protected metatable");
}

/* Everything outside the allowed set is nil, and the allowed set works. */
TEST(luafn_sandbox_globals)
{
    static const char src[] =
        "function decide(state, cmd)\n"
        "  local present = {}\n"
        "  for _, name in ipairs({'io', 'os', 'package', 'debug', 'ffi', 'jit', 'require', 'module',\n"
        "                         'load', 'loadstring', 'dofile', 'loadfile', 'collectgarbage', 'gcinfo',\n"
        "                         'getfenv', 'setfenv', 'newproxy', 'print', 'coroutine'}) do\n"
        "    if _G[name] ~= nil then present[#present + 1] = name end\n"
        "  end\n"
        "  if string.dump ~= nil then present[#present + 1] = 'string.dump' end\n"
        "  local ok, err = pcall(error, 'caught', 0)\n"
        "  local xok, xerr = xpcall(function() error('x', 0) end, function(m) return 'handled ' .. m end)\n"
        "  return {{type = 'Sandbox', data = {present = #present > 0 and present or nil,\n"
        "    sum = math.floor(math.max(1, 2) + #table.concat({'a', 'b'}) + select('#', 1, 2)),\n"
        "    up = ('abc'):upper(), fmt = string.format('%05.1f', 3.14159), n = tonumber('0x10'),\n"
        "    pcall = tostring(ok) .. ' ' .. err, xpcall = tostring(xok) .. ' ' .. xerr,\n"
        "    version = _VERSION, meta = getmetatable('')}}}\n"
        "end\n";
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        CHECK_EQ_INT(fixture_call(&f, NULL, NULL), PAYI_OK);
        CHECK_STR(f.err.msg, "");
        CHECK_EVENT(&f.res, 0, "Sandbox",
                    "{\"fmt\":\"003.1\",\"meta\":false,\"n\":16,\"pcall\":\"false caught\","
                    "\"sum\":6,\"up\":\"ABC\",\"version\":\"Lua 5.1\",\"xpcall\":\"false handled x\"}");
    }
    fixture_close(&f);
}

/* ---------------------------------------------------------------- limits */

TEST(luafn_timeout)
{
    static const char src[] = "function decide(state, cmd)\n"
                              "  if cmd.mode == 'loop' then\n"
                              "    while true do end\n"
                              "  elseif cmd.mode == 'pcall' then\n"
                              "    while true do pcall(function() while true do end end) end\n"
                              "  end\n"
                              "  return {{type = 'Done', data = {}}}\n"
                              "end\n";
    static const char *const names[] = {"mode"};
    expr_value v[1];
    luafn_record cmd = {names, v, 1};
    luafn_limits lim;
    luafn_limits_default(&lim);
    CHECK_EQ_U64(lim.max_ms, 100);
    CHECK_EQ_U64(lim.max_bytes, 64u << 20);
    lim.max_ms = 50;
    fixture f;
    if (fixture_open(&f, &lim, src, 1)) {
        static const char *const modes[] = {"loop", "pcall"};
        for (int i = 0; i < 2; i++) {
            v[0] = expr_text(modes[i], strlen(modes[i]));
            struct timespec t0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_INTERNAL);
            double s = elapsed_s(&t0);
            CHECK(s >= 0.045 && s < 1.0);
            CHECK_CONTAINS(f.err.msg, "decide exceeded its time limit of 50 ms");
            CHECK(strncmp(f.err.msg, i == 0 ? "spec.payi:3:" : "spec.payi:5:", 12) == 0);

            v[0] = expr_text("fine", 4);   /* the state is still usable */
            CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
            CHECK_EVENT(&f.res, 0, "Done", "{}");
        }
    }
    fixture_close(&f);
}

TEST(luafn_timeout_at_load)
{
    const char *msg = load_fails("local n = 0\nwhile true do n = n + 1 end\n", 1);
    CHECK_STR(msg, "spec.payi:2: the top-level code exceeded its time limit of 100 ms");
}

TEST(luafn_memory_limit)
{
    static const char src[] = "function decide(state, cmd)\n"
                              "  if cmd.mode == 'string' then\n"
                              "    local s = 'x'\n"
                              "    while true do s = s .. s end\n"
                              "  elseif cmd.mode == 'table' then\n"
                              "    local t, i = {}, 0\n"
                              "    while true do i = i + 1; t[i] = {i} end\n"
                              "  elseif cmd.mode == 'pcall' then\n"
                              "    local ok = pcall(function() local s = 'y' while true do s = s .. s end end)\n"
                              "    return {{type = 'Swallowed', data = {}}}\n"
                              "  elseif cmd.mode == 'rep' then\n"
                              "    local s = string.rep('z', 100000000)\n"
                              "  end\n"
                              "  return {{type = 'Done', data = {}}}\n"
                              "end\n";
    static const char *const names[] = {"mode"};
    expr_value v[1];
    luafn_record cmd = {names, v, 1};
    luafn_limits lim = {0, 8u << 20};   /* 0: the default time limit */
    fixture f;
    if (fixture_open(&f, &lim, src, 1)) {
        static const char *const modes[] = {"string", "table", "pcall", "rep", "string"};
        for (int i = 0; i < 5; i++) {
            v[0] = expr_text(modes[i], strlen(modes[i]));
            CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_INTERNAL);
            CHECK_STR(f.err.msg, "spec.payi:1: decide exceeded its memory limit of 8388608 bytes");
            CHECK_EQ_U64(f.res.nevents, 0);

            v[0] = expr_text("fine", 4);
            CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
            CHECK_EVENT(&f.res, 0, "Done", "{}");
        }
    }
    fixture_close(&f);

    /* A state too small for the libraries fails cleanly. */
    luafn *fn = NULL;
    payi_err err;
    luafn_limits tiny = {100, 4096};
    CHECK(luafn_open(&fn, &tiny, &err) == PAYI_INTERNAL);
    CHECK(fn == NULL);
}

/* ---------------------------------------------------------------- globals */

TEST(luafn_globals_do_not_leak)
{
    static const char a_src[] = "counter = 0\n"
                                "config = {limit = 5}\n"
                                "function bump() leaked = (leaked or 0) + 1 end\n"
                                "function decide(state, cmd)\n"
                                "  bump()\n"
                                "  counter = counter + 1\n"
                                "  _G.via_g = (_G.via_g or 0) + 1\n"
                                "  table.insert(_G, 'raw')\n"
                                "  string.upper = nil\n"
                                "  return {{type = 'Seen', data = {counter = counter, leaked = leaked,\n"
                                "    via_g = via_g, raw = rawget(_G, 1) and 'stays' or 'gone'}}}\n"
                                "end\n";
    static const char b_src[] = "function decide(state, cmd)\n"
                                "  return {{type = 'B', data = {counter = counter or 'nil', leaked = leaked or 'nil',\n"
                                "    bump = type(bump), raw = _G[1] or 'nil', upper = string.upper('b')}}}\n"
                                "end\n";
    fixture f;
    int hb;
    if (fixture_open(&f, NULL, a_src, 1)) {
        CHECK_EQ_INT(luafn_load(f.fn, "b.payi", 1, b_src, strlen(b_src), "decide", &hb, &f.err), PAYI_OK);
        for (int i = 0; i < 3; i++) {
            CHECK_EQ_INT(fixture_call(&f, NULL, NULL), PAYI_OK);
            CHECK_STR(f.err.msg, "");
            CHECK_EVENT(&f.res, 0, "Seen", "{\"counter\":1,\"leaked\":1,\"raw\":\"stays\",\"via_g\":1}");
            CHECK_EQ_INT(luafn_call(f.fn, hb, NULL, NULL, &f.res, &f.err), PAYI_OK);
            CHECK_EVENT(&f.res, 0, "B",
                        "{\"bump\":\"nil\",\"counter\":\"nil\",\"leaked\":\"nil\",\"raw\":\"nil\",\"upper\":\"B\"}");
        }
    }
    fixture_close(&f);
}

/* ------------------------------------------------------------- conversion */

TEST(luafn_bigint_range)
{
    static const char src[] = "function decide(state, cmd)\n"
                              "  return {{type = 'Got', data = {amount = cmd.amount}}}\n"
                              "end\n";
    static const char *const names[] = {"amount"};
    expr_value v[1];
    luafn_record rec = {names, v, 1};
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        v[0] = expr_int(9007199254740993LL);   /* 2^53 + 1 */
        CHECK_EQ_INT(fixture_call(&f, NULL, &rec), PAYI_VALIDATION);
        CHECK_STR(f.err.field, "cmd.amount");
        CHECK_CONTAINS(f.err.msg, "cmd.amount is 9007199254740993, beyond +-2^53");
        v[0] = expr_int(-9007199254740993LL);
        CHECK_EQ_INT(fixture_call(&f, &rec, NULL), PAYI_VALIDATION);
        CHECK_STR(f.err.field, "state.amount");
        v[0] = expr_int(9007199254740992LL);   /* 2^53 itself is exact */
        CHECK_EQ_INT(fixture_call(&f, NULL, &rec), PAYI_OK);
        CHECK_EVENT(&f.res, 0, "Got", "{\"amount\":9007199254740992}");
        v[0] = expr_int(-9007199254740992LL);
        CHECK_EQ_INT(fixture_call(&f, NULL, &rec), PAYI_OK);
        CHECK_EVENT(&f.res, 0, "Got", "{\"amount\":-9007199254740992}");
    }
    fixture_close(&f);
}

TEST(luafn_non_finite_refused)
{
    const char *msg = call_fails("function decide(state, cmd)\n"
                                 "  return {{type = 'A', data = {x = 0/0}}}\n"
                                 "end\n",
                                 PAYI_INTERNAL);
    CHECK_STR(msg, "spec.payi:1: decide must return a list of events; event 1 (A): data.x is NaN, which JSON "
                   "cannot represent");
    msg = call_fails("function decide(state, cmd)\n"
                     "  return {{type = 'A', data = {}}, {type = 'B', data = {a = {b = {1, -1/0}}}}}\n"
                     "end\n",
                     PAYI_INTERNAL);
    CHECK_CONTAINS(msg, "event 2 (B): data.a.b[2] is minus infinity, which JSON cannot represent");
}

TEST(luafn_nested_json)
{
    static const char src[] =
        "function decide(state, cmd)\n"
        "  return {{type = 'Nested', data = {\n"
        "    name = 'x', list = {1, 2.5, 'three', true, {k = 'v'}}, empty = {},\n"
        "    obj = {z = 1, a = {b = {c = {}}}}, unicode = 'h\\195\\169llo \\226\\152\\131',\n"
        "    third = 1/3, huge = 1e300, tiny = 5e-324, negint = -42, ctl = 'tab\\there',\n"
        "    ['key with \"quotes\"'] = 0, matrix = {{1, 2}, {3, 4}}}}}\n"
        "end\n";
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        CHECK_EQ_INT(fixture_call(&f, NULL, NULL), PAYI_OK);
        CHECK_STR(f.err.msg, "");
        CHECK_EVENT(&f.res, 0, "Nested",
                    "{\"ctl\":\"tab\\there\",\"empty\":{},\"huge\":1e+300,"
                    "\"key with \\\"quotes\\\"\":0,\"list\":[1,2.5,\"three\",true,{\"k\":\"v\"}],"
                    "\"matrix\":[[1,2],[3,4]],\"name\":\"x\",\"negint\":-42,"
                    "\"obj\":{\"a\":{\"b\":{\"c\":{}}},\"z\":1},\"third\":0.3333333333333333,"
                    "\"tiny\":4.94065645841247e-324,\"unicode\":\"h\xc3\xa9llo \xe2\x98\x83\"}");
    }
    fixture_close(&f);
}

/* Nesting: data is level 1; 32 levels are allowed, 33 are not. */
TEST(luafn_nesting_limit)
{
    static const char src[] = "function decide(state, cmd)\n"
                              "  local top = {}\n"
                              "  local cur = top\n"
                              "  for i = 2, cmd.levels do cur.n = {} cur = cur.n end\n"
                              "  return {{type = 'Deep', data = top}}\n"
                              "end\n";
    static const char *const names[] = {"levels"};
    expr_value v[1];
    luafn_record cmd = {names, v, 1};
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        v[0] = expr_int(32);
        CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
        CHECK_EQ_U64(f.res.nevents, 1);
        v[0] = expr_int(33);
        CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_INTERNAL);
        CHECK_CONTAINS(f.err.msg, "is nested more than 32 tables deep");
    }
    fixture_close(&f);
}

TEST(luafn_result_shape_errors)
{
    static const struct {
        const char *ret, *want;
    } cases[] = {
        {"nil", "decide must return a list of events; it returned nothing (nil)"},
        {"5", "decide must return a list of events; it returned a number"},
        {"{{type = 'A', data = {}}, {data = {}}}", "decide must return a list of events; event 2 has no type"},
        {"{{type = 1, data = {}}}", "event 1: type must be a string, not a number"},
        {"{{type = '', data = {}}}", "event 1: type is empty"},
        {"{{type = 'A'}}", "event 1 (A) has no data (use data = {} for an event without fields)"},
        {"{{type = 'A', data = 5}}", "event 1 (A): data must be a table, not a number"},
        {"{{type = 'A', data = {1, 2}}}", "event 1 (A): data must have string keys (a JSON object), not be a list"},
        {"{{type = 'A', data = {x = {1, 2, nil, 4}}}}", "data.x has number keys that are not exactly 1..n"},
        {"{{type = 'A', data = {[true] = 1}}}", "event 1 (A): data has the key true; a table must have only"},
        {"{{type = 'A', data = {x = {a = 1, [2] = 2}}}}", "data.x mixes string keys with the number key 2"},
        {"{{type = 'A', data = {x = {1, 2, y = 3}}}}", "data.x mixes string keys with the number key "},
        {"{{type = 'A', data = {x = {[1.5] = 1}}}}", "data.x has the number key 1.5; a table must have"},
        {"{{type = 'A', data = {f = function() end}}}", "data.f is a function, which cannot be converted to JSON"},
        {"{{type = 'A', data = {s = '\\255'}}}", "data.s is not valid UTF-8 text (byte 0)"},
        {"{{type = 'A', data = {['\\255'] = 1}}}", "event 1 (A): data has a key that is not valid UTF-8 (byte 0)"},
        {"{{type = 'A', data = {}, extra = 1}}", "event 1 has an unexpected key \"extra\""},
        {"{'A'}", "event 1 is a string, not a table {type = ..., data = {...}}"},
        {"{x = {type = 'A', data = {}}}", "the table it returned has the key \"x\" (a list has exactly the keys"},
        {"cyclic()", "event 1 (A): data.me contains itself (a cycle)"},
        {"{{type = 'A', data = {l = {l = {l = {}}}, m = 1/0}}}", "data.m is infinity"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[512];
        snprintf(src, sizeof src,
                 "function cyclic() local t = {} t.me = t return {{type = 'A', data = t}} end\n"
                 "function decide(state, cmd) return %s end\n",
                 cases[i].ret);
        const char *msg = call_fails(src, PAYI_INTERNAL);
        if (!strstr(msg, cases[i].want))
            test_fail(__FILE__, __LINE__, "case %zu: \"%s\" does not contain \"%s\"", i, msg, cases[i].want);
        if (strncmp(msg, "spec.payi:2: decide must return a list of events; ", 50) != 0)
            test_fail(__FILE__, __LINE__, "case %zu: \"%s\" does not start with the location", i, msg);
    }
}

/* After each kind of failure, the same handler works again. */
TEST(luafn_usable_after_errors)
{
    static const char src[] = "function decide(state, cmd)\n"
                              "  if cmd.mode == 'error' then error('boom') end\n"
                              "  if cmd.mode == 'shape' then return {{type = 'A', data = {x = 0/0}}} end\n"
                              "  if cmd.mode == 'reject' then reject('no') end\n"
                              "  return {{type = 'Ok', data = {mode = cmd.mode}}}\n"
                              "end\n";
    static const char *const names[] = {"mode"};
    static const char *const modes[] = {"error", "shape", "reject"};
    expr_value v[1];
    luafn_record cmd = {names, v, 1};
    fixture f;
    if (fixture_open(&f, NULL, src, 1)) {
        for (int i = 0; i < 3; i++) {
            v[0] = expr_text(modes[i], strlen(modes[i]));
            payi_code code = fixture_call(&f, NULL, &cmd);
            CHECK_EQ_INT(code, i == 2 ? PAYI_OK : PAYI_INTERNAL);
            v[0] = expr_text("ok", 2);
            CHECK_EQ_INT(fixture_call(&f, NULL, &cmd), PAYI_OK);
            CHECK(!f.res.rejected);
            CHECK_EQ_U64(f.res.nevents, 1);
            CHECK_EVENT(&f.res, 0, "Ok", "{\"mode\":\"ok\"}");
        }
    }
    fixture_close(&f);
}
