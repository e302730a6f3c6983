/* nk_filter.h — Butterworth design and causal IIR biquad cascades over all channels.
 *
 * Design (nk_butter_sos): digital Butterworth by the bilinear transform with pre-warping, as
 * scipy.signal.butter(order, ..., output="sos"): analog prototype poles
 *     p_k = exp(i·π·(2k + n + 1) / (2n)),  k = 0 … n−1,
 * moved to the target band (low: p·W, high: W/p, band: roots of s² − p·B·s + W0² with
 * W = 2·fs·tan(π·f/fs), B = W2 − W1, W0² = W1·W2), mapped with z = (2fs + s)/(2fs − s). Zeros sit
 * at z = −1 (low), z = +1 (high), or one of each per section (band). Poles are paired into
 * second-order sections (complex-conjugate pairs, then real poles two by two); the overall gain
 * is spread evenly over the sections. Output rows are [b0 b1 b2 a0 a1 a2] with a0 = 1. Design is
 * double precision; it runs once, not per block.
 *
 * Processing (nk_bandpass_process): transposed direct form II per section, binary32 state,
 *     y = b0·x + s1;  s1 = b1·x − a1·y + s2;  s2 = b2·x − a2·y
 * evaluated in exactly that order (no FMA), so results are bit-identical across architectures.
 * Input int16 (implant ADC counts), output float32 in the same units (counts).
 *
 * LFP band (nk_lfp_process): the same cascade (a low-pass design) followed by keeping every
 * `decimation`-th sample, counted from absolute sample index 0 so that block boundaries do not
 * change which samples are kept.
 */
#ifndef NK_FILTER_H
#define NK_FILTER_H
#include <stdint.h>

#include "nk_common.h"

NK_API_BEGIN
/* cffi-begin */
#define NK_BUTTER_LOW 0
#define NK_BUTTER_HIGH 1
#define NK_BUTTER_BAND 2
#define NK_FILTER_MAX_SECTIONS 16

/* Designs a Butterworth filter; writes n_sections rows of 6 doubles to sos_out.
 * f_hi is ignored for LOW/HIGH (f_lo is the corner). Returns the number of sections written,
 * or a negative nk_status. */
int nk_butter_sos(int32_t order, int32_t btype, double f_lo, double f_hi, double fs,
                  double *sos_out, int32_t max_sections);

typedef struct nk_bandpass nk_bandpass;
/* sos: n_sections rows of [b0 b1 b2 a0 a1 a2] (a0 must be 1). NULL on bad arguments or memory. */
int nk_bandpass_new(int32_t n_channels, const double *sos, int32_t n_sections,
                    nk_bandpass **out);
/* in: int16 [n_samples][n_channels]; out: float32 [n_samples][n_channels]. */
int nk_bandpass_process(nk_bandpass *f, const int16_t *in, float *out, int32_t n_samples);
/* Same, for float input (for chaining or re-filtering). in may equal out. */
int nk_bandpass_process_f32(nk_bandpass *f, const float *in, float *out, int32_t n_samples);
void nk_bandpass_reset(nk_bandpass *f);
/* Sets the state to the steady state for the constant input x0[c] on each channel (as if x0
 * had been fed forever): after a gap the filter resumes without a step, so an ADC offset does
 * not ring through the band-pass as a spike. Computed in double, stored in binary32. */
int nk_bandpass_settle(nk_bandpass *f, const int16_t *x0);
void nk_bandpass_free(nk_bandpass *f);

typedef struct nk_lfp nk_lfp;
int nk_lfp_new(int32_t n_channels, const double *sos, int32_t n_sections, int32_t decimation,
               nk_lfp **out);
/* Writes floor-aligned decimated rows to out (capacity max_out rows); *n_out gets the count.
 * first_sample is the absolute index of in's first row. */
int nk_lfp_process(nk_lfp *f, const int16_t *in, int32_t n_samples, int64_t first_sample,
                   float *out, int32_t max_out, int32_t *n_out);
void nk_lfp_reset(nk_lfp *f);
/* As nk_bandpass_settle. */
int nk_lfp_settle(nk_lfp *f, const int16_t *x0);
void nk_lfp_free(nk_lfp *f);
/* cffi-end */
NK_API_END

#endif
