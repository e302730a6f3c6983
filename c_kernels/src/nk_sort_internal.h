/* nk_sort_internal.h — the online sorter's state and the helpers its sources share (not part of
 * the API; see nk_sort.h for the model). Sources: nk_sort.c (state, process), nk_sort_model.c
 * (distances, templates), nk_sort_units.c (merge, link, succession, birth, retirement),
 * nk_sort_calib.c (loaded templates and their fit), nk_sort_motion.c (probe motion),
 * nk_sort_peel.c (overlaps), nk_sort_split.c (splitting a cluster of two neurons). */
#ifndef NK_SORT_INTERNAL_H
#define NK_SORT_INTERNAL_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nk_common.h"
#include "nk_sort.h"

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
/* Burst test: at least BURST_NUM / BURST_DEN of a candidate's members followed its lead. */
#define BURST_NUM 2
#define BURST_DEN 3
/* Refit (peel = 2): an outlier no cluster accepts is tried as an overlap (nk_sort_peel.c) with
 * each of the PEEL_FIRSTS nearest unit clusters of its channel as the first spike (the nearest
 * by δ is often the wrong one: the second spike distorts the fit). Tune seeds, ground-truth
 * templates, with PEEL_XF: 1 -> 3, dense32 median 0.900/0.901 -> 0.906/0.904, si_static32
 * seed 0 0.907 -> 0.914. */
#define PEEL_FIRSTS 3
/* Late labels (late_labels = 1): the first FOUND_MAX members of a candidate are labelled
 * (NK_SORT_LABEL) when it becomes a unit; members past them keep their online label.
 * Measured on the tune seeds (dense32; 16 instead of 8: no change). */
#define FOUND_MAX 8
/* Twins (twin_hi > 0, nk_sort_twin.c): two units' clusters on one channel merge when chance
 * predicts at least TWIN_EXPECT of their spike pairs inside the refractory window and there is
 * none, and their templates correlate by at least TWIN_CORR. */
#define TWIN_EXPECT 3.0f
#define TWIN_CORR 0.9f
#define TWIN_SLIDE 2        /* samples the correlation may slide one template by */
/* Overlap (overlap_penalty > 0, nk_sort_overlap.c): mature units a snippet's pair is drawn
 * from (its channel's, then its neighbours'). */
#define OV_MAX 16

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
    int64_t follow;         /* candidates: members that came within burst_samples after a
                               spike of cluster `lead` (then of unit `lead_unit`) */
    int32_t lead, lead_unit;
    /* split test (nk_sort_split.c): members seen, ‖axis‖, the two modes on the axis */
    int64_t sp_n;
    int64_t sp_k[2];        /* members per mode */
    float sp_norm;
    float sp_m[2], sp_v[2]; /* mode centres and within-mode variances (counts, counts²) */
    int32_t sib;            /* the cluster it was split from / into (never merged), or −1 */
    int32_t sp_last;        /* mode of the previous member (−1: none) */
    float sp_switch;        /* running mean of "this member's mode differs from the last's" */
    int32_t n_found;        /* candidates (late_labels): unlabelled members held in `found` */
} cluster;

/* A labelled (or peeled) spike whose template is subtracted from the snippets it reaches into
 * (nk_sort_xsub.c): cluster j, x[l] ≈ scale·T_j[l + shift] in the snippet at `sample`. */
typedef struct {
    int64_t sample;
    int32_t j, shift;
    float scale;
} xs_spike;
#define XS_MAX 64   /* the newest labelled spikes kept (a few ms of a 128-channel probe) */

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
    int64_t *lead_t;        /* [C] sample of the newest spike a unit's cluster accepted */
    int32_t *lead_i;        /* [C] and that cluster (−1: none yet) */
    nk_sort_stats st;
    float *res;             /* [K·L] scratch: a snippet's residual (nk_sort_peel.c) */
    int64_t *det_t;         /* [C] sample of the newest detected spike per channel */
    float *pos;             /* [C][2] contact positions, µm (motion; valid when has_pos) */
    int32_t has_pos;
    float *frozen;          /* [C·U][K·L] loaded clusters' templates as loaded */
    float *f2;              /* [3·K·L] scratch */
    float motion;           /* rigid motion estimate along depth, µm (since the load) */
    float motion_applied;   /* the motion the loaded templates are moved to */
    float *an_ref, *an_cur; /* [C] anchor: reference and block activity maps (nk_sort_motion.c) */
    float *an_half;         /* [C] the newest half block's map */
    int64_t an_halves;      /* half blocks since the reference */
    int32_t *an_col;        /* [C][2] the nearest contact below / above in the column (−1) */
    int64_t an_ref_n, an_cur_n;   /* spikes in each */
    float an_pending;       /* a block's disagreeing anchor, waiting for the next (FLT_BIG: none) */
    int64_t motion_jumps;   /* re-anchored jumps since the load */
    int64_t motion_spikes;  /* spikes that voted */
    int32_t motion_move;    /* move the loaded templates with the estimate */
    float *axis;            /* [C·U][K·L] split test: principal axis of members' residuals */
    float *res2;            /* [K·L] scratch: a member's residual (nk_sort_split.c) */
    int32_t loaded_below;   /* unit ids below this were loaded (0: none); see nks_both_loaded */
    float *det_a;           /* [C] amplitude of that spike (nk_sort_peel.c: duplicates) */
    int64_t *found;         /* [C·U][FOUND_MAX] late_labels: samples of a candidate's members
                               that left the sorter unlabelled (nk_sort_units.c) */
    float *p1;              /* [K·L] peel_joint: the first spike's template placed in the
                               snippet (nk_sort_peel.c); NULL when off */
    int32_t *tw_n;          /* [C·U][U] twins: spikes cluster i took while slot u was in use */
    int32_t *tw_hit;        /* [C·U][U] … of them twin_lo..twin_hi after slot u's newest */
    int64_t *tw_last, *tw_first, *tw_seen;   /* [C·U] labels given through each cluster */
    float *ov;              /* [OV_MAX][K·L] overlap: candidate templates placed in a
                               snippet's frame (nk_sort_overlap.c); NULL when off */
    xs_spike *xs;           /* [XS_MAX] ring: the newest labelled spikes (nk_sort_xsub.c) */
    int32_t xs_head;        /* its next slot */
    float *xc;              /* [K·L] scratch: the snippet with its neighbours' spikes removed */
};


typedef struct {
    nk_sort_event *out;
    int32_t n, capacity;
} sink;

/* Units a and b are two different loaded units: the calibration sorter told them apart, so
 * the hub never merges or links them (one is the other's neighbour after the probe moved).
 * Ids of units born after a load are ≥ the load's largest id + 1. Measured: drift_zigzag32
 * tune seed 1, ground-truth templates, two loaded neighbours merged with an unlisted neuron
 * (3 neurons at accuracy 0); MountainSort5 templates, mean accuracy 0.750 -> 0.822. */
static inline int nks_both_loaded(const nk_sort *s, int32_t a, int32_t b) {
    return a != b && a >= 0 && b >= 0 && a < s->loaded_below && b < s->loaded_below;
}

static inline size_t nks_KL(const nk_sort *s) {
    return (size_t)s->cfg.n_neighbors * (size_t)s->cfg.n_samples;
}
static inline float *nks_raw(nk_sort *s, int32_t i) { return s->raw + (size_t)i * nks_KL(s); }
static inline const float *nks_feat_of(const nk_sort *s, int32_t i) {
    return (s->has_basis ? s->feat : s->raw) + (size_t)i * nks_KL(s);
}
static inline int32_t nks_dims(const nk_sort *s) { return s->cfg.n_neighbors * s->D; }

void nks_project(const nk_sort *s, const float *x, float *out);
void nks_twin_reset(nk_sort *s, int32_t i);
void nks_twin_observe(nk_sort *s, int32_t i, int64_t sample);
float nks_sqdist(const float *a, const float *b, int32_t n);
float nks_scaled_dist(const float *x, const float *t, int32_t n, float lo, float hi,
                      float *a);
float nks_match(const nk_sort *s, const float *x, const float *t, float den, float prior,
                int32_t *shift);
float nks_budget(const nk_sort *s, float sig2, int32_t n_slots, float energy);
/* Least-squares scale xt / tt clamped to 1 ± scale_range (1 when tt is 0). */
float nks_fit_scale(const nk_sort *s, float xt, float tt);
/* Σ x[l]·T[l + shift] and Σ T[l + shift]² over the template's samples inside the window. */
void nks_dot_at(const nk_sort *s, const float *x, const float *T, int32_t shift, float *xt,
                float *tt);
void nks_refresh(nk_sort *s, int32_t i);
void nks_blend(const nk_sort *s, float *dst, const float *src, int32_t sh, float a, float b);
int32_t nks_slot_of(const nk_sort *s, int32_t c, int32_t ch);
float nks_amp(const float *w, int32_t L);
int32_t nks_argmax_abs(const float *w, int32_t L);
float nks_limit_of(const nk_sort *s, const cluster *cj, int32_t c);
int32_t nks_core_match(const nk_sort *s, const float *x, int32_t c, float inv_sig2);
void nks_recentre(nk_sort *s, int32_t i);
float nks_shape_corr(const nk_sort *s, const float *a, const float *b, float *ratio);
void nks_emit(sink *k, int32_t kind, int32_t unit, int32_t other, int32_t channel,
              int64_t sample);
void nks_merge_units(nk_sort *s, int32_t keep, int32_t gone, int32_t channel, int64_t sample,
                     sink *k);
int32_t nks_merge_clusters(nk_sort *s, int32_t a, int32_t b, int32_t sh, int64_t sample,
                           sink *k);
int32_t nks_find_link(const nk_sort *s, int32_t i);
int32_t nks_find_successor(const nk_sort *s, int32_t i);
int nks_spike_like(const nk_sort *s, int32_t i);
int32_t nks_after_update(nk_sort *s, int32_t i, int64_t sample, sink *k);
int32_t nks_free_slot(const nk_sort *s, int32_t c);
void nks_retire(nk_sort *s, int64_t now, sink *k);
int nks_basis_ok(const float *basis, int32_t D, int32_t L);
int32_t nks_peak_channel(const float *T, int32_t C, int32_t L, float *peak);
void nks_place(nk_sort *s, const float *T, int32_t g, int32_t unit);
int32_t nks_calib_free_slot(nk_sort *s, int32_t c, int64_t now);
void nks_follow(nk_sort *s, int32_t i, int64_t sample);
int32_t nks_find_burst_lead(const nk_sort *s, int32_t i);
/* A second spike found under event e's snippet (nk_sort_peel.c): its cluster, the channel
 * of the residual's peak, its sample and fitted scale, σ² of that channel, and (peel_joint)
 * ‖x − a1·T1 − a2·T2‖² of the pair over the snippet (single: ‖x − a1·T1‖², set whenever
 * the first was fitted). how: PAIR_* below. */
typedef struct {
    int32_t j2, c2;
    int64_t sample;
    float scale, sig2, residual, single;
    int32_t detected;       /* the detector reported a spike there (PAIR_EXPLAIN) */
} nks_pair;
#define PAIR_FIRST_FITS 1   /* nks_pair_find: the first must fit once the second is removed */
#define PAIR_SCALE 2        /* … the second's scale must reach PEEL_GMIN */
#define PAIR_EXPLAIN 4      /* … a second the detector reported counts (not emitted again) */
int nks_pair_find(nk_sort *s, const nk_event *events, int32_t n, int32_t e, const float *x,
                  int32_t j1, int32_t sh1, int32_t check, nks_pair *out);
void nks_pair_emit(nk_sort *s, int32_t u1, const nks_pair *pr, sink *k);
/* peel_joint: an outlier no cluster accepted is the pair (of those whose first fits once the
 * second is removed) that leaves least of the snippet, with each of fj[0 … nf) as the first;
 * its second is emitted and the index into fj returned, else −1 (nk_sort_peel.c). */
int32_t nks_joint_outlier(nk_sort *s, const nk_event *events, int32_t n, int32_t e,
                          const float *x, const int32_t *fj, const int32_t *fsh, int32_t nf,
                          sink *k);
int nks_peel(nk_sort *s, const nk_event *events, int32_t n, int32_t e, const float *x,
             int32_t j1, int32_t sh1, int32_t check, sink *k);
/* Was a spike detected on channel ch within 3 samples of t (this call or before)? */
int nks_detected(const nk_sort *s, const nk_event *events, int32_t n, int32_t e, int32_t ch,
                 int64_t t);
/* overlap_penalty > 0: event e's snippet as two near-synchronous spikes of mature units; the
 * second is emitted (NK_SORT_PEELED) and the first's unit returned, else −1. match_delta: the
 * smallest nks_match δ of the channel's mature clusters (FLT_BIG: none), a cheap first gate. */
int32_t nks_overlap(nk_sort *s, const nk_event *events, int32_t n, int32_t e, const float *x,
                    float match_delta, sink *k);
/* Mature: a unit's cluster that is loaded or has adapt_spikes members (the overlap search's
 * candidates). */
int nks_mature(const nk_sort *s, const cluster *cj);
/* Neighbours (subtract; nk_sort_xsub.c): the ring of labelled spikes, reset; a spike placed
 * as cluster j at `shift` with a known scale (push) or its scale fitted to snippet x (label);
 * event e's snippet with its neighbours' spikes removed (s->xc), or its own when none is. */
void nks_xs_reset(nk_sort *s);
void nks_xs_push(nk_sort *s, int64_t sample, int32_t j, int32_t shift, float scale);
void nks_xs_label(nk_sort *s, int64_t sample, int32_t j, int32_t shift, const float *x);
const float *nks_xs_clean(nk_sort *s, const nk_event *events, int32_t n, int32_t e,
                          const float *waveforms);
int nks_duplicate(const nk_sort *s, const nk_event *events, int32_t n, int32_t e,
                  const float *x, float local_delta);
void nks_motion_place(nk_sort *s, int32_t i);
void nks_motion_observe(nk_sort *s, int32_t i, const float *x, int32_t shift, float sig2);
void nks_anchor_reset(nk_sort *s);
void nks_anchor_observe(nk_sort *s, int32_t c, const float *x, float sig);
void nks_split_reset(nk_sort *s, int32_t i);
void nks_split_observe(nk_sort *s, int32_t i, const float *x, int32_t sh);
int32_t nks_split(nk_sort *s, int32_t i, int64_t sample, sink *k);
void nks_found_push(nk_sort *s, int32_t i, int64_t sample);
void nks_found_flush(nk_sort *s, int32_t i, int32_t unit, sink *k);
void nks_twin_check(nk_sort *s, int32_t i, int64_t sample, sink *k);

#endif
