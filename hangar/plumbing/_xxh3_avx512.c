/* XXH3-64 compiled for AVX-512 (see _xxh3_avx2.c: one translation unit per vector width). */
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f")
#define XXH_INLINE_ALL
#define XXH_VECTOR 3 /* XXH_AVX512 */
#include "xxhash.h"

uint64_t hangar_xxh3_avx512(const void *p, size_t n) { return XXH3_64bits(p, n); }
int hangar_xxh3_avx512_built = 1;
#else
uint64_t hangar_xxh3_avx512(const void *p, size_t n) { (void)p; (void)n; return 0; }
int hangar_xxh3_avx512_built = 0;
#endif
