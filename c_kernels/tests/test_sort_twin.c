/* test_sort_twin — one neuron held by two units on one channel (nk_sort_twin.c). Shapes A and
 * B peak on channel 2 with the same size; B leans SHIFT_B counts towards channel 3: a
 * correlation of 0.94 but, at this SNR, far beyond the merge distance, so each gets its own
 * cluster and unit. "One neuron": a single refractory spike train (intervals ≥ 4 ms) whose
 * spikes take shape B one time in four; with twins on, no spike of one unit ever comes
 * 1.05–2.5 ms after the other's, chance predicts several, and the two units merge; with twins
 * off they stay two. "Two neurons": A and B fire independently (each refractory): their spikes
 * do come that close, and twins on keeps them apart. Prints "<name> <fnv1a-64> ok" lines,
 * compared across native, sanitizer and qemu runs. */
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
#define NSPIKE 1500     /* per run */
#define NLATE 200       /* the last spikes, scored */
#define SIGMA 10
#define SHIFT_B 300.0f
#define REFRACTORY 120  /* samples (4 ms at 30 kHz) */

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
_Static_assert(SIGMA == 10, "nk_test_spike draws gauss_int(10) noise");
static const float *const shape = nk_test_shape;
static const float amp[2][C] = {{0, 400, 1000, 400, 0, 0, 0, 0},
                                {0, 400 - SHIFT_B, 1000, 400 + SHIFT_B, 0, 0, 0, 0}};
static int32_t nbrs[C * K];

static void snippet(nk_event *e, float *x, int64_t t, int u) {
    nk_test_spike(e, x, amp[u], 2, nbrs, K, shape, L, t, 5.0f * SIGMA);
    e->amplitude = -amp[u][2];   /* the detector reports the trough */
}

/* A refractory interval: REFRACTORY plus 0 … 2047 samples (≈ 27 Hz). */
static int64_t interval(void) { return REFRACTORY + (int64_t)(rng() & 2047u); }

/* Sorts NSPIKE spikes (one neuron: shape B one time in four; two: independent trains), one call
 * each in time order; the late spikes' majority unit per shape; returns a hash of the labels. */
static uint64_t run(int32_t twin, int32_t two, int32_t *unit_a, int32_t *unit_b, int64_t *twins) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.birth_spikes = 6; cfg.adapt_spikes = 50; cfg.new_distance = 4.0f;
    cfg.label_distance = 10.0f; cfg.link_distance = 1.0f; cfg.link_ratio = 0.5f;
    if (twin) { cfg.twin_lo = 32; cfg.twin_hi = 75; }   /* 1.05 … 2.5 ms at 30 kHz */
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
    int64_t next[2] = {1000, 1000 + interval()};
    for (int i = 0; i < NSPIKE; i++) {
        int u;
        int64_t t;
        if (two) {                       /* the earlier of the two trains' next spikes */
            u = next[1] < next[0] ? 1 : 0;
            t = next[u];
            next[u] += interval();
        } else {
            u = (rng() & 3u) == 0 ? 1 : 0;
            t = next[0];
            next[0] += interval();
        }
        snippet(&e, x, t, u);
        nk_sort_process(s, &e, x, 1, e.sample + 1, out, cap, &m);
        h = fnv(h, &e.unit, 4);
        if (i >= NSPIKE - NLATE) { label[i - (NSPIKE - NLATE)] = e.unit; who[i - (NSPIKE - NLATE)] = u; }
    }
    int32_t best[2];
    nk_test_majority_labels(label, who, NLATE, 2, best);
    *unit_a = best[0]; *unit_b = best[1];
    nk_sort_stats st;
    nk_sort_get_stats(s, &st);
    *twins = st.twins;
    h = fnv(h, &st.twins, sizeof st.twins);
    free(out);
    nk_sort_free(s);
    return h;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    int32_t a[4], b[4];
    int64_t tw[4];
    const uint64_t h_one_on = run(1, 0, &a[0], &b[0], &tw[0]);
    const uint64_t h_one_off = run(0, 0, &a[1], &b[1], &tw[1]);
    const uint64_t h_two_on = run(1, 1, &a[2], &b[2], &tw[2]);
    /* one neuron, twins on: its two units became one */
    report("sort_twin_one_on", h_one_on, h_one_on != 0 && tw[0] >= 1 && a[0] >= 0 && a[0] == b[0]);
    /* … off (as before nk_sort_twin.c): two units */
    report("sort_twin_one_off", h_one_off, h_one_off != 0 && tw[1] == 0 && a[1] >= 0 && b[1] >= 0
                                           && a[1] != b[1]);
    /* two neurons, twins on: their spikes come close, they stay two units */
    report("sort_twin_two_on", h_two_on, h_two_on != 0 && tw[2] == 0 && a[2] >= 0 && b[2] >= 0
                                         && a[2] != b[2]);
    printf("  one neuron: on units %d/%d twins %lld, off units %d/%d; two neurons on: units "
           "%d/%d twins %lld\n", a[0], b[0], (long long)tw[0], a[1], b[1], a[2], b[2],
           (long long)tw[2]);
    /* a refused window: twin_hi ≤ twin_lo */
    nk_sort_config bad = nk_test_sort_config(C, K, L, PRE);
    bad.twin_lo = 40; bad.twin_hi = 40;
    nk_sort *s = NULL;
    report("sort_twin_bad_window", FNV0, nk_sort_new(&bad, nbrs, NULL, 0, &s) == NK_ERR_ARG && !s);
    return failures ? 1 : 0;
}
