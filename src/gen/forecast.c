/* forecast.c — cases for the next days by the renewal equation, with a
 * prediction interval from sample paths.
 *
 * The model.  T is the last observed day, w the serial interval (support
 * 1..K), R ~ Gamma(shape, scale) the current Rt posterior (gen/rt.h).  The
 * renewal equation of Cori et al. (2013) says E[I_t | past] = R·Λ_t with
 * Λ_t = Σ_{k=1}^{K} w_k I_{t-k}.  Looking ahead h = 1..H days:
 *
 *   Λ_{T+h} = base_h + Σ_{k=1}^{min(h-1, K)} w_k I_{T+h-k}
 *   base_h  = Σ_{k=h}^{K} w_k I_{T+h-k}          (observed days only)
 *
 * base_h does not depend on the path, so it is computed once (O(K·H)); a
 * path then costs O(H^2) multiply-adds plus its random draws.
 *
 *   point:    the deterministic renewal path with R = E[R] = shape·scale,
 *             I_{T+h} = E[R]·Λ_{T+h}, the projected values fed back.
 *   paths:    for each of N paths, draw R once (R is held for the horizon:
 *             the posterior describes today's R, and nothing in the data
 *             says how it will move), then for h = 1..H draw
 *             I_{T+h} ~ NegBin(mean μ = R·Λ_{T+h}, variance μ + φμ²),
 *             as Poisson(Gamma(1/φ, φμ)) (Poisson(μ) when φ = 0), and feed
 *             the drawn count back into Λ of later days.
 *   output:   per day, the mean of the N paths and their quantiles 2.5%,
 *             25%, 50%, 75%, 97.5% (linear interpolation between order
 *             statistics, R's type 7).  The median is the forecast.
 *
 * Why negative-binomial noise.  Reported COVID-19 counts are far more
 * variable than Poisson (weekday reporting, batches, backlogs): with φ = 0 a
 * 95% interval for 1,000 expected cases is ±62, and reality misses it most
 * days.  φ is estimated by forecast_dispersion, by the method of moments
 * on the last fit_days days: with m_s the centred 7-day mean of day s,
 *
 *   φ = max(0, Σ_s [(7/6)(I_s - m_s)^2 - m_s] / Σ_s m_s^2)
 *
 * (for independent counts of variance v around a smooth trend,
 * E(I_s - m_s)^2 = (6/7)v, hence 7/6; a NegBin has v = m + φm^2).  The centred
 * mean needs 3 days on each side, so the fit uses days up to T-3.
 *
 * Random numbers.  xoshiro256** (Blackman and Vigna), seeded through
 * splitmix64; uniforms with 53 random bits in (0, 1).  Normal deviates by
 * Marsaglia's polar method; gamma by Marsaglia and Tsang (2000), with the
 * U^(1/a) boost below shape 1; Poisson by inversion below mean 10 and by
 * Hörmann's transformed rejection (PTRS, 1993) above.  All written here from
 * the published algorithms; no platform generator is used, so a forecast is
 * reproducible everywhere for a given seed.
 *
 * Why R is capped (r_max, default 3).  The Rt posterior of a 7-day window
 * jumps when a week's cases are reported at once after silent days (Λ is
 * small, Σ I is not): the JHU series have origins with posterior means of
 * 185, 1,860, even 615,000, and the renewal equation turns those into 1e18
 * to 1e64 cases within 14 days.  In the back-test (bench/backtest), of the
 * 21,252 active origins 152 have a posterior mean above 3; what followed
 * them had a median ratio of 0.94 between the next 14 days' mean and the
 * last week's (no growth at all, where R = 3 means about x10), and the
 * uncapped forecast beat the naive one at 10 of them.  Early estimates of
 * SARS-CoV-2's basic reproduction number lie around 2 to 3.5, so 3 is a
 * plausibility bound, not a tuning knob; clamped draws are reported
 * (forecast_info.clamped_share) so that a caller can flag the forecast.
 *
 * The naive baseline: the mean of the last 7 days, flat (7 days so that a
 * weekday reporting pattern does not bias it).
 */
#include "gen/forecast.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

void forecast_config_default(forecast_config *cfg)
{
    cfg->horizon = 14;
    cfg->paths = 1000;
    cfg->seed = 20130901;
    cfg->dispersion = -1;
    cfg->fit_days = 28;
    cfg->r_max = 3;
}

/* ======================================================================
 * Random numbers
 * ====================================================================== */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void forecast_rng_seed(forecast_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t forecast_rng_next(forecast_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double forecast_rng_uniform(forecast_rng *r)
{
    /* (k + 1/2) / 2^53: never 0 or 1, so log(u) and 1/u are safe. */
    return ((double)(forecast_rng_next(r) >> 11) + 0.5) * 0x1p-53;
}

static double rng_normal(forecast_rng *r)
{
    for (;;) {
        double u = 2 * forecast_rng_uniform(r) - 1, v = 2 * forecast_rng_uniform(r) - 1;
        double s = u * u + v * v;
        if (s < 1 && s > 0)
            return u * sqrt(-2 * log(s) / s);   /* the second deviate is dropped: simpler state */
    }
}

double forecast_rng_gamma(forecast_rng *r, double shape, double scale)
{
    if (shape < 1) {
        /* Gamma(a) = Gamma(a + 1) · U^(1/a) */
        double g = forecast_rng_gamma(r, shape + 1, 1);
        return g * pow(forecast_rng_uniform(r), 1 / shape) * scale;
    }
    const double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = rng_normal(r), v = 1 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = forecast_rng_uniform(r);
        if (u < 1 - 0.0331 * (x * x) * (x * x) || log(u) < 0.5 * x * x + d * (1 - v + log(v)))
            return d * v * scale;
    }
}

/* Inversion: walk the cumulative distribution from 0 (mean < 10, so a few
 * steps on average). */
static double poisson_small(forecast_rng *r, double mean)
{
    double u = forecast_rng_uniform(r), p = exp(-mean), F = p;
    double k = 0;
    while (u > F && k < 1000) {
        k++;
        p *= mean / k;
        F += p;
    }
    return k;
}

/* PTRS, transformed rejection with squeeze (Hörmann 1993), mean >= 10. */
static double poisson_ptrs(forecast_rng *r, double mean)
{
    const double slam = sqrt(mean), loglam = log(mean);
    const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
        double u = forecast_rng_uniform(r) - 0.5, v = forecast_rng_uniform(r);
        double us = 0.5 - fabs(u);
        double k = floor((2 * a / us + b) * u + mean + 0.43);
        if (us >= 0.07 && v <= vr)
            return k;
        if (k < 0 || (us < 0.013 && v > us))
            continue;
        int sign;
        if (log(v) + log(inv_alpha) - log(a / (us * us) + b) <= -mean + k * loglam - lgamma_r(k + 1, &sign))
            return k;
    }
}

double forecast_rng_poisson(forecast_rng *r, double mean)
{
    if (!(mean > 0))
        return 0;
    return mean < 10 ? poisson_small(r, mean) : poisson_ptrs(r, mean);
}

/* ======================================================================
 * Dispersion and the naive baseline
 * ====================================================================== */

double forecast_dispersion(const double *hist, size_t nhist, int fit_days)
{
    if (nhist < 7 || fit_days < 1)
        return 0;
    /* Day s (0-based) has a centred 7-day mean when 3 <= s <= nhist - 4. */
    size_t last = nhist - 4;
    size_t first = last + 1 > (size_t)fit_days + 3 ? last + 1 - (size_t)fit_days : 3;
    double num = 0, den = 0;
    for (size_t s = first; s <= last; s++) {
        double m = 0;
        for (size_t j = s - 3; j <= s + 3; j++)
            m += hist[j];
        m /= 7;
        double d = hist[s] - m;
        num += 7.0 / 6 * d * d - m;
        den += m * m;
    }
    return den > 0 && num > 0 ? num / den : 0;
}

void forecast_naive(const double *hist, size_t nhist, int horizon, forecast_day *out)
{
    size_t n = nhist < 7 ? nhist : 7;
    double mean = 0;
    for (size_t i = nhist - n; i < nhist; i++)
        mean += hist[i];
    mean = n ? mean / (double)n : 0;
    for (int h = 0; h < horizon; h++)
        out[h] = (forecast_day){.h = h + 1, .point = mean, .mean = mean, .median = mean,
                                .q025 = NAN, .q25 = NAN, .q75 = NAN, .q975 = NAN};
}

/* ======================================================================
 * The renewal forecast
 * ====================================================================== */

static payi_code check_input(const double *w, size_t nw, const double *hist, size_t nhist, double shape,
                             double scale, const forecast_config *cfg, payi_err *err)
{
    if (cfg->horizon < 1 || cfg->horizon > FORECAST_MAX_HORIZON)
        return payi_err_set(err, PAYI_VALIDATION, "horizon", "horizon must be 1..%d days (got %d)",
                            FORECAST_MAX_HORIZON, cfg->horizon);
    if (cfg->paths < 1 || cfg->paths > FORECAST_MAX_PATHS)
        return payi_err_set(err, PAYI_VALIDATION, "paths", "paths must be 1..%d (got %d)",
                            FORECAST_MAX_PATHS, cfg->paths);
    if (!(cfg->dispersion < 0 ? cfg->fit_days >= 1 : isfinite(cfg->dispersion)))
        return payi_err_set(err, PAYI_VALIDATION, "dispersion", "dispersion must be finite, and fit_days >= 1");
    if (!(cfg->r_max > 0))
        return payi_err_set(err, PAYI_VALIDATION, "r_max", "r_max must be > 0 (got %g)", cfg->r_max);
    if (!(shape > 0 && scale > 0 && isfinite(shape) && isfinite(scale)))
        return payi_err_set(err, PAYI_VALIDATION, "posterior", "posterior shape and scale must be > 0 (got %g, %g)",
                            shape, scale);
    if (nw < 2 || w[0] != 0)
        return payi_err_set(err, PAYI_VALIDATION, "si", "serial interval needs w[0] = 0 and at least 2 weights");
    for (size_t k = 0; k < nw; k++)
        if (!(w[k] >= 0 && isfinite(w[k])))
            return payi_err_set(err, PAYI_VALIDATION, "si", "serial interval weight w[%zu] = %g", k, w[k]);
    for (size_t i = 0; i < nhist; i++)
        if (!(hist[i] >= 0 && isfinite(hist[i])))
            return payi_err_set(err, PAYI_VALIDATION, "history", "daily count %zu is %g, not a count >= 0", i,
                                hist[i]);
    return PAYI_OK;
}

/* base[h-1] = Σ_{k=h}^{K} w_k I_{T+h-k}: the observed days' part of Λ_{T+h}. */
static void observed_part(const double *w, size_t K, const double *hist, size_t nhist, int horizon,
                          double *base)
{
    for (int h = 1; h <= horizon; h++) {
        double s = 0;
        for (size_t k = (size_t)h; k <= K; k++) {
            size_t back = k - (size_t)h;   /* I_{T-back} */
            if (back < nhist)
                s += w[k] * hist[nhist - 1 - back];
        }
        base[h - 1] = s;
    }
}

/* Λ_{T+h} of a path whose days 1..h-1 are y[0..h-2]. */
static double lambda_ahead(const double *w, size_t K, const double *base, const double *y, int h)
{
    double s = base[h - 1];
    for (int k = 1; k < h && (size_t)k <= K; k++)
        s += w[k] * y[h - 1 - k];
    return s;
}

/* Rearranges x[0..n-1] so that x[k] is the k-th smallest, with nothing
 * larger before it and nothing smaller after it (Hoare's selection, median
 * of three pivots; expected O(n)).  Cheaper than sorting 14 x 1000 draws. */
static void select_kth(double *x, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        double a = x[lo], b = x[mid], c = x[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] < pivot)
                i++;
            while (x[j] > pivot)
                j--;
            if (i <= j) {
                double t = x[i];
                x[i] = x[j];
                x[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        /* Now x[lo..j] <= pivot <= x[i..hi], and j < i. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;   /* between j and i every value equals the pivot */
    }
}

/* Type-7 quantiles (linear between order statistics) of x[0..n-1] for
 * increasing p[0..m-1]; x is reordered.  Each selection works on the part
 * right of the previous one. */
static void quantiles(double *x, size_t n, const double *p, int m, double *out)
{
    size_t from = 0;
    for (int i = 0; i < m; i++) {
        double pos = p[i] * (double)(n - 1);
        size_t k = (size_t)pos;
        if (k < from)   /* two p on the same order statistic */
            k = from;
        select_kth(x + from, n - from, k - from);
        double v = x[k];
        if (k + 1 < n && pos > (double)k) {
            double next = x[k + 1];   /* the smallest right of k */
            for (size_t j = k + 2; j < n; j++)
                if (x[j] < next)
                    next = x[j];
            v += (pos - (double)k) * (next - v);
        }
        out[i] = v;
        from = k;
    }
}

static double draw_count(forecast_rng *rng, double mu, double phi)
{
    if (!(mu > 0))
        return 0;
    if (phi > 0)
        mu = forecast_rng_gamma(rng, 1 / phi, phi * mu);
    return forecast_rng_poisson(rng, mu);
}

payi_code forecast_renewal(const double *w, size_t nw, const double *hist, size_t nhist,
                           double shape, double scale, const forecast_config *cfg,
                           forecast_day *out, forecast_info *info, payi_err *err)
{
    payi_code rc = check_input(w, nw, hist, nhist, shape, scale, cfg, err);
    if (rc != PAYI_OK)
        return rc;
    const int H = cfg->horizon;
    const size_t N = (size_t)cfg->paths, K = nw - 1;
    const double phi = cfg->dispersion < 0 ? forecast_dispersion(hist, nhist, cfg->fit_days) : cfg->dispersion;

    double *base = xmalloc((size_t)H * sizeof *base);
    double *y = xmalloc((size_t)H * sizeof *y);
    double *samples = xmalloc((size_t)H * N * sizeof *samples);   /* [h][path] */
    observed_part(w, K, hist, nhist, H, base);

    const double rmean = fmin(shape * scale, cfg->r_max);
    for (int h = 1; h <= H; h++)
        y[h - 1] = rmean * lambda_ahead(w, K, base, y, h);
    for (int h = 0; h < H; h++)
        out[h].point = y[h];

    forecast_rng rng;
    forecast_rng_seed(&rng, cfg->seed);
    size_t nclamped = 0;
    for (size_t i = 0; i < N; i++) {
        double R = forecast_rng_gamma(&rng, shape, scale);
        if (R > cfg->r_max) {
            R = cfg->r_max;
            nclamped++;
        }
        for (int h = 1; h <= H; h++) {
            y[h - 1] = draw_count(&rng, R * lambda_ahead(w, K, base, y, h), phi);
            samples[(size_t)(h - 1) * N + i] = y[h - 1];
        }
    }

    static const double ps[5] = {0.025, 0.25, 0.5, 0.75, 0.975};
    for (int h = 0; h < H; h++) {
        double *x = samples + (size_t)h * N, sum = 0, q[5];
        for (size_t i = 0; i < N; i++)
            sum += x[i];
        quantiles(x, N, ps, 5, q);
        out[h].h = h + 1;
        out[h].mean = sum / (double)N;
        out[h].q025 = q[0], out[h].q25 = q[1], out[h].median = q[2], out[h].q75 = q[3], out[h].q975 = q[4];
    }
    if (info)
        *info = (forecast_info){.dispersion = phi, .r_mean = shape * scale,
                                .clamped_share = (double)nclamped / (double)N};
    free(samples);
    free(y);
    free(base);
    return PAYI_OK;
}
