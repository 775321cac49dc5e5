"""Named tuples of record keys and values, as diffs report them.

The module path is Hangar 0.3's: code written for it imports ``MetadataRecordKey`` and
friends from ``hangar.records.parsing``, so the 0.3 names are aliases of ours here.
"""

from __future__ import annotations

from typing import NamedTuple

from hangar.records.keys import Key


class SampleKey(NamedTuple):
    """Key of a sample record: arrayset name and sample key (Hangar 0.3's ``RawDataRecordKey``)."""

    aset_name: str
    data_name: Key


class MetadataKey(NamedTuple):
    """Key of a metadata record (Hangar 0.3's ``MetadataRecordKey``)."""

    meta_name: Key


class SampleVal(NamedTuple):
    """What a sample record says (Hangar 0.3's ``RawDataRecordVal``, with dtype and shape added).

    Attributes
    ----------
    data_hash : str
        Hex BLAKE3 digest of the sample's bytes (equal data, equal hash).
    dtype : str
        Numpy dtype string of the sample, e.g. ``'<f4'``.
    shape : tuple of int
        Shape of the sample.
    """

    data_hash: str
    dtype: str
    shape: tuple


class MetadataVal(NamedTuple):
    """What a metadata record says (Hangar 0.3's ``MetadataRecordVal``, with the value added).

    Attributes
    ----------
    meta_hash : str
        Hex id of the value's git blob (equal values, equal hash).
    value : str
        The metadata value itself.
    """

    meta_hash: str
    value: str


class ArraysetSchemaVal(NamedTuple):
    """An arrayset's schema record (field names of Hangar 0.3's ``RawArraysetSchemaVal``).

    Attributes
    ----------
    schema_hash : str
        Hex id of the schema's git blob (equal schemas, equal hash).
    schema_dtype : object
        Numpy dtype description: a str such as ``'<f4'`` (a list of fields for structured
        dtypes). Hangar 0.3 gave numpy's type number here.
    schema_is_var : bool
        True when samples may be smaller than ``schema_max_shape``.
    schema_max_shape : tuple of int
        The (maximum) sample shape.
    schema_is_named : bool
        True when sample keys are given by the user.
    schema_default_backend : str
        The arrayset's backend (how sample bytes are compressed).
    """

    schema_hash: str
    schema_dtype: object
    schema_is_var: bool
    schema_max_shape: tuple
    schema_is_named: bool
    schema_default_backend: str


# Hangar 0.3's names for the same records
RawDataRecordKey = SampleKey
RawDataRecordVal = SampleVal
MetadataRecordKey = MetadataKey
MetadataRecordVal = MetadataVal
RawArraysetSchemaVal = ArraysetSchemaVal
