"""Lazy reads from several threads of one repository at once (issue 15 review).

A repository's lazy reads share one cache store (``LazyReads._cache``); each read runs
``fetch_samples`` with a writer thread of its own. Threads reading missing samples at once must
each get their sample's bytes, and the packs they leave must read back clean.
"""

from __future__ import annotations

import threading

import numpy as np

from tests.s3_fixtures import s3_env, s3_server  # noqa: F401 - fixtures
from tests.test_data_remotes import N, clone, expected, pushed  # noqa: F401 - fixtures and builders


def test_concurrent_lazy_reads_each_get_their_bytes_and_leave_clean_packs(pushed, tmp_path):  # noqa: F811
    _, url, _ = pushed
    c = clone(tmp_path, url)
    want = expected()
    co = c.checkout()
    img = co.arraysets["img"]
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def reader(t: int) -> None:
        try:
            start.wait()
            for i in range(t, N, 6):
                got = np.asarray(img[str(i)])
                assert np.array_equal(got, want[str(i)]), i
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    co.close()
    assert not errors, errors
    fresh = c.checkout()  # a fresh store reads every sample from the packs the lazy reads left
    for i in range(N):
        assert np.array_equal(np.asarray(fresh.arraysets["img"][str(i)]), want[str(i)]), i
    fresh.close()
