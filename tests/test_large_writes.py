"""Large samples written at disk speed (issue 14, i14d): early write-back of a pack as it is
written (``plumbing.durable.start_writeback``) and the stacked path for large rows
(``TensorStore._put_large_rows``), which must store exactly what the per-row path stores."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xxhash

from hangar.errors import InvalidArgumentError
from hangar.plumbing import durable, rowhash
from hangar.store import codecs
from hangar.store.digest import digests_of_parts
from hangar.store.packs import LocalPackStorage, parse_index
from hangar.store.tensorstore import TensorStore

needs_ext = pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")


@needs_ext
@linux_only
def test_start_writeback_starts_on_a_file_and_is_a_no_op_where_it_does_not_apply(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 100_000)
        assert durable.start_writeback(fd, 0, 100_000) is True
        assert durable.start_writeback(fd, 0, 0) is False  # nothing to do (0 would mean "to the end")
        with pytest.raises(InvalidArgumentError, match="offset -1"):
            durable.start_writeback(fd, -1, 10)
        with pytest.raises(InvalidArgumentError, match="-10 bytes"):
            durable.start_writeback(fd, 10, -10)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"x" * 100_000
    r, w = os.pipe()
    try:
        assert durable.start_writeback(w, 0, 10) is False  # ESPIPE: does not apply
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(OSError):  # a closed descriptor: EBADF, not hidden
        durable.start_writeback(fd, 0, 10)


def test_start_writeback_without_the_extension_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setattr(rowhash, "available", False)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"y" * 4096)
        assert durable.start_writeback(fd, 0, 4096) is False
    finally:
        os.close(fd)


def _records(storage: LocalPackStorage) -> np.ndarray:
    (pack,) = storage.list_packs()
    return parse_index(storage.read_index(pack), pack)


@pytest.mark.slow
def test_a_pack_written_without_early_writeback_falls_back_to_the_background_fdatasync(tmp_path, monkeypatch):
    monkeypatch.setattr(rowhash, "available", False)  # start_writeback unavailable: False
    storage = LocalPackStorage(str(tmp_path / "data"))
    writer = storage.open_writer("feedface")
    block = np.random.default_rng(0).integers(0, 256, 70 << 20, dtype=np.uint8)
    writer.append(memoryview(block))
    assert writer._syncer is not None  # the fdatasync thread took over
    writer.finish(b"", len(block))
    with open(tmp_path / "data" / "packs" / "feedface" / "c" / "0", "rb") as f:
        assert f.read() == block.tobytes()


@needs_ext
@linux_only
def test_an_early_writeback_error_fails_the_pack_instead_of_publishing_it(tmp_path):
    """A write-back call that failed (here for real: EBADF on a closed descriptor) is kept by the
    writer's write-back thread and raised by finish, which then never writes the pack's index (the
    commit point); abort removes the partial pack."""
    from hangar.store.packs import _BackgroundWriteback

    storage = LocalPackStorage(str(tmp_path / "data"))
    writer = storage.open_writer("deadbeef")
    writer.append(b"x" * 1024)
    bad = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o644)
    os.close(bad)
    writer._writeback = _BackgroundWriteback(bad, 0)
    writer._writeback.request(1024)
    writer._writeback.thread.join(timeout=60)  # it ends after its failed call (no descriptor opened meanwhile)
    assert isinstance(writer._writeback.error, OSError)
    with pytest.raises(OSError):
        writer.finish(b"", 1024)
    assert "deadbeef" not in storage.list_packs()
    assert not os.path.exists(tmp_path / "data" / "packs" / "deadbeef" / "index")
    writer.abort()


@needs_ext
@linux_only
def test_a_large_pack_starts_writeback_in_a_thread_and_stops_it_at_finish(tmp_path):
    storage = LocalPackStorage(str(tmp_path / "data"))
    writer = storage.open_writer("c0ffee")
    block = np.random.default_rng(4).integers(0, 256, 4 << 20, dtype=np.uint8)
    for _ in range(6):  # 24 MiB in 4 MiB appends: the first range in this thread, the rest in the other
        writer.append(memoryview(block))
    thread = writer._writeback.thread
    assert thread.is_alive() and writer._syncer is None
    writer.finish(b"", 6 * len(block))
    assert not thread.is_alive()
    with open(tmp_path / "data" / "packs" / "c0ffee" / "c" / "0", "rb") as f:
        assert f.read() == block.tobytes() * 6


@needs_ext
@linux_only
def test_early_writeback_past_64_mib_starts_no_fdatasync_thread_beside_it(tmp_path):
    """The background fdatasync is the fallback where early write-back does not apply; where it does,
    the appends between two write-back ranges (less than 8 MiB since the last) must not start the
    fdatasync thread too once 64 MiB are written (found in review: after 68 MiB of 4 MiB appends both
    threads ran, and a failed fdatasync left the write-back thread waiting forever: never closed)."""
    storage = LocalPackStorage(str(tmp_path / "data"))
    writer = storage.open_writer("0ddba11")
    block = np.random.default_rng(5).integers(0, 256, 4 << 20, dtype=np.uint8)
    for _ in range(18):  # 72 MiB in 4 MiB appends
        writer.append(memoryview(block))
    assert writer._writeback is not None and writer._syncer is None
    thread = writer._writeback.thread
    writer.finish(b"", 18 * len(block))
    assert not thread.is_alive()


def _stores(tmp_path, name):
    return TensorStore(LocalPackStorage(str(tmp_path / name)))


def _same_as_per_row(tmp_path, stack: np.ndarray, backend: str = "auto", before: np.ndarray | None = None) -> None:
    """put_stack of ``stack`` (the large-row path) and put_rows of its rows (the per-row path) give
    the same digests, the same index records and the same bytes read back."""
    dtype, shape = stack.dtype.str, stack.shape[1:]
    flat = memoryview(stack).cast("B")
    width = len(flat) // len(stack)
    got = {}
    for name in ("stacked", "per-row"):
        store = _stores(tmp_path, name)
        if before is not None:  # samples stored before: deduplicated against
            store.put_rows([memoryview(r).cast("B") for r in before], dtype, shape, codecs.CodecChooser(backend))
            store.flush()
        chooser = codecs.CodecChooser(backend)
        if name == "stacked":
            digests = store.put_stack(flat, len(stack), dtype, shape, chooser)
        else:
            digests = store.put_rows([flat[i * width:(i + 1) * width] for i in range(len(stack))], dtype, shape,
                                     chooser)
        assert digests == digests_of_parts([flat[i * width:(i + 1) * width] for i in range(len(stack))], dtype, shape)
        store.flush()
        packs = store.storage.list_packs()
        recs = np.concatenate([parse_index(store.storage.read_index(p), p) for p in sorted(packs)])
        recs = np.sort(recs, order=["offset", "length"]) if len(packs) == 1 else recs
        for i, d in enumerate(digests):
            assert np.array_equal(store.read(d, stack.dtype, shape), stack[i])
        got[name] = (digests, recs)
        store.close()
    assert got["stacked"][0] == got["per-row"][0]
    a, b = got["stacked"][1], got["per-row"][1]
    for field in ("digest", "length", "rawlen", "codec", "check"):
        assert np.array_equal(np.sort(a[field], axis=0), np.sort(b[field], axis=0)), field
    if before is None:  # one pack: every sample at its own offset
        assert len(set(a["offset"].tolist())) == len(a)


@needs_ext
def test_large_rows_stacked_store_what_the_per_row_path_stores(tmp_path):
    stack = np.random.default_rng(1).random((40, 512, 256), dtype=np.float32)  # 40 x 512 KiB: 3 chunks
    _same_as_per_row(tmp_path, stack, backend="raw")
    store = TensorStore(LocalPackStorage(str(tmp_path / "stacked")))
    recs = _records(store.storage)
    flat = memoryview(stack).cast("B")
    w = 512 << 10
    by_digest = {bytes(r["digest"]): r for r in recs}
    for i, d in enumerate(digests_of_parts([flat[i * w:(i + 1) * w] for i in range(40)], stack.dtype.str,
                                           stack.shape[1:])):
        r = by_digest[d]
        assert (int(r["offset"]), int(r["length"]), int(r["check"])) == (i * w, w, xxhash.xxh3_64_intdigest(stack[i]))


@needs_ext
def test_large_rows_stacked_with_repeats_compressible_rows_and_rows_stored_already(tmp_path):
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 256, (48, 384, 1024), dtype=np.uint8)  # 384 KiB rows: 42 to a chunk
    stack[5] = stack[3]  # a repeat within the first chunk
    stack[45] = stack[0]  # a repeat across chunks
    _same_as_per_row(tmp_path / "a", stack, before=stack[[7, 44]])  # two stored before
    zeros = np.zeros((48, 384, 1024), dtype=np.uint8)
    zeros += np.arange(48, dtype=np.uint8)[:, None, None]  # distinct, compressible: auto picks LZ4
    _same_as_per_row(tmp_path / "b", zeros)
    lz4 = _records(LocalPackStorage(str(tmp_path / "b" / "stacked")))
    assert (lz4["codec"] == codecs.LZ4).all() and (lz4["length"] < lz4["rawlen"]).all()


@pytest.mark.slow
@needs_ext
@linux_only
@pytest.mark.skipif(not os.path.exists("/usr/bin/strace"), reason="needs strace")
def test_a_large_pack_is_written_back_early_and_still_fsynced_before_its_index_appears(tmp_path):
    """The order of the system calls shows it (a crash test cannot: the page cache survives a killed
    process): write-back of the pack is started while it is written, covering it in order, and the
    pack is still fsynced before its index is renamed into place, then its directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    trace = tmp_path / "trace"
    code = textwrap.dedent(f"""
        import numpy as np
        from hangar import Repository
        r = Repository({str(repo)!r}, exists=False)
        r.init("t", "t@example.com")
        co = r.checkout(write=True)
        data = np.random.default_rng(3).integers(0, 256, (48, 1024, 1024), dtype=np.uint8)
        co.arraysets.init_arrayset("x", shape=data.shape[1:], dtype=data.dtype)
        co["x", list(range(48))] = data
        co.commit("large")
        co.close()
        """)
    out = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(trace), "-e",
                          "trace=sync_file_range,fsync,fdatasync,rename,renameat,renameat2", sys.executable, "-c",
                          code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = trace.read_text().splitlines()
    started = re.compile(r"sync_file_range\(\d+<[^>]*\.partial>, (\d+), (\d+), SYNC_FILE_RANGE_WRITE\) = 0")
    ranges = [(int(m.group(1)), int(m.group(2))) for ln in lines if (m := started.search(ln))]
    assert len(ranges) >= 2, lines
    assert ranges[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(ranges, ranges[1:]))  # in order, no gaps
    # the data pack's (the records pack's file starts write-back too, as the commit builds it: i14c)
    last_range = max(i for i, ln in enumerate(lines) if started.search(ln))
    data_synced = [i for i, ln in enumerate(lines) if re.match(r"\d+\s+f(data)?sync\(\d+<[^>]*\.partial>", ln)]
    index_at = [i for i, ln in enumerate(lines) if "rename" in ln and re.search(r'packs/[0-9a-f]+/index"', ln)]
    assert data_synced and index_at and last_range < data_synced[-1] < index_at[0], lines


@needs_ext
def test_large_rows_stacked_reach_the_pack_in_4_mib_pieces_not_a_write_per_row(tmp_path):
    """W2r-like rows (150,528 bytes: they straddle the pieces) are handed to the pack writer in writes
    of 4 MiB from the caller's array, not one per row (a pwrite per row took ~1.8x the CPU of 4 MiB
    pieces, scripts/bench_disk.py), and still stored exactly as the per-row path stores them."""
    stack = np.random.default_rng(4).integers(0, 256, (120, 224, 224, 3), dtype=np.uint8)  # 18 MB: 111 + 9 rows
    store = _stores(tmp_path, "spied")
    sizes: list[int] = []
    open_writer = store.storage.open_writer

    def spied(pack_id):  # the real writer, its appends' sizes seen on the way
        writer = open_writer(pack_id)
        append = writer.append

        def seen(data):
            sizes.append(len(data))
            return append(data)
        writer.append = seen
        return writer

    store.storage.open_writer = spied
    flat = memoryview(stack).cast("B")
    digests = store.put_stack(flat, len(stack), stack.dtype.str, stack.shape[1:], codecs.CodecChooser("auto"))
    store.flush()
    assert sum(sizes) == stack.nbytes
    first = 111 * stack[0].nbytes  # the first chunk's rows (16,708,608 bytes): three 4 MiB pieces and the rest
    assert sizes == [4 << 20] * 3 + [first - 3 * (4 << 20), 9 * stack[0].nbytes], sizes
    for i in (0, 27, 28, 110, 111, 119):  # rows across piece and chunk boundaries
        assert np.array_equal(store.read(digests[i], stack.dtype, stack.shape[1:]), stack[i])
    store.close()
    _same_as_per_row(tmp_path / "same", stack)
