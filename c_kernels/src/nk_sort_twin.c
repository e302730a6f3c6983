/* nk_sort_twin.c — twins: one neuron held by two units on one channel (see nk_sort.h,
 * twin_lo / twin_hi).
 *
 * A neuron's spikes are never closer than its refractory period, so two of its clusters on one
 * channel never take spikes twin_lo..twin_hi samples apart; two neurons firing independently do,
 * at the rate the other fires. Every cluster counts, per cluster slot of its channel, the spikes
 * it took while that slot was in use and how many of them came twin_lo..twin_hi samples after
 * the slot's newest spike. When a pair of units' clusters has none while chance predicts at least
 * TWIN_EXPECT (P ≤ e^−TWIN_EXPECT for independent Poisson neurons) and their templates have one
 * shape (correlation ≥ TWIN_CORR over the snippet's channels), the younger unit merges into the
 * older. The window starts past the detector's own refractory (inside it two neurons' spikes
 * on one channel are never both detected, so an empty window there proves nothing).
 *
 * Fixed memory: two int32 per pair of cluster slots of a channel (U² per channel). */
#include "nk_sort_internal.h"
#ifdef NK_TWIN_DEBUG
#include <stdio.h>
#endif

/* Slot i's counts start afresh (a new cluster, or a slot freed by a merge or a load). */
void nks_twin_reset(nk_sort *s, int32_t i) {
    if (!s->tw_n) return;
    const int32_t U = s->cfg.max_clusters, c0 = (i / U) * U;
    s->tw_last[i] = 0;
    s->tw_first[i] = 0;
    s->tw_seen[i] = 0;
    memset(s->tw_n + (size_t)i * (size_t)U, 0, (size_t)U * sizeof(int32_t));
    memset(s->tw_hit + (size_t)i * (size_t)U, 0, (size_t)U * sizeof(int32_t));
    for (int32_t u = 0; u < U; u++) {
        s->tw_n[(size_t)(c0 + u) * (size_t)U + (size_t)(i - c0)] = 0;
        s->tw_hit[(size_t)(c0 + u) * (size_t)U + (size_t)(i - c0)] = 0;
    }
}

/* The spike at `sample` got its label from cluster i (it took the spike, or it is the unit
 * cluster nearest to an outlier that carries its label). */
void nks_twin_observe(nk_sort *s, int32_t i, int64_t sample) {
    if (!s->tw_n) return;
    const int32_t U = s->cfg.max_clusters, c0 = (i / U) * U;
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c0 + u;
        if (j == i || s->cl[j].channel < 0 || s->tw_seen[j] == 0) continue;
        const size_t q = (size_t)i * (size_t)U + (size_t)u;
        if (s->tw_n[q] < INT32_MAX) s->tw_n[q]++;
        const int64_t d = sample - s->tw_last[j];
        if (d > s->cfg.twin_lo && d <= s->cfg.twin_hi && s->tw_hit[q] < INT32_MAX) s->tw_hit[q]++;
    }
    if (s->tw_seen[i]++ == 0) s->tw_first[i] = sample;
    if (sample > s->tw_last[i]) s->tw_last[i] = sample;
}

/* Labels per sample given through cluster i (0 with fewer than two). */
static float rate_of(const nk_sort *s, int32_t i) {
    if (s->tw_seen[i] < 2 || s->tw_last[i] <= s->tw_first[i]) return 0.0f;
    return (float)(s->tw_seen[i] - 1) / (float)(s->tw_last[i] - s->tw_first[i]);
}

/* Correlation of two clusters' templates over all their snippet channels (same channel), the
 * best over slides of up to TWIN_SLIDE samples. */
static float template_corr(const nk_sort *s, int32_t a, int32_t b) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    const float *ra = s->raw + (size_t)a * nks_KL(s), *rb = s->raw + (size_t)b * nks_KL(s);
    float best = -1.0f;
    for (int32_t sh = -TWIN_SLIDE; sh <= TWIN_SLIDE; sh++) {
        float ab = 0.0f, aa = 0.0f, bb = 0.0f;
        for (int32_t p = 0; p < K; p++)
            for (int32_t l = TWIN_SLIDE; l < L - TWIN_SLIDE; l++) {
                const float x = ra[p * L + l], y = rb[p * L + l + sh];
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
        const float c = (aa > 0.0f && bb > 0.0f) ? ab / sqrtf(aa * bb) : -1.0f;
        if (c > best) best = c;
    }
    return best;
}

/* Cluster i gives its unit more labels than any other cluster of the unit: the pair test on
 * its channel speaks for the whole unit (a unit's cluster on a neighbour of its peak channel
 * takes only the spikes detected there, a subset that need not look independent of another
 * neuron's: measured on si_static32 tune seed 1, two neighbours merged through one). */
static int main_cluster(const nk_sort *s, int32_t i) {
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters, unit = s->cl[i].unit;
    for (int32_t j = 0; j < N; j++)
        if (j != i && s->cl[j].channel >= 0 && s->cl[j].unit == unit
            && s->tw_seen[j] > s->tw_seen[i])
            return 0;
    return 1;
}

/* After unit cluster i took a spike: merge its unit with a twin's on its channel. */
void nks_twin_check(nk_sort *s, int32_t i, int64_t sample, sink *k) {
    if (!s->tw_n || s->cl[i].unit < 0 || s->cl[i].channel < 0) return;
    const int32_t U = s->cfg.max_clusters, c0 = (i / U) * U, ui = i - c0;
    const float w = (float)(s->cfg.twin_hi - s->cfg.twin_lo);
    const cluster *ci = &s->cl[i];
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c0 + u;
        const cluster *cj = &s->cl[j];
        if (j == i || cj->channel < 0 || cj->unit < 0 || cj->unit == ci->unit) continue;
        if (ci->given && cj->given) continue;
        if (nks_both_loaded(s, ci->unit, cj->unit)) continue;
        if (ci->sib == j && cj->sib == i) continue;   /* split apart */
        const size_t qij = (size_t)i * (size_t)U + (size_t)u;
        const size_t qji = (size_t)j * (size_t)U + (size_t)ui;
        const float expect = w * ((float)s->tw_n[qij] * rate_of(s, j)
                                  + (float)s->tw_n[qji] * rate_of(s, i));
#ifdef NK_TWIN_DEBUG
        if (s->tw_n[qij] % 25 == 0 && expect >= 1.0f)
            fprintf(stderr, "twin? ch %d units %d %d hits %d+%d expect %.2f corr %.3f n %d %d t %lld\n",
                    ci->channel, ci->unit, cj->unit, s->tw_hit[qij], s->tw_hit[qji], (double)expect,
                    (double)template_corr(s, i, j), s->tw_n[qij], s->tw_n[qji], (long long)sample);
#endif
        if (s->tw_hit[qij] + s->tw_hit[qji] > 0) continue;
        if (expect < TWIN_EXPECT) continue;
        if (template_corr(s, i, j) < TWIN_CORR) continue;
        if (!main_cluster(s, i) || !main_cluster(s, j)) continue;
        const int32_t keep = ci->unit < cj->unit ? ci->unit : cj->unit;
        const int32_t gone = ci->unit < cj->unit ? cj->unit : ci->unit;
#ifdef NK_TWIN_DEBUG
        fprintf(stderr, "twin! ch %d units %d <- %d expect %.2f corr %.3f t %lld\n", ci->channel,
                keep, gone, (double)expect, (double)template_corr(s, i, j), (long long)sample);
#endif
        s->st.twins++;
        nks_merge_units(s, keep, gone, ci->channel, sample, k);
        return;
    }
}
