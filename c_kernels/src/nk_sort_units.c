/* nk_sort_units.c — unit life cycle: merges, links, successions, births, retirements. */
#include "nk_sort_internal.h"

void nks_emit(sink *k, int32_t kind, int32_t unit, int32_t other, int32_t channel,
              int64_t sample) {
    if (k->n >= k->capacity) return; /* cannot happen with capacity ≥ nk_sort_max_events */
    nk_sort_event *e = &k->out[k->n++];
    e->sample = sample; e->kind = kind; e->unit = unit; e->other = other; e->channel = channel;
    e->amplitude = 0.0f; e->threshold = 0.0f;
}

/* Candidate i took the spike at `sample` (unlabelled, or labelled only as an outlier near a
 * unit): remembered (the first FOUND_MAX) for a late label when i becomes a unit. */
void nks_found_push(nk_sort *s, int32_t i, int64_t sample) {
    cluster *ci = &s->cl[i];
    if (!s->found || ci->unit >= 0 || ci->n_found >= FOUND_MAX) return;
    s->found[(size_t)i * FOUND_MAX + (size_t)ci->n_found++] = sample;
}

/* Candidate i's remembered members belong to `unit`: one NK_SORT_LABEL each. */
void nks_found_flush(nk_sort *s, int32_t i, int32_t unit, sink *k) {
    cluster *ci = &s->cl[i];
    if (!s->found) return;
    for (int32_t m = 0; m < ci->n_found; m++)
        nks_emit(k, NK_SORT_LABEL, unit, -1, ci->channel, s->found[(size_t)i * FOUND_MAX + (size_t)m]);
    ci->n_found = 0;
}

/* Every cluster of `gone` now belongs to `keep`. */
void nks_merge_units(nk_sort *s, int32_t keep, int32_t gone, int32_t channel, int64_t sample,
                     sink *k) {
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    for (int32_t i = 0; i < N; i++)
        if (s->cl[i].channel >= 0 && s->cl[i].unit == gone) s->cl[i].unit = keep;
    s->st.live_units--;
    s->st.merges++;
    nks_emit(k, NK_SORT_MERGE, keep, gone, channel, sample);
}

/* Absorbs cluster b into a (same channel; template a[m] ≈ template b[m + sh]); returns the
 * survivor's index. */
int32_t nks_merge_clusters(nk_sort *s, int32_t a, int32_t b, int32_t sh, int64_t sample,
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
    float *ra = nks_raw(s, a), *rb = nks_raw(s, b);
    const size_t KL = nks_KL(s);
    nks_blend(s, ra, rb, sh, ua, ub);
    if (s->has_basis) {
        float *fa = s->feat + (size_t)a * KL, *fb = s->feat + (size_t)b * KL;
        for (int32_t i = 0; i < nks_dims(s); i++) fa[i] = ua * fa[i] + ub * fb[i];
    }
    A->spread = ua * A->spread + ub * B->spread;
    A->spread2 = ua * A->spread2 + ub * B->spread2;
    if (A->sigma2 <= 0.0f) A->sigma2 = B->sigma2;
    else if (B->sigma2 > 0.0f) A->sigma2 = ua * A->sigma2 + ub * B->sigma2;
    A->count += B->count;
    A->given |= B->given;
    A->fit_n += B->fit_n;
    A->fit_sum += B->fit_sum;
    nks_refresh(s, a);
    if (B->last > A->last) A->last = B->last;
    if (B->seen > 0 && (A->seen == 0 || B->first < A->first)) A->first = B->first;
    A->seen += B->seen;
    if (A->unit >= 0 && B->unit < 0) nks_found_flush(s, b, A->unit, k);
    else if (s->found)   /* two candidates: a's members then b's, the first FOUND_MAX */
        for (int32_t m = 0; m < B->n_found && A->n_found < FOUND_MAX; m++)
            s->found[(size_t)a * FOUND_MAX + (size_t)A->n_found++] =
                s->found[(size_t)b * FOUND_MAX + (size_t)m];
    B->n_found = 0;
    nks_twin_reset(s, b);
    const int32_t gone = B->unit;
    B->channel = -1;
    B->unit = -1;
    if (gone >= 0 && A->unit < 0) A->unit = gone;
    else if (gone >= 0 && gone != A->unit) nks_merge_units(s, A->unit, gone, A->channel, sample, k);
    return a;
}

/* The unit of a cluster on a neighbouring channel that is the same neuron as cluster i, or −1. */
int32_t nks_find_link(const nk_sort *s, int32_t i) {
    const cluster *ci = &s->cl[i];
    if (ci->sigma2 <= 0.0f) return -1;
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, U = s->cfg.max_clusters;
    const int32_t D = s->D, c = ci->channel;
    const float ratio = s->cfg.link_ratio;
    const float *ri = s->raw + (size_t)i * nks_KL(s), *fi = nks_feat_of(s, i);
    const int32_t pc = nks_slot_of(s, c, c);
    if (pc < 0) return -1;
    const float ai_c = nks_amp(ri + (size_t)pc * (size_t)L, L);
    float best = 0.0f;
    int32_t best_unit = -1;
    for (int32_t p = 0; p < K; p++) {
        const int32_t b = s->nb[c * K + p];
        if (b < 0 || b == c) continue;
        const int32_t qc = nks_slot_of(s, b, c), qb = nks_slot_of(s, b, b);
        if (qc < 0 || qb < 0) continue;
        if (nks_amp(ri + (size_t)p * (size_t)L, L) < ratio * ai_c) continue;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = b * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0 || cj->unit < 0 || cj->unit == ci->unit) continue;
            if (ci->given && cj->given) continue;
            if (nks_both_loaded(s, ci->unit, cj->unit)) continue;
            /* a loaded cluster that has taken no spike since the load is no evidence of its
             * neuron here (measured on the tune seeds with MountainSort5 templates: unlisted
             * neurons linked to loaded units' idle neighbour clusters — dense32 seed 0, 2
             * births where cold start has 24; median accuracy 0.790 -> 0.820, drift_step32
             * 0.911 -> 0.926, drift_rigid64 0.923 -> 0.931, 12 of 15 runs up, 1 down) */
            if (cj->given && cj->seen == 0) continue;
            const float *rj = s->raw + (size_t)j * nks_KL(s), *fj = nks_feat_of(s, j);
            if (nks_amp(rj + (size_t)qc * (size_t)L, L) < ratio * nks_amp(rj + (size_t)qb * (size_t)L, L))
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
                    const int32_t q = ch < 0 ? -1 : nks_slot_of(s, b, ch);
                    if (q < 0) continue;
                    if (s->has_basis)
                        a += nks_sqdist(fi + (size_t)p2 * (size_t)D, fj + (size_t)q * (size_t)D, D);
                    else
                        a += nks_sqdist(fi + (size_t)p2 * (size_t)L + 1,
                                    fj + (size_t)q * (size_t)L + 1 + sh, L - 2);
                    m++;
                }
                if (k == 0 || a < acc) acc = a;
            }
            const float young = 1.0f / (float)ci->count + 1.0f / (float)cj->count;
            const float limit = s->cfg.link_distance + young;
            const float share = (float)m / (float)s->kvalid[c];
            float score;
            if (s->cfg.link_dims > 0.0f && s->n_given == 0) {   /* nk_sort.h "Link" */
                const float rt = s->cfg.relative_tolerance;
                score = acc / (ci->sigma2 * ((float)(m * s->M) * young
                                             + s->cfg.link_dims * s->cfg.link_distance)
                               + rt * rt * share * ci->energy * limit);
            } else {
                score = acc / nks_budget(s, ci->sigma2, m, share * ci->energy) / limit;
            }
            if (score <= 1.0f && (best_unit < 0 || score < best)) {
                best = score;
                best_unit = cj->unit;
            }
        }
    }
    return best_unit;
}

/* Drift: the unit that candidate i (about to be born on channel c) continues, or −1. A unit
 * qualifies when one of its clusters sits on c or a neighbour of c, has accepted no spike
 * since the candidate's first one and has been silent for SUCC_ISI of its mean intervals
 * (the unit's other clusters may still take some), and its own-channel waveform has the
 * candidate's shape
 * (correlation ≥ SUCC_CORR) and size (within a factor SUCC_AMP): the neuron whose spikes
 * stopped fitting its templates when this one started — the probe moved. The best
 * correlation wins. */
int32_t nks_find_successor(const nk_sort *s, int32_t i) {
    const cluster *ci = &s->cl[i];
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, U = s->cfg.max_clusters;
    const int32_t c = ci->channel;
    const int32_t pc = nks_slot_of(s, c, c);
    if (pc < 0) return -1;
    const float *wi = s->raw + (size_t)i * nks_KL(s) + (size_t)pc * (size_t)L;
    float best = SUCC_CORR;
    int32_t best_unit = -1;
    for (int32_t p = 0; p < K; p++) {
        const int32_t b = s->nb[c * K + p];
        if (b < 0) continue;
        const int32_t pb = nks_slot_of(s, b, b);
        if (pb < 0) continue;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = b * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0 || cj->unit < 0) continue;
            float ratio;
            const float *wj = s->raw + (size_t)j * nks_KL(s) + (size_t)pb * (size_t)L;
            const float r = nks_shape_corr(s, wi, wj, &ratio);
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
int nks_spike_like(const nk_sort *s, int32_t i) {
    const int32_t L = s->cfg.n_samples, c = s->cl[i].channel;
    const int32_t p = nks_slot_of(s, c, c);
    if (p < 0) return 1;
    const float *w = s->raw + (size_t)i * nks_KL(s) + (size_t)p * (size_t)L;
    const int32_t pk = nks_argmax_abs(w, L);
    const float sg = w[pk] < 0.0f ? -1.0f : 1.0f;
    float lobe = 0.0f;
    for (int32_t l = pk + 1; l < L; l++)
        if (-sg * w[l] > lobe) lobe = -sg * w[l];
    return lobe >= LOBE_MIN * sg * w[pk];
}

/* Same-channel merge, birth and link after cluster i took a spike; returns i's final index. */
int32_t nks_after_update(nk_sort *s, int32_t i, int64_t sample, sink *k) {
    const int32_t U = s->cfg.max_clusters, c = s->cl[i].channel;
    if (s->cl[i].sigma2 > 0.0f) {
        float best = 0.0f;
        int32_t bj = -1, bsh = 0;
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = c * U + u;
            if (j == i || s->cl[j].channel < 0) continue;
            if (s->cl[i].given && s->cl[j].given && s->cl[i].unit != s->cl[j].unit) continue;
            if (nks_both_loaded(s, s->cl[i].unit, s->cl[j].unit)) continue;
            if (s->cl[i].sib == j && s->cl[j].sib == i) continue;   /* split apart */
            int32_t sh;
            /* allowance for the noise left in templates of few spikes (at most 0.5) */
            float young = 1.0f / (float)s->cl[i].count + 1.0f / (float)s->cl[j].count;
            if (young > 0.5f) young = 0.5f;
            const float limit = s->cfg.merge_distance + young;
            const float e = s->cl[i].energy > s->cl[j].energy ? s->cl[i].energy : s->cl[j].energy;
            const float prior = MERGE_PRIOR * s->cfg.scale_prior;
            float d;
            if (s->cfg.merge_dims > 0.0f && s->n_given == 0) {   /* nk_sort.h "Merge" */
                const float rt = s->cfg.relative_tolerance;
                const float den = s->cl[i].sigma2 * ((float)(s->kvalid[c] * s->M) * young
                                                     + s->cfg.merge_dims * s->cfg.merge_distance)
                                  + rt * rt * e * limit;
                d = nks_match(s, nks_feat_of(s, i), nks_feat_of(s, j), den, prior, &sh);
            } else {
                const float den = nks_budget(s, s->cl[i].sigma2, s->kvalid[c], e);
                d = nks_match(s, nks_feat_of(s, i), nks_feat_of(s, j), den, prior, &sh) / limit;
            }
            if (d <= 1.0f && (bj < 0 || d < best)) { best = d; bj = j; bsh = sh; }
        }
        if (bj >= 0) i = nks_merge_clusters(s, i, bj, bsh, sample, k);
    }
    cluster *ci = &s->cl[i];
    const int64_t try_link = s->cfg.birth_spikes < LINK_FIRST ? s->cfg.birth_spikes : LINK_FIRST;
    const int32_t u0 = ci->unit < 0 && ci->count >= try_link ? nks_find_link(s, i) : -1;
    if (u0 >= 0) {
        ci->unit = u0;       /* a candidate next to a unit it belongs to joins it at once */
        ci->since_link = 0;
        s->st.links++;
        nks_found_flush(s, i, ci->unit, k);
    } else if (ci->unit < 0 && ci->count >= s->cfg.birth_spikes
               && (ci->unit = nks_find_burst_lead(s, i)) >= 0) {
        ci->since_link = 0;  /* a burst's smaller spikes: their neuron's unit, no birth */
        s->st.links++;
        nks_found_flush(s, i, ci->unit, k);
    } else if (ci->unit < 0 && ci->count >= s->cfg.birth_spikes
               && (ci->unit = nks_find_successor(s, i)) >= 0) {
        ci->since_link = 0;  /* a moved neuron keeps its id: no birth */
        s->st.links++;
        s->st.successions++;
        nks_found_flush(s, i, ci->unit, k);
    } else if (ci->unit < 0 && ci->count >= s->cfg.birth_spikes) {
        if (s->st.live_units < s->cfg.max_units && nks_spike_like(s, i)) {
            ci->unit = s->st.next_unit++;
            s->st.live_units++;
            s->st.births++;
            nks_emit(k, NK_SORT_BIRTH, ci->unit, -1, c, sample);
            nks_found_flush(s, i, ci->unit, k);
        }
        ci->since_link = 0;
    } else if (LINK_EVERY > 0 && ci->unit >= 0 && ++ci->since_link >= LINK_EVERY) {
        ci->since_link = 0;
        const int32_t u = nks_find_link(s, i);
        if (u >= 0) {
            const int32_t keep = u < ci->unit ? u : ci->unit, gone = u < ci->unit ? ci->unit : u;
            s->st.links++;
            nks_merge_units(s, keep, gone, c, sample, k);
        }
    }
    return i;
}

/* Cluster i (on channel c) took a spike at `sample`: a unit's cluster becomes its channel's
 * lead; a candidate counts the spike as following the lead when it came within
 * burst_samples of the lead's newest one (the first lead it follows stays its lead). */
void nks_follow(nk_sort *s, int32_t i, int64_t sample) {
    cluster *ci = &s->cl[i];
    const int32_t c = ci->channel;
    if (ci->unit >= 0) {
        s->lead_t[c] = sample;
        s->lead_i[c] = i;
        return;
    }
    const int32_t j = s->lead_i[c];
    const int64_t gap = sample - s->lead_t[c];
    if (j < 0 || j == i || gap <= 0 || gap > s->cfg.burst_samples) return;
    const cluster *cj = &s->cl[j];
    if (cj->channel != c || cj->unit < 0) return;
    if (ci->follow == 0) {
        ci->lead = j;
        ci->lead_unit = cj->unit;
    } else if (ci->lead != j || ci->lead_unit != cj->unit) {
        return;
    }
    ci->follow++;
}

/* The unit whose bursts candidate i holds (see nk_sort.h), or −1. */
int32_t nks_find_burst_lead(const nk_sort *s, int32_t i) {
    const cluster *ci = &s->cl[i];
    if (s->cfg.burst_samples <= 0 || ci->follow == 0 || ci->sigma2 <= 0.0f) return -1;
    if (BURST_DEN * ci->follow < BURST_NUM * ci->count) return -1;
    const int32_t j = ci->lead, c = ci->channel;
    const cluster *cj = &s->cl[j];
    if (cj->channel != c || cj->unit != ci->lead_unit) return -1;
    float young = 1.0f / (float)ci->count + 1.0f / (float)cj->count;
    if (young > 0.5f) young = 0.5f;
    const float e = ci->energy > cj->energy ? ci->energy : cj->energy;
    const float den = nks_budget(s, ci->sigma2, s->kvalid[c], e);
    int32_t sh;
    const float d = nks_match(s, nks_feat_of(s, i), nks_feat_of(s, j), den, 0.0f, &sh);
    return d <= s->cfg.merge_distance + young ? cj->unit : -1;
}

/* A slot on channel c for a new candidate: a free one, else the stalest candidate, else −1. */
int32_t nks_free_slot(const nk_sort *s, int32_t c) {
    const int32_t U = s->cfg.max_clusters;
    int32_t stale = -1;
    for (int32_t u = 0; u < U; u++) {
        const int32_t j = c * U + u;
        if (s->cl[j].channel < 0) return j;
        if (s->cl[j].unit < 0 && (stale < 0 || s->cl[j].last < s->cl[stale].last)) stale = j;
    }
    return stale;
}

void nks_retire(nk_sort *s, int64_t now, sink *k) {
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
            nks_emit(k, NK_SORT_RETIRE, unit, -1, channel, now);
        }
    }
}
