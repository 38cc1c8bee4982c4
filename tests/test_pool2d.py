"""max_pool2d / avg_pool2d and MaxPool2d / AvgPool2d: against naive loops, PyTorch and
finite differences, over a hypothesis grid of valid and invalid geometries."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import numeric_grad
import pycore
import pycore.functional as F
import pycore.nn as nn

try:  # only the PyTorch-parity tests need it (@requires_torch); the rest run without
    import torch
except ImportError:
    torch = None
requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: a parity test")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


# -- naive references ------------------------------------------------------------------

def out_size(n, k, s, p, ceil_mode):
    size = (math.ceil if ceil_mode else math.floor)((n + 2 * p - k) / s) + 1
    if ceil_mode and (size - 1) * s >= n + p:
        size -= 1
    return size


def naive_pool(x, k, s, p, ceil_mode, mode, count_include_pad=True):
    """Direct loops over (n, c, i, j) and the window; max also returns the flat argmax."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, k[0], s[0], p[0], ceil_mode), out_size(W, k[1], s[1], p[1], ceil_mode)
    y = np.zeros((N, C, OH, OW), dtype=np.float64)
    arg = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
                    best, best_at, total, count_in, count_pad = -np.inf, None, 0.0, 0, 0
                    for a in range(k[0]):
                        for b in range(k[1]):
                            h, w = h0 + a, w0 + b
                            if -p[0] <= h < H + p[0] and -p[1] <= w < W + p[1]:
                                count_pad += 1
                            if 0 <= h < H and 0 <= w < W:
                                count_in += 1
                                total += x[n, c, h, w]
                                if best_at is None or x[n, c, h, w] > best:
                                    best, best_at = x[n, c, h, w], h * W + w
                    if mode == "max":
                        y[n, c, i, j], arg[n, c, i, j] = best, best_at
                    else:
                        y[n, c, i, j] = total / (count_pad if count_include_pad else count_in)
    return y, arg


def torch_pool(x, gy, mode, **kw):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    fn = torch.nn.functional.max_pool2d if mode == "max" else torch.nn.functional.avg_pool2d
    yt = fn(xt, **kw)
    yt.backward(torch.from_numpy(gy))
    return yt.detach().numpy(), xt.grad.numpy()


def pycore_pool(x, gy, mode, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    if mode == "max":
        m = nn.MaxPool2d(kernel_size, stride, padding, ceil_mode, dtype=x.dtype)
    else:
        m = nn.AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad, dtype=x.dtype)
    y = m(x)
    return y, m.backward(gy)


# -- forward against naive loops -------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,s,p,ceil_mode", [((2, 2), (2, 2), (0, 0), False), ((3, 3), (1, 1), (1, 1), False),
                                             ((3, 2), (2, 1), (1, 0), True), ((3, 3), (2, 2), (1, 1), True),
                                             ((1, 4), (3, 2), (0, 2), False), ((5, 5), (3, 3), (2, 2), True)])
def test_forward_matches_naive_loops(rng, dtype, k, s, p, ceil_mode):
    x = rng.standard_normal((2, 3, 7, 8)).astype(dtype)
    y, (arg, _) = F.max_pool2d_forward(x, k, s, p, ceil_mode)
    ref, ref_arg = naive_pool(x.astype(np.float64), k, s, p, ceil_mode, "max")
    np.testing.assert_array_equal(y, ref.astype(dtype))
    np.testing.assert_array_equal(arg, ref_arg)
    for include in (True, False):
        y = F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad=include)
        ref, _ = naive_pool(x.astype(np.float64), k, s, p, ceil_mode, "avg", include)
        np.testing.assert_allclose(y, ref, **TOL[dtype])


# -- hypothesis grid against PyTorch, forward and backward -----------------------------

geometry = st.fixed_dictionaries(dict(
    n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
    kh=st.integers(0, 4), kw=st.integers(1, 4), sh=st.integers(0, 3), sw=st.integers(1, 4),
    ph=st.integers(-1, 2), pw=st.integers(0, 2), default_stride=st.booleans(), ceil_mode=st.booleans(),
    count_include_pad=st.booleans(), mode=st.sampled_from(["max", "avg"]),
    dtype=st.sampled_from([np.float32, np.float64])))


@requires_torch
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(g=geometry)
def test_grid_against_torch(g):
    rng = np.random.default_rng(g["h"] * 100 + g["w"])
    x = rng.standard_normal((g["n"], g["c"], g["h"], g["w"])).astype(g["dtype"])
    kw = dict(kernel_size=(g["kh"], g["kw"]), stride=None if g["default_stride"] else (g["sh"], g["sw"]),
              padding=(g["ph"], g["pw"]), ceil_mode=g["ceil_mode"])
    if g["mode"] == "avg":
        kw["count_include_pad"] = g["count_include_pad"]
    fn = F.max_pool2d if g["mode"] == "max" else F.avg_pool2d
    try:
        torch_fn = torch.nn.functional.max_pool2d if g["mode"] == "max" else torch.nn.functional.avg_pool2d
        ref = torch_fn(torch.from_numpy(x), **kw).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            fn(x, **kw)
        return
    y = fn(x, **kw)
    assert y.shape == ref.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y, ref, **TOL[g["dtype"]])
    gy = rng.standard_normal(y.shape).astype(g["dtype"])
    y_ref, gx_ref = torch_pool(x, gy, g["mode"], **kw)
    y, gx = pycore_pool(x, gy, g["mode"], **kw)
    np.testing.assert_allclose(y, y_ref, **TOL[g["dtype"]])
    np.testing.assert_allclose(gx, gx_ref, **TOL[g["dtype"]])


@requires_torch
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape,k,s,p", [((64, 32, 28, 28), 2, 2, 0), ((8, 64, 32, 32), 3, 1, 1)])
def test_benchmark_shapes_against_torch(rng, mode, shape, k, s, p):
    x = rng.standard_normal(shape).astype(np.float32)
    gy = rng.standard_normal((shape[0], shape[1], (shape[2] + 2 * p - k) // s + 1,
                              (shape[3] + 2 * p - k) // s + 1)).astype(np.float32)
    y_ref, gx_ref = torch_pool(x, gy, mode, kernel_size=k, stride=s, padding=p)
    y, gx = pycore_pool(x, gy, mode, k, s, p)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-6)


# -- gradients by finite differences --------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=(3, 2), stride=2, padding=(1, 1), ceil_mode=True)])
def test_gradient_finite_differences(rng, mode, kw):
    x = rng.standard_normal((2, 2, 5, 6))
    m = nn.MaxPool2d(**kw, dtype=np.float64) if mode == "max" else nn.AvgPool2d(**kw, dtype=np.float64)
    gy = rng.standard_normal(m(x).shape)
    gx = m.backward(gy)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: m(v), x, gy), rtol=1e-6, atol=1e-8)


# -- semantics and layouts ------------------------------------------------------------

@requires_torch
def test_max_pool_nan_propagates_like_torch():
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 3] = np.nan
    x[0, 1, 3, 2] = np.nan
    y, (arg, _) = F.max_pool2d_forward(x, 2)
    y_ref, arg_ref = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, y_ref.numpy())
    np.testing.assert_array_equal(arg, arg_ref.numpy())


@requires_torch
def test_max_pool_ties_and_all_padding_windows_pick_torchs_index():
    x = np.full((1, 1, 5, 5), -np.inf, dtype=np.float32)
    x[0, 0, 4, 4] = 1.0
    x[0, 0, :2, :2] = 7.0
    for kw in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=2, stride=1)):
        _, (arg, _) = F.max_pool2d_forward(x, **kw)
        _, arg_ref = torch.nn.functional.max_pool2d(torch.from_numpy(x), return_indices=True, **kw)
        np.testing.assert_array_equal(arg, arg_ref.numpy())


@requires_torch
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_unbatched_input(rng, mode):
    x = rng.standard_normal((3, 6, 7)).astype(np.float32)
    gy = rng.standard_normal((3, 4, 4)).astype(np.float32)
    y_ref, gx_ref = torch_pool(x, gy, mode, kernel_size=2, padding=1)
    y, gx = pycore_pool(x, gy, mode, 2, padding=1)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-6)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_non_contiguous_read_only_and_fortran_inputs(rng, mode):
    base = rng.standard_normal((2, 3, 12, 10)).astype(np.float32)
    fn = F.max_pool2d if mode == "max" else F.avg_pool2d
    read_only = base.copy()
    read_only.flags.writeable = False
    for x in (base[:, :, ::2, ::-1], base.transpose(0, 1, 3, 2), np.asfortranarray(base), read_only):
        np.testing.assert_array_equal(fn(x, 3, 2, 1), fn(np.ascontiguousarray(x), 3, 2, 1))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (2, 2, 0)])
def test_one_and_two_threads_identical(rng, mode, k, s, p):
    # 524288 elements: enough work for two threads even on the 2x2 path's larger grain
    x = rng.standard_normal((8, 16, 64, 64)).astype(np.float32)
    gy = rng.standard_normal(F.max_pool2d(x, k, s, p).shape).astype(np.float32)
    before = pycore.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            pycore.set_num_threads(n)
            results.append(pycore_pool(x, gy, mode, k, s, p))
    finally:
        pycore.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# -- errors -----------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    x = np.zeros((1, 1, 4, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.max_pool2d(x.astype(np.int32), 2)
    with pytest.raises(ValueError, match="4-D"):
        F.avg_pool2d(np.zeros((4, 4), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="kernel_size"):
        F.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="padding"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        F.avg_pool2d(x, 5)
    with pytest.raises(TypeError, match="kernel_size"):
        F.max_pool2d(x, 2.5)
    m = nn.MaxPool2d(2)
    with pytest.raises(TypeError, match="MaxPool2d.*int32"):
        m(x.astype(np.int32))
    with pytest.raises(RuntimeError, match="forward first"):
        m.backward(np.zeros((1, 1, 2, 2), dtype=np.float32))
    m(x)
    with pytest.raises(ValueError, match="grad_output"):
        m.backward(np.zeros((1, 1, 3, 3), dtype=np.float32))


def test_max_pool_backward_refuses_a_bad_argmax():
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    y, ctx = F.max_pool2d_forward(x, 2)
    with pytest.raises(TypeError, match="argmax"):
        F.max_pool2d_backward(np.ones_like(y), ctx._replace(argmax=ctx.argmax.astype(np.int32)))
    ctx.argmax[0, 1, 1, 0] = 16
    with pytest.raises(ValueError, match="outside the input plane"):
        F.max_pool2d_backward(np.ones_like(y), ctx)


@pytest.mark.parametrize("cls", [nn.MaxPool2d, nn.AvgPool2d])
def test_module_without_input_grad_returns_none(cls):
    m = cls(2)
    m.requires_input_grad = False
    y = m(np.ones((1, 1, 4, 4), dtype=np.float32))
    assert m.backward(np.ones_like(y)) is None
    with pytest.raises(RuntimeError):
        m.backward(np.ones_like(y))


def _pool_in_child(queue):
    x = np.arange(2 * 8 * 16 * 16, dtype=np.float32).reshape(2, 8, 16, 16)
    queue.put(float(F.max_pool2d(x, 2).sum() + F.avg_pool2d(x, 3, 1, 1).sum()))


def test_forked_child_pools_without_hanging():
    """GNU OpenMP cannot start threads in a child forked after it ran: the kernels read the
    thread count from pycore, which is 1 there, so the child finishes."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    before = pycore.get_num_threads()
    pycore.set_num_threads(2)
    try:
        x = np.ones((4, 8, 32, 32), dtype=np.float32)
        F.max_pool2d(x, 2)  # start the parent's OpenMP threads
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_pool_in_child, args=(queue,))
        child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            pytest.fail("pooling in a forked child hung")
        assert child.exitcode == 0
        x = np.arange(2 * 8 * 16 * 16, dtype=np.float32).reshape(2, 8, 16, 16)
        assert queue.get(timeout=5) == float(F.max_pool2d(x, 2).sum() + F.avg_pool2d(x, 3, 1, 1).sum())
    finally:
        pycore.set_num_threads(before)


# -- the 2x2 stride-2 path (LeNet's pooling) and ReLU + max pooling fused ---------------

@requires_torch
def test_two_by_two_path_ties_infinities_and_odd_sizes_match_torch(rng):
    """Integer values make ties common; -inf windows and an odd height/width (a last row and
    column no window covers) take the 2x2 path's edge cases."""
    x = rng.integers(-2, 3, (2, 3, 9, 7)).astype(np.float32)
    x[0, 0, :2, :2] = -np.inf
    x[1, 2, 4, 4] = np.nan
    for kwargs in (dict(kernel_size=2), dict(kernel_size=2, ceil_mode=True)):
        y, (arg, g) = F.max_pool2d_forward(x, **kwargs)
        y_ref, arg_ref = torch.nn.functional.max_pool2d(torch.from_numpy(x), return_indices=True, **kwargs)
        np.testing.assert_array_equal(y, y_ref.numpy())
        np.testing.assert_array_equal(arg, arg_ref.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_by_two_forward_every_row_width_and_simd_path_against_naive_loops(rng, simd_path, dtype):
    """pool2d_2x2.h's blocks on each SIMD path: rows narrower than a block (scalar), of one
    block, of blocks whose last one overlaps the one before, and of several wide blocks; with
    ties, NaNs and -inf, relu fused or not, and the argmax wanted or not."""
    for width in (1, 3, 4, 5, 7, 8, 10, 14, 16, 17, 33):
        x = rng.integers(-2, 3, (2, 2, 5, 2 * width + width % 2)).astype(dtype)
        x[0, 0, 0, :4] = np.nan
        x[1, 1, 2:4, :] = -np.inf
        y_ref, arg_ref = naive_pool(x, (2, 2), (2, 2), (0, 0), False, "max")
        # the naive loops take the first maximum and skip NaNs: put NaN windows right by hand
        windows = x[:, :, :4, :2 * width].reshape(2, 2, 2, 2, width, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
            2, 2, 2, width, 4)
        nan_at = np.isnan(windows)
        last_nan = 3 - np.argmax(nan_at[..., ::-1], axis=-1)  # the general loop keeps the last NaN
        has_nan = nan_at.any(axis=-1)
        rows = np.arange(2)[:, None] * 2 + last_nan // 2
        arg_nan = rows * x.shape[3] + 2 * np.arange(width) + last_nan % 2
        y_ref = np.where(has_nan, np.nan, y_ref)
        arg_ref = np.where(has_nan, arg_nan, arg_ref)
        y, (arg, _) = F.max_pool2d_forward(x, 2)
        np.testing.assert_array_equal(y, y_ref.astype(dtype), err_msg=f"width {width}")
        np.testing.assert_array_equal(arg, arg_ref, err_msg=f"width {width}")
        np.testing.assert_array_equal(F.max_pool2d(x, 2), y)  # no argmax
        y_relu, ctx = F.relu_max_pool2d_forward(x, 2)
        np.testing.assert_array_equal(y_relu, np.where(y > 0, y, np.where(np.isnan(y), y, 0)))
        np.testing.assert_array_equal(ctx.argmax, arg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_two_by_two_average_backward_odd_sizes_against_naive_scatter(rng, dtype, threads):
    """The 2x2 stride-2 average gradient (its own row kernel): each gy / 4 on its window's four
    inputs, and zeros in the last row and column no window covers (odd height and width)."""
    gy = rng.standard_normal((3, 5, 4, 3)).astype(dtype)
    gy[0, 0, 0, 0] = -0.0  # lands as +0, as the general loop's 0 + (-0) gives
    expected = np.zeros((3, 5, 9, 7), dtype=dtype)
    for a in range(2):
        for b in range(2):
            expected[:, :, a:8:2, b:6:2] = gy / dtype(4)
    before = pycore.get_num_threads()
    pycore.set_num_threads(threads)
    try:
        pool = nn.AvgPool2d(2)
        pool(np.zeros((3, 5, 9, 7), dtype))
        grad_x = pool.backward(gy)
    finally:
        pycore.set_num_threads(before)
    np.testing.assert_array_equal(grad_x, expected)
    assert not np.signbit(grad_x[0, 0, 0, 0])


FUSED_GEOMETRIES = [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                    dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=(2, 3), stride=(1, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", FUSED_GEOMETRIES)
def test_relu_max_pool_equals_relu_then_max_pool(rng, dtype, kwargs):
    x = rng.standard_normal((2, 3, 10, 9)).astype(dtype)
    x[0, 1, :4, :4] = -1.0  # whole windows below zero: y == 0 and no gradient
    x[1, 0, 2, 2] = 0.0
    y, ctx = F.relu_max_pool2d_forward(x, **kwargs)
    relu_y = F.relu(x)
    y_ref, ctx_ref = F.max_pool2d_forward(relu_y, **kwargs)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(F.relu_max_pool2d(x, **kwargs), y_ref)
    grad_output = rng.standard_normal(y.shape).astype(dtype)
    expected = F.relu_backward(F.max_pool2d_backward(grad_output, ctx_ref), relu_y)
    np.testing.assert_array_equal(F.relu_max_pool2d_backward(grad_output, ctx), expected)


@requires_torch
def test_relu_max_pool_against_torch(rng):
    x = rng.standard_normal((3, 6, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(torch.relu(xt), 2)
    grad_output = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(grad_output))
    y, ctx = F.relu_max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(F.relu_max_pool2d_backward(grad_output, ctx), xt.grad.numpy())
    # A NaN propagates forward as in torch (its gradient follows pycore's relu_backward,
    # which passes none through a NaN output; the test above checks that rule).
    x[2, 5, 7, 9] = np.nan
    y = F.relu_max_pool2d(x, 2)
    np.testing.assert_array_equal(y, torch.nn.functional.max_pool2d(torch.relu(torch.from_numpy(x)), 2).numpy())


def test_relu_max_pool_module_matches_the_pair_and_finite_differences(rng):
    x = rng.standard_normal((2, 2, 6, 6))
    fused, pair = nn.ReLUMaxPool2d(2, dtype=np.float64), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))
    y = fused(x)
    np.testing.assert_array_equal(y, pair(x))
    grad_output = rng.standard_normal(y.shape)
    grad_x = fused.backward(grad_output)
    np.testing.assert_array_equal(grad_x, pair.backward(grad_output))
    np.testing.assert_allclose(grad_x, numeric_grad(lambda v: F.max_pool2d(F.relu(v), 2), x.copy(), grad_output),
                               rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="ReLUMaxPool2d.*too small"):
        fused(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="shape"):
        ctx = F.relu_max_pool2d_forward(x, 2)[1]
        F.relu_max_pool2d_backward(grad_output, ctx._replace(output=y[:1]))
