#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/timefmt.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "event/evjson.h"
#include "event/registry.h"
#include "spec/spec.h"
#include "store/store.h"
#include "view/view.h"

/* ---------------------------------------------------------------- shared */

/* A decimal number, then *rest at what follows it; false for no digits,
 * a sign, or overflow. */
static bool parse_decimal(const char *s, uint64_t *out, const char **rest)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    *out = v;
    *rest = end;
    return true;
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
    const char *rest;
    return parse_decimal(s, out, &rest) && !*rest;
}

bool cli_parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *end;
    if (!parse_decimal(s, &v, &end))
        return false;
    unsigned shift = *end == 'k' || *end == 'K' ? 10 : *end == 'm' || *end == 'M' ? 20 : *end == 'g' || *end == 'G' ? 30 : 0;
    if (shift)
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = v << shift;
    return true;
}

void cli_report(const payi_err *err, uint64_t line)
{
    if (line)
        fprintf(stderr, "payi: line %" PRIu64 ": %s: %s\n", line, payi_code_word(err->code), err->msg);
    else
        fprintf(stderr, "payi: %s: %s\n", payi_code_word(err->code), err->msg);
}

void cli_warn_durability(const log_options *o)
{
    if (o->durability == LOG_DURABLE_NONE)
        fprintf(stderr, "payi: WARNING: --durability none: appends are acknowledged without fdatasync; a power "
                        "failure or kernel crash can lose any of them. Use only for tests and benchmarks.\n");
    else if (o->durability == LOG_DURABLE_INTERVAL)
        fprintf(stderr, "payi: note: --durability interval: acknowledged appends of the last %u ms can be lost on "
                        "power failure.\n",
                o->interval_ms);
}

/* Options every verb that opens the log understands. */
enum { OPT_DATA = 1000, OPT_DURABILITY, OPT_INTERVAL, OPT_SEGMENT_SIZE, OPT_MAX_EVENT, OPT_FROM, OPT_LIMIT,
       OPT_STREAM, OPT_ALL, OPT_FOLLOW, OPT_BACKWARDS, OPT_HELP };

static int usage_error(const char *verb, const char *msg)
{
    fprintf(stderr, "payi %s: %s (see 'payi %s --help')\n", verb, msg, verb);
    return 2;
}

/* Returns 0 when the option was a log option and was applied, 2 on a bad value, -1 when not ours. */
static int log_option(int opt, const char *arg, const char *verb, const char **dir, log_options *lo)
{
    uint64_t v;
    switch (opt) {
    case OPT_DATA:
        *dir = arg;
        return 0;
    case OPT_DURABILITY:
        return log_durability_parse(arg, &lo->durability) ? 0
                                                          : usage_error(verb, "--durability must be fsync, interval or none");
    case OPT_INTERVAL:
        if (!cli_parse_u64(arg, &v) || v == 0 || v > 60000)
            return usage_error(verb, "--interval-ms must be 1..60000");
        lo->interval_ms = (uint32_t)v;
        return 0;
    case OPT_SEGMENT_SIZE:
        if (!cli_parse_size(arg, &v) || v < 4096 || v > (1ull << 32) - 1)
            return usage_error(verb, "--segment-size must be between 4k and 4G-1");
        lo->segment_size = v;
        return 0;
    case OPT_MAX_EVENT:
        if (!cli_parse_size(arg, &v) || v < 64 || v > (256u << 20))
            return usage_error(verb, "--max-event-size must be between 64 and 256M");
        lo->max_event_size = (uint32_t)v;
        return 0;
    }
    return -1;
}

#define LOG_LONGOPTS                                                                      \
    {"data", required_argument, NULL, OPT_DATA}, {"durability", required_argument, NULL, OPT_DURABILITY}, \
        {"interval-ms", required_argument, NULL, OPT_INTERVAL},                           \
        {"segment-size", required_argument, NULL, OPT_SEGMENT_SIZE},                      \
        {"max-event-size", required_argument, NULL, OPT_MAX_EVENT}, {"help", no_argument, NULL, OPT_HELP}

/* ---------------------------------------------------------------- append */

static const char append_help[] =
    "usage: payi append [--data DIR] [--durability fsync|interval|none] [--interval-ms N]\n"
    "                   [--segment-size SIZE] [--max-event-size SIZE]\n"
    "\n"
    "Appends NDJSON events read from standard input.  Each line is one event\n"
    "  {\"stream\":\"s\",\"type\":\"T\",\"data\":{...},\"id\":\"<uuid>\"?,\"expected_version\":V?,\"meta\":{...}?}\n"
    "or a JSON array of such events for one stream, appended atomically.  expected_version is\n"
    "\"any\" (default), \"no_stream\", \"exists\" or a version number.  An event whose id was appended\n"
    "before is not appended again: its acknowledgement is the original's, with \"duplicate\":true.\n"
    "\n"
    "Prints {\"position\":P,\"stream\":\"s\",\"version\":V} per event once it is durable.  Stops at the\n"
    "first bad line with 'payi: line N: <code>: <message>' on stderr and exit status 1; the lines\n"
    "before it stay appended.\n"
    "\n"
    "  --data DIR             data directory (default ./payi-data; created if missing)\n"
    "  --durability MODE      fsync (default): fdatasync before acknowledging, shared by all\n"
    "                         pending appends; interval: acknowledge when written, fdatasync every\n"
    "                         --interval-ms (default 100); none: never sync (tests, benchmarks)\n"
    "  --segment-size SIZE    roll to a new segment file past SIZE bytes (default 64M)\n"
    "  --max-event-size SIZE  largest event: stream+type+data+meta bytes (default 1M)\n";

#define APPEND_MAX_BATCH 4096

typedef struct append_run {
    payi_log *log;
    evjson_batch batch;
    uint64_t *lines;          /* input line number of each append in the batch */
    size_t lines_cap;
    json_doc doc;
    buf out;
    payi_err pending_err;     /* a decode error waiting for the batch before it */
    uint64_t pending_line;
} append_run;

/* Submit the decoded appends, wait until durable, print their acks.  Returns
 * false after reporting the first append that failed. */
static bool append_flush(append_run *r)
{
    if (r->batch.n == 0)
        return true;
    evjson_batch_seal(&r->batch);
    log_wait(r->log, log_submit(r->log, r->batch.appends, (uint32_t)r->batch.n, true));
    buf_reset(&r->out);
    const log_append *failed = NULL;
    uint64_t failed_line = 0;
    for (size_t i = 0; i < r->batch.n; i++) {
        const log_append *a = &r->batch.appends[i];
        if (a->status != PAYI_OK) {
            failed = a;
            failed_line = r->lines[i];
            break;
        }
        for (uint32_t k = 0; k < a->nevents; k++) {
            evjson_write_ack(&r->out, a, k);
            buf_putc(&r->out, '\n');
        }
    }
    if (r->out.len && (fwrite(r->out.data, 1, r->out.len, stdout) != r->out.len || fflush(stdout) != 0)) {
        fprintf(stderr, "payi: cannot write acknowledgements to standard output: %s\n", strerror(errno));
        exit(1);
    }
    evjson_batch_reset(&r->batch);
    if (failed) {
        cli_report(&failed->err, failed_line);
        return false;
    }
    return true;
}

/* Decode one line into the batch; false (with pending_err set) on a bad line. */
static bool append_line(append_run *r, const char *line, size_t len, uint64_t lineno)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t skip = 0;
    while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
        skip++;
    if (skip == len)
        return true;   /* blank line */
    size_t mark = r->batch.n;
    payi_code rc = evjson_decode_text(&r->batch, &r->doc, line, len, &r->pending_err);
    if (rc == PAYI_OK) {
        log_append *a = &r->batch.appends[mark];
        evjson_batch_seal_from(&r->batch, mark);   /* validation reads the strings */
        rc = log_validate(r->log, a, &r->pending_err);
        if (rc != PAYI_OK)
            r->batch.n = mark;   /* its text stays behind unused until the reset */
    }
    if (rc != PAYI_OK) {
        r->pending_line = lineno;
        return false;
    }
    r->lines = xgrow(r->lines, &r->lines_cap, r->batch.n, sizeof *r->lines);
    r->lines[r->batch.n - 1] = lineno;
    return true;
}

/* Read lines, decode them, and append them in batches: a batch is what one
 * read() brought (or APPEND_MAX_BATCH lines), acknowledged before blocking on
 * more input.  Returns false at the first failure, reported. */
static bool append_lines(append_run *r, buf *in, uint64_t max_line)
{
    uint64_t lineno = 0;
    size_t start = 0;   /* first unconsumed byte of in */
    for (bool eof = false; !eof;) {
        buf_reserve(in, 1 << 20);
        ssize_t n = read(STDIN_FILENO, in->data + in->len, in->cap - in->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "payi: cannot read standard input: %s\n", strerror(errno));
            append_flush(r);   /* what was read before stays appended and acknowledged */
            return false;
        }
        eof = n == 0;
        in->len += (size_t)n;
        for (;;) {
            char *nl = memchr(in->data + start, '\n', in->len - start);
            if (!nl && !(eof && start < in->len))
                break;
            size_t len = nl ? (size_t)(nl - (in->data + start)) : in->len - start;
            if (!append_line(r, in->data + start, len, ++lineno))
                return false;
            start += len + (nl ? 1 : 0);
            if (r->batch.n >= APPEND_MAX_BATCH && !append_flush(r))
                return false;
        }
        if (in->len - start > max_line) {
            payi_err_set(&r->pending_err, PAYI_TOO_LARGE, NULL, "line is longer than %" PRIu64 " bytes", max_line);
            r->pending_line = lineno + 1;
            return false;
        }
        memmove(in->data, in->data + start, in->len - start);   /* keep the unconsumed tail in front */
        in->len -= start;
        start = 0;
        if (!append_flush(r))   /* acknowledge what we have before blocking on more input */
            return false;
    }
    return true;
}

static int append_stream(append_run *r, uint64_t max_line)
{
    buf in = BUF_INIT;
    bool ok = append_lines(r, &in, max_line);
    buf_release(&in);
    /* A bad line stops decoding; the appends decoded before it still go in. */
    if (!ok && r->pending_line) {
        if (!append_flush(r))
            return 1;
        cli_report(&r->pending_err, r->pending_line);
    }
    return ok ? 0 : 1;
}

int cli_append(int argc, char **argv)
{
    static const struct option opts[] = {LOG_LONGOPTS, {0, 0, 0, 0}};
    const char *dir = CLI_DEFAULT_DATA;
    log_options lo;
    log_options_default(&lo);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            fputs(append_help, stdout);
            return 0;
        }
        int r = log_option(c, optarg, "append", &dir, &lo);
        if (r != 0)
            return r > 0 ? r : usage_error("append", "unknown option");
    }
    if (optind < argc)
        return usage_error("append", "unexpected argument");
    cli_warn_durability(&lo);
    payi_err err;
    append_run r = {0};
    if (log_open(&r.log, dir, &lo, &err) != PAYI_OK) {
        cli_report(&err, 0);
        return 1;
    }
    evjson_batch_init(&r.batch);
    registry *reg = registry_new();   /* events of declared types are validated and stored typed */
    if (registry_refresh(reg, r.log, &err) != PAYI_OK) {
        cli_report(&err, 0);
        registry_free(reg);
        log_close(r.log);
        evjson_batch_release(&r.batch);
        return 1;
    }
    r.batch.reg = reg;
    int status = append_stream(&r, (uint64_t)lo.max_event_size * 8 + 65536);
    log_close(r.log);
    registry_free(reg);
    evjson_batch_release(&r.batch);
    json_doc_release(&r.doc);
    buf_release(&r.out);
    free(r.lines);
    return status;
}

/* ---------------------------------------------------------------- read */

static const char read_help[] =
    "usage: payi read [--data DIR] (--stream S | --all) [--from N] [--limit N] [--backwards] [--follow]\n"
    "\n"
    "Prints events as NDJSON: {\"position\",\"stream\",\"version\",\"type\",\"id\",\"time\",\"data\",\"meta\"}.\n"
    "  --stream S    the events of stream S, from version --from (default 0)\n"
    "  --all         every event, from global position --from (default 0)\n"
    "  --backwards   from --from (default: the last) down to the first\n"
    "  --limit N     at most N events\n"
    "  --follow      after the history, keep printing new events as they are appended\n"
    "                (by this or another process) until interrupted\n"
    "Reading never blocks a writer: it opens the log read-only.\n";

typedef struct read_out {
    buf line;
    uint64_t printed;
    registry *reg;
} read_out;

static int print_event(void *ctx, const log_event *ev)
{
    read_out *o = ctx;
    buf_reset(&o->line);
    evjson_write_event(&o->line, ev, o->reg);
    buf_putc(&o->line, '\n');
    if (fwrite(o->line.data, 1, o->line.len, stdout) != o->line.len)
        return 1;
    o->printed++;
    return 0;
}

/* Live part of --follow: events from position `from` on, of one stream or all,
 * as they are acknowledged, until stdout goes away or an error. */
static int follow_live(payi_log *log, uint64_t from, const char *stream, uint64_t limit, read_out *o)
{
    log_cursor cur;
    log_cursor_at(&cur, from);
    log_sub *s = log_sub_open(log, &cur);
    size_t slen = stream ? strlen(stream) : 0;
    payi_err err;
    int status = 0;
    while (!limit || o->printed < limit) {
        log_event ev;
        payi_code rc = log_sub_next(s, &ev, 0, &err);
        if (rc == PAYI_TIMEOUT) {   /* caught up: show what we have, then sleep until woken */
            if (fflush(stdout) != 0)
                break;
            rc = log_sub_next(s, &ev, -1, &err);
        }
        if (rc == PAYI_TIMEOUT)
            continue;
        if (rc != PAYI_OK) {
            cli_report(&err, 0);
            status = 1;
            break;
        }
        if (stream && (ev.stream_len != slen || memcmp(ev.stream, stream, slen) != 0))
            continue;
        uint32_t id;   /* a schema registered after we started: read it before the event that uses it */
        if (ev.encoding == LOG_ENC_TYPED && schema_data_id(ev.data, ev.data_len, &id) && !registry_by_id(o->reg, id) &&
            registry_refresh(o->reg, log, &err) != PAYI_OK) {
            cli_report(&err, 0);
            status = 1;
            break;
        }
        if (print_event(o, &ev) != 0)
            break;   /* stdout closed: the reader went away */
    }
    log_sub_close(s);
    return status;
}

/* History stops at the head seen before it, so that the live part neither
 * repeats nor skips an event. */
typedef struct bounded_out {
    read_out *o;
    uint64_t head;
} bounded_out;

static int print_below_head(void *ctx, const log_event *ev)
{
    bounded_out *b = ctx;
    return ev->position >= b->head ? 1 : print_event(b->o, ev);
}

int cli_read(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA},   {"stream", required_argument, NULL, OPT_STREAM},
        {"all", no_argument, NULL, OPT_ALL},           {"from", required_argument, NULL, OPT_FROM},
        {"limit", required_argument, NULL, OPT_LIMIT}, {"follow", no_argument, NULL, OPT_FOLLOW},
        {"backwards", no_argument, NULL, OPT_BACKWARDS}, {"help", no_argument, NULL, OPT_HELP},
        {0, 0, 0, 0}};
    const char *dir = CLI_DEFAULT_DATA, *stream = NULL;
    bool all = false, follow = false, backwards = false, from_set = false;
    uint64_t from = 0, limit = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_HELP: fputs(read_help, stdout); return 0;
        case OPT_DATA: dir = optarg; break;
        case OPT_STREAM: stream = optarg; break;
        case OPT_ALL: all = true; break;
        case OPT_FOLLOW: follow = true; break;
        case OPT_BACKWARDS: backwards = true; break;
        case OPT_FROM:
            if (!cli_parse_u64(optarg, &from))
                return usage_error("read", "--from must be a number >= 0");
            from_set = true;
            break;
        case OPT_LIMIT:
            if (!cli_parse_u64(optarg, &limit))
                return usage_error("read", "--limit must be a number >= 0");
            break;
        default: return usage_error("read", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("read", "unexpected argument");
    if (!!stream == all)
        return usage_error("read", "give exactly one of --stream S or --all");
    if (follow && backwards)
        return usage_error("read", "--follow and --backwards do not go together");
    log_options lo;
    log_options_default(&lo);
    lo.read_only = true;
    lo.max_event_size = UINT32_MAX - 1024;   /* read what any writer's limit allowed */
    payi_log *log;
    payi_err err;
    if (log_open(&log, dir, &lo, &err) != PAYI_OK) {
        cli_report(&err, 0);
        return 1;
    }
    read_out o = {BUF_INIT, 0, registry_new()};
    bounded_out bo = {&o, log_head(log)};
    if (registry_refresh(o.reg, log, &err) != PAYI_OK) {   /* after the head: covers every typed event below it */
        cli_report(&err, 0);
        registry_free(o.reg);
        log_close(log);
        return 1;
    }
    uint64_t start = backwards && !from_set ? UINT64_MAX : from;
    payi_code rc = all ? log_read_all(log, start, limit, backwards, print_below_head, &bo, &err)
                       : log_read_stream(log, stream, (uint32_t)strlen(stream), start, limit, backwards,
                                         print_below_head, &bo, &err);
    int status = 0;
    if (rc != PAYI_OK) {
        cli_report(&err, 0);
        status = 1;
    } else if (follow && (!limit || o.printed < limit)) {
        status = follow_live(log, all && from > bo.head ? from : bo.head, stream, limit, &o);
    }
    if (fflush(stdout) != 0 && status == 0)
        status = 1;
    buf_release(&o.line);
    registry_free(o.reg);
    log_close(log);
    return status;
}

/* ---------------------------------------------------------------- check */

static const char check_help[] =
    "usage: payi check [--data DIR]\n"
    "\n"
    "Verifies every record of every segment: checksums, dense positions, gapless stream\n"
    "versions.  Exit status 0 when the log is sound (a torn tail left by a crash is reported\n"
    "and is sound: the next writer truncates it), 1 with the file and byte offset when not.\n";

int cli_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA}, {"help", no_argument, NULL, OPT_HELP}, {0, 0, 0, 0}};
    const char *dir = CLI_DEFAULT_DATA;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            fputs(check_help, stdout);
            return 0;
        }
        if (c != OPT_DATA)
            return usage_error("check", "unknown option");
        dir = optarg;
    }
    if (optind < argc)
        return usage_error("check", "unexpected argument");
    log_stats st;
    payi_err err;
    if (log_check(dir, &st, &err) != PAYI_OK) {
        cli_report(&err, 0);
        printf("check: FAILED after %" PRIu64 " sound events\n", st.events);
        return 1;
    }
    printf("check: ok: %" PRIu64 " events in %" PRIu64 " streams, %" PRIu64 " segments, %" PRIu64 " bytes\n",
           st.events, st.streams, st.segments, st.bytes);
    if (st.recovered_truncated_bytes)
        printf("check: note: a torn tail of %" PRIu64 " bytes (an unacknowledged write cut by a crash) will be "
               "truncated by the next writer\n",
               st.recovered_truncated_bytes);
    return 0;
}

/* ---------------------------------------------------------------- sql */

static const char sql_help[] =
    "usage: payi sql [--data DIR] [--store URL] [--json] [--max-rows N] \"SELECT ...\"\n"
    "\n"
    "Runs one read-only SQL statement on the read store where the views land and prints the\n"
    "rows: a header line and tab-separated values (NULL as an empty field), or with --json the\n"
    "answer of POST /sql.  Writes are refused (SQLite: query_only and an authorizer;\n"
    "PostgreSQL: a READ ONLY transaction).  A statement running over 5 s is stopped.\n"
    "\n"
    "  --data DIR     data directory whose views.db is the default store (default ./payi-data)\n"
    "  --store URL    sqlite:PATH or postgresql://... (default sqlite:DIR/views.db)\n"
    "  --max-rows N   at most N rows (default 10000)\n";

enum { OPT_STORE = 1100, OPT_JSON, OPT_MAX_ROWS, OPT_SPEC, OPT_VIEW };

static void store_url_of(const char *dir, const char *url_arg, buf *url)
{
    if (url_arg)
        buf_puts(url, url_arg);
    else
        buf_printf(url, "sqlite:%s/views.db", dir);
}

/* A JSON value of the answer as a TSV field. */
static void put_tsv_value(const json_doc *d, uint32_t v, buf *out)
{
    const json_node *n = &d->nodes[v];
    if (n->kind == JSON_NULL)
        return;
    if (n->kind == JSON_STRING) {
        buf s = BUF_INIT;
        json_get_string(d, v, &s);
        for (size_t i = 0; i < s.len; i++)
            buf_putc(out, s.data[i] == '\t' || s.data[i] == '\n' ? ' ' : s.data[i]);
        buf_release(&s);
        return;
    }
    json_write_compact(d, v, out);
}

static int print_tsv(const buf *answer)
{
    json_doc d = JSON_DOC_INIT;
    if (!json_parse(&d, answer->data, answer->len, NULL, NULL))
        return 1;
    buf out = BUF_INIT;
    uint32_t cols = json_object_get(&d, 0, "columns"), rows = json_object_get(&d, 0, "rows");
    for (uint32_t i = 0, c = json_first_child(&d, cols); i < d.nodes[cols].count; i++, c = json_next_sibling(&d, c)) {
        if (i)
            buf_putc(&out, '\t');
        put_tsv_value(&d, c, &out);
    }
    buf_putc(&out, '\n');
    for (uint32_t i = 0, r = json_first_child(&d, rows); i < d.nodes[rows].count; i++, r = json_next_sibling(&d, r)) {
        for (uint32_t k = 0, v = json_first_child(&d, r); k < d.nodes[r].count; k++, v = json_next_sibling(&d, v)) {
            if (k)
                buf_putc(&out, '\t');
            put_tsv_value(&d, v, &out);
        }
        buf_putc(&out, '\n');
    }
    uint32_t tr = json_object_get(&d, 0, "truncated");
    fwrite(out.data, 1, out.len, stdout);
    if (tr != UINT32_MAX && d.nodes[tr].kind == JSON_TRUE)
        fprintf(stderr, "payi sql: more rows than --max-rows; the rest are not shown\n");
    buf_release(&out);
    json_doc_release(&d);
    return 0;
}

int cli_sql(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA},         {"store", required_argument, NULL, OPT_STORE},
        {"json", no_argument, NULL, OPT_JSON},               {"max-rows", required_argument, NULL, OPT_MAX_ROWS},
        {"help", no_argument, NULL, OPT_HELP},               {0, 0, 0, 0}};
    const char *dir = CLI_DEFAULT_DATA, *store_arg = NULL;
    bool json = false;
    uint64_t max_rows = 10000;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_HELP: fputs(sql_help, stdout); return 0;
        case OPT_DATA: dir = optarg; break;
        case OPT_STORE: store_arg = optarg; break;
        case OPT_JSON: json = true; break;
        case OPT_MAX_ROWS:
            if (!cli_parse_u64(optarg, &max_rows) || max_rows == 0 || max_rows > 10000000)
                return usage_error("sql", "--max-rows must be 1..10000000");
            break;
        default: return usage_error("sql", "unknown option");
        }
    }
    if (optind != argc - 1)
        return usage_error("sql", "give exactly one SQL statement");
    buf url = BUF_INIT, out = BUF_INIT;
    store_url_of(dir, store_arg, &url);
    store *st;
    payi_err err;
    int status = 1;
    if (store_open(&st, url.data, STORE_RO, &err) == PAYI_OK) {
        if (store_sql_json(st, argv[optind], (size_t)max_rows, 5000, &out, &err) == PAYI_OK) {
            status = json ? (fwrite(out.data, 1, out.len, stdout), putchar('\n'), 0) : print_tsv(&out);
        } else {
            cli_report(&err, 0);
        }
        store_close(st);
    } else {
        cli_report(&err, 0);
    }
    if (fflush(stdout) != 0)
        status = 1;
    buf_release(&url);
    buf_release(&out);
    return status;
}

/* ---------------------------------------------------------------- replay */

static const char replay_help[] =
    "usage: payi replay --spec FILE [--view NAME] [--data DIR] [--store URL]\n"
    "\n"
    "Rebuilds the spec's views (or one) from position 0: into a new table, while the old one\n"
    "keeps serving, then swapped in atomically with the view's checkpoint.  Works beside a\n"
    "running payi serve (the log is opened read-only; the server's view goes on from the\n"
    "swapped-in table).  Progress on stderr.\n"
    "\n"
    "  --spec FILE    the spec whose views to rebuild\n"
    "  --view NAME    only this view\n"
    "  --data DIR     data directory (default ./payi-data)\n"
    "  --store URL    sqlite:PATH or postgresql://... (default sqlite:DIR/views.db)\n";

typedef struct progress_out {
    bool tty;
    double last;
    double start;
} progress_out;

static void show_progress(void *ctx, const char *view, uint64_t done, uint64_t total)
{
    progress_out *p = ctx;
    double t = time_mono_s();
    bool end = done >= total;
    if (!end && t - p->last < (p->tty ? 0.2 : 5.0))
        return;
    p->last = t;
    double secs = t - p->start, rate = secs > 0 ? (double)done / secs : 0;
    fprintf(stderr, "%spayi replay: %s: %" PRIu64 " / %" PRIu64 " events (%.0f%%, %.0f events/s)%s",
            p->tty ? "\r" : "", view, done, total, total ? 100.0 * (double)done / (double)total : 100.0, rate,
            p->tty && !end ? "\033[K" : "\n");
}

int cli_replay(int argc, char **argv)
{
    static const struct option opts[] = {
        {"spec", required_argument, NULL, OPT_SPEC},   {"view", required_argument, NULL, OPT_VIEW},
        {"data", required_argument, NULL, OPT_DATA},   {"store", required_argument, NULL, OPT_STORE},
        {"help", no_argument, NULL, OPT_HELP},         {0, 0, 0, 0}};
    const char *dir = CLI_DEFAULT_DATA, *store_arg = NULL, *spec_path = NULL, *view_name = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_HELP: fputs(replay_help, stdout); return 0;
        case OPT_DATA: dir = optarg; break;
        case OPT_STORE: store_arg = optarg; break;
        case OPT_SPEC: spec_path = optarg; break;
        case OPT_VIEW: view_name = optarg; break;
        default: return usage_error("replay", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("replay", "unexpected argument");
    if (!spec_path)
        return usage_error("replay", "--spec FILE is required");
    payi_err err;
    payi_spec *spec = NULL;
    if (spec_load(spec_path, &spec, &err) != PAYI_OK || view_engine_check(spec, &err) != PAYI_OK) {
        fprintf(stderr, "%s\n", err.msg);
        spec_free(spec);
        return 1;
    }
    bool found = !view_name;
    for (uint32_t i = 0; view_name && i < spec->nviews; i++)
        found |= strcmp(spec->views[i].name, view_name) == 0;
    if (!spec->nviews || !found) {
        fprintf(stderr, view_name ? "payi replay: the spec has no view named \"%s\"\n" : "payi replay: the spec declares no view\n",
                view_name);
        spec_free(spec);
        return 1;
    }
    log_options lo;
    log_options_default(&lo);
    lo.read_only = true;
    lo.max_event_size = UINT32_MAX - 1024;
    payi_log *log = NULL;
    registry *reg = registry_new();
    view_engine *ve = NULL;
    buf url = BUF_INIT;
    store_url_of(dir, store_arg, &url);
    view_options vo;
    view_options_default(&vo);
    vo.store_url = url.data;
    vo.live = false;
    progress_out p = {.tty = isatty(2), .start = time_mono_s()};
    payi_code rc = log_open(&log, dir, &lo, &err);
    if (rc == PAYI_OK)
        rc = registry_refresh(reg, log, &err);
    if (rc == PAYI_OK)
        rc = view_engine_open(&ve, log, reg, spec, &vo, &err);
    if (rc == PAYI_OK)
        rc = view_engine_replay(ve, view_name, show_progress, &p, &err);
    if (rc != PAYI_OK)
        cli_report(&err, 0);
    view_engine_close(ve);
    registry_free(reg);
    if (log)
        log_close(log);
    spec_free(spec);
    buf_release(&url);
    return rc == PAYI_OK ? 0 : 1;
}
