/* nk_reference.h — common median / common average reference over channel groups.
 *
 * For each time step t and each group g, r_g(t) = median (or mean) of x[t][c] over the channels c
 * of g, and every channel of g becomes x[t][c] − r_g(t). A channel whose group id is −1 is left
 * untouched and does not contribute. Median of an even count is the mean of the two middle
 * values, as numpy.median. Mean is the sum in ascending channel order divided by the count.
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

typedef struct nk_reference nk_reference;
/* group_of_channel: n_channels ids in [-1, n_channels). NULL on bad arguments or memory. */
int nk_reference_new(int32_t n_channels, const int32_t *group_of_channel, int32_t mode,
                     nk_reference **out);
/* In place over data [n_samples][n_channels]. */
int nk_reference_process(nk_reference *r, float *data, int32_t n_samples);
void nk_reference_free(nk_reference *r);
/* cffi-end */
NK_API_END

#endif
