#include "nk_features.h"
#include "nk_common.h"
#include "nk_internal.h"

#include <stdlib.h>
#include <string.h>

struct nk_features {
    int32_t C, B, latency, P;  /* channels, bin length, event delay, pending slots */
    int64_t next_sample, late;
    int64_t *slot_bin;         /* [P], -1 = free */
    int32_t *slot_seen;        /* [P] */
    int32_t *counts;           /* [P][C] */
    float *power;              /* [P][C] sums of x² */
};

int nk_features_new(int32_t n_channels, int32_t bin_samples, int32_t latency,
                    nk_features **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (n_channels < 1 || n_channels > (1 << 20) || bin_samples < 1 || latency < 0) return NK_ERR_ARG;
    nk_features *f = calloc(1, sizeof *f);
    if (!f) return NK_ERR_NOMEM;
    f->C = n_channels;
    f->B = bin_samples;
    f->latency = latency;
    f->P = latency / bin_samples + 2;
    f->slot_bin = calloc((size_t)f->P, sizeof(int64_t));
    f->slot_seen = calloc((size_t)f->P, sizeof(int32_t));
    f->counts = calloc((size_t)f->P * (size_t)f->C, sizeof(int32_t));
    f->power = calloc((size_t)f->P * (size_t)f->C, sizeof(float));
    if (!f->slot_bin || !f->slot_seen || !f->counts || !f->power) {
        nk_features_free(f);
        return NK_ERR_NOMEM;
    }
    nk_features_reset(f);
    *out = f;
    return NK_OK;
}

void nk_features_reset(nk_features *f) {
    if (!f) return;
    f->next_sample = -1;
    f->late = 0;
    for (int32_t p = 0; p < f->P; p++) f->slot_bin[p] = -1;
}

int32_t nk_features_max_bins(const nk_features *f, int32_t n_samples) {
    if (!f || n_samples < 0) return 0;
    return n_samples / f->B + 1;
}

static void add_event(nk_features *f, const nk_event *e) {
    int64_t b = e->sample / f->B;
    int32_t p = (int32_t)(b % f->P);
    if (e->sample < 0 || f->slot_bin[p] != b || e->channel < 0 || e->channel >= f->C) {
        f->late++;
        return;
    }
    f->counts[(size_t)p * (size_t)f->C + (size_t)e->channel]++;
}

NK_HOT int nk_features_process(nk_features *f, const float *data, int32_t n_samples, int64_t first_sample,
                        const nk_event *events, int32_t n_events, int64_t *bin_index,
                        int32_t *bin_samples_seen, int32_t *counts, float *power, int32_t capacity,
                        int32_t *n_bins) {
    if (!f || !data || !bin_index || !bin_samples_seen || !counts || !power || !n_bins)
        return NK_ERR_ARG;
    if (n_samples < 0 || n_events < 0 || (n_events > 0 && !events) || first_sample < 0)
        return NK_ERR_ARG;
    if (f->next_sample >= 0 && first_sample != f->next_sample) return NK_ERR_STATE;
    if (capacity < nk_features_max_bins(f, n_samples)) return NK_ERR_CAPACITY;
    const int32_t C = f->C, B = f->B;
    int32_t ev = 0, nb = 0;
    for (int32_t i = 0; i < n_samples; i++) {
        const int64_t t = first_sample + i;
        const int64_t b = t / B;
        const int32_t p = (int32_t)(b % f->P);
        if (f->slot_bin[p] != b) {
            f->slot_bin[p] = b;
            f->slot_seen[p] = 0;
            memset(f->counts + (size_t)p * (size_t)C, 0, (size_t)C * sizeof(int32_t));
            memset(f->power + (size_t)p * (size_t)C, 0, (size_t)C * sizeof(float));
        }
        float *restrict pw = f->power + (size_t)p * (size_t)C;
        const float *restrict x = data + (size_t)i * (size_t)C;
        for (int32_t c = 0; c < C; c++) pw[c] += x[c] * x[c];
        f->slot_seen[p]++;
        /* every event with sample < frontier is known once sample t is processed */
        const int64_t frontier = t + 1 - f->latency;
        while (ev < n_events && events[ev].sample < frontier) add_event(f, &events[ev++]);
        if (frontier > 0 && frontier % B == 0) {
            const int64_t done = frontier / B - 1;
            const int32_t q = (int32_t)(done % f->P);
            if (f->slot_bin[q] == done) {
                bin_index[nb] = done;
                bin_samples_seen[nb] = f->slot_seen[q];
                memcpy(counts + (size_t)nb * (size_t)C, f->counts + (size_t)q * (size_t)C,
                       (size_t)C * sizeof(int32_t));
                const float inv = 1.0f / (float)f->slot_seen[q];
                for (int32_t c = 0; c < C; c++)
                    power[(size_t)nb * (size_t)C + (size_t)c] =
                        f->power[(size_t)q * (size_t)C + (size_t)c] * inv;
                f->slot_bin[q] = -1;
                nb++;
            }
        }
    }
    while (ev < n_events) add_event(f, &events[ev++]);
    f->next_sample = first_sample + n_samples;
    *n_bins = nb;
    return NK_OK;
}

int32_t nk_features_max_resume_bins(const nk_features *f) { return f ? f->P : 0; }

static void emit_slot(const nk_features *f, int32_t q, int32_t nb, int64_t *bin_index,
                      int32_t *bin_samples_seen, int32_t *counts, float *power) {
    const int32_t C = f->C;
    bin_index[nb] = f->slot_bin[q];
    bin_samples_seen[nb] = f->slot_seen[q];
    memcpy(counts + (size_t)nb * (size_t)C, f->counts + (size_t)q * (size_t)C,
           (size_t)C * sizeof(int32_t));
    const float inv = 1.0f / (float)f->slot_seen[q];
    for (int32_t c = 0; c < C; c++)
        power[(size_t)nb * (size_t)C + (size_t)c] = f->power[(size_t)q * (size_t)C + (size_t)c] * inv;
}

int nk_features_resume(nk_features *f, const nk_event *events, int32_t n_events,
                       int64_t resume_sample, int64_t *bin_index, int32_t *bin_samples_seen,
                       int32_t *counts, float *power, int32_t capacity, int32_t *n_bins) {
    if (!f || !bin_index || !bin_samples_seen || !counts || !power || !n_bins) return NK_ERR_ARG;
    if (n_events < 0 || (n_events > 0 && !events) || resume_sample < 0) return NK_ERR_ARG;
    if (f->next_sample >= 0 && resume_sample < f->next_sample) return NK_ERR_ARG;
    if (capacity < f->P) return NK_ERR_CAPACITY;
    for (int32_t e = 0; e < n_events; e++) add_event(f, &events[e]);
    int32_t nb = 0;
    for (;;) {               /* the oldest slot whose bin ended before resume_sample, in order */
        int32_t q = -1;
        for (int32_t p = 0; p < f->P; p++)
            if (f->slot_bin[p] >= 0 && (f->slot_bin[p] + 1) * (int64_t)f->B <= resume_sample &&
                (q < 0 || f->slot_bin[p] < f->slot_bin[q]))
                q = p;
        if (q < 0) break;
        emit_slot(f, q, nb++, bin_index, bin_samples_seen, counts, power);
        f->slot_bin[q] = -1;
    }
    if (f->next_sample >= 0) f->next_sample = resume_sample;
    *n_bins = nb;
    return NK_OK;
}

int64_t nk_features_late(const nk_features *f) { return f ? f->late : 0; }

void nk_features_free(nk_features *f) {
    if (!f) return;
    free(f->slot_bin);
    free(f->slot_seen);
    free(f->counts);
    free(f->power);
    free(f);
}
