"""Reliability, round two (issue 16): empty axes, extreme sizes, allocation failure inside
threads, hand-built geometry, set-to-none gradients, tied weights, aliasing, in-place
outputs, integers out of C's range. Crash-prone cases run in a subprocess."""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pycore
import pycore.functional as F
from pycore import _C, _pool2d, nn, optim
from pycore.datasets import CharVocab

from conftest import child_process_env, numeric_grad


def run_child(code, tmp_path, timeout=120):
    """Run `code` in a fresh Python; returns (returncode, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=child_process_env(), cwd=tmp_path, timeout=timeout)
    return result.returncode, result.stdout, result.stderr


# -- softmax over an axis followed by an empty one ------------------------------------------

def test_softmax_with_an_empty_later_axis_returns_empty_like_torch(tmp_path):
    torch = pytest.importorskip("torch")
    # In a child: the slab loop used to divide by zero blocks (SIGFPE).
    code = """
        import numpy as np, torch, pycore.functional as F, pycore.nn as nn
        for shape, dim in [((2, 3, 0), 1), ((2, 3, 0), 0), ((0, 4, 5), 1), ((3, 0, 2), 0), ((2, 0), 0)]:
            x = np.ones(shape, np.float32)
            for fwd, bwd, ref in ((F.softmax_forward, F.softmax_backward, torch.softmax),
                                  (F.log_softmax_forward, F.log_softmax_backward, torch.log_softmax)):
                y, ctx = fwd(x, dim)
                assert y.shape == tuple(ref(torch.from_numpy(x), dim).shape), (shape, dim)
                assert bwd(y, ctx).shape == shape
            assert nn.Softmax(dim)(x).shape == shape
        # the binding's own check: (2**33, 2**31, 1) wraps to 0 elements, "matching" an empty array
        from pycore import _C
        empty = np.ones(0, np.float32)
        for call in (lambda: _C.softmax_forward(empty, empty, 2 ** 33, 2 ** 31, 1, False),
                     lambda: _C.softmax_backward(empty, empty, empty, 2 ** 33, 2 ** 31, 1, True)):
            try:
                call()
            except ValueError as err:
                assert "int64" in str(err), err
            else:
                raise AssertionError("accepted")
        print("ok")
    """
    rc, out, err = run_child(code, tmp_path)
    assert rc == 0 and out.strip() == "ok", err


# -- no exception out of an OpenMP region; memory-bounded work ------------------------------

@pytest.mark.skipif(_C.sanitize_build, reason="ASan reserves terabytes of address space: RLIMIT_AS cannot apply")
def test_conv2d_too_wide_for_memory_is_computed_in_segments(tmp_path):
    # One row of 60,000 pixels, a 30,000-wide kernel: the im2col columns of one output row
    # are 30,000 x 30,001 floats (3.6 GB), more than the 3 GiB address space allowed.
    # Forward and backward cut the row into segments (kTileMaxBytes) and compute it, as
    # PyTorch does.
    code = """
        import resource, numpy as np, pycore, pycore.functional as F
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, hard))
        x = np.ones((1, 1, 1, 60000), np.float32)
        w = np.ones((1, 1, 1, 30000), np.float32)
        i = np.arange(60000)
        # dL/dx[i] with dL/dy = 1: the kernel taps k with output i - k in [0, 30001)
        expected_dx = np.minimum(np.minimum(i + 1, 60000 - i), 30000).astype(np.float32)
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            y, ctx = F.conv2d_forward(x, w)
            assert y.shape == (1, 1, 1, 30001) and np.all(y == 30000), "wrong forward"
            grad_w = np.zeros_like(w)
            grad_x = F.conv2d_backward(np.ones((1, 1, 1, 30001), np.float32), ctx, grad_w)
            assert np.all(grad_w == 30001), "wrong weight gradient"
            assert np.array_equal(grad_x.reshape(-1), expected_dx), "wrong input gradient"
        small = F.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32))
        assert np.all(small == 9)
        print("ok")
    """
    rc, out, err = run_child(code, tmp_path, timeout=300)
    assert rc == 0 and out.strip() == "ok", (rc, err[-2000:])


@pytest.mark.skipif(_C.sanitize_build, reason="ASan reserves terabytes of address space: RLIMIT_AS cannot apply")
def test_allocation_failure_inside_a_parallel_region_is_a_memory_error(tmp_path):
    # A per-thread column buffer (64 MiB) that cannot be allocated under a limit of what the
    # process uses plus 16 MiB: std::bad_alloc inside the OpenMP region (1 thread or 2) must
    # come back as MemoryError, not std::terminate, and the process go on.
    code = """
        import resource, numpy as np, pycore, pycore.functional as F
        pycore._C.conv2d_set_algorithm("im2col")  # the path with the 64 MiB column buffers (2 output
        pycore.set_num_threads(2)                 # channels would otherwise take the direct kernel)
        F.conv2d(np.ones((2, 64, 32, 32)), np.ones((8, 64, 3, 3)))  # start the worker threads
        x, w = np.ones((1, 700, 1, 16388)), np.ones((2, 700, 1, 3))
        with open("/proc/self/statm") as f:
            in_use = int(f.read().split()[0]) * resource.getpagesize()
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (in_use + (16 << 20), hard))
        for threads in (2, 1):
            pycore.set_num_threads(threads)
            for call in (lambda: F.conv2d(x, w, stride=(1, 2)),
                         lambda: F.conv2d_backward(np.ones((1, 2, 1, 8193)), F.conv.Conv2dContext(x, w, (1, 2), 0, 1, 1),
                                                   np.zeros_like(w))):
                try:
                    call()
                except MemoryError:
                    pass
                else:
                    raise AssertionError("a 64 MiB buffer under a 16 MiB margin did not fail")
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        assert np.all(F.conv2d(x, w, stride=(1, 2)) == 2100)
        print("ok")
    """
    rc, out, err = run_child(code, tmp_path)
    assert rc == 0 and out.strip() == "ok", (rc, err[-2000:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_forward_cuts_a_too_long_row_into_segments(dtype):
    torch = pytest.importorskip("torch")
    # (K + OC) * OW values per output row = (700*3 + 2) * 8193 floats = 69 MB > the 64 MiB
    # kTileMaxBytes (float32; float64: twice that): the row is computed in segments.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 700, 1, 16388)).astype(dtype)
    w = rng.standard_normal((2, 700, 1, 3)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    kwargs = dict(stride=(1, 2), padding=(0, 1), dilation=(1, 2))
    y = F.conv2d(x, w, b, **kwargs)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                          **kwargs).numpy()
    assert y.shape == expected.shape == (1, 2, 1, 8193)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape, kernel, kwargs", [
    # one image's columns: 576 x 31,684 floats = 73 MB > 64 MiB: tiles of whole rows
    ((1, 64, 180, 180), (2, 64, 3, 3), dict(padding=1)),
    # 2100 x 8193 floats per row = 69 MB: segments of one row
    ((1, 700, 1, 16388), (2, 700, 1, 3), dict(stride=(1, 2), padding=(0, 1), dilation=(1, 2))),
])
def test_conv2d_backward_in_tiles_matches_torch(shape, kernel, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(kernel).astype(np.float32)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    yt = torch.nn.functional.conv2d(xt, wt, **kwargs)
    gy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(gy))
    grad_w, grad_b = np.zeros_like(w), np.zeros(kernel[0], np.float32)
    grad_x = F.conv2d_backward(gy, F.conv2d_forward(x, w, **kwargs)[1], grad_w, grad_b)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_w, wt.grad.numpy(), rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(grad_b, gy.sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-3)


# -- sizes that would wrap int64 ------------------------------------------------------------

def test_pooling_with_kernel_and_padding_near_2_pow_60_raises(tmp_path):
    code = """
        import numpy as np, pycore.functional as F
        from pycore import _pool2d
        x = np.ones((1, 1, 4, 4), np.float32)
        for op in (F.max_pool2d, F.avg_pool2d):
            for kernel, padding in [(2 ** 60, 2 ** 59), ((1, 2 ** 62), (0, 2 ** 61)), ((4097, 4096), 0)]:
                try:
                    op(x, kernel, padding=padding)
                except ValueError as err:
                    assert "kernel_size" in str(err), err
                else:
                    raise AssertionError("accepted")
        # the binding's own last-line check, for a direct call
        y, planes = np.empty((1, 1, 1), np.float32), x.reshape(1, 4, 4)
        for args in [(2 ** 60, 2 ** 60, 1, 1, 2 ** 59, 2 ** 59), (1, 1, 0, 1, 0, 0), (2, 2, 1, 1, 2, 0)]:
            try:
                _pool2d.avg_pool2d_forward(y, planes, *args, True)
            except ValueError:
                pass
            else:
                raise AssertionError(f"accepted {args}")
        print("ok")
    """
    rc, out, err = run_child(code, tmp_path)
    assert rc == 0 and out.strip() == "ok", err


def test_pooling_window_bound_is_exact():
    torch = pytest.importorskip("torch")
    # the largest side and area accepted, against PyTorch; one more is a ValueError
    x = np.random.default_rng(0).standard_normal((1, 1, 2, 2 ** 16)).astype(np.float32)
    y = F.avg_pool2d(x, (1, 2 ** 16))
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), (1, 2 ** 16)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="kernel_size"):
        F.avg_pool2d(x, (1, 2 ** 16 + 1))
    with pytest.raises(ValueError, match="kernel_size"):
        F.max_pool2d(np.ones((1, 1, 4096, 4097), np.float32), (4096, 4097))


@pytest.mark.parametrize("name, value", [("stride", 2 ** 63), ("dilation", 2 ** 63), ("stride", (1, 2 ** 64)),
                                         ("padding", 2 ** 63), ("dilation", 2 ** 62), ("padding", 2 ** 62)])
def test_conv2d_integers_out_of_range_name_the_argument(name, value):
    x, w = np.ones((1, 1, 5, 5), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=name):
        F.conv2d(x, w, **{name: value})


def test_other_integers_out_of_range_name_the_argument():
    x = np.zeros((2, 3), np.float32)
    image = np.ones((1, 1, 4, 4), np.float32)
    cases = [("ignore_index", lambda v: F.cross_entropy(x, np.array([0, 1]), ignore_index=v)),
             ("dim", lambda v: F.softmax(x, v)), ("stride", lambda v: F.max_pool2d(image, 2, stride=v)),
             ("padding", lambda v: F.avg_pool2d(image, 2, padding=v)), ("in_features", lambda v: nn.Linear(v, 2)),
             ("hidden_size", lambda v: nn.LSTM(3, v))]
    for name, call in cases:
        for value in (2 ** 63, -2 ** 63 - 1):
            with pytest.raises(ValueError, match=name):
                call(value)


def test_conv2d_binding_rejects_wrapping_sizes():
    x, w = np.ones((1, 1, 5, 5), np.float32), np.ones((1, 1, 3, 3), np.float32)
    out = np.empty((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="int64"):
        _C.conv2d_forward(out, x, w, None, 1, 1, 0, 0, 0, 0, 2 ** 62, 1, 1)
    with pytest.raises(ValueError, match="int64"):
        _C.conv2d_forward(out, x, w, None, 1, 1, 2 ** 62, 2 ** 62, 0, 0, 1, 1, 1)


def test_set_num_threads_is_bounded():
    import os
    before = pycore.get_num_threads()
    try:
        for bad in (2 ** 31, 10 ** 6, 2 ** 64):
            with pytest.raises(ValueError, match="n: expected an int <="):
                pycore.set_num_threads(bad)
        pycore.set_num_threads(4 * (os.cpu_count() or 1))  # the bound itself is accepted
        # the binding itself, called directly: a ValueError naming n, not pybind11's overload dump
        for bad in (2 ** 31, 2 ** 70, 0, -1):
            with pytest.raises(ValueError, match=r"set_num_threads: n must be an integer from 1 to 65536"):
                _C.set_num_threads(bad)
    finally:
        pycore.set_num_threads(before)


# -- public backwards check the geometry they are given ---------------------------------------

def test_pool_backward_validates_a_hand_built_geometry():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    y, ctx = F.avg_pool2d_forward(x, 2)
    geometry = ctx.geometry
    ym, ctx_m = F.max_pool2d_forward(x, 2)
    for bad in (geometry._replace(stride=(0, 0)), geometry._replace(kernel=(0, 2)),
                geometry._replace(padding=(-1, 0)), geometry._replace(output_shape=(2, 3, 9, 9)),
                geometry._replace(input_shape=(2, 3, 600, 600))):
        with pytest.raises(ValueError, match="geometry|stride|kernel|padding"):
            F.avg_pool2d_backward(np.ones(bad.output_shape, np.float32), ctx._replace(geometry=bad))
    with pytest.raises(ValueError):
        F.max_pool2d_backward(ym, ctx_m._replace(geometry=ctx_m.geometry._replace(stride=(0, 2))))
    with pytest.raises(TypeError, match="geometry"):
        F.avg_pool2d_backward(y, ctx._replace(geometry=tuple(geometry)))
    with pytest.raises(TypeError, match="ctx: expected the AvgPool2dContext"):
        F.avg_pool2d_backward(y, tuple(ctx))
    # a valid geometry (ceil_mode too) still works
    y2, ctx2 = F.avg_pool2d_forward(x[:, :, :5, :5], 2, ceil_mode=True)
    assert F.avg_pool2d_backward(np.ones_like(y2), ctx2).shape == (2, 3, 5, 5)


# -- grad = None: one rule for every parameter ------------------------------------------------

def _layers():
    return [
        (nn.Linear(4, 3), lambda: np.ones((2, 4), np.float32)),
        (nn.Conv2d(2, 3, 3), lambda: np.ones((1, 2, 5, 5), np.float32)),
        (nn.BatchNorm2d(2), lambda: np.random.default_rng(0).standard_normal((3, 2, 2, 2)).astype(np.float32)),
        (nn.RNN(4, 3), lambda: np.ones((2, 1, 4), np.float32)),
        (nn.LSTM(4, 3, num_layers=2), lambda: np.ones((2, 1, 4), np.float32)),
        (nn.GRU(4, 3), lambda: np.ones((2, 1, 4), np.float32)),
        (nn.Embedding(5, 3), lambda: np.array([[1, 2], [2, 4]])),
    ]


@pytest.mark.parametrize("index", range(7))
def test_grad_none_is_recreated_by_backward_for_every_layer(index):
    layer, make_input = _layers()[index]
    # reference: the gradient accumulated from zeros
    out = layer(make_input())
    y = out[0] if isinstance(out, tuple) else out
    layer.backward(np.ones_like(y))
    expected = {name: p.grad.copy() for name, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in layer.parameters())
    out = layer(make_input())
    layer.backward(np.ones_like(out[0] if isinstance(out, tuple) else out))
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        np.testing.assert_array_equal(p.grad, expected[name], err_msg=name)
        assert np.any(p.grad != 0), name


def test_optimizers_zero_grad_set_to_none_and_skip_none():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    for opt_class in (optim.SGD, optim.Adam, optim.RMSprop):
        opt = opt_class(model.parameters(), lr=0.1)
        opt.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in model.parameters())
        before = [p.data.copy() for p in model.parameters()]
        opt.step()  # every grad None: nothing moves (torch skips them)
        for b, p in zip(before, model.parameters()):
            np.testing.assert_array_equal(b, p.data)
        y = model(np.ones((4, 3), np.float32))
        model.backward(np.ones_like(y))
        opt.step()
        assert any(np.any(b != p.data) for b, p in zip(before, model.parameters()))
        opt.zero_grad()  # default: zeros in place
        assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_set_to_none_training_matches_torch():
    torch = pytest.importorskip("torch")
    # SGD with momentum, zero_grad(set_to_none=True) each step, against torch's default loop
    rng = np.random.default_rng(0)
    model = nn.Linear(3, 2, dtype=np.float64)
    ref = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(model.weight.data))
        ref.bias.copy_(torch.from_numpy(model.bias.data))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        x = rng.standard_normal((5, 3))
        opt.zero_grad(set_to_none=True)
        ref_opt.zero_grad()
        y = model(x)
        model.backward(2 * y / y.size)
        (ref(torch.from_numpy(x)) ** 2).mean().backward()
        opt.step()
        ref_opt.step()
    np.testing.assert_allclose(model.weight.data, ref.weight.detach().numpy(), rtol=1e-12)


# -- tied weights -------------------------------------------------------------------------------

class TiedModel(nn.Module):
    def __init__(self):
        super().__init__(np.float64)
        self.emb = nn.Embedding(6, 4, dtype=np.float64)
        self.head = nn.Linear(4, 6, bias=False, dtype=np.float64)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(self.emb(idx))

    def backward(self, g):
        return self.emb.backward(self.head.backward(g))


def test_tied_weights_are_listed_once_and_clipped_like_torch():
    torch = pytest.importorskip("torch")
    model = TiedModel()
    assert [n for n, _ in model.named_parameters()] == ["emb.weight"]
    assert len(model.parameters()) == 1
    assert list(model.state_dict()) == ["emb.weight", "head.weight"]  # as PyTorch
    opt = optim.SGD(model.parameters(), lr=0.1)  # accepted: it appears once
    idx = np.array([[0, 1, 5], [2, 2, 3]])
    y = model(idx)
    model.backward(np.ones_like(y))

    ref_emb = torch.nn.Embedding(6, 4).double()
    ref_head = torch.nn.Linear(4, 6, bias=False).double()
    ref_head.weight = ref_emb.weight
    with torch.no_grad():
        ref_emb.weight.copy_(torch.from_numpy(model.emb.weight.data))
    ref_head(ref_emb(torch.from_numpy(idx))).sum().backward()
    np.testing.assert_allclose(model.emb.weight.grad, ref_emb.weight.grad.numpy(), rtol=1e-12)

    from pycore.optim import clip_grad_norm_
    ref_params = list(torch.nn.ModuleList([ref_emb, ref_head]).parameters())
    assert len(ref_params) == 1
    norm = clip_grad_norm_(model.parameters(), 0.5)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref_params, 0.5)
    np.testing.assert_allclose(norm, ref_norm.item(), rtol=1e-12)
    np.testing.assert_allclose(model.emb.weight.grad, ref_emb.weight.grad.numpy(), rtol=1e-12)
    opt.step()
    assert model.head.weight.data is model.emb.weight.data


# -- aliasing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [8, 300])
def test_gemm_output_aliasing_an_input_is_correct(n):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    for alias in ("a", "b", "both"):
        c = (a if alias != "b" else b).copy()
        other = b if alias == "a" else a
        x, y = (c, other) if alias == "a" else (other, c) if alias == "b" else (c, c)
        expected = 2.0 * (x @ y) + 0.5 * c
        out = F.gemm(x, y, c=c, alpha=2.0, beta=0.5)
        assert out is c
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    # a transposed view of the output as an operand
    c = a.copy()
    expected = c.T @ b
    np.testing.assert_allclose(F.gemm(c.T, b, c=c), expected, rtol=1e-10, atol=1e-10)


def test_linear_backward_grad_weight_aliasing_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3))
    w = rng.standard_normal((3, 3))
    gy = rng.standard_normal((3, 3))
    expected = x + gy.T @ x
    grad_w = x  # the weight gradient buffer is the input itself
    F.linear_backward(gy, F.linalg.LinearContext(grad_w, w), grad_weight=grad_w)
    np.testing.assert_allclose(grad_w, expected, rtol=1e-12)


# -- small ones -------------------------------------------------------------------------------

def test_flatten_dims_out_of_range_or_reversed_raise_like_torch():
    torch = pytest.importorskip("torch")
    x = np.ones((2, 3, 4, 5), np.float32)
    for start, end in [(4, -1), (1, 4), (-5, -1), (0, -6)]:
        with pytest.raises(IndexError):
            torch.nn.Flatten(start, end)(torch.from_numpy(x))
        with pytest.raises(IndexError, match="out of range"):
            nn.Flatten(start, end)(x)
    with pytest.raises(RuntimeError):
        torch.nn.Flatten(2, 1)(torch.from_numpy(x))
    with pytest.raises(ValueError, match="comes after"):
        nn.Flatten(2, 1)(x)
    for start, end in [(1, -1), (0, 2), (-3, -2), (3, 3)]:
        assert nn.Flatten(start, end)(x).shape == tuple(torch.nn.Flatten(start, end)(torch.from_numpy(x)).shape)


def test_flatten_remembers_shapes_but_follows_new_inputs_and_dims():
    torch = pytest.importorskip("torch")
    # One layer: the output shape it remembers per input shape must follow a new batch size,
    # a new rank, and start_dim/end_dim changed after the first call; a bad input still raises.
    layer = nn.Flatten()
    for shape, start, end in [((2, 3, 4), 1, -1), ((5, 3, 4), 1, -1), ((2, 3, 4, 5), 1, -1), ((2, 3, 4), 0, 1),
                              ((2, 3, 4), 1, -1)]:
        layer.start_dim, layer.end_dim = start, end
        x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
        y = layer(x)
        expected = torch.nn.Flatten(start, end)(torch.from_numpy(x)).numpy()
        assert y.shape == expected.shape and np.shares_memory(y, x)  # a view, no copy
        np.testing.assert_array_equal(y, expected)
        assert layer.backward(np.ones_like(y)).shape == shape
    layer.start_dim = 3
    with pytest.raises(IndexError, match="out of range"):
        layer(np.ones((2, 3, 4), np.float32))


def test_linear_remembered_checks_follow_new_weights_shapes_and_inputs(rng):
    # Linear skips F.linear's checks for an input shape it has seen with the same weight and
    # bias arrays: every change below must still give F.linear's numbers, or its error.
    layer = nn.Linear(5, 3)
    for step in range(7):
        if step == 2:
            layer.weight.data[0] += 1.0  # edited in place: the same array, new values
        if step == 3:
            layer.weight.data = np.asfortranarray(rng.standard_normal((3, 5)).astype(np.float32))
        if step == 4:
            layer.bias = None
        if step == 5:
            layer.weight.data = rng.standard_normal((3, 5)).astype(np.float32)
        x = rng.standard_normal((2, 4, 5) if step == 6 else (4, 5)).astype(np.float32)
        for activation in (None, "tanh"):
            bias = None if layer.bias is None else layer.bias.data
            np.testing.assert_array_equal(layer._fused_forward(x, activation),
                                          F.linear(x, layer.weight.data, bias, activation=activation))
    with pytest.raises(ValueError, match="features on the last axis"):
        layer(np.ones((4, 6), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        layer(np.ones((4, 5), np.float64))


def test_linear_with_zero_in_features_returns_the_bias():
    torch = pytest.importorskip("torch")
    x = np.ones((3, 0), np.float32)
    w, b = np.ones((2, 0), np.float32), np.array([1.5, -2.0], np.float32)
    expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    np.testing.assert_array_equal(F.linear(x, w, b), expected.numpy())
    grad_w, grad_b = np.zeros((2, 0), np.float32), np.zeros(2, np.float32)
    grad_x = F.linear_backward(np.ones((3, 2), np.float32), F.linear_forward(x, w, b)[1], grad_w, grad_b)
    assert grad_x.shape == (3, 0)
    np.testing.assert_array_equal(grad_b, [3.0, 3.0])


def test_char_vocab_with_a_lone_surrogate():
    text = "ab\udcffa\ud800"
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    assert len(ids) == len(text) and vocab.decode(ids) == text
    assert sorted(set(text)) == vocab.chars


# -- in-place edits of outputs before backward ------------------------------------------------

def test_outputs_are_read_only_while_gradients_are_on():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=1))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    class PassThrough(nn.Module):
        def forward(self, a):
            return a
    PassThrough()(x)
    x += 0.0  # a module's input handed back is still the caller's own array
    hidden = model[1](model[0](x))
    with pytest.raises(ValueError, match="read-only"):
        hidden += 1.0  # ReLU's backward reads it, the next Linear keeps it
    y = model(x)
    with pytest.raises(ValueError, match="read-only"):
        y[0, 0] = 0.0
    model.backward(np.ones_like(y))  # still consistent
    z = y.copy()
    z += 1.0  # a copy is the user's own
    with pycore.no_grad():
        w = model(x)
    w += 1.0  # nothing kept for backward: writeable
    y, (h_n, c_n) = nn.LSTM(3, 2)(np.ones((2, 1, 3), np.float32))
    for array in (y, h_n, c_n):
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0.0


def test_read_only_outputs_give_torch_gradients():
    # the whole point: the gradient through ReLU -> Linear equals torch's
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.ReLU(), nn.Linear(4, 2, dtype=np.float64))
    x = rng.standard_normal((5, 3))
    gy = rng.standard_normal((5, 2))

    def f(_):
        with pycore.no_grad():
            return model(x)
    model(x)
    model.backward(gy)
    numeric = numeric_grad(f, model[0].weight.data, gy)
    np.testing.assert_allclose(model[0].weight.grad, numeric, rtol=1e-6, atol=1e-8)


def test_rnn_layer_backward_validates_a_hand_built_cache():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    w_ih, w_hh = rng.standard_normal((9, 4)).astype(np.float32), rng.standard_normal((9, 3)).astype(np.float32)
    y, _, ctx = F.rnn_layer_forward("GRU", x, w_ih, w_hh)
    grads = (np.zeros_like(w_ih), np.zeros_like(w_hh))
    grad_output = (np.ones_like(y), None)
    with pytest.raises(TypeError, match="ctx: expected the RnnLayerContext"):
        F.rnn_layer_backward(grad_output, tuple(ctx), *grads)
    for bad in (ctx._replace(x=x[:, :, :2]), ctx._replace(gates=ctx.gates[:1]),
                ctx._replace(y=np.ones((3, 2, 5), np.float32)), ctx._replace(x="x"),
                ctx._replace(w_hh=w_hh[:3]), ctx._replace(w_ih=w_ih.astype(np.float64))):
        with pytest.raises((TypeError, ValueError)):
            F.rnn_layer_backward(grad_output, bad, *grads)
