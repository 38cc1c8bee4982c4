"""DistributedDataParallel: one model replica per rank, gradients averaged in backward.

    model = dist.DistributedDataParallel(build_model())   # every rank now holds rank 0's weights
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dist.broadcast_optimizer_state(optimizer)             # when it was loaded from a checkpoint
    for xb, yb in loader:                                 # each rank its own shard (DistributedSampler)
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())                # returns with gradients averaged over ranks
        optimizer.step()                                  # same gradients, same weights on every rank

Buckets. At construction every parameter's .grad is replaced by a view into a flat
bucket buffer (PyTorch's gradient_as_bucket_view=True), parameters taken in reverse
order, the order backward produces them, a bucket closed when it reaches bucket_cap_mb
or its dtype changes. A bucket is then all-reduced in place (MPI_IN_PLACE), one
MPI call for all of its tensors and no copies, and divided by the world size.

Overlap. For a Sequential (nested ones are flattened) backward runs the layers itself,
in reverse; as soon as the layers behind a bucket have produced its gradients the
bucket's non-blocking all-reduce (MPI_Iallreduce) starts, and the remaining layers'
backward runs while it travels. MPI progresses a non-blocking collective only inside MPI
calls (no progress thread: it would take a core from the kernels), so after every layer
a MPI_Testall moves the pending ones on. Any other model runs its own backward, after
which all buckets are started together and waited for.

Identical ranks. All ranks must end every step with the same bits, or their weights
drift apart. MPI does not promise that an all-reduce gives every rank the same bits, but
MPICH's and Open MPI's algorithms do: recursive doubling (small messages) forms a + b on
one partner and b + a on the other, which IEEE addition makes equal; reduce-scatter +
allgather and ring (large messages) reduce each element on one rank and copy it to the
others. So one Iallreduce is used, not a reduce + broadcast (which would double the
latency and funnel all traffic through rank 0); tests/test_distributed.py checks the
bits on 2 and 3 ranks.

BatchNorm keeps per-rank batch statistics (PyTorch DDP's default): each rank normalises
with its own shard's mean and variance and its running statistics stay its own; rank 0's
are the ones a checkpoint saves.
"""
from __future__ import annotations

__all__ = ["DistributedDataParallel"]

import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .._checks import FLOAT_DTYPES
from ..nn.module import Module, Parameter, Sequential
from . import world as _world


class _Bucket:
    """A flat buffer holding the gradients of `params` back to back, and its pending request."""

    __slots__ = ("buffer", "params", "views", "request")

    def __init__(self, params: list[Parameter]) -> None:
        self.params = params
        self.buffer = np.zeros(sum(p.size for p in params), dtype=params[0].dtype)
        self.views: list[np.ndarray] = []
        offset = 0
        for p in params:
            view = self.buffer[offset: offset + p.size].reshape(p.shape)
            if p.grad is not None:
                view[...] = p.grad
            p.grad = view
            self.views.append(view)
            offset += p.size
        self.request: Any = None  # an mpi4py Request while the all-reduce travels

    def rebind(self) -> None:
        """Put back any gradient array that was replaced (e.g. by module.to()) as a view into the buffer."""
        for p, view in zip(self.params, self.views):
            if p.grad is not view:
                if p.grad is None or p.grad.shape != view.shape or p.grad.dtype != view.dtype:
                    raise RuntimeError("DistributedDataParallel: a parameter's shape or dtype changed after "
                                       "wrapping; wrap the model after converting it")
                view[...] = p.grad
                p.grad = view


def _stages(module: Module) -> Iterator[Module]:
    """The modules whose backward runs one after the other (in reverse) for `module`."""
    if isinstance(module, Sequential):
        for child in module.children():
            yield from _stages(child)
    else:
        yield module


class DistributedDataParallel:
    """Data-parallel wrapper of a pycore model (PyTorch's name and role).

    Args:
        module: Module, the model; every rank must build the same architecture.
        bucket_cap_mb: float > 0, default 0.1: a bucket is closed once it holds this many MB of gradients. Small
            (0.1 MB), since CPU models carry a few MB of gradients: LeNet-5's 0.25 MB
            make 2 buckets, the first (the fully connected layers) travelling while
            the convolutions' backward runs.
        broadcast_buffers: bool, also copy rank 0's buffers (BatchNorm running statistics)
            at construction; default True. Parameters are always copied from rank 0.

    forward, backward, parameters(), named_parameters(), state_dict() and
    load_state_dict() pass through to `.module`, without PyTorch's "module." prefix on
    the names, so a checkpoint written from a wrapped model loads into a bare one.
    `communication_seconds` accumulates the time backward spent in MPI calls.
    """

    module: Module
    world: _world._World
    communication_seconds: float
    _stages: list[Module]
    _buckets: list[_Bucket]
    _ready_after: dict[int, list[_Bucket]]

    def __init__(self, module: Module, bucket_cap_mb: float = 0.1, broadcast_buffers: bool = True) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a pycore Module, got {type(module).__name__}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb: expected a positive number, got {bucket_cap_mb!r}")
        world = _world._current()
        self.__dict__.update(module=module, world=world, communication_seconds=0.0)
        params = list({id(p): p for p in module.parameters()}.values())  # a shared (tied) one once
        for name, p in module.named_parameters():
            if p.data.dtype not in FLOAT_DTYPES:
                raise TypeError(f"DistributedDataParallel: parameter {name} is {p.data.dtype}, "
                                "expected float32 or float64")
        if world.comm is not None:
            if broadcast_buffers:
                _world.broadcast_parameters(module)
            else:
                _world._check_same_structure(world, {k: (p.shape, str(p.dtype)) for k, p in
                                                     module.named_parameters()}, "the model")
                for p in params:
                    world.comm.Bcast(p.data, root=0)
        self.__dict__["_stages"] = list(_stages(module))
        # A parameter's gradient is final once the earliest stage that uses it ran backward.
        # One that no stage owns is final only at the end (stage 0).
        owner: dict[int, int] = {}  # id(parameter) -> stage
        for s, stage in enumerate(self._stages):
            for p in stage.parameters():
                owner.setdefault(id(p), s)
        # Backward finishes the stages in reverse order: fill buckets in that order.
        ordered = sorted(params, key=lambda p: -owner.get(id(p), 0))
        cap = bucket_cap_mb * 2**20
        buckets: list[list[Parameter]] = []
        current: list[Parameter] = []
        for p in ordered:
            if current and (p.dtype != current[0].dtype or sum(q.data.nbytes for q in current) >= cap):
                buckets.append(current)
                current = []
            current.append(p)
        if current:
            buckets.append(current)
        self.__dict__["_buckets"] = [_Bucket(b) for b in buckets]
        ready_after: dict[int, list[_Bucket]] = {}  # stage index -> the buckets whose last gradient that stage produces
        for bucket in self._buckets:
            ready_after.setdefault(min(owner.get(id(p), 0) for p in bucket.params), []).append(bucket)
        self.__dict__["_ready_after"] = ready_after

    # -- passing through -----------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)  # (through Module.__call__: a composite records its forward)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped module's forward, unchanged (gradients are averaged in backward).

        Args:
            *args, **kwargs: the module's forward arguments.

        Returns:
            What the module's forward returns.
        """
        return self.module.forward(*args, **kwargs)

    def parameters(self) -> list[Parameter]:
        return self.module.parameters()

    def named_parameters(self, prefix: str = "") -> Iterable[tuple[str, Parameter]]:
        return self.module.named_parameters(prefix)

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict)

    def train(self, mode: bool = True) -> DistributedDataParallel:
        self.module.train(mode)
        return self

    def eval(self) -> DistributedDataParallel:
        return self.train(False)

    def __getattr__(self, name: str) -> Any:  # training, requires_input_grad, zero_grad, named_modules, ...
        module = self.__dict__.get("module")
        if module is None:
            raise AttributeError(name)
        return getattr(module, name)

    def __setattr__(self, name: str, value: Any) -> None:  # model.requires_input_grad = False reaches the module
        if name in self.__dict__:
            self.__dict__[name] = value
        else:
            setattr(self.module, name, value)

    def __repr__(self) -> str:
        return f"DistributedDataParallel(world_size={self.world.size}, buckets={len(self._buckets)},\n  " + \
            repr(self.module).replace("\n", "\n  ") + "\n)"

    # -- backward with averaging -----------------------------------------------------
    def backward(self, grad: Any, *args: Any, **kwargs: Any) -> Any:
        """The module's backward, then every gradient averaged over the ranks (in place).

        Args:
            grad: the gradient of the loss with respect to the forward's output.
            *args, **kwargs: passed on to the module's backward.

        Returns:
            What the module's backward returns (the input gradient, or None).
        """
        for bucket in self._buckets:
            bucket.rebind()
        comm = self.world.comm
        if comm is None:
            return self.module.backward(grad, *args, **kwargs)
        if len(self._stages) == 1 or args or kwargs:
            result = self.module.backward(grad, *args, **kwargs)
            self._start(self._buckets)
        else:
            result = grad
            for s in range(len(self._stages) - 1, -1, -1):
                result = self._stages[s].backward(result)
                self._start(self._ready_after.get(s, ()))
                if result is None:  # no input gradient: the earlier layers have nothing to do (as Sequential)
                    break
            self._start([b for b in self._buckets if b.request is None])
        self._finish()
        return result

    def _start(self, buckets: Iterable[_Bucket]) -> None:
        from mpi4py import MPI
        started = time.perf_counter()
        comm = self.world.comm
        for bucket in buckets:
            bucket.request = comm.Iallreduce(MPI.IN_PLACE, bucket.buffer, op=MPI.SUM)
        pending = [b.request for b in self._buckets if b.request is not None]
        if pending:
            MPI.Request.Testall(pending)  # move the pending all-reduces on (see the module docstring)
        self.communication_seconds += time.perf_counter() - started

    def _finish(self) -> None:
        from mpi4py import MPI
        started = time.perf_counter()
        MPI.Request.Waitall([b.request for b in self._buckets])
        for bucket in self._buckets:
            bucket.request = None
            bucket.buffer /= self.world.size
        self.communication_seconds += time.perf_counter() - started
