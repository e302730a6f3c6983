/* test_frontend — runs every kernel on deterministic synthetic input and prints one line per
 * check: "<name> <fnv1a-64 of the output> ok". Run natively, under ASan/UBSan and under qemu
 * for other architectures; the Makefile diffs the outputs, so equal lines prove bit-identical
 * results. A failed known-answer check prints "FAIL" and exits non-zero. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nk_common.h"
#include "nk_detect.h"
#include "nk_features.h"
#include "nk_filter.h"
#include "nk_reference.h"
#include "nk_snippet.h"
#include "nk_testutil.h"

#define C 32
#define T 30000
#define FS 30000.0

static int16_t data[T * C];

static void make_data(void) {
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) data[t * C + c] = (int16_t)(gauss_int(20) + 100 + c);
    /* a spike every 15 ms on channel 5 (and smaller on its neighbours 4 and 6) */
    static const int16_t wave[12] = {0, -20, -80, -200, -300, -220, -100, 0, 60, 70, 40, 10};
    for (int t0 = 20000 % 450 + 3000; t0 + 12 < T; t0 += 450)
        for (int k = 0; k < 12; k++) {
            data[(t0 + k) * C + 5] = (int16_t)(data[(t0 + k) * C + 5] + wave[k]);
            data[(t0 + k) * C + 4] = (int16_t)(data[(t0 + k) * C + 4] + wave[k] / 2);
            data[(t0 + k) * C + 6] = (int16_t)(data[(t0 + k) * C + 6] + wave[k] / 3);
        }
}

static float filt[T * C];

int main(void) {
    make_data();
    report("input", fnv(FNV0, data, sizeof data), 1);

    /* --- design */
    double sos[6 * NK_FILTER_MAX_SECTIONS];
    int ns = nk_butter_sos(2, NK_BUTTER_BAND, 300.0, 6000.0, FS, sos, NK_FILTER_MAX_SECTIONS);
    float sosf[6 * NK_FILTER_MAX_SECTIONS];
    for (int i = 0; i < 6 * ns; i++) sosf[i] = (float)sos[i];
    report("butter_band2_f32", fnv(FNV0, sosf, sizeof(float) * 6 * (size_t)ns), ns == 2);
    int nl = nk_butter_sos(3, NK_BUTTER_LOW, 250.0, 0, FS, sos + 6 * ns, NK_FILTER_MAX_SECTIONS - ns);
    report("butter_low3_sections", (uint64_t)nl, nl == 2);
    report("butter_bad_args", 0, nk_butter_sos(2, NK_BUTTER_BAND, 6000, 300, FS, sos, 4) == NK_ERR_ARG);

    /* --- band-pass: DC must be rejected */
    nk_bandpass *bp = NULL;
    nk_bandpass_new(C, sos, ns, &bp);
    int st = nk_bandpass_process(bp, data, filt, T);
    double tail_mean = 0;
    for (int t = T - 3000; t < T; t++) tail_mean += filt[t * C + 0];
    tail_mean /= 3000;
    report("bandpass", fnv(FNV0, filt, sizeof filt), st == NK_OK && fabs(tail_mean) < 2.0);
    /* block-size invariance of the filter */
    nk_bandpass_reset(bp);
    static float filt2[T * C];
    for (int t = 0; t < T; t += 333) {
        int n = T - t < 333 ? T - t : 333;
        nk_bandpass_process(bp, data + t * C, filt2 + t * C, n);
    }
    report("bandpass_blocks", fnv(FNV0, filt2, sizeof filt2), memcmp(filt, filt2, sizeof filt) == 0);
    nk_bandpass_free(bp);

    /* --- LFP: low-pass + decimate by 30 */
    nk_lfp *lfp = NULL;
    nk_lfp_new(C, sos + 6 * ns, nl, 30, &lfp);
    static float lfp_out[(T / 30 + 1) * C];
    int32_t n_lfp = 0;
    st = nk_lfp_process(lfp, data, T, 0, lfp_out, T / 30 + 1, &n_lfp);
    report("lfp", fnv(FNV0, lfp_out, sizeof(float) * (size_t)n_lfp * C), st == NK_OK && n_lfp == T / 30);
    nk_lfp_free(lfp);

    /* --- reference: median of a known row */
    int32_t groups[C];
    for (int c = 0; c < C; c++) groups[c] = c < 16 ? 0 : 1;
    nk_reference *ref = NULL;
    nk_reference_new(C, groups, NK_REF_MEDIAN, &ref);
    float row[C];
    for (int c = 0; c < C; c++) row[c] = (float)((c * 7) % 16);  /* 0..15 per group: median 7.5 */
    nk_reference_process(ref, row, 1);
    report("cmr_known", 0, row[0] == -7.5f && row[16] == -7.5f);
    st = nk_reference_process(ref, filt, T);
    report("cmr", fnv(FNV0, filt, sizeof filt), st == NK_OK);
    nk_reference_free(ref);
    for (int c = 0; c < C; c++) groups[c] = 0;
    nk_reference_new(C, groups, NK_REF_AVERAGE, &ref);
    memcpy(filt2, filt, sizeof filt);
    nk_reference_process(ref, filt2, T);
    report("car", fnv(FNV0, filt2, sizeof filt2), 1);
    nk_reference_free(ref);
    {   /* robust: a common-mode signal of 3× the noise, geometric halves (odd/even channels),
         * processed whole and in blocks of 333: identical, and the common mode mostly gone */
        static float ya[T * C], yb[T * C];
        int32_t half[C];
        for (int c = 0; c < C; c++) half[c] = c % 2;
        for (int t = 0; t < T; t++) {
            const float cm = (float)gauss_int(60);
            for (int c = 0; c < C; c++) ya[t * C + c] = filt[t * C + c] + cm;
        }
        memcpy(yb, ya, sizeof ya);
        nk_reference *ra = NULL, *rb = NULL;
        int ok = nk_reference_new(C, groups, NK_REF_ROBUST, &ra) == NK_OK
                 && nk_reference_new(C, groups, NK_REF_ROBUST, &rb) == NK_OK
                 && nk_reference_set_robust(ra, half, 6000.0f) == NK_OK
                 && nk_reference_set_robust(rb, half, 6000.0f) == NK_OK
                 && nk_reference_process(ra, ya, T) == NK_OK;
        for (int t = 0; t < T && ok; t += 333)
            ok = nk_reference_process(rb, yb + t * C, T - t < 333 ? T - t : 333) == NK_OK;
        float share = -1.0f;
        ok = ok && nk_reference_get_share(ra, &share) == NK_OK && nk_reference_groups(ra) == 1;
        double e_in = 0, e_out = 0;   /* channel 20: far from the spikes */
        for (int t = T / 2; t < T; t++) {
            e_in += (double)ya[t * C + 20] * ya[t * C + 20];
            e_out += (double)filt[t * C + 20] * filt[t * C + 20];
        }
        report("cmr_robust", fnv(FNV0, ya, sizeof ya),
               ok && memcmp(ya, yb, sizeof ya) == 0 && share > 0.9f && share <= 1.0f
               && e_in < 1.5 * e_out);
        nk_reference *rm = NULL;
        nk_reference_new(C, groups, NK_REF_MEDIAN, &rm);
        half[3] = 2;
        report("cmr_robust_args", 0,
               nk_reference_set_robust(rm, NULL, 100.0f) == NK_ERR_ARG
               && nk_reference_set_robust(ra, NULL, 0.5f) == NK_ERR_ARG
               && nk_reference_set_robust(ra, half, 100.0f) == NK_ERR_ARG
               && nk_reference_set_robust(ra, NULL, 100.0f) == NK_OK
               && nk_reference_get_share(ra, NULL) == NK_ERR_ARG);
        nk_reference_free(ra); nk_reference_free(rb); nk_reference_free(rm);
    }

    /* --- detection on a linear probe: neighbours c±1, c±2 */
    int32_t off[C + 1], idx[C * 4];
    int k = 0;
    for (int c = 0; c < C; c++) {
        off[c] = k;
        for (int d = -2; d <= 2; d++)
            if (d != 0 && c + d >= 0 && c + d < C) idx[k++] = c + d;
    }
    off[C] = k;
    nk_detect_config dc = {C, NK_POLARITY_NEG, 5.0f, 6, 30, 3000, 0.1f, 2e-5f};
    nk_detect *det = NULL;
    nk_detect_new(&dc, off, idx, &det);
    int32_t cap = nk_detect_max_events(det, T);
    nk_event *ev = calloc((size_t)cap, sizeof *ev);
    int32_t nev = 0;
    st = nk_detect_process(det, filt, T, 0, ev, cap, &nev);
    int on5 = 0;
    for (int i = 0; i < nev; i++) on5 += ev[i].channel == 5;
    uint64_t h = FNV0;
    for (int i = 0; i < nev; i++) {
        h = fnv(h, &ev[i].sample, 8); h = fnv(h, &ev[i].channel, 4);
        h = fnv(h, &ev[i].amplitude, 4); h = fnv(h, &ev[i].threshold, 4);
    }
    int expected = 0;
    for (int t0 = 20000 % 450 + 3000; t0 + 12 < T; t0 += 450) expected += t0 + 6 > 3000 && t0 + 12 < T - 6;
    report("detect", h, st == NK_OK && on5 >= expected - 1 && nev <= on5 + 2);
    float sigma[C];
    nk_detect_noise(det, sigma);
    report("noise", fnv(FNV0, sigma, sizeof sigma), sigma[0] > 5 && sigma[0] < 40);
    /* block-size invariance of detection */
    nk_detect_reset(det);
    uint64_t h2 = FNV0;
    int32_t total = 0;
    for (int t = 0; t < T; t += 97) {
        int n = T - t < 97 ? T - t : 97;
        int32_t m = 0;
        nk_detect_process(det, filt + t * C, n, t, ev, cap, &m);
        for (int i = 0; i < m; i++) {
            h2 = fnv(h2, &ev[i].sample, 8); h2 = fnv(h2, &ev[i].channel, 4);
            h2 = fnv(h2, &ev[i].amplitude, 4); h2 = fnv(h2, &ev[i].threshold, 4);
        }
        total += m;
    }
    report("detect_blocks", h2, h2 == h && total == nev);

    /* seeded σ (nk_detect_seed_noise): decisions from sample 10 on with the given σ; reset
     * forgets the seed (the unseeded output again) */
    nk_detect_reset(det);
    int st_seed = nk_detect_seed_noise(det, sigma, 10, 3000);
    int32_t nseed = 0;
    st = nk_detect_process(det, filt, T, 0, ev, cap, &nseed);
    uint64_t h3 = FNV0;
    int early_thr_ok = nseed > 0;
    for (int i = 0; i < nseed; i++) {
        h3 = fnv(h3, &ev[i].sample, 8); h3 = fnv(h3, &ev[i].channel, 4);
        h3 = fnv(h3, &ev[i].amplitude, 4); h3 = fnv(h3, &ev[i].threshold, 4);
    }
    if (nseed > 0)   /* the first decision uses the seed, not an estimate from scratch */
        early_thr_ok = fabsf(ev[0].threshold - 5.0f * sigma[ev[0].channel]) < 0.1f * 5.0f * sigma[ev[0].channel];
    int late = nk_detect_seed_noise(det, sigma, 10, 3000) == NK_ERR_STATE;
    sigma[3] = 0.0f;
    nk_detect_reset(det);
    int bad = nk_detect_seed_noise(det, sigma, 10, 3000) == NK_ERR_ARG
              && nk_detect_seed_noise(det, NULL, 10, 3000) == NK_ERR_ARG;
    int32_t nre = 0;
    nk_detect_process(det, filt, T, 0, ev, cap, &nre);
    uint64_t h4 = FNV0;
    for (int i = 0; i < nre; i++) {
        h4 = fnv(h4, &ev[i].sample, 8); h4 = fnv(h4, &ev[i].channel, 4);
        h4 = fnv(h4, &ev[i].amplitude, 4); h4 = fnv(h4, &ev[i].threshold, 4);
    }
    report("detect_seeded", h3, st_seed == NK_OK && st == NK_OK && nseed >= nev && early_thr_ok
           && late && bad && h4 == h && nre == nev);

    /* --- snippets and features, block by block */
    nk_detect_reset(det);
    int32_t nbrs[C * 3];
    for (int c = 0; c < C; c++) {
        nbrs[c * 3] = c; nbrs[c * 3 + 1] = c > 0 ? c - 1 : -1; nbrs[c * 3 + 2] = c + 1 < C ? c + 1 : -1;
    }
    nk_snippet_config sc = {C, 16, 32, 3, 300, 256};
    nk_snippet *sn = NULL;
    nk_snippet_new(&sc, nbrs, &sn);
    nk_features *ft = NULL;
    nk_features_new(C, 600, nk_detect_latency(det), &ft);
    nk_event *sev = calloc(256, sizeof *sev);
    float *wav = calloc(256 * 3 * 48, sizeof *wav);
    int64_t bidx[8]; int32_t bseen[8]; int32_t bcnt[8 * C]; float bpow[8 * C];
    uint64_t hs = FNV0, hf = FNV0;
    int32_t n_snip = 0, n_bins = 0, count5 = 0;
    for (int t = 0; t < T; t += 300) {
        int32_t m = 0, ms = 0, mb = 0;
        nk_detect_process(det, filt + t * C, 300, t, ev, cap, &m);
        nk_snippet_process(sn, filt + t * C, 300, t, ev, m, sev, wav, 256, &ms);
        nk_features_process(ft, filt + t * C, 300, t, ev, m, bidx, bseen, bcnt, bpow, 8, &mb);
        hs = fnv(hs, wav, sizeof(float) * 3 * 48 * (size_t)ms);
        for (int i = 0; i < mb; i++) count5 += bcnt[i * C + 5];
        hf = fnv(hf, bcnt, sizeof(int32_t) * C * (size_t)mb);
        hf = fnv(hf, bpow, sizeof(float) * C * (size_t)mb);
        n_snip += ms; n_bins += mb;
    }
    report("snippets", hs, n_snip + (int)nk_snippet_dropped(sn) + nk_snippet_pending(sn) == nev);
    report("features", hf, n_bins == T / 600 - 1 && count5 >= on5 - 2 && nk_features_late(ft) == 0);
    nk_snippet_free(sn);
    nk_features_free(ft);
    nk_detect_free(det);
    free(ev); free(sev); free(wav);

    /* --- a gap: samples [G0, G1) never arrive. The band-pass restarts from its steady state
     * (the DC offset does not ring), the detector decides the edge with its window cut, holds σ
     * and stays quiet for HOLD samples; snippets never reach across; bins count what they saw. */
    {
        enum { G0 = 15100, G1 = 18100, HOLD = 100, B = 300 };
        nk_bandpass *bg = NULL;
        nk_detect *dg = NULL;
        nk_snippet *sg = NULL;
        nk_features *fg = NULL;
        nk_bandpass_new(C, sos, ns, &bg);
        nk_detect_new(&dc, off, idx, &dg);
        nk_snippet_new(&sc, nbrs, &sg);
        nk_features_new(C, 600, nk_detect_latency(dg), &fg);
        int32_t gcap = nk_detect_max_events(dg, B);
        nk_event *gev = calloc((size_t)gcap, sizeof *gev);
        nk_event *gsev = calloc(256, sizeof *gsev);
        float *gwav = calloc(256 * 3 * 48, sizeof *gwav);
        float *y = calloc((size_t)B * C, sizeof *y);
        uint64_t hg = FNV0;
        int quiet_ok = 1, invented = 0, settle_ok = 1, bins_ok = 1, edge_bins = 0;
        int64_t dropped_before = 0;
        for (int t = 0; t < T;) {
            int n = t < G0 && t + B > G0 ? G0 - t : (T - t < B ? T - t : B);
            if (t == G0) {                                   /* the gap */
                int32_t me = 0, mb = 0;
                st = nk_detect_resume(dg, G1, HOLD, gev, gcap, &me);
                dropped_before = nk_snippet_dropped(sg) + nk_snippet_pending(sg) + me;
                st |= nk_snippet_resume(sg, G1, gev, me);
                st |= nk_features_resume(fg, gev, me, G1, bidx, bseen, bcnt, bpow, 8, &mb);
                for (int i = 0; i < mb; i++)
                    bins_ok &= bidx[i] == G0 / 600 ? bseen[i] == G0 % 600 : bseen[i] == 600;
                edge_bins = mb;
                st |= nk_bandpass_settle(bg, data + (size_t)G1 * C);
                bins_ok &= st == NK_OK && nk_snippet_dropped(sg) == dropped_before;
                t = G1;
                continue;
            }
            int32_t m = 0, ms = 0, mb = 0;
            nk_bandpass_process(bg, data + (size_t)t * C, y, n);
            if (t == G1)
                for (int i = 0; i < 20 * C; i++) settle_ok &= fabsf(y[i]) < 80.0f;
            nk_detect_process(dg, y, n, t, gev, gcap, &m);
            nk_snippet_process(sg, y, n, t, gev, m, gsev, gwav, 256, &ms);
            nk_features_process(fg, y, n, t, gev, m, bidx, bseen, bcnt, bpow, 8, &mb);
            for (int i = 0; i < m; i++) {
                quiet_ok &= !(gev[i].sample >= G0 && gev[i].sample < G1 + HOLD);
                int near = 0;                 /* every spike is one of the injected ones */
                for (int t0 = 20000 % 450 + 3000; t0 + 12 < T; t0 += 450)
                    near |= gev[i].sample >= t0 && gev[i].sample <= t0 + 12;
                invented += !near || gev[i].channel < 3 || gev[i].channel > 7;
                hg = fnv(hg, &gev[i].sample, 8); hg = fnv(hg, &gev[i].amplitude, 4);
            }
            for (int i = 0; i < mb; i++) {
                const int64_t b0 = bidx[i] * 600, b1 = b0 + 600;
                bins_ok &= !(b0 >= G0 && b1 <= G1);           /* no bin inside the gap */
                if (b0 < G1 && b1 > G1) bins_ok &= bseen[i] == b1 - G1;
                hg = fnv(hg, bpow + (size_t)i * C, sizeof(float) * C);
            }
            hg = fnv(hg, gwav, sizeof(float) * 3 * 48 * (size_t)ms);
            t += n;
        }
        report("gap_resume", hg, quiet_ok && invented == 0 && settle_ok && bins_ok
                                     && edge_bins >= 1 && nk_features_late(fg) == 0);
        nk_bandpass_free(bg); nk_detect_free(dg); nk_snippet_free(sg); nk_features_free(fg);
        free(gev); free(gsev); free(gwav); free(y);
    }

    /* --- bad arguments are refused, never crash */
    nk_bandpass *bad_bp = NULL;
    nk_reference *bad_ref = NULL;
    nk_detect *bad_det = NULL;
    report("bad_new", 0, nk_bandpass_new(0, sos, 1, &bad_bp) == NK_ERR_ARG && bad_bp == NULL
                             && nk_reference_new(C, NULL, 0, &bad_ref) == NK_ERR_ARG
                             && nk_detect_new(NULL, NULL, NULL, &bad_det) == NK_ERR_ARG
                             && nk_detect_new(&dc, off, idx, NULL) == NK_ERR_ARG);
    report("status_str", 0, strcmp(nk_status_str(NK_ERR_CAPACITY), "output buffer too small") == 0);
    return failures ? 1 : 0;
}
