"""Optimizer steps and the cross-entropy loss: pycore against torch.optim / torch.nn.functional.

Parameter sets: the tensors of a 2-layer char-LSTM (vocab 65, hidden 256; 0.87M values
in 10 tensors) and one tensor of 1M values, float32. pycore's step is one fused C++ pass
per tensor; torch runs its multi-tensor (foreach=True) implementation. numpy has no
optimizer, so its column is the same update written as numpy array expressions.
The loss case is cross entropy forward + backward on a char model's (32, 100, 65) logits.
"""
import numpy as np

from harness import Case

try:
    import torch
except ImportError:
    torch = None

import pycore.functional as F
import pycore.optim as optim
from pycore.nn import Parameter

CHAR_LSTM = [(1024, 65), (1024, 256), (1024,), (1024,), (1024, 256), (1024, 256), (1024,), (1024,), (65, 256), (65,)]
ONE_TENSOR = [(1 << 20,)]


def _parameter_set(shapes):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return values, grads


def _numpy_adam(values, grads, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam written as numpy expressions over the same tensors (a temporary per operation)."""
    params = [v.copy() for v in values]
    m = [np.zeros_like(v) for v in values]
    v2 = [np.zeros_like(v) for v in values]
    step = [0]

    def run():
        step[0] += 1
        c1, c2 = 1 - beta1 ** step[0], (1 - beta2 ** step[0]) ** 0.5
        for p, g, a, b in zip(params, grads, m, v2):
            a *= beta1
            a += (1 - beta1) * g
            b *= beta2
            b += (1 - beta2) * g * g
            p -= (lr / c1) * a / (np.sqrt(b) / c2 + eps)
    return run


def _adam_case(label, shapes, threads):
    values, grads = _parameter_set(shapes)
    params = [Parameter(v.copy()) for v in values]
    for p, g in zip(params, grads):
        p.grad[...] = g
    ours = optim.Adam(params, lr=1e-3)
    torch_fn = None
    if torch is not None:
        tparams = [torch.tensor(v, requires_grad=True) for v in values]
        for p, g in zip(tparams, grads):
            p.grad = torch.tensor(g)
        theirs = torch.optim.Adam(tparams, lr=1e-3, foreach=True)
        torch_fn = theirs.step
    n = sum(int(np.prod(s)) for s in shapes)
    return Case(op="Adam.step", shape=f"{label}: {n / 1e6:.2f}M float32 in {len(shapes)} tensors", threads=threads,
                pycore=ours.step, numpy=_numpy_adam(values, grads), torch=torch_fn, items=n,
                items_name="params/s")


def _sgd_case(label, shapes, threads):
    values, grads = _parameter_set(shapes)
    params = [Parameter(v.copy()) for v in values]
    for p, g in zip(params, grads):
        p.grad[...] = g
    ours = optim.SGD(params, lr=1e-3, momentum=0.9)
    torch_fn = None
    if torch is not None:
        tparams = [torch.tensor(v, requires_grad=True) for v in values]
        for p, g in zip(tparams, grads):
            p.grad = torch.tensor(g)
        torch_fn = torch.optim.SGD(tparams, lr=1e-3, momentum=0.9, foreach=True).step
    n = sum(int(np.prod(s)) for s in shapes)
    return Case(op="SGD(momentum).step", shape=f"{label}: {n / 1e6:.2f}M float32 in {len(shapes)} tensors",
                threads=threads, pycore=ours.step, torch=torch_fn, items=n, items_name="params/s")


def _cross_entropy_case(threads, batch=32, steps=100, vocab=65):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((batch, steps, vocab)).astype(np.float32)
    target = rng.integers(0, vocab, (batch, steps))

    def ours():
        _, ctx = F.cross_entropy_forward(logits, target)
        return F.cross_entropy_backward(1.0, ctx)

    torch_fn = None
    if torch is not None:
        tlogits = torch.tensor(logits).movedim(-1, 1).contiguous().requires_grad_()
        ttarget = torch.tensor(target)

        def torch_fn():
            tlogits.grad = None
            torch.nn.functional.cross_entropy(tlogits, ttarget).backward()

    return Case(op="cross_entropy fwd+bwd", shape=f"({batch}, {steps}, {vocab}) float32", threads=threads,
                pycore=ours, torch=torch_fn, items=batch * steps, items_name="tokens/s")


def cases(quick):
    out = []
    for threads in (1, 2):
        out.append(_adam_case("char-LSTM", CHAR_LSTM, threads))
        if not quick:
            out.append(_adam_case("one tensor", ONE_TENSOR, threads))
            out.append(_sgd_case("char-LSTM", CHAR_LSTM, threads))
        out.append(_cross_entropy_case(threads))
    return out
