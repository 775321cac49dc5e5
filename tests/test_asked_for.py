"""``client.AskedFor``: a ranges answer's run tables checked on columns against what was asked for.

Every digest a run names must be one asked for, not received before, not named twice, and claim
the raw size its record gives; otherwise ``ProtocolError`` naming it. Digests sharing their first
8 bytes (which the column search keys on) are checked exactly too.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from hangar.errors import ProtocolError
from hangar.remote import protocol
from hangar.remote.client import AskedFor


def _table(digests: list[bytes], rawlens: list[int]) -> np.ndarray:
    n = len(digests)
    return np.frombuffer(protocol.run_table(digests, [1] * n, rawlens, [0] * n), dtype=protocol.RUN_ENTRY)


def _digests(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


@pytest.fixture(params=["columns", "shared prefixes"])
def asked_digests(request) -> list[bytes]:
    ds = _digests(50)
    if request.param == "shared prefixes":  # two digests alike in their first 8 bytes: the exact path
        ds[7] = ds[3][:8] + os.urandom(24)
    return ds


def test_runs_naming_what_was_asked_for_are_taken_with_their_sizes(asked_digests):
    sizes = {d: 10 + i for i, d in enumerate(asked_digests)}
    asked = AskedFor(asked_digests, sizes)
    first, second = asked_digests[30:], asked_digests[:30][::-1]
    got = asked.take(_table(first, [sizes[d] for d in first]))
    assert got.tolist() == [sizes[d] for d in first]
    asked.take(_table(second, [sizes[d] for d in second]))
    assert asked.received == 50


def test_one_size_for_every_sample(asked_digests):
    asked = AskedFor(asked_digests, 784)
    assert asked.take(_table(asked_digests[:5], [784] * 5)).tolist() == [784] * 5
    with pytest.raises(ProtocolError, match=f"{asked_digests[6].hex()[:16]}.*claims 785 raw bytes"):
        asked.take(_table(asked_digests[5:8], [784, 785, 784]))


def test_a_digest_not_asked_for_is_refused_by_name(asked_digests):
    stranger = asked_digests[3][:8] + b"\0" * 24  # shares a prefix with one asked for
    asked = AskedFor(asked_digests, 4)
    with pytest.raises(ProtocolError, match=f"{stranger.hex()[:16]}.*not asked for"):
        asked.take(_table([asked_digests[0], stranger], [4, 4]))


def test_a_digest_named_twice_in_a_run_or_across_runs_is_refused(asked_digests):
    asked = AskedFor(asked_digests, 4)
    with pytest.raises(ProtocolError, match="sent twice"):
        asked.take(_table([asked_digests[1], asked_digests[2], asked_digests[1]], [4, 4, 4]))
    asked = AskedFor(asked_digests, 4)
    asked.take(_table([asked_digests[7]], [4]))
    with pytest.raises(ProtocolError, match=f"{asked_digests[7].hex()[:16]}.*sent twice"):
        asked.take(_table([asked_digests[9], asked_digests[7]], [4, 4]))


def test_a_wrong_raw_size_is_refused_by_name(asked_digests):
    sizes = dict.fromkeys(asked_digests, 64)
    asked = AskedFor(asked_digests, sizes)
    with pytest.raises(ProtocolError, match=f"{asked_digests[4].hex()[:16]}.*claims 65 raw bytes; its record says 64"):
        asked.take(_table(asked_digests[3:6], [64, 65, 64]))
