"""Record formats: key encoding, pointers, schemas, fan-out (round-trip properties)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.records.keys import decode_key, encode_key, fan_path, sort_key, validate_branch_name, validate_key
from hangar.records.pointer import SamplePointer, decode_pointer, encode_pointer
from hangar.records.schema import ArraysetSchema, descr_to_dtype, dtype_to_descr

name_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
str_keys = st.text(name_chars, min_size=1, max_size=64).filter(lambda s: s not in (".", ".."))
keys = st.one_of(str_keys, st.integers(min_value=0, max_value=2**63))


@pytest.mark.slow
@given(keys)
def test_key_encoding_round_trips_with_type(key):
    assert validate_key(key) == key
    enc = encode_key(key)
    back = decode_key(enc)
    assert back == key and type(back) is type(key)


@pytest.mark.slow
@given(st.integers(min_value=0, max_value=10**6))
def test_int_and_str_keys_encode_differently(i):
    assert encode_key(i) != encode_key(str(i))


@given(keys, st.integers(min_value=0, max_value=5))
def test_fan_path_is_stable_hex_of_requested_depth(key, depth):
    p = fan_path(encode_key(key), depth)
    assert len(p) == depth and all(c in "0123456789abcdef" for c in p)
    assert p == fan_path(encode_key(key), depth)


def test_fan_out_spreads_keys():
    leaves = {fan_path(encode_key(i), 3) for i in range(20000)}
    assert len(leaves) > 3500  # of 4096


@pytest.mark.parametrize("bad", ["", " ", "a b", "ü", "a/b", "..", ".", "a" * 65, -1, True, 1.0, None, b"x"])
def test_invalid_keys(bad):
    with pytest.raises(ValueError):
        validate_key(bad)


@pytest.mark.parametrize("name", ["master", "feature/x-1", "a.b_c"])
def test_valid_branch_names(name):
    assert validate_branch_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a..b", "-x", "x.lock", "/x", "x/", "ü"])
def test_invalid_branch_names(name):
    with pytest.raises(ValueError):
        validate_branch_name(name)


@pytest.mark.slow
@given(st.binary(min_size=32, max_size=32), st.sampled_from(["|u1", "<f4", "<i8", "|b1", "<c16", "|V12"]),
       st.lists(st.integers(min_value=1, max_value=10**6), max_size=31))
def test_pointer_round_trips(digest, dtype, shape):
    ptr = SamplePointer(digest, dtype, tuple(shape))
    data = encode_pointer(ptr)
    assert data.isascii() and data.endswith(b"\n")
    assert decode_pointer(data) == ptr


@pytest.mark.parametrize("bad", [b"", b"hello", b"sha1:00 <f4 1", b"blake3:zz <f4 1", b"blake3:00 notdtype 1",
                                 b"blake3:" + b"ab" * 31 + b" <f4 1",  # a digest of 31 bytes
                                 b"blake3:" + b"zz" * 32 + b" <f4 1",  # the exact layout, not hex
                                 b"blake3:" + b"ab" * 32 + b" <f4 1 2",  # three fields
                                 b"blake3:" + b"ab" * 32 + b" <f4 1,x"])
def test_decode_pointer_rejects_garbage(bad):
    with pytest.raises(ValueError):
        decode_pointer(bad)


@pytest.mark.slow
@given(st.sampled_from([np.uint8, np.float32, np.int64, np.complex64, "M8[s]",
                        [("x", "<i4"), ("y", "<f8", (2,))]]),
       st.lists(st.integers(min_value=1, max_value=1000), min_size=0, max_size=5),
       st.booleans(), st.booleans(), st.sampled_from(["auto", "raw", "lz4", "zstd"]))
def test_schema_json_round_trips(dtype, shape, var, named, backend):
    dt = np.dtype(dtype)
    s = ArraysetSchema("a", dtype_to_descr(dt), tuple(shape), var, named, backend)
    back = ArraysetSchema.from_json(s.to_json())
    assert back == s and back.np_dtype == dt and back.to_json() == s.to_json()
    assert descr_to_dtype(dtype_to_descr(dt)) == dt


def test_sort_key_orders_ints_before_strs():
    assert sorted([3, "b", 1, "a", 10], key=sort_key) == [1, 3, 10, "a", "b"]
