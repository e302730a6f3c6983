/* test_codec — nk_codec on deterministic synthetic input: "<name> <fnv1a-64> ok|FAIL" lines.
 * The hashes cover the encoded bytes, so equal outputs across native / ASan / qemu runs prove
 * the bitstream is identical on every architecture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nk_codec.h"
#include "nk_codec_events.h"
#include "nk_codec_rc.h"
#include "nk_testutil.h"

#define C 4
#define T 20000
#define BLOCK 200


/* the N1's ladder shape: 10-bit codes scaled by ≈64.06, odd symmetric */
static int16_t level_of(int32_t q) { return (int16_t)((q * 6406 + 3103 + 50) / 100 - (q < 0 ? 1 : 0)); }

static int16_t x[T * C], y[T * C];
static uint8_t pk[(T / BLOCK) * (14 + 2 * BLOCK * C)];
static int64_t plen[T / BLOCK];

/* encodes x in blocks; returns total bytes, fills pk/plen */
static int64_t encode_all(nk_codec_enc *e, int32_t block, uint64_t *h) {
    int64_t pos = 0;
    for (int32_t i = 0; i * block < T; i++) {
        int64_t n = 0;
        int st = nk_codec_encode(e, x + (size_t)i * block * C, block, pk + pos,
                                 nk_codec_max_packet_size(C, block), &n);
        if (st != NK_OK) return -1;
        plen[i] = n;
        pos += n;
    }
    *h = fnv(FNV0, pk, (size_t)pos);
    return pos;
}

/* decodes every packet except `drop`; counts skipped and lost packets */
static int decode_all(nk_codec_dec *d, int32_t block, int32_t drop, int *skipped, int *lost) {
    int64_t pos = 0;
    *skipped = *lost = 0;
    for (int32_t i = 0; i * block < T; i++) {
        nk_codec_packet_info info;
        if (i != drop) {
            int st = nk_codec_decode(d, pk + pos, plen[i], y + (size_t)i * block * C, block, &info);
            if (st != NK_OK) return st;
            *skipped += info.skipped;
            *lost += info.lost_packets;
            if (info.skipped) memset(y + (size_t)i * block * C, 0, sizeof(int16_t) * block * C);
        } else {
            memset(y + (size_t)i * block * C, 0, sizeof(int16_t) * block * C);
        }
        pos += plen[i];
    }
    return NK_OK;
}

int main(void) {
    const uint8_t check[] = "123456789";
    report("crc32_known", nk_crc32(check, 9), nk_crc32(check, 9) == 0xCBF43926u);

    /* --- ladder data: slow oscillation + noise + spikes in 10-bit codes */
    int16_t ladder[1024];
    for (int32_t q = -512; q < 512; q++) ladder[q + 512] = level_of(q);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            int32_t q = (int32_t)((t * (c + 3)) % 400) / 20 - 10 + (int32_t)(rng() % 9) - 4;
            if (t % 997 < 6) q -= 60 * (int32_t)(t % 997);
            x[t * C + c] = level_of(q);
        }
    int16_t fitted[1100];
    int32_t nl = nk_codec_fit_ladder(x, (int64_t)T * C, fitted, 1100);
    /* every sample lies on the fitted ladder, whose spacing is 64 or 65 */
    int fit_ok = nl > 0;
    for (int32_t i = 1; fit_ok && i < nl; i++)
        fit_ok = fitted[i] - fitted[i - 1] >= 63 && fitted[i] - fitted[i - 1] <= 66;
    for (int i = 0; fit_ok && i < T * C; i++) {
        int32_t j = 0;
        while (j < nl && fitted[j] != x[i]) j++;
        fit_ok = j < nl;
    }
    report("fit_ladder", fnv(FNV0, fitted, sizeof(int16_t) * (size_t)(nl > 0 ? nl : 0)), fit_ok);

    nk_codec_config cfg = {C, 19531, 1000, 1024};
    nk_codec_enc *e = NULL;
    nk_codec_enc_new(&cfg, ladder, &e);
    static uint8_t hdr[65536];
    int32_t hlen = 0;
    int st = nk_codec_enc_header(e, hdr, (int32_t)sizeof hdr, &hlen);
    report("header", fnv(FNV0, hdr, (size_t)hlen), st == NK_OK && hlen < 300);
    uint64_t h;
    int64_t total = encode_all(e, BLOCK, &h);
    nk_codec_dec *d = NULL;
    st = nk_codec_dec_new(hdr, hlen, &d);
    int skipped, lost;
    st = decode_all(d, BLOCK, -1, &skipped, &lost);
    report("ladder_roundtrip", h, total > 0 && total < (int64_t)sizeof x / 2 && st == NK_OK &&
           !memcmp(x, y, sizeof x));

    /* --- loss: drop packet 7; packets 8, 9 are skipped, packet 10 (sample 2000) resyncs */
    nk_codec_dec_reset(d);
    st = decode_all(d, BLOCK, 7, &skipped, &lost);
    report("loss_confined", (uint64_t)(skipped * 100 + lost),
           st == NK_OK && skipped == 2 && lost == 1 &&
           !memcmp(x, y, sizeof(int16_t) * 7 * BLOCK * C) &&
           !memcmp(x + 10 * BLOCK * C, y + 10 * BLOCK * C, sizeof(int16_t) * (T - 10 * BLOCK) * C));

    /* --- corruption: every single-byte flip in packet 3 is caught */
    int64_t off3 = plen[0] + plen[1] + plen[2];
    int caught = 0, tries = 0;
    for (int64_t b = 0; b < plen[3]; b += 7) {
        nk_codec_dec_reset(d);
        nk_codec_packet_info info;
        int64_t pos = 0;
        for (int i = 0; i < 3; i++) {
            nk_codec_decode(d, pk + pos, plen[i], y, BLOCK, &info);
            pos += plen[i];
        }
        pk[off3 + b] ^= 0x10;
        caught += nk_codec_decode(d, pk + off3, plen[3], y, BLOCK, &info) == NK_ERR_CORRUPT;
        pk[off3 + b] ^= 0x10;
        tries++;
    }
    report("corrupt_detected", (uint64_t)caught, caught == tries);
    nk_codec_dec_free(d);

    /* --- block-size independence of the decoded signal; other block sizes */
    nk_codec_enc_free(e);
    cfg.resync_interval = 0;
    nk_codec_enc_new(&cfg, ladder, &e);
    total = encode_all(e, 500, &h);
    st = nk_codec_dec_new(hdr, hlen, &d); /* same ladder; the header's interval is informational */
    st = decode_all(d, 500, -1, &skipped, &lost);
    report("blocks_500_noresync", h, st == NK_OK && !memcmp(x, y, sizeof x));
    nk_codec_dec_free(d);
    nk_codec_enc_free(e);

    /* --- off-ladder samples are escaped */
    for (int i = 0; i < 50; i++) x[(rng() % T) * C + rng() % C] = (int16_t)(rng() & 0xFFFF);
    cfg.resync_interval = 1000;
    nk_codec_enc_new(&cfg, ladder, &e);
    total = encode_all(e, BLOCK, &h);
    st = nk_codec_dec_new(hdr, hlen, &d);
    st = decode_all(d, BLOCK, -1, &skipped, &lost);
    report("escapes", h, st == NK_OK && !memcmp(x, y, sizeof x));
    nk_codec_dec_free(d);
    nk_codec_enc_free(e);

    /* --- identity map on white noise: stored packets, still exact */
    for (int i = 0; i < T * C; i++) x[i] = (int16_t)(rng() & 0xFFFF);
    nk_codec_config raw = {C, 30000, 1000, 0};
    nk_codec_enc_new(&raw, NULL, &e);
    nk_codec_enc_header(e, hdr, (int32_t)sizeof hdr, &hlen);
    total = encode_all(e, BLOCK, &h);
    st = nk_codec_dec_new(hdr, hlen, &d);
    st = decode_all(d, BLOCK, -1, &skipped, &lost);
    report("identity_noise", h, st == NK_OK && !memcmp(x, y, sizeof x) &&
           total <= (T / BLOCK) * (int64_t)nk_codec_max_packet_size(C, BLOCK));
    nk_codec_dec_free(d);
    nk_codec_enc_free(e);

    /* --- identity map on a smooth signal compresses */
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            x[t * C + c] = (int16_t)(((t * 37 + c * 1000) % 20000) - 10000 + (int32_t)(rng() % 5));
    nk_codec_enc_new(&raw, NULL, &e);
    total = encode_all(e, BLOCK, &h);
    st = nk_codec_dec_new(hdr, hlen, &d);
    st = decode_all(d, BLOCK, -1, &skipped, &lost);
    report("identity_smooth", h, st == NK_OK && !memcmp(x, y, sizeof x) && total < (int64_t)sizeof x / 2);
    nk_codec_dec_free(d);
    nk_codec_enc_free(e);

    /* --- header errors */
    hdr[5] ^= 1;
    st = nk_codec_dec_new(hdr, hlen, &d);
    report("header_corrupt", (uint64_t)st, d == NULL && st == NK_ERR_CORRUPT);

    /* --- events and snippets */
    enum { NE = 500, K = 4, W = 48 };
    nk_event *ev = calloc(NE, sizeof *ev), *ev2 = calloc(NE, sizeof *ev2);
    float *wf = calloc((size_t)NE * K * W, sizeof(float)), *wf2 = calloc((size_t)NE * K * W, sizeof(float));
    int64_t ts = 1000;
    for (int i = 0; i < NE; i++) {
        ts += 1 + rng() % 400;
        ev[i].sample = ts;
        ev[i].channel = (int32_t)(rng() % 256);
        ev[i].unit = (int32_t)(rng() % 5) - 1;
        ev[i].amplitude = -(float)(50 + rng() % 300) - 0.25f * (float)(rng() % 4);
        ev[i].threshold = 40.0f;
        for (int k = 0; k < K; k++)
            for (int s = 0; s < W; s++)
                wf[((size_t)i * K + k) * W + s] = (float)((int32_t)(rng() % 41) - 20) * 0.7f +
                    (s == 16 ? ev[i].amplitude / (float)(k + 1) : 0.0f);
    }
    const float step = 2.0f;
    int64_t ecap = nk_codec_events_max_size(NE, K, W), elen = 0;
    uint8_t *eb = malloc((size_t)ecap);
    st = nk_codec_events_encode(ev, NE, NULL, K, W, 0.25f, eb, ecap, &elen); /* exact amplitudes */
    int32_t ne2 = 0;
    int st2 = nk_codec_events_decode(eb, elen, ev2, NE, NULL, 0, &ne2);
    int ev_ok = st == NK_OK && st2 == NK_OK && ne2 == NE;
    for (int i = 0; ev_ok && i < NE; i++)
        ev_ok = ev2[i].sample == ev[i].sample && ev2[i].channel == ev[i].channel &&
                ev2[i].unit == ev[i].unit && ev2[i].amplitude == ev[i].amplitude;
    report("events", fnv(FNV0, eb, (size_t)elen), ev_ok && elen < NE * 6);
    st = nk_codec_events_encode(ev, NE, wf, K, W, step, eb, ecap, &elen);
    st2 = nk_codec_events_decode(eb, elen, ev2, NE, wf2, (int64_t)NE * K * W, &ne2);
    float maxerr = 0;
    for (int i = 0; i < NE; i++) {
        float dd = ev2[i].amplitude - ev[i].amplitude;
        if (dd < 0) dd = -dd;
        if (dd > maxerr) maxerr = dd;
    }
    for (size_t i = 0; i < (size_t)NE * K * W; i++) {
        float dd = wf2[i] > wf[i] ? wf2[i] - wf[i] : wf[i] - wf2[i];
        if (dd > maxerr) maxerr = dd;
    }
    report("snippets", fnv(FNV0, eb, (size_t)elen),
           st == NK_OK && st2 == NK_OK && ne2 == NE && maxerr <= step / 2 * 1.0001f);
    eb[elen / 2] ^= 4;
    report("events_corrupt", 0, nk_codec_events_decode(eb, elen, ev2, NE, wf2,
                                                      (int64_t)NE * K * W, &ne2) == NK_ERR_CORRUPT);
    free(ev); free(ev2); free(wf); free(wf2); free(eb);
    return failures ? 1 : 0;
}
