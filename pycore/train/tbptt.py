"""Truncated backpropagation through time: chunking a stream and carrying the state.

A recurrent model trained on a long stream (a book, a sensor log) cannot backpropagate
through all of it. Truncated BPTT cuts the stream into consecutive chunks of seq_len
steps: the final state of one chunk is the initial state of the next, so the model
still sees the whole history going forward, but each backward stops at the chunk
boundary. This is PyTorch's `hidden.detach()` (word_language_model's repackage_hidden)
and Keras' `stateful=True`.

In pycore the state is plain numpy arrays and each backward covers exactly the last
forward call, so gradients stop at the boundary by construction: there is no graph to
cut. `detach_state` only copies the arrays, so that the carried state cannot be
changed by later in-place edits of the arrays it came from.

    import pycore, pycore.nn as nn, pycore.optim as optim
    from pycore.train import tbptt_batches, detach_state

    emb, lstm, head = nn.Embedding(vocab, 32), nn.LSTM(32, 128), nn.Linear(128, vocab)
    params = emb.parameters() + lstm.parameters() + head.parameters()
    opt = optim.SGD(params, lr=0.1)
    state = None
    for inputs, targets in tbptt_batches(tokens, seq_len=35, batch_size=20):
        y, state = lstm(emb(inputs), state)        # inputs, targets (T, N) ints
        logits = head(y)                           # (T, N, vocab)
        loss, grad_logits = my_cross_entropy(logits, targets)
        for p in params: p.grad.fill(0)
        emb.backward(lstm.backward(head.backward(grad_logits)))
        optim.clip_grad_norm_(params, 0.25)
        opt.step()
        state = detach_state(state)                # carried forward; no gradient flows back

The k1/k2 form of Williams and Peng (run k1 new steps per update, backpropagate through
the last k2 <= k1 of them) follows from the same pieces: run the first k1 - k2 steps of
each chunk under `pycore.no_grad()` (they only advance the state), then the last k2
with gradients:

    for inputs, targets in tbptt_batches(tokens, seq_len=k1, batch_size=20):
        with pycore.no_grad():
            _, state = lstm(emb(inputs[:k1 - k2]), state)
        y, state = lstm(emb(inputs[k1 - k2:]), state)
        ...                                        # loss on targets[k1 - k2:], backward, step

(k2 > k1, where the backward windows overlap, needs the overlapping steps run twice and
is not provided.)

A bidirectional layer cannot carry its state: its reverse direction starts from the end
of each chunk, which the next chunk does not continue. `check_state_can_carry(model)`
raises for such a model (train_char_model and evaluate_char_model call it).
"""
from __future__ import annotations

__all__ = ["batchify", "tbptt_batches", "detach_state", "check_state_can_carry"]
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from numpy.typing import ArrayLike

from .._checks import integer

if TYPE_CHECKING:
    from ..distributed.ddp import DistributedDataParallel
    from ..nn.module import Module

#: A recurrent state: None, an array (RNN/GRU's h) or a tuple/list of them (LSTM's (h, c)).
StateT = Union[None, np.ndarray, tuple[Any, ...], list[Any]]


def batchify(stream: ArrayLike, batch_size: int) -> np.ndarray:
    """Lay a 1-D stream out as batch_size parallel streams.

    Stream n is the n-th of N equal consecutive pieces of `stream` (the tail that does
    not fill all N is dropped), as in PyTorch's word_language_model, where
    data.view(bsz, -1).t() is the time-major (L, N) view of the same array.

    Args:
        stream: a 1-D array of tokens, length S.
        batch_size: int >= 1, the number N of parallel streams (at most S).

    Returns:
        ndarray: (N, L) with L = S // N, a view of the stream's first N * L tokens.
    """
    stream = np.asarray(stream)
    if stream.ndim != 1:
        raise ValueError(f"stream: expected a 1-D array of tokens, got shape {stream.shape}")
    batch_size = integer(batch_size, "batch_size", minimum=1)
    length = stream.shape[0] // batch_size
    if length == 0:
        raise ValueError(f"stream: {stream.shape[0]} tokens cannot fill batch_size={batch_size} streams")
    return stream[: length * batch_size].reshape(batch_size, length)


def tbptt_batches(stream: ArrayLike, seq_len: int, batch_size: int | None = None,
                  batch_first: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (inputs, targets) chunks of a stream for truncated BPTT, in order.

    Args:
        stream: a 1-D array of tokens (cut into batch_size parallel streams by `batchify`),
            or an (N, L) array that already holds N streams.
        seq_len: int >= 1, the steps per chunk (T).
        batch_size: int >= 1 or None (the default): the number of parallel streams for a
            1-D stream (None: one); for an (N, L) stream, None or N.
        batch_first: bool, yield (N, T) chunks instead of time-major (T, N); default False.

    Yields:
        (inputs, targets): integer arrays of shape (T, N), or (N, T) with batch_first;
        fresh, C-contiguous copies.

    Chunk k holds steps [k*seq_len, (k+1)*seq_len) of every stream as inputs and the same
    steps shifted by one as targets (the next token), so consecutive chunks continue
    each other and the final state of one is the right initial state of the next. The
    last chunk may be shorter (L - 1 is not always a multiple of seq_len).
    """
    seq_len = integer(seq_len, "seq_len", minimum=1)
    if not isinstance(batch_first, (bool, np.bool_)):
        raise TypeError(f"batch_first: expected a bool, got {type(batch_first).__name__}")
    data = np.asarray(stream)
    if data.ndim == 1:
        data = batchify(data, 1 if batch_size is None else batch_size)
    elif data.ndim == 2:
        if batch_size is not None and integer(batch_size, "batch_size", minimum=1) != data.shape[0]:
            raise ValueError(f"batch_size: the stream already holds {data.shape[0]} streams (shape {data.shape}), "
                             f"got batch_size={batch_size}")
    else:
        raise ValueError(f"stream: expected a 1-D token stream or an (N, L) array of streams, got shape {data.shape}")
    length = data.shape[1]
    if length < 2:
        raise ValueError(f"stream: each stream needs at least 2 steps (an input and its target), got {length}")
    for start in range(0, length - 1, seq_len):
        steps = min(seq_len, length - 1 - start)
        inputs = data[:, start: start + steps]
        targets = data[:, start + 1: start + 1 + steps]
        if batch_first:
            yield np.ascontiguousarray(inputs), np.ascontiguousarray(targets)
        else:
            yield np.ascontiguousarray(inputs.T), np.ascontiguousarray(targets.T)


def detach_state(state: StateT) -> StateT:
    """The recurrent state to carry into the next chunk: copies of its arrays.

    Args:
        state: None, an array (RNN/GRU's h) or a tuple/list of arrays (LSTM's (h, c)),
            nested to any depth.

    Returns:
        The same structure (None, array, tuple or list) holding copies of the arrays.

    Gradients never cross a chunk boundary in pycore (each backward covers the last
    forward only), so this is the counterpart of PyTorch's `h.detach()` in name and
    place in the loop; the copy guards the carried state against in-place edits.
    """
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        return state.copy()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"state: expected None, an array or a tuple of arrays, got {type(state).__name__}")


def check_state_can_carry(model: Module | DistributedDataParallel) -> None:
    """Check that `model`'s final recurrent state can start the next chunk of a stream.

    Raises ValueError when `model` holds a bidirectional recurrent layer, whose final
    state is not a meaningful initial state for the next chunk (the reverse direction
    ends at the chunk's first step).

    Args:
        model: Module (or DistributedDataParallel), searched with named_modules().
    """
    for name, module in model.named_modules():
        if getattr(module, "bidirectional", False):
            raise ValueError(f"{name or type(model).__name__}: truncated BPTT carries the state from one chunk "
                             "to the next, which is not meaningful for a bidirectional layer (its reverse "
                             "direction runs from the chunk's end); use bidirectional=False, or run each "
                             "sequence whole with state=None")
