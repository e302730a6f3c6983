/* nk_codec_events.h — compact wire coding of spike events and their snippets (version 1).
 *
 * A BATCH of events (sorted by sample, then channel), optionally with one snippet per event
 * ([K][W] binary32, as nk_snippet emits them), becomes one self-contained byte string:
 *   off size field
 *   0   2    magic "EV"
 *   2   1    version (1)
 *   3   1    flags: bit 0 = snippets present
 *   4   4    n_events (u32 LE)
 *   8   2    K, 10 2 W  (u16 LE; 0 without snippets)
 *   12  4    snippet quantisation step (IEEE binary32 bits, > 0)
 *   16  8    sample of the first event (i64 LE)
 *   24  ..   range-coded payload (the adaptive binary coder of nk_codec.h)
 *   end-4 4  CRC-32 of every byte before it
 * Per event: the time difference to the previous event (adaptive Elias-gamma), the channel
 * (difference to the previous channel when the time difference is 0, else the value), the
 * unit + 1, the amplitude in 1/16 counts (signed gamma). The threshold is not sent (decoded
 * as 0). Snippets: each sample quantised to round(x / step) — reconstruction error ≤ step/2 —
 * and coded as the difference to the previous sample of the same trace, in an activity
 * context per trace position. Amplitudes are exact when they are multiples of 1/16 count.
 */
#ifndef NK_CODEC_EVENTS_H
#define NK_CODEC_EVENTS_H
#include <stdint.h>

#include "nk_common.h"
#include "nk_detect.h"

/* cffi-begin */
#define NK_EVENTS_HEADER 24
/* Upper bound on the coded size of a batch. */
int64_t nk_codec_events_max_size(int32_t n_events, int32_t n_neighbors, int32_t n_samples);
/* snippets: NULL or [n_events][K][W]; step: quantisation step of the snippets (counts). */
int nk_codec_events_encode(const nk_event *events, int32_t n_events, const float *snippets,
                           int32_t K, int32_t W, float step, uint8_t *out, int64_t capacity,
                           int64_t *n_out);
/* Batch fields without decoding: n_events, K, W (any pointer may be NULL). */
int nk_codec_events_peek(const uint8_t *in, int64_t n_bytes, int32_t *n_events, int32_t *K,
                         int32_t *W);
/* snippets: NULL to ignore them, else room for snippet_capacity floats. */
int nk_codec_events_decode(const uint8_t *in, int64_t n_bytes, nk_event *events,
                           int32_t capacity, float *snippets, int64_t snippet_capacity,
                           int32_t *n_events);
/* cffi-end */

#endif
