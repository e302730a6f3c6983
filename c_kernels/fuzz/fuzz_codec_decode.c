/* libFuzzer: arbitrary bytes into the nk_codec decoders must give output or a clean error.
 * Input: [1 byte selector][2 bytes header length][header][packets, each 2-byte length-prefixed].
 * CRCs are patched to match so the fuzzer reaches the entropy decoder behind them. */
#include <stdlib.h>
#include <string.h>

#include "nk_codec.h"
#include "nk_codec_events.h"
#include "nk_codec_rc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fix_crc(uint8_t *p, size_t n) {
    if (n >= 4) nk_put32(p + n - 4, nk_crc32(p, (int64_t)n - 4));
}

/* selector bit 2: encode the rest as int16 samples (1 channel, ladder fitted), flip the bits
 * named by the last 8 bytes, patch the CRCs and decode: near-valid streams reach deep. */
static void mutated_stream(const uint8_t *data, size_t size) {
    if (size < 12) return;
    const int64_t T = (int64_t)(size - 8) / 2;
    int16_t *x = malloc(sizeof(int16_t) * (size_t)T), *y = malloc(sizeof(int16_t) * 64);
    memcpy(x, data, sizeof(int16_t) * (size_t)T);
    int16_t *lv = malloc(65536 * sizeof(int16_t));
    int32_t L = nk_codec_fit_ladder(x, T, lv, 65536);
    nk_codec_config cfg = {1, 1000, 128, L > 0 ? L : 0};
    nk_codec_enc *e = NULL;
    nk_codec_enc_new(&cfg, lv, &e);
    int32_t hcap = nk_codec_max_header_size(cfg.n_levels), hl = 0;
    uint8_t *hdr = malloc((size_t)hcap);
    nk_codec_enc_header(e, hdr, hcap, &hl);
    const uint8_t *flips = data + size - 8;
    hdr[flips[0] % hl] ^= flips[1];
    fix_crc(hdr, (size_t)hl);
    int st;
    nk_codec_dec *d = NULL;
    st = nk_codec_dec_new(hdr, hl, &d);
    nk_codec_config dcfg = {1, 0, 0, 0};
    if (d) nk_codec_dec_config(d, &dcfg, NULL, 0);
    free(y);
    y = malloc(sizeof(int16_t) * 64 * (size_t)dcfg.n_channels); /* the header may be mutated */
    uint8_t *pk = malloc((size_t)nk_codec_max_packet_size(1, 64));
    for (int64_t t = 0; t < T; t += 64) {
        const int32_t n = (int32_t)(T - t < 64 ? T - t : 64);
        int64_t len = 0;
        nk_codec_encode(e, x + t, n, pk, nk_codec_max_packet_size(1, 64), &len);
        const size_t k = (size_t)(t / 64) % 3;
        pk[flips[2 + 2 * k] % len] ^= flips[3 + 2 * k];
        fix_crc(pk, (size_t)len);
        nk_codec_packet_info info;
        if (d) nk_codec_decode(d, pk, len, y, 64, &info);
    }
    nk_codec_dec_free(d);
    nk_codec_enc_free(e);
    free(x); free(y); free(lv); free(hdr); free(pk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 || size > (1u << 20)) return 0;
    if (data[0] & 4) {
        mutated_stream(data + 1, size - 1);
        return 0;
    }
    uint8_t *buf = malloc(size);
    memcpy(buf, data, size);
    const int patch = buf[0] & 1, events = buf[0] & 2;
    if (events) {
        if (patch) fix_crc(buf + 1, size - 1);
        int32_t n = 0, K = 0, W = 0;
        if (nk_codec_events_peek(buf + 1, (int64_t)size - 1, &n, &K, &W) == NK_OK && n <= 256 &&
            (int64_t)n * K * W <= 65536) {
            nk_event *ev = calloc((size_t)n + 1, sizeof *ev);
            float *wf = calloc((size_t)n * (size_t)K * (size_t)W + 1, sizeof(float));
            nk_codec_events_decode(buf + 1, (int64_t)size - 1, ev, n, wf, (int64_t)n * K * W, &n);
            free(ev);
            free(wf);
        }
        free(buf);
        return 0;
    }
    size_t hl = nk_get16(buf + 1), pos = 3;
    if (hl > size - pos) hl = size - pos;
    if (patch) fix_crc(buf + pos, hl);
    int st;
    nk_codec_dec *d = NULL;
    st = nk_codec_dec_new(buf + pos, (int32_t)hl, &d);
    pos += hl;
    if (d) {
        nk_codec_config cfg;
        nk_codec_dec_config(d, &cfg, NULL, 0);
        const int32_t cap = 512;
        int16_t *out = NULL;
        if ((int64_t)cfg.n_channels * cap <= (1 << 20)) out = malloc(sizeof(int16_t) * (size_t)cfg.n_channels * cap);
        while (out && pos + 2 <= size) {
            size_t pl = nk_get16(buf + pos);
            pos += 2;
            if (pl > size - pos) pl = size - pos;
            if (patch) fix_crc(buf + pos, pl);
            nk_codec_packet_info info;
            nk_codec_decode(d, buf + pos, (int64_t)pl, out, cap, &info);
            pos += pl;
        }
        free(out);
        nk_codec_dec_free(d);
    }
    free(buf);
    return 0;
}
