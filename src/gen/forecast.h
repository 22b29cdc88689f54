/* forecast.h — the next days of cases from the current state: the renewal
 * equation driven by the Rt posterior (gen/rt.h), with a prediction
 * interval, and the naive baseline it must beat.
 *
 *   rt_estimate e;                 the latest window, from rt_push
 *   size_t nw;  const double *w = rt_si(st, &nw);
 *   double hist[128];  size_t nh = rt_history(st, hist, 128);
 *   forecast_config cfg;  forecast_config_default(&cfg);
 *   forecast_day out[14];
 *   forecast_renewal(w, nw, hist, nh, e.shape, e.scale, &cfg, out, NULL, &err);
 *
 * Method (forecast.c has the details): R is held at its current posterior,
 * Gamma(shape, scale), for the whole horizon.  Each of cfg.paths sample
 * paths draws one R, then walks the renewal equation day by day,
 *     I_{T+h} ~ NegBin(mean R·Λ_{T+h}, dispersion φ),
 *     Λ_{T+h} = Σ_k w_k I_{T+h-k}   (observed days, then the path's own),
 * so the interval carries the uncertainty of R and the day-to-day noise,
 * compounded through the feedback.  φ = 0 is Poisson noise.  Random numbers
 * come from a xoshiro256** generator seeded from cfg.seed only: the same
 * inputs give the same forecast, bit for bit, on every run.
 *
 * Threads: no global state; every function is reentrant.
 */
#ifndef PAYI_GEN_FORECAST_H
#define PAYI_GEN_FORECAST_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define FORECAST_MAX_HORIZON 366
#define FORECAST_MAX_PATHS 1000000

typedef struct forecast_config {
    int horizon;        /* days ahead, 1..FORECAST_MAX_HORIZON; default 14 */
    int paths;          /* sample paths, 1..FORECAST_MAX_PATHS; default 1000 */
    uint64_t seed;      /* the generator's seed; default 20130901 */
    /* Negative-binomial dispersion φ (variance μ + φ·μ²).  0 is Poisson;
     * < 0 (the default, -1) estimates it from the history with
     * forecast_dispersion over the last fit_days days. */
    double dispersion;
    int fit_days;       /* default 28: four weeks, every weekday alike */
    /* R is held at most r_max in the paths and the point path (draws above
     * are clamped).  A 7-day posterior far above any sustained epidemic
     * comes from reporting artefacts, e.g. a week's cases reported at once
     * after silent days, and the renewal equation turns it into 1e18 cases
     * in 14 days (forecast.c has the evidence).  Default 3; INFINITY
     * disables the cap. */
    double r_max;
} forecast_config;

/* What the forecast used, for the caller to publish beside it. */
typedef struct forecast_info {
    double dispersion;     /* φ used */
    double r_mean;         /* the posterior mean of R, before clamping */
    double clamped_share;  /* share of the paths whose R was clamped at r_max */
} forecast_info;

void forecast_config_default(forecast_config *cfg);

typedef struct forecast_day {
    int h;              /* days after the last observed day, 1..horizon */
    double point;       /* the renewal equation with R = min(posterior mean, r_max), no noise */
    double mean;        /* mean of the sample paths */
    double median;      /* the forecast to use; quantiles of the paths: */
    double q025, q25, q75, q975;   /* 95% interval [q025, q975], 50% [q25, q75] */
} forecast_day;

/* Forecast cfg->horizon days after hist into out[0..horizon-1].
 *   w[0..nw-1]: the serial interval (w[0] = 0), e.g. rt_si();
 *   hist[0..nhist-1]: the observed daily counts, oldest first, >= 0; only
 *     the last nw-1 matter for Λ (and fit_days + 6 for the dispersion fit);
 *   shape, scale: the Gamma posterior of R (rt_estimate).
 * *info (may be NULL) gets what was used.  PAYI_VALIDATION on bad input. */
payi_code forecast_renewal(const double *w, size_t nw, const double *hist, size_t nhist,
                           double shape, double scale, const forecast_config *cfg,
                           forecast_day *out, forecast_info *info, payi_err *err);

/* The method-of-moments negative-binomial dispersion of the last fit_days
 * counts around their centred 7-day mean m_s (forecast.c): φ >= 0, 0 when
 * the counts are no more variable than Poisson or too few to say. */
double forecast_dispersion(const double *hist, size_t nhist, int fit_days);

/* The naive baseline: the mean of the last 7 days (fewer if hist is
 * shorter; 0 if empty), flat for horizon days.  Only point, mean and
 * median are set; the quantiles are NaN. */
void forecast_naive(const double *hist, size_t nhist, int horizon, forecast_day *out);

/* ---- the random numbers, exported for their tests ---- */

typedef struct forecast_rng {
    uint64_t s[4];
} forecast_rng;

void forecast_rng_seed(forecast_rng *r, uint64_t seed);   /* splitmix64 expands the seed */
uint64_t forecast_rng_next(forecast_rng *r);                /* xoshiro256** */
double forecast_rng_uniform(forecast_rng *r);               /* in (0, 1), 53 bits */
double forecast_rng_gamma(forecast_rng *r, double shape, double scale);
double forecast_rng_poisson(forecast_rng *r, double mean);

#endif
