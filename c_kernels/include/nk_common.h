/* nk_common.h — status codes shared by every nk_* kernel.
 *
 * Conventions for all kernels in this library:
 *   - one opaque state struct per kernel: nk_<kernel>_new / _process / _reset / _free;
 *   - _new allocates once; _process never allocates, writes only into caller-owned buffers
 *     whose capacity the caller states, and returns an nk_status;
 *   - data blocks are sample-major (interleaved): x[t * n_channels + c];
 *   - no globals, no I/O, no exit().
 *
 * Visibility: the library is built with -fvisibility=hidden; each public header wraps its
 * Python-visible section (between the cffi-begin/cffi-end markers) in NK_API_BEGIN/NK_API_END,
 * so exactly what Python can call is exported, and every helper stays internal. A single
 * declaration outside such a section can be exported with NK_API.
 *
 * Python binding: hub/kernels/_build.py compiles the cffi sections once, at build time, into a
 * pure-Python module (cffi out-of-line ABI mode); at load the Python side checks nk_version()
 * and nk_sizeof() of every public struct against what it was built for.
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

#if defined(__GNUC__) || defined(__clang__)
#define NK_API __attribute__((visibility("default")))
#define NK_API_BEGIN _Pragma("GCC visibility push(default)")
#define NK_API_END _Pragma("GCC visibility pop")
#else
#define NK_API
#define NK_API_BEGIN
#define NK_API_END
#endif

NK_API_BEGIN
/* cffi-begin */
/* Library version: MAJOR * 10000 + MINOR * 100 + PATCH. Bump MINOR (at least) with any change
 * to a public struct, constant or signature: the Python side refuses a library whose
 * nk_version() differs from the NK_VERSION it was built with. */
#define NK_VERSION 410
#define NK_OK 0
#define NK_ERR_ARG -1
#define NK_ERR_NOMEM -2
#define NK_ERR_CAPACITY -3
#define NK_ERR_CORRUPT -4
#define NK_ERR_STATE -5

/* Human-readable text for a status code (static storage, never NULL). */
const char *nk_status_str(int status);
/* The NK_VERSION this library was built with. */
int32_t nk_version(void);
/* sizeof(type) for a public struct named by its typedef (e.g. "nk_event"); -1 if unknown. */
int32_t nk_sizeof(const char *type_name);
/* cffi-end */
NK_API_END

#endif
