/* test_sort_merge — merge_dims (nk_sort.h "Merge"): two small neurons on one channel whose
 * templates differ by ≈ 78 σ² over the snippet — separable (a spike of one lies far outside the
 * other's acceptance limit, new_distance 1 here), but inside the old merge allowance of one
 * spike's noise budget, σ²·K·M = 90 σ². Their spikes alternate. With merge_dims 0 (the whole
 * snippet's dimensions) the second neuron's cluster is merged into the first's as soon as both
 * exist (as candidates: no unit merge is reported): one unit for both. With merge_dims 24 the allowance is 24 σ² and they stay two units,
 * each labelling its own spikes.
 * link_dims (nk_sort.h "Link"), the same for links: two small neurons on neighbouring channels
 * whose templates differ by ≈ 31 σ² on the two channels they share. The candidate of the second
 * joins the first's unit at once under the old allowance (link_distance 1: 60 σ² over the
 * shared channels' 60 dimensions, more while the templates are young); with link_dims 2 it is
 * born as a unit of its own.
 * A neuron's smaller spikes (a burst's, at 0.7 of its size) are a cluster at a scale of its
 * template: with merge_dims 24 they still join it: one unit. Prints "<name> <fnv1a-64> ok" lines, compared across native,
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
#define L NK_TEST_L
#define PRE 10
#define N 800
#define SIGMA 10

/* peak amplitudes per channel: both peak on channel 3 at 10 σ, A spreads evenly to channels
 * 2 and 4, B leans to 4: ‖ΔT‖² = 2 · 40² · ‖shape‖² ≈ 78 σ² */
static const float amp[2][C] = {
    {0, 0, 60, 100, 60, 0, 0, 0},
    {0, 0, 20, 100, 100, 0, 0, 0},
};
/* link: A peaks on channel 3, B on 4; each is 0.75 of its peak on the other's channel
 * (≥ link_ratio 0.5): ‖ΔT‖² on channels 3 and 4 = 2 · 25² · ‖shape‖² ≈ 31 σ² */
static const float amp_link[2][C] = {
    {0, 0, 50, 100, 75, 0, 0, 0},
    {0, 0, 0, 75, 100, 50, 0, 0},
};
/* bursts: B is A at 0.7 of its size */
static const float amp_scaled[2][C] = {
    {0, 0, 60, 100, 60, 0, 0, 0},
    {0, 0, 42, 70, 42, 0, 0, 0},
};
static const int32_t peak_merge[2] = {3, 3}, peak_link[2] = {3, 4};
static int32_t nbrs[C * K];

/* Sorts N spikes alternating A, B (footprints fp, peak channels pk; one call each); returns
 * the label hash, the number of each neuron's spikes labelled with that neuron's majority unit,
 * and those units. */
static uint64_t run(const float (*fp)[C], const int32_t pk[2], float merge_dims,
                    float link_dims, int32_t own[2], int32_t unit[2]) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.new_distance = 1.0f;
    cfg.merge_dims = merge_dims;
    cfg.link_dims = link_dims;
    cfg.link_distance = 1.0f;
    cfg.link_ratio = 0.5f;        /* SorterConfig's */
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    rng_state = 0x243F6A8885A308D3ULL;
    const int32_t cap = nk_sort_max_events(s, 1);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static int32_t label[N], who[N];
    static float x[K * L];
    nk_event e;
    int32_t m = 0;
    uint64_t h = FNV0;
    for (int32_t i = 0; i < N; i++) {
        who[i] = i % 2;
        nk_test_spike(&e, x, fp[who[i]], pk[who[i]], nbrs, K, nk_test_shape, L,
                      1000 + (int64_t)i * 300, 5.0f * SIGMA);
        e.amplitude = -fp[who[i]][pk[who[i]]];
        nk_sort_process(s, &e, x, 1, e.sample + 1, out, cap, &m);
        label[i] = e.unit;
        h = fnv(h, &e.unit, 4);
    }
    nk_test_majority_labels(label + N / 2, who + N / 2, N / 2, 2, unit);   /* second half */
    own[0] = own[1] = 0;
    for (int32_t i = N / 2; i < N; i++) own[who[i]] += label[i] == unit[who[i]];
    free(out);
    nk_sort_free(s);
    return h;
}

/* ≥ 90 % of a neuron's N / 4 second-half spikes */
#define MOST (N / 4 * 9 / 10)

/* Runs one case and prints its units and own-label counts under `label`. */
static uint64_t run_case(const char *label, const float (*fp)[C], const int32_t pk[2],
                         float merge_dims, float link_dims, int32_t own[2], int32_t unit[2]) {
    const uint64_t h = run(fp, pk, merge_dims, link_dims, own, unit);
    printf("  %s: units %d %d, own labels %d %d of %d\n", label, unit[0], unit[1], own[0], own[1],
           N / 4);
    return h;
}

/* Both neurons' spikes carry one unit. */
static int one_unit(uint64_t h, const int32_t unit[2]) {
    return h != 0 && unit[0] >= 0 && unit[0] == unit[1];
}

/* Two units, each labelling most of its neuron's spikes. */
static int two_units(uint64_t h, const int32_t unit[2], const int32_t own[2]) {
    return h != 0 && unit[0] >= 0 && unit[1] >= 0 && unit[0] != unit[1] && own[0] >= MOST &&
           own[1] >= MOST;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    int32_t own[5][2], unit[5][2];
    uint64_t h[5];
    h[0] = run_case("merge_dims 0", amp, peak_merge, 0.0f, 0.0f, own[0], unit[0]);
    h[1] = run_case("merge_dims 24", amp, peak_merge, 24.0f, 0.0f, own[1], unit[1]);
    /* the whole snippet's allowance: the two neurons become one unit */
    report("sort_merge_snippet_dims", h[0], one_unit(h[0], unit[0]));
    /* 24 dimensions: two units, each labelling ≥ 90 % of its neuron's spikes */
    report("sort_merge_dims", h[1], two_units(h[1], unit[1], own[1]));
    h[2] = run_case("link_dims 0", amp_link, peak_link, 0.0f, 0.0f, own[2], unit[2]);
    h[3] = run_case("link_dims 2", amp_link, peak_link, 0.0f, 2.0f, own[3], unit[3]);
    /* the shared channels' allowance: B's candidate links to A's unit */
    report("sort_link_shared_dims", h[2], one_unit(h[2], unit[2]));
    /* 2 dimensions: B is born; two units, each labelling ≥ 90 % of its neuron's spikes */
    report("sort_link_dims", h[3], two_units(h[3], unit[3], own[3]));
    h[4] = run_case("merge_dims 24, B = 0.7 A", amp_scaled, peak_merge, 24.0f, 0.0f, own[4],
                    unit[4]);
    report("sort_merge_dims_scaled", h[4], one_unit(h[4], unit[4]) && own[4][1] >= MOST);
    /* out of range: refused */
    nk_sort_config bad = nk_test_sort_config(C, K, L, PRE);
    nk_sort *s = NULL;
    bad.merge_dims = -1.0f;
    const int r1 = nk_sort_new(&bad, nbrs, NULL, 0, &s);
    bad.merge_dims = 0.0f / 0.0f;
    const int r2 = nk_sort_new(&bad, nbrs, NULL, 0, &s);
    bad.merge_dims = 0.0f;
    bad.link_dims = -1.0f;
    const int r3 = nk_sort_new(&bad, nbrs, NULL, 0, &s);
    report("sort_merge_dims_checked", FNV0,
           r1 != NK_OK && r2 != NK_OK && r3 != NK_OK && s == NULL);
    return failures ? 1 : 0;
}
