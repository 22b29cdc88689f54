/* covid.h — readers for the public COVID-19 files, exactly as published
 * (see covid.c's design comment and examples/covid/data/SOURCE.md).
 *
 * JHU CSSE global time series (time_series_covid19_{confirmed,deaths}_global.csv):
 * one point per country and day, the cumulative count with every row of the
 * country summed (its provinces, territories and the like), countries in
 * byte order of their JHU name, days in order:
 *
 *   covid_jhu *j;
 *   if (covid_jhu_open(&j, "time_series_covid19_confirmed_global.csv", COVID_CONFIRMED, &err)) ...
 *   covid_point pt;
 *   while (covid_jhu_next(j, &pt))
 *       use(pt.country, pt.day, pt.cumulative);   // "Cote d'Ivoire", 19425 (2023-03-09), 88263
 *   covid_jhu_close(j);
 *
 * The whole file is read and checked by covid_jhu_open / covid_jhu_read, so
 * every error (with file:line:column) comes from there and covid_jhu_next
 * cannot fail.  Rows that are not countries (COVID_JHU_NON_COUNTRIES) are left
 * out unless COVID_JHU_KEEP_NON_COUNTRIES is given.
 *
 * WHO weekly file (WHO-COVID-19-global-data.csv): its rows, typed, empty cells
 * as missing; in file order (streamed, errors as they come, no duplicate
 * check), or sorted by (Country_code, day) with COVID_WHO_SORTED (read whole
 * at open, a repeated (Country_code, day) refused).
 *
 * Days are days since 1970-01-01 (expr_days_from_civil), the DATE encoding of
 * src/spec/expr.h.
 */
#ifndef PAYI_COVID_H
#define PAYI_COVID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "ingest/csv.h"

/* ---- JHU CSSE global time series ---- */

typedef enum { COVID_CONFIRMED, COVID_DEATHS } covid_kind;

const char *covid_kind_name(covid_kind kind);   /* "confirmed", "deaths" */

typedef struct covid_point {
    const char *country;   /* JHU's Country/Region, NUL-terminated; owned by the reader, valid until close */
    int64_t day;           /* days since 1970-01-01 */
    int64_t cumulative;    /* sum over the country's rows, >= 0 */
} covid_point;

typedef struct covid_jhu covid_jhu;

/* Keep the non-country rows (ships, Olympics, Antarctica) as pseudo-countries
 * of their own; with it the sum over countries is the file's global total. */
#define COVID_JHU_KEEP_NON_COUNTRIES 1u

/* The Country/Region values that are not countries, NULL-terminated. */
extern const char *const COVID_JHU_NON_COUNTRIES[];
bool covid_jhu_is_non_country(const char *country);

/* Opens and reads the file at path (plain CSV; run .gz files through a pipe
 * and covid_jhu_read).  Default rules (no flags). */
payi_code covid_jhu_open(covid_jhu **out, const char *path, covid_kind kind, payi_err *err);
/* Reads a whole JHU CSV from any csv source (FILE*, pipe, memory); csv is
 * borrowed and read to its end; error messages carry csv_name(csv).
 * flags: COVID_JHU_KEEP_NON_COUNTRIES or 0. */
payi_code covid_jhu_read(covid_jhu **out, csv_reader *csv, covid_kind kind, unsigned flags, payi_err *err);
/* The next point, false after the last one. */
bool covid_jhu_next(covid_jhu *j, covid_point *out);
void covid_jhu_rewind(covid_jhu *j);   /* next starts over from the first point */
void covid_jhu_close(covid_jhu *j);    /* NULL is fine */

covid_kind covid_jhu_kind(const covid_jhu *j);
size_t covid_jhu_ncountries(const covid_jhu *j);
size_t covid_jhu_ndays(const covid_jhu *j);        /* date columns: one per day */
int64_t covid_jhu_first_day(const covid_jhu *j);   /* day of the first date column */
size_t covid_jhu_nrows(const covid_jhu *j);        /* data rows read, excluded ones included */
/* Country i in output order (i < ncountries), and how many rows were summed into it. */
const char *covid_jhu_country(const covid_jhu *j, size_t i);
size_t covid_jhu_country_rows(const covid_jhu *j, size_t i);
/* Country index by name, or -1. */
ptrdiff_t covid_jhu_find(const covid_jhu *j, const char *country);
/* Cumulative of country i on day (-1 when the day is outside the file). */
int64_t covid_jhu_value(const covid_jhu *j, size_t i, int64_t day);

/* ---- WHO weekly per-country file ---- */

/* A count cell: present is false when the cell was empty. */
typedef struct covid_count {
    bool present;
    int64_t value;
} covid_count;

typedef struct covid_who_row {
    int64_t day;                   /* Date_reported */
    const char *country_code;      /* never empty ("CI"); match on this, not on the name */
    const char *country;           /* bytes as in the file (WHO writes U+FFFD for accents); NULL if empty */
    const char *who_region;        /* "AFRO", "OTHER"...; NULL if empty */
    covid_count new_cases, cumulative_cases, new_deaths, cumulative_deaths;
    uint64_t line;                 /* line of the row in the file */
} covid_who_row;

typedef struct covid_who covid_who;

/* Read the whole file and hand rows out sorted by (country_code, day);
 * a repeated (country_code, day) is an error. */
#define COVID_WHO_SORTED 1u

payi_code covid_who_open(covid_who **out, const char *path, unsigned flags, payi_err *err);
/* csv is borrowed and must stay open until covid_who_close (rows are read
 * from it one by one unless COVID_WHO_SORTED). */
payi_code covid_who_read(covid_who **out, csv_reader *csv, unsigned flags, payi_err *err);
/* 1: a row in *row (its strings valid until the next call, or until close
 * when sorted); 0: the end; -1: an error in *err (file:line:column). */
int covid_who_next(covid_who *w, covid_who_row *row, payi_err *err);
void covid_who_close(covid_who *w);   /* closes csv only if covid_who_open opened it */

#endif
