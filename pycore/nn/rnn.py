"""RNN, LSTM and GRU: stacked recurrent layers with backpropagation through time.

    y, state = m(x, state=None)          # forward over the whole sequence
    gx = m.backward(grad_y, grad_state)  # BPTT over that sequence; parameter grads += ...
    m.grad_initial_state                 # gradient of the initial state, after backward

Names, shapes, gate orders and initialisation are PyTorch's, so a torch.nn.LSTM
state_dict (converted to numpy) loads and gives the same numbers. The kernels are in
csrc/rnn.cpp (see pycore.functional.rnn for the math).
"""
__all__ = ["RNN", "LSTM", "GRU"]
import math

import numpy as np

from .. import functional as F
from .._checks import integer
from . import init
from .module import Module, Parameter


class _RNNBase(Module):
    """Shared machinery of RNN, LSTM and GRU (PyTorch's RNNBase).

    The layers are run one after the other, each over the whole sequence; the top
    layer's outputs are returned. Per layer `k` the parameters are weight_ih_l{k}
    (G*H, in), weight_hh_l{k} (G*H, H), bias_ih_l{k} and bias_hh_l{k} (G*H,), with G gate
    blocks (1, 4 or 3) and in = input_size for layer 0, hidden_size above.
    """

    _has_cell = False

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32):
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
        if dropout:
            raise NotImplementedError(f"{name}: dropout between layers is not supported (got dropout={dropout}); "
                                      "apply pycore.nn.Dropout to the outputs of separate single-layer modules")
        if bidirectional:
            raise NotImplementedError(f"{name}: bidirectional=True is not supported")
        self.dropout = 0.0
        self.bidirectional = False
        gates = F.rnn.RNN_MODES[mode][1] * self.hidden_size
        bound = 1.0 / math.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size
            # PyTorch's order and init: every parameter U(-1/sqrt(H), 1/sqrt(H)).
            setattr(self, f"weight_ih_l{layer}", Parameter(init.uniform((gates, layer_input), bound, self.dtype)))
            setattr(self, f"weight_hh_l{layer}", Parameter(init.uniform((gates, self.hidden_size), bound, self.dtype)))
            if self.bias:
                setattr(self, f"bias_ih_l{layer}", Parameter(init.uniform((gates,), bound, self.dtype)))
                setattr(self, f"bias_hh_l{layer}", Parameter(init.uniform((gates,), bound, self.dtype)))
        self.grad_initial_state = None

    def _layer_parameters(self, layer):
        """(weight_ih, weight_hh, bias_ih or None, bias_hh or None) Parameters of one layer."""
        get = lambda kind: getattr(self, f"{kind}_l{layer}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    # -- checking ------------------------------------------------------------------
    def _error(self, kind, message):
        return kind(f"{type(self).__name__}: {message}")

    def _state_array(self, value, name, shape):
        value = self._check_input(value, name)
        if value.shape != shape:
            raise self._error(ValueError, f"{name}: expected shape {shape} (num_layers, batch, hidden_size), "
                                          f"got {value.shape}")
        return value

    def _check_state(self, state, batch, unbatched):
        """state -> (h (L, N, H), c (L, N, H) or None), or (None, None) for a zero state."""
        shape = (self.num_layers, self.hidden_size) if unbatched else (self.num_layers, batch, self.hidden_size)
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

    # -- forward / backward --------------------------------------------------------
    def forward(self, x, state=None):
        """Run every layer over the whole sequence.

        x: (T, N, input_size), or (N, T, input_size) with batch_first=True, or an
        unbatched (T, input_size). state: the initial state, None for zeros: h_0
        (num_layers, N, hidden_size) for RNN/GRU, the pair (h_0, c_0) for LSTM
        ((num_layers, hidden_size) each when unbatched).
        Returns (y, state): y (T, N, hidden_size) (batch_first: (N, T, hidden_size)), the
        top layer's hidden state after every step; state as above, after the last step.
        Do not modify y in place before backward: backward reads it.
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

        caches, h_n, c_n = [], [], []
        layer_input = x
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_parameters(layer)
            y, (h_last, c_last), cache = F.rnn_layer(
                self.mode, layer_input, w_ih.data, w_hh.data, None if b_ih is None else b_ih.data,
                None if b_hh is None else b_hh.data, None if h0 is None else h0[layer],
                None if c0 is None else c0[layer])
            caches.append(cache)
            h_n.append(h_last)
            c_n.append(c_last)
            layer_input = y
        self._save_for_backward(caches, unbatched)

        h_n = np.stack(h_n)
        c_n = np.stack(c_n) if self._has_cell else None
        if unbatched:
            y, h_n = y[:, 0, :], h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        elif self.batch_first:
            y = y.transpose(1, 0, 2)
        return y, ((h_n, c_n) if self._has_cell else h_n)

    def backward(self, grad_y, grad_state=None):
        """Backpropagation through time over the last forward's sequence.

        grad_y: dL/dy, either for every step, with y's shape ((T, N, H), or (N, T, H) with
        batch_first) (many-to-many), or for the last step only, (N, H) (many-to-one; for
        unbatched input (T, H) and (H,)). The last-step form is the gradient of y[-1],
        which is h_n of the top layer, so it enters there and no T-step gradient is
        built or pushed through the layers. None means no loss on y.
        grad_state: dL/d(returned state) (the state feeding the next chunk or a head):
        h_n's gradient (num_layers, N, H), or for LSTM a pair (dh_n, dc_n) whose items
        may be None. None means zero.
        Returns dL/dx in x's layout, or None when requires_input_grad is False. Adds every
        parameter's gradient into .grad and stores dL/d(initial state) in
        `self.grad_initial_state` (h_0's shape, or the pair (dh_0, dc_0) for LSTM).
        """
        caches, unbatched = self._pop_saved()
        steps, batch = caches[0].x.shape[:2]
        hidden, layers = self.hidden_size, self.num_layers
        full = (steps, hidden) if unbatched else (
            (batch, steps, hidden) if self.batch_first else (steps, batch, hidden))
        last = (hidden,) if unbatched else (batch, hidden)

        grad_y_full, grad_h_top = None, None
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
                grad_h_top = grad_y.reshape(batch, hidden)
            else:
                raise self._error(ValueError, f"backward: grad_y has shape {grad_y.shape}; expected y's shape "
                                              f"{full} (every step) or {last} (the last step only)")

        grad_h_n, grad_c_n = self._check_grad_state(grad_state, batch, unbatched)
        if grad_h_top is not None:
            grad_h_n[layers - 1] = grad_h_top if grad_h_n[layers - 1] is None else grad_h_n[layers - 1] + grad_h_top

        grad_h0, grad_c0 = [None] * layers, [None] * layers
        grad_below = grad_y_full
        for layer in reversed(range(layers)):
            w_ih, w_hh, b_ih, b_hh = self._layer_parameters(layer)
            need_input_grad = layer > 0 or self.requires_input_grad
            grad_below, grad_h0[layer], grad_c0[layer] = F.rnn_layer_backward(
                caches[layer], w_ih.data, w_hh.data, w_ih.grad_buffer(), w_hh.grad_buffer(),
                None if b_ih is None else b_ih.grad_buffer(), None if b_hh is None else b_hh.grad_buffer(),
                grad_y=grad_below, grad_h_n=grad_h_n[layer], grad_c_n=grad_c_n[layer],
                need_input_grad=need_input_grad)

        shape = (layers, hidden) if unbatched else (layers, batch, hidden)
        dh0 = np.stack(grad_h0).reshape(shape)
        self.grad_initial_state = (dh0, np.stack(grad_c0).reshape(shape)) if self._has_cell else dh0
        if grad_below is None:
            return None
        if unbatched:
            return grad_below[:, 0, :]
        return grad_below.transpose(1, 0, 2) if self.batch_first else grad_below

    def _check_grad_state(self, grad_state, batch, unbatched):
        """grad_state -> per-layer lists [dh_n (N, H) or None], [dc_n (N, H) or None]."""
        layers = self.num_layers
        none = [None] * layers
        if grad_state is None:
            return list(none), list(none)
        shape = (layers, self.hidden_size) if unbatched else (layers, batch, self.hidden_size)

        def per_layer(value, name):
            if value is None:
                return list(none)
            value = self._check_input(value, name)
            if value.shape != shape:
                raise self._error(ValueError, f"backward: {name} has shape {value.shape}, expected the "
                                              f"returned state's shape {shape}")
            return list(value.reshape(layers, batch, self.hidden_size))

        if self._has_cell:
            if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
                raise self._error(TypeError, "backward: grad_state: expected a pair (grad_h_n, grad_c_n), got "
                                             f"{type(grad_state).__name__}")
            return per_layer(grad_state[0], "grad_h_n"), per_layer(grad_state[1], "grad_c_n")
        if isinstance(grad_state, (tuple, list)):
            raise self._error(TypeError, "backward: grad_state: expected an array like h_n, got a "
                                         f"{type(grad_state).__name__}")
        return per_layer(grad_state, "grad_h_n"), list(none)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s


class RNN(_RNNBase):
    """Elman RNN: h_t = phi(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), phi = tanh or relu.

    Args: input_size, hidden_size, num_layers=1, nonlinearity='tanh' ('tanh' or 'relu'),
    bias=True, batch_first=False, dropout=0.0 and bidirectional=False (other values raise
    NotImplementedError), dtype=np.float32.
    Shape: x (T, N, input_size) (batch_first: (N, T, input_size)) or unbatched
    (T, input_size); state h (num_layers, N, hidden_size).
    Attributes: weight_ih_l{k} (hidden_size, input_size for k = 0 else hidden_size),
    weight_hh_l{k} (hidden_size, hidden_size), bias_ih_l{k}, bias_hh_l{k} (hidden_size,),
    all U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) as in PyTorch.

    Example::

        rnn = pycore.nn.RNN(10, 20, num_layers=2)
        y, h = rnn(np.zeros((5, 3, 10), np.float32))       # y (5, 3, 20), h (2, 3, 20)
        gx = rnn.backward(np.ones_like(y))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype=np.float32):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, dtype)

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(_RNNBase):
    """Long short-term memory, PyTorch's formulation and gate order (i, f, g, o):

        i = s(W_ii x + b_ii + W_hi h + b_hi)   f = s(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = s(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g                     h' = o * tanh(c')

    Args: input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0 (other values of the last three raise
    NotImplementedError), dtype=np.float32.
    Shape: x (T, N, input_size) (batch_first: (N, T, input_size)) or unbatched
    (T, input_size); state (h, c), each (num_layers, N, hidden_size).
    Attributes: weight_ih_l{k} (4*hidden_size, in), weight_hh_l{k} (4*hidden_size,
    hidden_size), bias_ih_l{k}, bias_hh_l{k} (4*hidden_size,): rows stacked i|f|g|o;
    init U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

    Example (many-to-one: a loss on the last step only)::

        lstm = pycore.nn.LSTM(8, 32, batch_first=True)
        y, (h, c) = lstm(x)                 # x (N, T, 8) -> y (N, T, 32), h, c (1, N, 32)
        gx = lstm.backward(grad_last)       # grad_last (N, 32): dL/dy[:, -1]
        lstm.grad_initial_state             # (dL/dh_0, dL/dc_0)
    """

    _has_cell = True

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, dtype=np.float32):
        if proj_size:
            raise NotImplementedError(f"LSTM: proj_size is not supported (got proj_size={proj_size})")
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype)


class GRU(_RNNBase):
    """Gated recurrent unit, PyTorch's formulation and gate order (r, z, n):

        r = s(W_ir x + b_ir + W_hr h + b_hr)   z = s(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Args, shapes and attributes as RNN (without nonlinearity), with 3*hidden_size rows
    stacked r|z|n in each weight and bias.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, dtype=np.float32):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype)
