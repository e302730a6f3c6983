/* codec_bench — encodes and decodes mono/multichannel int16 WAV files with nk_codec and prints
 * one line per file: "<path> <original bytes> <compressed bytes> <samples> <enc ns> <dec ns>".
 * Compressed bytes = the hubctl container's size (see host_tools/codec_cli.py). Used by host_tools/bench/bench_codec.py (also under callgrind).
 *   codec_bench BLOCK RESYNC [--no-verify] FILE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nk_codec.h"

static int64_t varint_len(int64_t n) {
    int64_t k = 1;
    while (n >= 128) { n >>= 7; k++; }
    return k;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* returns malloc'd file; *data_off, *data_len locate the PCM samples */
static uint8_t *read_wav(const char *path, long *size, long *data_off, long *data_len, int *nch) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)*size);
    if (!b || fread(b, 1, (size_t)*size, f) != (size_t)*size) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    *nch = 1;
    long p = 12;
    while (p + 8 <= *size) {
        long len = (long)(b[p + 4] | b[p + 5] << 8 | b[p + 6] << 16 | (uint32_t)b[p + 7] << 24);
        if (!memcmp(b + p, "fmt ", 4)) *nch = b[p + 10] | b[p + 11] << 8;
        if (!memcmp(b + p, "data", 4)) {
            *data_off = p + 8;
            *data_len = len < *size - p - 8 ? len : *size - p - 8;
            return b;
        }
        p += 8 + len + (len & 1);
    }
    free(b);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: codec_bench BLOCK RESYNC [--no-verify] FILE...\n");
        return 2;
    }
    const int32_t block = atoi(argv[1]), resync = atoi(argv[2]);
    int verify = 1, first = 3;
    if (!strcmp(argv[3], "--no-verify")) { verify = 0; first = 4; }
    int failures = 0;
    for (int a = first; a < argc; a++) {
        long size, off = 0, len = 0;
        int C;
        uint8_t *wav = read_wav(argv[a], &size, &off, &len, &C);
        if (!wav) { fprintf(stderr, "%s: cannot read\n", argv[a]); return 2; }
        const int64_t T = len / 2 / C;
        int16_t *x = malloc((size_t)(T * C + 1) * sizeof(int16_t));
        int16_t *y = malloc((size_t)(T * C + 1) * sizeof(int16_t));
        memcpy(x, wav + off, (size_t)(T * C) * 2);
        int16_t *lv = malloc(65536 * sizeof(int16_t));
        int64_t t0 = now_ns();
        int32_t L = nk_codec_fit_ladder(x, T * C, lv, 65536);
        nk_codec_config cfg = {C, 19531, resync, L};
        nk_codec_enc *e = NULL;
        nk_codec_enc_new(&cfg, lv, &e);
        int32_t hcap = nk_codec_max_header_size(L), hlen = 0;
        uint8_t *hdr = malloc((size_t)hcap);
        nk_codec_enc_header(e, hdr, hcap, &hlen);
        int64_t pcap = nk_codec_max_packet_size(C, block);
        int64_t npk = (T + block - 1) / block;
        uint8_t *pk = malloc((size_t)(pcap * (npk ? npk : 1)));
        int64_t *plen = malloc((size_t)(npk + 1) * sizeof(int64_t));
        /* the hubctl container: magic (5) + three varint-prefixed blobs, then the packets; a
         * 44-byte header is taken to be the canonical one that the container omits */
        const int64_t pre = off == 44 ? 0 : off, suf = size - off - len;
        int64_t total = 5 + varint_len(pre) + pre + varint_len(suf) + suf + varint_len(hlen) + hlen,
                pos = 0;
        for (int64_t i = 0; i < npk; i++) {
            int32_t n = (int32_t)(T - i * block < block ? T - i * block : block);
            int st = nk_codec_encode(e, x + i * block * C, n, pk + pos, pcap, &plen[i]);
            if (st) { fprintf(stderr, "encode: %d\n", st); return 1; }
            pos += plen[i];
            total += varint_len(plen[i]) + plen[i];
        }
        int64_t t1 = now_ns();
        int64_t t2 = t1, t3 = t1;
        if (verify) {
            int st;
            t2 = now_ns();
            nk_codec_dec *d = NULL;
            d = nk_codec_dec_new(hdr, hlen, &st);
            pos = 0;
            for (int64_t i = 0; i < npk && d; i++) {
                nk_codec_packet_info info;
                st = nk_codec_decode(d, pk + pos, plen[i], y + i * block * C, block, &info);
                if (st || info.skipped) { fprintf(stderr, "decode: %d\n", st); break; }
                pos += plen[i];
            }
            t3 = now_ns();
            if (!d || memcmp(x, y, (size_t)(T * C) * 2)) {
                fprintf(stderr, "%s: ROUND TRIP MISMATCH\n", argv[a]);
                failures++;
            }
            nk_codec_dec_free(d);
        }
        printf("%s %ld %lld %lld %lld %lld\n", argv[a], size, (long long)total, (long long)(T * C),
               (long long)(t1 - t0), (long long)(t3 - t2));
        nk_codec_enc_free(e);
        free(wav); free(x); free(y); free(lv); free(hdr); free(pk); free(plen);
    }
    return failures ? 1 : 0;
}
