/* generator.h — generators: derived events computed from a daily series per
 * key, the same definition serving history (replay) and live events.
 *
 *   CREATE GENERATOR rt USING rt_cori FROM CasesReported, CasesCorrected
 *     KEY country DAY day VALUE new_cases
 *     WITH (si_mean = 4.7, si_sd = 2.9) EMIT RtEstimated;
 *
 * A generator reads the events of its FROM types in log order, keeps one
 * series per KEY, and hands each key its days in order to its kind, which
 * answers rows of derived values; each row becomes an event of the EMIT
 * type in stream "<generator>-<key>", appended to the log like any other
 * event (views then read them).  Kinds (USING):
 *
 *   rt_cori            Rt of Cori et al. (2013) as EpiEstim computes it
 *                      (gen/rt.h), one row per day from the first full
 *                      window: fields day, mean, sd, median, q025, q975.
 *                      WITH si_mean (4.7), si_sd (2.9), window (7),
 *                      prior_mean (5), prior_sd (5).
 *   renewal_forecast   the next `horizon` days of the series from the
 *                      renewal equation driven by the current Rt
 *                      (gen/forecast.h): rows origin_day, day, median,
 *                      q025, q975, one per day ahead.  WITH the rt_cori
 *                      ones, horizon (14, at most 64), paths (1000) and
 *                      r_max (3).  A forecast looks ahead from a key's last
 *                      day, so it is made at the head: once the
 *                      generator has read everything the log holds and
 *                      no input has arrived for 50 ms, for each key whose
 *                      series moved since.  Live, that is
 *                      every day as it arrives; a replay of history makes
 *                      one, from the last day (bench/backtest evaluates
 *                      the same forecast at every day of the history).
 *
 * The EMIT type must declare the key field (KEY's column name, text) and the
 * kind's fields with their types; its other fields must be nullable.
 *
 * Series rules: a key's series starts at its first day; a day with no event
 * counts 0; a VALUE for a day already passed (late or repeated) is not
 * applied and is counted (gen_status.late_values) — the spec should send
 * one value per key and day.  NULL KEY, DAY or VALUE: the event is skipped
 * and counted.
 *
 * Exactly once.  Each derived event has an id derived from (generator, key,
 * row), or (generator, key, origin day, row) for head rows: a generator replays its inputs from position 0 at every start
 * (rebuilding its series state) and re-derives the same events with the
 * same ids, which the log appends once.  So a restart, a crash at any point,
 * or re-ingesting the same history adds nothing.
 */
#ifndef PAYI_GEN_GENERATOR_H
#define PAYI_GEN_GENERATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "event/registry.h"
#include "log/log.h"
#include "spec/spec.h"

typedef struct gen_engine gen_engine;

/* The spec's generators: known kinds, known parameters in range, the EMIT
 * type's fields ("file:line:col: message"). */
payi_code gen_check(const payi_spec *spec, payi_err *err);

/* Start one thread per generator of spec (none: *out is an empty engine).
 * reg must hold the spec's schemas (registered). */
payi_code gen_engine_open(gen_engine **out, payi_log *log, registry *reg, const payi_spec *spec, payi_err *err);
void gen_engine_close(gen_engine *g);

typedef struct gen_status {
    uint64_t position;        /* every input below it is processed and its derived events are durable */
    uint64_t inputs;          /* input events applied since start */
    uint64_t emitted;         /* derived events appended (new, not counting repeats of earlier runs) */
    uint64_t repeated;        /* derived events the log already had (a replay after a restart) */
    uint64_t late_values;     /* values for a day already passed */
    uint64_t skipped;         /* inputs with a NULL or failing KEY/DAY/VALUE */
    uint64_t clamped;         /* negative daily values clamped to 0 (rt) */
    uint64_t keys;
    bool looking_ahead;       /* keys moved and their head rows are not made yet (at_head kinds) */
    bool failed;
    char last_error[600];
} gen_status;

uint32_t gen_engine_count(const gen_engine *g);
const char *gen_engine_name(const gen_engine *g, uint32_t i);
void gen_engine_status(gen_engine *g, uint32_t i, gen_status *out);

#endif
