"""The storage contracts (hangar.testing.contracts) run against every pack storage backend.

A new backend is one more class here: subclass both contracts, define ``storage_factory``.
"""

from __future__ import annotations

import pytest
from zarr.storage import LocalStore, MemoryStore

from hangar.store.packs import LocalPackStorage, ZarrPackStorage
from hangar.testing.contracts import PackStorageContract, TensorStoreContract


class TestLocalPackStorage(PackStorageContract, TensorStoreContract):
    @pytest.fixture
    def storage_factory(self, tmp_path):
        return lambda: LocalPackStorage(str(tmp_path / "data"))


class TestZarrMemoryStore(PackStorageContract, TensorStoreContract):
    @pytest.fixture
    def storage_factory(self):
        store = MemoryStore()
        return lambda: ZarrPackStorage(store)


class TestZarrLocalStore(PackStorageContract, TensorStoreContract):
    @pytest.fixture
    def storage_factory(self, tmp_path):
        return lambda: ZarrPackStorage(LocalStore(str(tmp_path / "zarr")))
