"""Callbacks for fit(): early stopping, checkpoints, and resuming from a checkpoint.

A callback is an object with any of these methods (Callback gives empty defaults):

    on_train_begin(trainer)                  before the first epoch
    on_epoch_begin(trainer, epoch)           before each epoch (epochs count from 1)
    on_batch_begin(trainer, batch)           before each batch (batches count from 1 in an epoch)
    on_batch_end(trainer, batch, logs)       after it; logs = {"loss": ..., "size": samples}
    on_epoch_end(trainer, epoch, logs)       after each epoch; logs = this epoch's History values
    on_checkpoint(trainer, epoch, logs)      after every callback's on_epoch_end, when the
                                             epoch's state is final (ModelCheckpoint writes here)
    on_train_end(trainer)                    after the last epoch (not after an exception)
    state_dict() / load_state_dict(state)    what a checkpoint records, for fit(resume=...)

`trainer` (pycore.train.Trainer) holds model, optimizer, train_loader, scheduler, history,
epoch, step, and stop_training, which a callback sets to True to end training after this epoch.
"""
from __future__ import annotations

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "restore_training_state"]

import functools
import math
import numbers
import os
import string
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import _context, serialization
from .fit import History, NonFiniteLossError, Trainer, _callback_keys

if TYPE_CHECKING:
    from ..nn.module import Module
    from ..optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
    from ..optim.optimizer import Optimizer


class Callback:
    """Base class with do-nothing hooks and an empty state (the module docstring says when
    fit calls each hook). A subclass overrides the hooks it needs; `trainer` is the
    pycore.train.Trainer, `epoch` and `batch` count from 1, `logs` is a dict of floats."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Before each epoch."""

    def on_batch_begin(self, trainer: Trainer, batch: int) -> None:
        """Before each batch."""

    def on_batch_end(self, trainer: Trainer, batch: int, logs: dict[str, Any]) -> None:
        """After each batch; logs = {"loss": ..., "size": samples}."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """After each epoch; logs = this epoch's History values."""

    def on_checkpoint(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """After every callback's on_epoch_end, when the epoch's state is final."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch (not after an exception)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records about this callback.

        Returns:
            dict: plain values and arrays (empty here).
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore state_dict()'s values (validate everything, then write).

        Args:
            state: dict, from state_dict(); ValueError for anything else.
        """
        if not isinstance(state, dict):
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a dict, got {type(state).__name__}")


def _check_log_key(owner: str, key: str, trainer: Trainer, what: str) -> None:
    """A ValueError before the first epoch when `key` will never be in the logs."""
    keys = getattr(trainer, "log_keys", ())
    if keys and key not in keys:
        raise ValueError(f"{owner}: {what} {key!r} is not among the values fit logs {sorted(keys)}"
                         + ("; pass val_loader= to fit()" if key.startswith("val_") else ""))


class _Monitor:
    """Tracks the best value of one logged quantity ('min' or 'max' is better)."""

    # declared here: attributes set by tuple assignment get no type inside an import cycle (fit <-> callbacks)
    owner: str
    monitor: str
    mode: str
    min_delta: float
    best: float

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"{owner}: monitor must be a logged key such as 'val_loss', got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or min_delta < 0:
            raise ValueError(f"{owner}: min_delta must be a non-negative number, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if ("acc" in monitor or "top" in monitor) else "min"
        self.owner, self.monitor, self.mode, self.min_delta = owner, monitor, mode, float(min_delta)
        self.reset()

    def reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            hint = "; pass val_loader= to fit()" if self.monitor.startswith("val_") else ""
            raise ValueError(f"{self.owner}: monitor={self.monitor!r} is not among the logged values {sorted(logs)}"
                             + hint)
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        """Whether value beats the best by more than min_delta (and record it if so)."""
        if math.isnan(value):
            return False
        better = (value < self.best - self.min_delta) if self.mode == "min" else (value > self.best + self.min_delta)
        if better:
            self.best = value
        return better


def _number(state: dict[str, Any], key: str, owner: str) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}.load_state_dict: {key!r} must be a number, got {value!r:.50}")
    return float(value)


def _count(state: dict[str, Any], key: str, owner: str) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}.load_state_dict: {key!r} must be an int >= 0, got {value!r:.50}")
    return int(value)


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    Args:
        monitor: str, the logged value to watch; default "val_loss".
        patience: int >= 0, stop after this many epochs in a row without improvement (0 and
            1 both stop at the first, as in Keras); default 0.
        min_delta: float >= 0, the smallest change that counts as an improvement; default 0.0.
        mode: str, "min", "max" or "auto" (the default: "max" for accuracies, a monitor
            naming "acc" or "top", else "min").
        restore_best: bool, load the best epoch's weights back into the model when training
            ends; default False.

    Attributes after training: best, best_epoch, stopped_epoch (0 if it never stopped).
    state_dict(): best, best_epoch, stopped_epoch, wait, best_weights (with restore_best).
    """

    monitor: str
    patience: int
    restore_best: bool
    best_epoch: int
    stopped_epoch: int
    wait: int

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best: bool = False) -> None:
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self._tracker: _Monitor = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.patience, self.restore_best = monitor, int(patience), bool(restore_best)
        self.best_epoch, self.stopped_epoch, self.wait = 0, 0, 0
        self._best_weights: dict[str, Any] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        _check_log_key("EarlyStopping", self.monitor, trainer, "monitor")
        self._tracker.reset()
        self.best_epoch, self.stopped_epoch, self.wait = 0, 0, 0
        self._best_weights = None

    @property
    def best(self) -> float:
        """The best value of `monitor` so far (inf, or -inf in "max" mode, before any)."""
        return self._tracker.best

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._tracker.improved(self._tracker.value(logs)):
            self.best_epoch, self.wait = epoch, 0
            if self.restore_best:
                self._best_weights = {k: v.copy() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best and self._best_weights is not None and self.best_epoch != trainer.epoch:
            trainer.model.load_state_dict(self._best_weights)

    def state_dict(self) -> dict[str, Any]:
        weights = None if self._best_weights is None else {k: v.copy() for k, v in self._best_weights.items()}
        return {"best": self.best, "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch,
                "wait": self.wait, "best_weights": weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        values: dict[str, float | int] = {"best": _number(state, "best", "EarlyStopping")}
        for key in ("best_epoch", "stopped_epoch", "wait"):
            values[key] = _count(state, key, "EarlyStopping")
        weights = state.get("best_weights")
        if weights is not None and (not isinstance(weights, dict)
                                    or not all(isinstance(v, np.ndarray) for v in weights.values())):
            raise ValueError("EarlyStopping.load_state_dict: 'best_weights' must be None or a dict of arrays")
        self._tracker.best = values.pop("best")
        self.__dict__.update(values)
        self._best_weights = None if weights is None else {k: v.copy() for k, v in weights.items()}


class ModelCheckpoint(Callback):
    """Save a checkpoint (pycore.save) after each epoch, or only when `monitor` improves.

    Args:
        path: str or os.PathLike, a template: "{epoch}" is the 1-based epoch number,
            "{step}" the optimizer steps taken, and any logged value may appear, with a
            format spec ("ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"); the template is
            checked when the callback is made and the names when training begins.
        monitor: str, the logged value that save_best_only compares; default "val_loss".
        save_best_only: bool, save only when `monitor` improves; default False (every epoch).
        mode: str, "min", "max" or "auto" (the default: "max" for accuracies).
        save_optimizer: bool, also save the optimizer's state (fit(resume=...) needs it);
            default True.

    Under fit(distributed=True) every rank tracks the best value, rank 0 writes the file
    and the others wait for it.

    The file's tensors are the model's state_dict alone (PyTorch's strict load_state_dict
    reads them); the optimizer state and the training state are in its metadata: epoch,
    step, rng_state, loader_state, scheduler_state, history, logs and callbacks (each
    callback's state_dict()), which fit(resume=path) and restore_training_state() put back.
    state_dict(): best, saved (the paths written so far).
    """

    save_best_only: bool
    save_optimizer: bool

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", save_optimizer: bool = True) -> None:
        self.path = os.fspath(path)
        if not isinstance(self.path, str):
            raise TypeError(f"ModelCheckpoint: path must be a str or os.PathLike, got {type(path).__name__}")
        self._fields = _template_fields(self.path)
        self.monitor = monitor
        self.save_best_only, self.save_optimizer = bool(save_best_only), bool(save_optimizer)
        self._tracker: _Monitor = _Monitor("ModelCheckpoint", monitor, mode)
        self.saved: list[str] = []
        self._pending: str | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        for name in self._fields - {"epoch", "step"}:
            _check_log_key("ModelCheckpoint", name, trainer, f"the path template's field {{{name}}} names")
        if self.save_best_only:
            _check_log_key("ModelCheckpoint", self.monitor, trainer, "monitor")
        self._tracker.reset()
        self.saved = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self._pending = None
        if self.save_best_only and not self._tracker.improved(self._tracker.value(logs)):
            return
        path = self.path.format(**{**logs, "epoch": epoch, "step": trainer.step})
        bad = [name for name, value in trainer.model.state_dict().items()
               if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()]
        if bad:  # never replace a good checkpoint with a broken model
            raise NonFiniteLossError(f"ModelCheckpoint: not saving epoch {epoch} to {path}: the model has "
                                     f"NaN or Inf in {', '.join(bad[:5])}")
        self.saved.append(path)
        self._pending = path

    def on_checkpoint(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._pending is None:
            return
        path, self._pending = self._pending, None
        optimizer = trainer.optimizer if self.save_optimizer else None
        if getattr(trainer, "distributed", False):
            # rank 0 writes (atomically); the others wait for it and raise its error, if any
            from .. import distributed as dist
            dist.run_on_main(lambda: serialization.save(path, trainer.model, optimizer, **trainer.training_state()))
        else:
            serialization.save(path, trainer.model, optimizer, **trainer.training_state())

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._tracker.best, "saved": list(self.saved)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        best = _number(state, "best", "ModelCheckpoint")
        saved = state.get("saved")
        if not isinstance(saved, list) or not all(isinstance(p, str) for p in saved):
            raise ValueError("ModelCheckpoint.load_state_dict: 'saved' must be a list of paths")
        self._tracker.best, self.saved = best, list(saved)


def _template_fields(template: str) -> set[str]:
    """The names a path template uses; ValueError for a template that cannot be formatted."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"ModelCheckpoint: path template {template!r} is malformed ({err})") from None
    fields = set()
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"ModelCheckpoint: path template {template!r}: {{{field}}} must be a plain name "
                             "such as {epoch} or {val_loss} (no positions, attributes or indices)")
        fields.add(field)
    try:  # the format specs: {epoch:03d} takes an int, the logged values are floats
        template.format(**{name: (1 if name in ("epoch", "step") else 1.0) for name in fields})
    except (ValueError, TypeError) as err:
        raise ValueError(f"ModelCheckpoint: path template {template!r} cannot be formatted ({err}); "
                         "{epoch} and {step} are ints, logged values are floats") from None
    return fields


# ---------------------------------------------------------------------------------------------
# restoring
# ---------------------------------------------------------------------------------------------
def restore_trainer(path: str | os.PathLike[str], trainer: Trainer) -> None:
    """fit(resume=path): put the checkpoint's whole training state into `trainer` (all or
    nothing: on any error, the model, optimizer, scheduler, loader and callbacks keep their
    state)."""
    read = serialization.read_checkpoint
    if getattr(trainer, "distributed", False):
        from ._data_parallel import read_checkpoint as read  # rank 0 reads, every rank gets its contents
    metadata = _restore(path, trainer.model, trainer.optimizer, trainer.train_loader, trainer.scheduler,
                        trainer.callbacks, require=True, read=read)
    trainer.epoch, trainer.step = metadata["epoch"], metadata["step"]
    trainer.history = metadata["history"]


def restore_training_state(path: str | os.PathLike[str], model: Module, optimizer: Optimizer | None = None,
                           train_loader: Any = None, scheduler: LRScheduler | ReduceLROnPlateau | None = None,
                           ) -> dict[str, Any]:
    """Load a checkpoint written by ModelCheckpoint (or by pycore.save with the same
    metadata) and put everything back: weights, optimizer state, pycore's random generator,
    the train loader's position and the scheduler's state. All or nothing: on any error
    (CheckpointError or ValueError) nothing has changed.

    Args:
        path: str or os.PathLike, the checkpoint file.
        model: Module, receives the weights.
        optimizer: Optimizer or None, receives the saved optimizer state (if the file has
            one); default None.
        train_loader: a loader with load_state_dict (pycore.data.DataLoader), or None:
            receives its saved position; default None.
        scheduler: a scheduler or None, receives its saved state; default None.

    Returns:
        dict: the checkpoint's metadata, with epoch and step as ints and history as a
        History.

    fit(..., resume=path) does this and more (callbacks, history); by hand:

        meta = restore_training_state("ckpt.safetensors", model, opt, loader)
        fit(model, loss_fn, opt, loader, epochs=total_epochs, initial_epoch=meta["epoch"])
    """
    return _restore(path, model, optimizer, train_loader, scheduler, (), require=False)


def _restore(path: str | os.PathLike[str], model: Any, optimizer: Optimizer | None, loader: Any, scheduler: Any,
             callbacks: Iterable[Any], require: bool,
             read: Callable[[str], Any] = serialization.read_checkpoint) -> dict[str, Any]:
    source = os.fspath(path)
    state_dict, opt_state, metadata = read(source)

    def bad(why: str) -> serialization.CheckpointError:
        return serialization.CheckpointError(f"{source}: cannot resume training: {why}")

    for key in ("epoch", "step"):
        value = metadata.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise bad(f"{key!r} must be an int >= 0, got {value!r:.50}")
    generator = None
    if "rng_state" in metadata:
        try:
            generator = _context.generator_from_state(metadata["rng_state"], "rng_state")
        except ValueError as err:
            raise bad(str(err)) from None
    try:
        history = _history_from(metadata.get("history", {}))
    except ValueError as err:
        raise bad(str(err)) from None
    saved_callbacks = metadata.get("callbacks", {})
    if not isinstance(saved_callbacks, dict):
        raise bad("'callbacks' must be a dict of callback states")
    if require and optimizer is not None and opt_state is None:
        raise bad("the checkpoint holds no optimizer state (ModelCheckpoint(save_optimizer=False)); an exact "
                  "resume needs it")
    if require and (scheduler is None) != ("scheduler_state" not in metadata):
        raise bad("the checkpoint was written " + ("without" if scheduler is not None else "with")
                  + " a scheduler; pass the same scheduler= as the original run")

    undo = _snapshot(model, optimizer if opt_state is not None else None, loader, scheduler, callbacks)
    try:
        serialization.load_state(model, state_dict, optimizer, opt_state, source)
        if scheduler is not None and "scheduler_state" in metadata:
            scheduler.load_state_dict(metadata["scheduler_state"])
        if loader is not None and "loader_state" in metadata and callable(getattr(loader, "load_state_dict", None)):
            loader.load_state_dict(metadata["loader_state"])
        for key, cb in _callback_keys(callbacks):
            if key in saved_callbacks and callable(getattr(cb, "load_state_dict", None)):
                cb.load_state_dict(saved_callbacks[key])
    except BaseException:
        for action in undo:
            action()
        raise
    if generator is not None:  # validated above: this cannot fail
        _context.set_rng_state(metadata["rng_state"])
    metadata = dict(metadata)
    metadata.update(epoch=int(metadata.get("epoch", 0)), step=int(metadata.get("step", 0)), history=history)
    return metadata


def _history_from(saved: Any) -> History:
    """A History from a checkpoint: today's {'epochs', 'step_loss'} or the older plain dict of lists."""
    if isinstance(saved, dict) and "epochs" in saved and "step_loss" in saved:
        return History.from_state_dict(saved)
    if not isinstance(saved, dict) or not all(isinstance(v, list) for v in saved.values()):
        raise ValueError(f"'history' must be a dict of lists, got {saved!r:.100}")
    return History.from_state_dict({"epochs": saved, "step_loss": []})


def _snapshot(model: Any, optimizer: Optimizer | None, loader: Any, scheduler: Any,
              callbacks: Iterable[Any]) -> list[Callable[[], object]]:
    """Functions that put each object back as it is now (for an all-or-nothing restore)."""
    undo: list[Callable[[], object]] = []
    weights = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    undo.append(lambda: model.load_state_dict(weights, strict=False))
    for obj in (optimizer, scheduler, loader, *callbacks):
        if obj is not None and callable(getattr(obj, "state_dict", None)) \
                and callable(getattr(obj, "load_state_dict", None)):
            saved = obj.state_dict()
            undo.append(functools.partial(obj.load_state_dict, saved))
    return undo
