"""DataLoader: mini-batches over numpy arrays that share their first axis.

    loader = DataLoader(x_train, y_train, batch_size=64, shuffle=True, seed=0)
    for xb, yb in loader:          # one epoch; iterate again for the next
        ...

Shuffling draws one permutation per epoch from the loader's own generator, so a
seeded loader gives the same batches in every run. `state_dict()` captures where the
loader stands (the generator state and how far into the current epoch it got) as
plain Python values that a checkpoint stores; `load_state_dict()` puts a fresh loader
back there, so a resumed run sees exactly the batches the uninterrupted run would have.

Batches are always copies (as PyTorch's loader gives): normalising a batch in place never
changes the dataset. Two hooks shape the batches:

    transform(inputs, rng) -> inputs      e.g. random shifts for augmentation; rng is a numpy
                                          Generator seeded from (seed, epoch, batch index), so
                                          a resumed run draws the same shifts
    collate_fn(*arrays) -> batch          what the loader yields, e.g.
                                          lambda x, side, y: ((x, side), y)
"""
from __future__ import annotations

__all__ = ["DataLoader"]

import copy
from collections.abc import Iterator
from typing import Any, Callable, Protocol

import numpy as np

from ._checks import integer
from ._context import default_generator, generator_from_state


class Sampler(Protocol):
    """What DataLoader(sampler=...) takes: an iterable of sample indices with len()."""

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...


#: DataLoader's transform hook: (inputs batch, rng) -> inputs batch.
Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
#: DataLoader's collate_fn hook: (*batch arrays) -> what the loader yields.
CollateFn = Callable[..., Any]


class DataLoader:
    """Iterate over mini-batches of one or more numpy arrays.

    Args:
        *arrays: numpy arrays with a common first axis of length N (samples).
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: draw a new random order every epoch.
        drop_last: skip the last batch when it has fewer than batch_size samples.
        seed: seed of the shuffling generator. None draws one from pycore's generator
            (so `pycore.manual_seed` makes the run reproducible).
        sampler: an alternative to shuffle: an object whose iteration yields the sample
            indices of an epoch and whose len() is their count, e.g.
            pycore.distributed.DistributedSampler (call its set_epoch each epoch).
        transform: None or a function (inputs batch, rng) -> inputs batch, applied to the
            first array's batch (e.g. augmentation); rng is a numpy Generator seeded from
            (seed, epoch, batch index), so the draws survive a resume.
        collate_fn: None or a function (*batch arrays) -> the value yielded.

    Iterating yields, per batch, a tuple with one copy per array (for a single array,
    the array itself), or collate_fn's value. len(loader) is the number of batches in an
    epoch.
    """

    def __init__(self, *arrays: np.ndarray, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, transform: Transform | None = None,
                 collate_fn: CollateFn | None = None, sampler: Sampler | None = None) -> None:
        if not arrays:
            raise ValueError("DataLoader: expected at least one array, got none")
        checked = []
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"DataLoader: argument {i} must be a numpy array, got {type(a).__name__}")
            if a.ndim == 0:
                raise ValueError(f"DataLoader: argument {i} must have a first (sample) axis, got a 0-d array")
            checked.append(a)
        lengths = [len(a) for a in checked]
        if len(set(lengths)) != 1:
            raise ValueError(f"DataLoader: the arrays must share their first axis, got lengths {lengths}")
        self.arrays = tuple(checked)
        self.batch_size = integer(batch_size, "batch_size", minimum=1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if sampler is not None and (
            self.shuffle or not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__")
        ):
            raise ValueError("sampler: expected an iterable of indices with len(), and shuffle=False with it "
                             f"(the sampler decides the order), got {type(sampler).__name__} and shuffle={shuffle}")
        self.sampler = sampler
        if seed is None:
            seed = int(default_generator().integers(2**63))
        self.seed = integer(seed, "seed", minimum=0)
        for name, hook in (("transform", transform), ("collate_fn", collate_fn)):
            if hook is not None and not callable(hook):
                raise TypeError(f"DataLoader: {name} must be a function or None, got {type(hook).__name__}")
        self.transform, self.collate_fn = transform, collate_fn
        self._generator = np.random.default_rng(self.seed)
        self._epoch_start_state = self._generator.bit_generator.state  # before this epoch's shuffle
        self._epochs_started = 0
        self._batches_done = 0  # in the current epoch; 0 between epochs
        self._resume_at = 0  # batches to skip on the next iteration (after load_state_dict)

    @property
    def num_samples(self) -> int:
        """Samples per epoch: the arrays' length, or the sampler's."""
        return len(self.arrays[0]) if self.sampler is None else len(self.sampler)

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def __iter__(self) -> Iterator[Any]:
        self._epoch_start_state = self._generator.bit_generator.state
        order = self._generator.permutation(self.num_samples) if self.shuffle else None
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64, count=len(self.sampler))
        start_batch, self._resume_at = self._resume_at, 0
        self._epochs_started += 1
        self._batches_done = start_batch
        for b in range(start_batch, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            # a copy either way (a slice's .copy(), or a gather): the dataset is never handed out
            batch = [a[lo:hi].copy() for a in self.arrays] if order is None else [a[order[lo:hi]] for a in self.arrays]
            if self.transform is not None:
                batch[0] = self.transform(batch[0], np.random.default_rng((self.seed, self._epochs_started, b)))
            self._batches_done = b + 1
            if self.collate_fn is not None:
                yield self.collate_fn(*batch)
            else:
                yield batch[0] if len(batch) == 1 else tuple(batch)
        self._batches_done = 0

    # -- resuming --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands.

        Returns:
            dict of plain values (ints, strings, dicts): generator (the shuffling
            generator's state at the start of the current epoch, or of the next one
            between epochs), batches_done (batches already yielded in the current epoch; 0
            between epochs), epoch (epochs started so far) and seed.
        """
        in_epoch = self._batches_done not in (0, len(self))
        generator = self._epoch_start_state if in_epoch else self._generator.bit_generator.state
        return {"epoch": self._epochs_started - (1 if in_epoch else 0),
                "batches_done": self._batches_done if in_epoch else 0,
                "generator": copy.deepcopy(generator), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`: the next iteration yields the rest of the interrupted
        epoch, or the next epoch, exactly as the original loader would.

        Args:
            state: dict, from state_dict() of a loader over the same data and batch size.
        """
        if not isinstance(state, dict) or not {"epoch", "batches_done", "generator"} <= set(state):
            raise ValueError("DataLoader.load_state_dict: expected a dict with keys 'epoch', "
                             f"'batches_done' and 'generator', got {state!r:.200}")
        done = integer(state["batches_done"], "state['batches_done']", minimum=0)
        if done > len(self):
            raise ValueError(f"DataLoader.load_state_dict: batches_done={done} is more than the "
                             f"{len(self)} batches of an epoch (was the data or batch size changed?)")
        generator = generator_from_state(state["generator"], "DataLoader.load_state_dict: state['generator']")
        epochs = integer(state["epoch"], "state['epoch']", minimum=0)
        seed = integer(state.get("seed", self.seed), "state['seed']", minimum=0)
        self._generator = generator
        self._epoch_start_state = self._generator.bit_generator.state
        self._epochs_started = epochs
        self._batches_done = 0
        self._resume_at = done
        self.seed = seed

    def __repr__(self) -> str:
        shapes = ", ".join(str(a.shape) for a in self.arrays)
        return (f"DataLoader({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed})")
