/* nk_codec_rc.h — internal: the binary range coder and adaptive bit models shared by the
 * nk_codec* sources (not part of the Python-visible API: no cffi section).
 *
 * Range coder: LZMA's (32-bit range, 64-bit low with carry propagation through a cached byte),
 * 12-bit probabilities. A bit model holds two estimates of P(bit = 1) in 16 bits, one adapting
 * fast (shift NK_RC_FAST) and one slow (shift NK_RC_SLOW); the coder uses their mean. The
 * decoder never reads outside its buffer: past the end it reads zeros and counts them, and the
 * caller treats more than a few such bytes as corruption. */
#ifndef NK_CODEC_RC_H
#define NK_CODEC_RC_H
#include <stdint.h>
#include <string.h>

#define NK_RC_TOP (1u << 24)
#ifndef NK_RC_FAST
#define NK_RC_FAST 9
#endif
#ifndef NK_RC_SLOW
#define NK_RC_SLOW 11
#endif

#define NK_RC_LIMIT 1000 /* = the length of nk_rate_tab */

typedef struct {
    uint16_t fast, slow; /* P(bit = 1) · 65536 */
    uint16_t n;          /* bits seen, saturating at NK_RC_LIMIT */
} nk_bit;

static inline void nk_bit_init(nk_bit *b) { b->fast = b->slow = 32768; b->n = 0; }

/* nk_rate_tab[n] = 131072 / (2n + 3) = 65536 / (n + 1.5), n < NK_RC_LIMIT (1000) */
static const uint16_t nk_rate_tab[1000] = {
    43690, 26214, 18724, 14563, 11915, 10082, 8738, 7710, 6898, 6241, 5698, 5242,
    4854, 4519, 4228, 3971, 3744, 3542, 3360, 3196, 3048, 2912, 2788, 2674,
    2570, 2473, 2383, 2299, 2221, 2148, 2080, 2016, 1956, 1899, 1846, 1795,
    1747, 1702, 1659, 1618, 1579, 1542, 1506, 1472, 1440, 1409, 1379, 1351,
    1323, 1297, 1272, 1248, 1224, 1202, 1180, 1159, 1139, 1120, 1101, 1083,
    1065, 1048, 1032, 1016, 1000, 985, 970, 956, 942, 929, 916, 903,
    891, 879, 868, 856, 845, 834, 824, 814, 804, 794, 784, 775,
    766, 757, 748, 740, 732, 724, 716, 708, 700, 693, 686, 679,
    672, 665, 658, 652, 645, 639, 633, 627, 621, 615, 609, 604,
    598, 593, 587, 582, 577, 572, 567, 562, 557, 553, 548, 543,
    539, 534, 530, 526, 522, 518, 514, 510, 506, 502, 498, 494,
    490, 487, 483, 480, 476, 473, 469, 466, 463, 459, 456, 453,
    450, 447, 444, 441, 438, 435, 432, 429, 426, 424, 421, 418,
    416, 413, 410, 408, 405, 403, 400, 398, 395, 393, 391, 388,
    386, 384, 382, 379, 377, 375, 373, 371, 369, 367, 365, 363,
    361, 359, 357, 355, 353, 351, 349, 347, 345, 344, 342, 340,
    338, 336, 335, 333, 331, 330, 328, 326, 325, 323, 322, 320,
    318, 317, 315, 314, 312, 311, 309, 308, 306, 305, 304, 302,
    301, 299, 298, 297, 295, 294, 293, 291, 290, 289, 288, 286,
    285, 284, 283, 281, 280, 279, 278, 277, 275, 274, 273, 272,
    271, 270, 269, 268, 266, 265, 264, 263, 262, 261, 260, 259,
    258, 257, 256, 255, 254, 253, 252, 251, 250, 249, 248, 247,
    246, 245, 244, 244, 243, 242, 241, 240, 239, 238, 237, 237,
    236, 235, 234, 233, 232, 231, 231, 230, 229, 228, 227, 227,
    226, 225, 224, 224, 223, 222, 221, 221, 220, 219, 218, 218,
    217, 216, 215, 215, 214, 213, 213, 212, 211, 211, 210, 209,
    209, 208, 207, 207, 206, 205, 205, 204, 203, 203, 202, 201,
    201, 200, 200, 199, 198, 198, 197, 197, 196, 195, 195, 194,
    194, 193, 193, 192, 191, 191, 190, 190, 189, 189, 188, 188,
    187, 186, 186, 185, 185, 184, 184, 183, 183, 182, 182, 181,
    181, 180, 180, 179, 179, 178, 178, 177, 177, 176, 176, 175,
    175, 174, 174, 174, 173, 173, 172, 172, 171, 171, 170, 170,
    170, 169, 169, 168, 168, 167, 167, 166, 166, 166, 165, 165,
    164, 164, 164, 163, 163, 162, 162, 162, 161, 161, 160, 160,
    160, 159, 159, 158, 158, 158, 157, 157, 156, 156, 156, 155,
    155, 155, 154, 154, 154, 153, 153, 152, 152, 152, 151, 151,
    151, 150, 150, 150, 149, 149, 149, 148, 148, 148, 147, 147,
    147, 146, 146, 146, 145, 145, 145, 144, 144, 144, 143, 143,
    143, 142, 142, 142, 142, 141, 141, 141, 140, 140, 140, 139,
    139, 139, 138, 138, 138, 138, 137, 137, 137, 136, 136, 136,
    136, 135, 135, 135, 134, 134, 134, 134, 133, 133, 133, 133,
    132, 132, 132, 131, 131, 131, 131, 130, 130, 130, 130, 129,
    129, 129, 129, 128, 128, 128, 128, 127, 127, 127, 127, 126,
    126, 126, 126, 125, 125, 125, 125, 124, 124, 124, 124, 124,
    123, 123, 123, 123, 122, 122, 122, 122, 121, 121, 121, 121,
    121, 120, 120, 120, 120, 119, 119, 119, 119, 119, 118, 118,
    118, 118, 117, 117, 117, 117, 117, 116, 116, 116, 116, 116,
    115, 115, 115, 115, 115, 114, 114, 114, 114, 114, 113, 113,
    113, 113, 113, 112, 112, 112, 112, 112, 111, 111, 111, 111,
    111, 110, 110, 110, 110, 110, 110, 109, 109, 109, 109, 109,
    108, 108, 108, 108, 108, 108, 107, 107, 107, 107, 107, 106,
    106, 106, 106, 106, 106, 105, 105, 105, 105, 105, 105, 104,
    104, 104, 104, 104, 104, 103, 103, 103, 103, 103, 103, 102,
    102, 102, 102, 102, 102, 102, 101, 101, 101, 101, 101, 101,
    100, 100, 100, 100, 100, 100, 99, 99, 99, 99, 99, 99,
    99, 98, 98, 98, 98, 98, 98, 98, 97, 97, 97, 97,
    97, 97, 97, 96, 96, 96, 96, 96, 96, 96, 95, 95,
    95, 95, 95, 95, 95, 94, 94, 94, 94, 94, 94, 94,
    93, 93, 93, 93, 93, 93, 93, 93, 92, 92, 92, 92,
    92, 92, 92, 91, 91, 91, 91, 91, 91, 91, 91, 90,
    90, 90, 90, 90, 90, 90, 90, 89, 89, 89, 89, 89,
    89, 89, 89, 88, 88, 88, 88, 88, 88, 88, 88, 88,
    87, 87, 87, 87, 87, 87, 87, 87, 86, 86, 86, 86,
    86, 86, 86, 86, 86, 85, 85, 85, 85, 85, 85, 85,
    85, 85, 84, 84, 84, 84, 84, 84, 84, 84, 84, 83,
    83, 83, 83, 83, 83, 83, 83, 83, 83, 82, 82, 82,
    82, 82, 82, 82, 82, 82, 81, 81, 81, 81, 81, 81,
    81, 81, 81, 81, 80, 80, 80, 80, 80, 80, 80, 80,
    80, 80, 79, 79, 79, 79, 79, 79, 79, 79, 79, 79,
    79, 78, 78, 78, 78, 78, 78, 78, 78, 78, 78, 77,
    77, 77, 77, 77, 77, 77, 77, 77, 77, 77, 76, 76,
    76, 76, 76, 76, 76, 76, 76, 76, 76, 75, 75, 75,
    75, 75, 75, 75, 75, 75, 75, 75, 75, 74, 74, 74,
    74, 74, 74, 74, 74, 74, 74, 74, 74, 73, 73, 73,
    73, 73, 73, 73, 73, 73, 73, 73, 73, 72, 72, 72,
    72, 72, 72, 72, 72, 72, 72, 72, 72, 71, 71, 71,
    71, 71, 71, 71, 71, 71, 71, 71, 71, 71, 70, 70,
    70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 69,
    69, 69, 69, 69, 69, 69, 69, 69, 69, 69, 69, 69,
    69, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 67, 67, 67, 67, 67, 67, 67, 67, 67,
    67, 67, 67, 67, 67, 66, 66, 66, 66, 66, 66, 66,
    66, 66, 66, 66, 66, 66, 66, 66, 65, 65, 65, 65,
    65, 65, 65, 65,
};

/* 65536 / (n + 1.5) for n < NK_RC_LIMIT: the adaptation rate of a young model */
static inline uint32_t nk_rate(uint32_t n) { return nk_rate_tab[n]; }

static inline uint32_t nk_bit_p1(const nk_bit *b) {
    uint32_t p = ((uint32_t)b->fast + b->slow) >> 5; /* 12 bits */
    return p < 1 ? 1 : (p > 4095 ? 4095 : p);
}

static inline void nk_bit_update(nk_bit *b, int bit) {
    if (b->n < NK_RC_LIMIT) {
        const uint32_t r = nk_rate(b->n++);
        const int32_t tf = bit ? 65535 : 0;
        const int32_t df = (int32_t)(((int64_t)(tf - b->fast) * (int32_t)(r > (65536u >> NK_RC_FAST) ? r : (65536u >> NK_RC_FAST))) >> 16);
        const int32_t ds = (int32_t)(((int64_t)(tf - b->slow) * (int32_t)(r > (65536u >> NK_RC_SLOW) ? r : (65536u >> NK_RC_SLOW))) >> 16);
        b->fast = (uint16_t)(b->fast + df);
        b->slow = (uint16_t)(b->slow + ds);
        return;
    }
    if (bit) {
        b->fast = (uint16_t)(b->fast + ((65536u - b->fast) >> NK_RC_FAST));
        b->slow = (uint16_t)(b->slow + ((65536u - b->slow) >> NK_RC_SLOW));
    } else {
        b->fast = (uint16_t)(b->fast - (b->fast >> NK_RC_FAST));
        b->slow = (uint16_t)(b->slow - (b->slow >> NK_RC_SLOW));
    }
}

typedef struct {
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    uint64_t cache_size;
    uint8_t *out;
    int64_t pos, cap;
    int overflow;
} nk_rc_enc;

static inline void nk_rc_enc_init(nk_rc_enc *rc, uint8_t *out, int64_t cap) {
    rc->low = 0;
    rc->range = 0xFFFFFFFFu;
    rc->cache = 0;
    rc->cache_size = 1;
    rc->out = out;
    rc->pos = -1; /* the first byte is always 0 (the interval never leaves [0, 1)): not sent */
    rc->cap = cap;
    rc->overflow = 0;
}

static inline void nk_rc_put(nk_rc_enc *rc, uint8_t byte) {
    if (rc->pos < 0) rc->pos = 0; /* the leading zero byte */
    else if (rc->pos < rc->cap) rc->out[rc->pos++] = byte;
    else rc->overflow = 1;
}

static inline void nk_rc_shift_low(nk_rc_enc *rc) {
    if ((uint32_t)rc->low < 0xFF000000u || (rc->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(rc->low >> 32);
        uint8_t temp = rc->cache;
        do {
            nk_rc_put(rc, (uint8_t)(temp + carry));
            temp = 0xFF;
        } while (--rc->cache_size != 0);
        rc->cache = (uint8_t)(rc->low >> 24);
    }
    rc->cache_size++;
    rc->low = (rc->low & 0x00FFFFFFu) << 8;
}

static inline void nk_rc_encode_p(nk_rc_enc *rc, int bit, uint32_t p1) {
    uint32_t bound = (rc->range >> 12) * (4096u - p1);
    if (!bit) {
        rc->range = bound;
    } else {
        rc->low += bound;
        rc->range -= bound;
    }
    while (rc->range < NK_RC_TOP) {
        rc->range <<= 8;
        nk_rc_shift_low(rc);
    }
}

static inline void nk_rc_encode(nk_rc_enc *rc, nk_bit *b, int bit) {
    nk_rc_encode_p(rc, bit, nk_bit_p1(b));
    nk_bit_update(b, bit);
}

/* n raw bits (p = 1/2), most significant first */
static inline void nk_rc_encode_raw(nk_rc_enc *rc, uint32_t v, int n) {
    for (int i = n - 1; i >= 0; i--) nk_rc_encode_p(rc, (int)((v >> i) & 1u), 2048);
}

/* Ends the code with the value of [low, low + range) that has the most trailing zero bits and
 * drops up to 4 trailing zero bytes: the decoder reads zeros past the end. */
static inline void nk_rc_enc_flush(nk_rc_enc *rc) {
    const uint64_t top = rc->low + rc->range - 1;
    for (int k = 32; k > 0; k--) {
        const uint64_t mask = ((uint64_t)1 << k) - 1, v = (rc->low + mask) & ~mask;
        if (v <= top) {
            rc->low = v;
            break;
        }
    }
    const int64_t start = rc->pos;
    for (int i = 0; i < 5; i++) nk_rc_shift_low(rc);
    for (int i = 0; i < 4 && rc->pos > start && rc->pos > 0 && rc->out[rc->pos - 1] == 0; i++)
        rc->pos--;
}

typedef struct {
    uint32_t range, code;
    const uint8_t *in;
    int64_t pos, len;
    int64_t overrun; /* bytes read past the end */
} nk_rc_dec;

static inline uint8_t nk_rc_get(nk_rc_dec *rc) {
    if (rc->pos < rc->len) return rc->in[rc->pos++];
    rc->overrun++;
    return 0;
}

static inline void nk_rc_dec_init(nk_rc_dec *rc, const uint8_t *in, int64_t len) {
    rc->in = in;
    rc->len = len;
    rc->pos = 0;
    rc->overrun = 0;
    rc->range = 0xFFFFFFFFu;
    rc->code = 0;
    for (int i = 0; i < 4; i++) rc->code = (rc->code << 8) | nk_rc_get(rc);
}

static inline int nk_rc_decode_p(nk_rc_dec *rc, uint32_t p1) {
    uint32_t bound = (rc->range >> 12) * (4096u - p1);
    int bit;
    if (rc->code < bound) {
        rc->range = bound;
        bit = 0;
    } else {
        rc->code -= bound;
        rc->range -= bound;
        bit = 1;
    }
    while (rc->range < NK_RC_TOP) {
        rc->range <<= 8;
        rc->code = (rc->code << 8) | nk_rc_get(rc);
    }
    return bit;
}

static inline int nk_rc_decode(nk_rc_dec *rc, nk_bit *b) {
    int bit = nk_rc_decode_p(rc, nk_bit_p1(b));
    nk_bit_update(b, bit);
    return bit;
}

static inline uint32_t nk_rc_decode_raw(nk_rc_dec *rc, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 1) | (uint32_t)nk_rc_decode_p(rc, 2048);
    return v;
}

/* ---- adaptive coding of a signed integer |v| < 2^NK_RES_NB_MAX (residual binarisation) */
#define NK_RES_NB 18  /* bit lengths 0..17 */
#define NK_RES_K 48   /* activity contexts */
#ifndef NK_TOP_SHIFT
#define NK_TOP_SHIFT 2 /* mantissa contexts use k >> NK_TOP_SHIFT */
#endif
#define NK_RES_KT (NK_RES_K >> NK_TOP_SHIFT)
#ifndef NK_RES_D
#define NK_RES_D 1    /* caller's context classes (the prediction's rounding offset did not pay) */
#endif
#ifndef NK_RES_NBD
#define NK_RES_NBD(d) 0 /* the bit-length contexts ignore d (dilution) */
#endif
#ifndef NK_RES_AF
#define NK_RES_AF 3   /* fast activity: mean over ~2^3 values */
#endif
#ifndef NK_RES_AS
#define NK_RES_AS 6   /* slow activity: ~2^6 values */
#endif

typedef struct {
    nk_bit nb[NK_RES_K][NK_RES_D][NK_RES_NB]; /* unary bit length, context (k, d, j) */
    nk_bit top[NK_RES_NB][NK_RES_KT][3]; /* first two bits below the leading one */
    nk_bit low[NK_RES_NB][NK_RES_NB]; /* remaining bits, context (n, position) */
    nk_bit sign[3][NK_RES_D];         /* context: sign of the previous value, d */
    uint32_t activity;                /* running mean of |v|, Q4 (fast) */
    uint32_t activity2;               /* the same, slow */
    int32_t prev_sign;                /* -1, 0, 1 */
    uint32_t last_mag;                /* |v| of the previous value */
} nk_res_model;

static inline int nk_bitlen(uint32_t v) { return v ? 32 - __builtin_clz(v) : 0; }

static inline void nk_res_init(nk_res_model *m) {
    for (int k = 0; k < NK_RES_K; k++)
        for (int d = 0; d < NK_RES_D; d++)
            for (int j = 0; j < NK_RES_NB; j++) nk_bit_init(&m->nb[k][d][j]);
    for (int n = 0; n < NK_RES_NB; n++) {
        for (int k = 0; k < NK_RES_KT; k++)
            for (int j = 0; j < 3; j++) nk_bit_init(&m->top[n][k][j]);
        for (int j = 0; j < NK_RES_NB; j++) nk_bit_init(&m->low[n][j]);
    }
    for (int j = 0; j < 3; j++)
        for (int d = 0; d < NK_RES_D; d++) nk_bit_init(&m->sign[j][d]);
    m->activity = m->activity2 = 16 * 4;
    m->prev_sign = 0;
    m->last_mag = 0;
}

/* activity context: two buckets per octave of the running mean of |v| */
#ifndef NK_RES_SUB
#define NK_RES_SUB 1 /* log2 of the buckets per octave */
#endif
static inline int nk_res_ctx(const nk_res_model *m) {
    uint32_t a = m->activity;
    int n = nk_bitlen(a);
    int k = n <= NK_RES_SUB ? (int)a
                            : ((n - NK_RES_SUB) << NK_RES_SUB) +
                                  (int)((a >> (n - 1 - NK_RES_SUB)) & ((1u << NK_RES_SUB) - 1)) +
                                  (1 << NK_RES_SUB) - 1;
    return k < NK_RES_K ? k : NK_RES_K - 1;
}

/* nk_res_init, then the trained initial probabilities of the broadband codec (nk_codec.c) */
void nk_res_init_prior(nk_res_model *m);

static inline void nk_res_after(nk_res_model *m, uint32_t mag, int32_t v) {
    m->activity += (uint32_t)(((int32_t)(mag << 4) - (int32_t)m->activity) >> NK_RES_AF);
    m->activity2 += (uint32_t)(((int32_t)(mag << 4) - (int32_t)m->activity2) >> NK_RES_AS);
    m->prev_sign = (v > 0) - (v < 0);
    m->last_mag = mag;
}

/* d: the caller's context class, 0 ≤ d < NK_RES_D */
static inline void nk_res_encode(nk_rc_enc *rc, nk_res_model *m, int32_t v, int d) {
    const int k = nk_res_ctx(m);
    nk_bit *nb = m->nb[k][NK_RES_NBD(d)];
    const uint32_t mag = (uint32_t)(v < 0 ? -v : v);
    const int n = nk_bitlen(mag);
    for (int j = 0; j < NK_RES_NB - 1; j++) {
        nk_rc_encode(rc, &nb[j], n > j);
        if (n <= j) break;
    }
    if (n >= 2) {
        int b1 = (int)((mag >> (n - 2)) & 1u);
        nk_rc_encode(rc, &m->top[n][k >> NK_TOP_SHIFT][0], b1);
        if (n >= 3) {
            int b2 = (int)((mag >> (n - 3)) & 1u);
            nk_rc_encode(rc, &m->top[n][k >> NK_TOP_SHIFT][1 + b1], b2);
            for (int i = n - 4; i >= 0; i--)
                nk_rc_encode(rc, &m->low[n][i], (int)((mag >> i) & 1u));
        }
    }
    if (n) nk_rc_encode(rc, &m->sign[m->prev_sign + 1][d], v < 0);
    nk_res_after(m, mag, v);
}

static inline int32_t nk_res_decode(nk_rc_dec *rc, nk_res_model *m, int d) {
    const int k = nk_res_ctx(m);
    nk_bit *nb = m->nb[k][NK_RES_NBD(d)];
    int n = 0;
    while (n < NK_RES_NB - 1 && nk_rc_decode(rc, &nb[n])) n++;
    uint32_t mag = n ? 1u : 0u;
    if (n >= 2) {
        int b1 = nk_rc_decode(rc, &m->top[n][k >> NK_TOP_SHIFT][0]);
        mag = (mag << 1) | (uint32_t)b1;
        if (n >= 3) {
            int b2 = nk_rc_decode(rc, &m->top[n][k >> NK_TOP_SHIFT][1 + b1]);
            mag = (mag << 1) | (uint32_t)b2;
            for (int i = n - 4; i >= 0; i--)
                mag = (mag << 1) | (uint32_t)nk_rc_decode(rc, &m->low[n][i]);
        }
    }
    int32_t v = (int32_t)mag;
    if (n && nk_rc_decode(rc, &m->sign[m->prev_sign + 1][d])) v = -v;
    nk_res_after(m, mag, v);
    return v;
}

/* CRC-32 (IEEE 802.3, reflected, as zlib), nibble table: 16 entries of 0xEDB88320 folding. */
static inline uint32_t nk_crc32(const uint8_t *p, int64_t n) {
    static const uint32_t t[16] = {
        0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
        0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
        0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
    uint32_t c = 0xFFFFFFFFu;
    for (int64_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ t[c & 15];
        c = (c >> 4) ^ t[c & 15];
    }
    return c ^ 0xFFFFFFFFu;
}

static inline void nk_put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void nk_put32(uint8_t *p, uint32_t v) {
    nk_put16(p, v & 0xFFFFu);
    nk_put16(p + 2, v >> 16);
}
static inline uint32_t nk_get16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static inline uint32_t nk_get32(const uint8_t *p) { return nk_get16(p) | (nk_get16(p + 2) << 16); }

#endif
