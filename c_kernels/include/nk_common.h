/* nk_common.h — status codes shared by every nk_* kernel.
 *
 * Conventions for all kernels in this library:
 *   - one opaque state struct per kernel: nk_<kernel>_new / _process / _reset / _free;
 *   - _new allocates once; _process never allocates, writes only into caller-owned buffers
 *     whose capacity the caller states, and returns an nk_status;
 *   - data blocks are sample-major (interleaved): x[t * n_channels + c];
 *   - no globals, no I/O, no exit().
 *
 * Determinism: every kernel is written so that the same input gives bit-identical output on
 * x86_64 and aarch64. Floating point is IEEE-754 binary32/binary64 with a fixed evaluation
 * order; the library is compiled with -ffp-contract=off (no fused multiply-add) and calls no
 * libm function inside a _process path (sqrtf is correctly rounded everywhere). The C self-test
 * (c_kernels/tests/nk_selftest.c) hashes every kernel's output so native and qemu runs compare.
 */
#ifndef NK_COMMON_H
#define NK_COMMON_H
#include <stdint.h>

/* cffi-begin */
#define NK_OK 0
#define NK_ERR_ARG -1
#define NK_ERR_NOMEM -2
#define NK_ERR_CAPACITY -3
#define NK_ERR_CORRUPT -4
#define NK_ERR_STATE -5

/* Human-readable text for a status code (static storage, never NULL). */
const char *nk_status_str(int status);
/* Library version as MAJOR * 10000 + MINOR * 100 + PATCH. */
int32_t nk_version(void);
/* cffi-end */

#endif
