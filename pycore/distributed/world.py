"""The process group: who am I, how many are we, and the collectives pycore needs.

    import pycore.distributed as dist
    dist.init()                  # under mpiexec: MPI; under plain `python`: a world of one
    dist.rank(), dist.world_size(), dist.is_main()
    loss = dist.allreduce_mean(loss)      # the same number on every rank
    dist.print_main("epoch", epoch)       # printed once, by rank 0

Launch detection. A script must run unchanged with and without mpiexec, and a plain
`python script.py` must never need MPI. So before importing mpi4py we look for the
variables an MPI launcher puts in every rank's environment: PMI_SIZE (MPICH's hydra,
Intel MPI, srun --mpi=pmi2), OMPI_COMM_WORLD_SIZE (Open MPI), PMIX_RANK (PMIx launchers),
MV2_COMM_WORLD_SIZE (MVAPICH2). PYCORE_DISTRIBUTED=1 forces MPI (a launcher that sets
none of these), PYCORE_DISTRIBUTED=0 forces a world of one.

Failure. A rank that raises while the others wait in a collective would hang the job
forever, so under an MPI launcher importing pycore installs a sys.excepthook that prints
the traceback (prefixed with the rank) and calls MPI_Abort (initialising MPI first if
init() has not run yet), which the launcher turns into the end of every rank with a
non-zero exit status, within a second or so. sys.exit() is not an exception: a rank that
must stop the job calls abort().

Threads. N ranks on one machine, each running OpenMP kernels on every core, would run
N times more threads than cores. init() gives each rank its share of the CPUs it may use
(os.sched_getaffinity) among the ranks on the same node that share those CPUs
(MPI_COMM_TYPE_SHARED); OMP_NUM_THREADS or init(threads=...) overrides it.
"""
from __future__ import annotations

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "local_world_size", "is_main",
           "barrier", "abort", "allreduce_mean", "allreduce_sum", "start_allreduce_sum",
           "allgather_object", "broadcast_object",
           "broadcast_parameters", "broadcast_optimizer_state", "run_on_main", "print_main", "launched_under_mpi"]

import os
import pickle
import sys
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from .._checks import integer
from .._threads import set_num_threads

if TYPE_CHECKING:
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer

T = TypeVar("T")

# Variables an MPI launcher sets in each rank's environment (see the module docstring).
_LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")

_INSTALL_HINT = ('pip install "pycore[distributed]" (mpi4py and MPICH from the package index), or on a '
                 "cluster mpi4py built against its own MPI: pip install --no-binary mpi4py mpi4py")


class _World:
    """The communicator and this process' place in it; comm is None in a world of one."""

    def __init__(self, comm: Any = None, local_comm: Any = None) -> None:  # mpi4py communicators
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.local_rank = 0 if local_comm is None else local_comm.Get_rank()
        self.local_size = 1 if local_comm is None else local_comm.Get_size()
        self.local_comm = local_comm


_world: _World | None = None


def launched_under_mpi() -> bool:
    """Whether this process was started by an MPI launcher (see the module docstring).

    Returns:
        bool: True under a launcher's environment variables or PYCORE_DISTRIBUTED=1;
        False with none of them or PYCORE_DISTRIBUTED=0.
    """
    forced = os.environ.get("PYCORE_DISTRIBUTED")
    if forced is not None and forced.strip() in ("0", "1"):
        return forced.strip() == "1"
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def init(threads: int | None = None) -> int:
    """Join the MPI job this process was launched in (a world of one otherwise); idempotent.

    Under a launcher, an uncaught exception on any rank aborts the whole job from the
    moment pycore is imported (see the module docstring).

    Args:
        threads: int >= 1, OpenMP threads per rank; default None: keep OMP_NUM_THREADS
            when it is set, else give this rank its share of the CPUs it may use among the
            ranks of its node that may use the same CPUs (2 ranks on 16 allowed CPUs: 8
            threads each).

    Returns:
        int: the world size.
    """
    global _world
    if threads is not None:
        threads = integer(threads, "threads", minimum=1)
    if _world is None:
        if launched_under_mpi():
            try:
                from mpi4py import MPI
            except ImportError as err:
                raise ImportError(f"pycore.distributed: this process was started by an MPI launcher, but "
                                  f"mpi4py cannot be imported ({err}). Install it: {_INSTALL_HINT}") from err
            # A private copy of COMM_WORLD: the user's own MPI traffic can never match ours.
            comm = MPI.COMM_WORLD.Dup()
            _world = _World(comm, comm.Split_type(MPI.COMM_TYPE_SHARED))
        else:
            _world = _World()
        if threads is None and _world.comm is not None and "OMP_NUM_THREADS" not in os.environ:
            threads = _cpu_share(_world)
    if threads is not None:
        set_num_threads(threads)
    return _world.size


def is_initialized() -> bool:
    """Whether this process has joined its job (as torch.distributed.is_initialized()).

    Returns:
        bool: True once init() has run (every function here that needs the world runs it).
    """
    return _world is not None


def _current() -> _World:
    if _world is None:
        init()
    assert _world is not None  # init() sets it
    return _world


def _cpu_share(world: _World) -> int:
    """CPUs this process may use, divided among the ranks of this node allowed the same CPUs."""
    try:
        mine = frozenset(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        mine = frozenset(range(os.cpu_count() or 1))
    sharing = 1
    if world.local_comm is not None:
        sharing = sum(1 for cpus in world.local_comm.allgather(mine) if cpus == mine)
    return max(1, len(mine) // sharing)


def abort(exit_code: int = 1) -> None:
    """End every rank of the job now (MPI_Abort); in a world of one, sys.exit.

    Args:
        exit_code: int >= 0, the job's exit status; default 1.
    """
    exit_code = integer(exit_code, "exit_code", minimum=0)
    sys.stdout.flush()
    sys.stderr.flush()
    if not launched_under_mpi():
        sys.exit(exit_code)
    from mpi4py import MPI
    (MPI.COMM_WORLD if _world is None or _world.comm is None else _world.comm).Abort(exit_code)


def _install_abort_on_exception() -> None:
    """Make an uncaught exception on any rank end the whole job instead of hanging the others."""
    previous = sys.excepthook

    def abort_job(kind: Any, value: Any, traceback: Any) -> None:
        where = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMIX_RANK", "?")))
        sys.stderr.write(f"pycore.distributed: rank {where} raised an uncaught exception; aborting the MPI job\n")
        previous(kind, value, traceback)
        try:
            abort(1)
        except ImportError:  # no mpi4py: this process ends with the exception's status anyway
            pass

    sys.excepthook = abort_job


if launched_under_mpi():
    _install_abort_on_exception()


def rank() -> int:
    """This process' rank.

    Returns:
        int: 0 .. world_size() - 1.
    """
    return _current().rank


def world_size() -> int:
    """The number of processes in the job.

    Returns:
        int: the ranks (1 without MPI).
    """
    return _current().size


def local_rank() -> int:
    """This process' rank among the ranks on its node.

    Returns:
        int: 0 .. local_world_size() - 1.
    """
    return _current().local_rank


def local_world_size() -> int:
    """The number of ranks on this process' node.

    Returns:
        int: the ranks sharing this node (1 without MPI).
    """
    return _current().local_size


def is_main() -> bool:
    """Whether this is rank 0, the rank that prints, logs and writes checkpoints.

    Returns:
        bool: True on rank 0 (always, without MPI).
    """
    return _current().rank == 0


def barrier() -> None:
    """Wait until every rank got here."""
    world = _current()
    if world.comm is not None:
        world.comm.Barrier()


def print_main(*args: Any, **kwargs: Any) -> None:
    """print() on rank 0 only (flushed, so that lines from a job arrive as they happen).

    Args:
        *args, **kwargs: as print's (flush defaults to True).
    """
    if is_main():
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def allreduce_mean(value: ArrayLike) -> Any:
    """The mean over ranks of a number or an array, identical on every rank (summed in
    float64, so that averaging float32 metrics adds no rounding).

    Args:
        value: a number or a numeric array, of the same shape on every rank.

    Returns:
        A Python float for a number; a new float64 array of its shape for an array.
    """
    total = allreduce_sum(value)
    return total / _current().size


def allreduce_sum(value: ArrayLike) -> Any:
    """The sum over ranks of a number or an array (in float64), identical on every rank.

    Args:
        value: a number or a numeric array, of the same shape on every rank.

    Returns:
        A Python float for a number; a new float64 array of its shape for an array.
    """
    world = _current()
    is_scalar = np.ndim(value) == 0
    try:
        total = np.array(value, dtype=np.float64, order="C", ndmin=1)
    except (TypeError, ValueError):
        raise TypeError(f"allreduce: expected a number or a numeric array, got {type(value).__name__}") from None
    if world.comm is not None:
        world.comm.Allreduce(_in_place(), total)
    return float(total[0]) if is_scalar else total.reshape(np.shape(value))


def start_allreduce_sum(array: ArrayLike) -> Callable[[], np.ndarray]:
    """Start summing an array over ranks without waiting (MPI_Iallreduce). MPI moves it on
    inside later MPI calls, e.g. DistributedDataParallel's backward.

    Args:
        array: a numeric array (copied as float64), of the same shape on every rank.

    Returns:
        finish(): waits and returns the sum (a new float64 array, identical on every rank).
    """
    world = _current()
    total = np.array(array, dtype=np.float64, order="C")
    if world.comm is None:
        return lambda: total
    request = world.comm.Iallreduce(_in_place(), total)

    def finish() -> np.ndarray:
        request.Wait()
        return total
    return finish


def allgather_object(obj: T) -> list[T]:
    """Every rank's value, on every rank.

    Args:
        obj: any picklable value.

    Returns:
        list: [rank 0's obj, rank 1's obj, ...].
    """
    world = _current()
    return [obj] if world.comm is None else world.comm.allgather(obj)


def run_on_main(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on rank 0 only; every rank returns its result, or raises its exception.

    For work that one rank must do while the others wait for it (writing a checkpoint,
    reading one): the others leave only once rank 0 is done, and an error on rank 0 is
    raised on every rank (the same exception when it pickles, else a RuntimeError naming
    it), so no rank is left waiting in a later collective.

    Args:
        fn: the function to run on rank 0; its result must pickle.
        *args: its arguments.

    Returns:
        fn(*args)'s value, on every rank.
    """
    world = _current()
    if world.comm is None:
        return fn(*args)
    outcome: tuple[bool, Any] | None = None
    error: Exception | None = None
    if world.rank == 0:
        try:
            outcome = (True, fn(*args))
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
            error = err
            try:
                pickle.dumps(err)
                outcome = (False, err)
            except Exception:  # noqa: BLE001 - an exception that cannot travel: send its text
                outcome = (False, RuntimeError(f"rank 0 raised {type(err).__name__}: {err}"))
    ok, value = world.comm.bcast(outcome, root=0)
    if ok:
        return value
    if error is not None:
        raise error
    raise value


def broadcast_object(obj: T, root: int = 0) -> T:
    """Rank root's value, on every rank.

    Args:
        obj: any picklable value (only rank root's is read).
        root: int, the rank that sends; default 0.

    Returns:
        Rank root's obj.
    """
    world = _current()
    root = _root(root, world)
    return obj if world.comm is None else world.comm.bcast(obj, root=root)


def broadcast_parameters(module: Module, root: int = 0) -> None:
    """Copy rank root's parameters and buffers (the module's state_dict) into every rank's,
    in place; ValueError on every rank when the ranks' models differ.

    Args:
        module: Module, the same architecture on every rank.
        root: int, the rank whose values are copied; default 0.
    """
    world = _current()
    root = _root(root, world)
    if world.comm is None:
        return
    _check_same_structure(world, {k: (v.shape, str(v.dtype)) for k, v in module.state_dict().items()},
                          "the model")
    for array in module.state_dict().values():
        if array.flags.c_contiguous and array.flags.writeable:
            world.comm.Bcast(array, root=root)
        else:
            copy = np.ascontiguousarray(array)
            world.comm.Bcast(copy, root=root)
            array[...] = copy


def broadcast_optimizer_state(optimizer: Optimizer, root: int = 0) -> None:
    """Give every rank rank root's optimizer hyperparameters and state (momentum, Adam moments).

    Args:
        optimizer: Optimizer (its state_dict / load_state_dict), over the same parameters
            on every rank.
        root: int, the rank whose state is copied; default 0.
    """
    world = _current()
    root = _root(root, world)
    if world.comm is None:
        return
    state = world.comm.bcast(optimizer.state_dict() if world.rank == root else None, root=root)
    if world.rank != root:
        optimizer.load_state_dict(state)


def _root(root: int, world: _World) -> int:
    root = integer(root, "root", minimum=0)
    if root >= world.size:
        raise ValueError(f"root: expected a rank below the world size {world.size}, got {root}")
    return root


def _check_same_structure(world: _World, description: dict[str, Any], what: str) -> None:
    """ValueError on every rank (so that none is left waiting) when the ranks' descriptions differ."""
    descriptions = world.comm.allgather(description)
    for other_rank, other in enumerate(descriptions):
        if other != description:
            differing = sorted(k for k in set(description) | set(other) if description.get(k) != other.get(k))
            raise ValueError(f"pycore.distributed: {what} differs between rank {world.rank} and rank "
                             f"{other_rank} (entries {differing[:5]}); every rank must build the same one")


def _in_place() -> Any:
    from mpi4py import MPI
    return MPI.IN_PLACE
