/* nk_codec_events.h — compact wire coding of spike events and their snippets (version 1).
 *
 * A BATCH of events (sorted by sample, then channel), optionally with one snippet per event
 * ([K][W] binary32, as nk_snippet emits them), becomes one self-contained byte string:
 *   1    'E'
 *   1    0x10 | flags (version 1 in the high nibble; bit 0 = snippets present)
 *   var  n_events (unsigned LEB128 varint)
 *   var  K, var W (snippet channels and samples; only with snippets, 1..4096)
 *   4    quantisation step (IEEE binary32 bits, > 0), for amplitudes and snippets
 *   var  sample of the first event (zigzag varint)
 *   ..   range-coded payload (the adaptive binary coder of nk_codec.h)
 *   4    CRC-32 of every byte before it
 * Per event: the time difference to the previous event (adaptive Elias-gamma), the channel
 * (difference to the previous channel when the time difference is 0, else the value), the
 * unit + 1, the amplitude quantised to round(a / step) (signed gamma). The threshold is not
 * sent (decoded as 0). Snippets: each sample quantised to q = round(x / step), coded as
 * q − (q₋₁ + ⌊(q₋₁ − q₋₂)/2⌋) within its trace, with the broadband codec's residual model
 * (starting from its trained state), one model per third of the trace. Reconstruction error of amplitudes and snippet samples ≤ step/2 (exact for
 * multiples of step).
 */
#ifndef NK_CODEC_EVENTS_H
#define NK_CODEC_EVENTS_H
#include <stdint.h>

#include "nk_common.h"
#include "nk_detect.h"

NK_API_BEGIN
/* cffi-begin */
#define NK_EVENTS_HEADER 30 /* upper bound on the batch header (without the CRC) */
/* Upper bound on the coded size of a batch. */
int64_t nk_codec_events_max_size(int32_t n_events, int32_t n_neighbors, int32_t n_samples);
/* snippets: NULL or [n_events][K][W]; step: quantisation step of amplitudes and snippets
 * (counts, > 0). */
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
NK_API_END

#endif
