"""Recurrent layers: pycore.nn.LSTM / RNN / GRU against torch.nn.LSTM / RNN / GRU.

Shapes are (batch N, sequence T, input I, hidden H), time-major input (T, N, I), one
layer, float32; both libraries hold the same weights. "fwd" is inference (pycore.no_grad
/ torch.no_grad); "fwd+bwd" is a training step's forward and backward through time with
a gradient for every output, the gradient of the input included. numpy has no peer.

flops counts the matrix products only: forward 2*T*N*G*H*(I + H) (input and recurrent
projections, G gate blocks), backward twice that (weight gradients and the gradients
flowing to the input and to the previous step). items = N*T tokens.
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
    return [
        Case(op=f"{label} fwd", pycore=ours_forward, torch=torch_forward, flops=forward_flops, **common),
        Case(op=f"{label} fwd+bwd", pycore=ours_train, torch=torch_train, flops=3 * forward_flops, **common),
    ]


def cases(quick):
    shapes = [("LSTM", 32, 64, 128, 256), ("LSTM", 1, 256, 65, 256)]
    if not quick:
        shapes += [("LSTM", 64, 128, 256, 512), ("RNN", 32, 64, 128, 256), ("GRU", 32, 64, 128, 256)]
    else:
        shapes = [("LSTM", 8, 16, 32, 64), ("GRU", 8, 16, 32, 64), ("LSTM", 1, 32, 65, 64)]
    return [case for threads in (1, 2) for shape in shapes for case in _cases_for(*shape, threads)]
