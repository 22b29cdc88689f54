/* serve.h — the verb `payi serve`: the event store over HTTP, in one process.
 * Takes the verb's own argv (argv[0] is "serve"); returns the exit status:
 * 0 after a clean stop (SIGINT/SIGTERM), 1 on failure (message on stderr),
 * 2 on a usage error. */
#ifndef PAYI_SERVE_H
#define PAYI_SERVE_H

int serve_main(int argc, char **argv);

#endif
