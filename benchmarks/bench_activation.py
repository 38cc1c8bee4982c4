"""Activations: relu, leaky_relu, sigmoid, tanh (forward and backward), PReLU (fwd+bwd), softmax,
log_softmax (forward), and cross entropy.

float32 arrays: (256, 1000), a classifier's logits, with softmax over the last axis; and
(64, 32, 28, 28), a conv layer's activations, with softmax over the channel axis (dim=1,
the strided path). pycore.functional against torch's functions on the same data and
numpy written the obvious way (numpy has no fused softmax). The float32 exp, sigmoid
and tanh are csrc/fastmath.h's, vectorised (AVX2+FMA where the CPU has it).

"cross_entropy fwd+bwd" is a classifier's loss: forward (the loss and log-sum-exp) and
the gradient of the logits, (N, C) logits with class indices. items = elements.
"""
import numpy as np

from harness import Case

try:
    import torch
except ImportError:
    torch = None

import pycore.functional as F


def _numpy_softmax(x, dim, log_output):
    shifted = x - x.max(axis=dim, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=dim, keepdims=True)
    return shifted - np.log(s) if log_output else e / s


def _activation_cases(shape, dim, threads):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 3
    tx = torch.from_numpy(x) if torch is not None else None
    label = "x".join(map(str, shape))
    g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    tg = torch.from_numpy(g) if torch is not None else None
    y_sigmoid, y_tanh = F.sigmoid(x), F.tanh(x)
    ty_sigmoid, ty_tanh = (torch.from_numpy(y_sigmoid), torch.from_numpy(y_tanh)) if torch is not None else (None, None)
    aten = torch.ops.aten if torch is not None else None
    leaky_ctx = F.leaky_relu_forward(x, 0.01)[1]  # backward reads the input x
    ops = [
        ("relu", lambda: F.relu(x), lambda: np.maximum(x, 0), lambda: torch.relu(tx)),
        # relu's backward from its output, as pycore's; torch's threshold_backward is the same mask
        ("relu bwd", lambda: F.relu_backward(g, x), lambda: np.where(x > 0, g, 0),
         lambda: aten.threshold_backward(tg, tx, 0)),
        ("leaky_relu", lambda: F.leaky_relu(x, 0.01), lambda: np.where(x > 0, x, x * np.float32(0.01)),
         lambda: torch.nn.functional.leaky_relu(tx, 0.01)),
        ("leaky_relu bwd", lambda: F.leaky_relu_backward(g, leaky_ctx),
         lambda: np.where(x > 0, g, g * np.float32(0.01)), lambda: aten.leaky_relu_backward(tg, tx, 0.01, False)),
        ("sigmoid", lambda: F.sigmoid(x), lambda: 1 / (1 + np.exp(-x)), lambda: torch.sigmoid(tx)),
        ("sigmoid bwd", lambda: F.sigmoid_backward(g, y_sigmoid), lambda: g * y_sigmoid * (1 - y_sigmoid),
         lambda: aten.sigmoid_backward(tg, ty_sigmoid)),
        ("tanh", lambda: F.tanh(x), lambda: np.tanh(x), lambda: torch.tanh(tx)),
        ("tanh bwd", lambda: F.tanh_backward(g, y_tanh), lambda: g * (1 - y_tanh * y_tanh),
         lambda: aten.tanh_backward(tg, ty_tanh)),
        (f"softmax dim={dim}", lambda: F.softmax(x, dim=dim), lambda: _numpy_softmax(x, dim, False),
         lambda: torch.softmax(tx, dim=dim)),
        (f"log_softmax dim={dim}", lambda: F.log_softmax(x, dim=dim), lambda: _numpy_softmax(x, dim, True),
         lambda: torch.log_softmax(tx, dim=dim)),
    ]
    return [Case(op=name, shape=label, threads=threads, pycore=ours, numpy=numpy_fn,
                 torch=torch_fn if torch is not None else None, items=float(x.size), items_name="elem/s")
            for name, ours, numpy_fn, torch_fn in ops]


def _cross_entropy_case(rows, classes, threads):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((rows, classes)).astype(np.float32) * 3
    target = rng.integers(0, classes, rows)

    def ours():
        _, ctx = F.cross_entropy_forward(logits, target)
        return F.cross_entropy_backward(1.0, ctx)

    torch_fn = None
    if torch is not None:
        tt = torch.from_numpy(target)

        def torch_fn():
            tl = torch.from_numpy(logits).requires_grad_(True)
            torch.nn.functional.cross_entropy(tl, tt).backward()
            return tl.grad

    return Case(op="cross_entropy fwd+bwd", shape=f"{rows}x{classes}", threads=threads, pycore=ours,
                torch=torch_fn, items=float(rows * classes), items_name="elem/s")


def _prelu_case(shape, threads):
    """PReLU forward + backward (input and weight gradients), one slope per channel (axis 1):
    (N, C) has the channels on the contiguous axis, (N, C, H, W) one slope per H*W row."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    weight = np.full(shape[1], 0.25, np.float32)
    grad_weight = np.zeros_like(weight)

    def ours():
        _, ctx = F.prelu_forward(x, weight)
        return F.prelu_backward(g, ctx, grad_weight)

    torch_fn = None
    if torch is not None:
        tw, tg = torch.from_numpy(weight).requires_grad_(True), torch.from_numpy(g)

        def torch_fn():
            tx = torch.from_numpy(x).requires_grad_(True)
            torch.nn.functional.prelu(tx, tw).backward(tg)
            return tx.grad

    return Case(op="prelu fwd+bwd", shape="x".join(map(str, shape)), threads=threads, pycore=ours, torch=torch_fn,
                items=float(x.size), items_name="elem/s")


def cases(quick):
    shapes = [((64, 100), -1), ((4, 8, 14, 14), 1)] if quick else [((256, 1000), -1), ((64, 32, 28, 28), 1)]
    ce = (64, 100) if quick else (256, 1000)
    return [case for threads in (1, 2)
            for case in [c for shape, dim in shapes for c in _activation_cases(shape, dim, threads)]
            + [_cross_entropy_case(*ce, threads)] + [_prelu_case(shape, threads) for shape, _ in shapes]]
