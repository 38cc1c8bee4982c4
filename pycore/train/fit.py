"""fit(): the training loop with progress, history and callbacks.

    history = pycore.train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05),
                               train_loader, epochs=5, val_loader=val_loader)
    history["val_accuracy"][-1]

Each step follows llm.c's order:

    batch -> forward -> loss -> zero_grad -> backward -> (clip) -> optimizer step

A non-finite loss or gradient stops training with an error naming the epoch and step
(on_nonfinite="raise", the default), or skips that batch's update (on_nonfinite="skip");
either way the weights keep their values from before the step. A KeyboardInterrupt
(Ctrl-C) arriving during an optimizer step is held back until the step has finished, so
an interrupted run never has half-updated weights: save them and resume.

Inputs: a loader may be any re-iterable (pycore.data.DataLoader, a list of batches, ...)
yielding `(x, y)`, `((a, b), y)` (several model inputs: model(a, b)) or `(a, b, y)`. A
one-shot iterator or generator can only feed one epoch, unless `steps_per_epoch` says how
many batches make an epoch (then fit draws that many from it per epoch, Keras-style; an
endless generator is the usual use). Float inputs and float targets are cast to the
model's dtype.

Resuming: ModelCheckpoint writes everything fit needs to continue (weights, optimizer,
scheduler, loader position, pycore's random generator, counters, history and every
callback's state_dict()), and `fit(..., epochs=total, resume=path)` puts it all back and
runs the remaining epochs, so that a run interrupted and resumed any number of times ends
exactly where one uninterrupted run ends.

Data-parallel (`mpiexec -n N python train.py`, see pycore.distributed):

    loader = DataLoader(x, y, batch_size=64 // dist.world_size(), sampler=dist.DistributedSampler(len(x)))
    fit(model, loss_fn, optimizer, loader, epochs, val_loader=..., distributed=True)

gives the single-process run with batch 64: rank 0's weights everywhere, gradients
averaged, and every logged value (loss, metrics, validation, samples_per_s) taken over
all ranks, so history, EarlyStopping and schedulers agree on every rank (see _data_parallel).
"""
from __future__ import annotations

__all__ = ["fit", "evaluate", "History", "NonFiniteLossError", "Trainer", "plot_history", "METRICS"]

import math
import numbers
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any, Callable, Literal, Union, cast

import numpy as np

from .._checks import integer
from .._context import no_grad

if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10+, here only for mypy (annotations are not evaluated)

    from ..distributed.ddp import DistributedDataParallel
    from ..nn.module import Module, Parameter
    from ..optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
    from ..optim.optimizer import Optimizer
    from .callbacks import Callback

    #: A metric for fit(metrics=...): a name ("accuracy", "top5") or f(logits, target) -> float.
    MetricT = Union[str, Callable[[Any, Any], float]]
    #: fit's model: a pycore Module, or one already wrapped for data-parallel training.
    ModelT = Union[Module, DistributedDataParallel]

#: A metric as fit computes it: f(logits, target) -> (sum over the batch, count), or None when
#: it does not apply to these targets.
MetricFn = Callable[[Any, Any], Union[tuple[float, float], None]]
#: What a distributed batch's all-reduce gives: (global sums or None, batch loss, batch size, problem).
_SharedBatch = tuple[Union[np.ndarray, None], float, int, Union[str, None]]

#: What fit(metrics=[...]) accepts: "accuracy", "topK" (top-K accuracy, e.g. "top5"), or a
#: function f(logits, target) -> float, averaged over samples (see fit's metrics argument).
METRICS = ("accuracy", "topK (e.g. top5)", "a function (logits, target) -> float")
SCHEDULER_INTERVALS = ("epoch", "step")


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN or Inf during fit()."""


class History(dict):
    """Per-epoch results: a dict of lists, one entry per epoch.

    Keys: epoch (its number), loss and each metric (accuracy, top5, a function's name), the same with "val_"
    with a val_loader, lr (the first param group's rate during the epoch's last step),
    time (seconds of training in the epoch), samples_per_s, skipped (batches skipped for a
    non-finite loss, with on_nonfinite="skip"). `step_loss` lists the loss of every
    optimizer step, for curves within an epoch.

    Args:
        *args, **kwargs: as dict's: the initial {key: list of per-epoch values} (fit starts
            from an empty History).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_loss: list[float] = []

    @property
    def epochs(self) -> int:
        """The number of epochs recorded (the length of the "loss" list)."""
        return len(self.get("loss", []))

    def last(self) -> dict[str, Any]:
        """The latest epoch's values.

        Returns:
            dict: {key: the last value of its list}, for every non-empty list.
        """
        return {k: v[-1] for k, v in self.items() if v}

    def state_dict(self) -> dict[str, Any]:
        """The history as checkpoint metadata.

        Returns:
            dict: {'epochs': {key: list}, 'step_loss': list}, copies of the lists.
        """
        return {"epochs": {k: list(v) for k, v in self.items()}, "step_loss": list(self.step_loss)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> History:
        """Rebuild a History from state_dict()'s value (ValueError for another structure).

        Args:
            state: dict {'epochs': {key: list}, 'step_loss': list}.

        Returns:
            History: a new history holding copies of the lists.
        """
        if (not isinstance(state, dict) or not isinstance(state.get("epochs"), dict)
                or not isinstance(state.get("step_loss"), list)
                or not all(isinstance(v, list) for v in state["epochs"].values())):
            raise ValueError(f"history: expected {{'epochs': {{key: list}}, 'step_loss': list}}, got {state!r:.100}")
        history = cls({str(k): list(v) for k, v in state["epochs"].items()})
        history.step_loss = list(state["step_loss"])
        return history


class Trainer:
    """What callbacks see: the objects being trained and where training stands.

    Attributes: model, loss_fn, optimizer, train_loader, scheduler, callbacks, history,
    epoch (epochs completed), step (optimizer steps taken), stop_training (set True to stop
    after this epoch), log_keys (the keys each epoch's logs will hold), distributed (fit
    runs on every rank of an MPI job: a callback that writes files does so on rank 0 only).

    Args:
        model: Module (or DistributedDataParallel), the model being trained.
        loss_fn: the loss (a module with backward()).
        optimizer: Optimizer over the model's parameters.
        train_loader: the re-iterable of training batches.
        history: History, where each epoch's results go.
        scheduler: the learning-rate scheduler, or None (the default).
        callbacks: iterable of callbacks; default ().
    """

    def __init__(self, model: ModelT, loss_fn: Any, optimizer: Optimizer, train_loader: Iterable[Any],
                 history: History, scheduler: LRScheduler | ReduceLROnPlateau | None = None,
                 callbacks: Iterable[Callback] = ()) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.train_loader, self.history = train_loader, history
        self.scheduler, self.callbacks = scheduler, list(callbacks)
        self.epoch = 0
        self.step = 0
        self.stop_training = False
        self.log_keys: tuple[str, ...] = ()
        self.distributed = False

    def training_state(self) -> dict[str, Any]:
        """Everything a resumed fit() needs.

        Returns:
            dict: checkpoint metadata (pycore.save(**state)): epoch, step, rng_state, history,
            logs, callbacks (each one's state_dict()), and loader_state and scheduler_state
            when they exist.
        """
        from .. import _context
        state = {"epoch": self.epoch, "step": self.step, "rng_state": _context.get_rng_state(),
                 "history": self.history.state_dict(), "logs": self.history.last(),
                 "callbacks": {key: cb.state_dict() for key, cb in _callback_keys(self.callbacks)
                               if callable(getattr(cb, "state_dict", None))}}
        loader_state = getattr(self.train_loader, "state_dict", None)
        if callable(loader_state):
            state["loader_state"] = loader_state()
        if self.scheduler is not None:
            state["scheduler_state"] = self.scheduler.state_dict()
        return state


def _callback_keys(callbacks: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """(key, callback): the key names the class and its rank among callbacks of that class
    ("ModelCheckpoint#0"), so a resumed run matches each saved state to its callback."""
    seen: dict[str, int] = {}
    for cb in callbacks:
        name = type(cb).__name__
        seen[name] = seen.get(name, -1) + 1
        yield f"{name}#{seen[name]}", cb


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def fit(model: ModelT, loss_fn: Any, optimizer: Optimizer, train_loader: Iterable[Any], epochs: int,
        val_loader: Iterable[Any] | None = None, callbacks: Iterable[Callback] = (),
        clip_grad_norm: float | None = None, metrics: MetricT | Iterable[MetricT] = ("accuracy",),
        on_nonfinite: str = "raise", verbose: int | None = None, plot: str | os.PathLike[str] | None = None,
        scheduler: LRScheduler | ReduceLROnPlateau | None = None, scheduler_interval: str = "epoch",
        accumulate: int = 1, steps_per_epoch: int | None = None, initial_epoch: int = 0,
        resume: str | os.PathLike[str] | None = None, distributed: bool = False) -> History:
    """Train `model` until epoch `epochs` over `train_loader`.

    Args:
        model: a pycore Module (forward(*inputs) -> logits, backward(grad_logits)).
        loss_fn: loss = loss_fn(logits, target) -> float; loss_fn.backward() -> dL/dlogits.
        optimizer: zero_grad() and step() over the model's parameters.
        train_loader, val_loader: re-iterables of batches (see the module docstring).
        epochs: the epoch to train up to (Keras): with initial_epoch=2 or a resume from a
            checkpoint of epoch 2, epochs=4 runs epochs 3 and 4.
        callbacks: Callback objects (EarlyStopping, ModelCheckpoint, ...).
        clip_grad_norm: when set, rescale the gradients so that their global L2 norm is at
            most this (pycore.optim.clip_grad_norm_), before each step.
        metrics: names or functions, computed on training and validation batches:
            "accuracy" (integer class targets: argmax over the last axis, negative targets
            such as ignore_index not counted; binary float targets: logit > 0), "top5" (any
            "topK": the target among the K largest logits), or a function
            f(logits, target) -> float (its __name__ is the history key), averaged over
            samples. A metric that does not apply to the targets (accuracy on regression)
            is left out.
        on_nonfinite: "raise" (stop with NonFiniteLossError naming the epoch and step) or
            "skip" (skip that update and count it in history["skipped"]).
        verbose: None: a progress bar on a terminal, one line per epoch otherwise (a batch
            job's log); 0/False: silent; 1/True: as None; 2: one line per epoch always.
        plot: a PNG path: a learning-curve plot saved after training (needs matplotlib).
        scheduler: a pycore.optim scheduler, stepped after every epoch or every optimizer
            step (scheduler_interval "epoch" or "step"); ReduceLROnPlateau is stepped per
            epoch with its monitor (val_loss with a val_loader, else loss).
        accumulate: k >= 1: add the gradients of k batches and take one optimizer step,
            which equals one step on a k-times-larger batch for a mean-reduced loss (the
            k gradients are weighted by their batch sizes).
        steps_per_epoch: batches per epoch, drawn from one iteration that continues across
            epochs (and restarts a re-iterable loader when it ends); needed for a one-shot
            iterator or generator over more than one epoch.
        initial_epoch: the number of epochs already done (Keras): epochs initial_epoch+1
            .. epochs run, and are numbered so.
        resume: a checkpoint written by ModelCheckpoint: restores the weights, optimizer,
            scheduler, loader position, random generator, counters, history and callback
            states, then continues; the returned History holds every epoch from the first.
        distributed: data-parallel over the ranks of an MPI job (a world of one without
            one): the model is wrapped in pycore.distributed.DistributedDataParallel (rank
            0's weights and optimizer state on every rank); train_loader must be a
            DataLoader with sampler=DistributedSampler(...) and as many batches on every
            rank; val_loader either sharded the same way (shuffle=False) or the whole set
            on every rank (then rank 0 evaluates it). Logged values are over all ranks
            (time: the mean over ranks); on_batch_end sees the global batch loss and size.
            Progress and plot on rank 0 only; ModelCheckpoint writes on rank 0 and resume
            reads on rank 0 (then sent to all), so a checkpoint resumes on any number of
            ranks. Gradients are averaged as in PyTorch's DDP (a reduction="sum" loss gets
            1/world_size of the whole batch's gradient).

    Returns:
        History: one list per logged value (loss, metrics, val_..., lr, time, ...), one
        entry per epoch, including the epochs of a resumed run.

    The model's input gradient is switched off (requires_input_grad = False): data needs
    none. Training runs in train() mode; validation in eval() mode under pycore.no_grad().
    """
    epochs = integer(epochs, "epochs", minimum=0)
    initial_epoch = integer(initial_epoch, "initial_epoch", minimum=0)
    accumulate = integer(accumulate, "accumulate", minimum=1)
    if steps_per_epoch is not None:
        steps_per_epoch = integer(steps_per_epoch, "steps_per_epoch", minimum=1)
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"fit: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    if scheduler_interval not in SCHEDULER_INTERVALS:
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"fit: scheduler must have step(), got {type(scheduler).__name__}")
    if _is_plateau(scheduler) and scheduler_interval != "epoch":
        raise ValueError("fit: ReduceLROnPlateau needs scheduler_interval='epoch' (it compares epoch results)")
    metric_fns = _metric_functions(metrics)
    clip = None
    if clip_grad_norm is not None:
        is_number = isinstance(clip_grad_norm, numbers.Real) and not isinstance(clip_grad_norm, bool)
        if not is_number or not float(clip_grad_norm) > 0:
            raise ValueError(f"fit: clip_grad_norm must be a positive number or None, got {clip_grad_norm!r}")
        clip = _clip_function()
    callbacks = list(callbacks)
    for cb in callbacks:
        if not hasattr(cb, "on_epoch_end"):
            raise TypeError(f"fit: callbacks must be Callback objects, got {type(cb).__name__}")
    for name in ("zero_grad", "step"):
        if not callable(getattr(optimizer, name, None)):
            raise TypeError(f"fit: optimizer must have {name}(), got {type(optimizer).__name__}")
    if not callable(getattr(loss_fn, "backward", None)):
        raise TypeError(f"fit: loss_fn must have backward() returning the gradient of the logits, "
                        f"got {type(loss_fn).__name__}")
    if resume is None:  # with resume, once the checkpoint says how many epochs remain
        _check_loaders(train_loader, val_loader, epochs - initial_epoch, steps_per_epoch)
    world_size = None
    if distributed:
        from . import _data_parallel
        _data_parallel.check_loaders(train_loader, val_loader, {
            "epochs": epochs, "initial_epoch": initial_epoch, "accumulate": accumulate,
            "steps_per_epoch": steps_per_epoch, "on_nonfinite": on_nonfinite, "resume": resume is not None,
            "metrics": sorted(metric_fns), "clip_grad_norm": clip_grad_norm})
        wrapped = _data_parallel.prepare(model, optimizer, resume)
        world_size = wrapped.world.size
        model = wrapped
    else:
        _check_not_wrapped(model)

    model.requires_input_grad = False
    params = model.parameters()
    trainer = Trainer(model, loss_fn, optimizer, train_loader, History(), scheduler, callbacks)
    trainer.epoch = initial_epoch
    trainer.distributed = bool(distributed)
    trainer.log_keys = _log_keys(metric_fns, val_loader is not None, on_nonfinite)
    for cb in callbacks:
        _call(cb, "on_train_begin", trainer)
    if resume is not None:
        from .callbacks import restore_trainer
        restore_trainer(resume, trainer)  # distributed: rank 0 reads, every rank restores the same
        if initial_epoch not in (0, trainer.epoch):
            raise ValueError(f"fit: initial_epoch={initial_epoch} but the checkpoint {resume!r} was written "
                             f"after epoch {trainer.epoch}; pass one of them")
        _check_loaders(train_loader, val_loader, epochs - trainer.epoch, steps_per_epoch)
    step_config = _StepConfig(params, clip, float(clip_grad_norm or 0), metric_fns, on_nonfinite, accumulate,
                              _model_dtype(params), scheduler if scheduler_interval == "step" else None,
                              steps_per_epoch, world_size)
    progress = _Progress(verbose, epochs, main=not distributed or _is_main())
    batches = _Batches(train_loader, steps_per_epoch,
                       before_pass=_data_parallel.set_epoch if distributed else None)
    try:
        for epoch in range(trainer.epoch + 1, epochs + 1):
            for cb in callbacks:
                _call(cb, "on_epoch_begin", trainer, epoch)
            logs = _train_epoch(trainer, epoch, batches, step_config, progress)
            if val_loader is not None:
                logs.update(_evaluate(model, loss_fn, val_loader, metric_fns, step_config.dtype, prefix="val_",
                                      distributed=distributed))
            for key, value in logs.items():
                trainer.history.setdefault(key, []).append(value)
            trainer.history.setdefault("epoch", []).append(epoch)
            trainer.epoch = epoch
            if scheduler is not None and scheduler_interval == "epoch":
                if _is_plateau(scheduler):
                    scheduler.step(logs[_plateau_monitor(scheduler, val_loader)])
                else:  # an epoch scheduler: TypeGuard narrows only the branch above
                    cast("LRScheduler", scheduler).step()
            progress.end_epoch(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(trainer, epoch, logs)
            for cb in callbacks:  # the epoch's state is final: checkpoints are written now
                _call(cb, "on_checkpoint", trainer, epoch, logs)
            if trainer.stop_training:
                break
    except KeyboardInterrupt:
        progress.interrupted(trainer)
        raise
    finally:
        progress.close()
    for cb in callbacks:
        _call(cb, "on_train_end", trainer)
    if plot is not None and (not distributed or _is_main()):
        plot_history(trainer.history, plot)
    return trainer.history


def _is_main() -> bool:
    from .. import distributed as dist
    return dist.is_main()


def _check_not_wrapped(model: ModelT) -> None:
    """A DistributedDataParallel model in a job of several ranks needs fit(distributed=True):
    without it each rank would log and checkpoint its own shard's numbers."""
    from ..distributed import DistributedDataParallel
    if isinstance(model, DistributedDataParallel) and model.world.size > 1:
        raise ValueError(f"fit: model is a DistributedDataParallel in a job of {model.world.size} ranks; pass "
                         "distributed=True (the logs, callbacks and checkpoints must agree over the ranks)")


def _is_plateau(scheduler: object) -> TypeGuard[ReduceLROnPlateau]:
    from ..optim.lr_scheduler import ReduceLROnPlateau
    return isinstance(scheduler, ReduceLROnPlateau)


def _plateau_monitor(scheduler: ReduceLROnPlateau, val_loader: Iterable[Any] | None) -> str:
    return scheduler.monitor or ("val_loss" if val_loader is not None else "loss")


def _check_loaders(train_loader: Any, val_loader: Any, epochs: int, steps_per_epoch: int | None) -> None:
    _check_loader(train_loader, "train_loader", epochs, steps_per_epoch)
    if val_loader is not None:
        _check_loader(val_loader, "val_loader", epochs, None)


def _check_loader(loader: Any, name: str, epochs: int, steps_per_epoch: int | None) -> None:
    try:
        iterator = iter(loader)
    except TypeError:
        raise TypeError(f"fit: {name} must be iterable (a DataLoader, a list of batches, ...), "
                        f"got {type(loader).__name__}") from None
    if iterator is loader and epochs > 1 and steps_per_epoch is None:
        raise TypeError(f"fit: {name} is a one-shot iterator ({type(loader).__name__}), exhausted after one "
                        f"epoch, but {epochs} epochs were asked for; pass a re-iterable (a DataLoader or a "
                        "list of batches)" + (", or steps_per_epoch= with an endless generator"
                                              if name == "train_loader" else ""))


def _model_dtype(params: Iterable[Parameter]) -> np.dtype | None:
    dtypes = {p.data.dtype for p in params if p.data.dtype.kind == "f"}
    return dtypes.pop() if len(dtypes) == 1 else None


def _log_keys(metric_fns: dict[str, MetricFn], validation: bool, on_nonfinite: str) -> tuple[str, ...]:
    names = ["loss"] + list(metric_fns)
    keys = names + (["val_" + k for k in names] if validation else []) + ["lr", "time", "samples_per_s"]
    return tuple(keys + (["skipped"] if on_nonfinite == "skip" else []) + ["epoch"])


class _StepConfig:
    """The per-step settings of one fit() call."""

    def __init__(self, params: list[Parameter], clip: Callable[..., float] | None, max_norm: float,
                 metric_fns: dict[str, MetricFn], on_nonfinite: str, accumulate: int, dtype: np.dtype | None,
                 step_scheduler: Any, steps_per_epoch: int | None, world_size: int | None) -> None:
        self.params, self.clip, self.max_norm = params, clip, max_norm
        self.metric_fns, self.on_nonfinite, self.accumulate = metric_fns, on_nonfinite, accumulate
        self.dtype, self.step_scheduler, self.steps_per_epoch = dtype, step_scheduler, steps_per_epoch
        self.world_size = world_size  # None: not distributed


class _Batches:
    """The batches of each epoch. Without steps_per_epoch: one full pass over the loader per
    epoch. With it: that many batches from one iteration that continues across epochs, and
    restarts a re-iterable loader when a pass ends (a one-shot iterator running out is an error)."""

    def __init__(self, loader: Any, steps_per_epoch: int | None,
                 before_pass: Callable[[Any], object] | None = None) -> None:
        self.loader, self.steps_per_epoch = loader, steps_per_epoch
        self.before_pass = before_pass  # called with the loader before each pass (a sampler's set_epoch)
        self.iterator: Iterator[Any] | None = None

    def _start_pass(self) -> Iterator[Any]:
        if self.before_pass is not None:
            self.before_pass(self.loader)
        return iter(self.loader)

    def epoch(self, epoch: int) -> Iterator[Any]:
        if self.steps_per_epoch is None:
            yield from self._start_pass()
            return
        for _ in range(self.steps_per_epoch):
            if self.iterator is None:
                self.iterator = self._start_pass()
            try:
                yield next(self.iterator)
            except StopIteration:
                if self.iterator is self.loader:
                    raise ValueError(f"fit: the training iterator ran out during epoch {epoch}; a one-shot "
                                     "iterator with steps_per_epoch must yield at least steps_per_epoch * epochs "
                                     "batches (or be endless)") from None
                self.iterator = self._start_pass()
                try:
                    yield next(self.iterator)
                except StopIteration:
                    raise ValueError("fit: train_loader yields no batches") from None


def _train_epoch(trainer: Trainer, epoch: int, batches: _Batches, config: _StepConfig,
                 progress: _Progress) -> dict[str, Any]:
    model, loss_fn, optimizer = trainer.model, trainer.loss_fn, trainer.optimizer
    model.train()
    total = config.steps_per_epoch
    if total is None:
        loader = trainer.train_loader
        try:
            total = len(loader) if isinstance(loader, Sized) else None
        except TypeError:  # a __len__ that refuses (an unsized wrapper)
            total = None
    progress.start_epoch(epoch, total)
    sums = _MetricSums(config.metric_fns)
    skipped, index = 0, 0
    group: list[tuple[float, int]] = []  # (loss, batch size) of the batches since the last optimizer step
    start = time.perf_counter()
    for index, batch in enumerate(batches.epoch(epoch), 1):
        for cb in trainer.callbacks:
            _call(cb, "on_batch_begin", trainer, index)
        inputs, target, n = _split_batch(batch, config.dtype)
        logits = model(*inputs)
        loss = float(loss_fn(logits, target))
        if not group:
            optimizer.zero_grad()
        measured = sums.measure(loss, logits, target, n) if math.isfinite(loss) else None
        batch_loss, batch_size, problem = loss, n, None if measured is not None else f"the loss is {loss}"
        shared = None if config.world_size is None else _share_batch(sums, measured, n, problem)
        if problem is None or shared is not None:
            # Distributed, every rank runs backward, even after a non-finite loss, so that all
            # of them enter its gradient all-reduce; the ranks then drop that batch together.
            grad = loss_fn.backward()
            if config.accumulate > 1 and getattr(loss_fn, "reduction", "mean") != "sum":
                grad = grad * grad.dtype.type(n)  # weighted by batch size; divided by the group's total below
            model.backward(grad)
        if shared is not None:
            assert config.world_size is not None  # shared exists only when distributed
            measured, batch_loss, batch_size, problem = shared(problem, config.world_size)
        group.append((batch_loss, batch_size))
        if problem is None:
            assert measured is not None  # no problem: this batch (every rank's) was measured
            sums.add(measured)
        if problem is None and (len(group) == config.accumulate or index == total):
            problem = _finish_group(trainer, config, group)
        if problem is not None:
            if config.on_nonfinite == "raise":
                raise NonFiniteLossError(
                    f"fit: {problem} at epoch {epoch}, step {index} (optimizer step {trainer.step + 1}); "
                    "the weights keep their values from before this step. Lower the learning rate, "
                    "clip gradients (clip_grad_norm=1.0) or pass on_nonfinite='skip'.")
            skipped += len(group)
            group = []
        for cb in trainer.callbacks:
            _call(cb, "on_batch_end", trainer, index, {"loss": batch_loss, "size": batch_size})
        if sums.samples:
            progress.update(index, sums, start)
    if group:  # an unfinished accumulation group at the end of the epoch still steps
        problem = _finish_group(trainer, config, group)
        if problem is not None:
            if config.on_nonfinite == "raise":
                raise NonFiniteLossError(f"fit: {problem} at the end of epoch {epoch}")
            skipped += len(group)
    if index == 0:
        raise ValueError(f"fit: train_loader yielded no batches in epoch {epoch}")
    elapsed = time.perf_counter() - start
    if config.world_size is not None:
        from .. import distributed as dist
        elapsed = dist.allreduce_mean(elapsed)  # the same "time" in every rank's history
    logs = sums.results()
    logs["lr"] = _current_lr(optimizer)
    logs["time"] = elapsed
    logs["samples_per_s"] = sums.samples / elapsed if elapsed > 0 else float("nan")
    if config.on_nonfinite == "skip":
        logs["skipped"] = skipped
    return logs


def _share_batch(sums: _MetricSums, measured: np.ndarray | None, n: int, problem: str | None,
                 ) -> Callable[[str | None, int], _SharedBatch]:
    """fit(distributed=True): start summing [this batch's measured values..., 1 if this
    rank's loss is not finite] over the ranks (non-blocking: it travels during backward, so
    it adds no wait of its own). Returns finish(problem, world_size) -> (the global sums,
    the global batch loss and size, the problem or None), the same on every rank."""
    from .. import distributed as dist
    local = measured
    if local is None:  # this rank's loss is not finite: only its sample count is shared
        local = sums.measure_nothing()
        local[1] = n
    pending = dist.start_allreduce_sum(np.append(local, 0.0 if problem is None else 1.0))

    def finish(problem: str | None, world_size: int) -> _SharedBatch:
        shared = pending()
        measured, bad_ranks = shared[:-1], int(shared[-1])
        if bad_ranks:
            return None, float("nan"), int(measured[1]), problem or (
                f"the loss is NaN or Inf on {bad_ranks} of {world_size} ranks")
        return measured, float(measured[0] / measured[1]), int(measured[1]), None
    return finish


def _finish_group(trainer: Trainer, config: _StepConfig, group: list[tuple[float, int]]) -> str | None:
    """Scale the accumulated gradients, check and clip them, and step; the problem or None."""
    params = config.params
    if config.accumulate > 1 and getattr(trainer.loss_fn, "reduction", "mean") != "sum":
        # the sum of n * gradient over the group's batches (averaged over the ranks by
        # DistributedDataParallel) divided by the group's samples (over all ranks)
        total = sum(n for _, n in group)
        for p in params:
            if p.grad is not None:
                p.grad *= p.grad.dtype.type((config.world_size or 1) / total)
    norm = config.clip(params, config.max_norm) if config.clip is not None else None
    if norm is not None and not math.isfinite(float(norm)):
        return f"the gradient norm is {float(norm)}"
    if norm is None and not all(np.isfinite(p.grad).all() for p in params if p.grad is not None):
        return "a gradient is NaN or Inf"
    with _deferred_keyboard_interrupt():
        trainer.optimizer.step()
    trainer.step += 1
    trainer.history.step_loss.append(sum(loss * n for loss, n in group) / sum(n for _, n in group))
    group.clear()
    if config.step_scheduler is not None:
        config.step_scheduler.step()
    return None


def _current_lr(optimizer: Any) -> float:
    groups = getattr(optimizer, "param_groups", None)
    if groups and isinstance(groups[0], dict) and "lr" in groups[0]:
        return float(groups[0]["lr"])
    lr = getattr(optimizer, "lr", None)
    return float(lr) if isinstance(lr, numbers.Real) else float("nan")


def evaluate(model: Module, loss_fn: Any, loader: Iterable[Any], metrics: MetricT | Iterable[MetricT] = ("accuracy",),
             return_dict: bool = False) -> tuple[float, float | None] | dict[str, float]:
    """The loss and metrics of `model` over a loader, in eval mode under pycore.no_grad();
    the model's previous mode is restored.

    Args:
        model: Module, the model to evaluate.
        loss_fn: the loss, called as loss_fn(logits, target).
        loader: a re-iterable of batches, as fit's.
        metrics: names or functions, as fit's; default ("accuracy",).
        return_dict: bool, default False: return (loss, accuracy); True: a dict.

    Returns:
        (loss, accuracy): the mean loss (weighted by batch size) and the accuracy (None if
        not computed); with return_dict=True, {"loss": ..., metric name: value, ...} for
        every metric (as fit's).
    """
    results = _evaluate(model, loss_fn, loader, _metric_functions(metrics), _model_dtype(model.parameters()),
                        prefix="")
    return results if return_dict else (results["loss"], results.get("accuracy"))


def _evaluate(model: Any, loss_fn: Any, loader: Any, metric_fns: dict[str, MetricFn], dtype: np.dtype | None,
              prefix: str, distributed: bool = False) -> dict[str, float]:
    """The loss and metrics over `loader`. distributed: a loader sharded by a
    DistributedSampler is evaluated by every rank on its shard (padding left out) and the
    sums added over the ranks; any other loader holds the whole set: rank 0 evaluates it."""
    limit = None
    if distributed:
        from .. import distributed as dist
        from . import _data_parallel
        if not _data_parallel.is_sharded(loader):
            return dist.run_on_main(_evaluate, model, loss_fn, loader, metric_fns, dtype, prefix)
        limit = _data_parallel.real_samples(loader)
    was_training = model.training
    model.eval()
    sums = _MetricSums(metric_fns)
    try:
        with no_grad():
            for batch in loader:
                inputs, target, n = _split_batch(batch, dtype)
                logits = model(*inputs)
                if limit is not None and sums.samples + n > limit:  # the padding at this shard's end
                    n = limit - sums.samples
                    logits, target = logits[:n], target[:n]
                if n > 0:
                    sums.add(sums.measure(float(loss_fn(logits, target)), logits, target, n))
    finally:
        model.train(was_training)
    if distributed:
        sums.values = dist.allreduce_sum(sums.values)
    return sums.results(prefix)


# ---------------------------------------------------------------------------------------------
# batches and metrics
# ---------------------------------------------------------------------------------------------
def _split_batch(batch: Any, dtype: np.dtype | None) -> tuple[tuple[Any, ...], Any, int]:
    """(model inputs tuple, target, number of samples), float arrays cast to the model's dtype."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("fit: each batch must be (inputs, targets), ((a, b), targets) or (a, b, targets); build "
                         f"the loader as DataLoader(x, y, ...), got {type(batch).__name__}"
                         + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    inputs, target = batch[:-1], batch[-1]
    if len(inputs) == 1 and isinstance(inputs[0], (tuple, list)):
        inputs = inputs[0]
    inputs = tuple(_cast(x, dtype) for x in inputs)
    if not inputs:
        raise ValueError("fit: a batch has an empty tuple of inputs")
    first = inputs[0]
    n = len(first) if hasattr(first, "__len__") else 1
    return inputs, _cast(target, dtype), n


def _cast(value: Any, dtype: np.dtype | None) -> Any:
    if dtype is not None and isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != dtype:
        return value.astype(dtype)
    return value


def _metric_functions(metrics: Any) -> dict[str, MetricFn]:
    """{name: f(logits, target) -> (sum, count) or None}, from fit's metrics argument."""
    if isinstance(metrics, (str, bytes)) or callable(metrics):
        metrics = (metrics,)
    try:
        metrics = tuple(metrics)
    except TypeError:
        raise TypeError(f"fit: metrics must be a list of names and functions, got {type(metrics).__name__}") from None
    out: dict[str, MetricFn] = {}
    fn: MetricFn
    for m in metrics:
        if isinstance(m, str) and m == "accuracy":
            name, fn = m, _accuracy
        elif isinstance(m, str) and m.startswith("top") and m[3:].isdigit() and int(m[3:]) >= 1:
            name, fn = m, _top_k(int(m[3:]))
        elif callable(m) and not isinstance(m, str):
            function_name = getattr(m, "__name__", None)
            if not isinstance(function_name, str) or not function_name.isidentifier():
                raise ValueError(f"fit: a metric function needs a name for the history (def my_metric(...), "
                                 f"not a lambda), got {m!r}")
            name = function_name
            fn = _user_metric(m)
        else:
            raise ValueError(f"fit: unknown metric {m!r}; available: {list(METRICS)}")
        if name in out or name == "loss":
            raise ValueError(f"fit: metric name {name!r} is used twice (or is 'loss')")
        out[name] = fn
    return out


def _accuracy(logits: Any, target: Any) -> tuple[int, int] | None:
    logits, target = np.asarray(logits), np.asarray(target)
    if target.dtype.kind in "iu" and logits.ndim == target.ndim + 1 and logits.shape[:-1] == target.shape:
        valid = target >= 0
        hits = (np.argmax(logits, axis=-1) == target) & valid
        return int(hits.sum()), int(valid.sum())
    if target.dtype.kind == "f" and logits.shape == target.shape:
        hits = (logits > 0) == (target > 0.5)
        return int(hits.sum()), int(hits.size)
    return None


def _top_k(k: int) -> MetricFn:
    def top_k(logits: Any, target: Any) -> tuple[int, int] | None:
        logits, target = np.asarray(logits), np.asarray(target)
        if not (target.dtype.kind in "iu" and logits.ndim == target.ndim + 1 and logits.shape[:-1] == target.shape):
            return None
        if logits.shape[-1] < k:
            raise ValueError(f"fit: metric top{k} needs at least {k} classes, the logits have {logits.shape[-1]}")
        valid = target >= 0
        # the target is among the k largest when fewer than k logits are larger than its own
        own = np.take_along_axis(logits, np.where(valid, target, 0)[..., None], axis=-1)
        hits = ((logits > own).sum(axis=-1) < k) & valid
        return int(hits.sum()), int(valid.sum())
    return top_k


def _user_metric(fn: Callable[[Any, Any], Any]) -> MetricFn:
    def metric(logits: Any, target: Any) -> tuple[float, int]:
        value = fn(logits, target)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"fit: metric {fn.__name__} must return a number, got {type(value).__name__}") from None
        n = len(logits) if hasattr(logits, "__len__") else 1
        return value * n, n
    return metric


class _MetricSums:
    """Running sums of the loss and each metric over an epoch: the one place where per-epoch
    results are computed (fit's training loop and evaluate both use it).

    values: float64 [loss * samples, samples, then (total, count) of each metric], one
    vector, so that fit(distributed=True) adds the ranks' sums with one all-reduce.
    """

    def __init__(self, metric_fns: dict[str, MetricFn]) -> None:
        self.metric_fns = metric_fns
        self.values = self.measure_nothing()

    @property
    def samples(self) -> int:
        return int(self.values[1])

    def measure_nothing(self) -> np.ndarray:
        return np.zeros(2 + 2 * len(self.metric_fns))

    def measure(self, loss: float, logits: Any, target: Any, n: int) -> np.ndarray:
        """One batch's values (a metric that does not apply to the targets counts 0 of 0)."""
        values = self.measure_nothing()
        values[0], values[1] = loss * n, n
        for i, fn in enumerate(self.metric_fns.values()):
            got = fn(logits, target)
            if got is not None:
                values[2 + 2 * i: 4 + 2 * i] = got
        return values

    def add(self, measured: np.ndarray) -> None:
        self.values += measured

    def results(self, prefix: str = "") -> dict[str, float]:
        loss_sum, samples = self.values[:2]
        out = {prefix + "loss": float(loss_sum / samples) if samples else float("nan")}
        for i, name in enumerate(self.metric_fns):
            total, count = self.values[2 + 2 * i: 4 + 2 * i]
            if count:
                out[prefix + name] = float(total / count)
        return out


def _clip_function() -> Callable[..., float]:
    try:
        from ..optim import clip_grad_norm_
    except ImportError:
        raise RuntimeError("fit: clip_grad_norm needs pycore.optim.clip_grad_norm_, which this build "
                           "of pycore does not have") from None
    return clip_grad_norm_


def _call(callback: Any, hook: str, trainer: Trainer, *args: Any) -> None:
    method = getattr(callback, hook, None)
    if method is not None:
        method(trainer, *args)


class _deferred_keyboard_interrupt:
    """Hold back SIGINT (Ctrl-C) while the block runs; raise KeyboardInterrupt after it.

    The optimizer updates the parameters one after another: an interrupt between two of
    them would leave some updated and some not. Only the main thread receives signals, and
    only Python's default handler is replaced (a user's own handler is left alone).
    """

    def __enter__(self) -> _deferred_keyboard_interrupt:
        self.pending = False
        self.installed = (threading.current_thread() is threading.main_thread()
                          and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.installed:
            signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, *exc: Any) -> Literal[False]:
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if self.pending and exc[0] is None:
                raise KeyboardInterrupt
        return False


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
class _Progress:
    """All of fit's printing: a progress bar on a terminal (tqdm when installed, a one-line
    fallback otherwise), one line per epoch off a terminal, silence with verbose=0."""

    REFRESH_S = 0.1

    def __init__(self, verbose: int | None, epochs: int, main: bool = True) -> None:
        if verbose is not None and verbose not in (0, 1, 2):  # True == 1 and False == 0
            raise ValueError(f"fit: verbose must be None, 0, 1 or 2 (or a bool), got {verbose!r}")
        tty = sys.stdout.isatty() if hasattr(sys.stdout, "isatty") else False
        if (verbose == 0 and verbose is not None) or not main:  # fit(distributed=True): rank 0 prints
            self.mode = "quiet"
        elif not tty or verbose == 2:
            self.mode = "lines"
        else:
            try:
                import tqdm
                self._tqdm = tqdm.tqdm
                self.mode = "tqdm"
            except ImportError:
                self.mode = "bar"
        self.epochs = epochs
        self.bar: Any = None  # a tqdm.tqdm bar while an epoch runs in "tqdm" mode (tqdm has no types)
        self.last_draw = 0.0

    def start_epoch(self, epoch: int, total: int | None) -> None:
        self.epoch, self.total = epoch, total
        self.last_draw = 0.0
        if self.mode == "tqdm":
            self.bar = self._tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}", unit="batch",
                                  leave=True, dynamic_ncols=True)

    @staticmethod
    def _stats(results: dict[str, Any], rate: float | None = None) -> str:
        parts = []
        for key, value in results.items():
            if key in _NOT_PLOTTED:
                continue
            short = key.replace("accuracy", "acc")
            is_fraction = key.endswith("accuracy") or key.split("_")[-1].startswith("top")
            parts.append(f"{short} {100 * value:.2f}%" if is_fraction else f"{short} {value:.4f}")
        if rate is not None:
            parts.append(f"{rate:,.0f} samples/s")
        return "  ".join(parts)

    def update(self, step: int, sums: _MetricSums, start: float) -> None:
        """After a batch: redraw at most every REFRESH_S with the running results (sums, a
        _MetricSums) and the rate since `start` (perf_counter at the epoch's start)."""
        if self.mode in ("quiet", "lines"):
            return
        now = time.perf_counter()
        last = self.total is not None and step == self.total
        if self.mode == "tqdm":
            self.bar.update(step - self.bar.n)
        if now - self.last_draw < self.REFRESH_S and not last:
            return
        self.last_draw = now
        results, rate = sums.results(), sums.samples / max(now - start, 1e-9)
        if self.mode == "tqdm":
            self.bar.set_postfix_str(self._stats(results, rate), refresh=False)
            return
        if self.total:
            filled = int(20 * step / self.total)
            where = f"{step}/{self.total} [{'=' * filled}{' ' * (20 - filled)}]"
        else:
            where = f"{step}"
        sys.stdout.write(f"\repoch {self.epoch}/{self.epochs} {where} {self._stats(results, rate)}")
        sys.stdout.flush()

    def end_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.mode == "quiet":
            return
        line = self._stats(logs, logs["samples_per_s"]) + f"  ({logs['time']:.1f} s)"
        if self.mode == "tqdm":
            self.bar.set_postfix_str(line, refresh=True)
            self.bar.close()
            self.bar = None
        elif self.mode == "bar":
            sys.stdout.write("\n" + " " * 4 + line + "\n")
        else:
            sys.stdout.write(f"epoch {epoch}/{self.epochs}  {line}\n")
        sys.stdout.flush()

    def interrupted(self, trainer: Trainer) -> None:
        if self.mode != "quiet":
            sys.stdout.write(f"\ninterrupted after {trainer.step} optimizer steps; the weights are those "
                             "of the last complete step\n")
            sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_NOT_PLOTTED = ("epoch", "lr", "time", "samples_per_s", "skipped")


def plot_history(history: History, path: str | os.PathLike[str]) -> bool:
    """Save learning curves as a PNG: the loss (per epoch, validation, and per optimizer
    step as a thin line) and one panel per metric.

    Args:
        history: History, from fit().
        path: str or os.PathLike, the PNG file to write.

    Returns:
        bool: True once saved; False (with a warning) when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("fit(plot=...): matplotlib is not installed, no learning curve saved "
                      '(pip install "pycore[examples]")', stacklevel=3)
        return False
    names = [k for k in history if not k.startswith("val_") and k not in _NOT_PLOTTED]
    names = ["loss"] + [k for k in names if k != "loss"]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    epochs = history.get("epoch") or list(range(1, history.epochs + 1))
    for ax, name in zip(axes[0], names):
        if name == "loss" and history.step_loss and epochs:
            # steps spread evenly over the epochs they belong to
            first, count = epochs[0] - 1, len(history.step_loss)
            x = [first + (i + 1) * len(epochs) / count for i in range(count)]
            ax.plot(x, history.step_loss, linewidth=0.6, alpha=0.5, label="loss per step")
        for key in (name, "val_" + name):
            if key in history:
                ax.plot(epochs[:len(history[key])], history[key], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
