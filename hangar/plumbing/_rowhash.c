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
            block_fn fn = has_sha_ni ? sha1_block_ni : sha1_block;
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < n; i++) {
                const unsigned char *row = p + i * width;
                unsigned char *e = eo + i * ew;
                memcpy(e, prefix.buf, (size_t)prefix.len);
                memcpy(e + prefix.len, row, (size_t)width);
                uint32_t a = adler32_of(row, width);
                unsigned char *t = e + prefix.len + width;
                t[0] = (unsigned char)(a >> 24); t[1] = (unsigned char)(a >> 16);
                t[2] = (unsigned char)(a >> 8); t[3] = (unsigned char)a;
                sha1_prefixed(fn, head.buf, head.len, row, width, io + 20 * i);
                uint32_t c = crc32_of(e, ew);
                memcpy(co + i, &c, 4);
            }
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
            for (k = 0; k < m; k++) {
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

static PyObject *crc32_rows(PyObject *self, PyObject *args) { return sums_rows(args, crc32_of); }
static PyObject *adler32_rows(PyObject *self, PyObject *args) { return sums_rows(args, adler32_of); }

static PyMethodDef methods[] = {
    {"sha1_rows", sha1_rows, METH_VARARGS,
     "sha1_rows(buf, width, prefix, portable=False) -> bytes: sha1(prefix + row) of each width-byte row, "
     "20 bytes each (portable: without the CPU's SHA instructions)"},
    {"crc32_rows", crc32_rows, METH_VARARGS,
     "crc32_rows(buf, width) -> bytes: zlib.crc32 of each width-byte row, as native uint32"},
    {"adler32_rows", adler32_rows, METH_VARARGS,
     "adler32_rows(buf, width) -> bytes: zlib.adler32 of each width-byte row, as native uint32"},
    {"blob_rows", blob_rows, METH_VARARGS,
     "blob_rows(buf, width, head, prefix) -> (ids, entries, crcs): git ids, pack entries (prefix + row + "
     "adler32) and their crc32 of blobs, one per width-byte row"},
    {"tree_entry_rows", tree_entry_rows, METH_VARARGS,
     "tree_entry_rows(names, width, lens, ids, mode) -> bytes: mode + name + NUL + id per row, back to back"},
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
    {"hex_rows", hex_rows, METH_VARARGS,
     "hex_rows(digests, prefix, tail) -> bytes: prefix + hex(digest) + tail for each 32-byte digest"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rowhash", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rowhash(void)
{
    crc_init();
    has_sha_ni = cpu_has_sha_ni();
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (hangar_xxh3_avx512_built && __builtin_cpu_supports("avx512f")) {
        xxh3_of = hangar_xxh3_avx512;
        xxh3_vector = 3;
    } else if (hangar_xxh3_avx2_built && __builtin_cpu_supports("avx2")) {
        xxh3_of = hangar_xxh3_avx2;
        xxh3_vector = 2;
    }
#endif
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "sha_ni", has_sha_ni) < 0 ||
                      PyModule_AddIntConstant(m, "xxh3_vector", xxh3_vector) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
