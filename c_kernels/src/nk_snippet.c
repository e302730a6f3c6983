#include "nk_snippet.h"
#include "nk_common.h"

#include <stdlib.h>
#include <string.h>

struct nk_snippet {
    nk_snippet_config cfg;
    int32_t R;              /* ring rows */
    int64_t next_sample;
    int64_t stream_first;   /* absolute index of the first row ever seen, -1 before */
    int64_t dropped;
    int32_t head, count;    /* pending queue (circular) */
    int32_t *neighbors;     /* [C][K] */
    float *ring;            /* [R][C] */
    nk_event *pending;      /* [max_pending] */
};

int nk_snippet_new(const nk_snippet_config *cfg, const int32_t *neighbors, nk_snippet **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (!cfg || !neighbors) return NK_ERR_ARG;
    const int32_t C = cfg->n_channels, K = cfg->n_neighbors;
    if (C < 1 || C > (1 << 20) || K < 1 || K > C) return NK_ERR_ARG;
    if (cfg->pre < 0 || cfg->post < 1 || cfg->pre + cfg->post > 4096) return NK_ERR_ARG;
    if (cfg->max_block < 1 || cfg->max_block > (1 << 20)) return NK_ERR_ARG;
    if (cfg->max_pending < 1 || cfg->max_pending > (1 << 24)) return NK_ERR_ARG;
    for (int64_t i = 0; i < (int64_t)C * K; i++)
        if (neighbors[i] < -1 || neighbors[i] >= C) return NK_ERR_ARG;
    nk_snippet *s = calloc(1, sizeof *s);
    if (!s) return NK_ERR_NOMEM;
    s->cfg = *cfg;
    s->R = cfg->pre + cfg->post + cfg->max_block + 1;
    s->neighbors = malloc((size_t)C * (size_t)K * sizeof(int32_t));
    s->ring = calloc((size_t)s->R * (size_t)C, sizeof(float));
    s->pending = calloc((size_t)cfg->max_pending, sizeof(nk_event));
    if (!s->neighbors || !s->ring || !s->pending) { nk_snippet_free(s); return NK_ERR_NOMEM; }
    memcpy(s->neighbors, neighbors, (size_t)C * (size_t)K * sizeof(int32_t));
    nk_snippet_reset(s);
    *out = s;
    return NK_OK;
}

void nk_snippet_reset(nk_snippet *s) {
    if (!s) return;
    s->next_sample = 0;
    s->stream_first = -1;
    s->dropped = 0;
    s->head = s->count = 0;
}

int nk_snippet_process(nk_snippet *s, const float *data, int32_t n_samples, int64_t first_sample,
                       const nk_event *events, int32_t n_events, nk_event *out_events,
                       float *out_waveforms, int32_t capacity, int32_t *n_out) {
    if (!s || !data || !n_out || n_samples < 0 || n_events < 0) return NK_ERR_ARG;
    if (n_events > 0 && !events) return NK_ERR_ARG;
    if (!out_events || !out_waveforms) return NK_ERR_ARG;
    if (n_samples > s->cfg.max_block) return NK_ERR_ARG;
    if (capacity < s->cfg.max_pending) return NK_ERR_CAPACITY;
    if (first_sample < 0) return NK_ERR_ARG;
    if (s->stream_first >= 0 && first_sample != s->next_sample) return NK_ERR_STATE;
    const int32_t C = s->cfg.n_channels, K = s->cfg.n_neighbors, R = s->R;
    const int32_t pre = s->cfg.pre, L = s->cfg.pre + s->cfg.post;
    for (int32_t i = 0; i < n_samples; i++) {
        int64_t t = first_sample + i;
        memcpy(s->ring + (size_t)(t % R) * (size_t)C, data + (size_t)i * (size_t)C,
               (size_t)C * sizeof(float));
    }
    const int64_t end = first_sample + n_samples;     /* one past the newest row */
    const int64_t first_ever = s->stream_first >= 0 ? s->stream_first : first_sample;
    const int64_t oldest = end - R > first_ever ? end - R : first_ever; /* oldest valid row */
    for (int32_t e = 0; e < n_events; e++) {
        if (events[e].channel < 0 || events[e].channel >= C) return NK_ERR_ARG;
    }
    if (s->stream_first < 0) s->stream_first = first_sample;
    for (int32_t e = 0; e < n_events; e++) {
        if (s->count == s->cfg.max_pending || events[e].sample - pre < oldest) {
            s->dropped++;
            continue;
        }
        s->pending[(s->head + s->count) % s->cfg.max_pending] = events[e];
        s->count++;
    }
    int32_t k = 0;
    while (s->count > 0) {
        const nk_event *ev = &s->pending[s->head];
        if (ev->sample + s->cfg.post > end) break; /* not complete yet; later ones neither */
        if (ev->sample - pre < oldest) {
            s->dropped++;
        } else {
            float *w = out_waveforms + (size_t)k * (size_t)K * (size_t)L;
            const int32_t *nb = s->neighbors + (size_t)ev->channel * (size_t)K;
            for (int32_t j = 0; j < K; j++) {
                float *wj = w + (size_t)j * (size_t)L;
                if (nb[j] < 0) {
                    memset(wj, 0, (size_t)L * sizeof(float));
                    continue;
                }
                for (int32_t u = 0; u < L; u++) {
                    int64_t t = ev->sample - pre + u;
                    wj[u] = s->ring[(size_t)(t % R) * (size_t)C + (size_t)nb[j]];
                }
            }
            out_events[k++] = *ev;
        }
        s->head = (s->head + 1) % s->cfg.max_pending;
        s->count--;
    }
    s->next_sample = end;
    *n_out = k;
    return NK_OK;
}

int nk_snippet_resume(nk_snippet *s, int64_t resume_sample, const nk_event *events,
                      int32_t n_events) {
    if (!s || n_events < 0 || (n_events > 0 && !events) || resume_sample < 0) return NK_ERR_ARG;
    if (s->stream_first >= 0 && resume_sample < s->next_sample) return NK_ERR_ARG;
    s->dropped += s->count + n_events;
    s->head = s->count = 0;
    s->stream_first = resume_sample;    /* rows before it are not the same signal */
    s->next_sample = resume_sample;
    return NK_OK;
}

int64_t nk_snippet_dropped(const nk_snippet *s) { return s ? s->dropped : 0; }
int32_t nk_snippet_pending(const nk_snippet *s) { return s ? s->count : 0; }

void nk_snippet_free(nk_snippet *s) {
    if (!s) return;
    free(s->neighbors);
    free(s->ring);
    free(s->pending);
    free(s);
}
