"""Data-parallel training over MPI (mpi4py): one process per rank, gradients all-reduced.

    mpiexec -n 2 python train.py        # the same script also runs as plain `python train.py`

See world.py (init, rank, collectives, failure, threads), ddp.py (DistributedDataParallel)
and sampler.py (DistributedSampler, shard_stream). mpi4py is imported only when the
process was started by an MPI launcher, so pycore works without it.
"""
from . import ddp, sampler, world
from .ddp import *  # noqa: F401,F403
from .sampler import *  # noqa: F401,F403
from .world import *  # noqa: F401,F403

__all__ = [*world.__all__, *ddp.__all__, *sampler.__all__]
