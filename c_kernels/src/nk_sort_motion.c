/* nk_sort_motion.c — online rigid motion of the probe, estimated from the spikes the loaded
 * (calibrated) units accept, and their templates moved with it (nk_sort.h).
 *
 * Positions. A spike's position is the centre of mass of its neighbour slots' positions,
 * weighted by a_p = ⟨x_p, F_p⟩ / ‖F_p‖: its projection on the cluster's template as loaded
 * (F, frozen at the load) on that slot. The weights are signed (noise averages out instead of
 * biasing the centre towards the quiet slots).
 *
 * Moving a template by D µm along the probe's depth (y): the signal a contact at depth y sees
 * is the loaded one at y − D. I(y), the loaded template of the cluster's slots in slot p's
 * column as a function of depth (linear between the slot depths), gives the moved template
 * F_p + I(y_p − D) − I(y_p) (exactly F at D = 0; a kernel smoother was tried first: flat at
 * the contacts, it moved the centres by 0.05 µm per µm).
 *
 * Estimate. For the moved template at the applied motion D_a, the expected centre y_t and its
 * slope g = dy_t/dD (the neighbourhood truncates the footprint: g < 1) are kept per cluster.
 * A spike accepted by a loaded cluster moves the global estimate
 *     D ← D + clip((y_spike − y_t) / g, ±MOTION_CLIP) / MOTION_SPIKES
 * (a robust running mean: one spike moves it by at most MOTION_CLIP / MOTION_SPIKES µm).
 * With moves on, when D is MOTION_STEP from D_a, every loaded cluster's template (as adapted
 * since) moves by the difference of the two moved loaded templates, and D_a ← D. Measured on
 * the tune seeds (MountainSort5 templates, quick drifting families): the estimate follows
 * smooth drift within ~2–4 µm RMS. Moving the templates with I averaged over the columns of a
 * depth changed median accuracy by −0.009 … +0.008 (the lateral footprint smeared); along each
 * column, drift_zigzag32 gains 0.005/0.031 per seed (SorterConfig.motion_move). Tried and
 * dropped (tune seeds, calibrated drift_zigzag32 / drift_step32 medians, default first:
 * 0.949/0.956, 0.942/0.942): MOTION_SPIKES 32 0.944/0.953, 0.942/0.928; 128 0.947/0.947,
 * 0.944/0.939; MOTION_STEP 0.5 0.949/0.952, 0.942/0.937; 2 0.944/0.949, 0.943/0.942; a dead
 * band of 3 µm 0.934/0.944 (6 µm: 0.950/0.921); extrapolating beyond the outermost depth with
 * the footprint's slope (not constant) 0.948/0.955, 0.940/0.913. Also tried (tune seeds,
 * calibrated medians per seed, this version first; motion RMS error): voting around the
 * applied motion snapped to a whole contact offset of the column — drift_rigid64 seed 1's
 * runaway gone (16.3 → 3.9 µm) but rigid 0.960/0.972 → 0.960/0.969, drift_zigzag32
 * 0.949/0.956 → 0.944/0.950, drift_step32 0.942/0.942 → 0.943/0.944, drift_nonrigid64
 * 0.961/0.966 → 0.965/0.968; a centre-of-mass vote against the frozen template (no feedback
 * from the moves; slope from the template moved ±MOTION_DD) ran away everywhere (17–23 µm,
 * rigid 0.943/0.962) and fails test_sort_motion. Where the drifting families' calibrated
 * accuracy goes (bench.sorting_timeline, tune seeds): losses of drift_nonrigid64 stay flat
 * over the run, those of drift_rigid64 grow late mostly by one pair of loaded units taking
 * each other's spikes with moves on or off; the first window's excess is the detector's
 * warm-up. Also tried (issue 13, drift_step32: after the +20 µm step of a 20 µm pitch the
 * estimate stays near −9 µm, a whole pitch off, loaded units swapping spikes): a coarse check
 * beside the fine vote, each accepted spike fitted by its frozen template moved by ± one
 * column pitch, a spike counting as a hit when that explains ≥ 16 σ² more energy than the
 * applied one, the estimate jumping by the pitch when the running share (64 spikes) of hits
 * of one side passes a threshold. In the steady state the shares sit at 0.00–0.02; after a
 * step they only reach 0.15–0.25, and slowly. Tune seeds, calibrated medians (pooled) default
 * first: drift_step32 / drift_zigzag32 0.965 / 0.960; threshold 0.1: 0.958 / 0.954; 0.15:
 * 0.962 / 0.951; 0.25: 0.966 / 0.955; 0.35: 0.964 / 0.960 (drift_rigid64 0.970 → 0.968, 2 FP
 * units); also testing ± half a pitch (threshold 0.1 / 0.15 / 0.2): 0.961 / 0.956, 0.966 /
 * 0.952, 0.962 / 0.955. Held-out seeds at 0.35: drift_step32 0.958 → 0.958 (report seed 3's
 * stuck step not caught), drift_rigid64 0.966 → 0.963. Dropped. test_sort_motion's step
 * case from +20 to −20 µm (40 µm pitch) is followed; from −20 to +20 µm the estimate settles
 * ~25 µm off (22 µm RMS), with the coarse check too: a reproduction for the next attempt.
 * Also tried (issue 13, with the anchor: moved loaded templates losing spikes to a
 * neighbour's moved template, drift_step32 extra seed 17 calibrated 0.936, 0.972 with moves
 * off): a per-unit placement, each loaded unit left unmoved while its own accepted spikes
 * favoured its loaded template unmoved over moved (running mean over 32 spikes of the
 * difference in energy explained, scale fitted, over σ²; hysteresis ± T). Tune seeds 0-1 and
 * 5-19, calibrated pooled median / well detected, moves for all 0.966 / 299: T = 0.25-4 σ²
 * 0.966 / 298 (seed 6 0.954, 28 -> 59 spikes taken; seed 12 305 -> 424 taken), 36 σ² 0.966 /
 * 300, 400 σ² as moves for all; seed 17 unchanged at every T (0.936): the units that lose
 * spikes there are never pinned, their own spikes favour the moved placement. Evidence from a
 * unit's accepted spikes cannot see the spikes its neighbour takes (the thief's accepted
 * spikes favour its current placement by selection): the next attempt needs the competition,
 * e.g. the spikes the neighbour accepts, scored against both units' placements. Dropped.
 * Causal, fixed memory (the frozen templates: one copy of the cluster table), no
 * libm (the anchor's square root once per block). */
#include "nk_sort_internal.h"

#define MOTION_SPIKES 64.0f   /* memory of the running estimate, spikes */
#define MOTION_CLIP 20.0f     /* µm: one spike's largest say */
#define MOTION_STEP 1.0f      /* µm between template moves */
#define MOTION_DD 2.0f        /* µm: finite difference for the template's slope in D */
#define MOTION_INFO0 0.04f    /* 1/µm²: a spike whose step is vaguer than ±5 µm weighs < ½ */

/* Slots q of channel c's neighbourhood in column x (contacts within MOTION_COLUMN µm of x
 * across the probe) count; the others do not. */
#define MOTION_COLUMN 1.0f

static int in_column(const nk_sort *s, int32_t cq, float x) {
    const float dx = s->pos[2 * cq] - x;
    return dx <= MOTION_COLUMN && dx >= -MOTION_COLUMN;
}

/* out[l] += scale · I(t)[l]: the template of cluster i's slots (F, [K][L], on channel c) as a
 * function of depth along column x, linear between the nearest slot depths below and above t
 * (slots at one depth averaged), constant beyond the outermost. */
static void interp_add(const nk_sort *s, int32_t c, const float *F, float t, float scale,
                       float *out, float x) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    float ya = -FLT_BIG, yb = FLT_BIG, lo = FLT_BIG, hi = -FLT_BIG;
    for (int32_t q = 0; q < K; q++) {
        const int32_t cq = s->nb[c * K + q];
        if (cq < 0 || !in_column(s, cq, x)) continue;
        const float y = s->pos[2 * cq + 1];
        if (y <= t && y > ya) ya = y;
        if (y >= t && y < yb) yb = y;
        if (y < lo) lo = y;
        if (y > hi) hi = y;
    }
    if (lo > hi) return;                 /* no valid slot */
    if (ya == -FLT_BIG) ya = yb = lo;    /* beyond the outermost depths: constant */
    if (yb == FLT_BIG) yb = ya = hi;
    const float wa = yb > ya ? (yb - t) / (yb - ya) : 1.0f;
    int32_t na = 0, nb_ = 0;
    for (int32_t q = 0; q < K; q++) {
        const int32_t cq = s->nb[c * K + q];
        if (cq < 0 || !in_column(s, cq, x)) continue;
        const float y = s->pos[2 * cq + 1];
        na += y == ya;
        nb_ += y == yb;
    }
    const float sa = scale * wa / (float)(na > 0 ? na : 1);
    const float sb = scale * (1.0f - wa) / (float)(nb_ > 0 ? nb_ : 1);
    for (int32_t q = 0; q < K; q++) {
        const int32_t cq = s->nb[c * K + q];
        if (cq < 0 || !in_column(s, cq, x)) continue;
        const float y = s->pos[2 * cq + 1];
        const float w = (y == ya ? sa : 0.0f) + (y == yb ? sb : 0.0f);
        if (w == 0.0f) continue;
        const float *Fq = F + (size_t)q * (size_t)L;
        for (int32_t l = 0; l < L; l++) out[l] += w * Fq[l];
    }
}

/* out[K][L] ← the frozen template of cluster i moved by D: F_p + I(y_p − D) − I(y_p), I along
 * slot p's own column (columns side by side keep their lateral footprint: averaging them into
 * one depth profile left a two-column probe's moved templates 15 % off instead of 11 %,
 * test_sort_calib.c, and cost drift_zigzag32 calibrated accuracy, see SorterConfig.motion_move). */
static void moved(const nk_sort *s, int32_t i, float D, float *out) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, c = s->cl[i].channel;
    const float *F = s->frozen + (size_t)i * nks_KL(s);
    memcpy(out, F, nks_KL(s) * sizeof(float));
    if (D == 0.0f) return;
    for (int32_t p = 0; p < K; p++) {
        const int32_t cp = s->nb[c * K + p];
        if (cp < 0) continue;
        const float xp = s->pos[2 * cp], yp = s->pos[2 * cp + 1];
        interp_add(s, c, F, yp - D, 1.0f, out + (size_t)p * (size_t)L, xp);
        interp_add(s, c, F, yp, -1.0f, out + (size_t)p * (size_t)L, xp);
    }
}

void nks_motion_place(nk_sort *s, int32_t i) {
    memcpy(s->frozen + (size_t)i * nks_KL(s), nks_raw(s, i), nks_KL(s) * sizeof(float));
}

/* Moves every loaded cluster's template from the applied motion to the current estimate. */
static void apply(nk_sort *s) {
    const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
    const size_t KL = nks_KL(s);
    float *a = s->f2, *b = s->f2 + KL;
    for (int32_t i = 0; i < N; i++) {
        if (s->cl[i].channel < 0 || !s->cl[i].given) continue;
        moved(s, i, s->motion, a);
        moved(s, i, s->motion_applied, b);
        float *r = nks_raw(s, i);
        for (size_t q = 0; q < KL; q++) r[q] += a[q] - b[q];
        if (s->has_basis) nks_project(s, r, s->feat + (size_t)i * KL);
        nks_refresh(s, i);
    }
    s->motion_applied = s->motion;
}

void nks_motion_observe(nk_sort *s, int32_t i, const float *x, int32_t shift, float sig2) {
    if (!s->has_pos || !s->cl[i].given || !(sig2 > 0.0f)) return;
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples;
    const size_t KL = nks_KL(s);
    float *m = s->f2, *up = s->f2 + KL, *dn = s->f2 + 2 * KL;
    moved(s, i, s->motion_applied, m);
    moved(s, i, s->motion_applied + MOTION_DD, up);
    moved(s, i, s->motion_applied - MOTION_DD, dn);
    /* x[l] ≈ a·m[l + shift] + (D − D_a)·a·m'[l + shift] over the inner samples, with the slope
     * m' taken on the side the spike lies (the interpolation bends at the contact depths) */
    float xm = 0.0f, mm = 0.0f, xu = 0.0f, mu = 0.0f, uu = 0.0f, xn = 0.0f, mn = 0.0f, nn = 0.0f;
    for (int32_t p = 0; p < K; p++)
        for (int32_t l = 1; l < L - 1; l++) {
            const size_t o = (size_t)p * (size_t)L, t = o + (size_t)(l + shift);
            const float xv = x[o + (size_t)l], mv = m[t];
            const float uv = (up[t] - mv) / MOTION_DD, nv = (mv - dn[t]) / MOTION_DD;
            xm += xv * mv; mm += mv * mv;
            xu += xv * uv; mu += mv * uv; uu += uv * uv;
            xn += xv * nv; mn += mv * nv; nn += nv * nv;
        }
    if (!(mm > 0.0f)) return;
    const float a = xm / mm;
    if (!(a > 0.5f && a < 2.0f)) return;
    /* least squares for the step given the scale, ⟨x − a·m, a·m'⟩ / (a²‖m'‖²), on each side;
     * the side whose step points its way and explains more of the residual wins */
    const float su = uu > 0.0f ? (xu - a * mu) / (a * uu) : 0.0f;
    const float sn = nn > 0.0f ? (xn - a * mn) / (a * nn) : 0.0f;
    const float gu = su > 0.0f ? su * su * uu : -1.0f, gn = sn < 0.0f ? sn * sn * nn : -1.0f;
    if (gu < 0.0f && gn < 0.0f) return;
    const float step = gu >= gn ? su : sn, dd = gu >= gn ? uu : nn;
    const float info = a * a * dd / sig2;            /* 1 / variance of the step, 1/µm² */
    float d = step + (s->motion_applied - s->motion);
    if (!(d > -FLT_BIG && d < FLT_BIG)) return;       /* overflow in extreme snippets */
    if (d > MOTION_CLIP) d = MOTION_CLIP;
    if (d < -MOTION_CLIP) d = -MOTION_CLIP;
    /* a spike with a vague step says less */
    const float w = info < FLT_BIG ? info / (info + MOTION_INFO0) : 1.0f;
    s->motion += w * d / MOTION_SPIKES;
    s->motion_spikes++;
    const float gap = s->motion - s->motion_applied;
    if (s->motion_move && (gap >= MOTION_STEP || gap <= -MOTION_STEP)) apply(s);
}

/* Anchor (motion_anchor). The vote above is local: it linearises the moved template around
 * the applied motion, so a step of a contact's pitch (drift_step32: +20 µm on a 20 µm pitch)
 * can leave it settled a pitch off, every loaded neuron's spikes then taken by the loaded
 * neighbour its template was moved onto (the spikes agree with the wrong motion, and vote
 * for it). The anchor looks at all spikes instead, without any template: the probe's
 * activity map, per channel the sum over spikes of the peak-sample magnitude above 2σ on each
 * of the spike's neighbour slots. The first ANCHOR_REF spikes after a load fill the
 * reference map; after that the last ANCHOR_BLOCK spikes, every ANCHOR_BLOCK / 2, make a
 * block map, compared with the reference moved by D (each channel against the reference
 * along its own column at its depth less D, linear between contacts; channels whose moved
 * depth leaves the column do not count, nor a D that leaves fewer than half the channels or
 * 4) by their correlation coefficient, for D every ANCHOR_BIN µm within ±ANCHOR_RANGE of 0
 * (refined by a parabola): the anchor. When two consecutive blocks' anchors agree within
 * ANCHOR_AGREE µm, both lie at least ANCHOR_JUMP µm from the estimate and leave at most
 * 1 / ANCHOR_GAIN of the estimate's miss (1 − correlation), the estimate jumps to the anchor
 * (motion_jumps counts it) and the loaded templates move there (motion_anchor 2: re-placed
 * as loaded, then moved, dropping what they adapted to while stuck). Fixed memory: three
 * maps and the column neighbours, 20 bytes per channel. Measured on drift_step32 (tune seeds
 * 0-1 and extra seeds 5-19, MountainSort5 templates; the anchor itself lands within ~3 µm of
 * the truth), pooled calibrated median, this version 0.9659 (0.9639 without): blocks of 128
 * (every 64) 0.9640; on seeds 0-1, 5-9 blocks of 256 without overlap jumped ~1 s later
 * (motion RMS error 6.4 vs 4.9 µm on seed 6); a gain of 3 (or an additive 0.1) missed most
 * stuck steps, 1.5 no different from 2; a 6 µm jump also jumped at the −10 µm steps (seed 0
 * 0.974 -> 0.962), 8 µm 0.9662 (noise); re-placing (2) lost seed 11 (0.955 -> 0.892): the
 * adapted templates are better than the loaded ones. test_sort_motion: −20 → +20 µm
 * followed (24.7 -> 1.5 µm RMS). */
#define ANCHOR_BIN 2.5f
#define ANCHOR_RANGE 60.0f
#define ANCHOR_MAXS 24
#ifndef ANCHOR_REF
#define ANCHOR_REF 1024
#endif
#ifndef ANCHOR_BLOCK
#define ANCHOR_BLOCK 192
#endif
#define ANCHOR_AGREE 5.0f
#ifndef ANCHOR_JUMP
#define ANCHOR_JUMP 10.0f
#endif
#ifndef ANCHOR_GAIN
#define ANCHOR_GAIN 2.0f
#endif

void nks_anchor_reset(nk_sort *s) {
    const size_t C = (size_t)s->cfg.n_channels;
    memset(s->an_ref, 0, C * sizeof(float));
    memset(s->an_cur, 0, C * sizeof(float));
    memset(s->an_half, 0, C * sizeof(float));
    s->an_halves = 0;
    s->an_ref_n = 0;
    s->an_cur_n = 0;
    s->an_pending = FLT_BIG;
    s->motion_jumps = 0;
}

/* Per channel, the nearest contact below and above it in its column (−1: none). */
static void anchor_columns(nk_sort *s) {
    const int32_t C = s->cfg.n_channels;
    for (int32_t c = 0; c < C; c++) {
        int32_t dn = -1, up = -1;
        const float x = s->pos[2 * c], y = s->pos[2 * c + 1];
        for (int32_t q = 0; q < C; q++) {
            if (q == c || !in_column(s, q, x)) continue;
            const float yq = s->pos[2 * q + 1];
            if (yq < y && (dn < 0 || yq > s->pos[2 * dn + 1])) dn = q;
            if (yq > y && (up < 0 || yq < s->pos[2 * up + 1])) up = q;
        }
        s->an_col[2 * c] = dn;
        s->an_col[2 * c + 1] = up;
    }
}

/* The reference map at depth t along channel c's column, linear between contacts; 0 when t
 * is outside the column (*ok cleared). */
static float ref_at(const nk_sort *s, int32_t c, float t, int *ok) {
    int32_t a = c;
    while (s->pos[2 * a + 1] > t) {
        a = s->an_col[2 * a];
        if (a < 0) { *ok = 0; return 0.0f; }
    }
    for (;;) {   /* y_a ≤ t: move up while the next contact is still ≤ t */
        const int32_t u = s->an_col[2 * a + 1];
        if (u >= 0 && s->pos[2 * u + 1] <= t) { a = u; continue; }
        const float ya = s->pos[2 * a + 1];
        if (ya == t) return s->an_ref[a];
        if (u < 0) { *ok = 0; return 0.0f; }
        const float yb = s->pos[2 * u + 1], f = (t - ya) / (yb - ya);
        return (1.0f - f) * s->an_ref[a] + f * s->an_ref[u];
    }
}

/* Correlation coefficient of the block map against the reference moved by D. */
static float anchor_score(const nk_sort *s, float D) {
    double n = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    for (int32_t c = 0; c < s->cfg.n_channels; c++) {
        int ok = 1;
        const float r = ref_at(s, c, s->pos[2 * c + 1] - D, &ok);
        if (!ok) continue;
        const double x = s->an_cur[c], y = r;
        n += 1; sx += x; sy += y; sxx += x * x; syy += y * y; sxy += x * y;
    }
    const int32_t half = s->cfg.n_channels / 2;
    if (n < 4 || n < half) return -1.0f;   /* too little of the probe left to compare */
    const double vx = sxx - sx * sx / n, vy = syy - sy * sy / n;
    if (!(vx > 0 && vy > 0)) return -1.0f;
    return (float)((sxy - sx * sy / n) / sqrt(vx * vy));
}

static void anchor_block(nk_sort *s) {
    float r[2 * ANCHOR_MAXS + 1];
    const int32_t S = ANCHOR_MAXS;
    for (int32_t k = -S; k <= S; k++) r[k + S] = anchor_score(s, (float)k * ANCHOR_BIN);
    int32_t k = 0;
    for (int32_t q = 1; q <= 2 * S; q++)
        if (r[q] > r[k]) k = q;
    float off = 0.0f;   /* parabola through the peak and its neighbours */
    if (k > 0 && k < 2 * S) {
        const float den = r[k - 1] - 2.0f * r[k] + r[k + 1];
        if (den < 0.0f) off = 0.5f * (r[k - 1] - r[k + 1]) / den;
    }
    const float anchor = ((float)(k - S) + off) * ANCHOR_BIN;
    const float at = anchor_score(s, s->motion);
    const float gap = anchor - s->motion;
    /* an estimate the maps cannot judge (a probe too short for the moved map: tetrodes) is
     * left to the vote */
    const int off_est = at > -1.0f && r[k] > -1.0f && (gap >= ANCHOR_JUMP || gap <= -ANCHOR_JUMP)
                        && 1.0f - at >= ANCHOR_GAIN * (1.0f - r[k]);
    if (!off_est) {
        s->an_pending = FLT_BIG;
        return;
    }
    const float d = anchor - s->an_pending;
    if (s->an_pending != FLT_BIG && d <= ANCHOR_AGREE && d >= -ANCHOR_AGREE) {
        s->motion = 0.5f * (anchor + s->an_pending);
        s->motion_jumps++;
        s->an_pending = FLT_BIG;
        if (s->cfg.motion_anchor == 2) {   /* re-place: the loaded templates as loaded */
            const int32_t N = s->cfg.n_channels * s->cfg.max_clusters;
            for (int32_t i = 0; i < N; i++) {
                if (s->cl[i].channel < 0 || !s->cl[i].given) continue;
                memcpy(nks_raw(s, i), s->frozen + (size_t)i * nks_KL(s),
                       nks_KL(s) * sizeof(float));
            }
            s->motion_applied = 0.0f;
        }
        apply(s);
    } else {
        s->an_pending = anchor;
    }
}

void nks_anchor_observe(nk_sort *s, int32_t c, const float *x, float sig) {
    if (!s->cfg.motion_anchor || !s->has_pos || !s->motion_move || s->n_given <= 0) return;
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, pre = s->cfg.pre;
    const int ref = s->an_ref_n < ANCHOR_REF;
    float *map = ref ? s->an_ref : s->an_half;
    for (int32_t p = 0; p < K; p++) {
        const int32_t cp = s->nb[c * K + p];
        if (cp < 0) continue;
        const float v = x[(size_t)p * (size_t)L + (size_t)pre];
        const float w = (v < 0.0f ? -v : v) - 2.0f * sig;
        if (w > 0.0f && w < FLT_BIG) map[cp] += w;
    }
    if (ref) {
        s->an_ref_n++;
        return;
    }
    /* every half block, the block map is the last two halves (an_cur holds the older) */
    if (++s->an_cur_n < ANCHOR_BLOCK / 2) return;
    const size_t C = (size_t)s->cfg.n_channels;
    for (size_t q = 0; q < C; q++) s->an_cur[q] += s->an_half[q];
    if (s->an_halves++ > 0) anchor_block(s);
    memcpy(s->an_cur, s->an_half, C * sizeof(float));
    memset(s->an_half, 0, C * sizeof(float));
    s->an_cur_n = 0;
}

int nk_sort_set_positions(nk_sort *s, const float *xy, int32_t n_channels,
                          int32_t move_templates) {
    if (!s || n_channels != s->cfg.n_channels || move_templates < 0 || move_templates > 1)
        return NK_ERR_ARG;
    if (!xy) {
        s->has_pos = 0;
        return NK_OK;
    }
    for (int32_t c = 0; c < 2 * n_channels; c++)
        if (!(xy[c] > -1.0e7f && xy[c] < 1.0e7f)) return NK_ERR_ARG;
    memcpy(s->pos, xy, (size_t)n_channels * 2 * sizeof(float));
    s->has_pos = 1;
    s->motion_move = move_templates;
    anchor_columns(s);
    nks_anchor_reset(s);
    return NK_OK;
}

int nk_sort_get_motion_jumps(const nk_sort *s, int64_t *jumps) {
    if (!s || !jumps) return NK_ERR_ARG;
    *jumps = s->motion_jumps;
    return NK_OK;
}

int nk_sort_get_motion(const nk_sort *s, float *um, int64_t *spikes) {
    if (!s || !um || !spikes) return NK_ERR_ARG;
    *um = s->motion;
    *spikes = s->motion_spikes;
    return NK_OK;
}
