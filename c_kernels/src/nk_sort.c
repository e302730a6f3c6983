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
    return 1;
}

int64_t nk_sort_memory(const nk_sort_config *cfg) {
    if (!config_ok(cfg)) return 0;
    const int64_t C = cfg->n_channels, K = cfg->n_neighbors, L = cfg->n_samples;
    const int64_t N = C * cfg->max_clusters;
    return (int64_t)sizeof(nk_sort) + C * K * 4 + 2 * C * 4 + L * L * 4
           + N * (int64_t)sizeof(cluster) + 2 * N * K * L * 4 + K * L * 4;
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
    if (!s->nb || !s->kvalid || !s->scratch || !s->basis || !s->cl || !s->raw || !s->feat
        || !s->f) {
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
}

void nk_sort_free(nk_sort *s) {
    if (!s) return;
    free(s->nb); free(s->kvalid); free(s->scratch); free(s->basis);
    free(s->cl); free(s->raw); free(s->feat); free(s->f);
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

/* Squared distance between a spike (or template) x and a template t. Without a basis the
 * template may slide by one sample either way (peak-alignment jitter of the detector):
 * min over s ∈ {0, −1, +1} of Σ_p Σ_{l=1}^{L−2} (x[p][l] − t[p][l+s])², ties to the earlier s. */
static float match(const nk_sort *s, const float *x, const float *t, int32_t *shift) {
    *shift = 0;
    if (s->has_basis) return sqdist(x, t, dims(s));
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    static const int32_t shifts[3] = {0, -1, 1};
    float best = 0.0f;
    for (int32_t k = 0; k < 3; k++) {
        const int32_t sh = shifts[k];
        float acc = 0.0f;
        for (int32_t p = 0; p < K; p++)
            acc += sqdist(x + (size_t)p * (size_t)L + 1, t + (size_t)p * (size_t)L + 1 + sh, L - 2);
        if (k == 0 || acc < best) { best = acc; *shift = sh; }
    }
    return best;
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
    if (B->last > A->last) A->last = B->last;
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
            const float score = acc / (ci->sigma2 * (float)m * (float)s->M) / limit;
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

/* Same-channel merge, birth and link after cluster i took a spike; returns i's final index. */
static int32_t after_update(nk_sort *s, int32_t i, int64_t sample, sink *k) {
    const int32_t U = s->cfg.max_clusters, c = s->cl[i].channel;
    if (s->cl[i].sigma2 > 0.0f) {
        const float norm = 1.0f / (s->cl[i].sigma2 * (float)(s->kvalid[c] * s->M));
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
            const float d = match(s, feat_of(s, i), feat_of(s, j), &sh) * norm / limit;
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
    } else if (ci->unit < 0 && ci->count >= s->cfg.birth_spikes) {
        if (s->st.live_units < s->cfg.max_units) {
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
        const float norm = 1.0f / (sig2 * (float)(s->kvalid[c] * s->M));
        int32_t best = -1, best_shift = 0, near_unit = -1;
        float best_delta = 0.0f, near_score = 0.0f;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = c * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0) continue;
            int32_t sh;
            const float delta = match(s, f, feat_of(s, j), &sh) * norm;
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
            const int64_t m = ci->count < s->cfg.adapt_spikes ? ci->count : s->cfg.adapt_spikes;
            const float w = 1.0f / (float)m;
            /* x[l] ≈ r[l + shift]: move r towards x re-aligned into r's frame */
            blend(s, raw_of(s, i), x, -best_shift, 1.0f - w, w);
            if (s->has_basis) {
                float *fi = s->feat + (size_t)i * KL;
                for (int32_t q = 0; q < dims(s); q++) fi[q] += w * (f[q] - fi[q]);
            }
            recentre(s, i);
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
            ci->since_link = 0; ci->spread = 1.0f; ci->spread2 = 1.0f; ci->sigma2 = sig2;
            ci->given = 0;
            memcpy(raw_of(s, i), x, KL * sizeof(float));
            if (s->has_basis) memcpy(s->feat + (size_t)i * KL, f, (size_t)dims(s) * sizeof(float));
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
    ci->since_link = 0; ci->spread = 1.0f; ci->spread2 = 1.0f; ci->sigma2 = 0.0f;
    ci->given = 1;
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
        place(s, T, peak_channel(T, C, L, &peak), unit_ids[u]);
    }
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
