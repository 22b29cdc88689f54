/* payi — the command line: picks the verb and hands it its arguments. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "demo/demo.h"
#include "ingest/ingest.h"
#include "serve/serve.h"

static const char usage[] =
    "usage: payi <verb> [options]     (payi <verb> --help for each)\n"
    "\n"
    "  append   append NDJSON events from standard input, one ack line per durable event\n"
    "  read     print events of a stream or of the whole log, optionally following live\n"
    "  check    verify every record of the log\n"
    "  serve    serve the event store over HTTP (commands, appends, reads, views, live events)\n"
    "  sql      read-only SQL on the read store where the views land\n"
    "  replay   rebuild views from the whole log, swapped in atomically\n"
    "  ingest   files (JHU, WHO, NDJSON) whose rows become commands of a spec\n"
    "  demo     the COVID-19 monitoring app on real data, with its dashboard\n"
    "  bench    built-in benchmarks: payi bench append\n"
    "\n"
    "payi is an event store and fast-data engine: the Payi architecture in one program.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(verb, "append"))
        return cli_append(argc - 1, argv + 1);
    if (!strcmp(verb, "read"))
        return cli_read(argc - 1, argv + 1);
    if (!strcmp(verb, "check"))
        return cli_check(argc - 1, argv + 1);
    if (!strcmp(verb, "sql"))
        return cli_sql(argc - 1, argv + 1);
    if (!strcmp(verb, "demo"))
        return demo_main(argc - 1, argv + 1);
    if (!strcmp(verb, "ingest"))
        return ingest_main(argc - 1, argv + 1);
    if (!strcmp(verb, "replay"))
        return cli_replay(argc - 1, argv + 1);
    if (!strcmp(verb, "serve"))
        return serve_main(argc - 1, argv + 1);
    if (!strcmp(verb, "bench"))
        return bench_main(argc - 1, argv + 1);
    fprintf(stderr, "payi: unknown verb '%s'\n\n%s", verb, usage);
    return 2;
}
