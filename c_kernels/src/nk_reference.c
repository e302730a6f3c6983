#include "nk_reference.h"
#include "nk_common.h"

#include <stdlib.h>
#include <string.h>

struct nk_reference {
    int32_t n_channels, n_groups, mode;
    int32_t *members;      /* channel indices grouped: members[start[g] .. start[g+1]) */
    int32_t *start;        /* n_groups + 1 */
    float *scratch;        /* n_channels */
    float *inside;         /* n_channels: values inside the bracket */
    float *ref;            /* n_groups */
};

nk_reference *nk_reference_new(int32_t n_channels, const int32_t *group_of_channel, int32_t mode) {
    if (n_channels < 1 || !group_of_channel) return NULL;
    if (mode != NK_REF_MEDIAN && mode != NK_REF_AVERAGE) return NULL;
    int32_t n_groups = 0;
    for (int32_t c = 0; c < n_channels; c++) {
        int32_t g = group_of_channel[c];
        if (g < -1 || g >= n_channels) return NULL;
        if (g + 1 > n_groups) n_groups = g + 1;
    }
    nk_reference *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_channels = n_channels;
    r->n_groups = n_groups;
    r->mode = mode;
    r->members = calloc((size_t)n_channels, sizeof(int32_t));
    r->start = calloc((size_t)n_groups + 1, sizeof(int32_t));
    r->scratch = calloc((size_t)n_channels, sizeof(float));
    r->inside = calloc((size_t)n_channels, sizeof(float));
    r->ref = calloc((size_t)n_groups + 1, sizeof(float));
    if (!r->members || !r->start || !r->scratch || !r->inside || !r->ref) { nk_reference_free(r); return NULL; }
    int32_t k = 0;
    for (int32_t g = 0; g < n_groups; g++) {
        r->start[g] = k;
        for (int32_t c = 0; c < n_channels; c++)
            if (group_of_channel[c] == g) r->members[k++] = c;
    }
    r->start[n_groups] = k;
    return r;
}

static inline void swapf(float *a, float *b) { float t = *a; *a = *b; *b = t; }

/* k-th smallest (0-based) of v[0..n), partially reordering v. */
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

/* Median of v[0..n) (n ≥ 1), as numpy: mean of the two middle values when n is even. */
static float median_of(float *v, int32_t n) {
    int32_t h = n / 2;
    float upper = select_kth(v, n, h);
    if (n % 2) return upper;
    /* after selection, v[0..h) ≤ upper: the lower middle is their maximum */
    float lower = v[0];
    for (int32_t i = 1; i < h; i++)
        if (v[i] > lower) lower = v[i];
    return (lower + upper) * 0.5f;
}

#define BRACKET_SAMPLES 128
#define BRACKET_HALF 12 /* sample ranks 64 ± 12 (±2.1 σ of the median's rank): ~19 % of the
                           values fall inside, and the median outside ~4 % of the time */

/* Median of the n values row[m[i]] (Floyd–Rivest idea): from a fixed stride sample of 128 take
 * sample ranks 64 ± 12 as a bracket [lo, hi], then in one branchless pass count the values
 * below lo and copy those inside the bracket; the median is selected among those few. If the
 * bracket missed, fall back to quickselect over all n. Exact either way. */
static float median_bracketed(const float *row, const int32_t *m, int32_t n, float *scratch,
                              float *inside) {
    /* Contiguous groups (the usual case) are read in place; others are gathered once. */
    const float *v = row + m[0];
    if (m[n - 1] - m[0] != n - 1) {
        for (int32_t i = 0; i < n; i++) scratch[i] = row[m[i]];
        v = scratch;
    }
    if (n < 4 * BRACKET_SAMPLES) {
        if (v != scratch) memcpy(scratch, v, (size_t)n * sizeof(float));
        return median_of(scratch, n);
    }
    float smp[BRACKET_SAMPLES];
    for (int32_t i = 0; i < BRACKET_SAMPLES; i++)
        smp[i] = v[(int32_t)(((int64_t)i * n) / BRACKET_SAMPLES)];
    const float hi = select_kth(smp, BRACKET_SAMPLES, BRACKET_SAMPLES / 2 + BRACKET_HALF);
    const float lo = select_kth(smp, BRACKET_SAMPLES / 2 + BRACKET_HALF,
                                BRACKET_SAMPLES / 2 - BRACKET_HALF);
    int32_t below = 0, k = 0;
    for (int32_t i = 0; i < n; i++) below += v[i] < lo; /* vectorises */
    for (int32_t i = 0; i < n; i++) {
        const float x = v[i];
        inside[k] = x;
        k += (int32_t)((unsigned)(x >= lo) & (unsigned)(x <= hi));
    }
    const int32_t h = n / 2;             /* rank of the upper middle */
    const int32_t need_lo = (n % 2) ? h : h - 1;
    if (need_lo >= below && h < below + k) {
        float upper = select_kth(inside, k, h - below);
        if (n % 2) return upper;
        float lower = inside[0];       /* max of inside[0 .. h - below), non-empty here */
        for (int32_t i = 1; i < h - below; i++)
            if (inside[i] > lower) lower = inside[i];
        return (lower + upper) * 0.5f;
    }
    if (v != scratch) memcpy(scratch, v, (size_t)n * sizeof(float));
    return median_of(scratch, n);
}

int nk_reference_process(nk_reference *r, float *data, int32_t n_samples) {
    if (!r || !data || n_samples < 0) return NK_ERR_ARG;
    const int32_t C = r->n_channels;
    for (int32_t t = 0; t < n_samples; t++) {
        float *row = data + (size_t)t * (size_t)C;
        for (int32_t g = 0; g < r->n_groups; g++) {
            const int32_t *m = r->members + r->start[g];
            int32_t n = r->start[g + 1] - r->start[g];
            if (n == 0) continue;
            float ref;
            if (r->mode == NK_REF_AVERAGE) {
                float sum = 0.0f;
                for (int32_t i = 0; i < n; i++) sum += row[m[i]];
                ref = sum / (float)n;
            } else {
                ref = median_bracketed(row, m, n, r->scratch, r->inside);
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
    free(r->ref);
    free(r);
}
