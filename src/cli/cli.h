/* cli.h — the command-line verbs over the log: append, read, check.
 * Each takes the verb's own argv (argv[0] is the verb) and returns the exit
 * status: 0 success, 1 failure (message on stderr), 2 usage error. */
#ifndef PAYI_CLI_H
#define PAYI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "log/log.h"

int cli_append(int argc, char **argv);
int cli_read(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_sql(int argc, char **argv);
int cli_replay(int argc, char **argv);

/* Shared option parsing: sizes with an optional k/M/G suffix. */
bool cli_parse_size(const char *s, uint64_t *out);
bool cli_parse_u64(const char *s, uint64_t *out);
/* Report err as "payi: <code>: <message>" (with a "line N: " prefix when line > 0). */
void cli_report(const payi_err *err, uint64_t line);
/* Print the loud warning for durability none / interval. */
void cli_warn_durability(const log_options *o);

#define CLI_DEFAULT_DATA "./payi-data"

#endif
