/* backtest.c — how good is the 14-day renewal forecast (src/gen/forecast.c)
 * on real data?  Rolling-origin back-test on the JHU CSSE confirmed series.
 *
 * For every Country/Region of time_series_covid19_confirmed_global.csv
 * (provinces summed into their country; daily = cumulative[t] -
 * cumulative[t-1] with cumulative[0] = 0, negatives clamped to 0, as the Rt
 * generators do), the series is streamed through rt (SI discr_si(4.7, 2.9),
 * window 7, prior 5/5).  At each origin day T = 61, 68, 75, ... (every 7th
 * day after day 60, while T + 14 is still in the data; --step) we forecast days
 * T+1..T+14 from what was known on day T and score it against what was then
 * reported:
 *   - the renewal forecast's median (and its deterministic point path),
 *   - the naive baseline (mean of the last 7 days, flat),
 *   - absolute error, and a scale-free error: MASE, each forecast's mean
 *     absolute error divided by the in-sample mean |I_s - I_{s-7}| over the
 *     28 days before T (the weekly seasonal naive: a scale every series has;
 *     forecasts whose scale is 0 are left out of MASE);
 *   - coverage of the 95% and 50% prediction intervals.
 * Overall, by horizon, and for Côte d'Ivoire.  "Active" origins are those
 * with at least 70 cases in the last 7 days (EpiEstim warns below ~11 cases
 * in a window; in quiet series every method is right by saying 0).
 *
 * Usage: backtest [confirmed.csv] [--poisson] [--rmax R] [--step N]
 *   --poisson forces φ = 0 (Poisson noise) to show what the dispersion buys;
 *   --rmax sets the forecast's cap on R (default: the forecast's own);
 *   --step N puts origins every N days (default 7: then every origin is the
 *     same weekday, a Sunday, and "horizon h" is also "weekday h"; N = 5
 *     spreads them over the week).
 *
 * The CSV reader here is throwaway code for this program only (the product
 * reads these files in src/ingest): RFC 4180 quoting ("Korea, South"),
 * CRLF or LF.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/forecast.h"
#include "gen/rt.h"

#define HORIZON 14
#define FIRST_ORIGIN 61
#define ORIGIN_STEP 7   /* default; --step changes it */
#define ACTIVE_CASES 70

/* ---- CSV ---- */

typedef struct {
    const char *p, *end;
    char *field;         /* the current field, unquoted, NUL-terminated */
    size_t cap;
} csv;

/* Read the next field into c->field; *eol tells whether it ended its
 * record.  Returns false at the end of the input. */
static bool csv_field(csv *c, bool *eol)
{
    if (c->p >= c->end)
        return false;
    size_t n = 0;
    bool quoted = *c->p == '"';
    if (quoted)
        c->p++;
    for (;;) {
        if (n + 1 >= c->cap) {
            c->cap = c->cap ? 2 * c->cap : 256;
            c->field = realloc(c->field, c->cap);
            if (!c->field) {
                perror("realloc");
                exit(1);
            }
        }
        if (c->p >= c->end) {
            *eol = true;
            break;
        }
        char ch = *c->p;
        if (quoted) {
            c->p++;
            if (ch == '"') {
                if (c->p < c->end && *c->p == '"') {   /* "" is one quote */
                    c->field[n++] = '"';
                    c->p++;
                    continue;
                }
                quoted = false;   /* closing quote: the field ends at , or newline */
                continue;
            }
            c->field[n++] = ch;
            continue;
        }
        if (ch == ',') {
            c->p++;
            *eol = false;
            break;
        }
        if (ch == '\r' || ch == '\n') {
            c->p += (ch == '\r' && c->p + 1 < c->end && c->p[1] == '\n') ? 2 : 1;
            *eol = true;
            break;
        }
        c->field[n++] = ch;
        c->p++;
    }
    c->field[n] = '\0';
    return true;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* ---- the countries ---- */

typedef struct {
    char name[96];
    double *cum;   /* summed over provinces, ndays values */
} country;

typedef struct {
    country *c;
    int n, cap, ndays;
} dataset;

static country *country_get(dataset *d, const char *name)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->c[i].name, name) == 0)
            return &d->c[i];
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->c = realloc(d->c, (size_t)d->cap * sizeof *d->c);
    }
    country *c = &d->c[d->n++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->cum = calloc((size_t)d->ndays, sizeof *c->cum);
    return c;
}

static void load(dataset *d, const char *path)
{
    size_t len;
    char *text = slurp(path, &len);
    csv c = {text, text + len, NULL, 0};
    bool eol = false;
    int col = 0;
    /* Header: Province/State,Country/Region,Lat,Long,dates... */
    while (csv_field(&c, &eol)) {
        col++;
        if (eol)
            break;
    }
    d->ndays = col - 4;
    if (d->ndays < 1) {
        fprintf(stderr, "%s: no date columns\n", path);
        exit(1);
    }
    int rows = 0;
    for (;;) {
        country *ct = NULL;
        col = 0;
        bool any = false;
        while (csv_field(&c, &eol)) {
            any = true;
            if (col == 1)
                ct = country_get(d, c.field);
            else if (col >= 4 && ct && col - 4 < d->ndays)
                ct->cum[col - 4] += strtod(c.field, NULL);
            col++;
            if (eol)
                break;
        }
        if (!any)
            break;
        if (col != d->ndays + 4) {
            fprintf(stderr, "%s: row %d has %d fields, expected %d\n", path, rows + 2, col, d->ndays + 4);
            exit(1);
        }
        rows++;
    }
    fprintf(stderr, "backtest: %d rows, %d countries, %d days\n", rows, d->n, d->ndays);
    free(c.field);
    free(text);
}

/* ---- scores ---- */

typedef struct {
    double ae_model, ae_point, ae_naive;   /* sums of absolute errors */
    double n;                              /* forecast-days scored */
    double in95, in50;
    double mase_model, mase_naive, nmase;  /* sums of per-forecast MASE */
    double wins, nfc;                      /* forecasts where the model's MAE < naive's */
} score;

static void score_add(score *s, const score *t)
{
    s->ae_model += t->ae_model, s->ae_point += t->ae_point, s->ae_naive += t->ae_naive;
    s->n += t->n, s->in95 += t->in95, s->in50 += t->in50;
    s->mase_model += t->mase_model, s->mase_naive += t->mase_naive, s->nmase += t->nmase;
    s->wins += t->wins, s->nfc += t->nfc;
}

typedef struct {
    score all, active, by_h[HORIZON];   /* by_h: active origins */
    int countries, origins, active_origins;
    double phi_sum;
} results;

static void results_add(results *r, const results *one)
{
    score_add(&r->all, &one->all);
    score_add(&r->active, &one->active);
    for (int h = 0; h < HORIZON; h++)
        score_add(&r->by_h[h], &one->by_h[h]);
    r->countries++;
    r->origins += one->origins;
    r->active_origins += one->active_origins;
    r->phi_sum += one->phi_sum;
}

/* In-sample scale: mean |I_s - I_{s-7}| over the 28 days up to T (index T-1). */
static double seasonal_scale(const double *daily, int T)
{
    double s = 0;
    int n = 0;
    for (int t = T - 28; t < T; t++)
        if (t - 7 >= 0) {
            s += fabs(daily[t] - daily[t - 7]);
            n++;
        }
    return n ? s / n : 0;
}

typedef struct {
    bool poisson;
    double r_max;   /* 0: the forecast's default */
    int step;       /* days between origins */
} options;

static void backtest_country(const double *daily, int ndays, const double *w, size_t nw, const options *opt,
                             results *res)
{
    rt_config rc;
    rt_config_default(&rc);
    rt_state *st;
    payi_err err;
    if (rt_open(&st, w, nw, &rc, &err) != PAYI_OK) {
        fprintf(stderr, "rt_open: %s\n", err.msg);
        exit(1);
    }
    size_t K;
    const double *wk = rt_si(st, &K);
    forecast_config fc;
    forecast_config_default(&fc);
    if (opt->poisson)
        fc.dispersion = 0;
    if (opt->r_max > 0)
        fc.r_max = opt->r_max;
    double hist[256];
    rt_estimate e;
    for (int T = 1; T <= ndays; T++) {
        bool have = rt_push(st, (int64_t)daily[T - 1], &e);
        if (!have || T < FIRST_ORIGIN || (T - FIRST_ORIGIN) % opt->step != 0 || T + HORIZON > ndays)
            continue;
        /* History for Λ and for the dispersion fit (last 28 + 6 days). */
        size_t nh = K - 1 > 34 ? K - 1 : 34;
        if (nh > (size_t)T)
            nh = (size_t)T;
        memcpy(hist, daily + T - (int)nh, nh * sizeof *hist);
        forecast_day f[HORIZON], nv[HORIZON];
        forecast_info info;
        if (forecast_renewal(wk, K, hist, nh, e.shape, e.scale, &fc, f, &info, &err) != PAYI_OK) {
            fprintf(stderr, "forecast: %s\n", err.msg);
            exit(1);
        }
        forecast_naive(hist, nh, HORIZON, nv);
        double week = 0;
        for (int i = T - 7; i < T; i++)
            week += daily[i];
        bool active = week >= ACTIVE_CASES;
        double scale = seasonal_scale(daily, T);
        score s = {0};
        score hs[HORIZON] = {{0}};
        for (int h = 0; h < HORIZON; h++) {
            double y = daily[T + h];
            double am = fabs(f[h].median - y), ap = fabs(f[h].point - y), an = fabs(nv[h].median - y);
            hs[h] = (score){.ae_model = am, .ae_point = ap, .ae_naive = an, .n = 1,
                            .in95 = f[h].q025 <= y && y <= f[h].q975,
                            .in50 = f[h].q25 <= y && y <= f[h].q75};
            score_add(&s, &hs[h]);
        }
        s.nfc = 1;
        s.wins = s.ae_model < s.ae_naive;
        if (scale > 0) {
            s.mase_model = s.ae_model / HORIZON / scale;
            s.mase_naive = s.ae_naive / HORIZON / scale;
            s.nmase = 1;
        }
        score_add(&res->all, &s);
        res->origins++;
        if (active) {
            score_add(&res->active, &s);
            for (int h = 0; h < HORIZON; h++)
                score_add(&res->by_h[h], &hs[h]);
            res->active_origins++;
            res->phi_sum += info.dispersion;
        }
    }
    rt_close(st);
}

static void print_row(const char *label, const score *s)
{
    printf("| %s | %.0f | %.1f | %.1f | %.1f | %.3f | %.2f | %.2f | %.0f%% | %.1f%% | %.1f%% |\n", label, s->nfc,
           s->ae_model / s->n, s->ae_point / s->n, s->ae_naive / s->n, s->ae_model / s->ae_naive,
           s->nmase ? s->mase_model / s->nmase : NAN, s->nmase ? s->mase_naive / s->nmase : NAN,
           100 * s->wins / s->nfc, 100 * s->in95 / s->n, 100 * s->in50 / s->n);
}

static void print_header(void)
{
    printf("| set | forecasts | MAE median | MAE point | MAE naive | rel. MAE | MASE model | MASE naive | "
           "model wins | 95%% cover | 50%% cover |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
}

static double fc_default_rmax(void)
{
    forecast_config fc;
    forecast_config_default(&fc);
    return fc.r_max;
}

int main(int argc, char **argv)
{
    const char *path = "../shared/data/covid/time_series_covid19_confirmed_global.csv";
    options opt = {.poisson = false, .r_max = 0, .step = ORIGIN_STEP};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--poisson") == 0)
            opt.poisson = true;
        else if (strcmp(argv[i], "--rmax") == 0 && i + 1 < argc)
            opt.r_max = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--step") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
            opt.step = atoi(argv[++i]);
        else
            path = argv[i];
    }
    dataset d = {0};
    load(&d, path);

    double *w = malloc((size_t)d.ndays * sizeof *w);
    if (rt_discr_si(4.7, 2.9, (size_t)d.ndays, w, NULL) != PAYI_OK)
        return 1;
    double *daily = malloc((size_t)d.ndays * sizeof *daily);
    results all = {0}, civ = {0};
    for (int i = 0; i < d.n; i++) {
        const country *c = &d.c[i];
        for (int t = 0; t < d.ndays; t++) {
            double v = c->cum[t] - (t ? c->cum[t - 1] : 0);
            daily[t] = v > 0 ? v : 0;
        }
        results one = {0};
        backtest_country(daily, d.ndays, w, (size_t)d.ndays, &opt, &one);
        results_add(&all, &one);
        if (strcmp(c->name, "Cote d'Ivoire") == 0)
            results_add(&civ, &one);
    }

    printf("Origins every %d days from day %d. R cap: %g. ", opt.step, FIRST_ORIGIN,
           opt.r_max > 0 ? opt.r_max : fc_default_rmax());
    printf("Noise model: %s. Countries: %d; origins: %d (%d active, >= %d cases in the last 7 days).\n\n",
           opt.poisson ? "Poisson (phi = 0)" : "negative binomial, phi fitted on the last 28 days", all.countries,
           all.origins, all.active_origins, ACTIVE_CASES);
    print_header();
    print_row("all countries, all origins", &all.all);
    print_row("all countries, active origins", &all.active);
    print_row("Cote d'Ivoire, all origins", &civ.all);
    print_row("Cote d'Ivoire, active origins", &civ.active);
    printf("\nMean fitted phi over active origins: all %.3f, Cote d'Ivoire %.3f.\n\n",
           all.phi_sum / all.active_origins, civ.active_origins ? civ.phi_sum / civ.active_origins : NAN);
    printf("By horizon (all countries, active origins):\n\n");
    printf("| h | MAE median | MAE naive | rel. MAE | 95%% cover | 50%% cover |\n|---:|---:|---:|---:|---:|---:|\n");
    for (int h = 0; h < HORIZON; h++) {
        const score *s = &all.by_h[h];
        if (h == 0 || h == 6 || h == 13 || h == 2 || h == 9)
            printf("| %d | %.1f | %.1f | %.3f | %.1f%% | %.1f%% |\n", h + 1, s->ae_model / s->n,
                   s->ae_naive / s->n, s->ae_model / s->ae_naive, 100 * s->in95 / s->n, 100 * s->in50 / s->n);
    }
    for (int i = 0; i < d.n; i++)
        free(d.c[i].cum);
    free(d.c);
    free(w);
    free(daily);
    return 0;
}
