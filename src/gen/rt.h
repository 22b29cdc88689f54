/* rt.h — the time-varying reproduction number Rt of Cori et al. (2013),
 * computed exactly as EpiEstim's estimate_R does (parametric or
 * non-parametric serial interval, no SI uncertainty), as a streaming
 * estimator fed one day of incidence at a time.
 *
 *   rt_state *st;
 *   rt_config cfg;
 *   rt_config_default(&cfg);                       window 7, prior mean 5, sd 5
 *   double w[64];
 *   rt_discr_si(4.7, 2.9, 64, w);                  serial interval, w[0] = 0
 *   if (rt_open(&st, w, 64, &cfg, &err) != PAYI_OK) ...
 *   for (each day, in day order) {
 *       rt_estimate e;
 *       if (rt_push(st, cases, &e))                emitted from day 8 on
 *           use e.mean, e.q[RT_Q025], e.q[RT_Q975] ...
 *   }
 *   rt_close(st);
 *
 * Day 1 is the first day pushed; days are numbered 1, 2, ... as in EpiEstim.
 * Batch and streaming are one code path: rt_estimate_series pushes the whole
 * history through a fresh rt_state, so a live generator that pushes the same
 * days one at a time gets bit-identical estimates.
 *
 * Conventions taken from EpiEstim (see rt/SOURCE.md in the shared data):
 *   - all cases of day 1 are "imported": they feed the infectiousness Λ of
 *     later days but never a window's numerator (windows start on day >= 2);
 *   - negative daily counts (reporting corrections) are not valid incidence:
 *     they are clamped to 0 and counted (rt_clamped) so callers can say so;
 *   - a window is estimated only when t_end > Σ k·w_k (the SI mean).
 *
 * Threads: an rt_state belongs to one thread at a time; the free functions
 * are reentrant (no global state; lgamma_r, not lgamma).
 */
#ifndef PAYI_GEN_RT_H
#define PAYI_GEN_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ---- special functions ---- */

/* The regularised lower incomplete gamma P(a, x) = γ(a, x)/Γ(a) and its
 * complement Q = 1 - P, for a > 0, x >= 0; relative error about 1e-15
 * (Q is computed directly, not as 1 - P, where it is the small one).
 * NaN for invalid arguments. */
double rt_gamma_p(double a, double x);
double rt_gamma_q(double a, double x);

/* The gamma quantile: the x with P(shape, x/scale) = p, for 0 <= p <= 1,
 * shape > 0, scale > 0 (p = 0 gives 0, p = 1 gives +inf, invalid gives NaN).
 * Robust for shapes from 1e-2 to 1e7. */
double rt_qgamma(double p, double shape, double scale);

/* The standard normal quantile (Acklam's rational approximation, relative
 * error < 1.2e-9): the starting point of rt_qgamma, exported for its test. */
double rt_qnorm_approx(double p);

/* ---- serial interval ---- */

/* EpiEstim's discr_si(k, mean, sd) for k = 0..n-1 into w[0..n-1]: a gamma
 * distribution for (SI - 1) with shape ((mean-1)/sd)^2 and scale
 * sd^2/(mean-1), discretised as in Cori 2013 Web Appendix 11 and clipped at
 * 0.  w[0] = 0.  The weights sum to 1 as n grows (mass beyond n-1 is lost).
 * PAYI_VALIDATION unless mean > 1, sd > 0 and n >= 2. */
payi_code rt_discr_si(double mean, double sd, size_t n, double *w, payi_err *err);

/* ---- the posterior of one window ---- */

/* The seven quantiles every estimate carries, in this order. */
#define RT_NQ 7
enum { RT_Q025, RT_Q05, RT_Q25, RT_MEDIAN, RT_Q75, RT_Q95, RT_Q975 };
extern const double rt_quantile_p[RT_NQ];   /* 0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975 */

typedef struct rt_estimate {
    int64_t t_start, t_end;   /* the window, days inclusive, 1-based */
    double sum_cases;         /* Σ I_s over the window (the local cases) */
    double sum_lambda;        /* Σ Λ_s over the window */
    double shape, scale;      /* the gamma posterior of R */
    double mean, sd;
    double q[RT_NQ];          /* q[RT_Q025] .. q[RT_Q975]; q[RT_MEDIAN] is the median */
} rt_estimate;

/* Fill out's posterior fields (not t_start/t_end) from the window sums:
 *   shape = a + Σ I, scale = 1/(1/b + Σ Λ), mean = shape·scale,
 *   sd = sqrt(shape)·scale, q = qgamma(p, shape, scale),
 * with the prior a = (prior_mean/prior_sd)^2, b = prior_sd^2/prior_mean. */
void rt_posterior(double prior_mean, double prior_sd, double sum_cases, double sum_lambda,
                  rt_estimate *out);
/* The same with only the quantiles whose bit is set in `quantiles`. */
void rt_posterior_some(double prior_mean, double prior_sd, double sum_cases, double sum_lambda, unsigned quantiles,
                       rt_estimate *out);

/* ---- the streaming estimator ---- */

typedef struct rt_config {
    int window;          /* days per window (EpiEstim's tau + 1); default 7 */
    double prior_mean;   /* prior mean of R; default 5 */
    double prior_sd;     /* prior sd of R; default 5 */
    /* The SI is truncated at the smallest K whose tail Σ_{k>K} w_k is at
     * most si_cut · Σ w: weights beyond it are dropped from Λ.  Default
     * 1e-14, which keeps discr_si(4.7, 2.9) to k <= 91 and moves posterior
     * means by < 3e-13 relative even after a large wave (rt.c explains);
     * 0 keeps every weight up to the last non-zero one. */
    double si_cut;
    /* Which of the RT_NQ quantiles rt_push computes (bit i: q[i]; the others
     * are NaN): each costs O(sqrt(shape)) evaluations of P.  Default all. */
    unsigned quantiles;
} rt_config;

#define RT_ALL_QUANTILES ((1u << RT_NQ) - 1)

void rt_config_default(rt_config *cfg);

typedef struct rt_state rt_state;

/* Validate the SI (w[0] == 0, every w_k finite and >= 0, Σ w > 0) and the
 * config (window >= 1, prior mean and sd > 0, si_cut in [0, 1)), copy the
 * truncated w, and return an empty state in *out.  w is borrowed for the
 * call only.  PAYI_VALIDATION with a message otherwise. */
payi_code rt_open(rt_state **out, const double *w, size_t nw, const rt_config *cfg, payi_err *err);
void rt_close(rt_state *st);   /* NULL is fine */

/* Push the next day's count (day rt_days(st) + 1).  A negative count is
 * clamped to 0 and counted.  Returns true and fills *out when that day ends
 * an estimated window: t_end = day >= window + 1 and t_end > SI mean.
 * O(SI support + window) time, no allocation. */
bool rt_push(rt_state *st, int64_t cases, rt_estimate *out);

int64_t rt_days(const rt_state *st);      /* days pushed so far */
int64_t rt_clamped(const rt_state *st);   /* how many of them were negative */
/* Λ of the last day pushed (Σ_{k=1}^{t-1} w_k I_{t-k}); NaN before day 2,
 * where EpiEstim has NA. */
double rt_last_lambda(const rt_state *st);
double rt_si_mean(const rt_state *st);    /* Σ k·w_k of the untruncated SI */

/* The truncated SI w[0..*n-1] the state uses (the forecast needs the same
 * one).  Owned by st, valid until rt_close. */
const double *rt_si(const rt_state *st, size_t *n);

/* Copy the last min(n, rt_days, max(SI support, window, RT_HISTORY_MIN))
 * clamped daily counts, oldest first, into dst; returns how many.  That is
 * all the history the forecast needs (forecast.h): the SI support for Λ,
 * 34 days for its dispersion fit. */
#define RT_HISTORY_MIN 64
size_t rt_history(const rt_state *st, double *dst, size_t n);

/* ---- batch ---- */

/* The whole series at once: estimates for every window that rt_push would
 * emit, in day order, into out (room for n entries is enough); *nout gets
 * their number.  lambda (may be NULL) gets Λ_t for t = 1..n in lambda[t-1]
 * (NaN for t = 1); *clamped (may be NULL) the number of negative days. */
payi_code rt_estimate_series(const double *w, size_t nw, const rt_config *cfg,
                             const int64_t *cases, size_t n, rt_estimate *out, size_t *nout,
                             double *lambda, int64_t *clamped, payi_err *err);

#endif
