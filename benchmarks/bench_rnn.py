"""Recurrent layers: pycore.nn.LSTM / RNN / GRU against torch.nn.LSTM / RNN / GRU.

Shapes are (batch N, sequence T, input I, hidden H), time-major input (T, N, I), one
layer, float32; both libraries hold the same weights. "fwd" is inference (pycore.no_grad
/ torch.no_grad); "fwd+bwd" is a training step's forward and backward through time with
a gradient for every output, the gradient of the input included. numpy has no peer.

flops counts the matrix products only: forward 2*T*N*G*H*(I + H) (input and recurrent
projections, G gate blocks), backward twice that (weight gradients and the gradients
flowing to the input and to the previous step). items = N*T tokens.

"LSTM GEMMs only" (batch > 1) times just the matrix products of a pycore LSTM fwd+bwd
(pycore's GEMM on the same shapes, W_hh packed once as the layer does, nothing else):
torch / that time is the highest fwd+bwd ratio an LSTM built on this GEMM could reach on
this machine, with every elementwise pass free.
"""
import numpy as np

from harness import Case

try:
    import torch
except ImportError:
    torch = None

import pycore
import pycore.nn as nn

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _models(kind, input_size, hidden):
    ours = getattr(nn, kind)(input_size, hidden)
    ref = None
    if torch is not None:
        ref = getattr(torch.nn, kind)(input_size, hidden)
        ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    return ours, ref


def _cases_for(kind, batch, steps, input_size, hidden, threads):
    rng = np.random.default_rng(0)
    ours, ref = _models(kind, input_size, hidden)
    x = rng.standard_normal((steps, batch, input_size)).astype(np.float32)
    grad_y = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    label = "RNN tanh" if kind == "RNN" else kind
    shape = f"N={batch} T={steps} I={input_size} H={hidden}"
    forward_flops = 2.0 * steps * batch * GATES[kind] * hidden * (input_size + hidden)

    def ours_forward():
        with pycore.no_grad():
            return ours(x)

    def ours_train():
        y, _ = ours(x)
        return ours.backward(grad_y)

    torch_forward = torch_train = None
    if ref is not None:
        tx = torch.from_numpy(x)
        tx_grad = tx.clone().requires_grad_(True)
        tgy = torch.from_numpy(grad_y)

        def torch_forward():
            with torch.no_grad():
                return ref(tx)

        def torch_train():
            y, _ = ref(tx_grad)
            y.backward(tgy)
            return tx_grad.grad

    common = dict(shape=shape, threads=threads, items=float(batch * steps), items_name="tokens/s")
    found = [
        Case(op=f"{label} fwd", pycore=ours_forward, torch=torch_forward, flops=forward_flops, **common),
        Case(op=f"{label} fwd+bwd", pycore=ours_train, torch=torch_train, flops=3 * forward_flops, **common),
    ]
    if kind == "LSTM" and batch > 1:  # batch 1 runs GEMVs in a C loop, not these calls
        found.append(Case(op="LSTM GEMMs only", pycore=_lstm_gemms(batch, steps, input_size, hidden),
                          torch=torch_train, flops=3 * forward_flops, **common))
    return found


def _lstm_gemms(batch, steps, input_size, hidden):
    """The matrix products of one LSTM fwd+bwd (csrc/rnn.cpp), as pycore's GEMM runs them.
    Every recurrent step multiplies the same h (or dgates) row block: the operand stays in
    cache, which can only make this floor lower."""
    _C = pycore._C
    rng = np.random.default_rng(1)
    G, rows = 4 * hidden, steps * batch
    x = rng.standard_normal((rows, input_size), dtype=np.float32)
    y = rng.standard_normal((rows, hidden), dtype=np.float32)
    w_ih = rng.standard_normal((G, input_size), dtype=np.float32)
    w_hh = rng.standard_normal((G, hidden), dtype=np.float32)
    gates = np.empty((rows, G), dtype=np.float32)
    dgates = rng.standard_normal((rows, G), dtype=np.float32)
    gate_steps = list(gates.reshape(steps, batch, G)[1:])      # h_{t-1} @ W_hh^T, t >= 1
    dh_steps = [np.empty((batch, hidden), dtype=np.float32) for _ in range(steps - 1)]
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    dx = np.empty_like(x)
    h, dg = y[:batch], dgates[:batch]

    def run():
        _C.gemm(x, w_ih, gates, trans_b=True)                               # input projection
        _C.gemm_prepacked("b", h, w_hh, gate_steps, trans_b=True, beta=1.0)  # recurrent, forward
        _C.gemm_prepacked("b", dg, w_hh, dh_steps)                          # recurrent, backward
        _C.gemm(dgates, x, dw_ih, trans_a=True, beta=1.0)                   # dW_ih
        _C.gemm(dgates[batch:], y[:-batch], dw_hh, trans_a=True, beta=1.0)  # dW_hh
        _C.gemm(dgates, w_ih, dx)                                           # dx
    return run


def cases(quick):
    shapes = [("LSTM", 32, 64, 128, 256), ("LSTM", 1, 256, 65, 256)]
    if not quick:
        shapes += [("LSTM", 64, 128, 256, 512), ("RNN", 32, 64, 128, 256), ("GRU", 32, 64, 128, 256)]
    else:
        shapes = [("LSTM", 8, 16, 32, 64), ("GRU", 8, 16, 32, 64), ("LSTM", 1, 32, 65, 64)]
    return [case for threads in (1, 2) for shape in shapes for case in _cases_for(*shape, threads)]
