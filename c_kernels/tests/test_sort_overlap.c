/* test_sort_overlap — near-synchronous overlaps (nk_sort_overlap.c). Two neurons on
 * neighbouring channels are learnt from isolated spikes; then every snippet holds neuron A at
 * its peak and neuron B 0 or 1 samples later (one detected event on A's channel). The residual
 * of A's template alone has no peak away from A's (the peel's, nk_sort_peel.c, needs ≥ 2
 * samples), so with peel and peel_joint on but overlap_penalty 0 B's spike is lost; with it on
 * the pair is resolved into both units (the event labelled with one, NK_SORT_PEELED for the
 * other at its sample). Isolated spikes of A, also at 1.3× its size, stay single.
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
#define SIGMA 10

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float *const shape = nk_test_shape;
static const float peak_amp[2][C] = {
    {0, 40, 150, 60, 0, 0, 0, 0},   /* A: channel 2 */
    {0, 0, 70, 110, 40, 0, 0, 0},   /* B: channel 3 */
};
static const int32_t home[2] = {2, 3};
static int32_t nbrs[C * K];

/* neuron u's waveform on channel ch at snippet sample l, its peak at PRE + dt, times g */
static float wave(int u, int32_t ch, int32_t l, int32_t dt, float g) {
    const int32_t m = l - dt;
    return (ch < 0 || m < 0 || m >= L) ? 0.0f : g * peak_amp[u][ch] * shape[m];
}

/* A snippet on neuron u's channel: u at the peak (× g), and B `dt` samples later when pair. */
static void snippet(nk_event *e, float *x, int64_t t, int u, float g, int pair, int32_t dt) {
    const int32_t ch = home[u];
    e->sample = t; e->channel = ch; e->unit = -7;
    e->amplitude = -g * peak_amp[u][ch]; e->threshold = 5.0f * SIGMA;
    for (int p = 0; p < K; p++) {
        const int32_t nc = nbrs[ch * K + p];
        for (int l = 0; l < L; l++)
            x[p * L + l] = nc < 0 ? 0.0f : wave(u, nc, l, 0, g)
                                          + (pair ? wave(1, nc, l, dt, 1.0f) : 0.0f)
                                          + (float)gauss_int(SIGMA);
    }
}

typedef struct {
    int32_t both;      /* pairs resolved into A and B (label + a PEELED at B's sample ±1) */
    int32_t wrong;     /* PEELED spikes that are not B's */
    int32_t single;    /* isolated A spikes (normal and 1.3×) given a second spike */
} result;

/* Learns A and B, then sorts NPAIR pairs at lag dt and 2·NPAIR isolated A spikes; returns a
 * hash of the output (0 when A and B were not learnt as two units). */
static uint64_t run(float penalty, int32_t dt, result *r) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.relative_tolerance = 0.1f; cfg.scale_range = 0.4f; cfg.scale_prior = 10.0f;
    cfg.peel = 1;
    cfg.peel_joint = 1;
    cfg.overlap_penalty = penalty;
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    rng_state = 0x9E3779B97F4A7C15ULL;
    const int32_t cap = nk_sort_max_events(s, 1);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static float x[K * L];
    nk_event e;
    int32_t m = 0, unit[2] = {-1, -1};
    uint64_t h = FNV0;
    int64_t t = 1000;
    for (int i = 0; i < NTRAIN; i++, t += 300) {
        snippet(&e, x, t, i % 2, 1.0f, 0, 0);
        nk_sort_process(s, &e, x, 1, e.sample + 1, out, cap, &m);
        unit[i % 2] = e.unit;
    }
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 3 * NPAIR; i++, t += 300) {
        const int pair = i < NPAIR;
        snippet(&e, x, t, 0, i >= 2 * NPAIR ? 1.3f : 1.0f, pair, dt);
        if (nk_sort_process(s, &e, x, 1, t + 1, out, cap, &m) != NK_OK) break;
        h = fnv(h, &e.unit, 4);
        int32_t a = e.unit == unit[0], b = e.unit == unit[1], peeled = 0;
        for (int32_t j = 0; j < m; j++) {
            if (out[j].kind != NK_SORT_PEELED) continue;
            h = fnv(h, &out[j], sizeof out[j]);
            peeled++;
            const int32_t other = out[j].unit == unit[0] ? 0 : out[j].unit == unit[1] ? 1 : -1;
            /* B's peak at t + dt, A's at t (±1 sample: the fitted slide) */
            const int64_t at = other == 1 ? t + dt : t;
            const int ok = pair && other >= 0 && out[j].sample >= at - 1 && out[j].sample <= at + 1;
            a += ok && other == 0;
            b += ok && other == 1;
            r->wrong += !ok && pair;
        }
        if (pair) r->both += a == 1 && b == 1;
        else r->single += peeled > 0;
    }
    free(out);
    nk_sort_free(s);
    return unit[0] >= 0 && unit[1] >= 0 && unit[0] != unit[1] ? h : 0;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    for (int32_t dt = 0; dt <= 1; dt++) {
        result on, off;
        const uint64_t h1 = run(30.0f, dt, &on);
        const uint64_t h0 = run(0.0f, dt, &off);
        char name[64];
        /* on: (nearly) every pair resolved into both units, no isolated spike doubled */
        snprintf(name, sizeof name, "sort_overlap_lag%d_on", (int)dt);
        report(name, h1, h1 != 0 && on.both >= NPAIR * 9 / 10 && on.wrong == 0 &&
                             on.single == 0);
        /* off (the peel alone, measured 0 and 7 of 40 at lag 0 / 1): the second spike is lost */
        snprintf(name, sizeof name, "sort_overlap_lag%d_off", (int)dt);
        report(name, h0, h0 != 0 && off.both <= NPAIR / 4);
        printf("  lag %d: both units %d of %d on (wrong %d, isolated doubled %d), %d off\n",
               (int)dt, on.both, NPAIR, on.wrong, on.single, off.both);
    }
    nk_sort_config bad = nk_test_sort_config(C, K, L, PRE);
    nk_sort *s = NULL;
    bad.overlap_penalty = -1.0f;
    const int neg = nk_sort_new(&bad, nbrs, NULL, 0, &s);
    bad.overlap_penalty = 0.0f / 0.0f;
    const int nan = nk_sort_new(&bad, nbrs, NULL, 0, &s);
    report("sort_overlap_config", 1, neg == NK_ERR_ARG && nan == NK_ERR_ARG && s == NULL);
    return failures ? 1 : 0;
}
