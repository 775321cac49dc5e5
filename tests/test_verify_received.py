"""tensorstore.verify_received: the one verification of sample bytes received from a remote
(server transfers, the bucket fetch, dask workers reading a bucket): stored-bytes checksum,
bounded decode into the caller's buffers, blake3 digest; ``CorruptDataError`` naming the sample."""

from __future__ import annotations

import numpy as np
import pytest

from hangar.errors import CorruptDataError
from hangar.store import codecs
from hangar.store.digest import byte_view, digest_of_parts
from hangar.store.packs import stored_check
from hangar.store.tensorstore import verify_received

SHAPE = (4, 8)


def _samples(n: int = 3):
    rng = np.random.default_rng(0)
    arrs = [rng.integers(0, 9, SHAPE, dtype=np.uint8) for _ in range(n)]  # compressible: zstd pays
    digests = [digest_of_parts(byte_view(a), "|u1", SHAPE) for a in arrs]
    stored = [codecs.encode(codecs.ZSTD, a.tobytes()) if i == 1 else a.tobytes() for i, a in enumerate(arrs)]
    codec_ids = [codecs.ZSTD if i == 1 else codecs.RAW for i in range(n)]
    return arrs, digests, stored, codec_ids


def _verify(digests, stored, codec_ids, checks, rows):
    return verify_received(digests, codec_ids, [32] * len(stored), [len(s) for s in stored], stored, "|u1", SHAPE,
                           checks=checks, into=[byte_view(r) for r in rows])


def test_received_samples_are_checked_and_decoded_into_the_callers_rows():
    arrs, digests, stored, codec_ids = _samples()
    out = np.zeros((3, *SHAPE), np.uint8)
    _verify(digests, stored, codec_ids, [stored_check(s) for s in stored], list(out))
    np.testing.assert_array_equal(out, np.stack(arrs))


def test_each_failed_check_names_the_sample_and_keeps_its_type():
    arrs, digests, stored, codec_ids = _samples()
    checks = [stored_check(s) for s in stored]
    out = np.zeros((3, *SHAPE), np.uint8)
    flipped = list(stored)
    flipped[2] = bytes([stored[2][0] ^ 1]) + stored[2][1:]
    with pytest.raises(CorruptDataError, match=f"{digests[2].hex()[:16]}.*stored-bytes checksum"):
        _verify(digests, flipped, codec_ids, checks, list(out))
    with pytest.raises(CorruptDataError, match=f"{digests[1].hex()[:16]}.*does not match its digest"):
        _verify([digests[1], *digests[1:]], stored, codec_ids, checks, list(out))
    bomb = list(stored)
    bomb[1] = codecs.encode(codecs.ZSTD, bytes(64))  # declares 64 raw bytes, the rows hold 32
    with pytest.raises(CorruptDataError, match=f"{digests[1].hex()[:16]}.*declares 64 raw bytes"):
        _verify(digests, bomb, codec_ids, [stored_check(s) for s in bomb], list(out))
    with pytest.raises(CorruptDataError, match="claims 32 raw bytes"):
        _verify(digests, [stored[0][:-1], *stored[1:]], codec_ids, None, list(out))
