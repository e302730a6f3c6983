/* nk_sort_testutil.h — the sorter configuration the C sorter tests start from. */
#ifndef NK_SORT_TESTUTIL_H
#define NK_SORT_TESTUTIL_H

#include <string.h>
#include "nk_sort.h"
#include "nk_testutil.h"

/* C channels of K neighbours, L-sample snippets peaking at `pre`, 30 kHz time constants; every
 * other field (scale range, peel, split, …) 0: the tests set what they exercise. */
static inline nk_sort_config nk_test_sort_config(int32_t C, int32_t K, int32_t L, int32_t pre) {
    nk_sort_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_channels = C; cfg.n_neighbors = K; cfg.n_samples = L; cfg.pre = pre;
    cfg.max_clusters = 6; cfg.max_units = 16; cfg.birth_spikes = 10; cfg.adapt_spikes = 200;
    cfg.detect_threshold = 5.0f; cfg.new_distance = 3.0f; cfg.label_distance = 6.0f;
    cfg.merge_distance = 1.0f; cfg.link_distance = 0.5f; cfg.link_ratio = 0.7f;
    cfg.retire_samples = 30000 * 60; cfg.candidate_samples = 30000 * 5;
    return cfg;
}

/* The spike every sorter test draws (NK_TEST_L samples, trough at sample 10, a repolarising
 * lobe after it), scaled per channel by each test's footprint. */
#define NK_TEST_L 32
static const float nk_test_shape[NK_TEST_L] = {
    0, 0, 0, 0, 0, 0, 0, -0.05f, -0.2f, -0.6f, -1.0f, -0.7f, -0.3f, 0.0f, 0.2f, 0.3f, 0.32f, 0.3f,
    0.25f, 0.2f, 0.15f, 0.1f, 0.06f, 0.03f, 0.01f, 0, 0, 0, 0, 0, 0, 0};

/* Neighbours of C contacts in a line, 3 per channel: itself, the one below, the one above (−1
 * past the ends). nb: [C][3]. */
static inline void nk_test_line_neighbors(int32_t *nb, int32_t C) {
    for (int32_t c = 0; c < C; c++) {
        nb[c * 3] = c;
        nb[c * 3 + 1] = c > 0 ? c - 1 : -1;
        nb[c * 3 + 2] = c + 1 < C ? c + 1 : -1;
    }
}

/* A spike of per-channel amplitudes a[] peaking on contact pk, as the detector and the snippet
 * extractor hand it over: the event at `sample` (unit −7: not yet sorted) and its snippet
 * wav[K][L], the shape scaled by each neighbour's amplitude (nb: [C][K]) plus gauss_int(10)
 * noise per sample. */
static inline void nk_test_spike(nk_event *ev, float *wav, const float *a, int32_t pk,
                                 const int32_t *nb, int32_t K, const float *shape, int32_t L,
                                 int64_t sample, float threshold) {
    ev->sample = sample;
    ev->channel = pk;
    ev->unit = -7;
    ev->amplitude = a[pk];
    ev->threshold = threshold;
    for (int32_t p = 0; p < K; p++) {
        const int32_t c = nb[pk * K + p];
        for (int32_t l = 0; l < L; l++) wav[p * L + l] = a[c] * shape[l] + (float)gauss_int(10);
    }
}

/* Each neuron's most frequent label among n spikes (label[i] given to a spike of neuron who[i]):
 * best[u] for u < n_neurons, −1 for a neuron with no spike. */
static inline void nk_test_majority_labels(const int32_t *label, const int32_t *who, int32_t n,
                                           int32_t n_neurons, int32_t *best) {
    for (int32_t u = 0; u < n_neurons; u++) {
        int32_t top = 0;
        best[u] = -1;
        for (int32_t i = 0; i < n; i++) {
            if (who[i] != u) continue;
            int32_t c = 0;
            for (int32_t j = 0; j < n; j++) c += who[j] == u && label[j] == label[i];
            if (c > top) { top = c; best[u] = label[i]; }
        }
    }
}

#endif
