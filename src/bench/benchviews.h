/* benchviews.h — payi bench views: view maintenance on the Nexmark benchmark
 * (a deterministic Nexmark event generator, the spec's views folded into
 * SQLite or PostgreSQL, and the same aggregate maintained the usual way
 * with one upsert per event); payi bench views-latency: the time from a
 * command's acknowledgement to its change on /views/{name}/changes.
 * bench/views.sh runs both beside PostgreSQL and writes the report. */
#ifndef PAYI_BENCHVIEWS_H
#define PAYI_BENCHVIEWS_H

int bench_views(int argc, char **argv);
int bench_views_latency(int argc, char **argv);

#endif
