/* test_sort_split — two similar neurons in one cluster (nk_sort_split.c). Neurons A and B peak
 * on the same channel with the same amplitude and shape; B is SHIFT_B counts smaller on one
 * neighbour and larger on the other, a template difference of ≈ 9.7 noise σ (orthogonal to the
 * template, so no scale absorbs it), within the merge distance, so one cluster takes both. With split on, the cluster's members turn bimodal along the
 * principal axis of their residuals, it splits, and from then on A and B carry two units; with
 * split off they stay one. Prints "<name> <fnv1a-64> ok" lines, compared across native,
 * sanitizer and qemu runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nk_common.h"
#include "nk_sort.h"
#include "nk_sort_testutil.h"
#include "nk_testutil.h"

#define C 8
#define K 3
#define L 32
#define PRE 10
#define NSPIKE 1200
#define NLATE 200       /* the last spikes, scored */
#define SIGMA 10
#define SHIFT_B 44.0f   /* B: 44 counts less on channel 1 and more on channel 3 than A */

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float *const shape = nk_test_shape;
static const float amp[2][C] = {{0, 40, 100, 40, 0, 0, 0, 0},
                                {0, 40 - SHIFT_B, 100, 40 + SHIFT_B, 0, 0, 0, 0}};
static int32_t nbrs[C * K];

static void snippet(nk_event *e, float *x, int64_t t, int u) {
    e->sample = t; e->channel = 2; e->unit = -7;
    e->amplitude = -amp[u][2]; e->threshold = 5.0f * SIGMA;
    for (int p = 0; p < K; p++) {
        const int32_t nc = nbrs[2 * K + p];
        for (int l = 0; l < L; l++)
            x[p * L + l] = nc < 0 ? 0.0f : amp[u][nc] * shape[l] + (float)gauss_int(SIGMA);
    }
}

/* Sorts NSPIKE spikes of A and B in a fixed pseudo-random order, one call each; of the last
 * NLATE, counts those labelled with their neuron's majority unit; returns a hash of the labels. */
static uint64_t run(int32_t split, int32_t *ok_late, int32_t *unit_a, int32_t *unit_b,
                    int64_t *splits) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.birth_spikes = 6; cfg.adapt_spikes = 50; cfg.new_distance = 4.0f;
    cfg.label_distance = 10.0f; cfg.link_distance = 1.0f; cfg.link_ratio = 0.5f;
    cfg.relative_tolerance = 0.1f; cfg.scale_range = 0.4f; cfg.scale_prior = 10.0f;
    cfg.split = split;
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    const int32_t cap = nk_sort_max_events(s, 1);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static float x[K * L];
    static int32_t label[NLATE], who[NLATE];
    nk_event e;
    int32_t m = 0;
    uint64_t h = FNV0;
    for (int i = 0; i < NSPIKE; i++) {
        const int u = (int)(rng() & 1u);
        snippet(&e, x, 1000 + (int64_t)i * 300, u);
        nk_sort_process(s, &e, x, 1, e.sample + 1, out, cap, &m);
        h = fnv(h, &e.unit, 4);
        if (i >= NSPIKE - NLATE) { label[i - (NSPIKE - NLATE)] = e.unit; who[i - (NSPIKE - NLATE)] = u; }
    }
    /* each neuron's most frequent late label */
    int32_t best[2];
    nk_test_majority_labels(label, who, NLATE, 2, best);
    *ok_late = 0;
    for (int i = 0; i < NLATE; i++) *ok_late += label[i] == best[who[i]];
    *unit_a = best[0]; *unit_b = best[1];
    nk_sort_stats st;
    nk_sort_get_stats(s, &st);
    *splits = st.splits;
    h = fnv(h, &st.splits, sizeof st.splits);
    free(out);
    nk_sort_free(s);
    return h;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    int32_t ok1, a1, b1, ok0, a0, b0;
    int64_t sp1, sp0;
    const uint64_t h1 = run(1, &ok1, &a1, &b1, &sp1);
    const uint64_t h0 = run(0, &ok0, &a0, &b0, &sp0);
    /* on: split, and the late spikes of A and B carry two units, (nearly) all correctly */
    report("sort_split_on", h1, h1 != 0 && sp1 >= 1 && a1 >= 0 && b1 >= 0 && a1 != b1
                                && ok1 >= NLATE * 9 / 10);
    /* off (as before nk_sort_split.c): one unit holds both */
    report("sort_split_off", h0, h0 != 0 && sp0 == 0 && a0 >= 0 && a0 == b0);
    printf("  on: units %d/%d, late right %d of %d, splits %lld; off: units %d/%d\n", a1, b1,
           ok1, NLATE, (long long)sp1, a0, b0);
    return failures ? 1 : 0;
}
