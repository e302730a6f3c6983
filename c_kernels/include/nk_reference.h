/* nk_reference.h — common reference over channel groups: median, average, or robust.
 *
 * For each time step t and each group g, r_g(t) = median (or mean) of x[t][c] over the channels c
 * of g, and every channel of g becomes x[t][c] − r_g(t). A channel whose group id is −1 is left
 * untouched and does not contribute. Median of an even count is the mean of the two middle
 * values, as numpy.median. Mean is the sum in ascending channel order divided by the count.
 *
 * Robust (NK_REF_ROBUST): a common median leaks spikes. On a dense probe a large unit is seen on
 * most channels of a group, the median follows it, and every other channel gets an inverted
 * copy that crosses the threshold (measured: 23 % false events on a 32-channel two-column
 * probe). The robust reference removes only what is common:
 *     r_g(t) = β_g · median{ x[t][c] : c in g, |x[t][c]| < 3 σ_c }
 * — the median of the channels not carrying a spike at t (σ_c: a running median of |x| of the
 * input, / 0.6745; all of g's channels when fewer than a quarter are quiet: a common-mode
 * event larger than the spikes) — scaled by β_g ∈ [0, 1], the share of that median which is
 * common to the whole group. Every ROBUST_STRIDE = 4 rows, the same quiet median over each of
 * two halves of g (given, e.g. the upper and lower half of the probe; by default the first and
 * second half of g's channels) gives m0, m1; running medians of |(m0 + m1)/2| and |m0 − m1|
 * (s_r, s_d) estimate the reference's spread and that of its noise alone (a common-mode
 * signal cancels in m0 − m1; independent noise and local activity do not), and
 *     β = 1 − s_d² / (4 s_r²)
 * is the least-squares weight of the reference: ≈ 1 when a common-mode signal dominates, ≈ 0
 * when there is none (subtracting would only add the median's noise and spike copies). β is 0
 * for the first 64 updates. The running medians are Robbins–Monro trackers as nk_detect's
 * (steps 0.1 decaying as 2/t to 1/τ; τ = 60000 samples unless set), so the result depends on
 * the history, never on the block size.
 *
 * Selection is exact: quickselect with median-of-three pivots on a scratch copy (no allocation
 * per call). Results depend only on the values, never on the block size.
 */
#ifndef NK_REFERENCE_H
#define NK_REFERENCE_H
#include <stdint.h>

#include "nk_common.h"

NK_API_BEGIN
/* cffi-begin */
#define NK_REF_MEDIAN 0
#define NK_REF_AVERAGE 1
#define NK_REF_ROBUST 2

typedef struct nk_reference nk_reference;
/* group_of_channel: n_channels ids in [-1, n_channels). NULL on bad arguments or memory. */
int nk_reference_new(int32_t n_channels, const int32_t *group_of_channel, int32_t mode,
                     nk_reference **out);
/* In place over data [n_samples][n_channels]. */
int nk_reference_process(nk_reference *r, float *data, int32_t n_samples);
/* NK_REF_ROBUST only: the halves that estimate β (half_of_channel: 0 or 1 per channel; NULL:
 * each group's first and second half in channel order) and the time constant of the running
 * medians in samples (≥ 1). Restarts the running statistics. NK_ERR_ARG or NK_ERR_NOMEM. */
int nk_reference_set_robust(nk_reference *r, const int32_t *half_of_channel, float tau_samples);
/* β per group (1 in the median and average modes), nk_reference_groups(r) values. */
int nk_reference_get_share(const nk_reference *r, float *share_out);
/* Number of groups (the largest group id + 1). */
int32_t nk_reference_groups(const nk_reference *r);
void nk_reference_free(nk_reference *r);
/* cffi-end */
NK_API_END

#endif
