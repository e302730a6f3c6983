/* nk_sort.c — online spike sorting: state and the per-block process (model: nk_sort.h). */
#include "nk_sort_internal.h"

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
    if (c->burst_samples < 0) return 0;
    if (c->peel < 0 || c->peel > 2) return 0;
    if (c->split < 0 || c->split > 1) return 0;
    if (c->late_labels < 0 || c->late_labels > 1) return 0;
    if (c->peel_joint < 0 || c->peel_joint > 1) return 0;
    if (c->twin_hi != 0 && (c->twin_lo < 0 || c->twin_hi <= c->twin_lo)) return 0;
    if (c->motion_anchor < 0 || c->motion_anchor > 2) return 0;
    if (!(c->overlap_penalty >= 0.0f && c->overlap_penalty < 1.0e6f)) return 0;
    if (c->subtract < 0 || c->subtract > 1) return 0;
    if (!(c->merge_dims >= 0.0f && c->merge_dims < 1.0e6f)) return 0;
    if (!(c->link_dims >= 0.0f && c->link_dims < 1.0e6f)) return 0;
    return 1;
}

int64_t nk_sort_memory(const nk_sort_config *cfg) {
    if (!config_ok(cfg)) return 0;
    const int64_t C = cfg->n_channels, K = cfg->n_neighbors, L = cfg->n_samples;
    const int64_t N = C * cfg->max_clusters;
    return (int64_t)sizeof(nk_sort) + C * K * 4 + 2 * C * 4 + L * L * 4
           + N * (int64_t)sizeof(cluster) + 2 * N * K * L * 4 + K * L * 4 + C * 12
           + (int64_t)cfg->max_units * 12 + C * 12 + K * L * 4 + C * 12   /* peel */
           + C * 8 + N * K * L * 4 + 3 * K * L * 4   /* motion: positions, frozen, scratch */
           + C * 20                                  /* anchor: maps, column neighbours */
           + XS_MAX * (int64_t)sizeof(xs_spike) + K * L * 4  /* neighbours: ring, scratch */
           + (cfg->split ? N * K * L * 4 + K * L * 4 : 0)    /* split: axes, scratch */
           + (cfg->late_labels ? N * FOUND_MAX * 8 : 0)       /* late labels */
           + (cfg->peel_joint ? K * L * 4 : 0)                /* joint peel scratch */
           + (cfg->overlap_penalty > 0.0f ? OV_MAX * K * L * 4 : 0)   /* overlap scratch */
           + (cfg->twin_hi > 0 ? 2 * N * cfg->max_clusters * 4 + 3 * N * 8 : 0);   /* twins */
}

int nks_basis_ok(const float *basis, int32_t D, int32_t L) {
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
    if (!nks_basis_ok(basis, basis ? n_features : 0, L)) return NK_ERR_ARG;
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
    s->lead_t = calloc((size_t)C, sizeof(int64_t));
    s->lead_i = calloc((size_t)C, sizeof(int32_t));
    s->res = calloc(KL, sizeof(float));
    s->det_t = calloc((size_t)C, sizeof(int64_t));
    s->det_a = calloc((size_t)C, sizeof(float));
    s->pos = calloc((size_t)C * 2, sizeof(float));
    s->frozen = calloc(N * KL, sizeof(float));
    s->f2 = calloc(3 * KL, sizeof(float));
    s->an_ref = calloc((size_t)C, sizeof(float));
    s->an_cur = calloc((size_t)C, sizeof(float));
    s->an_col = calloc((size_t)C * 2, sizeof(int32_t));
    s->an_half = calloc((size_t)C, sizeof(float));
    s->xs = calloc(XS_MAX, sizeof(xs_spike));
    s->xc = calloc(KL, sizeof(float));
    if (cfg->split) {   /* the split test's state, only when it runs */
        s->axis = calloc(N * KL, sizeof(float));
        s->res2 = calloc(KL, sizeof(float));
    }
    if (cfg->late_labels) s->found = calloc(N * FOUND_MAX, sizeof(int64_t));
    if (cfg->peel_joint) s->p1 = calloc(KL, sizeof(float));
    if (cfg->overlap_penalty > 0.0f) s->ov = calloc((size_t)OV_MAX * KL, sizeof(float));
    if (cfg->twin_hi > 0) {
        s->tw_n = calloc(N * (size_t)cfg->max_clusters, sizeof(int32_t));
        s->tw_hit = calloc(N * (size_t)cfg->max_clusters, sizeof(int32_t));
        s->tw_last = calloc(N, sizeof(int64_t));
        s->tw_first = calloc(N, sizeof(int64_t));
        s->tw_seen = calloc(N, sizeof(int64_t));
    }
    if (!s->xs || !s->xc || !s->an_ref || !s->an_cur || !s->an_col || !s->an_half
        || !s->pos || !s->frozen || !s->f2 || !s->nb || !s->kvalid || !s->scratch || !s->basis || !s->cl || !s->raw || !s->feat
        || !s->f || !s->sig2c || !s->chan_spikes || !s->given_id || !s->given_ch || !s->given_peak
        || !s->lead_t || !s->lead_i || !s->res || !s->det_t || !s->det_a
        || (cfg->split && (!s->axis || !s->res2)) || (cfg->late_labels && !s->found)
        || (cfg->peel_joint && !s->p1) || (cfg->overlap_penalty > 0.0f && !s->ov)
        || (cfg->twin_hi > 0 && (!s->tw_n || !s->tw_hit || !s->tw_last || !s->tw_first
                                 || !s->tw_seen))) {
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
        s->cl[i].sib = -1;
    }
    memset(&s->st, 0, sizeof s->st);
    s->st.n_features = s->D;
    s->n_given = 0;
    s->loaded_below = 0;
    memset(s->sig2c, 0, (size_t)s->cfg.n_channels * sizeof(float));
    memset(s->chan_spikes, 0, (size_t)s->cfg.n_channels * sizeof(int64_t));
    for (int32_t c = 0; c < s->cfg.n_channels; c++) {
        s->lead_i[c] = -1;
        s->det_t[c] = INT64_MIN / 2;
        s->det_a[c] = 0.0f;
    }
    s->motion = 0.0f;
    s->motion_applied = 0.0f;
    s->motion_spikes = 0;
    nks_anchor_reset(s);
    nks_xs_reset(s);
    if (s->tw_n) {
        memset(s->tw_n, 0, (size_t)N * (size_t)s->cfg.max_clusters * sizeof(int32_t));
        memset(s->tw_hit, 0, (size_t)N * (size_t)s->cfg.max_clusters * sizeof(int32_t));
        memset(s->tw_last, 0, (size_t)N * sizeof(int64_t));
        memset(s->tw_first, 0, (size_t)N * sizeof(int64_t));
        memset(s->tw_seen, 0, (size_t)N * sizeof(int64_t));
    }
}

void nk_sort_free(nk_sort *s) {
    if (!s) return;
    free(s->nb); free(s->kvalid); free(s->scratch); free(s->basis);
    free(s->cl); free(s->raw); free(s->feat); free(s->f);
    free(s->sig2c); free(s->chan_spikes); free(s->given_id); free(s->given_ch); free(s->given_peak);
    free(s->lead_t); free(s->lead_i); free(s->res); free(s->det_t); free(s->det_a);
    free(s->pos); free(s->frozen); free(s->f2);
    free(s->an_ref); free(s->an_cur); free(s->an_col); free(s->an_half); free(s->xs); free(s->xc);
    free(s->axis); free(s->res2); free(s->found); free(s->p1); free(s->ov); free(s->tw_n); free(s->tw_hit);
    free(s->tw_last); free(s->tw_first); free(s->tw_seen);
    free(s);
}

int32_t nk_sort_max_events(const nk_sort *s, int32_t n_spikes) {
    if (!s || n_spikes < 0) return 0;
    /* a spike makes at most one candidate a unit: FOUND_MAX late labels */
    const int64_t per = 4 + (s->cfg.late_labels ? FOUND_MAX : 0);
    int64_t m = per * (int64_t)n_spikes + (int64_t)s->cfg.n_channels * s->cfg.max_clusters + 1;
    return m > INT32_MAX ? INT32_MAX : (int32_t)m;
}

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
    const size_t KL = nks_KL(s);
    const float kthr = s->cfg.detect_threshold;
    for (int32_t e = 0; e < n; e++) {
        nk_event *ev = &events[e];
        const int32_t c = ev->channel;
        /* the snippet without its neighbours' spikes (subtract_neighbours, nk_sort_xsub.c) */
        const float *x = nks_xs_clean(s, events, n, e, waveforms);
        const float sig = ev->threshold / kthr, sig2 = sig * sig;
        s->st.spikes++;
        ev->unit = -1;
        const float *f = x;
        if (s->has_basis) {
            nks_project(s, x, s->f);
            f = s->f;
        }
        float xe = 0.0f;
        for (size_t i = 0; i < KL; i++) xe += x[i] * x[i];
        if (!(xe < FLT_BIG)) continue; /* NaN / Inf snippet: left unsorted */
        s->sig2c[c] = sig2;
        s->chan_spikes[c]++;
        nks_anchor_observe(s, c, x, sig);   /* depth histogram (nk_sort_motion.c) */
        int32_t best = -1, best_shift = 0, near_unit = -1, near_j = -1, near_shift = 0;
        float best_delta = 0.0f, near_score = 0.0f, mature_delta = FLT_BIG;
        /* the PEEL_FIRSTS nearest unit clusters (by score), for an overlap's first spike */
        int32_t fj[PEEL_FIRSTS] = {0}, fsh[PEEL_FIRSTS] = {0}, nf = 0;
        float fsc[PEEL_FIRSTS] = {0.0f};
        for (int32_t u = 0; u < U; u++) {
            const int32_t j = c * U + u;
            const cluster *cj = &s->cl[j];
            if (cj->channel < 0) continue;
            int32_t sh;
            const float den = nks_budget(s, sig2, s->kvalid[c], cj->energy);
            const float delta = nks_match(s, f, nks_feat_of(s, j), den, s->cfg.scale_prior, &sh);
            const float limit = nks_limit_of(s, cj, c);
            const float score = delta / limit;   /* ≤ 1: acceptable */
            if (delta < mature_delta && nks_mature(s, cj)) mature_delta = delta;
            /* among the clusters that accept it, the nearest takes the spike */
            if (score <= 1.0f && (best < 0 || delta < best_delta)) {
                best = j; best_delta = delta; best_shift = sh;
            }
            if (cj->unit >= 0 && (near_unit < 0 || score < near_score)) {
                near_unit = cj->unit; near_score = score; near_j = j; near_shift = sh;
            }
            if (cj->unit >= 0 && (nf < PEEL_FIRSTS || score < fsc[PEEL_FIRSTS - 1])) {
                int32_t q = nf < PEEL_FIRSTS ? nf++ : PEEL_FIRSTS - 1;
                for (; q > 0 && score < fsc[q - 1]; q--) {
                    fj[q] = fj[q - 1]; fsh[q] = fsh[q - 1]; fsc[q] = fsc[q - 1];
                }
                fj[q] = j; fsh[q] = sh; fsc[q] = score;
            }
        }
        /* the spike of a unit on a neighbour contact, detected there too (beyond the
         * detector's exclusion radius): neither labelled nor learnt from here */
        if (s->cfg.peel && nks_duplicate(s, events, n, e, x, best >= 0 ? best_delta : FLT_BIG)) {
            s->det_t[c] = ev->sample;
            s->det_a[c] = ev->amplitude;
            continue;
        }
        /* two mature units' near-synchronous spikes (nk_sort_overlap.c): both are labelled,
         * neither template learns from it, and it seeds no candidate */
        if (s->ov && s->cfg.peel) {
            const int32_t ou = nks_overlap(s, events, n, e, x, mature_delta, &k);
            if (ou >= 0) {
                ev->unit = ou;
                s->st.labelled++;
                s->det_t[c] = ev->sample;
                s->det_a[c] = ev->amplitude;
                continue;
            }
        }
        /* an outlier that is a unit's spike plus a neighbour's (an overlap the detector
         * reported as one): both are labelled, and it seeds no candidate */
        int32_t pf = -1;
        const int32_t firsts = s->cfg.peel >= 2 ? nf : (nf < 1 ? nf : 1);   /* refit: all */
        if (best < 0 && s->cfg.peel && s->cfg.peel_joint)
            pf = nks_joint_outlier(s, events, n, e, x, fj, fsh, nf, &k);
        for (int32_t q = 0; best < 0 && s->cfg.peel && !s->cfg.peel_joint && q < firsts
                            && pf < 0; q++)
            if (nks_peel(s, events, n, e, x, fj[q], fsh[q], 1, &k)) pf = q;
        if (pf >= 0) {
            nks_xs_label(s, ev->sample, fj[pf], fsh[pf], x);
            ev->unit = s->cl[fj[pf]].unit;
            s->st.labelled++;
            s->det_t[c] = ev->sample;
            s->det_a[c] = ev->amplitude;
            continue;
        }
        int32_t i = best;
        if (i >= 0) {
            cluster *ci = &s->cl[i];
            nks_split_observe(s, i, x, best_shift);
            ci->count++;
            if (ci->seen++ == 0) ci->first = ev->sample;
            const int64_t m = ci->count < s->cfg.adapt_spikes ? ci->count : s->cfg.adapt_spikes;
            const float w = 1.0f / (float)m;
            /* x[l] ≈ r[l + shift]: move r towards x re-aligned into r's frame */
            nks_blend(s, nks_raw(s, i), x, -best_shift, 1.0f - w, w);
            if (s->has_basis) {
                float *fi = s->feat + (size_t)i * KL;
                for (int32_t q = 0; q < nks_dims(s); q++) fi[q] += w * (f[q] - fi[q]);
            }
            nks_recentre(s, i);
            nks_refresh(s, i);
            if (ci->given) {
                ci->fit_n++;
                ci->fit_sum += best_delta;
                nks_motion_observe(s, i, x, best_shift, sig2);   /* probe motion (nk_sort_motion.c) */
            }
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
            i = nks_free_slot(s, c);
            if (i < 0) i = nks_calib_free_slot(s, c, ev->sample);   /* a stale loaded cluster's */
            if (i < 0) {
                s->st.unsorted_full++;
                continue;
            }
            cluster *ci = &s->cl[i];
            ci->channel = c; ci->unit = -1; ci->count = 1; ci->last = ev->sample;
            ci->first = ev->sample; ci->seen = 1;
            ci->since_link = 0; ci->spread = 1.0f; ci->spread2 = 1.0f; ci->sigma2 = sig2;
            ci->given = 0; ci->fit_n = 0; ci->fit_sum = 0.0f; ci->follow = 0; ci->n_found = 0;
            memcpy(nks_raw(s, i), x, KL * sizeof(float));
            if (s->has_basis) memcpy(s->feat + (size_t)i * KL, f, (size_t)nks_dims(s) * sizeof(float));
            nks_refresh(s, i);
            nks_split_reset(s, i);
            nks_twin_reset(s, i);
            s->st.candidates++;
        }
        nks_follow(s, i, ev->sample);
        i = nks_after_update(s, i, ev->sample, &k);
        if (best >= 0) i = nks_split(s, i, ev->sample, &k);
        ev->unit = s->cl[i].unit;
        /* the cluster (and slide) that explains the spike, for peeling */
        int32_t pj = ev->unit >= 0 && best >= 0 ? i : -1, psh = best_shift;
        /* an outlier (overlap, candidate material) still carries the nearest unit's label
         * when it lies within label_distance of that unit's acceptance limit */
        if (ev->unit < 0 && near_unit >= 0 && near_score <= s->cfg.label_distance) {
            ev->unit = near_unit;
            pj = near_j; psh = near_shift;
        }
        if (pj >= 0 && s->tw_n && s->cl[pj].channel == c && s->cl[pj].unit >= 0) {
            /* twins: the cluster the label came through */
            nks_twin_observe(s, pj, ev->sample);
            nks_twin_check(s, pj, ev->sample, &k);
            ev->unit = s->cl[pj].unit;   /* a twin merge may have renamed it */
        }
        if (ev->unit < 0) ev->unit = nks_core_match(s, x, c, 1.0f / sig2);
        nks_found_push(s, i, ev->sample);   /* late_labels: a candidate's member */
        s->st.labelled += ev->unit >= 0;
        if (pj >= 0 && s->cl[pj].channel == c && s->cl[pj].unit >= 0) {
            nks_xs_label(s, ev->sample, pj, psh, x);
            if (s->cfg.peel) nks_peel(s, events, n, e, x, pj, psh, 0, &k);
        }
        s->det_t[c] = ev->sample;
        s->det_a[c] = ev->amplitude;
    }
    nks_retire(s, now, &k);
    *n_out = k.n;
    return NK_OK;
}

int nk_sort_set_detect_threshold(nk_sort *s, float k) {
    if (!s || !(k > 0.0f && k < FLT_BIG)) return NK_ERR_ARG;
    s->cfg.detect_threshold = k;
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
    if (templates) memcpy(templates, s->raw, (size_t)N * nks_KL(s) * sizeof(float));
    return NK_OK;
}
