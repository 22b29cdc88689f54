/* Tests for src/ingest/covid: the JHU and WHO readers on small crafted files
 * (every rule and error of covid.c's design comment), then on the real files
 * shipped gzip'd in examples/covid/data/ (read through `gzip -dc`, as ingest
 * will read them).
 *
 * The expected figures for the real files were computed independently, once,
 * with Python's csv module on the uncompressed originals (see each comment);
 * a whole output is compared through its FNV-1a 64 hash over lines
 * "country,day,cumulative\n" (JHU) or
 * "code,day,country,region,new_cases,cum_cases,new_deaths,cum_deaths\n"
 * (WHO; an empty string or count as "" / "NA"). */
#include <stdlib.h>
#include <unistd.h>

#include "base/buf.h"
#include "ingest/covid.h"
#include "spec/expr.h"
#include "test.h"

static int64_t day_of(int y, unsigned m, unsigned d) { return expr_days_from_civil(y, m, d); }

static covid_jhu *jhu_mem(const char *text, unsigned flags, payi_err *err)
{
    csv_reader *csv = csv_open_mem(text, strlen(text), "c.csv", NULL);
    covid_jhu *j = NULL;
    payi_code rc = covid_jhu_read(&j, csv, COVID_CONFIRMED, flags, err);
    csv_close(csv);
    return rc == PAYI_OK ? j : NULL;
}

/* The reader's output as "country day-offset value;" text. */
static void jhu_render(covid_jhu *j, buf *out)
{
    covid_point pt;
    while (covid_jhu_next(j, &pt))
        buf_printf(out, "%s %lld %lld;", pt.country, (long long)(pt.day - covid_jhu_first_day(j)),
                   (long long)pt.cumulative);
}

#define HDR "Province/State,Country/Region,Lat,Long,1/22/20,1/23/20,1/24/20\r\n"

/* ---- JHU: the rules ---- */

/* Rule P: provinces summed (no country row, or a country row plus
 * territories); output sorted by country whatever the file order. */
TEST(covid_jhu_sums_provinces)
{
    static const char in[] = HDR
        "Quebec,Canada,1,1,1,2,3\r\n"
        ",France,1,1,10,20,30\r\n"
        "Reunion,France,1,1,1,1,2\r\n"
        "Diamond Princess,Canada,0.0,0.0,5,5,5\r\n"
        "Ontario,Canada,,,0,4,8\r\n"
        ",\"Korea, South\",1,1,7,8,9\r\n";
    payi_err err;
    covid_jhu *j = jhu_mem(in, 0, &err);
    CHECK(j != NULL);
    if (!j)
        return;
    buf out = BUF_INIT;
    jhu_render(j, &out);
    CHECK_STR(out.data, "Canada 0 6;Canada 1 11;Canada 2 16;France 0 11;France 1 21;France 2 32;"
                        "Korea, South 0 7;Korea, South 1 8;Korea, South 2 9;");
    CHECK_EQ_INT(covid_jhu_ncountries(j), 3);
    CHECK_EQ_INT(covid_jhu_ndays(j), 3);
    CHECK_EQ_INT(covid_jhu_first_day(j), day_of(2020, 1, 22));
    CHECK_EQ_INT(covid_jhu_nrows(j), 6);
    CHECK_EQ_INT(covid_jhu_country_rows(j, 0), 3);   /* the cruise ship row is Canada's */
    CHECK_EQ_INT(covid_jhu_find(j, "France"), 1);
    CHECK_EQ_INT(covid_jhu_find(j, "Spain"), -1);
    CHECK_EQ_INT(covid_jhu_value(j, 1, day_of(2020, 1, 24)), 32);
    CHECK_EQ_INT(covid_jhu_value(j, 1, day_of(2020, 1, 25)), -1);
    CHECK_EQ_INT(covid_jhu_kind(j), COVID_CONFIRMED);
    covid_jhu_rewind(j);   /* the same output again */
    buf again = BUF_INIT;
    jhu_render(j, &again);
    CHECK_STR(again.data, out.data);
    buf_release(&out);
    buf_release(&again);
    covid_jhu_close(j);
}

/* Rule N: the five non-country rows are left out by default and kept as
 * their own pseudo-countries on request; "Korea, North" is a country. */
TEST(covid_jhu_non_country_rows)
{
    static const char in[] = HDR
        ",Antarctica,-71.9499,23.347,0,0,11\r\n"
        ",Diamond Princess,0.0,0.0,1,2,3\r\n"
        ",\"Korea, North\",40.3399,127.5101,0,0,1\r\n"
        ",MS Zaandam,0.0,0.0,0,0,9\r\n"
        ",Summer Olympics 2020,35.6491,139.7737,0,0,865\r\n"
        ",Winter Olympics 2022,39.9042,116.4074,0,0,535\r\n";
    payi_err err;
    covid_jhu *j = jhu_mem(in, 0, &err);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_INT(covid_jhu_ncountries(j), 1);
        CHECK_STR(covid_jhu_country(j, 0), "Korea, North");
        CHECK_EQ_INT(covid_jhu_nrows(j), 6);
        covid_jhu_close(j);
    }
    j = jhu_mem(in, COVID_JHU_KEEP_NON_COUNTRIES, &err);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_INT(covid_jhu_ncountries(j), 6);
        CHECK_STR(covid_jhu_country(j, 1), "Diamond Princess");
        CHECK_EQ_INT(covid_jhu_value(j, 1, day_of(2020, 1, 24)), 3);
        covid_jhu_close(j);
    }
    int n = 0;
    for (; COVID_JHU_NON_COUNTRIES[n]; n++)
        CHECK(covid_jhu_is_non_country(COVID_JHU_NON_COUNTRIES[n]));
    CHECK_EQ_INT(n, 5);
    CHECK(!covid_jhu_is_non_country("Korea, North"));
    CHECK(!covid_jhu_is_non_country("Canada"));
}

TEST(covid_jhu_header_only_and_lf_and_bom)
{
    payi_err err;
    covid_jhu *j = jhu_mem(HDR, 0, &err);
    CHECK(j != NULL);
    if (j) {
        covid_point pt;
        CHECK(!covid_jhu_next(j, &pt));
        CHECK_EQ_INT(covid_jhu_ncountries(j), 0);
        covid_jhu_close(j);
    }
    j = jhu_mem("\xEF\xBB\xBFProvince/State,Country/Region,Lat,Long,12/31/20,1/1/21\n,X,0,0,4,5", 0, &err);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_INT(covid_jhu_first_day(j), day_of(2020, 12, 31));
        CHECK_EQ_INT(covid_jhu_value(j, 0, day_of(2021, 1, 1)), 5);
        covid_jhu_close(j);
    }
}

/* Each bad input: the error code and the start of its message (file:line:col). */
static void jhu_fails(int line, const char *in, const char *want_prefix, const char *want_text)
{
    payi_err err = {0};
    covid_jhu *j = jhu_mem(in, 0, &err);
    if (j) {
        test_fail(__FILE__, line, "accepted: %s", in);
        covid_jhu_close(j);
        return;
    }
    if (err.code != PAYI_VALIDATION || strncmp(err.msg, want_prefix, strlen(want_prefix)) != 0 ||
        !strstr(err.msg, want_text))
        test_fail(__FILE__, line, "got [%s] %s, want %s...%s", payi_code_word(err.code), err.msg, want_prefix,
                  want_text);
}

TEST(covid_jhu_errors)
{
    jhu_fails(__LINE__, "", "c.csv:1:1: ", "empty file: no header row");
    jhu_fails(__LINE__, "Province_State,Country/Region,Lat,Long,1/22/20\n", "c.csv:1:1: ",
              "column 1 is 'Province_State', expected 'Province/State'");
    jhu_fails(__LINE__, "Province/State,Country/Region,Lat\n", "c.csv:1:34: ", "missing column 4 'Long'");
    jhu_fails(__LINE__, "Province/State,Country/Region,Lat,Long\n", "c.csv:1:39: ", "no date columns after Long");
    jhu_fails(__LINE__, "Province/State,Country/Region,Lat,Long,1/22/20,1/32/20\n", "c.csv:1:48: ",
              "bad date header '1/32/20' in column 6: expected M/D/YY");
    jhu_fails(__LINE__, "Province/State,Country/Region,Lat,Long,2020-01-22\n", "c.csv:1:40: ", "bad date header");
    jhu_fails(__LINE__, "Province/State,Country/Region,Lat,Long,2/29/21\n", "c.csv:1:40: ", "bad date header");
    jhu_fails(__LINE__, "Province/State,Country/Region,Lat,Long,1/22/20,1/24/20\n", "c.csv:1:48: ",
              "date header '1/24/20' in column 6 should be 1/23/20");
    jhu_fails(__LINE__, HDR ",A,0,0,1,2,3\r\n,B,0,0,1,2x,3\r\n", "c.csv:3:10: ",
              "confirmed count '2x' is not a non-negative integer (Country/Region 'B', 1/23/20)");
    jhu_fails(__LINE__, HDR ",B,0,0,1,,3\r\n", "c.csv:2:10: ", "count '' is not");
    jhu_fails(__LINE__, HDR ",B,0,0,1,-2,3\r\n", "c.csv:2:10: ", "count '-2' is not");
    jhu_fails(__LINE__, HDR ",B,0,0,1,2.0,3\r\n", "c.csv:2:10: ", "count '2.0' is not");
    jhu_fails(__LINE__, HDR ",B,0,0,1,99999999999999999999,3\r\n", "c.csv:2:10: ", "is not a non-negative");
    jhu_fails(__LINE__, HDR ",B,0,0,1,2\r\n", "c.csv:2:11: ", "row has 6 fields, expected 7");
    jhu_fails(__LINE__, HDR "x,,0,0,1,2,3\r\n", "c.csv:2:3: ", "empty Country/Region");
    jhu_fails(__LINE__, HDR "P,B,0,0,1,2,3\r\n,B,0,0,1,1,1\r\nP,B,1,1,1,2,3\r\n", "c.csv:4:1: ",
              "duplicate row for Province/State 'P', Country/Region 'B' (first at line 2)");
    jhu_fails(__LINE__, HDR ",\"B\nC\",0,0,1,2,\"3\n", "c.csv:3:12: ", "quoted field is never closed");
}

TEST(covid_jhu_sum_overflow)
{
    payi_err err;
    covid_jhu *j = jhu_mem(HDR "a,B,0,0,1,9223372036854775807,3\r\nb,B,0,0,1,1,3\r\n", 0, &err);
    CHECK(j == NULL);
    CHECK(strstr(err.msg, "the sum of Country/Region 'B' on 1/23/20 overflows") != NULL);
    covid_jhu_close(j);
}

TEST(covid_jhu_open_missing_file)
{
    covid_jhu *j;
    payi_err err;
    CHECK_EQ_INT(covid_jhu_open(&j, "/nonexistent/t.csv", COVID_DEATHS, &err), PAYI_NOT_FOUND);
    CHECK(j == NULL);
    CHECK_STR(covid_kind_name(COVID_DEATHS), "deaths");
    CHECK_STR(covid_kind_name(COVID_CONFIRMED), "confirmed");
}

/* ---- WHO: the rules ---- */

#define WHO_HDR                                                                                      \
    "Date_reported,Country_code,Country,WHO_region,New_cases,Cumulative_cases,New_deaths,Cumulative_deaths\n"

static covid_who *who_mem(csv_reader **csv, const char *text, unsigned flags, payi_err *err)
{
    *csv = csv_open_mem(text, strlen(text), "w.csv", NULL);
    covid_who *w = NULL;
    if (covid_who_read(&w, *csv, flags, err) != PAYI_OK) {
        csv_close(*csv);
        *csv = NULL;
    }
    return w;
}

static void who_render_row(const covid_who_row *r, buf *out)
{
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(r->day, &y, &m, &d);
    buf_printf(out, "%04lld-%02u-%02u %s %s %s", (long long)y, m, d, r->country_code,
               r->country ? r->country : "NULL", r->who_region ? r->who_region : "NULL");
    const covid_count *c[4] = {&r->new_cases, &r->cumulative_cases, &r->new_deaths, &r->cumulative_deaths};
    for (int k = 0; k < 4; k++) {
        if (c[k]->present)
            buf_printf(out, " %lld", (long long)c[k]->value);
        else
            buf_puts(out, " -");
    }
    buf_printf(out, " @%llu;", (unsigned long long)r->line);
}

/* Renders every row, or the error. */
static void who_render(const char *in, unsigned flags, buf *out)
{
    csv_reader *csv;
    payi_err err;
    covid_who *w = who_mem(&csv, in, flags, &err);
    if (!w) {
        buf_printf(out, "ERR %s", err.msg);
        return;
    }
    covid_who_row r;
    int rc;
    while ((rc = covid_who_next(w, &r, &err)) > 0)
        who_render_row(&r, out);
    if (rc < 0)
        buf_printf(out, "ERR %s", err.msg);
    covid_who_close(w);
    csv_close(csv);
}

static void who_expect(int line, const char *in, unsigned flags, const char *want)
{
    buf out = BUF_INIT;
    who_render(in, flags, &out);
    const char *got = out.data ? out.data : "";
    if (strncmp(got, want, strlen(want)) != 0)
        test_fail(__FILE__, line, "got\n%s\nwant\n%s", got, want);
    buf_release(&out);
}

TEST(covid_who_typed_rows)
{
    static const char in[] = WHO_HDR
        "2020-01-12,CI,C\xEF\xBF\xBDte d'Ivoire,AFRO,,0,,0\n"
        "2020-01-05,NA,Namibia,AFRO,3,3,0,0\n"
        "2020-01-05,GF,French Guiana,,-2,7,1,\n";
    who_expect(__LINE__, in, 0,
               "2020-01-12 CI C\xEF\xBF\xBDte d'Ivoire AFRO - 0 - 0 @2;"
               "2020-01-05 NA Namibia AFRO 3 3 0 0 @3;"
               "2020-01-05 GF French Guiana NULL -2 7 1 - @4;");
    /* sorted by (code, day) */
    who_expect(__LINE__, in, COVID_WHO_SORTED,
               "2020-01-12 CI C\xEF\xBF\xBDte d'Ivoire AFRO - 0 - 0 @2;"
               "2020-01-05 GF French Guiana NULL -2 7 1 - @4;"
               "2020-01-05 NA Namibia AFRO 3 3 0 0 @3;");
    /* columns found by name; other columns ignored */
    who_expect(__LINE__,
               "Country,Extra,Country_code,Date_reported,WHO_region,Cumulative_deaths,New_deaths,Cumulative_cases,"
               "New_cases\r\nAruba,x,AW,2021-02-28,AMRO,4,1,30,2\r\n",
               0, "2021-02-28 AW Aruba AMRO 2 30 1 4 @2;");
}

TEST(covid_who_sorted_order)
{
    static const char in[] = WHO_HDR
        "2020-01-19,ZW,Zimbabwe,AFRO,,0,,0\n"
        "2020-01-12,AW,Aruba,AMRO,,1,,0\n"
        "2020-01-19,AW,Aruba,AMRO,1,2,,0\n"
        "2020-01-05,AW,Aruba,AMRO,,0,,0\n"
        "2020-01-05,ZW,Zimbabwe,AFRO,,0,,0\n";
    buf out = BUF_INIT;
    who_render(in, COVID_WHO_SORTED, &out);
    CHECK_STR(out.data, "2020-01-05 AW Aruba AMRO - 0 - 0 @5;2020-01-12 AW Aruba AMRO - 1 - 0 @3;"
                        "2020-01-19 AW Aruba AMRO 1 2 - 0 @4;2020-01-05 ZW Zimbabwe AFRO - 0 - 0 @6;"
                        "2020-01-19 ZW Zimbabwe AFRO - 0 - 0 @2;");
    buf_release(&out);
}

TEST(covid_who_errors)
{
    who_expect(__LINE__, "", 0, "ERR w.csv:1:1: empty file: no header row");
    who_expect(__LINE__, "Date_reported,Country_code,Country,WHO_region,New_cases,Cumulative_cases,New_deaths\n", 0,
               "ERR w.csv:1:1: missing column 'Cumulative_deaths' in the header");
    who_expect(__LINE__, "Date_reported,Country_code,Country,WHO_region,New_cases,Cumulative_cases,New_deaths,"
                         "Cumulative_deaths,Country\n", 0, "ERR w.csv:1:103: column 'Country' appears twice");
    who_expect(__LINE__, WHO_HDR "2020-01-05,AW,Aruba,AMRO,,0,,0\n2020-1-12,AW,Aruba,AMRO,,0,,0\n", 0,
               "2020-01-05 AW Aruba AMRO - 0 - 0 @2;ERR w.csv:3:1: Date_reported '2020-1-12' is not a date YYYY-MM-DD");
    who_expect(__LINE__, WHO_HDR "2020-02-30,AW,Aruba,AMRO,,0,,0\n", 0, "ERR w.csv:2:1: Date_reported '2020-02-30'");
    who_expect(__LINE__, WHO_HDR "2020-01-05,,Aruba,AMRO,,0,,0\n", 0, "ERR w.csv:2:12: empty Country_code");
    who_expect(__LINE__, WHO_HDR "2020-01-05,AW,Aruba,AMRO,,1.5,,0\n", 0,
               "ERR w.csv:2:27: Cumulative_cases '1.5' is not an integer");
    who_expect(__LINE__, WHO_HDR "2020-01-05,AW,Aruba,AMRO,,0,,0,9\n", 0,
               "ERR w.csv:2:32: row has 9 fields, expected 8");
    who_expect(__LINE__, WHO_HDR "2020-01-05,AW,Aruba,AMRO,,0,,0\n2020-01-12,AW,Aruba,AMRO,x,0,,0\n",
               COVID_WHO_SORTED, "ERR w.csv:3:26: New_cases 'x' is not an integer");
    who_expect(__LINE__, WHO_HDR "2020-01-05,AW,Aruba,AMRO,,0,,0\n2020-01-12,BB,B,AMRO,,0,,0\n"
                                 "2020-01-05,AW,Aruba,AMRO,,0,,0\n",
               COVID_WHO_SORTED, "ERR w.csv:4:1: a second row for Country_code 'AW' on 2020-01-05 (first at line 2)");
}

/* The path-opening entry points (plain files). */
TEST(covid_open_paths)
{
    char jpath[600], wpath[600];
    const char *dir = test_tmpdir();
    snprintf(jpath, sizeof jpath, "%s/deaths.csv", dir);
    snprintf(wpath, sizeof wpath, "%s/who.csv", dir);
    FILE *f = fopen(jpath, "wb");
    fputs(HDR ",\"Korea, South\",1,1,0,1,2\r\n", f);
    fclose(f);
    f = fopen(wpath, "wb");
    fputs(WHO_HDR "2020-01-05,KR,Republic of Korea,WPRO,,0,,0\n", f);
    fclose(f);

    covid_jhu *j;
    payi_err err;
    CHECK_EQ_INT(covid_jhu_open(&j, jpath, COVID_DEATHS, &err), PAYI_OK);
    if (j) {
        CHECK_EQ_INT(covid_jhu_kind(j), COVID_DEATHS);
        CHECK_EQ_INT(covid_jhu_value(j, 0, day_of(2020, 1, 24)), 2);
        covid_jhu_close(j);
    }
    for (unsigned flags = 0; flags <= COVID_WHO_SORTED; flags++) {
        covid_who *w;
        CHECK_EQ_INT(covid_who_open(&w, wpath, flags, &err), PAYI_OK);
        if (!w)
            continue;
        covid_who_row r;
        CHECK_EQ_INT(covid_who_next(w, &r, &err), 1);
        CHECK_STR(r.country, "Republic of Korea");
        CHECK_EQ_INT(covid_who_next(w, &r, &err), 0);
        covid_who_close(w);   /* closes the csv it opened */
    }
    covid_who *w;
    CHECK_EQ_INT(covid_who_open(&w, jpath, 0, &err), PAYI_VALIDATION);   /* a JHU file is not a WHO file */
    CHECK(w == NULL);
    CHECK(strstr(err.msg, "deaths.csv:1:1: missing column 'Date_reported'") != NULL);
}

/* ---- the real files ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define FNV_START 0xcbf29ce484222325ULL

/* examples/covid/data from the working directory (the repository root, as
 * tests/run.sh runs), else from this file's own path. */
static const char *data_dir(void)
{
    static char dir[1024];
    const char *env = getenv("PAYI_COVID_DATA");
    if (env) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    snprintf(dir, sizeof dir, "examples/covid/data");
    if (access("examples/covid/data/SOURCE.md", R_OK) == 0)
        return dir;
    const char *self = __FILE__, *cut = strstr(self, "tests/unit/");
    snprintf(dir, sizeof dir, "%.*sexamples/covid/data", cut ? (int)(cut - self) : 0, self);
    return dir;
}

/* The uncompressed bytes of examples/covid/data/<name>.gz, via gzip -dc. */
static bool gunzip(const char *name, buf *out)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/%s.gz'", data_dir(), name);
    FILE *p = popen(cmd, "r");
    if (!p) {
        test_fail(__FILE__, __LINE__, "popen %s failed", cmd);
        return false;
    }
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, p)) > 0)
        buf_put(out, tmp, n);
    int st = pclose(p);
    if (st != 0 || out->len == 0) {
        test_fail(__FILE__, __LINE__, "%s: exit status %d, %zu bytes", cmd, st, out->len);
        return false;
    }
    return true;
}

static const char CONFIRMED[] = "time_series_covid19_confirmed_global.csv";
static const char DEATHS[] = "time_series_covid19_deaths_global.csv";
static const char WHO[] = "WHO-COVID-19-global-data.csv";

/* Reads a JHU file straight from the gzip pipe (a FILE*, as ingest would). */
static covid_jhu *jhu_pipe(const char *name, covid_kind kind, unsigned flags)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/%s.gz'", data_dir(), name);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    csv_reader *csv = csv_open_file(p, name, NULL);
    covid_jhu *j = NULL;
    payi_err err;
    if (covid_jhu_read(&j, csv, kind, flags, &err) != PAYI_OK)
        test_fail(__FILE__, __LINE__, "%s", err.msg);
    csv_close(csv);
    if (pclose(p) != 0)
        test_fail(__FILE__, __LINE__, "%s failed", cmd);
    return j;
}

static uint64_t jhu_hash(covid_jhu *j, int64_t *global_last)
{
    uint64_t h = FNV_START;
    char line[256];
    covid_point pt;
    int64_t last = covid_jhu_first_day(j) + (int64_t)covid_jhu_ndays(j) - 1;
    *global_last = 0;
    covid_jhu_rewind(j);
    while (covid_jhu_next(j, &pt)) {
        int n = snprintf(line, sizeof line, "%s,%lld,%lld\n", pt.country, (long long)pt.day, (long long)pt.cumulative);
        h = fnv(h, line, (size_t)n);
        if (pt.day == last)
            *global_last += pt.cumulative;
    }
    return h;
}

static int64_t value(covid_jhu *j, const char *country, int y, unsigned m, unsigned d)
{
    ptrdiff_t i = covid_jhu_find(j, country);
    if (i < 0) {
        test_fail(__FILE__, __LINE__, "no country %s", country);
        return -1;
    }
    return covid_jhu_value(j, (size_t)i, day_of(y, m, d));
}

/* Expected values: Python, csv.reader over the original file; rows whose
 * Country/Region is one of the 5 non-countries dropped; every other row's
 * counts added into its Country/Region; countries in sorted() order, days
 * in column order; FNV-1a 64 over "country,days-since-1970,value\n". */
TEST(covid_real_jhu_confirmed)
{
    covid_jhu *j = jhu_pipe(CONFIRMED, COVID_CONFIRMED, 0);
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK_EQ_INT(covid_jhu_nrows(j), 289);
    CHECK_EQ_INT(covid_jhu_ncountries(j), 196);   /* 201 Country/Region values - 5 */
    CHECK_EQ_INT(covid_jhu_ndays(j), 1143);
    CHECK_EQ_INT(covid_jhu_first_day(j), day_of(2020, 1, 22));
    CHECK_EQ_INT(value(j, "Cote d'Ivoire", 2023, 3, 9), 88263);
    CHECK_EQ_INT(value(j, "Cote d'Ivoire", 2021, 6, 30), 48305);
    /* provinces only */
    CHECK_EQ_INT(value(j, "Australia", 2023, 3, 9), 11399460);
    CHECK_EQ_INT(value(j, "Australia", 2021, 6, 30), 30643);
    CHECK_EQ_INT(value(j, "Canada", 2023, 3, 9), 4617095);
    CHECK_EQ_INT(value(j, "Canada", 2021, 6, 30), 1419748);
    CHECK_EQ_INT(value(j, "China", 2023, 3, 9), 4903524);
    CHECK_EQ_INT(value(j, "China", 2021, 6, 30), 113577);
    /* a country row plus territories */
    CHECK_EQ_INT(value(j, "France", 2023, 3, 9), 39866718);
    CHECK_EQ_INT(value(j, "United Kingdom", 2023, 3, 9), 24658705);
    CHECK_EQ_INT(value(j, "Denmark", 2023, 3, 9), 3451036);
    CHECK_EQ_INT(value(j, "Netherlands", 2023, 3, 9), 8712835);
    CHECK_EQ_INT(value(j, "New Zealand", 2023, 3, 9), 2236114);
    CHECK_EQ_INT(value(j, "Korea, North", 2023, 3, 9), 1);
    CHECK_EQ_INT(covid_jhu_country_rows(j, (size_t)covid_jhu_find(j, "Canada")), 16);
    CHECK_EQ_INT(covid_jhu_country_rows(j, (size_t)covid_jhu_find(j, "China")), 34);
    CHECK_EQ_INT(covid_jhu_find(j, "Diamond Princess"), -1);
    int64_t global;
    CHECK_EQ_U64(jhu_hash(j, &global), 0x954143d3bc125959ULL);
    CHECK_EQ_INT(global, 676568017);   /* SOURCE.md's 676,570,149 less the 2,132 of the non-countries */
    covid_jhu_close(j);

    j = jhu_pipe(CONFIRMED, COVID_CONFIRMED, COVID_JHU_KEEP_NON_COUNTRIES);
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK_EQ_INT(covid_jhu_ncountries(j), 201);
    CHECK_EQ_U64(jhu_hash(j, &global), 0x8e43d4cb400bcf45ULL);
    CHECK_EQ_INT(global, 676570149);   /* SOURCE.md's global sum on 3/9/23 */
    covid_jhu_close(j);
}

TEST(covid_real_jhu_deaths)
{
    covid_jhu *j = jhu_pipe(DEATHS, COVID_DEATHS, 0);
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK_EQ_INT(covid_jhu_ncountries(j), 196);
    CHECK_EQ_INT(covid_jhu_ndays(j), 1143);
    CHECK_EQ_INT(value(j, "Cote d'Ivoire", 2023, 3, 9), 834);
    CHECK_EQ_INT(value(j, "Cote d'Ivoire", 2021, 6, 30), 313);
    CHECK_EQ_INT(value(j, "Australia", 2023, 3, 9), 19574);
    CHECK_EQ_INT(value(j, "Canada", 2023, 3, 9), 51720);
    CHECK_EQ_INT(value(j, "China", 2023, 3, 9), 101056);
    CHECK_EQ_INT(value(j, "China", 2021, 6, 30), 5033);
    CHECK_EQ_INT(value(j, "France", 2023, 3, 9), 166176);
    CHECK_EQ_INT(value(j, "United Kingdom", 2023, 3, 9), 220721);
    CHECK_EQ_INT(value(j, "Korea, North", 2023, 3, 9), 6);
    int64_t global;
    CHECK_EQ_U64(jhu_hash(j, &global), 0x8a02856c2bc78e4dULL);
    CHECK_EQ_INT(global, 6881787);
    covid_jhu_close(j);
    j = jhu_pipe(DEATHS, COVID_DEATHS, COVID_JHU_KEEP_NON_COUNTRIES);
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK_EQ_U64(jhu_hash(j, &global), 0xeab420066bd9ba17ULL);
    CHECK_EQ_INT(global, 6881802);   /* SOURCE.md's global sum */
    covid_jhu_close(j);
}

typedef struct step_src {
    const char *data;
    size_t len, pos;
} step_src;

static ptrdiff_t step7(void *ctx, char *dst, size_t cap)
{
    step_src *s = ctx;
    size_t n = s->len - s->pos < 7 ? s->len - s->pos : 7;
    if (n > cap)
        n = cap;
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
    return (ptrdiff_t)n;
}

/* Reading again, from memory, from a 7-bytes-at-a-time source with a small
 * buffer, and from the pipe, gives the same output point for point. */
TEST(covid_real_jhu_reread_identical)
{
    buf raw = BUF_INIT;
    if (!gunzip(CONFIRMED, &raw))
        return;
    CHECK_EQ_U64(raw.len, 1820194);
    covid_jhu *a = jhu_pipe(CONFIRMED, COVID_CONFIRMED, 0), *b = NULL, *c = NULL;
    payi_err err;
    csv_reader *csv = csv_open_mem(raw.data, raw.len, CONFIRMED, NULL);
    CHECK_EQ_INT(covid_jhu_read(&b, csv, COVID_CONFIRMED, 0, &err), PAYI_OK);
    csv_close(csv);
    step_src s = {raw.data, raw.len, 0};
    csv = csv_open_fn(step7, &s, CONFIRMED, &(csv_options){.chunk = 1024});
    CHECK_EQ_INT(covid_jhu_read(&c, csv, COVID_CONFIRMED, 0, &err), PAYI_OK);
    csv_close(csv);
    CHECK(a && b && c);
    if (a && b && c) {
        covid_point pa, pb, pc;
        size_t n = 0, diff = 0;
        while (covid_jhu_next(a, &pa)) {
            bool okb = covid_jhu_next(b, &pb), okc = covid_jhu_next(c, &pc);
            if (!okb || !okc || strcmp(pa.country, pb.country) || strcmp(pa.country, pc.country) ||
                pa.day != pb.day || pa.day != pc.day || pa.cumulative != pb.cumulative ||
                pa.cumulative != pc.cumulative)
                diff++;
            n++;
        }
        CHECK(!covid_jhu_next(b, &pb));
        CHECK(!covid_jhu_next(c, &pc));
        CHECK_EQ_INT(diff, 0);
        CHECK_EQ_INT(n, 196 * 1143);
    }
    covid_jhu_close(a);
    covid_jhu_close(b);
    covid_jhu_close(c);
    buf_release(&raw);
}

/* A damaged real file: the error names the file, line and column.  (Line
 * 100 is Cote d'Ivoire; its 3/9/23 value starts at byte column 6502.) */
TEST(covid_real_jhu_damaged)
{
    buf raw = BUF_INIT;
    if (!gunzip(CONFIRMED, &raw))
        return;
    char *ci = strstr(raw.data, ",88255,88263\r\n");
    CHECK(ci != NULL);
    if (ci) {
        ci[9] = 'x';   /* 88263 -> 88x63 */
        csv_reader *csv = csv_open_mem(raw.data, raw.len, CONFIRMED, NULL);
        covid_jhu *j;
        payi_err err;
        CHECK_EQ_INT(covid_jhu_read(&j, csv, COVID_CONFIRMED, 0, &err), PAYI_VALIDATION);
        CHECK_STR(err.msg, "time_series_covid19_confirmed_global.csv:100:6502: confirmed count '88x63' is not a "
                           "non-negative integer (Country/Region 'Cote d'Ivoire', 3/9/23)");
        csv_close(csv);
    }
    buf_release(&raw);
}

static void who_hash_row(uint64_t *h, const covid_who_row *r)
{
    char line[512];
    const covid_count *c[4] = {&r->new_cases, &r->cumulative_cases, &r->new_deaths, &r->cumulative_deaths};
    char v[4][24];
    for (int k = 0; k < 4; k++)
        snprintf(v[k], sizeof v[k], c[k]->present ? "%lld" : "NA", (long long)c[k]->value);
    int n = snprintf(line, sizeof line, "%s,%lld,%s,%s,%s,%s,%s,%s\n", r->country_code, (long long)r->day,
                     r->country ? r->country : "", r->who_region ? r->who_region : "", v[0], v[1], v[2], v[3]);
    *h = fnv(*h, line, (size_t)n);
}

static covid_who *who_pipe(const char *name, unsigned flags, FILE **pipe, csv_reader **csv)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/%s.gz'", data_dir(), name);
    *pipe = popen(cmd, "r");
    if (!*pipe)
        return NULL;
    *csv = csv_open_file(*pipe, name, NULL);
    covid_who *w = NULL;
    payi_err err;
    if (covid_who_read(&w, *csv, flags, &err) != PAYI_OK)
        test_fail(__FILE__, __LINE__, "%s", err.msg);
    return w;
}

/* Expected values: Python, csv.reader over the original; hash lines as in
 * who_hash_row, in file order, and sorted by (code bytes, date, line). */
TEST(covid_real_who)
{
    for (int sorted = 0; sorted < 2; sorted++) {
        FILE *p;
        csv_reader *csv;
        covid_who *w = who_pipe(WHO, sorted ? COVID_WHO_SORTED : 0, &p, &csv);
        CHECK(w != NULL);
        if (!w)
            return;
        covid_who_row r;
        payi_err err;
        int rc;
        size_t n = 0, no_new_cases = 0, no_new_deaths = 0, no_region = 0, codes = 0, bad_sums = 0;
        uint64_t h = FNV_START;
        char prev_code[16] = "";
        int64_t prev_cum = 0, prev_day = 0;
        while ((rc = covid_who_next(w, &r, &err)) > 0) {
            n++;
            who_hash_row(&h, &r);
            no_new_cases += !r.new_cases.present;
            no_new_deaths += !r.new_deaths.present;
            no_region += !r.who_region;
            if (n == 1 && !sorted) {
                CHECK_STR(r.country_code, "AW");
                CHECK_EQ_INT(r.day, day_of(2020, 1, 5));
                CHECK_EQ_U64(r.line, 2);
            }
            if (!strcmp(r.country_code, "CI") && r.day == day_of(2025, 9, 28)) {
                CHECK_EQ_INT(r.cumulative_cases.value, 88524);
                CHECK_EQ_INT(r.cumulative_deaths.value, 835);
                CHECK_STR(r.country, "C\xEF\xBF\xBDte d'Ivoire");   /* WHO's own U+FFFD */
            }
            if (sorted) {   /* Cumulative[w] == Cumulative[w-1] + New[w], week after week */
                if (strcmp(prev_code, r.country_code) != 0) {
                    codes++;
                    snprintf(prev_code, sizeof prev_code, "%s", r.country_code);
                    CHECK_EQ_INT(r.day, day_of(2020, 1, 5));
                } else if (r.day != prev_day + 7 ||
                           r.cumulative_cases.value != prev_cum + (r.new_cases.present ? r.new_cases.value : 0)) {
                    bad_sums++;
                }
                prev_day = r.day;
                prev_cum = r.cumulative_cases.value;
            }
        }
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(n, 72000);
        CHECK_EQ_INT(no_new_cases, 23038);
        CHECK_EQ_INT(no_new_deaths, 36276);
        CHECK_EQ_INT(no_region, 5400);
        if (sorted) {
            CHECK_EQ_INT(codes, 240);
            CHECK_EQ_INT(bad_sums, 0);
            CHECK_EQ_U64(h, 0xec5157802757331fULL);
        } else {
            CHECK_EQ_U64(h, 0xb81695c00472dfebULL);
        }
        covid_who_close(w);
        csv_close(csv);
        CHECK_EQ_INT(pclose(p), 0);
    }
}
