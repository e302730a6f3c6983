#include "nk_reference.h"
#include "nk_common.h"
#include "nk_internal.h"

#include <stdlib.h>
#include <string.h>

/* Robust mode (see nk_reference.h). */
#define ROBUST_QUIET 4.4478f   /* quiet: |x| < 3σ = 3 / 0.6745 × the median of |x| */
#define ROBUST_ETA_FAST 0.1f   /* first step of the running medians (as nk_detect's) */
#define ROBUST_TAU 60000.0f    /* default time constant, samples (2 s at 30 kHz) */
#define ROBUST_STRIDE 32       /* rows between updates of σ and of the common-mode share */
#define ROBUST_WARMUP 64       /* updates before the share may leave 0 (2048 rows) */

struct nk_reference {
    int32_t n_channels, n_groups, mode;
    int32_t *members;      /* channel indices grouped: members[start[g] .. start[g+1]) */
    int32_t *start;        /* n_groups + 1 */
    int32_t *lo;           /* n_groups: first channel of a contiguous group, else −1 */
    float *scratch;        /* n_channels */
    float *inside;         /* n_channels: values inside a bracket */
    float *prev_median;    /* n_groups: last row's median, the next row's bracket centre */
    float *delta;          /* n_groups: bracket half-width (0 = not yet known) */
    float *prev_mean;      /* n_groups: last row's mean (tracks common-mode jumps) */
    /* NK_REF_ROBUST */
    int32_t *halves;       /* n_channels: per group (from start[g]) its half-0 channels, then
                              its half-1 channels */
    int32_t *half;         /* n_groups: channels in half 0 */
    float *mad;            /* n_groups: running median of |x| over the group's channels */
    float *sr, *sd;        /* n_groups: running medians of |(m0 + m1)/2| and |m0 − m1| */
    float *share;          /* n_groups: β, the common-mode share subtracted */
    int64_t rows;          /* rows processed */
    int64_t updates;       /* stride rows processed (the running medians' step schedule) */
    float eta_slow;        /* final step of the running medians per row (1 / time constant) */
};

static void robust_reset(nk_reference *r);

int nk_reference_new(int32_t n_channels, const int32_t *group_of_channel, int32_t mode,
                     nk_reference **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (n_channels < 1 || !group_of_channel) return NK_ERR_ARG;
    if (mode != NK_REF_MEDIAN && mode != NK_REF_AVERAGE && mode != NK_REF_ROBUST)
        return NK_ERR_ARG;
    int32_t n_groups = 0;
    for (int32_t c = 0; c < n_channels; c++) {
        int32_t g = group_of_channel[c];
        if (g < -1 || g >= n_channels) return NK_ERR_ARG;
        if (g + 1 > n_groups) n_groups = g + 1;
    }
    nk_reference *r = calloc(1, sizeof *r);
    if (!r) return NK_ERR_NOMEM;
    r->n_channels = n_channels;
    r->n_groups = n_groups;
    r->mode = mode;
    const size_t C = (size_t)n_channels, G = (size_t)n_groups + 1;
    r->members = calloc(C, sizeof(int32_t));
    r->start = calloc(G, sizeof(int32_t));
    r->lo = calloc(G, sizeof(int32_t));
    r->scratch = calloc(C, sizeof(float));
    r->inside = calloc(C, sizeof(float));
    r->prev_median = calloc(G, sizeof(float));
    r->delta = calloc(G, sizeof(float));
    r->prev_mean = calloc(G, sizeof(float));
    r->halves = calloc(C, sizeof(int32_t));
    r->half = calloc(G, sizeof(int32_t));
    r->mad = calloc(G, sizeof(float));
    r->sr = calloc(G, sizeof(float));
    r->sd = calloc(G, sizeof(float));
    r->share = calloc(G, sizeof(float));
    if (!r->members || !r->start || !r->lo || !r->scratch || !r->inside || !r->prev_median
        || !r->delta || !r->prev_mean || !r->halves || !r->half || !r->mad || !r->sr || !r->sd
        || !r->share) {
        nk_reference_free(r);
        return NK_ERR_NOMEM;
    }
    int32_t k = 0;
    for (int32_t g = 0; g < n_groups; g++) {
        r->start[g] = k;
        for (int32_t c = 0; c < n_channels; c++)
            if (group_of_channel[c] == g) r->members[k++] = c;
    }
    r->start[n_groups] = k;
    for (int32_t g = 0; g < n_groups; g++) {
        const int32_t n = r->start[g + 1] - r->start[g];
        const int32_t *m = r->members + r->start[g];
        /* members are distinct and ascending: contiguous iff last − first = n − 1 */
        r->lo[g] = (n > 0 && m[n - 1] - m[0] == n - 1) ? m[0] : -1;
        r->half[g] = n / 2;   /* default halves: the first and second half in channel order */
    }
    memcpy(r->halves, r->members, C * sizeof(int32_t));
    r->eta_slow = 1.0f / ROBUST_TAU;
    robust_reset(r);
    *out = r;
    return NK_OK;
}

int nk_reference_set_robust(nk_reference *r, const int32_t *half_of_channel, float tau_samples) {
    if (!r || r->mode != NK_REF_ROBUST) return NK_ERR_ARG;
    if (!(tau_samples >= 1.0f && tau_samples < 1.0e12f)) return NK_ERR_ARG;
    if (half_of_channel) {
        for (int32_t c = 0; c < r->n_channels; c++)
            if (half_of_channel[c] != 0 && half_of_channel[c] != 1) return NK_ERR_ARG;
        for (int32_t g = 0; g < r->n_groups; g++) {
            const int32_t *m = r->members + r->start[g];
            int32_t *hv = r->halves + r->start[g];
            const int32_t n = r->start[g + 1] - r->start[g];
            int32_t k = 0;
            for (int32_t h = 0; h <= 1; h++) {
                for (int32_t i = 0; i < n; i++)
                    if (half_of_channel[m[i]] == h) hv[k++] = m[i];
                if (h == 0) r->half[g] = k;
            }
        }
    }
    r->eta_slow = 1.0f / tau_samples;
    robust_reset(r);
    return NK_OK;
}

int nk_reference_get_share(const nk_reference *r, float *share_out) {
    if (!r || !share_out) return NK_ERR_ARG;
    for (int32_t g = 0; g < r->n_groups; g++)
        share_out[g] = r->mode == NK_REF_ROBUST ? r->share[g] : 1.0f;
    return NK_OK;
}

int32_t nk_reference_groups(const nk_reference *r) { return r ? r->n_groups : 0; }

static inline void swapf(float *a, float *b) {
    float t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest (0-based) of v[0..n), partially reordering v so that v[0..k) ≤ v[k]. */
static float select_kth(float *v, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (hi > lo) {
        if (hi - lo < 16) { /* insertion sort of the small remainder */
            for (int32_t i = lo + 1; i <= hi; i++) {
                float x = v[i];
                int32_t j = i - 1;
                while (j >= lo && v[j] > x) { v[j + 1] = v[j]; j--; }
                v[j + 1] = x;
            }
            return v[k];
        }
        int32_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) swapf(&v[mid], &v[lo]);
        if (v[hi] < v[lo]) swapf(&v[hi], &v[lo]);
        if (v[hi] < v[mid]) swapf(&v[hi], &v[mid]);
        float pivot = v[mid];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (i <= hi && v[i] < pivot) i++; /* bounds: safe even with NaN */
            while (j >= lo && v[j] > pivot) j--;
            if (i <= j) { swapf(&v[i], &v[j]); i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

#define BRACKET_SAMPLES 128
#define BRACKET_HALF 12 /* sample ranks 64 ± 12 (±2.1 σ of the median's rank) */

/* The median of the n_total values of a group, given that `below` of them are smaller than
 * every value in inside[0..k) and the middle rank(s) lie within inside. */
static float median_from_inside(float *inside, int32_t k, int32_t below, int32_t n_total) {
    const int32_t h = n_total / 2;
    float upper = select_kth(inside, k, h - below);
    if (n_total % 2) return upper;
    float lower = inside[0]; /* max of inside[0 .. h - below), non-empty when called */
    for (int32_t u = 1; u < h - below; u++)
        if (inside[u] > lower) lower = inside[u];
    return (lower + upper) * 0.5f;
}

/* Do both middle ranks of n values lie in [below, upto)? */
static inline int middle_inside(int32_t n, int32_t below, int32_t upto) {
    const int32_t h = n / 2, need_lo = (n % 2) ? h : h - 1;
    return need_lo >= below && h < upto;
}

/* Exact median of v[0..n) by a value bracket [p1, p2]: one counting pass (vectorised), then a
 * copy of the few values inside. Returns 0 when the middle ranks are not inside. */
NK_HOT static int median_in_bracket(const float *v, int32_t n, float p1, float p2, float *inside,
                             float *med, int32_t *n_inside) {
    int32_t below = 0, upto = 0;
    for (int32_t i = 0; i < n; i++) {
        below += v[i] < p1;
        upto += v[i] <= p2;
    }
    *n_inside = upto - below;
    if (!middle_inside(n, below, upto)) return 0;
    /* Branch-free copy: a compare-and-branch here would be mispredicted about every other
     * value (GCC branches on each float compare), costing more than the stores. */
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        const float x = v[i];
        inside[k] = x;
        k += (int32_t)(x >= p1) & (int32_t)(x <= p2);
    }
    *med = median_from_inside(inside, k, below, n);
    return 1;
}

/* Exact median of v[0..n) without a guess (Floyd–Rivest idea): the sample ranks 64 ± 12 of a
 * fixed-stride sample of 128 bracket the median; quickselect over all n if they miss. */
static float median_sampled(const float *v, int32_t n, float *scratch, float *inside) {
    if (n >= 4 * BRACKET_SAMPLES) {
        float smp[BRACKET_SAMPLES], med;
        int32_t k;
        for (int32_t i = 0; i < BRACKET_SAMPLES; i++)
            smp[i] = v[(int32_t)(((int64_t)i * n) / BRACKET_SAMPLES)];
        const float hi = select_kth(smp, BRACKET_SAMPLES, BRACKET_SAMPLES / 2 + BRACKET_HALF);
        const float lo = select_kth(smp, BRACKET_SAMPLES / 2 + BRACKET_HALF,
                                    BRACKET_SAMPLES / 2 - BRACKET_HALF);
        if (median_in_bracket(v, n, lo, hi, inside, &med, &k)) return med;
    }
    if (v != scratch) memcpy(scratch, v, (size_t)n * sizeof(float));
    return median_from_inside(scratch, n, 0, n);
}

/* Do both middle ranks of the nq values from rank nb on lie in [below, upto)? */
static inline int ranks_inside(int32_t nb, int32_t nq, int32_t below, int32_t upto) {
    const int32_t h = nq / 2, need_lo = nb + ((nq % 2) ? h : h - 1);
    return need_lo >= below && nb + h < upto;
}

/* Median of the quiet values of v[0..n) (|x| < lim; all of them when fewer than a quarter are
 * quiet) by a value bracket [p1, p2], as median_in_bracket: the quiet values are those of
 * ranks nb … n − na − 1, so their median is an order statistic of all n, found by one fused
 * counting pass and a copy of the values inside. Returns 0 when its ranks are not inside. */
NK_HOT static int quiet_median_in_bracket(const float *v, int32_t n, float lim, float p1,
                                          float p2, float *inside, float *med,
                                          int32_t *n_inside) {
    int32_t nb = 0, na = 0, below = 0, upto = 0;
    for (int32_t i = 0; i < n; i++) {
        const float x = v[i];
        nb += x <= -lim;
        na += x >= lim;
        below += x < p1;
        upto += x <= p2;
    }
    int32_t nq = n - nb - na;
    if (4 * nq < n || nq == 0) { nb = 0; nq = n; }
    *n_inside = upto - below;
    if (!ranks_inside(nb, nq, below, upto)) return 0;
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        const float x = v[i];
        inside[k] = x;
        k += (int32_t)(x >= p1) & (int32_t)(x <= p2);
    }
    *med = median_from_inside(inside, k, below - nb, nq);
    return 1;
}

/* Exact median of the quiet values of v[0..n) (see quiet_median_in_bracket) without a guess:
 * they are copied to work (which may be v itself) and selected. */
static float quiet_median_direct(const float *v, int32_t n, float lim, float *work) {
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) k += (int32_t)(v[i] > -lim) & (int32_t)(v[i] < lim);
    if (4 * k < n || k == 0) {
        if (work != v) memcpy(work, v, (size_t)n * sizeof(float));
        k = n;
    } else {
        int32_t j = 0;     /* j ≤ i: safe in place */
        for (int32_t i = 0; i < n; i++) {
            const float x = v[i];
            work[j] = x;
            j += (int32_t)(x > -lim) & (int32_t)(x < lim);
        }
    }
    return median_from_inside(work, k, 0, k);
}

/* Exact median of v[0..n) for group g — of its quiet values (|x| < lim) when lim > 0. The last
 * median, moved by the change of the row mean (a common-mode step moves every channel alike),
 * ± δ usually brackets this one: δ adapts so that 1/64 … 1/16 of the values fall inside. A
 * miss retries with 4δ, then falls back to the sample bracket (to a selection over the quiet
 * values). The state only changes the speed, never the result. */
NK_HOT static float tracked_median(nk_reference *r, int32_t g, const float *v, int32_t n,
                                   float lim) {
    float med, lanes[8] = {0}, sum = 0.0f;
    int32_t k, i8 = 0;
    for (; i8 + 8 <= n; i8 += 8) /* eight running sums: vectorises, fixed order */
        for (int32_t j = 0; j < 8; j++) lanes[j] += v[i8 + j];
    for (; i8 < n; i8++) lanes[0] += v[i8];
    for (int32_t j = 0; j < 8; j++) sum += lanes[j];
    const float mean = sum / (float)n;
    const float c = r->prev_median[g] + (mean - r->prev_mean[g]), d = r->delta[g];
    r->prev_mean[g] = mean;
    int hit = 0;
    if (d > 0.0f) {
        hit = lim > 0.0f ? quiet_median_in_bracket(v, n, lim, c - d, c + d, r->inside, &med, &k)
                         : median_in_bracket(v, n, c - d, c + d, r->inside, &med, &k);
        if (hit && k > n / 16) r->delta[g] = d * 0.75f;
        else if (hit && k < n / 64) r->delta[g] = d * 1.25f;
    }
    if (!hit && d > 0.0f) {
        const float d4 = 4.0f * d;
        hit = lim > 0.0f ? quiet_median_in_bracket(v, n, lim, c - d4, c + d4, r->inside, &med, &k)
                         : median_in_bracket(v, n, c - d4, c + d4, r->inside, &med, &k);
        if (hit) r->delta[g] = d * 2.0f;
    }
    if (!hit) {
        med = lim > 0.0f ? quiet_median_direct(v, n, lim, r->inside)
                         : median_sampled(v, n, r->scratch, r->inside);
        /* (re)seed δ from the spread of a few values around the median */
        float spread = 0.0f;
        for (int32_t u = 0; u < n; u += (n >= 64 ? n / 64 : 1)) {
            float a = v[u] - med;
            spread += a < 0 ? -a : a;
        }
        spread /= (float)(n >= 64 ? 64 : n);
        r->delta[g] = (spread > 0.0f && spread < 1e30f) ? spread * 0.05f : 0.0f;
    }
    r->prev_median[g] = med;
    return med;
}

/* Group g's values in this row: in place when contiguous, else gathered into scratch. */
static const float *group_values(nk_reference *r, int32_t g, const float *row) {
    if (r->lo[g] >= 0) return row + r->lo[g];
    const int32_t *m = r->members + r->start[g];
    const int32_t n = r->start[g + 1] - r->start[g];
    for (int32_t i = 0; i < n; i++) r->scratch[i] = row[m[i]];
    return r->scratch;
}

/* ------------------------------------------------------------------ robust mode */

static void robust_reset(nk_reference *r) {
    for (int32_t g = 0; g < r->n_groups; g++) {
        r->mad[g] = 1.0f;
        r->sr[g] = 1.0f;
        r->sd[g] = 1.0f;
        r->share[g] = 0.0f;
    }
    r->rows = 0;
    r->updates = 0;
}

/* Robbins–Monro step after t updates: η_fast at first, decaying as 2/t, never below slow. */
static float rm_step(int64_t t, float slow) {
    const float eta = ROBUST_ETA_FAST / (1.0f + (float)t * ROBUST_ETA_FAST * 0.5f);
    return eta < slow ? slow : eta;
}

/* Quiet median of the n channels ch[0..n) of row (a selection on a copy in r->inside). */
static float half_median(nk_reference *r, const int32_t *ch, int32_t n, const float *row,
                         float lim) {
    for (int32_t i = 0; i < n; i++) r->inside[i] = row[ch[i]];
    return quiet_median_direct(r->inside, n, lim, r->inside);   /* v stays intact */
}

/* Every ROBUST_STRIDE rows: the group's σ (a running median of |x| pooled over its channels,
 * moved by how many exceed it) and its common-mode share β from the halves' quiet medians. */
static void robust_update(nk_reference *r, int32_t g, const float *row, const float *v,
                          int32_t n) {
    const float e = rm_step(r->updates, r->eta_slow * (float)ROBUST_STRIDE);
    const float m = r->mad[g];
    int32_t over = 0;
    for (int32_t i = 0; i < n; i++) over += (v[i] < 0.0f ? -v[i] : v[i]) > m;
    /* m ← m·(1 + e·(2·over/n − 1)): fixed point where half the values exceed m */
    r->mad[g] = m * (1.0f + e * ((float)(2 * over - n) / (float)n));
    const int32_t h = r->half[g];
    if (h == 0 || h == n) return;
    const float lim = ROBUST_QUIET * m;
    const int32_t *hv = r->halves + r->start[g];
    const float m0 = half_median(r, hv, h, row, lim);
    const float m1 = half_median(r, hv + h, n - h, row, lim);
    const float mean = 0.5f * (m0 + m1), diff = m0 - m1;
    const float am = mean < 0.0f ? -mean : mean, ad = diff < 0.0f ? -diff : diff;
    r->sr[g] *= am > r->sr[g] ? 1.0f + e : 1.0f - e;
    r->sd[g] *= ad > r->sd[g] ? 1.0f + e : 1.0f - e;
    /* β = 1 − var(noise part) / var(reference): the halves' difference holds their noise but
     * no common mode; the noise of their mean is a quarter of it */
    float b = 0.0f;
    if (r->sr[g] > 0.0f && r->updates >= ROBUST_WARMUP)
        b = 1.0f - (r->sd[g] * r->sd[g]) / (4.0f * r->sr[g] * r->sr[g]);
    r->share[g] = b > 0.0f ? (b < 1.0f ? b : 1.0f) : 0.0f;
}

NK_HOT int nk_reference_process(nk_reference *r, float *data, int32_t n_samples) {
    if (!r || !data || n_samples < 0) return NK_ERR_ARG;
    const int32_t C = r->n_channels;
    for (int32_t t = 0; t < n_samples; t++) {
        float *row = data + (size_t)t * (size_t)C;
        const int stride_row = r->mode == NK_REF_ROBUST && r->rows % ROBUST_STRIDE == 0;
        for (int32_t g = 0; g < r->n_groups; g++) {
            const int32_t *m = r->members + r->start[g];
            const int32_t n = r->start[g + 1] - r->start[g];
            if (n == 0) continue;
            float ref;
            if (r->mode == NK_REF_AVERAGE) {
                float sum = 0.0f;
                for (int32_t i = 0; i < n; i++) sum += row[m[i]];
                ref = sum / (float)n;
            } else if (r->mode == NK_REF_ROBUST) {
                if (!stride_row && r->share[g] == 0.0f) continue;   /* nothing to subtract */
                const float *v = group_values(r, g, row);
                if (stride_row) robust_update(r, g, row, v, n);
                if (r->share[g] == 0.0f) continue;
                ref = r->share[g] * tracked_median(r, g, v, n, ROBUST_QUIET * r->mad[g]);
            } else {
                ref = tracked_median(r, g, group_values(r, g, row), n, 0.0f);
            }
            if (r->lo[g] >= 0) { /* contiguous: vectorises */
                float *restrict grp = row + r->lo[g];
                for (int32_t i = 0; i < n; i++) grp[i] -= ref;
            } else {
                for (int32_t i = 0; i < n; i++) row[m[i]] -= ref;
            }
        }
        r->updates += stride_row;
        r->rows++;
    }
    return NK_OK;
}

void nk_reference_free(nk_reference *r) {
    if (!r) return;
    free(r->members);
    free(r->start);
    free(r->scratch);
    free(r->inside);
    free(r->prev_median);
    free(r->delta);
    free(r->prev_mean);
    free(r->lo);
    free(r->halves);
    free(r->half);
    free(r->mad);
    free(r->sr);
    free(r->sd);
    free(r->share);
    free(r);
}
