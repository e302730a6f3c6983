#include "nk_sort.h"
#include "nk_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Updates between re-link checks of an established unit cluster; 0: never. Measured on dense
 * probes: re-linking established units chained distinct neurons into one, so it is off and
 * links happen only while a candidate grows. */
#define LINK_EVERY 0
#define LINK_FIRST 1        /* candidate spikes before it may join a unit on a neighbour */
#define SPREAD_MEMORY 64    /* spikes in the running mean of a cluster's δ */
#define SPREAD_PRIOR 16     /* pseudo-members at δ = 1 a cluster starts with */
#define FLT_BIG 3.0e38f
#define SPREAD_MAX 2.5f
#define CORE_PRE 4          /* core_match window around the peak, samples */
#define CORE_POST 8
#define CORE_LIMIT 3.0f
#define SD_MAX 0.6f         /* cap on a cluster's δ deviation in its acceptance limit */
/* Successor test (a unit that moved): a new unit's peak-channel waveform must correlate with
 * the silent unit's by at least SUCC_CORR, their peak amplitudes differ by at most a factor
 * SUCC_AMP, and the old unit must have been silent for SUCC_ISI of its mean intervals. */
#define SUCC_CORR 0.97f
#define SUCC_AMP 1.4f
#define SUCC_ISI 2
/* A candidate becomes a unit only when its template looks like a spike: after the peak, its
 * own-channel waveform swings to the other sign by at least LOBE_MIN of the peak (the
 * band-passed action potential's repolarisation). Slow one-signed waves that cross the
 * threshold (reference artefacts, low-frequency noise) never do. */
#define LOBE_MIN 0.1f
/* Merges charge a template scale MERGE_PRIOR × scale_prior. Measured on the tuning seeds: 0.25
 * folded bursts' split-off clusters back (noisy_bursts32 0.83 -> 0.89) but merged distinct
 * tetrode neurons (tetrode16 mean accuracy 0.83 -> 0.59), so merges charge it in full. */
#define MERGE_PRIOR 1.0f

typedef struct {
    int64_t last;           /* sample of the newest member */
    int64_t count;          /* members so far */
    int32_t channel;        /* −1: free slot */
    int32_t unit;           /* −1: candidate */
    int32_t since_link;
    int32_t given;          /* loaded from the host: never merged with another given unit */
    float spread;           /* running mean δ of members */
    float spread2;          /* running mean δ² of members */
    float sigma2;           /* running mean σ² of members (0: unknown yet) */
    float energy;           /* ‖template‖² over the compared samples (counts²) */
    float fit_sum;          /* loaded clusters: Σ δ of the spikes accepted since the load */
    int64_t fit_n;          /* … and their number */
    int64_t first;          /* sample of the first spike it accepted (with seen ≥ 1) */
    int64_t seen;           /* spikes it accepted (count also holds a loaded prior) */
} cluster;

struct nk_sort {
    nk_sort_config cfg;
    int32_t D;              /* features per neighbour slot (L without a basis) */
    int32_t has_basis;
    int32_t M;              /* per-slot dimensions a distance sums over (D, or L − 2 with shifts) */
    int32_t *nb;            /* [C][K] */
    int32_t *kvalid;        /* [C] valid neighbour slots */
    int32_t *scratch;       /* [C] */
    float *basis;           /* [L][L] capacity, [D][L] used */
    cluster *cl;            /* [C·U] */
    float *raw;             /* [C·U][K·L] templates in counts */
    float *feat;            /* [C·U][K·L] capacity, [K][D] used (with a basis) */
    float *f;               /* [K·L] scratch: features of the current spike */
    float *sig2c;           /* [C] σ² of the newest spike per channel (0: none yet) */
    int64_t *chan_spikes;   /* [C] spikes per channel since the last load or reset */
    int32_t *given_id;      /* [max_units] loaded unit ids in load order */
    int32_t *given_ch;      /* [max_units] their templates' peak channels */
    float *given_peak;      /* [max_units] and peak amplitudes (counts) */
    int32_t n_given;
    nk_sort_stats st;
};

static int config_ok(const nk_sort_config *c) {
    if (!c) return 0;
    if (c->n_channels < 1 || c->n_channels > (1 << 16)) return 0;
    if (c->n_neighbors < 1 || c->n_neighbors > c->n_channels || c->n_neighbors > 64) return 0;
    if (c->n_samples < 2 || c->n_samples > 512 || c->pre < 0 || c->pre >= c->n_samples) return 0;
    if (c->max_clusters < 1 || c->max_clusters > 64) return 0;
    if (c->max_units < 1 || c->max_units > (1 << 20)) return 0;
    if (c->birth_spikes < 1 || c->adapt_spikes < 1) return 0;
    if (!(c->detect_threshold > 0.0f) || !(c->new_distance > 0.0f)) return 0;
    if (!(c->label_distance >= 0.0f)) return 0;
    if (!(c->merge_distance >= 0.0f) || !(c->link_distance >= 0.0f)) return 0;
    if (!(c->link_ratio > 0.0f) || c->link_ratio > 1.0f) return 0;
    if (c->retire_samples < 1 || c->candidate_samples < 1) return 0;
    if (!(c->relative_tolerance >= 0.0f && c->relative_tolerance <= 1.0f)) return 0;
    if (!(c->scale_range >= 0.0f && c->scale_range < 1.0f)) return 0;
    if (!(c->scale_prior >= 0.0f && c->scale_prior < 1.0e6f)) return 0;
    return 1;
}

int64_t nk_sort_memory(const nk_sort_config *cfg) {
    if (!config_ok(cfg)) return 0;
    const int64_t C = cfg->n_channels, K = cfg->n_neighbors, L = cfg->n_samples;
    const int64_t N = C * cfg->max_clusters;
    return (int64_t)sizeof(nk_sort) + C * K * 4 + 2 * C * 4 + L * L * 4
           + N * (int64_t)sizeof(cluster) + 2 * N * K * L * 4 + K * L * 4 + C * 12
           + (int64_t)cfg->max_units * 12;
}

static int basis_ok(const float *basis, int32_t D, int32_t L) {
    if (D < 0 || D > L) return 0;
    if (D > 0 && !basis) return 0;
    for (int64_t i = 0; i < (int64_t)D * L; i++)
        if (!(basis[i] > -FLT_BIG && basis[i] < FLT_BIG)) return 0;
    return 1;
}

int nk_sort_new(const nk_sort_config *cfg, const int32_t *neighbors, const float *basis,
                int32_t n_features, nk_sort **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (!config_ok(cfg) || !neighbors) return NK_ERR_ARG;
    const int32_t C = cfg->n_channels, K = cfg->n_neighbors, L = cfg->n_samples;
    if (!basis_ok(basis, basis ? n_features : 0, L)) return NK_ERR_ARG;
    for (int64_t i = 0; i < (int64_t)C * K; i++)
        if (neighbors[i] < -1 || neighbors[i] >= C) return NK_ERR_ARG;
    nk_sort *s = calloc(1, sizeof *s);
    if (!s) return NK_ERR_NOMEM;
    s->cfg = *cfg;
    const size_t N = (size_t)C * (size_t)cfg->max_clusters, KL = (size_t)K * (size_t)L;
    s->nb = malloc((size_t)C * (size_t)K * sizeof(int32_t));
    s->kvalid = calloc((size_t)C, sizeof(int32_t));
    s->scratch = calloc((size_t)C, sizeof(int32_t));
    s->basis = calloc((size_t)L * (size_t)L, sizeof(float));
    s->cl = calloc(N, sizeof(cluster));
    s->raw = calloc(N * KL, sizeof(float));
    s->feat = calloc(N * KL, sizeof(float));
    s->f = calloc(KL, sizeof(float));
    s->sig2c = calloc((size_t)C, sizeof(float));
    s->chan_spikes = calloc((size_t)C, sizeof(int64_t));
    s->given_id = calloc((size_t)cfg->max_units, sizeof(int32_t));
    s->given_ch = calloc((size_t)cfg->max_units, sizeof(int32_t));
    s->given_peak = calloc((size_t)cfg->max_units, sizeof(float));
    if (!s->nb || !s->kvalid || !s->scratch || !s->basis || !s->cl || !s->raw || !s->feat
        || !s->f || !s->sig2c || !s->chan_spikes || !s->given_id || !s->given_ch || !s->given_peak) {
        nk_sort_free(s);
        return NK_ERR_NOMEM;
    }
    memcpy(s->nb, neighbors, (size_t)C * (size_t)K * sizeof(int32_t));
    for (int32_t c = 0; c < C; c++) {
        int32_t v = 0;
        for (int32_t p = 0; p < K; p++) v += s->nb[c * K + p] >= 0;
        s->kvalid[c] = v > 0 ? v : 1;
    }
    if (basis && n_features > 0) {
        memcpy(s->basis, basis, (size_t)n_features * (size_t)L * sizeof(float));
        s->has_basis = 1;
        s->D = n_features;
    } else {
        s->D = L;
    }
    s->M = s->has_basis ? s->D : L - 2;
    nk_sort_reset(s);
    *out = s;
    return NK_OK;
}

void nk_sort_reset(nk_sort *s) {
    if (!s) return;
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    for (int32_t i = 0; i < N; i++) {
        memset(&s->cl[i], 0, sizeof(cluster));
        s->cl[i].channel = -1;
        s->cl[i].unit = -1;
    }
    memset(&s->st, 0, sizeof s->st);
    s->st.n_features = s->D;
    s->n_given = 0;
    memset(s->sig2c, 0, (size_t)s->cfg.n_channels * sizeof(float));
    memset(s->chan_spikes, 0, (size_t)s->cfg.n_channels * sizeof(int64_t));
}

void nk_sort_free(nk_sort *s) {
    if (!s) return;
    free(s->nb); free(s->kvalid); free(s->scratch); free(s->basis);
    free(s->cl); free(s->raw); free(s->feat); free(s->f);
    free(s->sig2c); free(s->chan_spikes); free(s->given_id); free(s->given_ch); free(s->given_peak);
    free(s);
}

int32_t nk_sort_max_events(const nk_sort *s, int32_t n_spikes) {
    if (!s || n_spikes < 0) return 0;
    int64_t m = 3 * (int64_t)n_spikes + (int64_t)s->cfg.n_channels * s->cfg.max_clusters + 1;
    return m > INT32_MAX ? INT32_MAX : (int32_t)m;
}

/* ------------------------------------------------------------------ helpers */

static size_t KLsz(const nk_sort *s) { return (size_t)s->cfg.n_neighbors * (size_t)s->cfg.n_samples; }
static float *raw_of(nk_sort *s, int32_t i) { return s->raw + (size_t)i * KLsz(s); }
static const float *feat_of(const nk_sort *s, int32_t i) {
    return (s->has_basis ? s->feat : s->raw) + (size_t)i * KLsz(s);
}
static int32_t dims(const nk_sort *s) { return s->cfg.n_neighbors * s->D; }

static void project(const nk_sort *s, const float *x, float *out) {
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

static float sqdist(const float *a, const float *b, int32_t n) {
    float acc = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        acc += d * d;
    }
    return acc;
}

/* ‖x − a·t‖² with a = ⟨x,t⟩/⟨t,t⟩ clamped to [lo, hi] (lo = hi = 1: plain distance). */
static float scaled_dist(const float *x, const float *t, int32_t n, float lo, float hi,
                         float *a) {
    if (lo == 1.0f && hi == 1.0f) {
        *a = 1.0f;
        return sqdist(x, t, n);
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
static float match(const nk_sort *s, const float *x, const float *t, float den, float prior,
                   int32_t *shift) {
    *shift = 0;
    const float r = s->cfg.scale_range;
    const float lo = 1.0f - r, hi = 1.0f + r;
    float a;
    if (s->has_basis) {
        const float d = scaled_dist(x, t, dims(s), lo, hi, &a);
        return d / den + prior * (a - 1.0f) * (a - 1.0f);
    }
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    static const int32_t shifts[3] = {0, -1, 1};
    float best = 0.0f;
    for (int32_t k = 0; k < 3; k++) {
        const int32_t sh = shifts[k];
        float acc;
        if (r == 0.0f) {
            acc = 0.0f;
            for (int32_t p = 0; p < K; p++)
                acc += sqdist(x + (size_t)p * (size_t)L + 1,
                              t + (size_t)p * (size_t)L + 1 + sh, L - 2);
            acc /= den;
        } else {
            float xx = 0.0f, xt = 0.0f, tt = 0.0f;
            for (int32_t p = 0; p < K; p++) {
                const float *xp = x + (size_t)p * (size_t)L + 1;
                const float *tp = t + (size_t)p * (size_t)L + 1 + sh;
                for (int32_t l = 0; l < L - 2; l++) {
                    xx += xp[l] * xp[l];
                    xt += xp[l] * tp[l];
                    tt += tp[l] * tp[l];
                }
            }
            float g = tt > 0.0f ? xt / tt : 1.0f;
            if (!(g >= lo)) g = lo;
            if (g > hi) g = hi;
            float res = xx - 2.0f * g * xt + g * g * tt;
            if (res < 0.0f) res = 0.0f;
            acc = res / den + prior * (g - 1.0f) * (g - 1.0f);
        }
        if (k == 0 || acc < best) { best = acc; *shift = sh; }
    }
    return best;
}

/* Noise budget of a comparison over n_slots neighbour slots with a template of energy E:
 * σ²·n_slots·M plus the template's own variability ε²·E. */
static float budget(const nk_sort *s, float sig2, int32_t n_slots, float energy) {
    const float e = s->cfg.relative_tolerance;
    return sig2 * (float)(n_slots * s->M) + e * e * energy;
}

/* Recomputes cluster i's template energy over the compared samples. */
static void refresh(nk_sort *s, int32_t i) {
    const float *t = feat_of(s, i);
    float e = 0.0f;
    if (s->has_basis) {
        for (int32_t q = 0; q < dims(s); q++) e += t[q] * t[q];
    } else {
        const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
        for (int32_t p = 0; p < K; p++)
            for (int32_t l = 1; l < L - 1; l++) e += t[p * L + l] * t[p * L + l];
    }
    s->cl[i].energy = e;
}

/* dst[m] ← a·dst[m] + b·src[m + sh] where m + sh is inside the window (per neighbour slot). */
static void blend(const nk_sort *s, float *dst, const float *src, int32_t sh, float a, float b) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    for (int32_t p = 0; p < K; p++)
        for (int32_t m = 0; m < L; m++) {
            const int32_t q = m + sh;
            if (q >= 0 && q < L) dst[p * L + m] = a * dst[p * L + m] + b * src[p * L + q];
        }
}

static int32_t argmax_abs(const float *w, int32_t L);

static int32_t slot_of(const nk_sort *s, int32_t c, int32_t ch) {
    for (int32_t p = 0; p < s->cfg.n_neighbors; p++)
        if (s->nb[c * s->cfg.n_neighbors + p] == ch) return p;
    return -1;
}

static float amp(const float *w, int32_t L) {
    float m = 0.0f;
    for (int32_t l = 0; l < L; l++) {
        float a = w[l] < 0.0f ? -w[l] : w[l];
        if (a > m) m = a;
    }
    return m;
}

typedef struct {
    nk_sort_event *out;
    int32_t n, capacity;
} sink;

static void emit(sink *k, int32_t kind, int32_t unit, int32_t other, int32_t channel,
                 int64_t sample) {
    if (k->n >= k->capacity) return; /* cannot happen with capacity ≥ nk_sort_max_events */
    nk_sort_event *e = &k->out[k->n++];
    e->sample = sample; e->kind = kind; e->unit = unit; e->other = other; e->channel = channel;
}

/* Every cluster of `gone` now belongs to `keep`. */
static void merge_units(nk_sort *s, int32_t keep, int32_t gone, int32_t channel, int64_t sample,
                        sink *k) {
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    for (int32_t i = 0; i < N; i++)
        if (s->cl[i].channel >= 0 && s->cl[i].unit == gone) s->cl[i].unit = keep;
    s->st.live_units--;
    s->st.merges++;
    emit(k, NK_SORT_MERGE, keep, gone, channel, sample);
}

/* Absorbs cluster b into a (same channel; template a[m] ≈ template b[m + sh]); returns the
 * survivor's index. */
static int32_t merge_clusters(nk_sort *s, int32_t a, int32_t b, int32_t sh, int64_t sample,
                              sink *k) {
    cluster *A = &s->cl[a], *B = &s->cl[b];
    /* the survivor: a unit over a candidate, the older id over the younger, else more spikes */
    int swap = 0;
    if (A->unit < 0 && B->unit >= 0) swap = 1;
    else if (A->unit >= 0 && B->unit >= 0 && B->unit < A->unit) swap = 1;
    else if (A->unit < 0 && B->unit < 0 && B->count > A->count) swap = 1;
    if (swap) { int32_t t = a; a = b; b = t; A = &s->cl[a]; B = &s->cl[b]; sh = -sh; }
    const int64_t adapt = s->cfg.adapt_spikes;
    const float wa = (float)(A->count < adapt ? A->count : adapt);
    const float wb = (float)(B->count < adapt ? B->count : adapt);
    const float ua = wa / (wa + wb), ub = wb / (wa + wb);
    float *ra = raw_of(s, a), *rb = raw_of(s, b);
    const size_t KL = KLsz(s);
    blend(s, ra, rb, sh, ua, ub);
    if (s->has_basis) {
        float *fa = s->feat + (size_t)a * KL, *fb = s->feat + (size_t)b * KL;
        for (int32_t i = 0; i < dims(s); i++) fa[i] = ua * fa[i] + ub * fb[i];
    }
    A->spread = ua * A->spread + ub * B->spread;
    A->spread2 = ua * A->spread2 + ub * B->spread2;
    if (A->sigma2 <= 0.0f) A->sigma2 = B->sigma2;
    else if (B->sigma2 > 0.0f) A->sigma2 = ua * A->sigma2 + ub * B->sigma2;
    A->count += B->count;
    A->given |= B->given;
    A->fit_n += B->fit_n;
    A->fit_sum += B->fit_sum;
    refresh(s, a);
    if (B->last > A->last) A->last = B->last;
    if (B->seen > 0 && (A->seen == 0 || B->first < A->first)) A->first = B->first;
    A->seen += B->seen;
    const int32_t gone = B->unit;
    B->channel = -1;
    B->unit = -1;
    if (gone >= 0 && A->unit < 0) A->unit = gone;
    else if (gone >= 0 && gone != A->unit) merge_units(s, A->unit, gone, A->channel, sample, k);
    return a;
}

/* The unit of a cluster on a neighbouring channel that is the same neuron as cluster i, or −1. */
static int32_t find_link(const nk_sort *s, int32_t i) {
    const cluster *ci = &s->cl[i];
    if (ci->sigma2 <= 0.0f) return -1;
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, U = s->cfg.max_clusters;
    const int32_t D = s->D, c = ci->channel;
    const float ratio = s->cfg.link_ratio;
    const float *ri = s->raw + (size_t)i * KLsz(s), *fi = feat_of(s, i);
    const int32_t pc = slot_of(s, c, c);
    if (pc < 0) return -1;
    const float ai_c = amp(ri + (size_t)pc * (size_t)L, L);
    float best = 0.0f;
    int32_t best_unit = -1;
    for (int32_t p = 0; p < K; p++) {
        const int32_t b = s->nb[c * K + p];
        if (b < 0 || b == c) continue;
        const int32_t qc = slot_of(s, b, c), qb = slot_of(s, b, b);
        if (qc < 0 || qb < 0) continue;
        if (amp(ri + (size_t)p * (size_t)L, L) < ratio * ai_c) continue;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = b * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0 || cj->unit < 0 || cj->unit == ci->unit) continue;
            if (ci->given && cj->given) continue;
            const float *rj = s->raw + (size_t)j * KLsz(s), *fj = feat_of(s, j);
            if (amp(rj + (size_t)qc * (size_t)L, L) < ratio * amp(rj + (size_t)qb * (size_t)L, L))
                continue;
            /* shared channels, the template of j sliding by ≤ 1 sample without a basis */
            float acc = 0.0f;
            int32_t m = 0;
            for (int32_t k = 0; k < (s->has_basis ? 1 : 3); k++) {
                static const int32_t shifts[3] = {0, -1, 1};
                const int32_t sh = shifts[k];
                float a = 0.0f;
                m = 0;
                for (int32_t p2 = 0; p2 < K; p2++) {
                    const int32_t ch = s->nb[c * K + p2];
                    const int32_t q = ch < 0 ? -1 : slot_of(s, b, ch);
                    if (q < 0) continue;
                    if (s->has_basis)
                        a += sqdist(fi + (size_t)p2 * (size_t)D, fj + (size_t)q * (size_t)D, D);
                    else
                        a += sqdist(fi + (size_t)p2 * (size_t)L + 1,
                                    fj + (size_t)q * (size_t)L + 1 + sh, L - 2);
                    m++;
                }
                if (k == 0 || a < acc) acc = a;
            }
            const float limit = s->cfg.link_distance + 1.0f / (float)ci->count
                                + 1.0f / (float)cj->count;
            const float share = (float)m / (float)s->kvalid[c];
            const float score = acc / budget(s, ci->sigma2, m, share * ci->energy) / limit;
            if (score <= 1.0f && (best_unit < 0 || score < best)) {
                best = score;
                best_unit = cj->unit;
            }
        }
    }
    return best_unit;
}

/* Acceptance limit of a cluster on channel c: the mean δ of its members (≥ 1, inflated by
 * 1/n for the noise left in a young template) plus new_distance standard deviations of it. The
 * deviation is floored at twice that of white noise, √(8 / (K_c·M)), and capped at SD_MAX. */
static float limit_of(const nk_sort *s, const cluster *cj, int32_t c) {
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
static int32_t core_match(const nk_sort *s, const float *x, int32_t c, float inv_sig2) {
    const int32_t U = s->cfg.max_clusters, L = s->cfg.n_samples, pre = s->cfg.pre;
    const int32_t p = slot_of(s, c, c);
    const int32_t a = pre - CORE_PRE < 1 ? 1 : pre - CORE_PRE;
    const int32_t b = pre + CORE_POST > L - 1 ? L - 1 : pre + CORE_POST;
    if (p < 0 || b <= a) return -1;
    const float *xp = x + (size_t)p * (size_t)L;
    float best = CORE_LIMIT * (float)(b - a);
    int32_t unit = -1;
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c * U + u;
        if (s->cl[j].channel < 0 || s->cl[j].unit < 0) continue;
        const float *t = s->raw + (size_t)j * KLsz(s) + (size_t)p * (size_t)L;
        for (int32_t sh = -1; sh <= 1; sh++) {
            const float d = sqdist(xp + a, t + a + sh, b - a) * inv_sig2;
            if (d <= best) { best = d; unit = s->cl[j].unit; }
        }
    }
    return unit;
}

/* Keeps a template's own-channel peak at `pre` (the detector's convention) so that re-aligned
 * updates cannot walk it along the window: slides it by one sample when the peak has moved. */
static void recentre(nk_sort *s, int32_t i) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, c = s->cl[i].channel;
    const int32_t p = slot_of(s, c, c);
    if (p < 0) return;
    float *r = raw_of(s, i);
    const int32_t d = argmax_abs(r + (size_t)p * (size_t)L, L) - s->cfg.pre;
    if (d == 0) return;
    const int32_t sh = d > 0 ? 1 : -1;   /* new[m] = old[m + sh], edge sample kept */
    for (int32_t q = 0; q < K; q++) {
        float *w = r + (size_t)q * (size_t)L;
        if (sh > 0) for (int32_t m = 0; m + 1 < L; m++) w[m] = w[m + 1];
        else for (int32_t m = L - 1; m > 0; m--) w[m] = w[m - 1];
    }
    if (s->has_basis) project(s, r, s->feat + (size_t)i * KLsz(s));
}

/* Peak-channel waveform correlation of templates a (slot pa) and b (slot pb), best of
 * shifts {0, ±1} over the inner samples; amplitude ratio in *ratio. */
static float shape_corr(const nk_sort *s, const float *a, const float *b, float *ratio) {
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
    const float am = amp(b, L);
    *ratio = am > 0.0f ? amp(a, L) / am : 0.0f;
    return best;
}

/* Drift: the unit that candidate i (about to be born on channel c) continues, or −1. A unit
 * qualifies when one of its clusters sits on c or a neighbour of c, has accepted no spike
 * since the candidate's first one and has been silent for SUCC_ISI of its mean intervals
 * (the unit's other clusters may still take some), and its own-channel waveform has the
 * candidate's shape
 * (correlation ≥ SUCC_CORR) and size (within a factor SUCC_AMP): the neuron whose spikes
 * stopped fitting its templates when this one started — the probe moved. The best
 * correlation wins. */
static int32_t find_successor(const nk_sort *s, int32_t i) {
    const cluster *ci = &s->cl[i];
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, U = s->cfg.max_clusters;
    const int32_t c = ci->channel;
    const int32_t pc = slot_of(s, c, c);
    if (pc < 0) return -1;
    const float *wi = s->raw + (size_t)i * KLsz(s) + (size_t)pc * (size_t)L;
    float best = SUCC_CORR;
    int32_t best_unit = -1;
    for (int32_t p = 0; p < K; p++) {
        const int32_t b = s->nb[c * K + p];
        if (b < 0) continue;
        const int32_t pb = slot_of(s, b, b);
        if (pb < 0) continue;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = b * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0 || cj->unit < 0) continue;
            float ratio;
            const float *wj = s->raw + (size_t)j * KLsz(s) + (size_t)pb * (size_t)L;
            const float r = shape_corr(s, wi, wj, &ratio);
            if (r < best || ratio > SUCC_AMP || ratio * SUCC_AMP < 1.0f) continue;
            /* this cluster of the unit: silent since the candidate started, long enough */
            const int64_t last = cj->last, span = cj->last - cj->first, seen = cj->seen;
            if (last >= ci->first) continue;
            if (seen >= 2 && (ci->last - last) * (seen - 1) < (int64_t)SUCC_ISI * span) continue;
            best = r;
            best_unit = cj->unit;
        }
    }
    return best_unit;
}

/* See LOBE_MIN. */
static int spike_like(const nk_sort *s, int32_t i) {
    const int32_t L = s->cfg.n_samples, c = s->cl[i].channel;
    const int32_t p = slot_of(s, c, c);
    if (p < 0) return 1;
    const float *w = s->raw + (size_t)i * KLsz(s) + (size_t)p * (size_t)L;
    const int32_t pk = argmax_abs(w, L);
    const float sg = w[pk] < 0.0f ? -1.0f : 1.0f;
    float lobe = 0.0f;
    for (int32_t l = pk + 1; l < L; l++)
        if (-sg * w[l] > lobe) lobe = -sg * w[l];
    return lobe >= LOBE_MIN * sg * w[pk];
}

/* Same-channel merge, birth and link after cluster i took a spike; returns i's final index. */
static int32_t after_update(nk_sort *s, int32_t i, int64_t sample, sink *k) {
    const int32_t U = s->cfg.max_clusters, c = s->cl[i].channel;
    if (s->cl[i].sigma2 > 0.0f) {
        float best = 0.0f;
        int32_t bj = -1, bsh = 0;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = c * U + u;
            if (j == i || s->cl[j].channel < 0) continue;
            if (s->cl[i].given && s->cl[j].given && s->cl[i].unit != s->cl[j].unit) continue;
            int32_t sh;
            /* allowance for the noise left in templates of few spikes (at most 0.5) */
            float young = 1.0f / (float)s->cl[i].count + 1.0f / (float)s->cl[j].count;
            if (young > 0.5f) young = 0.5f;
            const float limit = s->cfg.merge_distance + young;
            const float e = s->cl[i].energy > s->cl[j].energy ? s->cl[i].energy : s->cl[j].energy;
            const float den = budget(s, s->cl[i].sigma2, s->kvalid[c], e);
            const float d = match(s, feat_of(s, i), feat_of(s, j), den,
                                  MERGE_PRIOR * s->cfg.scale_prior, &sh) / limit;
            if (d <= 1.0f && (bj < 0 || d < best)) { best = d; bj = j; bsh = sh; }
        }
        if (bj >= 0) i = merge_clusters(s, i, bj, bsh, sample, k);
    }
    cluster *ci = &s->cl[i];
    const int64_t try_link = s->cfg.birth_spikes < LINK_FIRST ? s->cfg.birth_spikes : LINK_FIRST;
    const int32_t u0 = ci->unit < 0 && ci->count >= try_link ? find_link(s, i) : -1;
    if (u0 >= 0) {
        ci->unit = u0;       /* a candidate next to a unit it belongs to joins it at once */
        ci->since_link = 0;
        s->st.links++;
    } else if (ci->unit < 0 && ci->count >= s->cfg.birth_spikes
               && (ci->unit = find_successor(s, i)) >= 0) {
        ci->since_link = 0;  /* a moved neuron keeps its id: no birth */
        s->st.links++;
        s->st.successions++;
    } else if (ci->unit < 0 && ci->count >= s->cfg.birth_spikes) {
        if (s->st.live_units < s->cfg.max_units && spike_like(s, i)) {
            ci->unit = s->st.next_unit++;
            s->st.live_units++;
            s->st.births++;
            emit(k, NK_SORT_BIRTH, ci->unit, -1, c, sample);
        }
        ci->since_link = 0;
    } else if (LINK_EVERY > 0 && ci->unit >= 0 && ++ci->since_link >= LINK_EVERY) {
        ci->since_link = 0;
        const int32_t u = find_link(s, i);
        if (u >= 0) {
            const int32_t keep = u < ci->unit ? u : ci->unit, gone = u < ci->unit ? ci->unit : u;
            s->st.links++;
            merge_units(s, keep, gone, c, sample, k);
        }
    }
    return i;
}

/* A slot on channel c for a new candidate: a free one, else the stalest candidate, else −1. */
static int32_t free_slot(const nk_sort *s, int32_t c) {
    const int32_t U = s->cfg.max_clusters;
    int32_t stale = -1;
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c * U + u;
        if (s->cl[j].channel < 0) return j;
        if (s->cl[j].unit < 0 && (stale < 0 || s->cl[j].last < s->cl[stale].last)) stale = j;
    }
    return stale;
}

static void retire(nk_sort *s, int64_t now, sink *k) {
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    for (int32_t i = 0; i < N; i++) {
        cluster *ci = &s->cl[i];
        if (ci->channel < 0) continue;
        const int64_t silent = now - ci->last;
        if (ci->unit < 0) {
            if (silent > s->cfg.candidate_samples) ci->channel = -1;
            continue;
        }
        if (silent <= s->cfg.retire_samples) continue;
        const int32_t unit = ci->unit, channel = ci->channel;
        ci->channel = -1;
        ci->unit = -1;
        int alive = 0;
        for (int32_t j = 0; j < N && !alive; j++)
            alive = s->cl[j].channel >= 0 && s->cl[j].unit == unit;
        if (!alive) {
            s->st.live_units--;
            s->st.retirements++;
            emit(k, NK_SORT_RETIRE, unit, -1, channel, now);
        }
    }
}

/* ------------------------------------------------------------------ process */

int nk_sort_process(nk_sort *s, nk_event *events, const float *waveforms, int32_t n,
                    int64_t now, nk_sort_event *out, int32_t capacity, int32_t *n_out) {
    if (!s || !n_out || n < 0 || (n > 0 && (!events || !waveforms)) || !out) return NK_ERR_ARG;
    if (capacity < nk_sort_max_events(s, n)) return NK_ERR_CAPACITY;
    const int32_t C = s->cfg.n_channels, U = s->cfg.max_clusters;
    for (int32_t e = 0; e < n; e++) {
        const float thr = events[e].threshold;
        if (events[e].channel < 0 || events[e].channel >= C) return NK_ERR_ARG;
        if (!(thr > 0.0f && thr < FLT_BIG)) return NK_ERR_ARG;
    }
    sink k = {out, 0, capacity};
    const size_t KL = KLsz(s);
    const float kthr = s->cfg.detect_threshold;
    for (int32_t e = 0; e < n; e++) {
        nk_event *ev = &events[e];
        const float *x = waveforms + (size_t)e * KL;
        const int32_t c = ev->channel;
        const float sig = ev->threshold / kthr, sig2 = sig * sig;
        s->st.spikes++;
        ev->unit = -1;
        const float *f = x;
        if (s->has_basis) {
            project(s, x, s->f);
            f = s->f;
        }
        float xe = 0.0f;
        for (size_t i = 0; i < KL; i++) xe += x[i] * x[i];
        if (!(xe < FLT_BIG)) continue; /* NaN / Inf snippet: left unsorted */
        s->sig2c[c] = sig2;
        s->chan_spikes[c]++;
        int32_t best = -1, best_shift = 0, near_unit = -1;
        float best_delta = 0.0f, near_score = 0.0f;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = c * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0) continue;
            int32_t sh;
            const float den = budget(s, sig2, s->kvalid[c], cj->energy);
            const float delta = match(s, f, feat_of(s, j), den, s->cfg.scale_prior, &sh);
            const float limit = limit_of(s, cj, c);
            const float score = delta / limit;   /* ≤ 1: acceptable */
            /* among the clusters that accept it, the nearest takes the spike */
            if (score <= 1.0f && (best < 0 || delta < best_delta)) {
                best = j; best_delta = delta; best_shift = sh;
            }
            if (cj->unit >= 0 && (near_unit < 0 || score < near_score)) {
                near_unit = cj->unit; near_score = score;
            }
        }
        int32_t i = best;
        if (i >= 0) {
            cluster *ci = &s->cl[i];
            ci->count++;
            if (ci->seen++ == 0) ci->first = ev->sample;
            const int64_t m = ci->count < s->cfg.adapt_spikes ? ci->count : s->cfg.adapt_spikes;
            const float w = 1.0f / (float)m;
            /* x[l] ≈ r[l + shift]: move r towards x re-aligned into r's frame */
            blend(s, raw_of(s, i), x, -best_shift, 1.0f - w, w);
            if (s->has_basis) {
                float *fi = s->feat + (size_t)i * KL;
                for (int32_t q = 0; q < dims(s); q++) fi[q] += w * (f[q] - fi[q]);
            }
            recentre(s, i);
            refresh(s, i);
            if (ci->given) { ci->fit_n++; ci->fit_sum += best_delta; }
            /* δ statistics start from a prior of SPREAD_PRIOR white-noise members, so that a
             * few early outliers cannot widen a young cluster's limit */
            const int64_t nw = ci->count + SPREAD_PRIOR;
            const float ws = 1.0f / (float)(nw < SPREAD_MEMORY ? nw : SPREAD_MEMORY);
            ci->spread += ws * (best_delta - ci->spread);
            ci->spread2 += ws * (best_delta * best_delta - ci->spread2);
            if (ci->sigma2 <= 0.0f) ci->sigma2 = sig2;
            else ci->sigma2 += ws * (sig2 - ci->sigma2);
            if (ev->sample > ci->last) ci->last = ev->sample;
        } else {
            i = free_slot(s, c);
            if (i < 0) {
                s->st.unsorted_full++;
                continue;
            }
            cluster *ci = &s->cl[i];
            ci->channel = c; ci->unit = -1; ci->count = 1; ci->last = ev->sample;
            ci->first = ev->sample; ci->seen = 1;
            ci->since_link = 0; ci->spread = 1.0f; ci->spread2 = 1.0f; ci->sigma2 = sig2;
            ci->given = 0; ci->fit_n = 0; ci->fit_sum = 0.0f;
            memcpy(raw_of(s, i), x, KL * sizeof(float));
            if (s->has_basis) memcpy(s->feat + (size_t)i * KL, f, (size_t)dims(s) * sizeof(float));
            refresh(s, i);
            s->st.candidates++;
        }
        i = after_update(s, i, ev->sample, &k);
        ev->unit = s->cl[i].unit;
        /* an outlier (overlap, candidate material) still carries the nearest unit's label
         * when it lies within label_distance of that unit's acceptance limit */
        if (ev->unit < 0 && near_unit >= 0 && near_score <= s->cfg.label_distance)
            ev->unit = near_unit;
        if (ev->unit < 0) ev->unit = core_match(s, x, c, 1.0f / sig2);
        s->st.labelled += ev->unit >= 0;
    }
    retire(s, now, &k);
    *n_out = k.n;
    return NK_OK;
}

/* ------------------------------------------------------------------ calibration */

static int32_t peak_channel(const float *T, int32_t C, int32_t L, float *peak) {
    int32_t h = -1;
    float best = 0.0f;
    for (int32_t c = 0; c < C; c++) {
        const float a = amp(T + (size_t)c * (size_t)L, L);
        if (a > best) { best = a; h = c; }
    }
    *peak = best;
    return h;
}

static int32_t argmax_abs(const float *w, int32_t L) {
    int32_t arg = 0;
    float m = -1.0f;
    for (int32_t l = 0; l < L; l++) {
        const float a = w[l] < 0.0f ? -w[l] : w[l];
        if (a > m) { m = a; arg = l; }
    }
    return arg;
}

static void place(nk_sort *s, const float *T, int32_t g, int32_t unit) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, U = s->cfg.max_clusters;
    int32_t i = -1;
    for (int32_t u = 0; u < U && i < 0; u++)
        if (s->cl[g * U + u].channel < 0) i = g * U + u;
    if (i < 0) return;
    const int32_t shift = argmax_abs(T + (size_t)g * (size_t)L, L) - s->cfg.pre;
    float *r = raw_of(s, i);
    for (int32_t p = 0; p < K; p++) {
        const int32_t ch = s->nb[g * K + p];
        for (int32_t l = 0; l < L; l++) {
            const int32_t t = l + shift;
            r[p * L + l] = (ch >= 0 && t >= 0 && t < L) ? T[(size_t)ch * (size_t)L + (size_t)t] : 0.0f;
        }
    }
    if (s->has_basis) project(s, r, s->feat + (size_t)i * KLsz(s));
    cluster *ci = &s->cl[i];
    ci->channel = g; ci->unit = unit; ci->count = s->cfg.adapt_spikes; ci->last = 0;
    ci->first = 0; ci->seen = 0;
    ci->since_link = 0; ci->spread = 1.0f; ci->spread2 = 1.0f; ci->sigma2 = 0.0f;
    ci->given = 1; ci->fit_n = 0; ci->fit_sum = 0.0f;
    refresh(s, i);
}

int nk_sort_set_detect_threshold(nk_sort *s, float k) {
    if (!s || !(k > 0.0f && k < FLT_BIG)) return NK_ERR_ARG;
    s->cfg.detect_threshold = k;
    return NK_OK;
}

int nk_sort_load_templates(nk_sort *s, int32_t n_units, const int32_t *unit_ids,
                           const float *templates, int32_t n_channels, int32_t n_samples,
                           const float *basis, int32_t n_features) {
    if (!s || n_units < 0 || (n_units > 0 && (!unit_ids || !templates))) return NK_ERR_ARG;
    const int32_t C = s->cfg.n_channels, L = s->cfg.n_samples, K = s->cfg.n_neighbors;
    const int32_t U = s->cfg.max_clusters;
    if (n_channels != C || n_samples != L) return NK_ERR_ARG;
    if (!basis_ok(basis, basis ? n_features : 0, L)) return NK_ERR_ARG;
    if (n_units > s->cfg.max_units) return NK_ERR_CAPACITY;
    const size_t CL = (size_t)C * (size_t)L;
    int32_t max_id = -1;
    memset(s->scratch, 0, (size_t)C * sizeof(int32_t));
    for (int32_t u = 0; u < n_units; u++) {
        if (unit_ids[u] < 0 || unit_ids[u] >= INT32_MAX - 1) return NK_ERR_ARG;
        for (int32_t v = 0; v < u; v++)
            if (unit_ids[v] == unit_ids[u]) return NK_ERR_ARG;
        if (unit_ids[u] > max_id) max_id = unit_ids[u];
        const float *T = templates + (size_t)u * CL;
        for (size_t i = 0; i < CL; i++)
            if (!(T[i] > -FLT_BIG && T[i] < FLT_BIG)) return NK_ERR_ARG;
        float peak;
        const int32_t h = peak_channel(T, C, L, &peak);
        if (h < 0) return NK_ERR_ARG; /* an all-zero template */
        if (++s->scratch[h] > U) return NK_ERR_CAPACITY;
    }
    /* valid: apply */
    if (basis && n_features > 0) {
        memcpy(s->basis, basis, (size_t)n_features * (size_t)L * sizeof(float));
        s->has_basis = 1;
        s->D = n_features;
    } else {
        s->has_basis = 0;
        s->D = L;
    }
    s->M = s->has_basis ? s->D : L - 2;
    nk_sort_reset(s);
    for (int32_t u = 0; u < n_units; u++) {
        float peak;
        const float *T = templates + (size_t)u * CL;
        const int32_t h = peak_channel(T, C, L, &peak);
        place(s, T, h, unit_ids[u]);
        s->given_id[u] = unit_ids[u];
        s->given_ch[u] = h;
        s->given_peak[u] = peak;
    }
    s->n_given = n_units;
    for (int32_t u = 0; u < n_units; u++) {
        float peak;
        const float *T = templates + (size_t)u * CL;
        const int32_t h = peak_channel(T, C, L, &peak);
        for (int32_t p = 0; p < K; p++) {
            const int32_t g = s->nb[h * K + p];
            if (g < 0 || g == h || slot_of(s, g, h) < 0) continue;
            if (amp(T + (size_t)g * (size_t)L, L) >= s->cfg.link_ratio * peak)
                place(s, T, g, unit_ids[u]);
        }
    }
    s->st.live_units = n_units;
    s->st.next_unit = max_id + 1;
    return NK_OK;
}

/* ------------------------------------------------------------------ inspection */

int nk_sort_get_fit(const nk_sort *s, nk_sort_fit *out, int32_t capacity, int32_t *n_out) {
    if (!s || !n_out || (capacity > 0 && !out) || capacity < 0) return NK_ERR_ARG;
    if (capacity < s->n_given) return NK_ERR_CAPACITY;
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    for (int32_t u = 0; u < s->n_given; u++) {
        nk_sort_fit *o = &out[u];
        o->unit = s->given_id[u];
        o->channel = s->given_ch[u];
        o->spikes = 0;
        o->channel_spikes = s->chan_spikes[o->channel];
        float sum = 0.0f;
        for (int32_t i = 0; i < N; i++) {
            const cluster *ci = &s->cl[i];
            if (ci->channel < 0 || ci->unit != o->unit || !ci->given) continue;
            o->spikes += ci->fit_n;
            sum += ci->fit_sum;
        }
        o->mean_delta = o->spikes > 0 ? sum / (float)o->spikes : 0.0f;
        const float v = s->sig2c[o->channel];
        o->snr = v > 0.0f ? s->given_peak[u] / sqrtf(v) : 0.0f;
    }
    *n_out = s->n_given;
    return NK_OK;
}

int nk_sort_get_stats(const nk_sort *s, nk_sort_stats *out) {
    if (!s || !out) return NK_ERR_ARG;
    *out = s->st;
    int32_t active = 0;
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    for (int32_t i = 0; i < N; i++) active += s->cl[i].channel >= 0;
    out->active_clusters = active;
    out->n_features = s->D;
    return NK_OK;
}

int nk_sort_get_clusters(const nk_sort *s, int32_t *channel, int32_t *unit, int64_t *count,
                         float *templates, int32_t capacity) {
    if (!s || !channel || !unit || !count) return NK_ERR_ARG;
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    if (capacity < N) return NK_ERR_CAPACITY;
    for (int32_t i = 0; i < N; i++) {
        channel[i] = s->cl[i].channel;
        unit[i] = s->cl[i].channel >= 0 ? s->cl[i].unit : -1;
        count[i] = s->cl[i].channel >= 0 ? s->cl[i].count : 0;
    }
    if (templates) memcpy(templates, s->raw, (size_t)N * KLsz(s) * sizeof(float));
    return NK_OK;
}
