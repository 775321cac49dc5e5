/* Checksums of the equal-length rows of one buffer, one C call per batch.
 *
 * Building the pointer blobs of a commit needs, per blob, a git id (sha1 of
 * "blob <n>\0" + content), the adler32 of the content (the zlib stream's trailer) and
 * the crc32 of the pack entry (the pack index). One Python call per row and checksum
 * cost ~2 us per blob on the 2-core box (60,000 blobs: ~0.12 s; 1,000,000: ~2 s); here
 * the loops run in C without the GIL (sha1 with the x86 SHA instructions where the CPU has
 * them: 1,000,000 ids in 0.14 s of CPU instead of 0.80 s portable). Pure-Python equivalents live in
 * hangar/plumbing/pack.py and are used when this module is not built.
 *
 * Reads check each sample's stored xxh3-64 (the pack index's "check"): one Python call per
 * sample cost more than the hash (60,000 x 784 B: ~14 ms of calls holding the GIL against the
 * reader's own loop), so check_spans checks a whole batch in one call without the GIL and
 * pread_checked reads and checks one sample in one. XXH3 comes from xxhash.h (xxHash 0.8.1,
 * BSD-2-Clause, vendored unchanged: the xxhash Python package ships no C header, and its
 * XXH3 output has been frozen since 0.8.0; tests compare both on many lengths).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

/* ------------------------------------------------------------------ sha1 (FIPS 180-4) */

#define ROL32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = ROL32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], t;
    for (int i = 0; i < 20; i++) {
        t = ROL32(a, 5) + ((b & c) | (~b & d)) + e + 0x5A827999u + w[i];
        e = d; d = c; c = ROL32(b, 30); b = a; a = t;
    }
    for (int i = 20; i < 40; i++) {
        t = ROL32(a, 5) + (b ^ c ^ d) + e + 0x6ED9EBA1u + w[i];
        e = d; d = c; c = ROL32(b, 30); b = a; a = t;
    }
    for (int i = 40; i < 60; i++) {
        t = ROL32(a, 5) + ((b & c) | (b & d) | (c & d)) + e + 0x8F1BBCDCu + w[i];
        e = d; d = c; c = ROL32(b, 30); b = a; a = t;
    }
    for (int i = 60; i < 80; i++) {
        t = ROL32(a, 5) + (b ^ c ^ d) + e + 0xCA62C1D6u + w[i];
        e = d; d = c; c = ROL32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}


/* The same compression function with the x86 SHA extensions (most x86-64 CPUs since 2017;
 * used when cpuid reports them): ~5x the portable code, the largest cost of a big commit. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_NI_CODE 1

/* four rounds with message words ``cur``, keeping the schedule of the next words going */
#define SHA_NI_STEP(EX, EY, CUR, NEXT, XORT, M1T, F)                                               \
    EX = _mm_sha1nexte_epu32(EX, CUR);                                                             \
    EY = abcd;                                                                                     \
    NEXT = _mm_sha1msg2_epu32(NEXT, CUR);                                                          \
    abcd = _mm_sha1rnds4_epu32(abcd, EX, F);                                                       \
    M1T = _mm_sha1msg1_epu32(M1T, CUR);                                                            \
    XORT = _mm_xor_si128(XORT, CUR);

__attribute__((target("sha,sse4.1,ssse3")))
static void sha1_block_ni(uint32_t h[5], const unsigned char *p)
{
    const __m128i swap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0x1B);
    __m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0), e1;
    const __m128i abcd_in = abcd, e_in = e0;
    __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p), swap);
    __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), swap);
    __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), swap);
    __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), swap);
    /* rounds 0-11: the schedule is not running yet */
    e0 = _mm_add_epi32(e0, m0);
    e1 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
    e1 = _mm_sha1nexte_epu32(e1, m1);
    e0 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e1, 0);
    m0 = _mm_sha1msg1_epu32(m0, m1);
    e0 = _mm_sha1nexte_epu32(e0, m2);
    e1 = abcd;
    abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
    m1 = _mm_sha1msg1_epu32(m1, m2);
    m0 = _mm_xor_si128(m0, m2);
    /* rounds 12-79: group g uses m[g % 4]; words computed past round 79 are never used */
    SHA_NI_STEP(e1, e0, m3, m0, m1, m2, 0)
    SHA_NI_STEP(e0, e1, m0, m1, m2, m3, 0)
    SHA_NI_STEP(e1, e0, m1, m2, m3, m0, 1)
    SHA_NI_STEP(e0, e1, m2, m3, m0, m1, 1)
    SHA_NI_STEP(e1, e0, m3, m0, m1, m2, 1)
    SHA_NI_STEP(e0, e1, m0, m1, m2, m3, 1)
    SHA_NI_STEP(e1, e0, m1, m2, m3, m0, 1)
    SHA_NI_STEP(e0, e1, m2, m3, m0, m1, 2)
    SHA_NI_STEP(e1, e0, m3, m0, m1, m2, 2)
    SHA_NI_STEP(e0, e1, m0, m1, m2, m3, 2)
    SHA_NI_STEP(e1, e0, m1, m2, m3, m0, 2)
    SHA_NI_STEP(e0, e1, m2, m3, m0, m1, 2)
    SHA_NI_STEP(e1, e0, m3, m0, m1, m2, 3)
    SHA_NI_STEP(e0, e1, m0, m1, m2, m3, 3)
    SHA_NI_STEP(e1, e0, m1, m2, m3, m0, 3)
    SHA_NI_STEP(e0, e1, m2, m3, m0, m1, 3)
    SHA_NI_STEP(e1, e0, m3, m0, m1, m2, 3)
    e0 = _mm_sha1nexte_epu32(e0, e_in);
    abcd = _mm_add_epi32(abcd, abcd_in);
    _mm_storeu_si128((__m128i *)h, _mm_shuffle_epi32(abcd, 0x1B));
    h[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

static int cpu_has_sha_ni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))  /* ssse3, sse4.1 */
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b >> 29) & 1;  /* sha */
}
#else
#define HAVE_SHA_NI_CODE 0
static void sha1_block_ni(uint32_t h[5], const unsigned char *p) { sha1_block(h, p); }
static int cpu_has_sha_ni(void) { return 0; }
#endif

typedef void (*block_fn)(uint32_t[5], const unsigned char *);

/* sha1 of prefix + row, written as 20 raw bytes to out */
static void sha1_prefixed(block_fn sha1_block, const unsigned char *prefix, Py_ssize_t plen,
                          const unsigned char *row, Py_ssize_t rlen, unsigned char *out)
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    unsigned char block[64];
    Py_ssize_t fill = 0, total = plen + rlen;
    const unsigned char *parts[2] = {prefix, row};
    Py_ssize_t lens[2] = {plen, rlen};
    for (int k = 0; k < 2; k++) {
        const unsigned char *p = parts[k];
        Py_ssize_t n = lens[k];
        if (fill) {
            Py_ssize_t take = 64 - fill < n ? 64 - fill : n;
            memcpy(block + fill, p, (size_t)take);
            fill += take; p += take; n -= take;
            if (fill == 64) { sha1_block(h, block); fill = 0; }
        }
        while (n >= 64) { sha1_block(h, p); p += 64; n -= 64; }
        if (n) { memcpy(block, p, (size_t)n); fill = n; }
    }
    block[fill++] = 0x80;
    if (fill > 56) {
        memset(block + fill, 0, (size_t)(64 - fill));
        sha1_block(h, block);
        fill = 0;
    }
    memset(block + fill, 0, (size_t)(56 - fill));
    uint64_t bits = (uint64_t)total * 8;
    for (int i = 0; i < 8; i++)
        block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_block(h, block);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24); out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8); out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* ------------------------------------------------------------------ crc32 (zlib's), slicing by 8 */

static uint32_t crc_table[8][256];
static int has_sha_ni;
/* rC: HANGAR_ROWHASH_BASELINE=1 in the environment at import: no CPU-specific path is taken
 * (SHA-NI, SSSE3, AVX2, AVX-512, PCLMUL), as on a CPU without them, so that tests on a machine
 * that has them check the baseline code too (tests/test_rowhash_fallbacks.py) */
static int baseline_only;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t crc32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8; n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

/* ------------------------------------------------------------------ adler32 */

static uint32_t adler32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t a = 1, b = 0;
    while (n > 0) {
        Py_ssize_t k = n < 5552 ? n : 5552; /* zlib's NMAX: no uint32 overflow before the modulo */
        n -= k;
        while (k--) { a += *p++; b += a; }
        a %= 65521u; b %= 65521u;
    }
    return (b << 16) | a;
}

/* ------------------------------------------------------------------ blake3 (hash mode)
 *
 * The sample digest (hangar.store.digest: blake3 of the row's bytes followed by a short
 * dtype/shape suffix) of many equal-length rows. The blake3 package costs ~5 us per call
 * chain (object, update, digest) on a 784-byte row, most of it Python overhead: 60,000 W1
 * rows took ~0.3 s to hash, here the portable compression function does it in C without the
 * GIL. Rows larger than a few chunks keep using the package (SIMD over chunks, threads). */

static const uint32_t B3_IV[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                                  0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};
static const unsigned char B3_PERM[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};
enum { B3_CHUNK_START = 1, B3_CHUNK_END = 2, B3_PARENT = 4, B3_ROOT = 8 };
#define B3_BLOCK 64
#define B3_CHUNK 1024
#define ROR32(x, k) (((x) >> (k)) | ((x) << (32 - (k))))

static inline uint32_t load32le(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#define B3_G(a, b, c, d, x, y)                                                                            \
    do {                                                                                                  \
        s[a] = s[a] + s[b] + (x); s[d] = ROR32(s[d] ^ s[a], 16); s[c] = s[c] + s[d];                    \
        s[b] = ROR32(s[b] ^ s[c], 12); s[a] = s[a] + s[b] + (y); s[d] = ROR32(s[d] ^ s[a], 8);          \
        s[c] = s[c] + s[d]; s[b] = ROR32(s[b] ^ s[c], 7);                                                 \
    } while (0)

/* the compression function; out gets the 8 words of the new chaining value */
static void b3_compress(const uint32_t cv[8], const unsigned char block[B3_BLOCK], uint64_t counter,
                        uint32_t block_len, uint32_t flags, uint32_t out[8])
{
    uint32_t m[16], t[16], s[16];
    for (int i = 0; i < 16; i++) m[i] = load32le(block + 4 * i);
    for (int i = 0; i < 8; i++) s[i] = cv[i];
    s[8] = B3_IV[0]; s[9] = B3_IV[1]; s[10] = B3_IV[2]; s[11] = B3_IV[3];
    s[12] = (uint32_t)counter; s[13] = (uint32_t)(counter >> 32); s[14] = block_len; s[15] = flags;
    for (int r = 0; r < 7; r++) {
        B3_G(0, 4, 8, 12, m[0], m[1]); B3_G(1, 5, 9, 13, m[2], m[3]);
        B3_G(2, 6, 10, 14, m[4], m[5]); B3_G(3, 7, 11, 15, m[6], m[7]);
        B3_G(0, 5, 10, 15, m[8], m[9]); B3_G(1, 6, 11, 12, m[10], m[11]);
        B3_G(2, 7, 8, 13, m[12], m[13]); B3_G(3, 4, 9, 14, m[14], m[15]);
        if (r < 6) {
            for (int i = 0; i < 16; i++) t[i] = m[B3_PERM[i]];
            memcpy(m, t, sizeof m);
        }
    }
    for (int i = 0; i < 8; i++) out[i] = s[i] ^ s[i + 8];
}

/* chaining value (or, with B3_ROOT in root, the root output) of chunk number `counter`:
 * bytes p[0:n], 0 <= n <= 1024 */
static void b3_chunk(const unsigned char *p, size_t n, uint64_t counter, uint32_t root, uint32_t out[8])
{
    uint32_t cv[8];
    unsigned char block[B3_BLOCK];
    memcpy(cv, B3_IV, sizeof cv);
    uint32_t flags = B3_CHUNK_START;
    for (;;) {
        size_t take = n < B3_BLOCK ? n : B3_BLOCK;
        const unsigned char *b = p;
        if (take < B3_BLOCK) {
            memset(block, 0, sizeof block);
            if (take) memcpy(block, p, take);
            b = block;
        }
        int last = n <= B3_BLOCK;
        if (last) flags |= B3_CHUNK_END | root;
        b3_compress(cv, b, counter, (uint32_t)take, flags, last ? out : cv);
        if (last) return;
        p += B3_BLOCK;
        n -= B3_BLOCK;
        flags = 0;
    }
}

static void b3_parent(const uint32_t left[8], const uint32_t right[8], uint32_t root, uint32_t out[8])
{
    unsigned char block[B3_BLOCK];
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < 4; k++) {
            block[4 * i + k] = (unsigned char)(left[i] >> (8 * k));
            block[32 + 4 * i + k] = (unsigned char)(right[i] >> (8 * k));
        }
    }
    b3_compress(B3_IV, block, 0, B3_BLOCK, B3_PARENT | root, out);
}

/* blake3 (32-byte output) of p[0:n]: chunks left to right, a stack of subtree chaining
 * values merged as in the reference implementation (a completed chunk is merged once more
 * input follows, so the last chunk ends up as the root's rightmost leaf) */
static void b3_hash(const unsigned char *p, size_t n, unsigned char out[32])
{
    uint32_t stack[64][8], cv[8];
    int depth = 0;
    uint64_t chunk = 0;
    while (n > B3_CHUNK) {
        b3_chunk(p, B3_CHUNK, chunk, 0, cv);
        chunk++;
        for (uint64_t total = chunk; (total & 1) == 0; total >>= 1)
            b3_parent(stack[--depth], cv, 0, cv);
        memcpy(stack[depth++], cv, sizeof cv);
        p += B3_CHUNK;
        n -= B3_CHUNK;
    }
    b3_chunk(p, n, chunk, depth ? 0 : B3_ROOT, cv);
    while (depth) {
        depth--;
        b3_parent(stack[depth], cv, depth ? 0 : B3_ROOT, cv);
    }
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 4; k++) out[4 * i + k] = (unsigned char)(cv[i] >> (8 * k));
}


/* Eight single-chunk messages of one length at once, one per lane of 32-byte vectors (gcc's
 * vector extensions; AVX2 where the CPU has it, two SSE2 halves otherwise): the way the blake3
 * package hashes the chunks of one long input. The portable one-row code ran ~3.7 us a
 * 794-byte row here, no faster than the package; eight lanes run ~8x as many per compression. */
typedef uint32_t b3v8 __attribute__((vector_size(32)));
#define VROR(x, k) (((x) >> (k)) | ((x) << (32 - (k))))
#define B3V_G(a, b, c, d, x, y)                                                                           \
    do {                                                                                                  \
        s[a] = s[a] + s[b] + (x); s[d] = VROR(s[d] ^ s[a], 16); s[c] = s[c] + s[d];                     \
        s[b] = VROR(s[b] ^ s[c], 12); s[a] = s[a] + s[b] + (y); s[d] = VROR(s[d] ^ s[a], 8);            \
        s[c] = s[c] + s[d]; s[b] = VROR(s[b] ^ s[c], 7);                                                  \
    } while (0)

/* lanes[j] points at message j, padded with zeros to nblocks * 64 bytes; len = its length
 * (1..1024, the same for all), nblocks = ceil(len / 64); out gets 8 x 32 bytes */
#define B3_MANY8_BODY                                                                                     \
    {                                                                                                     \
        b3v8 cv[8], m[16], t[16], s[16];                                                                  \
        for (int i = 0; i < 8; i++) cv[i] = (b3v8){0} + B3_IV[i];                                         \
        for (size_t blk = 0; blk < nblocks; blk++) {                                                      \
            int last = blk + 1 == nblocks;                                                                \
            uint32_t flags = (blk == 0 ? B3_CHUNK_START : 0) | (last ? B3_CHUNK_END | B3_ROOT : 0);       \
            uint32_t blen = last ? (uint32_t)(len - 64 * blk) : 64;                                       \
            for (int i = 0; i < 16; i++)                                                                  \
                for (int j = 0; j < 8; j++) m[i][j] = load32le(lanes[j] + 64 * blk + 4 * i);              \
            for (int i = 0; i < 8; i++) s[i] = cv[i];                                                     \
            for (int i = 0; i < 4; i++) s[8 + i] = (b3v8){0} + B3_IV[i];                                  \
            s[12] = (b3v8){0}; s[13] = (b3v8){0};                                                         \
            s[14] = (b3v8){0} + blen; s[15] = (b3v8){0} + flags;                                          \
            for (int r = 0; r < 7; r++) {                                                                 \
                B3V_G(0, 4, 8, 12, m[0], m[1]); B3V_G(1, 5, 9, 13, m[2], m[3]);                          \
                B3V_G(2, 6, 10, 14, m[4], m[5]); B3V_G(3, 7, 11, 15, m[6], m[7]);                        \
                B3V_G(0, 5, 10, 15, m[8], m[9]); B3V_G(1, 6, 11, 12, m[10], m[11]);                      \
                B3V_G(2, 7, 8, 13, m[12], m[13]); B3V_G(3, 4, 9, 14, m[14], m[15]);                      \
                if (r < 6) {                                                                              \
                    for (int i = 0; i < 16; i++) t[i] = m[B3_PERM[i]];                                    \
                    memcpy(m, t, sizeof m);                                                               \
                }                                                                                         \
            }                                                                                             \
            for (int i = 0; i < 8; i++) cv[i] = s[i] ^ s[i + 8];                                          \
        }                                                                                                 \
        for (int j = 0; j < 8; j++)                                                                       \
            for (int i = 0; i < 8; i++)                                                                   \
                for (int k = 0; k < 4; k++) out[32 * j + 4 * i + k] = (unsigned char)(cv[i][j] >> (8 * k)); \
    }

typedef void (*b3_many8_fn)(const unsigned char *const lanes[8], size_t len, size_t nblocks, unsigned char *out);
static void b3_many8(const unsigned char *const lanes[8], size_t len, size_t nblocks, unsigned char *out)
B3_MANY8_BODY
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2")))
static void b3_many8_avx2(const unsigned char *const lanes[8], size_t len, size_t nblocks, unsigned char *out)
B3_MANY8_BODY
static int cpu_has_avx2(void) { return __builtin_cpu_supports("avx2"); }
#else
static void b3_many8_avx2(const unsigned char *const lanes[8], size_t len, size_t nblocks, unsigned char *out)
{ b3_many8(lanes, len, nblocks, out); }
static int cpu_has_avx2(void) { return 0; }
#endif
static int has_avx2;


/* ---- i14i: blake3 of single-chunk rows, sixteen at a time (AVX-512) ---- */
/* The sample digests of a stack of small rows (blake3_rows' one-chunk case) with sixteen rows
 * per pass in 512-bit lanes, each lane's message words gathered straight from its row in the
 * stack (one vpgatherdd per word of a block); only the last blocks (row tail, suffix, zero
 * padding) are copied into per-lane scratch. The eight-lane code copies every row into
 * scratch first and builds each word lane by lane: W1 (60,000 rows of 784 bytes) hashed at
 * ~1.7 GB/s one thread there; here ~2x that (see scripts/bench_ingest.py). Returns the number
 * of rows done (a multiple of 16; the caller hashes the rest), 0 where the CPU lacks AVX-512. */
#if defined(__x86_64__) && defined(__GNUC__)
typedef uint32_t b3v16 __attribute__((vector_size(64)));
#define B3W_G(a, b, c, d, x, y)                                                                           \
    do {                                                                                                  \
        s[a] = s[a] + s[b] + (x); s[d] = VROR(s[d] ^ s[a], 16); s[c] = s[c] + s[d];                     \
        s[b] = VROR(s[b] ^ s[c], 12); s[a] = s[a] + s[b] + (y); s[d] = VROR(s[d] ^ s[a], 8);            \
        s[c] = s[c] + s[d]; s[b] = VROR(s[b] ^ s[c], 7);                                                  \
    } while (0)

__attribute__((target("avx512f")))
static Py_ssize_t b3_rows16_avx512(const unsigned char *p, Py_ssize_t n, Py_ssize_t width,
                                   const unsigned char *suffix, Py_ssize_t slen, unsigned char *o)
{
    Py_ssize_t len = width + slen;
    Py_ssize_t nblocks = len ? (len + B3_BLOCK - 1) / B3_BLOCK : 1;
    Py_ssize_t direct = width / B3_BLOCK;  /* blocks lying whole inside the row */
    if (direct >= nblocks)
        direct = nblocks - 1;  /* the last block always comes from scratch (flags, suffix) */
    Py_ssize_t tail = (nblocks - direct) * B3_BLOCK;  /* per-lane scratch bytes: row tail + suffix + zeros */
    Py_ssize_t from = direct * B3_BLOCK;  /* row bytes before the scratch part */
    unsigned char scratch[16 * 2 * B3_BLOCK] __attribute__((aligned(64)));
    uint32_t words[8 * 16];
    if (tail > 2 * B3_BLOCK || 15 * width > INT32_MAX)
        return 0;  /* not reached for one-chunk rows: the suffix is < 64 bytes */
    memset(scratch, 0, sizeof scratch);
    const __m512i lane_rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32((int)width));
    const __m512i lane_tail = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32((int)tail));
    for (int j = 0; j < 16; j++)
        memcpy(scratch + j * tail + (width - from), suffix, (size_t)slen);
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const unsigned char *rows = p + i * width;
        for (int j = 0; j < 16; j++)
            memcpy(scratch + j * tail, rows + j * width + from, (size_t)(width - from));
        b3v16 cv[8], m[16], t[16], s[16];
        for (int k = 0; k < 8; k++) cv[k] = (b3v16){0} + B3_IV[k];
        for (Py_ssize_t blk = 0; blk < nblocks; blk++) {
            int last = blk + 1 == nblocks;
            uint32_t flags = (blk == 0 ? B3_CHUNK_START : 0) | (last ? B3_CHUNK_END | B3_ROOT : 0);
            uint32_t blen = last ? (uint32_t)(len - 64 * blk) : 64;
            if (blk < direct) {
                const unsigned char *base = rows + 64 * blk;
                for (int w = 0; w < 16; w++)
                    m[w] = (b3v16)_mm512_i32gather_epi32(lane_rows, (const void *)(base + 4 * w), 1);
            } else {
                const unsigned char *base = scratch + 64 * (blk - direct);
                for (int w = 0; w < 16; w++)
                    m[w] = (b3v16)_mm512_i32gather_epi32(lane_tail, (const void *)(base + 4 * w), 1);
            }
            for (int k = 0; k < 8; k++) s[k] = cv[k];
            for (int k = 0; k < 4; k++) s[8 + k] = (b3v16){0} + B3_IV[k];
            s[12] = (b3v16){0}; s[13] = (b3v16){0};
            s[14] = (b3v16){0} + blen; s[15] = (b3v16){0} + flags;
            for (int r = 0; r < 7; r++) {
                B3W_G(0, 4, 8, 12, m[0], m[1]); B3W_G(1, 5, 9, 13, m[2], m[3]);
                B3W_G(2, 6, 10, 14, m[4], m[5]); B3W_G(3, 7, 11, 15, m[6], m[7]);
                B3W_G(0, 5, 10, 15, m[8], m[9]); B3W_G(1, 6, 11, 12, m[10], m[11]);
                B3W_G(2, 7, 8, 13, m[12], m[13]); B3W_G(3, 4, 9, 14, m[14], m[15]);
                if (r < 6) {
                    for (int k = 0; k < 16; k++) t[k] = m[B3_PERM[k]];
                    memcpy(m, t, sizeof m);
                }
            }
            for (int k = 0; k < 8; k++) cv[k] = s[k] ^ s[k + 8];
        }
        for (int k = 0; k < 8; k++)
            memcpy(words + 16 * k, &cv[k], 64);
        for (int j = 0; j < 16; j++)  /* lane j's digest: its eight words, little-endian */
            for (int k = 0; k < 8; k++) {
                uint32_t v = words[16 * k + j];
                unsigned char *d = o + 32 * (i + j) + 4 * k;
                d[0] = (unsigned char)v; d[1] = (unsigned char)(v >> 8);
                d[2] = (unsigned char)(v >> 16); d[3] = (unsigned char)(v >> 24);
            }
    }
    return i;
}
static int cpu_has_avx512f(void) { return __builtin_cpu_supports("avx512f"); }
#else
static Py_ssize_t b3_rows16_avx512(const unsigned char *p, Py_ssize_t n, Py_ssize_t width,
                                   const unsigned char *suffix, Py_ssize_t slen, unsigned char *o)
{ (void)p; (void)n; (void)width; (void)suffix; (void)slen; (void)o; return 0; }
static int cpu_has_avx512f(void) { return 0; }
#endif
static int has_b3_avx512 = -1;  /* set at module init; 0 where the CPU (or a test) turns it off */

/* b3_lanes(sixteen) -> bool: use (True) or not the sixteen-lane code where the CPU has it; returns
 * whether it is in use (tests compare both paths; benchmarks time both) */
static PyObject *b3_lanes(PyObject *self, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    has_b3_avx512 = on && !baseline_only && cpu_has_avx512f();
    return PyBool_FromLong(has_b3_avx512);
}
/* ---- end i14i ---- */

/* ------------------------------------------------------------------ xxh3-64 of stored samples */

uint64_t hangar_xxh3_avx2(const void *p, size_t n);  /* _xxh3_avx2.c */
extern int hangar_xxh3_avx2_built;
uint64_t hangar_xxh3_avx512(const void *p, size_t n);  /* _xxh3_avx512.c */
extern int hangar_xxh3_avx512_built;

static uint64_t xxh3_sse2(const void *p, size_t n) { return XXH3_64bits(p, n); }

typedef uint64_t (*xxh3_fn)(const void *, size_t);
static xxh3_fn xxh3_of = xxh3_sse2;
static int xxh3_vector;  /* 0: SSE2 (or the target's default), 2: AVX2, 3: AVX-512 */

/* the check kept in a pack index: xxh3-64, with 0 (which there means "none recorded") kept as 1 */
static uint64_t stored_check_of(const void *p, size_t n)
{
    uint64_t h = xxh3_of(p, n);
    return h ? h : 1;
}

/* ---- i12r: the rows ahead of a check loop, prefetched ----
 * Checking many short rows (W1: 784 B) that come from DRAM (a mapped pack, 47 MB) ran at ~10 GB/s
 * on one core: xxh3 prefetches only within the row it hashes, and the hardware prefetcher alone
 * kept the loop waiting on memory. Prefetching the row about 4 KiB ahead of the one hashed took
 * 47 MB of 784-byte rows from 4.8 to 3.7 ms (min of 12 passes over rows last touched ~500 MB
 * earlier, C, AVX-512 build; 1 KiB ahead: no gain, 2 KiB: 4.0-4.3 ms, 8 KiB: 3.8-3.9 ms). Rows of
 * 4 KiB and more are left to xxh3's own prefetch. */
#define CHECK_AHEAD_BYTES 4096

/* how many rows of width bytes lie CHECK_AHEAD_BYTES ahead (0: rows too long to bother) */
static inline int64_t check_ahead_rows(Py_ssize_t width)
{
    return width <= 0 || width >= CHECK_AHEAD_BYTES ? 0 : (CHECK_AHEAD_BYTES + width - 1) / width;
}

static inline void check_prefetch(const unsigned char *p, size_t n)
{
    for (size_t o = 0; o < n; o += 64)
        __builtin_prefetch(p + o);
}
/* ---- end i12r ---- */

/* ------------------------------------------------------------------ Python entry points */

static int rows_of(Py_buffer *buf, Py_ssize_t width, Py_ssize_t *n)
{
    if (width <= 0 || buf->len % width) {
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes is not rows of %zd bytes", buf->len, width);
        return -1;
    }
    *n = buf->len / width;
    return 0;
}

static PyObject *sha1_rows(PyObject *self, PyObject *args)
{
    Py_buffer buf, prefix;
    Py_ssize_t width, n;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y*ny*|p", &buf, &width, &prefix, &portable))
        return NULL;
    block_fn fn = !portable && has_sha_ni ? sha1_block_ni : sha1_block;
    PyObject *out = NULL;
    if (rows_of(&buf, width, &n) == 0 && (out = PyBytes_FromStringAndSize(NULL, 20 * n)) != NULL) {
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
        const unsigned char *p = buf.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            sha1_prefixed(fn, prefix.buf, prefix.len, p + i * width, width, o + 20 * i);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&prefix);
    return out;
}

static PyObject *sums_rows(PyObject *args, uint32_t (*fn)(const unsigned char *, Py_ssize_t))
{
    Py_buffer buf;
    Py_ssize_t width, n;
    if (!PyArg_ParseTuple(args, "y*n", &buf, &width))
        return NULL;
    PyObject *out = NULL;
    if (rows_of(&buf, width, &n) == 0 && (out = PyBytes_FromStringAndSize(NULL, 4 * n)) != NULL) {
        uint32_t *o = (uint32_t *)PyBytes_AS_STRING(out);
        const unsigned char *p = buf.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t v = fn(p + i * width, width);
            memcpy(o + i, &v, 4);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    return out;
}

/* ================================================================== i14a (stop 14): blob ids two at a time
 * (issue 14, the commit path). blob_rows (the pointer blobs of a commit: their ids, pack entries and
 * crcs) spent ~0.26 s on 1,000,000 blobs of 76 bytes: sha1 ~0.14 (two blocks a blob, each waiting
 * on the SHA unit's latency), adler32 ~0.045 (a byte at a time), crc32 ~0.05. Two messages hashed
 * with their instructions interleaved and adler32 16 bytes a step take most of the first two. */
#if HAVE_SHA_NI_CODE
/* sha1_block_ni of two independent messages, their instructions interleaved: one message keeps
 * the SHA unit waiting on each round's result (~70 ns a block here), two share the waits. */
__attribute__((target("sha,sse4.1,ssse3")))
static void sha1_block_ni2(uint32_t h_a[5], const unsigned char *p_a, uint32_t h_b[5], const unsigned char *p_b)
{
    const __m128i swap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd_a = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h_a), 0x1B);
    __m128i abcd_b = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h_b), 0x1B);
    __m128i e0_a = _mm_set_epi32((int)h_a[4], 0, 0, 0), e1_a;
    __m128i e0_b = _mm_set_epi32((int)h_b[4], 0, 0, 0), e1_b;
    const __m128i abcd_in_a = abcd_a, e_in_a = e0_a;
    const __m128i abcd_in_b = abcd_b, e_in_b = e0_b;
    __m128i m0_a = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p_a), swap);
    __m128i m0_b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)p_b), swap);
    __m128i m1_a = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_a + 16)), swap);
    __m128i m1_b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_b + 16)), swap);
    __m128i m2_a = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_a + 32)), swap);
    __m128i m2_b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_b + 32)), swap);
    __m128i m3_a = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_a + 48)), swap);
    __m128i m3_b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p_b + 48)), swap);
    e0_a = _mm_add_epi32(e0_a, m0_a);
    e0_b = _mm_add_epi32(e0_b, m0_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 0);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 0);
    e1_a = _mm_sha1nexte_epu32(e1_a, m1_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m1_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 0);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 0);
    m0_a = _mm_sha1msg1_epu32(m0_a, m1_a);
    m0_b = _mm_sha1msg1_epu32(m0_b, m1_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m2_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m2_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 0);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 0);
    m1_a = _mm_sha1msg1_epu32(m1_a, m2_a);
    m1_b = _mm_sha1msg1_epu32(m1_b, m2_b);
    m0_a = _mm_xor_si128(m0_a, m2_a);
    m0_b = _mm_xor_si128(m0_b, m2_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m3_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m3_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m0_a = _mm_sha1msg2_epu32(m0_a, m3_a);
    m0_b = _mm_sha1msg2_epu32(m0_b, m3_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 0);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 0);
    m2_a = _mm_sha1msg1_epu32(m2_a, m3_a);
    m2_b = _mm_sha1msg1_epu32(m2_b, m3_b);
    m1_a = _mm_xor_si128(m1_a, m3_a);
    m1_b = _mm_xor_si128(m1_b, m3_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m0_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m0_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m1_a = _mm_sha1msg2_epu32(m1_a, m0_a);
    m1_b = _mm_sha1msg2_epu32(m1_b, m0_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 0);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 0);
    m3_a = _mm_sha1msg1_epu32(m3_a, m0_a);
    m3_b = _mm_sha1msg1_epu32(m3_b, m0_b);
    m2_a = _mm_xor_si128(m2_a, m0_a);
    m2_b = _mm_xor_si128(m2_b, m0_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m1_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m1_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m2_a = _mm_sha1msg2_epu32(m2_a, m1_a);
    m2_b = _mm_sha1msg2_epu32(m2_b, m1_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 1);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 1);
    m0_a = _mm_sha1msg1_epu32(m0_a, m1_a);
    m0_b = _mm_sha1msg1_epu32(m0_b, m1_b);
    m3_a = _mm_xor_si128(m3_a, m1_a);
    m3_b = _mm_xor_si128(m3_b, m1_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m2_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m2_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m3_a = _mm_sha1msg2_epu32(m3_a, m2_a);
    m3_b = _mm_sha1msg2_epu32(m3_b, m2_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 1);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 1);
    m1_a = _mm_sha1msg1_epu32(m1_a, m2_a);
    m1_b = _mm_sha1msg1_epu32(m1_b, m2_b);
    m0_a = _mm_xor_si128(m0_a, m2_a);
    m0_b = _mm_xor_si128(m0_b, m2_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m3_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m3_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m0_a = _mm_sha1msg2_epu32(m0_a, m3_a);
    m0_b = _mm_sha1msg2_epu32(m0_b, m3_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 1);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 1);
    m2_a = _mm_sha1msg1_epu32(m2_a, m3_a);
    m2_b = _mm_sha1msg1_epu32(m2_b, m3_b);
    m1_a = _mm_xor_si128(m1_a, m3_a);
    m1_b = _mm_xor_si128(m1_b, m3_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m0_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m0_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m1_a = _mm_sha1msg2_epu32(m1_a, m0_a);
    m1_b = _mm_sha1msg2_epu32(m1_b, m0_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 1);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 1);
    m3_a = _mm_sha1msg1_epu32(m3_a, m0_a);
    m3_b = _mm_sha1msg1_epu32(m3_b, m0_b);
    m2_a = _mm_xor_si128(m2_a, m0_a);
    m2_b = _mm_xor_si128(m2_b, m0_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m1_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m1_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m2_a = _mm_sha1msg2_epu32(m2_a, m1_a);
    m2_b = _mm_sha1msg2_epu32(m2_b, m1_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 1);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 1);
    m0_a = _mm_sha1msg1_epu32(m0_a, m1_a);
    m0_b = _mm_sha1msg1_epu32(m0_b, m1_b);
    m3_a = _mm_xor_si128(m3_a, m1_a);
    m3_b = _mm_xor_si128(m3_b, m1_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m2_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m2_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m3_a = _mm_sha1msg2_epu32(m3_a, m2_a);
    m3_b = _mm_sha1msg2_epu32(m3_b, m2_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 2);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 2);
    m1_a = _mm_sha1msg1_epu32(m1_a, m2_a);
    m1_b = _mm_sha1msg1_epu32(m1_b, m2_b);
    m0_a = _mm_xor_si128(m0_a, m2_a);
    m0_b = _mm_xor_si128(m0_b, m2_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m3_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m3_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m0_a = _mm_sha1msg2_epu32(m0_a, m3_a);
    m0_b = _mm_sha1msg2_epu32(m0_b, m3_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 2);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 2);
    m2_a = _mm_sha1msg1_epu32(m2_a, m3_a);
    m2_b = _mm_sha1msg1_epu32(m2_b, m3_b);
    m1_a = _mm_xor_si128(m1_a, m3_a);
    m1_b = _mm_xor_si128(m1_b, m3_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m0_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m0_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m1_a = _mm_sha1msg2_epu32(m1_a, m0_a);
    m1_b = _mm_sha1msg2_epu32(m1_b, m0_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 2);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 2);
    m3_a = _mm_sha1msg1_epu32(m3_a, m0_a);
    m3_b = _mm_sha1msg1_epu32(m3_b, m0_b);
    m2_a = _mm_xor_si128(m2_a, m0_a);
    m2_b = _mm_xor_si128(m2_b, m0_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m1_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m1_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m2_a = _mm_sha1msg2_epu32(m2_a, m1_a);
    m2_b = _mm_sha1msg2_epu32(m2_b, m1_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 2);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 2);
    m0_a = _mm_sha1msg1_epu32(m0_a, m1_a);
    m0_b = _mm_sha1msg1_epu32(m0_b, m1_b);
    m3_a = _mm_xor_si128(m3_a, m1_a);
    m3_b = _mm_xor_si128(m3_b, m1_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m2_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m2_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m3_a = _mm_sha1msg2_epu32(m3_a, m2_a);
    m3_b = _mm_sha1msg2_epu32(m3_b, m2_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 2);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 2);
    m1_a = _mm_sha1msg1_epu32(m1_a, m2_a);
    m1_b = _mm_sha1msg1_epu32(m1_b, m2_b);
    m0_a = _mm_xor_si128(m0_a, m2_a);
    m0_b = _mm_xor_si128(m0_b, m2_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m3_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m3_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m0_a = _mm_sha1msg2_epu32(m0_a, m3_a);
    m0_b = _mm_sha1msg2_epu32(m0_b, m3_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 3);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 3);
    m2_a = _mm_sha1msg1_epu32(m2_a, m3_a);
    m2_b = _mm_sha1msg1_epu32(m2_b, m3_b);
    m1_a = _mm_xor_si128(m1_a, m3_a);
    m1_b = _mm_xor_si128(m1_b, m3_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m0_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m0_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m1_a = _mm_sha1msg2_epu32(m1_a, m0_a);
    m1_b = _mm_sha1msg2_epu32(m1_b, m0_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 3);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 3);
    m3_a = _mm_sha1msg1_epu32(m3_a, m0_a);
    m3_b = _mm_sha1msg1_epu32(m3_b, m0_b);
    m2_a = _mm_xor_si128(m2_a, m0_a);
    m2_b = _mm_xor_si128(m2_b, m0_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m1_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m1_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m2_a = _mm_sha1msg2_epu32(m2_a, m1_a);
    m2_b = _mm_sha1msg2_epu32(m2_b, m1_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 3);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 3);
    m0_a = _mm_sha1msg1_epu32(m0_a, m1_a);
    m0_b = _mm_sha1msg1_epu32(m0_b, m1_b);
    m3_a = _mm_xor_si128(m3_a, m1_a);
    m3_b = _mm_xor_si128(m3_b, m1_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, m2_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, m2_b);
    e1_a = abcd_a;
    e1_b = abcd_b;
    m3_a = _mm_sha1msg2_epu32(m3_a, m2_a);
    m3_b = _mm_sha1msg2_epu32(m3_b, m2_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e0_a, 3);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e0_b, 3);
    m1_a = _mm_sha1msg1_epu32(m1_a, m2_a);
    m1_b = _mm_sha1msg1_epu32(m1_b, m2_b);
    m0_a = _mm_xor_si128(m0_a, m2_a);
    m0_b = _mm_xor_si128(m0_b, m2_b);
    e1_a = _mm_sha1nexte_epu32(e1_a, m3_a);
    e1_b = _mm_sha1nexte_epu32(e1_b, m3_b);
    e0_a = abcd_a;
    e0_b = abcd_b;
    m0_a = _mm_sha1msg2_epu32(m0_a, m3_a);
    m0_b = _mm_sha1msg2_epu32(m0_b, m3_b);
    abcd_a = _mm_sha1rnds4_epu32(abcd_a, e1_a, 3);
    abcd_b = _mm_sha1rnds4_epu32(abcd_b, e1_b, 3);
    m2_a = _mm_sha1msg1_epu32(m2_a, m3_a);
    m2_b = _mm_sha1msg1_epu32(m2_b, m3_b);
    m1_a = _mm_xor_si128(m1_a, m3_a);
    m1_b = _mm_xor_si128(m1_b, m3_b);
    e0_a = _mm_sha1nexte_epu32(e0_a, e_in_a);
    e0_b = _mm_sha1nexte_epu32(e0_b, e_in_b);
    abcd_a = _mm_add_epi32(abcd_a, abcd_in_a);
    abcd_b = _mm_add_epi32(abcd_b, abcd_in_b);
    _mm_storeu_si128((__m128i *)h_a, _mm_shuffle_epi32(abcd_a, 0x1B));
    _mm_storeu_si128((__m128i *)h_b, _mm_shuffle_epi32(abcd_b, 0x1B));
    h_a[4] = (uint32_t)_mm_extract_epi32(e0_a, 3);
    h_b[4] = (uint32_t)_mm_extract_epi32(e0_b, 3);
}

/* adler32 16 bytes a step (SSSE3): b gains 16 x a-so-far plus the bytes weighted 16..1 */
__attribute__((target("ssse3")))
static uint32_t adler32_ssse3(const unsigned char *p, Py_ssize_t n)
{
    uint32_t a = 1, b = 0;
    const __m128i tap = _mm_setr_epi8(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m128i zero = _mm_setzero_si128(), ones = _mm_set1_epi16(1);
    while (n >= 16) {
        Py_ssize_t blocks = n / 16;
        if (blocks > 5552 / 16)  /* zlib's NMAX: no uint32 overflow before the modulo */
            blocks = 5552 / 16;
        n -= blocks * 16;
        __m128i v_ps = _mm_set_epi32(0, 0, 0, (int)(a * (uint32_t)blocks));
        __m128i v_s2 = _mm_set_epi32(0, 0, 0, (int)b);
        __m128i v_s1 = zero;
        do {
            const __m128i bytes = _mm_loadu_si128((const __m128i *)p);
            p += 16;
            v_ps = _mm_add_epi32(v_ps, v_s1);
            v_s1 = _mm_add_epi32(v_s1, _mm_sad_epu8(bytes, zero));
            v_s2 = _mm_add_epi32(v_s2, _mm_madd_epi16(_mm_maddubs_epi16(bytes, tap), ones));
        } while (--blocks);
        v_s2 = _mm_add_epi32(v_s2, _mm_slli_epi32(v_ps, 4));
        v_s1 = _mm_add_epi32(v_s1, _mm_shuffle_epi32(v_s1, 0x4E));
        v_s1 = _mm_add_epi32(v_s1, _mm_shuffle_epi32(v_s1, 0xB1));
        v_s2 = _mm_add_epi32(v_s2, _mm_shuffle_epi32(v_s2, 0x4E));
        v_s2 = _mm_add_epi32(v_s2, _mm_shuffle_epi32(v_s2, 0xB1));
        a = (a + (uint32_t)_mm_cvtsi128_si32(v_s1)) % 65521u;
        b = (uint32_t)_mm_cvtsi128_si32(v_s2) % 65521u;
    }
    while (n--) {
        a += *p++;
        b += a;
    }
    return ((b % 65521u) << 16) | (a % 65521u);
}

static int cpu_has_ssse3(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 9));
}
#else
static void sha1_block_ni2(uint32_t h_a[5], const unsigned char *p_a, uint32_t h_b[5], const unsigned char *p_b)
{
    sha1_block(h_a, p_a);
    sha1_block(h_b, p_b);
}
static uint32_t adler32_ssse3(const unsigned char *p, Py_ssize_t n) { return adler32_of(p, n); }
static int cpu_has_ssse3(void) { return 0; }
#endif

static int has_ssse3;

/* the 20 raw bytes of a sha1 state */
static void sha1_out(const uint32_t h[5], unsigned char *out)
{
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24); out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8); out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* blob_rows' loop: for each width-byte row of p, sha1(head + row) to io, the pack entry
 * prefix + row + big-endian adler32(row) to eo, its crc32 to co. With the SHA extensions two rows
 * are hashed at once from two padded message buffers (head and padding written once, only the
 * row copied in); else (or when the buffers cannot be had) one row at a time. No GIL needed. */
static void blob_rows_fill(const unsigned char *p, Py_ssize_t n, Py_ssize_t width, const unsigned char *head,
                           Py_ssize_t hlen, const unsigned char *prefix, Py_ssize_t plen, unsigned char *io,
                           unsigned char *eo, uint32_t *co)
{
    Py_ssize_t ew = plen + width + 4;
    Py_ssize_t msg = ((hlen + width + 9 + 63) / 64) * 64;  /* head, row, 0x80, zeros, 64-bit length */
    unsigned char *bufs = has_sha_ni && n >= 2 ? malloc((size_t)(2 * msg)) : NULL;
    if (bufs != NULL) {
        uint64_t bits = (uint64_t)(hlen + width) * 8;
        for (int l = 0; l < 2; l++) {
            unsigned char *m = bufs + l * msg;
            memset(m, 0, (size_t)msg);
            memcpy(m, head, (size_t)hlen);
            m[hlen + width] = 0x80;
            for (int i = 0; i < 8; i++)
                m[msg - 1 - i] = (unsigned char)(bits >> (8 * i));
        }
    }
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        const unsigned char *row = p + i * width;
        unsigned char *e = eo + i * ew;
        memcpy(e, prefix, (size_t)plen);
        memcpy(e + plen, row, (size_t)width);
        uint32_t a = has_ssse3 ? adler32_ssse3(row, width) : adler32_of(row, width);
        unsigned char *t = e + plen + width;
        t[0] = (unsigned char)(a >> 24); t[1] = (unsigned char)(a >> 16);
        t[2] = (unsigned char)(a >> 8); t[3] = (unsigned char)a;
        uint32_t c = crc32_of(e, ew);
        memcpy(co + i, &c, 4);
        if (bufs == NULL) {
            sha1_prefixed(has_sha_ni ? sha1_block_ni : sha1_block, head, hlen, row, width, io + 20 * i);
        } else if (i & 1) {  /* rows i - 1 and i together */
            memcpy(bufs + hlen, p + (i - 1) * width, (size_t)width);
            memcpy(bufs + msg + hlen, row, (size_t)width);
            uint32_t ha[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
            uint32_t hb[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
            for (Py_ssize_t k = 0; k < msg; k += 64)
                sha1_block_ni2(ha, bufs + k, hb, bufs + msg + k);
            sha1_out(ha, io + 20 * (i - 1));
            sha1_out(hb, io + 20 * i);
        }
    }
    if (bufs != NULL) {
        if (n & 1)  /* the last row had no partner */
            sha1_prefixed(sha1_block_ni, head, hlen, p + (n - 1) * width, width, io + 20 * (n - 1));
        free(bufs);
    }
}
/* ================================================================== i14a (stop 14): end of block */

/* Git ids and pack entries of blobs, one per width-byte row: returns (ids, entries, crcs) as
 * bytes: sha1(head + row) (20 bytes each); prefix + row + big-endian adler32(row) (the pack
 * entry: type/size header and stored-block zlib prefix, content, zlib trailer); crc32 of
 * each entry (native uint32). One pass over the rows instead of numpy copies between calls. */
static PyObject *blob_rows(PyObject *self, PyObject *args)
{
    Py_buffer buf, head, prefix;
    Py_ssize_t width, n;
    if (!PyArg_ParseTuple(args, "y*ny*y*", &buf, &width, &head, &prefix))
        return NULL;
    PyObject *ids = NULL, *entries = NULL, *crcs = NULL, *out = NULL;
    if (rows_of(&buf, width, &n) == 0) {
        Py_ssize_t ew = prefix.len + width + 4;
        ids = PyBytes_FromStringAndSize(NULL, 20 * n);
        entries = PyBytes_FromStringAndSize(NULL, ew * n);
        crcs = PyBytes_FromStringAndSize(NULL, 4 * n);
        if (ids != NULL && entries != NULL && crcs != NULL) {
            unsigned char *io = (unsigned char *)PyBytes_AS_STRING(ids);
            unsigned char *eo = (unsigned char *)PyBytes_AS_STRING(entries);
            uint32_t *co = (uint32_t *)PyBytes_AS_STRING(crcs);
            const unsigned char *p = buf.buf;
            Py_BEGIN_ALLOW_THREADS
            blob_rows_fill(p, n, width, head.buf, head.len, prefix.buf, prefix.len, io, eo, co);
            Py_END_ALLOW_THREADS
            out = PyTuple_Pack(3, ids, entries, crcs);
        }
    }
    Py_XDECREF(ids);
    Py_XDECREF(entries);
    Py_XDECREF(crcs);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&head);
    PyBuffer_Release(&prefix);
    return out;
}

/* Tree entries "<mode> <name>\0<20-byte id>" back to back, for names given as the rows of a
 * fixed-width bytes array (width bytes each, lens[i] of them used) and ids as 20-byte rows;
 * numpy's column-by-column scatter took ~0.35 us per entry, this ~0.03. */
static PyObject *tree_entry_rows(PyObject *self, PyObject *args)
{
    Py_buffer names, lens, ids, mode;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*ny*y*y*", &names, &width, &lens, &ids, &mode))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = ids.len / 20;
    if (width <= 0 || ids.len % 20 || names.len != n * width || lens.len != n * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "tree_entry_rows: names, lens and ids disagree on the number of rows");
    } else {
        const int64_t *ln = lens.buf;
        Py_ssize_t total = 0;
        int bad = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (ln[i] < 0 || ln[i] > width) { bad = 1; break; }
            total += mode.len + ln[i] + 21;
        }
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "tree_entry_rows: a name length is outside 0..width");
        } else if ((out = PyBytes_FromStringAndSize(NULL, total)) != NULL) {
            unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
            const unsigned char *nm = names.buf, *id = ids.buf;
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < n; i++) {
                memcpy(o, mode.buf, (size_t)mode.len);
                o += mode.len;
                memcpy(o, nm + i * width, (size_t)ln[i]);
                o += ln[i];
                *o++ = 0;
                memcpy(o, id + 20 * i, 20);
                o += 20;
            }
            Py_END_ALLOW_THREADS
        }
    }
    PyBuffer_Release(&names);
    PyBuffer_Release(&lens);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&mode);
    return out;
}

/* prefix + lowercase hex of each 32-byte digest + tail, back to back: the pointer blobs of
 * hangar/records/pointer.py (numpy's table lookups took ~0.5 us per pointer, this ~0.05) */
static PyObject *hex_rows(PyObject *self, PyObject *args)
{
    Py_buffer digests, prefix, tail;
    if (!PyArg_ParseTuple(args, "y*y*y*", &digests, &prefix, &tail))
        return NULL;
    PyObject *out = NULL;
    if (digests.len % 32) {
        PyErr_Format(PyExc_ValueError, "digests buffer of %zd bytes is not rows of 32 bytes", digests.len);
    } else {
        Py_ssize_t n = digests.len / 32, width = prefix.len + 64 + tail.len;
        if ((out = PyBytes_FromStringAndSize(NULL, n * width)) != NULL) {
            static const char hexd[] = "0123456789abcdef";
            unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
            const unsigned char *d = digests.buf;
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < n; i++, d += 32) {
                memcpy(o, prefix.buf, (size_t)prefix.len);
                o += prefix.len;
                for (int k = 0; k < 32; k++) {
                    *o++ = (unsigned char)hexd[d[k] >> 4];
                    *o++ = (unsigned char)hexd[d[k] & 15];
                }
                memcpy(o, tail.buf, (size_t)tail.len);
                o += tail.len;
            }
            Py_END_ALLOW_THREADS
        }
    }
    PyBuffer_Release(&digests);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&tail);
    return out;
}

/* ------------------------------------------------------------------ leaf tree diff */

/* One entry "<mode> <name>\0<20-byte id>" of git tree bytes at *pos: 1 and its fields, 0 at the
 * end, -1 when malformed or not a blob (a mode of a tree: the caller takes its general path). */
static int tree_entry(const unsigned char *t, Py_ssize_t len, Py_ssize_t *pos, const unsigned char **mode,
                      Py_ssize_t *mode_len, const unsigned char **name, Py_ssize_t *name_len,
                      const unsigned char **id)
{
    Py_ssize_t p = *pos, q = p;
    if (p >= len)
        return 0;
    while (q < len && t[q] >= '0' && t[q] <= '7')
        q++;
    /* hard: a blob of mode 100644 only (a tree, link or gitlink entry: the caller's general path) */
    if (q - p != 6 || q >= len || t[q] != ' ' || memcmp(t + p, "100644", 6) != 0)
        return -1;
    *mode = t + p;
    *mode_len = q - p;
    const unsigned char *nul = memchr(t + q + 1, 0, (size_t)(len - q - 1));
    if (nul == NULL || nul == t + q + 1 || (nul - t) + 21 > len)
        return -1;
    *name = t + q + 1;
    *name_len = nul - *name;
    *id = nul + 1;
    *pos = (nul - t) + 21;
    return 1;
}

/* tree_entry after the entry whose name is *name (of *name_len bytes), which the next must follow
 * in git's order (for blobs: byte order of the names, a prefix first): a leaf out of order or naming
 * an entry twice (plain git writes either) is malformed (-1) to leaf_diff's merge-join, which would
 * otherwise report the name twice */
static int tree_entry_after(const unsigned char *t, Py_ssize_t len, Py_ssize_t *pos, const unsigned char **mode,
                            Py_ssize_t *mode_len, const unsigned char **name, Py_ssize_t *name_len,
                            const unsigned char **id)
{
    const unsigned char *prev = *name;
    Py_ssize_t prev_len = *name_len;
    int r = tree_entry(t, len, pos, mode, mode_len, name, name_len, id);
    if (r > 0) {
        Py_ssize_t n = prev_len < *name_len ? prev_len : *name_len;
        int c = memcmp(prev, *name, (size_t)n);
        if (c > 0 || (c == 0 && prev_len >= *name_len))
            return -1;
    }
    return r;
}

static PyObject *entry_pair(const unsigned char *mode, Py_ssize_t mode_len, const unsigned char *id)
{
    if (mode == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(y#y#)", (const char *)mode, mode_len, (const char *)id, (Py_ssize_t)20);
}

/* The entries that differ between two leaf trees (entries of blobs only, in git's order: for
 * blobs plain byte order of the names), by one merge-join over the raw bytes: only changed
 * entries become Python objects, and no tree object is built. Against libgit2's tree diff
 * through pygit2, a 3-way walk at 60,000 samples (15-entry leaves, 600 + 600 changes) took
 * 22.7 ms of CPU instead of 28.4 (same process, alternating runs, loaded machine). */
static PyObject *leaf_diff(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*", &a, &b))
        return NULL;
    PyObject *out = PyList_New(0);
    const unsigned char *ta = a.buf, *tb = b.buf;
    Py_ssize_t pa = 0, pb = 0;
    const unsigned char *ma = NULL, *na = NULL, *ia = NULL, *mb = NULL, *nb = NULL, *ib = NULL;
    Py_ssize_t mla = 0, nla = 0, mlb = 0, nlb = 0;
    int ra = tree_entry(ta, a.len, &pa, &ma, &mla, &na, &nla, &ia);
    int rb = tree_entry(tb, b.len, &pb, &mb, &mlb, &nb, &nlb, &ib);
    while (out != NULL) {
        if (ra < 0 || rb < 0) {
            Py_CLEAR(out);
            out = Py_None;
            Py_INCREF(out);
            break;
        }
        if (ra == 0 && rb == 0)
            break;
        int c;
        if (ra == 0) {
            c = 1;
        } else if (rb == 0) {
            c = -1;
        } else {
            Py_ssize_t n = nla < nlb ? nla : nlb;
            c = memcmp(na, nb, (size_t)n);
            if (c == 0)
                c = nla < nlb ? -1 : nla > nlb ? 1 : 0;
        }
        PyObject *item = NULL;
        if (c < 0) {
            item = Py_BuildValue("(y#NO)", (const char *)na, nla, entry_pair(ma, mla, ia), Py_None);
            ra = tree_entry_after(ta, a.len, &pa, &ma, &mla, &na, &nla, &ia);
        } else if (c > 0) {
            item = Py_BuildValue("(y#ON)", (const char *)nb, nlb, Py_None, entry_pair(mb, mlb, ib));
            rb = tree_entry_after(tb, b.len, &pb, &mb, &mlb, &nb, &nlb, &ib);
        } else {
            if (memcmp(ia, ib, 20) != 0 || mla != mlb || memcmp(ma, mb, (size_t)mla) != 0)
                item = Py_BuildValue("(y#NN)", (const char *)na, nla, entry_pair(ma, mla, ia), entry_pair(mb, mlb, ib));
            ra = tree_entry_after(ta, a.len, &pa, &ma, &mla, &na, &nla, &ia);
            rb = tree_entry_after(tb, b.len, &pb, &mb, &mlb, &nb, &nlb, &ib);
            if (item == NULL && !PyErr_Occurred())
                continue;
        }
        if (item == NULL || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}

/* blake3(row + suffix) of each width-byte row, 32 bytes each: the sample digest of rows
 * that share one dtype and shape (hangar.store.digest) */
static PyObject *blake3_rows(PyObject *self, PyObject *args)
{
    Py_buffer buf, suffix;
    Py_ssize_t width, n;
    if (!PyArg_ParseTuple(args, "y*ny*", &buf, &width, &suffix))
        return NULL;
    PyObject *out = NULL;
    unsigned char *scratch = NULL;
    if (rows_of(&buf, width, &n) == 0) {
        Py_ssize_t len = width + suffix.len;
        Py_ssize_t nblocks = len ? (len + B3_BLOCK - 1) / B3_BLOCK : 1;
        Py_ssize_t padded = nblocks * B3_BLOCK;
        /* eight zero-padded lanes for single-chunk rows, one row plus suffix otherwise */
        scratch = PyMem_RawCalloc(len <= B3_CHUNK ? (size_t)(8 * padded) : (size_t)len, 1);
        if (scratch == NULL)
            PyErr_NoMemory();
        else if ((out = PyBytes_FromStringAndSize(NULL, 32 * n)) != NULL) {
            unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
            const unsigned char *p = buf.buf;
            Py_BEGIN_ALLOW_THREADS
            Py_ssize_t i = 0;
            if (len <= B3_CHUNK && has_b3_avx512 > 0)  /* i14i: sixteen rows per pass, the rest below */
                i = b3_rows16_avx512(p, n, width, suffix.buf, suffix.len, o);
            if (len <= B3_CHUNK) {  /* one chunk each: eight rows per pass, lanes padded to whole blocks */
                b3_many8_fn many = has_avx2 ? b3_many8_avx2 : b3_many8;
                const unsigned char *lanes[8];
                unsigned char last[32 * 8];
                for (int j = 0; j < 8; j++) {
                    lanes[j] = scratch + j * padded;
                    memcpy(scratch + j * padded + width, suffix.buf, (size_t)suffix.len);
                }
                for (; i < n; i += 8) {
                    Py_ssize_t k = n - i < 8 ? n - i : 8;
                    for (Py_ssize_t j = 0; j < k; j++)
                        memcpy(scratch + j * padded, p + (i + j) * width, (size_t)width);
                    many(lanes, (size_t)len, (size_t)nblocks, k == 8 ? o + 32 * i : last);
                    if (k < 8)
                        memcpy(o + 32 * i, last, (size_t)(32 * k));
                }
            }
            else {
                memcpy(scratch + width, suffix.buf, (size_t)suffix.len);
                for (; i < n; i++) {
                    memcpy(scratch, p + i * width, (size_t)width);
                    b3_hash(scratch, (size_t)len, o + 32 * i);
                }
            }
            Py_END_ALLOW_THREADS
        }
    }
    PyMem_RawFree(scratch);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&suffix);
    return out;
}

/* xxh3(buf, portable=False) -> int: XXH3-64 of buf (portable: the baseline code even where wider vectors are used) */
static PyObject *xxh3(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y*|p", &buf, &portable))
        return NULL;
    uint64_t h;
    xxh3_fn fn = portable ? xxh3_sse2 : xxh3_of;
    if (buf.len >= 4096) {
        Py_BEGIN_ALLOW_THREADS
        h = fn(buf.buf, (size_t)buf.len);
        Py_END_ALLOW_THREADS
    } else {
        h = fn(buf.buf, (size_t)buf.len);
    }
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLongLong(h);
}

/* check_spans(buf, offsets, lengths, checks) -> int: the position of the first span
 * buf[offsets[k]:offsets[k] + lengths[k]] whose stored check is not checks[k] (0: none recorded,
 * not checked), or -1 when all match. offsets and lengths: int64 buffers, checks: uint64, all of
 * one length. Spans are bounds-checked first (ValueError); the hashing runs without the GIL. */
static PyObject *check_spans(PyObject *self, PyObject *args)
{
    Py_buffer buf, offs, lens, checks;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &buf, &offs, &lens, &checks))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t m = checks.len / 8;
    if (checks.len % 8 || offs.len != checks.len || lens.len != checks.len) {
        PyErr_SetString(PyExc_ValueError, "check_spans: offsets, lengths and checks must be 8-byte items, "
                                          "as many of each");
    } else {
        const int64_t *o = offs.buf, *l = lens.buf;
        const uint64_t *c = checks.buf;
        Py_ssize_t bad = -1, k;
        for (k = 0; k < m; k++)
            if (o[k] < 0 || l[k] < 0 || o[k] > buf.len || l[k] > buf.len - o[k])
                break;
        if (k < m) {
            PyErr_Format(PyExc_ValueError, "check_spans: span %zd (offset %lld, length %lld) is outside the "
                         "buffer of %zd bytes", k, (long long)o[k], (long long)l[k], buf.len);
        } else {
            const unsigned char *p = buf.buf;
            Py_BEGIN_ALLOW_THREADS
            /* spans of one length (rows): the one CHECK_AHEAD_BYTES ahead is prefetched (i12r) */
            int64_t ahead = m > 1 && l[0] == l[m - 1] ? check_ahead_rows((Py_ssize_t)l[0]) : 0;
            for (k = 0; k < m; k++) {
                if (ahead && k + ahead < m)
                    check_prefetch(p + o[k + ahead], (size_t)l[k + ahead]);
                if (c[k] && stored_check_of(p + o[k], (size_t)l[k]) != c[k]) {
                    bad = k;
                    break;
                }
            }
            Py_END_ALLOW_THREADS
            out = PyLong_FromSsize_t(bad);
        }
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&lens);
    PyBuffer_Release(&checks);
    return out;
}

/* pread_checked(fd, offset, out, check) -> int: pread len(out) bytes at offset into the writable
 * buffer out and, when all were read and check is not 0, compare their stored check with check,
 * in one call without the GIL. Returns the bytes read (short: fewer than len(out)), or -1 when
 * all were read and the check did not match. OSError on a failed read. */
static PyObject *pread_checked(PyObject *self, PyObject *args)
{
    int fd;
    long long offset;
    unsigned long long check;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "iLw*K", &fd, &offset, &out, &check))
        return NULL;
    if (offset < 0) {
        PyBuffer_Release(&out);
        PyErr_Format(PyExc_ValueError, "pread_checked: negative offset %lld", offset);
        return NULL;
    }
    Py_ssize_t got = 0;
    int err = 0, ok = 1;
    Py_BEGIN_ALLOW_THREADS
    while (got < out.len) {
        ssize_t r = pread(fd, (char *)out.buf + got, (size_t)(out.len - got), (off_t)(offset + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (r == 0)
            break;
        got += r;
    }
    if (!err && got == out.len && check)
        ok = stored_check_of(out.buf, (size_t)out.len) == (uint64_t)check;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromSsize_t(ok ? got : -1);
}

/* pread_rows_checked(fd, offset, out, width, checks, piece) -> (nread, bad): pread len(out)
 * bytes at offset into out (consecutive rows of width bytes) in pieces of about piece bytes
 * (whole rows, at least one), checking each piece's rows against checks (uint64, one per row;
 * 0: not checked) right after it lands, while it is still in this core's cache: hashing a
 * 16 MiB read afterwards ran at ~9 GB/s from memory, ~30 GB/s so. nread < len(out): a short read
 * (rows past it unchecked); bad: the first mismatching row, or -1. Without the GIL. */
static PyObject *pread_rows_checked(PyObject *self, PyObject *args)
{
    int fd;
    long long offset;
    Py_buffer out, checks;
    Py_ssize_t width, piece;
    if (!PyArg_ParseTuple(args, "iLw*ny*n", &fd, &offset, &out, &width, &checks, &piece))
        return NULL;
    Py_ssize_t n = width > 0 ? out.len / width : 0;
    if (offset < 0 || width <= 0 || piece <= 0 || out.len % width || checks.len != n * 8) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&checks);
        PyErr_SetString(PyExc_ValueError, "pread_rows_checked: out must be whole rows of width bytes, one "
                                          "uint64 check per row, offset >= 0, piece > 0");
        return NULL;
    }
    const uint64_t *c = checks.buf;
    unsigned char *o = out.buf;
    Py_ssize_t per = piece / width > 0 ? piece / width : 1, total = 0, bad = -1;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < n && bad < 0; r += per) {
        Py_ssize_t k = n - r < per ? n - r : per, want = k * width, got = 0;
        while (got < want) {
            ssize_t g = pread(fd, o + r * width + got, (size_t)(want - got), (off_t)(offset + r * width + got));
            if (g < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (g == 0)
                break;
            got += g;
        }
        total += got;
        if (err || got < want)
            break;
        for (Py_ssize_t j = r; j < r + k; j++) {
            if (c[j] && stored_check_of(o + j * width, (size_t)width) != c[j]) {
                bad = j;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    PyBuffer_Release(&checks);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("nn", total, bad);
}

/* ================================================================== i12g: fused copy + check (begin)
 * Single reads of a sample from a mapped pack: copy it into the caller's array and check its
 * stored xxh3 in one pass (_xxh3_copy.h), one build per vector width like xxh3_of. */

#define HANGAR_XXH3_COPY hangar_xxh3_copy_sse2
#include "_xxh3_copy.h"
#undef HANGAR_XXH3_COPY
uint64_t hangar_xxh3_copy_avx2(void *dst, const void *src, size_t n);  /* _xxh3_avx2.c */
uint64_t hangar_xxh3_copy_avx512(void *dst, const void *src, size_t n);  /* _xxh3_avx512.c */

typedef uint64_t (*xxh3_copy_fn)(void *, const void *, size_t);
static xxh3_copy_fn xxh3_copy_of = hangar_xxh3_copy_sse2;

/* the widest build cpuid allows, as for xxh3_of (called once, from PyInit__rowhash) */
static void copy_checked_init(void)
{
    if (xxh3_vector == 3)
        xxh3_copy_of = hangar_xxh3_copy_avx512;
    else if (xxh3_vector == 2)
        xxh3_copy_of = hangar_xxh3_copy_avx2;
}

/* copy_checked(src, out, check) -> bool: copy the bytes of src into the writable buffer out (of
 * the same length, not overlapping) and, when check is not 0, whether the stored check (xxh3-64,
 * 0 kept as 1) of the bytes written to out is check; with check 0 a plain copy, True. Without
 * the GIL from 4 KiB. */
static PyObject *copy_checked(PyObject *self, PyObject *args)
{
    Py_buffer src, out;
    unsigned long long check;
    if (!PyArg_ParseTuple(args, "y*w*K", &src, &out, &check))
        return NULL;
    const char *s = src.buf, *d = out.buf;
    if (src.len != out.len || (src.len && s < d + out.len && d < s + src.len)) {
        PyErr_Format(PyExc_ValueError, "copy_checked: source of %zd bytes and destination of %zd bytes must "
                     "have the same length and not overlap", src.len, out.len);
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return NULL;
    }
    int ok = 1;
    size_t n = (size_t)src.len;
    if (n >= 4096) {
        Py_BEGIN_ALLOW_THREADS
        if (check) {
            uint64_t h = xxh3_copy_of(out.buf, src.buf, n);
            ok = (h ? h : 1) == (uint64_t)check;
        } else {
            memcpy(out.buf, src.buf, n);
        }
        Py_END_ALLOW_THREADS
    } else if (check) {
        uint64_t h = xxh3_copy_of(out.buf, src.buf, n);
        ok = (h ? h : 1) == (uint64_t)check;
    } else {
        memcpy(out.buf, src.buf, n);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return PyBool_FromLong(ok);
}

/* xxh3_copy(src, out, width=-1) -> int: copy src into out (same length, not overlapping) and
 * return the XXH3-64 of the bytes written, for tests, which compare it with xxh3() of the same
 * bytes. width: -1 the build in use, 0 SSE2, 2 AVX2, 3 AVX-512 (ValueError where this CPU or
 * build lacks it). */
static PyObject *xxh3_copy(PyObject *self, PyObject *args)
{
    Py_buffer src, out;
    int width = -1;
    if (!PyArg_ParseTuple(args, "y*w*|i", &src, &out, &width))
        return NULL;
    const char *s = src.buf, *d = out.buf;
    PyObject *res = NULL;
    xxh3_copy_fn fn = width == -1 ? xxh3_copy_of : width == 0 ? hangar_xxh3_copy_sse2 : NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    if (width == 2 && hangar_xxh3_avx2_built && __builtin_cpu_supports("avx2"))
        fn = hangar_xxh3_copy_avx2;
    if (width == 3 && hangar_xxh3_avx512_built && __builtin_cpu_supports("avx512f"))
        fn = hangar_xxh3_copy_avx512;
#endif
    if (fn == NULL)
        PyErr_Format(PyExc_ValueError, "xxh3_copy: no build of vector width %d here (-1, 0, and 2 or 3 where "
                     "the CPU has them)", width);
    else if (src.len != out.len || (src.len && s < d + out.len && d < s + src.len))
        PyErr_Format(PyExc_ValueError, "xxh3_copy: source of %zd bytes and destination of %zd bytes must "
                     "have the same length and not overlap", src.len, out.len);
    else
        res = PyLong_FromUnsignedLongLong(fn(out.buf, src.buf, (size_t)src.len));
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    return res;
}

/* copy_rows_checked(src, out, width, checks) -> int: copy src into out (same length, whole rows
 * of width bytes, not overlapping) one row at a time, each copied and checked in one pass as
 * copy_checked does (checks: uint64, one per row; 0: none recorded, copied only); the first
 * mismatching row (rows after it are not copied), or -1. Without the GIL. */
static PyObject *copy_rows_checked(PyObject *self, PyObject *args)
{
    Py_buffer src, out, checks;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*w*ny*", &src, &out, &width, &checks))
        return NULL;
    const char *s = src.buf, *d = out.buf;
    Py_ssize_t n = width > 0 ? src.len / width : 0;
    PyObject *res = NULL;
    if (width <= 0 || src.len != out.len || src.len % width || checks.len != n * 8 ||
        (src.len && s < d + out.len && d < s + src.len)) {
        PyErr_Format(PyExc_ValueError, "copy_rows_checked: source (%zd bytes) and destination (%zd bytes) must "
                     "be the same whole rows of %zd bytes, not overlapping, with one uint64 check per row "
                     "(%zd bytes of checks)", src.len, out.len, width, checks.len);
    } else {
        const uint64_t *c = checks.buf;
        Py_ssize_t bad = -1;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            void *o = (char *)out.buf + i * width;
            const void *p = s + i * width;
            if (!c[i]) {
                memcpy(o, p, (size_t)width);
                continue;
            }
            uint64_t h = xxh3_copy_of(o, p, (size_t)width);
            if ((h ? h : 1) != c[i]) {
                bad = i;
                break;
            }
        }
        Py_END_ALLOW_THREADS
        res = PyLong_FromSsize_t(bad);
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    PyBuffer_Release(&checks);
    return res;
}
/* ================================================================== i12g: fused copy + check (end) */

/* ------------------------------------------------------------------ i14r: int keys of a batch
 * int_keys(keys, out) -> bool: when keys (a list or tuple) holds only exact ints (no bools, no
 * subclasses) within int64, write them into out (a writable buffer of len(keys) int64) and
 * return True; else False, out partly written (the caller takes its per-key path). A batch of
 * 60,000 int keys: ~0.15 ms, where np.asarray plus the bool check cost ~3-4 ms under load. */
static PyObject *int_keys(PyObject *self, PyObject *args)
{
    PyObject *keys;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "Ow*", &keys, &out))
        return NULL;
    if (!PyList_Check(keys) && !PyTuple_Check(keys)) {
        PyBuffer_Release(&out);
        Py_RETURN_FALSE;
    }
    /* a list's items are read under the GIL with no call back into Python, so it cannot change */
    Py_ssize_t n = PySequence_Fast_GET_SIZE(keys);
    PyObject **items = PySequence_Fast_ITEMS(keys);
    if (out.len != n * 8) {
        PyBuffer_Release(&out);
        PyErr_Format(PyExc_ValueError, "int_keys: out holds %zd bytes, %zd keys need %zd", out.len, n, n * 8);
        return NULL;
    }
    int64_t *v = out.buf;
    int ok = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int overflow = 0;
        long long x;
        if (!PyLong_CheckExact(items[i])) {
            ok = 0;
            break;
        }
        x = PyLong_AsLongLongAndOverflow(items[i], &overflow);
        if (overflow) {
            ok = 0;
            break;
        }
        v[i] = (int64_t)x;
    }
    PyBuffer_Release(&out);
    return PyBool_FromLong(ok);
}

/* gather_rows_checked(src, offsets, out, width, checks) -> int: copy row k of out (a writable
 * C-contiguous buffer of n rows of width bytes) from src[offsets[k]:offsets[k] + width] and check
 * the copy's stored check against checks[k] (uint64; 0: not checked) while it is in L1; the first
 * mismatching k, or -1. offsets: int64, n of each; every span is bounds-checked first
 * (ValueError). Without the GIL: a loader batch of 256 small samples copied and hashed one
 * Python call each held the GIL ~1 us a sample. */
static PyObject *gather_rows_checked(PyObject *self, PyObject *args)
{
    Py_buffer src, offs, out, checks;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*y*w*ny*", &src, &offs, &out, &width, &checks))
        return NULL;
    PyObject *res = NULL;
    Py_ssize_t n = width > 0 ? out.len / width : 0;
    if (width <= 0 || out.len % width || offs.len != n * 8 || checks.len != n * 8) {
        PyErr_SetString(PyExc_ValueError, "gather_rows_checked: out must be whole rows of width bytes, with one "
                                          "int64 offset and one uint64 check per row");
        goto done;
    }
    const int64_t *o = offs.buf;
    const uint64_t *c = checks.buf;
    Py_ssize_t k, bad = -1;
    for (k = 0; k < n; k++)
        if (o[k] < 0 || o[k] > src.len || width > src.len - o[k])
            break;
    if (k < n) {
        PyErr_Format(PyExc_ValueError, "gather_rows_checked: row %zd (offset %lld, %zd bytes) is outside the "
                     "source of %zd bytes", k, (long long)o[k], width, src.len);
        goto done;
    }
    const unsigned char *p = src.buf;
    unsigned char *d = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (k = 0; k < n; k++) {
        memcpy(d + k * width, p + o[k], (size_t)width);
        if (c[k] && stored_check_of(d + k * width, (size_t)width) != c[k]) {
            bad = k;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    res = PyLong_FromSsize_t(bad);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&offs);
    PyBuffer_Release(&out);
    PyBuffer_Release(&checks);
    return res;
}
/* ------------------------------------------------------------------ end i14r */

/* ---- i12r: rows checked by a helper thread beside the caller's own work ----
 * check_rows_beside(flat, width, which, checks, fn) -> (fn(), bad): call fn() (holding the GIL)
 * while a helper thread checks the stored xxh3 of rows which[k] (all rows 0..m-1 when which is
 * None) of flat (whole rows of width bytes) against checks[k] (uint64; 0: none recorded); then
 * check, without the GIL, what the helper has not: both take chunks from one cursor. bad: the
 * position of a mismatching row (the first any thread found), or -1; every row is checked, or
 * a mismatch found, before this returns, and no thread reads flat after it.
 *
 * Why: get_batch of W1 (60,000 x 784 B) makes 60,000 numpy views (~5 ms holding the GIL) and
 * hashes 47 MB (~5 ms); a Python thread cannot start hashing while the views hold the GIL (its
 * own Python code needs it first), so the last version started a new thread per call and waited
 * for it to run (0.1-0.5 ms idle, up to ~4 ms on the busy 2-core box), then split the rows in a
 * fixed ratio, leaving one thread idle whenever the scheduler ran the other late. The helper is
 * a plain pthread, started once, which never touches Python objects: it starts on the rows as
 * soon as it is scheduled, and the shared cursor balances the rest. */

#include <pthread.h>
#include <sched.h>
#include <signal.h>

/* rows a chunk claims: about 64 KiB (W1: 83 rows, ~15 us of hashing; a 150 KB sample: one), so
 * the claims' atomic adds are noise and the caller waits little for the helper's last chunk */
#define BESIDE_CHUNK_BYTES (64 << 10)

struct beside_job {
    const unsigned char *p;
    Py_ssize_t width;
    const int64_t *w;   /* NULL: rows 0..m-1 */
    const uint64_t *c;
    int64_t m, chunk;
    int64_t cursor;     /* atomic: next position to claim */
    int64_t bad;        /* atomic: first mismatching position found, m: none */
    int users;          /* helper threads inside the job (under beside_mu) */
    int64_t ahead;      /* rows prefetched ahead of the one checked (check_ahead_rows) */
};

static pthread_mutex_t beside_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t beside_posted = PTHREAD_COND_INITIALIZER;
static pthread_cond_t beside_left = PTHREAD_COND_INITIALIZER;
static struct beside_job *beside_slot;  /* posted, not taken yet */
static int beside_state;                /* 0: no helper yet, 1: running, -1: could not start one */

static void beside_run(struct beside_job *j)
{
    for (;;) {
        int64_t k0 = __atomic_fetch_add(&j->cursor, j->chunk, __ATOMIC_RELAXED);
        if (k0 >= j->m)
            return;
        int64_t k1 = k0 + j->chunk < j->m ? k0 + j->chunk : j->m;
        if (__atomic_load_n(&j->bad, __ATOMIC_RELAXED) < j->m)
            return;  /* a mismatch was found: the rest need no checking */
        for (int64_t k = k0; k < k1; k++) {
            /* rC: checks and which may lie at any address (the mapped index's column): loaded
             * unaligned (plain loads were undefined behaviour: -fsanitize=undefined reported them) */
            int64_t r = k;
            uint64_t ck;
            if (j->w)
                memcpy(&r, j->w + k, 8);
            if (j->ahead && k + j->ahead < j->m) {  /* the row ~4 KiB ahead, on its way from memory */
                int64_t ra = k + j->ahead;
                if (j->w)
                    memcpy(&ra, j->w + ra, 8);
                check_prefetch(j->p + ra * j->width, (size_t)j->width);
            }
            memcpy(&ck, j->c + k, 8);
            if (ck && stored_check_of(j->p + r * j->width, (size_t)j->width) != ck) {
                int64_t cur = __atomic_load_n(&j->bad, __ATOMIC_RELAXED);
                while (k < cur && !__atomic_compare_exchange_n(&j->bad, &cur, k, 0, __ATOMIC_RELAXED,
                                                               __ATOMIC_RELAXED))
                    ;
                return;
            }
        }
    }
}

static void *beside_helper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&beside_mu);
    for (;;) {
        while (beside_slot == NULL)
            pthread_cond_wait(&beside_posted, &beside_mu);
        struct beside_job *j = beside_slot;
        beside_slot = NULL;
        j->users++;
        pthread_mutex_unlock(&beside_mu);
        beside_run(j);
        pthread_mutex_lock(&beside_mu);
        if (--j->users == 0)
            pthread_cond_broadcast(&beside_left);
    }
    return NULL;
}

/* a forked child has no helper thread (and may have forked while another thread held the
 * mutex): it starts its own on first use */
static unsigned beside_forks;  /* forks this process descends from since load (rC) */

static void beside_after_fork_child(void)
{
    beside_forks++;
    pthread_mutex_init(&beside_mu, NULL);
    pthread_cond_init(&beside_posted, NULL);
    pthread_cond_init(&beside_left, NULL);
    beside_slot = NULL;
    beside_state = 0;
}

/* under beside_mu: post j to the helper (started on first use, all signals blocked in it: they
 * belong to Python's main thread); 0 where no helper can be had or it has a job waiting */
static int beside_post(struct beside_job *j)
{
    if (beside_state == 0) {
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int err = pthread_create(&t, NULL, beside_helper, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err == 0) {
#ifdef __linux__
            pthread_setname_np(t, "hangar-check");  /* named before it runs: top -H, /proc/<pid>/task/<tid>/comm */
#endif
            pthread_detach(t);
            beside_state = 1;
        } else {
            beside_state = -1;
        }
    }
    if (beside_state != 1 || beside_slot != NULL)
        return 0;
    beside_slot = j;
    pthread_cond_signal(&beside_posted);
    return 1;
}

static PyObject *check_rows_beside(PyObject *self, PyObject *args)
{
    Py_buffer flat, checks, which = {0};
    PyObject *which_obj, *fn;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*nOy*O", &flat, &width, &which_obj, &checks, &fn))
        return NULL;
    int have_which = which_obj != Py_None;
    if (have_which && PyObject_GetBuffer(which_obj, &which, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&flat);
        PyBuffer_Release(&checks);
        return NULL;
    }
    Py_ssize_t m = checks.len / 8, n = width > 0 ? flat.len / width : 0;
    const int64_t *w = which.buf;
    const char *why = NULL;
    if (width <= 0 || flat.len % width || checks.len % 8)
        why = "flat must be whole rows of width bytes and checks uint64";
    else if (have_which ? which.len != checks.len : m > n)
        why = "give one check per row of which (or per row of flat, which None)";
    for (Py_ssize_t k = 0; !why && have_which && k < m; k++) {
        int64_t row;
        memcpy(&row, w + k, 8);  /* an unaligned load (rC: see beside_run) */
        if (row < 0 || row >= n)
            why = "a row of which is outside flat";
    }
    PyObject *res = NULL, *got = NULL;
    if (why) {
        PyErr_Format(PyExc_ValueError, "check_rows_beside: %s (%zd bytes of rows of %zd, %zd checks)", why, flat.len,
                     width, m);
    } else {
        int64_t chunk = (int64_t)(BESIDE_CHUNK_BYTES / width);
        struct beside_job job = {flat.buf, width, have_which ? w : NULL, checks.buf, m, chunk < 1 ? 1 : chunk, 0, m,
                                 0, check_ahead_rows(width)};
        int posted = 0;
        if (m) {
            pthread_mutex_lock(&beside_mu);
            posted = beside_post(&job);
            pthread_mutex_unlock(&beside_mu);
        }
        unsigned forks = beside_forks;
        got = PyObject_CallNoArgs(fn);
        if (posted && beside_forks != forks) {
            /* rC: fn forked and this is the child: the helper that may be inside the job (its
             * users count, its claimed chunks) stayed in the parent; waiting for it hung the
             * child for ever. The child checks every row itself. */
            posted = 0;
            job.users = 0;
            job.cursor = 0;
            job.bad = job.m;
        }
        Py_BEGIN_ALLOW_THREADS
        if (got != NULL)
            beside_run(&job);
        else  /* fn raised: nothing more is checked, the error is what the caller gets */
            __atomic_store_n(&job.cursor, job.m, __ATOMIC_RELAXED);
        if (posted) {  /* the job lives in this frame: wait until the helper has left it */
            pthread_mutex_lock(&beside_mu);
            if (beside_slot == &job)
                beside_slot = NULL;
            while (job.users)
                pthread_cond_wait(&beside_left, &beside_mu);
            pthread_mutex_unlock(&beside_mu);
        }
        Py_END_ALLOW_THREADS
        if (got != NULL) {
            res = Py_BuildValue("Nn", got, (Py_ssize_t)(job.bad < job.m ? job.bad : -1));
            got = NULL;
        }
    }
    Py_XDECREF(got);
    PyBuffer_Release(&flat);
    PyBuffer_Release(&checks);
    if (have_which)
        PyBuffer_Release(&which);
    return res;
}

static void check_rows_beside_init(void)
{
    pthread_atfork(NULL, NULL, beside_after_fork_child);
}
/* ---- end i12r ---- */

static PyObject *crc32_rows(PyObject *self, PyObject *args) { return sums_rows(args, crc32_of); }

/* int_names(keys, prefix) -> list[str]: prefix + decimal of each int of the list keys (each a
 * non-negative int below 2**63; anything else raises, and the caller formats in Python): the
 * tree entry names of int sample keys ("i:12") without a format call per key (60,000 keys:
 * ~2 ms instead of ~14 ms for map("i:{}".format, keys)). */
static PyObject *int_names(PyObject *self, PyObject *args)
{
    PyObject *keys;
    const char *prefix;
    Py_ssize_t plen;
    if (!PyArg_ParseTuple(args, "O!s#", &PyList_Type, &keys, &prefix, &plen))
        return NULL;
    for (Py_ssize_t j = 0; j < plen; j++)
        if ((unsigned char)prefix[j] > 127)
            plen = 99;  /* refused below: the names are built as ascii strings */
    if (plen > 16) {
        PyErr_SetString(PyExc_ValueError, "int_names: prefix must be at most 16 ascii characters");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    char buf[48];
    memcpy(buf, prefix, (size_t)plen);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        if (!PyLong_CheckExact(k)) {
            PyErr_SetString(PyExc_TypeError, "int_names: keys must be ints");
            Py_DECREF(out);
            return NULL;
        }
        long long v = PyLong_AsLongLong(k);
        if (v < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "int_names: keys must be >= 0");
            Py_DECREF(out);
            return NULL;
        }
        char digits[24];
        int d = 0;
        do {
            digits[d++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        Py_ssize_t len = plen;
        while (d)
            buf[len++] = digits[--d];
        PyObject *name = PyUnicode_New(len, 127);
        if (name == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        memcpy(PyUnicode_1BYTE_DATA(name), buf, (size_t)len);
        PyList_SET_ITEM(out, i, name);
    }
    return out;
}

/* stored_check_rows(buf, width) -> bytes: the stored check (xxh3-64, 0 kept as 1) of each width-byte
 * row, as native uint64: the checks of a stack of samples appended as it lies, without a Python
 * object per row (60,000 rows of 784 bytes: ~2 ms instead of ~15 ms for slices and xxhash calls). */
static PyObject *stored_check_rows(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t width, n;
    if (!PyArg_ParseTuple(args, "y*n", &buf, &width))
        return NULL;
    PyObject *out = NULL;
    if (rows_of(&buf, width, &n) == 0 && (out = PyBytes_FromStringAndSize(NULL, 8 * n)) != NULL) {
        uint64_t *o = (uint64_t *)PyBytes_AS_STRING(out);
        const unsigned char *p = buf.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t v = stored_check_of(p + i * width, (size_t)width);
            memcpy(o + i, &v, 8);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    return out;
}
static PyObject *adler32_rows(PyObject *self, PyObject *args) { return sums_rows(args, adler32_of); }

/* ================================================================== i14m: 3-way table merge
 * (owned by hangar/records/treediff.py; begin of block)
 *
 * merge3(read, a, m, d, depth, strategy) merges a fanned-out table (samples or metadata) of
 * three root trees by subtree ids in one call: a directory changed on one side only is taken
 * by id, directories changed on both sides are merged entry by entry (a merge-join over the
 * three raw trees, which git keeps sorted), and new trees are serialized and hashed here.
 * Python's walk (treediff._TableMerge) cost ~15 us per merged directory at 600 + 600 changes
 * in 60,000 samples (~310 directories: 4.7 ms of CPU, 70% of Repository.merge); the trees
 * are still read through ``read`` (TreeReader.raw: its cache and overlay).
 * Returns (merged id or None when the table empties, [(id, tree bytes) of new trees],
 * [(class, name) of conflicts]) or None when a tree is not of the shape the table layout
 * gives it (a leaf holding a subtree, a fan-out directory holding a blob, malformed bytes):
 * the caller then takes its general path. */

/* The checksums of a pack entry (adler32 of the zlib stream, crc32 of the entry for the pack
 * index) with the CPU's vector instructions: the ~850 KB of new trees of a 600 + 600 merge at
 * 1,000,000 samples took ~0.3 ms each byte by byte (crc32 by 8-byte slices, adler32 a byte a
 * step), against ~0.6 ms for their sha1 (x86 SHA instructions). Same results as zlib's
 * (tests/test_merge_fast_paths.py compares them on random lengths and alignments). */
#if defined(__x86_64__) && defined(__GNUC__)
#define M3_SIMD_CODE 1
/* adler32: per 32-byte block, the byte sums (vpsadbw) and the position-weighted sums (vpmaddubsw
 * by 32..1), and 32 x the sums of the blocks before (whose bytes count once more per block); both
 * reduced mod 65521 every 5,536 bytes (zlib's NMAX rounded down to blocks: no 32-bit overflow) */
__attribute__((target("avx2")))
static uint32_t m3_adler32_avx2(const unsigned char *p, Py_ssize_t n)
{
    uint64_t a = 1, b = 0;
    const __m256i weights = _mm256_setr_epi8(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
                                             16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
    while (n >= 32) {
        Py_ssize_t k = n < 5536 ? n & ~(Py_ssize_t)31 : 5536;
        n -= k;
        b += a * (uint64_t)k;
        __m256i sums = zero, before = zero, weighted = zero;
        for (; k; k -= 32, p += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)p);
            before = _mm256_add_epi32(before, sums);
            sums = _mm256_add_epi32(sums, _mm256_sad_epu8(v, zero));
            weighted = _mm256_add_epi32(weighted, _mm256_madd_epi16(_mm256_maddubs_epi16(v, weights), ones));
        }
        weighted = _mm256_add_epi32(weighted, _mm256_slli_epi32(before, 5));
        uint32_t s[8], w[8];
        _mm256_storeu_si256((__m256i *)s, sums);
        _mm256_storeu_si256((__m256i *)w, weighted);
        for (int i = 0; i < 8; i++) {
            a += s[i];
            b += w[i];
        }
        a %= 65521u;
        b %= 65521u;
    }
    while (n-- > 0) {
        a += *p++;
        b += a;
    }
    return (uint32_t)((b % 65521u) << 16 | (a % 65521u));
}

/* crc32 (zlib's polynomial, bit-reflected) by carry-less multiplication: four 16-byte lanes folded
 * 64 bytes a step, folded into one, then a Barrett reduction; the fold constants are those of
 * Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ" for this polynomial (as
 * Chromium's zlib uses them). crc is the running register, pre-inverted; len >= 64, a multiple of 16. */
__attribute__((target("pclmul,sse4.1")))
static uint32_t m3_crc_fold(const unsigned char *p, Py_ssize_t len, uint32_t crc)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)crc));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
    __m128i t;
#define M3_FOLD(X, K, NEXT)                                                                        \
    t = _mm_clmulepi64_si128(X, K, 0x00);                                                          \
    X = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(X, K, 0x11), t), NEXT);
    for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
        M3_FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)p))
        M3_FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(p + 16)))
        M3_FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(p + 32)))
        M3_FOLD(x4, k1k2, _mm_loadu_si128((const __m128i *)(p + 48)))
    }
    M3_FOLD(x1, k3k4, x2)
    M3_FOLD(x1, k3k4, x3)
    M3_FOLD(x1, k3k4, x4)
    for (; len >= 16; p += 16, len -= 16) {
        M3_FOLD(x1, k3k4, _mm_loadu_si128((const __m128i *)p))
    }
#undef M3_FOLD
    /* 128 bits to 64, then to 32 by Barrett reduction */
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, low32), k5k0, 0x00), x2);
    x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), poly, 0x10);
    x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, low32), poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int m3_simd = 0, m3_simd_known = 0;  /* bit 1: avx2, bit 2: pclmul and sse4.1 */

static void m3_simd_init(void)
{
    if (!m3_simd_known) {
        m3_simd_known = 1;
        if (baseline_only)
            return;
        __builtin_cpu_init();
        m3_simd = (__builtin_cpu_supports("avx2") ? 1 : 0) |
                  (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1") ? 2 : 0);
    }
}
#else
#define M3_SIMD_CODE 0
static int m3_simd = 0;
static void m3_simd_init(void) {}
static uint32_t m3_adler32_avx2(const unsigned char *p, Py_ssize_t n) { return adler32_of(p, n); }
static uint32_t m3_crc_fold(const unsigned char *p, Py_ssize_t len, uint32_t crc) { return crc; }
#endif

static uint32_t m3_adler32(const unsigned char *p, Py_ssize_t n)
{
    return m3_simd & 1 && n >= 64 ? m3_adler32_avx2(p, n) : adler32_of(p, n);
}

static uint32_t m3_crc32(const unsigned char *p, Py_ssize_t n)
{
    if (!(m3_simd & 2) || n < 64)
        return crc32_of(p, n);
    Py_ssize_t bulk = n & ~(Py_ssize_t)15;
    uint32_t c = m3_crc_fold(p, bulk, 0xFFFFFFFFu);
    for (p += bulk, n -= bulk; n > 0; n--)  /* the last 0-15 bytes a byte at a time */
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

/* m3_checksum(buf, kind, portable=False) -> int: m3_adler32 (kind 0) or m3_crc32 (kind 1) of buf, for the tests */
static PyObject *m3_checksum(PyObject *self, PyObject *args)
{
    Py_buffer b;
    int kind, portable = 0;
    if (!PyArg_ParseTuple(args, "y*i|p", &b, &kind, &portable))
        return NULL;
    m3_simd_init();
    int keep = m3_simd;
    if (portable)
        m3_simd = 0;
    uint32_t v = kind ? m3_crc32(b.buf, b.len) : m3_adler32(b.buf, b.len);
    m3_simd = keep;
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(v);
}

typedef struct {
    const unsigned char *mode, *name, *id;
    Py_ssize_t mode_len, name_len;
    int tree;
} m3_entry;

typedef struct {
    unsigned char *buf;
    Py_ssize_t len, cap;
} m3_buf;

/* the new trees of a merge as a pack-ready block (plumbing.pack.ObjectBlock's arrays) */
typedef struct {
    m3_buf ids, entries, starts, crcs, data, bounds;  /* starts, bounds: int64; crcs: uint32 */
} m3_block;

typedef struct {
    PyObject *read, *objects, *conflicts;
    int strategy;  /* 0: record conflicts, 1: keep master's side, 2: take dev's side */
    block_fn block;
    PyObject *cache;  /* a dict id -> tree bytes looked up before calling read, or NULL */
    m3_block *pack;  /* where new trees go as pack entries (merge3 with pack=True), else objects */
    m3_buf nodes;  /* i14m: the new trees of a packed merge, hashed at the end (m3_defer_rec each) */
} m3_ctx;

/* ---- i14m: new trees hashed two at a time ----
 * A packed merge keeps each new tree's bytes (with the ids of its new subtrees still zero) and
 * hashes them all at the end, a fan-out level at a time from the leaves up, two trees at once
 * with the SHA instructions interleaved (sha1_block_ni2): one message leaves the SHA unit idle
 * while each round waits for the previous one. A subtree's id is written into its parent's bytes
 * once hashed; the pack entries (which hold those bytes) are built after all ids are known. */
typedef struct {
    Py_ssize_t off, len;  /* the tree's bytes in the block's data */
    Py_ssize_t parent;  /* the node whose bytes name this tree (-1: the table's root) */
    Py_ssize_t slot;  /* where in the block's data this tree's id goes (the parent's entry) */
    int depth;
} m3_defer_rec;

/* ---- end i14m ---- */

#define M3_ERROR (-1)
#define M3_GENERAL (-2)

/* one entry of any mode at *pos: 1, 0 at the end, -1 when malformed */
static int m3_next(const unsigned char *t, Py_ssize_t len, Py_ssize_t *pos, m3_entry *e)
{
    Py_ssize_t p = *pos, q = p;
    if (p >= len)
        return 0;
    while (q < len && t[q] >= '0' && t[q] <= '7')
        q++;
    if (q == p || q >= len || t[q] != ' ')
        return -1;
    e->mode = t + p;
    e->mode_len = q - p;
    const unsigned char *nul = memchr(t + q + 1, 0, (size_t)(len - q - 1));
    if (nul == NULL || nul == t + q + 1 || (nul - t) + 21 > len)
        return -1;
    e->name = t + q + 1;
    e->name_len = nul - e->name;
    e->id = nul + 1;
    e->tree = e->mode_len == 5 && memcmp(e->mode, "40000", 5) == 0;
    /* hard: hangar writes blobs of mode 100644 only; a link, gitlink or executable entry (plain
     * git) is malformed here, so the caller's Python path refuses it (treediff.check_leaf) */
    if (!e->tree && !(e->mode_len == 6 && memcmp(e->mode, "100644", 6) == 0))
        return -1;
    *pos = (nul - t) + 21;
    return 1;
}

/* git's tree order: names compared bytewise, a tree's name as if it ended in '/' */
static int m3_cmp(const m3_entry *x, const m3_entry *y)
{
    Py_ssize_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, (size_t)n);
    if (c)
        return c;
    unsigned cx = x->name_len > n ? x->name[n] : (x->tree ? '/' : 0);
    unsigned cy = y->name_len > n ? y->name[n] : (y->tree ? '/' : 0);
    return cx < cy ? -1 : cx > cy;
}

/* the entry after *e (m3_next's result), which must come after it in git's order: a tree out of
 * order or naming an entry twice (plain git writes either) is malformed (-1) to the merge-join,
 * which would otherwise report a name twice or write a merged tree out of order */
static int m3_advance(const unsigned char *t, Py_ssize_t len, Py_ssize_t *pos, m3_entry *e)
{
    m3_entry prev = *e;
    int r = m3_next(t, len, pos, e);
    return r > 0 && m3_cmp(&prev, e) >= 0 ? -1 : r;
}

static int m3_same(const m3_entry *x, const m3_entry *y)  /* NULL: absent */
{
    if (x == NULL || y == NULL)
        return x == y;
    return memcmp(x->id, y->id, 20) == 0 && x->mode_len == y->mode_len &&
           memcmp(x->mode, y->mode, (size_t)x->mode_len) == 0;
}

static int m3_ideq(const unsigned char *x, const unsigned char *y)
{
    if (x == NULL || y == NULL)
        return x == y;
    return memcmp(x, y, 20) == 0;
}

static int m3_put(m3_buf *b, const void *p, Py_ssize_t n)
{
    if (b->len + n > b->cap) {
        Py_ssize_t cap = (b->cap ? b->cap : 1024);
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *nb = PyMem_Realloc(b->buf, (size_t)cap);
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static int m3_put_entry(m3_buf *b, const m3_entry *e)  /* the entry as it stands */
{
    return m3_put(b, e->mode, e->name + e->name_len + 21 - e->mode);
}

/* A new tree (id already hashed) appended to the pack-ready block: its bytes, and its pack entry
 * (type/size header, a zlib stream of stored blocks, adler32) with the entry's crc32, built while
 * the tree is in cache. Building the entries in Python afterwards (plumbing.pack.write_pack's loop
 * over objects) cost ~1.7 ms of CPU for the ~310 trees (~850 KB) of a 600 + 600 merge at
 * 1,000,000 samples. */
/* ---- i14m: a new tree's pack entry (type/size header, a zlib stream of stored blocks, adler32)
 * and its crc32 appended to the pack-ready block (its id and bytes are put by m3_node and
 * m3_finish). Building the entries in Python (plumbing.pack.write_pack's loop over objects) cost
 * ~1.7 ms of CPU for the ~310 trees (~850 KB) of a 600 + 600 merge at 1,000,000 samples. ---- */
static int m3_entry_of(m3_block *k, const unsigned char *tree, Py_ssize_t len)
{
    unsigned char head[16];
    Py_ssize_t n = 0, size = len;
    unsigned char byte = (unsigned char)((2 << 4) | (size & 0x0F));  /* type 2: tree */
    for (size >>= 4; size; size >>= 7) {
        head[n++] = byte | 0x80;
        byte = (unsigned char)(size & 0x7F);
    }
    head[n++] = byte;
    head[n++] = 0x78;  /* zlib header: deflate, 32 KiB window, no dictionary */
    head[n++] = 0x01;
    Py_ssize_t at = k->entries.len;
    if (m3_put(&k->entries, head, n) < 0)
        return -1;
    Py_ssize_t pos = 0;
    do {  /* stored blocks of at most 65,535 bytes (a leaf is ~9 KB: one) */
        Py_ssize_t chunk = len - pos < 0xFFFF ? len - pos : 0xFFFF;
        unsigned char bh[5] = {pos + chunk >= len, (unsigned char)(chunk & 0xFF), (unsigned char)(chunk >> 8),
                               (unsigned char)(~chunk & 0xFF), (unsigned char)((~chunk >> 8) & 0xFF)};
        if (m3_put(&k->entries, bh, 5) < 0 || m3_put(&k->entries, tree + pos, chunk) < 0)
            return -1;
        pos += chunk;
    } while (pos < len);
    uint32_t a = m3_adler32(tree, len);
    unsigned char tail[4] = {(unsigned char)(a >> 24), (unsigned char)(a >> 16), (unsigned char)(a >> 8),
                             (unsigned char)a};
    if (m3_put(&k->entries, tail, 4) < 0)
        return -1;
    uint32_t crc = m3_crc32(k->entries.buf + at, k->entries.len - at);
    int64_t end_entry = k->entries.len;
    return m3_put(&k->crcs, &crc, 4) < 0 || m3_put(&k->starts, &end_entry, 8) < 0 ? -1 : 0;
}
/* ---- end i14m ---- */

/* ---- i14m: new trees hashed two at a time (continued) ---- */
/* block k (64 bytes) of the padded sha1 message "tree <len>\0" + data: a pointer into data when
 * the block lies inside it, else assembled in tmp */
static const unsigned char *m3_msg_block(const unsigned char *head, Py_ssize_t hl, const unsigned char *data,
                                         Py_ssize_t len, Py_ssize_t k, unsigned char tmp[64])
{
    Py_ssize_t at = 64 * k, total = hl + len;
    if (at >= hl && at + 64 <= total)
        return data + (at - hl);
    memset(tmp, 0, 64);
    if (at < hl)  /* the head (under 64 bytes: in block 0) */
        memcpy(tmp, head + at, (size_t)(hl - at < 64 ? hl - at : 64));
    Py_ssize_t from = at > hl ? at : hl, to = at + 64 < total ? at + 64 : total;
    if (to > from)
        memcpy(tmp + (from - at), data + (from - hl), (size_t)(to - from));
    if (total >= at && total < at + 64)
        tmp[total - at] = 0x80;
    if (64 * k + 64 == ((total + 8) / 64 + 1) * 64) {  /* the last block ends with the length in bits */
        uint64_t bits = (uint64_t)total * 8;
        for (int i = 0; i < 8; i++)
            tmp[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    return tmp;
}

/* ids of trees x and y (y may be NULL: x alone), sha1 of "tree <len>\0" + bytes */
static void m3_hash_pair(const unsigned char *xd, Py_ssize_t xl, unsigned char *xo, const unsigned char *yd,
                         Py_ssize_t yl, unsigned char *yo)
{
    char hx[32], hy[32];
    int hxl = snprintf(hx, sizeof hx, "tree %zd", xl) + 1, hyl = 0;
    uint32_t h[2][5] = {{0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u},
                        {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u}};
    Py_ssize_t nx = (hxl + xl + 8) / 64 + 1, ny = 0, k = 0;
    unsigned char tx[64], ty[64];
    if (yd != NULL) {
        hyl = snprintf(hy, sizeof hy, "tree %zd", yl) + 1;
        ny = (hyl + yl + 8) / 64 + 1;
        if (has_sha_ni)
            for (; k < nx && k < ny; k++)
                sha1_block_ni2(h[0], m3_msg_block((const unsigned char *)hx, hxl, xd, xl, k, tx), h[1],
                               m3_msg_block((const unsigned char *)hy, hyl, yd, yl, k, ty));
    }
    block_fn one = has_sha_ni ? sha1_block_ni : sha1_block;
    for (Py_ssize_t j = k; j < nx; j++)
        one(h[0], m3_msg_block((const unsigned char *)hx, hxl, xd, xl, j, tx));
    for (Py_ssize_t j = k; j < ny; j++)
        one(h[1], m3_msg_block((const unsigned char *)hy, hyl, yd, yl, j, ty));
    sha1_out(h[0], xo);
    if (yd != NULL)
        sha1_out(h[1], yo);
}

/* The ids of the deferred trees (level by level, two at a time), written into their parents'
 * bytes, then each tree's pack entry (m3_entry_of), in the order the trees were completed. */
static int m3_finish(m3_ctx *c, int top)
{
    m3_block *k = c->pack;
    m3_defer_rec *r = (m3_defer_rec *)c->nodes.buf;
    Py_ssize_t n = c->nodes.len / (Py_ssize_t)sizeof(m3_defer_rec);
    if (n == 0)
        return 0;
    k->ids.len = 0;
    unsigned char zero[20] = {0};
    for (Py_ssize_t i = 0; i < n; i++)
        if (m3_put(&k->ids, zero, 20) < 0)
            return -1;
    for (int level = 0; level <= top; level++) {
        Py_ssize_t prev = -1;
        for (Py_ssize_t i = 0; i <= n; i++) {
            if (i < n && r[i].depth != level)
                continue;
            if (i < n && prev < 0) {
                prev = i;
                continue;
            }
            if (prev < 0)
                break;
            unsigned char *data = k->data.buf;
            m3_hash_pair(data + r[prev].off, r[prev].len, k->ids.buf + 20 * prev,
                         i < n ? data + r[i].off : NULL, i < n ? r[i].len : 0, i < n ? k->ids.buf + 20 * i : NULL);
            Py_ssize_t pair[2] = {prev, i};
            for (int j = 0; j < 2; j++)
                if (pair[j] < n && r[pair[j]].parent >= 0)
                    memcpy(data + r[pair[j]].slot, k->ids.buf + 20 * pair[j], 20);
            prev = -1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (m3_entry_of(k, k->data.buf + r[i].off, r[i].len) < 0)
            return -1;
    return 0;
}
/* ---- end i14m ---- */

#if M3_SIMD_CODE
/* m3_common 32 bytes a step (the scans of the common runs were most of the merge-join's own time
 * at 1,000,000 samples: ~244 entries of a ~9 KB leaf compared on two sides per leaf) */
__attribute__((target("avx2,bmi")))
static Py_ssize_t m3_common_avx2(const unsigned char *x, const unsigned char *y, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i eq = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(x + i)),
                                       _mm256_loadu_si256((const __m256i *)(y + i)));
        uint32_t differ = ~(uint32_t)_mm256_movemask_epi8(eq);
        if (differ)
            return i + (Py_ssize_t)_tzcnt_u32(differ);
    }
    while (i < n && x[i] == y[i])
        i++;
    return i;
}
#else
static Py_ssize_t m3_common_avx2(const unsigned char *x, const unsigned char *y, Py_ssize_t n) { return 0; }
#endif

/* length of the common prefix of x and y, 8 bytes a step (32 with AVX2) */
static Py_ssize_t m3_common(const unsigned char *x, Py_ssize_t nx, const unsigned char *y, Py_ssize_t ny)
{
    Py_ssize_t n = nx < ny ? nx : ny, i = 0;
    if (m3_simd & 1)
        return m3_common_avx2(x, y, n);
    while (i + 8 <= n) {
        uint64_t u, v;
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        if (u != v)
            break;
        i += 8;
    }
    while (i < n && x[i] == y[i])
        i++;
    return i;
}

/* ---- i14m: m3_run's loop for a leaf, unrolled for its one entry form ----
 * "100644 <name>\0<id>": the mode checked as one 8-byte word, the name's end found 16 bytes a
 * step, the order of two names by their first 8 bytes as one big-endian word where that decides.
 * Parsing each entry of the runs (m3_next, with a memchr and two memcmp calls, and m3_cmp with a
 * third) was ~22% of merge3's time at 1,000,000 samples (~85 leaves of ~244 entries merged).
 * Accepts only what m3_next / m3_cmp accept (it may stop sooner: m3_run's loop goes on from
 * there); returns the offset after the last entry taken, *last set to it. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static Py_ssize_t m3_leaf_run(const unsigned char *t, Py_ssize_t s, Py_ssize_t end, m3_entry *last)
{
    Py_ssize_t q = s;
    uint64_t mode, want;
    memcpy(&want, "100644 \0", 8);
    const uint64_t mask = ~(uint64_t)0 >> 8;  /* the first 7 bytes (little-endian) */
    while (q + 29 <= end) {  /* the shortest entry: 7 + 1 + 1 + 20 bytes */
        memcpy(&mode, t + q, 8);
        if ((mode & mask) != (want & mask))
            break;
        const unsigned char *name = t + q + 7, *stop = t + end - 20, *nul = name;
        while (nul < stop && *nul)
            nul++;
        if (nul >= stop || nul == name)
            break;
        Py_ssize_t nlen = nul - name;
        if (q > s) {  /* after *last in git's order (both blobs: bytewise, a prefix first) */
            Py_ssize_t n = nlen < last->name_len ? nlen : last->name_len;
            int c;
            uint64_t x, y;
            if (n >= 8 && (memcpy(&x, last->name, 8), memcpy(&y, name, 8), x != y))
                c = __builtin_bswap64(x) < __builtin_bswap64(y) ? -1 : 1;
            else if ((c = memcmp(last->name, name, (size_t)n)) == 0)
                c = last->name_len < nlen ? -1 : last->name_len > nlen;
            if (c >= 0)
                break;
        }
        last->mode = t + q;
        last->mode_len = 6;
        last->name = name;
        last->name_len = nlen;
        last->id = nul + 1;
        last->tree = 0;
        q = (nul - t) + 21;
    }
    return q;
}
#else  /* the general loop alone */
static Py_ssize_t m3_leaf_run(const unsigned char *t, Py_ssize_t s, Py_ssize_t end, m3_entry *last) { return s; }
#endif
/* ---- end i14m ---- */

/* Bytes from offset s of tree t (an entry boundary) that hold whole entries, of the table's shape,
 * within the first limit bytes: where three trees agree byte for byte from their current entries,
 * those entries are equal and are copied as one run, each parsed once (a leaf changed on both
 * sides at 1,000,000 samples holds ~244 entries of which one or two differ: merging it entry by
 * entry, comparing each on three sides, cost ~24 us of the ~26 us a leaf took). */
static Py_ssize_t m3_run(const unsigned char *t, Py_ssize_t len, Py_ssize_t s, Py_ssize_t limit, int depth,
                         m3_entry *last)
{
    Py_ssize_t q = s, end = s + limit;
    m3_entry e;
    if (depth == 0)
        q = m3_leaf_run(t, s, end, last);
    for (;;) {
        Py_ssize_t p = q;
        if (m3_next(t, len, &p, &e) <= 0 || p > end || e.tree != (depth > 0) || (q > s && m3_cmp(last, &e) >= 0))
            return q - s;  /* *last: the run's last entry (in git's order), which the next must follow */
        *last = e;
        q = p;
    }
}

static PyObject *m3_read(m3_ctx *c, const unsigned char *id)
{
    if (id == NULL)
        return PyBytes_FromStringAndSize(NULL, 0);
    PyObject *arg = PyBytes_FromStringAndSize((const char *)id, 20);
    if (arg == NULL)
        return NULL;
    if (c->cache != NULL) {  /* ids name content: a kept copy is always right (~0.5 us less a read) */
        PyObject *hit = PyDict_GetItemWithError(c->cache, arg);
        if (hit != NULL && PyBytes_Check(hit)) {
            Py_DECREF(arg);
            return Py_NewRef(hit);
        }
        if (hit == NULL && PyErr_Occurred()) {
            Py_DECREF(arg);
            return NULL;
        }
    }
    PyObject *r = PyObject_CallOneArg(c->read, arg);
    Py_DECREF(arg);
    if (r != NULL && !PyBytes_Check(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "merge3: read must return bytes");
        return NULL;
    }
    return r;
}

static const char *m3_class(const m3_entry *va, const m3_entry *vm, const m3_entry *vd)
{
    return va == NULL ? "t1" : vm == NULL ? "t21" : vd == NULL ? "t22" : "t3";
}

/* Merge of tables a (base), m (master), d (dev), each a raw id or NULL (absent); depth levels of
 * fan-out directories above the leaves. 0 with *has (0: the merged table is empty) and out; or
 * M3_ERROR (a Python error is set) or M3_GENERAL. */
static int m3_node(m3_ctx *c, const unsigned char *a, const unsigned char *m, const unsigned char *d, int depth,
                   unsigned char out[20], int *has, Py_ssize_t *pend)
{
    *pend = -1;  /* i14m: else the deferred tree (m3_defer_rec) whose id goes to out once hashed */
    if (m3_ideq(d, a) || m3_ideq(m, d) || m3_ideq(m, a)) {  /* one side's table, by id */
        const unsigned char *take = m3_ideq(m, a) && !m3_ideq(m, d) ? d : m;
        *has = take != NULL;
        if (take != NULL)
            memcpy(out, take, 20);
        return 0;
    }
    PyObject *raw[3] = {NULL, NULL, NULL};
    const unsigned char *ids[3] = {a, m, d};
    /* i14m: a leaf of a packed merge is built in place in the block's data (nothing else is added
     * there meanwhile: a leaf has no subtrees), not in a buffer of its own grown from 1 KiB and
     * copied there: ~2 MB of copies a merge at 1,000,000 samples (~85 leaves of ~9 KB) */
    m3_buf own = {NULL, 0, 0};
    m3_buf *ob = c->pack != NULL && depth == 0 ? &c->pack->data : &own;
    Py_ssize_t base = ob->len;
    m3_buf kids = {NULL, 0, 0};  /* i14m: (deferred subtree, offset of its id in b) pairs */
    int status = M3_ERROR;
    for (int k = 0; k < 3; k++)
        if ((raw[k] = m3_read(c, ids[k])) == NULL)
            goto done;
    const unsigned char *t[3];
    Py_ssize_t len[3], pos[3] = {0, 0, 0};
    m3_entry e[3];
    int r[3];
    for (int k = 0; k < 3; k++) {
        t[k] = (const unsigned char *)PyBytes_AS_STRING(raw[k]);
        len[k] = PyBytes_GET_SIZE(raw[k]);
        r[k] = m3_next(t[k], len[k], &pos[k], &e[k]);
    }
    Py_ssize_t am_delta = 0, am_end = -1, ad_delta = 0, ad_end = -1;  /* see the run below */
    for (;;) {
        if (r[0] > 0 && r[1] > 0 && r[2] > 0) {  /* a run of entries equal on all three sides */
            Py_ssize_t s0 = e[0].mode - t[0], s1 = e[1].mode - t[1], s2 = e[2].mode - t[2];
            /* where a side agrees with the base up to the end of the leaf (or its next change), the
             * scan is not repeated after each change of the other side: the first difference at
             * the same offset between the two is still where it was (a leaf changed on both sides
             * at 1,000,000 samples was scanned ~3 times over, ~10% of the merge's time) */
            if (s1 - s0 != am_delta || s0 >= am_end) {
                am_delta = s1 - s0;
                am_end = s0 + m3_common(t[0] + s0, len[0] - s0, t[1] + s1, len[1] - s1);
            }
            Py_ssize_t same = am_end - s0;
            if (same > pos[1] - s1) {
                if (s2 - s0 != ad_delta || s0 >= ad_end) {
                    ad_delta = s2 - s0;
                    ad_end = s0 + m3_common(t[0] + s0, len[0] - s0, t[2] + s2, len[2] - s2);
                }
                Py_ssize_t also = ad_end - s0;
                same = also < same ? also : same;
            }
            m3_entry last;
            Py_ssize_t run = same > pos[1] - s1 ? m3_run(t[1], len[1], s1, same, depth, &last) : 0;
            if (run > 0) {
                if (m3_put(ob, t[1] + s1, run) < 0)
                    goto done;
                Py_ssize_t at[3] = {s0 + run, s1 + run, s2 + run};
                for (int k = 0; k < 3; k++) {
                    pos[k] = at[k];
                    e[k] = last;  /* the same bytes on every side */
                    r[k] = m3_advance(t[k], len[k], &pos[k], &e[k]);
                }
                continue;
            }
        }
        int lo = -1;
        for (int k = 0; k < 3; k++) {
            if (r[k] < 0 || (r[k] > 0 && e[k].tree != (depth > 0))) {
                status = M3_GENERAL;
                goto done;
            }
            if (r[k] > 0 && (lo < 0 || m3_cmp(&e[k], &e[lo]) < 0))
                lo = k;
        }
        if (lo < 0)
            break;
        const m3_entry *v[3] = {NULL, NULL, NULL};
        for (int k = 0; k < 3; k++)
            if (r[k] > 0 && (k == lo || m3_cmp(&e[k], &e[lo]) == 0))
                v[k] = &e[k];
        const m3_entry *keep = NULL;
        int decided = 1;
        if (m3_same(v[1], v[2]) || m3_same(v[2], v[0]))
            keep = v[1];
        else if (m3_same(v[1], v[0]))
            keep = v[2];
        else
            decided = 0;
        if (decided) {
            if (keep != NULL && m3_put_entry(ob, keep) < 0)
                goto done;
        } else if (depth > 0) {
            unsigned char sub[20];
            int sub_has;
            Py_ssize_t sub_pend;
            int got = m3_node(c, v[0] ? v[0]->id : NULL, v[1] ? v[1]->id : NULL, v[2] ? v[2]->id : NULL,
                              depth - 1, sub, &sub_has, &sub_pend);
            if (got < 0) {
                status = got;
                goto done;
            }
            if (sub_has) {
                const m3_entry *n = &e[lo];
                if (m3_put(ob, "40000 ", 6) < 0 || m3_put(ob, n->name, n->name_len) < 0 || m3_put(ob, "", 1) < 0)
                    goto done;
                if (sub_pend >= 0) {  /* its id is written here once hashed (m3_finish) */
                    Py_ssize_t kid[2] = {sub_pend, ob->len - base};
                    memset(sub, 0, 20);
                    if (m3_put(&kids, kid, sizeof kid) < 0)
                        goto done;
                }
                if (m3_put(ob, sub, 20) < 0)
                    goto done;
            }
        } else if (c->strategy == 0) {  /* both sides changed this entry, differently */
            PyObject *item = Py_BuildValue("(sy#)", m3_class(v[0], v[1], v[2]), (const char *)e[lo].name,
                                           e[lo].name_len);
            if (item == NULL || PyList_Append(c->conflicts, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
            if (v[1] != NULL && m3_put_entry(ob, v[1]) < 0)
                goto done;
        } else {
            const m3_entry *side = c->strategy == 1 ? v[1] : v[2];
            if (side != NULL && m3_put_entry(ob, side) < 0)
                goto done;
        }
        for (int k = 0; k < 3; k++)
            if (v[k] != NULL)
                r[k] = m3_advance(t[k], len[k], &pos[k], &e[k]);
    }
    status = 0;
    Py_ssize_t blen = ob->len - base;
    const unsigned char *bbuf = ob->buf != NULL ? ob->buf + base : NULL;
    if (blen == 0) {
        *has = 0;
    } else if (kids.len == 0 && m != NULL && blen == len[1] && memcmp(bbuf, t[1], (size_t)blen) == 0) {
        /* (a tree naming a new subtree differs from master's: that subtree's bytes differ from
         * those of master's, so do their ids) */
        *has = 1;
        memcpy(out, m, 20);
        ob->len = base;
    } else if (c->pack != NULL) {  /* i14m: kept, hashed at the end (m3_finish) */
        m3_block *k = c->pack;
        Py_ssize_t idx = c->nodes.len / (Py_ssize_t)sizeof(m3_defer_rec);
        m3_defer_rec rec = {ob == &own ? k->data.len : base, blen, -1, 0, depth};
        int64_t end_data = rec.off + blen;
        if ((ob == &own && m3_put(&k->data, bbuf, blen) < 0) || m3_put(&k->bounds, &end_data, 8) < 0 ||
            m3_put(&c->nodes, &rec, sizeof rec) < 0) {
            status = M3_ERROR;
        } else {
            m3_defer_rec *r = (m3_defer_rec *)c->nodes.buf;
            const Py_ssize_t *kid = (const Py_ssize_t *)kids.buf;
            for (Py_ssize_t j = 0; j < kids.len / (Py_ssize_t)(2 * sizeof(Py_ssize_t)); j++) {
                r[kid[2 * j]].parent = idx;
                r[kid[2 * j]].slot = rec.off + kid[2 * j + 1];
            }
            *pend = idx;
        }
        *has = 1;
    } else {  /* merge3 without pack: (id, bytes) of each new tree, hashed now */
        char head[32];
        int hl = snprintf(head, sizeof head, "tree %zd", blen);
        sha1_prefixed(c->block, (const unsigned char *)head, hl + 1, bbuf, blen, out);
        PyObject *item = Py_BuildValue("(y#y#)", (const char *)out, (Py_ssize_t)20, (const char *)bbuf, blen);
        if (item == NULL || PyList_Append(c->objects, item) < 0)
            status = M3_ERROR;
        Py_XDECREF(item);
        *has = 1;
    }
done:
    for (int k = 0; k < 3; k++)
        Py_XDECREF(raw[k]);
    if (status < 0 && ob != &own)
        ob->len = base;  /* no partial leaf left in the block's data */
    PyMem_Free(own.buf);
    PyMem_Free(kids.buf);
    return status;
}

static int m3_id_arg(PyObject *o, const unsigned char **id)
{
    if (o == Py_None) {
        *id = NULL;
        return 0;
    }
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) != 20) {
        PyErr_SetString(PyExc_TypeError, "merge3: ids must be 20-byte bytes or None");
        return -1;
    }
    *id = (const unsigned char *)PyBytes_AS_STRING(o);
    return 0;
}

/* The six arrays of a packed merge: copied into out (a writable buffer, or NULL) at 8-aligned
 * offsets when they fit, as (offset, nbytes) pairs; else as new bytes objects. */
static PyObject *m3_block_tuple(m3_block *k, Py_buffer *out)
{
    m3_buf *parts[6] = {&k->ids, &k->entries, &k->starts, &k->crcs, &k->data, &k->bounds};
    Py_ssize_t need = 0;
    for (int i = 0; i < 6; i++)
        need += (parts[i]->len + 7) & ~(Py_ssize_t)7;
    int into = out != NULL && need <= out->len;
    PyObject *t = PyTuple_New(6);
    Py_ssize_t at = 0;
    for (int i = 0; t != NULL && i < 6; i++) {
        PyObject *b;
        if (into) {
            if (parts[i]->len)  /* an empty part's buffer may be NULL: memcpy(dst, NULL, 0) is undefined */
                memcpy((char *)out->buf + at, parts[i]->buf, (size_t)parts[i]->len);
            b = Py_BuildValue("(nn)", at, parts[i]->len);
            at += (parts[i]->len + 7) & ~(Py_ssize_t)7;
        } else {
            b = PyBytes_FromStringAndSize((const char *)parts[i]->buf, parts[i]->len);
        }
        if (b == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, b);
    }
    return t;
}

static m3_block m3_kept;  /* merge3's pack buffers, kept across calls (see merge3) */
static int m3_kept_busy;

static PyObject *merge3(PyObject *self, PyObject *args)
{
    PyObject *read, *oa, *om, *od, *cache = Py_None, *pack = Py_None;
    int depth, strategy;
    if (!PyArg_ParseTuple(args, "OOOOii|OO", &read, &oa, &om, &od, &depth, &strategy, &cache, &pack))
        return NULL;
    if (cache != Py_None && !PyDict_Check(cache)) {
        PyErr_SetString(PyExc_TypeError, "merge3: cache must be a dict or None");
        return NULL;
    }
    const unsigned char *a, *m, *d;
    if (m3_id_arg(oa, &a) < 0 || m3_id_arg(om, &m) < 0 || m3_id_arg(od, &d) < 0)
        return NULL;
    if (depth < 0 || depth > 64 || strategy < 0 || strategy > 2) {
        PyErr_SetString(PyExc_ValueError, "merge3: depth must be 0..64 and strategy 0, 1 or 2");
        return NULL;
    }
    int packed = pack != Py_None && pack != Py_False;
    m3_simd_init();
    Py_buffer outbuf, *out = NULL;
    if (packed && pack != Py_True) {
        if (PyObject_GetBuffer(pack, &outbuf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            return NULL;
        out = &outbuf;
    }
    /* Pack buffers kept across calls: fresh ones of ~850 KB each (a merge at 1,000,000 samples)
     * cost ~1,000 page faults a merge here, ~2.5 ms of CPU, more than building the entries (hence
     * also out: the caller's buffer, kept by it). read may run another thread's merge3 (it is Python
     * code: the GIL can change hands), which then builds in buffers of its own. */
    m3_block local = {{0}}, *block = m3_kept_busy ? &local : &m3_kept;
    m3_kept_busy |= block == &m3_kept;
    m3_buf *parts[6] = {&block->ids, &block->entries, &block->starts, &block->crcs, &block->data, &block->bounds};
    for (int i = 0; i < 6; i++)
        parts[i]->len = 0;
    int64_t zero = 0;
    m3_ctx c = {read, PyList_New(0), PyList_New(0), strategy, has_sha_ni ? sha1_block_ni : sha1_block,
                cache == Py_None ? NULL : cache, packed ? block : NULL, {NULL, 0, 0}};
    PyObject *res = NULL, *objects = NULL;
    unsigned char id[20];
    int has = 0;
    if (c.objects != NULL && c.conflicts != NULL &&
        (!packed || (m3_put(&block->starts, &zero, 8) == 0 && m3_put(&block->bounds, &zero, 8) == 0))) {
        Py_ssize_t pend;
        int got = m3_node(&c, a, m, d, depth, id, &has, &pend);
        if (got == 0 && packed && m3_finish(&c, depth) < 0)
            got = M3_ERROR;
        if (got == 0 && pend >= 0)
            memcpy(id, block->ids.buf + 20 * pend, 20);
        if (got == M3_GENERAL) {
            res = Py_NewRef(Py_None);
        } else if (got == 0 && (objects = packed ? m3_block_tuple(block, out) : Py_NewRef(c.objects)) != NULL) {
            if (has)
                res = Py_BuildValue("(y#OO)", (const char *)id, (Py_ssize_t)20, objects, c.conflicts);
            else
                res = Py_BuildValue("(OOO)", Py_None, objects, c.conflicts);
        }
    }
    Py_XDECREF(objects);
    Py_XDECREF(c.objects);
    Py_XDECREF(c.conflicts);
    PyMem_Free(c.nodes.buf);
    if (out != NULL)
        PyBuffer_Release(out);
    for (int i = 0; i < 6; i++)
        if (block == &local || parts[i]->cap > (8 << 20)) {  /* nor are a huge merge's buffers kept */
            PyMem_Free(parts[i]->buf);
            parts[i]->buf = NULL;
            parts[i]->len = parts[i]->cap = 0;
        }
    if (block == &m3_kept)
        m3_kept_busy = 0;
    return res;
}
/* diff2(read, a, b, depth) lists the entries that differ between two fanned-out tables by
 * subtree ids in one call: directories whose ids are equal are skipped, the others are
 * merge-joined by name, leaves entry by entry. The Python walk (treediff.fan_changes) cost
 * ~5 ms of CPU for 600 changes in 60,000 samples (~830 directory pairs). Returns
 * [(name, old id or None, new id or None)] in tree order, or None when a tree is not of the
 * table's shape (the caller's general path). */
static int d2_node(m3_ctx *c, const unsigned char *a, const unsigned char *b, int depth)
{
    if (m3_ideq(a, b))
        return 0;
    PyObject *raw[2] = {NULL, NULL};
    const unsigned char *ids[2] = {a, b};
    int status = M3_ERROR;
    for (int k = 0; k < 2; k++)
        if ((raw[k] = m3_read(c, ids[k])) == NULL)
            goto done;
    const unsigned char *t[2];
    Py_ssize_t len[2], pos[2] = {0, 0};
    m3_entry e[2];
    int r[2];
    for (int k = 0; k < 2; k++) {
        t[k] = (const unsigned char *)PyBytes_AS_STRING(raw[k]);
        len[k] = PyBytes_GET_SIZE(raw[k]);
        r[k] = m3_next(t[k], len[k], &pos[k], &e[k]);
    }
    for (;;) {
        if (r[0] > 0 && r[1] > 0) {  /* skip a run of equal entries, parsed on one side only */
            Py_ssize_t s0 = e[0].mode - t[0], s1 = e[1].mode - t[1];
            Py_ssize_t same = m3_common(t[0] + s0, len[0] - s0, t[1] + s1, len[1] - s1);
            m3_entry last;
            Py_ssize_t run = same > pos[0] - s0 ? m3_run(t[0], len[0], s0, same, depth, &last) : 0;
            if (run > 0) {
                pos[0] = s0 + run;
                pos[1] = s1 + run;
                e[0] = e[1] = last;  /* the same bytes on both sides */
                r[0] = m3_advance(t[0], len[0], &pos[0], &e[0]);
                r[1] = m3_advance(t[1], len[1], &pos[1], &e[1]);
                continue;
            }
        }
        for (int k = 0; k < 2; k++)
            if (r[k] < 0 || (r[k] > 0 && e[k].tree != (depth > 0))) {
                status = M3_GENERAL;
                goto done;
            }
        if (r[0] == 0 && r[1] == 0)
            break;
        int cmp = r[0] == 0 ? 1 : r[1] == 0 ? -1 : m3_cmp(&e[0], &e[1]);
        const m3_entry *x = cmp <= 0 ? &e[0] : NULL, *y = cmp >= 0 ? &e[1] : NULL;
        if (!m3_same(x, y)) {
            if (depth > 0) {
                int got = d2_node(c, x ? x->id : NULL, y ? y->id : NULL, depth - 1);
                if (got < 0) {
                    status = got;
                    goto done;
                }
            } else {
                const m3_entry *n = x ? x : y;
                PyObject *item = Py_BuildValue("(y#NN)", (const char *)n->name, n->name_len,
                                               x ? PyBytes_FromStringAndSize((const char *)x->id, 20) : Py_NewRef(Py_None),
                                               y ? PyBytes_FromStringAndSize((const char *)y->id, 20) : Py_NewRef(Py_None));
                if (item == NULL || PyList_Append(c->objects, item) < 0) {
                    Py_XDECREF(item);
                    goto done;
                }
                Py_DECREF(item);
            }
        }
        if (x != NULL)
            r[0] = m3_advance(t[0], len[0], &pos[0], &e[0]);
        if (y != NULL)
            r[1] = m3_advance(t[1], len[1], &pos[1], &e[1]);
    }
    status = 0;
done:
    Py_XDECREF(raw[0]);
    Py_XDECREF(raw[1]);
    return status;
}

static PyObject *diff2(PyObject *self, PyObject *args)
{
    PyObject *read, *oa, *ob, *cache = Py_None;
    int depth;
    if (!PyArg_ParseTuple(args, "OOOi|O", &read, &oa, &ob, &depth, &cache))
        return NULL;
    if (cache != Py_None && !PyDict_Check(cache)) {
        PyErr_SetString(PyExc_TypeError, "diff2: cache must be a dict or None");
        return NULL;
    }
    const unsigned char *a, *b;
    if (m3_id_arg(oa, &a) < 0 || m3_id_arg(ob, &b) < 0)
        return NULL;
    if (depth < 0 || depth > 64) {
        PyErr_SetString(PyExc_ValueError, "diff2: depth must be 0..64");
        return NULL;
    }
    m3_simd_init();
    m3_ctx c = {read, PyList_New(0), NULL, 0, sha1_block, cache == Py_None ? NULL : cache, NULL};
    if (c.objects == NULL)
        return NULL;
    int got = d2_node(&c, a, b, depth);
    if (got == 0)
        return c.objects;
    Py_DECREF(c.objects);
    if (got == M3_GENERAL)
        Py_RETURN_NONE;
    return NULL;
}
/* ================================================================== i14m: end of block */
/* ================================================================== i14a: git objects of byte spans
 * (issue 14, the commit path). Whole levels of a fan-out tree are hashed and packed in one call:
 * a 60,000-sample commit built ~4,400 tree objects one by one in Python (sha1, header, zlib
 * stream, crc each: ~50 of ~100 ms on the commit thread). */

/* pack entry header of an object (type and size, 7 bits a byte after the first 4) */
static Py_ssize_t object_header(int type, Py_ssize_t size, unsigned char *out)
{
    Py_ssize_t n = 0;
    unsigned char byte = (unsigned char)((type << 4) | (size & 0x0F));
    size >>= 4;
    while (size) {
        out[n++] = byte | 0x80;
        byte = (unsigned char)(size & 0x7F);
        size >>= 7;
    }
    out[n++] = byte;
    return n;
}

#define STORED_MAX 0xFFFF

/* bytes of a zlib stream of stored blocks holding size bytes (as plumbing.pack.stored_deflate) */
static Py_ssize_t stored_len(Py_ssize_t size)
{
    Py_ssize_t blocks = size ? (size + STORED_MAX - 1) / STORED_MAX : 1;
    return 2 + 5 * blocks + size + 4;
}

/* object_spans(data, bounds, head, type) -> (ids, entries, starts, crcs): the objects are the
 * spans data[bounds[i]:bounds[i + 1]] (bounds: n + 1 non-decreasing int64 offsets inside data);
 * ids: sha1(head + " <size>\0" + span), 20 bytes each; entries: their pack entries back to back
 * (type/size header, zlib stream of stored blocks, adler32); starts: n + 1 int64 offsets of the
 * entries in entries; crcs: the crc32 of each entry (native uint32). */
static PyObject *object_spans(PyObject *self, PyObject *args)
{
    Py_buffer data, bounds, head;
    int type;
    if (!PyArg_ParseTuple(args, "y*y*y*i", &data, &bounds, &head, &type))
        return NULL;
    PyObject *ids = NULL, *entries = NULL, *starts = NULL, *crcs = NULL, *out = NULL;
    const int64_t *b = bounds.buf;
    Py_ssize_t n = bounds.len / (Py_ssize_t)sizeof(int64_t) - 1;
    int bad = bounds.len % (Py_ssize_t)sizeof(int64_t) != 0 || n < 0 || head.len > 16 || type < 1 || type > 7;
    for (Py_ssize_t i = 0; !bad && i < n; i++)
        bad = b[i] < 0 || b[i + 1] < b[i] || b[i + 1] > data.len;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "object_spans: bounds must be n + 1 non-decreasing int64 offsets "
                        "inside data (head at most 16 bytes, type 1..7)");
        goto done;
    }
    Py_ssize_t total = 0;
    unsigned char hdr[16];
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = (Py_ssize_t)(b[i + 1] - b[i]);
        total += object_header(type, size, hdr) + stored_len(size);
    }
    ids = PyBytes_FromStringAndSize(NULL, 20 * n);
    entries = PyBytes_FromStringAndSize(NULL, total);
    starts = PyBytes_FromStringAndSize(NULL, (n + 1) * (Py_ssize_t)sizeof(int64_t));
    crcs = PyBytes_FromStringAndSize(NULL, 4 * n);
    if (ids == NULL || entries == NULL || starts == NULL || crcs == NULL)
        goto done;
    {
        unsigned char *io = (unsigned char *)PyBytes_AS_STRING(ids);
        unsigned char *eo = (unsigned char *)PyBytes_AS_STRING(entries);
        int64_t *so = (int64_t *)PyBytes_AS_STRING(starts);
        uint32_t *co = (uint32_t *)PyBytes_AS_STRING(crcs);
        const unsigned char *p = data.buf;
        block_fn fn = has_sha_ni ? sha1_block_ni : sha1_block;
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t at = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            const unsigned char *obj = p + b[i];
            Py_ssize_t size = (Py_ssize_t)(b[i + 1] - b[i]);
            unsigned char prefix[48];
            memcpy(prefix, head.buf, (size_t)head.len);
            Py_ssize_t plen = head.len + sprintf((char *)prefix + head.len, " %zd", size) + 1;  /* and its NUL */
            sha1_prefixed(fn, prefix, plen, obj, size, io + 20 * i);
            unsigned char *e = eo + at;
            Py_ssize_t k = object_header(type, size, e);
            e[k++] = 0x78; e[k++] = 0x01;
            Py_ssize_t pos = 0;
            do {
                Py_ssize_t chunk = size - pos < STORED_MAX ? size - pos : STORED_MAX;
                e[k++] = pos + chunk >= size;
                e[k++] = (unsigned char)(chunk & 0xFF); e[k++] = (unsigned char)(chunk >> 8);
                e[k++] = (unsigned char)(~chunk & 0xFF); e[k++] = (unsigned char)((~chunk >> 8) & 0xFF);
                memcpy(e + k, obj + pos, (size_t)chunk);
                k += chunk;
                pos += chunk;
            } while (pos < size);
            uint32_t a = adler32_of(obj, size);
            e[k++] = (unsigned char)(a >> 24); e[k++] = (unsigned char)(a >> 16);
            e[k++] = (unsigned char)(a >> 8); e[k++] = (unsigned char)a;
            uint32_t c = crc32_of(e, k);
            memcpy(co + i, &c, 4);
            so[i] = at;
            at += k;
        }
        so[n] = at;
        Py_END_ALLOW_THREADS
    }
    out = PyTuple_Pack(4, ids, entries, starts, crcs);
done:
    Py_XDECREF(ids);
    Py_XDECREF(entries);
    Py_XDECREF(starts);
    Py_XDECREF(crcs);
    PyBuffer_Release(&data);
    PyBuffer_Release(&bounds);
    PyBuffer_Release(&head);
    return out;
}
/* align_rows(a, b, width) -> bytes: for each width-byte row of a, the number of the row of b
 * it is matched with (native int64), -1 for the rows skipped: a walk over both in order that
 * matches row i of a with the next unmatched row of b when they are equal (and stops matching once
 * more than n - m rows were passed over: b can no longer be matched whole). A stacked add's
 * staged digests against the records its data flush wrote (the same order, repeats written once):
 * the location table without a search of the index (1,000,000 rows: ~0.9 s, this ~5 ms). */
static PyObject *align_rows(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    Py_ssize_t width, n, m;
    if (!PyArg_ParseTuple(args, "y*y*n", &a, &b, &width))
        return NULL;
    PyObject *out = NULL;
    if (rows_of(&a, width, &n) == 0 && rows_of(&b, width, &m) == 0 &&
        (out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t))) != NULL) {
        int64_t *o = (int64_t *)PyBytes_AS_STRING(out);
        const unsigned char *pa = a.buf, *pb = b.buf;
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t j = 0, skipped = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (skipped <= n - m && j < m && memcmp(pa + i * width, pb + j * width, (size_t)width) == 0)
                o[i] = j++;
            else {
                o[i] = -1;
                skipped++;
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}
/* ================================================================== end of i14a's block */

/* ---- hard: size of an open file ---- */
#include <sys/stat.h>

/* file_size(fd) -> st_size of the open file fd (OSError on failure). A kept mapping of a pack is
 * checked against its file's size before each single read (a pack truncated by someone else
 * after it was mapped would turn the copy into SIGBUS): os.fstat builds a stat_result per call,
 * ~1.2-1.4 us here under load, this ~0.2-0.4 us. */
static PyObject *file_size(PyObject *self, PyObject *arg)
{
    (void)self;
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLongLong((long long)st.st_size);
}

/* copy_checked_guarded(src, out, check) -> int: copy_checked over a memory mapping that may have
 * been truncated under it: 1 copied and the check matches (or none recorded), 0 it does not, -1 a
 * page of src could not be read (SIGBUS: the file was truncated by someone else after it was
 * mapped, or an I/O error) - the process goes on instead of dying. The fault is caught by a
 * SIGBUS handler installed on first use (SA_NODEFER: the jump out of it leaves SIGBUS unblocked,
 * so no signal-mask syscall per call); a fault outside a guarded copy goes to the handler that was
 * there before (Python's faulthandler, or the default: the process dies as before). The guard is
 * a sigsetjmp(env, 0) and a thread-local pointer (~10-20 ns a call), where an fstat of the pack
 * before each read cost ~0.3 us of a ~3.1 us single read (10%, scripts/bench_checksum.py). */
#include <setjmp.h>
#include <signal.h>

static _Thread_local sigjmp_buf *bus_guard = NULL;
static struct sigaction bus_previous;
static int bus_installed = 0;

static void bus_handler(int sig, siginfo_t *info, void *ctx)
{
    sigjmp_buf *g = bus_guard;
    if (g != NULL) {
        bus_guard = NULL;
        siglongjmp(*g, 1);
    }
    if (bus_previous.sa_flags & SA_SIGINFO) {
        if (bus_previous.sa_sigaction != NULL) {
            bus_previous.sa_sigaction(sig, info, ctx);
            return;
        }
    } else if (bus_previous.sa_handler != SIG_DFL && bus_previous.sa_handler != SIG_IGN) {
        bus_previous.sa_handler(sig);
        return;
    }
    /* the default: restored, and the faulting access repeats and ends the process as it would have */
    sigaction(SIGBUS, &bus_previous, NULL);
}

static int bus_install(void)
{
    if (bus_installed)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = bus_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &bus_previous) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    bus_installed = 1;
    return 0;
}

static int guarded_copy(void *out, const void *src, size_t n, unsigned long long check)
{
    sigjmp_buf env;
    volatile int ok = 1;
    if (sigsetjmp(env, 0) != 0)
        return -1;  /* bus_guard was cleared by the handler */
    bus_guard = &env;
    if (check) {
        uint64_t h = xxh3_copy_of(out, src, n);
        ok = (h ? h : 1) == (uint64_t)check;
    } else {
        memcpy(out, src, n);
    }
    bus_guard = NULL;
    return ok;
}

/* The end both guarded copies share: n bytes from s (inside src) into out with the guard installed,
 * the GIL released from a page up; both buffers released; 1 / 0 / -1 as guarded_copy. */
static PyObject *guarded_copy_release(Py_buffer *src, Py_buffer *out, const char *s, size_t n,
                                      unsigned long long check)
{
    int r = -2;
    if (bus_install() == 0) {
        if (n >= 4096) {
            Py_BEGIN_ALLOW_THREADS
            r = guarded_copy(out->buf, s, n, check);
            Py_END_ALLOW_THREADS
        } else {
            r = guarded_copy(out->buf, s, n, check);
        }
    }
    PyBuffer_Release(src);
    PyBuffer_Release(out);
    return r == -2 ? NULL : PyLong_FromLong(r);
}

static PyObject *copy_checked_guarded(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer src, out;
    unsigned long long check;
    if (!PyArg_ParseTuple(args, "y*w*K", &src, &out, &check))
        return NULL;
    const char *s = src.buf, *d = out.buf;
    if (src.len != out.len || (src.len && s < d + out.len && d < s + src.len)) {
        PyErr_Format(PyExc_ValueError, "copy_checked_guarded: source of %zd bytes and destination of %zd bytes "
                     "must have the same length and not overlap", src.len, out.len);
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return NULL;
    }
    return guarded_copy_release(&src, &out, src.buf, (size_t)src.len, check);
}

/* bus_rearm() -> bool: put the SIGBUS guard's handler back when someone replaced it (True: it was
 * gone). faulthandler.disable() restores the handler faulthandler found when it was enabled: if
 * the guard was installed after that, the guard is gone and the next truncated read kills the
 * process. Querying the handler on every guarded copy costs a syscall (~2.5 us here: more than
 * a small read), so the Python wrapper calls this only when faulthandler's state changed. */
static PyObject *bus_rearm(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    if (!bus_installed) {
        if (bus_install() < 0)
            return NULL;
        Py_RETURN_TRUE;
    }
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == bus_handler)
        Py_RETURN_FALSE;
    bus_installed = 0;
    if (bus_install() < 0)
        return NULL;
    Py_RETURN_TRUE;
}
/* ---- end hard ---- */
/* ---- i14c: fsyncs issued together, no Python thread per fsync ----
 * fsync_all(fds): fsync every descriptor of the sequence at the same time, one POSIX thread each
 * but the first (done by the caller), the GIL released throughout; raises OSError with the
 * errno of the first fsync that failed (in the order given) once all have returned. What
 * hangar.plumbing.durable.fsync_many did with a Python thread per descriptor: threading.Thread.
 * start() waits until the new thread runs and each thread takes the GIL to start and to end,
 * which on a loaded 2-core box cost a scheduling round or a GIL switch interval (5 ms) each,
 * several times per commit. Where a thread cannot be made, that fsync runs in the caller after
 * the others were started (the same result, later). */
#define I14C_MAX_FDS 64

struct i14c_job { int fd; int err; pthread_t thread; int started; };

static void *i14c_fsync_one(void *arg)
{
    struct i14c_job *j = arg;
    int r;
    do  /* as os.fsync: an fsync interrupted by a signal (NFS, FUSE) is retried, not an error */
        r = fsync(j->fd);
    while (r != 0 && errno == EINTR);
    j->err = r == 0 ? 0 : errno;
    return NULL;
}

static PyObject *fsync_all(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "fsync_all: a sequence of file descriptors");
    if (seq != NULL && PyList_CheckExact(seq))  /* rC: a list is read as a copy of itself: an item's */
        Py_SETREF(seq, PyList_AsTuple(seq));     /* __index__ (below) may change it (freed memory read) */
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > I14C_MAX_FDS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "fsync_all: at most %d descriptors at once, not %zd (pass them in parts)",
                     I14C_MAX_FDS, n);
        return NULL;
    }
    struct i14c_job jobs[I14C_MAX_FDS];
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (fd == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        if (fd < 0 || fd > INT32_MAX) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "fsync_all: %ld is not a file descriptor", fd);
            return NULL;
        }
        jobs[i].fd = (int)fd;
        jobs[i].err = 0;
        jobs[i].started = 0;
    }
    Py_DECREF(seq);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 1; i < n; i++)
        jobs[i].started = pthread_create(&jobs[i].thread, NULL, i14c_fsync_one, &jobs[i]) == 0;
    if (n > 0)
        i14c_fsync_one(&jobs[0]);
    for (Py_ssize_t i = 1; i < n; i++) {
        if (jobs[i].started)
            pthread_join(jobs[i].thread, NULL);
        else
            i14c_fsync_one(&jobs[i]);
    }
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (jobs[i].err != 0) {
            errno = jobs[i].err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    Py_RETURN_NONE;
}
/* ---- end i14c ---- */
/* ---- i12r: a single read copied from the mapped pack at an offset ----
 * copy_checked_at(src, offset, out, check) -> int: copy_checked_guarded(src[offset:offset + len(out)],
 * out, check) without the slice: out may be an array of any dtype (its bytes, C-contiguous).
 * Why: a single read (aset[k], W1: ~3 us a read) made a numpy slice of the pack's mapping
 * (~0.15-0.2 us) and a byte memoryview of its fresh array (~0.2 us) to pass them here. */
static PyObject *copy_checked_at(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer src, out;
    Py_ssize_t offset;
    unsigned long long check;
    if (!PyArg_ParseTuple(args, "y*nw*K", &src, &offset, &out, &check))
        return NULL;
    const char *s = (const char *)src.buf + (offset >= 0 && offset <= src.len ? offset : 0), *d = out.buf;
    const char *why = NULL;
    if (offset < 0 || offset > src.len || out.len > src.len - offset)
        why = "the range is outside the source";
    else if (out.len && s < d + out.len && d < s + out.len)
        why = "source and destination overlap";
    if (why) {
        PyErr_Format(PyExc_ValueError, "copy_checked_at: %s (%zd bytes at %zd of a source of %zd bytes)", why, out.len,
                     offset, src.len);
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        return NULL;
    }
    return guarded_copy_release(&src, &out, s, (size_t)out.len, check);
}
/* ---- end i12r ---- */
/* ---- i14d: early writeback ----
 * start_writeback(fd, offset, length): ask the kernel to start writing a file range back to disk
 * now (Linux sync_file_range with SYNC_FILE_RANGE_WRITE only: no wait, no metadata, no cache
 * flush). A pack written at disk speed then has most of its pages on their way while later
 * samples are hashed and written, and the fsync at commit waits only for the tail. It is not a
 * durability step (the fsync still is): it guarantees nothing, and a write-back error it causes
 * is reported by that later fsync (errseq), never swallowed here. Returns True when started,
 * False where the call does not exist or does not apply (not Linux, ENOSYS, a pipe: ESPIPE, a
 * file system without it: EINVAL); EBADF, EIO, ENOMEM, ENOSPC raise OSError. The GIL is released
 * (the call can block while the device queue is full). */
#if defined(__linux__)
#include <fcntl.h>
#endif

static PyObject *start_writeback(PyObject *self, PyObject *args)
{
    int fd;
    long long offset, length;
    if (!PyArg_ParseTuple(args, "iLL", &fd, &offset, &length))
        return NULL;
    if (offset < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "start_writeback: offset and length must be >= 0");
        return NULL;
    }
    if (length == 0)
        Py_RETURN_FALSE;  /* sync_file_range reads 0 as "to the end of the file": never meant here */
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    int rc, err = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE);
    if (rc != 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (rc == 0)
        Py_RETURN_TRUE;
    if (err == ENOSYS || err == ESPIPE || err == EINVAL || err == EOPNOTSUPP)
        Py_RETURN_FALSE;
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
#else
    (void)fd;
    Py_RETURN_FALSE;
#endif
}
/* ---- end i14d ---- */
/* ================================================================== i14a (stop 14): tree order of entry names
 * (issue 14, the commit path). A commit put every staged name in its leaf tree and git's order
 * with numpy: join + split of the names, a crc32 each, a bytes array, a lexsort and gathers
 * (~0.38 s of CPU at 1,000,000 names, ~22 ms at 60,000). fan_entries does it in one pass over the
 * list (the names' own ASCII bytes, no copies), one sort, and writes the sorted tree entries. */

typedef struct {
    uint64_t fan;   /* fan-out digits of the name's leaf, the top level's highest */
    uint64_t pre;   /* the name's first 8 bytes, big endian, 0-padded: git's byte order for most pairs */
    const unsigned char *name;
    Py_ssize_t len;
    int64_t idx;    /* position in the list */
} fan_key;

static inline int fan_key_less(const fan_key *a, const fan_key *b)
{
    if (a->fan != b->fan)
        return a->fan < b->fan;
    if (a->pre != b->pre)
        return a->pre < b->pre;
    Py_ssize_t m = a->len < b->len ? a->len : b->len;
    int c = m > 8 ? memcmp(a->name + 8, b->name + 8, (size_t)(m - 8)) : 0;
    return c ? c < 0 : a->len < b->len;
}

/* introsort-free quicksort (median of three, insertion sort below 16, recursion on the smaller
 * side): names are unique, so no run of equal keys degrades it */
static void fan_sort(fan_key *a, Py_ssize_t n)
{
    while (n > 16) {
        Py_ssize_t mid = n / 2;
        fan_key t;
        if (fan_key_less(&a[mid], &a[0])) { t = a[mid]; a[mid] = a[0]; a[0] = t; }
        if (fan_key_less(&a[n - 1], &a[0])) { t = a[n - 1]; a[n - 1] = a[0]; a[0] = t; }
        if (fan_key_less(&a[n - 1], &a[mid])) { t = a[n - 1]; a[n - 1] = a[mid]; a[mid] = t; }
        fan_key pivot = a[mid];
        Py_ssize_t i = 0, j = n - 1;
        for (;;) {
            while (fan_key_less(&a[i], &pivot)) i++;
            while (fan_key_less(&pivot, &a[j])) j--;
            if (i >= j) break;
            t = a[i]; a[i] = a[j]; a[j] = t;
            i++; j--;
        }
        /* a[0..j] <= pivot <= a[j+1..n-1] */
        if (j + 1 < n - j - 1) { fan_sort(a, j + 1); a += j + 1; n -= j + 1; }
        else { fan_sort(a + j + 1, n - j - 1); n = j + 1; }
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        fan_key t = a[i];
        Py_ssize_t j = i;
        while (j > 0 && fan_key_less(&t, &a[j - 1])) { a[j] = a[j - 1]; j--; }
        a[j] = t;
    }
}

/* The keys of the names of a list sorted by (leaf, name bytes) (see fan_entries): 1 and *out set (free
 * it with PyMem_Free), 0 when a name is not an ASCII str, -1 with an exception set. The strs are
 * read under the GIL (kept alive by the list, which nothing changes meanwhile). */
static int fan_sorted_keys(PyObject *names, int depth, fan_key **out)
{
    if (depth < 0 || depth > 8) {
        PyErr_Format(PyExc_ValueError, "fan_entries: depth %d is outside 0..8", depth);
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(names);
    fan_key *keys = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(fan_key));
    if (keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(names, i);
        if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_COMPACT_ASCII(s)) {
            PyMem_Free(keys);
            return 0;
        }
        fan_key *k = &keys[i];
        k->name = (const unsigned char *)PyUnicode_DATA(s);
        k->len = PyUnicode_GET_LENGTH(s);
        k->idx = i;
        uint32_t crc = crc32_of(k->name, k->len);
        uint64_t v = 0;
        for (int level = 0; level < depth; level++)
            v |= (uint64_t)((crc >> (4 * level)) & 15u) << (4 * (depth - 1 - level));
        k->fan = v;
        uint64_t pre = 0;
        for (Py_ssize_t b = 0; b < 8; b++)
            pre = (pre << 8) | (b < k->len ? k->name[b] : 0);
        k->pre = pre;
    }
    if (depth <= 4 && n > 64) {  /* counting sort by leaf, then each leaf's names */
        Py_ssize_t nb = (Py_ssize_t)1 << (4 * depth);
        Py_ssize_t *start = PyMem_Calloc((size_t)nb + 1, sizeof(Py_ssize_t));
        fan_key *tmp = PyMem_Malloc((size_t)n * sizeof(fan_key));
        if (start == NULL || tmp == NULL) {
            PyMem_Free(start);
            PyMem_Free(tmp);
            PyMem_Free(keys);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            start[keys[i].fan + 1]++;
        for (Py_ssize_t b = 0; b < nb; b++)
            start[b + 1] += start[b];
        for (Py_ssize_t i = 0; i < n; i++)
            tmp[start[keys[i].fan]++] = keys[i];
        Py_ssize_t at = 0;  /* start[b] is now the end of bucket b */
        for (Py_ssize_t b = 0; b < nb; b++) {
            fan_sort(tmp + at, start[b] - at);
            at = start[b];
        }
        PyMem_Free(start);
        PyMem_Free(keys);
        keys = tmp;
    } else {
        fan_sort(keys, n);
    }
    *out = keys;
    return 1;
}

/* (order, fan) bytes of sorted keys, as fan_entries returns them */
static PyObject *fan_columns(const fan_key *keys, Py_ssize_t n)
{
    PyObject *order = PyBytes_FromStringAndSize(NULL, 8 * n), *fan = PyBytes_FromStringAndSize(NULL, 8 * n);
    PyObject *out = NULL;
    if (order != NULL && fan != NULL) {
        int64_t *o = (int64_t *)PyBytes_AS_STRING(order);
        uint64_t *f = (uint64_t *)PyBytes_AS_STRING(fan);
        for (Py_ssize_t i = 0; i < n; i++) {
            o[i] = keys[i].idx;
            f[i] = keys[i].fan;
        }
        out = PyTuple_Pack(2, order, fan);
    }
    Py_XDECREF(order);
    Py_XDECREF(fan);
    return out;
}

/* fan_entries(names, ids, depth, mode, live) -> (order, fan, entries, starts) or None: names a list of
 * ASCII strs, depth 0..8. The leaf of a name is keys.fan_path's digits (crc32 of the name, 4 bits a
 * level, the lowest first) as one number, the top level's digit highest; order (int64) sorts the
 * names by (leaf, name bytes), the order of the leaves in the tree and of the entries in each leaf;
 * fan (uint64) is each sorted name's leaf number; then the tree entries (mode + name + NUL + id row) of the sorted names,
 * back to back, with the m + 1 int64 offsets where they start; ids holds len(names) rows of 20
 * bytes; live (None, or one byte per name) leaves out the entries of the names whose byte is 0.
 * Written from the sort's keys (a name of up to 8 bytes is its key): the strs are not read again
 * in the new order, whose scattered reads cost ~0.1 s at 1,000,000 names. */
static PyObject *fan_entries(PyObject *self, PyObject *args)
{
    PyObject *names, *live_obj;
    Py_buffer ids, mode, live = {0};
    int depth;
    if (!PyArg_ParseTuple(args, "O!y*iy*O", &PyList_Type, &names, &ids, &depth, &mode, &live_obj))
        return NULL;
    PyObject *cols = NULL, *out = NULL, *entries = NULL, *starts = NULL;
    fan_key *keys = NULL;
    Py_ssize_t n = PyList_GET_SIZE(names);
    if (live_obj != Py_None && PyObject_GetBuffer(live_obj, &live, PyBUF_SIMPLE) < 0)
        goto done;
    if (ids.len != 20 * n || (live.obj != NULL && live.len != n)) {
        PyErr_SetString(PyExc_ValueError, "fan_entries: ids must be len(names) rows of 20 bytes and live one byte a name");
        goto done;
    }
    int got = fan_sorted_keys(names, depth, &keys);
    if (got <= 0) {
        if (got == 0) {
            out = Py_None;
            Py_INCREF(out);
        }
        goto done;
    }
    const unsigned char *lv = live.obj != NULL ? live.buf : NULL;
    Py_ssize_t total = 0, m = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (lv != NULL && !lv[keys[i].idx])
            continue;
        total += mode.len + keys[i].len + 21;
        m++;
    }
    cols = fan_columns(keys, n);
    entries = PyBytes_FromStringAndSize(NULL, total);
    starts = PyBytes_FromStringAndSize(NULL, 8 * (m + 1));
    if (cols == NULL || entries == NULL || starts == NULL)
        goto done;
    unsigned char *e = (unsigned char *)PyBytes_AS_STRING(entries);
    int64_t *st = (int64_t *)PyBytes_AS_STRING(starts);
    const unsigned char *id = ids.buf;
    Py_ssize_t at = 0, k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const fan_key *key = &keys[i];
        if (lv != NULL && !lv[key->idx])
            continue;
        st[k++] = at;
        memcpy(e + at, mode.buf, (size_t)mode.len);
        at += mode.len;
        if (key->len <= 8) {  /* the key holds the name */
            for (Py_ssize_t b = 0; b < key->len; b++)
                e[at + b] = (unsigned char)(key->pre >> (56 - 8 * b));
        } else {
            memcpy(e + at, key->name, (size_t)key->len);
        }
        at += key->len;
        e[at++] = 0;
        memcpy(e + at, id + 20 * key->idx, 20);
        at += 20;
    }
    st[m] = at;
    out = PyTuple_Pack(4, PyTuple_GET_ITEM(cols, 0), PyTuple_GET_ITEM(cols, 1), entries, starts);
done:
    PyMem_Free(keys);
    Py_XDECREF(cols);
    Py_XDECREF(entries);
    Py_XDECREF(starts);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&mode);
    if (live.obj != NULL)
        PyBuffer_Release(&live);
    return out;
}
/* ================================================================== i14a (stop 14): end of block */

/* ================================================================== i14a (stop 14): one leaf tree's edits
 * (issue 14, the commit path: updates). LeafEdits.apply merged a leaf's entries with its edits
 * through a regex, a dict and a sort (~25 us a leaf of ~15 entries: ~15 ms of a 1% update of
 * 60,000 samples); this is one walk over the three sorted lists. */

typedef struct {
    const unsigned char *start;  /* the whole entry */
    Py_ssize_t size;
    const unsigned char *name;
    Py_ssize_t len;
    int is_tree;
} leaf_entry;

/* the entry at p (end: the tree's end): 1 and *e filled, 0 at the end, -1 when malformed */
static int leaf_next(const unsigned char *p, const unsigned char *end, leaf_entry *e)
{
    if (p >= end)
        return 0;
    const unsigned char *sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || sp == p)
        return -1;
    for (const unsigned char *q = p; q < sp; q++)
        if (*q < '0' || *q > '7')
            return -1;
    const unsigned char *nul = memchr(sp + 1, 0, (size_t)(end - sp - 1));
    if (nul == NULL || nul == sp + 1 || end - nul < 21)
        return -1;
    e->start = p;
    e->name = sp + 1;
    e->len = nul - sp - 1;
    e->size = nul + 21 - p;
    e->is_tree = (sp - p == 5 && memcmp(p, "40000", 5) == 0);
    return 1;
}

static int name_cmp(const unsigned char *a, Py_ssize_t al, const unsigned char *b, Py_ssize_t bl)
{
    int c = memcmp(a, b, (size_t)(al < bl ? al : bl));
    return c ? c : (al < bl ? -1 : al > bl);
}

/* leaf_merge(base, entries, deleted) -> bytes or None: the tree bytes of base (raw tree data) with
 * the entries (tree entries in git order) set and the names of deleted (a list of bytes, sorted)
 * removed, as LeafEdits.apply; None when base holds a subtree, either list is out of order or
 * repeats a name, or an entry is malformed (the caller's general path). */
static PyObject *leaf_merge(PyObject *self, PyObject *args)
{
    Py_buffer base, ents;
    PyObject *deleted;
    if (!PyArg_ParseTuple(args, "y*y*O!", &base, &ents, &PyList_Type, &deleted))
        return NULL;
    PyObject *out = NULL;
    Py_ssize_t nd = PyList_GET_SIZE(deleted);
    for (Py_ssize_t k = 0; k < nd; k++) {
        PyObject *d = PyList_GET_ITEM(deleted, k);
        if (!PyBytes_Check(d) || (k && name_cmp((const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(deleted, k - 1)),
                                                 PyBytes_GET_SIZE(PyList_GET_ITEM(deleted, k - 1)),
                                                 (const unsigned char *)PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d)) >= 0))
            goto general;
    }
    PyObject *res = PyBytes_FromStringAndSize(NULL, base.len + ents.len);
    if (res == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(res);
    const unsigned char *bp = base.buf, *bend = bp + base.len, *np_ = ents.buf, *nend = np_ + ents.len;
    leaf_entry b, n, prev_b = {0}, prev_n = {0};
    int hb = leaf_next(bp, bend, &b), hn = leaf_next(np_, nend, &n), have_pb = 0, have_pn = 0;
    Py_ssize_t di = 0, at = 0;
    while (hb > 0 || hn > 0) {
        if (hb > 0 && (b.is_tree || (have_pb && name_cmp(prev_b.name, prev_b.len, b.name, b.len) >= 0)))
            break;
        if (hn > 0 && (have_pn && name_cmp(prev_n.name, prev_n.len, n.name, n.len) >= 0))
            break;
        int c = hb <= 0 ? 1 : hn <= 0 ? -1 : name_cmp(b.name, b.len, n.name, n.len);
        if (c < 0) {  /* a base entry: kept unless deleted */
            while (di < nd && name_cmp((const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(deleted, di)),
                                       PyBytes_GET_SIZE(PyList_GET_ITEM(deleted, di)), b.name, b.len) < 0)
                di++;
            if (!(di < nd && name_cmp((const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(deleted, di)),
                                      PyBytes_GET_SIZE(PyList_GET_ITEM(deleted, di)), b.name, b.len) == 0)) {
                memcpy(o + at, b.start, (size_t)b.size);
                at += b.size;
            }
            prev_b = b; have_pb = 1;
            hb = leaf_next(b.start + b.size, bend, &b);
        } else {  /* a new entry (replacing a base entry of the same name) */
            memcpy(o + at, n.start, (size_t)n.size);
            at += n.size;
            if (c == 0) {
                prev_b = b; have_pb = 1;
                hb = leaf_next(b.start + b.size, bend, &b);
            }
            prev_n = n; have_pn = 1;
            hn = leaf_next(n.start + n.size, nend, &n);
        }
    }
    if (hb != 0 || hn != 0) {  /* stopped early or malformed */
        Py_DECREF(res);
        goto general;
    }
    if (at < base.len + ents.len)
        _PyBytes_Resize(&res, at);
    out = res;
    goto done;
general:
    out = Py_None;
    Py_INCREF(out);
done:
    PyBuffer_Release(&base);
    PyBuffer_Release(&ents);
    return out;
}
/* ================================================================== i14a (stop 14): end of block */

/* ---- i14i: held rows of a writer loop (aset[k] = v) ---- */
/* RowHold(stack, keys, ndarray, dtype, shape, strides): the common case of a writer loop's
 * add done in one C call. hold(key, value) copies value's bytes into the next free row of
 * stack (a writable C-contiguous buffer of rows, len(keys) of them used) and appends key to
 * keys, when key is a plain int >= 0 and value is exactly an ndarray of the identical dtype
 * object, the given shape and strides (a C-contiguous fixed-shape sample) and a row is free;
 * it returns the number of held rows then. Anything else returns -1 with nothing changed: the
 * caller runs its full checks (their errors) or grows the stack. Measured on this machine: the
 * Python form of the same checks and copy cost ~1.7 us a sample (numpy's row assignment alone
 * ~0.3-1.3 us), this call ~0.2 us. The value's layout is read from numpy's array object
 * itself (HangarNdarrayHead: the fields numpy's public PyArray_DATA/NDIM/DIMS/STRIDES/DESCR
 * macros read, a stable ABI) when the stack, read both ways at construction, proves that
 * layout; else from __array_struct__ (numpy's C array interface: ~90 ns more a call). */
typedef struct {
    int two, nd;
    char typekind;
    int itemsize, flags;
    Py_intptr_t *shape, *strides;
    void *data;
    PyObject *descr;
} HangarArrayInterface;  /* numpy's PyArrayInterface, the layout its __array_struct__ capsule holds */

typedef struct {
    PyObject_HEAD
    char *data;
    int nd;
    Py_intptr_t *dimensions, *strides;
    PyObject *base, *descr;
} HangarNdarrayHead;  /* the head of numpy's PyArrayObject_fields */

typedef struct {
    PyObject_HEAD
    PyObject *ndarray, *dtype, *keys;
    Py_buffer stack;
    Py_ssize_t width, rows, nd;
    int direct;  /* 1: the head of an ndarray is HangarNdarrayHead (checked on the stack) */
    Py_intptr_t dims[2 * 32];  /* shape, then strides */
} RowHoldObject;

static PyObject *str_array_struct, *str_dtype;

static void rowhold_dealloc(RowHoldObject *self)
{
    if (self->stack.obj != NULL)
        PyBuffer_Release(&self->stack);
    Py_XDECREF(self->ndarray);
    Py_XDECREF(self->dtype);
    Py_XDECREF(self->keys);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int rowhold_dims(PyObject *seq, Py_intptr_t *out, Py_ssize_t nd, const char *what)
{
    if (!PyTuple_Check(seq) || PyTuple_GET_SIZE(seq) != nd) {
        PyErr_Format(PyExc_ValueError, "RowHold: %s must be a tuple as long as shape", what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nd; i++) {
        Py_ssize_t v = PyLong_AsSsize_t(PyTuple_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred())
            return -1;
        out[i] = (Py_intptr_t)v;
    }
    return 0;
}

static PyObject *rowhold_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *stack, *keys, *ndarray, *dtype, *shape, *strides;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "RowHold takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!OO!O!", &stack, &PyList_Type, &keys, &PyType_Type, &ndarray, &dtype,
                          &PyTuple_Type, &shape, &PyTuple_Type, &strides))
        return NULL;
    Py_ssize_t nd = PyTuple_GET_SIZE(shape);
    if (nd > 32) {
        PyErr_SetString(PyExc_ValueError, "RowHold: shape must have at most 32 dimensions");
        return NULL;
    }
    PyObject *isz = PyObject_GetAttrString(dtype, "itemsize");
    Py_ssize_t itemsize = isz == NULL ? -1 : PyLong_AsSsize_t(isz);
    Py_XDECREF(isz);
    if (itemsize == -1 && PyErr_Occurred())
        return NULL;
    RowHoldObject *self = (RowHoldObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->nd = nd;
    if (rowhold_dims(shape, self->dims, nd, "shape") < 0 || rowhold_dims(strides, self->dims + 32, nd, "strides") < 0
        || PyObject_GetBuffer(stack, &self->stack, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    Py_ssize_t width = itemsize;  /* a C-contiguous row's bytes (a 0-d sample: one item) */
    for (Py_ssize_t i = 0; i < nd; i++) {
        if (self->dims[i] < 1 || width > PY_SSIZE_T_MAX / self->dims[i]) {
            PyErr_SetString(PyExc_ValueError, "RowHold: shape must be positive");
            Py_DECREF(self);
            return NULL;
        }
        width *= self->dims[i];
    }
    if (width < 1 || self->stack.len % width != 0) {
        PyErr_SetString(PyExc_ValueError, "RowHold: stack must hold whole rows");
        Py_DECREF(self);
        return NULL;
    }
    self->width = width;
    self->rows = self->stack.len / width;
    if ((PyObject *)Py_TYPE(stack) == ndarray) {  /* does numpy's object head read as expected? */
        HangarNdarrayHead *h = (HangarNdarrayHead *)stack;
        PyObject *dt = PyObject_GetAttr(stack, str_dtype);
        if (dt == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        int ok = h->data == self->stack.buf && h->nd == nd + 1 && h->descr == dtype && dt == dtype
                 && h->dimensions[0] == self->rows;
        Py_DECREF(dt);
        for (Py_ssize_t i = 0; ok && i < nd; i++)
            ok = h->dimensions[i + 1] == self->dims[i] && h->strides[i + 1] == self->dims[32 + i];
        self->direct = ok;
    }
    Py_INCREF(keys); self->keys = keys;
    Py_INCREF(ndarray); self->ndarray = ndarray;
    Py_INCREF(dtype); self->dtype = dtype;
    return (PyObject *)self;
}

/* hold(key, value)'s work (i14l: also the writer arrayset's C mapping slot's): the rows held
 * after the add, -1 when not taken (nothing changed), -2 with an exception set */
static Py_ssize_t rowhold_take(RowHoldObject *self, PyObject *key, PyObject *value)
{
    Py_ssize_t n = PyList_GET_SIZE(self->keys);
    if (!PyLong_CheckExact(key) || (PyObject *)Py_TYPE(value) != self->ndarray || n >= self->rows)
        return -1;
    int overflow;
    long long k = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (k < 0 || overflow)  /* negative (an error to report), or past int64: the full checks decide */
        return -1;
    if (self->direct) {
        HangarNdarrayHead *h = (HangarNdarrayHead *)value;
        int ok = h->descr == self->dtype && h->nd == self->nd && h->data != NULL;
        for (Py_ssize_t i = 0; ok && i < self->nd; i++)
            ok = h->dimensions[i] == self->dims[i] && h->strides[i] == self->dims[32 + i];
        if (!ok)
            return -1;
        memcpy((char *)self->stack.buf + n * self->width, h->data, (size_t)self->width);
        if (PyList_Append(self->keys, key) < 0)
            return -2;
        return n + 1;
    }
    PyObject *dt = PyObject_GetAttr(value, str_dtype);
    if (dt == NULL)
        return -2;
    Py_DECREF(dt);  /* only its identity is compared; value keeps it alive */
    if (dt != self->dtype)
        return -1;
    PyObject *cap = PyObject_GetAttr(value, str_array_struct);
    if (cap == NULL)
        return -2;
    HangarArrayInterface *a = PyCapsule_CheckExact(cap) ? PyCapsule_GetPointer(cap, NULL) : NULL;
    if (a == NULL) {
        PyErr_Clear();
        Py_DECREF(cap);
        return -1;
    }
    int ok = a->two == 2 && a->nd == self->nd && a->data != NULL;
    for (Py_ssize_t i = 0; ok && i < self->nd; i++)
        ok = a->shape[i] == self->dims[i] && (a->strides == NULL || a->strides[i] == self->dims[32 + i]);
    if (ok)
        memcpy((char *)self->stack.buf + n * self->width, a->data, (size_t)self->width);
    Py_DECREF(cap);
    if (!ok)
        return -1;
    if (PyList_Append(self->keys, key) < 0)
        return -2;  /* the row written is past len(keys): unused */
    return n + 1;
}

static PyObject *rowhold_hold(RowHoldObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "hold(key, value) takes two arguments");
        return NULL;
    }
    Py_ssize_t n = rowhold_take(self, args[0], args[1]);
    return n == -2 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *rowhold_get_direct(RowHoldObject *self, void *closure)
{
    return PyBool_FromLong(self->direct);
}

static PyObject *rowhold_set_direct(RowHoldObject *self, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    if (on && !self->direct) {
        PyErr_SetString(PyExc_ValueError, "RowHold: numpy's object head was not confirmed at construction");
        return NULL;
    }
    self->direct = on;
    Py_RETURN_NONE;
}

static PyGetSetDef rowhold_getset[] = {
    {"direct", (getter)rowhold_get_direct, NULL, "True: values' layout read from numpy's object head", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef rowhold_methods[] = {
    {"set_direct", (PyCFunction)rowhold_set_direct, METH_O,
     "set_direct(on): read values' layout from numpy's object head (on, where confirmed) or __array_struct__"},
    {"hold", (PyCFunction)(void (*)(void))rowhold_hold, METH_FASTCALL,
     "hold(key, value) -> int: rows held after copying value into the next free row, or -1 (nothing done)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RowHoldType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hangar.plumbing._rowhash.RowHold",
    .tp_basicsize = sizeof(RowHoldObject),
    .tp_dealloc = (destructor)rowhold_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RowHold(stack, keys, ndarray, dtype, shape, strides): held rows of a writer loop (i14i)",
    .tp_methods = rowhold_methods,
    .tp_getset = rowhold_getset,
    .tp_new = rowhold_new,
};

static int rowhold_init_module(PyObject *m)
{
    str_array_struct = PyUnicode_InternFromString("__array_struct__");
    str_dtype = PyUnicode_InternFromString("dtype");
    if (str_array_struct == NULL || str_dtype == NULL || PyType_Ready(&RowHoldType) < 0)
        return -1;
    Py_INCREF(&RowHoldType);
    if (PyModule_AddObject(m, "RowHold", (PyObject *)&RowHoldType) < 0) {
        Py_DECREF(&RowHoldType);
        return -1;
    }
    return 0;
}
/* ---- end i14i ---- */

/* ---- i14l: the writer arrayset's C mapping slot (aset[k] = v) ---- */
/* WriterSlot: a base type of hangar's writer arrayset holding what its add reads on every call
 * as C fields (_session, _detached, _fast_hold: the armed RowHold, _fast_rows: the held bound),
 * and install_add_slot(cls), which points a subclass's mapping slot (mp_ass_subscript) at
 * writerslot_ass_subscript below. That slot does the common case of a writer loop's
 * aset[k] = v - a RowHold add while the checkout is open and the arrayset attached - with no
 * Python frame, and calls the class's own Python __setitem__ / __delitem__ for anything else
 * (their full checks and errors). The class keeps its Python __setitem__ (the spec's signature,
 * docstring and return value, and the path without the extension); CPython makes a class
 * defining __setitem__ use its generic slot (a method lookup and a Python call per item),
 * which install_add_slot replaces on that one class. A later assignment of __setitem__ or
 * __delitem__ to the class (or a subclass) puts CPython's generic slot back: still correct.
 * Measured (a loop of 60,000 aset[i] = data[i] of uint8 (28, 28), thread CPU, min of 7): ~430 ns
 * a sample through the Python __setitem__ and RowHold.hold, the loop alone (data[i]) ~110 ns. */
typedef struct {
    PyObject_HEAD
    PyObject *session;      /* _session: its ``closed`` must be False for the C add */
    RowHoldObject *hold;    /* _fast_hold: the armed held stack's add, or NULL */
    Py_ssize_t rows;        /* _fast_rows: the held stack's bound (flush_pending at it) */
    char detached;          /* _detached */
} WriterSlotObject;

static PyTypeObject WriterSlotType;
static PyObject *str_closed, *str_flush_pending, *str_setitem, *str_delitem;

static int writerslot_traverse(WriterSlotObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->session);
    Py_VISIT(self->hold);
    return 0;
}

static int writerslot_clear(WriterSlotObject *self)
{
    Py_CLEAR(self->session);
    Py_CLEAR(self->hold);
    return 0;
}

static void writerslot_dealloc(WriterSlotObject *self)
{
    PyObject_GC_UnTrack(self);
    writerslot_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* the C add: 1 taken (and the held samples stored when the bound is reached), 0 left to the
 * Python path (nothing changed), -1 with an exception set */
static int writerslot_add(WriterSlotObject *self, PyObject *key, PyObject *value)
{
    if (self->hold == NULL || self->detached || self->session == NULL)
        return 0;
    /* rC: the session and the hold held by this call, the hold read after ``closed``: reading
     * ``closed`` may run code (a property) that drops either (the hold read before it was used
     * freed or NULL: a segfault, found under -fsanitize=undefined) */
    PyObject *session = Py_NewRef(self->session);
    PyObject *closed = PyObject_GetAttr(session, str_closed);
    Py_DECREF(session);
    if (closed == NULL)
        return -1;
    Py_DECREF(closed);  /* only compared with False */
    if (closed != Py_False || self->hold == NULL || self->detached)
        return 0;
    RowHoldObject *hold = (RowHoldObject *)Py_NewRef((PyObject *)self->hold);
    Py_ssize_t n = rowhold_take(hold, key, value);
    Py_DECREF(hold);
    if (n < 0)
        return n == -1 ? 0 : -1;
    if (n >= self->rows) {
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, str_flush_pending);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 1;
}

static int writerslot_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    if (value != NULL) {
        int took = writerslot_add((WriterSlotObject *)op, key, value);
        if (took != 0)
            return took < 0 ? -1 : 0;
    }
    /* the class's Python method, looked up on the type as CPython's generic slot does */
    PyObject *fn = _PyType_Lookup(Py_TYPE(op), value != NULL ? str_setitem : str_delitem);
    if (fn == NULL) {
        PyErr_Format(PyExc_TypeError, "'%.200s' object does not support item %s", Py_TYPE(op)->tp_name,
                     value != NULL ? "assignment" : "deletion");
        return -1;
    }
    Py_INCREF(fn);
    PyObject *args[3] = {op, key, value}, *r;
    descrgetfunc get = Py_TYPE(fn)->tp_descr_get;
    if (PyFunction_Check(fn) || get == NULL) {
        r = PyFunction_Check(fn) ? PyObject_Vectorcall(fn, args, value != NULL ? 3 : 2, NULL)
                                 : PyObject_Vectorcall(fn, args + 1, value != NULL ? 2 : 1, NULL);
    } else {
        PyObject *bound = get(fn, op, (PyObject *)Py_TYPE(op));
        r = bound == NULL ? NULL : PyObject_Vectorcall(bound, args + 1, value != NULL ? 2 : 1, NULL);
        Py_XDECREF(bound);
    }
    Py_DECREF(fn);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *writerslot_add_held(WriterSlotObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_add_held(key, value) takes two arguments");
        return NULL;
    }
    int took = writerslot_add(self, args[0], args[1]);
    if (took < 0)
        return NULL;
    return PyBool_FromLong(took);
}

static PyObject *writerslot_get_hold(WriterSlotObject *self, void *closure)
{
    PyObject *r = self->hold != NULL ? (PyObject *)self->hold : Py_None;
    Py_INCREF(r);
    return r;
}

static int writerslot_set_hold(WriterSlotObject *self, PyObject *value, void *closure)
{
    if (value != NULL && value != Py_None && !PyObject_TypeCheck(value, &RowHoldType)) {
        PyErr_Format(PyExc_TypeError, "_fast_hold must be a RowHold or None, not %.200s", Py_TYPE(value)->tp_name);
        return -1;
    }
    RowHoldObject *old = self->hold;
    self->hold = value != NULL && value != Py_None ? (RowHoldObject *)value : NULL;
    Py_XINCREF(self->hold);
    Py_XDECREF(old);
    return 0;
}

static PyMemberDef writerslot_members[] = {
    {"_session", T_OBJECT_EX, offsetof(WriterSlotObject, session), 0, "the checkout's session"},
    {"_detached", T_BOOL, offsetof(WriterSlotObject, detached), 0, "True once removed from the checkout"},
    {"_fast_rows", T_PYSSIZET, offsetof(WriterSlotObject, rows), 0, "the held stack's bound"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef writerslot_getset[] = {
    {"_fast_hold", (getter)writerslot_get_hold, (setter)writerslot_set_hold,
     "the armed RowHold of the held stack (the C add), or None", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef writerslot_methods[] = {
    {"_add_held", (PyCFunction)(void (*)(void))writerslot_add_held, METH_FASTCALL,
     "_add_held(key, value) -> bool: the C add of aset[key] = value (True: taken), False: nothing done"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WriterSlotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hangar.plumbing._rowhash.WriterSlot",
    .tp_basicsize = sizeof(WriterSlotObject),
    .tp_dealloc = (destructor)writerslot_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "WriterSlot: base of the writer arrayset: the fields its C add reads (i14l)",
    .tp_traverse = (traverseproc)writerslot_traverse,
    .tp_clear = (inquiry)writerslot_clear,
    .tp_methods = writerslot_methods,
    .tp_members = writerslot_members,
    .tp_getset = writerslot_getset,
    .tp_new = PyType_GenericNew,
};

/* FastAdd(func): the writer arrayset's ``add`` (func: its Python method, add(self, data, name=None,
 * **kwargs)) as a method descriptor: x.add(data, name) with name a positional or keyword argument
 * runs writerslot_add(x, name, data) first and returns name when it was taken, else calls func with
 * the same arguments. Read from the class (ArraysetDataWriter.add) it is func itself (its
 * signature and docstring); bound without a call (getattr) it is func bound. A loop of
 * x.add(data[i], i) cost ~450 ns a sample through the Python method, ~310 ns x[i] = data[i]. */
typedef struct {
    PyObject_HEAD
    PyObject *func;
    vectorcallfunc vectorcall;
} FastAddObject;

static PyObject *str_name;

static int fastadd_traverse(FastAddObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->func);
    return 0;
}

static void fastadd_dealloc(FastAddObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->func);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *fastadd_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastAddObject *self = (FastAddObject *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf), nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *name = NULL;
    if (nargs == 3 && nkw == 0)
        name = args[2];
    else if (nargs == 2 && nkw == 1 && PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), str_name) == 0)
        name = args[2];
    if (name != NULL && PyObject_TypeCheck(args[0], &WriterSlotType)) {
        int took = writerslot_add((WriterSlotObject *)args[0], name, args[1]);
        if (took < 0)
            return NULL;
        if (took) {
            Py_INCREF(name);
            return name;
        }
    }
    return PyObject_Vectorcall(self->func, args, nargsf, kwnames);
}

static PyObject *fastadd_descr_get(PyObject *op, PyObject *obj, PyObject *type)
{
    FastAddObject *self = (FastAddObject *)op;
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self->func);
        return self->func;
    }
    return PyMethod_New(self->func, obj);
}

static PyObject *fastadd_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *func;
    if ((kwds != NULL && PyDict_GET_SIZE(kwds)) || !PyArg_ParseTuple(args, "O!", &PyFunction_Type, &func)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "FastAdd(func) takes one Python function");
        return NULL;
    }
    FastAddObject *self = (FastAddObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(func);
    self->func = func;
    self->vectorcall = fastadd_vectorcall;
    return (PyObject *)self;
}

static PyMemberDef fastadd_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(FastAddObject, func), READONLY, "the Python method"},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(FastAddObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FastAddType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hangar.plumbing._rowhash.FastAdd",
    .tp_basicsize = sizeof(FastAddObject),
    .tp_dealloc = (destructor)fastadd_dealloc,
    .tp_vectorcall_offset = offsetof(FastAddObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "FastAdd(func): the writer arrayset's add with WriterSlot's C add first (i14l)",
    .tp_traverse = (traverseproc)fastadd_traverse,
    .tp_members = fastadd_members,
    .tp_descr_get = fastadd_descr_get,
    .tp_new = fastadd_new,
};

static PyObject *install_add_slot(PyObject *mod, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &WriterSlotType)
        || !(((PyTypeObject *)cls)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        PyErr_SetString(PyExc_TypeError, "install_add_slot(cls): cls must be a Python subclass of WriterSlot");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *names[2] = {str_setitem, str_delitem};
    for (int i = 0; i < 2; i++) {  /* its own Python methods: the slot's fallback never calls back into it */
        PyObject *fn = PyDict_GetItemWithError(tp->tp_dict, names[i]);
        if (fn == NULL && PyErr_Occurred())
            return NULL;
        if (fn == NULL || !PyFunction_Check(fn)) {
            PyErr_Format(PyExc_TypeError, "install_add_slot(cls): cls must define %U as a Python function", names[i]);
            return NULL;
        }
    }
    if (tp->tp_as_mapping == NULL) {
        PyErr_SetString(PyExc_TypeError, "install_add_slot(cls): cls has no mapping methods");
        return NULL;
    }
    tp->tp_as_mapping->mp_ass_subscript = writerslot_ass_subscript;
    PyType_Modified(tp);
    Py_RETURN_TRUE;
}

static int writerslot_init_module(PyObject *m)
{
    str_closed = PyUnicode_InternFromString("closed");
    str_flush_pending = PyUnicode_InternFromString("flush_pending");
    str_setitem = PyUnicode_InternFromString("__setitem__");
    str_delitem = PyUnicode_InternFromString("__delitem__");
    str_name = PyUnicode_InternFromString("name");
    if (str_closed == NULL || str_flush_pending == NULL || str_setitem == NULL || str_delitem == NULL
        || str_name == NULL || PyType_Ready(&WriterSlotType) < 0 || PyType_Ready(&FastAddType) < 0)
        return -1;
    Py_INCREF(&WriterSlotType);
    if (PyModule_AddObject(m, "WriterSlot", (PyObject *)&WriterSlotType) < 0) {
        Py_DECREF(&WriterSlotType);
        return -1;
    }
    Py_INCREF(&FastAddType);
    if (PyModule_AddObject(m, "FastAdd", (PyObject *)&FastAddType) < 0) {
        Py_DECREF(&FastAddType);
        return -1;
    }
    return 0;
}
/* ---- end i14l ---- */

static PyMethodDef methods[] = {
    {"sha1_rows", sha1_rows, METH_VARARGS,
     "sha1_rows(buf, width, prefix, portable=False) -> bytes: sha1(prefix + row) of each width-byte row, "
     "20 bytes each (portable: without the CPU's SHA instructions)"},
    {"crc32_rows", crc32_rows, METH_VARARGS,
     "crc32_rows(buf, width) -> bytes: zlib.crc32 of each width-byte row, as native uint32"},
    {"int_names", int_names, METH_VARARGS,
     "int_names(keys, prefix) -> list[str]: prefix + the decimal digits of each non-negative int of keys"},
    {"stored_check_rows", stored_check_rows, METH_VARARGS,
     "stored_check_rows(buf, width) -> bytes: xxh3-64 (0 kept as 1) of each width-byte row, as native uint64"},
    {"adler32_rows", adler32_rows, METH_VARARGS,
     "adler32_rows(buf, width) -> bytes: zlib.adler32 of each width-byte row, as native uint32"},
    {"blob_rows", blob_rows, METH_VARARGS,
     "blob_rows(buf, width, head, prefix) -> (ids, entries, crcs): git ids, pack entries (prefix + row + "
     "adler32) and their crc32 of blobs, one per width-byte row"},
    {"tree_entry_rows", tree_entry_rows, METH_VARARGS,
     "tree_entry_rows(names, width, lens, ids, mode) -> bytes: mode + name + NUL + id per row, back to back"},
    {"b3_lanes", b3_lanes, METH_O,  /* i14i */
     "b3_lanes(sixteen) -> bool: blake3_rows with sixteen-lane AVX-512 passes where the CPU has them, or not"},
    {"blake3_rows", blake3_rows, METH_VARARGS,
     "blake3_rows(buf, width, suffix) -> bytes: blake3(row + suffix) of each width-byte row, 32 bytes each"},
    {"xxh3", xxh3, METH_VARARGS,
     "xxh3(buf, portable=False) -> int: XXH3-64 of buf (portable: without the AVX2/AVX-512 code)"},
    {"check_spans", check_spans, METH_VARARGS,
     "check_spans(buf, offsets, lengths, checks) -> int: position of the first span whose stored check "
     "(xxh3-64, 0 kept as 1) is not its expected one (0: not checked), -1 when all match"},
    {"pread_checked", pread_checked, METH_VARARGS,
     "pread_checked(fd, offset, out, check) -> int: pread into out and check its stored check; bytes read, "
     "or -1 when all were read and did not match"},
    {"pread_rows_checked", pread_rows_checked, METH_VARARGS,
     "pread_rows_checked(fd, offset, out, width, checks, piece) -> (nread, bad): pread rows in pieces, "
     "checking each piece's rows as it lands; bad: first mismatching row or -1"},
    {"int_keys", int_keys, METH_VARARGS,  /* i14r */
     "int_keys(keys, out) -> bool: a list/tuple of exact int64-range ints written into out (int64), or False"},
    {"gather_rows_checked", gather_rows_checked, METH_VARARGS,  /* i14r */
     "gather_rows_checked(src, offsets, out, width, checks) -> int: copy each row from src at its offset and "
     "check it; the first mismatching row, or -1"},
    {"check_rows_beside", check_rows_beside, METH_VARARGS,  /* i12r */
     "check_rows_beside(flat, width, which, checks, fn) -> (fn(), bad): call fn() while a helper thread checks "
     "rows against their stored checks, then check the rest; bad: a mismatching position or -1"},
    {"copy_checked", copy_checked, METH_VARARGS,  /* i12g */
     "copy_checked(src, out, check) -> bool: copy src into out and compare the stored check of the bytes "
     "written with check (0: not compared, True), in one pass"},
    {"copy_rows_checked", copy_rows_checked, METH_VARARGS,  /* i12g */
     "copy_rows_checked(src, out, width, checks) -> int: copy width-byte rows, each checked as it is copied; "
     "the first mismatching row, or -1"},
    {"xxh3_copy", xxh3_copy, METH_VARARGS,  /* i12g */
     "xxh3_copy(src, out, width=-1) -> int: copy src into out and return the XXH3-64 of the bytes written "
     "(width: -1 the build in use, 0 SSE2, 2 AVX2, 3 AVX-512)"},
    {"hex_rows", hex_rows, METH_VARARGS,
     "hex_rows(digests, prefix, tail) -> bytes: prefix + hex(digest) + tail for each 32-byte digest"},
    {"leaf_diff", leaf_diff, METH_VARARGS,
     "leaf_diff(a, b) -> [(name, (mode, id) or None, (mode, id) or None)] of the entries that differ "
     "between two git trees of blobs, or None when either holds a subtree or is malformed"},
    {"merge3", merge3, METH_VARARGS,
     "merge3(read, a, m, d, depth, strategy, cache=None, pack=None) -> (merged id or None, [(id, tree)], "
     "[(class, name)]) or None: 3-way merge of a fanned-out table by subtree ids; with pack (True, or a "
     "writable buffer to fill), the new trees as (ids, entries, starts, crcs, data, bounds): bytes, or "
     "(offset, nbytes) in pack (i14m)"},
    {"m3_checksum", m3_checksum, METH_VARARGS,
     "m3_checksum(buf, kind, portable=False) -> int: adler32 (kind 0) or crc32 (kind 1) of buf as merge3 "
     "computes them (portable: without the vector code) (i14m)"},
    {"diff2", diff2, METH_VARARGS,
     "diff2(read, a, b, depth) -> [(name, old id or None, new id or None)] or None: the entries that "
     "differ between two fanned-out tables, by subtree ids (i14m)"},
    {"object_spans", object_spans, METH_VARARGS,
     "object_spans(data, bounds, head, type) -> (ids, entries, starts, crcs): git ids, pack entries (and "
     "their offsets and crc32s) of the objects data[bounds[i]:bounds[i + 1]] of one type (i14a)"},
    {"align_rows", align_rows, METH_VARARGS,
     "align_rows(a, b, width) -> bytes: per width-byte row of a, the row of b matched in order (int64), "
     "-1 where skipped (i14a)"},
    /* ---- hard ---- */
    {"file_size", file_size, METH_O, "file_size(fd) -> int: st_size of the open file fd (fstat)"},
    {"bus_rearm", bus_rearm, METH_NOARGS,
     "bus_rearm() -> bool: re-install the SIGBUS guard's handler if another replaced it (True: it was gone)"},
    {"copy_checked_guarded", copy_checked_guarded, METH_VARARGS,
     "copy_checked_guarded(src, out, check) -> int: copy_checked surviving SIGBUS on src: 1 ok, 0 check "
     "mismatch, -1 a page of src could not be read"},
    /* ---- end hard ---- */
    /* ---- i12r ---- */
    {"copy_checked_at", copy_checked_at, METH_VARARGS,
     "copy_checked_at(src, offset, out, check) -> int: copy_checked_guarded(src[offset:offset + len(out)], out, "
     "check) without the slice (out: any C-contiguous array)"},
    /* ---- end i12r ---- */
    {"start_writeback", start_writeback, METH_VARARGS,  /* i14d */
     "start_writeback(fd, offset, length) -> bool: start writing a file range back to disk without waiting "
     "(sync_file_range WRITE); False where unsupported"},
    {"leaf_merge", leaf_merge, METH_VARARGS,  /* i14a, stop 14 */
     "leaf_merge(base, entries, deleted) -> bytes or None: a leaf tree's bytes with entries set and the "
     "sorted names of deleted removed (None: a subtree, an order or format the caller handles)"},
    /* ---- i14l ---- */
    {"install_add_slot", install_add_slot, METH_O,
     "install_add_slot(cls) -> True: cls's aset[k] = v through WriterSlot's C add, else its Python __setitem__"},
    /* ---- end i14l ---- */
    {"fsync_all", fsync_all, METH_O,  /* i14c */
     "fsync_all(fds) -> None: fsync every descriptor at once, a POSIX thread each but the first, without the "
     "GIL; OSError of the first that failed"},
    {"fan_entries", fan_entries, METH_VARARGS,  /* i14a, stop 14 */
     "fan_entries(names, ids, depth, mode, live) -> (order, fan, entries, starts) or None: names sorted by "
     "(fan-out leaf, name bytes), int64 positions, their leaf numbers, uint64, and the "
     "tree entries of the sorted names (those live) with their id rows, back to back, and int64 offsets"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rowhash", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rowhash(void)
{
    crc_init();
    const char *baseline = getenv("HANGAR_ROWHASH_BASELINE");  /* rC: see baseline_only */
    baseline_only = baseline != NULL && strcmp(baseline, "1") == 0;
    has_sha_ni = !baseline_only && cpu_has_sha_ni();
    has_ssse3 = !baseline_only && cpu_has_ssse3();  /* i14a, stop 14 */
    has_avx2 = !baseline_only && cpu_has_avx2();
    has_b3_avx512 = !baseline_only && cpu_has_avx512f();  /* i14i */
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (baseline_only)
        ;
    else if (hangar_xxh3_avx512_built && __builtin_cpu_supports("avx512f")) {
        xxh3_of = hangar_xxh3_avx512;
        xxh3_vector = 3;
    } else if (hangar_xxh3_avx2_built && __builtin_cpu_supports("avx2")) {
        xxh3_of = hangar_xxh3_avx2;
        xxh3_vector = 2;
    }
#endif
    copy_checked_init();  /* i12g */
    check_rows_beside_init();  /* i12r */
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "sha_ni", has_sha_ni) < 0 ||
                      PyModule_AddIntConstant(m, "xxh3_vector", xxh3_vector) < 0 ||
                      rowhold_init_module(m) < 0 ||  /* i14i */
                      writerslot_init_module(m) < 0)) {  /* i14l */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
