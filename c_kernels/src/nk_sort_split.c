/* nk_sort_split.c — is a cluster two neurons? A causal split on a rank-1 mixture model.
 *
 * Why a split: two similar neurons on one channel (a dense probe: same peak contact, shapes
 * correlated ≥ 0.95) differ by a template difference Δ whose energy is well inside the merge
 * distance of δ (‖Δ‖² ≈ 100 σ² against σ²·K·M ≈ 230 σ²), so their young candidates merge and
 * the cluster's acceptance limit, which follows its own members' spread, keeps both for good.
 * In the full K·L space a single spike's noise (σ²·K·M) swamps ‖Δ‖², which is why a 2-means
 * on whole snippets cannot find them; along Δ's direction the two are ‖Δ‖/σ ≈ 10 noise σ apart.
 *
 * Per cluster (fixed memory: one K·L vector and a few scalars):
 *   r = x − a·T    a member's residual in the template's frame (its slide; a: least-squares
 *                  scale within 1 ± scale_range, so amplitude jitter and bursts stay inside)
 *   u ← u + w·(y·r − u), y = r·u/‖u‖   stochastic power iteration: u/‖u‖ → the principal
 *                  axis of the members' residuals (for two neurons: Δ, eigenvalue
 *                  p(1 − p)‖Δ‖² ≫ σ²; for one: a noise direction, eigenvalue ≈ σ²)
 *   1-D online 2-means on y (from SPLIT_WARM members on): centres m₀, m₁, within-variances
 *                  and counts.
 * The cluster splits when the two modes are SPLIT_SEP noise σ apart and SPLIT_RATIO within-
 * group deviations apart (a single Gaussian's 2-means gives 2.65) and the smaller holds at
 * least birth_spikes and SPLIT_SHARE of the members, and consecutive members change mode
 * about as often as two independently firing neurons would (a drifting neuron's old and new
 * shapes are bimodal too, but one follows the other in time). Then T + m_k·u/‖u‖ are the two
 * templates: the cluster keeps the larger mode (and its unit id); the other starts a new
 * cluster with that mode's members counted, which goes through the birth checks at once. The
 * two are siblings: never merged with each other (they were split on evidence a template
 * distance cannot see). Loaded (calibrated) clusters are never split. */
#include "nk_sort_internal.h"
#ifdef NK_SPLIT_DEBUG
#include <stdio.h>
#endif

#define SPLIT_WARM 12       /* members that set the axis before the 2-means starts (12/24
                               tuned on the tune seeds: 12 splits earlier, same false splits) */
#define SPLIT_MEMORY 64     /* running-mean memory of the axis and the modes, members */
#define SPLIT_SEP 8.0f      /* modes at least this many noise σ apart (4/6/8 on the tune seeds:
                               4 and 6 split real single units of dense32 too) */
#define SPLIT_RATIO 4.0f    /* … and this many within-mode deviations */
#define SPLIT_SHARE 0.15f   /* the smaller mode's share of the members */
#define SPLIT_MIX 0.5f      /* mode switches between consecutive members, × the 2p(1 − p) of
                               two independent neurons (tune seeds: without it, drift_nonrigid64
                               split drifting units, FP share 0.03 → 0.11) */

static float *axis_of(nk_sort *s, int32_t i) { return s->axis + (size_t)i * nks_KL(s); }

void nks_split_reset(nk_sort *s, int32_t i) {
    cluster *ci = &s->cl[i];
    ci->sib = -1;
    if (!s->cfg.split) return;
    ci->sp_n = 0;
    ci->sp_norm = 0.0f;
    ci->sp_k[0] = ci->sp_k[1] = 0;
    ci->sp_m[0] = ci->sp_m[1] = 0.0f;
    ci->sp_v[0] = ci->sp_v[1] = 0.0f;
    ci->sp_last = -1;
    ci->sp_switch = 0.0f;
    memset(axis_of(s, i), 0, nks_KL(s) * sizeof(float));
}

/* Member x of cluster i (x[m − sh] ≈ template[m]), before the template moves. */
void nks_split_observe(nk_sort *s, int32_t i, const float *x, int32_t sh) {
    cluster *ci = &s->cl[i];
    if (!s->cfg.split || ci->given) return;
    const size_t KL = nks_KL(s);
    const float *t = nks_raw(s, i);
    float *r = s->res2, *u = axis_of(s, i);
    memcpy(r, t, KL * sizeof(float));
    nks_blend(s, r, x, -sh, 0.0f, 1.0f);
    float xt = 0.0f, tt = 0.0f;
    for (size_t q = 0; q < KL; q++) { xt += r[q] * t[q]; tt += t[q] * t[q]; }
    const float rg = s->cfg.scale_range;
    float a = tt > 0.0f ? xt / tt : 1.0f;
    if (!(a >= 1.0f - rg)) a = 1.0f - rg;
    if (a > 1.0f + rg) a = 1.0f + rg;
    for (size_t q = 0; q < KL; q++) r[q] -= a * t[q];
    ci->sp_n++;
    const int64_t n = ci->sp_n < SPLIT_MEMORY ? ci->sp_n : SPLIT_MEMORY;
    const float w = 1.0f / (float)n;
    if (ci->sp_norm <= 0.0f) {            /* the first residual starts the axis */
        float e = 0.0f;
        for (size_t q = 0; q < KL; q++) e += r[q] * r[q];
        if (!(e > 0.0f)) return;
        const float inv = 1.0f / sqrtf(e);
        for (size_t q = 0; q < KL; q++) u[q] = r[q] * inv;
        ci->sp_norm = 1.0f;
        return;
    }
    float y = 0.0f;
    for (size_t q = 0; q < KL; q++) y += r[q] * u[q];
    y /= ci->sp_norm;
    float e = 0.0f;
    for (size_t q = 0; q < KL; q++) {
        u[q] += w * (y * r[q] - u[q]);
        e += u[q] * u[q];
    }
    ci->sp_norm = sqrtf(e);
    if (!(ci->sp_norm > 0.0f && ci->sp_norm < FLT_BIG)) { nks_split_reset(s, i); return; }
    if (ci->sp_n < SPLIT_WARM) return;
    if (ci->sp_k[0] == 0 && ci->sp_k[1] == 0) {   /* modes start at ± the spread so far */
        const float d = sqrtf(ci->sp_norm);       /* ‖u‖ ≈ the axis variance */
        ci->sp_m[0] = -d; ci->sp_m[1] = d;
        ci->sp_v[0] = ci->sp_v[1] = 0.0f;
    }
    const int32_t h = (y - ci->sp_m[0]) * (y - ci->sp_m[0]) > (y - ci->sp_m[1]) * (y - ci->sp_m[1]);
    if (ci->sp_last >= 0) {
        const int64_t ns = ci->sp_k[0] + ci->sp_k[1];
        const float wsw = 1.0f / (float)(ns < SPLIT_MEMORY ? ns : SPLIT_MEMORY);
        ci->sp_switch += wsw * ((float)(h != ci->sp_last) - ci->sp_switch);
    }
    ci->sp_last = h;
    const int64_t nk = ++ci->sp_k[h];
    const float wk = 1.0f / (float)(nk < SPLIT_MEMORY ? nk : SPLIT_MEMORY);
    ci->sp_m[h] += wk * (y - ci->sp_m[h]);
    const float dy = y - ci->sp_m[h];
    ci->sp_v[h] += wk * (dy * dy - ci->sp_v[h]);
}

/* The split test of cluster i after an update; returns the index of the cluster that now
 * holds the newest member's mode (i, or the new cluster). */
int32_t nks_split(nk_sort *s, int32_t i, int64_t sample, sink *k) {
    cluster *ci = &s->cl[i];
    if (!s->cfg.split || ci->given || ci->sigma2 <= 0.0f) return i;
    const int64_t n0 = ci->sp_k[0], n1 = ci->sp_k[1], n = n0 + n1;
    const int64_t least = n0 < n1 ? n0 : n1;
    if (least < s->cfg.birth_spikes || (float)least < SPLIT_SHARE * (float)n) return i;
    const float sep = ci->sp_m[1] - ci->sp_m[0];
    const float within2 = ((float)n0 * ci->sp_v[0] + (float)n1 * ci->sp_v[1]) / (float)n;
    if (!(sep * sep >= SPLIT_SEP * SPLIT_SEP * ci->sigma2)) return i;
    if (!(sep * sep >= SPLIT_RATIO * SPLIT_RATIO * within2)) return i;
    /* two neurons fire interleaved: consecutive members change mode at a rate near 2p(1 − p);
     * a drifting neuron's old and new shapes follow each other in time (rate ≈ 0) */
    const float p = (float)least / (float)n;
    if (!(ci->sp_switch >= SPLIT_MIX * 2.0f * p * (1.0f - p))) return i;
    const int32_t j = nks_free_slot(s, ci->channel);
    if (j < 0 || j == i) return i;
    const int32_t keep = n0 >= n1 ? 0 : 1;
    const size_t KL = nks_KL(s);
    const float *u = axis_of(s, i);
    const float inv = 1.0f / ci->sp_norm;
    float *ti = nks_raw(s, i), *tj = nks_raw(s, j);
    const float mk = ci->sp_m[keep] * inv, mo = ci->sp_m[1 - keep] * inv;
    for (size_t q = 0; q < KL; q++) {
        tj[q] = ti[q] + mo * u[q];
        ti[q] += mk * u[q];
    }
    cluster *cj = &s->cl[j];
    *cj = *ci;
    cj->unit = -1;
    cj->given = 0;
    cj->fit_n = 0;
    cj->fit_sum = 0.0f;
    cj->follow = 0;
    cj->since_link = 0;
    cj->n_found = 0;      /* i's unlabelled members stay i's */
    nks_twin_reset(s, j);
    cj->count = ci->sp_k[1 - keep];
    ci->count = ci->count > ci->sp_k[1 - keep] ? ci->count - ci->sp_k[1 - keep] : 1;
    for (int32_t t = 0; t < 2; t++) {
        const int32_t q = t == 0 ? i : j;
        cluster *cq = &s->cl[q];
        cq->spread = 1.0f;     /* both start their δ statistics afresh */
        cq->spread2 = 1.0f;
        nks_split_reset(s, q);
        if (s->has_basis) nks_project(s, nks_raw(s, q), s->feat + (size_t)q * KL);
        nks_recentre(s, q);
        nks_refresh(s, q);
    }
    s->cl[i].sib = j;
    s->cl[j].sib = i;
    s->st.splits++;
    s->st.candidates++;
    /* the new cluster is born at once (a link or a succession would only find the neuron it
     * was split from: its templates on the neighbouring channels) */
    if (s->st.live_units < s->cfg.max_units && nks_spike_like(s, j)) {
        cj->unit = s->st.next_unit++;
        s->st.live_units++;
        s->st.births++;
        nks_emit(k, NK_SORT_BIRTH, cj->unit, -1, cj->channel, sample);
    }
#ifdef NK_SPLIT_DEBUG
    fprintf(stderr, "split ch %d unit %d -> %d n %lld/%lld sep %.1f sigma %.1f within %.1f t %lld\n",
            ci->channel, ci->unit, cj->unit, (long long)n0, (long long)n1, (double)sep,
            (double)sqrtf(ci->sigma2), (double)sqrtf(within2), (long long)sample);
#endif
    return i;
}
