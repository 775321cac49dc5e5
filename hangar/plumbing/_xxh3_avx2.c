/* XXH3-64 compiled for AVX2, in its own translation unit: xxhash.h picks its vector code when
 * it is included, so each vector width needs a unit of its own (_xxh3_avx512.c: AVX-512).
 * _rowhash.c calls the widest one cpuid reports (150 KB in L2 here: SSE2 ~20 GB/s, AVX2 ~36,
 * AVX-512 ~48, as the xxhash Python package's dispatching build); elsewhere this unit holds a
 * stub that is never called. */
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR 2 /* XXH_AVX2 */
#include "xxhash.h"
#include <string.h>

uint64_t hangar_xxh3_avx2(const void *p, size_t n) { return XXH3_64bits(p, n); }
int hangar_xxh3_avx2_built = 1;
/* the fused copy + hash of single reads (_xxh3_copy.h) */
#define HANGAR_XXH3_COPY hangar_xxh3_copy_avx2
#include "_xxh3_copy.h"
#else
uint64_t hangar_xxh3_avx2(const void *p, size_t n) { (void)p; (void)n; return 0; }
int hangar_xxh3_avx2_built = 0;
uint64_t hangar_xxh3_copy_avx2(void *d, const void *s, size_t n) { (void)d; (void)s; (void)n; return 0; }
#endif
