/* nk_sort_testutil.h — the sorter configuration the C sorter tests start from. */
#ifndef NK_SORT_TESTUTIL_H
#define NK_SORT_TESTUTIL_H

#include <string.h>
#include "nk_sort.h"

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

#endif
