/* Tests for src/spec/spec: the mistakes a spec can hold and where they are
 * reported, the structure compiled from the black-box bank spec, and
 * spec_fold's UPDATE semantics.
 *
 * The mistake table gives each case's line, column and the text expected to
 * start there, counted by hand: spec_mistakes_point_at_their_text checks the
 * table against its own specs (so a wrong hand count shows up as such), and
 * spec_mistakes_exact_messages checks the parser against the table.  Columns
 * count bytes, as spec.h says. */
#include <stdlib.h>

#include "command/command.h"
#include "spec/spec.h"
#include "test.h"

#define FILE_NAME "t.payi"

typedef struct mistake {
    const char *name;
    const char *text;
    unsigned line, col;      /* 0, 0: a message without a position */
    const char *at;          /* the text at line:col */
    const char *msg;         /* the message after "t.payi:line:col: " */
} mistake;

#define EV "CREATE EVENT A (x text);\n"

static const mistake MISTAKES[] = {
    /* lexical */
    {"empty file", "", 0, 0, "", "the spec declares nothing (no CREATE EVENT, COMMAND or VIEW)"},
    {"only comments", "-- nothing\n/* here */\n", 0, 0, "",
     "the spec declares nothing (no CREATE EVENT, COMMAND or VIEW)"},
    {"unterminated string", "CREATE EVENT A (x text DEFAULT 'abc);", 1, 32, "'abc", "unterminated string literal"},
    {"unterminated comment", EV "  /* CREATE EVENT B (x text);", 2, 3, "/*", "unterminated /* comment"},
    {"unterminated nested comment", EV "/* a /* b */ CREATE EVENT B (x text);", 2, 1, "/* a",
     "unterminated /* comment"},
    {"unterminated $$", EV "CREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\nfunction decide(s, c)\nend\n", 2,
     52, "$$", "unterminated dollar-quoted string $$"},
    {"unterminated $tag$", EV "CREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $body$ x $$;", 2, 52, "$body$",
     "unterminated dollar-quoted string $body$"},
    {"unterminated quoted identifier", "CREATE EVENT \"A (x text);", 1, 14, "\"A", "unterminated quoted identifier"},
    {"zero-length quoted identifier", "CREATE EVENT \"\" (x text);", 1, 14, "\"\"", "zero-length quoted identifier"},
    {"unexpected character", EV "{", 2, 1, "{", "unexpected character '{'"},
    {"invalid UTF-8", "CREATE EVENT A (x text DEFAULT '\xff');", 1, 33, "\xff", "invalid UTF-8"},
    {"column counts bytes", "-- \xc3\xa9\nCREATE EVENT A (x text DEFAULT '\xc3\xa9', y texty);", 2, 40, "texty",
     "field \"y\": expected a type (text, bigint, double precision, boolean, date, timestamptz, jsonb), found "
     "\"texty\""},
    {"CRLF line ends", "CREATE EVENT A (x text);\r\nCREATE EVENT B (y nope);\r\n", 2, 19, "nope",
     "field \"y\": expected a type (text, bigint, double precision, boolean, date, timestamptz, jsonb), found "
     "\"nope\""},
    /* statements */
    {"garbage at the top", "garbage", 1, 1, "garbage",
     "expected CREATE EVENT, CREATE AGGREGATE, CREATE COMMAND or CREATE VIEW, found \"garbage\""},
    {"garbage after a statement", EV "CREATE COMMAND C (x text) STREAM x EMIT A (x); garbage", 2, 48, "garbage",
     "expected CREATE EVENT, CREATE AGGREGATE, CREATE COMMAND or CREATE VIEW, found \"garbage\""},
    {"CREATE TABLE", "CREATE TABLE A (x text);", 1, 8, "TABLE",
     "expected EVENT, AGGREGATE, COMMAND, VIEW or GENERATOR after CREATE, found \"TABLE\""},
    {"missing ';' at the end", "CREATE EVENT A (x text)", 1, 24, "",
     "expected ';' to end CREATE EVENT, found end of file"},
    {"missing ';' between statements", "CREATE EVENT A (x text)\nCREATE EVENT B (x text);", 2, 1, "CREATE",
     "expected ';' to end CREATE EVENT, found \"CREATE\""},
    /* field lists */
    {"unknown type", "CREATE EVENT A (x texty);", 1, 19, "texty",
     "field \"x\": expected a type (text, bigint, double precision, boolean, date, timestamptz, jsonb), found "
     "\"texty\""},
    {"double without precision", "CREATE EVENT A (x double);", 1, 19, "double",
     "field \"x\": expected a type (text, bigint, double precision, boolean, date, timestamptz, jsonb), found "
     "\"double\""},
    {"empty field list", "CREATE EVENT A ();", 1, 17, ")", "A has no fields"},
    {"trailing comma", "CREATE EVENT A (x text,);", 1, 24, ")", "expected a field after ','"},
    {"missing comma", "CREATE EVENT A (x text y bigint);", 1, 24, "y bigint",
     "field \"x\": expected NOT NULL, NULL, DEFAULT, CHECK, ',' or ')', found \"y\""},
    {"NOT without NULL", "CREATE EVENT A (x text NOT 1);", 1, 28, "1", "expected NULL after NOT, found \"1\""},
    {"duplicate field", "CREATE EVENT A (x text, x bigint);", 1, 25, "x bigint", "field \"x\" is declared twice"},
    {"duplicate command field", EV "CREATE COMMAND C (x text, x text) STREAM x EMIT A (x);", 2, 27, "x text)",
     "field \"x\" is declared twice"},
    {"two DEFAULTs", "CREATE EVENT A (n bigint DEFAULT 1 DEFAULT 2);", 1, 36, "DEFAULT 2",
     "field \"n\" has two DEFAULTs"},
    {"DEFAULT of the wrong type", "CREATE EVENT A (n bigint DEFAULT 'abc');", 1, 34, "'abc'",
     "DEFAULT: invalid DEFAULT for field \"n\": invalid input syntax for type bigint: \"abc\""},
    {"DEFAULT refers to a field", "CREATE EVENT A (x text, n bigint DEFAULT n + 1);", 1, 42, "n + 1",
     "DEFAULT: invalid DEFAULT for field \"n\": DEFAULT must be a constant, it cannot refer to a field"},
    {"DEFAULT not deterministic", "CREATE EVENT A (x text DEFAULT now()::text);", 1, 32, "now()",
     "DEFAULT: invalid DEFAULT for field \"x\": now() is not allowed: expressions must be deterministic so that a "
     "replay gives the same answer"},
    {"DEFAULT missing", "CREATE EVENT A (x text DEFAULT);", 1, 31, ")",
     "expected a DEFAULT expression, found \")\""},
    {"CHECK without parentheses", "CREATE EVENT A (n bigint CHECK n > 0);", 1, 32, "n > 0",
     "expected '(' after CHECK, found \"n\""},
    {"CHECK of an unknown column", "CREATE EVENT A (x text CHECK (length(y) > 0));", 1, 38, "y)",
     "CHECK: invalid CHECK: column \"y\" does not exist"},
    {"table CHECK of an unknown column", "CREATE EVENT A (x text, CHECK (z > 1));", 1, 32, "z > 1",
     "CHECK: invalid CHECK: column \"z\" does not exist"},
    {"field CHECK not boolean", "CREATE EVENT A (x text CHECK (length(x)));", 1, 31, "length",
     "CHECK: invalid CHECK: it must be a boolean expression, not bigint"},
    {"NOT NULL on aggregate state", "CREATE AGGREGATE g (n bigint NOT NULL) STREAM 'x';", 1, 30, "NOT NULL",
     "field \"n\": NOT NULL is not allowed on aggregate state (give a DEFAULT)"},
    {"CHECK on aggregate state", "CREATE AGGREGATE g (n bigint CHECK (n > 0)) STREAM 'x';", 1, 30, "CHECK",
     "field \"n\": CHECK is not allowed on aggregate state"},
    /* names */
    {"duplicate event", EV "CREATE EVENT A (y text);", 2, 14, "A (y", "\"A\" is declared twice"},
    {"command named like an event", EV "CREATE COMMAND A (x text) STREAM x EMIT A (x);", 2, 16, "A (x",
     "\"A\" is declared twice"},
    {"duplicate aggregate",
     EV "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1;\n"
        "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1;",
     3, 18, "g (n", "\"g\" is declared twice"},
    {"duplicate command",
     EV "CREATE COMMAND C (x text) STREAM x EMIT A (x);\nCREATE COMMAND C (x text) STREAM x EMIT A (x);", 3, 16,
     "C (x", "\"C\" is declared twice"},
    {"duplicate view", EV "CREATE VIEW v AS SELECT 1;\nCREATE VIEW v AS SELECT 2;", 3, 13, "v AS",
     "view \"v\" is declared twice"},
    {"view without SELECT", EV "CREATE VIEW v AS ;", 2, 18, ";", "expected a SELECT after CREATE VIEW v AS"},
    /* aggregates */
    {"aggregate without STREAM", EV "CREATE AGGREGATE g (n bigint) ON A SET n = 1;", 2, 31, "ON A",
     "expected STREAM after the state fields (STREAM <expression> names a command's stream), found \"ON\""},
    {"unknown event in ON", EV "CREATE AGGREGATE g (n bigint) STREAM 'a' ON B SET n = 1;", 2, 45, "B SET",
     "ON: event type \"B\" is not declared (declare it with CREATE EVENT above)"},
    {"two ON clauses for one event", EV "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1 ON A SET n = 2;", 2,
     58, "A SET n = 2", "aggregate g has two ON A clauses"},
    {"SET of an unknown state field", EV "CREATE AGGREGATE g (n bigint) STREAM x ON A SET m = 1;", 2, 49, "m = 1",
     "aggregate g has no state field \"m\""},
    {"state field SET twice", EV "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1, n = 2;", 2, 56, "n = 2",
     "state field \"n\" is SET twice"},
    {"SET without '='", EV "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n 1;", 2, 51, "1;",
     "expected '=' after SET n"},
    {"unknown state column in SET", EV "CREATE AGGREGATE g (n bigint) STREAM x ON A SET n = state.nn + 1;", 2, 53,
     "state.nn", "SET: column \"state.nn\" does not exist"},
    {"type mismatch in SET",
     "CREATE EVENT A (x text, n bigint);\nCREATE AGGREGATE g (n bigint) STREAM x\n  ON A SET n = x;",
     3, 16, "x;", "SET n: the value is text but the field is bigint"},
    {"double into bigint in SET",
     "CREATE EVENT A (x text, r float8);\nCREATE AGGREGATE g (n bigint) STREAM x ON A SET n = r;",
     2, 53, "r;", "SET n: the value is double precision but the field is bigint"},
    {"aggregate STREAM over an event without its field",
     EV "CREATE AGGREGATE g (n bigint) STREAM 'g-' || k ON A SET n = 1;",
     2, 46, "k ON", "STREAM of g over the fields of event A: column \"k\" does not exist"},
    {"aggregate STREAM over a command without its field",
     "CREATE EVENT A (k text);\nCREATE AGGREGATE g (n bigint DEFAULT 0) STREAM 'g-' || k ON A SET n = state.n + 1;\n"
     "CREATE COMMAND C (x text) FOR g EMIT A (x AS k);",
     2, 56, "k ON", "STREAM of g over the fields of command C: column \"k\" does not exist"},
    /* commands */
    {"unknown aggregate in FOR", EV "CREATE COMMAND C (x text) FOR nope EMIT A (x);", 2, 31, "nope",
     "aggregate \"nope\" is not declared (declare it with CREATE AGGREGATE above)"},
    {"aggregate declared after its command",
     EV "CREATE COMMAND C (x text) FOR g EMIT A (x);\nCREATE AGGREGATE g (n bigint) STREAM x ON A SET n = 1;", 2, 31,
     "g EMIT", "aggregate \"g\" is not declared (declare it with CREATE AGGREGATE above)"},
    {"neither FOR nor STREAM", EV "CREATE COMMAND C (x text) EMIT A (x);", 2, 27, "EMIT",
     "command C: expected FOR <aggregate> or STREAM <expression>, found \"EMIT\""},
    {"STREAM of an unknown field", EV "CREATE COMMAND C (x text) STREAM 'c-' || y EMIT A (x);", 2, 42, "y EMIT",
     "STREAM: column \"y\" does not exist"},
    {"STREAM not text", EV "CREATE COMMAND C (n bigint) STREAM n + 1 EMIT A (n::text AS x);", 2, 36, "n + 1",
     "STREAM: STREAM must be text, this is bigint"},
    {"unbalanced parentheses in STREAM", EV "CREATE COMMAND C (x text) STREAM (x EMIT A (x);", 2, 34, "(x EMIT",
     "unbalanced parentheses in a STREAM expression"},
    {"unknown function", EV "CREATE COMMAND C (x text) STREAM frobnicate(x) EMIT A (x);", 2, 34, "frobnicate",
     "STREAM: function frobnicate() is not supported"},
    {"command emits nothing", EV "CREATE COMMAND C (x text) STREAM x;", 2, 35, ";",
     "command C emits nothing: add EMIT <event> (...) or LANGUAGE lua"},
    {"unknown event in EMIT", EV "CREATE COMMAND C (x text) STREAM x EMIT B (x);", 2, 41, "B (x)",
     "EMIT: event type \"B\" is not declared (declare it with CREATE EVENT above)"},
    {"EMIT of an unknown event field", EV "CREATE COMMAND C (x text) STREAM x EMIT A (x AS y);", 2, 49, "y)",
     "EMIT A: event A has no field \"y\""},
    {"EMIT gives a field twice", EV "CREATE COMMAND C (x text) STREAM x EMIT A (x, x);", 2, 47, "x)",
     "EMIT A: field \"x\" is given twice"},
    {"EMIT value without AS", EV "CREATE COMMAND C (x text) STREAM x EMIT A (upper(x));", 2, 44, "upper",
     "EMIT A: name the event field this value goes to (<expression> AS <field>)"},
    {"EMIT misses a NOT NULL field",
     "CREATE EVENT A (x text, n bigint NOT NULL);\nCREATE COMMAND C (x text) STREAM x\n  EMIT A (x);", 3, 3, "EMIT",
     "EMIT A: field \"n\" is NOT NULL and has no DEFAULT, so it must be given"},
    {"unknown column in an EMIT value", EV "CREATE COMMAND C (x text) STREAM 's-' || x\n  EMIT A (upper(y) AS x);", 3,
     17, "y)", "EMIT A (x): column \"y\" does not exist"},
    {"type mismatch in EMIT",
     "CREATE EVENT A (x text, n bigint NOT NULL);\nCREATE COMMAND C (x text) STREAM x\n  EMIT A (x, x AS n);", 3, 14,
     "x AS n", "EMIT A (n): the value is text but the field is bigint"},
    {"operator on the wrong types",
     "CREATE EVENT A (x text, d date);\nCREATE COMMAND C (x text) STREAM x EMIT A (x, x + 1 AS d);",
     2, 49, "+ 1", "EMIT A (d): operator does not exist: text + bigint"},
    {"bad expression syntax", EV "CREATE COMMAND C (x text) STREAM x\n  EMIT A ((x ||) AS x);", 3, 16, ") AS",
     "EMIT A (x): syntax error at or near \")\""},
    {"EMIT IF not boolean", EV "CREATE COMMAND C (x text) STREAM x EMIT A (x) IF x;", 2, 50, "x;",
     "EMIT ... IF: the condition must be boolean, this is text"},
    {"unknown column in EMIT IF", EV "CREATE COMMAND C (x text) STREAM x\n  EMIT A (x) IF length(zz) > 1;", 3, 24,
     "zz", "EMIT ... IF: column \"zz\" does not exist"},
    {"REJECT without IF", EV "CREATE COMMAND C (x text) STREAM x REJECT x = 'a' MESSAGE 'm' EMIT A (x);", 2, 43, "x =",
     "expected IF after REJECT, found \"x\""},
    {"state column of a stateless command",
     EV "CREATE COMMAND C (x text) STREAM x\n  REJECT IF state.n > 1 MESSAGE 'x' EMIT A (x);",
     3, 13, "state.n", "REJECT IF: column \"state.n\" does not exist"},
    {"REJECT IF not boolean",
     EV "CREATE COMMAND C (x text) STREAM x\n  REJECT IF x || 1 MESSAGE 'no'\n  EMIT A (x);", 3, 13, "x || 1",
     "REJECT IF: the condition must be boolean, this is text"},
    {"missing MESSAGE at the end", EV "CREATE COMMAND C (x text) STREAM x EMIT A (x) REJECT IF x = 'a';", 2, 64, ";",
     "expected MESSAGE after REJECT IF <condition>, found \";\""},
    {"missing MESSAGE before EMIT", EV "CREATE COMMAND C (x text) STREAM x\n  REJECT IF x = 'a'\n  EMIT A (x);", 4, 3,
     "EMIT", "expected MESSAGE after REJECT IF <condition>, found \"EMIT\""},
    {"MESSAGE not a string", EV "CREATE COMMAND C (x text) STREAM x REJECT IF x = 'a' MESSAGE oops EMIT A (x);", 2, 62,
     "oops", "MESSAGE takes a 'string literal'"},
    /* Lua */
    {"LANGUAGE python", EV "CREATE COMMAND C (x text) STREAM x LANGUAGE python AS $$ x $$;", 2, 45, "python",
     "LANGUAGE python is not supported (LANGUAGE lua is)"},
    {"LANGUAGE lua without a body", EV "CREATE COMMAND C (x text) STREAM x LANGUAGE lua AS decide;", 2, 52, "decide",
     "LANGUAGE lua AS takes the code in $$ ... $$"},
    {"LANGUAGE lua without AS", EV "CREATE COMMAND C (x text) STREAM x LANGUAGE lua $$ x $$;", 2, 49, "$$",
     "expected AS after LANGUAGE lua, found \"$$ x $$\""},
    {"Lua body then EMIT", EV "CREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$ x $$ EMIT A (x);", 2, 60, "EMIT",
     "expected ';' to end CREATE COMMAND, found \"EMIT\""},
};

#define NMISTAKES (sizeof MISTAKES / sizeof MISTAKES[0])

/* The text at 1-based line:col (bytes) of s, or NULL when out of range. */
static const char *text_at(const char *s, unsigned line, unsigned col)
{
    for (unsigned l = 1; l < line; l++) {
        s = strchr(s, '\n');
        if (!s)
            return NULL;
        s++;
    }
    size_t len = strcspn(s, "\n");
    return col >= 1 && col <= len + 1 ? s + col - 1 : NULL;
}

TEST(spec_mistakes_point_at_their_text)
{
    CHECK(NMISTAKES >= 40);
    for (size_t k = 0; k < NMISTAKES; k++) {
        const mistake *m = &MISTAKES[k];
        if (m->line == 0)
            continue;
        const char *at = text_at(m->text, m->line, m->col);
        if (!at || strncmp(at, m->at, strlen(m->at)) != 0)
            test_fail(__FILE__, __LINE__, "%s: the table's %u:%u is \"%.20s\", not \"%s\"", m->name, m->line, m->col,
                      at ? at : "(out of range)", m->at);
    }
}

TEST(spec_mistakes_exact_messages)
{
    for (size_t k = 0; k < NMISTAKES; k++) {
        const mistake *m = &MISTAKES[k];
        char want[700];
        if (m->line)
            snprintf(want, sizeof want, "%s:%u:%u: %s", FILE_NAME, m->line, m->col, m->msg);
        else
            snprintf(want, sizeof want, "%s: %s", FILE_NAME, m->msg);
        payi_spec *s = (payi_spec *)1;
        payi_err err;
        payi_code rc = spec_parse(FILE_NAME, m->text, strlen(m->text), &s, &err);
        if (rc != PAYI_VALIDATION || s != NULL || strcmp(err.msg, want) != 0)
            test_fail(__FILE__, __LINE__, "%s:\n  want %s\n  got  %s (%s)", m->name, want,
                      rc == PAYI_OK ? "no error" : err.msg, payi_code_word(rc));
        if (rc == PAYI_OK)
            spec_free(s);
    }
}

TEST(spec_nul_byte_is_a_mistake)
{
    static const char text[] = "CREATE EVENT A (x text);\0 CREATE EVENT B (y text);";
    payi_spec *s;
    payi_err err;
    CHECK_EQ_INT(spec_parse(FILE_NAME, text, sizeof text - 1, &s, &err), PAYI_VALIDATION);
    CHECK_STR(err.msg, FILE_NAME ":1:25: NUL byte in the spec");
    CHECK(s == NULL);
}

TEST(spec_name_longer_than_255_bytes)
{
    char text[600];
    snprintf(text, sizeof text, "CREATE EVENT %0256d (x text);", 0);
    payi_spec *s;
    payi_err err;
    CHECK_EQ_INT(spec_parse(FILE_NAME, text, strlen(text), &s, &err), PAYI_VALIDATION);
    /* a number is no name; the message shows its first 40 bytes */
    CHECK_STR(err.msg, FILE_NAME ":1:14: expected an event type name, found \"" "0000000000" "0000000000" "0000000000"
                                 "0000000000" "\"");
    memset(text + 13, 'n', 256);
    CHECK_EQ_INT(spec_parse(FILE_NAME, text, strlen(text), &s, &err), PAYI_VALIDATION);
    CHECK_STR(err.msg, FILE_NAME ":1:14: an event type name is longer than 255 bytes");
}

TEST(spec_load_unreadable_file)
{
    payi_spec *s = (payi_spec *)1;
    payi_err err;
    char path[600];
    snprintf(path, sizeof path, "%s/missing.payi", test_tmpdir());
    CHECK_EQ_INT(spec_load(path, &s, &err), PAYI_IO);
    CHECK(s == NULL);
    CHECK(strstr(err.msg, "missing.payi") != NULL);
}

/* Lua mistakes are found by the command module (spec.h), at the spec's lines. */
TEST(spec_lua_mistakes_name_the_spec_line)
{
    static const char text[] = EV "-- a comment line\nCREATE COMMAND C (x text) STREAM x LANGUAGE lua AS $$\n"
                               "function decide(s, c)\n  local t = 1\n  return {\nend\n$$;";
    payi_spec *s;
    payi_err err;
    luafn_limits lim;
    luafn_limits_default(&lim);
    CHECK_EQ_INT(spec_parse(FILE_NAME, text, sizeof text - 1, &s, &err), PAYI_OK);
    if (!s)
        return;
    CHECK_EQ_INT(s->commands[0].lua_line, 3);   /* the line of "$$": the body starts with its newline */
    CHECK_EQ_INT(cmd_check_lua(s, &lim, &err), PAYI_VALIDATION);
    CHECK(strncmp(err.msg, FILE_NAME ":7: ", strlen(FILE_NAME ":7: ")) == 0);
    spec_free(s);
}

/* ------------------------------------------------------- the bank spec */

static payi_spec *load_bank(void)
{
    payi_spec *s = NULL;
    payi_err err;
    if (spec_load("tests/blackbox/specs/bank.payi", &s, &err) != PAYI_OK)
        test_fail(__FILE__, __LINE__, "bank.payi: %s", err.msg);
    return s;
}

static const ev_schema *event_named(const payi_spec *s, const char *name)
{
    int k = spec_find_event(s, name, strlen(name));
    return k >= 0 ? s->events[k] : NULL;
}

static const spec_command *command_named(const payi_spec *s, const char *name)
{
    int k = spec_find_command(s, name, strlen(name));
    return k >= 0 ? &s->commands[k] : NULL;
}

static void check_field(const ev_schema *s, uint32_t i, const char *name, expr_type t, bool not_null,
                        bool has_default)
{
    if (!s || i >= s->nfields) {
        test_fail(__FILE__, __LINE__, "no field %u (%s)", i, name);
        return;
    }
    const schema_field *f = &s->fields[i];
    if (strcmp(f->name, name) != 0 || f->type != t || f->not_null != not_null || f->has_default != has_default)
        test_fail(__FILE__, __LINE__, "%s.%s: got %s %s%s%s", s->name, name, f->name, expr_type_name(f->type),
                  f->not_null ? " NOT NULL" : "", f->has_default ? " DEFAULT" : "");
}

TEST(spec_bank_counts)
{
    payi_spec *s = load_bank();
    if (!s)
        return;
    CHECK_EQ_INT(s->nevents, 6);
    CHECK_EQ_INT(s->naggregates, 1);
    CHECK_EQ_INT(s->ncommands, 5);
    CHECK_EQ_INT(s->nviews, 1);
    CHECK_STR(s->file, "tests/blackbox/specs/bank.payi");
    static const char *const events[] = {"AccountOpened", "Deposited", "Withdrawn", "BigDeposit", "RateSet", "Noted"};
    for (int k = 0; k < 6; k++)
        CHECK_EQ_INT(spec_find_event(s, events[k], strlen(events[k])), k);
    static const char *const commands[] = {"OpenAccount", "Deposit", "Withdraw", "SetRate", "Note"};
    for (int k = 0; k < 5; k++)
        CHECK_EQ_INT(spec_find_command(s, commands[k], strlen(commands[k])), k);
    CHECK_EQ_INT(spec_find_event(s, "accountopened", 13), -1);   /* names keep their case */
    CHECK_EQ_INT(spec_find_aggregate(s, "account", 7), 0);
    CHECK_STR(s->views[0].name, "deposits_by_account");
    CHECK(strncmp(s->views[0].sql, "SELECT account, count(*)", 24) == 0);
    CHECK_EQ_INT(s->views[0].line, 96);
    CHECK_EQ_INT(s->views[0].col, 3);
    spec_free(s);
}

TEST(spec_bank_event_types)
{
    payi_spec *s = load_bank();
    if (!s)
        return;
    const ev_schema *o = event_named(s, "AccountOpened");
    CHECK(o && o->nfields == 5);
    check_field(o, 0, "account", EXPR_TEXT, true, false);
    check_field(o, 1, "owner", EXPR_TEXT, true, false);
    check_field(o, 2, "opened_on", EXPR_DATE, true, false);
    check_field(o, 3, "overdraft", EXPR_BIGINT, true, true);
    check_field(o, 4, "tags", EXPR_JSONB, false, false);
    if (o && o->nfields == 5) {
        CHECK(o->fields[3].def.type == EXPR_BIGINT && !o->fields[3].def.null && o->fields[3].def.i == 0);
        CHECK_EQ_INT(o->nchecks, 1);
        CHECK_STR(o->checks[0].field, "overdraft");
        CHECK_STR(o->checks[0].sql, "overdraft >= 0");
    }
    const ev_schema *d = event_named(s, "Deposited");
    check_field(d, 2, "at", EXPR_TIMESTAMPTZ, false, false);
    check_field(d, 3, "note", EXPR_TEXT, false, true);
    if (d && d->nfields == 4)
        CHECK(d->fields[3].def.len == 4 && memcmp(d->fields[3].def.s, "none", 4) == 0);
    const ev_schema *r = event_named(s, "RateSet");
    check_field(r, 1, "rate", EXPR_DOUBLE, true, false);
    check_field(r, 2, "vip", EXPR_BOOL, true, true);
    if (r) {   /* a table CHECK: no field */
        CHECK_EQ_INT(r->nchecks, 1);
        CHECK(r->nchecks == 1 && r->checks[0].field == NULL);
    }
    spec_free(s);
}

TEST(spec_bank_aggregate)
{
    payi_spec *s = load_bank();
    if (!s)
        return;
    const spec_aggregate *a = &s->aggregates[0];
    CHECK_STR(a->name, "account");
    CHECK_STR(a->stream_sql, "'account-' || account");
    CHECK_EQ_INT(a->state->nfields, 8);
    check_field(a->state, 0, "opened", EXPR_BOOL, false, true);
    check_field(a->state, 5, "rate", EXPR_DOUBLE, false, true);
    check_field(a->state, 7, "opened_on", EXPR_DATE, false, false);
    CHECK_EQ_INT(a->nons, 4);
    const spec_on *dep = spec_aggregate_on(a, (uint32_t)spec_find_event(s, "Deposited", 9));
    CHECK(dep && dep->nsets == 3);
    if (dep && dep->nsets == 3) {
        CHECK_EQ_INT(dep->sets[0].field, 2);   /* balance */
        CHECK_EQ_INT(dep->sets[1].field, 4);   /* deposits */
        CHECK_EQ_INT(dep->sets[2].field, 6);   /* last_at */
        CHECK_EQ_INT(expr_result_type(dep->sets[2].value), EXPR_TIMESTAMPTZ);
    }
    CHECK(spec_aggregate_on(a, (uint32_t)spec_find_event(s, "BigDeposit", 10)) == NULL);
    CHECK(spec_aggregate_on(a, (uint32_t)spec_find_event(s, "Noted", 5)) == NULL);
    spec_free(s);
}

TEST(spec_bank_commands)
{
    payi_spec *s = load_bank();
    if (!s)
        return;
    const spec_command *open = command_named(s, "OpenAccount");
    CHECK(open && open->aggregate == 0 && open->nrejects == 2 && open->nemits == 1 && !open->lua);
    if (open && open->nrejects == 2 && open->nemits == 1) {
        CHECK_STR(open->rejects[0].message, "account already open");
        CHECK_STR(open->rejects[1].message, "accounts opened before 2000 are not accepted");
        CHECK_EQ_INT(open->emits[0].event, spec_find_event(s, "AccountOpened", 13));
        for (uint32_t k = 0; k < 5; k++)   /* every field given */
            CHECK(open->emits[0].values[k] != NULL);
        CHECK(open->emits[0].cond == NULL);
        CHECK_EQ_INT(open->ncols, 5 + 8);   /* command fields, then state.<f> */
        CHECK_STR(open->cols[5].name, "state.opened");
        CHECK_EQ_INT(expr_result_type(open->stream), EXPR_TEXT);
    }
    const spec_command *dep = command_named(s, "Deposit");
    CHECK(dep && dep->nrejects == 1 && dep->nemits == 2);
    if (dep && dep->nemits == 2) {
        CHECK(dep->emits[0].cond == NULL);
        CHECK(dep->emits[1].cond != NULL);   /* IF amount >= 10000 */
        CHECK_EQ_INT(dep->emits[1].event, spec_find_event(s, "BigDeposit", 10));
        check_field(dep->fields, 1, "amount", EXPR_BIGINT, true, false);
        CHECK_EQ_INT(dep->fields->nchecks, 1);
    }
    const spec_command *w = command_named(s, "Withdraw");
    CHECK(w && w->nrejects == 2);
    if (w && w->nrejects == 2)
        CHECK_STR(w->rejects[1].message, "insufficient funds");
    const spec_command *rate = command_named(s, "SetRate");
    CHECK(rate && rate->lua && rate->nemits == 0 && rate->nrejects == 0);
    if (rate && rate->lua) {
        CHECK_EQ_INT(rate->lua_line, 76);   /* "LANGUAGE lua AS $$": the body starts with that line's newline */
        CHECK(strncmp(rate->lua, "\nfunction decide(state, cmd)", 28) == 0);
        CHECK_EQ_INT(rate->lua_len, strlen(rate->lua));
    }
    const spec_command *note = command_named(s, "Note");
    CHECK(note && note->aggregate == -1 && note->ncols == 3 && note->nemits == 1);
    if (note && note->nemits == 1)   /* due + 7 AS due: date arithmetic stays a date */
        CHECK_EQ_INT(expr_result_type(note->emits[0].values[2]), EXPR_DATE);
    spec_free(s);
}

/* ---------------------------------------------------------- spec_fold */

static const char FOLD_SPEC[] =
    "CREATE EVENT Swapped (k text NOT NULL);\n"
    "CREATE EVENT Added (k text NOT NULL, n bigint, r double precision);\n"
    "CREATE EVENT Other (k text NOT NULL);\n"
    "CREATE AGGREGATE pair (a bigint DEFAULT 1, b bigint DEFAULT 2, total double precision DEFAULT 0.5,\n"
    "  label text DEFAULT 'x') STREAM k\n"
    "  ON Swapped SET a = state.b, b = state.a, label = state.label || '!'\n"
    "  ON Added SET total = n, a = n, b = state.a + n, label = state.label || k;\n";

static payi_spec *fold_spec(void)
{
    payi_spec *s = NULL;
    payi_err err;
    if (spec_parse(FILE_NAME, FOLD_SPEC, strlen(FOLD_SPEC), &s, &err) != PAYI_OK)
        test_fail(__FILE__, __LINE__, "fold spec: %s", err.msg);
    return s;
}

static void initial_state(const spec_aggregate *a, expr_value *st)
{
    for (uint32_t k = 0; k < a->state->nfields; k++)
        st[k] = a->state->fields[k].def;
}

TEST(spec_fold_reads_the_old_state)
{
    payi_spec *s = fold_spec();
    if (!s)
        return;
    const spec_aggregate *a = &s->aggregates[0];
    expr_value st[4], ev[3];
    expr_ctx ctx;
    payi_err err;
    expr_ctx_init(&ctx);
    initial_state(a, st);
    ev[0] = expr_text("k1", 2);
    /* a = state.b, b = state.a: a swap, as in an SQL UPDATE, not a = b = 2 */
    const spec_on *on = spec_aggregate_on(a, 0);
    CHECK_EQ_INT(spec_fold(a, on, s->events[0], ev, st, &ctx, &err), PAYI_OK);
    CHECK(st[0].type == EXPR_BIGINT && st[0].i == 2);
    CHECK(st[1].type == EXPR_BIGINT && st[1].i == 1);
    CHECK(st[3].type == EXPR_TEXT && st[3].len == 2 && memcmp(st[3].s, "x!", 2) == 0);
    CHECK(st[2].type == EXPR_DOUBLE && st[2].d == 0.5);   /* not SET: unchanged */
    /* b = state.a + n sees a = 2 from before this event, not a = n */
    ev[1] = expr_int(10);
    ev[2] = expr_null(EXPR_DOUBLE);
    on = spec_aggregate_on(a, 1);
    CHECK_EQ_INT(spec_fold(a, on, s->events[1], ev, st, &ctx, &err), PAYI_OK);
    CHECK(st[0].i == 10);
    CHECK(st[1].i == 12);
    CHECK(st[3].len == 4 && memcmp(st[3].s, "x!k1", 4) == 0);
    expr_ctx_release(&ctx);
    spec_free(s);
}

TEST(spec_fold_widens_bigint_to_double)
{
    payi_spec *s = fold_spec();
    if (!s)
        return;
    const spec_aggregate *a = &s->aggregates[0];
    expr_value st[4], ev[3] = {expr_text("k", 1), expr_int(9007199254740993LL), expr_null(EXPR_DOUBLE)};
    expr_ctx ctx;
    payi_err err;
    expr_ctx_init(&ctx);
    initial_state(a, st);
    CHECK_EQ_INT(spec_fold(a, spec_aggregate_on(a, 1), s->events[1], ev, st, &ctx, &err), PAYI_OK);
    CHECK_EQ_INT(st[2].type, EXPR_DOUBLE);   /* total = n: bigint into a double field */
    CHECK(!st[2].null && st[2].d == 9007199254740992.0);
    /* a NULL value stays NULL, of the field's type */
    ev[1] = expr_null(EXPR_BIGINT);
    CHECK_EQ_INT(spec_fold(a, spec_aggregate_on(a, 1), s->events[1], ev, st, &ctx, &err), PAYI_OK);
    CHECK(st[2].null && st[2].type == EXPR_DOUBLE);
    CHECK(st[0].null && st[0].type == EXPR_BIGINT);
    CHECK(st[1].null);   /* state.a + NULL */
    expr_ctx_release(&ctx);
    spec_free(s);
}

TEST(spec_fold_error_leaves_the_state)
{
    payi_spec *s = fold_spec();
    if (!s)
        return;
    const spec_aggregate *a = &s->aggregates[0];
    expr_value st[4], ev[3] = {expr_text("k", 1), expr_int(INT64_MAX), expr_null(EXPR_DOUBLE)};
    expr_ctx ctx;
    payi_err err;
    expr_ctx_init(&ctx);
    initial_state(a, st);
    /* b = state.a + n overflows: nothing is assigned, not even total and a */
    CHECK_EQ_INT(spec_fold(a, spec_aggregate_on(a, 1), s->events[1], ev, st, &ctx, &err), PAYI_VALIDATION);
    CHECK(strstr(err.msg, "bigint out of range") != NULL);
    CHECK(st[0].i == 1 && st[1].i == 2 && st[2].d == 0.5);
    CHECK(spec_aggregate_on(a, 2) == NULL);   /* Other: no ON */
    expr_ctx_release(&ctx);
    spec_free(s);
}

/* ------------------------------------------- decisions on the bank spec */

/* cmd_decide (command.h) runs a spec's commands without a log: the rules
 * the spec compiled, end to end. */
static payi_code decide(const payi_spec *s, const char *cmd, const char *body, const buf *state, cmd_decision *d,
                        payi_err *err)
{
    return cmd_decide(s, cmd, strlen(cmd), body, strlen(body), state ? state->data : NULL, state ? state->len : 0, d,
                      err);
}

static void event_field(const payi_spec *s, const cmd_decision *d, uint32_t k, uint32_t f, expr_value *out)
{
    const ev_schema *es = s->events[d->events[k].event];
    schema_get(es, d->data.data + d->events[k].off, d->events[k].len, f, out);
}

TEST(spec_bank_decisions)
{
    payi_spec *s = load_bank();
    if (!s)
        return;
    const ev_schema *st = s->aggregates[0].state;
    cmd_decision d;
    payi_err err;
    buf opened = BUF_INIT;
    expr_value v;
    cmd_decision_init(&d);
    static const char ann[] = "{\"account\":\"a\",\"owner\":\"ann\",\"opened_on\":\"2021-02-03\"}";
    CHECK_EQ_INT(decide(s, "OpenAccount", ann, NULL, &d, &err), PAYI_OK);
    CHECK(d.stream.len == 9 && memcmp(d.stream.data, "account-a", 9) == 0);
    CHECK_EQ_INT(d.nevents, 1);
    if (d.nevents == 1) {
        CHECK_EQ_INT(d.events[0].event, spec_find_event(s, "AccountOpened", 13));
        event_field(s, &d, 0, 1, &v);   /* upper(owner) AS owner */
        CHECK(v.len == 3 && memcmp(v.s, "ANN", 3) == 0);
        event_field(s, &d, 0, 3, &v);   /* COALESCE(overdraft, 0): the command's DEFAULT 0 */
        CHECK(!v.null && v.i == 0);
    }
    schema_get(st, d.state.data, d.state.len, 0, &v);
    CHECK(!v.null && v.b);   /* ON AccountOpened SET opened = true */
    buf_put(&opened, d.state.data, d.state.len);
    /* the rules read the state given */
    CHECK_EQ_INT(decide(s, "Deposit", "{\"account\":\"a\",\"amount\":5}", NULL, &d, &err), PAYI_REJECTED);
    CHECK_STR(err.msg, "no such account");
    CHECK_EQ_INT(decide(s, "OpenAccount", ann, &opened, &d, &err), PAYI_REJECTED);
    CHECK_STR(err.msg, "account already open");
    /* two EMITs, the second under IF; the state folds both in order */
    CHECK_EQ_INT(decide(s, "Deposit", "{\"account\":\"a\",\"amount\":20000}", &opened, &d, &err), PAYI_OK);
    CHECK_EQ_INT(d.nevents, 2);
    if (d.nevents == 2)
        CHECK_EQ_INT(d.events[1].event, spec_find_event(s, "BigDeposit", 10));
    schema_get(st, d.state.data, d.state.len, 2, &v);
    CHECK(v.i == 20000);
    CHECK_EQ_INT(decide(s, "Deposit", "{\"account\":\"a\",\"amount\":5}", &opened, &d, &err), PAYI_OK);
    CHECK_EQ_INT(d.nevents, 1);
    /* Lua */
    CHECK_EQ_INT(decide(s, "SetRate", "{\"account\":\"a\",\"rate\":0.25}", &opened, &d, &err), PAYI_OK);
    CHECK_EQ_INT(d.nevents, 1);
    schema_get(st, d.state.data, d.state.len, 5, &v);
    CHECK(v.d == 0.25);
    CHECK_EQ_INT(decide(s, "SetRate", "{\"account\":\"a\",\"rate\":0.75}", &opened, &d, &err), PAYI_REJECTED);
    CHECK_STR(err.msg, "a rate above 0.5 needs vip");
    cmd_decision_release(&d);
    buf_release(&opened);
    spec_free(s);
}

TEST(spec_bank_decision_errors)
{
    payi_spec *s = load_bank();
    if (!s)
        return;
    cmd_decision d;
    payi_err err;
    cmd_decision_init(&d);
    CHECK_EQ_INT(decide(s, "Nope", "{}", NULL, &d, &err), PAYI_UNKNOWN_COMMAND);
    CHECK_EQ_INT(decide(s, "Note", "{\"topic\":", NULL, &d, &err), PAYI_BAD_JSON);
    CHECK_EQ_INT(decide(s, "Deposit", "{\"account\":\"a\",\"amount\":0}", NULL, &d, &err), PAYI_VALIDATION);
    CHECK_STR(err.field, "amount");
    /* a run-time error of the spec's expressions reaches the client without
     * the spec's " (at N)"; due + 7 leaves the calendar */
    CHECK_EQ_INT(decide(s, "Note", "{\"topic\":\"t\",\"due\":\"9999-12-31\"}", NULL, &d, &err), PAYI_VALIDATION);
    CHECK_STR(err.msg, "date out of range");
    /* ... but a client's own text that looks like one is left whole */
    CHECK_EQ_INT(decide(s, "Note", "{\"topic\":\"t\",\"x (at 5)\":1}", NULL, &d, &err), PAYI_VALIDATION);
    CHECK_STR(err.msg, "unknown field \"x (at 5)\"");
    CHECK_STR(err.field, "x (at 5)");
    /* a state that is no record of the aggregate */
    static const char body[] = "{\"account\":\"a\",\"amount\":1}";
    CHECK_EQ_INT(cmd_decide(s, "Deposit", 7, body, sizeof body - 1, "junk", 4, &d, &err), PAYI_VALIDATION);
    CHECK(strncmp(err.msg, "the state is not a record of aggregate account: ", 48) == 0);
    cmd_decision_release(&d);
    spec_free(s);
}

/* A jsonb the spec computes is stored compact, like one a client sends:
 * one value, one encoding. */
TEST(spec_computed_jsonb_is_compact)
{
    static const char text[] = "CREATE EVENT E (k text NOT NULL, j jsonb, t jsonb);\n"
                               "CREATE COMMAND C (k text NOT NULL, t text) STREAM k\n"
                               "  EMIT E (k, '{\"a\": [1, 2],  \"b\" : null}'::jsonb AS j, t::jsonb AS t);\n";
    static const char body[] = "{\"k\":\"s\",\"t\":\" [ true , {\\\"x\\\" : 1} ] \"}";
    payi_spec *s;
    payi_err err;
    cmd_decision d;
    expr_value v;
    CHECK_EQ_INT(spec_parse(FILE_NAME, text, sizeof text - 1, &s, &err), PAYI_OK);
    if (!s)
        return;
    cmd_decision_init(&d);
    CHECK_EQ_INT(cmd_decide(s, "C", 1, body, sizeof body - 1, NULL, 0, &d, &err), PAYI_OK);
    CHECK_EQ_INT(d.nevents, 1);
    if (d.nevents == 1) {
        event_field(s, &d, 0, 1, &v);   /* a constant */
        CHECK(v.len == 20 && memcmp(v.s, "{\"a\":[1,2],\"b\":null}", 20) == 0);
        event_field(s, &d, 0, 2, &v);   /* computed at run time */
        CHECK(v.len == 14 && memcmp(v.s, "[true,{\"x\":1}]", 14) == 0);
    }
    cmd_decision_release(&d);
    spec_free(s);
}
