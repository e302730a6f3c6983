/* test_sort — the online sorter on synthetic snippets: three neurons (two on one channel, one
 * whose peak alternates between two channels), integer noise. Prints "<name> <fnv1a-64> ok"
 * lines; the Makefile diffs native, ASan/UBSan and qemu runs, so equal lines prove identical
 * labels and templates on every architecture. */
#include <math.h>
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
#define NSPK 3000
#define SIGMA 10.0f

/* full-probe templates [3][C][L]: a biphasic shape scaled per channel */
static float tpl[3][C][L];
static const int32_t home[3] = {2, 2, 5};
static const float peak_amp[3][C] = {
    {0, 40, 150, 40, 0, 0, 0, 0},   /* neuron 0: big on channel 2 */
    {0, 60, 80, 10, 0, 0, 0, 0},    /* neuron 1: smaller on 2, more on 1 */
    {0, 0, 0, 0, 30, 100, 96, 20},  /* neuron 2: nearly equal on 5 and 6 */
};
static int32_t nbrs[C * K];
static nk_event ev[NSPK];
static float wav[NSPK][K][L];
static int32_t truth[NSPK];

/* mode 0: as above. mode 1 (amplitudes): every spike's amplitude varies by up to ±30 %
 * (uniform: bursts, jitter). mode 2 (a step of the probe):
 * from the middle on, every neuron's footprint moves up by one channel. */
static void make_data_mode(int mode);
static void make_data(void) { make_data_mode(0); }
static void make_data_mode(int mode) {
    _Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
    const float *const shape = nk_test_shape;
    for (int u = 0; u < 3; u++)
        for (int c = 0; c < C; c++)
            for (int l = 0; l < L; l++) tpl[u][c][l] = peak_amp[u][c] * shape[l];
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    for (int i = 0; i < NSPK; i++) {
        const int u = (int)(rng() % 3);
        const int moved = mode == 2 && i >= NSPK / 2;
        /* mode 3: the footprint slides up gradually, by half a channel pitch over the run */
        const float frac = mode == 3 ? 0.5f * (float)i / (float)NSPK : 0.0f;
        const int up = frac > 0.5f;
        int32_t ch = home[u] + moved + up;
        if (u == 2 && (rng() & 1)) ch = 6 + moved + up;  /* peak on the neighbour half the time */
        const float a = mode == 1 ? 1.0f + (float)((int32_t)(rng() % 61) - 30) / 100.0f : 1.0f;
        truth[i] = u;
        ev[i].sample = 1000 + (int64_t)i * 300;
        ev[i].channel = ch;
        ev[i].unit = -7;
        ev[i].amplitude = -a * tpl[u][ch - moved - up][PRE];
        ev[i].threshold = 5.0f * SIGMA;
        for (int p = 0; p < K; p++) {
            const int32_t nc = nbrs[ch * K + p];
            const int32_t src = nc - moved;   /* a footprint moved up by one channel */
            for (int l = 0; l < L; l++) {
                float v = (nc < 0 || src < 0) ? 0.0f : a * tpl[u][src][l];
                if (mode == 3 && nc >= 0)   /* the loaded footprint at a fractional shift */
                    v = (1.0f - frac) * tpl[u][nc][l] + (nc > 0 ? frac * tpl[u][nc - 1][l] : 0.0f);
                wav[i][p][l] = nc < 0 ? 0.0f : v + (float)gauss_int(10);
            }
        }
    }
}

static nk_sort_config config(void) {
    return nk_test_sort_config(C, K, L, PRE);
}

/* Runs all spikes in blocks of `block`; returns a hash of labels and events; labels out. */
static uint64_t run(nk_sort *s, int32_t block, int32_t *labels, int32_t *n_events) {
    nk_event buf[NSPK];
    memcpy(buf, ev, sizeof ev);
    int32_t cap = nk_sort_max_events(s, block);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    uint64_t h = FNV0;
    *n_events = 0;
    for (int32_t i = 0; i < NSPK; i += block) {
        const int32_t n = NSPK - i < block ? NSPK - i : block;
        int32_t m = 0;
        int st = nk_sort_process(s, buf + i, &wav[i][0][0], n, buf[i + n - 1].sample + 1, out,
                                 cap, &m);
        if (st != NK_OK) { free(out); return 0; }
        for (int32_t j = 0; j < m; j++) {
            h = fnv(h, &out[j].kind, 4); h = fnv(h, &out[j].unit, 4);
            h = fnv(h, &out[j].other, 4); h = fnv(h, &out[j].sample, 8);
        }
        *n_events += m;
    }
    for (int32_t i = 0; i < NSPK; i++) labels[i] = buf[i].unit;
    free(out);
    return fnv(h, labels, sizeof(int32_t) * NSPK);
}

/* Fraction of spikes after `skip` whose label is the majority label of their neuron, with
 * distinct majority labels per neuron (0 when two neurons share one). */
static double purity(const int32_t *labels, int skip, int32_t *major) {
    for (int u = 0; u < 3; u++) {
        int best = -1, best_n = 0;
        for (int i = skip; i < NSPK; i++) {
            if (truth[i] != u || labels[i] < 0) continue;
            int n = 0;
            for (int j = skip; j < NSPK; j++) n += truth[j] == u && labels[j] == labels[i];
            if (n > best_n) { best_n = n; best = labels[i]; }
            if (best_n > (NSPK - skip) / 6) break;
        }
        major[u] = best;
    }
    if (major[0] == major[1] || major[0] == major[2] || major[1] == major[2]) return 0.0;
    int good = 0, total = 0;
    for (int i = skip; i < NSPK; i++) {
        total++;
        good += labels[i] == major[truth[i]];
    }
    return (double)good / total;
}

int main(void) {
    make_data();
    report("sort_input", fnv(fnv(FNV0, ev, sizeof ev), wav, sizeof wav), 1);
    nk_sort_config cfg = config();
    nk_sort *s = NULL;
    nk_sort_new(&cfg, nbrs, NULL, 0, &s);
    /* the state size depends on pointer width: checked, not hashed */
    report("sort_new", 0, s != NULL && nk_sort_memory(&cfg) > 0);

    /* cold start */
    static int32_t lab1[NSPK], lab2[NSPK];
    int32_t ne1 = 0, ne2 = 0, major[3];
    uint64_t h1 = run(s, 50, lab1, &ne1);
    double pur = purity(lab1, 300, major);
    nk_sort_stats st;
    nk_sort_get_stats(s, &st);
    report("sort_cold", h1, h1 != 0 && pur > 0.97 && st.live_units >= 3 && st.live_units <= 4);
    if (pur <= 0.97) printf("  purity %.4f, live units %d\n", pur, st.live_units);

    /* the same spikes in other blocks: identical labels and life-cycle events */
    nk_sort_reset(s);
    uint64_t h2 = run(s, 7, lab2, &ne2);
    report("sort_blocks", h2, memcmp(lab1, lab2, sizeof lab1) == 0 && ne1 == ne2);

    /* templates of the clusters: finite, hashed (bit-identical across architectures) */
    int32_t chs[C * 6], units[C * 6];
    int64_t counts[C * 6];
    static float tbuf[C * 6 * K * L];
    int gs = nk_sort_get_clusters(s, chs, units, counts, tbuf, C * 6);
    int finite = 1;
    for (size_t i = 0; i < sizeof tbuf / sizeof tbuf[0]; i++) finite &= isfinite(tbuf[i]) != 0;
    report("sort_templates", fnv(FNV0, tbuf, sizeof tbuf), gs == NK_OK && finite);

    /* retirement: a long silence retires every unit, each with one RETIRE event */
    nk_sort_get_stats(s, &st);
    const int32_t live = st.live_units;
    nk_sort_event out[64];
    int32_t m = 0;
    int rs = nk_sort_process(s, NULL, NULL, 0, ev[NSPK - 1].sample + cfg.retire_samples + 10,
                             out, 64, &m);
    int retired = 0;
    for (int32_t j = 0; j < m; j++) retired += out[j].kind == NK_SORT_RETIRE;
    nk_sort_get_stats(s, &st);
    report("sort_retire", (uint64_t)retired,
           rs == NK_OK && retired == live && st.live_units == 0 && st.active_clusters == 0);

    /* calibrated: the true templates with ids 100..102 */
    const int32_t ids[3] = {100, 101, 102};
    int ls = nk_sort_load_templates(s, 3, ids, &tpl[0][0][0], C, L, NULL, 0);
    static int32_t lab3[NSPK];
    int32_t ne3 = 0;
    uint64_t h3 = run(s, 50, lab3, &ne3);
    double pur3 = purity(lab3, 0, major);
    report("sort_calibrated", h3, ls == NK_OK && pur3 > 0.98 && major[0] == 100 &&
           major[1] == 101 && major[2] == 102);

    /* bad templates are refused whole: the state is unchanged */
    nk_sort_stats before, after;
    nk_sort_get_stats(s, &before);
    static float bad[3][C][L];
    memcpy(bad, tpl, sizeof bad);
    bad[1][3][7] = NAN;
    const int32_t dup[3] = {1, 2, 1};
    int b1 = nk_sort_load_templates(s, 3, ids, &bad[0][0][0], C, L, NULL, 0);
    int b2 = nk_sort_load_templates(s, 3, ids, &tpl[0][0][0], C + 1, L, NULL, 0);
    int b3 = nk_sort_load_templates(s, 3, dup, &tpl[0][0][0], C, L, NULL, 0);
    int b4 = nk_sort_load_templates(s, 17, ids, &tpl[0][0][0], C, L, NULL, 0);
    memset(bad, 0, sizeof bad);
    int b5 = nk_sort_load_templates(s, 3, ids, &bad[0][0][0], C, L, NULL, 0);
    nk_sort_get_stats(s, &after);
    report("sort_load_bad", 0, b1 == NK_ERR_ARG && b2 == NK_ERR_ARG && b3 == NK_ERR_ARG &&
           b4 == NK_ERR_CAPACITY && b5 == NK_ERR_ARG && memcmp(&before, &after, sizeof before) == 0);

    /* a basis (first 6 samples-averaging rows, as a stand-in for PCA) also sorts */
    static float basis[6][L];
    for (int d = 0; d < 6; d++)
        for (int l = 0; l < L; l++) basis[d][l] = (l / 5 == d) ? 0.4472136f : 0.0f;
    nk_sort *sb = NULL;
    nk_sort_new(&cfg, nbrs, &basis[0][0], 6, &sb);
    int32_t neb = 0;
    static int32_t lab4[NSPK];
    uint64_t h4 = run(sb, 50, lab4, &neb);
    double pur4 = purity(lab4, 300, major);
    report("sort_basis", h4, sb != NULL && pur4 > 0.95);
    nk_sort_free(sb);

    /* a live threshold change: a sorter built for k = 8 and set to k = 5 labels as one built
     * for 5 (σ = event.threshold / k follows the detector) */
    nk_sort_config c8 = cfg;
    c8.detect_threshold = 8.0f;
    nk_sort *s8 = NULL, *s5 = NULL;
    nk_sort_new(&c8, nbrs, NULL, 0, &s8);
    nk_sort_new(&cfg, nbrs, NULL, 0, &s5);
    static int32_t lab5[NSPK], lab8[NSPK];
    int32_t ne5 = 0, ne8 = 0;
    int ks = nk_sort_set_detect_threshold(s8, 5.0f);
    uint64_t h5 = run(s5, 50, lab5, &ne5), h8 = run(s8, 50, lab8, &ne8);
    report("sort_set_threshold", h8, ks == NK_OK && h5 == h8 && ne5 == ne8 &&
           nk_sort_set_detect_threshold(s8, 0.0f) == NK_ERR_ARG &&
           nk_sort_set_detect_threshold(s8, NAN) == NK_ERR_ARG &&
           nk_sort_set_detect_threshold(NULL, 5.0f) == NK_ERR_ARG);
    nk_sort_free(s5);
    nk_sort_free(s8);

    /* bad arguments */
    nk_sort_config badc = cfg;
    badc.pre = L;
    nk_event e1 = ev[0];
    e1.channel = C;
    int32_t m2 = 0;
    nk_sort *bad_s = NULL;
    nk_sort_config badj = cfg;
    badj.peel_joint = 2;   /* 0 or 1 only */
    report("sort_bad_args", 0, nk_sort_new(&badc, nbrs, NULL, 0, &bad_s) == NK_ERR_ARG &&
           nk_sort_new(&badj, nbrs, NULL, 0, &bad_s) == NK_ERR_ARG &&
           nk_sort_new(&cfg, NULL, NULL, 0, &bad_s) == NK_ERR_ARG && bad_s == NULL &&
           nk_sort_process(s, &e1, &wav[0][0][0], 1, 0, out, 64, &m2) == NK_ERR_ARG &&
           nk_sort_process(s, ev, &wav[0][0][0], 40, 0, out, 4, &m2) == NK_ERR_CAPACITY);

    /* calibration fit: the true templates fit (δ ≈ 1, every neuron's spikes accepted); a
     * template three times too large does not (none of its channel's spikes accepted) */
    nk_sort_fit fit[4];
    int32_t nf = 0;
    nk_sort_reset(s);
    ls = nk_sort_load_templates(s, 3, ids, &tpl[0][0][0], C, L, NULL, 0);
    run(s, 50, lab3, &ne3);
    int fs = nk_sort_get_fit(s, fit, 4, &nf);
    int fit_ok = ls == NK_OK && fs == NK_OK && nf == 3;
    for (int u = 0; u < 3 && fit_ok; u++)
        fit_ok = fit[u].unit == ids[u] && fit[u].spikes > NSPK / 4 && fit[u].mean_delta > 0.5f &&
                 fit[u].mean_delta < 2.0f && fit[u].snr > 5.0f;
    static float wrong[3][C][L];
    memcpy(wrong, tpl, sizeof wrong);
    for (int c = 0; c < C; c++)
        for (int l = 0; l < L; l++) wrong[0][c][l] *= 3.0f;
    ls = nk_sort_load_templates(s, 3, ids, &wrong[0][0][0], C, L, NULL, 0);
    run(s, 50, lab3, &ne3);
    int fs2 = nk_sort_get_fit(s, fit, 4, &nf);
    fit_ok = fit_ok && ls == NK_OK && fs2 == NK_OK && nf == 3 && fit[0].spikes == 0 &&
             fit[0].channel_spikes > NSPK / 2 && fit[1].spikes > NSPK / 4 &&
             nk_sort_get_fit(s, fit, 2, &nf) == NK_ERR_CAPACITY;
    report("sort_fit", (uint64_t)fit[0].channel_spikes, fit_ok);
    nk_sort_free(s);

    /* calibration leaves room for the neurons it did not list: two loaded units whose
     * footprints reach channel 2 (peaks on 1 and 3) may not fill its slots, so neurons 0 and
     * 1, which the loaded set lacks, still get units of their own there (without the
     * reserve: no birth, both neurons' spikes go to the loaded units) */
    nk_sort_config cr = cfg;
    cr.max_clusters = 3;
    nk_sort *sres = NULL;
    nk_sort_new(&cr, nbrs, NULL, 0, &sres);
    static float side[3][C][L];
    memset(side, 0, sizeof side);
    for (int l = 0; l < L; l++) {
        const float w = tpl[0][2][l] / 150.0f;     /* the biphasic shape */
        side[0][1][l] = 150.0f * w; side[0][2][l] = 130.0f * w;
        side[1][3][l] = 150.0f * w; side[1][2][l] = 130.0f * w;
        for (int c = 0; c < C; c++) side[2][c][l] = tpl[2][c][l];
    }
    const int32_t sids[3] = {200, 201, 202};
    int lr = nk_sort_load_templates(sres, 3, sids, &side[0][0][0], C, L, NULL, 0);
    static int32_t labres[NSPK];
    int32_t neres = 0;
    nk_sort_stats stres;
    uint64_t hres = run(sres, 50, labres, &neres);
    nk_sort_get_stats(sres, &stres);
    const double purres = purity(labres, NSPK / 2, major);
    report("sort_calib_reserve", hres, lr == NK_OK && stres.births >= 1 && purres > 0.9 &&
           major[2] == 202 && stres.unsorted_full < NSPK / 100);
    if (!(stres.births >= 1 && purres > 0.9 && major[2] == 202 && stres.unsorted_full < NSPK / 100))
        printf("  births %lld, purity %.3f, unsorted_full %lld, unit of neuron 2 %d\n", (long long)stres.births,
               purres, (long long)stres.unsorted_full, (int)major[2]);
    nk_sort_free(sres);

    /* robust amplitudes (template scaling, relative tolerance): ±30 % amplitude variation
     * stays one unit per neuron */
    make_data_mode(1);
    nk_sort_config rob = cfg;
    rob.relative_tolerance = 0.1f; rob.scale_range = 0.4f; rob.scale_prior = 10.0f;
    nk_sort *sr = NULL, *sp = NULL;
    nk_sort_new(&rob, nbrs, NULL, 0, &sr);
    nk_sort_new(&cfg, nbrs, NULL, 0, &sp);
    static int32_t labr[NSPK], labp[NSPK];
    int32_t ner = 0, nep = 0;
    nk_sort_stats str, stp;
    uint64_t hr = run(sr, 50, labr, &ner);
    run(sp, 50, labp, &nep);
    nk_sort_get_stats(sr, &str);
    nk_sort_get_stats(sp, &stp);
    double purr = purity(labr, 300, major);
    report("sort_amplitudes", hr, sr && sp && purr > 0.93 && str.live_units <= 4);
    if (!(purr > 0.93)) printf("  purity %.4f, births %lld vs %lld\n", purr,
                               (long long)str.births, (long long)stp.births);
    nk_sort_free(sp);

    /* the burst link on (a candidate that follows a unit's spikes closely may join it): the
     * same data keeps one unit per neuron */
    nk_sort_config bur = rob;
    bur.burst_samples = 600;
    nk_sort *sbu = NULL;
    nk_sort_new(&bur, nbrs, NULL, 0, &sbu);
    static int32_t labb[NSPK];
    int32_t nbu = 0;
    const uint64_t hb = sbu ? run(sbu, 50, labb, &nbu) : 0;
    report("sort_bursts", hb, sbu && purity(labb, 300, major) > 0.93);
    nk_sort_free(sbu);

    /* a step of the probe: the neurons keep their ids (successions, no new births) */
    make_data_mode(2);
    nk_sort_reset(sr);
    static int32_t lab7[NSPK];
    int32_t ne7 = 0;
    uint64_t h7 = run(sr, 50, lab7, &ne7);
    nk_sort_get_stats(sr, &str);
    int32_t before_step[3], after_step[3];
    double pa = purity(lab7, 300, before_step);
    /* majority labels after the step must be the ones before it */
    int32_t save[NSPK / 2];
    memcpy(save, truth, sizeof save);
    for (int i = 0; i < NSPK / 2; i++) truth[i] = -1;
    purity(lab7, NSPK / 2 + 300, after_step);
    memcpy(truth, save, sizeof save);
    report("sort_step", h7, pa > 0.8 && str.successions >= 2 && str.births == 3 &&
           after_step[0] == before_step[0] && after_step[1] == before_step[1] &&
           after_step[2] == before_step[2]);
    if (!(pa > 0.8 && str.successions >= 2 && str.births == 3))
        printf("  purity %.4f successions %lld births %lld\n", pa, (long long)str.successions,
               (long long)str.births);
    nk_sort_free(sr);

    /* motion: the footprints slide up by half a contact pitch (10 µm) over the run; loaded
     * with the true templates and the contact positions, the sorter's estimate follows (about
     * +10 µm at the end), and its moved templates fit the spikes closer (mean δ) than the
     * ones adaptation alone keeps; without positions there is no estimate */
    make_data_mode(3);
    float xy[C][2];
    for (int c = 0; c < C; c++) { xy[c][0] = 0.0f; xy[c][1] = 20.0f * (float)c; }
    nk_sort *sm = NULL, *sn = NULL;
    nk_sort_new(&cfg, nbrs, NULL, 0, &sm);
    nk_sort_new(&cfg, nbrs, NULL, 0, &sn);
    int ps = nk_sort_set_positions(sm, &xy[0][0], C, 1);
    int l1 = nk_sort_load_templates(sm, 3, ids, &tpl[0][0][0], C, L, NULL, 0);
    int l2 = nk_sort_load_templates(sn, 3, ids, &tpl[0][0][0], C, L, NULL, 0);
    static int32_t labm[NSPK], labn[NSPK];
    int32_t nem = 0, nen = 0;
    uint64_t hm = run(sm, 50, labm, &nem);
    run(sn, 50, labn, &nen);
    float um = 0.0f, um_off = 0.0f;
    int64_t votes = 0, votes_off = 0;
    nk_sort_get_motion(sm, &um, &votes);
    nk_sort_get_motion(sn, &um_off, &votes_off);
    /* the moved templates fit the drifting spikes closer than the ones adaptation alone keeps */
    nk_sort_fit fm[3], fn[3];
    int32_t nfm = 0, nfn = 0;
    nk_sort_get_fit(sm, fm, 3, &nfm);
    nk_sort_get_fit(sn, fn, 3, &nfn);
    float dm = 0.0f, dn = 0.0f;
    for (int u = 0; u < 3; u++) { dm += fm[u].mean_delta; dn += fn[u].mean_delta; }
    int32_t mj[3], mjn[3];
    const double pm = purity(labm, 2 * NSPK / 3, mj), pn = purity(labn, 2 * NSPK / 3, mjn);
    uint32_t umbits;
    memcpy(&umbits, &um, sizeof umbits);
    report("sort_motion", fnv(hm, &umbits, sizeof umbits),
           ps == NK_OK && l1 == NK_OK && l2 == NK_OK && um > 8.0f && um < 12.0f &&
           votes > NSPK / 2 && um_off == 0.0f && votes_off == 0 && pm >= pn && pm > 0.9 &&
           dm < dn &&
           nk_sort_set_positions(sm, &xy[0][0], C - 1, 1) == NK_ERR_ARG &&
           nk_sort_set_positions(sm, &xy[0][0], C, 2) == NK_ERR_ARG &&
           nk_sort_get_motion(sm, NULL, &votes) == NK_ERR_ARG);
    if (!(um > 8.0f && um < 12.0f && dm < dn && pm >= pn))
        printf("  motion %.2f µm (%lld votes), mean δ %.4f (without positions %.4f), last-third "
               "purity %.4f (%.4f)\n", (double)um, (long long)votes, (double)dm / 3,
               (double)dn / 3, pm, pn);
    nk_sort_free(sm);
    nk_sort_free(sn);
    return failures ? 1 : 0;
}
