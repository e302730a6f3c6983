/* nk_sort_overlap.c — near-synchronous overlaps (overlap_penalty > 0): two neurons whose spikes
 * come a few samples apart give one detected event and one snippet; the residual of the best
 * single template has no peak away from the first spike's, so the peel (nk_sort_peel.c) cannot
 * see the second. Here the snippet is compared at the detection peak with pairs of mature
 * units (loaded, or with ≥ adapt_spikes members): x ≈ a1·T1(· + s1) + a2·T2(· + s2), both scales
 * fitted together by 2×2 least squares in the scale range from the start; the pair is taken
 * when it lowers ‖x − …‖² (plus the scale prior) below the best single's by more than an extra
 * spike's penalty (overlap_penalty·σ² and the single's own variability). Model: nk_sort.h
 * "Overlap". Constants tuned with bench.sorting_losses --calibrated on the extended tune seeds
 * (dense32 0,1,5,6,7; si_static32 0,1,5,6), pooled medians against 0.907 / 0.945 off. */
#include "nk_sort_internal.h"

/* samples the second template may slide by: 2 / 3 / 5 / 6 / 8 gave dense32 0.911 / 0.911 /
 * 0.915 / 0.914 / 0.918, si_static32 0.946 / 0.948 / 0.950 / 0.951 / 0.952; at 8 a small
 * si_static32 seed 6 unit took 320 other neurons' spikes as the second of pairs (its accuracy
 * 0.818 -> 0.721), at 6 none did */
#define OV_LAG 6
#define OV_NS (2 * OV_LAG + 1)
#define OV_FIRST 3     /* first spikes tried: the best single fits (distinct units) */
#define OV_FSLIDE 1    /* … each at a slide of at most this (2: no change) */
/* The single fit's own variability counted against the pair (as the peel's PEEL_OWN), at lag
 * 2: 0 (and no δ bound, OV_FIT) gave false pairs (dense32 0.911 -> 0.901, false peeled spikes
 * on seed 5 66 -> 142), 10 fewer true ones (dense32 well detected 90 -> 87); 6 at lag 8: no
 * better than 3. */
#define OV_OWN 3.0f
/* Only snippets whose best single fit among the channel's mature units has δ (noise budget
 * with its own variability, scale prior) above OV_GATE are tried: cost. 1.2: 22 % of dense32's
 * and 19 % of si_static32's snippets tried, every tune result the same as with all tried
 * (1.6: 20 %, si_static32 seed 0 slightly different; 2.5: 15 %). */
#define OV_GATE 1.2f
/* The matcher's δ (nk_sort.c, the same budget and prior on the window without its first and
 * last sample) of the best mature cluster at or under OV_PREGATE ends the search before the
 * gate's own fits: those were most of the search's time on the snippets that leave at the gate
 * (cost). */
#define OV_PREGATE 0.8f
#define OV_GMIN 0.75f  /* both scales, as the peel's PEEL_GMIN (no measurable effect here) */
/* Each spike of the pair must have crossed the detector's threshold alone (its template's
 * peak on its own channel × its scale ≥ OV_DETECT × k·σ): without it small units were given
 * as the second of big units' misfits (si_static32 seed 5: false peeled spikes 148 -> 402
 * with it off, 164 with it on). */
#define OV_DETECT 1.0f
/* The pair's δ must lie within OV_FIT (or the first's limit, if lower): 1.5 / 2 / the limit
 * alone (at lag 8) gave the same medians; with no bound at all (lag 2) false peeled spikes
 * rose on both families (dense32 0.911 -> 0.908). */
#define OV_FIT 2.0f
/* A second is tried only where it alone would fit the snippet at a scale ≥ OV_SCREEN at some
 * slide (a spike in the pair at ≥ OV_GMIN of its template shows there unless the first cancels
 * it): cost. 0.4 and 0.6: the same overlaps in every tune run. */
#define OV_SCREEN 0.6f

/* Σ_p Σ_l a[p][l]·b[p][l + d] over the l with l + d inside the window. Four running sums
 * (l mod 4), added in a fixed order at the end: the same rounding on every target (no FMA,
 * -ffp-contract=off), and four independent additions in flight instead of one chain — this
 * loop is most of the overlap search's time. */
static float dot_lag(const float *a, const float *b, int32_t K, int32_t L, int32_t d) {
    const int32_t lo = d < 0 ? -d : 0, hi = d > 0 ? L - d : L;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int32_t p = 0; p < K; p++) {
        const float *ap = a + (size_t)p * (size_t)L, *bp = b + (size_t)p * (size_t)L + d;
        int32_t l = lo;
        for (; l + 4 <= hi; l += 4) {
            s0 += ap[l] * bp[l];
            s1 += ap[l + 1] * bp[l + 1];
            s2 += ap[l + 2] * bp[l + 2];
            s3 += ap[l + 3] * bp[l + 3];
        }
        for (; l < hi; l++) s0 += ap[l] * bp[l];
    }
    return (s0 + s1) + (s2 + s3);
}

static float clampf(float g, float lo, float hi) {
    if (!(g >= lo)) return lo;
    return g > hi ? hi : g;
}

/* ‖x − a·P − b·Q‖² − ‖x‖² for ⟨x,P⟩ = xa, ⟨x,Q⟩ = xb, ‖P‖² = aa, ‖Q‖² = bb, ⟨P,Q⟩ = ab. */
static float quad(float a, float b, float xa, float xb, float aa, float bb, float ab) {
    return -2.0f * a * xa - 2.0f * b * xb + a * a * aa + 2.0f * a * b * ab + b * b * bb;
}

/* Both scales least squares inside [lo, hi]² (a convex quadratic: the interior optimum or the
 * best of the four edges). Returns ‖x − a·P − b·Q‖² − ‖x‖². */
static float solve2(float xa, float xb, float aa, float bb, float ab, float lo, float hi,
                    float *ao, float *bo) {
    const float det = aa * bb - ab * ab;
    if (det > 1e-6f * aa * bb) {
        const float a = (xa * bb - xb * ab) / det, b = (aa * xb - ab * xa) / det;
        if (a >= lo && a <= hi && b >= lo && b <= hi) {
            *ao = a; *bo = b;
            return quad(a, b, xa, xb, aa, bb, ab);
        }
    }
    float best = FLT_BIG;
    *ao = *bo = 1.0f;
    for (int32_t q = 0; q < 4; q++) {
        float a, b;
        if (q < 2) {   /* a on an edge, b fitted */
            a = q ? hi : lo;
            b = clampf((xb - a * ab) / bb, lo, hi);
        } else {
            b = q == 3 ? hi : lo;
            a = clampf((xa - b * ab) / aa, lo, hi);
        }
        const float r = quad(a, b, xa, xb, aa, bb, ab);
        if (r < best) { best = r; *ao = a; *bo = b; }
    }
    return best;
}

/* Places cluster j (of channel c2) in channel c's snippet frame: slot by slot, zero where c's
 * snippet has no slot for one of c2's neighbours. */
static void place(const nk_sort *s, int32_t c, int32_t j, float *out) {
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, c2 = s->cl[j].channel;
    const float *T = s->raw + (size_t)j * nks_KL(s);
    if (c2 == c) {
        memcpy(out, T, nks_KL(s) * sizeof(float));
        return;
    }
    memset(out, 0, nks_KL(s) * sizeof(float));
    for (int32_t q = 0; q < K; q++) {
        const int32_t ch = s->nb[c2 * K + q];
        const int32_t p = ch < 0 ? -1 : nks_slot_of(s, c, ch);
        if (p >= 0) memcpy(out + (size_t)p * (size_t)L, T + (size_t)q * (size_t)L,
                           (size_t)L * sizeof(float));
    }
}

/* Would the detector have reported cluster j's spike at scale g alone: its peak on its own
 * channel (at pre) reaches OV_DETECT × the detection threshold there? */
static int detectable(const nk_sort *s, int32_t j, float g, float sig2) {
    const int32_t c2 = s->cl[j].channel, q = nks_slot_of(s, c2, c2), L = s->cfg.n_samples;
    if (q < 0) return 0;
    const float v = g * s->raw[(size_t)j * nks_KL(s) + (size_t)q * (size_t)L + s->cfg.pre];
    const float sg2 = s->sig2c[c2] > 0.0f ? s->sig2c[c2] : sig2;
    const float thr = OV_DETECT * s->cfg.detect_threshold;
    return v * v >= thr * thr * sg2;
}

int nks_mature(const nk_sort *s, const cluster *cj) {
    return cj->channel >= 0 && cj->unit >= 0 && (cj->given || cj->count >= s->cfg.adapt_spikes);
}

int32_t nks_overlap(nk_sort *s, const nk_event *events, int32_t n, int32_t e, const float *x,
                    float match_delta, sink *k) {
    /* a mature cluster the matcher already found within OV_PREGATE: no overlap tried (the
     * matcher's δ is the gate's on a window two samples shorter, OV_PREGATE < OV_GATE) */
    if (!(match_delta > OV_PREGATE)) return -1;
    const nk_event *ev = &events[e];
    const int32_t K = s->cfg.n_neighbors, L = s->cfg.n_samples, U = s->cfg.max_clusters;
    const int32_t c = ev->channel, pre = s->cfg.pre;
    const size_t KL = nks_KL(s);
    const float sig = ev->threshold / s->cfg.detect_threshold, sig2 = sig * sig;
    const float r = s->cfg.scale_range, glo = 1.0f - r, ghi = 1.0f + r;
    const float prior = s->cfg.scale_prior, ee = s->cfg.relative_tolerance;
    const float D = sig2 * (float)(s->kvalid[c] * L);
    const float kappa = s->cfg.overlap_penalty * sig2;
    float xx = 0.0f;
    for (size_t i = 0; i < KL; i++) xx += x[i] * x[i];
    /* the best single fit among the channel's mature units (the gate; the first unit that
     * fits within OV_GATE ends it: most snippets leave here) */
    float d1 = FLT_BIG;
    for (int32_t u = 0; u < U && d1 > OV_GATE; u++) {
        const int32_t j = c * U + u;
        if (!nks_mature(s, &s->cl[j])) continue;
        const float *T = s->raw + (size_t)j * KL;
        const float tt = dot_lag(T, T, K, L, 0);
        if (!(tt > 0.0f)) continue;
        for (int32_t d = -OV_FSLIDE; d <= OV_FSLIDE; d++) {
            const float xt = dot_lag(x, T, K, L, d), g = clampf(xt / tt, glo, ghi);
            const float rr = xx - 2.0f * g * xt + g * g * tt;
            const float dl = rr / (D + ee * ee * g * g * tt) + prior * (g - 1.0f) * (g - 1.0f);
            if (dl < d1) d1 = dl;
        }
    }
    if (!(d1 < FLT_BIG) || !(d1 > OV_GATE)) return -1;
    /* candidates: the mature units of the channel, then of its neighbours' (one cluster per
     * unit, the own channel's first), placed in the snippet's frame */
    int32_t cj[OV_MAX], nc = 0;
    float *P = s->ov;
    for (int32_t p = 0; p < K && nc < OV_MAX; p++) {
        const int32_t c2 = s->nb[c * K + p];
        if (c2 < 0 || (p > 0 && c2 == c)) continue;
        for (int32_t u = 0; u < U && nc < OV_MAX; u++) {
            const int32_t j = c2 * U + u;
            if (!nks_mature(s, &s->cl[j])) continue;
            int32_t dup = 0;
            for (int32_t q = 0; q < nc; q++) dup |= s->cl[cj[q]].unit == s->cl[j].unit;
            if (dup) continue;
            place(s, c, j, P + (size_t)nc * KL);
            cj[nc++] = j;
        }
    }
    if (nc < 2) return -1;
    float xp[OV_MAX][OV_NS], tt[OV_MAX], sc[OV_MAX], sg[OV_MAX], gm[OV_MAX];
    for (int32_t q = 0; q < nc; q++) {
        const float *T = P + (size_t)q * KL;
        tt[q] = dot_lag(T, T, K, L, 0);
        sc[q] = FLT_BIG; sg[q] = 1.0f; gm[q] = 0.0f;
        for (int32_t d = -OV_LAG; d <= OV_LAG; d++) {
            xp[q][d + OV_LAG] = dot_lag(x, T, K, L, d);
            if (tt[q] > 0.0f && xp[q][d + OV_LAG] > gm[q] * tt[q]) gm[q] = xp[q][d + OV_LAG] / tt[q];
            if (!(tt[q] > 0.0f) || d < -OV_FSLIDE || d > OV_FSLIDE) continue;
            const float g = clampf(xp[q][d + OV_LAG] / tt[q], glo, ghi);
            const float rr = xx + quad(g, 0.0f, xp[q][d + OV_LAG], 0.0f, tt[q], 1.0f, 0.0f);
            if (rr < sc[q]) { sc[q] = rr; sg[q] = g; }
        }
    }
    /* the best single (its energy test charges the scale prior in residual units) */
    int32_t b1 = -1;
    for (int32_t q = 0; q < nc; q++)
        if (sc[q] < FLT_BIG && (b1 < 0 || sc[q] + D * prior * (sg[q] - 1.0f) * (sg[q] - 1.0f)
                                             < sc[b1] + D * prior * (sg[b1] - 1.0f) * (sg[b1] - 1.0f)))
            b1 = q;
    if (b1 < 0) return -1;
    const float single = sc[b1] + D * prior * (sg[b1] - 1.0f) * (sg[b1] - 1.0f);
    const float own = OV_OWN * ee * ee * sg[b1] * sg[b1] * tt[b1];
    /* the first spikes to try: the OV_FIRST best singles */
    int32_t first[OV_FIRST], nfst = 0;
    for (int32_t f = 0; f < OV_FIRST; f++) {
        int32_t bq = -1;
        for (int32_t q = 0; q < nc; q++) {
            int32_t used = 0;
            for (int32_t i = 0; i < nfst; i++) used |= first[i] == q;
            if (!used && sc[q] < FLT_BIG && (bq < 0 || sc[q] < sc[bq])) bq = q;
        }
        if (bq < 0) break;
        first[nfst++] = bq;
    }
    int32_t bi = -1, bj = -1, bsi = 0, bsj = 0;
    float bcost = single - kappa - own, ba = 1.0f, bb = 1.0f;   /* the pair must beat this */
    for (int32_t f = 0; f < nfst; f++) {
        const int32_t i = first[f];
        const float *Ti = P + (size_t)i * KL;
        for (int32_t j = 0; j < nc; j++) {
            if (j == i || !(tt[j] > 0.0f) || gm[j] < OV_SCREEN) continue;
            const float *Tj = P + (size_t)j * KL;
            float cross[2 * (OV_LAG + OV_FSLIDE) + 1];
            for (int32_t d = -(OV_LAG + OV_FSLIDE); d <= OV_LAG + OV_FSLIDE; d++)
                cross[d + OV_LAG + OV_FSLIDE] = dot_lag(Ti, Tj, K, L, d);
            for (int32_t si = -OV_FSLIDE; si <= OV_FSLIDE; si++)
                for (int32_t sj = -OV_LAG; sj <= OV_LAG; sj++) {
                    float a = 1.0f, b = 1.0f;
                    const float ab = cross[sj - si + OV_LAG + OV_FSLIDE];
                    const float rp = xx + solve2(xp[i][si + OV_LAG], xp[j][sj + OV_LAG], tt[i],
                                                 tt[j], ab, glo, ghi, &a, &b);
                    const float cost = rp + D * prior * ((a - 1.0f) * (a - 1.0f)
                                                         + (b - 1.0f) * (b - 1.0f));
                    if (cost < bcost) {
                        bcost = cost; bi = i; bj = j; bsi = si; bsj = sj; ba = a; bb = b;
                    }
                }
        }
    }
    if (bi < 0 || ba < OV_GMIN || bb < OV_GMIN) return -1;
    /* the pair must explain the snippet: within the first's acceptance limit */
    const cluster *ci = &s->cl[cj[bi]], *cj2 = &s->cl[cj[bj]];
    const float rp = bcost - D * prior * ((ba - 1.0f) * (ba - 1.0f) + (bb - 1.0f) * (bb - 1.0f));
    const float den = D + ee * ee * (ba * ba * tt[bi] + bb * bb * tt[bj]);
    const float dp = (rp > 0.0f ? rp : 0.0f) / den
                     + prior * ((ba - 1.0f) * (ba - 1.0f) + (bb - 1.0f) * (bb - 1.0f));
    const float lim = nks_limit_of(s, ci, ci->channel);
    if (!(dp <= (lim < OV_FIT ? lim : OV_FIT))) return -1;
    if (!detectable(s, cj[bi], ba, sig2) || !detectable(s, cj[bj], bb, sig2)) return -1;
    /* the event's label goes to the one larger at the detection peak, the other is reported */
    const int32_t p0 = nks_slot_of(s, c, c);
    float vi = 0.0f, vj = 0.0f;
    if (p0 >= 0) {
        const int32_t mi = pre + bsi, mj = pre + bsj;
        const float *Ti = P + (size_t)bi * KL + (size_t)p0 * (size_t)L;
        const float *Tj = P + (size_t)bj * KL + (size_t)p0 * (size_t)L;
        vi = (mi >= 0 && mi < L) ? fabsf(ba * Ti[mi]) : 0.0f;
        vj = (mj >= 0 && mj < L) ? fabsf(bb * Tj[mj]) : 0.0f;
    }
    const int swap = vj > vi;
    const int32_t q1 = swap ? bj : bi, q2 = swap ? bi : bj, s2 = swap ? bsi : bsj;
    const cluster *c2l = swap ? ci : cj2;
    nks_pair pr;
    pr.j2 = cj[q2];
    pr.c2 = c2l->channel;
    pr.sample = ev->sample - s2;   /* the cluster's peak (at pre in its frame) slid by s2 */
    pr.scale = swap ? ba : bb;
    pr.sig2 = s->sig2c[pr.c2] > 0.0f ? s->sig2c[pr.c2] : sig2;
    pr.residual = rp;
    pr.single = single;
    /* the detector reported the second spike itself (beyond the exclusion): sorted there */
    pr.detected = nks_detected(s, events, n, e, pr.c2, pr.sample);
    if (pr.detected) return -1;
    nks_pair_emit(s, s->cl[cj[q1]].unit, &pr, k);
    s->st.overlaps++;
    return s->cl[cj[q1]].unit;
}
