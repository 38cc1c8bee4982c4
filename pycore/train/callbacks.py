"""Callbacks for fit(): early stopping, checkpoints, and resuming from a checkpoint.

A callback is an object with any of these methods (Callback gives empty defaults):

    on_train_begin(trainer)               before the first epoch
    on_epoch_end(trainer, epoch, logs)    after each epoch; logs = this epoch's History values
    on_train_end(trainer)                 after the last epoch (not after an exception)

`trainer` (pycore.train.Trainer) holds model, optimizer, train_loader, history, epoch, step,
and stop_training, which a callback sets to True to end training after this epoch.
"""
__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "restore_training_state"]

import math
import numbers

import numpy as np

from .. import _context
from .. import serialization
from .fit import NonFiniteLossError


class Callback:
    """Base class with do-nothing hooks."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_train_end(self, trainer):
        pass


class _Monitor:
    """Tracks the best value of one logged quantity ('min' or 'max' is better)."""

    def __init__(self, owner, monitor, mode, min_delta=0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or min_delta < 0:
            raise ValueError(f"{owner}: min_delta must be a non-negative number, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.owner, self.monitor, self.mode, self.min_delta = owner, monitor, mode, float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"{self.owner}: monitor={self.monitor!r} is not among the logged values "
                             f"{sorted(logs)}" + ("; pass val_loader= to fit()" if self.monitor.startswith("val_") else ""))
        return float(logs[self.monitor])

    def improved(self, value):
        """Whether value beats the best by more than min_delta (and record it if so)."""
        if math.isnan(value):
            return False
        better = (value < self.best - self.min_delta) if self.mode == "min" else (value > self.best + self.min_delta)
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    Args: monitor ("val_loss"), patience (stop after this many epochs in a row without
    improvement; 0 and 1 both stop at the first, as in Keras), min_delta (the smallest change that counts as an improvement), mode ("min",
    "max" or "auto": max for accuracies), restore_best (load the best epoch's weights back
    into the model when training ends).
    Attributes after training: best, best_epoch, stopped_epoch (0 if it never stopped).
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto", restore_best=False):
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self._tracker = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.monitor, self.patience, self.restore_best = monitor, int(patience), bool(restore_best)

    def on_train_begin(self, trainer):
        self._tracker.best = math.inf if self._tracker.mode == "min" else -math.inf
        self.best_epoch, self.stopped_epoch, self.wait = 0, 0, 0
        self._best_weights = None

    @property
    def best(self):
        return self._tracker.best

    def on_epoch_end(self, trainer, epoch, logs):
        if self._tracker.improved(self._tracker.value(logs)):
            self.best_epoch, self.wait = epoch, 0
            if self.restore_best:
                self._best_weights = {k: v.copy() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best and self._best_weights is not None and self.best_epoch != trainer.epoch:
            trainer.model.load_state_dict(self._best_weights)


class ModelCheckpoint(Callback):
    """Save a checkpoint (pycore.save) after each epoch, or only when `monitor` improves.

    Args: path (may contain "{epoch}", formatted with the 1-based epoch number), monitor
    ("val_loss"), save_best_only (False: save every epoch), mode ("auto", "min", "max"),
    save_optimizer (True). The checkpoint holds the weights, the optimizer state and
    metadata: epoch, step, rng_state (pycore's), loader_state (the train loader's, when it
    has state_dict()), logs and history, which restore_training_state() puts back.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto", save_optimizer=True):
        self.path, self.monitor = path, monitor
        self.save_best_only, self.save_optimizer = bool(save_best_only), bool(save_optimizer)
        self._tracker = _Monitor("ModelCheckpoint", monitor, mode)
        self.saved = []

    def on_train_begin(self, trainer):
        self._tracker.best = math.inf if self._tracker.mode == "min" else -math.inf

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best_only and not self._tracker.improved(self._tracker.value(logs)):
            return
        path = str(self.path).format(epoch=epoch)
        bad = [name for name, value in trainer.model.state_dict().items()
               if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()]
        if bad:  # never replace a good checkpoint with a broken model
            raise NonFiniteLossError(f"ModelCheckpoint: not saving epoch {epoch} to {path}: the model has "
                                     f"NaN or Inf in {', '.join(bad[:5])}")
        loader = trainer.train_loader
        metadata = {"epoch": epoch, "step": trainer.step, "rng_state": _context.get_rng_state(),
                    "logs": dict(logs), "history": {k: list(v) for k, v in trainer.history.items()}}
        if hasattr(loader, "state_dict"):
            metadata["loader_state"] = loader.state_dict()
        serialization.save(path, trainer.model, trainer.optimizer if self.save_optimizer else None, **metadata)
        self.saved.append(path)


def restore_training_state(path, model, optimizer=None, train_loader=None):
    """Load a checkpoint written by ModelCheckpoint (or by pycore.save with the same
    metadata) and put everything back: weights, optimizer state, pycore's random generator
    and the train loader's position. Returns the metadata (epoch, step, history, ...).

    Training then continues exactly as if it had not stopped:

        meta = restore_training_state("ckpt.safetensors", model, opt, loader)
        fit(model, loss_fn, opt, loader, epochs=total_epochs - meta["epoch"])
    """
    metadata = serialization.load(path, model, optimizer)
    if "rng_state" in metadata:
        _context.set_rng_state(metadata["rng_state"])
    if train_loader is not None and "loader_state" in metadata:
        train_loader.load_state_dict(metadata["loader_state"])
    return metadata
