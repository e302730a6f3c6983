/* test_sort_dup — one spike detected on two contacts (nk_sort_peel.c: nks_duplicate). Neuron A
 * peaks on channel 2 and still crosses the threshold on channel 3, beyond the detector's
 * exclusion radius, so the detector reports it on both; neuron B lives on channel 3. With the
 * templates of A and B loaded, A's spike on channel 2 is labelled A and its copy on channel 3
 * is left unlabelled (it used to carry B's label: a false spike of B); B's own spikes on
 * channel 3 are still B's. The copy comes before or after A's event in the call.
 * Prints "<name> <fnv1a-64> ok" lines, compared across native, sanitizer and qemu runs. */
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
#define NRUN 80
#define SIGMA 10

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float *const shape = nk_test_shape;
static const float peak_amp[2][C] = {
    {0, 40, 150, 90, 20, 0, 0, 0},    /* A: channel 2, 0.6 of it on channel 3 */
    {0, 0, 90, 100, 40, 0, 0, 0},     /* B: channel 3 */
};
static int32_t nbrs[C * K];

/* neuron u's spike as seen from channel ch's snippet, with noise */
static void snippet(nk_event *e, float *x, int64_t t, int u, int32_t ch) {
    e->sample = t; e->channel = ch; e->unit = -7;
    e->amplitude = -peak_amp[u][ch]; e->threshold = 5.0f * SIGMA;
    for (int p = 0; p < K; p++) {
        const int32_t nc = nbrs[ch * K + p];
        for (int l = 0; l < L; l++)
            x[p * L + l] = nc < 0 ? 0.0f : peak_amp[u][nc] * shape[l] + (float)gauss_int(SIGMA);
    }
}

/* Loads A (id 0) and B (id 1) and sorts NRUN rounds: A's spike on channels 2 and 3 in one call
 * (the copy second, or first with A's event 1 sample later), then an isolated spike of B.
 * Counts A labelled A, copies left unlabelled, B labelled B; returns a hash of the labels. */
static uint64_t run(int32_t *a_ok, int32_t *copy_free, int32_t *b_ok) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.relative_tolerance = 0.1f; cfg.scale_range = 0.4f; cfg.scale_prior = 10.0f;
    cfg.peel = 1;
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    static float T[2 * C * L];
    for (int u = 0; u < 2; u++)
        for (int c = 0; c < C; c++)
            for (int l = 0; l < L; l++) T[(u * C + c) * L + l] = peak_amp[u][c] * shape[l];
    const int32_t ids[2] = {0, 1};
    if (nk_sort_load_templates(s, 2, ids, T, C, L, NULL, 0) != NK_OK) {
        nk_sort_free(s);
        return 0;
    }
    rng_state = 0x2545F4914F6CDD1DULL;
    const int32_t cap = nk_sort_max_events(s, 2);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static float x[2 * K * L];
    nk_event e[2];
    int32_t m = 0;
    uint64_t h = FNV0;
    *a_ok = *copy_free = *b_ok = 0;
    for (int i = 0; i < NRUN; i++) {
        const int64_t t = 1000 + (int64_t)i * 600;
        const int first = i & 1;   /* odd rounds: the copy on channel 3 comes first */
        snippet(&e[first], x + first * K * L, t + (first ? 1 : 0), 0, 2);
        snippet(&e[!first], x + (!first) * K * L, t, 0, 3);
        if (nk_sort_process(s, e, x, 2, t + 40, out, cap, &m) != NK_OK) break;
        *a_ok += e[first].unit == 0;
        *copy_free += e[!first].unit == -1;
        h = fnv(h, &e[0].unit, 4);
        h = fnv(h, &e[1].unit, 4);
        snippet(&e[0], x, t + 300, 1, 3);
        if (nk_sort_process(s, e, x, 1, t + 340, out, cap, &m) != NK_OK) break;
        *b_ok += e[0].unit == 1;
        h = fnv(h, &e[0].unit, 4);
    }
    free(out);
    nk_sort_free(s);
    return h;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    int32_t a, copy, b;
    const uint64_t h = run(&a, &copy, &b);
    report("sort_dup", h, h != 0 && a >= NRUN * 9 / 10 && copy >= NRUN * 9 / 10
                          && b >= NRUN * 9 / 10);
    printf("  A labelled %d of %d, copies unlabelled %d, B labelled %d\n", a, NRUN, copy, b);
    return failures ? 1 : 0;
}
