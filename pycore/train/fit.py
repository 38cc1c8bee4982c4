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
"""
__all__ = ["fit", "evaluate", "History", "NonFiniteLossError", "Trainer", "plot_history"]

import math
import numbers
import signal
import sys
import threading
import time
import warnings

import numpy as np

from .._checks import integer
from .._context import no_grad

METRICS = ("accuracy",)


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN or Inf during fit()."""


class History(dict):
    """Per-epoch results: a dict of lists, one entry per epoch.

    Keys: loss, accuracy (when computed), val_loss and val_accuracy (with a val_loader),
    time (seconds of training in the epoch), samples_per_s, skipped (batches skipped for
    a non-finite loss, with on_nonfinite="skip").
    """

    @property
    def epochs(self):
        return len(self.get("loss", []))

    def last(self):
        """The latest epoch's values as a dict."""
        return {k: v[-1] for k, v in self.items() if v}


class Trainer:
    """What callbacks see: the objects being trained and where training stands.

    Attributes: model, loss_fn, optimizer, train_loader, history, epoch (epochs completed),
    step (optimizer steps taken), stop_training (set True to stop after this epoch).
    """

    def __init__(self, model, loss_fn, optimizer, train_loader, history):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.train_loader, self.history = train_loader, history
        self.epoch = 0
        self.step = 0
        self.stop_training = False


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def fit(model, loss_fn, optimizer, train_loader, epochs, val_loader=None, callbacks=(),
        clip_grad_norm=None, metrics=("accuracy",), on_nonfinite="raise", verbose=None, plot=None):
    """Train `model` for `epochs` passes over `train_loader`; returns a History.

    Args:
        model: a pycore Module (forward(x) -> logits, backward(grad_logits)).
        loss_fn: loss = loss_fn(logits, target) -> float; loss_fn.backward() -> dL/dlogits.
        optimizer: zero_grad() and step() over the model's parameters.
        train_loader, val_loader: iterables of (inputs, targets) batches (pycore.data.DataLoader).
        epochs: number of passes over train_loader.
        callbacks: Callback objects (EarlyStopping, ModelCheckpoint, ...).
        clip_grad_norm: when set, rescale the gradients so that their global L2 norm is at
            most this (pycore.optim.clip_grad_norm_), before each step.
        metrics: ("accuracy",) or (): accuracy is computed for integer class targets
            (argmax over the last axis; negative targets, e.g. ignore_index, are not counted)
            and for binary float targets of the logits' shape (logit > 0).
        on_nonfinite: "raise" (stop with NonFiniteLossError naming the epoch and step) or
            "skip" (skip that batch's update and count it in history["skipped"]).
        verbose: None shows a progress bar on a terminal and nothing otherwise; True always
            reports (a bar on a terminal, one line per epoch otherwise); False never does.
        plot: a PNG path: a learning-curve plot saved after training (needs matplotlib).

    The model's input gradient is switched off (requires_input_grad = False): data needs
    none. Training runs in train() mode; validation in eval() mode under pycore.no_grad().
    """
    epochs = integer(epochs, "epochs", minimum=0)
    if on_nonfinite not in ("raise", "skip"):
        raise ValueError(f"fit: on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"fit: unknown metrics {unknown}; available: {list(METRICS)}")
    clip = None
    if clip_grad_norm is not None:
        if isinstance(clip_grad_norm, bool) or not isinstance(clip_grad_norm, numbers.Real) or not clip_grad_norm > 0:
            raise ValueError(f"fit: clip_grad_norm must be a positive number or None, got {clip_grad_norm!r}")
        clip = _clip_function()
    for cb in callbacks:
        if not hasattr(cb, "on_epoch_end"):
            raise TypeError(f"fit: callbacks must be Callback objects, got {type(cb).__name__}")
    for name in ("zero_grad", "step"):
        if not callable(getattr(optimizer, name, None)):
            raise TypeError(f"fit: optimizer must have {name}(), got {type(optimizer).__name__}")
    if not callable(getattr(loss_fn, "backward", None)):
        raise TypeError(f"fit: loss_fn must have backward() returning the gradient of the logits, "
                        f"got {type(loss_fn).__name__}")

    model.requires_input_grad = False
    params = model.parameters()
    history = History()
    trainer = Trainer(model, loss_fn, optimizer, train_loader, history)
    progress = _Progress(verbose, epochs)
    for cb in callbacks:
        _call(cb, "on_train_begin", trainer)
    try:
        for epoch in range(1, epochs + 1):
            logs = _train_epoch(trainer, epoch, params, clip, float(clip_grad_norm or 0), metrics,
                                on_nonfinite, progress)
            if val_loader is not None:
                val_loss, val_acc = evaluate(model, loss_fn, val_loader, metrics)
                logs["val_loss"] = val_loss
                if val_acc is not None:
                    logs["val_accuracy"] = val_acc
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            trainer.epoch = epoch
            progress.end_epoch(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(trainer, epoch, logs)
            if trainer.stop_training:
                break
    except KeyboardInterrupt:
        progress.interrupted(trainer)
        raise
    finally:
        progress.close()
    for cb in callbacks:
        _call(cb, "on_train_end", trainer)
    if plot is not None:
        plot_history(history, plot)
    return history


def _train_epoch(trainer, epoch, params, clip, max_norm, metrics, on_nonfinite, progress):
    model, loss_fn, optimizer = trainer.model, trainer.loss_fn, trainer.optimizer
    model.train()
    try:
        total = len(trainer.train_loader)
    except TypeError:
        total = None
    progress.start_epoch(epoch, total)
    loss_sum, samples, correct, counted, skipped = 0.0, 0, 0, 0, 0
    start = time.perf_counter()
    for step, batch in enumerate(trainer.train_loader, 1):
        x, target = _split_batch(batch)
        logits = model(x)
        loss = float(loss_fn(logits, target))
        problem = None if math.isfinite(loss) else f"the loss is {loss}"
        if problem is None:
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            norm = clip(params, max_norm) if clip is not None else None
            if norm is not None and not math.isfinite(float(norm)):
                problem = f"the gradient norm is {float(norm)}"
            elif norm is None and not all(np.isfinite(p.grad).all() for p in params):
                problem = "a gradient is NaN or Inf"
        if problem is not None:
            if on_nonfinite == "raise":
                raise NonFiniteLossError(
                    f"fit: {problem} at epoch {epoch}, step {step} (optimizer step {trainer.step + 1}); "
                    "the weights keep their values from before this step. Lower the learning rate, "
                    "clip gradients (clip_grad_norm=1.0) or pass on_nonfinite='skip'.")
            skipped += 1
            continue
        with _deferred_keyboard_interrupt():
            optimizer.step()
        trainer.step += 1
        n = len(x)
        loss_sum += loss * n
        samples += n
        if metrics:
            hits = _correct(logits, target)
            if hits is not None:
                correct += hits[0]
                counted += hits[1]
        progress.update(step, loss_sum / samples, correct / counted if counted else None,
                        samples / max(time.perf_counter() - start, 1e-9))
    elapsed = time.perf_counter() - start
    logs = {"loss": loss_sum / samples if samples else float("nan")}
    if counted:
        logs["accuracy"] = correct / counted
    logs["time"] = elapsed
    logs["samples_per_s"] = samples / elapsed if elapsed > 0 else float("nan")
    if on_nonfinite == "skip":
        logs["skipped"] = skipped
    return logs


def evaluate(model, loss_fn, loader, metrics=("accuracy",)):
    """Mean loss (weighted by batch size) and accuracy (None if not computed) over a loader,
    in eval mode under pycore.no_grad(); the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    loss_sum, samples, correct, counted = 0.0, 0, 0, 0
    try:
        with no_grad():
            for batch in loader:
                x, target = _split_batch(batch)
                logits = model(x)
                loss_sum += float(loss_fn(logits, target)) * len(x)
                samples += len(x)
                if metrics:
                    hits = _correct(logits, target)
                    if hits is not None:
                        correct += hits[0]
                        counted += hits[1]
    finally:
        model.train(was_training)
    return (loss_sum / samples if samples else float("nan")), (correct / counted if counted else None)


def _split_batch(batch):
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("fit: each batch must be a pair (inputs, targets); build the loader as "
                     f"DataLoader(x, y, ...), got {type(batch).__name__}"
                     + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))


def _correct(logits, target):
    """(number correct, number counted), or None when accuracy does not apply to these targets."""
    logits, target = np.asarray(logits), np.asarray(target)
    if target.dtype.kind in "iu" and logits.ndim == target.ndim + 1 and logits.shape[:-1] == target.shape:
        valid = target >= 0
        hits = (np.argmax(logits, axis=-1) == target) & valid
        return int(hits.sum()), int(valid.sum())
    if target.dtype.kind == "f" and logits.shape == target.shape:
        hits = (logits > 0) == (target > 0.5)
        return int(hits.sum()), int(hits.size)
    return None


def _clip_function():
    try:
        from ..optim import clip_grad_norm_
    except ImportError:
        raise RuntimeError("fit: clip_grad_norm needs pycore.optim.clip_grad_norm_, which this build "
                           "of pycore does not have") from None
    return clip_grad_norm_


def _call(callback, hook, trainer):
    method = getattr(callback, hook, None)
    if method is not None:
        method(trainer)


class _deferred_keyboard_interrupt:
    """Hold back SIGINT (Ctrl-C) while the block runs; raise KeyboardInterrupt after it.

    The optimizer updates the parameters one after another: an interrupt between two of
    them would leave some updated and some not. Only the main thread receives signals, and
    only Python's default handler is replaced (a user's own handler is left alone).
    """

    def __enter__(self):
        self.pending = False
        self.installed = (threading.current_thread() is threading.main_thread()
                          and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.installed:
            signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if self.pending and exc[0] is None:
                raise KeyboardInterrupt
        return False


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
class _Progress:
    """A progress bar on a terminal (tqdm when installed, a one-line fallback otherwise),
    one line per epoch when verbose=True off a terminal, and silence otherwise."""

    REFRESH_S = 0.1

    def __init__(self, verbose, epochs):
        tty = sys.stdout.isatty() if hasattr(sys.stdout, "isatty") else False
        if verbose is False or (verbose is None and not tty):
            self.mode = "quiet"
        elif not tty:
            self.mode = "lines"
        else:
            try:
                import tqdm
                self._tqdm = tqdm.tqdm
                self.mode = "tqdm"
            except ImportError:
                self.mode = "bar"
        self.epochs = epochs
        self.bar = None
        self.last_draw = 0.0

    def start_epoch(self, epoch, total):
        self.epoch, self.total = epoch, total
        self.last_draw = 0.0
        if self.mode == "tqdm":
            self.bar = self._tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}", unit="batch",
                                  leave=True, dynamic_ncols=True)

    @staticmethod
    def _stats(loss, accuracy, rate):
        text = f"loss {loss:.4f}"
        if accuracy is not None:
            text += f"  acc {100 * accuracy:.2f}%"
        return text + f"  {rate:,.0f} samples/s"

    def update(self, step, loss, accuracy, rate):
        if self.mode in ("quiet", "lines"):
            return
        now = time.perf_counter()
        last = self.total is not None and step == self.total
        if self.mode == "tqdm":
            self.bar.update(step - self.bar.n)
            if now - self.last_draw >= self.REFRESH_S or last:
                self.bar.set_postfix_str(self._stats(loss, accuracy, rate), refresh=False)
                self.last_draw = now
            return
        if now - self.last_draw < self.REFRESH_S and not last:
            return
        self.last_draw = now
        if self.total:
            filled = int(20 * step / self.total)
            where = f"{step}/{self.total} [{'=' * filled}{' ' * (20 - filled)}]"
        else:
            where = f"{step}"
        sys.stdout.write(f"\repoch {self.epoch}/{self.epochs} {where} {self._stats(loss, accuracy, rate)}")
        sys.stdout.flush()

    def end_epoch(self, epoch, logs):
        if self.mode == "quiet":
            return
        line = self._stats(logs["loss"], logs.get("accuracy"), logs["samples_per_s"])
        if "val_loss" in logs:
            line += f"  val_loss {logs['val_loss']:.4f}"
        if "val_accuracy" in logs:
            line += f"  val_acc {100 * logs['val_accuracy']:.2f}%"
        line += f"  ({logs['time']:.1f} s)"
        if self.mode == "tqdm":
            self.bar.set_postfix_str(line, refresh=True)
            self.bar.close()
            self.bar = None
        elif self.mode == "bar":
            sys.stdout.write("\n" + " " * 4 + line + "\n")
        else:
            sys.stdout.write(f"epoch {epoch}/{self.epochs}  {line}\n")
        sys.stdout.flush()

    def interrupted(self, trainer):
        if self.mode != "quiet":
            sys.stdout.write(f"\ninterrupted after {trainer.step} optimizer steps; the weights are those "
                             "of the last complete step\n")
            sys.stdout.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def plot_history(history, path):
    """Save learning curves (loss, and accuracy when recorded) as a PNG; needs matplotlib.
    Without matplotlib it warns and returns False."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("fit(plot=...): matplotlib is not installed, no learning curve saved "
                      '(pip install "pycore[examples]")', stacklevel=3)
        return False
    panels = [("loss", "val_loss")] + ([("accuracy", "val_accuracy")] if "accuracy" in history else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    epochs = range(1, history.epochs + 1)
    for ax, keys in zip(axes[0], panels):
        for key in keys:
            if key in history:
                ax.plot(list(epochs)[:len(history[key])], history[key], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(keys[0])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
