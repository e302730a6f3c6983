/* nk_sort_xsub.c — neighbours' spikes removed from a snippet before it is matched
 * (subtract_neighbours): on a dense probe a snippet often carries part of another neuron's
 * spike a few samples to a snippet's length away, which pulls the match towards the wrong unit
 * or out of every unit's limit. Two sources of such spikes are known when a snippet is sorted:
 *  - spikes labelled (or peeled) before it: a ring of the newest XS_MAX, each with its cluster,
 *    slide and fitted scale;
 *  - larger spikes detected after it in the same call (their snippets are complete): each is
 *    matched against its channel's mature clusters and, if one accepts it, taken as that.
 * Each is subtracted, at its placement relative to the snippet, over the channels both share,
 * only where that lowers the snippet's energy (the template correlates with what is there) and
 * leaves the event's own peak above its threshold (a unit learnt from two neurons that fire
 * together holds the second's spike too). Spikes within XS_MIN_DT samples are left alone: the
 * duplicate, overlap and peel rules (nk_sort_peel.c, nk_sort_overlap.c) decide those. Tune
 * seeds: SorterConfig.subtract_neighbours. Model: nk_sort.h "Neighbours". */
#include "nk_sort_internal.h"

#define XS_MIN_DT 3

void nks_xs_reset(nk_sort *s) {
    for (int32_t i = 0; i < XS_MAX; i++) s->xs[i].j = -1;
    s->xs_head = 0;
}

/* Least-squares scale of cluster j's template at `shift` against snippet x, clamped. */
static float scale_of(const nk_sort *s, const float *x, int32_t j, int32_t shift) {
    float xt, tt;
    nks_dot_at(s, x, s->raw + (size_t)j * nks_KL(s), shift, &xt, &tt);
    return nks_fit_scale(s, xt, tt);
}

void nks_xs_push(nk_sort *s, int64_t sample, int32_t j, int32_t shift, float scale) {
    if (!s->cfg.subtract) return;
    xs_spike *h = &s->xs[s->xs_head];
    h->sample = sample;
    h->j = j;
    h->shift = shift;
    h->scale = scale;
    s->xs_head = (s->xs_head + 1) % XS_MAX;
}

void nks_xs_label(nk_sort *s, int64_t sample, int32_t j, int32_t shift, const float *x) {
    if (s->cfg.subtract) nks_xs_push(s, sample, j, shift, scale_of(s, x, j, shift));
}

/* y −= a·T_j over the channels of the snippet (event ev) that cluster j's template covers,
 * placed with y[l] ↔ T_j[l + off], if that lowers ‖y‖² and leaves the event's own peak above
 * its threshold (a template that holds the event's spike too — a unit learnt from pairs that
 * always come together — would take it away); y is x copied on the first subtraction. */
static void subtract(nk_sort *s, const nk_event *ev, int32_t j, int32_t off, float a,
                     const float *x, int *copied) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, c1 = s->cl[j].channel;
    const int32_t c = ev->channel, pre = s->cfg.pre;
    const size_t KL = nks_KL(s);
    const float *T = s->raw + (size_t)j * KL;
    float *y = s->xc;
    const int32_t lo = off < 0 ? -off : 0, hi = off > 0 ? L - off : L;
    if (lo >= hi) return;
    const float *src = *copied ? y : x;
    int32_t slot[64];   /* the snippet's slot of each template slot (−1: not shared); K ≤ 64 */
    float xp = 0.0f, pp = 0.0f, peak = 0.0f;
    for (int32_t q = 0; q < K; q++) {
        const int32_t ch = s->nb[c1 * K + q];
        const int32_t p = slot[q] = ch < 0 ? -1 : nks_slot_of(s, c, ch);
        if (p < 0) continue;
        for (int32_t l = lo; l < hi; l++) {
            const float t = T[q * L + l + off];
            xp += src[p * L + l] * t;
            pp += t * t;
        }
        if (ch == c && pre >= lo && pre < hi) peak = a * T[q * L + pre + off];
    }
    /* ‖y − a·P‖² < ‖y‖² ⇔ 2a⟨y, P⟩ > a²‖P‖² */
    if (!(pp > 0.0f) || !(2.0f * xp > a * pp)) return;
    const int32_t pc = nks_slot_of(s, c, c);
    const float left = pc < 0 ? 0.0f : src[pc * L + pre] - peak;
    if (!((ev->amplitude < 0.0f ? -left : left) >= ev->threshold)) return;
    if (!*copied) {
        memcpy(y, x, KL * sizeof(float));
        *copied = 1;
    }
    for (int32_t q = 0; q < K; q++) {
        const int32_t p = slot[q];
        if (p < 0) continue;
        for (int32_t l = lo; l < hi; l++) y[p * L + l] -= a * T[q * L + l + off];
    }
    s->st.subtracted++;
}

/* The mature cluster of event i's channel that accepts its snippet best (−1: none). */
static int32_t accepted(const nk_sort *s, const nk_event *ev, const float *x, int32_t *shift) {
    const int32_t U = s->cfg.max_clusters, c = ev->channel;
    const float sg = ev->threshold / s->cfg.detect_threshold;
    int32_t best = -1;
    float best_d = 0.0f;
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c * U + u;
        const cluster *cj = &s->cl[j];
        if (!nks_mature(s, cj)) continue;
        int32_t sh;
        const float den = nks_budget(s, sg * sg, s->kvalid[c], cj->energy);
        const float d = nks_match(s, x, s->raw + (size_t)j * nks_KL(s), den,
                                  s->cfg.scale_prior, &sh);
        if (d <= nks_limit_of(s, cj, c) && (best < 0 || d < best_d)) {
            best = j; best_d = d; *shift = sh;
        }
    }
    return best;
}

const float *nks_xs_clean(nk_sort *s, const nk_event *events, int32_t n, int32_t e,
                          const float *waveforms) {
    const size_t KL = nks_KL(s);
    const float *x = waveforms + (size_t)e * KL;
    if (!s->cfg.subtract || s->has_basis) return x;   /* slides and scales need raw snippets */
    const int32_t L = s->cfg.n_samples;
    const nk_event *ev = &events[e];
    int copied = 0;
    /* spikes labelled before: the snippet at ev->sample, l ↔ the template's l + dt + shift */
    for (int32_t i = 0; i < XS_MAX; i++) {
        const xs_spike *h = &s->xs[i];
        if (h->j < 0) continue;
        const int64_t dt = ev->sample - h->sample;
        if (dt <= -(int64_t)L || dt >= (int64_t)L || (dt >= -XS_MIN_DT && dt <= XS_MIN_DT))
            continue;
        const cluster *cj = &s->cl[h->j];
        if (cj->channel < 0 || cj->unit < 0) continue;   /* retired or reused since */
        subtract(s, ev, h->j, (int32_t)dt + h->shift, h->scale, x, &copied);
    }
    /* larger spikes detected after it in this call (a neighbour's that its snippet precedes) */
    const float amp = ev->amplitude < 0.0f ? -ev->amplitude : ev->amplitude;
    for (int32_t i = e + 1; i < n; i++) {
        const int64_t dt = events[i].sample - ev->sample;
        if (dt >= L) break;                       /* events come in sample order */
        if (dt <= XS_MIN_DT) continue;
        const float ai = events[i].amplitude < 0.0f ? -events[i].amplitude
                                                    : events[i].amplitude;
        if (!(ai > amp) || nks_slot_of(s, ev->channel, events[i].channel) < 0) continue;
        const float *xi = waveforms + (size_t)i * KL;
        int32_t sh = 0;
        const int32_t j = accepted(s, &events[i], xi, &sh);
        if (j < 0) continue;
        subtract(s, ev, j, -(int32_t)dt + sh, scale_of(s, xi, j, sh), x, &copied);
    }
    return copied ? s->xc : x;
}
