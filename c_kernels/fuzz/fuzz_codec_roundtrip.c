/* libFuzzer: any int16 data, channel count, block size, resync interval and ladder must round
 * trip exactly (the encoder's output decodes to the input). */
#include <stdlib.h>
#include <string.h>

#include "nk_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4 || size > (1u << 18)) return 0;
    const int32_t C = 1 + data[0] % 5, block = 1 + data[1] * 4, resync = data[2] * 8;
    const int use_ladder = data[3] & 1;
    const int64_t T = (int64_t)((size - 4) / 2) / C;
    if (T < 1) return 0;
    int16_t *x = malloc(sizeof(int16_t) * (size_t)(T * C));
    int16_t *y = malloc(sizeof(int16_t) * (size_t)(T * C));
    memcpy(x, data + 4, sizeof(int16_t) * (size_t)(T * C));
    int16_t *lv = malloc(65536 * sizeof(int16_t));
    int32_t L = use_ladder ? nk_codec_fit_ladder(x, T * C, lv, 65536) : 0;
    if (L < 0) abort();
    nk_codec_config cfg = {C, 1000, resync, L};
    nk_codec_enc *e = NULL;
    nk_codec_enc_new(&cfg, lv, &e);
    if (!e) abort();
    int32_t hcap = nk_codec_max_header_size(L), hl = 0;
    uint8_t *hdr = malloc((size_t)hcap);
    if (nk_codec_enc_header(e, hdr, hcap, &hl) != NK_OK) abort();
    int st;
    nk_codec_dec *d = NULL;
    st = nk_codec_dec_new(hdr, hl, &d);
    if (!d) abort();
    const int64_t pcap = nk_codec_max_packet_size(C, block);
    uint8_t *pk = malloc((size_t)pcap);
    for (int64_t t = 0; t < T; t += block) {
        const int32_t n = (int32_t)(T - t < block ? T - t : block);
        int64_t len = 0;
        if (nk_codec_encode(e, x + t * C, n, pk, pcap, &len) != NK_OK) abort();
        nk_codec_packet_info info;
        if (nk_codec_decode(d, pk, len, y + t * C, block, &info) != NK_OK || info.skipped ||
            info.n_samples != n)
            abort();
    }
    if (memcmp(x, y, sizeof(int16_t) * (size_t)(T * C))) abort();
    nk_codec_dec_free(d);
    nk_codec_enc_free(e);
    free(x); free(y); free(lv); free(hdr); free(pk);
    return 0;
}
