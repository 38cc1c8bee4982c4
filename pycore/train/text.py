"""Character language models: CharModel, a truncated-BPTT training loop, and sampling.

    vocab = CharVocab(text)
    train, val = split_corpus(vocab.encode(text))
    model = CharModel(len(vocab), hidden_size=256, num_layers=2)
    history = train_char_model(model, train, val, steps=500, batch_size=32, seq_len=100)
    print(sample(model, vocab, "ROMEO:", 200, temperature=0.8))

The corpus is laid out as batch_size parallel streams (datasets.StreamBatches); each step
takes the next seq_len characters of every stream, runs the model from the state the
previous chunk ended in, and backpropagates through this chunk only (truncated BPTT):
the state carried in is a plain array, so no gradient flows into the previous chunk.
Gradients are clipped by their global norm before the optimizer step. Losses are in
nats per character (natural log; divide by ln 2 for bits).
"""
from __future__ import annotations

__all__ = ["CharModel", "train_char_model", "evaluate_char_model", "sample"]

import math
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import nn, optim
from .._checks import integer
from .._context import no_grad
from ..datasets import StreamBatches
from .fit import NonFiniteLossError, _deferred_keyboard_interrupt
from .tbptt import check_state_can_carry, detach_state

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    from ..datasets import CharVocab
    from ..distributed.ddp import DistributedDataParallel
    from ..nn.module import Module
    from ..optim.optimizer import Optimizer


class CharModel(nn.Module):
    """Embedding -> LSTM -> Linear: next-character logits for every position.

    Args:
        vocab_size: int >= 1, the number of distinct characters (ids 0 .. vocab_size - 1).
        hidden_size: int, the LSTM's hidden size; default 256.
        num_layers: int, stacked LSTM layers; default 2.
        embedding_dim: int, the size of each character's embedding; default 64.
        dtype: the parameters' dtype, np.float32 (the default) or np.float64.

    Shape:
        ids (N, T) ints in [0, vocab_size) -> logits (N, T, vocab_size)
        state (h, c): each (num_layers, N, hidden_size)

    forward(ids, state=None) returns (logits, state); feed the state to the next call.
    backward(grad_logits) accumulates every parameter's gradient.
    Its state_dict keys (embed.weight, lstm.weight_ih_l0, ..., head.bias) are those of the
    same three modules in PyTorch (torch.nn.LSTM with batch_first=True).
    """

    def __init__(self, vocab_size: int, hidden_size: int = 256, num_layers: int = 2, embedding_dim: int = 64,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.vocab_size = integer(vocab_size, "vocab_size", minimum=1)
        self.embed = nn.Embedding(vocab_size, embedding_dim, dtype=dtype)
        # Time-major inside (the LSTM kernels' layout): the embedding gathers (T, N, E)
        # straight from ids.T and the head reads the LSTM's (T, N, H) output as it is, where
        # batch_first copied the (N, T, H) output and its gradient (3 MB each per step at
        # N = 32, T = 100, H = 256). Only the logits, the smallest array, are transposed.
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers, dtype=dtype)
        self.head = nn.Linear(hidden_size, vocab_size, dtype=dtype)

    def forward(self, ids: ArrayLike, state: tuple[np.ndarray, np.ndarray] | None = None,
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Next-character logits for every position of `ids`.

        Args:
            ids: int array (N, T), character ids.
            state: the LSTM's (h, c), each (num_layers, N, hidden_size), from the previous
                call; default None (zeros).

        Returns:
            (logits, state): logits (N, T, vocab_size) and the LSTM's final (h, c).
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"CharModel: expected ids of shape (N, T), got shape {ids.shape}")
        y, state = self.lstm(self.embed(ids.T), state)
        return self.head(y).transpose(1, 0, 2), state

    def backward(self, grad_logits: ArrayLike) -> None:
        """Add every parameter's gradient into its .grad (the ids have none).

        Args:
            grad_logits: (N, T, vocab_size), the loss's gradient with respect to the last
                forward's logits.
        """
        grad_logits = np.asarray(grad_logits)
        if grad_logits.ndim != 3:
            raise ValueError(f"CharModel.backward: expected grad_logits of shape (N, T, vocab_size), got shape "
                             f"{grad_logits.shape}")
        grad_y = self.head.backward(np.ascontiguousarray(grad_logits.transpose(1, 0, 2)))
        grad_embedded = self.lstm.backward(grad_y)
        assert grad_embedded is not None  # the LSTM reads the embedding's output: requires_input_grad
        self.embed.backward(grad_embedded)


def evaluate_char_model(model: Module | DistributedDataParallel, ids: ArrayLike, batch_size: int = 32,
                        seq_len: int = 100, max_chunks: int | None = None) -> float:
    """The model's loss on an id stream, in eval mode under pycore.no_grad() (the previous
    mode is restored).

    Args:
        model: CharModel (any model called as model(ids, state) -> (logits, state)).
        ids: 1-D int array, the character ids (CharVocab.encode).
        batch_size: int, parallel streams the ids are laid out as; default 32.
        seq_len: int, characters per chunk (the state is carried across chunks); default 100.
        max_chunks: int or None, evaluate at most this many chunks; default None (all).

    Returns:
        float: the mean cross entropy in nats per character.
    """
    check_state_can_carry(model)
    loss_fn = nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    try:
        with no_grad():
            for k, (x, y) in enumerate(StreamBatches(ids, batch_size, seq_len)):
                if max_chunks is not None and k >= max_chunks:
                    break
                logits, state = model(x, state)
                total += float(loss_fn(logits, y)) * y.size
                count += y.size
    finally:
        model.train(was_training)
    return total / count


def train_char_model(model: Module, train_ids: ArrayLike, val_ids: ArrayLike | None = None, steps: int = 500,
                     batch_size: int = 32, seq_len: int = 100, lr: float = 2e-3, optimizer: Optimizer | None = None,
                     clip_grad_norm: float | None = 5.0, eval_every: int = 100, eval_batches: int | None = None,
                     verbose: bool | None = None, on_step: Callable[[int, float], object] | None = None,
                     ) -> dict[str, Any]:
    """Train a CharModel with truncated BPTT for `steps` optimizer steps.

    Args:
        model: CharModel (any model called as model(ids, state) -> (logits, state)).
        train_ids: 1-D int array (CharVocab.encode of the text, split_corpus).
        val_ids: 1-D int array or None (the default: no validation).
        steps: int >= 0, optimizer steps; the training stream is restarted (state reset)
            when it ends; default 500.
        batch_size: int, parallel streams; default 32.
        seq_len: int, characters per chunk; default 100.
        lr: float, Adam's learning rate when optimizer is None; default 2e-3.
        optimizer: Optimizer or None; default None: Adam(model.parameters(), lr).
        clip_grad_norm: float or None, the global gradient norm is clipped to this (None:
            no clipping); default 5.0.
        eval_every: int >= 1, validation loss every this many steps (and after the last
            one); default 100.
        eval_batches: int or None, chunks per validation (None, the default: the whole split).
        verbose: None (the default) reports on a terminal only; True always; False never.
        on_step: optional function called as on_step(step, loss) after each step.

    Returns:
        dict: step, loss (training loss per step), val_step, val_loss (nats/char),
        chars_per_s (training characters per second, excluding validation), time (s).

    A NaN/Inf loss raises NonFiniteLossError naming the step, before any update.
    """
    steps = integer(steps, "steps", minimum=0)
    check_state_can_carry(model)
    eval_every = integer(eval_every, "eval_every", minimum=1)
    if verbose is None:
        verbose = sys.stdout.isatty()
    params = model.parameters()
    optimizer = optimizer if optimizer is not None else optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    streams = StreamBatches(train_ids, batch_size, seq_len)
    history: dict[str, Any] = {"step": [], "loss": [], "val_step": [], "val_loss": [],
                               "chars_per_s": None, "time": None}
    model.train()
    train_time, chars, step = 0.0, 0, 0
    start_all = time.perf_counter()
    while step < steps:
        state = None
        for x, y in streams:
            if step >= steps:
                break
            started = time.perf_counter()
            logits, state = model(x, state)
            loss = float(loss_fn(logits, y))
            if not math.isfinite(loss):
                raise NonFiniteLossError(f"train_char_model: the loss is {loss} at step {step + 1}; the "
                                         "weights keep their values from before it. Lower the learning rate "
                                         "or clip gradients harder.")
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            if clip_grad_norm is not None:
                norm = optim.clip_grad_norm_(params, clip_grad_norm)
                if not math.isfinite(norm):
                    raise NonFiniteLossError(f"train_char_model: the gradient norm is {norm} at step {step + 1}")
            with _deferred_keyboard_interrupt():
                optimizer.step()
            state = detach_state(state)  # carried forward; backward stops at this chunk
            step += 1
            train_time += time.perf_counter() - started
            chars += y.size
            history["step"].append(step)
            history["loss"].append(loss)
            if on_step is not None:
                on_step(step, loss)
            if val_ids is not None and (step % eval_every == 0 or step == steps):
                val = evaluate_char_model(model, val_ids, batch_size, seq_len, eval_batches)
                history["val_step"].append(step)
                history["val_loss"].append(val)
                if verbose:
                    print(f"step {step}/{steps}  loss {loss:.4f}  val_loss {val:.4f} nats/char  "
                          f"{chars / train_time:,.0f} chars/s", flush=True)
            elif verbose and step % max(1, eval_every // 10) == 0:
                print(f"step {step}/{steps}  loss {loss:.4f}  {chars / train_time:,.0f} chars/s", flush=True)
    history["chars_per_s"] = chars / train_time if train_time > 0 else float("nan")
    history["time"] = time.perf_counter() - start_all
    return history


def sample(model: Module, vocab: CharVocab, prompt: str, length: int, temperature: float = 1.0,
           seed: int | None = None) -> str:
    """Generate `length` characters after `prompt`.

    Each next character is drawn from softmax(logits / temperature): temperature < 1 is
    more conservative, > 1 more varied. Runs in eval mode under pycore.no_grad(), feeding
    the prompt once and then one character at a time with the carried state.

    Args:
        model: CharModel (any model called as model(ids, state) -> (logits, state)).
        vocab: CharVocab, encodes the prompt and decodes the drawn ids.
        prompt: non-empty str, every character in vocab.
        length: int >= 0, the characters to generate.
        temperature: float > 0; default 1.0.
        seed: an int for a reproducible sample; default None (fresh randomness).

    Returns:
        str: prompt + the new text.
    """
    length = integer(length, "length", minimum=0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"sample: temperature must be a positive number, got {temperature!r}")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"sample: prompt must be a non-empty str, got {prompt!r}")
    rng = np.random.default_rng(seed)
    ids = vocab.encode(prompt)
    out = []
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits, state = model(ids[None, :], None)
            for _ in range(length):
                z = logits[0, -1].astype(np.float64) / temperature
                p = np.exp(z - z.max())
                p /= p.sum()
                nxt = int(rng.choice(len(p), p=p))
                out.append(nxt)
                logits, state = model(np.array([[nxt]], dtype=np.int64), state)
    finally:
        model.train(was_training)
    return prompt + vocab.decode(np.array(out, dtype=np.int64))
