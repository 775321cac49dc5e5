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
 * time. The AVX-512 build first stored each stripe as four 16-byte pieces (three extracts and
 * four stores a stripe); timed in C with rdtsc around each call (20,000 random 150 KB samples of
 * a 300 MB pack, every variant interleaved call by call), that loop stayed 0.3-0.6 us (3-5%)
 * behind memcpy (glibc's rep movsb here) at every destination alignment: the missing +0.7 us of
 * a checked single read. It now stores one aligned 64-byte register a stripe, made by one
 * permute of this stripe and the last (vpermt2d): as fast as memcpy from DRAM (11.4-12.1 vs
 * 11.5-12.2 us p10 at alignments 0/16/32/48). The AVX2 build stores 32-byte pieces into
 * 32-byte-aligned destinations and 16-byte ones elsewhere. */
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
 * accumulate it (WIDE for a destination aligned to HANGAR_WIDE_ALIGN + 1, NARROW otherwise;
 * the AVX-512 build also has HANGAR_STEP_SHIFTED for any 4-byte-aligned destination) */
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
/* four 16-byte stores of the loaded register: only for destinations not 4-byte aligned now
 * (none straddles a line when 16-byte aligned, but the three extracts and four stores a stripe
 * kept the loop 0.3-0.6 us per 150 KB behind memcpy; see the top of this file) */
#define HANGAR_STEP_NARROW(acc, d, s, sec)                                                          \
    do {                                                                                            \
        __m512i const sx_v = _mm512_loadu_si512((const void *)(s));                                 \
        _mm_storeu_si128((__m128i *)(void *)(d), _mm512_castsi512_si128(sx_v));                     \
        _mm_storeu_si128((__m128i *)(void *)((d) + 16), _mm512_extracti32x4_epi32(sx_v, 1));        \
        _mm_storeu_si128((__m128i *)(void *)((d) + 32), _mm512_extracti32x4_epi32(sx_v, 2));        \
        _mm_storeu_si128((__m128i *)(void *)((d) + 48), _mm512_extracti32x4_epi32(sx_v, 3));        \
        HANGAR_ACC512(acc, sx_v, sec);                                                              \
    } while (0)
/* a 64-byte-aligned destination: one aligned store of the register */
#define HANGAR_STEP_WIDE(acc, d, s, sec)                                                            \
    do {                                                                                            \
        __m512i const sx_v = _mm512_loadu_si512((const void *)(s));                                 \
        _mm512_store_si512((void *)(d), sx_v);                                                      \
        HANGAR_ACC512(acc, sx_v, sec);                                                              \
    } while (0)
#define HANGAR_WIDE_ALIGN 63
/* a destination 4-byte aligned, sx_mis = its address mod 64 (not 0): the first stripe is stored
 * unaligned; each later one, joined by one permute to the last a bytes of the stripe before
 * (sx_prev, the register that was hashed), fills the aligned 64 bytes ending a bytes into it;
 * HANGAR_STRIPES_DONE stores the last stripe's register whole (its last a bytes). Every byte
 * written comes from a register that is hashed: the source is read once. */
#define HANGAR_HAS_SHIFTED 1
#define HANGAR_STEP_SHIFTED(acc, d, s, sec)                                                         \
    do {                                                                                            \
        __m512i const sx_v = _mm512_loadu_si512((const void *)(s));                                 \
        if ((d) == dst)                                                                             \
            _mm512_storeu_si512((void *)(d), sx_v);                                                 \
        else                                                                                        \
            _mm512_store_si512((void *)((d) - sx_mis), _mm512_permutex2var_epi32(sx_prev, sx_idx, sx_v)); \
        HANGAR_ACC512(acc, sx_v, sec);                                                              \
        sx_prev = sx_v;                                                                             \
    } while (0)
#define HANGAR_SHIFTED_DONE(d) _mm512_storeu_si512((void *)((d) - XXH_STRIPE_LEN), sx_prev)
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

#ifndef HANGAR_HAS_SHIFTED
#define HANGAR_HAS_SHIFTED 0
#endif
#define HANGAR_NOTHING_DONE(d) ((void)(d))

/* the loop of XXH3_hashLong_internal_loop + XXH3_hashLong_64b_internal, len > XXH3_MIDSIZE_MAX;
 * DONE(dst + off) runs after the last whole stripe, before the tail is copied */
#define HANGAR_XXH3_COPY_LOOP(STEP, DONE)                                                           \
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
        DONE(dst + off_);                                                                           \
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
        HANGAR_XXH3_COPY_LOOP(HANGAR_STEP_WIDE, HANGAR_NOTHING_DONE);
#if HANGAR_HAS_SHIFTED
    if (((uintptr_t)dst & 3) == 0) {
        size_t const sx_mis = (uintptr_t)dst & 63;
        /* dword i of the joined store is dword i + (64 - sx_mis) / 4 of (sx_prev, sx_v) */
        __m512i const sx_idx = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                _mm512_set1_epi32((int)((XXH_STRIPE_LEN - sx_mis) / 4)));
        __m512i sx_prev = _mm512_setzero_si512();
        HANGAR_XXH3_COPY_LOOP(HANGAR_STEP_SHIFTED, HANGAR_SHIFTED_DONE);
    }
#endif
    HANGAR_XXH3_COPY_LOOP(HANGAR_STEP_NARROW, HANGAR_NOTHING_DONE);
}

#undef HANGAR_ACC512
#undef HANGAR_ACC256
#undef HANGAR_STEP_WIDE
#undef HANGAR_STEP_NARROW
#undef HANGAR_WIDE_ALIGN
#undef HANGAR_XXH3_COPY_LOOP
#undef HANGAR_HAS_SHIFTED
#undef HANGAR_STEP_SHIFTED
#undef HANGAR_SHIFTED_DONE
#undef HANGAR_NOTHING_DONE
