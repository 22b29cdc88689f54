/* demo.c — `payi demo`: `payi serve` with examples/covid/covid.payi, plus a
 * feeder thread that replays the real history (the JHU CSSE files shipped
 * in examples/covid/data) as the monitoring saw it: every country's
 * cumulative cases and deaths of one day, then the next day, at a pace of
 * --pace days per second (default 1), so that the dashboard moves as the
 * real monitoring did; --fast feeds everything at once and reports how long
 * the ingest, the views and the generators took.
 *
 * Each day is one NDJSON batch of ReportCases then one of ReportDeaths
 * commands through the command engine (the same path as POST /commands).
 * A day already in the log (a restarted demo) emits nothing and is not
 * waited for, so a restart catches up at once and goes on at the pace.
 */
#include "demo/demo.h"

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/timefmt.h"
#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "ingest/covid.h"
#include "ingest/ingest.h"
#include "serve/serve.h"

typedef struct feeder {
    char app[PATH_MAX];          /* examples/covid */
    char cases_path[PATH_MAX + 64], deaths_path[PATH_MAX + 64];
    double pace;                 /* days per second; 0: --fast */
    _Atomic bool stop;
    covid_jhu *cases, *deaths;
} feeder;

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* The commands of one day for every country of j: events appended. */
static uint64_t feed_day(cmd_engine *e, covid_jhu *j, const char *command, int64_t day)
{
    buf body = BUF_INIT, out = BUF_INIT;
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(day, &y, &m, &d);
    for (size_t i = 0; i < covid_jhu_ncountries(j); i++) {
        const char *country = covid_jhu_country(j, i);
        buf_puts(&body, "{\"country\":");
        json_put_string(&body, country, strlen(country));
        buf_printf(&body, ",\"day\":\"%04lld-%02u-%02u\",\"cumulative\":%" PRId64 "}\n", (long long)y, m, d,
                   covid_jhu_value(j, i, day));
    }
    size_t failed = cmd_execute_ndjson(e, command, strlen(command), body.data, body.len, &out);
    uint64_t events = 0;
    for (const char *p = out.data; p && (p = strstr(p, "\"events\":")) != NULL; p += 9)
        events += strtoull(p + 9, NULL, 10);
    if (failed)
        fprintf(stderr, "payi demo: %zu %s commands of %04lld-%02u-%02u failed: %.300s\n", failed, command,
                (long long)y, m, d, out.data);
    buf_release(&body);
    buf_release(&out);
    return events;
}

/* Until every view and generator has caught up with the log's head. */
static void wait_caught_up(const serve_parts *p, feeder *f)
{
    for (;;) {
        uint64_t head = log_head(p->log);
        bool behind = false;
        for (uint32_t i = 0; i < gen_engine_count(p->gens); i++) {
            gen_status st;
            gen_engine_status(p->gens, i, &st);
            behind |= st.position < head || st.looking_ahead;
        }
        head = log_head(p->log);   /* the generators' own events too */
        for (uint32_t i = 0; i < view_engine_count(p->views); i++) {
            view_status st;
            view_engine_status(p->views, i, &st);
            behind |= st.position < head;
        }
        if (!behind || atomic_load(&f->stop))
            return;
        sleep_s(0.01);
    }
}

static void feeder_start(void *ctx, const serve_parts *p)
{
    feeder *f = ctx;
    int64_t first = covid_jhu_first_day(f->cases), ndays = (int64_t)covid_jhu_ndays(f->cases);
    double t0 = time_mono_s();
    uint64_t events = 0;
    fprintf(stderr, "payi demo: dashboard on %s/ ; feeding %" PRId64 " days of JHU CSSE data%s\n", p->url, ndays,
            f->pace > 0 ? "" : " at full speed");
    if (f->pace <= 0) {   /* --fast: each file as payi ingest reads it, a country at a time */
        ingest_stats st = {0};
        payi_err err;
        if (ingest_file(p->cmd, "ReportCases", f->cases_path, NULL, NULL, &st, &err) != PAYI_OK ||
            ingest_file(p->cmd, "ReportDeaths", f->deaths_path, NULL, NULL, &st, &err) != PAYI_OK)
            fprintf(stderr, "payi demo: %s\n", err.msg);
        events = st.events;
        ndays = 0;   /* the loop below has nothing left to do */
    }
    for (int64_t day = first; day < first + ndays && !atomic_load(&f->stop); day++) {
        double start = time_mono_s();
        uint64_t n = feed_day(p->cmd, f->cases, "ReportCases", day);
        n += feed_day(p->cmd, f->deaths, "ReportDeaths", day);
        events += n;
        if ((day - first) % 30 == 0 && f->pace > 0) {
            int64_t y;
            unsigned m, d;
            expr_civil_from_days(day, &y, &m, &d);
            fprintf(stderr, "payi demo: %04lld-%02u-%02u (day %" PRId64 " of %" PRId64 ")\n", (long long)y, m, d,
                    day - first + 1, ndays);
        }
        if (f->pace > 0 && n)   /* a day already in the log is not waited for */
            sleep_s(1.0 / f->pace - (time_mono_s() - start));
    }
    double fed = time_mono_s() - t0;
    wait_caught_up(p, f);
    if (!atomic_load(&f->stop))
        fprintf(stderr, "payi demo: the whole history is in: %" PRIu64 " events from %zu days in %.2f s; views and "
                "generators up to date after %.2f s\n", events, covid_jhu_ndays(f->cases), fed, time_mono_s() - t0);
}

static void feeder_stop(void *ctx) { atomic_store(&((feeder *)ctx)->stop, true); }

static const char demo_help[] =
    "usage: payi demo [--data DIR] [--listen HOST:PORT] [--pace DAYS_PER_SECOND | --fast] [--app DIR]\n"
    "\n"
    "The COVID-19 monitoring app of the Payi paper on the real JHU CSSE data: serves\n"
    "examples/covid/covid.payi with its dashboard on http://HOST:PORT/ and feeds the history in,\n"
    "one day of every country's reports at a time, as the monitoring saw it.  Stops on Ctrl-C;\n"
    "run again to go on (days already in the log are skipped at once).\n"
    "\n"
    "  --data DIR      data directory (default ./payi-demo-data)\n"
    "  --listen ADDR   default 127.0.0.1:8080\n"
    "  --pace N        days of data per second (default 1)\n"
    "  --fast          everything at full speed, then report the time taken\n"
    "  --app DIR       the app directory (default: examples/covid of this build's repository)\n";

/* examples/covid of the repository this binary was built in. */
static bool find_app(char *out, size_t size)
{
    const char *env = getenv("PAYI_REPO");
    char exe[PATH_MAX];
    if (env) {
        if ((size_t)snprintf(out, size, "%s/examples/covid", env) >= size)
            return false;
        return access(out, R_OK) == 0;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = 0;
    if ((size_t)snprintf(out, size, "%s/../examples/covid", exe) >= size)
        return false;
    return access(out, R_OK) == 0;
}

enum { OPT_DATA = 1300, OPT_LISTEN, OPT_PACE, OPT_FAST, OPT_APP, OPT_HELP };

int demo_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA}, {"listen", required_argument, NULL, OPT_LISTEN},
        {"pace", required_argument, NULL, OPT_PACE}, {"fast", no_argument, NULL, OPT_FAST},
        {"app", required_argument, NULL, OPT_APP},   {"help", no_argument, NULL, OPT_HELP},
        {0, 0, 0, 0}};
    const char *data = "payi-demo-data", *listen_at = "127.0.0.1:8080", *app = NULL;
    static feeder f;
    f.pace = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case OPT_HELP: fputs(demo_help, stdout); return 0;
        case OPT_DATA: data = optarg; break;
        case OPT_LISTEN: listen_at = optarg; break;
        case OPT_APP: app = optarg; break;
        case OPT_FAST: f.pace = 0; break;
        case OPT_PACE:
            f.pace = strtod(optarg, &end);
            if (*end || !(f.pace > 0 && f.pace <= 100000)) {
                fprintf(stderr, "payi demo: --pace must be a number of days per second, above 0\n");
                return 2;
            }
            break;
        default: fprintf(stderr, "payi demo: unknown option (see 'payi demo --help')\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "payi demo: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (app)
        snprintf(f.app, sizeof f.app, "%s", app);
    else if (!find_app(f.app, sizeof f.app)) {
        fprintf(stderr, "payi demo: cannot find examples/covid next to this binary; give --app DIR\n");
        return 1;
    }
    char spec[PATH_MAX + 32];
    char *cases = f.cases_path, *deaths = f.deaths_path;
    snprintf(spec, sizeof spec, "%s/covid.payi", f.app);
    snprintf(cases, sizeof f.cases_path, "%s/data/time_series_covid19_confirmed_global.csv.gz", f.app);
    snprintf(deaths, sizeof f.deaths_path, "%s/data/time_series_covid19_deaths_global.csv.gz", f.app);
    payi_err err;
    if (ingest_load_jhu(cases, COVID_CONFIRMED, &f.cases, &err) != PAYI_OK ||
        ingest_load_jhu(deaths, COVID_DEATHS, &f.deaths, &err) != PAYI_OK) {
        fprintf(stderr, "payi demo: %s\n", err.msg);
        covid_jhu_close(f.cases);
        return 1;
    }
    char *sargv[] = {"serve", "--data", (char *)data, "--spec", spec, "--listen", (char *)listen_at, NULL};
    serve_task task = {feeder_start, feeder_stop, &f};
    int rc = serve_main_with(7, sargv, &task);
    covid_jhu_close(f.cases);
    covid_jhu_close(f.deaths);
    return rc;
}
