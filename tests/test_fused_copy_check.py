"""The fused copy + check of single reads (issue 12 point 8, large samples): ``_rowhash.xxh3_copy``
and ``rowhash.copy_checked`` copy a sample and compute its xxh3-64 in one pass. The result must be
the one-shot xxh3 of the bytes written (the stored format) at every length, vector width and
alignment; a byte flipped at any stripe or block boundary must be caught, on both the C and the
pure-Python path, also through ``aset[key]`` and in a forked child."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xxhash

from hangar import Repository
from hangar.errors import CorruptDataError, InvalidArgumentError
from hangar.plumbing import rowhash
from hangar.store.packs import stored_check
from tests.repo_parts import c_and_python, flip_stored_byte  # noqa: F401  (c_and_python: the "path" fixture)

needs_ext = pytest.mark.skipif(not rowhash.available, reason="the _rowhash extension is not built")

# XXH3 takes other paths up to 240 bytes; beyond, stripes of 64 bytes in blocks of 1,024, then the
# last stripe (overlapping) with its own secret: every length over two blocks, then lengths around
# later block and stripe boundaries and a (224, 224, 3) image
_EDGES = (-65, -64, -63, -1, 0, 1, 63, 64, 65)
LENGTHS = sorted(set(range(0, 2200)) | {1024 * k + d for k in (3, 4, 7, 16, 147) for d in _EDGES}
                 | {150_528, 262_144 + 3})


def _widths() -> list[int]:
    """The vector widths of the copy loop this machine can run (0: SSE2, 2: AVX2, 3: AVX-512)."""
    from hangar.plumbing import _rowhash

    ok = []
    for w in (0, 2, 3):
        try:
            _rowhash.xxh3_copy(b"", bytearray(), w)
        except ValueError:
            continue
        ok.append(w)
    return ok




@needs_ext
def test_xxh3_copy_equals_one_shot_xxh3_at_every_length_width_and_alignment():
    from hangar.plumbing import _rowhash

    widths = _widths()
    assert 0 in widths
    data = np.random.default_rng(1).integers(0, 256, max(LENGTHS) + 8, dtype=np.uint8)
    scratch = np.zeros(max(LENGTHS) + 256, dtype=np.uint8)
    base = -scratch.ctypes.data % 64  # scratch[base:] starts on a 64-byte boundary
    # destinations 64- and 32-byte aligned (wide stores), 16-byte aligned (np.empty's), 4-byte
    # aligned (AVX-512: aligned stores joined from two stripes), odd: all of them around block
    # edges, one per length (in turn) elsewhere; no byte either side of the destination written
    dst_ats = (0, 32, 16, 48, 8, 1, 4, 60)
    for n in LENGTHS:
        edge = n > 2048 or n % 1024 in (0, 1, 63, 64, 65, 1023)
        for src_at in (0, 1, 7) if edge else (n % 3,):
            src = data[src_at:src_at + n]
            want = xxhash.xxh3_64_intdigest(src.tobytes())
            for dst_at in dst_ats if edge else (dst_ats[n % len(dst_ats)],):
                for w in [-1, *widths]:
                    at = base + 64 + dst_at
                    scratch[at - 64:at + n + 64] = 0xA5  # a store is 64 bytes at most: 64 either side
                    out = scratch[at:at + n]
                    assert _rowhash.xxh3_copy(src, out, w) == want, (n, src_at, dst_at, w)
                    assert np.array_equal(out, src), (n, src_at, dst_at, w)
                    assert (scratch[at - 64:at] == 0xA5).all() and (scratch[at + n:at + n + 64] == 0xA5).all(), \
                        (n, src_at, dst_at, w)


@needs_ext
def test_xxh3_copy_refuses_other_lengths_overlap_and_unknown_widths():
    from hangar.plumbing import _rowhash

    buf = bytearray(1000)
    with pytest.raises(ValueError, match="same length"):
        _rowhash.xxh3_copy(bytes(10), bytearray(11))
    with pytest.raises(ValueError, match="overlap"):
        _rowhash.xxh3_copy(memoryview(buf)[0:500], memoryview(buf)[400:900])
    with pytest.raises(ValueError, match="vector width 5"):
        _rowhash.xxh3_copy(bytes(10), bytearray(10), 5)


def _boundaries(n: int) -> list[int]:
    """Byte positions where a flip could slip past a wrong loop: both ends, each side of every
    stripe edge of the first blocks, each side of every block edge, the last stripe and the tail."""
    at = {0, 1, n - 1, n - 64, n - 65, n // 2}
    at |= {e + d for e in range(64, min(n, 2048), 64) for d in (-1, 0)}
    at |= {e + d for e in range(1024, n, 1024) for d in (-1, 0, 1)}
    return sorted(a for a in at if 0 <= a < n)


@pytest.mark.parametrize("n", [0, 1, 17, 240, 241, 1024, 1025, 4096 + 65, 150_528])
def test_copy_checked_catches_a_flip_at_every_boundary_and_copies_exactly(path, n):
    src = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    check = stored_check(src)
    out = np.empty(n, dtype=np.uint8)
    assert rowhash.copy_checked(src, out, check) is True
    assert np.array_equal(out, src)
    for at in _boundaries(n):
        src[at] ^= 0x20
        out[:] = 0
        assert rowhash.copy_checked(src, out, check) is False, at
        assert np.array_equal(out, src), at  # the damaged bytes were copied: the caller raises
        src[at] ^= 0x20
    out[:] = 0
    assert rowhash.copy_checked(src, out, 0) is True  # none recorded: copied, not compared
    assert np.array_equal(out, src)


def test_copy_checked_refuses_a_destination_of_another_length(path):
    with pytest.raises(InvalidArgumentError, match="same length"):
        rowhash.copy_checked(bytes(100), bytearray(99), 1)


def _big_repo(repo: Repository) -> tuple[np.ndarray, str]:
    data = np.random.default_rng(7).integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("img", prototype=data[0])
    co["img", list(range(len(data)))] = data
    co.commit("images")
    co.close()
    return data, "img"


def test_single_reads_of_a_large_sample_catch_a_flip_at_block_boundaries(path, repo):
    """``aset[key]`` copies a sample out of the mapped pack and checks it in one pass: a byte
    flipped on disk after the reader mapped the pack is caught at each block boundary, the first
    and the last byte, and the sample reads again once the byte is restored."""
    data, name = _big_repo(repo)
    n = data[0].nbytes
    with Repository(repo.path).checkout() as co:
        aset = co.arraysets[name]
        np.testing.assert_array_equal(aset[2], data[2])  # the pack is mapped now
        for at in (0, 1023, 1024, 64 * 1024, n - 65, n - 64, n - 1):
            flip_stored_byte(repo, data[2], at, 0x01)
            with pytest.raises(CorruptDataError, match="do not match their checksum"):
                aset[2]
            np.testing.assert_array_equal(aset[3], data[3])  # its neighbour is untouched
            flip_stored_byte(repo, data[2], at, 0x01)  # flipped back
            np.testing.assert_array_equal(aset[2], data[2])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_single_reads_check_in_a_forked_child(repo):
    """A child forked after the parent read (its pack mapped, the extension loaded) reads and
    checks the same way: the fused copy keeps no state across calls, nothing to redo after fork."""
    data, name = _big_repo(repo)
    with Repository(repo.path).checkout() as co:
        aset = co.arraysets[name]
        np.testing.assert_array_equal(aset[1], data[1])
        flip_stored_byte(repo, data[4], 5000, 0x08)
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only when the good sample reads and the damaged one raises
            code = 1
            try:
                if np.array_equal(aset[1], data[1]):
                    try:
                        aset[4]
                        code = 2
                    except CorruptDataError:
                        code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(CorruptDataError):
            aset[4]


@pytest.mark.parametrize("width", [100, 784, 1024, 150_528 // 8])
def test_copy_rows_checked_reports_the_first_damaged_row_and_skips_rows_without_a_check(path, width):
    src = np.random.default_rng(width).integers(0, 256, (9, width), dtype=np.uint8)
    checks = np.array([stored_check(r) for r in src], dtype=np.uint64)
    out = np.zeros_like(src)
    assert rowhash.copy_rows_checked(src, out, checks) == -1
    np.testing.assert_array_equal(out, src)
    for at in (0, width - 1, width, 3 * width + width // 2, src.nbytes - 1):  # first/last byte of rows
        flat = src.reshape(-1)
        flat[at] ^= 0x02
        assert rowhash.copy_rows_checked(src, out, checks) == at // width, at
        masked = checks.copy()
        masked[at // width] = 0  # none recorded: copied, not checked
        out[:] = 0
        assert rowhash.copy_rows_checked(src, out, masked) == -1, at
        np.testing.assert_array_equal(out, src)
        flat[at] ^= 0x02
    with pytest.raises(InvalidArgumentError, match="one check per row"):
        rowhash.copy_rows_checked(src, out, checks[:3])
    with pytest.raises(InvalidArgumentError, match="one check per row"):
        rowhash.copy_rows_checked(src[:, :-1].copy(), out, checks)


def test_sequential_reads_from_the_mapped_pack_catch_a_flip_in_any_row(path, repo):
    """values() and a sequential get_batch copy rows out of the mapped pack, each checked as it
    is copied: a byte flipped after the pack was mapped is caught in the first, a middle and the
    last sample, at a block edge and at the last byte."""
    data, name = _big_repo(repo)
    n = data[0].nbytes
    with Repository(repo.path).checkout() as co:
        aset = co.arraysets[name]
        np.testing.assert_array_equal(np.stack(list(aset.values())), data)
        for key, at in ((0, 0), (3, 2048), (5, n - 1)):
            flip_stored_byte(repo, data[key], at, 0x40)
            with pytest.raises(CorruptDataError, match="do not match their checksum"):
                list(aset.values())
            with pytest.raises(CorruptDataError, match="do not match their checksum"):
                aset.get_batch(list(range(len(data))))
            flip_stored_byte(repo, data[key], at, 0x40)
            np.testing.assert_array_equal(np.stack(list(aset.values())), data)


# single reads copy from the pack's mapping at an offset into the caller's array of any dtype
# (rowhash.copy_checked_at: no slice, no byte view)
@pytest.mark.parametrize("dtype,shape", [("uint8", (28, 28)), ("float32", (7, 3)), ("<M8[s]", (5,)),
                                         ("complex128", (224, 3)), ("uint8", (0,))])
def test_copy_checked_at_copies_and_checks_the_range_into_any_array(path, dtype, shape):
    out = np.empty(shape, dtype=dtype)
    src = np.random.default_rng(3).integers(0, 256, out.nbytes * 3 + 5, dtype=np.uint8)
    for offset in (0, 5, out.nbytes + 1, len(src) - out.nbytes):
        want = src[offset:offset + out.nbytes].copy()
        check = stored_check(want)
        assert rowhash.copy_checked_at(src, offset, out, check) == 1
        assert out.reshape(-1).view(np.uint8).tobytes() == want.tobytes()
        assert rowhash.copy_checked_at(src, offset, out, 0) == 1  # none recorded: copied only
        if out.nbytes:
            assert rowhash.copy_checked_at(src, offset, out, check ^ 1) == 0
    for offset in (-1, len(src) - out.nbytes + 1):
        with pytest.raises(InvalidArgumentError, match="outside"):
            rowhash.copy_checked_at(src, offset, out, 0)


def test_copy_checked_at_refuses_a_destination_not_c_contiguous(path):
    """rC: without the extension a Fortran-ordered ``out`` was reshaped into a C-ordered copy,
    which was filled instead: 1 (copied and checked) came back with ``out`` untouched. Both
    paths refuse it (the C path cannot take its bytes as one buffer)."""
    src = np.arange(40, dtype=np.uint8)
    for out in (np.zeros((4, 5), np.uint8, order="F"), np.zeros((4, 10), np.uint8)[:, ::2]):
        with pytest.raises(TypeError):
            rowhash.copy_checked_at(src, 3, out, 0)
        assert not out.any()
    out = np.zeros((4, 5), np.uint8)
    assert rowhash.copy_checked_at(src, 3, out, stored_check(src[3:23])) == 1
    assert out.tobytes() == src[3:23].tobytes()


def test_copy_checked_at_refuses_offsets_past_int64_as_outside(path):
    """rC: an offset past the C path's Py_ssize_t (``2**63`` and up, or below ``-2**63``) was an
    OverflowError there, InvalidArgumentError on the Python path: both say it is outside."""
    src, out = np.arange(40, dtype=np.uint8), np.zeros(4, np.uint8)
    for offset in (2**63, 2**64 + 3, -2**63 - 1, 2**63 - 1):
        with pytest.raises(InvalidArgumentError, match="outside"):
            rowhash.copy_checked_at(src, offset, out, 0)
    assert not out.any()
