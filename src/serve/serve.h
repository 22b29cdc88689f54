/* serve.h — the verb `payi serve`: the event store over HTTP, in one process.
 * Takes the verb's own argv (argv[0] is "serve"); returns the exit status:
 * 0 after a clean stop (SIGINT/SIGTERM), 1 on failure (message on stderr),
 * 2 on a usage error. */
#ifndef PAYI_SERVE_H
#define PAYI_SERVE_H

int serve_main(int argc, char **argv);

/* What `payi demo` runs inside a serving process: start() once the server
 * listens (on a thread of its own, which it may keep busy: stop() is called
 * from the main thread at SIGINT/SIGTERM before anything closes, and must
 * make start() return). */
#include "command/command.h"
#include "gen/generator.h"
#include "view/view.h"
typedef struct serve_parts {
    payi_log *log;
    cmd_engine *cmd;
    view_engine *views;
    gen_engine *gens;
    const char *url;
} serve_parts;
typedef struct serve_task {
    void (*start)(void *ctx, const serve_parts *parts);
    void (*stop)(void *ctx);
    void *ctx;
} serve_task;
int serve_main_with(int argc, char **argv, const serve_task *task);

#endif
