/* test_sort_late — late labels (late_labels = 1): a candidate's first members leave the sorter
 * unlabelled; when it is born, NK_SORT_LABEL events name them (sample, channel) and its unit.
 * Neuron A on channel 2 and B on channel 5 fire in turn, sorted in blocks of 4. Applying the
 * LABEL events to the spikes they name must label every founding member but the one past
 * FOUND_MAX (8) with its neuron's unit, touch only spikes left unlabelled, and leave the online
 * labels exactly as without late labels. Prints "<name> <fnv1a-64> ok" lines, compared across
 * native, sanitizer and qemu runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nk_common.h"
#include "nk_sort.h"
#include "nk_sort_testutil.h"
#include "nk_testutil.h"

#define C 8
#define K 3
#define L 32
#define PRE 10
#define NSPK 120
#define BLOCK 4
#define SIGMA 10

_Static_assert(L == NK_TEST_L, "the tests' spike shape has NK_TEST_L samples");
static const float peak_amp[2][C] = {
    {0, 40, 150, 40, 0, 0, 0, 0},    /* A: channel 2 */
    {0, 0, 0, 0, 30, 120, 30, 0},    /* B: channel 5 */
};
static const int32_t home[2] = {2, 5};
static int32_t nbrs[C * K];
static nk_event ev[NSPK];
static float wav[NSPK][K * L];

static void make_data(void) {
    rng_state = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < NSPK; i++) {
        const int u = i & 1;
        const int32_t ch = home[u];
        ev[i].sample = 1000 + (int64_t)i * 450;
        ev[i].channel = ch; ev[i].unit = -7;
        ev[i].amplitude = -peak_amp[u][ch]; ev[i].threshold = 5.0f * SIGMA;
        for (int p = 0; p < K; p++) {
            const int32_t nc = nbrs[ch * K + p];
            for (int l = 0; l < L; l++)
                wav[i][p * L + l] = nc < 0 ? 0.0f
                                  : peak_amp[u][nc] * nk_test_shape[l] + (float)gauss_int(SIGMA);
        }
    }
}

/* Sorts every spike; labels[] online, late[] with the LABEL events applied; counts the LABEL
 * events and those naming a spike that was not left unlabelled. Returns a hash of both. */
static uint64_t run(int late_labels, int32_t *labels, int32_t *late, int32_t *n_label,
                    int32_t *n_bad) {
    nk_sort_config cfg = nk_test_sort_config(C, K, L, PRE);
    cfg.late_labels = late_labels;
    nk_sort *s = NULL;
    if (nk_sort_new(&cfg, nbrs, NULL, 0, &s) != NK_OK) return 0;
    const int32_t cap = nk_sort_max_events(s, BLOCK);
    nk_sort_event *out = calloc((size_t)cap, sizeof *out);
    static nk_event buf[NSPK];
    memcpy(buf, ev, sizeof ev);
    uint64_t h = FNV0;
    *n_label = *n_bad = 0;
    for (int32_t i = 0; i < NSPK; i += BLOCK) {
        int32_t m = 0;
        if (nk_sort_process(s, buf + i, wav[i], BLOCK, buf[i + BLOCK - 1].sample + 1, out, cap,
                            &m) != NK_OK) {
            h = 0;
            break;
        }
        for (int32_t j = 0; j < i + BLOCK; j++) late[j] = j < i ? late[j] : buf[j].unit;
        for (int32_t q = 0; q < m; q++) {
            if (out[q].kind != NK_SORT_LABEL) continue;
            (*n_label)++;
            h = fnv(fnv(fnv(h, &out[q].sample, 8), &out[q].unit, 4), &out[q].channel, 4);
            int32_t hit = -1;
            for (int32_t j = 0; j <= i + BLOCK - 1 && hit < 0; j++)
                if (buf[j].sample == out[q].sample && buf[j].channel == out[q].channel) hit = j;
            if (hit < 0 || late[hit] != -1) (*n_bad)++;
            else late[hit] = out[q].unit;
        }
    }
    for (int32_t i = 0; i < NSPK; i++) labels[i] = buf[i].unit;
    free(out);
    nk_sort_free(s);
    return h ? fnv(fnv(h, labels, sizeof(int32_t) * NSPK), late, sizeof(int32_t) * NSPK) : 0;
}

int main(void) {
    _Static_assert(K == 3, "line neighbours: 3 per channel");
    nk_test_line_neighbors(nbrs, C);
    make_data();
    static int32_t on0[NSPK], late0[NSPK], on1[NSPK], late1[NSPK];
    int32_t n0, bad0, n1, bad1;
    const uint64_t h0 = run(0, on0, late0, &n0, &bad0);
    const uint64_t h1 = run(1, on1, late1, &n1, &bad1);
    /* per neuron: unlabelled online / after the late labels, and spikes not its unit's */
    int32_t unl[2] = {0, 0}, unl_late[2] = {0, 0}, wrong[2] = {0, 0};
    const int32_t unit[2] = {on1[NSPK - 2], on1[NSPK - 1]};
    for (int32_t i = 0; i < NSPK; i++) {
        unl[i & 1] += on1[i] < 0;
        unl_late[i & 1] += late1[i] < 0;
        wrong[i & 1] += late1[i] >= 0 && late1[i] != unit[i & 1];
    }
    const int32_t founders = (int32_t)nk_test_sort_config(C, K, L, PRE).birth_spikes - 1;
    report("sort_late_off", h0, h0 != 0 && n0 == 0 && memcmp(on0, late0, sizeof on0) == 0);
    report("sort_late_online_unchanged", h1, h1 != 0 && memcmp(on0, on1, sizeof on0) == 0);
    report("sort_late_labels", h1, h1 != 0 && bad1 == 0 && unit[0] >= 0 && unit[1] >= 0
                                   && unit[0] != unit[1] && unl[0] == founders
                                   && unl[1] == founders && n1 == 16
                                   && unl_late[0] == founders - 8 && unl_late[1] == founders - 8
                                   && wrong[0] == 0 && wrong[1] == 0);
    printf("  unlabelled online %d/%d, after %d LABEL events %d/%d; wrong %d/%d, bad %d\n",
           unl[0], unl[1], n1, unl_late[0], unl_late[1], wrong[0], wrong[1], bad1);
    return failures ? 1 : 0;
}
