"""A received pack range is verified on its columns (issue 15, small samples at the speed of the wire).

``verify_range`` (the client's check of a ``ranges`` run) and ``codecs.decode_spans`` make the
checks ``verify_received`` makes, vectorised: these tests hand them what a hostile server could
send (wrong bytes, wrong lengths, sizes it cannot have, frames declaring other sizes) and
require the same refusals; ``plan_spans`` (the server's plan on columns) must cut runs exactly
as the per-sample plan did. In-process and cheap: no server.
"""

from __future__ import annotations

import numpy as np
import pytest

from hangar.errors import CorruptDataError
from hangar.remote import server
from hangar.store import codecs, sample_digest
from hangar.store.index import Location
from hangar.store.tensorstore import verify_range, verify_received

SHAPE = (28, 28)


def samples(n: int, codec: int, seed: int = 0) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray, bytes]:
    """``n`` MNIST-like samples as a received run: digests, codecs, rawlens, lengths, block."""
    rng = np.random.default_rng(seed)
    arrays = []
    for _ in range(n):
        a = np.zeros(SHAPE, dtype=np.uint8)
        r, c = rng.integers(2, 20, size=2)
        a[r:r + 6, c:c + 6] = rng.integers(1, 256, size=(6, 6), dtype=np.uint8)
        arrays.append(a)
    stored = [bytes(codecs.encode(codec, memoryview(a).cast("B"))) for a in arrays]
    return ([sample_digest(a) for a in arrays], np.full(n, codec, dtype=np.uint8),
            np.full(n, 784, dtype=np.uint64), np.array(list(map(len, stored)), dtype=np.uint64), b"".join(stored))


@pytest.mark.parametrize("codec", [codecs.RAW, codecs.LZ4, codecs.ZSTD])
def test_a_good_range_verifies_as_verify_received_does(codec):
    digests, codec_ids, rawlens, lengths, block = samples(50, codec)
    run = verify_range(digests, codec_ids, rawlens, lengths, memoryview(block), "|u1", SHAPE)
    starts = np.cumsum(lengths) - lengths
    payloads = [memoryview(block)[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
    ref = verify_received(digests, codec_ids.tolist(), rawlens.tolist(), lengths.tolist(), payloads, "|u1", SHAPE,
                          block=memoryview(block))
    assert run.digests == ref.digests and run.codecs == ref.codecs and run.lengths == ref.lengths
    assert [bytes(p) for p in run.payloads] == [bytes(p) for p in ref.payloads]
    assert bytes(run.block) == block  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", [codecs.RAW, codecs.LZ4])
def test_one_flipped_byte_is_refused_naming_its_sample(codec):
    digests, codec_ids, rawlens, lengths, block = samples(20, codec)
    bad = bytearray(block)
    at = int(lengths[:7].sum()) + int(lengths[7]) - 1  # the last byte of sample 7 (inside the frame)
    bad[at] ^= 0x01
    with pytest.raises(CorruptDataError, match=digests[7].hex()[:16]):
        verify_range(digests, codec_ids, rawlens, lengths, memoryview(bytes(bad)), "|u1", SHAPE)


def test_wrong_claims_are_refused_before_anything_is_decoded():
    digests, codec_ids, rawlens, lengths, block = samples(10, codecs.LZ4)
    view = memoryview(block)
    wrong_raw = rawlens.copy()
    wrong_raw[3] = 1 << 40  # a size its dtype and shape cannot make
    with pytest.raises(CorruptDataError, match=f"{digests[3].hex()[:16]}.*claims {1 << 40} raw bytes"):
        verify_range(digests, codec_ids, wrong_raw, lengths, view, "|u1", SHAPE)
    unknown = codec_ids.copy()
    unknown[4] = 9
    with pytest.raises(CorruptDataError, match=digests[4].hex()[:16]):
        verify_range(digests, unknown, rawlens, lengths, view, "|u1", SHAPE)
    longer = lengths.copy()
    longer[5] += 1  # the lengths no longer add up to the bytes received
    with pytest.raises(CorruptDataError, match="holds"):
        verify_range(digests, codec_ids, rawlens, longer, view, "|u1", SHAPE)
    with pytest.raises(CorruptDataError, match="names 10 samples"):
        verify_range(digests, codec_ids[:9], rawlens[:9], lengths[:9], view, "|u1", SHAPE)
    with pytest.raises(CorruptDataError, match="invalid dtype"):
        verify_range(digests, codec_ids, rawlens, lengths, view, "not-a-dtype", SHAPE)
    r_digests, r_codecs, r_raw, r_lengths, r_block = samples(3, codecs.RAW)
    short = r_lengths.copy()
    short[0] -= 1  # a raw sample must be stored at exactly its raw size
    with pytest.raises(CorruptDataError, match=r_digests[0].hex()[:16]):
        verify_range(r_digests, r_codecs, r_raw, short, memoryview(r_block[1:]), "|u1", SHAPE)


@pytest.mark.parametrize("codec", [codecs.LZ4, codecs.ZSTD])
def test_lengths_wrapping_past_2_64_are_refused_as_verify_received_refuses_them(codec):
    digests, codec_ids, rawlens, lengths, block = samples(10, codec)
    wrapped = lengths.copy()
    wrapped[0] += np.uint64((1 << 64) - len(block))  # uint64 sums still give len(block)
    wrapped[1] += np.uint64(len(block))
    ends = np.cumsum(wrapped).tolist()
    payloads = [memoryview(block)[e - n:e] for n, e in zip(wrapped.tolist(), ends)]
    with pytest.raises(CorruptDataError):
        verify_received(digests, codec_ids.tolist(), rawlens.tolist(), wrapped.tolist(), payloads, "|u1", SHAPE)
    with pytest.raises(CorruptDataError, match="holds"):
        verify_range(digests, codec_ids, rawlens, wrapped, memoryview(block), "|u1", SHAPE)


def test_a_frame_declaring_another_size_is_refused_before_it_is_decoded():
    digests, codec_ids, rawlens, lengths, block = samples(6, codecs.LZ4)
    bomb = bytearray(block)
    at = int(lengths[:2].sum())
    bomb[at:at + 4] = (1 << 30).to_bytes(4, "little")  # sample 2's numcodecs header claims 1 GiB
    with pytest.raises(CorruptDataError, match=f"declares {1 << 30} raw bytes"):
        verify_range(digests, codec_ids, rawlens, lengths, memoryview(bytes(bomb)), "|u1", SHAPE)
    garbage = bytearray(block)
    garbage[at + 4:at + int(lengths[2])] = b"\xff" * (int(lengths[2]) - 4)  # right header, no frame
    with pytest.raises(CorruptDataError):
        verify_range(digests, codec_ids, rawlens, lengths, memoryview(bytes(garbage)), "|u1", SHAPE)


def test_decode_spans_gives_what_decode_many_gives():
    for codec in (codecs.RAW, codecs.LZ4, codecs.ZSTD):
        _, codec_ids, _, lengths, block = samples(30, codec, seed=codec)
        starts = np.cumsum(lengths) - lengths
        spans = [memoryview(block)[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())]
        got = codecs.decode_spans(codec_ids, memoryview(block), starts, lengths, 784)
        assert [bytes(x) for x in got] == [bytes(x) for x in codecs.decode_many(codec_ids.tolist(), spans, 784)]
    assert codecs.decode_spans(np.zeros(0, np.uint8), memoryview(b""), np.zeros(0), np.zeros(0), 784) == []


def test_plan_spans_cuts_runs_as_the_per_sample_plan_did():
    rng = np.random.default_rng(3)
    for trial in range(12):
        n = int(rng.integers(1, 300))
        locs = []
        for p in range(int(rng.integers(1, 4))):
            off = 0
            for _ in range(n):
                size = int(rng.choice([100, 5000, 300 << 10, (1 << 20) + 7]))
                off += int(rng.choice([0, 0, 10, server._GAP, server._GAP + 1]))
                locs.append(Location(f"pack{p}", off, size, size, 0, 1))
                off += size
        rng.shuffle(locs)  # type: ignore[arg-type]
        want = [[(locs[k].pack, locs[k].offset) for k in run] for run in server._plan_runs(locs)]
        order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].offset))
        packs = sorted({loc.pack for loc in locs})
        col = np.array([packs.index(locs[i].pack) for i in order])
        offs = np.array([locs[i].offset for i in order], dtype=np.int64)
        lens = np.array([locs[i].length for i in order], dtype=np.int64)
        got = [[(packs[col[k]], int(offs[k])) for k in range(a, b)] for a, b in server.plan_spans(col, offs, lens)]
        assert got == want, trial
    assert server.plan_spans(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)) == []


def test_decode_pointers_gives_what_decode_pointer_gives_and_refuses_the_same_blobs():
    from hangar.errors import InvalidRecordError
    from hangar.records.pointer import SamplePointer, decode_pointer, decode_pointers, encode_pointer

    rng = np.random.default_rng(5)
    ptrs = [SamplePointer(rng.bytes(32), "|u1", SHAPE) for _ in range(40)]
    blobs = [encode_pointer(p) for p in ptrs]
    assert decode_pointers(blobs) == ptrs == [decode_pointer(b) for b in blobs]
    mixed = blobs[:3] + [encode_pointer(SamplePointer(rng.bytes(32), "<f4", (3,)))]  # another tail: one by one
    assert decode_pointers(mixed) == [decode_pointer(b) for b in mixed]
    upper = [b[:7] + b[7:71].upper() + b[71:] for b in blobs[:4]]  # what decode_pointer also reads
    assert decode_pointers(upper) == ptrs[:4]
    assert decode_pointers([]) == []
    for bad in (blobs[1][:10] + b" " + blobs[1][11:],  # whitespace inside the hex: not a pointer
                blobs[1][:20] + b"zz" + blobs[1][22:],  # not hex
                b"sha256:" + blobs[1][7:]):
        with pytest.raises(InvalidRecordError):
            decode_pointer(bad)
        with pytest.raises(InvalidRecordError):
            decode_pointers(blobs[:5] + [bad] + blobs[5:9])


class _HostileRanges:
    """A real HTTP server on 127.0.0.1 answering ``ranges`` with the bytes a test gives it."""

    def __init__(self, answer: bytes) -> None:
        import http.server
        import json
        import threading

        from hangar.remote import protocol

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the client refused the answer and hung up: what it should do
                    self.close_connection = True

            def do_GET(self) -> None:  # ping
                self._send(json.dumps({"hangar": "x", "capabilities": ["ranges"]}).encode())

            def do_POST(self) -> None:  # ranges
                self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == protocol.RANGES
                self._send(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("damage", ["flipped byte", "table disagrees with header", "more bytes than expected",
                                    "another raw size", "lengths wrapping past 2**64"])
def test_fetch_data_refuses_a_hostile_ranges_answer_and_keeps_nothing(tmp_path, damage):
    from hangar.records.pointer import SamplePointer
    from hangar.remote import client as remote_client
    from hangar.remote import protocol
    from hangar.store import TensorStore
    from hangar.store.packs import LocalPackStorage

    digests, codec_ids, rawlens, lengths, block = samples(30, codecs.LZ4)
    body = bytearray(block)
    lens, raws = lengths.tolist(), rawlens.tolist()
    nbytes = len(body)
    if damage == "flipped byte":
        body[int(lengths[:4].sum()) + int(lengths[4]) - 1] ^= 0x01
    elif damage == "table disagrees with header":
        nbytes -= 1
    elif damage == "more bytes than expected":  # a sample claiming far more than its codec can make
        lens[0] += 1 << 30
        nbytes += 1 << 30
    elif damage == "lengths wrapping past 2**64":
        # the true bytes, but sample 0 claims 2**64 more than the run's size less (its own),
        # sample 1 the run's size more: the uint64 sums still add up to the bytes sent and the
        # spans cut with int64 starts are the true ones, so every digest matched while sample
        # 0 was recorded with a length of ~2**64 (and a check over the whole run)
        lens[0] += (1 << 64) - nbytes
        lens[1] += nbytes
    else:
        raws[0] *= 2
    answer = (protocol.run_header(len(digests), nbytes)
              + protocol.run_table(digests, lens, raws, codec_ids.tolist()) + bytes(body))
    server = _HostileRanges(answer)
    store = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    pointers = [SamplePointer(d, "|u1", SHAPE) for d in digests]
    try:
        with remote_client.DataClient(server.address) as dc:
            with pytest.raises((CorruptDataError, ConnectionError)) as err:
                remote_client.download_into(store, dc, pointers)
    finally:
        server.close()
    if damage == "flipped byte":
        assert err.type is CorruptDataError and digests[4].hex() in str(err.value)
    else:
        assert issubclass(err.type, ConnectionError)
    fresh = TensorStore(LocalPackStorage(str(tmp_path / "data")))
    assert fresh.locations(digests) == [None] * len(digests)  # nothing unverified became visible
    store.close()
    fresh.close()


def test_a_run_naming_a_digest_twice_is_refused_at_once():
    # a full run whose last entry repeats the one before it: finding the bad digest with named.count()
    # per entry took ~70 s of client CPU (65,536 x 65,536 comparisons), holding the GIL
    import time

    from hangar.remote import client as remote_client
    from hangar.remote import protocol

    n = protocol.MAX_RUN_SAMPLES
    digests = [i.to_bytes(32, "big") for i in range(1, n + 1)]
    named = digests[:-1] + digests[-2:-1]
    answer = protocol.run_header(n, n) + protocol.run_table(named, [1] * n, [1] * n, [0] * n) + b"\x00" * n
    server = _HostileRanges(answer)
    try:
        with remote_client.DataClient(server.address) as dc:
            t0 = time.perf_counter()
            with pytest.raises(ConnectionError, match="sent twice"):
                list(dc.ranges(digests, dict.fromkeys(digests, 1)))
            assert time.perf_counter() - t0 < 10
    finally:
        server.close()
