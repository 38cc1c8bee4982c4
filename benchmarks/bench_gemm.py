"""GEMM: pycore.functional.matmul against numpy's `a @ b` (OpenBLAS) and torch.mm.

Shapes: square float32 products, the skinny products of recurrent layers (a batch of
hidden states times a gate weight, either side transposed), one float64 square, and
the batch-1 recurrent step h (1 x H) @ W_hh^T that an LSTM makes every timestep.
A transposed operand is stored as its transpose and passed with trans_a / trans_b;
the peers get the matching .T view, so nobody copies.
"""
import numpy as np

from harness import Case

try:
    import torch
except ImportError:
    torch = None

import pycore.functional as F


def _case(m, n, k, threads, dtype=np.float32, trans_a=False, trans_b=False, label=None):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    a_view, b_view = (a.T if trans_a else a), (b.T if trans_b else b)
    torch_fn = None
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ta, tb = (ta.t() if trans_a else ta), (tb.t() if trans_b else tb)
        torch_fn = lambda: torch.mm(ta, tb)  # noqa: E731
    shape = label or f"({m}x{k})@({k}x{n})"
    if trans_a:
        shape += " trans_a"
    if trans_b:
        shape += " trans_b"
    if dtype != np.float32:
        shape += f" {np.dtype(dtype).name}"
    return Case(
        op="matmul",
        shape=shape,
        threads=threads,
        pycore=lambda: F.matmul(a, b, trans_a=trans_a, trans_b=trans_b),
        numpy=lambda: a_view @ b_view,
        torch=torch_fn,
        flops=2.0 * m * n * k,
    )


def cases(quick):
    shapes = []  # (m, n, k, options)
    squares = [512] if quick else [512, 1024, 2048]
    shapes += [(n, n, n, {}) for n in squares]
    shapes.append((32, 1024, 256, {}))
    if not quick:
        shapes += [
            (64, 2048, 512, {}),
            (32, 1024, 256, {"trans_a": True}),
            (32, 1024, 256, {"trans_b": True}),
            (1024, 1024, 1024, {"dtype": np.float64}),
            (1, 1024, 256, {"trans_b": True}),
            (1, 2048, 512, {"trans_b": True}),
            # few columns: a 10-class head at batch 256, the char-LSTM's 65-character head
            (256, 10, 256, {"trans_b": True}),
            (3200, 65, 256, {"trans_b": True}),
        ]
    return [_case(m, n, k, threads, **opts) for threads in (1, 2) for m, n, k, opts in shapes]
