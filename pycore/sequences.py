"""Variable-length sequences: padding, length-bucketed batches, masks for the loss.

    batch, lengths = pad_sequences([np.ones((3, 8)), np.ones((5, 8))])   # (2, 5, 8), [3, 5]

    loader = SequenceLoader(sentences, labels, batch_size=32, shuffle=True, seed=0, bucket=True)
    for xb, lengths, yb in loader:       # xb (N, T_batch, ...) padded to this batch's longest
        ...

Each batch is padded only to its own longest sequence, so short batches cost short
steps. `bucket=True` groups sequences of similar length in the same batch: the epoch's
shuffled order is cut into chunks of `bucket_batches` batches, each chunk is sorted by
length and cut into batches, and then the order of all the batches is shuffled (so the
model does not see the lengths rise and fall in a saw-tooth). Padding falls from the
spread of the whole data set to the spread inside one batch of neighbours.

Per-step targets of padded steps are set to -100, CrossEntropyLoss's default
ignore_index, so a padded (N, T, C) output needs no mask of its own:

    loss = nn.CrossEntropyLoss()(logits, mask_targets(targets, lengths))   # mean over real steps

`pad_collate()` is the same padding as a `collate_fn` for pycore.data.DataLoader, whose
first array is then a 1-D object array of sequences (`sequence_array(list_of_arrays)`).
"""
from __future__ import annotations

__all__ = ["pad_sequences", "pad_collate", "sequence_array", "length_mask", "mask_targets", "SequenceLoader"]

from collections.abc import Iterator, Sequence
from typing import Any, Callable, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._checks import integer
from .data import DataLoader

#: Ragged data: a list (or tuple) of arrays (T_i, ...), or a 1-D object array holding them.
Sequences = Union[Sequence[np.ndarray], np.ndarray]


def _checked_sequences(sequences: Sequences, name: str) -> list[np.ndarray]:
    """sequences as a list of arrays with a common dtype and trailing shape, each of
    length >= 1 on the first axis; raises naming the first offender."""
    if isinstance(sequences, np.ndarray) and sequences.dtype == object and sequences.ndim == 1:
        sequences = list(sequences)
    if not isinstance(sequences, (list, tuple)):
        raise TypeError(f"{name}: expected a list of numpy arrays (or a 1-D object array of them), "
                        f"got {type(sequences).__name__}")
    if not sequences:
        raise ValueError(f"{name}: expected at least one sequence, got an empty list")
    for i, s in enumerate(sequences):
        if not isinstance(s, np.ndarray) or s.dtype == object:
            raise TypeError(f"{name}[{i}]: expected a numeric numpy array, got "
                            f"{type(s).__name__}{' of objects' if isinstance(s, np.ndarray) else ''}")
        if s.ndim == 0 or s.shape[0] == 0:
            raise ValueError(f"{name}[{i}]: expected at least one step on the first axis, got shape {s.shape}")
        first = sequences[0]
        if s.shape[1:] != first.shape[1:]:
            raise ValueError(f"{name}[{i}]: trailing shape {s.shape[1:]} differs from {name}[0]'s {first.shape[1:]} "
                             "(only the first axis, the steps, may vary)")
        if s.dtype != first.dtype:
            raise TypeError(f"{name}[{i}]: dtype {s.dtype} differs from {name}[0]'s {first.dtype}")
    return list(sequences)


def pad_sequences(sequences: Sequences, padding_value: Any = 0,
                  dtype: DTypeLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack arrays of different lengths into one right-padded batch.

    Args:
        sequences: a list (or 1-D object array) of numpy arrays (T_i, ...) sharing their
            dtype and trailing shape; every T_i >= 1.
        padding_value: the value of the steps past each sequence's end; default 0.
        dtype: the batch's dtype; default None: the sequences' dtype.

    Returns:
        (batch, lengths): batch (N, max T_i, ...) with sequence i in batch[i, :T_i], and
        lengths (N,) int64.
    """
    sequences = _checked_sequences(sequences, "pad_sequences: sequences")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    dtype = sequences[0].dtype if dtype is None else np.dtype(dtype)
    batch = np.full((len(sequences), int(lengths.max()), *sequences[0].shape[1:]), padding_value, dtype=dtype)
    for row, s in zip(batch, sequences):
        row[:len(s)] = s
    return batch, lengths


def sequence_array(sequences: Sequences) -> np.ndarray:
    """A 1-D object array holding the arrays of `sequences` (np.array would try to
    stack equal-length ones into one block): what DataLoader needs for ragged data.

    Args:
        sequences: a list (or 1-D object array) of numpy arrays (T_i, ...) sharing their
            dtype and trailing shape; every T_i >= 1.

    Returns:
        ndarray: (N,) of dtype object, element i the array sequences[i] (not a copy).
    """
    sequences = _checked_sequences(sequences, "sequence_array: sequences")
    holder = np.empty(len(sequences), dtype=object)
    for i, s in enumerate(sequences):
        holder[i] = s
    return holder


def pad_collate(padding_value: Any = 0) -> Callable[..., tuple[Any, ...]]:
    """A collate_fn for pycore.data.DataLoader whose first array is a sequence_array:

        loader = DataLoader(sequence_array(seqs), labels, batch_size=32, shuffle=True,
                            collate_fn=pad_collate())
        for xb, lengths, yb in loader: ...

    Bucketing by length needs SequenceLoader.

    Args:
        padding_value: the value of the padded steps; default 0.

    Returns:
        A function (sequences batch, *other batches) -> (padded batch, lengths, *the other
        arrays' batches), as pad_sequences pads.
    """
    def collate(sequences: Sequences, *others: Any) -> tuple[Any, ...]:
        batch, lengths = pad_sequences(sequences, padding_value)
        return (batch, lengths, *others)
    return collate


def _checked_lengths(lengths: ArrayLike, name: str) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"{name}: expected a 1-D integer array of lengths, got {lengths.dtype} shape {lengths.shape}")
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"{name}: lengths must be >= 0, got {int(lengths.min())}")
    return lengths.astype(np.int64)


def length_mask(lengths: ArrayLike, steps: int) -> np.ndarray:
    """Which steps of a padded batch are real.

    Args:
        lengths: 1-D integer array (N,), each sequence's length (0 .. steps).
        steps: int >= 0, the padded batch's number of steps T.

    Returns:
        ndarray: bool (N, steps), True where step t < lengths[n] (a real step), False on
        padding.
    """
    lengths = _checked_lengths(lengths, "length_mask: lengths")
    steps = integer(steps, "length_mask: steps", minimum=0)
    if lengths.size and lengths.max() > steps:
        raise ValueError(f"length_mask: a length {int(lengths.max())} is more than the {steps} steps")
    return np.arange(steps) < lengths[:, None]


def mask_targets(targets: np.ndarray, lengths: ArrayLike, ignore_index: int = -100) -> np.ndarray:
    """Mark the padded steps of per-step targets, so CrossEntropyLoss(ignore_index=...)
    averages over real steps only.

    Args:
        targets: integer array (N, T, ...), per-step class indices.
        lengths: 1-D integer array (N,), each sequence's length (at most T).
        ignore_index: int, the value of padded steps; default -100 (CrossEntropyLoss's).

    Returns:
        ndarray: a copy of targets with every padded step (t >= lengths[n]) set to
        ignore_index.
    """
    if not isinstance(targets, np.ndarray) or targets.ndim < 2 or not np.issubdtype(targets.dtype, np.integer):
        raise TypeError("mask_targets: targets must be an integer numpy array (N, T, ...), got "
                        + (f"{targets.dtype} shape {targets.shape}" if isinstance(targets, np.ndarray)
                           else type(targets).__name__))
    ignore_index = integer(ignore_index, "mask_targets: ignore_index")
    lengths = _checked_lengths(lengths, "mask_targets: lengths")
    if len(lengths) != targets.shape[0]:
        raise ValueError(f"mask_targets: {len(lengths)} lengths for {targets.shape[0]} target rows")
    real = length_mask(lengths, targets.shape[1])
    masked = targets.copy()
    masked[~real] = ignore_index
    return masked


class SequenceLoader(DataLoader):
    """Mini-batches of variable-length sequences, each batch padded to its own longest.

    Args:
        sequences: a list (or 1-D object array) of N arrays (T_i, ...), as pad_sequences.
        targets: None; a numpy array with first axis N (one target per sequence); or a
            list of N per-step arrays, target i of length T_i, padded with target_padding.
        batch_size: int, samples per batch; default 1.
        shuffle: bool, a new random order every epoch; default False.
        seed: int or None, the shuffling generator's seed, as DataLoader's; default None.
        drop_last: bool, skip a last batch smaller than batch_size; default False.
        bucket: bool, group sequences of similar length into batches (see the module
            docstring); default False.
        bucket_batches: batches per sorted chunk when bucketing (50: a wide enough window to
            find neighbours in length, small enough that the batches still mix the data).
        padding_value: the value of padded input steps.
        target_padding: the value of padded per-step targets (-100: CrossEntropyLoss's
            default ignore_index, so padded steps drop out of the loss).

    Yields (padded (n, T_batch, ...), lengths (n,) int64, targets batch), or the first two
    when targets is None. state_dict()/load_state_dict() resume mid-epoch as DataLoader's.
    """

    def __init__(self, sequences: Sequences, targets: np.ndarray | Sequences | None = None, batch_size: int = 1,
                 shuffle: bool = False, seed: int | None = None, bucket: bool = False, drop_last: bool = False,
                 padding_value: Any = 0, target_padding: Any = -100, bucket_batches: int = 50) -> None:
        holder = sequence_array(sequences)
        self.lengths = np.array([len(s) for s in holder], dtype=np.int64)
        arrays = [holder]
        if isinstance(targets, np.ndarray) and targets.dtype != object:  # one target per sequence
            self.per_step_targets = False
            arrays.append(targets)
        elif targets is not None:  # one array of targets per sequence, each as long as it
            self.per_step_targets = True
            targets = sequence_array(targets)
            arrays.append(targets)
            target_lengths = np.array([len(t) for t in targets], dtype=np.int64)
            if len(targets) != len(holder) or np.any(target_lengths != self.lengths):
                raise ValueError("SequenceLoader: per-step targets must have one array per sequence with the "
                                 f"sequence's length, got {len(targets)} targets for {len(holder)} sequences"
                                 + ("" if len(targets) != len(holder) else
                                    f" (first mismatch at {int(np.argmax(target_lengths != self.lengths))})"))
        else:
            self.per_step_targets = False
        super().__init__(*arrays, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
        self.bucket = bool(bucket)
        self.bucket_batches = integer(bucket_batches, "bucket_batches", minimum=1)
        self.padding_value, self.target_padding = padding_value, target_padding

    def epoch_batches(self) -> list[np.ndarray]:
        """The sample indices of each batch of the next epoch (draws from the generator).

        Returns:
            list of int64 arrays, one per batch.
        """
        n = self.num_samples
        order = self._generator.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            # Chunks are whole numbers of batches, so only the data set's last batch can be short.
            chunk = self.bucket_batches * self.batch_size
            order = np.concatenate([part[np.argsort(self.lengths[part], kind="stable")]
                                    for part in np.split(order, range(chunk, n, chunk))])
        batches = np.split(order, range(self.batch_size, n, self.batch_size))[:len(self)]
        if self.bucket and self.shuffle:
            batches = [batches[i] for i in self._generator.permutation(len(batches))]
        return batches

    def _padded(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        holder = self.arrays[0]
        batch, lengths = pad_sequences(list(holder[indices]), self.padding_value)
        if len(self.arrays) == 1:
            return batch, lengths
        targets = self.arrays[1]
        if self.per_step_targets:
            return batch, lengths, pad_sequences(list(targets[indices]), self.target_padding)[0]
        return batch, lengths, targets[indices]

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        # The bookkeeping of DataLoader.__iter__ (its state_dict reads these fields).
        self._epoch_start_state = self._generator.bit_generator.state
        batches = self.epoch_batches()
        start_batch, self._resume_at = self._resume_at, 0
        self._epochs_started += 1
        self._batches_done = start_batch
        for b in range(start_batch, len(batches)):
            self._batches_done = b + 1
            yield self._padded(batches[b])
        self._batches_done = 0

    def __repr__(self) -> str:
        return (f"SequenceLoader({self.num_samples} sequences of length {int(self.lengths.min())}.."
                f"{int(self.lengths.max())}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"bucket={self.bucket}, drop_last={self.drop_last}, seed={self.seed})")
