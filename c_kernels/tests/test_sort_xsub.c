/* test_sort_xsub — neighbours' spikes removed from a snippet (subtract, nk_sort_xsub.c). Two
 * neurons on neighbouring channels are learnt from isolated spikes: a large A on channel 2 and
 * B on channel 3. Then each call holds a pair, each spike its own event and snippet, and B's
 * snippet carries A's spike:
 *  - before: A first, B DT_BEFORE samples later, with the peak late in the snippet (PRE_BEFORE)
 *    so that A's snippet ends before B's spike starts: A is labelled first and its template
 *    (ring of labelled spikes) is subtracted from B's snippet;
 *  - ahead: B first, A DT_AHEAD samples later in the same call: A, the larger event after B,
 *    is matched and subtracted ahead (A's snippet then holds B's tail too).
 *  - own peak: A first, B DT_AHEAD later with the peak at PRE_AHEAD: A's snippet holds B's
 *    trough, always at the same place, and the sorter learns the pair as a unit of its own; its
 *    template, subtracted from B's snippet, would take B's peak with it, so it is not.
 * Peel is off: only the matching of B's own snippet is tested. With subtract off, A's trough in
 * B's snippet takes it out of B's limit; with it on, B is labelled B. Prints "<name> <fnv1a-64> ok" lines, compared
 * across native, sanitizer and qemu runs. */
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
#define PRE_BEFORE 20
#define PRE_AHEAD 10
#define NTRAIN 600
#define NPAIR 40
#define DT_BEFORE 15
#define DT_AHEAD 12
#define SIGMA 10

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float peak_amp[2][C] = {
    {0, 40, 150, 40, 0, 0, 0, 0},   /* A: channel 2 */
    {0, 0, 40, 100, 40, 0, 0, 0},   /* B: channel 3 */
};
static const int32_t home[2] = {2, 3};
static int32_t nbrs[C * K];

static int32_t pre = PRE_AHEAD;   /* the snippets' peak sample */

/* neuron u's waveform on channel ch at snippet sample l, its peak at pre + dt */
static float wave(int u, int32_t ch, int32_t l, int32_t dt) {
    const int32_t m = l - dt - (pre - 10);   /* the shape's trough is its sample 10 */
    return (ch < 0 || m < 0 || m >= L) ? 0.0f : peak_amp[u][ch] * nk_test_shape[m];
}

/* Neuron u's event at t; its snippet also holds neuron `other`'s spike `dt` samples from t
 * (other < 0: none). */
static void snippet(nk_event *e, float *x, int64_t t, int u, int other, int32_t dt) {
    const int32_t ch = home[u];
    e->sample = t; e->channel = ch; e->unit = -7;
    e->amplitude = -peak_amp[u][ch]; e->threshold = 5.0f * SIGMA;
    for (int p = 0; p < K; p++) {
        const int32_t nc = nbrs[ch * K + p];
        for (int l = 0; l < L; l++)
            x[p * L + l] = nc < 0 ? 0.0f : wave(u, nc, l, 0)
                                          + (other >= 0 ? wave(other, nc, l, dt) : 0.0f)
                                          + (float)gauss_int(SIGMA);
    }
}

/* Learns A and B, then sorts NPAIR pairs (A first, or B first), one call each; counts B's
 * and A's events that take their neuron's unit; returns a hash of the labels. */
static uint64_t run(int32_t subtract, int b_first, int32_t dt, int32_t *b_ok, int32_t *a_ok,
                    int64_t *subtracted) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, pre);
    cfg.relative_tolerance = 0.1f; cfg.scale_range = 0.4f; cfg.scale_prior = 10.0f;
    cfg.label_distance = 0.0f;   /* the nearest unit's label only within its limit */
    cfg.subtract = subtract;
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    const int32_t cap = nk_sort_max_events(s, 2);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static float x[2][K * L];
    nk_event e[2];
    int32_t m = 0, unit[2] = {-1, -1};
    uint64_t h = FNV0;
    for (int i = 0; i < NTRAIN; i++) {
        const int u = i % 2;
        snippet(&e[0], x[0], 1000 + (int64_t)i * 300, u, -1, 0);
        nk_sort_process(s, e, x[0], 1, e[0].sample + 1, out, cap, &m);
        unit[u] = e[0].unit;
    }
    *b_ok = *a_ok = 0;
    for (int i = 0; i < NPAIR; i++) {
        const int64_t t = 1000 + (int64_t)(NTRAIN + i) * 300;
        const int first = b_first ? 1 : 0, second = 1 - first;
        snippet(&e[0], x[0], t, first, second, dt);
        snippet(&e[1], x[1], t + dt, second, first, -dt);
        if (nk_sort_process(s, e, &x[0][0], 2, t + dt + 1, out, cap, &m) != NK_OK) break;
        const nk_event *ea = b_first ? &e[1] : &e[0], *eb = b_first ? &e[0] : &e[1];
        *a_ok += ea->unit == unit[0];
        *b_ok += eb->unit == unit[1];
        h = fnv(h, &e[0].unit, 4);
        h = fnv(h, &e[1].unit, 4);
    }
    nk_sort_stats st;
    nk_sort_get_stats(s, &st);
    *subtracted = st.subtracted;
    h = fnv(h, &st.subtracted, sizeof st.subtracted);
    free(out);
    nk_sort_free(s);
    return unit[0] >= 0 && unit[1] >= 0 && unit[0] != unit[1] ? h : 0;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    int32_t b1, a1, b0, a0, bb1, ab1, bb0, ab0;
    int64_t s1, s0, sb1, sb0;
    pre = PRE_BEFORE;
    const uint64_t h1 = run(1, 0, DT_BEFORE, &b1, &a1, &s1);
    const uint64_t h0 = run(0, 0, DT_BEFORE, &b0, &a0, &s0);
    pre = PRE_AHEAD;
    const uint64_t hb1 = run(1, 1, DT_AHEAD, &bb1, &ab1, &sb1);
    const uint64_t hb0 = run(0, 1, DT_AHEAD, &bb0, &ab0, &sb0);
    int32_t bp, ap;
    int64_t sp;
    const uint64_t hp = run(1, 0, DT_AHEAD, &bp, &ap, &sp);
    printf("  A first: B labelled %d of %d with subtract (%lld subtracted; A %d), %d without\n",
           b1, NPAIR, (long long)s1, a1, b0);
    printf("  B first: B labelled %d of %d with subtract (%lld subtracted; A %d), %d without\n",
           bb1, NPAIR, (long long)sb1, ab1, bb0);
    /* A labelled first: its template leaves B's snippet, B is labelled B */
    report("sort_xsub_before", h1, h1 != 0 && h0 != 0 && b1 >= NPAIR * 9 / 10 &&
                                   b0 < NPAIR / 2 && a1 >= NPAIR * 9 / 10 && s1 >= NPAIR &&
                                   s0 == 0);
    /* A, larger and after B in the same call, is matched ahead and leaves B's snippet */
    report("sort_xsub_ahead", hb1, hb1 != 0 && hb0 != 0 && bb1 >= NPAIR * 9 / 10 &&
                                   bb0 < NPAIR / 2 && ab1 >= NPAIR * 9 / 10 && sb1 >= NPAIR &&
                                   sb0 == 0);
    /* the pair's unit holds B's spike: subtracting it would leave B's event without its peak
     * (measured without that check: B labelled 9 of 40) */
    report("sort_xsub_own_peak", hp, hp != 0 && bp >= NPAIR * 9 / 10);
    printf("  A first, pair learnt as a unit: B labelled %d of %d (%lld subtracted)\n", bp, NPAIR,
           (long long)sp);
    /* 0 or 1 only */
    nk_sort_config bad = nk_test_sort_config(C, K, L, pre);
    bad.subtract = 2;
    nk_sort *bs = NULL;
    report("sort_xsub_bad_config", 0, nk_sort_new(&bad, nbrs, NULL, 0, &bs) == NK_ERR_ARG &&
                                      bs == NULL);
    return failures ? 1 : 0;
}
