/* nk_codec.h — streaming lossless codec for broadband int16 data (bitstream version 1).
 *
 * The hub encodes one block (n samples × C channels, sample-major) into one PACKET; the host
 * decodes packets in order with the same library. Everything is integer arithmetic: the same
 * input gives the same bytes on every architecture.
 *
 * STREAM HEADER (sent once, before the packets; a receiver needs it to decode anything)
 *   off size field
 *   0   3    magic "NKC"
 *   3   1    bitstream version (1)
 *   4   2    n_channels            (u16 LE, 1..4096)
 *   6   4    sample_rate           (u32 LE, informational)
 *   10  4    resync_interval       (u32 LE, samples; 0 = resync only at the first packet)
 *   14  2    n_levels              (u16 LE; 0 = identity map, else 2..65535)
 *   16  4    ladder_bytes          (u32 LE) then that many bytes: the LADDER, range coded
 *   ..  4    CRC-32 (IEEE) of every byte before it
 *   The ladder is the sorted list of distinct int16 levels the source produces (an ADC's
 *   transfer function, e.g. 10-bit codes scaled to 16 bits): first level as 16 raw bits, then
 *   each second difference of the levels with the residual binarisation below. Samples are
 *   coded as the INDEX of their level; a sample that is not on the ladder is escaped.
 *
 * PACKET (one block, all channels)
 *   0   1    sync 0xA7
 *   1   1    flags: bit 0 = resync point (every model restarts from its initial state),
 *                   bit 1 = stored (payload = the raw int16 LE samples, used when coding
 *                           would expand them; the next packet is then a resync point),
 *                   bits 2..7 = 0
 *   2   2    sequence number (u16 LE, +1 per packet, wraps)
 *   4   4    first sample index (u32 LE, per channel, wraps)
 *   8   2    n_samples per channel (u16 LE, 1..65535)
 *   10  ..   range-coded payload: channel 0's n samples, then channel 1's, ... (may be empty)
 *   end-4 4  CRC-32 of every byte before it
 *
 * RANGE CODER: LZMA's binary coder (32-bit range, carry through a cached byte), 12-bit
 *   probabilities. Its first output byte is always 0 and is not sent; the code ends with the
 *   value of the final interval that has the most trailing zero bits, and up to 4 trailing
 *   zero bytes are dropped (the decoder reads zeros past the end, at most 4).
 *   A bit model holds two 16-bit estimates of P(1) updated by count-based rates
 *   max(1/(n+1.5), 2^-9) and max(1/(n+1.5), 2^-11) for n < 1000 bits seen, then 2^-9 / 2^-11;
 *   the coder uses their mean.
 *
 * PER-CHANNEL MODEL (restarted at a resync point; otherwise carried across packets)
 *   At the start of each channel's run in a packet: one bit (p = 1/2) "off-ladder samples
 *   follow"; when set, every sample is preceded by an adaptive escape bit, and an escaped
 *   sample is 16 raw bits (its value), the predictor continuing with the nearest level.
 *   Prediction on s = level index − centre (centre = index of the level nearest 0), all
 *   stage predictions in Q4, weights Q14:
 *     stage B: normalised LMS, 24 taps over past s, w += 2^-7 · e · h / (Σh² + 64);
 *     stage C: sign-sign LMS, 32 taps over the (rounded) stage-B errors, step 2 (Q14);
 *     bias:    mean final error per context (signs of the last three residuals, sign of the
 *              last step of s, activity/4), Q8, tracker step 2^-8;
 *   P = clamp(round(pB + pC + bias)) to the valid index range; residual e = s − P.
 *   Residual binarisation:
 *     k = activity context from a running mean of |e| (two buckets per octave);
 *     n = bit length of |e| in unary, bit j in context (k, j);
 *     the n−1 bits below the leading one: the first two in context (n, tree node, k/4),
 *     the rest in context (n, position); the sign in context (sign of the previous e).
 *   INITIAL STATE (like CABAC's context-initialisation tables): every residual context starts
 *   at a trained probability counting as 30 observed bits, and the LMS weights at trained
 *   values (include/nk_codec_prior.h, made by c_kernels/bench/codec_train.c from the even-
 *   numbered half of the Neuralink N1 set), so a resync point costs little.
 *   Exact constants and the update order are those of src/nk_codec.c; any change to them
 *   (or to the prior tables) bumps the version byte.
 *
 * LOSS: a packet whose sequence number does not follow the previous one (or after a corrupt
 * packet) cannot be decoded until the next resync packet; nk_codec_decode reports it as
 * skipped with its sample range, so the loss is confined and counted.
 */
#ifndef NK_CODEC_H
#define NK_CODEC_H
#include <stdint.h>

#include "nk_common.h"

NK_API_BEGIN
/* cffi-begin */
#define NK_CODEC_VERSION 1
#define NK_CODEC_MAX_CHANNELS 4096
#define NK_CODEC_MAX_BLOCK 65535
#define NK_CODEC_PACKET_OVERHEAD 14

typedef struct {
    int32_t n_channels;       /* 1..NK_CODEC_MAX_CHANNELS */
    int32_t sample_rate;      /* informational */
    int32_t resync_interval;  /* samples between resync points (0: only the first packet) */
    int32_t n_levels;         /* ladder length; 0 = identity map */
} nk_codec_config;

typedef struct {
    int32_t n_samples;        /* samples per channel in this packet */
    int32_t resync;           /* 1 if the packet is a resync point */
    int32_t skipped;          /* 1 if it could not be decoded (waiting for a resync point) */
    int32_t seq;              /* its sequence number */
    uint32_t first_sample;    /* its first sample index (mod 2^32) */
    int32_t lost_packets;     /* packets missing just before this one (sequence gap) */
} nk_codec_packet_info;

typedef struct nk_codec_enc nk_codec_enc;
typedef struct nk_codec_dec nk_codec_dec;

/* Encoder. levels: cfg->n_levels strictly increasing int16 values (NULL when 0).
 * NK_ERR_ARG or NK_ERR_NOMEM. */
int nk_codec_enc_new(const nk_codec_config *cfg, const int16_t *levels, nk_codec_enc **out);
/* Bytes needed for the stream header / for one packet of n_samples per channel. */
int32_t nk_codec_max_header_size(int32_t n_levels);
int64_t nk_codec_max_packet_size(int32_t n_channels, int32_t n_samples);
/* The stream header (write it once, before the packets). */
int nk_codec_enc_header(const nk_codec_enc *e, uint8_t *out, int32_t capacity, int32_t *n_out);
/* One block: data int16 [n_samples][n_channels] → one packet. A resync point is emitted on the
 * first packet and whenever resync_interval samples have passed since the last one. */
int nk_codec_encode(nk_codec_enc *e, const int16_t *data, int32_t n_samples, uint8_t *out,
                    int64_t capacity, int64_t *n_out);
/* The next packet will be a resync point. */
void nk_codec_enc_force_resync(nk_codec_enc *e);
void nk_codec_enc_reset(nk_codec_enc *e);
void nk_codec_enc_free(nk_codec_enc *e);

/* Ladder detection: from n samples, the sorted distinct values with the gaps of a regular
 * ladder filled in (the typical spacing found from the data). Returns the number of levels
 * written (≤ capacity), 0 when the data does not look like a ladder (use the identity map),
 * or a negative status. */
int32_t nk_codec_fit_ladder(const int16_t *data, int64_t n, int16_t *levels, int32_t capacity);

/* Decoder from a stream header: NK_OK, NK_ERR_CORRUPT (bad header) or NK_ERR_NOMEM. */
int nk_codec_dec_new(const uint8_t *header, int32_t n_bytes, nk_codec_dec **out);
/* The stream's configuration and ladder (levels may be NULL; capacity in entries). */
int nk_codec_dec_config(const nk_codec_dec *d, nk_codec_config *cfg, int16_t *levels,
                        int32_t capacity);
/* Header fields of a packet without decoding it (checks the CRC). */
int nk_codec_packet_peek(const uint8_t *pkt, int64_t n_bytes, nk_codec_packet_info *info);
/* Decodes one packet into out int16 [n_samples][n_channels] (capacity in samples per
 * channel). A packet that cannot be decoded because of an earlier loss returns NK_OK with
 * info->skipped = 1 (out untouched). A corrupt packet returns NK_ERR_CORRUPT and the decoder
 * waits for the next resync point. */
int nk_codec_decode(nk_codec_dec *d, const uint8_t *pkt, int64_t n_bytes, int16_t *out,
                    int32_t capacity, nk_codec_packet_info *info);
void nk_codec_dec_reset(nk_codec_dec *d);
void nk_codec_dec_free(nk_codec_dec *d);
/* cffi-end */
NK_API_END

#endif
