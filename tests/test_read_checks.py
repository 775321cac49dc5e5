"""The stored-checksum checks of reads (issue 12 point 8): the C functions of ``_rowhash``
(xxh3, check_spans, pread_checked) against the xxhash package and their pure-Python path, and
reads through either path catching a byte flipped on disk, also after the pack was opened."""

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

# XXH3's code paths change at 0-3, 4-8, 9-16, 17-128, 129-240 and > 240 bytes (stripes of 64,
# blocks of 1,024 with the default secret), so every length up to two blocks and a few beyond
LENGTHS = list(range(0, 2100)) + [4095, 4096, 4097, 10_000, 65_536 + 7, 150_528, 262_144 + 3]
EDGES = [1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1024, 1025]

needs_ext = pytest.mark.skipif(not rowhash.available, reason="the _rowhash extension is not built")




@needs_ext
@pytest.mark.parametrize("portable", [False, True])
def test_c_xxh3_matches_the_xxhash_package_on_every_edge_length_and_alignment(portable):
    from hangar.plumbing import _rowhash

    data = np.random.default_rng(12).integers(0, 256, max(LENGTHS) + 8, dtype=np.uint8).tobytes()
    for n in LENGTHS:
        for start in (0, 1, 7):  # unaligned starts: samples sit at any offset of a read range
            piece = data[start:start + n]
            assert _rowhash.xxh3(piece, portable) == xxhash.xxh3_64_intdigest(piece), (n, start)


def _spans(lengths: list[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    buf = np.random.default_rng(seed).integers(0, 256, sum(lengths) + 5, dtype=np.uint8)
    offs = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) + 5
    lens = np.array(lengths, dtype=np.int64)
    checks = np.array([stored_check(buf[o:o + n]) for o, n in zip(offs, lens)], dtype=np.uint64)
    return buf, offs, lens, checks


def test_check_spans_finds_a_byte_flipped_anywhere_in_any_span(path):
    buf, offs, lens, checks = _spans(EDGES, 1)
    assert rowhash.check_spans(buf, offs, lens, checks) == -1
    for k, (o, n) in enumerate(zip(offs.tolist(), lens.tolist())):
        for at in range(o, o + n):
            buf[at] ^= 0x01
            assert rowhash.check_spans(buf, offs, lens, checks) == k, (n, at - o)
            buf[at] ^= 0x01
    assert rowhash.check_spans(buf, offs, lens, checks) == -1


def test_check_spans_reports_the_first_mismatch_and_skips_spans_without_a_check(path):
    buf, offs, lens, checks = _spans([100, 300, 50, 2000], 2)
    buf[offs[2]] ^= 0xFF
    buf[offs[3] + 1999] ^= 0xFF
    assert rowhash.check_spans(buf, offs, lens, checks) == 2
    checks[2] = 0  # none recorded (a format-1 pack): not checked
    assert rowhash.check_spans(buf, offs, lens, checks) == 3
    checks[3] = 0
    assert rowhash.check_spans(buf, offs, lens, checks) == -1
    assert rowhash.check_spans(buf, offs[:0], lens[:0], checks[:0]) == -1


def test_check_rows_checks_the_rows_named(path):
    flat = np.random.default_rng(3).integers(0, 256, (50, 784), dtype=np.uint8)
    checks = np.array([stored_check(r) for r in flat], dtype=np.uint64)
    which = np.array([3, 10, 11, 49])
    assert rowhash.check_rows(flat, which, checks[which]) == -1
    flat[11, 783] ^= 0x80
    assert rowhash.check_rows(flat, which, checks[which]) == 2
    assert rowhash.check_rows(flat, np.array([3, 10, 49]), checks[[3, 10, 49]]) == -1  # row 11 not asked


@pytest.mark.parametrize("offs, lens, n", [([0, 90], [10, 11], 2), ([-1], [5], 1), ([0], [-1], 1),
                                           ([0, 1], [5], 2)])
def test_check_spans_refuses_spans_outside_the_buffer(path, offs, lens, n):
    with pytest.raises(InvalidArgumentError, match="check_spans"):
        rowhash.check_spans(bytes(100), np.array(offs), np.array(lens), np.ones(n, dtype=np.uint64))


def test_pread_checked_reads_checks_and_reports_short_reads(path, tmp_path):
    data = np.random.default_rng(4).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    f = tmp_path / "pack"
    f.write_bytes(data)
    fd = os.open(f, os.O_RDONLY)
    try:
        out = bytearray(150_000)
        assert rowhash.pread_checked(fd, 1000, memoryview(out), stored_check(data[1000:151_000])) == 150_000
        assert bytes(out) == data[1000:151_000]
        assert rowhash.pread_checked(fd, 1001, memoryview(out), stored_check(data[1000:151_000])) == -1
        assert rowhash.pread_checked(fd, 1001, memoryview(out), 0) == 150_000  # none recorded: unchecked
        assert rowhash.pread_checked(fd, 100_000, memoryview(out), 1) == 100_000  # short: not checked
    finally:
        os.close(fd)


def test_reads_catch_a_byte_flipped_on_disk_after_the_pack_was_opened_and_read(path, repo):
    """A flip after the reader opened the pack (its fd open, the samples read once, their table
    built) is caught on the next read by every read path: the check hashes the bytes each read
    returns, it does not trust an earlier pass."""
    small = np.random.default_rng(5).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    big = np.random.default_rng(6).integers(0, 256, (40, 64, 1024), dtype=np.uint8)  # pipelined ranges
    co = repo.checkout(write=True)
    co.arraysets.init_arrayset("small", prototype=small[0])
    co.arraysets.init_arrayset("big", prototype=big[0])
    co["small", list(range(300))] = small
    co["big", list(range(40))] = big
    co.commit("data")
    co.close()
    with Repository(repo.path).checkout() as rco:
        for name, data, key in (("small", small, 123), ("big", big, 17)):
            aset = rco.arraysets[name]
            keys = list(range(len(data)))
            np.testing.assert_array_equal(np.stack(aset.get_batch(keys)), data)
            np.testing.assert_array_equal(np.stack(list(aset.values())), data)
            np.testing.assert_array_equal(aset[key], data[key])
            flip_stored_byte(repo, data[key], mask=0x04)
            with pytest.raises(CorruptDataError, match="do not match their checksum"):
                aset[key]
            with pytest.raises(CorruptDataError, match="do not match their checksum"):
                aset.get_batch(keys)
            with pytest.raises(CorruptDataError, match="do not match their checksum"):
                list(aset.values())
            ok = [k for k in keys if k != key]
            np.testing.assert_array_equal(np.stack(aset.get_batch(ok)), data[ok])


@pytest.mark.parametrize("piece", [1, 700, 784 * 3, 1 << 20])  # under a row, unaligned, whole rows, all
def test_pread_rows_checked_checks_every_row_in_pieces_of_any_size(path, tmp_path, piece):
    rows = np.random.default_rng(8).integers(0, 256, (40, 784), dtype=np.uint8)
    f = tmp_path / "pack"
    f.write_bytes(b"head" + rows.tobytes())
    checks = np.array([stored_check(r) for r in rows], dtype=np.uint64)
    fd = os.open(f, os.O_RDWR)
    try:
        out = np.zeros_like(rows)
        assert rowhash.pread_rows_checked(fd, 4, out, checks, piece) == (rows.nbytes, -1)
        np.testing.assert_array_equal(out, rows)
        for at in (0, 784 * 17 + 400, rows.nbytes - 1):  # first byte, a middle row, the last byte
            os.pwrite(fd, bytes([rows.reshape(-1)[at] ^ 0x40]), 4 + at)
            assert rowhash.pread_rows_checked(fd, 4, out, checks, piece)[1] == at // 784
            masked = checks.copy()
            masked[at // 784] = 0  # none recorded: not checked
            assert rowhash.pread_rows_checked(fd, 4, out, masked, piece)[1] == -1
            os.pwrite(fd, bytes([rows.reshape(-1)[at]]), 4 + at)
        unchecked = np.zeros_like(checks)  # the shifted rows would not match: a short read alone
        assert rowhash.pread_rows_checked(fd, 4 + 784 * 10, out, unchecked, piece) == (rows.nbytes - 784 * 10, -1)
    finally:
        os.close(fd)
    with pytest.raises(InvalidArgumentError, match="one check per row"):
        rowhash.pread_rows_checked(0, 0, out, checks[:3], piece)
