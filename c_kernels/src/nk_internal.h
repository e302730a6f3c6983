/* nk_internal.h — private helpers shared by the kernel sources (not part of the API). */
#ifndef NK_INTERNAL_H
#define NK_INTERNAL_H

/* NK_HOT marks per-block loops worth an AVX2 build on x86_64: GCC emits both versions and the
 * loader picks one by CPU. No FMA is enabled and the library is built with -ffp-contract=off,
 * so both versions — and the aarch64/armhf builds — round identically (the C tests prove it). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NK_NO_CLONES)
#define NK_HOT __attribute__((target_clones("avx2", "default")))
#else
#define NK_HOT
#endif

#endif
