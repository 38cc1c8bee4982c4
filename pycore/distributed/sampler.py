"""Sharding the data over ranks: DistributedSampler for DataLoader, shard_stream for text.

Every rank must run the same number of steps, or one of them would wait forever in a
gradient all-reduce that the others never start. Both helpers therefore give every rank
a shard of exactly the same size.
"""
from __future__ import annotations

__all__ = ["DistributedSampler", "shard_stream"]

from collections.abc import Iterator, Sized

import numpy as np
from numpy.typing import ArrayLike

from .._checks import integer
from . import world as _world


def _placement(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(num_replicas, rank), defaulting to the running job's, checked against each other."""
    num_replicas = _world.world_size() if num_replicas is None else integer(num_replicas, "num_replicas", minimum=1)
    rank = _world.rank() if rank is None else integer(rank, "rank", minimum=0)
    if rank >= num_replicas:
        raise ValueError(f"rank: expected a rank below num_replicas={num_replicas}, got {rank}")
    return num_replicas, rank


class DistributedSampler:
    """This rank's indices into a dataset of `dataset` samples, as torch's DistributedSampler.

    Args:
        dataset: the number of samples N, or anything with len() (an array, a dataset).
        num_replicas: int, the number of ranks R; default None: the running job's world size.
        rank: int, this rank r in 0 .. R - 1; default None: the running job's rank.
        shuffle: bool, a new permutation of all N indices every epoch, drawn from
            seed + epoch, so every rank draws the same one without communicating; default True.
        seed: int >= 0, shared by all ranks; default 0.
        drop_last: bool, drop the tail so that N divides evenly (each rank floor(N / R)
            samples); default False: pad by repeating indices from the start (ceil(N / R)).

    Rank r takes positions r, r + R, r + 2R, ... of that order: the shards are disjoint
    (up to the padding) and all have len(sampler) samples. Call set_epoch(epoch) before
    each epoch, as in PyTorch, or every epoch sees the same order.

        loader = DataLoader(x, y, batch_size=32, sampler=DistributedSampler(len(x), seed=0))
    """

    def __init__(self, dataset: int | Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        size: object = dataset if isinstance(dataset, (int, np.integer)) and not isinstance(dataset, bool) else None
        if size is None:
            if not isinstance(dataset, Sized):  # has __len__
                raise TypeError(f"dataset: expected a sample count or something with len(), got "
                                f"{type(dataset).__name__}")
            size = len(dataset)
        self.dataset_size = integer(size, "dataset", minimum=1)
        self.num_replicas, self.rank = _placement(num_replicas, rank)
        self.shuffle = bool(shuffle)
        self.seed = integer(seed, "seed", minimum=0)
        self.drop_last = bool(drop_last)
        if self.drop_last and self.dataset_size < self.num_replicas:
            raise ValueError(f"DistributedSampler: drop_last=True leaves nothing of {self.dataset_size} samples "
                             f"for {self.num_replicas} ranks")
        if self.drop_last:
            self.num_samples = self.dataset_size // self.num_replicas
        else:
            self.num_samples = -(-self.dataset_size // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch `epoch` (the same on every rank that passes the same epoch).

        Args:
            epoch: int >= 0.
        """
        self.epoch = integer(epoch, "epoch", minimum=0)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch.

        Returns:
            ndarray: int64, len(self) indices.
        """
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        if self.total_size > self.dataset_size:  # pad by repeating from the start (as often as needed)
            order = np.resize(order, self.total_size)
        return order[self.rank: self.total_size: self.num_replicas].astype(np.int64, copy=False)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"DistributedSampler({self.dataset_size} samples, rank {self.rank} of {self.num_replicas}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch})")


def shard_stream(ids: ArrayLike, global_batch_size: int, num_replicas: int | None = None,
                 rank: int | None = None) -> np.ndarray:
    """This rank's part of a 1-D token stream for truncated BPTT with global_batch_size streams.

    A single process lays the stream out as B = global_batch_size parallel streams
    (pycore.train.batchify: stream n is the n-th of B consecutive pieces). Rank r of R
    gets the consecutive ids of streams r*B/R ... (r+1)*B/R - 1, so that
    StreamBatches(shard, B // R, seq_len) on each rank together are exactly the single
    process' StreamBatches(ids, B, seq_len): same chunks, same count on every rank.

    Args:
        ids: 1-D array, the token stream (the same on every rank).
        global_batch_size: int, B, a multiple of R.
        num_replicas: int, R; default None: the running job's world size.
        rank: int, r; default None: the running job's rank.

    Returns:
        ndarray: a view of this rank's consecutive ids (B / R streams' worth).
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids: expected a 1-D token stream, got shape {ids.shape}")
    global_batch_size = integer(global_batch_size, "global_batch_size", minimum=1)
    num_replicas, rank = _placement(num_replicas, rank)
    if global_batch_size % num_replicas:
        raise ValueError(f"global_batch_size: {global_batch_size} streams cannot be split evenly over "
                         f"{num_replicas} ranks; use a multiple of {num_replicas}")
    stream_len = len(ids) // global_batch_size
    if stream_len < 2:
        raise ValueError(f"ids: {len(ids)} ids are too few for {global_batch_size} streams of at least 2 ids")
    per_rank = stream_len * (global_batch_size // num_replicas)
    return ids[rank * per_rank: (rank + 1) * per_rank]
