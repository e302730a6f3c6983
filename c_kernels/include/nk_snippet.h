/* nk_snippet.h — waveform snippets around detected spikes.
 *
 * For an event at sample s on channel c the snippet is x[s − pre … s + post − 1] on the K
 * channels neighbours[c][0..K) (the first is normally c itself; −1 pads with zeros), laid out
 * [K][pre + post] in binary32. The kernel keeps a ring of the last pre + post + max_block + 1
 * rows, holds events until their last sample has arrived, and emits each snippet in the call
 * whose block completes it. Events that cannot be served (queue full, or samples before the
 * start of the stream or of the segment after a gap) are counted in `dropped`, never silently
 * lost.
 */
#ifndef NK_SNIPPET_H
#define NK_SNIPPET_H
#include <stdint.h>
#include "nk_detect.h"

NK_API_BEGIN
/* cffi-begin */
typedef struct {
    int32_t n_channels;
    int32_t pre, post;        /* samples before the peak / from the peak on */
    int32_t n_neighbors;      /* K: channels per snippet */
    int32_t max_block;        /* largest n_samples per call */
    int32_t max_pending;      /* events waiting for their post samples */
} nk_snippet_config;

typedef struct nk_snippet nk_snippet;
/* neighbors: [n_channels][n_neighbors] channel ids or -1. */
int nk_snippet_new(const nk_snippet_config *cfg, const int32_t *neighbors, nk_snippet **out);
/* out_events gets the events whose snippets are complete (same order as they arrived);
 * out_waveforms [capacity][K][pre+post]. capacity must be ≥ max_pending. */
int nk_snippet_process(nk_snippet *s, const float *data, int32_t n_samples, int64_t first_sample,
                       const nk_event *events, int32_t n_events, nk_event *out_events,
                       float *out_waveforms, int32_t capacity, int32_t *n_out);
/* The input jumps to resume_sample (a gap): the events still waiting for samples that will
 * never come, and `events` (spikes decided at the gap's edge), are dropped and counted; no
 * snippet ever reaches back across the gap. */
int nk_snippet_resume(nk_snippet *s, int64_t resume_sample, const nk_event *events,
                      int32_t n_events);
int64_t nk_snippet_dropped(const nk_snippet *s);
int32_t nk_snippet_pending(const nk_snippet *s);
void nk_snippet_reset(nk_snippet *s);
void nk_snippet_free(nk_snippet *s);
/* cffi-end */
NK_API_END

#endif
