"""The C extension's functions of issues 12 and 14 give what their pure-Python fallbacks give.

Each wrapper in ``hangar.plumbing.rowhash`` (and ``pack.object_block``, ``keys.encode_keys``)
is called on the same random and edge inputs with the extension in use and with
``rowhash.available`` off; results, exceptions and what is written into ``out`` must agree.
"""

from __future__ import annotations

import hashlib
import random
import zlib
from typing import Any, Callable

import numpy as np
import pytest

from hangar.plumbing import pack, rowhash, trees
from hangar.records import keys as record_keys

needs_ext = pytest.mark.skipif(not rowhash.available, reason="hangar.plumbing._rowhash is not built")


def _both(monkeypatch: pytest.MonkeyPatch, f: Callable[..., Any], *args: Any) -> tuple[object, object]:
    """``f(*args)`` in C and in Python: each a result, or the exception's type."""
    got = []
    for c in (True, False):
        monkeypatch.setattr(rowhash, "available", c)
        try:
            got.append(f(*args))
        except Exception as e:  # the type is compared
            got.append(type(e))
    monkeypatch.setattr(rowhash, "available", True)
    return got[0], got[1]


def _into(monkeypatch: pytest.MonkeyPatch, f: Callable[..., Any], out_at: int, shape: tuple[int, int],
          *args: Any) -> tuple[list[object], list[np.ndarray]]:
    """``f`` in C and in Python, each writing into a fresh zeroed array put at ``args[out_at]``."""
    got, outs = [], []
    for c in (True, False):
        monkeypatch.setattr(rowhash, "available", c)
        out = np.zeros(shape, dtype=np.uint8)
        call = list(args)
        call.insert(out_at, out)
        try:
            got.append(f(*call))
        except Exception as e:  # the type is compared
            got.append(type(e))
        outs.append(out)
    monkeypatch.setattr(rowhash, "available", True)
    return got, outs


def _same(x: object, y: object) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and np.array_equal(x, y)
    return x == y


@needs_ext
@pytest.mark.parametrize("seed", range(3))
def test_row_functions_agree_with_their_fallbacks(monkeypatch, seed) -> None:
    rng = random.Random(seed)
    pool = [0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, True, 1.0, "1", np.int64(3)]
    for _ in range(60):
        # align_rows: b often a subsequence of a (a stacked add's flushed rows), else random
        w, n, m = rng.randrange(1, 4), rng.randrange(0, 10), rng.randrange(0, 10)
        a = np.array([rng.randrange(2) for _ in range(n * w)], dtype=np.uint8).reshape(n, w)
        b = np.array([rng.randrange(2) for _ in range(m * w)], dtype=np.uint8).reshape(m, w)
        if n and rng.random() < 0.5:
            b = a[sorted(rng.sample(range(n), rng.randrange(n + 1)))]
        x, y = _both(monkeypatch, rowhash.align_rows, a, b)
        assert _same(x, y), (a.tolist(), b.tolist(), x, y)
        # stored_check_rows, widths that do and do not divide the buffer
        buf = rng.randbytes(rng.randrange(0, 200))
        x, y = _both(monkeypatch, rowhash.stored_check_rows, buf, rng.randrange(-1, 30))
        assert _same(x, y)
        # int_keys: None (per-key path) for anything but plain ints within int64
        ks: Any = [rng.choice(pool) if rng.random() < 0.2 else rng.randrange(-9, 10**6)
              for _ in range(rng.randrange(6))]
        x, y = _both(monkeypatch, rowhash.int_keys, ks if rng.random() < 0.5 else tuple(ks))
        assert _same(x, y), (ks, x, y)
        # encode_keys (int_names in C)
        ks = [rng.choice(pool[:8]) if rng.random() < 0.3 else rng.randrange(10**6) for _ in range(rng.randrange(6))]
        x, y = _both(monkeypatch, record_keys.encode_keys, ks)
        assert x == y, (ks, x, y)
        # gather_rows_checked: offsets in and out of bounds, checks right, wrong and absent
        src = np.frombuffer(rng.randbytes(rng.randrange(1, 150)), dtype=np.uint8)
        w, n = rng.randrange(1, 20), rng.randrange(0, 5)
        offs = np.array([rng.randrange(-2, len(src) + 2) for _ in range(n)], dtype=np.int64)
        checks = np.array([rowhash.stored_check(src[o:o + w]) if o >= 0 and rng.random() < 0.8 else rng.randrange(2)
                           for o in offs.tolist()], dtype=np.uint64)
        got, outs = _into(monkeypatch, rowhash.gather_rows_checked, 2, (n, w), src, offs, checks)
        assert got[0] == got[1]
        if got[0] == -1:
            assert np.array_equal(outs[0], outs[1])
        # copy_rows_checked and copy_checked around the fused loop's lengths (240 B, 1 KiB blocks)
        w, n = rng.choice([1, 64, 240, 241, 1024, 1025, 4096]), rng.randrange(0, 4)
        s = np.frombuffer(rng.randbytes(w * n), dtype=np.uint8)
        checks = np.array([rowhash.stored_check(s[i * w:(i + 1) * w]) if rng.random() < 0.8 else rng.randrange(3)
                           for i in range(n)], dtype=np.uint64)
        got, outs = _into(monkeypatch, rowhash.copy_rows_checked, 1, (n, w), s, checks)
        assert got[0] == got[1]
        if got[0] == -1:
            assert np.array_equal(outs[0], outs[1]) and outs[0].tobytes() == s.tobytes()
        one = rng.randbytes(rng.choice([0, 1, 240, 241, 4095, 4096, 5000]))
        check = rowhash.stored_check(one) if rng.random() < 0.7 else rng.randrange(3)
        x, y = _both(monkeypatch, rowhash.copy_checked, one, bytearray(len(one)), check)
        assert x == y


@needs_ext
def test_object_block_agrees_with_its_fallback(monkeypatch) -> None:
    rng = random.Random(4)
    for size in (0, 1, 300, 0xFFFF, 0x10000, 140_000):  # stored blocks of at most 0xFFFF bytes
        data = rng.randbytes(size)
        bounds = np.array(sorted([0, size] + [rng.randrange(size + 1) for _ in range(3)]), dtype=np.int64)
        blocks = []
        for c in (True, False):
            monkeypatch.setattr(rowhash, "available", c)
            blocks.append(pack.object_block(pack.OBJ_TREE, data, bounds))
        for field in ("oids", "entries", "starts", "crcs"):
            assert np.array_equal(getattr(blocks[0], field), getattr(blocks[1], field)), (size, field)


@needs_ext
@pytest.mark.parametrize("depth", [0, 1, 3, 5, 8])
def test_fan_entries_agrees_with_its_fallback(monkeypatch, depth) -> None:
    """The C sort by (leaf, name bytes) and the entries it writes equal the numpy lexsort path, for
    names of 1-20 bytes (the C key holds 8: longer ones are compared past it), with and without
    deletions, and across the 64-name switch to a counting sort by leaf."""
    rng = random.Random(depth)
    for n in (1, 2, 63, 65, 700):
        names = list({"".join(rng.choice("09az:_-.") for _ in range(rng.choice([1, 7, 8, 9, 20])))
                      for _ in range(n)})
        oids = np.frombuffer(rng.randbytes(20 * len(names)), dtype=np.uint8).reshape(-1, 20)
        for live in (None, np.array([rng.random() < 0.7 for _ in names])):
            got = []
            for c in (True, False):
                monkeypatch.setattr(rowhash, "available", c)
                got.append(trees.fan_entries(names, oids, depth, live))
            monkeypatch.setattr(rowhash, "available", True)
            for a, b in zip(*got):
                assert a.dtype == b.dtype and np.array_equal(a, b), (depth, n)
    # a name that is no ASCII str takes the numpy path (same result as with the extension off)
    o, f, e, s = trees.fan_entries(["b", "a\u00e9"], np.zeros((2, 20), dtype=np.uint8), 2)
    assert sorted(o.tolist()) == [0, 1] and e.tobytes().count(b"100644 ") == 2


@needs_ext
def test_leaf_merge_agrees_with_its_fallback(monkeypatch) -> None:
    """LeafEdits.apply in C and in Python: random base leaves (sometimes holding a subtree, which
    the C walk leaves to Python), entries set over them, names deleted (some also set again)."""
    rng = random.Random(7)

    def entry(name: bytes, tree: bool = False) -> bytes:
        return (b"40000 " if tree else b"100644 ") + name + b"\0" + rng.randbytes(20)

    for _ in range(300):
        pool = sorted({"".join(rng.choice("0189ab:") for _ in range(rng.randrange(1, 6))).encode()
                       for _ in range(rng.randrange(0, 25))})
        base_names = [n for n in pool if rng.random() < 0.6]
        new_names = [n for n in pool if rng.random() < 0.3]
        dead = [n for n in pool if rng.random() < 0.2]
        tree_at = rng.randrange(len(base_names)) if base_names and rng.random() < 0.1 else -1
        base = b"".join(entry(n, i == tree_at) for i, n in enumerate(base_names))
        edit = trees.LeafEdits(b"".join(entry(n) for n in new_names), dead)
        x, y = _both(monkeypatch, edit.apply, base or None)
        assert x == y, (base_names, new_names, dead, tree_at)


_BASELINE_SCRIPT = r"""
import json, random, sys
from hangar.plumbing import _rowhash as r
assert (r.sha_ni, r.xxh3_vector, r.b3_lanes(True)) == (0, 0, False), "a CPU-specific path is still on"
rng = random.Random(11)
out = []
for width in [1, 15, 16, 17, 63, 64, 65, 76, 200, 1000, 1024, 1025, 5552, 5553, 20000]:
    n = rng.choice([1, 2, 3, 17, 33]) if width < 2000 else 3
    buf = rng.randbytes(n * width) if rng.random() < 0.7 else b"\xff" * (n * width)
    suffix = rng.randbytes(rng.choice([0, 1, 32, 63]))
    ids, entries, crcs = r.blob_rows(buf, width, b"blob %d\0" % width, b"\x01\x02")
    out.append([ids.hex(), entries.hex(), crcs.hex(), r.blake3_rows(buf, width, suffix).hex(),
                r.sha1_rows(buf, width, b"x").hex(), r.stored_check_rows(buf, width).hex(),
                r.m3_checksum(buf, 0), r.m3_checksum(buf, 1), r.xxh3(buf)])
json.dump(out, sys.stdout)
"""


@needs_ext
def test_the_baseline_code_gives_what_the_vector_code_gives() -> None:
    """With HANGAR_ROWHASH_BASELINE=1 the extension takes none of its CPU-specific paths (SHA-NI
    pairs, SSSE3 adler32, AVX2 blake3/adler32/compare, AVX-512 blake3 and xxh3, PCLMUL crc32), as
    on a CPU without them: on the same rows it must give what this process (vector paths where the
    CPU has them) gives."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, HANGAR_ROWHASH_BASELINE="1")
    got = subprocess.run([sys.executable, "-c", _BASELINE_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=120)
    assert got.returncode == 0, got.stderr
    ext = rowhash._ext
    assert ext is not None
    rng = random.Random(11)
    for width, base in zip([1, 15, 16, 17, 63, 64, 65, 76, 200, 1000, 1024, 1025, 5552, 5553, 20000],
                           json.loads(got.stdout)):
        n = rng.choice([1, 2, 3, 17, 33]) if width < 2000 else 3
        buf = rng.randbytes(n * width) if rng.random() < 0.7 else b"\xff" * (n * width)
        suffix = rng.randbytes(rng.choice([0, 1, 32, 63]))
        ids, entries, crcs = ext.blob_rows(buf, width, b"blob %d\0" % width, b"\x01\x02")
        here = [ids.hex(), entries.hex(), crcs.hex(), ext.blake3_rows(buf, width, suffix).hex(),
                ext.sha1_rows(buf, width, b"x").hex(), ext.stored_check_rows(buf, width).hex(),
                ext.m3_checksum(buf, 0), ext.m3_checksum(buf, 1), ext.xxh3(buf)]
        assert here == base, width
        assert ids[:20] == hashlib.sha1(b"blob %d\0" % width + buf[:width]).digest()
        assert ext.m3_checksum(buf, 0) == zlib.adler32(buf) and ext.m3_checksum(buf, 1) == zlib.crc32(buf)
