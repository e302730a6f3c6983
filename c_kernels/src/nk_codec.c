/* nk_codec.c — streaming lossless codec (see nk_codec.h for the bitstream). */
#include "nk_codec.h"

#include <stdlib.h>
#include <string.h>

#include "nk_codec_rc.h"
#ifndef NK_CODEC_NO_PRIOR
#include "nk_codec_prior.h"
#endif

#define SYNC 0xA7
#define FLAG_RESYNC 1u
#define FLAG_STORED 2u
#define HDR_FIXED 20 /* stream header bytes before the ladder payload */

/* predictor constants (part of bitstream version 1) */
#ifndef N1
#define N1 24
#endif
#ifndef N2
#define N2 32
#endif
#define WSHIFT 14      /* weights Q14 */
#ifndef MU_B
#define MU_B 7
#endif
#ifndef NLMS_EPS
#define NLMS_EPS 64
#endif
#ifndef MU2
#define MU2 2
#endif
#define W_MAX (1 << 24)
#define P_MAX (1 << 20)
#ifndef BIAS_SHIFT
#define BIAS_SHIFT 8
#endif
#ifndef W0_INIT
#define W0_INIT 12000 /* without the prior: start near "previous sample" (0.73 in Q14) */
#endif
#define BIAS_CTX (81 * (NK_RES_K / 4))

/* One LMS stage: weights Q14 over a history kept twice (h[pos..pos+n) is the newest first). */
#define NA_MAX 64
typedef struct {
    int32_t w[NA_MAX], h[2 * NA_MAX];
    int32_t pos;
    int64_t energy; /* Σ h² over the window (normalised LMS) */
} lms_t;

typedef struct {
    lms_t b, c;                    /* normalised LMS on s, sign-sign LMS on its errors */
    int32_t bias[BIAS_CTX];        /* mean final error per context, Q8 */
    int32_t s1, s2, s3;            /* signs of the last three residuals */
    nk_res_model res;
    nk_bit esc;
} chan_state;

typedef struct {
    int32_t pb, pc;     /* stage predictions, Q4 */
    int32_t bctx;       /* bias context */
    int32_t P;          /* the prediction (integer, clamped) */
} pred_t;

#ifndef PF
#define PF 4 /* fractional bits of the stage predictions */
#endif

/* The per-sample loops carry 64-bit multiply-accumulates that SSE2 cannot vectorise: on x86-64
 * GCC also builds an AVX2 clone chosen at load time (integer arithmetic: identical results). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && !defined(NK_NO_CLONES)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

#define NK_RES_PRIOR_N (NK_RES_K * NK_RES_NB + NK_RES_NB * NK_RES_KT * 3 + NK_RES_NB * NK_RES_NB + 3)
#ifndef PRIOR_N
#define PRIOR_N 30 /* the prior counts as this many observed bits */
#endif

#ifndef NK_CODEC_NO_PRIOR
static void init_bits(nk_bit *b, int n, const uint16_t *p) {
    for (int i = 0; i < n; i++) {
        b[i].fast = b[i].slow = p[i];
        b[i].n = p[i] == 32768 ? 0 : PRIOR_N; /* contexts unseen in training start fresh */
    }
}
#endif

void nk_res_init_prior(nk_res_model *m) {
    nk_res_init(m);
#ifndef NK_CODEC_NO_PRIOR
    /* trained initial state (nk_codec_prior.h): contexts start where they end up on typical
     * data, so a resync point costs little */
    const uint16_t *p = nk_codec_prior_p;
    init_bits(&m->nb[0][0][0], NK_RES_K * NK_RES_NB, p);
    p += NK_RES_K * NK_RES_NB;
    init_bits(&m->top[0][0][0], NK_RES_NB * NK_RES_KT * 3, p);
    p += NK_RES_NB * NK_RES_KT * 3;
    init_bits(&m->low[0][0], NK_RES_NB * NK_RES_NB, p);
    p += NK_RES_NB * NK_RES_NB;
    init_bits(&m->sign[0][0], 3, p);
#endif
}

static void chan_reset(chan_state *c) {
    memset(c, 0, sizeof *c);
    nk_res_init_prior(&c->res);
#ifdef NK_CODEC_NO_PRIOR
    c->b.w[0] = W0_INIT;
#else
    memcpy(c->b.w, nk_codec_prior_wb, sizeof nk_codec_prior_wb);
    memcpy(c->c.w, nk_codec_prior_wc, sizeof nk_codec_prior_wc);
#endif
    nk_bit_init(&c->esc);
}

static inline int32_t sgn(int32_t v) { return (v > 0) - (v < 0); }

static inline int32_t clamp32(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

static inline int32_t lms_predict(const lms_t *l, int n) {
    int64_t acc = 0;
    const int32_t *h = l->h + l->pos;
    for (int i = 0; i < n; i++) acc += (int64_t)l->w[i] * h[i];
    return clamp32(acc >> (WSHIFT - PF), -(P_MAX << PF), P_MAX << PF);
}

/* normalised LMS: w += 2^-mu_shift · e · h / (Σh² + eps); e in Q4 */
static inline void lms_update_nlms(lms_t *l, int n, int32_t e, int mu_shift) {
    const int32_t *h = l->h + l->pos;
    const int64_t g = ((int64_t)e * (1 << 18)) / (l->energy + NLMS_EPS);
    for (int i = 0; i < n; i++)
        l->w[i] = clamp32(l->w[i] + ((g * h[i]) >> (4 + PF + mu_shift)), -W_MAX, W_MAX);
}

static inline void lms_update_sign(lms_t *l, int n, int32_t e, int32_t mu) {
    const int32_t *h = l->h + l->pos;
    const int32_t g = sgn(e) * mu;
    for (int i = 0; i < n; i++) l->w[i] += g * sgn(h[i]);
}

static inline void lms_push(lms_t *l, int n, int32_t v) {
    const int32_t old = l->h[l->pos + n - 1];
    l->energy += (int64_t)v * v - (int64_t)old * old;
    l->pos = l->pos ? l->pos - 1 : n - 1;
    l->h[l->pos] = l->h[l->pos + n] = v;
}

static inline void predict(const chan_state *c, pred_t *p, int32_t smin, int32_t smax) {
    p->pb = lms_predict(&c->b, N1);
    p->pc = lms_predict(&c->c, N2);
    /* bias context: signs of the last three residuals and of the last step, activity */
    const int32_t *hh = c->b.h + c->b.pos;
    const int32_t dl = sgn(hh[0] - hh[1]) + 1;
    p->bctx = ((((c->s1 + 1) * 3 + (c->s2 + 1)) * 3 + c->s3 + 1) * 3 + dl) * (NK_RES_K / 4) +
              (nk_res_ctx(&c->res) >> 2);
    const int32_t pf = p->pb + p->pc + (c->bias[p->bctx] >> (8 - PF)); /* Q4 */
    const int32_t P = (pf + (1 << (PF - 1))) >> PF;
    p->P = P < smin ? smin : (P > smax ? smax : P);
}

static inline int32_t rnd(int32_t q4) { return (q4 + (1 << (PF - 1))) >> PF; }

static inline void update(chan_state *c, const pred_t *p, int32_t s) {
    const int32_t eb = s * (1 << PF) - p->pb; /* stage-B error, Q4, |eb| < 2^26 */
    const int32_t ec = eb - p->pc;            /* stage-C error */
    lms_update_nlms(&c->b, N1, eb, MU_B);
    lms_update_sign(&c->c, N2, ec, MU2);
    int32_t *bp = &c->bias[p->bctx];
    *bp += (int32_t)(((int64_t)clamp32(ec, -(65536 << PF), 65536 << PF) * (1 << (8 - PF)) - *bp)
                     >> BIAS_SHIFT);
    lms_push(&c->b, N1, s);
    lms_push(&c->c, N2, rnd(eb));
    const int32_t e = s - p->P;
    c->s3 = c->s2;
    c->s2 = c->s1;
    c->s1 = sgn(e);
}

/* bounds the sign-sign weights once per packet: they move by at most MU2 · 65535 within one */
static void clamp_weights(chan_state *c) {
    for (int i = 0; i < N2; i++) c->c.w[i] = clamp32(c->c.w[i], -W_MAX, W_MAX);
}

/* ------------------------------------------------------------------ shared stream state */
typedef struct {
    nk_codec_config cfg;
    int16_t *levels;        /* n_levels entries, or NULL */
    uint16_t *nearest;      /* 65536: index of the nearest level (ties: lower) */
    int32_t centre, smin, smax;
    chan_state *ch;
} stream;

static int stream_init(stream *s, const nk_codec_config *cfg, const int16_t *levels) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    const int32_t L = cfg->n_levels;
    s->ch = malloc((size_t)cfg->n_channels * sizeof(chan_state));
    if (!s->ch) return NK_ERR_NOMEM;
    if (L == 0) {
        s->smin = -32768;
        s->smax = 32767;
        return NK_OK;
    }
    s->levels = malloc((size_t)L * sizeof(int16_t));
    s->nearest = malloc(65536 * sizeof(uint16_t));
    if (!s->levels || !s->nearest) return NK_ERR_NOMEM;
    memcpy(s->levels, levels, (size_t)L * sizeof(int16_t));
    int32_t j = 0;
    for (int32_t v = -32768; v <= 32767; v++) {
        while (j + 1 < L && levels[j + 1] <= v) j++;
        int32_t best = j;
        if (j + 1 < L && levels[j] < v && levels[j + 1] - v < v - levels[j]) best = j + 1;
        s->nearest[v + 32768] = (uint16_t)best;
    }
    s->centre = s->nearest[32768];
    s->smin = -s->centre;
    s->smax = L - 1 - s->centre;
    return NK_OK;
}

static void stream_free(stream *s) {
    free(s->levels);
    free(s->nearest);
    free(s->ch);
}

static void stream_reset_models(stream *s) {
    for (int32_t c = 0; c < s->cfg.n_channels; c++) chan_reset(&s->ch[c]);
}

static int valid_config(const nk_codec_config *cfg) {
    return cfg && cfg->n_channels >= 1 && cfg->n_channels <= NK_CODEC_MAX_CHANNELS &&
           cfg->resync_interval >= 0 && cfg->sample_rate >= 0 &&
           (cfg->n_levels == 0 || (cfg->n_levels >= 2 && cfg->n_levels <= 65535));
}

/* ------------------------------------------------------------------ encoder */
struct nk_codec_enc {
    stream s;
    uint16_t seq;
    uint32_t next_sample;
    int64_t since_resync;
    int force_resync;
};

int nk_codec_enc_new(const nk_codec_config *cfg, const int16_t *levels, nk_codec_enc **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (!valid_config(cfg) || (cfg->n_levels > 0 && !levels)) return NK_ERR_ARG;
    for (int32_t i = 1; i < cfg->n_levels; i++)
        if (levels[i] <= levels[i - 1]) return NK_ERR_ARG;
    nk_codec_enc *e = calloc(1, sizeof *e);
    if (!e) return NK_ERR_NOMEM;
    if (stream_init(&e->s, cfg, levels) != NK_OK) {
        nk_codec_enc_free(e);
        return NK_ERR_NOMEM;
    }
    nk_codec_enc_reset(e);
    *out = e;
    return NK_OK;
}

void nk_codec_enc_reset(nk_codec_enc *e) {
    if (!e) return;
    e->seq = 0;
    e->next_sample = 0;
    e->since_resync = 0;
    e->force_resync = 1;
    stream_reset_models(&e->s);
}

void nk_codec_enc_force_resync(nk_codec_enc *e) {
    if (e) e->force_resync = 1;
}

void nk_codec_enc_free(nk_codec_enc *e) {
    if (!e) return;
    stream_free(&e->s);
    free(e);
}

int32_t nk_codec_max_header_size(int32_t n_levels) {
    if (n_levels < 0 || n_levels > 65535) return 0;
    /* each ladder step costs at most (1 + 17 + 16 + 1) decisions of ≤ 12 bits */
    return HDR_FIXED + 4 + 8 + (n_levels * 35 * 12 + 7) / 8 + 16;
}

int64_t nk_codec_max_packet_size(int32_t n_channels, int32_t n_samples) {
    if (n_channels < 1 || n_samples < 0) return 0;
    return NK_CODEC_PACKET_OVERHEAD + 2 * (int64_t)n_channels * n_samples;
}

/* The ladder: first level as 16 raw bits, then second differences. */
static void ladder_encode(nk_rc_enc *rc, const int16_t *lv, int32_t L) {
    nk_res_model *m = malloc(sizeof *m);
    if (!m) {
        rc->overflow = 1;
        return;
    }
    nk_res_init(m);
    nk_rc_encode_raw(rc, (uint16_t)lv[0], 16);
    int32_t prev = 0;
    for (int32_t i = 1; i < L; i++) {
        int32_t d = lv[i] - lv[i - 1];
        nk_res_encode(rc, m, d - prev, 0);
        prev = d;
    }
    free(m);
}

int nk_codec_enc_header(const nk_codec_enc *e, uint8_t *out, int32_t capacity, int32_t *n_out) {
    if (!e || !out || !n_out) return NK_ERR_ARG;
    const nk_codec_config *cfg = &e->s.cfg;
    if (capacity < nk_codec_max_header_size(cfg->n_levels)) return NK_ERR_CAPACITY;
    out[0] = 'N'; out[1] = 'K'; out[2] = 'C'; out[3] = NK_CODEC_VERSION;
    nk_put16(out + 4, (uint32_t)cfg->n_channels);
    nk_put32(out + 6, (uint32_t)cfg->sample_rate);
    nk_put32(out + 10, (uint32_t)cfg->resync_interval);
    nk_put16(out + 14, (uint32_t)cfg->n_levels);
    int64_t lb = 0;
    if (cfg->n_levels > 0) {
        nk_rc_enc rc;
        nk_rc_enc_init(&rc, out + HDR_FIXED, capacity - HDR_FIXED - 4);
        ladder_encode(&rc, e->s.levels, cfg->n_levels);
        nk_rc_enc_flush(&rc);
        if (rc.overflow) return NK_ERR_CAPACITY;
        lb = rc.pos;
    }
    nk_put32(out + 16, (uint32_t)lb);
    nk_put32(out + HDR_FIXED + lb, nk_crc32(out, HDR_FIXED + lb));
    *n_out = (int32_t)(HDR_FIXED + lb + 4);
    return NK_OK;
}

HOT static void encode_channel(stream *s, nk_rc_enc *rc, int32_t c, const int16_t *data,
                           int32_t n) {
    chan_state *ch = &s->ch[c];
    const int32_t C = s->cfg.n_channels;
    const uint16_t *near = s->nearest;
    const int16_t *lv = s->levels;
    int off = 0;
    if (lv)
        for (int32_t t = 0; t < n && !off; t++) {
            int16_t v = data[(size_t)t * C + c];
            off = lv[near[v + 32768]] != v;
        }
    nk_rc_encode_p(rc, off, 2048);
    pred_t p;
    for (int32_t t = 0; t < n; t++) {
        const int16_t v = data[(size_t)t * C + c];
        int32_t sv;
        predict(ch, &p, s->smin, s->smax);
        if (lv) {
            const int32_t idx = near[v + 32768];
            sv = idx - s->centre;
            if (off) {
                const int esc = lv[idx] != v;
                nk_rc_encode(rc, &ch->esc, esc);
                if (esc) {
                    nk_rc_encode_raw(rc, (uint16_t)v, 16);
                    update(ch, &p, sv);
                    continue;
                }
            }
        } else {
            sv = v;
        }
        nk_res_encode(rc, &ch->res, sv - p.P, 0);
        update(ch, &p, sv);
    }
    clamp_weights(ch);
}

int nk_codec_encode(nk_codec_enc *e, const int16_t *data, int32_t n_samples, uint8_t *out,
                    int64_t capacity, int64_t *n_out) {
    if (!e || !data || !out || !n_out) return NK_ERR_ARG;
    if (n_samples < 1 || n_samples > NK_CODEC_MAX_BLOCK) return NK_ERR_ARG;
    const int32_t C = e->s.cfg.n_channels;
    const int64_t need = nk_codec_max_packet_size(C, n_samples);
    if (capacity < need) return NK_ERR_CAPACITY;
    const int32_t interval = e->s.cfg.resync_interval;
    int resync = e->force_resync || (interval > 0 && e->since_resync >= interval);
    if (resync) {
        stream_reset_models(&e->s);
        e->since_resync = 0;
        e->force_resync = 0;
    }
    out[0] = SYNC;
    nk_put16(out + 2, e->seq);
    nk_put32(out + 4, e->next_sample);
    nk_put16(out + 8, (uint32_t)n_samples);
    const int64_t raw = 2 * (int64_t)C * n_samples;
    nk_rc_enc rc;
    nk_rc_enc_init(&rc, out + 10, raw);
    for (int32_t c = 0; c < C && !rc.overflow; c++) encode_channel(&e->s, &rc, c, data, n_samples);
    if (!rc.overflow) nk_rc_enc_flush(&rc);
    int64_t body;
    if (rc.overflow) {
        /* incompressible: store the samples; the next packet restarts the models */
        for (int64_t i = 0; i < (int64_t)C * n_samples; i++)
            nk_put16(out + 10 + 2 * i, (uint16_t)data[i]);
        body = raw;
        out[1] = (uint8_t)(FLAG_STORED | (resync ? FLAG_RESYNC : 0));
        e->force_resync = 1;
    } else {
        body = rc.pos;
        out[1] = (uint8_t)(resync ? FLAG_RESYNC : 0);
    }
    nk_put32(out + 10 + body, nk_crc32(out, 10 + body));
    *n_out = 14 + body;
    e->seq++;
    e->next_sample += (uint32_t)n_samples;
    e->since_resync += n_samples;
    return NK_OK;
}

/* ------------------------------------------------------------------ ladder fitting */
static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int32_t nk_codec_fit_ladder(const int16_t *data, int64_t n, int16_t *levels, int32_t capacity) {
    if (!data || !levels || n < 0 || capacity < 0) return NK_ERR_ARG;
    uint8_t *seen = calloc(65536, 1);
    int32_t *lv = malloc(65536 * sizeof(int32_t));
    int32_t *gaps = malloc(65536 * sizeof(int32_t));
    if (!seen || !lv || !gaps) {
        free(seen); free(lv); free(gaps);
        return NK_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n; i++) seen[data[i] + 32768] = 1;
    int32_t m = 0;
    for (int32_t v = 0; v < 65536; v++)
        if (seen[v]) lv[m++] = v - 32768;
    int32_t result = 0;
    if (m >= 8) {
        for (int32_t i = 1; i < m; i++) gaps[i - 1] = lv[i] - lv[i - 1];
        qsort(gaps, (size_t)(m - 1), sizeof(int32_t), cmp_i32);
        const int32_t step = gaps[(m - 1) / 4]; /* a lower quartile: the true spacing */
        /* a ladder: spacing ≥ 4 and every gap close to a whole number of steps */
        int ok = step >= 4;
        int32_t total = 1;
        for (int32_t i = 1; ok && i < m; i++) {
            const int32_t g = lv[i] - lv[i - 1];
            const int32_t k = (g + step / 2) / step;
            ok = k >= 1 && (g - k * step) * 16 <= step * k && (k * step - g) * 16 <= step * k;
            total += k;
        }
        if (ok && total <= capacity) {
            int32_t o = 0;
            for (int32_t i = 0; i < m; i++) {
                if (i > 0) {
                    const int32_t g = lv[i] - lv[i - 1];
                    const int32_t k = (g + step / 2) / step;
                    for (int32_t j = 1; j < k; j++)
                        levels[o++] = (int16_t)(lv[i - 1] + (int32_t)(((int64_t)g * j + k / 2) / k));
                }
                levels[o++] = (int16_t)lv[i];
            }
            result = o;
        }
    }
    free(seen); free(lv); free(gaps);
    return result;
}

/* ------------------------------------------------------------------ decoder */
struct nk_codec_dec {
    stream s;
    int synced;          /* models valid: the next packet may be a non-resync one */
    int have_seq;
    uint16_t expect_seq;
};

int nk_codec_dec_new(const uint8_t *h, int32_t n_bytes, nk_codec_dec **out) {
    if (!out) return NK_ERR_ARG;
    *out = NULL;
    if (!h || n_bytes < HDR_FIXED + 4) return NK_ERR_CORRUPT;
    if (h[0] != 'N' || h[1] != 'K' || h[2] != 'C' || h[3] != NK_CODEC_VERSION) return NK_ERR_CORRUPT;
    const uint32_t lb = nk_get32(h + 16);
    if (lb > (uint32_t)n_bytes - HDR_FIXED - 4) return NK_ERR_CORRUPT;
    if (nk_get32(h + HDR_FIXED + lb) != nk_crc32(h, HDR_FIXED + (int64_t)lb)) return NK_ERR_CORRUPT;
    nk_codec_config cfg = {(int32_t)nk_get16(h + 4), (int32_t)(nk_get32(h + 6) & 0x7FFFFFFFu),
                           (int32_t)(nk_get32(h + 10) & 0x7FFFFFFFu), (int32_t)nk_get16(h + 14)};
    if (nk_get32(h + 6) > 0x7FFFFFFFu || nk_get32(h + 10) > 0x7FFFFFFFu) return NK_ERR_CORRUPT;
    if (!valid_config(&cfg) || (cfg.n_levels == 0) != (lb == 0)) return NK_ERR_CORRUPT;
    int16_t *lv = NULL;
    if (cfg.n_levels > 0) {
        lv = malloc((size_t)cfg.n_levels * sizeof(int16_t));
        nk_res_model *m = malloc(sizeof *m);
        if (!lv || !m) {
            free(lv); free(m);
            return NK_ERR_NOMEM;
        }
        nk_res_init(m);
        nk_rc_dec rc;
        nk_rc_dec_init(&rc, h + HDR_FIXED, lb);
        int32_t v = (int16_t)nk_rc_decode_raw(&rc, 16), d = 0, ok = 1;
        lv[0] = (int16_t)v;
        for (int32_t i = 1; ok && i < cfg.n_levels; i++) {
            d += nk_res_decode(&rc, m, 0);
            v += d;
            ok = d >= 1 && v <= 32767 && rc.overrun <= 4;
            if (ok) lv[i] = (int16_t)v;
        }
        free(m);
        if (!ok || rc.overrun > 4) {
            free(lv);
            return NK_ERR_CORRUPT;
        }
    }
    nk_codec_dec *d = calloc(1, sizeof *d);
    if (!d || stream_init(&d->s, &cfg, lv) != NK_OK) {
        free(lv);
        nk_codec_dec_free(d);
        return NK_ERR_NOMEM;
    }
    free(lv);
    nk_codec_dec_reset(d);
    *out = d;
    return NK_OK;
}

void nk_codec_dec_reset(nk_codec_dec *d) {
    if (!d) return;
    d->synced = 0;
    d->have_seq = 0;
    d->expect_seq = 0;
}

void nk_codec_dec_free(nk_codec_dec *d) {
    if (!d) return;
    stream_free(&d->s);
    free(d);
}

int nk_codec_dec_config(const nk_codec_dec *d, nk_codec_config *cfg, int16_t *levels,
                        int32_t capacity) {
    if (!d || !cfg) return NK_ERR_ARG;
    *cfg = d->s.cfg;
    if (levels) {
        if (capacity < d->s.cfg.n_levels) return NK_ERR_CAPACITY;
        if (d->s.cfg.n_levels > 0)
            memcpy(levels, d->s.levels, (size_t)d->s.cfg.n_levels * sizeof(int16_t));
    }
    return NK_OK;
}

int nk_codec_packet_peek(const uint8_t *pkt, int64_t n_bytes, nk_codec_packet_info *info) {
    if (!pkt || !info || n_bytes < 0) return NK_ERR_ARG;
    memset(info, 0, sizeof *info);
    if (n_bytes < NK_CODEC_PACKET_OVERHEAD) return NK_ERR_CORRUPT; /* the payload may be empty */
    if (pkt[0] != SYNC || (pkt[1] & ~(FLAG_RESYNC | FLAG_STORED))) return NK_ERR_CORRUPT;
    if (nk_get32(pkt + n_bytes - 4) != nk_crc32(pkt, n_bytes - 4)) return NK_ERR_CORRUPT;
    const int32_t n = (int32_t)nk_get16(pkt + 8);
    if (n < 1) return NK_ERR_CORRUPT;
    info->n_samples = n;
    info->resync = (pkt[1] & FLAG_RESYNC) != 0;
    info->seq = (int32_t)nk_get16(pkt + 2);
    info->first_sample = nk_get32(pkt + 4);
    return NK_OK;
}

HOT static int decode_channel(stream *s, nk_rc_dec *rc, int32_t c, int16_t *out, int32_t n) {
    chan_state *ch = &s->ch[c];
    const int32_t C = s->cfg.n_channels;
    const uint16_t *near = s->nearest;
    const int16_t *lv = s->levels;
    const int off = nk_rc_decode_p(rc, 2048);
    if (off && !lv) return NK_ERR_CORRUPT;
    pred_t p;
    for (int32_t t = 0; t < n; t++) {
        predict(ch, &p, s->smin, s->smax);
        int32_t sv;
        int16_t v;
        if (off && nk_rc_decode(rc, &ch->esc)) {
            v = (int16_t)nk_rc_decode_raw(rc, 16);
            sv = near[v + 32768] - s->centre;
        } else {
            sv = p.P + nk_res_decode(rc, &ch->res, 0);
            if (sv < s->smin || sv > s->smax) return NK_ERR_CORRUPT;
            v = lv ? lv[sv + s->centre] : (int16_t)sv;
        }
        update(ch, &p, sv);
        out[(size_t)t * C + c] = v;
        if (rc->overrun > 4) return NK_ERR_CORRUPT;
    }
    clamp_weights(ch);
    return NK_OK;
}

int nk_codec_decode(nk_codec_dec *d, const uint8_t *pkt, int64_t n_bytes, int16_t *out,
                    int32_t capacity, nk_codec_packet_info *info) {
    if (!d || !pkt || !out || !info) return NK_ERR_ARG;
    int st = nk_codec_packet_peek(pkt, n_bytes, info);
    if (st != NK_OK) {
        d->synced = 0; /* whatever this was, the models may now be out of step */
        return st;
    }
    const int32_t n = info->n_samples, C = d->s.cfg.n_channels;
    if (capacity < n) return NK_ERR_CAPACITY;
    if (d->have_seq && (uint16_t)info->seq != d->expect_seq) {
        info->lost_packets = (int32_t)(uint16_t)((uint16_t)info->seq - d->expect_seq);
        d->synced = 0;
    }
    d->have_seq = 1;
    d->expect_seq = (uint16_t)(info->seq + 1);
    const int stored = (pkt[1] & FLAG_STORED) != 0;
    const int64_t body = n_bytes - NK_CODEC_PACKET_OVERHEAD;
    if (stored) {
        if (body != 2 * (int64_t)C * n) {
            d->synced = 0;
            return NK_ERR_CORRUPT;
        }
        for (int64_t i = 0; i < (int64_t)C * n; i++)
            out[i] = (int16_t)nk_get16(pkt + 10 + 2 * i);
        d->synced = 0; /* the encoder restarts its models at the next packet */
        return NK_OK;
    }
    if (!info->resync && !d->synced) {
        info->skipped = 1;
        return NK_OK;
    }
    if (info->resync) stream_reset_models(&d->s);
    nk_rc_dec rc;
    nk_rc_dec_init(&rc, pkt + 10, body);
    for (int32_t c = 0; c < C; c++) {
        st = decode_channel(&d->s, &rc, c, out, n);
        if (st != NK_OK) {
            d->synced = 0;
            return st;
        }
    }
    d->synced = 1;
    return NK_OK;
}
