"""Loaders over arraysets: torch Dataset, tf.data.Dataset and dask arrays."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hangar import Repository, make_torch_dataset

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.data.distributed import DistributedSampler  # noqa: E402

N = 24


def _image(i: int) -> np.ndarray:
    return np.full((4, 4), i, dtype=np.uint8) + np.arange(16, dtype=np.uint8).reshape(4, 4)


def _var(i: int) -> np.ndarray:
    return np.arange(1 + i % 6, dtype=np.float32) + i


@pytest.fixture
def loader_repo(repo) -> Repository:
    """int keys 0..N-1 in 'images' ((4,4) uint8), 'labels' ((1,) int64, = key) and 'var-len'
    (variable shape, max (6,)); 'evens' holds only even keys."""
    co = repo.checkout(write=True)
    images = co.arraysets.init_arrayset("images", shape=(4, 4), dtype=np.uint8)
    labels = co.arraysets.init_arrayset("labels", shape=(1,), dtype=np.int64)
    var = co.arraysets.init_arrayset("var-len", shape=(6,), dtype=np.float32, variable_shape=True)
    evens = co.arraysets.init_arrayset("evens", shape=(1,), dtype=np.int64)
    for i in range(N):
        images[i] = _image(i)
        labels[i] = np.array([i], dtype=np.int64)
        var[i] = _var(i)
        if i % 2 == 0:
            evens[i] = np.array([i], dtype=np.int64)
    co.commit("loader data")
    co.close()
    return repo


@pytest.fixture
def reader(loader_repo):
    co = loader_repo.checkout()
    yield co
    co.close()


# ------------------------------------------------------------------ torch
def test_torch_dataset_items_are_namedtuples_in_sorted_key_order(reader):
    dset = make_torch_dataset([reader.arraysets["images"], reader.arraysets["labels"]])
    assert isinstance(dset, torch.utils.data.Dataset)
    assert len(dset) == N and dset.keys == list(range(N))
    item = dset[5]
    assert item._fields == ("images", "labels")
    np.testing.assert_array_equal(item.images, _image(5))
    assert item.labels.tolist() == [5]
    assert dset[-1].labels.tolist() == [N - 1]
    with pytest.raises(IndexError):
        dset[N]
    many = dset.__getitems__([2, -1, 2])  # the batched path DataLoader takes
    assert [m.labels.item() for m in many] == [2, N - 1, 2]
    np.testing.assert_array_equal(many[1].images, _image(N - 1))
    with pytest.raises(IndexError):
        dset.__getitems__([0, N])


def test_torch_dataloader_batches_stack_each_field(reader):
    dset = make_torch_dataset([reader.arraysets["images"], reader.arraysets["labels"]])
    batches = list(DataLoader(dset, batch_size=8))
    assert len(batches) == 3
    first = batches[0]
    assert first._fields == ("images", "labels")
    assert first.images.shape == (8, 4, 4) and first.images.dtype == torch.uint8
    assert first.labels.shape == (8, 1) and first.labels.dtype == torch.int64
    np.testing.assert_array_equal(first.images.numpy(), np.stack([_image(i) for i in range(8)]))
    assert torch.cat([b.labels for b in batches]).ravel().tolist() == list(range(N))


def test_torch_keys_pick_samples_in_the_given_order_and_beat_index_range(reader):
    dset = make_torch_dataset(reader.arraysets["labels"], keys=[9, 2, 17], index_range=slice(0, 1))
    assert dset.keys == [9, 2, 17]
    assert [dset[i].labels.item() for i in range(3)] == [9, 2, 17]


def test_torch_index_range_slices_the_sorted_keys(reader):
    dset = make_torch_dataset(reader.arraysets["labels"], index_range=slice(3, 20, 4))
    assert dset.keys == [3, 7, 11, 15, 19]
    assert [dset[i].labels.item() for i in range(len(dset))] == [3, 7, 11, 15, 19]


def test_torch_field_names_replace_arrayset_names(reader):
    dset = make_torch_dataset([reader.arraysets["images"], reader.arraysets["labels"]], field_names=("x", "y"))
    batch = next(iter(DataLoader(dset, batch_size=2)))
    assert batch._fields == ("x", "y")
    assert batch.y.ravel().tolist() == [0, 1]


def test_torch_default_field_name_makes_arrayset_names_identifiers(reader):
    dset = make_torch_dataset(reader.arraysets["var-len"])
    item = dset[7]
    assert item._fields == ("var_len",)
    np.testing.assert_array_equal(item.var_len, _var(7))


def test_torch_dataloader_fork_workers_see_every_sample_once(reader):
    dset = make_torch_dataset([reader.arraysets["images"], reader.arraysets["labels"]])
    loader = DataLoader(dset, batch_size=5, shuffle=True, num_workers=2, multiprocessing_context="fork")
    seen = []
    for batch in loader:
        for img, lab in zip(batch.images.numpy(), batch.labels.ravel().tolist()):
            np.testing.assert_array_equal(img, _image(lab))  # fields stay paired
            seen.append(lab)
    assert sorted(seen) == list(range(N))


@pytest.mark.slow
def test_torch_dataloader_spawn_workers_unpickle_the_dataset(reader):
    dset = make_torch_dataset(reader.arraysets["labels"], keys=[3, 1, 2, 0, 5, 4])
    loader = DataLoader(dset, batch_size=2, num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    assert [b.labels.ravel().tolist() for b in batches] == [[3, 1], [2, 0], [5, 4]]
    assert type(batches[0]) is type(dset[0])


def test_torch_dataset_pickles_without_open_files_and_outlives_the_checkout(loader_repo):
    co = loader_repo.checkout()
    dset = make_torch_dataset([co.arraysets["images"], co.arraysets["var-len"]])
    dset[0]  # opens pack file descriptors in this process
    clone = pickle.loads(pickle.dumps(dset))
    co.close()
    for d in (dset, clone):
        np.testing.assert_array_equal(d[11].images, _image(11))
        np.testing.assert_array_equal(d[11].var_len, _var(11))
    assert type(clone[0]) is type(dset[0])


def test_distributed_sampler_splits_the_dataset_between_ranks(reader):
    dset = make_torch_dataset(reader.arraysets["labels"])
    parts = []
    for rank in range(3):
        sampler = DistributedSampler(dset, num_replicas=3, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(1)
        parts.append([b.labels.item() for b in DataLoader(dset, batch_size=None, sampler=sampler)])
    assert all(len(p) == N // 3 for p in parts)
    assert sorted(sum(parts, [])) == list(range(N))
    assert parts[0] != sorted(parts[0])  # shuffled (8 items: sorted by chance with p = 1/40320)


@pytest.fixture
def scrambled(repo):
    """'x' ((2,) int64 = [key, key]) with keys 0..99 written in a shuffled order, in two commits
    (so two packs); yields (torch dataset over 'x', write order of the first commit, of the second)."""
    order = np.random.default_rng(5).permutation(100).tolist()
    for part in (order[:60], order[60:]):
        co = repo.checkout(write=True)
        x = co.arraysets["x"] if "x" in co.arraysets else co.arraysets.init_arrayset("x", shape=(2,), dtype=np.int64)
        for k in part:
            x[k] = np.array([k, k], dtype=np.int64)
        co.commit(f"{len(part)} samples")
        co.close()
    co = repo.checkout()
    yield make_torch_dataset(co.arraysets["x"]), order[:60], order[60:]
    co.close()


def test_storage_order_follows_where_the_bytes_were_written(scrambled):
    dset, first, second = scrambled
    assert dset.keys == list(range(100))
    by_storage = [dset.keys[i] for i in dset.storage_order()]
    assert by_storage in (first + second, second + first)  # each pack read front to back


def test_block_shuffle_sampler_keeps_storage_neighbours_together_and_covers_every_item(scrambled):
    from hangar.dataloaders import BlockShuffleSampler

    dset, _, _ = scrambled
    order = dset.storage_order().tolist()
    assert list(BlockShuffleSampler(dset, shuffle=False)) == order
    sampler = BlockShuffleSampler(dset, block_size=8, seed=3)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        perm = list(sampler)
        assert sorted(perm) == list(range(100)) and len(sampler) == 100
        where = {p: j for j, p in enumerate(perm)}
        for b in range(0, 100, 8):  # each block of 8 storage neighbours is one run
            spots = [where[p] for p in order[b:b + 8]]
            assert max(spots) - min(spots) == len(spots) - 1
        assert perm != order
        epochs.append(perm)
    assert epochs[0] != epochs[1] != epochs[2]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # a pure function of (seed, epoch)
    again = BlockShuffleSampler(dset, block_size=8, seed=3)
    again.set_epoch(1)
    assert list(again) == epochs[1]
    got = [b.x[:, 0].tolist() for b in DataLoader(dset, batch_size=16, sampler=sampler)]
    assert sorted(sum(got, [])) == list(range(100))


def test_block_shuffle_sampler_splits_between_ranks_like_distributed_sampler(scrambled):
    from hangar.dataloaders import BlockShuffleSampler

    dset, _, _ = scrambled
    shares = [list(BlockShuffleSampler(dset, num_replicas=3, rank=r, seed=1)) for r in range(3)]
    assert [len(s) for s in shares] == [34, 34, 34]  # 100 padded to 102 with 2 repeats
    flat = sum(shares, [])
    assert sorted(set(flat)) == list(range(100)) and len(flat) - len(set(flat)) == 2
    trimmed = [list(BlockShuffleSampler(dset, num_replicas=3, rank=r, seed=1, drop_last=True)) for r in range(3)]
    assert [len(s) for s in trimmed] == [33, 33, 33]
    assert len(set(sum(trimmed, []))) == 99  # disjoint, nothing repeated
    for kwargs, match in (({"num_replicas": 2, "rank": 2}, "rank"), ({"block_size": 0}, "block_size"),
                          ({"num_replicas": 0, "rank": 0}, "num_replicas"), ({"seed": "x"}, "seed")):
        with pytest.raises(ValueError, match=match):
            BlockShuffleSampler(dset, **kwargs)
    with pytest.raises(ValueError, match="seed"):
        BlockShuffleSampler(dset, seed=-1)
    with pytest.raises(ValueError, match="epoch"):
        BlockShuffleSampler(dset).set_epoch(-1)
    with pytest.raises(TypeError, match="make_torch_dataset"):
        BlockShuffleSampler(list(range(5)))


def test_unequal_sample_sets_use_the_intersection_with_a_warning(reader):
    with pytest.warns(UserWarning, match="do not hold the same samples"):
        dset = make_torch_dataset([reader.arraysets["labels"], reader.arraysets["evens"]])
    assert dset.keys == list(range(0, N, 2))
    assert all(dset[i].labels.item() == dset[i].evens.item() for i in range(len(dset)))


def test_loader_argument_errors(loader_repo, reader):
    labels = reader.arraysets["labels"]
    with pytest.raises(ValueError, match="empty"):
        make_torch_dataset([])
    with pytest.raises(ValueError, match="field_names"):
        make_torch_dataset([labels, reader.arraysets["images"]], field_names=["only_one"])
    with pytest.raises(ValueError, match="'2bad'"):
        make_torch_dataset(labels, field_names=["2bad"])
    with pytest.raises(KeyError, match="999"):
        make_torch_dataset(labels, keys=[1, 999])
    with pytest.raises(KeyError, match="'1'"):
        make_torch_dataset(labels, keys=["1"])  # str and int keys differ
    with pytest.raises(TypeError, match="slice"):
        make_torch_dataset(labels, index_range=(0, 3))
    with pytest.raises(ValueError, match="selects no samples"):
        make_torch_dataset(labels, index_range=slice(100, 200))
    with pytest.raises(TypeError, match="arraysets"):
        make_torch_dataset([labels, "images"])
    w = loader_repo.checkout(write=True)
    try:
        with pytest.raises(TypeError, match="'labels' is write-enabled"):
            make_torch_dataset(w.arraysets["labels"])
    finally:
        w.close()


@pytest.fixture
def remote_only_repo(loader_repo) -> Repository:
    """'labels' is local; 'far' (keys 0..3) has records but its bytes are missing, as after a fetch."""
    packs = os.path.join(loader_repo.path, ".hangar", "data", "packs")
    before = set(os.listdir(packs))
    co = loader_repo.checkout(write=True)
    far = co.arraysets.init_arrayset("far", shape=(1,), dtype=np.int64)
    for i in range(4):
        far[i] = np.array([1000 + i], dtype=np.int64)
    co.commit("far samples")
    co.close()
    for pack in set(os.listdir(packs)) - before:
        shutil.rmtree(os.path.join(packs, pack))
    return Repository(loader_repo.path)


def test_remote_only_samples_raise_a_valueerror_naming_fetch_data(remote_only_repo):
    co = remote_only_repo.checkout()
    assert co.arraysets["far"].contains_remote_references
    with pytest.raises(ValueError, match="fetch_data") as exc:
        make_torch_dataset(co.arraysets["far"])
    assert "'far'" in str(exc.value)
    with pytest.raises(ValueError, match="fetch_data"):
        make_torch_dataset([co.arraysets["labels"], co.arraysets["far"]], keys=[0, 1])
    assert len(make_torch_dataset(co.arraysets["labels"])) == N  # local arraysets still load
    co.close()


# --------------------------------------------------------------------- tf
@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow", reason="tensorflow is not installed (pip install tensorflow-cpu)")


@pytest.mark.slow  # importing tensorflow / dask takes seconds
def test_tf_dataset_batches_in_key_order_without_shuffle(reader, tf):
    from hangar import make_tf_dataset

    dset = make_tf_dataset([reader.arraysets["images"], reader.arraysets["labels"]], shuffle=False)
    assert isinstance(dset, tf.data.Dataset)
    batches = list(dset.batch(10))
    assert [int(b[0].shape[0]) for b in batches] == [10, 10, 4]
    images, labels = batches[0]
    assert images.dtype == tf.uint8 and tuple(images.shape) == (10, 4, 4)
    np.testing.assert_array_equal(images.numpy(), np.stack([_image(i) for i in range(10)]))
    assert np.concatenate([b[1].numpy() for b in batches]).ravel().tolist() == list(range(N))


@pytest.mark.slow
def test_tf_dataset_keys_index_range_and_shuffle(reader, tf):
    from hangar import make_tf_dataset

    labels = reader.arraysets["labels"]
    by_keys = make_tf_dataset(labels, keys=[4, 0, 9], index_range=slice(0, 1), shuffle=False)
    assert [int(x[0].numpy()[0]) for x in by_keys] == [4, 0, 9]
    ranged = make_tf_dataset(labels, index_range=slice(0, 6), shuffle=False)
    assert [int(x[0].numpy()[0]) for x in ranged] == [0, 1, 2, 3, 4, 5]
    shuffled = make_tf_dataset(labels, shuffle=True)
    passes = [[int(x[0].numpy()[0]) for x in shuffled] for _ in range(2)]
    assert sorted(passes[0]) == sorted(passes[1]) == list(range(N))
    assert passes[0] != passes[1]  # reshuffled each pass (equal by chance with p = 1/24!)


@pytest.mark.slow  # importing tensorflow / dask takes seconds
def test_tf_variable_shape_arrayset_works_with_padded_batch(reader, tf):
    from hangar import make_tf_dataset

    dset = make_tf_dataset([reader.arraysets["var-len"], reader.arraysets["labels"]], shuffle=False)
    assert dset.element_spec[0].shape.as_list() == [None]
    var, labels = next(iter(dset.padded_batch(6)))
    assert tuple(var.shape) == (6, 6)  # keys 0..5 have lengths 1..6
    for row, i in zip(var.numpy(), labels.numpy().ravel()):
        n = 1 + i % 6
        np.testing.assert_array_equal(row[:n], _var(i))
        assert not row[n:].any()


@pytest.mark.slow  # importing tensorflow / dask takes seconds
def test_tf_loader_refuses_writer_and_empty_arraysets(loader_repo, tf):
    from hangar import make_tf_dataset

    w = loader_repo.checkout(write=True)
    try:
        with pytest.raises(TypeError, match="write-enabled"):
            make_tf_dataset(w.arraysets["images"])
    finally:
        w.close()
    with pytest.raises(ValueError, match="empty"):
        make_tf_dataset(())


# ------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def dask_array():
    pytest.importorskip("dask.array", reason="dask is not installed (pip install 'dask[array]')")
    from hangar.dataloaders import dask_array

    return dask_array


@pytest.mark.slow
def test_dask_array_is_lazy_and_matches_the_samples(reader, dask_array):
    arr = dask_array(reader.arraysets["images"], chunk_rows=5)
    assert arr.shape == (N, 4, 4) and arr.dtype == np.uint8
    assert arr.chunks[0] == (5, 5, 5, 5, 4)
    expected = np.stack([_image(i) for i in range(N)])
    np.testing.assert_array_equal(arr.compute(scheduler="sync"), expected)
    assert int(arr.astype(np.int64).sum().compute(scheduler="threads")) == int(expected.astype(np.int64).sum())
    np.testing.assert_array_equal(arr[[3, 17], 1:3].compute(), expected[[3, 17], 1:3])
    clone = pickle.loads(pickle.dumps(arr))  # what a cluster scheduler ships to its workers
    np.testing.assert_array_equal(clone[7:12].compute(scheduler="sync"), expected[7:12])


@pytest.mark.slow  # importing tensorflow / dask takes seconds
def test_dask_array_keys_and_errors(reader, dask_array):
    arr = dask_array(reader.arraysets["labels"], keys=[5, 2])
    assert arr.compute().ravel().tolist() == [5, 2]
    assert dask_array(reader.arraysets["labels"], index_range=slice(20, None)).compute().ravel().tolist() == [
        20, 21, 22, 23]
    a, b = dask_array(reader.arraysets["labels"], chunk_rows=4), dask_array(reader.arraysets["labels"], chunk_rows=5)
    assert a.name != b.name  # distinct graphs: safe to combine
    assert (a + b).sum().compute() == 2 * sum(range(N))
    with pytest.raises(ValueError, match="variable_shape"):
        dask_array(reader.arraysets["var-len"])
    with pytest.raises(ValueError, match="chunk_rows"):
        dask_array(reader.arraysets["labels"], chunk_rows=0)


def test_frameworks_are_imported_only_when_a_loader_is_used():
    code = ("import sys, hangar, hangar.dataloaders; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'dask') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_to_dask_method_matches_the_arrayset(aset_repo):
    pytest.importorskip("dask.array")
    r = aset_repo.checkout()
    foo = r.arraysets["foo"]
    arr = foo.to_dask(chunk_rows=3)
    assert arr.shape == (10, 5) and arr.numblocks[0] == 4
    np.testing.assert_array_equal(arr.compute(), np.stack([foo[k] for k in foo.keys()]))
    np.testing.assert_array_equal(foo.to_dask(keys=[3, 1]).compute(), np.stack([foo[3], foo[1]]))
    r.close()


def test_pad_collate_pads_variable_shape_samples_to_the_batch_maximum(reader):
    from hangar.dataloaders import pad_collate

    dset = make_torch_dataset([reader.arraysets["var-len"], reader.arraysets["labels"]])
    batch = next(iter(DataLoader(dset, batch_size=4, collate_fn=pad_collate)))  # keys 0..3: lengths 1..4
    assert batch._fields == ("var_len", "labels")
    assert tuple(batch.var_len.shape) == (4, 4) and tuple(batch.labels.shape) == (4, 1)
    for i in range(4):
        np.testing.assert_array_equal(batch.var_len[i, :i + 1].numpy(), _var(i))
        assert (batch.var_len[i, i + 1:] == 0).all()
    padded = pad_collate([dset[5], dset[0]], pad_value=-1)
    assert padded.var_len[1, 1:].tolist() == [-1.0] * 5
    with pytest.raises(ValueError, match="non-empty"):
        pad_collate([])
