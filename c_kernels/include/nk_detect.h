/* nk_detect.h — running noise estimate and causal threshold detection over all channels.
 *
 * Noise (per channel, per sample, binary32): a multiplicative stochastic-approximation tracker
 * of the median of |x|,
 *     m ← m · (1 + η)   if |x| > m,      m ← m · (1 − η)   otherwise,
 * whose fixed point is P(|x| > m) = ½ (to O(η)): the median absolute value, robust to spikes
 * because only the sign of |x| − m counts. σ = m / 0.6745 (MAD of a zero-median signal).
 * The step follows a Robbins–Monro schedule, η(t) = max(η_slow, η_fast / (1 + t·η_fast/2)):
 * large at first (m starts at 1 and reaches the noise level within tens of samples), decaying
 * as 2/t, then constant at η_slow (a time constant of 1/η_slow samples: seconds), so the
 * estimate follows slow changes. No detection during the first `warmup` samples.
 *
 * Detection (locally exclusive, as SpikeInterface's "locally_exclusive" but causal):
 * score(t, c) = −x (negative polarity), +x (positive) or |x| (both). Sample (t, c) is a spike when
 *     score(t, c) ≥ k · σ_c,
 *     (score, −t, −c) is the largest key over the window t−D … t+D on c and on every neighbour
 *     of c (adjacency given at construction: spatial de-duplication and peak alignment at once),
 *     the previous spike on c is at least `refractory` samples earlier, and no spike was
 *     accepted on a neighbour within the last `refractory` samples with a score above
 *     score(t, c) / 0.6 (spatial refractory: the smaller late lobes that a causal high-pass
 *     leaves after a large spike are not spikes; another neuron's spike of at least 0.6 of
 *     the first's is).
 * The kernel keeps a ring of the last 2D+1 rows, so sample t is decided when t+D arrives: a
 * fixed latency of D samples, and spikes that straddle blocks are neither lost nor duplicated.
 * Events are emitted in (sample, channel) order. The threshold used is σ_c at the time of the
 * decision, which makes the output independent of the block size.
 *
 * Gaps (nk_detect_resume): when the input jumps (samples never arrived, or the implant
 * restarted), the D samples still waiting for their look-ahead are decided with the window cut
 * at the gap (the missing samples compete with nothing), σ is held, and for `hold_off`
 * samples (at least D) from the resumption nothing is decided and σ is not updated: the
 * filters settle, and no window ever mixes samples from both sides of a gap.
 */
#ifndef NK_DETECT_H
#define NK_DETECT_H
#include <stdint.h>

#include "nk_common.h"

NK_API_BEGIN
/* cffi-begin */
#define NK_POLARITY_NEG 0
#define NK_POLARITY_POS 1
#define NK_POLARITY_BOTH 2

typedef struct {
    int64_t sample;    /* absolute sample index of the peak */
    int32_t channel;   /* peak channel */
    int32_t unit;      /* -1 until sorted */
    float amplitude;   /* filtered value at the peak (signed, counts) */
    float threshold;   /* k·σ at decision time (counts) */
} nk_event;

typedef struct {
    int32_t n_channels;
    int32_t polarity;         /* NK_POLARITY_* */
    float threshold;          /* k: multiples of σ */
    int32_t exclude_sweep;    /* D: half-window in samples (peak alignment, de-duplication) */
    int32_t refractory;       /* samples; ≤ D means none beyond local exclusivity */
    int32_t warmup;           /* samples before the first decision */
    float eta_fast;           /* initial noise step (e.g. 0.1) */
    float eta_slow;           /* final noise step (e.g. 1/(2 s · fs)) */
} nk_detect_config;

typedef struct nk_detect nk_detect;
/* adj_offsets: n_channels + 1 CSR offsets into adj_indices (neighbours, self excluded);
 * both NULL means no neighbours. NK_ERR_ARG (bad settings) or NK_ERR_NOMEM. */
int nk_detect_new(const nk_detect_config *cfg, const int32_t *adj_offsets,
                  const int32_t *adj_indices, nk_detect **out);
/* Upper bound on events one call with n_samples rows can produce. */
int32_t nk_detect_max_events(const nk_detect *d, int32_t n_samples);
/* data: float32 [n_samples][n_channels]; first_sample must continue the previous call. */
int nk_detect_process(nk_detect *d, const float *data, int32_t n_samples, int64_t first_sample,
                      nk_event *events, int32_t capacity, int32_t *n_events);
/* σ per channel (n_channels floats). */
int nk_detect_noise(const nk_detect *d, float *sigma_out);
/* Overrides σ per channel (e.g. restored after a restart); ends warm-up. */
int nk_detect_set_noise(nk_detect *d, const float *sigma);
/* Seeds σ per channel before the first sample (e.g. from calibration: the noise the hub
 * measured on this probe), so the detector needs no noise warm-up: decisions start after
 * `warmup` samples (the filters' settling time) instead of the configured warm-up, and the
 * step schedule continues as if σ had already been estimated from `prior_samples` samples
 * (η starts at η_fast / (1 + prior·η_fast/2), not η_fast: the seed is kept, yet a wrong one is
 * corrected within ~prior samples). NK_ERR_STATE once samples were processed (until reset,
 * which forgets the seed). Unseeded detectors behave exactly as before. */
int nk_detect_seed_noise(nk_detect *d, const float *sigma, int32_t warmup, int32_t prior_samples);
/* Changes k at run time. */
int nk_detect_set_threshold(nk_detect *d, float k);
int32_t nk_detect_latency(const nk_detect *d);
/* The input jumps to resume_sample (≥ the next expected sample): decides the samples waiting
 * for look-ahead (events as in process, at most nk_detect_max_events(d, D)), then continues at
 * resume_sample with σ held and max(hold_off, D) quiet samples. */
int nk_detect_resume(nk_detect *d, int64_t resume_sample, int32_t hold_off, nk_event *events,
                     int32_t capacity, int32_t *n_events);
void nk_detect_reset(nk_detect *d);
void nk_detect_free(nk_detect *d);
/* cffi-end */
NK_API_END

#endif
