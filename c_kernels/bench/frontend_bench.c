/* frontend_bench — the hub front-end in C alone, for instruction counts under valgrind:
 *   valgrind --tool=callgrind --toggle-collect=run_frontend frontend_bench CHANNELS SAMPLES
 *            [1 | 0 (set up only)] [median | robust | none (the reference)]
 * Same chain and defaults as hub/pipeline.py: 1st-order 300–6000 Hz band-pass, global common
 * median reference, MAD noise + locally exclusive detection (5σ, ±0.4 ms, 1 ms refractory),
 * 48-sample snippets on 4 channels, 20 ms feature bins; 10 ms blocks at 30 kHz. The input is
 * integer noise (σ ≈ 23 counts) plus a common-mode random walk and a spike every ~3 ms. */
#include <stdio.h>
#include <stdlib.h>

#include "nk_detect.h"
#include "nk_features.h"
#include "nk_filter.h"
#include "nk_reference.h"
#include "nk_snippet.h"

#define FS 30000.0
#define BLOCK 300

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static int32_t noise16(void) {
    int32_t s = 0;
    for (int i = 0; i < 4; i++) {
        rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
        s += (int32_t)(((rng_state * 2685821657736338717ULL) >> 48) & 0xFFFF) - 32768;
    }
    return s / 1638; /* σ ≈ 23 counts */
}

/* The measured function: everything the hub runs per block. */
long run_frontend(int32_t C, int32_t T, const int16_t *x, float *y, nk_bandpass *bp,
                  nk_reference *ref, nk_detect *det, nk_snippet *sn, nk_features *ft,
                  nk_event *ev, int32_t cap, nk_event *sev, float *wf, int64_t *bi, int32_t *bs,
                  int32_t *bc, float *bpw);
long run_frontend(int32_t C, int32_t T, const int16_t *x, float *y, nk_bandpass *bp,
                  nk_reference *ref, nk_detect *det, nk_snippet *sn, nk_features *ft,
                  nk_event *ev, int32_t cap, nk_event *sev, float *wf, int64_t *bi, int32_t *bs,
                  int32_t *bc, float *bpw) {
    long total = 0;
    for (int32_t t = 0; t + BLOCK <= T; t += BLOCK) {
        int32_t ne = 0, ns = 0, nb = 0;
        nk_bandpass_process(bp, x + (size_t)t * C, y, BLOCK);
        nk_reference_process(ref, y, BLOCK);
        nk_detect_process(det, y, BLOCK, t, ev, cap, &ne);
        nk_snippet_process(sn, y, BLOCK, t, ev, ne, sev, wf, 4096, &ns);
        nk_features_process(ft, y, BLOCK, t, ev, ne, bi, bs, bc, bpw, 4, &nb);
        total += ne;
    }
    return total;
}

int main(int argc, char **argv) {
    const int32_t C = argc > 1 ? atoi(argv[1]) : 1024;
    const int32_t T = argc > 2 ? atoi(argv[2]) : 6000;
    int16_t *x = malloc(sizeof(int16_t) * (size_t)C * (size_t)T);
    int32_t common = 0; /* a common-mode random walk, as on real arrays */
    for (int32_t t = 0; t < T; t++) {
        common += noise16() / 10 - common / 300;
        for (int32_t c = 0; c < C; c++) x[(size_t)t * C + c] = (int16_t)(noise16() + common);
    }
    for (int32_t t = 700; t + 20 < T; t += 97) /* a spike every ~3 ms somewhere */
        for (int k = 0; k < 10; k++) x[(size_t)(t + k) * C + (size_t)((t * 7) % C)] -= (int16_t)(40 * (5 - abs(k - 5)));
    double sos[6 * NK_FILTER_MAX_SECTIONS];
    int ns = nk_butter_sos(1, NK_BUTTER_BAND, 300, 6000, FS, sos, NK_FILTER_MAX_SECTIONS);
    nk_bandpass *bp = NULL;
    nk_bandpass_new(C, sos, ns, &bp);
    int32_t *groups = calloc((size_t)C, sizeof(int32_t));
    nk_reference *ref = NULL;
    /* a fourth argument picks the reference: "median" (default), "robust" or "none" */
    const char *mode = argc > 4 ? argv[4] : "median";
    nk_reference_new(C, groups, mode[0] == 'r' ? NK_REF_ROBUST : NK_REF_MEDIAN, &ref);
    if (mode[0] == 'n') { for (int32_t c = 0; c < C; c++) groups[c] = -1;
                          nk_reference_free(ref); nk_reference_new(C, groups, NK_REF_MEDIAN, &ref); }
    int32_t *off = malloc(sizeof(int32_t) * ((size_t)C + 1)), *idx = malloc(sizeof(int32_t) * (size_t)C * 4);
    int32_t k = 0;
    for (int32_t c = 0; c < C; c++) { /* linear probe, neighbours within 2 contacts */
        off[c] = k;
        for (int d = -2; d <= 2; d++)
            if (d && c + d >= 0 && c + d < C) idx[k++] = c + d;
    }
    off[C] = k;
    nk_detect_config dc = {C, NK_POLARITY_NEG, 5.0f, 12, 30, 600, 0.1f, 1.0f / 60000.0f};
    nk_detect *det = NULL;
    nk_detect_new(&dc, off, idx, &det);
    int32_t *nb = malloc(sizeof(int32_t) * (size_t)C * 4);
    for (int32_t c = 0; c < C; c++)
        for (int j = 0; j < 4; j++) nb[c * 4 + j] = (c + j < C) ? c + j : -1;
    nk_snippet_config scfg = {C, 16, 32, 4, BLOCK, 4096};
    nk_snippet *sn = NULL;
    nk_snippet_new(&scfg, nb, &sn);
    nk_features *ft = NULL;
    nk_features_new(C, 600, nk_detect_latency(det), &ft);
    int32_t cap = nk_detect_max_events(det, BLOCK);
    nk_event *ev = malloc(sizeof(nk_event) * (size_t)cap), *sev = malloc(sizeof(nk_event) * 4096);
    float *y = malloc(sizeof(float) * (size_t)C * BLOCK), *wf = malloc(sizeof(float) * 4096 * 4 * 48);
    int64_t bi[4]; int32_t bs[4];
    int32_t *bc = malloc(sizeof(int32_t) * 4 * (size_t)C);
    float *bpw = malloc(sizeof(float) * 4 * (size_t)C);
    /* a third argument "0": set up only (the baseline an instruction count subtracts) */
    long n = argc > 3 && argv[3][0] == '0' ? 0
             : run_frontend(C, T, x, y, bp, ref, det, sn, ft, ev, cap, sev, wf, bi, bs, bc, bpw);
    float share = 0.0f;
    nk_reference_get_share(ref, &share);
    printf("channels %d samples %d events %ld share %.3f\n", C, T, n, (double)share);
    nk_bandpass_free(bp); nk_reference_free(ref); nk_detect_free(det); nk_snippet_free(sn);
    nk_features_free(ft);
    free(x); free(groups); free(off); free(idx); free(nb); free(ev); free(sev); free(y); free(wf);
    free(bc); free(bpw);
    return 0;
}
