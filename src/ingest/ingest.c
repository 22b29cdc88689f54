/* ingest.c — `payi ingest`: files whose rows become commands (ingest.h).
 *
 * Design.  A file is read whole into memory (decompressed through
 * `gzip -dc` when its name ends in .gz: the public files are a few MB), its
 * format told by its first line, and its rows turned into NDJSON command
 * bodies of BATCH_LINES lines; each batch goes through cmd_execute_ndjson,
 * which decides every line and submits it at once, so a batch shares group
 * commits and a country's commands pipeline on its stream.  The answer has
 * one line per command (an ack with "events":N, or an error with the line
 * number), from which the counts and the first errors are taken.
 */
#include "ingest/ingest.h"

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
#include "cli/cli.h"
#include "event/registry.h"
#include "ingest/covid.h"
#include "ingest/csv.h"
#include "log/log.h"
#include "spec/spec.h"

#define BATCH_LINES 1024   /* lines per cmd_execute_ndjson: its calls are recycled up to this many */
#define SHOW_ERRORS 5

/* ------------------------------------------------------------ reading */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The whole file into out, through gzip -dc for .gz. */
static payi_code read_whole(const char *path, buf *out, payi_err *err)
{
    FILE *f;
    bool piped = ends_with(path, ".gz");
    if (piped) {
        if (access(path, R_OK) != 0)
            return payi_err_sys(err, PAYI_IO, errno, "cannot read %s", path);
        buf cmd = BUF_INIT;
        buf_puts(&cmd, "gzip -dc -- '");
        for (const char *c = path; *c; c++)   /* single-quoted for the shell: ' becomes '\'' */
            buf_puts(&cmd, *c == '\'' ? "'\\''" : (char[]){*c, 0});
        buf_putc(&cmd, '\'');
        f = popen(cmd.data, "r");
        buf_release(&cmd);
    } else {
        f = fopen(path, "rb");
    }
    if (!f)
        return payi_err_sys(err, PAYI_IO, errno, "cannot open %s", path);
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_put(out, chunk, n);
    bool bad = ferror(f) != 0;
    int st = piped ? pclose(f) : fclose(f);
    if (bad || st != 0)
        return payi_err_set(err, PAYI_IO, NULL, "cannot read %s%s", path, piped ? " (gzip -dc failed)" : "");
    return PAYI_OK;
}

typedef enum { FMT_JHU, FMT_WHO, FMT_NDJSON } file_format;

static file_format format_of(const char *path, const buf *text)
{
    const char *t = text->data ? text->data : "";
    if (!strncmp(t, "\xEF\xBB\xBF", 3))
        t += 3;
    if (!strncmp(t, "Province/State,Country/Region", 29))
        return FMT_JHU;
    if (!strncmp(t, "Date_reported,", 14))
        return FMT_WHO;
    (void)path;
    return FMT_NDJSON;
}

/* ------------------------------------------------------------ running */

/* "YYYY-MM-DD" without printf: this runs once per command. */
static void put_day(buf *b, int64_t day)
{
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(day, &y, &m, &d);
    char t[13] = {'"', (char)('0' + y / 1000 % 10), (char)('0' + y / 100 % 10), (char)('0' + y / 10 % 10),
                  (char)('0' + y % 10), '-', (char)('0' + m / 10), (char)('0' + m % 10), '-', (char)('0' + d / 10),
                  (char)('0' + d % 10), '"', 0};
    buf_put(b, t, 12);
}

/* Where a command came from: a JHU cell (country, day) or a line. */
typedef struct origin {
    const char *country;         /* NULL: a line number */
    int64_t day;
    uint64_t line;
} origin;

typedef struct run {
    cmd_engine *e;
    const char *command;
    const char *file;
    buf body;                    /* the batch being built */
    uint32_t lines;
    origin *what;                /* per line of the batch: where it came from, for errors */
    ingest_stats *st;
    int shown;
    ingest_progress_fn progress;
    void *pctx;
    uint64_t done, total;
} run;

static void count_answers(run *r, const buf *out)
{
    const char *p = out->data ? out->data : "", *end = p + out->len;
    uint32_t line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        r->st->commands++;
        if (!strncmp(p, "{\"error\"", 8)) {
            r->st->failed++;
            if (r->shown++ < SHOW_ERRORS) {
                const origin *o = &r->what[line];
                buf where = BUF_INIT;
                if (o->country) {
                    buf_printf(&where, "%s ", o->country);
                    put_day(&where, o->day);
                } else {
                    buf_printf(&where, "line %" PRIu64, o->line);
                }
                fprintf(stderr, "payi ingest: %s, %s: %.*s\n", r->file, where.data, (int)(le - p), p);
                buf_release(&where);
            }
        } else {
            const char *ev = strstr(p, "\"events\":");
            uint64_t n = ev && ev < le ? strtoull(ev + 9, NULL, 10) : 0;
            r->st->events += n;
            if (n)
                r->st->appended++;
            else
                r->st->unchanged++;
        }
        line++;
        p = nl ? nl + 1 : end;
    }
}

static void flush_batch(run *r)
{
    if (!r->lines)
        return;
    buf out = BUF_INIT;
    cmd_execute_ndjson(r->e, r->command, strlen(r->command), r->body.data, r->body.len, &out);
    count_answers(r, &out);
    buf_release(&out);
    r->done += r->lines;
    r->lines = 0;
    buf_reset(&r->body);
    if (r->progress)
        r->progress(r->pctx, r->file, r->done, r->total);
}

/* One command line (fields already in r->body up to now) and where it came from. */
static void end_line(run *r, origin what)
{
    buf_putc(&r->body, '\n');
    r->what[r->lines++] = what;
    if (r->lines == BATCH_LINES)
        flush_batch(r);
}


static payi_code ingest_jhu(run *r, const buf *text, payi_err *err)
{
    csv_reader *csv = csv_open_mem(text->data, text->len, r->file, NULL);
    covid_jhu *j;
    payi_code rc = covid_jhu_read(&j, csv, strstr(r->file, "death") ? COVID_DEATHS : COVID_CONFIRMED, 0, err);
    csv_close(csv);
    if (rc != PAYI_OK)
        return rc;
    r->total = covid_jhu_ncountries(j) * covid_jhu_ndays(j);
    covid_point pt;
    while (covid_jhu_next(j, &pt)) {
        buf_puts(&r->body, "{\"country\":");
        json_put_string(&r->body, pt.country, strlen(pt.country));
        buf_puts(&r->body, ",\"day\":");
        put_day(&r->body, pt.day);
        buf_puts(&r->body, ",\"cumulative\":");
        buf_put_i64(&r->body, pt.cumulative);
        buf_putc(&r->body, '}');
        end_line(r, (origin){.country = pt.country, .day = pt.day});
    }
    flush_batch(r);
    covid_jhu_close(j);
    return PAYI_OK;
}

static void put_count(buf *b, const char *name, covid_count c)
{
    if (c.present)
        buf_printf(b, ",\"%s\":%" PRId64, name, c.value);
}

static void put_opt_string(buf *b, const char *name, const char *v)
{
    if (!v)
        return;
    buf_printf(b, ",\"%s\":", name);
    json_put_string(b, v, strlen(v));
}

static payi_code ingest_who(run *r, const buf *text, payi_err *err)
{
    csv_reader *csv = csv_open_mem(text->data, text->len, r->file, NULL);
    covid_who *w;
    payi_code rc = covid_who_read(&w, csv, 0, err);
    if (rc != PAYI_OK) {
        csv_close(csv);
        return rc;
    }
    covid_who_row row;
    int got;
    while ((got = covid_who_next(w, &row, err)) == 1) {
        buf_puts(&r->body, "{\"day\":");
        put_day(&r->body, row.day);
        put_opt_string(&r->body, "country_code", row.country_code);
        size_t bad;
        if (row.country && json_utf8_valid(row.country, strlen(row.country), &bad))
            put_opt_string(&r->body, "country", row.country);
        put_opt_string(&r->body, "who_region", row.who_region);
        put_count(&r->body, "new_cases", row.new_cases);
        put_count(&r->body, "cumulative_cases", row.cumulative_cases);
        put_count(&r->body, "new_deaths", row.new_deaths);
        put_count(&r->body, "cumulative_deaths", row.cumulative_deaths);
        buf_putc(&r->body, '}');
        end_line(r, (origin){.line = row.line});
    }
    flush_batch(r);
    covid_who_close(w);
    csv_close(csv);
    return got < 0 ? err->code : PAYI_OK;
}

static payi_code ingest_ndjson(run *r, const buf *text)
{
    const char *p = text->data ? text->data : "", *end = p + text->len;
    uint64_t line = 0;
    for (const char *q = p; q < end; q++)
        r->total += *q == '\n';
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        if (le > p) {
            buf_put(&r->body, p, (size_t)(le - p));
            end_line(r, (origin){.line = line});
        }
        p = nl ? nl + 1 : end;
    }
    flush_batch(r);
    return PAYI_OK;
}

payi_code ingest_load_jhu(const char *path, covid_kind kind, covid_jhu **out, payi_err *err)
{
    buf text = BUF_INIT;
    payi_code rc = read_whole(path, &text, err);
    if (rc == PAYI_OK) {
        csv_reader *csv = csv_open_mem(text.data ? text.data : "", text.len, path, NULL);
        rc = covid_jhu_read(out, csv, kind, 0, err);
        csv_close(csv);
    }
    buf_release(&text);
    return rc;
}

payi_code ingest_file(cmd_engine *e, const char *command, const char *path, ingest_progress_fn progress, void *ctx,
                      ingest_stats *stats, payi_err *err)
{
    buf text = BUF_INIT;
    payi_code rc = read_whole(path, &text, err);
    run r = {.e = e, .command = command, .file = path, .st = stats, .progress = progress, .pctx = ctx};
    r.what = xcalloc(BATCH_LINES, sizeof *r.what);
    if (rc == PAYI_OK) {
        switch (format_of(path, &text)) {
        case FMT_JHU: rc = ingest_jhu(&r, &text, err); break;
        case FMT_WHO: rc = ingest_who(&r, &text, err); break;
        case FMT_NDJSON: rc = ingest_ndjson(&r, &text); break;
        }
    }
    free(r.what);
    buf_release(&r.body);
    buf_release(&text);
    return rc;
}

/* ------------------------------------------------------------ the verb */

static const char ingest_help[] =
    "usage: payi ingest --spec FILE [--data DIR] [--command NAME] [--durability MODE] [COMMAND=]FILE...\n"
    "\n"
    "Turns the rows of each FILE into commands of the spec and executes them durably, as\n"
    "POST /commands would (the data directory must not be in use by a running server).\n"
    "Formats, told by the file's first line:\n"
    "  JHU CSSE time series   one command per country and day: {\"country\",\"day\",\"cumulative\"}\n"
    "                         (a country's provinces summed; ships and Olympics left out)\n"
    "  WHO COVID-19 data      one command per row: {\"day\",\"country_code\",\"country\",\"who_region\",\n"
    "                         \"new_cases\",\"cumulative_cases\",\"new_deaths\",\"cumulative_deaths\"}\n"
    "  NDJSON                 each line is the command's fields\n"
    "A FILE ending in .gz is read through gzip -dc.  COMMAND=FILE names the command for that\n"
    "file; --command NAME for the others.  Progress on stderr; exit 1 when a command failed.\n"
    "\n"
    "  payi ingest --spec examples/covid/covid.payi \\\n"
    "      ReportCases=time_series_covid19_confirmed_global.csv \\\n"
    "      ReportDeaths=time_series_covid19_deaths_global.csv\n";

typedef struct progress {
    bool tty;
    double start, last;
} progress;

static void show_progress(void *ctx, const char *file, uint64_t done, uint64_t total)
{
    progress *p = ctx;
    double t = time_mono_s();
    if (t - p->last < (p->tty ? 0.2 : 5.0) && done < total)
        return;
    p->last = t;
    fprintf(stderr, "%spayi ingest: %s: %" PRIu64 " / %" PRIu64 " rows (%.0f%%)%s", p->tty ? "\r" : "", file, done,
            total, total ? 100.0 * (double)done / (double)total : 100.0, p->tty ? "\033[K" : "\n");
}

enum { OPT_SPEC = 1200, OPT_DATA, OPT_COMMAND, OPT_DURABILITY, OPT_HELP };

int ingest_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"spec", required_argument, NULL, OPT_SPEC},       {"data", required_argument, NULL, OPT_DATA},
        {"command", required_argument, NULL, OPT_COMMAND}, {"durability", required_argument, NULL, OPT_DURABILITY},
        {"help", no_argument, NULL, OPT_HELP},             {0, 0, 0, 0}};
    const char *spec_path = NULL, *dir = CLI_DEFAULT_DATA, *command = NULL;
    log_options lo;
    log_options_default(&lo);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_HELP: fputs(ingest_help, stdout); return 0;
        case OPT_SPEC: spec_path = optarg; break;
        case OPT_DATA: dir = optarg; break;
        case OPT_COMMAND: command = optarg; break;
        case OPT_DURABILITY:
            if (!log_durability_parse(optarg, &lo.durability)) {
                fprintf(stderr, "payi ingest: --durability must be fsync, interval or none\n");
                return 2;
            }
            break;
        default: fprintf(stderr, "payi ingest: unknown option (see 'payi ingest --help')\n"); return 2;
        }
    }
    if (!spec_path || optind == argc) {
        fprintf(stderr, "payi ingest: give --spec FILE and at least one FILE (see 'payi ingest --help')\n");
        return 2;
    }
    payi_err err;
    payi_spec *spec = NULL;
    if (spec_load(spec_path, &spec, &err) != PAYI_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    /* Every file names a command the spec has, before anything is opened. */
    for (int i = optind; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *name = eq ? argv[i] : command;
        size_t len = eq ? (size_t)(eq - argv[i]) : name ? strlen(name) : 0;
        if (!name || spec_find_command(spec, name, len) < 0) {
            fprintf(stderr, name ? "payi ingest: %s: the spec has no command \"%.*s\"\n"
                                 : "payi ingest: %s: no command: write COMMAND=FILE or give --command%.*s\n",
                    eq ? eq + 1 : argv[i], (int)len, name ? name : "");
            spec_free(spec);
            return 2;
        }
    }
    cli_warn_durability(&lo);
    payi_log *log = NULL;
    registry *reg = registry_new();
    cmd_engine *e = NULL;
    payi_code rc = log_open(&log, dir, &lo, &err);
    if (rc == PAYI_OK)
        rc = registry_refresh(reg, log, &err);
    for (uint32_t k = 0; rc == PAYI_OK && k < spec->nevents; k++)
        rc = registry_register(reg, log, spec->events[k], &err);
    if (rc == PAYI_OK)
        rc = cmd_open(&e, log, spec, reg, NULL, &err);
    ingest_stats st = {0};
    progress p = {.tty = isatty(2), .start = time_mono_s()};
    for (int i = optind; rc == PAYI_OK && i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - argv[i]) : (int)strlen(command), eq ? argv[i] : command);
        rc = ingest_file(e, name, eq ? eq + 1 : argv[i], show_progress, &p, &st, &err);
    }
    if (rc != PAYI_OK)
        cli_report(&err, 0);
    else
        fprintf(stderr,
                "payi ingest: %" PRIu64 " commands in %.2f s: %" PRIu64 " appended %" PRIu64 " events, %" PRIu64
                " changed nothing (already ingested), %" PRIu64 " failed\n",
                st.commands, time_mono_s() - p.start, st.appended, st.events, st.unchanged, st.failed);
    cmd_close(e);
    registry_free(reg);
    if (log)
        log_close(log);
    spec_free(spec);
    return rc != PAYI_OK || st.failed ? 1 : 0;
}
