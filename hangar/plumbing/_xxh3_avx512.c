/* XXH3-64 compiled for AVX-512 (see _xxh3_avx2.c: one translation unit per vector width). */
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f")
#define XXH_INLINE_ALL
#define XXH_VECTOR 3 /* XXH_AVX512 */
#include "xxhash.h"
#include <string.h>

uint64_t hangar_xxh3_avx512(const void *p, size_t n) { return XXH3_64bits(p, n); }
int hangar_xxh3_avx512_built = 1;
/* the fused copy + hash of single reads (_xxh3_copy.h) */
#define HANGAR_XXH3_COPY hangar_xxh3_copy_avx512
#include "_xxh3_copy.h"
#else
uint64_t hangar_xxh3_avx512(const void *p, size_t n) { (void)p; (void)n; return 0; }
int hangar_xxh3_avx512_built = 0;
uint64_t hangar_xxh3_copy_avx512(void *d, const void *s, size_t n) { (void)d; (void)s; (void)n; return 0; }
#endif
