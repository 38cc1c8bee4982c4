"""fit(..., distributed=True): the parts of the training loop that talk to the other ranks.

Every rank runs the same fit() on its own shard of the data. Everything that decides how
many collectives run (batches per epoch, epochs, accumulate, validation, resume) must be
the same on every rank, or one rank would wait forever in an all-reduce that the others
never start: check_loaders() compares them (one allgather) before anything else and raises
the same ValueError on every rank. After that, fit keeps the ranks in step:

- each batch, one all-reduce of [loss * n, n, metric sums..., non-finite flag] gives every
  rank the global batch loss and metric sums, and lets all ranks skip or raise together
  on a non-finite loss. It is started before backward and finished after it, so it
  travels with the gradients and adds no wait of its own; every rank therefore runs
  backward even after a non-finite loss (all must enter its gradient all-reduce), and
  the ranks drop that batch's gradients together;
- the gradients are averaged by DistributedDataParallel's backward, so every rank takes
  the same optimizer step and stays bit-identical;
- validation over a loader sharded by a DistributedSampler sums the ranks' sums; a loader
  without one holds the whole set, which rank 0 evaluates and sends to the others;
- checkpoints are written and read by rank 0 (run_on_main): the others wait for it, get
  its errors, and receive the checkpoint's contents, so no shared file system is needed.
"""
from __future__ import annotations

__all__: list[str] = []

import os
from typing import TYPE_CHECKING, Any

from .. import distributed as dist
from .. import serialization
from ..data import DataLoader

if TYPE_CHECKING:
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer

_SAMPLER_HINT = "DataLoader(x, y, batch_size=..., sampler=pycore.distributed.DistributedSampler(len(x)))"


def prepare(model: Module | dist.DistributedDataParallel, optimizer: Optimizer,
            resume: str | os.PathLike[str] | None) -> dist.DistributedDataParallel:
    """Join the job, give every rank rank 0's weights (and optimizer state, unless a
    checkpoint will set it) and return the model wrapped in DistributedDataParallel."""
    dist.init()
    if not isinstance(model, dist.DistributedDataParallel):
        model = dist.DistributedDataParallel(model)  # broadcasts rank 0's parameters and buffers
    if resume is None:
        dist.broadcast_optimizer_state(optimizer)
    return model


def check_loaders(train_loader: Any, val_loader: Any, settings: dict[str, Any]) -> None:
    """ValueError on every rank when a loader is not sharded for this job, or when the ranks
    disagree on anything that sets the number of collectives (settings: fit's arguments)."""
    ranks, rank = dist.world_size(), dist.rank()
    problem = _loader_problem(train_loader, "train_loader", ranks, rank, required=True)
    if problem is None and val_loader is not None:
        problem = _loader_problem(val_loader, "val_loader", ranks, rank, required=False)
    description = dict(settings)
    if problem is None:
        sampler = train_loader.sampler
        description["len(train_loader)"] = len(train_loader)
        description["train_loader.sampler"] = (sampler.dataset_size, sampler.seed, sampler.shuffle, sampler.drop_last)
        description["val_loader"] = (None if val_loader is None else
                                     "sharded" if is_sharded(val_loader) else "whole on each rank")
    everyone = dist.allgather_object((problem, description))
    for other_rank, (other_problem, _) in enumerate(everyone):
        if other_problem is not None:
            raise ValueError(f"fit(distributed=True): {other_problem}"
                             + (f" (on rank {other_rank})" if ranks > 1 else ""))
    for other_rank, (_, other) in enumerate(everyone):
        differing = sorted(k for k in description if description[k] != other.get(k))
        if differing:
            values = "; ".join(f"{k}: {description[k]!r} vs {other.get(k)!r}" for k in differing)
            raise ValueError(f"fit(distributed=True): rank {rank} and rank {other_rank} differ in {values}; every "
                             "rank must call fit with the same settings and loaders with as many batches")


def _loader_problem(loader: Any, name: str, ranks: int, rank: int, required: bool) -> str | None:
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, dist.DistributedSampler):
        if not required:
            return None
        if not isinstance(loader, DataLoader):
            return f"{name} must be a pycore DataLoader sharded over the ranks, {_SAMPLER_HINT}; " \
                   f"got {type(loader).__name__}"
        return f"{name}.sampler must be a pycore.distributed.DistributedSampler, so that each rank " \
               f"trains on its own shard ({_SAMPLER_HINT}); got {type(sampler).__name__}"
    if sampler.num_replicas != ranks:
        return f"{name}.sampler has num_replicas={sampler.num_replicas}, but the job has {ranks} ranks"
    if sampler.rank != rank:
        return f"{name}.sampler was made for rank {sampler.rank}, but this process is rank {rank}"
    arrays = getattr(loader, "arrays", None)
    if arrays and sampler.dataset_size != len(arrays[0]):
        return f"{name}.sampler covers {sampler.dataset_size} samples, but the loader holds {len(arrays[0])}"
    return None


def set_epoch(loader: DataLoader) -> None:
    """Before a pass over the train loader: the sampler's order for the loader's pass number,
    which a checkpoint's loader_state carries, so a resumed run draws the same orders."""
    _sampler(loader).set_epoch(loader.state_dict()["epoch"])


def _sampler(loader: DataLoader) -> dist.DistributedSampler:
    """The loader's DistributedSampler: check_loaders requires one in the train loader, and
    real_samples' caller asks is_sharded first."""
    sampler = loader.sampler
    if not isinstance(sampler, dist.DistributedSampler):
        raise TypeError(f"fit(distributed=True): expected a loader with a DistributedSampler, got sampler "
                        f"{type(sampler).__name__}")
    return sampler


def is_sharded(loader: Any) -> bool:
    return isinstance(getattr(loader, "sampler", None), dist.DistributedSampler)


def real_samples(loader: DataLoader) -> int:
    """How many of this rank's samples are not padding: DistributedSampler(drop_last=False)
    repeats the first indices to fill the last positions (10 samples on 3 ranks: 4 each,
    rank 1's and rank 2's last ones repeated), which validation must not count twice."""
    sampler = _sampler(loader)
    if sampler.drop_last:
        return len(sampler)
    return len(range(sampler.rank, sampler.dataset_size, sampler.num_replicas))


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """serialization.read_checkpoint on rank 0, its result (or its error) on every rank."""
    return dist.run_on_main(serialization.read_checkpoint, path)
