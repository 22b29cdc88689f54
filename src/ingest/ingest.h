/* ingest.h — batch input: files whose rows become commands.
 *
 *   payi ingest --spec FILE [--data DIR] [--command NAME] [COMMAND=]FILE...
 *
 * Each row of a file becomes one command of the spec, executed exactly as
 * over HTTP (validated, decided against its stream's state, appended
 * durably), in batches that share group commits.  Formats, by content:
 *
 *   JHU CSSE time series (header "Province/State,Country/Region,Lat,Long,
 *     1/22/20,..."): one command per country and day with the fields
 *     {"country", "day", "cumulative"}, the country's rows summed
 *     (ingest/covid.h gives the rules);
 *   WHO COVID-19 data (header "Date_reported,Country_code,..."): one command
 *     per row with {"day", "country_code", "country", "who_region",
 *     "new_cases", "cumulative_cases", "new_deaths", "cumulative_deaths"}
 *     (empty cells left out);
 *   NDJSON (a .ndjson file): each line is the command's fields.
 *
 * A name ending in .gz is read through `gzip -dc`.  The command is the one
 * written before '=' (ReportCases=confirmed.csv), else --command.  Progress
 * goes to stderr (a live line on a terminal); the summary says how many
 * commands appended events, how many changed nothing (a report already
 * ingested), and how many failed (the first ones are shown with their file
 * and row).  Exit status 1 when any failed.
 */
#ifndef PAYI_INGEST_H
#define PAYI_INGEST_H

#include "command/command.h"

int ingest_main(int argc, char **argv);

/* What one ingest did. */
typedef struct ingest_stats {
    uint64_t commands;     /* executed */
    uint64_t appended;     /* commands that appended events */
    uint64_t unchanged;    /* commands that emitted nothing */
    uint64_t failed;
    uint64_t events;       /* events appended */
} ingest_stats;

/* Ingest one JHU time-series file (path, possibly .gz) as commands `command`
 * through e; for `payi demo` too.  progress may be NULL. */
typedef void (*ingest_progress_fn)(void *ctx, const char *file, uint64_t done, uint64_t total);
payi_code ingest_file(cmd_engine *e, const char *command, const char *path, ingest_progress_fn progress, void *ctx,
                      ingest_stats *stats, payi_err *err);

/* A JHU time-series file (path, possibly .gz) read whole into *out
 * (ingest/covid.h), with the default rules. */
#include "ingest/covid.h"
payi_code ingest_load_jhu(const char *path, covid_kind kind, covid_jhu **out, payi_err *err);

#endif
