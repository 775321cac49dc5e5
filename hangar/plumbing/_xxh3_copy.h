/* Copy a sample and compute its XXH3-64 in the same pass (one function per vector width).
 *
 * Included after xxhash.h (with XXH_INLINE_ALL) by each translation unit that builds XXH3 for
 * one vector width (_rowhash.c: SSE2, _xxh3_avx2.c, _xxh3_avx512.c); HANGAR_XXH3_COPY names the
 * function it defines. The loop is XXH3_hashLong_internal_loop of xxhash.h (default secret, no
 * seed) with each 64-byte stripe copied to the destination as it is accumulated: the stripe is
 * loaded once into registers, stored to the destination and hashed from the same registers, so
 * the bytes hashed are exactly the bytes returned (never a second read of the source) and the
 * multiplies run while the copy waits on memory. The result equals XXH3_64bits(dst, len) for
 * every length (tests compare both on edge lengths and block boundaries).
 *
 * Why: a single read of a 150 KB sample copies it out of the mapped pack (~7 us here); hashing
 * the copy afterwards added ~3.3 us (memcpy 6.9 us, + xxh3 10.2 us, fused 7.1-7.5 us: per-call
 * p10 over 12,000 interleaved calls, AVX-512 build). Stores that straddle two cache lines cost
 * extra, and arrays from np.empty are only 16-byte aligned: there a 64-byte store splits every
 * time (fused 7.4-7.6 us), four 16-byte stores of the same registers never do (6.9 us, memcpy 6.7-6.8):
 * the AVX-512 build always stores 16-byte pieces, the AVX2 build 32-byte ones into 32-byte-aligned
 * destinations and 16-byte ones elsewhere. */
#ifndef HANGAR_XXH3_COPY
#error "define HANGAR_XXH3_COPY (the function's name) before including _xxh3_copy.h"
#endif
#include <stdint.h>
#include <string.h>

/* how far ahead of the copy the source is prefetched: with xxhash.h's 384-512 bytes the fused
 * copy into a 16-byte-aligned array ran ~1.7 us (13%) slower than memcpy when the source came
 * from DRAM (machine under load), with 2,048 or 4,096 it ran as fast (13.1 vs 13.3 us, p10) */
#ifndef HANGAR_COPY_PREFETCH
#define HANGAR_COPY_PREFETCH 2048
#endif

/* HANGAR_STEP_WIDE / HANGAR_STEP_NARROW(acc, d, s, sec): copy the 64-byte stripe s to d and
 * accumulate it (WIDE for a destination aligned to HANGAR_WIDE_ALIGN + 1, NARROW otherwise) */
#if XXH_VECTOR == XXH_AVX512
/* the accumulate of XXH3_accumulate_512_avx512 on the register v just stored */
#define HANGAR_ACC512(acc, v, sec)                                                                  \
    do {                                                                                            \
        __m512i *const sx_acc = (__m512i *)(acc);                                                   \
        __m512i const sx_key = _mm512_xor_si512((v), _mm512_loadu_si512((const void *)(sec)));      \
        __m512i const sx_prod = _mm512_mul_epu32(sx_key, _mm512_srli_epi64(sx_key, 32));            \
        __m512i const sx_swap = _mm512_shuffle_epi32((v), (_MM_PERM_ENUM)_MM_SHUFFLE(1, 0, 3, 2));  \
        *sx_acc = _mm512_add_epi64(sx_prod, _mm512_add_epi64(*sx_acc, sx_swap));                    \
    } while (0)
/* four 16-byte stores of the loaded register, whatever the alignment: none straddles a cache
 * line when the destination is 16-byte aligned (np.empty's), and even into a 64-byte-aligned one
 * they ran as fast as memcpy where one 64-byte store ran ~0.4 us (5%) slower (150 KB, from L3 or
 * DRAM, per-call p10) */
#define HANGAR_STEP_NARROW(acc, d, s, sec)                                                          \
    do {                                                                                            \
        __m512i const sx_v = _mm512_loadu_si512((const void *)(s));                                 \
        _mm_storeu_si128((__m128i *)(void *)(d), _mm512_castsi512_si128(sx_v));                     \
        _mm_storeu_si128((__m128i *)(void *)((d) + 16), _mm512_extracti32x4_epi32(sx_v, 1));        \
        _mm_storeu_si128((__m128i *)(void *)((d) + 32), _mm512_extracti32x4_epi32(sx_v, 2));        \
        _mm_storeu_si128((__m128i *)(void *)((d) + 48), _mm512_extracti32x4_epi32(sx_v, 3));        \
        HANGAR_ACC512(acc, sx_v, sec);                                                              \
    } while (0)
#define HANGAR_STEP_WIDE HANGAR_STEP_NARROW
#define HANGAR_WIDE_ALIGN 0
#elif XXH_VECTOR == XXH_AVX2
/* the accumulate of XXH3_accumulate_512_avx2 (half h of the stripe) on the register v just stored */
#define HANGAR_ACC256(acc, h, v, sec)                                                               \
    do {                                                                                            \
        __m256i *const sx_acc = (__m256i *)(acc) + (h);                                             \
        __m256i const sx_key = _mm256_xor_si256((v), _mm256_loadu_si256((const __m256i *)(const void *)((sec) + 32 * (h)))); \
        __m256i const sx_prod = _mm256_mul_epu32(sx_key, _mm256_srli_epi64(sx_key, 32));            \
        __m256i const sx_swap = _mm256_shuffle_epi32((v), _MM_SHUFFLE(1, 0, 3, 2));                 \
        *sx_acc = _mm256_add_epi64(sx_prod, _mm256_add_epi64(*sx_acc, sx_swap));                    \
    } while (0)
/* not memcpy + XXH3_accumulate_512: gcc copies 64 bytes with 16-byte moves there, and the
 * accumulate's 32-byte loads of them miss store forwarding (4x slower than these) */
#define HANGAR_STEP_WIDE(acc, d, s, sec)                                                            \
    do {                                                                                            \
        for (int sx_h = 0; sx_h < 2; sx_h++) {                                                      \
            __m256i const sx_v = _mm256_loadu_si256((const __m256i *)(const void *)((s) + 32 * sx_h)); \
            _mm256_storeu_si256((__m256i *)(void *)((d) + 32 * sx_h), sx_v);                        \
            HANGAR_ACC256(acc, sx_h, sx_v, sec);                                                    \
        }                                                                                           \
    } while (0)
#define HANGAR_STEP_NARROW(acc, d, s, sec)                                                          \
    do {                                                                                            \
        for (int sx_h = 0; sx_h < 2; sx_h++) {                                                      \
            __m256i const sx_v = _mm256_loadu_si256((const __m256i *)(const void *)((s) + 32 * sx_h)); \
            _mm_storeu_si128((__m128i *)(void *)((d) + 32 * sx_h), _mm256_castsi256_si128(sx_v));   \
            _mm_storeu_si128((__m128i *)(void *)((d) + 32 * sx_h + 16), _mm256_extracti128_si256(sx_v, 1)); \
            HANGAR_ACC256(acc, sx_h, sx_v, sec);                                                    \
        }                                                                                           \
    } while (0)
#define HANGAR_WIDE_ALIGN 31
#else /* SSE2 or scalar: 16-byte (or narrower) moves, which the accumulate's loads forward from */
#define HANGAR_STEP_WIDE(acc, d, s, sec)                                                            \
    do {                                                                                            \
        memcpy((d), (s), XXH_STRIPE_LEN);                                                           \
        XXH3_accumulate_512((acc), (d), (sec));                                                     \
    } while (0)
#define HANGAR_STEP_NARROW HANGAR_STEP_WIDE
#define HANGAR_WIDE_ALIGN 0
#endif

/* the loop of XXH3_hashLong_internal_loop + XXH3_hashLong_64b_internal, len > XXH3_MIDSIZE_MAX */
#define HANGAR_XXH3_COPY_LOOP(STEP)                                                                 \
    do {                                                                                            \
        const xxh_u8 *const secret_ = XXH3_kSecret;                                                 \
        const size_t ssize_ = sizeof(XXH3_kSecret);                                                 \
        const size_t per_ = (ssize_ - XXH_STRIPE_LEN) / XXH_SECRET_CONSUME_RATE;                    \
        const size_t nb_ = (len - 1) / (XXH_STRIPE_LEN * per_);                                     \
        size_t off_ = 0;                                                                            \
        for (size_t b_ = 0; b_ < nb_; b_++) {                                                       \
            for (size_t k_ = 0; k_ < per_; k_++, off_ += XXH_STRIPE_LEN) {                          \
                XXH_PREFETCH(src + off_ + HANGAR_COPY_PREFETCH);                                       \
                STEP(acc, dst + off_, src + off_, secret_ + k_ * XXH_SECRET_CONSUME_RATE);          \
            }                                                                                       \
            XXH3_scrambleAcc(acc, secret_ + ssize_ - XXH_STRIPE_LEN);                               \
        }                                                                                           \
        /* the last partial block: whole stripes short of the last byte, the tail, then the last  \
         * 64 bytes of the sample (overlapping the stripes before) with their own secret */       \
        const size_t ns_ = ((len - 1) - off_) / XXH_STRIPE_LEN;                                     \
        for (size_t k_ = 0; k_ < ns_; k_++, off_ += XXH_STRIPE_LEN)                                 \
            STEP(acc, dst + off_, src + off_, secret_ + k_ * XXH_SECRET_CONSUME_RATE);              \
        memcpy(dst + off_, src + off_, len - off_);                                                 \
        XXH3_accumulate_512(acc, dst + len - XXH_STRIPE_LEN,                                        \
                            secret_ + ssize_ - XXH_STRIPE_LEN - XXH_SECRET_LASTACC_START);          \
        return XXH3_mergeAccs(acc, secret_ + XXH_SECRET_MERGEACCS_START, (xxh_u64)len * XXH_PRIME64_1); \
    } while (0)

uint64_t HANGAR_XXH3_COPY(void *dst_, const void *src_, size_t len);

uint64_t HANGAR_XXH3_COPY(void *dst_, const void *src_, size_t len)
{
    unsigned char *XXH_RESTRICT dst = (unsigned char *)dst_;
    const unsigned char *XXH_RESTRICT src = (const unsigned char *)src_;
    if (len <= XXH3_MIDSIZE_MAX) {  /* short inputs take other code paths in XXH3: copy, then hash */
        memcpy(dst, src, len);
        return XXH3_64bits(dst, len);
    }
    XXH_ALIGN(XXH_ACC_ALIGN) xxh_u64 acc[XXH_ACC_NB] = XXH3_INIT_ACC;
    if (((uintptr_t)dst & HANGAR_WIDE_ALIGN) == 0)
        HANGAR_XXH3_COPY_LOOP(HANGAR_STEP_WIDE);
    else
        HANGAR_XXH3_COPY_LOOP(HANGAR_STEP_NARROW);
}

#undef HANGAR_ACC512
#undef HANGAR_ACC256
#undef HANGAR_STEP_WIDE
#undef HANGAR_STEP_NARROW
#undef HANGAR_WIDE_ALIGN
#undef HANGAR_XXH3_COPY_LOOP
