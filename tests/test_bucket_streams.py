"""Streamed bucket reads (issue 15): ``ObjectPackStorage.stream_ranges`` reads the ranges a
fetch_data wants with few streamed GETs (one per run of close ranges of a pack) and hands each
range over, with its place in the request, as soon as its bytes are in; what it may never do is hand over bytes other
than the ones asked for. Against the session's SeaweedFS."""

from __future__ import annotations

import os

import pytest

from hangar.errors import CorruptDataError, PackNotFoundError
from hangar.store import objectstore
from hangar.store.objectstore import ObjectPackStorage
from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures


def _bucket_with(s3_env, objects: dict[str, bytes]):  # noqa: F811
    loc = s3_env.new_location()
    bucket, _, prefix = loc[len("s3://"):].partition("/")
    client = s3_env.client()
    for pack, data in objects.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/packs/{pack}/c/0", Body=data)
    return ObjectPackStorage(loc, s3_env.endpoint)


def test_streamed_ranges_are_the_bytes_asked_for_in_order(s3_env, monkeypatch):  # noqa: F811
    """Ranges of two packs, close ones (one GET), far ones (a GET each: gap), one cut by the span
    limit, an empty one, several chunks per range: every range's bytes, each once."""
    monkeypatch.setattr(objectstore, "STREAM_SPAN", 3 << 20)
    monkeypatch.setattr(objectstore, "_STREAM_CHUNK", 256 << 10)
    a, b = os.urandom(5 << 20), os.urandom(1 << 20)
    st = _bucket_with(s3_env, {"pa": a, "pb": b})
    requests = [("pa", 0, 1000), ("pa", 1000, 0), ("pa", 1500, (1 << 20) + 7), ("pa", 2 << 20, 300_000),
                ("pa", (4 << 20) + 5, 100), ("pa", (4 << 20) + 105, (1 << 20) - 105),
                ("pb", 10, 20), ("pb", 30, (1 << 20) - 30)]
    pairs = [(i, bytes(v)) for i, v in st.stream_ranges(requests, gap=64 << 10)]
    got = dict(pairs)
    assert len(pairs) == len(got)
    data = {"pa": a, "pb": b}
    assert got == {i: data[p][o:o + n] for i, (p, o, n) in enumerate(requests)}


def test_a_range_past_the_end_of_the_object_is_refused(s3_env):  # noqa: F811
    """The server answers a range that ends past the object with what there is: a short read,
    refused (never handed over shorter)."""
    st_bytes = os.urandom(4096)
    st = _bucket_with(s3_env, {"pa": st_bytes})
    it = st.stream_ranges([("pa", 0, 100), ("pa", 4000, 200)], gap=1 << 20)
    i, first = next(it)
    assert (i, bytes(first)) == (0, st_bytes[:100])  # the first range is whole
    with pytest.raises(CorruptDataError, match="short read"):
        next(it)


def test_a_missing_object_is_pack_not_found(s3_env):  # noqa: F811
    st = _bucket_with(s3_env, {"pa": os.urandom(100)})
    with pytest.raises(PackNotFoundError, match="packs/gone/c/0"):
        list(st.stream_ranges([("pa", 0, 10), ("gone", 0, 10)], gap=1 << 20))


def test_an_abandoned_stream_stops_and_the_next_one_reads(s3_env, monkeypatch):  # noqa: F811
    """Closing the generator midway cancels what still streams; the transfer loop serves the next."""
    monkeypatch.setattr(objectstore, "STREAM_SPAN", 1 << 20)
    data = os.urandom(8 << 20)
    st = _bucket_with(s3_env, {"pa": data})
    it = st.stream_ranges([("pa", i << 20, 1 << 20) for i in range(8)], gap=0)
    i, got = next(it)
    assert bytes(got) == data[i << 20:(i + 1) << 20]
    it.close()
    i, got = next(iter(st.stream_ranges([("pa", 5, 10)], gap=0)))
    assert (i, bytes(got)) == (0, data[5:15])


def test_pieces_end_only_at_cuts_cover_each_range_once_and_are_mostly_not_copied(s3_env, monkeypatch):  # noqa: F811
    """``stream_pieces``: samples of 100 KiB and one of 700 KiB cut into 256 KiB chunks, a gap,
    an empty range, a range without cuts: each range's pieces, in order, are its bytes; every
    piece begins and ends at a cut or the range's ends; pieces inside one chunk are views of it
    (not copies), so most bytes are never copied."""
    import numpy as np

    monkeypatch.setattr(objectstore, "_STREAM_CHUNK", 256 << 10)
    data = os.urandom(4 << 20)
    st = _bucket_with(s3_env, {"pa": data})
    sizes = [100 << 10] * 12 + [700 << 10] + [100 << 10] * 6
    starts = [0]
    for z in sizes[:-1]:
        starts.append(starts[-1] + z + (5000 if len(starts) == 7 else 0))  # one gap inside the first range
    first_end = starts[13] + sizes[13]
    cuts = sorted({x for s, z in zip(starts[:14], sizes[:14]) for x in (s, s + z)} - {0, first_end})
    requests = [("pa", 0, first_end, cuts), ("pa", first_end, 0, []),
                ("pa", starts[14], starts[-1] + sizes[-1] - starts[14],
                 [s for s in starts[15:]]), ("pa", (3 << 20) + 17, 300_001, [])]
    pieces: dict[int, list[tuple[int, bytes, bool]]] = {}
    copied = total = 0
    for i, at, view, last in st.stream_pieces(requests, gap=64 << 10):
        pieces.setdefault(i, []).append((at, bytes(view), last))
        total += len(view)
        copied += len(view) if isinstance(view.obj, np.ndarray) else 0
    for i, (_, off, n, cs) in enumerate(requests):
        got = pieces[i]
        assert b"".join(b for _, b, _ in got) == data[off:off + n]
        assert [last for _, _, last in got] == [False] * (len(got) - 1) + [True]
        ats = [at for at, _, _ in got]
        assert ats == sorted(ats) and ats[0] == 0
        assert all(off + at in cs for at in ats[1:])  # a piece begins only at a cut
    assert len(pieces[0]) > 3  # handed over in pieces, not whole
    # views of the received chunks, not a copy of every byte (main copied all); how much is copied
    # depends on where the chunks happen to end (each end inside a sample copies that sample: over
    # half of the bytes once under load, with 256 KiB chunks), so no share is asserted
    # chunks of >= 256 KiB end at most 8 + 2 + 1 times inside the three ranges: at worst the 700 KiB
    # sample, ten 100 KiB ones and the 300 KB one are copied (~2.0 of 2.86 MB); main copied all
    assert copied < total - (600 << 10)


def test_samples_overlapping_in_a_bucket_pack_are_fetched_verified(s3_env, tmp_path, monkeypatch):  # noqa: F811
    """A bucket pack whose index lets one sample lie inside another (every byte still checks):
    fetch_samples cut the range at both samples' ends, handed the inner sample's piece the outer
    one too, and check_spans refused it with a ValueError ("span ... outside the buffer"). Found in
    review; a range whose samples overlap is now handed over whole, as before pieces."""
    import numpy as np

    from hangar import Repository
    from hangar.remote import objectdata
    from hangar.store.packs import INDEX_DTYPE, encode_index
    from tests.repo_parts import hangar_dir_of, store_of

    monkeypatch.setattr(objectstore, "_STREAM_CHUNK", 64 << 10)
    outer = np.frombuffer(os.urandom(512 << 10), np.uint8)
    os.makedirs(tmp_path / "src")
    src = Repository(tmp_path / "src", exists=False)
    src.init("a", "a@example.com")
    co = src.checkout(write=True)
    co.arraysets.init_arrayset("a", shape=outer.shape, dtype=np.uint8)["outer"] = outer
    co.arraysets.init_arrayset("b", shape=(200 << 10,), dtype=np.uint8)["inner"] = outer[100 << 10:300 << 10]
    co.commit("two")
    co.close()
    store = store_of(src)
    digests = sorted(store.digests(), key=lambda d: -store.locations([d])[0].length)  # outer first
    locs = store.locations(digests)
    assert [loc.codec for loc in locs] == [0, 0]  # stored as they are: the inner bytes lie inside the outer
    recs = np.zeros(2, dtype=INDEX_DTYPE)
    recs["digest"] = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
    recs["offset"], recs["length"] = [0, 100 << 10], [loc.length for loc in locs]
    recs["rawlen"], recs["codec"], recs["check"] = [loc.rawlen for loc in locs], 0, [loc.check for loc in locs]
    storage = ObjectPackStorage(s3_env.new_location(), s3_env.endpoint)
    storage.put_packs([(outer.tobytes(), encode_index(recs))])
    index = objectdata.BucketIndex(storage, None)
    index.refresh()
    os.makedirs(tmp_path / "dst")
    dst = Repository(tmp_path / "dst", exists=False)
    dst.init("a", "a@example.com")
    items = [(digests[0], "uint8", outer.shape), (digests[1], "uint8", (200 << 10,))]
    assert objectdata.fetch_samples(hangar_dir_of(dst), storage, index, items, "origin")
    got = store_of(dst)
    assert [loc is not None for loc in got.locations(digests)] == [True, True]
