/* PLD accountant: the privacy-loss distribution of each event is discretised pessimistically on a grid
 * of width h ("connect the dots", Doroshenko et al. 2022), the events are composed by one FFT power per
 * event, and δ(ε) = Σ_{ℓ>ε} p(ℓ)(1 − e^{ε−ℓ}) + (mass at infinite loss) + (wrap-around bound).
 *
 * Why the result is an upper bound: within each grid cell [ℓ_lo, ℓ_hi] the P-mass is split between the two
 * end points so that E_P[e^{−L}] is preserved. That is a mean-preserving spread of e^{−L}, and for any
 * rest-of-composition R, (1 − e^{ε−R}·e^{−L})_+ is convex in e^{−L}, so by Jensen each step's split can
 * only increase the composed δ. Mass below the grid is moved up to its first point and mass above it to
 * +∞ (both increase δ). The cyclic FFT wraps mass outside the chosen window back into it; the window is
 * chosen from a Chernoff bound so that this mass is at most the tail budget, which is added to δ.
 * Not covered: rounding error of the FFT itself (~1e-16 per entry), which is many orders below the
 * budgets above. Both adjacency directions are computed and the worse one is reported. */
#include <fftw3.h>
#include <math.h>

#include "core/common.h"
#include "dpformer/accountant.h"
#include "privacy/privacy_math.h"

#define PLD_MAX_COARSENINGS 16

void dp_pld_default_params(dp_pld_params *p) {
    p->value_discretization_interval = 1e-4;
    p->tail_mass_truncation = 1e-15;
    p->max_grid = (size_t)1 << 25;
}

/* One step of one event in one direction: atoms at losses (j0 + k)·h, k < n. */
typedef struct {
    int64_t j0;
    size_t n;
    double *p;      /* (n) finite masses */
    double p_inf;   /* mass at +∞ */
    int64_t center; /* atom index nearest the mean, used to keep the FFT phases small */
    int64_t steps;
} step_pmf;

/* Remove direction: P = (1−q)N(0,σ²) + qN(1,σ²), Q = N(0,σ²), L(x) = log(1 − q + q e^{(2x−1)/(2σ²)}),
 * increasing in x. Add direction: P and Q swapped, and its loss is −L(x) with x ~ N(0,σ²). */
static double loss_remove(double q, double s, double x) {
    double y = (2 * x - 1) / (2 * s * s);
    return pm_log_add(log(q) + y, log1p(-q));
}

/* The x where loss_remove(x) = e (−∞ below the smallest loss log(1−q), +∞ for e = +∞). */
static double x_of_loss_remove(double q, double s, double e) {
    if (e == INFINITY) return INFINITY;
    if (q == 1) return s * s * e + 0.5;
    if (e <= log1p(-q)) return -INFINITY;
    double lv; /* log(e^e − (1 − q)), each branch avoiding the cancellation of its range */
    if (e > 1) lv = e + log1p(-(1 - q) * exp(-e));
    else if (q < 0.5) lv = log(expm1(e) + q);
    else lv = log(exp(e) - (1 - q));
    return s * s * (lv - log(q)) + 0.5;
}

/* Standard-normal tail seen from a point: t >= 0 stores P(Z > t), t < 0 stores P(Z < t); masses between two
 * points are then differences of small numbers, never of numbers near 1. */
typedef struct {
    double tail;
    int upper;
} tail_pt;

static tail_pt tail_at(double t) {
    tail_pt r;
    if (t == INFINITY) r.tail = 0, r.upper = 1;
    else if (t == -INFINITY) r.tail = 0, r.upper = 0;
    else if (t >= 0) r.tail = pm_norm_sf(t), r.upper = 1;
    else r.tail = pm_norm_cdf(t), r.upper = 0;
    return r;
}

/* Mass of (a, b] from the tails at a <= b. */
static double tail_mass(tail_pt a, tail_pt b) {
    double m;
    if (a.upper && b.upper) m = a.tail - b.tail;
    else if (!a.upper && !b.upper) m = b.tail - a.tail;
    else if (!a.upper && b.upper) m = 1.0 - a.tail - b.tail;
    else m = 0.0;
    return m > 0 ? m : 0.0;
}

/* P- and Q-mass of the loss cell between two grid points, from the tails at the matching x values. */
typedef struct {
    tail_pt c0, c1; /* tails of N(0,σ²) and N(1,σ²) at the cell boundary's x */
} boundary;

static boundary boundary_at(int dir, double q, double s, double loss) {
    double x = dir == 0 ? x_of_loss_remove(q, s, loss) : x_of_loss_remove(q, s, -loss);
    boundary b;
    b.c0 = tail_at(x / s);
    b.c1 = tail_at((x - 1) / s);
    return b;
}

static void cell_mass(int dir, double q, boundary lo, boundary hi, double *pm, double *qm) {
    /* The loss is increasing in x for remove and decreasing for add. */
    double m0 = dir == 0 ? tail_mass(lo.c0, hi.c0) : tail_mass(hi.c0, lo.c0);
    double m1 = dir == 0 ? tail_mass(lo.c1, hi.c1) : tail_mass(hi.c1, lo.c1);
    double mix = q == 1 ? m1 : (1 - q) * m0 + q * m1;
    if (dir == 0) *pm = mix, *qm = m0;
    else *pm = m0, *qm = mix;
}

/* The loss range [lmin, lmax] that one step's grid covers: outside x in [−σz, 1 + σz] the P-mass is at
 * most tau (either Gaussian component). */
static void step_range(int dir, double q, double s, double tau, double *lmin, double *lmax) {
    double z = pm_norm_isf(tau);
    double la = loss_remove(q, s, -s * z), lb = loss_remove(q, s, 1 + s * z);
    if (dir == 1) la = -la, lb = -lb;
    *lmin = fmin(la, lb);
    *lmax = fmax(la, lb);
}

/* Grid points of one step at interval h (as a double: it may not fit any integer type). */
static double step_points(double lmin, double lmax, double h) {
    double jb = floor(lmin / h), jt = ceil(lmax / h);
    if (jt <= jb) jt = jb + 1;
    return jt - jb + 1;
}

static void build_step(int dir, double q, double s, double h, double tau, step_pmf *out) {
    double lmin, lmax;
    step_range(dir, q, s, tau, &lmin, &lmax);
    int64_t jb = (int64_t)floor(lmin / h), jt = (int64_t)ceil(lmax / h);
    if (jt <= jb) jt = jb + 1;
    size_t n = (size_t)(jt - jb + 1);
    double *p = dp_calloc(n, sizeof *p);
    double pm, qm;
    boundary bottom = boundary_at(dir, q, s, -INFINITY), top = boundary_at(dir, q, s, INFINITY);
    boundary prev = boundary_at(dir, q, s, (double)jb * h);
    cell_mass(dir, q, bottom, prev, &pm, &qm);
    p[0] += pm; /* below the grid: rounded up to its first point */
    double spread = -expm1(-h);
    for (size_t k = 0; k + 1 < n; k++) {
        double a = (double)(jb + (int64_t)k) * h;
        boundary next = boundary_at(dir, q, s, (double)(jb + (int64_t)k + 1) * h);
        cell_mass(dir, q, prev, next, &pm, &qm);
        prev = next;
        if (pm <= 0) continue;
        /* Split keeping E_P[e^{−L}] = qm: P_hi e^{−ℓ_hi} + P_lo e^{−ℓ_lo} = qm, P_hi + P_lo = pm. */
        double up = (pm * exp(-a) - qm) / (exp(-a) * spread);
        if (!(up >= 0)) up = 0;
        if (up > pm) up = pm;
        p[k + 1] += up;
        p[k] += pm - up;
    }
    cell_mass(dir, q, prev, top, &pm, &qm);
    out->p_inf = pm;
    double mass = 0, mean = 0;
    for (size_t k = 0; k < n; k++) mass += p[k], mean += (double)k * p[k];
    out->j0 = jb;
    out->n = n;
    out->p = p;
    out->center = jb + (int64_t)llround(mass > 0 ? mean / mass : 0.0);
}

/* log Σ_k p_k e^{λ ℓ_k} for the finite atoms (λ of either sign), shifted to the end of the support that
 * makes every exponent <= 0. The atoms are equally spaced, so the sum is a polynomial in e^{−|λ|h}
 * evaluated by Horner's rule; its rounding (at most 2n ulps, relative) is covered by inflating the
 * result, which keeps the Chernoff bound an upper bound. */
static double log_mgf(const step_pmf *st, double h, double lambda) {
    double r = exp(-fabs(lambda) * h), acc = 0;
    double shift;
    if (lambda > 0) {
        shift = (double)(st->j0 + (int64_t)st->n - 1) * h;
        for (size_t k = 0; k < st->n; k++) acc = acc * r + st->p[k];
    } else {
        shift = (double)st->j0 * h;
        for (size_t k = st->n; k-- > 0;) acc = acc * r + st->p[k];
    }
    if (!(acc > 0)) return -INFINITY;
    return lambda * shift + log(acc) + 4.0 * (double)st->n * 1.1102230246251565e-16;
}

static size_t next_fast_len(size_t n) {
    if (n < 16) n = 16;
    for (size_t m = n + (n & 1);; m += 2) {
        size_t r = m;
        while (r % 2 == 0) r /= 2;
        while (r % 3 == 0) r /= 3;
        while (r % 5 == 0) r /= 5;
        while (r % 7 == 0) r /= 7;
        if (r == 1) return m;
    }
}

static int64_t mod_i64(int64_t a, int64_t n) {
    int64_t r = a % n;
    return r < 0 ? r + n : r;
}

/* The composed distribution of one direction on the window [w_lo, w_lo + n) (in atoms of width h). */
typedef struct {
    int64_t w_lo;
    size_t n;
    double *p;    /* (n) allocated with fftw_malloc */
    double extra; /* infinite-loss mass + wrap-around bound */
} composed;

/* The per-step tail budget of event e: half of the budget, spread over every step of every event. */
static double step_tau(const dp_history *hist, const dp_event *ev, double tau) {
    size_t n_active = 0;
    for (size_t e = 0; e < hist->n; e++) n_active += hist->events[e].steps > 0;
    return 0.5 * tau / ((double)n_active * (double)ev->steps);
}

/* The largest single-step grid (points at interval h) over the events, in one direction (-1: both). */
static double max_step_points(const dp_history *hist, int dir, double h, double tau, double *max_width) {
    double pts = 0, w = 0;
    for (size_t e = 0; e < hist->n; e++) {
        const dp_event *ev = &hist->events[e];
        if (ev->steps == 0) continue;
        double q = ev->type == DP_EVENT_GAUSSIAN ? 1.0 : ev->sample_rate;
        for (int d = 0; d < 2; d++) {
            if (dir >= 0 && d != dir) continue;
            double lmin, lmax;
            step_range(d, q, ev->noise_multiplier, step_tau(hist, ev, tau), &lmin, &lmax);
            double p = step_points(lmin, lmax, h);
            if (!(p <= pts)) pts = p; /* NaN or larger */
            if (!(lmax - lmin <= w)) w = lmax - lmin;
        }
    }
    if (max_width) *max_width = w;
    return pts;
}

/* Every event's one-step distribution in direction dir at interval h (st has one slot per event with
 * steps > 0); *log_keep = log of the probability that no step lands at infinite loss. */
static size_t build_steps(const dp_history *hist, int dir, double h, double tau, step_pmf *st, double *log_keep) {
    size_t ns = 0;
    *log_keep = 0;
    for (size_t e = 0; e < hist->n; e++) {
        const dp_event *ev = &hist->events[e];
        if (ev->steps == 0) continue;
        double q = ev->type == DP_EVENT_GAUSSIAN ? 1.0 : ev->sample_rate;
        build_step(dir, q, ev->noise_multiplier, h, step_tau(hist, ev, tau), &st[ns]);
        st[ns].steps = ev->steps;
        *log_keep += (double)ev->steps * log1p(-st[ns].p_inf);
        ns++;
    }
    return ns;
}

/* Chernoff: P(S >= s) <= exp(K(λ) − λ s), P(S <= s) <= exp(K(−λ) + λ s); each side gets a quarter of the
 * budget. The λ grid spans the useful range for loss spreads from 1e-4 to 1e4. */
static void chernoff_window(const step_pmf *st, size_t ns, double h, double tau, double *s_lo_out, double *s_hi_out) {
    double lt = log(0.25 * tau), s_hi = INFINITY, s_lo = -INFINITY;
    for (double lam = 1e-4; lam <= 1e5; lam *= 1.4) {
        double kp = 0, km = 0;
        for (size_t i = 0; i < ns; i++) {
            kp += (double)st[i].steps * log_mgf(&st[i], h, lam);
            km += (double)st[i].steps * log_mgf(&st[i], h, -lam);
        }
        double hi = (kp - lt) / lam, lo = (lt - km) / lam;
        if (hi < s_hi) s_hi = hi;
        if (lo > s_lo) s_lo = lo;
    }
    *s_lo_out = s_lo;
    *s_hi_out = s_hi;
}

/* Returns 0 on success, 1 if the window needs more than max_grid points at this h. */
static int compose_direction(const dp_history *hist, int dir, double h, const dp_pld_params *prm, composed *out) {
    size_t n_active = 0;
    for (size_t e = 0; e < hist->n; e++) n_active += hist->events[e].steps > 0;
    double tau = prm->tail_mass_truncation;
    /* One step's grid alone must fit: checked before anything is allocated (a tiny interval would
     * otherwise ask for trillions of points here). */
    if (!(max_step_points(hist, dir, h, tau, NULL) <= (double)prm->max_grid)) return 1;
    step_pmf *st = dp_calloc(n_active ? n_active : 1, sizeof *st);
    double log_keep;
    size_t ns = build_steps(hist, dir, h, tau, st, &log_keep);
    double s_lo, s_hi;
    chernoff_window(st, ns, h, tau, &s_lo, &s_hi);
    int rc = 0;
    double span = (s_hi - s_lo) / h + 3;
    if (!(span < (double)prm->max_grid) || !isfinite(s_lo / h) || fabs(s_hi / h) > 1e15) {
        rc = 1;
        goto done;
    }
    int64_t w_lo = (int64_t)floor(s_lo / h) - 1;
    size_t N = next_fast_len((size_t)ceil(span));
    if (N > prm->max_grid) {
        rc = 1;
        goto done;
    }
    size_t nc = N / 2 + 1;
    double *buf = fftw_malloc(sizeof(double) * 2 * nc);
    fftw_complex *acc = fftw_malloc(sizeof(fftw_complex) * nc);
    fftw_complex *cbuf = (fftw_complex *)buf;
    fftw_plan fwd = fftw_plan_dft_r2c_1d((int)N, buf, cbuf, FFTW_ESTIMATE);
    fftw_plan bwd = fftw_plan_dft_c2r_1d((int)N, acc, buf, FFTW_ESTIMATE);
    for (size_t k = 0; k < nc; k++) acc[k][0] = 1.0, acc[k][1] = 0.0;
    int64_t C = 0; /* Σ steps·center, reduced mod N (the composed index offset) */
    for (size_t i = 0; i < ns; i++) {
        memset(buf, 0, sizeof(double) * 2 * nc);
        for (size_t k = 0; k < st[i].n; k++)
            buf[mod_i64(st[i].j0 + (int64_t)k - st[i].center, (int64_t)N)] += st[i].p[k];
        fftw_execute(fwd);
        double T = (double)st[i].steps;
        for (size_t k = 0; k < nc; k++) {
            double re = cbuf[k][0], im = cbuf[k][1], r2 = re * re + im * im, wr = 0, wi = 0;
            double lr = 0.5 * log(r2) * T;
            if (r2 > 0 && lr > -745) {
                double mag = exp(lr), th = atan2(im, re) * T;
                wr = mag * cos(th), wi = mag * sin(th);
            }
            double ar = acc[k][0], ai = acc[k][1];
            acc[k][0] = ar * wr - ai * wi;
            acc[k][1] = ar * wi + ai * wr;
        }
        C = mod_i64(C + mod_i64(st[i].steps % (int64_t)N * mod_i64(st[i].center, (int64_t)N), (int64_t)N),
                    (int64_t)N);
    }
    fftw_execute(bwd);
    fftw_destroy_plan(fwd);
    fftw_destroy_plan(bwd);
    /* The c2r transform has consumed acc; its N + 2 doubles now hold the window, so the peak memory stays
     * at two arrays of the FFT length. */
    double *p = (double *)acc;
    for (size_t k = 0; k < N; k++) {
        double v = buf[mod_i64(w_lo + (int64_t)k - C, (int64_t)N)] / (double)N;
        p[k] = v > 0 ? v : 0.0; /* FFT rounding leaves ~1e-17 noise of either sign; dropping the negative part
                                   can only raise δ */
    }
    fftw_free(buf);
    out->w_lo = w_lo;
    out->n = N;
    out->p = p;
    out->extra = -expm1(log_keep) + 0.5 * tau;
done:
    for (size_t i = 0; i < ns; i++) free(st[i].p);
    free(st);
    return rc;
}

static double composed_delta(const composed *c, double h, double eps) {
    double d = 0;
    for (size_t k = c->n; k-- > 0;) {
        double l = (double)(c->w_lo + (int64_t)k) * h;
        if (l <= eps) break;
        d += c->p[k] * -expm1(eps - l);
    }
    d += c->extra;
    return d < 1 ? d : 1.0;
}

static double composed_epsilon(const composed *c, double h, double delta) {
    if (c->extra >= delta) return INFINITY;
    double A = 0, B = 0, decay = exp(-h);
    /* Scanning down: with A = Σ_{s>=k} p_s and B = Σ_{s>=k} p_s e^{(k−s)h}, δ(ε) = extra + A − e^{ε−kh} B on
     * [(k−1)h, kh]. */
    for (size_t k = c->n; k-- > 0;) {
        A += c->p[k];
        B = B * decay + c->p[k];
        double lk = (double)(c->w_lo + (int64_t)k) * h;
        if (B > 0 && c->extra + A - decay * B >= delta) return lk + log((c->extra + A - delta) / B);
    }
    /* Below the window δ(ε) keeps the same form, so solve it there (ε may come out negative). */
    double lk = (double)c->w_lo * h;
    if (B <= 0 || c->extra + A - delta <= 0) return -INFINITY;
    return lk + log((c->extra + A - delta) / B);
}

static int pld_run(const dp_history *hist, const dp_pld_params *prm_in, int want_eps, double target,
                   dp_pld_result *out, dp_error *err) {
    dp_pld_params prm;
    if (prm_in) prm = *prm_in;
    else dp_pld_default_params(&prm);
    if (!(prm.value_discretization_interval > 0) || !isfinite(prm.value_discretization_interval))
        return dp_fail(err, "PLD: discretisation interval must be a finite number > 0, got %g",
                       prm.value_discretization_interval);
    if (!(prm.tail_mass_truncation > 0 && prm.tail_mass_truncation < 1e-3))
        return dp_fail(err, "PLD: tail mass truncation must lie in (0, 1e-3), got %g", prm.tail_mass_truncation);
    if (prm.max_grid < 64) return dp_fail(err, "PLD: max grid must be >= 64");
    if (prm.max_grid > ((size_t)1 << 30)) prm.max_grid = (size_t)1 << 30;
    for (size_t e = 0; e < hist->n; e++)
        if (dp_event_check(&hist->events[e], err)) return -1;
    memset(out, 0, sizeof *out);
    if (want_eps) out->delta = target;
    else out->epsilon = target;
    double h = prm.value_discretization_interval;
    out->interval_used = h;
    if (dp_history_total_steps(hist) == 0) return 0; /* nothing released: ε = 0, δ = 0 */
    composed c[2];
    int tries = 0;
    /* Skip the intervals that clearly cannot fit (estimated grid more than 1.25 times the limit): each
     * failed try builds every step's distribution, which at a tiny interval takes long. */
    dp_pld_estimate_result est;
    if (dp_pld_estimate(hist, &prm, &est, NULL) == 0) {
        while (tries < PLD_MAX_COARSENINGS &&
               (est.points > 1.25 * (double)prm.max_grid || est.step_points > (double)prm.max_grid)) {
            tries++, h *= 2;
            est.points /= 2, est.step_points /= 2;
        }
        if (est.points > 1.25 * (double)prm.max_grid || est.step_points > (double)prm.max_grid)
            return dp_fail(err, "PLD: the composed loss distribution is too wide even at interval %g (about %.3g grid "
                                "points, the limit is %zu); use the RDP accountant for this history", h,
                           fmax(est.points, est.step_points), prm.max_grid);
    }
    for (; tries <= PLD_MAX_COARSENINGS; tries++, h *= 2) {
        if (compose_direction(hist, 0, h, &prm, &c[0])) continue;
        if (compose_direction(hist, 1, h, &prm, &c[1])) {
            fftw_free(c[0].p);
            continue;
        }
        break;
    }
    if (tries > PLD_MAX_COARSENINGS)
        return dp_fail(err, "PLD: the composed loss distribution is too wide even at interval %g; use the RDP "
                            "accountant for this history", h / 2);
    out->interval_used = h;
    double best = -INFINITY;
    for (int d = 0; d < 2; d++) {
        double v = want_eps ? composed_epsilon(&c[d], h, target) : composed_delta(&c[d], h, target);
        if (v > best) best = v, out->worst_direction = d;
        if (c[d].extra > out->truncated_mass) out->truncated_mass = c[d].extra;
        if (c[d].n > out->grid_size) out->grid_size = c[d].n;
        fftw_free(c[d].p);
    }
    if (want_eps) out->epsilon = best > 0 ? best : 0.0;
    else out->delta = best;
    return 0;
}

/* Points of the composed window measured on a grid coarse enough to be cheap (at most ~4096 points per
 * step) and scaled to h: the window is a range of losses that hardly depends on the interval. */
#define PLD_ESTIMATE_STEP_POINTS 4096.0

int dp_pld_estimate(const dp_history *hist, const dp_pld_params *prm_in, dp_pld_estimate_result *out, dp_error *err) {
    dp_pld_params prm;
    if (prm_in) prm = *prm_in;
    else dp_pld_default_params(&prm);
    memset(out, 0, sizeof *out);
    double h = prm.value_discretization_interval, tau = prm.tail_mass_truncation;
    if (!(h > 0) || !isfinite(h))
        return dp_fail(err, "PLD: discretisation interval must be a finite number > 0, got %g", h);
    if (!(tau > 0 && tau < 1e-3))
        return dp_fail(err, "PLD: tail mass truncation must lie in (0, 1e-3), got %g", tau);
    for (size_t e = 0; e < hist->n; e++)
        if (dp_event_check(&hist->events[e], err)) return -1;
    out->min_interval = h;
    if (dp_history_total_steps(hist) == 0) return 0;
    size_t n_active = 0;
    for (size_t e = 0; e < hist->n; e++) n_active += hist->events[e].steps > 0;
    double width;
    out->step_points = max_step_points(hist, -1, h, tau, &width);
    double atoms = 0; /* every event's step distribution at h, held during the composition */
    for (size_t e = 0; e < hist->n; e++) {
        const dp_event *ev = &hist->events[e];
        if (ev->steps == 0) continue;
        double q = ev->type == DP_EVENT_GAUSSIAN ? 1.0 : ev->sample_rate, lmin, lmax;
        step_range(0, q, ev->noise_multiplier, step_tau(hist, ev, tau), &lmin, &lmax);
        atoms += step_points(lmin, lmax, h);
    }
    double hc = fmax(h, width / PLD_ESTIMATE_STEP_POINTS), span = 0;
    step_pmf *st = dp_calloc(n_active, sizeof *st);
    for (int dir = 0; dir < 2; dir++) {
        double log_keep, s_lo, s_hi;
        size_t ns = build_steps(hist, dir, hc, tau, st, &log_keep);
        chernoff_window(st, ns, hc, tau, &s_lo, &s_hi);
        for (size_t i = 0; i < ns; i++) free(st[i].p);
        if (!(s_hi - s_lo <= span)) span = s_hi - s_lo;
    }
    free(st);
    out->points = span / h + 3;
    if (out->points < out->step_points) out->points = out->step_points;
    /* peak: the first direction's composed window kept while the second one is computed (two arrays of
     * the FFT length), and the step distributions */
    out->bytes = 8.0 * (3.0 * (out->points + 2) + atoms);
    double need = fmax(out->points, out->step_points) / (double)prm.max_grid;
    out->min_interval = need > 1 ? h * need * 1.02 : h;
    return 0;
}

int dp_pld_epsilon(const dp_history *h, double delta, const dp_pld_params *p, dp_pld_result *out, dp_error *err) {
    if (!(delta > 0 && delta < 1)) return dp_fail(err, "delta must lie in (0, 1), got %g", delta);
    return pld_run(h, p, 1, delta, out, err);
}

int dp_pld_delta(const dp_history *h, double epsilon, const dp_pld_params *p, dp_pld_result *out, dp_error *err) {
    if (!(epsilon >= 0) || !isfinite(epsilon)) return dp_fail(err, "epsilon must be a finite number >= 0, got %g", epsilon);
    return pld_run(h, p, 0, epsilon, out, err);
}
