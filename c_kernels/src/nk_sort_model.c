/* nk_sort_model.c — distances between spikes and templates, and template upkeep (nk_sort.h). */
#include "nk_sort_internal.h"

void nks_project(const nk_sort *s, const float *x, float *out) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, D = s->D;
    for (int32_t p = 0; p < K; p++)
        for (int32_t d = 0; d < D; d++) {
            const float *b = s->basis + (size_t)d * (size_t)L;
            const float *xp = x + (size_t)p * (size_t)L;
            float acc = 0.0f;
            for (int32_t l = 0; l < L; l++) acc += b[l] * xp[l];
            out[p * D + d] = acc;
        }
}

float nks_sqdist(const float *a, const float *b, int32_t n) {
    float acc = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        acc += d * d;
    }
    return acc;
}

/* ‖x − a·t‖² with a = ⟨x,t⟩/⟨t,t⟩ clamped to [lo, hi] (lo = hi = 1: plain distance). */
float nks_scaled_dist(const float *x, const float *t, int32_t n, float lo, float hi,
                      float *a) {
    if (lo == 1.0f && hi == 1.0f) {
        *a = 1.0f;
        return nks_sqdist(x, t, n);
    }
    float xx = 0.0f, xt = 0.0f, tt = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        xx += x[i] * x[i];
        xt += x[i] * t[i];
        tt += t[i] * t[i];
    }
    float g = tt > 0.0f ? xt / tt : 1.0f;
    if (!(g >= lo)) g = lo;
    if (g > hi) g = hi;
    *a = g;
    const float r = xx - 2.0f * g * xt + g * g * tt;
    return r > 0.0f ? r : 0.0f;
}

/* δ of a spike (or template) x against a template t: min over the template's slide s and
 * scale a of (‖x − a·t(· + s)‖² + prior·(a − 1)²·den) / den. Without a basis t slides
 * by one sample either way (the detector's peak-alignment jitter) over the inner samples
 * l = 1 … L−2 of every slot; ties go to the earlier s of {0, −1, +1}. */
float nks_match(const nk_sort *s, const float *x, const float *t, float den, float prior,
                int32_t *shift) {
    *shift = 0;
    const float r = s->cfg.scale_range;
    const float lo = 1.0f - r, hi = 1.0f + r;
    float a;
    if (s->has_basis) {
        const float d = nks_scaled_dist(x, t, nks_dims(s), lo, hi, &a);
        return d / den + prior * (a - 1.0f) * (a - 1.0f);
    }
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    static const int32_t shifts[3] = {0, -1, 1};
    /* the three shifts' sums in one pass: each sum keeps its own order (so the result is the
     * same as one pass per shift, bit for bit), seven independent additions in flight */
    float xt[3] = {0.0f, 0.0f, 0.0f}, tts[3] = {0.0f, 0.0f, 0.0f}, xx = 0.0f;
    if (r != 0.0f) {
        float x0 = 0.0f, xm = 0.0f, xq = 0.0f, t0 = 0.0f, tm = 0.0f, tq = 0.0f;
        for (int32_t p = 0; p < K; p++) {
            const float *xp = x + (size_t)p * (size_t)L + 1;
            const float *tp = t + (size_t)p * (size_t)L + 1;
            for (int32_t l = 0; l < L - 2; l++) {
                const float v = xp[l];
                xx += v * v;
                x0 += v * tp[l];
                xm += v * tp[l - 1];
                xq += v * tp[l + 1];
                t0 += tp[l] * tp[l];
                tm += tp[l - 1] * tp[l - 1];
                tq += tp[l + 1] * tp[l + 1];
            }
        }
        xt[0] = x0; xt[1] = xm; xt[2] = xq;
        tts[0] = t0; tts[1] = tm; tts[2] = tq;
    }
    float best = 0.0f;
    for (int32_t k = 0; k < 3; k++) {
        const int32_t sh = shifts[k];
        float acc;
        if (r == 0.0f) {
            acc = 0.0f;
            for (int32_t p = 0; p < K; p++)
                acc += nks_sqdist(x + (size_t)p * (size_t)L + 1,
                              t + (size_t)p * (size_t)L + 1 + sh, L - 2);
            acc /= den;
        } else {
            const float tt = tts[k];
            float g = tt > 0.0f ? xt[k] / tt : 1.0f;
            if (!(g >= lo)) g = lo;
            if (g > hi) g = hi;
            float res = xx - 2.0f * g * xt[k] + g * g * tt;
            if (res < 0.0f) res = 0.0f;
            acc = res / den + prior * (g - 1.0f) * (g - 1.0f);
        }
        if (k == 0 || acc < best) { best = acc; *shift = sh; }
    }
    return best;
}

float nks_fit_scale(const nk_sort *s, float xt, float tt) {
    const float r = s->cfg.scale_range;
    float g = tt > 0.0f ? xt / tt : 1.0f;
    if (!(g >= 1.0f - r)) g = 1.0f - r;
    if (g > 1.0f + r) g = 1.0f + r;
    return g;
}

void nks_dot_at(const nk_sort *s, const float *x, const float *T, int32_t shift, float *xt,
                float *tt) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    float a = 0.0f, b = 0.0f;
    for (int32_t p = 0; p < K; p++)
        for (int32_t l = 0; l < L; l++) {
            const int32_t m = l + shift;
            if (m < 0 || m >= L) continue;
            a += x[p * L + l] * T[p * L + m];
            b += T[p * L + m] * T[p * L + m];
        }
    *xt = a;
    *tt = b;
}

/* Noise budget of a comparison over n_slots neighbour slots with a template of energy E:
 * σ²·n_slots·M plus the template's own variability ε²·E. */
float nks_budget(const nk_sort *s, float sig2, int32_t n_slots, float energy) {
    const float e = s->cfg.relative_tolerance;
    return sig2 * (float)(n_slots * s->M) + e * e * energy;
}

/* Recomputes cluster i's template energy over the compared samples. */
void nks_refresh(nk_sort *s, int32_t i) {
    const float *t = nks_feat_of(s, i);
    float e = 0.0f;
    if (s->has_basis) {
        for (int32_t q = 0; q < nks_dims(s); q++) e += t[q] * t[q];
    } else {
        const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
        for (int32_t p = 0; p < K; p++)
            for (int32_t l = 1; l < L - 1; l++) e += t[p * L + l] * t[p * L + l];
    }
    s->cl[i].energy = e;
}

/* dst[m] ← a·dst[m] + b·src[m + sh] where m + sh is inside the window (per neighbour slot). */
void nks_blend(const nk_sort *s, float *dst, const float *src, int32_t sh, float a, float b) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    for (int32_t p = 0; p < K; p++)
        for (int32_t m = 0; m < L; m++) {
            const int32_t q = m + sh;
            if (q >= 0 && q < L) dst[p * L + m] = a * dst[p * L + m] + b * src[p * L + q];
        }
}

int32_t nks_slot_of(const nk_sort *s, int32_t c, int32_t ch) {
    for (int32_t p = 0; p < s->cfg.n_neighbors; p++)
        if (s->nb[c * s->cfg.n_neighbors + p] == ch) return p;
    return -1;
}

float nks_amp(const float *w, int32_t L) {
    float m = 0.0f;
    for (int32_t l = 0; l < L; l++) {
        float a = w[l] < 0.0f ? -w[l] : w[l];
        if (a > m) m = a;
    }
    return m;
}

int32_t nks_argmax_abs(const float *w, int32_t L) {
    int32_t arg = 0;
    float m = -1.0f;
    for (int32_t l = 0; l < L; l++) {
        const float a = w[l] < 0.0f ? -w[l] : w[l];
        if (a > m) { m = a; arg = l; }
    }
    return arg;
}

/* Acceptance limit of a cluster on channel c: the mean δ of its members (≥ 1, inflated by
 * 1/n for the noise left in a young template) plus new_distance standard deviations of it. The
 * deviation is floored at twice that of white noise, √(8 / (K_c·M)), and capped at SD_MAX. */
float nks_limit_of(const nk_sort *s, const cluster *cj, int32_t c) {
    const float m = cj->spread < 1.0f ? 1.0f : (cj->spread > SPREAD_MAX ? SPREAD_MAX : cj->spread);
    const float var0 = 8.0f / (float)(s->kvalid[c] * s->M);
    float var = cj->spread2 - cj->spread * cj->spread;
    if (var < var0) var = var0;
    float sd = sqrtf(var);
    if (sd > SD_MAX) sd = SD_MAX;
    return m * (1.0f + 1.0f / (float)cj->count) + s->cfg.new_distance * sd;
}

/* The unit whose template's core — the peak channel, CORE_PRE samples before the peak to
 * CORE_POST after, ±1 sample — fits x within CORE_LIMIT (mean squared error in σ²), or −1.
 * Labels spikes whose snippet another spike overlaps away from the peak. */
int32_t nks_core_match(const nk_sort *s, const float *x, int32_t c, float inv_sig2) {
    const int32_t U = s->cfg.max_clusters, L = s->cfg.n_samples, pre = s->cfg.pre;
    const int32_t p = nks_slot_of(s, c, c);
    const int32_t a = pre - CORE_PRE < 1 ? 1 : pre - CORE_PRE;
    const int32_t b = pre + CORE_POST > L - 1 ? L - 1 : pre + CORE_POST;
    if (p < 0 || b <= a) return -1;
    const float *xp = x + (size_t)p * (size_t)L;
    float best = CORE_LIMIT * (float)(b - a);
    int32_t unit = -1;
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c * U + u;
        if (s->cl[j].channel < 0 || s->cl[j].unit < 0) continue;
        const float *t = s->raw + (size_t)j * nks_KL(s) + (size_t)p * (size_t)L;
        for (int32_t sh = -1; sh <= 1; sh++) {
            const float d = nks_sqdist(xp + a, t + a + sh, b - a) * inv_sig2;
            if (d <= best) { best = d; unit = s->cl[j].unit; }
        }
    }
    return unit;
}

/* Keeps a template's own-channel peak at `pre` (the detector's convention) so that re-aligned
 * updates cannot walk it along the window: slides it by one sample when the peak has moved. */
void nks_recentre(nk_sort *s, int32_t i) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, c = s->cl[i].channel;
    const int32_t p = nks_slot_of(s, c, c);
    if (p < 0) return;
    float *r = nks_raw(s, i);
    const int32_t d = nks_argmax_abs(r + (size_t)p * (size_t)L, L) - s->cfg.pre;
    if (d == 0) return;
    const int32_t sh = d > 0 ? 1 : -1;   /* new[m] = old[m + sh], edge sample kept */
    for (int32_t q = 0; q < K; q++) {
        float *w = r + (size_t)q * (size_t)L;
        if (sh > 0) for (int32_t m = 0; m + 1 < L; m++) w[m] = w[m + 1];
        else for (int32_t m = L - 1; m > 0; m--) w[m] = w[m - 1];
    }
    if (s->has_basis) nks_project(s, r, s->feat + (size_t)i * nks_KL(s));
}

/* Peak-channel waveform correlation of templates a (slot pa) and b (slot pb), best of
 * shifts {0, ±1} over the inner samples; amplitude ratio in *ratio. */
float nks_shape_corr(const nk_sort *s, const float *a, const float *b, float *ratio) {
    const int32_t L = s->cfg.n_samples;
    float best = -1.0f;
    for (int32_t sh = -1; sh <= 1; sh++) {
        float ab = 0.0f, aa = 0.0f, bb = 0.0f;
        for (int32_t l = 1; l < L - 1; l++) {
            ab += a[l] * b[l + sh];
            aa += a[l] * a[l];
            bb += b[l + sh] * b[l + sh];
        }
        const float c = (aa > 0.0f && bb > 0.0f) ? ab / sqrtf(aa * bb) : -1.0f;
        if (c > best) best = c;
    }
    const float am = nks_amp(b, L);
    *ratio = am > 0.0f ? nks_amp(a, L) / am : 0.0f;
    return best;
}
