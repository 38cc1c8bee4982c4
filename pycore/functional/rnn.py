"""RNN/LSTM/GRU sequence forward and backward through time (csrc/rnn.cpp).

One layer and one direction per call; pycore.nn.RNN, LSTM and GRU stack the layers.
Shapes are time-major and PyTorch's, with G gate blocks per mode (RNN 1, LSTM 4 in the
order i, f, g, o, GRU 3 in the order r, z, n):

    x (T, N, I)   w_ih (G*H, I)   w_hh (G*H, H)   b_ih, b_hh (G*H,)   h0, c0 (N, H)

    RNN   h_t = phi(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   phi = tanh or relu
    LSTM  i, f, o = sigmoid(.), g = tanh(.)  (each W_i* x_t + b_i* + W_h* h_{t-1} + b_h*)
          c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    GRU   r, z = sigmoid(.),   n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
          h_t = (1 - z) * n + z * h_{t-1}

`rnn_layer` returns the outputs h_1..h_T and the final state (h_n, c_n);
`rnn_layer_forward` returns them and a ctx (RnnLayerContext: the activations and weights)
that `rnn_layer_backward(grad_output, ctx, ...)` reads for backpropagation through time
over the same T steps. grad_output mirrors the outputs: (grad_y, (grad_h_n, grad_c_n)),
any part None for zero. The `_varlen` pair does the same over a right-padded batch.
"""
from __future__ import annotations

__all__ = ["rnn_layer", "rnn_layer_forward", "rnn_layer_backward", "rnn_layer_varlen", "rnn_layer_varlen_forward",
           "rnn_layer_varlen_backward", "RNN_MODES"]
from collections import namedtuple
from typing import Optional, Union

import numpy as np

from .. import _C
from .._checks import context, fits_int64, float_array, optional_float_array, shape_matches

# mode name -> (kernel id, gate blocks G)
RNN_MODES = {
    "RNN_TANH": (_C.RNN_TANH, 1),
    "RNN_RELU": (_C.RNN_RELU, 1),
    "LSTM": (_C.LSTM, 4),
    "GRU": (_C.GRU, 3),
}

RnnLayerContext = namedtuple("RnnLayerContext", "mode x h0 c0 y gates cell cell_tanh w_ih w_hh")
RnnLayerContext.__doc__ = """What rnn_layer_forward keeps for rnn_layer_backward.

Attributes:
    mode: a key of RNN_MODES.
    x: the (T, N, I) input, C-contiguous.
    h0: the (N, H) initial hidden state, or None (zeros).
    c0: LSTM's (N, H) initial cell state, or None (zeros; always None for the other modes).
    y: the (T, N, H) outputs.
    gates: (T, N, G*H): LSTM's i, f, g, o or GRU's r, z, n after their nonlinearities
        (RNN: unused scratch).
    cell: (T, N, H): LSTM's c_t, or GRU's W_hn h_{t-1} + b_hn; None for RNN.
    cell_tanh: (T, N, H): LSTM's tanh(c_t); None for the other modes.
    w_ih: the (G*H, I) weight the forward read.
    w_hh: the (G*H, H) weight the forward read.
"""

# The final state (h_n, c_n), and the gradient that backward takes for the outputs:
# (grad_y, (grad_h_n, grad_c_n)), any part None, or a lone grad_h_n for the state.
_State = tuple[np.ndarray, Optional[np.ndarray]]
_GradOutput = tuple[Optional[np.ndarray],
                    Union[tuple[Optional[np.ndarray], Optional[np.ndarray]], np.ndarray, None]]


def _mode(mode: str) -> tuple[int, int]:
    if mode not in RNN_MODES:
        raise ValueError(f"mode: expected one of {sorted(RNN_MODES)}, got {mode!r}")
    return RNN_MODES[mode]


def rnn_layer(mode: str, x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
              b_hh: np.ndarray | None = None, h0: np.ndarray | None = None,
              c0: np.ndarray | None = None) -> tuple[np.ndarray, _State]:
    """One recurrent layer over a whole sequence (the equations in the module docstring).

    Args:
        mode: "RNN_TANH", "RNN_RELU", "LSTM" or "GRU" (G = 1, 1, 4, 3 gate blocks).
        x: (T, N, I) float32 or float64 array, T and N >= 1.
        w_ih: (G*H, I), x's dtype.
        w_hh: (G*H, H), x's dtype.
        b_ih: (G*H,) or None (default: no bias).
        b_hh: (G*H,) or None (default: no bias).
        h0: (N, H) initial hidden state, or None (default: zeros).
        c0: (N, H) LSTM's initial cell state, or None (default: zeros; ignored for the
            other modes).

    Returns:
        (y, (h_n, c_n)) with y (T, N, H) the hidden state after every step, h_n = y[-1]
        and c_n (LSTM's final cell, else None), both (N, H).
    """
    y, state, _ = rnn_layer_forward(mode, x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    return y, state


def rnn_layer_forward(mode: str, x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None = None,
                      b_hh: np.ndarray | None = None, h0: np.ndarray | None = None,
                      c0: np.ndarray | None = None) -> tuple[np.ndarray, _State, RnnLayerContext]:
    """rnn_layer, and what rnn_layer_backward needs.

    Args:
        mode: "RNN_TANH", "RNN_RELU", "LSTM" or "GRU".
        x: (T, N, I) float32 or float64 array.
        w_ih: (G*H, I), x's dtype.
        w_hh: (G*H, H), x's dtype.
        b_ih: (G*H,) or None (default: no bias).
        b_hh: (G*H,) or None (default: no bias).
        h0: (N, H) initial hidden state, or None (default: zeros).
        c0: (N, H) LSTM's initial cell state, or None (default: zeros; ignored for the
            other modes).

    Returns:
        (y, (h_n, c_n), ctx), the outputs as rnn_layer returns them, then ctx (an
        RnnLayerContext), last as in every forward.
    """
    kernel_mode, gates = _mode(mode)
    x = float_array(x, "input", ndim=3, layout="(T, N, input_size)", contiguous=False)
    w_hh = float_array(w_hh, "w_hh", dtype=x.dtype, ndim=2, layout="(G*H, H)")
    hidden = w_hh.shape[1]
    if w_hh.shape[0] != gates * hidden:
        raise ValueError(f"w_hh: expected shape ({gates}*H, H) for {mode}, got {w_hh.shape}")
    steps, batch, input_size = x.shape
    if steps < 1 or batch < 1:
        raise ValueError(f"input: expected at least one step and one sequence, got shape {x.shape}")
    fits_int64((steps, batch, gates * hidden), x.itemsize, "gates", "input")  # the largest buffer
    x = np.ascontiguousarray(x)
    w_ih = float_array(w_ih, "w_ih", dtype=x.dtype)
    shape_matches(w_ih, (gates * hidden, input_size), "w_ih")
    b_ih = optional_float_array(b_ih, "b_ih", x.dtype, (gates * hidden,))
    b_hh = optional_float_array(b_hh, "b_hh", x.dtype, (gates * hidden,))
    h0 = optional_float_array(h0, "h0", x.dtype, (batch, hidden))
    c0 = optional_float_array(c0, "c0", x.dtype, (batch, hidden)) if mode == "LSTM" else None

    y = np.empty((steps, batch, hidden), dtype=x.dtype)
    gate_buf = np.empty((steps, batch, gates * hidden), dtype=x.dtype)
    cell = np.empty((steps, batch, hidden), dtype=x.dtype) if mode in ("LSTM", "GRU") else None
    cell_tanh = np.empty((steps, batch, hidden), dtype=x.dtype) if mode == "LSTM" else None
    _C.rnn_forward(kernel_mode, y, gate_buf, cell, cell_tanh, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    c_n = cell[-1] if mode == "LSTM" and cell is not None else None  # (cell is allocated for LSTM)
    ctx = RnnLayerContext(mode, x, h0, c0, y, gate_buf, cell, cell_tanh, w_ih, w_hh)
    return y, (y[-1], c_n), ctx


def _grad_parts(grad_output: _GradOutput) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(grad_y, grad_h_n, grad_c_n) from grad_output = (grad_y, (grad_h_n, grad_c_n)) (the
    outputs' structure; the state part may be None, or a lone grad_h_n for RNN/GRU)."""
    if not isinstance(grad_output, (tuple, list)) or len(grad_output) != 2:
        raise TypeError(f"grad_output: expected (grad_y, (grad_h_n, grad_c_n)), the structure of the outputs, "
                        f"got {type(grad_output).__name__}")
    grad_y, grad_state = grad_output
    if grad_state is None:
        return grad_y, None, None
    if isinstance(grad_state, (tuple, list)):
        if len(grad_state) != 2:
            raise TypeError(f"grad_output: expected the state's gradient as (grad_h_n, grad_c_n), got "
                            f"{len(grad_state)} items")
        return grad_y, grad_state[0], grad_state[1]
    return grad_y, grad_state, None


def rnn_layer_backward(grad_output: _GradOutput, ctx: RnnLayerContext, grad_w_ih: np.ndarray | None = None,
                       grad_w_hh: np.ndarray | None = None, grad_b_ih: np.ndarray | None = None,
                       grad_b_hh: np.ndarray | None = None, need_input_grad: bool = True
                       ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backpropagation through time for one rnn_layer_forward call.

    h_n is y[-1], so a loss on the last output alone (many-to-one) is passed as grad_h_n
    with grad_y=None: then no (T, N, H) gradient is built or read.

    Args:
        grad_output: (grad_y, (grad_h_n, grad_c_n)), the structure of the outputs. grad_y
            (T, N, H): the gradient of every output, or None when only the final state has
            one; grad_h_n, grad_c_n (N, H): gradients of the final state, None for zero (the
            state part may also be None, or a lone grad_h_n).
        ctx: rnn_layer_forward's RnnLayerContext.
        grad_w_ih: (G*H, I) C-contiguous writeable array of x's dtype that dL/dw_ih is
            ADDED into, or None (default: the weight is frozen).
        grad_w_hh: (G*H, H) likewise for dL/dw_hh, or None.
        grad_b_ih: (G*H,) likewise for dL/db_ih, or None.
        grad_b_hh: (G*H,) likewise for dL/db_hh, or None.
        need_input_grad: False skips dL/dx (default True).

    Returns:
        (grad_x, grad_h0, grad_c0), new arrays of x's dtype, with grad_x = dL/dx (T, N, I)
        or None when need_input_grad is False, grad_h0 = dL/dh0 (N, H) (also when h0 was
        None), and grad_c0 = dL/dc0 (N, H) for LSTM, else None.
    """
    grad_y, grad_h_n, grad_c_n = _grad_parts(grad_output)
    cache = context(ctx, RnnLayerContext, "rnn_layer")  # a hand-built stand-in: checked, never trusted
    kernel_mode, gates = _mode(cache.mode)
    x = float_array(cache.x, "ctx.x", ndim=3, layout="(T, N, input_size)")
    y = float_array(cache.y, "ctx.y", dtype=x.dtype, ndim=3, layout="(T, N, H)")
    steps, batch, input_size = x.shape
    hidden = y.shape[2]
    w_hh = float_array(cache.w_hh, "ctx.w_hh", dtype=x.dtype)
    shape_matches(w_hh, (gates * hidden, hidden), "ctx.w_hh")
    w_ih = float_array(cache.w_ih, "ctx.w_ih", dtype=x.dtype)
    shape_matches(w_ih, (gates * hidden, input_size), "ctx.w_ih")
    grad_y = optional_float_array(grad_y, "grad_y", x.dtype, (steps, batch, hidden))
    grad_h_n = optional_float_array(grad_h_n, "grad_h_n", x.dtype, (batch, hidden))
    grad_c_n = optional_float_array(grad_c_n, "grad_c_n", x.dtype, (batch, hidden)) if cache.mode == "LSTM" else None
    for grad, name in ((grad_w_ih, "grad_w_ih"), (grad_w_hh, "grad_w_hh"), (grad_b_ih, "grad_b_ih"),
                       (grad_b_hh, "grad_b_hh")):
        if grad is not None and (not isinstance(grad, np.ndarray) or grad.dtype != x.dtype
                                 or not grad.flags.c_contiguous or not grad.flags.writeable):
            raise TypeError(f"{name}: expected a writeable C-contiguous {x.dtype} array (it is updated in place)")

    # The kernel always computes the weight gradients (they come out of the same GEMMs as
    # the input's); for a frozen weight (None, requires_grad=False) they go to a scratch
    # array that is dropped, so nothing is accumulated.
    grad_w_ih = np.zeros_like(w_ih) if grad_w_ih is None else grad_w_ih
    grad_w_hh = np.zeros_like(w_hh) if grad_w_hh is None else grad_w_hh
    grad_x = np.empty_like(x) if need_input_grad else None
    grad_h0 = np.empty((batch, hidden), dtype=x.dtype)
    grad_c0 = np.empty((batch, hidden), dtype=x.dtype) if cache.mode == "LSTM" else None
    _C.rnn_backward(kernel_mode, grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
                    grad_y, grad_h_n, grad_c_n, y, cache.gates, cache.cell, cache.cell_tanh, x, cache.h0,
                    cache.c0, w_ih, w_hh)
    return grad_x, grad_h0, grad_c0


# -- variable lengths: the kernels on shrinking active batches ------------------------

RnnVarlenContext = namedtuple("RnnVarlenContext", "steps batch input_size groups")
RnnVarlenContext.__doc__ = """What rnn_layer_varlen_forward keeps for rnn_layer_varlen_backward.

Attributes:
    steps: T, the padded length.
    batch: N.
    input_size: I.
    groups: one (t0, t1, active, RnnLayerContext) per step group: steps [t0, t1) ran on
        the first `active` sequences (the batch is sorted by non-increasing length).
"""


def step_groups(lengths: np.ndarray | None, steps: int, batch: int) -> list[tuple[int, int, int]]:
    """[(t0, t1, active)]: the step ranges over which the set of unfinished sequences is fixed.

    lengths: (N,) non-increasing ints in [1, T], or None (all T). Between two consecutive
    distinct lengths the first `active` sequences (those not yet ended) run together;
    e.g. lengths (5, 3, 3, 1) -> [(0, 1, 4), (1, 3, 3), (3, 5, 1)]: 9 sequence-steps
    computed instead of the padded 20. This is PyTorch's packed batch_sizes, grouped.
    """
    if lengths is None:
        return [(0, steps, batch)]
    groups, start = [], 0
    for end in np.unique(lengths):  # ascending distinct lengths
        groups.append((start, int(end), int(np.count_nonzero(lengths >= end))))
        start = int(end)
    return groups


def rnn_layer_varlen(mode: str, x: np.ndarray, lengths: np.ndarray | None, w_ih: np.ndarray, w_hh: np.ndarray,
                     b_ih: np.ndarray | None = None, b_hh: np.ndarray | None = None, h0: np.ndarray | None = None,
                     c0: np.ndarray | None = None) -> tuple[np.ndarray, _State]:
    """rnn_layer over a right-padded batch whose sequence n has lengths[n] real steps.

    The padded steps are never computed: each step group runs rnn_layer on the sequences
    still going, carrying their state.

    Args:
        mode: "RNN_TANH", "RNN_RELU", "LSTM" or "GRU".
        x: (T, N, I) float32 or float64 array, right-padded.
        lengths: (N,) ints, non-increasing, in [1, T] (the caller sorts the batch), or None
            for all T (then this is rnn_layer).
        w_ih: (G*H, I), x's dtype.
        w_hh: (G*H, H), x's dtype.
        b_ih: (G*H,) or None (default: no bias).
        b_hh: (G*H,) or None (default: no bias).
        h0: (N, H) initial hidden state, or None (default: zeros).
        c0: (N, H) LSTM's initial cell state, or None (default: zeros; ignored for the
            other modes).

    Returns:
        (y, (h_n, c_n)) with y (T, N, H) zero past each sequence's end; h_n, c_n (N, H)
        each sequence's state after its last real step (c_n None but for LSTM).
    """
    y, state, _ = rnn_layer_varlen_forward(mode, x, lengths, w_ih, w_hh, b_ih, b_hh, h0, c0)
    return y, state


def rnn_layer_varlen_forward(mode: str, x: np.ndarray, lengths: np.ndarray | None, w_ih: np.ndarray,
                             w_hh: np.ndarray, b_ih: np.ndarray | None = None, b_hh: np.ndarray | None = None,
                             h0: np.ndarray | None = None,
                             c0: np.ndarray | None = None) -> tuple[np.ndarray, _State, RnnVarlenContext]:
    """rnn_layer_varlen, and what rnn_layer_varlen_backward needs.

    Args:
        mode: "RNN_TANH", "RNN_RELU", "LSTM" or "GRU".
        x: (T, N, I) float32 or float64 array, right-padded.
        lengths: (N,) non-increasing ints in [1, T], or None, as rnn_layer_varlen.
        w_ih: (G*H, I), x's dtype.
        w_hh: (G*H, H), x's dtype.
        b_ih: (G*H,) or None (default: no bias).
        b_hh: (G*H,) or None (default: no bias).
        h0: (N, H) initial hidden state, or None (default: zeros).
        c0: (N, H) LSTM's initial cell state, or None (default: zeros; ignored for the
            other modes).

    Returns:
        (y, (h_n, c_n), ctx), the outputs as rnn_layer_varlen returns them, then ctx (an
        RnnVarlenContext).
    """
    steps, batch, input_size = np.shape(x)
    groups = step_groups(lengths, steps, batch)
    if groups == [(0, steps, batch)]:  # every sequence is T long: one call, no copies
        y, state, cache = rnn_layer_forward(mode, x, w_ih, w_hh, b_ih, b_hh, h0, c0)
        return y, state, RnnVarlenContext(steps, batch, input_size, [(0, steps, batch, cache)])
    h, c, saved = h0, c0, []
    for k, (t0, t1, active) in enumerate(groups):
        y_part, (h, c), cache = rnn_layer_forward(mode, x[t0:t1, :active], w_ih, w_hh, b_ih, b_hh,
                                          None if h is None else h[:active], None if c is None else c[:active])
        if k == 0:  # the first group runs every sequence; its output gives H and the dtype
            y = np.zeros((steps, batch, y_part.shape[2]), dtype=y_part.dtype)
            h_n = np.empty((batch, y_part.shape[2]), dtype=y_part.dtype)
            c_n = np.empty_like(h_n) if c is not None else None
        y[t0:t1, :active] = y_part
        still_going = groups[k + 1][2] if k + 1 < len(groups) else 0
        h_n[still_going:active] = h[still_going:]  # the sequences that end at step t1
        if c_n is not None and c is not None:  # (LSTM: both are)
            c_n[still_going:active] = c[still_going:]
        saved.append((t0, t1, active, cache))
    return y, (h_n, c_n), RnnVarlenContext(steps, batch, input_size, saved)


def rnn_layer_varlen_backward(grad_output: _GradOutput, ctx: RnnVarlenContext, grad_w_ih: np.ndarray | None = None,
                              grad_w_hh: np.ndarray | None = None, grad_b_ih: np.ndarray | None = None,
                              grad_b_hh: np.ndarray | None = None, need_input_grad: bool = True
                              ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Backpropagation through time for one rnn_layer_varlen_forward call.

    The step groups run backwards; the gradient of the state a group hands on is the next
    group's initial-state gradient for the sequences still going and grad_h_n (grad_c_n)
    for those that end there. Padded steps get zero gradient.

    Args:
        grad_output: (grad_y, (grad_h_n, grad_c_n)) as rnn_layer_backward's, grad_y
            (T, N, H) (ignored past each sequence's end), grad_h_n and grad_c_n (N, H)
            the gradients of each sequence's final state.
        ctx: rnn_layer_varlen_forward's RnnVarlenContext.
        grad_w_ih: (G*H, I) C-contiguous writeable array of x's dtype that dL/dw_ih is
            ADDED into, or None (default: the weight is frozen).
        grad_w_hh: (G*H, H) likewise for dL/dw_hh, or None.
        grad_b_ih: (G*H,) likewise for dL/db_ih, or None.
        grad_b_hh: (G*H,) likewise for dL/db_hh, or None.
        need_input_grad: False skips dL/dx (default True).

    Returns:
        (grad_x, grad_h0, grad_c0) as rnn_layer_backward returns them, grad_x zero on the
        padded steps.
    """
    cache = context(ctx, RnnVarlenContext, "rnn_layer_varlen")
    groups = cache.groups
    if [g[:3] for g in groups] == [(0, cache.steps, cache.batch)]:
        return rnn_layer_backward(grad_output, groups[0][3], grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh,
                                  need_input_grad)
    grad_y, grad_h_n, grad_c_n = _grad_parts(grad_output)
    w_hh = float_array(groups[0][3].w_hh, "ctx.w_hh")
    grad_y = optional_float_array(grad_y, "grad_y", w_hh.dtype, (cache.steps, cache.batch, w_hh.shape[1]))
    grad_x = np.zeros((cache.steps, cache.batch, cache.input_size), dtype=w_hh.dtype) if need_input_grad else None
    carry_h = carry_c = None  # gradient of the state at the end of the group, for the sequences going on

    def handed_on(carry: np.ndarray | None, grad_end: np.ndarray | None, active: int,
                  still_going: int) -> np.ndarray | None:
        if carry is None and grad_end is None:
            return None
        grad = np.zeros((active, w_hh.shape[1]), dtype=w_hh.dtype)
        if carry is not None:
            grad[:still_going] = carry
        if grad_end is not None:
            grad[still_going:] = grad_end[still_going:active]
        return grad

    is_lstm = groups[0][3].mode == "LSTM"
    for k in reversed(range(len(groups))):
        t0, t1, active, part = groups[k]
        still_going = groups[k + 1][2] if k + 1 < len(groups) else 0
        grad_part = (None if grad_y is None else grad_y[t0:t1, :active],
                     (handed_on(carry_h, grad_h_n, active, still_going),
                      handed_on(carry_c, grad_c_n, active, still_going) if is_lstm else None))
        grad_x_part, carry_h, carry_c = rnn_layer_backward(grad_part, part, grad_w_ih, grad_w_hh, grad_b_ih,
                                                           grad_b_hh, need_input_grad)
        if grad_x is not None:
            grad_x[t0:t1, :active] = grad_x_part
    assert carry_h is not None  # the loop ran (two groups or more here): carry_h is dL/dh0
    return grad_x, carry_h, carry_c
