#include "nk_reference.h"
#include "nk_common.h"
#include "nk_internal.h"

#include <stdlib.h>
#include <string.h>

struct nk_reference {
    int32_t n_channels, n_groups, mode;
    int32_t *members;      /* channel indices grouped: members[start[g] .. start[g+1]) */
    int32_t *start;        /* n_groups + 1 */
    float *scratch;        /* n_channels */
    float *inside;         /* n_channels: values inside a bracket */
    float *prev_median;    /* n_groups: last row's median, the next row's bracket centre */
    float *delta;          /* n_groups: bracket half-width (0 = not yet known) */
    float *prev_mean;      /* n_groups: last row's mean (tracks common-mode jumps) */
};

int nk_reference_new(int32_t n_channels, const int32_t *group_of_channel, int32_t mode,
                     nk_reference **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (n_channels < 1 || !group_of_channel) return NK_ERR_ARG;
    if (mode != NK_REF_MEDIAN && mode != NK_REF_AVERAGE) return NK_ERR_ARG;
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
    r->members = calloc((size_t)n_channels, sizeof(int32_t));
    r->start = calloc((size_t)n_groups + 1, sizeof(int32_t));
    r->scratch = calloc((size_t)n_channels, sizeof(float));
    r->inside = calloc((size_t)n_channels, sizeof(float));
    r->prev_median = calloc((size_t)n_groups + 1, sizeof(float));
    r->delta = calloc((size_t)n_groups + 1, sizeof(float));
    r->prev_mean = calloc((size_t)n_groups + 1, sizeof(float));
    if (!r->members || !r->start || !r->scratch || !r->inside || !r->prev_median || !r->delta ||
        !r->prev_mean) {
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
    *out = r;
    return NK_OK;
}

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

/* Exact median of group g in this row. The last median, moved by the change of the row mean
 * (a common-mode step moves every channel alike), ± δ usually brackets this one: δ adapts so
 * that 1/64 … 1/16 of the values fall inside. A miss
 * retries with 4δ, then falls back to the sample bracket. The state only changes the speed,
 * never the result. */
NK_HOT static float group_median(nk_reference *r, int32_t g, const float *row) {
    const int32_t *m = r->members + r->start[g];
    const int32_t n = r->start[g + 1] - r->start[g];
    const float *v = row + m[0];
    if (m[n - 1] - m[0] != n - 1) { /* non-contiguous group: gather once */
        for (int32_t i = 0; i < n; i++) r->scratch[i] = row[m[i]];
        v = r->scratch;
    }
    float med, lanes[8] = {0}, sum = 0.0f;
    int32_t k, i8 = 0;
    for (; i8 + 8 <= n; i8 += 8) /* eight running sums: vectorises, fixed order */
        for (int32_t j = 0; j < 8; j++) lanes[j] += v[i8 + j];
    for (; i8 < n; i8++) lanes[0] += v[i8];
    for (int32_t j = 0; j < 8; j++) sum += lanes[j];
    const float mean = sum / (float)n;
    const float c = r->prev_median[g] + (mean - r->prev_mean[g]), d = r->delta[g];
    r->prev_mean[g] = mean;
    if (d > 0.0f && median_in_bracket(v, n, c - d, c + d, r->inside, &med, &k)) {
        if (k > n / 16) r->delta[g] = d * 0.75f;
        else if (k < n / 64) r->delta[g] = d * 1.25f;
    } else if (d > 0.0f && median_in_bracket(v, n, c - 4.0f * d, c + 4.0f * d, r->inside, &med,
                                             &k)) {
        r->delta[g] = d * 2.0f;
    } else {
        med = median_sampled(v, n, r->scratch, r->inside);
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

NK_HOT int nk_reference_process(nk_reference *r, float *data, int32_t n_samples) {
    if (!r || !data || n_samples < 0) return NK_ERR_ARG;
    const int32_t C = r->n_channels;
    for (int32_t t = 0; t < n_samples; t++) {
        float *row = data + (size_t)t * (size_t)C;
        for (int32_t g = 0; g < r->n_groups; g++) {
            const int32_t *m = r->members + r->start[g];
            const int32_t n = r->start[g + 1] - r->start[g];
            if (n == 0) continue;
            float ref;
            if (r->mode == NK_REF_AVERAGE) {
                float sum = 0.0f;
                for (int32_t i = 0; i < n; i++) sum += row[m[i]];
                ref = sum / (float)n;
            } else {
                ref = group_median(r, g, row);
            }
            if (m[n - 1] - m[0] == n - 1) { /* contiguous: vectorises */
                float *restrict grp = row + m[0];
                for (int32_t i = 0; i < n; i++) grp[i] -= ref;
            } else {
                for (int32_t i = 0; i < n; i++) row[m[i]] -= ref;
            }
        }
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
    free(r);
}
