/* test_sort_peel — overlapping spikes (nk_sort_peel.c). Two neurons on neighbouring channels
 * are learnt from isolated spikes; then every snippet holds neuron A at its peak and neuron B
 * 6 samples later (the detector's one event for the pair). With peel on, B's spike is found
 * under A's snippet (NK_SORT_PEELED: B's unit, channel, sample, size); with peel off it is lost.
 * A third neuron A2 on A's channel, leaning towards B's, makes the nearest unit of a close pair
 * the wrong first spike. A slow wave beside the pair leaves a residual B explains only in part.
 * Joint (peel_joint): B 2 samples after A at 0.85 of its size, which A's template alone absorbs
 * (its scale fitted up), and the A2 case at 3 samples, are found by the two-template fit.
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
#define NTRAIN 600
#define NPAIR 40
#define DT 6
#define SIGMA 10
#define DT3 3       /* B's delay in the A2 case: B distorts A's fit towards A2 */

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float *const shape = nk_test_shape;
static const float peak_amp[3][C] = {
    {0, 40, 150, 40, 0, 0, 0, 0},   /* A: channel 2 */
    {0, 0, 40, 100, 40, 0, 0, 0},   /* B: channel 3 */
    {0, 40, 150, 130, 0, 0, 0, 0},  /* A2: channel 2, leaning towards B's channel */
};
static const int32_t home[3] = {2, 3, 2};
static int n_train = 2;        /* neurons learnt (A, B; A2 too when 3) */
static int32_t dt_b = DT;      /* B's delay after A in the overlaps */
static int32_t nbrs[C * K];
static float b_scale = 1.0f;   /* B's size in the overlaps */
static float wave_amp = 0.0f;  /* a slow wave on channel 1 (A's snippet only) in the overlaps */
static int32_t joint = 0;      /* peel_joint */

/* two periods of a square wave over the snippet, ±1 */
static const float slow[L] = {
    1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1,
    1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};

/* neuron u's waveform on channel ch at snippet sample l, its peak at PRE + dt */
static float wave(int u, int32_t ch, int32_t l, int32_t dt) {
    const int32_t m = l - dt;
    return (ch < 0 || m < 0 || m >= L) ? 0.0f : peak_amp[u][ch] * shape[m];
}

static void snippet(nk_event *e, float *x, int64_t t, int u, int other) {
    const int32_t ch = home[u];
    e->sample = t; e->channel = ch; e->unit = -7;
    e->amplitude = -peak_amp[u][ch]; e->threshold = 5.0f * SIGMA;
    for (int p = 0; p < K; p++) {
        const int32_t nc = nbrs[ch * K + p];
        for (int l = 0; l < L; l++)
            x[p * L + l] = nc < 0 ? 0.0f : wave(u, nc, l, 0) + (other ? b_scale * wave(1, nc, l, dt_b) : 0.0f)
                                          + (other && nc == 1 ? wave_amp * slow[l] : 0.0f)
                                          + (float)gauss_int(SIGMA);
    }
}

/* Learns A and B, then sorts NPAIR overlapped snippets one call each; counts the peeled spikes
 * that are B's (unit, channel, sample) and those that are not; returns a hash of the output. */
static uint64_t run(int32_t peel, int32_t *right, int32_t *wrong, int32_t *a_ok) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.relative_tolerance = 0.1f; cfg.scale_range = 0.4f; cfg.scale_prior = 10.0f;
    cfg.peel = peel;
    cfg.peel_joint = joint;
    if (wave_amp > 0.0f) cfg.label_distance = 30.0f;   /* A keeps its label under the wave */
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    const int32_t cap = nk_sort_max_events(s, 1);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static float x[K * L];
    nk_event e;
    int32_t m = 0, unit[3] = {-1, -1, -1};
    uint64_t h = FNV0;
    for (int i = 0; i < NTRAIN; i++) {
        const int u = i % n_train;
        snippet(&e, x, 1000 + (int64_t)i * 300, u, 0);
        nk_sort_process(s, &e, x, 1, e.sample + 1, out, cap, &m);
        unit[u] = e.unit;
    }
    *right = *wrong = *a_ok = 0;
    for (int i = 0; i < NPAIR; i++) {
        const int64_t t = 1000 + (int64_t)(NTRAIN + i) * 300;
        snippet(&e, x, t, 0, 1);
        if (nk_sort_process(s, &e, x, 1, t + 1, out, cap, &m) != NK_OK) break;
        *a_ok += e.unit == unit[0];
        h = fnv(h, &e.unit, 4);
        for (int32_t j = 0; j < m; j++) {
            if (out[j].kind != NK_SORT_PEELED) continue;
            h = fnv(h, &out[j], sizeof out[j]);
            const int ok = out[j].unit == unit[1] && out[j].channel == home[1] &&
                           out[j].sample >= t + dt_b - 1 && out[j].sample <= t + dt_b + 1 &&
                           out[j].other == unit[0] &&
                           /* B's size (peak 100 on its channel) and that channel's k·σ */
                           out[j].amplitude <= -0.75f * b_scale * peak_amp[1][home[1]] &&
                           out[j].amplitude >= -1.25f * b_scale * peak_amp[1][home[1]] &&
                           out[j].threshold == 5.0f * SIGMA;
            *right += ok;
            *wrong += !ok;
        }
    }
    nk_sort_stats st;
    nk_sort_get_stats(s, &st);
    h = fnv(h, &st.peeled, sizeof st.peeled);
    free(out);
    nk_sort_free(s);
    const int distinct = unit[0] != unit[1] && (n_train < 3 || (unit[2] >= 0 && unit[2] != unit[0]
                                                                 && unit[2] != unit[1]));
    return unit[0] >= 0 && unit[1] >= 0 && distinct ? h : 0;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    int32_t r1, w1, a1, r0, w0, a0;
    const uint64_t h1 = run(1, &r1, &w1, &a1);
    const uint64_t h0 = run(0, &r0, &w0, &a0);
    int32_t rs, ws, as;
    b_scale = 0.68f;
    const uint64_t hs = run(1, &rs, &ws, &as);
    b_scale = 1.0f;
    int32_t rw, ww, aw;
    wave_amp = 35.0f;
    const uint64_t hw = run(2, &rw, &ww, &aw);
    wave_amp = 0.0f;
    int32_t r3, w3, a3;
    n_train = 3; dt_b = DT3;
    const uint64_t h3 = run(2, &r3, &w3, &a3);
    n_train = 2; dt_b = DT;
    /* A2 known too, B 3 samples after A: the pair is nearer A2 than A, so the nearest unit is
     * the wrong first spike; with the refit (peel 2) the next nearest (A) explains the snippet
     * with B (PEEL_FIRSTS) */
    report("sort_peel_second_nearest", h3, h3 != 0 && r3 >= NPAIR * 2 / 5 && w3 == 0 &&
                                           a3 >= NPAIR * 9 / 10);
    printf("  A2 known, B %d samples after A: peeled %d (wrong %d, A labelled %d)\n", DT3, r3, w3, a3);
    /* on: B found under (nearly) every pair, nothing else, A still labelled A */
    report("sort_peel_on", h1, h1 != 0 && r1 >= NPAIR * 9 / 10 && w1 == 0 && a1 >= NPAIR * 9 / 10);
    /* off (as before nk_sort_peel.c): the pair is one spike, B's is lost */
    report("sort_peel_off", h0, h0 != 0 && r0 == 0 && w0 == 0);
    /* B at 0.68 of its size: its template fits the residual only shrunk to near the scale
     * range's end (PEEL_GMIN), which on the tune seeds was mostly another neuron: not peeled */
    report("sort_peel_small", hs, hs != 0 && rs == 0 && ws == 0);
    printf("  B at %.2f: peeled %d (wrong %d)\n", 0.68, rs, ws);
    /* a snippet whose residual B's template explains only in part (a slow wave as large as B
     * on a channel outside B's footprint, below threshold): with the refit B is not peeled
     * (PEEL_XF) */
    report("sort_peel_unexplained", hw, hw != 0 && rw == 0 && ww == 0);
    printf("  with the wave: peeled %d (wrong %d, A labelled %d)\n", rw, ww, aw);
    /* joint: the plain case as before; with A2 known too, B 2 samples after A at 0.85 of its
     * size: A's template alone takes B's part (its scale fitted up) and the greedy residual no
     * longer holds B (measured 1 of 40), the two-template fit separates them (30 of 40) */
    int32_t rj, wj, aj, rg, wg, ag, rjc, wjc, ajc, rf, wf, af, rgf, wgf, agf;
    joint = 1;
    const uint64_t hj = run(1, &rj, &wj, &aj);
    report("sort_peel_joint_on", hj, hj != 0 && rj >= NPAIR * 9 / 10 && wj == 0 &&
                                     aj >= NPAIR * 9 / 10);
    n_train = 3; dt_b = 2; b_scale = 0.85f;
    const uint64_t hjc = run(1, &rjc, &wjc, &ajc);
    joint = 0;
    const uint64_t hg = run(1, &rg, &wg, &ag);
    report("sort_peel_joint_close", hjc, hjc != 0 && hg != 0 && rjc >= NPAIR * 3 / 5 &&
                                        wjc == 0 && ajc >= ag && rg <= NPAIR / 10);
    printf("  A2 known, B 2 samples after A at 0.85: greedy peeled %d (wrong %d, A labelled %d), "
           "joint %d (wrong %d, A labelled %d)\n", rg, wg, ag, rjc, wjc, ajc);
    /* joint, A2 known, B 3 samples after A (peel 1): the outlier is tried with each of the 3
     * nearest units as the first and the pair that leaves least is taken; the greedy peel tries
     * the nearest only (A2: measured 8 of 40 B found, A labelled 8) */
    n_train = 3; dt_b = DT3; b_scale = 1.0f;
    const uint64_t hgf = run(1, &rgf, &wgf, &agf);
    joint = 1;
    const uint64_t hf = run(1, &rf, &wf, &af);
    joint = 0; n_train = 2; dt_b = DT;
    report("sort_peel_joint_first", hf, hf != 0 && hgf != 0 && rf >= NPAIR * 2 / 5 && wf == 0 &&
                                        af >= NPAIR * 9 / 10 && agf <= NPAIR / 2);
    printf("  A2 known, B %d after A, peel 1: greedy peeled %d (A labelled %d), joint %d (A "
           "labelled %d, wrong %d)\n", DT3, rgf, agf, rf, af, wf);
    nk_sort_config bad;
    memset(&bad, 0, sizeof bad);
    printf("  peeled %d of %d (wrong %d, A labelled %d)\n", r1, NPAIR, w1, a1);
    return failures ? 1 : 0;
}
