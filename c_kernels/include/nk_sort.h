/* nk_sort.h — online spike sorting: per-channel template clusters, global unit ids.
 *
 * Input: the snippet kernel's output for one block — events (peak sample, peak channel c,
 * threshold k·σ_c) and waveforms x[K][L] on c's K neighbours (nk_snippet.h). Output: the
 * event's `unit` field (−1: not sorted) and a list of unit life-cycle events.
 *
 * Model (two levels, all arrays sized at new()):
 *
 *   channel c ── up to U clusters, each a template F[K][D] in the snippet space of c
 *                (D = L without a basis; D ≤ L rows of a per-channel basis B[D][L] with one)
 *   cluster   ── carries a global unit id, or −1 while it is a candidate
 *   unit id   ── unique, never reused; one unit may own clusters on several channels (a neuron
 *                whose peak moves between neighbouring contacts, by noise or by drift)
 *
 * Per spike on channel c, with σ = threshold / k and f = x (or f[p] = B·x[p]):
 *     δ_j = min_{s ∈ {0,±1}} ‖f − F_j(· + s)‖² / (σ² · K_c · M)
 * (K_c: valid neighbour slots of c; without a basis the template slides by ≤ 1 sample over the
 * inner M = L − 2 samples, with one M = D and no slide), a noise-normalised squared distance
 * (≈ 1 + 1/n_j for a member of a cluster of n_j spikes in white noise). Robust amplitude
 * handling (both off when 0): the template may be scaled, F_j → a·F_j with a ∈ [1 − r, 1 + r]
 * fitted by least squares and charged scale_prior·(a − 1)² (bursts, amplitude jitter); and
 * the noise budget counts a template's own variability, σ²·K_c·M + ε²·‖F_j‖² in the
 * denominator (a large unit's spikes vary by a fraction ε of its size, not by σ alone). The
 * same distance compares templates for merges and links. Cluster j accepts the
 * spike when δ_j ≤ m_j·(1 + 1/n_j) + new_distance·sd_j, m_j and sd_j being the running mean
 * (clamped to 1–2.5) and deviation (floored at twice white noise's, capped at 0.6) of its
 * members' δ, started from a prior of 16 white-noise members. The nearest accepting cluster
 * takes the spike; with none, the spike seeds a new candidate cluster.
 * A member moves its template by w = 1 / min(n_j, adapt_spikes) (running mean, then an
 * exponential memory of adapt_spikes spikes: slow drift). A candidate that reaches
 * birth_spikes becomes a unit (NK_SORT_BIRTH) unless it has joined a unit on a neighbouring
 * channel first (link, below).
 * Merge: after an update, a cluster on the same channel within δ ≤ merge_distance (+ ≤ 0.5 for
 * young templates; template to template, σ² of the updated cluster, ±1-sample alignment) is
 * absorbed (count-weighted mean); distinct ids are merged into the older (NK_SORT_MERGE:
 * `other` absorbed into `unit`; every cluster of `other` is relabelled). With merge_dims > 0 the
 * allowance for a real difference is counted in merge_dims noise dimensions instead of the
 * snippet's K_c·M: clusters merge when ‖F_i − a·F_j‖² ≤ σ²·(K_c·M·y + merge_dims ·
 * merge_distance) + ε²·‖F‖²·(merge_distance + y) (y: the young-template allowance above; the
 * scale prior added as in δ). Two small neurons whose templates differ by far more than a
 * spike's noise (matched-filter separable) but by less than σ²·K_c·M — a few hundred σ² on a
 * 6-channel snippet — stay apart (low SNR; see SorterConfig.merge_dims). Only while no
 * templates are loaded (cold start): a calibrated run keeps the whole snippet's allowance (the
 * host's sorter already said which neurons differ, and a burst's smaller spikes — a template at
 * ≈ 0.7 of the loaded one — must still merge back into it).
 * Link: a candidate on c and a unit cluster on a neighbour b are the same neuron when each
 * lists the other's channel among its neighbours, their templates agree on the shared channels
 * (δ ≤ link_distance) and each template is nearly as large on the other's channel
 * (≥ link_ratio of its own peak). Checked for a candidate from its first spike on: it joins
 * that unit at once (no BIRTH), which follows a neuron whose peak moves to a new contact.
 * With link_dims > 0 the allowance for a real difference is counted in link_dims noise
 * dimensions, as the merge's: ‖F_i − F_j‖² over the m shared channels ≤ σ²·(m·M·y +
 * link_dims · link_distance) + ε²·‖F_i‖²·(m / K_c)·(link_distance + y), y = 1/n_i + 1/n_j the
 * noise of the two templates; a small neuron next to another is born, not joined to it. As
 * merge_dims, only while no templates are loaded.
 * Birth needs a spike-like template: its own-channel waveform swings to the opposite sign after
 * the peak (≥ 10 % of it); one-signed slow waves that cross the threshold are not units.
 * Drift (successions): a candidate about to be born whose own-channel waveform has the shape
 * (correlation ≥ 0.97, ±1 sample) and size (within ×1.4) of a unit cluster on its channel or a
 * neighbour that has taken no spike since the candidate's first one, and been silent for 2 of
 * its mean intervals, continues that unit (no BIRTH; counted in links and successions): the
 * neuron whose spikes stopped fitting its templates when the probe moved. Calibrated units
 * follow the probe the same way.
 * Bursts: a neuron's spikes late in a burst are smaller (×0.6–0.8), too small for its template
 * and its scale prior, so they seed a candidate of their own. A candidate about to be born
 * whose spikes came, at least 2 in 3, within burst_samples after a spike of the same unit
 * cluster on its channel, and whose template is that cluster's shape at some scale within
 * 1 ± scale_range (δ with no scale prior ≤ merge_distance + the young-template allowance),
 * joins that unit instead (a link; its template stays apart, for the burst's smaller spikes).
 * Two neurons that merely share a channel follow each other that often only by chance.
 * Retire: a candidate silent for candidate_samples is freed quietly; a unit cluster silent for
 * retire_samples is freed, and when a unit's last cluster goes the unit retires
 * (NK_SORT_RETIRE). When a channel's U slots are full the oldest silent candidate is recycled;
 * with none, the spike stays unsorted (counted). A spike that no cluster accepts (an overlap,
 * or the first spikes of a neuron not yet born) is still labelled with the nearest unit when
 * its δ is within label_distance × that unit's limit, or when the template core (peak channel,
 * 4 samples before to 8 after the peak) fits within 3 σ² per sample; it does not move the
 * unit's template. Clusters loaded from the host are never merged or linked with another
 * loaded unit (the host's sorter already decided they differ).
 *
 * Overlaps (peel = 1, nk_sort_peel.c): the detector reports one event for two spikes of
 * neighbouring neurons closer than its exclusion window. After a spike is labelled by a unit
 * cluster (accepted, or within label_distance), that template is subtracted from the snippet
 * (its slide, least-squares scale); where the residual still crosses k·σ of a channel (≥ 2
 * samples from the first peak, ≥ 8 samples before the window's end), the unit clusters of that
 * channel are fitted to the residual at that time (±1 sample, over the channels and samples the
 * two windows share, noise budget σ²·n + ε²·‖T₂‖² + 3·ε²·a²·‖T₁‖²) and the best one within
 * its acceptance limit is reported as a second spike (NK_SORT_PEELED: sample, unit, channel,
 * other = the first spike's unit, amplitude = its template's peak at the fitted scale,
 * threshold = k·σ of that channel) unless a detected event lies within 3 samples of it on that
 * channel. A snippet no unit cluster accepts is first tried as such a pair: when the nearest
 * unit's template fits once the second spike is removed, both are labelled and the snippet
 * seeds no candidate. Peeled spikes never move templates.
 * Refit (peel = 2): the pair is tried with each of the channel's 3 nearest unit clusters as
 * the first spike (the second spike distorts which is nearest), and a second spike must also
 * explain ≥ 0.6 of the residual's energy beyond its noise, over the whole snippet:
 * ‖r‖² − ‖r − a₂·T₂‖² ≥ 0.6·(‖r‖² − σ²·K_c·L) (a peak a template fits only in part is mostly
 * the first spike's misfit or a third neuron).
 *
 * Joint (peel_joint = 1, with peel): the second spike is fitted together with the first:
 * x ≈ a₁·T₁ + a₂·T₂ with both scales least squares in the scale range at once (a 2×2 system,
 * clamped), so that a first template that alone would stretch over part of the second no
 * longer hides it; the second's δ is taken on x − a₁·T₁ at the joint a₁, must lie within 0.7
 * of its limit, and the pair must lower ‖x − …‖² below the first alone's by ≥ 0.3 of that
 * residual's energy beyond its noise. An outlier no cluster accepts is tried as a pair with
 * each of its channel's 3 nearest unit clusters as the first (those whose first fits once the
 * second is removed), and the pair that leaves least of the snippet is taken; a second spike
 * the detector reported itself counts as explained there (and is not reported again).
 *
 * Overlap (overlap_penalty > 0, with peel; nk_sort_overlap.c): two neurons firing within a
 * few samples of each other give one event whose residual after the best single template has no peak away
 * from the first (the peel above needs one ≥ 2 samples off). Before any cluster learns from the
 * snippet, it is compared with pairs of mature units (loaded, or ≥ adapt_spikes members) of
 * its channel and its neighbours' (their templates placed in the snippet's frame): the first
 * among the 3 best single fits (slide ≤ 1), the second any other unit at a slide ≤ 6 samples;
 * x ≈ a₁·T₁ + a₂·T₂ with both scales least squares in the scale range together (2×2, clamped).
 * The best pair is taken when its squared residual plus the scale prior of both is below the
 * best single's by more than overlap_penalty·σ² + 3·ε²·a²·‖T‖² (the single's own variability),
 * its δ is within min(2, the first's limit), both scales reach 0.75, and each spike alone would
 * have crossed the detection threshold on its own channel (peak · scale ≥ k·σ): the event
 * takes the unit larger at the peak, the other is reported (NK_SORT_PEELED) unless the
 * detector reported it itself; neither template learns from the snippet. Only snippets whose
 * best single fit among the channel's mature units has δ > 1.2 are tried (a fifth of them),
 * and none the matcher already fits with a mature cluster within δ 0.8 (cost).
 *
 * Neighbours (subtract = 1, without a basis; nk_sort_xsub.c): before a snippet is matched,
 * the spikes of other neurons that reach into it are subtracted from it: those labelled or
 * peeled before (the newest 64, each at its cluster's template, slide and fitted scale) and
 * the larger events detected 4…L−1 samples after it in the same call that a mature cluster of
 * their channel accepts (at that cluster's slide and fitted scale), each over the channels the
 * two windows share, only where it lowers the snippet's energy and leaves the event's own peak
 * at or above its threshold. Spikes ≤ 3 samples apart are left to the duplicate, peel and
 * overlap rules. Everything after (matching, learning, peeling) sees the cleaned snippet;
 * nk_sort_stats.subtracted counts the subtractions.
 *
 * Splits (split = 1, nk_sort_split.c; off in SorterConfig, see its comment): two similar
 * neurons on one channel (template difference within the merge distance) end up in one
 * cluster, whose limit then follows their joint spread.
 * Each cluster tracks the principal axis of its members' residuals (x − a·T, a stochastic power
 * iteration) and a 1-D 2-means of the members along it; when the two modes are ≥ 8 noise σ and
 * ≥ 4 within-mode deviations apart and the smaller holds ≥ birth_spikes and 15 % of the
 * members, and consecutive members switch modes at ≥ half the rate 2p(1 − p) of two
 * independently firing neurons (not a drifting neuron's old then new shape), T + m_k·axis
 * become two templates: the cluster keeps the larger mode and its id, the
 * other is born at once as a new unit (NK_SORT_BIRTH), and the two are never merged again.
 * Spikes sorted before the split keep their labels (causal). Loaded clusters are not split.
 *
 * Calibration (nk_sort_load_templates): full-probe templates T[n_units][C][L] in filtered
 * counts, aligned so that the peak of the unit's largest channel is at `pre`, plus an optional
 * basis. Everything is validated first; a bad set is refused whole and the state is untouched.
 * A loaded unit gets a mature cluster (n = adapt_spikes) on its peak channel and on each
 * neighbour where |T| reaches link_ratio of its peak (re-aligned to that channel's peak).
 * Unloaded neurons still seed candidates and are born as new units above the largest given id.
 * nk_sort_get_fit reports, per loaded unit, the spikes it accepted since the load, the spikes
 * detected on its peak channel, their mean δ and its template's SNR on the channel's current σ:
 * a unit that takes none of its channel's spikes does not fit the signal (the host says so).
 *
 * Motion (nk_sort_set_positions; nk_sort_motion.c): every spike a loaded cluster accepts
 * votes for a rigid displacement of the probe along its depth: its centre (slot positions
 * weighted by its projection on the loaded template) against the centre the template moved
 * to the current estimate predicts, scaled by how fast that centre moves with the
 * displacement; a clipped running mean of 64 votes. With template moves on, whenever the
 * estimate has moved 1 µm every loaded cluster's template moves with it (the loaded template
 * re-interpolated across the contact positions, the difference added to the adapted
 * template). Unloaded (cold) clusters, and loaded ones without moves, follow by adaptation.
 *
 * Anchor (motion_anchor, with moves): the vote above is local and can settle a contact's
 * pitch off after a step. Every spike also adds its peak-sample magnitudes to an activity
 * map per channel; the map of the last 192 spikes, every 96, is correlated with the map of
 * the first 1024 after the load moved by D (±60 µm); when two agree on a D ≥ 10 µm from the
 * estimate that fits far better, the estimate jumps there and the loaded templates move with
 * it (nk_sort_get_motion_jumps counts it; nk_sort_motion.c).
 *
 * Twins (twin_hi > 0; nk_sort_twin.c): every cluster counts, per other cluster of its channel,
 * the labels it gave while that one existed and how many came twin_lo..twin_hi samples after
 * that one's newest label. Two units' clusters with none, where independent neurons would have
 * given ≥ 3 (Poisson), a template correlation ≥ 0.9 and each its unit's busiest cluster, are
 * one neuron: the younger unit merges into the older (NK_SORT_MERGE). Off by default.
 *
 * Latency: a spike is labelled in the call that receives its snippet (the block that
 * completes it). With late_labels, a candidate's first members — left unlabelled, or labelled
 * only as outliers near another unit — are labelled again by NK_SORT_LABEL events (sample and
 * channel of the spike, its unit) in the call where the candidate becomes a unit: each within
 * candidate_samples of the candidate's next member (measured on dense32: median 0.9 s, at
 * most 6 s after the spike). A caller applies them to the spikes it still holds; the online
 * label stands for the spikes it has already passed on. process never allocates; deterministic (fixed order, binary32, no libm).
 */
#ifndef NK_SORT_H
#define NK_SORT_H
#include <stdint.h>
#include "nk_detect.h"

NK_API_BEGIN
/* cffi-begin */
#define NK_SORT_BIRTH 1
#define NK_SORT_MERGE 2
#define NK_SORT_RETIRE 3
#define NK_SORT_PEELED 4   /* a second spike found under another's snippet (peel > 0) */
#define NK_SORT_LABEL 5    /* an earlier spike (sample, channel) belongs to `unit` (late_labels) */

typedef struct {
    int64_t sample;    /* sample index of the spike (or block end) that caused it */
    int32_t kind;      /* NK_SORT_* */
    int32_t unit;      /* the unit born / surviving / retired */
    int32_t other;     /* MERGE: the id absorbed into `unit`; else −1 */
    int32_t channel;   /* channel of the cluster concerned */
    float amplitude;   /* PEELED: the second spike's peak on `channel` (its template's, at the
                          fitted scale; filtered counts); else 0 */
    float threshold;   /* PEELED: k·σ of `channel` (as a detected event's); else 0 */
} nk_sort_event;

typedef struct {
    int32_t n_channels;
    int32_t n_neighbors;        /* K, as given to the snippet kernel */
    int32_t n_samples;          /* L = pre + post */
    int32_t pre;                /* peak index within a snippet */
    int32_t max_clusters;       /* U: clusters per channel */
    int32_t max_units;          /* live unit ids at once */
    int32_t birth_spikes;       /* spikes for a candidate to become a unit */
    int32_t adapt_spikes;       /* template memory in spikes */
    float detect_threshold;     /* k: σ = event.threshold / k */
    float new_distance;         /* z: acceptance = mean δ of members + z deviations */
    float merge_distance;       /* template–template δ below which clusters merge */
    float link_distance;        /* same, across neighbouring channels */
    float link_ratio;           /* amplitude fraction for a link / a loaded cluster */
    float label_distance;       /* an outlier within this × the nearest unit's limit is
                                   labelled with that unit (0: never) */
    int64_t retire_samples;     /* silence after which a unit cluster is freed */
    int64_t candidate_samples;  /* silence after which a candidate is freed */
    float relative_tolerance;   /* ε: a template's own variability, as a fraction of its
                                   amplitude (amplitude jitter, sub-sample alignment); 0: none */
    float scale_range;          /* r: a spike may match a·template, a ∈ [1 − r, 1 + r], at a
                                   cost of scale_prior·(a − 1)² in δ; 0: no scaling */
    float scale_prior;
    int64_t burst_samples;      /* bursts: a candidate whose spikes mostly follow a unit's spike
                                   on its channel within this many samples, with that unit's
                                   shape at a smaller or larger scale, joins it (0: off) */
    int32_t peel;               /* overlaps: after a spike is sorted, its template is
                                   subtracted from the snippet and a second unit's spike left
                                   in the residual is reported (NK_SORT_PEELED); 0: off;
                                   2: refit (see "Overlaps") */
    int32_t split;              /* a cluster whose members are bimodal along their residuals'
                                   principal axis splits in two (nk_sort_split.c); 0: off */
    int32_t late_labels;        /* a candidate that becomes a unit (birth, link, succession,
                                   burst, merge into a unit) labels its first 8 members: one
                                   NK_SORT_LABEL (sample, unit, channel) per spike, reported in
                                   the call that decides it (see Latency); 0: off */
    int32_t peel_joint;         /* with peel: the first and second spike's scales are fitted
                                   together (two-template least squares, see "Joint"); 0: off */
    int32_t twin_lo;            /* twins (nk_sort_twin.c): two units' clusters on one channel
                                   whose spikes never come more than twin_lo and at most
                                   twin_hi samples apart (past the detector's refractory, inside
                                   the neuron's), where independent neurons would have given
                                   several such pairs by chance, are one neuron and merge */
    int32_t twin_hi;            /* 0: off */
    int32_t motion_anchor;      /* with positions and template moves, after a load: the
                                   depth histogram of all spikes re-anchors a motion estimate
                                   stuck a contact off (see "Anchor"); 0: off */
    float overlap_penalty;      /* with peel, near-synchronous overlaps (nk_sort_overlap.c): a
                                   snippet that a pair of mature units fits better than the best single
                                   by more than this × σ² (plus the first's own variability)
                                   is both spikes (see "Overlap"); 0: off */
    int32_t subtract;           /* neighbours' spikes (labelled before, or larger and
                                   detected after in the same call) are subtracted from a
                                   snippet before it is matched (see "Neighbours"); 0: off */
    float merge_dims;           /* merges: noise dimensions a real template difference is
                                   allowed while no templates are loaded (see "Merge");
                                   0: K_c·M, the whole snippet's */
    float link_dims;            /* links: the same for a candidate's link to a unit on a
                                   neighbour (see "Link"); 0: the shared channels' m·M */
} nk_sort_config;

typedef struct {
    int64_t spikes;             /* snippets seen */
    int64_t labelled;           /* given a unit id */
    int64_t unsorted_full;      /* no free cluster slot */
    int64_t candidates;         /* candidate clusters created */
    int64_t births, merges, links, retirements;
    int64_t successions;        /* new clusters given a silent unit's id (drift; in links) */
    int32_t live_units;
    int32_t active_clusters;
    int32_t next_unit;          /* the id the next birth gets */
    int32_t n_features;         /* D in use */
    int64_t peeled;             /* second spikes found under another's snippet (peel) */
    int64_t splits;             /* clusters split in two (split) */
    int64_t twins;              /* unit merges of twins (twin_hi > 0; also in merges) */
    int64_t overlaps;           /* snippets taken as two near-synchronous spikes (also in
                                   peeled; overlap_penalty > 0) */
    int64_t subtracted;         /* neighbours' spikes subtracted from snippets (subtract) */
} nk_sort_stats;

/* How well one loaded (calibrated) unit fits the signal since the load. */
typedef struct {
    int32_t unit;
    int32_t channel;            /* peak channel of its template */
    int64_t spikes;             /* spikes its clusters accepted since the load */
    int64_t channel_spikes;     /* spikes detected on that channel since the load (a unit
                                   that takes none of them does not fit the signal) */
    float mean_delta;           /* mean δ of the accepted spikes (≈ 1 when it fits) */
    float snr;                  /* template peak / current σ of its channel (0: σ unknown) */
} nk_sort_fit;

typedef struct nk_sort nk_sort;
/* neighbors: [n_channels][K] channel ids or −1 (the first normally the channel itself);
 * basis: [n_features][L] or NULL (no projection: D = L). NK_ERR_ARG or NK_ERR_NOMEM. */
int nk_sort_new(const nk_sort_config *cfg, const int32_t *neighbors, const float *basis,
                int32_t n_features, nk_sort **out);
/* Bytes of state nk_sort_new allocates for cfg (0 if cfg is invalid). */
int64_t nk_sort_memory(const nk_sort_config *cfg);
/* Upper bound on life-cycle events from one call with n_spikes snippets. */
int32_t nk_sort_max_events(const nk_sort *s, int32_t n_spikes);
/* events [n] (unit written in place), waveforms [n][K][L]; now = one past the newest sample
 * the caller has processed (drives retirement). out [capacity ≥ nk_sort_max_events(n)]. */
int nk_sort_process(nk_sort *s, nk_event *events, const float *waveforms, int32_t n,
                    int64_t now, nk_sort_event *out, int32_t capacity, int32_t *n_out);
/* Replaces every cluster with the given units (see above); NK_ERR_ARG (bad values or shape),
 * NK_ERR_CAPACITY (more units than max_units, or a channel without a free slot). */
int nk_sort_load_templates(nk_sort *s, int32_t n_units, const int32_t *unit_ids,
                           const float *templates, int32_t n_channels, int32_t n_samples,
                           const float *basis, int32_t n_features);
/* The detector's threshold k changed (a live threshold change): spikes processed from now on
 * have σ = event.threshold / k. NK_ERR_ARG unless 0 < k < 3e38. */
int nk_sort_set_detect_threshold(nk_sort *s, float k);
int nk_sort_get_stats(const nk_sort *s, nk_sort_stats *out);
/* Cluster table, [n_channels * max_clusters] slots: channel (−1 empty), unit, spikes seen,
 * and the raw template [K][L] (templates may be NULL). */
int nk_sort_get_clusters(const nk_sort *s, int32_t *channel, int32_t *unit, int64_t *count,
                         float *templates, int32_t capacity);
/* Fit of the loaded units (those given by nk_sort_load_templates), one row each in load
 * order; NK_ERR_CAPACITY when capacity is below their number. */
int nk_sort_get_fit(const nk_sort *s, nk_sort_fit *out, int32_t capacity, int32_t *n_out);
/* Contact positions xy [n_channels][2] in µm (y: depth along the probe), which turn on the
 * online motion estimate (see Motion above), and whether the loaded templates move with it
 * (1) or not (0); NULL turns it off. Kept across reset and load. NK_ERR_ARG: n_channels
 * differs, move_templates is not 0 or 1, or a value is not finite. */
int nk_sort_set_positions(nk_sort *s, const float *xy, int32_t n_channels,
                          int32_t move_templates);
/* The rigid motion estimate (µm along y since the last load or reset; > 0: the neurons
 * appear further up the probe) and the spikes that voted for it. */
int nk_sort_get_motion(const nk_sort *s, float *um, int64_t *spikes);
/* How often the anchor (motion_anchor) found the motion estimate a contact off and moved it
 * since the last load or reset: the loaded templates did not fit where the estimate had put
 * them (the host reports it). */
int nk_sort_get_motion_jumps(const nk_sort *s, int64_t *jumps);
void nk_sort_reset(nk_sort *s);
void nk_sort_free(nk_sort *s);
/* cffi-end */
NK_API_END

#endif
