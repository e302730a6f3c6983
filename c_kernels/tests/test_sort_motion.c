/* test_sort_motion — the online motion estimate on a staggered probe whose columns have
 * contacts 40 µm apart (Neuropixels-like, nk_sort_motion.c; test_sort_calib covers a 20 µm
 * pitch): with the loaded templates moving with the estimate, the estimate must keep
 * following the probe, not run away with the templates it moved. Four loaded neurons
 * (exponential footprints), the probe ramps by `drift` over the first two thirds of the run
 * and then stays; the estimate's RMS error over the last two thirds is bounded. Measured
 * (this version): 0.54, 0.51, 1.07 µm for ramps of 15, 15 (wider footprint), −20 µm; 4.1 µm
 * for 25 µm, more than half a column's pitch (the moved templates are linear blends of
 * contacts 40 µm apart there); a step of +20 and then −20 µm: 0.80 µm; −20 then +20 µm only
 * with the anchor (motion_anchor; without: 24.7 µm). Prints
 * "<name> <fnv1a-64> ok" lines; the Makefile diffs native, ASan/UBSan and qemu runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nk_common.h"
#include "nk_sort.h"
#include "nk_sort_testutil.h"
#include "nk_testutil.h"

#define L 32
#define PRE 10
#define SIGMA 10.0f
#define NSPK 6000
#define ROWS 6
#define C (2 * ROWS)
#define NU 4

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float *const shape = nk_test_shape;

static float xy[C][2];
static float wav[NSPK][C][L];
static nk_event ev[NSPK];

/* column c % 2 at x 0 / 16 µm, contacts 40 µm apart, the second column 20 µm higher */
static void layout(void) {
    for (int32_t c = 0; c < C; c++) {
        xy[c][0] = 16.0f * (float)(c % 2);
        xy[c][1] = 40.0f * (float)(c / 2) + 20.0f * (float)(c % 2);
    }
}

static float footprint(int32_t c, float ux, float uy, float uz, float lambda) {
    const float dx = xy[c][0] - ux, dy = xy[c][1] - uy;
    return expf(-sqrtf(dx * dx + dy * dy + uz * uz) / lambda);
}

/* step_mode: the probe holds still for a sixth of the run, steps to −drift, and at half the
 * run steps to +drift (drift_step32's bump); the error counts over the last third */
static int step_mode = 0;
static int32_t anchor = 0;   /* nk_sort_config.motion_anchor */

static float truth_at(int i, float drift) {
    if (step_mode) return i < NSPK / 6 ? 0.0f : i < NSPK / 2 ? -drift : drift;
    /* a ramp over the first two thirds, then still */
    const float f = (float)i / (float)(2 * NSPK / 3);
    return drift * (f < 1.0f ? f : 1.0f);
}

static void test_staggered(const char *name, float drift, float lambda, double bound) {
    static const float ux[NU] = {4.0f, 12.0f, 2.0f, 14.0f};
    static const float uy[NU] = {70.0f, 95.0f, 128.0f, 150.0f};
    static const float uz[NU] = {15.0f, 20.0f, 12.0f, 18.0f};
    static const float amp[NU] = {220.0f, 180.0f, 250.0f, 160.0f};
    int32_t nb[C * C];
    for (int32_t c = 0; c < C; c++) {   /* nearest first (ties: lower index) */
        int32_t used[C] = {0};
        for (int32_t p = 0; p < C; p++) {
            int32_t best = -1;
            float bd = 0.0f;
            for (int32_t q = 0; q < C; q++) {
                if (used[q]) continue;
                const float dx = xy[q][0] - xy[c][0], dy = xy[q][1] - xy[c][1];
                const float d = dx * dx + dy * dy;
                if (best < 0 || d < bd) { best = q; bd = d; }
            }
            used[best] = 1;
            nb[c * C + p] = best;
        }
    }
    static float tpl[NU][C][L];
    for (int u = 0; u < NU; u++)
        for (int32_t c = 0; c < C; c++)
            for (int l = 0; l < L; l++)
                tpl[u][c][l] = amp[u] * footprint(c, ux[u], uy[u], uz[u], lambda) * shape[l];
    for (int i = 0; i < NSPK; i++) {
        const int u = (int)(rng() % NU);
        const float d = truth_at(i, drift);
        float a[C];
        int32_t pk = 0;
        for (int32_t c = 0; c < C; c++) {
            a[c] = amp[u] * footprint(c, ux[u], uy[u] + d, uz[u], lambda);
            if (a[c] > a[pk]) pk = c;
        }
        nk_test_spike(&ev[i], &wav[i][0][0], a, pk, nb, C, shape, L, 1000 + (int64_t)i * 300,
                      5.0f * SIGMA);
    }
    nk_sort_config cfg = nk_test_sort_config(C, C, L, PRE);
    cfg.motion_anchor = anchor;
    nk_sort *s = NULL;
    nk_sort_new(&cfg, nb, NULL, 0, &s);
    const int32_t ids[NU] = {0, 1, 2, 3};
    const int ok_setup = s && nk_sort_set_positions(s, &xy[0][0], C, 1) == NK_OK
                         && nk_sort_load_templates(s, NU, ids, &tpl[0][0][0], C, L, NULL, 0) == NK_OK;
    const int32_t block = 50;
    const int32_t cap = s ? nk_sort_max_events(s, block) : 0;
    nk_sort_event *out = calloc((size_t)(cap > 0 ? cap : 1), sizeof *out);
    uint64_t h = FNV0;
    double se = 0.0;
    int32_t n_err = 0, ok = ok_setup && out;
    for (int32_t i = 0; i < NSPK && ok; i += block) {
        int32_t k = 0;
        ok = nk_sort_process(s, ev + i, &wav[i][0][0], block, ev[i + block - 1].sample + 1, out,
                             cap, &k) == NK_OK;
        float um = 0.0f;
        int64_t votes = 0;
        nk_sort_get_motion(s, &um, &votes);
        uint32_t bits;
        memcpy(&bits, &um, sizeof bits);
        h = fnv(h, &bits, sizeof bits);
        if (i >= (step_mode ? 2 * NSPK / 3 : NSPK / 3)) {   /* past the start-up (the step) */
            const double e = (double)um - (double)truth_at(i + block, drift);
            se += e * e;
            n_err++;
        }
    }
    for (int32_t i = 0; i < NSPK; i++) h = fnv(h, &ev[i].unit, 4);
    const double rms = n_err > 0 ? sqrt(se / n_err) : 1e9;
    report(name, h, ok && rms < bound);
    if (getenv("NK_TEST_VERBOSE") || !(rms < bound))
        printf("  drift %.0f µm, footprint %.0f µm: estimate %.2f µm RMS off the probe\n",
               (double)drift, (double)lambda, rms);
    free(out);
    nk_sort_free(s);
}

int main(void) {
    layout();
    test_staggered("sort_motion_staggered_15", 15.0f, 25.0f, 2.0);
    test_staggered("sort_motion_staggered_25", 25.0f, 25.0f, 5.0);
    test_staggered("sort_motion_staggered_15_wide", 15.0f, 40.0f, 2.0);
    test_staggered("sort_motion_staggered_m20", -20.0f, 30.0f, 2.0);
    step_mode = 1;   /* +20 then −20 µm: followed (0.80 µm RMS) */
    test_staggered("sort_motion_step_m20", -20.0f, 30.0f, 2.0);
    /* −20 then +20 µm: the vote alone settles ~25 µm off (24.7 µm RMS); the anchor
     * (motion_anchor, nk_sort_motion.c) re-anchors it: 1.2 µm (moves as adapted), 1.4 µm
     * (re-placed as loaded); the other way round 0.9 / 0.8 µm */
    anchor = 1;
    test_staggered("sort_motion_step_20_anchor", 20.0f, 30.0f, 2.0);
    test_staggered("sort_motion_step_m20_anchor", -20.0f, 30.0f, 2.0);
    anchor = 2;
    test_staggered("sort_motion_step_20_anchor2", 20.0f, 30.0f, 2.0);
    test_staggered("sort_motion_step_m20_anchor2", -20.0f, 30.0f, 2.0);
    /* ramps: the anchor never jumps away from an estimate that follows (0.48, 5.5 µm: the
     * same run without it gives the same hash) */
    step_mode = 0;
    anchor = 1;
    test_staggered("sort_motion_staggered_15_anchor", 15.0f, 25.0f, 2.0);
    test_staggered("sort_motion_staggered_25_anchor", 25.0f, 25.0f, 6.0);
    return failures ? 1 : 0;
}
