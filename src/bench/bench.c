/* bench.c — payi bench append: the log's own append rate, in process;
 * payi bench reopen: time to open a big log; payi bench http: runs the
 * repository's bench/http.sh (HTTP API against its peers) on this binary.
 *
 * payi bench append:
 *
 * (a) batched: one producer submits --batch events at a time as atomic
 *     appends of --per-append events to one stream each (default 100: the
 *     same shape as the 100-row INSERT transaction PostgreSQL is measured
 *     with), keeping two submissions in flight so that the writer always has
 *     the next group ready while one is being synced.
 * (b) concurrent: N threads each append one event and wait for its
 *     acknowledgement before the next; latency is measured per append.
 * Durability is fsync unless told otherwise; every figure is of durable appends. */
#include "bench/bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/timefmt.h"
#include "bench/benchviews.h"
#include "cli/cli.h"
#include "log/log.h"

#define PAYLOAD_BYTES 100

typedef struct bench_cfg {
    const char *dir;
    double seconds;
    uint32_t batch;
    uint32_t per_append;
    log_durability durability;
    bool json;
    bool skip_batched, skip_concurrent;
} bench_cfg;

static char payload[PAYLOAD_BYTES + 1];

/* A JSON object of exactly PAYLOAD_BYTES bytes. */
static void make_payload(void)
{
    const char *head = "{\"country\":\"CIV\",\"cases\":12345,\"note\":\"";
    size_t h = strlen(head);
    memcpy(payload, head, h);
    memset(payload + h, 'x', PAYLOAD_BYTES - h - 2);
    payload[PAYLOAD_BYTES - 2] = '"';
    payload[PAYLOAD_BYTES - 1] = '}';
    payload[PAYLOAD_BYTES] = '\0';
}

static void fill_append(log_append *a, log_event_in *e, char *stream, int stream_len)
{
    memset(e, 0, sizeof *e);
    e->type = "CasesReported";
    e->type_len = 13;
    e->data = payload;
    e->data_len = PAYLOAD_BYTES;
    memset(a, 0, sizeof *a);
    a->stream = stream;
    a->stream_len = (uint32_t)stream_len;
    a->expected = LOG_EXPECT_ANY;
    a->events = e;
    a->nevents = 1;
}

typedef struct batched_result {
    uint64_t events;
    double seconds;
    uint64_t bytes;
} batched_result;

enum { NSTREAMS = 1000 };

/* One producer of the batched phase: its own buffers, streams offset by id
 * so that producers write to different streams. */
typedef struct producer {
    payi_log *log;
    const bench_cfg *cfg;
    int id;
    int64_t deadline;
    char (*streams)[32];
    const int *lens;
    int status;
    pthread_t th;
} producer;

static void *producer_main(void *arg)
{
    producer *p = arg;
    uint32_t per = p->cfg->per_append, napps = p->cfg->batch / per;
    log_append *apps[2];
    log_event_in *evs[2];
    for (int k = 0; k < 2; k++) {
        apps[k] = xmalloc(napps * sizeof **apps);
        evs[k] = xmalloc((size_t)napps * per * sizeof **evs);
    }
    log_submission *inflight[2] = {NULL, NULL};
    uint64_t submitted = (uint64_t)p->id * 131;
    int k = 0;
    while (time_mono_ns() < p->deadline) {
        if (inflight[k] && log_wait(p->log, inflight[k]) != PAYI_OK)
            p->status = 1;
        for (uint32_t i = 0; i < napps; i++) {
            uint64_t s = (submitted + i) % NSTREAMS;
            log_event_in *e = &evs[k][(size_t)i * per];
            for (uint32_t j = 0; j < per; j++)
                fill_append(&apps[k][i], &e[j], p->streams[s], p->lens[s]);
            apps[k][i].events = e;
            apps[k][i].nevents = per;
        }
        inflight[k] = log_submit(p->log, apps[k], napps, false);
        submitted += napps;
        k ^= 1;
    }
    for (int j = 0; j < 2; j++)
        if (inflight[j] && log_wait(p->log, inflight[j]) != PAYI_OK)
            p->status = 1;
    for (int j = 0; j < 2; j++) {
        free(apps[j]);
        free(evs[j]);
    }
    return NULL;
}

/* The batched phase with n producers, each keeping two submissions in flight. */
static int run_batched(payi_log *log, const bench_cfg *cfg, int n, batched_result *res)
{
    char(*streams)[32] = xmalloc(NSTREAMS * sizeof *streams);
    int *lens = xmalloc(NSTREAMS * sizeof *lens);
    for (int i = 0; i < NSTREAMS; i++)   /* names made once: the producer's cost is not the log's */
        lens[i] = snprintf(streams[i], 32, "device-%d", i);
    producer *ps = xcalloc((size_t)n, sizeof *ps);
    log_stats before, after;
    log_get_stats(log, &before);
    int64_t t0 = time_mono_ns();
    for (int i = 0; i < n; i++) {
        ps[i] = (producer){.log = log, .cfg = cfg, .id = i, .deadline = t0 + (int64_t)(cfg->seconds * 1e9),
                           .streams = streams, .lens = lens};
        if (pthread_create(&ps[i].th, NULL, producer_main, &ps[i]) != 0) {
            fprintf(stderr, "payi bench: cannot start thread\n");
            exit(1);
        }
    }
    int status = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(ps[i].th, NULL);
        status |= ps[i].status;
    }
    res->seconds = (double)(time_mono_ns() - t0) / 1e9;
    log_get_stats(log, &after);
    res->events = after.events - before.events;
    res->bytes = after.bytes - before.bytes;
    free(ps);
    free(streams);
    free(lens);
    return status;
}

typedef struct worker {
    payi_log *log;
    int id;
    int64_t deadline;
    uint64_t *lat_ns;
    size_t n, cap;
    int failed;
    pthread_t th;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    char stream[32];
    int len = snprintf(stream, sizeof stream, "appender-%d", w->id);
    while (time_mono_ns() < w->deadline) {
        log_append a;
        log_event_in e;
        fill_append(&a, &e, stream, len);
        int64_t t = time_mono_ns();
        if (log_append_one(w->log, &a) != PAYI_OK) {
            w->failed = 1;
            break;
        }
        w->lat_ns = xgrow(w->lat_ns, &w->cap, w->n + 1, sizeof *w->lat_ns);
        w->lat_ns[w->n++] = (uint64_t)(time_mono_ns() - t);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1000.0;
}

typedef struct conc_result {
    int appenders;
    uint64_t events;
    double seconds, p50, p99, p999;
} conc_result;

static int run_concurrent(payi_log *log, int n, double seconds, conc_result *res)
{
    worker *ws = xcalloc((size_t)n, sizeof *ws);
    int64_t t0 = time_mono_ns();
    for (int i = 0; i < n; i++) {
        ws[i] = (worker){.log = log, .id = i, .deadline = t0 + (int64_t)(seconds * 1e9)};
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "payi bench: cannot start thread\n");
            exit(1);
        }
    }
    size_t total = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(ws[i].th, NULL);
        total += ws[i].n;
        failed |= ws[i].failed;
    }
    res->seconds = (double)(time_mono_ns() - t0) / 1e9;
    uint64_t *all = xmalloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(all + k, ws[i].lat_ns, ws[i].n * sizeof *all);
        k += ws[i].n;
        free(ws[i].lat_ns);
    }
    qsort(all, total, sizeof *all, cmp_u64);
    res->appenders = n;
    res->events = total;
    res->p50 = pct_us(all, total, 0.50);
    res->p99 = pct_us(all, total, 0.99);
    res->p999 = pct_us(all, total, 0.999);
    free(all);
    free(ws);
    return failed;
}

static const char bench_help[] =
    "usage: payi bench append [--data DIR] [--seconds S] [--batch N] [--per-append N]\n"
    "                         [--durability MODE] [--only batched|concurrent] [--json]\n"
    "\n"
    "Measures durable appends of 100-byte events in this process: (a) one producer (then eight) with\n"
    "submissions of --batch events (default 10000) as atomic appends of --per-append events to one\n"
    "stream (default 100, like a 100-row INSERT transaction), (b) 1, 8 and 64 concurrent appenders each\n"
    "waiting for its acknowledgement (latency p50/p99/p99.9).  Each phase runs --seconds\n"
    "(default 4).  The data directory must not exist or be empty (default: a new one under\n"
    "$TMPDIR); it is left in place.  bench/append.sh runs this beside the disk, PostgreSQL and Redis.\n";

static int bench_append(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'}, {"seconds", required_argument, NULL, 's'},
                                         {"batch", required_argument, NULL, 'b'}, {"durability", required_argument, NULL, 'D'},
                                         {"json", no_argument, NULL, 'j'},        {"help", no_argument, NULL, 'h'},
                                         {"only", required_argument, NULL, 'o'},
                                         {"per-append", required_argument, NULL, 'p'},
                                         {0, 0, 0, 0}};
    bench_cfg cfg = {.dir = NULL, .seconds = 4, .batch = 10000, .per_append = 100, .durability = LOG_DURABLE_FSYNC};
    int c;
    uint64_t v;
    char tmpl[512];
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': cfg.dir = optarg; break;
        case 's':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 600) {
                fprintf(stderr, "payi bench: --seconds must be 1..600\n");
                return 2;
            }
            cfg.seconds = (double)v;
            break;
        case 'b':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 100000) {
                fprintf(stderr, "payi bench: --batch must be 1..100000\n");
                return 2;
            }
            cfg.batch = (uint32_t)v;
            break;
        case 'D':
            if (!log_durability_parse(optarg, &cfg.durability)) {
                fprintf(stderr, "payi bench: --durability must be fsync, interval or none\n");
                return 2;
            }
            break;
        case 'p':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 10000) {
                fprintf(stderr, "payi bench: --per-append must be 1..10000\n");
                return 2;
            }
            cfg.per_append = (uint32_t)v;
            break;
        case 'j': cfg.json = true; break;
        case 'o':
            cfg.skip_batched = strcmp(optarg, "batched") != 0;
            cfg.skip_concurrent = strcmp(optarg, "concurrent") != 0;
            if (cfg.skip_batched && cfg.skip_concurrent) {
                fprintf(stderr, "payi bench: --only must be batched or concurrent\n");
                return 2;
            }
            break;
        case 'h': fputs(bench_help, stdout); return 0;
        default: fputs(bench_help, stderr); return 2;
        }
    }
    if (!cfg.dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/payi-bench-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(tmpl)) {
            perror("payi bench: mkdtemp");
            return 1;
        }
        cfg.dir = tmpl;
    }
    log_options lo;
    log_options_default(&lo);
    lo.durability = cfg.durability;
    cli_warn_durability(&lo);
    if (cfg.batch % cfg.per_append) {
        fprintf(stderr, "payi bench: --batch must be a multiple of --per-append\n");
        return 2;
    }
    make_payload();
    payi_log *log;
    payi_err err;
    if (log_open(&log, cfg.dir, &lo, &err) != PAYI_OK) {
        cli_report(&err, 0);
        return 1;
    }
    batched_result br = {0, 1, 0}, br8 = {0, 1, 0};
    int failed = cfg.skip_batched ? 0 : run_batched(log, &cfg, 1, &br);
    if (!cfg.skip_batched)
        failed |= run_batched(log, &cfg, 8, &br8);
    static const int counts[] = {1, 8, 64};
    conc_result cr[3] = {{1, 0, 1, 0, 0, 0}, {8, 0, 1, 0, 0, 0}, {64, 0, 1, 0, 0, 0}};
    for (int i = 0; i < 3 && !cfg.skip_concurrent; i++)
        failed |= run_concurrent(log, counts[i], cfg.seconds, &cr[i]);
    log_stats st;
    log_get_stats(log, &st);
    log_close(log);
    if (failed) {
        fprintf(stderr, "payi bench: some appends failed\n");
        return 1;
    }
    if (cfg.json) {
        printf("{\"bench\":\"append\",\"payload_bytes\":%d,\"durability\":\"%s\",\"data_dir\":\"%s\","
               "\"batched\":{\"events\":%" PRIu64 ",\"seconds\":%.3f,\"events_per_s\":%.0f,\"bytes_per_s\":%.0f,"
               "\"batch_events\":%u,\"events_per_append\":%u},"
               "\"batched_8\":{\"producers\":8,\"events\":%" PRIu64 ",\"seconds\":%.3f,\"events_per_s\":%.0f,"
               "\"bytes_per_s\":%.0f},\"concurrent\":[",
               PAYLOAD_BYTES, log_durability_name(cfg.durability), cfg.dir, br.events, br.seconds,
               (double)br.events / br.seconds, (double)br.bytes / br.seconds, cfg.batch, cfg.per_append, br8.events,
               br8.seconds, (double)br8.events / br8.seconds, (double)br8.bytes / br8.seconds);
        for (int i = 0; i < 3; i++)
            printf("%s{\"appenders\":%d,\"events\":%" PRIu64 ",\"seconds\":%.3f,\"events_per_s\":%.0f,"
                   "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}",
                   i ? "," : "", cr[i].appenders, cr[i].events, cr[i].seconds, (double)cr[i].events / cr[i].seconds,
                   cr[i].p50, cr[i].p99, cr[i].p999);
        printf("],\"fsyncs\":%" PRIu64 ",\"batches\":%" PRIu64 "}\n", st.fsyncs, st.batches_written);
    } else {
        printf("batched (%u events per submission, %u per atomic append): %" PRIu64
               " events in %.2f s = %.0f events/s, %.1f MB/s written\n",
               cfg.batch, cfg.per_append, br.events, br.seconds, (double)br.events / br.seconds,
               (double)br.bytes / br.seconds / 1e6);
        printf("batched, 8 producers: %.0f events/s, %.1f MB/s written\n", (double)br8.events / br8.seconds,
               (double)br8.bytes / br8.seconds / 1e6);
        for (int i = 0; i < 3; i++)
            printf("%2d appenders: %.0f events/s, ack latency p50 %.0f us, p99 %.0f us, p99.9 %.0f us\n",
                   cr[i].appenders, (double)cr[i].events / cr[i].seconds, cr[i].p50, cr[i].p99, cr[i].p999);
        printf("fsyncs %" PRIu64 ", batches %" PRIu64 ", data in %s\n", st.fsyncs, st.batches_written, cfg.dir);
    }
    return 0;
}

/* ---- payi bench reopen: time to open a big log, ready for appends ---- */

static const char reopen_help[] =
    "usage: payi bench reopen [--data DIR] [--events N] [--client-ids] [--json]\n"
    "\n"
    "Writes N events (default 10,000,000; 100-byte payloads over 100,000 streams; durability\n"
    "none to build quickly) unless DIR already holds a log, closes it, then times log_open until\n"
    "the log is ready to append, five times.  --client-ids gives every event a client id, so the\n"
    "idempotency index is loaded too (in the background: reads and appends without ids do not\n"
    "wait for it; the time of the first append carrying an id is reported separately).  The\n"
    "page cache is warm unless you drop it yourself; the figures are medians of the five.\n";

static void fill_log(payi_log *log, uint64_t n, bool client_ids)
{
    enum { B = 5000 };
    log_append *apps = xmalloc(B * sizeof *apps);
    log_event_in *evs = xmalloc(B * sizeof *evs);
    char(*names)[32] = xmalloc(B * sizeof *names);
    for (uint64_t done = 0; done < n;) {
        uint32_t k = (uint32_t)(n - done < B ? n - done : B);
        for (uint32_t i = 0; i < k; i++) {
            int len = snprintf(names[i], 32, "stream-%" PRIu64, (done + i) % 100000);
            fill_append(&apps[i], &evs[i], names[i], len);
            if (client_ids) {
                uuid_generate(&evs[i].id);
                evs[i].has_id = true;
            }
        }
        if (log_wait(log, log_submit(log, apps, k, false)) != PAYI_OK) {
            fprintf(stderr, "payi bench: append failed while filling\n");
            exit(1);
        }
        done += k;
        if (isatty(STDERR_FILENO) && done % 1000000 == 0)
            fprintf(stderr, "\rfilling: %" PRIu64 " / %" PRIu64, done, n);
    }
    if (isatty(STDERR_FILENO))
        fputc('\n', stderr);
    free(apps);
    free(evs);
    free(names);
}

static int bench_reopen(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'}, {"events", required_argument, NULL, 'n'},
                                         {"client-ids", no_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},       {0, 0, 0, 0}};
    const char *dir = NULL;
    uint64_t n = 10000000;
    bool client_ids = false, json = false;
    char tmpl[512];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'n':
            if (!cli_parse_u64(optarg, &n) || n == 0) {
                fprintf(stderr, "payi bench: --events must be a number > 0\n");
                return 2;
            }
            break;
        case 'c': client_ids = true; break;
        case 'j': json = true; break;
        case 'h': fputs(reopen_help, stdout); return 0;
        default: fputs(reopen_help, stderr); return 2;
        }
    }
    if (!dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/payi-reopen-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(tmpl)) {
            perror("payi bench: mkdtemp");
            return 1;
        }
        dir = tmpl;
    }
    make_payload();
    log_options lo;
    log_options_default(&lo);
    lo.durability = LOG_DURABLE_NONE;
    payi_log *log;
    payi_err err;
    if (log_open(&log, dir, &lo, &err) != PAYI_OK) {
        cli_report(&err, 0);
        return 1;
    }
    uint64_t have = log_head(log);
    if (have == 0)
        fill_log(log, n, client_ids);
    log_stats st;
    log_get_stats(log, &st);
    log_close(log);
    lo.durability = LOG_DURABLE_FSYNC;
    uint64_t ns[5], id_ns[5];
    for (int i = 0; i < 5; i++) {
        int64_t t0 = time_mono_ns();
        if (log_open(&log, dir, &lo, &err) != PAYI_OK) {
            cli_report(&err, 0);
            return 1;
        }
        ns[i] = (uint64_t)(time_mono_ns() - t0);
        /* An append with a client id waits for the id table: time to full readiness. */
        log_append a;
        log_event_in e;
        fill_append(&a, &e, "reopen-probe", 12);
        uuid_generate(&e.id);
        e.has_id = true;
        if (log_append_one(log, &a) != PAYI_OK) {
            cli_report(&a.err, 0);
            return 1;
        }
        id_ns[i] = (uint64_t)(time_mono_ns() - t0);
        log_close(log);
    }
    qsort(ns, 5, sizeof ns[0], cmp_u64);
    qsort(id_ns, 5, sizeof id_ns[0], cmp_u64);
    if (json)
        printf("{\"bench\":\"reopen\",\"events\":%" PRIu64 ",\"segments\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"client_ids\":%s,\"open_ms_median\":%.1f,\"open_ms_max\":%.1f,"
               "\"first_id_append_ms_median\":%.1f}\n",
               st.events, st.segments, st.bytes, client_ids ? "true" : "false", (double)ns[2] / 1e6, (double)ns[4] / 1e6,
               (double)id_ns[2] / 1e6);
    else
        printf("reopen: %" PRIu64 " events, %" PRIu64 " segments, %.1f GB%s: ready in %.1f ms (median of 5, max %.1f "
               "ms); first append carrying a client id done %.1f ms after open began\n",
               st.events, st.segments, (double)st.bytes / 1e9, client_ids ? ", every event with a client id" : "",
               (double)ns[2] / 1e6, (double)ns[4] / 1e6, (double)id_ns[2] / 1e6);
    return 0;
}

/* ---- payi bench http: the repository's bench/http.sh, on this binary ---- */

static const char http_help[] =
    "usage: payi bench http [--json] [--seconds S] [--perf]\n"
    "\n"
    "Runs the repository's bench/http.sh on this binary (PAYI_BIN is set to it): durable commands\n"
    "(POST /commands/Count of bench/specs/counter.payi, one per request and NDJSON batches) and raw\n"
    "appends under wrk -c64, beside a bare libmicrohttpd server, the JSON parser's parse-only rate\n"
    "and PostgreSQL doing the same command in PL/pgSQL under pgbench; checks the targets and writes\n"
    "bench/results/http.md and http.json.  Prints the markdown report, or the JSON with --json.\n"
    "--seconds sets each run's length (BENCH_SECONDS, default 10; the whole run is about 2 minutes);\n"
    "--perf profiles the server with perf during the one-command-per-request run (BENCH_PERF=1).\n"
    "Needs wrk, pgbench (postgresql), libmicrohttpd-dev, curl (scripts/deps.sh bench) and root\n"
    "(PostgreSQL runs as the postgres user).  The script is found at ../bench/http.sh from this\n"
    "binary's directory (build/payi), or at $PAYI_REPO/bench/http.sh.\n";

static int bench_http(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"perf", no_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    bool json = false;
    int c;
    uint64_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 's':
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 600) {
                fprintf(stderr, "payi bench: --seconds must be 1..600\n");
                return 2;
            }
            setenv("BENCH_SECONDS", optarg, 1);
            break;
        case 'p': setenv("BENCH_PERF", "1", 1); break;
        case 'h': fputs(http_help, stdout); return 0;
        default: fputs(http_help, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "payi bench http: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "payi bench http: cannot read /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    self[n] = '\0';
    char script[PATH_MAX + 32];
    const char *repo = getenv("PAYI_REPO");
    if (repo && *repo) {
        snprintf(script, sizeof script, "%s/bench/http.sh", repo);
    } else {
        char *slash = strrchr(self, '/');
        int dir_len = slash ? (int)(slash - self) : 0;
        snprintf(script, sizeof script, "%.*s/../bench/http.sh", dir_len, self);
    }
    if (access(script, R_OK) != 0) {
        fprintf(stderr,
                "payi bench http: cannot find the benchmark script: %s: %s\n"
                "  it is looked for at ../bench/http.sh from the binary (%s), or at $PAYI_REPO/bench/http.sh;\n"
                "  run payi from the repository's build directory or set PAYI_REPO to the repository\n",
                script, strerror(errno), self);
        return 1;
    }
    char resolved[PATH_MAX];
    if (realpath(script, resolved))
        snprintf(script, sizeof script, "%s", resolved);
    if (setenv("PAYI_BIN", self, 1) != 0) {
        perror("payi bench http: setenv");
        return 1;
    }
    char *args[] = {"bash", script, json ? "--json" : NULL, NULL};
    fflush(NULL);
    execv("/bin/bash", args);
    fprintf(stderr, "payi bench http: cannot run /bin/bash %s: %s\n", script, strerror(errno));
    return 1;
}

int bench_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fputs("payi bench append | reopen | http | views | views-latency   (payi bench NAME --help)\n\n", f);
        fputs(bench_help, f);
        fputs("\n", f);
        fputs(http_help, f);
        fputs("\n", f);
        fputs("payi bench views: view maintenance on Nexmark (bench/views.sh); payi bench views-latency:\n"
              "command acknowledgement -> change on /views/{name}/changes (see their --help).\n", f);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "append"))
        return bench_append(argc - 1, argv + 1);
    if (!strcmp(argv[1], "reopen"))
        return bench_reopen(argc - 1, argv + 1);
    if (!strcmp(argv[1], "http"))
        return bench_http(argc - 1, argv + 1);
    if (!strcmp(argv[1], "views"))
        return bench_views(argc - 1, argv + 1);
    if (!strcmp(argv[1], "views-latency"))
        return bench_views_latency(argc - 1, argv + 1);
    fprintf(stderr, "payi bench: unknown benchmark '%s' (known: append, reopen, http, views, views-latency)\n",
            argv[1]);
    return 2;
}
