/* nk_testutil.h — what every C test program shares: an FNV-1a hash of outputs, the
 * "<name> <hash> ok|FAIL" report line, and a platform-independent integer PRNG, so that the
 * same program prints the same lines natively, under sanitizers and under qemu. */
#ifndef NK_TESTUTIL_H
#define NK_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FNV0 1469598103934665603ULL

static int failures = 0;

static inline uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

static inline void report(const char *name, uint64_t h, int ok) {
    printf("%s %016llx %s\n", name, (unsigned long long)h, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* xorshift64* */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static inline uint32_t rng(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

/* approximately Gaussian (sum of 4 uniforms), integer only; scale ≈ σ */
static inline int32_t gauss_int(int32_t scale) {
    int32_t s = 0;
    for (int i = 0; i < 4; i++) s += (int32_t)(rng() & 0xFFFF) - 32768;
    return (int32_t)(((int64_t)s * scale) / 37837); /* 37837 ≈ sqrt(4/12)·65536 */
}

#endif
