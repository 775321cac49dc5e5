"""TensorFlow loader: a ``tf.data.Dataset`` over hangar arraysets.

Needs ``tensorflow`` (``pip install hangar[tensorflow]``, or ``tensorflow-cpu``).
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, Union

import numpy as np

from hangar.errors import ArgumentTypeError, MissingDependencyError

try:
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("hangar's tensorflow loader needs TensorFlow: pip install 'hangar[tensorflow]' "
                                 "(or pip install tensorflow-cpu)") from exc

from hangar.arrayset import ArraysetDataReader
from hangar.dataloaders.common import GroupedSamples
from hangar.records.keys import Key

__all__ = ["make_tf_dataset"]


def make_tf_dataset(arraysets: Union[ArraysetDataReader, Sequence[ArraysetDataReader]],
                    keys: Optional[Sequence[Key]] = None, index_range: Optional[slice] = None,
                    shuffle: bool = True) -> "tf.data.Dataset":
    """Return a ``tf.data.Dataset`` over hangar arraysets (built with ``from_generator``).

    Each element is a tuple with one tensor per arrayset, in the order of ``arraysets``.
    Fixed-shape arraysets give tensors of static shape; variable-shape arraysets give a
    shape of ``None`` in every dimension, so batch them with ``padded_batch``.

    Parameters
    ----------
    arraysets : ArraysetDataReader or Sequence
        An arrayset of a read checkout, or a list/tuple of them.
    keys : Sequence[Union[str, int]], optional
        Sample names to use; every arrayset must hold each of them.
    index_range : slice, optional
        Slice of the sorted sample names. Ignored when ``keys`` is given.
    shuffle : bool
        When True (default) every pass over the dataset visits the samples in a new random
        order (a global shuffle, unlike ``Dataset.shuffle``'s buffer); when False, in the
        order of ``keys`` (or the sorted sample names).

    Returns
    -------
    tf.data.Dataset

    Raises
    ------
    ValueError
        ``arraysets`` is empty; an arrayset is write-enabled; ``keys`` or ``index_range``
        select no sample; the arraysets share no sample name; or chosen samples are remote
        references (use ``repo.remote.fetch_data`` first).
    KeyError
        A name in ``keys`` is missing from an arrayset.
    TypeError
        ``arraysets`` does not hold arraysets, or ``index_range`` is not a slice.

    Warns
    -----
    UserWarning
        When ``keys`` is not given and the arraysets hold different sample names: only the
        names all of them hold are used.

    Notes
    -----
    ``from_generator`` runs the reads through ``tf.numpy_function`` in this Python process,
    so a model using this dataset cannot be serialized with its input pipeline.

    Examples
    --------
    >>> co = repo.checkout()
    >>> dset = make_tf_dataset([co.arraysets['mnist_data'], co.arraysets['mnist_target']])
    >>> for bdata, btarget in dset.batch(512):
    ...     print(bdata.shape, btarget.shape)
    """
    if not isinstance(shuffle, bool):
        raise ArgumentTypeError(f"shuffle must be a bool, not {shuffle!r}")
    grouped = GroupedSamples(arraysets, keys, index_range)
    sources = grouped.sources
    n = len(grouped)
    signature = tuple(
        tf.TensorSpec(shape=(None,) * len(s.shape) if s.variable_shape else s.shape, dtype=tf.as_dtype(s.dtype))
        for s in sources)
    rng = np.random.default_rng()

    def generate() -> Iterator[tuple[np.ndarray, ...]]:
        order = rng.permutation(n) if shuffle else range(n)
        for i in order:
            yield tuple(s.read(i) for s in sources)

    return tf.data.Dataset.from_generator(generate, output_signature=signature)
