/* libFuzzer: arbitrary bytes as the online sorter's settings, snippets (any float, NaN and
 * infinities included), event channels and thresholds, and templates to load must give labels
 * or a clean error — never a crash, an out-of-bounds access or undefined behaviour.
 * Input: [16 bytes of settings][then per spike: 1 byte channel, 1 byte threshold, K·L floats]
 * the last spike's bytes also serve as a template set for nk_sort_load_templates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nk_common.h"
#include "nk_sort.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 16) return 0;
    nk_sort_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_channels = 1 + data[0] % 8;
    cfg.n_neighbors = 1 + data[1] % (uint32_t)cfg.n_channels;
    cfg.n_samples = 2 + data[2] % 14;
    cfg.pre = data[3] % (uint32_t)cfg.n_samples;
    cfg.max_clusters = 1 + data[4] % 4;
    cfg.max_units = 1 + data[5] % 6;
    cfg.birth_spikes = 1 + data[6] % 4;
    cfg.adapt_spikes = 1 + data[7] % 8;
    cfg.detect_threshold = 1.0f + (float)(data[8] % 8);
    cfg.new_distance = 0.5f + (float)(data[9] % 8);
    cfg.merge_distance = (float)(data[10] % 4) * 0.5f;
    cfg.link_distance = (float)(data[10] / 64) * 0.5f;
    cfg.link_ratio = 0.25f + (float)(data[11] % 4) * 0.25f;
    cfg.label_distance = (float)(data[12] % 8);
    cfg.retire_samples = 1 + data[13] % 64;
    cfg.candidate_samples = 1 + data[14] % 32;
    cfg.relative_tolerance = (float)(data[15] % 4) * 0.1f;
    cfg.scale_range = (float)((data[15] / 4) % 4) * 0.2f;
    cfg.scale_prior = (float)(data[15] / 16);
    cfg.burst_samples = data[14] / 32;
    cfg.peel = (data[9] >> 3) % 3;                 /* off, peel, refit (nk_sort_peel.c) */
    cfg.peel_joint = (data[7] >> 4) & 1;           /* joint two-template fit (with peel) */
    cfg.late_labels = (data[8] >> 4) & 1;
    cfg.split = (data[6] >> 4) & 1;
    cfg.motion_anchor = (data[11] >> 2) % 3;       /* anchor (nk_sort_motion.c) */
    cfg.subtract = (data[10] >> 2) & 1;            /* neighbours (nk_sort_xsub.c) */
    cfg.merge_dims = (float)((data[12] >> 3) % 4) * 16.0f;   /* merges: 0 (K·M), 16, 32, 48 */
    cfg.link_dims = (float)((data[12] >> 5) % 4) * 16.0f;    /* links: the same */
    /* near-synchronous pairs (nk_sort_overlap.c): off, or a penalty of 0.5 … 32 σ² */
    cfg.overlap_penalty = ((data[5] >> 4) & 1) ? 0.5f + (float)(data[3] >> 3) : 0.0f;
    if ((data[4] >> 4) & 1) {                      /* twins (nk_sort_twin.c) */
        cfg.twin_lo = data[4] >> 5;
        cfg.twin_hi = cfg.twin_lo + 1 + (data[13] >> 6);
    }
    const int32_t C = cfg.n_channels, K = cfg.n_neighbors, L = cfg.n_samples;
    int32_t *nb = malloc(sizeof(int32_t) * (size_t)(C * K));
    for (int32_t c = 0; c < C; c++)
        for (int32_t p = 0; p < K; p++) nb[c * K + p] = p == 0 ? c : (c + p) % C;
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nb, NULL, 0, &s) != NK_OK || !s) { free(nb); return 0; }
    /* contact positions (the motion estimate; template moves on odd settings), any pitch */
    float *xy = malloc(sizeof(float) * (size_t)(2 * C));
    for (int32_t c = 0; c < C; c++) {
        xy[2 * c] = (float)(c % 2) * (float)(data[12] % 32);
        xy[2 * c + 1] = (float)c * (float)(data[13] % 48);
    }
    (void)nk_sort_set_positions(s, xy, C, data[11] & 1);
    free(xy);
    const size_t per = 2 + sizeof(float) * (size_t)(K * L);
    const int32_t n = (int32_t)((size - 16) / per);
    nk_event *ev = calloc((size_t)(n > 0 ? n : 1), sizeof(nk_event));
    float *wf = calloc((size_t)(n > 0 ? n : 1) * (size_t)(K * L), sizeof(float));
    for (int32_t i = 0; i < n; i++) {
        const uint8_t *d = data + 16 + (size_t)i * per;
        ev[i].sample = 100 * (int64_t)i;
        ev[i].channel = d[0] % (C + 1);             /* one past the end: a clean error */
        ev[i].threshold = (float)d[1] - 8.0f;       /* ≤ 0 included: a clean error */
        memcpy(wf + (size_t)i * (size_t)(K * L), d + 2, sizeof(float) * (size_t)(K * L));
    }
    int32_t cap = nk_sort_max_events(s, n), m = 0;
    nk_sort_event *out = calloc((size_t)cap + 1, sizeof(nk_sort_event));
    for (int32_t i = 0; i < n; i += 3) {
        const int32_t k = n - i < 3 ? n - i : 3;
        (void)nk_sort_process(s, ev + i, wf + (size_t)i * (size_t)(K * L), k,
                              ev[i + k - 1].sample + 1, out, cap, &m);
    }
    /* the snippet bytes as full-probe templates: refused whole or loaded */
    const int32_t units = (int32_t)((size_t)n * (size_t)(K * L) / (size_t)(C * L));
    if (units > 0) {
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)units);
        for (int32_t u = 0; u < units; u++) ids[u] = u * 3;
        (void)nk_sort_load_templates(s, units, ids, wf, C, L, NULL, 0);
        nk_sort_fit fit[8];
        int32_t nf = 0;
        (void)nk_sort_get_fit(s, fit, 8, &nf);
        float um;
        int64_t votes;
        (void)nk_sort_get_motion(s, &um, &votes);
        (void)nk_sort_get_motion_jumps(s, &votes);
        if (n > 0)
            (void)nk_sort_process(s, ev, wf, n < 3 ? n : 3, ev[0].sample + 1000, out, cap, &m);
        free(ids);
    }
    nk_sort_free(s);
    free(out); free(wf); free(ev); free(nb);
    return 0;
}
