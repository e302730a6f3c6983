/* nk_codec_events.c — compact coding of spike events and snippets (see nk_codec_events.h). */
#include "nk_codec_events.h"

#include <stdlib.h>
#include <string.h>

#include "nk_codec_rc.h"

#define G_NB 34 /* bit lengths of v + 1 for v < 2^33 */
#define SNIP_MAX 32767.0f
#define MAX_KW 4096

/* adaptive Elias-gamma code of v + 1 (v ≥ 0) */
typedef struct {
    nk_bit nb[G_NB];
    nk_bit top[G_NB][3];
    nk_bit low[G_NB][G_NB];
    nk_bit sign;
} gamma_model;

typedef struct {
    gamma_model dt, ch_same, ch, unit, amp;
    nk_res_model snip[3]; /* before, around, after the peak */
} ev_models;

static void gamma_init(gamma_model *g) {
    for (int i = 0; i < G_NB; i++) {
        nk_bit_init(&g->nb[i]);
        for (int j = 0; j < 3; j++) nk_bit_init(&g->top[i][j]);
        for (int j = 0; j < G_NB; j++) nk_bit_init(&g->low[i][j]);
    }
    nk_bit_init(&g->sign);
}

static void models_init(ev_models *m) {
    gamma_init(&m->dt);
    gamma_init(&m->ch_same);
    gamma_init(&m->ch);
    gamma_init(&m->unit);
    gamma_init(&m->amp);
    for (int i = 0; i < 3; i++) nk_res_init_prior(&m->snip[i]);
}

static void gamma_encode(nk_rc_enc *rc, gamma_model *g, uint64_t v) {
    const uint64_t u = v + 1;
    int n = 64 - __builtin_clzll(u);
    for (int j = 1; j < G_NB - 1; j++) {
        nk_rc_encode(rc, &g->nb[j], n > j);
        if (n <= j) break;
    }
    if (n >= 2) {
        int b1 = (int)((u >> (n - 2)) & 1u);
        nk_rc_encode(rc, &g->top[n][0], b1);
        if (n >= 3) {
            nk_rc_encode(rc, &g->top[n][1 + b1], (int)((u >> (n - 3)) & 1u));
            for (int i = n - 4; i >= 0; i--) nk_rc_encode(rc, &g->low[n][i], (int)((u >> i) & 1u));
        }
    }
}

static uint64_t gamma_decode(nk_rc_dec *rc, gamma_model *g) {
    int n = 1;
    while (n < G_NB - 1 && nk_rc_decode(rc, &g->nb[n])) n++;
    uint64_t u = 1;
    if (n >= 2) {
        int b1 = nk_rc_decode(rc, &g->top[n][0]);
        u = (u << 1) | (uint64_t)b1;
        if (n >= 3) {
            u = (u << 1) | (uint64_t)nk_rc_decode(rc, &g->top[n][1 + b1]);
            for (int i = n - 4; i >= 0; i--) u = (u << 1) | (uint64_t)nk_rc_decode(rc, &g->low[n][i]);
        }
    }
    return u - 1;
}

static void sgamma_encode(nk_rc_enc *rc, gamma_model *g, int64_t v) {
    gamma_encode(rc, g, (uint64_t)(v < 0 ? -v : v));
    if (v) nk_rc_encode(rc, &g->sign, v < 0);
}

static int64_t sgamma_decode(nk_rc_dec *rc, gamma_model *g) {
    int64_t m = (int64_t)gamma_decode(rc, g);
    return (m && nk_rc_decode(rc, &g->sign)) ? -m : m;
}

static int64_t put_varint(uint8_t *p, uint64_t v) {
    int64_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* reads a varint of at most 10 bytes from p[*pos..len); -1 when truncated or too long */
static int get_varint(const uint8_t *p, int64_t len, int64_t *pos, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return -1;
        const uint8_t b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* snippet sample prediction: x[s-1] + (x[s-1] - x[s-2]) / 2 (floor), both |x| < 2^15 */
static inline int32_t snip_pred(int32_t prev, int32_t prev2) { return prev + ((prev - prev2) >> 1); }

static inline int snip_class(int32_t s, int32_t W) { return s * 3 < W ? 0 : (s * 3 < 2 * W ? 1 : 2); }

static inline int32_t quantise(float x, float step) {
    const float q = x / step;
    return (int32_t)(q >= 0 ? q + 0.5f : q - 0.5f);
}

int64_t nk_codec_events_max_size(int32_t n_events, int32_t n_neighbors, int32_t n_samples) {
    if (n_events < 0 || n_neighbors < 0 || n_samples < 0) return 0;
    /* ≤ 12 bits per binary decision: gamma ≤ 2·G_NB + 1 decisions, a snippet sample ≤ 36 */
    const int64_t per_event = 4 * (2 * G_NB + 1) * 12 / 8 + 1;
    const int64_t per_sample = 36 * 12 / 8;
    return NK_EVENTS_HEADER + 4 + 8 +
           (int64_t)n_events * (per_event + per_sample * n_neighbors * n_samples);
}

int nk_codec_events_encode(const nk_event *ev, int32_t n, const float *snip, int32_t K, int32_t W,
                           float step, uint8_t *out, int64_t capacity, int64_t *n_out) {
    if (!out || !n_out || n < 0 || (n > 0 && !ev)) return NK_ERR_ARG;
    if (!(step > 0.0f) || step > 1e30f) return NK_ERR_ARG;
    if (snip && (K < 1 || W < 1 || K > MAX_KW || W > MAX_KW)) return NK_ERR_ARG;
    if (!snip) K = W = 0;
    if (capacity < nk_codec_events_max_size(n, K, W)) return NK_ERR_CAPACITY;
    for (int32_t i = 0; i < n; i++) {
        const float a = ev[i].amplitude / step;
        if (!(a > -1e9f && a < 1e9f) || ev[i].channel < 0 || ev[i].unit < -1) return NK_ERR_ARG;
        if (i > 0 && (ev[i].sample < ev[i - 1].sample ||
                      (ev[i].sample == ev[i - 1].sample && ev[i].channel < ev[i - 1].channel)))
            return NK_ERR_ARG; /* not sorted by (sample, channel) */
    }
    if (snip)
        for (int64_t i = 0; i < (int64_t)n * K * W; i++) {
            const float q = snip[i] / step;
            if (!(q > -SNIP_MAX && q < SNIP_MAX)) return NK_ERR_ARG;
        }
    ev_models *m = malloc(sizeof *m);
    if (!m) return NK_ERR_NOMEM;
    models_init(m);
    uint32_t stepbits;
    memcpy(&stepbits, &step, 4);
    out[0] = 'E';
    out[1] = (uint8_t)(0x10 | (snip ? 1 : 0)); /* version 1 in the high nibble, flags */
    int64_t h = 2;
    h += put_varint(out + h, (uint64_t)n);
    if (snip) {
        h += put_varint(out + h, (uint64_t)K);
        h += put_varint(out + h, (uint64_t)W);
    }
    nk_put32(out + h, stepbits);
    h += 4;
    const int64_t t0 = n > 0 ? ev[0].sample : 0;
    h += put_varint(out + h, t0 >= 0 ? (uint64_t)t0 << 1 : (~(uint64_t)t0 << 1) | 1u);
    nk_rc_enc rc;
    nk_rc_enc_init(&rc, out + h, capacity - h - 4);
    int64_t prev_t = n > 0 ? ev[0].sample : 0;
    int32_t prev_c = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint64_t dt = (uint64_t)(ev[i].sample - prev_t);
        gamma_encode(&rc, &m->dt, dt);
        if (dt == 0 && i > 0) gamma_encode(&rc, &m->ch_same, (uint64_t)(ev[i].channel - prev_c));
        else gamma_encode(&rc, &m->ch, (uint64_t)ev[i].channel);
        gamma_encode(&rc, &m->unit, (uint64_t)((int64_t)ev[i].unit + 1));
        sgamma_encode(&rc, &m->amp, quantise(ev[i].amplitude, step));
        prev_t = ev[i].sample;
        prev_c = ev[i].channel;
        if (!snip) continue;
        for (int32_t k = 0; k < K; k++) {
            const float *tr = snip + ((int64_t)i * K + k) * W;
            int32_t prev = 0, prev2 = 0;
            for (int32_t s = 0; s < W; s++) {
                const int32_t q = quantise(tr[s], step);
                nk_res_encode(&rc, &m->snip[snip_class(s, W)], q - snip_pred(prev, prev2), 0);
                prev2 = prev;
                prev = q;
            }
        }
    }
    nk_rc_enc_flush(&rc);
    free(m);
    if (rc.overflow) return NK_ERR_CAPACITY;
    nk_put32(out + h + rc.pos, nk_crc32(out, h + rc.pos));
    *n_out = h + rc.pos + 4;
    return NK_OK;
}

/* parses the batch header; *payload = offset of the range-coded payload */
static int parse_header(const uint8_t *in, int64_t len, int32_t *n_events, int32_t *K, int32_t *W,
                        float *step, int64_t *t0, int64_t *payload) {
    if (!in || len < 0) return NK_ERR_ARG;
    if (len < 2 + 1 + 4 + 1 + 4 || in[0] != 'E' || (in[1] & 0xF0) != 0x10 || (in[1] & 0x0E))
        return NK_ERR_CORRUPT;
    if (nk_get32(in + len - 4) != nk_crc32(in, len - 4)) return NK_ERR_CORRUPT;
    const int64_t end = len - 4;
    int64_t pos = 2;
    uint64_t n, k = 0, w = 0, z;
    if (get_varint(in, end, &pos, &n) || n > 0x7FFFFFFF) return NK_ERR_CORRUPT;
    if (in[1] & 1) {
        if (get_varint(in, end, &pos, &k) || get_varint(in, end, &pos, &w)) return NK_ERR_CORRUPT;
        if (k < 1 || w < 1 || k > MAX_KW || w > MAX_KW) return NK_ERR_CORRUPT;
    }
    if (pos + 4 > end) return NK_ERR_CORRUPT;
    const uint32_t sb = nk_get32(in + pos);
    pos += 4;
    float st;
    memcpy(&st, &sb, 4);
    if (!(st > 0.0f && st <= 1e30f)) return NK_ERR_CORRUPT;
    if (get_varint(in, end, &pos, &z)) return NK_ERR_CORRUPT;
    if (n_events) *n_events = (int32_t)n;
    if (K) *K = (int32_t)k;
    if (W) *W = (int32_t)w;
    if (step) *step = st;
    if (t0) *t0 = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    if (payload) *payload = pos;
    return NK_OK;
}

int nk_codec_events_peek(const uint8_t *in, int64_t len, int32_t *n_events, int32_t *K, int32_t *W) {
    return parse_header(in, len, n_events, K, W, NULL, NULL, NULL);
}

int nk_codec_events_decode(const uint8_t *in, int64_t len, nk_event *ev, int32_t capacity,
                           float *snip, int64_t snip_capacity, int32_t *n_events) {
    if (!in || !n_events || (capacity > 0 && !ev) || capacity < 0) return NK_ERR_ARG;
    int32_t n, K, W;
    float step;
    int64_t t, payload;
    int st = parse_header(in, len, &n, &K, &W, &step, &t, &payload);
    if (st != NK_OK) return st;
    if (n > capacity) return NK_ERR_CAPACITY;
    if (snip && snip_capacity < (int64_t)n * K * W) return NK_ERR_CAPACITY;
    ev_models *m = malloc(sizeof *m);
    if (!m) return NK_ERR_NOMEM;
    models_init(m);
    nk_rc_dec rc;
    nk_rc_dec_init(&rc, in + payload, len - payload - 4);
    int32_t c = 0;
    st = NK_OK;
    for (int32_t i = 0; i < n && st == NK_OK; i++) {
        const uint64_t dt = gamma_decode(&rc, &m->dt);
        const uint64_t cv = (dt == 0 && i > 0) ? (uint64_t)c + gamma_decode(&rc, &m->ch_same)
                                               : gamma_decode(&rc, &m->ch);
        const uint64_t unit = gamma_decode(&rc, &m->unit);
        const int64_t amp = sgamma_decode(&rc, &m->amp);
        if (dt > (uint64_t)INT64_MAX / 2 || cv > INT32_MAX || unit > INT32_MAX ||
            amp > (int64_t)2e9 || amp < -(int64_t)2e9 || rc.overrun > 4) {
            st = NK_ERR_CORRUPT;
            break;
        }
        t = (int64_t)((uint64_t)t + dt);
        c = (int32_t)cv;
        ev[i].sample = t;
        ev[i].channel = c;
        ev[i].unit = (int32_t)unit - 1;
        ev[i].amplitude = (float)amp * step;
        ev[i].threshold = 0.0f;
        for (int32_t k = 0; k < K && st == NK_OK; k++) {
            int32_t q = 0, prev2 = 0;
            for (int32_t s = 0; s < W; s++) {
                const int32_t prev = q;
                q = snip_pred(prev, prev2) + nk_res_decode(&rc, &m->snip[snip_class(s, W)], 0);
                prev2 = prev;
                if (q <= -(int32_t)SNIP_MAX || q >= (int32_t)SNIP_MAX || rc.overrun > 4) {
                    st = NK_ERR_CORRUPT;
                    break;
                }
                if (snip) snip[((int64_t)i * K + k) * W + s] = (float)q * step;
            }
        }
    }
    free(m);
    if (st != NK_OK) return st;
    *n_events = n;
    return NK_OK;
}
