/* nk_features.h — per-bin BCI features over all channels.
 *
 * Bins are aligned to the absolute sample index: bin b covers samples [b·B, (b+1)·B).
 * Per bin and channel:
 *   counts[c] — detected spikes (threshold crossings after de-duplication) with sample in the bin;
 *   power[c]  — spike-band power, mean of x² over the bin's samples (binary32, summed in time
 *               order), in counts².
 * Events reach the kernel `latency` samples late (the detector's decision delay), so bin b is
 * emitted once sample (b+1)·B + latency − 1 has been processed: it is final when emitted, and the
 * same bins come out whatever the block size. A bin whose first samples preceded the stream's
 * start reports the mean over the samples it saw (n_samples tells how many).
 *
 * Gaps (nk_features_resume): the bins that ended before the gap are emitted with the samples
 * they saw; a bin that straddles the gap goes on counting only the samples that arrived; bins
 * wholly inside the gap are never emitted (no samples, no invented zeros).
 */
#ifndef NK_FEATURES_H
#define NK_FEATURES_H
#include <stdint.h>
#include "nk_detect.h"

NK_API_BEGIN
/* cffi-begin */
typedef struct nk_features nk_features;
int nk_features_new(int32_t n_channels, int32_t bin_samples, int32_t latency,
                    nk_features **out);
/* Upper bound on bins one call with n_samples rows can emit. */
int32_t nk_features_max_bins(const nk_features *f, int32_t n_samples);
/* events must be sorted by sample (as nk_detect emits them). Outputs, capacity rows each:
 * bin_index [cap], bin_samples_seen [cap], counts [cap][C] int32, power [cap][C] float32. */
int nk_features_process(nk_features *f, const float *data, int32_t n_samples, int64_t first_sample,
                        const nk_event *events, int32_t n_events, int64_t *bin_index,
                        int32_t *bin_samples_seen, int32_t *counts, float *power, int32_t capacity,
                        int32_t *n_bins);
/* Most bins one nk_features_resume call can emit. */
int32_t nk_features_max_resume_bins(const nk_features *f);
/* The input jumps to resume_sample (≥ the next expected sample): counts `events` (the spikes
 * decided at the gap's edge, sorted), emits every bin that ended before resume_sample (bin
 * order, outputs as in process, capacity ≥ nk_features_max_resume_bins) and continues there. */
int nk_features_resume(nk_features *f, const nk_event *events, int32_t n_events,
                       int64_t resume_sample, int64_t *bin_index, int32_t *bin_samples_seen,
                       int32_t *counts, float *power, int32_t capacity, int32_t *n_bins);
/* Events whose bin had already been emitted (should stay 0). */
int64_t nk_features_late(const nk_features *f);
void nk_features_reset(nk_features *f);
void nk_features_free(nk_features *f);
/* cffi-end */
NK_API_END

#endif
