/* serve.c — `payi serve`: open the log, start the HTTP server, wait for
 * SIGINT or SIGTERM, stop the server, close the log.
 *
 * Signals: SIGINT and SIGTERM are blocked before any thread starts (threads
 * inherit the mask), and the main thread takes them with sigwait: no handler
 * runs inside a connection thread, and the shutdown runs in ordinary code.
 * Order at stop: the server first (no new appends; every running request ends,
 * each acknowledged append already durable), then log_close, which finishes
 * what was submitted.
 */
#include "serve/serve.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/thread.h"
#include "cli/cli.h"
#include "command/command.h"
#include "event/registry.h"
#include "http/http.h"
#include "log/log.h"
#include "spec/spec.h"
#include "gen/generator.h"
#include "view/view.h"

static const char serve_help[] =
    "usage: payi serve [--data DIR] [--spec FILE] [--store URL] [--listen HOST:PORT]\n"
    "                  [--durability fsync|interval|none]\n"
    "                  [--interval-ms N] [--segment-size SIZE] [--max-event-size SIZE]\n"
    "                  [--max-body SIZE] [--max-connections N] [--idle-timeout SECONDS]\n"
    "                  [--sse-keepalive SECONDS]\n"
    "\n"
    "Serves the event store over HTTP until SIGINT or SIGTERM; then stops cleanly (every\n"
    "acknowledged append is durable).  Prints 'payi: listening on http://HOST:PORT' on stderr\n"
    "once ready.  With --spec, the spec's commands are served and the events it declares are\n"
    "validated on every append; a mistake in the spec is printed as FILE:LINE:COL: MESSAGE\n"
    "and the server does not start.  Routes:\n"
    "  POST /commands/{Name}    the command's fields as JSON -> 201 {\"position\",\"stream\",\"version\",\n"
    "                           \"events\"}; 422 when a rule rejects it; Idempotency-Key header;\n"
    "                           Content-Type application/x-ndjson: one command per line\n"
    "  POST /streams/{stream}   one event {\"type\",\"data\",\"id\"?,\"expected_version\"?,\"meta\"?} or an\n"
    "                           array of them (atomic); Content-Type application/x-ndjson: one\n"
    "                           append per line, answered line by line\n"
    "  GET  /streams/{stream}?from=&limit=&backwards=    events of a stream, by version\n"
    "  GET  /all?from=&limit=&backwards=                 events of the log, by position\n"
    "  GET  /events?from=       Server-Sent Events: history, then live (Last-Event-ID resumes)\n"
    "  GET  /health             200 {\"status\":\"ok\",\"head\":H}; 503 when the log is read-only\n"
    "  GET  /metrics            Prometheus text\n"
    "  GET  /views/{name}?col=value&order=col[.desc]&limit=N&min_position=P\n"
    "                           rows of a view and the position it reflects; min_position waits\n"
    "                           (at most 10 s) until the view has applied that event (read your writes)\n"
    "  GET  /views/{name}/changes  Server-Sent Events: each row as a commit changes it\n"
    "  POST /sql                read-only SQL on the read store: the body (text) or {\"sql\":...}\n"
    "\n"
    "  --data DIR             data directory (default ./payi-data; created if missing)\n"
    "  --spec FILE            the application spec: events, aggregates, commands, views\n"
    "  --store URL            where views land: sqlite:PATH (default sqlite:DIR/views.db) or\n"
    "                         postgresql://USER@HOST:PORT/DB (a libpq URI)\n"
    "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080; port 0: any free port)\n"
    "  --durability MODE      fsync (default), interval or none: as for 'payi append'\n"
    "  --interval-ms N        interval mode: the loss window (default 100)\n"
    "  --segment-size SIZE    roll to a new segment file past SIZE bytes (default 64M)\n"
    "  --max-event-size SIZE  largest event: stream+type+data+meta bytes (default 1M)\n"
    "  --max-body SIZE        largest request body (default 16M): larger ones get 413\n"
    "  --max-connections N    concurrent connections (default 1024)\n"
    "  --http-threads N       threads serving connections (default: one per CPU)\n"
    "  --idle-timeout SECONDS close a connection silent this long (default 30)\n"
    "  --sse-keepalive SECONDS  ': keepalive' on an idle event stream this often (default 15)\n";

enum { OPT_DATA = 1000, OPT_SPEC, OPT_STORE, OPT_LISTEN, OPT_DURABILITY, OPT_INTERVAL, OPT_SEGMENT_SIZE, OPT_MAX_EVENT, OPT_MAX_BODY,
       OPT_MAX_CONN, OPT_THREADS, OPT_IDLE, OPT_KEEPALIVE, OPT_HELP };

typedef struct serve_config {
    const char *dir;
    const char *spec;
    const char *store;
    log_options log;
    http_options http;
} serve_config;

static int usage_error(const char *msg)
{
    fprintf(stderr, "payi serve: %s (see 'payi serve --help')\n", msg);
    return 2;
}

/* A number in [lo, hi], with a k/M/G suffix when sized. */
static bool in_range(const char *arg, bool sized, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return (sized ? cli_parse_size(arg, out) : cli_parse_u64(arg, out)) && *out >= lo && *out <= hi;
}

/* Apply one option; 0 when fine, 2 after a usage message. */
static int apply_option(int opt, const char *arg, serve_config *c)
{
    uint64_t v;
    switch (opt) {
    case OPT_DATA: c->dir = arg; return 0;
    case OPT_SPEC: c->spec = arg; return 0;
    case OPT_STORE:
        if (strncmp(arg, "sqlite:", 7) && strncmp(arg, "postgresql://", 13) && strncmp(arg, "postgres://", 11))
            return usage_error("--store must be sqlite:PATH or postgresql://...");
        c->store = arg;
        return 0;
    case OPT_LISTEN: {
        payi_err err;
        if (http_check_listen(arg, &err) != PAYI_OK)
            return usage_error(err.msg);
        c->http.listen = arg;
        return 0;
    }
    case OPT_DURABILITY:
        return log_durability_parse(arg, &c->log.durability) ? 0 : usage_error("--durability must be fsync, interval or none");
    case OPT_INTERVAL:
        if (!in_range(arg, false, 1, 60000, &v))
            return usage_error("--interval-ms must be 1..60000");
        c->log.interval_ms = (uint32_t)v;
        return 0;
    case OPT_SEGMENT_SIZE:
        if (!in_range(arg, true, 4096, (1ull << 32) - 1, &v))
            return usage_error("--segment-size must be between 4k and 4G-1");
        c->log.segment_size = v;
        return 0;
    case OPT_MAX_EVENT:
        if (!in_range(arg, true, 64, 256u << 20, &v))
            return usage_error("--max-event-size must be between 64 and 256M");
        c->log.max_event_size = (uint32_t)v;
        return 0;
    case OPT_MAX_BODY:
        if (!in_range(arg, true, 1, 1u << 30, &v))
            return usage_error("--max-body must be between 1 and 1G");
        c->http.max_body = v;
        return 0;
    case OPT_MAX_CONN:
        if (!in_range(arg, false, 1, 100000, &v))
            return usage_error("--max-connections must be 1..100000");
        c->http.max_connections = (unsigned)v;
        return 0;
    case OPT_THREADS:
        if (!in_range(arg, false, 1, 64, &v))
            return usage_error("--http-threads must be 1..64");
        c->http.threads = (unsigned)v;
        return 0;
    case OPT_IDLE:
        if (!in_range(arg, false, 1, 86400, &v))
            return usage_error("--idle-timeout must be 1..86400 seconds");
        c->http.idle_timeout_s = (unsigned)v;
        return 0;
    case OPT_KEEPALIVE:
        if (!in_range(arg, false, 1, 3600, &v))
            return usage_error("--sse-keepalive must be 1..3600 seconds");
        c->http.sse_keepalive_ms = (unsigned)v * 1000;
        return 0;
    }
    return usage_error("unknown option");
}

/* -1: go on; else the exit status (help printed, or a usage error). */
static int parse_args(int argc, char **argv, serve_config *c)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"spec", required_argument, NULL, OPT_SPEC},
        {"store", required_argument, NULL, OPT_STORE},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"durability", required_argument, NULL, OPT_DURABILITY},
        {"interval-ms", required_argument, NULL, OPT_INTERVAL},
        {"segment-size", required_argument, NULL, OPT_SEGMENT_SIZE},
        {"max-event-size", required_argument, NULL, OPT_MAX_EVENT},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"max-connections", required_argument, NULL, OPT_MAX_CONN},
        {"idle-timeout", required_argument, NULL, OPT_IDLE},
        {"http-threads", required_argument, NULL, OPT_THREADS},
        {"sse-keepalive", required_argument, NULL, OPT_KEEPALIVE},
        {"help", no_argument, NULL, OPT_HELP},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_HELP) {
            fputs(serve_help, stdout);
            return 0;
        }
        int r = apply_option(opt, optarg, c);
        if (r)
            return r;
    }
    return optind < argc ? usage_error("unexpected argument") : -1;
}

/* Block the stop signals in this thread and every thread started after. */
static bool block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)   /* a client gone mid-answer is an error return, not a death */
        return false;
    return pthread_sigmask(SIG_BLOCK, set, NULL) == 0;
}

/* The parts behind the server, opened in order and closed in reverse. */
typedef struct backend {
    payi_spec *spec;
    payi_log *log;
    registry *reg;
    cmd_engine *cmd;
    view_engine *views;
    gen_engine *gens;
} backend;

static void backend_close(backend *b)
{
    gen_engine_close(b->gens);
    view_engine_close(b->views);
    cmd_close(b->cmd);
    registry_free(b->reg);
    if (b->log)
        log_close(b->log);
    spec_free(b->spec);
}

static payi_code open_views(const serve_config *c, backend *b, payi_err *err)
{
    buf url = BUF_INIT;
    if (c->store)
        buf_puts(&url, c->store);
    else
        buf_printf(&url, "sqlite:%s/views.db", c->dir);
    view_options o;
    view_options_default(&o);
    o.store_url = url.data;
    payi_code rc = view_engine_open(&b->views, b->log, b->reg, b->spec, &o, err);
    buf_release(&url);
    return rc;
}

/* The spec is read and compiled before the log opens, so that a mistake in
 * it changes nothing; then its event schemas are registered in the log. */
static int backend_open(serve_config *c, backend *b)
{
    payi_err err;
    luafn_limits lim;
    luafn_limits_default(&lim);
    if (c->spec && (spec_load(c->spec, &b->spec, &err) != PAYI_OK || cmd_check_lua(b->spec, &lim, &err) != PAYI_OK ||
                    view_engine_check(b->spec, &err) != PAYI_OK || gen_check(b->spec, &err) != PAYI_OK)) {
        fprintf(stderr, "%s\n", err.msg);
        fprintf(stderr, "payi serve: the spec has a mistake; not starting\n");
        return 1;
    }
    if (log_open(&b->log, c->dir, &c->log, &err) != PAYI_OK) {
        cli_report(&err, 0);
        return 1;
    }
    b->reg = registry_new();
    payi_code rc = registry_refresh(b->reg, b->log, &err);
    for (uint32_t k = 0; rc == PAYI_OK && b->spec && k < b->spec->nevents; k++)
        rc = registry_register(b->reg, b->log, b->spec->events[k], &err);
    if (rc == PAYI_OK && b->spec)
        rc = cmd_open(&b->cmd, b->log, b->spec, b->reg, NULL, &err);
    if (rc == PAYI_OK && b->spec && b->spec->nviews)
        rc = open_views(c, b, &err);
    if (rc == PAYI_OK && b->spec && b->spec->ngenerators)
        rc = gen_engine_open(&b->gens, b->log, b->reg, b->spec, &err);
    if (rc != PAYI_OK) {
        fprintf(stderr, "%s\n", err.msg);
        fprintf(stderr, "payi serve: not starting\n");
        return 1;
    }
    return 0;
}

typedef struct task_thread {
    const serve_task *task;
    serve_parts parts;
} task_thread;

static void *task_main(void *arg)
{
    task_thread *t = arg;
    thread_set_name("task", "");
    t->task->start(t->task->ctx, &t->parts);
    return NULL;
}

static int run(serve_config *c, const serve_task *task)
{
    sigset_t stop;
    if (!block_stop_signals(&stop)) {
        fprintf(stderr, "payi: cannot set up signal handling\n");
        return 1;
    }
    cli_warn_durability(&c->log);
    backend b = {0};
    if (backend_open(c, &b) != 0) {
        backend_close(&b);
        return 1;
    }
    payi_err err;
    http_server *srv;
    http_backend hb = {b.log, b.reg, b.cmd, b.views, b.gens};
    if (http_start(&srv, &hb, &c->http, &err) != PAYI_OK) {
        cli_report(&err, 0);
        backend_close(&b);
        return 1;
    }
    fprintf(stderr, "payi: listening on %s\n", http_url(srv));
    task_thread tt = {task, {b.log, b.cmd, b.views, b.gens, http_url(srv)}};
    pthread_t task_tid;
    bool task_started = task && pthread_create(&task_tid, NULL, task_main, &tt) == 0;
    if (task && !task_started)
        fprintf(stderr, "payi: cannot start the demo's feeder thread\n");
    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;   /* sigwait fails only for a bad set; ours is fixed, so this does not spin */
    fprintf(stderr, "payi: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (task_started) {
        task->stop(task->ctx);
        pthread_join(task_tid, NULL);
    }
    http_stop(srv);
    backend_close(&b);
    fprintf(stderr, "payi: stopped\n");
    return 0;
}

int serve_main_with(int argc, char **argv, const serve_task *task)
{
    serve_config c = {.dir = CLI_DEFAULT_DATA};
    log_options_default(&c.log);
    http_options_default(&c.http);
    int r = parse_args(argc, argv, &c);
    return r >= 0 ? r : run(&c, task);
}

int serve_main(int argc, char **argv) { return serve_main_with(argc, argv, NULL); }
