/* rt.c — Cori et al. (2013) Rt, exactly as EpiEstim computes it.
 *
 * Written from the formulas (rt/SOURCE.md in the shared data; Cori A,
 * Ferguson NM, Fraser C, Cauchemez S, Am J Epidemiol 2013;178:1505), not
 * from EpiEstim's or R's code.
 *
 * The model.  Daily incidence I_1..I_T, a discrete serial interval (SI)
 * w_0..w_K with w_0 = 0.  The total infectiousness of day t is
 *
 *     Λ_t = Σ_{k=1}^{min(t-1, K)} w_k · I_{t-k}          (t >= 2; Λ_1 is NA)
 *
 * and, with a Gamma(a, b) prior on R (shape a = (m/s)^2, scale b = s^2/m,
 * m = s = 5 by default, so a = 1, b = 5), the posterior of R on the window
 * [t_start, t_end] is Gamma with
 *
 *     shape = a + Σ_{s=t_start}^{t_end} I_s
 *     scale = 1 / (1/b + Σ_{s=t_start}^{t_end} Λ_s)
 *
 * mean = shape·scale, sd = sqrt(shape)·scale, quantiles = qgamma.  Day 1's
 * cases are "imported" (EpiEstim's rule for a single incidence series): they
 * enter Λ of later days but no numerator, which is why windows start on day
 * 2 and the first window of 7 days ends on day 8.
 *
 * The streaming state (invariants, after day t has been pushed):
 *   1. inc[] is a ring of the last cap = max(K, window, 64) clamped counts:
 *      I_s sits at inc[(s-1) % cap] for t-cap < s <= t.
 *   2. lam[] is a ring of the last `window` values Λ_s at lam[(s-1) % window]
 *      (Λ_1 stored as 0: it never falls in an emitted window).
 *   3. sum_cases = Σ local_s over the last `window` days, local_1 = 0 and
 *      local_s = I_s otherwise.  Integers, so the running sum (add the new
 *      day, subtract the one leaving) is exact.
 * Λ_s is a float, so its window sum is NOT kept as a running sum: adding and
 * subtracting would drift (after a large wave, a window of zeros would not
 * sum to exactly 0 and would not give the prior back).  It is re-added from
 * the ring in day order, O(window), the same order as a batch sum.  A day
 * therefore costs O(K + window), whatever the length of the history.
 *
 * Truncating the SI.  Λ_t uses w_1..w_K where K is the smallest k whose
 * tail Σ_{j>k} w_j is at most si_cut · Σ w (default si_cut 1e-14; 0 keeps
 * everything up to the last non-zero weight).  Why a tail MASS and not a
 * per-weight threshold: a dropped weight w_k costs w_k · I_{t-k} in Λ_t, and
 * after a large wave I_{t-k} can be 400 times today's level (Côte d'Ivoire,
 * January 2022: 2,858 cases a day, then about 7).  Measured on that series
 * against EpiEstim's own w for discr_si(4.7, 2.9): cutting every weight
 * < 1e-12 (k >= 68) moves posterior means by 2e-10 relative, cutting at
 * k >= 74 (where the weights become cancellation noise, 0 to 6e-14) by
 * 2.4e-11, and the 1e-14 tail rule (K = 91) by 3e-13.  The weights are
 * exactly 0 from k = 98 anyway, so a day costs about 91 multiply-adds, not
 * O(T).  The SI mean that gates the first window is taken on the
 * untruncated w.
 *
 * Numerical choices for the incomplete gamma (section "special functions"):
 *   - P(a, x) = pf(a, x) · Σ_{n>=0} x^n / ((a+1)...(a+n))  for x < a + 1,
 *     Q(a, x) = a · pf(a, x) · CF(a, x) (modified Lentz)    otherwise,
 *     where pf(a, x) = x^a e^-x / Γ(a+1).
 *   - pf is the one place where large shapes lose precision: computed as
 *     exp(a ln x - x - lgamma(a+1)) its exponent is a difference of numbers
 *     of size a ln a, so for a = 1e5 it would carry a 1e-10 relative error.
 *     For a >= 10 it is computed instead as exp(-a·D(x/a) - stirlerr(a)) /
 *     sqrt(2πa), with D(r) = r - 1 - ln r (by its series near r = 1) and
 *     stirlerr the Stirling series of ln Γ(a+1) - ln(sqrt(2πa)(a/e)^a): no
 *     large terms cancel, and P keeps ~1e-15 relative accuracy at any a
 *     (3e-15 measured against mpmath up to a = 1e5).  The series and the
 *     fraction need O(sqrt(a)) terms near x = a: about 9,000 at a = 1e6,
 *     so a quantile there costs ~0.3 ms.
 *   - qgamma: Wilson-Hilferty start, then Halley steps on f(x) = P(a,x) - p
 *     (or on (1-p) - Q(a,x) when p > 1/2, so the upper tail is solved with
 *     full relative precision), Newton steps on ln P (ln Q) while P is more
 *     than a factor 2 from p (there the tail is nearly exponential and a
 *     step on P itself gains only a constant per iteration), all inside a
 *     bracket [lo, hi] that every evaluation narrows; a step that leaves
 *     the bracket is replaced by bisection (geometric while one end is 0
 *     or infinite).  It stops when a step moves x by < 2 ulp: the answer
 *     is then within a few ulp of the exact root (the unit tests measure
 *     < 2e-14 relative for shapes 0.5 to 1e6, p from 1e-100 to 1 - 1e-12).
 */
#include "gen/rt.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

const double rt_quantile_p[RT_NQ] = {0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975};

/* ======================================================================
 * Special functions
 * ====================================================================== */

/* ln Γ(x) for x > 0 without glibc's global signgam (a data race between
 * generator threads otherwise). */
static double lgam(double x)
{
    int sign;
    return lgamma_r(x, &sign);
}

/* stirlerr(a) = ln Γ(a+1) - (a + 1/2) ln a + a - ln sqrt(2π), for a >= 10,
 * by the Stirling series Σ B_2n / (2n (2n-1) a^(2n-1)).  Eight terms: the
 * ninth is < 2e-18 at a = 10. */
static double stirlerr(double a)
{
    static const double c[8] = {
        1.0 / 12, -1.0 / 360, 1.0 / 1260, -1.0 / 1680,
        1.0 / 1188, -691.0 / 360360, 1.0 / 156, -3617.0 / 122400,
    };
    double r = 1.0 / (a * a), s = 0;
    for (int i = 7; i >= 0; i--)
        s = s * r + c[i];
    return s / a;
}

/* a·D(x/a) with D(r) = r - 1 - ln r >= 0.  Near r = 1 the two terms
 * cancel, so there D(1+u) = u^2/2 - u^3/3 + u^4/4 - ... (|u| <= 1/2: at
 * most 60 terms for 1e-17); elsewhere the direct form loses at most a
 * factor 5 to cancellation.  ln r, not log1p(u): u = (x-a)/a has already
 * lost the digits of r when x << a. */
static double a_dev(double a, double x)
{
    double u = (x - a) / a;
    if (fabs(u) > 0.5)
        return a * (x / a - 1 - log(x / a));
    double term = u * u, s = 0;
    for (int j = 2; j < 80; j++) {
        double t = term / j;
        s += t;
        if (fabs(t) <= fabs(s) * 1e-17)
            break;
        term *= -u;
    }
    return a * s;
}

/* pf(a, x) = x^a e^-x / Γ(a+1), x > 0. */
static double pf(double a, double x)
{
    if (a < 10)
        return exp(a * log(x) - x - lgam(a + 1));
    return exp(-a_dev(a, x) - stirlerr(a)) / sqrt(2 * M_PI * a);
}

/* P by the power series; x < a + 1, so the terms fall at least as fast as
 * x/(a+1) < 1 once n is past x - a. */
static double p_series(double a, double x)
{
    double sum = 1, term = 1;
    for (double n = 1; n < 1e8; n++) {
        term *= x / (a + n);
        sum += term;
        if (term <= sum * 0x1p-56)
            break;
    }
    return pf(a, x) * sum;
}

/* Q by the continued fraction Q = x^a e^-x / Γ(a) · 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- ...))),
 * evaluated with the modified Lentz method; x >= a + 1. */
static double q_fraction(double a, double x)
{
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (double i = 1; i < 1e8; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) <= 0x1p-55)
            break;
    }
    return a * pf(a, x) * h;
}

/* Temme's uniform asymptotic expansion (N. M. Temme, "The asymptotic
 * expansion of the incomplete gamma functions", SIAM J. Math. Anal. 10,
 * 1979; the coefficients as tabulated by DiDonato & Morris, ACM TOMS 12,
 * 1986):
 *     Q(a, x) = erfc(η sqrt(a/2)) / 2 + R,  P = erfc(-η sqrt(a/2)) / 2 - R,
 *     R = e^(-aη²/2) / sqrt(2πa) · Σ_k C_k(η) a^-k,
 * with η = sign(x - a) sqrt(2 D(x/a)).  O(1) where the series and the
 * fraction need O(sqrt(a)) terms.  Used for a >= TEMME_MIN_A and |η| <=
 * TEMME_MAX_ETA, where the truncated C_k below leave an error under 1e-16
 * (unit test gamma_temme_matches_series compares it with the series). */
#define TEMME_MIN_A 1000.0
#define TEMME_MAX_ETA 0.15

static bool temme_applies(double a, double x)
{
    return a >= TEMME_MIN_A && fabs(x - a) <= 0.5 * TEMME_MAX_ETA * a;
}

static void gamma_pq_temme(double a, double x, double *p, double *q)
{
    static const double c0[] = {-1.0 / 3, 1.0 / 12, -2.0 / 135, 1.0 / 864, 1.0 / 2835, -139.0 / 777600,
                                1.0 / 25515, -571.0 / 261273600};
    static const double c1[] = {-1.0 / 540, -1.0 / 288, 1.0 / 378, -77.0 / 77760, 1.0 / 4860};
    static const double c2[] = {25.0 / 6048, -139.0 / 51840, 1.0 / 1296};
    static const double c3 = 0.00064943415637860082;
    double d = a_dev(a, x) / a;
    double eta = sqrt(2 * d);
    if (x < a)
        eta = -eta;
    double s0 = 0, s1 = 0, s2 = 0;
    for (int i = (int)(sizeof c0 / sizeof *c0) - 1; i >= 0; i--)
        s0 = s0 * eta + c0[i];
    for (int i = (int)(sizeof c1 / sizeof *c1) - 1; i >= 0; i--)
        s1 = s1 * eta + c1[i];
    for (int i = (int)(sizeof c2 / sizeof *c2) - 1; i >= 0; i--)
        s2 = s2 * eta + c2[i];
    double inv = 1 / a;
    double sum = s0 + inv * (s1 + inv * (s2 + inv * c3));
    double r = exp(-a * d) / sqrt(2 * M_PI * a) * sum;
    double z = eta * sqrt(a / 2);
    if (x >= a) {
        *q = 0.5 * erfc(z) + r;
        *p = 1 - *q;
    } else {
        *p = 0.5 * erfc(-z) - r;
        *q = 1 - *p;
    }
}

/* Both tails at once; the one computed directly is the accurate one. */
static void gamma_pq(double a, double x, double *p, double *q)
{
    if (isnan(a) || isnan(x) || a <= 0 || x < 0) {
        *p = *q = NAN;
    } else if (x == 0) {
        *p = 0, *q = 1;
    } else if (isinf(x)) {
        *p = 1, *q = 0;
    } else if (temme_applies(a, x)) {
        gamma_pq_temme(a, x, p, q);
    } else if (x < a + 1) {
        *p = p_series(a, x);
        *q = 1 - *p;
    } else {
        *q = q_fraction(a, x);
        *p = 1 - *q;
    }
}

double rt_gamma_p(double a, double x)
{
    double p, q;
    gamma_pq(a, x, &p, &q);
    return p;
}

double rt_gamma_q(double a, double x)
{
    double p, q;
    gamma_pq(a, x, &p, &q);
    return q;
}

double rt_qnorm_approx(double p)
{
    /* P. J. Acklam's rational approximation: central region and tails. */
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                -2.759285104469687e+02, 1.383577518672690e+02,
                                -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                -1.556989798598866e+02, 6.680131188771972e+01,
                                -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                -2.400758277161838e+00, -2.549732539343734e+00,
                                4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01,
                                2.445134137142996e+00, 3.754408661907416e+00};
    const double plow = 0.02425;
    if (!(p > 0 && p < 1))
        return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
    if (p < plow || p > 1 - plow) {
        double q = sqrt(-2 * log(p < plow ? p : 1 - p));
        double z = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                   ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        return p < plow ? z : -z;
    }
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/* A first guess for the unit-scale quantile: Wilson-Hilferty (the cube root
 * of a gamma variable is nearly normal), or, where that fails (small shape:
 * it can go negative), the leading term of the series, P ≈ x^a / Γ(a+1). */
static double qgamma_start(double p, double a)
{
    double z = rt_qnorm_approx(p);
    double c = 1 / (9 * a);
    double t = 1 - c + z * sqrt(c);
    double x = a * t * t * t;
    if (a < 1 || !(x > 0)) {
        double xs = exp((log(p) + lgam(a + 1)) / a);
        if (x > 0 && p > 0.5)
            return x;   /* the series term only describes the lower tail */
        x = xs;
    }
    return x > 0 && isfinite(x) ? x : a;
}

/* The next trial point when a step would leave the bracket (lo, hi). */
static double bisect(double lo, double hi)
{
    if (isinf(hi))
        return lo > 0 ? 2 * lo : 1;
    if (lo <= 0)
        return hi / 16;
    return lo < hi / 4 ? sqrt(lo * hi) : 0.5 * (lo + hi);
}

/* Unit-scale quantile, 0 < p < 1. */
static double qgamma_unit(double p, double a)
{
    const bool upper = p > 0.5;
    const double target = upper ? 1 - p : p;   /* 1 - p is exact for p >= 1/2 */
    double lo = 0, hi = INFINITY;
    double x = qgamma_start(p, a);
    for (int it = 0; it < 300; it++) {
        double P, Q;
        gamma_pq(a, x, &P, &Q);
        /* The tail being solved, cur, against target; f increases with x. */
        double cur = upper ? Q : P;
        double f = upper ? target - Q : P - target;
        if (f == 0)
            return x;
        if (f < 0)
            lo = x;
        else
            hi = x;
        double dens = a * pf(a, x) / x;   /* d/dx P(a, x) */
        double xn = NAN;
        bool halley = false;
        if (cur > 0 && dens > 0 && isfinite(dens)) {
            if (cur < 0.5 * target || cur > 2 * target) {
                /* Far from the root the tail is nearly exponential in x:
                 * Newton on ln(cur) converges where Newton on cur crawls. */
                double g = upper ? log(target / cur) : log(cur / target);
                xn = x - g * cur / dens;
            } else {
                double t = f / dens;
                double corr = 1 - 0.5 * t * ((a - 1) / x - 1);
                halley = corr > 0.5 && corr < 2;
                xn = x - (halley ? t / corr : t);
            }
        }
        /* Converged: the step is below the noise of P.  Tested before the
         * bracket, which such a step may touch (it lands on lo or hi). */
        if (fabs(xn - x) <= 2 * DBL_EPSILON * x)
            return xn;
        /* Halley converges cubically: after a step of relative size e the
         * error is O(e^3), below an ulp when e < 1e-7, so the evaluation
         * that would only confirm it is skipped. */
        if (halley && fabs(xn - x) < 1e-7 * x && xn > lo && xn < hi)
            return xn;
        if (!(xn > lo && xn < hi))
            xn = bisect(lo, hi);
        if (fabs(xn - x) <= 2 * DBL_EPSILON * xn || hi - lo <= 2 * DBL_EPSILON * lo)
            return xn;
        x = xn;
    }
    return x;
}

double rt_qgamma(double p, double shape, double scale)
{
    if (isnan(p) || isnan(shape) || isnan(scale) || p < 0 || p > 1 || shape <= 0 || scale <= 0)
        return NAN;
    if (p == 0)
        return 0;
    if (p == 1)
        return INFINITY;
    return qgamma_unit(p, shape) * scale;
}

/* ======================================================================
 * Serial interval
 * ====================================================================== */

payi_code rt_discr_si(double mean, double sd, size_t n, double *w, payi_err *err)
{
    if (!(mean > 1) || !(sd > 0) || !isfinite(mean) || !isfinite(sd))
        return payi_err_set(err, PAYI_VALIDATION, "si",
                            "serial interval needs mean > 1 and sd > 0 (got mean %g, sd %g)", mean, sd);
    if (n < 2)
        return payi_err_set(err, PAYI_VALIDATION, "si", "serial interval needs at least 2 weights");
    const double alpha = ((mean - 1) / sd) * ((mean - 1) / sd);
    const double beta = sd * sd / (mean - 1);
    /* F(j) = P(alpha, j/beta), F1(j) = P(alpha+1, j/beta); both 0 for j <= 0.
     * Computed once per j and reused by the three w_k that need it. */
    double F[3] = {0, 0, 0}, F1[3] = {0, 0, 0};   /* index 0: k-2, 1: k-1, 2: k */
    for (size_t k = 0; k < n; k++) {
        double kk = (double)k;
        F[0] = F[1], F[1] = F[2];
        F1[0] = F1[1], F1[1] = F1[2];
        F[2] = k > 0 ? rt_gamma_p(alpha, kk / beta) : 0;
        F1[2] = k > 0 ? rt_gamma_p(alpha + 1, kk / beta) : 0;
        double v = kk * F[2] + (kk - 2) * F[0] - 2 * (kk - 1) * F[1] +
                   alpha * beta * (2 * F1[1] - F1[0] - F1[2]);
        w[k] = v > 0 ? v : 0;
    }
    w[0] = 0;
    return PAYI_OK;
}

/* ======================================================================
 * Posterior
 * ====================================================================== */

void rt_posterior(double prior_mean, double prior_sd, double sum_cases, double sum_lambda,
                  rt_estimate *out)
{
    rt_posterior_some(prior_mean, prior_sd, sum_cases, sum_lambda, RT_ALL_QUANTILES, out);
}

void rt_posterior_some(double prior_mean, double prior_sd, double sum_cases, double sum_lambda, unsigned quantiles,
                       rt_estimate *out)
{
    const double a = (prior_mean / prior_sd) * (prior_mean / prior_sd);
    const double b = prior_sd * prior_sd / prior_mean;
    out->sum_cases = sum_cases;
    out->sum_lambda = sum_lambda;
    out->shape = a + sum_cases;
    out->scale = 1 / (1 / b + sum_lambda);
    out->mean = out->shape * out->scale;
    out->sd = sqrt(out->shape) * out->scale;
    for (int i = 0; i < RT_NQ; i++)   /* each costs O(sqrt(shape)): only those asked for */
        out->q[i] = quantiles >> i & 1 ? rt_qgamma(rt_quantile_p[i], out->shape, out->scale) : NAN;
}

/* ======================================================================
 * Streaming estimator
 * ====================================================================== */

struct rt_state {
    rt_config cfg;
    double *w;           /* w[0..K], the truncated SI */
    size_t K;            /* support: w_K is the last weight used */
    double si_mean;      /* Σ k·w_k of the SI as given */
    int64_t *inc;        /* ring of the last cap counts (invariant 1) */
    size_t cap;
    double *lam;         /* ring of the last window Λ (invariant 2) */
    int64_t t;           /* days pushed */
    int64_t sum_cases;   /* invariant 3 */
    int64_t clamped;
    double last_lambda;
};

void rt_config_default(rt_config *cfg)
{
    cfg->window = 7;
    cfg->prior_mean = 5;
    cfg->prior_sd = 5;
    cfg->si_cut = 1e-14;
    cfg->quantiles = RT_ALL_QUANTILES;
}

static payi_code check_config(const rt_config *cfg, payi_err *err)
{
    if (cfg->window < 1 || cfg->window > 100000)
        return payi_err_set(err, PAYI_VALIDATION, "window", "window must be 1..100000 days (got %d)",
                            cfg->window);
    if (!(cfg->prior_mean > 0) || !(cfg->prior_sd > 0) || !isfinite(cfg->prior_mean) ||
        !isfinite(cfg->prior_sd))
        return payi_err_set(err, PAYI_VALIDATION, "prior",
                            "prior mean and sd must be positive (got %g, %g)", cfg->prior_mean,
                            cfg->prior_sd);
    if (!(cfg->si_cut >= 0 && cfg->si_cut < 1))
        return payi_err_set(err, PAYI_VALIDATION, "si_cut", "si_cut must be in [0, 1) (got %g)",
                            cfg->si_cut);
    return PAYI_OK;
}

static payi_code check_si(const double *w, size_t nw, payi_err *err)
{
    if (nw < 2)
        return payi_err_set(err, PAYI_VALIDATION, "si", "serial interval needs at least 2 weights");
    if (w[0] != 0)
        return payi_err_set(err, PAYI_VALIDATION, "si", "serial interval must have w[0] = 0 (got %g)",
                            w[0]);
    double sum = 0;
    for (size_t k = 0; k < nw; k++) {
        if (!(w[k] >= 0) || !isfinite(w[k]))
            return payi_err_set(err, PAYI_VALIDATION, "si",
                                "serial interval weight w[%zu] = %g is not a finite number >= 0", k,
                                w[k]);
        sum += w[k];
    }
    if (!(sum > 0))
        return payi_err_set(err, PAYI_VALIDATION, "si", "serial interval weights are all 0");
    return PAYI_OK;
}

/* The support K: the smallest k >= 1 whose tail Σ_{j>k} w_j is at most
 * cut · Σ w (see "Truncating the SI" above).  The tail is summed from the
 * far end, smallest terms first. */
static size_t si_support(const double *w, size_t nw, double cut)
{
    double total = 0;
    for (size_t k = 1; k < nw; k++)
        total += w[k];
    double tail = 0;
    size_t K = nw - 1;
    while (K > 1 && tail + w[K] <= cut * total) {
        tail += w[K];
        K--;
    }
    return K;
}

payi_code rt_open(rt_state **out, const double *w, size_t nw, const rt_config *cfg, payi_err *err)
{
    payi_code rc;
    *out = NULL;
    if ((rc = check_config(cfg, err)) != PAYI_OK || (rc = check_si(w, nw, err)) != PAYI_OK)
        return rc;
    rt_state *st = xcalloc(1, sizeof *st);
    st->cfg = *cfg;
    for (size_t k = 1; k < nw; k++)
        st->si_mean += (double)k * w[k];
    st->K = si_support(w, nw, cfg->si_cut);
    st->w = xmalloc((st->K + 1) * sizeof *st->w);
    memcpy(st->w, w, (st->K + 1) * sizeof *st->w);
    /* Room for Λ (K days), the leaving day of the window, and at least
     * RT_HISTORY_MIN days for rt_history's callers (the forecast's
     * dispersion fit reads 34). */
    st->cap = st->K > (size_t)cfg->window ? st->K : (size_t)cfg->window;
    if (st->cap < RT_HISTORY_MIN)
        st->cap = RT_HISTORY_MIN;
    st->inc = xcalloc(st->cap, sizeof *st->inc);
    st->lam = xcalloc((size_t)cfg->window, sizeof *st->lam);
    st->last_lambda = NAN;
    *out = st;
    return PAYI_OK;
}

void rt_close(rt_state *st)
{
    if (!st)
        return;
    free(st->w);
    free(st->inc);
    free(st->lam);
    free(st);
}

/* I_s for a day s still in the ring (t - cap < s <= t). */
static int64_t inc_at(const rt_state *st, int64_t s)
{
    return st->inc[(size_t)(s - 1) % st->cap];
}

/* Λ of the day after the last one pushed: Σ_{k=1}^{min(t,K)} w_k I_{t+1-k},
 * in increasing k. */
static double lambda_next(const rt_state *st)
{
    const int64_t day = st->t + 1;
    size_t kmax = (size_t)st->t < st->K ? (size_t)st->t : st->K;
    double s = 0;
    for (size_t k = 1; k <= kmax; k++)
        s += st->w[k] * (double)inc_at(st, day - (int64_t)k);
    return s;
}

bool rt_push(rt_state *st, int64_t cases, rt_estimate *out)
{
    const int64_t t = st->t + 1;
    const int64_t window = st->cfg.window;
    if (cases < 0) {
        cases = 0;
        st->clamped++;
    }
    double lam = t >= 2 ? lambda_next(st) : NAN;
    /* invariant 3: day t enters, day t - window leaves (day 1 counts 0). */
    if (t >= 2)
        st->sum_cases += cases;
    if (t - window >= 2)
        st->sum_cases -= inc_at(st, t - window);
    st->inc[(size_t)(t - 1) % st->cap] = cases;
    st->lam[(size_t)(t - 1) % (size_t)window] = t >= 2 ? lam : 0;
    st->last_lambda = lam;
    st->t = t;

    if (t < window + 1 || !((double)t > st->si_mean))
        return false;
    double sum_lambda = 0;
    for (int64_t s = t - window + 1; s <= t; s++)
        sum_lambda += st->lam[(size_t)(s - 1) % (size_t)window];
    out->t_start = t - window + 1;
    out->t_end = t;
    rt_posterior_some(st->cfg.prior_mean, st->cfg.prior_sd, (double)st->sum_cases, sum_lambda, st->cfg.quantiles,
                      out);
    return true;
}

int64_t rt_days(const rt_state *st) { return st->t; }
int64_t rt_clamped(const rt_state *st) { return st->clamped; }
double rt_last_lambda(const rt_state *st) { return st->last_lambda; }
double rt_si_mean(const rt_state *st) { return st->si_mean; }

const double *rt_si(const rt_state *st, size_t *n)
{
    *n = st->K + 1;
    return st->w;
}

size_t rt_history(const rt_state *st, double *dst, size_t n)
{
    size_t have = (size_t)st->t < st->cap ? (size_t)st->t : st->cap;
    if (n > have)
        n = have;
    for (size_t i = 0; i < n; i++)
        dst[i] = (double)inc_at(st, st->t - (int64_t)n + 1 + (int64_t)i);
    return n;
}

/* ======================================================================
 * Batch: the streaming estimator over the whole history
 * ====================================================================== */

payi_code rt_estimate_series(const double *w, size_t nw, const rt_config *cfg,
                             const int64_t *cases, size_t n, rt_estimate *out, size_t *nout,
                             double *lambda, int64_t *clamped, payi_err *err)
{
    rt_state *st;
    payi_code rc = rt_open(&st, w, nw, cfg, err);
    *nout = 0;
    if (rc != PAYI_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (rt_push(st, cases[i], &out[*nout]))
            (*nout)++;
        if (lambda)
            lambda[i] = rt_last_lambda(st);
    }
    if (clamped)
        *clamped = st->clamped;
    rt_close(st);
    return PAYI_OK;
}
