/* covid.c — readers for the public COVID-19 files as published.
 *
 * JHU CSSE GLOBAL TIME SERIES (wide: one row per location, one column per day)
 *
 *   Province/State,Country/Region,Lat,Long,1/22/20,1/23/20,...,3/9/23\r\n
 *   ,Afghanistan,33.93911,67.709953,0,0,...,209451\r\n
 *   Australian Capital Territory,Australia,-35.4735,149.0124,0,0,...,232018\r\n
 *   ,"Korea, South",35.907757,127.766922,1,1,...,30615522\r\n
 *
 *   H1. The first 4 header cells are exactly Province/State, Country/Region,
 *       Lat, Long; every further cell is a date M/D/YY (no padding needed,
 *       year 20YY), each exactly one day after the one before: the output is
 *       a daily series and a missing column would silently shift it.
 *   H2. Every row has the header's width (csv_set_width).
 *   H3. Every count is a non-negative decimal integer; an empty cell is an
 *       error (the published files have none, so one means damage).
 *   H4. Country/Region is never empty; Lat and Long are not read (two rows
 *       have them empty, "Repatriated Travellers" and "Unknown" in China).
 *   H5. A (Province/State, Country/Region) pair appears once: a repeated row
 *       would be counted twice in the sum.
 *
 * RULE P (provinces): the value of a country on a day is the sum of ALL its
 * rows, whatever their Province/State says.  This is JHU's own convention
 * (the dashboard's country total) and what SOURCE.md prescribes ("Sum a
 * country's rows to get its national total"):
 *   - Australia (8 states), China (34 rows incl. Hong Kong, Macau and
 *     "Unknown") and Canada (16 rows) have no row of their own: the total is
 *     their provinces.  Canada's rows include "Diamond Princess", "Grand
 *     Princess" and "Repatriated Travellers": JHU attributes those cases to
 *     Canada, and so do we (they are Province/State values, not countries).
 *   - Denmark, France, Netherlands, New Zealand and the United Kingdom have a
 *     row with an empty Province/State (the mainland) PLUS rows for overseas
 *     territories (Greenland, Reunion, Aruba, Bermuda, ...): the total
 *     includes the territories, as JHU's does.
 *
 * RULE N (non-countries): five Country/Region values are not countries:
 *   "Antarctica" (research stations), "Diamond Princess", "MS Zaandam" (cruise
 *   ships), "Summer Olympics 2020", "Winter Olympics 2022" (events).  They are
 *   read and checked like any row, then left out, so "countries" means 196
 *   countries and areas.  COVID_JHU_KEEP_NON_COUNTRIES keeps each as a
 *   pseudo-country of its own name, which makes the sum over countries equal
 *   the file's global total (676,570,149 confirmed on 3/9/23).  "Korea, North"
 *   IS a country (it reported 1 case and 6 deaths) and is kept; so are
 *   "Taiwan*", "Kosovo", "West Bank and Gaza" and "Holy See", as JHU lists them.
 *
 * Output order: countries in strcmp order of their name (the file's own
 * order, but not relied on), days ascending; names exactly as in JHU
 * ("Cote d'Ivoire", "Korea, South", "Taiwan*").
 *
 * WHO WEEKLY FILE (long: one row per country and week)
 *
 *   Date_reported,Country_code,Country,WHO_region,New_cases,Cumulative_cases,New_deaths,Cumulative_deaths
 *   2020-01-05,AW,Aruba,AMRO,,0,,0
 *
 *   W1. Columns are found by header name (all eight required, each once;
 *       others ignored); every row has the header's width.
 *   W2. Date_reported is YYYY-MM-DD, a real date; Country_code is not empty.
 *   W3. Counts are decimal integers, possibly negative (WHO's corrections
 *       are negative weekly values); an empty cell is "missing", not 0 — the
 *       caller decides (SOURCE.md: treat empty New_* as 0).
 *   W4. Country and WHO_region are passed through as bytes (NULL when empty):
 *       WHO's file has U+FFFD in accented names, so match on Country_code.
 *   W5. The release is not sorted; COVID_WHO_SORTED sorts by (Country_code,
 *       day) and refuses a repeated pair, since deltas need one row per week.
 *
 * Names must not contain NUL bytes (they are handed out as C strings).
 */
#include "ingest/covid.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "spec/expr.h"

const char *covid_kind_name(covid_kind kind) { return kind == COVID_DEATHS ? "deaths" : "confirmed"; }

/* ---- cell parsers ---- */

/* A decimal integer, optionally negative; false when empty, not a number or
 * out of int64 range. */
static bool parse_int(const char *p, size_t len, bool allow_negative, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (allow_negative && len > 0 && p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len)
        return false;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (len - i <= 18) {   /* the usual case: 18 digits cannot overflow, check only digits */
        for (; i < len; i++) {
            unsigned d = (unsigned)(unsigned char)p[i] - '0';
            if (d > 9)
                return false;
            v = v * 10 + d;
        }
    } else {
        for (; i < len; i++) {
            unsigned d = (unsigned)(unsigned char)p[i] - '0';
            if (d > 9 || v > (limit - d) / 10)
                return false;
            v = v * 10 + d;
        }
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return true;
}

/* 1 to `max` digits at p[*i], moving *i past them. */
static bool digits(const char *p, size_t len, size_t *i, size_t min, size_t max, unsigned *out)
{
    size_t start = *i;
    unsigned v = 0;
    while (*i < len && *i - start < max && p[*i] >= '0' && p[*i] <= '9')
        v = v * 10 + (unsigned)(p[(*i)++] - '0');
    *out = v;
    return *i - start >= min;
}

/* The day of y-m-d, false unless it is a real calendar date. */
static bool civil_day(int64_t y, unsigned m, unsigned d, int64_t *day)
{
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    int64_t days = expr_days_from_civil(y, m, d);
    int64_t yy;
    unsigned mm, dd;
    expr_civil_from_days(days, &yy, &mm, &dd);   /* 2/30 comes back as 3/1 */
    if (yy != y || mm != m || dd != d)
        return false;
    *day = days;
    return true;
}

/* JHU's M/D/YY (1 or 2 digits for month and day, 2 for the year = 20YY). */
static bool parse_mdy(const char *p, size_t len, int64_t *day)
{
    size_t i = 0;
    unsigned m, d, y;
    if (!digits(p, len, &i, 1, 2, &m) || i >= len || p[i++] != '/' || !digits(p, len, &i, 1, 2, &d) || i >= len ||
        p[i++] != '/' || !digits(p, len, &i, 2, 2, &y) || i != len)
        return false;
    return civil_day(2000 + (int64_t)y, m, d, day);
}

/* ISO YYYY-MM-DD. */
static bool parse_ymd(const char *p, size_t len, int64_t *day)
{
    size_t i = 0;
    unsigned y, m, d;
    if (len != 10 || !digits(p, len, &i, 4, 4, &y) || p[i++] != '-' || !digits(p, len, &i, 2, 2, &m) ||
        p[i++] != '-' || !digits(p, len, &i, 2, 2, &d))
        return false;
    return civil_day(y, m, d, day);
}

/* "3/9/23" for messages. */
static const char *mdy(int64_t day, char out[16])
{
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(day, &y, &m, &d);
    snprintf(out, 16, "%u/%u/%02u", m, d, (unsigned)(y % 100));
    return out;
}

static bool field_is(const csv_field *f, const char *s) { return f->len == strlen(s) && memcmp(f->p, s, f->len) == 0; }

/* Input offset just past field f (exact unless it held "" escapes). */
static uint64_t field_end(const csv_field *f) { return f->at + f->len + (f->quoted ? 2 : 0); }

/* A copy of a name field as a C string; NUL bytes refused (the copy would lie). */
static payi_code name_copy(const csv_reader *csv, const csv_field *f, const char *what, char **out, payi_err *err)
{
    if (memchr(f->p, '\0', f->len))
        return csv_fail(csv, err, PAYI_VALIDATION, f->at, "%s contains a NUL byte", what);
    *out = xstrndup(f->p, f->len);
    return PAYI_OK;
}

/* ---- JHU ---- */

const char *const COVID_JHU_NON_COUNTRIES[] = {
    "Antarctica", "Diamond Princess", "MS Zaandam", "Summer Olympics 2020", "Winter Olympics 2022", NULL,
};

bool covid_jhu_is_non_country(const char *country)
{
    for (size_t i = 0; COVID_JHU_NON_COUNTRIES[i]; i++)
        if (strcmp(country, COVID_JHU_NON_COUNTRIES[i]) == 0)
            return true;
    return false;
}

#define JHU_KEYS 4
static const char *const jhu_keys[JHU_KEYS] = {"Province/State", "Country/Region", "Lat", "Long"};

/* One data row while the file is read. */
typedef struct jhu_row {
    char *country;
    char *province;
    uint64_t line;
    int64_t *v;        /* ndays counts */
} jhu_row;

struct covid_jhu {
    covid_kind kind;
    int64_t first_day;
    size_t ndays;
    size_t nrows;
    size_t ncountries;
    char **names;        /* sorted */
    size_t *rows_per;
    int64_t *values;     /* ncountries x ndays, row-major */
    size_t ci, di;       /* the next point */
};

/* The state of one covid_jhu_read, freed whatever happens. */
typedef struct jhu_load {
    csv_reader *csv;
    unsigned flags;
    jhu_row *rows;
    size_t nrows, cap;
} jhu_load;

static void load_release(jhu_load *ld)
{
    for (size_t i = 0; i < ld->nrows; i++) {
        free(ld->rows[i].country);
        free(ld->rows[i].province);
        free(ld->rows[i].v);
    }
    free(ld->rows);
}

/* H1: the header row; sets first_day and ndays. */
static payi_code jhu_header(covid_jhu *j, csv_reader *csv, payi_err *err)
{
    csv_row row;
    int rc = csv_next(csv, &row, err);
    if (rc < 0)
        return err->code;
    if (rc == 0)
        return csv_fail(csv, err, PAYI_VALIDATION, csv_offset(csv), "empty file: no header row");
    for (size_t i = 0; i < JHU_KEYS; i++) {
        if (i >= row.n)
            return csv_fail(csv, err, PAYI_VALIDATION, field_end(&row.f[row.n - 1]),
                            "missing column %zu '%s' (the JHU header starts Province/State,Country/Region,Lat,Long)",
                            i + 1, jhu_keys[i]);
        if (!field_is(&row.f[i], jhu_keys[i]))
            return csv_fail(csv, err, PAYI_VALIDATION, row.f[i].at, "column %zu is '%.*s', expected '%s'", i + 1,
                            (int)(row.f[i].len > 60 ? 60 : row.f[i].len), row.f[i].p, jhu_keys[i]);
    }
    if (row.n == JHU_KEYS)
        return csv_fail(csv, err, PAYI_VALIDATION, field_end(&row.f[row.n - 1]),
                        "no date columns after Long");
    for (size_t i = JHU_KEYS; i < row.n; i++) {
        const csv_field *f = &row.f[i];
        int64_t day;
        if (!parse_mdy(f->p, f->len, &day))
            return csv_fail(csv, err, PAYI_VALIDATION, f->at, "bad date header '%.*s' in column %zu: expected M/D/YY",
                            (int)(f->len > 60 ? 60 : f->len), f->p, i + 1);
        if (i == JHU_KEYS)
            j->first_day = day;
        else if (day != j->first_day + (int64_t)(i - JHU_KEYS)) {
            char want[16];
            return csv_fail(csv, err, PAYI_VALIDATION, f->at,
                            "date header '%.*s' in column %zu should be %s: one column per day, in order",
                            (int)(f->len > 60 ? 60 : f->len), f->p, i + 1,
                            mdy(j->first_day + (int64_t)(i - JHU_KEYS), want));
        }
    }
    j->ndays = row.n - JHU_KEYS;
    csv_set_width(csv, row.n);   /* H2 */
    return PAYI_OK;
}

/* H3-H4: one data row into ld->rows. */
static payi_code jhu_data_row(covid_jhu *j, jhu_load *ld, const csv_row *row, payi_err *err)
{
    const csv_field *prov = &row->f[0], *country = &row->f[1];
    if (country->len == 0)
        return csv_fail(ld->csv, err, PAYI_VALIDATION, country->at, "empty Country/Region");
    jhu_row r = {.line = row->line};
    r.v = xmalloc(j->ndays * sizeof *r.v);
    for (size_t k = 0; k < j->ndays; k++) {
        const csv_field *f = &row->f[JHU_KEYS + k];
        if (!parse_int(f->p, f->len, false, &r.v[k])) {
            char date[16];
            payi_code rc = csv_fail(ld->csv, err, PAYI_VALIDATION, f->at,
                                    "%s count '%.*s' is not a non-negative integer (Country/Region '%.*s', %s)",
                                    covid_kind_name(j->kind), (int)(f->len > 40 ? 40 : f->len), f->p,
                                    (int)country->len, country->p, mdy(j->first_day + (int64_t)k, date));
            free(r.v);
            return rc;
        }
    }
    payi_code rc;
    if ((rc = name_copy(ld->csv, country, "Country/Region", &r.country, err)) != PAYI_OK ||
        (rc = name_copy(ld->csv, prov, "Province/State", &r.province, err)) != PAYI_OK) {
        free(r.country);
        free(r.v);
        return rc;
    }
    j->nrows++;
    if (!(ld->flags & COVID_JHU_KEEP_NON_COUNTRIES) && covid_jhu_is_non_country(r.country)) {   /* rule N */
        free(r.country);
        free(r.province);
        free(r.v);
        return PAYI_OK;
    }
    ld->rows = xgrow(ld->rows, &ld->cap, ld->nrows + 1, sizeof *ld->rows);
    ld->rows[ld->nrows++] = r;
    return PAYI_OK;
}

static int row_cmp(const void *a, const void *b)
{
    const jhu_row *x = a, *y = b;
    int c = strcmp(x->country, y->country);
    if (c == 0)
        c = strcmp(x->province, y->province);
    if (c == 0)
        c = x->line < y->line ? -1 : x->line > y->line;
    return c;
}

/* Rule P: sums each country's rows (sorted, so a country's rows are adjacent);
 * refuses a repeated row (H5). */
static payi_code jhu_sum(covid_jhu *j, jhu_load *ld, payi_err *err)
{
    if (ld->nrows > 1)   /* qsort wants a non-NULL base even for 0 items */
        qsort(ld->rows, ld->nrows, sizeof *ld->rows, row_cmp);
    size_t nc = 0;
    for (size_t i = 0; i < ld->nrows; i++) {
        if (i > 0 && strcmp(ld->rows[i - 1].country, ld->rows[i].country) == 0 &&
            strcmp(ld->rows[i - 1].province, ld->rows[i].province) == 0)
            return payi_err_set(err, PAYI_VALIDATION, NULL,
                                "%s:%llu:1: duplicate row for Province/State '%s', Country/Region '%s' "
                                "(first at line %llu): it would be counted twice",
                                csv_name(ld->csv), (unsigned long long)ld->rows[i].line, ld->rows[i].province,
                                ld->rows[i].country, (unsigned long long)ld->rows[i - 1].line);
        if (i == 0 || strcmp(ld->rows[i - 1].country, ld->rows[i].country) != 0)
            nc++;
    }
    j->ncountries = nc;
    j->names = xcalloc(nc + 1, sizeof *j->names);   /* +1: never a zero-size allocation */
    j->rows_per = xcalloc(nc + 1, sizeof *j->rows_per);
    j->values = xcalloc(nc * j->ndays + 1, sizeof *j->values);
    size_t c = SIZE_MAX;
    for (size_t i = 0; i < ld->nrows; i++) {
        jhu_row *r = &ld->rows[i];
        if (c == SIZE_MAX || strcmp(j->names[c], r->country) != 0) {
            j->names[++c] = r->country;
            r->country = NULL;   /* moved */
        }
        j->rows_per[c]++;
        int64_t *sum = &j->values[c * j->ndays];
        for (size_t k = 0; k < j->ndays; k++)
            if (__builtin_add_overflow(sum[k], r->v[k], &sum[k])) {
                char date[16];
                return payi_err_set(err, PAYI_VALIDATION, NULL,
                                    "%s:%llu:1: the sum of Country/Region '%s' on %s overflows 64 bits",
                                    csv_name(ld->csv), (unsigned long long)r->line, j->names[c],
                                    mdy(j->first_day + (int64_t)k, date));
            }
    }
    return PAYI_OK;
}

payi_code covid_jhu_read(covid_jhu **out, csv_reader *csv, covid_kind kind, unsigned flags, payi_err *err)
{
    payi_err local;
    if (!err)   /* the code of a csv error travels in err */
        err = &local;
    *out = NULL;
    covid_jhu *j = xcalloc(1, sizeof *j);
    j->kind = kind;
    jhu_load ld = {.csv = csv, .flags = flags};
    payi_code rc = jhu_header(j, csv, err);
    csv_row row;
    int more;
    while (rc == PAYI_OK && (more = csv_next(csv, &row, err)) != 0)
        rc = more < 0 ? err->code : jhu_data_row(j, &ld, &row, err);
    if (rc == PAYI_OK)
        rc = jhu_sum(j, &ld, err);
    load_release(&ld);
    if (rc != PAYI_OK) {
        covid_jhu_close(j);
        return rc;
    }
    *out = j;
    return PAYI_OK;
}

payi_code covid_jhu_open(covid_jhu **out, const char *path, covid_kind kind, payi_err *err)
{
    *out = NULL;
    csv_reader *csv;
    payi_code rc = csv_open_path(&csv, path, NULL, err);
    if (rc != PAYI_OK)
        return rc;
    rc = covid_jhu_read(out, csv, kind, 0, err);
    csv_close(csv);
    return rc;
}

bool covid_jhu_next(covid_jhu *j, covid_point *out)
{
    if (j->di == j->ndays) {
        j->di = 0;
        j->ci++;
    }
    if (j->ci >= j->ncountries) {
        j->ci = j->ncountries;
        return false;
    }
    out->country = j->names[j->ci];
    out->day = j->first_day + (int64_t)j->di;
    out->cumulative = j->values[j->ci * j->ndays + j->di];
    j->di++;
    return true;
}

void covid_jhu_rewind(covid_jhu *j) { j->ci = j->di = 0; }

void covid_jhu_close(covid_jhu *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->ncountries; i++)
        free(j->names[i]);
    free(j->names);
    free(j->rows_per);
    free(j->values);
    free(j);
}

covid_kind covid_jhu_kind(const covid_jhu *j) { return j->kind; }
size_t covid_jhu_ncountries(const covid_jhu *j) { return j->ncountries; }
size_t covid_jhu_ndays(const covid_jhu *j) { return j->ndays; }
int64_t covid_jhu_first_day(const covid_jhu *j) { return j->first_day; }
size_t covid_jhu_nrows(const covid_jhu *j) { return j->nrows; }
const char *covid_jhu_country(const covid_jhu *j, size_t i) { return i < j->ncountries ? j->names[i] : NULL; }
size_t covid_jhu_country_rows(const covid_jhu *j, size_t i) { return i < j->ncountries ? j->rows_per[i] : 0; }

ptrdiff_t covid_jhu_find(const covid_jhu *j, const char *country)
{
    size_t lo = 0, hi = j->ncountries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(j->names[mid], country);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int64_t covid_jhu_value(const covid_jhu *j, size_t i, int64_t day)
{
    if (i >= j->ncountries || day < j->first_day || day - j->first_day >= (int64_t)j->ndays)
        return -1;
    return j->values[i * j->ndays + (size_t)(day - j->first_day)];
}

/* ---- WHO ---- */

enum { W_DATE, W_CODE, W_COUNTRY, W_REGION, W_NEW_CASES, W_CUM_CASES, W_NEW_DEATHS, W_CUM_DEATHS, W_NCOLS };
static const char *const who_cols[W_NCOLS] = {"Date_reported", "Country_code",     "Country",    "WHO_region",
                                              "New_cases",     "Cumulative_cases", "New_deaths", "Cumulative_deaths"};

#define NO_STR SIZE_MAX

/* A row with its strings as offsets into an arena (which may move). */
typedef struct who_rec {
    int64_t day;
    size_t code, country, region;   /* offsets, NO_STR for empty */
    covid_count counts[4];
    uint64_t line;
} who_rec;

struct covid_who {
    csv_reader *csv;
    bool own_csv;
    size_t col[W_NCOLS];   /* W1: index of each column in the file */
    buf arena;             /* streaming: this row's strings; sorted: all */
    who_rec *recs;         /* sorted mode */
    size_t nrecs, cap, next;
};

/* W1. */
static payi_code who_header(covid_who *w, payi_err *err)
{
    csv_row row;
    int rc = csv_next(w->csv, &row, err);
    if (rc < 0)
        return err->code;
    if (rc == 0)
        return csv_fail(w->csv, err, PAYI_VALIDATION, csv_offset(w->csv), "empty file: no header row");
    for (size_t c = 0; c < W_NCOLS; c++) {
        w->col[c] = SIZE_MAX;
        for (size_t i = 0; i < row.n; i++) {
            if (!field_is(&row.f[i], who_cols[c]))
                continue;
            if (w->col[c] != SIZE_MAX)
                return csv_fail(w->csv, err, PAYI_VALIDATION, row.f[i].at, "column '%s' appears twice",
                                who_cols[c]);
            w->col[c] = i;
        }
        if (w->col[c] == SIZE_MAX)
            return csv_fail(w->csv, err, PAYI_VALIDATION, row.at, "missing column '%s' in the header", who_cols[c]);
    }
    csv_set_width(w->csv, row.n);
    return PAYI_OK;
}

/* A string cell into the arena (NO_STR when empty). */
static payi_code who_str(covid_who *w, const csv_field *f, const char *what, size_t *off, payi_err *err)
{
    if (f->len == 0) {
        *off = NO_STR;
        return PAYI_OK;
    }
    if (memchr(f->p, '\0', f->len))
        return csv_fail(w->csv, err, PAYI_VALIDATION, f->at, "%s contains a NUL byte", what);
    *off = w->arena.len;
    buf_put(&w->arena, f->p, f->len);
    buf_putc(&w->arena, '\0');
    return PAYI_OK;
}

/* W2-W4: one data row. */
static payi_code who_parse(covid_who *w, const csv_row *row, who_rec *rec, payi_err *err)
{
    const csv_field *f = row->f;
    const csv_field *date = &f[w->col[W_DATE]], *code = &f[w->col[W_CODE]];
    rec->line = row->line;
    if (!parse_ymd(date->p, date->len, &rec->day))
        return csv_fail(w->csv, err, PAYI_VALIDATION, date->at, "Date_reported '%.*s' is not a date YYYY-MM-DD",
                        (int)(date->len > 40 ? 40 : date->len), date->p);
    if (code->len == 0)
        return csv_fail(w->csv, err, PAYI_VALIDATION, code->at, "empty Country_code");
    payi_code rc;
    if ((rc = who_str(w, code, "Country_code", &rec->code, err)) != PAYI_OK ||
        (rc = who_str(w, &f[w->col[W_COUNTRY]], "Country", &rec->country, err)) != PAYI_OK ||
        (rc = who_str(w, &f[w->col[W_REGION]], "WHO_region", &rec->region, err)) != PAYI_OK)
        return rc;
    for (size_t k = 0; k < 4; k++) {
        const csv_field *c = &f[w->col[W_NEW_CASES + k]];
        covid_count *cnt = &rec->counts[k];
        cnt->present = c->len > 0;
        cnt->value = 0;
        if (cnt->present && !parse_int(c->p, c->len, true, &cnt->value))
            return csv_fail(w->csv, err, PAYI_VALIDATION, c->at, "%s '%.*s' is not an integer",
                            who_cols[W_NEW_CASES + k], (int)(c->len > 40 ? 40 : c->len), c->p);
    }
    return PAYI_OK;
}

static const char *arena_str(const covid_who *w, size_t off) { return off == NO_STR ? NULL : w->arena.data + off; }

static void who_fill(const covid_who *w, const who_rec *rec, covid_who_row *row)
{
    row->day = rec->day;
    row->country_code = arena_str(w, rec->code);
    row->country = arena_str(w, rec->country);
    row->who_region = arena_str(w, rec->region);
    row->new_cases = rec->counts[0];
    row->cumulative_cases = rec->counts[1];
    row->new_deaths = rec->counts[2];
    row->cumulative_deaths = rec->counts[3];
    row->line = rec->line;
}

static int rec_cmp(const void *a, const void *b, void *ctx)
{
    const who_rec *x = a, *y = b;
    const char *arena = ctx;
    int c = strcmp(arena + x->code, arena + y->code);
    if (c == 0)
        c = x->day < y->day ? -1 : x->day > y->day;
    if (c == 0)
        c = x->line < y->line ? -1 : x->line > y->line;
    return c;
}

/* W5: reads every row, sorts, refuses a repeated (code, day). */
static payi_code who_load_sorted(covid_who *w, payi_err *err)
{
    csv_row row;
    int more;
    while ((more = csv_next(w->csv, &row, err)) > 0) {
        w->recs = xgrow(w->recs, &w->cap, w->nrecs + 1, sizeof *w->recs);
        payi_code rc = who_parse(w, &row, &w->recs[w->nrecs], err);
        if (rc != PAYI_OK)
            return rc;
        w->nrecs++;
    }
    if (more < 0)
        return err->code;
    if (w->nrecs > 1)   /* glibc qsort_r (-D_GNU_SOURCE): a context, no global */
        qsort_r(w->recs, w->nrecs, sizeof *w->recs, rec_cmp, w->arena.data);
    for (size_t i = 1; i < w->nrecs; i++) {
        const who_rec *a = &w->recs[i - 1], *b = &w->recs[i];
        if (a->day == b->day && strcmp(w->arena.data + a->code, w->arena.data + b->code) == 0) {
            int64_t y;
            unsigned m, d;
            expr_civil_from_days(b->day, &y, &m, &d);
            return payi_err_set(err, PAYI_VALIDATION, NULL,
                                "%s:%llu:1: a second row for Country_code '%s' on %04lld-%02u-%02u "
                                "(first at line %llu)",
                                csv_name(w->csv), (unsigned long long)b->line, w->arena.data + b->code, (long long)y, m,
                                d, (unsigned long long)a->line);
        }
    }
    return PAYI_OK;
}

payi_code covid_who_read(covid_who **out, csv_reader *csv, unsigned flags, payi_err *err)
{
    payi_err local;
    if (!err)   /* the code of a csv error travels in err */
        err = &local;
    *out = NULL;
    covid_who *w = xcalloc(1, sizeof *w);
    w->csv = csv;
    payi_code rc = who_header(w, err);
    if (rc == PAYI_OK && (flags & COVID_WHO_SORTED)) {
        w->recs = xmalloc(sizeof *w->recs);   /* non-NULL marks sorted mode */
        w->cap = 1;
        rc = who_load_sorted(w, err);
    }
    if (rc != PAYI_OK) {
        covid_who_close(w);
        return rc;
    }
    *out = w;
    return PAYI_OK;
}

payi_code covid_who_open(covid_who **out, const char *path, unsigned flags, payi_err *err)
{
    *out = NULL;
    csv_reader *csv;
    payi_code rc = csv_open_path(&csv, path, NULL, err);
    if (rc != PAYI_OK)
        return rc;
    rc = covid_who_read(out, csv, flags, err);
    if (rc != PAYI_OK) {
        csv_close(csv);
        return rc;
    }
    (*out)->own_csv = true;
    return PAYI_OK;
}

int covid_who_next(covid_who *w, covid_who_row *row, payi_err *err)
{
    if (w->recs) {
        if (w->next == w->nrecs)
            return 0;
        who_fill(w, &w->recs[w->next++], row);
        return 1;
    }
    csv_row r;
    int more = csv_next(w->csv, &r, err);
    if (more <= 0)
        return more;
    who_rec rec;
    w->arena.len = 0;
    if (who_parse(w, &r, &rec, err) != PAYI_OK)
        return -1;
    who_fill(w, &rec, row);
    return 1;
}

void covid_who_close(covid_who *w)
{
    if (!w)
        return;
    if (w->own_csv)
        csv_close(w->csv);
    buf_release(&w->arena);
    free(w->recs);
    free(w);
}
