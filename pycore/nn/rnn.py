"""RNN, LSTM and GRU: stacked recurrent layers with backpropagation through time, and
their single-step cells RNNCell, LSTMCell and GRUCell.

    y, state = m(x, state=None, lengths=None)  # forward over the whole (padded) sequence
    gx = m.backward(grad_y, grad_state)  # BPTT over that sequence; parameter grads += ...
    m.grad_initial_state                 # gradient of the initial state, after backward

Names, shapes, gate orders and initialisation are PyTorch's, so a torch.nn.LSTM
state_dict (converted to numpy) loads and gives the same numbers. The kernels are in
csrc/rnn.cpp (see pycore.functional.rnn for the math).
"""
from __future__ import annotations

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]
import math
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import DTypeLike

from .. import functional as F
from .._checks import integer, probability
from .._context import is_grad_enabled
from . import init
from .module import Module, Parameter

# A recurrent layer's state: h for RNN and GRU, the pair (h, c) for LSTM.
_State = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]
# A gradient for that state: as _State, but LSTM's pair may hold a None (no gradient).
_GradState = Union[np.ndarray, tuple[Optional[np.ndarray], Optional[np.ndarray]], list[Any]]


class _RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU (PyTorch's RNNBase).

    The layers are run one after the other, each over the whole sequence (both directions
    when bidirectional, each fed the concatenated outputs of the layer below); the top
    layer's outputs are returned. Per layer `k` the parameters are weight_ih_l{k}
    (G*H, in), weight_hh_l{k} (G*H, H), bias_ih_l{k} and bias_hh_l{k} (G*H,), with G gate
    blocks (1, 4 or 3) and in = input_size for layer 0, hidden_size above.
    """

    _has_cell = False
    # dL/d(initial state) after backward: h_0's (RNN, GRU) or the pair (dh_0, dc_0) (LSTM)
    grad_initial_state: _State | None

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        name = type(self).__name__
        self.mode = mode
        self.input_size = integer(input_size, "input_size", minimum=1)
        self.hidden_size = integer(hidden_size, "hidden_size", minimum=1)
        self.num_layers = integer(num_layers, "num_layers", minimum=1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{name}: bias: expected a bool, got {type(bias).__name__}")
        if not isinstance(batch_first, (bool, np.bool_)):
            raise TypeError(f"{name}: batch_first: expected a bool, got {type(batch_first).__name__}")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        try:
            dropout = probability(dropout, "dropout")
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: {e}") from None
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"{name}: bidirectional: expected a bool, got {type(bidirectional).__name__}")
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        gates = F.RNN_MODES[mode][1] * self.hidden_size
        bound = 1.0 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for suffix in ("", "_reverse")[:self.num_directions]:
                # PyTorch's order and init: every parameter U(-1/sqrt(H), 1/sqrt(H)).
                key = f"l{layer}{suffix}"
                setattr(self, f"weight_ih_{key}", Parameter(init.uniform((gates, layer_input), bound, self.dtype)))
                setattr(self, f"weight_hh_{key}",
                        Parameter(init.uniform((gates, self.hidden_size), bound, self.dtype)))
                if self.bias:
                    setattr(self, f"bias_ih_{key}", Parameter(init.uniform((gates,), bound, self.dtype)))
                    setattr(self, f"bias_hh_{key}", Parameter(init.uniform((gates,), bound, self.dtype)))
        self.grad_initial_state = None

    def _layer_parameters(self, layer: int, direction: int = 0) -> tuple[Any, Any, Any, Any]:
        """(weight_ih, weight_hh, bias_ih or None, bias_hh or None) Parameters of one layer
        and direction (0 forward, 1 reverse: PyTorch's *_l{layer}_reverse)."""
        suffix = "_reverse" if direction else ""
        get = lambda kind: getattr(self, f"{kind}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    # -- checking ------------------------------------------------------------------
    def _error(self, kind: type[Exception], message: str) -> Exception:
        return kind(f"{type(self).__name__}: {message}")

    @property
    def _state_rows(self) -> int:
        """Rows of h_n: one per layer and direction, PyTorch's layout (layer * D + direction)."""
        return self.num_layers * self.num_directions

    def _state_array(self, value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self._check_input(value, name)
        if value.shape != shape:
            rows = "num_layers * 2" if self.bidirectional else "num_layers"
            raise self._error(ValueError, f"{name}: expected shape {shape} ({rows}, batch, hidden_size), "
                                          f"got {value.shape}")
        return value

    def _check_state(self, state: Any, batch: int, unbatched: bool,
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """state -> (h (L*D, N, H), c (L*D, N, H) or None), or (None, None) for a zero state."""
        rows = self._state_rows
        shape = (rows, self.hidden_size) if unbatched else (rows, batch, self.hidden_size)
        if state is None:
            return None, None
        if self._has_cell:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise self._error(TypeError, f"state: expected a tuple (h_0, c_0) of arrays {shape}, "
                                             f"got {type(state).__name__}")
            h = self._state_array(state[0], "h_0", shape)
            c = self._state_array(state[1], "c_0", shape)
        else:
            if isinstance(state, (tuple, list)):
                raise self._error(TypeError, f"state: expected an array h_0 of shape {shape}, got a "
                                             f"{type(state).__name__} (only LSTM takes (h_0, c_0))")
            h, c = self._state_array(state, "h_0", shape), None
        if unbatched:
            h = h[:, None, :]
            c = None if c is None else c[:, None, :]
        return h, c

    def _check_lengths(self, lengths: Any, steps: int, batch: int, unbatched: bool) -> np.ndarray | None:
        """lengths -> an int64 (N,) array with every entry in [1, T], or None."""
        if lengths is None:
            return None
        if unbatched:
            raise self._error(ValueError, "lengths: only for batched input (T, N, input_size); an unbatched "
                                          "sequence is its own length")
        lengths = np.asarray(lengths)
        if lengths.dtype == np.bool_ or not np.issubdtype(lengths.dtype, np.integer):
            raise self._error(ValueError, f"lengths: expected an integer array, got dtype {lengths.dtype}")
        if lengths.shape != (batch,):
            raise self._error(ValueError, f"lengths: expected shape ({batch},) (one length per sequence), "
                                          f"got {lengths.shape}")
        bad = (lengths < 1) | (lengths > steps)
        if bad.any():
            n = int(np.flatnonzero(bad)[0])
            raise self._error(ValueError, f"lengths: every length must be in [1, {steps}] (the padded number of "
                                          f"steps), got lengths[{n}] = {lengths[n]}")
        return lengths.astype(np.int64)

    # -- forward / backward --------------------------------------------------------
    def forward(self, x: np.ndarray, state: _State | None = None, lengths: Any = None,
                ) -> tuple[np.ndarray, Any]:
        """Run every layer (and direction) over the whole sequence.

        Between layers, in training mode, dropout=p zeroes outputs with probability p
        (pycore's generator) and scales the rest by 1/(1-p). Do not modify y in place
        before backward: backward reads it. D below is 2 if bidirectional else 1.

        Args:
            x (np.ndarray): (T, N, input_size), or (N, T, input_size) with batch_first=True,
                or an unbatched (T, input_size); of the layer's dtype.
            state (np.ndarray, pair of np.ndarray, or None, default None): the initial
                state, None for zeros: h_0 (num_layers * D, N, hidden_size) for RNN/GRU, the
                pair (h_0, c_0) for LSTM ((num_layers * D, hidden_size) each when
                unbatched), row layer * D + direction.
            lengths (array-like of ints or None, default None): None when every sequence has
                T steps; else (N,) lengths in [1, T], in any order, for a right-padded batch
                (PyTorch's pack_padded_sequence(enforce_sorted=False)): the padded steps
                are skipped.

        Returns:
            (y, state): y (T, N, D * hidden_size) (batch_first: (N, T, D * hidden_size);
            unbatched: (T, D * hidden_size)), the top layer's hidden state after every step
            (forward | reverse halves), zero past each sequence's length; state in the
            form it was given (h_n, or (h_n, c_n) for LSTM), each sequence's state after its
            last real step (the reverse direction's after step 0).
        """
        x = self._check_input(x, ndim=(2, 3), layout="(T, N, input_size)")
        unbatched = x.ndim == 2
        if x.shape[-1] != self.input_size:
            raise self._error(ValueError, f"input: expected {self.input_size} features on the last axis "
                                          f"(input_size), got shape {x.shape}")
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        steps, batch = x.shape[:2]
        if steps == 0 or batch == 0:
            raise self._error(ValueError, f"input: expected at least one step and one sequence, got shape "
                                          f"{x.shape if not self.batch_first else (batch, steps, x.shape[2])}")
        h0, c0 = self._check_state(state, batch, unbatched)
        lengths = self._check_lengths(lengths, steps, batch, unbatched)

        # With lengths the batch is sorted longest first, so the sequences still going at
        # any step are a prefix of it and each step group runs on one contiguous slice.
        order = None if lengths is None else np.argsort(-lengths, kind="stable")
        sorted_lengths = None
        if order is not None:
            sorted_lengths, x = lengths[order], x[:, order]
            h0 = None if h0 is None else h0[:, order]
            c0 = None if c0 is None else c0[:, order]
        reverse = self._reversal(sorted_lengths, steps, batch) if self.bidirectional else None

        caches: list[Any] = []
        masks: list[np.ndarray | None] = []
        h_rows: list[np.ndarray] = []  # the final state of each layer and direction, stacked as h_n
        c_rows: list[np.ndarray] = []  # LSTM's final cell states likewise (none for RNN and GRU)
        layer_input = x
        for layer in range(self.num_layers):
            if layer > 0:  # dropout on the outputs of every layer but the last (PyTorch's placement)
                mask = None
                if self.training and self.dropout:
                    layer_input, mask = F.dropout_forward(layer_input, self.dropout, True)
                masks.append(mask)
            outputs = []
            for direction in range(self.num_directions):
                row = layer * self.num_directions + direction
                w_ih, w_hh, b_ih, b_hh = self._layer_parameters(layer, direction)
                # The reverse direction is the same kernel on each sequence read backwards
                # from its last real step; its outputs are put back in time order.
                seq = layer_input if direction == 0 else layer_input[reverse]
                y, (h_last, c_last), cache = F.rnn_layer_varlen_forward(
                    self.mode, seq, sorted_lengths, w_ih.data, w_hh.data, None if b_ih is None else b_ih.data,
                    None if b_hh is None else b_hh.data, None if h0 is None else h0[row],
                    None if c0 is None else c0[row])
                outputs.append(y if direction == 0 else y[reverse])
                caches.append(cache)
                h_rows.append(h_last)
                if c_last is not None:
                    c_rows.append(c_last)
            layer_input = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)
        y = layer_input
        self._save_for_backward(caches, masks, order, sorted_lengths, reverse, unbatched)

        h_n = np.stack(h_rows)
        c_n = np.stack(c_rows) if self._has_cell else None
        if order is not None:  # back to the caller's order
            unsort = np.argsort(order)
            y, h_n = y[:, unsort], h_n[:, unsort]
            c_n = None if c_n is None else c_n[:, unsort]
        if unbatched:
            y, h_n = y[:, 0, :], h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        elif self.batch_first:
            y = y.transpose(1, 0, 2)
        return y, ((h_n, c_n) if self._has_cell else h_n)

    def _backward_from_tape(self, grad_output: Any, output: Any) -> Any:
        # (pycore/autograd.py) forward returned (y, state); the initial state's gradient is an attribute
        grad_y, grad_state = grad_output
        return self.backward(grad_y, grad_state), self.grad_initial_state

    @staticmethod
    def _reversal(lengths: np.ndarray | None, steps: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Fancy index (rows (T, N), columns (1, N)) that reverses each sequence in time within
        its length and leaves its padding in place; applying it twice is the identity."""
        t = np.arange(steps)[:, None]
        last = np.full(batch, steps - 1) if lengths is None else lengths - 1
        rows = np.where(t <= last, last - t, t)
        return rows, np.arange(batch)[None, :]

    def backward(self, grad_y: np.ndarray | None, grad_state: _GradState | None = None,
                 ) -> np.ndarray | None:
        """Backpropagation through time over the last forward's sequence.

        Unlike PyTorch's autograd, the gradient may be given for the last step only (below),
        and the initial state's gradient is an attribute, not a second result.

        Args:
            grad_y (np.ndarray or None): dL/dy, either for every step, with y's shape
                ((T, N, D*H), or (N, T, D*H) with batch_first) (many-to-many), or for each
                sequence's last real step only, (N, D*H) (many-to-one; for unbatched input
                (T, D*H) and (D*H,)): the gradient of y[T-1] (with lengths: of
                y[lengths[n] - 1, n]). In one direction that output is the top layer's h_n,
                so the gradient enters there and no T-step gradient is built. None means no
                loss on y.
            grad_state (np.ndarray, pair, or None, default None): dL/d(returned state) (the
                state feeding the next chunk or a head): h_n's gradient (num_layers * D, N, H),
                or for LSTM a pair (dh_n, dc_n) whose items may be None. None means zero.

        Returns:
            np.ndarray or None: dL/dx in x's layout (zero on padded steps), or None when
            `requires_input_grad` is False. Every parameter's gradient is added into its
            .grad, and dL/d(initial state) is stored in `self.grad_initial_state` (h_0's
            shape, or the pair (dh_0, dc_0) for LSTM).
        """
        caches, masks, order, sorted_lengths, reverse, unbatched = self._pop_saved()
        steps, batch = caches[0].steps, caches[0].batch
        hidden, layers, directions = self.hidden_size, self.num_layers, self.num_directions
        width = hidden * directions
        full = (steps, width) if unbatched else (
            (batch, steps, width) if self.batch_first else (steps, batch, width))
        last = (width,) if unbatched else (batch, width)

        grad_y_full: np.ndarray | None = None
        grad_h_top: np.ndarray | None = None
        if grad_y is not None:
            grad_y = self._check_input(grad_y, "grad_y")
            if grad_y.shape == full:
                if unbatched:
                    grad_y_full = grad_y[:, None, :]
                elif self.batch_first:
                    grad_y_full = np.ascontiguousarray(grad_y.transpose(1, 0, 2))
                else:
                    grad_y_full = grad_y
            elif grad_y.shape == last:
                grad_h_top = grad_y.reshape(batch, width)
            else:
                raise self._error(ValueError, f"backward: grad_y has shape {grad_y.shape}; expected y's shape "
                                              f"{full} (every step) or {last} (the last step only)")

        grad_h_n, grad_c_n = self._check_grad_state(grad_state, batch, unbatched)
        if order is not None:  # into the sorted order forward ran in
            grad_y_full = None if grad_y_full is None else grad_y_full[:, order]
            grad_h_top = None if grad_h_top is None else grad_h_top[order]
            grad_h_n = [None if g is None else g[order] for g in grad_h_n]
            grad_c_n = [None if g is None else g[order] for g in grad_c_n]
        if grad_h_top is not None:
            if directions == 1:  # y at the last real step is the top layer's h_n
                top = layers - 1
                grad_h_n[top] = grad_h_top if grad_h_n[top] is None else grad_h_n[top] + grad_h_top
            else:  # the reverse half of that output is not a final state: scatter it
                last_step = np.full(batch, steps - 1) if sorted_lengths is None else sorted_lengths - 1
                grad_y_full = np.zeros((steps, batch, width), dtype=grad_h_top.dtype)
                grad_y_full[last_step, np.arange(batch)] = grad_h_top

        rows = layers * directions
        # dL/d(initial state) per layer and direction, each filled below (c: None without a cell)
        grad_h0: list[Any] = [None] * rows
        grad_c0: list[Any] = [None] * rows
        grad_below = grad_y_full
        for layer in reversed(range(layers)):
            need_input_grad = layer > 0 or self.requires_input_grad
            grad_input = None
            for direction in range(directions):
                row = layer * directions + direction
                w_ih, w_hh, b_ih, b_hh = self._layer_parameters(layer, direction)
                grad_out = None
                if grad_below is not None:
                    grad_out = grad_below[:, :, direction * hidden:(direction + 1) * hidden]
                    grad_out = grad_out[reverse] if direction else np.ascontiguousarray(grad_out)
                grad_x, grad_h0[row], grad_c0[row] = F.rnn_layer_varlen_backward(
                    (grad_out, (grad_h_n[row], grad_c_n[row])), caches[row], w_ih.grad_buffer(), w_hh.grad_buffer(),
                    None if b_ih is None else b_ih.grad_buffer(), None if b_hh is None else b_hh.grad_buffer(),
                    need_input_grad=need_input_grad)
                if grad_x is not None:
                    grad_x = grad_x[reverse] if direction else grad_x
                    grad_input = grad_x if grad_input is None else grad_input + grad_x
            if layer > 0 and grad_input is not None and masks[layer - 1] is not None:
                grad_input = F.dropout_backward(grad_input, masks[layer - 1])
            grad_below = grad_input

        dh0 = np.stack(grad_h0)
        dc0 = np.stack(grad_c0) if self._has_cell else None
        if order is not None:
            unsort = np.argsort(order)
            dh0 = dh0[:, unsort]
            dc0 = None if dc0 is None else dc0[:, unsort]
            grad_below = None if grad_below is None else grad_below[:, unsort]
        shape = (rows, hidden) if unbatched else (rows, batch, hidden)
        dh0 = dh0.reshape(shape)
        self.grad_initial_state = dh0 if dc0 is None else (dh0, dc0.reshape(shape))
        if grad_below is None:
            return None
        if unbatched:
            return grad_below[:, 0, :]
        return grad_below.transpose(1, 0, 2) if self.batch_first else grad_below

    def _check_grad_state(self, grad_state: Any, batch: int, unbatched: bool,
                          ) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """grad_state -> per-row lists [dh_n (N, H) or None], [dc_n (N, H) or None]."""
        rows = self._state_rows
        none: list[np.ndarray | None] = [None] * rows
        if grad_state is None:
            return list(none), list(none)
        shape = (rows, self.hidden_size) if unbatched else (rows, batch, self.hidden_size)

        def per_row(value: Any, name: str) -> list[np.ndarray | None]:
            if value is None:
                return list(none)
            value = self._check_input(value, name)
            if value.shape != shape:
                raise self._error(ValueError, f"backward: {name} has shape {value.shape}, expected the "
                                              f"returned state's shape {shape}")
            return list(value.reshape(rows, batch, self.hidden_size))

        if self._has_cell:
            if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
                raise self._error(TypeError, "backward: grad_state: expected a pair (grad_h_n, grad_c_n), got "
                                             f"{type(grad_state).__name__}")
            return per_row(grad_state[0], "grad_h_n"), per_row(grad_state[1], "grad_c_n")
        if isinstance(grad_state, (tuple, list)):
            raise self._error(TypeError, "backward: grad_state: expected an array like h_n, got a "
                                         f"{type(grad_state).__name__}")
        return per_row(grad_state, "grad_h_n"), list(none)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(_RNNBase):
    """Elman RNN: h_t = phi(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), phi = tanh or relu.

    Args:
        input_size (int): features of each step's input.
        hidden_size (int): H, features of the hidden state.
        num_layers (int, default 1): stacked layers, each fed the outputs of the one below.
        nonlinearity ('tanh' or 'relu', default 'tanh'): phi.
        bias (bool, default True): False leaves out bias_ih and bias_hh.
        batch_first (bool, default False): x and y are (N, T, features) instead of
            (T, N, features); the state keeps its (layers, N, H) layout.
        dropout (float in [0, 1], default 0.0): dropout on the outputs of every layer but
            the last, in training mode only.
        bidirectional (bool, default False): adds a reverse direction (*_reverse
            parameters); y gets 2 * hidden_size features and the state 2 * num_layers rows.
        dtype (np.float32 or np.float64, default np.float32): of the parameters and inputs.

    Shape:
        x (T, N, input_size) (batch_first: (N, T, input_size)) or unbatched (T, input_size)
        -> y (T, N, D * hidden_size) (batch_first: (N, T, D * hidden_size)) or unbatched
        (T, D * hidden_size); state h (num_layers * D, N, hidden_size) in and out,
        D = 2 if bidirectional else 1.

    Attributes:
        weight_ih_l{k}: (hidden_size, input_size for k = 0 else D * hidden_size).
        weight_hh_l{k}: (hidden_size, hidden_size).
        bias_ih_l{k}, bias_hh_l{k}: (hidden_size,); every parameter
            U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) as in PyTorch.
        grad_initial_state: dL/dh_0 after backward.

    Example::

        rnn = pycore.nn.RNN(10, 20, num_layers=2)
        y, h = rnn(np.zeros((5, 3, 10), np.float32))       # y (5, 3, 20), h (2, 3, 20)
        gx = rnn.backward(np.ones_like(y))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: DTypeLike = np.float32) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, dtype)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(_RNNBase):
    """Long short-term memory, PyTorch's formulation and gate order (i, f, g, o):

        i = s(W_ii x + b_ii + W_hi h + b_hi)   f = s(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = s(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g                     h' = o * tanh(c')

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype: as RNN's.
        proj_size (int, default 0): PyTorch's projection; other values raise
            NotImplementedError.

    Shape:
        x and y as RNN's; state (h, c) in and out, each (num_layers * D, N, hidden_size)
        (unbatched: (num_layers * D, hidden_size)).

    Attributes:
        weight_ih_l{k}: (4 * hidden_size, in), in as RNN's.
        weight_hh_l{k}: (4 * hidden_size, hidden_size).
        bias_ih_l{k}, bias_hh_l{k}: (4 * hidden_size,); rows stacked i|f|g|o in each;
            init U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
        grad_initial_state: (dL/dh_0, dL/dc_0) after backward.

    Example (many-to-one: a loss on the last step only)::

        lstm = pycore.nn.LSTM(8, 32, batch_first=True)
        y, (h, c) = lstm(x)                 # x (N, T, 8) -> y (N, T, 32), h, c (1, N, 32)
        gx = lstm.backward(grad_last)       # grad_last (N, 32): dL/dy[:, -1]
        lstm.grad_initial_state             # (dL/dh_0, dL/dc_0)
    """

    _has_cell = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 dtype: DTypeLike = np.float32) -> None:
        if proj_size:
            raise NotImplementedError(f"LSTM: proj_size is not supported (got proj_size={proj_size})")
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype)


class GRU(_RNNBase):
    """Gated recurrent unit, PyTorch's formulation and gate order (r, z, n):

        r = s(W_ir x + b_ir + W_hr h + b_hr)   z = s(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype: as RNN's
            (GRU has no nonlinearity argument).

    Shape:
        as RNN's: x (T, N, input_size) -> y (T, N, D * hidden_size); state h
        (num_layers * D, N, hidden_size) in and out.

    Attributes:
        weights and biases as RNN's, with 3 * hidden_size rows stacked r|z|n in each.
        grad_initial_state: dL/dh_0 after backward.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype)


_CELL_LOOP = """
    A loop of cell calls is differentiated by hand, newest call first: each forward
    (outside pycore.no_grad()) pushes what its backward needs, and each backward pops
    the newest one (`clear_saved()` drops calls never differentiated).

        h, outs = None, []
        for t in range(T):                      # forward: x (T, N, input_size)
            h = cell(x[t], h)
            outs.append(h)
        grad_h, grad_x = None, np.empty_like(x)
        for t in reversed(range(T)):            # backward: grad_outs (T, N, hidden_size)
            g = grad_outs[t] if grad_h is None else grad_outs[t] + grad_h
            grad_x[t], grad_h = cell.backward(g)
        # LSTMCell: state and gradients are pairs, h, c = cell(x[t], (h, c)) and
        # grad_x[t], (grad_h, grad_c) = cell.backward((grad_outs[t] + grad_h, grad_c)).
"""


class _CellBase(Module):
    """Shared machinery of RNNCell, LSTMCell and GRUCell (PyTorch's RNNCellBase): one step
    of the matching layer, the same kernel run over T = 1. Backward state is a stack of
    contexts, one per undifferentiated call (_CELL_LOOP, part of each cell's docstring).
    """

    _has_cell = False

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True,
                 dtype: DTypeLike = np.float32) -> None:
        super().__init__(dtype)
        self.mode = mode
        self.input_size = integer(input_size, "input_size", minimum=1)
        self.hidden_size = integer(hidden_size, "hidden_size", minimum=1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}: bias: expected a bool, got {type(bias).__name__}")
        self.bias = bool(bias)
        gates = F.RNN_MODES[mode][1] * self.hidden_size
        bound = 1.0 / math.sqrt(self.hidden_size)  # PyTorch's init, in its order
        self.weight_ih = Parameter(init.uniform((gates, self.input_size), bound, self.dtype))
        self.weight_hh = Parameter(init.uniform((gates, self.hidden_size), bound, self.dtype))
        if self.bias:
            self.bias_ih = Parameter(init.uniform((gates,), bound, self.dtype))
            self.bias_hh = Parameter(init.uniform((gates,), bound, self.dtype))
        self._contexts: list[tuple[Any, bool]] = []  # (the kernel's ctx, unbatched) per call, newest last

    def clear_saved(self) -> None:
        """Drop the saved contexts of calls that will not be differentiated."""
        self._contexts = []

    # (pycore/autograd.py) a call's state is the context it pushed; backward takes the pair grad_state
    def _take_backward_state(self) -> Any:
        return self._contexts.pop()

    def _restore_backward_state(self, state: Any) -> None:
        self._contexts.append(state)

    def _backward_from_tape(self, grad_state: Any, output: Any) -> Any:
        return self.backward(grad_state)

    def forward(self, x: np.ndarray, state: _State | None = None) -> Any:
        """One step. Outside pycore.no_grad() it pushes what its backward needs.

        Args:
            x (np.ndarray): (N, input_size) or unbatched (input_size,), of the cell's dtype.
            state (np.ndarray, pair of np.ndarray, or None, default None): h (N, hidden_size)
                for RNNCell/GRUCell, the pair (h, c) for LSTMCell, None for zeros.

        Returns:
            np.ndarray or (np.ndarray, np.ndarray): the new state in the same form: h'
            (N, hidden_size) (unbatched: (hidden_size,)), or (h', c') for LSTMCell.
        """
        name = type(self).__name__
        x = self._check_input(x, ndim=(1, 2), layout="(N, input_size)")
        unbatched = x.ndim == 1
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input: expected {self.input_size} features on the last axis "
                             f"(input_size), got shape {x.shape}")
        batch = 1 if unbatched else x.shape[0]
        if batch == 0:
            raise ValueError(f"{name}: input: expected at least one row, got shape {x.shape}")
        shape = x.shape[:-1] + (self.hidden_size,)
        h = c = None
        if state is not None:
            if self._has_cell:
                if not isinstance(state, (tuple, list)) or len(state) != 2:
                    raise TypeError(f"{name}: state: expected a pair (h, c) of arrays {shape}, "
                                    f"got {type(state).__name__}")
                h, c = state
            elif isinstance(state, (tuple, list)):
                raise TypeError(f"{name}: state: expected an array h of shape {shape}, got a "
                                f"{type(state).__name__} (only LSTMCell takes (h, c))")
            else:
                h = state
            parts = []
            for value, what in ((h, "h"), (c, "c"))[:2 if self._has_cell else 1]:
                value = self._check_input(value, what)
                if value.shape != shape:
                    raise ValueError(f"{name}: {what}: expected shape {shape}, got {value.shape}")
                parts.append(value.reshape(batch, self.hidden_size))
            h, c = parts if self._has_cell else (parts[0], None)
        y, (h_new, c_new), cache = F.rnn_layer_forward(
            self.mode, x.reshape(1, batch, self.input_size), self.weight_ih.data, self.weight_hh.data,
            None if not self.bias else self.bias_ih.data, None if not self.bias else self.bias_hh.data, h, c)
        if is_grad_enabled():
            self._contexts.append((cache, unbatched))
        h_new = h_new.reshape(shape)
        if not self._has_cell:
            return h_new
        assert c_new is not None  # an LSTM cell's step always returns its cell state
        return h_new, c_new.reshape(shape)

    def backward(self, grad_state: _GradState) -> tuple[np.ndarray | None, Any]:
        """Backward of the newest undifferentiated call (calls are differentiated newest first).

        Args:
            grad_state (np.ndarray or pair): dL/d(new state): h's gradient, or for LSTMCell
                a pair (dh, dc) whose items may be None.

        Returns:
            (grad_x, grad_previous_state): dL/dx and dL/d(previous state) in the shapes
            forward took (the state's gradient as a pair for LSTMCell); grad_x is None
            when `requires_input_grad` is False. The parameters' gradients are added into
            their .grad. Unlike PyTorch's autograd, these are the results of the call, not
            accumulated into the inputs.
        """
        name = type(self).__name__
        if not self._contexts:
            raise RuntimeError(f"{name}.backward: no forward to differentiate. Call forward first (outside "
                               "pycore.no_grad()); each forward supports one backward, newest first.")
        cache, unbatched = self._contexts[-1]
        batch = cache.x.shape[1]
        shape = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if self._has_cell:
            if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
                raise TypeError(f"{name}.backward: grad_state: expected a pair (grad_h, grad_c), got "
                                f"{type(grad_state).__name__}")
            grads = list(grad_state)
        else:
            if isinstance(grad_state, (tuple, list)):
                raise TypeError(f"{name}.backward: grad_state: expected an array like h, got a "
                                f"{type(grad_state).__name__}")
            grads = [grad_state, None]
        for i, what in enumerate(("grad_h", "grad_c")):
            if grads[i] is not None:
                grads[i] = self._check_input(grads[i], what)
                if grads[i].shape != shape:
                    raise ValueError(f"{name}.backward: {what} has shape {grads[i].shape}, expected {shape}")
                grads[i] = grads[i].reshape(batch, self.hidden_size)
        self._contexts.pop()
        grad_x, grad_h, grad_c = F.rnn_layer_backward(
            (None, (grads[0], grads[1])), cache, self.weight_ih.grad_buffer(), self.weight_hh.grad_buffer(),
            self.bias_ih.grad_buffer() if self.bias else None, self.bias_hh.grad_buffer() if self.bias else None,
            need_input_grad=self.requires_input_grad)
        grad_x = None if grad_x is None else grad_x.reshape((self.input_size,) if unbatched else (batch, -1))
        grad_h = grad_h.reshape(shape)
        if not self._has_cell:
            return grad_x, grad_h
        assert grad_c is not None  # an LSTM step's backward always returns the cell state's gradient
        return grad_x, (grad_h, grad_c.reshape(shape))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    __doc__ = """One Elman step h' = phi(W_ih x + b_ih + W_hh h + b_hh), as torch.nn.RNNCell.
""" + _CELL_LOOP + """
    Args:
        input_size (int): I, features of the input.
        hidden_size (int): H, features of the state.
        bias (bool, default True): False leaves out bias_ih and bias_hh.
        nonlinearity ('tanh' or 'relu', default 'tanh'): phi.
        dtype (np.float32 or np.float64, default np.float32): of the parameters and inputs.

    Shape:
        x (N, I) or unbatched (I,), h (N, H) or (H,) -> h' of h's shape.

    Attributes:
        weight_ih (H, I), weight_hh (H, H), bias_ih and bias_hh (H,): U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 dtype: DTypeLike = np.float32) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias,
                         dtype)


class LSTMCell(_CellBase):
    __doc__ = """One LSTM step (h, c) -> (h', c'), LSTM's equations, as torch.nn.LSTMCell.
""" + _CELL_LOOP + """
    Args:
        input_size (int): I, features of the input.
        hidden_size (int): H, features of h and c.
        bias (bool, default True): False leaves out bias_ih and bias_hh.
        dtype (np.float32 or np.float64, default np.float32): of the parameters and inputs.

    Shape:
        x (N, I) or unbatched (I,), (h, c) each (N, H) or (H,) -> (h', c') of the same shapes.

    Attributes:
        weight_ih (4H, I), weight_hh (4H, H), bias_ih and bias_hh (4H,): gates stacked
        i|f|g|o, U(-1/sqrt(H), 1/sqrt(H)).
    """

    _has_cell = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias, dtype)


class GRUCell(_CellBase):
    __doc__ = """One GRU step h -> h', GRU's equations, as torch.nn.GRUCell.
""" + _CELL_LOOP + """
    Args:
        input_size (int): I, features of the input.
        hidden_size (int): H, features of the state.
        bias (bool, default True): False leaves out bias_ih and bias_hh.
        dtype (np.float32 or np.float64, default np.float32): of the parameters and inputs.

    Shape:
        x (N, I) or unbatched (I,), h (N, H) or (H,) -> h' of h's shape.

    Attributes:
        weight_ih (3H, I), weight_hh (3H, H), bias_ih and bias_hh (3H,): gates stacked
        r|z|n, U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__("GRU", input_size, hidden_size, bias, dtype)
