#include "nk_detect.h"
#include "nk_common.h"
#include "nk_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAD_TO_SIGMA 1.4826022185056018f /* 1 / Φ⁻¹(3/4) */
/* The spatial refractory's ratio (decide): a spike under LOBE_RATIO × a neighbour's spike
 * accepted within the refractory period is taken for that spike's lobe. Was 1 (any smaller
 * spike); 0.6 of 1 / 0.8 / 0.7 / 0.6 / 0.5, tuned with bench.sorting_losses (ground-truth
 * templates) on the tune seeds: dense32 (0, 1, 5, 6, 7) pooled median 0.931 / 0.935 / 0.935 /
 * 0.935 / 0.934, noisy_bursts32 (0, 1) 0.956 → 0.960, si_static32 0.964 both; cold dense32 (0,
 * 1) 0.907 → 0.912. Plain detection (bench detection, "easy"): recall 0.962 → 0.967, the same
 * 19 false events. */
#define LOBE_RATIO 0.6f

struct nk_detect {
    nk_detect_config cfg;
    int32_t H;              /* ring rows = 2D + 1 */
    int64_t next_sample;    /* absolute index expected next */
    int64_t quiet_until;    /* no decision, no σ update before this sample (after a gap) */
    int64_t step_offset;    /* samples the σ estimate is worth before sample 0 (a seed) */
    int32_t warmup_end;     /* no decision before this sample: cfg.warmup, or a seed's */
    int32_t *adj_off, *adj_idx;
    float *ring;            /* [H][C] filtered values */
    float *med;             /* running median of |x| per channel */
    int64_t *last_spike;    /* per channel */
    float *last_score;      /* per channel: score of that spike */
};

int nk_detect_new(const nk_detect_config *cfg, const int32_t *adj_offsets,
                  const int32_t *adj_indices, nk_detect **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (!cfg) return NK_ERR_ARG;
    const int32_t C = cfg->n_channels;
    if (C < 1 || C > (1 << 20)) return NK_ERR_ARG;
    if (cfg->polarity < NK_POLARITY_NEG || cfg->polarity > NK_POLARITY_BOTH) return NK_ERR_ARG;
    if (!(cfg->threshold > 0) || !isfinite(cfg->threshold)) return NK_ERR_ARG;
    if (cfg->exclude_sweep < 0 || cfg->exclude_sweep > 4096) return NK_ERR_ARG;
    if (cfg->refractory < 0 || cfg->warmup < 0) return NK_ERR_ARG;
    if (!(cfg->eta_fast > 0 && cfg->eta_fast < 0.5f)) return NK_ERR_ARG;
    if (!(cfg->eta_slow > 0 && cfg->eta_slow < 0.5f)) return NK_ERR_ARG;
    if ((adj_offsets == NULL) != (adj_indices == NULL)) return NK_ERR_ARG;
    int32_t n_adj = 0;
    if (adj_offsets) {
        if (adj_offsets[0] != 0) return NK_ERR_ARG;
        for (int32_t c = 0; c < C; c++)
            if (adj_offsets[c + 1] < adj_offsets[c]) return NK_ERR_ARG;
        n_adj = adj_offsets[C];
        for (int32_t i = 0; i < n_adj; i++)
            if (adj_indices[i] < 0 || adj_indices[i] >= C) return NK_ERR_ARG;
    }
    nk_detect *d = calloc(1, sizeof *d);
    if (!d) return NK_ERR_NOMEM;
    d->cfg = *cfg;
    d->H = 2 * cfg->exclude_sweep + 1;
    d->adj_off = calloc((size_t)C + 1, sizeof(int32_t));
    d->adj_idx = calloc((size_t)(n_adj > 0 ? n_adj : 1), sizeof(int32_t));
    d->ring = calloc((size_t)d->H * (size_t)C, sizeof(float));
    d->med = calloc((size_t)C, sizeof(float));
    d->last_spike = calloc((size_t)C, sizeof(int64_t));
    d->last_score = calloc((size_t)C, sizeof(float));
    if (!d->adj_off || !d->adj_idx || !d->ring || !d->med || !d->last_spike || !d->last_score) {
        nk_detect_free(d);
        return NK_ERR_NOMEM;
    }
    if (adj_offsets) {
        memcpy(d->adj_off, adj_offsets, ((size_t)C + 1) * sizeof(int32_t));
        memcpy(d->adj_idx, adj_indices, (size_t)n_adj * sizeof(int32_t));
    }
    nk_detect_reset(d);
    *out = d;
    return NK_OK;
}

void nk_detect_reset(nk_detect *d) {
    if (!d) return;
    const int32_t C = d->cfg.n_channels;
    d->next_sample = 0;
    d->quiet_until = 0;
    d->step_offset = 0;
    d->warmup_end = d->cfg.warmup;
    memset(d->ring, 0, (size_t)d->H * (size_t)C * sizeof(float));
    for (int32_t c = 0; c < C; c++) {
        d->med[c] = 1.0f;
        d->last_spike[c] = INT64_MIN / 2;
        d->last_score[c] = 0.0f;
    }
}

int32_t nk_detect_max_events(const nk_detect *d, int32_t n_samples) {
    if (!d || n_samples < 0) return 0;
    /* Local exclusivity allows at most one spike per channel per D+1 samples. */
    int64_t per = (int64_t)d->cfg.exclude_sweep + 1;
    int64_t n = ((int64_t)n_samples / per + 1) * d->cfg.n_channels;
    return n > INT32_MAX ? INT32_MAX : (int32_t)n;
}

int32_t nk_detect_latency(const nk_detect *d) { return d ? d->cfg.exclude_sweep : 0; }

static inline float score_of(int32_t polarity, float v) {
    return polarity == NK_POLARITY_NEG ? -v : (polarity == NK_POLARITY_POS ? v : fabsf(v));
}

/* Is (score s at time t on channel c) the largest key among the samples of channel n in the
 * ring? Keys compare (score, -time, -channel). */
static inline int beats_channel(const nk_detect *d, float s, int64_t t, int32_t c, int32_t n,
                                int64_t t_newest) {
    const int32_t C = d->cfg.n_channels, H = d->H, pol = d->cfg.polarity;
    for (int32_t k = 0; k < H; k++) {
        int64_t tk = t_newest - k;
        if (tk == t && n == c) continue;
        float v = score_of(pol, d->ring[(size_t)(tk % H) * (size_t)C + (size_t)n]);
        if (v > s) return 0;
        if (v == s && (tk < t || (tk == t && n < c))) return 0;
    }
    return 1;
}

/* Decides sample tc = t − D (the ring holds rows up to t); appends accepted spikes. */
static inline void decide(nk_detect *d, int64_t t, nk_event *events, int32_t *n_events) {
    const int32_t C = d->cfg.n_channels, H = d->H, D = d->cfg.exclude_sweep;
    const int32_t pol = d->cfg.polarity;
    const float k_sigma = d->cfg.threshold * MAD_TO_SIGMA;
    const float *restrict med = d->med;
    const int64_t tc = t - D; /* the sample decided now */
    if (tc < d->warmup_end || tc - D < 0 || tc < d->quiet_until) return;
    const float *restrict crow = d->ring + (size_t)(tc % H) * (size_t)C;
    /* Most rows hold no candidate: a branch-free pass (vectorised) finds out first. */
    int any = 0;
    if (pol == NK_POLARITY_NEG) {
        for (int32_t c = 0; c < C; c++) any |= -crow[c] >= k_sigma * med[c];
    } else if (pol == NK_POLARITY_POS) {
        for (int32_t c = 0; c < C; c++) any |= crow[c] >= k_sigma * med[c];
    } else {
        for (int32_t c = 0; c < C; c++) any |= fabsf(crow[c]) >= k_sigma * med[c];
    }
    if (!any) return;
    int32_t ne = *n_events;
    for (int32_t c = 0; c < C; c++) {
        const float s = score_of(pol, crow[c]);
        const float thr = k_sigma * med[c];
        if (!(s >= thr)) continue;
        if (tc - d->last_spike[c] < d->cfg.refractory) continue;
        if (!beats_channel(d, s, tc, c, c, t)) continue;
        int ok = 1;
        for (int32_t j = d->adj_off[c]; ok && j < d->adj_off[c + 1]; j++)
            ok = beats_channel(d, s, tc, c, d->adj_idx[j], t);
        /* spatial refractory: a spike accepted on a neighbour within the refractory period
         * explains this one when this one is under LOBE_RATIO of it (the ringing lobe a
         * causal high-pass leaves is a fraction of the spike; another neuron's spike need not
         * be).
         * Measured while sorting dense32 (bench.sorting_losses, ground-truth templates, tune
         * seeds 0–1; 211 spikes lost under a neighbour's): 6 in 10 lie within 12 samples of a
         * neighbour neuron's larger spike, mostly 40–100 µm away (the exclusion above), 3 in 10
         * follow one by 12–27 samples (this rule). Neighbours compared within ±6 samples only,
         * then this rule off too, recover 48 / 95 of them, but the sorter takes or leaves most
         * of their snippets (the other spike overlaps them): median 0.930 → 0.934 / 0.929. */
        for (int32_t j = d->adj_off[c]; ok && j < d->adj_off[c + 1]; j++) {
            const int32_t n = d->adj_idx[j];
            ok = !(tc - d->last_spike[n] < d->cfg.refractory &&
                   d->last_score[n] * LOBE_RATIO > s);
        }
        if (!ok) continue;
        d->last_spike[c] = tc;
        d->last_score[c] = s;
        nk_event *e = &events[ne++];
        e->sample = tc;
        e->channel = c;
        e->unit = -1;
        e->amplitude = crow[c];
        e->threshold = thr;
    }
    *n_events = ne;
}

NK_HOT int nk_detect_process(nk_detect *d, const float *data, int32_t n_samples, int64_t first_sample,
                      nk_event *events, int32_t capacity, int32_t *n_events) {
    if (!d || !data || !events || !n_events || n_samples < 0) return NK_ERR_ARG;
    if (first_sample != d->next_sample) return NK_ERR_STATE;
    if (capacity < nk_detect_max_events(d, n_samples)) return NK_ERR_CAPACITY;
    const int32_t C = d->cfg.n_channels, H = d->H;
    int32_t ne = 0;
    for (int32_t i = 0; i < n_samples; i++) {
        const int64_t t = first_sample + i;
        const float *restrict x = data + (size_t)i * (size_t)C;
        float *restrict row = d->ring + (size_t)(t % H) * (size_t)C;
        memcpy(row, x, (size_t)C * sizeof(float));
        if (t >= d->quiet_until) {
            /* Robbins–Monro step: η_fast at first, decaying as 2/t, never below η_slow. */
            const float tt = (float)(t + d->step_offset);
            float eta = d->cfg.eta_fast / (1.0f + tt * d->cfg.eta_fast * 0.5f);
            if (eta < d->cfg.eta_slow) eta = d->cfg.eta_slow;
            const float up = 1.0f + eta, down = 1.0f - eta;
            float *restrict med = d->med;
            for (int32_t c = 0; c < C; c++) {
                const float m = med[c];
                med[c] = m * ((fabsf(x[c]) > m) ? up : down);
            }
        }
        decide(d, t, events, &ne);
    }
    d->next_sample = first_sample + n_samples;
    *n_events = ne;
    return NK_OK;
}

int nk_detect_resume(nk_detect *d, int64_t resume_sample, int32_t hold_off, nk_event *events,
                     int32_t capacity, int32_t *n_events) {
    if (!d || !events || !n_events || hold_off < 0) return NK_ERR_ARG;
    if (resume_sample < d->next_sample) return NK_ERR_ARG;
    const int32_t C = d->cfg.n_channels, H = d->H, D = d->cfg.exclude_sweep;
    if (capacity < nk_detect_max_events(d, D)) return NK_ERR_CAPACITY;
    int32_t ne = 0;
    /* the samples after the gap do not exist: NaN rows compete with nothing, pass nothing */
    for (int32_t i = 0; i < D; i++) {
        const int64_t t = d->next_sample + i;
        float *row = d->ring + (size_t)(t % H) * (size_t)C;
        for (int32_t c = 0; c < C; c++) row[c] = NAN;
        decide(d, t, events, &ne);
    }
    d->next_sample = resume_sample;
    d->quiet_until = resume_sample + (hold_off > D ? hold_off : D);
    *n_events = ne;
    return NK_OK;
}

int nk_detect_noise(const nk_detect *d, float *sigma_out) {
    if (!d || !sigma_out) return NK_ERR_ARG;
    for (int32_t c = 0; c < d->cfg.n_channels; c++) sigma_out[c] = d->med[c] * MAD_TO_SIGMA;
    return NK_OK;
}

int nk_detect_set_noise(nk_detect *d, const float *sigma) {
    if (!d || !sigma) return NK_ERR_ARG;
    for (int32_t c = 0; c < d->cfg.n_channels; c++)
        if (!(sigma[c] > 0) || !isfinite(sigma[c])) return NK_ERR_ARG;
    for (int32_t c = 0; c < d->cfg.n_channels; c++) d->med[c] = sigma[c] / MAD_TO_SIGMA;
    d->cfg.warmup = 0;
    d->warmup_end = 0;
    return NK_OK;
}

int nk_detect_seed_noise(nk_detect *d, const float *sigma, int32_t warmup,
                         int32_t prior_samples) {
    if (!d || !sigma || warmup < 0 || prior_samples < 0) return NK_ERR_ARG;
    if (d->next_sample != 0) return NK_ERR_STATE;
    for (int32_t c = 0; c < d->cfg.n_channels; c++)
        if (!(sigma[c] > 0) || !isfinite(sigma[c])) return NK_ERR_ARG;
    for (int32_t c = 0; c < d->cfg.n_channels; c++) d->med[c] = sigma[c] / MAD_TO_SIGMA;
    d->warmup_end = warmup;
    d->step_offset = prior_samples;
    return NK_OK;
}

int nk_detect_set_threshold(nk_detect *d, float k) {
    if (!d || !(k > 0) || !isfinite(k)) return NK_ERR_ARG;
    d->cfg.threshold = k;
    return NK_OK;
}

void nk_detect_free(nk_detect *d) {
    if (!d) return;
    free(d->adj_off);
    free(d->adj_idx);
    free(d->ring);
    free(d->med);
    free(d->last_spike);
    free(d->last_score);
    free(d);
}
