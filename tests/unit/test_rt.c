/* Tests for src/gen/rt: Cori et al. (2013) Rt against EpiEstim's full
 * precision output (tests/data/rt, copied from shared/data/rt with its
 * SOURCE.md), at the tolerances SOURCE.md gives:
 *   shape, scale, mean, std: 1e-12 relative with w read from the CSV files,
 *                            1e-10 when w is recomputed by rt_discr_si;
 *   quantiles:               1e-9 relative.
 * Run with TEST_VERBOSE=1 to see the largest relative error per column. */
#include <math.h>
#include <stdlib.h>

#include "gen/rt.h"
#include "test.h"

#define DATA "tests/data/rt/"

/* ---- a small numeric CSV table: header row of names, numbers or NA ---- */

typedef struct {
    int ncol, nrow;
    char names[16][32];
    double *v;   /* nrow x ncol, row-major */
} table;

static bool table_load(table *t, const char *file)
{
    char path[256], line[1024];
    snprintf(path, sizeof path, DATA "%s", file);
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) {
        test_fail(__FILE__, __LINE__, "cannot open %s (tests run from the repository root)", path);
        return false;
    }
    size_t cap = 0;
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        if (!header && (size_t)t->nrow == cap) {
            cap = cap ? 2 * cap : 64;
            t->v = realloc(t->v, cap * (size_t)t->ncol * sizeof *t->v);
        }
        double *row = header ? NULL : t->v + (size_t)t->nrow * (size_t)t->ncol;
        int col = 0;
        for (char *p = line, *end; p && col < 16; p = end ? end + 1 : NULL, col++) {
            end = strchr(p, ',');
            if (end)
                *end = '\0';
            if (header) {
                size_t len = strnlen(p, sizeof t->names[col] - 1);
                memcpy(t->names[col], p, len);
                t->names[col][len] = '\0';
            }
            else if (col < t->ncol)
                row[col] = strcmp(p, "NA") == 0 ? NAN : strtod(p, NULL);
        }
        if (header)
            t->ncol = col;
        else
            t->nrow++;
        header = false;
    }
    fclose(f);
    return true;
}

static int table_col(const table *t, const char *name)
{
    for (int c = 0; c < t->ncol; c++)
        if (strcmp(t->names[c], name) == 0)
            return c;
    test_fail(__FILE__, __LINE__, "no column %s", name);
    return 0;
}

static double cell(const table *t, int row, int col) { return t->v[(size_t)row * (size_t)t->ncol + (size_t)col]; }

static void table_free(table *t) { free(t->v); }

/* A column copied out (malloc'd). */
static double *column(const table *t, const char *name)
{
    int c = table_col(t, name);
    double *v = malloc((size_t)t->nrow * sizeof *v);
    for (int r = 0; r < t->nrow; r++)
        v[r] = cell(t, r, c);
    return v;
}

static double relerr(double got, double want)
{
    if (got == want)
        return 0;
    return fabs(got - want) / fmax(fabs(want), 1e-300);
}

static int64_t *read_cases(const char *file, const char *col, size_t *n)
{
    table t;
    if (!table_load(&t, file))
        return NULL;
    double *v = column(&t, col);
    int64_t *c = malloc((size_t)t.nrow * sizeof *c);
    for (int r = 0; r < t.nrow; r++)
        c[r] = (int64_t)llround(v[r]);
    *n = (size_t)t.nrow;
    free(v);
    table_free(&t);
    return c;
}

/* ---- comparison of a whole EpiEstim output table ---- */

static const char *const post_cols[4] = {"shape_post", "scale_post", "mean", "std"};
static const char *const q_cols[RT_NQ] = {"q0025", "q005", "q025", "median", "q075", "q095", "q0975"};

static double est_field(const rt_estimate *e, int i)
{
    switch (i) {
    case 0: return e->shape;
    case 1: return e->scale;
    case 2: return e->mean;
    case 3: return e->sd;
    default: return e->q[i - 4];
    }
}

/* Every window and column of want_file against est[0..n-1]. */
static void compare_example(const char *label, const rt_estimate *est, size_t n, const char *want_file,
                            double tol_post, double tol_q)
{
    table t;
    if (!table_load(&t, want_file))
        return;
    CHECK_EQ_INT(n, t.nrow);
    double maxerr[4 + RT_NQ] = {0};
    int ts = table_col(&t, "t_start"), te = table_col(&t, "t_end");
    for (int r = 0; r < t.nrow && (size_t)r < n; r++) {
        CHECK_EQ_INT(est[r].t_start, cell(&t, r, ts));
        CHECK_EQ_INT(est[r].t_end, cell(&t, r, te));
        for (int i = 0; i < 4 + RT_NQ; i++) {
            const char *name = i < 4 ? post_cols[i] : q_cols[i - 4];
            double want = cell(&t, r, table_col(&t, name));
            double e = relerr(est_field(&est[r], i), want);
            double tol = i < 4 ? tol_post : tol_q;
            if (e > maxerr[i])
                maxerr[i] = e;
            if (!(e <= tol))
                test_fail(__FILE__, __LINE__, "%s window %d..%d %s: %.17g, want %.17g (rel %.2g > %.0e)",
                          label, (int)est[r].t_start, (int)est[r].t_end, name,
                          est_field(&est[r], i), want, e, tol);
        }
    }
    if (getenv("TEST_VERBOSE")) {
        fprintf(stderr, "     %s max rel err:", label);
        for (int i = 0; i < 4 + RT_NQ; i++)
            fprintf(stderr, " %s %.1e", i < 4 ? post_cols[i] : q_cols[i - 4], maxerr[i]);
        fputc('\n', stderr);
    }
    table_free(&t);
}

static double *read_w(const char *file, size_t *n)
{
    table t;
    if (!table_load(&t, file))
        return NULL;
    double *w = column(&t, "w");
    *n = (size_t)t.nrow;
    table_free(&t);
    return w;
}

static void compare_lambda(const char *label, const double *lambda, size_t n, const char *want_file,
                           double tol)
{
    table t;
    if (!table_load(&t, want_file))
        return;
    CHECK_EQ_INT(n, t.nrow);
    int c = table_col(&t, "lambda");
    double maxerr = 0;
    CHECK(isnan(lambda[0]) && isnan(cell(&t, 0, c)));   /* Λ_1 is NA */
    for (int r = 1; r < t.nrow && (size_t)r < n; r++) {
        double e = relerr(lambda[r], cell(&t, r, c));
        maxerr = fmax(maxerr, e);
        if (!(e <= tol))
            test_fail(__FILE__, __LINE__, "%s Λ_%d = %.17g, want %.17g", label, r + 1, lambda[r],
                      cell(&t, r, c));
    }
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     %s lambda max rel err %.1e\n", label, maxerr);
    table_free(&t);
}

/* Runs the batch estimator on Flu2009 with w and compares to want_file. */
static void run_flu(const char *label, const double *w, size_t nw, const char *want_file,
                    const char *lambda_file, double tol_post)
{
    size_t n;
    int64_t *cases = read_cases("flu2009_incidence.csv", "I", &n);
    if (!cases)
        return;
    rt_config cfg;
    rt_config_default(&cfg);
    rt_estimate est[32];
    double lambda[32];
    size_t nest;
    int64_t clamped;
    payi_err err;
    CHECK_EQ_INT(n, 32);
    CHECK_EQ_INT(rt_estimate_series(w, nw, &cfg, cases, n, est, &nest, lambda, &clamped, &err), PAYI_OK);
    CHECK_EQ_INT(clamped, 0);
    compare_example(label, est, nest, want_file, tol_post, 1e-9);
    compare_lambda(label, lambda, n, lambda_file, tol_post);
    free(cases);
}

TEST(rt_flu2009_example1_nonparametric)
{
    size_t nw;
    double *w = read_w("flu2009_si_distr.csv", &nw);
    if (!w)
        return;
    CHECK_EQ_INT(nw, 12);
    run_flu("example1", w, nw, "epiestim_flu2009_example1_nonparametric_si.csv",
            "flu2009_lambda_nonparametric_si.csv", 1e-12);
    free(w);
}

TEST(rt_flu2009_example3_parametric_csv_si)
{
    size_t nw;
    double *w = read_w("flu2009_si_distr_parametric_mean2.6_sd1.5.csv", &nw);
    if (!w)
        return;
    run_flu("example3/csv-w", w, nw, "epiestim_flu2009_example3_parametric_si_mean2.6_sd1.5.csv",
            "flu2009_lambda_parametric_si_mean2.6_sd1.5.csv", 1e-12);
    free(w);
}

TEST(rt_flu2009_example3_parametric_own_si)
{
    double w[32];
    CHECK_EQ_INT(rt_discr_si(2.6, 1.5, 32, w, NULL), PAYI_OK);
    run_flu("example3/discr_si", w, 32, "epiestim_flu2009_example3_parametric_si_mean2.6_sd1.5.csv",
            "flu2009_lambda_parametric_si_mean2.6_sd1.5.csv", 1e-10);
}

/* SOURCE.md's printed check values for Example 1, window 2..8. */
TEST(rt_check_values_window_2_8)
{
    size_t nw, n;
    double *w = read_w("flu2009_si_distr.csv", &nw);
    int64_t *cases = read_cases("flu2009_incidence.csv", "I", &n);
    if (!w || !cases)
        return;
    rt_config cfg;
    rt_config_default(&cfg);
    rt_state *st;
    CHECK_EQ_INT(rt_open(&st, w, nw, &cfg, NULL), PAYI_OK);
    rt_estimate e;
    for (size_t i = 0; i < 7; i++) {
        CHECK(!rt_push(st, cases[i], &e));
        if (i == 1)
            CHECK(relerr(rt_last_lambda(st), 0.233) < 1e-15);
        if (i == 2)
            CHECK(relerr(rt_last_lambda(st), 0.592) < 1e-15);
    }
    CHECK(rt_push(st, cases[7], &e));
    CHECK_EQ_INT(e.t_start, 2);
    CHECK_EQ_INT(e.t_end, 8);
    CHECK(e.shape == 18);
    CHECK(relerr(e.scale, 0.096422717192170493) < 1e-15);
    CHECK(relerr(e.mean, 1.735608909459069) < 1e-15);
    CHECK(relerr(e.sd, 0.4090869431220987) < 1e-15);
    CHECK(relerr(e.q[RT_Q025], 1.0286318368912863) < 1e-13);
    CHECK(relerr(e.q[RT_MEDIAN], 1.7035759731740876) < 1e-13);
    CHECK(relerr(e.q[RT_Q975], 2.6244958842837351) < 1e-13);
    rt_close(st);
    free(w);
    free(cases);
}

/* Windows without cases and Λ = 0 give the prior back. */
TEST(rt_prior_only_window)
{
    double w[3] = {0, 0.5, 0.5};
    rt_config cfg;
    rt_config_default(&cfg);
    rt_state *st;
    CHECK_EQ_INT(rt_open(&st, w, 3, &cfg, NULL), PAYI_OK);
    rt_estimate e;
    int emitted = 0;
    for (int day = 1; day <= 20; day++)
        if (rt_push(st, 0, &e)) {
            emitted++;
            CHECK(e.shape == 1 && e.scale == 5 && e.mean == 5 && e.sd == 5);
            CHECK(relerr(e.q[RT_Q025], 0.12658903992144938) < 1e-14);
            CHECK(relerr(e.q[RT_MEDIAN], 3.4657359027997265) < 1e-14);
            CHECK(relerr(e.q[RT_Q975], 18.444397270569677) < 1e-14);
        }
    CHECK_EQ_INT(emitted, 13);
    /* After a wave, a quiet window is exactly the prior again: Λ's window
     * sum is re-added, not a drifting running sum. */
    for (int day = 21; day <= 60; day++)
        rt_push(st, day < 40 ? 1000 + 37 * day : 0, &e);
    CHECK(e.sum_cases == 0 && e.sum_lambda == 0 && e.mean == 5);
    rt_close(st);
}

TEST(rt_discr_si_matches_epiestim)
{
    double w2[32];
    CHECK_EQ_INT(rt_discr_si(2.6, 1.5, 32, w2, NULL), PAYI_OK);
    CHECK(w2[0] == 0);
    CHECK(relerr(w2[1], 0.2331721254075412) < 1e-14);
    CHECK(relerr(w2[2], 0.35857940031559687) < 1e-14);

    size_t n;
    double *want = read_w("si_distr_parametric_mean4.7_sd2.9.csv", &n);
    if (!want)
        return;
    CHECK_EQ_INT(n, 1143);
    double *w = malloc(n * sizeof *w);
    CHECK_EQ_INT(rt_discr_si(4.7, 2.9, n, w, NULL), PAYI_OK);
    double maxrel = 0, maxabs = 0, sum = 0, mean = 0;
    for (size_t k = 0; k < n; k++) {
        double abs_err = fabs(w[k] - want[k]);
        maxabs = fmax(maxabs, abs_err);
        /* Relative where the weight is real; the tail (< 1e-12 from k = 68,
         * noise from k = 74) can only agree in absolute terms. */
        if (want[k] >= 1e-9)
            maxrel = fmax(maxrel, relerr(w[k], want[k]));
        sum += w[k];
        mean += (double)k * w[k];
    }
    CHECK(maxrel < 1e-12);
    CHECK(maxabs < 1e-13);
    CHECK(fabs(sum - 1) < 1e-12);
    CHECK(fabs(mean - 4.7) < 1e-10);   /* tail noise times k: 1.5e-11 */
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     discr_si(4.7, 2.9): sum - 1 = %.2g, mean - 4.7 = %.2g\n", sum - 1, mean - 4.7);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     discr_si(4.7, 2.9) max rel err (w >= 1e-9) %.1e, max abs err %.1e\n", maxrel,
                maxabs);
    payi_err err;
    CHECK_EQ_INT(rt_discr_si(1.0, 2, 10, w, &err), PAYI_VALIDATION);
    CHECK_EQ_INT(rt_discr_si(4.7, 0, 10, w, &err), PAYI_VALIDATION);
    free(w);
    free(want);
}

/* ---- special functions ---- */

TEST(rt_gamma_p_reference_values)
{
    /* a, x, P, Q: mpmath at 50 digits. */
    static const double ref[][4] = {
        {0.5, 0.001, 0.035670591729679885046, 0.96432940827032011495},
        {3, 7.5, 0.97974328494333559502, 0.020256715056664404981},
        {1000, 937, 0.021429448050128389321, 0.97857055194987161068},
        {1000, 1070, 0.98516381203723711914, 0.014836187962762880856},
        {100000, 99400, 0.028708683819358678749, 0.97129131618064132125},
        {100000, 100650, 0.97991989496367069505, 0.020080105036329304947},
        {5000, 5000, 0.50188063403381735535, 0.49811936596618264465},
        /* Inside Temme's domain, near its edges (|x - a| <= 0.075 a, a >= 1000). */
        {1000, 925.5, 0.0080536403383702334272, 0.99194635966162976657},
        {1000, 1074.5, 0.98956386935478326078, 0.010436130645216739215},
        {2000, 2140, 0.99892145705949558661, 0.0010785429405044133921},
        {1e6, 997000, 0.0013381041673135996923, 0.99866189583268640031},
        {1e6, 1002500, 0.99375964513891169274, 0.0062403548610883072557},
        {30000, 29990, 0.47774384091245751242, 0.52225615908754248758},
    };
    double maxerr = 0;
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        double ep = relerr(rt_gamma_p(ref[i][0], ref[i][1]), ref[i][2]);
        double eq = relerr(rt_gamma_q(ref[i][0], ref[i][1]), ref[i][3]);
        maxerr = fmax(maxerr, fmax(ep, eq));
        if (!(ep < 2e-14 && eq < 2e-14))
            test_fail(__FILE__, __LINE__, "P(%g, %g): rel err P %.2g Q %.2g", ref[i][0], ref[i][1], ep, eq);
    }
    /* Closed forms: P(1, x) = 1 - e^-x, P(1/2, x) = erf(sqrt x). */
    for (double x = 0.01; x < 30; x *= 1.7) {
        double e1 = relerr(rt_gamma_p(1, x), -expm1(-x));
        double e2 = relerr(rt_gamma_p(0.5, x), erf(sqrt(x)));
        maxerr = fmax(maxerr, fmax(e1, e2));
        CHECK(e1 < 1e-14);
        CHECK(e2 < 1e-14);
    }
    CHECK(rt_gamma_p(2, 0) == 0 && rt_gamma_q(2, 0) == 1);
    CHECK(isnan(rt_gamma_p(-1, 1)) && isnan(rt_gamma_p(1, -1)));
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     P/Q max rel err %.1e\n", maxerr);
}

TEST(rt_qgamma_reference_values)
{
    /* shape, p, quantile: mpmath at 50 digits (p as the double nearest). */
    static const double ref[][3] = {
        {0.5, 0.025, 0.0004910345585876280107}, {0.5, 0.5, 0.22746821155978637597},
        {0.5, 0.975, 2.5119430936574437091},    {2.5, 0.025, 0.41560580674333121933},
        {2.5, 0.5, 2.1757300955477636586},      {2.5, 0.975, 6.4162509970150129999},
        {18, 0.025, 10.667940780399526903},     {18, 0.5, 17.667786417788461343},
        {18, 0.975, 27.21864681590660901},      {1000, 0.025, 938.97301840769521634},
        {1000, 0.5, 999.66668642696518206},     {1000, 0.975, 1062.9211512248877479},
        {100000, 0.025, 99381.15266374473059},  {100000, 0.5, 99999.666666864198252},
        {100000, 0.975, 100620.74164077373632},
    };
    double maxerr = 0;
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        double got = rt_qgamma(ref[i][1], ref[i][0], 1);
        double e = relerr(got, ref[i][2]);
        maxerr = fmax(maxerr, e);
        if (!(e < 1e-13))
            test_fail(__FILE__, __LINE__, "qgamma(%g, %g) = %.17g, want %.17g (rel %.2g)", ref[i][1],
                      ref[i][0], got, ref[i][2], e);
    }
    /* Scale is a plain factor; the edges. */
    CHECK(relerr(rt_qgamma(0.5, 18, 0.25), 0.25 * 17.667786417788461343) < 1e-14);
    CHECK(rt_qgamma(0, 3, 1) == 0 && isinf(rt_qgamma(1, 3, 1)));
    CHECK(isnan(rt_qgamma(0.5, 0, 1)) && isnan(rt_qgamma(1.5, 1, 1)));
    /* The normal start point. */
    CHECK(fabs(rt_qnorm_approx(0.975) - 1.959963984540054) < 1e-8);
    CHECK(fabs(rt_qnorm_approx(0.001) + 3.090232306167814) < 1e-8);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     qgamma max rel err vs mpmath %.1e\n", maxerr);
}

/* qgamma inverts P for shapes 0.5 .. 1e6: the relative distance from the
 * returned x to the exact root, |P(x) - p| / (x · dP/dx) with the slope by
 * a central difference (the smaller tail used, where the precision is). */
static double tail(double a, double x, bool upper) { return upper ? rt_gamma_q(a, x) : rt_gamma_p(a, x); }

TEST(rt_qgamma_round_trips)
{
    static const double shapes[] = {0.5, 0.75, 1, 1.5, 2.5, 7, 9.99, 10, 18, 50, 123.5, 1000, 4321, 1e4, 3e4, 1e5, 1e6};
    static const double ps[] = {1e-100, 1e-10, 0.001, 0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975, 0.999, 1 - 1e-12};
    double maxerr = 0, maxres = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (size_t j = 0; j < sizeof ps / sizeof ps[0]; j++) {
            double a = shapes[i], p = ps[j];
            if (p < 1e-50 && a < 1)
                continue;   /* the quantile underflows: (p·Γ(a+1))^(1/a) < 1e-200 */
            bool upper = p > 0.5;
            double target = upper ? 1 - p : p;
            double x = rt_qgamma(p, a, 1);
            const double h = 1e-7;
            double slope = fabs(tail(a, x * (1 + h), upper) - tail(a, x * (1 - h), upper)) / (2 * h);
            double res = fabs(tail(a, x, upper) - target);
            double e = res / slope;   /* relative error in x */
            maxerr = fmax(maxerr, e);
            maxres = fmax(maxres, res / target);
            if (!(x > 0 && e < 1e-13))
                test_fail(__FILE__, __LINE__, "qgamma(%g, %g) = %.17g: rel err in x %.2g", p, a, x, e);
        }
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     qgamma round trip: max rel err in x %.1e (residual in P %.1e)\n", maxerr, maxres);
}

/* ---- the streaming estimator on a real national series ---- */

/* An independent batch recomputation straight from the formulas: full
 * untruncated w, Λ_t summed over all of history (O(T^2)), window sums
 * summed afresh. */
static void batch_reference(const double *w, size_t nw, const int64_t *cases, size_t n, int window,
                            double *mean_out, double *shape_out)
{
    double *lam = calloc(n + 1, sizeof *lam);
    for (size_t t = 2; t <= n; t++)
        for (size_t k = 1; k < t && k < nw; k++)
            lam[t] += w[k] * (double)(cases[t - 1 - k] > 0 ? cases[t - 1 - k] : 0);
    for (size_t t = (size_t)window + 1; t <= n; t++) {
        double si = 0, sl = 0;
        for (size_t s = t - (size_t)window + 1; s <= t; s++) {
            si += (double)(cases[s - 1] > 0 ? cases[s - 1] : 0);
            sl += lam[s];
        }
        shape_out[t] = 1 + si;
        mean_out[t] = (1 + si) / (0.2 + sl);
    }
    free(lam);
}

TEST(rt_cote_divoire_streaming)
{
    size_t n, n2;
    int64_t *raw = read_cases("cote_divoire_jhu_daily.csv", "new_confirmed_raw", &n);
    int64_t *clamped = read_cases("cote_divoire_jhu_daily.csv", "new_confirmed_clamped", &n2);
    if (!raw || !clamped)
        return;
    CHECK_EQ_INT(n, 1143);
    double *w = malloc(n * sizeof *w);
    CHECK_EQ_INT(rt_discr_si(4.7, 2.9, n, w, NULL), PAYI_OK);
    rt_config cfg;
    rt_config_default(&cfg);

    /* Streaming, one day at a time, on the raw series (one day is -34). */
    rt_state *st;
    CHECK_EQ_INT(rt_open(&st, w, n, &cfg, NULL), PAYI_OK);
    size_t K;
    rt_si(st, &K);
    CHECK_EQ_INT(K - 1, 91);   /* the support kept: tail mass <= 1e-14 (weights are 0 from 98) */
    rt_estimate *live = calloc(n, sizeof *live);
    size_t nlive = 0;
    for (size_t i = 0; i < n; i++)
        if (rt_push(st, raw[i], &live[nlive]))
            nlive++;
    CHECK_EQ_INT(rt_clamped(st), 1);
    CHECK_EQ_INT(rt_days(st), 1143);
    CHECK_EQ_INT(nlive, 1143 - 7);
    double hist[100];
    size_t nh = rt_history(st, hist, 100);
    CHECK_EQ_INT(nh, K - 1);
    CHECK(hist[nh - 1] == (double)clamped[n - 1] && hist[0] == (double)clamped[n - nh]);

    /* Batch on the clamped series: bit-identical (one code path). */
    rt_estimate *batch = calloc(n, sizeof *batch);
    size_t nbatch;
    int64_t nclamped;
    CHECK_EQ_INT(rt_estimate_series(w, n, &cfg, clamped, n2, batch, &nbatch, NULL, &nclamped, NULL),
                 PAYI_OK);
    CHECK_EQ_INT(nclamped, 0);
    CHECK_EQ_INT(nbatch, nlive);
    CHECK(nbatch == nlive && memcmp(batch, live, nlive * sizeof *live) == 0);

    /* Against the formulas from scratch with the whole SI: the truncation
     * costs far less than the 1e-10 tolerance. */
    double *mean = calloc(n + 1, sizeof *mean), *shape = calloc(n + 1, sizeof *shape);
    batch_reference(w, n, raw, n, 7, mean, shape);
    double maxerr = 0, maxshape = 0, minq = INFINITY;
    for (size_t i = 0; i < nlive; i++) {
        size_t t = (size_t)live[i].t_end;
        CHECK(live[i].shape == shape[t]);
        maxerr = fmax(maxerr, relerr(live[i].mean, mean[t]));
        maxshape = fmax(maxshape, live[i].shape);
        minq = fmin(minq, live[i].q[RT_Q025]);
        /* Quantiles ordered, the mean between the outer ones. */
        for (int q = 1; q < RT_NQ; q++)
            CHECK(live[i].q[q] > live[i].q[q - 1]);
        CHECK(live[i].q[RT_Q025] < live[i].mean && live[i].mean < live[i].q[RT_Q975]);
    }
    CHECK(maxerr < 1e-10);
    CHECK(maxshape > 5000);   /* the large-shape quantile path was exercised */
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     cote d'ivoire: truncated vs full SI mean max rel err %.1e, max shape %.0f\n",
                maxerr, maxshape);
    rt_close(st);
    free(mean), free(shape), free(live), free(batch), free(w), free(raw), free(clamped);
}

TEST(rt_cote_divoire_csv_si_untruncated)
{
    /* With the SI read from EpiEstim's own discr_si output and no
     * truncation, the streaming estimator is the textbook sum. */
    size_t n, nw;
    int64_t *cases = read_cases("cote_divoire_jhu_daily.csv", "new_confirmed_clamped", &n);
    double *w = read_w("si_distr_parametric_mean4.7_sd2.9.csv", &nw);
    if (!cases || !w)
        return;
    rt_config cfg;
    rt_config_default(&cfg);
    cfg.si_cut = 0;
    rt_estimate *est = calloc(n, sizeof *est);
    size_t nest;
    CHECK_EQ_INT(rt_estimate_series(w, nw, &cfg, cases, n, est, &nest, NULL, NULL, NULL), PAYI_OK);
    double *mean = calloc(n + 1, sizeof *mean), *shape = calloc(n + 1, sizeof *shape);
    batch_reference(w, nw, cases, n, 7, mean, shape);
    double maxerr = 0;
    for (size_t i = 0; i < nest; i++)
        maxerr = fmax(maxerr, relerr(est[i].mean, mean[est[i].t_end]));
    CHECK(maxerr < 1e-12);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     cote d'ivoire untruncated CSV SI vs O(T^2) sum: max rel err %.1e\n", maxerr);

    /* What a generator runs (own discr_si, default truncation) against
     * EpiEstim's w untruncated: SOURCE.md's 1e-10, every column. */
    double *own = malloc(n * sizeof *own);
    CHECK_EQ_INT(rt_discr_si(4.7, 2.9, n, own, NULL), PAYI_OK);
    rt_config_default(&cfg);
    rt_estimate *mine = calloc(n, sizeof *mine);
    size_t nmine;
    CHECK_EQ_INT(rt_estimate_series(own, n, &cfg, cases, n, mine, &nmine, NULL, NULL, NULL), PAYI_OK);
    CHECK_EQ_INT(nmine, nest);
    double colerr[4 + RT_NQ] = {0};
    for (size_t i = 0; i < nest && i < nmine; i++)
        for (int c = 0; c < 4 + RT_NQ; c++)
            colerr[c] = fmax(colerr[c], relerr(est_field(&mine[i], c), est_field(&est[i], c)));
    for (int c = 0; c < 4 + RT_NQ; c++)
        if (!(colerr[c] < 1e-10))
            test_fail(__FILE__, __LINE__, "column %d: rel err %.2g", c, colerr[c]);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "     cote d'ivoire own SI (cut 1e-14) vs EpiEstim w: max rel err scale %.1e mean %.1e "
                "q0975 %.1e\n", colerr[1], colerr[2], colerr[4 + RT_Q975]);
    free(own), free(mine);
    free(mean), free(shape), free(est), free(w), free(cases);
}

TEST(rt_window_gated_by_si_mean)
{
    /* An SI all at k = 10: mean 10, so windows ending on days 8..10 are
     * not estimated (EpiEstim gives NA) and the first is 5..11. */
    double w[11] = {0};
    w[10] = 1;
    rt_config cfg;
    rt_config_default(&cfg);
    rt_state *st;
    CHECK_EQ_INT(rt_open(&st, w, 11, &cfg, NULL), PAYI_OK);
    CHECK(rt_si_mean(st) == 10);
    rt_estimate e;
    int64_t first = 0;
    for (int day = 1; day <= 20 && !first; day++)
        if (rt_push(st, 3, &e))
            first = e.t_end;
    CHECK_EQ_INT(first, 11);
    CHECK_EQ_INT(e.t_start, 5);
    /* History is kept beyond the short SI support, for the forecast. */
    for (int day = 12; day <= 100; day++)
        rt_push(st, day, &e);
    double hist[80];
    CHECK_EQ_INT(rt_history(st, hist, 80), RT_HISTORY_MIN);
    CHECK(hist[0] == 100 - RT_HISTORY_MIN + 1 && hist[RT_HISTORY_MIN - 1] == 100);
    rt_close(st);
}

TEST(rt_open_rejects_bad_input)
{
    rt_config cfg;
    rt_config_default(&cfg);
    rt_state *st;
    payi_err err;
    double bad0[3] = {0.1, 0.5, 0.4}, neg[3] = {0, 1.5, -0.5}, zero[3] = {0, 0, 0}, ok[3] = {0, 0.5, 0.5};
    CHECK_EQ_INT(rt_open(&st, bad0, 3, &cfg, &err), PAYI_VALIDATION);
    CHECK(st == NULL);
    CHECK_EQ_INT(rt_open(&st, neg, 3, &cfg, &err), PAYI_VALIDATION);
    CHECK_EQ_INT(rt_open(&st, zero, 3, &cfg, &err), PAYI_VALIDATION);
    cfg.window = 0;
    CHECK_EQ_INT(rt_open(&st, ok, 3, &cfg, &err), PAYI_VALIDATION);
    CHECK_STR(err.field, "window");
    rt_config_default(&cfg);
    cfg.prior_sd = 0;
    CHECK_EQ_INT(rt_open(&st, ok, 3, &cfg, &err), PAYI_VALIDATION);
    rt_close(NULL);
}
