"""Batch-1 recurrent steps: the GEMV h (1, H) @ W_hh^T that a batch-1 LSTM makes every
timestep, as read bandwidth against the machine's.

A batch-1 step reads all of W_hh (4H x H floats: 1 MiB at H = 256, 4 MiB at 512, 16 MiB
at 1024) to do 2 flops per element, so it runs at the speed W_hh can be read: the
"rate" column gives bytes of W_hh read per second. Three rows per H:
  - "gemv W_hh^T copy": pycore's GEMV over the row-major transposed copy (H, 4H) that
    rnn_forward makes once per batch-1 sequence (csrc/rnn.cpp; an LSTM whose H is whole
    GEMV column blocks reads the same copy cut into contiguous column panels instead),
    against numpy's and torch's h @ W (same layout);
  - "gemv W_hh in place": over W_hh (4H, H) as stored (h @ W_hh^T, what a short
    sequence and an LSTMCell step run), against numpy's and torch's F.linear;
  - "stream read": numpy's float32 max over the same bytes (the pycore column times
    np.max, a vectorised one-pass reduction; np.sum's pairwise summation is slower than
    the memory; no peer), the reference bandwidth for data of that size: W_hh stays in
    L2/L3 across the steps up to a few MiB and comes from memory beyond.
The last row, "stream read 256 MiB", is the machine's memory read bandwidth (one
thread: np.max, which reads each byte once).
"""
import numpy as np

from harness import Case

try:
    import torch
except ImportError:
    torch = None

from pycore import _C


def _gemv_cases(hidden, threads):
    rng = np.random.default_rng(0)
    w_hh = rng.standard_normal((4 * hidden, hidden)).astype(np.float32)
    w_hh_t = np.ascontiguousarray(w_hh.T)
    h = rng.standard_normal((1, hidden)).astype(np.float32)
    out = np.empty((1, 4 * hidden), np.float32)
    common = dict(shape=f"H={hidden} ({w_hh.nbytes >> 10} KiB)", threads=threads, items=float(w_hh.nbytes),
                  items_name="B/s", flops=2.0 * w_hh.size)
    th, tw, twt = (torch.from_numpy(h), torch.from_numpy(w_hh), torch.from_numpy(w_hh_t)) if torch else (None,) * 3
    return [
        Case(op="gemv W_hh^T copy", pycore=lambda: _C.gemm(h, w_hh_t, out), numpy=lambda: h @ w_hh_t,
             torch=(lambda: th @ twt) if torch else None, **common),
        Case(op="gemv W_hh in place", pycore=lambda: _C.gemm(h, w_hh, out, trans_b=True), numpy=lambda: h @ w_hh.T,
             torch=(lambda: torch.nn.functional.linear(th, tw)) if torch else None, **common),
        Case(op="stream read", pycore=lambda: w_hh.max(), **common),
    ]


def cases(quick):
    hiddens = [64] if quick else [256, 512, 1024]
    big = np.ones((1 << 20) if quick else (64 << 20), np.float32)
    stream = [Case(op="stream read", shape=f"{big.nbytes >> 20} MiB", threads=1, pycore=lambda: big.max(),
                   items=float(big.nbytes), items_name="B/s")]
    return [case for threads in (1, 2) for hidden in hiddens for case in _gemv_cases(hidden, threads)] + stream
