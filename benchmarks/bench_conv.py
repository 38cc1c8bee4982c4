"""conv2d: pycore against torch.nn.functional.conv2d (oneDNN) on issue 3's shapes.

Forward alone, and forward + backward, at 1 and 2 threads, float32. In forward+backward
both sides compute the gradients of weight and bias and, except for LeNet conv1 (a first
layer, whose input is the data), of the input; pycore is then told to skip it exactly when
PyTorch's input does not require grad.

    python benchmarks/run.py --only conv          # the timing table
    python benchmarks/bench_conv.py --memory      # peak memory of each shape, fresh processes
"""
import os
import subprocess
import sys

import numpy as np

if __name__ == "__main__":  # run directly: harness and pycore from the source tree
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [_here, os.path.dirname(_here)]

from harness import Case  # noqa: E402

import pycore.functional as F  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

# (name, N, C, H, W, filters, k, pad, stride, forward only)
SHAPES = [
    ("LeNet conv1", 64, 1, 28, 28, 6, 5, 0, 1, False),
    ("LeNet conv2", 64, 6, 14, 14, 16, 5, 0, 1, False),
    ("3x3", 64, 32, 28, 28, 64, 3, 1, 1, False),
    ("3x3", 32, 64, 32, 32, 128, 3, 1, 1, False),
    ("3x3 stride 2", 32, 64, 32, 32, 128, 3, 1, 2, False),
    ("inference", 1, 3, 224, 224, 64, 3, 1, 1, True),
]
THREADS = (1, 2)


def output_size(n, k, pad, stride):
    return (n + 2 * pad - k) // stride + 1


def describe(shape):
    name, n, c, h, w, oc, k, pad, stride, _ = shape
    return f"{name} ({n},{c},{h},{w}) -> {oc} k{k} p{pad} s{stride}"


def column_buffer_bytes(shape, itemsize=4):
    """pycore's scratch per thread: one image's column matrix (C*k*k, H_out*W_out)."""
    _, _, c, h, w, _, k, pad, stride, _ = shape
    return c * k * k * output_size(h, k, pad, stride) * output_size(w, k, pad, stride) * itemsize


def _arrays(shape, quick):
    name, n, c, h, w, oc, k, pad, stride, _ = shape
    if quick:
        n = min(n, 4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = (rng.standard_normal((oc, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32)
    grad_y = rng.standard_normal((n, oc, output_size(h, k, pad, stride), output_size(w, k, pad, stride)))
    return x, weight, bias, grad_y.astype(np.float32)


def _pycore_fns(shape, x, weight, bias, grad_y, first_layer):
    pad, stride = shape[7], shape[8]
    grad_w, grad_b = np.zeros_like(weight), np.zeros_like(bias)

    def forward():
        return F.conv2d(x, weight, bias, stride=stride, padding=pad)

    def forward_backward():
        _, ctx = F.conv2d_forward(x, weight, bias, stride=stride, padding=pad)
        return F.conv2d_backward(grad_y, ctx, grad_w, grad_b, need_input_grad=not first_layer)

    return forward, forward_backward


def _torch_fns(shape, x, weight, bias, grad_y, first_layer):
    if torch is None:
        return None, None
    pad, stride = shape[7], shape[8]
    xt = torch.from_numpy(x).requires_grad_(not first_layer)
    wt, bt = torch.from_numpy(weight).requires_grad_(), torch.from_numpy(bias).requires_grad_()
    gyt = torch.from_numpy(grad_y)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad)

    def forward_backward():
        torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad).backward(gyt)

    return forward, forward_backward


def cases(quick=False):
    out = []
    for threads in THREADS:
        for shape in SHAPES:
            name, n, c, h, w, oc, k, pad, stride, forward_only = shape
            first_layer = c == 1  # LeNet conv1 reads the data: no input gradient on either side
            x, weight, bias, grad_y = _arrays(shape, quick)
            fwd_flops = 2.0 * grad_y.size * c * k * k
            pc_fwd, pc_fb = _pycore_fns(shape, x, weight, bias, grad_y, first_layer)
            th_fwd, th_fb = _torch_fns(shape, x, weight, bias, grad_y, first_layer)
            memory = f"column buffer {column_buffer_bytes(shape) / 2 ** 20:.2f} MiB per thread"
            label = describe(shape) + (" (quick: N<=4)" if quick and n > 4 else "")
            out.append(Case("conv2d fwd", label, threads, pc_fwd, None, th_fwd, flops=fwd_flops,
                            items=x.shape[0], items_name="images/s", memory=memory))
            if not forward_only:
                passes = 2 if first_layer else 3  # forward, weight gradient, input gradient
                out.append(Case("conv2d fwd+bwd" + (" (no input grad)" if first_layer else ""), label, threads,
                                pc_fb, None, th_fb, flops=passes * fwd_flops, items=x.shape[0],
                                items_name="images/s", memory=memory))
    return out


# ----------------------------------------------------------------------------- peak memory

_MEASURE = r"""
import resource, sys
import numpy as np
import {lib}


def peak_kib():
    # VmHWM: this process's peak resident set since exec. (getrusage's ru_maxrss would do
    # elsewhere, but on Linux it carries over the parent's peak across fork + exec.)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


n, c, h, w, oc, k, pad, stride, first = {args}
rng = np.random.default_rng(0)
x = rng.standard_normal((n, c, h, w), dtype=np.float32)  # no float64 temporary: it would set the
weight = rng.standard_normal((oc, c, k, k), dtype=np.float32)  # high-water mark before `base`
bias = np.zeros(oc, np.float32)
oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
grad_y = np.ones((n, oc, oh, ow), np.float32)
if "{lib}" == "torch":
    import torch
    torch.set_num_threads({threads})
    xt = torch.from_numpy(x).requires_grad_(not first and not {fwd_only})
    wt = torch.from_numpy(weight).requires_grad_(not {fwd_only})
    bt = torch.from_numpy(bias).requires_grad_(not {fwd_only})
    torch.nn.functional.conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 1, 1))  # load oneDNN first
    base = peak_kib()
    y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad)
    if not {fwd_only}:
        y.backward(torch.from_numpy(grad_y))
else:
    import pycore.functional as F
    pycore.set_num_threads({threads})
    gw, gb = np.zeros_like(weight), np.zeros_like(bias)
    base = peak_kib()
    y, ctx = F.conv2d_forward(x, weight, bias, stride=stride, padding=pad)
    if not {fwd_only}:
        gx = F.conv2d_backward(grad_y, ctx, gw, gb, need_input_grad=not first)
print(peak_kib() - base)
"""


def peak_memory(shape, lib="pycore", threads=1):
    """Growth of the peak resident set (MiB) over one forward (+ backward) of `shape`, measured
    in a fresh process after the inputs exist: outputs, gradients and every scratch buffer,
    C++ allocations included (which tracemalloc would miss)."""
    name, n, c, h, w, oc, k, pad, stride, fwd_only = shape
    code = _MEASURE.format(lib=lib, threads=threads, fwd_only=fwd_only,
                           args=(n, c, h, w, oc, k, pad, stride, c == 1))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1]) / 1024


def memory_table(threads=2):
    peers = ["pycore"] + (["torch"] if torch is not None else [])
    print(f"Peak memory growth over one call, MiB ({threads} threads; inputs excluded)\n")
    print("| shape | pass | outputs + grads | " + " | ".join(peers) + " |")
    print("|---|---|---|" + "---|" * len(peers))
    for shape in SHAPES:
        name, n, c, h, w, oc, k, pad, stride, fwd_only = shape
        oh, ow = output_size(h, k, pad, stride), output_size(w, k, pad, stride)
        arrays = n * oc * oh * ow + (0 if fwd_only or c == 1 else n * c * h * w)
        row = [f"{peak_memory(shape, lib, threads):.1f}" for lib in peers]
        print(f"| {describe(shape)} | {'fwd' if fwd_only else 'fwd+bwd'} | {arrays * 4 / 2 ** 20:.1f} | "
              + " | ".join(row) + " |")


if __name__ == "__main__":
    if "--memory" in sys.argv:
        memory_table()
    else:
        print(__doc__)
